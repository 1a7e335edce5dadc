/* tests/unit/data_stuff_test.c - the outbound dot-stuffer (RFC 5321 4.5.2, 4.1.1.4, 2.3.8):
 * known inputs, SIMD == scalar on every input, split and capacity, the scalar against a
 * byte-at-a-time model written here, and the round trip through data_scan.
 *
 * Every run also checks that no body octet was copied: the slices that point into the input are,
 * in order, the input itself, each octet exactly once; every other slice is a short static
 * piece. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "proto/data_scan.h"
#include "proto/data_stuff.h"

#define WIRE_MAX (3u * 65536u + 16u)   /* every octet a bare newline or a dot: at most 2x, + end */
#define INSERT_LEN_MAX 5u               /* "\r\n.\r\n" */

struct result {
	uint8_t wire[WIRE_MAX];
	size_t wire_len;
	uint64_t fixed;
	size_t feeds;
};

static const uint8_t dummy[1];
static const enum data_scan_impl impls[] = { DATA_SCAN_SCALAR, DATA_SCAN_SSE2, DATA_SCAN_AVX2 };

/* Feeds in as smtp_client does: pieces of at most `piece` octets, the unconsumed rest offered
 * again; `room` free slots per call (the rest of out pre-filled). */
static void
stuff(enum data_scan_impl impl, const uint8_t *in, size_t len, size_t piece, uint32_t room,
	struct result *r)
{
	struct data_stuff st;
	data_stuff_init(&st);
	r->wire_len = 0;
	r->feeds = 0;
	size_t off = 0;
	size_t next_in = 0;   /* the input octet the next input slice must start at */
	while (off < len) {
		cr_assert_lt(r->feeds, 10000000, "no progress");
		size_t n = len - off < piece ? len - off : piece;
		struct data_stuff_out out = { .count = DATA_STUFF_SLICES_MAX - room };
		for (uint32_t k = 0; k < out.count; k++)
			out.slices[k] = slice_make(dummy, 0);
		size_t used = data_stuff_feed_impl(impl, &st, slice_make(in + off, n), &out);
		r->feeds++;
		cr_assert_leq(used, n);
		cr_assert(used > 0, "a call with room consumes at least one octet");
		for (uint32_t k = DATA_STUFF_SLICES_MAX - room; k < out.count; k++) {
			struct slice s = out.slices[k];
			cr_assert_gt(s.len, 0, "no empty slices");
			if (s.ptr >= in && s.ptr < in + len) {
				cr_assert_eq((size_t)(s.ptr - in), next_in,
					"input slices in order, no gap");
				next_in += s.len;
				cr_assert_leq(next_in, off + used,
					"an input slice ends within what was consumed");
			} else {
				cr_assert_leq(s.len, INSERT_LEN_MAX,
					"an inserted piece is small and static");
			}
			cr_assert_leq(r->wire_len + s.len, WIRE_MAX);
			memcpy(r->wire + r->wire_len, s.ptr, s.len);
			r->wire_len += s.len;
		}
		off += used;
	}
	cr_assert_eq(next_in, len, "every input octet went out exactly once, from the input");
	struct data_stuff_out out = { .count = DATA_STUFF_SLICES_MAX - 1 };
	data_stuff_end(&st, &out);
	cr_assert_eq(out.count, DATA_STUFF_SLICES_MAX);
	struct slice end = out.slices[DATA_STUFF_SLICES_MAX - 1];
	memcpy(r->wire + r->wire_len, end.ptr, end.len);
	r->wire_len += end.len;
	r->fixed = data_stuff_fixed(&st);
}

/* The definition, one octet at a time, written independently of proto/data_stuff.c. */
static size_t
model(const uint8_t *in, size_t len, uint8_t *outb, uint64_t *fixed)
{
	size_t o = 0;
	bool line_start = true;
	*fixed = 0;
	for (size_t i = 0; i < len; i++) {
		uint8_t c = in[i];
		if (c == '\r') {
			outb[o++] = '\r';
			outb[o++] = '\n';
			if (i + 1 < len && in[i + 1] == '\n')
				i++;
			else
				(*fixed)++;
			line_start = true;
			continue;
		}
		if (c == '\n') {
			outb[o++] = '\r';
			outb[o++] = '\n';
			(*fixed)++;
			line_start = true;
			continue;
		}
		if (line_start && c == '.')
			outb[o++] = '.';
		outb[o++] = c;
		line_start = false;
	}
	if (!line_start) {
		outb[o++] = '\r';
		outb[o++] = '\n';
	}
	memcpy(outb + o, ".\r\n", 3);
	return o + 3;
}

