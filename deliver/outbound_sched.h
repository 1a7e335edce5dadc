/* deliver/outbound_sched.h - one destination's limits and feedback, I/O-free.
 *
 * The outbound agent (deliver/outbound.h) keeps one struct outbound_sched_dest per destination
 * on the shard that owns it, and asks it before every connection and every transaction. Time is
 * an argument; nothing here does I/O, allocates or reads a clock, so the unit tests drive it
 * directly (tests/unit/outbound_sched_test.c).
 *
 * Limits: at most lim.concurrency connections (open or opening), and fewer while the window is
 * smaller; at most lim.rate transactions per second when a rate is set (a transaction is one
 * message, whatever its recipient count), spaced 1/rate apart; at most a per-shard share of
 * outbound_connection_limit over every destination (the caller passes the shard's count).
 *
 * Feedback (Postfix's, simplified): the window starts at OUTBOUND_SCHED_WINDOW_INITIAL (slow
 * start) and grows by one for every `window` successful deliveries in a row, up to
 * lim.concurrency; each failed session (connection refused or timed out, a 4xx greeting, a 421,
 * a timeout) shrinks it by one, down to 1. When as many sessions in a row have failed as the
 * window allows (the whole cohort), the destination is dead: suspended until `now + retry_ms`,
 * its recipients deferred without connecting (Postfix's dead-destination rule). */
#ifndef RINGMTA_DELIVER_OUTBOUND_SCHED_H
#define RINGMTA_DELIVER_OUTBOUND_SCHED_H
#include <stdbool.h>
#include <stdint.h>

#define OUTBOUND_SCHED_WINDOW_INITIAL 5u   /* Postfix's initial_destination_concurrency */
#define OUTBOUND_SCHED_US_PER_S       1000000u

struct outbound_sched_limits {
	uint32_t concurrency;          /* connections at once, >= 1 */
	uint32_t recipients;           /* recipients per transaction, >= 1 */
	uint32_t reuse;                /* transactions per connection, >= 1 */
	uint32_t rate;                 /* transactions per second, 0: no limit */
};

struct outbound_sched_dest {
	struct outbound_sched_limits lim;
	uint32_t window;               /* connections allowed now: 1 .. lim.concurrency */
	uint32_t credit;               /* successes since the window last grew */
	uint32_t fail_streak;          /* sessions failed in a row */
	uint32_t conns;                /* open or opening */
	uint64_t suspended_until_ms;   /* 0: not suspended */
	uint64_t next_txn_us;          /* rate: the earliest start of the next transaction */
	uint64_t suspensions;          /* for logs and tests */
};

/* A destination with these limits (concurrency, recipients and reuse >= 1). */
void outbound_sched_dest_init(struct outbound_sched_dest *d, const struct outbound_sched_limits *lim);

/* Whether it is suspended at now_ms (a suspension that has run out is lifted here). */
bool outbound_sched_suspended(struct outbound_sched_dest *d, uint64_t now_ms);

/* Whether a new connection may open now: not suspended, under the window, and the shard under
 * its share (shard_conns < shard_limit). */
bool outbound_sched_may_connect(struct outbound_sched_dest *d, uint64_t now_ms,
	uint32_t shard_conns, uint32_t shard_limit);

void outbound_sched_conn_opened(struct outbound_sched_dest *d);
void outbound_sched_conn_closed(struct outbound_sched_dest *d);

/* Milliseconds until a transaction may start (0: now), by the rate. */
uint64_t outbound_sched_txn_wait_ms(const struct outbound_sched_dest *d, uint64_t now_ms);

/* A transaction starts now (takes its place in the rate). */
void outbound_sched_txn_started(struct outbound_sched_dest *d, uint64_t now_ms);

/* A delivery succeeded (a transaction got 2xx after its data). */
void outbound_sched_success(struct outbound_sched_dest *d);

/* A session failed (see the header comment). Returns true when this made the destination dead:
 * suspended until now_ms + retry_ms. */
bool outbound_sched_failure(struct outbound_sched_dest *d, uint64_t now_ms, uint64_t retry_ms);

/* The shard's share of a limit over all shards: limit / shards, the remainder to the first
 * ones; at least 1. */
uint32_t outbound_sched_share(uint32_t limit, uint32_t shards, uint32_t shard);
#endif
