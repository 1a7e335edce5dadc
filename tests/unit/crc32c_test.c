/* tests/unit/crc32c_test.c - CRC32C (RFC 3720 B.4) by table and by SSE4.2 instruction. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"
#include "queue/crc32c.h"

/* The definition, one bit at a time: what both fast forms must equal. */
static uint32_t
crc_bitwise(uint32_t crc, const uint8_t *p, size_t n)
{
	uint32_t c = ~crc;
	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c & 1u) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
	}
	return ~c;
}

Test(crc32c, check_value_of_123456789) /* RFC 3720 B.4; the catalogue's "check" value */
{
	cr_assert_eq(crc32c_update(0, "123456789", 9), 0xE3069283u);
	cr_assert_eq(crc32c_update_table(0, "123456789", 9), 0xE3069283u);
}

Test(crc32c, rfc3720_b4_vectors) /* RFC 3720 B.4: 32 bytes of zeros, ones, ascending, descending */
{
	uint8_t buf[32];
	memset(buf, 0, sizeof(buf));
	cr_assert_eq(crc32c_update(0, buf, 32), 0x8A9136AAu);
	memset(buf, 0xff, sizeof(buf));
	cr_assert_eq(crc32c_update(0, buf, 32), 0x62A8AB43u);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)i;
	cr_assert_eq(crc32c_update(0, buf, 32), 0x46DD794Eu);
	for (int i = 0; i < 32; i++)
		buf[i] = (uint8_t)(31 - i);
	cr_assert_eq(crc32c_update(0, buf, 32), 0x113FDB5Cu);
}

Test(crc32c, empty_input_keeps_the_crc)
{
	cr_assert_eq(crc32c_update(0, NULL, 0), 0);
	cr_assert_eq(crc32c_update(0x12345678u, NULL, 0), 0x12345678u);
	cr_assert_eq(crc32c_update_table(0x12345678u, NULL, 0), 0x12345678u);
}

Test(crc32c, table_and_instruction_agree_at_every_length_and_alignment)
{
	enum { LEN_MAX = 300 };
	uint8_t buf[LEN_MAX + 8];
	srand(7);
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)rand();
	bool hw = crc32c_hw_available();
	for (size_t align = 0; align < 8; align++) {
		for (size_t n = 0; n <= LEN_MAX; n++) {
			uint32_t want = crc_bitwise(0, buf + align, n);
			cr_assert_eq(crc32c_update_table(0, buf + align, n), want, "n=%zu", n);
			cr_assert_eq(crc32c_update(0, buf + align, n), want, "n=%zu", n);
			if (hw)
				cr_assert_eq(crc32c_update_hw(0, buf + align, n), want, "n=%zu", n);
		}
	}
}

Test(crc32c, three_stream_blocks_agree_around_every_stripe_size)
{
	/* The instruction runs three streams over blocks of 3 x 512 and 3 x 4096 bytes and joins
	 * them by multiplication: check lengths at and around those sizes and their multiples. */
	enum { LEN_MAX = 3 * 4096 * 3 + 3 * 512 * 2 + 64 };
	uint8_t *buf = malloc(LEN_MAX + 8);
	srand(11);
	for (size_t i = 0; i < LEN_MAX + 8; i++)
		buf[i] = (uint8_t)rand();
	static const size_t bases[] = { 1536, 3072, 12288, 13824, 24576, 36864, 36864 + 1536 };
	bool hw = crc32c_hw_available();
	for (size_t k = 0; k < ARRAY_LEN(bases); k++) {
		for (size_t n = bases[k] - 9; n <= bases[k] + 9; n++) {
			size_t align = n % 8;
			uint32_t want = crc_bitwise(0x5a5a5a5au, buf + align, n);
			cr_assert_eq(crc32c_update_table(0x5a5a5a5au, buf + align, n), want, "n=%zu", n);
			cr_assert_eq(crc32c_update(0x5a5a5a5au, buf + align, n), want, "n=%zu", n);
			if (hw)
				cr_assert_eq(crc32c_update_hw(0x5a5a5a5au, buf + align, n), want,
					"n=%zu", n);
		}
	}
	free(buf);
}

Test(crc32c, continuing_equals_one_pass)
{
	uint8_t buf[1000];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (uint8_t)(i * 31 + 7);
	uint32_t whole = crc32c_update(0, buf, sizeof(buf));
	for (size_t cut = 0; cut <= sizeof(buf); cut += 37) {
		uint32_t c = crc32c_update(0, buf, cut);
		cr_assert_eq(crc32c_update(c, buf + cut, sizeof(buf) - cut), whole);
		c = crc32c_update_table(0, buf, cut);
		cr_assert_eq(crc32c_update_table(c, buf + cut, sizeof(buf) - cut), whole);
	}
}
