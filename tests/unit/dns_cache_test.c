/* tests/unit/dns_cache_test.c - TTLs, negative entries, the entry bound and LRU eviction. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>

#include "dns/cache.h"

static const uint8_t key[DNS_CACHE_KEY_LEN] = "0123456789abcdef";
static struct dns_answer *ans;
static struct dns_cache *c;

static struct dns_name
name(const char *text)
{
	struct dns_name n;
	cr_assert_eq(dns_name_from_text(slice_make(text, strlen(text)), &n), 0);
	return n;
}

static void
one_a(uint32_t ttl, uint8_t last)
{
	memset(ans, 0, sizeof(*ans));
	ans->kind = DNS_ANSWER_DATA;
	ans->ttl = ttl;
	ans->rr_count = 1;
	ans->rrs[0] = (struct dns_rr){ .ttl = ttl, .off = 0, .len = 4 };
	memcpy(ans->data, (uint8_t[]){ 127, 0, 0, last }, 4);
	ans->data_len = 4;
}

static void
setup(void)
{
	ans = calloc(1, sizeof(*ans));
	cr_assert_not_null(ans);
	c = NULL;
}

static void
teardown(void)
{
	dns_cache_free(c);
	free(ans);
}

TestSuite(dns_cache, .init = setup, .fini = teardown);

Test(dns_cache, hit_until_the_ttl_runs_out)
{
	cr_assert_eq(dns_cache_new(10, key, &c), 0);
	struct dns_name n = name("host.test");
	one_a(30, 7);
	cr_assert_eq(dns_cache_put(c, &n, DNS_TYPE_A, ans, 1000), 0);
	const struct dns_cache_entry *e = dns_cache_get(c, &n, DNS_TYPE_A, 30999);
	cr_assert_not_null(e);
	cr_assert_eq(e->kind, DNS_ANSWER_DATA);
	cr_assert_eq(e->rr_count, 1);
	cr_assert_eq(e->data[e->rrs[0].off + 3], 7);
	cr_assert_null(dns_cache_get(c, &n, DNS_TYPE_AAAA, 2000), "another type");
	cr_assert_null(dns_cache_get(c, &n, DNS_TYPE_A, 31000), "expired");
	struct dns_cache_stats st;
	dns_cache_get_stats(c, &st);
	cr_assert_eq(st.entries, 0);
	cr_assert_eq(st.expired, 1);
	cr_assert_eq(st.hits, 1);
}

Test(dns_cache, negative_answers_are_kept_failures_and_ttl_0_are_not)
{
	cr_assert_eq(dns_cache_new(10, key, &c), 0);
	struct dns_name n = name("nope.test");
	memset(ans, 0, sizeof(*ans));
	ans->kind = DNS_ANSWER_NXDOMAIN;
	ans->ttl = 60;
	cr_assert_eq(dns_cache_put(c, &n, DNS_TYPE_MX, ans, 0), 0);
	const struct dns_cache_entry *e = dns_cache_get(c, &n, DNS_TYPE_MX, 59999);
	cr_assert_not_null(e);
	cr_assert_eq(e->kind, DNS_ANSWER_NXDOMAIN);
	ans->kind = DNS_ANSWER_SERVFAIL;
	cr_assert_eq(dns_cache_put(c, &n, DNS_TYPE_A, ans, 0), 0);
	cr_assert_null(dns_cache_get(c, &n, DNS_TYPE_A, 1));
	ans->kind = DNS_ANSWER_NODATA;
	ans->ttl = 0;
	cr_assert_eq(dns_cache_put(c, &n, DNS_TYPE_AAAA, ans, 0), 0);
	cr_assert_null(dns_cache_get(c, &n, DNS_TYPE_AAAA, 0));
	one_a(60, 1);
	ans->rrs_dropped = true;
	cr_assert_eq(dns_cache_put(c, &n, DNS_TYPE_TXT, ans, 0), 0);
	cr_assert_null(dns_cache_get(c, &n, DNS_TYPE_TXT, 0), "an incomplete set");
}

Test(dns_cache, a_new_answer_replaces_the_old)
{
	cr_assert_eq(dns_cache_new(10, key, &c), 0);
	struct dns_name n = name("host.test");
	one_a(60, 1);
	cr_assert_eq(dns_cache_put(c, &n, DNS_TYPE_A, ans, 0), 0);
	one_a(60, 2);
	cr_assert_eq(dns_cache_put(c, &n, DNS_TYPE_A, ans, 0), 0);
	const struct dns_cache_entry *e = dns_cache_get(c, &n, DNS_TYPE_A, 1);
	cr_assert_eq(e->data[3], 2);
	struct dns_cache_stats st;
	dns_cache_get_stats(c, &st);
	cr_assert_eq(st.entries, 1);
}

Test(dns_cache, at_the_bound_the_least_recently_used_goes)
{
	enum { MAX = 4 };
	cr_assert_eq(dns_cache_new(MAX, key, &c), 0);
	struct dns_name n[MAX + 1];
	char text[32];
	for (int i = 0; i <= MAX; i++) {
		snprintf(text, sizeof(text), "h%d.test", i);
		n[i] = name(text);
	}
	one_a(60, 1);
	for (int i = 0; i < MAX; i++)
		cr_assert_eq(dns_cache_put(c, &n[i], DNS_TYPE_A, ans, 0), 0);
	cr_assert_not_null(dns_cache_get(c, &n[0], DNS_TYPE_A, 1), "h0 used: h1 is now oldest");
	struct dns_cache_stats st;
	dns_cache_get_stats(c, &st);
	cr_assert_eq(st.entries, MAX, "at the bound");
	cr_assert_eq(st.evicted, 0);
	cr_assert_eq(dns_cache_put(c, &n[MAX], DNS_TYPE_A, ans, 0), 0);
	dns_cache_get_stats(c, &st);
	cr_assert_eq(st.entries, MAX, "past it: still the bound");
	cr_assert_eq(st.evicted, 1);
	cr_assert_null(dns_cache_get(c, &n[1], DNS_TYPE_A, 1));
	cr_assert_not_null(dns_cache_get(c, &n[0], DNS_TYPE_A, 1));
	cr_assert_not_null(dns_cache_get(c, &n[MAX], DNS_TYPE_A, 1));
}

Test(dns_cache, zero_entries_keeps_nothing)
{
	cr_assert_eq(dns_cache_new(0, key, &c), 0);
	struct dns_name n = name("host.test");
	one_a(60, 1);
	cr_assert_eq(dns_cache_put(c, &n, DNS_TYPE_A, ans, 0), 0);
	cr_assert_null(dns_cache_get(c, &n, DNS_TYPE_A, 1));
}
