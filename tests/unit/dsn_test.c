/* tests/unit/dsn_test.c - delivery status notifications (RFC 3464, RFC 6522, RFC 3461). */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/dsn.h"

#define T0       1714566896789ull   /* Wed, 1 May 2024 12:34:56 +0000 */
#define QID      0x6632356000000001ull
#define DSN_QID  0x6632356000000002ull
#define BOUNDARY "=_ringmta_6632356000000002"
#define NOTIFY_BITS_MAX 0x0fu   /* every combination of the four SMTP_DSN_NOTIFY_* bits */

static const char original[] =
	"Received: from client.example ([127.0.0.1])\r\n"
	"\tby mx.example.com (ringmta) with ESMTP id 6632356000000001;\r\n"
	"\tWed, 1 May 2024 12:34:50 +0000\r\n"
	"Subject: lunch\r\n"
	"\r\n"
	"Shall we meet at noon?\r\n";
#define ORIGINAL_HEADERS_LEN (sizeof(original) - 1 - sizeof("\r\nShall we meet at noon?\r\n") + 1)

static struct slice
s(const char *text)
{
	return slice_make(text, strlen(text));
}

static struct dsn_envelope env;
static struct dsn_rcpt rcpt;
static struct dsn_report report;
static char *text;        /* the whole DSN, NUL-terminated, from compose() */
static struct dsn_out out;

static void
setup(void)
{
	env = (struct dsn_envelope){
		.mail_from = s("alice@a.example"),
		.ret = SMTP_DSN_RET_UNSPECIFIED,
		.arrival_ms = T0 - 6000,
		.client_addr = s("127.0.0.1"),
		.helo = s("client.example"),
	};
	rcpt = (struct dsn_rcpt){
		.final_rcpt = s("bob@b.example"),
		.action = DSN_ACTION_FAILED,
		.status = s("5.1.1"),
		.diag_type = DSN_DIAG_SMTP,
		.diag = s("550 5.1.1 user unknown"),
		.remote_mta = s("mx.b.example"),
		.last_attempt_ms = T0 - 1000,
	};
	report = (struct dsn_report){
		.myhostname = s("mx.example.com"),
		.queue_id = QID,
		.dsn_queue_id = DSN_QID,
		.now_ms = T0,
		.env = &env,
		.rcpts = &rcpt,
		.rcpt_count = 1,
		.original = s(original),
		.size_limit = DSN_SIZE_LIMIT_DEFAULT,
	};
	text = NULL;
}

static void
teardown(void)
{
	free(text);
}

TestSuite(dsn, .init = setup, .fini = teardown);

/* Every line of composed text ends in CRLF, stays within 998 octets, holds no control octet
 * but TAB, and no line of it starts with "--" unless it is a delimiter of the boundary. */
static void
check_text(struct slice t, const char *boundary)
{
	size_t line = 0;
	for (size_t i = 0; i < t.len; i++) {
		uint8_t c = t.ptr[i];
		if (c == '\r') {
			cr_assert(i + 1 < t.len && t.ptr[i + 1] == '\n', "bare CR at %zu", i);
			cr_assert(i - line <= DSN_LINE_LEN_MAX, "line of %zu octets", i - line);
			line = i + 2;
			i++;
			continue;
		}
		cr_assert(c != '\n', "bare LF at %zu", i);
		cr_assert(c >= 0x20 || c == '\t', "control octet 0x%02x at %zu", c, i);
		cr_assert(c != 0x7f, "DEL at %zu", i);
		if (i == line && c == '-' && i + 1 < t.len && t.ptr[i + 1] == '-') {
			struct slice rest = slice_skip(t, i + 2);
			cr_assert(slice_starts_with(rest, s(boundary)), "a line starts with -- at %zu", i);
		}
	}
	cr_assert(t.len == 0 || line == t.len, "text ends with CRLF");
}

/* Composes into a buffer of exactly dsn_size() octets, checks the pieces and joins them. */
static const char *
compose(void)
{
	size_t need = dsn_size(&report);
	uint8_t *buf = malloc(need);
	cr_assert(buf != NULL);
	dsn_compose(&report, buf, need, &out);
	cr_assert_eq(out.head.len + out.tail.len, need, "dsn_size is exact");
	cr_assert(out.head.ptr == buf);
	cr_assert(out.tail.ptr == buf + out.head.len);
	cr_assert(out.original.ptr >= report.original.ptr || out.original.len == 0);
	cr_assert(out.original.len <= report.original.len);
	free(text);
	text = malloc(need + out.original.len + 1);
	memcpy(text, out.head.ptr, out.head.len);
	if (out.original.len > 0)
		memcpy(text + out.head.len, out.original.ptr, out.original.len);
	memcpy(text + out.head.len + out.original.len, out.tail.ptr, out.tail.len);
	text[need + out.original.len] = '\0';
	free(buf);
	return text;
}

