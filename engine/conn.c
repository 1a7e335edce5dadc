/* engine/conn.c - connection I/O around the smtp_server state machine; see conn.h. */
#include "engine/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "engine/shard.h"
#include "queue/msg.h"
#include "base/queue_id.h"
#include "queue/record.h"
#include "queue/spool.h"
#include "conf/config.h"
#include "base/log.h"
#include "conf/policy.h"
#include "proto/received.h"

#define CONN_PEER_LEN 64u

struct conn_out {
	uint8_t *data;
	uint32_t len;
	uint32_t cap;
};

struct conn {
	struct smtp_server smtp;             /* embedded: its arena is touched only when used */
	struct shard *sh;
	uint32_t slot;
	uint32_t gen;
	uint32_t next_free;
	int fd;
	bool live;
	bool recv_armed;                     /* a multishot recv is outstanding */
	bool recv_stopped;                   /* back-pressure: do not re-arm until drained */
	bool rearm_queued;
	bool send_busy;
	bool closing;                        /* close once nothing is in flight */
	bool close_after_send;
	struct conn *rearm_next;
	struct timer_node idle;
	struct timer_list *idle_list;
	uint8_t *pending;                    /* input the machine could not take yet */
	uint32_t pending_len;
	uint32_t pending_cap;
	struct conn_out out[2];              /* out[active] collects, the other one is in flight */
	uint32_t out_active;
	uint32_t send_off;
	struct msg *msg;                     /* the body being received */
	bool relay_allowed;
	uint64_t connected_ms;
	uint32_t messages;
	char peer[CONN_PEER_LEN];            /* printable client address, no port */
	struct sockaddr_storage peer_sa;
};

static void conn_feed_pending(struct conn *c);
static void conn_begin_close(struct conn *c);

static struct conn *
conn_lookup(struct shard *sh, uint32_t slot, uint32_t gen)
{
	if (slot >= sh->conn_slots)
		return NULL;
	struct conn *c = sh->conns[slot];
	return (c != NULL && c->live && c->gen == gen) ? c : NULL;
}

enum smtp_rcpt_verdict
conn_rcpt_check(void *ctx, struct slice local_part, struct slice domain, bool quoted)
{
	struct conn *c = ctx;
	return policy_rcpt(c->sh->eng->policy, c->relay_allowed, local_part, domain, quoted);
}

static struct conn *
conn_slot_alloc(struct shard *sh)
{
	if (sh->conn_free != UINT32_MAX) {
		struct conn *c = sh->conns[sh->conn_free];
		sh->conn_free = c->next_free;
		return c;
	}
	if (sh->conn_slots >= sh->eng->cfg->max_connections)
		return NULL;
	/* Not calloc: the smtp_server arena must stay untouched (no resident cost) until used. */
	struct conn *c = malloc(sizeof(*c));
	if (c == NULL)
		return NULL;
	memset(c, 0, offsetof(struct conn, smtp));
	memset(&c->sh, 0, sizeof(*c) - offsetof(struct conn, sh));
	c->slot = sh->conn_slots;
	sh->conns[sh->conn_slots++] = c;
	return c;
}

static void
conn_slot_free(struct conn *c)
{
	struct shard *sh = c->sh;
	c->live = false;
	c->gen++;
	c->next_free = sh->conn_free;
	sh->conn_free = c->slot;
	sh->conn_live--;
}

static void
conn_idle_touch(struct conn *c)
{
	struct shard *sh = c->sh;
	if (c->idle_list != NULL)
		timer_node_remove(c->idle_list, &c->idle);
	c->idle_list = NULL;
	if (c->closing || smtp_server_closed(&c->smtp))
		return;
	/* Waiting for our own disk is not the client's idle time. */
	if (c->smtp.state == SMTP_STATE_COMMIT_WAIT)
		return;
	c->idle_list = smtp_server_in_body(&c->smtp) ? &sh->idle_data : &sh->idle_cmd;
	timer_list_touch(c->idle_list, &c->idle, sh->now_ms);
}

