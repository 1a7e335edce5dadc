/* engine/conn.c - the transport under every session; see conn.h. */
#include "engine/conn.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CONN_LINGER_MS      10000u   /* a closing connection waits this long for its output */
#define CONN_OUT_FIRST_CAP   1024u
#define CONN_PWBUF_SIZE      4096u   /* getpwuid_r's strings for one entry */

/* A stretch of output: own octets (ptr NULL: data[off, off + len)) or borrowed ones. */
struct conn_seg {
	const uint8_t *ptr;
	uint32_t off;
	uint32_t len;
};

/* Output collected for one send. With no segment it is data[0, len); once something is
 * borrowed (conn_write_ref) it is the segments in order. */
struct conn_out {
	uint8_t *data;
	uint32_t len;
	uint32_t cap;
	struct conn_seg *segs;
	uint32_t seg_count;
	uint32_t seg_cap;
	uint32_t total;                      /* octets of output, own and borrowed */
};

struct conn {
	struct conn_pool *pool;
	uint32_t slot;
	uint32_t gen;
	uint32_t next_free;
	int fd;
	uint32_t listener;
	const struct conn_session_ops *ops;
	void *s;
	bool live;
	bool connecting;                     /* outbound: the connect is in flight */
	bool recv_armed;                     /* a multishot recv is outstanding */
	bool recv_stopped;                   /* back-pressure: do not re-arm until drained */
	bool send_busy;
	bool closing;                        /* no more input; free once nothing is in flight */
	bool cancelled;                      /* requests in flight were cancelled */
	bool body_mode;
	bool in_turn;                        /* on the pool's end-of-turn list */
	bool want_feed;                      /* offer pending input at the end of the turn */
	bool want_rearm;
	int close_res;
	struct conn *turn_next;
	struct timer_node idle;
	uint32_t idle_class;                 /* CONN_TIMEOUT_NONE, or an index of pool->timers */
	uint8_t *pending;                    /* input the session did not take yet */
	uint32_t pending_len;
	uint32_t pending_cap;
	struct conn_out out[2];              /* out[active] collects, the other one is in flight */
	uint32_t out_active;
	uint32_t send_off;
	struct iovec *iov;                   /* CONN_SEGS_MAX, for a send of segments */
	struct msghdr msg;
	struct sockaddr_storage peer_sa;
	struct sockaddr_storage local_sa;
	struct __kernel_timespec connect_ts; /* read by the kernel when the connect is submitted */
	char peer[CONN_PEER_TEXT_MAX];
};

/* The linger list is the last timer class; sessions get the ones before it. */
#define CONN_LINGER_CLASS (CONN_TIMEOUT_CLASSES_MAX - 1u)

static void conn_maybe_free(struct conn *c);

static struct conn *
conn_lookup(struct conn_pool *p, uint64_t ud)
{
	uint32_t slot = ring_ud_slot(ud);
	if (slot >= p->slot_count)
		return NULL;
	struct conn *c = p->slots[slot];
	return (c != NULL && c->live && c->gen == ring_ud_gen(ud)) ? c : NULL;
}

static uint64_t
conn_ud(const struct conn *c, uint8_t op)
{
	return ring_ud(op, c->slot, c->gen);
}

/* Puts c on the end-of-turn list (once). */
static void
conn_want_turn(struct conn *c)
{
	if (c->in_turn)
		return;
	c->in_turn = true;
	c->turn_next = c->pool->turn_head;
	c->pool->turn_head = c;
}

static void
conn_timer_stop(struct conn *c)
{
	if (c->idle_class != CONN_TIMEOUT_NONE)
		timer_node_remove(&c->pool->timers[c->idle_class], &c->idle);
	c->idle_class = CONN_TIMEOUT_NONE;
}

static void
conn_timer_start(struct conn *c, uint32_t cls)
{
	conn_timer_stop(c);
	if (cls == CONN_TIMEOUT_NONE)
		return;
	ASSERT(cls < CONN_TIMEOUT_CLASSES_MAX);
	c->idle_class = cls;
	timer_list_touch(&c->pool->timers[cls], &c->idle, c->pool->ring->now_ms);
}

