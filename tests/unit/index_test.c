/* tests/unit/index_test.c - the in-memory index of a shard's live messages. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>

#include "queue/index.h"

static struct index ix;

static void
setup(void)
{
	cr_assert_eq(index_init(&ix), 0);
}

static void
teardown(void)
{
	index_fini(&ix);
}

TestSuite(index, .init = setup, .fini = teardown);

Test(index, insert_then_find_gives_the_fields_back)
{
	uint64_t qid = 0x65000000000000A1ull;
	cr_assert_eq(index_insert(&ix, qid, 7, 4096, 1234, 2, 1700000000123ull), 0);
	const struct index_entry *e = index_find(&ix, 0x65000000000000A1ull);
	cr_assert_not_null(e);
	cr_assert_eq(e->segment, 7);
	cr_assert_eq(e->offset, 4096);
	cr_assert_eq(e->size, 1234);
	cr_assert_eq(e->rcpt_count, 2);
	cr_assert_eq(e->unfinished, 2);
	cr_assert_eq(e->arrival_ms, 1700000000123ull);
	cr_assert_eq(e->due_ms, 0);
	cr_assert_eq(index_entry_rcpt(e, 1, NULL), INDEX_RCPT_PENDING);
	cr_assert_null(index_find(&ix, 0x65000000000000A2ull));
	cr_assert_eq(index_live(&ix), 1);
	cr_assert_eq(index_segment_live(&ix, 7), 1);
}

Test(index, duplicate_reserved_and_out_of_range_inserts_are_refused)
{
	cr_assert_eq(index_insert(&ix, 5, 0, 0, 100, 1, 0), 0);
	cr_assert_eq(index_insert(&ix, 5, 1, 0, 100, 1, 0), -EEXIST);
	cr_assert_eq(index_insert(&ix, 0, 0, 0, 100, 1, 0), -EINVAL);
	cr_assert_eq(index_insert(&ix, UINT64_MAX, 0, 0, 100, 1, 0), -EINVAL);
	cr_assert_eq(index_insert(&ix, 6, 0, 0, 100, 0, 0), -EINVAL);
	cr_assert_eq(index_insert(&ix, 6, 0, 0, 100, INDEX_RCPT_MAX + 1, 0), -EINVAL);
	cr_assert_eq(index_insert(&ix, 6, 0, 0, 100, INDEX_RCPT_MAX, 0), 0);
	cr_assert_null(index_find(&ix, 0));
	cr_assert_null(index_find(&ix, UINT64_MAX));
	cr_assert_eq(index_live(&ix), 2);
	cr_assert_eq(index_segment_live(&ix, 0), 2);
}

Test(index, grows_to_hundreds_of_thousands_and_finds_them_all)
{
	enum { N = 300000 };
	for (uint64_t i = 1; i <= N; i++)
		cr_assert_eq(index_insert(&ix, (i << 20) | 3, (uint32_t)(i / 1000), i * 10, 100, 1,
			i), 0);
	cr_assert_eq(index_live(&ix), N);
	for (uint64_t i = 1; i <= N; i++) {
		const struct index_entry *e = index_find(&ix, (i << 20) | 3);
		cr_assert_not_null(e);
		cr_assert_eq(e->offset, i * 10);
	}
	cr_assert_null(index_find(&ix, ((uint64_t)N + 1) << 20 | 3));
	cr_assert_eq(index_segment_live(&ix, 1), 1000);
}

Test(index, churn_reuses_deleted_slots_without_growing)
{
	/* A steady queue of 500 messages through a million arrivals: the table is rebuilt in place
	 * instead of doubling. */
	for (uint64_t i = 1; i <= 1000000; i++) {
		cr_assert_eq(index_insert(&ix, i, (uint32_t)(i >> 12), 0, 100, 1, 0), 0);
		if (i > 500)
			cr_assert(index_mark_final(&ix, i - 500, 0, INDEX_RCPT_DELIVERED));
	}
	cr_assert_eq(index_live(&ix), 500);
	cr_assert_leq(ix.cap, 2048);
	cr_assert_not_null(index_find(&ix, 1000000));
	cr_assert_null(index_find(&ix, 999500));
}

