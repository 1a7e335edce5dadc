/* base/log_sink.c - a shard's log buffers and their writes through the ring; see log_sink.h. */
#include "base/log_sink.h"

#include <errno.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/log.h"

#define LOG_SINK_STREAM_WRITE_MAX PIPE_BUF                   /* octets a pipe takes whole */
#define LOG_SINK_IOV_MAX          (LOG_SINK_BUF_COUNT + 1u)  /* every buffer, and a LF first */
/* Writes log_sink_close may make: a stream write carries at least STREAM_WRITE_MAX - LINE_MAX
 * octets (it ends at the last line end that fits), so 1 MiB needs 512 of them. */
#define LOG_SINK_DRAIN_WRITES_MAX 1024u

_Static_assert(LOG_LINE_MAX + 1u <= LOG_SINK_STREAM_WRITE_MAX, "a LF and a line: one pipe write");
_Static_assert(LOG_SINK_BUF_SIZE >= 2u * LOG_LINE_MAX, "a buffer holds several lines");
_Static_assert((uint64_t)LOG_SINK_BUF_SIZE * LOG_SINK_BUF_COUNT + 1u <= INT32_MAX,
	"the length of a write fits cqe->res");
_Static_assert(LOG_SINK_IOV_MAX <= IOV_MAX, "one writev takes every buffer");
_Static_assert((uint64_t)LOG_SINK_DRAIN_WRITES_MAX * (LOG_SINK_STREAM_WRITE_MAX - LOG_LINE_MAX)
	>= (uint64_t)LOG_SINK_BUF_SIZE * LOG_SINK_BUF_COUNT, "close can write every buffer");

struct log_sink_buf {
	char *data;                 /* LOG_SINK_BUF_SIZE octets */
	uint32_t len;               /* octets of whole lines */
	uint32_t done;              /* of them, written */
};

struct log_sink {
	struct ring *ring;
	uint8_t op;
	uint32_t head;              /* bufs index of the oldest buffer in use */
	uint32_t used;              /* buffers in use from head; the last one takes new lines */
	uint32_t flying;            /* of them, covered by the write in flight (0: none) */
	uint32_t flying_len;        /* octets of that write */
	uint32_t queued;            /* octets not written yet, those in flight included */
	bool lf_owed;               /* the next write begins with a LF: a cut line must end */
	bool lf_flying;             /* the write in flight does */
	bool stream_flying;         /* the write in flight is a stream write (not O_APPEND) */
	uint32_t cuts_seen;         /* log_sink_cuts when this sink last looked */
	int error;                  /* of the last write; 0 once one succeeds */
	uint64_t retry_ms;          /* after an error, no write before this (ring now_ms) */
	uint64_t oldest_ms;         /* when the oldest line in no write yet came; UINT64_MAX: none */
	uint64_t unreported;        /* dropped lines that no log_dropped line has counted yet */
	struct log_sink_stats stats;
	struct iovec iov[LOG_SINK_IOV_MAX];
	struct log_sink_buf bufs[LOG_SINK_BUF_COUNT];
	char *mem;                  /* the buffers' octets, reserved at open */
};

static const char log_sink_lf[] = "\n";

/* Writes cut inside a line, by any sink of the process. Every sink that sees this count move
 * begins its next write with a LF, so that whichever write lands first ends the cut piece; a
 * sink starts from 0, so one opened after a cut owes a LF as well. */
static _Atomic uint32_t log_sink_cuts;

static struct log_sink_buf *
log_sink_buf(struct log_sink *s, uint32_t i)
{
	ASSERT(i < s->used);
	return &s->bufs[(s->head + i) % LOG_SINK_BUF_COUNT];
}

/* Room for len octets after the lines of the last buffer (one not in flight), or in a new one;
 * NULL when every buffer is full or in flight. */
