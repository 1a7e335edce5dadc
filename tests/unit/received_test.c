/* tests/unit/received_test.c - the Received: (RFC 5321 4.4) and Return-Path: header fields. */
#include <criterion/criterion.h>
#include <string.h>

#include "proto/received.h"

#define T0 1714566896789ull   /* Wed, 1 May 2024 12:34:56 +0000 */

static uint8_t buf[RECEIVED_LEN_MAX + 1];

static struct slice
s(const char *text)
{
	return slice_make(text, strlen(text));
}

static struct received_info
info(void)
{
	return (struct received_info){
		.helo = s("client.example"),
		.client_addr = s("127.0.0.1"),
		.myhostname = s("mx.example.com"),
		.protocol = s("ESMTP"),
		.queue_id = 0x0123456789abcdefull,
		.for_rcpt = s("bob@example.com"),
		.now_ms = T0,
	};
}

/* Formats and checks the folding: CRLF only, each continuation line starts with a tab (RFC 5322
 * 2.2.3), no line over 998 octets (RFC 5322 2.1.1). */
static const char *
format(const struct received_info *ri)
{
	size_t n = received_format(buf, RECEIVED_LEN_MAX, ri);
	cr_assert(n <= RECEIVED_LEN_MAX);
	buf[n] = '\0';
	cr_assert_eq(strlen((char *)buf), n);
	cr_assert(n >= 2 && buf[n - 2] == '\r' && buf[n - 1] == '\n');
	size_t line_start = 0;
	for (size_t i = 0; i < n; i++) {
		if (buf[i] == '\r') {
			cr_assert(buf[i + 1] == '\n', "bare CR at %zu", i);
			cr_assert(i - line_start <= 998);
			if (i + 2 < n)
				cr_assert(buf[i + 2] == '\t', "continuation without a tab: %zu", i);
			line_start = i + 2;
			i++;
			continue;
		}
		cr_assert(buf[i] != '\n', "bare LF at %zu", i);
		cr_assert(buf[i] >= 0x20 || buf[i] == '\t', "control octet at %zu", i);
	}
	return (const char *)buf;
}

Test(received, one_recipient_gets_a_for_clause) /* RFC 5321 4.4 */
{
	struct received_info ri = info();
	cr_assert_str_eq(format(&ri), "Received: from client.example ([127.0.0.1])\r\n"
		"\tby mx.example.com (ringmta) with ESMTP id 0123456789ABCDEF\r\n"
		"\tfor <bob@example.com>;\r\n"
		"\tWed, 1 May 2024 12:34:56 +0000\r\n");
}

Test(received, a_local_user_is_named_instead_of_a_client) /* RFC 5321 4.4, Postfix's pickup */
{
	struct received_info ri = info();
	ri.local_user = s("www-data");
	cr_assert_str_eq(format(&ri), "Received: by mx.example.com (ringmta, from user www-data)"
		" with ESMTP id 0123456789ABCDEF\r\n"
		"\tfor <bob@example.com>;\r\n"
		"\tWed, 1 May 2024 12:34:56 +0000\r\n");
	ri.local_user = s("a)b\r\nX-Injected: 1");
	cr_assert(strstr(format(&ri), "from user a_b__X-Injected:_1)") != NULL, "%s", buf);
}

Test(received, several_recipients_get_no_for_clause) /* RFC 5321 4.4 */
{
	struct received_info ri = info();
	ri.for_rcpt = s("");
	cr_assert_str_eq(format(&ri), "Received: from client.example ([127.0.0.1])\r\n"
		"\tby mx.example.com (ringmta) with ESMTP id 0123456789ABCDEF;\r\n"
		"\tWed, 1 May 2024 12:34:56 +0000\r\n");
}

Test(received, ipv6_client_is_an_ipv6_address_literal) /* RFC 5321 4.1.3 */
{
	struct received_info ri = info();
	ri.client_addr = s("::1");
	cr_assert(strstr(format(&ri), "from client.example ([IPv6:::1])\r\n") != NULL, "%s", buf);
	ri.client_addr = s("2001:DB8::5");
	cr_assert(strstr(format(&ri), "([IPv6:2001:DB8::5])") != NULL, "%s", buf);
}

Test(received, ipv4_mapped_client_shows_as_ipv4)
{
	struct received_info ri = info();
	ri.client_addr = s("::ffff:127.0.0.1");
	cr_assert(strstr(format(&ri), "([127.0.0.1])") != NULL, "%s", buf);
	ri.client_addr = s("::FFFF:127.0.0.2");
	cr_assert(strstr(format(&ri), "([127.0.0.2])") != NULL, "%s", buf);
}

Test(received, unusable_client_address_shows_unknown)
{
	struct received_info ri = info();
	ri.client_addr = s("unknown");
	cr_assert(strstr(format(&ri), "from client.example (unknown)\r\n") != NULL, "%s", buf);
	ri.client_addr = s("");
	cr_assert(strstr(format(&ri), "(unknown)") != NULL, "%s", buf);
	ri.client_addr = s("1.2.3.4]\r\nX: y");
	cr_assert(strstr(format(&ri), "(unknown)") != NULL, "%s", buf);
}

