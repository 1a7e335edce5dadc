/* proto/dsn.h - delivery status notifications: the bounce message (RFC 3464, RFC 6522, RFC 3461).
 *
 * A pure composer. The queue hands it what it knows of a message and of the recipients to report
 * (struct dsn_report) and gets back a new message as three pieces to write as iovecs:
 *
 *   head      composed text in the caller's buffer: the header section, the human-readable
 *             text/plain part, the message/delivery-status part and the headers of the part
 *             that carries the original;
 *   original  a slice of the original message (the bytes as stored, never copied): all of it
 *             (message/rfc822), or its header section only (text/rfc822-headers);
 *   tail      composed text in the caller's buffer: the closing delimiter.
 *
 * The queue commits that message like any other (durably), with MAIL FROM:<> (RFC 5321 4.5.5)
 * and the one recipient dsn_report.env->mail_from, and says in its envelope whether it needs
 * 8BITMIME or SMTPUTF8 (dsn_out.need_8bitmime, dsn_out.need_smtputf8) to be sent on.
 *
 * Which original part (RFC 3461 4.3): the whole message when some recipient failed, RET is not
 * HDRS and the message is at most size_limit octets (Postfix's bounce_size_limit); otherwise the
 * header section only, itself cut at a line end past size_limit. A DSN that reports no failure
 * (delayed, delivered, relayed, expanded) carries the headers only.
 *
 * The text: every line ends in CRLF; no header line passes DSN_LINE_LEN_MAX (RFC 5322 2.1.1);
 * diagnostic text is folded at DSN_FOLD_COLUMN. Everything shown comes from the network or the
 * disk, so everything is sanitised: diagnostic texts by dsn_sanitize_text (no control octet, so
 * no CR or LF: a remote reply cannot end a header field, add one or end a MIME part), addresses
 * and decoded xtext with control octets and DEL shown as '?', host names and the HELO name with
 * anything a domain or address literal cannot hold shown as '_'. No line of composed text starts
 * with "--", and the boundary is changed until the included original does not contain it (an
 * original holding all DSN_BOUNDARY_TRIES_MAX candidates is left out, and the text says so).
 *
 * When the original was sent with SMTPUTF8 and a shown address or the included header section is
 * not ASCII, the parts are the RFC 6533 ones (message/global-delivery-status, message/global,
 * message/global-headers) and non-ASCII addresses have the address type "utf-8"; otherwise
 * non-ASCII octets in addresses are shown as '?'.
 *
 * Limits: DSN_RCPT_MAX recipients per report, shown addresses cut at DSN_ADDR_LEN_MAX octets,
 * diagnostic text at DSN_DIAG_LEN_MAX, host names at DSN_HOST_LEN_MAX, ENVID at DSN_ENVID_LEN_MAX.
 * Pure: the time is an argument, the text goes to the caller's buffer, nothing is allocated. */
#ifndef RINGMTA_PROTO_DSN_H
#define RINGMTA_PROTO_DSN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/slice.h"
#include "proto/smtp_server.h"

#define DSN_SIZE_LIMIT_DEFAULT 50000u   /* octets of original returned (bounce_size_limit) */
#define DSN_RCPT_MAX           SMTP_RCPT_COUNT_MAX   /* one report covers one message */
#define DSN_LINE_LEN_MAX       998u     /* RFC 5322 2.1.1, without the CRLF */
#define DSN_FOLD_COLUMN        78u      /* RFC 5322 2.1.1: lines SHOULD stay within 78 */
#define DSN_FOLD_MIN           40u      /* a folded line holds at least this many octets */
#define DSN_ADDR_LEN_MAX       512u     /* octets of an address shown (a path is <= 256+255) */
#define DSN_ORCPT_LEN_MAX      500u     /* RFC 3461 4.2: the whole ORCPT parameter */
#define DSN_ENVID_LEN_MAX      100u     /* RFC 3461 4.4 */
#define DSN_HOST_LEN_MAX       255u     /* RFC 1035 2.3.4 name; longer is cut */
#define DSN_CLIENT_ADDR_LEN_MAX 64u     /* the client's printable IP address */
#define DSN_DIAG_LEN_MAX       2048u    /* diagnostic text kept; longer is cut and ends "..." */
#define DSN_STATUS_LEN_MAX     9u       /* RFC 3463 2: "5.999.999" */
#define DSN_BOUNDARY_LEN_MAX   70u      /* RFC 2046 5.1.1 */
#define DSN_BOUNDARY_TRIES_MAX 16u      /* boundaries tried against the original, then it is left
                                         * out (it was made to hold them all) */

_Static_assert(sizeof("Final-Recipient: utf-8; ") - 1 + DSN_ADDR_LEN_MAX <= DSN_LINE_LEN_MAX,
	"an address field is one line");
_Static_assert(sizeof("Original-Recipient: ") - 1 + DSN_ORCPT_LEN_MAX <= DSN_LINE_LEN_MAX,
	"an ORCPT field is one line");
_Static_assert(DSN_FOLD_MIN < DSN_FOLD_COLUMN, "folding makes progress");

/* RFC 3464 2.3.3. */
enum dsn_action {
	DSN_ACTION_FAILED,
	DSN_ACTION_DELAYED,
	DSN_ACTION_DELIVERED,
	DSN_ACTION_RELAYED,      /* to a next hop that does not speak DSN (RFC 3461 5.2.2) */
	DSN_ACTION_EXPANDED,
};

