/* tests/unit/smtp_client_test.c - the RFC 5321 client state machine, as transcripts.
 *
 * A test gives what the server says (all its replies, in order, as one byte stream) and the
 * transactions the engine hands over at each READY (then QUIT). transcript() feeds the server
 * bytes whole, byte by byte and split in two at every offset, re-offering unconsumed bytes as
 * the engine does, and acts on the actions as the engine would: a READY gets the next
 * transaction, a BODY gets the body in pieces, a STARTTLS gets smtp_client_tls_done(). Every run
 * must send the same bytes, give the same results and the same other actions.
 *
 * Every run also checks: consumed <= offered; nothing after CLOSE; every recipient of every
 * transaction resolved exactly once, by a RCPT result or by the TXN/CONNECTION result that
 * counts it; each result's enhanced code of its own class; every command line sent ends with
 * CRLF and holds no other CR or LF. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/smtp_client.h"

#define RUN_SENT_MAX (1u << 20)
#define RUN_RESULTS_MAX 2048u
#define RUN_TEXT_MAX (1u << 20)
#define RUN_TYPES_MAX 256u
#define RUN_TXNS_MAX 8u
#define HELO_NAME "client.test"

/* What the server says in most tests. */
#define GREET "220 mx.test ESMTP\r\n"
#define EHLO_ALL "250-mx.test hello\r\n250-PIPELINING\r\n250-SIZE 1000000\r\n250-8BITMIME\r\n" \
	"250-SMTPUTF8\r\n250-DSN\r\n250-CHUNKING\r\n250 ENHANCEDSTATUSCODES\r\n"
#define EHLO_NONE "250 mx.test\r\n"
#define OK_MAIL "250 2.1.0 Ok\r\n"
#define OK_RCPT "250 2.1.5 Ok\r\n"
#define GO_AHEAD "354 End data with <CR><LF>.<CR><LF>\r\n"
#define QUEUED "250 2.0.0 Ok: queued as 1234\r\n"
#define BYE "221 2.0.0 Bye\r\n"
/* What the client says. */
#define C_EHLO "EHLO " HELO_NAME "\r\n"
#define C_HELO "HELO " HELO_NAME "\r\n"
#define C_QUIT "QUIT\r\n"

struct got_result {
	struct smtp_client_result r;
	size_t text_off;
	size_t txn;                 /* the transaction it belongs to */
};

struct run {
	uint8_t *sent;
	size_t sent_len;
	struct got_result results[RUN_RESULTS_MAX];
	size_t nresults;
	char *texts;
	size_t texts_len;
	enum smtp_client_action_type types[RUN_TYPES_MAX];
	size_t ntypes;
	size_t txn_sends[RUN_TXNS_MAX];   /* SEND actions of each smtp_client_transaction call */
	size_t ntxns;                     /* transactions started */
	bool txn_open;
	uint8_t resolved[RUN_TXNS_MAX][SMTP_CLIENT_RCPT_COUNT_MAX];
	uint32_t body_calls;
	bool in_body;                     /* inside react_body: SENDs are body, not commands */
	bool closed;
	struct smtp_client *c;
};

/* The test's engine: configuration, transactions and reactions. */
struct txn_spec {
	struct smtp_client_txn t;
	struct slice body;
};

static struct smtp_client_config test_cfg;
static struct txn_spec test_txns[RUN_TXNS_MAX];
static size_t test_ntxns;
static size_t test_piece;               /* body piece size */
static int test_tls_result;
static struct smtp_client_rcpt test_rcpts[RUN_TXNS_MAX][SMTP_CLIENT_RCPT_COUNT_MAX];
enum test_end { END_NONE, END_TIMEOUT, END_LOST, END_QUIT };
static enum test_end test_end;

static void
setup_defaults(void)
{
	test_cfg = (struct smtp_client_config){ .helo_name = SLICE_LIT(HELO_NAME) };
	test_ntxns = 0;
	test_piece = 7;
	test_tls_result = 0;
	test_end = END_NONE;
}

/* Adds a transaction from "s@a.test" to the given recipients (NULL ends them). */
static struct smtp_client_txn *
add_txn(const char *body, ...)
{
	cr_assert_lt(test_ntxns, RUN_TXNS_MAX);
	size_t k = test_ntxns++;
	struct txn_spec *sp = &test_txns[k];
	va_list ap;
	va_start(ap, body);
	uint32_t n = 0;
	const char *rcpt;
	while ((rcpt = va_arg(ap, const char *)) != NULL)
		test_rcpts[k][n++]
			= (struct smtp_client_rcpt){ .path = slice_make(rcpt, strlen(rcpt)) };
	va_end(ap);
	sp->body = slice_make(body, strlen(body));
	sp->t = (struct smtp_client_txn){ .mail_from = SLICE_LIT("s@a.test"),
		.rcpts = test_rcpts[k],
		.rcpt_count = n,
		.body_size = sp->body.len };
	return &sp->t;
}

#define BODY "Subject: t\r\n\r\nhi\r\n"

/* ---- the engine-like driver ---- */

static void record(struct run *r, const struct smtp_client_actions *acts, bool from_txn);

static void
react_ready(struct run *r)
{
	struct smtp_client_actions acts = { .count = 0 };
	if (r->ntxns < test_ntxns) {
		cr_assert_not(r->txn_open, "READY while a transaction is open");
		size_t k = r->ntxns++;
		r->txn_open = true;
		smtp_client_transaction(r->c, &test_txns[k].t, &acts);
		record(r, &acts, true);
		return;
	}
	smtp_client_quit(r->c, &acts);
	record(r, &acts, false);
}

static void
react_body(struct run *r)
{
	struct slice body = test_txns[r->ntxns - 1].body;
	size_t off = 0;
	do {
		size_t n = body.len - off < test_piece ? body.len - off : test_piece;
		bool last = off + n == body.len;
		struct smtp_client_actions acts = { .count = 0 };
		size_t used = smtp_client_body(r->c, slice_sub(body, off, n), last, &acts);
		r->body_calls++;
		cr_assert_leq(used, n);
		cr_assert(used > 0 || n == 0, "a body call takes something");
		off += used;
		r->in_body = true;
		record(r, &acts, false);
		r->in_body = false;
		if (last && used == n)
			break;
	} while (!r->closed);
}

static void
resolve(struct run *r, const struct smtp_client_result *res)
{
	size_t k = r->ntxns - 1;
	if (res->scope == SMTP_CLIENT_SCOPE_RCPT) {
		cr_assert(r->txn_open);
		cr_assert_eq(res->rcpt_count, 1);
		cr_assert_lt(res->rcpt, test_txns[k].t.rcpt_count);
		cr_assert_eq(
			r->resolved[k][res->rcpt], 0, "recipient %u resolved twice", res->rcpt);
		r->resolved[k][res->rcpt] = 1;
		return;
	}
	if (!r->txn_open) {
		cr_assert_eq(res->rcpt_count, 0, "a result outside a transaction resolves nobody");
		cr_assert_neq(
			res->scope, SMTP_CLIENT_SCOPE_TXN, "a TXN result outside a transaction");
		return;
	}
	uint32_t left = 0;
	for (uint32_t i = 0; i < test_txns[k].t.rcpt_count; i++) {
		left += r->resolved[k][i] == 0;
		r->resolved[k][i] = 1;
	}
	cr_assert_eq(res->rcpt_count, left, "the result counts the unresolved recipients");
	r->txn_open = false;
}

static void
check_commands(struct slice s)
{
	cr_assert_gt(s.len, 0);
	for (size_t i = 0; i < s.len; i++) {
		if (s.ptr[i] == '\r')
			cr_assert(i + 1 < s.len && s.ptr[i + 1] == '\n',
				"a command line ends with CRLF");
		if (s.ptr[i] == '\n')
			cr_assert(i > 0 && s.ptr[i - 1] == '\r', "no bare LF in commands");
	}
	cr_assert(s.ptr[s.len - 1] == '\n');
}

static void
record_result(struct run *r, const struct smtp_client_result *res)
{
	cr_assert_lt(r->nresults, RUN_RESULTS_MAX);
	cr_assert_eq(res->enhanced.cls, res->code / 100, "enhanced code of the reply's class");
	cr_assert(res->code >= 200 && res->code <= 599);
	cr_assert_leq(r->texts_len + res->text.len, RUN_TEXT_MAX);
	struct got_result *g = &r->results[r->nresults++];
	g->r = *res;
	g->text_off = r->texts_len;
	g->txn = r->ntxns - 1;
	memcpy(r->texts + r->texts_len, res->text.ptr, res->text.len);
	r->texts_len += res->text.len;
	resolve(r, res);
}

static void
record(struct run *r, const struct smtp_client_actions *acts, bool from_txn)
{
	enum smtp_client_action_type react = SMTP_CLIENT_ACTION_SEND;
	cr_assert_leq(acts->count, SMTP_CLIENT_ACTIONS_MAX);
	size_t sends = 0;
	for (uint32_t i = 0; i < acts->count; i++) {
		const struct smtp_client_action *a = &acts->items[i];
		cr_assert_not(r->closed, "an action after CLOSE");
		switch (a->type) {
		case SMTP_CLIENT_ACTION_SEND:
			sends++;
			if (!r->in_body)
				check_commands(a->data);
			cr_assert_leq(r->sent_len + a->data.len, RUN_SENT_MAX);
			memcpy(r->sent + r->sent_len, a->data.ptr, a->data.len);
			r->sent_len += a->data.len;
			break;
		case SMTP_CLIENT_ACTION_RESULT:
			record_result(r, &a->result);
			break;
		default:
			cr_assert_lt(r->ntypes, RUN_TYPES_MAX);
			r->types[r->ntypes++] = a->type;
			if (a->type == SMTP_CLIENT_ACTION_CLOSE)
				r->closed = true;
			else
				react = a->type;
			cr_assert(a->type == SMTP_CLIENT_ACTION_CLOSE || i + 1 == acts->count,
				"READY, BODY and STARTTLS end a call's actions");
			break;
		}
	}
	if (from_txn)
		r->txn_sends[r->ntxns - 1] = sends;
	/* Every slice of acts was copied above: reacting may now reuse the client's buffers. */
	if (react == SMTP_CLIENT_ACTION_READY)
		react_ready(r);
	else if (react == SMTP_CLIENT_ACTION_BODY)
		react_body(r);
	else if (react == SMTP_CLIENT_ACTION_STARTTLS) {
		struct smtp_client_actions next = { .count = 0 };
		smtp_client_tls_done(r->c, test_tls_result, &next);
		record(r, &next, false);
	}
}

