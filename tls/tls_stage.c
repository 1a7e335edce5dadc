/* tls/tls_stage.c - a connection's TLS over the caller's buffers; see tls_stage.h.
 *
 * One BIO per stage serves as both rbio and wbio. It works only during a tls_stage_* call:
 * reads come from st->in (the caller's ciphertext) and writes go to st->out (the caller's send
 * space); outside a call both are empty and the BIO answers "retry". BoringSSL reads exactly
 * what it needs (a record header, then the rest of that record), so the bytes it did not ask
 * for stay in the caller's buffer. */
#include "tls/tls_stage.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "conf/config.h"
#include "proto/received.h"
#include "tls/tls_cache.h"

#define TLS_STAGE_BIO_NAME "ringmta stage"

_Static_assert(TLS_RECORD_PLAIN_MAX <= INT_MAX, "SSL_write takes an int");
_Static_assert(TLS_STAGE_DESCRIBE_MAX >= 120u, "room for the longest description");
_Static_assert(TLS_STAGE_DESCRIBE_MAX <= RECEIVED_TLS_MAX, "the description fits Received:");

static BIO_METHOD *tls_stage_bio_method;
static pthread_once_t tls_stage_bio_once = PTHREAD_ONCE_INIT;

/* ---- the BIO ---- */

static int
tls_stage_bio_read(BIO *b, char *buf, int len)
{
	struct tls_stage *st = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	size_t avail = st->in.len - st->in_used;
	if (avail == 0 || len <= 0) {
		BIO_set_retry_read(b);
		return -1;
	}
	size_t n = avail < (size_t)len ? avail : (size_t)len;
	memcpy(buf, st->in.ptr + st->in_used, n);
	st->in_used += n;
	return (int)n;
}

static int
tls_stage_bio_write(BIO *b, const char *buf, int len)
{
	struct tls_stage *st = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	struct tls_out *o = st->out;
	if (o == NULL || o->len == o->cap || len <= 0) {
		BIO_set_retry_write(b);
		return -1;
	}
	ASSERT(o->len < o->cap);
	size_t room = o->cap - o->len;
	size_t n = room < (size_t)len ? room : (size_t)len;
	memcpy(o->ptr + o->len, buf, n);   /* copy: a sealed record into the engine's send queue */
	o->len += n;
	return (int)n;
}

static long
tls_stage_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	return cmd == BIO_CTRL_FLUSH ? 1 : 0;   /* nothing is buffered here */
}

static void
tls_stage_bio_method_make(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_TYPE_SOURCE_SINK, TLS_STAGE_BIO_NAME);
	if (m != NULL && BIO_meth_set_read(m, tls_stage_bio_read)
		&& BIO_meth_set_write(m, tls_stage_bio_write)
		&& BIO_meth_set_ctrl(m, tls_stage_bio_ctrl))
		tls_stage_bio_method = m;
}

/* ---- set-up ---- */

static int
tls_stage_setup(struct tls_stage *st, SSL_CTX *ctx, const uint64_t *now_real_ms)
{
	ASSERT(now_real_ms != NULL);
	(void)pthread_once(&tls_stage_bio_once, tls_stage_bio_method_make);
	st->env.now_real_ms = now_real_ms;
	if (tls_stage_bio_method == NULL)
		return -ENOMEM;
	st->ssl = SSL_new(ctx);
	st->bio = BIO_new(tls_stage_bio_method);
	if (st->ssl == NULL || st->bio == NULL) {
		SSL_free(st->ssl);
		BIO_free(st->bio);
		st->ssl = NULL;
		st->bio = NULL;
		ERR_clear_error();
		return -ENOMEM;
	}
	BIO_set_data(st->bio, st);
	BIO_set_init(st->bio, 1);
	SSL_set_bio(st->ssl, st->bio, st->bio);   /* the same BIO both ways: one reference */
	SSL_set_app_data(st->ssl, &st->env);
	return 0;
}

static void
tls_stage_clear(struct tls_stage *st)
{
	memset(st, 0, sizeof(*st));
}

int
tls_stage_server_init(struct tls_stage *st, struct tls_server_ctx *ctx,
	const uint64_t *now_real_ms)
{
	tls_stage_clear(st);
	int rc = tls_stage_setup(st, tls_server_ctx_ssl(ctx), now_real_ms);
	if (rc < 0)
		return rc;
	SSL_set_accept_state(st->ssl);
	tls_server_ctx_ref(ctx);
	st->server = ctx;
	return 0;
}

/* An IPv4 or IPv6 literal: no SNI (RFC 6066 3), and the name check is an address check. */
static bool
tls_stage_host_is_ip(struct slice h)
{
	bool dotted = true;
	for (size_t i = 0; i < h.len; i++) {
		if (h.ptr[i] == ':')
			return true;
		if (!(h.ptr[i] == '.' || (h.ptr[i] >= '0' && h.ptr[i] <= '9')))
			dotted = false;
	}
	return dotted;
}

