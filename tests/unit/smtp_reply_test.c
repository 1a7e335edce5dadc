/* tests/unit/smtp_reply_test.c - the SMTP reply parser (RFC 5321 4.2, 4.2.1; RFC 2034, 3463).
 *
 * Every input goes through parse_all(): fed whole, byte by byte and split in two at every
 * offset, re-offering what was not consumed as a client does. All runs must give the same
 * replies, the same lines and the same final error. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/smtp_reply.h"

#define RUN_REPLIES_MAX 256u
#define RUN_LINES_MAX 1024u
#define RUN_TEXT_MAX (RUN_REPLIES_MAX * SMTP_REPLY_TEXT_MAX)

struct got_reply {
	uint16_t code;
	struct smtp_reply_enhanced enhanced;
	size_t text_off, text_len;
	uint32_t line_count;
	bool truncated;
};

struct run {
	struct got_reply replies[RUN_REPLIES_MAX];
	size_t nreplies;
	uint8_t *text;            /* the replies' kept texts, one after the other */
	size_t text_len;
	uint8_t *lines;           /* every line's own text, each followed by '|' */
	size_t lines_len;
	size_t nlines;
	uint32_t reply_lines;     /* lines of the reply being read */
	enum smtp_reply_error error;
	size_t consumed;
};

enum feed_mode { FEED_WHOLE, FEED_BYTES, FEED_SPLIT };

static void
run_reset(struct run *r)
{
	r->nreplies = r->text_len = r->lines_len = r->nlines = r->consumed = 0;
	r->reply_lines = 0;
	r->error = SMTP_REPLY_ERR_NONE;
}

static struct run *
run_new(void)
{
	struct run *r = calloc(1, sizeof(*r));
	cr_assert_not_null(r);
	r->text = malloc(RUN_TEXT_MAX);
	r->lines = malloc(RUN_TEXT_MAX * 2);
	cr_assert(r->text && r->lines);
	return r;
}

static void
run_free(struct run *r)
{
	free(r->text);
	free(r->lines);
	free(r);
}

/* Takes what the parser can from buf, as a client would; returns false after an error. */
static bool
pump(struct smtp_reply_parser *p, struct run *r, uint8_t *buf, size_t *len)
{
	for (;;) {
		size_t used = 12345;
		struct smtp_reply_line line;
		enum smtp_reply_event ev = smtp_reply_feed(p, slice_make(buf, *len), &used, &line);
		if (ev == SMTP_REPLY_ERROR) {
			cr_assert_eq(used, 0);
			r->error = smtp_reply_error(p);
			cr_assert_neq(r->error, SMTP_REPLY_ERR_NONE);
			return false;
		}
		if (ev == SMTP_REPLY_MORE) {
			cr_assert_eq(used, 0);
			cr_assert_lt(
				*len, SMTP_REPLY_LINE_LEN_MAX, "less than a line is left over");
			return true;
		}
		cr_assert_gt(used, 0);
		cr_assert_leq(used, *len);
		cr_assert(line.text.ptr >= buf && line.text.ptr + line.text.len <= buf + used,
			"the line's text is a slice of the input");
		cr_assert_null(memchr(line.text.ptr, '\n', line.text.len));
		cr_assert_eq(line.index, r->reply_lines, "lines are numbered within their reply");
		r->reply_lines = ev == SMTP_REPLY_DONE ? 0 : r->reply_lines + 1;
		cr_assert_lt(r->nlines, RUN_LINES_MAX);
		memcpy(r->lines + r->lines_len, line.text.ptr, line.text.len);
		r->lines_len += line.text.len;
		r->lines[r->lines_len++] = '|';
		r->nlines++;
		cr_assert_eq(line.last, ev == SMTP_REPLY_DONE);
		if (ev == SMTP_REPLY_DONE) {
			struct smtp_reply rep = smtp_reply_get(p);
			cr_assert_eq(rep.code, line.code);
			cr_assert_eq(rep.line_count, line.index + 1);
			cr_assert_leq(rep.text.len, SMTP_REPLY_TEXT_MAX);
			for (size_t i = 0; i < rep.text.len; i++)
				cr_assert(rep.text.ptr[i] >= 0x20 && rep.text.ptr[i] != 0x7f,
					"no control octet in the kept text");
			if (rep.enhanced.cls != 0)
				cr_assert_eq(rep.enhanced.cls, rep.code / 100);
			cr_assert_lt(r->nreplies, RUN_REPLIES_MAX);
			r->replies[r->nreplies++] = (struct got_reply){ .code = rep.code,
				.enhanced = rep.enhanced,
				.text_off = r->text_len,
				.text_len = rep.text.len,
				.line_count = rep.line_count,
				.truncated = rep.truncated };
			memcpy(r->text + r->text_len, rep.text.ptr, rep.text.len);
			r->text_len += rep.text.len;
		}
		memmove(buf, buf + used, *len - used);
		*len -= used;
		r->consumed += used;
	}
}

