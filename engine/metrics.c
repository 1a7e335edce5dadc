/* engine/metrics.c - per-shard published counters and their exposition; see metrics.h. */
#include "engine/metrics.h"

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/assert.h"

#define METRICS_WORDS (sizeof(struct metrics_shard) / sizeof(uint64_t))

/* One shard's slot: the sequence is odd while its writer copies. A cache line of its own, so
 * that the writer's stores do not slow the other shards'. */
struct metrics_slot {
	_Alignas(64) uint64_t seq;
	uint64_t words[METRICS_WORDS];
};

struct metrics {
	uint32_t shard_count;
	uint32_t listener_count;
	char listener_names[LISTEN_MAX][METRICS_LISTENER_NAME_MAX];
	struct metrics_slot *slots;
	struct metrics_shard *last;     /* the reader's last good copy of each slot */
	struct metrics_shard sum;       /* the reader's scratch */
	struct tally_entry *merged;     /* shard_count * METRICS_DESTINATIONS_MAX: its scratch */
};

int
metrics_create(uint32_t shard_count, const char *const *listener_names,
	uint32_t listener_count, struct metrics **out)
{
	ASSERT(shard_count > 0);
	ASSERT(listener_count <= LISTEN_MAX);
	struct metrics *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return -ENOMEM;
	m->slots = aligned_alloc(64, sizeof(*m->slots) * shard_count);
	m->last = calloc(shard_count, sizeof(*m->last));
	m->merged = calloc((size_t)shard_count * METRICS_DESTINATIONS_MAX, sizeof(*m->merged));
	if (m->slots == NULL || m->last == NULL || m->merged == NULL) {
		metrics_destroy(m);
		return -ENOMEM;
	}
	memset(m->slots, 0, sizeof(*m->slots) * shard_count);
	m->shard_count = shard_count;
	m->listener_count = listener_count;
	for (uint32_t i = 0; i < listener_count; i++)
		snprintf(m->listener_names[i], sizeof(m->listener_names[i]), "%s", listener_names[i]);
	*out = m;
	return 0;
}

void
metrics_destroy(struct metrics *m)
{
	free(m->slots);
	free(m->last);
	free(m->merged);
	free(m);
}

void
metrics_publish(struct metrics *m, uint32_t shard, const struct metrics_shard *snap)
{
	ASSERT(shard < m->shard_count);
	struct metrics_slot *s = &m->slots[shard];
	const uint64_t *w = (const uint64_t *)snap;
	uint64_t seq = __atomic_load_n(&s->seq, __ATOMIC_RELAXED);
	ASSERT((seq & 1u) == 0);   /* one writer: its own shard */
	__atomic_store_n(&s->seq, seq + 1, __ATOMIC_RELAXED);
	__atomic_thread_fence(__ATOMIC_RELEASE);
	for (size_t i = 0; i < METRICS_WORDS; i++)
		__atomic_store_n(&s->words[i], w[i], __ATOMIC_RELAXED);
	__atomic_store_n(&s->seq, seq + 2, __ATOMIC_RELEASE);
}

/* A consistent copy of the slot into *out, or false after METRICS_READ_TRIES_MAX tries (or
 * before the shard's first publication). */
static bool
metrics_read(const struct metrics_slot *s, struct metrics_shard *out)
{
	uint64_t *w = (uint64_t *)out;
	for (uint32_t t = 0; t < METRICS_READ_TRIES_MAX; t++) {
		uint64_t before = __atomic_load_n(&s->seq, __ATOMIC_ACQUIRE);
		if (before & 1u)
			continue;
		for (size_t i = 0; i < METRICS_WORDS; i++)
			w[i] = __atomic_load_n(&s->words[i], __ATOMIC_RELAXED);
		__atomic_thread_fence(__ATOMIC_ACQUIRE);
		if (__atomic_load_n(&s->seq, __ATOMIC_RELAXED) == before)
			return before != 0;
	}
	return false;
}

static void
metrics_hist_sum(struct hist *to, const struct hist *h)
{
	for (uint32_t i = 0; i <= HIST_BOUNDS; i++)
		to->counts[i] += h->counts[i];
	to->sum_us += h->sum_us;
}