/* SNI, the name to verify, the verification mode and a cached session. */
static int
tls_stage_client_policy(struct tls_stage *st, const struct tls_client_params *p)
{
	bool ip = tls_stage_host_is_ip(p->host);
	/* BoringSSL matches names as RFC 6125 6.4 says, never with partial wildcards. */
	X509_VERIFY_PARAM *param = SSL_get0_param(st->ssl);
	int ok = ip ? X509_VERIFY_PARAM_set1_ip_asc(param, st->env.host)
		: SSL_set_tlsext_host_name(st->ssl, st->env.host)
			&& X509_VERIFY_PARAM_set1_host(param, st->env.host, st->env.host_len);
	if (!ok) {
		ERR_clear_error();
		return -EINVAL;
	}
	bool verify = p->level == CONFIG_TLS_VERIFY;
	SSL_set_verify(st->ssl, verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE, NULL);
	SSL_set_connect_state(st->ssl);
	if (p->cache == NULL)
		return 0;
	SSL_SESSION *sess = tls_cache_get(p->cache, p->host, verify);
	if (sess != NULL) {
		(void)SSL_set_session(st->ssl, sess);   /* a failure means a full handshake */
		SSL_SESSION_free(sess);
	}
	ERR_clear_error();
	return 0;
}

int
tls_stage_client_init(struct tls_stage *st, struct tls_client_ctx *ctx,
	const struct tls_client_params *p, const uint64_t *now_real_ms)
{
	ASSERT(p->level == CONFIG_TLS_MAY || p->level == CONFIG_TLS_ENCRYPT
		|| p->level == CONFIG_TLS_VERIFY);
	tls_stage_clear(st);
	if (p->host.len == 0 || p->host.len > TLS_HOST_NAME_MAX
		|| memchr(p->host.ptr, '\0', p->host.len) != NULL)
		return -EINVAL;
	int rc = tls_stage_setup(st, tls_client_ctx_ssl(ctx), now_real_ms);
	if (rc < 0)
		return rc;
	memcpy(st->env.host, p->host.ptr, p->host.len);
	st->env.host[p->host.len] = '\0';
	st->env.host_len = (uint16_t)p->host.len;
	st->env.cache = p->cache;
	tls_client_ctx_ref(ctx);
	st->client = ctx;
	rc = tls_stage_client_policy(st, p);
	if (rc < 0)
		tls_stage_fini(st);
	return rc;
}

void
tls_stage_fini(struct tls_stage *st)
{
	SSL_free(st->ssl);   /* and the BIO */
	if (st->server != NULL)
		tls_server_ctx_unref(st->server);
	if (st->client != NULL)
		tls_client_ctx_unref(st->client);
	st->ssl = NULL;
	st->bio = NULL;
	st->server = NULL;
	st->client = NULL;
}

/* ---- driving ---- */

static void
tls_stage_enter(struct tls_stage *st, struct slice in, struct tls_out *out)
{
	ASSERT(st->ssl != NULL);
	ASSERT(out->len <= out->cap);
	st->in = in;
	st->in_used = 0;
	st->out = out;
	ERR_clear_error();
}

static void
tls_stage_leave(struct tls_stage *st)
{
	ASSERT(st->in_used <= st->in.len);
	ASSERT(st->out->len <= st->out->cap);
	st->in = slice_make(NULL, 0);
	st->out = NULL;
	ERR_clear_error();
}

/* The reason of a failure, from BoringSSL's error queue and the certificate check. */
static int
tls_stage_fail(struct tls_stage *st, int ssl_err)
{
	uint32_t e = ERR_peek_last_error();
	const char *lib = e != 0 ? ERR_reason_error_string(e) : NULL;
	long vr = SSL_get_verify_result(st->ssl);
	bool cert = e != 0 && ERR_GET_REASON(e) == SSL_R_CERTIFICATE_VERIFY_FAILED && vr != X509_V_OK;
	if (cert)
		snprintf(st->reason, sizeof(st->reason), "certificate verify failed: %s",
			X509_verify_cert_error_string(vr));
	else if (lib != NULL)
		snprintf(st->reason, sizeof(st->reason), "%s%s", st->handshake_done ? ""
			: "handshake: ", lib);
	else
		snprintf(st->reason, sizeof(st->reason), "%s (SSL error %d)",
			st->handshake_done ? "record layer" : "handshake", ssl_err);
	st->failed = true;
	return -EPROTO;
}

/* 1: done, 0: wants more input or room (see step), -EPROTO: failed. */
static int
tls_stage_handshake(struct tls_stage *st, struct tls_step *step)
{
	int r = SSL_do_handshake(st->ssl);
	if (r == 1) {
		st->handshake_done = true;
		step->handshake_done = true;
		return 1;
	}
	int e = SSL_get_error(st->ssl, r);
	if (e == SSL_ERROR_WANT_READ)
		return 0;
	if (e == SSL_ERROR_WANT_WRITE) {
		step->out_full = true;
		return 0;
	}
	return tls_stage_fail(st, e);
}

/* Application data into plain until it is full or BoringSSL needs more ciphertext. Each
 * successful SSL_read writes at least one octet, so the loop ends. */
