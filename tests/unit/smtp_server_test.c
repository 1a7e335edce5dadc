/* tests/unit/smtp_server_test.c - the RFC 5321 server state machine, as transcripts.
 *
 * Every transcript goes through transcript(): fed whole, byte by byte, and split in two at every
 * offset, the way the engine does it (unconsumed bytes are offered again with the next ones).
 * All runs must give the same reply bytes, the same body bytes and the same sequence of other
 * actions. Every reply of every run is checked for form: "ddd[ -]" lines, one code per reply,
 * and an enhanced status code of the reply's class (RFC 2034, RFC 3463) except on the greeting,
 * the HELO/EHLO answer, 354 and 334.
 *
 * The driver answers like the engine: COMMIT with the next queued result, AUTH with a verdict
 * on the credentials (alice/secret is right; user "tempfail" cannot be checked), STARTTLS by
 * dropping every plaintext octet after the command and calling smtp_server_tls_started(). A
 * transcript marks with TLS_MARK where the client's stream continues inside TLS: the octets
 * before it that follow an accepted STARTTLS are the plaintext that is dropped. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/smtp_server.h"

#define HOST "mx.test.example"
#define RUN_REPLIES_MAX 4096u
#define RUN_TYPES_MAX 4096u
#define RUN_COMMITS_MAX 4u
#define SNAP_RCPTS_MAX 8u
#define SNAP_STR_MAX 2048u

struct snap_str {
	char s[SNAP_STR_MAX];
	size_t len;
};

struct snap_rcpt {
	struct snap_str path, local, domain, orcpt;
	uint8_t notify;
};

/* The envelope as seen at a COMMIT. */
struct snap {
	struct snap_str helo, mail_from, envid, mail_auth;
	bool esmtp, smtputf8;
	uint64_t declared_size, body_size;
	enum smtp_body_type body;
	enum smtp_dsn_ret ret;
	uint32_t rcpt_count;
	struct snap_rcpt rcpts[SNAP_RCPTS_MAX];
};

struct rcpt_call {
	struct snap_str local, domain;
	bool quoted;
};

#define TLS_MARK "<TLS>"

struct run {
	uint8_t *replies;
	size_t replies_len;
	size_t reply_off[RUN_REPLIES_MAX];
	size_t reply_len[RUN_REPLIES_MAX];
	size_t nreplies;
	uint8_t *body;
	size_t body_len;
	enum smtp_action_type types[RUN_TYPES_MAX];
	size_t ntypes;
	uint32_t rcpt_calls;
	struct rcpt_call last_call;
	struct snap commits[RUN_COMMITS_MAX];
	size_t ncommits;
	const int *commit_results;   /* outcomes handed to smtp_server_committed, 0 when past */
	size_t feeds;                /* smtp_server_feed calls */
	bool closed;
	bool tls_started;            /* STARTTLS was answered and the handshake "done" */
	uint32_t auth_calls;
	struct snap_str auth_user, auth_password;   /* the last credentials handed out */
	struct smtp_server *s;
};

static struct smtp_server_config test_cfg;
static bool test_implicit_tls;   /* smtp_server_tls_started() before the greeting */
static const int *test_commit_results;

static void
snap_copy(struct snap_str *d, struct slice s)
{
	cr_assert_lt(s.len, SNAP_STR_MAX);
	if (s.len > 0)
		memcpy(d->s, s.ptr, s.len);
	d->s[s.len] = 0;
	d->len = s.len;
}

static enum smtp_rcpt_verdict
test_rcpt_check(void *ctx, struct slice local, struct slice domain, bool quoted)
{
	struct run *r = ctx;
	r->rcpt_calls++;
	snap_copy(&r->last_call.local, local);
	snap_copy(&r->last_call.domain, domain);
	r->last_call.quoted = quoted;
	if (slice_eq_nocase(local, SLICE_LIT("unknown")))
		return SMTP_RCPT_UNKNOWN_USER;
	if (slice_eq_nocase(local, SLICE_LIT("tempfail")))
		return SMTP_RCPT_TEMPFAIL;
	if (slice_eq_nocase(domain, SLICE_LIT("elsewhere.example")))
		return SMTP_RCPT_RELAY_DENIED;
	return SMTP_RCPT_OK;
}

static void
cfg_reset(void)
{
	test_cfg = (struct smtp_server_config){
		.hostname = SLICE_LIT(HOST),
		.max_message_size = 1000,
		.max_recipients = 5,
		.bad_cmd_max = 100,
		.rcpt_check = test_rcpt_check,
		.starttls_offered = false,
	};
	test_commit_results = NULL;
	test_implicit_tls = false;
}

/* ---- checks on every reply ---- */

static bool
is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

/* "c.ddd.ddd " at the start of t with c == cls. */
static bool
has_enhanced_code(struct slice t, uint8_t cls)
{
	size_t i = 0;
	if (t.len < 6 || t.ptr[0] != cls || t.ptr[1] != '.')
		return false;
	i = 2;
	for (int part = 0; part < 2; part++) {
		size_t start = i;
		while (i < t.len && is_digit(t.ptr[i]) && i - start < 3)
			i++;
		if (i == start || i >= t.len)
			return false;
		if (t.ptr[i] != (part == 0 ? '.' : ' '))
			return false;
		i++;
	}
	return true;
}

static void
check_reply(struct slice rep)
{
	cr_assert_geq(rep.len, 6, "reply too short");
	cr_assert(rep.ptr[rep.len - 2] == '\r' && rep.ptr[rep.len - 1] == '\n');
	size_t i = 0;
	uint8_t code[3];
	memcpy(code, rep.ptr, 3);
	cr_assert(code[0] >= '2' && code[0] <= '5', "bad reply class");
	bool last = false;
	while (i < rep.len) {
		cr_assert_not(last, "text after the last line of a reply");
		const uint8_t *lf = memchr(rep.ptr + i, '\n', rep.len - i);
		cr_assert_not_null(lf);
		struct slice line = slice_make(rep.ptr + i, (size_t)(lf - (rep.ptr + i)) - 1);
		cr_assert_geq(line.len, 4);
		cr_assert(memcmp(line.ptr, code, 3) == 0, "one code per reply");
		cr_assert(line.ptr[3] == ' ' || line.ptr[3] == '-');
		last = line.ptr[3] == ' ';
		bool exempt = memcmp(code, "354", 3) == 0 || memcmp(code, "334", 3) == 0
			|| ((memcmp(code, "220", 3) == 0 || memcmp(code, "250", 3) == 0)
				&& slice_starts_with(slice_skip(line, 4), SLICE_LIT(HOST)));
		if (i == 0 && !exempt)
			cr_assert(has_enhanced_code(slice_skip(line, 4), code[0]),
				"reply without a matching enhanced code: %.*s", (int)line.len, line.ptr);
		i = (size_t)(lf - rep.ptr) + 1;
	}
	cr_assert(last, "a reply ends with a 'ddd ' line");
}

/* ---- the engine-like driver ---- */

static void
snap_envelope(struct run *r)
{
	if (r->ncommits >= RUN_COMMITS_MAX)
		return;
	struct snap *sn = &r->commits[r->ncommits++];
	const struct smtp_envelope *env = smtp_server_envelope(r->s);
	snap_copy(&sn->helo, env->helo);
	snap_copy(&sn->mail_from, env->mail_from);
	snap_copy(&sn->envid, env->dsn_envid);
	snap_copy(&sn->mail_auth, env->mail_auth);
	sn->esmtp = env->esmtp;
	sn->smtputf8 = env->smtputf8;
	sn->declared_size = env->declared_size;
	sn->body_size = env->body_size;
	sn->body = env->body;
	sn->ret = env->dsn_ret;
	sn->rcpt_count = env->rcpt_count;
	for (uint32_t i = 0; i < env->rcpt_count && i < SNAP_RCPTS_MAX; i++) {
		struct smtp_rcpt rc = smtp_server_rcpt(r->s, i);
		snap_copy(&sn->rcpts[i].path, rc.path);
		snap_copy(&sn->rcpts[i].local, rc.local_part);
		snap_copy(&sn->rcpts[i].domain, rc.domain);
		snap_copy(&sn->rcpts[i].orcpt, rc.orcpt);
		sn->rcpts[i].notify = rc.notify;
	}
}

enum wait { WAIT_NONE, WAIT_COMMIT, WAIT_AUTH, WAIT_TLS };

/* The driver's verdict on credentials. */
static int
auth_verdict(struct slice user, struct slice password)
{
	if (slice_eq(user, SLICE_LIT("tempfail")))
		return -EIO;
	return (slice_eq(user, SLICE_LIT("alice")) || slice_eq(user, SLICE_LIT("alice@B.example")))
		&& slice_eq(password, SLICE_LIT("secret")) ? 0 : -EACCES;
}

/* Records one call's actions; returns what the server now waits for. */
static enum wait
record(struct run *r, const struct smtp_actions *acts)
{
	enum wait wait = WAIT_NONE;
	const uint8_t *reply_end = NULL;
	cr_assert_leq(acts->count, SMTP_ACTIONS_MAX);
	for (uint32_t i = 0; i < acts->count; i++) {
		const struct smtp_action *a = &acts->items[i];
		cr_assert_not(r->closed, "an action after CLOSE");
		switch (a->type) {
		case SMTP_ACTION_REPLY:
			check_reply(a->data);
			if (reply_end != NULL)
				cr_assert_eq(a->data.ptr, reply_end, "replies of one call are contiguous");
			reply_end = a->data.ptr + a->data.len;
			cr_assert_lt(r->nreplies, RUN_REPLIES_MAX);
			r->reply_off[r->nreplies] = r->replies_len;
			r->reply_len[r->nreplies++] = a->data.len;
			memcpy(r->replies + r->replies_len, a->data.ptr, a->data.len);
			r->replies_len += a->data.len;
			break;
		case SMTP_ACTION_BODY:
			if (a->data.len > 0)
				memcpy(r->body + r->body_len, a->data.ptr, a->data.len);
			r->body_len += a->data.len;
			break;
		default:
			cr_assert_lt(r->ntypes, RUN_TYPES_MAX);
			r->types[r->ntypes++] = a->type;
			if (a->type == SMTP_ACTION_COMMIT) {
				cr_assert_eq(i + 1, acts->count, "COMMIT is the last action of a feed");
				snap_envelope(r);
				wait = WAIT_COMMIT;
			}
			if (a->type == SMTP_ACTION_AUTH) {
				cr_assert_eq(i + 1, acts->count, "AUTH is the last action of a feed");
				wait = WAIT_AUTH;
			}
			if (a->type == SMTP_ACTION_STARTTLS) {
				cr_assert_eq(i + 1, acts->count, "STARTTLS is the last action of a feed");
				wait = WAIT_TLS;
			}
			if (a->type == SMTP_ACTION_CLOSE)
				r->closed = true;
			break;
		}
	}
	return wait;
}

