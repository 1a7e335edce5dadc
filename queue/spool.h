/* queue/spool.h - this shard's queue: the append-only message log, its index and its schedule.
 *
 * Records (queue/record.h) are appended to the active segment spool/<shard>/<segment>.log.
 * Group commit: every record queued during one loop turn goes out in one batch, a chain of
 * pwritev requests linked to one fdatasync; only one batch is in flight at a time, so the durable
 * part of a segment is always a prefix, and records queued while a batch flies wait for the next.
 * State records alone wait up to a second for a message record to share an fdatasync with.
 * A batch that fails (a write or the fdatasync: a full disk, an I/O error) fails every message in
 * it; it is cut off the segment and the next batch is written where it began.
 *
 * A message's waiter (the SMTP session) hears the outcome as a posted event with its own
 * user_data once the fdatasync of its batch has completed: that is when "250" may be said. Room
 * for everything that must happen after the write (the event, the index entry, its place in the
 * schedule) is reserved by spool_commit, so the only failure after a durable write is none: an
 * out-of-memory is a 451 before the write, never a message that is on disk and unknown.
 *
 * Every recipient is in exactly one state (queue/index.h): pending, in flight, deferred until a
 * wall-clock time (durable: a DEFERRED record), or final (delivered, bounced). The schedule
 * (queue/schedule.h) says which message is due next; spool_take_due hands out due messages, in
 * O(log n) each. Back-off follows Postfix: the delay before the next attempt is the time the
 * message has spent in the queue, at least minimal_backoff_time and at most
 * maximal_backoff_time (so it doubles from attempt to attempt), with +-10% jitter, and never past
 * the message's expiry (arrival + queue_lifetime), when the recipient is bounced instead.
 *
 * Delivery agents read a message's record through the ring with spool_read (the completion goes
 * straight to the agent's user_data), so nothing is kept in memory for a message that waits.
 *
 * A segment is rolled over at SPOOL_SEGMENT_SIZE; the oldest segments are deleted (unlinkat
 * through the ring) once every message in them is final. A long-deferred message must not pin
 * its segment and every later one: when the oldest segment holds little that is live (under a
 * quarter of a segment), its live messages are copied forward into the active segment as COPY
 * records (queue/record.h), each carrying its recipients' states; the old segment goes once
 * those are durable, and recovery never counts a message twice (a COPY moves it). Start-up runs recovery (queue/recover.h)
 * before the shard serves, and schedules every live message. Owned by one shard. */
#ifndef RINGMTA_QUEUE_SPOOL_H
#define RINGMTA_QUEUE_SPOOL_H
#include <stdbool.h>
#include <stdint.h>

#include "base/bufring.h"
#include "base/hist.h"
#include "base/ring.h"
#include "base/slice.h"
#include "queue/index.h"

struct spool;
struct msg;
struct record_envelope;

#define SPOOL_SEGMENT_SIZE   (64u << 20)   /* roll over past this many bytes */
#define SPOOL_BATCH_IOV_MAX  1024u         /* iovecs per pwritev (IOV_MAX) */
#define SPOOL_JITTER_PCT     10u           /* +- this much of each back-off */
#define SPOOL_BODY_MIN       4096u         /* a BODY record holds at least this (but the last) */
#define SPOOL_BODY_SPILL     (256u << 10)  /* a message holding this much writes it at once */
#define SPOOL_PIECES_MAX     256u          /* ... or holding this many receive-buffer slices */

struct spool_params {
	const char *spool_dir;          /* <spool_dir>/<shard>/ is this spool's directory */
	struct bufring *bufs;           /* the shard's receive buffers (body slices come from them) */
	const uint32_t *adopt;          /* shard directories of a larger shard count to take in */
	uint32_t adopt_count;
	uint32_t shard;
	uint64_t minimal_backoff_ms;
	uint64_t maximal_backoff_ms;
	uint64_t queue_lifetime_ms;
	uint64_t delay_warning_ms;      /* 0: no "delayed" notices */
};

