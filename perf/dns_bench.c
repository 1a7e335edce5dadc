/* perf/dns_bench.c - lookups per second of one shard's resolver, cold and cached, and the
 * latency it adds over the server's own.
 *
 * Usage: dns_bench -s IP:PORT [-n lookups] [-c concurrency] MODE
 *   cold     n ADDR lookups (IPv4 only: one query each) of distinct names b<i>.bench.test,
 *            c under way at once, through the ring, one resolver: lookups/s
 *   cached   the same k names (k = c) asked n times once they are cached: lookups/s, for ADDR
 *            and for MX (mx.bench.test: 2 hosts, one A record each)
 *   latency  one lookup at a time of distinct names: the mean round trip through the resolver,
 *            beside the mean of plain blocking sendto/recv of the same query packets
 * The server must answer *.bench.test A and mx.bench.test MX (perf/dns_bench.py starts NSD so).
 * Prints one "key=value" line per figure. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/ring.h"
#include "conf/config.h"
#include "dns/packet.h"
#include "dns/resolver.h"

#define BENCH_CONCURRENCY_MAX 1024u
#define BENCH_WAIT_MS 1000u

struct bench {
	struct ring ring;
	struct dns_resolver *res;
	uint8_t op_event;
	uint64_t handles[BENCH_CONCURRENCY_MAX];
	uint32_t outstanding;
	uint64_t done;
	uint64_t failed;
	uint64_t started;
	uint64_t total;
	uint32_t names;          /* distinct names cycled through (0: never repeat) */
	enum dns_lookup_type type;
	const char *mx_name;
	struct slice *texts;     /* the names, made before the clock starts (a requester has its
	                          * domain as a slice already) */
	uint64_t text_count;
	uint64_t next_name;      /* cold: the next name never asked */
};

#define BENCH_NAME_LEN 32u

static void
bench_names(struct bench *b, uint64_t count)
{
	char *buf = malloc(count * BENCH_NAME_LEN);
	b->texts = malloc(count * sizeof(*b->texts));
	if (buf == NULL || b->texts == NULL) {
		fprintf(stderr, "dns_bench: out of memory\n");
		exit(1);
	}
	for (uint64_t i = 0; i < count; i++) {
		char *p = buf + i * BENCH_NAME_LEN;
		int len = snprintf(p, BENCH_NAME_LEN, "b%lu.bench.test", (unsigned long)i);
		b->texts[i] = slice_make(p, (size_t)len);
	}
	b->text_count = count;
}

static double
bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void bench_start(struct bench *b, uint32_t slot);

static void
bench_event(void *ctx, const struct io_uring_cqe *cqe)
{
	struct bench *b = ctx;
	uint32_t slot = ring_ud_slot(cqe->user_data);
	const struct dns_result *r = dns_lookup_result(b->res, b->handles[slot]);
	if (r == NULL || r->status != DNS_STATUS_OK || r->host_count == 0)
		b->failed++;
	dns_lookup_release(b->res, b->handles[slot]);
	b->outstanding--;
	b->done++;
	if (b->started < b->total)
		bench_start(b, slot);
}

static void
bench_start(struct bench *b, uint32_t slot)
{
	uint64_t i = b->names > 0 ? b->started % b->names : b->next_name++;
	struct slice name = b->type == DNS_LOOKUP_MX ? slice_make(b->mx_name, strlen(b->mx_name))
		: b->texts[i % b->text_count];
	int rc = dns_lookup_start(b->res, b->type, name, ring_ud(b->op_event, slot, 0),
		&b->handles[slot]);
	if (rc != 0) {
		fprintf(stderr, "dns_bench: lookup_start: %s\n", strerror(-rc));
		exit(1);
	}
	b->started++;
	b->outstanding++;
}