static void
pump(struct run *r, uint8_t *buf, size_t *len)
{
	for (uint32_t guard = 0; guard < 10000000; guard++) {
		struct smtp_actions acts = { .count = 0 };
		size_t n = smtp_server_feed(r->s, slice_make(buf, *len), &acts);
		r->feeds++;
		cr_assert_leq(n, *len);
		if (r->closed)
			cr_assert_eq(n, 0, "nothing is consumed after CLOSE");
		enum wait wait = record(r, &acts);
		memmove(buf, buf + n, *len - n);
		*len -= n;
		if (wait == WAIT_TLS) {
			/* The engine drops what follows STARTTLS; nothing may be read until TLS is up. */
			acts.count = 0;
			cr_assert_eq(smtp_server_feed(r->s, slice_make(buf, *len), &acts), 0);
			cr_assert_eq(acts.count, 0);
			*len = 0;
			smtp_server_tls_started(r->s);
			r->tls_started = true;
			return;
		}
		if (wait == WAIT_AUTH) {
			acts.count = 0;
			cr_assert_eq(smtp_server_feed(r->s, slice_make(buf, *len), &acts), 0,
				"nothing is read while the credentials are checked");
			cr_assert_eq(acts.count, 0);
			struct slice user, password;
			smtp_server_auth_credentials(r->s, &user, &password);
			snap_copy(&r->auth_user, user);
			snap_copy(&r->auth_password, password);
			r->auth_calls++;
			smtp_server_auth_done(r->s, auth_verdict(user, password), &acts);
			record(r, &acts);
			continue;
		}
		if (wait == WAIT_COMMIT) {
			int res = 0;
			if (r->commit_results != NULL && *r->commit_results != 1)
				res = *r->commit_results++;
			char qid[16];
			int qlen = snprintf(qid, sizeof(qid), "Q%zu", r->ncommits);
			acts.count = 0;
			cr_assert_eq(smtp_server_feed(r->s, slice_make(buf, *len), &acts), 0,
				"nothing is read while the commit is pending");
			cr_assert_eq(acts.count, 0);
			smtp_server_committed(r->s, res, slice_make(qid, (size_t)qlen), &acts);
			record(r, &acts);
			continue;
		}
		if (n == 0 && acts.count == 0)
			break;
	}
	if (!r->closed && r->s->state != SMTP_STATE_COMMIT_WAIT)
		cr_assert_lt(*len, SMTP_CMD_LINE_LEN_MAX, "feed leaves less than a line unconsumed");
}

enum feed_mode { FEED_WHOLE, FEED_BYTES, FEED_SPLIT };

static struct run *
run_new(void)
{
	struct run *r = calloc(1, sizeof(*r));
	cr_assert_not_null(r);
	r->replies = malloc(1u << 20);
	r->body = malloc(1u << 20);
	r->s = malloc(sizeof(*r->s));
	cr_assert(r->replies && r->body && r->s);
	memset(r->s, 0xa5, sizeof(*r->s));   /* catches reads of fields init did not set */
	return r;
}

static void
run_free(struct run *r)
{
	free(r->replies);
	free(r->body);
	free(r->s);
	free(r);
}

/* Clears r for another run, keeping its buffers. */
static void
run_reset(struct run *r)
{
	r->replies_len = r->nreplies = r->body_len = r->ntypes = r->ncommits = r->feeds = 0;
	r->rcpt_calls = 0;
	r->closed = false;
	r->tls_started = false;
	r->auth_calls = 0;
	r->auth_user.len = r->auth_password.len = 0;
}

/* Where TLS_MARK is in in (in.len if nowhere); *rest is in without the mark. */
static size_t
tls_mark_split(struct slice in, uint8_t *rest, size_t *rest_len)
{
	const uint8_t *m = memmem(in.ptr, in.len, TLS_MARK, sizeof(TLS_MARK) - 1);
	size_t at = m != NULL ? (size_t)(m - in.ptr) : in.len;
	memcpy(rest, in.ptr, at);
	*rest_len = at;
	if (m != NULL) {
		size_t after = in.len - at - (sizeof(TLS_MARK) - 1);
		memcpy(rest + at, m + sizeof(TLS_MARK) - 1, after);
		*rest_len += after;
	}
	return at;
}

static void
run_into(struct run *r, struct slice marked, enum feed_mode mode, size_t split)
{
	run_reset(r);
	r->commit_results = test_commit_results;
	smtp_server_init(r->s, &test_cfg, r);
	if (test_implicit_tls)
		smtp_server_tls_started(r->s);
	struct smtp_actions acts = { .count = 0 };
	smtp_server_start(r->s, &acts);
	record(r, &acts);
	uint8_t *text = malloc(marked.len + 1);
	size_t text_len;
	size_t mark = tls_mark_split(marked, text, &text_len);
	struct slice in = slice_make(text, text_len);
	uint8_t *buf = malloc(in.len + 1);
	size_t len = 0;
	size_t pos = 0;
	while (pos < in.len) {
		size_t end = mode == FEED_WHOLE ? in.len : mode == FEED_BYTES ? pos + 1
			: (pos < split ? split : in.len);
		if (end > in.len)
			end = in.len;   /* split offsets count the mark's octets too */
		if (pos < mark && end > mark)
			end = mark;   /* the client waits for the 220 before it starts TLS */
		memcpy(buf + len, in.ptr + pos, end - pos);
		len += end - pos;
		pos = end;
		bool was_tls = r->tls_started;
		pump(r, buf, &len);
		if (!was_tls && r->tls_started && pos < mark)
			pos = mark;   /* plaintext pipelined after STARTTLS: dropped */
	}
	free(buf);
	free(text);
}

static struct run *
run_transcript(struct slice in, enum feed_mode mode, size_t split)
{
	struct run *r = run_new();
	run_into(r, in, mode, split);
	return r;
}

static void
run_compare(const struct run *a, const struct run *b, const char *how)
{
	cr_assert_eq(a->replies_len, b->replies_len, "%s: reply bytes differ in length:\n%.*s\n--\n%.*s",
		how, (int)a->replies_len, a->replies, (int)b->replies_len, b->replies);
	cr_assert(memcmp(a->replies, b->replies, a->replies_len) == 0, "%s: replies differ", how);
	cr_assert_eq(a->body_len, b->body_len, "%s: body lengths differ", how);
	cr_assert(memcmp(a->body, b->body, a->body_len) == 0, "%s: bodies differ", how);
	cr_assert_eq(a->ntypes, b->ntypes, "%s: action counts differ", how);
	cr_assert(memcmp(a->types, b->types, a->ntypes * sizeof(a->types[0])) == 0,
		"%s: action sequences differ", how);
	cr_assert_eq(a->rcpt_calls, b->rcpt_calls, "%s: policy calls differ", how);
	cr_assert_eq(a->ncommits, b->ncommits, "%s: commits differ", how);
	cr_assert_eq(a->auth_calls, b->auth_calls, "%s: AUTH checks differ", how);
	cr_assert_eq(a->tls_started, b->tls_started, "%s: TLS differs", how);
}

/* Feeds in whole, byte by byte and split at every offset; returns the whole run. */
static struct run *
transcript_n(const char *text, size_t len)
{
	struct slice in = slice_make(text, len);
	struct run *whole = run_transcript(in, FEED_WHOLE, 0);
	struct run *bytes = run_transcript(in, FEED_BYTES, 0);
	run_compare(whole, bytes, "byte by byte");
	for (size_t k = 1; k < len; k++) {
		run_into(bytes, in, FEED_SPLIT, k);
		char how[64];
		snprintf(how, sizeof(how), "split at %zu", k);
		run_compare(whole, bytes, how);
	}
	run_free(bytes);
	return whole;
}

#define transcript(lit) transcript_n((lit), sizeof(lit) - 1)

static struct slice
reply(const struct run *r, size_t i)
{
	cr_assert_lt(i, r->nreplies, "no reply %zu (only %zu)", i, r->nreplies);
	return slice_make(r->replies + r->reply_off[i], r->reply_len[i]);
}

/* Each reply of r, in order, begins with the matching prefix; NULL ends the list. */
static void
expect_replies(const struct run *r, ...)
{
	va_list ap;
	va_start(ap, r);
	size_t i = 0;
	const char *want;
	while ((want = va_arg(ap, const char *)) != NULL) {
		struct slice got = reply(r, i);
		cr_assert(slice_starts_with(got, slice_make(want, strlen(want))),
			"reply %zu: want \"%s...\", got \"%.*s\"", i, want, (int)got.len, got.ptr);
		i++;
	}
	va_end(ap);
	cr_assert_eq(i, r->nreplies, "want %zu replies, got %zu", i, r->nreplies);
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
	cr_assert_eq(i, r->ntypes, "want %zu non-reply actions, got %zu", i, r->ntypes);
}

static bool
body_is(const struct run *r, const char *want)
{
	return r->body_len == strlen(want) && memcmp(r->body, want, r->body_len) == 0;
}

#define BEGIN SMTP_ACTION_BODY_BEGIN
#define DISCARD SMTP_ACTION_BODY_DISCARD
#define COMMIT SMTP_ACTION_COMMIT
#define CLOSE SMTP_ACTION_CLOSE
#define END (-1)

TestSuite(smtp_server, .init = cfg_reset);

/* ---- greeting, HELO, EHLO ---- */

Test(smtp_server, greeting_is_220_with_hostname) /* RFC 5321 4.2, 3.1 */
{
	struct run *r = transcript("");
	expect_replies(r, "220 " HOST " ESMTP", NULL);
	run_free(r);
}

Test(smtp_server, ehlo_lists_the_extensions) /* RFC 5321 4.1.1.1, RFC 2920, 1870, 6152, 6531 */
{
	struct run *r = transcript("EHLO client.example\r\n");
	struct slice got = reply(r, 1);
	struct slice want = SLICE_LIT("250-" HOST "\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
		"250-8BITMIME\r\n250-SMTPUTF8\r\n250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n250 DSN\r\n");
	cr_assert(slice_eq(got, want), "got %.*s", (int)got.len, got.ptr);
	run_free(r);
}

Test(smtp_server, ehlo_offers_starttls_only_when_configured) /* RFC 3207 4 */
{
	test_cfg.starttls_offered = true;
	struct run *r = transcript("EHLO client.example\r\n");
	struct slice got = reply(r, 1);
	cr_assert(memmem(got.ptr, got.len, "250-STARTTLS\r\n", 14) != NULL);
	run_free(r);
}

Test(smtp_server, helo_gets_a_single_line_250) /* RFC 5321 4.1.1.1 */
{
	struct run *r = transcript("HELO client.example\r\nMAIL FROM:<a@b.example>\r\n");
	expect_replies(r, "220 ", "250 " HOST "\r\n", "250 2.1.0", NULL);
	run_free(r);
}

Test(smtp_server, bare_helo_or_ehlo_gets_501) /* RFC 5321 4.1.1.1: the domain is required */
{
	struct run *r = transcript("HELO\r\nEHLO\r\nEHLO   \r\nHELO a\tb\r\nEHLO \xff\r\n"
		"MAIL FROM:<a@b.example>\r\nEHLO b\xc3\xbc.example\r\n");
	expect_replies(r, "220 ", "501 5.5.4", "501 5.5.4", "501 5.5.4", "501 5.5.4", "501 5.5.4",
		"503 5.5.1", "250-", NULL);
	run_free(r);
}

Test(smtp_server, verbs_are_case_insensitive) /* RFC 5321 2.4 */
{
	struct run *r = transcript("ehlo c.example\r\nmAiL fRoM:<a@b.example>\r\nrcpt to:<u@d.example>"
		"\r\nNoOp\r\nrset\r\nquit\r\n");
	expect_replies(r, "220 ", "250-", "250 2.1.0", "250 2.1.5", "250 2.0.0", "250 2.0.0",
		"221 2.0.0", NULL);
	expect_types(r, CLOSE, END);
	run_free(r);
}

/* ---- a whole transaction ---- */

