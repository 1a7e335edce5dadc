/* proto/smtp_server.h - the I/O-free RFC 5321 server state machine (one per connection).
 *
 * Bytes in, actions out: it never touches a socket, a file or a clock; time is an argument and
 * timeouts are durations the engine turns into deadlines. A connection slot embeds its struct
 * smtp_server, so nothing is allocated per connection or per message: the envelope lives in a
 * fixed arena inside the struct. smtp_server_init touches only the header fields, not the arena,
 * so idle slots cost no resident memory.
 *
 * Feeding: smtp_server_feed consumes a prefix of its input and returns how much. A partial
 * command line is not consumed (the engine offers it again with more bytes; a line never grows
 * past SMTP_CMD_LINE_LEN_MAX, see below). Body bytes of DATA and BDAT are always consumed and come
 * out as BODY slices of the input. Any number of pipelined commands are handled per call
 * (RFC 2920); replies come out in order. The call stops early when the action array or the reply
 * buffer is full, and after a COMMIT: no further command is read until smtp_server_committed()
 * tells the outcome, so the 250 of a message always precedes the replies to what follows it.
 * The same holds after an AUTH action, until smtp_server_auth_done().
 * It also stops after a STARTTLS action: the rest of that input is plaintext sent before TLS,
 * which the engine must drop (RFC 3207 4.2, CVE-2011-0411), and nothing more is read until
 * smtp_server_tls_started() says the handshake is done. When the call returns without having
 * stopped early, less than SMTP_CMD_LINE_LEN_MAX octets are left unconsumed.
 *
 * STARTTLS (RFC 3207): offered (cfg->starttls_offered) and advertised only before TLS; with a
 * parameter "501 5.5.4"; inside TLS "503 5.5.1"; in a transaction "503 5.5.1". After the
 * handshake the session starts over: no HELO name, no transaction, not authenticated, EHLO
 * required again. cfg->tls_required refuses MAIL before TLS with "530 5.7.0" (RFC 3207 4).
 * Implicit TLS (RFC 8314): smtp_server_tls_started() before smtp_server_start().
 *
 * AUTH (RFC 4954, mechanisms in proto/smtp_auth.h): offered on listeners with
 * cfg->auth_offered, advertised and accepted only over TLS ("538 5.7.11" before it), after EHLO,
 * outside a transaction, once ("503 5.5.1" otherwise). When the mechanism has the credentials
 * the feed stops with an AUTH action: the engine verifies smtp_server_auth_credentials() off the
 * shard and calls smtp_server_auth_done(). "235 2.7.0" on success; "535 5.7.8" on bad
 * credentials, the same text for unknown users; after SMTP_AUTH_FAILURES_MAX of them
 * "421 4.7.0" and CLOSE (the engine may delay each 535 by smtp_server_auth_failures()); "454
 * 4.7.0" when the check could not run. A response line past SMTP_CMD_LINE_LEN_MAX gets "500
 * 5.5.6" and ends the exchange. cfg->auth_required refuses MAIL before AUTH with "530 5.7.0".
 * MAIL's AUTH= parameter (RFC 4954 5) is accepted where AUTH is advertised, and kept in the
 * envelope only for an authenticated session (otherwise it is as if AUTH=<> was sent). With
 * cfg->sender_is_login an authenticated session may send only as its user name (an address:
 * the local part compared exactly, the domain without case) or as <>: "553 5.7.1" otherwise
 * (RFC 6409 8.1, Postfix's reject_sender_login_mismatch).
 *
 * Replies: REPLY slices point into the server's reply buffer and stay valid until the next call
 * of any smtp_server_* function on it. Consecutive replies are contiguous in that buffer, so the
 * engine can send everything one feed produced with one send. Every reply text starts with an
 * RFC 3463 enhanced code of its class, except the greeting, the HELO/EHLO answer, 354 and the 334
 * AUTH challenges (RFC 3463 has no class 3).
 *
 * Envelope: smtp_server_envelope() describes the current transaction (HELO name, reverse path,
 * parameters, recipients with their DSN parameters), valid from BODY_BEGIN until the
 * transaction ends (smtp_server_committed(), BODY_DISCARD, RSET, HELO/EHLO).
 *
 * Limits (each with its reply, tested at and past its bound):
 *   command line: SMTP_CMD_LINE_LEN_MAX octets including CRLF, longer: "500 5.5.2 line too long",
 *     the rest of the line is discarded up to its LF and the session stays in step;
 *   recipients: cfg->max_recipients, beyond: "452 4.5.3"; envelope arena full: "452 4.5.3";
 *   message size: cfg->max_message_size, SIZE=n over it at MAIL: "552 5.3.4", real body over it
 *     at end of data: "552 5.3.4" (the body is discarded, the session stays usable);
 *   bad commands: cfg->bad_cmd_max, then "421 4.7.0" and CLOSE; the replies that count are
 *     500, 501, 502, 503, 504, 530, 538, 553 (non-ASCII address without SMTPUTF8) and 555, not
 *     the policy and limit answers (550, 554, 451, 452, 552) nor 535;
 *   failed authentications: SMTP_AUTH_FAILURES_MAX, then "421 4.7.0" and CLOSE;
 *   timeouts (RFC 5321 4.5.3.2): the engine keeps the deadline (cmd_timeout, or data_timeout
 *     while smtp_server_in_body), smtp_server_timeout answers "421 4.4.2" and closes.
 * DATA text lines longer than 1000 octets (RFC 5321 4.5.3.1.6) are kept as they are.
 * Bare CR or bare LF in a DATA body: the message is refused after the real terminator with
 * "550 5.6.0" (SMTP smuggling); BDAT bodies are binary-clean and kept as sent (RFC 3030). */
