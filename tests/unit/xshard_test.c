/* tests/unit/xshard_test.c - cross-shard rings: order, back-off, wrap-around, MSG_RING wake-ups
 * on real io_urings, and a multi-thread stress test with sequence numbers. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/xshard.h"

#define TEST_RING_ENTRIES 256u
#define TEST_WAIT_MS      1000u   /* a wake-up that has not arrived by then never will */
#define TEST_QUIET_MS       50u   /* no further completion within this: none is coming */
#define TEST_RECV_MAX    20000u
#define PAYLOAD_MAGIC    0x5eedf00dcafe0000ull

/* One shard as the tests drive it: a real ring, an endpoint, what it received. */
struct peer {
	struct ring ring;
	struct xshard_endpoint *ep;
	struct xmsg got[TEST_RECV_MAX];
	uint32_t got_count;
	uint32_t cqes;           /* completions dispatched */
	struct xshard *reply_to; /* if set, each XMSG_DELIVER is answered with a RESULT */
};

static void
record(void *ctx, const struct xmsg *m)
{
	struct peer *p = ctx;
	cr_assert(p->got_count < TEST_RECV_MAX);
	p->got[p->got_count++] = *m;
	if (p->reply_to != NULL && m->type == XMSG_DELIVER) {
		struct xmsg r = { .type = XMSG_DELIVERY_RESULT, .queue_id = m->queue_id };
		cr_assert_eq(xshard_send(p->ep, m->from_shard, &r), 0);
	}
}

static void
peer_up(struct peer *p, struct xshard *x, uint32_t shard)
{
	memset(p, 0, sizeof(*p));
	cr_assert_eq(ring_init(&p->ring, shard, TEST_RING_ENTRIES, 0), 0);
	p->ep = xshard_endpoint(x, shard);
	xshard_attach(p->ep, &p->ring);
	xshard_handler_set(p->ep, XMSG_DELIVER, record, p);
	xshard_handler_set(p->ep, XMSG_DELIVERY_RESULT, record, p);
}

static void
peer_down(struct peer *p)
{
	xshard_detach(p->ep);
	ring_fini(&p->ring);
}

/* One loop turn as the engine runs it: wait up to wait_ms for a completion (0: only look),
 * dispatch what came, run the turn hooks, submit what they queued. Returns completions seen. */
static uint32_t
turn(struct peer *p, uint32_t wait_ms)
{
	struct io_uring_cqe *cqe;
	(void)io_uring_submit(&p->ring.uring);
	if (wait_ms > 0) {
		struct __kernel_timespec ts = { .tv_sec = wait_ms / 1000,
			.tv_nsec = (long)(wait_ms % 1000) * 1000000L };
		(void)io_uring_wait_cqe_timeout(&p->ring.uring, &cqe, &ts);
	}
	ring_clock(&p->ring);
	uint32_t seen = 0;
	unsigned head;
	io_uring_for_each_cqe(&p->ring.uring, head, cqe) {
		ring_dispatch(&p->ring, cqe);
		seen++;
	}
	io_uring_cq_advance(&p->ring.uring, seen);
	p->cqes += seen;
	ring_turn(&p->ring);
	(void)io_uring_submit(&p->ring.uring);
	return seen;
}

static struct xmsg
msg(uint64_t seq)
{
	return (struct xmsg){ .type = XMSG_DELIVER, .attempt = (uint32_t)seq, .queue_id = seq,
		.dest_hash = ~seq, .arg = seq ^ PAYLOAD_MAGIC };
}

static void
check_in_order(const struct peer *p, uint32_t from, uint64_t first, uint32_t count)
{
	cr_assert_eq(p->got_count, count, "received %u, expected %u", p->got_count, count);
	for (uint32_t i = 0; i < count; i++) {
		const struct xmsg *m = &p->got[i];
		cr_assert_eq(m->queue_id, first + i, "message %u out of order", i);
		cr_assert_eq(m->from_shard, from);
		cr_assert_eq(m->arg, (first + i) ^ PAYLOAD_MAGIC, "payload copied whole");
		cr_assert_eq(m->dest_hash, ~(first + i));
	}
}

