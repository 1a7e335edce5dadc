/* perf/data_stuff_bench.c - outbound dot-stuffing throughput, scalar vs SSE2 vs AVX2 (a
 * benchmark, not a test). Bodies of 1 MiB as the spool keeps them (unstuffed): realistic
 * ~70-octet text lines with a dot line now and then, and the worst case where every line starts
 * with a dot. Each pass produces the whole slice list a writev would take; best of RUNS passes,
 * in GB/s of body (10^9 octets/s). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "proto/data_stuff.h"

#define BENCH_BODY (1u << 20)
#define BENCH_RUNS 200u

static double
bench_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Lines of 20..120 octets (mean about 70) of words; every 50th line starts with a dot. */
static size_t
bench_realistic(uint8_t *buf, size_t cap)
{
	static const char *words[] = { "the", "quick", "message", "of", "mail", "transfer",
		"agent", "ring", "queue", "delivery", "to", "and", "from", "header", "body" };
	unsigned seed = 42;
	size_t len = 0;
	for (unsigned line = 0; len + 130 < cap; line++) {
		size_t target = 20 + (size_t)(rand_r(&seed) % 100), start = len;
		if (line % 50 == 0)
			buf[len++] = '.';
		while (len - start < target) {
			const char *w = words[rand_r(&seed) % 15];
			memcpy(buf + len, w, strlen(w));
			len += strlen(w);
			buf[len++] = ' ';
		}
		buf[len - 1] = '\r';
		buf[len++] = '\n';
	}
	return len;
}

static size_t
bench_all_dots(uint8_t *buf, size_t cap)
{
	size_t len = 0;
	while (len + 80 < cap) {
		buf[len++] = '.';
		memset(buf + len, 'd', 67);
		len += 67;
		buf[len++] = '\r';
		buf[len++] = '\n';
	}
	return len;
}

static double
bench_run(enum data_scan_impl impl, const uint8_t *buf, size_t len, size_t *slices)
{
	double best = 1e9;
	size_t wire = 0;
	for (unsigned run = 0; run < BENCH_RUNS; run++) {
		struct data_stuff st;
		data_stuff_init(&st);
		size_t off = 0;
		*slices = 0;
		double t0 = bench_now();
		while (off < len) {
			struct data_stuff_out out = { .count = 0 };
			off += data_stuff_feed_impl(
				impl, &st, slice_make(buf + off, len - off), &out);
			for (uint32_t k = 0; k < out.count; k++)
				wire += out.slices[k].len;
			*slices += out.count;
		}
		struct data_stuff_out out = { .count = 0 };
		data_stuff_end(&st, &out);
		wire += out.slices[0].len;
		double t = bench_now() - t0;
		if (t < best)
			best = t;
	}
	if (wire == 0)
		printf("(no wire?)\n");
	return (double)len / best / 1e9;
}

int
main(void)
{
	uint8_t *buf = malloc(BENCH_BODY);
	if (buf == NULL)
		return 1;
	static const enum data_scan_impl impls[] = { DATA_SCAN_SCALAR, DATA_SCAN_SSE2,
		DATA_SCAN_AVX2 };
	struct {
		const char *name;
		size_t (*make)(uint8_t *, size_t);
	} bodies[] = { { "realistic 70-octet lines", bench_realistic },
		{ "every line starts with a dot", bench_all_dots } };
	printf("%-30s %10s %10s %10s %10s  (GB/s, 1 MiB body, best of %u)\n", "body", "scalar",
		"sse2", "avx2", "slices", BENCH_RUNS);
	for (unsigned b = 0; b < 2; b++) {
		size_t len = bodies[b].make(buf, BENCH_BODY), slices = 0;
		printf("%-30s", bodies[b].name);
		for (unsigned k = 0; k < 3; k++) {
			if (data_scan_impl_supported(impls[k]))
				printf(" %10.2f", bench_run(impls[k], buf, len, &slices));
			else
				printf(" %10s", "n/a");
		}
		printf(" %10zu\n", slices);
	}
	free(buf);
	return 0;
}
