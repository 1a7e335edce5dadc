/* base/bufring.h - the shard's provided receive buffers (an io_uring buffer ring).
 *
 * Multishot receives pick a buffer from the ring; the completion names it (its buffer id). A
 * buffer goes back to the ring when the last one who reads it is done: the transport takes the
 * first reference when the completion names the buffer (bufring_taken), anyone who keeps a
 * slice of it past the callback takes another (bufring_hold: the spool does, for body octets it
 * writes straight from here), and each lets go with bufring_release. Returns are made visible
 * to the kernel once per loop turn (bufring_flush), not one by one. Owned by one shard. When the
 * ring is empty a receive ends with -ENOBUFS and is re-armed at the end of the turn: that is
 * back-pressure, not an error, and it is what bounds the memory that held buffers cost.
 *
 * Spare buffers (bufring_init_spare) are made with the others, of the same size, but never go
 * to the kernel: the transport takes one (bufring_spare_take) to decrypt TLS records into, so
 * that plaintext lives in a receive buffer like any other and the spool can hold and write it
 * the same way. They carry the same references; the last release puts one back on the spare
 * list instead of the ring. None free is not an error: the caller uses memory of its own. */
#ifndef RINGMTA_BASE_BUFRING_H
#define RINGMTA_BASE_BUFRING_H
#include <liburing.h>
#include <stdint.h>

#include "base/assert.h"
#include "base/ring.h"

struct bufring {
	/* private: use the functions */
	struct io_uring_buf_ring *br;
	uint8_t *base;
	uint32_t count;          /* a power of two */
	uint32_t size;           /* octets per buffer */
	uint32_t returned;       /* added back since the last flush */
	uint16_t group;
	uint16_t *refs;          /* per buffer: 0 while the ring has it */
	uint32_t held;           /* buffers out of the ring (spares in use included) */
	uint32_t spare_count;    /* buffer ids count .. count + spare_count - 1 */
	uint16_t *spare_free;    /* a stack of free spare ids */
	uint32_t spare_free_len;
};

/* Maps count buffers of size octets and registers them as buffer group `group` of r. Start-up
 * only. Returns 0 or -errno. */
int bufring_init(struct bufring *b, struct ring *r, uint16_t group, uint32_t count, uint32_t size);

/* The same with `spare` buffers kept out of the kernel's ring (count + spare <= 65536). */
int bufring_init_spare(struct bufring *b, struct ring *r, uint16_t group, uint32_t count,
	uint32_t spare, uint32_t size);

void bufring_fini(struct bufring *b);

/* A free spare buffer with one reference (the caller's), or -1 if none is free. */
int32_t bufring_spare_take(struct bufring *b);

/* A completion named buffer bid: its first reference (the caller's). */
void bufring_taken(struct bufring *b, uint16_t bid);

/* One more reference to buffer bid (it is out of the ring). */
void bufring_hold(struct bufring *b, uint16_t bid);

/* Drops a reference; the last one gives the buffer back (visible after the next flush). */
void bufring_release(struct bufring *b, uint16_t bid);

/* Buffers out of the ring now. */
static inline uint32_t
bufring_held(const struct bufring *b)
{
	return b->held;
}

/* Which buffer p points into, or -1 if it is not one of them. */
int32_t bufring_which(const struct bufring *b, const void *p);

/* End of a loop turn: publishes the buffers returned since the last flush. */
void bufring_flush(struct bufring *b);

static inline uint8_t *
bufring_buf(const struct bufring *b, uint16_t bid)
{
	ASSERT(bid < b->count + b->spare_count);
	return b->base + (size_t)bid * b->size;
}

static inline uint32_t
bufring_size(const struct bufring *b)
{
	return b->size;
}

static inline uint16_t
bufring_group(const struct bufring *b)
{
	return b->group;
}
#endif
