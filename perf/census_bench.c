/* perf/census_bench.c - what the metrics' queue census costs: one walk of a shard's index.
 *
 * Every second each shard counts its live messages by state and age for ringmta_queue_messages
 * (spool_census: index_foreach over the index). This builds an index of N one-recipient messages
 * (arrivals spread over five days, half of them deferred), as a deep queue leaves it, and times
 * the same walk and classification. Usage: census_bench [N] (default 100000). */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "queue/index.h"
#include "queue/spool.h"

#define BENCH_REPS 50u
#define BENCH_NOW_MS 1764547200000ull   /* 2025-12-01 */

static uint64_t
bench_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

int
main(int argc, char **argv)
{
	uint32_t n = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 100000u;
	struct index ix;
	if (index_init(&ix) != 0)
		return 1;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t qid = 0x1000u + i;
		uint64_t arrival = BENCH_NOW_MS - (uint64_t)(i % 432000u) * 1000u;
		if (index_insert(&ix, qid, 0, (uint64_t)i * 1024u, 1024, 1, arrival) != 0)
			return 1;
		if (i % 2 == 0 && index_mark_deferred(&ix, qid, 0, BENCH_NOW_MS + 3600000u) != 0)
			return 1;
	}
	struct spool_census c;
	uint64_t t0 = bench_ns();
	for (uint32_t r = 0; r < BENCH_REPS; r++)
		spool_census_index(&ix, BENCH_NOW_MS, &c);
	double us = (double)(bench_ns() - t0) / 1e3 / BENCH_REPS;
	uint64_t total = 0;
	for (uint32_t s = 0; s < SPOOL_CENSUS_STATES; s++) {
		for (uint32_t a = 0; a < SPOOL_CENSUS_AGES; a++)
			total += c.messages[s][a];
	}
	printf("census_bench: messages=%u counted=%" PRIu64 " deferred=%" PRIu64
		" walk_us=%.1f per_message_ns=%.1f at_1_per_s=%.3f%%_of_a_core\n", n, total,
		c.messages[SPOOL_CENSUS_DEFERRED][1] + c.messages[SPOOL_CENSUS_DEFERRED][0], us,
		us * 1e3 / n, us / 1e4);
	index_fini(&ix);
	return 0;
}
