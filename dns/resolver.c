/* dns/resolver.c - lookups, queries, UDP and TCP on the shard's ring; see resolver.h.
 *
 * Three tables, all allocated at start-up:
 *   waiters  one per requester handle: its user_data and the lookup it waits for;
 *   lookups  one per (type, name) under way or held by its waiters: the result being built and
 *            the sub-queries ("subs") it needs: the MX, TXT, TLSA or PTR question, then A and
 *            AAAA per host;
 *   queries  one per (name, qtype) on the wire: the packet, the socket, the attempt, the subs
 *            waiting for it (a doubly linked list through the lookups' subs).
 * A sub asks the cache first, then joins a query under way, then starts one. A query's answer is
 * cached and handed to each of its subs; a lookup whose subs are all done posts to its waiters.
 *
 * A query slot whose ring requests are still in flight (its RECV writes into the slot's buffer)
 * is never reused: it waits in DNS_QUERY_DRAINING, after IORING_ASYNC_CANCEL_FD, until the last
 * completion arrives. user_data packs (op, slot, attempt generation, request kind), so a
 * completion for an earlier attempt is recognised and only counted. */
#include "dns/resolver.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dns/cache.h"
#include "dns/hash.h"
#include "dns/name.h"
#include "dns/resolv_conf.h"

#define DNS_NONE UINT32_MAX
#define DNS_SUBS_MAX (1u + 2u * DNS_RESULT_HOSTS_MAX)
#define DNS_LOOKUP_NAMES_MAX (1u + DNS_RESULT_HOSTS_MAX + 8u)  /* the name, hosts, CNAME ends */
#define DNS_FAMILY_ADDRS_MAX (DNS_HOST_ADDRS_MAX / 2u)
#define DNS_LOOKUP_BUCKETS 2048u          /* power of two, >= DNS_LOOKUPS_MAX */
#define DNS_QUERY_BUCKETS 2048u           /* power of two, >= DNS_QUERIES_MAX */
#define DNS_RANDOM_BUF 512u               /* octets drawn per getrandom(2) */
#define DNS_TCP_FRAME_MAX (2u + DNS_QUERY_LEN_MAX)
#define DNS_TCP_SEND_BUF (DNS_TCP_PIPELINE_MAX * DNS_TCP_FRAME_MAX)
#define DNS_TCP_RECV_BUF (2u + DNS_MSG_LEN_MAX)
#define DNS_MX_SORT_MAX DNS_ANSWER_RRS_MAX

_Static_assert(DNS_LOOKUPS_MAX <= DNS_LOOKUP_BUCKETS, "lookup table load at most 1");
_Static_assert(DNS_QUERIES_MAX <= DNS_QUERY_BUCKETS, "query table load at most 1");
_Static_assert((DNS_LOOKUP_BUCKETS & (DNS_LOOKUP_BUCKETS - 1)) == 0, "power of two");
_Static_assert((DNS_QUERY_BUCKETS & (DNS_QUERY_BUCKETS - 1)) == 0, "power of two");
_Static_assert(DNS_QUERIES_MAX <= RING_SLOT_MAX, "a query slot fits user_data");
_Static_assert(DNS_LOOKUPS_MAX * DNS_SUBS_MAX < DNS_NONE, "sub ids fit 32 bits");
_Static_assert(DNS_RESULT_HOSTS_MAX * DNS_NAME_TEXT_MAX <= DNS_RESULT_DATA_MAX,
	"host names always fit a result");

/* ---- request kinds in user_data: gen = attempt << 2 | kind ---- */

enum dns_req {
	DNS_REQ_SEND = 0,
	DNS_REQ_RECV = 1,
	DNS_REQ_CONNECT = 2,
};

static uint32_t dns_gen_pack(uint32_t attempt, enum dns_req kind) { return attempt << 2 | kind; }
static uint32_t dns_gen_attempt(uint32_t gen) { return gen >> 2; }
static enum dns_req dns_gen_kind(uint32_t gen) { return (enum dns_req)(gen & 3u); }

/* ---- structures ---- */

enum dns_waiter_state { DNS_WAITER_FREE, DNS_WAITER_WAITING, DNS_WAITER_POSTED };

struct dns_waiter {
	enum dns_waiter_state state;
	uint32_t gen;
	uint32_t lookup;
	uint32_t next;               /* in the lookup's waiters, or the free list */
	uint64_t user_data;
};

enum dns_sub_role { DNS_SUB_MAIN, DNS_SUB_ADDR4, DNS_SUB_ADDR6 };

struct dns_sub {
	uint8_t role;                /* enum dns_sub_role */
	uint8_t host;                /* for ADDR4/ADDR6 */
	uint8_t requeries;
	bool waiting;                /* attached to query */
	uint16_t qtype;
	uint16_t name;               /* index into the lookup's names */
	uint32_t query;
	uint32_t prev;               /* sub ids (lookup * DNS_SUBS_MAX + index), the query's list */
	uint32_t next;
};

/* Bookkeeping of one host while its addresses are asked for. */
struct dns_host_work {
	uint8_t v4_count;
	uint8_t v6_count;
	bool temp;                   /* an address query failed temporarily */
	enum dns_reason temp_reason;
	struct dns_addr v4[DNS_FAMILY_ADDRS_MAX];
	struct dns_addr v6[DNS_FAMILY_ADDRS_MAX];
};

enum dns_lookup_state { DNS_LOOKUP_FREE, DNS_LOOKUP_ACTIVE, DNS_LOOKUP_DONE };

struct dns_lookup {
	enum dns_lookup_state state;
	enum dns_lookup_type type;
	uint32_t waiters;            /* head of the waiter list */
	uint32_t waiter_count;
	uint32_t pending;            /* subs under way, plus holds while subs are being started */
	uint32_t sub_count;
	uint32_t name_count;
	uint32_t hash_next;          /* in the table of active lookups; also the free list */
	uint64_t hash;
	uint64_t deadline_ms;
	uint32_t timer_prev, timer_next;
	bool timed_out;
	bool failed;                 /* status set early (NXDOMAIN, null MX, ...) */
	uint32_t answers;            /* answers used: result.ad means something only if > 0 */
	struct dns_sub subs[DNS_SUBS_MAX];
	struct dns_name names[DNS_LOOKUP_NAMES_MAX];
	uint64_t name_hashes[DNS_LOOKUP_NAMES_MAX];   /* dns_cache_name_hash of each */
	struct dns_host_work work[DNS_RESULT_HOSTS_MAX];
	struct dns_result result;
};

enum dns_query_state {
	DNS_QUERY_FREE,
	DNS_QUERY_UDP,               /* a datagram attempt: SEND and RECV on fd */
	DNS_QUERY_TCP,               /* on the server's connection */
	DNS_QUERY_WAIT,              /* between attempts (a synchronous failure), on the timer */
	DNS_QUERY_DRAINING,          /* cancelled requests still in flight */
};

struct dns_query {
	enum dns_query_state state;
	bool done;                   /* answered or given up: free once drained */
	bool tcp;                    /* the answer was truncated: TCP from now on */
	bool tcp_sent;
	uint8_t inflight;            /* ring requests whose completion has not arrived */
	uint8_t strays;
	int fd;
	uint32_t attempt;            /* generation, also counts attempts made */
	uint32_t tries;              /* (round, server) steps taken */
	uint32_t server;
	enum dns_reason last_reason;
	uint32_t subs;               /* head of the waiting subs */
	uint32_t hash_next;          /* in the table of queries under way; also the free list */
	uint64_t hash;               /* of (name, qtype) */
	uint64_t name_hash;
	uint64_t deadline_ms;
	uint32_t timer_prev, timer_next;
	uint32_t tcp_prev, tcp_next; /* on the connection */
	struct dns_question q;
	uint32_t out_len;            /* octets of the query, after the 2-octet TCP length */
	uint8_t out[DNS_TCP_FRAME_MAX];
	uint8_t in[DNS_UDP_RECV_MAX];
};

enum dns_tcp_state { DNS_TCP_CLOSED, DNS_TCP_CONNECTING, DNS_TCP_READY, DNS_TCP_DRAINING };

struct dns_tcp {
	enum dns_tcp_state state;
	int fd;
	uint32_t gen;
	uint32_t inflight;
	bool sending;
	uint32_t queries;            /* head of the queries on this connection */
	uint32_t query_count;
	uint32_t sent_count;         /* sent and unanswered */
	uint64_t idle_since_ms;
	uint32_t send_len;
	uint32_t recv_len;
	uint8_t send_buf[DNS_TCP_SEND_BUF];
	uint8_t recv_buf[DNS_TCP_RECV_BUF];
};

/* An answer as the subs see it: fresh from a packet, or from the cache. */
struct dns_view {
	enum dns_answer_kind kind;
	enum dns_reason fail;        /* for the failure kinds */
	bool ad;
	uint32_t cname_count;
	const struct dns_name *final;
	uint32_t rr_count;
	const struct dns_rr *rrs;
	const uint8_t *data;
};

/* A timer list of slots ordered by deadline (insertions almost always at the tail). */
struct dns_timers {
	uint32_t head, tail;
};

struct dns_resolver {
	struct ring *ring;
	struct dns_resolver_config cfg;
	uint8_t op_udp;
	uint8_t op_tcp;
	struct dns_cache *cache;
	struct dns_waiter *waiters;
	uint32_t waiter_free;
	struct dns_lookup *lookups;
	uint32_t lookup_free;
	uint32_t lookup_active;
	struct dns_query *queries;
	uint32_t query_free;
	uint32_t query_used;
	uint32_t lookup_buckets[DNS_LOOKUP_BUCKETS];
	uint32_t query_buckets[DNS_QUERY_BUCKETS];
	struct dns_timers query_timers;
	struct dns_timers lookup_timers;
	struct dns_tcp *tcp;         /* one per server */
	struct dns_answer *answer;   /* scratch for the answer being read */
	struct dns_resolver_stats stats;
	uint8_t random[DNS_RANDOM_BUF];
	uint32_t random_pos;
};

