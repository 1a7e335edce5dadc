/* deliver/outbound.c - requests, routes, destinations; see outbound.h (sessions: _session.c). */
#include "deliver/outbound_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "conf/route.h"
#include "engine/xshard.h"
#include "tls/tls_cache.h"

#define OUTBOUND_SUSPEND_MIN_MS 1000u   /* a dead destination rests at least this long */

static void outbound_owner_accept(struct outbound *ob, struct outbound_req *req);

/* ---- results ---- */

void
outbound_result_set(struct outbound_result *res, enum outbound_outcome o, const char *status,
	const char *reply, const char *relay, bool remote)
{
	if (res->outcome != OUTBOUND_UNTRIED)
		return;   /* each recipient is resolved once */
	res->outcome = (uint8_t)o;
	res->remote = remote;
	snprintf(res->status, sizeof(res->status), "%s", status);
	snprintf(res->reply, sizeof(res->reply), "%s", reply);
	snprintf(res->relay, sizeof(res->relay), "%s", relay);
}

/* Every recipient from `from` on that has no result yet gets this one (or stays UNTRIED). */
static void
outbound_req_resolve_rest(struct outbound *ob, struct outbound_req *req, uint32_t from,
	enum outbound_outcome o, const char *status, const char *reply, const char *relay)
{
	uint32_t n = 0;
	for (uint32_t i = from; i < req->rcpt_count; i++) {
		struct outbound_result *r = &req->rcpts[i].result;
		if (r->outcome != OUTBOUND_UNTRIED || r->relay[0] != '\0')
			continue;
		if (o != OUTBOUND_UNTRIED)
			outbound_result_set(r, o, status, reply, relay, false);
		else
			snprintf(r->relay, sizeof(r->relay), "none");   /* marks it done */
		r->dns_ms = req->priv.dns_ms;
		n++;
	}
	req->priv.next_rcpt = req->rcpt_count;
	ASSERT(req->priv.unresolved >= n);
	req->priv.unresolved -= n;
	if (n > 0 && req->priv.unresolved == 0)
		outbound_rcpt_done(ob, req);
}

/* ---- home ---- */

static struct outbound_req *
outbound_home_req(struct outbound *ob, uint64_t ud)
{
	uint32_t slot = ring_ud_slot(ud);
	if (slot >= OUTBOUND_HOME_MAX)
		return NULL;
	struct ob_home *h = &ob->homes[slot];
	return h->req != NULL && h->gen == ring_ud_gen(ud) ? h->req : NULL;
}

/* Every recipient has its result: the request goes back to its submitter. */
static void
outbound_home_finish(struct outbound *ob, struct outbound_req *req)
{
	uint32_t slot = req->priv.home_slot;
	struct ob_home *h = &ob->homes[slot];
	ASSERT(h->req == req);
	ASSERT(req->priv.unresolved == 0);
	h->req = NULL;
	h->gen++;
	h->next_free = ob->home_free;
	ob->home_free = slot;
	ASSERT(ob->home_count > 0);
	ob->home_count--;
	ring_post(ob->ring, req->priv.ud, 0);
}

static void
outbound_push(struct outbound_req **list, struct outbound_req *req)
{
	req->priv.home_next = *list;
	*list = req;
}

static uint64_t
outbound_hash(const char *s, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ull;   /* FNV-1a, then a finaliser for the low bits */
	for (size_t i = 0; i < len; i++)
		h = (h ^ (uint8_t)s[i]) * 0x100000001b3ull;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return h;
}

/* The route is known: to the owner of its destination. */
static void
outbound_route_done(struct outbound *ob, struct outbound_req *req)
{
	struct outbound_route *rt = &req->priv.route;
	req->priv.dns_ms = (uint32_t)(ob->ring->now_ms - req->priv.submit_ms);
	rt->hash = outbound_hash(rt->key, rt->key_len);
	uint32_t owner = (uint32_t)(rt->hash % ob->p.shard_count);
	if (ob->ring->stopping) {   /* the owner may be gone already: tried after the restart */
		outbound_req_resolve_rest(ob, req, 0, OUTBOUND_UNTRIED, "", "", "");
		return;
	}
	if (owner == ob->shard || ob->p.xshard == NULL) {
		outbound_owner_accept(ob, req);
		return;
	}
	struct xmsg m = { .type = XMSG_DELIVER, .queue_id = req->qid, .dest_hash = rt->hash,
		.arg = (uint64_t)(uintptr_t)req };
	if (xshard_send(ob->p.xshard, owner, &m) != 0) {
		outbound_push(&ob->send_retry, req);
		return;
	}
	ob->stats.sent_away++;
}

