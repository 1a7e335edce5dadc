/* tests/unit/rcpt_dedup_test.c - the duplicate filter of a message's recipients. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "conf/config.h"
#include "conf/policy.h"
#include "engine/rcpt_dedup.h"

static struct config cfg;
static struct policy policy;
static struct rcpt_dedup set;
static struct record_rcpt rcpts[SMTP_RCPT_COUNT_MAX];
static char text[SMTP_RCPT_COUNT_MAX][2][80];   /* local part and domain of generated ones */

static void
setup(void)
{
	char err[CONFIG_ERR_MAX];
	config_default(&cfg);
	cr_assert_eq(config_set(&cfg, "local_domains=localhost, example.test", err, sizeof(err)), 0);
	cr_assert_eq(policy_init(&policy, &cfg, err, sizeof(err)), 0, "%s", err);
	rcpt_dedup_init(&set);
}

static void
teardown(void)
{
	policy_fini(&policy);
}

TestSuite(rcpt_dedup, .init = setup, .fini = teardown);

static struct slice
s(const char *text_)
{
	return slice_make(text_, strlen(text_));
}

static struct record_rcpt
rcpt(const char *local_part, const char *domain, uint8_t notify)
{
	return (struct record_rcpt){ .path = s(local_part), .local_part = s(local_part),
		.domain = s(domain), .notify = notify };
}

static uint32_t
apply(uint32_t count)
{
	return rcpt_dedup_apply(&set, &policy, rcpts, count);
}

static void
expect(uint32_t i, const char *local_part, const char *domain)
{
	cr_assert(slice_eq(rcpts[i].local_part, s(local_part)) && slice_eq(rcpts[i].domain,
		s(domain)), "recipient %u is %.*s@%.*s, not %s@%s", i, (int)rcpts[i].local_part.len,
		(const char *)rcpts[i].local_part.ptr, (int)rcpts[i].domain.len,
		(const char *)rcpts[i].domain.ptr, local_part, domain);
}

Test(rcpt_dedup, a_thousand_times_one_recipient_is_one)
{
	for (uint32_t i = 0; i < SMTP_RCPT_COUNT_MAX; i++)
		rcpts[i] = rcpt("alice", "localhost", (uint8_t)(i == 0 ? SMTP_DSN_NOTIFY_SUCCESS : 0));
	cr_assert_eq(apply(SMTP_RCPT_COUNT_MAX), 1);
	expect(0, "alice", "localhost");
	cr_assert_eq(rcpts[0].notify, SMTP_DSN_NOTIFY_SUCCESS, "the first keeps its NOTIFY");
}

Test(rcpt_dedup, a_local_part_of_a_local_domain_compares_as_its_mailbox)
{
	rcpts[0] = rcpt("Alice", "localhost", SMTP_DSN_NOTIFY_NEVER);
	rcpts[0].orcpt = s("rfc822;Alice@localhost");
	rcpts[1] = rcpt("ALICE", "LOCALHOST", SMTP_DSN_NOTIFY_FAILURE);
	rcpts[2] = rcpt("alice", "localhost.", 0);            /* one trailing dot: the same */
	rcpts[3] = rcpt("aLiCe", "Example.Test", 0);          /* another local domain: another */
	rcpts[4] = rcpt("alice", "example.test", 0);
	cr_assert_eq(apply(5), 2);
	expect(0, "Alice", "localhost");
	cr_assert_eq(rcpts[0].notify, SMTP_DSN_NOTIFY_NEVER);
	cr_assert(slice_eq(rcpts[0].orcpt, s("rfc822;Alice@localhost")), "its ORCPT stays");
	expect(1, "aLiCe", "Example.Test");
}

Test(rcpt_dedup, a_remote_local_part_compares_octet_for_octet)
{
	rcpts[0] = rcpt("Bob", "remote.example", 0);
	rcpts[1] = rcpt("bob", "remote.example", 0);
	rcpts[2] = rcpt("Bob", "REMOTE.example", 0);          /* the domain folds */
	rcpts[3] = rcpt("Bob", "remote.example.", 0);
	rcpts[4] = rcpt("bob", "other.example", 0);
	cr_assert_eq(apply(5), 3);
	expect(0, "Bob", "remote.example");
	expect(1, "bob", "remote.example");
	expect(2, "bob", "other.example");
}

Test(rcpt_dedup, first_occurrences_keep_their_order)
{
	static const char *const order[] = { "a", "b", "a", "c", "B", "a", "d", "c" };
	for (uint32_t i = 0; i < ARRAY_LEN(order); i++)
		rcpts[i] = rcpt(order[i], "localhost", 0);
	cr_assert_eq(apply(ARRAY_LEN(order)), 4);
	expect(0, "a", "localhost");
	expect(1, "b", "localhost");
	expect(2, "c", "localhost");
	expect(3, "d", "localhost");
}

Test(rcpt_dedup, postmaster_without_a_domain_is_local)
{
	rcpts[0] = rcpt("Postmaster", "", 0);
	rcpts[1] = rcpt("postmaster", "", 0);
	rcpts[2] = rcpt("POSTMASTER", "localhost", 0);
	cr_assert_eq(apply(3), 2);
	expect(0, "Postmaster", "");
	expect(1, "POSTMASTER", "localhost");
}

Test(rcpt_dedup, a_thousand_distinct_recipients_all_stay)
{
	/* Many share a hash slot's neighbourhood: probing must tell them apart. */
	for (uint32_t i = 0; i < SMTP_RCPT_COUNT_MAX; i++) {
		snprintf(text[i][0], sizeof(text[i][0]), "u%u", i);
		snprintf(text[i][1], sizeof(text[i][1]), i % 2 ? "localhost" : "r%u.example", i % 7);
		rcpts[i] = rcpt(text[i][0], text[i][1], 0);
	}
	cr_assert_eq(apply(SMTP_RCPT_COUNT_MAX), SMTP_RCPT_COUNT_MAX);
	for (uint32_t i = 0; i < SMTP_RCPT_COUNT_MAX; i++)
		expect(i, text[i][0], text[i][1]);
}

Test(rcpt_dedup, each_call_starts_with_an_empty_set)
{
	rcpts[0] = rcpt("alice", "localhost", 0);
	cr_assert_eq(apply(1), 1);
	rcpts[0] = rcpt("alice", "localhost", 0);
	rcpts[1] = rcpt("bob", "localhost", 0);
	cr_assert_eq(apply(2), 2, "alice of the last message is not a repeat in this one");
	cr_assert_eq(apply(0), 0);
}

Test(rcpt_dedup, the_stamp_wrapping_around_forgets_nothing_wrongly)
{
	rcpts[0] = rcpt("alice", "localhost", 0);
	cr_assert_eq(apply(1), 1);           /* stamps a slot with generation 1 */
	set.gen = UINT32_MAX;                /* the next call wraps to 0, then 1 again */
	rcpts[0] = rcpt("alice", "localhost", 0);
	cr_assert_eq(apply(1), 1, "an old stamp equal to the new generation must not count");
	expect(0, "alice", "localhost");
}
