/* perf/tls_bench.c - the TLS stage's cost per handshake and per byte, in memory (a benchmark,
 * not a test).
 *
 * A client stage and a server stage on one thread, their records passed through memory. Each
 * side's time is measured around its own calls, so "server" is what one shard spends per
 * connection: full handshakes with ECDSA P-256 and with RSA-2048 (TLS 1.3, X25519), each
 * followed by one short server reply (which carries the ticket), resumed handshakes (ticket),
 * and sealing/opening 16 KiB records. The "crypto floor" is the server's
 * public-key work per full handshake measured alone with the same library (one signature, one
 * X25519 key pair and one X25519 agreement): server time / floor says how much is plumbing
 * (ours and BoringSSL's handshake logic). Certificates are made in memory. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/curve25519.h>
#include <openssl/ec_key.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/sha.h>
#include <openssl/x509.h>

#include "conf/config.h"
#include "tls/tls_cache.h"
#include "tls/tls_ctx.h"
#include "tls/tls_stage.h"

#define BENCH_WIRE_MAX (1u << 18)
#define BENCH_ROUNDS_MAX 1000u
#define BENCH_DATA (16u << 20)   /* octets through the record layer */

static uint64_t bench_clock_ms = 1700000000000ull;

static double
bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void
bench_die(const char *what)
{
	fprintf(stderr, "tls_bench: %s\n", what);
	exit(1);
}

/* A self-signed certificate for key, written with the key to path. */
static void
bench_cert(EVP_PKEY *key, const char *path)
{
	X509 *x = X509_new();
	if (x == NULL)
		bench_die("X509_new");
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const uint8_t *)"bench.example", -1,
		-1, 0);
	X509_set_issuer_name(x, name);
	X509_set_pubkey(x, key);
	FILE *f = fopen(path, "w");
	if (X509_sign(x, key, EVP_sha256()) <= 0 || f == NULL
		|| !PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) || !PEM_write_X509(f, x))
		bench_die("writing a certificate");
	fclose(f);
	X509_free(x);
}

static EVP_PKEY *
bench_ec_key(void)
{
	EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
	EVP_PKEY *key = EVP_PKEY_new();
	if (ec == NULL || key == NULL || !EC_KEY_generate_key(ec) || !EVP_PKEY_assign_EC_KEY(key, ec))
		bench_die("EC key");
	return key;
}

static EVP_PKEY *
bench_rsa_key(void)
{
	RSA *rsa = RSA_new();
	BIGNUM *e = BN_new();
	EVP_PKEY *key = EVP_PKEY_new();
	if (rsa == NULL || e == NULL || key == NULL || !BN_set_word(e, RSA_F4)
		|| !RSA_generate_key_ex(rsa, 2048, e, NULL) || !EVP_PKEY_assign_RSA(key, rsa))
		bench_die("RSA key");
	BN_free(e);
	return key;
}

struct bench_side {
	struct tls_stage st;
	uint8_t *rx;         /* the peer's records waiting for us */
	size_t rx_len;
	double time;         /* seconds inside this side's calls */
	bool done;
};

static uint8_t bench_plain[1u << 17];

/* One recv call of a, its records going to b. */
static bool
bench_step(struct bench_side *a, struct bench_side *b)
{
	struct tls_out out = { .ptr = b->rx + b->rx_len, .cap = BENCH_WIRE_MAX - b->rx_len };
	struct tls_step s;
	double t0 = bench_now();
	int rc = tls_stage_recv(&a->st, slice_make(a->rx, a->rx_len), bench_plain,
		sizeof(bench_plain), &out, &s);
	a->time += bench_now() - t0;
	if (rc != 0)
		bench_die(tls_stage_reason(&a->st));
	memmove(a->rx, a->rx + s.in_used, a->rx_len - s.in_used);
	a->rx_len -= s.in_used;
	b->rx_len += out.len;
	a->done |= s.handshake_done;
	return s.in_used > 0 || out.len > 0 || s.handshake_done || s.plain_len > 0;
}

static void
bench_pump(struct bench_side *c, struct bench_side *s)
{
	for (uint32_t r = 0; r < BENCH_ROUNDS_MAX; r++) {
		bool moved = bench_step(c, s);
		moved = bench_step(s, c) || moved;
		if (!moved)
			return;
	}
	bench_die("no end to the handshake");
}

