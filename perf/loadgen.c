/* perf/loadgen.c - io_uring SMTP load generator and SMTP sink, for loopback benchmarks only.
 *
 * Client mode drives -c connections on one ring per thread (-t), each sending messages one
 * transaction after another; a message counts as sent only when every reply of its transaction
 * was the expected one, ending with 250 after the data. The latency of a message is the time from
 * submitting the write that ends its data to reading the reply to it. Every loop is bounded: -n
 * messages in all, -d seconds of starting new ones, -T seconds hard limit, and a bound on
 * connection errors.
 *
 * Sink mode (--sink) is a minimal, fast SMTP server that accepts and counts messages and can
 * answer chosen fractions with 451 or 554; it stops on SIGINT/SIGTERM or after -T seconds.
 *
 * Only loopback addresses (127.0.0.0/8, ::1) are accepted as targets or listen addresses.
 * Results go to stdout as "key: name=value ..." lines that perf/compare parses. */
#include "base/assert.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LG_CONNS_MAX          10000u   /* client connections in all threads */
#define LG_THREADS_MAX           64u
#define LG_RCPTS_MAX          1000u   /* RFC 5321 4.5.3.1.8: servers take at least 100 */
#define LG_ADDR_LEN_MAX        256u   /* RFC 5321 4.5.3.1.3: a path is at most 256 octets */
#define LG_REPLY_BUF_SIZE     8192u   /* unparsed reply bytes per connection */
#define LG_REPLY_LINE_LEN_MAX  512u   /* RFC 5321 4.5.3.1.5 */
#define LG_HDR_LEN_MAX        2048u
#define LG_MSG_SIZE_MAX (64ull << 20)
#define LG_MSG_SIZE_MIN        512u
#define LG_BODY_LINE_LEN        68u   /* text per body line, plus CRLF: 70 octets */
#define LG_TICK_MS             100u   /* how often deadlines are checked */
#define LG_CQE_BATCH_MAX       256u
#define LG_RING_ENTRIES_MAX   4096u
#define LG_CONN_ERRORS_MIN      64u   /* a client gives up after max(this, 2 * conns) errors */
#define LG_CODES                600u  /* reply codes counted: 000..599 */
#define LG_CODE_CLOSED            0u  /* the message was lost to a connection error */
#define LG_CODE_TIMEOUT           1u  /* the message was under way at the -T deadline */
#define LG_CODE_BAD_REPLY         2u  /* a reply that is not SMTP */
#define LG_SECONDS_MAX       86400.0

#define SINK_CONNS_MAX        4096u
#define SINK_IN_BUF_SIZE     65536u
#define SINK_OUT_BUF_SIZE     8192u
#define SINK_REPLY_LEN_MAX     512u   /* room kept free in the output buffer per command */
#define SINK_SECONDS_DEFAULT 3600.0
#define SINK_LISTEN_MAX       4096u   /* --listen-count: consecutive IPv4 addresses */
#define SINK_DELAY_MAX_MS    10000u   /* --reply-delay */

_Static_assert(LG_REPLY_LINE_LEN_MAX < LG_REPLY_BUF_SIZE, "a reply line fits the buffer");
_Static_assert(SINK_REPLY_LEN_MAX * 4 <= SINK_OUT_BUF_SIZE, "several replies per flush");
_Static_assert(LG_CODE_BAD_REPLY < 100, "pseudo codes stay below real reply codes");

enum lg_op { LG_OP_CONNECT = 1, LG_OP_SEND, LG_OP_RECV, LG_OP_ACCEPT, LG_OP_DELAY };

struct lg_opts {
	struct sockaddr_storage addr;
	socklen_t addr_len;
	uint32_t conns;
	uint32_t per_conn;        /* messages per connection, 0: unlimited */
	uint32_t threads;
	uint32_t rcpts;
	uint32_t users;
	uint64_t total;
	uint64_t size;
	double duration_s;        /* stop starting messages after this, 0: no limit */
	double max_s;             /* hard limit */
	bool pipelining;
	bool bdat;
	bool sink;
	bool quiet;
	const char *rcpt_pattern;
	const char *sender;
	double defer;
	double reject;
	uint32_t listen_count;    /* sink: consecutive addresses from -l */
	uint32_t reply_delay_ms;  /* sink: each batch of replies waits this long */
	const char *stats_file;   /* sink: counts rewritten every tick */
};

/* What all client threads share: read-only after start, except the message counter. */
struct lg_shared {
	const struct lg_opts *o;
	_Atomic uint64_t next_msg;
	uint64_t start_ns;
	uint64_t stop_start_ns;   /* no new transaction after this */
	uint64_t deadline_ns;     /* everything stops */
	char *body;               /* the message body after the header, shared by every message */
	size_t body_len;
	char date[64];
};

enum lg_conn_state {
	LG_CS_IDLE, LG_CS_CONNECTING, LG_CS_GREETING, LG_CS_EHLO, LG_CS_TX, LG_CS_RSET,
	LG_CS_QUIT, LG_CS_CLOSING, LG_CS_DONE,
};

struct lg_client;

struct lg_conn {
	struct lg_client *cl;
	uint32_t index;
	int fd;
	enum lg_conn_state state;
	uint32_t pending;         /* ring operations in flight */
	uint32_t gen;             /* counts connections made in this slot */
	bool send_busy;
	bool recv_busy;
	bool quit_ok;             /* 221 seen: the close is not an error */
	bool parsing;             /* rbuf is being parsed: the next recv waits until it is compacted */
	uint32_t rlen;
	uint32_t msgs_on_conn;
	/* The transaction: command k is MAIL (0), RCPT (1..r), DATA or BDAT (r+1), body (r+2). */
	uint64_t msg_no;
	uint32_t cmds_sent;
	uint32_t replies;
	uint32_t first_bad;       /* code of the first unexpected reply, 0: none */
	bool data_go;             /* 354 received */
	uint64_t eod_ns;
	uint32_t *cmd_off;        /* r + 3 offsets into cmdbuf */
	char *cmdbuf;
	uint32_t hdr_len;
	char hdr[LG_HDR_LEN_MAX];
	struct iovec iov[4];
	uint32_t iov_count;
	uint32_t iov_pos;
	struct msghdr msg;
	char rbuf[LG_REPLY_BUF_SIZE];
};

struct lg_client {
	struct lg_shared *sh;
	struct io_uring ring;
	struct lg_conn *conns;
	uint32_t nconns;
	uint32_t active;          /* connections not DONE */
	bool gave_up;
	uint64_t ok;
	uint64_t failed;
	uint64_t connects;
	uint64_t conn_errors;
	uint64_t codes[LG_CODES];
	uint32_t *lat_us;
	uint64_t lat_count;
	uint64_t lat_cap;
	uint64_t last_ns;
};

static uint64_t
lg_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void
lg_die(const char *what)
{
	fprintf(stderr, "loadgen: %s\n", what);
	exit(2);
}

static struct io_uring_sqe *
lg_sqe(struct io_uring *ring)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	if (sqe == NULL) {
		/* The submission queue is full: hand it to the kernel and take a fresh entry. */
		(void)io_uring_submit(ring);
		sqe = io_uring_get_sqe(ring);
	}
	ASSERT(sqe != NULL);
	return sqe;
}

static uint64_t
lg_tag(uint32_t index, enum lg_op op)
{
	return ((uint64_t)index << 8) | (uint64_t)op;
}

