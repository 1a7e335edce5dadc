/* engine/xshard.c - cross-shard message rings and their MSG_RING wake-up; see xshard.h.
 *
 * When is a wake-up needed? The consumer drains until a pop finds nothing, then (fence) reads
 * the tail once more (xshard_ring_more) before it lets its loop sleep. The producer, after
 * publishing a turn's messages (fence), reads the head (xshard_ring_needs_wake). With both
 * fences sequentially consistent, one of the two sees the other's store:
 *   - if the producer reads a head short of tail_before (the tail before this turn), the
 *     consumer has messages of an earlier turn still to take; when it takes them, its final
 *     fence comes after the producer's, so its last read of the tail sees this turn's messages
 *     and it takes those too. No wake-up is needed.
 *   - otherwise the consumer may have seen the ring empty and gone to sleep: wake it.
 * Earlier turns were covered the same way, so by induction no published message is left
 * without either a wake-up or a consumer that will look again. A failed MSG_RING is owed and
 * sent again after XSHARD_RETRY_MS. */
#include "engine/xshard.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define XSHARD_PUBLISHED_NONE 0u   /* endpoint.published before attach and after detach */

/* Sender side of one (this shard, to) pair. */
struct xshard_out {
	struct xmsg *backlog;       /* backlog_slots messages, a ring of its own */
	uint32_t backlog_head;      /* the oldest */
	uint32_t backlog_count;
	uint32_t tail_before;       /* the pair ring's tail as last published */
	bool dirty;                 /* pushed since the last publish */
	bool wake_owed;
	uint64_t retry_at_ms;       /* of an owed wake-up that could not be sent */
};

struct xshard_endpoint {
	struct xshard *x;
	uint32_t shard;
	struct ring *ring;          /* NULL until attached */
	uint8_t op_wake;            /* this shard's op for wake-ups from senders */
	uint8_t op_sent;            /* this shard's op for its own failed MSG_RINGs */
	/* (fd + 1) << 8 | op_wake, read by the senders' threads; XSHARD_PUBLISHED_NONE: not
	 * attached. One atomic, so that a sender never pairs one ring's fd with another's op. */
	_Alignas(XSHARD_CACHE_LINE) _Atomic uint64_t published;
	_Alignas(XSHARD_CACHE_LINE) struct xshard_out *out;   /* [shard_count] */
	struct {
		xshard_handler_fn fn;
		void *ctx;
	} handlers[XSHARD_TYPES_MAX];
	uint32_t drain_next;        /* the sender the next drain starts with */
	bool more;                  /* the last drain left messages */
	struct xshard_stats stats;
};

struct xshard {
	uint32_t shard_count;
	uint32_t ring_slots;
	uint32_t backlog_slots;
	struct xshard_ring *rings;  /* [from * shard_count + to]; from == to unused */
	struct xmsg *slots;         /* (shard_count - 1) * shard_count rings of ring_slots */
	struct xmsg *backlogs;      /* as many backlogs of backlog_slots */
	struct xshard_out *outs;    /* [from * shard_count + to] */
	struct xshard_endpoint *eps;
};

/* ---- the bare ring ---- */

void
xshard_ring_init(struct xshard_ring *r, struct xmsg *slots, uint32_t slot_count, uint32_t start)
{
	ASSERT(slot_count >= XSHARD_RING_SLOTS_MIN);
	ASSERT(slot_count <= XSHARD_RING_SLOTS_MAX);
	ASSERT((slot_count & (slot_count - 1)) == 0);
	memset(r, 0, sizeof(*r));
	atomic_init(&r->tail, start);
	atomic_init(&r->head, start);
	r->tail_local = start;
	r->head_cache = start;
	r->tail_cache = start;
	r->slots = slots;
	r->mask = slot_count - 1;
}

