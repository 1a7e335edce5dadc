/* queue/index.h - the in-memory index of one shard's live messages.
 *
 * Queue id -> where the MESSAGE record is (segment, offset < 4 GiB, size), its arrival time, and the
 * state of each recipient: pending, deferred (with the time of its next attempt), or final
 * (delivered or bounced). A message is live while any recipient is not final; when the last one
 * becomes final the message leaves the index. Per-segment counters of live messages tell the
 * writer when a segment can be deleted: once it and every older segment count zero.
 *
 * Built by recovery at start-up (queue/recover.h), extended when a message is committed,
 * shrunk as recipients become final. Open addressing with linear probing, grown by doubling at
 * 70% load; a lookup never allocates, an insert allocates only when the table or the window of
 * segment counters grows, or when the message has more than one recipient (their states live in
 * their own array, up to INDEX_RCPT_MAX). Owned by one shard; no locking.
 *
 * Which message is due when is the schedule's business (queue/schedule.h): due_ms here is what
 * its entries are checked against.
 *
 * Queue ids 0 and UINT64_MAX are reserved here (empty and deleted slots); queue/queue_id.h
 * never makes them. Pointers to entries stay valid until the next insert, removal or relocation
 * (or mark that makes the message final). */
#ifndef RINGMTA_QUEUE_INDEX_H
#define RINGMTA_QUEUE_INDEX_H
#include <stdbool.h>
#include <stdint.h>

#include "base/assert.h"

#define INDEX_RCPT_MAX 1000u                 /* RECORD_RCPT_MAX, SMTP_RCPT_COUNT_MAX */
_Static_assert(INDEX_RCPT_MAX < (1u << 14), "an in-flight count fits its 14 bits");
_Static_assert(INDEX_RCPT_MAX <= UINT16_MAX, "recipient counts fit the entry's u16 fields");
#define INDEX_CAP_MAX  (1u << 30)            /* slots; 64 bytes each */

enum index_rcpt_state {
	INDEX_RCPT_PENDING = 0,     /* to be tried now */
	INDEX_RCPT_DELIVERED = 1,   /* final */
	INDEX_RCPT_BOUNCED = 2,     /* final */
	INDEX_RCPT_DEFERRED = 3,    /* to be tried at next_attempt_ms */
	INDEX_RCPT_INFLIGHT = 4,    /* handed to a delivery agent; in memory only (after a
	                             * restart it is pending, or deferred, again) */
};

/* What kind of record holds the message. */
enum index_kind {
	INDEX_KIND_MESSAGE = 0,     /* envelope, then the whole body */
	INDEX_KIND_COPY = 1,        /* states, envelope, the whole body */
	INDEX_KIND_PARTS = 2,       /* envelope, a table of BODY parts, the rest of the body */
};

struct index_rcpt {
	uint64_t next_attempt_ms;   /* DEFERRED: not before this (ms since the epoch); else 0 */
	uint8_t state;              /* enum index_rcpt_state */
	uint8_t last_dsn[3];        /* the last attempt's RFC 3463 status x.y.z (0.0.0: none) */
	uint16_t last_code;         /* ... and its SMTP reply code (0: none, or not SMTP); both in
	                             * memory only, and in what was padding: 0 octets more */
};
_Static_assert(sizeof(struct index_rcpt) == 16, "the last reply fits the padding");

struct index_entry {
	uint64_t qid;
	uint32_t offset;            /* of the MESSAGE (PARTS, COPY) record in its segment */
	uint32_t span;              /* segments back to the oldest holding a part of its body;
	                             * the message counts as live in that one */
	uint64_t arrival_ms;
	uint64_t due_ms;            /* earliest time a recipient is to be tried: 0 if one is
	                             * pending, else the smallest next attempt of the deferred */
	uint32_t segment;
	uint32_t size;              /* of the record, header included */
	uint16_t rcpt_count;        /* 1 .. INDEX_RCPT_MAX */
	uint16_t unfinished;        /* recipients neither delivered nor bounced; > 0 while live */
	uint16_t inflight : 14;     /* recipients INFLIGHT */
	uint16_t held : 1;          /* the administrator's hold: not taken for delivery */
	uint16_t bounce : 1;        /* the administrator's bounce: recipients expire when tried */
	uint16_t env_off : 14;      /* where the envelope starts in the record's payload: 0 for a
	                             * MESSAGE or PARTS, the state prefix's size for a COPY */
	uint16_t kind : 2;          /* enum index_kind */
	/* private: use index_rcpt_state() */
	union {
		struct index_rcpt one;      /* rcpt_count == 1 */
		struct index_rcpt *many;    /* rcpt_count > 1: malloc'd */
	} rcpts;
};
_Static_assert(sizeof(struct index_entry) == 64, "one entry per cache line");

