/* tests/unit/config_test.c - the configuration file, -o, the default, printing and checks. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/smtp_server.h"
#include "base/log.h"
#include "conf/config.h"

static struct config cfg;
static char err[CONFIG_ERR_MAX];

static int
load(const char *text)
{
	config_default(&cfg);
	err[0] = '\0';
	return config_load_buf(&cfg, "ringmta.conf", text, strlen(text), err, sizeof(err));
}

static void
expect_ok(const char *text)
{
	cr_assert_eq(load(text), 0, "%s: %s", text, err);
}

/* The load fails and the message contains want. */
static void
expect_err(const char *text, const char *want)
{
	cr_assert_eq(load(text), -1, "%s: accepted", text);
	cr_assert(strstr(err, want) != NULL, "%s: message \"%s\", want \"%s\"", text, err, want);
}

/* "key = value\n" into a static buffer. */
static const char *
kv(const char *key, const char *value)
{
	static char line[CONFIG_LINE_LEN_MAX + 64];
	snprintf(line, sizeof(line), "%s = %s\n", key, value);
	return line;
}

static void
expect_value_ok(const char *key, const char *value)
{
	expect_ok(kv(key, value));
}

static void
expect_value_err(const char *key, const char *value)
{
	cr_assert_eq(load(kv(key, value)), -1, "%s = %s: accepted", key, value);
	char prefix[128];
	snprintf(prefix, sizeof(prefix), "ringmta.conf:1: %s: ", key);
	cr_assert(strncmp(err, prefix, strlen(prefix)) == 0, "%s = %s: message \"%s\"", key, value,
		err);
}

static void
expect_addr(const struct config_addr *a, int family, const char *ip, uint16_t port)
{
	char text[INET6_ADDRSTRLEN];
	cr_assert_eq(a->sa.ss_family, family);
	if (family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->sa;
		inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text));
		cr_assert_eq(ntohs(sin->sin_port), port);
		cr_assert_eq(a->sa_len, sizeof(*sin));
	} else {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a->sa;
		inet_ntop(AF_INET6, &sin6->sin6_addr, text, sizeof(text));
		cr_assert_eq(ntohs(sin6->sin6_port), port);
		cr_assert_eq(a->sa_len, sizeof(*sin6));
	}
	cr_assert_str_eq(text, ip);
}

static uint32_t
online_cpus(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n < 1 ? 1 : n > (long)CONFIG_SHARDS_MAX ? CONFIG_SHARDS_MAX : (uint32_t)n;
}

/* ---- the default ---- */

Test(config, default_serves_smtp_on_loopback_2525)
{
	config_default(&cfg);
	cr_assert_eq(cfg.listen_count, 1);
	expect_addr(&cfg.listen[0], AF_INET, "127.0.0.1", 2525);
	cr_assert_eq(cfg.submission_listen_count, 0);
	cr_assert_eq(cfg.smtps_listen_count, 0);
	cr_assert_str_eq(cfg.spool_dir, "./var/spool");
	cr_assert_str_eq(cfg.maildir_root, "./var/mail");
	cr_assert_eq(cfg.local_domain_count, 1);
	cr_assert_str_eq(cfg.local_domains[0], "localhost");
	cr_assert_str_eq(cfg.local_users_file, "");
	cr_assert_str_eq(cfg.log_file, "");
	cr_assert_str_eq(cfg.relayhost, "");
	cr_assert_eq(cfg.dns_server_count, 0);
	cr_assert(cfg.myhostname[0] != '\0');
}

Test(config, default_trusts_no_network_not_even_loopback)
{
	config_default(&cfg);
	cr_assert_eq(cfg.relay_network_count, 0);
}

Test(config, default_limits)
{
	config_default(&cfg);
	cr_assert_eq(cfg.max_message_size, 50u << 20);
	cr_assert_eq(cfg.max_recipients, SMTP_RCPT_COUNT_MAX);
	cr_assert_eq(cfg.max_recipients, 1000);
	cr_assert_eq(cfg.max_connections, 10000);
	cr_assert_eq(cfg.bad_cmd_max, SMTP_BAD_CMD_COUNT_MAX);
	cr_assert_eq(cfg.cmd_timeout_ms, 300000);      /* RFC 5321 4.5.3.2.7 */
	cr_assert_eq(cfg.data_timeout_ms, 180000);     /* RFC 5321 4.5.3.2.5 */
	cr_assert_eq(cfg.queue_lifetime_s, 5 * 86400);
	cr_assert_eq(cfg.remote_smtp_port, 25);
	cr_assert_eq(cfg.shards, online_cpus());
}

Test(config, default_passes_the_cross_checks)
{
	config_default(&cfg);
	cr_assert_eq(config_check(&cfg, err, sizeof(err)), 0, "%s", err);
}

/* ---- syntax ---- */

Test(config, comments_blank_lines_and_crlf_are_accepted)
{
	expect_ok("# a comment\n\n   \t\n  # indented comment\r\nmax_recipients = 7\r\n"
		"\tbad_cmd_max\t=\t3   \n");
	cr_assert_eq(cfg.max_recipients, 7);
	cr_assert_eq(cfg.bad_cmd_max, 3);
}

Test(config, last_line_needs_no_newline)
{
	expect_ok("max_recipients = 9");
	cr_assert_eq(cfg.max_recipients, 9);
}

Test(config, repeated_key_last_wins)
{
	expect_ok("max_recipients = 5\nmax_recipients = 6\n");
	cr_assert_eq(cfg.max_recipients, 6);
}

Test(config, unknown_key_is_an_error_naming_file_line_and_key)
{
	cr_assert_eq(load("# x\nmax_recipients = 5\nmax_recipient = 5\n"), -1);
	cr_assert_str_eq(err, "ringmta.conf:3: max_recipient: unknown key");
}

Test(config, out_of_range_message_names_file_line_key_and_range)
{
	cr_assert_eq(load("\n\n\n\n\n\n\n\n\n\n\nmax_recipients = 5000\n"), -1);
	cr_assert_str_eq(err, "ringmta.conf:12: max_recipients: 5000 is out of range 1..1000");
}

Test(config, line_without_equals_is_an_error)
{
	expect_err("listen 127.0.0.1:25\n", "ringmta.conf:1: expected key = value");
}

Test(config, keys_are_case_sensitive)
{
	expect_err("Listen = 127.0.0.1:25\n", "Listen: unknown key");
}

