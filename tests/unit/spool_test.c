/* tests/unit/spool_test.c - the spool's group commit on a real ring, on a small private tmpfs
 * that fills up: what goes to the kernel in which order, when the waiter hears "durable", and
 * what recovery finds after a batch failed and the next one was written over it.
 *
 * Needs root (a mount namespace and a tmpfs); skipped elsewhere. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "base/ring.h"
#include "queue/index.h"
#include "queue/msg.h"
#include "queue/record.h"
#include "queue/recover.h"
#include "queue/spool.h"

#define TEST_TMPFS_SIZE   "1m"
#define TEST_WAITERS_MAX  8u
#define TEST_PAGE         4096u

static char mnt[] = "/tmp/ringmta-spool-test-XXXXXX";
static bool made, mounted;
static struct ring ring;
static struct spool *sp;

/* What the test saw of the spool's requests and of its waiters' events. */
static struct {
	uint8_t waiter_op;
	int result[TEST_WAITERS_MAX];        /* 1: no event yet; else the event's res */
	uint64_t fsync_ud;                   /* user_data of the batch's fdatasync, when queued */
	bool fsync_done;                     /* its completion was dispatched */
	int fsync_res;
	uint32_t writes;                     /* pwritev requests of the batch */
	uint64_t write_off;                  /* where the batch's first pwritev writes */
} seen;

static void
waiter_done(void *ctx, const struct io_uring_cqe *cqe)
{
	(void)ctx;
	uint32_t i = ring_ud_slot(cqe->user_data);
	cr_assert_lt(i, TEST_WAITERS_MAX);
	cr_assert_eq(seen.result[i], 1, "one event per commit");
	seen.result[i] = cqe->res;
}

static void
setup(void)
{
	if (geteuid() != 0)
		return;
	cr_assert_not_null(mkdtemp(mnt));
	made = true;
	/* In a mount namespace of the test's own: the tmpfs goes with the process, even one that
	 * crashed. */
	if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0
		|| mount("tmpfs", mnt, "tmpfs", 0, "size=" TEST_TMPFS_SIZE) != 0)
		return;
	mounted = true;
	cr_assert_eq(ring_init(&ring, 0, 256, 0), 0);
	ring_clock(&ring);
	seen.waiter_op = ring_op_register(&ring, waiter_done, NULL);
	struct spool_params p = { .spool_dir = mnt, .minimal_backoff_ms = 1000,
		.maximal_backoff_ms = 1000, .queue_lifetime_ms = 86400000 };
	cr_assert_eq(spool_open(&ring, &p, &sp), 0);
}

static void
teardown(void)
{
	if (sp != NULL)
		spool_close(sp);
	if (mounted) {
		ring_fini(&ring);
		umount(mnt);
	}
	if (made)
		rmdir(mnt);
}

TestSuite(spool, .init = setup, .fini = teardown);

/* The requests the turn queued and the kernel has not seen yet, checked as one batch must be:
 * pwritev requests of the active segment at consecutive offsets, each linked to the next
 * (IOSQE_IO_LINK), then one fdatasync of the same file, last in the chain. */