static void
conn_arm_recv(struct conn *c)
{
	struct io_uring_sqe *sqe = shard_sqe(c->sh);
	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = SHARD_BUF_GROUP;
	io_uring_sqe_set_data64(sqe, shard_user_data(SHARD_OP_RECV, c->slot, c->gen));
	c->recv_armed = true;
}

static void
conn_queue_rearm(struct conn *c)
{
	if (c->rearm_queued)
		return;
	c->rearm_queued = true;
	c->rearm_next = c->sh->rearm_head;
	c->sh->rearm_head = c;
}

static void
conn_cancel_recv(struct conn *c)
{
	struct io_uring_sqe *sqe = shard_sqe(c->sh);
	io_uring_prep_cancel64(sqe, shard_user_data(SHARD_OP_RECV, c->slot, c->gen), 0);
	io_uring_sqe_set_data64(sqe, shard_user_data(SHARD_OP_CANCEL, c->slot, c->gen));
}

static int
conn_out_append(struct conn_out *o, struct slice data)
{
	if (data.len > o->cap - o->len) {
		uint32_t cap = o->cap ? o->cap : 1024;
		while (cap - o->len < data.len)
			cap *= 2;
		uint8_t *grown = realloc(o->data, cap);
		if (grown == NULL)
			return -ENOMEM;
		o->data = grown;
		o->cap = cap;
	}
	memcpy(o->data + o->len, data.ptr, data.len);   /* copy: replies outlive the machine's buffer */
	o->len += (uint32_t)data.len;
	return 0;
}

static uint32_t
conn_out_unsent(const struct conn *c)
{
	return c->out[0].len + c->out[1].len;
}

static void
conn_send_next(struct conn *c)
{
	if (c->send_busy)
		return;
	struct conn_out *o = &c->out[c->out_active];
	if (o->len == 0) {
		if (c->close_after_send)
			conn_begin_close(c);
		return;
	}
	c->out_active ^= 1u;   /* new replies collect in the other buffer while this one flies */
	c->send_off = 0;
	c->send_busy = true;
	struct io_uring_sqe *sqe = shard_sqe(c->sh);
	io_uring_prep_send(sqe, c->fd, o->data, o->len, MSG_NOSIGNAL);
	io_uring_sqe_set_data64(sqe, shard_user_data(SHARD_OP_SEND, c->slot, c->gen));
}

static void
conn_msg_drop(struct conn *c)
{
	if (c->msg != NULL)
		msg_unref(c->msg);
	c->msg = NULL;
}

/* BODY_BEGIN: a new message with its queue id and the Received: header (RFC 5321 4.4). */
static void
conn_msg_begin(struct conn *c)
{
	struct shard *sh = c->sh;
	const struct config *cfg = sh->eng->cfg;
	conn_msg_drop(c);
	uint64_t qid = spool_next_qid(sh->spool);
	c->msg = msg_new(qid, sh->now_real_ms, cfg->max_message_size + RECEIVED_LEN_MAX);
	if (c->msg == NULL)
		return;   /* the commit fails with 451 below */
	const struct smtp_envelope *env = smtp_server_envelope(&c->smtp);
	struct slice only_rcpt = env->rcpt_count == 1 ? smtp_server_rcpt(&c->smtp, 0).path
		: SLICE_LIT("");
	uint8_t hdr[RECEIVED_LEN_MAX];
	size_t len = received_format(hdr, sizeof(hdr), &(struct received_info){
		.helo = env->helo,
		.client_addr = slice_make(c->peer, strlen(c->peer)),
		.myhostname = slice_make(cfg->myhostname, strlen(cfg->myhostname)),
		.protocol = received_protocol(env->esmtp, false, false),
		.queue_id = qid,
		.for_rcpt = only_rcpt,
		.now_ms = sh->now_real_ms,
	});
	if (msg_append(c->msg, slice_make(hdr, len)) != 0)
		conn_msg_drop(c);
}

static void
conn_msg_append(struct conn *c, struct slice data)
{
	if (c->msg != NULL && msg_append(c->msg, data) != 0)
		conn_msg_drop(c);   /* out of memory: the commit answers 451 */
	c->sh->stats.body_copied += data.len;
}