static void dns_lookup_finish(struct dns_resolver *res, uint32_t li);
static void dns_sub_request(struct dns_resolver *res, uint32_t li, uint32_t si);
static void dns_query_attempt(struct dns_resolver *res, uint32_t qi);
static void dns_tcp_flush(struct dns_resolver *res, uint32_t s);

/* ---- small helpers ---- */

static int
dns_random_fill(struct dns_resolver *res)
{
	size_t got = 0;
	while (got < sizeof(res->random)) {
		ssize_t n = getrandom(res->random + got, sizeof(res->random) - got, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -errno;
		got += (size_t)n;
	}
	res->random_pos = 0;
	return 0;
}

/* Random octets for ids and shuffles. A failing getrandom(2) (it does not fail once the
 * kernel's pool is ready, and it was at start-up) keeps the previous octets rotated, so that
 * lookups go on; the failure cannot come from a peer. */
static uint32_t
dns_random32(struct dns_resolver *res)
{
	if (res->random_pos + 4 > sizeof(res->random) && dns_random_fill(res) != 0)
		res->random_pos = (res->random_pos + 1) % (sizeof(res->random) - 4);
	uint32_t v;
	memcpy(&v, res->random + res->random_pos, 4);
	res->random_pos += 4;
	return v;
}

static uint32_t
dns_random_below(struct dns_resolver *res, uint32_t n)
{
	ASSERT(n > 0);
	return (uint32_t)(((uint64_t)dns_random32(res) * n) >> 32);
}

static struct dns_sub *
dns_sub_at(struct dns_resolver *res, uint32_t id)
{
	return &res->lookups[id / DNS_SUBS_MAX].subs[id % DNS_SUBS_MAX];
}

static const char *
dns_qtype_name(uint16_t qtype)
{
	switch (qtype) {
	case DNS_TYPE_A: return "A";
	case DNS_TYPE_AAAA: return "AAAA";
	case DNS_TYPE_MX: return "MX";
	case DNS_TYPE_TXT: return "TXT";
	case DNS_TYPE_TLSA: return "TLSA";
	case DNS_TYPE_PTR: return "PTR";
	default: return "?";
	}
}

/* ---- timer lists over slots (queries or lookups) ---- */

struct dns_timer_ops {
	uint64_t *(*deadline)(struct dns_resolver *res, uint32_t i);
	uint32_t *(*prev)(struct dns_resolver *res, uint32_t i);
	uint32_t *(*next)(struct dns_resolver *res, uint32_t i);
};

static uint64_t *
dns_q_deadline(struct dns_resolver *r, uint32_t i)
{
	return &r->queries[i].deadline_ms;
}

static uint32_t *
dns_q_prev(struct dns_resolver *r, uint32_t i)
{
	return &r->queries[i].timer_prev;
}

static uint32_t *
dns_q_next(struct dns_resolver *r, uint32_t i)
{
	return &r->queries[i].timer_next;
}

static uint64_t *
dns_l_deadline(struct dns_resolver *r, uint32_t i)
{
	return &r->lookups[i].deadline_ms;
}

static uint32_t *
dns_l_prev(struct dns_resolver *r, uint32_t i)
{
	return &r->lookups[i].timer_prev;
}

static uint32_t *
dns_l_next(struct dns_resolver *r, uint32_t i)
{
	return &r->lookups[i].timer_next;
}

static const struct dns_timer_ops dns_query_timer_ops = { dns_q_deadline, dns_q_prev, dns_q_next };
static const struct dns_timer_ops dns_lookup_timer_ops = { dns_l_deadline, dns_l_prev, dns_l_next };

/* Inserts i with deadline d, walking back from the tail past later deadlines. */
static void
dns_timer_add(struct dns_resolver *res, struct dns_timers *t, const struct dns_timer_ops *ops,
	uint32_t i, uint64_t d)
{
	*ops->deadline(res, i) = d;
	uint32_t after = t->tail;
	while (after != DNS_NONE && *ops->deadline(res, after) > d)
		after = *ops->prev(res, after);
	uint32_t before = after == DNS_NONE ? t->head : *ops->next(res, after);
	*ops->prev(res, i) = after;
	*ops->next(res, i) = before;
	if (after == DNS_NONE)
		t->head = i;
	else
		*ops->next(res, after) = i;
	if (before == DNS_NONE)
		t->tail = i;
	else
		*ops->prev(res, before) = i;
}

static void
dns_timer_remove(struct dns_resolver *res, struct dns_timers *t, const struct dns_timer_ops *ops,
	uint32_t i)
{
	uint32_t p = *ops->prev(res, i), n = *ops->next(res, i);
	if (p == DNS_NONE) {
		if (t->head != i)
			return;          /* not on the list */
		t->head = n;
	} else {
		*ops->next(res, p) = n;
	}
	if (n == DNS_NONE)
		t->tail = p;
	else
		*ops->prev(res, n) = p;
	*ops->prev(res, i) = DNS_NONE;
	*ops->next(res, i) = DNS_NONE;
}

/* ---- the tables of lookups and queries under way ---- */

static uint32_t
dns_lookup_find(struct dns_resolver *res, enum dns_lookup_type type, const struct dns_name *n,
	uint64_t hash)
{
	for (uint32_t i = res->lookup_buckets[hash & (DNS_LOOKUP_BUCKETS - 1)]; i != DNS_NONE;
		i = res->lookups[i].hash_next) {
		const struct dns_lookup *lk = &res->lookups[i];
		if (lk->hash == hash && lk->type == type && dns_name_eq(&lk->names[0], n))
			return i;
	}
	return DNS_NONE;
}

static void
dns_lookup_unhash(struct dns_resolver *res, uint32_t li)
{
	struct dns_lookup *lk = &res->lookups[li];
	uint32_t *link = &res->lookup_buckets[lk->hash & (DNS_LOOKUP_BUCKETS - 1)];
	while (*link != DNS_NONE && *link != li)
		link = &res->lookups[*link].hash_next;
	ASSERT(*link == li);
	*link = lk->hash_next;
	lk->hash_next = DNS_NONE;
}

static uint32_t
dns_query_find(struct dns_resolver *res, const struct dns_name *n, uint16_t qtype, uint64_t hash)
{
	for (uint32_t i = res->query_buckets[hash & (DNS_QUERY_BUCKETS - 1)]; i != DNS_NONE;
		i = res->queries[i].hash_next) {
		const struct dns_query *q = &res->queries[i];
		if (q->hash == hash && q->q.qtype == qtype && dns_name_eq(&q->q.qname, n))
			return i;
	}
	return DNS_NONE;
}

static void
dns_query_unhash(struct dns_resolver *res, uint32_t qi)
{
	struct dns_query *q = &res->queries[qi];
	uint32_t *link = &res->query_buckets[q->hash & (DNS_QUERY_BUCKETS - 1)];
	while (*link != DNS_NONE && *link != qi)
		link = &res->queries[*link].hash_next;
	if (*link == qi)
		*link = q->hash_next;
	q->hash_next = DNS_NONE;
}

/* ---- queries: slots, subs ---- */

static void
dns_query_attach(struct dns_resolver *res, uint32_t qi, uint32_t sub_id)
{
	struct dns_query *q = &res->queries[qi];
	struct dns_sub *s = dns_sub_at(res, sub_id);
	s->waiting = true;
	s->query = qi;
	s->prev = DNS_NONE;
	s->next = q->subs;
	if (q->subs != DNS_NONE)
		dns_sub_at(res, q->subs)->prev = sub_id;
	q->subs = sub_id;
}

static void
dns_query_detach(struct dns_resolver *res, uint32_t sub_id)
{
	struct dns_sub *s = dns_sub_at(res, sub_id);
	ASSERT(s->waiting);
	struct dns_query *q = &res->queries[s->query];
	if (s->prev == DNS_NONE)
		q->subs = s->next;
	else
		dns_sub_at(res, s->prev)->next = s->next;
	if (s->next != DNS_NONE)
		dns_sub_at(res, s->next)->prev = s->prev;
	s->waiting = false;
	s->query = DNS_NONE;
	s->prev = DNS_NONE;
	s->next = DNS_NONE;
}

static void
dns_query_free(struct dns_resolver *res, uint32_t qi)
{
	struct dns_query *q = &res->queries[qi];
	ASSERT(q->inflight == 0);
	ASSERT(q->subs == DNS_NONE);
	if (q->fd >= 0)
		close(q->fd);
	q->fd = -1;
	q->state = DNS_QUERY_FREE;
	q->hash_next = res->query_free;
	res->query_free = qi;
	ASSERT(res->query_used > 0);
	res->query_used--;
}

/* Ends the requests of the current attempt: UDP ones are cancelled (the slot drains until their
 * completions are in), a TCP one leaves its connection. */
static void
dns_query_stop_attempt(struct dns_resolver *res, uint32_t qi)
{
	struct dns_query *q = &res->queries[qi];
	dns_timer_remove(res, &res->query_timers, &dns_query_timer_ops, qi);
	if (q->state == DNS_QUERY_TCP) {
		struct dns_tcp *c = &res->tcp[q->server];
		if (q->tcp_prev == DNS_NONE)
			c->queries = q->tcp_next;
		else
			res->queries[q->tcp_prev].tcp_next = q->tcp_next;
		if (q->tcp_next != DNS_NONE)
			res->queries[q->tcp_next].tcp_prev = q->tcp_prev;
		q->tcp_prev = q->tcp_next = DNS_NONE;
		ASSERT(c->query_count > 0);
		c->query_count--;
		if (q->tcp_sent) {
			ASSERT(c->sent_count > 0);
			c->sent_count--;
		}
		q->tcp_sent = false;
		if (c->query_count == 0)
			c->idle_since_ms = res->ring->now_ms;
		dns_tcp_flush(res, q->server);
	}
	if (q->inflight > 0) {
		struct io_uring_sqe *sqe = ring_sqe(res->ring);
		io_uring_prep_cancel_fd(sqe, q->fd, IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_NONE, 0, 0));
		io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
		q->state = DNS_QUERY_DRAINING;
		return;
	}
	if (q->fd >= 0) {
		close(q->fd);
		q->fd = -1;
	}
	q->state = DNS_QUERY_WAIT;
}

