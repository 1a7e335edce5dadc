/* tests/unit/tls_stage_test.c - the TLS stage and its contexts, with two in-memory endpoints.
 *
 * A client stage and a server stage talk through two byte queues ("wires"), the way the engine
 * would carry their records. The wire can hand the bytes over whole, one byte at a time, or cut
 * at any offset of the stream; the stage's `out` space can be made tiny to force partial
 * writes. Test certificates (a CA, ECDSA and RSA leaves, SNI names, a self-signed one) are made
 * at test time by the openssl command in a private temporary directory, removed at the end.
 *
 * BoringSSL is used directly only to build special peers (a TLS 1.2-only client, one that
 * cannot verify ECDSA) through the stage's SSL object. */
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/ssl.h>

#include "conf/config.h"
#include "tls/tls_cache.h"
#include "tls/tls_ctx.h"
#include "tls/tls_stage.h"

#define WIRE_MAX (1u << 20)
#define PLAIN_MAX (1u << 20)
#define PUMP_ROUNDS_MAX 200000u
#define HOST "mx.test.example"
#define DIR_ENV "RINGMTA_TLS_TEST_DIR"
#define T0_MS 1700000000000ull   /* some real time, in ms */

/* ---- certificates ---- */

static const char cert_script[] =
	"set -e\n"
	"cd \"$1\"\n"
	"EC='ec -pkeyopt ec_paramgen_curve:P-256'\n"
	"openssl req -x509 -new -newkey $EC -nodes -keyout ca.key -out ca.pem -days 3 "
	"  -subj '/CN=ringmta test CA' 2>/dev/null\n"
	"leaf() {\n"
	"  openssl req -new -newkey $2 -nodes -keyout $3.key -out $3.csr -subj \"/CN=$1\" "
	"    2>/dev/null\n"
	"  printf 'basicConstraints=critical,CA:FALSE\\nkeyUsage=critical,digitalSignature,"
	"keyEncipherment\\nextendedKeyUsage=serverAuth\\nsubjectAltName=DNS:%s\\n' \"$1\" > $3.ext\n"
	"  openssl x509 -req -in $3.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 3 "
	"    -extfile $3.ext -out $3.pem 2>/dev/null\n"
	"  cat $3.key $3.pem > $3.bundle\n"
	"}\n"
	"leaf " HOST " \"$EC\" ec\n"
	"leaf " HOST " rsa:2048 rsa\n"
	"leaf " HOST " \"$EC\" ec2\n"
	"leaf other.test.example \"$EC\" other\n"
	"leaf other.test.example rsa:2048 other_rsa\n"
	"leaf '*.wild.test.example' \"$EC\" wild\n"
	"leaf " HOST " rsa:1024 weak\n"
	"openssl req -x509 -new -newkey $EC -nodes -keyout self.key -out self.pem -days 3 "
	"  -subj '/CN=" HOST "' -addext 'subjectAltName=DNS:" HOST "' 2>/dev/null\n"
	"printf 'garbage\\n' > junk.pem\n";

static char cert_dir[PATH_MAX];

ReportHook(PRE_ALL)(struct criterion_test_set *tests)
{
	(void)tests;
	char tmpl[] = "/tmp/ringmta-tls-test-XXXXXX";
	char *d = mkdtemp(tmpl);
	if (d == NULL)
		return;
	char script[PATH_MAX + 32];
	snprintf(script, sizeof(script), "%s/make.sh", d);
	FILE *f = fopen(script, "w");
	if (f == NULL)
		return;
	fputs(cert_script, f);
	fclose(f);
	char cmd[3 * PATH_MAX];
	snprintf(cmd, sizeof(cmd), "sh %s %s", script, d);
	if (system(cmd) == 0)
		setenv(DIR_ENV, d, 1);
	snprintf(cert_dir, sizeof(cert_dir), "%s", d);
}

ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	(void)stats;
	if (cert_dir[0] == '\0')
		return;
	char cmd[PATH_MAX + 16];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", cert_dir);
	if (system(cmd) != 0)
		fprintf(stderr, "could not remove %s\n", cert_dir);
}

/* The path of a generated file, in one of a few rotating buffers. */
static const char *
cpath(const char *name)
{
	static char bufs[8][PATH_MAX];
	static unsigned next;
	const char *d = getenv(DIR_ENV);
	cr_assert_not_null(d, "test certificates were not made (is openssl installed?)");
	char *b = bufs[next++ % 8];
	snprintf(b, PATH_MAX, "%s/%s", d, name);
	return b;
}

/* ---- configurations and contexts ---- */

static struct config cfg;
static uint64_t now_ms;
static struct tls_tickets *tickets;

static void
setup(void)
{
	now_ms = T0_MS;
	cr_assert_eq(tls_tickets_new(&tickets), 0);
}

static void
teardown(void)
{
	tls_tickets_free(tickets);
	tickets = NULL;
}

static void
set_str(char *field, const char *v)
{
	snprintf(field, CONFIG_STR_MAX, "%s", v == NULL ? "" : v);
}

/* A server configuration: cert/key (either kind), eccert/eckey, SNI file; NULL for none. */
static void
cfg_server(const char *cert, const char *key, const char *eccert, const char *eckey,
	const char *sni)
{
	config_default(&cfg);
	set_str(cfg.tls_cert_file, cert);
	set_str(cfg.tls_key_file, key);
	set_str(cfg.tls_eccert_file, eccert);
	set_str(cfg.tls_eckey_file, eckey);
	set_str(cfg.tls_server_sni_file, sni);
	set_str(cfg.smtp_tls_ca_file, cpath("ca.pem"));
}

static struct tls_server_ctx *
server_ctx(void)
{
	struct tls_server_ctx *c = NULL;
	char err[TLS_CTX_ERR_MAX] = "";
	cr_assert_eq(tls_server_ctx_new(&cfg, tickets, &c, err, sizeof(err)), 0, "%s", err);
	return c;
}