/* Sums the shards' last good copies into m->sum. */
static void
metrics_sum(struct metrics *m)
{
	struct metrics_shard *t = &m->sum;
	*t = (struct metrics_shard){ 0 };
	for (uint32_t s = 0; s < m->shard_count; s++) {
		struct metrics_shard fresh;
		if (metrics_read(&m->slots[s], &fresh))
			m->last[s] = fresh;
		const struct metrics_shard *x = &m->last[s];
		t->connections += x->connections;
		for (uint32_t i = 0; i < LISTEN_MAX; i++)
			t->accepted[i] += x->accepted[i];
		t->received += x->received;
		for (uint32_t i = 0; i < METRICS_OUTCOMES; i++)
			t->outcomes[i] += x->outcomes[i];
		t->out_connections += x->out_connections;
		t->out_connect_failures += x->out_connect_failures;
		for (uint32_t i = 0; i < 2; i++) {
			t->tls_handshakes[i] += x->tls_handshakes[i];
			t->tls_failures[i] += x->tls_failures[i];
		}
		t->auth_ok += x->auth_ok;
		t->auth_failed += x->auth_failed;
		for (uint32_t i = 0; i < SPOOL_CENSUS_STATES; i++) {
			for (uint32_t a = 0; a < SPOOL_CENSUS_AGES; a++)
				t->queue.messages[i][a] += x->queue.messages[i][a];
		}
		t->spool_bytes += x->spool_bytes;
		t->fdatasyncs += x->fdatasyncs;
		metrics_hist_sum(&t->fdatasync_latency, &x->fdatasync_latency);
		metrics_hist_sum(&t->delivery_latency, &x->delivery_latency);
		t->dns_queries += x->dns_queries;
		t->dns_timeouts += x->dns_timeouts;
		t->dns_cache_hits += x->dns_cache_hits;
		t->dns_cache_misses += x->dns_cache_misses;
	}
}

/* The text being written: appends stop at the first that does not fit. */
struct metrics_out {
	char *buf;
	size_t cap;
	size_t len;
	bool full;
};

__attribute__((format(printf, 2, 3))) static void
metrics_printf(struct metrics_out *o, const char *fmt, ...)
{
	if (o->full)
		return;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(o->buf + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= o->cap - o->len)
		o->full = true;
	else
		o->len += (size_t)n;
}

static void
metrics_family(struct metrics_out *o, const char *name, const char *type, const char *help)
{
	metrics_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void
metrics_value(struct metrics_out *o, const char *name, uint64_t v)
{
	metrics_printf(o, "%s %llu\n", name, (unsigned long long)v);
}

/* A label value: backslash, double quote and line feed escaped (exposition format 0.0.4). */
static void
metrics_label_value(struct metrics_out *o, const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '\\' || *v == '"')
			metrics_printf(o, "\\%c", *v);
		else if (*v == '\n')
			metrics_printf(o, "\\n");
		else
			metrics_printf(o, "%c", *v);
	}
}

static void
metrics_histogram(struct metrics_out *o, const char *name, const char *help, const struct hist *h)
{
	metrics_family(o, name, "histogram", help);
	uint64_t cumulative = 0;
	for (uint32_t i = 0; i < HIST_BOUNDS; i++) {
		cumulative += h->counts[i];
		metrics_printf(o, "%s_bucket{le=\"%g\"} %llu\n", name, (double)hist_bounds_us[i] / 1e6,
			(unsigned long long)cumulative);
	}
	cumulative += h->counts[HIST_BOUNDS];
	metrics_printf(o, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)cumulative);
	metrics_printf(o, "%s_sum %.6f\n", name, (double)h->sum_us / 1e6);
	metrics_printf(o, "%s_count %llu\n", name, (unsigned long long)cumulative);
}

static void
metrics_render_connections(struct metrics *m, struct metrics_out *o)
{
	const struct metrics_shard *t = &m->sum;
	metrics_family(o, "ringmta_connections", "gauge",
		"TCP connections open now (inbound and outbound SMTP, metrics).");
	metrics_value(o, "ringmta_connections", t->connections);
	metrics_family(o, "ringmta_connections_accepted_total", "counter",
		"SMTP connections accepted, by listener.");
	for (uint32_t i = 0; i < m->listener_count; i++) {
		metrics_printf(o, "ringmta_connections_accepted_total{listener=\"");
		metrics_label_value(o, m->listener_names[i]);
		metrics_printf(o, "\"} %llu\n", (unsigned long long)t->accepted[i]);
	}
	metrics_family(o, "ringmta_outbound_connections_total", "counter",
		"Outbound SMTP connections opened.");
	metrics_value(o, "ringmta_outbound_connections_total", t->out_connections);
	metrics_family(o, "ringmta_outbound_connect_failures_total", "counter",
		"Outbound SMTP connection attempts that failed.");
	metrics_value(o, "ringmta_outbound_connect_failures_total", t->out_connect_failures);
	metrics_family(o, "ringmta_tls_handshakes_total", "counter",
		"TLS handshakes completed: inbound (STARTTLS, port 465) and outbound (STARTTLS).");
	metrics_family(o, "ringmta_tls_handshake_failures_total", "counter",
		"TLS handshakes that failed (the reason is in the log: event=tls_failed).");
	static const char *const dir[2] = { "inbound", "outbound" };
	for (uint32_t i = 0; i < 2; i++) {
		metrics_printf(o, "ringmta_tls_handshakes_total{direction=\"%s\"} %llu\n", dir[i],
			(unsigned long long)t->tls_handshakes[i]);
		metrics_printf(o, "ringmta_tls_handshake_failures_total{direction=\"%s\"} %llu\n",
			dir[i], (unsigned long long)t->tls_failures[i]);
	}
	metrics_family(o, "ringmta_auth_total", "counter",
		"SMTP AUTH attempts: ok (235) and failed (535 or 454).");
	metrics_printf(o, "ringmta_auth_total{result=\"ok\"} %llu\n",
		(unsigned long long)t->auth_ok);
	metrics_printf(o, "ringmta_auth_total{result=\"failed\"} %llu\n",
		(unsigned long long)t->auth_failed);
}

