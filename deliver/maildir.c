/* deliver/maildir.c - Maildir deliveries as linked ring chains; see maildir.h. */
#include "deliver/maildir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/openat2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "base/queue_id.h"
#include "proto/received.h"
#include "queue/spool.h"

#define MAILDIR_HELPER_SLOT MAILDIR_JOBS_MAX          /* user_data slot of helper results */
#define MAILDIR_REQS_MAX    (MAILDIR_JOBS_MAX + 1u)   /* a request per job, and the sync */
_Static_assert(MAILDIR_BOXES_MAX > MAILDIR_JOBS_MAX, "an unused mailbox can always be evicted");
_Static_assert(MAILDIR_CHUNK_SIZE <= RING_RW_MAX, "the kernel writes a whole chunk");

enum maildir_step {
	STEP_OPEN = 1, STEP_WRITE, STEP_READ, STEP_CLOSE,
	STEP_RENAME,                  /* last step of the final chain */
	STEP_MORE,                    /* last step of a chain that leaves chunks for the next */
};

enum maildir_req_kind { REQ_SYNC = 1, REQ_OPENBOX, REQ_CHECK };

/* A request to the helper thread, and its answer. */
struct maildir_req {
	enum maildir_req_kind kind;
	uint32_t job;                  /* slot, for REQ_OPENBOX and REQ_CHECK */
	char mailbox[MAILDIR_MAILBOX_MAX];
	char name[MAILDIR_NAME_MAX];
	int tmp_fd, new_fd;            /* REQ_OPENBOX answer */
};

/* An open mailbox: descriptors of its tmp/ and new/, so that no path is resolved again and no
 * link inside the root is ever followed (they were opened with RESOLVE_NO_SYMLINKS). */
struct maildir_box {
	char name[MAILDIR_MAILBOX_MAX];
	int tmp_fd, new_fd;            /* -1: unused entry */
	uint32_t users;                /* jobs using it: not evicted meanwhile */
	uint64_t used_ms;
};

struct maildir_job {
	bool busy;
	uint32_t gen;
	uint64_t ud;                   /* the caller's, for the result */
	struct maildir_delivery d;
	char mailbox[MAILDIR_MAILBOX_MAX];
	char name[MAILDIR_NAME_MAX];
	uint32_t box;                  /* index in boxes, or UINT32_MAX */
	uint64_t copied;               /* body octets in the file so far */
	uint8_t *chunk;                /* MAILDIR_CHUNK_SIZE, for large messages; kept */
	struct maildir_job *next;      /* written / syncing lists */
	struct iovec iov[2];
	uint8_t rp[RECEIVED_RETURN_PATH_MAX];
	uint32_t rp_len;
	bool checked;                  /* the half-delivered check ran */
};

struct maildir {
	struct ring *ring;
	struct spool *spool;
	struct maildir_params p;
	uint8_t op;
	int root_fd;
	uint32_t file_base;            /* our registered file slots: file_base + job slot */
	struct maildir_job jobs[MAILDIR_JOBS_MAX];
	uint32_t busy;
	struct maildir_box boxes[MAILDIR_BOXES_MAX];
	struct maildir_job *written;   /* in new/, waiting for the next syncfs */
	uint32_t written_count;
	uint64_t written_since_ms;
	struct maildir_job *syncing;   /* covered by the syncfs in flight */
	bool sync_busy;
	/* The helper thread: blocking calls io_uring has no request for (syncfs, a safe mailbox
	 * creation, a directory scan). The shard queues requests under the lock; the thread
	 * answers through the shard's ring (IORING_OP_MSG_RING). */
	pthread_mutex_t lock;
	struct maildir_req reqs[MAILDIR_REQS_MAX];
	uint32_t req_head, req_count;
	struct maildir_req answers[MAILDIR_REQS_MAX];   /* by job slot; the sync at the end */
	int efd;
	uint64_t efd_one;
	atomic_bool stop;
	pthread_t thread;
	struct maildir_stats stats;
};

