/* tls/tls_ctx.c - server and client contexts, certificate choice, tickets, reload; see
 * tls_ctx.h. */
#include "tls/tls_ctx.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/aead.h>
#include <openssl/bio.h>
#include <openssl/ec.h>
#include <openssl/ec_key.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hkdf.h>
#include <openssl/nid.h>
#include <openssl/pem.h>
#include <openssl/pool.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "base/slice.h"
#include "conf/config.h"
#include "tls/tls_cache.h"

#define TLS_TICKET_MASTER_LEN    32u
#define TLS_TICKET_KEY_LEN       32u    /* AES-256-GCM-SIV */
#define TLS_TICKET_NONCE_LEN     12u
#define TLS_TICKET_TAG_LEN       16u
#define TLS_TICKET_PERIOD_LEN     8u    /* the period number in front of the sealed ticket */
#define TLS_TICKET_OVERHEAD (TLS_TICKET_PERIOD_LEN + TLS_TICKET_NONCE_LEN + TLS_TICKET_TAG_LEN)
#define TLS_SNI_LINE_MAX       4096u
#define TLS_NUM_TICKETS           1u    /* per TLS 1.3 handshake: SMTP clients resume once */

/* TLS 1.2 suites, best first; TLS 1.3 suites are fixed in BoringSSL (all AEAD). */
static const char tls_cipher_list[] =
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
static const char tls_groups[] = "X25519:P-256:P-384";
static const uint8_t tls_sid_ctx[] = "ringmta";

/* Signature algorithms, without SHA-1. */
static const uint16_t tls_sigalgs[] = {
	SSL_SIGN_ECDSA_SECP256R1_SHA256, SSL_SIGN_RSA_PSS_RSAE_SHA256, SSL_SIGN_RSA_PKCS1_SHA256,
	SSL_SIGN_ECDSA_SECP384R1_SHA384, SSL_SIGN_RSA_PSS_RSAE_SHA384, SSL_SIGN_RSA_PKCS1_SHA384,
	SSL_SIGN_ECDSA_SECP521R1_SHA512, SSL_SIGN_RSA_PSS_RSAE_SHA512, SSL_SIGN_RSA_PKCS1_SHA512,
	SSL_SIGN_ED25519,
};

_Static_assert(TLS_TICKET_MASTER_LEN >= 32u, "an HKDF secret of full strength");

static atomic_uint tls_ctx_live_count;

struct tls_tickets {
	uint8_t master[TLS_TICKET_MASTER_LEN];
};

/* A certificate chain and its key. */
struct tls_cred {
	CRYPTO_BUFFER *chain[TLS_CHAIN_MAX];
	size_t chain_len;                  /* 0: none */
	EVP_PKEY *key;
	bool ecdsa;
	uint16_t tls13_sigalg;             /* ECDSA: the one TLS 1.3 allows for the key's curve */
};

/* What one name (or the default) serves: an ECDSA and/or an RSA credential. */
struct tls_creds {
	struct tls_cred ec;
	struct tls_cred rsa;
};

struct tls_sni_entry {
	char name[TLS_HOST_NAME_MAX + 1];  /* lower case; "*.x" kept as ".x" */
	uint16_t name_len;
	bool wildcard;
	struct tls_creds creds;
};

struct tls_server_ctx {
	atomic_uint refs;
	SSL_CTX *ssl_ctx;
	const struct tls_tickets *tickets;
	struct tls_creds def;
	struct tls_sni_entry *sni;
	uint32_t sni_count;
};

struct tls_client_ctx {
	atomic_uint refs;
	SSL_CTX *ssl_ctx;
};

/* ---- errors ---- */

/* "what: the library's reason" into err; clears the thread's error queue. */
static int
tls_ctx_fail(char *err, size_t err_len, const char *what)
{
	uint32_t e = ERR_peek_last_error();
	const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;
	snprintf(err, err_len, "%s%s%s", what, reason != NULL ? ": " : "",
		reason != NULL ? reason : "");
	ERR_clear_error();
	return -1;
}

/* ---- tickets ---- */

int
tls_tickets_new(struct tls_tickets **out)
{
	struct tls_tickets *tk = calloc(1, sizeof(*tk));
	if (tk == NULL)
		return -ENOMEM;
	if (RAND_bytes(tk->master, sizeof(tk->master)) != 1) {
		free(tk);
		return -EIO;
	}
	*out = tk;
	return 0;
}

