/* deliver/outbound_session.c - one outgoing SMTP connection: engine/conn + proto/smtp_client.
 *
 * A session belongs to one destination of the owner shard. It walks the destination's addresses
 * in order (the first preference rotated between sessions, addresses that failed lately last)
 * until one greets it and answers EHLO/HELO: a refused or timed-out connect, a 4xx or 5xx
 * greeting, a refused EHLO and HELO or a 421 before READY move it to the next address, at most
 * smtp_mx_address_limit of them (the route holds no more). Once READY it carries transactions
 * while its destination has work, at most the reuse limit, idles connection_idle_time, then
 * QUITs.
 *
 * The body (outbound_session_body_pump): the part of the body the queue manager already read
 * into its buffer goes out as slices of that buffer; the rest is read through the ring into the
 * session's buffer, OUTBOUND_BODY_BUF_SIZE at a time, straight from the home spool's segment
 * descriptor. With BDAT the slices are the stored bytes; with DATA proto/data_stuff cuts them
 * into slices around the doubled dots. The slices go to conn_write_ref, which borrows them until
 * the output drains: no body octet is copied in user space, and the read buffer is refilled
 * only after everything borrowed from it has been sent (with TLS the octets are copied where
 * they are sealed: engine/conn).
 *
 * STARTTLS (smtp_tls_security_level, Postfix's names, or the destination's tls= in
 * destination_policy_file): with `may` and up the client machine
 * asks for it when the server offers it; its STARTTLS action starts the connection's TLS stage
 * (what the server sent after its 220 is dropped), with the MX name for SNI, verification and
 * the shard's session cache. `encrypt` and `verify` defer when the server offers no STARTTLS
 * or refuses it (the machine's tls_required); `verify` fails the handshake on a certificate
 * that does not chain to smtp_tls_ca_file or does not name the MX host. A failed handshake
 * fails the address (the next one is tried) with the stage's reason. The TLS in use is logged
 * (event=smtp_tls) and goes into each recipient's result (the delivery line's tls=...). */
#include "deliver/outbound_int.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "proto/smtp_server.h"
#include "tls/tls_stage.h"

enum ob_session_state {
	OB_S_CONNECTING,      /* a connect is in flight */
	OB_S_SMTP,            /* connected: the client machine runs */
	OB_S_NEXT,            /* this address failed: the next one at the end of the turn */
	OB_S_DEAD,            /* closed; freed at the end of the turn */
};

struct ob_session {
	struct outbound *ob;
	struct ob_dest *d;
	uint32_t slot, gen, next_free;
	bool live;
	enum ob_session_state state;
	struct conn *conn;
	uint8_t order[OUTBOUND_ROUTE_ADDRS_MAX];   /* addresses, in the order they are tried */
	uint32_t order_count, tried;
	uint32_t addr;                             /* the one in use */
	bool ready_seen;                           /* reached READY on this connection */
	bool idle;                                 /* on d->idle_head */
	bool connected;                            /* this connection is up */
	uint32_t messages;                         /* transactions carried */
	uint64_t attempt_ms;                       /* the current address's connect began */
	uint64_t up_ms;                            /* the connection came up */
	uint32_t setup_ms;                         /* connect + greeting + EHLO, first txn only */
	struct ob_session *idle_next, *reconnect_next;
	struct ob_session *gidle_prev, *gidle_next;   /* the shard's list of idle sessions */
	bool on_reconnect;
	char relay[OUTBOUND_RELAY_MAX];
	char error[OUTBOUND_REPLY_MAX];            /* why the last address failed */
	char error_status[OUTBOUND_STATUS_MAX];
	bool error_perm;
	/* The transaction. */
	struct outbound_req *req;
	uint32_t txn_n;
	uint32_t *txn_idx;                         /* [rcpt_limit_max]: recipient in req */
	uint8_t *txn_done;                         /* [rcpt_limit_max] */
	struct smtp_client_rcpt *txn_rcpts;        /* [rcpt_limit_max] */
	struct smtp_client_txn txn;
	bool txn_open;
	uint64_t txn_start_ms;
	/* The body. */
	bool body_on;
	bool read_busy;
	uint64_t body_pos;                         /* octets given to the client */
	uint64_t file_pos;                         /* octets read from the spool past the head */
	uint32_t ext_cur;                          /* extent that holds body octet ext_start */
	uint64_t ext_start;
	uint8_t *buf;                              /* OUTBOUND_BODY_BUF_SIZE, at first use */
	uint32_t buf_len, buf_used;
	struct smtp_client smtp;                   /* last: large */
};

static const struct conn_session_ops ob_session_ops;
static void ob_session_read_done(void *ctx, const struct io_uring_cqe *cqe);
static void ob_session_actions(struct ob_session *s, const struct smtp_client_actions *acts);
static void ob_session_body_pump(struct ob_session *s);

