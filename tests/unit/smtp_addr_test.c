/* tests/unit/smtp_addr_test.c - RFC 5321 paths and esmtp-params. */
#include <criterion/criterion.h>
#include <string.h>

#include "proto/smtp_addr.h"

#define ALL (SMTP_ADDR_ALLOW_NULL | SMTP_ADDR_ALLOW_POSTMASTER | SMTP_ADDR_ALLOW_UTF8)

struct parsed {
	enum smtp_addr_status st;
	struct smtp_addr a;
	size_t used;
	uint8_t buf[512];
};

/* The result stays valid until the next call: the decoded local part lives in its buffer. */
static const struct parsed *
parse(const char *text, uint32_t flags)
{
	static struct parsed p;
	p = (struct parsed){ .used = 12345 };
	struct slice in = slice_make(text, strlen(text));
	p.st = smtp_addr_parse_path(in, flags, p.buf, sizeof(p.buf), &p.a, &p.used);
	return &p;
}

static bool
eq(struct slice s, const char *want)
{
	return slice_eq(s, slice_make(want, strlen(want)));
}

static void
expect_ok(const char *text, uint32_t flags, const char *path, const char *local, const char *domain)
{
	const struct parsed *p = parse(text, flags);
	cr_assert_eq(p->st, SMTP_ADDR_OK, "%s: status %d", text, p->st);
	cr_assert(eq(p->a.path, path), "%s: path %.*s", text, (int)p->a.path.len, p->a.path.ptr);
	cr_assert(eq(p->a.local_part, local), "%s: local %.*s", text, (int)p->a.local_part.len,
		p->a.local_part.ptr);
	cr_assert(eq(p->a.domain, domain), "%s: domain", text);
}

static void
expect_status(const char *text, uint32_t flags, enum smtp_addr_status want)
{
	const struct parsed *p = parse(text, flags);
	cr_assert_eq(p->st, want, "%s: status %d, want %d", text, p->st, want);
	if (want != SMTP_ADDR_OK)
		cr_assert_eq(p->used, 12345, "%s: *used is set only on success", text);
}

Test(smtp_addr, plain_paths_parse) /* RFC 5321 4.1.2 */
{
	expect_ok("<user@example.com>", 0, "user@example.com", "user", "example.com");
	expect_ok("<first.last+tag@sub.example-1.com> SIZE=1", 0,
		"first.last+tag@sub.example-1.com", "first.last+tag", "sub.example-1.com");
	expect_ok("<!#$%&'*+-/=?^_`{|}~@x>", 0, "!#$%&'*+-/=?^_`{|}~@x", "!#$%&'*+-/=?^_`{|}~",
		"x");
	const struct parsed *p = parse("<a@b.c> rest", 0);
	cr_assert_eq(p->used, 7);
	cr_assert_not(p->a.quoted);
	cr_assert_not(p->a.utf8);
	cr_assert_not(p->a.null_path);
}

Test(smtp_addr, bad_paths_are_refused) /* RFC 5321 4.1.2 */
{
	static const char *bad[] = {
		"", "<", ">", "user@example.com", "<user@example.com", " <a@b>", "<a@b >",
		"<a b@c>",
		"<@a>", "<a@>", "<a@b..c>", "<a@.b>", "<a@b.>", "<.a@b>", "<a.@b>", "<a..b@c>",
		"<a@-b>", "<a@b->", "<a@b_c>", "<a@b@c>", "<a@b,c>", "<a>", "<(comment)a@b>",
		"<a@[1.2.3]>", "<a@[1.2.3.256]>", "<a@[1.2.3.4.5]>", "<a@[IPv6:1:2:3:4:5:6:7]>",
		"<a@[IPv6:1:2:3:4:5:6:7:8:9]>", "<a@[IPv6:1::2::3]>", "<a@[IPv6:12345::1]>",
		"<a@[IPv6::1]>", "<a@[IPv6:1:]>", "<a@[x:y]>", "<a@[1.2.3.4>", "<\"a@b>",
		"<\"a\\\x01\"@b>",
		"<\"a\x7f\"@b>", "<@a:b@c:d>", "<@a,b:c@d>", "<@:a@b>", "<a@b\x01>", "<a\x00@b>",
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++)
		expect_status(bad[i], ALL, SMTP_ADDR_SYNTAX);
}