void
tls_tickets_free(struct tls_tickets *tk)
{
	if (tk == NULL)
		return;
	OPENSSL_cleanse(tk->master, sizeof(tk->master));
	free(tk);
}

static void
tls_ticket_period_bytes(uint64_t period, uint8_t out[TLS_TICKET_PERIOD_LEN])
{
	for (uint32_t i = 0; i < TLS_TICKET_PERIOD_LEN; i++)
		out[i] = (uint8_t)(period >> (8 * (TLS_TICKET_PERIOD_LEN - 1 - i)));
}

/* The AEAD context of one period: key = HKDF-SHA256(master, salt, period). */
static bool
tls_ticket_aead(const struct tls_tickets *tk, const uint8_t period[TLS_TICKET_PERIOD_LEN],
	EVP_AEAD_CTX *aead)
{
	static const uint8_t salt[] = "ringmta ticket key";
	uint8_t key[TLS_TICKET_KEY_LEN];
	bool ok = HKDF(key, sizeof(key), EVP_sha256(), tk->master, sizeof(tk->master), salt,
		sizeof(salt) - 1, period, TLS_TICKET_PERIOD_LEN) == 1
		&& EVP_AEAD_CTX_init(aead, EVP_aead_aes_256_gcm_siv(), key, sizeof(key),
			TLS_TICKET_TAG_LEN, NULL) == 1;
	OPENSSL_cleanse(key, sizeof(key));
	return ok;
}

static uint64_t
tls_ticket_period_now(const SSL *ssl)
{
	const struct tls_conn_env *env = SSL_get_app_data(ssl);
	ASSERT(env != NULL);
	return *env->now_real_ms / 1000u / TLS_TICKET_PERIOD_S;
}

static const struct tls_tickets *
tls_ticket_master(const SSL *ssl)
{
	const struct tls_server_ctx *c = SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl));
	return c->tickets;
}

static size_t
tls_ticket_max_overhead(SSL *ssl)
{
	return TLS_TICKET_OVERHEAD;
}

/* period (8 octets, also the additional data) | nonce | sealed ticket and tag */
static int
tls_ticket_seal(SSL *ssl, uint8_t *out, size_t *out_len, size_t max_out, const uint8_t *in,
	size_t in_len)
{
	if (max_out < in_len + TLS_TICKET_OVERHEAD)
		return 0;
	tls_ticket_period_bytes(tls_ticket_period_now(ssl), out);
	uint8_t *nonce = out + TLS_TICKET_PERIOD_LEN;
	if (RAND_bytes(nonce, TLS_TICKET_NONCE_LEN) != 1)
		return 0;
	EVP_AEAD_CTX aead;
	if (!tls_ticket_aead(tls_ticket_master(ssl), out, &aead))
		return 0;
	size_t prefix = TLS_TICKET_PERIOD_LEN + TLS_TICKET_NONCE_LEN;
	size_t sealed = 0;
	int ok = EVP_AEAD_CTX_seal(&aead, out + prefix, &sealed, max_out - prefix, nonce,
		TLS_TICKET_NONCE_LEN, in, in_len, out, TLS_TICKET_PERIOD_LEN);
	EVP_AEAD_CTX_cleanup(&aead);
	*out_len = prefix + sealed;
	return ok;
}

static enum ssl_ticket_aead_result_t
tls_ticket_open(SSL *ssl, uint8_t *out, size_t *out_len, size_t max_out, const uint8_t *in,
	size_t in_len)
{
	if (in_len < TLS_TICKET_OVERHEAD)
		return ssl_ticket_aead_ignore_ticket;
	uint64_t period = 0;
	for (uint32_t i = 0; i < TLS_TICKET_PERIOD_LEN; i++)
		period = period << 8 | in[i];
	uint64_t now = tls_ticket_period_now(ssl);
	if (period != now && period + 1 != now)
		return ssl_ticket_aead_ignore_ticket;   /* rotated out, or from the future */
	EVP_AEAD_CTX aead;
	if (!tls_ticket_aead(tls_ticket_master(ssl), in, &aead))
		return ssl_ticket_aead_error;
	size_t prefix = TLS_TICKET_PERIOD_LEN + TLS_TICKET_NONCE_LEN;
	int ok = EVP_AEAD_CTX_open(&aead, out, out_len, max_out, in + TLS_TICKET_PERIOD_LEN,
		TLS_TICKET_NONCE_LEN, in + prefix, in_len - prefix, in, TLS_TICKET_PERIOD_LEN);
	EVP_AEAD_CTX_cleanup(&aead);
	ERR_clear_error();   /* a ticket that does not open is no error of the connection */
	return ok ? ssl_ticket_aead_success : ssl_ticket_aead_ignore_ticket;
}

