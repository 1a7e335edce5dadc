/* tests/unit/conn_test.c - the transport on a real ring and real loopback sockets: outbound
 * connect (with a source address and a timeout), input, output, idle deadlines, close. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/ring.h"
#include "base/bufring.h"
#include "engine/conn.h"

static struct ring ring;
static struct bufring bufs;
static struct conn_pool pool;

/* What a test session saw. */
struct probe {
	int connected;          /* 1 + result once connected was called */
	int closed;             /* 1 + result once closed was called */
	int timeouts;
	char input[256];
	size_t input_len;
	size_t take_max;        /* input takes at most this many octets per call (0: all) */
};

static size_t
probe_input(void *s, struct conn *c, struct slice in)
{
	struct probe *p = s;
	size_t n = p->take_max && in.len > p->take_max ? p->take_max : in.len;
	if (n > sizeof(p->input) - p->input_len)
		n = sizeof(p->input) - p->input_len;
	memcpy(p->input + p->input_len, in.ptr, n);
	p->input_len += n;
	if (n < in.len)
		conn_kick(c);   /* offer the rest again at the end of the turn */
	return n;
}

static void
probe_connected(void *s, struct conn *c, int res)
{
	((struct probe *)s)->connected = 1 + res;
}

static void
probe_timeout(void *s, struct conn *c)
{
	((struct probe *)s)->timeouts++;
	conn_close(c);
}

static void
probe_closed(void *s, struct conn *c, int res)
{
	((struct probe *)s)->closed = 1 + res;
}

static const struct conn_session_ops probe_ops = {
	.input = probe_input,
	.connected = probe_connected,
	.timeout = probe_timeout,
	.closed = probe_closed,
};

static void
setup(void)
{
	cr_assert_eq(ring_init(&ring, 0, 256, 16), 0);
	cr_assert_eq(bufring_init(&bufs, &ring, 1, 16, 4096), 0);
	cr_assert_eq(conn_pool_init(&pool, &ring, &bufs, 8), 0);
}

static void
teardown(void)
{
	ring_fini(&ring);
	conn_pool_fini(&pool);
	bufring_fini(&bufs);
}

TestSuite(conn, .init = setup, .fini = teardown);

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
	(void)io_uring_submit(&ring.uring);   /* what the turn queued reaches the kernel now */
}

static void
turns_until(const int *flag, uint32_t max_turns)
{
	for (uint32_t i = 0; i < max_turns && *flag == 0; i++)
		turn(20);
}

static int
listener(struct sockaddr_in *addr, int backlog)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	*addr = (struct sockaddr_in){ .sin_family = AF_INET, .sin_port = 0 };
	inet_pton(AF_INET, "127.0.0.1", &addr->sin_addr);
	cr_assert_eq(bind(fd, (struct sockaddr *)addr, sizeof(*addr)), 0);
	cr_assert_eq(listen(fd, backlog), 0);
	socklen_t len = sizeof(*addr);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)addr, &len), 0);
	return fd;
}