size_t
maildir_name(char out[MAILDIR_NAME_MAX], uint64_t arrival_ms, uint64_t qid, uint32_t rcpt,
	const char *hostname)
{
	char id[QUEUE_ID_STR_LEN + 1];
	queue_id_format(qid, id);
	/* Maildir names must not contain '/' or ':'; the host part is the configured name. */
	int n = snprintf(out, MAILDIR_NAME_MAX, "%" PRIu64 ".R%sQ%u.", arrival_ms / 1000, id, rcpt);
	ASSERT(n > 0);
	size_t len = (size_t)n;
	for (const char *h = hostname; *h != '\0' && len < MAILDIR_NAME_MAX - 1; h++)
		out[len++] = (*h == '/' || *h == ':') ? '_' : *h;
	out[len] = '\0';
	return len;
}

bool
maildir_error_permanent(int err)
{
	return err == -ENOTDIR || err == -ELOOP || err == -EXDEV || err == -ENAMETOOLONG;
}

/* ---- the helper thread ---- */

static int
maildir_openat2(int dir_fd, const char *path, uint64_t flags)
{
	struct open_how how = { .flags = flags | O_CLOEXEC,
		.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS };
	long fd = syscall(SYS_openat2, dir_fd, path, &how, sizeof(how));
	return fd < 0 ? -errno : (int)fd;
}

/* Opens (creating what is missing) <mailbox>/{tmp,new,cur} below the root without following a
 * link anywhere: a mailbox that is a symlink is refused with -ELOOP. */
static int
maildir_helper_openbox(struct maildir *md, struct maildir_req *q)
{
	if (mkdirat(md->root_fd, q->mailbox, 0700) != 0 && errno != EEXIST)
		return -errno;
	int box = maildir_openat2(md->root_fd, q->mailbox, O_RDONLY | O_DIRECTORY);
	if (box < 0)
		return box;
	static const char *const subs[3] = { "tmp", "new", "cur" };
	int rc = 0;
	for (uint32_t i = 0; i < 3 && rc == 0; i++) {
		if (mkdirat(box, subs[i], 0700) != 0 && errno != EEXIST)
			rc = -errno;
	}
	q->tmp_fd = rc == 0 ? maildir_openat2(box, "tmp", O_RDONLY | O_DIRECTORY) : -1;
	q->new_fd = rc == 0 ? maildir_openat2(box, "new", O_RDONLY | O_DIRECTORY) : -1;
	if (rc == 0 && (q->tmp_fd < 0 || q->new_fd < 0))
		rc = q->tmp_fd < 0 ? q->tmp_fd : q->new_fd;
	if (rc < 0) {
		if (q->tmp_fd >= 0)
			close(q->tmp_fd);
		if (q->new_fd >= 0)
			close(q->new_fd);
		q->tmp_fd = q->new_fd = -1;
	}
	close(box);
	return rc;
}

/* Whether the file of this delivery is in new/, or in cur/ with a reader's ":2,..." suffix:
 * then a crash came between the rename and the DELIVERED record. Returns 1, 0 or -errno. */
static int
maildir_helper_check(struct maildir *md, struct maildir_req *q)
{
	int box = maildir_openat2(md->root_fd, q->mailbox, O_RDONLY | O_DIRECTORY);
	if (box == -ENOENT)
		return 0;
	if (box < 0)
		return box;
	char path[MAILDIR_NAME_MAX + 8];
	snprintf(path, sizeof(path), "new/%s", q->name);
	int found = faccessat(box, path, F_OK, AT_SYMLINK_NOFOLLOW) == 0;
	int cur = found ? -1 : maildir_openat2(box, "cur", O_RDONLY | O_DIRECTORY);
	DIR *dir = cur >= 0 ? fdopendir(cur) : NULL;
	if (dir == NULL && cur >= 0)
		close(cur);
	size_t len = strlen(q->name);
	struct dirent *de;
	while (dir != NULL && !found && (de = readdir(dir)) != NULL)
		found = strncmp(de->d_name, q->name, len) == 0 && strncmp(de->d_name + len, ":2,", 3) == 0;
	if (dir != NULL)
		closedir(dir);
	close(box);
	return found;
}

