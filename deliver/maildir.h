/* deliver/maildir.h - local delivery into Maildir, driven by the shard's ring.
 *
 * One job per (message, local recipient), at most DELIVER_JOBS_MAX at once per shard, the rest
 * wait in arrival order. A job is one linked chain of ring requests, with no blocking call on the
 * shard's thread: open <user>/tmp/<name> into a registered file slot, write Return-Path: and the
 * message, close, rename into <user>/new/<name>. Group sync: the jobs written since the last
 * one share one syncfs(2) of the Maildir file system (io_uring has no syncfs: a per-shard thread
 * makes the call and posts the result to the ring with IORING_OP_MSG_RING); only after it
 * returns is each recipient marked delivered in the spool. A missing mailbox is created first
 * (mkdir of <user>, tmp, new and cur). A failed job is retried with back-off.
 *
 * The file name is <arrival seconds>.R<queue id>Q<recipient index>.<myhostname>: unique (the
 * queue id is) and the same on every attempt, so a delivery repeated after a crash replaces the
 * file instead of adding a second copy; a recovered message whose file is already in new/ is just
 * marked delivered. One file per recipient, Return-Path first, exactly once. */
#ifndef RINGMTA_DELIVER_MAILDIR_H
#define RINGMTA_DELIVER_MAILDIR_H
#include <liburing.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct shard;
struct msg;
struct deliver;

#define DELIVER_JOBS_MAX        128u    /* concurrent jobs per shard (one file slot each) */
#define DELIVER_RETRY_FIRST_MS  5000u
#define DELIVER_RETRY_MAX_MS  600000u
#define DELIVER_SYNC_DELAY_MS      5u    /* deliveries gather this long for one syncfs */
#define DELIVER_SYNC_BATCH       256u    /* ... unless this many are waiting */
#define MAILDIR_NAME_MAX         160u

/* Opens maildir_root (creating it). Start-up only. Returns 0 or -errno. */
int deliver_init(struct shard *sh, struct deliver **out);

/* Starts delivery of m's local recipients that are still pending; takes references on m.
 * fresh: just accepted (logs the acceptance); else recovered at start-up, when a recipient whose
 * file is already in new/ is marked delivered without writing it again. */
void deliver_message(struct deliver *d, struct msg *m, bool fresh);

void deliver_complete(struct deliver *d, struct io_uring_cqe *cqe);

/* End of a loop turn: starts waiting jobs and retries that are due. */
void deliver_kick(struct deliver *d);

/* Milliseconds until the next retry or group sync is due (UINT64_MAX: none). */
uint64_t deliver_next_retry_ms(const struct deliver *d);

/* No job in flight or waiting to start (retries do not count: they survive in the spool). */
bool deliver_idle(const struct deliver *d);

void deliver_fini(struct deliver *d);

/* The Maildir file name of recipient rcpt of message qid (pure). Returns its length. */
size_t maildir_name(char out[MAILDIR_NAME_MAX], uint64_t arrival_ms, uint64_t qid, uint32_t rcpt,
	const char *hostname);
#endif