static int
lg_ring_init(struct io_uring *ring, uint32_t conns)
{
	uint32_t entries = 64;
	while (entries < 4 * conns && entries < LG_RING_ENTRIES_MAX)
		entries *= 2;
	struct io_uring_params p;
	memset(&p, 0, sizeof(p));
	p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_COOP_TASKRUN;
	if (io_uring_queue_init_params(entries, ring, &p) == 0)
		return 0;
	return io_uring_queue_init(entries, ring, 0);
}

/* ---- options ---- */

static bool
lg_is_loopback(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *in = (const struct sockaddr_in *)ss;
		return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	}
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)ss;
	return ss->ss_family == AF_INET6 && IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
}

/* host:port with host 127.x.x.x, localhost or [::1]. */
static void
lg_parse_addr(const char *arg, struct lg_opts *o)
{
	char host[64];
	const char *colon = strrchr(arg, ':');
	if (colon == NULL || (size_t)(colon - arg) >= sizeof(host))
		lg_die("address must be host:port");
	memcpy(host, arg, (size_t)(colon - arg));
	host[colon - arg] = '\0';
	char *end = NULL;
	unsigned long port = strtoul(colon + 1, &end, 10);
	if (*end != '\0' || port == 0 || port > 65535)
		lg_die("bad port");
	memset(&o->addr, 0, sizeof(o->addr));
	struct sockaddr_in *in = (struct sockaddr_in *)&o->addr;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&o->addr;
	if (strcmp(host, "localhost") == 0)
		strcpy(host, "127.0.0.1");
	if (strcmp(host, "[::1]") == 0) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		in6->sin6_addr = in6addr_loopback;
		o->addr_len = sizeof(*in6);
	} else if (inet_pton(AF_INET, host, &in->sin_addr) == 1) {
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)port);
		o->addr_len = sizeof(*in);
	} else {
		lg_die("host must be an IPv4 address, localhost or [::1]");
	}
	if (!lg_is_loopback(&o->addr))
		lg_die("only loopback addresses (127.0.0.0/8, ::1) are allowed");
}

static double
lg_parse_num(const char *arg, double lo, double hi, const char *what)
{
	char *end = NULL;
	double v = strtod(arg, &end);
	if (end == arg || *end != '\0' || !(v >= lo && v <= hi)) {
		fprintf(stderr, "loadgen: %s out of range [%g, %g]: %s\n", what, lo, hi, arg);
		exit(2);
	}
	return v;
}

static void
lg_usage(void)
{
	fputs("usage: loadgen [-s host:port] [-c conns] [-m msgs_per_conn] [-n total] [-z size]\n"
		"               [-r rcpts] [-R pattern] [-u users] [-f sender] [-P] [-B] [-t threads]\n"
		"               [-d seconds] [-T max_seconds] [-q]\n"
		"       loadgen --sink [-l host:port] [--defer FRACTION] [--reject FRACTION] [-T secs]\n"
		"                      [--listen-count N] [--reply-delay MS] [--stats-file PATH]\n"
		"  -s  server (loopback only; default 127.0.0.1:2525)\n"
		"  -c  concurrent connections (default 1)\n"
		"  -m  messages per connection, 1 = a new connection per message (default 0: no limit)\n"
		"  -n  messages in all (default 1000)\n"
		"  -z  message size in octets, header included (default 1024)\n"
		"  -r  recipients per message (default 1)\n"
		"  -R  recipient pattern with one %u (default user%u@localhost), -u users (default 100)\n"
		"  -P  pipelining: MAIL+RCPT+DATA in one write, then the body and \".\" in one write\n"
		"  -B  BDAT ... LAST instead of DATA (RFC 3030)\n"
		"  -d  stop starting messages after this many seconds (then finish those under way)\n"
		"  -T  hard limit in seconds (default 60 for the client, 3600 for the sink)\n",
		stderr);
	exit(2);
}

static bool
lg_pattern_ok(const char *p)
{
	const char *pct = strchr(p, '%');
	if (pct == NULL)
		return true;
	if ((pct[1] != 'u' && pct[1] != 'd') || strchr(pct + 2, '%') != NULL)
		return false;
	return strlen(p) + 10 < LG_ADDR_LEN_MAX;
}

static void
lg_opts_check(struct lg_opts *o)
{
	if (o->threads > o->conns)
		o->threads = o->conns;
	if (!lg_pattern_ok(o->rcpt_pattern) || strlen(o->sender) + 1 > LG_ADDR_LEN_MAX)
		lg_die("the recipient pattern takes one %u (or %d), addresses at most 255 octets");
	if (o->defer + o->reject > 1.0)
		lg_die("--defer plus --reject exceeds 1");
	if (o->max_s == 0)
		o->max_s = o->sink ? SINK_SECONDS_DEFAULT : 60.0;
	if (o->addr_len == 0)
		lg_parse_addr("127.0.0.1:2525", o);
}