static void *
maildir_helper_main(void *arg)
{
	struct maildir *md = arg;
	struct io_uring ring;
	if (io_uring_queue_init(4, &ring, 0) != 0)
		return NULL;
	uint64_t n;
	while (read(md->efd, &n, sizeof(n)) == (ssize_t)sizeof(n) && !atomic_load(&md->stop)) {
		for (;;) {
			pthread_mutex_lock(&md->lock);
			if (md->req_count == 0) {
				pthread_mutex_unlock(&md->lock);
				break;
			}
			struct maildir_req q = md->reqs[md->req_head];
			md->req_head = (md->req_head + 1) % MAILDIR_REQS_MAX;
			md->req_count--;
			pthread_mutex_unlock(&md->lock);
			int rc;
			uint32_t slot = MAILDIR_JOBS_MAX;
			if (q.kind == REQ_SYNC) {
				rc = syncfs(md->root_fd) == 0 ? 0 : -errno;
			} else {
				slot = q.job;
				rc = q.kind == REQ_OPENBOX ? maildir_helper_openbox(md, &q)
					: maildir_helper_check(md, &q);
			}
			md->answers[slot] = q;   /* read by the shard after the completion below */
			struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
			io_uring_prep_msg_ring(sqe, md->ring->fd, (unsigned)rc,
				ring_ud(md->op, MAILDIR_HELPER_SLOT, slot), 0);
			struct io_uring_cqe *cqe;
			if (io_uring_submit_and_wait(&ring, 1) < 0 || io_uring_wait_cqe(&ring, &cqe) != 0)
				break;
			io_uring_cqe_seen(&ring, cqe);
		}
	}
	io_uring_queue_exit(&ring);
	return NULL;
}

/* Queues a request for the helper thread and wakes it (the eventfd write goes through the
 * ring, so the shard makes no system call of its own for it). */
static void
maildir_helper_ask(struct maildir *md, const struct maildir_req *q)
{
	pthread_mutex_lock(&md->lock);
	ASSERT(md->req_count < MAILDIR_REQS_MAX);   /* one per job and one sync at most */
	md->reqs[(md->req_head + md->req_count) % MAILDIR_REQS_MAX] = *q;
	md->req_count++;
	pthread_mutex_unlock(&md->lock);
	md->efd_one = 1;
	struct io_uring_sqe *sqe = ring_sqe(md->ring);
	io_uring_prep_write(sqe, md->efd, &md->efd_one, sizeof(md->efd_one), 0);
	io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_NONE, 0, 0));
}

/* ---- mailboxes ---- */

static uint32_t
maildir_box_find(struct maildir *md, const char *name)
{
	for (uint32_t i = 0; i < MAILDIR_BOXES_MAX; i++) {
		if (md->boxes[i].tmp_fd >= 0 && strcmp(md->boxes[i].name, name) == 0)
			return i;
	}
	return UINT32_MAX;
}

/* The least recently used entry nobody uses (one always exists: more entries than jobs). */
static uint32_t
maildir_box_victim(struct maildir *md)
{
	uint32_t best = UINT32_MAX;
	for (uint32_t i = 0; i < MAILDIR_BOXES_MAX; i++) {
		struct maildir_box *b = &md->boxes[i];
		if (b->tmp_fd < 0)
			return i;
		if (b->users == 0 && (best == UINT32_MAX || b->used_ms < md->boxes[best].used_ms))
			best = i;
	}
	ASSERT(best != UINT32_MAX);
	return best;
}

static void
maildir_close_fd(struct maildir *md, int fd)
{
	struct io_uring_sqe *sqe = ring_sqe(md->ring);
	io_uring_prep_close(sqe, fd);
	io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_NONE, 0, 0));
}

