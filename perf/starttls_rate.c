/* perf/starttls_rate.c - STARTTLS sessions per second against an SMTP server on loopback (a
 * benchmark, not a test).
 *
 * Each of -t threads runs, one after another until -d seconds are over: connect, read the
 * greeting, EHLO, STARTTLS, the TLS handshake (BoringSSL over the socket, no certificate check:
 * the cost measured is the server's), EHLO again inside TLS, QUIT, close. A session counts once
 * the 221 to QUIT has arrived. With -r each thread resumes the session of its last connection
 * (TLS 1.3 ticket), so the server does a resumed handshake. The same client runs against ringmta
 * and Postfix (perf/starttls_compare), so the ratio of the two rates is the servers' own.
 *
 * Only loopback addresses are accepted. Output: one line, "starttls: sessions=N seconds=S
 * rate=R resumed=K errors=E". */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/ssl.h>

#define ST_THREADS_MAX     64u
#define ST_LINE_MAX      1024u
#define ST_BUF_SIZE      4096u
#define ST_ERRORS_MAX    1000u   /* a run stops after this many failed sessions */
#define ST_IO_TIMEOUT_S     10

struct st_conn {
	int fd;
	SSL *ssl;
	uint8_t buf[ST_BUF_SIZE];
	size_t len;
};

static struct sockaddr_in st_addr;
static SSL_CTX *st_ctx;
static double st_deadline;
static bool st_resume;
static atomic_uint_fast64_t st_sessions, st_resumed, st_errors;
static __thread SSL_SESSION *st_ticket;   /* the last session the server issued a ticket for */

/* TLS 1.3 tickets arrive after the handshake: BoringSSL hands each new session here. */
static int
st_new_session(SSL *ssl, SSL_SESSION *session)
{
	(void)ssl;
	SSL_SESSION_free(st_ticket);
	st_ticket = session;
	return 1;   /* the reference is ours */
}

static double
st_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static ssize_t
st_recv(struct st_conn *c, uint8_t *p, size_t n)
{
	if (c->ssl != NULL) {
		int r = SSL_read(c->ssl, p, (int)n);
		return r > 0 ? r : -1;
	}
	return recv(c->fd, p, n, 0);
}

static bool
st_send(struct st_conn *c, const char *text)
{
	size_t n = strlen(text);
	if (c->ssl != NULL)
		return SSL_write(c->ssl, text, (int)n) == (int)n;
	return send(c->fd, text, n, MSG_NOSIGNAL) == (ssize_t)n;
}

/* Reads reply lines until the last one of a reply; true if its code is `code`. Octets after it
 * stay in the buffer (there are none before STARTTLS's 220: the server sends nothing more). */
static bool
st_reply(struct st_conn *c, const char *code)
{
	for (;;) {
		uint8_t *lf = memchr(c->buf, '\n', c->len);
		if (lf != NULL) {
			size_t line = (size_t)(lf - c->buf) + 1;
			bool last = line >= 4 && c->buf[3] == ' ';
			bool ok = line >= 4 && memcmp(c->buf, code, 3) == 0;
			memmove(c->buf, c->buf + line, c->len - line);
			c->len -= line;
			if (last)
				return ok;
			continue;
		}
		if (c->len == sizeof(c->buf))
			return false;   /* a line longer than any reply line */
		ssize_t n = st_recv(c, c->buf + c->len, sizeof(c->buf) - c->len);
		if (n <= 0)
			return false;
		c->len += (size_t)n;
	}
}