static void
lg_parse_opts(int argc, char **argv, struct lg_opts *o)
{
	static const struct option longs[] = {
		{ "sink", no_argument, NULL, 'S' },
		{ "defer", required_argument, NULL, 'D' },
		{ "reject", required_argument, NULL, 'J' },
		{ "listen-count", required_argument, NULL, 'L' },
		{ "reply-delay", required_argument, NULL, 'Y' },
		{ "stats-file", required_argument, NULL, 'F' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	*o = (struct lg_opts){ .conns = 1, .threads = 1, .rcpts = 1, .users = 100, .total = 1000,
		.size = 1024, .rcpt_pattern = "user%u@localhost", .sender = "loadgen@localhost" };
	int ch;
	while ((ch = getopt_long(argc, argv, "s:l:c:m:n:z:r:R:u:f:PBt:d:T:qh", longs, NULL)) != -1) {
		switch (ch) {
		case 's': case 'l': lg_parse_addr(optarg, o); break;
		case 'c': o->conns = (uint32_t)lg_parse_num(optarg, 1, LG_CONNS_MAX, "-c"); break;
		case 'm': o->per_conn = (uint32_t)lg_parse_num(optarg, 0, 1e9, "-m"); break;
		case 'n': o->total = (uint64_t)lg_parse_num(optarg, 1, 1e9, "-n"); break;
		case 'z': o->size = (uint64_t)lg_parse_num(optarg, LG_MSG_SIZE_MIN,
			(double)LG_MSG_SIZE_MAX, "-z"); break;
		case 'r': o->rcpts = (uint32_t)lg_parse_num(optarg, 1, LG_RCPTS_MAX, "-r"); break;
		case 'R': o->rcpt_pattern = optarg; break;
		case 'u': o->users = (uint32_t)lg_parse_num(optarg, 1, 1e9, "-u"); break;
		case 'f': o->sender = optarg; break;
		case 'P': o->pipelining = true; break;
		case 'B': o->bdat = true; break;
		case 't': o->threads = (uint32_t)lg_parse_num(optarg, 1, LG_THREADS_MAX, "-t"); break;
		case 'd': o->duration_s = lg_parse_num(optarg, 0, LG_SECONDS_MAX, "-d"); break;
		case 'T': o->max_s = lg_parse_num(optarg, 0.1, LG_SECONDS_MAX, "-T"); break;
		case 'q': o->quiet = true; break;
		case 'S': o->sink = true; break;
		case 'D': o->defer = lg_parse_num(optarg, 0, 1, "--defer"); break;
		case 'J': o->reject = lg_parse_num(optarg, 0, 1, "--reject"); break;
		case 'L': o->listen_count = (uint32_t)lg_parse_num(optarg, 1, SINK_LISTEN_MAX,
			"--listen-count"); break;
		case 'Y': o->reply_delay_ms = (uint32_t)lg_parse_num(optarg, 0, SINK_DELAY_MAX_MS,
			"--reply-delay"); break;
		case 'F': o->stats_file = optarg; break;
		default: lg_usage();
		}
	}
	if (optind != argc)
		lg_usage();
	lg_opts_check(o);
}

/* ---- the message ---- */

static const char *const lg_words[] = {
	"the", "queue", "of", "mail", "is", "written", "to", "disk", "before", "server", "says",
	"yes", "and", "every", "message", "reaches", "its", "recipient", "once", "shard", "ring",
	"delivery", "report", "meeting", "tomorrow", "please", "find", "attached", "numbers", "for",
	"quarter", "thanks", "regards", "schedule", "update", "review", "budget", "team", "project",
};

/* A body of text lines of at most LG_BODY_LINE_LEN octets plus CRLF, exactly len octets,
 * ending in CRLF. No line starts with a dot, so DATA needs no dot-stuffing. */
static char *
lg_body_make(size_t len)
{
	ASSERT(len >= 2);
	char *b = malloc(len + 1);
	if (b == NULL)
		lg_die("out of memory");
	size_t room = len - 2;   /* the final CRLF is kept apart */
	uint32_t seed = 12345;
	size_t pos = 0;
	size_t line = 0;
	for (;;) {
		seed = seed * 1103515245u + 12345u;
		const char *w = lg_words[(seed >> 16) % ARRAY_LEN(lg_words)];
		size_t wl = strlen(w) + (line > 0);
		if (line + wl > LG_BODY_LINE_LEN && pos + 2 <= room) {
			memcpy(b + pos, "\r\n", 2);
			pos += 2;
			line = 0;
			continue;
		}
		if (pos + wl > room)
			break;
		if (line > 0)
			b[pos] = ' ';
		memcpy(b + pos + (line > 0), w, strlen(w));
		pos += wl;
		line += wl;
	}
	while (pos < room)
		b[pos++] = 'x';   /* pads the last line to the exact size */
	memcpy(b + pos, "\r\n", 2);
	pos += 2;
	b[pos] = '\0';
	ASSERT(pos == len);
	return b;
}

static void
lg_rcpt_addr(const struct lg_opts *o, uint64_t msg_no, uint32_t i, char *out, size_t out_len)
{
	uint32_t user = (uint32_t)((msg_no * o->rcpts + i) % o->users);
	int n = snprintf(out, out_len, o->rcpt_pattern, user);
	ASSERT(n > 0 && (size_t)n < out_len);
}

static uint32_t
lg_hdr_make(const struct lg_shared *sh, uint64_t msg_no, char *out, size_t out_len)
{
	char to[LG_ADDR_LEN_MAX];
	lg_rcpt_addr(sh->o, msg_no, 0, to, sizeof(to));
	int n = snprintf(out, out_len,
		"From: Load Generator <%s>\r\n"
		"To: <%s>\r\n"
		"Subject: loadgen message %010llu\r\n"
		"Message-ID: <%010llu.%010llu@loadgen.localhost>\r\n"
		"Date: %s\r\n"
		"MIME-Version: 1.0\r\n"
		"Content-Type: text/plain; charset=us-ascii\r\n"
		"\r\n",
		sh->o->sender, to, (unsigned long long)msg_no, (unsigned long long)msg_no,
		(unsigned long long)sh->start_ns, sh->date);
	ASSERT(n > 0 && (size_t)n < out_len);
	return (uint32_t)n;
}

static void
lg_shared_init(struct lg_shared *sh, const struct lg_opts *o)
{
	memset(sh, 0, sizeof(*sh));
	sh->o = o;
	time_t t = time(NULL);
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(sh->date, sizeof(sh->date), "%a, %d %b %Y %H:%M:%S +0000", &tm);
	sh->start_ns = lg_now_ns();
	char hdr[LG_HDR_LEN_MAX];
	uint32_t hdr_len = lg_hdr_make(sh, 0, hdr, sizeof(hdr));
	sh->body_len = o->size > hdr_len + 72 ? o->size - hdr_len : 72;
	sh->body = lg_body_make(sh->body_len);
	sh->deadline_ns = sh->start_ns + (uint64_t)(o->max_s * 1e9);
	sh->stop_start_ns = o->duration_s > 0 ? sh->start_ns + (uint64_t)(o->duration_s * 1e9)
		: sh->deadline_ns;
}

/* ---- client: connections ---- */

static void lg_conn_step(struct lg_conn *c);

static uint32_t
lg_tx_cmds(const struct lg_opts *o)
{
	return o->rcpts + (o->bdat ? 2 : 3);
}

static void
lg_count_code(struct lg_client *cl, uint32_t code)
{
	cl->codes[code < LG_CODES ? code : LG_CODE_BAD_REPLY]++;
}

static void
lg_post_recv(struct lg_conn *c)
{
	if (c->recv_busy || c->parsing || c->state == LG_CS_CLOSING)
		return;
	struct io_uring_sqe *sqe = lg_sqe(&c->cl->ring);
	io_uring_prep_recv(sqe, c->fd, c->rbuf + c->rlen, LG_REPLY_BUF_SIZE - c->rlen, 0);
	io_uring_sqe_set_data64(sqe, lg_tag(c->index, LG_OP_RECV));
	c->recv_busy = true;
	c->pending++;
}

static void
lg_post_send(struct lg_conn *c)
{
	ASSERT(!c->send_busy);
	ASSERT(c->iov_pos < c->iov_count);
	memset(&c->msg, 0, sizeof(c->msg));
	c->msg.msg_iov = c->iov + c->iov_pos;
	c->msg.msg_iovlen = c->iov_count - c->iov_pos;
	struct io_uring_sqe *sqe = lg_sqe(&c->cl->ring);
	io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, lg_tag(c->index, LG_OP_SEND));
	c->send_busy = true;
	c->pending++;
	lg_post_recv(c);   /* every write here asks for at least one reply */
}

static void
lg_send_text(struct lg_conn *c, const char *text)
{
	c->iov[0] = (struct iovec){ .iov_base = (void *)text, .iov_len = strlen(text) };
	c->iov_count = 1;
	c->iov_pos = 0;
	lg_post_send(c);
}

/* Stops the connection: shutdown wakes the operations in flight, the slot is reused once they
 * have all completed. */
static void
lg_conn_close(struct lg_conn *c, bool error)
{
	if (c->state == LG_CS_CLOSING || c->state == LG_CS_DONE || c->state == LG_CS_IDLE)
		return;
	if (error) {
		c->cl->conn_errors++;
		if (c->state == LG_CS_TX) {
			c->cl->failed++;
			c->cl->codes[LG_CODE_CLOSED]++;
		}
	}
	(void)shutdown(c->fd, SHUT_RDWR);
	c->state = LG_CS_CLOSING;
	lg_conn_step(c);
}

static bool
lg_more_work(const struct lg_client *cl)
{
	const struct lg_shared *sh = cl->sh;
	if (cl->gave_up || lg_now_ns() >= sh->stop_start_ns)
		return false;
	return atomic_load(&sh->next_msg) < sh->o->total;
}

static void
lg_conn_connect(struct lg_conn *c)
{
	const struct lg_opts *o = c->cl->sh->o;
	if (!lg_more_work(c->cl)) {
		c->state = LG_CS_DONE;
		c->cl->active--;
		return;
	}
	c->fd = socket(o->addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		lg_die("socket() failed");
	int one = 1;
	(void)setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	c->gen++;
	c->rlen = 0;
	c->msgs_on_conn = 0;
	c->quit_ok = false;
	c->state = LG_CS_CONNECTING;
	c->cl->connects++;
	struct io_uring_sqe *sqe = lg_sqe(&c->cl->ring);
	io_uring_prep_connect(sqe, c->fd, (const struct sockaddr *)&o->addr, o->addr_len);
	io_uring_sqe_set_data64(sqe, lg_tag(c->index, LG_OP_CONNECT));
	c->pending++;
}

/* ---- client: the transaction ---- */

static void
lg_tx_format(struct lg_conn *c)
{
	const struct lg_shared *sh = c->cl->sh;
	const struct lg_opts *o = sh->o;
	c->hdr_len = lg_hdr_make(sh, c->msg_no, c->hdr, sizeof(c->hdr));
	size_t msg_len = c->hdr_len + sh->body_len;
	size_t cap = (size_t)(o->rcpts + 3) * (LG_ADDR_LEN_MAX + 32);
	size_t pos = 0;
	c->cmd_off[0] = 0;
	pos += (size_t)snprintf(c->cmdbuf, cap, "MAIL FROM:<%s> SIZE=%zu\r\n", o->sender, msg_len);
	for (uint32_t i = 0; i < o->rcpts; i++) {
		char rcpt[LG_ADDR_LEN_MAX];
		lg_rcpt_addr(o, c->msg_no, i, rcpt, sizeof(rcpt));
		c->cmd_off[i + 1] = (uint32_t)pos;
		pos += (size_t)snprintf(c->cmdbuf + pos, cap - pos, "RCPT TO:<%s>\r\n", rcpt);
	}
	c->cmd_off[o->rcpts + 1] = (uint32_t)pos;
	if (o->bdat)
		pos += (size_t)snprintf(c->cmdbuf + pos, cap - pos, "BDAT %zu LAST\r\n", msg_len);
	else
		pos += (size_t)snprintf(c->cmdbuf + pos, cap - pos, "DATA\r\n");
	c->cmd_off[o->rcpts + 2] = (uint32_t)pos;
	ASSERT(pos < cap);
}

/* Commands [from, to) in one write: a run of command lines, then the message if included. */
static void
lg_tx_send(struct lg_conn *c, uint32_t from, uint32_t to)
{
	const struct lg_shared *sh = c->cl->sh;
	const struct lg_opts *o = sh->o;
	uint32_t text_end = to < o->rcpts + 2 ? to : o->rcpts + 2;
	uint32_t n = 0;
	if (from < text_end)
		c->iov[n++] = (struct iovec){ .iov_base = c->cmdbuf + c->cmd_off[from],
			.iov_len = c->cmd_off[text_end] - c->cmd_off[from] };
	bool with_msg = to == lg_tx_cmds(o);
	if (with_msg) {
		c->iov[n++] = (struct iovec){ .iov_base = c->hdr, .iov_len = c->hdr_len };
		c->iov[n++] = (struct iovec){ .iov_base = sh->body, .iov_len = sh->body_len };
		if (!o->bdat)
			c->iov[n++] = (struct iovec){ .iov_base = (void *)".\r\n", .iov_len = 3 };
		c->eod_ns = lg_now_ns();
	}
	ASSERT(n > 0);
	c->iov_count = n;
	c->iov_pos = 0;
	c->cmds_sent = to;
	lg_post_send(c);
}

/* How far the commands may be sent now, given the replies so far. */
static uint32_t
lg_tx_send_limit(const struct lg_conn *c)
{
	const struct lg_opts *o = c->cl->sh->o;
	uint32_t body = o->rcpts + 2;   /* the DATA body's index */
	if (!o->pipelining) {
		if (c->replies < c->cmds_sent || c->first_bad != 0 || c->cmds_sent == lg_tx_cmds(o))
			return c->cmds_sent;
		if (!o->bdat && c->cmds_sent == body && !c->data_go)
			return c->cmds_sent;
		return c->cmds_sent + 1;
	}
	if (c->cmds_sent == 0)
		return o->rcpts + 2;    /* MAIL, every RCPT, and DATA or BDAT with the message */
	if (!o->bdat && c->replies == body && c->data_go)
		return body + 1;
	return c->cmds_sent;
}

static void
lg_tx_start(struct lg_conn *c, uint64_t msg_no)
{
	c->msg_no = msg_no;
	c->cmds_sent = 0;
	c->replies = 0;
	c->first_bad = 0;
	c->data_go = false;
	c->msgs_on_conn++;
	c->state = LG_CS_TX;
	lg_tx_format(c);
	lg_conn_step(c);
}

/* Next transaction, or QUIT when this connection's share or the whole run is done. */
static void
lg_conn_next(struct lg_conn *c)
{
	struct lg_client *cl = c->cl;
	const struct lg_opts *o = cl->sh->o;
	bool conn_full = o->per_conn != 0 && c->msgs_on_conn >= o->per_conn;
	if (!conn_full && !cl->gave_up && lg_now_ns() < cl->sh->stop_start_ns) {
		uint64_t m = atomic_fetch_add(&cl->sh->next_msg, 1);
		if (m < o->total) {
			lg_tx_start(c, m);
			return;
		}
	}
	c->state = LG_CS_QUIT;
	lg_send_text(c, "QUIT\r\n");
}

static void
lg_tx_finish(struct lg_conn *c)
{
	struct lg_client *cl = c->cl;
	uint64_t now = lg_now_ns();
	bool ok = c->first_bad == 0 && c->replies == lg_tx_cmds(cl->sh->o);
	cl->last_ns = now;
	if (!ok) {
		cl->failed++;
		lg_count_code(cl, c->first_bad);
		c->state = LG_CS_RSET;
		lg_send_text(c, "RSET\r\n");
		return;
	}
	cl->ok++;
	if (cl->lat_count == cl->lat_cap) {
		cl->lat_cap = cl->lat_cap ? cl->lat_cap * 2 : 4096;
		cl->lat_us = realloc(cl->lat_us, cl->lat_cap * sizeof(*cl->lat_us));
		if (cl->lat_us == NULL)
			lg_die("out of memory");
	}
	uint64_t us = (now - c->eod_ns) / 1000;
	cl->lat_us[cl->lat_count++] = us > UINT32_MAX ? UINT32_MAX : (uint32_t)us;
	lg_conn_next(c);
}

static uint32_t
lg_tx_expected(const struct lg_opts *o, uint32_t k)
{
	if (k == 0)
		return 250;
	if (k <= o->rcpts)
		return 250;
	if (k == o->rcpts + 1 && !o->bdat)
		return 354;
	return 250;
}

static void
lg_tx_reply(struct lg_conn *c, uint32_t code)
{
	const struct lg_opts *o = c->cl->sh->o;
	uint32_t k = c->replies++;
	uint32_t want = lg_tx_expected(o, k);
	bool good = code == want || (want == 250 && k >= 1 && k <= o->rcpts && code == 251);
	if (want == 354 && code == 354)
		c->data_go = true;
	if (!good && c->first_bad == 0)
		c->first_bad = code;
	lg_conn_step(c);
}

/* Moves a transaction on once the write in flight is done: more commands, or its end. */
static void
lg_tx_step(struct lg_conn *c)
{
	if (c->send_busy)
		return;
	uint32_t limit = lg_tx_send_limit(c);
	if (limit > c->cmds_sent) {
		lg_tx_send(c, c->cmds_sent, limit);
		return;
	}
	if (c->replies < c->cmds_sent) {
		lg_post_recv(c);
		return;
	}
	lg_tx_finish(c);
}

static void
lg_conn_step(struct lg_conn *c)
{
	switch (c->state) {
	case LG_CS_TX:
		lg_tx_step(c);
		break;
	case LG_CS_CLOSING:
		if (c->pending == 0) {
			close(c->fd);
			c->fd = -1;
			c->state = LG_CS_IDLE;
			lg_conn_connect(c);
		}
		break;
	default:
		break;
	}
}

/* ---- client: replies and completions ---- */

static void
lg_conn_reply(struct lg_conn *c, uint32_t code)
{
	switch (c->state) {
	case LG_CS_GREETING:
		if (code != 220)
			goto bad;
		c->state = LG_CS_EHLO;
		lg_send_text(c, "EHLO loadgen.localhost\r\n");
		return;
	case LG_CS_EHLO:
		if (code != 250)
			goto bad;
		lg_conn_next(c);
		return;
	case LG_CS_TX:
		if (c->replies >= c->cmds_sent)
			goto bad;    /* a reply to nothing: a 421 before closing, or a confused server */
		lg_tx_reply(c, code);
		return;
	case LG_CS_RSET:
		lg_conn_next(c);
		return;
	case LG_CS_QUIT:
		c->quit_ok = true;
		lg_conn_close(c, code != 221);
		return;
	default:
		return;
	}
bad:
	lg_count_code(c->cl, code);
	lg_conn_close(c, true);
}

/* Parses every complete reply in rbuf (RFC 5321 4.2.1: "xyz-" continues, "xyz " or "xyz" ends)
 * and keeps a partial last line. Returns false on a line that is not a reply. */
static bool
lg_conn_parse(struct lg_conn *c)
{
	uint32_t start = 0;
	uint32_t gen = c->gen;
	while (start < c->rlen) {
		char *nl = memchr(c->rbuf + start, '\n', c->rlen - start);
		if (nl == NULL)
			break;
		uint32_t len = (uint32_t)(nl - (c->rbuf + start));
		const char *l = c->rbuf + start;
		start += len + 1;
		if (len < 3 || l[0] < '1' || l[0] > '5' || l[1] < '0' || l[1] > '9' || l[2] < '0'
			|| l[2] > '9')
			return false;
		if (len > 3 && l[3] == '-')
			continue;
		lg_conn_reply(c, (uint32_t)((l[0] - '0') * 100 + (l[1] - '0') * 10 + (l[2] - '0')));
		if (c->gen != gen || c->state == LG_CS_CLOSING)
			return true;   /* the rest of the buffer belongs to a connection that is over */
	}
	memmove(c->rbuf, c->rbuf + start, c->rlen - start);
	c->rlen -= start;
	return c->rlen <= LG_REPLY_LINE_LEN_MAX;
}

static void
lg_on_recv(struct lg_conn *c, int res)
{
	c->recv_busy = false;
	if (c->state == LG_CS_CLOSING) {
		lg_conn_step(c);
		return;
	}
	if (res <= 0) {
		lg_conn_close(c, !(c->state == LG_CS_QUIT && res == 0));
		return;
	}
	c->rlen += (uint32_t)res;
	uint32_t gen = c->gen;
	c->parsing = true;
	bool parsed = lg_conn_parse(c);
	c->parsing = false;
	if (!parsed) {
		c->cl->codes[LG_CODE_BAD_REPLY]++;
		lg_conn_close(c, true);
		return;
	}
	if (c->gen != gen)
		return;
	bool waiting = c->state == LG_CS_GREETING || c->state == LG_CS_EHLO
		|| c->state == LG_CS_RSET || c->state == LG_CS_QUIT
		|| (c->state == LG_CS_TX && c->replies < c->cmds_sent);
	if (waiting)
		lg_post_recv(c);
}

static void
lg_on_send(struct lg_conn *c, int res)
{
	c->send_busy = false;
	if (c->state == LG_CS_CLOSING) {
		lg_conn_step(c);
		return;
	}
	if (res < 0) {
		lg_conn_close(c, true);
		return;
	}
	size_t left = (size_t)res;
	while (c->iov_pos < c->iov_count && left >= c->iov[c->iov_pos].iov_len)
		left -= c->iov[c->iov_pos++].iov_len;
	if (c->iov_pos < c->iov_count) {
		/* A short write: send the rest before anything else. */
		c->iov[c->iov_pos].iov_base = (char *)c->iov[c->iov_pos].iov_base + left;
		c->iov[c->iov_pos].iov_len -= left;
		lg_post_send(c);
		return;
	}
	lg_conn_step(c);
}

static void
lg_on_connect(struct lg_conn *c, int res)
{
	if (c->state == LG_CS_CLOSING) {
		lg_conn_step(c);
		return;
	}
	if (res < 0) {
		lg_conn_close(c, true);
		return;
	}
	c->state = LG_CS_GREETING;
	lg_post_recv(c);
}

static void
lg_client_cqe(struct lg_client *cl, const struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	uint32_t index = (uint32_t)(ud >> 8);
	ASSERT(index < cl->nconns);
	struct lg_conn *c = &cl->conns[index];
	ASSERT(c->pending > 0);
	c->pending--;
	switch ((enum lg_op)(ud & 0xff)) {
	case LG_OP_CONNECT: lg_on_connect(c, cqe->res); break;
	case LG_OP_SEND:    lg_on_send(c, cqe->res); break;
	case LG_OP_RECV:    lg_on_recv(c, cqe->res); break;
	default:            ASSERT(!"unknown operation");
	}
	uint64_t limit = cl->nconns * 2u > LG_CONN_ERRORS_MIN ? cl->nconns * 2u : LG_CONN_ERRORS_MIN;
	if (cl->conn_errors > limit)
		cl->gave_up = true;
}

/* ---- client: the loop ---- */

static void
lg_client_init(struct lg_client *cl, struct lg_shared *sh, uint32_t nconns)
{
	memset(cl, 0, sizeof(*cl));
	cl->sh = sh;
	cl->nconns = nconns;
	cl->conns = calloc(nconns, sizeof(*cl->conns));
	if (cl->conns == NULL)
		lg_die("out of memory");
	size_t cap = (size_t)(sh->o->rcpts + 3) * (LG_ADDR_LEN_MAX + 32);
	for (uint32_t i = 0; i < nconns; i++) {
		struct lg_conn *c = &cl->conns[i];
		c->cl = cl;
		c->index = i;
		c->fd = -1;
		c->cmdbuf = malloc(cap);
		c->cmd_off = calloc(sh->o->rcpts + 3, sizeof(*c->cmd_off));
		if (c->cmdbuf == NULL || c->cmd_off == NULL)
			lg_die("out of memory");
	}
}

/* At the hard deadline every transaction under way is a failure (code "timeout"). */
static void
lg_client_abort(struct lg_client *cl)
{
	for (uint32_t i = 0; i < cl->nconns; i++) {
		struct lg_conn *c = &cl->conns[i];
		if (c->state == LG_CS_TX) {
			cl->failed++;
			cl->codes[LG_CODE_TIMEOUT]++;
		}
		if (c->fd >= 0)
			close(c->fd);
	}
}

static void *
lg_client_run(void *arg)
{
	struct lg_client *cl = arg;
	/* Here, not in lg_client_init: with SINGLE_ISSUER the creating thread is the submitter. */
	if (lg_ring_init(&cl->ring, cl->nconns) < 0)
		lg_die("cannot set up the ring");
	cl->active = cl->nconns;
	for (uint32_t i = 0; i < cl->nconns; i++)
		lg_conn_connect(&cl->conns[i]);
	while (cl->active > 0) {
		if (lg_now_ns() >= cl->sh->deadline_ns) {
			lg_client_abort(cl);
			break;
		}
		struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = LG_TICK_MS * 1000000ll };
		struct io_uring_cqe *cqe = NULL;
		int rc = io_uring_submit_and_wait_timeout(&cl->ring, &cqe, 1, &ts, NULL);
		if (rc < 0 && rc != -ETIME && rc != -EINTR)
			lg_die("io_uring_submit_and_wait_timeout failed");
		uint32_t seen = 0;
		unsigned head;
		io_uring_for_each_cqe(&cl->ring, head, cqe) {
			lg_client_cqe(cl, cqe);
			if (++seen == LG_CQE_BATCH_MAX)
				break;
		}
		io_uring_cq_advance(&cl->ring, seen);
	}
	io_uring_queue_exit(&cl->ring);
	return NULL;
}

static int
lg_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a;
	uint32_t y = *(const uint32_t *)b;
	return (x > y) - (x < y);
}