/* Both pairs: the default for most tests. */
static struct tls_server_ctx *
server_ctx_both(void)
{
	cfg_server(cpath("rsa.pem"), cpath("rsa.key"), cpath("ec.pem"), cpath("ec.key"), NULL);
	return server_ctx();
}

static struct tls_client_ctx *
client_ctx(void)
{
	struct config c;
	config_default(&c);
	set_str(c.smtp_tls_ca_file, cpath("ca.pem"));
	struct tls_client_ctx *cc = NULL;
	char err[TLS_CTX_ERR_MAX] = "";
	cr_assert_eq(tls_client_ctx_new(&c, &cc, err, sizeof(err)), 0, "%s", err);
	return cc;
}

/* ---- two endpoints and the wires between them ---- */

struct wire {
	uint8_t *buf;
	size_t len;               /* octets waiting for the other side */
	size_t taken;             /* octets the other side has consumed, in all */
};

struct end {
	const char *name;
	struct tls_stage st;
	struct wire *tx;          /* our records go here */
	struct wire *rx;          /* the peer's records come from here */
	uint8_t *plain;           /* what we received */
	size_t plain_len;
	size_t plain_cap;         /* per call */
	struct slice send;        /* what we send once the handshake is done */
	size_t sent;
	size_t out_cap;           /* our send space per call */
	size_t cut;               /* rx: stop at this offset of the stream once (0: none) */
	bool bytewise;            /* rx: one octet per call */
	bool done;
	bool failed;
	bool closed;
	uint32_t out_full;        /* calls that stopped on a full out */
};

static struct wire *
wire_new(void)
{
	struct wire *w = calloc(1, sizeof(*w));
	w->buf = malloc(WIRE_MAX);
	cr_assert(w != NULL && w->buf != NULL);
	return w;
}

static void
wire_free(struct wire *w)
{
	free(w->buf);
	free(w);
}

static struct end *
end_new(const char *name, struct wire *tx, struct wire *rx)
{
	struct end *e = calloc(1, sizeof(*e));
	e->plain = malloc(PLAIN_MAX);
	cr_assert(e != NULL && e->plain != NULL);
	e->name = name;
	e->tx = tx;
	e->rx = rx;
	e->plain_cap = PLAIN_MAX;
	e->out_cap = WIRE_MAX;
	return e;
}

static void
end_free(struct end *e)
{
	tls_stage_fini(&e->st);
	free(e->plain);
	free(e);
}

static struct end *
server_end(struct tls_server_ctx *c, struct wire *tx, struct wire *rx)
{
	struct end *e = end_new("server", tx, rx);
	cr_assert_eq(tls_stage_server_init(&e->st, c, &now_ms), 0);
	return e;
}

static struct end *
client_end(struct tls_client_ctx *c, uint8_t level, const char *host, struct tls_cache *cache,
	struct wire *tx, struct wire *rx)
{
	struct end *e = end_new("client", tx, rx);
	struct tls_client_params p = { .level = level, .host = slice_make(host, strlen(host)),
		.cache = cache };
	cr_assert_eq(tls_stage_client_init(&e->st, c, &p, &now_ms), 0);
	return e;
}

static struct tls_out
end_out(struct end *e)
{
	size_t room = WIRE_MAX - e->tx->len;
	return (struct tls_out){ .ptr = e->tx->buf + e->tx->len,
		.cap = room < e->out_cap ? room : e->out_cap, .len = 0 };
}

/* How much of rx this call may see. */
static size_t
end_offer(const struct end *e)
{
	size_t n = e->rx->len;
	if (e->bytewise && n > 1)
		n = 1;
	if (e->cut > e->rx->taken && e->cut < e->rx->taken + n)
		n = e->cut - e->rx->taken;
	return n;
}

static bool
end_send(struct end *e)
{
	if (!e->done || e->failed || e->sent == e->send.len)
		return false;
	struct tls_out out = end_out(e);
	size_t used = 0;
	int rc = tls_stage_send(&e->st, slice_skip(e->send, e->sent), &out, &used);
	cr_assert_eq(rc, 0, "%s send: %s", e->name, tls_stage_reason(&e->st));
	cr_assert_leq(out.len, out.cap);
	e->tx->len += out.len;
	e->sent += used;
	return used > 0 || out.len > 0;
}

/* One call of e; true if anything moved. */
static bool
end_step(struct end *e)
{
	if (e->failed)
		return false;
	struct tls_out out = end_out(e);
	struct tls_step s;
	size_t offer = end_offer(e);
	size_t cap = PLAIN_MAX - e->plain_len < e->plain_cap ? PLAIN_MAX - e->plain_len
		: e->plain_cap;
	int rc = tls_stage_recv(&e->st, slice_make(e->rx->buf, offer), e->plain + e->plain_len,
		cap, &out, &s);
	cr_assert_leq(s.in_used, offer, "%s took more than it was offered", e->name);
	cr_assert_leq(s.plain_len, cap);
	cr_assert_leq(out.len, out.cap);
	memmove(e->rx->buf, e->rx->buf + s.in_used, e->rx->len - s.in_used);
	e->rx->len -= s.in_used;
	e->rx->taken += s.in_used;
	e->tx->len += out.len;
	e->plain_len += s.plain_len;
	e->out_full += s.out_full;
	if (s.handshake_done) {
		cr_assert_not(e->done, "handshake_done is reported once");
		e->done = true;
		cr_assert(tls_stage_handshake_done(&e->st));
	}
	if (s.peer_closed)
		e->closed = true;
	if (rc != 0) {
		cr_assert_eq(rc, -EPROTO);
		cr_assert(tls_stage_failed(&e->st));
		cr_assert_neq(tls_stage_reason(&e->st)[0], '\0', "a failure says why");
		e->failed = true;
		return true;
	}
	bool moved = s.in_used > 0 || out.len > 0 || s.plain_len > 0 || s.handshake_done
		|| s.out_full;
	return end_send(e) || moved;
}