static uint32_t
ob_timeout_class(struct outbound *ob, uint32_t ms)
{
	for (uint32_t i = 0; i < ob->timeout_count; i++) {
		if (ob->timeouts[i].ms == ms)
			return ob->timeouts[i].cls;
	}
	ASSERT(ob->timeout_count < OUTBOUND_TIMEOUTS_MAX);
	uint32_t cls = conn_pool_timeout_class(ob->p.conns, ms);
	ob->timeouts[ob->timeout_count++] = (struct ob_timeout){ .ms = ms, .cls = cls };
	return cls;
}

void
outbound_sessions_init(struct outbound *ob)
{
	ob->slot_max = ob->conn_limit;
	ob->slots = calloc(ob->slot_max, sizeof(*ob->slots));
	ASSERT(ob->slots != NULL);   /* start-up */
	ob->free_head = UINT32_MAX;
	ob->op_body = ring_op_register(ob->ring, ob_session_read_done, ob);
	/* Every timeout class the client can ask for, now: classes are taken at start-up only. */
	static const uint32_t rfc[] = { SMTP_CLIENT_TIMEOUT_GREETING_MS, SMTP_CLIENT_TIMEOUT_CMD_MS,
		SMTP_CLIENT_TIMEOUT_DATA_INIT_MS, SMTP_CLIENT_TIMEOUT_DATA_BLOCK_MS,
		SMTP_CLIENT_TIMEOUT_DATA_TERM_MS };
	for (uint32_t i = 0; i < ARRAY_LEN(rfc); i++)
		(void)ob_timeout_class(ob, rfc[i]);
	uint32_t idle = ob->p.cfg->connection_idle_ms > 0 ? ob->p.cfg->connection_idle_ms : 1u;
	ob->idle_class = ob_timeout_class(ob, idle);
}

void
outbound_sessions_fini(struct outbound *ob)
{
	for (uint32_t i = 0; i < ob->slot_count; i++) {
		struct ob_session *s = ob->slots[i];
		free(s->buf);
		free(s->txn_idx);
		free(s->txn_done);
		free(s->txn_rcpts);
		free(s);
	}
	free(ob->slots);
}

static struct ob_session *
ob_session_alloc(struct outbound *ob)
{
	struct ob_session *s;
	if (ob->free_head != UINT32_MAX) {
		s = ob->slots[ob->free_head];
		ob->free_head = s->next_free;
	} else {
		if (ob->slot_count >= ob->slot_max)
			return NULL;
		/* Not calloc: the smtp_client buffers stay untouched until used. */
		s = malloc(sizeof(*s));
		if (s == NULL)
			return NULL;
		memset(s, 0, offsetof(struct ob_session, smtp));
		uint32_t n = ob->rcpt_limit_max;
		s->txn_idx = malloc(n * sizeof(*s->txn_idx));
		s->txn_done = malloc(n);
		s->txn_rcpts = malloc(n * sizeof(*s->txn_rcpts));
		if (s->txn_idx == NULL || s->txn_done == NULL || s->txn_rcpts == NULL) {
			free(s->txn_idx);
			free(s->txn_done);
			free(s->txn_rcpts);
			free(s);
			return NULL;
		}
		s->slot = ob->slot_count;
		ob->slots[ob->slot_count++] = s;
	}
	s->ob = ob;
	s->live = true;
	return s;
}

/* ---- addresses ---- */

static socklen_t
ob_sockaddr(const struct outbound_addr *a, uint16_t port, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (a->family == AF_INET6) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons(port);
		memcpy(&s6->sin6_addr, a->bytes, 16);
		return sizeof(*s6);
	}
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	s4->sin_family = AF_INET;
	s4->sin_port = htons(port);
	memcpy(&s4->sin_addr, a->bytes, 4);
	return sizeof(*s4);
}

static void
ob_session_relay(struct ob_session *s)
{
	const struct outbound_route *rt = &s->d->route;
	uint32_t len;
	const char *name = outbound_addr_name(rt, s->addr, &len);
	char ip[INET6_ADDRSTRLEN];
	const struct outbound_addr *a = &rt->addrs[s->addr];
	if (inet_ntop(a->family, a->bytes, ip, sizeof(ip)) == NULL)
		snprintf(ip, sizeof(ip), "?");
	snprintf(s->relay, sizeof(s->relay), "%.*s[%s]:%u", (int)len, name, ip, rt->port);
}

/* The order of the addresses: the first preference rotated so that sessions spread over equal
 * MX hosts, then the rest in preference order; addresses that failed lately go last. */