struct spool_stats {
	uint64_t fdatasyncs;
	struct hist fdatasync_latency;  /* a batch's submission to its fdatasync's completion, as
	                                 * the loop sees them (clock readings of the two turns) */
	uint64_t messages;              /* committed */
	uint64_t segments_deleted;
	uint64_t copied;                /* messages copied forward out of old segments */
	uint64_t body_bytes;            /* body octets appended to messages being received */
	uint64_t body_copied;           /* of those, copied in user space (coalesced) */
	uint64_t body_held;             /* written straight from the receive buffers */
};

/* fsync(2) of the directory that holds path (a directory just made, or found, at start-up), so
 * that its name is durable. Blocking: start-up only. Returns 0 or -errno. */
int spool_sync_parent(const char *path);

/* Opens (creating if needed) <spool_dir>/<shard>/, adopts the directories p->adopt names
 * (queue/adopt.h), recovers it, opens the active segment and schedules every live message;
 * registers its op and hooks on r. Blocking I/O: start-up only,
 * before the shard serves. Returns 0 or -errno. */
int spool_open(struct ring *r, const struct spool_params *p, struct spool **out);

/* Closes the segment and frees everything (once the ring is idle). */
void spool_close(struct spool *sp);

/* The next queue id of this shard (unique across shards and restarts). */
uint64_t spool_next_qid(struct spool *sp);

/* Appends data to the body of m (being received): kept in its receive buffer when it lies in
 * one (no copy; the buffer is held until the octets are written), else copied aside. At the end
 * of the turn the spool writes what m holds as a BODY record once it is SPOOL_BODY_MIN or more,
 * and copies a smaller rest aside, so no buffer is held across turns. Returns 0, or -EFBIG past
 * the body's bound, or -ENOMEM (the commit must then fail: m->body_err is set). */
int spool_body_append(struct spool *sp, struct msg *m, struct slice data);

/* The session lets m go without a commit (the client left, the body was refused): its BODY
 * records become dead bytes and stop keeping their segment. */
void spool_body_abandon(struct spool *sp, struct msg *m);

/* Queues m (body complete) as a MESSAGE record with envelope env, encoded now (env's slices are
 * not kept). Takes a reference on m while it needs one. The waiter's user_data gets an event
 * once the batch is durable (res 0) or failed (-errno). Returns 0, or -ENOMEM (nothing queued,
 * no event: answer 451 now), -EFBIG (the record would exceed RECORD_PAYLOAD_MAX). */
int spool_commit(struct spool *sp, struct msg *m, const struct record_envelope *env,
	uint64_t waiter_ud) MUST_USE;

/* The next due message at now (wall clock): its due recipients are INFLIGHT from here on, and
 * each must come back through spool_rcpt_delivered, _bounced, _defer or _release. Returns false
 * when nothing is due. */
bool spool_take_due(struct spool *sp, uint64_t *qid);

/* The live message qid, or NULL. Valid until the next call that changes the spool. */
const struct index_entry *spool_entry(const struct spool *sp, uint64_t qid);

/* State of recipient rcpt of qid (INDEX_RCPT_DELIVERED for a message no longer live). */
enum index_rcpt_state spool_rcpt_state(const struct spool *sp, uint64_t qid, uint32_t rcpt);

/* Octets of message qid as spool_read sees it: its envelope, then its body (0: not live). */
uint64_t spool_message_size(const struct spool *sp, uint64_t qid);

/* Reads len octets at offset off of message qid (offsets as spool_message_size counts them:
 * 0 is the start of the envelope, wherever its record lives now) into buf through the ring; the
 * completion (res: octets read, or -errno) goes to user_data ud. buf must stay valid until then.
 * sqe_flags are added to the request's (IOSQE_IO_LINK and the like: the read may be a step of
 * the caller's chain). Returns 0, or -ENOENT (not live), -EINVAL (outside the record), -errno
 * (segment unreadable). */
