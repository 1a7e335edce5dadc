/* queue/schedule.c - the binary min-heap of due times; see schedule.h. */
#include "queue/schedule.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define SCHEDULE_CAP_FIRST 1024u

void
schedule_init(struct schedule *s)
{
	memset(s, 0, sizeof(*s));
}

void
schedule_fini(struct schedule *s)
{
	free(s->heap);
	memset(s, 0, sizeof(*s));
}

int
schedule_reserve(struct schedule *s, uint32_t n)
{
	uint64_t need = (uint64_t)s->count + s->reserved + n;
	if (need <= s->cap) {
		s->reserved += n;
		return 0;
	}
	if (need > SCHEDULE_CAP_MAX)
		return -ENOMEM;
	uint64_t cap = s->cap ? s->cap : SCHEDULE_CAP_FIRST;
	while (cap < need)
		cap *= 2;
	struct schedule_entry *grown = realloc(s->heap, cap * sizeof(*grown));
	if (grown == NULL)
		return -ENOMEM;
	s->heap = grown;
	s->cap = (uint32_t)cap;
	s->reserved += n;
	return 0;
}

void
schedule_unreserve(struct schedule *s, uint32_t n)
{
	ASSERT(n <= s->reserved);
	s->reserved -= n;
}

static bool
schedule_before(const struct schedule_entry *a, const struct schedule_entry *b)
{
	return a->due_ms < b->due_ms || (a->due_ms == b->due_ms && a->qid < b->qid);
}

void
schedule_push(struct schedule *s, uint64_t due_ms, uint64_t qid)
{
	ASSERT(s->reserved > 0);
	ASSERT(s->count < s->cap);
	s->reserved--;
	uint32_t i = s->count++;
	struct schedule_entry e = { .due_ms = due_ms, .qid = qid };
	while (i > 0) {
		uint32_t parent = (i - 1) / 2;
		if (!schedule_before(&e, &s->heap[parent]))
			break;
		s->heap[i] = s->heap[parent];
		i = parent;
	}
	s->heap[i] = e;
}

bool
schedule_peek(const struct schedule *s, struct schedule_entry *out)
{
	if (s->count == 0)
		return false;
	*out = s->heap[0];
	return true;
}

void
schedule_pop(struct schedule *s)
{
	ASSERT(s->count > 0);
	struct schedule_entry last = s->heap[--s->count];
	uint32_t i = 0;
	for (;;) {
		uint32_t child = 2 * i + 1;
		if (child >= s->count)
			break;
		if (child + 1 < s->count && schedule_before(&s->heap[child + 1], &s->heap[child]))
			child++;
		if (!schedule_before(&s->heap[child], &last))
			break;
		s->heap[i] = s->heap[child];
		i = child;
	}
	if (s->count > 0)
		s->heap[i] = last;
}
