/* tests/unit/route_test.c - transport_maps, next hops and destination_policy_file. */
#include <criterion/criterion.h>
#include <string.h>

#include "conf/config.h"
#include "conf/route.h"

static char err[ROUTE_ERR_MAX];

static struct route
route_of(const char *transport, const char *policy)
{
	struct route r;
	memset(&r, 0, sizeof(r));
	cr_assert_eq(route_table_parse(&r.transport, false, "transport",
		slice_make(transport, strlen(transport)), err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(route_table_parse(&r.policy, true, "policy",
		slice_make(policy, strlen(policy)), err, sizeof(err)), 0, "%s", err);
	return r;
}

Test(route, hop_syntax_is_postfixs)
{
	struct route_hop h;
	cr_assert(route_hop_parse(SLICE_LIT("[127.0.0.1]:2525"), &h));
	cr_assert_str_eq(h.host, "127.0.0.1");
	cr_assert_eq(h.port, 2525);
	cr_assert_not(h.mx);
	cr_assert(route_hop_parse(SLICE_LIT("smtp:[::1]:25"), &h));
	cr_assert_str_eq(h.host, "::1");
	cr_assert(route_hop_parse(SLICE_LIT("Relay.Example.COM"), &h));
	cr_assert_str_eq(h.host, "relay.example.com");
	cr_assert(h.mx);
	cr_assert_eq(h.port, 0);
	cr_assert(route_hop_parse(SLICE_LIT("[mx.example.com]"), &h));
	cr_assert_not(h.mx);
	cr_assert_not(route_hop_parse(SLICE_LIT("127.0.0.1:25"), &h), "an address needs brackets");
	cr_assert_not(route_hop_parse(SLICE_LIT("[127.0.0.1]:0"), &h));
	cr_assert_not(route_hop_parse(SLICE_LIT("[127.0.0.1]:65536"), &h));
	cr_assert_not(route_hop_parse(SLICE_LIT("[127.0.0.1"), &h));
	cr_assert_not(route_hop_parse(SLICE_LIT("host:"), &h));
	cr_assert_not(route_hop_parse(SLICE_LIT("bad..name"), &h));
	cr_assert_not(route_hop_parse(SLICE_LIT(""), &h));
}

Test(route, exact_entry_then_subdomain_entry_then_mx)
{
	struct route r = route_of("# comment\nexample.com [127.0.0.2]:26\n"
		".example.com [127.0.0.3]\nsub.example.com other.test:27\n", "");
	struct route_hop h;
	cr_assert(route_next_hop(&r, SLICE_LIT("EXAMPLE.com"), &h));
	cr_assert_str_eq(h.host, "127.0.0.2");
	cr_assert_eq(h.port, 26);
	cr_assert(route_next_hop(&r, SLICE_LIT("a.b.example.com"), &h));
	cr_assert_str_eq(h.host, "127.0.0.3");
	cr_assert(route_next_hop(&r, SLICE_LIT("sub.example.com"), &h));
	cr_assert_str_eq(h.host, "other.test");
	cr_assert(h.mx);
	cr_assert(route_next_hop(&r, SLICE_LIT("x.sub.example.com"), &h), "no .sub entry");
	cr_assert_str_eq(h.host, "127.0.0.3");
	cr_assert(route_next_hop(&r, SLICE_LIT("elsewhere.test"), &h));
	cr_assert_str_eq(h.host, "elsewhere.test");
	cr_assert(h.mx);
	cr_assert(route_next_hop(&r, SLICE_LIT("[127.0.0.9]"), &h));
	cr_assert_str_eq(h.host, "127.0.0.9");
	cr_assert_not(h.mx);
	cr_assert_not(route_next_hop(&r, SLICE_LIT("[nonsense]"), &h));
	cr_assert_not(route_next_hop(&r, SLICE_LIT("a b"), &h));
	route_fini(&r);
}

Test(route, relayhost_takes_what_no_entry_matches)
{
	struct route r = route_of("example.com [127.0.0.2]\n", "");
	strcpy(r.relayhost.host, "relay.test");
	r.relayhost.mx = true;
	struct route_hop h;
	cr_assert(route_next_hop(&r, SLICE_LIT("other.test"), &h));
	cr_assert_str_eq(h.host, "relay.test");
	cr_assert(route_next_hop(&r, SLICE_LIT("example.com"), &h));
	cr_assert_str_eq(h.host, "127.0.0.2");
	route_fini(&r);
}

Test(route, bad_lines_name_file_and_line)
{
	struct route_table t;
	cr_assert_eq(route_table_parse(&t, false, "tm", SLICE_LIT("a.test [1.2.3.4]\nb.test\n"),
		err, sizeof(err)), -1);
	cr_assert(strstr(err, "tm:2:") != NULL, "%s", err);
	cr_assert_eq(route_table_parse(&t, false, "tm", SLICE_LIT("a.test x y\n"), err,
		sizeof(err)), -1);
	cr_assert_eq(route_table_parse(&t, false, "tm", SLICE_LIT("a.test h\nA.test h2\n"), err,
		sizeof(err)), -1);
	cr_assert(strstr(err, "twice") != NULL, "%s", err);
	cr_assert_eq(route_table_parse(&t, true, "pol", SLICE_LIT("a.test speed=3\n"), err,
		sizeof(err)), -1);
	cr_assert_eq(route_table_parse(&t, true, "pol", SLICE_LIT("a.test concurrency=0\n"), err,
		sizeof(err)), -1);
	cr_assert_eq(route_table_parse(&t, true, "pol", SLICE_LIT("a.test concurrency=1001\n"), err,
		sizeof(err)), -1);
	cr_assert_eq(route_table_parse(&t, true, "pol", SLICE_LIT("a.test rate=100001/s\n"), err,
		sizeof(err)), -1);
}

Test(route, policy_tls_level_per_destination) /* Postfix's smtp_tls_policy_maps levels */
{
	struct route r = route_of("", "secure.test tls=verify concurrency=3\nold.test tls=none\n"
		"a.test tls=may\nb.test tls=encrypt\nc.test concurrency=1\n");
	static const struct { const char *d; uint8_t tls; } want[] = {
		{ "secure.test", ROUTE_TLS_GIVEN + CONFIG_TLS_VERIFY },
		{ "old.test", ROUTE_TLS_GIVEN + CONFIG_TLS_NONE },
		{ "a.test", ROUTE_TLS_GIVEN + CONFIG_TLS_MAY },
		{ "b.test", ROUTE_TLS_GIVEN + CONFIG_TLS_ENCRYPT },
		{ "c.test", 0 },
	};
	for (size_t i = 0; i < ARRAY_LEN(want); i++) {
		const struct route_limits *l = route_policy_find(&r, slice_make(want[i].d,
			strlen(want[i].d)), NULL, 0);
		cr_assert_not_null(l);
		cr_assert_eq(l->tls, want[i].tls, "%s", want[i].d);
	}
	cr_assert(route_policy_wants_tls(&r));
	route_fini(&r);
	r = route_of("", "old.test tls=none\n");
	cr_assert(!route_policy_wants_tls(&r));
	route_fini(&r);
	struct route_table t;
	cr_assert_eq(route_table_parse(&t, true, "pol", SLICE_LIT("a.test tls=dane\n"), err,
		sizeof(err)), -1);
	cr_assert(strstr(err, "tls") != NULL, "%s", err);
	cr_assert_eq(route_table_parse(&t, true, "pol", SLICE_LIT("a.test tls=\n"), err,
		sizeof(err)), -1);
}

Test(route, policy_most_specific_match_wins)
{
	struct route r = route_of("", ".google.com concurrency=5 messages_per_connection=50 "
		"rate=20/s\n.l.google.com recipients=7\nexample.org concurrency=2\n");
	struct slice mx[] = { SLICE_LIT("alt1.aspmx.l.google.com"), SLICE_LIT("mx.google.com") };
	const struct route_limits *l = route_policy_find(&r, SLICE_LIT("customer.test"), mx, 2);
	cr_assert_not_null(l);
	cr_assert_eq(l->recipients, 7);
	cr_assert_eq(l->concurrency, 0, "not given: the global value holds");
	l = route_policy_find(&r, SLICE_LIT("customer.test"), &mx[1], 1);
	cr_assert_not_null(l);
	cr_assert_eq(l->concurrency, 5);
	cr_assert_eq(l->messages_per_connection, 50);
	cr_assert_eq(l->rate, 20);
	l = route_policy_find(&r, SLICE_LIT("Example.ORG"), NULL, 0);
	cr_assert_not_null(l);
	cr_assert_eq(l->concurrency, 2);
	cr_assert_null(route_policy_find(&r, SLICE_LIT("none.test"), NULL, 0));
	route_fini(&r);
}
