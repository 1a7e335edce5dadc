/* deliver/maildir.c - Maildir delivery jobs as linked ring chains; see maildir.h. */
#include "deliver/maildir.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <linux/magic.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <unistd.h>

#include "engine/shard.h"
#include "queue/msg.h"
#include "base/queue_id.h"
#include "queue/record.h"
#include "queue/spool.h"
#include "conf/config.h"
#include "base/log.h"
#include "conf/policy.h"
#include "proto/received.h"

#define DELIVER_PATH_MAX   320u
#define DELIVER_MAILBOX_MAX 80u
#define DELIVER_SYNC_SLOT   DELIVER_JOBS_MAX   /* user_data slot of the group sync completions */
#define DELIVER_DIRSYNC_MAX 32u   /* maildir_sync=fsync: new/ directories synced at once */
_Static_assert(DELIVER_JOBS_MAX + DELIVER_DIRSYNC_MAX <= SHARD_FILES_MAX,
	"a registered file slot per job and per directory sync");

enum deliver_step {
	STEP_OPEN = 1, STEP_WRITE, STEP_CLOSE,
	STEP_RENAME,                    /* last step of a delivery chain */
	STEP_FDATASYNC,                 /* maildir_sync=fsync: between WRITE and CLOSE */
	STEP_DIR_OPEN, STEP_DIR_FSYNC, STEP_DIR_CLOSE,   /* a new/ directory sync chain */
	STEP_MKDIR = 16,                /* a mailbox creation chain: mkdirs, then with */
	STEP_MKDIR_SYNC,                /* maildir_sync=fsync the syncs of root and mailbox */
	STEP_MKDIR_DONE = 31,
};

struct deliver_job {
	struct msg *m;
	uint32_t rcpt;
	uint32_t attempts;
	uint64_t retry_at_ms;
	int err;                       /* first error of the chain in flight */
	bool mkdir_tried;              /* this attempt already created the mailbox */
	bool need_mkdir;               /* the next chain creates the mailbox */
	struct deliver_job *next;      /* wait queue or retry list */
	struct iovec iov[2];
	char mailbox[DELIVER_MAILBOX_MAX];
	char tmp_path[DELIVER_PATH_MAX];
	char new_path[DELIVER_PATH_MAX];
	char new_dir[DELIVER_PATH_MAX];
	char sub[3][DELIVER_PATH_MAX]; /* mailbox/tmp, mailbox/new, mailbox/cur */
	char rcpt_path[DELIVER_PATH_MAX];
	uint8_t rp[RECEIVED_RETURN_PATH_MAX];
};

