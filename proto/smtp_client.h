/* proto/smtp_client.h - the I/O-free RFC 5321 client state machine (one per outgoing connection).
 *
 * The mirror of smtp_server: server replies in, actions out. It never touches a socket, a file or
 * a clock; time is an argument and timeouts are durations the engine turns into deadlines. The
 * shard that owns the destination embeds one struct smtp_client per connection: nothing is
 * allocated, the command and result texts live in fixed buffers inside the struct.
 *
 * A session: smtp_client_init (the TCP connection is up), then smtp_client_feed with what the
 * server sends. The greeting is read, EHLO sent (HELO when EHLO gets a 5xx, RFC 5321 3.2), its
 * keywords learnt, STARTTLS run when configured and offered; then a READY action: the engine
 * hands a transaction to smtp_client_transaction(), or ends with smtp_client_quit(). After each
 * transaction READY comes again, so one connection carries as many transactions as the engine
 * likes (connection reuse). A transaction that stopped half way (MAIL accepted, then no recipient
 * or the DATA refused) is cleaned up with RSET before READY; one that got its reply after the
 * data needs none (RFC 5321 4.1.1.4: the server has reset), which saves a round trip per message.
 *
 * Sending: MAIL, RCPT and DATA are SEND actions whose slices point into the client's command
 * buffer, valid until the next call of any smtp_client_* function; consecutive commands of one
 * call are one SEND (one write). With PIPELINING (RFC 2920 3.1) MAIL, every RCPT and DATA go in
 * that one write; a group that does not fit SMTP_CLIENT_CMD_BUF_SIZE goes in several, each as
 * replies make room. Without it, one command waits for the reply to the one before. The body: a
 * BODY action asks the engine to call smtp_client_body() with the stored body (dots unstuffed,
 * as the spool keeps it) in pieces, in order; the client answers with SEND actions that are
 * slices of those pieces and small static pieces (dot-stuffing, proto/data_stuff.h), so no body
 * octet is copied. With CHUNKING offered and txn->use_bdat, the body goes as one
 * "BDAT <size> LAST" chunk (RFC 3030) as it is stored. MAIL and the RCPTs are pipelined then
 * too, but BDAT waits for their replies: a body is sent only when a recipient was accepted.
 *
 * Extensions: SIZE=<body_size> when SIZE is offered, and a body over the receiver's limit fails
 * with 552 5.3.4 before anything is sent (RFC 1870 6). BODY=8BITMIME when the message needs it
 * and 8BITMIME is offered; a message that needs 8BITMIME to a receiver without it fails with
 * 554 5.6.3 before anything is sent: we do not convert to 7 bit (RFC 6152 3 allows bounce or
 * conversion; never a corrupted delivery). SMTPUTF8 when the message needs it (the caller says
 * so, or an address holds non-ASCII octets); a receiver without it: 553 5.6.7 before anything
 * is sent (RFC 6531 3.2). DSN parameters (RET, ENVID, NOTIFY, ORCPT) go out only when DSN is
 * offered (RFC 3461 4); smtp_client_extensions() tells the engine whether they did, for its
 * "relayed" notifications (RFC 3461 6.2.1.3).
 *
 * Results: RESULT actions. SCOPE_RCPT: one recipient was refused at RCPT (each recipient gets at
 * most one). SCOPE_TXN: the transaction ended; the result applies to every recipient of it that
 * did not get a SCOPE_RCPT result (rcpt_count says how many; 0 when none was left).
 * SCOPE_CONNECTION: the connection failed (421 at any stage, a greeting or EHLO/HELO refusal, a
 * timeout, the connection lost, a protocol violation by the server); it applies to the
 * unresolved recipients of an open transaction (rcpt_count, possibly 0), and CLOSE follows
 * (after QUIT, when the server is still in step). So every recipient of every transaction is
 * resolved exactly once. Result texts point into the client's text buffer and stay valid until
 * the next call of any smtp_client_* function. A 552 to RCPT counts as temporary (RFC 5321
 * 4.5.3.1.10).
 *
 * Feeding: smtp_client_feed consumes a prefix of its input (a partial reply line stays
 * unconsumed; the engine offers it again with more bytes) and handles any number of pipelined
 * replies per call. It stops early when the action array or a buffer is full, and after a READY,
 * BODY or STARTTLS action: the engine acts (gives the transaction, sends the body, runs TLS),
 * then feeds the rest. After STARTTLS the rest of that input is plaintext sent before TLS, which
 * the engine must drop (RFC 3207 4.2, response injection). Feeding a transcript whole or one byte
 * at a time gives the same actions.
 *
 * Limits: SMTP_CLIENT_RCPT_COUNT_MAX recipients per transaction (the engine's
 * destination_recipient_limit is lower); paths up to SMTP_CLIENT_PATH_LEN_MAX octets without
 * control octets, else the transaction fails before sending (553 5.1.7 sender, 553 5.1.3
 * recipient); an ENVID or ORCPT that is not valid xtext or too long is left out, not sent;
 * reply bounds as in proto/smtp_reply.h, whose errors end the connection as a protocol
 * violation (451 4.5.0). Timeouts (RFC 5321 4.5.3.2): smtp_client_timeout_ms() for the current
 * state.
 *
 * STARTTLS (RFC 3207): cfg->starttls sends it when offered. A refusal continues in plaintext,
 * unless cfg->tls_required: then a server that does not offer it or refuses it fails the
 * connection (CONNECTION result 421 4.7.4, local, then QUIT), and no mail is sent in clear.
 *
 * Not done here: which level applies (the engine's), AUTH, BINARYMIME, several BDAT chunks, 8-bit to 7-bit conversion. */
