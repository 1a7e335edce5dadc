/* tests/unit/conn_tls_test.c - the transport's TLS stage (engine/conn) on a real ring and real
 * loopback sockets: a server and a client connection of the same pool talk TLS to each other,
 * with data both ways, through a relay that hands every octet over on its own (so each side
 * receives the handshake and the records cut at every byte boundary), the STARTTLS injection
 * drops on both sides, handshake failures and the handshake's deadline, verification, plaintext
 * in spare receive buffers or in the scratch buffer, close_notify. Apart from conn_test.c
 * because it needs certificates: made at test time by the openssl command, removed after. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <criterion/hooks.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/bufring.h"
#include "base/ring.h"
#include "conf/config.h"
#include "engine/conn.h"
#include "tls/tls_ctx.h"
#include "tls/tls_stage.h"

#define HOST "mx.conn.example"
#define DIR_ENV "RINGMTA_CONN_TLS_DIR"
#define INPUT_MAX (2u << 20)
#define SPARES 4u
#define TURNS_MAX 2000u

static const char cert_script[] =
	"set -e\n"
	"cd \"$1\"\n"
	"EC='ec -pkeyopt ec_paramgen_curve:P-256'\n"
	"openssl req -x509 -new -newkey $EC -nodes -keyout self.key -out self.pem -days 3 "
	"  -subj '/CN=" HOST "' -addext 'subjectAltName=DNS:" HOST "' 2>/dev/null\n"
	"openssl req -x509 -new -newkey $EC -nodes -keyout other.key -out other.pem -days 3 "
	"  -subj '/CN=other' -addext 'subjectAltName=DNS:other.example' 2>/dev/null\n";

static char cert_dir[PATH_MAX];

ReportHook(PRE_ALL)(struct criterion_test_set *tests)
{
	(void)tests;
	char tmpl[] = "/tmp/ringmta-conn-tls-XXXXXX";
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

static void
cpath(char *field, const char *name)
{
	const char *d = getenv(DIR_ENV);
	cr_assert_not_null(d, "test certificates were not made (is openssl installed?)");
	snprintf(field, CONFIG_STR_MAX, "%s/%s", d, name);
}

static struct ring ring;
static struct bufring bufs;
static struct conn_pool pool;
static struct config cfg;
static struct tls_tickets *tickets;
static struct tls_server_ctx *server_ctx;
static struct tls_client_ctx *client_ctx;      /* trusts self.pem */
static struct tls_client_ctx *stranger_ctx;    /* trusts other.pem only */

