/* tests/tools/dsn_dump.c - writes sample DSNs for tests/integration/test_dsn_format.py.
 *
 * dsn_dump DIR writes DIR/<case>.eml for each case below, each the three pieces of dsn_compose
 * written with one writev (as the queue writes them), and prints the case names. The Python
 * test parses them with the email package; the cases are fixed, so the test knows what each
 * must contain. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "proto/dsn.h"

#define DUMP_T0        1714566896789ull   /* Wed, 1 May 2024 12:34:56 +0000 */
#define DUMP_QID       0x6632356000000001ull
#define DUMP_DSN_QID   0x6632356000000002ull
#define DUMP_BIG_SIZE  60000u             /* over DSN_SIZE_LIMIT_DEFAULT */
#define DUMP_MIXED_RCPTS 40u
#define DUMP_PATH_MAX  4096u

static const char dump_original[] =
	"Received: from client.example ([127.0.0.1])\r\n"
	"\tby mx.example.com (ringmta) with ESMTP id 6632356000000001;\r\n"
	"\tWed, 1 May 2024 12:34:50 +0000\r\n"
	"From: Alice <alice@a.example>\r\n"
	"To: bob@b.example\r\n"
	"Subject: lunch\r\n"
	"Message-ID: <lunch-1@a.example>\r\n"
	"\r\n"
	"Shall we meet at noon?\r\n";

static struct slice
s(const char *text)
{
	return slice_make(text, strlen(text));
}

static int
dump_write(const char *dir, const char *name, const struct dsn_report *r)
{
	size_t cap = dsn_size(r);
	uint8_t *buf = malloc(cap);
	if (buf == NULL)
		return -ENOMEM;
	struct dsn_out out;
	dsn_compose(r, buf, cap, &out);
	char path[DUMP_PATH_MAX];
	snprintf(path, sizeof(path), "%s/%s.eml", dir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		free(buf);
		return -errno;
	}
	struct iovec iov[3] = {
		{ .iov_base = (void *)out.head.ptr, .iov_len = out.head.len },
		{ .iov_base = (void *)out.original.ptr, .iov_len = out.original.len },
		{ .iov_base = (void *)out.tail.ptr, .iov_len = out.tail.len },
	};
	ssize_t want = (ssize_t)(out.head.len + out.original.len + out.tail.len);
	ssize_t n = writev(fd, iov, 3);
	int rc = n == want ? 0 : -EIO;
	close(fd);
	free(buf);
	printf("%s 8bitmime=%d smtputf8=%d\n", name, out.need_8bitmime, out.need_smtputf8);
	return rc;
}

static struct dsn_envelope
dump_env(enum smtp_dsn_ret ret)
{
	return (struct dsn_envelope){
		.mail_from = s("alice@a.example"),
		.envid = s("QQ314159+2Bx"),
		.ret = ret,
		.arrival_ms = DUMP_T0 - 6000,
		.client_addr = s("127.0.0.1"),
		.helo = s("client.example"),
	};
}

static struct dsn_rcpt
dump_failed_rcpt(void)
{
	return (struct dsn_rcpt){
		.final_rcpt = s("bob@b.example"),
		.orcpt = s("rfc822;bob+2Bfoo@b.example"),
		.action = DSN_ACTION_FAILED,
		.status = s("5.1.1"),
		.diag_type = DSN_DIAG_SMTP,
		.diag = s("550 5.1.1 <bob@b.example>: Recipient address rejected: User unknown"),
		.remote_mta = s("mx.b.example"),
		.last_attempt_ms = DUMP_T0 - 1000,
	};
}

static struct dsn_report
dump_report(const struct dsn_envelope *env, const struct dsn_rcpt *rcpts, uint32_t count,
	struct slice original)
{
	return (struct dsn_report){
		.myhostname = s("mx.example.com"),
		.queue_id = DUMP_QID,
		.dsn_queue_id = DUMP_DSN_QID,
		.now_ms = DUMP_T0,
		.env = env,
		.rcpts = rcpts,
		.rcpt_count = count,
		.original = original,
		.size_limit = DSN_SIZE_LIMIT_DEFAULT,
	};
}

static int
dump_simple(const char *dir)
{
	struct dsn_envelope full = dump_env(SMTP_DSN_RET_FULL);
	struct dsn_envelope hdrs = dump_env(SMTP_DSN_RET_HDRS);
	struct dsn_rcpt rc = dump_failed_rcpt();
	struct slice orig = s(dump_original);
	struct dsn_report r = dump_report(&full, &rc, 1, orig);
	int rc1 = dump_write(dir, "failed_full", &r);
	r = dump_report(&hdrs, &rc, 1, orig);
	int rc2 = dump_write(dir, "failed_hdrs", &r);
	struct dsn_rcpt delayed[2] = { dump_failed_rcpt(), dump_failed_rcpt() };
	for (uint32_t i = 0; i < 2; i++) {
		delayed[i].action = DSN_ACTION_DELAYED;
		delayed[i].status = s("4.4.1");
		delayed[i].diag = s("connect to mx.b.example[192.0.2.1]:25: Connection timed out");
		delayed[i].diag_type = DSN_DIAG_LOCAL;
		delayed[i].retry_until_ms = DUMP_T0 + 5ull * 86400000ull;
	}
	delayed[1].final_rcpt = s("carol@b.example");
	delayed[1].orcpt = s("");
	r = dump_report(&full, delayed, 2, orig);
	int rc3 = dump_write(dir, "delayed", &r);
	return rc1 < 0 ? rc1 : rc2 < 0 ? rc2 : rc3;
}