static struct xshard *
make(uint32_t shards, uint32_t ring_slots, uint32_t backlog)
{
	struct xshard *x;
	struct xshard_config cfg = { .shard_count = shards, .ring_slots = ring_slots,
		.backlog_slots = backlog };
	cr_assert_eq(xshard_create(&cfg, &x), 0);
	return x;
}

static struct peer a, b;   /* big: not on the stack */

/* ---- the bare ring ---- */

Test(xshard, ring_keeps_order_and_is_full_at_its_size)
{
	struct xmsg slots[4], out[8];
	struct xshard_ring r;
	xshard_ring_init(&r, slots, 4, 0);
	for (uint64_t i = 0; i < 4; i++)
		cr_assert_eq(xshard_ring_push(&r, &(struct xmsg){ .queue_id = i }), 0);
	cr_assert_eq(xshard_ring_push(&r, &(struct xmsg){ .queue_id = 4 }), -EAGAIN, "full");
	cr_assert_eq(xshard_ring_pop(&r, out, 8), 0, "nothing published yet");
	xshard_ring_publish(&r);
	cr_assert_eq(xshard_ring_pop(&r, out, 3), 3);
	cr_assert_eq(xshard_ring_push(&r, &(struct xmsg){ .queue_id = 4 }), 0, "room again");
	xshard_ring_publish(&r);
	cr_assert_eq(xshard_ring_pop(&r, out + 3, 8), 2);
	for (uint64_t i = 0; i < 5; i++)
		cr_assert_eq(out[i].queue_id, i);
	cr_assert(!xshard_ring_more(&r));
}

Test(xshard, ring_wraps_around_the_u32_indices_and_the_slots)
{
	struct xmsg slots[4], out[4];
	struct xshard_ring r;
	xshard_ring_init(&r, slots, 4, UINT32_MAX - 5);   /* the indices cross 2^32 early on */
	uint64_t next_in = 0, next_out = 0;
	for (uint32_t round = 0; round < 1000; round++) {
		uint32_t k = 1 + round % 4;
		for (uint32_t i = 0; i < k; i++)
			cr_assert_eq(xshard_ring_push(&r, &(struct xmsg){ .queue_id = next_in++ }), 0);
		if (k == 4)
			cr_assert_eq(xshard_ring_push(&r, &(struct xmsg){ .queue_id = 99 }), -EAGAIN);
		xshard_ring_publish(&r);
		cr_assert(xshard_ring_more(&r));
		cr_assert_eq(xshard_ring_pop(&r, out, 4), k);
		for (uint32_t i = 0; i < k; i++)
			cr_assert_eq(out[i].queue_id, next_out++, "round %u", round);
	}
	cr_assert_eq(next_out, next_in);
}

Test(xshard, ring_wake_decision_follows_the_consumer)
{
	struct xmsg slots[8], out[8];
	struct xshard_ring r;
	xshard_ring_init(&r, slots, 8, 0);
	cr_assert_eq(xshard_ring_push(&r, &(struct xmsg){ .queue_id = 1 }), 0);
	xshard_ring_publish(&r);
	cr_assert(xshard_ring_needs_wake(&r, 0), "the consumer has taken everything before");
	cr_assert_eq(xshard_ring_push(&r, &(struct xmsg){ .queue_id = 2 }), 0);
	xshard_ring_publish(&r);
	cr_assert(!xshard_ring_needs_wake(&r, 1), "message 1 not taken: its drain sees 2 too");
	cr_assert_eq(xshard_ring_pop(&r, out, 8), 2);
	cr_assert_eq(xshard_ring_push(&r, &(struct xmsg){ .queue_id = 3 }), 0);
	xshard_ring_publish(&r);
	cr_assert(xshard_ring_needs_wake(&r, 2), "taken: it may be asleep");
}

/* ---- set-up ---- */

Test(xshard, create_rejects_configurations_out_of_range)
{
	struct xshard *x;
	struct xshard_config bad[] = {
		{ 0, 1024, 1024 },
		{ XSHARD_SHARDS_MAX + 1, 1024, 1024 },
		{ 2, 1, 1024 },
		{ 2, 3, 1024 },
		{ 2, XSHARD_RING_SLOTS_MAX * 2, 1024 },
		{ 2, 1024, 0 },
		{ 2, 1024, XSHARD_BACKLOG_MAX + 1 },
	};
	for (size_t i = 0; i < ARRAY_LEN(bad); i++)
		cr_assert_eq(xshard_create(&bad[i], &x), -EINVAL, "config %zu", i);
	struct xshard_config edge = { XSHARD_SHARDS_MAX, XSHARD_RING_SLOTS_MIN, XSHARD_BACKLOG_MIN };
	cr_assert_eq(xshard_create(&edge, &x), 0, "the limits themselves are fine");
	xshard_destroy(x);
}