static void
outbound_route_fail(struct outbound *ob, struct outbound_req *req, enum outbound_outcome o,
	const char *status, const char *reason)
{
	req->priv.dns_ms = (uint32_t)(ob->ring->now_ms - req->priv.submit_ms);
	outbound_req_resolve_rest(ob, req, 0, o, status, reason, "none");
}

static void
outbound_key_add(struct outbound_route *rt, const char *fmt, const char *a, uint32_t n)
{
	if (rt->key_len >= sizeof(rt->key))
		return;
	int w = snprintf(rt->key + rt->key_len, sizeof(rt->key) - rt->key_len, fmt, n, a);
	if (w > 0)
		rt->key_len += (uint32_t)w;
	if (rt->key_len >= sizeof(rt->key))
		rt->key_len = sizeof(rt->key) - 1;
}

static bool
outbound_route_addr(struct outbound_route *rt, const struct dns_addr *a, uint16_t pref,
	struct slice name, uint32_t limit)
{
	if (rt->addr_count >= limit || name.len > sizeof(rt->names) - rt->names_len)
		return false;
	struct outbound_addr *o = &rt->addrs[rt->addr_count++];
	o->family = a->family;
	memcpy(o->bytes, a->bytes, sizeof(o->bytes));
	o->pref = pref;
	o->name_off = (uint16_t)rt->names_len;
	o->name_len = (uint16_t)name.len;
	memcpy(rt->names + rt->names_len, name.ptr, name.len);
	rt->names_len += (uint32_t)name.len;
	return true;
}

static int
outbound_host_cmp(const void *a, const void *b)
{
	const struct dns_host *x = *(const struct dns_host *const *)a;
	const struct dns_host *y = *(const struct dns_host *const *)b;
	if (x->pref != y->pref)
		return x->pref < y->pref ? -1 : 1;
	size_t n = x->name.len < y->name.len ? x->name.len : y->name.len;
	int c = memcmp(x->name.ptr, y->name.ptr, n);
	return c != 0 ? c : (x->name.len < y->name.len ? -1 : x->name.len > y->name.len);
}

/* The destination of an MX answer: its host set, sorted, is the key (MX rollup). */
static void
outbound_route_from_dns(struct outbound *ob, struct outbound_req *req, const struct dns_result *d,
	bool mx)
{
	struct outbound_route *rt = &req->priv.route;
	uint32_t limit = ob->p.cfg->smtp_mx_address_limit;
	if (limit == 0 || limit > OUTBOUND_ROUTE_ADDRS_MAX)
		limit = OUTBOUND_ROUTE_ADDRS_MAX;
	for (uint32_t h = 0; h < d->host_count; h++) {
		const struct dns_host *host = &d->hosts[h];
		for (uint32_t a = 0; a < host->addr_count; a++)
			(void)outbound_route_addr(rt, &host->addrs[a], host->pref, host->name, limit);
	}
	if (!mx)
		return;
	const struct dns_host *sorted[DNS_RESULT_HOSTS_MAX];
	for (uint32_t h = 0; h < d->host_count; h++)
		sorted[h] = &d->hosts[h];
	qsort(sorted, d->host_count, sizeof(sorted[0]), outbound_host_cmp);
	rt->key_len = 0;
	outbound_key_add(rt, "mx:%u", "", rt->port);
	for (uint32_t h = 0; h < d->host_count; h++) {
		char name[256];
		size_t n = sorted[h]->name.len < sizeof(name) - 1 ? sorted[h]->name.len
			: sizeof(name) - 1;
		for (size_t i = 0; i < n; i++)
			name[i] = (char)slice_ascii_lower(sorted[h]->name.ptr[i]);
		name[n] = '\0';
		outbound_key_add(rt, " %u %s", name, sorted[h]->pref);
	}
}