/* The record head: header + envelope, CRC over both and the body (queue/record.h). */
static int
conn_encode_head(struct conn *c, struct msg *m)
{
	const struct smtp_envelope *env = smtp_server_envelope(&c->smtp);
	struct record_rcpt *rcpts = c->sh->rcpt_scratch;
	ASSERT(env->rcpt_count <= SMTP_RCPT_COUNT_MAX);
	for (uint32_t i = 0; i < env->rcpt_count; i++) {
		struct smtp_rcpt r = smtp_server_rcpt(&c->smtp, i);
		rcpts[i] = (struct record_rcpt){ .path = r.path, .local_part = r.local_part,
			.domain = r.domain, .orcpt = r.orcpt, .notify = r.notify };
	}
	struct record_envelope renv = {
		.arrival_ms = m->arrival_ms,
		.client_addr = slice_make(c->peer, strlen(c->peer)),
		.helo = env->helo,
		.mail_from = env->mail_from,
		.declared_size = env->declared_size,
		.body_type = (uint8_t)env->body,
		.smtputf8 = env->smtputf8,
		.dsn_ret = (uint8_t)env->dsn_ret,
		.dsn_envid = env->dsn_envid,
		.rcpt_count = env->rcpt_count,
		.rcpts = rcpts,
	};
	size_t env_len = record_envelope_size(&renv);
	m->head = malloc(RECORD_HEADER_SIZE + env_len);
	if (m->head == NULL)
		return -ENOMEM;
	record_envelope_encode(&renv, m->head + RECORD_HEADER_SIZE, env_len);
	m->head_len = (uint32_t)(RECORD_HEADER_SIZE + env_len);
	m->rcpt_count = env->rcpt_count;
	struct iovec payload[2] = {
		{ .iov_base = m->head + RECORD_HEADER_SIZE, .iov_len = env_len },
		{ .iov_base = m->body, .iov_len = m->body_len },
	};
	record_header_encode(m->head, RECORD_MESSAGE, m->qid, payload, 2);
	return 0;
}

/* COMMIT: encode the envelope into the record head and hand the message to the spool. */
static void
conn_msg_commit(struct conn *c)
{
	struct msg *m = c->msg;
	c->msg = NULL;
	int rc = m == NULL ? -ENOMEM : conn_encode_head(c, m);
	if (rc < 0) {
		if (m != NULL)
			msg_unref(m);
		struct smtp_actions acts = { .count = 0 };
		smtp_server_committed(&c->smtp, rc, SLICE_LIT(""), &acts);
		/* Replies only: appended by the caller's loop through conn_committed's path. */
		for (uint32_t i = 0; i < acts.count; i++) {
			if (acts.items[i].type == SMTP_ACTION_REPLY)
				(void)conn_out_append(&c->out[c->out_active], acts.items[i].data);
		}
		return;
	}
	m->waiter_slot = c->slot;
	m->waiter_gen = c->gen;
	c->sh->stats.body_bytes += smtp_server_envelope(&c->smtp)->body_size;
	spool_commit(c->sh->spool, m);
}

static void
conn_actions(struct conn *c, const struct smtp_actions *acts)
{
	for (uint32_t i = 0; i < acts->count; i++) {
		const struct smtp_action *a = &acts->items[i];
		switch (a->type) {
		case SMTP_ACTION_REPLY:
			if (conn_out_append(&c->out[c->out_active], a->data) != 0)
				c->close_after_send = true;
			break;
		case SMTP_ACTION_BODY_BEGIN:
			conn_msg_begin(c);
			break;
		case SMTP_ACTION_BODY:
			conn_msg_append(c, a->data);
			break;
		case SMTP_ACTION_BODY_DISCARD:
			conn_msg_drop(c);
			break;
		case SMTP_ACTION_COMMIT:
			conn_msg_commit(c);
			break;
		case SMTP_ACTION_STARTTLS:
			/* Not offered until the TLS issue; when it is, the bytes after the command are
			 * TLS (RFC 3207 4.2) and must not reach the machine. Until then: close. */
			c->close_after_send = true;
			break;
		case SMTP_ACTION_CLOSE:
			c->close_after_send = true;
			break;
		}
	}
}