/* Merges the threads' figures into the first client. */
static void
lg_client_merge(struct lg_client *into, struct lg_client *cl, uint32_t n)
{
	for (uint32_t t = 1; t < n; t++) {
		struct lg_client *o = &cl[t];
		into->ok += o->ok;
		into->failed += o->failed;
		into->connects += o->connects;
		into->conn_errors += o->conn_errors;
		if (o->last_ns > into->last_ns)
			into->last_ns = o->last_ns;
		for (uint32_t k = 0; k < LG_CODES; k++)
			into->codes[k] += o->codes[k];
		into->lat_us = realloc(into->lat_us,
			(into->lat_count + o->lat_count + 1) * sizeof(*into->lat_us));
		if (into->lat_us == NULL)
			lg_die("out of memory");
		memcpy(into->lat_us + into->lat_count, o->lat_us, o->lat_count * sizeof(*o->lat_us));
		into->lat_count += o->lat_count;
	}
}

static void
lg_client_report(struct lg_client *cl, const struct lg_opts *o)
{
	uint64_t end = cl->last_ns > cl->sh->start_ns ? cl->last_ns : lg_now_ns();
	double secs = (double)(end - cl->sh->start_ns) / 1e9;
	printf("loadgen: conns=%u per_conn=%u size=%llu rcpts=%u pipelining=%s bdat=%s threads=%u\n",
		o->conns, o->per_conn, (unsigned long long)o->size, o->rcpts,
		o->pipelining ? "yes" : "no", o->bdat ? "yes" : "no", o->threads);
	printf("messages: ok=%llu failed=%llu\n", (unsigned long long)cl->ok,
		(unsigned long long)cl->failed);
	printf("rate: msgs_per_s=%.1f elapsed_s=%.3f\n", secs > 0 ? (double)cl->ok / secs : 0.0,
		secs);
	qsort(cl->lat_us, cl->lat_count, sizeof(*cl->lat_us), lg_cmp_u32);
	uint64_t n = cl->lat_count;
	double p50 = n ? cl->lat_us[(n - 1) / 2] / 1000.0 : 0;
	double p99 = n ? cl->lat_us[(n - 1) * 99 / 100] / 1000.0 : 0;
	double max = n ? cl->lat_us[n - 1] / 1000.0 : 0;
	printf("latency_ms: p50=%.3f p99=%.3f max=%.3f\n", p50, p99, max);
	printf("errors:");
	static const char *const pseudo[] = { "closed", "timeout", "bad_reply" };
	uint32_t shown = 0;
	for (uint32_t k = 0; k < LG_CODES; k++) {
		if (cl->codes[k] == 0)
			continue;
		if (k < ARRAY_LEN(pseudo))
			printf(" %s=%llu", pseudo[k], (unsigned long long)cl->codes[k]);
		else
			printf(" %03u=%llu", k, (unsigned long long)cl->codes[k]);
		shown++;
	}
	printf(shown ? "\n" : " none\n");
	printf("connections: opened=%llu errors=%llu\n", (unsigned long long)cl->connects,
		(unsigned long long)cl->conn_errors);
}

