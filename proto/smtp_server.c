/* proto/smtp_server.c - the RFC 5321 server state machine; see smtp_server.h.
 *
 * One step of smtp_server_feed handles one unit of input: a command line, a stretch of DATA body,
 * a stretch of a BDAT chunk, a stretch of a refused chunk being dropped, or the rest of an
 * over-long line being dropped. A step runs only when the action array and the reply buffer have
 * room for the most one step can add, so a step never stops half way.
 *
 * Bad commands: the replies 500, 501, 502, 503, 504, 530, 538, 553 (an address that needs
 * SMTPUTF8) and 555 count against cfg->bad_cmd_max: they answer a client that does not speak the
 * protocol (or ignores what the listener requires). Policy and limit answers (550, 554, 451,
 * 452, 552) do not count: well-behaved clients meet them. A 535 counts against
 * SMTP_AUTH_FAILURES_MAX instead.
 *
 * Enhanced status codes (RFC 2034, RFC 3463) prefix every reply text except the greeting, the
 * HELO/EHLO answer (RFC 2034 3), 354 and the 334 challenges, for which RFC 3463 defines no
 * class 3. */
#include "proto/smtp_server.h"

#include <errno.h>
#include <string.h>

#include "proto/smtp_addr.h"

#define SMTP_SERVER_STEP_ACTIONS_MAX 6u     /* BODY_DISCARD, error, 421, CLOSE, and spare */
#define SMTP_SERVER_STEP_REPLY_MAX 1024u    /* the EHLO answer is the longest */
#define SMTP_SERVER_BODY_END_ACTIONS 3u     /* a slice cut at the limit, BODY_DISCARD, reply */
#define SMTP_SERVER_HOSTNAME_LEN_MAX 255u   /* RFC 1035 2.3.4; a longer name is cut */
#define SMTP_SERVER_QUEUE_ID_LEN_MAX 64u
#define SMTP_SERVER_ENVID_LEN_MAX 100u      /* RFC 3461 4.4 */
#define SMTP_SERVER_ORCPT_LEN_MAX 500u      /* RFC 3461 4.2 */
#define SMTP_SERVER_DIGITS_MAX 20u          /* a uint64_t in decimal */

_Static_assert(SMTP_SERVER_STEP_ACTIONS_MAX + SMTP_SERVER_BODY_END_ACTIONS < SMTP_ACTIONS_MAX,
	"a DATA step has room for body slices");
_Static_assert(2 * SMTP_SERVER_STEP_REPLY_MAX <= SMTP_REPLY_BUF_SIZE, "several replies per feed");
_Static_assert(SMTP_SERVER_HOSTNAME_LEN_MAX + 200 < SMTP_SERVER_STEP_REPLY_MAX, "EHLO fits");
_Static_assert(SMTP_CMD_LINE_LEN_MAX <= UINT16_MAX, "record lengths are 16 bits");
_Static_assert(2 * SMTP_CMD_LINE_LEN_MAX < SMTP_ENVELOPE_ARENA_SIZE, "HELO and MAIL always fit");
_Static_assert(SMTP_AUTH_RESPONSE_LEN_MAX < SMTP_CMD_LINE_LEN_MAX,
	"a valid AUTH response line is read as a line");
_Static_assert(SMTP_AUTH_FAILURES_MAX <= UINT8_MAX, "the count fits its field");

#define SMTP_SERVER_ST(x) (1u << SMTP_STATE_##x)
#define SMTP_SERVER_ST_CMD (SMTP_SERVER_ST(CONNECTED) | SMTP_SERVER_ST(READY) \
	| SMTP_SERVER_ST(MAIL) | SMTP_SERVER_ST(RCPT) | SMTP_SERVER_ST(BDAT_WAIT))

/* An accepted recipient, stored at the arena's end (record i at the i-th slot from the end);
 * offsets into the arena. */
struct smtp_server_rcpt_rec {
	uint32_t path_off;
	uint32_t local_off;
	uint32_t domain_off;
	uint32_t orcpt_off;
	uint16_t path_len;
	uint16_t local_len;
	uint16_t domain_len;
	uint16_t orcpt_len;
	uint8_t notify;
};

/* Where each state may go: the only place that changes s->state checks this. */
static const uint32_t smtp_server_next_states[] = {
	[SMTP_STATE_GREETING] = SMTP_SERVER_ST(CONNECTED) | SMTP_SERVER_ST(CLOSED),
	[SMTP_STATE_CONNECTED] = SMTP_SERVER_ST(CONNECTED) | SMTP_SERVER_ST(READY)
		| SMTP_SERVER_ST(CLOSED),
	[SMTP_STATE_READY] = SMTP_SERVER_ST(CONNECTED) | SMTP_SERVER_ST(READY)
		| SMTP_SERVER_ST(MAIL) | SMTP_SERVER_ST(AUTH) | SMTP_SERVER_ST(AUTH_WAIT)
		| SMTP_SERVER_ST(TLS_WAIT) | SMTP_SERVER_ST(CLOSED),
	[SMTP_STATE_MAIL] = SMTP_SERVER_ST(READY) | SMTP_SERVER_ST(RCPT) | SMTP_SERVER_ST(CLOSED),
	[SMTP_STATE_RCPT] = SMTP_SERVER_ST(READY) | SMTP_SERVER_ST(RCPT) | SMTP_SERVER_ST(DATA)
		| SMTP_SERVER_ST(BDAT) | SMTP_SERVER_ST(CLOSED),
	[SMTP_STATE_DATA] = SMTP_SERVER_ST(READY) | SMTP_SERVER_ST(COMMIT_WAIT)
		| SMTP_SERVER_ST(CLOSED),
	[SMTP_STATE_BDAT] = SMTP_SERVER_ST(READY) | SMTP_SERVER_ST(BDAT_WAIT)
		| SMTP_SERVER_ST(COMMIT_WAIT) | SMTP_SERVER_ST(CLOSED),
	[SMTP_STATE_BDAT_WAIT] = SMTP_SERVER_ST(READY) | SMTP_SERVER_ST(BDAT)
		| SMTP_SERVER_ST(CLOSED),
	[SMTP_STATE_COMMIT_WAIT] = SMTP_SERVER_ST(READY) | SMTP_SERVER_ST(CLOSED),
	[SMTP_STATE_AUTH] = SMTP_SERVER_ST(READY) | SMTP_SERVER_ST(AUTH) | SMTP_SERVER_ST(AUTH_WAIT)
		| SMTP_SERVER_ST(CLOSED),
	[SMTP_STATE_AUTH_WAIT] = SMTP_SERVER_ST(READY) | SMTP_SERVER_ST(CLOSED),
	[SMTP_STATE_TLS_WAIT] = SMTP_SERVER_ST(CONNECTED) | SMTP_SERVER_ST(CLOSED),
	[SMTP_STATE_CLOSED] = 0,
};

static void
smtp_server_goto(struct smtp_server *s, enum smtp_server_state to)
{
	ASSERT((smtp_server_next_states[s->state] & (1u << to)) != 0);
	s->state = to;
}

/* ---- limits taken from the configuration ---- */

static uint64_t
smtp_server_size_max(const struct smtp_server *s)
{
	/* RFC 1870 6: SIZE 0 means no fixed maximum. */
	return s->cfg->max_message_size == 0 ? UINT64_MAX : s->cfg->max_message_size;
}

static uint32_t
smtp_server_rcpt_max(const struct smtp_server *s)
{
	uint32_t n = s->cfg->max_recipients;
	return (n == 0 || n > SMTP_RCPT_COUNT_MAX) ? SMTP_RCPT_COUNT_MAX : n;
}

static uint32_t
smtp_server_bad_cmd_max(const struct smtp_server *s)
{
	return s->cfg->bad_cmd_max == 0 ? SMTP_BAD_CMD_COUNT_MAX : s->cfg->bad_cmd_max;
}

static struct slice
smtp_server_hostname(const struct smtp_server *s)
{
	struct slice h = s->cfg->hostname;
	if (h.len > SMTP_SERVER_HOSTNAME_LEN_MAX)
		h.len = SMTP_SERVER_HOSTNAME_LEN_MAX;
	return h;
}

/* ---- actions and replies ---- */