static void
metrics_render_messages(struct metrics *m, struct metrics_out *o)
{
	static const char *const outcome[METRICS_OUTCOMES] = { "delivered", "deferred", "bounced",
		"expired" };
	static const char *const state[SPOOL_CENSUS_STATES] = { "pending", "active", "deferred" };
	static const char *const age[SPOOL_CENSUS_AGES] = { "0-5m", "5m-1h", "1h-4h", "4h-1d",
		"1d+" };
	const struct metrics_shard *t = &m->sum;
	metrics_family(o, "ringmta_messages_received_total", "counter",
		"Messages accepted over SMTP (each one durable before its 250).");
	metrics_value(o, "ringmta_messages_received_total", t->received);
	metrics_family(o, "ringmta_deliveries_total", "counter",
		"Delivery attempts of recipients by outcome (one per event=delivery log line).");
	for (uint32_t i = 0; i < METRICS_OUTCOMES; i++)
		metrics_printf(o, "ringmta_deliveries_total{status=\"%s\"} %llu\n", outcome[i],
			(unsigned long long)t->outcomes[i]);
	metrics_family(o, "ringmta_queue_messages", "gauge",
		"Messages in the queue by state and age.");
	for (uint32_t s = 0; s < SPOOL_CENSUS_STATES; s++) {
		for (uint32_t a = 0; a < SPOOL_CENSUS_AGES; a++)
			metrics_printf(o, "ringmta_queue_messages{state=\"%s\",age=\"%s\"} %llu\n",
				state[s], age[a], (unsigned long long)t->queue.messages[s][a]);
	}
	metrics_histogram(o, "ringmta_delivery_seconds",
		"Time from arrival to delivery of each delivered recipient.", &t->delivery_latency);
}

static uint64_t
metrics_dest_total(const struct tally_entry *e)
{
	uint64_t sum = 0;
	for (uint32_t k = 0; k < METRICS_OUTCOMES; k++)
		sum += e->counts[k];
	return sum;
}

static int
metrics_dest_cmp(const void *a, const void *b)
{
	uint64_t x = metrics_dest_total(a), y = metrics_dest_total(b);
	return x < y ? 1 : x > y ? -1 : 0;
}

/* The shards' busiest destinations merged by name; returns how many distinct ones. */
static uint32_t
metrics_dest_merge(struct metrics *m)
{
	uint32_t n = 0;
	for (uint32_t s = 0; s < m->shard_count; s++) {
		const struct metrics_shard *x = &m->last[s];
		uint64_t count = x->destination_count < METRICS_DESTINATIONS_MAX
			? x->destination_count : METRICS_DESTINATIONS_MAX;
		for (uint32_t i = 0; i < count; i++) {
			const struct tally_entry *e = &x->destinations[i];
			if (tally_entry_name(e)[0] == '\0')
				continue;   /* <postmaster>: no domain */
			uint32_t j = 0;
			while (j < n && strcmp(tally_entry_name(&m->merged[j]), tally_entry_name(e)) != 0)
				j++;
			if (j == n)
				m->merged[n++] = (struct tally_entry){ 0 };
			memcpy(m->merged[j].name_words, e->name_words, sizeof(e->name_words));
			for (uint32_t k = 0; k < METRICS_OUTCOMES; k++)
				m->merged[j].counts[k] += e->counts[k];
		}
	}
	qsort(m->merged, n, sizeof(*m->merged), metrics_dest_cmp);
	return n;
}