static char *
log_sink_room(struct log_sink *s, size_t len)
{
	ASSERT(len <= LOG_LINE_MAX);
	struct log_sink_buf *b = NULL;
	if (s->used > s->flying && LOG_SINK_BUF_SIZE - log_sink_buf(s, s->used - 1)->len >= len) {
		b = log_sink_buf(s, s->used - 1);
	} else if (s->used < LOG_SINK_BUF_COUNT) {
		s->used++;
		b = log_sink_buf(s, s->used - 1);
		b->len = 0;
		b->done = 0;
	} else {
		return NULL;
	}
	char *at = b->data + b->len;
	b->len += (uint32_t)len;
	s->queued += (uint32_t)len;
	return at;
}

static void
log_sink_put(void *ctx, const char *line, size_t len)
{
	struct log_sink *s = ctx;
	ASSERT(len > 0);
	ASSERT(line[len - 1] == '\n');
	char *at = log_sink_room(s, len);
	if (at == NULL) {
		s->stats.dropped++;
		s->unreported++;
		return;
	}
	memcpy(at, line, len);   /* copy: the caller's line is on its stack */
	s->stats.lines++;
	if (s->oldest_ms == UINT64_MAX)
		s->oldest_ms = s->ring->now_ms;
}

static size_t
log_sink_format_dropped(const struct log_sink *s, char *buf, size_t cap)
{
	struct log_line l;
	log_line_begin(&l, buf, cap, s->ring->now_real_ms, "log_dropped");
	log_line_u64(&l, "shard", s->ring->shard);
	log_line_u64(&l, "lines", s->unreported);
	return log_line_end(&l);
}

/* After drops, once there is room again: the line that counts them. */
static void
log_sink_report(struct log_sink *s)
{
	if (s->unreported == 0)
		return;
	char buf[LOG_LINE_MIN];
	size_t len = log_sink_format_dropped(s, buf, sizeof(buf));
	char *at = log_sink_room(s, len);
	if (at == NULL)
		return;
	memcpy(at, buf, len);
	s->stats.lines++;
	s->unreported = 0;
	if (s->oldest_ms == UINT64_MAX)
		s->oldest_ms = s->ring->now_ms;
}

/* A stream write: at most LOG_SINK_STREAM_WRITE_MAX octets with the LF owed, ending at a line
 * end. A line is shorter than that, so one always fits. */
static uint32_t
log_sink_stream_len(const struct log_sink_buf *b, bool lf)
{
	uint32_t len = b->len - b->done;
	uint32_t max = LOG_SINK_STREAM_WRITE_MAX - (lf ? 1u : 0u);
	if (len <= max)
		return len;
	const char *nl = memrchr(b->data + b->done, '\n', max);
	ASSERT(nl != NULL);
	return (uint32_t)(nl + 1 - (b->data + b->done));
}

/* Lays out the next write in iov: the LF if owed, then every buffer in use (O_APPEND) or the
 * start of the first one (a stream). Marks the buffers in flight; returns the iovec count. */
static uint32_t
log_sink_iov(struct log_sink *s, bool appends)
{
	uint32_t cuts = atomic_load_explicit(&log_sink_cuts, memory_order_relaxed);
	if (cuts != s->cuts_seen) {
		s->cuts_seen = cuts;
		s->lf_owed = true;
	}
	uint32_t n = 0;
	if (s->lf_owed)
		s->iov[n++] = (struct iovec){ .iov_base = (void *)log_sink_lf, .iov_len = 1 };
	uint32_t covered = appends ? s->used : 1;
	s->flying_len = n;
	for (uint32_t i = 0; i < covered; i++) {
		struct log_sink_buf *b = log_sink_buf(s, i);
		ASSERT(b->done < b->len);
		uint32_t len = appends ? b->len - b->done : log_sink_stream_len(b, s->lf_owed);
		s->iov[n++] = (struct iovec){ .iov_base = b->data + b->done, .iov_len = len };
		s->flying_len += len;
	}
	s->flying = covered;
	s->lf_flying = s->lf_owed;
	s->stream_flying = !appends;
	if (s->flying_len - (s->lf_flying ? 1u : 0u) == s->queued)
		s->oldest_ms = UINT64_MAX;   /* else the rest of a stream's buffer stays due */
	return n;
}