/* n handshakes; the server's and the client's seconds per handshake; resumed count. */
static void
bench_handshakes(struct tls_server_ctx *sc, struct tls_client_ctx *cc, struct tls_cache *cache,
	uint32_t n, double *server_s, double *client_s, uint32_t *resumed)
{
	static struct bench_side c, s;
	static uint8_t c_rx[BENCH_WIRE_MAX], s_rx[BENCH_WIRE_MAX];
	*server_s = *client_s = 0;
	*resumed = 0;
	for (uint32_t i = 0; i < n; i++) {
		c.rx = c_rx;
		s.rx = s_rx;
		c.rx_len = s.rx_len = 0;
		c.time = s.time = 0;
		c.done = s.done = false;
		struct tls_client_params p = { .level = CONFIG_TLS_MAY,
			.host = SLICE_LIT("bench.example"), .cache = cache };
		double t0 = bench_now();
		if (tls_stage_client_init(&c.st, cc, &p, &bench_clock_ms) != 0)
			bench_die("client init");
		double t1 = bench_now();
		if (tls_stage_server_init(&s.st, sc, &bench_clock_ms) != 0)
			bench_die("server init");
		double t2 = bench_now();
		c.time += t1 - t0;
		s.time += t2 - t1;
		bench_pump(&c, &s);
		if (!c.done || !s.done)
			bench_die("handshake did not finish");
		/* The server's first words (the 220 or EHLO answer) carry the TLS 1.3 ticket out. */
		struct tls_out out = { .ptr = c.rx + c.rx_len, .cap = BENCH_WIRE_MAX - c.rx_len };
		size_t used;
		t0 = bench_now();
		if (tls_stage_send(&s.st, SLICE_LIT("250 ok\r\n"), &out, &used) != 0)
			bench_die("server send");
		s.time += bench_now() - t0;
		c.rx_len += out.len;
		bench_pump(&c, &s);
		*resumed += tls_stage_resumed(&s.st);
		t0 = bench_now();
		tls_stage_fini(&s.st);
		t1 = bench_now();
		tls_stage_fini(&c.st);
		s.time += t1 - t0;
		c.time += bench_now() - t1;
		*server_s += s.time;
		*client_s += c.time;
	}
	*server_s /= n;
	*client_s /= n;
}

/* Seconds per server-side public-key work of one full handshake (best of three runs): its
 * X25519 key pair, the X25519 agreement with the client's share, the CertificateVerify
 * signature (ECDSA, or RSA-PSS as TLS 1.3 uses). */
static double
bench_floor(EVP_PKEY *key, uint32_t n)
{
	uint8_t digest[SHA256_DIGEST_LENGTH] = { 1 };
	uint8_t sig[512], peer_pub[32], peer_priv[32];
	X25519_keypair(peer_pub, peer_priv);
	double best = 1e9;
	for (int run = 0; run < 3; run++) {
		double t0 = bench_now();
		for (uint32_t i = 0; i < n; i++) {
			uint8_t pub[32], priv[32], shared[32];
			X25519_keypair(pub, priv);
			size_t sig_len = sizeof(sig);
			EVP_PKEY_CTX *pctx = EVP_PKEY_CTX_new(key, NULL);
			int ok = X25519(shared, priv, peer_pub) == 1 && pctx != NULL
				&& EVP_PKEY_sign_init(pctx) == 1
				&& EVP_PKEY_CTX_set_signature_md(pctx, EVP_sha256()) == 1
				&& (EVP_PKEY_id(key) != EVP_PKEY_RSA
					|| EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1)
				&& EVP_PKEY_sign(pctx, sig, &sig_len, digest, sizeof(digest)) == 1;
			EVP_PKEY_CTX_free(pctx);
			if (!ok)
				bench_die("floor");
		}
		double t = (bench_now() - t0) / n;
		best = t < best ? t : best;
	}
	return best;
}