static int
lg_client_main(const struct lg_opts *o)
{
	static struct lg_shared sh;
	lg_shared_init(&sh, o);
	struct lg_client *cl = calloc(o->threads, sizeof(*cl));
	pthread_t *th = calloc(o->threads, sizeof(*th));
	if (cl == NULL || th == NULL)
		lg_die("out of memory");
	for (uint32_t t = 0; t < o->threads; t++)
		lg_client_init(&cl[t], &sh, o->conns / o->threads + (t < o->conns % o->threads));
	for (uint32_t t = 1; t < o->threads; t++)
		if (pthread_create(&th[t], NULL, lg_client_run, &cl[t]) != 0)
			lg_die("pthread_create failed");
	lg_client_run(&cl[0]);
	for (uint32_t t = 1; t < o->threads; t++)
		pthread_join(th[t], NULL);
	lg_client_merge(&cl[0], cl, o->threads);
	lg_client_report(&cl[0], o);
	return cl[0].failed == 0 && cl[0].conn_errors == 0 && cl[0].ok > 0 ? 0 : 1;
}

/* ---- sink ---- */

enum sink_mode { SINK_CMD, SINK_DATA, SINK_BDAT };

struct sink_conn {
	int fd;
	bool in_use;
	bool send_busy;
	bool recv_busy;
	bool closing;
	bool quit;
	uint32_t pending;
	enum sink_mode mode;
	bool has_mail;
	uint32_t rcpts;
	uint32_t eod_state;     /* how much of CRLF "." CRLF has been matched */
	uint64_t bdat_left;
	bool bdat_last;
	bool delay_armed;       /* --reply-delay: the timeout is in flight */
	bool delay_passed;      /* ... and has fired: the next flush goes */
	struct __kernel_timespec delay_ts;
	uint32_t in_len;
	uint32_t out_len;
	uint32_t out_sent;
	char in[SINK_IN_BUF_SIZE];
	char out[SINK_OUT_BUF_SIZE];
};