/* The composed pieces are clean; the boundary is the one in the Content-Type field. */
static void
check_pieces(void)
{
	const char *b = strstr(text, "boundary=\"");
	cr_assert(b != NULL);
	char boundary[DSN_BOUNDARY_LEN_MAX + 1];
	const char *end = strchr(b + 10, '"');
	cr_assert(end != NULL && (size_t)(end - b - 10) <= DSN_BOUNDARY_LEN_MAX);
	memcpy(boundary, b + 10, (size_t)(end - b - 10));
	boundary[end - b - 10] = '\0';
	size_t head_len = out.head.len;
	check_text(slice_make(text, head_len), boundary);
	check_text(slice_make(text + head_len + out.original.len, out.tail.len), boundary);
}

/* The value of the first field `name` at or after `from`, up to its CRLF (folding kept). */
static char field_buf[8192];
static const char *
field(const char *from, const char *name)
{
	char key[128];
	snprintf(key, sizeof(key), "\r\n%s: ", name);
	const char *p = strstr(from, key);
	if (p == NULL)
		return NULL;
	p += strlen(key);
	const char *e = p;
	while (*e != '\0' && !(e[0] == '\r' && e[1] == '\n' && e[2] != ' ' && e[2] != '\t'))
		e++;
	size_t n = (size_t)(e - p) < sizeof(field_buf) - 1 ? (size_t)(e - p) : sizeof(field_buf) - 1;
	memcpy(field_buf, p, n);
	field_buf[n] = '\0';
	return field_buf;
}

static const char *
status_part(void)
{
	const char *p = strstr(text, "Content-Type: message/delivery-status\r\n");
	if (p == NULL)
		p = strstr(text, "Content-Type: message/global-delivery-status\r\n");
	cr_assert(p != NULL);
	return p;
}

/* ---- dsn_due: RFC 3461 4.1 ---- */

Test(dsn, never_due_for_the_null_reverse_path)
{
	for (uint8_t notify = 0; notify <= NOTIFY_BITS_MAX; notify++) {
		for (int a = DSN_ACTION_FAILED; a <= DSN_ACTION_EXPANDED; a++)
			cr_assert(!dsn_due(s(""), notify, (enum dsn_action)a));
	}
}

Test(dsn, never_due_with_notify_never_whatever_else_is_set)
{
	/* RFC 3461 4.1: NEVER stands alone; the parser refuses it with others, but the bits come
	 * back from the disk, and NEVER wins. */
	for (uint8_t notify = 0; notify <= NOTIFY_BITS_MAX; notify++) {
		if ((notify & SMTP_DSN_NOTIFY_NEVER) == 0)
			continue;
		for (int a = DSN_ACTION_FAILED; a <= DSN_ACTION_EXPANDED; a++)
			cr_assert(!dsn_due(s("a@b"), notify, (enum dsn_action)a), "0x%x %d", notify, a);
	}
}

Test(dsn, failure_due_when_notify_is_absent_or_has_failure)
{
	cr_assert(dsn_due(s("a@b"), 0, DSN_ACTION_FAILED));
	cr_assert(dsn_due(s("a@b"), SMTP_DSN_NOTIFY_FAILURE, DSN_ACTION_FAILED));
	cr_assert(dsn_due(s("a@b"), SMTP_DSN_NOTIFY_FAILURE | SMTP_DSN_NOTIFY_DELAY,
		DSN_ACTION_FAILED));
	cr_assert(!dsn_due(s("a@b"), SMTP_DSN_NOTIFY_DELAY, DSN_ACTION_FAILED));
	cr_assert(!dsn_due(s("a@b"), SMTP_DSN_NOTIFY_SUCCESS, DSN_ACTION_FAILED));
}

Test(dsn, delay_due_when_notify_is_absent_or_has_delay)
{
	cr_assert(dsn_due(s("a@b"), 0, DSN_ACTION_DELAYED));
	cr_assert(dsn_due(s("a@b"), SMTP_DSN_NOTIFY_DELAY, DSN_ACTION_DELAYED));
	cr_assert(!dsn_due(s("a@b"), SMTP_DSN_NOTIFY_FAILURE, DSN_ACTION_DELAYED));
	cr_assert(!dsn_due(s("a@b"), SMTP_DSN_NOTIFY_SUCCESS, DSN_ACTION_DELAYED));
}

