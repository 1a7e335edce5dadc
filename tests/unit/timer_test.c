/* tests/unit/timer_test.c - idle deadlines (RFC 5321 4.5.3.2) as activity-ordered lists. */
#include <criterion/criterion.h>

#include "engine/timer.h"

Test(timer, least_recently_touched_expires_first)
{
	struct timer_list l;
	struct timer_node a = { 0 }, b = { 0 };
	timer_list_init(&l, 1000);
	timer_list_touch(&l, &a, 0);
	timer_list_touch(&l, &b, 10);
	cr_assert_null(timer_list_expired(&l, 999));
	cr_assert_eq(timer_list_next_ms(&l, 999), 1);
	cr_assert_eq(timer_list_expired(&l, 1000), &a);
	timer_node_remove(&l, &a);
	cr_assert_null(timer_list_expired(&l, 1009));
	cr_assert_eq(timer_list_expired(&l, 1010), &b);
}

Test(timer, touching_again_postpones_the_deadline)
{
	struct timer_list l;
	struct timer_node a = { 0 }, b = { 0 };
	timer_list_init(&l, 100);
	timer_list_touch(&l, &a, 0);
	timer_list_touch(&l, &b, 50);
	timer_node_remove(&l, &a);
	timer_list_touch(&l, &a, 90);
	cr_assert_eq(timer_list_expired(&l, 150), &b);
	timer_node_remove(&l, &b);
	cr_assert_null(timer_list_expired(&l, 189));
	cr_assert_eq(timer_list_expired(&l, 190), &a);
	cr_assert_eq(l.count, 1);
}

Test(timer, empty_list_has_no_deadline)
{
	struct timer_list l;
	struct timer_node a = { 0 };
	timer_list_init(&l, 5);
	cr_assert_eq(timer_list_next_ms(&l, 0), UINT64_MAX);
	timer_node_remove(&l, &a);   /* not in a list: left alone */
	cr_assert_eq(l.count, 0);
}