static void
smtp_server_push(struct smtp_actions *out, enum smtp_action_type type, struct slice data)
{
	ASSERT(out->count < SMTP_ACTIONS_MAX);
	out->items[out->count++] = (struct smtp_action){ .type = type, .data = data };
}

static void
smtp_server_put(struct smtp_server *s, struct slice text)
{
	ASSERT(text.len <= SMTP_REPLY_BUF_SIZE - s->reply_len);
	if (text.len == 0)
		return;
	memcpy(s->reply_buf + s->reply_len, text.ptr, text.len);
	s->reply_len += (uint32_t)text.len;
}

static void
smtp_server_put_u64(struct smtp_server *s, uint64_t v)
{
	uint8_t digits[SMTP_SERVER_DIGITS_MAX];
	size_t n = 0;
	do {
		digits[sizeof(digits) - ++n] = (uint8_t)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	smtp_server_put(s, slice_make(digits + sizeof(digits) - n, n));
}

/* Ends the reply that started at reply_buf[at] and hands it out. */
static void
smtp_server_reply_end(struct smtp_server *s, uint32_t at, struct smtp_actions *out)
{
	smtp_server_put(s, SLICE_LIT("\r\n"));
	smtp_server_push(out, SMTP_ACTION_REPLY, slice_make(s->reply_buf + at, s->reply_len - at));
}

static void
smtp_server_reply(struct smtp_server *s, struct smtp_actions *out, struct slice text)
{
	uint32_t at = s->reply_len;
	smtp_server_put(s, text);
	smtp_server_reply_end(s, at, out);
}

#define SMTP_SERVER_REPLY(s, out, text) smtp_server_reply((s), (out), SLICE_LIT(text))

/* A call other than feed: the reply buffer restarts when the caller has no reply of ours. */
static void
smtp_server_call_begin(struct smtp_server *s, const struct smtp_actions *out)
{
	ASSERT(out->count <= SMTP_ACTIONS_MAX - SMTP_SERVER_STEP_ACTIONS_MAX);
	if (out->count == 0)
		s->reply_len = 0;
	ASSERT(s->reply_len <= SMTP_REPLY_BUF_SIZE - SMTP_SERVER_STEP_REPLY_MAX);
}

/* The last reply of the session: any unfinished body is dropped, any password wiped. */
static void
smtp_server_close(struct smtp_server *s, struct smtp_actions *out, struct slice text)
{
	if (s->state == SMTP_STATE_AUTH || s->state == SMTP_STATE_AUTH_WAIT)
		smtp_auth_wipe(&s->auth);
	if (s->body_begun)
		smtp_server_push(out, SMTP_ACTION_BODY_DISCARD, slice_make(NULL, 0));
	s->body_begun = false;
	smtp_server_reply(s, out, text);
	smtp_server_push(out, SMTP_ACTION_CLOSE, slice_make(NULL, 0));
	smtp_server_goto(s, SMTP_STATE_CLOSED);
}

/* A reply that counts as a bad command; the last one allowed is followed by 421 and CLOSE. */
static void
smtp_server_reply_bad(struct smtp_server *s, struct smtp_actions *out, struct slice text)
{
	smtp_server_reply(s, out, text);
	if (++s->bad_cmd_count >= smtp_server_bad_cmd_max(s))
		smtp_server_close(s, out, SLICE_LIT("421 4.7.0 too many errors"));
}

#define SMTP_SERVER_BAD(s, out, text) smtp_server_reply_bad((s), (out), SLICE_LIT(text))

/* ---- the transaction ---- */

static uint32_t
smtp_server_arena_free(const struct smtp_server *s)
{
	uint32_t recs = s->env.rcpt_count * (uint32_t)sizeof(struct smtp_server_rcpt_rec);
	ASSERT(s->arena_used + recs <= SMTP_ENVELOPE_ARENA_SIZE);
	return SMTP_ENVELOPE_ARENA_SIZE - s->arena_used - recs;
}

/* Copies text to the arena's free space. The caller checked that it fits. */
static struct slice
smtp_server_arena_copy(struct smtp_server *s, struct slice text)
{
	ASSERT(text.len <= smtp_server_arena_free(s));
	uint8_t *at = s->arena + s->arena_used;
	if (text.len > 0)
		memcpy(at, text.ptr, text.len);   /* copy: the envelope outlives the input buffer */
	s->arena_used += (uint32_t)text.len;
	return slice_make(at, text.len);
}

/* Ends the transaction (RFC 5321 4.1.1.5, 4.1.4), keeping the HELO name. */
static void
smtp_server_txn_end(struct smtp_server *s, struct smtp_actions *out)
{
	if (s->body_begun)
		smtp_server_push(out, SMTP_ACTION_BODY_DISCARD, slice_make(NULL, 0));
	s->body_begun = false;
	s->body_over = false;
	s->arena_used = s->helo_len;
	s->env = (struct smtp_envelope){ .helo = s->env.helo, .esmtp = s->env.esmtp };
	if (s->state != SMTP_STATE_CONNECTED)
		smtp_server_goto(s, SMTP_STATE_READY);
}

static void
smtp_server_body_begin(struct smtp_server *s, struct smtp_actions *out)
{
	smtp_server_push(out, SMTP_ACTION_BODY_BEGIN, slice_make(NULL, 0));
	s->body_begun = true;
	s->body_over = false;
	s->env.body_size = 0;
}

static void
smtp_server_commit(struct smtp_server *s, struct smtp_actions *out)
{
	smtp_server_push(out, SMTP_ACTION_COMMIT, slice_make(NULL, 0));
	s->body_begun = false;
	smtp_server_goto(s, SMTP_STATE_COMMIT_WAIT);
}

/* ---- the command table ---- */

typedef void (*smtp_server_cmd_fn)(struct smtp_server *s, struct slice args,
	struct smtp_actions *out);

struct smtp_server_cmd {
	const char *verb;
	uint32_t states;            /* SMTP_SERVER_ST bits where the verb is in sequence */
	smtp_server_cmd_fn handler;
};

static void smtp_server_cmd_helo(struct smtp_server *s, struct slice args,
	struct smtp_actions *out);
static void smtp_server_cmd_ehlo(struct smtp_server *s, struct slice args,
	struct smtp_actions *out);
static void smtp_server_cmd_mail(struct smtp_server *s, struct slice args,
	struct smtp_actions *out);
static void smtp_server_cmd_rcpt(struct smtp_server *s, struct slice args,
	struct smtp_actions *out);
static void smtp_server_cmd_data(struct smtp_server *s, struct slice args,
	struct smtp_actions *out);
static void smtp_server_cmd_bdat(struct smtp_server *s, struct slice args,
	struct smtp_actions *out);
static void smtp_server_cmd_rset(struct smtp_server *s, struct slice args,
	struct smtp_actions *out);
static void smtp_server_cmd_noop(struct smtp_server *s, struct slice args,
	struct smtp_actions *out);
static void smtp_server_cmd_quit(struct smtp_server *s, struct slice args,
	struct smtp_actions *out);
static void smtp_server_cmd_help(struct smtp_server *s, struct slice args,
	struct smtp_actions *out);
static void smtp_server_cmd_vrfy(struct smtp_server *s, struct slice args,
	struct smtp_actions *out);
static void smtp_server_cmd_expn(struct smtp_server *s, struct slice args,
	struct smtp_actions *out);
static void smtp_server_cmd_starttls(struct smtp_server *s, struct slice args,
	struct smtp_actions *out);
static void smtp_server_cmd_auth(struct smtp_server *s, struct slice args,
	struct smtp_actions *out);

static const struct smtp_server_cmd smtp_server_cmds[] = {
	{ "HELO", SMTP_SERVER_ST_CMD, smtp_server_cmd_helo },
	{ "EHLO", SMTP_SERVER_ST_CMD, smtp_server_cmd_ehlo },
	{ "MAIL", SMTP_SERVER_ST(READY), smtp_server_cmd_mail },
	{ "RCPT", SMTP_SERVER_ST(MAIL) | SMTP_SERVER_ST(RCPT), smtp_server_cmd_rcpt },
	{ "DATA", SMTP_SERVER_ST(RCPT), smtp_server_cmd_data },
	/* BDAT checks its own sequence: a refused chunk must still be read (RFC 3030 2). */
	{ "BDAT", SMTP_SERVER_ST_CMD, smtp_server_cmd_bdat },
	{ "RSET", SMTP_SERVER_ST_CMD, smtp_server_cmd_rset },
	{ "NOOP", SMTP_SERVER_ST_CMD, smtp_server_cmd_noop },
	{ "QUIT", SMTP_SERVER_ST_CMD, smtp_server_cmd_quit },
	{ "HELP", SMTP_SERVER_ST_CMD, smtp_server_cmd_help },
	{ "VRFY", SMTP_SERVER_ST_CMD, smtp_server_cmd_vrfy },
	{ "EXPN", SMTP_SERVER_ST_CMD, smtp_server_cmd_expn },
	/* STARTTLS says 502 in any state when it is not offered, then checks its state. */
	{ "STARTTLS", SMTP_SERVER_ST_CMD, smtp_server_cmd_starttls },
	{ "AUTH", SMTP_SERVER_ST_CMD, smtp_server_cmd_auth },
};

static const struct smtp_server_cmd *
smtp_server_cmd_find(struct slice verb)
{
	for (size_t i = 0; i < ARRAY_LEN(smtp_server_cmds); i++) {
		const char *v = smtp_server_cmds[i].verb;
		if (slice_eq_nocase(verb, slice_make(v, strlen(v))))
			return &smtp_server_cmds[i];
	}
	return NULL;
}

/* The 503 for a verb out of sequence in the current state. */
static struct slice
smtp_server_sequence_text(const struct smtp_server *s, smtp_server_cmd_fn handler)
{
	switch (s->state) {
	case SMTP_STATE_CONNECTED:
		return SLICE_LIT("503 5.5.1 Error: send HELO/EHLO first");
	case SMTP_STATE_READY:
		return SLICE_LIT("503 5.5.1 Error: need MAIL command");
	case SMTP_STATE_MAIL:
		if (handler != smtp_server_cmd_mail)
			return SLICE_LIT("503 5.5.1 Error: need RCPT command");
		return SLICE_LIT("503 5.5.1 Error: nested MAIL command");
	case SMTP_STATE_BDAT_WAIT:
		if (handler == smtp_server_cmd_data)
			return SLICE_LIT("503 5.5.1 Error: DATA after BDAT");
		return SLICE_LIT("503 5.5.1 Error: BDAT in progress, send BDAT or RSET");
	default:
		return SLICE_LIT("503 5.5.1 Error: nested MAIL command");
	}
}

static struct slice
smtp_server_trim(struct slice s)
{
	while (s.len > 0 && s.ptr[0] == ' ')
		s = slice_skip(s, 1);
	while (s.len > 0 && s.ptr[s.len - 1] == ' ')
		s.len--;
	return s;
}

/* A command line without its line end. */
static void
smtp_server_command(struct smtp_server *s, struct slice line, struct smtp_actions *out)
{
	/* A NUL or a CR inside a line is never part of a command (and never gets a 250). */
	if (memchr(line.ptr, '\0', line.len) != NULL || memchr(line.ptr, '\r', line.len) != NULL) {
		SMTP_SERVER_BAD(s, out, "500 5.5.2 Error: bad character in command");
		return;
	}
	size_t v = 0;
	while (v < line.len && line.ptr[v] != ' ')
		v++;
	const struct smtp_server_cmd *cmd = smtp_server_cmd_find(slice_sub(line, 0, v));
	if (cmd == NULL)
		SMTP_SERVER_BAD(s, out, "500 5.5.2 Error: command not recognized");
	else if ((cmd->states & (1u << s->state)) == 0)
		smtp_server_reply_bad(s, out, smtp_server_sequence_text(s, cmd->handler));
	else
		cmd->handler(s, smtp_server_trim(slice_skip(line, v)), out);
}

/* ---- HELO, EHLO ---- */

/* Printable ASCII or well-formed UTF-8 (RFC 6531 3.7.1 U-labels), not checked as a domain:
 * clients send all kinds of names, and the name only goes into the Received: header. */
static bool
smtp_server_helo_name_valid(struct slice name)
{
	size_t i = 0;
	while (i < name.len) {
		uint8_t c = name.ptr[i];
		size_t n = c > ' ' && c < 0x7f ? 1 : smtp_addr_utf8_seq_len(slice_skip(name, i));
		if (n == 0)
			return false;
		i += n;
	}
	return name.len > 0;
}

/* RFC 4954 4 with DESIGN's rule: AUTH only over TLS. */
static bool
smtp_server_auth_advertised(const struct smtp_server *s)
{
	return s->cfg->auth_offered && s->tls_active;
}

static void
smtp_server_ehlo_reply(struct smtp_server *s, struct smtp_actions *out)
{
	uint32_t at = s->reply_len;
	smtp_server_put(s, SLICE_LIT("250-"));
	smtp_server_put(s, smtp_server_hostname(s));
	smtp_server_put(s, SLICE_LIT("\r\n250-PIPELINING\r\n250-SIZE "));
	smtp_server_put_u64(s, s->cfg->max_message_size);
	smtp_server_put(s, SLICE_LIT("\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n"
		"250-ENHANCEDSTATUSCODES\r\n250-CHUNKING\r\n"));
	if (s->cfg->starttls_offered && !s->tls_active)
		smtp_server_put(s, SLICE_LIT("250-STARTTLS\r\n"));
	if (smtp_server_auth_advertised(s)) {
		smtp_server_put(s, SLICE_LIT("250-AUTH "));
		smtp_server_put(s, smtp_auth_mechanisms());
		smtp_server_put(s, SLICE_LIT("\r\n"));
	}
	smtp_server_put(s, SLICE_LIT("250 DSN"));
	smtp_server_reply_end(s, at, out);
}

/* RFC 5321 4.1.1.1: HELO/EHLO in any state starts over (4.1.4: like RSET). */
static void
smtp_server_hello(struct smtp_server *s, struct slice args, bool esmtp, struct smtp_actions *out)
{
	size_t n = 0;
	while (n < args.len && args.ptr[n] != ' ')
		n++;
	struct slice name = slice_sub(args, 0, n);
	if (!smtp_server_helo_name_valid(name)) {
		smtp_server_reply_bad(s, out, esmtp ? SLICE_LIT("501 5.5.4 Syntax: EHLO hostname")
			: SLICE_LIT("501 5.5.4 Syntax: HELO hostname"));
		return;
	}
	s->helo_len = 0;
	smtp_server_txn_end(s, out);
	s->env.helo = smtp_server_arena_copy(s, name);
	s->env.esmtp = esmtp;
	s->helo_len = s->arena_used;
	smtp_server_goto(s, SMTP_STATE_READY);
	if (esmtp) {
		smtp_server_ehlo_reply(s, out);
		return;
	}
	uint32_t at = s->reply_len;
	smtp_server_put(s, SLICE_LIT("250 "));
	smtp_server_put(s, smtp_server_hostname(s));
	smtp_server_reply_end(s, at, out);
}

static void
smtp_server_cmd_helo(struct smtp_server *s, struct slice args, struct smtp_actions *out)
{
	smtp_server_hello(s, args, false, out);
}

static void
smtp_server_cmd_ehlo(struct smtp_server *s, struct slice args, struct smtp_actions *out)
{
	smtp_server_hello(s, args, true, out);
}

/* ---- MAIL and RCPT parameters ---- */

enum smtp_server_param {
	SMTP_SERVER_P_SIZE = 1u << 0,       /* RFC 1870 */
	SMTP_SERVER_P_BODY = 1u << 1,       /* RFC 6152 */
	SMTP_SERVER_P_SMTPUTF8 = 1u << 2,   /* RFC 6531 */
	SMTP_SERVER_P_RET = 1u << 3,        /* RFC 3461 4.3 */
	SMTP_SERVER_P_ENVID = 1u << 4,      /* RFC 3461 4.4 */
	SMTP_SERVER_P_NOTIFY = 1u << 5,     /* RFC 3461 4.1 */
	SMTP_SERVER_P_ORCPT = 1u << 6,      /* RFC 3461 4.2 */
	SMTP_SERVER_P_AUTH = 1u << 7,       /* RFC 4954 5 */
};

#define SMTP_SERVER_P_MAIL (SMTP_SERVER_P_SIZE | SMTP_SERVER_P_BODY | SMTP_SERVER_P_SMTPUTF8 \
	| SMTP_SERVER_P_RET | SMTP_SERVER_P_ENVID)
