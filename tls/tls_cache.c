/* tls/tls_cache.c - per-shard client session cache; see tls_cache.h. */
#include "tls/tls_cache.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/ssl.h>

#include "tls/tls_ctx.h"

_Static_assert(TLS_CACHE_ENTRIES_MAX % TLS_CACHE_WAYS == 0, "whole sets");

struct tls_cache_entry {
	SSL_SESSION *session;          /* NULL: free */
	uint64_t used;                 /* c->clock when last stored or found */
	bool verified;
	uint16_t host_len;
	char host[TLS_HOST_NAME_MAX];  /* lower case */
};

struct tls_cache {
	uint32_t sets;
	uint32_t count;
	uint64_t clock;                /* counts uses, for least-recently-used */
	struct tls_cache_entry *entries;
};

int
tls_cache_new(uint32_t entries, struct tls_cache **out)
{
	ASSERT(entries >= 1);
	ASSERT(entries <= TLS_CACHE_ENTRIES_MAX);
	struct tls_cache *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	c->sets = (entries + TLS_CACHE_WAYS - 1) / TLS_CACHE_WAYS;
	c->entries = calloc((size_t)c->sets * TLS_CACHE_WAYS, sizeof(c->entries[0]));
	if (c->entries == NULL) {
		free(c);
		return -ENOMEM;
	}
	*out = c;
	return 0;
}

void
tls_cache_free(struct tls_cache *c)
{
	if (c == NULL)
		return;
	for (uint32_t i = 0; i < c->sets * TLS_CACHE_WAYS; i++)
		SSL_SESSION_free(c->entries[i].session);
	free(c->entries);
	free(c);
}

/* FNV-1a over the lower-cased name. */
static uint32_t
tls_cache_hash(struct slice host)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < host.len; i++) {
		h ^= slice_ascii_lower(host.ptr[i]);
		h *= 16777619u;
	}
	return h;
}

static struct tls_cache_entry *
tls_cache_set(struct tls_cache *c, struct slice host)
{
	return &c->entries[(size_t)(tls_cache_hash(host) % c->sets) * TLS_CACHE_WAYS];
}

static bool
tls_cache_is(const struct tls_cache_entry *e, struct slice host)
{
	return e->session != NULL && slice_eq_nocase(slice_make(e->host, e->host_len), host);
}

struct ssl_session_st *
tls_cache_get(struct tls_cache *c, struct slice host, bool need_verified)
{
	if (host.len == 0 || host.len > TLS_HOST_NAME_MAX)
		return NULL;
	struct tls_cache_entry *set = tls_cache_set(c, host);
	for (uint32_t w = 0; w < TLS_CACHE_WAYS; w++) {
		struct tls_cache_entry *e = &set[w];
		if (!tls_cache_is(e, host))
			continue;
		if (need_verified && !e->verified)
			return NULL;
		e->used = ++c->clock;
		SSL_SESSION_up_ref(e->session);
		return e->session;
	}
	return NULL;
}

void
tls_cache_put(struct tls_cache *c, struct slice host, struct ssl_session_st *session,
	bool verified)
{
	ASSERT(session != NULL);
	if (host.len == 0 || host.len > TLS_HOST_NAME_MAX) {
		SSL_SESSION_free(session);
		return;
	}
	struct tls_cache_entry *set = tls_cache_set(c, host);
	struct tls_cache_entry *slot = &set[0];
	for (uint32_t w = 0; w < TLS_CACHE_WAYS; w++) {
		struct tls_cache_entry *e = &set[w];
		if (tls_cache_is(e, host)) {
			slot = e;
			break;
		}
		/* A free entry wins, then the least recently used. */
		if (slot->session != NULL && (e->session == NULL || e->used < slot->used))
			slot = e;
	}
	if (slot->session != NULL)
		SSL_SESSION_free(slot->session);
	else
		c->count++;
	slot->session = session;
	slot->verified = verified;
	slot->used = ++c->clock;
	slot->host_len = (uint16_t)host.len;
	for (size_t i = 0; i < host.len; i++)
		slot->host[i] = (char)slice_ascii_lower(host.ptr[i]);
}

uint32_t
tls_cache_count(const struct tls_cache *c)
{
	return c->count;
}