static uint32_t
maildir_box_put(struct maildir *md, const char *name, int tmp_fd, int new_fd)
{
	uint32_t i = maildir_box_find(md, name);
	if (i != UINT32_MAX) {   /* opened meanwhile by another job: keep the first */
		maildir_close_fd(md, tmp_fd);
		maildir_close_fd(md, new_fd);
		return i;
	}
	i = maildir_box_victim(md);
	struct maildir_box *b = &md->boxes[i];
	if (b->tmp_fd >= 0) {
		maildir_close_fd(md, b->tmp_fd);
		maildir_close_fd(md, b->new_fd);
	}
	size_t len = strnlen(name, sizeof(b->name) - 1);
	memcpy(b->name, name, len);
	b->name[len] = '\0';
	b->tmp_fd = tmp_fd;
	b->new_fd = new_fd;
	b->users = 0;
	return i;
}

/* ---- jobs ---- */

static uint32_t
maildir_slot(const struct maildir *md, const struct maildir_job *j)
{
	return (uint32_t)(j - md->jobs);
}

/* Tags a prepared request of the job's chain; every step but the last links to the next and
 * posts nothing on success. */
static void
maildir_tag(struct maildir *md, struct maildir_job *j, struct io_uring_sqe *sqe,
	enum maildir_step step, bool last)
{
	if (!last)
		sqe->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
	io_uring_sqe_set_data64(sqe, ring_ud(md->op, maildir_slot(md, j), (j->gen << 8) | step));
}

/* Read+write pairs moving the rest of the body, as many as one chain takes (the caller checked
 * with spool_read_check that the reads can be queued). Returns whether the body is then
 * complete. */
static bool
maildir_submit_chunks(struct maildir *md, struct maildir_job *j, uint32_t fi)
{
	uint64_t end = j->d.body_len;
	for (uint32_t k = 0; k < MAILDIR_CHAIN_CHUNKS && j->copied < end; k++) {
		uint32_t n = end - j->copied < MAILDIR_CHUNK_SIZE ? (uint32_t)(end - j->copied)
			: MAILDIR_CHUNK_SIZE;
		bool last_chunk = j->copied + n == end;
		bool chain_end = !last_chunk && k + 1 == MAILDIR_CHAIN_CHUNKS;
		uint64_t ud = ring_ud(md->op, maildir_slot(md, j), (j->gen << 8) | STEP_READ);
		int rc = spool_read(md->spool, j->d.qid, j->d.body_off + j->copied, j->chunk, n, ud,
			IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS);
		ASSERT(rc == 0);
		struct io_uring_sqe *sqe = ring_sqe(md->ring);
		io_uring_prep_write(sqe, (int)fi, j->chunk, n, j->rp_len + j->copied);
		sqe->flags |= IOSQE_FIXED_FILE;
		maildir_tag(md, j, sqe, chain_end ? STEP_MORE : STEP_WRITE, chain_end);
		j->copied += n;
	}
	return j->copied == end;
}

/* The final steps: close the file, rename it into new/. */
static void
maildir_submit_finish(struct maildir *md, struct maildir_job *j, uint32_t fi)
{
	const struct maildir_box *b = &md->boxes[j->box];
	struct io_uring_sqe *sqe = ring_sqe(md->ring);
	io_uring_prep_close_direct(sqe, fi);
	maildir_tag(md, j, sqe, STEP_CLOSE, false);
	sqe = ring_sqe(md->ring);
	io_uring_prep_renameat(sqe, b->tmp_fd, j->name, b->new_fd, j->name, 0);
	maildir_tag(md, j, sqe, STEP_RENAME, true);
}

static void maildir_job_done(struct maildir *md, struct maildir_job *j, int res);

/* open tmp/<name> -> write Return-Path and what was read -> [read, write]... -> close ->
 * rename into new/. Durability comes after, for many deliveries at once (the group sync). */
