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
#include <linux/magic.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "base/log.h"

#include "base/queue_id.h"
#include "proto/received.h"
#include "queue/spool.h"

#define MAILDIR_HELPER_SLOT MAILDIR_JOBS_MAX          /* user_data slot of helper results */
#define MAILDIR_REQS_MAX    (MAILDIR_JOBS_MAX + 1u)   /* a request per job, and the sync */
_Static_assert(MAILDIR_BOXES_MAX > MAILDIR_JOBS_MAX, "an unused mailbox can always be evicted");
_Static_assert(MAILDIR_CHUNK_SIZE <= RING_RW_MAX, "the kernel writes a whole chunk");

enum maildir_step {
	STEP_OPEN = 1, STEP_WRITE, STEP_READ,
	STEP_FDATASYNC,               /* fsync mode: last step of the chain that writes the file */
	STEP_CLOSE,
	STEP_RENAME,                  /* last step of the final chain */
	STEP_MORE,                    /* last step of a chain that leaves chunks for the next */
};
#define MAILDIR_DIRSYNC_SLOT (MAILDIR_HELPER_SLOT + 1u)   /* fsyncs of new/ (fsync mode) */

enum maildir_req_kind { REQ_SYNC = 1, REQ_OPENBOX, REQ_CHECK };

/* A request to the helper thread, and its answer. */
struct maildir_req {
	enum maildir_req_kind kind;
	uint32_t job;                  /* slot, for REQ_OPENBOX and REQ_CHECK */
	char mailbox[MAILDIR_MAILBOX_MAX];
	char name[MAILDIR_NAME_MAX];
	uint64_t size;                 /* REQ_CHECK: of the whole file, Return-Path included */
	bool fsync_mode;               /* REQ_OPENBOX: make new names durable with fsyncs */
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
	struct maildir_job *syncing;   /* covered by the sync in flight */
	bool sync_busy;
	bool fsync_mode;               /* maildir_sync, auto resolved: fsync, else syncfs */
	uint32_t dirsync_wait;         /* fsync mode: new/ fsyncs in flight */
	int dirsync_err;
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

static int
maildir_fsync_fd(int fd)
{
#ifdef RINGMTA_UNSAFE_SKIP_SYNC
	(void)fd;   /* the power-cut test's self-check build: meson_options.txt */
	return 0;
#else
	return fsync(fd);
#endif
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
	/* fsync mode: the names <mailbox>, tmp, new and cur must be durable before a file in them
	 * counts (syncfs mode: the group syncfs after the first delivery covers them). Also when
	 * they existed already: a run that crashed may have made them without syncing. */
	if (rc == 0 && q->fsync_mode && (maildir_fsync_fd(box) != 0
		|| maildir_fsync_fd(md->root_fd) != 0))
		rc = -errno;
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
	/* Only a whole file counts: after a power cut a name can be durable without its data
	 * (ext4 commits a rename with the next journal commit, before delayed data is written). */
	struct stat st;
	int found = fstatat(box, path, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)
		&& (uint64_t)st.st_size == q->size;
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
#ifdef RINGMTA_UNSAFE_SKIP_SYNC
				rc = 0;   /* the power-cut test's self-check build: meson_options.txt */
#else
				rc = syncfs(md->root_fd) == 0 ? 0 : -errno;
#endif
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
 * with spool_body_check that the reads can be queued). A read goes no further than the part of
 * the body it starts in, so a pair may move less than a chunk. Returns whether the body is then
 * complete. */
static bool
maildir_submit_chunks(struct maildir *md, struct maildir_job *j, uint32_t fi)
{
	uint64_t end = j->d.body.len;
	for (uint32_t k = 0; k < MAILDIR_CHAIN_CHUNKS && j->copied < end; k++) {
		uint64_t ud = ring_ud(md->op, maildir_slot(md, j), (j->gen << 8) | STEP_READ);
		int64_t got = spool_body_read(md->spool, j->d.qid, &j->d.body, j->copied, j->chunk,
			MAILDIR_CHUNK_SIZE, ud, IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS);
		ASSERT(got > 0);
		uint32_t n = (uint32_t)got;
		bool last_chunk = j->copied + n == end;
		bool chain_end = !last_chunk && k + 1 == MAILDIR_CHAIN_CHUNKS;
		struct io_uring_sqe *sqe = ring_sqe(md->ring);
		io_uring_prep_write(sqe, (int)fi, j->chunk, n, j->rp_len + j->copied);
		sqe->flags |= IOSQE_FIXED_FILE;
		maildir_tag(md, j, sqe, chain_end ? STEP_MORE : STEP_WRITE, chain_end);
		j->copied += n;
	}
	return j->copied == end;
}

/* An fdatasync (or fsync) of fd, fixed or not; nothing in the power-cut test's self-check
 * build (meson_options.txt: unsafe_skip_sync). */
static void
maildir_prep_fsync(struct io_uring_sqe *sqe, int fd, bool fixed, unsigned flags)
{
#ifdef RINGMTA_UNSAFE_SKIP_SYNC
	(void)fd;
	(void)fixed;
	(void)flags;
	io_uring_prep_nop(sqe);
#else
	io_uring_prep_fsync(sqe, fd, flags);
	if (fixed)
		sqe->flags |= IOSQE_FIXED_FILE;
#endif
}

/* Close the file, rename it into new/. */
static void
maildir_submit_rename(struct maildir *md, struct maildir_job *j, uint32_t fi)
{
	const struct maildir_box *b = &md->boxes[j->box];
	struct io_uring_sqe *sqe = ring_sqe(md->ring);
	io_uring_prep_close_direct(sqe, fi);
	maildir_tag(md, j, sqe, STEP_CLOSE, false);
	sqe = ring_sqe(md->ring);
	io_uring_prep_renameat(sqe, b->tmp_fd, j->name, b->new_fd, j->name, 0);
	maildir_tag(md, j, sqe, STEP_RENAME, true);
}

/* The final steps: close the file and rename it into new/; in fsync mode, fdatasync it first,
 * at the end of this chain, and the rest once it has returned 0. A failed fdatasync in the
 * middle of a chain is not seen: the kernel (6.18 here) neither breaks the link for it nor
 * posts its completion under IOSQE_CQE_SKIP_SUCCESS, so the rename would go on and the
 * delivery would count without its data being durable. */
static void
maildir_submit_finish(struct maildir *md, struct maildir_job *j, uint32_t fi)
{
	if (!md->fsync_mode) {
		maildir_submit_rename(md, j, fi);
		return;
	}
	struct io_uring_sqe *sqe = ring_sqe(md->ring);
	maildir_prep_fsync(sqe, (int)fi, true, IORING_FSYNC_DATASYNC);
	maildir_tag(md, j, sqe, STEP_FDATASYNC, true);
	md->stats.file_syncs++;
}

static void maildir_job_done(struct maildir *md, struct maildir_job *j, int res);

/* open tmp/<name> -> write Return-Path and what was read -> [read, write]... -> close ->
 * rename into new/. Durability comes after, for many deliveries at once (the group sync). */
static void
maildir_submit_first(struct maildir *md, struct maildir_job *j)
{
	uint32_t fi = md->file_base + maildir_slot(md, j);
	const struct maildir_box *b = &md->boxes[j->box];
	uint64_t rest = j->d.body.len - j->d.body_read.len;
	if (rest > 0 && j->chunk == NULL)
		j->chunk = malloc(MAILDIR_CHUNK_SIZE);
	int rc = rest == 0 ? 0 : j->chunk == NULL ? -ENOMEM
		: spool_body_check(md->spool, j->d.qid, &j->d.body, j->d.body_read.len, rest);
	if (rc < 0) {
		maildir_job_done(md, j, rc);
		return;
	}
	ring_sqe_reserve(md->ring, 5 + 2 * MAILDIR_CHAIN_CHUNKS);   /* one chain, one submission */
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
	int rc = spool_body_check(md->spool, j->d.qid, &j->d.body, j->copied,
		j->d.body.len - j->copied);
	if (rc < 0) {   /* the message left the queue meanwhile (a queue command) */
		struct io_uring_sqe *sqe = ring_sqe(md->ring);
		io_uring_prep_close_direct(sqe, fi);
		io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_NONE, 0, 0));
		maildir_job_done(md, j, rc);
		return;
	}
	ring_sqe_reserve(md->ring, 3 + 2 * MAILDIR_CHAIN_CHUNKS);
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
		struct maildir_req q = { .kind = REQ_CHECK, .job = maildir_slot(md, j),
			.size = j->rp_len + j->d.body.len };
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
	struct maildir_req q = { .kind = REQ_OPENBOX, .job = slot, .fsync_mode = md->fsync_mode };
	snprintf(q.mailbox, sizeof(q.mailbox), "%s", j->mailbox);
	maildir_helper_ask(md, &q);
}