/* The query is over: no sub waits for it any more (each got the view, or went away). */
static void
dns_query_end(struct dns_resolver *res, uint32_t qi)
{
	struct dns_query *q = &res->queries[qi];
	ASSERT(q->subs == DNS_NONE);
	dns_query_unhash(res, qi);
	q->done = true;
	if (q->state != DNS_QUERY_DRAINING)
		dns_query_stop_attempt(res, qi);
	if (q->state != DNS_QUERY_DRAINING)
		dns_query_free(res, qi);
}

static void dns_sub_done(struct dns_resolver *res, uint32_t li, uint32_t si,
	const struct dns_view *v);

/* Hands the view to every sub waiting for the query, then ends it. */
static void
dns_query_complete(struct dns_resolver *res, uint32_t qi, const struct dns_view *v)
{
	struct dns_query *q = &res->queries[qi];
	dns_query_unhash(res, qi);    /* later subs for the same question start afresh */
	while (q->subs != DNS_NONE) {
		uint32_t id = q->subs;
		dns_query_detach(res, id);
		dns_sub_done(res, id / DNS_SUBS_MAX, id % DNS_SUBS_MAX, v);
	}
	dns_query_end(res, qi);
}

static void
dns_query_fail(struct dns_resolver *res, uint32_t qi, enum dns_reason reason)
{
	struct dns_query *q = &res->queries[qi];
	struct dns_view v = {
		.kind = DNS_ANSWER_SERVFAIL, .fail = reason, .final = &q->q.qname,
	};
	dns_query_complete(res, qi, &v);
}

/* The attempt failed for reason: drain, then the next attempt (or give up). */
static void
dns_query_attempt_failed(struct dns_resolver *res, uint32_t qi, enum dns_reason reason)
{
	struct dns_query *q = &res->queries[qi];
	q->last_reason = reason;
	dns_query_stop_attempt(res, qi);
	if (q->state != DNS_QUERY_DRAINING)
		dns_query_attempt(res, qi);
}

/* A slot's last in-flight completion arrived. */
static void
dns_query_drained(struct dns_resolver *res, uint32_t qi)
{
	struct dns_query *q = &res->queries[qi];
	ASSERT(q->inflight == 0);
	if (q->fd >= 0) {
		close(q->fd);
		q->fd = -1;
	}
	if (q->done) {
		dns_query_free(res, qi);
		return;
	}
	q->state = DNS_QUERY_WAIT;
	dns_query_attempt(res, qi);
}

/* ---- UDP ---- */