struct sink {
	const struct lg_opts *o;
	struct io_uring ring;
	int listen_fds[SINK_LISTEN_MAX];
	uint32_t listen_count;
	uint32_t open_now, open_max;
	int stats_fd;
	struct sink_conn *conns;
	uint32_t rng;
	uint64_t connections;
	uint64_t messages;
	uint64_t accepted;
	uint64_t deferred;
	uint64_t rejected;
	uint64_t bytes;
	uint64_t refused_conns;
};

static volatile sig_atomic_t sink_stop;

static void
sink_on_signal(int sig)
{
	(void)sig;
	sink_stop = 1;
}

static void
sink_reply(struct sink_conn *sc, const char *text)
{
	size_t len = strlen(text);
	ASSERT(len <= SINK_REPLY_LEN_MAX);
	ASSERT(sc->out_len + len <= SINK_OUT_BUF_SIZE);
	memcpy(sc->out + sc->out_len, text, len);
	sc->out_len += (uint32_t)len;
}

static void
sink_flush(struct sink *s, uint32_t i)
{
	struct sink_conn *sc = &s->conns[i];
	if (sc->send_busy || sc->out_sent == sc->out_len || sc->closing)
		return;
	if (s->o->reply_delay_ms > 0 && !sc->delay_passed) {
		if (sc->delay_armed)
			return;
		sc->delay_ts = (struct __kernel_timespec){ .tv_sec = s->o->reply_delay_ms / 1000,
			.tv_nsec = (long long)(s->o->reply_delay_ms % 1000) * 1000000 };
		struct io_uring_sqe *sqe = lg_sqe(&s->ring);
		io_uring_prep_timeout(sqe, &sc->delay_ts, 0, 0);
		io_uring_sqe_set_data64(sqe, lg_tag(i, LG_OP_DELAY));
		sc->delay_armed = true;
		sc->pending++;
		return;
	}
	sc->delay_passed = false;
	struct io_uring_sqe *sqe = lg_sqe(&s->ring);
	io_uring_prep_send(sqe, sc->fd, sc->out + sc->out_sent, sc->out_len - sc->out_sent,
		MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, lg_tag(i, LG_OP_SEND));
	sc->send_busy = true;
	sc->pending++;
}