#ifndef RINGMTA_PROTO_SMTP_CLIENT_H
#define RINGMTA_PROTO_SMTP_CLIENT_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/slice.h"
#include "proto/data_stuff.h"
#include "proto/smtp_reply.h"
#include "proto/smtp_server.h"   /* enum smtp_dsn_ret, SMTP_DSN_NOTIFY_*: the stored envelope's */

#define SMTP_CLIENT_RCPT_COUNT_MAX     1000u  /* RFC 5321 4.5.3.1.8: servers take at least 100 */
#define SMTP_CLIENT_ACTIONS_MAX          64u
#define SMTP_CLIENT_CMD_LINE_LEN_MAX   2048u  /* the most we send as one command line */
#define SMTP_CLIENT_CMD_BUF_SIZE      16384u  /* one pipelined group of commands */
#define SMTP_CLIENT_TEXT_BUF_SIZE     16384u  /* result texts of one call */
#define SMTP_CLIENT_PATH_LEN_MAX       1024u  /* RFC 5321 4.5.3.1.3 says 256; SRS needs more */
#define SMTP_CLIENT_ORCPT_LEN_MAX       500u  /* RFC 3461 4.2 */
#define SMTP_CLIENT_ENVID_LEN_MAX       100u  /* RFC 3461 4.4 */
#define SMTP_CLIENT_HELO_LEN_MAX        255u  /* RFC 1035 2.3.4 */

/* RFC 5321 4.5.3.2 client timeouts, in ms. EHLO, HELO, STARTTLS, RSET and QUIT have none there;
 * they get the command timeout of MAIL. */
#define SMTP_CLIENT_TIMEOUT_GREETING_MS    300000u  /* 4.5.3.2.1: initial 220, 5 min */
#define SMTP_CLIENT_TIMEOUT_MAIL_MS        300000u  /* 4.5.3.2.2: MAIL, 5 min */
#define SMTP_CLIENT_TIMEOUT_RCPT_MS        300000u  /* 4.5.3.2.3: RCPT, 5 min */
#define SMTP_CLIENT_TIMEOUT_DATA_INIT_MS   120000u  /* 4.5.3.2.4: DATA until 354, 2 min */
#define SMTP_CLIENT_TIMEOUT_DATA_BLOCK_MS  180000u  /* 4.5.3.2.5: each body send, 3 min */
#define SMTP_CLIENT_TIMEOUT_DATA_TERM_MS   600000u  /* 4.5.3.2.6: after ".", 10 min */
#define SMTP_CLIENT_TIMEOUT_CMD_MS         300000u  /* EHLO, HELO, STARTTLS, RSET, QUIT */

