/* queue/msg.c - messages being received; see msg.h for ownership. */
#include "queue/msg.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "queue/index.h"

struct msg *
msg_new(uint64_t qid, uint64_t arrival_ms, uint64_t body_max, struct bufring *bufs)
{
	struct msg *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return NULL;
	m->qid = qid;
	m->arrival_ms = arrival_ms;
	m->body_max = body_max;
	m->bufs = bufs;
	m->held_seg = UINT32_MAX;
	m->refs = 1;
	return m;
}

static int
msg_coal_room(struct msg *m, uint32_t n)
{
	if (n <= m->coal_cap - m->coal_len)
		return 0;
	uint64_t cap = m->coal_cap ? m->coal_cap : MSG_COALESCE_FIRST_CAP;
	while (cap - m->coal_len < n)
		cap *= 2;
	if (cap > UINT32_MAX)
		return -ENOMEM;
	uint8_t *grown = realloc(m->coal, cap);
	if (grown == NULL)
		return -ENOMEM;
	m->coal = grown;
	m->coal_cap = (uint32_t)cap;
	return 0;
}

int
msg_append(struct msg *m, struct slice data)
{
	if (data.len > m->body_max - m->body_len)
		return -EFBIG;
	if (data.len == 0)
		return 0;
	int rc = msg_coal_room(m, (uint32_t)data.len);
	if (rc < 0)
		return rc;
	/* copy: not in a receive buffer (the Received: header, input the transport had to keep
	 * aside), or too little to hold a buffer for: counted by the spool. */
	memcpy(m->coal + m->coal_len, data.ptr, data.len);
	m->coal_len += (uint32_t)data.len;
	m->body_len += data.len;
	return 0;
}

int
msg_append_held(struct msg *m, struct slice data, uint16_t bid)
{
	ASSERT(m->bufs != NULL);
	if (data.len > m->body_max - m->body_len)
		return -EFBIG;
	if (data.len == 0)
		return 0;
	if (m->piece_count == m->piece_cap) {
		uint32_t cap = m->piece_cap ? m->piece_cap * 2 : MSG_PIECES_FIRST_CAP;
		struct msg_piece *grown = realloc(m->pieces, cap * sizeof(*grown));
		if (grown == NULL)
			return -ENOMEM;
		m->pieces = grown;
		m->piece_cap = cap;
	}
	/* A slice that continues the last piece in the same buffer is one piece (a dot-stuffed
	 * line splits the scanner's output, not the buffer). */
	struct msg_piece *last = m->piece_count > 0 ? &m->pieces[m->piece_count - 1] : NULL;
	if (last != NULL && last->bid == bid && last->ptr + last->len == data.ptr) {
		last->len += (uint32_t)data.len;
	} else {
		bufring_hold(m->bufs, bid);
		m->pieces[m->piece_count++] = (struct msg_piece){ .ptr = data.ptr,
			.len = (uint32_t)data.len, .bid = bid };
	}
	m->pieces_len += data.len;
	m->body_len += data.len;
	return 0;
}

void
msg_release_pieces(struct msg_piece *pieces, uint32_t count, struct bufring *bufs)
{
	for (uint32_t i = 0; i < count; i++)
		bufring_release(bufs, pieces[i].bid);
}

int
msg_coalesce(struct msg *m)
{
	if (m->piece_count == 0)
		return 0;
	if (m->pieces_len > UINT32_MAX || msg_coal_room(m, (uint32_t)m->pieces_len) != 0)
		return -ENOMEM;
	for (uint32_t i = 0; i < m->piece_count; i++) {
		/* copy: too little arrived this turn to be worth a record of its own; the buffer
		 * goes back to the ring now rather than wait for more. */
		memcpy(m->coal + m->coal_len, m->pieces[i].ptr, m->pieces[i].len);
		m->coal_len += m->pieces[i].len;
	}
	msg_release_pieces(m->pieces, m->piece_count, m->bufs);
	m->piece_count = 0;
	m->pieces_len = 0;
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
	if (m->piece_count > 0)
		msg_release_pieces(m->pieces, m->piece_count, m->bufs);
	index_rcpts_free(m->ix_rcpts);
	free(m->pieces);
	free(m->coal);
	free(m->parts);
	free(m->head);
	free(m);
}
