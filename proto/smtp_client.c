/* proto/smtp_client.c - the RFC 5321 client state machine; see smtp_client.h.
 *
 * One step of smtp_client_feed reads one reply line (proto/smtp_reply); the last line of a reply
 * runs the handler of the current state, which may give results, write commands and move the
 * state. A step runs only when the action array, the command buffer and the text buffer have
 * room for the most one step can add, so a step never stops half way.
 *
 * Pipelining: the transaction keeps two cursors, the commands written (MAIL, rcpt_sent RCPTs,
 * DATA) and the replies read (the state says MAIL, RCPT or DATA; rcpt_replied counts). Replies
 * come back in order (RFC 2920 3.1), so reply k answers command k. After a refused MAIL, or
 * once every recipient is refused, the rest of the replies to what was written are read and
 * dropped; a 354 that no recipient wants gets a lone "." (RFC 2920 3.1), then RSET.
 *
 * Results are copied to the text buffer (the parser reuses its buffer for the next reply, and a
 * pipelined feed reads many). Body octets are never copied: see smtp_client_body. */
#include "proto/smtp_client.h"

#include <string.h>

#include "proto/smtp_addr.h"

#define SMTP_CLIENT_STEP_ACTIONS_MAX 6u   /* 2 RESULTs, SEND, READY or BODY or STARTTLS, CLOSE */
#define SMTP_CLIENT_LOCAL_TEXT_MAX 256u   /* a text the client writes itself */
#define SMTP_CLIENT_STEP_TEXT_MAX (SMTP_REPLY_TEXT_MAX + SMTP_CLIENT_LOCAL_TEXT_MAX)
#define SMTP_CLIENT_DIGITS_MAX 20u        /* a uint64_t in decimal */
#define SMTP_CLIENT_NOTIFY_LEN_MAX 29u    /* " NOTIFY=SUCCESS,FAILURE,DELAY" */
/* "MAIL FROM:<" path "> SIZE=" n " BODY=8BITMIME SMTPUTF8 RET=HDRS ENVID=" envid CRLF */
#define SMTP_CLIENT_MAIL_LINE_MAX (11u + SMTP_CLIENT_PATH_LEN_MAX + 7u + SMTP_CLIENT_DIGITS_MAX \
	+ 14u + 9u + 9u + 7u + SMTP_CLIENT_ENVID_LEN_MAX + 2u)
/* "RCPT TO:<" path ">" notify " ORCPT=" orcpt CRLF */
#define SMTP_CLIENT_RCPT_LINE_MAX (9u + SMTP_CLIENT_PATH_LEN_MAX + 1u + SMTP_CLIENT_NOTIFY_LEN_MAX \
	+ 7u + SMTP_CLIENT_ORCPT_LEN_MAX + 2u)

_Static_assert(SMTP_CLIENT_MAIL_LINE_MAX <= SMTP_CLIENT_CMD_LINE_LEN_MAX, "MAIL is one line");
_Static_assert(SMTP_CLIENT_RCPT_LINE_MAX <= SMTP_CLIENT_CMD_LINE_LEN_MAX, "RCPT is one line");
_Static_assert(SMTP_CLIENT_CMD_LINE_LEN_MAX <= SMTP_CMD_LINE_LEN_MAX,
	"our command lines fit a ringmta server's");
_Static_assert(SMTP_CLIENT_MAIL_LINE_MAX + SMTP_CLIENT_RCPT_LINE_MAX
	+ SMTP_CLIENT_CMD_LINE_LEN_MAX <= SMTP_CLIENT_CMD_BUF_SIZE,
	"MAIL and a RCPT fit beside a step's reserve");
_Static_assert(2 * SMTP_CLIENT_STEP_TEXT_MAX <= SMTP_CLIENT_TEXT_BUF_SIZE, "several per feed");
_Static_assert(SMTP_CLIENT_STEP_ACTIONS_MAX + DATA_STUFF_ROOM_MIN + 1 < SMTP_CLIENT_ACTIONS_MAX,
	"a body call has room for slices");
_Static_assert(SMTP_CLIENT_HELO_LEN_MAX + 7u <= SMTP_CLIENT_CMD_LINE_LEN_MAX, "EHLO is one line");

#define SMTP_CLIENT_ST(x) (1u << SMTP_CLIENT_STATE_##x)

/* Where each state may go: the only place that changes c->state checks this. */
static const uint32_t smtp_client_next_states[] = {
	[SMTP_CLIENT_STATE_GREETING] = SMTP_CLIENT_ST(EHLO) | SMTP_CLIENT_ST(QUIT)
		| SMTP_CLIENT_ST(CLOSED),
	[SMTP_CLIENT_STATE_EHLO] = SMTP_CLIENT_ST(HELO) | SMTP_CLIENT_ST(STARTTLS)
		| SMTP_CLIENT_ST(READY) | SMTP_CLIENT_ST(QUIT) | SMTP_CLIENT_ST(CLOSED),
	[SMTP_CLIENT_STATE_HELO] = SMTP_CLIENT_ST(READY) | SMTP_CLIENT_ST(QUIT)
		| SMTP_CLIENT_ST(CLOSED),
	[SMTP_CLIENT_STATE_STARTTLS] = SMTP_CLIENT_ST(TLS) | SMTP_CLIENT_ST(READY)
		| SMTP_CLIENT_ST(QUIT) | SMTP_CLIENT_ST(CLOSED),
	[SMTP_CLIENT_STATE_TLS] = SMTP_CLIENT_ST(EHLO) | SMTP_CLIENT_ST(CLOSED),
	[SMTP_CLIENT_STATE_READY] = SMTP_CLIENT_ST(READY) | SMTP_CLIENT_ST(MAIL)
		| SMTP_CLIENT_ST(QUIT) | SMTP_CLIENT_ST(CLOSED),
	[SMTP_CLIENT_STATE_MAIL] = SMTP_CLIENT_ST(RCPT) | SMTP_CLIENT_ST(READY)
		| SMTP_CLIENT_ST(CLOSED),
	[SMTP_CLIENT_STATE_RCPT] = SMTP_CLIENT_ST(RCPT) | SMTP_CLIENT_ST(DATA)
		| SMTP_CLIENT_ST(BODY) | SMTP_CLIENT_ST(RSET) | SMTP_CLIENT_ST(READY)
		| SMTP_CLIENT_ST(CLOSED),
	[SMTP_CLIENT_STATE_DATA] = SMTP_CLIENT_ST(BODY) | SMTP_CLIENT_ST(END)
		| SMTP_CLIENT_ST(RSET) | SMTP_CLIENT_ST(READY) | SMTP_CLIENT_ST(CLOSED),
	[SMTP_CLIENT_STATE_BODY] = SMTP_CLIENT_ST(END) | SMTP_CLIENT_ST(CLOSED),
	[SMTP_CLIENT_STATE_END] = SMTP_CLIENT_ST(READY) | SMTP_CLIENT_ST(CLOSED),
	[SMTP_CLIENT_STATE_RSET] = SMTP_CLIENT_ST(READY) | SMTP_CLIENT_ST(QUIT)
		| SMTP_CLIENT_ST(CLOSED),
	[SMTP_CLIENT_STATE_QUIT] = SMTP_CLIENT_ST(CLOSED),
	[SMTP_CLIENT_STATE_CLOSED] = 0,
};