Test(smtp_addr, null_path_only_when_allowed) /* RFC 5321 4.5.5 */
{
	const struct parsed *p = parse("<> BODY=8BITMIME", SMTP_ADDR_ALLOW_NULL);
	cr_assert_eq(p->st, SMTP_ADDR_OK);
	cr_assert(p->a.null_path);
	cr_assert_eq(p->a.path.len, 0);
	cr_assert_eq(p->used, 2);
	expect_status("<>", SMTP_ADDR_ALLOW_POSTMASTER, SMTP_ADDR_SYNTAX);
}

Test(smtp_addr, postmaster_without_domain_only_when_allowed) /* RFC 5321 4.5.1 */
{
	expect_ok("<Postmaster>", SMTP_ADDR_ALLOW_POSTMASTER, "Postmaster", "Postmaster", "");
	expect_ok("<POSTMASTER>", SMTP_ADDR_ALLOW_POSTMASTER, "POSTMASTER", "POSTMASTER", "");
	expect_status("<postmaster>", SMTP_ADDR_ALLOW_NULL, SMTP_ADDR_SYNTAX);
	expect_status("<\"postmaster\">", SMTP_ADDR_ALLOW_POSTMASTER, SMTP_ADDR_SYNTAX);
	expect_status("<postmast>", SMTP_ADDR_ALLOW_POSTMASTER, SMTP_ADDR_SYNTAX);
	expect_ok("<postmaster@example.com>", 0, "postmaster@example.com", "postmaster",
		"example.com");
}

Test(smtp_addr, source_routes_are_dropped) /* RFC 5321 4.1.2, appendix C */
{
	expect_ok("<@a.example:u@d.example>", 0, "u@d.example", "u", "d.example");
	expect_ok("<@a.example,@[1.2.3.4],@c:u@d>", 0, "u@d", "u", "d");
}

Test(smtp_addr, utf8_in_a_dropped_source_route_still_needs_the_flag) /* RFC 6531 3.3 (fuzz) */
{
	expect_status("<@a\xd2\x9e:u@x>", 0, SMTP_ADDR_NEED_UTF8);
	const struct parsed *p = parse("<@a\xd2\x9e:u@x>", SMTP_ADDR_ALLOW_UTF8);
	cr_assert_eq(p->st, SMTP_ADDR_OK);
	cr_assert(eq(p->a.path, "u@x"));
	cr_assert(p->a.utf8);
}

Test(smtp_addr, quoted_local_parts_are_decoded) /* RFC 5321 4.1.2 */
{
	const struct parsed *p = parse("<\"john \\\"q\\\" doe\\\\\"@example.com>", 0);
	cr_assert_eq(p->st, SMTP_ADDR_OK);
	cr_assert(p->a.quoted);
	cr_assert(eq(p->a.local_part, "john \"q\" doe\\"));
	cr_assert_eq(p->a.local_part.ptr, p->buf);
	cr_assert(eq(p->a.path, "\"john \\\"q\\\" doe\\\\\"@example.com"));
	cr_assert(eq(p->a.domain, "example.com"));
	p = parse("<\"\"@x>", 0);
	cr_assert_eq(p->st, SMTP_ADDR_OK);
	cr_assert_eq(p->a.local_part.len, 0);
	expect_ok("<\"a@b\"@c>", 0, "\"a@b\"@c", "a@b", "c");
}

Test(smtp_addr, a_quoted_local_part_too_big_for_the_buffer_is_no_space)
{
	struct smtp_addr a;
	size_t used;
	uint8_t buf[4];
	cr_assert_eq(smtp_addr_parse_path(SLICE_LIT("<\"abcde\"@x>"), 0, buf, sizeof(buf), &a,
		&used), SMTP_ADDR_NO_SPACE);
	cr_assert_eq(smtp_addr_parse_path(SLICE_LIT("<\"abcd\"@x>"), 0, buf, sizeof(buf), &a,
		&used), SMTP_ADDR_OK);
	cr_assert_eq(smtp_addr_parse_path(SLICE_LIT("<\"abcde\"x>"), 0, buf, sizeof(buf), &a,
		&used), SMTP_ADDR_SYNTAX, "syntax is checked before space");
	cr_assert_eq(smtp_addr_parse_path(SLICE_LIT("<\"\"@x>"), 0, NULL, 0, &a, &used),
		SMTP_ADDR_OK);
}