static void
setup(void)
{
	char err[TLS_CTX_ERR_MAX];
	cr_assert_eq(ring_init(&ring, 0, 256, 16), 0);
	cr_assert_eq(bufring_init_spare(&bufs, &ring, 1, 16, SPARES, 4096), 0);
	cr_assert_eq(conn_pool_init(&pool, &ring, &bufs, 8), 0);
	cr_assert_eq(tls_tickets_new(&tickets), 0);
	config_default(&cfg);
	cpath(cfg.tls_cert_file, "self.pem");
	cpath(cfg.tls_key_file, "self.key");
	cpath(cfg.smtp_tls_ca_file, "self.pem");
	cr_assert_eq(tls_server_ctx_new(&cfg, tickets, &server_ctx, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(tls_client_ctx_new(&cfg, &client_ctx, err, sizeof(err)), 0, "%s", err);
	cpath(cfg.smtp_tls_ca_file, "other.pem");
	cr_assert_eq(tls_client_ctx_new(&cfg, &stranger_ctx, err, sizeof(err)), 0, "%s", err);
}

static void
teardown(void)
{
	ring_fini(&ring);
	conn_pool_fini(&pool);
	bufring_fini(&bufs);
	tls_server_ctx_unref(server_ctx);
	tls_client_ctx_unref(client_ctx);
	tls_client_ctx_unref(stranger_ctx);
	tls_tickets_free(tickets);
	cr_assert_eq(tls_ctx_live(), 0, "a context reference was not dropped");
}

TestSuite(conn_tls, .init = setup, .fini = teardown, .timeout = 60);

/* What one end's session saw, and how it behaves. */
struct end {
	int connected;          /* 1 + result */
	int closed;             /* 1 + result */
	int tls_done;           /* 1 + result */
	char reason[TLS_STAGE_REASON_MAX];
	uint8_t *input;         /* INPUT_MAX */
	size_t input_len;
	/* STARTTLS: once input holds this line, take it, write starttls_reply, start TLS. */
	const char *starttls_line;
	const char *starttls_reply;
	bool server;
	struct tls_client_ctx *cctx;
	uint8_t level;
	uint32_t handshake_class;
	int start_rc;
};

static size_t
end_input(void *s, struct conn *c, struct slice in)
{
	struct end *e = s;
	size_t n = in.len;
	if (e->starttls_line != NULL && conn_tls(c) == NULL) {
		size_t want = strlen(e->starttls_line);
		size_t take = want - e->input_len < n ? want - e->input_len : n;
		memcpy(e->input + e->input_len, in.ptr, take);
		e->input_len += take;
		if (e->input_len < want)
			return take;
		cr_assert_eq(memcmp(e->input, e->starttls_line, want), 0);
		if (e->starttls_reply != NULL)
			cr_assert_eq(conn_write(c, slice_make(e->starttls_reply,
				strlen(e->starttls_reply))), 0);
		struct tls_client_params p = { .level = e->level, .host = SLICE_LIT(HOST) };
		e->start_rc = e->server ? conn_tls_server(c, server_ctx, e->handshake_class)
			: conn_tls_client(c, e->cctx, &p, e->handshake_class);
		return take;   /* the rest of in is the transport's to drop */
	}
	cr_assert_leq(n, INPUT_MAX - e->input_len);
	memcpy(e->input + e->input_len, in.ptr, n);
	e->input_len += n;
	return n;
}

static void
end_connected(void *s, struct conn *c, int res)
{
	((struct end *)s)->connected = 1 + res;
}

static void
end_timeout(void *s, struct conn *c)
{
	conn_close(c);
}

static void
end_closed(void *s, struct conn *c, int res)
{
	((struct end *)s)->closed = 1 + res;
}

static void
end_tls_done(void *s, struct conn *c, int res)
{
	struct end *e = s;
	e->tls_done = 1 + res;
	snprintf(e->reason, sizeof(e->reason), "%s", conn_tls_reason(c));
	if (res == 0) {
		cr_assert_not_null(conn_tls(c));
		cr_assert(conn_tls_ready(c));
		cr_assert_str_eq(tls_stage_protocol(conn_tls(c)), "TLSv1.3");
	}
}

static const struct conn_session_ops end_ops = {
	.input = end_input,
	.connected = end_connected,
	.timeout = end_timeout,
	.closed = end_closed,
	.tls_done = end_tls_done,
};

static struct end *
end_new(bool server)
{
	struct end *e = calloc(1, sizeof(*e));
	cr_assert_not_null(e);
	e->input = malloc(INPUT_MAX);
	cr_assert_not_null(e->input);
	e->server = server;
	e->cctx = client_ctx;
	e->level = CONFIG_TLS_VERIFY;
	e->handshake_class = conn_pool_timeout_class(&pool, 5000);
	return e;
}

static void
end_free(struct end *e)
{
	free(e->input);
	free(e);
}

/* One loop turn as the shard runs it, waiting at most ms. */
static void
turn(uint32_t ms)
{
	struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = (long long)ms * 1000000 };
	struct io_uring_cqe *cqe;
	(void)io_uring_submit_and_wait_timeout(&ring.uring, &cqe, 1, &ts, NULL);
	ring_clock(&ring);
	unsigned head, seen = 0;
	io_uring_for_each_cqe(&ring.uring, head, cqe) {
		ring_dispatch(&ring, cqe);
		seen++;
	}
	io_uring_cq_advance(&ring.uring, seen);
	ring_dispatch_posted(&ring);
	bufring_flush(&bufs);
	ring_turn(&ring);
	(void)io_uring_submit(&ring.uring);
}

static int
listener(struct sockaddr_in *addr)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	*addr = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = 0 };
	inet_pton(AF_INET, "127.0.0.1", &addr->sin_addr);
	cr_assert_eq(bind(fd, (struct sockaddr *)addr, sizeof(*addr)), 0);
	cr_assert_eq(listen(fd, 16), 0);
	socklen_t len = sizeof(*addr);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)addr, &len), 0);
	return fd;
}

