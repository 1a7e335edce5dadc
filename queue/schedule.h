/* queue/schedule.h - when each live message is next due: a binary min-heap of (due, queue id).
 *
 * The spool pushes a message when it becomes due at some time (committed: now; an attempt ended
 * with recipients deferred: their earliest next attempt). The shard pops what is due, O(log n)
 * per message, never scanning the queue, so a loop turn costs the same with 100 or 100,000
 * messages waiting. Entries are hints, checked against the index when popped: an entry whose
 * message is gone, in flight, or due at another time is stale and dropped (a message made due
 * earlier leaves its old entry behind). Times are wall-clock milliseconds, since they come back
 * from DEFERRED records after a restart. Owned by one shard; pure, no I/O.
 *
 * Memory: 16 octets per entry. Pushes cannot fail: each is reserved ahead (schedule_reserve),
 * at a moment when a failure can still be answered (a commit gets 451; a message is not taken
 * for delivery), since pushes come after a durable write or a finished attempt. */
#ifndef RINGMTA_QUEUE_SCHEDULE_H
#define RINGMTA_QUEUE_SCHEDULE_H
#include <stdbool.h>
#include <stdint.h>

#include "base/assert.h"

#define SCHEDULE_CAP_MAX (1u << 28)   /* entries */

struct schedule_entry {
	uint64_t due_ms;
	uint64_t qid;
};

struct schedule {
	/* private: use the functions */
	struct schedule_entry *heap;
	uint32_t count;
	uint32_t cap;
	uint32_t reserved;          /* pushes promised: cap >= count + reserved */
};

void schedule_init(struct schedule *s);
void schedule_fini(struct schedule *s);

/* Promises n more pushes. Returns 0 or -ENOMEM (nothing promised). */
int schedule_reserve(struct schedule *s, uint32_t n) MUST_USE;

/* Takes back n promises that will not be used. */
void schedule_unreserve(struct schedule *s, uint32_t n);

/* Adds (due_ms, qid), using one promise. */
void schedule_push(struct schedule *s, uint64_t due_ms, uint64_t qid);

/* The earliest entry, or false when empty. */
bool schedule_peek(const struct schedule *s, struct schedule_entry *out);

/* Removes the earliest entry (the schedule is not empty). */
void schedule_pop(struct schedule *s);

static inline uint32_t
schedule_count(const struct schedule *s)
{
	return s->count;
}
#endif
