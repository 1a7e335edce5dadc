/* base/bufring.c - provided receive buffers; see bufring.h. */
#include "base/bufring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Puts buffer bid into the ring (visible after the next flush). */
static void
bufring_add(struct bufring *b, uint16_t bid)
{
	io_uring_buf_ring_add(b->br, bufring_buf(b, bid), b->size, bid,
		io_uring_buf_ring_mask(b->count), (int)b->returned++);
}

int
bufring_init(struct bufring *b, struct ring *r, uint16_t group, uint32_t count, uint32_t size)
{
	return bufring_init_spare(b, r, group, count, 0, size);
}

int
bufring_init_spare(struct bufring *b, struct ring *r, uint16_t group, uint32_t count,
	uint32_t spare, uint32_t size)
{
	ASSERT(count > 0 && (count & (count - 1)) == 0);
	ASSERT(count + spare <= UINT16_MAX + 1u);
	memset(b, 0, sizeof(*b));
	uint32_t all = count + spare;
	size_t ring_bytes = count * sizeof(struct io_uring_buf);
	void *br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (br == MAP_FAILED)
		return -errno;
	/* Untouched pages cost nothing: spares that are never used are never resident. */
	void *base = mmap(NULL, (size_t)all * size, PROT_READ | PROT_WRITE,
		MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (base == MAP_FAILED) {
		int rc = -errno;
		munmap(br, ring_bytes);
		return rc;
	}
	b->refs = calloc(all, sizeof(*b->refs));
	b->spare_free = calloc(spare > 0 ? spare : 1, sizeof(*b->spare_free));
	if (b->refs == NULL || b->spare_free == NULL) {
		free(b->refs);
		free(b->spare_free);
		munmap(base, (size_t)all * size);
		munmap(br, ring_bytes);
		return -ENOMEM;
	}
	b->br = br;
	b->base = base;
	b->count = count;
	b->size = size;
	b->group = group;
	b->spare_count = spare;
	for (uint32_t i = 0; i < spare; i++)
		b->spare_free[b->spare_free_len++] = (uint16_t)(count + spare - 1 - i);
	struct io_uring_buf_reg reg;
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)br;
	reg.ring_entries = count;
	reg.bgid = group;
	int rc = io_uring_register_buf_ring(&r->uring, &reg, 0);
	if (rc < 0) {
		bufring_fini(b);
		return rc;
	}
	io_uring_buf_ring_init(b->br);
	for (uint32_t bid = 0; bid < count; bid++)
		bufring_add(b, (uint16_t)bid);
	bufring_flush(b);
	return 0;
}

void
bufring_fini(struct bufring *b)
{
	free(b->refs);
	free(b->spare_free);
	if (b->br != NULL)
		munmap(b->br, b->count * sizeof(struct io_uring_buf));
	if (b->base != NULL)
		munmap(b->base, (size_t)(b->count + b->spare_count) * b->size);
	memset(b, 0, sizeof(*b));
}

int32_t
bufring_spare_take(struct bufring *b)
{
	if (b->spare_free_len == 0)
		return -1;
	uint16_t bid = b->spare_free[--b->spare_free_len];
	ASSERT(bid >= b->count);
	ASSERT(b->refs[bid] == 0);
	b->refs[bid] = 1;
	b->held++;
	return bid;
}

void
bufring_taken(struct bufring *b, uint16_t bid)
{
	ASSERT(bid < b->count);
	ASSERT(b->refs[bid] == 0);
	b->refs[bid] = 1;
	b->held++;
}

void
bufring_hold(struct bufring *b, uint16_t bid)
{
	ASSERT(bid < b->count + b->spare_count);
	ASSERT(b->refs[bid] > 0);
	ASSERT(b->refs[bid] < UINT16_MAX);
	b->refs[bid]++;
}

void
bufring_release(struct bufring *b, uint16_t bid)
{
	ASSERT(bid < b->count + b->spare_count);
	ASSERT(b->refs[bid] > 0);
	if (--b->refs[bid] > 0)
		return;
	ASSERT(b->held > 0);
	b->held--;
	if (bid >= b->count) {
		ASSERT(b->spare_free_len < b->spare_count);
		b->spare_free[b->spare_free_len++] = bid;
		return;
	}
	bufring_add(b, bid);
}

int32_t
bufring_which(const struct bufring *b, const void *p)
{
	const uint8_t *q = p;
	if (q < b->base || q >= b->base + (size_t)(b->count + b->spare_count) * b->size)
		return -1;
	return (int32_t)((size_t)(q - b->base) / b->size);
}

void
bufring_flush(struct bufring *b)
{
	if (b->returned == 0)
		return;
	io_uring_buf_ring_advance(b->br, (int)b->returned);
	b->returned = 0;
}
