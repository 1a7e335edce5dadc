/* queue/queue_id.c - unique queue ids; see queue_id.h. */
#include "queue/queue_id.h"

void
queue_id_gen_init(struct queue_id_gen *g, uint32_t shard, uint64_t now_s, uint64_t max_seen_id)
{
	ASSERT(shard < QUEUE_ID_SHARD_MAX);
	uint64_t after_seen = (max_seen_id >> 32) + 1;
	g->seconds = (now_s > after_seen ? now_s : after_seen) & 0xffffffffu;
	g->shard = shard;
	g->counter = 0;
}

uint64_t
queue_id_next(struct queue_id_gen *g)
{
	if (g->counter == (1u << QUEUE_ID_COUNTER_BITS)) {
		g->seconds = (g->seconds + 1) & 0xffffffffu;   /* ids stay unique: never reused */
		g->counter = 0;
	}
	return (g->seconds << 32) | ((uint64_t)g->shard << QUEUE_ID_COUNTER_BITS) | g->counter++;
}

void
queue_id_format(uint64_t id, char out[QUEUE_ID_STR_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	for (uint32_t i = 0; i < QUEUE_ID_STR_LEN; i++)
		out[i] = hex[(id >> (60 - 4 * i)) & 0xfu];
	out[QUEUE_ID_STR_LEN] = '\0';
}

int
queue_id_parse(struct slice s, uint64_t *id)
{
	if (s.len != QUEUE_ID_STR_LEN)
		return -1;
	uint64_t v = 0;
	for (size_t i = 0; i < s.len; i++) {
		uint8_t c = s.ptr[i];
		uint8_t d = c >= '0' && c <= '9' ? c - '0' : c >= 'A' && c <= 'F' ? c - 'A' + 10
			: c >= 'a' && c <= 'f' ? c - 'a' + 10 : 0xff;
		if (d == 0xff)
			return -1;
		v = (v << 4) | d;
	}
	*id = v;
	return 0;
}
