/* queue/spool.c - the ring-driven log with group commit, index and schedule; see spool.h. */
#include "queue/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/log.h"
#include "base/queue_id.h"
#include "queue/adopt.h"
#include "queue/msg.h"
#include "queue/record.h"
#include "queue/recover.h"
#include "queue/reply_cache.h"
#include "queue/schedule.h"

#define SPOOL_CHUNK_BYTES_MAX   (1u << 30)   /* bytes per pwritev: its length fits user_data */
_Static_assert(SPOOL_CHUNK_BYTES_MAX <= RING_RW_MAX, "the kernel writes a whole chunk");
#define SPOOL_STATE_DELAY_MS    1000u        /* state records alone wait this long for company */
#define SPOOL_BATCH_CAP_FIRST   64u

#define SPOOL_COPY_BATCH        64u          /* messages copied forward per round */
#define SPOOL_COPY_BYTES_MAX    (8u << 20)   /* read back per round */
#define SPOOL_COPY_RECORD_MAX   (4u << 20)   /* larger records are not copied (yet) */
#define SPOOL_COPY_LIVE_MAX     (SPOOL_SEGMENT_SIZE / 4u)   /* copy when less is live */

enum spool_req { SPOOL_REQ_WRITE = 1, SPOOL_REQ_FSYNC, SPOOL_REQ_UNLINK, SPOOL_REQ_COPY,
	SPOOL_REQ_COPY_PART };

enum spool_rec_kind { REC_STATE, REC_MESSAGE, REC_BODY, REC_COPY, REC_CONTROL };

struct spool_rec {
	uint8_t kind;                                  /* enum spool_rec_kind */
	bool dropped;                                  /* MESSAGE whose body failed: not written */
	struct msg *m;                                 /* MESSAGE, BODY (a reference) */
	uint8_t *copy;                                 /* COPY: the whole record */
	uint64_t copy_qid;
	uint16_t copy_env_off;
	uint64_t waiter_ud;                            /* CONTROL: told once it is durable */
	/* MESSAGE, BODY: the octets after the head, owned here: coalesced, then held pieces. */
	uint8_t *coal;
	uint32_t coal_len;
	struct msg_piece *pieces;
	uint32_t piece_count;
	uint64_t body_len;                             /* coal_len + the pieces */
	uint32_t part;                                 /* BODY: its index in m->parts */
	uint8_t bytes[RECORD_STATE_SIZE_MAX];          /* a state record, or a BODY header */
	uint32_t len;                                  /* of the whole record */
	uint32_t segment;                              /* where it went, once written */
	uint64_t offset;
};

/* A live message being copied forward out of the oldest segment. */
struct spool_copy {
	uint64_t qid;
	uint8_t *buf;                   /* its whole record, read back */
	uint32_t size;
	bool ok;                        /* read whole and valid */
	uint8_t *parts;                 /* PARTS: its body's parts, read back in order */
	uint64_t parts_got;
	struct spool_body body;         /* PARTS: where they are (borrows buf) */
	uint32_t env_len;
};

struct spool_batch {
	struct spool_rec *recs;
	uint32_t count;
	uint32_t cap;
};

struct spool {
	struct ring *ring;
	struct spool_params p;
	uint8_t op;
	int dir_fd;
	int seg_fd;                     /* the active segment, read and write */
	uint32_t seg_id;
	uint64_t seg_off;
	uint32_t oldest_seg;            /* segments below it are deleted */
	int *read_fds;                  /* read_fds[i]: segment oldest_seg + i, or -1 */
	uint64_t *seg_sizes;            /* seg_sizes[i]: octets of segment oldest_seg + i, once
	                                 * it is no longer the active one (as read_fds) */
	uint32_t read_fd_count;
	uint64_t closed_bytes;          /* octets of the segments before the active one */
	uint64_t batch_start_us;        /* when the flying batch was submitted */
	struct index ix;
	struct reply_cache *replies;    /* the last replies' text, for the queue listing */
	struct schedule sched;
	struct queue_id_gen qids;
	uint64_t rand_state;            /* back-off jitter */
	struct spool_batch queued;
	uint32_t queued_messages;       /* MESSAGE and BODY records in queued: they go at once */
	uint32_t uninserted;            /* committed messages not in the index yet */
	uint64_t queued_since_ms;       /* when queued stopped being empty */
	struct spool_batch flying;
	struct iovec *iov;
	uint32_t iov_cap;
	uint32_t cqe_wait;              /* completions the flying batch still expects */
	int batch_err;
	uint64_t batch_off;             /* where the flying batch starts in the segment */
	bool busy;
	uint32_t unlinks_in_flight;
	char unlink_names[2][SEGMENT_NAME_LEN + 1];   /* names being unlinked, by parity */
	struct bufring *bufs;           /* where held body pieces come from */
	struct msg *open_head;          /* messages with body octets not handed to a record */
	struct spool_copy copies[SPOOL_COPY_BATCH];
	uint32_t copy_count;
	uint32_t copy_reads;            /* reads of the round still in flight */
	uint32_t copy_seg;              /* the segment the round empties */
	uint32_t copy_skip_below;       /* no round for segments below this until a rollover */
	struct spool_stats stats;
};

static const struct ring_hooks spool_hooks;
static void spool_complete(void *ctx, const struct io_uring_cqe *cqe);
static int spool_read_fd(struct spool *sp, uint32_t seg);
static int spool_read_fds_cover(struct spool *sp);