/* Extensions of the last EHLO answer (RFC 5321 4.1.1.1, 2.2.2). */
#define SMTP_CLIENT_EXT_PIPELINING   (1u << 0)   /* RFC 2920 */
#define SMTP_CLIENT_EXT_SIZE         (1u << 1)   /* RFC 1870 */
#define SMTP_CLIENT_EXT_8BITMIME     (1u << 2)   /* RFC 6152 */
#define SMTP_CLIENT_EXT_SMTPUTF8     (1u << 3)   /* RFC 6531 */
#define SMTP_CLIENT_EXT_DSN          (1u << 4)   /* RFC 3461 */
#define SMTP_CLIENT_EXT_CHUNKING     (1u << 5)   /* RFC 3030 */
#define SMTP_CLIENT_EXT_STARTTLS     (1u << 6)   /* RFC 3207 */
#define SMTP_CLIENT_EXT_ENHANCEDSTATUSCODES (1u << 7)   /* RFC 2034 */

enum smtp_client_action_type {
	SMTP_CLIENT_ACTION_SEND,      /* send .data */
	SMTP_CLIENT_ACTION_BODY,      /* send the body: smtp_client_body() with its pieces */
	SMTP_CLIENT_ACTION_RESULT,    /* .result: an outcome (see the header comment) */
	SMTP_CLIENT_ACTION_READY,     /* idle: smtp_client_transaction() or smtp_client_quit() */
	SMTP_CLIENT_ACTION_STARTTLS,  /* seam: run TLS on the socket, then smtp_client_tls_done() */
	SMTP_CLIENT_ACTION_CLOSE,     /* close after sending what came before */
};

enum smtp_client_scope {
	SMTP_CLIENT_SCOPE_RCPT,        /* recipient .rcpt of the transaction */
	SMTP_CLIENT_SCOPE_TXN,         /* the transaction's recipients without a RCPT result */
	SMTP_CLIENT_SCOPE_CONNECTION,  /* the connection failed; CLOSE follows */
};

enum smtp_client_outcome {
	SMTP_CLIENT_DELIVERED,   /* 2xx after the data */
	SMTP_CLIENT_DEFERRED,    /* 4xx, or a local temporary failure: try again later */
	SMTP_CLIENT_BOUNCED,     /* 5xx, or a local permanent failure */
};

/* The command a reply answered, or that was going on (for logs: "in reply to RCPT TO"). */
enum smtp_client_stage {
	SMTP_CLIENT_STAGE_NONE,       /* before any command of the transaction was sent */
	SMTP_CLIENT_STAGE_GREETING,
	SMTP_CLIENT_STAGE_EHLO,
	SMTP_CLIENT_STAGE_HELO,
	SMTP_CLIENT_STAGE_STARTTLS,
	SMTP_CLIENT_STAGE_MAIL,
	SMTP_CLIENT_STAGE_RCPT,
	SMTP_CLIENT_STAGE_DATA,
	SMTP_CLIENT_STAGE_BODY,       /* while the body was being sent */
	SMTP_CLIENT_STAGE_END,        /* the reply after the data (DATA's "." or BDAT LAST) */
	SMTP_CLIENT_STAGE_RSET,
	SMTP_CLIENT_STAGE_QUIT,
	SMTP_CLIENT_STAGE_IDLE,       /* between transactions */
};

struct smtp_client_result {
	enum smtp_client_scope scope;
	enum smtp_client_outcome outcome;
	enum smtp_client_stage stage;
	uint32_t rcpt;                         /* SCOPE_RCPT: the index into txn->rcpts */
	uint32_t rcpt_count;                   /* recipients this result resolves */
	uint16_t code;                         /* the server's, or ours when local */
	struct smtp_reply_enhanced enhanced;   /* the reply's; class.0.0 when it had none */
	struct slice text;                     /* see smtp_reply.h; valid until the next call */
	bool local;                            /* decided by the client, not said by the server */
};

struct smtp_client_action {
	enum smtp_client_action_type type;
	struct slice data;                     /* SEND */
	struct smtp_client_result result;      /* RESULT */
};

struct smtp_client_actions {
	struct smtp_client_action items[SMTP_CLIENT_ACTIONS_MAX];
	uint32_t count;
};

/* One recipient as the spool keeps it. */
struct smtp_client_rcpt {
	struct slice path;      /* local@domain without brackets, as received; not empty */
	struct slice orcpt;     /* RFC 3461 ORCPT value ("rfc822;..."), or empty */
	uint8_t notify;         /* SMTP_DSN_NOTIFY_* bits, 0: not given */
};