static void
metrics_render_destinations(struct metrics *m, struct metrics_out *o)
{
	static const char *const outcome[METRICS_OUTCOMES] = { "delivered", "deferred", "bounced",
		"expired" };
	uint32_t n = metrics_dest_merge(m);
	if (n > METRICS_DESTINATIONS_MAX)
		n = METRICS_DESTINATIONS_MAX;
	metrics_family(o, "ringmta_destination_deliveries_total", "counter",
		"Delivery attempts by outcome for the busiest recipient domains only.");
	for (uint32_t i = 0; i < n; i++) {
		for (uint32_t k = 0; k < METRICS_OUTCOMES; k++) {
			metrics_printf(o, "ringmta_destination_deliveries_total{destination=\"");
			metrics_label_value(o, tally_entry_name(&m->merged[i]));
			metrics_printf(o, "\",status=\"%s\"} %llu\n", outcome[k],
				(unsigned long long)m->merged[i].counts[k]);
		}
	}
}

static void
metrics_render_spool_dns(struct metrics *m, struct metrics_out *o)
{
	const struct metrics_shard *t = &m->sum;
	metrics_family(o, "ringmta_spool_bytes", "gauge", "Octets of the spool's segment files.");
	metrics_value(o, "ringmta_spool_bytes", t->spool_bytes);
	metrics_family(o, "ringmta_fdatasyncs_total", "counter",
		"Group commits of the spool (one fdatasync each).");
	metrics_value(o, "ringmta_fdatasyncs_total", t->fdatasyncs);
	metrics_histogram(o, "ringmta_fdatasync_seconds",
		"Time from a spool batch's submission to its fdatasync's completion.",
		&t->fdatasync_latency);
	metrics_family(o, "ringmta_dns_queries_total", "counter", "DNS questions sent.");
	metrics_value(o, "ringmta_dns_queries_total", t->dns_queries);
	metrics_family(o, "ringmta_dns_timeouts_total", "counter", "DNS query attempts timed out.");
	metrics_value(o, "ringmta_dns_timeouts_total", t->dns_timeouts);
	metrics_family(o, "ringmta_dns_cache_hits_total", "counter", "DNS cache lookups answered.");
	metrics_value(o, "ringmta_dns_cache_hits_total", t->dns_cache_hits);
	metrics_family(o, "ringmta_dns_cache_misses_total", "counter", "DNS cache lookups missed.");
	metrics_value(o, "ringmta_dns_cache_misses_total", t->dns_cache_misses);
	uint64_t lookups = t->dns_cache_hits + t->dns_cache_misses;
	metrics_family(o, "ringmta_dns_cache_hit_ratio", "gauge",
		"DNS cache hits over lookups since start (0 before any).");
	metrics_printf(o, "ringmta_dns_cache_hit_ratio %.6f\n",
		lookups == 0 ? 0.0 : (double)t->dns_cache_hits / (double)lookups);
}

static void
metrics_render_loops(struct metrics *m, struct metrics_out *o)
{
	metrics_family(o, "ringmta_loop_turns_total", "counter", "Loop turns, by shard.");
	for (uint32_t s = 0; s < m->shard_count; s++)
		metrics_printf(o, "ringmta_loop_turns_total{shard=\"%u\"} %llu\n", s,
			(unsigned long long)m->last[s].loop_turns);
	metrics_family(o, "ringmta_loop_completions_total", "counter",
		"Completions handled by the loop, by shard.");
	for (uint32_t s = 0; s < m->shard_count; s++)
		metrics_printf(o, "ringmta_loop_completions_total{shard=\"%u\"} %llu\n", s,
			(unsigned long long)m->last[s].loop_completions);
	metrics_family(o, "ringmta_loop_busy_seconds_total", "counter",
		"Time the loop spent working (from waking to the end of the turn), by shard.");
	for (uint32_t s = 0; s < m->shard_count; s++)
		metrics_printf(o, "ringmta_loop_busy_seconds_total{shard=\"%u\"} %.6f\n", s,
			(double)m->last[s].loop_busy_ns / 1e9);
}

size_t
metrics_render(struct metrics *m, char *buf, size_t cap)
{
	struct metrics_out o = { .buf = buf, .cap = cap };
	metrics_sum(m);
	metrics_render_connections(m, &o);
	metrics_render_messages(m, &o);
	metrics_render_destinations(m, &o);
	metrics_render_spool_dns(m, &o);
	metrics_render_loops(m, &o);
	return o.full ? 0 : o.len;
}