#ifndef RINGMTA_PROTO_SMTP_SERVER_H
#define RINGMTA_PROTO_SMTP_SERVER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/slice.h"
#include "proto/data_scan.h"
#include "proto/smtp_auth.h"

#define SMTP_CMD_LINE_LEN_MAX     2048u  /* RFC 5321 4.5.3.1.4: 512, plus room for parameters */
#define SMTP_RCPT_COUNT_MAX       1000u  /* RFC 5321 4.5.3.1.8: at least 100 must be accepted */
#define SMTP_BAD_CMD_COUNT_MAX      10u  /* default, then 421 and close */
#define SMTP_ACTIONS_MAX            64u
#define SMTP_REPLY_BUF_SIZE       4096u
#define SMTP_ENVELOPE_ARENA_SIZE 65536u  /* addresses and DSN parameters of one transaction */
#define SMTP_TIMEOUT_CMD_MS     300000u  /* RFC 5321 4.5.3.2.7: server waits 5 min for a command */
#define SMTP_TIMEOUT_DATA_MS    180000u  /* RFC 5321 4.5.3.2.5: 3 min per data block */
#define SMTP_AUTH_FAILURES_MAX       3u  /* failed AUTHs in a session, then 421 and close */
#define SMTP_MAIL_AUTH_LEN_MAX     500u  /* MAIL AUTH= value (xtext), like ORCPT's bound */

enum smtp_action_type {
	SMTP_ACTION_REPLY,        /* send .data */
	SMTP_ACTION_BODY_BEGIN,   /* a message body starts: forget any body bytes kept so far */
	SMTP_ACTION_BODY,         /* append .data (a slice of the input, dots unstuffed) */
	SMTP_ACTION_BODY_DISCARD, /* the body was refused (too big, bare newlines): drop it */
	SMTP_ACTION_COMMIT,       /* make the message durable, then call smtp_server_committed() */
	SMTP_ACTION_STARTTLS,     /* the 220 is queued; drop the rest of the input, then TLS, then
	                           * smtp_server_tls_started() (or close if the handshake fails) */
	SMTP_ACTION_AUTH,         /* verify smtp_server_auth_credentials(), then call
	                           * smtp_server_auth_done() */
	SMTP_ACTION_CLOSE,        /* close after sending the replies before it */
};

struct smtp_action {
	enum smtp_action_type type;
	struct slice data;
};

struct smtp_actions {
	struct smtp_action items[SMTP_ACTIONS_MAX];
	uint32_t count;
};

/* Verdict of the recipient policy at RCPT time (pure and in memory: no I/O). */
enum smtp_rcpt_verdict {
	SMTP_RCPT_OK,
	SMTP_RCPT_UNKNOWN_USER,   /* 550 5.1.1 */
	SMTP_RCPT_RELAY_DENIED,   /* 554 5.7.1 */
	SMTP_RCPT_TEMPFAIL,       /* 451 4.3.0 */
};

/* local_part and domain are the parsed path (quotes removed from a quoted local part, source route
 * dropped); `quoted` says the local part was a quoted-string. ctx is the session's. */
typedef enum smtp_rcpt_verdict (*smtp_server_rcpt_fn)(void *ctx, struct slice local_part,
	struct slice domain, bool quoted);