/* RFC 3464 2.3.6 diagnostic-type. */
enum dsn_diag_type {
	DSN_DIAG_NONE,           /* no Diagnostic-Code field */
	DSN_DIAG_SMTP,           /* "smtp; <the remote reply>" */
	DSN_DIAG_LOCAL,          /* "X-ringmta; <a local reason>" */
};

/* What the queue knows of the original message. Slices are only read. */
struct dsn_envelope {
	struct slice mail_from;  /* the original reverse-path: the DSN goes to it; never empty */
	struct slice envid;      /* RFC 3461 4.4 ENVID as sent (xtext), or empty */
	enum smtp_dsn_ret ret;
	bool smtputf8;           /* the original came with SMTPUTF8 */
	uint64_t arrival_ms;     /* CLOCK_REALTIME ms */
	struct slice client_addr;/* printable IP address, or empty */
	struct slice helo;       /* HELO/EHLO name, or empty: no Received-From-MTA field */
};

/* One recipient to report. Slices are only read. */
struct dsn_rcpt {
	struct slice final_rcpt; /* the address as in RCPT TO (no brackets) */
	struct slice orcpt;      /* RFC 3461 4.2 ORCPT as sent ("rfc822;" xtext), or empty */
	enum dsn_action action;
	struct slice status;     /* RFC 3463 "x.y.z"; empty or malformed: x.0.0 of the action */
	enum dsn_diag_type diag_type;
	struct slice diag;       /* reply text ("550 5.1.1 <bob@b.example>: unknown") or a local
	                          * reason; untrusted, any octets */
	struct slice remote_mta; /* the host that answered, or empty */
	uint64_t last_attempt_ms;/* 0: no Last-Attempt-Date field */
	uint64_t retry_until_ms; /* delayed: Will-Retry-Until; 0 (or another action): none */
};

struct dsn_report {
	struct slice myhostname; /* Reporting-MTA and MAILER-DAEMON@ */
	uint64_t queue_id;       /* of the original message: X-ringmta-Queue-ID */
	uint64_t dsn_queue_id;   /* of the DSN itself: Message-ID and the MIME boundary */
	uint64_t now_ms;         /* CLOCK_REALTIME ms: Date: */
	const struct dsn_envelope *env;
	const struct dsn_rcpt *rcpts;
	uint32_t rcpt_count;     /* 1 .. DSN_RCPT_MAX */
	struct slice original;   /* the message as stored: header section, blank line, body */
	uint64_t size_limit;     /* octets of original returned at most (DSN_SIZE_LIMIT_DEFAULT) */
};

enum dsn_included {
	DSN_INCLUDED_MESSAGE,    /* message/rfc822 (or message/global): the whole original */
	DSN_INCLUDED_HEADERS,    /* text/rfc822-headers (or message/global-headers) */
};

struct dsn_out {
	struct slice head;       /* in the caller's buffer */
	struct slice original;   /* inside dsn_report.original */
	struct slice tail;       /* in the caller's buffer, after head */
	enum dsn_included included;
	bool need_8bitmime;      /* some octet of the three pieces is not ASCII */
	bool need_smtputf8;      /* the recipient of the DSN (the original sender) is not ASCII */
	bool utf8_types;         /* the RFC 6533 content types were used */
};

/* Whether a DSN with `action` is due for a recipient with NOTIFY bits `notify` (0: NOTIFY not
 * given) of a message from mail_from (RFC 3461 4.1): never for the null reverse-path, never with
 * NOTIFY=NEVER; failed: NOTIFY absent or with FAILURE; delayed: absent or with DELAY; delivered,
 * relayed, expanded: only with SUCCESS. */
bool dsn_due(struct slice mail_from, uint8_t notify, enum dsn_action action);

/* Octets of head + tail that dsn_compose writes for r: the caller's buffer size. */
size_t dsn_size(const struct dsn_report *r);

/* Composes the DSN described above. buf must hold dsn_size(r) octets (asserted); r must be
 * within the limits above (asserted: rcpt_count, a non-empty mail_from and myhostname). Fills
 * *out; head and tail borrow buf, original borrows r->original. Cannot fail. */
void dsn_compose(const struct dsn_report *r, uint8_t *buf, size_t cap, struct dsn_out *out);

/* Diagnostic text made safe for one header field: every control octet (0x00-0x1f, DEL) is a
 * blank, runs of blanks become one, blanks at either end go, an octet >= 0x80 becomes '?', and a
 * text over DSN_DIAG_LEN_MAX octets is cut to end in "...". Writes at most DSN_DIAG_LEN_MAX
 * octets to out (cap >= DSN_DIAG_LEN_MAX) and returns how many. */
size_t dsn_sanitize_text(uint8_t *out, size_t cap, struct slice in);

/* RFC 3463 2: class "2", "4" or "5", then "." 1*3digit "." 1*3digit, no leading zeros needed. */
bool dsn_status_valid(struct slice status);

/* RFC 3461 4: decodes xtext ("+2B" is '+') into out (cap >= in.len) and returns the length, or
 * -1 if in is not xtext (a '+' without two upper-case hex digits). */
long dsn_xtext_decode(uint8_t *out, size_t cap, struct slice in);
#endif
