/* tests/fuzz/data_scan_fuzz.c - the DATA scanner: scalar, SSE2 and AVX2 must agree on body,
 * consumed length, end and bare-newline count, whatever the input and its split into reads.
 * The first two bytes choose the read size and the slice room. */
#include <stdlib.h>
#include <string.h>

#include "proto/data_scan.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_result {
	uint8_t body[1 << 16];
	size_t body_len, consumed;
	bool done;
	uint64_t bare;
};

static const uint8_t fuzz_dummy[1];

static void
fuzz_scan(enum data_scan_impl impl, const uint8_t *in, size_t len, size_t piece, uint32_t room,
	struct fuzz_result *r)
{
	struct data_scan ds;
	data_scan_init(&ds);
	r->body_len = 0;
	size_t off = 0;
	while (off < len && !data_scan_done(&ds)) {
		size_t n = len - off < piece ? len - off : piece;
		struct data_scan_out out = { .count = DATA_SCAN_SLICES_MAX - room };
		for (uint32_t k = 0; k < out.count; k++)
			out.slices[k] = (struct slice){ .ptr = fuzz_dummy, .len = 0 };
		size_t used = data_scan_feed_impl(impl, &ds, (struct slice){ in + off, n }, &out);
		if (used > n)
			abort();
		for (uint32_t k = DATA_SCAN_SLICES_MAX - room; k < out.count; k++) {
			if (r->body_len + out.slices[k].len > sizeof(r->body))
				abort();   /* the body is never longer than the input */
			memcpy(r->body + r->body_len, out.slices[k].ptr, out.slices[k].len);
			r->body_len += out.slices[k].len;
		}
		off += used;
	}
	r->consumed = off;
	r->done = data_scan_done(&ds);
	r->bare = data_scan_bare_newlines(&ds);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fuzz_result ref, got;
	if (size < 2 || size > 60000)
		return 0;
	size_t piece = 1 + data[0];
	uint32_t room = 3 + data[1] % (DATA_SCAN_SLICES_MAX - 3);
	data += 2;
	size -= 2;
	fuzz_scan(DATA_SCAN_SCALAR, data, size, size ? size : 1, DATA_SCAN_SLICES_MAX, &ref);
	static const enum data_scan_impl impls[] = { DATA_SCAN_SCALAR, DATA_SCAN_SSE2,
		DATA_SCAN_AVX2 };
	for (uint32_t k = 0; k < 3; k++) {
		if (!data_scan_impl_supported(impls[k]))
			continue;
		fuzz_scan(impls[k], data, size, piece, room, &got);
		if (got.body_len != ref.body_len || memcmp(got.body, ref.body, ref.body_len) != 0
			|| got.consumed != ref.consumed || got.done != ref.done || got.bare != ref.bare)
			abort();
	}
	return 0;
}
