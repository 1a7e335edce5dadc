/* queue/msg.c - message buffers; see msg.h for ownership. */
#include "queue/msg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "queue/index.h"

struct msg *
msg_new(uint64_t qid, uint64_t arrival_ms, size_t body_max)
{
	struct msg *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return NULL;
	m->body_cap = MSG_BODY_INITIAL_CAP;
	m->body = malloc(m->body_cap);
	if (m->body == NULL) {
		free(m);
		return NULL;
	}
	m->qid = qid;
	m->arrival_ms = arrival_ms;
	m->body_max = body_max;
	m->refs = 1;
	return m;
}

int
msg_append(struct msg *m, struct slice data)
{
	if (data.len > m->body_max - m->body_len)
		return -EFBIG;
	if (data.len > m->body_cap - m->body_len) {
		size_t cap = m->body_cap;
		while (cap - m->body_len < data.len)
			cap *= 2;
		uint8_t *grown = realloc(m->body, cap);
		if (grown == NULL)
			return -ENOMEM;
		m->body = grown;
		m->body_cap = cap;
	}
	/* copy: the socket buffer goes back to the ring; this is the body's one copy. */
	memcpy(m->body + m->body_len, data.ptr, data.len);
	m->body_len += data.len;
	return 0;
}

void
msg_ref(struct msg *m)
{
	ASSERT(m->refs > 0);
	m->refs++;
}

void
msg_unref(struct msg *m)
{
	ASSERT(m->refs > 0);
	if (--m->refs > 0)
		return;
	index_rcpts_free(m->ix_rcpts);
	free(m->head);
	free(m->body);
	free(m);
}