Test(smtp_addr, address_literals) /* RFC 5321 4.1.3 */
{
	expect_ok("<a@[127.0.0.1]>", 0, "a@[127.0.0.1]", "a", "[127.0.0.1]");
	static const char *good[] = {
		"<a@[IPv6:::1]>", "<a@[ipv6:::]>", "<a@[IPv6:1:2:3:4:5:6:7:8]>", "<a@[IPv6:1::]>",
		"<a@[IPv6:fe80::1:2]>", "<a@[IPv6:::ffff:127.0.0.1]>",
		"<a@[IPv6:1:2:3:4:5:6:1.2.3.4]>",
		"<a@[IPv6:ABCD:ef01::]>", "<a@[0.0.0.0]>", "<a@[255.255.255.255]>",
	};
	for (size_t i = 0; i < ARRAY_LEN(good); i++)
		expect_status(good[i], 0, SMTP_ADDR_OK);
	expect_status("<a@[IPv6:1:2:3:4:5:6:7:1.2.3.4]>", 0, SMTP_ADDR_SYNTAX);
	expect_status("<a@[IPv6:1.2.3.4]>", 0, SMTP_ADDR_SYNTAX);
}

Test(smtp_addr, utf8_needs_the_flag) /* RFC 6531 3.3 */
{
	expect_status("<j\xc3\xb6rg@example.com>", 0, SMTP_ADDR_NEED_UTF8);
	expect_status("<u@b\xc3\xbc" "cher.example>", 0, SMTP_ADDR_NEED_UTF8);
	expect_status("<\"\xc3\xa9\"@x>", 0, SMTP_ADDR_NEED_UTF8);
	expect_ok("<j\xc3\xb6rg@b\xc3\xbc" "cher.example>", SMTP_ADDR_ALLOW_UTF8,
		"j\xc3\xb6rg@b\xc3\xbc" "cher.example", "j\xc3\xb6rg", "b\xc3\xbc" "cher.example");
	const struct parsed *p = parse("<\xe2\x82\xac@\xf0\x9f\x98\x80.example>",
		SMTP_ADDR_ALLOW_UTF8);
	cr_assert_eq(p->st, SMTP_ADDR_OK);
	cr_assert(p->a.utf8);
	/* Not UTF-8 at all: refused with the flag as without it. */
	static const char *bad[] = {
		"<\xff@x>", "<\xc3@x>", "<\xc0\xaf@x>", "<\xe0\x80\xaf@x>", "<\xed\xa0\x80@x>",
		"<\xf4\x90\x80\x80@x>", "<a@\x80>", "<\x80\x80@x>",
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		expect_status(bad[i], SMTP_ADDR_ALLOW_UTF8, SMTP_ADDR_SYNTAX);
		expect_status(bad[i], 0, SMTP_ADDR_SYNTAX);
	}
}