static int
dns_udp_socket(const struct config_addr *server)
{
	int fd = socket(server->sa.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* connect(2) on UDP binds a random ephemeral port and filters datagrams by source; it does
	 * not send anything. */
	if (connect(fd, (const struct sockaddr *)&server->sa, server->sa_len) != 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

static void
dns_udp_recv(struct dns_resolver *res, uint32_t qi)
{
	struct dns_query *q = &res->queries[qi];
	struct io_uring_sqe *sqe = ring_sqe(res->ring);
	io_uring_prep_recv(sqe, q->fd, q->in, sizeof(q->in), 0);
	io_uring_sqe_set_data64(sqe, ring_ud(res->op_udp, qi,
		dns_gen_pack(q->attempt, DNS_REQ_RECV)));
	q->inflight++;
}

static void
dns_udp_start(struct dns_resolver *res, uint32_t qi)
{
	struct dns_query *q = &res->queries[qi];
	int fd = dns_udp_socket(&res->cfg.servers[q->server]);
	if (fd < 0) {
		/* Out of descriptors, no route: this attempt fails at once, from the timer. */
		q->last_reason = DNS_REASON_NETWORK;
		q->state = DNS_QUERY_WAIT;
		dns_timer_remove(res, &res->query_timers, &dns_query_timer_ops, qi);
		dns_timer_add(res, &res->query_timers, &dns_query_timer_ops, qi, res->ring->now_ms);
		return;
	}
	q->fd = fd;
	q->state = DNS_QUERY_UDP;
	q->strays = 0;
	res->stats.attempts_udp++;
	/* SEND linked to RECV, and silent when it succeeds: the RECV's completion (always posted)
	 * says both are done, so an answer costs one completion. A failed SEND posts its own
	 * completion (not counted in inflight) and cancels the RECV. */
	ring_sqe_reserve(res->ring, 2);
	struct io_uring_sqe *sqe = ring_sqe(res->ring);
	io_uring_prep_send(sqe, fd, q->out + 2, q->out_len, 0);
	io_uring_sqe_set_data64(sqe, ring_ud(res->op_udp, qi,
		dns_gen_pack(q->attempt, DNS_REQ_SEND)));
	io_uring_sqe_set_flags(sqe, IOSQE_IO_LINK | IOSQE_CQE_SKIP_SUCCESS);
	dns_udp_recv(res, qi);
}

/* ---- TCP: one connection per server, queries pipelined (RFC 7766 6.2.1.1) ---- */

static void
dns_tcp_submit(struct dns_resolver *res, uint32_t s, enum dns_req kind)
{
	struct dns_tcp *c = &res->tcp[s];
	struct io_uring_sqe *sqe = ring_sqe(res->ring);
	if (kind == DNS_REQ_CONNECT) {
		const struct config_addr *a = &res->cfg.servers[s];
		io_uring_prep_connect(sqe, c->fd, (const struct sockaddr *)&a->sa, a->sa_len);
	} else if (kind == DNS_REQ_SEND) {
		io_uring_prep_send(sqe, c->fd, c->send_buf, c->send_len, MSG_NOSIGNAL);
		c->sending = true;
	} else {
		io_uring_prep_recv(sqe, c->fd, c->recv_buf + c->recv_len,
			sizeof(c->recv_buf) - c->recv_len, 0);
	}
	io_uring_sqe_set_data64(sqe, ring_ud(res->op_tcp, s, dns_gen_pack(c->gen, kind)));
	c->inflight++;
}

/* Puts the frames of unsent queries into the send buffer and sends, if connected. */
static void
dns_tcp_flush(struct dns_resolver *res, uint32_t s)
{
	struct dns_tcp *c = &res->tcp[s];
	if (c->state != DNS_TCP_READY)
		return;
	for (uint32_t qi = c->queries; qi != DNS_NONE && c->sent_count < DNS_TCP_PIPELINE_MAX;
		qi = res->queries[qi].tcp_next) {
		struct dns_query *q = &res->queries[qi];
		if (q->tcp_sent)
			continue;
		uint32_t frame = 2u + q->out_len;
		if (frame > sizeof(c->send_buf) - c->send_len)
			break;     /* frames of abandoned queries still wait for the kernel */
		q->out[0] = (uint8_t)(q->out_len >> 8);
		q->out[1] = (uint8_t)q->out_len;
		memcpy(c->send_buf + c->send_len, q->out, frame);   /* copy: the stream's buffer */
		c->send_len += frame;
		q->tcp_sent = true;
		c->sent_count++;
	}
	if (!c->sending && c->send_len > 0)
		dns_tcp_submit(res, s, DNS_REQ_SEND);
}

static void
dns_tcp_close(struct dns_resolver *res, uint32_t s)
{
	struct dns_tcp *c = &res->tcp[s];
	c->state = DNS_TCP_DRAINING;
	if (c->inflight > 0) {
		struct io_uring_sqe *sqe = ring_sqe(res->ring);
		io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_NONE, 0, 0));
		io_uring_sqe_set_flags(sqe, IOSQE_CQE_SKIP_SUCCESS);
		return;
	}
	close(c->fd);
	c->fd = -1;
	c->state = DNS_TCP_CLOSED;
}

static void
dns_tcp_connect(struct dns_resolver *res, uint32_t s)
{
	struct dns_tcp *c = &res->tcp[s];
	ASSERT(c->state == DNS_TCP_CLOSED);
	const struct config_addr *a = &res->cfg.servers[s];
	c->fd = socket(a->sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	c->gen++;
	c->send_len = 0;
	c->recv_len = 0;
	c->sent_count = 0;
	c->sending = false;
	if (c->fd < 0) {
		c->state = DNS_TCP_CLOSED;
		return;                  /* the queries time out and move on */
	}
	res->stats.tcp_connects++;
	c->state = DNS_TCP_CONNECTING;
	dns_tcp_submit(res, s, DNS_REQ_CONNECT);
}

/* The connection broke: its queries fail their attempt (and move on); it closes. */
static void
dns_tcp_fail(struct dns_resolver *res, uint32_t s, enum dns_reason reason)
{
	struct dns_tcp *c = &res->tcp[s];
	dns_tcp_close(res, s);
	/* Each failed attempt may come back to this server (one server): it then waits in the list
	 * for the reconnection, so take the queries that are there now first. */
	uint32_t doomed[DNS_QUERIES_MAX];
	uint32_t n = 0;
	for (uint32_t qi = c->queries; qi != DNS_NONE; qi = res->queries[qi].tcp_next)
		doomed[n++] = qi;
	for (uint32_t i = 0; i < n; i++)
		dns_query_attempt_failed(res, doomed[i], reason);
}

/* A query attempt over TCP: joins the server's connection. */
static void
dns_tcp_start(struct dns_resolver *res, uint32_t qi)
{
	struct dns_query *q = &res->queries[qi];
	struct dns_tcp *c = &res->tcp[q->server];
	q->state = DNS_QUERY_TCP;
	q->tcp_sent = false;
	q->tcp_prev = DNS_NONE;
	q->tcp_next = c->queries;
	if (c->queries != DNS_NONE)
		res->queries[c->queries].tcp_prev = qi;
	c->queries = qi;
	c->query_count++;
	res->stats.attempts_tcp++;
	if (c->state == DNS_TCP_CLOSED)
		dns_tcp_connect(res, q->server);
	else
		dns_tcp_flush(res, q->server);
}

/* ---- attempts ---- */

static void
dns_query_attempt(struct dns_resolver *res, uint32_t qi)
{
	struct dns_query *q = &res->queries[qi];
	ASSERT(q->state == DNS_QUERY_WAIT);
	ASSERT(q->inflight == 0);
	uint32_t steps = res->cfg.attempts * res->cfg.server_count;
	if (q->tries >= steps) {
		dns_query_fail(res, qi, q->last_reason);
		return;
	}
	q->server = q->tries % res->cfg.server_count;
	q->tries++;
	q->attempt++;
	q->q.id = (uint16_t)dns_random32(res);
	dns_packet_set_id(q->out + 2, q->q.id);
	dns_timer_add(res, &res->query_timers, &dns_query_timer_ops, qi,
		res->ring->now_ms + res->cfg.timeout_ms);
	if (q->tcp)
		dns_tcp_start(res, qi);
	else
		dns_udp_start(res, qi);
}

static enum dns_reason
dns_kind_reason(enum dns_answer_kind kind)
{
	switch (kind) {
	case DNS_ANSWER_SERVFAIL:
		return DNS_REASON_SERVFAIL;
	case DNS_ANSWER_REFUSED:
		return DNS_REASON_REFUSED;
	default:
		return DNS_REASON_BAD_ANSWER;
	}
}

/* A matching answer arrived for the current attempt. */
static void
dns_query_answered(struct dns_resolver *res, uint32_t qi, const struct dns_answer *a)
{
	struct dns_query *q = &res->queries[qi];
	switch (a->kind) {
	case DNS_ANSWER_TRUNCATED:
		if (!q->tcp) {
			q->tcp = true;
			q->tries--;      /* the same server again, over TCP */
			dns_query_attempt_failed(res, qi, DNS_REASON_TOO_LARGE);
			return;
		}
		dns_query_attempt_failed(res, qi, DNS_REASON_BAD_ANSWER);
		return;
	case DNS_ANSWER_SERVFAIL:
	case DNS_ANSWER_REFUSED:
	case DNS_ANSWER_FORMERR:
	case DNS_ANSWER_LAME:
	case DNS_ANSWER_BAD:
		dns_query_attempt_failed(res, qi, dns_kind_reason(a->kind));
		return;
	case DNS_ANSWER_DATA:
	case DNS_ANSWER_NODATA:
	case DNS_ANSWER_NXDOMAIN:
	case DNS_ANSWER_CNAME:
		break;
	}
	if (dns_cache_put_hashed(res->cache, &q->q.qname, q->name_hash, q->q.qtype, a,
		res->ring->now_ms) != 0) {
		/* Not cached: the answer is still good for those waiting. */
	}
	struct dns_view v = {
		.kind = a->kind, .fail = DNS_REASON_NONE, .ad = a->ad,
		.cname_count = a->cname_count,
		.final = &a->final, .rr_count = a->rr_count, .rrs = a->rrs, .data = a->data,
	};
	dns_query_complete(res, qi, &v);
}

static void
dns_udp_received(struct dns_resolver *res, uint32_t qi, int32_t len)
{
	struct dns_query *q = &res->queries[qi];
	if ((uint32_t)len >= sizeof(q->in)) {
		/* Possibly cut by our buffer: ask over TCP, as for TC. */
		q->tcp = true;
		q->tries--;
		dns_query_attempt_failed(res, qi, DNS_REASON_TOO_LARGE);
		return;
	}
	int rc = dns_packet_parse(slice_make(q->in, (size_t)len), &q->q, res->answer);
	if (rc == 0) {
		dns_query_answered(res, qi, res->answer);
		return;
	}
	/* RFC 5452 9.1: not the answer (or garbage): keep waiting for the real one. */
	res->stats.strays++;
	if (++q->strays > DNS_UDP_STRAY_MAX) {
		dns_query_attempt_failed(res, qi, DNS_REASON_BAD_ANSWER);
		return;
	}
	dns_udp_recv(res, qi);
}

static void
dns_udp_complete(void *ctx, const struct io_uring_cqe *cqe)
{
	struct dns_resolver *res = ctx;
	uint32_t qi = ring_ud_slot(cqe->user_data);
	uint32_t gen = ring_ud_gen(cqe->user_data);
	ASSERT(qi < DNS_QUERIES_MAX);
	struct dns_query *q = &res->queries[qi];
	bool current = q->state == DNS_QUERY_UDP && dns_gen_attempt(gen) == q->attempt;
	if (dns_gen_kind(gen) == DNS_REQ_SEND) {
		/* Only a failed SEND completes (CQE_SKIP_SUCCESS); its RECV is cancelled and
		 * completes too, and that one is counted. */
		if (current)
			q->last_reason = DNS_REASON_NETWORK;
		return;
	}
	ASSERT(q->inflight > 0);
	q->inflight--;
	if (q->state == DNS_QUERY_DRAINING) {
		if (q->inflight == 0)
			dns_query_drained(res, qi);
		return;
	}
	if (!current)
		return;
	if (cqe->res < 0) {
		dns_query_attempt_failed(res, qi, DNS_REASON_NETWORK);
		return;
	}
	dns_udp_received(res, qi, cqe->res);
}

/* Frames in the receive buffer: each answers one of the connection's sent queries (matched by
 * id, then by question) or is ignored. */
static void
dns_tcp_frames(struct dns_resolver *res, uint32_t s)
{
	struct dns_tcp *c = &res->tcp[s];
	uint32_t used = 0;
	while (c->state == DNS_TCP_READY && c->recv_len - used >= 2) {
		uint32_t len = (uint32_t)c->recv_buf[used] << 8 | c->recv_buf[used + 1];
		if (len < DNS_HEADER_LEN) {
			dns_tcp_fail(res, s, DNS_REASON_BAD_ANSWER);
			return;
		}
		if (c->recv_len - used - 2 < len)
			break;
		struct slice msg = slice_make(c->recv_buf + used + 2, len);
		used += 2 + len;
		uint16_t id = (uint16_t)(msg.ptr[0] << 8 | msg.ptr[1]);
		for (uint32_t qi = c->queries; qi != DNS_NONE; qi = res->queries[qi].tcp_next) {
			struct dns_query *q = &res->queries[qi];
			if (!q->tcp_sent || q->q.id != id)
				continue;
			int rc = dns_packet_parse(msg, &q->q, res->answer);
			if (rc == -EPROTO)
				continue;
			if (rc != 0)
				dns_query_attempt_failed(res, qi, DNS_REASON_BAD_ANSWER);
			else
				dns_query_answered(res, qi, res->answer);
			break;
		}
	}
	if (c->state != DNS_TCP_READY)
		return;
	memmove(c->recv_buf, c->recv_buf + used, c->recv_len - used);
	c->recv_len -= used;
	dns_tcp_submit(res, s, DNS_REQ_RECV);
}

static void
dns_tcp_complete(void *ctx, const struct io_uring_cqe *cqe)
{
	struct dns_resolver *res = ctx;
	uint32_t s = ring_ud_slot(cqe->user_data);
	uint32_t gen = ring_ud_gen(cqe->user_data);
	ASSERT(s < res->cfg.server_count);
	struct dns_tcp *c = &res->tcp[s];
	ASSERT(c->inflight > 0);
	c->inflight--;
	if (c->state == DNS_TCP_DRAINING || dns_gen_attempt(gen) != c->gen) {
		if (c->state == DNS_TCP_DRAINING && c->inflight == 0) {
			close(c->fd);
			c->fd = -1;
			c->state = DNS_TCP_CLOSED;
			if (c->queries != DNS_NONE)
				dns_tcp_connect(res, s);
		}
		return;
	}
	enum dns_req kind = dns_gen_kind(gen);
	if (kind == DNS_REQ_SEND)
		c->sending = false;
	if (cqe->res < 0 || (kind == DNS_REQ_RECV && cqe->res == 0)) {
		dns_tcp_fail(res, s, DNS_REASON_NETWORK);
		return;
	}
	if (kind == DNS_REQ_CONNECT) {
		c->state = DNS_TCP_READY;
		c->idle_since_ms = res->ring->now_ms;
		dns_tcp_submit(res, s, DNS_REQ_RECV);
		dns_tcp_flush(res, s);
	} else if (kind == DNS_REQ_SEND) {
		uint32_t sent = (uint32_t)cqe->res;
		ASSERT(sent <= c->send_len);
		memmove(c->send_buf, c->send_buf + sent, c->send_len - sent);
		c->send_len -= sent;
		dns_tcp_flush(res, s);
	} else {
		c->recv_len += (uint32_t)cqe->res;
		dns_tcp_frames(res, s);
	}
}

/* ---- lookups: results ---- */

/* Appends text to the result's data; the slice, or an empty one if it does not fit. */
static bool
dns_result_put(struct dns_result *r, const void *p, size_t len, struct slice *out)
{
	if (len > DNS_RESULT_DATA_MAX - r->data_len)
		return false;
	memcpy(r->data + r->data_len, p, len);
	*out = slice_make(r->data + r->data_len, len);
	r->data_len += (uint32_t)len;
	return true;
}

static const char *
dns_reason_text(enum dns_reason reason)
{
	switch (reason) {
	case DNS_REASON_NONE: return "ok";
	case DNS_REASON_NXDOMAIN: return "host not found (NXDOMAIN)";
	case DNS_REASON_NODATA: return "no data of the requested type";
	case DNS_REASON_NULL_MX: return "null MX: the domain accepts no mail (RFC 7505)";
	case DNS_REASON_NO_ADDRESS: return "no mail exchanger has an address";
	case DNS_REASON_SERVFAIL: return "server failure (SERVFAIL)";
	case DNS_REASON_REFUSED: return "query refused (REFUSED)";
	case DNS_REASON_TIMEOUT: return "no answer from the name servers (timeout)";
	case DNS_REASON_BAD_ANSWER: return "malformed or unusable answer";
	case DNS_REASON_NETWORK: return "network error reaching the name servers";
	case DNS_REASON_TOO_LARGE: return "answer too large";
	case DNS_REASON_BUSY: return "resolver busy";
	}
	return "?";
}

static uint16_t
dns_lookup_main_qtype(enum dns_lookup_type type)
{
	static const uint16_t qtypes[] = {
		[DNS_LOOKUP_MX] = DNS_TYPE_MX, [DNS_LOOKUP_ADDR] = DNS_TYPE_A,
		[DNS_LOOKUP_TXT] = DNS_TYPE_TXT, [DNS_LOOKUP_TLSA] = DNS_TYPE_TLSA,
		[DNS_LOOKUP_PTR] = DNS_TYPE_PTR,
	};
	return qtypes[type];
}

/* Sets the status (if none was set yet) and the reason text. */
static void
dns_lookup_set(struct dns_lookup *lk, enum dns_status status, enum dns_reason reason)
{
	struct dns_result *r = &lk->result;
	if (lk->failed)
		return;
	lk->failed = status != DNS_STATUS_OK;
	r->status = status;
	r->reason = reason;
	r->enhanced = status == DNS_STATUS_OK ? "" : status == DNS_STATUS_TEMP ? "4.4.3"
		: reason == DNS_REASON_NULL_MX ? "5.1.10" : "5.4.4";
	r->reason_text[0] = '\0';
	if (status == DNS_STATUS_OK)
		return;                  /* a hit formats nothing */
	char name[DNS_NAME_TEXT_MAX];
	if (dns_name_to_text(&lk->names[0], name, sizeof(name)) == 0)
		memcpy(name, "?", 2);
	snprintf(r->reason_text, sizeof(r->reason_text), "name=%s type=%s: %s", name,
		dns_qtype_name(dns_lookup_main_qtype(lk->type)), dns_reason_text(reason));
}

static enum dns_reason
dns_view_negative(const struct dns_view *v)
{
	return v->kind == DNS_ANSWER_NXDOMAIN ? DNS_REASON_NXDOMAIN : DNS_REASON_NODATA;
}

static bool
dns_view_is_failure(const struct dns_view *v)
{
	return v->kind != DNS_ANSWER_DATA && v->kind != DNS_ANSWER_NODATA
		&& v->kind != DNS_ANSWER_NXDOMAIN;
}

static uint32_t
dns_lookup_add_name(struct dns_resolver *res, struct dns_lookup *lk, const struct dns_name *n)
{
	if (lk->name_count == DNS_LOOKUP_NAMES_MAX)
		return DNS_NONE;
	lk->names[lk->name_count] = *n;
	lk->name_hashes[lk->name_count] = dns_cache_name_hash(res->cache, n);
	return lk->name_count++;
}

static void
dns_lookup_add_sub(struct dns_resolver *res, uint32_t li, uint8_t role, uint8_t host,
	uint16_t qtype, uint32_t name)
{
	struct dns_lookup *lk = &res->lookups[li];
	ASSERT(lk->sub_count < DNS_SUBS_MAX);
	uint32_t si = lk->sub_count++;
	lk->subs[si] = (struct dns_sub){
		.role = role, .host = host, .qtype = qtype, .name = (uint16_t)name,
		.query = DNS_NONE, .prev = DNS_NONE, .next = DNS_NONE,
	};
	lk->pending++;
	dns_sub_request(res, li, si);
}

/* A new host in the result named text; its index, or DNS_NONE past DNS_RESULT_HOSTS_MAX. */
static uint32_t
dns_lookup_new_host(struct dns_lookup *lk, uint16_t pref, uint16_t flags, const char *text,
	size_t len)
{
	struct dns_result *r = &lk->result;
	if (r->host_count == DNS_RESULT_HOSTS_MAX)
		return DNS_NONE;        /* extra MX hosts are left out */
	uint32_t h = r->host_count;
	struct dns_host *host = &r->hosts[h];
	host->pref = pref;
	host->flags = flags;
	host->addr_count = 0;
	bool fits = dns_result_put(r, text, len, &host->name);
	ASSERT(fits);   /* DNS_RESULT_HOSTS_MAX names of DNS_NAME_TEXT_MAX always fit */
	r->host_count++;
	memset(&lk->work[h], 0, sizeof(lk->work[h]));
	return h;
}

/* As Postfix does: a host named by an IP address has that address, without a query. */
static void
dns_lookup_literal(struct dns_lookup *lk, uint32_t h, int family, const uint8_t addr[16])
{
	struct dns_host_work *w = &lk->work[h];
	lk->result.hosts[h].flags |= DNS_HOST_IP_LITERAL;
	struct dns_addr *a = family == AF_INET ? &w->v4[w->v4_count++] : &w->v6[w->v6_count++];
	a->family = family;
	memcpy(a->bytes, addr, 16);
}

/* A host: its name in the result and the address subs inet_protocols asks for. */
static void
dns_lookup_add_host(struct dns_resolver *res, uint32_t li, uint16_t pref, uint16_t flags,
	const struct dns_name *n)
{
	struct dns_lookup *lk = &res->lookups[li];
	char text[DNS_NAME_TEXT_MAX];
	size_t len = dns_name_to_text(n, text, sizeof(text));
	if (len == 0) {
		lk->result.hosts_unresolved++;   /* not a host name (RFC 1123 2.1) */
		return;
	}
	uint32_t h = dns_lookup_new_host(lk, pref, flags, text, len);
	if (h == DNS_NONE)
		return;
	uint8_t addr[16];
	int family = dns_name_parse_ip(lk->result.hosts[h].name, addr);
	if (family != 0) {
		dns_lookup_literal(lk, h, family, addr);
		return;
	}
	/* The lookup's own name (implicit MX, ADDR) is names[0] already. */
	uint32_t name = n == &lk->names[0] ? 0 : dns_lookup_add_name(res, lk, n);
	ASSERT(name != DNS_NONE);   /* one name per host is provided for */
	if (res->cfg.inet_protocols & CONFIG_INET_IPV6)
		dns_lookup_add_sub(res, li, DNS_SUB_ADDR6, (uint8_t)h, DNS_TYPE_AAAA, name);
	if (res->cfg.inet_protocols & CONFIG_INET_IPV4)
		dns_lookup_add_sub(res, li, DNS_SUB_ADDR4, (uint8_t)h, DNS_TYPE_A, name);
}

struct dns_mx_pick {
	uint16_t pref;
	uint16_t rr;
};

/* RFC 5321 5.1: by preference, then equal preferences in random order. */
static uint32_t
dns_mx_order(struct dns_resolver *res, const struct dns_view *v, struct dns_mx_pick *picks)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < v->rr_count && n < DNS_MX_SORT_MAX; i++) {
		if (v->rrs[i].len == 1)
			continue;           /* "." among real MX records: not a null MX; skipped */
		picks[n++] = (struct dns_mx_pick){ .pref = v->rrs[i].pref, .rr = (uint16_t)i };
	}
	for (uint32_t i = 1; i < n; i++) {       /* insertion sort: stable, n is small */
		struct dns_mx_pick p = picks[i];
		uint32_t j = i;
		while (j > 0 && picks[j - 1].pref > p.pref) {
			picks[j] = picks[j - 1];
			j--;
		}
		picks[j] = p;
	}
	for (uint32_t start = 0; start < n;) {    /* Fisher-Yates within each preference */
		uint32_t end = start + 1;
		while (end < n && picks[end].pref == picks[start].pref)
			end++;
		for (uint32_t i = end - 1; i > start; i--) {
			uint32_t j = start + dns_random_below(res, i - start + 1);
			struct dns_mx_pick t = picks[i];
			picks[i] = picks[j];
			picks[j] = t;
		}
		start = end;
	}
	return n;
}