static void
outbound_dns_done(void *ctx, const struct io_uring_cqe *cqe)
{
	struct outbound *ob = ctx;
	struct outbound_req *req = outbound_home_req(ob, cqe->user_data);
	if (req == NULL || !req->priv.dns_busy)
		return;   /* stale */
	req->priv.dns_busy = false;
	const struct dns_result *d = dns_lookup_result(ob->p.resolver, req->priv.dns_handle);
	ASSERT(d != NULL);
	bool mx = req->priv.route.key[0] == 'm';
	if (d->status == DNS_STATUS_OK)
		outbound_route_from_dns(ob, req, d, mx);
	char reason[DNS_REASON_LEN_MAX + 32];
	snprintf(reason, sizeof(reason), "%s", d->reason_text);
	const char *status = d->enhanced[0] != '\0' ? d->enhanced
		: d->status == DNS_STATUS_PERM ? "5.1.2" : "4.4.3";
	char st[OUTBOUND_STATUS_MAX];
	snprintf(st, sizeof(st), "%s", status);
	enum dns_status s = d->status;
	uint32_t addrs = req->priv.route.addr_count;
	dns_lookup_release(ob->p.resolver, req->priv.dns_handle);
	if (s == DNS_STATUS_PERM)
		outbound_route_fail(ob, req, OUTBOUND_BOUNCED, st, reason);
	else if (s == DNS_STATUS_TEMP)
		outbound_route_fail(ob, req, OUTBOUND_DEFERRED, st, reason);
	else if (addrs == 0)
		outbound_route_fail(ob, req, OUTBOUND_DEFERRED, "4.4.3", "no address for the next hop");
	else
		outbound_route_done(ob, req);
}

static void
outbound_dns_start(struct outbound *ob, struct outbound_req *req, const char *name, bool mx)
{
	if (ob->p.resolver == NULL) {
		outbound_route_fail(ob, req, OUTBOUND_DEFERRED, "4.4.3", "no DNS servers configured");
		return;
	}
	if (ob->ring->stopping) {
		outbound_req_resolve_rest(ob, req, 0, OUTBOUND_UNTRIED, "", "", "");
		return;
	}
	uint64_t ud = ring_ud(ob->op_dns, req->priv.home_slot, ob->homes[req->priv.home_slot].gen);
	int rc = dns_lookup_start(ob->p.resolver, mx ? DNS_LOOKUP_MX : DNS_LOOKUP_ADDR,
		slice_make(name, strlen(name)), ud, &req->priv.dns_handle);
	if (rc == 0) {
		req->priv.dns_busy = true;
	} else if (rc == -EAGAIN || rc == -ENOMEM) {
		outbound_push(&ob->dns_retry, req);
	} else {
		outbound_route_fail(ob, req, OUTBOUND_BOUNCED, "5.1.2", "bad next-hop name");
	}
}

/* The next hop of req: an IP address at once, else a lookup. The key names the destination:
 * "[host]:port" for a host without MX lookup, the MX set for the others (set on the answer). */
static void
outbound_route_start(struct outbound *ob, struct outbound_req *req)
{
	struct route_hop hop;
	struct outbound_route *rt = &req->priv.route;
	if (!route_next_hop(ob->p.route, req->domain, &hop)) {
		outbound_route_fail(ob, req, OUTBOUND_BOUNCED, "5.1.2", "bad destination domain");
		return;
	}
	rt->port = hop.port != 0 ? hop.port : ob->p.cfg->remote_smtp_port;
	rt->key_len = 0;
	rt->key[0] = '\0';
	if (hop.mx) {
		outbound_key_add(rt, "mx:%u", "", rt->port);   /* replaced by the answer's */
		outbound_dns_start(ob, req, hop.host, true);
		return;
	}
	outbound_key_add(rt, "[%2$s]:%1$u", hop.host, rt->port);
	struct dns_addr a = { 0 };
	if (inet_pton(AF_INET, hop.host, a.bytes) == 1)
		a.family = AF_INET;
	else if (inet_pton(AF_INET6, hop.host, a.bytes) == 1)
		a.family = AF_INET6;
	if (a.family == 0) {
		outbound_dns_start(ob, req, hop.host, false);
		return;
	}
	(void)outbound_route_addr(rt, &a, 0, slice_make(hop.host, strlen(hop.host)), 1);
	outbound_route_done(ob, req);
}