/* The write in flight is over and `written` of its octets went out. On an O_APPEND file, a write
 * cut short inside a line (the disk filled) leaves the start of that line in the file: the rest is
 * dropped, and every sink owes a LF (log_sink_cuts). */
static void
log_sink_consume(struct log_sink *s, size_t written)
{
	ASSERT(written <= s->flying_len);
	uint32_t covered = s->flying;
	s->flying = 0;
	if (s->lf_flying && written > 0) {
		s->lf_owed = false;
		written--;
	}
	while (covered > 0 && written > 0) {
		struct log_sink_buf *b = log_sink_buf(s, 0);
		size_t n = b->len - b->done < written ? b->len - b->done : written;
		b->done += (uint32_t)n;
		s->queued -= (uint32_t)n;
		written -= n;
		if (b->done < b->len)
			break;
		s->head = (s->head + 1) % LOG_SINK_BUF_COUNT;
		s->used--;
		covered--;
	}
	ASSERT(written == 0);
	if (covered > 0)
		s->oldest_ms = 0;   /* a buffer of the write is not done: its rest is due at once */
	if (s->used == 0 || s->stream_flying)
		return;   /* a stream's short write goes on with the rest of the line next time */
	struct log_sink_buf *b = log_sink_buf(s, 0);
	if (b->done == 0 || b->data[b->done - 1] == '\n')
		return;
	const char *nl = memchr(b->data + b->done, '\n', b->len - b->done);
	ASSERT(nl != NULL);
	uint32_t rest = (uint32_t)(nl + 1 - (b->data + b->done));
	b->done += rest;
	s->queued -= rest;
	if (b->done == b->len) {
		s->head = (s->head + 1) % LOG_SINK_BUF_COUNT;
		s->used--;
	}
	s->stats.cuts++;
	s->stats.dropped++;
	s->unreported++;
	atomic_fetch_add_explicit(&log_sink_cuts, 1, memory_order_relaxed);
}

/* The lines stay for the next try; new ones are dropped once the buffers are full. */
static void
log_sink_failed(struct log_sink *s, int err)
{
	s->flying = 0;
	s->oldest_ms = 0;   /* due again as soon as retry_ms allows */
	s->stats.write_errors++;
	s->error = err;
	s->retry_ms = s->ring->now_ms + LOG_SINK_RETRY_MS;
}

static void
log_sink_complete(void *ctx, const struct io_uring_cqe *cqe)
{
	struct log_sink *s = ctx;
	ASSERT(s->flying > 0);
	/* 0 octets of a non-empty write, or more than it had: nothing went out that we can count. */
	if (cqe->res <= 0 || (uint32_t)cqe->res > s->flying_len) {
		log_sink_failed(s, cqe->res < 0 ? cqe->res : -EIO);
		return;
	}
	log_sink_consume(s, (size_t)cqe->res);
	s->error = 0;
	log_sink_report(s);
}

/* When the next write may start at the end of a turn (ring now_ms), if the lines have waited
 * `wait_ms`; UINT64_MAX: nothing to write, or a write in flight. */
static uint64_t
log_sink_due_ms(const struct log_sink *s, uint64_t wait_ms)
{
	if (s->flying > 0 || s->queued == 0)
		return UINT64_MAX;
	uint64_t due = 0;
	if (!s->ring->stopping && s->queued < LOG_SINK_FLUSH_OCTETS && s->oldest_ms != UINT64_MAX)
		due = s->oldest_ms + wait_ms;
	return due > s->retry_ms ? due : s->retry_ms;
}

/* End of the loop turn: once due, every line logged so far in one write. */
static void
log_sink_turn(void *ctx)
{
	struct log_sink *s = ctx;
	if (s->ring->now_ms < log_sink_due_ms(s, LOG_SINK_GATHER_MS))
		return;
	bool appends = log_fd_appends();
	uint32_t n = log_sink_iov(s, appends);
	struct io_uring_sqe *sqe = ring_sqe(s->ring);
	/* Offset -1: at the file position, which O_APPEND moves to the end under the file's lock. */
	io_uring_prep_writev(sqe, log_fd(), s->iov, n, (uint64_t)-1);
	if (appends)
		sqe->flags |= IOSQE_ASYNC;   /* one blocking write, never split (see log_sink.h) */
	io_uring_sqe_set_data64(sqe, ring_ud(s->op, 0, 0));
	s->stats.writes++;
}

