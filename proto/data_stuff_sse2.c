/* proto/data_stuff_sse2.c - the dot-stuffer with SSE2 (the x86-64 baseline) block masks. */
#include "proto/data_scan_simd.h"
#include "proto/data_stuff_impl.h"

size_t
data_stuff_feed_sse2(struct data_stuff *st, struct slice in, struct data_stuff_out *out)
{
	return data_stuff_feed_blocks(st, in, out, data_scan_sse2_masks);
}
