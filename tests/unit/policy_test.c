/* tests/unit/policy_test.c - relay and recipient policy (RFC 2505 2.1, RFC 5321 4.1.1.3). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/un.h>
#include <unistd.h>

#include "conf/config.h"
#include "conf/policy.h"

static struct config cfg;
static struct policy pol;
static char err[CONFIG_ERR_MAX];
static char users_path[64];

static void
setup_config(const char *text)
{
	config_default(&cfg);
	cr_assert_eq(config_load_buf(&cfg, "test", text, strlen(text), err, sizeof(err)), 0, "%s",
		err);
}

static void
write_users(const char *text)
{
	strcpy(users_path, "/tmp/ringmta-users-XXXXXX");
	int fd = mkstemp(users_path);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

/* A policy over local_domains example.com and localhost with the given users file text (NULL:
 * no file, every local part exists), relay_networks 127.0.0.0/8 and ::1. */
static void
make_policy(const char *users)
{
	char text[256];
	if (users != NULL)
		write_users(users);
	snprintf(text, sizeof(text), "local_domains = example.com, localhost\n"
		"relay_networks = 127.0.0.0/8, ::1\nlocal_users_file = %s\n",
		users != NULL ? users_path : "");
	setup_config(text);
	cr_assert_eq(policy_init(&pol, &cfg, err, sizeof(err)), 0, "%s", err);
	if (users != NULL)
		unlink(users_path);
}

static void
teardown(void)
{
	policy_fini(&pol);
}

static struct slice
s(const char *text)
{
	return slice_make(text, strlen(text));
}

static enum smtp_rcpt_verdict
rcpt(bool relay, const char *local, const char *domain, bool quoted)
{
	return policy_rcpt(&pol, relay, s(local), s(domain), quoted);
}

TestSuite(policy, .fini = teardown);

/* ---- postmaster ---- */

Test(policy, bare_postmaster_is_accepted) /* RFC 5321 4.1.1.3 */
{
	make_policy("alice\n");
	cr_assert_eq(rcpt(false, "postmaster", "", false), SMTP_RCPT_OK);
	cr_assert_eq(rcpt(false, "PostMaster", "", false), SMTP_RCPT_OK);
	cr_assert_eq(rcpt(false, "alice", "", false), SMTP_RCPT_UNKNOWN_USER);
	cr_assert_eq(rcpt(false, "postmaster", "", true), SMTP_RCPT_UNKNOWN_USER);
}

Test(policy, postmaster_exists_in_every_local_domain) /* RFC 5321 4.5.1 */
{
	make_policy("alice\n");
	cr_assert_eq(rcpt(false, "postmaster", "example.com", false), SMTP_RCPT_OK);
	cr_assert_eq(rcpt(false, "POSTMASTER", "localhost", false), SMTP_RCPT_OK);
}

/* ---- local users ---- */

Test(policy, known_local_user_is_accepted_without_relay_rights)
{
	make_policy("alice\nbob\n");
	cr_assert_eq(rcpt(false, "alice", "example.com", false), SMTP_RCPT_OK);
	cr_assert_eq(rcpt(false, "bob", "localhost", false), SMTP_RCPT_OK);
}

Test(policy, unknown_local_user_is_refused_at_rcpt)
{
	make_policy("alice\n");
	cr_assert_eq(rcpt(false, "mallory", "example.com", false), SMTP_RCPT_UNKNOWN_USER);
	cr_assert_eq(rcpt(true, "mallory", "example.com", false), SMTP_RCPT_UNKNOWN_USER);
	cr_assert_eq(rcpt(false, "alic", "example.com", false), SMTP_RCPT_UNKNOWN_USER);
	cr_assert_eq(rcpt(false, "alice2", "example.com", false), SMTP_RCPT_UNKNOWN_USER);
}

Test(policy, local_part_and_domain_compare_case_insensitively) /* RFC 2505 2 */
{
	make_policy("Alice\n");
	cr_assert_eq(rcpt(false, "ALICE", "Example.COM", false), SMTP_RCPT_OK);
	cr_assert_eq(rcpt(false, "alice", "example.com.", false), SMTP_RCPT_OK);
	cr_assert_eq(rcpt(false, "alice", "LOCALHOST.", false), SMTP_RCPT_OK);
}

Test(policy, every_local_part_exists_without_a_users_file)
{
	make_policy(NULL);
	cr_assert_eq(rcpt(false, "anyone", "example.com", false), SMTP_RCPT_OK);
	cr_assert_eq(rcpt(false, "x.y+z", "localhost", false), SMTP_RCPT_OK);
}