static void
conn_arm_recv(struct conn *c)
{
	struct io_uring_sqe *sqe = ring_sqe(c->pool->ring);
	io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = bufring_group(c->pool->bufs);
	io_uring_sqe_set_data64(sqe, conn_ud(c, c->pool->op_recv));
	c->recv_armed = true;
}

static void
conn_cancel_recv(struct conn *c)
{
	struct io_uring_sqe *sqe = ring_sqe(c->pool->ring);
	io_uring_prep_cancel64(sqe, conn_ud(c, c->pool->op_recv), 0);
	io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_NONE, 0, 0));
}

static int
conn_out_seg(struct conn_out *o, struct conn_seg seg)
{
	if (o->seg_count == o->seg_cap) {
		uint32_t cap = o->seg_cap ? o->seg_cap * 2 : 64u;
		if (cap > CONN_SEGS_MAX)
			cap = CONN_SEGS_MAX;
		if (cap == o->seg_count)
			return -ENOBUFS;
		struct conn_seg *grown = realloc(o->segs, cap * sizeof(*grown));
		if (grown == NULL)
			return -ENOBUFS;
		o->segs = grown;
		o->seg_cap = cap;
	}
	o->segs[o->seg_count++] = seg;
	return 0;
}

static void
conn_out_reset(struct conn_out *o)
{
	o->len = 0;
	o->seg_count = 0;
	o->total = 0;
}

static int
conn_out_append(struct conn_out *o, struct slice data)
{
	if (data.len > o->cap - o->len) {
		uint32_t cap = o->cap ? o->cap : CONN_OUT_FIRST_CAP;
		while (cap - o->len < data.len)
			cap *= 2;
		uint8_t *grown = realloc(o->data, cap);
		if (grown == NULL)
			return -ENOBUFS;
		o->data = grown;
		o->cap = cap;
	}
	if (o->seg_count > 0) {   /* segments are in use: these octets are one more, or extend */
		struct conn_seg *last = &o->segs[o->seg_count - 1];
		bool extends = last->ptr == NULL && last->off + last->len == o->len;
		if (!extends && conn_out_seg(o, (struct conn_seg){ .off = o->len }) != 0)
			return -ENOBUFS;
		o->segs[o->seg_count - 1].len += (uint32_t)data.len;
	}
	/* copy: the session's reply buffer is reused by its next call. */
	memcpy(o->data + o->len, data.ptr, data.len);
	o->len += (uint32_t)data.len;
	o->total += (uint32_t)data.len;
	return 0;
}

uint32_t
conn_unsent(const struct conn *c)
{
	return c->out[0].total + c->out[1].total - (c->send_busy ? c->send_off : 0);
}

int
conn_write_ref(struct conn *c, struct slice data)
{
	struct conn_out *o = &c->out[c->out_active];
	if (c->closing || data.len > CONN_OUTPUT_HARD_MAX - conn_unsent(c))
		return -ENOBUFS;
	if (data.len == 0)
		return 0;
	if (c->iov == NULL) {
		c->iov = malloc(CONN_SEGS_MAX * sizeof(*c->iov));
		if (c->iov == NULL)
			return -ENOBUFS;
	}
	if (o->seg_count == 0 && o->len > 0
		&& conn_out_seg(o, (struct conn_seg){ .off = 0, .len = o->len }) != 0)
		return -ENOBUFS;
	if (conn_out_seg(o, (struct conn_seg){ .ptr = data.ptr, .len = (uint32_t)data.len }) != 0)
		return -ENOBUFS;
	o->total += (uint32_t)data.len;
	conn_want_turn(c);
	return 0;
}

uint32_t
conn_write_ref_room(const struct conn *c)
{
	const struct conn_out *o = &c->out[c->out_active];
	/* One is kept for a copied write in between; octets copied before the first borrowed
	 * ones become a stretch of their own. */
	uint32_t used = o->seg_count + 1 + (o->seg_count == 0 && o->len > 0 ? 1u : 0u);
	return used >= CONN_SEGS_MAX ? 0 : CONN_SEGS_MAX - used;
}

