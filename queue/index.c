/* queue/index.c - open-addressing index of live messages; see index.h. */
#include "queue/index.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"

#define INDEX_CAP_INITIAL   1024u
#define INDEX_EMPTY         0ull
#define INDEX_DELETED       UINT64_MAX
#define INDEX_LOAD_NUM      7u      /* grow past 7/10 of the slots in use (live or deleted) */
#define INDEX_LOAD_DEN      10u
#define INDEX_SEG_CAP_FIRST 16u

_Static_assert((INDEX_CAP_INITIAL & (INDEX_CAP_INITIAL - 1)) == 0, "a power of two");
_Static_assert((INDEX_CAP_MAX & (INDEX_CAP_MAX - 1)) == 0, "a power of two");

static bool
index_qid_ok(uint64_t qid)
{
	return qid != INDEX_EMPTY && qid != INDEX_DELETED;
}

/* Ids of one shard differ in their low bits mostly: mix them all into the slot number. */
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

static struct index_rcpt *
index_rcpts(struct index_entry *e)
{
	return e->rcpt_count == 1 ? &e->rcpts.one : e->rcpts.many;
}

static void
index_entry_free(struct index_entry *e)
{
	if (e->rcpt_count > 1)
		free(e->rcpts.many);
}

void
index_fini(struct index *ix)
{
	for (uint32_t i = 0; i < ix->cap; i++) {
		if (index_qid_ok(ix->slots[i].qid))
			index_entry_free(&ix->slots[i]);
	}
	free(ix->slots);
	free(ix->seg_live);
	memset(ix, 0, sizeof(*ix));
}

/* The slot holding qid, or NULL. The probe ends at an empty slot; one always exists, since the
 * load stays below INDEX_LOAD_NUM / INDEX_LOAD_DEN. */
static struct index_entry *
index_slot(const struct index *ix, uint64_t qid)
{
	if (!index_qid_ok(qid))
		return NULL;
	uint32_t mask = ix->cap - 1;
	for (uint32_t i = index_hash(qid) & mask, n = 0; n < ix->cap; i = (i + 1) & mask, n++) {
		struct index_entry *e = &ix->slots[i];
		if (e->qid == qid)
			return e;
		if (e->qid == INDEX_EMPTY)
			return NULL;
	}
	return NULL;
}

const struct index_entry *
index_find(const struct index *ix, uint64_t qid)
{
	return index_slot(ix, qid);
}

/* Rebuilds the table without deleted slots, large enough for `extra` more messages: twice as
 * large (or more) if a quarter of it would be live, else the same size. Returns 0 or -ENOMEM
 * (unchanged). */
static int
index_rehash(struct index *ix, uint32_t extra)
{
	uint64_t want = (uint64_t)ix->live + extra;
	uint64_t cap = ix->cap;
	if (want * 4u > cap)
		cap *= 2;
	while (want * INDEX_LOAD_DEN > cap * INDEX_LOAD_NUM)
		cap *= 2;
	if (cap > INDEX_CAP_MAX)
		return -ENOMEM;
	struct index_entry *slots = calloc(cap, sizeof(*slots));
	if (slots == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < ix->cap; i++) {
		const struct index_entry *e = &ix->slots[i];
		if (!index_qid_ok(e->qid))
			continue;
		uint32_t j = index_hash(e->qid) & (cap - 1);
		while (slots[j].qid != INDEX_EMPTY)
			j = (j + 1) & (cap - 1);
		slots[j] = *e;
	}
	free(ix->slots);
	ix->slots = slots;
	ix->cap = (uint32_t)cap;
	ix->used = ix->live;
	return 0;
}

static bool
index_seg_has(const struct index *ix, uint32_t segment)
{
	return segment >= ix->seg_base && segment - ix->seg_base < ix->seg_cap;
}

/* Drops leading zero counters: those segments never gain messages again (new records go to the
 * newest segment), and a later count for an older one shifts the array back. */