/* A client connection of the pool to a fresh listener, and the accepted socket. */
static struct conn *
client_to(struct end *e, int *accepted)
{
	struct sockaddr_in to;
	int lfd = listener(&to);
	int err;
	struct conn *c = conn_connect(&pool, (struct sockaddr *)&to, sizeof(to), NULL, 0, 2000,
		&end_ops, e, &err);
	cr_assert_not_null(c);
	for (uint32_t i = 0; i < 100 && e->connected == 0; i++)
		turn(20);
	cr_assert_eq(e->connected, 1);
	*accepted = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
	cr_assert_geq(*accepted, 0);
	close(lfd);
	return c;
}

/* A server connection of the pool on one end of a socket pair; the other end is returned. */
static struct conn *
server_on(struct end *e, int *peer)
{
	int sv[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	struct conn *c = conn_adopt(&pool, sv[0], 0, &end_ops, e);
	cr_assert_not_null(c);
	*peer = sv[1];
	return c;
}

/* Moves what is readable from `from` to `to`, at most `step` octets per write with a turn
 * after each write. Returns the octets moved. */
static size_t
relay(int from, int to, size_t step)
{
	uint8_t buf[65536];
	ssize_t n = recv(from, buf, sizeof(buf), MSG_DONTWAIT);
	if (n <= 0)
		return 0;
	for (ssize_t off = 0; off < n; off += (ssize_t)step) {
		size_t len = (size_t)(n - off) < step ? (size_t)(n - off) : step;
		cr_assert_eq(send(to, buf + off, len, MSG_NOSIGNAL), (ssize_t)len);
		turn(0);
	}
	return (size_t)n;
}

/* Client and server connections of the pool, the bytes between them carried by relay(). */
struct pair {
	struct end *cli, *srv;
	struct conn *cc, *sc;
	int cli_peer;      /* what the client connection is connected to */
	int srv_peer;      /* what the server connection is connected to */
	size_t step;
};

static void
pair_open(struct pair *p, size_t step)
{
	p->cli = end_new(false);
	p->srv = end_new(true);
	p->cc = client_to(p->cli, &p->cli_peer);
	p->sc = server_on(p->srv, &p->srv_peer);
	p->step = step;
}

static void
pair_pump(struct pair *p, uint32_t turns)
{
	for (uint32_t i = 0; i < turns; i++) {
		size_t moved = relay(p->cli_peer, p->srv_peer, p->step);
		moved += relay(p->srv_peer, p->cli_peer, p->step);
		turn(moved > 0 ? 0 : 2);
	}
}

static void
pair_pump_until(struct pair *p, const int *flag)
{
	for (uint32_t i = 0; i < TURNS_MAX && *flag == 0; i++)
		pair_pump(p, 1);
}

static void
pair_close(struct pair *p)
{
	close(p->cli_peer);
	close(p->srv_peer);
	for (uint32_t i = 0; i < TURNS_MAX && (p->cli->closed == 0 || p->srv->closed == 0); i++)
		turn(5);
	cr_assert_eq(conn_pool_live(&pool), 0);
	end_free(p->cli);
	end_free(p->srv);
}

static void
handshake(struct pair *p)
{
	cr_assert_eq(conn_tls_server(p->sc, server_ctx, p->srv->handshake_class), 0);
	struct tls_client_params cp = { .level = CONFIG_TLS_VERIFY, .host = SLICE_LIT(HOST) };
	cr_assert_eq(conn_tls_client(p->cc, client_ctx, &cp, p->cli->handshake_class), 0);
	pair_pump_until(p, &p->cli->tls_done);
	pair_pump_until(p, &p->srv->tls_done);
	cr_assert_eq(p->cli->tls_done, 1, "client: %s", p->cli->reason);
	cr_assert_eq(p->srv->tls_done, 1, "server: %s", p->srv->reason);
}

static void
fill(uint8_t *buf, size_t len, uint32_t seed)
{
	for (size_t i = 0; i < len; i++)
		buf[i] = (uint8_t)((i * 2654435761u) >> 13 ^ seed);
}

Test(conn_tls, a_handshake_and_data_cut_at_every_octet)
{
	struct pair p;
	pair_open(&p, 1);
	handshake(&p);
	cr_assert(tls_stage_verified(conn_tls(p.cc)));
	cr_assert_eq(conn_write(p.cc, SLICE_LIT("EHLO client.example\r\n")), 0);
	cr_assert_eq(conn_write(p.sc, SLICE_LIT("220 mx.conn.example ESMTP\r\n")), 0);
	for (uint32_t i = 0; i < TURNS_MAX && (p.srv->input_len < 21 || p.cli->input_len < 27); i++)
		pair_pump(&p, 1);
	cr_assert_eq(p.srv->input_len, 21);
	cr_assert_eq(memcmp(p.srv->input, "EHLO client.example\r\n", 21), 0);
	cr_assert_eq(p.cli->input_len, 27);
	cr_assert_eq(memcmp(p.cli->input, "220 mx.conn.example ESMTP\r\n", 27), 0);
	pair_close(&p);
}

Test(conn_tls, a_megabyte_each_way_arrives_whole)
{
	struct pair p;
	pair_open(&p, 65536);
	handshake(&p);
	static uint8_t up[1u << 20], down[1u << 20];
	fill(up, sizeof(up), 1);
	fill(down, sizeof(down), 2);
	/* Written in pieces over several turns (conn_write refuses past its bound). */
	size_t up_off = 0, down_off = 0;
	for (uint32_t i = 0; i < TURNS_MAX * 4 && (p.srv->input_len < sizeof(up)
		|| p.cli->input_len < sizeof(down)); i++) {
		if (up_off < sizeof(up) && conn_unsent(p.cc) < 65536) {
			cr_assert_eq(conn_write(p.cc, slice_make(up + up_off, 50000 < sizeof(up) - up_off
				? 50000 : sizeof(up) - up_off)), 0);
			up_off += 50000 < sizeof(up) - up_off ? 50000 : sizeof(up) - up_off;
		}
		if (down_off < sizeof(down) && conn_unsent(p.sc) < 65536) {
			cr_assert_eq(conn_write(p.sc, slice_make(down + down_off, 30000 < sizeof(down)
				- down_off ? 30000 : sizeof(down) - down_off)), 0);
			down_off += 30000 < sizeof(down) - down_off ? 30000 : sizeof(down) - down_off;
		}
		pair_pump(&p, 1);
	}
	cr_assert_eq(p.srv->input_len, sizeof(up));
	cr_assert_eq(memcmp(p.srv->input, up, sizeof(up)), 0);
	cr_assert_eq(p.cli->input_len, sizeof(down));
	cr_assert_eq(memcmp(p.cli->input, down, sizeof(down)), 0);
	cr_assert_eq(pool.stats.tls_scratch_used, 0, "the spare buffers were enough");
	cr_assert_eq(bufring_held(&bufs), 0, "every spare went back");
	pair_close(&p);
}

Test(conn_tls, no_spare_buffer_free_decrypts_into_the_scratch_buffer)
{
	int32_t taken[SPARES];
	for (uint32_t i = 0; i < SPARES; i++)
		taken[i] = bufring_spare_take(&bufs);
	cr_assert_eq(bufring_spare_take(&bufs), -1);
	struct pair p;
	pair_open(&p, 65536);
	handshake(&p);
	static uint8_t up[200000];
	fill(up, sizeof(up), 3);
	cr_assert_eq(conn_write(p.cc, slice_make(up, sizeof(up))), 0);
	for (uint32_t i = 0; i < TURNS_MAX && p.srv->input_len < sizeof(up); i++)
		pair_pump(&p, 1);
	cr_assert_eq(p.srv->input_len, sizeof(up));
	cr_assert_eq(memcmp(p.srv->input, up, sizeof(up)), 0);
	cr_assert_gt(pool.stats.tls_scratch_used, 0);
	for (uint32_t i = 0; i < SPARES; i++)
		bufring_release(&bufs, (uint16_t)taken[i]);
	pair_close(&p);
}

Test(conn_tls, starttls_drops_what_was_pipelined_behind_it_on_both_sides)
{
	struct pair p;
	pair_open(&p, 65536);
	/* The server takes "STARTTLS\r\n", answers, starts TLS; the client takes the answer's
	 * line and starts TLS. Each peer sends something more in the same write. */
	p.srv->starttls_line = "STARTTLS\r\n";
	p.srv->starttls_reply = "220 2.0.0 go ahead\r\nINJECTED BY THE SERVER\r\n";
	p.cli->starttls_line = "220 2.0.0 go ahead\r\n";
	cr_assert_eq(conn_write(p.cc, SLICE_LIT("STARTTLS\r\nMAIL FROM:<x@evil.example>\r\n")), 0);
	pair_pump_until(&p, &p.srv->tls_done);
	pair_pump_until(&p, &p.cli->tls_done);
	cr_assert_eq(p.srv->start_rc, 0);
	cr_assert_eq(p.cli->start_rc, 0);
	cr_assert_eq(p.srv->tls_done, 1, "server: %s", p.srv->reason);
	cr_assert_eq(p.cli->tls_done, 1, "client: %s", p.cli->reason);
	cr_assert_eq(conn_write(p.cc, SLICE_LIT("EHLO after\r\n")), 0);
	for (uint32_t i = 0; i < TURNS_MAX && p.srv->input_len < 10 + 12; i++)
		pair_pump(&p, 1);
	pair_pump(&p, 20);
	cr_assert_eq(p.srv->input_len, 10 + 12);
	cr_assert_eq(memcmp(p.srv->input, "STARTTLS\r\nEHLO after\r\n", 22), 0);
	cr_assert_eq(p.cli->input_len, 20, "the client saw only the 220 line");
	pair_close(&p);
}

Test(conn_tls, garbage_instead_of_a_client_hello_fails_with_a_reason)
{
	struct end *e = end_new(true);
	int peer;
	struct conn *c = server_on(e, &peer);
	cr_assert_eq(conn_tls_server(c, server_ctx, e->handshake_class), 0);
	/* A handshake record holding a ServerHello, of all things, for the server. */
	static const uint8_t bad[] = { 22, 3, 1, 0, 4, 2, 0, 0, 0 };
	cr_assert_eq(send(peer, bad, sizeof(bad), 0), (ssize_t)sizeof(bad));
	for (uint32_t i = 0; i < 200 && e->closed == 0; i++)
		turn(10);
	cr_assert_eq(e->tls_done, 1 - EPROTO);
	cr_assert_neq(e->reason[0], '\0');
	cr_log_info("reason: %s", e->reason);
	cr_assert_eq(e->closed, 1 - EPROTO);
	uint8_t buf[256];
	ssize_t n = recv(peer, buf, sizeof(buf), MSG_DONTWAIT);
	cr_assert_gt(n, 0, "an alert went out");
	cr_assert_eq(buf[0], 21, "a TLS alert record");
	close(peer);
	end_free(e);
}

Test(conn_tls, a_silent_peer_meets_the_handshake_deadline)
{
	struct end *e = end_new(true);
	e->handshake_class = conn_pool_timeout_class(&pool, 200);
	uint32_t idle = conn_pool_timeout_class(&pool, 30);
	int peer;
	struct conn *c = server_on(e, &peer);
	turn(0);   /* the clock the deadline starts from */
	uint64_t start = ring.now_ms;
	cr_assert_eq(conn_tls_server(c, server_ctx, e->handshake_class), 0);
	conn_idle(c, idle);   /* ignored during the handshake */
	for (uint32_t i = 0; i < 200 && e->closed == 0; i++)
		turn(10);
	cr_assert_eq(e->tls_done, 1 - ETIMEDOUT);
	cr_assert_str_eq(e->reason, "handshake timed out");
	cr_assert_geq(ring.now_ms - start, 150, "the session's shorter deadline was ignored");
	cr_assert_eq(e->closed, 1 - ETIMEDOUT);
	close(peer);
	end_free(e);
}

Test(conn_tls, a_client_refuses_a_certificate_it_cannot_verify)
{
	struct pair p;
	pair_open(&p, 65536);
	cr_assert_eq(conn_tls_server(p.sc, server_ctx, p.srv->handshake_class), 0);
	struct tls_client_params cp = { .level = CONFIG_TLS_VERIFY, .host = SLICE_LIT(HOST) };
	cr_assert_eq(conn_tls_client(p.cc, stranger_ctx, &cp, p.cli->handshake_class), 0);
	pair_pump_until(&p, &p.cli->tls_done);
	cr_assert_eq(p.cli->tls_done, 1 - EPROTO);
	cr_assert(strstr(p.cli->reason, "certificate verify failed") != NULL, "%s", p.cli->reason);
	pair_pump_until(&p, &p.srv->tls_done);
	cr_assert_eq(p.srv->tls_done, 1 - EPROTO, "the server got the client's alert");
	pair_close(&p);
}

Test(conn_tls, output_before_the_handshake_waits_and_close_sends_close_notify)
{
	struct pair p;
	pair_open(&p, 65536);
	cr_assert_eq(conn_tls_server(p.sc, server_ctx, p.srv->handshake_class), 0);
	/* Implicit TLS: the greeting is written before the handshake and leaves after it. */
	cr_assert_eq(conn_write(p.sc, SLICE_LIT("220 hello\r\n")), 0);
	turn(0);
	struct tls_client_params cp = { .level = CONFIG_TLS_MAY, .host = SLICE_LIT(HOST) };
	cr_assert_eq(conn_tls_client(p.cc, stranger_ctx, &cp, p.cli->handshake_class), 0);
	pair_pump_until(&p, &p.cli->tls_done);
	cr_assert_eq(p.cli->tls_done, 1, "MAY: an unverified certificate is no failure");
	cr_assert(!tls_stage_verified(conn_tls(p.cc)));
	for (uint32_t i = 0; i < TURNS_MAX && p.cli->input_len < 11; i++)
		pair_pump(&p, 1);
	cr_assert_eq(p.cli->input_len, 11);
	cr_assert_eq(memcmp(p.cli->input, "220 hello\r\n", 11), 0);
	cr_assert_eq(conn_write(p.sc, SLICE_LIT("221 bye\r\n")), 0);
	conn_close(p.sc);
	pair_pump_until(&p, &p.cli->closed);
	cr_assert_eq(p.cli->closed, 1, "close_notify ends the client's stream cleanly");
	cr_assert_eq(p.cli->input_len, 20);
	cr_assert_eq(memcmp(p.cli->input + 11, "221 bye\r\n", 9), 0);
	pair_close(&p);
}