static int
spool_seg_open(struct spool *sp, uint32_t seg)
{
	char name[SEGMENT_NAME_LEN + 1];
	recover_segment_name(seg, name);
	int fd = openat(sp->dir_fd, name, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
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
	int rc = 0;   /* the power-cut test's self-check build: see meson_options.txt */
#else
	int rc = fsync(fd) == 0 ? 0 : -errno;
#endif
	close(fd);
	return rc;
}

/* Puts every live message recovery found on the schedule, due when its index entry says. */
static int
spool_schedule_recovered(struct spool *sp)
{
	if (schedule_reserve(&sp->sched, index_live(&sp->ix)) != 0)
		return -ENOMEM;
	uint32_t cursor = 0;
	const struct index_entry *e;
	while ((e = index_next(&sp->ix, &cursor)) != NULL)
		schedule_push(&sp->sched, e->due_ms, e->qid);
	return 0;
}

/* The sizes of the segments recovery left before the active one (start-up: blocking). */
static int
spool_sizes_recovered(struct spool *sp)
{
	int rc = spool_read_fds_cover(sp);
	if (rc < 0)
		return rc;
	for (uint32_t seg = sp->oldest_seg; seg < sp->seg_id; seg++) {
		char name[SEGMENT_NAME_LEN + 1];
		struct stat st;
		recover_segment_name(seg, name);
		uint64_t size = fstatat(sp->dir_fd, name, &st, 0) == 0 ? (uint64_t)st.st_size : 0;
		sp->seg_sizes[seg - sp->oldest_seg] = size;
		sp->closed_bytes += size;
	}
	return 0;
}

static int
spool_dirs(const struct spool_params *p, char *path, size_t cap)
{
	snprintf(path, cap, "%s/%u", p->spool_dir, p->shard);
	if (mkdir(p->spool_dir, 0700) != 0 && errno != EEXIST)
		return -errno;
	if (mkdir(path, 0700) != 0 && errno != EEXIST)
		return -errno;
	/* Their names must be durable too, created now or by a run that crashed before a sync
	 * (the power-cut test lost whole spools without this). */
	int rc = spool_sync_parent(p->spool_dir);
	return rc == 0 ? spool_sync_parent(path) : rc;
}

/* Takes in the stranded shard directories assigned to this shard (start-up, blocking). */
static int
spool_adopt(struct ring *r, const struct spool_params *p, const char *own)
{
	for (uint32_t i = 0; i < p->adopt_count; i++) {
		char other[4096];
		snprintf(other, sizeof(other), "%s/%u", p->spool_dir, p->adopt[i]);
		struct adopt_result res;
		int rc = adopt_shard_dir(own, other, &res);
		if (rc < 0)
			return rc;
		char buf[LOG_LINE_MAX];
		struct log_line l;
		log_line_begin(&l, buf, sizeof(buf), r->now_real_ms, "adopted");
		log_line_u64(&l, "shard", p->shard);
		log_line_u64(&l, "from", p->adopt[i]);
		log_line_u64(&l, "messages", res.messages);
		log_line_u64(&l, "bytes", res.bytes);
		log_write(buf, log_line_end(&l));
	}
	return 0;
}

int
spool_open(struct ring *r, const struct spool_params *p, struct spool **out)
{
	char path[4096];
	int rc = spool_dirs(p, path, sizeof(path));
	if (rc < 0)
		return rc;
	rc = spool_adopt(r, p, path);
	if (rc < 0)
		return rc;
	struct spool *sp = calloc(1, sizeof(*sp));
	if (sp == NULL)
		return -ENOMEM;
	sp->ring = r;
	sp->p = *p;
	sp->bufs = p->bufs;
	sp->seg_fd = -1;
	sp->rand_state = (r->now_real_ms << 16) ^ ((uint64_t)p->shard * 0x9e3779b97f4a7c15ull) ^ 1u;
	schedule_init(&sp->sched);
	sp->replies = reply_cache_new();
	rc = sp->replies == NULL ? -ENOMEM : index_init(&sp->ix);
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
	rc = spool_schedule_recovered(sp);
	if (rc < 0)
		goto fail_seg;
	rc = spool_sizes_recovered(sp);
	if (rc < 0)
		goto fail_seg;
	queue_id_gen_init(&sp->qids, p->shard, r->now_real_ms / 1000, res.max_queue_id);
	sp->op = ring_op_register(r, spool_complete, sp);
	ring_hooks_register(r, &spool_hooks, sp);
	*out = sp;
	return 0;
fail_seg:
	close(sp->seg_fd);
fail_dir:
	close(sp->dir_fd);
fail_index:
	index_fini(&sp->ix);
fail_free:
	schedule_fini(&sp->sched);
	reply_cache_free(sp->replies);
	free(sp);
	return rc;
}

uint64_t
spool_next_qid(struct spool *sp)
{
	return queue_id_next(&sp->qids);
}

/* A place in the queued batch. Returns NULL when memory is short. */
static struct spool_rec *
spool_queue_rec(struct spool *sp)
{
	struct spool_batch *b = &sp->queued;
	if (b->count == b->cap) {
		uint32_t cap = b->cap ? b->cap * 2 : SPOOL_BATCH_CAP_FIRST;
		struct spool_rec *grown = realloc(b->recs, cap * sizeof(*grown));
		if (grown == NULL)
			return NULL;
		b->recs = grown;
		b->cap = cap;
	}
	if (b->count == 0)
		sp->queued_since_ms = sp->ring->now_ms;
	struct spool_rec *r = &b->recs[b->count++];
	memset(r, 0, offsetof(struct spool_rec, bytes));
	return r;
}

/* The record head: header (its CRC filled in at layout) + envelope + room for the PARTS table
 * of the body written before. */
static int
spool_encode_head(struct msg *m, const struct record_envelope *env)
{
	size_t env_len = record_envelope_size(env);
	size_t table = m->part_count > 0 ? record_parts_size(m->part_count) : 0;
	if (env_len + table > RECORD_PAYLOAD_MAX || msg_unwritten(m) > RECORD_PAYLOAD_MAX - env_len
		- table || m->part_count > RECORD_PARTS_MAX)
		return -EFBIG;
	m->head = malloc(RECORD_HEADER_SIZE + env_len + table);
	if (m->head == NULL)
		return -ENOMEM;
	record_envelope_encode(env, m->head + RECORD_HEADER_SIZE, env_len);
	m->env_len = (uint32_t)env_len;
	m->head_len = (uint32_t)(RECORD_HEADER_SIZE + env_len + table);
	m->rcpt_count = env->rcpt_count;
	return 0;
}

/* Reserves everything the write's completion will need, so that it cannot fail. */
static int
spool_reserve_commit(struct spool *sp, struct msg *m)
{
	if (ring_post_reserve(sp->ring, 1) != 0)
		return -ENOMEM;
	uint32_t first = m->part_count > 0 ? m->parts[0].segment : sp->seg_id;
	if (index_reserve(&sp->ix, sp->uninserted + 1, sp->seg_id) != 0
		|| index_reserve_segment(&sp->ix, first) != 0
		|| index_rcpts_alloc(m->rcpt_count, &m->ix_rcpts) != 0)
		goto fail_post;
	if (schedule_reserve(&sp->sched, 1) != 0)
		goto fail_rcpts;
	return 0;
fail_rcpts:
	index_rcpts_free(m->ix_rcpts);
	m->ix_rcpts = NULL;
fail_post:
	ring_post_unreserve(sp->ring, 1);
	return -ENOMEM;
}

/* The message's unwritten octets move into record r. */
static void
spool_take_octets(struct spool *sp, struct spool_rec *r, struct msg *m)
{
	r->coal = m->coal;
	r->coal_len = m->coal_len;
	r->pieces = m->pieces;
	r->piece_count = m->piece_count;
	r->body_len = msg_unwritten(m);
	m->coal = NULL;
	m->coal_len = m->coal_cap = 0;
	m->pieces = NULL;
	m->piece_count = m->piece_cap = 0;
	m->pieces_len = 0;
	sp->stats.body_held += r->body_len - r->coal_len;
}

static void
spool_open_remove(struct spool *sp, struct msg *m)
{
	if (!m->open)
		return;
	struct msg **link = &sp->open_head;
	while (*link != m)
		link = &(*link)->open_next;
	*link = m->open_next;
	m->open = false;
	msg_unref(m);
}

int
spool_commit(struct spool *sp, struct msg *m, const struct record_envelope *env,
	uint64_t waiter_ud)
{
	ASSERT(m->head == NULL);
	ASSERT(env->rcpt_count > 0);
	if (m->body_err != 0)
		return m->body_err;   /* a part of the body never reached the disk */
	int rc = spool_encode_head(m, env);
	if (rc < 0)
		return rc;
	rc = spool_reserve_commit(sp, m);
	if (rc < 0)
		return rc;
	struct spool_rec *r = spool_queue_rec(sp);
	if (r == NULL) {
		index_rcpts_free(m->ix_rcpts);
		m->ix_rcpts = NULL;
		schedule_unreserve(&sp->sched, 1);
		ring_post_unreserve(sp->ring, 1);
		return -ENOMEM;
	}
	spool_open_remove(sp, m);
	msg_ref(m);
	m->committed = true;
	m->waiter_ud = waiter_ud;
	r->kind = REC_MESSAGE;
	r->m = m;
	spool_take_octets(sp, r, m);
	r->len = m->head_len + (uint32_t)r->body_len;
	sp->queued_messages++;
	sp->uninserted++;
	return 0;
}

/* Queues a BODY record with what m holds. Returns 0 or -ENOMEM (m keeps its octets). */
static int
spool_queue_body(struct spool *sp, struct msg *m)
{
	/* The first part holds its segment live (spool_layout_body): make sure it can. */
	if (m->part_count == 0 && index_reserve(&sp->ix, 0, sp->seg_id) != 0)
		return -ENOMEM;
	if (m->part_count == m->part_cap) {
		uint32_t cap = m->part_cap ? m->part_cap * 2 : 16;
		struct record_part *grown = cap > RECORD_PARTS_MAX ? NULL
			: realloc(m->parts, cap * sizeof(*grown));
		if (grown == NULL)
			return -ENOMEM;
		m->parts = grown;
		m->part_cap = cap;
	}
	struct spool_rec *r = spool_queue_rec(sp);
	if (r == NULL)
		return -ENOMEM;
	msg_ref(m);
	r->kind = REC_BODY;
	r->m = m;
	r->part = m->part_count++;
	m->parts_unwritten++;
	spool_take_octets(sp, r, m);
	r->len = RECORD_HEADER_SIZE + (uint32_t)r->body_len;
	m->parts[r->part] = (struct record_part){ .len = (uint32_t)r->body_len };
	sp->queued_messages++;
	return 0;
}

/* End of a turn, for each message still arriving: a BODY record once it holds enough; else
 * its little is copied aside so that no receive buffer waits for the next turn. */
static void
spool_body_turn(struct spool *sp)
{
	struct msg *m = sp->open_head;
	sp->open_head = NULL;
	while (m != NULL) {
		struct msg *next = m->open_next;
		m->open = false;
		uint64_t held = m->pieces_len;
		if (msg_unwritten(m) >= SPOOL_BODY_MIN || msg_coalesce(m) != 0) {
			if (spool_queue_body(sp, m) != 0 && m->body_err == 0)
				m->body_err = -ENOMEM;
		} else {
			sp->stats.body_copied += held;
		}
		msg_unref(m);
		m = next;
	}
}

int
spool_body_append(struct spool *sp, struct msg *m, struct slice data)
{
	ASSERT(!m->committed);
	if (!m->open) {
		msg_ref(m);
		m->open = true;
		m->open_next = sp->open_head;
		sp->open_head = m;
	}
	int32_t bid = sp->bufs != NULL ? bufring_which(sp->bufs, data.ptr) : -1;
	int rc;
	if (bid >= 0 && m->bufs == sp->bufs) {
		rc = msg_append_held(m, data, (uint16_t)bid);
	} else {
		/* The coalescing buffer goes before the held pieces: pieces held now go first
		 * (written out if there is a record's worth, else copied too), or the body would
		 * change its order. */
		rc = 0;
		uint64_t held = m->pieces_len;
		if (m->piece_count > 0 && msg_unwritten(m) >= SPOOL_BODY_MIN)
			rc = spool_queue_body(sp, m);
		else if (m->piece_count > 0 && (rc = msg_coalesce(m)) == 0)
			sp->stats.body_copied += held;
		if (rc == 0)
			rc = msg_append(m, data);
		if (rc == 0)
			sp->stats.body_copied += data.len;
	}
	if (rc == 0)
		sp->stats.body_bytes += data.len;
	/* Enough for a record already, or a turn with very many slices: write it out now. */
	if (rc == 0 && (msg_unwritten(m) >= SPOOL_BODY_SPILL || m->piece_count >= SPOOL_PIECES_MAX))
		rc = spool_queue_body(sp, m);
	if (rc < 0 && m->body_err == 0)
		m->body_err = rc;
	return rc;
}

/* Queues a state record. A state record that finds no room is dropped: its recipient is then
 * delivered once more after a restart (deliveries are idempotent per queue id and recipient)
 * or retried sooner than planned; nothing acknowledged is lost. */
static void
spool_queue_state(struct spool *sp, uint8_t type, uint64_t qid, uint32_t rcpt, uint64_t next_ms)
{
	struct spool_rec *r = spool_queue_rec(sp);
	if (r == NULL)
		return;
	r->kind = REC_STATE;
	r->len = record_state_encode(r->bytes, type, qid, rcpt, next_ms);
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
	ASSERT(grown != NULL);   /* bounded by the batch, which was allocated already */
	sp->iov = grown;
	sp->iov_cap = cap;
}

/* The iovecs of a record's octets after its head: coalesced, then pieces. */
static uint32_t
spool_octets_iov(struct iovec *iov, const struct spool_rec *r)
{
	uint32_t n = 0;
	if (r->coal_len > 0)
		iov[n++] = (struct iovec){ r->coal, r->coal_len };
	for (uint32_t i = 0; i < r->piece_count; i++)
		iov[n++] = (struct iovec){ (void *)r->pieces[i].ptr, r->pieces[i].len };
	return n;
}

/* A BODY record at off: its header, and where its payload is (its message's part). */
static uint32_t
spool_layout_body(struct spool *sp, struct spool_rec *r, struct iovec *iov, uint64_t off)
{
	uint32_t n = 1 + spool_octets_iov(iov + 1, r);
	record_header_encode(r->bytes, RECORD_BODY, r->m->qid, iov + 1, n - 1);
	iov[0] = (struct iovec){ r->bytes, RECORD_HEADER_SIZE };
	if (r->part == 0 && !r->m->abandoned) {
		/* Until the message is committed its entry does not count it anywhere: this keeps
		 * the segment of its first part from being deleted under it. */
		index_hold_segment(&sp->ix, sp->seg_id);
		r->m->held_seg = sp->seg_id;
	}
	r->m->parts[r->part].segment = sp->seg_id;
	r->m->parts[r->part].offset = (uint32_t)(off + RECORD_HEADER_SIZE);
	return n;
}

/* A MESSAGE (or PARTS) record at off: the table of its parts, all laid out by now (they come
 * before it in the log), then the CRC over envelope, table and the rest of the body. */
static uint32_t
spool_layout_message(struct spool *sp, struct spool_rec *r, struct iovec *iov, uint64_t off)
{
	struct msg *m = r->m;
	m->segment = sp->seg_id;
	m->offset = off;
	if (m->part_count > 0)
		record_parts_encode(m->head + RECORD_HEADER_SIZE + m->env_len, m->parts, m->part_count);
	iov[0] = (struct iovec){ m->head + RECORD_HEADER_SIZE, m->head_len - RECORD_HEADER_SIZE };
	uint32_t n = 1 + spool_octets_iov(iov + 1, r);
	record_header_encode(m->head, m->part_count > 0 ? RECORD_PARTS : RECORD_MESSAGE, m->qid,
		iov, n);
	iov[0] = (struct iovec){ m->head, m->head_len };
	return n;
}

/* Lays the batch's records out as iovecs and places each at its offset. */
static uint32_t
spool_batch_iov(struct spool *sp)
{
	uint32_t need = 0;
	for (uint32_t i = 0; i < sp->flying.count; i++)
		need += 2 + sp->flying.recs[i].piece_count;
	spool_iov_reserve(sp, need);
	uint32_t n = 0;
	uint64_t off = sp->seg_off;
	for (uint32_t i = 0; i < sp->flying.count; i++) {
		struct spool_rec *r = &sp->flying.recs[i];
		r->segment = sp->seg_id;
		r->offset = off;
		switch (r->kind) {
		case REC_MESSAGE:
			if (r->m->body_err != 0) {
				r->dropped = true;   /* its BODY records failed: never write it */
				continue;
			}
			n += spool_layout_message(sp, r, &sp->iov[n], off);
			break;
		case REC_BODY:
			n += spool_layout_body(sp, r, &sp->iov[n], off);
			break;
		case REC_COPY:
			sp->iov[n++] = (struct iovec){ r->copy, r->len };
			break;
		default:
			sp->iov[n++] = (struct iovec){ r->bytes, r->len };
			break;
		}
		off += r->len;
	}
	return n;
}

/* Grows read_fds to cover every segment up to the active one (new entries -1). */
static int
spool_read_fds_cover(struct spool *sp)
{
	uint32_t count = sp->seg_id - sp->oldest_seg + 1;
	if (count <= sp->read_fd_count)
		return 0;
	uint64_t *sizes = realloc(sp->seg_sizes, count * sizeof(*sizes));
	if (sizes == NULL)
		return -ENOMEM;
	sp->seg_sizes = sizes;
	int *grown = realloc(sp->read_fds, count * sizeof(*grown));
	if (grown == NULL)
		return -ENOMEM;
	for (uint32_t j = sp->read_fd_count; j < count; j++) {
		grown[j] = -1;
		sizes[j] = 0;
	}
	sp->read_fds = grown;
	sp->read_fd_count = count;
	return 0;
}

static int
spool_rollover(struct spool *sp)
{
	/* The old segment's descriptor must stay open, never closed here: a body reader on
	 * another shard may be reading it (spool_body_extents). */
	int rc = spool_read_fds_cover(sp);
	if (rc < 0)
		return rc;
	int fd = spool_seg_open(sp, sp->seg_id + 1);
	if (fd < 0)
		return fd;
	uint32_t i = sp->seg_id - sp->oldest_seg;
	if (sp->read_fds[i] < 0)
		sp->read_fds[i] = sp->seg_fd;
	else
		close(sp->seg_fd);   /* a read descriptor of its own was opened already */
	sp->seg_sizes[i] = sp->seg_off;
	sp->closed_bytes += sp->seg_off;
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
	return sp->queued_messages > 0 || sp->ring->stopping
		|| sp->ring->now_ms >= sp->queued_since_ms + SPOOL_STATE_DELAY_MS;
}

/* Submits one chain: pwritev of every queued record (in chunks), then one fdatasync. */
static void
spool_flush(struct spool *sp)
{
	if (!spool_due(sp))
		return;
	if (sp->seg_off >= SPOOL_SEGMENT_SIZE && spool_rollover(sp) == 0)
		sp->copy_skip_below = 0;    /* on failure, keep appending to the current one */
	struct spool_batch tmp = sp->flying;
	sp->flying = sp->queued;
	sp->queued = tmp;
	sp->queued.count = 0;
	sp->queued_messages = 0;
	sp->batch_off = sp->seg_off;
	uint32_t n = spool_batch_iov(sp);
	uint32_t entries = sp->ring->uring.sq.ring_entries;
	ring_sqe_reserve(sp->ring, n + 1 < entries ? n + 1 : entries);
	uint32_t chunks = 0;
	for (uint32_t i = 0; i < n;) {
		uint32_t count = 0;
		uint64_t bytes = 0;
		while (i + count < n && count < SPOOL_BATCH_IOV_MAX
			&& bytes + sp->iov[i + count].iov_len <= SPOOL_CHUNK_BYTES_MAX) {
			bytes += sp->iov[i + count].iov_len;
			count++;
		}
		ASSERT(count > 0);   /* no single record is longer than a chunk */
		struct io_uring_sqe *sqe = ring_sqe(sp->ring);
		io_uring_prep_writev(sqe, sp->seg_fd, &sp->iov[i], count, sp->seg_off);
		sqe->flags |= IOSQE_IO_LINK;
		io_uring_sqe_set_data64(sqe, ring_ud(sp->op, SPOOL_REQ_WRITE, (uint32_t)bytes));
		sp->seg_off += bytes;
		i += count;
		chunks++;
	}
	struct io_uring_sqe *sqe = ring_sqe(sp->ring);
#ifdef RINGMTA_UNSAFE_SKIP_SYNC
	io_uring_prep_nop(sqe);   /* the power-cut test's self-check build: meson_options.txt */
#else
	io_uring_prep_fsync(sqe, sp->seg_fd, IORING_FSYNC_DATASYNC);
#endif
	io_uring_sqe_set_data64(sqe, ring_ud(sp->op, SPOOL_REQ_FSYNC, 0));
	sp->cqe_wait = chunks + 1;
	sp->batch_err = 0;
	sp->busy = true;
	sp->batch_start_us = sp->ring->now_us;
	sp->stats.fdatasyncs++;
}

/* Through the ring: a read of that segment queued before it still gets its file. */
static void
spool_read_fd_close(struct spool *sp, uint32_t seg)
{
	uint32_t i = seg - sp->oldest_seg;
	if (i < sp->read_fd_count && sp->read_fds[i] >= 0) {
		struct io_uring_sqe *sqe = ring_sqe(sp->ring);
		io_uring_prep_close(sqe, sp->read_fds[i]);
		io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_NONE, 0, 0));
		sp->read_fds[i] = -1;
	}
}