static void
ob_session_order(struct ob_session *s)
{
	struct ob_dest *d = s->d;
	const struct outbound_route *rt = &d->route;
	uint32_t n = rt->addr_count, first = 0;
	while (first < n && rt->addrs[first].pref == rt->addrs[0].pref)
		first++;
	uint32_t rot = first > 0 ? d->rotate++ % first : 0;
	uint8_t all[OUTBOUND_ROUTE_ADDRS_MAX];
	for (uint32_t i = 0; i < n; i++)
		all[i] = (uint8_t)(i < first ? (i + rot) % first : i);
	s->order_count = 0;
	uint64_t now = s->ob->ring->now_ms;
	for (uint32_t pass = 0; pass < 2; pass++) {
		for (uint32_t i = 0; i < n; i++) {
			bool down = d->addr_down_until[all[i]] > now;
			if (down == (pass == 1))
				s->order[s->order_count++] = all[i];
		}
	}
	s->tried = 0;
}

static void
ob_session_error(struct ob_session *s, const char *status, bool perm, const char *fmt,
	const char *what)
{
	snprintf(s->error_status, sizeof(s->error_status), "%s", status);
	snprintf(s->error, sizeof(s->error), fmt, s->relay, what);   /* cut if need be */
	s->error_perm = perm;
	s->d->addr_down_until[s->addr] = s->ob->ring->now_ms + OUTBOUND_ADDR_DOWN_MS;
}

static void
ob_session_to_reconnect(struct ob_session *s)
{
	if (s->on_reconnect)
		return;
	s->on_reconnect = true;
	s->reconnect_next = s->ob->reconnect;
	s->ob->reconnect = s;
}

/* Connects to the next address; none left: the session is over (at the end of the turn). */
static void
ob_session_connect(struct ob_session *s)
{
	struct outbound *ob = s->ob;
	const struct outbound_route *rt = &s->d->route;
	while (s->tried < s->order_count && !ob->ring->stopping) {
		s->addr = s->order[s->tried++];
		ob_session_relay(s);
		struct sockaddr_storage ss;
		socklen_t len = ob_sockaddr(&rt->addrs[s->addr], rt->port, &ss);
		int err = 0;
		s->attempt_ms = ob->ring->now_ms;
		s->state = OB_S_CONNECTING;
		s->connected = s->ready_seen = false;
		s->conn = conn_connect(ob->p.conns, (struct sockaddr *)&ss, len, NULL, 0,
			ob->p.cfg->smtp_connect_timeout_ms, &ob_session_ops, s, &err);
		if (s->conn != NULL)
			return;
		ob_session_error(s, "4.4.1", false, "connect to %.200s: %.200s", strerror(-err));
	}
	s->state = OB_S_DEAD;
	ob_session_to_reconnect(s);
}

int
outbound_session_open(struct outbound *ob, struct ob_dest *d)
{
	if (d->route.addr_count == 0)
		return -ENOENT;
	struct ob_session *s = ob_session_alloc(ob);
	if (s == NULL)
		return -ENOMEM;
	s->gen++;
	s->d = d;
	s->messages = 0;
	s->idle = s->on_reconnect = false;
	s->req = NULL;
	s->txn_open = s->body_on = s->read_busy = false;
	s->error[0] = '\0';
	snprintf(s->error_status, sizeof(s->error_status), "4.4.1");
	s->error_perm = false;
	outbound_sched_conn_opened(&d->sched);
	d->sessions++;
	d->opening++;
	ob->live++;
	ob_session_order(s);
	ob_session_connect(s);
	return 0;
}

/* ---- the end of a connection and of a session ---- */

static void
ob_session_idle_remove(struct ob_session *s)
{
	if (!s->idle)
		return;
	struct ob_session **p = &s->d->idle_head;
	while (*p != s)
		p = &(*p)->idle_next;
	*p = s->idle_next;
	s->idle = false;
	struct outbound *ob = s->ob;
	if (s->gidle_prev != NULL)
		s->gidle_prev->gidle_next = s->gidle_next;
	else
		ob->idle_oldest = s->gidle_next;
	if (s->gidle_next != NULL)
		s->gidle_next->gidle_prev = s->gidle_prev;
	else
		ob->idle_newest = s->gidle_prev;
	s->gidle_prev = s->gidle_next = NULL;
}

static void
ob_session_log_close(struct ob_session *s)
{
	char buf[LOG_LINE_MAX];
	struct log_line l;
	uint64_t now = s->ob->ring->now_ms;
	log_line_begin(&l, buf, sizeof(buf), s->ob->ring->now_real_ms, "smtp_close");
	log_line_u64(&l, "shard", s->ob->shard);
	log_line_str(&l, "relay", s->relay);
	log_line_u64(&l, "messages", s->messages);
	log_line_seconds(&l, "duration", now - s->up_ms);
	log_write(buf, log_line_end(&l));
}