/* One transaction. It and everything it points to stay valid, unchanged, until the transaction
 * ends: its SCOPE_TXN or SCOPE_CONNECTION result (commands are written as the pipeline drains). */
struct smtp_client_txn {
	struct slice mail_from;                 /* reverse path without brackets; empty: <> */
	const struct smtp_client_rcpt *rcpts;
	uint32_t rcpt_count;                    /* 1 .. SMTP_CLIENT_RCPT_COUNT_MAX */
	uint64_t body_size;                     /* octets of the body as stored, given to _body() */
	bool needs_8bitmime;                    /* 8-bit octets in the body (BODY=8BITMIME) */
	bool needs_smtputf8;                    /* received with SMTPUTF8 (RFC 6531) */
	bool use_bdat;                          /* BDAT when the receiver offers CHUNKING */
	enum smtp_dsn_ret dsn_ret;
	struct slice dsn_envid;                 /* xtext, or empty */
};

/* Shared by all connections of a shard; frozen before any starts. Timeouts 0: the RFC's. */
struct smtp_client_config {
	struct slice helo_name;          /* our name in EHLO/HELO: 1..255 printable octets */
	bool starttls;                   /* STARTTLS when offered */
	bool tls_required;               /* with starttls: no TLS, no mail (421 4.7.4, QUIT) */
	uint32_t greeting_timeout_ms;
	uint32_t cmd_timeout_ms;         /* MAIL, RCPT and the other commands */
	uint32_t data_init_timeout_ms;
	uint32_t data_block_timeout_ms;
	uint32_t data_term_timeout_ms;
};

/* private: use the functions */
enum smtp_client_state {
	SMTP_CLIENT_STATE_GREETING,   /* connected, waiting for the greeting */
	SMTP_CLIENT_STATE_EHLO,       /* EHLO sent */
	SMTP_CLIENT_STATE_HELO,       /* HELO sent, after EHLO got 5xx */
	SMTP_CLIENT_STATE_STARTTLS,   /* STARTTLS sent */
	SMTP_CLIENT_STATE_TLS,        /* STARTTLS action out, waiting for smtp_client_tls_done */
	SMTP_CLIENT_STATE_READY,      /* no transaction */
	SMTP_CLIENT_STATE_MAIL,       /* waiting for the reply to MAIL */
	SMTP_CLIENT_STATE_RCPT,       /* waiting for replies to RCPT */
	SMTP_CLIENT_STATE_DATA,       /* waiting for the reply to DATA */
	SMTP_CLIENT_STATE_BODY,       /* BODY action out: the engine sends the body */
	SMTP_CLIENT_STATE_END,        /* body sent, waiting for the reply after the data */
	SMTP_CLIENT_STATE_RSET,       /* RSET sent */
	SMTP_CLIENT_STATE_QUIT,       /* QUIT sent */
	SMTP_CLIENT_STATE_CLOSED,
};

struct smtp_client {
	const struct smtp_client_config *cfg;
	enum smtp_client_state state;
	/* SMTP_CLIENT_PRIVATE_FIELDS: everything up to cmd_buf is set by smtp_client_init. */
	uint32_t ext;                   /* SMTP_CLIENT_EXT_* of the EHLO answer in force */
	uint32_t ext_seen;              /* ... of the EHLO answer being read */
	uint64_t size_max;              /* the receiver's SIZE, 0: no limit announced */
	uint64_t size_seen;
	bool tls_active;                /* TLS runs: STARTTLS is not sent again */
	bool yield;                     /* READY, BODY or STARTTLS sent: stop this feed */
	uint32_t cmd_len;               /* octets of cmd_buf in use since the last reset */
	uint32_t text_len;              /* octets of text_buf in use since the last reset */
	/* The transaction: */
	const struct smtp_client_txn *txn;
	bool txn_open;                  /* some recipient is not resolved yet */
	bool pipelined;                 /* this transaction is pipelined */
	bool bdat;                      /* its body goes with BDAT */
	bool smtputf8;                  /* it needs SMTPUTF8 */
	bool mail_replied;              /* the reply to MAIL was read */
	bool mail_ok;                   /* MAIL got 2xx: a failure needs RSET */
	bool data_sent;                 /* DATA is written */
	bool dummy_end;                 /* "." sent after a 354 that no recipient wanted */
	uint32_t rcpt_sent;             /* RCPT commands written */
	uint32_t rcpt_replied;          /* RCPT replies read */
	uint32_t rcpt_accepted;
	uint32_t rcpt_refused;          /* SCOPE_RCPT results given */
	uint64_t body_sent;             /* body octets taken by smtp_client_body */
	struct data_stuff stuff;
	struct smtp_reply_parser reply;
	uint64_t accepted[(SMTP_CLIENT_RCPT_COUNT_MAX + 63) / 64];   /* bit i: recipient i 2xx */
	uint8_t cmd_buf[SMTP_CLIENT_CMD_BUF_SIZE];
	uint8_t text_buf[SMTP_CLIENT_TEXT_BUF_SIZE];
};