int
outbound_submit(struct outbound *ob, struct outbound_req *req, uint64_t ud)
{
	ASSERT(req->rcpt_count > 0);
	if (ob->home_free == UINT32_MAX || ring_post_reserve(ob->ring, 1) != 0)
		return -ENOMEM;
	uint32_t slot = ob->home_free;
	struct ob_home *h = &ob->homes[slot];
	ob->home_free = h->next_free;
	h->req = req;
	ob->home_count++;
	memset(&req->priv, 0, sizeof(req->priv));
	req->priv.ud = ud;
	req->priv.home_slot = slot;
	req->priv.home_shard = ob->shard;
	req->priv.submit_ms = ob->ring->now_ms;
	req->priv.unresolved = req->rcpt_count;
	for (uint32_t i = 0; i < req->rcpt_count; i++)
		memset(&req->rcpts[i].result, 0, sizeof(req->rcpts[i].result));
	if (ob->ring->stopping)
		outbound_req_resolve_rest(ob, req, 0, OUTBOUND_UNTRIED, "", "", "");
	else
		outbound_route_start(ob, req);
	return 0;
}

/* ---- crossing shards ---- */

void
outbound_rcpt_done(struct outbound *ob, struct outbound_req *req)
{
	ASSERT(req->priv.unresolved == 0);
	if (req->priv.home_shard == ob->shard) {
		outbound_home_finish(ob, req);
		return;
	}
	ASSERT(ob->owned_reqs > 0);
	ob->owned_reqs--;
	struct xmsg m = { .type = XMSG_DELIVERY_RESULT, .queue_id = req->qid,
		.dest_hash = req->priv.route.hash, .arg = (uint64_t)(uintptr_t)req };
	if (xshard_send(ob->p.xshard, req->priv.home_shard, &m) != 0) {
		req->priv.owner_next = ob->done_retry;
		ob->done_retry = req;
	}
}

static void
outbound_xmsg_deliver(void *ctx, const struct xmsg *m)
{
	struct outbound *ob = ctx;
	struct outbound_req *req = (struct outbound_req *)(uintptr_t)m->arg;
	ASSERT(req->qid == m->queue_id);
	ob->owned_reqs++;
	outbound_owner_accept(ob, req);
}

static void
outbound_xmsg_result(void *ctx, const struct xmsg *m)
{
	struct outbound *ob = ctx;
	struct outbound_req *req = (struct outbound_req *)(uintptr_t)m->arg;
	ASSERT(req->priv.home_shard == ob->shard);
	outbound_home_finish(ob, req);
}

/* ---- destinations (owner) ---- */

const char *
outbound_addr_name(const struct outbound_route *rt, uint32_t i, uint32_t *len)
{
	ASSERT(i < rt->addr_count);
	*len = rt->addrs[i].name_len;
	return rt->names + rt->addrs[i].name_off;
}

static struct ob_dest **
outbound_bucket(struct outbound *ob, uint64_t hash)
{
	return &ob->buckets[hash & (OUTBOUND_DEST_BUCKETS - 1)];
}

static bool
outbound_dest_idle(const struct ob_dest *d, uint64_t now_ms)
{
	return d->q_head == NULL && d->sessions == 0 && !d->on_work
		&& (d->sched.suspended_until_ms == 0 || d->sched.suspended_until_ms <= now_ms);
}

/* The table is full: destinations without work, sessions or suspension go. */
static void
outbound_dests_reap(struct outbound *ob)
{
	for (uint32_t b = 0; b < OUTBOUND_DEST_BUCKETS; b++) {
		struct ob_dest **p = &ob->buckets[b];
		while (*p != NULL) {
			struct ob_dest *d = *p;
			if (!outbound_dest_idle(d, ob->ring->now_ms)) {
				p = &d->hash_next;
				continue;
			}
			*p = d->hash_next;
			free(d->key);
			free(d);
			ob->dest_count--;
		}
	}
}

/* The limits of a new destination: the global ones, with its policy entry over them; the
 * same for its TLS level. */
