/* tests/unit/record_test.c - spool records: header, envelope, state records, segment scanning. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "queue/crc32c.h"
#include "queue/record.h"

#define SEG_MAX 4096u

struct seg {
	uint8_t bytes[SEG_MAX];
	size_t len;
	uint64_t offs[8];   /* where each record starts */
	uint64_t ends[8];
	uint32_t count;
};

static void
seg_add(struct seg *s, uint8_t type, uint64_t qid, const void *payload, size_t len)
{
	cr_assert(s->len + RECORD_HEADER_SIZE + len <= SEG_MAX);
	struct iovec iov = { .iov_base = (void *)payload, .iov_len = len };
	s->offs[s->count] = s->len;
	record_header_encode(s->bytes + s->len, type, qid, &iov, 1);
	if (len > 0)
		memcpy(s->bytes + s->len + RECORD_HEADER_SIZE, payload, len);
	s->len += RECORD_HEADER_SIZE + len;
	s->ends[s->count++] = s->len;
}

/* Three records: a message-sized one, a state record, another payload. */
static void
seg_three(struct seg *s)
{
	memset(s, 0, sizeof(*s));
	uint8_t a[100], c[37];
	for (size_t i = 0; i < sizeof(a); i++)
		a[i] = (uint8_t)(i * 7 + 1);
	for (size_t i = 0; i < sizeof(c); i++)
		c[i] = (uint8_t)(0xA0 + i);
	seg_add(s, RECORD_MESSAGE, 0x1111, a, sizeof(a));
	uint8_t st[RECORD_STATE_SIZE_MAX];
	uint32_t n = record_state_encode(st, RECORD_DEFERRED, 0x1111, 0, 123456);
	s->offs[s->count] = s->len;
	memcpy(s->bytes + s->len, st, n);
	s->len += n;
	s->ends[s->count++] = s->len;
	seg_add(s, RECORD_MESSAGE, 0x3333, c, sizeof(c));
}

struct scan {
	uint64_t offs[64];
	uint32_t count;
	uint64_t skipped;
	uint64_t valid_end;
};

static void
scan_all(const uint8_t *bytes, size_t len, struct scan *out)
{
	memset(out, 0, sizeof(*out));
	uint64_t off = 0;
	struct record_view r;
	while (record_scan_next(slice_make(bytes, len), &off, &r, &out->skipped,
		&out->valid_end) == 1) {
		cr_assert(out->count < ARRAY_LEN(out->offs));
		cr_assert_eq(off, r.offset + r.size);
		cr_assert_leq(r.offset + r.size, len);
		out->offs[out->count++] = r.offset;
	}
	cr_assert_eq(off, len);
}

Test(record, header_layout_is_little_endian_rmq1)
{
	uint8_t hdr[RECORD_HEADER_SIZE];
	uint8_t payload[5] = "hello";
	struct iovec iov = { .iov_base = payload, .iov_len = 5 };
	record_header_encode(hdr, RECORD_MESSAGE, 0x0102030405060708ull, &iov, 1);
	cr_assert_eq(memcmp(hdr, "RMQ1", 4), 0);
	cr_assert_eq(hdr[4], RECORD_MESSAGE);
	cr_assert_eq(hdr[5], 1);
	cr_assert_eq(hdr[6], 0);
	cr_assert_eq(hdr[7], 0);
	cr_assert_eq(memcmp(hdr + 8, "\x05\0\0\0", 4), 0);
	cr_assert_eq(memcmp(hdr + 16, "\x08\x07\x06\x05\x04\x03\x02\x01", 8), 0);
	/* The CRC covers the header with its own field zero, then the payload. */
	uint8_t copy[RECORD_HEADER_SIZE + 5];
	memcpy(copy, hdr, RECORD_HEADER_SIZE);
	memset(copy + 12, 0, 4);
	memcpy(copy + RECORD_HEADER_SIZE, payload, 5);
	uint32_t crc = crc32c_update(0, copy, sizeof(copy));
	cr_assert_eq(hdr[12] | hdr[13] << 8 | hdr[14] << 16 | (uint32_t)hdr[15] << 24, crc);
}