static void
maildir_submit_first(struct maildir *md, struct maildir_job *j)
{
	uint32_t fi = md->file_base + maildir_slot(md, j);
	const struct maildir_box *b = &md->boxes[j->box];
	uint64_t rest = j->d.body_len - j->d.body_read.len;
	if (rest > 0 && j->chunk == NULL)
		j->chunk = malloc(MAILDIR_CHUNK_SIZE);
	int rc = rest == 0 ? 0 : j->chunk == NULL ? -ENOMEM
		: spool_read_check(md->spool, j->d.qid, j->d.body_off + j->d.body_read.len, rest);
	if (rc < 0) {
		maildir_job_done(md, j, rc);
		return;
	}
	ring_sqe_reserve(md->ring, 4 + 2 * MAILDIR_CHAIN_CHUNKS);   /* one chain, one submission */
	struct io_uring_sqe *sqe = ring_sqe(md->ring);
	io_uring_prep_openat_direct(sqe, b->tmp_fd, j->name,
		O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW, 0600, fi);
	maildir_tag(md, j, sqe, STEP_OPEN, false);
	j->iov[0] = (struct iovec){ j->rp, j->rp_len };
	j->iov[1] = (struct iovec){ (void *)j->d.body_read.ptr, j->d.body_read.len };
	j->copied = j->d.body_read.len;
	sqe = ring_sqe(md->ring);
	io_uring_prep_writev(sqe, (int)fi, j->iov, 2, 0);
	sqe->flags |= IOSQE_FIXED_FILE;
	maildir_tag(md, j, sqe, STEP_WRITE, false);
	if (maildir_submit_chunks(md, j, fi))
		maildir_submit_finish(md, j, fi);
}

static void
maildir_submit_more(struct maildir *md, struct maildir_job *j)
{
	uint32_t fi = md->file_base + maildir_slot(md, j);
	int rc = spool_read_check(md->spool, j->d.qid, j->d.body_off + j->copied,
		j->d.body_len - j->copied);
	if (rc < 0) {   /* the message left the queue meanwhile (a queue command) */
		struct io_uring_sqe *sqe = ring_sqe(md->ring);
		io_uring_prep_close_direct(sqe, fi);
		io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_NONE, 0, 0));
		maildir_job_done(md, j, rc);
		return;
	}
	ring_sqe_reserve(md->ring, 2 + 2 * MAILDIR_CHAIN_CHUNKS);
	if (maildir_submit_chunks(md, j, fi))
		maildir_submit_finish(md, j, fi);
}

static void
maildir_job_done(struct maildir *md, struct maildir_job *j, int res)
{
	if (j->box != UINT32_MAX) {
		ASSERT(md->boxes[j->box].users > 0);
		md->boxes[j->box].users--;
		md->boxes[j->box].used_ms = md->ring->now_ms;
		j->box = UINT32_MAX;
	}
	ring_post(md->ring, j->ud, res);
	j->busy = false;
	j->gen = (j->gen + 1) & 0xffffffu;
	ASSERT(md->busy > 0);
	md->busy--;
}

/* The file is in new/: it counts as delivered once the next syncfs returns. */
static void
maildir_job_written(struct maildir *md, struct maildir_job *j)
{
	if (md->written == NULL)
		md->written_since_ms = md->ring->now_ms;
	j->next = md->written;
	md->written = j;
	md->written_count++;
}

/* The mailbox is open: check for a half-done delivery if the message is old, else write. */
static void
maildir_job_go(struct maildir *md, struct maildir_job *j)
{
	md->boxes[j->box].users++;
	if (j->d.arrival_ms < md->p.started_real_ms && !j->checked) {
		struct maildir_req q = { .kind = REQ_CHECK, .job = maildir_slot(md, j) };
		snprintf(q.mailbox, sizeof(q.mailbox), "%s", j->mailbox);
		snprintf(q.name, sizeof(q.name), "%s", j->name);
		maildir_helper_ask(md, &q);
		return;
	}
	maildir_submit_first(md, j);
}

bool
maildir_can_start(const struct maildir *md)
{
	return md->busy < MAILDIR_JOBS_MAX;
}