static const SSL_TICKET_AEAD_METHOD tls_ticket_method = {
	.max_overhead = tls_ticket_max_overhead,
	.seal = tls_ticket_seal,
	.open = tls_ticket_open,
};

/* ---- reading credentials ---- */

static void
tls_cred_free(struct tls_cred *cr)
{
	for (size_t i = 0; i < cr->chain_len; i++)
		CRYPTO_BUFFER_free(cr->chain[i]);
	EVP_PKEY_free(cr->key);
	memset(cr, 0, sizeof(*cr));
}

static void
tls_creds_free(struct tls_creds *c)
{
	tls_cred_free(&c->ec);
	tls_cred_free(&c->rsa);
}

/* The contents of a small file (PEM, SNI list); NULL with err set. The caller frees. */
static uint8_t *
tls_read_file(const char *path, size_t max, size_t *len, char *err, size_t err_len)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		snprintf(err, err_len, "%s: %s", path, strerror(errno));
		return NULL;
	}
	uint8_t *buf = malloc(max + 1);
	size_t n = buf != NULL ? fread(buf, 1, max + 1, f) : 0;
	bool bad = buf == NULL || ferror(f) || n > max;
	fclose(f);
	if (bad) {
		snprintf(err, err_len, "%s: %s", path, buf == NULL ? "out of memory"
			: n > max ? "file too large" : "read error");
		free(buf);
		return NULL;
	}
	*len = n;
	return buf;
}

/* Every CERTIFICATE block of a PEM text, in order, as CRYPTO_BUFFERs. */
static int
tls_read_chain(const char *path, const uint8_t *pem, size_t len, struct tls_cred *cr, char *err,
	size_t err_len)
{
	BIO *bio = BIO_new_mem_buf(pem, (long)len);
	if (bio == NULL)
		return tls_ctx_fail(err, err_len, path);
	int rc = 0;
	char *name = NULL, *header = NULL;
	uint8_t *data = NULL;
	long data_len = 0;
	while (rc == 0 && PEM_read_bio(bio, &name, &header, &data, &data_len) == 1) {
		if (strcmp(name, "CERTIFICATE") == 0) {
			if (cr->chain_len == TLS_CHAIN_MAX) {
				snprintf(err, err_len, "%s: more than %u certificates", path,
					TLS_CHAIN_MAX);
				rc = -1;
			} else {
				cr->chain[cr->chain_len] = CRYPTO_BUFFER_new(data, (size_t)data_len,
					NULL);
				rc = cr->chain[cr->chain_len] != NULL ? 0 : -1;
				cr->chain_len += rc == 0;
			}
		}
		OPENSSL_free(name);
		OPENSSL_free(header);
		OPENSSL_free(data);
	}
	ERR_clear_error();   /* the loop ends on "no start line" */
	BIO_free(bio);
	if (rc == 0 && cr->chain_len == 0) {
		snprintf(err, err_len, "%s: no certificate", path);
		rc = -1;
	}
	return rc;
}

static int
tls_read_key(const char *path, const uint8_t *pem, size_t len, struct tls_cred *cr, char *err,
	size_t err_len)
{
	BIO *bio = BIO_new_mem_buf(pem, (long)len);
	cr->key = bio != NULL ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
	BIO_free(bio);
	if (cr->key == NULL) {
		char what[CONFIG_STR_MAX + 64];
		snprintf(what, sizeof(what), "%s: no usable private key (PEM, unencrypted)", path);
		return tls_ctx_fail(err, err_len, what);
	}
	return 0;
}

