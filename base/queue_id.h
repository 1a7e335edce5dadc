/* base/queue_id.h - queue ids, unique across shards and restarts.
 *
 * id = (seconds << 32) | (shard << 26) | counter. The seconds part starts at the clock, or one
 * past the seconds of the newest id the spool already holds, whichever is later, and steps on
 * by one whenever the 26-bit counter wraps, so a generator never repeats an id and never goes
 * back below what recovery saw. The shard part keeps the shards apart without talking. The
 * seconds part is where the counting started, not the arrival time of each message.
 *
 * No id is 0 (the seconds part is at least 1) or UINT64_MAX (that would need the year 2106):
 * the index keeps both for its own use. One generator per shard, used by that shard only.
 * Shown as QUEUE_ID_STR_LEN upper-case hex digits; parsed in either case. */
#ifndef RINGMTA_BASE_QUEUE_ID_H
#define RINGMTA_BASE_QUEUE_ID_H
#include <stdint.h>

#include "base/slice.h"

#define QUEUE_ID_STR_LEN      16u
#define QUEUE_ID_COUNTER_BITS 26u
#define QUEUE_ID_SHARD_BITS   6u
#define QUEUE_ID_SHARD_MAX    (1u << QUEUE_ID_SHARD_BITS)   /* shards 0 .. 63 */
#define QUEUE_ID_SECONDS_MAX  UINT32_MAX

_Static_assert(QUEUE_ID_COUNTER_BITS + QUEUE_ID_SHARD_BITS == 32, "seconds take the top half");

struct queue_id_gen {
	/* private: use the functions */
	uint64_t seconds;
	uint32_t shard;
	uint32_t counter;   /* the next counter value, 0 .. 1 << QUEUE_ID_COUNTER_BITS */
};

/* Starts shard's generator (shard < QUEUE_ID_SHARD_MAX) at seconds max(now_s, seconds of
 * max_seen_id + 1); max_seen_id is the largest id recovery found in this shard's spool (0 if
 * none). Should that pass QUEUE_ID_SECONDS_MAX (an id from the far future on disk), the clock
 * is used alone. */
void queue_id_gen_init(struct queue_id_gen *g, uint32_t shard, uint64_t now_s,
	uint64_t max_seen_id);

/* The next id; larger than every id g returned before. */
uint64_t queue_id_next(struct queue_id_gen *g);

/* The parts of an id. */
static inline uint32_t
queue_id_shard(uint64_t id)
{
	return (uint32_t)(id >> QUEUE_ID_COUNTER_BITS) & (QUEUE_ID_SHARD_MAX - 1);
}

static inline uint32_t
queue_id_seconds(uint64_t id)
{
	return (uint32_t)(id >> 32);
}

/* Writes id as QUEUE_ID_STR_LEN upper-case hex digits and a NUL. */
void queue_id_format(uint64_t id, char out[QUEUE_ID_STR_LEN + 1]);

/* Parses exactly QUEUE_ID_STR_LEN hex digits (either case). Returns 0, or -EINVAL (*id is
 * then untouched). */
int queue_id_parse(struct slice s, uint64_t *id);
#endif