void
maildir_deliver(struct maildir *md, const struct maildir_delivery *d, uint64_t ud)
{
	ASSERT(maildir_can_start(md));
	uint32_t slot = 0;
	while (md->jobs[slot].busy)
		slot++;
	struct maildir_job *j = &md->jobs[slot];
	j->busy = true;
	md->busy++;
	j->ud = ud;
	j->d = *d;
	j->checked = false;
	j->box = UINT32_MAX;
	snprintf(j->mailbox, sizeof(j->mailbox), "%s", d->mailbox);
	j->d.mailbox = j->mailbox;
	maildir_name(j->name, d->arrival_ms, d->qid, d->rcpt, md->p.myhostname);
	/* RFC 5321 4.4: the final delivery adds Return-Path: with the reverse path, exactly once. */
	if (d->mail_from.len > RECEIVED_SENDER_MAX) {
		maildir_job_done(md, j, -EINVAL);   /* not from our server: the envelope is damaged */
		return;
	}
	j->rp_len = (uint32_t)received_return_path(j->rp, sizeof(j->rp), d->mail_from);
	ASSERT(d->body_read.len <= RING_RW_MAX - sizeof(j->rp));   /* the first writev is whole */
	uint32_t b = maildir_box_find(md, j->mailbox);
	if (b != UINT32_MAX) {
		j->box = b;
		maildir_job_go(md, j);
		return;
	}
	struct maildir_req q = { .kind = REQ_OPENBOX, .job = slot };
	snprintf(q.mailbox, sizeof(q.mailbox), "%s", j->mailbox);
	maildir_helper_ask(md, &q);
}

/* ---- group sync ---- */

/* Asks the helper for one syncfs covering every delivery written so far. */
static void
maildir_sync_start(struct maildir *md)
{
	if (md->sync_busy || md->written == NULL)
		return;
	/* Each syncfs costs the same whether it covers one file or a hundred: let a few
	 * milliseconds of deliveries gather first (the client had its 250 long ago). */
	if (md->written_count < MAILDIR_SYNC_BATCH && !md->ring->stopping
		&& md->ring->now_ms < md->written_since_ms + MAILDIR_SYNC_DELAY_MS)
		return;
	md->syncing = md->written;
	md->written = NULL;
	md->written_count = 0;
	md->sync_busy = true;
	md->stats.syncs++;
	struct maildir_req q = { .kind = REQ_SYNC };
	maildir_helper_ask(md, &q);
}

static void
maildir_synced(struct maildir *md, int res)
{
	struct maildir_job *j = md->syncing;
	md->syncing = NULL;
	md->sync_busy = false;
	while (j != NULL) {
		struct maildir_job *next = j->next;
		if (res == 0)
			md->stats.deliveries++;
		maildir_job_done(md, j, res);   /* a failure is retried: same name, same bytes */
		j = next;
	}
}

/* ---- completions ---- */

static void
maildir_helper_done(struct maildir *md, uint32_t slot, int res)
{
	if (slot == MAILDIR_JOBS_MAX) {
		ASSERT(md->sync_busy);
		maildir_synced(md, res);
		return;
	}
	ASSERT(slot < MAILDIR_JOBS_MAX);
	struct maildir_job *j = &md->jobs[slot];
	ASSERT(j->busy);
	const struct maildir_req *a = &md->answers[slot];
	if (a->kind == REQ_OPENBOX) {
		if (res < 0) {
			maildir_job_done(md, j, res);
			return;
		}
		j->box = maildir_box_put(md, j->mailbox, a->tmp_fd, a->new_fd);
		maildir_job_go(md, j);
		return;
	}
	j->checked = true;
	if (res == 1) {
		maildir_job_written(md, j);   /* delivered before the crash: sync, then done */
		return;
	}
	maildir_submit_first(md, j);
}