static void
index_seg_trim(struct index *ix, uint32_t segment)
{
	uint32_t zeros = 0;
	while (zeros < ix->seg_cap && ix->seg_live[zeros] == 0)
		zeros++;
	if (zeros == ix->seg_cap) {
		ix->seg_base = segment;   /* nothing is counted: start the window at segment */
		return;
	}
	memmove(ix->seg_live, ix->seg_live + zeros, (ix->seg_cap - zeros) * sizeof(uint32_t));
	memset(ix->seg_live + ix->seg_cap - zeros, 0, zeros * sizeof(uint32_t));
	ix->seg_base += zeros;
}

/* Makes sure segment has a counter, keeping the others. Returns 0 or -ENOMEM (counts kept). */
static int
index_seg_reserve(struct index *ix, uint32_t segment)
{
	if (index_seg_has(ix, segment))
		return 0;
	if (ix->seg_cap > 0)
		index_seg_trim(ix, segment);
	if (index_seg_has(ix, segment))
		return 0;
	uint64_t old_end = (uint64_t)ix->seg_base + ix->seg_cap;
	uint64_t lo = ix->seg_cap == 0 || segment < ix->seg_base ? segment : ix->seg_base;
	uint64_t hi = ix->seg_cap == 0 || segment >= old_end ? (uint64_t)segment + 1 : old_end;
	uint64_t cap = ix->seg_cap > 0 ? ix->seg_cap : INDEX_SEG_CAP_FIRST;
	while (cap < hi - lo)
		cap *= 2;
	if (cap > UINT32_MAX)
		return -ENOMEM;
	uint32_t *grown = calloc(cap, sizeof(*grown));
	if (grown == NULL)
		return -ENOMEM;
	if (ix->seg_cap > 0)
		memcpy(grown + (ix->seg_base - lo), ix->seg_live, ix->seg_cap * sizeof(*grown));
	free(ix->seg_live);
	ix->seg_live = grown;
	ix->seg_cap = (uint32_t)cap;
	ix->seg_base = (uint32_t)lo;
	return 0;
}

static uint32_t *
index_seg_counter(struct index *ix, uint32_t segment)
{
	ASSERT(index_seg_has(ix, segment));
	return &ix->seg_live[segment - ix->seg_base];
}

/* A free slot for qid (not in the table): the first empty or deleted one on its probe. */
static struct index_entry *
index_free_slot(struct index *ix, uint64_t qid)
{
	uint32_t mask = ix->cap - 1;
	uint32_t i = index_hash(qid) & mask;
	while (index_qid_ok(ix->slots[i].qid))
		i = (i + 1) & mask;
	return &ix->slots[i];
}

static bool
index_room(const struct index *ix, uint32_t n)
{
	return (uint64_t)(ix->used + n) * INDEX_LOAD_DEN <= (uint64_t)ix->cap * INDEX_LOAD_NUM;
}

int
index_reserve(struct index *ix, uint32_t n, uint32_t segment)
{
	if (!index_room(ix, n) && index_rehash(ix, n) != 0)
		return -ENOMEM;
	if (index_seg_reserve(ix, segment) != 0 || index_seg_reserve(ix, segment + 1) != 0)
		return -ENOMEM;
	return 0;
}

int
index_reserve_segment(struct index *ix, uint32_t segment)
{
	return index_seg_reserve(ix, segment);
}

int
index_rcpts_alloc(uint32_t rcpt_count, struct index_rcpt **out)
{
	*out = NULL;
	if (rcpt_count <= 1)
		return 0;
	*out = calloc(rcpt_count, sizeof(**out));
	return *out == NULL ? -ENOMEM : 0;
}

void
index_rcpts_free(struct index_rcpt *rcpts)
{
	free(rcpts);
}

