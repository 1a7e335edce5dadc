/* base/queue_id.c - unique queue ids; see queue_id.h. */
#include "base/queue_id.h"

#include <errno.h>

#define QUEUE_ID_COUNTER_WRAP (1u << QUEUE_ID_COUNTER_BITS)

void
queue_id_gen_init(struct queue_id_gen *g, uint32_t shard, uint64_t now_s, uint64_t max_seen_id)
{
	ASSERT(shard < QUEUE_ID_SHARD_MAX);
	/* One second past the newest id on disk: the counter restarts at 0, and every id of that
	 * second may already be in use. */
	uint64_t after_seen = (uint64_t)queue_id_seconds(max_seen_id) + 1;
	uint64_t seconds = now_s > after_seen ? now_s : after_seen;
	if (seconds > QUEUE_ID_SECONDS_MAX)
		seconds = now_s;
	if (seconds == 0 || seconds > QUEUE_ID_SECONDS_MAX)
		seconds = 1;   /* a clock before 1970 or after 2106: still never id 0 */
	g->seconds = seconds;
	g->shard = shard;
	g->counter = 0;
}

uint64_t
queue_id_next(struct queue_id_gen *g)
{
	if (g->counter == QUEUE_ID_COUNTER_WRAP) {
		/* Every id of this second is used: borrow the next second. */
		ASSERT(g->seconds < QUEUE_ID_SECONDS_MAX);
		g->seconds++;
		g->counter = 0;
	}
	uint64_t id = (g->seconds << 32) | ((uint64_t)g->shard << QUEUE_ID_COUNTER_BITS)
		| g->counter;
	g->counter++;
	return id;
}

void
queue_id_format(uint64_t id, char out[QUEUE_ID_STR_LEN + 1])
{
	static const char hex[] = "0123456789ABCDEF";
	for (uint32_t i = 0; i < QUEUE_ID_STR_LEN; i++)
		out[i] = hex[(id >> (4 * (QUEUE_ID_STR_LEN - 1 - i))) & 0xfu];
	out[QUEUE_ID_STR_LEN] = '\0';
}

/* The value of hex digit c, or -1. */
static int
queue_id_hex_digit(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

int
queue_id_parse(struct slice s, uint64_t *id)
{
	if (s.len != QUEUE_ID_STR_LEN)
		return -EINVAL;
	uint64_t v = 0;
	for (size_t i = 0; i < s.len; i++) {
		int d = queue_id_hex_digit(s.ptr[i]);
		if (d < 0)
			return -EINVAL;
		v = (v << 4) | (uint64_t)d;
	}
	*id = v;
	return 0;
}