/* The iovecs of o's segments from octet `skip` on; returns how many. */
static uint32_t
conn_iov_build(struct conn *c, const struct conn_out *o, uint32_t skip)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < o->seg_count; i++) {
		const struct conn_seg *g = &o->segs[i];
		if (skip >= g->len) {
			skip -= g->len;
			continue;
		}
		const uint8_t *p = g->ptr != NULL ? g->ptr : o->data + g->off;
		c->iov[n++] = (struct iovec){ .iov_base = (void *)(p + skip), .iov_len = g->len - skip };
		skip = 0;
	}
	return n;
}

/* Sends the rest of the output in flight, from send_off on. */
static void
conn_send_out(struct conn *c, const struct conn_out *o)
{
	struct io_uring_sqe *sqe = ring_sqe(c->pool->ring);
	if (o->seg_count == 0) {
		io_uring_prep_send(sqe, c->fd, o->data + c->send_off, o->len - c->send_off,
			MSG_NOSIGNAL);
	} else {
		memset(&c->msg, 0, sizeof(c->msg));
		c->msg.msg_iov = c->iov;
		c->msg.msg_iovlen = conn_iov_build(c, o, c->send_off);
		io_uring_prep_sendmsg(sqe, c->fd, &c->msg, MSG_NOSIGNAL);
	}
	io_uring_sqe_set_data64(sqe, conn_ud(c, c->pool->op_send));
}

int
conn_write(struct conn *c, struct slice data)
{
	if (c->closing || data.len > CONN_OUTPUT_HARD_MAX - conn_unsent(c))
		return -ENOBUFS;
	int rc = conn_out_append(&c->out[c->out_active], data);
	if (rc == 0)
		conn_want_turn(c);
	return rc;
}

static void
conn_send_next(struct conn *c)
{
	if (c->send_busy || c->cancelled)
		return;
	struct conn_out *o = &c->out[c->out_active];
	if (o->total == 0)
		return;
	c->out_active ^= 1u;   /* new output collects in the other buffer while this one flies */
	c->send_off = 0;
	c->send_busy = true;
	conn_send_out(c, o);
}

/* Cancels whatever is in flight; the slot is freed when the completions are in. */
static void
conn_cancel_all(struct conn *c)
{
	if (c->cancelled)
		return;
	c->cancelled = true;
	if (c->recv_armed || c->send_busy || c->connecting) {
		struct io_uring_sqe *sqe = ring_sqe(c->pool->ring);
		io_uring_prep_cancel_fd(sqe, c->fd, IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_NONE, 0, 0));
	}
}

static void
conn_begin_close(struct conn *c, int res, bool drop_output)
{
	if (!c->closing) {
		c->closing = true;
		c->close_res = res;
	}
	conn_timer_stop(c);
	if (drop_output || conn_unsent(c) == 0) {
		conn_cancel_all(c);
	} else {
		if (c->recv_armed && !c->recv_stopped)
			conn_cancel_recv(c);   /* no more input: only the output is still to go */
		c->idle_class = CONN_LINGER_CLASS;
		timer_list_touch(&c->pool->timers[CONN_LINGER_CLASS], &c->idle, c->pool->ring->now_ms);
	}
	conn_want_turn(c);
}

void
conn_close(struct conn *c)
{
	conn_begin_close(c, 0, false);
}

void
conn_abort(struct conn *c)
{
	conn_begin_close(c, -ECONNABORTED, true);
}

void
conn_kick(struct conn *c)
{
	c->want_feed = true;
	conn_want_turn(c);
}

void
conn_idle(struct conn *c, uint32_t timeout_class)
{
	if (!c->closing)
		conn_timer_start(c, timeout_class);
}

void
conn_body_mode(struct conn *c, bool on)
{
	c->body_mode = on;
}

uint32_t
conn_listener(const struct conn *c)
{
	return c->listener;
}

const struct sockaddr_storage *
conn_peer(const struct conn *c)
{
	return &c->peer_sa;
}

const struct sockaddr_storage *
conn_local(const struct conn *c)
{
	return &c->local_sa;
}

const char *
conn_peer_text(const struct conn *c)
{
	return c->peer;
}

static bool
conn_can_feed(const struct conn *c)
{
	return !c->closing && !c->connecting && conn_unsent(c) < CONN_OUTPUT_SOFT_MAX;
}

