/* engine/bufring.h - the shard's provided receive buffers (an io_uring buffer ring).
 *
 * Multishot receives pick a buffer from the ring; the completion names it (its buffer id). A
 * buffer goes back to the ring when whoever read it is done (bufring_return); returns are made
 * visible to the kernel once per loop turn (bufring_flush), not one by one. Owned by one shard.
 * When the ring is empty a receive ends with -ENOBUFS and is re-armed at the end of the turn:
 * that is back-pressure, not an error. */
#ifndef RINGMTA_ENGINE_BUFRING_H
#define RINGMTA_ENGINE_BUFRING_H
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
};

/* Maps count buffers of size octets and registers them as buffer group `group` of r. Start-up
 * only. Returns 0 or -errno. */
int bufring_init(struct bufring *b, struct ring *r, uint16_t group, uint32_t count, uint32_t size);

void bufring_fini(struct bufring *b);

/* Gives buffer bid back (visible to the kernel after the next bufring_flush). */
void bufring_return(struct bufring *b, uint16_t bid);

/* End of a loop turn: publishes the buffers returned since the last flush. */
void bufring_flush(struct bufring *b);

static inline uint8_t *
bufring_buf(const struct bufring *b, uint16_t bid)
{
	ASSERT(bid < b->count);
	return b->base + (size_t)bid * b->size;
}

static inline uint16_t
bufring_group(const struct bufring *b)
{
	return b->group;
}
#endif
