/* proto/data_scan_simd.h - private to the DATA scanner family (data_scan, data_stuff): the block
 * masks of 64 octets (CR, LF, '.') with SSE2 and, in translation units built with -mavx2, AVX2.
 *
 * Included only by the SIMD translation units, so that the scalar code never sees an intrinsic.
 * The functions are static inline: each driver (data_scan_impl.h, data_stuff_impl.h) inlines its
 * masks into one loop. The AVX2 masks exist only where __AVX2__ is defined, that is in the files
 * that meson builds with -mavx2 and that run only after cpuid said yes. */
#ifndef RINGMTA_PROTO_DATA_SCAN_SIMD_H
#define RINGMTA_PROTO_DATA_SCAN_SIMD_H
#include <emmintrin.h>
#include <stdint.h>

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

#ifdef __AVX2__
#include <immintrin.h>

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
#endif
#endif
