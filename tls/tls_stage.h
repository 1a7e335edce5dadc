/* tls/tls_stage.h - one connection's TLS, driven over the engine's buffers: no socket, no copy
 * beyond BoringSSL's own.
 *
 * The stage sits between the socket and the session. It never does I/O and never reads a clock:
 *   ciphertext in:  tls_stage_recv(in) reads from the caller's receive buffer through a BIO that
 *                   hands BoringSSL the bytes of `in` it asks for. BoringSSL asks for one record
 *                   at a time and never past the record it needs, so step.in_used is exact;
 *                   bytes it did not take are the caller's, to offer again with more. (A partial
 *                   record is taken: BoringSSL keeps it until the rest comes.)
 *   plaintext out:  decrypted application data is copied into the caller's `plain` buffer (the
 *                   one copy of the receive path: the session's slices must live in a buffer the
 *                   engine owns).
 *   plaintext in:   tls_stage_send(plain) seals records (at most TLS_RECORD_PLAIN_MAX octets of
 *                   plaintext each).
 *   ciphertext out: every record BoringSSL writes (handshake flights, alerts, tickets, sealed
 *                   data) is appended to the caller's struct tls_out, which the engine then
 *                   queues for sending: the one copy of the send path, from BoringSSL's buffer
 *                   into the send queue.
 * When `out` fills up, the call stops with step.out_full (or *plain_used short): send what is in
 * out, then call again; BoringSSL keeps the rest of a record it could not write. Plaintext that
 * tls_stage_send did not report as used must be offered again unchanged.
 *
 * Handshake: the server side starts with the client's first bytes; the client side sends its
 * ClientHello on the first tls_stage_recv (with an empty `in`). step.handshake_done is set by
 * the call that finished it (then tls_stage_protocol/cipher/describe hold). A TLS 1.3 server
 * keeps its session ticket until its first tls_stage_send (BoringSSL flushes tickets with the
 * next write, so that a client that never reads cannot stall it): in SMTP that is the EHLO
 * answer after STARTTLS, or the 220 greeting on implicit TLS. A failure (bad
 * bytes, a refused certificate, no common parameters, an alert from the peer) returns -EPROTO
 * with tls_stage_reason() set; any alert for the peer is already in `out`; the stage is done
 * and is only fini'd. It touches no other connection: errors are per call (the thread's error
 * queue is cleared on every entry).
 *
 * Client policy (struct tls_client_params): SNI is the host name (not for an IP literal); with
 * CONFIG_TLS_VERIFY the chain must lead to the CA store and the name must match (RFC 6125,
 * no partial wildcards), else the handshake fails with the reason; with MAY and ENCRYPT it is
 * checked all the same and only reported (tls_stage_verified, for the log). The session is
 * resumed from the shard's cache (tls/tls_cache) when there is one for the host; new sessions
 * go into it.
 *
 * Ownership: one stage per connection, used by the shard that owns the connection. The stage
 * holds a reference to its context for its whole life (so a reloaded context is freed with its
 * last connection). `now_real_ms` is the shard's clock (struct ring's now_real_ms), read for
 * ticket periods; it must outlive the stage. kTLS is a later fast path (not here). */
#ifndef RINGMTA_TLS_TLS_STAGE_H
#define RINGMTA_TLS_TLS_STAGE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/assert.h"
#include "base/slice.h"
#include "tls/tls_ctx.h"

#define TLS_RECORD_PLAIN_MAX     16384u   /* RFC 8446 5.1: plaintext of one record */
#define TLS_RECORD_SEALED_MAX (16384u + 256u + 5u)   /* RFC 8446 5.2: the largest record sent */
#define TLS_STAGE_REASON_MAX       160u
#define TLS_STAGE_DESCRIBE_MAX     160u

struct tls_cache;
struct ssl_st;   /* BoringSSL's SSL */
struct bio_st;   /* BoringSSL's BIO */

/* Where sealed records go: ptr[len..cap) is free; the stage appends and advances len. */
struct tls_out {
	uint8_t *ptr;
	size_t cap;
	size_t len;
};

