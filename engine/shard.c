/* engine/shard.c - a shard's thread: its ring, buffers, listeners and event loop. */
#include "engine/shard.h"

#include <errno.h>
#include <netinet/in.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "engine/conn.h"
#include "deliver/maildir.h"
#include "queue/record.h"
#include "queue/spool.h"
#include "conf/config.h"
#include "base/log.h"

#define SHARD_LISTEN_BACKLOG   4096
#define SHARD_IDLE_WAIT_MS     1000u    /* longest sleep of the loop */
#define SHARD_STOP_GRACE_MS   10000u    /* after SIGTERM: finish commits and deliveries */
#define SHARD_MSG_STOP           1u

static uint64_t
shard_clock_ms(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void
shard_clock(struct shard *sh)
{
	sh->now_ms = shard_clock_ms(CLOCK_MONOTONIC);
	sh->now_real_ms = shard_clock_ms(CLOCK_REALTIME);
}

struct io_uring_sqe *
shard_sqe(struct shard *sh)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&sh->ring);
	while (sqe == NULL) {
		(void)io_uring_submit(&sh->ring);
		sqe = io_uring_get_sqe(&sh->ring);
	}
	return sqe;
}

void
shard_sqe_reserve(struct shard *sh, uint32_t n)
{
	ASSERT(n <= SHARD_RING_ENTRIES);
	if (io_uring_sq_space_left(&sh->ring) < n)
		(void)io_uring_submit(&sh->ring);
}

void
shard_buf_return(struct shard *sh, uint16_t bid)
{
	ASSERT(bid < SHARD_BUF_COUNT);
	io_uring_buf_ring_add(sh->buf_ring, shard_buf(sh, bid), SHARD_BUF_SIZE, bid,
		io_uring_buf_ring_mask(SHARD_BUF_COUNT), (int)sh->buf_returned++);
}

/* DEFER_TASKRUN (6.1) runs completions only when this thread asks: fewer wake-ups. Older
 * kernels get COOP_TASKRUN, then nothing. */
static int
shard_ring_init(struct shard *sh)
{
	static const unsigned flag_sets[] = {
		IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_COOP_TASKRUN,
		0,
	};
	int rc = -EINVAL;
	for (uint32_t i = 0; i < ARRAY_LEN(flag_sets) && rc == -EINVAL; i++) {
		struct io_uring_params p;
		memset(&p, 0, sizeof(p));
		p.flags = flag_sets[i] | IORING_SETUP_CQSIZE;
		p.cq_entries = SHARD_RING_ENTRIES * 4;
		rc = io_uring_queue_init_params(SHARD_RING_ENTRIES, &sh->ring, &p);
	}
	if (rc < 0)
		return rc;
	sh->ring_fd = sh->ring.ring_fd;
	return io_uring_register_files_sparse(&sh->ring, SHARD_FILES_MAX);
}

static int
shard_bufs_init(struct shard *sh)
{
	size_t ring_bytes = SHARD_BUF_COUNT * sizeof(struct io_uring_buf);
	void *br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (br == MAP_FAILED)
		return -errno;
	void *base = mmap(NULL, (size_t)SHARD_BUF_COUNT * SHARD_BUF_SIZE, PROT_READ | PROT_WRITE,
		MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (base == MAP_FAILED)
		return -errno;
	sh->buf_ring = br;
	sh->buf_base = base;
	struct io_uring_buf_reg reg;
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)br;
	reg.ring_entries = SHARD_BUF_COUNT;
	reg.bgid = SHARD_BUF_GROUP;
	int rc = io_uring_register_buf_ring(&sh->ring, &reg, 0);
	if (rc < 0)
		return rc;
	io_uring_buf_ring_init(sh->buf_ring);
	for (uint16_t bid = 0; bid < SHARD_BUF_COUNT; bid++)
		shard_buf_return(sh, bid);
	io_uring_buf_ring_advance(sh->buf_ring, (int)sh->buf_returned);
	sh->buf_returned = 0;
	return 0;
}

static int
shard_listen_one(const struct config_addr *a)
{
	int fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* Each shard has its own socket on the same address; the kernel spreads connections. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
		goto fail;
	if (a->sa.ss_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&a->sa, a->sa_len) != 0)
		goto fail;
	if (listen(fd, SHARD_LISTEN_BACKLOG) != 0)
		goto fail;
	return fd;