static void
run_into(struct run *r, struct slice in, enum feed_mode mode, size_t split)
{
	struct smtp_reply_parser p;
	memset(&p, 0xa5, sizeof(p));   /* init must set everything the parser reads */
	smtp_reply_init(&p);
	run_reset(r);
	uint8_t *buf = malloc(in.len + 1);
	size_t len = 0, pos = 0;
	while (pos < in.len) {
		size_t end = mode == FEED_WHOLE ? in.len : mode == FEED_BYTES ? pos + 1
			: (pos < split ? split : in.len);
		memcpy(buf + len, in.ptr + pos, end - pos);
		len += end - pos;
		pos = end;
		if (!pump(&p, r, buf, &len))
			break;
	}
	if (r->error != SMTP_REPLY_ERR_NONE) {   /* the error is final */
		size_t used = 1;
		struct smtp_reply_line line;
		cr_assert_eq(smtp_reply_feed(&p, SLICE_LIT("250 ok\r\n"), &used, &line),
			SMTP_REPLY_ERROR);
		cr_assert_eq(used, 0);
		cr_assert_eq(smtp_reply_error(&p), r->error);
	}
	free(buf);
}

static void
run_compare(const struct run *a, const struct run *b, const char *how)
{
	cr_assert_eq(a->nreplies, b->nreplies, "%s: reply counts differ", how);
	for (size_t i = 0; i < a->nreplies; i++) {
		const struct got_reply *x = &a->replies[i], *y = &b->replies[i];
		cr_assert(x->code == y->code && x->enhanced.cls == y->enhanced.cls
				&& x->enhanced.subject == y->enhanced.subject
				&& x->enhanced.detail == y->enhanced.detail
				&& x->line_count == y->line_count && x->truncated == y->truncated
				&& x->text_len == y->text_len,
			"%s: reply %zu", how, i);
	}
	cr_assert_eq(a->text_len, b->text_len, "%s", how);
	cr_assert(memcmp(a->text, b->text, a->text_len) == 0, "%s: texts differ", how);
	cr_assert_eq(a->lines_len, b->lines_len, "%s", how);
	cr_assert(memcmp(a->lines, b->lines, a->lines_len) == 0, "%s: lines differ", how);
	cr_assert_eq(a->error, b->error, "%s: errors differ", how);
}

static struct run *
parse_n(const char *text, size_t len)
{
	struct slice in = slice_make(text, len);
	struct run *whole = run_new(), *other = run_new();
	run_into(whole, in, FEED_WHOLE, 0);
	run_into(other, in, FEED_BYTES, 0);
	run_compare(whole, other, "byte by byte");
	for (size_t k = 1; k < len; k++) {
		run_into(other, in, FEED_SPLIT, k);
		char how[48];
		snprintf(how, sizeof(how), "split at %zu", k);
		run_compare(whole, other, how);
	}
	run_free(other);
	return whole;
}

#define parse(lit) parse_n((lit), sizeof(lit) - 1)

static void
expect_reply(const struct run *r, size_t i, uint16_t code, const char *enhanced, const char *text,
	uint32_t lines)
{
	cr_assert_lt(i, r->nreplies, "no reply %zu", i);
	const struct got_reply *g = &r->replies[i];
	cr_assert_eq(g->code, code, "reply %zu: code %u", i, g->code);
	uint8_t e[SMTP_REPLY_ENHANCED_LEN_MAX];
	size_t elen = smtp_reply_enhanced_format(g->enhanced, e);
	cr_assert(elen == strlen(enhanced) && memcmp(e, enhanced, elen) == 0,
		"reply %zu: enhanced \"%.*s\", want \"%s\"", i, (int)elen, e, enhanced);
	cr_assert(g->text_len == strlen(text)
			&& memcmp(r->text + g->text_off, text, g->text_len) == 0,
		"reply %zu: text \"%.*s\", want \"%s\"", i, (int)g->text_len, r->text + g->text_off,
		text);
	cr_assert_eq(g->line_count, lines);
}

