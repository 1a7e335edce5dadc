/* tests/unit/smtpd_test.c - the SMTP server sessions' accept on a real ring: a greeting, and the
 * two refusals (a full shard, a shard that stops), each with its own reply. */
#include <criterion/criterion.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/ring.h"
#include "conf/config.h"
#include "conf/policy.h"
#include "base/bufring.h"
#include "engine/conn.h"
#include "engine/smtpd.h"

static struct ring ring;
static struct bufring bufs;
static struct conn_pool pool;
static struct config cfg;
static struct policy policy;
static struct smtpd *smtpd;

static void
setup(void)
{
	char err[CONFIG_ERR_MAX];
	config_default(&cfg);
	cfg.max_connections = 1;
	cr_assert_eq(policy_init(&policy, &cfg, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(ring_init(&ring, 0, 256, 16), 0);
	cr_assert_eq(bufring_init(&bufs, &ring, 1, 16, 4096), 0);
	cr_assert_eq(conn_pool_init(&pool, &ring, &bufs, cfg.max_connections), 0);
	static const struct smtpd_profile profile = { .smtp = {
		.hostname = SLICE_LIT("mx.example.test"),
		.max_message_size = 100000,
		.max_recipients = 10,
		.bad_cmd_max = 10,
	} };
	struct smtpd_params p = { .cfg = &cfg, .policy = &policy, .spool = NULL, .conns = &pool,
		.profiles = &profile, .profile_count = 1 };
	cr_assert_eq(smtpd_init(&ring, &p, &smtpd), 0);
}

static void
teardown(void)
{
	ring_fini(&ring);
	smtpd_fini(smtpd);
	conn_pool_fini(&pool);
	bufring_fini(&bufs);
	policy_fini(&policy);
}

TestSuite(smtpd, .init = setup, .fini = teardown);

/* The end of a loop turn: output leaves. */
static void
turn(void)
{
	ring_clock(&ring);
	ring_turn(&ring);
	(void)io_uring_submit(&ring.uring);
}

/* A connected pair: [0] is given to smtpd_accept, [1] is the client. */
static void
client(int pair[2])
{
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair), 0);
	struct timeval tv = { .tv_sec = 5 };
	setsockopt(pair[1], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

static void
expect_reply(int fd, const char *want)
{
	char buf[256] = { 0 };
	ssize_t n = recv(fd, buf, sizeof(buf) - 1, 0);
	cr_assert_gt(n, 0);
	cr_assert_str_eq(buf, want);
}

Test(smtpd, a_client_is_greeted)
{
	int c[2];
	client(c);
	smtpd_accept(smtpd, c[0], 0);
	turn();
	expect_reply(c[1], "220 mx.example.test ESMTP ringmta\r\n");
	close(c[1]);
}

Test(smtpd, a_full_shard_answers_421_4_7_0_and_closes)
{
	int a[2], b[2];
	client(a);
	client(b);
	smtpd_accept(smtpd, a[0], 0);          /* max_connections = 1: the one slot */
	smtpd_accept(smtpd, b[0], 0);
	expect_reply(b[1], "421 4.7.0 Too many connections, try again later\r\n");
	char byte;
	cr_assert_eq(recv(b[1], &byte, 1, 0), 0, "closed after the 421");
	close(a[1]);
	close(b[1]);
}

Test(smtpd, a_client_accepted_while_stopping_gets_421_4_3_2)
{
	int c[2];
	client(c);
	ring.stopping = true;                   /* as ring_stop leaves it for the accept in flight */
	smtpd_accept(smtpd, c[0], 0);
	expect_reply(c[1], "421 4.3.2 Service shutting down, try again later\r\n");
	char byte;
	cr_assert_eq(recv(c[1], &byte, 1, 0), 0, "closed after the 421");
	cr_assert_eq(conn_pool_live(&pool), 0, "no session was started");
	close(c[1]);
}