Test(xshard, sending_to_oneself_is_a_programmer_error, .signal = SIGABRT)
{
	struct xshard *x = make(2, 16, 16);
	struct xmsg m = msg(1);
	int rc = xshard_send(xshard_endpoint(x, 0), 0, &m);
	cr_assert_fail("xshard_send returned %d", rc);
}

Test(xshard, a_type_without_handler_is_a_programmer_error, .signal = SIGABRT)
{
	struct xshard *x = make(2, 16, 16);
	peer_up(&a, x, 0);
	peer_up(&b, x, 1);
	struct xmsg m = { .type = XMSG_SHUTDOWN };
	cr_assert_eq(xshard_send(a.ep, 1, &m), 0);
	turn(&a, 0);
	turn(&b, TEST_WAIT_MS);
}

/* ---- endpoints on real rings ---- */

Test(xshard, messages_arrive_in_order_after_a_wake_up_completion)
{
	struct xshard *x = make(2, XSHARD_RING_SLOTS_DEFAULT, XSHARD_BACKLOG_DEFAULT);
	peer_up(&a, x, 0);
	peer_up(&b, x, 1);
	for (uint64_t i = 0; i < 100; i++) {
		struct xmsg m = msg(i);
		cr_assert_eq(xshard_send(a.ep, 1, &m), 0);
	}
	turn(&a, 0);   /* publishes and submits the MSG_RING */
	/* The wake-up is a completion on b's ring, of the op xshard registered there. */
	struct io_uring_cqe *cqe;
	struct __kernel_timespec ts = { .tv_sec = 1 };
	cr_assert_eq(io_uring_wait_cqe_timeout(&b.ring.uring, &cqe, &ts), 0, "no wake-up arrived");
	cr_assert_neq(ring_ud_op(cqe->user_data), RING_OP_NONE);
	cr_assert_eq(ring_ud_slot(cqe->user_data), 0, "it names the sender");
	cr_assert_eq(cqe->res, 0);
	turn(&b, 0);
	cr_assert_eq(xshard_stats(b.ep)->wakes_received, 1);
	check_in_order(&b, 0, 0, 100);
	cr_assert_eq(xshard_stats(a.ep)->sent, 100);
	cr_assert_eq(xshard_stats(b.ep)->received, 100);
	peer_down(&a);
	peer_down(&b);
	xshard_destroy(x);
}

Test(xshard, one_wake_up_per_batch_and_none_while_the_receiver_is_behind)
{
	struct xshard *x = make(2, XSHARD_RING_SLOTS_DEFAULT, XSHARD_BACKLOG_DEFAULT);
	peer_up(&a, x, 0);
	peer_up(&b, x, 1);
	for (uint64_t i = 0; i < 500; i++) {
		struct xmsg m = msg(i);
		cr_assert_eq(xshard_send(a.ep, 1, &m), 0);
	}
	turn(&a, 0);
	cr_assert_eq(xshard_stats(a.ep)->wakes_sent, 1, "500 messages, one MSG_RING");
	/* b has not drained: a's next batch needs no wake-up, b's drain will see it. */
	for (uint64_t i = 500; i < 600; i++) {
		struct xmsg m = msg(i);
		cr_assert_eq(xshard_send(a.ep, 1, &m), 0);
	}
	turn(&a, 0);
	cr_assert_eq(xshard_stats(a.ep)->wakes_sent, 1);
	cr_assert_eq(xshard_stats(a.ep)->wakes_skipped, 1);
	cr_assert_eq(turn(&b, TEST_WAIT_MS), 1, "exactly one completion for both batches");
	check_in_order(&b, 0, 0, 600);
	cr_assert_eq(turn(&b, TEST_QUIET_MS), 0, "and no second one");
	/* Now b has taken everything and may sleep: the next batch wakes it. */
	struct xmsg m = msg(600);
	cr_assert_eq(xshard_send(a.ep, 1, &m), 0);
	turn(&a, 0);
	cr_assert_eq(xshard_stats(a.ep)->wakes_sent, 2);
	cr_assert_eq(turn(&b, TEST_WAIT_MS), 1);
	check_in_order(&b, 0, 0, 601);
	peer_down(&a);
	peer_down(&b);
	xshard_destroy(x);
}