static void
smtp_client_goto(struct smtp_client *c, enum smtp_client_state to)
{
	ASSERT((smtp_client_next_states[c->state] & (1u << to)) != 0);
	c->state = to;
}

/* The stage a local result names: what the client was waiting for. */
static enum smtp_client_stage
smtp_client_stage(const struct smtp_client *c)
{
	static const enum smtp_client_stage stages[] = {
		[SMTP_CLIENT_STATE_GREETING] = SMTP_CLIENT_STAGE_GREETING,
		[SMTP_CLIENT_STATE_EHLO] = SMTP_CLIENT_STAGE_EHLO,
		[SMTP_CLIENT_STATE_HELO] = SMTP_CLIENT_STAGE_HELO,
		[SMTP_CLIENT_STATE_STARTTLS] = SMTP_CLIENT_STAGE_STARTTLS,
		[SMTP_CLIENT_STATE_TLS] = SMTP_CLIENT_STAGE_STARTTLS,
		[SMTP_CLIENT_STATE_READY] = SMTP_CLIENT_STAGE_IDLE,
		[SMTP_CLIENT_STATE_MAIL] = SMTP_CLIENT_STAGE_MAIL,
		[SMTP_CLIENT_STATE_RCPT] = SMTP_CLIENT_STAGE_RCPT,
		[SMTP_CLIENT_STATE_DATA] = SMTP_CLIENT_STAGE_DATA,
		[SMTP_CLIENT_STATE_BODY] = SMTP_CLIENT_STAGE_BODY,
		[SMTP_CLIENT_STATE_END] = SMTP_CLIENT_STAGE_END,
		[SMTP_CLIENT_STATE_RSET] = SMTP_CLIENT_STAGE_RSET,
		[SMTP_CLIENT_STATE_QUIT] = SMTP_CLIENT_STAGE_QUIT,
		[SMTP_CLIENT_STATE_CLOSED] = SMTP_CLIENT_STAGE_NONE,
	};
	return stages[c->state];
}

/* ---- actions, commands and texts ---- */

static void
smtp_client_push(struct smtp_client_actions *out, enum smtp_client_action_type type,
	struct slice data)
{
	ASSERT(out->count < SMTP_CLIENT_ACTIONS_MAX);
	out->items[out->count++] = (struct smtp_client_action){ .type = type, .data = data };
}

static void
smtp_client_put(struct smtp_client *c, struct slice s)
{
	ASSERT(s.len <= SMTP_CLIENT_CMD_BUF_SIZE - c->cmd_len);
	if (s.len == 0)
		return;
	memcpy(c->cmd_buf + c->cmd_len, s.ptr, s.len);   /* copy: envelope octets into a command */
	c->cmd_len += (uint32_t)s.len;
}

#define SMTP_CLIENT_PUT(c, lit) smtp_client_put((c), SLICE_LIT(lit))