/* Shared by all sessions of a listener; frozen before any session starts. */
struct smtp_server_config {
	struct slice hostname;       /* greeting, EHLO reply */
	uint64_t max_message_size;   /* octets, advertised as SIZE */
	uint32_t max_recipients;     /* 1 .. SMTP_RCPT_COUNT_MAX */
	uint32_t bad_cmd_max;
	smtp_server_rcpt_fn rcpt_check;
	bool starttls_offered;       /* STARTTLS is offered (before TLS only) */
	bool tls_required;           /* MAIL before TLS: 530 5.7.0 (submission) */
	bool auth_offered;           /* AUTH PLAIN LOGIN is offered, over TLS only (submission) */
	bool auth_required;          /* MAIL before AUTH: 530 5.7.0 (submission) */
	bool sender_is_login;        /* authenticated: MAIL FROM is the user name or <>, else 553 */
};

enum smtp_body_type { SMTP_BODY_UNSPECIFIED, SMTP_BODY_7BIT, SMTP_BODY_8BITMIME };
enum smtp_dsn_ret { SMTP_DSN_RET_UNSPECIFIED, SMTP_DSN_RET_FULL, SMTP_DSN_RET_HDRS };
#define SMTP_DSN_NOTIFY_NEVER   0x1u   /* RFC 3461 4.1 */
#define SMTP_DSN_NOTIFY_SUCCESS 0x2u
#define SMTP_DSN_NOTIFY_FAILURE 0x4u
#define SMTP_DSN_NOTIFY_DELAY   0x8u

struct smtp_rcpt {
	struct slice path;           /* local@domain as given (no brackets, source route dropped) */
	struct slice local_part;     /* inside path, or the arena for a quoted local part */
	struct slice domain;         /* inside path; empty for <postmaster> */
	struct slice orcpt;          /* RFC 3461 ORCPT value as sent ("rfc822;..."), or empty */
	uint8_t notify;              /* SMTP_DSN_NOTIFY_* bits, 0: not given */
};

/* A view of the current transaction; slices point into the server's arena. */
struct smtp_envelope {
	struct slice helo;           /* HELO/EHLO argument */
	bool esmtp;                  /* EHLO (not HELO) was used */
	struct slice mail_from;      /* reverse path without brackets; empty: null sender <> */
	uint64_t declared_size;      /* SIZE=, 0: not given */
	enum smtp_body_type body;
	bool smtputf8;
	enum smtp_dsn_ret dsn_ret;
	struct slice dsn_envid;      /* ENVID= as sent (xtext), or empty */
	struct slice mail_auth;      /* AUTH= as sent (xtext) in an authenticated session, or empty */
	uint32_t rcpt_count;
	uint64_t body_size;          /* octets of body after unstuffing */
};

/* private: use the functions */
enum smtp_server_state {
	SMTP_STATE_GREETING,     /* before smtp_server_start */
	SMTP_STATE_CONNECTED,    /* greeted, no HELO/EHLO yet */
	SMTP_STATE_READY,        /* HELO/EHLO done, no transaction */
	SMTP_STATE_MAIL,         /* MAIL accepted */
	SMTP_STATE_RCPT,         /* at least one RCPT accepted */
	SMTP_STATE_DATA,         /* in a DATA body */
	SMTP_STATE_BDAT,         /* in a BDAT chunk */
	SMTP_STATE_BDAT_WAIT,    /* between BDAT chunks */
	SMTP_STATE_COMMIT_WAIT,  /* COMMIT emitted, waiting for smtp_server_committed */
	SMTP_STATE_AUTH,         /* a 334 challenge sent, waiting for the client's response line */
	SMTP_STATE_AUTH_WAIT,    /* AUTH emitted, waiting for smtp_server_auth_done */
	SMTP_STATE_TLS_WAIT,     /* STARTTLS emitted, waiting for smtp_server_tls_started */
	SMTP_STATE_CLOSED,
};