/* The key's type and strength, and that it belongs to the leaf. */
static int
tls_check_cred(const char *path, struct tls_cred *cr, char *err, size_t err_len)
{
	const uint8_t *der = CRYPTO_BUFFER_data(cr->chain[0]);
	X509 *leaf = d2i_X509(NULL, &der, (long)CRYPTO_BUFFER_len(cr->chain[0]));
	if (leaf == NULL)
		return tls_ctx_fail(err, err_len, path);
	bool match = X509_check_private_key(leaf, cr->key) == 1;
	X509_free(leaf);
	ERR_clear_error();
	if (!match) {
		snprintf(err, err_len, "%s: the private key does not match the certificate", path);
		return -1;
	}
	int type = EVP_PKEY_id(cr->key);
	if (type == EVP_PKEY_RSA) {
		if ((unsigned)EVP_PKEY_bits(cr->key) < TLS_RSA_BITS_MIN) {
			snprintf(err, err_len, "%s: RSA key of %d bits (at least %u)", path,
				EVP_PKEY_bits(cr->key), TLS_RSA_BITS_MIN);
			return -1;
		}
		return 0;
	}
	if (type != EVP_PKEY_EC) {
		snprintf(err, err_len, "%s: the key is neither RSA nor ECDSA", path);
		return -1;
	}
	int nid = EC_GROUP_get_curve_name(EC_KEY_get0_group(EVP_PKEY_get0_EC_KEY(cr->key)));
	cr->ecdsa = true;
	cr->tls13_sigalg = nid == NID_X9_62_prime256v1 ? SSL_SIGN_ECDSA_SECP256R1_SHA256
		: nid == NID_secp384r1 ? SSL_SIGN_ECDSA_SECP384R1_SHA384
		: nid == NID_secp521r1 ? SSL_SIGN_ECDSA_SECP521R1_SHA512 : 0;
	if (cr->tls13_sigalg == 0) {
		snprintf(err, err_len, "%s: ECDSA key not on P-256, P-384 or P-521", path);
		return -1;
	}
	return 0;
}

/* A credential from a chain file and a key file (which may be the same file). */
static int
tls_load_cred(const char *cert_path, const char *key_path, struct tls_cred *cr, char *err,
	size_t err_len)
{
	size_t len = 0;
	uint8_t *pem = tls_read_file(cert_path, TLS_PEM_FILE_SIZE_MAX, &len, err, err_len);
	if (pem == NULL)
		return -1;
	int rc = tls_read_chain(cert_path, pem, len, cr, err, err_len);
	if (rc == 0 && strcmp(cert_path, key_path) != 0) {
		OPENSSL_cleanse(pem, len);
		free(pem);
		pem = tls_read_file(key_path, TLS_PEM_FILE_SIZE_MAX, &len, err, err_len);
		rc = pem != NULL ? 0 : -1;
	}
	if (rc == 0)
		rc = tls_read_key(key_path, pem, len, cr, err, err_len);
	if (rc == 0)
		rc = tls_check_cred(cert_path, cr, err, err_len);
	if (pem != NULL)
		OPENSSL_cleanse(pem, len);   /* it may hold the private key */
	free(pem);
	if (rc != 0)
		tls_cred_free(cr);
	return rc;
}

/* Puts a loaded credential in its place: one ECDSA and one RSA per name at most. */
static int
tls_creds_add(struct tls_creds *c, struct tls_cred *cr, const char *path, char *err,
	size_t err_len)
{
	struct tls_cred *slot = cr->ecdsa ? &c->ec : &c->rsa;
	if (slot->chain_len > 0) {
		snprintf(err, err_len, "%s: a second %s certificate for the same name", path,
			cr->ecdsa ? "ECDSA" : "RSA");
		tls_cred_free(cr);
		return -1;
	}
	*slot = *cr;
	memset(cr, 0, sizeof(*cr));
	return 0;
}

static int
tls_load_pair(struct tls_creds *c, const char *cert_path, const char *key_path, char *err,
	size_t err_len)
{
	struct tls_cred cr;
	memset(&cr, 0, sizeof(cr));
	if (tls_load_cred(cert_path, key_path, &cr, err, err_len) != 0)
		return -1;
	return tls_creds_add(c, &cr, cert_path, err, err_len);
}

/* ---- SNI ---- */

static bool
tls_sni_name_valid(struct slice n)
{
	if (n.len == 0 || n.len > TLS_HOST_NAME_MAX || n.ptr[0] == '.' || n.ptr[n.len - 1] == '.')
		return false;
	for (size_t i = 0; i < n.len; i++) {
		uint8_t ch = slice_ascii_lower(n.ptr[i]);
		if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '.'))
			return false;
	}
	return true;
}

/* The next blank-separated word of *line. */
static struct slice
tls_next_word(struct slice *line)
{
	while (line->len > 0 && (line->ptr[0] == ' ' || line->ptr[0] == '\t'))
		*line = slice_skip(*line, 1);
	size_t n = 0;
	while (n < line->len && line->ptr[n] != ' ' && line->ptr[n] != '\t')
		n++;
	struct slice w = slice_sub(*line, 0, n);
	*line = slice_skip(*line, n);
	return w;
}

