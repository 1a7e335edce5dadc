/* tests/unit/dns_name_test.c - names from text and wire, to text, PTR names, enclosure. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>

#include "dns/name.h"

static int
from_text(const char *text, struct dns_name *n)
{
	return dns_name_from_text(slice_make(text, strlen(text)), n);
}

static const char *
to_text(const struct dns_name *n)
{
	static char buf[DNS_NAME_TEXT_MAX];
	size_t len = dns_name_to_text(n, buf, sizeof(buf));
	return len == 0 ? "" : buf;
}

Test(dns_name, text_round_trips_lower_cased_without_trailing_dot)
{
	struct dns_name n;
	cr_assert_eq(from_text("Mx1.Example.COM.", &n), 0);
	cr_assert_eq(n.len, 17);
	cr_assert_eq(memcmp(n.wire, "\3mx1\7example\3com", 17), 0);
	cr_assert_str_eq(to_text(&n), "mx1.example.com");
	cr_assert_eq(from_text("_25._tcp.mx.test", &n), 0);
	cr_assert_str_eq(to_text(&n), "_25._tcp.mx.test");
}

Test(dns_name, bad_text_is_refused)
{
	struct dns_name n;
	static const char *bad[] = { "", ".", "a..b", ".a", "a b", "a\\.b", "ex@mple.com",
		"caf\xc3\xa9.test" };
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(from_text(bad[i], &n), -EINVAL, "%s", bad[i]);
}

Test(dns_name, label_and_name_lengths_at_and_past_the_limit)
{
	struct dns_name n;
	char text[300];
	memset(text, 'a', 63);
	text[63] = '\0';
	cr_assert_eq(from_text(text, &n), 0);
	memset(text, 'a', 64);
	text[64] = '\0';
	cr_assert_eq(from_text(text, &n), -EINVAL);
	/* 253 octets of text: 3 labels of 63 and one of 61, with dots. */
	size_t p = 0;
	for (int i = 0; i < 4; i++) {
		size_t l = i < 3 ? 63 : 61;
		memset(text + p, 'b', l);
		p += l;
		text[p++] = i < 3 ? '.' : '\0';
	}
	cr_assert_eq(strlen(text), 253);
	cr_assert_eq(from_text(text, &n), 0);
	cr_assert_eq(n.len, DNS_NAME_LEN_MAX);
	text[252] = 'b';
	text[253] = 'b';
	text[254] = '\0';
	cr_assert_eq(from_text(text, &n), -EINVAL, "254 octets");
}

Test(dns_name, wire_must_end_with_the_root_exactly)
{
	struct dns_name n;
	cr_assert_eq(dns_name_from_wire((const uint8_t *)"\4HOST\4test", 11, &n), 0);
	cr_assert_str_eq(to_text(&n), "host.test");
	cr_assert_eq(dns_name_from_wire((const uint8_t *)"\4host\4test", 10, &n), -EBADMSG);
	cr_assert_eq(dns_name_from_wire((const uint8_t *)"\4host\4test\0\0", 12, &n), -EBADMSG);
	cr_assert_eq(dns_name_from_wire((const uint8_t *)"\x40", 1, &n), -EBADMSG);
	cr_assert_eq(dns_name_from_wire((const uint8_t *)"", 1, &n), 0);
	cr_assert(dns_name_is_root(&n));
	cr_assert_str_eq(to_text(&n), ".");
}

Test(dns_name, non_host_octets_give_no_text)
{
	struct dns_name n;
	cr_assert_eq(dns_name_from_wire((const uint8_t *)"\3a.b\4test", 10, &n), 0);
	cr_assert_eq(dns_name_to_text(&n, (char[DNS_NAME_TEXT_MAX]){ 0 }, DNS_NAME_TEXT_MAX), 0);
}

Test(dns_name, reverse_names_for_ptr)
{
	struct dns_name n;
	uint8_t a4[4] = { 192, 0, 2, 10 };
	dns_name_reverse(AF_INET, a4, &n);
	cr_assert_str_eq(to_text(&n), "10.2.0.192.in-addr.arpa");
	uint8_t a6[16];
	inet_pton(AF_INET6, "2001:db8::1", a6);
	dns_name_reverse(AF_INET6, a6, &n);
	cr_assert_str_eq(to_text(&n),
		"1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa");
}

Test(dns_name, is_under_needs_a_label_boundary)
{
	struct dns_name a, b, c;
	cr_assert_eq(from_text("host.example.test", &a), 0);
	cr_assert_eq(from_text("example.test", &b), 0);
	cr_assert_eq(from_text("ample.test", &c), 0);
	cr_assert(dns_name_is_under(&a, &b));
	cr_assert(dns_name_is_under(&b, &b));
	cr_assert(!dns_name_is_under(&b, &a));
	cr_assert(!dns_name_is_under(&b, &c));
}

Test(dns_name, ip_text_parses)
{
	uint8_t addr[16];
	cr_assert_eq(dns_name_parse_ip(SLICE_LIT("127.0.0.1"), addr), AF_INET);
	cr_assert_eq(dns_name_parse_ip(SLICE_LIT("::1"), addr), AF_INET6);
	cr_assert_eq(dns_name_parse_ip(SLICE_LIT("mx.test"), addr), 0);
}