static bool
dns_lookup_has_host(const struct dns_lookup *lk, const struct dns_name *n)
{
	for (uint32_t i = 1; i < lk->name_count; i++) {
		if (dns_name_eq(&lk->names[i], n))
			return true;
	}
	return false;
}

static void
dns_lookup_mx(struct dns_resolver *res, uint32_t li, const struct dns_view *v)
{
	struct dns_lookup *lk = &res->lookups[li];
	if (v->kind == DNS_ANSWER_NXDOMAIN) {
		dns_lookup_set(lk, DNS_STATUS_PERM, DNS_REASON_NXDOMAIN);
		return;
	}
	if (v->kind == DNS_ANSWER_NODATA) {
		/* RFC 5321 5.1: no MX, so the domain is its own mail exchanger. */
		dns_lookup_add_host(res, li, 0, DNS_HOST_IMPLICIT, &lk->names[0]);
		return;
	}
	if (v->rr_count == 1 && v->rrs[0].len == 1) {
		dns_lookup_set(lk, DNS_STATUS_PERM, DNS_REASON_NULL_MX);
		return;
	}
	struct dns_mx_pick picks[DNS_MX_SORT_MAX];
	uint32_t n = dns_mx_order(res, v, picks);
	for (uint32_t i = 0; i < n; i++) {
		const struct dns_rr *rr = &v->rrs[picks[i].rr];
		struct dns_name target;
		if (dns_name_from_wire(v->data + rr->off, rr->len, &target) != 0
			|| dns_lookup_has_host(lk, &target))
			continue;
		dns_lookup_add_host(res, li, rr->pref, 0, &target);
	}
	if (lk->result.host_count == 0)
		dns_lookup_set(lk, DNS_STATUS_PERM, DNS_REASON_NO_ADDRESS);
}

static void
dns_lookup_addr(struct dns_lookup *lk, const struct dns_sub *s, const struct dns_view *v)
{
	struct dns_host_work *w = &lk->work[s->host];
	if (dns_view_is_failure(v)) {
		w->temp = true;
		w->temp_reason = v->fail;
		return;
	}
	if (v->kind != DNS_ANSWER_DATA)
		return;
	if (v->cname_count > 0 || s->requeries > 0)
		lk->result.hosts[s->host].flags |= DNS_HOST_CNAME;
	bool v6 = s->role == DNS_SUB_ADDR6;
	for (uint32_t i = 0; i < v->rr_count; i++) {
		uint8_t *count = v6 ? &w->v6_count : &w->v4_count;
		if (*count == DNS_FAMILY_ADDRS_MAX)
			break;
		struct dns_addr *a = v6 ? &w->v6[*count] : &w->v4[*count];
		a->family = v6 ? AF_INET6 : AF_INET;
		memset(a->bytes, 0, sizeof(a->bytes));
		memcpy(a->bytes, v->data + v->rrs[i].off, v6 ? 16 : 4);
		(*count)++;
	}
}