Test(config, control_characters_are_refused)
{
	expect_err("spool_dir = /var/sp\001ool\n", "spool_dir: a control character");
	expect_err("spool_dir = /var/spool\x7f\n", "spool_dir: a control character");
	cr_assert_eq(config_load_buf(&cfg, "f", "spool_dir = /x\0y\n", 17, err, sizeof(err)), -1);
	cr_assert_str_eq(err, "f:1: NUL octet in line");
}

Test(config, unknown_key_with_control_characters_is_echoed_safely)
{
	cr_assert_eq(load("a\033[2Jb = 1\n"), -1);
	cr_assert_str_eq(err, "ringmta.conf:1: a?[2Jb: unknown key");
}

Test(config, hash_after_a_blank_in_a_value_is_refused_not_a_comment)
{
	expect_err("spool_dir = /var/spool # the spool\n", "'#' starts a comment only");
	expect_err("spool_dir = #x\n", "'#' starts a comment only");
	expect_ok("spool_dir = /var/spool#1\n");
	cr_assert_str_eq(cfg.spool_dir, "/var/spool#1");
}

Test(config, line_length_at_and_past_the_limit)
{
	static char text[CONFIG_LINE_LEN_MAX + 2];
	/* "spool_dir = /" is 13 octets; pad the path to make the line 4095 octets. */
	memset(text, 'a', sizeof(text));
	memcpy(text, "spool_dir = /", 13);
	text[CONFIG_LINE_LEN_MAX - 1] = '\n';
	text[CONFIG_LINE_LEN_MAX] = '\0';
	cr_assert_eq(load(text), -1);   /* the line fits, the path is longer than CONFIG_STR_MAX */
	cr_assert(strstr(err, "spool_dir: longer than 1023 octets") != NULL, "%s", err);
	text[CONFIG_LINE_LEN_MAX - 1] = 'a';
	text[CONFIG_LINE_LEN_MAX] = '\n';
	text[CONFIG_LINE_LEN_MAX + 1] = '\0';
	expect_err(text, "ringmta.conf:1: line longer than 4095 octets");
}

Test(config, failed_load_leaves_the_config_unchanged)
{
	static struct config before;
	config_default(&cfg);
	memcpy(&before, &cfg, sizeof(before));
	const char *text = "max_recipients = 5\nlisten = 127.0.0.1:26\nlocal_domains = a.example\n"
		"max_connections = 0\n";
	cr_assert_eq(config_load_buf(&cfg, "f", text, strlen(text), err, sizeof(err)), -1);
	cr_assert_eq(memcmp(&before, &cfg, sizeof(cfg)), 0);
}

/* ---- listen lists ---- */

Test(config, listen_takes_ipv4_and_ipv6_lists)
{
	expect_ok("listen = 127.0.0.1:2525, [::1]:2525\n"
		"submission_listen = 127.0.0.1:2587\nsmtps_listen = [::1]:2465 127.0.0.2:2465\n");
	cr_assert_eq(cfg.listen_count, 2);
	expect_addr(&cfg.listen[0], AF_INET, "127.0.0.1", 2525);
	expect_addr(&cfg.listen[1], AF_INET6, "::1", 2525);
	cr_assert_eq(cfg.submission_listen_count, 1);
	expect_addr(&cfg.submission_listen[0], AF_INET, "127.0.0.1", 2587);
	cr_assert_eq(cfg.smtps_listen_count, 2);
	expect_addr(&cfg.smtps_listen[0], AF_INET6, "::1", 2465);
	expect_addr(&cfg.smtps_listen[1], AF_INET, "127.0.0.2", 2465);
}

Test(config, listen_must_not_be_empty_but_the_submission_lists_may)
{
	expect_value_err("listen", "");
	expect_ok("submission_listen = 127.0.0.1:2587\nsubmission_listen =\nsmtps_listen = \n");
	cr_assert_eq(cfg.submission_listen_count, 0);
	cr_assert_eq(cfg.smtps_listen_count, 0);
}

Test(config, listen_addresses_need_a_numeric_address_and_a_port)
{
	expect_value_err("listen", "127.0.0.1");
	expect_value_err("listen", "[::1]");
	expect_value_err("listen", "::1");
	expect_value_err("listen", "localhost:25");
	expect_value_err("listen", "127.0.0.1:");
	expect_value_err("listen", "[::1:25");
	expect_value_err("listen", "[::1]x:25");
	expect_value_err("listen", "127.0.0.256:25");
	expect_value_err("listen", "127.0.0.1:25x");
}

Test(config, listen_port_range_bounds)
{
	expect_value_ok("listen", "127.0.0.1:1");
	expect_value_ok("listen", "127.0.0.1:65535");
	expect_value_err("listen", "127.0.0.1:0");
	expect_value_err("listen", "127.0.0.1:65536");
	expect_value_err("listen", "[::1]:65536");
}

Test(config, listen_list_length_at_and_past_the_limit)
{
	char value[CONFIG_LISTEN_MAX * 24 + 32] = "";
	for (uint32_t i = 0; i < CONFIG_LISTEN_MAX; i++)
		snprintf(value + strlen(value), 24, "127.0.0.1:%u, ", 2000 + i);
	expect_value_ok("listen", value);
	cr_assert_eq(cfg.listen_count, CONFIG_LISTEN_MAX);
	strcat(value, "127.0.0.1:3000");
	expect_value_err("listen", value);
}

Test(config, listen_address_twice_in_a_list_is_refused)
{
	expect_value_err("listen", "127.0.0.1:25, 127.0.0.1:25");
}

/* ---- names ---- */

Test(config, myhostname_is_a_host_name)
{
	expect_value_ok("myhostname", "mx1.Example.com.");
	cr_assert_str_eq(cfg.myhostname, "mx1.Example.com");
	expect_value_err("myhostname", "");
	expect_value_err("myhostname", "bad name");
	expect_value_err("myhostname", "a..b");
	expect_value_err("myhostname", "-a.example");
	expect_value_err("myhostname", "a-.example");
	expect_value_err("myhostname", "a_b.example");
	expect_value_err("myhostname", "[127.0.0.1]");
}