Test(smtp_reply, single_line_reply) /* RFC 5321 4.2 */
{
	struct run *r = parse("220 mx.example ESMTP ready\r\n");
	cr_assert_eq(r->nreplies, 1);
	expect_reply(r, 0, 220, "", "mx.example ESMTP ready", 1);
	cr_assert_eq(r->error, SMTP_REPLY_ERR_NONE);
	run_free(r);
}

Test(smtp_reply, code_alone_is_a_last_line_with_no_text) /* RFC 5321 4.2: [ SP textstring ] */
{
	struct run *r = parse("250\r\n354 \r\n");
	cr_assert_eq(r->nreplies, 2);
	expect_reply(r, 0, 250, "", "", 1);
	expect_reply(r, 1, 354, "", "", 1);
	run_free(r);
}

Test(smtp_reply, multiline_reply_joins_its_lines) /* RFC 5321 4.2.1: "ddd-" then "ddd " */
{
	struct run *r = parse("250-mx.example hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
		"250-\r\n250 8BITMIME\r\n");
	cr_assert_eq(r->nreplies, 1);
	expect_reply(r, 0, 250, "", "mx.example hello PIPELINING SIZE 1000 8BITMIME", 5);
	cr_assert_eq(r->nlines, 5);
	cr_assert(memcmp(r->lines, "mx.example hello|PIPELINING|SIZE 1000||8BITMIME|",
		r->lines_len) == 0, "each line's text comes out as it is");
	run_free(r);
}

Test(smtp_reply, pipelined_replies_come_out_one_by_one) /* RFC 2920 3.1 */
{
	struct run *r = parse("250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n550-5.1.1 no such\r\n"
		"550 5.1.1 user\r\n354 go ahead\r\n");
	cr_assert_eq(r->nreplies, 4);
	expect_reply(r, 0, 250, "2.1.0", "Ok", 1);
	expect_reply(r, 1, 250, "2.1.5", "Ok", 1);
	expect_reply(r, 2, 550, "5.1.1", "no such user", 2);
	expect_reply(r, 3, 354, "", "go ahead", 1);
	run_free(r);
}

Test(smtp_reply, enhanced_code_is_taken_from_the_first_line) /* RFC 2034 3, RFC 3463 2 */
{
	struct run *r = parse("452-4.5.3 too many\r\n452 recipients\r\n550 5.7.1\r\n"
		"250 2.0.0 Ok: queued as 123\r\n451 4.123.456 odd but valid\r\n");
	expect_reply(r, 0, 452, "4.5.3", "too many recipients", 2);
	expect_reply(r, 1, 550, "5.7.1", "", 1);
	expect_reply(r, 2, 250, "2.0.0", "Ok: queued as 123", 1);
	expect_reply(r, 3, 451, "4.123.456", "odd but valid", 1);
	run_free(r);
}

Test(smtp_reply, what_is_not_an_enhanced_code_stays_text) /* RFC 3463 2: class must match */
{
	struct run *r = parse("550 2.1.1 wrong class\r\n550 5.1.1234 too long\r\n"
		"550 5.1 short\r\n550 5.1.1x glued\r\n550 5..1 empty\r\n550 3.1.1 no class 3\r\n");
	cr_assert_eq(r->nreplies, 6);
	expect_reply(r, 0, 550, "", "2.1.1 wrong class", 1);
	expect_reply(r, 1, 550, "", "5.1.1234 too long", 1);
	expect_reply(r, 2, 550, "", "5.1 short", 1);
	expect_reply(r, 3, 550, "", "5.1.1x glued", 1);
	expect_reply(r, 4, 550, "", "5..1 empty", 1);
	expect_reply(r, 5, 550, "", "3.1.1 no class 3", 1);
	run_free(r);
}

Test(smtp_reply, bare_lf_ends_a_line_too) /* RFC 5321 2.3.8: tolerated from servers */
{
	struct run *r = parse("250-a\n250 b\r\n220 c\n");
	cr_assert_eq(r->nreplies, 2);
	expect_reply(r, 0, 250, "", "a b", 2);
	expect_reply(r, 1, 220, "", "c", 1);
	run_free(r);
}