/* The read fds move down by one as the oldest segment goes. */
static void
spool_read_fds_shift(struct spool *sp)
{
	if (sp->read_fd_count == 0)
		return;
	sp->closed_bytes -= sp->seg_sizes[0];
	memmove(sp->read_fds, sp->read_fds + 1, (sp->read_fd_count - 1) * sizeof(int));
	memmove(sp->seg_sizes, sp->seg_sizes + 1, (sp->read_fd_count - 1) * sizeof(uint64_t));
	sp->read_fds[--sp->read_fd_count] = -1;
}

static void spool_copy_start(struct spool *sp);

/* Deletes the oldest segments once nothing in them is live (never the active one); when the
 * oldest one holds only a little that is live, copies that forward first. */
static void
spool_reclaim(struct spool *sp)
{
	spool_copy_start(sp);
	while (sp->oldest_seg < sp->seg_id && sp->unlinks_in_flight < 2
		&& index_segment_live(&sp->ix, sp->oldest_seg) == 0) {
		char *name = sp->unlink_names[sp->oldest_seg & 1u];
		recover_segment_name(sp->oldest_seg, name);
		struct io_uring_sqe *sqe = ring_sqe(sp->ring);
		io_uring_prep_unlinkat(sqe, sp->dir_fd, name, 0);
		io_uring_sqe_set_data64(sqe, ring_ud(sp->op, SPOOL_REQ_UNLINK, 0));
		sp->unlinks_in_flight++;
		spool_read_fd_close(sp, sp->oldest_seg);
		spool_read_fds_shift(sp);
		sp->oldest_seg++;
		sp->stats.segments_deleted++;
	}
}