static void
ob_session_log_open(struct ob_session *s)
{
	char buf[LOG_LINE_MAX];
	struct log_line l;
	log_line_begin(&l, buf, sizeof(buf), s->ob->ring->now_real_ms, "smtp_connect");
	log_line_u64(&l, "shard", s->ob->shard);
	log_line_str(&l, "relay", s->relay);
	log_line_slice(&l, "dest", slice_make(s->d->key, s->d->key_len));
	log_write(buf, log_line_end(&l));
}

/* The session is over: it gives its destination slot back. If it never got READY, its
 * destination hears of the failure (the transaction it was for is deferred, feedback). */
static void
ob_session_free(struct ob_session *s)
{
	struct outbound *ob = s->ob;
	struct ob_dest *d = s->d;
	ob_session_idle_remove(s);
	if (d->opening > 0 && !s->ready_seen && s->messages == 0) {
		d->opening--;
		ob->stats.connect_failures++;
		outbound_dest_fail_head(ob, d, s->error_status, s->error[0] ? s->error
			: "no address answered", s->relay, s->error_perm);
	}
	outbound_sched_conn_closed(&d->sched);
	ASSERT(d->sessions > 0);
	d->sessions--;
	ASSERT(ob->live > 0);
	ob->live--;
	s->live = false;
	s->gen++;
	s->d = NULL;
	s->next_free = ob->free_head;
	ob->free_head = s->slot;
	outbound_dest_kick(ob, d);
}

void
outbound_sessions_turn(struct outbound *ob)
{
	struct ob_session *s = ob->reconnect;
	ob->reconnect = NULL;
	while (s != NULL) {
		struct ob_session *next = s->reconnect_next;
		s->on_reconnect = false;
		if (s->state == OB_S_NEXT)
			ob_session_connect(s);
		if (s->state == OB_S_DEAD && !s->on_reconnect)
			ob_session_free(s);   /* (queued again by connect: freed on the next pass) */
		s = next;
	}
}

/* ---- results ---- */

/* "c.s.d" of an RFC 3463 code (each part at most 3 digits, as the reply parser keeps them). */
static void
ob_status_text(char out[OUTBOUND_STATUS_MAX], struct smtp_reply_enhanced e)
{
	snprintf(out, OUTBOUND_STATUS_MAX, "%u.%u.%u", e.cls % 10u, e.subject % 1000u,
		e.detail % 1000u);
}

static void
ob_result_fill(struct ob_session *s, uint32_t k, const struct smtp_client_result *r)
{
	ASSERT(k < s->txn_n);
	if (s->txn_done[k])
		return;
	s->txn_done[k] = 1;
	struct outbound_req *req = s->req;
	struct outbound_result *res = &req->rcpts[s->txn_idx[k]].result;
	char status[OUTBOUND_STATUS_MAX];
	ob_status_text(status, r->enhanced);
	char reply[OUTBOUND_REPLY_MAX];
	if (r->local)
		snprintf(reply, sizeof(reply), "%.*s", (int)r->text.len, (const char *)r->text.ptr);
	else
		snprintf(reply, sizeof(reply), "%u %s %.*s", r->code, status, (int)r->text.len,
			(const char *)r->text.ptr);
	enum outbound_outcome o = r->outcome == SMTP_CLIENT_DELIVERED ? OUTBOUND_DELIVERED
		: r->outcome == SMTP_CLIENT_BOUNCED ? OUTBOUND_BOUNCED : OUTBOUND_DEFERRED;
	outbound_result_set(res, o, status, reply, s->relay, !r->local);
	res->tls[0] = '\0';
	if (s->conn != NULL && conn_tls_ready(s->conn))
		(void)tls_stage_describe(conn_tls(s->conn), res->tls, sizeof(res->tls));
	uint64_t now = s->ob->ring->now_ms;
	res->dns_ms = req->priv.dns_ms;
	res->connect_ms = s->messages == 1 ? s->setup_ms : 0;
	res->xmit_ms = (uint32_t)(now - s->txn_start_ms);
	res->dsn_passed = o == OUTBOUND_DELIVERED
		&& (smtp_client_extensions(&s->smtp) & SMTP_CLIENT_EXT_DSN) != 0;
	if (o == OUTBOUND_DELIVERED)
		s->ob->stats.delivered++;
	else if (o == OUTBOUND_BOUNCED)
		s->ob->stats.bounced++;
	else
		s->ob->stats.deferred++;
	ASSERT(req->priv.unresolved > 0);
	if (--req->priv.unresolved == 0)
		outbound_rcpt_done(s->ob, req);
}

/* The transaction ended (its TXN or CONNECTION result). */
static void
ob_txn_end(struct ob_session *s, const struct smtp_client_result *r)
{
	for (uint32_t k = 0; k < s->txn_n; k++)
		ob_result_fill(s, k, r);
	s->txn_open = false;
	s->body_on = false;
	s->req = NULL;
}