#define SMTP_SERVER_P_RCPT (SMTP_SERVER_P_NOTIFY | SMTP_SERVER_P_ORCPT)

static const struct {
	const char *keyword;
	enum smtp_server_param bit;
} smtp_server_params[] = {
	{ "SIZE", SMTP_SERVER_P_SIZE }, { "BODY", SMTP_SERVER_P_BODY },
	{ "SMTPUTF8", SMTP_SERVER_P_SMTPUTF8 }, { "RET", SMTP_SERVER_P_RET },
	{ "ENVID", SMTP_SERVER_P_ENVID }, { "NOTIFY", SMTP_SERVER_P_NOTIFY },
	{ "ORCPT", SMTP_SERVER_P_ORCPT }, { "AUTH", SMTP_SERVER_P_AUTH },
};

/* What MAIL or RCPT parameters said, before they go into the envelope. */
struct smtp_server_params {
	uint32_t seen;
	uint64_t size;
	enum smtp_body_type body;
	bool smtputf8;
	enum smtp_dsn_ret ret;
	struct slice envid;
	uint8_t notify;
	struct slice orcpt;
	struct slice auth;
};

static uint32_t
smtp_server_param_bit(struct slice keyword)
{
	for (size_t i = 0; i < ARRAY_LEN(smtp_server_params); i++) {
		const char *k = smtp_server_params[i].keyword;
		if (slice_eq_nocase(keyword, slice_make(k, strlen(k))))
			return smtp_server_params[i].bit;
	}
	return 0;
}