/* TXT, TLSA and PTR: the records themselves. */
static void
dns_lookup_records(struct dns_resolver *res, uint32_t li, const struct dns_view *v)
{
	struct dns_lookup *lk = &res->lookups[li];
	struct dns_result *r = &lk->result;
	if (v->kind != DNS_ANSWER_DATA) {
		dns_lookup_set(lk, DNS_STATUS_PERM, dns_view_negative(v));
		return;
	}
	for (uint32_t i = 0; i < v->rr_count; i++) {
		const struct dns_rr *rr = &v->rrs[i];
		if (lk->type == DNS_LOOKUP_PTR) {
			struct dns_name n;
			char text[DNS_NAME_TEXT_MAX];
			size_t len;
			if (dns_name_from_wire(v->data + rr->off, rr->len, &n) != 0
				|| (len = dns_name_to_text(&n, text, sizeof(text))) == 0
				|| r->host_count == DNS_RESULT_HOSTS_MAX)
				continue;
			struct dns_host *h = &r->hosts[r->host_count];
			memset(h, 0, sizeof(*h));
			if (!dns_result_put(r, text, len, &h->name))
				continue;
			r->host_count++;
			continue;
		}
		if (r->record_count == DNS_RESULT_RECORDS_MAX) {
			dns_lookup_set(lk, DNS_STATUS_TEMP, DNS_REASON_TOO_LARGE);
			return;
		}
		struct dns_record *rec = &r->records[r->record_count];
		rec->tlsa_usage = rr->tlsa_usage;
		rec->tlsa_selector = rr->tlsa_selector;
		rec->tlsa_mtype = rr->tlsa_mtype;
		if (!dns_result_put(r, v->data + rr->off, rr->len, &rec->data)) {
			dns_lookup_set(lk, DNS_STATUS_TEMP, DNS_REASON_TOO_LARGE);
			return;
		}
		r->record_count++;
	}
	if (lk->type == DNS_LOOKUP_PTR && r->host_count == 0)
		dns_lookup_set(lk, DNS_STATUS_PERM, DNS_REASON_NODATA);
}

static void
dns_sub_release_pending(struct dns_resolver *res, uint32_t li)
{
	struct dns_lookup *lk = &res->lookups[li];
	ASSERT(lk->pending > 0);
	if (--lk->pending == 0 && lk->state == DNS_LOOKUP_ACTIVE)
		dns_lookup_finish(res, li);
}

static void
dns_sub_done(struct dns_resolver *res, uint32_t li, uint32_t si, const struct dns_view *v)
{
	struct dns_lookup *lk = &res->lookups[li];
	struct dns_sub *s = &lk->subs[si];
	ASSERT(lk->state == DNS_LOOKUP_ACTIVE);
	if (v->kind == DNS_ANSWER_CNAME) {
		/* The server stopped at an alias: ask for the chain's end ourselves. */
		uint32_t name = s->requeries < DNS_REQUERY_MAX
			? dns_lookup_add_name(res, lk, v->final) : DNS_NONE;
		if (name != DNS_NONE) {
			s->requeries++;
			s->name = (uint16_t)name;
			dns_sub_request(res, li, si);
			return;
		}
		struct dns_view bad = { .kind = DNS_ANSWER_BAD, .fail = DNS_REASON_BAD_ANSWER };
		dns_sub_done(res, li, si, &bad);
		return;
	}
	if (!dns_view_is_failure(v)) {
		lk->result.ad = lk->result.ad && v->ad;
		lk->answers++;
	} else {
		lk->result.ad = false;
	}
	lk->pending++;               /* hold: new subs may finish at once */
	if (s->role != DNS_SUB_MAIN)
		dns_lookup_addr(lk, s, v);
	else if (dns_view_is_failure(v))
		dns_lookup_set(lk, DNS_STATUS_TEMP, v->fail);
	else if (lk->type == DNS_LOOKUP_MX)
		dns_lookup_mx(res, li, v);
	else
		dns_lookup_records(res, li, v);
	dns_sub_release_pending(res, li);   /* the hold */
	dns_sub_release_pending(res, li);   /* this sub */
}

static void
dns_sub_from_cache(struct dns_resolver *res, uint32_t li, uint32_t si,
	const struct dns_cache_entry *e)
{
	struct dns_view v = {
		.kind = e->kind, .fail = DNS_REASON_NONE, .ad = e->ad,
		.cname_count = e->cname_count,
		.final = &res->lookups[li].names[res->lookups[li].subs[si].name],
		.rr_count = e->rr_count, .rrs = e->rrs, .data = e->data,
	};
	dns_sub_done(res, li, si, &v);
}

static uint32_t
dns_query_new(struct dns_resolver *res, const struct dns_name *n, uint64_t name_hash,
	uint16_t qtype, uint64_t hash)
{
	uint32_t qi = res->query_free;
	if (qi == DNS_NONE)
		return DNS_NONE;
	struct dns_query *q = &res->queries[qi];
	q->q.id = 0;
	q->q.qtype = qtype;
	q->q.qname = *n;
	int len = dns_packet_query(&q->q, q->out + 2, sizeof(q->out) - 2);
	if (len < 0)
		return DNS_NONE;
	res->query_free = q->hash_next;
	res->query_used++;
	q->out_len = (uint32_t)len;
	q->state = DNS_QUERY_WAIT;
	q->done = false;
	q->tcp = false;
	q->tcp_sent = false;
	q->inflight = 0;
	q->fd = -1;
	q->tries = 0;
	q->last_reason = DNS_REASON_TIMEOUT;
	q->subs = DNS_NONE;
	q->hash = hash;
	q->name_hash = name_hash;
	q->timer_prev = q->timer_next = DNS_NONE;
	q->tcp_prev = q->tcp_next = DNS_NONE;
	q->hash_next = res->query_buckets[hash & (DNS_QUERY_BUCKETS - 1)];
	res->query_buckets[hash & (DNS_QUERY_BUCKETS - 1)] = qi;
	res->stats.queries++;
	return qi;
}

/* The sub's question: from the cache, else joined to a query under way, else a new query. */
static void
dns_sub_request(struct dns_resolver *res, uint32_t li, uint32_t si)
{
	struct dns_lookup *lk = &res->lookups[li];
	struct dns_sub *s = &lk->subs[si];
	const struct dns_name *n = &lk->names[s->name];
	uint64_t name_hash = lk->name_hashes[s->name];
	const struct dns_cache_entry *e = dns_cache_get_hashed(res->cache, n, name_hash, s->qtype,
		res->ring->now_ms);
	if (e != NULL) {
		res->stats.cache_hits++;
		dns_sub_from_cache(res, li, si, e);
		return;
	}
	res->stats.cache_misses++;
	uint64_t hash = dns_hash_mix(name_hash, s->qtype);
	uint32_t qi = dns_query_find(res, n, s->qtype, hash);
	if (qi != DNS_NONE) {
		res->stats.queries_coalesced++;
		dns_query_attach(res, qi, li * DNS_SUBS_MAX + si);
		return;
	}
	qi = dns_query_new(res, n, name_hash, s->qtype, hash);
	if (qi == DNS_NONE) {
		struct dns_view busy = { .kind = DNS_ANSWER_SERVFAIL, .fail = DNS_REASON_BUSY };
		dns_sub_done(res, li, si, &busy);
		return;
	}
	dns_query_attach(res, qi, li * DNS_SUBS_MAX + si);
	dns_query_attempt(res, qi);
}

/* Detaches every sub still waiting (the lookup ends early); queries nobody waits for end. */
static void
dns_lookup_drop_subs(struct dns_resolver *res, uint32_t li)
{
	struct dns_lookup *lk = &res->lookups[li];
	for (uint32_t si = 0; si < lk->sub_count; si++) {
		struct dns_sub *s = &lk->subs[si];
		if (!s->waiting)
			continue;
		uint32_t qi = s->query;
		dns_query_detach(res, li * DNS_SUBS_MAX + si);
		if (res->queries[qi].subs == DNS_NONE)
			dns_query_end(res, qi);
	}
}

/* MX and ADDR: the hosts with addresses, IPv6 first; the status if none was set. */
static void
dns_lookup_hosts(struct dns_lookup *lk)
{
	struct dns_result *r = &lk->result;
	uint32_t kept = 0;
	bool temp = false;
	enum dns_reason temp_reason = DNS_REASON_NO_ADDRESS;
	for (uint32_t h = 0; h < r->host_count; h++) {
		const struct dns_host_work *w = &lk->work[h];
		struct dns_host host = r->hosts[h];
		host.addr_count = 0;
		for (uint32_t i = 0; i < w->v6_count; i++)
			host.addrs[host.addr_count++] = w->v6[i];
		for (uint32_t i = 0; i < w->v4_count; i++)
			host.addrs[host.addr_count++] = w->v4[i];
		if (host.addr_count == 0) {
			if (w->temp && lk->type == DNS_LOOKUP_ADDR)
				temp_reason = w->temp_reason;   /* the host's own failure */
			temp = temp || w->temp;
			r->hosts_unresolved++;
			continue;
		}
		r->hosts[kept++] = host;
	}
	r->host_count = kept;
	if (kept > 0)
		dns_lookup_set(lk, DNS_STATUS_OK, DNS_REASON_NONE);
	else if (lk->timed_out || temp)
		dns_lookup_set(lk, DNS_STATUS_TEMP,
			lk->timed_out ? DNS_REASON_TIMEOUT : temp_reason);
	else
		dns_lookup_set(lk, DNS_STATUS_PERM, lk->type == DNS_LOOKUP_ADDR
			? DNS_REASON_NODATA : DNS_REASON_NO_ADDRESS);
}

