/* proto/data_scan_avx2.c - the DATA scanner's block masks with AVX2; built with -mavx2 alone and
 * called only when cpuid says the CPU has it (data_scan_feed). */
#include <immintrin.h>

#include "proto/data_scan_impl.h"

static inline uint64_t
data_scan_avx2_mask(__m256i lo, __m256i hi, __m256i byte)
{
	uint64_t a = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(lo, byte));
	uint64_t b = (uint32_t)_mm256_movemask_epi8(_mm256_cmpeq_epi8(hi, byte));
	return a | (b << 32);
}

static inline void
data_scan_avx2_masks(const uint8_t *p, struct data_scan_masks *m)
{
	__m256i lo = _mm256_loadu_si256((const __m256i *)p);
	__m256i hi = _mm256_loadu_si256((const __m256i *)(p + 32));
	m->cr = data_scan_avx2_mask(lo, hi, _mm256_set1_epi8('\r'));
	m->lf = data_scan_avx2_mask(lo, hi, _mm256_set1_epi8('\n'));
	m->dot = data_scan_avx2_mask(lo, hi, _mm256_set1_epi8('.'));
}

size_t
data_scan_feed_avx2(struct data_scan *ds, struct slice in, struct data_scan_out *out)
{
	return data_scan_feed_blocks(ds, in, out, data_scan_avx2_masks);
}