static void
check_queued_chain(void)
{
	struct io_uring_sq *sq = &ring.uring.sq;
	int fd = -1;
	uint64_t next_off = 0;
	seen.writes = 0;
	seen.fsync_ud = 0;
	for (unsigned i = sq->sqe_head; i != sq->sqe_tail; i++) {
		const struct io_uring_sqe *sqe = &sq->sqes[i & sq->ring_mask];
		cr_assert_eq(seen.fsync_ud, 0, "nothing after the fdatasync in the batch");
		if (sqe->opcode == IORING_OP_WRITEV) {
			cr_assert(sqe->flags & IOSQE_IO_LINK, "a pwritev is linked to what follows");
			if (seen.writes == 0) {
				fd = sqe->fd;
				seen.write_off = sqe->off;
			} else {
				cr_assert_eq(sqe->fd, fd);
				cr_assert_eq(sqe->off, next_off);
			}
			const struct iovec *iov = (const struct iovec *)(uintptr_t)sqe->addr;
			next_off = sqe->off;
			for (uint32_t k = 0; k < sqe->len; k++)
				next_off += iov[k].iov_len;
			seen.writes++;
			continue;
		}
		cr_assert_eq(sqe->opcode, IORING_OP_FSYNC, "only writes and the fdatasync");
		cr_assert_gt(seen.writes, 0, "the fdatasync comes after the writes it covers");
		cr_assert_eq(sqe->fd, fd, "of the file written");
		cr_assert_eq(sqe->fsync_flags, IORING_FSYNC_DATASYNC);
		cr_assert_eq(sqe->flags & IOSQE_IO_LINK, 0, "the chain ends with it");
		seen.fsync_ud = sqe->user_data;
	}
	cr_assert_neq(seen.fsync_ud, 0, "the batch ends with an fdatasync");
}

/* One loop turn as the shard runs it; every completion is dispatched on its own so that an
 * event posted before the fdatasync's completion is seen. */
static void
turn(void)
{
	struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = 100000000 };
	struct io_uring_cqe *cqe;
	(void)io_uring_submit_and_wait_timeout(&ring.uring, &cqe, 1, &ts, NULL);
	ring_clock(&ring);
	unsigned head, n = 0;
	io_uring_for_each_cqe(&ring.uring, head, cqe) {
		if (cqe->user_data == seen.fsync_ud) {
			seen.fsync_done = true;
			seen.fsync_res = cqe->res;
		}
		ring_dispatch(&ring, cqe);
		cr_assert(seen.fsync_done || ring.posted_count == 0,
			"no commit is answered before its fdatasync has completed");
		n++;
	}
	io_uring_cq_advance(&ring.uring, n);
	ring_dispatch_posted(&ring);
	ring_turn(&ring);
}

/* A message of one recipient with this body, committed for waiter i. */
static uint64_t
commit(uint32_t i, const char *body, size_t len)
{
	struct record_rcpt rcpt = { .path = SLICE_LIT("u@localhost"), .local_part = SLICE_LIT("u"),
		.domain = SLICE_LIT("localhost") };
	struct record_envelope env = { .arrival_ms = ring.now_real_ms,
		.client_addr = SLICE_LIT("127.0.0.1"), .helo = SLICE_LIT("client.example"),
		.mail_from = SLICE_LIT("s@example.org"), .rcpt_count = 1, .rcpts = &rcpt };
	uint64_t qid = spool_next_qid(sp);
	struct msg *m = msg_new(qid, ring.now_real_ms, 1u << 20, NULL);
	cr_assert_not_null(m);
	cr_assert_eq(spool_body_append(sp, m, slice_make(body, len)), 0);
	seen.result[i] = 1;
	cr_assert_eq(spool_commit(sp, m, &env, ring_ud(seen.waiter_op, i, 0)), 0);
	msg_unref(m);   /* the spool holds its own reference */
	return qid;
}

/* Ends the turn in which messages were committed, checks the batch it queued, and runs the loop
 * until the batch is done. */
static void
flush_batch(void)
{
	seen.fsync_done = false;
	ring_turn(&ring);
	check_queued_chain();
	for (uint32_t t = 0; t < 50 && !seen.fsync_done; t++)
		turn();
	cr_assert(seen.fsync_done);
	turn();   /* the events posted by the batch's end are dispatched */
}

static char *
body_of(char c, size_t len)
{
	char *b = malloc(len);
	cr_assert_not_null(b);
	memset(b, c, len);
	memcpy(b, "Subject: x\r\n\r\n", 14);
	memcpy(b + len - 2, "\r\n", 2);
	return b;
}