static struct outbound_sched_limits
outbound_dest_limits(struct outbound *ob, const struct outbound_req *req, uint8_t *tls_level)
{
	const struct config *cfg = ob->p.cfg;
	struct outbound_sched_limits lim = { .concurrency = cfg->dest_concurrency_limit,
		.recipients = cfg->dest_recipient_limit, .reuse = cfg->connection_reuse_limit,
		.rate = cfg->dest_rate_limit };
	const struct outbound_route *rt = &req->priv.route;
	struct slice names[OUTBOUND_ROUTE_ADDRS_MAX];
	for (uint32_t i = 0; i < rt->addr_count; i++) {
		uint32_t len;
		const char *n = outbound_addr_name(rt, i, &len);
		names[i] = slice_make(n, len);
	}
	const struct route_limits *pl = route_policy_find(ob->p.route, req->domain, names,
		rt->addr_count);
	*tls_level = pl != NULL && pl->tls != 0 ? (uint8_t)(pl->tls - ROUTE_TLS_GIVEN)
		: cfg->smtp_tls_security_level;
	if (pl != NULL) {
		lim.concurrency = pl->concurrency ? pl->concurrency : lim.concurrency;
		lim.recipients = pl->recipients ? pl->recipients : lim.recipients;
		lim.reuse = pl->messages_per_connection ? pl->messages_per_connection : lim.reuse;
		lim.rate = pl->rate ? pl->rate : lim.rate;
	}
	if (lim.recipients > ob->rcpt_limit_max)
		lim.recipients = ob->rcpt_limit_max;
	return lim;
}

static struct ob_dest *
outbound_dest_get(struct outbound *ob, const struct outbound_req *req)
{
	const struct outbound_route *rt = &req->priv.route;
	struct ob_dest **b = outbound_bucket(ob, rt->hash);
	for (struct ob_dest *d = *b; d != NULL; d = d->hash_next) {
		if (d->hash != rt->hash || d->key_len != rt->key_len
			|| memcmp(d->key, rt->key, rt->key_len) != 0)
			continue;
		if (ob->ring->now_ms >= d->route_ms + OUTBOUND_ROUTE_TTL_MS && d->opening == 0) {
			d->route = *rt;   /* the newer answer */
			d->route_ms = ob->ring->now_ms;
			memset(d->addr_down_until, 0, sizeof(d->addr_down_until));
		}
		return d;
	}
	if (ob->dest_count >= OUTBOUND_DESTS_MAX)
		outbound_dests_reap(ob);
	if (ob->dest_count >= OUTBOUND_DESTS_MAX)
		return NULL;
	struct ob_dest *d = calloc(1, sizeof(*d));
	char *key = d != NULL ? malloc(rt->key_len + 1) : NULL;
	if (key == NULL) {
		free(d);
		return NULL;
	}
	memcpy(key, rt->key, rt->key_len);
	key[rt->key_len] = '\0';
	d->key = key;
	d->key_len = rt->key_len;
	d->hash = rt->hash;
	d->route = *rt;
	d->route_ms = ob->ring->now_ms;
	struct outbound_sched_limits lim = outbound_dest_limits(ob, req, &d->tls_level);
	outbound_sched_dest_init(&d->sched, &lim);
	d->hash_next = *b;
	*b = d;
	ob->dest_count++;
	return d;
}

/* The destination has work: look at it at the end of the turn. */
void
outbound_dest_kick(struct outbound *ob, struct ob_dest *d)
{
	if (d->on_work)
		return;
	d->on_work = true;
	d->work_next = ob->work_head;
	ob->work_head = d;
}

/* The reason given to recipients deferred without connecting. */
static void
outbound_dest_suspended_text(const struct ob_dest *d, char *out, size_t cap)
{
	snprintf(out, cap, "destination suspended after failed connections: %.400s", d->last_error);
}

static void
outbound_dest_defer_all(struct outbound *ob, struct ob_dest *d)
{
	char reason[OUTBOUND_REPLY_MAX];
	outbound_dest_suspended_text(d, reason, sizeof(reason));
	struct outbound_req *req;
	while ((req = d->q_head) != NULL) {
		d->q_head = req->priv.owner_next;
		d->q_count--;
		outbound_req_resolve_rest(ob, req, req->priv.next_rcpt, OUTBOUND_DEFERRED,
			d->last_status, reason, d->last_relay);
	}
	d->q_tail = NULL;
}