/* Runs both ends until neither moves. */
static void
pump(struct end *a, struct end *b)
{
	for (uint32_t round = 0; round < PUMP_ROUNDS_MAX; round++) {
		bool moved = end_step(a);
		moved = end_step(b) || moved;
		if (!moved)
			return;
	}
	cr_assert_fail("no end to the conversation");
}

/* A connected pair; client gets data_c to send, the server data_s. */
struct pair {
	struct wire *c2s, *s2c;
	struct end *c, *s;
};

static struct pair
pair_new(struct tls_server_ctx *sc, struct tls_client_ctx *cc, uint8_t level, const char *host,
	struct tls_cache *cache)
{
	struct pair p;
	p.c2s = wire_new();
	p.s2c = wire_new();
	p.c = client_end(cc, level, host, cache, p.c2s, p.s2c);
	p.s = server_end(sc, p.s2c, p.c2s);
	return p;
}

static void
pair_free(struct pair *p)
{
	end_free(p->c);
	end_free(p->s);
	wire_free(p->c2s);
	wire_free(p->s2c);
}

static uint8_t big[100000];

static void
fill_big(void)
{
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 131 + i / 7);
}

/* Both ways: a short command one way, more than a few records the other. */
static void
pair_data(struct pair *p)
{
	fill_big();
	p->c->send = SLICE_LIT("EHLO client.test.example\r\n");
	p->s->send = slice_make(big, sizeof(big));
}

static void
expect_data(const struct pair *p)
{
	cr_assert(p->c->done && p->s->done, "handshake done on both sides");
	cr_assert_not(p->c->failed || p->s->failed, "client: %s / server: %s",
		tls_stage_reason(&p->c->st), tls_stage_reason(&p->s->st));
	cr_assert_eq(p->s->plain_len, p->c->send.len);
	cr_assert(memcmp(p->s->plain, p->c->send.ptr, p->c->send.len) == 0);
	cr_assert_eq(p->c->plain_len, p->s->send.len, "client got %zu of %zu", p->c->plain_len,
		p->s->send.len);
	cr_assert(memcmp(p->c->plain, p->s->send.ptr, p->s->send.len) == 0);
	cr_assert_eq(p->c2s->len, 0, "the server consumed every octet");
	cr_assert_eq(p->s2c->len, 0, "the client consumed every octet");
}

TestSuite(tls_stage, .init = setup, .fini = teardown, .timeout = 240);

/* ---- handshake and data ---- */

Test(tls_stage, full_handshake_and_data_both_ways)
{
	struct tls_server_ctx *sc = server_ctx_both();
	struct tls_client_ctx *cc = client_ctx();
	struct pair p = pair_new(sc, cc, CONFIG_TLS_VERIFY, HOST, NULL);
	pair_data(&p);
	pump(p.c, p.s);
	expect_data(&p);
	cr_assert_str_eq(tls_stage_protocol(&p.s->st), "TLSv1.3");
	cr_assert_str_eq(tls_stage_protocol(&p.c->st), "TLSv1.3");
	cr_assert(strncmp(tls_stage_cipher(&p.s->st), "TLS_", 4) == 0, "%s",
		tls_stage_cipher(&p.s->st));
	cr_assert(tls_stage_verified(&p.c->st));
	cr_assert(tls_stage_sent_ecdsa(&p.s->st), "a client that verifies ECDSA gets ECDSA");
	cr_assert_not(tls_stage_resumed(&p.s->st));
	char d[TLS_STAGE_DESCRIBE_MAX];
	size_t n = tls_stage_describe(&p.s->st, d, sizeof(d));
	cr_assert_eq(n, strlen(d));
	cr_assert(strstr(d, "TLSv1.3 with cipher TLS_") == d, "%s", d);
	cr_assert(strstr(d, " key-exchange X25519") != NULL, "%s", d);
	pair_free(&p);
	tls_client_ctx_unref(cc);
	tls_server_ctx_unref(sc);
	cr_assert_eq(tls_ctx_live(), 0, "contexts freed with their last reference");
}

/* Cuts one direction's stream at every offset (and coalesces the rest). */
static void
every_cut(bool client_to_server)
{
	struct tls_server_ctx *sc = server_ctx_both();
	struct tls_client_ctx *cc = client_ctx();
	struct pair p = pair_new(sc, cc, CONFIG_TLS_VERIFY, HOST, NULL);
	pair_data(&p);
	p.s->send = slice_make(big, 1000);   /* keeps the streams short: every cut is a handshake */
	pump(p.c, p.s);
	expect_data(&p);
	size_t total = client_to_server ? p.c2s->taken : p.s2c->taken;
	pair_free(&p);
	cr_assert_gt(total, 100);
	cr_log_info("%s stream: %zu octets, as many cuts", client_to_server ? "client" : "server",
		total);
	for (size_t k = 1; k < total + 8; k++) {
		p = pair_new(sc, cc, CONFIG_TLS_VERIFY, HOST, NULL);
		pair_data(&p);
		p.s->send = slice_make(big, 1000);
		if (client_to_server)
			p.s->cut = k;
		else
			p.c->cut = k;
		pump(p.c, p.s);
		expect_data(&p);
		pair_free(&p);
	}
	tls_client_ctx_unref(cc);
	tls_server_ctx_unref(sc);
}

Test(tls_stage, the_client_stream_cut_at_every_offset_gives_the_same_result)
{
	every_cut(true);
}

Test(tls_stage, the_server_stream_cut_at_every_offset_gives_the_same_result)
{
	every_cut(false);
}