/* A MESSAGE record of the batch is durable (rc 0) or not: index it, schedule it, tell its
 * waiter. Everything was reserved at spool_commit, so nothing here can fail. */
/* The message's own entry counts it now, or it will never be committed. */
static void
spool_unhold(struct spool *sp, struct msg *m)
{
	if (m->held_seg == UINT32_MAX)
		return;
	index_unhold_segment(&sp->ix, m->held_seg);
	m->held_seg = UINT32_MAX;
}

void
spool_body_abandon(struct spool *sp, struct msg *m)
{
	if (m->committed)
		return;
	m->abandoned = true;
	spool_open_remove(sp, m);
	spool_unhold(sp, m);
}

static void
spool_message_done(struct spool *sp, struct spool_rec *r, int rc)
{
	struct msg *m = r->m;
	if (rc == 0 && r->dropped)
		rc = m->body_err;
	if (rc == 0) {
		uint32_t span = m->part_count > 0 ? m->segment - m->parts[0].segment : 0;
		rc = index_insert_prepared(&sp->ix, m->qid, m->segment, m->offset, r->len,
			m->rcpt_count, m->arrival_ms, m->ix_rcpts, span);
		ASSERT(rc == 0);   /* reserved, and queue ids are unique */
		if (m->part_count > 0)
			index_set_kind(&sp->ix, m->qid, INDEX_KIND_PARTS);
		m->ix_rcpts = NULL;
		schedule_push(&sp->sched, 0, m->qid);
		sp->stats.messages++;
	} else {
		schedule_unreserve(&sp->sched, 1);
	}
	spool_unhold(sp, m);
	ASSERT(sp->uninserted > 0);
	sp->uninserted--;
	ring_post(sp->ring, m->waiter_ud, rc);
	msg_unref(m);
}

/* A COPY record is durable: the message lives there from now on (unless it became final
 * meanwhile, when the copy is just dead bytes). */
static void
spool_copy_done(struct spool *sp, struct spool_rec *r)
{
	const struct index_entry *e = index_find(&sp->ix, r->copy_qid);
	/* A message taken for delivery meanwhile stays where its readers were told it is; the
	 * COPY is dead bytes then (recovery finds the same states either way) and a later round
	 * copies it again. */
	if (sp->batch_err == 0 && e != NULL && e->inflight == 0)
		(void)index_relocate(&sp->ix, r->copy_qid, r->segment, r->offset, r->len,
			r->copy_env_off);
	free(r->copy);
	r->copy = NULL;
}

/* A record's octets are written (or not): the receive buffers go back, the rest is freed. */
static void
spool_octets_done(struct spool *sp, struct spool_rec *r)
{
	if (r->piece_count > 0)
		msg_release_pieces(r->pieces, r->piece_count, sp->bufs);
	free(r->pieces);
	free(r->coal);
	r->pieces = NULL;
	r->coal = NULL;
}

/* A BODY record is durable or failed; a failure fails the message's commit to come. */
static void
spool_body_done(struct spool *sp, struct spool_rec *r)
{
	struct msg *m = r->m;
	ASSERT(m->parts_unwritten > 0);
	m->parts_unwritten--;
	if (sp->batch_err != 0 && m->body_err == 0)
		m->body_err = sp->batch_err;
	msg_unref(m);
}

/* A failed batch left unknown bytes: the next one is written over them, from where this one
 * began, so the valid records stay a prefix of the segment and recovery never has to look past
 * a bad one. They may hold whole records (the kernel wrote some before the disk filled up, or
 * the fdatasync failed after the writes): those are cut off now, or recovery would find them
 * valid right after a shorter next batch, and deliver a message whose client was told to try
 * again. A blocking ftruncate, on this rare path only (the ring has no such request before
 * Linux 6.9); if even that fails, they are only overwritten, and the failure is logged. */
