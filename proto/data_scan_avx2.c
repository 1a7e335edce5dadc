/* proto/data_scan_avx2.c - the DATA scanner with AVX2 block masks; built with -mavx2 alone and
 * called only when cpuid says the CPU has it (data_scan_feed). */
#include "proto/data_scan_simd.h"

size_t
data_scan_feed_avx2(struct data_scan *ds, struct slice in, struct data_scan_out *out)
{
	return data_scan_feed_blocks(ds, in, out, data_scan_avx2_masks);
}