Test(received, helo_cannot_inject_header_lines) /* RFC 2505 2.2.1 */
{
	struct received_info ri = info();
	ri.helo = s("evil\r\nX-Injected: yes (x) ; by");
	cr_assert(strstr(format(&ri), "Received: from evil__X-Injected:_yes__x____by ([127.0.0.1])"
		"\r\n") != NULL, "%s", buf);
	ri.helo = slice_make("a\0b", 3);
	cr_assert(strstr(format(&ri), "from a_b (") != NULL, "%s", buf);
}

Test(received, helo_address_literal_is_kept)
{
	struct received_info ri = info();
	ri.helo = s("[127.0.0.1]");
	cr_assert(strstr(format(&ri), "from [127.0.0.1] ([127.0.0.1])") != NULL, "%s", buf);
	ri.helo = s("[IPv6:::1]");
	cr_assert(strstr(format(&ri), "from [IPv6:::1] (") != NULL, "%s", buf);
}

Test(received, empty_helo_shows_unknown)
{
	struct received_info ri = info();
	ri.helo = s("");
	cr_assert(strstr(format(&ri), "Received: from unknown ([127.0.0.1])") != NULL, "%s", buf);
}

Test(received, long_helo_is_cut_at_the_limit)
{
	static char helo[2000];
	memset(helo, 'h', sizeof(helo) - 1);
	struct received_info ri = info();
	ri.helo = s(helo);
	format(&ri);
	const char *from = strstr((char *)buf, "from ") + 5;
	cr_assert_eq(strcspn(from, " "), RECEIVED_HELO_MAX);
}

Test(received, protocol_words_follow_rfc3848)
{
	cr_assert(slice_eq(received_protocol(false, false, false), SLICE_LIT("SMTP")));
	cr_assert(slice_eq(received_protocol(false, true, true), SLICE_LIT("SMTP")));
	cr_assert(slice_eq(received_protocol(true, false, false), SLICE_LIT("ESMTP")));
	cr_assert(slice_eq(received_protocol(true, true, false), SLICE_LIT("ESMTPS")));
	cr_assert(slice_eq(received_protocol(true, false, true), SLICE_LIT("ESMTPA")));
	cr_assert(slice_eq(received_protocol(true, true, true), SLICE_LIT("ESMTPSA")));
	struct received_info ri = info();
	ri.protocol = received_protocol(false, false, false);
	cr_assert(strstr(format(&ri), " with SMTP id ") != NULL, "%s", buf);
	ri.protocol = received_protocol(true, true, true);
	cr_assert(strstr(format(&ri), " with ESMTPSA id ") != NULL, "%s", buf);
}

Test(received, tls_adds_a_comment_with_protocol_and_cipher) /* RFC 3848, Postfix's form */
{
	struct received_info ri = info();
	ri.protocol = received_protocol(true, true, false);
	ri.tls = s("TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 (128/128 bits) key-exchange X25519");
	format(&ri);
	cr_assert(strstr((char *)buf, "])\r\n\t(using TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 "
		"(128/128 bits) key-exchange X25519)\r\n\tby ") != NULL, "%s", buf);
	cr_assert(strstr((char *)buf, " with ESMTPS id ") != NULL, "%s", buf);
	ri.tls = s("");
	cr_assert(strstr(format(&ri), "(using") == NULL, "no comment without TLS");
}

Test(received, the_tls_comment_cannot_escape_or_split_the_field)
{
	struct received_info ri = info();
	ri.tls = s("a)\r\nX-Injected: 1\\(b(c)(");
	format(&ri);
	cr_assert(strstr((char *)buf, "(using a___X-Injected: 1__b(c)_)\r\n") != NULL, "%s", buf);
	char longer[RECEIVED_TLS_MAX + 50];
	memset(longer, 'x', sizeof(longer));
	ri.tls = slice_make(longer, sizeof(longer));
	format(&ri);
	const char *at = strstr((char *)buf, "(using ");
	cr_assert_not_null(at);
	cr_assert_eq(strspn(at + 7, "x"), RECEIVED_TLS_MAX, "cut at the limit");
}

Test(received, recipient_with_control_characters_cannot_split_the_field)
{
	struct received_info ri = info();
	ri.for_rcpt = s("\"a\r\nb\"@example.com");
	cr_assert(strstr(format(&ri), "\tfor <\"a??b\"@example.com>;\r\n") != NULL, "%s", buf);
}

Test(received, recipient_at_and_past_the_path_limit) /* RFC 5321 4.5.3.1.3 */
{
	static char rcpt[RECEIVED_RCPT_MAX + 2];
	memset(rcpt, 'r', sizeof(rcpt) - 1);
	rcpt[RECEIVED_RCPT_MAX] = '\0';
	struct received_info ri = info();
	ri.for_rcpt = s(rcpt);
	cr_assert(strstr(format(&ri), "\tfor <rrr") != NULL);
	rcpt[RECEIVED_RCPT_MAX] = 'r';
	ri.for_rcpt = s(rcpt);
	cr_assert(strstr(format(&ri), "\tfor ") == NULL);
	cr_assert(strstr((char *)buf, "id 0123456789ABCDEF;\r\n") != NULL);
}

