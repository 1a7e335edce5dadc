/* queue/crc32c.c - CRC32C, hardware when available; see crc32c.h. */
#include "queue/crc32c.h"

#include <nmmintrin.h>
#include <string.h>

#define CRC32C_POLY_REFLECTED 0x82F63B78u

static uint32_t crc32c_table[256];
static bool crc32c_table_ready;

static void
crc32c_table_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = (c & 1u) ? (c >> 1) ^ CRC32C_POLY_REFLECTED : c >> 1;
		crc32c_table[i] = c;
	}
	crc32c_table_ready = true;
}

uint32_t
crc32c_update_table(uint32_t crc, const void *p, size_t n)
{
	if (!crc32c_table_ready)
		crc32c_table_init();
	const uint8_t *b = p;
	uint32_t c = ~crc;
	for (size_t i = 0; i < n; i++)
		c = crc32c_table[(c ^ b[i]) & 0xffu] ^ (c >> 8);
	return ~c;
}

__attribute__((target("sse4.2"))) static uint32_t
crc32c_update_hw(uint32_t crc, const void *p, size_t n)
{
	const uint8_t *b = p;
	uint64_t c = ~crc;
	while (n >= 8) {
		uint64_t w;
		memcpy(&w, b, 8);
		c = _mm_crc32_u64(c, w);
		b += 8;
		n -= 8;
	}
	uint32_t c32 = (uint32_t)c;
	while (n-- > 0)
		c32 = _mm_crc32_u8(c32, *b++);
	return ~c32;
}

bool
crc32c_hw_available(void)
{
	return __builtin_cpu_supports("sse4.2");
}

uint32_t
crc32c_update(uint32_t crc, const void *p, size_t n)
{
	static int hw = -1;   /* decided once; a benign race writes the same value */
	if (hw < 0)
		hw = crc32c_hw_available();
	return hw ? crc32c_update_hw(crc, p, n) : crc32c_update_table(crc, p, n);
}