struct deliver {
	struct shard *sh;
	int root_fd;
	struct deliver_job *slots[DELIVER_JOBS_MAX];
	uint32_t slot_gen[DELIVER_JOBS_MAX];
	uint32_t busy;
	struct deliver_job *wait_head, *wait_tail;
	struct deliver_job *retry_head;
	struct deliver_job *written;   /* in new/, waiting for the next syncfs */
	uint32_t written_count;
	uint64_t written_since_ms;     /* when the oldest of them was written */
	struct deliver_job *syncing;   /* covered by the syncfs in flight */
	bool sync_busy;
	bool fsync_mode;               /* maildir_sync, auto resolved: fsync, else syncfs */
	uint32_t dirsync_wait;         /* maildir_sync=fsync: directory sync chains in flight */
	int dirsync_err;
	int sync_efd;                  /* requests to the sync thread */
	uint64_t sync_request;         /* the eventfd increment, written through the ring */
	bool sync_stop;
	pthread_t sync_thread;
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

/* The sync thread: one syncfs(2) of the Maildir file system per request, its result posted to
 * the shard's ring as a completion (IORING_OP_MSG_RING). io_uring has no syncfs, and one syncfs
 * makes every file and rename written since the last one durable at once, where per-file
 * fsyncs would cost two device flushes per recipient. The shard never blocks on it. */
static void *
deliver_sync_main(void *arg)
{
	struct deliver *d = arg;
	struct io_uring ring;
	if (io_uring_queue_init(4, &ring, 0) != 0)
		return NULL;
	uint64_t n;
	while (read(d->sync_efd, &n, sizeof(n)) == (ssize_t)sizeof(n) && !d->sync_stop) {
#ifdef RINGMTA_UNSAFE_SKIP_SYNC
		int rc = 0;   /* the power-cut test's self-check build: see meson_options.txt */
#else
		int rc = syncfs(d->root_fd) == 0 ? 0 : -errno;
#endif
		struct io_uring_sqe *sqe = io_uring_get_sqe(&ring);
		io_uring_prep_msg_ring(sqe, d->sh->ring_fd, (unsigned)rc,
			shard_user_data(SHARD_OP_DELIVER, DELIVER_SYNC_SLOT, 0), 0);
		struct io_uring_cqe *cqe;
		if (io_uring_submit_and_wait(&ring, 1) < 0 || io_uring_wait_cqe(&ring, &cqe) != 0)
			break;
		io_uring_cqe_seen(&ring, cqe);
	}
	io_uring_queue_exit(&ring);
	return NULL;
}

/* maildir_sync = auto: syncfs where the kernel file system makes it durable and perf/RESULTS.md
 * measured it cheaper (ext4, xfs, btrfs); fsync anywhere else, FUSE first of all: the kernel
 * does not pass syncfs to a FUSE server (tests/powercut/README.md), nor to many others. */
static int
deliver_choose_sync(struct deliver *d)
{
	enum config_maildir_sync want = d->sh->eng->cfg->maildir_sync;
	struct statfs sfs;
	if (fstatfs(d->root_fd, &sfs) != 0)
		return -errno;
	if (want == CONFIG_MAILDIR_SYNC_AUTO)
		want = sfs.f_type == EXT4_SUPER_MAGIC || sfs.f_type == XFS_SUPER_MAGIC
			|| sfs.f_type == BTRFS_SUPER_MAGIC ? CONFIG_MAILDIR_SYNC_SYNCFS
			: CONFIG_MAILDIR_SYNC_FSYNC;
	d->fsync_mode = want == CONFIG_MAILDIR_SYNC_FSYNC;
	char buf[LOG_LINE_MIN + 64];
	struct log_line l;
	log_line_begin(&l, buf, sizeof(buf), d->sh->now_real_ms, "maildir_sync");
	log_line_u64(&l, "shard", d->sh->index);
	log_line_str(&l, "strategy", d->fsync_mode ? "fsync" : "syncfs");
	char magic[24];
	snprintf(magic, sizeof(magic), "0x%llx", (unsigned long long)sfs.f_type);
	log_line_str(&l, "fs_magic", magic);
	log_write(buf, log_line_end(&l));
	return 0;
}

int
deliver_init(struct shard *sh, struct deliver **out)
{
	const char *root = sh->eng->cfg->maildir_root;
	if (mkdir(root, 0700) != 0 && errno != EEXIST)
		return -errno;
	int prc = spool_sync_parent(root);   /* the name maildir_root itself */
	if (prc < 0)
		return prc;
	struct deliver *d = calloc(1, sizeof(*d));
	if (d == NULL)
		return -ENOMEM;
	d->sh = sh;
	int rc;
	d->root_fd = open(root, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (d->root_fd < 0) {
		rc = -errno;
		goto fail_free;
	}
	rc = deliver_choose_sync(d);
	if (rc < 0)
		goto fail_root;
	d->sync_efd = eventfd(0, EFD_CLOEXEC);
	if (d->sync_efd < 0) {
		rc = -errno;
		goto fail_root;
	}
	rc = -pthread_create(&d->sync_thread, NULL, deliver_sync_main, d);
	if (rc < 0)
		goto fail_efd;
	*out = d;
	return 0;
fail_efd:
	close(d->sync_efd);
fail_root:
	close(d->root_fd);
fail_free:
	free(d);
	return rc;
}

/* maildir_sync=fsync: an fsync (datasync: fdatasync) of a registered file, or nothing at all
 * in the power-cut test's self-check build (meson_options.txt: unsafe_skip_sync). */
static void
deliver_prep_fsync(struct io_uring_sqe *sqe, uint32_t fi, unsigned flags)
{
#ifdef RINGMTA_UNSAFE_SKIP_SYNC
	(void)fi;
	(void)flags;
	io_uring_prep_nop(sqe);
#else
	io_uring_prep_fsync(sqe, (int)fi, flags);
	sqe->flags |= IOSQE_FIXED_FILE;
#endif
}

static bool
deliver_fsync_mode(const struct deliver *d)
{
	return d->fsync_mode;
}

/* Tags a prepared request of job slot's chain; every step but the last links to the next. */
static void
deliver_tag(struct deliver *d, struct io_uring_sqe *sqe, uint32_t slot, enum deliver_step step,
	bool last, bool hard)
{
	sqe->flags |= last ? 0 : (uint8_t)((hard ? IOSQE_IO_HARDLINK : IOSQE_IO_LINK)
		| IOSQE_CQE_SKIP_SUCCESS);
	uint32_t gen = (d->slot_gen[slot] << 8) | (uint32_t)step;
	io_uring_sqe_set_data64(sqe, shard_user_data(SHARD_OP_DELIVER, slot, gen));
}

static uint32_t
deliver_file_index(uint32_t slot)
{
	return slot;   /* the registered file table's first DELIVER_JOBS_MAX slots are ours */
}

/* open tmp/ -> write -> [fdatasync] -> close -> rename into new/. Durability: with
 * maildir_sync=fsync each file's fdatasync is in its chain (the jobs' chains run in parallel),
 * and the rename is made durable after, for many deliveries at once, by one fsync of each new/
 * (deliver_dirsync_start); with syncfs, one syncfs covers it all (see deliver_sync_main). */
static void
deliver_submit_chain(struct deliver *d, uint32_t slot, struct deliver_job *j)
{
	uint32_t fi = deliver_file_index(slot);
	struct io_uring_sqe *sqe = shard_sqe(d->sh);
	io_uring_prep_openat_direct(sqe, d->root_fd, j->tmp_path, O_WRONLY | O_CREAT | O_TRUNC, 0600,
		fi);
	deliver_tag(d, sqe, slot, STEP_OPEN, false, false);
	sqe = shard_sqe(d->sh);
	io_uring_prep_writev(sqe, (int)fi, j->iov, 2, 0);
	sqe->flags |= IOSQE_FIXED_FILE;
	deliver_tag(d, sqe, slot, STEP_WRITE, false, false);
	if (deliver_fsync_mode(d)) {
		sqe = shard_sqe(d->sh);
		deliver_prep_fsync(sqe, fi, IORING_FSYNC_DATASYNC);
		deliver_tag(d, sqe, slot, STEP_FDATASYNC, false, false);
	}
	sqe = shard_sqe(d->sh);
	io_uring_prep_close_direct(sqe, fi);
	deliver_tag(d, sqe, slot, STEP_CLOSE, false, false);
	sqe = shard_sqe(d->sh);
	io_uring_prep_renameat(sqe, d->root_fd, j->tmp_path, d->root_fd, j->new_path, 0);
	deliver_tag(d, sqe, slot, STEP_RENAME, true, false);
}

/* Creates <mailbox>/{,tmp,new,cur}; existing ones are fine: hard links go on past EEXIST. With
 * syncfs, the syncfs after the first delivery makes the new names durable with it; with fsync,
 * the chain goes on with fsync of maildir_root (the name <mailbox>) and of <mailbox> (tmp, new,
 * cur), whether the mkdirs created them or found them (a previous run may have crashed before
 * its syncs); a failed sync fails the delivery attempt. */
static void
deliver_submit_mkdir(struct deliver *d, uint32_t slot, struct deliver_job *j)
{
	bool syncs = deliver_fsync_mode(d);
	const char *dirs[4] = { j->mailbox, j->sub[0], j->sub[1], j->sub[2] };
	for (uint32_t i = 0; i < ARRAY_LEN(dirs); i++) {
		bool last = i + 1 == ARRAY_LEN(dirs) && !syncs;
		struct io_uring_sqe *sqe = shard_sqe(d->sh);
		io_uring_prep_mkdirat(sqe, d->root_fd, dirs[i], 0700);
		deliver_tag(d, sqe, slot, last ? STEP_MKDIR_DONE : STEP_MKDIR, last, true);
	}
	if (!syncs)
		return;
	uint32_t fi = deliver_file_index(slot);
	struct io_uring_sqe *sqe = shard_sqe(d->sh);
#ifdef RINGMTA_UNSAFE_SKIP_SYNC
	io_uring_prep_nop(sqe);
#else
	io_uring_prep_fsync(sqe, d->root_fd, 0);
#endif
	deliver_tag(d, sqe, slot, STEP_MKDIR_SYNC, false, true);
	sqe = shard_sqe(d->sh);
	io_uring_prep_openat_direct(sqe, d->root_fd, j->mailbox, O_RDONLY | O_DIRECTORY, 0, fi);
	deliver_tag(d, sqe, slot, STEP_MKDIR_SYNC, false, true);
	sqe = shard_sqe(d->sh);
	deliver_prep_fsync(sqe, fi, 0);
	deliver_tag(d, sqe, slot, STEP_MKDIR_SYNC, false, true);
	sqe = shard_sqe(d->sh);
	io_uring_prep_close_direct(sqe, fi);
	deliver_tag(d, sqe, slot, STEP_MKDIR_DONE, true, true);
}

static void
deliver_start(struct deliver *d, struct deliver_job *j)
{
	uint32_t slot = 0;
	while (d->slots[slot] != NULL)
		slot++;
	ASSERT(slot < DELIVER_JOBS_MAX);
	d->slots[slot] = j;
	d->slot_gen[slot] = (d->slot_gen[slot] + 1) & 0xffffffu;
	d->busy++;
	j->err = 0;
	shard_sqe_reserve(d->sh, 16);   /* a chain must go to the kernel in one submission */
	if (j->need_mkdir)
		deliver_submit_mkdir(d, slot, j);
	else
		deliver_submit_chain(d, slot, j);
}

static void
deliver_enqueue(struct deliver *d, struct deliver_job *j)
{
	j->next = NULL;
	if (d->wait_tail != NULL)
		d->wait_tail->next = j;
	else
		d->wait_head = j;
	d->wait_tail = j;
}

static void
deliver_job_free(struct deliver_job *j)
{
	msg_unref(j->m);
	free(j);
}

static void
deliver_log(struct deliver *d, struct deliver_job *j, enum log_status status, int err)
{
	struct shard *sh = d->sh;
	uint64_t delay_ms = sh->now_real_ms > j->m->arrival_ms ? sh->now_real_ms - j->m->arrival_ms : 0;
	const char *detail = err == 0 ? "maildir" : strerror(-err);
	log_delivery(sh->now_real_ms, j->m->qid, slice_make(j->rcpt_path, strlen(j->rcpt_path)),
		status, delay_ms, slice_make(detail, strlen(detail)));
}

static void
deliver_defer(struct deliver *d, struct deliver_job *j, int err)
{
	deliver_log(d, j, LOG_STATUS_DEFERRED, err);
	uint64_t backoff = DELIVER_RETRY_FIRST_MS << (j->attempts < 10 ? j->attempts : 10);
	j->retry_at_ms = d->sh->now_ms + (backoff < DELIVER_RETRY_MAX_MS ? backoff
		: DELIVER_RETRY_MAX_MS);
	j->attempts++;
	j->mkdir_tried = false;
	j->next = d->retry_head;
	d->retry_head = j;
}

static void
deliver_finish(struct deliver *d, uint32_t slot, struct deliver_job *j)
{
	d->slots[slot] = NULL;
	d->busy--;
	if (j->err == -ENOENT && !j->mkdir_tried) {
		j->mkdir_tried = true;   /* the mailbox does not exist yet: create it, then retry */
		j->need_mkdir = true;
		deliver_enqueue(d, j);
		return;
	}
	if (j->err == 0) {
		if (d->written == NULL)
			d->written_since_ms = d->sh->now_ms;
		j->next = d->written;   /* in new/; delivered once the next syncfs returns */
		d->written = j;
		d->written_count++;
		return;
	}
	deliver_defer(d, j, j->err);
}

/* The syncfs that covers the jobs in d->syncing returned res. */
static void
deliver_synced(struct deliver *d, int res)
{
	struct deliver_job *j = d->syncing;
	d->syncing = NULL;
	d->sync_busy = false;
	while (j != NULL) {
		struct deliver_job *next = j->next;
		if (res == 0) {
			spool_mark_final(d->sh->spool, j->m->qid, RECORD_DELIVERED, j->rcpt);
			d->sh->stats.deliveries++;
			deliver_log(d, j, LOG_STATUS_DELIVERED, 0);
			deliver_job_free(j);
		} else {
			deliver_defer(d, j, res);   /* written again on retry: same name, same bytes */
		}
		j = next;
	}
}

/* maildir_sync=fsync: the files in d->syncing are fdatasync'ed (in their chains); their
 * renames become durable with one fsync of each distinct <mailbox>/new, all submitted at once
 * (open into a spare registered slot -> fsync -> close). At most DELIVER_DIRSYNC_MAX
 * directories per round: jobs of further mailboxes go back to d->written for the next one. */
static void
deliver_dirsync_start(struct deliver *d)
{
	const struct deliver_job *dirs[DELIVER_DIRSYNC_MAX];
	uint32_t n = 0;
	struct deliver_job *keep = NULL, *later = NULL;
	for (struct deliver_job *j = d->syncing, *next; j != NULL; j = next) {
		next = j->next;
		uint32_t k = 0;
		while (k < n && strcmp(dirs[k]->mailbox, j->mailbox) != 0)
			k++;
		if (k == n && n < DELIVER_DIRSYNC_MAX)
			dirs[n++] = j;
		if (k < n) {
			j->next = keep;
			keep = j;
		} else {
			j->next = later;
			later = j;
			if (d->written == NULL)
				d->written_since_ms = d->sh->now_ms;
			d->written_count++;
		}
	}
	for (struct deliver_job *j = later, *next; j != NULL; j = next) {
		next = j->next;
		j->next = d->written;
		d->written = j;
	}
	d->syncing = keep;
	d->dirsync_wait = n;
	d->dirsync_err = 0;
	shard_sqe_reserve(d->sh, 3 * n);
	for (uint32_t k = 0; k < n; k++) {
		uint32_t fi = DELIVER_JOBS_MAX + k;
		struct io_uring_sqe *sqe = shard_sqe(d->sh);
		io_uring_prep_openat_direct(sqe, d->root_fd, dirs[k]->sub[1], O_RDONLY | O_DIRECTORY,
			0, fi);
		sqe->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
		io_uring_sqe_set_data64(sqe, shard_user_data(SHARD_OP_DELIVER, DELIVER_SYNC_SLOT,
			STEP_DIR_OPEN));
		sqe = shard_sqe(d->sh);
		deliver_prep_fsync(sqe, fi, 0);
		sqe->flags |= IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS;
		io_uring_sqe_set_data64(sqe, shard_user_data(SHARD_OP_DELIVER, DELIVER_SYNC_SLOT,
			STEP_DIR_FSYNC));
		sqe = shard_sqe(d->sh);
		io_uring_prep_close_direct(sqe, fi);
		io_uring_sqe_set_data64(sqe, shard_user_data(SHARD_OP_DELIVER, DELIVER_SYNC_SLOT,
			STEP_DIR_CLOSE));
		d->sh->stats.maildir_syncs++;
	}
}

/* Asks the sync thread for one syncfs covering every job written so far. */
static void
deliver_sync_start(struct deliver *d)
{
	if (d->sync_busy || d->written == NULL)
		return;
	/* Each syncfs costs the same whether it covers one file or a hundred: let a few
	 * milliseconds of deliveries gather first (the client had its 250 long ago). */
	if (d->written_count < DELIVER_SYNC_BATCH && !d->sh->stopping
		&& d->sh->now_ms < d->written_since_ms + DELIVER_SYNC_DELAY_MS)
		return;
	d->syncing = d->written;
	d->written = NULL;
	d->written_count = 0;
	d->sync_busy = true;
	if (deliver_fsync_mode(d)) {
		deliver_dirsync_start(d);
		return;
	}
	d->sh->stats.maildir_syncs++;
	d->sync_request = 1;
	struct io_uring_sqe *sqe = shard_sqe(d->sh);
	io_uring_prep_write(sqe, d->sync_efd, &d->sync_request, sizeof(d->sync_request), 0);
	io_uring_sqe_set_data64(sqe, shard_user_data(SHARD_OP_NONE, 0, 0));
}
void
deliver_complete(struct deliver *d, struct io_uring_cqe *cqe)
{
	uint32_t slot = shard_ud_slot(cqe->user_data);
	uint32_t gen = shard_ud_gen(cqe->user_data);
	enum deliver_step step = (enum deliver_step)(gen & 0xffu);
	if (slot == DELIVER_SYNC_SLOT) {
		ASSERT(d->sync_busy);
		if (step == STEP_DIR_OPEN || step == STEP_DIR_FSYNC || step == STEP_DIR_CLOSE) {
			/* One completion per directory chain: its failed step, or its close. */
			ASSERT(d->dirsync_wait > 0);
			int res = cqe->res < 0 ? cqe->res : step == STEP_DIR_CLOSE ? 0 : -EIO;
			if (res != 0 && d->dirsync_err == 0)
				d->dirsync_err = res;
			if (--d->dirsync_wait == 0)
				deliver_synced(d, d->dirsync_err);
			return;
		}
		deliver_synced(d, cqe->res);
		return;
	}
	ASSERT(slot < DELIVER_JOBS_MAX);
	struct deliver_job *j = d->slots[slot];
	ASSERT(j != NULL);
	ASSERT((gen >> 8) == d->slot_gen[slot]);
	bool last = step == STEP_RENAME || step == STEP_MKDIR_DONE;
	if (step >= STEP_MKDIR) {
		if ((step == STEP_MKDIR_SYNC || (step == STEP_MKDIR_DONE && deliver_fsync_mode(d)))
			&& cqe->res < 0 && j->err == 0)
			j->err = cqe->res;   /* a sync of the new names failed (a mkdir may: EEXIST) */
		if (last) {   /* mailbox created (or it failed: the chain says which) */
			d->slots[slot] = NULL;
			d->busy--;
			j->need_mkdir = false;
			if (j->err != 0) {
				deliver_defer(d, j, j->err);
				return;
			}
			deliver_start(d, j);
		}
		return;
	}
	/* A step that fails posts its completion and suppresses those of the steps after it
	 * (IOSQE_CQE_SKIP_SUCCESS in a link), so any completion ends the chain; only the last step
	 * reports success. A short write fails the link with a result >= 0. */
	if (cqe->res < 0)
		j->err = cqe->res;
	else if (!last)
		j->err = -EIO;
	deliver_finish(d, slot, j);
}

/* Fills the job's paths and Return-Path line. Returns false if the recipient has no mailbox. */
static bool
deliver_job_prepare(struct deliver *d, struct deliver_job *j, const struct record_envelope_view *v,
	const struct record_rcpt *r)
{
	const struct config *cfg = d->sh->eng->cfg;
	if (policy_mailbox_name(d->sh->eng->policy, r->local_part, j->mailbox,
		sizeof(j->mailbox)) != 0)
		return false;
	char name[MAILDIR_NAME_MAX];
	maildir_name(name, j->m->arrival_ms, j->m->qid, j->rcpt, cfg->myhostname);
	snprintf(j->sub[0], DELIVER_PATH_MAX, "%s/tmp", j->mailbox);
	snprintf(j->sub[1], DELIVER_PATH_MAX, "%s/new", j->mailbox);
	snprintf(j->sub[2], DELIVER_PATH_MAX, "%s/cur", j->mailbox);
	snprintf(j->tmp_path, DELIVER_PATH_MAX, "%s/tmp/%s", j->mailbox, name);
	snprintf(j->new_path, DELIVER_PATH_MAX, "%s/new/%s", j->mailbox, name);
	snprintf(j->new_dir, DELIVER_PATH_MAX, "%s/new", j->mailbox);
	snprintf(j->rcpt_path, DELIVER_PATH_MAX, "%.*s", (int)r->path.len, r->path.ptr);
	/* RFC 5321 4.4: the final delivery adds Return-Path: with the reverse path, exactly once. */
	if (v->mail_from.len > RECEIVED_SENDER_MAX)
		return false;   /* not from our server: the envelope on disk is damaged */
	size_t n = received_return_path(j->rp, sizeof(j->rp), v->mail_from);
	j->iov[0] = (struct iovec){ j->rp, n };
	j->iov[1] = (struct iovec){ j->m->body, j->m->body_len };
	return true;
}

/* Start-up only: the file of an interrupted delivery may already be in new/. Only whole: after
 * a power cut a name can be durable without its data (ext4 commits a rename with the next journal
 * commit, e.g. the spool's fdatasync, before the delayed data is written: an empty file). */
static bool
deliver_already_done(struct deliver *d, const struct deliver_job *j)
{
	struct stat st;
	return fstatat(d->root_fd, j->new_path, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode)
		&& (uint64_t)st.st_size == j->iov[0].iov_len + j->iov[1].iov_len;
}

void
deliver_message(struct deliver *d, struct msg *m, bool fresh)
{
	struct shard *sh = d->sh;
	struct record_envelope_view v;
	struct slice env = slice_make(m->head + RECORD_HEADER_SIZE, m->head_len - RECORD_HEADER_SIZE);
	if (record_envelope_decode(env, &v) != 0)
		return;   /* cannot happen for a head we encoded or a record whose CRC matched */
	if (fresh)
		log_accepted(sh->now_real_ms, m->qid, v.mail_from, m->body_len, v.rcpt_count,
			v.client_addr, v.helo);
	for (uint32_t i = 0; i < v.rcpt_count; i++) {
		struct record_rcpt r;
		if (record_envelope_rcpt(&v, i, &r) != 0)
			break;
		if (r.domain.len > 0 && !policy_domain_is_local(sh->eng->policy, r.domain))
			continue;   /* relay: stays queued for outbound delivery */
		if (!spool_rcpt_pending(sh->spool, m->qid, i))
			continue;
		struct deliver_job *j = calloc(1, sizeof(*j));
		if (j == NULL)
			continue;   /* stays pending in the spool: delivered after a restart */
		j->m = m;
		j->rcpt = i;
		msg_ref(m);
		if (!deliver_job_prepare(d, j, &v, &r)) {
			deliver_job_free(j);
			continue;
		}
		if (!fresh && deliver_already_done(d, j)) {
			spool_mark_final(sh->spool, m->qid, RECORD_DELIVERED, i);
			deliver_log(d, j, LOG_STATUS_DELIVERED, 0);
			deliver_job_free(j);
			continue;
		}
		deliver_enqueue(d, j);
	}
}

void
deliver_kick(struct deliver *d)
{
	deliver_sync_start(d);
	struct deliver_job **link = &d->retry_head;
	while (*link != NULL) {
		struct deliver_job *j = *link;
		if (j->retry_at_ms <= d->sh->now_ms && !d->sh->stopping) {
			*link = j->next;
			deliver_enqueue(d, j);
		} else {
			link = &j->next;
		}
	}
	while (d->wait_head != NULL && d->busy < DELIVER_JOBS_MAX) {
		struct deliver_job *j = d->wait_head;
		d->wait_head = j->next;
		if (d->wait_head == NULL)
			d->wait_tail = NULL;
		deliver_start(d, j);
	}
}

uint64_t
deliver_next_retry_ms(const struct deliver *d)
{
	uint64_t next = UINT64_MAX;
	if (d->written != NULL && !d->sync_busy) {
		uint64_t due = d->written_since_ms + DELIVER_SYNC_DELAY_MS;
		next = due > d->sh->now_ms ? due - d->sh->now_ms : 0;
	}
	for (const struct deliver_job *j = d->retry_head; j != NULL; j = j->next) {
		uint64_t due = j->retry_at_ms > d->sh->now_ms ? j->retry_at_ms - d->sh->now_ms : 0;
		if (due < next)
			next = due;
	}
	return next;
}

bool
deliver_idle(const struct deliver *d)
{
	return d->busy == 0 && d->wait_head == NULL && d->written == NULL && !d->sync_busy;
}

static void
deliver_free_list(struct deliver_job *j)
{
	while (j != NULL) {
		struct deliver_job *next = j->next;
		deliver_job_free(j);
		j = next;
	}
}

void
deliver_fini(struct deliver *d)
{
	ASSERT(d->busy == 0);
	d->sync_stop = true;
	uint64_t one = 1;
	(void)!write(d->sync_efd, &one, sizeof(one));
	pthread_join(d->sync_thread, NULL);
	deliver_free_list(d->wait_head);
	deliver_free_list(d->retry_head);
	deliver_free_list(d->written);
	deliver_free_list(d->syncing);
	close(d->sync_efd);
	close(d->root_fd);
	free(d);
}