/* 1 to 20 digits; a value past UINT64_MAX saturates (it is over any limit all the same). */
static bool
smtp_server_parse_u64(struct slice v, uint64_t *out)
{
	if (v.len == 0 || v.len > SMTP_SERVER_DIGITS_MAX)
		return false;
	uint64_t n = 0;
	for (size_t i = 0; i < v.len; i++) {
		if (v.ptr[i] < '0' || v.ptr[i] > '9')
			return false;
		uint64_t d = (uint64_t)(v.ptr[i] - '0');
		n = n > (UINT64_MAX - d) / 10 ? UINT64_MAX : n * 10 + d;
	}
	*out = n;
	return true;
}

/* RFC 3461 4.1: NEVER alone, or a list of SUCCESS, FAILURE, DELAY, each at most once. */
static bool
smtp_server_parse_notify(struct slice v, uint8_t *out)
{
	uint8_t bits = 0;
	while (v.len > 0) {
		const uint8_t *comma = memchr(v.ptr, ',', v.len);
		size_t n = comma != NULL ? (size_t)(comma - v.ptr) : v.len;
		struct slice item = slice_sub(v, 0, n);
		uint8_t bit = slice_eq_nocase(item, SLICE_LIT("NEVER")) ? SMTP_DSN_NOTIFY_NEVER
			: slice_eq_nocase(item, SLICE_LIT("SUCCESS")) ? SMTP_DSN_NOTIFY_SUCCESS
			: slice_eq_nocase(item, SLICE_LIT("FAILURE")) ? SMTP_DSN_NOTIFY_FAILURE
			: slice_eq_nocase(item, SLICE_LIT("DELAY")) ? SMTP_DSN_NOTIFY_DELAY : 0;
		if (bit == 0 || (bits & bit) != 0)
			return false;
		bits |= bit;
		if (comma != NULL && n + 1 == v.len)
			return false;   /* a trailing comma */
		v = slice_skip(v, comma != NULL ? n + 1 : n);
	}
	if ((bits & SMTP_DSN_NOTIFY_NEVER) && bits != SMTP_DSN_NOTIFY_NEVER)
		return false;
	*out = bits;
	return bits != 0;
}

/* BODY= (RFC 6152): 7BIT or 8BITMIME; BINARYMIME (RFC 3030) is known but not offered. */
static struct slice
smtp_server_param_body(struct smtp_server_params *sp, struct slice v)
{
	if (slice_eq_nocase(v, SLICE_LIT("7BIT")))
		sp->body = SMTP_BODY_7BIT;
	else if (slice_eq_nocase(v, SLICE_LIT("8BITMIME")))
		sp->body = SMTP_BODY_8BITMIME;
	else if (slice_eq_nocase(v, SLICE_LIT("BINARYMIME")))
		return SLICE_LIT("555 5.5.4 Error: BODY=BINARYMIME not supported");
	else
		return SLICE_LIT("501 5.5.4 Error: bad BODY value");
	return SLICE_LIT("");
}

/* One parameter's value into sp; returns the error reply, or an empty slice. */
static struct slice
smtp_server_param_value(struct smtp_server_params *sp, uint32_t bit,
	const struct smtp_addr_param *p, uint32_t flags)
{
	bool ok;
	struct slice v = p->value;
	switch (bit) {
	case SMTP_SERVER_P_SIZE:
		ok = smtp_server_parse_u64(v, &sp->size);
		break;
	case SMTP_SERVER_P_BODY:
		return smtp_server_param_body(sp, v);
	case SMTP_SERVER_P_SMTPUTF8:
		ok = !p->has_value;
		sp->smtputf8 = true;
		break;
	case SMTP_SERVER_P_RET:
		sp->ret = slice_eq_nocase(v, SLICE_LIT("FULL")) ? SMTP_DSN_RET_FULL
			: slice_eq_nocase(v, SLICE_LIT("HDRS")) ? SMTP_DSN_RET_HDRS
			: SMTP_DSN_RET_UNSPECIFIED;
		ok = sp->ret != SMTP_DSN_RET_UNSPECIFIED;
		break;
	case SMTP_SERVER_P_ENVID:
		ok = v.len > 0 && v.len <= SMTP_SERVER_ENVID_LEN_MAX && smtp_addr_xtext_valid(v);
		sp->envid = v;
		break;
	case SMTP_SERVER_P_NOTIFY:
		ok = smtp_server_parse_notify(v, &sp->notify);
		break;
	case SMTP_SERVER_P_AUTH:   /* RFC 4954 5: "<>" or an xtext mailbox */
		ok = v.len > 0 && v.len <= SMTP_MAIL_AUTH_LEN_MAX && smtp_addr_xtext_valid(v);
		sp->auth = v;
		break;
	default:
		ok = v.len <= SMTP_SERVER_ORCPT_LEN_MAX && smtp_addr_orcpt_valid(v, flags);
		sp->orcpt = v;
		break;
	}
	return ok ? SLICE_LIT("") : SLICE_LIT("501 5.5.4 Error: bad parameter value");
}

/* The esmtp-params after a path; allowed: the SMTP_SERVER_P bits of the command. Returns the
 * error reply, or an empty slice. */
static struct slice
smtp_server_parse_params(struct slice rest, uint32_t allowed, uint32_t flags,
	struct smtp_server_params *sp)
{
	struct smtp_addr_param p;
	enum smtp_addr_param_status st;
	if (rest.len > 0 && rest.ptr[0] != ' ')
		return SLICE_LIT("501 5.5.4 Error: bad address syntax");
	while ((st = smtp_addr_param_next(&rest, flags, &p)) == SMTP_ADDR_PARAM_OK) {
		uint32_t bit = smtp_server_param_bit(p.keyword);
		if ((bit & allowed) == 0)
			return SLICE_LIT("555 5.5.4 Error: unsupported parameter");
		if ((sp->seen & bit) != 0)
			return SLICE_LIT("501 5.5.4 Error: duplicate parameter");
		sp->seen |= bit;
		struct slice err = smtp_server_param_value(sp, bit, &p, flags);
		if (err.len > 0)
			return err;
	}
	if (st != SMTP_ADDR_PARAM_END)
		return SLICE_LIT("501 5.5.4 Error: bad parameter syntax");
	return SLICE_LIT("");
}

/* ---- MAIL ---- */