static int
tls_stage_read(struct tls_stage *st, uint8_t *plain, size_t plain_cap, struct tls_step *step)
{
	while (step->plain_len < plain_cap) {
		size_t room = plain_cap - step->plain_len;
		int want = room < (size_t)INT_MAX ? (int)room : INT_MAX;
		int r = SSL_read(st->ssl, plain + step->plain_len, want);
		if (r > 0) {
			ASSERT(r <= want);
			step->plain_len += (size_t)r;
			continue;
		}
		int e = SSL_get_error(st->ssl, r);
		if (e == SSL_ERROR_WANT_READ)
			return 0;
		if (e == SSL_ERROR_WANT_WRITE) {   /* a KeyUpdate answer, say */
			step->out_full = true;
			return 0;
		}
		if (e == SSL_ERROR_ZERO_RETURN) {
			st->peer_closed = true;
			step->peer_closed = true;
			return 0;
		}
		return tls_stage_fail(st, e);
	}
	return 0;
}

int
tls_stage_recv(struct tls_stage *st, struct slice in, uint8_t *plain, size_t plain_cap,
	struct tls_out *out, struct tls_step *step)
{
	ASSERT(!st->failed);
	*step = (struct tls_step){ .in_used = 0 };
	tls_stage_enter(st, in, out);
	int rc = 0;
	if (!st->handshake_done)
		rc = tls_stage_handshake(st, step);
	if (rc >= 0 && st->handshake_done && !st->peer_closed && !step->out_full)
		rc = tls_stage_read(st, plain, plain_cap, step);
	step->in_used = st->in_used;
	tls_stage_leave(st);
	return rc < 0 ? rc : 0;
}

int
tls_stage_send(struct tls_stage *st, struct slice plain, struct tls_out *out,
	size_t *plain_used)
{
	ASSERT(!st->failed);
	ASSERT(st->handshake_done);
	tls_stage_enter(st, slice_make(NULL, 0), out);
	size_t used = 0;
	int rc = 0;
	while (used < plain.len) {
		size_t n = plain.len - used;
		if (n > TLS_RECORD_PLAIN_MAX)
			n = TLS_RECORD_PLAIN_MAX;
		int w = SSL_write(st->ssl, plain.ptr + used, (int)n);
		if (w > 0) {
			ASSERT((size_t)w <= n);
			used += (size_t)w;
			continue;
		}
		int e = SSL_get_error(st->ssl, w);
		if (e != SSL_ERROR_WANT_WRITE)
			rc = tls_stage_fail(st, e);
		break;
	}
	*plain_used = used;
	tls_stage_leave(st);
	return rc;
}

int
tls_stage_close(struct tls_stage *st, struct tls_out *out)
{
	if (st->failed || !st->handshake_done)
		return 0;   /* nothing to close politely */
	tls_stage_enter(st, slice_make(NULL, 0), out);
	int r = SSL_shutdown(st->ssl);
	tls_stage_leave(st);
	return r >= 0 ? 0 : -ENOBUFS;
}

/* ---- what was negotiated ---- */

bool
tls_stage_handshake_done(const struct tls_stage *st)
{
	return st->handshake_done;
}

bool
tls_stage_failed(const struct tls_stage *st)
{
	return st->failed;
}

const char *
tls_stage_reason(const struct tls_stage *st)
{
	return st->reason;
}

const char *
tls_stage_protocol(const struct tls_stage *st)
{
	return st->handshake_done ? SSL_get_version(st->ssl) : "";
}

const char *
tls_stage_cipher(const struct tls_stage *st)
{
	const SSL_CIPHER *c = st->handshake_done ? SSL_get_current_cipher(st->ssl) : NULL;
	return c != NULL ? SSL_CIPHER_standard_name(c) : "";
}

bool
tls_stage_resumed(const struct tls_stage *st)
{
	return st->handshake_done && SSL_session_reused(st->ssl) == 1;
}

bool
tls_stage_verified(const struct tls_stage *st)
{
	return st->handshake_done && st->client != NULL
		&& SSL_get_verify_result(st->ssl) == X509_V_OK;
}

bool
tls_stage_sent_ecdsa(const struct tls_stage *st)
{
	return st->env.ecdsa_chosen;
}

bool
tls_stage_sni_matched(const struct tls_stage *st)
{
	return st->env.sni_matched;
}

size_t
tls_stage_describe(const struct tls_stage *st, char *buf, size_t cap)
{
	ASSERT(cap >= TLS_STAGE_DESCRIBE_MAX);
	const SSL_CIPHER *c = st->handshake_done ? SSL_get_current_cipher(st->ssl) : NULL;
	if (c == NULL) {
		buf[0] = '\0';
		return 0;
	}
	int alg_bits = 0;
	int bits = SSL_CIPHER_get_bits(c, &alg_bits);
	const char *group = SSL_get_curve_name(SSL_get_curve_id(st->ssl));
	int n = snprintf(buf, cap, "%s with cipher %s (%d/%d bits)%s%s", SSL_get_version(st->ssl),
		SSL_CIPHER_standard_name(c), bits, alg_bits, group != NULL ? " key-exchange " : "",
		group != NULL ? group : "");
	return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}