Test(dsn, success_due_only_with_notify_success)
{
	for (int a = DSN_ACTION_DELIVERED; a <= DSN_ACTION_EXPANDED; a++) {
		cr_assert(!dsn_due(s("a@b"), 0, (enum dsn_action)a));
		cr_assert(!dsn_due(s("a@b"), SMTP_DSN_NOTIFY_FAILURE | SMTP_DSN_NOTIFY_DELAY,
			(enum dsn_action)a));
		cr_assert(dsn_due(s("a@b"), SMTP_DSN_NOTIFY_SUCCESS, (enum dsn_action)a));
	}
}

/* ---- the whole message ---- */

Test(dsn, failed_report_is_exactly_this_text) /* RFC 3464, RFC 6522, RFC 3834 5 */
{
	env.ret = SMTP_DSN_RET_FULL;
	compose();
	check_pieces();
	cr_assert_str_eq(text,
		"Date: Wed, 1 May 2024 12:34:56 +0000\r\n"
		"From: Mail Delivery System <MAILER-DAEMON@mx.example.com>\r\n"
		"To: <alice@a.example>\r\n"
		"Subject: Undelivered Mail Returned to Sender\r\n"
		"Message-ID: <6632356000000002.dsn@mx.example.com>\r\n"
		"Auto-Submitted: auto-replied\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: multipart/report; report-type=delivery-status;\r\n"
		"\tboundary=\"" BOUNDARY "\"\r\n"
		"Content-Transfer-Encoding: 7bit\r\n"
		"\r\n"
		"This is a MIME-encapsulated message.\r\n"
		"\r\n"
		"--" BOUNDARY "\r\n"
		"Content-Description: Notification\r\n"
		"Content-Type: text/plain; charset=us-ascii\r\n"
		"\r\n"
		"This is the mail system at host mx.example.com.\r\n"
		"\r\n"
		"Your message could not be delivered to the recipients below, and\r\n"
		"delivery has stopped: it will not be tried again.\r\n"
		"\r\n"
		"<bob@b.example>: host mx.b.example said: 550 5.1.1 user unknown\r\n"
		"\r\n"
		"The original message is attached.\r\n"
		"\r\n"
		"--" BOUNDARY "\r\n"
		"Content-Description: Delivery report\r\n"
		"Content-Type: message/delivery-status\r\n"
		"\r\n"
		"Reporting-MTA: dns; mx.example.com\r\n"
		"X-ringmta-Queue-ID: 6632356000000001\r\n"
		"Received-From-MTA: dns; client.example (127.0.0.1)\r\n"
		"Arrival-Date: Wed, 1 May 2024 12:34:50 +0000\r\n"
		"\r\n"
		"Final-Recipient: rfc822; bob@b.example\r\n"
		"Action: failed\r\n"
		"Status: 5.1.1\r\n"
		"Remote-MTA: dns; mx.b.example\r\n"
		"Diagnostic-Code: smtp; 550 5.1.1 user unknown\r\n"
		"Last-Attempt-Date: Wed, 1 May 2024 12:34:55 +0000\r\n"
		"\r\n"
		"--" BOUNDARY "\r\n"
		"Content-Description: Undelivered Message\r\n"
		"Content-Type: message/rfc822\r\n"
		"Content-Transfer-Encoding: 7bit\r\n"
		"\r\n"
		"Received: from client.example ([127.0.0.1])\r\n"
		"\tby mx.example.com (ringmta) with ESMTP id 6632356000000001;\r\n"
		"\tWed, 1 May 2024 12:34:50 +0000\r\n"
		"Subject: lunch\r\n"
		"\r\n"
		"Shall we meet at noon?\r\n"
		"\r\n"
		"--" BOUNDARY "--\r\n");
	cr_assert_eq(out.included, DSN_INCLUDED_MESSAGE);
	cr_assert(out.original.ptr == report.original.ptr, "the original is not copied");
	cr_assert(!out.need_8bitmime);
	cr_assert(!out.need_smtputf8);
}

Test(dsn, ret_hdrs_returns_only_the_header_section) /* RFC 3461 4.3 */
{
	env.ret = SMTP_DSN_RET_HDRS;
	compose();
	check_pieces();
	cr_assert_eq(out.included, DSN_INCLUDED_HEADERS);
	cr_assert_eq(out.original.len, ORIGINAL_HEADERS_LEN);
	cr_assert(strstr(text, "Content-Type: text/rfc822-headers\r\n") != NULL);
	cr_assert(strstr(text, "Shall we meet") == NULL);
	cr_assert(strstr(text, "Subject: lunch\r\n\r\n--" BOUNDARY "--\r\n") != NULL,
		"the headers end the part");
}