struct index {
	/* private: use the functions */
	struct index_entry *slots;
	uint32_t cap;               /* power of two */
	uint32_t used;              /* live entries + deleted slots */
	uint32_t live;              /* messages in the index */
	uint32_t *seg_live;         /* live messages of segment seg_base + i */
	uint32_t seg_base;
	uint32_t seg_cap;
};

/* An empty index. Returns 0 or -ENOMEM. */
int index_init(struct index *ix);

/* Frees everything; ix may be initialised again. */
void index_fini(struct index *ix);

/* Messages in the index. */
static inline uint32_t
index_live(const struct index *ix)
{
	return ix->live;
}

/* Adds a message with every recipient pending (due now) and counts it in segment. Returns 0,
 * -EEXIST if qid is there already, -EINVAL for a reserved qid or a recipient count outside
 * 1 .. INDEX_RCPT_MAX, or -ENOMEM (the index is unchanged). */
int index_insert(struct index *ix, uint64_t qid, uint32_t segment, uint64_t offset, uint32_t size,
	uint32_t rcpt_count, uint64_t arrival_ms);

/* An insert that cannot fail for want of memory, in two steps: before the write, reserve table
 * room for n more messages in segment or segment + 1 (index_reserve) and the recipient states
 * of each message (index_rcpts_alloc: *out is NULL for one recipient, which needs no array);
 * after it, index_insert_prepared takes the array (ownership too) and can only fail with
 * -EEXIST or -EINVAL. index_rcpts_free gives back an array that was not inserted. */
int index_reserve(struct index *ix, uint32_t n, uint32_t segment) MUST_USE;
/* ... and a counter for an older segment a message's body begins in (PARTS). */
int index_reserve_segment(struct index *ix, uint32_t segment) MUST_USE;
int index_rcpts_alloc(uint32_t rcpt_count, struct index_rcpt **out) MUST_USE;
void index_rcpts_free(struct index_rcpt *rcpts);
int index_insert_prepared(struct index *ix, uint64_t qid, uint32_t segment, uint64_t offset,
	uint32_t size, uint32_t rcpt_count, uint64_t arrival_ms, struct index_rcpt *rcpts,
	uint32_t span);

/* Hands every recipient of qid that is pending, or deferred and due at now_ms, to delivery
 * (INFLIGHT). Returns how many (0 for a held message). */
uint32_t index_take_due(struct index *ix, uint64_t qid, uint64_t now_ms);

/* An INFLIGHT recipient goes back to pending without an attempt (the agent never ran it). */
void index_release(struct index *ix, uint64_t qid, uint32_t rcpt);

/* The message qid, or NULL if it is not live. */
const struct index_entry *index_find(const struct index *ix, uint64_t qid);

/* The record of live message qid was copied forward: it now lives at (segment, offset, size),
 * its envelope env_off octets into the payload. Recipient states stay; the live counts move.
 * Returns 0, -ENOENT, or -ENOMEM (unchanged). */
int index_relocate(struct index *ix, uint64_t qid, uint32_t segment, uint64_t offset,
	uint32_t size, uint16_t env_off);

/* The record of qid is of another kind than MESSAGE (set at insert or recovery). */
void index_set_kind(struct index *ix, uint64_t qid, enum index_kind kind);

/* Recovery of a COPY record: recipient rcpt of qid is in state st (pending, deferred until
 * next_ms, delivered or bounced) as the copy says. Returns whether that made the message final
 * (see index_mark_final). */