static uint64_t
log_sink_next_ms(void *ctx)
{
	const struct log_sink *s = ctx;
	uint64_t due = log_sink_due_ms(s, LOG_SINK_LINGER_MS);
	if (due == UINT64_MAX)
		return UINT64_MAX;
	return due > s->ring->now_ms ? due - s->ring->now_ms : 0;
}

/* A failing log does not hold the shard up: log_sink_close counts what it cannot write. */
static bool
log_sink_idle(void *ctx)
{
	const struct log_sink *s = ctx;
	return s->flying == 0 && (s->queued == 0 || s->error != 0);
}

static const struct ring_hooks log_sink_hooks = {
	.name = "log",
	.turn = log_sink_turn,
	.next_ms = log_sink_next_ms,
	.idle = log_sink_idle,
};

int
log_sink_open(struct ring *r, struct log_sink **out)
{
	struct log_sink *s = calloc(1, sizeof(*s));
	if (s == NULL)
		return -ENOMEM;
	s->mem = malloc((size_t)LOG_SINK_BUF_COUNT * LOG_SINK_BUF_SIZE);
	if (s->mem == NULL) {
		free(s);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < LOG_SINK_BUF_COUNT; i++)
		s->bufs[i].data = s->mem + (size_t)i * LOG_SINK_BUF_SIZE;
	s->ring = r;
	s->oldest_ms = UINT64_MAX;
	s->op = ring_op_register(r, log_sink_complete, s);
	ring_hooks_register(r, &log_sink_hooks, s);
	log_thread_sink(log_sink_put, s);
	*out = s;
	return 0;
}

const struct log_sink_stats *
log_sink_stats(const struct log_sink *s)
{
	return &s->stats;
}

static uint64_t
log_sink_lines_left(struct log_sink *s)
{
	uint64_t lines = 0;
	for (uint32_t i = 0; i < s->used; i++) {
		struct log_sink_buf *b = log_sink_buf(s, i);
		for (uint32_t at = b->done; at < b->len; at++)
			lines += b->data[at] == '\n';
	}
	return lines;
}

/* After the loop: what is left, with blocking writes laid out as in the ring. */
static void
log_sink_drain(struct log_sink *s)
{
	for (uint32_t round = 0; s->queued > 0 && round < LOG_SINK_DRAIN_WRITES_MAX; round++) {
		uint32_t n = log_sink_iov(s, log_fd_appends());
		ssize_t w = writev(log_fd(), s->iov, (int)n);
		if (w <= 0 || (size_t)w > s->flying_len) {
			s->flying = 0;
			if (w < 0 && errno == EINTR)
				continue;
			break;
		}
		log_sink_consume(s, (size_t)w);
	}
	uint64_t lost = log_sink_lines_left(s);
	s->stats.dropped += lost;
	s->unreported += lost;
	s->used = 0;
	s->queued = 0;
}

void
log_sink_close(struct log_sink *s)
{
	ASSERT(s->flying == 0);   /* the loop ended idle */
	log_thread_sink(NULL, NULL);
	log_sink_report(s);
	log_sink_drain(s);
	if (s->unreported > 0) {
		char buf[LOG_LINE_MIN];
		log_write(buf, log_sink_format_dropped(s, buf, sizeof(buf)));
	}
	free(s->mem);
	free(s);
}

void
log_sink_abandon(struct log_sink *s)
{
	log_thread_sink(NULL, NULL);
	for (uint32_t i = s->flying; i < s->used; i++) {
		struct log_sink_buf *b = log_sink_buf(s, i);
		for (uint32_t at = b->done; at < b->len; ) {
			ssize_t w = write(log_fd(), b->data + at, b->len - at);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0)
				return;   /* the log fails: nothing more can be said */
			at += (uint32_t)w;
		}
	}
}
