/* base/ring.c - the shard's ring: op routing, posted events, turn hooks; see ring.h. */
#include "base/ring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t
ring_clock_ms(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void
ring_clock(struct ring *r)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	r->now_us = (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
	r->now_ms = r->now_us / 1000u;
	r->now_real_ms = ring_clock_ms(CLOCK_REALTIME);
}

/* DEFER_TASKRUN (6.1) runs completions only when this thread asks: fewer wake-ups. Older
 * kernels get COOP_TASKRUN, then nothing. */
int
ring_init(struct ring *r, uint32_t shard, uint32_t entries, uint32_t files)
{
	static const unsigned flag_sets[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN,
		0,
	};
	memset(r, 0, sizeof(*r));
	r->shard = shard;
	r->op_count = 1;   /* RING_OP_NONE */
	int rc = -EINVAL;
	for (uint32_t i = 0; i < ARRAY_LEN(flag_sets) && rc == -EINVAL; i++) {
		struct io_uring_params p;
		memset(&p, 0, sizeof(p));
		p.flags = flag_sets[i] | IORING_SETUP_CQSIZE;
		p.cq_entries = entries * 4;
		rc = io_uring_queue_init_params(entries, &r->uring, &p);
	}
	if (rc < 0)
		return rc;
	r->fd = r->uring.ring_fd;
	r->posted = malloc(RING_POSTED_INITIAL * sizeof(*r->posted));
	if (r->posted == NULL) {
		io_uring_queue_exit(&r->uring);
		return -ENOMEM;
	}
	r->posted_cap = RING_POSTED_INITIAL;
	if (files > 0) {
		rc = io_uring_register_files_sparse(&r->uring, files);
		if (rc < 0) {
			ring_fini(r);
			return rc;
		}
	}
	r->files_total = files;
	ring_clock(r);
	return 0;
}

void
ring_fini(struct ring *r)
{
	io_uring_queue_exit(&r->uring);
	free(r->posted);
	r->posted = NULL;
}

uint8_t
ring_op_register(struct ring *r, ring_handler_fn fn, void *ctx)
{
	ASSERT(fn != NULL);
	ASSERT(r->op_count < RING_OPS_MAX);
	uint32_t op = r->op_count++;
	r->ops[op].fn = fn;
	r->ops[op].ctx = ctx;
	return (uint8_t)op;
}

void
ring_hooks_register(struct ring *r, const struct ring_hooks *h, void *ctx)
{
	ASSERT(h != NULL);
	ASSERT(r->hook_count < RING_HOOKS_MAX);
	r->hooks[r->hook_count].h = h;
	r->hooks[r->hook_count].ctx = ctx;
	r->hook_count++;
}

uint32_t
ring_files_take(struct ring *r, uint32_t n)
{
	ASSERT(n <= r->files_total - r->files_taken);
	uint32_t first = r->files_taken;
	r->files_taken += n;
	return first;
}

struct io_uring_sqe *
ring_sqe(struct ring *r)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&r->uring);
	while (sqe == NULL) {
		(void)io_uring_submit(&r->uring);
		sqe = io_uring_get_sqe(&r->uring);
	}
	return sqe;
}

void
ring_sqe_reserve(struct ring *r, uint32_t n)
{
	ASSERT(n <= r->uring.sq.ring_entries);
	if (io_uring_sq_space_left(&r->uring) < n)
		(void)io_uring_submit(&r->uring);
}

int
ring_post_reserve(struct ring *r, uint32_t n)
{
	uint64_t need = (uint64_t)r->posted_count + r->posted_reserved + n;
	if (need > UINT32_MAX / 2)
		return -ENOMEM;
	if (need > r->posted_cap) {
		uint32_t cap = r->posted_cap;
		while (cap < need)
			cap *= 2;
		struct ring_posted *grown = realloc(r->posted, (size_t)cap * sizeof(*grown));
		if (grown == NULL)
			return -ENOMEM;
		r->posted = grown;
		r->posted_cap = cap;
	}
	r->posted_reserved += n;
	return 0;
}

void
ring_post_unreserve(struct ring *r, uint32_t n)
{
	ASSERT(n <= r->posted_reserved);
	r->posted_reserved -= n;
}

void
ring_post(struct ring *r, uint64_t user_data, int32_t res)
{
	ASSERT(r->posted_reserved > 0);
	ASSERT(r->posted_count < r->posted_cap);
	r->posted_reserved--;
	r->posted[r->posted_count++] = (struct ring_posted){ .user_data = user_data, .res = res };
}

void
ring_dispatch(struct ring *r, const struct io_uring_cqe *cqe)
{
	uint8_t op = ring_ud_op(cqe->user_data);
	if (op == RING_OP_NONE || op >= r->op_count)
		return;
	r->ops[op].fn(r->ops[op].ctx, cqe);
}

uint32_t
ring_dispatch_posted(struct ring *r)
{
	uint32_t done = 0;
	/* A handler may post (and reserve, which may move the array): copy each event out first. */
	while (done < r->posted_count) {
		struct io_uring_cqe cqe;
		memset(&cqe, 0, sizeof(cqe));
		cqe.user_data = r->posted[done].user_data;
		cqe.res = r->posted[done].res;
		done++;
		ring_dispatch(r, &cqe);
	}
	r->posted_count = 0;
	return done;
}

void
ring_turn(struct ring *r)
{
	for (uint32_t i = 0; i < r->hook_count; i++) {
		if (r->hooks[i].h->turn != NULL)
			r->hooks[i].h->turn(r->hooks[i].ctx);
	}
}

uint64_t
ring_next_ms(struct ring *r, uint64_t cap_ms)
{
	uint64_t ms = cap_ms;
	for (uint32_t i = 0; i < r->hook_count; i++) {
		if (r->hooks[i].h->next_ms == NULL)
			continue;
		uint64_t t = r->hooks[i].h->next_ms(r->hooks[i].ctx);
		if (t < ms)
			ms = t;
	}
	return ms;
}

bool
ring_idle(struct ring *r)
{
	for (uint32_t i = 0; i < r->hook_count; i++) {
		if (r->hooks[i].h->idle != NULL && !r->hooks[i].h->idle(r->hooks[i].ctx))
			return false;
	}
	return true;
}

void
ring_stop(struct ring *r)
{
	if (r->stopping)
		return;
	r->stopping = true;
	for (uint32_t i = 0; i < r->hook_count; i++) {
		if (r->hooks[i].h->stop != NULL)
			r->hooks[i].h->stop(r->hooks[i].ctx);
	}
}
