/* base/workpool.h - a few threads for blocking jobs, each answered through its shard's ring.
 *
 * A shard must never block: slow work (a password hash costs tens of milliseconds; a syncfs may
 * take longer) goes to this pool. The submitter names the ring to answer (struct ring's fd) and a
 * user_data; when the job has run, a worker posts one completion to that ring with
 * IORING_OP_MSG_RING: cqe->user_data is the submitter's, cqe->res the job's result. The shard's
 * loop routes it like any other completion (ring_ud op, slot, generation), so a job whose waiter
 * has gone is recognised by its generation.
 *
 * One pool serves every shard; it is created before the shards start and destroyed after they
 * have stopped waiting for it. The queue is bounded: a full queue is -EAGAIN to the submitter
 * (a 4xx for the client, never a block). Submitting takes a mutex: the pool is for the slow path
 * (AUTH, maildir sync), not for per-message work.
 *
 * Ownership: `arg` belongs to the submitter and must stay valid until the completion for it has
 * arrived. Every accepted job gets exactly one completion: its result once it ran, or
 * -ECANCELED if the pool was destroyed before a worker took it.
 *
 * Limits: WORKPOOL_THREADS_MAX threads, WORKPOOL_QUEUE_MAX queued jobs. */
#ifndef RINGMTA_BASE_WORKPOOL_H
#define RINGMTA_BASE_WORKPOOL_H
#include <stdint.h>

#include "base/assert.h"

#define WORKPOOL_THREADS_MAX       16u
#define WORKPOOL_QUEUE_MAX       4096u
#define WORKPOOL_POST_TRIES_MAX   100u   /* MSG_RING attempts while the target's CQ is full */
#define WORKPOOL_POST_RETRY_US   1000u   /* pause between two of them */

/* Runs on a worker thread; the result becomes cqe->res (0 or a negative errno by convention). */
typedef int32_t (*workpool_job_fn)(void *arg);

struct workpool;   /* opaque: defined in workpool.c */

/* Starts `threads` workers (1..WORKPOOL_THREADS_MAX) and a queue of `queue_max` jobs
 * (1..WORKPOOL_QUEUE_MAX). Returns 0 or -errno (nothing is left running on error). */
int workpool_create(uint32_t threads, uint32_t queue_max, struct workpool **out) MUST_USE;

/* Queues fn(arg); its result will be posted to the ring whose fd is ring_fd, with user_data.
 * Any thread may submit. Returns 0, -EAGAIN if the queue is full, or -ESHUTDOWN once the pool is
 * being destroyed. */
int workpool_submit(struct workpool *wp, int ring_fd, uint64_t user_data, workpool_job_fn fn,
	void *arg) MUST_USE;

/* Jobs queued now (for stats and tests). */
uint32_t workpool_queued(struct workpool *wp);

/* Stops taking jobs, answers the queued ones with -ECANCELED, lets the running ones finish and
 * post, joins the threads and frees the pool. The rings named by pending jobs must still be open. */
void workpool_destroy(struct workpool *wp);
#endif