static int
dump_big(const char *dir)
{
	static char big[DUMP_BIG_SIZE + 1];
	size_t head = strlen(dump_original);
	memcpy(big, dump_original, head);
	for (size_t i = head; i < DUMP_BIG_SIZE; i++)
		big[i] = (i - head) % 72 == 70 ? '\r' : (i - head) % 72 == 71 ? '\n' : 'x';
	memcpy(big + DUMP_BIG_SIZE - 2, "\r\n", 2);
	struct dsn_envelope env = dump_env(SMTP_DSN_RET_FULL);
	struct dsn_rcpt rc = dump_failed_rcpt();
	struct dsn_report r = dump_report(&env, &rc, 1, slice_make(big, DUMP_BIG_SIZE));
	return dump_write(dir, "over_limit", &r);
}

static int
dump_hostile(const char *dir)
{
	static const char diag[] = "550 5.7.1 evil\r\nX-Injected: diag\r\n\r\n"
		"--=_ringmta_6632356000000002--\r\nContent-Type: text/html\r\n\0NUL\x7f\x1b[31m\xff end";
	static const char original[] =
		"Subject: collide\r\n"
		"\r\n"
		"--=_ringmta_6632356000000002\r\n"
		"Content-Type: text/plain\r\n"
		"\r\n"
		"forged part\r\n"
		"--=_ringmta_6632356000000002--\r\n";
	struct dsn_envelope env = dump_env(SMTP_DSN_RET_FULL);
	env.envid = s("id+0D+0AX-Injected:+20envid");
	struct dsn_rcpt rc = dump_failed_rcpt();
	rc.diag = slice_make(diag, sizeof(diag) - 1);
	rc.orcpt = s("rfc822;bob+0D+0AX-Injected:+20orcpt@b.example");
	rc.remote_mta = s("mx.b.example\r\nX-Injected: host");
	struct dsn_report r = dump_report(&env, &rc, 1, slice_make(original, sizeof(original) - 1));
	return dump_write(dir, "hostile", &r);
}

static int
dump_mixed(const char *dir)
{
	static struct dsn_rcpt rcpts[DUMP_MIXED_RCPTS];
	static char names[DUMP_MIXED_RCPTS][32];
	static char longdiag[3000];
	for (size_t i = 0; i < sizeof(longdiag) - 1; i++)
		longdiag[i] = i % 9 == 8 ? ' ' : (char)('a' + i % 26);
	longdiag[sizeof(longdiag) - 1] = '\0';
	for (uint32_t i = 0; i < DUMP_MIXED_RCPTS; i++) {
		snprintf(names[i], sizeof(names[i]), "user%u@b.example", i);
		rcpts[i] = dump_failed_rcpt();
		rcpts[i].final_rcpt = s(names[i]);
		rcpts[i].orcpt = s("");
		if (i % 2 == 1) {
			rcpts[i].action = DSN_ACTION_DELAYED;
			rcpts[i].status = s("4.2.2");
			rcpts[i].retry_until_ms = DUMP_T0 + 86400000ull;
		}
		if (i == 3)
			rcpts[i].diag = s(longdiag);
	}
	struct dsn_envelope env = dump_env(SMTP_DSN_RET_UNSPECIFIED);
	env.envid = s("");
	struct dsn_report r = dump_report(&env, rcpts, DUMP_MIXED_RCPTS, s(dump_original));
	return dump_write(dir, "mixed", &r);
}

static int
dump_utf8(const char *dir)
{
	static const char original[] = "From: J\xc3\xb6rg <j\xc3\xb6rg@a.example>\r\n"
		"Subject: gr\xc3\xbc\xc3\x9f" "e\r\n\r\nHall\xc3\xb6\r\n";
	struct dsn_envelope env = dump_env(SMTP_DSN_RET_FULL);
	env.smtputf8 = true;
	env.mail_from = s("j\xc3\xb6rg@a.example");
	struct dsn_rcpt rc = dump_failed_rcpt();
	rc.final_rcpt = s("b\xc3\xb8" "b@b.example");
	rc.orcpt = s("");
	struct dsn_report r = dump_report(&env, &rc, 1, slice_make(original, sizeof(original) - 1));
	return dump_write(dir, "utf8", &r);
}

int
main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: dsn_dump DIR\n");
		return 2;
	}
	int (*const cases[])(const char *) = { dump_simple, dump_big, dump_hostile, dump_mixed,
		dump_utf8 };
	for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
		int rc = cases[i](argv[1]);
		if (rc < 0) {
			fprintf(stderr, "dsn_dump: %s\n", strerror(-rc));
			return 1;
		}
	}
	return 0;
}