static size_t
conn_feed(struct conn *c, struct slice in)
{
	if (in.len == 0 || !conn_can_feed(c))
		return 0;
	size_t n = c->ops->input(c->s, c, in);
	ASSERT(n <= in.len);
	return n;
}

static int
conn_pending_add(struct conn *c, struct slice data)
{
	if (data.len == 0)
		return 0;
	if (data.len > CONN_PENDING_HARD_MAX - c->pending_len)
		return -ENOBUFS;
	if (data.len > c->pending_cap - c->pending_len) {
		uint32_t cap = c->pending_cap ? c->pending_cap : 4096u;
		while (cap - c->pending_len < data.len)
			cap *= 2;
		uint8_t *grown = realloc(c->pending, cap);
		if (grown == NULL)
			return -ENOMEM;
		c->pending = grown;
		c->pending_cap = cap;
	}
	/* copy: the session could not take these bytes yet, and the buffer goes back now. */
	memcpy(c->pending + c->pending_len, data.ptr, data.len);
	if (c->body_mode)
		c->pool->stats.body_copied += data.len;
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
		if (!c->recv_armed) {
			c->want_rearm = true;
			conn_want_turn(c);
		}
	}
}

/* New bytes from the socket, straight from a provided buffer. */
static void
conn_input(struct conn *c, struct slice in)
{
	if (c->pending_len == 0)
		in = slice_skip(in, conn_feed(c, in));
	if (conn_pending_add(c, in) != 0) {
		/* The recvs in flight when reading stopped may still bring this much: a client that
		 * pipelines message bodies past their 354 (RFC 2920 3.1 forbids it) gets here. */
		conn_abort(c);
		return;
	}
	if (in.len > 0 && c->pending_len > in.len)
		conn_feed_pending(c);   /* older bytes were waiting: the new ones went behind them */
	conn_flow(c);
}

static void
conn_recv_done(struct conn *c, const struct io_uring_cqe *cqe)
{
	if (!(cqe->flags & IORING_CQE_F_MORE))
		c->recv_armed = false;
	if (cqe->res > 0) {
		uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		bufring_taken(c->pool->bufs, bid);
		if (!c->closing) {
			conn_input(c, slice_make(bufring_buf(c->pool->bufs, bid), (size_t)cqe->res));
			conn_want_turn(c);
		}
		bufring_release(c->pool->bufs, bid);   /* a session that kept a slice holds its own */
	} else if (cqe->res == 0) {
		conn_begin_close(c, 0, true);   /* the peer left */
	} else if (cqe->res != -ENOBUFS && cqe->res != -ECANCELED) {
		conn_begin_close(c, cqe->res, true);
	}
	if (!c->recv_armed && !c->closing && !c->recv_stopped) {
		c->want_rearm = true;   /* ENOBUFS, or the kernel ended the multishot */
		conn_want_turn(c);
	}
}

static void
conn_send_done(struct conn *c, int res)
{
	struct conn_out *o = &c->out[c->out_active ^ 1u];
	c->send_busy = false;
	if (res < 0) {
		conn_out_reset(o);
		conn_begin_close(c, res, true);
		return;
	}
	c->send_off += (uint32_t)res;
	if (c->send_off < o->total && !c->cancelled) {
		c->send_busy = true;
		conn_send_out(c, o);
		return;
	}
	conn_out_reset(o);
	c->send_off = 0;
	conn_want_turn(c);
	if (c->closing)
		return;
	c->want_feed = true;   /* output back-pressure may have held input back */
	if (conn_unsent(c) == 0 && c->ops->drained != NULL)
		c->ops->drained(c->s, c);
}

static void
conn_connect_done(struct conn *c, int res)
{
	c->connecting = false;
	if (res == -ECANCELED && !c->cancelled)
		res = -ETIMEDOUT;   /* the linked timeout fired */
	if (res == 0) {
		socklen_t len = sizeof(c->local_sa);
		if (getsockname(c->fd, (struct sockaddr *)&c->local_sa, &len) != 0)
			memset(&c->local_sa, 0, sizeof(c->local_sa));
		c->pool->stats.opened++;
		conn_arm_recv(c);
	}
	if (!c->closing)
		c->ops->connected(c->s, c, res);
	if (res < 0)
		conn_begin_close(c, res, true);
	conn_want_turn(c);
}