static const struct tls_sni_entry *
tls_sni_find_exact(const struct tls_server_ctx *c, struct slice name, bool wildcard)
{
	for (uint32_t i = 0; i < c->sni_count; i++) {
		const struct tls_sni_entry *e = &c->sni[i];
		if (e->wildcard == wildcard && slice_eq_nocase(slice_make(e->name, e->name_len), name))
			return e;
	}
	return NULL;
}

/* One line "name file [file]" of the SNI file. */
static int
tls_sni_line(struct tls_server_ctx *c, const char *path, uint32_t line_no, struct slice line,
	char *err, size_t err_len)
{
	struct slice name = tls_next_word(&line);
	bool wildcard = slice_starts_with(name, SLICE_LIT("*."));
	if (wildcard)
		name = slice_skip(name, 1);   /* "*.example.org" is kept as ".example.org" */
	if (!tls_sni_name_valid(wildcard ? slice_skip(name, 1) : name)) {
		snprintf(err, err_len, "%s:%u: not a host name or *.domain", path, line_no);
		return -1;
	}
	if (tls_sni_find_exact(c, name, wildcard) != NULL || c->sni_count == TLS_SNI_NAMES_MAX) {
		snprintf(err, err_len, "%s:%u: %s", path, line_no, c->sni_count == TLS_SNI_NAMES_MAX
			? "too many names" : "name listed twice");
		return -1;
	}
	struct tls_sni_entry *e = &c->sni[c->sni_count];
	memset(e, 0, sizeof(*e));
	for (size_t i = 0; i < name.len; i++)
		e->name[i] = (char)slice_ascii_lower(name.ptr[i]);
	e->name_len = (uint16_t)name.len;
	e->wildcard = wildcard;
	uint32_t files = 0;
	for (struct slice w = tls_next_word(&line); w.len > 0; w = tls_next_word(&line)) {
		char file[CONFIG_STR_MAX];
		if (w.len >= sizeof(file) || files == 2) {
			snprintf(err, err_len, "%s:%u: one or two PEM files", path, line_no);
			tls_creds_free(&e->creds);
			return -1;
		}
		memcpy(file, w.ptr, w.len);
		file[w.len] = '\0';
		files++;
		if (tls_load_pair(&e->creds, file, file, err, err_len) != 0) {
			tls_creds_free(&e->creds);
			return -1;
		}
	}
	if (files == 0) {
		snprintf(err, err_len, "%s:%u: no PEM file for the name", path, line_no);
		return -1;
	}
	c->sni_count++;
	return 0;
}

static int
tls_sni_load(struct tls_server_ctx *c, const char *path, char *err, size_t err_len)
{
	size_t len = 0;
	uint8_t *text = tls_read_file(path, TLS_SNI_FILE_SIZE_MAX, &len, err, err_len);
	if (text == NULL)
		return -1;
	c->sni = calloc(TLS_SNI_NAMES_MAX, sizeof(c->sni[0]));
	int rc = c->sni != NULL ? 0 : -1;
	if (rc != 0)
		snprintf(err, err_len, "%s: out of memory", path);
	struct slice rest = slice_make(text, len);
	for (uint32_t line_no = 1; rc == 0 && rest.len > 0; line_no++) {
		const uint8_t *lf = memchr(rest.ptr, '\n', rest.len);
		size_t n = lf != NULL ? (size_t)(lf - rest.ptr) : rest.len;
		struct slice line = slice_sub(rest, 0, n);
		rest = slice_skip(rest, lf != NULL ? n + 1 : n);
		if (line.len > 0 && line.ptr[line.len - 1] == '\r')
			line.len--;
		struct slice probe = line;
		struct slice first = tls_next_word(&probe);
		if (first.len == 0 || first.ptr[0] == '#')
			continue;
		rc = tls_sni_line(c, path, line_no, line, err, err_len);
	}
	free(text);
	return rc;
}

/* The credentials for the name the client sent: exact name first, then "*.parent". */
static const struct tls_creds *
tls_sni_creds(const struct tls_server_ctx *c, const char *servername, bool *matched)
{
	*matched = false;
	if (servername == NULL || c->sni_count == 0)
		return &c->def;
	struct slice name = slice_make(servername, strnlen(servername, TLS_HOST_NAME_MAX + 1));
	if (name.len > 0 && name.ptr[name.len - 1] == '.')
		name.len--;
	const struct tls_sni_entry *e = tls_sni_find_exact(c, name, false);
	const uint8_t *dot = memchr(name.ptr, '.', name.len);
	if (e == NULL && dot != NULL && dot != name.ptr)
		e = tls_sni_find_exact(c, slice_skip(name, (size_t)(dot - name.ptr)), true);
	*matched = e != NULL;
	return e != NULL ? &e->creds : &c->def;
}