static void
ob_session_result(struct ob_session *s, const struct smtp_client_result *r)
{
	struct ob_dest *d = s->d;
	if (r->scope == SMTP_CLIENT_SCOPE_RCPT) {
		if (s->txn_open && r->rcpt < s->txn_n)
			ob_result_fill(s, r->rcpt, r);
		return;
	}
	if (r->scope == SMTP_CLIENT_SCOPE_TXN) {
		if (r->outcome == SMTP_CLIENT_DELIVERED)
			outbound_sched_success(&d->sched);
		if (s->txn_open)
			ob_txn_end(s, r);
		return;
	}
	/* SCOPE_CONNECTION: before READY this address failed (the next one is tried); after it, the
	 * open transaction's recipients are deferred, and a 421 or a timeout is negative feedback. */
	if (!s->ready_seen) {
		char what[OUTBOUND_REPLY_MAX / 2];
		char st0[OUTBOUND_STATUS_MAX];
		ob_status_text(st0, r->enhanced);
		int tl = r->text.len > sizeof(what) / 2 ? (int)sizeof(what) / 2 : (int)r->text.len;
		if (r->local)
			snprintf(what, sizeof(what), "%.*s", tl, (const char *)r->text.ptr);
		else
			snprintf(what, sizeof(what), "%u %s %.*s (in reply to %s)", r->code % 1000u,
				st0, tl, (const char *)r->text.ptr, smtp_client_stage_name(r->stage));
		char st[OUTBOUND_STATUS_MAX];
		ob_status_text(st, r->enhanced);
		ob_session_error(s, st, r->outcome == SMTP_CLIENT_BOUNCED, "host %.200s said: %.250s", what);
		return;
	}
	if (r->code == 421) {
		d->addr_down_until[s->addr] = s->ob->ring->now_ms + OUTBOUND_ADDR_DOWN_MS;
		uint64_t retry = (uint64_t)s->ob->p.cfg->minimal_backoff_s * 1000u;
		if (outbound_sched_failure(&d->sched, s->ob->ring->now_ms, retry))
			s->ob->stats.suspensions++;
	}
	if (s->txn_open)
		ob_txn_end(s, r);
}

/* ---- transactions ---- */

static void
ob_session_set_idle(struct ob_session *s)
{
	if (s->idle)
		return;
	s->idle = true;
	s->idle_next = s->d->idle_head;
	s->d->idle_head = s;
	struct outbound *ob = s->ob;
	s->gidle_next = NULL;
	s->gidle_prev = ob->idle_newest;
	if (ob->idle_newest != NULL)
		ob->idle_newest->gidle_next = s;
	else
		ob->idle_oldest = s;
	ob->idle_newest = s;
	conn_idle(s->conn, s->ob->idle_class);
}

void
outbound_session_quit(struct ob_session *s)
{
	ob_session_idle_remove(s);
	struct smtp_client_actions acts = { .count = 0 };
	smtp_client_quit(&s->smtp, &acts);
	ob_session_actions(s, &acts);
}

bool
outbound_session_evict(struct outbound *ob, const struct ob_dest *d)
{
	struct ob_session *s = ob->idle_oldest;
	while (s != NULL && s->d == d)
		s = s->gidle_next;
	if (s == NULL)
		return false;
	outbound_session_quit(s);   /* its slot is free once the QUIT is answered */
	return true;
}

/* READY: the next transaction, or idle, or QUIT at the reuse limit. */
static void
ob_session_ready(struct ob_session *s)
{
	struct outbound *ob = s->ob;
	struct ob_dest *d = s->d;
	if (!s->ready_seen) {
		s->ready_seen = true;
		s->setup_ms = (uint32_t)(ob->ring->now_ms - s->attempt_ms);
		ASSERT(d->opening > 0);
		d->opening--;
	}
	if (ob->ring->stopping || s->messages >= d->sched.lim.reuse) {
		outbound_session_quit(s);
		return;
	}
	if (d->q_head != NULL && outbound_sched_txn_wait_ms(&d->sched, ob->ring->now_ms) == 0) {
		outbound_session_give(s, NULL);
		return;
	}
	ob_session_set_idle(s);
	if (d->q_head != NULL)
		outbound_dest_kick(ob, d);   /* the rate says later: the destination's turn waits */
}