static void
conn_complete(void *ctx, const struct io_uring_cqe *cqe)
{
	struct conn_pool *p = ctx;
	struct conn *c = conn_lookup(p, cqe->user_data);
	uint8_t op = ring_ud_op(cqe->user_data);
	if (c == NULL) {
		if (op == p->op_recv && (cqe->flags & IORING_CQE_F_BUFFER)) {
			uint16_t bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
			bufring_taken(p->bufs, bid);
			bufring_release(p->bufs, bid);
		}
		return;
	}
	if (op == p->op_recv)
		conn_recv_done(c, cqe);
	else if (op == p->op_send)
		conn_send_done(c, cqe->res);
	else if (op == p->op_connect)
		conn_connect_done(c, cqe->res);
	conn_maybe_free(c);
}

static void
conn_slot_free(struct conn *c)
{
	struct conn_pool *p = c->pool;
	c->live = false;
	c->gen++;
	c->next_free = p->free_head;
	p->free_head = c->slot;
	ASSERT(p->live > 0);
	p->live--;
}

/* Frees the slot once closing and nothing is in flight; the session hears `closed` last. */
static void
conn_maybe_free(struct conn *c)
{
	/* Not while on the end-of-turn list: a slot freed there could be reused by an accept in
	 * the same turn and join the list a second time (a loop). The turn frees it. */
	if (!c->live || !c->closing || c->recv_armed || c->send_busy || c->connecting || c->in_turn)
		return;
	if (!c->cancelled && conn_unsent(c) > 0)
		return;   /* a graceful close: the send of the rest starts at the end of the turn */
	conn_timer_stop(c);
	struct io_uring_sqe *sqe = ring_sqe(c->pool->ring);
	io_uring_prep_close(sqe, c->fd);
	io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_NONE, 0, 0));
	free(c->pending);
	c->pending = NULL;
	c->pending_len = 0;
	c->pending_cap = 0;
	conn_out_reset(&c->out[0]);
	conn_out_reset(&c->out[1]);
	const struct conn_session_ops *ops = c->ops;
	void *s = c->s;
	int res = c->close_res;
	conn_slot_free(c);
	ops->closed(s, c, res);
}

static struct conn *
conn_slot_alloc(struct conn_pool *p)
{
	struct conn *c;
	if (p->free_head != UINT32_MAX) {
		c = p->slots[p->free_head];
		p->free_head = c->next_free;
	} else {
		if (p->slot_count >= p->slot_max)
			return NULL;
		c = calloc(1, sizeof(*c));
		if (c == NULL)
			return NULL;
		c->slot = p->slot_count;
		c->pool = p;
		p->slots[p->slot_count++] = c;
	}
	/* Everything but the slot's identity, its output buffers and its place on the turn list
	 * starts afresh. A slot freed by a completion may still be on the list when an accept in
	 * the same batch reuses it: forgetting that would put it on the list a second time and
	 * make the list a cycle that the end of the turn never leaves. */
	uint32_t slot = c->slot, gen = c->gen;
	struct conn_out out0 = c->out[0], out1 = c->out[1];
	struct iovec *iov = c->iov;
	bool in_turn = c->in_turn;
	struct conn *turn_next = c->turn_next;
	memset(c, 0, sizeof(*c));
	c->pool = p;
	c->slot = slot;
	c->gen = gen;
	c->iov = iov;
	c->in_turn = in_turn;
	c->turn_next = turn_next;
	c->out[0] = (struct conn_out){ .data = out0.data, .cap = out0.cap, .segs = out0.segs,
		.seg_cap = out0.seg_cap };
	c->out[1] = (struct conn_out){ .data = out1.data, .cap = out1.cap, .segs = out1.segs,
		.seg_cap = out1.seg_cap };
	c->idle_class = CONN_TIMEOUT_NONE;
	c->live = true;
	p->live++;
	return c;
}

/* A client on a Unix socket is a user of this machine: "local:" and its login name, or its uid
 * when it has none, from the kernel's SO_PEERCRED (never from what the client says). The name
 * comes from getpwuid_r, which reads the password database (files, or the NSS modules
 * configured): local submissions are few, and this is the one look-up they cost. */