int
index_insert_prepared(struct index *ix, uint64_t qid, uint32_t segment, uint64_t offset,
	uint32_t size, uint32_t rcpt_count, uint64_t arrival_ms, struct index_rcpt *rcpts,
	uint32_t span)
{
	if (!index_qid_ok(qid) || rcpt_count == 0 || rcpt_count > INDEX_RCPT_MAX
		|| (rcpt_count > 1) != (rcpts != NULL) || offset > UINT32_MAX || span > segment)
		return -EINVAL;
	if (index_slot(ix, qid) != NULL)
		return -EEXIST;
	if (index_reserve(ix, 1, segment) != 0 || index_seg_reserve(ix, segment - span) != 0)
		return -ENOMEM;   /* not after a reservation, in the same segments */
	struct index_entry *e = index_free_slot(ix, qid);
	if (e->qid == INDEX_EMPTY)
		ix->used++;
	*e = (struct index_entry){ .qid = qid, .offset = (uint32_t)offset, .span = span,
		.arrival_ms = arrival_ms, .due_ms = 0, .segment = segment, .size = size,
		.rcpt_count = (uint16_t)rcpt_count, .unfinished = (uint16_t)rcpt_count };
	if (rcpts != NULL)
		e->rcpts.many = rcpts;
	ix->live++;
	(*index_seg_counter(ix, segment - span))++;
	return 0;
}

int
index_insert(struct index *ix, uint64_t qid, uint32_t segment, uint64_t offset, uint32_t size,
	uint32_t rcpt_count, uint64_t arrival_ms)
{
	if (!index_qid_ok(qid) || rcpt_count == 0 || rcpt_count > INDEX_RCPT_MAX
		|| offset > UINT32_MAX)
		return -EINVAL;
	if (index_slot(ix, qid) != NULL)
		return -EEXIST;
	struct index_rcpt *many;
	if (index_reserve(ix, 1, segment) != 0 || index_rcpts_alloc(rcpt_count, &many) != 0)
		return -ENOMEM;
	int rc = index_insert_prepared(ix, qid, segment, offset, size, rcpt_count, arrival_ms,
		many, 0);
	if (rc != 0)
		index_rcpts_free(many);
	return rc;
}

/* Takes e out: frees its recipients, drops its segment's count, leaves a deleted slot. */
static void
index_drop(struct index *ix, struct index_entry *e)
{
	uint32_t *seg = index_seg_counter(ix, e->segment - e->span);
	ASSERT(*seg > 0);
	(*seg)--;
	index_entry_free(e);
	memset(e, 0, sizeof(*e));
	e->qid = INDEX_DELETED;
	ASSERT(ix->live > 0);
	ix->live--;
}

int
index_relocate(struct index *ix, uint64_t qid, uint32_t segment, uint64_t offset,
	uint32_t size, uint16_t env_off)
{
	struct index_entry *e = index_slot(ix, qid);
	if (e == NULL)
		return -ENOENT;
	if (offset > UINT32_MAX)
		return -EINVAL;
	if (index_seg_reserve(ix, segment) != 0)
		return -ENOMEM;
	uint32_t *from = index_seg_counter(ix, e->segment - e->span);
	ASSERT(*from > 0);
	(*from)--;
	(*index_seg_counter(ix, segment))++;
	e->segment = segment;
	e->span = 0;   /* a copy holds its whole body */
	e->kind = env_off > 0 ? INDEX_KIND_COPY : INDEX_KIND_MESSAGE;
	e->offset = (uint32_t)offset;
	e->size = size;
	e->env_off = env_off;
	return 0;
}

/* Recomputes when the message is next due from its recipients' states (those in flight do not
 * count: their attempt decides). */
static void
index_update_due(struct index_entry *e)
{
	const struct index_rcpt *r = index_rcpts(e);
	uint64_t due = UINT64_MAX;
	for (uint32_t i = 0; i < e->rcpt_count && due > 0; i++) {
		if (r[i].state == INDEX_RCPT_PENDING)
			due = 0;
		else if (r[i].state == INDEX_RCPT_DEFERRED && r[i].next_attempt_ms < due)
			due = r[i].next_attempt_ms;
	}
	e->due_ms = due;
}

/* r leaves INFLIGHT (to whatever the caller sets next). */
static void
index_land(struct index_entry *e, struct index_rcpt *r)
{
	if (r->state != INDEX_RCPT_INFLIGHT)
		return;
	ASSERT(e->inflight > 0);
	e->inflight--;
}

