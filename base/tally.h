/* base/tally.h - counters by name for the busiest names only: a bounded table.
 *
 * A module counts events by a name it sees (the queue manager: delivery outcomes by recipient
 * domain) without letting the number of names grow with its input: the table holds at most
 * TALLY_NAMES_MAX names. A name not in a full table takes the place of the one with the smallest
 * total, whose counters start again from zero if it comes back (for a Prometheus counter, a
 * reset): busy names stay, rare ones come and go. Names are compared case-insensitively (ASCII)
 * and kept cut at TALLY_NAME_MAX octets (the comparison uses the whole name). Owned by one shard;
 * no allocation; lookups are a scan of the table (TALLY_NAMES_MAX entries). */
#ifndef RINGMTA_BASE_TALLY_H
#define RINGMTA_BASE_TALLY_H
#include <stdint.h>

#include "base/slice.h"

#define TALLY_NAMES_MAX 64u
#define TALLY_KINDS      4u     /* counters per name */
#define TALLY_NAME_MAX  95u     /* octets kept of a name; longer ones are cut */

/* One name's counters. The name is kept in words so that the entry copies as words
 * (engine/metrics publishes entries that way); read it with tally_entry_name. */
struct tally_entry {
	uint64_t name_words[(TALLY_NAME_MAX + 1) / 8];   /* NUL-terminated */
	uint64_t counts[TALLY_KINDS];
};

/* private: use the functions */
struct tally {
	struct tally_entry entries[TALLY_NAMES_MAX];
	uint64_t hashes[TALLY_NAMES_MAX];
	uint32_t count;
};

/* Counts one event of kind (< TALLY_KINDS) for name. */
void tally_add(struct tally *t, struct slice name, uint32_t kind);

/* The n names with the largest totals, largest first, copied into out. Returns how many. */
uint32_t tally_top(const struct tally *t, struct tally_entry *out, uint32_t n);

static inline const char *
tally_entry_name(const struct tally_entry *e)
{
	return (const char *)e->name_words;
}
#endif