Test(policy, only_listed_domains_are_local)
{
	make_policy(NULL);
	cr_assert(policy_domain_is_local(&pol, s("example.com")));
	cr_assert(policy_domain_is_local(&pol, s("EXAMPLE.com.")));
	cr_assert_not(policy_domain_is_local(&pol, s("sub.example.com")));
	cr_assert_not(policy_domain_is_local(&pol, s("example.com.evil.example")));
	cr_assert_not(policy_domain_is_local(&pol, s("xexample.com")));
	cr_assert_not(policy_domain_is_local(&pol, s("example.co")));
	cr_assert_not(policy_domain_is_local(&pol, s("example.com..")));
	cr_assert_not(policy_domain_is_local(&pol, s("")));
	cr_assert_not(policy_domain_is_local(&pol, s(".")));
}

/* ---- RFC 2505 2.1: source routing hidden in a local part ---- */

Test(policy, percent_hack_to_a_local_domain_never_relays) /* RFC 2505 2.1 */
{
	make_policy(NULL);
	cr_assert_eq(rcpt(false, "user%remote.example", "example.com", false),
		SMTP_RCPT_UNKNOWN_USER);
	cr_assert_eq(rcpt(true, "user%remote.example", "example.com", false),
		SMTP_RCPT_UNKNOWN_USER);
	cr_assert_eq(rcpt(false, "user%remote.example%other.example", "localhost", false),
		SMTP_RCPT_UNKNOWN_USER);
}

Test(policy, bang_path_to_a_local_domain_never_relays) /* RFC 2505 2.1 */
{
	make_policy(NULL);
	cr_assert_eq(rcpt(false, "remote.example!user", "example.com", false),
		SMTP_RCPT_UNKNOWN_USER);
	cr_assert_eq(rcpt(true, "a!b!user", "example.com", false), SMTP_RCPT_UNKNOWN_USER);
}

Test(policy, quoted_address_in_a_local_part_never_relays) /* RFC 2505 2.1 */
{
	make_policy(NULL);
	/* <"user@remote.example"@example.com>: the parser hands over the unquoted text. */
	cr_assert_eq(rcpt(false, "user@remote.example", "example.com", true),
		SMTP_RCPT_UNKNOWN_USER);
	cr_assert_eq(rcpt(true, "user@remote.example", "example.com", true),
		SMTP_RCPT_UNKNOWN_USER);
	/* RFC 2505 2.1's gateway example, "gateway::smtp%\"user@final\""@local. */
	cr_assert_eq(rcpt(true, "gateway::smtp%\"user@final\"", "example.com", true),
		SMTP_RCPT_UNKNOWN_USER);
}

Test(policy, quoted_local_part_is_refused_for_local_domains)
{
	make_policy("alice\n");
	cr_assert_eq(rcpt(false, "alice", "example.com", true), SMTP_RCPT_UNKNOWN_USER);
	cr_assert_eq(rcpt(false, "a b", "example.com", true), SMTP_RCPT_UNKNOWN_USER);
	cr_assert_eq(rcpt(false, "", "example.com", true), SMTP_RCPT_UNKNOWN_USER);
}

Test(policy, source_route_tricks_to_other_domains_need_relay_rights) /* RFC 2505 2.1 */
{
	make_policy(NULL);
	cr_assert_eq(rcpt(false, "user%example.com", "remote.example", false),
		SMTP_RCPT_RELAY_DENIED);
	cr_assert_eq(rcpt(false, "example.com!user", "remote.example", false),
		SMTP_RCPT_RELAY_DENIED);
	cr_assert_eq(rcpt(false, "user@example.com", "remote.example", true),
		SMTP_RCPT_RELAY_DENIED);
}

/* ---- local parts that cannot be Maildir names ---- */

Test(policy, local_parts_unsafe_as_directory_names_are_unknown_users)
{
	make_policy(NULL);
	static const char *bad[] = {
		"a/b", "../etc", "..", ".", ".hidden", "a\001b", "tab\there", "del\x7f", "a b",
		"a@b", "a%b", "a!b", "/", "a/",
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		cr_assert_eq(rcpt(true, bad[i], "example.com", false), SMTP_RCPT_UNKNOWN_USER,
			"%s", bad[i]);
		cr_assert_not(policy_local_part_safe(s(bad[i])), "%s", bad[i]);
	}
	cr_assert_eq(policy_rcpt(&pol, true, slice_make("a\0b", 3), s("example.com"), false),
		SMTP_RCPT_UNKNOWN_USER);
	cr_assert_eq(rcpt(true, "", "example.com", false), SMTP_RCPT_UNKNOWN_USER);
}