/* ---- choosing the certificate ---- */

static bool
tls_sigalg_listed(const uint16_t *algs, size_t n, uint16_t alg)
{
	for (size_t i = 0; i < n; i++) {
		if (algs[i] == alg)
			return true;
	}
	return false;
}

/* RFC 8446 4.2.3: in TLS 1.3 an ECDSA algorithm names its curve; in TLS 1.2 (RFC 5246
 * 7.4.1.4.1) any ECDSA hash will do, and the client must offer an ECDHE-ECDSA suite. No list at
 * all means SHA-1 only, which we never sign with: RSA then (the handshake fails either way). */
static bool
tls_peer_takes_ecdsa(SSL *ssl, const struct tls_conn_env *env, const struct tls_cred *ec)
{
	const uint16_t *algs = NULL;
	size_t n = SSL_get0_peer_verify_algorithms(ssl, &algs);
	if (SSL_version(ssl) >= TLS1_3_VERSION)
		return tls_sigalg_listed(algs, n, ec->tls13_sigalg);
	if (!env->ecdsa_suites)
		return false;
	return tls_sigalg_listed(algs, n, SSL_SIGN_ECDSA_SECP256R1_SHA256)
		|| tls_sigalg_listed(algs, n, SSL_SIGN_ECDSA_SECP384R1_SHA384)
		|| tls_sigalg_listed(algs, n, SSL_SIGN_ECDSA_SECP521R1_SHA512);
}

/* BoringSSL's certificate callback: after the ClientHello's extensions, before resumption. */
static int
tls_server_cert_cb(SSL *ssl, void *arg)
{
	const struct tls_server_ctx *c = arg;
	struct tls_conn_env *env = SSL_get_app_data(ssl);
	bool matched;
	const struct tls_creds *creds = tls_sni_creds(c, SSL_get_servername(ssl,
		TLSEXT_NAMETYPE_host_name), &matched);
	env->sni_matched = matched;
	const struct tls_cred *cr = &creds->rsa;
	if (creds->ec.chain_len > 0 && (creds->rsa.chain_len == 0
		|| tls_peer_takes_ecdsa(ssl, env, &creds->ec)))
		cr = &creds->ec;
	env->ecdsa_chosen = cr->ecdsa;
	return SSL_set_chain_and_key(ssl, cr->chain, cr->chain_len, cr->key, NULL) == 1 ? 1 : 0;
}

/* Earlier, with the raw ClientHello: does it offer ECDHE-ECDSA suites (TLS 1.2)? */
static enum ssl_select_cert_result_t
tls_server_hello_cb(const SSL_CLIENT_HELLO *hello)
{
	static const uint16_t ecdsa_suites[] = { 0xc02b, 0xc02c, 0xcca9 };   /* RFC 5289, 7905 */
	struct tls_conn_env *env = SSL_get_app_data(hello->ssl);
	env->ecdsa_suites = false;
	for (size_t i = 0; i + 1 < hello->cipher_suites_len; i += 2) {
		uint16_t s = (uint16_t)(hello->cipher_suites[i] << 8 | hello->cipher_suites[i + 1]);
		for (size_t k = 0; k < ARRAY_LEN(ecdsa_suites); k++)
			env->ecdsa_suites |= s == ecdsa_suites[k];
	}
	return ssl_select_cert_success;
}

/* ---- building ---- */

/* What server and client contexts share: versions, suites, groups, signatures, modes. */
static SSL_CTX *
tls_ssl_ctx_new(char *err, size_t err_len)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_method());
	if (ctx == NULL
		|| !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)
		|| !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION)
		|| !SSL_CTX_set_strict_cipher_list(ctx, tls_cipher_list)
		|| !SSL_CTX_set1_curves_list(ctx, tls_groups)
		|| !SSL_CTX_set_verify_algorithm_prefs(ctx, tls_sigalgs, ARRAY_LEN(tls_sigalgs))
		|| !SSL_CTX_set_signing_algorithm_prefs(ctx, tls_sigalgs, ARRAY_LEN(tls_sigalgs))
		|| !SSL_CTX_set_session_id_context(ctx, tls_sid_ctx, sizeof(tls_sid_ctx) - 1)) {
		SSL_CTX_free(ctx);
		tls_ctx_fail(err, err_len, "SSL_CTX set-up");
		return NULL;
	}
	/* Records are sealed into the engine's send queue; a partly queued record is retried. */
	SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	return ctx;
}