static void
conn_peer_format_local(struct conn *c)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
		snprintf(c->peer, sizeof(c->peer), "local:unknown");
		return;
	}
	struct passwd pw, *found = NULL;
	char buf[CONN_PWBUF_SIZE];
	if (getpwuid_r(cred.uid, &pw, buf, sizeof(buf), &found) == 0 && found != NULL
		&& strlen(pw.pw_name) < sizeof(c->peer) - sizeof("local:"))
		snprintf(c->peer, sizeof(c->peer), "local:%s", pw.pw_name);
	else
		snprintf(c->peer, sizeof(c->peer), "local:%u", (unsigned)cred.uid);
}

static void
conn_peer_format(struct conn *c)
{
	const struct sockaddr *sa = (const struct sockaddr *)&c->peer_sa;
	if (sa->sa_family == AF_UNIX) {
		conn_peer_format_local(c);
		return;
	}
	const void *addr = sa->sa_family == AF_INET6
		? (const void *)&((const struct sockaddr_in6 *)sa)->sin6_addr
		: (const void *)&((const struct sockaddr_in *)sa)->sin_addr;
	if ((sa->sa_family != AF_INET && sa->sa_family != AF_INET6)
		|| inet_ntop(sa->sa_family, addr, c->peer, sizeof(c->peer)) == NULL)
		snprintf(c->peer, sizeof(c->peer), "unknown");
}

static void
conn_setup(struct conn *c, int fd, uint32_t listener, const struct conn_session_ops *ops,
	void *s)
{
	c->fd = fd;
	c->listener = listener;
	c->ops = ops;
	c->s = s;
	int one = 1;
	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));   /* not on AF_UNIX */
}

struct conn *
conn_adopt(struct conn_pool *p, int fd, uint32_t listener, const struct conn_session_ops *ops,
	void *s)
{
	struct conn *c = conn_slot_alloc(p);
	if (c == NULL)
		return NULL;
	conn_setup(c, fd, listener, ops, s);
	socklen_t len = sizeof(c->peer_sa);
	if (getpeername(fd, (struct sockaddr *)&c->peer_sa, &len) != 0)
		memset(&c->peer_sa, 0, sizeof(c->peer_sa));
	len = sizeof(c->local_sa);
	if (getsockname(fd, (struct sockaddr *)&c->local_sa, &len) != 0)
		memset(&c->local_sa, 0, sizeof(c->local_sa));
	conn_peer_format(c);
	p->stats.opened++;
	conn_arm_recv(c);
	return c;
}

struct conn *
conn_connect(struct conn_pool *p, const struct sockaddr *to, socklen_t to_len,
	const struct sockaddr *from, socklen_t from_len, uint32_t timeout_ms,
	const struct conn_session_ops *ops, void *s, int *err)
{
	ASSERT(to_len <= sizeof(struct sockaddr_storage));
	int fd = socket(to->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		*err = -errno;
		return NULL;
	}
	if (from != NULL && bind(fd, from, from_len) != 0) {
		*err = -errno;
		close(fd);
		return NULL;
	}
	struct conn *c = conn_slot_alloc(p);
	if (c == NULL) {
		*err = -ENOBUFS;
		close(fd);
		return NULL;
	}
	conn_setup(c, fd, UINT32_MAX, ops, s);
	memcpy(&c->peer_sa, to, to_len);
	conn_peer_format(c);
	c->connecting = true;
	/* The address and the timeout must stay put until the kernel read them: both live in the
	 * slot, which is not reused before the connect completes. */
	ring_sqe_reserve(p->ring, 2);
	struct io_uring_sqe *sqe = ring_sqe(p->ring);
	io_uring_prep_connect(sqe, fd, (const struct sockaddr *)&c->peer_sa, to_len);
	sqe->flags |= IOSQE_IO_LINK;
	io_uring_sqe_set_data64(sqe, conn_ud(c, p->op_connect));
	c->connect_ts.tv_sec = timeout_ms / 1000u;
	c->connect_ts.tv_nsec = (long long)(timeout_ms % 1000u) * 1000000;
	sqe = ring_sqe(p->ring);
	io_uring_prep_link_timeout(sqe, &c->connect_ts, 0);
	io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_NONE, 0, 0));
	*err = 0;
	return c;
}

