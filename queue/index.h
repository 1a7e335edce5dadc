/* queue/index.h - the in-memory index of one shard's live messages.
 *
 * Queue id -> where the record is (segment, offset, size) and which recipients are still
 * pending. Built by recovery at start-up, extended when a message is committed, shrunk when its
 * last recipient becomes final. Also counts live messages per segment, so the writer knows when
 * a segment may be deleted. Open addressing, grown by doubling; single-threaded (its shard's). */
#ifndef RINGMTA_QUEUE_INDEX_H
#define RINGMTA_QUEUE_INDEX_H
#include <stdbool.h>
#include <stdint.h>

#define INDEX_RCPT_MAX 1000u   /* SMTP_RCPT_COUNT_MAX */

enum index_rcpt_state { INDEX_RCPT_DELIVERED = 1, INDEX_RCPT_BOUNCED = 2 };

struct index_entry {
	uint64_t qid;              /* 0: empty slot */
	uint64_t offset;
	uint64_t arrival_ms;
	uint32_t segment;
	uint32_t size;
	uint32_t rcpt_count;
	uint32_t pending;          /* recipients not final */
	uint64_t final_inline;     /* final-recipient bits for up to 64 recipients */
	uint64_t *final_bits;      /* more than 64: allocated */
};

struct index {
	struct index_entry *slots;
	uint32_t cap;              /* power of two */
	uint32_t used;             /* live entries + tombstones */
	uint32_t live;
	uint32_t *seg_live;        /* live messages of segment seg_base + i */
	uint32_t seg_base;
	uint32_t seg_cap;
};

int index_init(struct index *ix);
void index_fini(struct index *ix);

/* Adds a message with every recipient pending. Returns 0, -EEXIST or -ENOMEM. */
int index_insert(struct index *ix, uint64_t qid, uint32_t segment, uint64_t offset, uint32_t size,
	uint32_t rcpt_count, uint64_t arrival_ms);

const struct index_entry *index_find(const struct index *ix, uint64_t qid);

/* Marks recipient rcpt final. Returns true when that made the whole message final: it is then
 * removed and its segment's live count drops. Unknown ids and repeated marks are ignored. */
bool index_mark_final(struct index *ix, uint64_t qid, uint32_t rcpt, enum index_rcpt_state st);

bool index_rcpt_pending(const struct index *ix, uint64_t qid, uint32_t rcpt);

uint32_t index_segment_live(const struct index *ix, uint32_t segment);

/* Calls fn for every live message (each has at least one pending recipient). fn must not
 * change the index. */
void index_foreach(const struct index *ix, void (*fn)(void *ctx, const struct index_entry *e),
	void *ctx);
#endif