Test(policy, local_parts_keep_their_ordinary_characters)
{
	make_policy(NULL);
	static const char *good[] = {
		"a.b", "a+tag", "a-b_c", "x=y", "o'brien", "a#b", "{x}", "a.", "\xc3\xa9t\xc3\xa9",
	};
	for (size_t i = 0; i < ARRAY_LEN(good); i++) {
		cr_assert_eq(rcpt(false, good[i], "example.com", false), SMTP_RCPT_OK, "%s",
			good[i]);
	}
}

Test(policy, local_part_length_at_and_past_64) /* RFC 5321 4.5.3.1.1 */
{
	make_policy(NULL);
	char lp[66];
	memset(lp, 'a', sizeof(lp));
	lp[64] = '\0';
	cr_assert_eq(rcpt(false, lp, "example.com", false), SMTP_RCPT_OK);
	lp[64] = 'a';
	lp[65] = '\0';
	cr_assert_eq(rcpt(false, lp, "example.com", false), SMTP_RCPT_UNKNOWN_USER);
}

/* ---- relaying ---- */

Test(policy, other_domains_relay_only_when_allowed) /* RFC 2505 2.1 */
{
	make_policy(NULL);
	cr_assert_eq(rcpt(false, "user", "remote.example", false), SMTP_RCPT_RELAY_DENIED);
	cr_assert_eq(rcpt(true, "user", "remote.example", false), SMTP_RCPT_OK);
	cr_assert_eq(rcpt(true, "a b", "remote.example", true), SMTP_RCPT_OK);
	cr_assert_eq(rcpt(false, "user", "sub.example.com", false), SMTP_RCPT_RELAY_DENIED);
}

static struct sockaddr_in
v4(const char *ip)
{
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons(25) };
	cr_assert_eq(inet_pton(AF_INET, ip, &sin.sin_addr), 1);
	return sin;
}

static struct sockaddr_in6
v6(const char *ip)
{
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_port = htons(25) };
	cr_assert_eq(inet_pton(AF_INET6, ip, &sin6.sin6_addr), 1);
	return sin6;
}

static bool
may_relay4(const char *ip)
{
	struct sockaddr_in sin = v4(ip);
	return policy_client_may_relay(&pol, (const struct sockaddr *)&sin);
}

static bool
may_relay6(const char *ip)
{
	struct sockaddr_in6 sin6 = v6(ip);
	return policy_client_may_relay(&pol, (const struct sockaddr *)&sin6);
}

Test(policy, relay_networks_match_ipv4_and_ipv6_clients)
{
	make_policy(NULL);
	cr_assert(may_relay4("127.0.0.1"));
	cr_assert(may_relay4("127.255.255.255"));
	cr_assert_not(may_relay4("128.0.0.1"));
	cr_assert_not(may_relay4("126.255.255.255"));
	cr_assert(may_relay6("::1"));
	cr_assert_not(may_relay6("::2"));
	cr_assert_not(may_relay6("::"));
}

Test(policy, ipv4_mapped_clients_match_ipv4_networks)
{
	make_policy(NULL);
	cr_assert(may_relay6("::ffff:127.0.0.1"));
	cr_assert_not(may_relay6("::ffff:10.0.0.1"));
	/* The IPv4-compatible form (deprecated) is not a mapped address. */
	cr_assert_not(may_relay6("::127.0.0.1"));
}