Test(record, header_of_split_payload_equals_header_of_whole)
{
	uint8_t body[300];
	for (size_t i = 0; i < sizeof(body); i++)
		body[i] = (uint8_t)i;
	uint8_t whole[RECORD_HEADER_SIZE], split[RECORD_HEADER_SIZE];
	struct iovec one = { .iov_base = body, .iov_len = sizeof(body) };
	struct iovec three[3] = { { body, 10 }, { body + 10, 0 }, { body + 10, 290 } };
	record_header_encode(whole, RECORD_MESSAGE, 42, &one, 1);
	record_header_encode(split, RECORD_MESSAGE, 42, three, 3);
	cr_assert_eq(memcmp(whole, split, RECORD_HEADER_SIZE), 0);
}

static const struct record_rcpt test_rcpts[] = {
	{ .path = SLICE_LIT("alice@example.org"), .local_part = SLICE_LIT("alice"),
		.domain = SLICE_LIT("example.org"), .orcpt = SLICE_LIT("rfc822;alice@example.org"),
		.notify = 0x6 },
	{ .path = SLICE_LIT("\"b c\"@example.net"), .local_part = SLICE_LIT("b c"),
		.domain = SLICE_LIT("example.net") },
	{ .path = SLICE_LIT("postmaster"), .local_part = SLICE_LIT("postmaster"), .notify = 0x1 },
};

static struct record_envelope
test_envelope(void)
{
	return (struct record_envelope){
		.arrival_ms = 1700000000123ull,
		.client_addr = SLICE_LIT("127.0.0.1"),
		.helo = SLICE_LIT("client.example"),
		.mail_from = SLICE_LIT("sender@example.com"),
		.declared_size = 4242,
		.body_type = 2,
		.smtputf8 = true,
		.dsn_ret = 1,
		.dsn_envid = SLICE_LIT("QQ314159"),
		.rcpt_count = 3,
		.rcpts = test_rcpts,
	};
}

/* payload = envelope + body, in a malloc'd buffer. */
static uint8_t *
build_payload(const struct record_envelope *env, struct slice body, size_t *len)
{
	size_t n = record_envelope_size(env);
	uint8_t *p = malloc(n + body.len);
	cr_assert_eq(record_envelope_encode(env, p, n), n);
	if (body.len > 0)
		memcpy(p + n, body.ptr, body.len);
	*len = n + body.len;
	return p;
}

static void
assert_rcpt_eq(const struct record_rcpt *a, const struct record_rcpt *b)
{
	cr_assert(slice_eq(a->path, b->path));
	cr_assert(slice_eq(a->local_part, b->local_part));
	cr_assert(slice_eq(a->domain, b->domain));
	cr_assert(slice_eq(a->orcpt, b->orcpt));
	cr_assert_eq(a->notify, b->notify);
}

Test(record, envelope_round_trips_with_its_body)
{
	struct record_envelope env = test_envelope();
	size_t len;
	struct slice body = SLICE_LIT("Subject: x\r\n\r\nhello\r\n");
	uint8_t *p = build_payload(&env, body, &len);
	struct record_envelope_view v;
	cr_assert_eq(record_envelope_decode(slice_make(p, len), &v), 0);
	cr_assert_eq(v.arrival_ms, env.arrival_ms);
	cr_assert(slice_eq(v.client_addr, env.client_addr));
	cr_assert(slice_eq(v.helo, env.helo));
	cr_assert(slice_eq(v.mail_from, env.mail_from));
	cr_assert_eq(v.declared_size, 4242);
	cr_assert_eq(v.body_type, 2);
	cr_assert(v.smtputf8);
	cr_assert_eq(v.dsn_ret, 1);
	cr_assert(slice_eq(v.dsn_envid, env.dsn_envid));
	cr_assert_eq(v.rcpt_count, 3);
	cr_assert(slice_eq(v.body, body));
	for (uint32_t i = 0; i < 3; i++) {
		struct record_rcpt r;
		cr_assert_eq(record_envelope_rcpt(&v, i, &r), 0);
		assert_rcpt_eq(&r, &test_rcpts[i]);
	}
	struct record_rcpt r;
	cr_assert_eq(record_envelope_rcpt(&v, 1, &r), 0);   /* backwards: restarts the walk */
	assert_rcpt_eq(&r, &test_rcpts[1]);
	cr_assert_eq(record_envelope_rcpt(&v, 3, &r), -EINVAL);
	free(p);
}

