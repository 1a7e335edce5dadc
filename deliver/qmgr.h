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

#include "base/hist.h"
#include "base/ring.h"
#include "base/tally.h"

struct config;
struct policy;
struct spool;
struct maildir;
struct outbound;
struct qmgr;

/* Messages being delivered at once per shard. Enough to keep the outbound connections busy
 * (outbound_connection_limit's default is 1000) when each transaction waits on a slow receiver:
 * perf/compare --relay's 50 ms sink was bound by this at 64 (1,200 msgs/s). Each costs a
 * QMGR_BUF_SIZE slot of a slab whose pages are touched only as far as records are read (1 KB
 * messages: a page or two); at worst 64 MiB per shard, for 1024 messages of 64 KiB or more. */
#define QMGR_MSGS_MAX    1024u
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
	struct hist delivery_latency;   /* arrival to delivery, of each delivered recipient */
	uint64_t deferred;
	uint64_t bounced;
	uint64_t expired;
};

/* Start-up: registers its ops and hooks on r. Returns 0 or -ENOMEM. */
int qmgr_init(struct ring *r, const struct qmgr_params *p, struct qmgr **out);

void qmgr_fini(struct qmgr *q);

const struct qmgr_stats *qmgr_stats(const struct qmgr *q);

/* The same outcomes by recipient domain, for the busiest domains (base/tally.h). */
enum qmgr_dest_kind {
	QMGR_DEST_DELIVERED,
	QMGR_DEST_DEFERRED,
	QMGR_DEST_BOUNCED,
	QMGR_DEST_EXPIRED,
};
_Static_assert(QMGR_DEST_EXPIRED < TALLY_KINDS, "a tally kind per outcome");
const struct tally *qmgr_destinations(const struct qmgr *q);
#endif