void
outbound_session_give(struct ob_session *s, struct outbound_req *unused)
{
	(void)unused;
	struct outbound *ob = s->ob;
	struct ob_dest *d = s->d;
	ob_session_idle_remove(s);
	struct outbound_req *req = outbound_dest_take(ob, d);
	ASSERT(req != NULL);
	uint32_t from = req->priv.next_rcpt;
	uint32_t n = req->rcpt_count - from;
	if (n > d->sched.lim.recipients)
		n = d->sched.lim.recipients;
	ASSERT(n > 0);
	ASSERT(n <= ob->rcpt_limit_max);
	req->priv.next_rcpt = from + n;
	for (uint32_t k = 0; k < n; k++) {
		const struct outbound_rcpt *r = &req->rcpts[from + k];
		s->txn_rcpts[k] = (struct smtp_client_rcpt){ .path = r->path, .orcpt = r->orcpt,
			.notify = r->notify };
		s->txn_idx[k] = from + k;
		s->txn_done[k] = 0;
	}
	s->req = req;
	s->txn_n = n;
	s->txn = (struct smtp_client_txn){
		.mail_from = req->mail_from, .rcpts = s->txn_rcpts, .rcpt_count = n,
		.body_size = req->body.len, .needs_8bitmime = req->body_type == SMTP_BODY_8BITMIME,
		.needs_smtputf8 = req->smtputf8, .use_bdat = true,
		.dsn_ret = (enum smtp_dsn_ret)req->dsn_ret, .dsn_envid = req->dsn_envid,
	};
	s->txn_open = true;
	s->txn_start_ms = ob->ring->now_ms;
	s->body_on = false;
	s->body_pos = s->file_pos = s->ext_start = 0;
	s->ext_cur = 0;
	s->buf_len = s->buf_used = 0;
	s->messages++;
	ob->stats.transactions++;
	outbound_sched_txn_started(&d->sched, ob->ring->now_ms);
	struct smtp_client_actions acts = { .count = 0 };
	smtp_client_transaction(&s->smtp, &s->txn, &acts);
	ob_session_actions(s, &acts);
	conn_kick(s->conn);   /* replies that came with the READY are fed again */
}

/* ---- the client machine's actions ---- */

static void
ob_session_deadline(struct ob_session *s)
{
	if (s->conn == NULL || s->idle)
		return;
	uint32_t ms = smtp_client_timeout_ms(&s->smtp);
	conn_idle(s->conn, ms == 0 ? CONN_TIMEOUT_NONE : ob_timeout_class(s->ob, ms));
}

/* The server said 220 to STARTTLS: TLS starts behind it. */
static void
ob_session_starttls(struct ob_session *s)
{
	struct outbound *ob = s->ob;
	uint32_t len;
	const char *name = outbound_addr_name(&s->d->route, s->addr, &len);
	struct tls_client_params p = { .level = s->d->tls_level,
		.host = slice_make(name, len), .cache = ob->tls_cache };
	int rc = conn_tls_client(s->conn, ob->p.tls, &p,
		ob_timeout_class(ob, SMTP_CLIENT_TIMEOUT_CMD_MS));
	if (rc < 0) {
		struct smtp_client_actions acts = { .count = 0 };
		smtp_client_tls_done(&s->smtp, rc, &acts);
		ob_session_actions(s, &acts);
	}
}

static void
ob_session_actions(struct ob_session *s, const struct smtp_client_actions *acts)
{
	for (uint32_t i = 0; i < acts->count; i++) {
		const struct smtp_client_action *a = &acts->items[i];
		switch (a->type) {
		case SMTP_CLIENT_ACTION_SEND:
			if (conn_write(s->conn, a->data) != 0)
				conn_abort(s->conn);   /* `closed` resolves what is open */
			break;
		case SMTP_CLIENT_ACTION_BODY:
			s->body_on = true;
			break;
		case SMTP_CLIENT_ACTION_RESULT:
			ob_session_result(s, &a->result);
			break;
		case SMTP_CLIENT_ACTION_READY:
			ob_session_ready(s);
			break;
		case SMTP_CLIENT_ACTION_STARTTLS:
			ob_session_starttls(s);
			break;
		case SMTP_CLIENT_ACTION_CLOSE:
			conn_close(s->conn);
			break;
		}
	}
	if (s->body_on)
		ob_session_body_pump(s);
	ob_session_deadline(s);
}

static size_t
ob_session_input(void *ctx, struct conn *c, struct slice in)
{
	struct ob_session *s = ctx;
	ASSERT(s->conn == c);
	size_t used = 0;
	for (uint32_t round = 0; round < OUTBOUND_FEED_ROUNDS_MAX && used < in.len; round++) {
		if (smtp_client_closed(&s->smtp) || s->body_on)
			break;   /* while the body goes, replies wait (a premature one is read after) */
		struct smtp_client_actions acts = { .count = 0 };
		size_t n = smtp_client_feed(&s->smtp, slice_skip(in, used), &acts);
		used += n;
		ob_session_actions(s, &acts);
		if (n == 0 && acts.count == 0)
			break;
	}
	return used;
}