static void
bench_turn(struct bench *b)
{
	uint64_t ms = ring_next_ms(&b->ring, BENCH_WAIT_MS);
	struct __kernel_timespec ts = { .tv_sec = (long long)(ms / 1000),
		.tv_nsec = (long long)(ms % 1000) * 1000000 };
	struct io_uring_cqe *cqe;
	if (ring_dispatch_posted(&b->ring) == 0) {
		int rc = io_uring_submit_and_wait_timeout(&b->ring.uring, &cqe, 1, &ts, NULL);
		if (rc < 0 && rc != -ETIME && rc != -EINTR) {
			fprintf(stderr, "dns_bench: io_uring_enter: %s\n", strerror(-rc));
			exit(1);
		}
	}
	ring_clock(&b->ring);
	unsigned head, seen = 0;
	io_uring_for_each_cqe(&b->ring.uring, head, cqe) {
		ring_dispatch(&b->ring, cqe);
		seen++;
	}
	io_uring_cq_advance(&b->ring.uring, seen);
	ring_dispatch_posted(&b->ring);
	ring_turn(&b->ring);
}

/* Runs total lookups with concurrency c; returns the seconds taken. */
static double
bench_run(struct bench *b, uint64_t total, uint32_t c)
{
	b->total = total;
	b->started = 0;
	b->done = 0;
	b->failed = 0;
	double t0 = bench_now();
	for (uint32_t s = 0; s < c && b->started < total; s++)
		bench_start(b, s);
	while (b->done < total)
		bench_turn(b);
	return bench_now() - t0;
}

/* One query of the server's own, with blocking syscalls on a connected socket: seconds. */
static double
bench_plain_one(int fd, uint32_t i)
{
	struct dns_question q = { .id = (uint16_t)i, .qtype = DNS_TYPE_A };
	char name[64];
	int len = snprintf(name, sizeof(name), "p%u.bench.test", i);
	if (dns_name_from_text(slice_make(name, (size_t)len), &q.qname) != 0)
		exit(1);
	uint8_t msg[DNS_QUERY_LEN_MAX], in[4096];
	int qlen = dns_packet_query(&q, msg, sizeof(msg));
	if (qlen < 0)
		exit(1);
	double t0 = bench_now();
	if (send(fd, msg, (size_t)qlen, 0) != qlen || recv(fd, in, sizeof(in), 0) <= 0) {
		perror("dns_bench: plain query");
		exit(1);
	}
	return bench_now() - t0;
}

static int
bench_cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* Alternates a plain query and a resolver lookup (distinct names, nothing cached), so that both
 * see the same load; prints medians and means. */
static void
bench_latency(struct bench *b, const struct config_addr *server, uint32_t rounds)
{
	int fd = socket(server->sa.ss_family, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (const struct sockaddr *)&server->sa, server->sa_len) != 0) {
		perror("dns_bench: socket");
		exit(1);
	}
	double *plain = malloc(rounds * sizeof(double)), *via = malloc(rounds * sizeof(double));
	if (plain == NULL || via == NULL)
		exit(1);
	double plain_sum = 0, via_sum = 0;
	for (uint32_t i = 0; i < rounds; i++) {
		plain[i] = bench_plain_one(fd, i);
		via[i] = bench_run(b, 1, 1);
		plain_sum += plain[i];
		via_sum += via[i];
	}
	close(fd);
	qsort(plain, rounds, sizeof(double), bench_cmp);
	qsort(via, rounds, sizeof(double), bench_cmp);
	printf("latency rounds=%u resolver_median_us=%.1f server_median_us=%.1f "
		"added_median_us=%.1f resolver_mean_us=%.1f server_mean_us=%.1f failed=%lu\n",
		rounds, via[rounds / 2] * 1e6, plain[rounds / 2] * 1e6,
		(via[rounds / 2] - plain[rounds / 2]) * 1e6, via_sum / rounds * 1e6,
		plain_sum / rounds * 1e6, (unsigned long)b->failed);
	free(plain);
	free(via);
}