Test(config, host_name_label_and_total_length_bounds) /* RFC 1035 2.3.4 */
{
	char name[300];
	memset(name, 'a', 63);
	strcpy(name + 63, ".example");
	expect_value_ok("myhostname", name);
	memset(name, 'a', 64);
	strcpy(name + 64, ".example");
	expect_value_err("myhostname", name);
	/* 253 octets: four labels of 62 and one of 1, joined by dots. */
	for (int i = 0; i < 4; i++) {
		memset(name + i * 63, 'b', 62);
		name[i * 63 + 62] = '.';
	}
	strcpy(name + 252, "c");
	cr_assert_eq(strlen(name), 253);
	expect_value_ok("myhostname", name);
	strcpy(name + 252, "cc");
	expect_value_err("myhostname", name);
}

Test(config, local_domains_are_lower_cased_and_deduplicated)
{
	expect_value_ok("local_domains", "Example.COM, example.com. mail.example.org,localhost");
	cr_assert_eq(cfg.local_domain_count, 3);
	cr_assert_str_eq(cfg.local_domains[0], "example.com");
	cr_assert_str_eq(cfg.local_domains[1], "mail.example.org");
	cr_assert_str_eq(cfg.local_domains[2], "localhost");
	expect_value_ok("local_domains", "");
	cr_assert_eq(cfg.local_domain_count, 0);
	expect_value_err("local_domains", "ok.example, bad..example");
	expect_value_err("local_domains", "a@b.example");
}

Test(config, local_domains_count_at_and_past_the_limit)
{
	static char value[CONFIG_DOMAINS_MAX * 12 + 32];
	value[0] = '\0';
	for (uint32_t i = 0; i < CONFIG_DOMAINS_MAX; i++)
		snprintf(value + strlen(value), 12, "d%u.x ", i);
	expect_value_ok("local_domains", value);
	cr_assert_eq(cfg.local_domain_count, CONFIG_DOMAINS_MAX);
	strcat(value, "one.more");
	expect_value_err("local_domains", value);
}

Test(config, paths_take_any_text_up_to_the_limit)
{
	expect_ok("local_users_file = /etc/ringmta/users\nmaildir_root = /var/mail dir\n"
		"spool_dir = ./sp\ntls_cert_file = c.pem\ntls_key_file = k.pem\n"
		"auth_users_file = /etc/ringmta/auth\nlog_file = /var/log/ringmta.log\n");
	cr_assert_str_eq(cfg.local_users_file, "/etc/ringmta/users");
	cr_assert_str_eq(cfg.maildir_root, "/var/mail dir");
	cr_assert_str_eq(cfg.spool_dir, "./sp");
	cr_assert_str_eq(cfg.tls_cert_file, "c.pem");
	cr_assert_str_eq(cfg.tls_key_file, "k.pem");
	cr_assert_str_eq(cfg.auth_users_file, "/etc/ringmta/auth");
	cr_assert_str_eq(cfg.log_file, "/var/log/ringmta.log");
	char path[CONFIG_STR_MAX + 1];
	memset(path, 'p', sizeof(path));
	path[CONFIG_STR_MAX - 1] = '\0';
	expect_value_ok("spool_dir", path);
	path[CONFIG_STR_MAX - 1] = 'p';
	path[CONFIG_STR_MAX] = '\0';
	expect_value_err("spool_dir", path);
}

/* ---- networks ---- */

Test(config, relay_networks_take_cidr_and_bare_addresses)
{
	expect_value_ok("relay_networks", "127.0.0.0/8, ::1 10.1.2.3,fd00::/8 [::1]/128 0.0.0.0/0");
	cr_assert_eq(cfg.relay_network_count, 6);
	const struct config_network *n = cfg.relay_networks;
	uint8_t v4[4] = { 127, 0, 0, 0 };
	cr_assert_eq(n[0].family, AF_INET);
	cr_assert_eq(memcmp(n[0].addr, v4, 4), 0);
	cr_assert_eq(n[0].prefix_len, 8);
	cr_assert_eq(n[1].family, AF_INET6);
	cr_assert_eq(n[1].prefix_len, 128);
	cr_assert_eq(n[1].addr[15], 1);
	cr_assert_eq(n[2].family, AF_INET);
	cr_assert_eq(n[2].prefix_len, 32);
	cr_assert_eq(n[3].prefix_len, 8);
	cr_assert_eq(n[3].addr[0], 0xfd);
	cr_assert_eq(n[4].prefix_len, 128);
	cr_assert_eq(n[5].prefix_len, 0);
	expect_value_ok("relay_networks", "");
	cr_assert_eq(cfg.relay_network_count, 0);
}

Test(config, relay_network_prefix_bounds)
{
	expect_value_ok("relay_networks", "0.0.0.0/0");
	expect_value_err("relay_networks", "10.0.0.0/0");
	expect_value_err("relay_networks", "10.0.0.0/33");
	expect_value_ok("relay_networks", "::/0");
	expect_value_ok("relay_networks", "::1/128");
	expect_value_err("relay_networks", "::1/129");
	expect_value_err("relay_networks", "10.0.0.0/");
	expect_value_err("relay_networks", "10.0.0.0/-1");
	expect_value_err("relay_networks", "10.0.0/8");
	expect_value_err("relay_networks", "example.com");
}

Test(config, relay_network_with_host_bits_set_is_refused)
{
	expect_value_err("relay_networks", "127.0.0.1/8");
	expect_value_err("relay_networks", "fd00::1/8");
	expect_value_ok("relay_networks", "10.128.0.0/9");
	expect_value_err("relay_networks", "10.192.0.0/9");
}

Test(config, ipv4_mapped_network_becomes_ipv4)
{
	expect_value_ok("relay_networks", "::ffff:10.0.0.0/104, ::ffff:127.0.0.1");
	cr_assert_eq(cfg.relay_networks[0].family, AF_INET);
	cr_assert_eq(cfg.relay_networks[0].prefix_len, 8);
	cr_assert_eq(cfg.relay_networks[0].addr[0], 10);
	cr_assert_eq(cfg.relay_networks[1].family, AF_INET);
	cr_assert_eq(cfg.relay_networks[1].prefix_len, 32);
	cr_assert_eq(cfg.relay_networks[1].addr[3], 1);
}

