/* queue/reply_cache.c - recent replies' text; see reply_cache.h. */
#include "queue/reply_cache.h"

#include <stdlib.h>
#include <string.h>

#include "base/assert.h"

struct reply_cache {
	struct reply_cache_slot slots[REPLY_CACHE_SLOTS];
};

static uint32_t
reply_cache_index(uint64_t qid, uint32_t rcpt)
{
	uint64_t h = (qid ^ ((uint64_t)rcpt << 40)) * 0x9e3779b97f4a7c15ull;
	return (uint32_t)(h >> 32) & (REPLY_CACHE_SLOTS - 1);
}

struct reply_cache *
reply_cache_new(void)
{
	return calloc(1, sizeof(struct reply_cache));
}

void
reply_cache_free(struct reply_cache *rc)
{
	free(rc);
}

void
reply_cache_put(struct reply_cache *rc, uint64_t qid, uint32_t rcpt, struct slice text)
{
	ASSERT(qid != 0);
	struct reply_cache_slot *s = &rc->slots[reply_cache_index(qid, rcpt)];
	size_t n = text.len < REPLY_CACHE_TEXT_MAX ? text.len : REPLY_CACHE_TEXT_MAX;
	s->qid = qid;
	s->rcpt = (uint16_t)rcpt;
	s->len = (uint8_t)n;
	memcpy(s->text, text.ptr, n);   /* copy: the agent's result goes when the attempt ends */
	s->text[n] = '\0';
}

struct slice
reply_cache_get(const struct reply_cache *rc, uint64_t qid, uint32_t rcpt)
{
	const struct reply_cache_slot *s = &rc->slots[reply_cache_index(qid, rcpt)];
	if (s->qid != qid || s->rcpt != (uint16_t)rcpt)
		return slice_make(s->text, 0);
	return slice_make(s->text, s->len);
}