static void
bench_setup(struct bench *b, const char *server)
{
	static struct config cfg;
	char err[CONFIG_ERR_MAX], opt[256];
	config_default(&cfg);
	snprintf(opt, sizeof(opt), "dns_servers=%s", server);
	if (config_set(&cfg, opt, err, sizeof(err)) != 0
		|| config_set(&cfg, "inet_protocols=ipv4", err, sizeof(err)) != 0
		|| config_set(&cfg, "dns_cache_max=1000000", err, sizeof(err)) != 0) {
		fprintf(stderr, "dns_bench: %s\n", err);
		exit(2);
	}
	struct dns_resolver_config rc;
	if (dns_resolver_config_from(&cfg, "/dev/null", &rc, err, sizeof(err)) != 0) {
		fprintf(stderr, "dns_bench: %s\n", err);
		exit(2);
	}
	if (ring_init(&b->ring, 0, 4096, 0) != 0 || dns_resolver_new(&b->ring, &rc, &b->res) != 0) {
		fprintf(stderr, "dns_bench: set-up failed\n");
		exit(1);
	}
	b->op_event = ring_op_register(&b->ring, bench_event, b);
}

/* This process's CPU time (user + system), seconds: unlike the wall clock, it hardly depends
 * on what else the machine runs. */
static double
bench_cpu(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6
		+ (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static void
bench_report(const char *what, uint64_t n, double secs, double cpu, uint64_t failed)
{
	printf("%s lookups=%lu seconds=%.3f per_second=%.0f cpu_us_per_lookup=%.2f "
		"per_cpu_second=%.0f failed=%lu\n", what, (unsigned long)n, secs, (double)n / secs,
		cpu / (double)n * 1e6, (double)n / cpu, (unsigned long)failed);
}

int
main(int argc, char **argv)
{
	static struct bench b;
	const char *server = NULL;
	uint64_t n = 100000;
	uint32_t c = 256;
	int opt;
	while ((opt = getopt(argc, argv, "s:n:c:")) != -1) {
		if (opt == 's')
			server = optarg;
		else if (opt == 'n')
			n = strtoull(optarg, NULL, 10);
		else if (opt == 'c')
			c = (uint32_t)strtoul(optarg, NULL, 10);
	}
	if (server == NULL || optind >= argc || c == 0 || c > BENCH_CONCURRENCY_MAX || n == 0) {
		fprintf(stderr, "usage: dns_bench -s IP:PORT [-n N] [-c 1..%u] cold|cached|latency\n",
			BENCH_CONCURRENCY_MAX);
		return 2;
	}
	const char *mode = argv[optind];
	bench_setup(&b, server);
	bench_names(&b, strcmp(mode, "cached") == 0 ? c : n);
	b.type = DNS_LOOKUP_ADDR;
	if (strcmp(mode, "cold") == 0) {
		double cpu = bench_cpu();
		double secs = bench_run(&b, n, c);
		bench_report("cold", n, secs, bench_cpu() - cpu, b.failed);
	} else if (strcmp(mode, "cached") == 0) {
		b.names = c;
		bench_run(&b, c, c);                       /* fill the cache */
		double cpu = bench_cpu();
		double secs = bench_run(&b, n, c);
		bench_report("cached_addr", n, secs, bench_cpu() - cpu, b.failed);
		b.type = DNS_LOOKUP_MX;
		b.mx_name = "mx.bench.test";
		bench_run(&b, 1, 1);
		cpu = bench_cpu();
		secs = bench_run(&b, n, c);
		bench_report("cached_mx", n, secs, bench_cpu() - cpu, b.failed);
	} else if (strcmp(mode, "latency") == 0) {
		static struct config cfg;
		char err[CONFIG_ERR_MAX], opt_text[256];
		config_default(&cfg);
		snprintf(opt_text, sizeof(opt_text), "dns_servers=%s", server);
		if (config_set(&cfg, opt_text, err, sizeof(err)) != 0)
			return 2;
		bench_latency(&b, &cfg.dns[0], n > UINT32_MAX ? UINT32_MAX : (uint32_t)n);
	} else {
		fprintf(stderr, "dns_bench: unknown mode %s\n", mode);
		return 2;
	}
	dns_resolver_free(b.res);
	ring_fini(&b.ring);
	return 0;
}