Test(xshard, full_ring_backlogs_then_refuses_and_loses_nothing)
{
	struct xshard *x = make(2, 4, 4);
	peer_up(&a, x, 0);
	peer_up(&b, x, 1);
	cr_assert_eq(xshard_room(a.ep, 1), 8);
	for (uint64_t i = 0; i < 8; i++) {
		struct xmsg m = msg(i);
		cr_assert_eq(xshard_send(a.ep, 1, &m), 0, "message %lu", (unsigned long)i);
	}
	struct xmsg m = msg(8);
	cr_assert_eq(xshard_send(a.ep, 1, &m), -EAGAIN, "ring and backlog full");
	cr_assert_eq(xshard_room(a.ep, 1), 0);
	const struct xshard_stats *st = xshard_stats(a.ep);
	cr_assert_eq(st->sent, 8);
	cr_assert_eq(st->backlogged, 4);
	cr_assert_eq(st->refused, 1);
	cr_assert_eq(st->backlog_now, 4);
	turn(&a, 0);
	cr_assert_eq(ring_next_ms(&a.ring, 1000), XSHARD_RETRY_MS, "a backlog asks for a turn soon");
	turn(&b, TEST_WAIT_MS);
	check_in_order(&b, 0, 0, 4);
	turn(&a, 0);   /* the backlog moves into the ring */
	cr_assert_eq(st->backlog_now, 0);
	cr_assert_eq(xshard_send(a.ep, 1, &m), 0, "the refused message is offered again");
	cr_assert_eq(st->backlog_now, 1, "behind a full ring");
	turn(&a, 0);
	turn(&b, TEST_WAIT_MS);
	check_in_order(&b, 0, 0, 8);
	turn(&a, 0);
	turn(&b, TEST_WAIT_MS);
	check_in_order(&b, 0, 0, 9);
	cr_assert_eq(st->backlog_now, 0);
	peer_down(&a);
	peer_down(&b);
	xshard_destroy(x);
}

Test(xshard, drain_stops_at_the_budget_and_asks_for_another_turn)
{
	struct xshard *x = make(2, 4096, 16);
	peer_up(&a, x, 0);
	peer_up(&b, x, 1);
	uint32_t total = 2 * XSHARD_DRAIN_BUDGET + 100;
	for (uint64_t i = 0; i < total; i++) {
		struct xmsg m = msg(i);
		cr_assert_eq(xshard_send(a.ep, 1, &m), 0);
	}
	turn(&a, 0);
	turn(&b, TEST_WAIT_MS);
	cr_assert_eq(b.got_count, XSHARD_DRAIN_BUDGET);
	cr_assert_eq(ring_next_ms(&b.ring, 1000), 0, "more is waiting: no sleep");
	turn(&b, 0);
	turn(&b, 0);
	check_in_order(&b, 0, 0, total);
	cr_assert_eq(xshard_stats(b.ep)->budget_cuts, 2);
	cr_assert_eq(ring_next_ms(&b.ring, 1000), 1000, "drained: no opinion on sleeping");
	peer_down(&a);
	peer_down(&b);
	xshard_destroy(x);
}

Test(xshard, handlers_may_answer_in_the_same_turn)
{
	struct xshard *x = make(2, 64, 64);
	peer_up(&a, x, 0);
	peer_up(&b, x, 1);
	b.reply_to = x;
	for (uint64_t i = 0; i < 10; i++) {
		struct xmsg m = msg(i);
		cr_assert_eq(xshard_send(a.ep, 1, &m), 0);
	}
	turn(&a, 0);
	turn(&b, TEST_WAIT_MS);   /* drains, answers, and the answers go out in this turn */
	turn(&a, TEST_WAIT_MS);
	cr_assert_eq(a.got_count, 10);
	for (uint32_t i = 0; i < 10; i++) {
		cr_assert_eq(a.got[i].type, XMSG_DELIVERY_RESULT);
		cr_assert_eq(a.got[i].queue_id, i);
		cr_assert_eq(a.got[i].from_shard, 1);
	}
	peer_down(&a);
	peer_down(&b);
	xshard_destroy(x);
}