Test(record, null_sender_and_envelope_alone_decode)
{
	struct record_envelope env = test_envelope();
	env.mail_from = SLICE_LIT("");
	env.dsn_envid = SLICE_LIT("");
	env.smtputf8 = false;
	size_t len;
	uint8_t *p = build_payload(&env, SLICE_LIT(""), &len);
	struct record_envelope_view v;
	cr_assert_eq(record_envelope_decode(slice_make(p, len), &v), 0);
	cr_assert_eq(v.mail_from.len, 0);
	cr_assert_not(v.smtputf8);
	cr_assert_eq(v.body.len, 0);
	free(p);
}

Test(record, a_thousand_recipients_round_trip_in_order_and_at_random)
{
	static struct record_rcpt many[RECORD_RCPT_MAX];
	static char names[RECORD_RCPT_MAX][16];
	for (uint32_t i = 0; i < RECORD_RCPT_MAX; i++) {
		int n = snprintf(names[i], sizeof(names[i]), "u%u", i);
		many[i] = (struct record_rcpt){ .local_part = slice_make(names[i], (size_t)n),
			.path = slice_make(names[i], (size_t)n), .notify = (uint8_t)(i & 0xf) };
	}
	struct record_envelope env = test_envelope();
	env.rcpts = many;
	env.rcpt_count = RECORD_RCPT_MAX;
	size_t len;
	uint8_t *p = build_payload(&env, SLICE_LIT("body"), &len);
	struct record_envelope_view v;
	cr_assert_eq(record_envelope_decode(slice_make(p, len), &v), 0);
	cr_assert_eq(v.rcpt_count, RECORD_RCPT_MAX);
	for (uint32_t i = 0; i < RECORD_RCPT_MAX; i++) {
		struct record_rcpt r;
		cr_assert_eq(record_envelope_rcpt(&v, i, &r), 0);
		assert_rcpt_eq(&r, &many[i]);
	}
	for (uint32_t k = 0; k < 50; k++) {
		uint32_t i = (k * 617u) % RECORD_RCPT_MAX;
		struct record_rcpt r;
		cr_assert_eq(record_envelope_rcpt(&v, i, &r), 0);
		assert_rcpt_eq(&r, &many[i]);
	}
	free(p);
}

Test(record, every_truncated_envelope_is_rejected)
{
	struct record_envelope env = test_envelope();
	size_t len;
	uint8_t *p = build_payload(&env, SLICE_LIT(""), &len);
	for (size_t cut = 0; cut < len; cut++) {
		struct record_envelope_view v;
		cr_assert_eq(record_envelope_decode(slice_make(p, cut), &v), -EBADMSG,
			"cut=%zu", cut);
	}
	free(p);
}

/* Sets byte at of a fresh copy of the test envelope to val; returns what decode says. */
static int
decode_with_byte(size_t at, uint8_t val)
{
	struct record_envelope env = test_envelope();
	size_t len;
	uint8_t *p = build_payload(&env, SLICE_LIT("body"), &len);
	p[at] = val;
	struct record_envelope_view v;
	int rc = record_envelope_decode(slice_make(p, len), &v);
	free(p);
	return rc;
}

