/* tests/unit/reply_cache_test.c - the bounded table of recent replies' text. */
#include <criterion/criterion.h>
#include <string.h>

#include "queue/reply_cache.h"

Test(reply_cache, a_reply_is_found_by_its_message_and_recipient)
{
	struct reply_cache *rc = reply_cache_new();
	cr_assert_not_null(rc);
	cr_assert_eq(reply_cache_get(rc, 0x10, 0).len, 0, "nothing kept yet");
	reply_cache_put(rc, 0x10, 0, SLICE_LIT("451 4.7.1 greylisted"));
	reply_cache_put(rc, 0x10, 1, SLICE_LIT("550 5.1.1 unknown"));
	cr_assert(slice_eq(reply_cache_get(rc, 0x10, 0), SLICE_LIT("451 4.7.1 greylisted")));
	cr_assert(slice_eq(reply_cache_get(rc, 0x10, 1), SLICE_LIT("550 5.1.1 unknown")));
	cr_assert_eq(reply_cache_get(rc, 0x11, 0).len, 0);
	reply_cache_put(rc, 0x10, 0, SLICE_LIT("250 ok"));   /* a later attempt replaces it */
	cr_assert(slice_eq(reply_cache_get(rc, 0x10, 0), SLICE_LIT("250 ok")));
	reply_cache_free(rc);
}

/* The bound: a reply is cut at REPLY_CACHE_TEXT_MAX octets, and however many are put the table
 * keeps at most REPLY_CACHE_SLOTS, a displaced one reading as unknown (never another's text). */
Test(reply_cache, long_replies_are_cut_and_the_table_never_grows)
{
	struct reply_cache *rc = reply_cache_new();
	char big[300];
	memset(big, 'x', sizeof(big));
	reply_cache_put(rc, 0x20, 3, slice_make(big, sizeof(big)));
	cr_assert_eq(reply_cache_get(rc, 0x20, 3).len, REPLY_CACHE_TEXT_MAX);
	uint32_t kept = 0;
	for (uint64_t q = 1; q <= 4 * REPLY_CACHE_SLOTS; q++)
		reply_cache_put(rc, q << 8, 0, SLICE_LIT("451 later"));
	for (uint64_t q = 1; q <= 4 * REPLY_CACHE_SLOTS; q++) {
		struct slice t = reply_cache_get(rc, q << 8, 0);
		if (t.len > 0) {
			cr_assert(slice_eq(t, SLICE_LIT("451 later")));
			kept++;
		}
	}
	cr_assert_leq(kept, REPLY_CACHE_SLOTS);
	cr_assert_gt(kept, REPLY_CACHE_SLOTS / 2, "the hash spreads: %u kept", kept);
	reply_cache_free(rc);
}
