/* base/tally.c - bounded counters by name; see tally.h. */
#include "base/tally.h"

#include <string.h>

static uint64_t
tally_hash(struct slice name)
{
	uint64_t h = 14695981039346656037ull;   /* FNV-1a */
	for (size_t i = 0; i < name.len; i++)
		h = (h ^ slice_ascii_lower(name.ptr[i])) * 1099511628211ull;
	return h;
}

static uint64_t
tally_total(const struct tally_entry *e)
{
	uint64_t sum = 0;
	for (uint32_t k = 0; k < TALLY_KINDS; k++)
		sum += e->counts[k];
	return sum;
}

/* Where name goes: its entry, a free one, or the one with the smallest total (reset). */
static uint32_t
tally_slot(struct tally *t, struct slice name, uint64_t h)
{
	struct slice kept = slice_sub(name, 0, name.len < TALLY_NAME_MAX ? name.len : TALLY_NAME_MAX);
	for (uint32_t i = 0; i < t->count; i++) {
		if (t->hashes[i] == h && slice_eq_nocase(slice_make(tally_entry_name(&t->entries[i]),
			strlen(tally_entry_name(&t->entries[i]))), kept))
			return i;
	}
	uint32_t i = t->count;
	if (t->count < TALLY_NAMES_MAX) {
		t->count++;
	} else {
		i = 0;
		for (uint32_t j = 1; j < t->count; j++) {
			if (tally_total(&t->entries[j]) < tally_total(&t->entries[i]))
				i = j;
		}
	}
	struct tally_entry *e = &t->entries[i];
	*e = (struct tally_entry){ 0 };
	char *dst = (char *)e->name_words;
	for (size_t k = 0; k < kept.len; k++)
		dst[k] = (char)slice_ascii_lower(kept.ptr[k]);
	t->hashes[i] = h;
	return i;
}

void
tally_add(struct tally *t, struct slice name, uint32_t kind)
{
	ASSERT(kind < TALLY_KINDS);
	uint32_t i = tally_slot(t, name, tally_hash(name));
	t->entries[i].counts[kind]++;
}

uint32_t
tally_top(const struct tally *t, struct tally_entry *out, uint32_t n)
{
	bool taken[TALLY_NAMES_MAX] = { false };
	uint32_t got = 0;
	for (; got < n && got < t->count; got++) {
		uint32_t best = UINT32_MAX;
		for (uint32_t i = 0; i < t->count; i++) {
			if (!taken[i] && (best == UINT32_MAX
				|| tally_total(&t->entries[i]) > tally_total(&t->entries[best])))
				best = i;
		}
		taken[best] = true;
		out[got] = t->entries[best];
	}
	return got;
}