Test(record, bad_flags_reserved_bytes_and_counts_are_rejected)
{
	cr_assert_eq(decode_with_byte(20, RECORD_BODY_TYPE_MAX + 1), -EBADMSG);
	cr_assert_eq(decode_with_byte(21, 2), -EBADMSG);          /* smtputf8 is 0 or 1 */
	cr_assert_eq(decode_with_byte(22, RECORD_DSN_RET_MAX + 1), -EBADMSG);
	cr_assert_eq(decode_with_byte(23, 1), -EBADMSG);          /* reserved */
	cr_assert_eq(decode_with_byte(28, 1), -EBADMSG);          /* reserved */
	cr_assert_eq(decode_with_byte(24, 0), -EBADMSG);          /* no recipient */
	cr_assert_eq(decode_with_byte(24, 2), -EBADMSG);          /* count below what is there */
	cr_assert_eq(decode_with_byte(24, 4), -EBADMSG);          /* count above */
	cr_assert_eq(decode_with_byte(25, 0x10), -EBADMSG);       /* 4099 > RECORD_RCPT_MAX */
	cr_assert_eq(decode_with_byte(0, 31), -EBADMSG);          /* envelope length too short */
	cr_assert_eq(decode_with_byte(3, 1), -EBADMSG);           /* ... and past the payload */
	cr_assert_eq(decode_with_byte(20, RECORD_BODY_TYPE_MAX), 0);
}

Test(record, notify_bits_outside_the_mask_are_rejected)
{
	struct record_envelope env = test_envelope();
	size_t len;
	uint8_t *p = build_payload(&env, SLICE_LIT(""), &len);
	/* The first recipient's NOTIFY octet follows the four strings. */
	size_t at = 32 + 2 + 9 + 2 + 14 + 2 + 18 + 2 + 8;
	cr_assert_eq(p[at], 0x6);
	p[at] = 0x16;
	struct record_envelope_view v;
	cr_assert_eq(record_envelope_decode(slice_make(p, len), &v), -EBADMSG);
	free(p);
}

Test(record, envelope_length_must_end_at_the_last_recipient)
{
	struct record_envelope env = test_envelope();
	size_t len;
	uint8_t *p = build_payload(&env, SLICE_LIT("xy"), &len);
	p[0] = (uint8_t)(p[0] + 1);   /* takes one body byte into the envelope */
	struct record_envelope_view v;
	cr_assert_eq(record_envelope_decode(slice_make(p, len), &v), -EBADMSG);
	free(p);
}

Test(record, state_records_round_trip_with_exact_lengths)
{
	static const uint8_t types[] = { RECORD_DELIVERED, RECORD_DEFERRED, RECORD_BOUNCED,
		RECORD_EXPIRED, RECORD_HOLD, RECORD_BOUNCE };
	static const uint32_t sizes[] = { 28, 36, 28, 24, 28, 24 };
	for (uint32_t k = 0; k < ARRAY_LEN(types); k++) {
		uint8_t buf[RECORD_STATE_SIZE_MAX];
		uint32_t n = record_state_encode(buf, types[k], 77, 999, 1700000000999ull);
		cr_assert_eq(n, sizes[k]);
		struct scan sc;
		scan_all(buf, n, &sc);
		cr_assert_eq(sc.count, 1);
		uint64_t off = 0, skipped = 0, end = 0;
		struct record_view r;
		cr_assert_eq(record_scan_next(slice_make(buf, n), &off, &r, &skipped, &end), 1);
		cr_assert_eq(r.type, types[k]);
		cr_assert_eq(r.queue_id, 77);
		struct record_state st;
		cr_assert_eq(record_state_decode(&r, &st), 0);
		bool empty = types[k] == RECORD_EXPIRED || types[k] == RECORD_BOUNCE;
		cr_assert_eq(st.rcpt, empty ? 0 : 999);
		uint64_t next = types[k] == RECORD_DEFERRED ? 1700000000999ull : 0;
		cr_assert_eq(st.next_attempt_ms, next);
		r.payload.len++;   /* a length other than the type's */
		cr_assert_eq(record_state_decode(&r, &st), -EBADMSG);
		r.type = RECORD_MESSAGE;
		r.payload.len--;
		cr_assert_eq(record_state_decode(&r, &st), -EBADMSG);
	}
}