static void
sleep_ms(uint32_t ms)
{
	struct timespec ts = { .tv_sec = 0, .tv_nsec = (long)ms * 1000000L };
	nanosleep(&ts, NULL);
}

Test(xshard, wake_up_is_owed_until_the_receiver_attaches)
{
	struct xshard *x = make(2, 64, 64);
	peer_up(&a, x, 0);
	struct xmsg m = msg(0);
	cr_assert_eq(xshard_send(a.ep, 1, &m), 0);
	turn(&a, 0);
	cr_assert_eq(xshard_stats(a.ep)->wakes_sent, 0, "nobody to wake yet");
	uint64_t next = ring_next_ms(&a.ring, 1000);
	cr_assert(next <= XSHARD_RETRY_MS, "retried soon: %lu", (unsigned long)next);
	peer_up(&b, x, 1);
	sleep_ms(2 * XSHARD_RETRY_MS);
	turn(&a, 0);
	cr_assert_eq(xshard_stats(a.ep)->wakes_sent, 1);
	cr_assert_eq(turn(&b, TEST_WAIT_MS), 1);
	check_in_order(&b, 0, 0, 1);
	peer_down(&a);
	peer_down(&b);
	xshard_destroy(x);
}

Test(xshard, failed_wake_up_is_sent_again)
{
	struct xshard *x = make(2, 64, 64);
	peer_up(&a, x, 0);
	peer_up(&b, x, 1);
	/* b's ring goes away without a detach, and its fd number now names /dev/null: the
	 * MSG_RING fails (as it would against a ring being torn down). */
	int fd = b.ring.fd;
	ring_fini(&b.ring);
	int null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	cr_assert(null_fd >= 0);
	if (null_fd != fd) {
		cr_assert_eq(dup2(null_fd, fd), fd);
		close(null_fd);
	}
	struct xmsg m = msg(0);
	cr_assert_eq(xshard_send(a.ep, 1, &m), 0);
	turn(&a, 0);                 /* MSG_RING submitted */
	turn(&a, TEST_WAIT_MS);      /* its failure completes on a's ring */
	cr_assert_eq(xshard_stats(a.ep)->wake_failures, 1);
	/* b comes back on a new ring; the owed wake-up reaches it after XSHARD_RETRY_MS. */
	xshard_detach(b.ep);
	close(fd);
	cr_assert_eq(ring_init(&b.ring, 1, TEST_RING_ENTRIES, 0), 0);
	xshard_attach(b.ep, &b.ring);
	sleep_ms(2 * XSHARD_RETRY_MS);
	turn(&a, 0);
	cr_assert_eq(xshard_stats(a.ep)->wakes_sent, 2);
	cr_assert_eq(turn(&b, TEST_WAIT_MS), 1, "the wake-up arrived");
	check_in_order(&b, 0, 0, 1);
	peer_down(&a);
	peer_down(&b);
	xshard_destroy(x);
}

/* ---- the wake-up decision under real concurrency ---- */

/* The store-buffering litmus test on the two ends of a ring: the consumer takes message 0 and
 * asks whether more came (xshard_ring_more), while the producer publishes message 1 and asks
 * whether the consumer must be woken (xshard_ring_needs_wake). The outcome "no wake-up, and the
 * consumer saw nothing more" would leave message 1 with nobody to take it. x86 lets each side
 * read before its own store is visible to the other, so without the two fences this outcome
 * shows up; with them it must never. */
#define LITMUS_CHUNK       4096u
#define LITMUS_CHUNKS        60u
#define LITMUS_SPIN_YIELD  4096u   /* spins before yielding the CPU */

struct litmus {
	struct xshard_ring rings[LITMUS_CHUNK];
	struct xmsg slots[LITMUS_CHUNK][2];
	bool skipped[LITMUS_CHUNK];     /* the producer saw no need to wake */
	uint32_t popped[LITMUS_CHUNK];
	bool more[LITMUS_CHUNK];
	_Alignas(XSHARD_CACHE_LINE) _Atomic uint32_t ready[2];
	pthread_barrier_t barrier;
	uint64_t lost;
};

