/* proto/data_scan_sse2.c - the DATA scanner's block masks with SSE2 (the x86-64 baseline). */
#include <emmintrin.h>

#include "proto/data_scan_impl.h"

static inline uint64_t
data_scan_sse2_mask(__m128i a, __m128i b, __m128i c, __m128i d, __m128i byte)
{
	uint64_t m0 = (uint16_t)_mm_movemask_epi8(_mm_cmpeq_epi8(a, byte));
	uint64_t m1 = (uint16_t)_mm_movemask_epi8(_mm_cmpeq_epi8(b, byte));
	uint64_t m2 = (uint16_t)_mm_movemask_epi8(_mm_cmpeq_epi8(c, byte));
	uint64_t m3 = (uint16_t)_mm_movemask_epi8(_mm_cmpeq_epi8(d, byte));
	return m0 | (m1 << 16) | (m2 << 32) | (m3 << 48);
}

static inline void
data_scan_sse2_masks(const uint8_t *p, struct data_scan_masks *m)
{
	__m128i a = _mm_loadu_si128((const __m128i *)p);
	__m128i b = _mm_loadu_si128((const __m128i *)(p + 16));
	__m128i c = _mm_loadu_si128((const __m128i *)(p + 32));
	__m128i d = _mm_loadu_si128((const __m128i *)(p + 48));
	m->cr = data_scan_sse2_mask(a, b, c, d, _mm_set1_epi8('\r'));
	m->lf = data_scan_sse2_mask(a, b, c, d, _mm_set1_epi8('\n'));
	m->dot = data_scan_sse2_mask(a, b, c, d, _mm_set1_epi8('.'));
}

size_t
data_scan_feed_sse2(struct data_scan *ds, struct slice in, struct data_scan_out *out)
{
	return data_scan_feed_blocks(ds, in, out, data_scan_sse2_masks);
}