static bool
conn_can_feed(const struct conn *c)
{
	return !c->closing && !c->close_after_send && !smtp_server_closed(&c->smtp)
		&& c->smtp.state != SMTP_STATE_COMMIT_WAIT
		&& conn_out_unsent(c) < CONN_OUTPUT_SOFT_MAX;
}

/* Feeds in until the machine takes no more; returns the bytes it consumed. */
static size_t
conn_feed(struct conn *c, struct slice in)
{
	size_t used = 0;
	while (conn_can_feed(c)) {
		struct smtp_actions acts = { .count = 0 };
		size_t n = smtp_server_feed(&c->smtp, slice_skip(in, used), &acts);
		conn_actions(c, &acts);
		used += n;
		if (n == 0 && acts.count == 0)
			break;
	}
	return used;
}

static int
conn_pending_add(struct conn *c, struct slice data)
{
	if (data.len == 0)
		return 0;
	if (data.len > CONN_PENDING_HARD_MAX - c->pending_len)
		return -ENOBUFS;
	if (data.len > c->pending_cap - c->pending_len) {
		uint32_t cap = c->pending_cap ? c->pending_cap : SMTP_CMD_LINE_LEN_MAX;
		while (cap - c->pending_len < data.len)
			cap *= 2;
		uint8_t *grown = realloc(c->pending, cap);
		if (grown == NULL)
			return -ENOMEM;
		c->pending = grown;
		c->pending_cap = cap;
	}
	/* copy: the machine could not take these bytes yet, and the buffer goes back now. */
	memcpy(c->pending + c->pending_len, data.ptr, data.len);
	if (smtp_server_in_body(&c->smtp))
		c->sh->stats.body_copied += data.len;
	c->pending_len += (uint32_t)data.len;
	return 0;
}

/* Offers the pending bytes again and keeps what is still not taken. */
static void
conn_feed_pending(struct conn *c)
{
	if (c->pending_len == 0)
		return;
	size_t used = conn_feed(c, slice_make(c->pending, c->pending_len));
	memmove(c->pending, c->pending + used, c->pending_len - used);
	c->pending_len -= (uint32_t)used;
}

/* Back-pressure: stop reading while too much input waits, read again once it drained. */
static void
conn_flow(struct conn *c)
{
	if (c->closing)
		return;
	if (c->pending_len > CONN_PENDING_SOFT_MAX) {
		if (c->recv_armed && !c->recv_stopped)
			conn_cancel_recv(c);
		c->recv_stopped = true;
		return;
	}
	if (c->recv_stopped) {
		c->recv_stopped = false;
		if (!c->recv_armed)
			conn_queue_rearm(c);
	}
}

/* New bytes from the socket, straight from a provided buffer. */
static void
conn_input(struct conn *c, struct slice in)
{
	if (c->pending_len == 0)
		in = slice_skip(in, conn_feed(c, in));
	if (conn_pending_add(c, in) != 0) {
		conn_begin_close(c);   /* unreachable with reading stopped; bounded all the same */
		return;
	}
	if (in.len > 0 && c->pending_len > in.len)
		conn_feed_pending(c);   /* older bytes were waiting: the new ones go behind them */
	conn_flow(c);
}

static void
conn_maybe_free(struct conn *c)
{
	if (!c->live || !c->closing || c->recv_armed || c->send_busy)
		return;
	struct io_uring_sqe *sqe = shard_sqe(c->sh);
	io_uring_prep_close(sqe, c->fd);
	io_uring_sqe_set_data64(sqe, shard_user_data(SHARD_OP_CLOSE, c->slot, c->gen));
	log_conn_close(c->sh->now_real_ms, c->sh->index, c->peer, c->messages,
		c->sh->now_ms - c->connected_ms);
	free(c->pending);
	c->pending = NULL;
	c->pending_len = 0;
	c->pending_cap = 0;
	c->out[0].len = 0;
	c->out[1].len = 0;
	conn_slot_free(c);
}

/* Stops the session: outstanding requests are cancelled, the slot is freed when they are done.
 * A message not yet committed is dropped: it was never acknowledged (RFC 5321 3.3). */