Test(dsn, original_at_the_size_limit_is_whole_and_past_it_headers_only)
{
	report.size_limit = sizeof(original) - 1;
	compose();
	cr_assert_eq(out.included, DSN_INCLUDED_MESSAGE);
	cr_assert_eq(out.original.len, sizeof(original) - 1);
	report.size_limit = sizeof(original) - 2;
	compose();
	check_pieces();
	cr_assert_eq(out.included, DSN_INCLUDED_HEADERS);
	cr_assert_eq(out.original.len, ORIGINAL_HEADERS_LEN);
	cr_assert(strstr(text, "The message was larger than 181 octets; only its header section\r\n")
		!= NULL, "%s", text);
}

Test(dsn, header_section_over_the_limit_is_cut_at_a_line_end)
{
	report.size_limit = 50;   /* inside the second line of the Received: field */
	env.ret = SMTP_DSN_RET_HDRS;
	compose();
	check_pieces();
	cr_assert_eq(out.original.len, sizeof("Received: from client.example ([127.0.0.1])\r\n") - 1);
	report.size_limit = 10;   /* not even one line */
	compose();
	check_pieces();
	cr_assert_eq(out.original.len, 0);
}

Test(dsn, a_report_without_failure_returns_headers_whatever_ret_says) /* RFC 3461 4.3 */
{
	env.ret = SMTP_DSN_RET_FULL;
	rcpt.action = DSN_ACTION_DELAYED;
	rcpt.status = s("4.4.1");
	rcpt.retry_until_ms = T0 + 86400000ull;
	compose();
	check_pieces();
	cr_assert_eq(out.included, DSN_INCLUDED_HEADERS);
	cr_assert_str_eq(field(text, "Subject"), "Delayed Mail (still being retried)");
	cr_assert_str_eq(field(status_part(), "Action"), "delayed");
	cr_assert_str_eq(field(status_part(), "Will-Retry-Until"), "Thu, 2 May 2024 12:34:56 +0000");
	cr_assert(strstr(text, "until Thu, 2 May 2024 12:34:56 +0000;\r\n") != NULL);
	rcpt.action = DSN_ACTION_RELAYED;
	rcpt.status = s("2.0.0");
	compose();
	cr_assert_eq(out.included, DSN_INCLUDED_HEADERS);
	cr_assert_str_eq(field(text, "Subject"), "Successful Mail Delivery Report");
	cr_assert_str_eq(field(status_part(), "Action"), "relayed");
	cr_assert(field(status_part(), "Will-Retry-Until") == NULL, "only a delay has one");
}

Test(dsn, mixed_report_lists_each_group_and_each_recipient_in_order)
{
	struct dsn_rcpt rcpts[3] = { rcpt, rcpt, rcpt };
	rcpts[1].final_rcpt = s("carol@b.example");
	rcpts[1].action = DSN_ACTION_DELAYED;
	rcpts[2].final_rcpt = s("dave@b.example");
	report.rcpts = rcpts;
	report.rcpt_count = 3;
	compose();
	check_pieces();
	cr_assert_str_eq(field(text, "Subject"), "Undelivered Mail Returned to Sender");
	const char *failed = strstr(text, "delivery has stopped");
	const char *delayed = strstr(text, "has not been delivered");
	cr_assert(failed != NULL && delayed != NULL && failed < delayed);
	cr_assert(strstr(failed, "<dave@b.example>") < delayed, "failed ones together");
	cr_assert(strstr(delayed, "<carol@b.example>") != NULL);
	const char *st = status_part();
	const char *r1 = strstr(st, "Final-Recipient: rfc822; bob@b.example\r\n");
	const char *r2 = strstr(st, "Final-Recipient: rfc822; carol@b.example\r\n");
	const char *r3 = strstr(st, "Final-Recipient: rfc822; dave@b.example\r\n");
	cr_assert(r1 != NULL && r1 < r2 && r2 < r3, "per-recipient fields in envelope order");
	cr_assert_str_eq(field(r2, "Action"), "delayed");
	cr_assert(strstr(r1, "\r\n\r\nFinal-Recipient: rfc822; carol") != NULL, "blank line between");
}

Test(dsn, orcpt_and_envid_are_shown_xtext_decoded) /* RFC 3461 4.2, 4.4 */
{
	rcpt.orcpt = s("rfc822;bob+2Bfoo+3Dbar@b.example");
	env.envid = s("QQ+2B314");
	compose();
	check_pieces();
	cr_assert_str_eq(field(status_part(), "Original-Recipient"), "rfc822;bob+foo=bar@b.example");
	cr_assert_str_eq(field(status_part(), "Original-Envelope-Id"), "QQ+314");
	cr_assert(strstr(status_part(), "Original-Recipient: rfc822;bob+foo=bar@b.example\r\n"
		"Final-Recipient: ") != NULL, "Original-Recipient comes first");
}

