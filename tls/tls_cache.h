/* tls/tls_cache.h - a shard's TLS client sessions, one per destination host, for resumption.
 *
 * Owned by one shard and used only by its thread (no locks). The outbound TLS stage looks a
 * session up by the server's host name (the MX name) when a connection starts and stores the
 * one the server issues (TLS 1.3 tickets arrive after the handshake; each replaces the last).
 * A session remembers whether its certificate was verified: a `verify` connection never resumes
 * a session that was not, since a resumed handshake shows no certificate.
 *
 * Fixed size, set at start-up: TLS_CACHE_WAYS-way sets indexed by a hash of the host name, the
 * least recently used entry of a set replaced. Expiry is BoringSSL's (a stale session is refused
 * by the server and a full handshake follows). Limits: 1 .. TLS_CACHE_ENTRIES_MAX entries. */
#ifndef RINGMTA_TLS_TLS_CACHE_H
#define RINGMTA_TLS_TLS_CACHE_H
#include <stdbool.h>
#include <stdint.h>

#include "base/assert.h"
#include "base/slice.h"

#define TLS_CACHE_WAYS            4u
#define TLS_CACHE_ENTRIES_MAX  65536u

struct ssl_session_st;   /* BoringSSL's SSL_SESSION */
struct tls_cache;        /* opaque: defined in tls_cache.c */

/* entries is rounded up to a multiple of TLS_CACHE_WAYS. Returns 0 or -ENOMEM. */
int tls_cache_new(uint32_t entries, struct tls_cache **out) MUST_USE;
void tls_cache_free(struct tls_cache *c);

/* The session stored for host (ASCII case-insensitive), with a new reference for the caller,
 * or NULL; with need_verified, only a session whose certificate was verified. */
struct ssl_session_st *tls_cache_get(struct tls_cache *c, struct slice host, bool need_verified);

/* Stores session for host, taking over the caller's reference; replaces host's old one. */
void tls_cache_put(struct tls_cache *c, struct slice host, struct ssl_session_st *session,
	bool verified);

/* Sessions stored now. */
uint32_t tls_cache_count(const struct tls_cache *c);
#endif