/* Fills the file system but for `pages` pages. */
static void
fill_but(const char *path, uint32_t pages)
{
	struct statvfs st;
	cr_assert_eq(statvfs(mnt, &st), 0);
	uint64_t free_bytes = (uint64_t)st.f_bavail * st.f_bsize;
	cr_assert_gt(free_bytes, (uint64_t)pages * TEST_PAGE);
	int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(posix_fallocate(fd, 0, (off_t)(free_bytes - (uint64_t)pages * TEST_PAGE)), 0);
	close(fd);
}

/* Group commit: one batch = pwritev chain linked to one fdatasync, "durable" only after it.
 * A batch that fails (the disk fills up in the middle of it) fails every message in it, and the
 * next batch is written over the failed one, from where it started: recovery then finds the
 * messages acknowledged before and after, and none of the failed batch, not even those of its
 * records the kernel had written whole before the disk was full. */
Test(spool, failed_batch_is_overwritten_and_never_recovered)
{
	if (!mounted)
		cr_skip_test("needs root to mount a tmpfs");
	/* Batch 1: message A, durable. */
	char *a = body_of('a', 1000);
	uint64_t qa = commit(0, a, 1000);
	flush_batch();
	cr_assert_eq(seen.result[0], 0, "A is durable");
	cr_assert_eq(seen.fsync_res, 0);
	const struct index_entry *ea = spool_entry(sp, qa);
	cr_assert_not_null(ea);
	uint64_t a_end = ea->offset + ea->size;

	/* Batch 2 on a disk with two pages left: B1 and B2 fit whole, B3 does not. */
	char filler[256];
	snprintf(filler, sizeof(filler), "%s/filler", mnt);
	fill_but(filler, 2);
	char *b = body_of('b', 2500);
	char *big = body_of('B', 64 * 1024);
	uint64_t qb1 = commit(1, b, 2500);
	uint64_t qb2 = commit(2, b, 2500);
	uint64_t qb3 = commit(3, big, 64 * 1024);
	flush_batch();
	cr_assert_eq(seen.write_off, a_end, "the batch starts where A ends");
	cr_assert_eq(seen.fsync_res, -ECANCELED, "the write failed: its linked fdatasync never ran");
	for (uint32_t i = 1; i <= 3; i++)
		cr_assert_eq(seen.result[i], -ENOSPC, "message %u of the failed batch fails", i);
	cr_assert_null(spool_entry(sp, qb1));
	cr_assert_null(spool_entry(sp, qb2));
	cr_assert_null(spool_entry(sp, qb3));

	/* Batch 3, room again: C, of B1's size, goes where the failed batch began. */
	cr_assert_eq(unlink(filler), 0);
	char *c = body_of('c', 2500);
	uint64_t qc = commit(4, c, 2500);
	flush_batch();
	cr_assert_eq(seen.result[4], 0, "C is durable");
	cr_assert_eq(seen.write_off, a_end, "written over the failed batch");
	const struct index_entry *ec = spool_entry(sp, qc);
	cr_assert_not_null(ec);
	cr_assert_eq(ec->offset, a_end);
	uint64_t c_end = ec->offset + ec->size;

	/* What a restart finds: A and C, nothing of batch 2. */
	spool_close(sp);
	sp = NULL;
	char dir[256];
	snprintf(dir, sizeof(dir), "%s/0", mnt);
	struct index ix;
	cr_assert_eq(index_init(&ix), 0);
	struct recover_result res;
	cr_assert_eq(recover_shard(dir, &ix, &res), 0);
	cr_assert_not_null(index_find(&ix, qa));
	cr_assert_not_null(index_find(&ix, qc));
	cr_assert_null(index_find(&ix, qb1), "B1 of the failed batch was recovered");
	cr_assert_null(index_find(&ix, qb2), "B2 of the failed batch was recovered");
	cr_assert_null(index_find(&ix, qb3), "B3 of the failed batch was recovered");
	cr_assert_eq(res.messages_live, 2);
	cr_assert_eq(res.last_valid_end, c_end, "the log's valid part ends with C");
	index_fini(&ix);
	free(a);
	free(b);
	free(big);
	free(c);
}