Test(smtp_server, data_transaction_commits_and_answers_250_after_it) /* RFC 5321 4.1.1.4, 3.3 */
{
	struct run *r = transcript("EHLO client.example\r\nMAIL FROM:<a@b.example>\r\n"
		"RCPT TO:<u@d.example>\r\nRCPT TO:<v@d.example>\r\nDATA\r\n"
		"Subject: hi\r\n\r\n..dot\r\nbody\r\n.\r\nNOOP\r\n");
	expect_replies(r, "220 ", "250-", "250 2.1.0", "250 2.1.5", "250 2.1.5", "354 ",
		"250 2.0.0 Ok: queued as Q1\r\n", "250 2.0.0", NULL);
	expect_types(r, BEGIN, COMMIT, END);
	cr_assert(body_is(r, "Subject: hi\r\n\r\n.dot\r\nbody\r\n"));
	const struct snap *sn = &r->commits[0];
	cr_assert_str_eq(sn->helo.s, "client.example");
	cr_assert(sn->esmtp);
	cr_assert_str_eq(sn->mail_from.s, "a@b.example");
	cr_assert_eq(sn->rcpt_count, 2);
	cr_assert_str_eq(sn->rcpts[0].path.s, "u@d.example");
	cr_assert_str_eq(sn->rcpts[0].local.s, "u");
	cr_assert_str_eq(sn->rcpts[0].domain.s, "d.example");
	cr_assert_str_eq(sn->rcpts[1].path.s, "v@d.example");
	cr_assert_eq(sn->body_size, strlen("Subject: hi\r\n\r\n.dot\r\nbody\r\n"));
	run_free(r);
}

Test(smtp_server, empty_message_commits) /* RFC 5321 4.1.1.4 */
{
	struct run *r = transcript("HELO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>\r\n"
		"DATA\r\n.\r\n");
	expect_replies(r, "220 ", "250 ", "250 2.1.0", "250 2.1.5", "354 ", "250 2.0.0 Ok", NULL);
	cr_assert_eq(r->body_len, 0);
	cr_assert_eq(r->commits[0].esmtp, false);
	run_free(r);
}

Test(smtp_server, null_reverse_path_is_accepted) /* RFC 5321 4.5.5, 3.6.3 */
{
	struct run *r = transcript("EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<u@d.example>\r\nDATA\r\nx\r\n"
		".\r\n");
	expect_replies(r, "220 ", "250-", "250 2.1.0", "250 2.1.5", "354 ", "250 2.0.0", NULL);
	cr_assert_eq(r->commits[0].mail_from.len, 0);
	run_free(r);
}

Test(smtp_server, postmaster_without_domain_goes_to_policy_with_empty_domain) /* 4.5.1 */
{
	struct run *r = transcript("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<PostMaster>\r\n"
		"RCPT TO:<postmaster@d.example>\r\nRCPT TO:<postmasterx>\r\nMAIL FROM:<postmaster>\r\n");
	expect_replies(r, "220 ", "250-", "250 2.1.0", "250 2.1.5", "250 2.1.5", "501 5.1.3",
		"503 5.5.1", NULL);
	cr_assert_eq(r->rcpt_calls, 2);
	run_free(r);
	r = transcript("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<PostMaster>\r\nDATA\r\n.\r\n");
	cr_assert_str_eq(r->last_call.local.s, "PostMaster");
	cr_assert_eq(r->last_call.domain.len, 0);
	cr_assert_str_eq(r->commits[0].rcpts[0].path.s, "PostMaster");
	cr_assert_eq(r->commits[0].rcpts[0].domain.len, 0);
	run_free(r);
}

/* ---- sequence errors ---- */

Test(smtp_server, mail_before_ehlo_gets_503) /* RFC 5321 4.1.4 */
{
	struct run *r = transcript("MAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>\r\nDATA\r\n");
	expect_replies(r, "220 ", "503 5.5.1", "503 5.5.1", "503 5.5.1", NULL);
	run_free(r);
}

Test(smtp_server, rcpt_before_mail_and_data_before_rcpt_get_503) /* RFC 5321 4.1.4 */
{
	struct run *r = transcript("EHLO c\r\nRCPT TO:<u@d.example>\r\nDATA\r\n"
		"MAIL FROM:<a@b.example>\r\nDATA\r\nMAIL FROM:<a@b.example>\r\n");
	expect_replies(r, "220 ", "250-", "503 5.5.1 Error: need MAIL", "503 5.5.1 Error: need MAIL",
		"250 2.1.0", "503 5.5.1 Error: need RCPT", "503 5.5.1 Error: nested MAIL", NULL);
	cr_assert_eq(r->ntypes, 0);
	run_free(r);
}

Test(smtp_server, unknown_command_gets_500) /* RFC 5321 4.2.4 */
{
	struct run *r = transcript("FOO bar\r\n\r\nMAILX FROM:<a@b>\r\nTURN\r\n");
	expect_replies(r, "220 ", "500 5.5.2", "500 5.5.2", "500 5.5.2", "500 5.5.2", NULL);
	run_free(r);
}

Test(smtp_server, malformed_mail_and_rcpt_get_501) /* RFC 5321 4.1.1.2, 4.1.1.3, 4.1.2 */
{
	struct run *r = transcript("EHLO c\r\n"
		"MAIL FROM <a@b.example>\r\n"     /* missing colon */
		"MAIL FROM:a@b.example\r\n"       /* missing brackets */
		"MAIL FROM:<a@b.example\r\n"      /* missing > */
		"MAIL FROM:<a@@b.example>\r\n"
		"MAIL FROM:<a@b.example>x\r\n"
		"MAIL\r\n"
		"MAIL FROM:\r\n"
		"MAIL FROM: <a@b.example>\r\n"    /* a space after the colon is tolerated */
		"RCPT TO <u@d.example>\r\n"
		"RCPT TO:u@d.example\r\n"
		"RCPT TO:<>\r\n"
		"RCPT TO:<u@-d.example>\r\n"
		"RCPT TO:<u.@d.example>\r\n"
		"RCPT TO:<u@d.example.>\r\n"
		"RCPT\r\n");
	expect_replies(r, "220 ", "250-", "501 5.5.4", "501 5.1.7", "501 5.1.7", "501 5.1.7",
		"501 5.5.4", "501 5.5.4", "501 5.1.7", "250 2.1.0", "501 5.5.4", "501 5.1.3",
		"501 5.1.3", "501 5.1.3", "501 5.1.3", "501 5.1.3", "501 5.5.4", NULL);
	cr_assert_eq(r->rcpt_calls, 0);
	run_free(r);
}

Test(smtp_server, ehlo_resets_the_transaction) /* RFC 5321 4.1.4 */
{
	struct run *r = transcript("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>\r\n"
		"EHLO again\r\nRCPT TO:<u@d.example>\r\nMAIL FROM:<x@b.example>\r\nRCPT TO:<w@d.example>\r\n"
		"HELO third\r\nDATA\r\nMAIL FROM:<y@b.example>\r\nRCPT TO:<z@d.example>\r\nDATA\r\n.\r\n");
	expect_replies(r, "220 ", "250-", "250 2.1.0", "250 2.1.5", "250-", "503 5.5.1",
		"250 2.1.0", "250 2.1.5", "250 " HOST, "503 5.5.1", "250 2.1.0", "250 2.1.5", "354 ",
		"250 2.0.0", NULL);
	cr_assert_str_eq(r->commits[0].helo.s, "third");
	cr_assert_str_eq(r->commits[0].mail_from.s, "y@b.example");
	cr_assert_eq(r->commits[0].rcpt_count, 1);
	cr_assert_str_eq(r->commits[0].rcpts[0].path.s, "z@d.example");
	run_free(r);
}

Test(smtp_server, rset_resets_the_transaction) /* RFC 5321 4.1.1.5 */
{
	struct run *r = transcript("RSET\r\nEHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>"
		"\r\nRSET\r\nDATA\r\nRCPT TO:<u@d.example>\r\nMAIL FROM:<b@b.example>\r\n");
	expect_replies(r, "220 ", "250 2.0.0", "250-", "250 2.1.0", "250 2.1.5", "250 2.0.0",
		"503 5.5.1", "503 5.5.1", "250 2.1.0", NULL);
	run_free(r);
}

Test(smtp_server, quit_answers_221_and_closes) /* RFC 5321 4.1.1.10 */
{
	struct run *r = transcript("QUIT\r\nNOOP\r\n");
	expect_replies(r, "220 ", "221 2.0.0", NULL);
	expect_types(r, CLOSE, END);
	cr_assert(smtp_server_closed(r->s));
	struct smtp_actions acts = { .count = 0 };
	cr_assert_eq(smtp_server_feed(r->s, SLICE_LIT("NOOP\r\n"), &acts), 0);
	cr_assert_eq(acts.count, 0);
	run_free(r);
}

Test(smtp_server, help_noop_vrfy_expn) /* RFC 5321 4.1.1.8, 4.1.1.9, 3.5.3, 7.3 */
{
	struct run *r = transcript("HELP\r\nHELP MAIL\r\nNOOP\r\nNOOP anything\r\nVRFY u\r\n"
		"VRFY unknown\r\nVRFY\r\nEXPN list\r\n");
	expect_replies(r, "220 ", "214 2.0.0", "214 2.0.0", "250 2.0.0", "250 2.0.0", "252 2.0.0",
		"252 2.0.0", "501 5.5.4", "502 5.5.1", NULL);
	cr_assert(slice_eq(reply(r, 5), reply(r, 6)), "VRFY answers the same for everyone");
	cr_assert_eq(r->rcpt_calls, 0);
	run_free(r);
}

Test(smtp_server, starttls_and_auth_not_offered_get_502) /* RFC 3207 4, RFC 4954 4 */
{
	struct run *r = transcript("EHLO c\r\nSTARTTLS\r\nAUTH PLAIN AGFAYg==\r\nNOOP\r\n");
	expect_replies(r, "220 ", "250-", "502 5.5.1", "502 5.5.1", "250 2.0.0", NULL);
	run_free(r);
}

Test(smtp_server, starttls_stops_the_feed_until_the_handshake_is_done) /* RFC 3207 4.2 */
{
	test_cfg.starttls_offered = true;
	struct smtp_server *s = malloc(sizeof(*s));
	smtp_server_init(s, &test_cfg, NULL);
	struct smtp_actions acts = { .count = 0 };
	smtp_server_start(s, &acts);
	static const char in[] = "EHLO c\r\nSTARTTLS\r\nMAIL FROM:<x@y.example>\r\n";
	acts.count = 0;
	size_t n = smtp_server_feed(s, SLICE_LIT(in), &acts);
	cr_assert_eq(n, sizeof("EHLO c\r\nSTARTTLS\r\n") - 1, "stops right after the STARTTLS line");
	cr_assert_eq(acts.count, 3);
	cr_assert(slice_starts_with(acts.items[1].data, SLICE_LIT("220 2.0.0")));
	cr_assert_eq(acts.items[2].type, SMTP_ACTION_STARTTLS);
	cr_assert_not(smtp_server_tls_active(s));
	/* An engine that offered the pipelined rest anyway would get nothing read or answered. */
	acts.count = 0;
	cr_assert_eq(smtp_server_feed(s, slice_skip(SLICE_LIT(in), n), &acts), 0);
	cr_assert_eq(acts.count, 0);
	smtp_server_tls_started(s);
	cr_assert(smtp_server_tls_active(s));
	acts.count = 0;
	static const char mail[] = "MAIL FROM:<a@b.example>\r\n";
	cr_assert_eq(smtp_server_feed(s, SLICE_LIT(mail), &acts), sizeof(mail) - 1);
	cr_assert(slice_starts_with(acts.items[0].data, SLICE_LIT("503 5.5.1 Error: send HELO/EHLO")),
		"EHLO is required again");
	free(s);
}