uint32_t
index_take_due(struct index *ix, uint64_t qid, uint64_t now_ms)
{
	struct index_entry *e = index_slot(ix, qid);
	if (e == NULL || e->held)
		return 0;
	struct index_rcpt *r = index_rcpts(e);
	uint32_t taken = 0;
	for (uint32_t i = 0; i < e->rcpt_count; i++) {
		if (r[i].state == INDEX_RCPT_PENDING
			|| (r[i].state == INDEX_RCPT_DEFERRED && r[i].next_attempt_ms <= now_ms)) {
			r[i].state = INDEX_RCPT_INFLIGHT;
			taken++;
		}
	}
	e->inflight = (uint16_t)(e->inflight + taken);
	index_update_due(e);
	return taken;
}

void
index_release(struct index *ix, uint64_t qid, uint32_t rcpt)
{
	struct index_entry *e = index_slot(ix, qid);
	if (e == NULL || rcpt >= e->rcpt_count)
		return;
	struct index_rcpt *r = &index_rcpts(e)[rcpt];
	if (r->state != INDEX_RCPT_INFLIGHT)
		return;
	index_land(e, r);
	r->state = INDEX_RCPT_PENDING;
	index_update_due(e);
}

static bool
index_state_final(uint8_t st)
{
	return st == INDEX_RCPT_DELIVERED || st == INDEX_RCPT_BOUNCED;
}

bool
index_mark_final(struct index *ix, uint64_t qid, uint32_t rcpt, enum index_rcpt_state st)
{
	ASSERT(index_state_final(st));
	struct index_entry *e = index_slot(ix, qid);
	if (e == NULL || rcpt >= e->rcpt_count)
		return false;
	struct index_rcpt *r = &index_rcpts(e)[rcpt];
	if (index_state_final(r->state))
		return false;
	index_land(e, r);
	r->state = (uint8_t)st;
	r->next_attempt_ms = 0;
	ASSERT(e->unfinished > 0);
	if (--e->unfinished > 0) {
		index_update_due(e);
		return false;
	}
	index_drop(ix, e);
	return true;
}

int
index_mark_deferred(struct index *ix, uint64_t qid, uint32_t rcpt, uint64_t next_attempt_ms)
{
	struct index_entry *e = index_slot(ix, qid);
	if (e == NULL || rcpt >= e->rcpt_count)
		return -ENOENT;
	struct index_rcpt *r = &index_rcpts(e)[rcpt];
	if (index_state_final(r->state))
		return -ENOENT;
	index_land(e, r);
	r->state = INDEX_RCPT_DEFERRED;
	r->next_attempt_ms = next_attempt_ms;
	index_update_due(e);
	return 0;
}

bool
index_restore(struct index *ix, uint64_t qid, uint32_t rcpt, enum index_rcpt_state st,
	uint64_t next_ms)
{
	if (index_state_final(st))
		return index_mark_final(ix, qid, rcpt, st);
	if (st == INDEX_RCPT_DEFERRED) {
		(void)index_mark_deferred(ix, qid, rcpt, next_ms);
		return false;
	}
	struct index_entry *e = index_slot(ix, qid);
	if (e == NULL || rcpt >= e->rcpt_count)
		return false;
	struct index_rcpt *r = &index_rcpts(e)[rcpt];
	if (r->state == INDEX_RCPT_DEFERRED) {
		r->state = INDEX_RCPT_PENDING;
		r->next_attempt_ms = 0;
		index_update_due(e);
	}
	return false;
}

int
index_set_held(struct index *ix, uint64_t qid, bool held)
{
	struct index_entry *e = index_slot(ix, qid);
	if (e == NULL)
		return -ENOENT;
	e->held = held;
	return 0;
}

int
index_set_bounce(struct index *ix, uint64_t qid)
{
	struct index_entry *e = index_slot(ix, qid);
	if (e == NULL)
		return -ENOENT;
	e->bounce = 1;
	e->held = 0;
	struct index_rcpt *r = index_rcpts(e);
	for (uint32_t i = 0; i < e->rcpt_count; i++) {
		if (r[i].state == INDEX_RCPT_DEFERRED) {
			r[i].state = INDEX_RCPT_PENDING;
			r[i].next_attempt_ms = 0;
		}
	}
	index_update_due(e);
	return 0;
}