static void
conn_begin_close(struct conn *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->idle_list != NULL)
		timer_node_remove(c->idle_list, &c->idle);
	c->idle_list = NULL;
	conn_msg_drop(c);
	if (c->recv_armed || c->send_busy) {
		struct io_uring_sqe *sqe = shard_sqe(c->sh);
		io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(sqe, shard_user_data(SHARD_OP_CANCEL, c->slot, c->gen));
	}
	conn_maybe_free(c);
}

/* After anything that may unblock the machine: feed what waits, then send what it said. */
static void
conn_progress(struct conn *c)
{
	conn_feed_pending(c);
	conn_idle_touch(c);
	conn_flow(c);
	conn_send_next(c);
}

static void
conn_recv_done(struct conn *c, struct io_uring_cqe *cqe)
{
	if (!(cqe->flags & IORING_CQE_F_MORE))
		c->recv_armed = false;
	if (cqe->res > 0) {
		if (c->closing)
			return;
		uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		conn_input(c, slice_make(shard_buf(c->sh, bid), (size_t)cqe->res));
		shard_buf_return(c->sh, bid);
		conn_progress(c);
	} else if (cqe->res == 0) {
		conn_begin_close(c);   /* the client left; mid-DATA means no message */
	} else if (cqe->res != -ENOBUFS && cqe->res != -ECANCELED) {
		conn_begin_close(c);
	}
	if (!c->recv_armed && !c->closing && !c->recv_stopped)
		conn_queue_rearm(c);   /* ENOBUFS, or the kernel ended the multishot */
}

static void
conn_send_done(struct conn *c, int res)
{
	struct conn_out *o = &c->out[c->out_active ^ 1u];
	c->send_busy = false;
	if (res < 0) {
		o->len = 0;
		conn_begin_close(c);
		return;
	}
	c->send_off += (uint32_t)res;
	if (c->send_off < o->len && !c->closing) {
		c->send_busy = true;
		struct io_uring_sqe *sqe = shard_sqe(c->sh);
		io_uring_prep_send(sqe, c->fd, o->data + c->send_off, o->len - c->send_off,
			MSG_NOSIGNAL);
		io_uring_sqe_set_data64(sqe, shard_user_data(SHARD_OP_SEND, c->slot, c->gen));
		return;
	}
	o->len = 0;
	if (!c->closing)
		conn_progress(c);
}

