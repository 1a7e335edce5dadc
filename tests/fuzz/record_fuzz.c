/* tests/fuzz/record_fuzz.c - segment scanning and envelope decoding on random bytes.
 *
 * Input: a mode byte, then the bytes. Mode & 3: 0 scans them as a segment image; 1 decodes them
 * as a MESSAGE payload; 2 first recomputes the CRC of every plausible header in a copy (walking
 * from record to record) so that the fuzzer reaches records that validate, then scans. Checked:
 * every record lies inside the segment, in order, and skipped bytes plus record bytes make the
 * whole; a decoded envelope stays inside its payload, its recipients all decode, and encoding
 * it again gives the same bytes (the encoding is canonical); state payloads have their type's
 * length. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "queue/crc32c.h"
#include "queue/record.h"

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)
#define FUZZ_INPUT_MAX (1u << 20)

static bool
fuzz_inside(struct slice inner, struct slice outer)
{
	return inner.len == 0
		|| (inner.ptr >= outer.ptr && inner.ptr + inner.len <= outer.ptr + outer.len);
}

static void
fuzz_envelope(struct slice payload)
{
	static struct record_rcpt rcpts[RECORD_RCPT_MAX];
	struct record_envelope_view v;
	if (record_envelope_decode(payload, &v) != 0)
		return;
	CHECK(v.rcpt_count >= 1 && v.rcpt_count <= RECORD_RCPT_MAX);
	CHECK(fuzz_inside(v.client_addr, payload) && fuzz_inside(v.helo, payload));
	CHECK(fuzz_inside(v.mail_from, payload) && fuzz_inside(v.dsn_envid, payload));
	CHECK(fuzz_inside(v.body, payload) && v.body.ptr + v.body.len == payload.ptr + payload.len);
	for (uint32_t i = 0; i < v.rcpt_count; i++) {
		CHECK(record_envelope_rcpt(&v, i, &rcpts[i]) == 0);
		CHECK(fuzz_inside(rcpts[i].path, payload) && fuzz_inside(rcpts[i].orcpt, payload));
		CHECK((rcpts[i].notify & ~RECORD_NOTIFY_MASK) == 0);
	}
	struct record_rcpt last;
	CHECK(record_envelope_rcpt(&v, v.rcpt_count, &last) != 0);
	struct record_envelope env = {
		.arrival_ms = v.arrival_ms, .client_addr = v.client_addr, .helo = v.helo,
		.mail_from = v.mail_from, .declared_size = v.declared_size,
		.body_type = v.body_type, .smtputf8 = v.smtputf8, .dsn_ret = v.dsn_ret,
		.dsn_envid = v.dsn_envid, .rcpt_count = v.rcpt_count, .rcpts = rcpts,
	};
	size_t n = record_envelope_size(&env);
	CHECK(n == payload.len - v.body.len);
	uint8_t *again = malloc(n);
	CHECK(again != NULL);
	CHECK(record_envelope_encode(&env, again, n) == n);
	CHECK(memcmp(again, payload.ptr, n) == 0);
	free(again);
}

static void
fuzz_scan(struct slice seg)
{
	uint64_t off = 0, skipped = 0, valid_end = 0, record_bytes = 0, prev_end = 0;
	struct record_view r;
	for (size_t guard = 0; guard <= seg.len; guard++) {
		if (record_scan_next(seg, &off, &r, &skipped, &valid_end) != 1) {
			CHECK(off == seg.len);
			CHECK(skipped + record_bytes == seg.len);
			CHECK(valid_end == prev_end);
			return;
		}
		CHECK(r.offset >= prev_end && r.size >= RECORD_HEADER_SIZE);
		CHECK(r.offset + r.size == off && off <= seg.len && valid_end == off);
		CHECK(r.type >= RECORD_MESSAGE && r.type <= RECORD_TYPE_LAST);
		CHECK(r.payload.len == r.size - RECORD_HEADER_SIZE && fuzz_inside(r.payload, seg));
		record_bytes += r.size;
		prev_end = off;
		struct record_state st;
		uint32_t n;
		struct slice states, message;
		uint32_t flags;
		if (r.type == RECORD_MESSAGE) {
			CHECK(record_state_decode(&r, &st) != 0);
			fuzz_envelope(r.payload);
		} else if (r.type == RECORD_COPY) {
			CHECK(record_state_decode(&r, &st) != 0);
			if (record_copy_decode(r.payload, &n, &flags, &states, &message) == 0) {
				CHECK(n >= 1 && n <= RECORD_RCPT_MAX);
				CHECK((flags & ~RECORD_COPY_FLAGS) == 0);
				CHECK(states.len == n * RECORD_COPY_STATE_SIZE);
				CHECK(fuzz_inside(message, r.payload));
				for (uint32_t i = 0; i < n; i++)
					CHECK(record_copy_state(states, i).state <= 3);
				fuzz_envelope(message);
			}
		} else if (record_state_decode(&r, &st) == 0) {
			CHECK(r.payload.len <= RECORD_STATE_PAYLOAD_MAX);
		}
	}
	abort();   /* each record takes at least a header */
}

/* Walks buf as records, giving each plausible header the CRC of what follows it. */
static void
fuzz_fix_crcs(uint8_t *buf, size_t len)
{
	size_t off = 0;
	while (len - off >= RECORD_HEADER_SIZE) {
		uint8_t *h = buf + off;
		memcpy(h, "RMQ1", 4);
		h[5] = RECORD_VERSION;
		h[6] = h[7] = 0;
		h[4] = (uint8_t)(h[4] % RECORD_TYPE_LAST + 1);
		uint32_t plen = (uint32_t)h[8] | (uint32_t)h[9] << 8 | (uint32_t)h[10] << 16
			| (uint32_t)h[11] << 24;
		if (plen > len - off - RECORD_HEADER_SIZE)
			return;   /* leave a torn tail */
		memset(h + 12, 0, 4);
		uint32_t crc = crc32c_update(0, h, RECORD_HEADER_SIZE + plen);
		for (int i = 0; i < 4; i++)
			h[12 + i] = (uint8_t)(crc >> (8 * i));
		off += RECORD_HEADER_SIZE + plen;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1 || size - 1 > FUZZ_INPUT_MAX)
		return 0;
	struct slice in = slice_make(data + 1, size - 1);
	switch (data[0] & 3u) {
	case 0:
		fuzz_scan(in);
		break;
	case 1:
		fuzz_envelope(in);
		break;
	default: {
		uint8_t *copy = malloc(in.len + 1);
		CHECK(copy != NULL);
		if (in.len > 0)
			memcpy(copy, in.ptr, in.len);
		fuzz_fix_crcs(copy, in.len);
		fuzz_scan(slice_make(copy, in.len));
		free(copy);
		break;
	}
	}
	return 0;
}