static void
outbound_owner_accept(struct outbound *ob, struct outbound_req *req)
{
	ob->stats.owned++;
	if (ob->ring->stopping) {
		outbound_req_resolve_rest(ob, req, 0, OUTBOUND_UNTRIED, "", "", "");
		return;
	}
	struct ob_dest *d = outbound_dest_get(ob, req);
	if (d == NULL) {
		outbound_req_resolve_rest(ob, req, 0, OUTBOUND_DEFERRED, "4.3.2",
			"too many destinations at once", "none");
		return;
	}
	if (outbound_sched_suspended(&d->sched, ob->ring->now_ms)) {
		char reason[OUTBOUND_REPLY_MAX];
		outbound_dest_suspended_text(d, reason, sizeof(reason));
		outbound_req_resolve_rest(ob, req, 0, OUTBOUND_DEFERRED, d->last_status, reason,
			d->last_relay);
		return;
	}
	req->priv.owner_next = NULL;
	if (d->q_tail != NULL)
		d->q_tail->priv.owner_next = req;
	else
		d->q_head = req;
	d->q_tail = req;
	d->q_count++;
	outbound_dest_kick(ob, d);
}

/* The next request with recipients for a transaction, or NULL. The caller takes at most
 * sched.lim.recipients of them; a request whose recipients are all taken leaves the queue. */
struct outbound_req *
outbound_dest_take(struct outbound *ob, struct ob_dest *d)
{
	struct outbound_req *req = d->q_head;
	if (req == NULL)
		return NULL;
	if (req->rcpt_count - req->priv.next_rcpt <= d->sched.lim.recipients) {
		d->q_head = req->priv.owner_next;
		if (d->q_head == NULL)
			d->q_tail = NULL;
		d->q_count--;
	}
	return req;
}

/* A session could not be established: the transaction it was opened for is deferred (or
 * bounced, when the last host refused with 5xx); when the cohort has failed, every queued
 * recipient is. */
void
outbound_dest_fail_head(struct outbound *ob, struct ob_dest *d, const char *status,
	const char *reply, const char *relay, bool perm)
{
	snprintf(d->last_status, sizeof(d->last_status), "%s", status);
	snprintf(d->last_error, sizeof(d->last_error), "%s", reply);
	snprintf(d->last_relay, sizeof(d->last_relay), "%s", relay);
	uint64_t retry = (uint64_t)ob->p.cfg->minimal_backoff_s * 1000u;
	if (retry < OUTBOUND_SUSPEND_MIN_MS)
		retry = OUTBOUND_SUSPEND_MIN_MS;
	bool dead = outbound_sched_failure(&d->sched, ob->ring->now_ms, retry);
	struct outbound_req *req = d->q_head;
	if (req != NULL) {
		uint32_t from = req->priv.next_rcpt;
		uint32_t n = req->rcpt_count - from;
		if (n > d->sched.lim.recipients)
			n = d->sched.lim.recipients;
		(void)outbound_dest_take(ob, d);
		req->priv.next_rcpt = from + n;
		uint32_t done = 0;
		for (uint32_t i = from; i < from + n; i++) {
			struct outbound_result *r = &req->rcpts[i].result;
			outbound_result_set(r, perm ? OUTBOUND_BOUNCED : OUTBOUND_DEFERRED, status,
				reply, relay, perm);
			r->dns_ms = req->priv.dns_ms;
			done++;
		}
		req->priv.unresolved -= done;
		if (req->priv.unresolved == 0)
			outbound_rcpt_done(ob, req);
	}
	if (dead) {
		ob->stats.suspensions++;
		outbound_dest_defer_all(ob, d);
	}
	outbound_dest_kick(ob, d);
}