static void
smtp_server_mail_accept(struct smtp_server *s, const struct smtp_addr *from,
	const struct smtp_server_params *sp)
{
	s->env.mail_from = smtp_server_arena_copy(s, from->path);
	s->env.declared_size = sp->size;
	s->env.body = sp->body;
	s->env.smtputf8 = sp->smtputf8;
	s->env.dsn_ret = sp->ret;
	s->env.dsn_envid = smtp_server_arena_copy(s, sp->envid);
	/* RFC 4954 5: from a session that did not authenticate, AUTH= counts as AUTH=<>. */
	if (s->authenticated)
		s->env.mail_auth = smtp_server_arena_copy(s, sp->auth);
	smtp_server_goto(s, SMTP_STATE_MAIL);
}

/* path (local@domain) is the user name: the local part octet for octet, the domain in any
 * case (RFC 5321 2.4). */
static bool
smtp_server_sender_is_user(struct slice path, struct slice user)
{
	if (path.len != user.len)
		return false;
	size_t at = path.len;
	while (at > 0 && path.ptr[at - 1] != '@')
		at--;
	if (at == 0)
		return false;   /* no domain: not an address a user owns */
	return memcmp(path.ptr, user.ptr, at) == 0
		&& slice_eq_nocase(slice_skip(path, at), slice_skip(user, at));
}

static void
smtp_server_cmd_mail(struct smtp_server *s, struct slice args, struct smtp_actions *out)
{
	if (!slice_starts_with_nocase(args, SLICE_LIT("FROM:"))) {
		SMTP_SERVER_BAD(s, out, "501 5.5.4 Syntax: MAIL FROM:<address>");
		return;
	}
	if (s->cfg->tls_required && !s->tls_active) {   /* RFC 3207 4 */
		SMTP_SERVER_BAD(s, out, "530 5.7.0 Must issue a STARTTLS command first");
		return;
	}
	if (s->cfg->auth_required && !s->authenticated) {   /* RFC 4954 6 */
		SMTP_SERVER_BAD(s, out, "530 5.7.0 Authentication required");
		return;
	}
	/* Many clients send "MAIL FROM: <a@b>": the space is tolerated (RFC 5321 4.1.1.2). */
	struct slice rest = smtp_server_trim(slice_skip(args, 5));
	struct smtp_addr from;
	size_t used;
	/* Parsed with UTF-8 allowed: whether SMTPUTF8 was given is known after the parameters. */
	uint32_t flags = SMTP_ADDR_ALLOW_NULL | SMTP_ADDR_ALLOW_UTF8;
	enum smtp_addr_status st = smtp_addr_parse_path(rest, flags, s->arena + s->arena_used,
		smtp_server_arena_free(s), &from, &used);
	if (st != SMTP_ADDR_OK) {
		SMTP_SERVER_BAD(s, out, "501 5.1.7 Error: bad sender address syntax");
		return;
	}
	struct smtp_server_params sp = { .seen = 0 };
	uint32_t allowed = SMTP_SERVER_P_MAIL | (smtp_server_auth_advertised(s) ? SMTP_SERVER_P_AUTH
		: 0);
	struct slice err = smtp_server_parse_params(slice_skip(rest, used), allowed, 0, &sp);
	if (err.len > 0) {
		smtp_server_reply_bad(s, out, err);
		return;
	}
	if (from.utf8 && !sp.smtputf8) {   /* RFC 6531 3.5 */
		SMTP_SERVER_BAD(s, out, "553 5.6.7 Error: non-ASCII address needs SMTPUTF8");
		return;
	}
	if (sp.size > smtp_server_size_max(s)) {   /* RFC 1870 6.1 */
		SMTP_SERVER_REPLY(s, out, "552 5.3.4 Error: message size exceeds fixed limit");
		return;
	}
	if (s->cfg->sender_is_login && s->authenticated && !from.null_path
		&& !smtp_server_sender_is_user(from.path, smtp_auth_user(&s->auth))) {
		SMTP_SERVER_REPLY(s, out,
			"553 5.7.1 Error: sender address not owned by the authenticated user");
		return;
	}
	smtp_server_mail_accept(s, &from, &sp);
	SMTP_SERVER_REPLY(s, out, "250 2.1.0 Ok");
}

/* ---- RCPT ---- */

static bool
smtp_server_rcpt_fits(const struct smtp_server *s, const struct smtp_addr *to,
	const struct smtp_server_params *sp)
{
	size_t need = (to->quoted ? to->local_part.len : 0) + to->path.len + sp->orcpt.len
		+ sizeof(struct smtp_server_rcpt_rec);
	return need <= smtp_server_arena_free(s);
}

/* Stores an accepted recipient; a quoted local part was decoded at the arena's free start. */
static void
smtp_server_rcpt_store(struct smtp_server *s, const struct smtp_addr *to,
	const struct smtp_server_params *sp)
{
	struct smtp_server_rcpt_rec r = { .notify = sp->notify };
	r.local_off = s->arena_used;
	r.local_len = (uint16_t)to->local_part.len;
	if (to->quoted)
		s->arena_used += r.local_len;
	r.path_off = s->arena_used;
	r.path_len = (uint16_t)to->path.len;
	smtp_server_arena_copy(s, to->path);
	if (!to->quoted)
		r.local_off = r.path_off;   /* a dot-string local part begins the path */
	r.domain_off = r.path_off + (uint32_t)(to->domain.ptr - to->path.ptr);
	r.domain_len = (uint16_t)to->domain.len;
	r.orcpt_off = s->arena_used;
	r.orcpt_len = (uint16_t)sp->orcpt.len;
	smtp_server_arena_copy(s, sp->orcpt);
	s->env.rcpt_count++;
	(void)smtp_server_arena_free(s);   /* asserts that the record does not meet the strings */
	memcpy(s->arena + SMTP_ENVELOPE_ARENA_SIZE - s->env.rcpt_count * sizeof(r), &r, sizeof(r));
}

static struct slice
smtp_server_verdict_text(enum smtp_rcpt_verdict v)
{
	switch (v) {
	case SMTP_RCPT_OK:
		return SLICE_LIT("250 2.1.5 Ok");
	case SMTP_RCPT_UNKNOWN_USER:
		return SLICE_LIT("550 5.1.1 Error: unknown user");
	case SMTP_RCPT_RELAY_DENIED:
		return SLICE_LIT("554 5.7.1 Error: relay access denied");
	default:
		return SLICE_LIT("451 4.3.0 Error: temporary failure, try again later");
	}
}

/* Parses "TO:<path> params"; returns false after replying. */
static bool
smtp_server_rcpt_parse(struct smtp_server *s, struct slice args, struct smtp_addr *to,
	struct smtp_server_params *sp, struct smtp_actions *out)
{
	if (!slice_starts_with_nocase(args, SLICE_LIT("TO:"))) {
		SMTP_SERVER_BAD(s, out, "501 5.5.4 Syntax: RCPT TO:<address>");
		return false;
	}
	struct slice rest = smtp_server_trim(slice_skip(args, 3));
	uint32_t flags = SMTP_ADDR_ALLOW_POSTMASTER | (s->env.smtputf8 ? SMTP_ADDR_ALLOW_UTF8 : 0);
	size_t used;
	enum smtp_addr_status st = smtp_addr_parse_path(rest, flags, s->arena + s->arena_used,
		smtp_server_arena_free(s), to, &used);
	struct slice err = SLICE_LIT("");
	if (st == SMTP_ADDR_NEED_UTF8)
		err = SLICE_LIT("553 5.6.7 Error: non-ASCII address needs SMTPUTF8");
	else if (st == SMTP_ADDR_SYNTAX)
		err = SLICE_LIT("501 5.1.3 Error: bad recipient address syntax");
	else if (st == SMTP_ADDR_OK)
		err = smtp_server_parse_params(slice_skip(rest, used), SMTP_SERVER_P_RCPT, flags,
			sp);
	if (err.len > 0) {
		smtp_server_reply_bad(s, out, err);
		return false;
	}
	if (st == SMTP_ADDR_NO_SPACE || !smtp_server_rcpt_fits(s, to, sp)) {
		SMTP_SERVER_REPLY(s, out, "452 4.5.3 Error: too many recipients");
		return false;
	}
	return true;
}

