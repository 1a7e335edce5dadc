/* tests/tools/dnsq.c - the shard's resolver in a ring loop of its own, for tests and benchmarks.
 *
 * Usage: dnsq [-r resolv.conf] [-o key=value]... ; then one command per line on stdin:
 *   mx|addr|txt|tlsa|ptr NAME   start a lookup; prints "started ID" (or "error ...")
 *   cancel ID                   release a lookup before its result (prints "cancelled ID")
 *   stats                       the resolver's counters as one JSON line
 *   quit                        exit 0 (also at the end of stdin, once no lookup is left)
 * Each result is one JSON line: {"id":..,"status":"OK"|"PERM"|"TEMP","reason":..,"text":..,
 * "enhanced":..,"ad":..,"hosts":[{"pref","name","flags","addrs"}],"records":[..],"unresolved"}.
 * Configuration is ringmta's (conf/config.h): dns_servers, dns_timeout, dns_attempts,
 * dns_cache_max, inet_protocols. stdin is read through the ring like everything else. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "base/ring.h"
#include "conf/config.h"
#include "dns/resolver.h"

#define DNSQ_LOOKUPS_MAX 65536u
#define DNSQ_LINE_MAX 1024u
#define DNSQ_WAIT_MS_MAX 1000u

struct dnsq {
	struct ring ring;
	struct dns_resolver *res;
	uint8_t op_stdin;
	uint8_t op_event;
	bool eof;
	bool quit;
	uint32_t outstanding;
	uint32_t next_id;
	uint64_t handles[DNSQ_LOOKUPS_MAX];
	uint32_t gens[DNSQ_LOOKUPS_MAX];
	bool live[DNSQ_LOOKUPS_MAX];
	char in[DNSQ_LINE_MAX * 4];
	size_t in_len;
};

static void
dnsq_json_str(const char *p, size_t n)
{
	putchar('"');
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		if (c == '"' || c == '\\')
			printf("\\%c", c);
		else if (c < 0x20 || c >= 0x7f)
			printf("\\u%04x", c);
		else
			putchar(c);
	}
	putchar('"');
}

static void
dnsq_print_host(const struct dns_host *h)
{
	printf("{\"pref\":%u,\"name\":", h->pref);
	dnsq_json_str((const char *)h->name.ptr, h->name.len);
	printf(",\"flags\":\"%s%s%s\",\"addrs\":[",
		h->flags & DNS_HOST_IMPLICIT ? " implicit" : "",
		h->flags & DNS_HOST_IP_LITERAL ? " literal" : "",
		h->flags & DNS_HOST_CNAME ? " cname" : "");
	for (uint32_t a = 0; a < h->addr_count; a++) {
		char text[INET6_ADDRSTRLEN];
		inet_ntop(h->addrs[a].family, h->addrs[a].bytes, text, sizeof(text));
		printf("%s\"%s\"", a > 0 ? "," : "", text);
	}
	printf("]}");
}

static void
dnsq_print_result(uint32_t id, const struct dns_result *r)
{
	static const char *const status[] = { "OK", "PERM", "TEMP" };
	printf("{\"id\":%u,\"status\":\"%s\",\"reason\":\"%s\",\"text\":", id, status[r->status],
		dns_reason_name(r->reason));
	dnsq_json_str(r->reason_text, strlen(r->reason_text));
	printf(",\"enhanced\":\"%s\",\"ad\":%s,\"unresolved\":%u,\"hosts\":[", r->enhanced,
		r->ad ? "true" : "false", r->hosts_unresolved);
	for (uint32_t i = 0; i < r->host_count; i++) {
		if (i > 0)
			putchar(',');
		dnsq_print_host(&r->hosts[i]);
	}
	printf("],\"records\":[");
	for (uint32_t i = 0; i < r->record_count; i++) {
		const struct dns_record *rec = &r->records[i];
		printf("%s{\"usage\":%u,\"selector\":%u,\"mtype\":%u,\"data\":", i > 0 ? "," : "",
			rec->tlsa_usage, rec->tlsa_selector, rec->tlsa_mtype);
		dnsq_json_str((const char *)rec->data.ptr, rec->data.len);
		printf(",\"hex\":\"");
		for (size_t b = 0; b < rec->data.len; b++)
			printf("%02x", rec->data.ptr[b]);
		printf("\"}");
	}
	printf("]}\n");
}

static void
dnsq_print_stats(const struct dnsq *d)
{
	struct dns_resolver_stats st;
	dns_resolver_get_stats(d->res, &st);
	printf("{\"stats\":true,\"lookups\":%lu,\"lookups_coalesced\":%lu,\"queries\":%lu,"
		"\"queries_coalesced\":%lu,\"attempts_udp\":%lu,\"attempts_tcp\":%lu,"
		"\"timeouts\":%lu,\"strays\":%lu,\"tcp_connects\":%lu,\"cache_hits\":%lu,"
		"\"cache_misses\":%lu,\"cache_entries\":%u,\"queries_active\":%u,"
		"\"lookups_active\":%u,\"outstanding\":%u}\n",
		st.lookups, st.lookups_coalesced, st.queries, st.queries_coalesced, st.attempts_udp,
		st.attempts_tcp, st.timeouts, st.strays, st.tcp_connects, st.cache_hits,
		st.cache_misses, st.cache_entries, st.queries_active, st.lookups_active,
		d->outstanding);
}

static void
dnsq_event(void *ctx, const struct io_uring_cqe *cqe)
{
	struct dnsq *d = ctx;
	uint32_t slot = ring_ud_slot(cqe->user_data);
	if (slot >= DNSQ_LOOKUPS_MAX || !d->live[slot]
		|| d->gens[slot] != ring_ud_gen(cqe->user_data))
		return;      /* released (cancelled) meanwhile */
	const struct dns_result *r = dns_lookup_result(d->res, d->handles[slot]);
	if (r == NULL) {
		fprintf(stderr, "dnsq: event without a result\n");
		exit(1);
	}
	if ((int32_t)r->status != cqe->res) {
		fprintf(stderr, "dnsq: event res %d, status %d\n", cqe->res, r->status);
		exit(1);
	}
	dnsq_print_result(slot, r);
	dns_lookup_release(d->res, d->handles[slot]);
	d->live[slot] = false;
	d->outstanding--;
}