int
xshard_ring_push(struct xshard_ring *r, const struct xmsg *m)
{
	uint32_t size = r->mask + 1;
	if (r->tail_local - r->head_cache == size) {
		/* Acquire: the consumer's copy out of the slot we are about to reuse is done. */
		r->head_cache = atomic_load_explicit(&r->head, memory_order_acquire);
		if (r->tail_local - r->head_cache == size)
			return -EAGAIN;
	}
	ASSERT(r->tail_local - r->head_cache < size);
	r->slots[r->tail_local & r->mask] = *m;
	r->tail_local++;
	return 0;
}

void
xshard_ring_publish(struct xshard_ring *r)
{
	/* Release: the slots written before are visible to a consumer that sees this tail. */
	atomic_store_explicit(&r->tail, r->tail_local, memory_order_release);
}

uint32_t
xshard_ring_pop(struct xshard_ring *r, struct xmsg *out, uint32_t max)
{
	uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed);   /* ours */
	uint32_t avail = r->tail_cache - head;
	if (avail < max) {   /* the cached tail cannot fill this batch: look for newer ones */
		r->tail_cache = atomic_load_explicit(&r->tail, memory_order_acquire);
		avail = r->tail_cache - head;
	}
	ASSERT(avail <= r->mask + 1);
	uint32_t n = avail < max ? avail : max;
	for (uint32_t i = 0; i < n; i++)
		out[i] = r->slots[(head + i) & r->mask];
	if (n > 0) {
		atomic_store_explicit(&r->head, head + n, memory_order_release);
		r->head_unchecked = true;
	}
	return n;
}

bool
xshard_ring_more(struct xshard_ring *r)
{
	atomic_thread_fence(memory_order_seq_cst);   /* pairs with xshard_ring_needs_wake */
	r->head_unchecked = false;
	uint32_t tail = atomic_load_explicit(&r->tail, memory_order_relaxed);
	return tail != atomic_load_explicit(&r->head, memory_order_relaxed);
}

bool
xshard_ring_needs_wake(struct xshard_ring *r, uint32_t tail_before)
{
	atomic_thread_fence(memory_order_seq_cst);   /* pairs with xshard_ring_more */
	uint32_t head = atomic_load_explicit(&r->head, memory_order_relaxed);
	r->head_cache = head;
	/* head < tail_before (in wrapping order): older messages are still to be taken. */
	return (int32_t)(tail_before - head) <= 0;
}

/* ---- set-up ---- */

static struct xshard_ring *
xshard_pair(struct xshard *x, uint32_t from, uint32_t to)
{
	ASSERT(from < x->shard_count);
	ASSERT(to < x->shard_count);
	ASSERT(from != to);
	return &x->rings[from * x->shard_count + to];
}

static bool
xshard_config_valid(const struct xshard_config *cfg)
{
	return cfg->shard_count >= 1 && cfg->shard_count <= XSHARD_SHARDS_MAX
		&& cfg->ring_slots >= XSHARD_RING_SLOTS_MIN
		&& cfg->ring_slots <= XSHARD_RING_SLOTS_MAX
		&& (cfg->ring_slots & (cfg->ring_slots - 1)) == 0
		&& cfg->backlog_slots >= XSHARD_BACKLOG_MIN
		&& cfg->backlog_slots <= XSHARD_BACKLOG_MAX;
}

/* Points every off-diagonal pair at its slots and backlog (pair k in from-major order). */
static void
xshard_wire(struct xshard *x)
{
	uint32_t n = x->shard_count;
	size_t k = 0;
	for (uint32_t from = 0; from < n; from++) {
		x->eps[from].x = x;
		x->eps[from].shard = from;
		x->eps[from].out = &x->outs[from * n];
		atomic_init(&x->eps[from].published, XSHARD_PUBLISHED_NONE);
		for (uint32_t to = 0; to < n; to++) {
			if (to == from)
				continue;
			xshard_ring_init(xshard_pair(x, from, to), x->slots + k * x->ring_slots,
				x->ring_slots, 0);
			x->outs[from * n + to].backlog = x->backlogs + k * x->backlog_slots;
			k++;
		}
	}
}

