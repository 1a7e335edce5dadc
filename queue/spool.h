/* queue/spool.h - this shard's append-only message log: the writer side, driven by the ring.
 *
 * Records (queue/record.h) are appended to the active segment spool/<shard>/<segment>.log.
 * Group commit: every record queued during one loop turn goes out in one batch, a chain of
 * pwritev requests linked to one fdatasync; only one batch is in flight at a time, so the durable
 * part of a segment is always a prefix, and records queued while a batch flies wait for the next.
 * State records alone wait up to a second for a message record to share an fdatasync with.
 * A MESSAGE record's waiter (the connection) hears the outcome only when the fdatasync of its
 * batch has completed: that is when "250" may be said. State records (delivered, ...) ride the
 * next batch and need no waiter: a delivery lost with them is repeated, and Maildir delivery is
 * idempotent per (queue id, recipient).
 *
 * A segment is rolled over at SPOOL_SEGMENT_SIZE; the oldest segments are deleted (unlinkat
 * through the ring) once every message in them is final. Start-up runs recovery (queue/recover.h)
 * before the shard serves, and hands the messages with pending local recipients to delivery. */
#ifndef RINGMTA_QUEUE_SPOOL_H
#define RINGMTA_QUEUE_SPOOL_H
#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

struct shard;
struct spool;
struct msg;

#define SPOOL_SEGMENT_SIZE   (64u << 20)   /* roll over past this many bytes */
#define SPOOL_BATCH_IOV_MAX  1024u         /* iovecs per pwritev (IOV_MAX) */

/* fsync(2) of the directory that holds path (a directory just made, or found, at start-up), so
 * that its name is durable. Blocking: start-up only. Returns 0 or -errno. */
int spool_sync_parent(const char *path);

/* Opens (creating if needed) <spool_dir>/<shard index>/, recovers it, opens the active segment.
 * Blocking I/O: start-up only, before the shard serves. Returns 0 or -errno. */
int spool_open(struct shard *sh, const char *spool_dir, struct spool **out);

/* Hands every recovered message with pending local recipients to delivery (after the shard's
 * delivery is ready). Start-up only; reads records with blocking I/O. Returns how many. */
uint32_t spool_redeliver(struct spool *sp);

/* The next queue id of this shard (unique across shards and restarts). */
uint64_t spool_next_qid(struct spool *sp);

/* Queues a complete MESSAGE record (m->head encoded); takes m's reference. The waiter
 * (m->waiter_slot/gen) is told through conn_committed() once the batch is durable or failed. */
void spool_commit(struct spool *sp, struct msg *m);

/* Queues a state record: recipient rcpt of message qid is final (RECORD_DELIVERED or
 * RECORD_BOUNCED). */
void spool_mark_final(struct spool *sp, uint64_t qid, uint8_t record_type, uint32_t rcpt);

/* Whether recipient rcpt of message qid still waits for delivery. */
bool spool_rcpt_pending(const struct spool *sp, uint64_t qid, uint32_t rcpt);

/* End of a loop turn: submits the queued records as one batch if none is in flight. */
void spool_flush(struct spool *sp);

/* Milliseconds until queued state records are due to be flushed (UINT64_MAX: none). */
uint64_t spool_next_flush_ms(const struct spool *sp);

/* A completion of a spool request. */
void spool_complete(struct spool *sp, struct io_uring_cqe *cqe);

/* Nothing queued and nothing in flight. */
bool spool_idle(const struct spool *sp);

/* Closes the segment and frees everything (after spool_idle). */
void spool_close(struct spool *sp);
#endif
