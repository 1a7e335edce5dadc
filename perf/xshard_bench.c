/* perf/xshard_bench.c - messages per second between shards over engine/xshard.
 *
 *   xshard_bench [-n MESSAGES] [-s SHARDS] [-r RING_SLOTS] [-b BACKLOG] [-1]
 *
 * SHARDS threads (default 2), each a shard with its own io_uring driven like the engine's loop
 * (turn hooks, then wait for completions as long as the hooks allow). Every shard sends MESSAGES
 * (default 10,000,000) to every other, with sequence numbers checked on arrival; -1 makes only
 * shard 0 send (one way). Prints the wall time, messages per second (all pairs together), and per
 * message the MSG_RING wake-ups and the messages that went through the backlog. */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine/xshard.h"

#define BENCH_SHARDS_MAX   8u
#define BENCH_RING_ENTRIES 256u
#define BENCH_BURST        512u   /* messages offered per peer per turn */
#define BENCH_WAIT_CAP_MS  100u

struct bench {
	struct xshard *x;
	uint32_t shards;
	uint64_t per_pair;
	bool one_way;
	pthread_barrier_t barrier;
};

struct bench_shard {
	struct bench *b;
	uint32_t index;
	struct ring ring;
	struct xshard_endpoint *ep;
	uint64_t next_send[BENCH_SHARDS_MAX];
	uint64_t next_recv[BENCH_SHARDS_MAX];
	uint64_t bad;
	struct xshard_stats stats;
};

static uint64_t
bench_to_send(const struct bench_shard *s)
{
	return s->b->one_way && s->index != 0 ? 0 : s->b->per_pair;
}

static uint64_t
bench_to_recv(const struct bench_shard *s, uint32_t from)
{
	return s->b->one_way && from != 0 ? 0 : s->b->per_pair;
}

static void
bench_recv(void *ctx, const struct xmsg *m)
{
	struct bench_shard *s = ctx;
	if (m->from_shard >= s->b->shards || m->queue_id != s->next_recv[m->from_shard]) {
		s->bad++;
		return;
	}
	s->next_recv[m->from_shard]++;
}

static bool
bench_done(const struct bench_shard *s)
{
	for (uint32_t p = 0; p < s->b->shards; p++) {
		if (p == s->index)
			continue;
		if (s->next_send[p] < bench_to_send(s) || s->next_recv[p] < bench_to_recv(s, p))
			return false;
	}
	return xshard_stats(s->ep)->backlog_now == 0;
}

static void
bench_send(struct bench_shard *s)
{
	for (uint32_t p = 0; p < s->b->shards; p++) {
		if (p == s->index)
			continue;
		for (uint32_t k = 0; k < BENCH_BURST && s->next_send[p] < bench_to_send(s); k++) {
			struct xmsg m = { .type = XMSG_DELIVER, .queue_id = s->next_send[p] };
			if (xshard_send(s->ep, p, &m) != 0)
				break;
			s->next_send[p]++;
		}
	}
}

static void
bench_wait(struct bench_shard *s, uint64_t wait_ms)
{
	struct io_uring_cqe *cqe;
	if (wait_ms == 0) {
		(void)io_uring_submit(&s->ring.uring);
	} else {
		struct __kernel_timespec ts = { .tv_nsec = (long)wait_ms * 1000000L };
		(void)io_uring_submit_and_wait_timeout(&s->ring.uring, &cqe, 1, &ts, NULL);
	}
	unsigned head, seen = 0;
	io_uring_for_each_cqe(&s->ring.uring, head, cqe) {
		ring_dispatch(&s->ring, cqe);
		seen++;
	}
	io_uring_cq_advance(&s->ring.uring, seen);
}

static bool
bench_eager(const struct bench_shard *s)
{
	for (uint32_t p = 0; p < s->b->shards; p++) {
		if (p != s->index && s->next_send[p] < bench_to_send(s) && xshard_room(s->ep, p) > 0)
			return true;
	}
	return false;
}