static void
spool_batch_failed(struct spool *sp)
{
	sp->seg_off = sp->batch_off;
	if (ftruncate(sp->seg_fd, (off_t)sp->batch_off) != 0)
		log_error(sp->ring->now_real_ms, "spool_truncate", -errno);
}

static void
spool_batch_done(struct spool *sp)
{
	hist_add(&sp->stats.fdatasync_latency, sp->ring->now_us - sp->batch_start_us);
	for (uint32_t i = 0; i < sp->flying.count; i++) {
		struct spool_rec *r = &sp->flying.recs[i];
		spool_octets_done(sp, r);
		if (r->kind == REC_MESSAGE)
			spool_message_done(sp, r, sp->batch_err);
		else if (r->kind == REC_BODY)
			spool_body_done(sp, r);
		else if (r->kind == REC_COPY)
			spool_copy_done(sp, r);
		else if (r->kind == REC_CONTROL)
			ring_post(sp->ring, r->waiter_ud, sp->batch_err);
	}
	sp->flying.count = 0;
	sp->busy = false;
	if (sp->batch_err != 0)
		spool_batch_failed(sp);
	spool_reclaim(sp);
}

static void spool_copy_read_done(struct spool *sp, uint32_t i, int res, bool part);

static void
spool_complete(void *ctx, const struct io_uring_cqe *cqe)
{
	struct spool *sp = ctx;
	uint32_t req = ring_ud_slot(cqe->user_data);
	if (req == SPOOL_REQ_COPY || req == SPOOL_REQ_COPY_PART) {
		spool_copy_read_done(sp, ring_ud_gen(cqe->user_data), cqe->res,
			req == SPOOL_REQ_COPY_PART);
		return;
	}
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
	else if (req == SPOOL_REQ_WRITE && (uint32_t)cqe->res != ring_ud_gen(cqe->user_data))
		err = -ENOSPC;   /* a short write to a file: the disk filled up under it */
	if (sp->batch_err == 0 && err != 0 && err != -ECANCELED)
		sp->batch_err = err;
	if (--sp->cqe_wait == 0) {
		if (sp->batch_err == 0 && err == -ECANCELED)
			sp->batch_err = -EIO;
		spool_batch_done(sp);
	}
}

/* ---- copy forward ---- */

/* Picks the live messages of the oldest segment to copy, if there are few enough of them.
 * One scan of the index per segment and rollover: rare next to the traffic that fills one. */
static uint32_t
spool_copy_pick(struct spool *sp)
{
	uint32_t cursor = 0, n = 0;
	uint64_t live = 0, bytes = 0;
	const struct index_entry *e;
	while ((e = index_next(&sp->ix, &cursor)) != NULL) {
		if (e->segment - e->span != sp->oldest_seg)
			continue;
		live += e->size;
		if (live > SPOOL_COPY_LIVE_MAX)
			return 0;   /* mostly live: deliveries will empty it sooner than copies */
		/* Not a message in flight: a reader (on another shard too) may hold where its body
		 * is. A body in parts larger than SPOOL_COPY_RECORD_MAX is left out once its table
		 * is read. */
		if (e->inflight > 0 || e->size > SPOOL_COPY_RECORD_MAX || n == SPOOL_COPY_BATCH
			|| bytes + e->size > SPOOL_COPY_BYTES_MAX)
			continue;
		memset(&sp->copies[n], 0, sizeof(sp->copies[n]));
		sp->copies[n].qid = e->qid;
		sp->copies[n].size = e->size;
		n++;
		bytes += e->size;
	}
	return n;
}

/* Starts a round: the records of the picked messages are read back through the ring. */
static void
spool_copy_start(struct spool *sp)
{
	if (sp->copy_count > 0 || sp->oldest_seg >= sp->seg_id || sp->ring->stopping
		|| sp->oldest_seg < sp->copy_skip_below
		|| index_segment_live(&sp->ix, sp->oldest_seg) == 0)
		return;
	int fd = spool_read_fd(sp, sp->oldest_seg);
	uint32_t n = fd < 0 ? 0 : spool_copy_pick(sp);
	if (n == 0) {
		sp->copy_skip_below = sp->oldest_seg + 1;   /* look again after the next rollover */
		return;
	}
	sp->copy_seg = sp->oldest_seg;
	for (uint32_t i = 0; i < n; i++) {
		struct spool_copy *c = &sp->copies[i];
		const struct index_entry *e = index_find(&sp->ix, c->qid);
		c->buf = malloc(c->size);
		if (c->buf == NULL)
			continue;
		struct io_uring_sqe *sqe = ring_sqe(sp->ring);
		io_uring_prep_read(sqe, fd, c->buf, c->size, e->offset);
		io_uring_sqe_set_data64(sqe, ring_ud(sp->op, SPOOL_REQ_COPY, i));
		sp->copy_reads++;
	}
	sp->copy_count = n;
	if (sp->copy_reads == 0)
		spool_copy_read_done(sp, UINT32_MAX, 0, false);
}

/* c's record is read and it is a PARTS record: read its parts back too (the copy holds the
 * whole body inline). Returns whether the reads are queued. */
static bool
spool_copy_parts(struct spool *sp, uint32_t i)
{
	struct spool_copy *c = &sp->copies[i];
	uint64_t off = 0, skipped = 0, end = 0, need = 0;
	struct record_view r;
	if (record_scan_next(slice_make(c->buf, c->size), &off, &r, &skipped, &end) != 1
		|| r.queue_id != c->qid || record_envelope_length(r.payload, &c->env_len) != 0
		|| spool_body_open(sp, c->qid, r.payload, c->env_len, &c->body, &need) != 0
		|| c->body.parts_len > SPOOL_COPY_RECORD_MAX)
		return false;
	c->parts = malloc(c->body.parts_len);
	if (c->parts == NULL)
		return false;
	for (uint64_t at = 0; at < c->body.parts_len;) {
		uint64_t want = c->body.parts_len - at;
		int64_t n = spool_body_read(sp, c->qid, &c->body, at, c->parts + at,
			want < UINT32_MAX ? (uint32_t)want : UINT32_MAX,
			ring_ud(sp->op, SPOOL_REQ_COPY_PART, i), 0);
		if (n <= 0)
			return false;   /* reads queued so far still complete: counted below */
		sp->copy_reads++;
		at += (uint64_t)n;
	}
	return true;
}

/* Builds the COPY record of c: the recipients' states as the index has them now (in flight
 * counts as pending: it is being tried), then the message payload as it was. */
static uint8_t *
spool_copy_encode(struct spool *sp, const struct spool_copy *c, uint32_t *len, uint16_t *env_off)
{
	const struct index_entry *e = index_find(&sp->ix, c->qid);
	uint64_t off = 0, skipped = 0, end = 0;
	struct record_view r;
	if (e == NULL || e->segment - e->span != sp->copy_seg || e->inflight > 0
		|| record_scan_next(slice_make(c->buf, c->size), &off, &r, &skipped, &end) != 1
		|| r.queue_id != c->qid || r.size != c->size)
		return NULL;   /* delivered meanwhile, or unreadable: it stays where it is */
	/* The message as a COPY holds it: envelope, then the whole body (parts, then the rest). */
	struct slice message = slice_skip(r.payload, e->env_off);
	struct slice env = message, parts = SLICE_LIT(""), rest = SLICE_LIT("");
	if (e->kind == INDEX_KIND_PARTS) {
		if (c->parts == NULL || c->parts_got != c->body.parts_len)
			return NULL;
		env = slice_sub(message, 0, c->env_len);
		parts = slice_make(c->parts, c->body.parts_len);
		rest = slice_skip(message, c->body.rest_off);
	}
	uint64_t total = env.len + parts.len + rest.len;
	uint32_t prefix = record_copy_prefix_size(e->rcpt_count);
	if (total > RECORD_PAYLOAD_MAX - prefix)
		return NULL;
	uint8_t *rec = malloc(RECORD_HEADER_SIZE + prefix + total);
	if (rec == NULL)
		return NULL;
	(void)adopt_copy_prefix(e, rec + RECORD_HEADER_SIZE);
	uint8_t *at = rec + RECORD_HEADER_SIZE + prefix;
	memcpy(at, env.ptr, env.len);   /* copy: forward, out of the old segment */
	memcpy(at + env.len, parts.ptr, parts.len);
	memcpy(at + env.len + parts.len, rest.ptr, rest.len);
	struct iovec iov = { .iov_base = rec + RECORD_HEADER_SIZE, .iov_len = prefix + total };
	record_header_encode(rec, RECORD_COPY, c->qid, &iov, 1);
	*len = RECORD_HEADER_SIZE + prefix + (uint32_t)total;
	*env_off = (uint16_t)prefix;
	return rec;
}