static size_t
smtp_client_u64_text(uint64_t v, uint8_t *digits)
{
	size_t n = 0;
	do {
		digits[SMTP_CLIENT_DIGITS_MAX - ++n] = (uint8_t)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	return n;
}

static void
smtp_client_put_u64(struct smtp_client *c, uint64_t v)
{
	uint8_t digits[SMTP_CLIENT_DIGITS_MAX];
	size_t n = smtp_client_u64_text(v, digits);
	smtp_client_put(c, slice_make(digits + SMTP_CLIENT_DIGITS_MAX - n, n));
}

/* Hands out the command written since cmd_buf[at]; it joins the SEND before it when that one
 * ends where it starts, so that a pipelined group is one write. */
static void
smtp_client_send_end(struct smtp_client *c, uint32_t at, struct smtp_client_actions *out)
{
	ASSERT(at < c->cmd_len);
	struct slice cmd = slice_make(c->cmd_buf + at, c->cmd_len - at);
	if (out->count > 0) {
		struct smtp_client_action *last = &out->items[out->count - 1];
		if (last->type == SMTP_CLIENT_ACTION_SEND
			&& last->data.ptr + last->data.len == cmd.ptr) {
			last->data.len += cmd.len;
			return;
		}
	}
	smtp_client_push(out, SMTP_CLIENT_ACTION_SEND, cmd);
}

static void
smtp_client_send(struct smtp_client *c, struct slice line, struct smtp_client_actions *out)
{
	uint32_t at = c->cmd_len;
	smtp_client_put(c, line);
	smtp_client_send_end(c, at, out);
}

#define SMTP_CLIENT_SEND(c, lit, out) smtp_client_send((c), SLICE_LIT(lit), (out))

static void
smtp_client_text_put(struct smtp_client *c, struct slice s)
{
	ASSERT(s.len <= SMTP_CLIENT_TEXT_BUF_SIZE - c->text_len);
	if (s.len == 0)
		return;
	memcpy(c->text_buf + c->text_len, s.ptr, s.len);   /* copy: results outlive the reply */
	c->text_len += (uint32_t)s.len;
}

static void
smtp_client_text_u64(struct smtp_client *c, uint64_t v)
{
	uint8_t digits[SMTP_CLIENT_DIGITS_MAX];
	size_t n = smtp_client_u64_text(v, digits);
	smtp_client_text_put(c, slice_make(digits + SMTP_CLIENT_DIGITS_MAX - n, n));
}

static struct slice
smtp_client_text_since(const struct smtp_client *c, uint32_t at)
{
	return slice_make(c->text_buf + at, c->text_len - at);
}

/* A call other than feed: the buffers restart when the caller holds no action of ours. */
static void
smtp_client_call_begin(struct smtp_client *c, const struct smtp_client_actions *out)
{
	ASSERT(out->count <= SMTP_CLIENT_ACTIONS_MAX - SMTP_CLIENT_STEP_ACTIONS_MAX);
	if (out->count == 0) {
		c->cmd_len = 0;
		c->text_len = 0;
	}
	ASSERT(c->cmd_len + SMTP_CLIENT_CMD_LINE_LEN_MAX <= SMTP_CLIENT_CMD_BUF_SIZE);
	ASSERT(c->text_len + SMTP_CLIENT_STEP_TEXT_MAX <= SMTP_CLIENT_TEXT_BUF_SIZE);
}

/* ---- results ---- */

static enum smtp_client_outcome
smtp_client_outcome_of(uint16_t code, enum smtp_client_stage stage)
{
	if (code / 100 == 2)
		return SMTP_CLIENT_DELIVERED;
	/* RFC 5321 4.5.3.1.10: a 552 to RCPT means too many recipients, a temporary condition. */
	if (code / 100 == 4 || (code == 552 && stage == SMTP_CLIENT_STAGE_RCPT))
		return SMTP_CLIENT_DEFERRED;
	return SMTP_CLIENT_BOUNCED;
}

/* The recipients an open transaction has not resolved yet. */
static uint32_t
smtp_client_unresolved(const struct smtp_client *c)
{
	if (!c->txn_open)
		return 0;
	ASSERT(c->rcpt_refused <= c->txn->rcpt_count);
	return c->txn->rcpt_count - c->rcpt_refused;
}

/* A result from the reply just read, answering `stage`. */
static struct smtp_client_result
smtp_client_reply_result(struct smtp_client *c, const struct smtp_reply *rep,
	enum smtp_client_scope scope, enum smtp_client_stage stage)
{
	uint32_t at = c->text_len;
	smtp_client_text_put(c, rep->text);
	struct smtp_reply_enhanced e = rep->enhanced;
	if (e.cls == 0)   /* RFC 3463 3.1: X.0.0 when nothing more is known */
		e = (struct smtp_reply_enhanced){ .cls = (uint8_t)(rep->code / 100) };
	return (struct smtp_client_result){ .scope = scope, .stage = stage, .code = rep->code,
		.outcome = smtp_client_outcome_of(rep->code, stage), .enhanced = e,
		.text = smtp_client_text_since(c, at), .local = false };
}

/* A result the client decides: `what`, then the stage it happened in when `where`. */
static struct smtp_client_result
smtp_client_local_result(struct smtp_client *c, uint16_t code, uint16_t subject, uint16_t detail,
	struct slice what, bool where)
{
	ASSERT(what.len + 64 <= SMTP_CLIENT_LOCAL_TEXT_MAX);
	enum smtp_client_stage stage = smtp_client_stage(c);
	uint32_t at = c->text_len;
	smtp_client_text_put(c, what);
	if (where) {
		const char *name = smtp_client_stage_name(stage);
		smtp_client_text_put(c, SLICE_LIT(", during "));
		smtp_client_text_put(c, slice_make(name, strlen(name)));
	}
	return (struct smtp_client_result){ .scope = SMTP_CLIENT_SCOPE_TXN, .stage = stage,
		.code = code, .outcome = smtp_client_outcome_of(code, stage),
		.enhanced = { .cls = (uint8_t)(code / 100), .subject = subject, .detail = detail },
		.text = smtp_client_text_since(c, at), .local = true };
}

static void
smtp_client_push_result(struct smtp_client_actions *out, struct smtp_client_result r)
{
	smtp_client_push(out, SMTP_CLIENT_ACTION_RESULT, slice_make(NULL, 0));
	out->items[out->count - 1].result = r;
}

/* The transaction ends for every recipient it has not resolved. */
static void
smtp_client_txn_result(struct smtp_client *c, struct smtp_client_result r,
	struct smtp_client_actions *out)
{
	ASSERT(c->txn_open);
	r.scope = SMTP_CLIENT_SCOPE_TXN;
	r.rcpt_count = smtp_client_unresolved(c);
	c->txn_open = false;
	smtp_client_push_result(out, r);
}

static void
smtp_client_close(struct smtp_client *c, struct smtp_client_actions *out)
{
	smtp_client_push(out, SMTP_CLIENT_ACTION_CLOSE, slice_make(NULL, 0));
	smtp_client_goto(c, SMTP_CLIENT_STATE_CLOSED);
}

/* The connection failed: r resolves what the transaction left open; then QUIT when the server is
 * still in step and refused politely, CLOSE otherwise. */
static void
smtp_client_fail(struct smtp_client *c, struct smtp_client_result r, bool quit,
	struct smtp_client_actions *out)
{
	r.scope = SMTP_CLIENT_SCOPE_CONNECTION;
	r.rcpt_count = smtp_client_unresolved(c);
	c->txn_open = false;
	c->txn = NULL;
	smtp_client_push_result(out, r);
	if (!quit) {
		smtp_client_close(c, out);
		return;
	}
	SMTP_CLIENT_SEND(c, "QUIT\r\n", out);
	smtp_client_goto(c, SMTP_CLIENT_STATE_QUIT);
}

/* The server broke the protocol: nothing it sends can be trusted to be in step. */
static void
smtp_client_violation(struct smtp_client *c, struct slice what, struct smtp_client_actions *out)
{
	uint32_t at = c->text_len;
	smtp_client_text_put(c, SLICE_LIT("protocol error: "));
	struct smtp_client_result r = smtp_client_local_result(c, 451, 5, 0, what, true);
	r.text = smtp_client_text_since(c, at);
	smtp_client_fail(c, r, false, out);
}

/* ---- the session ---- */

static void
smtp_client_idle(struct smtp_client *c, struct smtp_client_actions *out)
{
	c->txn = NULL;
	smtp_client_push(out, SMTP_CLIENT_ACTION_READY, slice_make(NULL, 0));
	c->yield = true;
	smtp_client_goto(c, SMTP_CLIENT_STATE_READY);
}

static void
smtp_client_send_hello(struct smtp_client *c, bool esmtp, struct smtp_client_actions *out)
{
	uint32_t at = c->cmd_len;
	smtp_client_put(c, esmtp ? SLICE_LIT("EHLO ") : SLICE_LIT("HELO "));
	smtp_client_put(c, c->cfg->helo_name);
	SMTP_CLIENT_PUT(c, "\r\n");
	smtp_client_send_end(c, at, out);
	c->ext_seen = 0;
	c->size_seen = 0;
	smtp_client_goto(c, esmtp ? SMTP_CLIENT_STATE_EHLO : SMTP_CLIENT_STATE_HELO);
}

static const struct {
	const char *keyword;
	uint32_t bit;
} smtp_client_keywords[] = {
	{ "PIPELINING", SMTP_CLIENT_EXT_PIPELINING }, { "SIZE", SMTP_CLIENT_EXT_SIZE },
	{ "8BITMIME", SMTP_CLIENT_EXT_8BITMIME }, { "SMTPUTF8", SMTP_CLIENT_EXT_SMTPUTF8 },
	{ "DSN", SMTP_CLIENT_EXT_DSN }, { "CHUNKING", SMTP_CLIENT_EXT_CHUNKING },
	{ "STARTTLS", SMTP_CLIENT_EXT_STARTTLS },
	{ "ENHANCEDSTATUSCODES", SMTP_CLIENT_EXT_ENHANCEDSTATUSCODES },
};

/* RFC 1870 4: "SIZE" [SP number]; no number, a bad one or 0: no fixed limit known. */
static uint64_t
smtp_client_size_param(struct slice p)
{
	while (p.len > 0 && p.ptr[0] == ' ')
		p = slice_skip(p, 1);
	uint64_t n = 0;
	size_t i = 0;
	for (; i < p.len && i < SMTP_CLIENT_DIGITS_MAX && p.ptr[i] >= '0' && p.ptr[i] <= '9'; i++) {
		uint64_t d = (uint64_t)(p.ptr[i] - '0');
		n = n > (UINT64_MAX - d) / 10 ? UINT64_MAX : n * 10 + d;
	}
	return (i == 0 || (i < p.len && p.ptr[i] != ' ')) ? 0 : n;
}

/* One line of an EHLO answer after the first: ehlo-keyword *(SP ehlo-param) (RFC 5321 4.1.1.1). */
static void
smtp_client_ehlo_line(struct smtp_client *c, struct slice text)
{
	size_t n = 0;
	while (n < text.len && text.ptr[n] != ' ' && text.ptr[n] != '=')
		n++;
	struct slice keyword = slice_sub(text, 0, n);
	for (size_t i = 0; i < ARRAY_LEN(smtp_client_keywords); i++) {
		const char *k = smtp_client_keywords[i].keyword;
		if (!slice_eq_nocase(keyword, slice_make(k, strlen(k))))
			continue;
		c->ext_seen |= smtp_client_keywords[i].bit;
		if (smtp_client_keywords[i].bit == SMTP_CLIENT_EXT_SIZE)
			c->size_seen = smtp_client_size_param(slice_skip(text, n));
	}
}

/* HELO or EHLO was accepted: STARTTLS first when wanted, else idle. */
static void
smtp_client_hello_done(struct smtp_client *c, bool esmtp, struct smtp_client_actions *out)
{
	c->ext = esmtp ? c->ext_seen : 0;
	c->size_max = (c->ext & SMTP_CLIENT_EXT_SIZE) ? c->size_seen : 0;
	if (c->cfg->starttls && !c->tls_active && (c->ext & SMTP_CLIENT_EXT_STARTTLS)) {
		SMTP_CLIENT_SEND(c, "STARTTLS\r\n", out);
		smtp_client_goto(c, SMTP_CLIENT_STATE_STARTTLS);
		return;
	}
	if (c->cfg->tls_required && !c->tls_active) {
		smtp_client_fail(c, smtp_client_local_result(c, 421, 7, 4,
			SLICE_LIT("TLS is required, but was not offered by the server"), false), true, out);
		return;
	}
	smtp_client_idle(c, out);
}

static void
smtp_client_on_greeting(struct smtp_client *c, const struct smtp_reply *rep,
	struct smtp_client_actions *out)
{
	/* RFC 5321 3.1: 220, or 554 and the client should QUIT; 4xx too, for the next MX. */
	if (rep->code / 100 == 2)
		smtp_client_send_hello(c, true, out);
	else
		smtp_client_fail(c, smtp_client_reply_result(c, rep, SMTP_CLIENT_SCOPE_CONNECTION,
			SMTP_CLIENT_STAGE_GREETING), true, out);
}

static void
smtp_client_on_hello(struct smtp_client *c, const struct smtp_reply *rep,
	struct smtp_client_actions *out)
{
	bool esmtp = c->state == SMTP_CLIENT_STATE_EHLO;
	if (rep->code / 100 == 2) {
		smtp_client_hello_done(c, esmtp, out);
	} else if (esmtp && rep->code / 100 == 5) {
		smtp_client_send_hello(c, false, out);   /* RFC 5321 3.2, 4.1.4: HELO instead */
	} else {
		smtp_client_fail(c, smtp_client_reply_result(c, rep, SMTP_CLIENT_SCOPE_CONNECTION,
			esmtp ? SMTP_CLIENT_STAGE_EHLO : SMTP_CLIENT_STAGE_HELO), true, out);
	}
}

/* RFC 3207 4: 220 and TLS starts; a refusal leaves the session as it was, unless TLS is
 * required. */
static void
smtp_client_on_starttls(struct smtp_client *c, const struct smtp_reply *rep,
	struct smtp_client_actions *out)
{
	if (rep->code / 100 != 2 && c->cfg->tls_required) {
		smtp_client_fail(c, smtp_client_local_result(c, 421, 7, 4,
			SLICE_LIT("TLS is required, but the server refused STARTTLS"), false), true, out);
		return;
	}
	if (rep->code / 100 != 2) {
		smtp_client_idle(c, out);
		return;
	}
	smtp_client_push(out, SMTP_CLIENT_ACTION_STARTTLS, slice_make(NULL, 0));
	c->yield = true;
	smtp_client_goto(c, SMTP_CLIENT_STATE_TLS);
}

static void
smtp_client_on_rset(struct smtp_client *c, const struct smtp_reply *rep,
	struct smtp_client_actions *out)
{
	if (rep->code / 100 == 2)
		smtp_client_idle(c, out);
	else   /* a server that cannot reset cannot take another transaction */
		smtp_client_fail(c, smtp_client_reply_result(c, rep, SMTP_CLIENT_SCOPE_CONNECTION,
			SMTP_CLIENT_STAGE_RSET), true, out);
}

/* ---- the transaction: commands ---- */

static bool
smtp_client_bit(const uint64_t *bits, uint32_t i)
{
	return (bits[i / 64] >> (i % 64)) & 1u;
}

/* A path can go between "<" and ">" on a command line: no control octet, bounded. */
static bool
smtp_client_path_ok(struct slice p)
{
	if (p.len > SMTP_CLIENT_PATH_LEN_MAX)
		return false;
	for (size_t i = 0; i < p.len; i++) {
		if (p.ptr[i] < 0x20 || p.ptr[i] == 0x7f)
			return false;
	}
	return true;
}

static bool
smtp_client_has_8bit(struct slice p)
{
	for (size_t i = 0; i < p.len; i++) {
		if (p.ptr[i] >= 0x80)
			return true;
	}
	return false;
}

static bool
smtp_client_envid_ok(struct slice v)
{
	return v.len > 0 && v.len <= SMTP_CLIENT_ENVID_LEN_MAX && smtp_addr_xtext_valid(v);
}

static bool
smtp_client_orcpt_ok(const struct smtp_client *c, struct slice v)
{
	return v.len > 0 && v.len <= SMTP_CLIENT_ORCPT_LEN_MAX
		&& smtp_addr_orcpt_valid(v, c->smtputf8 ? SMTP_ADDR_ALLOW_UTF8 : 0);
}

static void
smtp_client_send_mail(struct smtp_client *c, struct smtp_client_actions *out)
{
	const struct smtp_client_txn *t = c->txn;
	uint32_t at = c->cmd_len;
	SMTP_CLIENT_PUT(c, "MAIL FROM:<");
	smtp_client_put(c, t->mail_from);
	SMTP_CLIENT_PUT(c, ">");
	if (c->ext & SMTP_CLIENT_EXT_SIZE) {   /* RFC 1870 6 */
		SMTP_CLIENT_PUT(c, " SIZE=");
		smtp_client_put_u64(c, t->body_size);
	}
	if ((t->needs_8bitmime || c->smtputf8) && (c->ext & SMTP_CLIENT_EXT_8BITMIME))
		SMTP_CLIENT_PUT(c, " BODY=8BITMIME");   /* RFC 6152 2 */
	if (c->smtputf8)
		SMTP_CLIENT_PUT(c, " SMTPUTF8");        /* RFC 6531 3.4 */
	if (c->ext & SMTP_CLIENT_EXT_DSN) {       /* RFC 3461 4.3, 4.4 */
		if (t->dsn_ret == SMTP_DSN_RET_FULL)
			SMTP_CLIENT_PUT(c, " RET=FULL");
		else if (t->dsn_ret == SMTP_DSN_RET_HDRS)
			SMTP_CLIENT_PUT(c, " RET=HDRS");
		if (smtp_client_envid_ok(t->dsn_envid)) {
			SMTP_CLIENT_PUT(c, " ENVID=");
			smtp_client_put(c, t->dsn_envid);
		}
	}
	SMTP_CLIENT_PUT(c, "\r\n");
	ASSERT(c->cmd_len - at <= SMTP_CLIENT_MAIL_LINE_MAX);
	smtp_client_send_end(c, at, out);
}

/* RFC 3461 4.1: NEVER alone, or SUCCESS, FAILURE, DELAY in this order. Returns the length. */
static size_t
smtp_client_notify_text(uint8_t notify, uint8_t *buf)
{
	static const struct {
		uint8_t bit;
		const char *name;
	} names[] = { { SMTP_DSN_NOTIFY_NEVER, "NEVER" }, { SMTP_DSN_NOTIFY_SUCCESS, "SUCCESS" },
		{ SMTP_DSN_NOTIFY_FAILURE, "FAILURE" }, { SMTP_DSN_NOTIFY_DELAY, "DELAY" } };
	size_t n = 0;
	for (size_t i = 0; i < ARRAY_LEN(names); i++) {
		if ((notify & names[i].bit) == 0)
			continue;
		if ((notify & SMTP_DSN_NOTIFY_NEVER) && names[i].bit != SMTP_DSN_NOTIFY_NEVER)
			continue;   /* NEVER excludes the others */
		if (n > 0)
			buf[n++] = ',';
		memcpy(buf + n, names[i].name, strlen(names[i].name));
		n += strlen(names[i].name);
	}
	return n;
}

/* The RCPT line of recipient i, written at cmd_buf[cmd_len] when `write`; returns its length. */
static uint32_t
smtp_client_rcpt_line(struct smtp_client *c, uint32_t i, bool write)
{
	const struct smtp_client_rcpt *r = &c->txn->rcpts[i];
	uint8_t notify[SMTP_CLIENT_NOTIFY_LEN_MAX];
	size_t notify_len = 0;
	bool orcpt = false;
	if (c->ext & SMTP_CLIENT_EXT_DSN) {   /* RFC 3461 4.1, 4.2 */
		notify_len = smtp_client_notify_text(r->notify, notify);
		orcpt = smtp_client_orcpt_ok(c, r->orcpt);
	}
	size_t len = 9 + r->path.len + 1 + (notify_len > 0 ? 8 + notify_len : 0)
		+ (orcpt ? 7 + r->orcpt.len : 0) + 2;
	ASSERT(len <= SMTP_CLIENT_RCPT_LINE_MAX);
	if (!write)
		return (uint32_t)len;
	uint32_t at = c->cmd_len;
	SMTP_CLIENT_PUT(c, "RCPT TO:<");
	smtp_client_put(c, r->path);
	SMTP_CLIENT_PUT(c, ">");
	if (notify_len > 0) {
		SMTP_CLIENT_PUT(c, " NOTIFY=");
		smtp_client_put(c, slice_make(notify, notify_len));
	}
	if (orcpt) {
		SMTP_CLIENT_PUT(c, " ORCPT=");
		smtp_client_put(c, r->orcpt);
	}
	SMTP_CLIENT_PUT(c, "\r\n");
	ASSERT(c->cmd_len - at == len);
	return (uint32_t)len;
}

static void
smtp_client_send_rcpt(struct smtp_client *c, struct smtp_client_actions *out)
{
	uint32_t at = c->cmd_len;
	smtp_client_rcpt_line(c, c->rcpt_sent++, true);
	smtp_client_send_end(c, at, out);
}

/* Whether a reply to something already written is still to come. */
static bool
smtp_client_waiting(const struct smtp_client *c)
{
	return !c->mail_replied || c->rcpt_replied < c->rcpt_sent;
}

/* Writes what may go now. Pipelined: RCPTs, then DATA, while the buffer keeps a step's reserve
 * (with nothing awaited, the reserve may be used: a command must go, or nothing would come back).
 * Otherwise: the next RCPT once the reply before it came. */
static void
smtp_client_send_more(struct smtp_client *c, struct smtp_client_actions *out)
{
	const struct smtp_client_txn *t = c->txn;
	if (!c->txn_open)
		return;
	if (!c->pipelined) {
		if (c->mail_ok && !smtp_client_waiting(c) && c->rcpt_sent < t->rcpt_count)
			smtp_client_send_rcpt(c, out);
		return;
	}
	for (;;) {
		uint32_t room = smtp_client_waiting(c) ? SMTP_CLIENT_CMD_BUF_SIZE
			- SMTP_CLIENT_CMD_LINE_LEN_MAX : SMTP_CLIENT_CMD_BUF_SIZE;
		if (c->rcpt_sent < t->rcpt_count) {
			if (c->cmd_len + smtp_client_rcpt_line(c, c->rcpt_sent, false) > room)
				return;
			smtp_client_send_rcpt(c, out);
			continue;
		}
		bool none_wanted = c->rcpt_replied == t->rcpt_count && c->rcpt_accepted == 0;
		if (c->bdat || c->data_sent || none_wanted || c->cmd_len + 6 > room)
			return;
		SMTP_CLIENT_SEND(c, "DATA\r\n", out);   /* RFC 2920 3.1: the last of the group */
		c->data_sent = true;
		return;
	}
}

/* The transaction is over: RSET when the server may still hold some of it (RFC 5321 4.1.1.5),
 * then idle. `clean`: it ended with the reply after the data, which resets the server. */
static void
smtp_client_txn_over(struct smtp_client *c, bool clean, struct smtp_client_actions *out)
{
	ASSERT(!c->txn_open);
	if (c->mail_ok && !clean) {
		c->txn = NULL;
		SMTP_CLIENT_SEND(c, "RSET\r\n", out);
		smtp_client_goto(c, SMTP_CLIENT_STATE_RSET);
		return;
	}
	smtp_client_idle(c, out);
}

static void
smtp_client_send_bdat(struct smtp_client *c, struct smtp_client_actions *out)
{
	uint32_t at = c->cmd_len;
	SMTP_CLIENT_PUT(c, "BDAT ");   /* RFC 3030 2: the whole body as the last chunk */
	smtp_client_put_u64(c, c->txn->body_size);
	SMTP_CLIENT_PUT(c, " LAST\r\n");
	smtp_client_send_end(c, at, out);
	smtp_client_push(out, SMTP_CLIENT_ACTION_BODY, slice_make(NULL, 0));
	c->yield = true;
	c->body_sent = 0;
	smtp_client_goto(c, SMTP_CLIENT_STATE_BODY);
}

/* After a reply to MAIL or RCPT: write what may go, and wait where the next reply belongs. */
static void
smtp_client_txn_next(struct smtp_client *c, struct smtp_client_actions *out)
{
	const struct smtp_client_txn *t = c->txn;
	smtp_client_send_more(c, out);
	if (c->rcpt_replied < c->rcpt_sent) {
		smtp_client_goto(c, SMTP_CLIENT_STATE_RCPT);
		return;
	}
	if (c->txn_open && c->rcpt_replied == t->rcpt_count && c->rcpt_accepted == 0)
		smtp_client_txn_result(c, smtp_client_local_result(c, 554, 5, 0,
			SLICE_LIT("no recipient was accepted"), false), out);
	if (c->data_sent) {
		smtp_client_goto(c, SMTP_CLIENT_STATE_DATA);
		return;
	}
	if (!c->txn_open) {
		smtp_client_txn_over(c, false, out);
		return;
	}
	ASSERT(c->rcpt_replied == t->rcpt_count);
	if (c->bdat) {
		smtp_client_send_bdat(c, out);
		return;
	}
	SMTP_CLIENT_SEND(c, "DATA\r\n", out);
	c->data_sent = true;
	smtp_client_goto(c, SMTP_CLIENT_STATE_DATA);
}

/* ---- the transaction: replies ---- */

static void
smtp_client_on_mail(struct smtp_client *c, const struct smtp_reply *rep,
	struct smtp_client_actions *out)
{
	c->mail_replied = true;
	if (rep->code / 100 == 2)
		c->mail_ok = true;
	else   /* the pipelined RCPTs will be refused too; their replies are read and dropped */
		smtp_client_txn_result(c, smtp_client_reply_result(c, rep, SMTP_CLIENT_SCOPE_TXN,
			SMTP_CLIENT_STAGE_MAIL), out);
	smtp_client_txn_next(c, out);
}

static void
smtp_client_on_rcpt(struct smtp_client *c, const struct smtp_reply *rep,
	struct smtp_client_actions *out)
{
	uint32_t i = c->rcpt_replied++;
	if (c->txn_open && rep->code / 100 == 2) {
		c->accepted[i / 64] |= 1ull << (i % 64);
		c->rcpt_accepted++;
	} else if (c->txn_open) {
		struct smtp_client_result r = smtp_client_reply_result(c, rep,
			SMTP_CLIENT_SCOPE_RCPT, SMTP_CLIENT_STAGE_RCPT);
		r.rcpt = i;
		r.rcpt_count = 1;
		c->rcpt_refused++;
		smtp_client_push_result(out, r);
	}
	smtp_client_txn_next(c, out);
}

static void
smtp_client_on_data(struct smtp_client *c, const struct smtp_reply *rep,
	struct smtp_client_actions *out)
{
	if (rep->code / 100 == 2) {
		smtp_client_violation(c, SLICE_LIT("2xx to DATA"), out);
	} else if (rep->code / 100 == 3 && c->txn_open) {
		ASSERT(c->rcpt_accepted > 0);
		smtp_client_push(out, SMTP_CLIENT_ACTION_BODY, slice_make(NULL, 0));
		c->yield = true;
		c->body_sent = 0;
		data_stuff_init(&c->stuff);
		smtp_client_goto(c, SMTP_CLIENT_STATE_BODY);
	} else if (rep->code / 100 == 3) {
		/* RFC 2920 3.1: DATA accepted with no recipient left: send a lone dot. */
		SMTP_CLIENT_SEND(c, ".\r\n", out);
		c->dummy_end = true;
		smtp_client_goto(c, SMTP_CLIENT_STATE_END);
	} else {
		if (c->txn_open)
			smtp_client_txn_result(c, smtp_client_reply_result(c, rep,
				SMTP_CLIENT_SCOPE_TXN, SMTP_CLIENT_STAGE_DATA), out);
		smtp_client_txn_over(c, false, out);
	}
}

static void
smtp_client_on_end(struct smtp_client *c, const struct smtp_reply *rep,
	struct smtp_client_actions *out)
{
	if (rep->code / 100 == 3) {
		smtp_client_violation(c, SLICE_LIT("3xx after the data"), out);
		return;
	}
	if (!c->dummy_end)   /* RFC 5321 4.1.1.4: 250 delivered, else 4xx or 5xx for all */
		smtp_client_txn_result(c, smtp_client_reply_result(c, rep, SMTP_CLIENT_SCOPE_TXN,
			SMTP_CLIENT_STAGE_END), out);
	smtp_client_txn_over(c, true, out);
}

/* A reply while the body is still going out: the server gave up on the message early. */
static void
smtp_client_on_premature(struct smtp_client *c, const struct smtp_reply *rep,
	struct smtp_client_actions *out)
{
	if (rep->code / 100 == 4 || rep->code / 100 == 5)
		smtp_client_fail(c, smtp_client_reply_result(c, rep, SMTP_CLIENT_SCOPE_CONNECTION,
			SMTP_CLIENT_STAGE_BODY), false, out);
	else
		smtp_client_violation(c, SLICE_LIT("reply before the end of the data"), out);
}

static void
smtp_client_on_unsolicited(struct smtp_client *c, const struct smtp_reply *rep,
	struct smtp_client_actions *out)
{
	smtp_client_violation(c, SLICE_LIT("reply to no command"), out);
}

typedef void (*smtp_client_reply_fn)(struct smtp_client *c, const struct smtp_reply *rep,
	struct smtp_client_actions *out);

/* The handler of the reply each state awaits, and whether it judges a 3xx itself; elsewhere a
 * 3xx breaks the protocol, as only DATA is answered with one (RFC 5321 4.3.2). TLS, QUIT and
 * CLOSED have none: no reply is read in TLS or CLOSED, and QUIT takes any reply. */
static const struct {
	smtp_client_reply_fn fn;
	bool takes_3xx;
} smtp_client_on[] = {
	[SMTP_CLIENT_STATE_GREETING] = { smtp_client_on_greeting, false },
	[SMTP_CLIENT_STATE_EHLO] = { smtp_client_on_hello, false },
	[SMTP_CLIENT_STATE_HELO] = { smtp_client_on_hello, false },
	[SMTP_CLIENT_STATE_STARTTLS] = { smtp_client_on_starttls, false },
	[SMTP_CLIENT_STATE_READY] = { smtp_client_on_unsolicited, true },
	[SMTP_CLIENT_STATE_MAIL] = { smtp_client_on_mail, false },
	[SMTP_CLIENT_STATE_RCPT] = { smtp_client_on_rcpt, false },
	[SMTP_CLIENT_STATE_DATA] = { smtp_client_on_data, true },
	[SMTP_CLIENT_STATE_BODY] = { smtp_client_on_premature, true },
	[SMTP_CLIENT_STATE_END] = { smtp_client_on_end, true },
	[SMTP_CLIENT_STATE_RSET] = { smtp_client_on_rset, false },
};
_Static_assert(ARRAY_LEN(smtp_client_on) <= SMTP_CLIENT_STATE_CLOSED + 1, "one per state");

/* A complete reply, in the state that awaited it. */
static void
smtp_client_on_reply(struct smtp_client *c, const struct smtp_reply *rep,
	struct smtp_client_actions *out)
{
	if (c->state == SMTP_CLIENT_STATE_QUIT) {   /* RFC 5321 4.1.1.10: 221, or anything */
		smtp_client_close(c, out);
		return;
	}
	if (rep->code == 421) {   /* RFC 5321 3.8: the server is closing the connection */
		smtp_client_fail(c, smtp_client_reply_result(c, rep, SMTP_CLIENT_SCOPE_CONNECTION,
			smtp_client_stage(c)), false, out);
		return;
	}
	ASSERT((size_t)c->state < ARRAY_LEN(smtp_client_on));
	ASSERT(smtp_client_on[c->state].fn != NULL);
	if (rep->code / 100 == 3 && !smtp_client_on[c->state].takes_3xx) {
		smtp_client_violation(c, SLICE_LIT("3xx to a command that takes none"), out);
		return;
	}
	smtp_client_on[c->state].fn(c, rep, out);
}

/* ---- feeding ---- */

static size_t
smtp_client_step(struct smtp_client *c, struct slice in, struct smtp_client_actions *out)
{
	size_t used;
	struct smtp_reply_line line;
	enum smtp_reply_event ev = smtp_reply_feed(&c->reply, in, &used, &line);
	if (ev == SMTP_REPLY_MORE)
		return 0;
	if (ev == SMTP_REPLY_ERROR) {
		const char *why = smtp_reply_error_name(smtp_reply_error(&c->reply));
		if (c->state == SMTP_CLIENT_STATE_QUIT)
			smtp_client_close(c, out);
		else
			smtp_client_violation(c, slice_make(why, strlen(why)), out);
		return 0;
	}
	if (c->state == SMTP_CLIENT_STATE_EHLO && line.index > 0 && line.code / 100 == 2)
		smtp_client_ehlo_line(c, line.text);
	if (ev == SMTP_REPLY_DONE) {
		struct smtp_reply rep = smtp_reply_get(&c->reply);
		smtp_client_on_reply(c, &rep, out);
	}
	return used;
}

static bool
smtp_client_can_step(const struct smtp_client *c, const struct smtp_client_actions *out)
{
	if (c->state == SMTP_CLIENT_STATE_CLOSED || c->yield)
		return false;
	return out->count + SMTP_CLIENT_STEP_ACTIONS_MAX <= SMTP_CLIENT_ACTIONS_MAX
		&& c->cmd_len + SMTP_CLIENT_CMD_LINE_LEN_MAX <= SMTP_CLIENT_CMD_BUF_SIZE
		&& c->text_len + SMTP_CLIENT_STEP_TEXT_MAX <= SMTP_CLIENT_TEXT_BUF_SIZE;
}

size_t
smtp_client_feed(struct smtp_client *c, struct slice in, struct smtp_client_actions *out)
{
	ASSERT(c->state != SMTP_CLIENT_STATE_TLS);
	ASSERT(out->count <= SMTP_CLIENT_ACTIONS_MAX);
	if (out->count == 0) {
		c->cmd_len = 0;
		c->text_len = 0;
	}
	c->yield = false;
	size_t used = 0;
	while (used < in.len && smtp_client_can_step(c, out)) {
		size_t n = smtp_client_step(c, slice_skip(in, used), out);
		if (n == 0)
			break;
		used += n;
	}
	return used;
}

/* ---- the other entry points ---- */

void
smtp_client_init(struct smtp_client *c, const struct smtp_client_config *cfg)
{
	ASSERT(cfg != NULL);
	ASSERT(cfg->helo_name.len > 0);
	ASSERT(cfg->helo_name.len <= SMTP_CLIENT_HELO_LEN_MAX);
	for (size_t i = 0; i < cfg->helo_name.len; i++)   /* the configuration checked it */
		ASSERT(cfg->helo_name.ptr[i] > ' ' && cfg->helo_name.ptr[i] < 0x7f);
	/* Not the buffers: an idle slot keeps those pages untouched. */
	memset(c, 0, offsetof(struct smtp_client, cmd_buf));
	c->cfg = cfg;
	c->state = SMTP_CLIENT_STATE_GREETING;
	smtp_reply_init(&c->reply);
}

/* Why a transaction cannot go to this receiver, checked before anything is sent; a result with
 * code 0 when it can. */
static struct smtp_client_result
smtp_client_txn_refusal(struct smtp_client *c, const struct smtp_client_txn *t)
{
	bool bad_rcpt = false;
	for (uint32_t i = 0; i < t->rcpt_count; i++)
		bad_rcpt |= t->rcpts[i].path.len == 0 || !smtp_client_path_ok(t->rcpts[i].path);
	if (!smtp_client_path_ok(t->mail_from))
		return smtp_client_local_result(c, 553, 1, 7,
			SLICE_LIT("sender address cannot be sent on a command line"), false);
	if (bad_rcpt)
		return smtp_client_local_result(c, 553, 1, 3,
			SLICE_LIT("a recipient address cannot be sent on a command line"), false);
	if (c->smtputf8 && !(c->ext & SMTP_CLIENT_EXT_SMTPUTF8))   /* RFC 6531 3.2 */
		return smtp_client_local_result(c, 553, 6, 7, SLICE_LIT("the message needs "
			"SMTPUTF8 and the receiver does not offer it"), false);
	if (t->needs_8bitmime && !(c->ext & SMTP_CLIENT_EXT_8BITMIME))   /* RFC 6152 3 */
		return smtp_client_local_result(c, 554, 6, 3, SLICE_LIT("the message has 8-bit "
			"content and the receiver does not offer 8BITMIME; not converted"), false);
	if (c->size_max != 0 && t->body_size > c->size_max) {   /* RFC 1870 6 */
		struct smtp_client_result r = smtp_client_local_result(c, 552, 3, 4,
			SLICE_LIT("message size exceeds the receiver's limit of "), false);
		smtp_client_text_u64(c, c->size_max);
		r.text.len = c->text_len - (uint32_t)(r.text.ptr - c->text_buf);
		return r;
	}
	return (struct smtp_client_result){ .code = 0 };
}

void
smtp_client_transaction(struct smtp_client *c, const struct smtp_client_txn *txn,
	struct smtp_client_actions *out)
{
	ASSERT(c->state == SMTP_CLIENT_STATE_READY);
	ASSERT(txn->rcpts != NULL);
	ASSERT(txn->rcpt_count >= 1);
	ASSERT(txn->rcpt_count <= SMTP_CLIENT_RCPT_COUNT_MAX);
	smtp_client_call_begin(c, out);
	c->txn = txn;
	c->txn_open = true;
	c->smtputf8 = txn->needs_smtputf8 || smtp_client_has_8bit(txn->mail_from);
	for (uint32_t i = 0; i < txn->rcpt_count; i++)
		c->smtputf8 |= smtp_client_has_8bit(txn->rcpts[i].path);
	c->pipelined = (c->ext & SMTP_CLIENT_EXT_PIPELINING) != 0;
	c->bdat = txn->use_bdat && (c->ext & SMTP_CLIENT_EXT_CHUNKING);
	c->mail_replied = c->mail_ok = c->data_sent = c->dummy_end = false;
	c->rcpt_sent = c->rcpt_replied = c->rcpt_accepted = c->rcpt_refused = 0;
	memset(c->accepted, 0, sizeof(c->accepted));
	struct smtp_client_result refusal = smtp_client_txn_refusal(c, txn);
	if (refusal.code != 0) {
		refusal.stage = SMTP_CLIENT_STAGE_NONE;
		smtp_client_txn_result(c, refusal, out);
		smtp_client_idle(c, out);
		return;
	}
	smtp_client_send_mail(c, out);
	smtp_client_goto(c, SMTP_CLIENT_STATE_MAIL);
	smtp_client_send_more(c, out);
}

/* The body as DATA wants it: dot-stuffed slices of the piece (proto/data_stuff). */
static size_t
smtp_client_body_data(struct smtp_client *c, struct slice piece, struct smtp_client_actions *out)
{
	struct data_stuff_out st;
	uint32_t room = SMTP_CLIENT_ACTIONS_MAX - out->count - 1;   /* one left for the end */
	if (room > DATA_STUFF_SLICES_MAX)
		room = DATA_STUFF_SLICES_MAX;
	st.count = DATA_STUFF_SLICES_MAX - room;   /* so that the stuffer adds at most room */
	uint32_t first = st.count;
	size_t n = data_stuff_feed(&c->stuff, piece, &st);
	for (uint32_t i = first; i < st.count; i++)
		smtp_client_push(out, SMTP_CLIENT_ACTION_SEND, st.slices[i]);
	return n;
}

size_t
smtp_client_body(struct smtp_client *c, struct slice piece, bool last,
	struct smtp_client_actions *out)
{
	if (c->state == SMTP_CLIENT_STATE_CLOSED)
		return piece.len;   /* the connection failed meanwhile: nobody to send to */
	ASSERT(c->state == SMTP_CLIENT_STATE_BODY);
	ASSERT(out->count + DATA_STUFF_ROOM_MIN + 1 <= SMTP_CLIENT_ACTIONS_MAX);
	ASSERT(piece.len <= c->txn->body_size - c->body_sent);
	size_t n = piece.len;
	if (c->bdat && n > 0)
		smtp_client_push(out, SMTP_CLIENT_ACTION_SEND, piece);   /* RFC 3030: as it is */
	else if (!c->bdat)
		n = smtp_client_body_data(c, piece, out);
	c->body_sent += n;
	if (last && n == piece.len) {
		ASSERT(c->body_sent == c->txn->body_size);
		if (!c->bdat) {
			struct data_stuff_out st = { .count = DATA_STUFF_SLICES_MAX - 1 };
			data_stuff_end(&c->stuff, &st);   /* RFC 5321 4.1.1.4: CRLF "." CRLF */
			smtp_client_push(out, SMTP_CLIENT_ACTION_SEND, st.slices[st.count - 1]);
		}
		smtp_client_goto(c, SMTP_CLIENT_STATE_END);
	}
	return n;
}

void
smtp_client_tls_done(struct smtp_client *c, int result, struct smtp_client_actions *out)
{
	ASSERT(c->state == SMTP_CLIENT_STATE_TLS);
	ASSERT(result <= 0);
	smtp_client_call_begin(c, out);
	if (result < 0) {
		smtp_client_fail(c, smtp_client_local_result(c, 421, 7, 5,
			SLICE_LIT("TLS handshake failed"), false), false, out);
		return;
	}
	/* RFC 3207 4.2: forget everything learnt before TLS and start over with EHLO. */
	c->tls_active = true;
	c->ext = 0;
	c->size_max = 0;
	smtp_reply_init(&c->reply);
	smtp_client_send_hello(c, true, out);
}

void
smtp_client_quit(struct smtp_client *c, struct smtp_client_actions *out)
{
	if (c->state == SMTP_CLIENT_STATE_CLOSED || c->state == SMTP_CLIENT_STATE_QUIT)
		return;
	smtp_client_call_begin(c, out);
	if (c->state == SMTP_CLIENT_STATE_READY) {
		SMTP_CLIENT_SEND(c, "QUIT\r\n", out);   /* RFC 5321 4.1.1.10 */
		smtp_client_goto(c, SMTP_CLIENT_STATE_QUIT);
		return;
	}
	smtp_client_fail(c, smtp_client_local_result(c, 421, 3, 2, SLICE_LIT("session ended by us"),
		true), false, out);
}

void
smtp_client_timeout(struct smtp_client *c, struct smtp_client_actions *out)
{
	if (c->state == SMTP_CLIENT_STATE_CLOSED)
		return;
	smtp_client_call_begin(c, out);
	if (c->state == SMTP_CLIENT_STATE_QUIT) {
		smtp_client_close(c, out);
		return;
	}
	smtp_client_fail(c, smtp_client_local_result(c, 421, 4, 2, SLICE_LIT("timeout"), true),
		false, out);
}

void
smtp_client_lost(struct smtp_client *c, int err, struct smtp_client_actions *out)
{
	ASSERT(err <= 0);
	if (c->state == SMTP_CLIENT_STATE_CLOSED)
		return;
	smtp_client_call_begin(c, out);
	if (c->state == SMTP_CLIENT_STATE_QUIT) {
		smtp_client_close(c, out);
		return;
	}
	struct slice what = err == 0 ? SLICE_LIT("connection closed by the server")
		: SLICE_LIT("connection lost");
	smtp_client_fail(c, smtp_client_local_result(c, 421, 4, 2, what, true), false, out);
}

static uint32_t
smtp_client_or(uint32_t configured, uint32_t rfc)
{
	return configured != 0 ? configured : rfc;
}

uint32_t
smtp_client_timeout_ms(const struct smtp_client *c)
{
	const struct smtp_client_config *cfg = c->cfg;
	switch (c->state) {
	case SMTP_CLIENT_STATE_GREETING:
		return smtp_client_or(cfg->greeting_timeout_ms, SMTP_CLIENT_TIMEOUT_GREETING_MS);
	case SMTP_CLIENT_STATE_MAIL:
		return smtp_client_or(cfg->cmd_timeout_ms, SMTP_CLIENT_TIMEOUT_MAIL_MS);
	case SMTP_CLIENT_STATE_RCPT:
		return smtp_client_or(cfg->cmd_timeout_ms, SMTP_CLIENT_TIMEOUT_RCPT_MS);
	case SMTP_CLIENT_STATE_DATA:
		return smtp_client_or(cfg->data_init_timeout_ms, SMTP_CLIENT_TIMEOUT_DATA_INIT_MS);
	case SMTP_CLIENT_STATE_BODY:
		return smtp_client_or(cfg->data_block_timeout_ms,
			SMTP_CLIENT_TIMEOUT_DATA_BLOCK_MS);
	case SMTP_CLIENT_STATE_END:
		return smtp_client_or(cfg->data_term_timeout_ms, SMTP_CLIENT_TIMEOUT_DATA_TERM_MS);
	case SMTP_CLIENT_STATE_EHLO:
	case SMTP_CLIENT_STATE_HELO:
	case SMTP_CLIENT_STATE_STARTTLS:
	case SMTP_CLIENT_STATE_RSET:
	case SMTP_CLIENT_STATE_QUIT:
		return smtp_client_or(cfg->cmd_timeout_ms, SMTP_CLIENT_TIMEOUT_CMD_MS);
	default:
		return 0;   /* READY, TLS, CLOSED: nothing awaited from the server */
	}
}

bool
smtp_client_closed(const struct smtp_client *c)
{
	return c->state == SMTP_CLIENT_STATE_CLOSED;
}

bool
smtp_client_ready(const struct smtp_client *c)
{
	return c->state == SMTP_CLIENT_STATE_READY;
}

uint32_t
smtp_client_extensions(const struct smtp_client *c)
{
	return c->ext;
}

uint64_t
smtp_client_size_max(const struct smtp_client *c)
{
	return c->size_max;
}

bool
smtp_client_rcpt_accepted(const struct smtp_client *c, uint32_t i)
{
	ASSERT(i < SMTP_CLIENT_RCPT_COUNT_MAX);
	return smtp_client_bit(c->accepted, i);
}

const char *
smtp_client_stage_name(enum smtp_client_stage stage)
{
	static const char *const names[] = {
		[SMTP_CLIENT_STAGE_NONE] = "before sending",
		[SMTP_CLIENT_STAGE_GREETING] = "greeting",
		[SMTP_CLIENT_STAGE_EHLO] = "EHLO",
		[SMTP_CLIENT_STAGE_HELO] = "HELO",
		[SMTP_CLIENT_STAGE_STARTTLS] = "STARTTLS",
		[SMTP_CLIENT_STAGE_MAIL] = "MAIL FROM",
		[SMTP_CLIENT_STAGE_RCPT] = "RCPT TO",
		[SMTP_CLIENT_STAGE_DATA] = "DATA",
		[SMTP_CLIENT_STAGE_BODY] = "message body",
		[SMTP_CLIENT_STAGE_END] = "end of data",
		[SMTP_CLIENT_STAGE_RSET] = "RSET",
		[SMTP_CLIENT_STAGE_QUIT] = "QUIT",
		[SMTP_CLIENT_STAGE_IDLE] = "idle",
	};
	ASSERT((size_t)stage < ARRAY_LEN(names));
	return names[stage];
}
