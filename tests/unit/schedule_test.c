/* tests/unit/schedule_test.c - the min-heap of due times: order, ties, reservations. */
#include <criterion/criterion.h>
#include <stdlib.h>

#include "queue/schedule.h"

Test(schedule, pops_in_due_order_then_by_queue_id)
{
	struct schedule s;
	schedule_init(&s);
	cr_assert_eq(schedule_reserve(&s, 5), 0);
	schedule_push(&s, 300, 1);
	schedule_push(&s, 100, 9);
	schedule_push(&s, 200, 2);
	schedule_push(&s, 100, 3);
	schedule_push(&s, 0, 7);
	const uint64_t want_due[] = { 0, 100, 100, 200, 300 }, want_qid[] = { 7, 3, 9, 2, 1 };
	for (uint32_t i = 0; i < 5; i++) {
		struct schedule_entry e;
		cr_assert(schedule_peek(&s, &e));
		cr_assert_eq(e.due_ms, want_due[i]);
		cr_assert_eq(e.qid, want_qid[i]);
		schedule_pop(&s);
	}
	struct schedule_entry e;
	cr_assert_not(schedule_peek(&s, &e));
	schedule_fini(&s);
}

Test(schedule, a_hundred_thousand_random_entries_come_out_sorted)
{
	struct schedule s;
	schedule_init(&s);
	srand(42);
	cr_assert_eq(schedule_reserve(&s, 100000), 0);
	for (uint64_t i = 1; i <= 100000; i++)
		schedule_push(&s, (uint64_t)rand() % 5000, i);
	cr_assert_eq(schedule_count(&s), 100000);
	struct schedule_entry prev = { 0, 0 }, e;
	uint32_t n = 0;
	while (schedule_peek(&s, &e)) {
		cr_assert(e.due_ms > prev.due_ms || (e.due_ms == prev.due_ms && e.qid > prev.qid));
		prev = e;
		schedule_pop(&s);
		n++;
	}
	cr_assert_eq(n, 100000);
	schedule_fini(&s);
}

Test(schedule, reservations_are_counted_and_given_back)
{
	struct schedule s;
	schedule_init(&s);
	cr_assert_eq(schedule_reserve(&s, 3), 0);
	cr_assert_eq(s.reserved, 3);
	schedule_push(&s, 1, 1);
	cr_assert_eq(s.reserved, 2);
	schedule_unreserve(&s, 2);
	cr_assert_eq(s.reserved, 0);
	cr_assert_geq(s.cap, s.count + s.reserved);
	cr_assert_neq(schedule_reserve(&s, SCHEDULE_CAP_MAX), 0);   /* past the bound */
	cr_assert_eq(s.reserved, 0);                                 /* nothing promised */
	schedule_fini(&s);
}