static void
ob_session_connected(void *ctx, struct conn *c, int res)
{
	struct ob_session *s = ctx;
	if (res < 0) {
		ob_session_error(s, "4.4.1", false, "connect to %.200s: %.200s", strerror(-res));
		return;   /* `closed` follows */
	}
	s->state = OB_S_SMTP;
	s->connected = true;
	s->up_ms = s->ob->ring->now_ms;
	s->ob->stats.connections++;
	ob_session_log_open(s);
	smtp_client_init(&s->smtp, &s->ob->ccfg[s->d->tls_level]);
	ob_session_deadline(s);
	(void)c;
}

static void
ob_session_drained(void *ctx, struct conn *c)
{
	struct ob_session *s = ctx;
	(void)c;
	if (s->body_on)
		ob_session_body_pump(s);
	ob_session_deadline(s);
}

static void
ob_session_timeout(void *ctx, struct conn *c)
{
	struct ob_session *s = ctx;
	(void)c;
	struct smtp_client_actions acts = { .count = 0 };
	if (s->idle) {
		outbound_session_quit(s);
		return;
	}
	smtp_client_timeout(&s->smtp, &acts);
	ob_session_actions(s, &acts);
}

static void
ob_session_closed(void *ctx, struct conn *c, int res)
{
	struct ob_session *s = ctx;
	(void)c;
	s->conn = NULL;
	ob_session_idle_remove(s);
	if (s->connected && !smtp_client_closed(&s->smtp)) {
		struct smtp_client_actions acts = { .count = 0 };
		smtp_client_lost(&s->smtp, res, &acts);
		for (uint32_t i = 0; i < acts.count; i++) {
			if (acts.items[i].type == SMTP_CLIENT_ACTION_RESULT)
				ob_session_result(s, &acts.items[i].result);
		}
	}
	if (s->txn_open) {   /* resolved by now; a last guard for "exactly once" */
		struct smtp_client_result r = { .scope = SMTP_CLIENT_SCOPE_CONNECTION,
			.outcome = SMTP_CLIENT_DEFERRED, .code = 421, .local = true,
			.enhanced = { .cls = 4, .subject = 4, .detail = 2 },
			.text = SLICE_LIT("connection lost") };
		ob_txn_end(s, &r);
	}
	if (s->connected)
		ob_session_log_close(s);
	bool next = !s->ready_seen && s->tried < s->order_count && !s->ob->ring->stopping
		&& s->read_busy == false;
	s->state = next ? OB_S_NEXT : OB_S_DEAD;
	if (s->read_busy)
		return;   /* the read's completion ends it */
	ob_session_to_reconnect(s);
}

static void
ob_session_log_tls(struct ob_session *s, struct conn *c, int res)
{
	char buf[LOG_LINE_MAX];
	struct log_line l;
	log_line_begin(&l, buf, sizeof(buf), s->ob->ring->now_real_ms,
		res == 0 ? "smtp_tls" : "smtp_tls_failed");
	log_line_u64(&l, "shard", s->ob->shard);
	log_line_str(&l, "relay", s->relay);
	if (res == 0) {
		char what[TLS_STAGE_DESCRIBE_MAX];
		size_t len = tls_stage_describe(conn_tls(c), what, sizeof(what));
		log_line_str(&l, "verified", tls_stage_verified(conn_tls(c)) ? "yes" : "no");
		log_line_str(&l, "resumed", tls_stage_resumed(conn_tls(c)) ? "yes" : "no");
		log_line_quoted(&l, "detail", slice_make(what, len));
		s->ob->stats.tls_handshakes++;
	} else {
		const char *why = conn_tls_reason(c);
		log_line_quoted(&l, "reason", slice_make(why, strlen(why)));
		s->ob->stats.tls_failures++;
	}
	log_write(buf, log_line_end(&l));
}

/* The handshake after STARTTLS is done (the machine sends EHLO again) or failed (this address
 * failed, with the stage's reason; the connection closes by itself). */
static void
ob_session_tls_done(void *ctx, struct conn *c, int res)
{
	struct ob_session *s = ctx;
	ob_session_log_tls(s, c, res);
	struct smtp_client_actions acts = { .count = 0 };
	smtp_client_tls_done(&s->smtp, res, &acts);
	ob_session_actions(s, &acts);
	if (res < 0)
		ob_session_error(s, "4.7.5", false, "TLS with %.200s failed: %.200s",
			conn_tls_reason(c));
}

static const struct conn_session_ops ob_session_ops = {
	.input = ob_session_input,
	.connected = ob_session_connected,
	.drained = ob_session_drained,
	.timeout = ob_session_timeout,
	.closed = ob_session_closed,
	.tls_done = ob_session_tls_done,
};

/* ---- the body ---- */

/* The spool could not give the rest of the body: the open recipients are deferred and the
 * connection aborted, so that the receiver never takes a cut message for a whole one. */
