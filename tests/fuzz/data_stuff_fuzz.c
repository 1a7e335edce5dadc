/* tests/fuzz/data_stuff_fuzz.c - the outbound dot-stuffer: scalar, SSE2 and AVX2 must give the
 * same wire bytes whatever the body and its split into pieces; the wire form must consist of the
 * body's own octets in order plus small static pieces; and data_scan must read it back as the
 * body, with CRLF line ends, an end exactly at the last octet and no bare newline. The first two
 * bytes choose the piece size and the slice room. */
#include <stdlib.h>
#include <string.h>

#include "proto/data_scan.h"
#include "proto/data_stuff.h"

#define FUZZ_BODY_MAX 60000u
#define FUZZ_WIRE_MAX (2u * FUZZ_BODY_MAX + 8u)
#define FUZZ_INSERT_LEN_MAX 5u

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_wire {
	uint8_t bytes[FUZZ_WIRE_MAX];
	size_t len;
};

static const uint8_t fuzz_dummy[1];

static void
fuzz_stuff(enum data_scan_impl impl, const uint8_t *in, size_t len, size_t piece, uint32_t room,
	struct fuzz_wire *w)
{
	struct data_stuff st;
	data_stuff_init(&st);
	w->len = 0;
	size_t off = 0, next_in = 0;
	while (off < len) {
		size_t n = len - off < piece ? len - off : piece;
		struct data_stuff_out out = { .count = DATA_STUFF_SLICES_MAX - room };
		for (uint32_t k = 0; k < out.count; k++)
			out.slices[k] = (struct slice){ .ptr = fuzz_dummy, .len = 0 };
		size_t used = data_stuff_feed_impl(impl, &st, (struct slice){ in + off, n }, &out);
		CHECK(used > 0 && used <= n);
		for (uint32_t k = DATA_STUFF_SLICES_MAX - room; k < out.count; k++) {
			struct slice s = out.slices[k];
			if (s.ptr >= in && s.ptr < in + len) {
				CHECK((size_t)(s.ptr - in) == next_in);
				next_in += s.len;
			} else {
				CHECK(s.len <= FUZZ_INSERT_LEN_MAX);
			}
			CHECK(w->len + s.len <= FUZZ_WIRE_MAX);
			memcpy(w->bytes + w->len, s.ptr, s.len);
			w->len += s.len;
		}
		off += used;
	}
	CHECK(next_in == len);
	struct data_stuff_out out = { .count = 0 };
	data_stuff_end(&st, &out);
	CHECK(out.count == 1);
	memcpy(w->bytes + w->len, out.slices[0].ptr, out.slices[0].len);
	w->len += out.slices[0].len;
}

/* data_scan must end exactly at the end of the wire bytes, with no bare newline, and give back
 * the body but for its line ends. */
static void
fuzz_round_trip(const struct fuzz_wire *w, const uint8_t *in, size_t len)
{
	static uint8_t body[FUZZ_WIRE_MAX];
	struct data_scan ds;
	data_scan_init(&ds);
	size_t off = 0, body_len = 0;
	while (off < w->len && !data_scan_done(&ds)) {
		struct data_scan_out out = { .count = 0 };
		off += data_scan_feed(&ds, (struct slice){ w->bytes + off, w->len - off }, &out);
		for (uint32_t k = 0; k < out.count; k++) {
			memcpy(body + body_len, out.slices[k].ptr, out.slices[k].len);
			body_len += out.slices[k].len;
		}
	}
	CHECK(data_scan_done(&ds) && off == w->len && data_scan_bare_newlines(&ds) == 0);
	size_t b = 0;
	for (size_t i = 0; i < len; i++) {   /* every CR, LF or CRLF of the body is one CRLF */
		if (in[i] == '\r' || in[i] == '\n') {
			CHECK(b + 2 <= body_len && body[b] == '\r' && body[b + 1] == '\n');
			b += 2;
			if (in[i] == '\r' && i + 1 < len && in[i + 1] == '\n')
				i++;
		} else {
			CHECK(b < body_len && body[b] == in[i]);
			b++;
		}
	}
	if (b != body_len)   /* only the final CRLF may be added */
		CHECK(b + 2 == body_len && body[b] == '\r' && body[b + 1] == '\n');
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fuzz_wire ref, got;
	if (size < 2 || size - 2 > FUZZ_BODY_MAX)
		return 0;
	size_t piece = 1 + data[0];
	uint32_t room
		= DATA_STUFF_ROOM_MIN + data[1] % (DATA_STUFF_SLICES_MAX - DATA_STUFF_ROOM_MIN + 1);
	data += 2;
	size -= 2;
	fuzz_stuff(DATA_SCAN_SCALAR, data, size, size ? size : 1, DATA_STUFF_SLICES_MAX, &ref);
	fuzz_round_trip(&ref, data, size);
	static const enum data_scan_impl impls[] = { DATA_SCAN_SCALAR, DATA_SCAN_SSE2,
		DATA_SCAN_AVX2 };
	for (uint32_t k = 0; k < 3; k++) {
		if (!data_scan_impl_supported(impls[k]))
			continue;
		fuzz_stuff(impls[k], data, size, piece, room, &got);
		CHECK(got.len == ref.len && memcmp(got.bytes, ref.bytes, ref.len) == 0);
	}
	return 0;
}
