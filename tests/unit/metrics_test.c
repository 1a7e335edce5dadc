/* tests/unit/metrics_test.c - published shard snapshots and their Prometheus exposition
 * (text format 0.0.4: HELP and TYPE lines, cumulative histogram buckets, escaped labels). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/metrics.h"

static char text[METRICS_TEXT_MAX];

static struct metrics *
make(uint32_t shards)
{
	static const char *const names[] = { "127.0.0.1:25", "[::1]:25", "a\"b\\c" };
	struct metrics *m;
	cr_assert_eq(metrics_create(shards, names, 3, &m), 0);
	return m;
}

static const char *
render(struct metrics *m)
{
	size_t n = metrics_render(m, text, sizeof(text));
	cr_assert_gt(n, 0);
	text[n] = '\0';
	return text;
}

static void
expect_line(const char *t, const char *line)
{
	char want[256];
	snprintf(want, sizeof(want), "\n%s\n", line);
	cr_assert(strstr(t, want) != NULL, "missing \"%s\" in:\n%s", line, t);
}

Test(metrics, shards_not_yet_published_count_zero)
{
	struct metrics *m = make(2);
	const char *t = render(m);
	expect_line(t, "ringmta_messages_received_total 0");
	expect_line(t, "ringmta_loop_turns_total{shard=\"1\"} 0");
	metrics_destroy(m);
}

Test(metrics, totals_are_summed_over_shards_and_loops_are_per_shard)
{
	struct metrics *m = make(2);
	struct metrics_shard a = { .received = 3, .loop_turns = 10, .connections = 1 };
	struct metrics_shard b = { .received = 4, .loop_turns = 20, .connections = 2 };
	a.outcomes[METRICS_DELIVERED] = 5;
	b.outcomes[METRICS_DELIVERED] = 6;
	a.accepted[1] = 7;
	b.accepted[1] = 1;
	b.queue.messages[SPOOL_CENSUS_DEFERRED][1] = 9;
	metrics_publish(m, 0, &a);
	metrics_publish(m, 1, &b);
	const char *t = render(m);
	expect_line(t, "# TYPE ringmta_messages_received_total counter");
	expect_line(t, "ringmta_messages_received_total 7");
	expect_line(t, "ringmta_connections 3");
	expect_line(t, "ringmta_deliveries_total{status=\"delivered\"} 11");
	expect_line(t, "ringmta_connections_accepted_total{listener=\"[::1]:25\"} 8");
	expect_line(t, "ringmta_queue_messages{state=\"deferred\",age=\"5m-1h\"} 9");
	expect_line(t, "ringmta_loop_turns_total{shard=\"0\"} 10");
	expect_line(t, "ringmta_loop_turns_total{shard=\"1\"} 20");
	/* A later publication replaces the earlier one. */
	a.received = 30;
	metrics_publish(m, 0, &a);
	expect_line(render(m), "ringmta_messages_received_total 34");
	metrics_destroy(m);
}

Test(metrics, label_values_are_escaped)
{
	struct metrics *m = make(1);
	expect_line(render(m), "ringmta_connections_accepted_total{listener=\"a\\\"b\\\\c\"} 0");
	metrics_destroy(m);
}

Test(metrics, histogram_buckets_are_cumulative_with_sum_and_count)
{
	struct metrics *m = make(1);
	struct metrics_shard a = { 0 };
	hist_add(&a.fdatasync_latency, 50);        /* 0.0001 */
	hist_add(&a.fdatasync_latency, 2000);      /* 0.0025 */
	hist_add(&a.fdatasync_latency, 1u << 30);  /* 1073 s: 3600 */
	metrics_publish(m, 0, &a);
	const char *t = render(m);
	expect_line(t, "# TYPE ringmta_fdatasync_seconds histogram");
	expect_line(t, "ringmta_fdatasync_seconds_bucket{le=\"0.0001\"} 1");
	expect_line(t, "ringmta_fdatasync_seconds_bucket{le=\"0.001\"} 1");
	expect_line(t, "ringmta_fdatasync_seconds_bucket{le=\"0.0025\"} 2");
	expect_line(t, "ringmta_fdatasync_seconds_bucket{le=\"900\"} 2");
	expect_line(t, "ringmta_fdatasync_seconds_bucket{le=\"3600\"} 3");
	expect_line(t, "ringmta_fdatasync_seconds_bucket{le=\"+Inf\"} 3");
	expect_line(t, "ringmta_fdatasync_seconds_count 3");
	expect_line(t, "ringmta_fdatasync_seconds_sum 1073.743874");
	metrics_destroy(m);
}

Test(metrics, a_text_that_does_not_fit_renders_nothing)
{
	struct metrics *m = make(1);
	cr_assert_eq(metrics_render(m, text, 100), 0);
	metrics_destroy(m);
}

static struct tally_entry
dest(const char *name, uint64_t delivered, uint64_t deferred)
{
	struct tally_entry e = { .counts = { delivered, deferred } };
	memcpy(e.name_words, name, strlen(name) + 1);
	return e;
}

/* Only the METRICS_DESTINATIONS_MAX busiest over all shards get series, merged by name. */
Test(metrics, destinations_are_merged_over_shards_and_only_the_busiest_exported)
{
	struct metrics *m = make(2);
	static struct metrics_shard a, b;
	for (uint32_t i = 0; i < METRICS_DESTINATIONS_MAX; i++) {
		char name[32];
		snprintf(name, sizeof(name), "d%u.test", i);
		a.destinations[i] = dest(name, 100 + i, 0);
	}
	a.destination_count = METRICS_DESTINATIONS_MAX;
	b.destinations[0] = dest("d0.test", 5, 2);
	b.destinations[1] = dest("small.test", 1, 0);   /* 11th busiest: no series */
	b.destination_count = 2;
	metrics_publish(m, 0, &a);
	metrics_publish(m, 1, &b);
	const char *t = render(m);
	expect_line(t, "ringmta_destination_deliveries_total"
		"{destination=\"d0.test\",status=\"delivered\"} 105");
	expect_line(t, "ringmta_destination_deliveries_total"
		"{destination=\"d0.test\",status=\"deferred\"} 2");
	expect_line(t, "ringmta_destination_deliveries_total"
		"{destination=\"d9.test\",status=\"delivered\"} 109");
	cr_assert(strstr(t, "small.test") == NULL);
	metrics_destroy(m);
}
