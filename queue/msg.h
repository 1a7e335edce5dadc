/* queue/msg.h - one message being received or committed, owned by one shard.
 *
 * While DATA or BDAT runs, the SMTP session owns the message and hands it the body as it comes:
 * slices that lie in the shard's receive buffers are kept as they are (msg_append_held: the
 * message holds a reference to the buffer, and no octet is copied), anything else is copied
 * into the message's small coalescing buffer (msg_append). At the end of every loop turn the
 * spool writes what a message holds as a BODY record once there is at least SPOOL_BODY_MIN of it,
 * and lets the buffers go when the write is done; a little is copied into the coalescing
 * buffer instead, so that a client trickling octets holds no receive buffer across turns and
 * makes no record per octet. At COMMIT the spool writes what is left inline in the MESSAGE (or
 * PARTS) record, which names the BODY records written before. So a message costs at most a
 * coalescing buffer and the receive buffers of one turn in memory, whatever its size.
 *
 * The spool holds a reference while records of the message are queued or in flight; the last
 * msg_unref frees it and lets go of every buffer it still holds. */
#ifndef RINGMTA_QUEUE_MSG_H
#define RINGMTA_QUEUE_MSG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/bufring.h"
#include "base/slice.h"
#include "queue/record.h"

struct index_rcpt;

#define MSG_COALESCE_FIRST_CAP  4096u   /* the coalescing buffer grows from this */
#define MSG_PIECES_FIRST_CAP      16u

/* A slice of the body still in a receive buffer (bid) that the message holds. */
struct msg_piece {
	const uint8_t *ptr;
	uint32_t len;
	uint16_t bid;
};

struct msg {
	uint64_t qid;
	uint64_t arrival_ms;        /* CLOCK_REALTIME */
	uint32_t refs;
	struct bufring *bufs;       /* where held pieces come from (NULL: none are) */
	/* The body not written yet: the coalesced octets first, then the held pieces. */
	uint8_t *coal;
	uint32_t coal_len;
	uint32_t coal_cap;
	struct msg_piece *pieces;
	uint32_t piece_count;
	uint32_t piece_cap;
	uint64_t pieces_len;
	/* The body written already, as BODY records, in order. */
	struct record_part *parts;
	uint32_t part_count;        /* queued or written */
	uint32_t part_cap;
	uint32_t parts_unwritten;   /* of those, not durable yet */
	int body_err;               /* a BODY record failed: the commit must fail too */
	uint32_t held_seg;          /* the segment of its first part, held live (UINT32_MAX: none) */
	bool abandoned;             /* the session let it go uncommitted */
	uint64_t body_len;          /* octets appended so far */
	uint64_t body_max;          /* growth bound */
	/* Set by the spool. */
	uint8_t *head;              /* record header + envelope (+ PARTS table), at COMMIT */
	uint32_t head_len;
	uint32_t env_len;
	uint32_t rcpt_count;
	bool committed;
	bool open;                  /* on the spool's list of messages with unwritten octets */
	struct msg *open_next;
	uint32_t segment;           /* where the MESSAGE/PARTS record lives, once written */
	uint64_t offset;
	uint64_t waiter_ud;         /* the event for the session waiting for the commit */
	struct index_rcpt *ix_rcpts;/* recipient states reserved for the index (NULL: one) */
};

/* A new message with one reference, or NULL when memory is short. body_max bounds the body;
 * bufs is where held pieces come from (NULL if none will be). */
struct msg *msg_new(uint64_t qid, uint64_t arrival_ms, uint64_t body_max, struct bufring *bufs);

/* Appends a copy of data to the body (the coalescing buffer). Returns 0, or -EFBIG past
 * body_max, or -ENOMEM. */
int msg_append(struct msg *m, struct slice data) MUST_USE;

/* Appends data, which lies in receive buffer bid, without copying it: takes a reference on the
 * buffer until the octets are written. Returns 0, -EFBIG or -ENOMEM (nothing is held then). */
int msg_append_held(struct msg *m, struct slice data, uint16_t bid) MUST_USE;

/* Octets appended and not yet handed to a record. */
static inline uint64_t
msg_unwritten(const struct msg *m)
{
	return m->coal_len + m->pieces_len;
}

/* Copies the held pieces into the coalescing buffer and lets their buffers go. Returns 0 or
 * -ENOMEM (the pieces are then still held). */
int msg_coalesce(struct msg *m) MUST_USE;

/* Lets go of every held piece (the octets are gone from the message). */
void msg_release_pieces(struct msg_piece *pieces, uint32_t count, struct bufring *bufs);

void msg_ref(struct msg *m);
void msg_unref(struct msg *m);
#endif