Test(smtp_server, plaintext_pipelined_after_starttls_is_never_answered) /* CVE-2011-0411 */
{
	test_cfg.starttls_offered = true;
	struct run *r = transcript("EHLO c\r\nSTARTTLS\r\nMAIL FROM:<x@y.example>\r\nRSET\r\n"
		TLS_MARK "EHLO c\r\nNOOP\r\n");
	expect_replies(r, "220 ", "250-", "220 2.0.0", "250-", "250 2.0.0", NULL);
	expect_types(r, SMTP_ACTION_STARTTLS, END);
	cr_assert(r->tls_started);
	run_free(r);
}

Test(smtp_server, starttls_is_refused_with_a_parameter_in_a_transaction_and_before_ehlo)
{ /* RFC 3207 4 */
	test_cfg.starttls_offered = true;
	struct run *r = transcript("STARTTLS\r\nEHLO c\r\nMAIL FROM:<a@b.example>\r\nSTARTTLS\r\n"
		"RSET\r\nSTARTTLS x\r\nSTARTTLS\r\n" TLS_MARK "EHLO c\r\n");
	expect_replies(r, "220 ", "503 5.5.1", "250-", "250 2.1.0", "503 5.5.1", "250 2.0.0",
		"501 5.5.4", "220 2.0.0", "250-", NULL);
	run_free(r);
}

Test(smtp_server, after_tls_starttls_is_not_offered_and_a_second_one_gets_503) /* RFC 3207 4 */
{
	test_cfg.starttls_offered = true;
	struct run *r = transcript("EHLO c\r\nSTARTTLS\r\n" TLS_MARK "EHLO c\r\nSTARTTLS\r\n"
		"STARTTLS x\r\n");
	expect_replies(r, "220 ", "250-", "220 2.0.0", "250-", "503 5.5.1 Error: TLS already active",
		"503 5.5.1", NULL);
	cr_assert(memmem(reply(r, 1).ptr, reply(r, 1).len, "STARTTLS", 8) != NULL);
	cr_assert(memmem(reply(r, 3).ptr, reply(r, 3).len, "STARTTLS", 8) == NULL);
	run_free(r);
}

Test(smtp_server, the_session_starts_over_after_tls) /* RFC 3207 4.2 */
{
	test_cfg.starttls_offered = true;
	struct run *r = transcript("EHLO before.example\r\nSTARTTLS\r\n" TLS_MARK
		"MAIL FROM:<a@b.example>\r\nHELO after.example\r\nMAIL FROM:<a@b.example>\r\n"
		"RCPT TO:<u@d.example>\r\nDATA\r\n.\r\n");
	expect_replies(r, "220 ", "250-", "220 2.0.0", "503 5.5.1", "250 ", "250 2.1.0",
		"250 2.1.5", "354 ", "250 2.0.0 Ok: queued as Q1", NULL);
	cr_assert_str_eq(r->commits[0].helo.s, "after.example", "nothing from before TLS is kept");
	cr_assert_not(r->commits[0].esmtp);
	run_free(r);
}

Test(smtp_server, implicit_tls_never_offers_starttls) /* RFC 8314 3 */
{
	test_cfg.starttls_offered = true;
	test_implicit_tls = true;
	struct run *r = transcript("EHLO c\r\nSTARTTLS\r\n");
	expect_replies(r, "220 ", "250-", "503 5.5.1", NULL);
	cr_assert(memmem(reply(r, 1).ptr, reply(r, 1).len, "STARTTLS", 8) == NULL);
	run_free(r);
}

/* ---- AUTH (RFC 4954) ---- */

#define AUTH_OK "AUTH PLAIN AGFsaWNlAHNlY3JldA==\r\n"   /* \0alice\0secret */
#define AFTER_TLS "EHLO c\r\nSTARTTLS\r\n" TLS_MARK "EHLO c\r\n"

static void
cfg_submission(void)
{
	test_cfg.starttls_offered = true;
	test_cfg.auth_offered = true;
}

Test(smtp_server, auth_is_advertised_and_accepted_only_over_tls) /* RFC 4954 4, DESIGN */
{
	cfg_submission();
	struct run *r = transcript("EHLO c\r\n" AUTH_OK "STARTTLS\r\n" TLS_MARK "EHLO c\r\n"
		AUTH_OK);
	expect_replies(r, "220 ", "250-", "538 5.7.11", "220 2.0.0", "250-", "235 2.7.0", NULL);
	cr_assert(memmem(reply(r, 1).ptr, reply(r, 1).len, "AUTH", 4) == NULL);
	cr_assert(memmem(reply(r, 4).ptr, reply(r, 4).len, "250-AUTH PLAIN LOGIN\r\n", 22) != NULL);
	cr_assert_eq(r->auth_calls, 1, "nothing is checked before TLS");
	cr_assert_str_eq(r->auth_user.s, "alice");
	cr_assert_str_eq(r->auth_password.s, "secret");
	cr_assert(smtp_server_authenticated(r->s));
	cr_assert(slice_eq(smtp_server_auth_user(r->s), SLICE_LIT("alice")));
	run_free(r);
}

Test(smtp_server, auth_not_offered_on_the_listener_gets_502_even_over_tls) /* RFC 4954 4 */
{
	test_cfg.starttls_offered = true;
	struct run *r = transcript(AFTER_TLS AUTH_OK);
	expect_replies(r, "220 ", "250-", "220 2.0.0", "250-", "502 5.5.1", NULL);
	cr_assert(memmem(reply(r, 3).ptr, reply(r, 3).len, "AUTH", 4) == NULL);
	run_free(r);
}

Test(smtp_server, auth_plain_with_and_without_initial_response) /* RFC 4954 4, RFC 4616 */
{
	cfg_submission();
	struct run *r = transcript(AFTER_TLS "AUTH PLAIN\r\nAGFsaWNlAHNlY3JldA==\r\n");
	expect_replies(r, "220 ", "250-", "220 2.0.0", "250-", "334 \r\n", "235 2.7.0", NULL);
	run_free(r);
	r = transcript(AFTER_TLS "auth plain YWxpY2UAYWxpY2UAc2VjcmV0\r\n");   /* authzid = authcid */
	expect_replies(r, "220 ", "250-", "220 2.0.0", "250-", "235 2.7.0", NULL);
	run_free(r);
}

Test(smtp_server, auth_login_with_and_without_initial_response) /* draft-murchison-sasl-login */
{
	cfg_submission();
	struct run *r = transcript(AFTER_TLS "AUTH LOGIN\r\nYWxpY2U=\r\nc2VjcmV0\r\n");
	expect_replies(r, "220 ", "250-", "220 2.0.0", "250-", "334 VXNlcm5hbWU6\r\n",
		"334 UGFzc3dvcmQ6\r\n", "235 2.7.0", NULL);
	run_free(r);
	r = transcript(AFTER_TLS "AUTH LOGIN YWxpY2U=\r\nc2VjcmV0\r\n");
	expect_replies(r, "220 ", "250-", "220 2.0.0", "250-", "334 UGFzc3dvcmQ6\r\n",
		"235 2.7.0", NULL);
	cr_assert_str_eq(r->auth_password.s, "secret");
	run_free(r);
}

Test(smtp_server, bad_credentials_get_535_with_the_same_text_for_unknown_users) /* 4954 6 */
{
	cfg_submission();
	struct run *r = transcript(AFTER_TLS "AUTH PLAIN AGFsaWNlAHdyb25n\r\n"
		"AUTH PLAIN AG5vc3VjaHVzZXIAd3Jvbmc=\r\n" AUTH_OK);
	expect_replies(r, "220 ", "250-", "220 2.0.0", "250-", "535 5.7.8", "535 5.7.8",
		"235 2.7.0", NULL);
	cr_assert(slice_eq(reply(r, 4), reply(r, 5)), "unknown and known users look the same");
	cr_assert_eq(smtp_server_auth_failures(r->s), 2);
	run_free(r);
}

Test(smtp_server, repeated_auth_failures_end_with_421) /* RFC 4954 6, issue 11 */
{
	cfg_submission();
	struct run *r = transcript(AFTER_TLS "AUTH PLAIN AGFsaWNlAHdyb25n\r\n"
		"AUTH LOGIN YWxpY2U=\r\nd3Jvbmc=\r\nAUTH PLAIN Ym9iAGFsaWNlAHNlY3JldA==\r\n" AUTH_OK);
	expect_replies(r, "220 ", "250-", "220 2.0.0", "250-", "535 5.7.8", "334 ", "535 5.7.8",
		"535 5.7.8", "421 4.7.0", NULL);
	expect_types(r, SMTP_ACTION_STARTTLS, SMTP_ACTION_AUTH, SMTP_ACTION_AUTH, CLOSE, END);
	run_free(r);
}

Test(smtp_server, a_failed_check_gets_454_and_does_not_count) /* RFC 4954 6 */
{
	cfg_submission();
	struct run *r = transcript(AFTER_TLS "AUTH PLAIN AHRlbXBmYWlsAHg=\r\n" AUTH_OK);
	expect_replies(r, "220 ", "250-", "220 2.0.0", "250-", "454 4.7.0", "235 2.7.0", NULL);
	cr_assert_eq(smtp_server_auth_failures(r->s), 0);
	run_free(r);
}

Test(smtp_server, malformed_base64_and_cancel_get_501) /* RFC 4954 4 */
{
	cfg_submission();
	struct run *r = transcript(AFTER_TLS "AUTH PLAIN AGFsaWNlAHNlY3JldA=\r\n"
		"AUTH PLAIN\r\n!!!!\r\nAUTH LOGIN\r\nYWxpY2U=\r\n*\r\nAUTH PLAIN\r\n*\r\n"
		"AUTH PLAIN AGFsaWNlAA==\r\nAUTH PLAIN =\r\nNOOP\r\n");
	expect_replies(r, "220 ", "250-", "220 2.0.0", "250-", "501 5.5.2", "334 ", "501 5.5.2",
		"334 VXNl", "334 UGFz", "501 5.7.0", "334 ", "501 5.7.0", "501 5.5.2", "501 5.5.2",
		"250 2.0.0", NULL);
	cr_assert_eq(r->auth_calls, 0, "nothing malformed is ever checked");
	cr_assert_eq(smtp_server_auth_failures(r->s), 0);
	run_free(r);
}

Test(smtp_server, unknown_mechanism_gets_504_and_syntax_errors_501) /* RFC 4954 4 */
{
	cfg_submission();
	struct run *r = transcript(AFTER_TLS "AUTH CRAM-MD5\r\nAUTH\r\nAUTH PLAIN a b\r\n"
		"AUTH PLAIN  AGFsaWNlAHNlY3JldA==\r\n");
	expect_replies(r, "220 ", "250-", "220 2.0.0", "250-", "504 5.5.4", "501 5.5.4",
		"501 5.5.4", "501 5.5.4", NULL);
	run_free(r);
}