static bool
dnsq_type(const char *word, enum dns_lookup_type *t)
{
	static const struct { const char *name; enum dns_lookup_type type; } types[] = {
		{ "mx", DNS_LOOKUP_MX }, { "addr", DNS_LOOKUP_ADDR }, { "txt", DNS_LOOKUP_TXT },
		{ "tlsa", DNS_LOOKUP_TLSA }, { "ptr", DNS_LOOKUP_PTR },
	};
	for (size_t i = 0; i < ARRAY_LEN(types); i++) {
		if (strcmp(word, types[i].name) == 0) {
			*t = types[i].type;
			return true;
		}
	}
	return false;
}

static void
dnsq_start(struct dnsq *d, enum dns_lookup_type type, const char *name)
{
	uint32_t slot = d->next_id++ % DNSQ_LOOKUPS_MAX;
	if (d->live[slot]) {
		printf("error busy\n");
		return;
	}
	d->gens[slot]++;
	uint64_t ud = ring_ud(d->op_event, slot, d->gens[slot]);
	int rc = dns_lookup_start(d->res, type, slice_make(name, strlen(name)), ud,
		&d->handles[slot]);
	if (rc != 0) {
		printf("error %s\n", strerror(-rc));
		return;
	}
	d->live[slot] = true;
	d->outstanding++;
	printf("started %u\n", slot);
}

static void
dnsq_command(struct dnsq *d, char *line)
{
	char word[32], arg[DNSQ_LINE_MAX];
	int n = sscanf(line, "%31s %1023s", word, arg);
	enum dns_lookup_type type;
	if (n < 1)
		return;
	if (strcmp(word, "quit") == 0) {
		d->quit = true;
	} else if (strcmp(word, "stats") == 0) {
		dnsq_print_stats(d);
	} else if (strcmp(word, "cancel") == 0 && n == 2) {
		uint32_t slot = (uint32_t)strtoul(arg, NULL, 10);
		if (slot < DNSQ_LOOKUPS_MAX && d->live[slot]) {
			dns_lookup_release(d->res, d->handles[slot]);
			d->live[slot] = false;
			d->outstanding--;
		}
		printf("cancelled %u\n", slot);
	} else if (n == 2 && dnsq_type(word, &type)) {
		dnsq_start(d, type, arg);
	} else {
		printf("error unknown command\n");
	}
}