Test(config, relay_networks_count_at_and_past_the_limit)
{
	static char value[CONFIG_NETWORKS_MAX * 16 + 32];
	value[0] = '\0';
	for (uint32_t i = 0; i < CONFIG_NETWORKS_MAX; i++)
		snprintf(value + strlen(value), 16, "10.%u.0.0/16 ", i);
	expect_value_ok("relay_networks", value);
	cr_assert_eq(cfg.relay_network_count, CONFIG_NETWORKS_MAX);
	strcat(value, "11.0.0.0/8");
	expect_value_err("relay_networks", value);
}

/* ---- numbers ---- */

Test(config, max_message_size_bounds_and_suffixes)
{
	expect_value_ok("max_message_size", "1024");
	cr_assert_eq(cfg.max_message_size, 1024);
	expect_value_err("max_message_size", "1023");
	expect_value_ok("max_message_size", "1k");
	cr_assert_eq(cfg.max_message_size, 1024);
	expect_value_ok("max_message_size", "10M");
	cr_assert_eq(cfg.max_message_size, 10u << 20);
	expect_value_ok("max_message_size", "1000m");           /* the most a spool record holds */
	cr_assert_eq(cfg.max_message_size, 1000ull << 20);
	expect_value_ok("max_message_size", "1048576000");
	expect_value_err("max_message_size", "1048576001");
	expect_value_err("max_message_size", "1001m");
	expect_value_err("max_message_size", "1g");             /* the record itself, no room left */
	expect_value_err("max_message_size", "2g");
	expect_value_err("max_message_size", "0");
	expect_value_err("max_message_size", "");
	expect_value_err("max_message_size", "k");
	expect_value_err("max_message_size", "10x");
	expect_value_err("max_message_size", "10 m");
	expect_value_err("max_message_size", "-1");
	expect_value_err("max_message_size", "+1024");
	expect_value_err("max_message_size", "18446744073709551615k");
	expect_value_err("max_message_size", "99999999999999999999999");
}

Test(config, max_message_size_message_names_the_range)
{
	cr_assert_eq(load("max_message_size = 3g\n"), -1);
	cr_assert_str_eq(err, "ringmta.conf:1: max_message_size: 3g is out of range "
		"1024..1048576000 (a spool record holds 1 GiB, envelope and Received: header included)");
	cr_assert_eq(load("max_message_size = 1000\n"), -1);   /* below: no word about the spool */
	cr_assert_str_eq(err, "ringmta.conf:1: max_message_size: 1000 is out of range "
		"1024..1048576000");
}

Test(config, max_message_size_is_checked_for_an_override_too)
{
	char e[CONFIG_ERR_MAX];
	struct config c;
	config_default(&c);
	cr_assert_eq(config_set(&c, "max_message_size=1000m", e, sizeof(e)), 0);
	cr_assert_eq(config_set(&c, "max_message_size=1001m", e, sizeof(e)), -1);
	cr_assert(strstr(e, "a spool record holds 1 GiB") != NULL, "%s", e);
	cr_assert_eq(c.max_message_size, 1000ull << 20, "unchanged after the refusal");
}

Test(config, max_recipients_bounds)
{
	expect_value_ok("max_recipients", "1");
	expect_value_ok("max_recipients", "1000");
	cr_assert_eq(cfg.max_recipients, 1000);
	expect_value_err("max_recipients", "0");
	expect_value_err("max_recipients", "1001");
	expect_value_err("max_recipients", "1k");
}

Test(config, max_connections_bounds)
{
	expect_value_ok("max_connections", "1");
	expect_value_ok("max_connections", "100000");
	cr_assert_eq(cfg.max_connections, 100000);
	expect_value_err("max_connections", "0");
	expect_value_err("max_connections", "100001");
}

Test(config, bad_cmd_max_bounds)
{
	expect_value_ok("bad_cmd_max", "1");
	expect_value_ok("bad_cmd_max", "1000");
	expect_value_err("bad_cmd_max", "0");
	expect_value_err("bad_cmd_max", "1001");
}

Test(config, timeouts_are_seconds_with_optional_units)
{
	expect_value_ok("cmd_timeout", "1");
	cr_assert_eq(cfg.cmd_timeout_ms, 1000);
	expect_value_ok("cmd_timeout", "3600");
	cr_assert_eq(cfg.cmd_timeout_ms, 3600000);
	expect_value_ok("cmd_timeout", "1h");
	cr_assert_eq(cfg.cmd_timeout_ms, 3600000);
	expect_value_ok("cmd_timeout", "5m");
	cr_assert_eq(cfg.cmd_timeout_ms, 300000);
	expect_value_err("cmd_timeout", "0");
	expect_value_err("cmd_timeout", "3601");
	expect_value_err("cmd_timeout", "61m");
	expect_value_err("cmd_timeout", "1d");
	expect_value_err("cmd_timeout", "5x");
	expect_value_ok("data_timeout", "1s");
	cr_assert_eq(cfg.data_timeout_ms, 1000);
	expect_value_ok("data_timeout", "3600");
	expect_value_err("data_timeout", "0");
	expect_value_err("data_timeout", "3601");
}

Test(config, queue_lifetime_bounds_and_units)
{
	expect_value_ok("queue_lifetime", "5d");
	cr_assert_eq(cfg.queue_lifetime_s, 5 * 86400);
	expect_value_ok("queue_lifetime", "1");
	cr_assert_eq(cfg.queue_lifetime_s, 1);
	expect_value_ok("queue_lifetime", "12h");
	cr_assert_eq(cfg.queue_lifetime_s, 12 * 3600);
	expect_value_ok("queue_lifetime", "365d");
	expect_value_err("queue_lifetime", "366d");
	expect_value_err("queue_lifetime", "31536001");
	expect_value_err("queue_lifetime", "0");
	expect_value_err("queue_lifetime", "0d");
}

Test(config, remote_smtp_port_bounds)
{
	expect_value_ok("remote_smtp_port", "1");
	expect_value_ok("remote_smtp_port", "65535");
	cr_assert_eq(cfg.remote_smtp_port, 65535);
	expect_value_err("remote_smtp_port", "0");
	expect_value_err("remote_smtp_port", "65536");
}

Test(config, outbound_defaults_are_the_issues)
{
	config_default(&cfg);
	cr_assert_eq(cfg.dest_concurrency_limit, 20);
	cr_assert_eq(cfg.dest_recipient_limit, 50);
	cr_assert_eq(cfg.connection_reuse_limit, 100);
	cr_assert_eq(cfg.dest_rate_limit, 0);
	cr_assert_eq(cfg.connection_idle_ms, 2000);
	cr_assert_eq(cfg.smtp_mx_address_limit, 5);
	cr_assert_eq(cfg.smtp_connect_timeout_ms, 30000);
	cr_assert_str_eq(cfg.transport_maps, "");
	cr_assert_str_eq(cfg.destination_policy_file, "");
}

