/* engine/listen.c - listening sockets and multishot accepts; see listen.h. */
#include "engine/listen.h"

#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/log.h"
#include "engine/smtpd.h"

struct listeners {
	struct ring *ring;
	struct smtpd *smtpd;
	uint8_t op;
	int fd[LISTEN_MAX];
	uint32_t profile[LISTEN_MAX];
	bool armed[LISTEN_MAX];
	uint64_t retry_at_ms[LISTEN_MAX];   /* 0: not waiting */
	uint32_t count;
	uint64_t logged_ms;
	uint64_t unlogged;                  /* exhaustions since the last log line */
	struct listen_stats stats;
};

/* A Unix socket (local_listen): one shard serves it (SO_REUSEPORT spreads nothing there). A
 * socket file left by an earlier run is replaced; anything else at the path is an error. The
 * socket is for every local user (mode 0666): who they are comes from SO_PEERCRED. */
static int
listen_socket_unix(const struct listen_spec *s)
{
	const struct sockaddr_un *sun = (const struct sockaddr_un *)&s->sa;
	struct stat st;
	if (lstat(sun->sun_path, &st) == 0 && !S_ISSOCK(st.st_mode))
		return -EEXIST;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	(void)unlink(sun->sun_path);
	if (bind(fd, (const struct sockaddr *)&s->sa, s->sa_len) != 0
		|| chmod(sun->sun_path, LISTEN_UNIX_MODE) != 0
		|| listen(fd, LISTEN_BACKLOG) != 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

static int
listen_socket(const struct listen_spec *s)
{
	if (s->sa.ss_family == AF_UNIX)
		return listen_socket_unix(s);
	int fd = socket(s->sa.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* Each shard has its own socket on the same address; the kernel spreads connections. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
		goto fail;
	if (s->sa.ss_family == AF_INET6)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&s->sa, s->sa_len) != 0)
		goto fail;
	if (listen(fd, LISTEN_BACKLOG) != 0)
		goto fail;
	return fd;
fail:;
	int rc = -errno;
	close(fd);
	return rc;
}

static void
listen_arm(struct listeners *l, uint32_t i)
{
	struct io_uring_sqe *sqe = ring_sqe(l->ring);
	io_uring_prep_multishot_accept(sqe, l->fd[i], NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ring_ud(l->op, i, 0));
	l->armed[i] = true;
	l->retry_at_ms[i] = 0;
}

static void
listen_exhausted(struct listeners *l, uint32_t i, int err)
{
	l->stats.fd_exhausted++;
	l->unlogged++;
	l->retry_at_ms[i] = l->ring->now_ms + LISTEN_BACKOFF_MS;
	if (l->logged_ms != 0 && l->ring->now_ms < l->logged_ms + LISTEN_LOG_INTERVAL_MS)
		return;
	char buf[LOG_LINE_MAX];
	struct log_line line;
	log_line_begin(&line, buf, sizeof(buf), l->ring->now_real_ms, "accept_paused");
	log_line_u64(&line, "shard", l->ring->shard);
	log_line_str(&line, "error", err == -EMFILE ? "EMFILE" : "ENFILE");
	log_line_u64(&line, "times", l->unlogged);
	log_line_u64(&line, "retry_ms", LISTEN_BACKOFF_MS);
	log_write(buf, log_line_end(&line));
	l->logged_ms = l->ring->now_ms;
	l->unlogged = 0;
}

static void
listen_complete(void *ctx, const struct io_uring_cqe *cqe)
{
	struct listeners *l = ctx;
	uint32_t i = ring_ud_slot(cqe->user_data);
	ASSERT(i < l->count);
	if (!(cqe->flags & IORING_CQE_F_MORE))
		l->armed[i] = false;
	if (cqe->res >= 0) {
		l->stats.accepted++;
		smtpd_accept(l->smtpd, cqe->res, l->profile[i]);
	} else if (cqe->res == -EMFILE || cqe->res == -ENFILE) {
		listen_exhausted(l, i, cqe->res);
	} else if (cqe->res != -ECANCELED) {
		log_error(l->ring->now_real_ms, "accept", cqe->res);
	}
	if (!l->armed[i] && !l->ring->stopping && l->retry_at_ms[i] == 0)
		listen_arm(l, i);
}

static void
listen_turn(void *ctx)
{
	struct listeners *l = ctx;
	for (uint32_t i = 0; i < l->count && !l->ring->stopping; i++) {
		if (!l->armed[i] && l->retry_at_ms[i] != 0 && l->retry_at_ms[i] <= l->ring->now_ms)
			listen_arm(l, i);
	}
}

static uint64_t
listen_next_ms(void *ctx)
{
	const struct listeners *l = ctx;
	uint64_t ms = UINT64_MAX;
	for (uint32_t i = 0; i < l->count; i++) {
		if (l->armed[i] || l->retry_at_ms[i] == 0)
			continue;
		uint64_t t = l->retry_at_ms[i] > l->ring->now_ms ? l->retry_at_ms[i] - l->ring->now_ms : 0;
		if (t < ms)
			ms = t;
	}
	return ms;
}

static void
listen_stop(void *ctx)
{
	struct listeners *l = ctx;
	for (uint32_t i = 0; i < l->count; i++) {
		if (!l->armed[i])
			continue;
		struct io_uring_sqe *sqe = ring_sqe(l->ring);
		io_uring_prep_cancel64(sqe, ring_ud(l->op, i, 0), 0);
		io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_NONE, 0, 0));
	}
	/* Closed now, so that clients waiting in the backlog are refused rather than left hanging
	 * (the accept in flight holds its own reference until the cancel ends it). */
	for (uint32_t i = 0; i < l->count; i++) {
		if (l->fd[i] >= 0)
			close(l->fd[i]);
		l->fd[i] = -1;
	}
}

static const struct ring_hooks listen_hooks = {
	.name = "listen",
	.turn = listen_turn,
	.next_ms = listen_next_ms,
	.stop = listen_stop,
};

int
listeners_open(struct ring *r, struct smtpd *d, const struct listen_spec *specs,
	uint32_t count, struct listeners **out, uint32_t *failed)
{
	if (count > LISTEN_MAX)
		return -E2BIG;
	struct listeners *l = calloc(1, sizeof(*l));
	if (l == NULL)
		return -ENOMEM;
	l->ring = r;
	l->smtpd = d;
	for (uint32_t i = 0; i < count; i++) {
		int fd = listen_socket(&specs[i]);
		if (fd < 0) {
			*failed = i;
			listeners_close(l);
			return fd;
		}
		l->fd[l->count] = fd;
		l->profile[l->count] = specs[i].profile;
		l->count++;
	}
	l->op = ring_op_register(r, listen_complete, l);
	ring_hooks_register(r, &listen_hooks, l);
	for (uint32_t i = 0; i < l->count; i++)
		listen_arm(l, i);
	*out = l;
	return 0;
}

void
listeners_close(struct listeners *l)
{
	for (uint32_t i = 0; i < l->count; i++) {
		if (l->fd[i] >= 0)
			close(l->fd[i]);
	}
	free(l);
}

const struct listen_stats *
listeners_stats(const struct listeners *l)
{
	return &l->stats;
}