static void
litmus_meet(struct litmus *l, uint32_t self, uint32_t i)
{
	atomic_store_explicit(&l->ready[self], i, memory_order_release);
	for (uint32_t spins = 0; atomic_load_explicit(&l->ready[!self], memory_order_acquire) < i;
			spins++) {
		if (spins > LITMUS_SPIN_YIELD)
			sched_yield();
	}
}

static void
litmus_reset(struct litmus *l)
{
	for (uint32_t i = 0; i < LITMUS_CHUNK; i++) {
		xshard_ring_init(&l->rings[i], l->slots[i], 2, 0);
		cr_assert_eq(xshard_ring_push(&l->rings[i], &(struct xmsg){ .queue_id = 0 }), 0);
		xshard_ring_publish(&l->rings[i]);
	}
}

static void *
litmus_producer(void *arg)
{
	struct litmus *l = arg;
	for (uint32_t c = 0; c < LITMUS_CHUNKS; c++) {
		pthread_barrier_wait(&l->barrier);   /* rings reset */
		for (uint32_t i = 0; i < LITMUS_CHUNK; i++) {
			struct xshard_ring *r = &l->rings[i];
			litmus_meet(l, 0, c * LITMUS_CHUNK + i + 1);
			if (xshard_ring_push(r, &(struct xmsg){ .queue_id = 1 }) != 0)
				abort();
			xshard_ring_publish(r);
			l->skipped[i] = !xshard_ring_needs_wake(r, 1);
		}
		pthread_barrier_wait(&l->barrier);   /* chunk done */
	}
	return NULL;
}

static void
litmus_consume_chunk(struct litmus *l, uint32_t c)
{
	for (uint32_t i = 0; i < LITMUS_CHUNK; i++) {
		struct xshard_ring *r = &l->rings[i];
		struct xmsg out[2];
		litmus_meet(l, 1, c * LITMUS_CHUNK + i + 1);
		l->popped[i] = xshard_ring_pop(r, out, 2);
		l->more[i] = l->popped[i] < 2 && xshard_ring_more(r);
	}
}

Test(xshard, no_lost_wake_up_when_both_ends_race)
{
	static struct litmus l;
	memset(&l, 0, sizeof(l));
	cr_assert_eq(pthread_barrier_init(&l.barrier, NULL, 2), 0);
	pthread_t producer;
	cr_assert_eq(pthread_create(&producer, NULL, litmus_producer, &l), 0);
	uint64_t raced = 0;
	for (uint32_t c = 0; c < LITMUS_CHUNKS; c++) {
		litmus_reset(&l);
		pthread_barrier_wait(&l.barrier);
		litmus_consume_chunk(&l, c);
		pthread_barrier_wait(&l.barrier);
		for (uint32_t i = 0; i < LITMUS_CHUNK; i++) {
			if (l.skipped[i] && l.popped[i] == 1 && !l.more[i])
				l.lost++;
			if (l.popped[i] == 1)
				raced++;   /* the consumer was early: the interesting case */
		}
	}
	pthread_join(producer, NULL);
	pthread_barrier_destroy(&l.barrier);
	cr_log_info("litmus: %u rounds, %lu with the consumer first, %lu lost wake-ups",
		LITMUS_CHUNK * LITMUS_CHUNKS, (unsigned long)raced, (unsigned long)l.lost);
	cr_assert_eq(l.lost, 0, "%lu messages left with no wake-up", (unsigned long)l.lost);
}

/* ---- stress: threads, each a shard with its own io_uring ---- */

#define STRESS_SHARDS_MAX   8u
#define STRESS_BURST       512u   /* messages offered per peer per turn */
#define STRESS_WAIT_CAP_MS 2000u  /* the longest a stress loop sleeps: sleeping that long while
                                    * messages are due means a lost wake-up (a stall) */
#define STRESS_TIME_MAX_S   30    /* a stuck run fails instead of hanging make test */

struct stress {
	struct xshard *x;
	uint32_t shards;
	uint64_t per_pair;           /* messages each shard sends each other shard */
	pthread_barrier_t barrier;
};