Test(smtp_server, second_auth_and_auth_in_a_transaction_get_503) /* RFC 4954 4 */
{
	cfg_submission();
	struct run *r = transcript(AFTER_TLS "MAIL FROM:<a@b.example>\r\n" AUTH_OK "RSET\r\n"
		AUTH_OK AUTH_OK "EHLO again\r\n" AUTH_OK);
	expect_replies(r, "220 ", "250-", "220 2.0.0", "250-", "250 2.1.0",
		"503 5.5.1 Error: MAIL transaction", "250 2.0.0", "235 2.7.0",
		"503 5.5.1 Error: already authenticated", "250-", "503 5.5.1", NULL);
	run_free(r);
	r = transcript("EHLO c\r\nSTARTTLS\r\n" TLS_MARK AUTH_OK "HELO c\r\n" AUTH_OK);
	expect_replies(r, "220 ", "250-", "220 2.0.0", "503 5.5.1 Error: send EHLO", "250 ",
		"503 5.5.1 Error: send EHLO", NULL);
	run_free(r);
}

Test(smtp_server, an_over_long_auth_response_gets_500_and_ends_the_exchange) /* RFC 4954 4 */
{
	cfg_submission();
	static char in[256 + SMTP_CMD_LINE_LEN_MAX + 64];
	int n = snprintf(in, sizeof(in), "%sAUTH PLAIN\r\n", AFTER_TLS);
	memset(in + n, 'A', SMTP_CMD_LINE_LEN_MAX + 4);
	n += SMTP_CMD_LINE_LEN_MAX + 4;
	n += snprintf(in + n, sizeof(in) - (size_t)n, "\r\nNOOP\r\n");
	struct run *r = transcript_n(in, (size_t)n);
	expect_replies(r, "220 ", "250-", "220 2.0.0", "250-", "334 ", "500 5.5.6", "250 2.0.0",
		NULL);
	run_free(r);
}

Test(smtp_server, the_password_is_wiped_once_checked)
{
	cfg_submission();
	struct run *r = transcript(AFTER_TLS AUTH_OK);
	const uint8_t *pw = r->s->auth.password;
	for (size_t i = 0; i < sizeof(r->s->auth.password); i++)
		cr_assert_eq(pw[i], 0);
	for (size_t i = 0; i < sizeof(r->s->auth.decoded); i++)
		cr_assert_eq(r->s->auth.decoded[i], 0);
	run_free(r);
}

Test(smtp_server, tls_and_auth_required_refuse_mail_with_530) /* RFC 3207 4, RFC 4954 6 */
{
	cfg_submission();
	test_cfg.tls_required = true;
	test_cfg.auth_required = true;
	struct run *r = transcript("EHLO c\r\nMAIL FROM:<a@b.example>\r\nSTARTTLS\r\n" TLS_MARK
		"EHLO c\r\nMAIL FROM:<a@b.example>\r\n" AUTH_OK "MAIL FROM:<a@b.example>\r\n");
	expect_replies(r, "220 ", "250-", "530 5.7.0 Must issue a STARTTLS", "220 2.0.0", "250-",
		"530 5.7.0 Authentication required", "235 2.7.0", "250 2.1.0", NULL);
	run_free(r);
}

Test(smtp_server, mail_auth_parameter_is_accepted_where_auth_is_advertised) /* RFC 4954 5 */
{
	cfg_submission();
	struct run *r = transcript("EHLO c\r\nMAIL FROM:<a@b.example> AUTH=<>\r\nSTARTTLS\r\n"
		TLS_MARK "EHLO c\r\nMAIL FROM:<a@b.example> AUTH=alice+40b.example\r\n"
		"RCPT TO:<u@d.example>\r\nDATA\r\n.\r\n" AUTH_OK
		"MAIL FROM:<a@b.example> AUTH=alice+40b.example\r\nRCPT TO:<u@d.example>\r\n"
		"DATA\r\n.\r\nMAIL FROM:<a@b.example> AUTH=\r\nMAIL FROM:<a@b.example> AUTH=a=b\r\n");
	expect_replies(r, "220 ", "250-", "555 5.5.4", "220 2.0.0", "250-", "250 2.1.0",
		"250 2.1.5", "354 ", "250 2.0.0", "235 2.7.0", "250 2.1.0", "250 2.1.5", "354 ",
		"250 2.0.0", "501 5.5.4", "501 5.5.4", NULL);
	cr_assert_eq(r->commits[0].mail_auth.len, 0, "not authenticated: as if AUTH=<>");
	cr_assert_str_eq(r->commits[1].mail_auth.s, "alice+40b.example");
	run_free(r);
}

/* submission_sender_check (Postfix's reject_sender_login_mismatch): an authenticated client
 * sends as itself. The domain compares without case, the local part exactly; <> is let through
 * (bounces from a client's own filters), as Postfix does. */
Test(smtp_server, sender_check_refuses_another_users_address_with_553) /* RFC 6409 8.1 */
{
	cfg_submission();
	test_cfg.sender_is_login = true;
	struct run *r = transcript(AFTER_TLS "AUTH PLAIN AGFsaWNlQEIuZXhhbXBsZQBzZWNyZXQ=\r\n"
		"MAIL FROM:<bob@b.example>\r\nMAIL FROM:<Alice@b.example>\r\n"
		"MAIL FROM:<alice@b.example.org>\r\nMAIL FROM:<alice@b.EXAMPLE>\r\nRSET\r\n"
		"MAIL FROM:<>\r\n");
	expect_replies(r, "220 ", "250-", "220 2.0.0", "250-", "235 2.7.0",
		"553 5.7.1 Error: sender address not owned by the authenticated user",
		"553 5.7.1", "553 5.7.1", "250 2.1.0", "250 2.0.0", "250 2.1.0", NULL);
	run_free(r);
	/* Off, or not authenticated (port 25 style): any sender. */
	test_cfg.sender_is_login = false;
	r = transcript(AFTER_TLS AUTH_OK "MAIL FROM:<bob@b.example>\r\n");
	expect_replies(r, "220 ", "250-", "220 2.0.0", "250-", "235 2.7.0", "250 2.1.0", NULL);
	run_free(r);
	test_cfg.sender_is_login = true;
	r = transcript("EHLO c\r\nMAIL FROM:<bob@b.example>\r\n");
	expect_replies(r, "220 ", "250-", "250 2.1.0", NULL);
	run_free(r);
}

Test(smtp_server, auth_timeouts_and_shutdown_close_and_ignore_a_late_verdict) /* smtp_server.h */
{
	cfg_submission();
	test_implicit_tls = true;
	struct smtp_server *s = malloc(sizeof(*s));
	smtp_server_init(s, &test_cfg, NULL);
	smtp_server_tls_started(s);
	struct smtp_actions acts = { .count = 0 };
	smtp_server_start(s, &acts);
	acts.count = 0;
	static const char in[] = "EHLO c\r\n" AUTH_OK;
	cr_assert_eq(smtp_server_feed(s, SLICE_LIT(in), &acts), sizeof(in) - 1);
	cr_assert_eq(acts.items[acts.count - 1].type, SMTP_ACTION_AUTH);
	acts.count = 0;
	smtp_server_timeout(s, &acts);
	cr_assert(slice_starts_with(acts.items[0].data, SLICE_LIT("421 4.4.2")));
	cr_assert(smtp_server_closed(s));
	for (size_t i = 0; i < sizeof(s->auth.password); i++)
		cr_assert_eq(s->auth.password[i], 0);
	acts.count = 0;
	smtp_server_auth_done(s, 0, &acts);
	cr_assert_eq(acts.count, 0);
	cr_assert_not(smtp_server_authenticated(s));
	free(s);
}

/* ---- PIPELINING ---- */

Test(smtp_server, pipelined_commands_answer_in_order_in_one_buffer) /* RFC 2920 3.1 */
{
	struct run *r = run_new();
	smtp_server_init(r->s, &test_cfg, r);
	struct smtp_actions acts = { .count = 0 };
	smtp_server_start(r->s, &acts);
	static const char in[] = "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>\r\n"
		"RCPT TO:<unknown@d.example>\r\nRCPT TO:<v@d.example>\r\nNOOP\r\n";
	acts.count = 0;
	size_t n = smtp_server_feed(r->s, SLICE_LIT(in), &acts);
	cr_assert_eq(n, sizeof(in) - 1);
	cr_assert_eq(acts.count, 6);
	record(r, &acts);   /* checks that the replies are contiguous */
	expect_replies(r, "250-", "250 2.1.0", "250 2.1.5", "550 5.1.1", "250 2.1.5", "250 2.0.0",
		NULL);
	run_free(r);
}

Test(smtp_server, a_full_action_array_stops_the_feed_early) /* RFC 2920 3.1, STYLE 7 */
{
	char in[300 * 6 + 1];
	for (int i = 0; i < 300; i++)
		memcpy(in + i * 6, "NOOP\r\n", 6);
	struct run *r = run_new();
	smtp_server_init(r->s, &test_cfg, r);
	struct smtp_actions acts = { .count = 0 };
	smtp_server_start(r->s, &acts);
	acts.count = 0;
	size_t n = smtp_server_feed(r->s, slice_make(in, 300 * 6), &acts);
	cr_assert_lt(n, 300 * 6);
	cr_assert_gt(acts.count, 0);
	cr_assert_leq(acts.count, SMTP_ACTIONS_MAX);
	cr_assert_eq(n, acts.count * 6);
	run_free(r);
	r = transcript_n(in, 300 * 6);
	cr_assert_eq(r->nreplies, 301);
	run_free(r);
}

Test(smtp_server, a_full_reply_buffer_stops_the_feed_early) /* RFC 2920 3.1, STYLE 7 */
{
	char in[30 * 8 + 1];
	for (int i = 0; i < 30; i++)
		memcpy(in + i * 8, "EHLO c\r\n", 8);
	struct run *r = run_new();
	smtp_server_init(r->s, &test_cfg, r);
	struct smtp_actions acts = { .count = 0 };
	smtp_server_start(r->s, &acts);
	acts.count = 0;
	size_t n = smtp_server_feed(r->s, slice_make(in, 30 * 8), &acts);
	cr_assert_lt(acts.count, 30);
	cr_assert_eq(n, acts.count * 8);
	size_t bytes = 0;
	for (uint32_t i = 0; i < acts.count; i++)
		bytes += acts.items[i].data.len;
	cr_assert_leq(bytes, SMTP_REPLY_BUF_SIZE);
	cr_assert_gt(bytes, SMTP_REPLY_BUF_SIZE / 2);
	run_free(r);
	r = transcript_n(in, 30 * 8);
	cr_assert_eq(r->nreplies, 31);
	run_free(r);
}

/* ---- SIZE (RFC 1870) ---- */

Test(smtp_server, mail_size_over_the_limit_gets_552) /* RFC 1870 6.1 */
{
	struct run *r = transcript("EHLO c\r\nMAIL FROM:<a@b.example> SIZE=1001\r\n"
		"MAIL FROM:<a@b.example> SIZE=99999999999999999999999\r\n"
		"MAIL FROM:<a@b.example> SIZE=12x\r\nMAIL FROM:<a@b.example> SIZE=\r\n"
		"MAIL FROM:<a@b.example> SIZE\r\nMAIL FROM:<a@b.example> SIZE=1000\r\n"
		"RCPT TO:<u@d.example>\r\nDATA\r\nx\r\n.\r\n");
	expect_replies(r, "220 ", "250-", "552 5.3.4", "501 5.5.4", "501 5.5.4", "501 5.5.4",
		"501 5.5.4", "250 2.1.0", "250 2.1.5", "354 ", "250 2.0.0", NULL);
	cr_assert_eq(r->commits[0].declared_size, 1000);
	run_free(r);
}

