/* engine/rcpt_dedup.c - the duplicate filter of a message's recipients; see rcpt_dedup.h. */
#include "engine/rcpt_dedup.h"

#include <string.h>

#define RCPT_DEDUP_FNV_OFFSET 2166136261u   /* FNV-1a, 32 bits */
#define RCPT_DEDUP_FNV_PRIME    16777619u

static uint32_t
rcpt_dedup_hash_bytes(uint32_t h, struct slice s, bool fold)
{
	for (size_t i = 0; i < s.len; i++) {
		h ^= fold ? slice_ascii_lower(s.ptr[i]) : s.ptr[i];
		h *= RCPT_DEDUP_FNV_PRIME;
	}
	return h;
}

/* Equal recipients hash alike: the local part folded when the domain is local, the domain
 * always folded and without its final dot (as policy_domain_is_local sees it). */
static uint32_t
rcpt_dedup_hash(const struct record_rcpt *r, bool local)
{
	uint32_t h = rcpt_dedup_hash_bytes(RCPT_DEDUP_FNV_OFFSET, r->local_part, local);
	h = (h ^ (uint32_t)'@') * RCPT_DEDUP_FNV_PRIME;
	return rcpt_dedup_hash_bytes(h, slice_strip_final_dot(r->domain), true);
}

/* a and b have equal domains if they are the same, so `local` (a's) holds for both. */
static bool
rcpt_dedup_same(const struct record_rcpt *a, const struct record_rcpt *b, bool local)
{
	if (!slice_eq_nocase(slice_strip_final_dot(a->domain), slice_strip_final_dot(b->domain)))
		return false;
	return local ? slice_eq_nocase(a->local_part, b->local_part)
		: slice_eq(a->local_part, b->local_part);
}

/* Empties the set for a new message: a stamp of an older call no longer counts. */
static void
rcpt_dedup_next_gen(struct rcpt_dedup *set)
{
	set->gen++;
	if (set->gen == 0) {   /* after 2^32 messages: clear once, so no old stamp comes back */
		memset(set->stamp, 0, sizeof(set->stamp));
		set->gen = 1;
	}
}

/* Adds r, which will sit at position `at` of rcpts, unless an equal recipient is in the set
 * already. Returns whether r was added. */
static bool
rcpt_dedup_add(struct rcpt_dedup *set, const struct record_rcpt *rcpts, uint32_t at,
	const struct record_rcpt *r, bool local)
{
	uint32_t mask = RCPT_DEDUP_SLOTS - 1u;
	uint32_t slot = rcpt_dedup_hash(r, local) & mask;
	/* Never more than half full: an empty slot comes within RCPT_DEDUP_SLOTS probes. */
	for (uint32_t probe = 0; probe < RCPT_DEDUP_SLOTS; probe++) {
		if (set->stamp[slot] != set->gen) {
			set->stamp[slot] = set->gen;
			set->index[slot] = (uint16_t)at;
			return true;
		}
		if (rcpt_dedup_same(&rcpts[set->index[slot]], r, local))
			return false;
		slot = (slot + 1u) & mask;
	}
	ASSERT(!"rcpt_dedup: the set is full");
	return false;
}

void
rcpt_dedup_init(struct rcpt_dedup *set)
{
	memset(set, 0, sizeof(*set));
}

uint32_t
rcpt_dedup_apply(struct rcpt_dedup *set, const struct policy *policy,
	struct record_rcpt *rcpts, uint32_t count)
{
	ASSERT(count <= SMTP_RCPT_COUNT_MAX);
	rcpt_dedup_next_gen(set);
	uint32_t kept = 0;
	for (uint32_t i = 0; i < count; i++) {
		const struct record_rcpt *r = &rcpts[i];
		bool local = r->domain.len == 0 || policy_domain_is_local(policy, r->domain);
		if (!rcpt_dedup_add(set, rcpts, kept, r, local))
			continue;   /* a repeat: the first occurrence keeps its DSN parameters */
		rcpts[kept++] = *r;   /* kept <= i: moves down, never over one still to look at */
	}
	if (count > 0)
		ASSERT(kept > 0);
	return kept;
}
