/* engine/xshard.h - cross-shard messages: one bounded single-producer ring per (from, to) pair.
 *
 * Shards share nothing but the frozen configuration (STYLE.md 2); when one must tell another
 * something (hand over a destination's recipients, say "done with it"), it copies a fixed-size
 * struct xmsg into the ring of that (from, to) pair and the receiver is woken with one
 * IORING_OP_MSG_RING on its ring. Bodies stay in the sender's spool; a message names a queue id.
 *
 * Set-up: before the shard threads run, the engine creates one struct xshard for all shards
 * (xshard_create: every ring and backlog is allocated here, nothing later) and hands each shard
 * its endpoint (xshard_endpoint). Each shard thread, after ring_init, calls xshard_attach: it
 * registers the wake-up op and a turn hook on the shard's ring and publishes the ring fd to the
 * senders. Modules register a handler per message type (xshard_handler_set) before the loop runs.
 * Messages sent to a shard that has not attached yet wait in the ring; the wake-up is owed and
 * sent once it has.
 *
 * Sending (the sender's thread only): xshard_send copies the message into the pair ring, or,
 * when that is full, into the sender's bounded local backlog for that destination (order is
 * kept: once there is a backlog everything goes behind it). Only when the backlog is full too does
 * it return -EAGAIN: the caller keeps the message and offers it again on a later turn. Nothing
 * blocks and nothing is dropped. The end-of-turn hook moves backlogs into the rings, publishes
 * the turn's messages (one release store of the tail per pair) and wakes each receiver at most
 * once per turn, and only when needed: not when the receiver has not yet taken the messages of
 * an earlier turn, because then its drain will see these too (see xshard.c for the argument).
 *
 * Receiving (the receiver's thread only): the same turn hook drains the inbound rings round-robin
 * with a budget of XSHARD_DRAIN_BUDGET messages per turn, calling the handler of each message's
 * type; a drain cut by the budget makes the hook ask for another turn at once (next_ms 0). The
 * MSG_RING completion itself only ends the receiver's wait; the drain follows in the same turn.
 * A handler may send (an answer goes out at the end of the same turn); like any sender it must
 * keep what xshard_send refuses, or look at xshard_room first. A module holding refused
 * messages asks for its own next turn (its next_ms hook): xshard does not call it back.
 *
 * Concurrency: the only shared writes are each ring's head (by its consumer) and tail (by its
 * producer), atomics with acquire/release order, each on its own cache line; one sequentially
 * consistent fence on each side makes the "is a wake-up needed" decision safe. Everything else
 * in an endpoint belongs to its shard's thread.
 *
 * Stopping: the hook does not hold a stopping shard up (a message between shards describes
 * state the spool holds durably, and recovery rebuilds it); xshard_stats says what was left.
 * Stop every shard's loop and join the threads before xshard_destroy; xshard_detach (on the
 * shard's thread, before ring_fini) stops new wake-ups to that shard.
 *
 * Limits: XSHARD_SHARDS_MAX shards, XSHARD_TYPES_MAX message types, rings of XSHARD_RING_SLOTS_MIN
 * to XSHARD_RING_SLOTS_MAX messages (a power of two), backlogs of XSHARD_BACKLOG_MIN to
 * XSHARD_BACKLOG_MAX messages per destination. */
#ifndef RINGMTA_ENGINE_XSHARD_H
#define RINGMTA_ENGINE_XSHARD_H
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/assert.h"
#include "base/queue_id.h"
#include "base/ring.h"

#define XSHARD_SHARDS_MAX         QUEUE_ID_SHARD_MAX   /* a queue id names at most this many */
#define XSHARD_TYPES_MAX          16u
#define XSHARD_RING_SLOTS_MIN     2u
#define XSHARD_RING_SLOTS_DEFAULT 1024u     /* 32 KiB per pair */
#define XSHARD_RING_SLOTS_MAX     65536u
#define XSHARD_BACKLOG_MIN        1u
#define XSHARD_BACKLOG_DEFAULT    4096u     /* per destination, on top of the ring */
#define XSHARD_BACKLOG_MAX        (1u << 20)
#define XSHARD_DRAIN_BUDGET       1024u     /* messages handled per turn, all senders together */
#define XSHARD_POP_BATCH          64u       /* messages taken from a ring per head update */
#define XSHARD_RETRY_MS           1u        /* a full ring or a failed wake-up is retried after */
#define XSHARD_CACHE_LINE         64u

_Static_assert(XSHARD_SHARDS_MAX <= RING_SLOT_MAX, "a shard index fits a user_data slot");
_Static_assert((XSHARD_RING_SLOTS_MAX & (XSHARD_RING_SLOTS_MAX - 1)) == 0, "power of two");
_Static_assert(XSHARD_RING_SLOTS_MAX <= (1u << 31), "free-running u32 indices stay comparable");
_Static_assert(XSHARD_POP_BATCH <= XSHARD_DRAIN_BUDGET, "a batch fits the budget");

enum xmsg_type {
	XMSG_NONE = 0,              /* never sent */
	XMSG_DELIVER = 1,           /* deliver queue_id's recipients for dest_hash */
	XMSG_DELIVERY_RESULT,       /* the outcome, back to the owner of queue_id */
	XMSG_SHUTDOWN,
	XMSG_REVIVE,                /* `ringmta queue flush`: suspended destinations are tried */
};

