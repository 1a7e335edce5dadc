/* deliver/bounce.h - the delivery status notification of one attempt, queued like any message.
 *
 * At the end of a message's attempt, the queue manager gives this module what it must report:
 * recipients that failed for good or expired (RFC 3464 "failed"), were delivered with
 * NOTIFY=SUCCESS ("delivered"), or have waited past delay_warning_time ("delayed"), each only
 * when RFC 3461 4.1 says a DSN is due (never for the null reverse-path, never with
 * NOTIFY=NEVER). It composes one DSN (proto/dsn.h) for all of them, addressed from <> to the
 * original sender, and commits it to the spool like a message from the network: durably, with
 * its own queue id, delivered locally or (later) outward. The verdict comes back as an event
 * with the caller's user_data; only then may the failed recipients be marked bounced, so a
 * crash can repeat a notice but never lose one. */
#ifndef RINGMTA_DELIVER_BOUNCE_H
#define RINGMTA_DELIVER_BOUNCE_H
#include <stdbool.h>
#include <stdint.h>

#include "base/slice.h"
#include "proto/dsn.h"

struct spool;
struct record_envelope_view;

#define BOUNCE_DIAG_MAX 512u          /* octets of a reason kept per recipient */
#define BOUNCE_HOST_MAX 256u          /* a remote MTA's name and its NUL */

/* One recipient to report. */
struct bounce_item {
	uint32_t rcpt;                    /* index in the original envelope */
	enum dsn_action action;
	enum dsn_diag_type diag_type;
	bool mark_bounced;                /* final once the notice is durable */
	char status[DSN_STATUS_LEN_MAX + 1];
	char diag[BOUNCE_DIAG_MAX];
	char remote_mta[BOUNCE_HOST_MAX]; /* DSN_DIAG_SMTP: the host that answered, or empty */
	uint64_t retry_until_ms;          /* delayed: until when it is tried */
};

/* The message the notice is about. */
struct bounce_original {
	uint64_t qid;
	struct record_envelope_view *v;   /* its decoded envelope (the cursor moves) */
	struct slice message;             /* the stored message, or its first part */
	bool whole;                       /* message holds all of it */
};

/* Whether a notice with `action` is due for recipient rcpt (RFC 3461 4.1). */
bool bounce_due(struct record_envelope_view *v, uint32_t rcpt, enum dsn_action action);

/* Queues the notice about o covering items[0..n). Returns 0 (the spool's verdict comes to ud,
 * and *dsn_qid is its queue id) or -errno (nothing queued, no event). */
int bounce_queue(struct spool *sp, struct slice myhostname, const struct bounce_original *o,
	const struct bounce_item *items, uint32_t n, uint64_t now_ms, uint64_t ud,
	uint64_t *dsn_qid) MUST_USE;
#endif