static void
sink_recv(struct sink *s, uint32_t i)
{
	struct sink_conn *sc = &s->conns[i];
	if (sc->recv_busy || sc->closing || sc->quit || sc->in_len == SINK_IN_BUF_SIZE)
		return;
	struct io_uring_sqe *sqe = lg_sqe(&s->ring);
	io_uring_prep_recv(sqe, sc->fd, sc->in + sc->in_len, SINK_IN_BUF_SIZE - sc->in_len, 0);
	io_uring_sqe_set_data64(sqe, lg_tag(i, LG_OP_RECV));
	sc->recv_busy = true;
	sc->pending++;
}

static void
sink_close(struct sink *s, uint32_t i)
{
	struct sink_conn *sc = &s->conns[i];
	if (!sc->closing) {
		sc->closing = true;
		(void)shutdown(sc->fd, SHUT_RDWR);
	}
	if (sc->pending == 0) {
		close(sc->fd);
		sc->in_use = false;
		s->open_now--;
	}
}

/* The end of one message: the answer the options ask for, drawn at random. */
static void
sink_message_done(struct sink *s, struct sink_conn *sc)
{
	s->rng ^= s->rng << 13;
	s->rng ^= s->rng >> 17;
	s->rng ^= s->rng << 5;
	double u = (double)s->rng / 4294967296.0;
	s->messages++;
	if (u < s->o->defer) {
		s->deferred++;
		sink_reply(sc, "451 4.3.0 sink: deferred on purpose\r\n");
	} else if (u < s->o->defer + s->o->reject) {
		s->rejected++;
		sink_reply(sc, "554 5.7.1 sink: rejected on purpose\r\n");
	} else {
		s->accepted++;
		sink_reply(sc, "250 2.0.0 sink: queued\r\n");
	}
	sc->has_mail = false;
	sc->rcpts = 0;
}

/* Consumes DATA bytes up to and including CRLF "." CRLF (RFC 5321 4.1.1.4); the state starts
 * at 2, as if the CRLF before the first line had been seen. Returns bytes consumed. */
static uint32_t
sink_scan_data(struct sink *s, struct sink_conn *sc, const char *p, uint32_t len)
{
	static const char eod[] = "\r\n.\r\n";
	uint32_t i = 0;
	while (i < len) {
		if (sc->eod_state == 0) {
			const char *cr = memchr(p + i, '\r', len - i);
			if (cr == NULL)
				return len;
			i = (uint32_t)(cr - p);
		}
		if (p[i] == eod[sc->eod_state]) {
			sc->eod_state++;
			i++;
			if (sc->eod_state == 5) {
				sc->mode = SINK_CMD;
				sink_message_done(s, sc);
				return i;
			}
		} else {
			sc->eod_state = p[i] == '\r' ? 1 : 0;
			i++;
		}
	}
	return len;
}

static uint32_t sink_take_bdat(struct sink *s, struct sink_conn *sc, uint32_t avail);

static void
sink_cmd_bdat(struct sink *s, struct sink_conn *sc, const char *arg)
{
	char *end = NULL;
	unsigned long long n = strtoull(arg, &end, 10);
	if (end == arg) {
		sink_reply(sc, "501 5.5.4 BDAT needs a size\r\n");
		return;
	}
	while (*end == ' ')
		end++;
	sc->bdat_left = n;
	sc->bdat_last = strncasecmp(end, "LAST", 4) == 0;
	sc->mode = SINK_BDAT;
	if (n == 0)
		(void)sink_take_bdat(s, sc, 0);   /* RFC 3030 allows "BDAT 0 LAST" */
}

static void
sink_cmd(struct sink *s, struct sink_conn *sc, char *line)
{
	if (strncasecmp(line, "EHLO", 4) == 0) {
		sink_reply(sc, "250-sink.localhost\r\n250-PIPELINING\r\n250-CHUNKING\r\n"
			"250-8BITMIME\r\n250 SIZE 104857600\r\n");
	} else if (strncasecmp(line, "HELO", 4) == 0) {
		sink_reply(sc, "250 sink.localhost\r\n");
	} else if (strncasecmp(line, "MAIL", 4) == 0) {
		sc->has_mail = true;
		sc->rcpts = 0;
		sink_reply(sc, "250 2.1.0 ok\r\n");
	} else if (strncasecmp(line, "RCPT", 4) == 0) {
		sc->rcpts += sc->has_mail;
		sink_reply(sc, sc->has_mail ? "250 2.1.5 ok\r\n" : "503 5.5.1 MAIL first\r\n");
	} else if (strncasecmp(line, "DATA", 4) == 0) {
		if (sc->rcpts == 0) {
			sink_reply(sc, "503 5.5.1 RCPT first\r\n");
			return;
		}
		sc->mode = SINK_DATA;
		sc->eod_state = 2;
		sink_reply(sc, "354 go ahead\r\n");
	} else if (strncasecmp(line, "BDAT ", 5) == 0) {
		sink_cmd_bdat(s, sc, line + 5);
	} else if (strncasecmp(line, "RSET", 4) == 0) {
		sc->has_mail = false;
		sc->rcpts = 0;
		sink_reply(sc, "250 2.0.0 ok\r\n");
	} else if (strncasecmp(line, "NOOP", 4) == 0) {
		sink_reply(sc, "250 2.0.0 ok\r\n");
	} else if (strncasecmp(line, "QUIT", 4) == 0) {
		sc->quit = true;
		sink_reply(sc, "221 2.0.0 bye\r\n");
	} else {
		sink_reply(sc, "500 5.5.2 unknown command\r\n");
	}
}

/* A BDAT chunk's bytes; at its end the chunk's reply (the message's, for LAST). */
static uint32_t
sink_take_bdat(struct sink *s, struct sink_conn *sc, uint32_t avail)
{
	uint32_t take = sc->bdat_left < avail ? (uint32_t)sc->bdat_left : avail;
	sc->bdat_left -= take;
	if (sc->bdat_left > 0)
		return take;
	sc->mode = SINK_CMD;
	if (sc->rcpts == 0)
		sink_reply(sc, "503 5.5.1 RCPT first\r\n");
	else if (sc->bdat_last)
		sink_message_done(s, sc);
	else
		sink_reply(sc, "250 2.0.0 chunk ok\r\n");
	return take;
}

/* Handles the buffered input while the output buffer has room; keeps a partial line. */
static void
sink_process(struct sink *s, uint32_t i)
{
	struct sink_conn *sc = &s->conns[i];
	uint32_t pos = 0;
	bool partial = false;
	while (pos < sc->in_len && !sc->quit
		&& sc->out_len + SINK_REPLY_LEN_MAX <= SINK_OUT_BUF_SIZE) {
		char *p = sc->in + pos;
		uint32_t avail = sc->in_len - pos;
		if (sc->mode == SINK_DATA) {
			pos += sink_scan_data(s, sc, p, avail);
			continue;
		}
		if (sc->mode == SINK_BDAT) {
			pos += sink_take_bdat(s, sc, avail);
			continue;
		}
		char *nl = memchr(p, '\n', avail);
		if (nl == NULL) {
			partial = true;
			break;
		}
		*nl = '\0';
		if (nl > p && nl[-1] == '\r')
			nl[-1] = '\0';
		pos += (uint32_t)(nl - p) + 1;
		sink_cmd(s, sc, p);
	}
	memmove(sc->in, sc->in + pos, sc->in_len - pos);
	sc->in_len -= pos;
	if (partial && sc->in_len == SINK_IN_BUF_SIZE)
		sink_close(s, i);   /* a command line longer than the buffer */
}