Test(dsn, invalid_xtext_is_shown_as_sent_and_never_without_orcpt)
{
	rcpt.orcpt = s("rfc822;bob+2@b.example");
	compose();
	cr_assert_str_eq(field(status_part(), "Original-Recipient"), "rfc822;bob+2@b.example");
	rcpt.orcpt = s("");
	compose();
	cr_assert(field(status_part(), "Original-Recipient") == NULL);
	cr_assert(field(status_part(), "Original-Envelope-Id") == NULL);
}

Test(dsn, decoded_control_octets_cannot_add_header_fields)
{
	rcpt.orcpt = s("rfc822;a+0D+0AX-Evil:+201+00@b.example");
	env.envid = s("e+0D+0AX-Evil:+202");
	env.helo = s("h\r\nX-Evil: 3");
	rcpt.remote_mta = s("m\r\nX-Evil: 4");
	rcpt.final_rcpt = s("b\r\nX-Evil: 5@b.example");
	env.mail_from = s("a\r\nX-Evil: 6@a.example");
	report.myhostname = s("mx\r\nX-Evil: 7");
	compose();
	check_pieces();
	cr_assert(strstr(text, "\r\nX-Evil") == NULL, "%s", text);
	cr_assert_str_eq(field(status_part(), "Original-Recipient"), "rfc822;a??X-Evil: 1?@b.example");
	cr_assert_str_eq(field(status_part(), "Original-Envelope-Id"), "e??X-Evil: 2");
	cr_assert_str_eq(field(status_part(), "Received-From-MTA"), "dns; h__X-Evil:_3 (127.0.0.1)");
	cr_assert_str_eq(field(text, "To"), "<a??X-Evil: 6@a.example>");
}

Test(dsn, hostile_diagnostic_stays_inside_its_field) /* untrusted remote reply */
{
	static const char evil[] = "550 evil\r\nX-Evil: 1\r\n\r\n--" BOUNDARY "--\r\n\0NUL\x1b\xff";
	rcpt.diag = slice_make(evil, sizeof(evil) - 1);
	compose();
	check_pieces();
	cr_assert(strstr(text, "\r\nX-Evil") == NULL);
	const char *close = strstr(text, "\r\n--" BOUNDARY "--\r\n");
	cr_assert(close != NULL && close[strlen("\r\n--" BOUNDARY "--\r\n")] == '\0',
		"the only close delimiter is the last line");
	cr_assert_str_eq(field(status_part(), "Diagnostic-Code"),
		"smtp; 550 evil X-Evil: 1 --" BOUNDARY "-- NUL ?");
	size_t delimiters = 0;
	for (const char *p = text; (p = strstr(p, "\r\n--" BOUNDARY)) != NULL; p++)
		delimiters++;
	cr_assert_eq(delimiters, 4, "three parts and the close, nothing more");
}

Test(dsn, long_diagnostic_is_folded_within_78_columns)
{
	static char diag[600];
	for (size_t i = 0; i < sizeof(diag) - 1; i++)
		diag[i] = i % 7 == 6 ? ' ' : 'w';
	diag[sizeof(diag) - 1] = '\0';
	rcpt.diag = s(diag);
	compose();
	check_pieces();
	const char *d = strstr(status_part(), "\r\nDiagnostic-Code: ") + 2;
	const char *end = strstr(d, "\r\nLast-Attempt-Date: ");
	size_t lines = 0;
	for (const char *p = d; p < end; lines++) {
		const char *e = strstr(p, "\r\n");
		cr_assert(e - p <= (long)DSN_FOLD_COLUMN, "line %zu: %ld octets", lines, (long)(e - p));
		cr_assert(lines == 0 || *p == ' ', "a continuation starts with a blank");
		p = e + 2;
	}
	cr_assert(lines >= 600 / DSN_FOLD_COLUMN, "folded into %zu lines", lines);
	/* Unfolding (RFC 5322 2.2.3: drop each CRLF) gives the text back. */
	char unfolded[1024];
	size_t n = 0;
	for (const char *p = d + strlen("Diagnostic-Code: smtp; "); p < end; p++) {
		if (p[0] == '\r' && p[1] == '\n')
			p++;
		else
			unfolded[n++] = *p;
	}
	unfolded[n] = '\0';
	cr_assert_str_eq(unfolded, diag);
}

Test(dsn, word_longer_than_a_line_is_cut_within_998)
{
	static char diag[DSN_DIAG_LEN_MAX + 1];
	memset(diag, 'x', DSN_DIAG_LEN_MAX);
	rcpt.diag = s(diag);
	compose();
	check_pieces();   /* asserts every line <= DSN_LINE_LEN_MAX */
	const char *d = field(status_part(), "Diagnostic-Code");
	cr_assert(strstr(d, "\r\n ") != NULL, "cut into several lines");
}

