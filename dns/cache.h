/* dns/cache.h - a shard's cache of DNS answers: TTLs, a bound on entries with LRU eviction,
 * negative caching.
 *
 * One cache per resolver, so per shard; only its thread touches it (no locks). An entry is the
 * useful part of one answer for (name, type): its records (DATA), or the fact that the name has
 * no record of the type (NODATA) or does not exist (NXDOMAIN), RFC 2308 5. Entries live for the
 * answer's TTL (dns_packet_parse took the minimum over the CNAME chain and the records, or the
 * SOA's negative TTL) and are dropped when they expire or when the least recently used one must
 * make room for a new one (at most max_entries). Answers of TTL 0 and failures (SERVFAIL,
 * timeouts) are not kept.
 *
 * I/O-free: the time is an argument. Names hash with SipHash-1-3 under a key the caller draws at
 * random, so that a sender choosing domain names cannot make every entry collide. Each entry is
 * one allocation made when an answer arrives (which is already the slow path: a network round
 * trip); a hit allocates nothing. */
#ifndef RINGMTA_DNS_CACHE_H
#define RINGMTA_DNS_CACHE_H
#include <stdbool.h>
#include <stdint.h>

#include "dns/name.h"
#include "dns/packet.h"

#define DNS_CACHE_ENTRIES_LIMIT 1000000u   /* the largest dns_cache_max accepted */
#define DNS_CACHE_KEY_LEN 16u

struct dns_cache;

/* What a hit gives; valid until the next dns_cache_put or dns_cache_get on the same cache. */
struct dns_cache_entry {
	enum dns_answer_kind kind;   /* DNS_ANSWER_DATA, _NODATA or _NXDOMAIN */
	bool ad;
	uint16_t qtype;
	uint32_t cname_count;        /* the name was an alias (the records are its target's) */
	uint32_t rr_count;
	uint64_t expires_ms;
	const struct dns_rr *rrs;
	const uint8_t *data;
	/* private: use the functions */
	struct dns_name name;
	uint64_t hash;
	struct dns_cache_entry *hash_next;
	struct dns_cache_entry *lru_prev;   /* towards the most recently used */
	struct dns_cache_entry *lru_next;
};

struct dns_cache_stats {
	uint64_t hits;
	uint64_t misses;
	uint64_t expired;
	uint64_t evicted;
	uint32_t entries;
};

/* A cache of at most max_entries (0: nothing is ever kept; at most DNS_CACHE_ENTRIES_LIMIT).
 * Returns 0 or -ENOMEM. */
int dns_cache_new(uint32_t max_entries, const uint8_t key[DNS_CACHE_KEY_LEN],
	struct dns_cache **out) MUST_USE;
void dns_cache_free(struct dns_cache *c);

/* The live entry for (name, qtype) at now_ms, made the most recently used; NULL if there is none
 * (an expired one is dropped). */
const struct dns_cache_entry *dns_cache_get(struct dns_cache *c, const struct dns_name *name,
	uint16_t qtype, uint64_t now_ms);

/* Keeps answer a for (name, qtype) until now_ms + a->ttl seconds, replacing an older entry for
 * the same key and evicting the least recently used entry when full. Only DATA, NODATA and
 * NXDOMAIN answers with a TTL are kept (and DATA only with all its records); others are ignored.
 * Returns 0 (kept or ignored) or -ENOMEM (not kept). */
int dns_cache_put(struct dns_cache *c, const struct dns_name *name, uint16_t qtype,
	const struct dns_answer *a, uint64_t now_ms) MUST_USE;

/* The same with the name's hash already made by dns_cache_name_hash (a caller asking for
 * several types of one name hashes it once). */
uint64_t dns_cache_name_hash(const struct dns_cache *c, const struct dns_name *name);
const struct dns_cache_entry *dns_cache_get_hashed(struct dns_cache *c,
	const struct dns_name *name, uint64_t name_hash, uint16_t qtype, uint64_t now_ms);
int dns_cache_put_hashed(struct dns_cache *c, const struct dns_name *name, uint64_t name_hash,
	uint16_t qtype, const struct dns_answer *a, uint64_t now_ms) MUST_USE;

void dns_cache_get_stats(const struct dns_cache *c, struct dns_cache_stats *out);
#endif
