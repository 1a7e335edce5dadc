/* dns/cache.c - the shard's DNS cache: a chained hash table and an LRU list; see cache.h. */
#include "dns/cache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "dns/hash.h"

_Static_assert(DNS_CACHE_KEY_LEN == DNS_HASH_KEY_LEN, "one key size");

struct dns_cache {
	uint32_t max_entries;
	uint32_t bucket_mask;               /* buckets: a power of two >= max_entries */
	struct dns_cache_entry **buckets;
	struct dns_cache_entry *lru_head;   /* most recently used */
	struct dns_cache_entry *lru_tail;
	struct dns_cache_stats stats;
	uint8_t key[DNS_CACHE_KEY_LEN];
};

int
dns_cache_new(uint32_t max_entries, const uint8_t key[DNS_CACHE_KEY_LEN], struct dns_cache **out)
{
	ASSERT(max_entries <= DNS_CACHE_ENTRIES_LIMIT);
	struct dns_cache *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	uint32_t buckets = 1;
	while (buckets < max_entries)
		buckets *= 2;
	c->buckets = calloc(buckets, sizeof(*c->buckets));
	if (c->buckets == NULL) {
		free(c);
		return -ENOMEM;
	}
	c->max_entries = max_entries;
	c->bucket_mask = buckets - 1;
	memcpy(c->key, key, DNS_CACHE_KEY_LEN);
	*out = c;
	return 0;
}

void
dns_cache_free(struct dns_cache *c)
{
	if (c == NULL)
		return;
	struct dns_cache_entry *e = c->lru_head;
	while (e != NULL) {
		struct dns_cache_entry *next = e->lru_next;
		free(e);
		e = next;
	}
	free(c->buckets);
	free(c);
}

static void
dns_cache_lru_unlink(struct dns_cache *c, struct dns_cache_entry *e)
{
	if (e->lru_prev != NULL)
		e->lru_prev->lru_next = e->lru_next;
	else
		c->lru_head = e->lru_next;
	if (e->lru_next != NULL)
		e->lru_next->lru_prev = e->lru_prev;
	else
		c->lru_tail = e->lru_prev;
	e->lru_prev = NULL;
	e->lru_next = NULL;
}

static void
dns_cache_lru_push(struct dns_cache *c, struct dns_cache_entry *e)
{
	e->lru_prev = NULL;
	e->lru_next = c->lru_head;
	if (c->lru_head != NULL)
		c->lru_head->lru_prev = e;
	c->lru_head = e;
	if (c->lru_tail == NULL)
		c->lru_tail = e;
}

/* The link that points at the entry for the key, or at the NULL ending its bucket's chain. */
static struct dns_cache_entry **
dns_cache_find(struct dns_cache *c, uint64_t hash, const struct dns_name *name, uint16_t qtype)
{
	struct dns_cache_entry **link = &c->buckets[hash & c->bucket_mask];
	while (*link != NULL) {
		struct dns_cache_entry *e = *link;
		if (e->hash == hash && e->qtype == qtype && dns_name_eq(&e->name, name))
			return link;
		link = &e->hash_next;
	}
	return link;
}

static void
dns_cache_remove(struct dns_cache *c, struct dns_cache_entry **link)
{
	struct dns_cache_entry *e = *link;
	*link = e->hash_next;
	dns_cache_lru_unlink(c, e);
	ASSERT(c->stats.entries > 0);
	c->stats.entries--;
	free(e);
}

uint64_t
dns_cache_name_hash(const struct dns_cache *c, const struct dns_name *name)
{
	return dns_hash_name(c->key, name);
}

const struct dns_cache_entry *
dns_cache_get(struct dns_cache *c, const struct dns_name *name, uint16_t qtype, uint64_t now_ms)
{
	return dns_cache_get_hashed(c, name, dns_cache_name_hash(c, name), qtype, now_ms);
}