static void
tls_server_ctx_free(struct tls_server_ctx *c)
{
	SSL_CTX_free(c->ssl_ctx);
	tls_creds_free(&c->def);
	for (uint32_t i = 0; i < c->sni_count; i++)
		tls_creds_free(&c->sni[i].creds);
	free(c->sni);
	free(c);
	atomic_fetch_sub(&tls_ctx_live_count, 1);
}

/* The default credentials: tls_cert_file (RSA or ECDSA), tls_eccert_file (ECDSA). */
static int
tls_server_load_default(struct tls_server_ctx *c, const struct config *cfg, char *err,
	size_t err_len)
{
	if (cfg->tls_cert_file[0] != '\0'
		&& tls_load_pair(&c->def, cfg->tls_cert_file, cfg->tls_key_file, err, err_len) != 0)
		return -1;
	if (cfg->tls_eccert_file[0] != '\0') {
		struct tls_cred cr;
		memset(&cr, 0, sizeof(cr));
		if (tls_load_cred(cfg->tls_eccert_file, cfg->tls_eckey_file, &cr, err, err_len) != 0)
			return -1;
		if (!cr.ecdsa) {
			snprintf(err, err_len, "%s: tls_eccert_file holds no ECDSA certificate",
				cfg->tls_eccert_file);
			tls_cred_free(&cr);
			return -1;
		}
		if (tls_creds_add(&c->def, &cr, cfg->tls_eccert_file, err, err_len) != 0)
			return -1;
	}
	if (c->def.ec.chain_len == 0 && c->def.rsa.chain_len == 0) {
		snprintf(err, err_len, "no server certificate (tls_cert_file, tls_eccert_file)");
		return -1;
	}
	return 0;
}

int
tls_server_ctx_new(const struct config *cfg, struct tls_tickets *tk,
	struct tls_server_ctx **out, char *err, size_t err_len)
{
	ASSERT(tk != NULL);
	struct tls_server_ctx *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		snprintf(err, err_len, "out of memory");
		return -1;
	}
	atomic_init(&c->refs, 1);
	atomic_fetch_add(&tls_ctx_live_count, 1);
	c->tickets = tk;
	int rc = tls_server_load_default(c, cfg, err, err_len);
	if (rc == 0 && cfg->tls_server_sni_file[0] != '\0')
		rc = tls_sni_load(c, cfg->tls_server_sni_file, err, err_len);
	if (rc == 0) {
		c->ssl_ctx = tls_ssl_ctx_new(err, err_len);
		rc = c->ssl_ctx != NULL ? 0 : -1;
	}
	if (rc != 0) {
		tls_server_ctx_free(c);
		return -1;
	}
	SSL_CTX_set_app_data(c->ssl_ctx, c);
	SSL_CTX_set_select_certificate_cb(c->ssl_ctx, tls_server_hello_cb);
	SSL_CTX_set_cert_cb(c->ssl_ctx, tls_server_cert_cb, c);
	SSL_CTX_set_ticket_aead_method(c->ssl_ctx, &tls_ticket_method);
	SSL_CTX_set_session_cache_mode(c->ssl_ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_timeout(c->ssl_ctx, TLS_TICKET_PERIOD_S);
	SSL_CTX_set_session_psk_dhe_timeout(c->ssl_ctx, TLS_TICKET_PERIOD_S);
	SSL_CTX_set_num_tickets(c->ssl_ctx, TLS_NUM_TICKETS);
	*out = c;
	return 0;
}

void
tls_server_ctx_ref(struct tls_server_ctx *c)
{
	unsigned before = atomic_fetch_add(&c->refs, 1);
	ASSERT(before > 0);
}

void
tls_server_ctx_unref(struct tls_server_ctx *c)
{
	unsigned before = atomic_fetch_sub(&c->refs, 1);
	ASSERT(before > 0);
	if (before == 1)
		tls_server_ctx_free(c);
}

struct ssl_ctx_st *
tls_server_ctx_ssl(struct tls_server_ctx *c)
{
	return c->ssl_ctx;
}

/* ---- client ---- */

/* A session the server issued (TLS 1.3: after the handshake): into the shard's cache. */
static int
tls_client_new_session(SSL *ssl, SSL_SESSION *session)
{
	struct tls_conn_env *env = SSL_get_app_data(ssl);
	if (env == NULL || env->cache == NULL || env->host_len == 0)
		return 0;   /* not taken: BoringSSL frees it */
	bool verified = SSL_get_verify_result(ssl) == X509_V_OK;
	tls_cache_put(env->cache, slice_make(env->host, env->host_len), session, verified);
	return 1;
}