fail:;
	int rc = -errno;
	close(fd);
	return rc;
}

static void
shard_arm_accept(struct shard *sh, uint32_t i)
{
	struct io_uring_sqe *sqe = shard_sqe(sh);
	io_uring_prep_multishot_accept(sqe, sh->listen_fd[i], NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, shard_user_data(SHARD_OP_ACCEPT, i, 0));
}

static int
shard_listen(struct shard *sh)
{
	const struct config *cfg = sh->eng->cfg;
	for (uint32_t i = 0; i < cfg->listen_count && i < SHARD_LISTEN_MAX; i++) {
		int fd = shard_listen_one(&cfg->listen[i]);
		if (fd < 0)
			return fd;
		sh->listen_fd[sh->listen_count++] = fd;
		shard_arm_accept(sh, i);
	}
	return 0;
}

static void
shard_begin_stop(struct shard *sh)
{
	if (sh->stopping)
		return;
	sh->stopping = true;
	sh->stop_deadline_ms = sh->now_ms + SHARD_STOP_GRACE_MS;
	for (uint32_t i = 0; i < sh->listen_count; i++) {
		struct io_uring_sqe *sqe = shard_sqe(sh);
		io_uring_prep_cancel64(sqe, shard_user_data(SHARD_OP_ACCEPT, i, 0), 0);
		io_uring_sqe_set_data64(sqe, shard_user_data(SHARD_OP_NONE, 0, 0));
	}
	conn_shutdown_all(sh);
}

static void
shard_accept_done(struct shard *sh, struct io_uring_cqe *cqe)
{
	uint32_t i = shard_ud_slot(cqe->user_data);
	if (cqe->res >= 0)
		conn_accept(sh, cqe->res);
	else if (cqe->res != -ECANCELED && cqe->res != -EMFILE && cqe->res != -ENFILE)
		log_error(sh->now_real_ms, "accept", cqe->res);
	if (!(cqe->flags & IORING_CQE_F_MORE) && !sh->stopping)
		shard_arm_accept(sh, i);
}

static void
shard_dispatch(struct shard *sh, struct io_uring_cqe *cqe)
{
	switch (shard_ud_op(cqe->user_data)) {
	case SHARD_OP_ACCEPT:
		shard_accept_done(sh, cqe);
		break;
	case SHARD_OP_RECV:
	case SHARD_OP_SEND:
		conn_complete(sh, cqe);
		break;
	case SHARD_OP_MSG:
		if (shard_ud_slot(cqe->user_data) == SHARD_MSG_STOP)
			shard_begin_stop(sh);
		break;
	case SHARD_OP_SPOOL:
		spool_complete(sh->spool, cqe);
		break;
	case SHARD_OP_DELIVER:
		deliver_complete(sh->deliver, cqe);
		break;
	case SHARD_OP_NONE:
	case SHARD_OP_CLOSE:
	case SHARD_OP_CANCEL:
		break;
	}
}

/* Work that batches over a whole turn: buffers back, receives re-armed, timers, group commit. */
static void
shard_end_turn(struct shard *sh)
{
	if (sh->buf_returned > 0) {
		io_uring_buf_ring_advance(sh->buf_ring, (int)sh->buf_returned);
		sh->buf_returned = 0;
	}
	conn_rearm_all(sh);
	conn_expire(sh);
	deliver_kick(sh->deliver);
	spool_flush(sh->spool);
}

static bool
shard_done(struct shard *sh)
{
	if (!sh->stopping || !spool_idle(sh->spool))
		return false;   /* nothing acknowledged or being acknowledged is left behind */
	if (sh->now_ms >= sh->stop_deadline_ms)
		return true;
	return sh->conn_live == 0 && deliver_idle(sh->deliver);
}

static uint64_t
shard_wait_ms(struct shard *sh)
{
	uint64_t ms = SHARD_IDLE_WAIT_MS;
	uint64_t t = conn_next_deadline_ms(sh);
	if (t < ms)
		ms = t;
	t = deliver_next_retry_ms(sh->deliver);
	if (t < ms)
		ms = t;
	t = spool_next_flush_ms(sh->spool);
	if (t < ms)
		ms = t;
	return sh->stopping && ms > 100 ? 100 : ms;
}

