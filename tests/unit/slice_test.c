/* tests/unit/slice_test.c - the borrowed byte ranges every module passes around. */
#include <criterion/criterion.h>

#include "base/slice.h"

Test(slice, sub_and_skip_stay_inside)
{
	struct slice s = SLICE_LIT("EHLO client");
	cr_assert(slice_eq(slice_sub(s, 5, 6), SLICE_LIT("client")));
	cr_assert(slice_eq(slice_skip(s, 11), SLICE_LIT("")));
}

Test(slice, verbs_compare_case_insensitively) /* RFC 5321 2.4: verbs are case-insensitive */
{
	cr_assert(slice_eq_nocase(SLICE_LIT("eHlO"), SLICE_LIT("EHLO")));
	cr_assert_not(slice_eq_nocase(SLICE_LIT("EHLX"), SLICE_LIT("EHLO")));
	cr_assert(slice_starts_with_nocase(SLICE_LIT("mail from:<a@b>"), SLICE_LIT("MAIL FROM:")));
}