Test(config, outbound_limit_bounds)
{
	expect_value_ok("destination_concurrency_limit", "1");
	expect_value_ok("destination_concurrency_limit", "1000");
	cr_assert_eq(cfg.dest_concurrency_limit, 1000);
	expect_value_err("destination_concurrency_limit", "0");
	expect_value_err("destination_concurrency_limit", "1001");
	expect_value_ok("destination_recipient_limit", "1000");
	expect_value_err("destination_recipient_limit", "1001");
	expect_value_err("destination_recipient_limit", "0");
	expect_value_ok("connection_reuse_limit", "100000");
	expect_value_err("connection_reuse_limit", "100001");
	expect_value_err("connection_reuse_limit", "0");
	expect_value_ok("destination_rate_limit", "0");
	expect_value_ok("destination_rate_limit", "100000");
	expect_value_err("destination_rate_limit", "100001");
	expect_value_ok("outbound_connection_limit", "1");
	expect_value_err("outbound_connection_limit", "0");
	expect_value_ok("connection_idle_time", "0");
	expect_value_ok("connection_idle_time", "1m");
	cr_assert_eq(cfg.connection_idle_ms, 60000);
	expect_value_err("connection_idle_time", "3601");
	expect_value_ok("smtp_mx_address_limit", "16");
	expect_value_err("smtp_mx_address_limit", "17");
	expect_value_ok("smtp_connect_timeout", "1");
	expect_value_err("smtp_connect_timeout", "0");
	expect_value_ok("transport_maps", "/etc/ringmta/transport");
	cr_assert_str_eq(cfg.transport_maps, "/etc/ringmta/transport");
}

Test(config, shards_bounds_and_auto)
{
	expect_value_ok("shards", "1");
	cr_assert_eq(cfg.shards, 1);
	expect_value_ok("shards", "64");
	cr_assert_eq(cfg.shards, CONFIG_SHARDS_MAX);
	expect_value_err("shards", "65");
	expect_value_ok("shards", "auto");
	cr_assert_eq(cfg.shards, online_cpus());
	expect_value_ok("shards", "0");
	cr_assert_eq(cfg.shards, online_cpus());
	expect_value_err("shards", "-1");
	expect_value_err("shards", "Auto");
}

Test(config, maildir_sync_is_auto_fsync_or_syncfs)
{
	config_default(&cfg);
	cr_assert_eq(cfg.maildir_sync, CONFIG_MAILDIR_SYNC_AUTO);
	expect_value_ok("maildir_sync", "auto");
	cr_assert_eq(cfg.maildir_sync, CONFIG_MAILDIR_SYNC_AUTO);
	expect_value_ok("maildir_sync", "syncfs");
	cr_assert_eq(cfg.maildir_sync, CONFIG_MAILDIR_SYNC_SYNCFS);
	expect_value_ok("maildir_sync", "fsync");
	cr_assert_eq(cfg.maildir_sync, CONFIG_MAILDIR_SYNC_FSYNC);
	expect_value_err("maildir_sync", "Fsync");
	expect_value_err("maildir_sync", "");
	expect_value_err("maildir_sync", "fdatasync");
}

/* ---- relayhost and DNS servers ---- */

Test(config, relayhost_in_brackets_skips_mx_lookup)
{
	expect_value_ok("relayhost", "[smtp.example.com]:587");
	cr_assert_str_eq(cfg.relayhost, "[smtp.example.com]:587");
	cr_assert_str_eq(cfg.relayhost_name, "smtp.example.com");
	cr_assert_eq(cfg.relayhost_port, 587);
	cr_assert_not(cfg.relayhost_mx);
	expect_value_ok("relayhost", "[127.0.0.1]:2526");
	cr_assert_str_eq(cfg.relayhost_name, "127.0.0.1");
	cr_assert_eq(cfg.relayhost_port, 2526);
	expect_value_ok("relayhost", "[::1]");
	cr_assert_str_eq(cfg.relayhost_name, "::1");
	cr_assert_eq(cfg.relayhost_port, 0);
	cr_assert_not(cfg.relayhost_mx);
}

Test(config, relayhost_without_brackets_uses_mx)
{
	expect_value_ok("relayhost", "example.com");
	cr_assert_str_eq(cfg.relayhost_name, "example.com");
	cr_assert_eq(cfg.relayhost_port, 0);
	cr_assert(cfg.relayhost_mx);
	expect_value_ok("relayhost", "example.com:2525");
	cr_assert_eq(cfg.relayhost_port, 2525);
	expect_ok("relayhost = example.com\nrelayhost =\n");
	cr_assert_str_eq(cfg.relayhost, "");
	cr_assert_str_eq(cfg.relayhost_name, "");
	cr_assert_not(cfg.relayhost_mx);
}

Test(config, relayhost_syntax_errors)
{
	expect_value_err("relayhost", "127.0.0.1");        /* an address needs brackets */
	expect_value_err("relayhost", "::1");
	expect_value_err("relayhost", "[example.com");
	expect_value_err("relayhost", "[example.com]x");
	expect_value_err("relayhost", "example.com:0");
	expect_value_err("relayhost", "example.com:65536");
	expect_value_err("relayhost", "example.com:");
	expect_value_err("relayhost", "bad_host.example");
	expect_value_err("relayhost", "a.example b.example");
}

Test(config, dns_servers_default_port_53_and_normalised_text)
{
	expect_value_ok("dns_servers", "127.0.0.1, [::1]:5353 ::1");
	cr_assert_eq(cfg.dns_server_count, 3);
	expect_addr(&cfg.dns[0], AF_INET, "127.0.0.1", 53);
	expect_addr(&cfg.dns[1], AF_INET6, "::1", 5353);
	expect_addr(&cfg.dns[2], AF_INET6, "::1", 53);
	cr_assert_str_eq(cfg.dns_servers, "127.0.0.1:53, [::1]:5353, [::1]:53");
	expect_value_ok("dns_servers", "");
	cr_assert_eq(cfg.dns_server_count, 0);
	cr_assert_str_eq(cfg.dns_servers, "");
	expect_value_err("dns_servers", "resolver.example");
}

