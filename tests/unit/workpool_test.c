/* tests/unit/workpool_test.c - the worker pool, answering through a real shard ring. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "base/ring.h"
#include "base/workpool.h"

#define TEST_JOBS_MAX 64u
#define TEST_WAIT_S 5

/* Jobs that wait at a gate until the test opens it. */
struct gate {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	bool open;
	uint32_t entered;
	pthread_t threads[TEST_JOBS_MAX];
};

struct job_arg {
	struct gate *gate;
	int32_t result;
	bool ran;
};

static struct gate gate = { PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, false, 0, { 0 } };

static void
gate_reset(void)
{
	pthread_mutex_lock(&gate.lock);
	gate.open = false;
	gate.entered = 0;
	pthread_mutex_unlock(&gate.lock);
}

static int32_t
job_gated(void *p)
{
	struct job_arg *a = p;
	pthread_mutex_lock(&a->gate->lock);
	a->gate->threads[a->gate->entered++ % TEST_JOBS_MAX] = pthread_self();
	pthread_cond_broadcast(&a->gate->cond);
	while (!a->gate->open)
		pthread_cond_wait(&a->gate->cond, &a->gate->lock);
	pthread_mutex_unlock(&a->gate->lock);
	a->ran = true;
	return a->result;
}

static void
gate_wait_entered(uint32_t n)
{
	pthread_mutex_lock(&gate.lock);
	while (gate.entered < n)
		pthread_cond_wait(&gate.cond, &gate.lock);
	pthread_mutex_unlock(&gate.lock);
}

static void
gate_open(void)
{
	pthread_mutex_lock(&gate.lock);
	gate.open = true;
	pthread_cond_broadcast(&gate.cond);
	pthread_mutex_unlock(&gate.lock);
}

/* Reaps n completions from the shard ring into res_by_slot (indexed by the user_data slot). */
static void
reap(struct ring *r, uint32_t n, int32_t *res_by_slot, uint32_t *seen_by_slot)
{
	for (uint32_t i = 0; i < n; i++) {
		struct io_uring_cqe *cqe;
		struct __kernel_timespec ts = { .tv_sec = TEST_WAIT_S };
		cr_assert_eq(io_uring_wait_cqe_timeout(&r->uring, &cqe, &ts), 0,
			"completion %u of %u did not come", i, n);
		uint32_t slot = ring_ud_slot(cqe->user_data);
		cr_assert_eq(ring_ud_op(cqe->user_data), 7, "user_data comes back as given");
		cr_assert_eq(ring_ud_gen(cqe->user_data), 3);
		cr_assert_lt(slot, TEST_JOBS_MAX);
		res_by_slot[slot] = cqe->res;
		seen_by_slot[slot]++;
		io_uring_cqe_seen(&r->uring, cqe);
	}
}

TestSuite(workpool, .init = gate_reset);

Test(workpool, each_job_answers_its_ring_with_its_user_data_and_result)
{
	struct ring r;
	cr_assert_eq(ring_init(&r, 0, 64, 0), 0);
	struct workpool *wp;
	cr_assert_eq(workpool_create(2, 16, &wp), 0);
	gate_open();
	struct job_arg args[10];
	for (uint32_t i = 0; i < 10; i++) {
		args[i] = (struct job_arg){ .gate = &gate, .result = (int32_t)i * 7 - 20 };
		cr_assert_eq(workpool_submit(wp, r.fd, ring_ud(7, i, 3), job_gated, &args[i]), 0);
	}
	int32_t res[TEST_JOBS_MAX] = { 0 };
	uint32_t seen[TEST_JOBS_MAX] = { 0 };
	reap(&r, 10, res, seen);
	for (uint32_t i = 0; i < 10; i++) {
		cr_assert_eq(seen[i], 1, "job %u answered once", i);
		cr_assert_eq(res[i], (int32_t)i * 7 - 20, "job %u: negative results pass too", i);
		cr_assert(args[i].ran);
	}
	workpool_destroy(wp);
	ring_fini(&r);
}

Test(workpool, jobs_run_off_the_submitting_thread_and_in_parallel)
{
	struct ring r;
	cr_assert_eq(ring_init(&r, 0, 64, 0), 0);
	struct workpool *wp;
	cr_assert_eq(workpool_create(2, 4, &wp), 0);
	struct job_arg args[2] = { { .gate = &gate }, { .gate = &gate } };
	cr_assert_eq(workpool_submit(wp, r.fd, ring_ud(7, 0, 3), job_gated, &args[0]), 0);
	cr_assert_eq(workpool_submit(wp, r.fd, ring_ud(7, 1, 3), job_gated, &args[1]), 0);
	gate_wait_entered(2);   /* both are inside at once: two workers */
	cr_assert(!pthread_equal(gate.threads[0], pthread_self()));
	cr_assert(!pthread_equal(gate.threads[0], gate.threads[1]));
	gate_open();
	int32_t res[TEST_JOBS_MAX] = { 0 };
	uint32_t seen[TEST_JOBS_MAX] = { 0 };
	reap(&r, 2, res, seen);
	workpool_destroy(wp);
	ring_fini(&r);
}