Test(index, single_recipient_final_removes_the_message)
{
	cr_assert_eq(index_insert(&ix, 9, 3, 0, 100, 1, 0), 0);
	cr_assert(index_rcpt_pending(&ix, 9, 0));
	cr_assert(index_mark_final(&ix, 9, 0, INDEX_RCPT_BOUNCED));
	cr_assert_null(index_find(&ix, 9));
	cr_assert_not(index_rcpt_pending(&ix, 9, 0));
	cr_assert_eq(index_segment_live(&ix, 3), 0);
	cr_assert_eq(index_live(&ix), 0);
	/* Again, and for an unknown id: nothing changes. */
	cr_assert_not(index_mark_final(&ix, 9, 0, INDEX_RCPT_DELIVERED));
	cr_assert_not(index_mark_final(&ix, 10, 0, INDEX_RCPT_DELIVERED));
}

Test(index, message_is_final_when_its_last_recipient_is)
{
	cr_assert_eq(index_insert(&ix, 9, 3, 0, 100, 3, 0), 0);
	cr_assert_not(index_mark_final(&ix, 9, 0, INDEX_RCPT_DELIVERED));
	cr_assert_not(index_mark_final(&ix, 9, 0, INDEX_RCPT_DELIVERED));   /* repeated */
	cr_assert_not(index_mark_final(&ix, 9, 3, INDEX_RCPT_DELIVERED));   /* out of range */
	cr_assert_not(index_mark_final(&ix, 9, 2, INDEX_RCPT_BOUNCED));
	const struct index_entry *e = index_find(&ix, 9);
	cr_assert_eq(e->unfinished, 1);
	cr_assert_eq(index_entry_rcpt(e, 0, NULL), INDEX_RCPT_DELIVERED);
	cr_assert_eq(index_entry_rcpt(e, 2, NULL), INDEX_RCPT_BOUNCED);
	cr_assert(index_rcpt_pending(&ix, 9, 1));
	cr_assert_not(index_rcpt_pending(&ix, 9, 0));
	cr_assert(index_mark_final(&ix, 9, 1, INDEX_RCPT_DELIVERED));
	cr_assert_null(index_find(&ix, 9));
}

Test(index, a_thousand_recipients_are_tracked_one_by_one)
{
	cr_assert_eq(index_insert(&ix, 77, 0, 0, 100, INDEX_RCPT_MAX, 0), 0);
	/* Every recipient but one, in a scattered order, some twice. */
	for (uint32_t k = 0; k < INDEX_RCPT_MAX; k++) {
		uint32_t i = (k * 617u) % INDEX_RCPT_MAX;
		if (i == 999)
			continue;
		cr_assert_not(index_mark_final(&ix, 77, i, INDEX_RCPT_DELIVERED));
		cr_assert_not(index_mark_final(&ix, 77, i, INDEX_RCPT_BOUNCED));
	}
	const struct index_entry *e = index_find(&ix, 77);
	cr_assert_eq(e->unfinished, 1);
	for (uint32_t i = 0; i < 999; i++)
		cr_assert_not(index_rcpt_pending(&ix, 77, i), "rcpt %u", i);
	cr_assert(index_rcpt_pending(&ix, 77, 999));
	cr_assert(index_mark_final(&ix, 77, 999, INDEX_RCPT_DELIVERED));
	cr_assert_eq(index_live(&ix), 0);
}

Test(index, deferred_recipients_set_when_the_message_is_due)
{
	cr_assert_eq(index_insert(&ix, 1, 0, 0, 100, 2, 0), 0);
	cr_assert_eq(index_insert(&ix, 2, 0, 0, 100, 1, 0), 0);
	cr_assert_eq(index_mark_deferred(&ix, 1, 0, 5000), 0);
	cr_assert_eq(index_find(&ix, 1)->due_ms, 0);   /* recipient 1 is still pending */
	cr_assert_eq(index_mark_deferred(&ix, 1, 1, 3000), 0);
	cr_assert_eq(index_find(&ix, 1)->due_ms, 3000);
	uint64_t next = 0;
	cr_assert_eq(index_entry_rcpt(index_find(&ix, 1), 0, &next), INDEX_RCPT_DEFERRED);
	cr_assert_eq(next, 5000);
	cr_assert_not(index_mark_final(&ix, 1, 1, INDEX_RCPT_DELIVERED));
	cr_assert_eq(index_find(&ix, 1)->due_ms, 5000);
	cr_assert_eq(index_mark_deferred(&ix, 1, 1, 9000), -ENOENT);   /* final already */
	cr_assert_eq(index_mark_deferred(&ix, 1, 2, 9000), -ENOENT);   /* out of range */
	cr_assert_eq(index_mark_deferred(&ix, 3, 0, 9000), -ENOENT);   /* unknown */
	cr_assert_eq(index_mark_deferred(&ix, 2, 0, 7000), 0);
	cr_assert_eq(index_find(&ix, 2)->due_ms, 7000);
	cr_assert_eq(index_mark_deferred(&ix, 2, 0, 6000), 0);         /* a later mark replaces */
	cr_assert_eq(index_find(&ix, 2)->due_ms, 6000);
	cr_assert(index_rcpt_pending(&ix, 2, 0));                       /* deferred is not final */

}