static void
smtp_server_cmd_rcpt(struct smtp_server *s, struct slice args, struct smtp_actions *out)
{
	struct smtp_addr to;
	struct smtp_server_params sp = { .seen = 0 };
	if (!smtp_server_rcpt_parse(s, args, &to, &sp, out))
		return;
	if (s->env.rcpt_count >= smtp_server_rcpt_max(s)) {   /* RFC 5321 4.5.3.1.10 */
		SMTP_SERVER_REPLY(s, out, "452 4.5.3 Error: too many recipients");
		return;
	}
	enum smtp_rcpt_verdict v = s->cfg->rcpt_check(s->ctx, to.local_part, to.domain, to.quoted);
	if (v == SMTP_RCPT_OK) {
		smtp_server_rcpt_store(s, &to, &sp);
		smtp_server_goto(s, SMTP_STATE_RCPT);
	}
	smtp_server_reply(s, out, smtp_server_verdict_text(v));
}

/* ---- DATA and BDAT ---- */

static void
smtp_server_cmd_data(struct smtp_server *s, struct slice args, struct smtp_actions *out)
{
	if (args.len > 0) {   /* RFC 5321 4.1.1.4: DATA takes no argument */
		SMTP_SERVER_BAD(s, out, "501 5.5.4 Syntax: DATA");
		return;
	}
	SMTP_SERVER_REPLY(s, out, "354 End data with <CR><LF>.<CR><LF>");
	smtp_server_body_begin(s, out);
	data_scan_init(&s->scan);
	smtp_server_goto(s, SMTP_STATE_DATA);
}

/* RFC 3030 2: "BDAT" SP chunk-size [SP "LAST"]. */
static bool
smtp_server_bdat_args(struct slice args, uint64_t *size, bool *last)
{
	size_t n = 0;
	while (n < args.len && args.ptr[n] != ' ')
		n++;
	if (!smtp_server_parse_u64(slice_sub(args, 0, n), size) || *size == UINT64_MAX)
		return false;
	struct slice rest = smtp_server_trim(slice_skip(args, n));
	*last = slice_eq_nocase(rest, SLICE_LIT("LAST"));
	return *last || rest.len == 0;
}

/* A refused chunk: its octets are read and dropped, then `text` answers it. */
static void
smtp_server_skip_end(struct smtp_server *s, struct smtp_actions *out)
{
	if (s->skip_counts)
		smtp_server_reply_bad(s, out, s->skip_reply);
	else
		smtp_server_reply(s, out, s->skip_reply);
}

static void
smtp_server_skip(struct smtp_server *s, uint64_t octets, struct slice text, bool counts,
	struct smtp_actions *out)
{
	s->skip_left = octets;
	s->skip_reply = text;
	s->skip_counts = counts;
	if (octets == 0)
		smtp_server_skip_end(s, out);
}

static void
smtp_server_bdat_end(struct smtp_server *s, struct smtp_actions *out)
{
	if (s->bdat_last) {
		smtp_server_commit(s, out);
		return;
	}
	smtp_server_goto(s, SMTP_STATE_BDAT_WAIT);
	uint32_t at = s->reply_len;
	smtp_server_put(s, SLICE_LIT("250 2.0.0 "));
	smtp_server_put_u64(s, s->bdat_size);
	smtp_server_put(s, SLICE_LIT(" octets received"));
	smtp_server_reply_end(s, at, out);
}

static void
smtp_server_cmd_bdat(struct smtp_server *s, struct slice args, struct smtp_actions *out)
{
	uint64_t size;
	bool last;
	if (!smtp_server_bdat_args(args, &size, &last)) {
		SMTP_SERVER_BAD(s, out, "501 5.5.4 Syntax: BDAT size [LAST]");
		return;
	}
	if (s->state != SMTP_STATE_RCPT && s->state != SMTP_STATE_BDAT_WAIT) {
		struct slice text = smtp_server_sequence_text(s, smtp_server_cmd_bdat);
		smtp_server_skip(s, size, text, true, out);
		return;
	}
	ASSERT(s->env.body_size <= smtp_server_size_max(s));
	if (size > smtp_server_size_max(s) - s->env.body_size) {   /* RFC 1870 6.3, across chunks */
		smtp_server_txn_end(s, out);
		smtp_server_skip(s, size,
			SLICE_LIT("552 5.3.4 Error: message size exceeds fixed limit"), false, out);
		return;
	}
	if (s->state == SMTP_STATE_RCPT)
		smtp_server_body_begin(s, out);
	s->bdat_size = size;
	s->bdat_left = size;
	s->bdat_last = last;
	smtp_server_goto(s, SMTP_STATE_BDAT);
	if (size == 0)
		smtp_server_bdat_end(s, out);
}

/* ---- the other commands ---- */

static void
smtp_server_cmd_rset(struct smtp_server *s, struct slice args, struct smtp_actions *out)
{
	smtp_server_txn_end(s, out);
	SMTP_SERVER_REPLY(s, out, "250 2.0.0 Ok");
}

static void
smtp_server_cmd_noop(struct smtp_server *s, struct slice args, struct smtp_actions *out)
{
	SMTP_SERVER_REPLY(s, out, "250 2.0.0 Ok");
}

static void
smtp_server_cmd_quit(struct smtp_server *s, struct slice args, struct smtp_actions *out)
{
	smtp_server_close(s, out, SLICE_LIT("221 2.0.0 Bye"));
}

static void
smtp_server_cmd_help(struct smtp_server *s, struct slice args, struct smtp_actions *out)
{
	SMTP_SERVER_REPLY(s, out,
		"214 2.0.0 Commands: HELO EHLO MAIL RCPT DATA BDAT RSET NOOP QUIT HELP VRFY");
}

/* RFC 5321 3.5.3: 252, whether the user exists or not (no address harvesting). */
static void
smtp_server_cmd_vrfy(struct smtp_server *s, struct slice args, struct smtp_actions *out)
{
	if (args.len == 0) {
		SMTP_SERVER_BAD(s, out, "501 5.5.4 Syntax: VRFY address");
		return;
	}
	SMTP_SERVER_REPLY(s, out, "252 2.0.0 Cannot VRFY user, but will accept message");
}

static void
smtp_server_cmd_expn(struct smtp_server *s, struct slice args, struct smtp_actions *out)
{
	SMTP_SERVER_BAD(s, out, "502 5.5.1 Error: EXPN not available");
}

/* ---- AUTH ---- */

/* A 535, counted; the last one allowed is followed by 421 and CLOSE. */
static void
smtp_server_auth_failed(struct smtp_server *s, struct slice text, struct smtp_actions *out)
{
	smtp_server_reply(s, out, text);
	if (++s->auth_failures >= SMTP_AUTH_FAILURES_MAX)
		smtp_server_close(s, out, SLICE_LIT("421 4.7.0 Error: too many failed authentications"));
}

/* What the mechanism said: a challenge, credentials to verify, or the end of the exchange. */
static void
smtp_server_auth_status(struct smtp_server *s, enum smtp_auth_status st, struct slice text,
	struct smtp_actions *out)
{
	switch (st) {
	case SMTP_AUTH_CHALLENGE:
		smtp_server_reply(s, out, text);
		smtp_server_goto(s, SMTP_STATE_AUTH);
		return;
	case SMTP_AUTH_VERIFY:
		smtp_server_push(out, SMTP_ACTION_AUTH, slice_make(NULL, 0));
		smtp_server_goto(s, SMTP_STATE_AUTH_WAIT);
		return;
	case SMTP_AUTH_DENIED:
		smtp_auth_wipe(&s->auth);
		smtp_server_goto(s, SMTP_STATE_READY);
		smtp_server_auth_failed(s, text, out);
		return;
	case SMTP_AUTH_FAILED:
		smtp_auth_wipe(&s->auth);
		smtp_server_goto(s, SMTP_STATE_READY);
		smtp_server_reply_bad(s, out, text);
		return;
	}
}

/* Why AUTH may not run now, or an empty slice. */
static struct slice
smtp_server_auth_refusal(const struct smtp_server *s)
{
	if (!s->tls_active)   /* RFC 4954 6: 538 for a mechanism that needs encryption */
		return SLICE_LIT("538 5.7.11 Encryption required for requested authentication "
			"mechanism");
	if (s->state == SMTP_STATE_CONNECTED || !s->env.esmtp)
		return SLICE_LIT("503 5.5.1 Error: send EHLO first");
	if (s->authenticated)   /* RFC 4954 4 */
		return SLICE_LIT("503 5.5.1 Error: already authenticated");
	if (s->state != SMTP_STATE_READY)
		return SLICE_LIT("503 5.5.1 Error: MAIL transaction in progress");
	return SLICE_LIT("");
}

