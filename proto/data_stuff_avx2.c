/* proto/data_stuff_avx2.c - the dot-stuffer with AVX2 block masks; built with -mavx2 alone and
 * called only when cpuid says the CPU has it (data_stuff_feed). */
#include "proto/data_scan_simd.h"
#include "proto/data_stuff_impl.h"

size_t
data_stuff_feed_avx2(struct data_stuff *st, struct slice in, struct data_stuff_out *out)
{
	return data_stuff_feed_blocks(st, in, out, data_scan_avx2_masks);
}