int spool_read(struct spool *sp, uint64_t qid, uint64_t off, void *buf, uint32_t len,
	uint64_t ud, uint8_t sqe_flags) MUST_USE;

/* Whether spool_read of [off, off + len) of qid would be queued now (same errors); a chain of
 * reads checked this way cannot fail halfway through being queued. */
int spool_read_check(struct spool *sp, uint64_t qid, uint64_t off, uint64_t len) MUST_USE;

/* A message's body as its readers see it: its parts (BODY records) in order, then the rest that
 * follows the envelope (and the table of parts) in its record. Filled by spool_body_open from the
 * message's first octets; it borrows the table from them, so they must stay while it is used.
 * Each reader keeps its own copy: the cursor makes reading in order linear. */
struct spool_body {
	uint64_t len;                   /* octets of the body */
	uint64_t parts_len;             /* of those, in the parts */
	uint64_t rest_off;              /* where the rest starts, as spool_read counts */
	struct slice table;             /* the PARTS table (empty: none) */
	uint32_t parts;
	uint32_t cur;                   /* cursor: part cur starts at body offset cur_start */
	uint64_t cur_start;
};

/* From head, the first octets of message qid (spool_read at offset 0), whose envelope is
 * env_len octets long. Returns 0; -EAGAIN with *need set when head must be longer (it does not
 * hold the whole table of parts); -ENOENT; -EBADMSG. */
int spool_body_open(const struct spool *sp, uint64_t qid, struct slice head, uint32_t env_len,
	struct spool_body *b, uint64_t *need) MUST_USE;

/* Reads body octets [off, off + n) into buf through the ring (completion to ud, with sqe_flags
 * added as for spool_read), n <= len and no further than the part (or the rest) off is in: a
 * reader asks again for the next. Returns n (> 0), or -errno. */
int64_t spool_body_read(struct spool *sp, uint64_t qid, struct spool_body *b, uint64_t off,
	void *buf, uint32_t len, uint64_t ud, uint8_t sqe_flags) MUST_USE;

/* Whether every read of body octets [off, off + len) can be queued now (the same errors): a
 * chain of reads checked this way cannot fail halfway through being queued. */
int spool_body_check(struct spool *sp, uint64_t qid, const struct spool_body *b, uint64_t off,
	uint64_t len) MUST_USE;

/* One stretch of a body in a segment file, for a reader on any shard: descriptors are
 * process-wide, so another shard reads it through its own ring. */
struct spool_extent {
	int fd;
	uint64_t off;                   /* absolute, in fd */
	uint64_t len;
};

/* The stretches of b in body order (its parts, then the rest when not empty): at most
 * b->parts + 1 into out. Valid while a recipient of qid is in flight: the spool then does not
 * copy the message forward, and never closes a segment's descriptor while a message in it is
 * live. Returns the count, -ENOENT (not live), -ENOBUFS (max too small) or -errno (a segment
 * could not be opened). */
int spool_body_extents(struct spool *sp, uint64_t qid, const struct spool_body *b,
	struct spool_extent *out, uint32_t max) MUST_USE;

/* Outcomes of an attempt (recipients in flight, or any live one for the queue commands). */
void spool_rcpt_delivered(struct spool *sp, uint64_t qid, uint32_t rcpt);
void spool_rcpt_bounced(struct spool *sp, uint64_t qid, uint32_t rcpt);

/* A temporary failure: deferred with back-off (a DEFERRED record; *next_ms says until when),
 * returns 0; or the message is past its lifetime: returns -ETIME and changes nothing (the caller
 * bounces the recipient). *warn (if not NULL) says that this was the first attempt at or past
 * arrival + delay_warning_time, when a "delayed" notice is due: the attempt before it is moved
 * to that moment (like the last one to the expiry), so the moment is in the DEFERRED record and
 * the notice goes once, also across a restart. */
