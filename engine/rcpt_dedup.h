/* engine/rcpt_dedup.h - one delivery per distinct recipient of a message (a duplicate filter).
 *
 * A client may name one recipient many times: 1000 x RCPT TO:<alice@...> with a 50 MB body would
 * write 50 GB into one mailbox. When the session builds the envelope at COMMIT, rcpt_dedup_apply
 * drops the repeats in place, as Postfix's duplicate filter does: the first occurrence of each
 * recipient stays, with its DSN parameters (NOTIFY, ORCPT), and the first occurrences keep their
 * order. Two recipients are the same when their domains are equal ignoring ASCII case and one
 * trailing dot, and their local parts are equal: ignoring ASCII case in a local domain (the
 * mailbox lookup does, conf/policy.h policy_mailbox_name), octet for octet in any other (RFC 5321
 * 2.4: only the destination may interpret a local part). <postmaster> without a domain is local.
 *
 * An open-addressing hash set of RCPT_DEDUP_SLOTS entries, emptied in O(1) by a generation
 * stamp: O(n) per message for n <= SMTP_RCPT_COUNT_MAX recipients, nothing allocated. Owned by
 * one shard (its SMTP sessions share one set; a call leaves nothing behind for the next). */
#ifndef RINGMTA_ENGINE_RCPT_DEDUP_H
#define RINGMTA_ENGINE_RCPT_DEDUP_H
#include <stdint.h>

#include "conf/policy.h"
#include "proto/smtp_server.h"
#include "queue/record.h"

#define RCPT_DEDUP_SLOTS 2048u   /* a power of two, at least twice SMTP_RCPT_COUNT_MAX */
_Static_assert((RCPT_DEDUP_SLOTS & (RCPT_DEDUP_SLOTS - 1)) == 0, "slots: a power of two");
_Static_assert(RCPT_DEDUP_SLOTS >= 2u * SMTP_RCPT_COUNT_MAX, "the set is never over half full");
_Static_assert(SMTP_RCPT_COUNT_MAX <= UINT16_MAX, "a recipient index fits a slot");

struct rcpt_dedup {
	/* private: use the functions */
	uint32_t gen;                         /* the current call's stamp; 0 is never used */
	uint32_t stamp[RCPT_DEDUP_SLOTS];     /* a slot is in use when its stamp is gen */
	uint16_t index[RCPT_DEDUP_SLOTS];     /* then: the position of a kept recipient */
};

void rcpt_dedup_init(struct rcpt_dedup *set);

/* Drops from rcpts[0..count) every recipient equal to an earlier one (see above), moving the
 * others down in order; returns how many remain (at least 1 when count is). The slices are only
 * compared, never copied. count <= SMTP_RCPT_COUNT_MAX. */
uint32_t rcpt_dedup_apply(struct rcpt_dedup *set, const struct policy *policy,
	struct record_rcpt *rcpts, uint32_t count);
#endif
