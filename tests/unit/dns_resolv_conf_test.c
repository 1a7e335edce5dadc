/* tests/unit/dns_resolv_conf_test.c - nameserver lines and the timeout/attempts options. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>

#include "dns/resolv_conf.h"

static void
parse(const char *text, struct dns_resolv_conf *rc)
{
	dns_resolv_conf_parse(slice_make(text, strlen(text)), rc);
}

Test(dns_resolv_conf, nameservers_in_order_with_port_53)
{
	struct dns_resolv_conf rc;
	parse("# comment\nsearch example.test\nnameserver 127.0.0.53\n"
		"nameserver  ::1 \nnameserver fe80::1%eth0\nnameserver bogus\n", &rc);
	cr_assert_eq(rc.server_count, 3);
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&rc.servers[0].sa;
	cr_assert_eq(sin->sin_family, AF_INET);
	cr_assert_eq(ntohs(sin->sin_port), 53);
	cr_assert_eq(ntohl(sin->sin_addr.s_addr), 0x7f000035);
	cr_assert_eq(rc.servers[1].sa.ss_family, AF_INET6);
	cr_assert_eq(rc.timeout_s, 0);
	cr_assert_eq(rc.attempts, 0);
}

Test(dns_resolv_conf, options_timeout_and_attempts_clamped)
{
	struct dns_resolv_conf rc;
	parse("nameserver 127.0.0.1\noptions ndots:2 timeout:3 attempts:4 rotate\n", &rc);
	cr_assert_eq(rc.timeout_s, 3);
	cr_assert_eq(rc.attempts, 4);
	parse("options timeout:99 attempts:99\n", &rc);
	cr_assert_eq(rc.timeout_s, CONFIG_DNS_TIMEOUT_MAX_S);
	cr_assert_eq(rc.attempts, CONFIG_DNS_ATTEMPTS_MAX);
	parse("options timeout:0 attempts:x\n", &rc);
	cr_assert_eq(rc.timeout_s, 1);
	cr_assert_eq(rc.attempts, 0);
}

Test(dns_resolv_conf, servers_at_and_past_the_limit)
{
	char text[1024] = "";
	for (uint32_t i = 0; i <= CONFIG_DNS_SERVERS_MAX; i++)
		snprintf(text + strlen(text), 64, "nameserver 127.0.0.%u\n", i + 1);
	struct dns_resolv_conf rc;
	parse(text, &rc);
	cr_assert_eq(rc.server_count, CONFIG_DNS_SERVERS_MAX);
}

Test(dns_resolv_conf, missing_file_is_an_error)
{
	struct dns_resolv_conf rc;
	cr_assert_eq(dns_resolv_conf_read("/nonexistent/resolv.conf", &rc), -ENOENT);
	cr_assert_eq(rc.server_count, 0);
}
