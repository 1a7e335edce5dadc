/* base/hist.h - a latency histogram with fixed bounds, kept by the module that measures.
 *
 * A module counts each duration it measures (an fdatasync, a delivery) into the bucket of the
 * first bound it does not exceed; the bounds (HIST_BOUNDS, in microseconds) are the same for
 * every histogram and span a tenth of a millisecond to a day, so that one table serves a disk
 * flush and a message that waited in the queue. Owned by the module's shard; plain counters, no
 * atomics (a shard publishes a copy: engine/metrics). */
#ifndef RINGMTA_BASE_HIST_H
#define RINGMTA_BASE_HIST_H
#include <stdint.h>

#define HIST_BOUNDS 23u                  /* finite bounds; one more bucket above the last */

struct hist {
	uint64_t counts[HIST_BOUNDS + 1];    /* per bucket, not cumulative; the last: above all */
	uint64_t sum_us;
};

/* The upper bounds of the buckets, in microseconds, ascending. */
extern const uint64_t hist_bounds_us[HIST_BOUNDS];

/* Counts one duration of us microseconds. */
void hist_add(struct hist *h, uint64_t us);
#endif