static void
pump(struct run *r, uint8_t *buf, size_t *len)
{
	for (uint32_t guard = 0; guard < 10000000; guard++) {
		struct smtp_client_actions acts = { .count = 0 };
		size_t n = smtp_client_feed(r->c, slice_make(buf, *len), &acts);
		cr_assert_leq(n, *len);
		if (r->closed)
			cr_assert_eq(n, 0, "nothing is consumed after CLOSE");
		memmove(buf, buf + n, *len - n);
		*len -= n;
		record(r, &acts, false);
		if (n == 0 && acts.count == 0)
			return;
	}
	cr_assert_fail("no end");
}

enum feed_mode { FEED_WHOLE, FEED_BYTES, FEED_SPLIT };

static struct run *
run_new(void)
{
	struct run *r = calloc(1, sizeof(*r));
	cr_assert_not_null(r);
	r->sent = malloc(RUN_SENT_MAX);
	r->texts = malloc(RUN_TEXT_MAX);
	r->c = malloc(sizeof(*r->c));
	cr_assert(r->sent && r->texts && r->c);
	return r;
}

static void
run_free(struct run *r)
{
	free(r->sent);
	free(r->texts);
	free(r->c);
	free(r);
}

static void
run_end(struct run *r)
{
	struct smtp_client_actions acts = { .count = 0 };
	if (test_end == END_TIMEOUT)
		smtp_client_timeout(r->c, &acts);
	else if (test_end == END_LOST)
		smtp_client_lost(r->c, -ECONNRESET, &acts);
	else if (test_end == END_QUIT)
		smtp_client_quit(r->c, &acts);
	record(r, &acts, false);
	if (r->closed)
		cr_assert_not(r->txn_open, "a closed connection leaves no recipient unresolved");
}

static void
run_into(struct run *r, struct slice in, enum feed_mode mode, size_t split)
{
	r->sent_len = r->nresults = r->texts_len = r->ntypes = r->ntxns = 0;
	r->body_calls = 0;
	r->txn_open = r->closed = r->in_body = false;
	memset(r->resolved, 0, sizeof(r->resolved));
	memset(r->txn_sends, 0, sizeof(r->txn_sends));
	memset(r->c, 0xa5, sizeof(*r->c));   /* catches reads of fields init did not set */
	smtp_client_init(r->c, &test_cfg);
	uint8_t *buf = malloc(in.len + 1);
	size_t len = 0, pos = 0;
	while (pos < in.len && !r->closed) {
		size_t end = mode == FEED_WHOLE ? in.len : mode == FEED_BYTES ? pos + 1
			: (pos < split ? split : in.len);
		memcpy(buf + len, in.ptr + pos, end - pos);
		len += end - pos;
		pos = end;
		pump(r, buf, &len);
	}
	free(buf);
	run_end(r);
}

static void
run_compare(const struct run *a, const struct run *b, const char *how)
{
	cr_assert_eq(a->sent_len, b->sent_len, "%s: sent lengths differ", how);
	cr_assert(memcmp(a->sent, b->sent, a->sent_len) == 0, "%s: sent bytes differ", how);
	cr_assert_eq(a->nresults, b->nresults, "%s: result counts differ", how);
	for (size_t i = 0; i < a->nresults; i++) {
		const struct smtp_client_result *x = &a->results[i].r, *y = &b->results[i].r;
		cr_assert(x->scope == y->scope && x->outcome == y->outcome && x->stage == y->stage
				&& x->rcpt == y->rcpt && x->rcpt_count == y->rcpt_count
				&& x->code == y->code && x->enhanced.subject == y->enhanced.subject
				&& x->enhanced.detail == y->enhanced.detail && x->local == y->local
				&& x->text.len == y->text.len,
			"%s: result %zu differs", how, i);
	}
	cr_assert(memcmp(a->texts, b->texts, a->texts_len) == 0, "%s: result texts differ", how);
	cr_assert_eq(a->ntypes, b->ntypes, "%s: action counts differ", how);
	cr_assert(memcmp(a->types, b->types, a->ntypes * sizeof(a->types[0])) == 0,
		"%s: action sequences differ", how);
}