uint32_t
index_flush(struct index *ix, uint64_t qid, uint64_t now_ms)
{
	struct index_entry *e = index_slot(ix, qid);
	if (e == NULL)
		return 0;
	struct index_rcpt *r = index_rcpts(e);
	uint32_t n = 0;
	for (uint32_t i = 0; i < e->rcpt_count; i++) {
		if (r[i].state == INDEX_RCPT_DEFERRED && r[i].next_attempt_ms > now_ms) {
			r[i].next_attempt_ms = now_ms;
			n++;
		}
	}
	index_update_due(e);
	return n;
}

void
index_note(struct index *ix, uint64_t qid, uint32_t rcpt, uint16_t code, const uint8_t dsn[3])
{
	struct index_entry *e = index_slot(ix, qid);
	if (e == NULL || rcpt >= e->rcpt_count)
		return;
	struct index_rcpt *r = &index_rcpts(e)[rcpt];
	r->last_code = code;
	memcpy(r->last_dsn, dsn, sizeof(r->last_dsn));
}

const struct index_rcpt *
index_entry_rcpt_info(const struct index_entry *e, uint32_t rcpt)
{
	ASSERT(rcpt < e->rcpt_count);
	return e->rcpt_count == 1 ? &e->rcpts.one : &e->rcpts.many[rcpt];
}

bool
index_remove(struct index *ix, uint64_t qid)
{
	struct index_entry *e = index_slot(ix, qid);
	if (e == NULL)
		return false;
	index_drop(ix, e);
	return true;
}

enum index_rcpt_state
index_entry_rcpt(const struct index_entry *e, uint32_t rcpt, uint64_t *next_ms)
{
	const struct index_rcpt *r = index_entry_rcpt_info(e, rcpt);
	if (next_ms != NULL)
		*next_ms = r->next_attempt_ms;
	return (enum index_rcpt_state)r->state;
}

bool
index_rcpt_pending(const struct index *ix, uint64_t qid, uint32_t rcpt)
{
	const struct index_entry *e = index_slot(ix, qid);
	if (e == NULL || rcpt >= e->rcpt_count)
		return false;
	return !index_state_final(index_entry_rcpt(e, rcpt, NULL));
}

void
index_hold_segment(struct index *ix, uint32_t segment)
{
	(*index_seg_counter(ix, segment))++;
}

void
index_unhold_segment(struct index *ix, uint32_t segment)
{
	uint32_t *c = index_seg_counter(ix, segment);
	ASSERT(*c > 0);
	(*c)--;
}

void
index_set_kind(struct index *ix, uint64_t qid, enum index_kind kind)
{
	struct index_entry *e = index_slot(ix, qid);
	if (e != NULL)
		e->kind = kind;
}

int
index_set_span(struct index *ix, uint64_t qid, uint32_t span)
{
	struct index_entry *e = index_slot(ix, qid);
	if (e == NULL)
		return -ENOENT;
	if (span > e->segment)
		return -EINVAL;
	if (index_seg_reserve(ix, e->segment - span) != 0)
		return -ENOMEM;
	uint32_t *from = index_seg_counter(ix, e->segment - e->span);
	ASSERT(*from > 0);
	(*from)--;
	e->span = span;
	(*index_seg_counter(ix, e->segment - span))++;
	return 0;
}

uint32_t
index_segment_live(const struct index *ix, uint32_t segment)
{
	if (!index_seg_has(ix, segment))
		return 0;
	return ix->seg_live[segment - ix->seg_base];
}

const struct index_entry *
index_next(const struct index *ix, uint32_t *cursor)
{
	for (; *cursor < ix->cap; (*cursor)++) {
		const struct index_entry *e = &ix->slots[*cursor];
		if (index_qid_ok(e->qid)) {
			(*cursor)++;
			return e;
		}
	}
	return NULL;
}

void
index_foreach(const struct index *ix, void (*fn)(void *ctx, const struct index_entry *e),
	void *ctx)
{
	uint32_t cursor = 0;
	const struct index_entry *e;
	while ((e = index_next(ix, &cursor)) != NULL)
		fn(ctx, e);
}