Test(smtp_reply, control_octets_become_question_marks_in_the_kept_text) /* RFC 3464 2.3.6 */
{
	static const char in[] = "550 a\0b\x7f\tc\rd \xc3\xa9\r\n";
	struct run *r = parse_n(in, sizeof(in) - 1);
	cr_assert_eq(r->nreplies, 1);
	expect_reply(r, 0, 550, "", "a?b??c?d \xc3\xa9", 1);
	run_free(r);
}

Test(smtp_reply, differing_codes_in_one_reply_are_an_error) /* RFC 5321 4.2.1 */
{
	struct run *r = parse("250 first\r\n250-a\r\n251 b\r\n250 never\r\n");
	cr_assert_eq(r->nreplies, 1);
	cr_assert_eq(r->error, SMTP_REPLY_ERR_CODE_MISMATCH);
	cr_assert_eq(r->consumed, 18, "nothing of the bad line is consumed");
	run_free(r);
}

Test(smtp_reply, lines_that_are_not_replies_are_an_error) /* RFC 5321 4.2 grammar */
{
	static const char *bad[] = { "hello\r\n", "25\r\n", "2500 x\r\n", "150 x\r\n", "650 x\r\n",
		"250x\r\n", "\r\n", "2a0 x\r\n", " 250 x\r\n", "050 x\r\n", "\n" };
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		struct run *r = parse_n(bad[i], strlen(bad[i]));
		cr_assert_eq(r->nreplies, 0, "\"%s\"", bad[i]);
		cr_assert_eq(r->error, SMTP_REPLY_ERR_SYNTAX, "\"%s\"", bad[i]);
		run_free(r);
	}
}

/* A line of exactly len octets with its CRLF. */
static size_t
long_line(char *buf, size_t len, const char *head)
{
	size_t h = strlen(head);
	memcpy(buf, head, h);
	memset(buf + h, 'x', len - h - 2);
	memcpy(buf + len - 2, "\r\n", 2);
	return len;
}

Test(smtp_reply, a_line_at_the_length_bound_is_read_one_past_it_is_an_error) /* 4.5.3.1.5 */
{
	static char buf[2 * SMTP_REPLY_LINE_LEN_MAX];
	size_t n = long_line(buf, SMTP_REPLY_LINE_LEN_MAX, "250 ");
	struct run *r = parse_n(buf, n);
	cr_assert_eq(r->nreplies, 1);
	cr_assert_eq(r->error, SMTP_REPLY_ERR_NONE);
	run_free(r);
	n = long_line(buf, SMTP_REPLY_LINE_LEN_MAX + 1, "250 ");
	r = parse_n(buf, n);
	cr_assert_eq(r->nreplies, 0);
	cr_assert_eq(r->error, SMTP_REPLY_ERR_LINE_TOO_LONG);
	run_free(r);
}

Test(smtp_reply, an_endless_line_is_an_error_once_the_bound_is_reached) /* RFC 5321 4.5.3.1.5 */
{
	static char buf[SMTP_REPLY_LINE_LEN_MAX];
	memset(buf, 'x', sizeof(buf));
	memcpy(buf, "250 ", 4);
	struct run *r = parse_n(buf, SMTP_REPLY_LINE_LEN_MAX - 1);
	cr_assert_eq(r->error, SMTP_REPLY_ERR_NONE, "one octet short: still waiting");
	run_free(r);
	r = parse_n(buf, SMTP_REPLY_LINE_LEN_MAX);
	cr_assert_eq(r->error, SMTP_REPLY_ERR_LINE_TOO_LONG);
	run_free(r);
}

static size_t
many_lines(char *buf, uint32_t count)
{
	size_t len = 0;
	for (uint32_t i = 0; i < count; i++)
		len += (size_t)sprintf(buf + len, "250%c%u\r\n", i + 1 == count ? ' ' : '-', i);
	return len;
}