static void
ob_session_body_failed(struct ob_session *s, int err)
{
	char text[128];
	snprintf(text, sizeof(text), "spool read: %s", strerror(err < 0 ? -err : EIO));
	struct smtp_client_result r = { .scope = SMTP_CLIENT_SCOPE_CONNECTION,
		.outcome = SMTP_CLIENT_DEFERRED, .code = 451, .local = true,
		.enhanced = { .cls = 4, .subject = 3, .detail = 0 },
		.text = slice_make(text, strlen(text)) };
	if (s->txn_open)
		ob_txn_end(s, &r);
	if (s->conn != NULL)
		conn_abort(s->conn);
}

static void
ob_session_read_start(struct ob_session *s)
{
	const struct outbound_body *b = &s->req->body;
	if (s->buf == NULL) {
		s->buf = malloc(OUTBOUND_BODY_BUF_SIZE);
		if (s->buf == NULL) {
			ob_session_body_failed(s, -ENOMEM);
			return;
		}
	}
	uint64_t pos = b->head.len + s->file_pos;   /* the body octet to read next */
	while (s->ext_cur < b->ext_count && pos >= s->ext_start + b->ext[s->ext_cur].len) {
		s->ext_start += b->ext[s->ext_cur].len;
		s->ext_cur++;
	}
	if (s->ext_cur == b->ext_count) {
		ob_session_body_failed(s, -EIO);   /* the extents are shorter than the body */
		return;
	}
	const struct spool_extent *x = &b->ext[s->ext_cur];
	uint64_t rest = x->len - (pos - s->ext_start);
	uint32_t len = rest < OUTBOUND_BODY_BUF_SIZE ? (uint32_t)rest : OUTBOUND_BODY_BUF_SIZE;
	struct io_uring_sqe *sqe = ring_sqe(s->ob->ring);
	io_uring_prep_read(sqe, x->fd, s->buf, len, x->off + (pos - s->ext_start));
	io_uring_sqe_set_data64(sqe, ring_ud(s->ob->op_body, s->slot, s->gen));
	s->read_busy = true;
}

static void
ob_session_read_done(void *ctx, const struct io_uring_cqe *cqe)
{
	struct outbound *ob = ctx;
	uint32_t slot = ring_ud_slot(cqe->user_data);
	ASSERT(slot < ob->slot_count);
	struct ob_session *s = ob->slots[slot];
	ASSERT(s->gen == ring_ud_gen(cqe->user_data));   /* a session waits for its read */
	s->read_busy = false;
	if (s->conn == NULL) {   /* closed meanwhile */
		ob_session_to_reconnect(s);
		return;
	}
	if (cqe->res <= 0) {
		ob_session_body_failed(s, cqe->res < 0 ? cqe->res : -EIO);
		return;
	}
	s->buf_len = (uint32_t)cqe->res;
	s->buf_used = 0;
	s->file_pos += (uint64_t)cqe->res;
	ob_session_body_pump(s);
	ob_session_deadline(s);
}

/* Gives the client the next pieces of the body while the output has room. */
static void
ob_session_body_pump(struct ob_session *s)
{
	for (uint32_t round = 0; round < OUTBOUND_BODY_ROUNDS_MAX; round++) {
		if (!s->body_on || s->conn == NULL || s->read_busy
			|| conn_unsent(s->conn) > CONN_OUTPUT_SOFT_MAX
			|| conn_write_ref_room(s->conn) < SMTP_CLIENT_ACTIONS_MAX)
			return;   /* `drained` or the read's completion comes back here */
		const struct outbound_body *b = &s->req->body;
		struct slice piece;
		bool last, from_buf = false;
		if (s->body_pos < b->head.len || b->len == b->head.len) {
			piece = slice_skip(b->head, s->body_pos);
			last = b->head.len == b->len;
		} else if (s->buf_used < s->buf_len) {
			piece = slice_make(s->buf + s->buf_used, s->buf_len - s->buf_used);
			last = b->head.len + s->file_pos == b->len;
			from_buf = true;
		} else {
			if (conn_unsent(s->conn) > 0)
				return;   /* the buffer is still lent to the output */
			ob_session_read_start(s);
			return;
		}
		struct smtp_client_actions acts = { .count = 0 };
		size_t n = smtp_client_body(&s->smtp, piece, last, &acts);
		s->body_pos += n;
		if (from_buf)
			s->buf_used += (uint32_t)n;
		for (uint32_t i = 0; i < acts.count; i++) {
			if (conn_write_ref(s->conn, acts.items[i].data) != 0) {
				conn_abort(s->conn);
				return;
			}
			s->ob->stats.body_bytes += acts.items[i].data.len;
		}
		if (s->smtp.state != SMTP_CLIENT_STATE_BODY) {
			s->body_on = false;   /* all of it is out: the reply is awaited */
			conn_kick(s->conn);   /* a reply that came early waits in the pending input */
			return;
		}
	}
}