/* Prepares c for a new connection that has just been established: it waits for the greeting.
 * cfg stays valid for the connection's life. */
void smtp_client_init(struct smtp_client *c, const struct smtp_client_config *cfg);

/* Consumes a prefix of `in` (server replies), appends to `out`, returns bytes consumed (0: waits
 * for more bytes). SEND and RESULT slices point into c. Cannot fail; not called in the TLS
 * state. */
size_t smtp_client_feed(struct smtp_client *c, struct slice in, struct smtp_client_actions *out);

/* Starts a transaction (only after READY, the state between transactions). txn stays valid
 * until the transaction's TXN or CONNECTION result. Appends its commands, or its result when it
 * fails before anything is sent (then READY again). */
void smtp_client_transaction(struct smtp_client *c, const struct smtp_client_txn *txn,
	struct smtp_client_actions *out);

/* After a BODY action: takes a prefix of the next piece of the stored body, appends SEND actions
 * (slices of `piece` and static storage), returns the octets taken; the rest is offered again.
 * The pieces, in order, are the body_size octets of the body; `last` marks the piece that ends
 * it, and once it is all taken the end of data is appended and the reply awaited. Needs
 * DATA_STUFF_ROOM_MIN + 1 free actions. After the connection failed meanwhile, takes everything
 * and appends nothing. */
size_t smtp_client_body(struct smtp_client *c, struct slice piece, bool last,
	struct smtp_client_actions *out);

/* After a STARTTLS action: result 0 when TLS is up (EHLO is sent again, RFC 3207 4.2), or a
 * negative errno when the handshake failed (CONNECTION result 421 4.7.5, CLOSE). */
void smtp_client_tls_done(struct smtp_client *c, int result, struct smtp_client_actions *out);

/* Ends the session: QUIT when idle (READY); in the middle of anything else, a CONNECTION result
 * (421 4.3.2, local) and CLOSE. Nothing when already closed or quitting. */
void smtp_client_quit(struct smtp_client *c, struct smtp_client_actions *out);

/* The timeout of the current state fired: CONNECTION result 421 4.4.2 (local) and CLOSE; while
 * quitting, just CLOSE. */
void smtp_client_timeout(struct smtp_client *c, struct smtp_client_actions *out);

/* The connection broke (err: 0 for an orderly close by the server, or a negative errno): a
 * CONNECTION result 421 4.4.2 (local) and CLOSE; while quitting, just CLOSE. */
void smtp_client_lost(struct smtp_client *c, int err, struct smtp_client_actions *out);

/* How long the current state may wait for the server (RFC 5321 4.5.3.2), in ms; 0 when it does
 * not wait (READY: the engine's idle time applies; TLS: the handshake's; CLOSED). In the BODY
 * state it is the time each send of the body may take. */
uint32_t smtp_client_timeout_ms(const struct smtp_client *c);

bool smtp_client_closed(const struct smtp_client *c);
bool smtp_client_ready(const struct smtp_client *c);
/* SMTP_CLIENT_EXT_* bits of the EHLO answer in force (0 after HELO). */
uint32_t smtp_client_extensions(const struct smtp_client *c);
/* The receiver's SIZE limit, 0 when it announced none. */
uint64_t smtp_client_size_max(const struct smtp_client *c);
/* Whether recipient i of the current or last transaction got 2xx to its RCPT. */
bool smtp_client_rcpt_accepted(const struct smtp_client *c, uint32_t i);
/* "RCPT TO" and the like, for log lines ("in reply to ..."). */
const char *smtp_client_stage_name(enum smtp_client_stage stage);
#endif