Test(workpool, a_full_queue_is_eagain_and_takes_jobs_again_once_drained)
{
	struct ring r;
	cr_assert_eq(ring_init(&r, 0, 64, 0), 0);
	struct workpool *wp;
	cr_assert_eq(workpool_create(1, 3, &wp), 0);
	struct job_arg args[6];
	for (uint32_t i = 0; i < 6; i++)
		args[i] = (struct job_arg){ .gate = &gate, .result = (int32_t)i };
	/* One job held by the worker, then the queue at its bound, then one past it. */
	cr_assert_eq(workpool_submit(wp, r.fd, ring_ud(7, 0, 3), job_gated, &args[0]), 0);
	gate_wait_entered(1);
	for (uint32_t i = 1; i <= 3; i++)
		cr_assert_eq(workpool_submit(wp, r.fd, ring_ud(7, i, 3), job_gated, &args[i]), 0);
	cr_assert_eq(workpool_queued(wp), 3);
	cr_assert_eq(workpool_submit(wp, r.fd, ring_ud(7, 4, 3), job_gated, &args[4]), -EAGAIN);
	gate_open();
	int32_t res[TEST_JOBS_MAX] = { 0 };
	uint32_t seen[TEST_JOBS_MAX] = { 0 };
	reap(&r, 4, res, seen);
	cr_assert_eq(seen[4], 0, "the refused job never runs");
	cr_assert_not(args[4].ran);
	cr_assert_eq(workpool_submit(wp, r.fd, ring_ud(7, 5, 3), job_gated, &args[5]), 0);
	reap(&r, 1, res, seen);
	cr_assert_eq(res[5], 5);
	workpool_destroy(wp);
	ring_fini(&r);
}

/* Submits until the pool says it is stopping, then lets the running job finish. */
struct prober {
	struct workpool *wp;
	int ring_fd;
	struct job_arg arg;
	uint32_t accepted;
	bool saw_shutdown;
};

static void *
prober_main(void *p)
{
	struct prober *pr = p;
	for (uint32_t i = 0; i < 100000; i++) {
		int rc = workpool_submit(pr->wp, pr->ring_fd, ring_ud(7, 10 + pr->accepted, 3),
			job_gated, &pr->arg);
		if (rc == -ESHUTDOWN) {
			pr->saw_shutdown = true;
			break;
		}
		if (rc == 0)
			pr->accepted++;
		usleep(100);
	}
	gate_open();
	return NULL;
}

Test(workpool, destroy_refuses_new_jobs_cancels_queued_ones_and_lets_running_ones_finish)
{
	struct ring r;
	cr_assert_eq(ring_init(&r, 0, 256, 0), 0);
	struct workpool *wp;
	cr_assert_eq(workpool_create(1, 8, &wp), 0);
	struct job_arg args[4];
	for (uint32_t i = 0; i < 4; i++)
		args[i] = (struct job_arg){ .gate = &gate, .result = 100 + (int32_t)i };
	for (uint32_t i = 0; i < 4; i++)
		cr_assert_eq(workpool_submit(wp, r.fd, ring_ud(7, i, 3), job_gated, &args[i]), 0);
	gate_wait_entered(1);
	/* Destroy waits for the running job; the prober sees the refusal meanwhile, then opens the
	 * gate. */
	struct prober pr = { .wp = wp, .ring_fd = r.fd, .arg = { .gate = &gate } };
	pthread_t t;
	cr_assert_eq(pthread_create(&t, NULL, prober_main, &pr), 0);
	workpool_destroy(wp);
	pthread_join(t, NULL);
	cr_assert(pr.saw_shutdown, "submit during destroy is -ESHUTDOWN");
	cr_assert_leq(pr.accepted, 4, "accepted only while the queue had room");
	int32_t res[TEST_JOBS_MAX] = { 0 };
	uint32_t seen[TEST_JOBS_MAX] = { 0 };
	reap(&r, 4 + pr.accepted, res, seen);
	cr_assert_eq(res[0], 100, "the running job finished and posted its result");
	for (uint32_t i = 1; i < 4; i++) {
		cr_assert_eq(seen[i], 1);
		cr_assert_eq(res[i], -ECANCELED, "queued job %u is answered, not run", i);
		cr_assert_not(args[i].ran);
	}
	for (uint32_t i = 0; i < pr.accepted; i++)
		cr_assert_eq(res[10 + i], -ECANCELED);
	struct io_uring_cqe *cqe;
	cr_assert_neq(io_uring_peek_cqe(&r.uring, &cqe), 0, "one completion per job, no more");
	ring_fini(&r);
}