Test(received, worst_case_fits_the_limit)
{
	static char big[4000];
	memset(big, '\n', sizeof(big) - 1);
	static char rcpt[RECEIVED_RCPT_MAX + 1];
	memset(rcpt, 'r', sizeof(rcpt) - 1);
	static char host[RECEIVED_HOST_MAX + 1];
	memset(host, 'm', sizeof(host) - 1);
	struct received_info ri = {
		.helo = s(big),
		.client_addr = s("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"),
		.local_user = s(""),
		.myhostname = s(host),
		.protocol = s("ESMTPSA"),
		.tls = s(big),
		.queue_id = UINT64_MAX,
		.for_rcpt = s(rcpt),
		.now_ms = 253402300799999ull,
	};
	format(&ri);
	cr_assert(strstr((char *)buf, "id FFFFFFFFFFFFFFFF\r\n") != NULL, "%s", buf);
	cr_assert(strstr((char *)buf, "\tFri, 31 Dec 9999 23:59:59 +0000\r\n") != NULL, "%s", buf);
}

static const char *
date_of(uint64_t ms)
{
	struct received_info ri = info();
	ri.for_rcpt = s("");
	ri.now_ms = ms;
	const char *text = format(&ri);
	return strstr(text, ";\r\n\t") + 4;
}

Test(received, date_is_rfc5322_with_a_numeric_zone) /* RFC 5322 3.3 */
{
	cr_assert_str_eq(date_of(0), "Thu, 1 Jan 1970 00:00:00 +0000\r\n");
	cr_assert_str_eq(date_of(951782400000ull), "Tue, 29 Feb 2000 00:00:00 +0000\r\n");
	cr_assert_str_eq(date_of(1704067199999ull), "Sun, 31 Dec 2023 23:59:59 +0000\r\n");
	cr_assert_str_eq(date_of(1709856000000ull), "Fri, 8 Mar 2024 00:00:00 +0000\r\n");
	cr_assert_str_eq(date_of(1718409600000ull), "Sat, 15 Jun 2024 00:00:00 +0000\r\n");
	cr_assert_str_eq(date_of(1726358400000ull), "Sun, 15 Sep 2024 00:00:00 +0000\r\n");
	cr_assert_str_eq(date_of(1702598400000ull), "Fri, 15 Dec 2023 00:00:00 +0000\r\n");
}

Test(received, date_alone_is_the_same_text_and_within_its_bound) /* RFC 5322 3.3 */
{
	uint8_t d[RECEIVED_DATE_LEN_MAX + 1];
	size_t n = received_date(d, RECEIVED_DATE_LEN_MAX, 1714566896789ull);
	d[n] = '\0';
	cr_assert_str_eq((char *)d, "Wed, 1 May 2024 12:34:56 +0000");
	n = received_date(d, RECEIVED_DATE_LEN_MAX, 253402300799000ull);   /* the last second of 9999 */
	d[n] = '\0';
	cr_assert_str_eq((char *)d, "Fri, 31 Dec 9999 23:59:59 +0000");
	cr_assert_eq(n, RECEIVED_DATE_LEN_MAX, "the longest date fills the bound exactly");
	n = received_date(d, RECEIVED_DATE_LEN_MAX, UINT64_MAX / 4);        /* far future: capped */
	cr_assert(n <= RECEIVED_DATE_LEN_MAX);
}

/* ---- Return-Path ---- */

static const char *
return_path(struct slice sender)
{
	size_t n = received_return_path(buf, RECEIVED_RETURN_PATH_MAX, sender);
	cr_assert(n <= RECEIVED_RETURN_PATH_MAX);
	buf[n] = '\0';
	return (const char *)buf;
}

Test(received, return_path_carries_the_reverse_path) /* RFC 5321 4.4 */
{
	cr_assert_str_eq(return_path(s("alice@example.com")),
		"Return-Path: <alice@example.com>\r\n");
}

Test(received, return_path_of_the_null_sender_is_empty_brackets) /* RFC 5321 4.4 */
{
	cr_assert_str_eq(return_path(s("")), "Return-Path: <>\r\n");
}

Test(received, return_path_cannot_split_the_header)
{
	cr_assert_str_eq(return_path(s("a\r\nX: y@b")), "Return-Path: <a??X: y@b>\r\n");
	static char big[RECEIVED_SENDER_MAX + 1];   /* the longest sender the server accepts */
	memset(big, 's', sizeof(big) - 1);
	const char *text = return_path(s(big));
	cr_assert_eq(strlen(text), RECEIVED_RETURN_PATH_MAX, "kept whole, never cut");
	cr_assert(strcmp(text + strlen(text) - 4, "s>\r\n") == 0);
}
