/* engine/bufring.c - provided receive buffers; see bufring.h. */
#include "engine/bufring.h"

#include <errno.h>
#include <string.h>
#include <sys/mman.h>

int
bufring_init(struct bufring *b, struct ring *r, uint16_t group, uint32_t count, uint32_t size)
{
	ASSERT(count > 0 && (count & (count - 1)) == 0);
	ASSERT(count <= UINT16_MAX + 1u);
	memset(b, 0, sizeof(*b));
	size_t ring_bytes = count * sizeof(struct io_uring_buf);
	void *br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (br == MAP_FAILED)
		return -errno;
	void *base = mmap(NULL, (size_t)count * size, PROT_READ | PROT_WRITE,
		MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (base == MAP_FAILED) {
		int rc = -errno;
		munmap(br, ring_bytes);
		return rc;
	}
	b->br = br;
	b->base = base;
	b->count = count;
	b->size = size;
	b->group = group;
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
		bufring_return(b, (uint16_t)bid);
	bufring_flush(b);
	return 0;
}

void
bufring_fini(struct bufring *b)
{
	if (b->br != NULL)
		munmap(b->br, b->count * sizeof(struct io_uring_buf));
	if (b->base != NULL)
		munmap(b->base, (size_t)b->count * b->size);
	memset(b, 0, sizeof(*b));
}

void
bufring_return(struct bufring *b, uint16_t bid)
{
	ASSERT(bid < b->count);
	io_uring_buf_ring_add(b->br, bufring_buf(b, bid), b->size, bid,
		io_uring_buf_ring_mask(b->count), (int)b->returned++);
}

void
bufring_flush(struct bufring *b)
{
	if (b->returned == 0)
		return;
	io_uring_buf_ring_advance(b->br, (int)b->returned);
	b->returned = 0;
}
