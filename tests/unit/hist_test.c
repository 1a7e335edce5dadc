/* tests/unit/hist_test.c - fixed-bound latency histograms. */
#include <criterion/criterion.h>

#include "base/hist.h"

Test(hist, a_duration_goes_to_the_first_bound_it_does_not_exceed)
{
	struct hist h = { 0 };
	hist_add(&h, 0);
	hist_add(&h, 100);      /* at the first bound: in it */
	hist_add(&h, 101);      /* just past: the next */
	hist_add(&h, 1000000);  /* 1 s */
	cr_assert_eq(h.counts[0], 2);
	cr_assert_eq(h.counts[1], 1);
	uint32_t one_s = 0;
	while (hist_bounds_us[one_s] != 1000000)
		one_s++;
	cr_assert_eq(h.counts[one_s], 1);
	cr_assert_eq(h.sum_us, 1000201);
}

Test(hist, beyond_the_last_bound_is_the_overflow_bucket)
{
	struct hist h = { 0 };
	hist_add(&h, hist_bounds_us[HIST_BOUNDS - 1]);
	hist_add(&h, hist_bounds_us[HIST_BOUNDS - 1] + 1);
	cr_assert_eq(h.counts[HIST_BOUNDS - 1], 1);
	cr_assert_eq(h.counts[HIST_BOUNDS], 1);
}

Test(hist, bounds_ascend)
{
	for (uint32_t i = 1; i < HIST_BOUNDS; i++)
		cr_assert_gt(hist_bounds_us[i], hist_bounds_us[i - 1]);
}