static void
dnsq_read(struct dnsq *d)
{
	struct io_uring_sqe *sqe = ring_sqe(&d->ring);
	io_uring_prep_read(sqe, STDIN_FILENO, d->in + d->in_len, sizeof(d->in) - d->in_len, 0);
	io_uring_sqe_set_data64(sqe, ring_ud(d->op_stdin, 0, 0));
}

static void
dnsq_stdin(void *ctx, const struct io_uring_cqe *cqe)
{
	struct dnsq *d = ctx;
	if (cqe->res <= 0) {
		d->eof = true;
		return;
	}
	d->in_len += (size_t)cqe->res;
	char *start = d->in;
	char *lf;
	while ((lf = memchr(start, '\n', d->in_len - (size_t)(start - d->in))) != NULL) {
		*lf = '\0';
		dnsq_command(d, start);
		start = lf + 1;
	}
	d->in_len -= (size_t)(start - d->in);
	memmove(d->in, start, d->in_len);
	if (d->in_len == sizeof(d->in))
		d->in_len = 0;           /* a line too long: dropped */
	if (!d->quit)
		dnsq_read(d);
}

static void
dnsq_loop(struct dnsq *d)
{
	while (!d->quit && !(d->eof && d->outstanding == 0)) {
		uint64_t ms = ring_next_ms(&d->ring, DNSQ_WAIT_MS_MAX);
		struct __kernel_timespec ts = { .tv_sec = (long long)(ms / 1000),
			.tv_nsec = (long long)(ms % 1000) * 1000000 };
		struct io_uring_cqe *cqe;
		int rc = io_uring_submit_and_wait_timeout(&d->ring.uring, &cqe, 1, &ts, NULL);
		if (rc < 0 && rc != -ETIME && rc != -EINTR) {
			fprintf(stderr, "dnsq: io_uring_enter: %s\n", strerror(-rc));
			exit(1);
		}
		ring_clock(&d->ring);
		unsigned head, seen = 0;
		io_uring_for_each_cqe(&d->ring.uring, head, cqe) {
			ring_dispatch(&d->ring, cqe);
			seen++;
		}
		io_uring_cq_advance(&d->ring.uring, seen);
		ring_dispatch_posted(&d->ring);
		ring_turn(&d->ring);
		ring_dispatch_posted(&d->ring);
		fflush(stdout);
	}
}

int
main(int argc, char **argv)
{
	static struct dnsq d;
	static struct config cfg;
	char err[CONFIG_ERR_MAX];
	const char *resolv_conf = "/etc/resolv.conf";
	config_default(&cfg);
	int opt;
	while ((opt = getopt(argc, argv, "r:o:")) != -1) {
		if (opt == 'r') {
			resolv_conf = optarg;
		} else if (opt == 'o' && config_set(&cfg, optarg, err, sizeof(err)) != 0) {
			fprintf(stderr, "dnsq: %s\n", err);
			return 2;
		} else if (opt != 'o') {
			fprintf(stderr, "usage: dnsq [-r resolv.conf] [-o key=value]...\n");
			return 2;
		}
	}
	struct dns_resolver_config rc;
	if (dns_resolver_config_from(&cfg, resolv_conf, &rc, err, sizeof(err)) != 0) {
		fprintf(stderr, "dnsq: %s\n", err);
		return 2;
	}
	int rc_ring = ring_init(&d.ring, 0, 1024, 0);
	if (rc_ring != 0) {
		fprintf(stderr, "dnsq: ring_init: %s\n", strerror(-rc_ring));
		return 77;
	}
	if (dns_resolver_new(&d.ring, &rc, &d.res) != 0) {
		fprintf(stderr, "dnsq: out of memory\n");
		return 1;
	}
	d.op_stdin = ring_op_register(&d.ring, dnsq_stdin, &d);
	d.op_event = ring_op_register(&d.ring, dnsq_event, &d);
	setvbuf(stdout, NULL, _IOFBF, 1 << 16);
	printf("ready\n");
	fflush(stdout);
	dnsq_read(&d);
	dnsq_loop(&d);
	for (uint32_t i = 0; i < DNSQ_LOOKUPS_MAX; i++) {
		if (d.live[i])
			dns_lookup_release(d.res, d.handles[i]);
	}
	fflush(stdout);
	dns_resolver_free(d.res);
	ring_fini(&d.ring);
	return 0;
}