static void
maildir_complete(void *ctx, const struct io_uring_cqe *cqe)
{
	struct maildir *md = ctx;
	uint32_t slot = ring_ud_slot(cqe->user_data);
	uint32_t gen = ring_ud_gen(cqe->user_data);
	if (slot == MAILDIR_HELPER_SLOT) {
		maildir_helper_done(md, gen, cqe->res);
		return;
	}
	ASSERT(slot < MAILDIR_JOBS_MAX);
	struct maildir_job *j = &md->jobs[slot];
	ASSERT(j->busy);
	ASSERT((gen >> 8) == j->gen);
	enum maildir_step step = (enum maildir_step)(gen & 0xffu);
	/* A step that fails posts its completion and suppresses those of the steps after it
	 * (IOSQE_CQE_SKIP_SUCCESS in a link), so any completion ends the chain; only its last step
	 * reports success. A short write or read fails the link with a result >= 0. */
	bool last = step == STEP_RENAME || step == STEP_MORE;
	int err = cqe->res < 0 ? cqe->res : last ? 0 : -EIO;
	if (err != 0) {
		if (step != STEP_OPEN && step != STEP_RENAME && step != STEP_CLOSE) {
			struct io_uring_sqe *sqe = ring_sqe(md->ring);   /* the file is still open */
			io_uring_prep_close_direct(sqe, md->file_base + slot);
			io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_NONE, 0, 0));
		}
		maildir_job_done(md, j, err);
		return;
	}
	if (step == STEP_MORE) {
		maildir_submit_more(md, j);
		return;
	}
	maildir_job_written(md, j);
}

/* ---- the loop's hooks and set-up ---- */

static void
maildir_turn(void *ctx)
{
	maildir_sync_start(ctx);
}

static uint64_t
maildir_next_ms(void *ctx)
{
	const struct maildir *md = ctx;
	if (md->written == NULL || md->sync_busy)
		return UINT64_MAX;
	uint64_t due = md->written_since_ms + MAILDIR_SYNC_DELAY_MS;
	return due > md->ring->now_ms ? due - md->ring->now_ms : 0;
}

static bool
maildir_idle(void *ctx)
{
	const struct maildir *md = ctx;
	return md->busy == 0;
}

static const struct ring_hooks maildir_hooks = {
	.name = "maildir",
	.turn = maildir_turn,
	.next_ms = maildir_next_ms,
	.idle = maildir_idle,
};

int
maildir_init(struct ring *r, struct spool *sp, const struct maildir_params *p,
	struct maildir **out)
{
	if (mkdir(p->root, 0700) != 0 && errno != EEXIST)
		return -errno;
	struct maildir *md = calloc(1, sizeof(*md));
	if (md == NULL)
		return -ENOMEM;
	md->ring = r;
	md->spool = sp;
	md->p = *p;
	for (uint32_t i = 0; i < MAILDIR_BOXES_MAX; i++)
		md->boxes[i].tmp_fd = md->boxes[i].new_fd = -1;
	int rc;
	md->root_fd = open(p->root, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (md->root_fd < 0) {
		rc = -errno;
		goto fail_free;
	}
	md->efd = eventfd(0, EFD_CLOEXEC);
	if (md->efd < 0) {
		rc = -errno;
		goto fail_root;
	}
	pthread_mutex_init(&md->lock, NULL);
	atomic_init(&md->stop, false);
	rc = -pthread_create(&md->thread, NULL, maildir_helper_main, md);
	if (rc < 0)
		goto fail_efd;
	md->file_base = ring_files_take(r, MAILDIR_JOBS_MAX);
	md->op = ring_op_register(r, maildir_complete, md);
	ring_hooks_register(r, &maildir_hooks, md);
	*out = md;
	return 0;
fail_efd:
	pthread_mutex_destroy(&md->lock);
	close(md->efd);
fail_root:
	close(md->root_fd);
fail_free:
	free(md);
	return rc;
}

void
maildir_fini(struct maildir *md)
{
	atomic_store(&md->stop, true);
	uint64_t one = 1;
	(void)!write(md->efd, &one, sizeof(one));
	pthread_join(md->thread, NULL);
	for (uint32_t i = 0; i < MAILDIR_JOBS_MAX; i++)
		free(md->jobs[i].chunk);
	for (uint32_t i = 0; i < MAILDIR_BOXES_MAX; i++) {
		if (md->boxes[i].tmp_fd >= 0) {
			close(md->boxes[i].tmp_fd);
			close(md->boxes[i].new_fd);
		}
	}
	pthread_mutex_destroy(&md->lock);
	close(md->efd);
	close(md->root_fd);
	free(md);
}

const struct maildir_stats *
maildir_stats(const struct maildir *md)
{
	return &md->stats;
}