Test(smtp_reply, a_reply_at_the_line_bound_is_read_one_past_it_is_an_error) /* RFC 5321 4.2.1 */
{
	static char buf[16 * (SMTP_REPLY_LINES_MAX + 1)];
	size_t n = many_lines(buf, SMTP_REPLY_LINES_MAX);
	struct run *r = parse_n(buf, n);
	cr_assert_eq(r->nreplies, 1);
	cr_assert_eq(r->replies[0].line_count, SMTP_REPLY_LINES_MAX);
	run_free(r);
	n = many_lines(buf, SMTP_REPLY_LINES_MAX + 1);
	r = parse_n(buf, n);
	cr_assert_eq(r->nreplies, 0);
	cr_assert_eq(r->error, SMTP_REPLY_ERR_TOO_MANY_LINES);
	cr_assert_eq(r->nlines, SMTP_REPLY_LINES_MAX, "the lines before the bound came out");
	run_free(r);
}

Test(smtp_reply, kept_text_is_cut_at_its_bound_and_says_so) /* RFC 5321 4.5.3.1.5 */
{
	/* Two lines of 1500 text octets: 3001 with the space, cut at SMTP_REPLY_TEXT_MAX. */
	static char buf[4000];
	size_t n = long_line(buf, 1506, "550-");
	n += long_line(buf + n, 1506, "550 ");
	struct run *r = parse_n(buf, n);
	cr_assert_eq(r->nreplies, 1);
	cr_assert_eq(r->replies[0].text_len, SMTP_REPLY_TEXT_MAX);
	cr_assert(r->replies[0].truncated);
	run_free(r);
	n = long_line(buf, 1000, "550-");
	n += long_line(buf + n, 1000, "550 ");   /* 994 + 1 + 994: fits */
	r = parse_n(buf, n);
	cr_assert_eq(r->replies[0].text_len, 1989);
	cr_assert_not(r->replies[0].truncated);
	run_free(r);
}

Test(smtp_reply, a_partial_line_is_not_consumed) /* RFC 5321 4.2 */
{
	struct smtp_reply_parser p;
	smtp_reply_init(&p);
	size_t used = 99;
	struct smtp_reply_line line;
	cr_assert_eq(
		smtp_reply_feed(&p, SLICE_LIT("250-a\r\n250 b"), &used, &line), SMTP_REPLY_LINE);
	cr_assert_eq(used, 7);
	cr_assert_eq(smtp_reply_feed(&p, SLICE_LIT("250 b"), &used, &line), SMTP_REPLY_MORE);
	cr_assert_eq(used, 0);
	cr_assert_eq(smtp_reply_feed(&p, SLICE_LIT("250 b\r"), &used, &line), SMTP_REPLY_MORE);
	cr_assert_eq(smtp_reply_feed(&p, SLICE_LIT("250 b\r\n"), &used, &line), SMTP_REPLY_DONE);
	cr_assert_eq(used, 7);
	struct smtp_reply rep = smtp_reply_get(&p);
	cr_assert(slice_eq(rep.text, SLICE_LIT("a b")));
}

Test(smtp_reply, enhanced_codes_format_and_parse_back) /* RFC 3463 2 */
{
	static const char *codes[] = { "2.0.0", "4.4.2", "5.1.1", "5.7.26", "4.123.456", "5.0.10" };
	for (size_t i = 0; i < ARRAY_LEN(codes); i++) {
		struct smtp_reply_enhanced e;
		struct slice c = slice_make(codes[i], strlen(codes[i]));
		cr_assert_eq(smtp_reply_enhanced_parse(c, &e), c.len);
		uint8_t buf[SMTP_REPLY_ENHANCED_LEN_MAX];
		size_t n = smtp_reply_enhanced_format(e, buf);
		cr_assert(slice_eq(slice_make(buf, n), c), "%s", codes[i]);
	}
	uint8_t buf[SMTP_REPLY_ENHANCED_LEN_MAX];
	cr_assert_eq(smtp_reply_enhanced_format((struct smtp_reply_enhanced){ .cls = 0 }, buf), 0);
}

Test(smtp_reply, random_bytes_never_break_the_parser) /* RFC 5321 4.2 */
{
	static char buf[4096];
	static const char alphabet[] = "2505-4 \r\n.x\0";
	uint32_t seed = 3;
	for (uint32_t round = 0; round < 300; round++) {
		size_t len = (size_t)(rand_r(&seed) % 200);
		for (size_t i = 0; i < len; i++)
			buf[i] = alphabet[rand_r(&seed) % (int)(sizeof(alphabet) - 1)];
		run_free(parse_n(buf, len));   /* checks of every event and every split inside */
	}
}