Test(smtp_addr, length_limits_at_and_past_the_bound) /* RFC 5321 4.5.3.1.1, 4.5.3.1.2 */
{
	char text[1024];
	/* Local part of SMTP_ADDR_LOCAL_LEN_MAX octets, then one more. */
	text[0] = '<';
	memset(text + 1, 'l', SMTP_ADDR_LOCAL_LEN_MAX);
	strcpy(text + 1 + SMTP_ADDR_LOCAL_LEN_MAX, "@x>");
	expect_status(text, 0, SMTP_ADDR_OK);
	text[0] = '<';
	memset(text + 1, 'l', SMTP_ADDR_LOCAL_LEN_MAX + 1);
	strcpy(text + 2 + SMTP_ADDR_LOCAL_LEN_MAX, "@x>");
	expect_status(text, 0, SMTP_ADDR_SYNTAX);
	/* A label of 63 octets, then 64. */
	strcpy(text, "<a@");
	memset(text + 3, 'd', SMTP_ADDR_LABEL_LEN_MAX);
	strcpy(text + 3 + SMTP_ADDR_LABEL_LEN_MAX, ".x>");
	expect_status(text, 0, SMTP_ADDR_OK);
	memset(text + 3, 'd', SMTP_ADDR_LABEL_LEN_MAX + 1);
	strcpy(text + 4 + SMTP_ADDR_LABEL_LEN_MAX, ".x>");
	expect_status(text, 0, SMTP_ADDR_SYNTAX);
	/* A domain of 255 octets (four labels of 50 and dots, then 51), then 256. */
	strcpy(text, "<a@");
	size_t n = 3;
	for (int i = 0; i < 4; i++) {
		memset(text + n, 'e', 50);
		n += 50;
		text[n++] = '.';
	}
	memset(text + n, 'f', 51);
	strcpy(text + n + 51, ">");
	expect_status(text, 0, SMTP_ADDR_OK);
	memset(text + n, 'f', 52);
	strcpy(text + n + 52, ">");
	expect_status(text, 0, SMTP_ADDR_SYNTAX);
}

Test(smtp_addr, domain_valid_checks_whole_domains)
{
	cr_assert(smtp_addr_domain_valid(SLICE_LIT("mx.example.com"), 0));
	cr_assert(smtp_addr_domain_valid(SLICE_LIT("[IPv6:::1]"), 0));
	cr_assert_not(smtp_addr_domain_valid(SLICE_LIT("mx.example.com "), 0));
	cr_assert_not(smtp_addr_domain_valid(SLICE_LIT(""), 0));
	cr_assert_not(smtp_addr_domain_valid(SLICE_LIT("b\xc3\xbc.de"), 0));
	cr_assert(smtp_addr_domain_valid(SLICE_LIT("b\xc3\xbc.de"), SMTP_ADDR_ALLOW_UTF8));
}

Test(smtp_addr, param_lists_split_into_keywords_and_values) /* RFC 5321 4.1.2 esmtp-param */
{
	struct slice rest = SLICE_LIT(" SIZE=123  BODY=8BITMIME SMTPUTF8 X-Y=a+b;c ");
	struct smtp_addr_param p;
	cr_assert_eq(smtp_addr_param_next(&rest, 0, &p), SMTP_ADDR_PARAM_OK);
	cr_assert(eq(p.keyword, "SIZE") && eq(p.value, "123") && p.has_value);
	cr_assert_eq(smtp_addr_param_next(&rest, 0, &p), SMTP_ADDR_PARAM_OK);
	cr_assert(eq(p.keyword, "BODY") && eq(p.value, "8BITMIME"));
	cr_assert_eq(smtp_addr_param_next(&rest, 0, &p), SMTP_ADDR_PARAM_OK);
	cr_assert(eq(p.keyword, "SMTPUTF8") && !p.has_value && p.value.len == 0);
	cr_assert_eq(smtp_addr_param_next(&rest, 0, &p), SMTP_ADDR_PARAM_OK);
	cr_assert(eq(p.keyword, "X-Y") && eq(p.value, "a+b;c"));
	cr_assert_eq(smtp_addr_param_next(&rest, 0, &p), SMTP_ADDR_PARAM_END);
	cr_assert_eq(smtp_addr_param_next(&rest, 0, &p), SMTP_ADDR_PARAM_END);
	rest = SLICE_LIT("");
	cr_assert_eq(smtp_addr_param_next(&rest, 0, &p), SMTP_ADDR_PARAM_END);
}