static void
shard_loop(struct shard *sh)
{
	while (!shard_done(sh)) {
		uint64_t ms = shard_wait_ms(sh);
		struct __kernel_timespec ts = { .tv_sec = (long long)(ms / 1000),
			.tv_nsec = (long long)(ms % 1000) * 1000000 };
		struct io_uring_cqe *cqe;
		int rc = io_uring_submit_and_wait_timeout(&sh->ring, &cqe, 1, &ts, NULL);
		if (rc < 0 && rc != -ETIME && rc != -EINTR && rc != -EBUSY)
			log_error(sh->now_real_ms, "io_uring_enter", rc);
		shard_clock(sh);
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&sh->ring, head, cqe) {
			shard_dispatch(sh, cqe);
			if (++seen == SHARD_CQE_BATCH_MAX)
				break;
		}
		io_uring_cq_advance(&sh->ring, seen);
		shard_end_turn(sh);
	}
}

static int
shard_setup(struct shard *sh)
{
	shard_clock(sh);
	int rc = shard_ring_init(sh);
	if (rc < 0)
		return rc;
	rc = shard_bufs_init(sh);
	if (rc < 0)
		return rc;
	rc = spool_open(sh, sh->eng->cfg->spool_dir, &sh->spool);
	if (rc < 0)
		return rc;
	rc = deliver_init(sh, &sh->deliver);
	if (rc < 0)
		return rc;
	(void)spool_redeliver(sh->spool);
	return shard_listen(sh);
}

/* At exit: what this shard did, for operators and for perf/ (the fdatasyncs go through the ring,
 * where strace cannot count them). */
static void
shard_log_stats(struct shard *sh)
{
	char buf[LOG_LINE_MAX];
	struct log_line l;
	log_line_begin(&l, buf, sizeof(buf), sh->now_real_ms, "stats");
	log_line_u64(&l, "shard", sh->index);
	log_line_u64(&l, "connections", sh->stats.accepted_conns);
	log_line_u64(&l, "messages", sh->stats.messages_committed);
	log_line_u64(&l, "fdatasyncs", sh->stats.fdatasyncs);
	log_line_u64(&l, "maildir_syncs", sh->stats.maildir_syncs);
	log_line_u64(&l, "deliveries", sh->stats.deliveries);
	log_line_u64(&l, "body_bytes", sh->stats.body_bytes);
	log_line_u64(&l, "body_copied", sh->stats.body_copied);
	log_write(buf, log_line_end(&l));
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
	shard_loop(sh);
	shard_log_stats(sh);
	for (uint32_t i = 0; i < sh->listen_count; i++)
		close(sh->listen_fd[i]);
	return NULL;
}

int
shard_start(struct shard *sh, const struct engine *eng, uint32_t index)
{
	memset(sh, 0, sizeof(*sh));
	sh->index = index;
	sh->eng = eng;
	sh->conn_free = UINT32_MAX;
	timer_list_init(&sh->idle_cmd, eng->cfg->cmd_timeout_ms);
	timer_list_init(&sh->idle_data, eng->cfg->data_timeout_ms);
	sh->conns = calloc(eng->cfg->max_connections, sizeof(*sh->conns));
	sh->rcpt_scratch = calloc(SMTP_RCPT_COUNT_MAX, sizeof(*sh->rcpt_scratch));
	if (sh->conns == NULL || sh->rcpt_scratch == NULL)
		return -ENOMEM;
	sh->ready_fd = eventfd(0, EFD_CLOEXEC);
	if (sh->ready_fd < 0)
		return -errno;
	int rc = pthread_create(&sh->thread, NULL, shard_main, sh);
	if (rc != 0)
		return -rc;
	uint64_t v;
	(void)!read(sh->ready_fd, &v, sizeof(v));
	close(sh->ready_fd);
	if (sh->start_rc < 0)
		pthread_join(sh->thread, NULL);
	return sh->start_rc;
}

int
shard_request_stop(struct io_uring *from, struct shard *sh)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(from);
	if (sqe == NULL)
		return -EBUSY;
	io_uring_prep_msg_ring(sqe, sh->ring_fd, 0,
		shard_user_data(SHARD_OP_MSG, SHARD_MSG_STOP, 0), 0);
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

int
shard_join(struct shard *sh)
{
	pthread_join(sh->thread, NULL);
	if (sh->spool != NULL)
		spool_close(sh->spool);
	if (sh->deliver != NULL)
		deliver_fini(sh->deliver);
	io_uring_queue_exit(&sh->ring);
	return 0;
}