/* Queues the copies of a finished round; they relocate their messages once durable. */
static void
spool_copy_queue(struct spool *sp)
{
	for (uint32_t i = 0; i < sp->copy_count; i++) {
		struct spool_copy *c = &sp->copies[i];
		uint32_t len;
		uint16_t env_off;
		uint8_t *rec = c->ok ? spool_copy_encode(sp, c, &len, &env_off) : NULL;
		free(c->buf);
		free(c->parts);
		c->buf = NULL;
		c->parts = NULL;
		struct spool_rec *r = rec == NULL ? NULL : spool_queue_rec(sp);
		if (r == NULL) {
			free(rec);
			continue;
		}
		r->kind = REC_COPY;
		r->copy = rec;
		r->copy_qid = c->qid;
		r->copy_env_off = env_off;
		r->len = len;
		sp->stats.copied++;
	}
	sp->copy_count = 0;
	/* If this round left something behind (too big, unreadable), do not start over at once. */
	sp->copy_skip_below = sp->copy_seg + 1;
}

static void
spool_copy_read_done(struct spool *sp, uint32_t i, int res, bool part)
{
	if (i != UINT32_MAX) {
		ASSERT(i < sp->copy_count);
		ASSERT(sp->copy_reads > 0);
		struct spool_copy *c = &sp->copies[i];
		sp->copy_reads--;
		if (part) {
			if (res > 0)
				c->parts_got += (uint64_t)res;
			else
				c->ok = false;
		} else {
			c->ok = res == (int)c->size;
			const struct index_entry *e = index_find(&sp->ix, c->qid);
			if (c->ok && e != NULL && e->kind == INDEX_KIND_PARTS)
				c->ok = spool_copy_parts(sp, i);
		}
	}
	if (sp->copy_reads == 0)
		spool_copy_queue(sp);
}

/* ---- the schedule ---- */

bool
spool_take_due(struct spool *sp, uint64_t *qid)
{
	struct schedule_entry top;
	while (schedule_peek(&sp->sched, &top) && top.due_ms <= sp->ring->now_real_ms) {
		const struct index_entry *e = index_find(&sp->ix, top.qid);
		bool valid = e != NULL && e->inflight == 0 && e->due_ms == top.due_ms;
		/* The attempt's end pushes the message again: reserve that push now, while saying
		 * "not now" is still possible. */
		if (valid && schedule_reserve(&sp->sched, 1) != 0)
			return false;
		schedule_pop(&sp->sched);
		if (!valid)
			continue;   /* stale: gone, in flight, or due at another time */
		if (index_take_due(&sp->ix, top.qid, sp->ring->now_real_ms) == 0) {
			schedule_unreserve(&sp->sched, 1);
			continue;
		}
		*qid = top.qid;
		return true;
	}
	return false;
}

/* After a recipient's state changed: if that ended the message's attempt, it goes back on the
 * schedule (or, final, gives its promised place back). */
static void
spool_after_mark(struct spool *sp, uint64_t qid, bool was_inflight, bool message_final)
{
	if (!was_inflight)
		return;
	if (message_final) {
		schedule_unreserve(&sp->sched, 1);
		return;
	}
	const struct index_entry *e = index_find(&sp->ix, qid);
	ASSERT(e != NULL);
	if (e->inflight > 0)
		return;
	ASSERT(e->due_ms != UINT64_MAX);   /* unfinished and not in flight: pending or deferred */
	schedule_push(&sp->sched, e->due_ms, qid);
}

/* Whether qid had recipients in flight and rcpt was one of them. */
static bool
spool_rcpt_inflight(const struct spool *sp, uint64_t qid, uint32_t rcpt)
{
	return spool_rcpt_state(sp, qid, rcpt) == INDEX_RCPT_INFLIGHT;
}

static void
spool_mark_final(struct spool *sp, uint64_t qid, uint32_t rcpt, uint8_t type)
{
	bool was = spool_rcpt_inflight(sp, qid, rcpt);
	if (!index_rcpt_pending(&sp->ix, qid, rcpt))
		return;
	spool_queue_state(sp, type, qid, rcpt, 0);
	bool gone = index_mark_final(&sp->ix, qid, rcpt,
		type == RECORD_DELIVERED ? INDEX_RCPT_DELIVERED : INDEX_RCPT_BOUNCED);
	spool_after_mark(sp, qid, was, gone);
	if (gone)
		spool_reclaim(sp);
}

void
spool_rcpt_delivered(struct spool *sp, uint64_t qid, uint32_t rcpt)
{
	spool_mark_final(sp, qid, rcpt, RECORD_DELIVERED);
}

void
spool_rcpt_bounced(struct spool *sp, uint64_t qid, uint32_t rcpt)
{
	spool_mark_final(sp, qid, rcpt, RECORD_BOUNCED);
}