Test(conn, connects_from_the_chosen_source_address_and_talks_both_ways)
{
	struct sockaddr_in to, from = { .sin_family = AF_INET, .sin_port = 0 };
	inet_pton(AF_INET, "127.0.0.2", &from.sin_addr);
	int lfd = listener(&to, 16);
	struct probe p = { 0 };
	int err = 1;
	struct conn *c = conn_connect(&pool, (struct sockaddr *)&to, sizeof(to),
		(struct sockaddr *)&from, sizeof(from), 2000, &probe_ops, &p, &err);
	cr_assert_not_null(c);
	cr_assert_eq(err, 0);
	turns_until(&p.connected, 100);
	cr_assert_eq(p.connected, 1, "connect result %d", p.connected - 1);
	struct sockaddr_in peer;
	socklen_t plen = sizeof(peer);
	int sfd = accept(lfd, (struct sockaddr *)&peer, &plen);
	cr_assert_geq(sfd, 0);
	struct timeval tv = { .tv_sec = 5 };
	setsockopt(sfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char text[32];
	inet_ntop(AF_INET, &peer.sin_addr, text, sizeof(text));
	cr_assert_str_eq(text, "127.0.0.2");                   /* the source address held */
	cr_assert_str_eq(conn_peer_text(c), "127.0.0.1");
	cr_assert_eq(conn_listener(c), UINT32_MAX);
	cr_assert_eq(conn_write(c, SLICE_LIT("EHLO client.example\r\n")), 0);
	turn(0);                                                 /* output leaves at turn end */
	usleep(20000);
	char buf[64] = { 0 };
	cr_assert_eq(recv(sfd, buf, sizeof(buf), 0), 21);
	cr_assert_str_eq(buf, "EHLO client.example\r\n");
	cr_assert_eq(send(sfd, "250 ok\r\n", 8, 0), 8);
	for (uint32_t i = 0; i < 100 && p.input_len < 8; i++)
		turn(20);
	cr_assert_eq(p.input_len, 8);
	cr_assert_eq(memcmp(p.input, "250 ok\r\n", 8), 0);
	conn_close(c);
	turns_until(&p.closed, 100);
	cr_assert_eq(p.closed, 1);
	cr_assert_eq(recv(sfd, buf, sizeof(buf), 0), 0);        /* the peer sees the close */
	cr_assert_eq(conn_pool_live(&pool), 0);
	close(sfd);
	close(lfd);
}

Test(conn, input_the_session_leaves_is_offered_again_in_order)
{
	struct sockaddr_in to;
	int lfd = listener(&to, 16);
	struct probe p = { .take_max = 3 };
	int err;
	struct conn *c = conn_connect(&pool, (struct sockaddr *)&to, sizeof(to), NULL, 0, 2000,
		&probe_ops, &p, &err);
	cr_assert_not_null(c);
	turns_until(&p.connected, 100);
	int sfd = accept(lfd, NULL, NULL);
	cr_assert_eq(send(sfd, "abcdefghij", 10, 0), 10);
	for (uint32_t i = 0; i < 100 && p.input_len < 10; i++)
		turn(20);
	cr_assert_eq(p.input_len, 10);
	cr_assert_eq(memcmp(p.input, "abcdefghij", 10), 0);
	conn_abort(c);
	turns_until(&p.closed, 100);
	cr_assert_eq(p.closed, 1 - ECONNABORTED);
	close(sfd);
	close(lfd);
}

Test(conn, a_refused_connect_reports_the_error_then_closes)
{
	struct sockaddr_in to;
	int lfd = listener(&to, 1);
	close(lfd);                                             /* nobody listens there now */
	struct probe p = { 0 };
	int err;
	struct conn *c = conn_connect(&pool, (struct sockaddr *)&to, sizeof(to), NULL, 0, 2000,
		&probe_ops, &p, &err);
	cr_assert_not_null(c);
	turns_until(&p.closed, 100);
	cr_assert_eq(p.connected, 1 - ECONNREFUSED);
	cr_assert_eq(p.closed, 1 - ECONNREFUSED);
	cr_assert_eq(conn_pool_live(&pool), 0);
}

Test(conn, a_connect_that_gets_no_answer_times_out)
{
	/* A listener whose accept queue is full drops new SYNs: the connect hangs. */
	struct sockaddr_in to;
	int lfd = listener(&to, 0);
	int fill[4];
	for (uint32_t i = 0; i < 4; i++) {
		fill[i] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
		(void)connect(fill[i], (struct sockaddr *)&to, sizeof(to));
	}
	usleep(50000);
	struct probe p = { 0 };
	int err;
	struct conn *c = conn_connect(&pool, (struct sockaddr *)&to, sizeof(to), NULL, 0, 300,
		&probe_ops, &p, &err);
	cr_assert_not_null(c);
	turns_until(&p.closed, 200);
	cr_assert_eq(p.connected, 1 - ETIMEDOUT, "connect result %d", p.connected - 1);
	cr_assert_eq(p.closed, 1 - ETIMEDOUT);
	for (uint32_t i = 0; i < 4; i++)
		close(fill[i]);
	close(lfd);
}

Test(conn, the_idle_deadline_calls_the_session)
{
	struct sockaddr_in to;
	int lfd = listener(&to, 16);
	uint32_t cls = conn_pool_timeout_class(&pool, 100);
	cr_assert_eq(conn_pool_timeout_class(&pool, 100), cls);   /* same duration, same class */
	struct probe p = { 0 };
	int err;
	struct conn *c = conn_connect(&pool, (struct sockaddr *)&to, sizeof(to), NULL, 0, 2000,
		&probe_ops, &p, &err);
	turns_until(&p.connected, 100);
	conn_idle(c, cls);
	turn(0);
	cr_assert_eq(p.timeouts, 0);
	turns_until(&p.closed, 100);
	cr_assert_eq(p.timeouts, 1);
	cr_assert_eq(p.closed, 1);
	close(lfd);
}

Test(conn, a_full_pool_refuses_a_connect)
{
	struct sockaddr_in to;
	int lfd = listener(&to, 16);
	struct probe p[9] = { 0 };
	int err = 0;
	for (uint32_t i = 0; i < 8; i++)
		cr_assert_not_null(conn_connect(&pool, (struct sockaddr *)&to, sizeof(to), NULL, 0,
			2000, &probe_ops, &p[i], &err));
	cr_assert_null(conn_connect(&pool, (struct sockaddr *)&to, sizeof(to), NULL, 0, 2000,
		&probe_ops, &p[8], &err));
	cr_assert_eq(err, -ENOBUFS);
	close(lfd);
	for (uint32_t i = 0; i < 200 && conn_pool_live(&pool) > 0; i++)
		turn(20);
}

/* Borrowed output (conn_write_ref) mixes with copied output in call order, many stretches in one
 * send, and `drained` says when the borrowed memory is free again. */
struct drain_probe {
	struct probe p;
	int drained;
};

static void
drain_probe_drained(void *s, struct conn *c)
{
	((struct drain_probe *)s)->drained++;
}

static void
drain_probe_connected(void *s, struct conn *c, int res)
{
	((struct drain_probe *)s)->p.connected = 1 + res;
}

static void
drain_probe_closed(void *s, struct conn *c, int res)
{
	((struct drain_probe *)s)->p.closed = 1 + res;
}

static const struct conn_session_ops drain_ops = {
	.input = probe_input,
	.connected = drain_probe_connected,
	.drained = drain_probe_drained,
	.timeout = probe_timeout,
	.closed = drain_probe_closed,
};

Test(conn, borrowed_and_copied_output_keep_their_order, .timeout = 10)
{
	struct sockaddr_in to;
	int lfd = listener(&to, 4);
	struct drain_probe dp = { 0 };
	int err;
	struct conn *c = conn_connect(&pool, (struct sockaddr *)&to, sizeof(to), NULL, 0, 2000,
		&drain_ops, &dp, &err);
	cr_assert_not_null(c);
	turns_until(&dp.p.connected, 100);
	int sfd = accept(lfd, NULL, NULL);
	cr_assert_geq(sfd, 0);
	static uint8_t big[200000];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)('a' + i % 26);
	cr_assert_eq(conn_write(c, SLICE_LIT("<head>")), 0);
	uint32_t room = conn_write_ref_room(c);
	cr_assert_eq(room, CONN_SEGS_MAX - 2, "one stretch for the copy, one kept");
	for (uint32_t i = 0; i < 500; i++) {   /* 500 borrowed stretches of 1..400 octets */
		cr_assert_eq(conn_write_ref(c, slice_make(big + i * 400, 1 + i % 400)), 0);
		cr_assert_eq(conn_write(c, SLICE_LIT("|")), 0);
	}
	cr_assert_lt(conn_write_ref_room(c), 30);
	cr_assert_eq(conn_write_ref(c, slice_make(big, sizeof(big))), 0, "a large one too");
	size_t want = 6;
	for (uint32_t i = 0; i < 500; i++)
		want += 1 + i % 400 + 1;
	want += sizeof(big);
	uint8_t *got = malloc(want);
	size_t have = 0;
	struct timeval tv = { .tv_sec = 0, .tv_usec = 20000 };
	setsockopt(sfd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	for (uint32_t i = 0; i < 2000 && have < want; i++) {
		turn(5);
		ssize_t n = recv(sfd, got + have, want - have, 0);
		if (n > 0)
			have += (size_t)n;
	}
	cr_assert_eq(have, want);
	cr_assert_eq(memcmp(got, "<head>", 6), 0);
	size_t at = 6;
	for (uint32_t i = 0; i < 500; i++) {
		cr_assert_eq(memcmp(got + at, big + i * 400, 1 + i % 400), 0, "stretch %u", i);
		at += 1 + i % 400;
		cr_assert_eq(got[at], '|');
		at++;
	}
	cr_assert_eq(memcmp(got + at, big, sizeof(big)), 0);
	for (uint32_t i = 0; i < 20 && dp.drained == 0; i++)
		turn(5);
	cr_assert_gt(dp.drained, 0, "drained: the borrowed memory is free");
	cr_assert_eq(conn_unsent(c), 0);
	free(got);
	conn_abort(c);
	turns_until(&dp.p.closed, 100);
	close(sfd);
	close(lfd);
}

Test(conn, borrowed_stretches_are_bounded)
{
	struct sockaddr_in to;
	int lfd = listener(&to, 4);
	struct drain_probe dp = { 0 };
	int err;
	struct conn *c = conn_connect(&pool, (struct sockaddr *)&to, sizeof(to), NULL, 0, 2000,
		&drain_ops, &dp, &err);
	cr_assert_not_null(c);
	turns_until(&dp.p.connected, 100);
	static const uint8_t x[1] = { 'x' };
	uint32_t ok = 0;
	while (ok < 2 * CONN_SEGS_MAX && conn_write_ref(c, slice_make(x, 1)) == 0)
		ok++;
	cr_assert_eq(ok, CONN_SEGS_MAX, "at the limit: refused, nothing appended");
	cr_assert_eq(conn_unsent(c), CONN_SEGS_MAX);
	cr_assert_eq(conn_write_ref_room(c), 0);
	conn_abort(c);
	turns_until(&dp.p.closed, 100);
	close(lfd);
}

/* A session whose `closed` takes a new connection into the freed slot at once, as an accept
 * completing in the same batch does, and greets it. */
struct reuse_probe {
	struct probe p;
	int fd;                 /* adopted from `closed` */
	struct conn *adopted;
	struct probe adopted_probe;
};

static void
reuse_closed(void *s, struct conn *c, int res)
{
	struct reuse_probe *r = s;
	r->p.closed = 1 + res;
	r->adopted = conn_adopt(&pool, r->fd, 0, &probe_ops, &r->adopted_probe);
	cr_assert_not_null(r->adopted);
	cr_assert_eq(conn_write(r->adopted, SLICE_LIT("220 hello\r\n")), 0);
}

static const struct conn_session_ops reuse_ops = {
	.input = probe_input,
	.connected = probe_connected,
	.timeout = probe_timeout,
	.closed = reuse_closed,
};

Test(conn, a_slot_reused_while_on_the_turn_list_is_served_once, .timeout = 10)
{
	struct sockaddr_in to;
	int lfd = listener(&to, 16);
	int pair[2];
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
	struct reuse_probe r = { .fd = pair[0] };
	int err;
	struct conn *c = conn_connect(&pool, (struct sockaddr *)&to, sizeof(to), NULL, 0, 2000,
		&reuse_ops, &r, &err);
	cr_assert_not_null(c);
	turns_until(&r.p.connected, 100);
	cr_assert_eq(r.p.connected, 1);
	int sfd = accept(lfd, NULL, NULL);
	close(sfd);   /* the peer leaves: the slot is freed by the recv completion, mid-batch */
	turns_until(&r.p.closed, 100);   /* hangs in the end-of-turn hook if the list loops */
	cr_assert_eq(r.p.closed, 1);
	cr_assert_eq((void *)r.adopted, (void *)c, "the freed slot was reused");
	char buf[32] = { 0 };
	struct timeval tv = { .tv_sec = 5 };
	setsockopt(pair[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	cr_assert_eq(recv(pair[1], buf, sizeof(buf), 0), 11);
	cr_assert_str_eq(buf, "220 hello\r\n");
	conn_abort(r.adopted);
	turns_until(&r.adopted_probe.closed, 100);
	close(pair[1]);
	close(lfd);
}