Test(config, dns_servers_count_at_and_past_the_limit)
{
	char value[256] = "";
	for (uint32_t i = 0; i < CONFIG_DNS_SERVERS_MAX; i++)
		snprintf(value + strlen(value), 16, "127.0.0.%u ", i + 1);
	expect_value_ok("dns_servers", value);
	cr_assert_eq(cfg.dns_server_count, CONFIG_DNS_SERVERS_MAX);
	strcat(value, "127.0.0.99");
	expect_value_err("dns_servers", value);
}

Test(config, inet_protocols_takes_postfix_values)
{
	config_default(&cfg);
	cr_assert_eq(cfg.inet_protocols, CONFIG_INET_ALL);
	expect_value_ok("inet_protocols", "ipv4");
	cr_assert_eq(cfg.inet_protocols, CONFIG_INET_IPV4);
	expect_value_ok("inet_protocols", "ipv6");
	cr_assert_eq(cfg.inet_protocols, CONFIG_INET_IPV6);
	expect_value_ok("inet_protocols", "ipv4, ipv6");
	cr_assert_eq(cfg.inet_protocols, CONFIG_INET_ALL);
	expect_value_ok("inet_protocols", "all");
	cr_assert_eq(cfg.inet_protocols, CONFIG_INET_ALL);
	expect_value_err("inet_protocols", "ipv5");
	expect_value_err("inet_protocols", "ipv4, ip6");
	expect_value_err("inet_protocols", "");
}

Test(config, dns_cache_max_timeout_and_attempts_bounds)
{
	config_default(&cfg);
	cr_assert_eq(cfg.dns_cache_max, CONFIG_DNS_CACHE_MAX_DEFAULT);
	cr_assert_eq(cfg.dns_timeout_ms, 0);
	cr_assert_eq(cfg.dns_attempts, 0);
	expect_value_ok("dns_cache_max", "0");
	expect_value_ok("dns_cache_max", "1000000");
	cr_assert_eq(cfg.dns_cache_max, CONFIG_DNS_CACHE_MAX_MAX);
	expect_value_err("dns_cache_max", "1000001");
	expect_value_ok("dns_timeout", "30");
	cr_assert_eq(cfg.dns_timeout_ms, 30000);
	expect_value_err("dns_timeout", "31");
	expect_value_ok("dns_attempts", "5");
	cr_assert_eq(cfg.dns_attempts, 5);
	expect_value_err("dns_attempts", "6");
}

/* ---- -o ---- */

Test(config, set_applies_one_override)
{
	config_default(&cfg);
	cr_assert_eq(config_set(&cfg, "max_recipients=5", err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cfg.max_recipients, 5);
	cr_assert_eq(config_set(&cfg, "listen = [::1]:2526", err, sizeof(err)), 0, "%s", err);
	expect_addr(&cfg.listen[0], AF_INET6, "::1", 2526);
	cr_assert_eq(config_set(&cfg, "relay_networks=", err, sizeof(err)), 0, "%s", err);
}

Test(config, set_errors_name_the_option_and_key)
{
	config_default(&cfg);
	cr_assert_eq(config_set(&cfg, "max_recipients=5000", err, sizeof(err)), -1);
	cr_assert_str_eq(err, "-o: max_recipients: 5000 is out of range 1..1000");
	cr_assert_eq(config_set(&cfg, "nosuchkey=1", err, sizeof(err)), -1);
	cr_assert_str_eq(err, "-o: nosuchkey: unknown key");
	cr_assert_eq(config_set(&cfg, "max_recipients", err, sizeof(err)), -1);
	cr_assert_str_eq(err, "-o: expected key=value");
	cr_assert_eq(config_set(&cfg, "max_recipients=5\nrelay_networks=0.0.0.0/0", err,
		sizeof(err)), -1);
	cr_assert_str_eq(err, "-o: a line break is not allowed");
	cr_assert_eq(cfg.max_recipients, 1000);
	cr_assert_eq(cfg.relay_network_count, 0);
}

/* ---- files ---- */

static char *
temp_file(const char *text, size_t len)
{
	static char path[64];
	strcpy(path, "/tmp/ringmta-config-test-XXXXXX");
	int fd = mkstemp(path);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, text, len), (ssize_t)len);
	close(fd);
	return path;
}