Test(dsn, local_reason_has_the_x_ringmta_type_and_no_remote_host)
{
	rcpt.diag_type = DSN_DIAG_LOCAL;
	rcpt.diag = s("maildir: Permission denied");
	rcpt.remote_mta = s("");
	compose();
	cr_assert_str_eq(field(status_part(), "Diagnostic-Code"),
		"X-ringmta; maildir: Permission denied");
	cr_assert(field(status_part(), "Remote-MTA") == NULL);
	cr_assert(strstr(text, "<bob@b.example>: maildir: Permission denied\r\n") != NULL);
	rcpt.diag_type = DSN_DIAG_NONE;
	compose();
	cr_assert(field(status_part(), "Diagnostic-Code") == NULL);
	cr_assert(strstr(text, "<bob@b.example>: delivery status 5.1.1\r\n") != NULL);
}

Test(dsn, malformed_status_falls_back_to_the_class_of_the_action) /* RFC 3463 */
{
	rcpt.status = s("5.1");
	compose();
	cr_assert_str_eq(field(status_part(), "Status"), "5.0.0");
	rcpt.status = s("");
	rcpt.action = DSN_ACTION_DELAYED;
	compose();
	cr_assert_str_eq(field(status_part(), "Status"), "4.0.0");
	rcpt.status = s("2.1.5\r\nX: y");
	rcpt.action = DSN_ACTION_DELIVERED;
	compose();
	cr_assert_str_eq(field(status_part(), "Status"), "2.0.0");
}

Test(dsn, status_syntax) /* RFC 3463 2 */
{
	cr_assert(dsn_status_valid(s("5.1.1")));
	cr_assert(dsn_status_valid(s("4.999.999")));
	cr_assert(dsn_status_valid(s("2.0.0")));
	cr_assert(!dsn_status_valid(s("3.1.1")));
	cr_assert(!dsn_status_valid(s("5.1")));
	cr_assert(!dsn_status_valid(s("5.1.")));
	cr_assert(!dsn_status_valid(s("5..1")));
	cr_assert(!dsn_status_valid(s("5.1000.1")));
	cr_assert(!dsn_status_valid(s("5.1.1 ")));
	cr_assert(!dsn_status_valid(s("5.1.1.1")));
	cr_assert(!dsn_status_valid(s("")));
}

Test(dsn, xtext_decoding) /* RFC 3461 4 */
{
	uint8_t buf[64];
	long n = dsn_xtext_decode(buf, sizeof(buf), s("a+2Bb+3D+20"));
	cr_assert_eq(n, 5);
	cr_assert(memcmp(buf, "a+b= ", 5) == 0);
	cr_assert_eq(dsn_xtext_decode(buf, sizeof(buf), s("a+2")), -1);
	cr_assert_eq(dsn_xtext_decode(buf, sizeof(buf), s("a+")), -1);
	cr_assert_eq(dsn_xtext_decode(buf, sizeof(buf), s("a+2b")), -1, "upper-case hex only");
	cr_assert_eq(dsn_xtext_decode(buf, sizeof(buf), s("")), 0);
}

Test(dsn, boundary_changes_until_the_original_does_not_hold_it) /* RFC 2046 5.1.1 */
{
	static const char forged[] = "Subject: x\r\n\r\n--" BOUNDARY "\r\nforged\r\n";
	report.original = s(forged);
	compose();
	check_pieces();
	cr_assert(strstr(text, "boundary=\"" BOUNDARY ".1\"") != NULL);
	cr_assert_eq(out.original.len, sizeof(forged) - 1, "the original is kept");
}

Test(dsn, original_holding_every_boundary_is_left_out)
{
	static char forged[DSN_BOUNDARY_TRIES_MAX * 64];
	size_t n = 0;
	n += (size_t)sprintf(forged + n, "Subject: x\r\n\r\n");
	for (uint32_t i = 1; i < DSN_BOUNDARY_TRIES_MAX; i++)
		n += (size_t)sprintf(forged + n, "--%s.%u\r\n", BOUNDARY, i);
	report.original = s(forged);
	compose();
	check_pieces();
	cr_assert_eq(out.original.len, 0);
	cr_assert(strstr(text, "The original message could not be included.\r\n") != NULL);
	forged[n - 3] = '0';   /* the last try is free again */
	compose();
	cr_assert_eq(out.original.len, n);
}

