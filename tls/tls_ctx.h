/* tls/tls_ctx.h - TLS contexts: certificates, SNI, session tickets, the CA store; reload.
 *
 * A context is built off the shards (at start-up, or by the thread that handles SIGHUP): it
 * reads the certificate and key files, which is the only file I/O in tls/, and wraps a BoringSSL
 * SSL_CTX. Once built it is immutable and shared by every shard; connections (tls/tls_stage)
 * hold a reference each. Reference counts are atomic: a context is freed by whoever drops the
 * last reference, i.e. with its last connection after a reload replaced it.
 *
 * Server contexts (tls_server_ctx_new), from struct config:
 *   tls_cert_file + tls_key_file     a chain (leaf first) and its key, RSA (>= 2048 bits) or ECDSA
 *   tls_eccert_file + tls_eckey_file a second pair, ECDSA; with both pairs the client's
 *                                    signature algorithms (and, in TLS 1.2, its cipher suites)
 *                                    choose: ECDSA when the client can verify it, else RSA
 *   tls_server_sni_file              lines "name pem-file [pem-file]": each file holds a key and
 *                                    its chain (leaf first); name is a host name or "*.domain"
 *                                    (one label); a client naming none of them gets the default
 * TLS 1.2 and 1.3 only; TLS 1.2 suites ECDHE with AES-GCM or ChaCha20-Poly1305; groups X25519,
 * P-256, P-384; no SHA-1 signatures. No server-side session cache: resumption is by tickets only.
 *
 * Session tickets: every server context is built with the process's struct tls_tickets (a random
 * master secret, made once at start-up and kept across reloads), so a ticket issued by any shard,
 * before or after a reload, opens on every shard. The ticket key is derived from the master and
 * the period (HKDF-SHA256, period = real time / TLS_TICKET_PERIOD_S): keys rotate by themselves,
 * nothing is shared but read-only memory. A ticket opens in its own period and the next one
 * (BoringSSL enforces the ticket lifetime, TLS_TICKET_PERIOD_S, itself). Tickets are sealed
 * with AES-256-GCM-SIV (misuse-resistant: random nonces at any rate are safe). Time is the
 * connection's clock (struct tls_conn_env), never read here.
 *
 * Client contexts (tls_client_ctx_new): the same versions and suites, the CA store from
 * smtp_tls_ca_file (empty: /etc/ssl/certs/ca-certificates.crt from Debian's ca-certificates).
 *
 * Reload (SIGHUP): build a new context, then tls_server_slot_publish() it. Each shard holds a
 * struct tls_server_view and asks it for the current context when a TLS connection starts: one
 * atomic load when nothing changed, a mutex only when the view picks up a new context. Failing
 * builds leave the old context in place (the caller logs err).
 *
 * Limits: TLS_CHAIN_MAX certificates per chain, TLS_SNI_NAMES_MAX SNI lines,
 * TLS_PEM_FILE_SIZE_MAX and TLS_SNI_FILE_SIZE_MAX octets per file. */
#ifndef RINGMTA_TLS_TLS_CTX_H
#define RINGMTA_TLS_TLS_CTX_H
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/assert.h"

#define TLS_CTX_ERR_MAX           512u
#define TLS_CHAIN_MAX               8u     /* certificates in one chain, leaf included */
#define TLS_SNI_NAMES_MAX         256u     /* lines of tls_server_sni_file */
#define TLS_SNI_FILE_SIZE_MAX (1u << 20)
#define TLS_PEM_FILE_SIZE_MAX (1u << 20)
#define TLS_HOST_NAME_MAX         253u     /* RFC 1035 2.3.4, without the trailing dot */
#define TLS_TICKET_PERIOD_S     43200u     /* 12 h: ticket key period and ticket lifetime */
#define TLS_RSA_BITS_MIN         2048u
#define TLS_CA_FILE_DEFAULT "/etc/ssl/certs/ca-certificates.crt"

struct config;
struct tls_cache;
struct tls_tickets;       /* opaque: the ticket master secret */
struct tls_server_ctx;    /* opaque */
struct tls_client_ctx;    /* opaque */

/* private: what a context's callbacks read from the connection (embedded in struct tls_stage) */
struct tls_conn_env {
	const uint64_t *now_real_ms;   /* the shard's CLOCK_REALTIME of this loop turn */
	struct tls_cache *cache;       /* client: the shard's session cache, or NULL */
	bool ecdsa_suites;             /* server: the ClientHello offers ECDHE-ECDSA suites */
	bool ecdsa_chosen;             /* server: the ECDSA certificate was sent */
	bool sni_matched;              /* server: a tls_server_sni_file name matched */
	uint16_t host_len;             /* client: the server's name, for SNI and the cache */
	char host[TLS_HOST_NAME_MAX + 1];
};

/* A fresh random master secret. Returns 0 or -ENOMEM / -EIO. */
int tls_tickets_new(struct tls_tickets **out) MUST_USE;
void tls_tickets_free(struct tls_tickets *tk);

/* Builds a server context from cfg's tls_* keys; tk must outlive it. Returns 0, or -1 with a
 * message naming the file and the reason in err. */
int tls_server_ctx_new(const struct config *cfg, struct tls_tickets *tk,
	struct tls_server_ctx **out, char *err, size_t err_len) MUST_USE;
void tls_server_ctx_ref(struct tls_server_ctx *c);
/* Drops a reference; the last one frees the context. Any thread. */
void tls_server_ctx_unref(struct tls_server_ctx *c);

/* Builds a client context (CA store from cfg->smtp_tls_ca_file). Returns 0, or -1 with err. */
int tls_client_ctx_new(const struct config *cfg, struct tls_client_ctx **out, char *err,
	size_t err_len) MUST_USE;
void tls_client_ctx_ref(struct tls_client_ctx *c);
void tls_client_ctx_unref(struct tls_client_ctx *c);

/* Contexts (server and client) built and not freed yet, in the process. */
uint32_t tls_ctx_live(void);

/* The published server context. Shared by all shards; publish from any thread. */
struct tls_server_slot {
	/* private: use the functions */
	pthread_mutex_t lock;
	struct tls_server_ctx *cur;    /* the slot's own reference */
	_Atomic uint64_t gen;          /* bumped by each publish */
};

/* Takes over the caller's reference to first. */
void tls_server_slot_init(struct tls_server_slot *slot, struct tls_server_ctx *first);
/* Publishes next (taking over the caller's reference) and drops the slot's reference to the old
 * context, which lives on while views and connections hold it. */
void tls_server_slot_publish(struct tls_server_slot *slot, struct tls_server_ctx *next);
void tls_server_slot_fini(struct tls_server_slot *slot);

/* A shard's view of the slot: only its own thread uses it. */
struct tls_server_view {
	/* private: use the functions */
	struct tls_server_slot *slot;
	uint64_t gen;
	struct tls_server_ctx *ctx;    /* the view's reference */
};

void tls_server_view_init(struct tls_server_view *v, struct tls_server_slot *slot);
/* The current context, borrowed (valid until the next call on v; a connection takes its own
 * reference through tls_stage_server_init). */
struct tls_server_ctx *tls_server_view_get(struct tls_server_view *v);
void tls_server_view_fini(struct tls_server_view *v);

/* For tls/tls_stage: the SSL_CTX inside (struct ssl_ctx_st is BoringSSL's SSL_CTX). */
struct ssl_ctx_st *tls_server_ctx_ssl(struct tls_server_ctx *c);
struct ssl_ctx_st *tls_client_ctx_ssl(struct tls_client_ctx *c);
#endif
