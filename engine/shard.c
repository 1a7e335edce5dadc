/* engine/shard.c - a shard's thread and its event loop; see shard.h. */
#include "engine/shard.h"

#include <errno.h>
#include <sched.h>
#include <string.h>
#include <time.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "base/log.h"

#define SHARD_MSG_STOP        1u
#define SHARD_STOP_POLL_MS  100u   /* while stopping, look at the modules this often */

static void
shard_msg(void *ctx, const struct io_uring_cqe *cqe)
{
	struct shard *sh = ctx;
	if (ring_ud_slot(cqe->user_data) != SHARD_MSG_STOP || sh->ring.stopping)
		return;
	sh->stop_deadline_ms = sh->ring.now_ms + sh->p.stop_grace_ms;
	ring_stop(&sh->ring);
}

static bool
shard_done(struct shard *sh)
{
	if (!sh->ring.stopping)
		return false;
	if (ring_idle(&sh->ring)) {
		sh->clean_exit = true;
		return true;
	}
	if (sh->ring.now_ms < sh->stop_deadline_ms)
		return false;
	/* What is still under way stays in the spool for the next start. */
	char buf[LOG_LINE_MAX];
	struct log_line l;
	log_line_begin(&l, buf, sizeof(buf), sh->ring.now_real_ms, "stop_unfinished");
	log_line_u64(&l, "shard", sh->index);
	log_line_u64(&l, "grace_ms", sh->p.stop_grace_ms);
	log_write(buf, log_line_end(&l));
	return true;
}

static uint64_t
shard_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void
shard_loop(struct shard *sh)
{
	struct ring *r = &sh->ring;
	while (!shard_done(sh)) {
		uint64_t ms = ring_next_ms(r, r->stopping ? SHARD_STOP_POLL_MS : SHARD_IDLE_WAIT_MS);
		struct __kernel_timespec ts = { .tv_sec = (long long)(ms / 1000),
			.tv_nsec = (long long)(ms % 1000) * 1000000 };
		struct io_uring_cqe *cqe;
		int rc = io_uring_submit_and_wait_timeout(&r->uring, &cqe, ms == 0 ? 0 : 1, &ts, NULL);
		/* -EAGAIN with nothing to wait for is liburing's "no completion yet" (a hook wanted a
		 * turn at once), not an error. */
		if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY && !(rc == -EAGAIN && ms == 0))
			log_error(r->now_real_ms, "io_uring_enter", rc);
		uint64_t woke_ns = shard_ns();
		ring_clock(r);
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&r->uring, head, cqe) {
			ring_dispatch(r, cqe);
			if (++seen == SHARD_CQE_BATCH_MAX)
				break;
		}
		io_uring_cq_advance(&r->uring, seen);
		ring_dispatch_posted(r);
		bufring_flush(&sh->bufs);
		ring_turn(r);
		ring_dispatch_posted(r);   /* events posted by the hooks are not left for a turn */
		sh->stats.turns++;
		sh->stats.completions += seen;
		sh->stats.busy_ns += shard_ns() - woke_ns;
	}
}

static int
shard_setup(struct shard *sh)
{
	int rc = ring_init(&sh->ring, sh->index, SHARD_RING_ENTRIES, SHARD_FILES_MAX);
	if (rc < 0)
		return rc;
	sh->op_msg = ring_op_register(&sh->ring, shard_msg, sh);
	rc = bufring_init_spare(&sh->bufs, &sh->ring, SHARD_BUF_GROUP, SHARD_BUF_COUNT,
		SHARD_TLS_BUF_COUNT, SHARD_BUF_SIZE);
	if (rc < 0)
		return rc;
	rc = conn_pool_init(&sh->conns, &sh->ring, &sh->bufs, sh->p.max_connections);
	if (rc < 0)
		return rc;
	return sh->p.setup(sh, sh->p.ctx);
}

static void *
shard_main(void *arg)
{
	struct shard *sh = arg;
	cpu_set_t set;
	CPU_ZERO(&set);
	CPU_SET((int)(sh->index % (uint32_t)CPU_SETSIZE), &set);
	(void)pthread_setaffinity_np(pthread_self(), sizeof(set), &set);
	sh->start_rc = shard_setup(sh);
	uint64_t one = 1;
	(void)!write(sh->ready_fd, &one, sizeof(one));
	if (sh->start_rc < 0)
		return NULL;
	uint64_t go;
	while (read(sh->serve_fd, &go, sizeof(go)) < 0 && errno == EINTR)
		;
	close(sh->serve_fd);
	shard_loop(sh);
	if (sh->p.loop_end != NULL)
		sh->p.loop_end(sh, sh->p.ctx);
	/* Closing the ring cancels what is still in flight. After an unclean stop (the grace
	 * period ran out) the kernel may still be finishing requests into the modules' memory, so
	 * none of it is freed: the process is about to exit, and the spool keeps what was left. */
	ring_fini(&sh->ring);
	if (!sh->clean_exit)
		return NULL;
	sh->p.teardown(sh, sh->p.ctx);
	conn_pool_fini(&sh->conns);
	bufring_fini(&sh->bufs);
	return NULL;
}

int
shard_start(struct shard *sh, uint32_t index, const struct shard_params *p)
{
	memset(sh, 0, sizeof(*sh));
	sh->index = index;
	sh->p = *p;
	sh->ready_fd = eventfd(0, EFD_CLOEXEC);
	if (sh->ready_fd < 0)
		return -errno;
	sh->serve_fd = eventfd(0, EFD_CLOEXEC);
	if (sh->serve_fd < 0) {
		int rc = -errno;
		close(sh->ready_fd);
		return rc;
	}
	int rc = pthread_create(&sh->thread, NULL, shard_main, sh);
	if (rc != 0) {
		close(sh->ready_fd);
		close(sh->serve_fd);
		return -rc;
	}
	uint64_t v;
	(void)!read(sh->ready_fd, &v, sizeof(v));
	close(sh->ready_fd);
	if (sh->start_rc < 0) {
		pthread_join(sh->thread, NULL);
		close(sh->serve_fd);
	}
	return sh->start_rc;
}

void
shard_serve(struct shard *sh)
{
	uint64_t one = 1;
	(void)!write(sh->serve_fd, &one, sizeof(one));
}

int
shard_request_stop(struct io_uring *from, struct shard *sh)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(from);
	if (sqe == NULL)
		return -EBUSY;
	io_uring_prep_msg_ring(sqe, sh->ring.fd, 0, ring_ud(sh->op_msg, SHARD_MSG_STOP, 0), 0);
	int rc = io_uring_submit_and_wait(from, 1);
	if (rc < 0)
		return rc;
	struct io_uring_cqe *cqe;
	rc = io_uring_wait_cqe(from, &cqe);
	if (rc < 0)
		return rc;
	rc = cqe->res;
	io_uring_cqe_seen(from, cqe);
	return rc < 0 ? rc : 0;
}

void
shard_join(struct shard *sh)
{
	pthread_join(sh->thread, NULL);
}