static void
sink_on_recv(struct sink *s, uint32_t i, int res)
{
	struct sink_conn *sc = &s->conns[i];
	sc->recv_busy = false;
	if (sc->closing || res <= 0) {
		sink_close(s, i);
		return;
	}
	sc->in_len += (uint32_t)res;
	s->bytes += (uint64_t)res;
	sink_process(s, i);
	if (sc->closing)
		return;
	sink_flush(s, i);
	if (sc->out_len + SINK_REPLY_LEN_MAX <= SINK_OUT_BUF_SIZE)
		sink_recv(s, i);
}

static void
sink_on_send(struct sink *s, uint32_t i, int res)
{
	struct sink_conn *sc = &s->conns[i];
	sc->send_busy = false;
	if (sc->closing || res < 0) {
		sink_close(s, i);
		return;
	}
	sc->out_sent += (uint32_t)res;
	if (sc->out_sent < sc->out_len) {
		sink_flush(s, i);
		return;
	}
	sc->out_len = 0;
	sc->out_sent = 0;
	if (sc->quit) {
		sink_close(s, i);
		return;
	}
	sink_process(s, i);   /* input left over while the output buffer was full */
	sink_flush(s, i);
	sink_recv(s, i);
}

static void
sink_accept_post(struct sink *s, uint32_t li)
{
	struct io_uring_sqe *sqe = lg_sqe(&s->ring);
	io_uring_prep_accept(sqe, s->listen_fds[li], NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, lg_tag(li, LG_OP_ACCEPT));
}

static void
sink_on_accept(struct sink *s, uint32_t li, int fd)
{
	sink_accept_post(s, li);
	if (fd < 0)
		return;
	uint32_t i = 0;
	while (i < SINK_CONNS_MAX && s->conns[i].in_use)
		i++;
	if (i == SINK_CONNS_MAX) {
		s->refused_conns++;
		close(fd);
		return;
	}
	struct sink_conn *sc = &s->conns[i];
	memset(sc, 0, offsetof(struct sink_conn, in));
	sc->fd = fd;
	sc->in_use = true;
	s->connections++;
	if (++s->open_now > s->open_max)
		s->open_max = s->open_now;
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	sink_reply(sc, "220 sink.localhost ESMTP loadgen sink\r\n");
	sink_flush(s, i);
	sink_recv(s, i);
}

/* The k-th listening address: -l's, its IPv4 address counted up by k. */
static int
sink_listen(const struct lg_opts *o, uint32_t k)
{
	struct sockaddr_storage ss = o->addr;
	if (k > 0) {
		if (ss.ss_family != AF_INET)
			lg_die("--listen-count needs an IPv4 -l address");
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		uint32_t a = ntohl(sin->sin_addr.s_addr) + k;
		if ((a >> 24) != 127)
			lg_die("--listen-count leaves 127.0.0.0/8");
		sin->sin_addr.s_addr = htonl(a);
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		lg_die("socket() failed");
	int one = 1;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (const struct sockaddr *)&ss, o->addr_len) != 0)
		lg_die("bind() failed: is the port taken?");
	if (listen(fd, 4096) != 0)
		lg_die("listen() failed");
	return fd;
}

static void
sink_cqe(struct sink *s, const struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	uint32_t i = (uint32_t)(ud >> 8);
	enum lg_op op = (enum lg_op)(ud & 0xff);
	if (op == LG_OP_ACCEPT) {
		ASSERT(i < s->listen_count);
		sink_on_accept(s, i, cqe->res);
		return;
	}
	ASSERT(i < SINK_CONNS_MAX);
	ASSERT(s->conns[i].pending > 0);
	s->conns[i].pending--;
	if (op == LG_OP_DELAY) {
		s->conns[i].delay_armed = false;
		s->conns[i].delay_passed = true;
		if (s->conns[i].closing)
			sink_close(s, i);
		else
			sink_flush(s, i);
	} else if (op == LG_OP_RECV)
		sink_on_recv(s, i, cqe->res);
	else
		sink_on_send(s, i, cqe->res);
}

static int
sink_main(const struct lg_opts *o)
{
	static struct sink s;
	s.o = o;
	s.rng = 2463534242u;
	s.conns = calloc(SINK_CONNS_MAX, sizeof(*s.conns));
	if (s.conns == NULL || lg_ring_init(&s.ring, 1024) < 0)
		lg_die("cannot set up the ring");
	struct sigaction sa = { .sa_handler = sink_on_signal };   /* no SA_RESTART: waits end */
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	s.listen_count = o->listen_count > 0 ? o->listen_count : 1;
	for (uint32_t k = 0; k < s.listen_count; k++) {
		s.listen_fds[k] = sink_listen(o, k);
		sink_accept_post(&s, k);
	}
	s.stats_fd = -1;
	if (o->stats_file != NULL) {
		s.stats_fd = open(o->stats_file, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
		if (s.stats_fd < 0)
			lg_die("cannot open the --stats-file");
	}
	uint64_t written = UINT64_MAX;
	uint64_t start = lg_now_ns();
	uint64_t deadline = start + (uint64_t)(o->max_s * 1e9);
	if (!o->quiet)
		fprintf(stderr, "sink: listening\n");
	while (!sink_stop && lg_now_ns() < deadline) {
		struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = LG_TICK_MS * 1000000ll };
		struct io_uring_cqe *cqe = NULL;
		(void)io_uring_submit_and_wait_timeout(&s.ring, &cqe, 1, &ts, NULL);
		uint32_t seen = 0;
		unsigned head;
		io_uring_for_each_cqe(&s.ring, head, cqe) {
			sink_cqe(&s, cqe);
			if (++seen == LG_CQE_BATCH_MAX)
				break;
		}
		io_uring_cq_advance(&s.ring, seen);
		if (s.stats_fd >= 0 && s.messages + s.connections != written) {
			char line[128];   /* fixed width: rewritten in place, never shorter */
			int n = snprintf(line, sizeof(line), "%20llu %20llu %20llu %10u\n",
				(unsigned long long)s.accepted, (unsigned long long)s.messages,
				(unsigned long long)s.connections, s.open_max);
			(void)!pwrite(s.stats_fd, line, (size_t)n, 0);
			written = s.messages + s.connections;
		}
	}
	double secs = (double)(lg_now_ns() - start) / 1e9;
	printf("sink: connections=%llu messages=%llu accepted=%llu deferred=%llu rejected=%llu "
		"bytes=%llu refused_conns=%llu open_max=%u elapsed_s=%.3f\n",
		(unsigned long long)s.connections,
		(unsigned long long)s.messages, (unsigned long long)s.accepted,
		(unsigned long long)s.deferred, (unsigned long long)s.rejected,
		(unsigned long long)s.bytes, (unsigned long long)s.refused_conns, s.open_max, secs);
	return 0;
}

int
main(int argc, char **argv)
{
	struct lg_opts o;
	lg_parse_opts(argc, argv, &o);
	setvbuf(stdout, NULL, _IOLBF, 0);
	signal(SIGPIPE, SIG_IGN);
	return o.sink ? sink_main(&o) : lg_client_main(&o);
}