struct smtp_server {
	const struct smtp_server_config *cfg;
	void *ctx;                      /* passed to cfg->rcpt_check */
	enum smtp_server_state state;
	/* SMTP_SERVER_PRIVATE_FIELDS: everything up to reply_buf is set by smtp_server_init. */
	uint32_t bad_cmd_count;         /* replies counted against cfg->bad_cmd_max (see .c) */
	uint32_t reply_len;             /* octets of reply_buf in use since the last reset */
	uint32_t arena_used;            /* arena octets in use from the start */
	uint32_t helo_len;              /* the HELO name at the arena start outlives transactions */
	bool discard_line;              /* dropping the rest of an over-long command line */
	bool body_begun;                /* BODY_BEGIN sent, neither COMMIT nor BODY_DISCARD yet */
	bool body_over;                 /* the DATA body passed max_message_size */
	bool bdat_last;                 /* the chunk being read is the LAST one */
	bool yield;                     /* STARTTLS sent: the rest of this input is not ours */
	bool tls_active;                /* TLS is up: STARTTLS not offered again, AUTH may run */
	bool authenticated;             /* AUTH succeeded; never reset but by TLS starting */
	uint8_t auth_failures;          /* 535s so far */
	bool skip_counts;               /* skip_reply counts as a bad command */
	uint64_t bdat_size;             /* announced size of the chunk being read */
	uint64_t bdat_left;             /* its octets still to come */
	uint64_t skip_left;             /* octets of a refused BDAT chunk still to drop */
	struct slice skip_reply;        /* the reply once they are dropped (static text) */
	struct smtp_envelope env;       /* slices into arena */
	struct data_scan scan;
	uint8_t reply_buf[SMTP_REPLY_BUF_SIZE];
	struct smtp_auth auth;          /* written only by AUTH; holds the user name afterwards */
	/* Last, so that an idle slot never touches its pages: written only by HELO/EHLO, MAIL and
	 * RCPT. Strings grow up from the start, fixed-size recipient records down from the end. */
	uint8_t arena[SMTP_ENVELOPE_ARENA_SIZE];
};


/* Prepares s for a new connection; ctx is handed to cfg->rcpt_check. Touches no arena bytes. */
void smtp_server_init(struct smtp_server *s, const struct smtp_server_config *cfg, void *ctx);

/* Appends the 220 greeting. */
void smtp_server_start(struct smtp_server *s, struct smtp_actions *out);

/* Consumes a prefix of `in`, appends to `out`, returns bytes consumed (0: waits for more bytes,
 * or for smtp_server_committed). Body slices point into `in`; reply slices into s. Cannot fail. */
size_t smtp_server_feed(struct smtp_server *s, struct slice in, struct smtp_actions *out);

/* The outcome of a COMMIT: result 0 (durable; replies "250 2.0.0 Ok: queued as <queue_id>"),
 * -ENOSPC ("452 4.3.1") or another negative errno ("451 4.3.0"). The transaction ends either
 * way. After a timeout closed the session meanwhile, it does nothing. */
void smtp_server_committed(struct smtp_server *s, int result, struct slice queue_id,
	struct smtp_actions *out);

/* The timeout fired: appends "421 4.4.2" and CLOSE. */
void smtp_server_timeout(struct smtp_server *s, struct smtp_actions *out);

/* The daemon is stopping: appends "421 4.3.2" and CLOSE (not while COMMIT_WAIT: the engine lets
 * the commit finish first). */
void smtp_server_shutdown(struct smtp_server *s, struct smtp_actions *out);

/* The TLS handshake completed. After STARTTLS (state TLS_WAIT) the session starts over as after
 * the greeting, tls_active set, nothing appended to out (the client speaks first: EHLO). Before
 * smtp_server_start (implicit TLS) it only marks the session as TLS. */
void smtp_server_tls_started(struct smtp_server *s);

/* After an AUTH action: the identity and password to check (slices into s, valid until
 * smtp_server_auth_done or the session closes). */
void smtp_server_auth_credentials(const struct smtp_server *s, struct slice *user,
	struct slice *password);

/* The verdict on the credentials: 0 (valid: "235 2.7.0"), -EACCES (not valid, or no such user:
 * "535 5.7.8", counted), or another negative errno (the check could not run: "454 4.7.0"). The
 * password is wiped either way. After a timeout or shutdown closed the session, it does nothing. */
void smtp_server_auth_done(struct smtp_server *s, int result, struct smtp_actions *out);

bool smtp_server_tls_active(const struct smtp_server *s);
bool smtp_server_authenticated(const struct smtp_server *s);
/* The authenticated user (empty when not authenticated); valid for the session. */
struct slice smtp_server_auth_user(const struct smtp_server *s);
/* Failed authentications so far (the engine may delay the next 535 by it). */
uint32_t smtp_server_auth_failures(const struct smtp_server *s);

bool smtp_server_closed(const struct smtp_server *s);
/* DATA, BDAT or BDAT_WAIT, or dropping the octets of a refused BDAT chunk: the data timeout. */
bool smtp_server_in_body(const struct smtp_server *s);

const struct smtp_envelope *smtp_server_envelope(const struct smtp_server *s);
/* Recipient i (0 <= i < envelope->rcpt_count) of the current transaction. */
struct smtp_rcpt smtp_server_rcpt(const struct smtp_server *s, uint32_t i);
#endif