int
tls_client_ctx_new(const struct config *cfg, struct tls_client_ctx **out, char *err,
	size_t err_len)
{
	struct tls_client_ctx *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		snprintf(err, err_len, "out of memory");
		return -1;
	}
	atomic_init(&c->refs, 1);
	atomic_fetch_add(&tls_ctx_live_count, 1);
	c->ssl_ctx = tls_ssl_ctx_new(err, err_len);
	const char *ca = cfg->smtp_tls_ca_file[0] != '\0' ? cfg->smtp_tls_ca_file
		: TLS_CA_FILE_DEFAULT;
	if (c->ssl_ctx != NULL && SSL_CTX_load_verify_locations(c->ssl_ctx, ca, NULL) != 1) {
		char what[CONFIG_STR_MAX + 32];
		snprintf(what, sizeof(what), "%s: CA certificates", ca);
		tls_ctx_fail(err, err_len, what);
		SSL_CTX_free(c->ssl_ctx);
		c->ssl_ctx = NULL;
	}
	if (c->ssl_ctx == NULL) {
		tls_client_ctx_unref(c);
		return -1;
	}
	SSL_CTX_set_session_cache_mode(c->ssl_ctx, SSL_SESS_CACHE_CLIENT
		| SSL_SESS_CACHE_NO_INTERNAL);
	SSL_CTX_sess_set_new_cb(c->ssl_ctx, tls_client_new_session);
	*out = c;
	return 0;
}

void
tls_client_ctx_ref(struct tls_client_ctx *c)
{
	unsigned before = atomic_fetch_add(&c->refs, 1);
	ASSERT(before > 0);
}

void
tls_client_ctx_unref(struct tls_client_ctx *c)
{
	unsigned before = atomic_fetch_sub(&c->refs, 1);
	ASSERT(before > 0);
	if (before != 1)
		return;
	SSL_CTX_free(c->ssl_ctx);
	free(c);
	atomic_fetch_sub(&tls_ctx_live_count, 1);
}

struct ssl_ctx_st *
tls_client_ctx_ssl(struct tls_client_ctx *c)
{
	return c->ssl_ctx;
}

uint32_t
tls_ctx_live(void)
{
	return atomic_load(&tls_ctx_live_count);
}

/* ---- publication ---- */

void
tls_server_slot_init(struct tls_server_slot *slot, struct tls_server_ctx *first)
{
	ASSERT(first != NULL);
	pthread_mutex_init(&slot->lock, NULL);
	slot->cur = first;
	atomic_init(&slot->gen, 1);
}

void
tls_server_slot_publish(struct tls_server_slot *slot, struct tls_server_ctx *next)
{
	ASSERT(next != NULL);
	pthread_mutex_lock(&slot->lock);
	struct tls_server_ctx *old = slot->cur;
	slot->cur = next;
	atomic_fetch_add_explicit(&slot->gen, 1, memory_order_release);
	pthread_mutex_unlock(&slot->lock);
	tls_server_ctx_unref(old);
}

void
tls_server_slot_fini(struct tls_server_slot *slot)
{
	tls_server_ctx_unref(slot->cur);
	slot->cur = NULL;
	pthread_mutex_destroy(&slot->lock);
}

void
tls_server_view_init(struct tls_server_view *v, struct tls_server_slot *slot)
{
	v->slot = slot;
	v->gen = 0;
	v->ctx = NULL;
	(void)tls_server_view_get(v);
}

struct tls_server_ctx *
tls_server_view_get(struct tls_server_view *v)
{
	uint64_t gen = atomic_load_explicit(&v->slot->gen, memory_order_acquire);
	if (gen == v->gen)
		return v->ctx;
	pthread_mutex_lock(&v->slot->lock);
	struct tls_server_ctx *cur = v->slot->cur;
	tls_server_ctx_ref(cur);
	v->gen = atomic_load_explicit(&v->slot->gen, memory_order_relaxed);
	pthread_mutex_unlock(&v->slot->lock);
	if (v->ctx != NULL)
		tls_server_ctx_unref(v->ctx);
	v->ctx = cur;
	return cur;
}

void
tls_server_view_fini(struct tls_server_view *v)
{
	if (v->ctx != NULL)
		tls_server_ctx_unref(v->ctx);
	v->ctx = NULL;
}
