/* queue/msg.h - one message being received or committed, owned by one shard.
 *
 * While DATA or BDAT runs, the SMTP session owns the message and appends body slices to it: this
 * is the one copy of the body between the socket buffers and the disk (the record is written
 * from here with one pwritev). At COMMIT the session hands the message to the spool, which holds
 * a reference until the record is durable; deliveries read the record back from the spool. The
 * last msg_unref frees it.
 *
 * Layout: head = record header + encoded envelope (built at COMMIT); body = the Received: header
 * prepended at acceptance + the message as received (dots unstuffed). */
#ifndef RINGMTA_QUEUE_MSG_H
#define RINGMTA_QUEUE_MSG_H
#include <stddef.h>
#include <stdint.h>

#include "base/slice.h"

struct index_rcpt;

#define MSG_BODY_INITIAL_CAP 16384u   /* grows by doubling up to max_message_size + headers */

struct msg {
	uint64_t qid;
	uint64_t arrival_ms;        /* CLOCK_REALTIME */
	uint8_t *head;
	uint32_t head_len;
	uint8_t *body;
	size_t body_len;
	size_t body_cap;
	size_t body_max;            /* growth bound */
	uint32_t refs;
	uint32_t rcpt_count;
	uint32_t segment;           /* where the record lives, once written */
	uint64_t offset;
	uint64_t waiter_ud;         /* the event for the session waiting for the commit */
	struct index_rcpt *ix_rcpts;/* recipient states reserved for the index (NULL: one) */
};

/* A new message with one reference, or NULL when memory is short. */
struct msg *msg_new(uint64_t qid, uint64_t arrival_ms, size_t body_max);

/* Appends bytes to the body. Returns 0, or -EFBIG past body_max, or -ENOMEM. */
int msg_append(struct msg *m, struct slice data) MUST_USE;

void msg_ref(struct msg *m);
void msg_unref(struct msg *m);
#endif
