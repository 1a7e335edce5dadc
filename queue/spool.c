/* queue/spool.c - the ring-driven log writer with group commit; see spool.h. */
#include "queue/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "engine/conn.h"
#include "engine/shard.h"
#include "queue/index.h"
#include "deliver/maildir.h"
#include "queue/msg.h"
#include "base/queue_id.h"
#include "queue/record.h"
#include "queue/recover.h"

#define SPOOL_STATE_PAYLOAD_MAX 16u
#define SPOOL_CHUNK_BYTES_MAX   (1u << 30)   /* bytes per pwritev: its length fits user_data */
#define SPOOL_STATE_DELAY_MS    1000u        /* state records alone wait this long for company */

enum spool_req { SPOOL_REQ_WRITE = 1, SPOOL_REQ_FSYNC, SPOOL_REQ_UNLINK };

struct spool_rec {
	struct msg *m;                                          /* MESSAGE, else NULL */
	uint8_t bytes[RECORD_HEADER_SIZE + SPOOL_STATE_PAYLOAD_MAX];   /* a state record */
	uint32_t len;
};

struct spool_batch {
	struct spool_rec *recs;
	uint32_t count;
	uint32_t cap;
};

struct spool {
	struct shard *sh;
	int dir_fd;
	int seg_fd;
	uint32_t seg_id;
	uint64_t seg_off;
	uint32_t oldest_seg;            /* segments below it are deleted */
	struct index ix;
	struct queue_id_gen qids;
	struct spool_batch queued;
	uint32_t queued_messages;       /* MESSAGE records in queued */
	uint64_t queued_since_ms;       /* when queued stopped being empty */
	struct spool_batch flying;
	struct iovec *iov;
	uint32_t iov_cap;
	uint32_t cqe_wait;              /* completions the flying batch still expects */
	int batch_err;
	uint64_t batch_off;             /* where the flying batch starts in the segment */
	bool busy;
	uint32_t unlinks_in_flight;
	char seg_names[2][32];          /* names of segments being unlinked, by parity */
};

static void
spool_seg_name(uint32_t seg, char out[32])
{
	snprintf(out, 32, "%016" PRIx64 ".log", (uint64_t)seg);
}