Test(dsn, original_without_final_crlf_still_closes_on_a_line_of_its_own)
{
	report.original = s("Subject: x\r\n\r\nno newline");
	compose();
	check_pieces();
	cr_assert(strstr(text, "no newline\r\n\r\n--" BOUNDARY "--\r\n") != NULL);
	report.original = s("Subject: only headers\r\n");
	env.ret = SMTP_DSN_RET_HDRS;
	compose();
	check_pieces();
	cr_assert_eq(out.original.len, report.original.len, "no blank line: all headers");
}

Test(dsn, eight_bit_original_needs_8bitmime)
{
	report.original = s("Subject: x\r\n\r\nGr\xc3\xbc\xc3\x9f" "e\r\n");
	compose();
	cr_assert(out.need_8bitmime);
	cr_assert(!out.need_smtputf8);
	cr_assert(!out.utf8_types, "8-bit body, ASCII headers: plain RFC 3464 types");
	cr_assert(strstr(text, "Content-Type: message/rfc822\r\nContent-Transfer-Encoding: 8bit\r\n")
		!= NULL);
	cr_assert_str_eq(field(text, "Content-Transfer-Encoding"), "8bit");
	env.ret = SMTP_DSN_RET_HDRS;
	compose();
	cr_assert(!out.need_8bitmime, "the 8-bit body is not returned");
}

Test(dsn, smtputf8_addresses_use_the_rfc6533_types) /* RFC 6533 */
{
	env.smtputf8 = true;
	env.mail_from = s("j\xc3\xb6rg@a.example");
	rcpt.final_rcpt = s("b\xc3\xb8" "b@b.example");
	compose();
	check_pieces();
	cr_assert(out.utf8_types);
	cr_assert(out.need_smtputf8);
	cr_assert(out.need_8bitmime);
	cr_assert_str_eq(field(text, "To"), "<j\xc3\xb6rg@a.example>");
	cr_assert_str_eq(field(status_part(), "Final-Recipient"), "utf-8; b\xc3\xb8" "b@b.example");
	cr_assert(strstr(text, "Content-Type: message/global-delivery-status\r\n") != NULL);
	cr_assert(strstr(text, "Content-Type: message/global\r\n") != NULL);
	cr_assert(strstr(text, "Content-Type: text/plain; charset=utf-8\r\n") != NULL);
}

Test(dsn, non_ascii_without_smtputf8_is_shown_as_question_marks)
{
	rcpt.final_rcpt = s("b\xc3\xb8" "b@b.example");
	compose();
	check_pieces();
	cr_assert(!out.utf8_types);
	cr_assert(!out.need_8bitmime);
	cr_assert_str_eq(field(status_part(), "Final-Recipient"), "rfc822; b??b@b.example");
	env.smtputf8 = true;
	rcpt.final_rcpt = s("b\xc3" "b@b.example");   /* cut sequence: not UTF-8 */
	compose();
	check_pieces();
	cr_assert_str_eq(field(status_part(), "Final-Recipient"), "utf-8; b?b@b.example");
}

Test(dsn, worst_case_report_keeps_every_line_within_998)
{
	static struct dsn_rcpt many[DSN_RCPT_MAX];
	static char addr[DSN_ADDR_LEN_MAX + 100];
	static char orcpt[DSN_ORCPT_LEN_MAX + 100];
	static char diag[DSN_DIAG_LEN_MAX + 100];
	static char host[DSN_HOST_LEN_MAX + 100];
	memset(addr, 'a', sizeof(addr) - 1);
	memcpy(orcpt, "rfc822;", 7);
	memset(orcpt + 7, '+', sizeof(orcpt) - 8);   /* not xtext: shown as sent, cut */
	for (size_t i = 0; i < sizeof(diag) - 1; i++)
		diag[i] = (char)(i % 97 == 0 ? ' ' : 'd');
	memset(host, 'h', sizeof(host) - 1);
	for (uint32_t i = 0; i < DSN_RCPT_MAX; i++) {
		many[i] = rcpt;
		many[i].final_rcpt = s(addr);
		many[i].orcpt = s(orcpt);
		many[i].diag = s(diag);
		many[i].remote_mta = s(host);
		many[i].action = i % 2 ? DSN_ACTION_FAILED : DSN_ACTION_DELAYED;
		many[i].retry_until_ms = T0;
	}
	env.mail_from = s(addr);
	env.helo = s(host);
	env.envid = s(diag);
	report.myhostname = s(host);
	report.rcpts = many;
	report.rcpt_count = DSN_RCPT_MAX;
	compose();
	check_pieces();
	cr_assert_str_eq(field(text, "Subject"), "Undelivered Mail Returned to Sender");
}