static void
expect_n(const char *in, size_t len, const char *wire, uint64_t fixed)
{
	static struct result r;
	for (uint32_t k = 0; k < 3; k++) {
		if (!data_scan_impl_supported(impls[k]))
			continue;
		for (size_t piece = 1; piece <= len + 1; piece++) {
			for (uint32_t room = DATA_STUFF_ROOM_MIN; room <= DATA_STUFF_SLICES_MAX;
				room += DATA_STUFF_SLICES_MAX - DATA_STUFF_ROOM_MIN) {
				stuff(impls[k], (const uint8_t *)in, len, piece, room, &r);
				cr_assert_eq(r.wire_len, strlen(wire),
					"%s piece %zu room %u: length %zu",
					data_scan_impl_name(impls[k]), piece, room, r.wire_len);
				cr_assert(memcmp(r.wire, wire, r.wire_len) == 0,
					"%s piece %zu: \"%.*s\"", data_scan_impl_name(impls[k]),
					piece, (int)r.wire_len, r.wire);
				cr_assert_eq(r.fixed, fixed);
			}
		}
	}
}

#define expect(in, wire, fixed) expect_n((in), sizeof(in) - 1, (wire), (fixed))

Test(data_stuff, empty_body_is_just_the_terminator) /* RFC 5321 4.1.1.4 */
{
	expect("", ".\r\n", 0);
}

Test(data_stuff, a_body_ending_in_crlf_gets_only_the_dot_line) /* RFC 5321 4.1.1.4 */
{
	expect("Subject: x\r\n\r\nbody\r\n", "Subject: x\r\n\r\nbody\r\n.\r\n", 0);
}

Test(data_stuff, a_body_without_a_final_crlf_gets_one) /* RFC 5321 4.1.1.4 */
{
	expect("a", "a\r\n.\r\n", 0);
	expect("a\r\nb", "a\r\nb\r\n.\r\n", 0);
}

Test(data_stuff, line_start_dots_are_doubled) /* RFC 5321 4.5.2 */
{
	expect(".", "..\r\n.\r\n", 0);
	expect(".\r\n", "..\r\n.\r\n", 0);
	expect(".a\r\n..\r\nb.\r\n.\r\n", "..a\r\n...\r\nb.\r\n..\r\n.\r\n", 0);
}

Test(data_stuff, dots_inside_lines_are_left_alone) /* RFC 5321 4.5.2 */
{
	expect("a.b\r\n a .\r\n", "a.b\r\n a .\r\n.\r\n", 0);
}

Test(data_stuff, a_bare_lf_goes_out_as_crlf_and_starts_a_line) /* RFC 5321 2.3.8 */
{
	expect("a\nb\r\n", "a\r\nb\r\n.\r\n", 1);
	expect("a\n.\n", "a\r\n..\r\n.\r\n", 2);   /* LF.LF never reaches a receiver as an end */
	expect("\n", "\r\n.\r\n", 1);
}

Test(data_stuff, a_bare_cr_goes_out_as_crlf_and_starts_a_line) /* RFC 5321 2.3.8 */
{
	expect("a\rb\r\n", "a\r\nb\r\n.\r\n", 1);
	expect("a\r.\r\n", "a\r\n..\r\n.\r\n", 1);
	expect("a\r", "a\r\n.\r\n", 1);            /* the final CR gets its LF, then the dot */
	expect("\r\r\n", "\r\n\r\n.\r\n", 1);
	expect("a\r.\r.", "a\r\n..\r\n..\r\n.\r\n", 2);
}

Test(data_stuff, nul_and_high_octets_are_data) /* RFC 6152 2 */
{
	static const char in[] = "\0.\r\n.\0\xff\r\n";
	static const char wire[] = "\0.\r\n..\0\xff\r\n.\r\n";
	static struct result r;
	stuff(DATA_SCAN_SCALAR, (const uint8_t *)in, sizeof(in) - 1, 3, DATA_STUFF_ROOM_MIN, &r);
	cr_assert_eq(r.wire_len, sizeof(wire) - 1);
	cr_assert(memcmp(r.wire, wire, r.wire_len) == 0);
}

Test(data_stuff, plain_text_goes_out_as_one_slice) /* RFC 5321 4.5.2, zero copy */
{
	static uint8_t buf[4096];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (i % 70 == 68) ? '\r' : (i % 70 == 69) ? '\n' : 'x';
	for (uint32_t k = 0; k < 3; k++) {
		if (!data_scan_impl_supported(impls[k]))
			continue;
		struct data_stuff st;
		data_stuff_init(&st);
		struct data_stuff_out out = { .count = 0 };
		cr_assert_eq(
			data_stuff_feed_impl(impls[k], &st, slice_make(buf, sizeof(buf)), &out),
			sizeof(buf));
		cr_assert_eq(out.count, 1, "%s", data_scan_impl_name(impls[k]));
		cr_assert_eq(out.slices[0].ptr, buf);
		cr_assert_eq(out.slices[0].len, sizeof(buf));
	}
}