static void
dns_lookup_finish(struct dns_resolver *res, uint32_t li)
{
	struct dns_lookup *lk = &res->lookups[li];
	ASSERT(lk->state == DNS_LOOKUP_ACTIVE);
	dns_lookup_drop_subs(res, li);
	if (!lk->failed && (lk->type == DNS_LOOKUP_MX || lk->type == DNS_LOOKUP_ADDR))
		dns_lookup_hosts(lk);
	else if (lk->timed_out)
		dns_lookup_set(lk, DNS_STATUS_TEMP, DNS_REASON_TIMEOUT);
	else
		dns_lookup_set(lk, DNS_STATUS_OK, DNS_REASON_NONE);
	if (lk->result.status != DNS_STATUS_OK) {
		lk->result.host_count = 0;
		lk->result.record_count = 0;
	}
	if (lk->answers == 0)
		lk->result.ad = false;
	lk->state = DNS_LOOKUP_DONE;
	dns_lookup_unhash(res, li);
	dns_timer_remove(res, &res->lookup_timers, &dns_lookup_timer_ops, li);
	ASSERT(res->lookup_active > 0);
	res->lookup_active--;
	for (uint32_t wi = lk->waiters; wi != DNS_NONE; wi = res->waiters[wi].next) {
		struct dns_waiter *w = &res->waiters[wi];
		ASSERT(w->state == DNS_WAITER_WAITING);
		w->state = DNS_WAITER_POSTED;
		ring_post(res->ring, w->user_data, (int32_t)lk->result.status);
	}
}

/* ---- lookups: start, handles ---- */

static uint64_t
dns_handle(uint32_t wi, uint32_t gen)
{
	return (uint64_t)gen << 32 | wi;
}

static struct dns_waiter *
dns_handle_waiter(const struct dns_resolver *res, uint64_t handle)
{
	uint32_t wi = (uint32_t)handle;
	ASSERT(wi < DNS_WAITERS_MAX);
	struct dns_waiter *w = &res->waiters[wi];
	ASSERT(w->state != DNS_WAITER_FREE);
	ASSERT(w->gen == (uint32_t)(handle >> 32));   /* a released handle used again */
	return w;
}

/* The first sub(s) of a new lookup. */
static void
dns_lookup_begin(struct dns_resolver *res, uint32_t li, struct slice text)
{
	struct dns_lookup *lk = &res->lookups[li];
	lk->pending++;               /* hold while starting */
	uint8_t addr[16];
	int family = dns_name_parse_ip(text, addr);
	if (lk->type == DNS_LOOKUP_ADDR && family != 0) {
		char copy[DNS_NAME_TEXT_MAX];
		ASSERT(text.len < sizeof(copy));   /* dns_name_parse_ip took it */
		memcpy(copy, text.ptr, text.len);
		uint32_t h = dns_lookup_new_host(lk, 0, 0, copy, text.len);
		dns_lookup_literal(lk, h, family, addr);
	} else if (lk->type == DNS_LOOKUP_ADDR) {
		dns_lookup_add_host(res, li, 0, 0, &lk->names[0]);
	} else {
		dns_lookup_add_sub(res, li, DNS_SUB_MAIN, 0, dns_lookup_main_qtype(lk->type), 0);
	}
	dns_sub_release_pending(res, li);
}

/* The wire name of the lookup: for PTR the reverse name of an address, for an ADDR lookup of an
 * address a placeholder (the address is the answer), else the host name. */
static int
dns_lookup_name(enum dns_lookup_type type, struct slice text, struct dns_name *out)
{
	uint8_t addr[16];
	int family = dns_name_parse_ip(text, addr);
	if (type == DNS_LOOKUP_PTR) {
		if (family == 0)
			return -EINVAL;
		dns_name_reverse(family, addr, out);
		return 0;
	}
	if (family != 0 && type == DNS_LOOKUP_ADDR) {
		/* Keyed by the address text under ".literal" (no DNS name has a ':'). */
		dns_name_reverse(family, addr, out);
		return 0;
	}
	return dns_name_from_text(text, out);
}

static void
dns_lookup_init(struct dns_lookup *lk, enum dns_lookup_type type, const struct dns_name *n,
	uint64_t name_hash, uint64_t hash)
{
	lk->state = DNS_LOOKUP_ACTIVE;
	lk->type = type;
	lk->waiters = DNS_NONE;
	lk->waiter_count = 0;
	lk->pending = 0;
	lk->sub_count = 0;
	lk->name_count = 1;
	lk->names[0] = *n;
	lk->name_hashes[0] = name_hash;
	lk->hash = hash;
	lk->timed_out = false;
	lk->failed = false;
	lk->answers = 0;
	lk->timer_prev = lk->timer_next = DNS_NONE;
	struct dns_result *r = &lk->result;
	r->status = DNS_STATUS_OK;
	r->reason = DNS_REASON_NONE;
	r->enhanced = "";
	r->ad = true;
	r->host_count = 0;
	r->hosts_unresolved = 0;
	r->record_count = 0;
	r->reason_text[0] = '\0';
	r->data_len = 0;
}

int
dns_lookup_start(struct dns_resolver *res, enum dns_lookup_type type, struct slice name,
	uint64_t user_data, uint64_t *handle)
{
	ASSERT((uint32_t)type <= DNS_LOOKUP_PTR);
	struct dns_name n;
	if (dns_lookup_name(type, name, &n) != 0)
		return -EINVAL;
	uint32_t wi = res->waiter_free;
	if (wi == DNS_NONE)
		return -EAGAIN;
	uint64_t name_hash = dns_cache_name_hash(res->cache, &n);
	uint64_t hash = dns_hash_mix(name_hash, (uint16_t)(0xff00u | type));
	uint32_t li = dns_lookup_find(res, type, &n, hash);
	bool fresh = li == DNS_NONE;
	if (fresh && res->lookup_free == DNS_NONE)
		return -EAGAIN;
	if (ring_post_reserve(res->ring, 1) != 0)
		return -ENOMEM;
	struct dns_waiter *w = &res->waiters[wi];
	res->waiter_free = w->next;
	res->stats.lookups++;
	if (fresh) {
		li = res->lookup_free;
		res->lookup_free = res->lookups[li].hash_next;
		dns_lookup_init(&res->lookups[li], type, &n, name_hash, hash);
		res->lookups[li].hash_next = res->lookup_buckets[hash & (DNS_LOOKUP_BUCKETS - 1)];
		res->lookup_buckets[hash & (DNS_LOOKUP_BUCKETS - 1)] = li;
		res->lookup_active++;
	} else {
		res->stats.lookups_coalesced++;
	}
	struct dns_lookup *lk = &res->lookups[li];
	w->state = DNS_WAITER_WAITING;
	w->gen++;
	w->lookup = li;
	w->user_data = user_data;
	w->next = lk->waiters;
	lk->waiters = wi;
	lk->waiter_count++;
	*handle = dns_handle(wi, w->gen);
	if (fresh) {
		dns_timer_add(res, &res->lookup_timers, &dns_lookup_timer_ops, li,
			res->ring->now_ms + res->cfg.lookup_deadline_ms);
		dns_lookup_begin(res, li, name);
	}
	return 0;
}

const struct dns_result *
dns_lookup_result(const struct dns_resolver *res, uint64_t handle)
{
	const struct dns_waiter *w = dns_handle_waiter(res, handle);
	if (w->state != DNS_WAITER_POSTED)
		return NULL;
	return &res->lookups[w->lookup].result;
}

void
dns_lookup_release(struct dns_resolver *res, uint64_t handle)
{
	struct dns_waiter *w = dns_handle_waiter(res, handle);
	uint32_t wi = (uint32_t)handle;
	uint32_t li = w->lookup;
	struct dns_lookup *lk = &res->lookups[li];
	if (w->state == DNS_WAITER_WAITING)
		ring_post_unreserve(res->ring, 1);
	uint32_t *link = &lk->waiters;
	while (*link != wi)
		link = &res->waiters[*link].next;
	*link = w->next;
	w->state = DNS_WAITER_FREE;
	w->next = res->waiter_free;
	res->waiter_free = wi;
	ASSERT(lk->waiter_count > 0);
	if (--lk->waiter_count > 0)
		return;
	if (lk->state == DNS_LOOKUP_ACTIVE) {
		/* Cancelled: its queries end unless another lookup waits for them too. */
		dns_lookup_drop_subs(res, li);
		dns_lookup_unhash(res, li);
		dns_timer_remove(res, &res->lookup_timers, &dns_lookup_timer_ops, li);
		res->lookup_active--;
	}
	lk->state = DNS_LOOKUP_FREE;
	lk->hash_next = res->lookup_free;
	res->lookup_free = li;
}

/* ---- hooks ---- */

static void
dns_resolver_turn(void *ctx)
{
	struct dns_resolver *res = ctx;
	uint64_t now = res->ring->now_ms;
	while (res->query_timers.head != DNS_NONE
		&& res->queries[res->query_timers.head].deadline_ms <= now) {
		uint32_t qi = res->query_timers.head;
		struct dns_query *q = &res->queries[qi];
		if (q->state == DNS_QUERY_WAIT) {
			/* A synchronous failure waited for the turn. */
			dns_timer_remove(res, &res->query_timers, &dns_query_timer_ops, qi);
			dns_query_attempt(res, qi);
			continue;
		}
		res->stats.timeouts++;
		dns_query_attempt_failed(res, qi, DNS_REASON_TIMEOUT);
	}
	while (res->lookup_timers.head != DNS_NONE
		&& res->lookups[res->lookup_timers.head].deadline_ms <= now) {
		uint32_t li = res->lookup_timers.head;
		res->lookups[li].timed_out = true;
		dns_lookup_finish(res, li);
	}
	for (uint32_t s = 0; s < res->cfg.server_count; s++) {
		struct dns_tcp *c = &res->tcp[s];
		if (c->state == DNS_TCP_READY && c->query_count == 0
			&& (now - c->idle_since_ms >= DNS_TCP_IDLE_MS || res->ring->stopping))
			dns_tcp_close(res, s);
	}
}