Test(dsn, a_buffer_one_octet_short_is_a_programmer_error, .signal = SIGABRT)
{
	size_t need = dsn_size(&report);
	static uint8_t buf[1 << 16];
	cr_assert(need <= sizeof(buf));
	dsn_compose(&report, buf, need - 1, &out);
}

Test(dsn, a_dsn_to_the_null_reverse_path_is_a_programmer_error, .signal = SIGABRT)
{
	env.mail_from = s("");
	(void)dsn_size(&report);
}

/* ---- the diagnostic sanitiser, with every octet value ---- */

Test(dsn, sanitiser_maps_every_octet_value)
{
	uint8_t out_buf[DSN_DIAG_LEN_MAX];
	for (unsigned v = 0; v < 256; v++) {
		uint8_t in[3] = { 'a', (uint8_t)v, 'b' };
		size_t n = dsn_sanitize_text(out_buf, sizeof(out_buf), slice_make(in, 3));
		if (v <= 0x20 || v == 0x7f) {
			cr_assert_eq(n, 3, "0x%02x", v);
			cr_assert(memcmp(out_buf, "a b", 3) == 0, "control 0x%02x becomes a blank", v);
		} else if (v >= 0x80) {
			cr_assert(n == 3 && memcmp(out_buf, "a?b", 3) == 0, "0x%02x becomes ?", v);
		} else {
			cr_assert(n == 3 && out_buf[1] == v, "printable 0x%02x is kept", v);
		}
		/* Alone, at either end, or repeated: never a control octet, never a blank at an end. */
		uint8_t run[5] = { (uint8_t)v, (uint8_t)v, 'x', (uint8_t)v, (uint8_t)v };
		n = dsn_sanitize_text(out_buf, sizeof(out_buf), slice_make(run, 5));
		cr_assert(n >= 1);
		cr_assert(out_buf[0] != ' ' && out_buf[n - 1] != ' ', "0x%02x: trimmed", v);
		for (size_t i = 0; i < n; i++) {
			cr_assert(out_buf[i] >= 0x20 && out_buf[i] < 0x7f, "0x%02x: printable out", v);
			cr_assert(!(i > 0 && out_buf[i] == ' ' && out_buf[i - 1] == ' '), "one blank");
		}
	}
}

Test(dsn, sanitiser_on_all_octets_at_once)
{
	uint8_t in[512];
	for (unsigned i = 0; i < sizeof(in); i++)
		in[i] = (uint8_t)(i & 0xff);
	uint8_t o[DSN_DIAG_LEN_MAX];
	size_t n = dsn_sanitize_text(o, sizeof(o), slice_make(in, sizeof(in)));
	/* 0x21..0x7e kept (94), 0x80..0xff as '?' (128), each run of controls and blanks one
	 * blank: between the two halves and between the copies. */
	cr_assert_eq(n, 2 * (94 + 1 + 128) + 1, "%zu", n);
	for (size_t i = 0; i < n; i++)
		cr_assert(o[i] >= 0x20 && o[i] < 0x7f);
}

Test(dsn, sanitiser_at_and_past_its_limit)
{
	static uint8_t in[DSN_DIAG_LEN_MAX + 2];
	uint8_t o[DSN_DIAG_LEN_MAX];
	memset(in, 'z', sizeof(in));
	size_t n = dsn_sanitize_text(o, sizeof(o), slice_make(in, DSN_DIAG_LEN_MAX));
	cr_assert_eq(n, DSN_DIAG_LEN_MAX, "at the limit: kept whole");
	cr_assert_eq(o[n - 1], 'z');
	n = dsn_sanitize_text(o, sizeof(o), slice_make(in, DSN_DIAG_LEN_MAX + 1));
	cr_assert_eq(n, DSN_DIAG_LEN_MAX, "past it: cut");
	cr_assert(memcmp(o + n - 4, "z...", 4) == 0);
	in[DSN_DIAG_LEN_MAX - 4] = ' ';   /* a blank just before the cut goes too */
	n = dsn_sanitize_text(o, sizeof(o), slice_make(in, DSN_DIAG_LEN_MAX + 1));
	cr_assert(memcmp(o + n - 4, "z...", 4) == 0);
	cr_assert(n <= DSN_DIAG_LEN_MAX);
	/* Trailing controls after a full text are not a cut. */
	memset(in, 'z', sizeof(in));
	in[DSN_DIAG_LEN_MAX] = '\r';
	in[DSN_DIAG_LEN_MAX + 1] = '\n';
	n = dsn_sanitize_text(o, sizeof(o), slice_make(in, DSN_DIAG_LEN_MAX + 2));
	cr_assert_eq(n, DSN_DIAG_LEN_MAX);
	cr_assert_eq(o[n - 1], 'z');
}
