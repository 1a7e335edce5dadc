/* queue/queue_id.h - queue ids, unique across shards and restarts.
 *
 * id = (seconds << 32) | (shard << 26) | counter: the seconds part starts at the clock, or one
 * past the newest id the spool already holds, whichever is later, and steps on when the 26-bit
 * counter wraps; the shard part keeps shards apart. Shown as 16 lower-case hex digits (parsed in either case). */
#ifndef RINGMTA_QUEUE_QUEUE_ID_H
#define RINGMTA_QUEUE_QUEUE_ID_H
#include <stdint.h>

#include "engine/slice.h"

#define QUEUE_ID_STR_LEN     16u
#define QUEUE_ID_SHARD_MAX   64u
#define QUEUE_ID_COUNTER_BITS 26u

struct queue_id_gen {
	uint64_t seconds;
	uint32_t shard;
	uint32_t counter;
};

void queue_id_gen_init(struct queue_id_gen *g, uint32_t shard, uint64_t now_s,
	uint64_t max_seen_id);
uint64_t queue_id_next(struct queue_id_gen *g);
void queue_id_format(uint64_t id, char out[QUEUE_ID_STR_LEN + 1]);
/* Returns 0, or -1 if s is not 16 hex digits. */
int queue_id_parse(struct slice s, uint64_t *id);
#endif