Test(tls_stage, byte_by_byte_and_with_a_one_octet_send_space)
{
	struct tls_server_ctx *sc = server_ctx_both();
	struct tls_client_ctx *cc = client_ctx();
	struct pair p = pair_new(sc, cc, CONFIG_TLS_VERIFY, HOST, NULL);
	pair_data(&p);
	p.c->bytewise = p.s->bytewise = true;
	pump(p.c, p.s);
	expect_data(&p);
	pair_free(&p);
	p = pair_new(sc, cc, CONFIG_TLS_VERIFY, HOST, NULL);
	pair_data(&p);
	p.c->out_cap = p.s->out_cap = 1;
	pump(p.c, p.s);
	expect_data(&p);
	cr_assert_gt(p.s->out_full, 100, "the server's flight went out an octet at a time");
	pair_free(&p);
	tls_client_ctx_unref(cc);
	tls_server_ctx_unref(sc);
}

Test(tls_stage, bytes_after_the_record_being_read_stay_with_the_caller)
{
	struct tls_server_ctx *sc = server_ctx_both();
	struct tls_client_ctx *cc = client_ctx();
	struct pair p = pair_new(sc, cc, CONFIG_TLS_VERIFY, HOST, NULL);
	pump(p.c, p.s);
	cr_assert(p.c->done && p.s->done);
	/* Two records from the client, and a plaintext buffer that holds only the first. */
	size_t used;
	struct tls_out out = end_out(p.c);
	cr_assert_eq(tls_stage_send(&p.c->st, SLICE_LIT("AAAA"), &out, &used), 0);
	size_t first = out.len;
	p.c->tx->len += out.len;
	out = end_out(p.c);
	cr_assert_eq(tls_stage_send(&p.c->st, SLICE_LIT("BBBB"), &out, &used), 0);
	p.c->tx->len += out.len;
	cr_assert_gt(first, 4);
	uint8_t plain[4];
	struct tls_out sout = end_out(p.s);
	struct tls_step s;
	cr_assert_eq(tls_stage_recv(&p.s->st, slice_make(p.c2s->buf, p.c2s->len), plain, 4, &sout,
		&s), 0);
	cr_assert_eq(s.plain_len, 4);
	cr_assert(memcmp(plain, "AAAA", 4) == 0);
	cr_assert_eq(s.in_used, first, "exactly the first record was consumed");
	cr_assert_eq(tls_stage_recv(&p.s->st, slice_make(p.c2s->buf + first, p.c2s->len - first),
		plain, 4, &sout, &s), 0);
	cr_assert_eq(s.in_used, p.c2s->len - first);
	cr_assert(memcmp(plain, "BBBB", 4) == 0);
	pair_free(&p);
	tls_client_ctx_unref(cc);
	tls_server_ctx_unref(sc);
}

Test(tls_stage, close_notify_reaches_the_peer)
{
	struct tls_server_ctx *sc = server_ctx_both();
	struct tls_client_ctx *cc = client_ctx();
	struct pair p = pair_new(sc, cc, CONFIG_TLS_MAY, HOST, NULL);
	pump(p.c, p.s);
	struct tls_out out = end_out(p.c);
	cr_assert_eq(tls_stage_close(&p.c->st, &out), 0);
	cr_assert_gt(out.len, 0);
	p.c->tx->len += out.len;
	pump(p.c, p.s);
	cr_assert(p.s->closed, "the server saw close_notify");
	cr_assert_not(p.s->failed);
	pair_free(&p);
	tls_client_ctx_unref(cc);
	tls_server_ctx_unref(sc);
}

/* ---- certificate choice ---- */

static const uint16_t rsa_only[] = { SSL_SIGN_RSA_PSS_RSAE_SHA256, SSL_SIGN_RSA_PKCS1_SHA256 };