/* The queue commands' marks ride a COPY in its count's high bits: a message copied forward out
 * of an old segment stays held (or to be bounced) without the HOLD record that said so. */
Test(record, copy_prefix_carries_the_hold_and_bounce_flags)
{
	struct record_copy_rcpt st[2] = { { .state = 3, .next_attempt_ms = 5 }, { .state = 1 } };
	uint8_t buf[64];
	static const uint32_t flags[] = { 0, RECORD_COPY_HELD, RECORD_COPY_BOUNCE,
		RECORD_COPY_HELD | RECORD_COPY_BOUNCE };
	for (uint32_t k = 0; k < ARRAY_LEN(flags); k++) {
		uint32_t len = record_copy_prefix_encode(buf, 2, flags[k], st);
		memcpy(buf + len, "x", 1);
		uint32_t n, f;
		struct slice states, message;
		cr_assert_eq(record_copy_decode(slice_make(buf, len + 1), &n, &f, &states, &message), 0);
		cr_assert_eq(n, 2);
		cr_assert_eq(f, flags[k]);
		cr_assert_eq(record_copy_state(states, 0).next_attempt_ms, 5);
		cr_assert_eq(message.len, 1);
	}
	buf[2] |= 0x04;   /* bit 18: no such flag */
	uint32_t n, f;
	struct slice states, message;
	cr_assert_eq(record_copy_decode(slice_make(buf, 64), &n, &f, &states, &message), -EBADMSG);
}

Test(record, clean_segment_scans_every_record_and_nothing_else)
{
	struct seg s;
	seg_three(&s);
	struct scan sc;
	scan_all(s.bytes, s.len, &sc);
	cr_assert_eq(sc.count, 3);
	for (uint32_t i = 0; i < 3; i++)
		cr_assert_eq(sc.offs[i], s.offs[i]);
	cr_assert_eq(sc.skipped, 0);
	cr_assert_eq(sc.valid_end, s.len);
	scan_all(s.bytes, 0, &sc);
	cr_assert_eq(sc.count, 0);
	cr_assert_eq(sc.valid_end, 0);
}

Test(record, a_record_inside_a_valid_payload_is_not_a_record)
{
	struct seg inner, s;
	seg_three(&inner);
	memset(&s, 0, sizeof(s));
	seg_add(&s, RECORD_MESSAGE, 9, inner.bytes, inner.len);
	struct scan sc;
	scan_all(s.bytes, s.len, &sc);
	cr_assert_eq(sc.count, 1);
	cr_assert_eq(sc.skipped, 0);
}

Test(record, truncation_at_every_byte_keeps_the_complete_records)
{
	struct seg s;
	seg_three(&s);
	for (size_t cut = 0; cut <= s.len; cut++) {
		struct scan sc;
		scan_all(s.bytes, cut, &sc);
		uint32_t whole = 0;
		uint64_t end = 0;
		for (uint32_t i = 0; i < s.count; i++) {
			if (s.ends[i] <= cut) {
				whole++;
				end = s.ends[i];
			}
		}
		cr_assert_eq(sc.count, whole, "cut=%zu", cut);
		cr_assert_eq(sc.valid_end, end, "cut=%zu", cut);
		cr_assert_eq(sc.skipped, cut - end, "cut=%zu", cut);   /* the torn tail */
	}
}

/* Which of s's records the damaged copy d still holds byte for byte. */
static uint32_t
intact_records(const struct seg *s, const uint8_t *d, uint64_t *offs)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < s->count; i++) {
		if (memcmp(s->bytes + s->offs[i], d + s->offs[i], s->ends[i] - s->offs[i]) == 0)
			offs[n++] = s->offs[i];
	}
	return n;
}