/* End of turn, per connection: feed, flow, re-arm, send, free. */
static void
conn_turn_one(struct conn *c)
{
	if (!c->live)
		return;
	if (c->want_feed && !c->closing) {
		c->want_feed = false;
		conn_feed_pending(c);
		conn_flow(c);
	}
	if (c->want_rearm && !c->closing && !c->recv_armed && !c->recv_stopped && !c->connecting)
		conn_arm_recv(c);
	c->want_rearm = false;
	conn_send_next(c);
	conn_maybe_free(c);
}

static void
conn_expire(struct conn_pool *p)
{
	for (uint32_t cls = 0; cls < CONN_TIMEOUT_CLASSES_MAX; cls++) {
		struct timer_node *n;
		while ((n = timer_list_expired(&p->timers[cls], p->ring->now_ms)) != NULL) {
			struct conn *c = (struct conn *)((char *)n - offsetof(struct conn, idle));
			conn_timer_stop(c);
			if (c->closing || c->send_busy) {
				conn_begin_close(c, -ETIMEDOUT, true);   /* not even reading our output */
				continue;
			}
			c->ops->timeout(c->s, c);
			conn_want_turn(c);
		}
	}
}

static void
conn_pool_turn(void *ctx)
{
	struct conn_pool *p = ctx;
	conn_expire(p);
	/* Work done here may queue connections again: take the list, then go on until empty. */
	for (uint32_t round = 0; p->turn_head != NULL && round < 4; round++) {
		struct conn *c = p->turn_head;
		p->turn_head = NULL;
		while (c != NULL) {
			struct conn *next = c->turn_next;
			c->in_turn = false;
			conn_turn_one(c);
			c = next;
		}
	}
}

static uint64_t
conn_pool_next_ms(void *ctx)
{
	struct conn_pool *p = ctx;
	if (p->turn_head != NULL)
		return 0;
	uint64_t ms = UINT64_MAX;
	for (uint32_t cls = 0; cls < CONN_TIMEOUT_CLASSES_MAX; cls++) {
		uint64_t t = timer_list_next_ms(&p->timers[cls], p->ring->now_ms);
		if (t < ms)
			ms = t;
	}
	return ms;
}

static bool
conn_pool_idle(void *ctx)
{
	const struct conn_pool *p = ctx;
	return p->live == 0;
}

static const struct ring_hooks conn_pool_hooks = {
	.name = "conn",
	.turn = conn_pool_turn,
	.next_ms = conn_pool_next_ms,
	.idle = conn_pool_idle,
};

int
conn_pool_init(struct conn_pool *p, struct ring *r, struct bufring *bufs, uint32_t max)
{
	memset(p, 0, sizeof(*p));
	p->slots = calloc(max, sizeof(*p->slots));
	if (p->slots == NULL)
		return -ENOMEM;
	p->ring = r;
	p->bufs = bufs;
	p->slot_max = max;
	p->free_head = UINT32_MAX;
	for (uint32_t i = 0; i < CONN_TIMEOUT_CLASSES_MAX; i++)
		timer_list_init(&p->timers[i], CONN_LINGER_MS);
	p->op_recv = ring_op_register(r, conn_complete, p);
	p->op_send = ring_op_register(r, conn_complete, p);
	p->op_connect = ring_op_register(r, conn_complete, p);
	ring_hooks_register(r, &conn_pool_hooks, p);
	return 0;
}

void
conn_pool_fini(struct conn_pool *p)
{
	for (uint32_t i = 0; i < p->slot_count; i++) {
		struct conn *c = p->slots[i];
		free(c->pending);
		free(c->out[0].data);
		free(c->out[1].data);
		free(c->out[0].segs);
		free(c->out[1].segs);
		free(c->iov);
		free(c);
	}
	free(p->slots);
	memset(p, 0, sizeof(*p));
}

uint32_t
conn_pool_timeout_class(struct conn_pool *p, uint32_t timeout_ms)
{
	for (uint32_t i = 0; i < p->timer_count; i++) {
		if (p->timers[i].timeout_ms == timeout_ms)
			return i;
	}
	ASSERT(p->timer_count < CONN_LINGER_CLASS);
	timer_list_init(&p->timers[p->timer_count], timeout_ms);
	return p->timer_count++;
}