/* Feeds `server` whole, byte by byte and split at every offset; returns the whole run. */
static struct run *
transcript_n(const char *server, size_t len)
{
	struct slice in = slice_make(server, len);
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

#define transcript(lit) transcript_n((lit), sizeof(lit) - 1)

static void
expect_sent_n(const struct run *r, const char *want, size_t len)
{
	cr_assert(r->sent_len == len && memcmp(r->sent, want, len) == 0,
		"sent:\n%.*s\nwanted:\n%s", (int)r->sent_len, r->sent, want);
}

#define expect_sent(r, lit) expect_sent_n((r), (lit), sizeof(lit) - 1)

static bool
sent_has(const struct run *r, const char *needle)
{
	return memmem(r->sent, r->sent_len, needle, strlen(needle)) != NULL;
}

/* Result i: scope, outcome, code, enhanced code ("" for class.0.0), recipient, count, local. */
static void
expect_result(const struct run *r, size_t i, enum smtp_client_scope scope,
	enum smtp_client_outcome outcome, uint16_t code, const char *enhanced, uint32_t rcpt,
	uint32_t count, bool local)
{
	cr_assert_lt(i, r->nresults, "no result %zu (only %zu)", i, r->nresults);
	const struct smtp_client_result *g = &r->results[i].r;
	cr_assert_eq(g->scope, scope, "result %zu: scope %d", i, g->scope);
	cr_assert_eq(g->outcome, outcome, "result %zu: outcome %d", i, g->outcome);
	cr_assert_eq(g->code, code, "result %zu: code %u", i, g->code);
	uint8_t e[SMTP_REPLY_ENHANCED_LEN_MAX];
	size_t elen = smtp_reply_enhanced_format(g->enhanced, e);
	cr_assert(elen == strlen(enhanced) && memcmp(e, enhanced, elen) == 0,
		"result %zu: enhanced %.*s", i, (int)elen, e);
	if (scope == SMTP_CLIENT_SCOPE_RCPT)
		cr_assert_eq(g->rcpt, rcpt, "result %zu: recipient %u", i, g->rcpt);
	cr_assert_eq(g->rcpt_count, count, "result %zu: count %u", i, g->rcpt_count);
	cr_assert_eq(g->local, local, "result %zu: local", i);
}

static void
expect_text(const struct run *r, size_t i, const char *text)
{
	const struct got_result *g = &r->results[i];
	cr_assert(g->r.text.len == strlen(text) && memcmp(r->texts + g->text_off, text,
		g->r.text.len) == 0, "result %zu: text \"%.*s\"", i, (int)g->r.text.len,
		r->texts + g->text_off);
}

static void
expect_types(const struct run *r, ...)
{
	va_list ap;
	va_start(ap, r);
	size_t i = 0;
	int t;
	while ((t = va_arg(ap, int)) >= 0) {
		cr_assert_lt(i, r->ntypes, "fewer actions than expected");
		cr_assert_eq((int)r->types[i], t, "action %zu: want %d, got %d", i, t, r->types[i]);
		i++;
	}
	va_end(ap);
	cr_assert_eq(i, r->ntypes, "want %zu non-send actions, got %zu", i, r->ntypes);
}

#define READY SMTP_CLIENT_ACTION_READY
#define BODY_ SMTP_CLIENT_ACTION_BODY
#define TLS SMTP_CLIENT_ACTION_STARTTLS
#define CLOSE SMTP_CLIENT_ACTION_CLOSE
#define S_RCPT SMTP_CLIENT_SCOPE_RCPT
#define S_TXN SMTP_CLIENT_SCOPE_TXN
#define S_CONN SMTP_CLIENT_SCOPE_CONNECTION
#define DELIVERED SMTP_CLIENT_DELIVERED
#define DEFERRED SMTP_CLIENT_DEFERRED
#define BOUNCED SMTP_CLIENT_BOUNCED

TestSuite(smtp_client, .init = setup_defaults);

/* ---- the basic session ---- */

Test(smtp_client, one_message_without_extensions) /* RFC 5321 3.3, appendix D.1 */
{
	add_txn(BODY, "r@b.test", NULL);
	struct run *r = transcript(GREET EHLO_NONE OK_MAIL OK_RCPT GO_AHEAD QUEUED BYE);
	expect_sent(r, C_EHLO "MAIL FROM:<s@a.test>\r\n" "RCPT TO:<r@b.test>\r\n" "DATA\r\n"
		BODY ".\r\n" C_QUIT);
	cr_assert_eq(r->nresults, 1);
	expect_result(r, 0, S_TXN, DELIVERED, 250, "2.0.0", 0, 1, false);
	expect_text(r, 0, "Ok: queued as 1234");
	cr_assert_eq(r->results[0].r.stage, SMTP_CLIENT_STAGE_END);
	expect_types(r, READY, BODY_, READY, CLOSE, -1);
	run_free(r);
}

Test(smtp_client, multiline_greeting_and_ehlo_answer) /* RFC 5321 4.2.1 */
{
	add_txn(BODY, "r@b.test", NULL);
	struct run *r = transcript("220-mx.test ESMTP\r\n220-no UCE\r\n220 here\r\n" EHLO_ALL
		OK_MAIL OK_RCPT GO_AHEAD QUEUED BYE);
	expect_result(r, 0, S_TXN, DELIVERED, 250, "2.0.0", 0, 1, false);
	cr_assert_eq(smtp_client_extensions(r->c) & SMTP_CLIENT_EXT_PIPELINING,
		SMTP_CLIENT_EXT_PIPELINING);
	run_free(r);
}

Test(smtp_client, the_session_waits_for_the_greeting_and_sends_nothing_before) /* RFC 5321 3.1 */
{
	struct smtp_client c;
	smtp_client_init(&c, &test_cfg);
	struct smtp_client_actions acts = { .count = 0 };
	cr_assert_eq(smtp_client_feed(&c, SLICE_LIT("220 partial"), &acts), 0);
	cr_assert_eq(acts.count, 0);
	cr_assert_eq(smtp_client_timeout_ms(&c), SMTP_CLIENT_TIMEOUT_GREETING_MS);
}

/* ---- greeting and EHLO/HELO ---- */

Test(smtp_client, greeting_554_fails_the_connection_and_quits) /* RFC 5321 3.1 */
{
	add_txn(BODY, "r@b.test", NULL);
	struct run *r = transcript("554 5.7.1 go away\r\n" BYE);
	expect_sent(r, C_QUIT);
	cr_assert_eq(r->nresults, 1);
	expect_result(r, 0, S_CONN, BOUNCED, 554, "5.7.1", 0, 0, false);
	cr_assert_eq(r->results[0].r.stage, SMTP_CLIENT_STAGE_GREETING);
	expect_types(r, CLOSE, -1);
	run_free(r);
}

Test(smtp_client, greeting_4xx_fails_the_connection_for_the_next_mx) /* RFC 5321 3.1, 5.1 */
{
	struct run *r = transcript("450 busy\r\n" BYE);
	expect_sent(r, C_QUIT);
	expect_result(r, 0, S_CONN, DEFERRED, 450, "4.0.0", 0, 0, false);
	expect_types(r, CLOSE, -1);
	run_free(r);
}

Test(smtp_client, greeting_421_closes_without_quit) /* RFC 5321 3.8 */
{
	struct run *r = transcript("421 4.3.2 shutting down\r\n");
	expect_sent(r, "");
	expect_result(r, 0, S_CONN, DEFERRED, 421, "4.3.2", 0, 0, false);
	expect_types(r, CLOSE, -1);
	run_free(r);
}

Test(smtp_client, ehlo_5xx_falls_back_to_helo_without_extensions) /* RFC 5321 3.2, 4.1.4 */
{
	struct smtp_client_txn *t = add_txn(BODY, "r@b.test", NULL);
	t->needs_8bitmime = false;
	t->dsn_ret = SMTP_DSN_RET_HDRS;
	test_rcpts[0][0].notify = SMTP_DSN_NOTIFY_FAILURE;
	struct run *r = transcript(GREET "502 5.5.1 what?\r\n" "250 mx.test\r\n" OK_MAIL OK_RCPT
		GO_AHEAD QUEUED BYE);
	expect_sent(r, C_EHLO C_HELO "MAIL FROM:<s@a.test>\r\n" "RCPT TO:<r@b.test>\r\n"
		"DATA\r\n" BODY ".\r\n" C_QUIT);
	cr_assert_eq(smtp_client_extensions(r->c), 0);
	expect_result(r, 0, S_TXN, DELIVERED, 250, "2.0.0", 0, 1, false);
	run_free(r);
}

Test(smtp_client, ehlo_4xx_fails_the_connection) /* RFC 5321 4.1.4: only 5xx means "no EHLO" */
{
	struct run *r = transcript(GREET "451 4.3.0 try later\r\n" BYE);
	expect_sent(r, C_EHLO C_QUIT);
	expect_result(r, 0, S_CONN, DEFERRED, 451, "4.3.0", 0, 0, false);
	cr_assert_eq(r->results[0].r.stage, SMTP_CLIENT_STAGE_EHLO);
	run_free(r);
}

Test(smtp_client, helo_refused_fails_the_connection) /* RFC 5321 4.1.1.1 */
{
	struct run *r = transcript(GREET "500 no\r\n" "550 5.7.1 not you\r\n" BYE);
	expect_sent(r, C_EHLO C_HELO C_QUIT);
	expect_result(r, 0, S_CONN, BOUNCED, 550, "5.7.1", 0, 0, false);
	cr_assert_eq(r->results[0].r.stage, SMTP_CLIENT_STAGE_HELO);
	run_free(r);
}

/* The MAIL line a transaction gets from a server offering `ehlo_lines`. */
static void
expect_mail_line(const char *ehlo_lines, const char *want_mail, uint32_t want_ext)
{
	char server[1024];
	snprintf(server, sizeof(server), GREET "%s" OK_MAIL OK_RCPT GO_AHEAD QUEUED BYE,
		ehlo_lines);
	struct run *r = transcript_n(server, strlen(server));
	cr_assert_eq(smtp_client_extensions(r->c), want_ext, "%s: ext %x", ehlo_lines,
		smtp_client_extensions(r->c));
	cr_assert(sent_has(r, want_mail), "%s: sent %.*s", ehlo_lines, (int)r->sent_len, r->sent);
	expect_result(r, 0, S_TXN, DELIVERED, 250, "2.0.0", 0, 1, false);
	run_free(r);
}

Test(smtp_client, each_ehlo_keyword_is_seen_on_its_own) /* RFC 5321 4.1.1.1, 2.2.2 */
{
	static const struct {
		const char *line;
		uint32_t bit;
	} kws[] = {
		{ "PIPELINING", SMTP_CLIENT_EXT_PIPELINING }, { "SIZE 500", SMTP_CLIENT_EXT_SIZE },
		{ "8BITMIME", SMTP_CLIENT_EXT_8BITMIME }, { "SMTPUTF8", SMTP_CLIENT_EXT_SMTPUTF8 },
		{ "DSN", SMTP_CLIENT_EXT_DSN }, { "CHUNKING", SMTP_CLIENT_EXT_CHUNKING },
		{ "STARTTLS", SMTP_CLIENT_EXT_STARTTLS },
		{ "ENHANCEDSTATUSCODES", SMTP_CLIENT_EXT_ENHANCEDSTATUSCODES },
		{ "pipelining", SMTP_CLIENT_EXT_PIPELINING },   /* keywords are case-insensitive */
		{ "AUTH PLAIN LOGIN", 0 }, { "X-UNKNOWN", 0 }, { "SIZEX", 0 },
	};
	for (size_t i = 0; i < ARRAY_LEN(kws); i++) {
		setup_defaults();
		add_txn(BODY, "r@b.test", NULL);
		char ehlo[128];
		snprintf(ehlo, sizeof(ehlo), "250-mx.test\r\n250 %s\r\n", kws[i].line);
		const char *mail = kws[i].bit == SMTP_CLIENT_EXT_SIZE
			? "MAIL FROM:<s@a.test> SIZE=18\r\n" : "MAIL FROM:<s@a.test>\r\n";
		expect_mail_line(ehlo, mail, kws[i].bit);
	}
}

Test(smtp_client, keywords_in_a_refused_ehlo_answer_are_not_learnt) /* RFC 5321 4.1.1.1 */
{
	add_txn(BODY, "r@b.test", NULL);
	struct run *r = transcript(GREET "550-mx.test\r\n550 PIPELINING\r\n" "250 mx.test\r\n"
		OK_MAIL OK_RCPT GO_AHEAD QUEUED BYE);
	cr_assert_eq(smtp_client_extensions(r->c), 0);
	run_free(r);
}

Test(smtp_client, a_long_ehlo_answer_at_the_line_bound_is_read) /* smtp_reply limits */
{
	static char server[16 * SMTP_REPLY_LINES_MAX + 256];
	size_t n = (size_t)sprintf(server, GREET);
	for (uint32_t i = 0; i + 1 < SMTP_REPLY_LINES_MAX; i++)
		n += (size_t)sprintf(server + n, "250-X-KW%u\r\n", i);
	n += (size_t)sprintf(server + n, "250 PIPELINING\r\n" BYE);
	struct run *r = transcript_n(server, n);
	cr_assert_eq(smtp_client_extensions(r->c), SMTP_CLIENT_EXT_PIPELINING);
	expect_sent(r, C_EHLO C_QUIT);
	cr_assert_eq(r->nresults, 0);
	run_free(r);
}

/* ---- PIPELINING ---- */

Test(smtp_client, pipelining_sends_mail_every_rcpt_and_data_in_one_write) /* RFC 2920 3.1 */
{
	add_txn(BODY, "r1@b.test", "r2@b.test", "r3@c.test", NULL);
	struct run *r = transcript(GREET EHLO_ALL OK_MAIL OK_RCPT OK_RCPT OK_RCPT GO_AHEAD QUEUED
		BYE);
	expect_sent(r, C_EHLO "MAIL FROM:<s@a.test> SIZE=18\r\n" "RCPT TO:<r1@b.test>\r\n"
		"RCPT TO:<r2@b.test>\r\n" "RCPT TO:<r3@c.test>\r\n" "DATA\r\n" BODY ".\r\n" C_QUIT);
	cr_assert_eq(r->txn_sends[0], 1, "one SEND: one write for the whole group");
	cr_assert_eq(r->nresults, 1);
	expect_result(r, 0, S_TXN, DELIVERED, 250, "2.0.0", 0, 3, false);
	run_free(r);
}

Test(smtp_client, without_pipelining_each_command_waits_for_its_reply) /* RFC 5321 3.3 */
{
	add_txn(BODY, "r1@b.test", "r2@b.test", NULL);
	struct run *r = transcript(GREET EHLO_NONE OK_MAIL OK_RCPT OK_RCPT GO_AHEAD QUEUED BYE);
	cr_assert_eq(r->txn_sends[0], 1, "only MAIL goes before its reply");
	expect_sent(r, C_EHLO "MAIL FROM:<s@a.test>\r\n" "RCPT TO:<r1@b.test>\r\n"
		"RCPT TO:<r2@b.test>\r\n" "DATA\r\n" BODY ".\r\n" C_QUIT);
	run_free(r);
}

Test(smtp_client, mixed_recipient_results_resolve_each_recipient_once) /* RFC 5321 3.3, 2920 */
{
	add_txn(BODY, "ok@b.test", "gone@b.test", "later@b.test", "many@b.test", NULL);
	struct run *r = transcript(GREET EHLO_ALL OK_MAIL OK_RCPT
		"550-5.1.1 <gone@b.test>: no such user\r\n550 5.1.1 here\r\n"
		"451 4.3.0 try later\r\n" "552 5.5.3 too many recipients\r\n" GO_AHEAD QUEUED BYE);
	cr_assert_eq(r->nresults, 4);
	expect_result(r, 0, S_RCPT, BOUNCED, 550, "5.1.1", 1, 1, false);
	expect_text(r, 0, "<gone@b.test>: no such user here");
	expect_result(r, 1, S_RCPT, DEFERRED, 451, "4.3.0", 2, 1, false);
	/* RFC 5321 4.5.3.1.10: 552 to RCPT is "too many recipients", to be retried */
	expect_result(r, 2, S_RCPT, DEFERRED, 552, "5.5.3", 3, 1, false);
	expect_result(r, 3, S_TXN, DELIVERED, 250, "2.0.0", 0, 1, false);
	cr_assert(smtp_client_rcpt_accepted(r->c, 0));
	cr_assert_not(smtp_client_rcpt_accepted(r->c, 1));
	run_free(r);
}

Test(smtp_client, every_recipient_refused_and_data_refused_then_rset) /* RFC 2920 3.1 */
{
	add_txn(BODY, "a@b.test", "c@b.test", NULL);
	add_txn(BODY, "d@b.test", NULL);
	struct run *r = transcript(GREET EHLO_ALL OK_MAIL "550 5.1.1 no\r\n" "550 5.1.1 no\r\n"
		"554 5.5.1 no valid recipients\r\n" "250 2.0.0 reset\r\n"
		OK_MAIL OK_RCPT GO_AHEAD QUEUED BYE);
	cr_assert_eq(r->nresults, 4);
	expect_result(r, 0, S_RCPT, BOUNCED, 550, "5.1.1", 0, 1, false);
	expect_result(r, 1, S_RCPT, BOUNCED, 550, "5.1.1", 1, 1, false);
	expect_result(r, 2, S_TXN, BOUNCED, 554, "5.5.0", 0, 0, true);
	expect_text(r, 2, "no recipient was accepted");
	expect_result(r, 3, S_TXN, DELIVERED, 250, "2.0.0", 0, 1, false);
	cr_assert_eq(r->results[3].txn, 1);
	cr_assert(sent_has(r, "DATA\r\nRSET\r\nMAIL FROM:<s@a.test> SIZE=18\r\nRCPT TO:<d@b.test>"),
		"%.*s", (int)r->sent_len, r->sent);
	cr_assert_not(sent_has(r, BODY BODY), "the first body was never sent");
	run_free(r);
}

Test(smtp_client, data_354_with_no_recipient_left_gets_a_lone_dot) /* RFC 2920 3.1 */
{
	add_txn(BODY, "a@b.test", NULL);
	struct run *r = transcript(GREET EHLO_ALL OK_MAIL "550 5.1.1 no\r\n" GO_AHEAD
		"554 5.5.1 no valid recipients\r\n" "250 2.0.0 reset\r\n" BYE);
	expect_sent(r, C_EHLO "MAIL FROM:<s@a.test> SIZE=18\r\nRCPT TO:<a@b.test>\r\nDATA\r\n"
		".\r\n" C_QUIT);
	cr_assert_eq(r->nresults, 2);
	expect_result(r, 0, S_RCPT, BOUNCED, 550, "5.1.1", 0, 1, false);
	expect_result(r, 1, S_TXN, BOUNCED, 554, "5.5.0", 0, 0, true);
	expect_types(r, READY, READY, CLOSE, -1);
	run_free(r);
}

Test(smtp_client, mail_refused_pipelined_drains_the_group_and_stays_usable) /* RFC 2920 3.1 */
{
	add_txn(BODY, "a@b.test", "c@b.test", NULL);
	add_txn(BODY, "d@b.test", NULL);
	struct run *r = transcript(GREET EHLO_ALL "550 5.7.1 sender rejected\r\n"
		"503 5.5.1 need MAIL\r\n" "503 5.5.1 need MAIL\r\n" "503 5.5.1 need MAIL\r\n"
		OK_MAIL OK_RCPT GO_AHEAD QUEUED BYE);
	cr_assert_eq(r->nresults, 2);
	expect_result(r, 0, S_TXN, BOUNCED, 550, "5.7.1", 0, 2, false);
	cr_assert_eq(r->results[0].r.stage, SMTP_CLIENT_STAGE_MAIL);
	expect_result(r, 1, S_TXN, DELIVERED, 250, "2.0.0", 0, 1, false);
	cr_assert_not(sent_has(r, "RSET"), "MAIL failed: nothing to reset");
	run_free(r);
}

Test(smtp_client, mail_refused_without_pipelining_sends_no_rcpt) /* RFC 5321 3.3 */
{
	add_txn(BODY, "a@b.test", NULL);
	struct run *r = transcript(GREET EHLO_NONE "451 4.7.1 greylisted\r\n" BYE);
	expect_sent(r, C_EHLO "MAIL FROM:<s@a.test>\r\n" C_QUIT);
	expect_result(r, 0, S_TXN, DEFERRED, 451, "4.7.1", 0, 1, false);
	run_free(r);
}

Test(smtp_client, null_sender_is_sent_as_empty_path) /* RFC 5321 4.5.5 */
{
	struct smtp_client_txn *t = add_txn(BODY, "r@b.test", NULL);
	t->mail_from = SLICE_LIT("");
	struct run *r = transcript(GREET EHLO_NONE OK_MAIL OK_RCPT GO_AHEAD QUEUED BYE);
	cr_assert(sent_has(r, "MAIL FROM:<>\r\n"));
	run_free(r);
}

/* ---- DATA ---- */

Test(smtp_client, data_refused_fails_the_transaction_then_rset) /* RFC 5321 4.1.1.4 */
{
	add_txn(BODY, "a@b.test", NULL);
	struct run *r = transcript(GREET EHLO_NONE OK_MAIL OK_RCPT "451 4.3.0 not now\r\n"
		"250 2.0.0 Ok\r\n" BYE);
	expect_sent(r, C_EHLO "MAIL FROM:<s@a.test>\r\nRCPT TO:<a@b.test>\r\nDATA\r\nRSET\r\n"
		C_QUIT);
	expect_result(r, 0, S_TXN, DEFERRED, 451, "4.3.0", 0, 1, false);
	cr_assert_eq(r->results[0].r.stage, SMTP_CLIENT_STAGE_DATA);
	run_free(r);
}

Test(smtp_client, refusal_after_the_data_fails_the_accepted_recipients) /* RFC 5321 4.1.1.4 */
{
	add_txn(BODY, "a@b.test", "x@b.test", "c@b.test", NULL);
	add_txn(BODY, "d@b.test", NULL);
	struct run *r = transcript(GREET EHLO_ALL OK_MAIL OK_RCPT "550 5.1.1 no\r\n" OK_RCPT
		GO_AHEAD "554 5.7.1 spam\r\n" OK_MAIL OK_RCPT GO_AHEAD "452 4.3.1 full\r\n" BYE);
	cr_assert_eq(r->nresults, 3);
	expect_result(r, 0, S_RCPT, BOUNCED, 550, "5.1.1", 1, 1, false);
	expect_result(r, 1, S_TXN, BOUNCED, 554, "5.7.1", 0, 2, false);
	cr_assert_eq(r->results[1].r.stage, SMTP_CLIENT_STAGE_END);
	expect_result(r, 2, S_TXN, DEFERRED, 452, "4.3.1", 0, 1, false);
	cr_assert_not(sent_has(r, "RSET"), "the reply after the data resets the server");
	run_free(r);
}

Test(smtp_client, body_is_dot_stuffed_and_ends_with_crlf_dot_crlf) /* RFC 5321 4.5.2 */
{
	add_txn(".leading\r\nmid.dle\r\n.\r\n..\r\nno end", "a@b.test", NULL);
	struct run *r = transcript(GREET EHLO_NONE OK_MAIL OK_RCPT GO_AHEAD QUEUED BYE);
	cr_assert(sent_has(r, "DATA\r\n..leading\r\nmid.dle\r\n..\r\n...\r\nno end\r\n.\r\nQUIT"),
		"%.*s", (int)r->sent_len, r->sent);
	run_free(r);
}

Test(smtp_client, body_pieces_of_any_size_give_the_same_wire_bytes) /* RFC 5321 4.5.2 */
{
	static char body[3000];
	for (size_t i = 0; i < sizeof(body) - 1; i++)
		body[i] = "ab.\r\n"[i * 7 % 5];
	body[sizeof(body) - 1] = 0;
	struct run *ref = NULL;
	static const size_t pieces[] = { 1, 2, 63, 64, 65, 1000, 5000 };
	for (size_t p = 0; p < ARRAY_LEN(pieces); p++) {
		setup_defaults();
		test_piece = pieces[p];
		add_txn(body, "a@b.test", NULL);
		struct run *r = run_new();
		static const char server[] = GREET EHLO_NONE OK_MAIL OK_RCPT GO_AHEAD QUEUED BYE;
		run_into(r, SLICE_LIT(server), FEED_WHOLE, 0);
		expect_result(r, 0, S_TXN, DELIVERED, 250, "2.0.0", 0, 1, false);
		if (ref == NULL) {
			ref = r;
			continue;
		}
		run_compare(ref, r, "piece size");
		run_free(r);
	}
	run_free(ref);
}

Test(smtp_client, the_body_octets_are_never_copied) /* RFC 5321 4.5.2, zero copy */
{
	static char body[1000];
	memset(body, 'x', sizeof(body) - 1);
	body[500] = '.';
	body[498] = '\r';
	body[499] = '\n';
	struct smtp_client_txn *t = add_txn(body, "a@b.test", NULL);
	struct smtp_client c;
	smtp_client_init(&c, &test_cfg);
	struct smtp_client_actions acts = { .count = 0 };
	smtp_client_feed(&c, SLICE_LIT(GREET EHLO_NONE), &acts);
	acts.count = 0;
	smtp_client_transaction(&c, t, &acts);
	acts.count = 0;
	static const char replies[] = OK_MAIL OK_RCPT GO_AHEAD;
	cr_assert_eq(smtp_client_feed(&c, SLICE_LIT(replies), &acts), sizeof(replies) - 1);
	cr_assert_eq(acts.items[acts.count - 1].type, SMTP_CLIENT_ACTION_BODY);
	acts.count = 0;
	cr_assert_eq(smtp_client_body(&c, slice_make(body, 999), true, &acts), 999);
	size_t from_body = 0;
	for (uint32_t i = 0; i < acts.count; i++) {
		struct slice s = acts.items[i].data;
		if (s.ptr >= (const uint8_t *)body && s.ptr < (const uint8_t *)body + 999)
			from_body += s.len;
		else
			cr_assert_leq(
				s.len, 5, "only the inserted dot and the terminator are elsewhere");
	}
	cr_assert_eq(from_body, 999);
	cr_assert_eq(acts.count, 4, "text, inserted dot, text, terminator");
}

/* ---- SIZE, 8BITMIME, SMTPUTF8 ---- */

Test(smtp_client, size_is_declared_when_offered) /* RFC 1870 6 */
{
	add_txn(BODY, "a@b.test", NULL);
	struct run *r = transcript(GREET "250-mx.test\r\n250 SIZE 1000\r\n" OK_MAIL OK_RCPT GO_AHEAD
		QUEUED BYE);
	cr_assert(sent_has(r, "MAIL FROM:<s@a.test> SIZE=18\r\n"));
	cr_assert_eq(smtp_client_size_max(r->c), 1000);
	run_free(r);
}

Test(smtp_client, a_message_over_the_receivers_size_fails_5_3_4_before_any_data) /* 1870 6 */
{
	static char big[1002];
	memset(big, 'x', 1001);
	add_txn(big, "a@b.test", "c@b.test", NULL);   /* 1001 octets */
	add_txn("small\r\n", "d@b.test", NULL);        /* the connection stays usable */
	struct run *r = transcript(GREET "250-mx.test\r\n250 SIZE 1000\r\n" OK_MAIL OK_RCPT
		GO_AHEAD QUEUED BYE);
	cr_assert_eq(r->nresults, 2);
	expect_result(r, 0, S_TXN, BOUNCED, 552, "5.3.4", 0, 2, true);
	expect_text(r, 0, "message size exceeds the receiver's limit of 1000");
	cr_assert_eq(r->results[0].r.stage, SMTP_CLIENT_STAGE_NONE);
	expect_sent(r, C_EHLO "MAIL FROM:<s@a.test> SIZE=7\r\nRCPT TO:<d@b.test>\r\nDATA\r\n"
		"small\r\n.\r\n" C_QUIT);
	run_free(r);
}

Test(smtp_client, a_message_at_the_receivers_size_goes) /* RFC 1870 6: "exceeds" */
{
	static char big[1001];
	memset(big, 'x', 1000);
	add_txn(big, "a@b.test", NULL);
	struct run *r = transcript(GREET "250-mx.test\r\n250 SIZE 1000\r\n" OK_MAIL OK_RCPT
		GO_AHEAD QUEUED BYE);
	expect_result(r, 0, S_TXN, DELIVERED, 250, "2.0.0", 0, 1, false);
	run_free(r);
}

Test(smtp_client, size_zero_or_without_number_means_no_limit) /* RFC 1870 4 */
{
	static char big[5000];
	memset(big, 'x', sizeof(big) - 1);
	static const char *ehlos[] = { "250-mx.test\r\n250 SIZE 0\r\n",
		"250-mx.test\r\n250 SIZE\r\n", "250-mx.test\r\n250 SIZE 12x\r\n" };
	for (size_t i = 0; i < ARRAY_LEN(ehlos); i++) {
		setup_defaults();
		add_txn(big, "a@b.test", NULL);
		expect_mail_line(
			ehlos[i], "MAIL FROM:<s@a.test> SIZE=4999\r\n", SMTP_CLIENT_EXT_SIZE);
	}
}

Test(smtp_client, eight_bit_message_gets_body_8bitmime_when_offered) /* RFC 6152 2 */
{
	struct smtp_client_txn *t = add_txn(BODY, "a@b.test", NULL);
	t->needs_8bitmime = true;
	struct run *r = transcript(GREET EHLO_ALL OK_MAIL OK_RCPT GO_AHEAD QUEUED BYE);
	cr_assert(sent_has(r, "MAIL FROM:<s@a.test> SIZE=18 BODY=8BITMIME\r\n"));
	run_free(r);
}

Test(smtp_client, eight_bit_message_to_a_receiver_without_8bitmime_fails_5_6_3) /* RFC 6152 3 */
{
	struct smtp_client_txn *t = add_txn(BODY, "a@b.test", NULL);
	t->needs_8bitmime = true;
	struct run *r = transcript(GREET "250-mx.test\r\n250 PIPELINING\r\n" BYE);
	expect_sent(r, C_EHLO C_QUIT);
	expect_result(r, 0, S_TXN, BOUNCED, 554, "5.6.3", 0, 1, true);
	run_free(r);
}

Test(smtp_client, smtputf8_message_gets_smtputf8_when_offered) /* RFC 6531 3.4 */
{
	struct smtp_client_txn *t = add_txn(BODY, "a@b.test", NULL);
	t->needs_smtputf8 = true;
	struct run *r = transcript(GREET EHLO_ALL OK_MAIL OK_RCPT GO_AHEAD QUEUED BYE);
	cr_assert(sent_has(r, "MAIL FROM:<s@a.test> SIZE=18 BODY=8BITMIME SMTPUTF8\r\n"));
	run_free(r);
}

Test(smtp_client, smtputf8_message_to_a_receiver_without_it_fails_5_6_7) /* RFC 6531 3.2 */
{
	add_txn(BODY, "j\xc3\xb6rg@b.test", NULL);   /* a non-ASCII address needs it by itself */
	struct run *r = transcript(GREET "250-mx.test\r\n250-8BITMIME\r\n250 PIPELINING\r\n" BYE);
	expect_sent(r, C_EHLO C_QUIT);
	cr_assert_eq(r->nresults, 1);
	expect_result(r, 0, S_TXN, BOUNCED, 553, "5.6.7", 0, 1, true);
	expect_text(r, 0, "the message needs SMTPUTF8 and the receiver does not offer it");
	run_free(r);
}

/* ---- DSN ---- */

Test(smtp_client, dsn_parameters_are_passed_on_when_offered) /* RFC 3461 4 */
{
	struct smtp_client_txn *t = add_txn(BODY, "a@b.test", "c@b.test", "e@b.test", NULL);
	t->dsn_ret = SMTP_DSN_RET_HDRS;
	t->dsn_envid = SLICE_LIT("QQ+2Bid");
	test_rcpts[0][0].notify = SMTP_DSN_NOTIFY_SUCCESS | SMTP_DSN_NOTIFY_FAILURE;
	test_rcpts[0][0].orcpt = SLICE_LIT("rfc822;a@b.test");
	test_rcpts[0][1].notify = SMTP_DSN_NOTIFY_NEVER;
	test_rcpts[0][2].notify = SMTP_DSN_NOTIFY_DELAY;
	test_rcpts[0][2].orcpt = SLICE_LIT("bad orcpt");   /* not xtext: left out */
	struct run *r = transcript(GREET EHLO_ALL OK_MAIL OK_RCPT OK_RCPT OK_RCPT GO_AHEAD QUEUED
		BYE);
	cr_assert(sent_has(r, "MAIL FROM:<s@a.test> SIZE=18 RET=HDRS ENVID=QQ+2Bid\r\n"
		"RCPT TO:<a@b.test> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;a@b.test\r\n"
		"RCPT TO:<c@b.test> NOTIFY=NEVER\r\n" "RCPT TO:<e@b.test> NOTIFY=DELAY\r\n"),
		"%.*s", (int)r->sent_len, r->sent);
	cr_assert(smtp_client_extensions(r->c) & SMTP_CLIENT_EXT_DSN);
	run_free(r);
}

Test(smtp_client, dsn_parameters_are_left_out_when_not_offered) /* RFC 3461 4 */
{
	struct smtp_client_txn *t = add_txn(BODY, "a@b.test", NULL);
	t->dsn_ret = SMTP_DSN_RET_FULL;
	t->dsn_envid = SLICE_LIT("abc");
	test_rcpts[0][0].notify = SMTP_DSN_NOTIFY_SUCCESS;
	test_rcpts[0][0].orcpt = SLICE_LIT("rfc822;a@b.test");
	struct run *r = transcript(GREET "250-mx.test\r\n250 PIPELINING\r\n" OK_MAIL OK_RCPT
		GO_AHEAD QUEUED BYE);
	cr_assert(sent_has(r, "MAIL FROM:<s@a.test>\r\nRCPT TO:<a@b.test>\r\nDATA\r\n"));
	run_free(r);
}

Test(smtp_client, an_envid_past_its_bound_is_left_out) /* RFC 3461 4.4: 100 octets */
{
	static char envid[SMTP_CLIENT_ENVID_LEN_MAX + 2];
	memset(envid, 'e', sizeof(envid) - 1);
	struct smtp_client_txn *t = add_txn(BODY, "a@b.test", NULL);
	t->dsn_envid = slice_make(envid, SMTP_CLIENT_ENVID_LEN_MAX + 1);
	struct run *r = transcript(GREET EHLO_ALL OK_MAIL OK_RCPT GO_AHEAD QUEUED BYE);
	cr_assert(sent_has(r, "MAIL FROM:<s@a.test> SIZE=18\r\n"));
	run_free(r);
	setup_defaults();
	t = add_txn(BODY, "a@b.test", NULL);
	t->dsn_envid = slice_make(envid, SMTP_CLIENT_ENVID_LEN_MAX);
	r = transcript(GREET EHLO_ALL OK_MAIL OK_RCPT GO_AHEAD QUEUED BYE);
	cr_assert(sent_has(r, "MAIL FROM:<s@a.test> SIZE=18 ENVID=eeee"));
	run_free(r);
}

/* ---- BDAT ---- */

Test(smtp_client, bdat_sends_the_body_as_stored_in_one_last_chunk) /* RFC 3030 2, 4.2 */
{
	struct smtp_client_txn *t = add_txn(".dot\r\nbare\nend", "a@b.test", "c@b.test", NULL);
	t->use_bdat = true;
	struct run *r = transcript(GREET EHLO_ALL OK_MAIL OK_RCPT OK_RCPT
		"250 2.0.0 Ok: 14 octets, queued\r\n" BYE);
	expect_sent(r, C_EHLO "MAIL FROM:<s@a.test> SIZE=14\r\nRCPT TO:<a@b.test>\r\n"
		"RCPT TO:<c@b.test>\r\n" "BDAT 14 LAST\r\n.dot\r\nbare\nend" C_QUIT);
	cr_assert_eq(r->txn_sends[0], 1, "MAIL and the RCPTs are pipelined");
	expect_result(r, 0, S_TXN, DELIVERED, 250, "2.0.0", 0, 2, false);
	cr_assert_eq(r->results[0].r.stage, SMTP_CLIENT_STAGE_END);
	run_free(r);
}

Test(smtp_client, bdat_is_not_used_unless_chosen_and_offered) /* RFC 3030 2 */
{
	struct smtp_client_txn *t = add_txn(BODY, "a@b.test", NULL);
	t->use_bdat = true;
	struct run *r = transcript(GREET "250-mx.test\r\n250 PIPELINING\r\n" OK_MAIL OK_RCPT
		GO_AHEAD QUEUED BYE);
	cr_assert(sent_has(r, "DATA\r\n"));
	cr_assert_not(sent_has(r, "BDAT"));
	run_free(r);
	setup_defaults();
	add_txn(BODY, "a@b.test", NULL);   /* offered, not chosen */
	r = transcript(GREET EHLO_ALL OK_MAIL OK_RCPT GO_AHEAD QUEUED BYE);
	cr_assert_not(sent_has(r, "BDAT"));
	run_free(r);
}

Test(smtp_client, bdat_without_an_accepted_recipient_sends_no_body) /* RFC 3030 2 */
{
	struct smtp_client_txn *t = add_txn(BODY, "a@b.test", NULL);
	t->use_bdat = true;
	struct run *r = transcript(GREET EHLO_ALL OK_MAIL "550 5.1.1 no\r\n" "250 2.0.0 Ok\r\n"
		BYE);
	expect_sent(r, C_EHLO "MAIL FROM:<s@a.test> SIZE=18\r\nRCPT TO:<a@b.test>\r\nRSET\r\n"
		C_QUIT);
	run_free(r);
}

Test(smtp_client, bdat_of_an_empty_body) /* RFC 3030 2: "BDAT 0 LAST" */
{
	struct smtp_client_txn *t = add_txn("", "a@b.test", NULL);
	t->use_bdat = true;
	struct run *r = transcript(GREET "250-mx.test\r\n250 CHUNKING\r\n" OK_MAIL OK_RCPT QUEUED
		BYE);
	expect_sent(r, C_EHLO "MAIL FROM:<s@a.test>\r\nRCPT TO:<a@b.test>\r\nBDAT 0 LAST\r\n"
		C_QUIT);
	expect_result(r, 0, S_TXN, DELIVERED, 250, "2.0.0", 0, 1, false);
	run_free(r);
}

/* ---- connection reuse ---- */

Test(smtp_client, many_transactions_over_one_connection) /* RFC 5321 3.3, 4.1.1.4 */
{
	add_txn("one\r\n", "a@b.test", NULL);
	add_txn("two\r\n", "c@b.test", NULL);
	add_txn("three\r\n", "d@b.test", NULL);
	struct run *r = transcript(GREET EHLO_NONE OK_MAIL OK_RCPT GO_AHEAD QUEUED
		OK_MAIL "550 5.1.1 no\r\n" "250 2.0.0 reset\r\n"
		OK_MAIL OK_RCPT GO_AHEAD QUEUED BYE);
	expect_sent(r, C_EHLO "MAIL FROM:<s@a.test>\r\nRCPT TO:<a@b.test>\r\nDATA\r\none\r\n.\r\n"
		"MAIL FROM:<s@a.test>\r\nRCPT TO:<c@b.test>\r\nRSET\r\n"
		"MAIL FROM:<s@a.test>\r\nRCPT TO:<d@b.test>\r\nDATA\r\nthree\r\n.\r\n" C_QUIT);
	cr_assert_eq(r->nresults, 4);
	expect_result(r, 0, S_TXN, DELIVERED, 250, "2.0.0", 0, 1, false);
	expect_result(r, 1, S_RCPT, BOUNCED, 550, "5.1.1", 0, 1, false);
	expect_result(r, 2, S_TXN, BOUNCED, 554, "5.5.0", 0, 0, true);
	expect_result(r, 3, S_TXN, DELIVERED, 250, "2.0.0", 0, 1, false);
	expect_types(r, READY, BODY_, READY, READY, BODY_, READY, CLOSE, -1);
	run_free(r);
}

Test(smtp_client, rset_refused_ends_the_connection) /* RFC 5321 4.1.1.5 */
{
	add_txn(BODY, "a@b.test", NULL);
	add_txn(BODY, "c@b.test", NULL);
	struct run *r = transcript(GREET EHLO_NONE OK_MAIL OK_RCPT "554 5.5.1 no\r\n"
		"500 what\r\n" BYE);
	cr_assert_eq(r->nresults, 2);
	expect_result(r, 0, S_TXN, BOUNCED, 554, "5.5.1", 0, 1, false);
	expect_result(r, 1, S_CONN, BOUNCED, 500, "5.0.0", 0, 0, false);
	cr_assert_eq(r->results[1].r.stage, SMTP_CLIENT_STAGE_RSET);
	cr_assert_eq(r->ntxns, 1, "no second transaction on that connection");
	run_free(r);
}

/* ---- 421 at any stage ---- */

Test(smtp_client, a_421_at_any_stage_fails_the_connection_and_defers) /* RFC 5321 3.8 */
{
	/* The transcript up to the 421 at each stage, with the recipients it leaves open. */
	static const struct {
		const char *before;
		uint32_t open;
		enum smtp_client_stage stage;
	} stages[] = {
		{ "", 0, SMTP_CLIENT_STAGE_GREETING },
		{ GREET, 0, SMTP_CLIENT_STAGE_EHLO },
		{ GREET EHLO_ALL, 3, SMTP_CLIENT_STAGE_MAIL },
		{ GREET EHLO_ALL OK_MAIL, 3, SMTP_CLIENT_STAGE_RCPT },
		{ GREET EHLO_ALL OK_MAIL OK_RCPT "550 5.1.1 no\r\n", 2, SMTP_CLIENT_STAGE_RCPT },
		{ GREET EHLO_ALL OK_MAIL OK_RCPT "550 5.1.1 no\r\n" OK_RCPT, 2,
			SMTP_CLIENT_STAGE_DATA },
		{ GREET EHLO_ALL OK_MAIL OK_RCPT "550 5.1.1 no\r\n" OK_RCPT GO_AHEAD, 2,
			SMTP_CLIENT_STAGE_END },
		{ GREET EHLO_ALL OK_MAIL OK_RCPT OK_RCPT OK_RCPT "451 4.3.0 x\r\n", 0,
			SMTP_CLIENT_STAGE_RSET },
		{ GREET EHLO_ALL OK_MAIL OK_RCPT OK_RCPT OK_RCPT GO_AHEAD QUEUED, 1,
			SMTP_CLIENT_STAGE_MAIL },   /* the second transaction's MAIL */
	};
	for (size_t i = 0; i < ARRAY_LEN(stages); i++) {
		setup_defaults();
		add_txn(BODY, "a@b.test", "c@b.test", "d@b.test", NULL);
		add_txn(BODY, "e@b.test", NULL);
		char server[2048];
		int n = snprintf(
			server, sizeof(server), "%s421 4.4.2 closing\r\n", stages[i].before);
		struct run *r = transcript_n(server, (size_t)n);
		const struct got_result *last = &r->results[r->nresults - 1];
		cr_assert_eq(last->r.scope, S_CONN, "stage %zu", i);
		cr_assert_eq(last->r.outcome, DEFERRED, "stage %zu", i);
		cr_assert_eq(last->r.code, 421);
		cr_assert_eq(last->r.rcpt_count, stages[i].open, "stage %zu: open %u", i,
			last->r.rcpt_count);
		cr_assert_eq(last->r.stage, stages[i].stage, "stage %zu: %d", i, last->r.stage);
		cr_assert_eq(r->types[r->ntypes - 1], CLOSE);
		cr_assert_not(sent_has(r, C_QUIT), "stage %zu: no QUIT after 421", i);
		run_free(r);
	}
}

Test(smtp_client, a_421_while_idle_fails_the_connection) /* RFC 5321 3.8 */
{
	struct smtp_client c;
	smtp_client_init(&c, &test_cfg);
	struct smtp_client_actions acts = { .count = 0 };
	static const char in[] = GREET EHLO_NONE "421 4.4.2 idle too long\r\n";
	size_t used = smtp_client_feed(&c, SLICE_LIT(in), &acts);
	cr_assert_eq(used, sizeof(GREET EHLO_NONE) - 1, "the feed stops at READY");
	cr_assert_eq(acts.items[acts.count - 1].type, READY);
	acts.count = 0;
	cr_assert_eq(smtp_client_feed(&c, SLICE_LIT("421 4.4.2 idle too long\r\n"), &acts), 25);
	cr_assert_eq(acts.count, 2);
	cr_assert_eq(acts.items[0].result.scope, S_CONN);
	cr_assert_eq(acts.items[0].result.stage, SMTP_CLIENT_STAGE_IDLE);
	cr_assert_eq(acts.items[0].result.rcpt_count, 0);
	cr_assert_eq(acts.items[1].type, CLOSE);
	cr_assert(smtp_client_closed(&c));
}

Test(smtp_client, a_reply_while_the_body_goes_out_ends_the_connection) /* RFC 5321 4.1.1.4 */
{
	/* The transcript driver sends the whole body at BODY; a server reply before the end of data
	 * is only seen when fed in the BODY state, so this one drives the client itself. */
	struct smtp_client_txn *t = add_txn(BODY, "a@b.test", NULL);
	struct smtp_client c;
	smtp_client_init(&c, &test_cfg);
	struct smtp_client_actions acts = { .count = 0 };
	smtp_client_feed(&c, SLICE_LIT(GREET EHLO_NONE), &acts);
	acts.count = 0;
	smtp_client_transaction(&c, t, &acts);
	static const char replies[] = OK_MAIL OK_RCPT GO_AHEAD;
	size_t off = 0;
	while (off < sizeof(replies) - 1) {
		acts.count = 0;
		off += smtp_client_feed(
			&c, slice_make(replies + off, sizeof(replies) - 1 - off), &acts);
	}
	cr_assert_eq(acts.items[acts.count - 1].type, SMTP_CLIENT_ACTION_BODY);
	cr_assert_eq(smtp_client_timeout_ms(&c), SMTP_CLIENT_TIMEOUT_DATA_BLOCK_MS);
	acts.count = 0;
	cr_assert_eq(smtp_client_body(&c, slice_make(BODY, 5), false, &acts), 5);
	acts.count = 0;
	cr_assert_eq(smtp_client_feed(&c, SLICE_LIT("552 5.3.4 too big\r\n"), &acts), 19);
	cr_assert_eq(acts.count, 2);
	cr_assert_eq(acts.items[0].result.scope, S_CONN);
	cr_assert_eq(acts.items[0].result.outcome, BOUNCED);
	cr_assert_eq(acts.items[0].result.rcpt_count, 1);
	cr_assert_eq(acts.items[0].result.stage, SMTP_CLIENT_STAGE_BODY);
	cr_assert_eq(acts.items[1].type, CLOSE);
	acts.count = 0;
	cr_assert_eq(smtp_client_body(&c, slice_make(BODY + 5, 13), true, &acts), 13,
		"the rest of the body is taken and dropped");
	cr_assert_eq(acts.count, 0);
}

/* ---- timeouts ---- */

Test(smtp_client, each_state_has_its_rfc_timeout) /* RFC 5321 4.5.3.2 */
{
	struct smtp_client_txn *t = add_txn(BODY, "a@b.test", NULL);
	struct smtp_client c;
	smtp_client_init(&c, &test_cfg);
	struct smtp_client_actions acts = { .count = 0 };
	cr_assert_eq(smtp_client_timeout_ms(&c), 300000);                 /* 4.5.3.2.1 */
	smtp_client_feed(&c, SLICE_LIT(GREET), &acts);
	cr_assert_eq(smtp_client_timeout_ms(&c), 300000);                 /* EHLO */
	acts.count = 0;
	smtp_client_feed(&c, SLICE_LIT(EHLO_NONE), &acts);
	cr_assert_eq(smtp_client_timeout_ms(&c), 0, "idle: the engine's idle time");
	acts.count = 0;
	smtp_client_transaction(&c, t, &acts);
	cr_assert_eq(smtp_client_timeout_ms(&c), 300000);                 /* 4.5.3.2.2 MAIL */
	acts.count = 0;
	smtp_client_feed(&c, SLICE_LIT(OK_MAIL), &acts);
	cr_assert_eq(smtp_client_timeout_ms(&c), 300000);                 /* 4.5.3.2.3 RCPT */
	acts.count = 0;
	smtp_client_feed(&c, SLICE_LIT(OK_RCPT), &acts);
	cr_assert_eq(smtp_client_timeout_ms(&c), 120000);                 /* 4.5.3.2.4 DATA */
	acts.count = 0;
	smtp_client_feed(&c, SLICE_LIT(GO_AHEAD), &acts);
	cr_assert_eq(smtp_client_timeout_ms(&c), 180000);                 /* 4.5.3.2.5 block */
	acts.count = 0;
	smtp_client_body(&c, SLICE_LIT(BODY), true, &acts);
	cr_assert_eq(smtp_client_timeout_ms(&c), 600000);                 /* 4.5.3.2.6 "." */
	acts.count = 0;
	smtp_client_feed(&c, SLICE_LIT(QUEUED), &acts);
	acts.count = 0;
	smtp_client_quit(&c, &acts);
	cr_assert_eq(smtp_client_timeout_ms(&c), 300000);                 /* QUIT */
	acts.count = 0;
	smtp_client_timeout(&c, &acts);
	cr_assert_eq(acts.count, 1, "a timeout while quitting just closes");
	cr_assert_eq(acts.items[0].type, CLOSE);
	cr_assert_eq(smtp_client_timeout_ms(&c), 0);
}

Test(smtp_client, configured_timeouts_replace_the_rfc_ones) /* RFC 5321 4.5.3.2 */
{
	test_cfg.greeting_timeout_ms = 11;
	test_cfg.cmd_timeout_ms = 22;
	test_cfg.data_init_timeout_ms = 33;
	test_cfg.data_block_timeout_ms = 44;
	test_cfg.data_term_timeout_ms = 55;
	struct smtp_client_txn *t = add_txn(BODY, "a@b.test", NULL);
	struct smtp_client c;
	smtp_client_init(&c, &test_cfg);
	struct smtp_client_actions acts = { .count = 0 };
	cr_assert_eq(smtp_client_timeout_ms(&c), 11);
	smtp_client_feed(&c, SLICE_LIT(GREET), &acts);
	cr_assert_eq(smtp_client_timeout_ms(&c), 22);
	acts.count = 0;
	smtp_client_feed(&c, SLICE_LIT(EHLO_NONE), &acts);
	acts.count = 0;
	smtp_client_transaction(&c, t, &acts);
	cr_assert_eq(smtp_client_timeout_ms(&c), 22);
	acts.count = 0;
	smtp_client_feed(&c, SLICE_LIT(OK_MAIL OK_RCPT), &acts);
	cr_assert_eq(smtp_client_timeout_ms(&c), 33);
	acts.count = 0;
	smtp_client_feed(&c, SLICE_LIT(GO_AHEAD), &acts);
	cr_assert_eq(smtp_client_timeout_ms(&c), 44);
	acts.count = 0;
	smtp_client_body(&c, SLICE_LIT(BODY), true, &acts);
	cr_assert_eq(smtp_client_timeout_ms(&c), 55);
}

Test(smtp_client, a_timeout_defers_the_open_recipients) /* RFC 5321 4.5.3.2 */
{
	test_end = END_TIMEOUT;
	add_txn(BODY, "a@b.test", "c@b.test", NULL);
	struct run *r = transcript(GREET EHLO_ALL OK_MAIL "550 5.1.1 no\r\n");
	cr_assert_eq(r->nresults, 2);
	expect_result(r, 1, S_CONN, DEFERRED, 421, "4.4.2", 0, 1, true);
	expect_text(r, 1, "timeout, during RCPT TO");
	expect_types(r, READY, CLOSE, -1);
	cr_assert_not(sent_has(r, C_QUIT));
	run_free(r);
}

Test(smtp_client, a_timeout_waiting_for_the_greeting) /* RFC 5321 4.5.3.2.1 */
{
	test_end = END_TIMEOUT;
	struct run *r = transcript("220-still");
	expect_result(r, 0, S_CONN, DEFERRED, 421, "4.4.2", 0, 0, true);
	expect_text(r, 0, "timeout, during greeting");
	run_free(r);
}

Test(smtp_client, a_lost_connection_defers_the_open_recipients) /* RFC 5321 4.5.4.1 */
{
	test_end = END_LOST;
	add_txn(BODY, "a@b.test", NULL);
	struct run *r = transcript(GREET EHLO_ALL OK_MAIL OK_RCPT GO_AHEAD);
	expect_result(r, 0, S_CONN, DEFERRED, 421, "4.4.2", 0, 1, true);
	expect_text(r, 0, "connection lost, during end of data");
	run_free(r);
}

/* ---- QUIT ---- */

Test(smtp_client, quit_when_idle_waits_for_221_then_closes) /* RFC 5321 4.1.1.10 */
{
	struct run *r = transcript(GREET EHLO_NONE "221 2.0.0 Bye\r\n");
	expect_sent(r, C_EHLO C_QUIT);
	cr_assert_eq(r->nresults, 0);
	expect_types(r, READY, CLOSE, -1);
	run_free(r);
}

Test(smtp_client, a_lost_connection_while_quitting_is_no_failure) /* RFC 5321 4.1.1.10 */
{
	test_end = END_LOST;
	struct run *r = transcript(GREET EHLO_NONE);
	cr_assert_eq(r->nresults, 0);
	expect_types(r, READY, CLOSE, -1);
	run_free(r);
}

Test(smtp_client, quit_in_the_middle_of_a_transaction_defers_it) /* RFC 5321 4.1.1.10 */
{
	test_end = END_QUIT;
	add_txn(BODY, "a@b.test", "c@b.test", NULL);
	struct run *r = transcript(GREET EHLO_ALL OK_MAIL OK_RCPT);
	expect_result(r, 0, S_CONN, DEFERRED, 421, "4.3.2", 0, 2, true);
	expect_types(r, READY, CLOSE, -1);
	run_free(r);
}

/* ---- STARTTLS seam ---- */

Test(smtp_client, starttls_when_configured_and_offered_then_ehlo_again) /* RFC 3207 4.2 */
{
	test_cfg.starttls = true;
	add_txn(BODY, "a@b.test", NULL);
	struct run *r = transcript(GREET "250-mx.test\r\n250-STARTTLS\r\n250 SIZE 10\r\n"
		"220 2.0.0 go ahead\r\n" "250-mx.test\r\n250-STARTTLS\r\n250 PIPELINING\r\n"
		OK_MAIL OK_RCPT GO_AHEAD QUEUED BYE);
	expect_sent(r, C_EHLO "STARTTLS\r\n" C_EHLO "MAIL FROM:<s@a.test>\r\nRCPT TO:<a@b.test>\r\n"
		"DATA\r\n" BODY ".\r\n" C_QUIT);
	cr_assert_eq(smtp_client_size_max(r->c), 0, "what was learnt before TLS is forgotten");
	cr_assert_eq(smtp_client_extensions(r->c),
		SMTP_CLIENT_EXT_STARTTLS | SMTP_CLIENT_EXT_PIPELINING);
	expect_types(r, TLS, READY, BODY_, READY, CLOSE, -1);
	run_free(r);
}

Test(smtp_client, the_feed_stops_after_the_220_to_starttls) /* RFC 3207 4.2, 5: injection */
{
	test_cfg.starttls = true;
	struct smtp_client c;
	smtp_client_init(&c, &test_cfg);
	struct smtp_client_actions acts = { .count = 0 };
	smtp_client_feed(&c, SLICE_LIT(GREET), &acts);
	acts.count = 0;
	static const char in[] = "250-mx.test\r\n250 STARTTLS\r\n220 go\r\n250 injected\r\n";
	size_t used = smtp_client_feed(&c, SLICE_LIT(in), &acts);
	cr_assert_eq(used, 13 + 14 + 8, "the EHLO answer and the 220, not the plaintext after it");
	cr_assert_eq(acts.items[acts.count - 1].type, TLS);
	cr_assert_eq(smtp_client_timeout_ms(&c), 0, "the TLS handshake has its own timeout");
}

Test(smtp_client, a_failed_tls_handshake_fails_the_connection) /* RFC 3207 4.1 */
{
	test_cfg.starttls = true;
	test_tls_result = -EPROTO;
	struct run *r = transcript(GREET "250-mx.test\r\n250 STARTTLS\r\n" "220 go\r\n");
	expect_result(r, 0, S_CONN, DEFERRED, 421, "4.7.5", 0, 0, true);
	expect_types(r, TLS, CLOSE, -1);
	run_free(r);
}

Test(smtp_client, a_refused_starttls_goes_on_in_plaintext) /* RFC 3207 4 */
{
	test_cfg.starttls = true;
	struct run *r = transcript(GREET "250-mx.test\r\n250 STARTTLS\r\n" "454 4.7.0 no TLS\r\n"
		BYE);
	expect_sent(r, C_EHLO "STARTTLS\r\n" C_QUIT);
	cr_assert_eq(r->nresults, 0);
	run_free(r);
}

Test(smtp_client, starttls_is_not_sent_unless_configured_and_offered) /* RFC 3207 4 */
{
	struct run *r = transcript(GREET "250-mx.test\r\n250 STARTTLS\r\n" BYE);
	expect_sent(r, C_EHLO C_QUIT);
	run_free(r);
	setup_defaults();
	test_cfg.starttls = true;
	r = transcript(GREET EHLO_NONE BYE);
	expect_sent(r, C_EHLO C_QUIT);
	run_free(r);
}

/* encrypt and verify (Postfix's smtp_tls_security_level): no TLS, no mail. */
Test(smtp_client, tls_required_and_not_offered_defers_without_mail) /* RFC 3207 4 */
{
	test_cfg.starttls = true;
	test_cfg.tls_required = true;
	add_txn(BODY, "a@b.test", NULL);
	struct run *r = transcript(GREET "250-mx.test\r\n250 SIZE 100\r\n" BYE);
	expect_sent(r, C_EHLO C_QUIT);
	expect_result(r, 0, S_CONN, DEFERRED, 421, "4.7.4", 0, 0, true);
	expect_text(r, 0, "TLS is required, but was not offered by the server");
	run_free(r);
}

Test(smtp_client, tls_required_and_starttls_refused_defers_without_mail) /* RFC 3207 4 */
{
	test_cfg.starttls = true;
	test_cfg.tls_required = true;
	add_txn(BODY, "a@b.test", NULL);
	struct run *r = transcript(GREET "250-mx.test\r\n250 STARTTLS\r\n" "454 4.7.0 no TLS\r\n"
		BYE);
	expect_sent(r, C_EHLO "STARTTLS\r\n" C_QUIT);
	expect_result(r, 0, S_CONN, DEFERRED, 421, "4.7.4", 0, 0, true);
	expect_text(r, 0, "TLS is required, but the server refused STARTTLS");
	run_free(r);
}

Test(smtp_client, tls_required_is_met_after_the_handshake) /* RFC 3207 4.2 */
{
	test_cfg.starttls = true;
	test_cfg.tls_required = true;
	add_txn(BODY, "a@b.test", NULL);
	struct run *r = transcript(GREET "250-mx.test\r\n250 STARTTLS\r\n" "220 go\r\n"
		"250-mx.test\r\n250 PIPELINING\r\n" OK_MAIL OK_RCPT GO_AHEAD QUEUED BYE);
	expect_types(r, TLS, READY, BODY_, READY, CLOSE, -1);
	run_free(r);
}

/* ---- a server that breaks the protocol ---- */

static void
expect_violation(const char *server, size_t len, uint32_t open)
{
	struct run *r = transcript_n(server, len);
	const struct got_result *last = &r->results[r->nresults - 1];
	cr_assert(r->nresults > 0, "%s", server);
	cr_assert_eq(last->r.scope, S_CONN, "%s", server);
	cr_assert_eq(last->r.code, 451);
	cr_assert_eq(last->r.enhanced.subject, 5);
	cr_assert_eq(last->r.enhanced.detail, 0);
	cr_assert(last->r.local);
	cr_assert_eq(last->r.rcpt_count, open, "%s: open %u", server, last->r.rcpt_count);
	cr_assert(memcmp(r->texts + last->text_off, "protocol error: ", 16) == 0);
	cr_assert_eq(r->types[r->ntypes - 1], CLOSE);
	cr_assert_not(sent_has(r, C_QUIT), "no QUIT to a server out of step");
	run_free(r);
}

#define expect_violation_lit(lit, open) expect_violation((lit), sizeof(lit) - 1, (open))

Test(smtp_client, garbage_instead_of_a_greeting) /* RFC 5321 4.2 */
{
	expect_violation_lit("SSH-2.0-OpenSSH_9.2\r\n", 0);
	expect_violation_lit("HTTP/1.1 400 Bad Request\r\n", 0);
	expect_violation_lit("\0\0\0\r\n", 0);
}

Test(smtp_client, garbage_in_the_middle_of_a_transaction) /* RFC 5321 4.2 */
{
	add_txn(BODY, "a@b.test", "c@b.test", NULL);
	expect_violation_lit(GREET EHLO_ALL OK_MAIL OK_RCPT "hello?\r\n", 2);
}

Test(smtp_client, codes_that_change_within_a_reply) /* RFC 5321 4.2.1 */
{
	expect_violation_lit(GREET "250-mx.test\r\n251 PIPELINING\r\n", 0);
}

Test(smtp_client, a_reply_line_past_its_bound) /* RFC 5321 4.5.3.1.5 */
{
	static char server[SMTP_REPLY_LINE_LEN_MAX + 64];
	size_t n = (size_t)sprintf(server, GREET "250 ");
	memset(server + n, 'x', SMTP_REPLY_LINE_LEN_MAX);
	n += SMTP_REPLY_LINE_LEN_MAX;
	memcpy(server + n, "\r\n", 2);
	expect_violation(server, n + 2, 0);
}

Test(smtp_client, a_reply_with_too_many_lines) /* RFC 5321 4.2.1 */
{
	static char server[16 * (SMTP_REPLY_LINES_MAX + 2)];
	size_t n = (size_t)sprintf(server, GREET);
	for (uint32_t i = 0; i < SMTP_REPLY_LINES_MAX; i++)
		n += (size_t)sprintf(server + n, "250-X%u\r\n", i);
	n += (size_t)sprintf(server + n, "250 END\r\n");
	expect_violation(server, n, 0);
}

Test(smtp_client, replies_of_the_wrong_kind) /* RFC 5321 4.3.2 */
{
	add_txn(BODY, "a@b.test", NULL);
	expect_violation_lit(GREET EHLO_NONE "354 go\r\n", 1);           /* 3xx to MAIL */
	expect_violation_lit(GREET EHLO_NONE OK_MAIL "354 go\r\n", 1);   /* 3xx to RCPT */
	expect_violation_lit(GREET EHLO_NONE OK_MAIL OK_RCPT "250 Ok\r\n", 1);   /* 2xx to DATA */
	expect_violation_lit(GREET EHLO_NONE OK_MAIL OK_RCPT GO_AHEAD GO_AHEAD, 1);   /* 3xx end */
	expect_violation_lit("354 hello\r\n", 0);                      /* 3xx greeting */
}

Test(smtp_client, a_reply_to_no_command) /* RFC 5321 4.2: replies answer commands */
{
	struct smtp_client c;
	smtp_client_init(&c, &test_cfg);
	struct smtp_client_actions acts = { .count = 0 };
	smtp_client_feed(&c, SLICE_LIT(GREET EHLO_NONE "250 extra\r\n"), &acts);
	cr_assert(smtp_client_ready(&c));
	acts.count = 0;
	cr_assert_eq(smtp_client_feed(&c, SLICE_LIT("250 extra\r\n"), &acts), 11);
	cr_assert_eq(acts.count, 2);
	cr_assert_eq(acts.items[0].result.code, 451);
	cr_assert(acts.items[0].result.local);
	cr_assert(slice_eq(acts.items[0].result.text,
		SLICE_LIT("protocol error: reply to no command, during idle")));
	cr_assert_eq(acts.items[1].type, CLOSE);
}

Test(smtp_client, a_broken_reply_to_quit_just_closes) /* RFC 5321 4.1.1.10 */
{
	struct run *r = transcript(GREET EHLO_NONE "garbage\r\n");
	cr_assert_eq(r->nresults, 0);
	expect_types(r, READY, CLOSE, -1);
	run_free(r);
}

/* ---- limits ---- */

Test(smtp_client, a_path_at_its_bound_goes_one_past_it_fails_before_sending) /* 4.5.3.1.3 */
{
	static char path[SMTP_CLIENT_PATH_LEN_MAX + 2];
	memset(path, 'l', SMTP_CLIENT_PATH_LEN_MAX);
	memcpy(path + SMTP_CLIENT_PATH_LEN_MAX - 7, "@b.test", 7);
	add_txn(BODY, path, NULL);
	struct run *r = transcript(GREET EHLO_ALL OK_MAIL OK_RCPT GO_AHEAD QUEUED BYE);
	expect_result(r, 0, S_TXN, DELIVERED, 250, "2.0.0", 0, 1, false);
	run_free(r);
	setup_defaults();
	memset(path, 'l', SMTP_CLIENT_PATH_LEN_MAX + 1);
	memcpy(path + SMTP_CLIENT_PATH_LEN_MAX - 6, "@b.test", 7);
	add_txn(BODY, "ok@b.test", path, NULL);
	r = transcript(GREET EHLO_ALL BYE);
	expect_sent(r, C_EHLO C_QUIT);
	expect_result(r, 0, S_TXN, BOUNCED, 553, "5.1.3", 0, 2, true);
	run_free(r);
}

Test(smtp_client, an_address_with_a_line_break_never_reaches_the_wire) /* RFC 5321 2.3.8 */
{
	add_txn(BODY, "a@b.test\r\nRCPT TO:<evil@x.test>", NULL);
	struct smtp_client_txn *t = add_txn(BODY, "c@b.test", NULL);
	t->mail_from = SLICE_LIT("s@a.test\rX");
	struct run *r = transcript(GREET EHLO_ALL BYE);
	expect_sent(r, C_EHLO C_QUIT);
	expect_result(r, 0, S_TXN, BOUNCED, 553, "5.1.3", 0, 1, true);
	expect_result(r, 1, S_TXN, BOUNCED, 553, "5.1.7", 0, 1, true);
	run_free(r);
}

Test(smtp_client, many_recipients_pipelined_in_several_writes_as_the_buffer_allows) /* 2920 */
{
	/* 1000 recipients of about 40 octets do not fit one command buffer: the group goes out in
	 * pieces as replies come back; every recipient is still resolved once. */
	static char paths[SMTP_CLIENT_RCPT_COUNT_MAX][48];
	static char server[SMTP_CLIENT_RCPT_COUNT_MAX * 20 + 1024];
	struct smtp_client_txn *t = add_txn(BODY, "x@b.test", NULL);
	for (uint32_t i = 0; i < SMTP_CLIENT_RCPT_COUNT_MAX; i++) {
		int n = snprintf(
			paths[i], sizeof(paths[i]), "recipient-number-%04u@b.example.test", i);
		test_rcpts[0][i]
			= (struct smtp_client_rcpt){ .path = slice_make(paths[i], (size_t)n) };
	}
	t->rcpt_count = SMTP_CLIENT_RCPT_COUNT_MAX;
	size_t n = (size_t)sprintf(server, GREET EHLO_ALL OK_MAIL);
	for (uint32_t i = 0; i < SMTP_CLIENT_RCPT_COUNT_MAX; i++)
		n += (size_t)sprintf(server + n, i % 10 == 3 ? "452 4.5.3 too many\r\n" : OK_RCPT);
	n += (size_t)sprintf(server + n, GO_AHEAD QUEUED BYE);
	struct run *r = run_new();
	run_into(r, slice_make(server, n), FEED_WHOLE, 0);
	cr_assert_eq(r->nresults, 101);
	expect_result(r, 100, S_TXN, DELIVERED, 250, "2.0.0", 0, 900, false);
	cr_assert_gt(r->txn_sends[0], 0);
	cr_assert(sent_has(r, "RCPT TO:<recipient-number-0999@b.example.test>\r\nDATA\r\n"));
	run_free(r);
	r = run_new();
	run_into(r, slice_make(server, n), FEED_BYTES, 0);
	cr_assert_eq(r->nresults, 101);
	run_free(r);
}

Test(smtp_client, many_refusals_in_one_read_stop_the_feed_and_resume) /* text buffer bound */
{
	/* 60 long refusals pipelined in one read: more text than one call can hold. */
	static char paths[60][16];
	static char server[60 * 2100 + 1024];
	struct smtp_client_txn *t = add_txn(BODY, "x@b.test", NULL);
	for (uint32_t i = 0; i < 60; i++) {
		int len = snprintf(paths[i], sizeof(paths[i]), "r%u@b.test", i);
		test_rcpts[0][i]
			= (struct smtp_client_rcpt){ .path = slice_make(paths[i], (size_t)len) };
	}
	t->rcpt_count = 60;
	size_t n = (size_t)sprintf(server, GREET EHLO_ALL OK_MAIL);
	for (uint32_t i = 0; i < 60; i++) {
		n += (size_t)sprintf(server + n, "550 5.1.1 ");
		memset(server + n, 'z', 2000);
		n += 2000;
		n += (size_t)sprintf(server + n, "\r\n");
	}
	n += (size_t)sprintf(server + n, "554 5.5.1 no recipients\r\n" "250 2.0.0 Ok\r\n" BYE);
	struct run *r = run_new();
	run_into(r, slice_make(server, n), FEED_WHOLE, 0);
	cr_assert_eq(r->nresults, 61);
	for (uint32_t i = 0; i < 60; i++) {
		expect_result(r, i, S_RCPT, BOUNCED, 550, "5.1.1", i, 1, false);
		cr_assert_eq(r->results[i].r.text.len, 2000);
	}
	run_free(r);
}

Test(smtp_client, a_reply_without_enhanced_code_gets_class_0_0) /* RFC 3463 3.1 */
{
	add_txn(BODY, "a@b.test", NULL);
	struct run *r = transcript(GREET EHLO_NONE OK_MAIL "550 no such user\r\n" BYE);
	expect_result(r, 0, S_RCPT, BOUNCED, 550, "5.0.0", 0, 1, false);
	expect_text(r, 0, "no such user");
	run_free(r);
}

Test(smtp_client, stage_names_for_logs) /* RFC 3464 2.3.6 (Diagnostic-Code context) */
{
	cr_assert_str_eq(smtp_client_stage_name(SMTP_CLIENT_STAGE_RCPT), "RCPT TO");
	cr_assert_str_eq(smtp_client_stage_name(SMTP_CLIENT_STAGE_END), "end of data");
	cr_assert_str_eq(smtp_client_stage_name(SMTP_CLIENT_STAGE_IDLE), "idle");
}
