/* tests/unit/queue_id_test.c - queue ids unique across shards, restarts and counter wraps. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>

#include "base/queue_id.h"

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

Test(queue_id, layout_is_seconds_shard_counter)
{
	struct queue_id_gen g;
	queue_id_gen_init(&g, 5, 0x6000000Au, 0);
	uint64_t a = queue_id_next(&g);
	uint64_t b = queue_id_next(&g);
	cr_assert_eq(a, (0x6000000Aull << 32) | (5ull << 26) | 0);
	cr_assert_eq(b, a + 1);
	cr_assert_eq(queue_id_shard(a), 5);
	cr_assert_eq(queue_id_seconds(a), 0x6000000Au);
}

Test(queue_id, shards_never_collide)
{
	enum { SHARDS = 64, PER = 2000 };
	uint64_t *ids = malloc(SHARDS * PER * sizeof(*ids));
	for (uint32_t s = 0; s < SHARDS; s++) {
		struct queue_id_gen g;
		queue_id_gen_init(&g, s, 1700000000u, 0);
		for (uint32_t i = 0; i < PER; i++)
			ids[s * PER + i] = queue_id_next(&g);
	}
	qsort(ids, SHARDS * PER, sizeof(*ids), cmp_u64);
	for (uint32_t i = 1; i < SHARDS * PER; i++)
		cr_assert_neq(ids[i], ids[i - 1]);
	free(ids);
}

Test(queue_id, restart_with_a_clock_gone_back_starts_after_what_the_spool_holds)
{
	struct queue_id_gen g;
	queue_id_gen_init(&g, 3, 1700000000u, 0);
	uint64_t last = 0;
	for (int i = 0; i < 100; i++)
		last = queue_id_next(&g);
	/* Restart in the same second, and with the clock 1 hour behind. */
	queue_id_gen_init(&g, 3, 1700000000u, last);
	cr_assert_gt(queue_id_next(&g), last);
	queue_id_gen_init(&g, 3, 1700000000u - 3600, last);
	uint64_t next = queue_id_next(&g);
	cr_assert_gt(next, last);
	cr_assert_eq(queue_id_seconds(next), 1700000001u);
}

Test(queue_id, restart_with_the_clock_ahead_uses_the_clock)
{
	struct queue_id_gen g;
	queue_id_gen_init(&g, 0, 1700000100u, (1700000000ull << 32) | 99);
	cr_assert_eq(queue_id_seconds(queue_id_next(&g)), 1700000100u);
}

Test(queue_id, counter_wrap_moves_to_the_next_second)
{
	struct queue_id_gen g;
	queue_id_gen_init(&g, 63, 1000, 0);
	uint64_t prev = queue_id_next(&g);
	for (uint32_t i = 1; i < (1u << QUEUE_ID_COUNTER_BITS); i++) {
		uint64_t id = queue_id_next(&g);
		cr_assert_gt(id, prev);
		prev = id;
	}
	cr_assert_eq(prev, (1000ull << 32) | (63ull << 26) | ((1u << 26) - 1));
	uint64_t wrapped = queue_id_next(&g);
	cr_assert_eq(wrapped, (1001ull << 32) | (63ull << 26));
	cr_assert_eq(queue_id_shard(wrapped), 63);
}

Test(queue_id, never_zero_even_with_a_zero_clock)
{
	struct queue_id_gen g;
	queue_id_gen_init(&g, 0, 0, 0);
	cr_assert_neq(queue_id_next(&g), 0);
}

Test(queue_id, a_far_future_id_on_disk_falls_back_to_the_clock)
{
	struct queue_id_gen g;
	queue_id_gen_init(&g, 1, 1700000000u, UINT64_MAX - 5);
	cr_assert_eq(queue_id_seconds(queue_id_next(&g)), 1700000000u);
}

Test(queue_id, format_is_sixteen_upper_case_hex_digits)
{
	char s[QUEUE_ID_STR_LEN + 1];
	queue_id_format(0x0123456789ABCDEFull, s);
	cr_assert_str_eq(s, "0123456789ABCDEF");
	queue_id_format(0, s);
	cr_assert_str_eq(s, "0000000000000000");
	queue_id_format(UINT64_MAX, s);
	cr_assert_str_eq(s, "FFFFFFFFFFFFFFFF");
}

Test(queue_id, parse_round_trips_and_takes_either_case)
{
	char s[QUEUE_ID_STR_LEN + 1];
	uint64_t id = 0;
	queue_id_format(0x65A1B2C3D4E5F607ull, s);
	cr_assert_eq(queue_id_parse(slice_make(s, QUEUE_ID_STR_LEN), &id), 0);
	cr_assert_eq(id, 0x65A1B2C3D4E5F607ull);
	cr_assert_eq(queue_id_parse(SLICE_LIT("65a1b2c3d4e5f607"), &id), 0);
	cr_assert_eq(id, 0x65A1B2C3D4E5F607ull);
}

Test(queue_id, parse_rejects_wrong_length_and_non_hex)
{
	uint64_t id = 42;
	cr_assert_eq(queue_id_parse(SLICE_LIT("65A1B2C3D4E5F60"), &id), -EINVAL);
	cr_assert_eq(queue_id_parse(SLICE_LIT("65A1B2C3D4E5F6070"), &id), -EINVAL);
	cr_assert_eq(queue_id_parse(SLICE_LIT("65A1B2C3D4E5F60G"), &id), -EINVAL);
	cr_assert_eq(queue_id_parse(SLICE_LIT(" 5A1B2C3D4E5F607"), &id), -EINVAL);
	cr_assert_eq(queue_id_parse(SLICE_LIT(""), &id), -EINVAL);
	cr_assert_eq(id, 42);
}