/* Scans the damaged copy d of s: exactly the intact records before the first damaged one are
 * found (the scan never looks past a bad record), the valid end is past the last of them, and
 * every other byte counts as skipped. */
static void
assert_finds_exactly(const struct seg *s, const uint8_t *d, const char *what, size_t at)
{
	uint64_t intact[8], want[8];
	uint32_t m = intact_records(s, d, intact), n = 0;
	while (n < m && n < s->count && intact[n] == s->offs[n]) {
		want[n] = intact[n];
		n++;
	}
	struct scan sc;
	scan_all(d, s->len, &sc);
	cr_assert_eq(sc.count, n, "%s at %zu", what, at);
	uint64_t found_bytes = 0, end = 0;
	for (uint32_t i = 0; i < n; i++) {
		cr_assert_eq(sc.offs[i], want[i], "%s at %zu", what, at);
		for (uint32_t k = 0; k < s->count; k++) {
			if (s->offs[k] == want[i]) {
				found_bytes += s->ends[k] - s->offs[k];
				end = s->ends[k];
			}
		}
	}
	cr_assert_eq(sc.valid_end, end, "%s at %zu", what, at);
	cr_assert_eq(sc.skipped, s->len - found_bytes, "%s at %zu", what, at);
}

Test(record, flipping_any_byte_ends_the_valid_prefix_at_that_record)
{
	struct seg s;
	seg_three(&s);
	uint8_t d[SEG_MAX];
	for (size_t at = 0; at < s.len; at++) {
		for (uint32_t bit = 0; bit < 8; bit++) {
			memcpy(d, s.bytes, s.len);
			d[at] ^= (uint8_t)(1u << bit);
			assert_finds_exactly(&s, d, "bit flip", at);
		}
		memcpy(d, s.bytes, s.len);
		d[at] ^= 0xff;
		assert_finds_exactly(&s, d, "byte flip", at);
	}
}

Test(record, a_zeroed_hole_anywhere_starts_the_torn_tail)
{
	struct seg s;
	seg_three(&s);
	uint8_t more[64];
	memset(more, 0x52, sizeof(more));   /* 'R', the magic's first byte, all over */
	seg_add(&s, RECORD_BOUNCED, 0x4444, more, sizeof(more));
	uint8_t d[SEG_MAX];
	for (size_t at = 0; at < s.len; at++) {
		for (size_t len = 1; at + len <= s.len; len += 5) {
			memcpy(d, s.bytes, s.len);
			memset(d + at, 0, len);
			assert_finds_exactly(&s, d, "hole", at);
		}
	}
}

Test(record, a_record_after_junk_is_never_believed) /* it could sit inside a message body */
{
	struct seg s;
	memset(&s, 0, sizeof(s));
	memcpy(s.bytes, "RMQ1RRRRjunk", 12);
	s.len = 12;
	seg_add(&s, RECORD_EXPIRED, 5, NULL, 0);
	struct scan sc;
	scan_all(s.bytes, s.len, &sc);
	cr_assert_eq(sc.count, 0);
	cr_assert_eq(sc.skipped, s.len);
	cr_assert_eq(sc.valid_end, 0);
}

Test(record, unknown_type_version_or_reserved_bits_make_a_record_invalid)
{
	/* Each is a header with a correct CRC over a changed field: only the checks catch it. */
	static const struct { size_t at; uint8_t val; } bad[] = {
		{ 4, 0 }, { 4, RECORD_TYPE_LAST + 1 }, { 5, 2 }, { 6, 1 }, { 7, 0x80 },
	};
	for (uint32_t k = 0; k < ARRAY_LEN(bad); k++) {
		uint8_t rec[RECORD_HEADER_SIZE + 4] = { 0 };
		struct iovec iov = { .iov_base = rec + RECORD_HEADER_SIZE, .iov_len = 4 };
		record_header_encode(rec, RECORD_DELIVERED, 1, &iov, 1);
		rec[bad[k].at] = bad[k].val;
		memset(rec + 12, 0, 4);
		uint32_t crc = crc32c_update(0, rec, sizeof(rec));
		for (int i = 0; i < 4; i++)
			rec[12 + i] = (uint8_t)(crc >> (8 * i));
		struct scan sc;
		scan_all(rec, sizeof(rec), &sc);
		cr_assert_eq(sc.count, 0, "byte %zu", bad[k].at);
	}
}