Test(config, load_file_reads_a_file_and_names_it_in_errors)
{
	const char *path = temp_file("max_recipients = 12\n", 20);
	config_default(&cfg);
	cr_assert_eq(config_load_file(&cfg, path, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cfg.max_recipients, 12);
	unlink(path);
	path = temp_file("\nmax_recipients = 0\n", 20);
	cr_assert_eq(config_load_file(&cfg, path, err, sizeof(err)), -1);
	char want[128];
	snprintf(want, sizeof(want), "%s:2: max_recipients: 0 is out of range 1..1000", path);
	cr_assert_str_eq(err, want);
	unlink(path);
}

Test(config, load_file_missing_file_is_an_error)
{
	config_default(&cfg);
	cr_assert_eq(config_load_file(&cfg, "/nonexistent/ringmta.conf", err, sizeof(err)), -1);
	cr_assert_str_eq(err, "/nonexistent/ringmta.conf: No such file or directory");
}

Test(config, load_file_size_at_and_past_the_limit)
{
	char *text = malloc(CONFIG_FILE_SIZE_MAX + 1);
	memset(text, '\n', CONFIG_FILE_SIZE_MAX + 1);
	memcpy(text, "max_recipients = 3", 18);
	const char *path = temp_file(text, CONFIG_FILE_SIZE_MAX);
	config_default(&cfg);
	cr_assert_eq(config_load_file(&cfg, path, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(cfg.max_recipients, 3);
	unlink(path);
	path = temp_file(text, CONFIG_FILE_SIZE_MAX + 1);
	cr_assert_eq(config_load_file(&cfg, path, err, sizeof(err)), -1);
	cr_assert(strstr(err, "larger than 1048576 octets") != NULL, "%s", err);
	unlink(path);
	free(text);
}

/* ---- printing ---- */

/* The text is the caller's to free. (The memstream's pointer is static: gcc otherwise takes the
 * returned text for a pointer into this frame.) */
static char *
print_config(const struct config *c)
{
	static char *text;
	static size_t len;
	FILE *f = open_memstream(&text, &len);
	config_print(c, f);
	fclose(f);
	return text;
}

/* Prints c, loads the text over a fresh default, and wants the very same struct back. */
static void
expect_round_trip(const struct config *c)
{
	static struct config again;
	char *text = print_config(c);
	config_default(&again);
	cr_assert_eq(config_load_buf(&again, "printed", text, strlen(text), err, sizeof(err)), 0,
		"%s\n%s", err, text);
	cr_assert_eq(memcmp(c, &again, sizeof(again)), 0, "round trip differs:\n%s", text);
	free(text);
}

Test(config, print_round_trips_the_default)
{
	config_default(&cfg);
	expect_round_trip(&cfg);
}

Test(config, print_round_trips_every_key)
{
	expect_ok("listen = 127.0.0.1:2525, [::1]:2525\nsubmission_listen = 127.0.0.1:2587\n"
		"smtps_listen = [::1]:2465\nmyhostname = mx.example.com\n"
		"local_domains = example.com, Example.ORG.\nlocal_users_file = /etc/users\n"
		"maildir_root = /var/mail\nspool_dir = /var/spool/ringmta\n"
		"relay_networks = 127.0.0.0/8, ::1, fd00::/8, ::ffff:10.0.0.0/104\n"
		"tls_cert_file = /etc/c.pem\ntls_key_file = /etc/k.pem\n"
		"tls_eccert_file = /etc/ec.pem\ntls_eckey_file = /etc/eck.pem\n"
		"tls_server_sni_file = /etc/sni\nsmtp_tls_security_level = verify\n"
		"smtp_tls_ca_file = /etc/ca.pem\n"
		"auth_users_file = /etc/auth\nmax_message_size = 1500\nmax_recipients = 100\n"
		"dns_servers = 127.0.0.1 [::1]:5353\n"
		"remote_smtp_port = 2526\nrelayhost = [smtp.example.com]:587\nshards = 3\n"
		"max_connections = 7\nbad_cmd_max = 4\ncmd_timeout = 90\ndata_timeout = 1h\n"
		"queue_lifetime = 3601\nlog_file = /var/log/ringmta.log\nmaildir_sync = syncfs\n"
		"dns_timeout = 2\ndns_attempts = 3\ndns_cache_max = 10\ninet_protocols = ipv6\n");
	expect_round_trip(&cfg);
	expect_ok("max_message_size = 1000m\ncmd_timeout = 1\nqueue_lifetime = 365d\n"
		"relayhost = example.com:25\nlocal_domains =\nmyhostname = localhost\n");
	expect_round_trip(&cfg);
}

Test(config, print_writes_every_key_once)
{
	static const char *keys[] = {
		"listen", "submission_listen", "smtps_listen", "myhostname", "local_domains",
		"local_users_file", "maildir_root", "spool_dir", "relay_networks", "tls_cert_file",
		"tls_key_file", "auth_users_file", "max_message_size", "max_recipients",
		"dns_servers", "remote_smtp_port", "relayhost", "shards", "max_connections",
		"bad_cmd_max", "cmd_timeout", "data_timeout", "queue_lifetime", "log_file",
		"mail_owner",
		"maildir_sync", "dns_timeout", "dns_attempts", "dns_cache_max", "inet_protocols",
		"minimal_backoff_time", "maximal_backoff_time", "delay_warning_time",
		"tls_eccert_file", "tls_eckey_file", "tls_server_sni_file", "smtp_tls_security_level",
		"smtp_tls_ca_file",
	};
	config_default(&cfg);
	char *text = print_config(&cfg);
	char want[64];
	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		snprintf(want, sizeof(want), "\n%s =", keys[i]);
		char *at = strstr(text, want);
		cr_assert(at != NULL, "%s missing:\n%s", keys[i], text);
		cr_assert(strstr(at + 1, want) == NULL, "%s twice", keys[i]);
	}
	cr_assert(strstr(text, "max_message_size = 50m\n") != NULL, "%s", text);
	cr_assert(strstr(text, "queue_lifetime = 5d\n") != NULL, "%s", text);
	cr_assert(strstr(text, "listen = 127.0.0.1:2525\n") != NULL, "%s", text);
	cr_assert(strstr(text, "\nrelayhost =\n") != NULL, "no trailing blank:\n%s", text);
	cr_assert(strstr(text, "\nmail_owner = ringmta\n") != NULL, "%s", text);
	free(text);
}

Test(config, mail_owner_is_a_user_name)
{
	config_default(&cfg);
	cr_assert_str_eq(cfg.mail_owner, "ringmta");          /* Postfix's name for the key */
	expect_value_ok("mail_owner", "vmail");
	cr_assert_str_eq(cfg.mail_owner, "vmail");
	expect_value_ok("mail_owner", "a_b-c.d9");
	expect_value_ok("mail_owner", "u2345678901234567890123456789012");   /* 32 octets */
	expect_value_err("mail_owner", "u23456789012345678901234567890123");
	expect_value_err("mail_owner", "");
	expect_value_err("mail_owner", "-x");
	expect_value_err("mail_owner", ".x");
	expect_value_err("mail_owner", "a b");
	expect_value_err("mail_owner", "a/b");
	expect_value_err("mail_owner", "a:b");
	expect_value_err("mail_owner", "0\xc3\xa9");
}

/* ---- cross-key checks ---- */

static void
expect_check_err(const char *text, const char *want)
{
	expect_ok(text);
	cr_assert_eq(config_check(&cfg, err, sizeof(err)), -1, "%s: passed", text);
	cr_assert(strstr(err, want) != NULL, "%s: message \"%s\"", text, err);
}

Test(config, check_tls_files_come_in_pairs)
{
	expect_check_err("tls_cert_file = c.pem\n", "set both or neither");
	expect_check_err("tls_key_file = k.pem\n", "set both or neither");
	expect_ok("tls_cert_file = c.pem\ntls_key_file = k.pem\n");
	cr_assert_eq(config_check(&cfg, err, sizeof(err)), 0, "%s", err);
}

Test(config, tls_security_level_takes_postfix_names)
{
	config_default(&cfg);
	cr_assert_eq(cfg.smtp_tls_security_level, CONFIG_TLS_MAY, "opportunistic by default");
	static const char *const names[] = { "none", "may", "encrypt", "verify" };
	for (uint8_t i = 0; i < 4; i++) {
		char line[64];
		snprintf(line, sizeof(line), "smtp_tls_security_level = %s\n", names[i]);
		expect_ok(line);
		cr_assert_eq(cfg.smtp_tls_security_level, i);
	}
	config_default(&cfg);
	cr_assert_eq(config_load_buf(&cfg, "f", "smtp_tls_security_level = dane\n", 31, err,
		sizeof(err)), -1);
	cr_assert(strstr(err, "f:1: smtp_tls_security_level") != NULL, "%s", err);
	cr_assert_eq(config_load_buf(&cfg, "f", "smtp_tls_security_level = VERIFY\n", 33, err,
		sizeof(err)), -1);
}

Test(config, check_ecdsa_pair_and_sni_file)
{
	expect_check_err("tls_eccert_file = e.pem\n", "set both or neither");
	expect_check_err("tls_server_sni_file = sni\n", "needs a default certificate");
	expect_ok("smtps_listen = 127.0.0.1:2465\ntls_eccert_file = e\ntls_eckey_file = k\n"
		"tls_server_sni_file = sni\n");
	cr_assert_eq(config_check(&cfg, err, sizeof(err)), 0, "%s", err);
}

Test(config, check_implicit_tls_needs_a_certificate)
{
	expect_check_err("smtps_listen = 127.0.0.1:2465\n", "smtps_listen needs");
	expect_ok("smtps_listen = 127.0.0.1:2465\ntls_cert_file = c\ntls_key_file = k\n");
	cr_assert_eq(config_check(&cfg, err, sizeof(err)), 0, "%s", err);
}

Test(config, check_submission_needs_tls_and_auth_users)
{
	expect_check_err("submission_listen = 127.0.0.1:2587\ntls_cert_file = c\n"
		"tls_key_file = k\n", "submission_listen needs");
	expect_check_err("submission_listen = 127.0.0.1:2587\nauth_users_file = a\n",
		"submission_listen needs");
	expect_ok("submission_listen = 127.0.0.1:2587\ntls_cert_file = c\ntls_key_file = k\n"
		"auth_users_file = a\n");
	cr_assert_eq(config_check(&cfg, err, sizeof(err)), 0, "%s", err);
}

Test(config, check_an_address_serves_one_list_only)
{
	expect_check_err("smtps_listen = 127.0.0.1:2525\ntls_cert_file = c\ntls_key_file = k\n",
		"an address is in two lists");
	expect_check_err("submission_listen = [::1]:2587\nsmtps_listen = [::1]:2587\n"
		"tls_cert_file = c\ntls_key_file = k\nauth_users_file = a\n",
		"an address is in two lists");
}

Test(config, check_spool_and_maildir_must_be_set)
{
	expect_check_err("spool_dir =\n", "must not be empty");
	expect_check_err("maildir_root =\n", "must not be empty");
}

Test(config, started_line_names_shards_host_listeners_and_spool)
{
	char line[LOG_LINE_MAX];
	config_default(&cfg);
	const char *text = "listen = 127.0.0.1:2525, [::1]:2525\nmyhostname = mx.example\n"
		"local_listen = /run/ringmta/sendmail.sock\n";
	cr_assert_eq(config_load_buf(&cfg, "t", text, strlen(text), err, sizeof(err)), 0);
	size_t n = config_format_started(line, sizeof(line), 1714566896789ull, &cfg, 4);
	line[n] = '\0';
	cr_assert_str_eq(line, "2024-05-01T12:34:56.789Z event=started shards=4 "
		"myhostname=mx.example listen=127.0.0.1:2525,[::1]:2525 submission_listen= "
		"smtps_listen= local_listen=/run/ringmta/sendmail.sock spool_dir=./var/spool\n");
}

/* The sample configuration (--print-sample): every key of config_print appears with a meaning
 * line; the keys set in cfg are uncommented, and loading the sample over the default gives cfg
 * back exactly (the commented lines change nothing). */
Test(config, sample_lists_every_key_and_loads_back)
{
	expect_ok("listen = 127.0.0.1:25\nlocal_listen = /run/ringmta/sendmail.sock\n"
		"spool_dir = /var/spool/ringmta\n");
	char *sample = NULL, *printed = NULL;
	size_t sample_len = 0, printed_len = 0;
	FILE *f = open_memstream(&sample, &sample_len);
	cr_assert_eq(config_print_sample(&cfg, f), 0);
	fclose(f);
	f = open_memstream(&printed, &printed_len);
	config_print(&cfg, f);
	fclose(f);
	uint32_t keys = 0;
	for (char *line = strtok(printed, "\n"); line != NULL; line = strtok(NULL, "\n")) {
		if (line[0] == '#')
			continue;
		char key[128], want[160];
		cr_assert_eq(sscanf(line, "%127s", key), 1);
		snprintf(want, sizeof(want), "\n# %s: ", key);
		cr_assert(strstr(sample, want) != NULL, "%s has no meaning line", key);
		keys++;
	}
	cr_assert_gt(keys, 40);
	cr_assert(strstr(sample, "\nlisten = 127.0.0.1:25\n") != NULL);
	cr_assert(strstr(sample, "\n# (default: 127.0.0.1:2525)\nlisten") != NULL);
	cr_assert(strstr(sample, "\n#max_recipients = 1000\n") != NULL);
	cr_assert(strstr(sample, "\n#myhostname = (this host's name)\n") != NULL);
	struct config want = cfg;
	config_default(&cfg);
	cr_assert_eq(config_load_buf(&cfg, "sample", sample, sample_len, err, sizeof(err)), 0, "%s",
		err);
	cr_assert(memcmp(&cfg, &want, sizeof(cfg)) == 0, "the sample sets what cfg has");
	free(sample);
	free(printed);
}

Test(config, local_listen_longer_than_a_unix_path_is_refused)
{
	char text[256];
	snprintf(text, sizeof(text), "local_listen = /%0*d\n", (int)CONFIG_UNIX_PATH_MAX - 1, 0);
	expect_ok(text);
	cr_assert_eq(config_check(&cfg, err, sizeof(err)), 0, "%s", err);
	snprintf(text, sizeof(text), "local_listen = /%0*d\n", (int)CONFIG_UNIX_PATH_MAX, 0);
	expect_ok(text);
	cr_assert_neq(config_check(&cfg, err, sizeof(err)), 0);
	cr_assert(strstr(err, "local_listen") != NULL, "%s", err);
}