Test(policy, no_relay_networks_means_no_client_relays)
{
	setup_config("relay_networks =\n");
	cr_assert_eq(policy_init(&pol, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_not(may_relay4("127.0.0.1"));
	cr_assert_not(may_relay6("::1"));
	cr_assert_not(may_relay6("::ffff:127.0.0.1"));
}

Test(policy, prefix_boundaries_are_exact)
{
	setup_config("relay_networks = 127.0.0.0/9, 127.0.0.2/31, ::ffff:127.1.0.0/112, "
		"fc00::/7, 0:0:0:0:0:0:0:4/127\n");
	cr_assert_eq(policy_init(&pol, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert(may_relay4("127.127.255.255"));
	cr_assert_not(may_relay4("127.128.0.0"));
	cr_assert(may_relay6("fdff:ffff::1"));
	cr_assert(may_relay6("fc00::1"));
	cr_assert_not(may_relay6("fe00::1"));
	cr_assert(may_relay6("::5"));
	cr_assert_not(may_relay6("::6"));
}

Test(policy, match_all_prefixes_stay_within_their_family)
{
	setup_config("relay_networks = 0.0.0.0/0\n");
	cr_assert_eq(policy_init(&pol, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert(may_relay4("127.0.0.1"));
	cr_assert(may_relay6("::ffff:127.0.0.1"));
	cr_assert_not(may_relay6("::1"));
}

Test(policy, other_address_families_never_relay)
{
	make_policy(NULL);
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	cr_assert_not(policy_client_may_relay(&pol, (const struct sockaddr *)&sun));
	cr_assert_not(policy_client_may_relay(&pol, NULL));
}

/* ---- Maildir names ---- */

Test(policy, mailbox_name_is_the_lower_cased_local_part)
{
	make_policy(NULL);
	char out[65];
	cr_assert_eq(policy_mailbox_name(&pol, s("Alice.Smith+Tag"), out, sizeof(out)), 0);
	cr_assert_str_eq(out, "alice.smith+tag");
	cr_assert_eq(policy_mailbox_name(&pol, s("../x"), out, sizeof(out)), -1);
	cr_assert_eq(policy_mailbox_name(&pol, s("a/b"), out, sizeof(out)), -1);
	cr_assert_eq(policy_mailbox_name(&pol, s(""), out, sizeof(out)), -1);
}

Test(policy, mailbox_name_needs_room_for_the_nul)
{
	make_policy(NULL);
	char out[4];
	cr_assert_eq(policy_mailbox_name(&pol, s("abc"), out, sizeof(out)), 0);
	cr_assert_str_eq(out, "abc");
	cr_assert_eq(policy_mailbox_name(&pol, s("abcd"), out, sizeof(out)), -1);
}

/* ---- the users file ---- */

Test(policy, users_file_comments_blanks_crlf_and_case)
{
	make_policy("# users\n\n  alice  \r\nBOB\n\t# indented comment\ncarol\r\nalice\ndave");
	cr_assert_eq(rcpt(false, "alice", "example.com", false), SMTP_RCPT_OK);
	cr_assert_eq(rcpt(false, "bob", "example.com", false), SMTP_RCPT_OK);
	cr_assert_eq(rcpt(false, "carol", "example.com", false), SMTP_RCPT_OK);
	cr_assert_eq(rcpt(false, "dave", "example.com", false), SMTP_RCPT_OK);
	cr_assert_eq(rcpt(false, "#", "example.com", false), SMTP_RCPT_UNKNOWN_USER);
	cr_assert_eq(pol.user_count, 5);   /* four users and postmaster; alice once */
}

Test(policy, empty_users_file_leaves_only_postmaster)
{
	make_policy("");
	cr_assert_eq(rcpt(false, "postmaster", "example.com", false), SMTP_RCPT_OK);
	cr_assert_eq(rcpt(false, "alice", "example.com", false), SMTP_RCPT_UNKNOWN_USER);
}

Test(policy, users_file_bad_entry_names_file_and_line)
{
	write_users("alice\n\nuser%remote\n");
	char text[128];
	snprintf(text, sizeof(text), "local_users_file = %s\n", users_path);
	setup_config(text);
	cr_assert_eq(policy_init(&pol, &cfg, err, sizeof(err)), -1);
	char want[96];
	snprintf(want, sizeof(want), "%s:3: not a local part", users_path);
	cr_assert(strncmp(err, want, strlen(want)) == 0, "%s", err);
	unlink(users_path);
}

Test(policy, users_file_missing_is_an_error)
{
	setup_config("local_users_file = /nonexistent/users\n");
	cr_assert_eq(policy_init(&pol, &cfg, err, sizeof(err)), -1);
	cr_assert_str_eq(err, "local_users_file: /nonexistent/users: No such file or directory");
}

Test(policy, many_users_are_all_found)
{
	enum { N = 100000 };
	size_t cap = (size_t)N * 16;
	char *text = malloc(cap);
	size_t len = 0;
	for (int i = 0; i < N; i++)
		len += (size_t)snprintf(text + len, cap - len, "user%d\n", i);
	make_policy(text);
	free(text);
	cr_assert_eq(pol.user_count, N + 1);
	char name[32];
	for (int i = 0; i < N; i++) {
		snprintf(name, sizeof(name), "USER%d", i);
		cr_assert_eq(rcpt(false, name, "example.com", false), SMTP_RCPT_OK, "%s", name);
		snprintf(name, sizeof(name), "user%dx", i);
		cr_assert_eq(rcpt(false, name, "example.com", false), SMTP_RCPT_UNKNOWN_USER);
	}
}