/* One session, resuming the thread's last ticket with -r. */
static bool
st_session(void)
{
	struct st_conn c = { .fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0) };
	if (c.fd < 0)
		return false;
	struct timeval tv = { .tv_sec = ST_IO_TIMEOUT_S };
	(void)setsockopt(c.fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	int one = 1;
	(void)setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	bool ok = connect(c.fd, (struct sockaddr *)&st_addr, sizeof(st_addr)) == 0
		&& st_reply(&c, "220") && st_send(&c, "EHLO perf.client\r\n") && st_reply(&c, "250")
		&& st_send(&c, "STARTTLS\r\n") && st_reply(&c, "220") && c.len == 0;
	if (ok) {
		c.ssl = SSL_new(st_ctx);
		ok = c.ssl != NULL && SSL_set_fd(c.ssl, c.fd) == 1;
		if (ok && st_resume && st_ticket != NULL)
			SSL_set_session(c.ssl, st_ticket);
		ok = ok && SSL_connect(c.ssl) == 1;
	}
	ok = ok && st_send(&c, "EHLO perf.client\r\n") && st_reply(&c, "250")
		&& st_send(&c, "QUIT\r\n") && st_reply(&c, "221");
	if (ok && SSL_session_reused(c.ssl))
		atomic_fetch_add(&st_resumed, 1);
	if (c.ssl != NULL)
		SSL_free(c.ssl);
	close(c.fd);
	return ok;
}

static void *
st_thread(void *arg)
{
	(void)arg;
	while (st_now() < st_deadline && atomic_load(&st_errors) < ST_ERRORS_MAX) {
		if (st_session())
			atomic_fetch_add(&st_sessions, 1);
		else
			atomic_fetch_add(&st_errors, 1);
	}
	SSL_SESSION_free(st_ticket);
	return NULL;
}

static int
st_usage(void)
{
	fprintf(stderr, "usage: starttls_rate -s 127.0.0.1:PORT [-t threads] [-d seconds] [-r]\n");
	return 2;
}

int
main(int argc, char **argv)
{
	const char *server = NULL;
	unsigned threads = 2;
	double seconds = 5.0;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-s") == 0 && i + 1 < argc)
			server = argv[++i];
		else if (strcmp(argv[i], "-t") == 0 && i + 1 < argc)
			threads = (unsigned)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "-d") == 0 && i + 1 < argc)
			seconds = strtod(argv[++i], NULL);
		else if (strcmp(argv[i], "-r") == 0)
			st_resume = true;
		else
			return st_usage();
	}
	char host[64];
	unsigned port = 0;
	if (server == NULL || sscanf(server, "%63[^:]:%u", host, &port) != 2 || port == 0
		|| port > 65535 || inet_pton(AF_INET, host, &st_addr.sin_addr) != 1
		|| (ntohl(st_addr.sin_addr.s_addr) >> 24) != 127 || threads == 0
		|| threads > ST_THREADS_MAX || !(seconds > 0 && seconds <= 3600))
		return st_usage();   /* loopback only */
	st_addr.sin_family = AF_INET;
	st_addr.sin_port = htons((uint16_t)port);
	st_ctx = SSL_CTX_new(TLS_method());
	if (st_ctx == NULL || SSL_CTX_set_min_proto_version(st_ctx, TLS1_2_VERSION) != 1)
		return 1;
	SSL_CTX_set_verify(st_ctx, SSL_VERIFY_NONE, NULL);
	SSL_CTX_set_session_cache_mode(st_ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL);
	SSL_CTX_sess_set_new_cb(st_ctx, st_new_session);
	pthread_t t[ST_THREADS_MAX];
	double start = st_now();
	st_deadline = start + seconds;
	for (unsigned i = 0; i < threads; i++) {
		if (pthread_create(&t[i], NULL, st_thread, NULL) != 0)
			return 1;
	}
	for (unsigned i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	double took = st_now() - start;
	uint64_t n = atomic_load(&st_sessions);
	printf("starttls: sessions=%llu seconds=%.3f rate=%.1f resumed=%llu errors=%llu\n",
		(unsigned long long)n, took, (double)n / took,
		(unsigned long long)atomic_load(&st_resumed), (unsigned long long)atomic_load(&st_errors));
	SSL_CTX_free(st_ctx);
	return 0;
}
