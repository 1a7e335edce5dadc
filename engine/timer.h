/* engine/timer.h - idle deadlines of one shard's connections (RFC 5321 4.5.3.2 timeouts).
 *
 * Every connection waits under one of a few timeout classes (command, data), each a fixed
 * duration. Within a class, the connection that was active longest ago expires first, so each
 * class is a list ordered by last activity: touching a connection moves it to the tail (O(1)),
 * and expiry only ever looks at the heads (O(1) per expired connection). This is exact, needs no
 * tick and no per-timer allocation. Owned by one shard; the nodes are embedded in connections. */
#ifndef RINGMTA_ENGINE_TIMER_H
#define RINGMTA_ENGINE_TIMER_H
#include <stddef.h>
#include <stdint.h>

struct timer_node {
	struct timer_node *prev, *next;   /* NULL when not in a list */
	uint64_t touched_ms;
};

struct timer_list {
	struct timer_node head;           /* sentinel of a circular list */
	uint32_t timeout_ms;
	uint32_t count;
};

void timer_list_init(struct timer_list *l, uint32_t timeout_ms);

/* Puts n at the tail of l (removing it from any list first), stamped with now_ms. */
void timer_list_touch(struct timer_list *l, struct timer_node *n, uint64_t now_ms);

/* Removes n from whatever list holds it; a node in no list is left alone. */
void timer_node_remove(struct timer_list *l, struct timer_node *n);

/* The node whose deadline passed by now_ms, or NULL. The caller removes or touches it. */
struct timer_node *timer_list_expired(struct timer_list *l, uint64_t now_ms);

/* Milliseconds until the earliest deadline of l (0 if already due), or UINT64_MAX if empty. */
uint64_t timer_list_next_ms(const struct timer_list *l, uint64_t now_ms);
#endif
