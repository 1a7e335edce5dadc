/* engine/metrics.h - what every shard counts, published for the metrics endpoint without locks.
 *
 * Each shard fills a struct metrics_shard from its modules' own counters (the wiring in src/
 * does that, at most every METRICS_PUBLISH_MS, from a turn hook: no module calls up into this
 * code; the queue by state and age, which costs a walk of the index, less often for a deep queue) and publishes it into its slot with metrics_publish: a sequence lock whose writer never
 * waits, the words copied with relaxed atomic stores between two increments of the sequence.
 * The shard that serves the endpoint (engine/httpd) reads every slot with metrics_render, which
 * retries a slot being written at most METRICS_READ_TRIES_MAX times and otherwise keeps the copy
 * it read last, sums the shards and writes the Prometheus text exposition format (version
 * 0.0.4). Outcomes by destination (the recipient's domain) are exported only for the
 * METRICS_DESTINATIONS_MAX busiest over all shards, so the series stay few whatever the mail.
 * Created by main before the shards start, destroyed after they stopped; one writer per
 * slot (its shard), one reader (the serving shard). */
#ifndef RINGMTA_ENGINE_METRICS_H
#define RINGMTA_ENGINE_METRICS_H
#include <stddef.h>
#include <stdint.h>

#include "base/hist.h"
#include "base/tally.h"
#include "engine/listen.h"
#include "queue/spool.h"

#define METRICS_PUBLISH_MS       1000u        /* a shard publishes at most this often */
/* A shard counts its queue (one walk of the index: about 4 ms per 100,000 messages, measured by
 * perf/census_bench) once per METRICS_PUBLISH_MS, or less often in proportion to the messages
 * queued (100,000: every 10 s), at least every METRICS_CENSUS_MAX_MS: the walks then take some
 * 0.04% of the shard whatever the depth. */
#define METRICS_CENSUS_MESSAGES_PER_MS 10u
#define METRICS_CENSUS_MAX_MS   60000u
#define METRICS_READ_TRIES_MAX     64u        /* reads of a slot being written, then its old copy */
#define METRICS_TEXT_MAX    (256u << 10)      /* the exposition text; longer: an error */
#define METRICS_LISTENER_NAME_MAX  64u
#define METRICS_DESTINATIONS_MAX   10u        /* destinations with series of their own */

enum metrics_outcome {              /* one per event=delivery log line; the tally's kinds */
	METRICS_DELIVERED,
	METRICS_DEFERRED,
	METRICS_BOUNCED,
	METRICS_EXPIRED,
	METRICS_OUTCOMES,
};

/* What one shard publishes: plain counters and gauges, copied whole. */
struct metrics_shard {
	uint64_t connections;                   /* open now: inbound, outbound and metrics */
	uint64_t accepted[LISTEN_MAX];          /* SMTP connections, by listener */
	uint64_t received;                      /* messages committed by SMTP sessions */
	uint64_t outcomes[METRICS_OUTCOMES];    /* recipients' attempts */
	uint64_t out_connections;
	uint64_t out_connect_failures;
	uint64_t tls_handshakes[2];             /* [0] inbound (server), [1] outbound (client) */
	uint64_t tls_failures[2];
	uint64_t auth_ok;
	uint64_t auth_failed;
	struct spool_census queue;
	uint64_t spool_bytes;
	uint64_t fdatasyncs;
	struct hist fdatasync_latency;
	struct hist delivery_latency;
	uint64_t dns_queries;
	uint64_t dns_timeouts;
	uint64_t dns_cache_hits;
	uint64_t dns_cache_misses;
	uint64_t loop_turns;
	uint64_t loop_completions;
	uint64_t loop_busy_ns;
	uint64_t destination_count;             /* used entries of destinations */
	struct tally_entry destinations[METRICS_DESTINATIONS_MAX];   /* the shard's busiest */
};
_Static_assert(sizeof(struct metrics_shard) % sizeof(uint64_t) == 0, "copied as words");

struct metrics;

/* Start-up: slots for shard_count shards; listener_names[i] names SMTP listener i (copied, cut
 * at METRICS_LISTENER_NAME_MAX). Returns 0 or -ENOMEM. */
int metrics_create(uint32_t shard_count, const char *const *listener_names,
	uint32_t listener_count, struct metrics **out);

void metrics_destroy(struct metrics *m);

/* On shard's own thread: replaces its published snapshot. Never waits. */
void metrics_publish(struct metrics *m, uint32_t shard, const struct metrics_shard *snap);

/* On the serving shard's thread: the exposition text of every shard into buf. Returns its
 * length, or 0 if it does not fit in cap. */
size_t metrics_render(struct metrics *m, char *buf, size_t cap);
#endif