static void *
bench_main(void *arg)
{
	struct bench_shard *s = arg;
	int rc = ring_init(&s->ring, s->index, BENCH_RING_ENTRIES, 0);
	if (rc < 0) {
		fprintf(stderr, "ring_init: %s\n", strerror(-rc));
		exit(1);
	}
	s->ep = xshard_endpoint(s->b->x, s->index);
	xshard_attach(s->ep, &s->ring);
	xshard_handler_set(s->ep, XMSG_DELIVER, bench_recv, s);
	pthread_barrier_wait(&s->b->barrier);
	while (!bench_done(s) && s->bad == 0) {
		ring_clock(&s->ring);
		bench_send(s);
		ring_turn(&s->ring);
		bench_wait(s, bench_eager(s) ? 0 : ring_next_ms(&s->ring, BENCH_WAIT_CAP_MS));
	}
	(void)io_uring_submit(&s->ring.uring);
	s->stats = *xshard_stats(s->ep);
	pthread_barrier_wait(&s->b->barrier);
	xshard_detach(s->ep);
	ring_fini(&s->ring);
	return NULL;
}

static double
bench_now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	static struct bench_shard shards[BENCH_SHARDS_MAX];
	struct bench b = { .shards = 2, .per_pair = 10000000 };
	struct xshard_config cfg = { .ring_slots = XSHARD_RING_SLOTS_DEFAULT,
		.backlog_slots = XSHARD_BACKLOG_DEFAULT };
	int opt;
	while ((opt = getopt(argc, argv, "n:s:r:b:1")) != -1) {
		switch (opt) {
		case 'n': b.per_pair = strtoull(optarg, NULL, 10); break;
		case 's': b.shards = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'r': cfg.ring_slots = (uint32_t)strtoul(optarg, NULL, 10); break;
		case 'b': cfg.backlog_slots = (uint32_t)strtoul(optarg, NULL, 10); break;
		case '1': b.one_way = true; break;
		default:
			fprintf(stderr, "usage: xshard_bench [-n N] [-s SHARDS] [-r SLOTS] [-b N] [-1]\n");
			return 2;
		}
	}
	if (b.shards < 2 || b.shards > BENCH_SHARDS_MAX) {
		fprintf(stderr, "xshard_bench: 2..%u shards\n", BENCH_SHARDS_MAX);
		return 2;
	}
	cfg.shard_count = b.shards;
	int rc = xshard_create(&cfg, &b.x);
	if (rc < 0) {
		fprintf(stderr, "xshard_create: %s\n", strerror(-rc));
		return 1;
	}
	pthread_barrier_init(&b.barrier, NULL, b.shards);
	pthread_t threads[BENCH_SHARDS_MAX];
	double t0 = bench_now_s();
	for (uint32_t i = 0; i < b.shards; i++) {
		shards[i] = (struct bench_shard){ .b = &b, .index = i };
		pthread_create(&threads[i], NULL, bench_main, &shards[i]);
	}
	uint64_t total = 0, wakes = 0, backlogged = 0, bad = 0;
	for (uint32_t i = 0; i < b.shards; i++) {
		pthread_join(threads[i], NULL);
		total += shards[i].stats.received;
		wakes += shards[i].stats.wakes_sent;
		backlogged += shards[i].stats.backlogged;
		bad += shards[i].bad;
	}
	double secs = bench_now_s() - t0;
	printf("shards=%u %s ring=%u backlog=%u messages=%" PRIu64 " seconds=%.3f "
		"msgs_per_s=%.0f wakeups_per_msg=%.5f backlogged_per_msg=%.3f bad=%" PRIu64 "\n",
		b.shards, b.one_way ? "one-way" : "all-pairs", cfg.ring_slots, cfg.backlog_slots, total,
		secs, (double)total / secs, (double)wakes / (double)total,
		(double)backlogged / (double)total, bad);
	xshard_destroy(b.x);
	return bad == 0 ? 0 : 1;
}