struct stress_shard {
	struct stress *st;
	uint32_t index;
	struct ring ring;
	struct xshard_endpoint *ep;
	uint64_t next_send[STRESS_SHARDS_MAX];   /* sequence number of the next message to a peer */
	uint64_t next_recv[STRESS_SHARDS_MAX];   /* expected from a peer */
	uint64_t bad;                /* out of order, duplicated, corrupted */
	uint64_t refused;            /* -EAGAIN seen by the sending loop */
	uint64_t turns;
	uint64_t stalls;             /* a whole STRESS_WAIT_CAP_MS wait without a completion */
	struct xshard_stats stats;   /* copied at the end */
};

static void
stress_recv(void *ctx, const struct xmsg *m)
{
	struct stress_shard *s = ctx;
	uint32_t from = m->from_shard;
	/* Sequence numbers per pair: the next one, or it was lost, duplicated or reordered. */
	if (from >= s->st->shards || from == s->index || m->queue_id != s->next_recv[from]
			|| m->arg != (m->queue_id ^ PAYLOAD_MAGIC) || m->dest_hash != s->index) {
		s->bad++;
		return;
	}
	s->next_recv[from]++;
}

static bool
stress_done(const struct stress_shard *s)
{
	for (uint32_t p = 0; p < s->st->shards; p++) {
		if (p == s->index)
			continue;
		if (s->next_send[p] < s->st->per_pair || s->next_recv[p] < s->st->per_pair)
			return false;
	}
	return xshard_stats(s->ep)->backlog_now == 0;
}

/* Offers up to STRESS_BURST messages to each peer, keeping a refused one for a later turn. */
static void
stress_send(struct stress_shard *s)
{
	for (uint32_t p = 0; p < s->st->shards; p++) {
		if (p == s->index)
			continue;
		for (uint32_t k = 0; k < STRESS_BURST && s->next_send[p] < s->st->per_pair; k++) {
			uint64_t seq = s->next_send[p];
			struct xmsg m = { .type = XMSG_DELIVER, .queue_id = seq, .dest_hash = p,
				.arg = seq ^ PAYLOAD_MAGIC };
			if (xshard_send(s->ep, p, &m) == -EAGAIN) {
				s->refused++;   /* kept: the same seq is offered next turn */
				break;
			}
			s->next_send[p]++;
		}
	}
}

/* After the turn: whether a message waits for a peer with room (then the loop must not sleep;
 * without room xshard itself asks for a turn soon, its backlog being full). */
static bool
stress_eager(const struct stress_shard *s)
{
	for (uint32_t p = 0; p < s->st->shards; p++) {
		if (p != s->index && s->next_send[p] < s->st->per_pair && xshard_room(s->ep, p) > 0)
			return true;
	}
	return false;
}

static void
stress_wait(struct stress_shard *s, uint64_t wait_ms)
{
	struct io_uring_cqe *cqe;
	if (wait_ms == 0) {
		(void)io_uring_submit(&s->ring.uring);
	} else {
		struct __kernel_timespec ts = { .tv_sec = (long long)(wait_ms / 1000),
			.tv_nsec = (long)(wait_ms % 1000) * 1000000L };
		(void)io_uring_submit_and_wait_timeout(&s->ring.uring, &cqe, 1, &ts, NULL);
	}
	unsigned head, seen = 0;
	io_uring_for_each_cqe(&s->ring.uring, head, cqe) {
		ring_dispatch(&s->ring, cqe);
		seen++;
	}
	io_uring_cq_advance(&s->ring.uring, seen);
	if (seen == 0 && wait_ms == STRESS_WAIT_CAP_MS && !stress_done(s)) {
		s->stalls++;
		for (uint32_t p = 0; p < s->st->shards; p++)
			fprintf(stderr, "stall: shard %u peer %u: sent %lu recv %lu\n", s->index, p,
				(unsigned long)s->next_send[p], (unsigned long)s->next_recv[p]);
		const struct xshard_stats *x = xshard_stats(s->ep);
		fprintf(stderr, "stall: backlog %lu wakes %lu skipped %lu failures %lu recvd %lu\n",
			(unsigned long)x->backlog_now, (unsigned long)x->wakes_sent,
			(unsigned long)x->wakes_skipped, (unsigned long)x->wake_failures,
			(unsigned long)x->wakes_received);
	}
}