const struct dns_cache_entry *
dns_cache_get_hashed(struct dns_cache *c, const struct dns_name *name, uint64_t name_hash,
	uint16_t qtype, uint64_t now_ms)
{
	if (c->max_entries == 0) {
		c->stats.misses++;
		return NULL;
	}
	ASSERT_DEBUG(name_hash == dns_cache_name_hash(c, name));
	uint64_t hash = dns_hash_mix(name_hash, qtype);
	struct dns_cache_entry **link = dns_cache_find(c, hash, name, qtype);
	struct dns_cache_entry *e = *link;
	if (e != NULL && e->expires_ms <= now_ms) {
		dns_cache_remove(c, link);
		c->stats.expired++;
		e = NULL;
	}
	if (e == NULL) {
		c->stats.misses++;
		return NULL;
	}
	c->stats.hits++;
	if (c->lru_head != e) {
		dns_cache_lru_unlink(c, e);
		dns_cache_lru_push(c, e);
	}
	return e;
}

static bool
dns_cache_keeps(const struct dns_answer *a)
{
	if (a->ttl == 0)
		return false;
	if (a->kind == DNS_ANSWER_DATA)
		return !a->rrs_dropped;
	return a->kind == DNS_ANSWER_NODATA || a->kind == DNS_ANSWER_NXDOMAIN;
}

/* Drops the least recently used entry. */
static void
dns_cache_evict(struct dns_cache *c)
{
	struct dns_cache_entry *victim = c->lru_tail;
	ASSERT(victim != NULL);
	struct dns_cache_entry **link = dns_cache_find(c, victim->hash, &victim->name,
		victim->qtype);
	ASSERT(*link == victim);
	dns_cache_remove(c, link);
	c->stats.evicted++;
}

int
dns_cache_put(struct dns_cache *c, const struct dns_name *name, uint16_t qtype,
	const struct dns_answer *a, uint64_t now_ms)
{
	return dns_cache_put_hashed(c, name, dns_cache_name_hash(c, name), qtype, a, now_ms);
}

int
dns_cache_put_hashed(struct dns_cache *c, const struct dns_name *name, uint64_t name_hash,
	uint16_t qtype, const struct dns_answer *a, uint64_t now_ms)
{
	if (c->max_entries == 0 || !dns_cache_keeps(a))
		return 0;
	ASSERT(a->rr_count <= DNS_ANSWER_RRS_MAX);
	ASSERT(a->data_len <= DNS_ANSWER_DATA_MAX);
	ASSERT_DEBUG(name_hash == dns_cache_name_hash(c, name));
	uint64_t hash = dns_hash_mix(name_hash, qtype);
	struct dns_cache_entry **link = dns_cache_find(c, hash, name, qtype);
	if (*link != NULL)
		dns_cache_remove(c, link);
	else if (c->stats.entries == c->max_entries)
		dns_cache_evict(c);
	size_t rrs_size = (size_t)a->rr_count * sizeof(struct dns_rr);
	struct dns_cache_entry *e = malloc(sizeof(*e) + rrs_size + a->data_len);
	if (e == NULL)
		return -ENOMEM;
	struct dns_rr *rrs = (struct dns_rr *)(e + 1);
	uint8_t *data = (uint8_t *)rrs + rrs_size;
	memcpy(rrs, a->rrs, rrs_size);
	memcpy(data, a->data, a->data_len);
	e->kind = a->kind;
	e->ad = a->ad;
	e->qtype = qtype;
	e->cname_count = a->cname_count;
	e->rr_count = a->rr_count;
	e->expires_ms = now_ms + (uint64_t)a->ttl * 1000u;
	e->rrs = rrs;
	e->data = data;
	e->name = *name;
	e->hash = hash;
	/* The chain may have changed if an entry was removed or evicted: find its end again. */
	link = dns_cache_find(c, hash, name, qtype);
	ASSERT(*link == NULL);
	e->hash_next = NULL;
	*link = e;
	dns_cache_lru_push(c, e);
	c->stats.entries++;
	return 0;
}

void
dns_cache_get_stats(const struct dns_cache *c, struct dns_cache_stats *out)
{
	*out = c->stats;
}
