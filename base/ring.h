/* base/ring.h - a shard's io_uring as every module sees it: requests, routed completions, events.
 *
 * One struct ring per shard, owned by the shard's thread (STYLE.md 2). The engine runs the loop;
 * the modules below it (queue, dns, tls, the delivery agents) put their own requests on the ring
 * and get their completions back through the handler they registered at start-up for an op code.
 * The loop never calls a module by name: it routes each completion by the op packed into its
 * user_data (op, slot, generation: a stale completion for a reused slot is recognised by its
 * generation).
 *
 * When a module finishes something another module waits for (the spool made a message durable,
 * the resolver has an answer), it does not call the waiter either: the waiter handed it a
 * user_data, and the module posts an event with that user_data and a result (ring_post). The loop
 * dispatches posted events like kernel completions, in the same turn. Posting cannot fail: room
 * for an event is reserved when the wait begins (ring_post_reserve), which is the moment an
 * out-of-memory can still be answered with a 4xx.
 *
 * Modules with work that batches over a loop turn (group commit, deliveries to start, deadlines)
 * register turn hooks (struct ring_hooks): the loop calls each at the end of every turn, asks it
 * how long it may sleep, and whether it is idle when the shard stops.
 *
 * Registered file slots are handed out in ranges at start-up (ring_files_take), so that no two
 * modules use the same slot. Limits: RING_OPS_MAX op codes, RING_HOOKS_MAX hook sets. */
#ifndef RINGMTA_BASE_RING_H
#define RINGMTA_BASE_RING_H
#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/assert.h"

#define RING_OPS_MAX        32u   /* op codes: user_data keeps 8 bits for it */
#define RING_HOOKS_MAX      16u
#define RING_POSTED_INITIAL 256u  /* posted-event slots; grown when a reservation needs more */
#define RING_SLOT_MAX       0xffffffu
/* Linux's MAX_RW_COUNT (INT_MAX rounded down to a page): a read or write of more is cut short,
 * and a result must fit a CQE's int32. Every request that moves bytes stays at or below it. */
#define RING_RW_MAX         0x7ffff000u

/* A completion: from the kernel, or posted by a module (then flags is 0). */
typedef void (*ring_handler_fn)(void *ctx, const struct io_uring_cqe *cqe);

/* What the loop asks of a module once per turn. Any member may be NULL. */
struct ring_hooks {
	const char *name;
	void (*turn)(void *ctx);               /* end of turn: start what batches over the turn */
	uint64_t (*next_ms)(void *ctx);        /* ms until it needs a turn (UINT64_MAX: never) */
	bool (*idle)(void *ctx);               /* nothing in flight (checked while stopping) */
	void (*stop)(void *ctx);               /* the shard begins to stop */
};

struct ring_posted {
	uint64_t user_data;
	int32_t res;
};

struct ring {
	struct io_uring uring;
	int fd;                      /* for IORING_OP_MSG_RING from other threads */
	uint32_t shard;              /* index of the owning shard */
	uint64_t now_ms;             /* CLOCK_MONOTONIC, read once per loop turn */
	uint64_t now_real_ms;        /* CLOCK_REALTIME, for logs, headers and the durable schedule */
	bool stopping;               /* the shard is stopping: flush, do not start new work */
	/* private: use the functions */
	struct { ring_handler_fn fn; void *ctx; } ops[RING_OPS_MAX];
	uint32_t op_count;
	struct { const struct ring_hooks *h; void *ctx; } hooks[RING_HOOKS_MAX];
	uint32_t hook_count;
	struct ring_posted *posted;  /* events waiting for dispatch, in order */
	uint32_t posted_count;
	uint32_t posted_cap;
	uint32_t posted_reserved;    /* promised to waiters, not posted yet */
	uint32_t files_total;
	uint32_t files_taken;
};

static inline uint64_t
ring_ud(uint8_t op, uint32_t slot, uint32_t gen)
{
	ASSERT(slot <= RING_SLOT_MAX);
	return (uint64_t)op | ((uint64_t)slot << 8) | ((uint64_t)gen << 32);
}

static inline uint8_t ring_ud_op(uint64_t ud) { return (uint8_t)(ud & 0xffu); }
static inline uint32_t ring_ud_slot(uint64_t ud) { return (uint32_t)(ud >> 8) & RING_SLOT_MAX; }
static inline uint32_t ring_ud_gen(uint64_t ud) { return (uint32_t)(ud >> 32); }

/* Op 0 is reserved for completions nobody waits for (failures of CQE_SKIP_SUCCESS requests). */
#define RING_OP_NONE 0u

/* Creates the ring (SINGLE_ISSUER + DEFER_TASKRUN, falling back to COOP_TASKRUN, then to
 * nothing) with `entries` submission slots and `files` registered file slots. Call on the
 * thread that will use it. Returns 0 or -errno. */
int ring_init(struct ring *r, uint32_t shard, uint32_t entries, uint32_t files);

void ring_fini(struct ring *r);

/* Reads both clocks into now_ms and now_real_ms. */
void ring_clock(struct ring *r);

/* Start-up: a new op code whose completions go to fn(ctx, cqe). Never RING_OP_NONE. */
uint8_t ring_op_register(struct ring *r, ring_handler_fn fn, void *ctx);

/* Start-up: calls h's members on ctx every turn (h must outlive the ring). */
void ring_hooks_register(struct ring *r, const struct ring_hooks *h, void *ctx);

/* Start-up: n consecutive registered file slots for the caller alone; returns the first. */
uint32_t ring_files_take(struct ring *r, uint32_t n);

/* An SQE, submitting first if the ring is full. Never NULL. */
struct io_uring_sqe *ring_sqe(struct ring *r);

/* Makes room for n SQEs, so that a linked chain reaches the kernel in one submission. */
void ring_sqe_reserve(struct ring *r, uint32_t n);

/* Promises n future ring_post calls. Returns 0 or -ENOMEM (nothing reserved). */
int ring_post_reserve(struct ring *r, uint32_t n) MUST_USE;

/* Gives back n promises that will not be posted (the wait was cancelled). */
void ring_post_unreserve(struct ring *r, uint32_t n);

/* Posts an event for user_data with result res, using one reserved promise. */
void ring_post(struct ring *r, uint64_t user_data, int32_t res);

/* The loop: routes a completion to its op's handler. */
void ring_dispatch(struct ring *r, const struct io_uring_cqe *cqe);

/* The loop: dispatches posted events until none is left (events may post more). Returns how many
 * were dispatched. */
uint32_t ring_dispatch_posted(struct ring *r);

/* The loop: each module's turn hook, in registration order. */
void ring_turn(struct ring *r);

/* The loop: the smallest next_ms of the modules, at most cap_ms. */
uint64_t ring_next_ms(struct ring *r, uint64_t cap_ms);

/* The loop: every module is idle. */
bool ring_idle(struct ring *r);

/* The loop: sets stopping and tells every module. */
void ring_stop(struct ring *r);
#endif