int
xshard_create(const struct xshard_config *cfg, struct xshard **out)
{
	if (!xshard_config_valid(cfg))
		return -EINVAL;
	uint32_t n = cfg->shard_count;
	size_t pairs = (size_t)n * (n - 1);
	struct xshard *x = calloc(1, sizeof(*x));
	if (x == NULL)
		return -ENOMEM;
	x->shard_count = n;
	x->ring_slots = cfg->ring_slots;
	x->backlog_slots = cfg->backlog_slots;
	size_t ring_bytes = (size_t)n * n * sizeof(struct xshard_ring);
	size_t ep_bytes = (size_t)n * sizeof(struct xshard_endpoint);
	/* aligned_alloc wants a multiple of the alignment; both structs are whole lines. */
	_Static_assert(sizeof(struct xshard_ring) % XSHARD_CACHE_LINE == 0, "ring is whole lines");
	_Static_assert(sizeof(struct xshard_endpoint) % XSHARD_CACHE_LINE == 0, "whole lines");
	x->rings = aligned_alloc(XSHARD_CACHE_LINE, ring_bytes);
	x->eps = aligned_alloc(XSHARD_CACHE_LINE, ep_bytes);
	/* Large and zeroed: the pages are backed only when a message first reaches them. */
	x->slots = calloc(pairs > 0 ? pairs * cfg->ring_slots : 1, sizeof(struct xmsg));
	x->backlogs = calloc(pairs > 0 ? pairs * cfg->backlog_slots : 1, sizeof(struct xmsg));
	x->outs = calloc((size_t)n * n, sizeof(struct xshard_out));
	if (x->rings == NULL || x->eps == NULL || x->slots == NULL || x->backlogs == NULL
			|| x->outs == NULL) {
		xshard_destroy(x);
		return -ENOMEM;
	}
	memset(x->rings, 0, ring_bytes);
	memset(x->eps, 0, ep_bytes);
	xshard_wire(x);
	*out = x;
	return 0;
}

void
xshard_destroy(struct xshard *x)
{
	if (x == NULL)
		return;
	free(x->rings);
	free(x->eps);
	free(x->slots);
	free(x->backlogs);
	free(x->outs);
	free(x);
}

struct xshard_endpoint *
xshard_endpoint(struct xshard *x, uint32_t shard)
{
	ASSERT(shard < x->shard_count);
	return &x->eps[shard];
}

void
xshard_handler_set(struct xshard_endpoint *ep, uint16_t type, xshard_handler_fn fn, void *ctx)
{
	ASSERT(type != XMSG_NONE);
	ASSERT(type < XSHARD_TYPES_MAX);
	ASSERT(fn != NULL);
	ep->handlers[type].fn = fn;
	ep->handlers[type].ctx = ctx;
}

const struct xshard_stats *
xshard_stats(const struct xshard_endpoint *ep)
{
	return &ep->stats;
}

/* ---- sending ---- */

int
xshard_send(struct xshard_endpoint *ep, uint32_t to, const struct xmsg *m)
{
	struct xshard *x = ep->x;
	ASSERT(m->type != XMSG_NONE);
	ASSERT(m->type < XSHARD_TYPES_MAX);
	struct xshard_ring *r = xshard_pair(x, ep->shard, to);
	struct xshard_out *o = &ep->out[to];
	struct xmsg copy = *m;
	copy.from_shard = (uint16_t)ep->shard;
	if (o->backlog_count == 0 && xshard_ring_push(r, &copy) == 0) {
		o->dirty = true;
		ep->stats.sent++;
		return 0;
	}
	if (o->backlog_count == x->backlog_slots) {
		ep->stats.refused++;
		return -EAGAIN;
	}
	/* Behind whatever waits already, so the pair's order holds. */
	o->backlog[(o->backlog_head + o->backlog_count) % x->backlog_slots] = copy;
	o->backlog_count++;
	ep->stats.sent++;
	ep->stats.backlogged++;
	ep->stats.backlog_now++;
	return 0;
}