Test(record, length_past_the_end_is_a_torn_tail)
{
	struct seg s;
	memset(&s, 0, sizeof(s));
	seg_add(&s, RECORD_EXPIRED, 5, NULL, 0);
	seg_add(&s, RECORD_MESSAGE, 6, "abcdef", 6);
	s.bytes[s.offs[1] + 8] = 7;   /* one more byte than there is */
	struct scan sc;
	scan_all(s.bytes, s.len, &sc);
	cr_assert_eq(sc.count, 1);
	cr_assert_eq(sc.valid_end, s.ends[0]);
	cr_assert_eq(sc.skipped, s.len - s.ends[0]);
}

Test(record, scan_from_past_the_end_returns_nothing)
{
	struct seg s;
	seg_three(&s);
	uint64_t off = s.len + 10, skipped = 0, end = 0;
	struct record_view r;
	cr_assert_eq(record_scan_next(slice_make(s.bytes, s.len), &off, &r, &skipped, &end), 0);
	cr_assert_eq(off, s.len);
	cr_assert_eq(skipped, 0);
}

Test(record, a_parts_table_round_trips_and_is_checked_against_its_record)
{
	struct record_part parts[3] = { { 4, 100, 5000 }, { 5, 24, 4096 }, { 5, 9000, 7 } };
	uint8_t buf[64];
	record_parts_encode(buf, parts, 3);
	memcpy(buf + record_parts_size(3), "rest", 4);
	struct slice in = slice_make(buf, record_parts_size(3) + 4);
	uint32_t n;
	struct slice table, rest;
	cr_assert_eq(record_parts_decode(in, 5, 10000, &n, &table, &rest), 0);
	cr_assert_eq(n, 3);
	cr_assert(slice_eq(rest, SLICE_LIT("rest")));
	for (uint32_t i = 0; i < 3; i++) {
		struct record_part p = record_parts_get(table, i);
		cr_assert_eq(p.segment, parts[i].segment);
		cr_assert_eq(p.offset, parts[i].offset);
		cr_assert_eq(p.len, parts[i].len);
	}
	/* A part after the record that names it, or in a newer segment: not what a writer makes. */
	cr_assert_eq(record_parts_decode(in, 5, 9006, &n, &table, &rest), -EBADMSG);
	cr_assert_eq(record_parts_decode(in, 4, 100000, &n, &table, &rest), -EBADMSG);
	/* An empty part, a count past the table's octets, a count past the bound. */
	parts[1].len = 1;
	record_parts_encode(buf, parts, 3);
	buf[4 + RECORD_PART_SIZE + 8] = 0;
	cr_assert_eq(record_parts_decode(in, 5, 10000, &n, &table, &rest), -EBADMSG);
	record_parts_encode(buf, parts, 3);
	buf[0] = 4;
	cr_assert_eq(record_parts_decode(slice_make(buf, record_parts_size(3)), 5, 10000, &n, &table,
		&rest), -EBADMSG);
	uint32_t big = RECORD_PARTS_MAX + 1;
	memcpy(buf, &big, 4);
	cr_assert_eq(record_parts_decode(in, 5, 10000, &n, &table, &rest), -EBADMSG);
	cr_assert_eq(record_parts_decode(slice_make(buf, 3), 5, 10000, &n, &table, &rest),
		-EBADMSG);
}
