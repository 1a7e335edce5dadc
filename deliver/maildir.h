/* deliver/maildir.h - the local delivery agent: one file per recipient into Maildir.
 *
 * A delivery is one linked chain of ring requests, with no blocking call on the shard's thread:
 * open <mailbox>/tmp/<name> into a registered file slot, write Return-Path: and the part of the
 * message the caller already read, then (for a larger message) read the rest from the spool
 * (spool_body_read: its parts and its inline rest) and write it, chunk by chunk through the
 * job's own buffer, close, rename into
 * <mailbox>/new/<name>. A missing mailbox is created first (mkdir of <mailbox>, tmp, new, cur).
 * Durability (maildir_sync): with "syncfs" the deliveries written since the last one share one
 * syncfs(2) of the Maildir file system (io_uring has no syncfs: the helper thread makes the call
 * and posts its result to the ring with IORING_OP_MSG_RING); with "fsync" each file is
 * fdatasync'ed at the end of its chain (the chains run in parallel), closed and renamed in a
 * second chain once that returned 0, and one fsync of each mailbox's new/ per batch makes the
 * renames durable. A sync that fails fails every delivery it covered (retried later). "auto" chooses syncfs on ext4, xfs
 * and btrfs and fsync anywhere else: syncfs never reaches a FUSE server, for one
 * (tests/powercut/README.md). Only after the sync returns is a delivery reported done.
 *
 * The file name is <arrival seconds>.R<queue id>Q<recipient index>.<myhostname>: unique (the
 * queue id is) and the same on every attempt, so a delivery repeated after a crash replaces the
 * file instead of adding a second copy; for a message that arrived before this daemon started,
 * a file already in new/ (or moved to cur/ by a reader, with its ":2," flags) counts as done.
 * At most MAILDIR_JOBS_MAX deliveries at once per shard; the caller holds the others back. */
#ifndef RINGMTA_DELIVER_MAILDIR_H
#define RINGMTA_DELIVER_MAILDIR_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/ring.h"
#include "base/slice.h"
#include "conf/config.h"
#include "queue/spool.h"

struct spool;
struct maildir;

#define MAILDIR_JOBS_MAX       128u    /* concurrent deliveries per shard (one file slot each) */
#define MAILDIR_CHUNK_SIZE   65536u    /* the rest of a large message moves in chunks this big */
#define MAILDIR_CHAIN_CHUNKS     8u    /* read+write pairs per chain */
#define MAILDIR_SYNC_DELAY_MS    5u    /* deliveries gather this long for one syncfs */
#define MAILDIR_SYNC_BATCH     256u    /* ... unless this many are waiting */
#define MAILDIR_NAME_MAX       160u
#define MAILDIR_MAILBOX_MAX     80u
#define MAILDIR_BOXES_MAX   (2u * MAILDIR_JOBS_MAX)   /* open mailbox directories kept */
/* Descriptors a shard's agent holds at most: the root, the helper's eventfd and ring, tmp/ and
 * new/ of each mailbox kept open, and two the helper holds while it opens or scans one. The
 * files being written are registered slots of the ring, not descriptors. */
#define MAILDIR_FDS_MAX     (3u + 2u * MAILDIR_BOXES_MAX + 2u)

struct maildir_params {
	const char *root;               /* maildir_root */
	const char *myhostname;
	uint64_t started_real_ms;       /* messages older than this may be half-delivered */
	enum config_maildir_sync sync;  /* auto, fsync or syncfs */
};

/* One recipient's delivery. The slices must stay valid until the result. */
struct maildir_delivery {
	uint64_t qid;
	uint32_t rcpt;                  /* index in the envelope */
	uint64_t arrival_ms;
	const char *mailbox;            /* directory under root (conf/policy's mailbox name) */
	struct slice mail_from;         /* the reverse path, empty for <> */
	struct slice body_read;         /* the body's first octets, already read by the caller */
	struct spool_body body;         /* where the rest is (copied: the job keeps its cursor) */
};

struct maildir_stats {
	uint64_t deliveries;
	uint64_t syncs;                 /* syncfs calls, or new/ fsyncs, of the group sync */
	uint64_t file_syncs;            /* fdatasyncs of delivered files (maildir_sync = fsync) */
};

/* Opens root (creating it), starts the sync thread, registers ops and hooks on r, and takes
 * MAILDIR_JOBS_MAX registered file slots. Start-up only. Returns 0 or -errno. */
int maildir_init(struct ring *r, struct spool *sp, const struct maildir_params *p,
	struct maildir **out);

/* Stops the sync thread and frees everything (after the ring is gone). */
void maildir_fini(struct maildir *md);

/* Whether a job slot is free. */
bool maildir_can_start(const struct maildir *md);

/* Starts d (a slot must be free). Its result is posted to ud: 0 (in new/ and synced), or
 * -errno; maildir_error_permanent says which errors to bounce at once. */
void maildir_deliver(struct maildir *md, const struct maildir_delivery *d, uint64_t ud);

/* An error that no retry will cure (the mailbox is not a directory, a link escapes the root). */
bool maildir_error_permanent(int err);

const struct maildir_stats *maildir_stats(const struct maildir *md);

/* The Maildir file name of recipient rcpt of message qid (pure). Returns its length. */
size_t maildir_name(char out[MAILDIR_NAME_MAX], uint64_t arrival_ms, uint64_t qid, uint32_t rcpt,
	const char *hostname);
#endif
