/* tests/fuzz/tls_stage_fuzz.c - untrusted bytes into a TLS stage, as the engine would feed them.
 *
 * Input: a mode byte, a seed byte for the split sizes, then the peer's byte stream. Mode bit 0:
 * the stream goes to a server stage (a client's ClientHello and what follows), else to a client
 * stage that has sent its ClientHello (a server's flight). Mode bit 1: a one-octet plaintext
 * buffer; bit 2: a small send space. Checked on every call: in_used <= offered; the send space
 * never overflows; plaintext only after handshake_done; a failure has a reason and ends the
 * stream; -EPROTO is the only error. The server certificate is made in memory at start-up.
 * Nothing may abort the process but these checks. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ec_key.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "conf/config.h"
#include "tls/tls_ctx.h"
#include "tls/tls_stage.h"

#define FUZZ_STREAM_MAX (1u << 16)
#define FUZZ_PLAIN_MAX (1u << 16)
#define FUZZ_OUT_MAX (1u << 18)
#define FUZZ_CALLS_MAX 100000u

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static struct tls_tickets *fuzz_tickets;
static struct tls_server_ctx *fuzz_server;
static struct tls_client_ctx *fuzz_client;
static uint64_t fuzz_now = 1700000000000ull;
static uint8_t fuzz_plain[FUZZ_PLAIN_MAX];
static uint8_t fuzz_out[FUZZ_OUT_MAX];

/* A self-signed P-256 certificate and its key in one PEM file. */
static void
fuzz_make_cert(const char *path)
{
	EC_KEY *ec = EC_KEY_new_by_curve_name(NID_X9_62_prime256v1);
	CHECK(ec != NULL && EC_KEY_generate_key(ec));
	EVP_PKEY *key = EVP_PKEY_new();
	CHECK(key != NULL && EVP_PKEY_assign_EC_KEY(key, ec));
	X509 *x = X509_new();
	CHECK(x != NULL);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400);
	X509_NAME *name = X509_get_subject_name(x);
	X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const uint8_t *)"fuzz.example", -1,
		-1, 0);
	X509_set_issuer_name(x, name);
	X509_set_pubkey(x, key);
	CHECK(X509_sign(x, key, EVP_sha256()) > 0);
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	CHECK(PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL));
	CHECK(PEM_write_X509(f, x));
	fclose(f);
	X509_free(x);
	EVP_PKEY_free(key);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char dir[] = "/tmp/ringmta-tls-fuzz-XXXXXX";
	CHECK(mkdtemp(dir) != NULL);
	char path[sizeof(dir) + 16];
	snprintf(path, sizeof(path), "%s/cert.pem", dir);
	fuzz_make_cert(path);
	static struct config cfg;
	config_default(&cfg);
	snprintf(cfg.tls_cert_file, sizeof(cfg.tls_cert_file), "%s", path);
	snprintf(cfg.tls_key_file, sizeof(cfg.tls_key_file), "%s", path);
	char err[TLS_CTX_ERR_MAX];
	CHECK(tls_tickets_new(&fuzz_tickets) == 0);
	CHECK(tls_server_ctx_new(&cfg, fuzz_tickets, &fuzz_server, err, sizeof(err)) == 0);
	CHECK(tls_client_ctx_new(&cfg, &fuzz_client, err, sizeof(err)) == 0);
	unlink(path);
	rmdir(dir);
	return 0;
}

/* One call; returns false when the stage is done (failed or closed). */
static bool
fuzz_call(struct tls_stage *st, struct slice in, size_t plain_cap, size_t out_cap,
	size_t *used)
{
	struct tls_out out = { .ptr = fuzz_out, .cap = out_cap, .len = 0 };
	struct tls_step step;
	bool was_done = tls_stage_handshake_done(st);
	int rc = tls_stage_recv(st, in, fuzz_plain, plain_cap, &out, &step);
	CHECK(step.in_used <= in.len);
	CHECK(out.len <= out_cap);
	CHECK(step.plain_len <= plain_cap);
	CHECK(step.plain_len == 0 || tls_stage_handshake_done(st));
	CHECK(!step.handshake_done || !was_done);
	*used = step.in_used;
	if (rc != 0) {
		CHECK(rc == -EPROTO);
		CHECK(tls_stage_failed(st));
		CHECK(tls_stage_reason(st)[0] != '\0');
		return false;
	}
	return !step.peer_closed;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2 || size - 2 > FUZZ_STREAM_MAX)
		return 0;
	uint8_t mode = data[0];
	uint32_t rng = data[1] | 0x100u;
	size_t plain_cap = (mode & 2) ? 1 : FUZZ_PLAIN_MAX;
	size_t out_cap = (mode & 4) ? 16 : FUZZ_OUT_MAX;
	struct tls_stage st;
	size_t used;
	if (mode & 1) {
		CHECK(tls_stage_server_init(&st, fuzz_server, &fuzz_now) == 0);
	} else {
		struct tls_client_params p = { .level = CONFIG_TLS_MAY,
			.host = SLICE_LIT("fuzz.example") };
		CHECK(tls_stage_client_init(&st, fuzz_client, &p, &fuzz_now) == 0);
		(void)fuzz_call(&st, slice_make(NULL, 0), plain_cap, FUZZ_OUT_MAX, &used);
	}
	struct slice rest = slice_make(data + 2, size - 2);
	size_t offered = 0;   /* of rest, offered but not taken yet, plus the new chunk */
	bool alive = true;
	for (uint32_t calls = 0; calls < FUZZ_CALLS_MAX && alive; calls++) {
		rng = rng * 1103515245u + 12345u;
		size_t chunk = 1 + (rng >> 16) % 300;
		if (offered + chunk > rest.len)
			chunk = rest.len - offered;
		offered += chunk;
		alive = fuzz_call(&st, slice_sub(rest, 0, offered), plain_cap, out_cap, &used);
		rest = slice_skip(rest, used);
		offered -= used;
		if (used == 0 && chunk == 0)
			break;   /* nothing new to offer and nothing taken */
	}
	tls_stage_fini(&st);
	return 0;
}
