/* deliver/qmgr.h - the queue manager: due messages in, each recipient to its agent, results out.
 *
 * Postfix's qmgr in one module per shard. Every loop turn it takes the messages the spool's
 * schedule says are due (spool_take_due), reads the start of each record back through the ring
 * (envelope and the first QMGR_BUF_SIZE octets), and hands each recipient in flight to its
 * delivery agent: local domains to Maildir (deliver/maildir.h); other domains to the outbound
 * agent (deliver/outbound.h), one request per recipient domain of the attempt, holding the
 * envelope, the recipients, the part of the body already read and where the rest is in the
 * spool. Without an outbound agent they are deferred with "no outbound transport".
 *
 * Results come back as posted events. Delivered: a DELIVERED record. A temporary failure:
 * deferred with back-off (a DEFERRED record); past the message's lifetime, expired. A permanent
 * failure or an expiry: bounced. One log line per attempt and recipient (status delivered,
 * deferred, bounced or expired, with the queue id). Owned by one shard; at most QMGR_MSGS_MAX
 * messages are in flight at once, so what waits costs its index entry only. */
#ifndef RINGMTA_DELIVER_QMGR_H
#define RINGMTA_DELIVER_QMGR_H
#include <stdint.h>

#include "base/ring.h"

struct config;
struct policy;
struct spool;
struct maildir;
struct outbound;
struct qmgr;

#define QMGR_MSGS_MAX      64u        /* messages being delivered at once per shard */
#define QMGR_BUF_SIZE   65536u        /* the first part of a record, read at once */
#define QMGR_TAKE_PER_TURN 64u        /* due messages taken per loop turn at most */

struct qmgr_params {
	const struct config *cfg;
	const struct policy *policy;
	struct spool *spool;
	struct maildir *maildir;
	struct outbound *outbound;      /* NULL: remote recipients wait ("no outbound transport") */
};

struct qmgr_stats {
	uint64_t delivered;
	uint64_t deferred;
	uint64_t bounced;
	uint64_t expired;
};

/* Start-up: registers its ops and hooks on r. Returns 0 or -ENOMEM. */
int qmgr_init(struct ring *r, const struct qmgr_params *p, struct qmgr **out);

void qmgr_fini(struct qmgr *q);

const struct qmgr_stats *qmgr_stats(const struct qmgr *q);
#endif