/* xorshift64*: jitter only, no secrets. */
static uint64_t
spool_rand(struct spool *sp)
{
	uint64_t x = sp->rand_state;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	sp->rand_state = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* Postfix's rule: wait as long as the message has been queued, within the two bounds, so the
 * delay doubles from one attempt to the next; +-SPOOL_JITTER_PCT so that messages deferred
 * together do not all come back in the same second. */
static uint64_t
spool_backoff_ms(struct spool *sp, uint64_t arrival_ms, uint64_t now_ms)
{
	uint64_t age = now_ms > arrival_ms ? now_ms - arrival_ms : 0;
	uint64_t d = age < sp->p.minimal_backoff_ms ? sp->p.minimal_backoff_ms
		: age > sp->p.maximal_backoff_ms ? sp->p.maximal_backoff_ms : age;
	uint64_t span = d * SPOOL_JITTER_PCT / 100u;
	if (span > 0)
		d = d - span + spool_rand(sp) % (2 * span + 1);
	return d;
}

int
spool_rcpt_defer(struct spool *sp, uint64_t qid, uint32_t rcpt, uint64_t *next_ms, bool *warn)
{
	const struct index_entry *e = index_find(&sp->ix, qid);
	if (e == NULL || rcpt >= e->rcpt_count)
		return -ENOENT;
	uint64_t now = sp->ring->now_real_ms;
	uint64_t expiry = e->arrival_ms + sp->p.queue_lifetime_ms;
	if (now >= expiry || e->bounce)
		return -ETIME;   /* expired, or the administrator said so */
	uint64_t scheduled = 0;
	(void)index_entry_rcpt(e, rcpt, &scheduled);   /* when this attempt was due */
	uint64_t warn_at = sp->p.delay_warning_ms > 0 ? e->arrival_ms + sp->p.delay_warning_ms
		: UINT64_MAX;
	/* The first attempt at or past the moment: the one scheduled for it, or one scheduled
	 * before it that ran late (a loop that woke up late must not skip the warning). */
	if (warn != NULL)
		*warn = warn_at != UINT64_MAX && scheduled <= warn_at && warn_at <= now;
	uint64_t next = now + spool_backoff_ms(sp, e->arrival_ms, now);
	if (next > expiry)
		next = expiry;   /* the last attempt comes when the message expires */
	if (warn_at > now && next > warn_at && warn_at < expiry)
		next = warn_at;  /* the attempt whose failure warns the sender */
	bool was = spool_rcpt_inflight(sp, qid, rcpt);
	if (index_mark_deferred(&sp->ix, qid, rcpt, next) != 0)
		return -ENOENT;
	spool_queue_state(sp, RECORD_DEFERRED, qid, rcpt, next);
	spool_after_mark(sp, qid, was, false);
	*next_ms = next;
	return 0;
}

void
spool_rcpt_release(struct spool *sp, uint64_t qid, uint32_t rcpt)
{
	bool was = spool_rcpt_inflight(sp, qid, rcpt);
	index_release(&sp->ix, qid, rcpt);
	spool_after_mark(sp, qid, was, false);
}

/* ---- queue control ---- */

/* Puts qid back on the schedule at its due time after a command changed it (a message in flight
 * goes back when its attempt ends). The caller reserved the push. */
static void
spool_ctl_schedule(struct spool *sp, const struct index_entry *e)
{
	if (e->inflight > 0 || e->held || e->due_ms == UINT64_MAX)
		schedule_unreserve(&sp->sched, 1);
	else
		schedule_push(&sp->sched, e->due_ms, e->qid);
}

/* The command's own mark in memory; 0 or -EALREADY. */
static int
spool_ctl_apply(struct spool *sp, const struct index_entry *e, enum spool_ctl op)
{
	uint64_t qid = e->qid;
	switch (op) {
	case SPOOL_CTL_HOLD:
	case SPOOL_CTL_RELEASE:
		if (e->held == (op == SPOOL_CTL_HOLD))
			return -EALREADY;
		(void)index_set_held(&sp->ix, qid, op == SPOOL_CTL_HOLD);
		break;
	case SPOOL_CTL_BOUNCE:
		(void)index_set_bounce(&sp->ix, qid);
		break;
	case SPOOL_CTL_DELETE:
		(void)index_remove(&sp->ix, qid);
		return 0;
	}
	spool_ctl_schedule(sp, index_find(&sp->ix, qid));
	return 0;
}

int
spool_ctl(struct spool *sp, uint64_t qid, enum spool_ctl op, uint64_t waiter_ud)
{
	const struct index_entry *e = index_find(&sp->ix, qid);
	if (e == NULL)
		return -ENOENT;
	/* Its readers (the qmgr, an outbound session on any shard) hold where its body is. */
	if (op == SPOOL_CTL_DELETE && e->inflight > 0)
		return -EBUSY;
	if (ring_post_reserve(sp->ring, 1) != 0)
		return -ENOMEM;
	if (schedule_reserve(&sp->sched, 1) != 0) {
		ring_post_unreserve(sp->ring, 1);
		return -ENOMEM;
	}
	struct spool_rec *r = spool_queue_rec(sp);
	if (r == NULL) {
		schedule_unreserve(&sp->sched, 1);
		ring_post_unreserve(sp->ring, 1);
		return -ENOMEM;
	}
	static const uint8_t types[] = { [SPOOL_CTL_HOLD] = RECORD_HOLD,
		[SPOOL_CTL_RELEASE] = RECORD_HOLD, [SPOOL_CTL_DELETE] = RECORD_EXPIRED,
		[SPOOL_CTL_BOUNCE] = RECORD_BOUNCE };
	int rc = spool_ctl_apply(sp, e, op);
	if (rc != 0) {
		sp->queued.count--;   /* the place just taken, unused */
		schedule_unreserve(&sp->sched, 1);
		ring_post_unreserve(sp->ring, 1);
		return rc;
	}
	r->kind = REC_CONTROL;
	r->waiter_ud = waiter_ud;
	r->len = record_state_encode(r->bytes, types[op], qid, op == SPOOL_CTL_HOLD ? 1 : 0, 0);
	sp->queued_messages++;   /* the administrator waits: no waiting for company */
	if (op == SPOOL_CTL_DELETE) {
		schedule_unreserve(&sp->sched, 1);
		spool_reclaim(sp);
	}
	return 0;
}

uint32_t
spool_ctl_flush(struct spool *sp, uint64_t qid)
{
	if (schedule_reserve(&sp->sched, 1) != 0)
		return 0;
	uint32_t n = index_flush(&sp->ix, qid, sp->ring->now_real_ms);
	if (n == 0)
		schedule_unreserve(&sp->sched, 1);
	else
		spool_ctl_schedule(sp, index_find(&sp->ix, qid));
	return n;
}

uint32_t
spool_ids(const struct spool *sp, uint64_t *out, uint32_t max)
{
	uint32_t cursor = 0, n = 0;
	const struct index_entry *e;
	while (n < max && (e = index_next(&sp->ix, &cursor)) != NULL)
		out[n++] = e->qid;
	return n;
}

void
spool_rcpt_note(struct spool *sp, uint64_t qid, uint32_t rcpt, uint16_t code,
	const uint8_t dsn[3], struct slice text)
{
	index_note(&sp->ix, qid, rcpt, code, dsn);
	if (text.len > 0)
		reply_cache_put(sp->replies, qid, rcpt, text);
}

struct slice
spool_rcpt_reply(const struct spool *sp, uint64_t qid, uint32_t rcpt)
{
	return reply_cache_get(sp->replies, qid, rcpt);
}

const struct index_entry *
spool_entry(const struct spool *sp, uint64_t qid)
{
	return index_find(&sp->ix, qid);
}

enum index_rcpt_state
spool_rcpt_state(const struct spool *sp, uint64_t qid, uint32_t rcpt)
{
	const struct index_entry *e = index_find(&sp->ix, qid);
	if (e == NULL || rcpt >= e->rcpt_count)
		return INDEX_RCPT_DELIVERED;
	return index_entry_rcpt(e, rcpt, NULL);
}

uint64_t
spool_next_due_ms(const struct spool *sp)
{
	struct schedule_entry top;
	if (!schedule_peek(&sp->sched, &top))
		return UINT64_MAX;
	return top.due_ms > sp->ring->now_real_ms ? top.due_ms - sp->ring->now_real_ms : 0;
}

uint64_t
spool_bytes(const struct spool *sp)
{
	return sp->closed_bytes + sp->seg_off;
}

const uint64_t spool_census_age_ms[SPOOL_CENSUS_AGES - 1] = {
	5u * 60u * 1000u, 3600u * 1000u, 4u * 3600u * 1000u, 24u * 3600u * 1000u,
};

struct spool_census_walk {
	uint64_t now_ms;
	struct spool_census *out;
};

static void
spool_census_one(void *ctx, const struct index_entry *e)
{
	struct spool_census_walk *w = ctx;
	uint64_t age = w->now_ms > e->arrival_ms ? w->now_ms - e->arrival_ms : 0;
	uint32_t a = 0;
	while (a < SPOOL_CENSUS_AGES - 1 && age >= spool_census_age_ms[a])
		a++;
	enum spool_census_state st = SPOOL_CENSUS_PENDING;
	if (e->inflight > 0)
		st = SPOOL_CENSUS_ACTIVE;
	else if (e->due_ms > w->now_ms)
		st = SPOOL_CENSUS_DEFERRED;
	w->out->messages[st][a]++;
}

void
spool_census_index(const struct index *ix, uint64_t now_ms, struct spool_census *out)
{
	*out = (struct spool_census){ 0 };
	struct spool_census_walk w = { .now_ms = now_ms, .out = out };
	index_foreach(ix, spool_census_one, &w);
}

void
spool_census(const struct spool *sp, uint64_t now_ms, struct spool_census *out)
{
	spool_census_index(&sp->ix, now_ms, out);
}

uint32_t
spool_live(const struct spool *sp)
{
	return index_live(&sp->ix);
}

/* ---- reading records back ---- */

/* A read descriptor for segment seg (opened once, kept until the segment goes). */
static int
spool_read_fd(struct spool *sp, uint32_t seg)
{
	if (seg == sp->seg_id)
		return sp->seg_fd;
	if (seg < sp->oldest_seg || seg > sp->seg_id)
		return -ENOENT;
	uint32_t i = seg - sp->oldest_seg;
	if (i >= sp->read_fd_count && spool_read_fds_cover(sp) != 0)
		return -ENOMEM;
	if (sp->read_fds[i] < 0) {
		char name[SEGMENT_NAME_LEN + 1];
		recover_segment_name(seg, name);
		int fd = openat(sp->dir_fd, name, O_RDONLY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		sp->read_fds[i] = fd;
	}
	return sp->read_fds[i];
}

/* Where the message (envelope, then body) starts in the record, and how long it is. */
static uint64_t
spool_message_start(const struct index_entry *e)
{
	return RECORD_HEADER_SIZE + (uint64_t)e->env_off;
}

int
spool_read_check(struct spool *sp, uint64_t qid, uint64_t off, uint64_t len)
{
	const struct index_entry *e = index_find(&sp->ix, qid);
	if (e == NULL)
		return -ENOENT;
	uint64_t size = e->size - spool_message_start(e);
	if (off > size || len > size - off)
		return -EINVAL;
	int fd = spool_read_fd(sp, e->segment);
	return fd < 0 ? fd : 0;
}

uint64_t
spool_message_size(const struct spool *sp, uint64_t qid)
{
	const struct index_entry *e = index_find(&sp->ix, qid);
	return e == NULL ? 0 : e->size - spool_message_start(e);
}

int
spool_read(struct spool *sp, uint64_t qid, uint64_t off, void *buf, uint32_t len, uint64_t ud,
	uint8_t sqe_flags)
{
	int rc = spool_read_check(sp, qid, off, len);
	if (rc < 0)
		return rc;
	const struct index_entry *e = index_find(&sp->ix, qid);
	int fd = spool_read_fd(sp, e->segment);
	struct io_uring_sqe *sqe = ring_sqe(sp->ring);
	io_uring_prep_read(sqe, fd, buf, len, e->offset + spool_message_start(e) + off);
	sqe->flags |= sqe_flags;
	io_uring_sqe_set_data64(sqe, ud);
	return 0;
}

/* ---- bodies ---- */

int
spool_body_open(const struct spool *sp, uint64_t qid, struct slice head, uint32_t env_len,
	struct spool_body *b, uint64_t *need)
{
	const struct index_entry *e = index_find(&sp->ix, qid);
	if (e == NULL)
		return -ENOENT;
	uint64_t size = e->size - spool_message_start(e);
	if (env_len > size || env_len > head.len)
		return -EBADMSG;
	memset(b, 0, sizeof(*b));
	if (e->kind != INDEX_KIND_PARTS) {
		b->rest_off = env_len;
		b->len = size - env_len;
		return 0;
	}
	if (head.len < (uint64_t)env_len + 4) {
		*need = (uint64_t)env_len + 4;
		return -EAGAIN;
	}
	uint32_t n = (uint32_t)head.ptr[env_len] | (uint32_t)head.ptr[env_len + 1] << 8
		| (uint32_t)head.ptr[env_len + 2] << 16 | (uint32_t)head.ptr[env_len + 3] << 24;
	uint64_t table_end = (uint64_t)env_len + record_parts_size(n < RECORD_PARTS_MAX ? n : 0);
	if (n < RECORD_PARTS_MAX && head.len < table_end && table_end <= size) {
		*need = table_end;
		return -EAGAIN;
	}
	struct slice rest;
	if (record_parts_decode(slice_skip(head, env_len), e->segment,
		e->offset + RECORD_HEADER_SIZE, &b->parts, &b->table, &rest) != 0)
		return -EBADMSG;
	for (uint32_t i = 0; i < b->parts; i++) {
		struct record_part p = record_parts_get(b->table, i);
		if (p.segment < e->segment - e->span)
			return -EBADMSG;   /* outside the segments the message holds */
		b->parts_len += p.len;
	}
	b->rest_off = table_end;
	b->len = b->parts_len + (size - table_end);
	return 0;
}

/* Moves b's cursor to the part that holds body offset off (< b->parts_len). */
static struct record_part
spool_body_seek(struct spool_body *b, uint64_t off)
{
	if (off < b->cur_start) {
		b->cur = 0;
		b->cur_start = 0;
	}
	struct record_part p = record_parts_get(b->table, b->cur);
	while (off >= b->cur_start + p.len) {
		b->cur_start += p.len;
		b->cur++;
		ASSERT(b->cur < b->parts);
		p = record_parts_get(b->table, b->cur);
	}
	return p;
}

int
spool_body_check(struct spool *sp, uint64_t qid, const struct spool_body *b, uint64_t off,
	uint64_t len)
{
	const struct index_entry *e = index_find(&sp->ix, qid);
	if (e == NULL)
		return -ENOENT;
	if (off > b->len || len > b->len - off)
		return -EINVAL;
	for (uint32_t seg = e->segment - e->span; seg <= e->segment; seg++) {
		int fd = spool_read_fd(sp, seg);
		if (fd < 0)
			return fd;
	}
	return 0;
}

int64_t
spool_body_read(struct spool *sp, uint64_t qid, struct spool_body *b, uint64_t off, void *buf,
	uint32_t len, uint64_t ud, uint8_t sqe_flags)
{
	if (off >= b->len || len == 0)
		return -EINVAL;
	uint64_t left = b->len - off;
	uint32_t n = left < len ? (uint32_t)left : len;
	if (off >= b->parts_len) {
		int rc = spool_read(sp, qid, b->rest_off + (off - b->parts_len), buf, n, ud, sqe_flags);
		return rc < 0 ? rc : (int64_t)n;
	}
	if (index_find(&sp->ix, qid) == NULL)
		return -ENOENT;
	struct record_part p = spool_body_seek(b, off);
	uint64_t in_part = off - b->cur_start;
	if (n > p.len - in_part)
		n = (uint32_t)(p.len - in_part);
	int fd = spool_read_fd(sp, p.segment);
	if (fd < 0)
		return fd;
	struct io_uring_sqe *sqe = ring_sqe(sp->ring);
	io_uring_prep_read(sqe, fd, buf, n, p.offset + in_part);
	sqe->flags |= sqe_flags;
	io_uring_sqe_set_data64(sqe, ud);
	return n;
}

int
spool_body_extents(struct spool *sp, uint64_t qid, const struct spool_body *b,
	struct spool_extent *out, uint32_t max)
{
	const struct index_entry *e = index_find(&sp->ix, qid);
	if (e == NULL)
		return -ENOENT;
	uint32_t n = 0;
	for (uint32_t i = 0; i < b->parts; i++) {
		struct record_part p = record_parts_get(b->table, i);
		int fd = spool_read_fd(sp, p.segment);
		if (fd < 0)
			return fd;
		if (n == max)
			return -ENOBUFS;
		out[n++] = (struct spool_extent){ .fd = fd, .off = p.offset, .len = p.len };
	}
	if (b->len > b->parts_len) {
		int fd = spool_read_fd(sp, e->segment);
		if (fd < 0)
			return fd;
		if (n == max)
			return -ENOBUFS;
		out[n++] = (struct spool_extent){ .fd = fd,
			.off = e->offset + spool_message_start(e) + b->rest_off,
			.len = b->len - b->parts_len };
	}
	return (int)n;
}

/* ---- the loop's hooks ---- */

static void
spool_turn(void *ctx)
{
	spool_body_turn(ctx);
	spool_flush(ctx);
}

static uint64_t
spool_next_ms(void *ctx)
{
	const struct spool *sp = ctx;
	/* A batch in flight: its completion wakes the loop, which flushes then. */
	if (sp->busy || sp->queued.count == 0)
		return UINT64_MAX;
	if (sp->queued_messages > 0 || sp->ring->stopping)
		return 0;
	uint64_t due = sp->queued_since_ms + SPOOL_STATE_DELAY_MS;
	return due > sp->ring->now_ms ? due - sp->ring->now_ms : 0;
}

static bool
spool_idle(void *ctx)
{
	const struct spool *sp = ctx;
	return !sp->busy && sp->queued.count == 0 && sp->unlinks_in_flight == 0
		&& sp->copy_reads == 0;
}

static const struct ring_hooks spool_hooks = {
	.name = "spool",
	.turn = spool_turn,
	.next_ms = spool_next_ms,
	.idle = spool_idle,
};

const struct spool_stats *
spool_stats(const struct spool *sp)
{
	return &sp->stats;
}

void
spool_close(struct spool *sp)
{
	ASSERT(spool_idle(sp));
	for (uint32_t i = 0; i < sp->read_fd_count; i++) {
		if (sp->read_fds[i] >= 0)
			close(sp->read_fds[i]);
	}
	free(sp->read_fds);
	free(sp->seg_sizes);
	close(sp->seg_fd);
	close(sp->dir_fd);
	index_fini(&sp->ix);
	reply_cache_free(sp->replies);
	schedule_fini(&sp->sched);
	for (uint32_t i = 0; i < sp->queued.count; i++) {
		spool_octets_done(sp, &sp->queued.recs[i]);
		free(sp->queued.recs[i].copy);
		if (sp->queued.recs[i].m != NULL)
			msg_unref(sp->queued.recs[i].m);
	}
	free(sp->queued.recs);
	free(sp->flying.recs);
	free(sp->iov);
	free(sp);
}
