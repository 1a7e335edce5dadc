/* queue/index.c - open-addressing index of live messages; see index.h. */
#include "queue/index.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "engine/assert.h"

#define INDEX_CAP_INITIAL 1024u
#define INDEX_TOMBSTONE   UINT64_MAX

static uint32_t
index_hash(uint64_t qid)
{
	qid ^= qid >> 33;
	qid *= 0xff51afd7ed558ccdull;
	qid ^= qid >> 33;
	return (uint32_t)qid;
}

int
index_init(struct index *ix)
{
	memset(ix, 0, sizeof(*ix));
	ix->slots = calloc(INDEX_CAP_INITIAL, sizeof(*ix->slots));
	if (ix->slots == NULL)
		return -ENOMEM;
	ix->cap = INDEX_CAP_INITIAL;
	return 0;
}

void
index_fini(struct index *ix)
{
	for (uint32_t i = 0; i < ix->cap; i++)
		free(ix->slots[i].final_bits);
	free(ix->slots);
	free(ix->seg_live);
	memset(ix, 0, sizeof(*ix));
}

static struct index_entry *
index_slot(const struct index *ix, uint64_t qid)
{
	uint32_t mask = ix->cap - 1;
	for (uint32_t i = index_hash(qid) & mask, n = 0; n < ix->cap; i = (i + 1) & mask, n++) {
		struct index_entry *e = &ix->slots[i];
		if (e->qid == qid)
			return e;
		if (e->qid == 0)
			return NULL;
	}
	return NULL;
}

const struct index_entry *
index_find(const struct index *ix, uint64_t qid)
{
	return qid == 0 || qid == INDEX_TOMBSTONE ? NULL : index_slot(ix, qid);
}

static int
index_grow(struct index *ix)
{
	uint32_t cap = ix->live * 4 > ix->cap ? ix->cap * 2 : ix->cap;   /* else only tombstones */
	struct index_entry *slots = calloc(cap, sizeof(*slots));
	if (slots == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < ix->cap; i++) {
		struct index_entry *e = &ix->slots[i];
		if (e->qid == 0 || e->qid == INDEX_TOMBSTONE)
			continue;
		uint32_t j = index_hash(e->qid) & (cap - 1);
		while (slots[j].qid != 0)
			j = (j + 1) & (cap - 1);
		slots[j] = *e;
	}
	free(ix->slots);
	ix->slots = slots;
	ix->cap = cap;
	ix->used = ix->live;
	return 0;
}

static uint32_t *
index_seg_counter(struct index *ix, uint32_t segment)
{
	if (ix->seg_live == NULL)
		ix->seg_base = segment;
	if (segment < ix->seg_base) {   /* recovery may meet segments out of order: shift */
		uint32_t shift = ix->seg_base - segment;
		uint32_t *grown = calloc(ix->seg_cap + shift, sizeof(*grown));
		if (grown == NULL)
			return NULL;
		memcpy(grown + shift, ix->seg_live, ix->seg_cap * sizeof(*grown));
		free(ix->seg_live);
		ix->seg_live = grown;
		ix->seg_cap += shift;
		ix->seg_base = segment;
	}
	uint32_t i = segment - ix->seg_base;
	if (i >= ix->seg_cap) {
		uint32_t cap = ix->seg_cap ? ix->seg_cap : 16;
		while (cap <= i)
			cap *= 2;
		uint32_t *grown = realloc(ix->seg_live, cap * sizeof(*grown));
		if (grown == NULL)
			return NULL;
		memset(grown + ix->seg_cap, 0, (cap - ix->seg_cap) * sizeof(*grown));
		ix->seg_live = grown;
		ix->seg_cap = cap;
	}
	return &ix->seg_live[i];
}

int
index_insert(struct index *ix, uint64_t qid, uint32_t segment, uint64_t offset, uint32_t size,
	uint32_t rcpt_count, uint64_t arrival_ms)
{
	if (qid == 0 || qid == INDEX_TOMBSTONE || rcpt_count == 0 || rcpt_count > INDEX_RCPT_MAX)
		return -EINVAL;
	if (index_slot(ix, qid) != NULL)
		return -EEXIST;
	if ((ix->used + 1) * 10 > ix->cap * 7 && index_grow(ix) != 0)
		return -ENOMEM;
	uint32_t *seg = index_seg_counter(ix, segment);
	if (seg == NULL)
		return -ENOMEM;
	uint64_t *bits = NULL;
	if (rcpt_count > 64) {
		bits = calloc((rcpt_count + 63) / 64, sizeof(*bits));
		if (bits == NULL)
			return -ENOMEM;
	}
	uint32_t mask = ix->cap - 1;
	uint32_t i = index_hash(qid) & mask;
	while (ix->slots[i].qid != 0 && ix->slots[i].qid != INDEX_TOMBSTONE)
		i = (i + 1) & mask;
	if (ix->slots[i].qid == 0)
		ix->used++;
	ix->slots[i] = (struct index_entry){ .qid = qid, .offset = offset, .arrival_ms = arrival_ms,
		.segment = segment, .size = size, .rcpt_count = rcpt_count, .pending = rcpt_count,
		.final_bits = bits };
	ix->live++;
	(*seg)++;
	return 0;
}

static uint64_t *
index_bits_word(struct index_entry *e, uint32_t rcpt)
{
	return e->final_bits != NULL ? &e->final_bits[rcpt / 64] : &e->final_inline;
}

bool
index_mark_final(struct index *ix, uint64_t qid, uint32_t rcpt, enum index_rcpt_state st)
{
	(void)st;   /* both states are final; the record on disk says which */
	struct index_entry *e = qid == 0 || qid == INDEX_TOMBSTONE ? NULL : index_slot(ix, qid);
	if (e == NULL || rcpt >= e->rcpt_count)
		return false;
	uint64_t *w = index_bits_word(e, rcpt);
	uint64_t bit = 1ull << (rcpt % 64);
	if (*w & bit)
		return false;
	*w |= bit;
	ASSERT(e->pending > 0);
	if (--e->pending > 0)
		return false;
	uint32_t *seg = index_seg_counter(ix, e->segment);
	ASSERT(seg != NULL && *seg > 0);   /* the counter exists since the insert */
	(*seg)--;
	free(e->final_bits);
	memset(e, 0, sizeof(*e));
	e->qid = INDEX_TOMBSTONE;
	ix->live--;
	return true;
}

bool
index_rcpt_pending(const struct index *ix, uint64_t qid, uint32_t rcpt)
{
	struct index_entry *e = qid == 0 || qid == INDEX_TOMBSTONE ? NULL : index_slot(ix, qid);
	if (e == NULL || rcpt >= e->rcpt_count)
		return false;
	return (*index_bits_word(e, rcpt) & (1ull << (rcpt % 64))) == 0;
}

uint32_t
index_segment_live(const struct index *ix, uint32_t segment)
{
	if (ix->seg_live == NULL || segment < ix->seg_base || segment - ix->seg_base >= ix->seg_cap)
		return 0;
	return ix->seg_live[segment - ix->seg_base];
}

void
index_foreach(const struct index *ix, void (*fn)(void *ctx, const struct index_entry *e),
	void *ctx)
{
	for (uint32_t i = 0; i < ix->cap; i++) {
		const struct index_entry *e = &ix->slots[i];
		if (e->qid != 0 && e->qid != INDEX_TOMBSTONE)
			fn(ctx, e);
	}
}