static uint64_t
dns_resolver_next_ms(void *ctx)
{
	struct dns_resolver *res = ctx;
	uint64_t now = res->ring->now_ms;
	uint64_t next = UINT64_MAX;
	if (res->query_timers.head != DNS_NONE)
		next = res->queries[res->query_timers.head].deadline_ms;
	if (res->lookup_timers.head != DNS_NONE
		&& res->lookups[res->lookup_timers.head].deadline_ms < next)
		next = res->lookups[res->lookup_timers.head].deadline_ms;
	for (uint32_t s = 0; s < res->cfg.server_count; s++) {
		const struct dns_tcp *c = &res->tcp[s];
		if (c->state == DNS_TCP_READY && c->query_count == 0
			&& c->idle_since_ms + DNS_TCP_IDLE_MS < next)
			next = c->idle_since_ms + DNS_TCP_IDLE_MS;
	}
	if (next == UINT64_MAX)
		return UINT64_MAX;
	return next > now ? next - now : 0;
}

static bool
dns_resolver_idle(void *ctx)
{
	struct dns_resolver *res = ctx;
	if (res->query_used > 0 || res->lookup_active > 0)
		return false;
	for (uint32_t s = 0; s < res->cfg.server_count; s++) {
		if (res->tcp[s].state != DNS_TCP_CLOSED)
			return false;
	}
	return true;
}

static void
dns_resolver_stop(void *ctx)
{
	dns_resolver_turn(ctx);   /* closes idle connections at once */
}

static const struct ring_hooks dns_resolver_hooks = {
	.name = "dns",
	.turn = dns_resolver_turn,
	.next_ms = dns_resolver_next_ms,
	.idle = dns_resolver_idle,
	.stop = dns_resolver_stop,
};

/* ---- set-up ---- */

int
dns_resolver_config_from(const struct config *cfg, const char *resolv_conf_path,
	struct dns_resolver_config *out, char *err, size_t err_len)
{
	memset(out, 0, sizeof(*out));
	struct dns_resolv_conf rc;
	memset(&rc, 0, sizeof(rc));
	if (cfg->dns_server_count == 0 || cfg->dns_timeout_ms == 0 || cfg->dns_attempts == 0) {
		int read_rc = dns_resolv_conf_read(resolv_conf_path, &rc);
		if (read_rc != 0 && cfg->dns_server_count == 0) {
			snprintf(err, err_len, "%s: %s (and dns_servers is empty)",
				resolv_conf_path, strerror(-read_rc));
			return -1;
		}
		const char *env = getenv("RES_OPTIONS");
		if (env != NULL)
			dns_resolv_conf_options(slice_make(env, strlen(env)), &rc);
	}
	if (cfg->dns_server_count > 0) {
		memcpy(out->servers, cfg->dns, sizeof(out->servers));
		out->server_count = cfg->dns_server_count;
	} else {
		memcpy(out->servers, rc.servers, sizeof(out->servers));
		out->server_count = rc.server_count;
	}
	if (out->server_count == 0) {
		snprintf(err, err_len, "%s: no nameserver line (and dns_servers is empty)",
			resolv_conf_path);
		return -1;
	}
	out->timeout_ms = cfg->dns_timeout_ms > 0 ? cfg->dns_timeout_ms
		: rc.timeout_s > 0 ? rc.timeout_s * 1000u : DNS_TIMEOUT_DEFAULT_MS;
	out->attempts = cfg->dns_attempts > 0 ? cfg->dns_attempts
		: rc.attempts > 0 ? rc.attempts : DNS_ATTEMPTS_DEFAULT;
	out->lookup_deadline_ms = DNS_LOOKUP_DEADLINE_MS;
	out->cache_max = cfg->dns_cache_max;
	out->inet_protocols = cfg->inet_protocols;
	return 0;
}

static void
dns_resolver_tables_init(struct dns_resolver *res)
{
	for (uint32_t i = 0; i < DNS_WAITERS_MAX; i++)
		res->waiters[i].next = i + 1 < DNS_WAITERS_MAX ? i + 1 : DNS_NONE;
	for (uint32_t i = 0; i < DNS_LOOKUPS_MAX; i++)
		res->lookups[i].hash_next = i + 1 < DNS_LOOKUPS_MAX ? i + 1 : DNS_NONE;
	for (uint32_t i = 0; i < DNS_QUERIES_MAX; i++) {
		res->queries[i].hash_next = i + 1 < DNS_QUERIES_MAX ? i + 1 : DNS_NONE;
		res->queries[i].fd = -1;
	}
	for (uint32_t i = 0; i < DNS_LOOKUP_BUCKETS; i++)
		res->lookup_buckets[i] = DNS_NONE;
	for (uint32_t i = 0; i < DNS_QUERY_BUCKETS; i++)
		res->query_buckets[i] = DNS_NONE;
	for (uint32_t s = 0; s < CONFIG_DNS_SERVERS_MAX; s++) {
		res->tcp[s].fd = -1;
		res->tcp[s].queries = DNS_NONE;
	}
	res->waiter_free = 0;
	res->lookup_free = 0;
	res->query_free = 0;
	res->query_timers = (struct dns_timers){ DNS_NONE, DNS_NONE };
	res->lookup_timers = (struct dns_timers){ DNS_NONE, DNS_NONE };
}

int
dns_resolver_new(struct ring *r, const struct dns_resolver_config *rc, struct dns_resolver **out)
{
	ASSERT(rc->server_count > 0);
	ASSERT(rc->server_count <= CONFIG_DNS_SERVERS_MAX);
	ASSERT(rc->attempts > 0);
	ASSERT(rc->timeout_ms > 0);
	ASSERT(rc->cache_max <= DNS_CACHE_ENTRIES_LIMIT);
	struct dns_resolver *res = calloc(1, sizeof(*res));
	if (res == NULL)
		return -ENOMEM;
	res->ring = r;
	res->cfg = *rc;
	res->waiters = calloc(DNS_WAITERS_MAX, sizeof(*res->waiters));
	res->lookups = calloc(DNS_LOOKUPS_MAX, sizeof(*res->lookups));
	res->queries = calloc(DNS_QUERIES_MAX, sizeof(*res->queries));
	res->tcp = calloc(CONFIG_DNS_SERVERS_MAX, sizeof(*res->tcp));
	res->answer = malloc(sizeof(*res->answer));
	int rc_random = dns_random_fill(res);
	int rc_cache = rc_random;
	if (rc_random == 0) {
		/* One secret key hashes names for the cache and the tables of lookups and queries. */
		uint8_t cache_key[DNS_CACHE_KEY_LEN];
		memcpy(cache_key, res->random + res->random_pos, sizeof(cache_key));
		res->random_pos += sizeof(cache_key);
		rc_cache = dns_cache_new(rc->cache_max, cache_key, &res->cache);
	}
	if (res->waiters == NULL || res->lookups == NULL || res->queries == NULL
		|| res->tcp == NULL || res->answer == NULL || rc_cache != 0) {
		dns_resolver_free(res);
		return rc_random != 0 ? rc_random : -ENOMEM;
	}
	dns_resolver_tables_init(res);
	res->op_udp = ring_op_register(r, dns_udp_complete, res);
	res->op_tcp = ring_op_register(r, dns_tcp_complete, res);
	ring_hooks_register(r, &dns_resolver_hooks, res);
	*out = res;
	return 0;
}

void
dns_resolver_free(struct dns_resolver *res)
{
	if (res == NULL)
		return;
	for (uint32_t i = 0; res->queries != NULL && i < DNS_QUERIES_MAX; i++) {
		if (res->queries[i].state != DNS_QUERY_FREE && res->queries[i].fd >= 0)
			close(res->queries[i].fd);
	}
	for (uint32_t s = 0; res->tcp != NULL && s < CONFIG_DNS_SERVERS_MAX; s++) {
		if (res->tcp[s].fd >= 0)
			close(res->tcp[s].fd);
	}
	dns_cache_free(res->cache);
	free(res->waiters);
	free(res->lookups);
	free(res->queries);
	free(res->tcp);
	free(res->answer);
	free(res);
}

void
dns_resolver_get_stats(const struct dns_resolver *res, struct dns_resolver_stats *out)
{
	*out = res->stats;
	struct dns_cache_stats cs;
	dns_cache_get_stats(res->cache, &cs);
	out->cache_entries = cs.entries;
	out->queries_active = res->query_used;
	out->lookups_active = res->lookup_active;
}

const char *
dns_lookup_type_name(enum dns_lookup_type type)
{
	static const char *const names[] = {
		[DNS_LOOKUP_MX] = "MX", [DNS_LOOKUP_ADDR] = "ADDR", [DNS_LOOKUP_TXT] = "TXT",
		[DNS_LOOKUP_TLSA] = "TLSA", [DNS_LOOKUP_PTR] = "PTR",
	};
	ASSERT((size_t)type < ARRAY_LEN(names));
	return names[type];
}

const char *
dns_reason_name(enum dns_reason reason)
{
	static const char *const names[] = {
		[DNS_REASON_NONE] = "none", [DNS_REASON_NXDOMAIN] = "NXDOMAIN",
		[DNS_REASON_NODATA] = "NODATA", [DNS_REASON_NULL_MX] = "NULL_MX",
		[DNS_REASON_NO_ADDRESS] = "NO_ADDRESS", [DNS_REASON_SERVFAIL] = "SERVFAIL",
		[DNS_REASON_REFUSED] = "REFUSED", [DNS_REASON_TIMEOUT] = "TIMEOUT",
		[DNS_REASON_BAD_ANSWER] = "BAD_ANSWER", [DNS_REASON_NETWORK] = "NETWORK",
		[DNS_REASON_TOO_LARGE] = "TOO_LARGE", [DNS_REASON_BUSY] = "BUSY",
	};
	ASSERT((size_t)reason < ARRAY_LEN(names));
	return names[reason];
}
