/* base/hist.c - fixed-bound latency histograms; see hist.h. */
#include "base/hist.h"

const uint64_t hist_bounds_us[HIST_BOUNDS] = {
	100, 250, 500,                                   /* a flush on a fast device */
	1000, 2500, 5000, 10000, 25000, 50000,           /* milliseconds */
	100000, 250000, 500000,
	1000000, 2500000, 5000000, 10000000, 30000000,   /* seconds */
	60000000, 300000000, 900000000,                  /* minutes: retries */
	3600000000u, 14400000000u, 86400000000u,         /* hours, a day */
};

void
hist_add(struct hist *h, uint64_t us)
{
	uint32_t i = 0;
	while (i < HIST_BOUNDS && us > hist_bounds_us[i])
		i++;
	h->counts[i]++;
	h->sum_us += us;
}