uint32_t
xshard_room(const struct xshard_endpoint *ep, uint32_t to)
{
	struct xshard *x = ep->x;
	const struct xshard_out *o = &ep->out[to];
	const struct xshard_ring *r = xshard_pair(x, ep->shard, to);
	uint32_t backlog_free = x->backlog_slots - o->backlog_count;
	if (o->backlog_count > 0)
		return backlog_free;
	/* head_cache may be stale (older, so fewer free slots): a lower bound. */
	return (r->mask + 1) - (r->tail_local - r->head_cache) + backlog_free;
}

static void
xshard_backlog_move(struct xshard_endpoint *ep, uint32_t to)
{
	struct xshard *x = ep->x;
	struct xshard_out *o = &ep->out[to];
	struct xshard_ring *r = xshard_pair(x, ep->shard, to);
	while (o->backlog_count > 0 && xshard_ring_push(r, &o->backlog[o->backlog_head]) == 0) {
		o->backlog_head = (o->backlog_head + 1) % x->backlog_slots;
		o->backlog_count--;
		ep->stats.backlog_now--;
		o->dirty = true;
	}
}

/* One MSG_RING to `to`'s ring: a CQE there with user_data (its op_wake, our shard). Success
 * posts nothing here (CQE_SKIP_SUCCESS); a failure comes back to op_sent. */
static void
xshard_wake(struct xshard_endpoint *ep, uint32_t to)
{
	struct xshard_out *o = &ep->out[to];
	uint64_t pub = atomic_load_explicit(&ep->x->eps[to].published, memory_order_acquire);
	if (pub == XSHARD_PUBLISHED_NONE) {
		o->retry_at_ms = ep->ring->now_ms + XSHARD_RETRY_MS;   /* not attached yet */
		return;
	}
	int fd = (int)(pub >> 8) - 1;
	uint8_t op = (uint8_t)(pub & 0xffu);
	struct io_uring_sqe *sqe = ring_sqe(ep->ring);
	io_uring_prep_msg_ring(sqe, fd, 0, ring_ud(op, ep->shard, 0), 0);
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	io_uring_sqe_set_data64(sqe, ring_ud(ep->op_sent, to, 0));
	o->wake_owed = false;
	ep->stats.wakes_sent++;
}

/* End of turn, per destination: backlog into the ring, publish, wake if needed. */
static void
xshard_flush(struct xshard_endpoint *ep, uint32_t to)
{
	struct xshard_out *o = &ep->out[to];
	struct xshard_ring *r = xshard_pair(ep->x, ep->shard, to);
	if (o->backlog_count > 0)
		xshard_backlog_move(ep, to);
	if (o->dirty) {
		xshard_ring_publish(r);
		if (xshard_ring_needs_wake(r, o->tail_before))
			o->wake_owed = true;
		else
			ep->stats.wakes_skipped++;
		o->tail_before = r->tail_local;
		o->dirty = false;
	}
	if (o->wake_owed && ep->ring->now_ms >= o->retry_at_ms)
		xshard_wake(ep, to);
}

static void
xshard_sent_done(void *ctx, const struct io_uring_cqe *cqe)
{
	struct xshard_endpoint *ep = ctx;
	uint32_t to = ring_ud_slot(cqe->user_data);
	if (cqe->res >= 0 || to >= ep->x->shard_count || to == ep->shard)
		return;
	/* -EBADFD, -EOVERFLOW, ...: the receiver may be asleep with our messages. */
	ep->out[to].wake_owed = true;
	ep->out[to].retry_at_ms = ep->ring->now_ms + XSHARD_RETRY_MS;
	ep->stats.wake_failures++;
}

/* ---- receiving ---- */

static void
xshard_wake_done(void *ctx, const struct io_uring_cqe *cqe)
{
	struct xshard_endpoint *ep = ctx;
	(void)cqe;   /* the drain in this turn's hook takes the messages */
	ep->stats.wakes_received++;
}

static void
xshard_dispatch(struct xshard_endpoint *ep, uint32_t from, const struct xmsg *m)
{
	ASSERT(m->from_shard == from);
	ASSERT(m->type < XSHARD_TYPES_MAX);
	ASSERT(ep->handlers[m->type].fn != NULL);
	ep->handlers[m->type].fn(ep->handlers[m->type].ctx, m);
	ep->stats.received++;
}

