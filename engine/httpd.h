/* engine/httpd.h - the metrics endpoint: proto/http_request on a connection of the transport.
 *
 * A session kind like engine/smtpd, on the listeners of metrics_listen (opened by one shard
 * only). It serves HTTP/1.1 GET and HEAD of /metrics with the text engine/metrics renders from
 * every shard's published counters; persistent connections and pipelined requests are kept, in
 * order. Replies: 200 with the text; 404 for any other path; 405 (with Allow) for another method
 * on /metrics; 400, 414, 431 and 505 for what the parser refuses, after which the connection
 * closes. Limits: HTTPD_SESSIONS_MAX connections at once (beyond them an accepted socket is
 * closed at once), HTTPD_IDLE_MS for a request head to arrive whole and between requests, the
 * parser's bounds on a head. Owned by one shard. */
#ifndef RINGMTA_ENGINE_HTTPD_H
#define RINGMTA_ENGINE_HTTPD_H
#include <stdint.h>

#include "base/ring.h"
#include "engine/conn.h"

struct httpd;
struct metrics;

#define HTTPD_SESSIONS_MAX          16u
#define HTTPD_IDLE_MS            30000u   /* a head must arrive within it, and the next one */
#define HTTPD_REQUESTS_PER_INPUT     8u   /* pipelined requests answered per input; then later */

struct httpd_stats {
	uint64_t requests;
	uint64_t refused;                     /* accepted sockets closed: no session free */
};

/* Start-up: registers the stop hook on r. Returns 0 or -ENOMEM. */
int httpd_init(struct ring *r, struct conn_pool *conns, struct metrics *m, struct httpd **out);

void httpd_fini(struct httpd *h);

/* A connection accepted on a metrics listener (a listen_accept_fn: ctx is the struct httpd).
 * Takes fd; closes it when no session is free or the shard stops. */
void httpd_accept(void *httpd, int fd, uint32_t profile);

const struct httpd_stats *httpd_stats(const struct httpd *h);
#endif