struct xmsg {                   /* copied by value; two per cache line */
	uint16_t type;              /* enum xmsg_type, < XSHARD_TYPES_MAX */
	uint16_t from_shard;        /* set by xshard_send */
	uint32_t attempt;           /* type-specific: attempt number, result code */
	uint64_t queue_id;          /* the message itself stays in from_shard's spool */
	uint64_t dest_hash;         /* which shard owns the destination */
	uint64_t arg;               /* type-specific */
};
_Static_assert(sizeof(struct xmsg) == 32, "xmsg layout");
_Static_assert(XSHARD_CACHE_LINE % sizeof(struct xmsg) == 0, "whole messages per cache line");

/* Called on the receiver's thread for each message of a type; m is valid during the call. */
typedef void (*xshard_handler_fn)(void *ctx, const struct xmsg *m);

struct xshard_config {
	uint32_t shard_count;       /* 1 .. XSHARD_SHARDS_MAX */
	uint32_t ring_slots;        /* power of two, XSHARD_RING_SLOTS_MIN .. _MAX */
	uint32_t backlog_slots;     /* XSHARD_BACKLOG_MIN .. _MAX */
};

/* What an endpoint did; read on its own thread (or after the threads are joined). */
struct xshard_stats {
	uint64_t sent;              /* accepted by xshard_send (ring or backlog) */
	uint64_t backlogged;        /* of those, went to the backlog: the ring was full */
	uint64_t refused;           /* -EAGAIN: ring and backlog full */
	uint64_t received;          /* handled */
	uint64_t wakes_sent;        /* MSG_RING submitted */
	uint64_t wakes_skipped;     /* a turn's messages needed no wake-up */
	uint64_t wake_failures;     /* MSG_RING completed with an error: retried */
	uint64_t wakes_received;
	uint64_t budget_cuts;       /* drains stopped by XSHARD_DRAIN_BUDGET */
	uint64_t backlog_now;       /* messages in this endpoint's backlogs now */
};

/* The bare pair ring, shown for the unit tests; the engine uses the endpoint functions. */
struct xshard_ring {
	/* private: use the functions */
	_Alignas(XSHARD_CACHE_LINE) _Atomic uint32_t tail;   /* written by the producer */
	uint32_t tail_local;        /* producer: pushed, not yet published */
	uint32_t head_cache;        /* producer: the last head it read */
	_Alignas(XSHARD_CACHE_LINE) _Atomic uint32_t head;   /* written by the consumer */
	uint32_t tail_cache;        /* consumer: the last tail it read */
	bool head_unchecked;        /* consumer: head moved since the last xshard_ring_more */
	_Alignas(XSHARD_CACHE_LINE) struct xmsg *slots;      /* read-only after init */
	uint32_t mask;
};

/* Sets r up over slots[slot_count] (a power of two >= XSHARD_RING_SLOTS_MIN) with both
 * indices at start (any value: the tests start near UINT32_MAX to cross the wrap). */
void xshard_ring_init(struct xshard_ring *r, struct xmsg *slots, uint32_t slot_count,
	uint32_t start);

/* Producer: copies m into the next slot, unpublished. Returns 0 or -EAGAIN (full). */
int xshard_ring_push(struct xshard_ring *r, const struct xmsg *m) MUST_USE;

/* Producer: makes every pushed message visible to the consumer (release). */
void xshard_ring_publish(struct xshard_ring *r);

/* Consumer: copies up to max published messages to out, oldest first, and frees their slots.
 * Returns how many. */
uint32_t xshard_ring_pop(struct xshard_ring *r, struct xmsg *out, uint32_t max);

/* Consumer: after a pop that left nothing, whether a message was published since (fenced
 * against the producer's xshard_ring_needs_wake). */
bool xshard_ring_more(struct xshard_ring *r);

/* Producer, right after publishing: whether the consumer may have found the ring empty and
 * stopped looking, given that before this turn's messages the tail stood at tail_before. */
bool xshard_ring_needs_wake(struct xshard_ring *r, uint32_t tail_before);

struct xshard;                  /* opaque: every ring, backlog and endpoint */
struct xshard_endpoint;         /* one shard's side */

/* Start-up: allocates everything for cfg. Returns 0, -EINVAL (cfg out of range) or -ENOMEM. */
int xshard_create(const struct xshard_config *cfg, struct xshard **out) MUST_USE;

/* After every shard thread has stopped. */
void xshard_destroy(struct xshard *x);

/* Shard `shard`'s endpoint (shard < shard_count). */
struct xshard_endpoint *xshard_endpoint(struct xshard *x, uint32_t shard);

/* On the shard's thread, after ring_init (r->shard must be the endpoint's shard): registers the
 * wake-up op, the failed-wake op and the turn hook on r, then publishes r's fd to the senders. */
void xshard_attach(struct xshard_endpoint *ep, struct ring *r);

/* On the shard's thread, before ring_fini: senders stop waking this shard. */
void xshard_detach(struct xshard_endpoint *ep);

/* Start-up, on the shard's thread: messages of `type` go to fn(ctx, m). A message of a type
 * without a handler is a programmer error. */
void xshard_handler_set(struct xshard_endpoint *ep, uint16_t type, xshard_handler_fn fn,
	void *ctx);

/* Sends a copy of *m (its from_shard is set here) to shard `to` (not the sender itself).
 * Returns 0 (in the ring or the backlog: it will arrive, in order) or -EAGAIN (both full:
 * nothing was taken; offer it again on a later turn). */
int xshard_send(struct xshard_endpoint *ep, uint32_t to, const struct xmsg *m) MUST_USE;

/* How many messages xshard_send would accept for `to` now. */
uint32_t xshard_room(const struct xshard_endpoint *ep, uint32_t to);

const struct xshard_stats *xshard_stats(const struct xshard_endpoint *ep);
#endif