/* Takes up to *budget messages from one sender's ring; returns whether it left any. The fenced
 * look (xshard_ring_more) is needed only if the head moved since the last one: otherwise that
 * look already covered this empty ring, and a producer publishing after it sees a head that
 * calls for a wake-up. */
static bool
xshard_drain_one(struct xshard_endpoint *ep, uint32_t from, uint32_t *budget)
{
	struct xshard_ring *r = xshard_pair(ep->x, from, ep->shard);
	struct xmsg batch[XSHARD_POP_BATCH];
	while (*budget > 0) {
		uint32_t want = *budget < XSHARD_POP_BATCH ? *budget : XSHARD_POP_BATCH;
		uint32_t got = xshard_ring_pop(r, batch, want);
		for (uint32_t i = 0; i < got; i++)
			xshard_dispatch(ep, from, &batch[i]);
		*budget -= got;
		if (got < want && (!r->head_unchecked || !xshard_ring_more(r)))
			return false;
	}
	return true;   /* the budget ran out: there may be more */
}

static void
xshard_drain(struct xshard_endpoint *ep)
{
	uint32_t n = ep->x->shard_count;
	uint32_t budget = XSHARD_DRAIN_BUDGET;
	ep->more = false;
	for (uint32_t k = 0; k < n; k++) {
		uint32_t from = (ep->drain_next + k) % n;
		if (from == ep->shard)
			continue;
		if (xshard_drain_one(ep, from, &budget)) {
			ep->more = true;
			ep->stats.budget_cuts++;
			break;
		}
	}
	ep->drain_next = (ep->drain_next + 1) % n;   /* a different sender goes first next turn */
}

/* ---- the turn hook ---- */

static void
xshard_turn(void *ctx)
{
	struct xshard_endpoint *ep = ctx;
	xshard_drain(ep);   /* first: handlers may answer, and the answers go out below */
	for (uint32_t to = 0; to < ep->x->shard_count; to++) {
		if (to != ep->shard)
			xshard_flush(ep, to);
	}
}

static uint64_t
xshard_next_ms(void *ctx)
{
	struct xshard_endpoint *ep = ctx;
	if (ep->more)
		return 0;
	uint64_t ms = UINT64_MAX;
	for (uint32_t to = 0; to < ep->x->shard_count; to++) {
		const struct xshard_out *o = &ep->out[to];
		if (o->backlog_count > 0 && XSHARD_RETRY_MS < ms)
			ms = XSHARD_RETRY_MS;   /* a full ring: look again soon, do not spin */
		if (o->wake_owed) {
			uint64_t now = ep->ring->now_ms;
			uint64_t t = o->retry_at_ms > now ? o->retry_at_ms - now : 0;
			if (t < ms)
				ms = t;
		}
	}
	return ms;
}

static const struct ring_hooks xshard_hooks = {
	.name = "xshard",
	.turn = xshard_turn,
	.next_ms = xshard_next_ms,
	/* No idle: what is between shards at a stop is in the spool (see xshard.h). */
};

void
xshard_attach(struct xshard_endpoint *ep, struct ring *r)
{
	ASSERT(ep->ring == NULL);
	ASSERT(r->shard == ep->shard);
	ASSERT(r->fd >= 0);
	ep->ring = r;
	ep->op_wake = ring_op_register(r, xshard_wake_done, ep);
	ep->op_sent = ring_op_register(r, xshard_sent_done, ep);
	ring_hooks_register(r, &xshard_hooks, ep);
	uint64_t pub = ((uint64_t)(uint32_t)(r->fd + 1) << 8) | ep->op_wake;
	atomic_store_explicit(&ep->published, pub, memory_order_release);
}

void
xshard_detach(struct xshard_endpoint *ep)
{
	atomic_store_explicit(&ep->published, XSHARD_PUBLISHED_NONE, memory_order_release);
	ep->ring = NULL;   /* its ops and hook die with it; xshard_attach may follow on a new one */
}