static void
smtp_server_cmd_auth(struct smtp_server *s, struct slice args, struct smtp_actions *out)
{
	if (!s->cfg->auth_offered) {
		SMTP_SERVER_BAD(s, out, "502 5.5.1 Error: AUTH not available");
		return;
	}
	struct slice refusal = smtp_server_auth_refusal(s);
	if (refusal.len > 0) {
		smtp_server_reply_bad(s, out, refusal);
		return;
	}
	if (args.len == 0) {
		SMTP_SERVER_BAD(s, out, "501 5.5.4 Syntax: AUTH mechanism [initial-response]");
		return;
	}
	struct slice text = SLICE_LIT("");
	enum smtp_auth_status st = smtp_auth_start(&s->auth, args, &text);
	smtp_server_auth_status(s, st, text, out);
}

/* The client's response to a 334 challenge. */
static void
smtp_server_auth_line(struct smtp_server *s, struct slice line, struct smtp_actions *out)
{
	struct slice text = SLICE_LIT("");
	enum smtp_auth_status st = smtp_auth_response(&s->auth, line, &text);
	smtp_server_auth_status(s, st, text, out);
}

/* RFC 3207 4.2: after the 220 the next octets are TLS. The session is forgotten when the
 * handshake is done (smtp_server_tls_started); until then nothing is read, so that no plaintext
 * pipelined after STARTTLS can be taken as sent over TLS (CVE-2011-0411). */
static void
smtp_server_cmd_starttls(struct smtp_server *s, struct slice args, struct smtp_actions *out)
{
	if (!s->cfg->starttls_offered) {
		SMTP_SERVER_BAD(s, out, "502 5.5.1 Error: STARTTLS not available");
		return;
	}
	if (s->tls_active) {
		SMTP_SERVER_BAD(s, out, "503 5.5.1 Error: TLS already active");
		return;
	}
	if (args.len > 0) {
		SMTP_SERVER_BAD(s, out, "501 5.5.4 Syntax: STARTTLS");
		return;
	}
	if (s->state != SMTP_STATE_READY) {
		smtp_server_reply_bad(s, out, s->state == SMTP_STATE_CONNECTED
			? smtp_server_sequence_text(s, smtp_server_cmd_starttls)
			: SLICE_LIT("503 5.5.1 Error: MAIL transaction in progress"));
		return;
	}
	SMTP_SERVER_REPLY(s, out, "220 2.0.0 Ready to start TLS");
	smtp_server_push(out, SMTP_ACTION_STARTTLS, slice_make(NULL, 0));
	s->yield = true;
	smtp_server_goto(s, SMTP_STATE_TLS_WAIT);
}

/* ---- feeding ---- */

/* A command line: up to its LF; a CR before the LF is dropped. */
static size_t
smtp_server_step_line(struct smtp_server *s, struct slice in, struct smtp_actions *out)
{
	size_t scan = in.len < SMTP_CMD_LINE_LEN_MAX ? in.len : SMTP_CMD_LINE_LEN_MAX;
	const uint8_t *lf = memchr(in.ptr, '\n', scan);
	if (lf == NULL) {
		if (in.len < SMTP_CMD_LINE_LEN_MAX)
			return 0;   /* a partial line: offered again with more */
		s->discard_line = true;
		if (s->state == SMTP_STATE_AUTH) {   /* RFC 4954 4 */
			smtp_auth_wipe(&s->auth);
			smtp_server_goto(s, SMTP_STATE_READY);
			SMTP_SERVER_BAD(s, out, "500 5.5.6 Authentication Exchange line is too long");
		} else {
			SMTP_SERVER_BAD(s, out, "500 5.5.2 line too long");
		}
		return SMTP_CMD_LINE_LEN_MAX;
	}
	size_t n = (size_t)(lf - in.ptr) + 1;
	struct slice line = slice_sub(in, 0, n - 1);
	if (line.len > 0 && line.ptr[line.len - 1] == '\r')
		line.len--;
	if (s->state == SMTP_STATE_AUTH)
		smtp_server_auth_line(s, line, out);
	else
		smtp_server_command(s, line, out);
	return n;
}

/* The rest of an over-long line, up to and including its LF. */
static size_t
smtp_server_step_discard(struct smtp_server *s, struct slice in)
{
	const uint8_t *lf = memchr(in.ptr, '\n', in.len);
	if (lf == NULL)
		return in.len;
	s->discard_line = false;
	return (size_t)(lf - in.ptr) + 1;
}

static size_t
smtp_server_step_skip(struct smtp_server *s, struct slice in, struct smtp_actions *out)
{
	size_t n = in.len < s->skip_left ? in.len : (size_t)s->skip_left;
	s->skip_left -= n;
	if (s->skip_left == 0)
		smtp_server_skip_end(s, out);
	return n;
}

/* A DATA body slice; past the size limit the body stops and is dropped (RFC 1870 6.3). */
static void
smtp_server_body(struct smtp_server *s, struct slice data, struct smtp_actions *out)
{
	uint64_t max = smtp_server_size_max(s);
	uint64_t before = s->env.body_size;
	s->env.body_size = before + data.len < before ? UINT64_MAX : before + data.len;
	if (s->body_over)
		return;
	if (s->env.body_size <= max) {
		smtp_server_push(out, SMTP_ACTION_BODY, data);
		return;
	}
	/* Cut at the limit, so that any split of the input hands out the same octets. */
	if (max > before)
		smtp_server_push(out, SMTP_ACTION_BODY, slice_sub(data, 0, (size_t)(max - before)));
	smtp_server_push(out, SMTP_ACTION_BODY_DISCARD, slice_make(NULL, 0));
	s->body_begun = false;
	s->body_over = true;
}

/* RFC 5321 4.1.1.4: the terminator was read; bare CR or LF refuses the message (SMTP
 * smuggling: another parser may see a different end). */
static void
smtp_server_data_end(struct smtp_server *s, struct smtp_actions *out)
{
	if (data_scan_bare_newlines(&s->scan) > 0) {
		smtp_server_txn_end(s, out);
		SMTP_SERVER_REPLY(s, out, "550 5.6.0 message contains bare CR or LF");
	} else if (s->body_over) {
		smtp_server_txn_end(s, out);
		SMTP_SERVER_REPLY(s, out, "552 5.3.4 Error: message size exceeds fixed limit");
	} else {
		smtp_server_commit(s, out);
	}
}

static const uint8_t smtp_server_no_merge;

static size_t
smtp_server_step_data(struct smtp_server *s, struct slice in, struct smtp_actions *out)
{
	struct data_scan_out scan;
	uint32_t room = SMTP_ACTIONS_MAX - out->count - SMTP_SERVER_BODY_END_ACTIONS;
	if (room > DATA_SCAN_SLICES_MAX)
		room = DATA_SCAN_SLICES_MAX;
	/* data_scan appends to scan: starting it this far in lets it add at most `room`. The slot
	 * before the first is what data_scan may merge with: an empty slice adjacent to nothing. */
	scan.count = DATA_SCAN_SLICES_MAX - room;
	uint32_t first = scan.count;
	ASSERT(first > 0);
	scan.slices[first - 1] = slice_make(&smtp_server_no_merge, 0);
	size_t n = data_scan_feed(&s->scan, in, &scan);
	ASSERT(n <= in.len);
	for (uint32_t i = first; i < scan.count; i++)
		smtp_server_body(s, scan.slices[i], out);
	if (data_scan_done(&s->scan))
		smtp_server_data_end(s, out);
	return n;
}

/* BDAT octets are binary and taken as they are (RFC 3030 2). */
static size_t
smtp_server_step_bdat(struct smtp_server *s, struct slice in, struct smtp_actions *out)
{
	size_t n = in.len < s->bdat_left ? in.len : (size_t)s->bdat_left;
	smtp_server_push(out, SMTP_ACTION_BODY, slice_sub(in, 0, n));
	s->bdat_left -= n;
	s->env.body_size += n;
	if (s->bdat_left == 0)
		smtp_server_bdat_end(s, out);
	return n;
}

