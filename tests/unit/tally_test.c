/* tests/unit/tally_test.c - bounded counters by name (base/tally). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "base/tally.h"

static struct tally t;

Test(tally, counts_by_name_case_insensitively)
{
	memset(&t, 0, sizeof(t));
	tally_add(&t, SLICE_LIT("Example.COM"), 0);
	tally_add(&t, SLICE_LIT("example.com"), 0);
	tally_add(&t, SLICE_LIT("example.com"), 2);
	tally_add(&t, SLICE_LIT("other.test"), 1);
	struct tally_entry top[4];
	cr_assert_eq(tally_top(&t, top, 4), 2);
	cr_assert_str_eq(tally_entry_name(&top[0]), "example.com");
	cr_assert_eq(top[0].counts[0], 2);
	cr_assert_eq(top[0].counts[2], 1);
	cr_assert_str_eq(tally_entry_name(&top[1]), "other.test");
}

Test(tally, top_is_largest_first_and_bounded_by_n)
{
	memset(&t, 0, sizeof(t));
	char name[32];
	for (uint32_t i = 0; i < 5; i++) {
		snprintf(name, sizeof(name), "d%u.test", i);
		for (uint32_t k = 0; k <= i; k++)
			tally_add(&t, slice_make(name, strlen(name)), 0);
	}
	struct tally_entry top[2];
	cr_assert_eq(tally_top(&t, top, 2), 2);
	cr_assert_str_eq(tally_entry_name(&top[0]), "d4.test");
	cr_assert_str_eq(tally_entry_name(&top[1]), "d3.test");
}

/* A full table: a new name takes the place of the smallest, the busy names stay. */
Test(tally, a_new_name_in_a_full_table_replaces_the_smallest)
{
	memset(&t, 0, sizeof(t));
	char name[32];
	for (uint32_t i = 0; i < TALLY_NAMES_MAX; i++) {
		snprintf(name, sizeof(name), "d%u.test", i);
		for (uint32_t k = 0; k < (i == 7 ? 1u : 3u); k++)
			tally_add(&t, slice_make(name, strlen(name)), 0);
	}
	tally_add(&t, SLICE_LIT("new.test"), 1);
	struct tally_entry top[TALLY_NAMES_MAX];
	cr_assert_eq(tally_top(&t, top, TALLY_NAMES_MAX), TALLY_NAMES_MAX);
	bool seen_new = false, seen_7 = false;
	for (uint32_t i = 0; i < TALLY_NAMES_MAX; i++) {
		seen_new = seen_new || strcmp(tally_entry_name(&top[i]), "new.test") == 0;
		seen_7 = seen_7 || strcmp(tally_entry_name(&top[i]), "d7.test") == 0;
	}
	cr_assert(seen_new);
	cr_assert_not(seen_7);
	cr_assert_str_eq(tally_entry_name(&top[TALLY_NAMES_MAX - 1]), "new.test");
}

Test(tally, long_names_are_cut)
{
	memset(&t, 0, sizeof(t));
	char name[300];
	memset(name, 'a', sizeof(name));
	tally_add(&t, slice_make(name, sizeof(name)), 0);
	struct tally_entry top[1];
	cr_assert_eq(tally_top(&t, top, 1), 1);
	cr_assert_eq(strlen(tally_entry_name(&top[0])), TALLY_NAME_MAX);
}