static int
spool_seg_open(struct spool *sp, uint32_t seg)
{
	char name[32];
	spool_seg_name(seg, name);
	int fd = openat(sp->dir_fd, name, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	/* The new name must be durable before any record in it is acknowledged. */
	if (fsync(sp->dir_fd) != 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

int
spool_sync_parent(const char *path)
{
	char parent[4096];
	snprintf(parent, sizeof(parent), "%s", path);
	size_t len = strlen(parent);
	while (len > 1 && parent[len - 1] == '/')
		parent[--len] = '\0';
	char *slash = strrchr(parent, '/');
	if (slash == NULL)
		snprintf(parent, sizeof(parent), ".");
	else if (slash == parent)
		parent[1] = '\0';
	else
		*slash = '\0';
	int fd = open(parent, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
#ifdef RINGMTA_UNSAFE_SKIP_SYNC
	int rc = 0;
#else
	int rc = fsync(fd) == 0 ? 0 : -errno;
#endif
	close(fd);
	return rc;
}

int
spool_open(struct shard *sh, const char *spool_dir, struct spool **out)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/%u", spool_dir, sh->index);
	if (mkdir(spool_dir, 0700) != 0 && errno != EEXIST)
		return -errno;
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		return -errno;
	/* Their names must be durable too, created now or by a run that crashed before a sync. */
	int prc = spool_sync_parent(spool_dir);
	if (prc == 0)
		prc = spool_sync_parent(path);
	if (prc < 0)
		return prc;
	struct spool *sp = calloc(1, sizeof(*sp));
	if (sp == NULL)
		return -ENOMEM;
	sp->sh = sh;
	sp->seg_fd = -1;
	int rc = index_init(&sp->ix);
	if (rc < 0)
		goto fail_free;
	sp->dir_fd = open(path, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (sp->dir_fd < 0) {
		rc = -errno;
		goto fail_index;
	}
	struct recover_result res;
	rc = recover_shard(path, &sp->ix, &res);
	if (rc < 0)
		goto fail_dir;
	sp->seg_id = res.segment_count > 0 ? res.last_segment : 0;
	sp->seg_off = res.segment_count > 0 ? res.last_valid_end : 0;
	sp->oldest_seg = res.segment_count > 0 ? res.first_segment : 0;
	rc = spool_seg_open(sp, sp->seg_id);
	if (rc < 0)
		goto fail_dir;
	sp->seg_fd = rc;
	queue_id_gen_init(&sp->qids, sh->index, (uint64_t)sh->now_real_ms / 1000, res.max_queue_id);
	*out = sp;
	return 0;
fail_dir:
	close(sp->dir_fd);
fail_index:
	index_fini(&sp->ix);
fail_free:
	free(sp);
	return rc;
}

uint64_t
spool_next_qid(struct spool *sp)
{
	return queue_id_next(&sp->qids);
}

static struct spool_rec *
spool_queue_rec(struct spool *sp)
{
	struct spool_batch *b = &sp->queued;
	if (b->count == 0)
		sp->queued_since_ms = sp->sh->now_ms;
	if (b->count == b->cap) {
		uint32_t cap = b->cap ? b->cap * 2 : 64;
		struct spool_rec *grown = realloc(b->recs, cap * sizeof(*grown));
		ASSERT(grown != NULL);   /* bounded by messages in flight; start-up sized */
		b->recs = grown;
		b->cap = cap;
	}
	return &b->recs[b->count++];
}

void
spool_commit(struct spool *sp, struct msg *m)
{
	ASSERT(m->head != NULL);
	ASSERT(m->head_len >= RECORD_HEADER_SIZE);
	struct spool_rec *r = spool_queue_rec(sp);
	r->m = m;
	r->len = 0;
	sp->queued_messages++;
}

void
spool_mark_final(struct spool *sp, uint64_t qid, uint8_t record_type, uint32_t rcpt)
{
	ASSERT(record_type == RECORD_DELIVERED || record_type == RECORD_BOUNCED);
	struct spool_rec *r = spool_queue_rec(sp);
	r->m = NULL;
	uint8_t payload[4] = { (uint8_t)rcpt, (uint8_t)(rcpt >> 8), (uint8_t)(rcpt >> 16),
		(uint8_t)(rcpt >> 24) };
	struct iovec iov = { .iov_base = payload, .iov_len = sizeof(payload) };
	record_header_encode(r->bytes, record_type, qid, &iov, 1);
	memcpy(r->bytes + RECORD_HEADER_SIZE, payload, sizeof(payload));
	r->len = RECORD_HEADER_SIZE + sizeof(payload);
	index_mark_final(&sp->ix, qid, rcpt,
		record_type == RECORD_DELIVERED ? INDEX_RCPT_DELIVERED : INDEX_RCPT_BOUNCED);
}

static void
spool_iov_reserve(struct spool *sp, uint32_t n)
{
	if (n <= sp->iov_cap)
		return;
	uint32_t cap = sp->iov_cap ? sp->iov_cap : 256;
	while (cap < n)
		cap *= 2;
	struct iovec *grown = realloc(sp->iov, cap * sizeof(*grown));
	ASSERT(grown != NULL);
	sp->iov = grown;
	sp->iov_cap = cap;
}

/* Lays the batch's records out as iovecs and places each message at its offset. */
static uint32_t
spool_batch_iov(struct spool *sp)
{
	spool_iov_reserve(sp, sp->flying.count * 2);
	uint32_t n = 0;
	uint64_t off = sp->seg_off;
	for (uint32_t i = 0; i < sp->flying.count; i++) {
		struct spool_rec *r = &sp->flying.recs[i];
		if (r->m != NULL) {
			r->m->segment = sp->seg_id;
			r->m->offset = off;
			sp->iov[n++] = (struct iovec){ r->m->head, r->m->head_len };
			sp->iov[n++] = (struct iovec){ r->m->body, r->m->body_len };
			off += r->m->head_len + r->m->body_len;
		} else {
			sp->iov[n++] = (struct iovec){ r->bytes, r->len };
			off += r->len;
		}
	}
	return n;
}

static int
spool_rollover(struct spool *sp)
{
	int fd = spool_seg_open(sp, sp->seg_id + 1);
	if (fd < 0)
		return fd;
	close(sp->seg_fd);
	sp->seg_fd = fd;
	sp->seg_id++;
	sp->seg_off = 0;
	return 0;
}

/* Whether the queued records should go now. A message waits for its 250, so it goes at once;
 * state records alone need no fdatasync of their own (a delivery whose mark is lost is repeated
 * idempotently), so they wait up to SPOOL_STATE_DELAY_MS for a message to share one with. */
static bool
spool_due(const struct spool *sp)
{
	if (sp->busy || sp->queued.count == 0)
		return false;
	return sp->queued_messages > 0 || sp->sh->stopping
		|| sp->sh->now_ms >= sp->queued_since_ms + SPOOL_STATE_DELAY_MS;
}

/* Submits one chain: pwritev of every queued record (in chunks), then one fdatasync. */
void
spool_flush(struct spool *sp)
{
	if (!spool_due(sp))
		return;
	if (sp->seg_off >= SPOOL_SEGMENT_SIZE)
		(void)spool_rollover(sp);   /* on failure, keep appending to the current one */
	struct spool_batch tmp = sp->flying;
	sp->flying = sp->queued;
	sp->queued = tmp;
	sp->queued.count = 0;
	sp->queued_messages = 0;
	sp->batch_off = sp->seg_off;
	uint32_t n = spool_batch_iov(sp);
	shard_sqe_reserve(sp->sh, n + 1 < SHARD_RING_ENTRIES ? n + 1 : SHARD_RING_ENTRIES);
	uint32_t chunks = 0;
	for (uint32_t i = 0; i < n;) {
		uint32_t count = 0;
		uint64_t bytes = 0;
		while (i + count < n && count < SPOOL_BATCH_IOV_MAX
			&& bytes + sp->iov[i + count].iov_len <= SPOOL_CHUNK_BYTES_MAX) {
			bytes += sp->iov[i + count].iov_len;
			count++;
		}
		if (count == 0) {   /* a single iovec over the chunk bound: alone in its chunk */
			bytes = sp->iov[i].iov_len;
			count = 1;
		}
		struct io_uring_sqe *sqe = shard_sqe(sp->sh);
		io_uring_prep_writev(sqe, sp->seg_fd, &sp->iov[i], count, sp->seg_off);
		sqe->flags |= IOSQE_IO_LINK;
		io_uring_sqe_set_data64(sqe, shard_user_data(SHARD_OP_SPOOL, SPOOL_REQ_WRITE,
			(uint32_t)bytes));
		sp->seg_off += bytes;
		i += count;
		chunks++;
	}
	struct io_uring_sqe *sqe = shard_sqe(sp->sh);
#ifdef RINGMTA_UNSAFE_SKIP_SYNC
	io_uring_prep_nop(sqe);   /* the power-cut test's self-check build: meson_options.txt */
#else
	io_uring_prep_fsync(sqe, sp->seg_fd, IORING_FSYNC_DATASYNC);
#endif
	io_uring_sqe_set_data64(sqe, shard_user_data(SHARD_OP_SPOOL, SPOOL_REQ_FSYNC, 0));
	sp->cqe_wait = chunks + 1;
	sp->batch_err = 0;
	sp->busy = true;
	sp->sh->stats.fdatasyncs++;
}

/* Deletes the oldest segments once nothing in them is live (never the active one). */
static void
spool_reclaim(struct spool *sp)
{
	while (sp->oldest_seg < sp->seg_id && sp->unlinks_in_flight < 2
		&& index_segment_live(&sp->ix, sp->oldest_seg) == 0) {
		char *name = sp->seg_names[sp->oldest_seg & 1u];
		spool_seg_name(sp->oldest_seg, name);
		struct io_uring_sqe *sqe = shard_sqe(sp->sh);
		io_uring_prep_unlinkat(sqe, sp->dir_fd, name, 0);
		io_uring_sqe_set_data64(sqe, shard_user_data(SHARD_OP_SPOOL, SPOOL_REQ_UNLINK, 0));
		sp->unlinks_in_flight++;
		sp->oldest_seg++;
	}
}

static void
spool_batch_done(struct spool *sp)
{
	struct shard *sh = sp->sh;
	for (uint32_t i = 0; i < sp->flying.count; i++) {
		struct msg *m = sp->flying.recs[i].m;
		if (m == NULL)
			continue;
		int rc = sp->batch_err;
		if (rc == 0)
			rc = index_insert(&sp->ix, m->qid, m->segment, m->offset,
				m->head_len + (uint32_t)m->body_len, m->rcpt_count, m->arrival_ms);
		conn_committed(sh, m->waiter_slot, m->waiter_gen, rc, m->qid);
		if (rc == 0) {
			sh->stats.messages_committed++;
			deliver_message(sh->deliver, m, true);
		}
		msg_unref(m);
	}
	sp->flying.count = 0;
	sp->busy = false;
	/* A failed batch left unknown bytes: the next one is written over them, so the valid
	 * records stay a prefix of the segment and recovery never has to look past a bad one. */
	if (sp->batch_err != 0)
		sp->seg_off = sp->batch_off;
	spool_reclaim(sp);
}

void
spool_complete(struct spool *sp, struct io_uring_cqe *cqe)
{
	uint32_t req = shard_ud_slot(cqe->user_data);
	if (req == SPOOL_REQ_UNLINK) {
		sp->unlinks_in_flight--;
		spool_reclaim(sp);
		return;
	}
	ASSERT(sp->busy);
	ASSERT(sp->cqe_wait > 0);
	int err = 0;
	if (cqe->res < 0)
		err = cqe->res;
	else if (req == SPOOL_REQ_WRITE && (uint32_t)cqe->res != shard_ud_gen(cqe->user_data))
		err = -ENOSPC;   /* a short write to a file: the disk filled up under it */
	if (sp->batch_err == 0 && err != 0 && err != -ECANCELED)
		sp->batch_err = err;
	if (--sp->cqe_wait == 0) {
		if (sp->batch_err == 0 && err == -ECANCELED)
			sp->batch_err = -EIO;
		spool_batch_done(sp);
	}
}

uint64_t
spool_next_flush_ms(const struct spool *sp)
{
	/* A batch in flight: its completion wakes the loop, which flushes then. */
	if (sp->busy || sp->queued.count == 0)
		return UINT64_MAX;
	if (sp->queued_messages > 0)
		return 0;
	uint64_t due = sp->queued_since_ms + SPOOL_STATE_DELAY_MS;
	return due > sp->sh->now_ms ? due - sp->sh->now_ms : 0;
}

bool
spool_idle(const struct spool *sp)
{
	return !sp->busy && sp->queued.count == 0 && sp->unlinks_in_flight == 0;
}

bool
spool_rcpt_pending(const struct spool *sp, uint64_t qid, uint32_t rcpt)
{
	return index_rcpt_pending(&sp->ix, qid, rcpt);
}

void
spool_close(struct spool *sp)
{
	ASSERT(spool_idle(sp));
	close(sp->seg_fd);
	close(sp->dir_fd);
	index_fini(&sp->ix);
	free(sp->queued.recs);
	free(sp->flying.recs);
	free(sp->iov);
	free(sp);
}

struct spool_redeliver_list {
	struct index_entry *items;
	uint32_t count;
	uint32_t cap;
};

static void
spool_collect(void *ctx, const struct index_entry *e)
{
	struct spool_redeliver_list *l = ctx;
	if (l->count == l->cap) {
		uint32_t cap = l->cap ? l->cap * 2 : 64;
		struct index_entry *grown = realloc(l->items, cap * sizeof(*grown));
		if (grown == NULL)
			return;   /* the rest waits for the next start */
		l->items = grown;
		l->cap = cap;
	}
	l->items[l->count++] = *e;
}

/* Reads one record back into a message: head = header + envelope, body = the rest. */
static struct msg *
spool_load(struct spool *sp, int seg_fd, const struct index_entry *e)
{
	uint8_t *rec = malloc(e->size);
	if (rec == NULL)
		return NULL;
	ssize_t n = pread(seg_fd, rec, e->size, (off_t)e->offset);
	struct record_view r;
	uint64_t off = 0, skipped = 0, end = 0;
	struct record_envelope_view v;
	if (n != (ssize_t)e->size
		|| record_scan_next(slice_make(rec, e->size), &off, &r, &skipped, &end) != 1
		|| r.offset != 0 || r.queue_id != e->qid
		|| record_envelope_decode(r.payload, &v) != 0)
		goto fail;
	struct msg *m = msg_new(e->qid, e->arrival_ms, v.body.len);
	if (m == NULL || msg_append(m, v.body) != 0) {
		if (m != NULL)
			msg_unref(m);
		goto fail;
	}
	m->head = rec;   /* the body part of it is never read again: m->body has it */
	m->head_len = (uint32_t)(e->size - v.body.len);
	m->rcpt_count = e->rcpt_count;
	m->segment = e->segment;
	m->offset = e->offset;
	return m;
fail:
	free(rec);
	return NULL;
}

uint32_t
spool_redeliver(struct spool *sp)
{
	struct spool_redeliver_list l = { 0 };
	index_foreach(&sp->ix, spool_collect, &l);
	uint32_t started = 0;
	int fd = -1;
	uint32_t fd_seg = UINT32_MAX;
	for (uint32_t i = 0; i < l.count; i++) {
		const struct index_entry *e = &l.items[i];
		if (e->segment != fd_seg) {
			if (fd >= 0)
				close(fd);
			char name[32];
			spool_seg_name(e->segment, name);
			fd = openat(sp->dir_fd, name, O_RDONLY | O_CLOEXEC);
			fd_seg = e->segment;
		}
		struct msg *m = fd < 0 ? NULL : spool_load(sp, fd, e);
		if (m == NULL)
			continue;   /* unreadable now: stays in the index for the next start */
		deliver_message(sp->sh->deliver, m, false);
		msg_unref(m);
		started++;
	}
	if (fd >= 0)
		close(fd);
	free(l.items);
	return started;
}