Test(smtp_addr, bad_param_lists_are_refused) /* RFC 5321 4.1.2 esmtp-param */
{
	static const char *bad[] = {
		" =x", " -A=1", " A=", " A==b", " A=b=c", " A=\x01", " A\x01", " A=b\tC=d",
		" A=\xc3\xa9",
		" A=\xff",
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		struct slice rest = slice_make(bad[i], strlen(bad[i]));
		struct smtp_addr_param p;
		cr_assert_eq(smtp_addr_param_next(&rest, 0, &p), SMTP_ADDR_PARAM_SYNTAX, "%s",
			bad[i]);
	}
	struct slice rest = SLICE_LIT(" A=\xc3\xa9");
	struct smtp_addr_param p;
	cr_assert_eq(smtp_addr_param_next(&rest, SMTP_ADDR_ALLOW_UTF8, &p), SMTP_ADDR_PARAM_OK);
	rest = SLICE_LIT(" A=\xff");
	cr_assert_eq(smtp_addr_param_next(&rest, SMTP_ADDR_ALLOW_UTF8, &p), SMTP_ADDR_PARAM_SYNTAX);
}

Test(smtp_addr, xtext_and_orcpt) /* RFC 3461 4, 4.2 */
{
	cr_assert(smtp_addr_xtext_valid(SLICE_LIT("abc+2B+3D!~")));
	cr_assert(smtp_addr_xtext_valid(SLICE_LIT("")));
	cr_assert_not(smtp_addr_xtext_valid(SLICE_LIT("a=b")));
	cr_assert_not(smtp_addr_xtext_valid(SLICE_LIT("a+2b")));
	cr_assert_not(smtp_addr_xtext_valid(SLICE_LIT("a+2")));
	cr_assert_not(smtp_addr_xtext_valid(SLICE_LIT("a b")));
	cr_assert_not(smtp_addr_xtext_valid(SLICE_LIT("\xc3\xa9")));
	cr_assert(smtp_addr_orcpt_valid(SLICE_LIT("rfc822;user+40example.com"), 0));
	cr_assert(smtp_addr_orcpt_valid(SLICE_LIT("utf-8;us\xc3\xa9r@x"), SMTP_ADDR_ALLOW_UTF8));
	cr_assert_not(smtp_addr_orcpt_valid(SLICE_LIT("utf-8;us\xc3\xa9r@x"), 0));
	cr_assert_not(smtp_addr_orcpt_valid(SLICE_LIT("rfc822"), 0));
	cr_assert_not(smtp_addr_orcpt_valid(SLICE_LIT("rfc822;"), 0));
	cr_assert_not(smtp_addr_orcpt_valid(SLICE_LIT(";a@b"), 0));
	cr_assert_not(smtp_addr_orcpt_valid(SLICE_LIT("rf c;a@b"), 0));
}

Test(smtp_addr, utf8_sequences) /* RFC 3629 3, 4 */
{
	cr_assert_eq(smtp_addr_utf8_seq_len(SLICE_LIT("\xc3\xa9")), 2);
	cr_assert_eq(smtp_addr_utf8_seq_len(SLICE_LIT("\xe2\x82\xac")), 3);
	cr_assert_eq(smtp_addr_utf8_seq_len(SLICE_LIT("\xf0\x9f\x98\x80")), 4);
	cr_assert_eq(smtp_addr_utf8_seq_len(SLICE_LIT("\xf4\x8f\xbf\xbf")), 4);
	cr_assert_eq(smtp_addr_utf8_seq_len(SLICE_LIT("a")), 0);
	cr_assert_eq(smtp_addr_utf8_seq_len(SLICE_LIT("\xc1\xbf")), 0);           /* overlong */
	cr_assert_eq(smtp_addr_utf8_seq_len(SLICE_LIT("\xe0\x9f\xbf")), 0);       /* overlong */
	cr_assert_eq(smtp_addr_utf8_seq_len(SLICE_LIT("\xf0\x8f\xbf\xbf")), 0);   /* overlong */
	cr_assert_eq(smtp_addr_utf8_seq_len(SLICE_LIT("\xed\xbf\xbf")), 0);       /* surrogate */
	cr_assert_eq(smtp_addr_utf8_seq_len(SLICE_LIT("\xf4\x90\x80\x80")), 0);   /* > U+10FFFF */
	cr_assert_eq(smtp_addr_utf8_seq_len(SLICE_LIT("\xe2\x82")), 0);           /* truncated */
	cr_assert_eq(smtp_addr_utf8_seq_len(SLICE_LIT("")), 0);
}