Test(index, take_due_puts_due_recipients_in_flight_and_results_land_them)
{
	cr_assert_eq(index_insert(&ix, 1, 0, 0, 100, 3, 0), 0);
	cr_assert_eq(index_mark_deferred(&ix, 1, 1, 5000), 0);
	cr_assert_eq(index_mark_deferred(&ix, 1, 2, 9000), 0);
	cr_assert_eq(index_take_due(&ix, 1, 4999), 1);          /* only the pending one */
	const struct index_entry *e = index_find(&ix, 1);
	cr_assert_eq(e->inflight, 1);
	cr_assert_eq(index_entry_rcpt(e, 0, NULL), INDEX_RCPT_INFLIGHT);
	cr_assert_eq(e->due_ms, 5000);                          /* in flight does not count */
	cr_assert(index_rcpt_pending(&ix, 1, 0));               /* in flight is not final */
	cr_assert_eq(index_take_due(&ix, 1, 5000), 1);          /* now recipient 1 too */
	cr_assert_eq(index_find(&ix, 1)->inflight, 2);
	cr_assert_eq(index_find(&ix, 1)->due_ms, 9000);
	cr_assert_not(index_mark_final(&ix, 1, 0, INDEX_RCPT_DELIVERED));
	cr_assert_eq(index_find(&ix, 1)->inflight, 1);
	cr_assert_eq(index_mark_deferred(&ix, 1, 1, 7000), 0);  /* deferred again */
	cr_assert_eq(index_find(&ix, 1)->inflight, 0);
	cr_assert_eq(index_find(&ix, 1)->due_ms, 7000);
	cr_assert_eq(index_take_due(&ix, 1, 9000), 2);
	index_release(&ix, 1, 2);                               /* never tried: pending again */
	cr_assert_eq(index_find(&ix, 1)->inflight, 1);
	cr_assert_eq(index_find(&ix, 1)->due_ms, 0);
	cr_assert_eq(index_take_due(&ix, 7, 9000), 0);          /* unknown message */
}

Test(index, a_prepared_insert_needs_no_memory_after_its_reservation)
{
	struct index_rcpt *many;
	cr_assert_eq(index_reserve(&ix, 2000, 3), 0);
	cr_assert_eq(index_rcpts_alloc(1, &many), 0);
	cr_assert_null(many);                                   /* one recipient: no array */
	for (uint64_t q = 1; q <= 2000; q++)
		cr_assert_eq(index_insert_prepared(&ix, q, 4, 0, 100, 1, 0, NULL, 0), 0);
	cr_assert_eq(index_rcpts_alloc(3, &many), 0);
	cr_assert_not_null(many);
	cr_assert_eq(index_insert_prepared(&ix, 1, 4, 0, 100, 3, 0, many, 0), -EEXIST);
	cr_assert_eq(index_insert_prepared(&ix, 9000, 4, 0, 100, 1, 0, many, 0), -EINVAL);
	cr_assert_eq(index_insert_prepared(&ix, 9000, 4, 0, 100, 3, 0, many, 0), 0);
	cr_assert_eq(index_find(&ix, 9000)->rcpt_count, 3);
	cr_assert_eq(index_segment_live(&ix, 4), 2001);
}

Test(index, a_message_whose_body_begins_in_an_older_segment_counts_there)
{
	cr_assert_eq(index_insert_prepared(&ix, 7, 5, 100, 200, 1, 0, NULL, 2), 0);
	cr_assert_eq(index_segment_live(&ix, 3), 1);        /* where its first part is */
	cr_assert_eq(index_segment_live(&ix, 5), 0);
	cr_assert_eq(index_find(&ix, 7)->span, 2);
	cr_assert_eq(index_insert(&ix, 8, 6, 0, 100, 1, 0), 0);
	cr_assert_eq(index_set_span(&ix, 8, 1), 0);         /* recovery of a PARTS record */
	cr_assert_eq(index_segment_live(&ix, 5), 1);
	cr_assert_eq(index_segment_live(&ix, 6), 0);
	cr_assert_eq(index_insert_prepared(&ix, 9, 1, 0, 100, 1, 0, NULL, 2), -EINVAL);
	cr_assert(index_mark_final(&ix, 7, 0, INDEX_RCPT_DELIVERED));
	cr_assert_eq(index_segment_live(&ix, 3), 0);
	cr_assert_eq(index_relocate(&ix, 8, 9, 64, 120, 0), 0);   /* a copy holds it all */
	cr_assert_eq(index_find(&ix, 8)->span, 0);
	cr_assert_eq(index_segment_live(&ix, 5), 0);
	cr_assert_eq(index_segment_live(&ix, 9), 1);
}

