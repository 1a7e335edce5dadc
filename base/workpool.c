/* base/workpool.c - worker threads answering through IORING_OP_MSG_RING; see workpool.h.
 *
 * The queue is a ring of job records under one mutex; workers sleep on a condition variable.
 * Each worker owns a tiny io_uring of its own, used only to send MSG_RING to the submitters'
 * rings (a ring is the only way to post a completion into another ring). */
#include "base/workpool.h"

#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define WORKPOOL_WORKER_RING_ENTRIES 4u

struct workpool_job {
	workpool_job_fn fn;
	void *arg;
	uint64_t user_data;
	int ring_fd;
};

struct workpool_worker {
	struct workpool *wp;
	pthread_t thread;
	struct io_uring ring;   /* sends this worker's MSG_RINGs */
	bool ring_ready;
	bool started;
};

struct workpool {
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stopping;
	uint32_t head;          /* next job to take */
	uint32_t count;         /* jobs queued */
	uint32_t cap;
	struct workpool_job *jobs;
	uint32_t worker_count;
	struct workpool_worker workers[WORKPOOL_THREADS_MAX];
};

/* Posts res for user_data to the ring ring_fd. A full completion queue on the other side is
 * retried a bounded number of times; a ring that is gone (-EBADF) cannot be told anything. */
static void
workpool_post(struct io_uring *ring, int ring_fd, uint64_t user_data, int32_t res)
{
	for (uint32_t tries = 0; tries < WORKPOOL_POST_TRIES_MAX; tries++) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
		ASSERT(sqe != NULL);   /* one request in flight at a time, in a ring of several */
		io_uring_prep_msg_ring(sqe, ring_fd, (unsigned)res, user_data, 0);
		struct io_uring_cqe *cqe;
		if (io_uring_submit_and_wait(ring, 1) < 0 || io_uring_wait_cqe(ring, &cqe) != 0)
			return;
		int rc = cqe->res;
		io_uring_cqe_seen(ring, cqe);
		if (rc != -EOVERFLOW && rc != -EAGAIN && rc != -EBUSY)
			return;
		usleep(WORKPOOL_POST_RETRY_US);
	}
}

/* Takes the oldest job; false when the pool stops. Called with the lock held. */
static bool
workpool_take(struct workpool *wp, struct workpool_job *job)
{
	while (wp->count == 0 && !wp->stopping)
		pthread_cond_wait(&wp->wake, &wp->lock);
	if (wp->stopping)
		return false;
	*job = wp->jobs[wp->head];
	wp->head = (wp->head + 1) % wp->cap;
	wp->count--;
	return true;
}

static void *
workpool_main(void *arg)
{
	struct workpool_worker *w = arg;
	struct workpool *wp = w->wp;
	for (;;) {
		struct workpool_job job;
		pthread_mutex_lock(&wp->lock);
		bool got = workpool_take(wp, &job);
		pthread_mutex_unlock(&wp->lock);
		if (!got)
			break;
		int32_t res = job.fn(job.arg);
		workpool_post(&w->ring, job.ring_fd, job.user_data, res);
	}
	return NULL;
}

/* Stops and joins the started workers, closes their rings, frees the pool. */
static void
workpool_teardown(struct workpool *wp)
{
	pthread_mutex_lock(&wp->lock);
	wp->stopping = true;
	pthread_cond_broadcast(&wp->wake);
	pthread_mutex_unlock(&wp->lock);
	for (uint32_t i = 0; i < wp->worker_count; i++) {
		struct workpool_worker *w = &wp->workers[i];
		if (w->started)
			pthread_join(w->thread, NULL);
	}
	/* The workers are gone: the jobs nobody took are answered from here. */
	struct io_uring *ring = wp->worker_count > 0 && wp->workers[0].ring_ready
		? &wp->workers[0].ring : NULL;
	for (; wp->count > 0; wp->count--) {
		struct workpool_job *job = &wp->jobs[wp->head];
		wp->head = (wp->head + 1) % wp->cap;
		if (ring != NULL)
			workpool_post(ring, job->ring_fd, job->user_data, -ECANCELED);
	}
	for (uint32_t i = 0; i < wp->worker_count; i++) {
		if (wp->workers[i].ring_ready)
			io_uring_queue_exit(&wp->workers[i].ring);
	}
	pthread_cond_destroy(&wp->wake);
	pthread_mutex_destroy(&wp->lock);
	free(wp->jobs);
	free(wp);
}

int
workpool_create(uint32_t threads, uint32_t queue_max, struct workpool **out)
{
	ASSERT(threads >= 1);
	ASSERT(threads <= WORKPOOL_THREADS_MAX);
	ASSERT(queue_max >= 1);
	ASSERT(queue_max <= WORKPOOL_QUEUE_MAX);
	struct workpool *wp = calloc(1, sizeof(*wp));
	if (wp == NULL)
		return -ENOMEM;
	wp->jobs = calloc(queue_max, sizeof(wp->jobs[0]));
	if (wp->jobs == NULL) {
		free(wp);
		return -ENOMEM;
	}
	wp->cap = queue_max;
	pthread_mutex_init(&wp->lock, NULL);
	pthread_cond_init(&wp->wake, NULL);
	int rc = 0;
	for (uint32_t i = 0; i < threads && rc == 0; i++) {
		struct workpool_worker *w = &wp->workers[i];
		w->wp = wp;
		wp->worker_count = i + 1;
		rc = io_uring_queue_init(WORKPOOL_WORKER_RING_ENTRIES, &w->ring, 0);
		if (rc < 0)
			break;
		w->ring_ready = true;
		rc = -pthread_create(&w->thread, NULL, workpool_main, w);
		w->started = rc == 0;
	}
	if (rc < 0) {
		workpool_teardown(wp);
		return rc;
	}
	*out = wp;
	return 0;
}

int
workpool_submit(struct workpool *wp, int ring_fd, uint64_t user_data, workpool_job_fn fn,
	void *arg)
{
	ASSERT(fn != NULL);
	ASSERT(ring_fd >= 0);
	int rc = 0;
	pthread_mutex_lock(&wp->lock);
	if (wp->stopping) {
		rc = -ESHUTDOWN;
	} else if (wp->count == wp->cap) {
		rc = -EAGAIN;
	} else {
		uint32_t tail = (wp->head + wp->count) % wp->cap;
		wp->jobs[tail] = (struct workpool_job){ .fn = fn, .arg = arg, .user_data = user_data,
			.ring_fd = ring_fd };
		wp->count++;
		pthread_cond_signal(&wp->wake);
	}
	pthread_mutex_unlock(&wp->lock);
	return rc;
}

uint32_t
workpool_queued(struct workpool *wp)
{
	pthread_mutex_lock(&wp->lock);
	uint32_t n = wp->count;
	pthread_mutex_unlock(&wp->lock);
	return n;
}

void
workpool_destroy(struct workpool *wp)
{
	if (wp != NULL)
		workpool_teardown(wp);
}