Test(data_stuff, a_full_output_stops_early_and_the_rest_follows) /* RFC 5321 4.5.2 */
{
	static uint8_t buf[600];
	for (size_t i = 0; i < sizeof(buf); i++)   /* 200 lines ".\r\n": 200 events */
		buf[i] = ".\r\n"[i % 3];
	struct data_stuff st;
	data_stuff_init(&st);
	struct data_stuff_out out = { .count = 0 };
	size_t used = data_stuff_feed(&st, slice_make(buf, sizeof(buf)), &out);
	cr_assert_lt(used, sizeof(buf), "stopped early");
	cr_assert_geq(out.count, DATA_STUFF_SLICES_MAX - DATA_STUFF_SLICES_PER_EVENT + 1);
	cr_assert_leq(out.count, DATA_STUFF_SLICES_MAX);
	cr_assert_eq(used % 3, 0, "stopped at a dot, before its insert");
}

/* Random inputs from an alphabet heavy in the octets that matter. */
static size_t
random_input(uint8_t *buf, size_t max, uint32_t *seed)
{
	static const uint8_t alphabet[] = { '\r', '\n', '.', '.', 'a', '\0', '\r', '\n', 'b' };
	size_t len = (size_t)(rand_r(seed) % (int)max);
	for (size_t i = 0; i < len; i++)
		buf[i] = alphabet[rand_r(seed) % (int)sizeof(alphabet)];
	return len;
}

static void
compare_all(const uint8_t *in, size_t len, size_t piece, uint32_t room)
{
	static struct result ref, got;
	static uint8_t want[WIRE_MAX];
	uint64_t want_fixed;
	size_t want_len = model(in, len, want, &want_fixed);
	stuff(DATA_SCAN_SCALAR, in, len, len ? len : 1, DATA_STUFF_SLICES_MAX, &ref);
	cr_assert_eq(ref.wire_len, want_len, "scalar vs model: length");
	cr_assert(memcmp(ref.wire, want, want_len) == 0, "scalar vs model: bytes");
	cr_assert_eq(ref.fixed, want_fixed, "scalar vs model: fixed");
	for (uint32_t k = 0; k < 3; k++) {
		if (!data_scan_impl_supported(impls[k]))
			continue;
		stuff(impls[k], in, len, piece, room, &got);
		cr_assert_eq(got.wire_len, ref.wire_len, "%s: wire length",
			data_scan_impl_name(impls[k]));
		cr_assert(memcmp(got.wire, ref.wire, ref.wire_len) == 0, "%s: wire bytes",
			data_scan_impl_name(impls[k]));
		cr_assert_eq(got.fixed, ref.fixed);
	}
}

/* RFC 5321 4.5.2 */
Test(data_stuff, simd_equals_scalar_equals_model_on_random_inputs_splits_and_capacities)
{
	static uint8_t buf[4096];
	uint32_t seed = 20261124;
	for (uint32_t round = 0; round < 3000; round++) {
		size_t len = random_input(buf, sizeof(buf), &seed);
		size_t piece = 1 + (size_t)(rand_r(&seed) % 300);
		uint32_t room = DATA_STUFF_ROOM_MIN
			+ (uint32_t)(rand_r(&seed)
				% (DATA_STUFF_SLICES_MAX - DATA_STUFF_ROOM_MIN + 1));
		compare_all(buf, len, piece, room);
	}
}

Test(data_stuff, simd_equals_scalar_with_events_on_lane_and_block_boundaries) /* RFC 5321 4.5.2 */
{
	static uint8_t buf[256];
	static const char *events[] = { "\r\n.", "\r.", "\n.", "\r", "\n", "\r\n", ".", "\r\r" };
	for (uint32_t ev = 0; ev < ARRAY_LEN(events); ev++) {
		size_t elen = strlen(events[ev]);
		for (size_t at = 0; at < 200; at++) {   /* event at every offset across 3 blocks */
			memset(buf, 'x', sizeof(buf));
			memcpy(buf + at, events[ev], elen);
			for (size_t piece = 1; piece <= 130; piece += 43)
				compare_all(buf, 210, piece, DATA_STUFF_SLICES_MAX);
			compare_all(buf, 210, 64, DATA_STUFF_ROOM_MIN);
			/* The event at the very end of the input: */
			compare_all(buf, at + elen, 210, DATA_STUFF_SLICES_MAX);
		}
	}
}