Test(smtp_server, body_at_the_limit_is_committed) /* RFC 1870 6.3 */
{
	char in[2000];
	int n = snprintf(in, sizeof(in), "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>\r\n"
		"DATA\r\n");
	memset(in + n, 'x', 998);
	n += 998;
	n += snprintf(in + n, sizeof(in) - (size_t)n, "\r\n.\r\n");
	struct run *r = transcript_n(in, (size_t)n);
	expect_replies(r, "220 ", "250-", "250 2.1.0", "250 2.1.5", "354 ", "250 2.0.0", NULL);
	cr_assert_eq(r->body_len, 1000);
	run_free(r);
}

Test(smtp_server, body_over_the_limit_is_dropped_with_552_and_the_session_goes_on) /* 1870 6.3 */
{
	char in[3000];
	int n = snprintf(in, sizeof(in), "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>\r\n"
		"DATA\r\n");
	for (int i = 0; i < 100; i++)
		n += snprintf(in + n, sizeof(in) - (size_t)n, "line %03d\r\n", i);   /* 1000 octets */
	n += snprintf(in + n, sizeof(in) - (size_t)n, "X\r\n.\r\nMAIL FROM:<a@b.example>\r\n"
		"RCPT TO:<u@d.example>\r\nDATA\r\nsmall\r\n.\r\n");
	struct run *r = transcript_n(in, (size_t)n);
	expect_replies(r, "220 ", "250-", "250 2.1.0", "250 2.1.5", "354 ", "552 5.3.4",
		"250 2.1.0", "250 2.1.5", "354 ", "250 2.0.0", NULL);
	expect_types(r, BEGIN, DISCARD, BEGIN, COMMIT, END);
	/* The first 1000 octets went out before the discard, then the second message. */
	cr_assert_eq(r->body_len, 1000 + 7);
	cr_assert(memcmp(r->body + 1000, "small\r\n", 7) == 0);
	cr_assert_eq(r->ncommits, 1);
	run_free(r);
}

/* ---- 8BITMIME, SMTPUTF8 ---- */

Test(smtp_server, body_parameter_is_recorded_and_checked) /* RFC 6152 2, RFC 3030 3 */
{
	struct run *r = transcript("EHLO c\r\nMAIL FROM:<a@b.example> BODY=binarymime\r\n"
		"MAIL FROM:<a@b.example> BODY=9BIT\r\nMAIL FROM:<a@b.example> BODY\r\n"
		"MAIL FROM:<a@b.example> BODY=8bitmime\r\nRCPT TO:<u@d.example>\r\nDATA\r\n.\r\n"
		"MAIL FROM:<a@b.example> BODY=7BIT\r\nRCPT TO:<u@d.example>\r\nDATA\r\n.\r\n");
	expect_replies(r, "220 ", "250-", "555 5.5.4", "501 5.5.4", "501 5.5.4", "250 2.1.0",
		"250 2.1.5", "354 ", "250 2.0.0", "250 2.1.0", "250 2.1.5", "354 ", "250 2.0.0", NULL);
	cr_assert_eq(r->commits[0].body, SMTP_BODY_8BITMIME);
	cr_assert_eq(r->commits[1].body, SMTP_BODY_7BIT);
	run_free(r);
}

Test(smtp_server, utf8_addresses_need_smtputf8) /* RFC 6531 3.4, 3.5 */
{
	struct run *r = transcript("EHLO c\r\nMAIL FROM:<j\xc3\xb6rg@b.example>\r\n"
		"MAIL FROM:<a@b.example>\r\nRCPT TO:<\xc3\xa9@d.example>\r\nRCPT TO:<u@d\xc3\xa9.example>\r\n"
		"RSET\r\nMAIL FROM:<j\xc3\xb6rg@b.example> SMTPUTF8\r\nRCPT TO:<\xc3\xa9@d\xc3\xa9.example>"
		"\r\nRCPT TO:<\xff@d.example>\r\nDATA\r\n.\r\n"
		"MAIL FROM:<a@b.example> SMTPUTF8=yes\r\n");
	expect_replies(r, "220 ", "250-", "553 5.6.7", "250 2.1.0", "553 5.6.7", "553 5.6.7",
		"250 2.0.0", "250 2.1.0", "250 2.1.5", "501 5.1.3", "354 ", "250 2.0.0", "501 5.5.4",
		NULL);
	cr_assert(r->commits[0].smtputf8);
	cr_assert_str_eq(r->commits[0].mail_from.s, "j\xc3\xb6rg@b.example");
	cr_assert_str_eq(r->commits[0].rcpts[0].domain.s, "d\xc3\xa9.example");
	run_free(r);
}

/* ---- DSN (RFC 3461) ---- */

Test(smtp_server, dsn_parameters_are_parsed_and_kept) /* RFC 3461 4.1 - 4.4 */
{
	struct run *r = transcript("EHLO c\r\nMAIL FROM:<a@b.example> RET=HDRS ENVID=QQ+2B314\r\n"
		"RCPT TO:<u@d.example> NOTIFY=SUCCESS,FAILURE,DELAY ORCPT=rfc822;u+40d.example\r\n"
		"RCPT TO:<v@d.example> NOTIFY=never\r\nRCPT TO:<w@d.example>\r\nDATA\r\n.\r\n");
	expect_replies(r, "220 ", "250-", "250 2.1.0", "250 2.1.5", "250 2.1.5", "250 2.1.5",
		"354 ", "250 2.0.0", NULL);
	const struct snap *sn = &r->commits[0];
	cr_assert_eq(sn->ret, SMTP_DSN_RET_HDRS);
	cr_assert_str_eq(sn->envid.s, "QQ+2B314");
	cr_assert_eq(sn->rcpts[0].notify, SMTP_DSN_NOTIFY_SUCCESS | SMTP_DSN_NOTIFY_FAILURE
		| SMTP_DSN_NOTIFY_DELAY);
	cr_assert_str_eq(sn->rcpts[0].orcpt.s, "rfc822;u+40d.example");
	cr_assert_eq(sn->rcpts[1].notify, SMTP_DSN_NOTIFY_NEVER);
	cr_assert_eq(sn->rcpts[1].orcpt.len, 0);
	cr_assert_eq(sn->rcpts[2].notify, 0);
	cr_assert_str_eq(sn->rcpts[2].path.s, "w@d.example");
	run_free(r);
}

Test(smtp_server, bad_dsn_values_and_duplicates_get_501) /* RFC 3461 4.1 - 4.4 */
{
	struct run *r = transcript("EHLO c\r\nMAIL FROM:<a@b.example> RET=ALL\r\n"
		"MAIL FROM:<a@b.example> RET=FULL RET=FULL\r\nMAIL FROM:<a@b.example> ENVID=a=b\r\n"
		"MAIL FROM:<a@b.example> ENVID=a+2b\r\nMAIL FROM:<a@b.example> NOTIFY=NEVER\r\n"
		"MAIL FROM:<a@b.example> RET=full\r\n"
		"RCPT TO:<u@d.example> NOTIFY=NEVER,SUCCESS\r\nRCPT TO:<u@d.example> NOTIFY=SOMETIMES\r\n"
		"RCPT TO:<u@d.example> NOTIFY=SUCCESS,\r\nRCPT TO:<u@d.example> NOTIFY=DELAY,DELAY\r\n"
		"RCPT TO:<u@d.example> NOTIFY=DELAY NOTIFY=DELAY\r\nRCPT TO:<u@d.example> ORCPT=rfc822\r\n"
		"RCPT TO:<u@d.example> ORCPT=;u@d\r\nRCPT TO:<u@d.example> ORCPT=rfc822;u+4\r\n"
		"RCPT TO:<u@d.example> RET=FULL\r\nRCPT TO:<u@d.example> FOO=BAR\r\n"
		"RCPT TO:<u@d.example> NOTIFY=failure\r\n");
	expect_replies(r, "220 ", "250-", "501 5.5.4", "501 5.5.4", "501 5.5.4", "501 5.5.4",
		"555 5.5.4", "250 2.1.0", "501 5.5.4", "501 5.5.4", "501 5.5.4", "501 5.5.4",
		"501 5.5.4", "501 5.5.4", "501 5.5.4", "501 5.5.4", "555 5.5.4", "555 5.5.4",
		"250 2.1.5", NULL);
	cr_assert_eq(r->rcpt_calls, 1);
	run_free(r);
}

Test(smtp_server, unknown_parameters_get_555) /* RFC 5321 4.1.1.11 */
{
	struct run *r = transcript("EHLO c\r\nMAIL FROM:<a@b.example> AUTH=<>\r\n"
		"MAIL FROM:<a@b.example> X-FOO\r\nMAIL FROM:<a@b.example> =x\r\n"
		"MAIL FROM:<a@b.example>  size=10   body=8BITMIME  \r\n");
	expect_replies(r, "220 ", "250-", "555 5.5.4", "555 5.5.4", "501 5.5.4", "250 2.1.0", NULL);
	run_free(r);
}

/* ---- recipients ---- */

Test(smtp_server, policy_verdicts_map_to_replies) /* RFC 5321 4.2.2, RFC 3463 */
{
	struct run *r = transcript("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<unknown@d.example>\r\n"
		"RCPT TO:<u@elsewhere.example>\r\nRCPT TO:<tempfail@d.example>\r\nDATA\r\n"
		"RCPT TO:<u@d.example>\r\nDATA\r\n.\r\n");
	expect_replies(r, "220 ", "250-", "250 2.1.0", "550 5.1.1", "554 5.7.1", "451 4.3.0",
		"503 5.5.1", "250 2.1.5", "354 ", "250 2.0.0", NULL);
	cr_assert_eq(r->commits[0].rcpt_count, 1);
	run_free(r);
}

Test(smtp_server, recipients_past_max_recipients_get_452) /* RFC 5321 4.5.3.1.10 */
{
	struct run *r = transcript("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u1@d.example>\r\n"
		"RCPT TO:<u2@d.example>\r\nRCPT TO:<u3@d.example>\r\nRCPT TO:<u4@d.example>\r\n"
		"RCPT TO:<u5@d.example>\r\nRCPT TO:<u6@d.example>\r\nDATA\r\n.\r\n");
	expect_replies(r, "220 ", "250-", "250 2.1.0", "250 2.1.5", "250 2.1.5", "250 2.1.5",
		"250 2.1.5", "250 2.1.5", "452 4.5.3", "354 ", "250 2.0.0", NULL);
	cr_assert_eq(r->commits[0].rcpt_count, 5);
	cr_assert_eq(r->rcpt_calls, 5);
	cr_assert_str_eq(r->commits[0].rcpts[4].path.s, "u5@d.example");
	run_free(r);
}

Test(smtp_server, a_full_envelope_arena_gets_452) /* RFC 5321 4.5.3.1.10 */
{
	test_cfg.max_recipients = SMTP_RCPT_COUNT_MAX;
	char local[201];
	memset(local, 'l', 200);
	local[200] = 0;
	static char in[600000];
	size_t n = (size_t)snprintf(in, sizeof(in), "EHLO c\r\nMAIL FROM:<a@b.example>\r\n");
	for (int i = 0; i < 400; i++)
		n += (size_t)snprintf(in + n, sizeof(in) - n, "RCPT TO:<%s%03d@d.example>\r\n", local, i);
	n += (size_t)snprintf(in + n, sizeof(in) - n, "DATA\r\n.\r\n");
	struct run *r = run_transcript(slice_make(in, n), FEED_WHOLE, 0);
	struct run *b = run_transcript(slice_make(in, n), FEED_BYTES, 0);
	run_compare(r, b, "byte by byte");
	run_free(b);
	/* Each recipient takes 214 path octets and its record; 65536 octets hold 271 of them. */
	size_t ok = 0, full = 0;
	for (size_t i = 3; i < r->nreplies; i++) {
		ok += slice_starts_with(reply(r, i), SLICE_LIT("250 2.1.5"));
		full += slice_starts_with(reply(r, i), SLICE_LIT("452 4.5.3"));
	}
	cr_assert_gt(ok, 200);
	cr_assert_eq(ok + full, 400);
	cr_assert_gt(full, 0);
	cr_assert_eq(r->commits[0].rcpt_count, ok);
	cr_assert_eq(r->rcpt_calls, ok);
	run_free(r);
}