Test(index, remove_takes_a_message_out_whatever_its_recipients)
{
	cr_assert_eq(index_insert(&ix, 1, 4, 0, 100, 3, 0), 0);
	cr_assert_eq(index_mark_deferred(&ix, 1, 0, 5000), 0);
	cr_assert(index_remove(&ix, 1));
	cr_assert_not(index_remove(&ix, 1));
	cr_assert_null(index_find(&ix, 1));
	cr_assert_eq(index_segment_live(&ix, 4), 0);
	cr_assert_eq(index_live(&ix), 0);
}

Test(index, segment_counts_follow_inserts_finals_and_relocations)
{
	cr_assert_eq(index_insert(&ix, 1, 5, 0, 100, 1, 0), 0);
	cr_assert_eq(index_insert(&ix, 2, 5, 100, 100, 2, 0), 0);
	cr_assert_eq(index_insert(&ix, 3, 6, 0, 100, 1, 0), 0);
	cr_assert_eq(index_insert(&ix, 4, 2, 0, 100, 1, 0), 0);   /* older than the others */
	cr_assert_eq(index_segment_live(&ix, 2), 1);
	cr_assert_eq(index_segment_live(&ix, 5), 2);
	cr_assert_eq(index_segment_live(&ix, 6), 1);
	cr_assert_eq(index_segment_live(&ix, 4), 0);
	cr_assert_eq(index_segment_live(&ix, 1000), 0);
	cr_assert(index_mark_final(&ix, 1, 0, INDEX_RCPT_DELIVERED));
	cr_assert_eq(index_segment_live(&ix, 5), 1);
	/* Copied forward to segment 9: the recipient states go along. */
	cr_assert_not(index_mark_final(&ix, 2, 0, INDEX_RCPT_DELIVERED));
	cr_assert_eq(index_relocate(&ix, 2, 9, 64, 120, 0), 0);
	cr_assert_eq(index_segment_live(&ix, 5), 0);
	cr_assert_eq(index_segment_live(&ix, 9), 1);
	const struct index_entry *e = index_find(&ix, 2);
	cr_assert_eq(e->segment, 9);
	cr_assert_eq(e->offset, 64);
	cr_assert_eq(e->size, 120);
	cr_assert_not(index_rcpt_pending(&ix, 2, 0));
	cr_assert_eq(index_relocate(&ix, 99, 9, 0, 1, 0), -ENOENT);
	cr_assert(index_mark_final(&ix, 2, 1, INDEX_RCPT_DELIVERED));
	cr_assert_eq(index_segment_live(&ix, 9), 0);
}

Test(index, segment_counters_slide_forward_over_millions_of_segments)
{
	/* One message per segment, each final before the next arrives: the counters stay small. */
	for (uint32_t seg = 0; seg < 3000000; seg += 7) {
		uint64_t qid = (uint64_t)seg + 1;
		cr_assert_eq(index_insert(&ix, qid, seg, 0, 100, 1, 0), 0);
		cr_assert_eq(index_segment_live(&ix, seg), 1);
		cr_assert(index_mark_final(&ix, qid, 0, INDEX_RCPT_DELIVERED));
	}
	cr_assert_leq(ix.seg_cap, 64);
	/* And one far back still counts. */
	cr_assert_eq(index_insert(&ix, 1, 10, 0, 100, 1, 0), 0);
	cr_assert_eq(index_insert(&ix, 2, 3000000, 0, 100, 1, 0), 0);
	cr_assert_eq(index_segment_live(&ix, 10), 1);
	cr_assert_eq(index_segment_live(&ix, 3000000), 1);
}