int spool_rcpt_defer(struct spool *sp, uint64_t qid, uint32_t rcpt, uint64_t *next_ms,
	bool *warn);

/* An in-flight recipient that was never tried goes back to pending. */
void spool_rcpt_release(struct spool *sp, uint64_t qid, uint32_t rcpt);

/* The administrator's commands (engine/control, `ringmta queue`). */
enum spool_ctl {
	SPOOL_CTL_HOLD,     /* a HOLD record: not tried until released */
	SPOOL_CTL_RELEASE,  /* a HOLD record saying 0: tried when due again */
	SPOOL_CTL_DELETE,   /* an EXPIRED record: gone, no notice */
	SPOOL_CTL_BOUNCE,   /* a BOUNCE record: every recipient not final expires now, with the
	                     * notice an expiry gives (the qmgr's attempt sees the mark) */
};

/* Applies op to live message qid in memory at once and queues its record, which goes in the next
 * batch without waiting for company; waiter_ud gets an event once it is durable (res 0 or
 * -errno). Returns 0 (the event will come), or, with nothing done and no event: -ENOENT (not
 * live here), -EBUSY (delete of a message with recipients in flight: its readers, on any shard,
 * hold where its body is), -EALREADY (hold of a held message, release of one not held),
 * -ENOMEM. */
int spool_ctl(struct spool *sp, uint64_t qid, enum spool_ctl op, uint64_t waiter_ud) MUST_USE;

/* Flush: the deferred recipients of qid are due now (in memory only: after a restart the
 * DEFERRED records' times stand). Returns how many (0: none, or qid not live). */
uint32_t spool_ctl_flush(struct spool *sp, uint64_t qid);

/* Up to max queue ids of live messages into out, in no particular order. Returns how many. */
uint32_t spool_ids(const struct spool *sp, uint64_t *out, uint32_t max);

/* Remembers the reply of recipient rcpt's last attempt for the listing: code and status in
 * the index (index_note), the text in a bounded cache (queue/reply_cache.h). */
void spool_rcpt_note(struct spool *sp, uint64_t qid, uint32_t rcpt, uint16_t code,
	const uint8_t dsn[3], struct slice text);

/* The text of that reply, or an empty slice (unknown, or no longer kept). Valid until the
 * next note. */
struct slice spool_rcpt_reply(const struct spool *sp, uint64_t qid, uint32_t rcpt);

/* Milliseconds until the next message is due (UINT64_MAX: none). */
uint64_t spool_next_due_ms(const struct spool *sp);

/* Messages live in the queue. */
uint32_t spool_live(const struct spool *sp);

/* Octets of this shard's segment files (what the spool takes on disk). */
uint64_t spool_bytes(const struct spool *sp);

/* The live messages by state and by age, for operators (a metrics gauge). A message is ACTIVE
 * when a recipient is in flight, else DEFERRED when no recipient is due before its next attempt,
 * else PENDING (due, waiting for the queue manager). */
enum spool_census_state {
	SPOOL_CENSUS_PENDING,
	SPOOL_CENSUS_ACTIVE,
	SPOOL_CENSUS_DEFERRED,
	SPOOL_CENSUS_STATES,
};
#define SPOOL_CENSUS_AGES 5u   /* up to 5 minutes, 1 hour, 4 hours, 1 day, older */
extern const uint64_t spool_census_age_ms[SPOOL_CENSUS_AGES - 1];
struct spool_census {
	uint64_t messages[SPOOL_CENSUS_STATES][SPOOL_CENSUS_AGES];
};

/* Counts every live message (one walk of the index: O(live messages)) at wall-clock now_ms. */
void spool_census(const struct spool *sp, uint64_t now_ms, struct spool_census *out);

/* The same count over an index of its own (perf/census_bench measures the walk this way). */
void spool_census_index(const struct index *ix, uint64_t now_ms, struct spool_census *out);

const struct spool_stats *spool_stats(const struct spool *sp);
#endif
