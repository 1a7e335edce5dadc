/* engine/timer.c - per-class activity lists; see timer.h for why lists are enough. */
#include "engine/timer.h"

#include "base/assert.h"

void
timer_list_init(struct timer_list *l, uint32_t timeout_ms)
{
	l->head.prev = &l->head;
	l->head.next = &l->head;
	l->timeout_ms = timeout_ms;
	l->count = 0;
}

void
timer_node_remove(struct timer_list *l, struct timer_node *n)
{
	if (n->next == NULL)
		return;
	ASSERT(l->count > 0);
	n->prev->next = n->next;
	n->next->prev = n->prev;
	n->prev = NULL;
	n->next = NULL;
	l->count--;
}

void
timer_list_touch(struct timer_list *l, struct timer_node *n, uint64_t now_ms)
{
	ASSERT(n->next == NULL);   /* the caller removed it from its previous list */
	n->touched_ms = now_ms;
	n->prev = l->head.prev;
	n->next = &l->head;
	l->head.prev->next = n;
	l->head.prev = n;
	l->count++;
}

struct timer_node *
timer_list_expired(struct timer_list *l, uint64_t now_ms)
{
	struct timer_node *first = l->head.next;
	if (first == &l->head)
		return NULL;
	return first->touched_ms + l->timeout_ms <= now_ms ? first : NULL;
}

uint64_t
timer_list_next_ms(const struct timer_list *l, uint64_t now_ms)
{
	const struct timer_node *first = l->head.next;
	if (first == &l->head)
		return UINT64_MAX;
	uint64_t due = first->touched_ms + l->timeout_ms;
	return due <= now_ms ? 0 : due - now_ms;
}