/* What one tls_stage_recv call did. */
struct tls_step {
	size_t in_used;          /* ciphertext octets taken from the front of in */
	size_t plain_len;        /* plaintext octets written to plain */
	bool handshake_done;     /* this call finished the handshake */
	bool out_full;           /* stopped: out has no room; send it, then call again */
	bool peer_closed;        /* close_notify received: no more plaintext will come */
};

struct tls_client_params {
	uint8_t level;           /* enum config_tls_level: MAY, ENCRYPT or VERIFY */
	struct slice host;       /* the server's name (the MX name): SNI, verification, cache key */
	struct tls_cache *cache; /* the shard's session cache, or NULL */
};

struct tls_stage {
	/* private: use the functions */
	struct ssl_st *ssl;
	struct bio_st *bio;
	struct tls_server_ctx *server;   /* one of the two, with a reference */
	struct tls_client_ctx *client;
	struct tls_conn_env env;         /* what the context's callbacks read */
	struct slice in;                 /* during a call: the caller's ciphertext */
	size_t in_used;
	struct tls_out *out;             /* during a call: the caller's send space */
	bool handshake_done;
	bool failed;
	bool peer_closed;
	char reason[TLS_STAGE_REASON_MAX];
};

/* A server-side stage for a new connection (accepted socket or after STARTTLS's 220). Returns 0
 * or -ENOMEM. */
int tls_stage_server_init(struct tls_stage *st, struct tls_server_ctx *ctx,
	const uint64_t *now_real_ms) MUST_USE;

/* A client-side stage (outbound STARTTLS). p->host is copied. Returns 0, -ENOMEM, or -EINVAL
 * (host empty or longer than TLS_HOST_NAME_MAX). */
int tls_stage_client_init(struct tls_stage *st, struct tls_client_ctx *ctx,
	const struct tls_client_params *p, const uint64_t *now_real_ms) MUST_USE;

/* Frees the connection's TLS state and drops the context reference. */
void tls_stage_fini(struct tls_stage *st);

/* Feeds ciphertext (see above): drives the handshake, then decrypts into plain[0..plain_cap).
 * Returns 0 (see *step) or -EPROTO (failed: tls_stage_reason; send out, then close). */
int tls_stage_recv(struct tls_stage *st, struct slice in, uint8_t *plain, size_t plain_cap,
	struct tls_out *out, struct tls_step *step) MUST_USE;

/* Seals plain into records appended to out; *plain_used tells how much was taken (short when
 * out filled up). Only after the handshake. Returns 0 or -EPROTO. */
int tls_stage_send(struct tls_stage *st, struct slice plain, struct tls_out *out,
	size_t *plain_used) MUST_USE;

/* Appends a close_notify alert. Returns 0, or -ENOBUFS if out had no room for it. */
int tls_stage_close(struct tls_stage *st, struct tls_out *out) MUST_USE;

bool tls_stage_handshake_done(const struct tls_stage *st);
bool tls_stage_failed(const struct tls_stage *st);
/* Why the handshake or a record failed (static or in st); "" before any failure. */
const char *tls_stage_reason(const struct tls_stage *st);
/* "TLSv1.2" or "TLSv1.3" once the handshake is done. */
const char *tls_stage_protocol(const struct tls_stage *st);
/* The IETF name of the cipher suite ("TLS_AES_128_GCM_SHA256"), once the handshake is done. */
const char *tls_stage_cipher(const struct tls_stage *st);
/* The session was resumed (ticket) rather than fully negotiated. */
bool tls_stage_resumed(const struct tls_stage *st);
/* Client: the server's chain and name were verified (whatever the level). */
bool tls_stage_verified(const struct tls_stage *st);
/* Server: the ECDSA certificate was sent (else RSA); and a tls_server_sni_file name matched. */
bool tls_stage_sent_ecdsa(const struct tls_stage *st);
bool tls_stage_sni_matched(const struct tls_stage *st);

/* For logs and the Received: comment (RFC 3848 says nothing of the form; Postfix's is followed):
 * "TLSv1.3 with cipher TLS_AES_128_GCM_SHA256 (128/128 bits) key-exchange X25519". Returns the
 * length written (NUL-terminated, cap >= TLS_STAGE_DESCRIBE_MAX). */
size_t tls_stage_describe(const struct tls_stage *st, char *buf, size_t cap);
#endif
