/* tests/unit/outbound_sched_test.c - a destination's limits and feedback, without I/O. */
#include <criterion/criterion.h>

#include "deliver/outbound_sched.h"

static struct outbound_sched_dest d;

static void
init(uint32_t concurrency, uint32_t rate)
{
	struct outbound_sched_limits lim = { .concurrency = concurrency, .recipients = 50,
		.reuse = 100, .rate = rate };
	outbound_sched_dest_init(&d, &lim);
}

/* Opens connections while allowed; returns how many. */
static uint32_t
open_all(uint64_t now, uint32_t shard_conns, uint32_t shard_limit)
{
	uint32_t n = 0;
	while (n < 10000 && outbound_sched_may_connect(&d, now, shard_conns + n, shard_limit)) {
		outbound_sched_conn_opened(&d);
		n++;
	}
	return n;
}

Test(outbound_sched, slow_start_then_growth_up_to_the_limit_never_past_it)
{
	init(20, 0);
	cr_assert_eq(open_all(0, 0, 1000), OUTBOUND_SCHED_WINDOW_INITIAL);
	for (uint32_t i = 0; i < 10000; i++)
		outbound_sched_success(&d);
	cr_assert_eq(d.window, 20);
	cr_assert_eq(open_all(0, 0, 1000), 20 - OUTBOUND_SCHED_WINDOW_INITIAL);
	cr_assert_eq(d.conns, 20, "the concurrency limit, exactly");
	outbound_sched_conn_closed(&d);
	cr_assert_eq(open_all(0, 0, 1000), 1, "one closed, one may open");
}

Test(outbound_sched, growth_is_one_per_window_of_successes)
{
	init(20, 0);
	uint32_t w = d.window;
	for (uint32_t i = 0; i + 1 < w; i++)
		outbound_sched_success(&d);
	cr_assert_eq(d.window, w);
	outbound_sched_success(&d);
	cr_assert_eq(d.window, w + 1);
}

Test(outbound_sched, a_limit_below_the_initial_window_caps_it)
{
	init(2, 0);
	cr_assert_eq(open_all(0, 0, 1000), 2);
}

Test(outbound_sched, the_shard_share_caps_every_destination)
{
	init(20, 0);
	cr_assert_eq(open_all(0, 998, 1000), 2);
	cr_assert_eq(outbound_sched_share(1000, 2, 0), 500);
	cr_assert_eq(outbound_sched_share(7, 2, 0), 4);
	cr_assert_eq(outbound_sched_share(7, 2, 1), 3);
	cr_assert_eq(outbound_sched_share(1, 4, 3), 1, "at least one per shard");
}

Test(outbound_sched, failures_shrink_the_window_to_one)
{
	init(20, 0);
	for (uint32_t i = 0; i < 1000; i++)
		outbound_sched_success(&d);
	cr_assert_eq(d.window, 20);
	cr_assert_not(outbound_sched_failure(&d, 0, 1000));
	cr_assert_eq(d.window, 19);
	outbound_sched_success(&d);   /* a success ends the streak */
	for (uint32_t i = 0; i < 9; i++)
		cr_assert_not(outbound_sched_failure(&d, 0, 1000));
	cr_assert_eq(d.window, 10);
	cr_assert_eq(d.fail_streak, 9);
}

Test(outbound_sched, a_failed_cohort_suspends_until_the_retry_time)
{
	init(20, 0);
	/* window 5: failures leave 4, 3, 2; the third makes the streak the window. */
	cr_assert_not(outbound_sched_failure(&d, 100, 5000));
	cr_assert_not(outbound_sched_failure(&d, 100, 5000));
	cr_assert(outbound_sched_failure(&d, 100, 5000));
	cr_assert(outbound_sched_suspended(&d, 100));
	cr_assert_not(outbound_sched_may_connect(&d, 5099, 0, 1000));
	cr_assert(outbound_sched_suspended(&d, 5099));
	cr_assert_not(outbound_sched_suspended(&d, 5100));
	cr_assert_eq(open_all(5100, 0, 1000), 1, "after a suspension: one connection first");
	cr_assert_eq(d.suspensions, 1);
}

Test(outbound_sched, one_connection_that_fails_is_a_whole_cohort)
{
	init(1, 0);
	cr_assert(outbound_sched_failure(&d, 0, 10));
	cr_assert(outbound_sched_suspended(&d, 9));
}

Test(outbound_sched, rate_spaces_transactions)
{
	init(20, 20);   /* 20/s: one every 50 ms */
	cr_assert_eq(outbound_sched_txn_wait_ms(&d, 1000), 0);
	outbound_sched_txn_started(&d, 1000);
	cr_assert_eq(outbound_sched_txn_wait_ms(&d, 1000), 50);
	cr_assert_eq(outbound_sched_txn_wait_ms(&d, 1049), 1);
	cr_assert_eq(outbound_sched_txn_wait_ms(&d, 1050), 0);
	uint32_t started = 0;
	for (uint64_t t = 2000; t < 3000; t++) {
		if (outbound_sched_txn_wait_ms(&d, t) == 0) {
			outbound_sched_txn_started(&d, t);
			started++;
		}
	}
	cr_assert_eq(started, 20, "exactly the rate over one second");
}

Test(outbound_sched, no_rate_no_wait)
{
	init(20, 0);
	for (uint32_t i = 0; i < 100; i++)
		outbound_sched_txn_started(&d, 5);
	cr_assert_eq(outbound_sched_txn_wait_ms(&d, 5), 0);
}