Test(smtp_server, quoted_local_parts_are_decoded_for_the_policy) /* RFC 5321 4.1.2 */
{
	struct run *r = transcript("EHLO c\r\nMAIL FROM:<\"a b\"@b.example>\r\n"
		"RCPT TO:<\"Jo \\\"x\\\" Smith\"@d.example>\r\nDATA\r\n.\r\n");
	expect_replies(r, "220 ", "250-", "250 2.1.0", "250 2.1.5", "354 ", "250 2.0.0", NULL);
	cr_assert_str_eq(r->last_call.local.s, "Jo \"x\" Smith");
	cr_assert(r->last_call.quoted);
	cr_assert_str_eq(r->last_call.domain.s, "d.example");
	cr_assert_str_eq(r->commits[0].mail_from.s, "\"a b\"@b.example");
	cr_assert_str_eq(r->commits[0].rcpts[0].path.s, "\"Jo \\\"x\\\" Smith\"@d.example");
	cr_assert_str_eq(r->commits[0].rcpts[0].local.s, "Jo \"x\" Smith");
	cr_assert_str_eq(r->commits[0].rcpts[0].domain.s, "d.example");
	run_free(r);
}

Test(smtp_server, source_routes_are_dropped) /* RFC 5321 4.1.2, appendix C */
{
	struct run *r = transcript("EHLO c\r\nMAIL FROM:<@relay.example:a@b.example>\r\n"
		"RCPT TO:<@one.example,@two.example:u@d.example>\r\nRCPT TO:<@bad_route:u@d.example>\r\n"
		"DATA\r\n.\r\n");
	expect_replies(r, "220 ", "250-", "250 2.1.0", "250 2.1.5", "501 5.1.3", "354 ",
		"250 2.0.0", NULL);
	cr_assert_str_eq(r->commits[0].mail_from.s, "a@b.example");
	cr_assert_str_eq(r->commits[0].rcpts[0].path.s, "u@d.example");
	run_free(r);
}

Test(smtp_server, address_literals_are_accepted) /* RFC 5321 4.1.3 */
{
	struct run *r = transcript("EHLO [127.0.0.1]\r\nMAIL FROM:<a@[127.0.0.1]>\r\n"
		"RCPT TO:<u@[IPv6:::1]>\r\nRCPT TO:<u@[300.0.0.1]>\r\nDATA\r\n.\r\n");
	expect_replies(r, "220 ", "250-", "250 2.1.0", "250 2.1.5", "501 5.1.3", "354 ",
		"250 2.0.0", NULL);
	cr_assert_str_eq(r->last_call.domain.s, "[IPv6:::1]");
	cr_assert_str_eq(r->commits[0].helo.s, "[127.0.0.1]");
	run_free(r);
}

/* ---- CHUNKING (RFC 3030) ---- */

Test(smtp_server, bdat_chunks_are_acknowledged_and_last_commits) /* RFC 3030 2, 4.2 */
{
	struct run *r = transcript("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>\r\n"
		"BDAT 7\r\nab\r\n.\r\nBDAT 3 LAST\r\n\x00\ry" "NOOP\r\n");
	expect_replies(r, "220 ", "250-", "250 2.1.0", "250 2.1.5", "250 2.0.0 7 octets received\r\n",
		"250 2.0.0 Ok: queued as Q1", "250 2.0.0", NULL);
	expect_types(r, BEGIN, COMMIT, END);
	cr_assert_eq(r->body_len, 10);
	cr_assert(memcmp(r->body, "ab\r\n.\r\n\x00\ry", 10) == 0);
	cr_assert_eq(r->commits[0].body_size, 10);
	run_free(r);
}

Test(smtp_server, bdat_zero_last_is_valid) /* RFC 3030 2 */
{
	struct run *r = transcript("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>\r\n"
		"BDAT 0 LAST\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>\r\nBDAT 2\r\nhiBDAT 0 "
		"last\r\n");
	expect_replies(r, "220 ", "250-", "250 2.1.0", "250 2.1.5", "250 2.0.0 Ok: queued as Q1",
		"250 2.1.0", "250 2.1.5", "250 2.0.0 2 octets", "250 2.0.0 Ok: queued as Q2", NULL);
	expect_types(r, BEGIN, COMMIT, BEGIN, COMMIT, END);
	cr_assert(body_is(r, "hi"));
	run_free(r);
}

Test(smtp_server, data_after_bdat_gets_503) /* RFC 3030 2 */
{
	struct run *r = transcript("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>\r\n"
		"BDAT 2\r\nhiDATA\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<v@d.example>\r\nBDAT 1 LAST\r\n!");
	expect_replies(r, "220 ", "250-", "250 2.1.0", "250 2.1.5", "250 2.0.0 2 octets",
		"503 5.5.1 Error: DATA after BDAT", "503 5.5.1", "503 5.5.1", "250 2.0.0 Ok", NULL);
	cr_assert(body_is(r, "hi!"));
	cr_assert_eq(r->commits[0].rcpt_count, 1);
	run_free(r);
}

Test(smtp_server, bdat_without_a_transaction_gets_503_and_its_octets_are_read) /* RFC 3030 2 */
{
	struct run *r = transcript("BDAT 6\r\nNOOP\r\nEHLO c\r\nBDAT 4 LAST\r\nQUITMAIL FROM:<a@b.example>"
		"\r\nBDAT 13\r\nRCPT TO:<x>\r\nBDAT 0\r\nNOOP\r\n");
	expect_replies(r, "220 ", "503 5.5.1", "250-", "503 5.5.1", "250 2.1.0", "503 5.5.1",
		"503 5.5.1", "250 2.0.0", NULL);
	cr_assert_eq(r->ntypes, 0);
	cr_assert_eq(r->body_len, 0);
	run_free(r);
}

Test(smtp_server, bdat_syntax_errors_get_501) /* RFC 3030 2 */
{
	struct run *r = transcript("EHLO c\r\nBDAT\r\nBDAT x\r\nBDAT 1 FIRST\r\nBDAT -1\r\n"
		"BDAT 99999999999999999999999\r\nNOOP\r\n");
	expect_replies(r, "220 ", "250-", "501 5.5.4", "501 5.5.4", "501 5.5.4", "501 5.5.4",
		"501 5.5.4", "250 2.0.0", NULL);
	run_free(r);
}

Test(smtp_server, bdat_over_the_size_limit_is_read_then_refused_with_552) /* RFC 1870, 3030 */
{
	static char in[4000];
	int n = snprintf(in, sizeof(in), "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>"
		"\r\nBDAT 600\r\n");
	memset(in + n, 'a', 600);
	n += 600;
	n += snprintf(in + n, sizeof(in) - (size_t)n, "BDAT 401 LAST\r\n");
	memset(in + n, 'b', 401);
	n += 401;
	n += snprintf(in + n, sizeof(in) - (size_t)n, "BDAT 2 LAST\r\nxyMAIL FROM:<a@b.example>\r\n"
		"RCPT TO:<u@d.example>\r\nBDAT 1001\r\n");
	memset(in + n, 'c', 1001);
	n += 1001;
	n += snprintf(in + n, sizeof(in) - (size_t)n, "BDAT 1000 LAST\r\n");
	memset(in + n, 'd', 1000);
	n += 1000;
	struct run *r = transcript_n(in, (size_t)n);
	expect_replies(r, "220 ", "250-", "250 2.1.0", "250 2.1.5", "250 2.0.0 600 octets",
		"552 5.3.4", "503 5.5.1", "250 2.1.0", "250 2.1.5", "552 5.3.4", "503 5.5.1", NULL);
	expect_types(r, BEGIN, DISCARD, END);
	cr_assert_eq(r->body_len, 600);
	run_free(r);
}

Test(smtp_server, rset_ehlo_and_quit_between_chunks_drop_the_body) /* RFC 3030 2, 5321 4.1.4 */
{
	struct run *r = transcript("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>\r\n"
		"BDAT 1\r\naRSET\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>\r\nBDAT 1\r\nb"
		"EHLO d\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>\r\nBDAT 1\r\ncQUIT\r\n");
	expect_replies(r, "220 ", "250-", "250 2.1.0", "250 2.1.5", "250 2.0.0 1 octets",
		"250 2.0.0", "250 2.1.0", "250 2.1.5", "250 2.0.0 1 octets", "250-", "250 2.1.0",
		"250 2.1.5", "250 2.0.0 1 octets", "221 2.0.0", NULL);
	expect_types(r, BEGIN, DISCARD, BEGIN, DISCARD, BEGIN, DISCARD, CLOSE, END);
	run_free(r);
}

/* ---- DATA ---- */

Test(smtp_server, a_dot_stuffed_body_of_many_slices_is_handed_out_whole) /* RFC 5321 4.5.2 */
{
	test_cfg.max_message_size = 100000;
	static char in[4000];
	static char want[4000];
	int n = snprintf(in, sizeof(in), "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>"
		"\r\nDATA\r\n");
	size_t w = 0;
	for (int i = 0; i < 300; i++) {
		memcpy(in + n, "..x\r\n", 5);
		n += 5;
		memcpy(want + w, ".x\r\n", 4);
		w += 4;
	}
	n += snprintf(in + n, sizeof(in) - (size_t)n, ".\r\nNOOP\r\n");
	want[w] = 0;
	struct run *r = transcript_n(in, (size_t)n);
	expect_replies(r, "220 ", "250-", "250 2.1.0", "250 2.1.5", "354 ", "250 2.0.0 Ok",
		"250 2.0.0", NULL);
	cr_assert(body_is(r, want));
	cr_assert_eq(r->commits[0].body_size, 1200);
	cr_assert_gt(r->feeds, 6, "the slices did not fit one call");
	run_free(r);
}

Test(smtp_server, data_takes_no_argument) /* RFC 5321 4.1.1.4 */
{
	struct run *r = transcript("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>\r\n"
		"DATA x\r\nDATA\r\n.\r\n");
	expect_replies(r, "220 ", "250-", "250 2.1.0", "250 2.1.5", "501 5.5.4", "354 ",
		"250 2.0.0", NULL);
	run_free(r);
}

Test(smtp_server, bare_lf_or_cr_in_data_refuses_the_message) /* RFC 5321 2.3.8, 4.1.1.4 */
{
	struct run *r = transcript("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>\r\n"
		"DATA\r\nx\n.\nMAIL FROM:<evil@b.example>\r\n.\r\nNOOP\r\n"
		"MAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>\r\nDATA\r\na\rb\r\n.\r\n");
	expect_replies(r, "220 ", "250-", "250 2.1.0", "250 2.1.5", "354 ", "550 5.6.0", "250 2.0.0",
		"250 2.1.0", "250 2.1.5", "354 ", "550 5.6.0", NULL);
	expect_types(r, BEGIN, DISCARD, BEGIN, DISCARD, END);
	cr_assert_eq(r->ncommits, 0);
	run_free(r);
}