/* One destination's turn: idle sessions take work, new sessions open within the limits. */
static void
outbound_dest_turn(struct outbound *ob, struct ob_dest *d)
{
	uint64_t now = ob->ring->now_ms;
	if (ob->ring->stopping) {
		struct outbound_req *req;
		while ((req = d->q_head) != NULL) {
			d->q_head = req->priv.owner_next;
			d->q_count--;
			outbound_req_resolve_rest(ob, req, req->priv.next_rcpt, OUTBOUND_UNTRIED, "", "",
				"");
		}
		d->q_tail = NULL;
	}
	if (outbound_sched_suspended(&d->sched, now))
		outbound_dest_defer_all(ob, d);
	while (d->q_head != NULL && d->idle_head != NULL) {
		uint64_t wait = outbound_sched_txn_wait_ms(&d->sched, now);
		if (wait > 0) {
			d->wake_ms = now + wait;
			return;
		}
		outbound_session_give(d->idle_head, NULL);
	}
	while (d->q_count > d->opening
		&& outbound_sched_may_connect(&d->sched, now, ob->live, ob->conn_limit)) {
		if (outbound_session_open(ob, d) != 0)
			break;
	}
	/* At the shard's connection share, a destination with work and no session takes the place
	 * of one that only idles (connection caches must not starve new destinations). */
	if (d->q_head != NULL && d->sessions == 0 && ob->live >= ob->conn_limit
		&& now >= d->evicted_ms + OUTBOUND_EVICT_WAIT_MS
		&& outbound_sched_may_connect(&d->sched, now, 0, ob->conn_limit)
		&& outbound_session_evict(ob, d))
		d->evicted_ms = now;
	if (ob->ring->stopping) {
		while (d->idle_head != NULL)
			outbound_session_quit(d->idle_head);
	}
	d->wake_ms = 0;
}

static void
outbound_turn(void *ctx)
{
	struct outbound *ob = ctx;
	struct outbound_req *list = ob->dns_retry;
	ob->dns_retry = NULL;
	while (list != NULL) {
		struct outbound_req *next = list->priv.home_next;
		outbound_route_start(ob, list);
		list = next;
	}
	list = ob->send_retry;
	ob->send_retry = NULL;
	while (list != NULL) {
		struct outbound_req *next = list->priv.home_next;
		outbound_route_done(ob, list);
		list = next;
	}
	list = ob->done_retry;
	ob->done_retry = NULL;
	while (list != NULL) {
		struct outbound_req *next = list->priv.owner_next;
		ob->owned_reqs++;   /* counted down again by outbound_rcpt_done */
		outbound_rcpt_done(ob, list);
		list = next;
	}
	outbound_sessions_turn(ob);
	/* Destinations stay on the work list while they have queued work. */
	struct ob_dest *d = ob->work_head, *keep = NULL;
	ob->work_head = NULL;
	while (d != NULL) {
		struct ob_dest *next = d->work_next;
		d->on_work = false;
		outbound_dest_turn(ob, d);
		if (d->q_head != NULL && !d->on_work) {
			d->on_work = true;
			d->work_next = keep;
			keep = d;
		}
		if (d->q_head == NULL && d->sessions == 0)
			d->idle_since_ms = ob->ring->now_ms;
		d = next;
	}
	while (keep != NULL) {
		struct ob_dest *next = keep->work_next;
		keep->work_next = ob->work_head;
		ob->work_head = keep;
		keep = next;
	}
}

static uint64_t
outbound_next_ms(void *ctx)
{
	struct outbound *ob = ctx;
	if (ob->dns_retry != NULL || ob->send_retry != NULL || ob->done_retry != NULL
		|| ob->reconnect != NULL)
		return XSHARD_RETRY_MS;
	uint64_t best = UINT64_MAX, now = ob->ring->now_ms;
	for (struct ob_dest *d = ob->work_head; d != NULL; d = d->work_next) {
		uint64_t at = d->wake_ms;
		if (d->sched.suspended_until_ms > now)
			at = d->sched.suspended_until_ms;
		if (at == 0)
			continue;   /* waits for its sessions: their events wake the loop */
		uint64_t ms = at > now ? at - now : 0;
		if (ms < best)
			best = ms;
	}
	return best;
}

static bool
outbound_idle(void *ctx)
{
	const struct outbound *ob = ctx;
	return ob->home_count == 0 && ob->live == 0 && ob->owned_reqs == 0
		&& ob->done_retry == NULL;
}

static const struct ring_hooks outbound_hooks = {
	.name = "outbound",
	.turn = outbound_turn,
	.next_ms = outbound_next_ms,
	.idle = outbound_idle,
};