bool index_restore(struct index *ix, uint64_t qid, uint32_t rcpt, enum index_rcpt_state st,
	uint64_t next_ms);

/* Marks recipient rcpt of qid final (st is DELIVERED or BOUNCED). Returns true when that made
 * the whole message final: it has then left the index and its segment's count has dropped.
 * Unknown ids, recipients out of range and recipients already final change nothing and return
 * false (recovery replays records that may refer to messages already gone). */
bool index_mark_final(struct index *ix, uint64_t qid, uint32_t rcpt, enum index_rcpt_state st);

/* Marks recipient rcpt of qid deferred until next_attempt_ms (a later mark replaces the time).
 * Returns 0, or -ENOENT if qid is not live, rcpt is out of range or already final. Marking an
 * INFLIGHT recipient final or deferred ends its flight. */
int index_mark_deferred(struct index *ix, uint64_t qid, uint32_t rcpt, uint64_t next_attempt_ms);

/* The administrator's marks (queue control; durable as HOLD and BOUNCE records). Held: never
 * taken for delivery until released (an attempt under way ends as it ends). Bounce: every
 * deferred recipient becomes pending, and the delivery that takes them expires them; it ends a
 * hold. Return 0, or -ENOENT if qid is not live. */
int index_set_held(struct index *ix, uint64_t qid, bool held);
int index_set_bounce(struct index *ix, uint64_t qid);

/* Flush: every deferred recipient of qid is due at now_ms (in memory only: after a restart the
 * DEFERRED records' times stand). Returns how many. */
uint32_t index_flush(struct index *ix, uint64_t qid, uint64_t now_ms);

/* Remembers the outcome of recipient rcpt's last attempt, for the queue listing: the SMTP reply
 * code (0: none) and the RFC 3463 status digits. Unknown ids and recipients change nothing. */
void index_note(struct index *ix, uint64_t qid, uint32_t rcpt, uint16_t code,
	const uint8_t dsn[3]);

/* The last reply index_note recorded for recipient rcpt of e. */
const struct index_rcpt *index_entry_rcpt_info(const struct index_entry *e, uint32_t rcpt);

/* Removes message qid whatever its recipients' states (it expired: the caller bounces what was
 * left). Returns whether it was live. */
bool index_remove(struct index *ix, uint64_t qid);

/* The state of recipient rcpt of entry e (and its next attempt time if next_ms is not NULL). */
enum index_rcpt_state index_entry_rcpt(const struct index_entry *e, uint32_t rcpt,
	uint64_t *next_ms);

/* Whether recipient rcpt of qid is live and not final (pending or deferred). */
bool index_rcpt_pending(const struct index *ix, uint64_t qid, uint32_t rcpt);

/* Live messages whose record, or the oldest part of whose body, is in segment: a segment can
 * go when it and every older one count zero. */
uint32_t index_segment_live(const struct index *ix, uint32_t segment);

/* A body still arriving has parts in segment: it counts there as one live message until
 * index_unhold_segment, so that the segment cannot go before the message is committed (and
 * counted there by its own entry) or abandoned. The counter must exist (index_reserve or
 * index_reserve_segment made it). */
void index_hold_segment(struct index *ix, uint32_t segment);
void index_unhold_segment(struct index *ix, uint32_t segment);

/* The body of message qid begins `span` segments before its record (PARTS): it counts as live
 * there from now on. Returns 0, -ENOENT, or -ENOMEM (unchanged). */
int index_set_span(struct index *ix, uint64_t qid, uint32_t span);

/* Iteration over the live messages in no particular order: start with *cursor = 0; returns the
 * next one, or NULL at the end. Marking recipients and removing messages meanwhile is allowed
 * (the entry returned last may be gone then); inserting or relocating is not (the table may be
 * rebuilt). */
const struct index_entry *index_next(const struct index *ix, uint32_t *cursor);

/* Calls fn for every live message; fn must not change the index. */
void index_foreach(const struct index *ix, void (*fn)(void *ctx, const struct index_entry *e),
	void *ctx);
#endif
