/* proto/data_scan_sse2.c - the DATA scanner with SSE2 (the x86-64 baseline) block masks. */
#include "proto/data_scan_simd.h"

size_t
data_scan_feed_sse2(struct data_scan *ds, struct slice in, struct data_scan_out *out)
{
	return data_scan_feed_blocks(ds, in, out, data_scan_sse2_masks);
}