void
conn_complete(struct shard *sh, struct io_uring_cqe *cqe)
{
	uint64_t ud = cqe->user_data;
	struct conn *c = conn_lookup(sh, shard_ud_slot(ud), shard_ud_gen(ud));
	enum shard_op op = shard_ud_op(ud);
	if (c == NULL) {
		if (op == SHARD_OP_RECV && (cqe->flags & IORING_CQE_F_BUFFER))
			shard_buf_return(sh, (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
		return;
	}
	if (op == SHARD_OP_RECV) {
		if (c->closing && (cqe->flags & IORING_CQE_F_BUFFER))
			shard_buf_return(sh, (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT));
		conn_recv_done(c, cqe);
	} else if (op == SHARD_OP_SEND) {
		conn_send_done(c, cqe->res);
	}
	conn_maybe_free(c);
}

static void
conn_peer_format(struct conn *c)
{
	const struct sockaddr *sa = (const struct sockaddr *)&c->peer_sa;
	const void *addr = sa->sa_family == AF_INET6
		? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
		: (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
	if (inet_ntop(sa->sa_family, addr, c->peer, sizeof(c->peer)) == NULL)
		snprintf(c->peer, sizeof(c->peer), "unknown");
}

void
conn_accept(struct shard *sh, int fd)
{
	struct conn *c = sh->stopping ? NULL : conn_slot_alloc(sh);
	if (c == NULL) {
		static const char busy[] = "421 4.7.0 Too many connections, try again later\r\n";
		(void)!send(fd, busy, sizeof(busy) - 1, MSG_DONTWAIT | MSG_NOSIGNAL);
		close(fd);
		return;
	}
	c->sh = sh;
	c->fd = fd;
	c->live = true;
	c->closing = false;
	c->close_after_send = false;
	c->recv_armed = false;
	c->recv_stopped = false;
	c->send_busy = false;
	c->out_active = 0;
	c->messages = 0;
	c->connected_ms = sh->now_ms;
	sh->conn_live++;
	sh->stats.accepted_conns++;
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	socklen_t len = sizeof(c->peer_sa);
	if (getpeername(fd, (struct sockaddr *)&c->peer_sa, &len) != 0)
		memset(&c->peer_sa, 0, sizeof(c->peer_sa));
	conn_peer_format(c);
	c->relay_allowed = policy_client_may_relay(sh->eng->policy,
		(const struct sockaddr *)&c->peer_sa);
	log_conn_open(sh->now_real_ms, sh->index, c->peer, c->relay_allowed);
	smtp_server_init(&c->smtp, &sh->eng->smtp, c);
	struct smtp_actions acts = { .count = 0 };
	smtp_server_start(&c->smtp, &acts);
	conn_actions(c, &acts);
	conn_arm_recv(c);
	conn_idle_touch(c);
	conn_send_next(c);
}

void
conn_committed(struct shard *sh, uint32_t slot, uint32_t gen, int result, uint64_t qid)
{
	struct conn *c = conn_lookup(sh, slot, gen);
	if (c == NULL || c->closing)
		return;   /* the client left before the answer: the message stands all the same */
	char id[QUEUE_ID_STR_LEN + 1];
	queue_id_format(qid, id);
	struct smtp_actions acts = { .count = 0 };
	smtp_server_committed(&c->smtp, result, slice_make(id, QUEUE_ID_STR_LEN), &acts);
	conn_actions(c, &acts);
	if (result == 0)
		c->messages++;
	if (sh->stopping) {
		acts.count = 0;
		smtp_server_shutdown(&c->smtp, &acts);
		conn_actions(c, &acts);
	}
	conn_progress(c);
}

void
conn_rearm_all(struct shard *sh)
{
	struct conn *c = sh->rearm_head;
	sh->rearm_head = NULL;
	while (c != NULL) {
		struct conn *next = c->rearm_next;
		c->rearm_queued = false;
		if (c->live && !c->closing && !c->recv_armed && !c->recv_stopped)
			conn_arm_recv(c);
		c = next;
	}
}

static void
conn_expire_list(struct shard *sh, struct timer_list *l)
{
	struct timer_node *n;
	while ((n = timer_list_expired(l, sh->now_ms)) != NULL) {
		struct conn *c = (struct conn *)((char *)n - offsetof(struct conn, idle));
		timer_node_remove(l, n);
		c->idle_list = NULL;
		if (c->send_busy) {
			conn_begin_close(c);   /* not even reading our replies: no goodbye */
			continue;
		}
		struct smtp_actions acts = { .count = 0 };
		smtp_server_timeout(&c->smtp, &acts);
		conn_actions(c, &acts);
		conn_msg_drop(c);
		conn_send_next(c);
	}
}

void
conn_expire(struct shard *sh)
{
	conn_expire_list(sh, &sh->idle_cmd);
	conn_expire_list(sh, &sh->idle_data);
}

uint64_t
conn_next_deadline_ms(struct shard *sh)
{
	uint64_t a = timer_list_next_ms(&sh->idle_cmd, sh->now_ms);
	uint64_t b = timer_list_next_ms(&sh->idle_data, sh->now_ms);
	return a < b ? a : b;
}

void
conn_shutdown_all(struct shard *sh)
{
	for (uint32_t i = 0; i < sh->conn_slots; i++) {
		struct conn *c = sh->conns[i];
		if (c == NULL || !c->live || c->closing)
			continue;
		if (c->smtp.state == SMTP_STATE_COMMIT_WAIT)
			continue;   /* conn_committed answers, then says goodbye */
		struct smtp_actions acts = { .count = 0 };
		smtp_server_shutdown(&c->smtp, &acts);
		conn_actions(c, &acts);
		conn_msg_drop(c);
		conn_send_next(c);
		if (c->send_busy || c->out[c->out_active].len > 0)
			continue;
		conn_begin_close(c);
	}
}