Test(tls_stage, the_client_signature_algorithms_choose_ecdsa_or_rsa) /* RFC 8446 4.2.3 */
{
	struct tls_server_ctx *sc = server_ctx_both();
	struct tls_client_ctx *cc = client_ctx();
	/* TLS 1.3, a client that cannot verify ECDSA. */
	struct pair p = pair_new(sc, cc, CONFIG_TLS_VERIFY, HOST, NULL);
	cr_assert(SSL_set_verify_algorithm_prefs(p.c->st.ssl, rsa_only, ARRAY_LEN(rsa_only)));
	pump(p.c, p.s);
	cr_assert(p.c->done && !p.c->failed, "%s", tls_stage_reason(&p.c->st));
	cr_assert_not(tls_stage_sent_ecdsa(&p.s->st));
	cr_assert(tls_stage_verified(&p.c->st));
	pair_free(&p);
	/* TLS 1.2 with ECDHE-ECDSA suites: ECDSA. */
	p = pair_new(sc, cc, CONFIG_TLS_VERIFY, HOST, NULL);
	cr_assert(SSL_set_max_proto_version(p.c->st.ssl, TLS1_2_VERSION));
	pump(p.c, p.s);
	cr_assert_str_eq(tls_stage_protocol(&p.s->st), "TLSv1.2");
	cr_assert(tls_stage_sent_ecdsa(&p.s->st));
	cr_assert(strstr(tls_stage_cipher(&p.c->st), "ECDHE_ECDSA") != NULL, "%s",
		tls_stage_cipher(&p.c->st));
	pair_free(&p);
	/* TLS 1.2 offering only ECDHE-RSA suites: RSA, even though it could verify ECDSA. */
	p = pair_new(sc, cc, CONFIG_TLS_VERIFY, HOST, NULL);
	cr_assert(SSL_set_max_proto_version(p.c->st.ssl, TLS1_2_VERSION));
	cr_assert(SSL_set_strict_cipher_list(p.c->st.ssl, "ECDHE-RSA-AES128-GCM-SHA256"));
	pump(p.c, p.s);
	cr_assert(p.s->done, "%s", tls_stage_reason(&p.s->st));
	cr_assert_not(tls_stage_sent_ecdsa(&p.s->st));
	cr_assert_str_eq(tls_stage_cipher(&p.c->st), "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
	pair_free(&p);
	tls_client_ctx_unref(cc);
	tls_server_ctx_unref(sc);
}

Test(tls_stage, a_single_rsa_or_ecdsa_pair_serves_alone)
{
	struct tls_client_ctx *cc = client_ctx();
	cfg_server(cpath("rsa.pem"), cpath("rsa.key"), NULL, NULL, NULL);
	struct tls_server_ctx *sc = server_ctx();
	struct pair p = pair_new(sc, cc, CONFIG_TLS_VERIFY, HOST, NULL);
	pump(p.c, p.s);
	cr_assert(p.c->done && tls_stage_verified(&p.c->st));
	cr_assert_not(tls_stage_sent_ecdsa(&p.s->st));
	pair_free(&p);
	tls_server_ctx_unref(sc);
	cfg_server(cpath("ec.pem"), cpath("ec.key"), NULL, NULL, NULL);   /* ECDSA in cert_file */
	sc = server_ctx();
	p = pair_new(sc, cc, CONFIG_TLS_VERIFY, HOST, NULL);
	pump(p.c, p.s);
	cr_assert(p.c->done && tls_stage_sent_ecdsa(&p.s->st));
	pair_free(&p);
	tls_server_ctx_unref(sc);
	tls_client_ctx_unref(cc);
}

/* ---- SNI ---- */

static const char *
write_sni_file(const char *text)
{
	const char *path = cpath("sni.txt");
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	return path;
}

Test(tls_stage, sni_chooses_among_certificates) /* RFC 6066 3 */
{
	char text[4 * PATH_MAX];
	snprintf(text, sizeof(text), "# name files\n\nother.test.example %s %s\n"
		"*.wild.test.example\t%s\n", cpath("other.bundle"), cpath("other_rsa.bundle"),
		cpath("wild.bundle"));
	const char *sni = write_sni_file(text);
	cfg_server(cpath("rsa.pem"), cpath("rsa.key"), cpath("ec.pem"), cpath("ec.key"), sni);
	struct tls_server_ctx *sc = server_ctx();
	struct tls_client_ctx *cc = client_ctx();
	static const char *const names[] = { "other.test.example", "OTHER.test.example",
		"a.wild.test.example", HOST };
	for (size_t i = 0; i < ARRAY_LEN(names); i++) {
		struct pair p = pair_new(sc, cc, CONFIG_TLS_VERIFY, names[i], NULL);
		pump(p.c, p.s);
		cr_assert(p.c->done, "%s: %s", names[i], tls_stage_reason(&p.c->st));
		cr_assert(tls_stage_verified(&p.c->st), "%s got its own certificate", names[i]);
		cr_assert_eq(tls_stage_sni_matched(&p.s->st), i < 3);
		pair_free(&p);
	}
	/* The SNI name's RSA certificate for a client that cannot verify ECDSA. */
	struct pair p = pair_new(sc, cc, CONFIG_TLS_VERIFY, "other.test.example", NULL);
	cr_assert(SSL_set_verify_algorithm_prefs(p.c->st.ssl, rsa_only, ARRAY_LEN(rsa_only)));
	pump(p.c, p.s);
	cr_assert(p.c->done && tls_stage_verified(&p.c->st));
	cr_assert_not(tls_stage_sent_ecdsa(&p.s->st));
	pair_free(&p);
	/* Two labels under the wildcard, or an unknown name: the default certificate. */
	p = pair_new(sc, cc, CONFIG_TLS_VERIFY, "a.b.wild.test.example", NULL);
	pump(p.c, p.s);
	cr_assert(p.c->failed, "the default certificate does not name it");
	cr_assert_not(tls_stage_sni_matched(&p.s->st));
	pair_free(&p);
	tls_client_ctx_unref(cc);
	tls_server_ctx_unref(sc);
}

/* ---- resumption and tickets ---- */

/* A full connection through sc with the cache; returns whether it resumed. */
static bool
connect_once(struct tls_server_ctx *sc, struct tls_client_ctx *cc, struct tls_cache *cache,
	uint8_t level)
{
	struct pair p = pair_new(sc, cc, level, HOST, cache);
	pair_data(&p);
	p.s->send = SLICE_LIT("250 ok\r\n");
	pump(p.c, p.s);
	expect_data(&p);
	bool resumed = tls_stage_resumed(&p.s->st);
	cr_assert_eq(tls_stage_resumed(&p.c->st), resumed, "both sides agree");
	pair_free(&p);
	return resumed;
}

Test(tls_stage, a_ticket_from_one_shard_resumes_on_another) /* RFC 8446 2.2, 4.6.1 */
{
	struct tls_server_ctx *a = server_ctx_both();
	struct tls_server_ctx *b = server_ctx_both();   /* another shard's context, same tickets */
	struct tls_client_ctx *cc = client_ctx();
	struct tls_cache *cache;
	cr_assert_eq(tls_cache_new(16, &cache), 0);
	cr_assert_not(connect_once(a, cc, cache, CONFIG_TLS_VERIFY));
	cr_assert_eq(tls_cache_count(cache), 1, "the client kept the session");
	cr_assert(connect_once(b, cc, cache, CONFIG_TLS_VERIFY));
	cr_assert(connect_once(a, cc, cache, CONFIG_TLS_VERIFY), "and back");
	/* TLS 1.2 resumes by ticket too. */
	struct tls_cache *cache12;
	cr_assert_eq(tls_cache_new(16, &cache12), 0);
	struct pair p = pair_new(a, cc, CONFIG_TLS_VERIFY, HOST, cache12);
	cr_assert(SSL_set_max_proto_version(p.c->st.ssl, TLS1_2_VERSION));
	pump(p.c, p.s);
	cr_assert(p.c->done);
	pair_free(&p);
	p = pair_new(b, cc, CONFIG_TLS_VERIFY, HOST, cache12);
	cr_assert(SSL_set_max_proto_version(p.c->st.ssl, TLS1_2_VERSION));
	pump(p.c, p.s);
	cr_assert_str_eq(tls_stage_protocol(&p.s->st), "TLSv1.2");
	cr_assert(tls_stage_resumed(&p.s->st));
	pair_free(&p);
	tls_cache_free(cache12);
	tls_cache_free(cache);
	tls_client_ctx_unref(cc);
	tls_server_ctx_unref(a);
	tls_server_ctx_unref(b);
}

Test(tls_stage, tickets_of_another_master_secret_do_not_resume)
{
	struct tls_server_ctx *a = server_ctx_both();
	struct tls_tickets *other;
	cr_assert_eq(tls_tickets_new(&other), 0);
	struct tls_server_ctx *b = NULL;
	char err[TLS_CTX_ERR_MAX];
	cr_assert_eq(tls_server_ctx_new(&cfg, other, &b, err, sizeof(err)), 0, "%s", err);
	struct tls_client_ctx *cc = client_ctx();
	struct tls_cache *cache;
	cr_assert_eq(tls_cache_new(16, &cache), 0);
	cr_assert_not(connect_once(a, cc, cache, CONFIG_TLS_VERIFY));
	cr_assert_not(connect_once(b, cc, cache, CONFIG_TLS_VERIFY), "a full handshake instead");
	tls_cache_free(cache);
	tls_client_ctx_unref(cc);
	tls_server_ctx_unref(a);
	tls_server_ctx_unref(b);
	tls_tickets_free(other);
}

Test(tls_stage, ticket_keys_rotate_each_period_and_open_one_period_later)
{
	struct tls_server_ctx *sc = server_ctx_both();
	struct tls_client_ctx *cc = client_ctx();
	struct tls_cache *cache;
	cr_assert_eq(tls_cache_new(16, &cache), 0);
	now_ms = T0_MS - T0_MS % (TLS_TICKET_PERIOD_S * 1000ull) + 1000;   /* early in a period */
	uint64_t start = now_ms;
	cr_assert_not(connect_once(sc, cc, cache, CONFIG_TLS_VERIFY));
	now_ms = start + (TLS_TICKET_PERIOD_S - 10) * 1000ull;   /* same period */
	cr_assert(connect_once(sc, cc, cache, CONFIG_TLS_VERIFY));
	/* The ticket just issued is of this period; the next period still opens it. */
	now_ms = start + (TLS_TICKET_PERIOD_S + 5) * 1000ull;
	cr_assert(connect_once(sc, cc, cache, CONFIG_TLS_VERIFY));
	/* That one was issued in period P+1: it no longer opens in P+3. */
	now_ms = start + 3 * TLS_TICKET_PERIOD_S * 1000ull;
	cr_assert_not(connect_once(sc, cc, cache, CONFIG_TLS_VERIFY), "rotated out");
	tls_cache_free(cache);
	tls_client_ctx_unref(cc);
	tls_server_ctx_unref(sc);
}

Test(tls_stage, an_unverified_session_is_not_resumed_for_verify)
{
	struct tls_server_ctx *sc = server_ctx_both();
	struct tls_client_ctx *cc = client_ctx();
	struct tls_cache *cache;
	cr_assert_eq(tls_cache_new(16, &cache), 0);
	/* A "may" session to a name the certificate does not carry is kept, unverified. */
	struct pair p = pair_new(sc, cc, CONFIG_TLS_MAY, "alias.test.example", cache);
	pair_data(&p);
	pump(p.c, p.s);
	expect_data(&p);
	cr_assert_not(tls_stage_verified(&p.c->st));
	pair_free(&p);
	cr_assert_eq(tls_cache_count(cache), 1);
	cr_assert_null(tls_cache_get(cache, SLICE_LIT("alias.test.example"), true));
	SSL_SESSION *s = tls_cache_get(cache, SLICE_LIT("ALIAS.test.example"), false);
	cr_assert_not_null(s, "names compare in any case");
	SSL_SESSION_free(s);
	/* verify then does a full handshake, which fails on the name. */
	p = pair_new(sc, cc, CONFIG_TLS_VERIFY, "alias.test.example", cache);
	pump(p.c, p.s);
	cr_assert(p.c->failed);
	pair_free(&p);
	tls_cache_free(cache);
	tls_client_ctx_unref(cc);
	tls_server_ctx_unref(sc);
}

/* ---- verification ---- */

Test(tls_stage, verify_fails_on_a_self_signed_certificate_and_may_goes_on)
{
	cfg_server(cpath("self.pem"), cpath("self.key"), NULL, NULL, NULL);
	struct tls_server_ctx *sc = server_ctx();
	struct tls_client_ctx *cc = client_ctx();
	struct pair p = pair_new(sc, cc, CONFIG_TLS_VERIFY, HOST, NULL);
	pair_data(&p);
	pump(p.c, p.s);
	cr_assert(p.c->failed);
	cr_assert(strstr(tls_stage_reason(&p.c->st), "certificate verify failed: self") != NULL,
		"%s", tls_stage_reason(&p.c->st));
	cr_assert(p.s->failed, "the client's alert ended the server's side");
	cr_assert(strstr(tls_stage_reason(&p.s->st), "handshake: ") == tls_stage_reason(&p.s->st),
		"%s", tls_stage_reason(&p.s->st));
	cr_assert_eq(p.s->plain_len, 0, "nothing was sent in the clear or otherwise");
	pair_free(&p);
	for (uint8_t level = CONFIG_TLS_MAY; level <= CONFIG_TLS_ENCRYPT; level++) {
		p = pair_new(sc, cc, level, HOST, NULL);
		pair_data(&p);
		pump(p.c, p.s);
		expect_data(&p);
		cr_assert_not(tls_stage_verified(&p.c->st), "reported, not enforced");
		pair_free(&p);
	}
	tls_client_ctx_unref(cc);
	tls_server_ctx_unref(sc);
}

Test(tls_stage, verify_fails_on_a_host_name_mismatch) /* RFC 6125 6 */
{
	struct tls_server_ctx *sc = server_ctx_both();
	struct tls_client_ctx *cc = client_ctx();
	struct pair p = pair_new(sc, cc, CONFIG_TLS_VERIFY, "mx.other.example", NULL);
	pump(p.c, p.s);
	cr_assert(p.c->failed);
	cr_assert(strstr(tls_stage_reason(&p.c->st), "certificate verify failed") != NULL, "%s",
		tls_stage_reason(&p.c->st));
	cr_assert(strstr(tls_stage_reason(&p.c->st), "ostname") != NULL, "%s",
		tls_stage_reason(&p.c->st));
	pair_free(&p);
	/* The system store does not know the test CA: verify fails there too. */
	struct config c;
	config_default(&c);
	struct tls_client_ctx *sys = NULL;
	char err[TLS_CTX_ERR_MAX];
	cr_assert_eq(tls_client_ctx_new(&c, &sys, err, sizeof(err)), 0, "%s", err);
	p = pair_new(sc, sys, CONFIG_TLS_VERIFY, HOST, NULL);
	pump(p.c, p.s);
	cr_assert(p.c->failed);
	cr_assert(strstr(tls_stage_reason(&p.c->st), "local issuer") != NULL, "%s",
		tls_stage_reason(&p.c->st));
	pair_free(&p);
	tls_client_ctx_unref(sys);
	tls_client_ctx_unref(cc);
	tls_server_ctx_unref(sc);
}

/* ---- what peers may send ---- */

Test(tls_stage, old_protocol_versions_are_refused)
{
	struct tls_server_ctx *sc = server_ctx_both();
	struct tls_client_ctx *cc = client_ctx();
	struct pair p = pair_new(sc, cc, CONFIG_TLS_MAY, HOST, NULL);
	cr_assert(SSL_set_min_proto_version(p.c->st.ssl, TLS1_VERSION));
	cr_assert(SSL_set_max_proto_version(p.c->st.ssl, TLS1_1_VERSION));
	cr_assert(SSL_set_strict_cipher_list(p.c->st.ssl, "ECDHE-ECDSA-AES128-SHA:AES128-SHA"));
	pump(p.c, p.s);
	cr_assert(p.s->failed);
	cr_assert(strstr(tls_stage_reason(&p.s->st), "UNSUPPORTED_PROTOCOL") != NULL, "%s",
		tls_stage_reason(&p.s->st));
	pair_free(&p);
	tls_client_ctx_unref(cc);
	tls_server_ctx_unref(sc);
}

Test(tls_stage, garbage_and_tampered_records_fail_with_a_reason)
{
	struct tls_server_ctx *sc = server_ctx_both();
	struct tls_client_ctx *cc = client_ctx();
	/* Plaintext SMTP where a ClientHello should be (the engine's STARTTLS injection case). */
	struct pair p = pair_new(sc, cc, CONFIG_TLS_MAY, HOST, NULL);
	static const char smtp[] = "MAIL FROM:<x@y.example>\r\nRCPT TO:<z@y.example>\r\n";
	memcpy(p.c2s->buf, smtp, sizeof(smtp) - 1);
	p.c2s->len = sizeof(smtp) - 1;
	cr_assert(end_step(p.s));
	cr_assert(p.s->failed);
	cr_assert_eq(p.s->plain_len, 0);
	pair_free(&p);
	/* A record altered after the handshake. */
	p = pair_new(sc, cc, CONFIG_TLS_MAY, HOST, NULL);
	pump(p.c, p.s);
	size_t used;
	struct tls_out out = end_out(p.c);
	cr_assert_eq(tls_stage_send(&p.c->st, SLICE_LIT("RSET\r\n"), &out, &used), 0);
	p.c->tx->len += out.len;
	p.c2s->buf[p.c2s->len - 3] ^= 0x40;
	cr_assert(end_step(p.s));
	cr_assert(p.s->failed);
	cr_assert_eq(p.s->plain_len, 0, "nothing of a bad record comes out");
	pair_free(&p);
	/* Random octets of every length up to a few records. */
	uint32_t x = 12345;
	for (size_t len = 1; len < 40000; len = len * 3 + 1) {
		p = pair_new(sc, cc, CONFIG_TLS_MAY, HOST, NULL);
		for (size_t i = 0; i < len; i++) {
			x = x * 1103515245u + 12345u;
			p.c2s->buf[i] = (uint8_t)(x >> 16);
		}
		p.c2s->len = len;
		pump(p.c, p.s);
		cr_assert_not(p.s->done && p.s->plain_len > 0);
		pair_free(&p);
	}
	tls_client_ctx_unref(cc);
	tls_server_ctx_unref(sc);
}

/* ---- reload ---- */

Test(tls_stage, reload_publishes_a_new_context_and_frees_the_old_with_its_last_connection)
{
	cr_assert_eq(tls_ctx_live(), 0);
	cfg_server(cpath("ec.pem"), cpath("ec.key"), NULL, NULL, NULL);
	struct tls_server_slot slot;
	tls_server_slot_init(&slot, server_ctx());
	struct tls_server_view shard0, shard1;
	tls_server_view_init(&shard0, &slot);
	tls_server_view_init(&shard1, &slot);
	struct tls_client_ctx *cc = client_ctx();
	cr_assert_eq(tls_ctx_live(), 2);
	/* A connection open across the reload. */
	struct pair old = pair_new(tls_server_view_get(&shard0), cc, CONFIG_TLS_VERIFY, HOST, NULL);
	pump(old.c, old.s);
	cr_assert(tls_stage_sent_ecdsa(&old.s->st));
	cfg_server(cpath("rsa.pem"), cpath("rsa.key"), NULL, NULL, NULL);
	tls_server_slot_publish(&slot, server_ctx());
	cr_assert_eq(tls_ctx_live(), 3, "the old one lives on");
	struct pair fresh = pair_new(tls_server_view_get(&shard1), cc, CONFIG_TLS_VERIFY, HOST,
		NULL);
	pump(fresh.c, fresh.s);
	cr_assert(fresh.c->done);
	cr_assert_not(tls_stage_sent_ecdsa(&fresh.s->st), "the new certificate");
	/* The old connection still carries data. */
	old.c->send = SLICE_LIT("QUIT\r\n");
	old.s->send = SLICE_LIT("221 bye\r\n");
	pump(old.c, old.s);
	expect_data(&old);
	cr_assert(tls_server_view_get(&shard0) != NULL);   /* shard 0 picks up the new one */
	cr_assert_eq(tls_ctx_live(), 3, "still held by the open connection");
	pair_free(&old);
	cr_assert_eq(tls_ctx_live(), 2, "freed with its last connection");
	pair_free(&fresh);
	tls_server_view_fini(&shard0);
	tls_server_view_fini(&shard1);
	tls_server_slot_fini(&slot);
	tls_client_ctx_unref(cc);
	cr_assert_eq(tls_ctx_live(), 0);
}

/* ---- building contexts ---- */

static void
build_fails(const char *want)
{
	struct tls_server_ctx *c = NULL;
	char err[TLS_CTX_ERR_MAX] = "";
	cr_assert_eq(tls_server_ctx_new(&cfg, tickets, &c, err, sizeof(err)), -1);
	cr_assert(strstr(err, want) != NULL, "error \"%s\" lacks \"%s\"", err, want);
	cr_assert_eq(tls_ctx_live(), 0, "nothing left behind");
}

Test(tls_stage, bad_certificate_configurations_are_refused_with_a_reason)
{
	cfg_server(cpath("missing.pem"), cpath("ec.key"), NULL, NULL, NULL);
	build_fails("missing.pem: No such file");
	cfg_server(cpath("junk.pem"), cpath("ec.key"), NULL, NULL, NULL);
	build_fails("junk.pem: no certificate");
	cfg_server(cpath("ec.pem"), cpath("rsa.key"), NULL, NULL, NULL);
	build_fails("does not match");
	cfg_server(cpath("ec.pem"), cpath("ec.pem"), NULL, NULL, NULL);
	build_fails("no usable private key");
	cfg_server(cpath("weak.pem"), cpath("weak.key"), NULL, NULL, NULL);
	build_fails("RSA key of 1024 bits");
	cfg_server(cpath("rsa.pem"), cpath("rsa.key"), cpath("other_rsa.pem"),
		cpath("other_rsa.key"), NULL);
	build_fails("holds no ECDSA certificate");
	cfg_server(cpath("ec.pem"), cpath("ec.key"), cpath("ec2.pem"), cpath("ec2.key"), NULL);
	build_fails("a second ECDSA certificate");
	cfg_server(NULL, NULL, NULL, NULL, NULL);
	build_fails("no server certificate");
	char text[2 * PATH_MAX];
	snprintf(text, sizeof(text), "ok.example %s\nbad_name %s\n", cpath("other.bundle"),
		cpath("other.bundle"));
	cfg_server(cpath("ec.pem"), cpath("ec.key"), NULL, NULL, write_sni_file(text));
	build_fails("sni.txt:2: not a host name");
	snprintf(text, sizeof(text), "a.example %s\nA.example %s\n", cpath("other.bundle"),
		cpath("other.bundle"));
	cfg_server(cpath("ec.pem"), cpath("ec.key"), NULL, NULL, write_sni_file(text));
	build_fails("sni.txt:2: name listed twice");
	cfg_server(cpath("ec.pem"), cpath("ec.key"), NULL, NULL, write_sni_file("a.example\n"));
	build_fails("sni.txt:1: no PEM file");
	snprintf(text, sizeof(text), "a.example %s\n", cpath("other.pem"));
	cfg_server(cpath("ec.pem"), cpath("ec.key"), NULL, NULL, write_sni_file(text));
	build_fails("no usable private key");
	struct config c;
	config_default(&c);
	set_str(c.smtp_tls_ca_file, cpath("missing-ca.pem"));
	struct tls_client_ctx *cc = NULL;
	char err[TLS_CTX_ERR_MAX];
	cr_assert_eq(tls_client_ctx_new(&c, &cc, err, sizeof(err)), -1);
	cr_assert(strstr(err, "missing-ca.pem") != NULL, "%s", err);
	cr_assert_eq(tls_ctx_live(), 0);
}

Test(tls_stage, client_params_are_checked)
{
	struct tls_client_ctx *cc = client_ctx();
	struct tls_stage st;
	struct tls_client_params p = { .level = CONFIG_TLS_VERIFY, .host = SLICE_LIT("") };
	cr_assert_eq(tls_stage_client_init(&st, cc, &p, &now_ms), -EINVAL);
	char longname[TLS_HOST_NAME_MAX + 2];
	memset(longname, 'a', sizeof(longname));
	p.host = slice_make(longname, sizeof(longname));
	cr_assert_eq(tls_stage_client_init(&st, cc, &p, &now_ms), -EINVAL);
	p.host = slice_make(longname, TLS_HOST_NAME_MAX);
	cr_assert_eq(tls_stage_client_init(&st, cc, &p, &now_ms), 0, "253 octets is the limit");
	tls_stage_fini(&st);
	p.host = SLICE_LIT("192.0.2.1");
	cr_assert_eq(tls_stage_client_init(&st, cc, &p, &now_ms), 0, "an address literal");
	tls_stage_fini(&st);
	tls_client_ctx_unref(cc);
	cr_assert_eq(tls_ctx_live(), 0);
}