/* Client to server and back, 16 KiB records: seconds per octet each way (seal + open). */
static double
bench_records(struct tls_server_ctx *sc, struct tls_client_ctx *cc)
{
	static struct bench_side c, s;
	static uint8_t c_rx[BENCH_WIRE_MAX], s_rx[BENCH_WIRE_MAX];
	static uint8_t data[TLS_RECORD_PLAIN_MAX];
	memset(data, 'x', sizeof(data));
	c.rx = c_rx;
	s.rx = s_rx;
	struct tls_client_params p = { .level = CONFIG_TLS_MAY, .host = SLICE_LIT("bench.example") };
	if (tls_stage_client_init(&c.st, cc, &p, &bench_clock_ms) != 0
		|| tls_stage_server_init(&s.st, sc, &bench_clock_ms) != 0)
		bench_die("init");
	bench_pump(&c, &s);
	double t0 = bench_now();
	for (size_t sent = 0; sent < BENCH_DATA; sent += sizeof(data)) {
		struct tls_out out = { .ptr = s.rx + s.rx_len, .cap = BENCH_WIRE_MAX - s.rx_len };
		size_t used;
		if (tls_stage_send(&c.st, slice_make(data, sizeof(data)), &out, &used) != 0
			|| used != sizeof(data))
			bench_die("send");
		s.rx_len += out.len;
		bench_step(&s, &c);
	}
	double t = bench_now() - t0;
	tls_stage_fini(&c.st);
	tls_stage_fini(&s.st);
	return t / BENCH_DATA;
}

static void
bench_kind(const char *label, EVP_PKEY *key, const char *path, struct tls_tickets *tk,
	uint32_t n)
{
	bench_cert(key, path);
	struct config cfg;
	config_default(&cfg);
	snprintf(cfg.tls_cert_file, sizeof(cfg.tls_cert_file), "%s", path);
	snprintf(cfg.tls_key_file, sizeof(cfg.tls_key_file), "%s", path);
	char err[TLS_CTX_ERR_MAX];
	struct tls_server_ctx *sc;
	struct tls_client_ctx *cc;
	if (tls_server_ctx_new(&cfg, tk, &sc, err, sizeof(err)) != 0
		|| tls_client_ctx_new(&cfg, &cc, err, sizeof(err)) != 0)
		bench_die(err);
	double srv, cli, floor_s = bench_floor(key, n);
	uint32_t resumed;
	bench_handshakes(sc, cc, NULL, n / 10, &srv, &cli, &resumed);   /* warm-up */
	bench_handshakes(sc, cc, NULL, n, &srv, &cli, &resumed);
	printf("%-12s full handshake   server %7.1f us (%6.0f/s per core)   client %7.1f us\n",
		label, srv * 1e6, 1.0 / srv, cli * 1e6);
	printf("%-12s crypto floor     server %7.1f us (%6.0f/s)   server time / floor %.2f\n",
		label, floor_s * 1e6, 1.0 / floor_s, srv / floor_s);
	struct tls_cache *cache;
	if (tls_cache_new(16, &cache) != 0)
		bench_die("cache");
	bench_handshakes(sc, cc, cache, n, &srv, &cli, &resumed);
	printf("%-12s resumed (ticket) server %7.1f us (%6.0f/s per core)   client %7.1f us   "
		"%u/%u resumed\n", label, srv * 1e6, 1.0 / srv, cli * 1e6, resumed, n);
	tls_cache_free(cache);
	double per_octet = bench_records(sc, cc);
	printf("%-12s 16 KiB records   seal+open %.2f GB/s (one core, both sides)\n", label,
		1e-9 / per_octet);
	tls_client_ctx_unref(cc);
	tls_server_ctx_unref(sc);
	unlink(path);
}

int
main(int argc, char **argv)
{
	uint32_t n = argc > 1 ? (uint32_t)strtoul(argv[1], NULL, 10) : 2000u;
	if (n < 10)
		n = 10;
	char dir[] = "/tmp/ringmta-tls-bench-XXXXXX";
	if (mkdtemp(dir) == NULL)
		bench_die("mkdtemp");
	char path[sizeof(dir) + 16];
	struct tls_tickets *tk;
	if (tls_tickets_new(&tk) != 0)
		bench_die("tickets");
	printf("TLS 1.3, X25519, %u handshakes each, one thread (client and server timed apart)\n",
		n);
	snprintf(path, sizeof(path), "%s/ec.pem", dir);
	EVP_PKEY *ec = bench_ec_key();
	bench_kind("ECDSA P-256", ec, path, tk, n);
	snprintf(path, sizeof(path), "%s/rsa.pem", dir);
	EVP_PKEY *rsa = bench_rsa_key();
	bench_kind("RSA-2048", rsa, path, tk, n / 4 > 10 ? n / 4 : 10);
	EVP_PKEY_free(ec);
	EVP_PKEY_free(rsa);
	tls_tickets_free(tk);
	rmdir(dir);
	return 0;
}