Test(smtp_server, commit_failures_answer_452_or_451) /* RFC 5321 4.2.2, RFC 3463 4.3 */
{
	static const int results[] = { -ENOSPC, -EIO, 0, 1 };
	test_commit_results = results;
	struct run *r = transcript("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>\r\n"
		"DATA\r\n.\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>\r\nDATA\r\n.\r\n"
		"MAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>\r\nDATA\r\n.\r\n");
	expect_replies(r, "220 ", "250-", "250 2.1.0", "250 2.1.5", "354 ", "452 4.3.1",
		"250 2.1.0", "250 2.1.5", "354 ", "451 4.3.0", "250 2.1.0", "250 2.1.5", "354 ",
		"250 2.0.0 Ok: queued as Q3", NULL);
	run_free(r);
}

Test(smtp_server, nothing_is_read_while_a_commit_is_pending) /* RFC 2920 3.1, DESIGN */
{
	struct run *r = run_new();
	smtp_server_init(r->s, &test_cfg, r);
	struct smtp_actions acts = { .count = 0 };
	smtp_server_start(r->s, &acts);
	static const char in[] = "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>\r\n"
		"DATA\r\nhi\r\n.\r\nNOOP\r\n";
	acts.count = 0;
	size_t n = smtp_server_feed(r->s, SLICE_LIT(in), &acts);
	cr_assert_eq(n, sizeof(in) - 1 - 6);
	cr_assert_eq(acts.items[acts.count - 1].type, SMTP_ACTION_COMMIT);
	cr_assert_eq(r->s->state, SMTP_STATE_COMMIT_WAIT);
	acts.count = 0;
	cr_assert_eq(smtp_server_feed(r->s, SLICE_LIT("NOOP\r\n"), &acts), 0);
	cr_assert_eq(acts.count, 0);
	smtp_server_committed(r->s, 0, SLICE_LIT("ABC\x01"), &acts);
	cr_assert_eq(acts.count, 1);
	cr_assert(slice_eq(acts.items[0].data, SLICE_LIT("250 2.0.0 Ok: queued as ABC?\r\n")));
	acts.count = 0;
	cr_assert_eq(smtp_server_feed(r->s, SLICE_LIT("NOOP\r\n"), &acts), 6);
	cr_assert_eq(smtp_server_envelope(r->s)->rcpt_count, 0);
	run_free(r);
}

Test(smtp_server, a_commit_outcome_after_a_timeout_is_ignored) /* smtp_server.h */
{
	struct run *r = run_new();
	smtp_server_init(r->s, &test_cfg, r);
	struct smtp_actions acts = { .count = 0 };
	smtp_server_start(r->s, &acts);
	static const char in[] = "EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>\r\n"
		"BDAT 0 LAST\r\n";
	acts.count = 0;
	cr_assert_eq(smtp_server_feed(r->s, SLICE_LIT(in), &acts), sizeof(in) - 1);
	cr_assert_eq(r->s->state, SMTP_STATE_COMMIT_WAIT);
	acts.count = 0;
	smtp_server_timeout(r->s, &acts);
	cr_assert_eq(acts.count, 2, "421 and CLOSE, no BODY_DISCARD: the message is being stored");
	cr_assert(slice_starts_with(acts.items[0].data, SLICE_LIT("421 4.4.2")));
	cr_assert_eq(acts.items[1].type, SMTP_ACTION_CLOSE);
	acts.count = 0;
	smtp_server_committed(r->s, 0, SLICE_LIT("Q"), &acts);
	cr_assert_eq(acts.count, 0);
	cr_assert(smtp_server_closed(r->s));
	run_free(r);
}

/* ---- limits ---- */

Test(smtp_server, command_line_at_the_limit_is_read) /* RFC 5321 4.5.3.1.4 */
{
	static char in[SMTP_CMD_LINE_LEN_MAX + 16];
	memcpy(in, "NOOP ", 5);
	memset(in + 5, 'x', SMTP_CMD_LINE_LEN_MAX - 7);
	memcpy(in + SMTP_CMD_LINE_LEN_MAX - 2, "\r\nQUIT\r\n", 8);
	struct run *r = transcript_n(in, SMTP_CMD_LINE_LEN_MAX + 6);
	expect_replies(r, "220 ", "250 2.0.0", "221 ", NULL);
	run_free(r);
}

Test(smtp_server, command_line_past_the_limit_gets_500_and_is_skipped) /* 4.5.3.1.4 */
{
	static char in[3 * SMTP_CMD_LINE_LEN_MAX];
	memcpy(in, "NOOP ", 5);
	memset(in + 5, 'x', SMTP_CMD_LINE_LEN_MAX - 6);
	memcpy(in + SMTP_CMD_LINE_LEN_MAX - 1, "\r\nNOOP\r\n", 8);
	struct run *r = transcript_n(in, SMTP_CMD_LINE_LEN_MAX + 7);
	expect_replies(r, "220 ", "500 5.5.2 line too long", "250 2.0.0", NULL);
	run_free(r);
	/* Much longer, and with a line end of a bare LF: a command would hide in the tail. */
	memcpy(in, "MAIL FROM:<", 11);
	memset(in + 11, 'y', 2 * SMTP_CMD_LINE_LEN_MAX + 100);
	memcpy(in + 2 * SMTP_CMD_LINE_LEN_MAX + 111, "QUIT\nNOOP\n", 10);
	r = transcript_n(in, 2 * SMTP_CMD_LINE_LEN_MAX + 121);
	expect_replies(r, "220 ", "500 5.5.2 line too long", "250 2.0.0", NULL);
	run_free(r);
}

Test(smtp_server, nul_or_cr_inside_a_command_gets_500) /* RFC 5321 2.3.8, 4.1.1 */
{
	struct run *r = transcript("NOOP\x00\r\nNO\x00OP\r\nEHLO c\rMAIL FROM:<a@b>\r\nEHLO c\r\r\n"
		"\x00\r\nNOOP\n");
	expect_replies(r, "220 ", "500 5.5.2", "500 5.5.2", "500 5.5.2", "500 5.5.2", "500 5.5.2",
		"250 2.0.0", NULL);
	run_free(r);
}

Test(smtp_server, too_many_bad_commands_get_421_and_close) /* RFC 5321 4.2.2, 3.8 */
{
	test_cfg.bad_cmd_max = 3;
	struct run *r = transcript("FOO\r\nNOOP\r\nMAIL FROM:<a@b>\r\nEHLO c\r\nRCPT TO:<a@b>\r\n"
		"NOOP\r\n");
	expect_replies(r, "220 ", "500 5.5.2", "250 2.0.0", "503 5.5.1", "250-", "503 5.5.1",
		"421 4.7.0 too many errors", NULL);
	expect_types(r, CLOSE, END);
	run_free(r);
	/* A refused BDAT counts too, and its 421 comes once its octets are read. */
	test_cfg.bad_cmd_max = 1;
	r = transcript("BDAT 3\r\nabcNOOP\r\n");
	expect_replies(r, "220 ", "503 5.5.1", "421 4.7.0", NULL);
	run_free(r);
	/* In the middle of a chunked body, the body is dropped first. */
	test_cfg.bad_cmd_max = 1;
	r = transcript("EHLO c\r\nMAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>\r\nBDAT 1\r\nx"
		"DATA\r\n");
	expect_replies(r, "220 ", "250-", "250 2.1.0", "250 2.1.5", "250 2.0.0", "503 5.5.1",
		"421 4.7.0", NULL);
	expect_types(r, BEGIN, DISCARD, CLOSE, END);
	run_free(r);
}

Test(smtp_server, a_timeout_in_a_body_or_between_commands_answers_421) /* RFC 5321 4.5.3.2 */
{
	struct run *r = run_transcript(SLICE_LIT("EHLO c\r\nMAIL FROM:<a@b.example>\r\n"
		"RCPT TO:<u@d.example>\r\n"), FEED_WHOLE, 0);
	cr_assert_not(smtp_server_in_body(r->s));           /* the engine's command timeout */
	uint8_t data[] = "DATA\r\nsome";
	size_t len = sizeof(data) - 1;
	pump(r, data, &len);
	cr_assert(smtp_server_in_body(r->s));               /* the engine's data timeout */
	struct smtp_actions acts = { .count = 0 };
	smtp_server_timeout(r->s, &acts);
	record(r, &acts);
	expect_replies(r, "220 ", "250-", "250 2.1.0", "250 2.1.5", "354 ", "421 4.4.2", NULL);
	expect_types(r, BEGIN, DISCARD, CLOSE, END);
	cr_assert(smtp_server_closed(r->s));
	acts.count = 0;
	smtp_server_timeout(r->s, &acts);
	cr_assert_eq(acts.count, 0);
	run_free(r);
	r = run_transcript(SLICE_LIT("BDAT 10\r\n"), FEED_WHOLE, 0);
	cr_assert(smtp_server_in_body(r->s));
	run_free(r);
}

Test(smtp_server, shutdown_answers_421_and_closes) /* RFC 5321 3.8 */
{
	struct run *r = run_transcript(SLICE_LIT("EHLO c\r\n"), FEED_WHOLE, 0);
	struct smtp_actions acts = { .count = 0 };
	smtp_server_shutdown(r->s, &acts);
	record(r, &acts);
	expect_replies(r, "220 ", "250-", "421 4.3.2", NULL);
	expect_types(r, CLOSE, END);
	uint8_t more[] = "NOOP\r\n";
	size_t len = 6;
	pump(r, more, &len);
	cr_assert_eq(len, 6);
	run_free(r);
}

Test(smtp_server, init_leaves_the_arena_untouched) /* smtp_server.h: idle slots cost nothing */
{
	struct smtp_server *s = malloc(sizeof(*s));
	memset(s, 0x5a, sizeof(*s));
	smtp_server_init(s, &test_cfg, NULL);
	struct smtp_actions acts = { .count = 0 };
	smtp_server_start(s, &acts);
	for (size_t i = 0; i < sizeof(s->arena); i++)
		cr_assert_eq(s->arena[i], 0x5a);
	free(s);
}

Test(smtp_server, every_reply_carries_a_matching_enhanced_code) /* RFC 2034 3, RFC 3463 2 */
{
	/* check_reply() runs on every reply of every transcript; this one visits most replies. */
	test_cfg.starttls_offered = true;
	static const int results[] = { -ENOSPC, -EIO, 0, 1 };
	test_commit_results = results;
	struct run *r = transcript("HELP\r\nVRFY x\r\nEXPN x\r\nAUTH x\r\nFOO\r\nMAIL FROM:<a@b>\r\n"
		"EHLO c\r\nMAIL FROM:<a@b.example> SIZE=5000\r\nMAIL FROM:<a@b.example> X=1\r\n"
		"MAIL FROM:<a@b.example>\r\nRCPT TO:<unknown@d.example>\r\nRCPT TO:<x@elsewhere.example>\r\n"
		"RCPT TO:<tempfail@d.example>\r\nRCPT TO:<u@d.example>\r\nDATA\r\n.\r\n"
		"MAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>\r\nBDAT 1\r\nxBDAT 0 LAST\r\n"
		"MAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>\r\nDATA\r\n\n.\r\n"
		"MAIL FROM:<a@b.example>\r\nRCPT TO:<u@d.example>\r\nDATA\r\n.\r\nSTARTTLS\r\n");
	cr_assert_geq(r->nreplies, 25);
	run_free(r);
}