static void *
stress_main(void *arg)
{
	struct stress_shard *s = arg;
	if (ring_init(&s->ring, s->index, TEST_RING_ENTRIES, 0) != 0) {
		s->bad++;
		return NULL;
	}
	s->ep = xshard_endpoint(s->st->x, s->index);
	xshard_attach(s->ep, &s->ring);
	xshard_handler_set(s->ep, XMSG_DELIVER, stress_recv, s);
	pthread_barrier_wait(&s->st->barrier);   /* every ring is attached */
	ring_clock(&s->ring);
	uint64_t deadline_ms = s->ring.now_ms + STRESS_TIME_MAX_S * 1000ull;
	while (!stress_done(s) && s->bad == 0 && s->stalls == 0 && s->ring.now_ms < deadline_ms) {
		stress_send(s);
		ring_turn(&s->ring);
		stress_wait(s, stress_eager(s) ? 0 : ring_next_ms(&s->ring, STRESS_WAIT_CAP_MS));
		ring_clock(&s->ring);
		s->turns++;
	}
	(void)io_uring_submit(&s->ring.uring);   /* the last turn's wake-ups */
	s->stats = *xshard_stats(s->ep);
	pthread_barrier_wait(&s->st->barrier);   /* nobody wakes a ring that is gone */
	xshard_detach(s->ep);
	ring_fini(&s->ring);
	return NULL;
}

static struct stress_shard stress_shards[STRESS_SHARDS_MAX];

/* Runs shards threads, each sending per_pair messages to every other; checks every sequence. */
static void
stress_run(uint32_t shards, uint64_t per_pair, uint32_t ring_slots, uint32_t backlog)
{
	struct stress st = { .shards = shards, .per_pair = per_pair };
	st.x = make(shards, ring_slots, backlog);
	cr_assert_eq(pthread_barrier_init(&st.barrier, NULL, shards), 0);
	pthread_t threads[STRESS_SHARDS_MAX];
	memset(stress_shards, 0, sizeof(stress_shards));
	for (uint32_t i = 0; i < shards; i++) {
		stress_shards[i].st = &st;
		stress_shards[i].index = i;
		cr_assert_eq(pthread_create(&threads[i], NULL, stress_main, &stress_shards[i]), 0);
	}
	uint64_t refused = 0, backlogged = 0, wakes = 0, skipped = 0;
	for (uint32_t i = 0; i < shards; i++) {
		pthread_join(threads[i], NULL);
		const struct stress_shard *s = &stress_shards[i];
		cr_assert_eq(s->bad, 0, "shard %u: a message lost, duplicated or reordered", i);
		cr_assert_eq(s->stalls, 0, "shard %u slept with messages due: a lost wake-up", i);
		for (uint32_t p = 0; p < shards; p++) {
			if (p == i)
				continue;
			cr_assert_eq(s->next_recv[p], per_pair, "shard %u got %lu of %lu from %u", i,
				(unsigned long)s->next_recv[p], (unsigned long)per_pair, p);
		}
		cr_assert_eq(s->stats.received, per_pair * (shards - 1), "none duplicated");
		cr_assert_eq(s->stats.sent, per_pair * (shards - 1));
		cr_assert_eq(s->stats.refused, s->refused);
		cr_assert_eq(s->stats.backlog_now, 0);
		refused += s->refused;
		backlogged += s->stats.backlogged;
		wakes += s->stats.wakes_sent;
		skipped += s->stats.wakes_skipped;
	}
	cr_log_info("xshard stress: %u shards, %lu per pair, ring %u, backlog %u: "
		"%lu backlogged, %lu refused, %lu wake-ups sent, %lu skipped", shards,
		(unsigned long)per_pair, ring_slots, backlog, (unsigned long)backlogged,
		(unsigned long)refused, (unsigned long)wakes, (unsigned long)skipped);
	pthread_barrier_destroy(&st.barrier);
	xshard_destroy(st.x);
	if (ring_slots <= 64) {
		cr_assert(backlogged > 0, "the small rings were full at times");
		cr_assert(refused > 0, "and the backlogs too: the -EAGAIN path ran");
	}
}

Test(xshard, stress_two_shards_five_million_each_way)
{
	stress_run(2, 5000000, XSHARD_RING_SLOTS_DEFAULT, XSHARD_BACKLOG_DEFAULT);
}

Test(xshard, stress_two_shards_small_rings_back_off)
{
	stress_run(2, 1000000, 64, 64);
}

Test(xshard, stress_four_shards_all_pairs)
{
	stress_run(4, 1000000, 256, 256);
}