Test(data_stuff, every_short_mix_of_cr_lf_dot_agrees) /* RFC 5321 4.5.2, 2.3.8 */
{
	static uint8_t buf[16];
	for (uint32_t pattern = 0; pattern < (1u << 16); pattern++) {   /* all 8-octet mixes */
		for (uint32_t i = 0; i < 8; i++)
			buf[i] = "\r\n.x"[(pattern >> (2 * i)) & 3u];
		compare_all(buf, 8, 8, DATA_STUFF_SLICES_MAX);
		compare_all(buf, 8, 3, DATA_STUFF_ROOM_MIN);
	}
}

/* The receiving side of the wire: data_scan unstuffs it. */
static void
unstuff(const uint8_t *wire, size_t len, uint8_t *body, size_t *body_len, size_t *consumed,
	bool *done, uint64_t *bare)
{
	struct data_scan ds;
	data_scan_init(&ds);
	size_t off = 0;
	*body_len = 0;
	while (off < len && !data_scan_done(&ds)) {
		struct data_scan_out out = { .count = 0 };
		size_t used = data_scan_feed(&ds, slice_make(wire + off, len - off), &out);
		for (uint32_t k = 0; k < out.count; k++) {
			memcpy(body + *body_len, out.slices[k].ptr, out.slices[k].len);
			*body_len += out.slices[k].len;
		}
		off += used;
	}
	*consumed = off;
	*done = data_scan_done(&ds);
	*bare = data_scan_bare_newlines(&ds);
}

/* What a body becomes after the round trip: bare newlines made CRLF, a final CRLF added. */
static size_t
normalized(const uint8_t *in, size_t len, uint8_t *outb)
{
	size_t o = 0;
	for (size_t i = 0; i < len; i++) {
		if (in[i] == '\r' || in[i] == '\n') {
			outb[o++] = '\r';
			outb[o++] = '\n';
			if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n')
				i++;
		} else {
			outb[o++] = in[i];
		}
	}
	if (o > 0 && !(o >= 2 && outb[o - 2] == '\r' && outb[o - 1] == '\n')) {
		outb[o++] = '\r';
		outb[o++] = '\n';
	}
	return o;
}

static void
round_trip(const uint8_t *in, size_t len, size_t piece)
{
	static struct result r;
	static uint8_t body[WIRE_MAX], want[WIRE_MAX];
	stuff(data_scan_best_impl(), in, len, piece, DATA_STUFF_SLICES_MAX, &r);
	size_t body_len, consumed;
	bool done;
	uint64_t bare;
	unstuff(r.wire, r.wire_len, body, &body_len, &consumed, &done, &bare);
	cr_assert(done, "the receiver sees the end of data");
	cr_assert_eq(consumed, r.wire_len, "... exactly at the end of the wire bytes");
	cr_assert_eq(bare, 0, "no bare newline ever reaches the receiver");
	size_t want_len = normalized(in, len, want);
	cr_assert_eq(body_len, want_len);
	cr_assert(memcmp(body, want, want_len) == 0, "the receiver gets the body back");
}

Test(data_stuff, round_trip_through_data_scan_gives_the_body_back) /* RFC 5321 4.5.2 */
{
	static uint8_t buf[4096];
	uint32_t seed = 7;
	for (uint32_t round = 0; round < 2000; round++) {
		size_t len = random_input(buf, sizeof(buf), &seed);
		round_trip(buf, len, 1 + (size_t)(rand_r(&seed) % 500));
	}
}

Test(data_stuff, round_trip_is_exact_for_crlf_bodies) /* RFC 5321 4.5.2 */
{
	static uint8_t buf[8192], body[WIRE_MAX];
	static struct result r;
	uint32_t seed = 11;
	for (uint32_t round = 0; round < 500; round++) {
		size_t len = 0;
		size_t lines = (size_t)(rand_r(&seed) % 60);
		for (size_t l = 0; l < lines; l++) { /* lines of "." and "x", each ending in CRLF */
			size_t n = (size_t)(rand_r(&seed) % 100);
			for (size_t i = 0; i < n; i++)
				buf[len++] = rand_r(&seed) % 3 == 0 ? '.' : 'x';
			buf[len++] = '\r';
			buf[len++] = '\n';
		}
		stuff(data_scan_best_impl(), buf, len, 1 + (size_t)(rand_r(&seed) % 200),
			DATA_STUFF_SLICES_MAX, &r);
		cr_assert_eq(r.fixed, 0);
		size_t body_len, consumed;
		bool done;
		uint64_t bare;
		unstuff(r.wire, r.wire_len, body, &body_len, &consumed, &done, &bare);
		cr_assert(done);
		cr_assert_eq(body_len, len);
		cr_assert(memcmp(body, buf, len) == 0, "byte for byte the stored body");
	}
}