Test(index, iteration_visits_each_live_message_once_even_while_removing)
{
	enum { N = 5000 };
	static uint8_t seen[N + 1];
	for (uint64_t i = 1; i <= N; i++)
		cr_assert_eq(index_insert(&ix, i, 0, 0, 100, 1, 0), 0);
	for (uint64_t i = 1; i <= N; i += 2)
		cr_assert(index_remove(&ix, i));
	uint32_t cursor = 0, count = 0;
	const struct index_entry *e;
	while ((e = index_next(&ix, &cursor)) != NULL) {
		cr_assert_leq(e->qid, N);
		cr_assert_eq(e->qid % 2, 0);
		cr_assert_eq(seen[e->qid]++, 0);
		count++;
		cr_assert(index_mark_final(&ix, e->qid, 0, INDEX_RCPT_DELIVERED));
	}
	cr_assert_eq(count, N / 2);
	cr_assert_eq(index_live(&ix), 0);
}

static void
count_entry(void *ctx, const struct index_entry *e)
{
	(void)e;
	(*(uint32_t *)ctx)++;
}

Test(index, foreach_calls_once_per_live_message)
{
	for (uint64_t i = 1; i <= 100; i++)
		cr_assert_eq(index_insert(&ix, i, 0, 0, 100, 1, 0), 0);
	cr_assert(index_remove(&ix, 50));
	uint32_t n = 0;
	index_foreach(&ix, count_entry, &n);
	cr_assert_eq(n, 99);
}

/* Queue control: a held message is never taken; a release makes it takeable again. */
Test(index, a_held_message_is_not_taken_until_released)
{
	cr_assert_eq(index_insert(&ix, 0x10, 1, 0, 100, 2, 1000), 0);
	cr_assert_eq(index_set_held(&ix, 0x10, true), 0);
	cr_assert_eq(index_take_due(&ix, 0x10, 5000), 0);
	cr_assert_eq(index_set_held(&ix, 0x10, false), 0);
	cr_assert_eq(index_take_due(&ix, 0x10, 5000), 2);
	cr_assert_eq(index_set_held(&ix, 0x11, true), -ENOENT);
}

/* flush: deferred recipients become due now; pending and final ones are left alone. */
Test(index, flush_makes_deferred_recipients_due_now)
{
	cr_assert_eq(index_insert(&ix, 0x10, 1, 0, 100, 3, 1000), 0);
	cr_assert_eq(index_mark_deferred(&ix, 0x10, 0, 90000), 0);
	cr_assert_eq(index_mark_deferred(&ix, 0x10, 1, 80000), 0);
	cr_assert(!index_mark_final(&ix, 0x10, 2, INDEX_RCPT_DELIVERED));
	cr_assert_eq(index_find(&ix, 0x10)->due_ms, 80000);
	cr_assert_eq(index_flush(&ix, 0x10, 5000), 2);
	cr_assert_eq(index_find(&ix, 0x10)->due_ms, 5000);
	cr_assert_eq(index_take_due(&ix, 0x10, 5000), 2);
	cr_assert_eq(index_flush(&ix, 0x99, 5000), 0);
}

/* bounce: ends a hold, and every deferred recipient is due now (its attempt expires it). */
Test(index, bounce_ends_a_hold_and_makes_everything_due)
{
	cr_assert_eq(index_insert(&ix, 0x10, 1, 0, 100, 2, 1000), 0);
	cr_assert_eq(index_mark_deferred(&ix, 0x10, 0, 90000), 0);
	cr_assert_eq(index_mark_deferred(&ix, 0x10, 1, 80000), 0);
	cr_assert_eq(index_set_held(&ix, 0x10, true), 0);
	cr_assert_eq(index_set_bounce(&ix, 0x10), 0);
	const struct index_entry *e = index_find(&ix, 0x10);
	cr_assert(e->bounce);
	cr_assert_not(e->held);
	cr_assert_eq(e->due_ms, 0);
	cr_assert_eq(index_take_due(&ix, 0x10, 1), 2);
}

/* The last reply lives in what was padding: no octet more per recipient. */
Test(index, the_last_reply_is_kept_per_recipient)
{
	cr_assert_eq(sizeof(struct index_rcpt), 16);
	cr_assert_eq(index_insert(&ix, 0x10, 1, 0, 100, 2, 1000), 0);
	static const uint8_t dsn[3] = { 4, 7, 1 };
	index_note(&ix, 0x10, 1, 451, dsn);
	index_note(&ix, 0x10, 7, 451, dsn);   /* out of range: nothing */
	const struct index_entry *e = index_find(&ix, 0x10);
	cr_assert_eq(index_entry_rcpt_info(e, 1)->last_code, 451);
	cr_assert_eq(index_entry_rcpt_info(e, 1)->last_dsn[1], 7);
	cr_assert_eq(index_entry_rcpt_info(e, 0)->last_code, 0);
	cr_assert_eq(index_entry_rcpt(e, 1, NULL), INDEX_RCPT_PENDING);
}