static size_t
smtp_server_step(struct smtp_server *s, struct slice in, struct smtp_actions *out)
{
	if (s->skip_left > 0)
		return smtp_server_step_skip(s, in, out);
	if (s->discard_line)
		return smtp_server_step_discard(s, in);
	if (s->state == SMTP_STATE_DATA)
		return smtp_server_step_data(s, in, out);
	if (s->state == SMTP_STATE_BDAT)
		return smtp_server_step_bdat(s, in, out);
	return smtp_server_step_line(s, in, out);
}

static bool
smtp_server_can_step(const struct smtp_server *s, const struct smtp_actions *out)
{
	if (s->state == SMTP_STATE_CLOSED || s->state == SMTP_STATE_COMMIT_WAIT
		|| s->state == SMTP_STATE_AUTH_WAIT || s->state == SMTP_STATE_TLS_WAIT || s->yield)
		return false;
	return out->count + SMTP_SERVER_STEP_ACTIONS_MAX <= SMTP_ACTIONS_MAX
		&& s->reply_len + SMTP_SERVER_STEP_REPLY_MAX <= SMTP_REPLY_BUF_SIZE;
}

size_t
smtp_server_feed(struct smtp_server *s, struct slice in, struct smtp_actions *out)
{
	ASSERT(s->state != SMTP_STATE_GREETING);
	ASSERT(out->count <= SMTP_ACTIONS_MAX);
	if (out->count == 0)
		s->reply_len = 0;
	s->yield = false;
	size_t used = 0;
	while (used < in.len && smtp_server_can_step(s, out)) {
		size_t n = smtp_server_step(s, slice_skip(in, used), out);
		if (n == 0)
			break;
		used += n;
	}
	return used;
}

/* ---- the other entry points ---- */

void
smtp_server_init(struct smtp_server *s, const struct smtp_server_config *cfg, void *ctx)
{
	ASSERT(cfg != NULL);
	ASSERT(cfg->rcpt_check != NULL);
	/* Not the reply buffer nor the arena: an idle slot keeps those pages untouched. */
	memset(s, 0, offsetof(struct smtp_server, reply_buf));
	s->cfg = cfg;
	s->ctx = ctx;
	s->state = SMTP_STATE_GREETING;
}

void
smtp_server_start(struct smtp_server *s, struct smtp_actions *out)
{
	ASSERT(s->state == SMTP_STATE_GREETING);
	smtp_server_call_begin(s, out);
	uint32_t at = s->reply_len;
	smtp_server_put(s, SLICE_LIT("220 "));
	smtp_server_put(s, smtp_server_hostname(s));
	smtp_server_put(s, SLICE_LIT(" ESMTP ringmta"));
	smtp_server_reply_end(s, at, out);
	smtp_server_goto(s, SMTP_STATE_CONNECTED);
}

void
smtp_server_committed(struct smtp_server *s, int result, struct slice queue_id,
	struct smtp_actions *out)
{
	ASSERT(result <= 0);
	if (s->state == SMTP_STATE_CLOSED)
		return;   /* timed out while the disk worked: the message stands, nobody to tell */
	ASSERT(s->state == SMTP_STATE_COMMIT_WAIT);
	smtp_server_call_begin(s, out);
	if (result == 0) {
		uint32_t at = s->reply_len;
		smtp_server_put(s, SLICE_LIT("250 2.0.0 Ok: queued as "));
		for (size_t i = 0; i < queue_id.len && i < SMTP_SERVER_QUEUE_ID_LEN_MAX; i++) {
			/* The id goes into a reply line: nothing but printable ASCII. */
			bool ok = queue_id.ptr[i] > ' ' && queue_id.ptr[i] < 0x7f;
			smtp_server_put(s, ok ? slice_sub(queue_id, i, 1) : SLICE_LIT("?"));
		}
		smtp_server_reply_end(s, at, out);
	} else if (result == -ENOSPC) {
		SMTP_SERVER_REPLY(s, out, "452 4.3.1 Error: insufficient system storage");
	} else {
		SMTP_SERVER_REPLY(s, out, "451 4.3.0 Error: local error in processing");
	}
	smtp_server_txn_end(s, out);
}

void
smtp_server_timeout(struct smtp_server *s, struct smtp_actions *out)
{
	if (s->state == SMTP_STATE_CLOSED)
		return;
	smtp_server_call_begin(s, out);
	smtp_server_close(s, out, SLICE_LIT("421 4.4.2 Error: timeout exceeded"));
}

void
smtp_server_shutdown(struct smtp_server *s, struct smtp_actions *out)
{
	ASSERT(s->state != SMTP_STATE_COMMIT_WAIT);
	if (s->state == SMTP_STATE_CLOSED)
		return;
	smtp_server_call_begin(s, out);
	smtp_server_close(s, out, SLICE_LIT("421 4.3.2 Error: service shutting down"));
}

void
smtp_server_tls_started(struct smtp_server *s)
{
	if (s->state == SMTP_STATE_GREETING) {   /* implicit TLS, RFC 8314 3 */
		s->tls_active = true;
		return;
	}
	ASSERT(s->state == SMTP_STATE_TLS_WAIT);
	ASSERT(!s->tls_active);
	/* RFC 3207 4.2: discard any knowledge obtained from the client before TLS. */
	s->tls_active = true;
	s->authenticated = false;
	s->helo_len = 0;
	s->arena_used = 0;
	s->env = (struct smtp_envelope){ .esmtp = false };
	smtp_server_goto(s, SMTP_STATE_CONNECTED);
}

void
smtp_server_auth_credentials(const struct smtp_server *s, struct slice *user,
	struct slice *password)
{
	ASSERT(s->state == SMTP_STATE_AUTH_WAIT);
	*user = smtp_auth_user(&s->auth);
	*password = smtp_auth_password(&s->auth);
}

void
smtp_server_auth_done(struct smtp_server *s, int result, struct smtp_actions *out)
{
	ASSERT(result <= 0);
	if (s->state == SMTP_STATE_CLOSED)
		return;   /* timed out or shut down while the worker checked */
	ASSERT(s->state == SMTP_STATE_AUTH_WAIT);
	smtp_server_call_begin(s, out);
	smtp_auth_wipe(&s->auth);
	smtp_server_goto(s, SMTP_STATE_READY);
	if (result == 0) {
		s->authenticated = true;
		SMTP_SERVER_REPLY(s, out, "235 2.7.0 Authentication successful");
	} else if (result == -EACCES) {
		smtp_server_auth_failed(s, SLICE_LIT("535 5.7.8 Error: authentication failed"), out);
	} else {
		SMTP_SERVER_REPLY(s, out, "454 4.7.0 Temporary authentication failure");
	}
}

bool
smtp_server_tls_active(const struct smtp_server *s)
{
	return s->tls_active;
}

bool
smtp_server_authenticated(const struct smtp_server *s)
{
	return s->authenticated;
}

struct slice
smtp_server_auth_user(const struct smtp_server *s)
{
	return s->authenticated ? smtp_auth_user(&s->auth) : slice_make(NULL, 0);
}

uint32_t
smtp_server_auth_failures(const struct smtp_server *s)
{
	return s->auth_failures;
}

bool
smtp_server_closed(const struct smtp_server *s)
{
	return s->state == SMTP_STATE_CLOSED;
}

bool
smtp_server_in_body(const struct smtp_server *s)
{
	return s->state == SMTP_STATE_DATA || s->state == SMTP_STATE_BDAT
		|| s->state == SMTP_STATE_BDAT_WAIT || s->skip_left > 0;
}

const struct smtp_envelope *
smtp_server_envelope(const struct smtp_server *s)
{
	return &s->env;
}

struct smtp_rcpt
smtp_server_rcpt(const struct smtp_server *s, uint32_t i)
{
	struct smtp_server_rcpt_rec r;
	ASSERT(i < s->env.rcpt_count);
	memcpy(&r, s->arena + SMTP_ENVELOPE_ARENA_SIZE - (i + 1) * sizeof(r), sizeof(r));
	return (struct smtp_rcpt){
		.path = slice_make(s->arena + r.path_off, r.path_len),
		.local_part = slice_make(s->arena + r.local_off, r.local_len),
		.domain = slice_make(s->arena + r.domain_off, r.domain_len),
		.orcpt = slice_make(s->arena + r.orcpt_off, r.orcpt_len),
		.notify = r.notify,
	};
}