static void
outbound_client_config(struct outbound *ob)
{
	const struct config *cfg = ob->p.cfg;
	for (uint32_t level = 0; level < ARRAY_LEN(ob->ccfg); level++) {
		ob->ccfg[level] = (struct smtp_client_config){
			.helo_name = slice_make(cfg->myhostname, strlen(cfg->myhostname)),
			.starttls = level != CONFIG_TLS_NONE && ob->p.tls != NULL,
			.tls_required = level >= CONFIG_TLS_ENCRYPT,
		};
	}
	uint32_t max = cfg->dest_recipient_limit;
	const struct route_table *pt = &ob->p.route->policy;
	for (uint32_t i = 0; i < pt->count; i++) {
		if (pt->entries[i].limits.recipients > max)
			max = pt->entries[i].limits.recipients;
	}
	ob->rcpt_limit_max = max < OUTBOUND_TXN_RCPTS_MAX ? max : OUTBOUND_TXN_RCPTS_MAX;
}

static void
outbound_revive(struct outbound *ob)
{
	for (uint32_t b = 0; b < OUTBOUND_DEST_BUCKETS; b++) {
		for (struct ob_dest *d = ob->buckets[b]; d != NULL; d = d->hash_next)
			outbound_sched_revive(&d->sched);
	}
}

static void
outbound_xmsg_revive(void *ctx, const struct xmsg *m)
{
	(void)m;
	outbound_revive(ctx);
}

void
outbound_flush(struct outbound *ob)
{
	outbound_revive(ob);
	if (ob->p.xshard == NULL)
		return;
	/* The flushed mail may be for a destination another shard owns: it goes there through the
	 * same pair rings, behind this message, so the owner revives first. Each shard gets the
	 * flush from the client too: a full ring only makes this one late. */
	struct xmsg m = { .type = XMSG_REVIVE };
	for (uint32_t to = 0; to < ob->p.shard_count; to++) {
		if (to == ob->shard)
			continue;
		if (xshard_send(ob->p.xshard, to, &m) != 0)
			continue;   /* refused: that shard revives on its own flush command */
	}
}

int
outbound_init(struct ring *r, const struct outbound_params *p, struct outbound **out)
{
	struct outbound *ob = calloc(1, sizeof(*ob));
	if (ob == NULL)
		return -ENOMEM;
	ob->ring = r;
	ob->p = *p;
	ob->shard = r->shard;
	ob->homes = calloc(OUTBOUND_HOME_MAX, sizeof(*ob->homes));
	ob->buckets = calloc(OUTBOUND_DEST_BUCKETS, sizeof(*ob->buckets));
	if (ob->homes == NULL || ob->buckets == NULL) {
		free(ob->homes);
		free(ob->buckets);
		free(ob);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < OUTBOUND_HOME_MAX; i++)
		ob->homes[i].next_free = i + 1 < OUTBOUND_HOME_MAX ? i + 1 : UINT32_MAX;
	ob->home_free = 0;
	ob->conn_limit = outbound_sched_share(p->cfg->outbound_connection_limit, p->shard_count,
		ob->shard);
	outbound_client_config(ob);
	if (p->tls != NULL && tls_cache_new(OUTBOUND_TLS_CACHE_ENTRIES, &ob->tls_cache) != 0) {
		outbound_fini(ob);
		return -ENOMEM;
	}
	ob->op_dns = ring_op_register(r, outbound_dns_done, ob);
	outbound_sessions_init(ob);
	if (p->xshard != NULL) {
		xshard_handler_set(p->xshard, XMSG_DELIVER, outbound_xmsg_deliver, ob);
		xshard_handler_set(p->xshard, XMSG_DELIVERY_RESULT, outbound_xmsg_result, ob);
		xshard_handler_set(p->xshard, XMSG_REVIVE, outbound_xmsg_revive, ob);
	}
	ring_hooks_register(r, &outbound_hooks, ob);
	*out = ob;
	return 0;
}

void
outbound_fini(struct outbound *ob)
{
	outbound_sessions_fini(ob);
	for (uint32_t b = 0; b < OUTBOUND_DEST_BUCKETS; b++) {
		struct ob_dest *d = ob->buckets[b];
		while (d != NULL) {
			struct ob_dest *next = d->hash_next;
			free(d->key);
			free(d);
			d = next;
		}
	}
	free(ob->buckets);
	free(ob->homes);
	if (ob->tls_cache != NULL)
		tls_cache_free(ob->tls_cache);
	free(ob);
}

const struct outbound_stats *
outbound_stats(const struct outbound *ob)
{
	return &ob->stats;
}