/* ---- group sync ---- */

/* fsync mode: the files of md->syncing are fdatasync'ed (in their chains); their renames become
 * durable with one fsync of each distinct mailbox's new/, all submitted at once. The jobs hold
 * their mailbox entries, so the descriptors stay open until the fsyncs are done. */
static void
maildir_dirsync_start(struct maildir *md)
{
	uint64_t seen[(MAILDIR_BOXES_MAX + 63) / 64] = { 0 };
	uint32_t n = 0;
	for (const struct maildir_job *j = md->syncing; j != NULL; j = j->next) {
		uint32_t b = j->box;
		if (seen[b / 64] & (1ull << (b % 64)))
			continue;
		seen[b / 64] |= 1ull << (b % 64);
		struct io_uring_sqe *sqe = ring_sqe(md->ring);
		maildir_prep_fsync(sqe, md->boxes[b].new_fd, false, 0);
		io_uring_sqe_set_data64(sqe, ring_ud(md->op, MAILDIR_DIRSYNC_SLOT, 0));
		n++;
	}
	ASSERT(n > 0);
	md->dirsync_wait = n;
	md->dirsync_err = 0;
	md->stats.syncs += n;
}

/* Asks for the sync covering every delivery written so far. */
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
	if (md->fsync_mode) {
		maildir_dirsync_start(md);
		return;
	}
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
	if (slot == MAILDIR_DIRSYNC_SLOT) {
		ASSERT(md->sync_busy);
		ASSERT(md->dirsync_wait > 0);
		if (cqe->res < 0 && md->dirsync_err == 0)
			md->dirsync_err = cqe->res;
		if (--md->dirsync_wait == 0)
			maildir_synced(md, md->dirsync_err);
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
	bool last = step == STEP_RENAME || step == STEP_MORE || step == STEP_FDATASYNC;
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
	if (step == STEP_FDATASYNC) {
		ring_sqe_reserve(md->ring, 2);   /* one chain, one submission */
		maildir_submit_rename(md, j, md->file_base + slot);
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

/* maildir_sync = auto: syncfs where the kernel file system makes it durable and perf/RESULTS.md
 * measured it cheaper (ext4, xfs, btrfs); fsync anywhere else, FUSE first of all: the kernel
 * does not pass syncfs to a FUSE server (tests/powercut/README.md), nor to many others. */
static int
maildir_choose_sync(struct maildir *md)
{
	enum config_maildir_sync want = md->p.sync;
	struct statfs sfs;
	if (fstatfs(md->root_fd, &sfs) != 0)
		return -errno;
	if (want == CONFIG_MAILDIR_SYNC_AUTO)
		want = sfs.f_type == EXT4_SUPER_MAGIC || sfs.f_type == XFS_SUPER_MAGIC
			|| sfs.f_type == BTRFS_SUPER_MAGIC ? CONFIG_MAILDIR_SYNC_SYNCFS
			: CONFIG_MAILDIR_SYNC_FSYNC;
	md->fsync_mode = want == CONFIG_MAILDIR_SYNC_FSYNC;
	char buf[LOG_LINE_MIN + 64];
	char magic[24];
	struct log_line l;
	snprintf(magic, sizeof(magic), "0x%llx", (unsigned long long)sfs.f_type);
	log_line_begin(&l, buf, sizeof(buf), md->ring->now_real_ms, "maildir_sync");
	log_line_u64(&l, "shard", md->ring->shard);
	log_line_str(&l, "strategy", md->fsync_mode ? "fsync" : "syncfs");
	log_line_str(&l, "fs_magic", magic);
	log_write(buf, log_line_end(&l));
	return 0;
}

int
maildir_init(struct ring *r, struct spool *sp, const struct maildir_params *p,
	struct maildir **out)
{
	if (mkdir(p->root, 0700) != 0 && errno != EEXIST)
		return -errno;
	int prc = spool_sync_parent(p->root);   /* the name maildir_root itself */
	if (prc < 0)
		return prc;
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
	rc = maildir_choose_sync(md);
	if (rc < 0)
		goto fail_root;
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
