/* engine/smtpd.c - SMTP server sessions on the transport; see smtpd.h. */
#include "engine/smtpd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "base/queue_id.h"
#include "conf/config.h"
#include "conf/policy.h"
#include "engine/rcpt_dedup.h"
#include "proto/received.h"
#include "queue/msg.h"
#include "queue/record.h"
#include "queue/spool.h"

struct smtpd_session {
	struct smtpd *d;
	struct conn *c;
	uint32_t slot;
	uint32_t gen;
	uint32_t next_free;
	bool live;
	bool relay_allowed;
	uint32_t messages;
	uint64_t connected_ms;
	struct msg *msg;                     /* the body being received */
	uint64_t commit_qid;                 /* the message whose commit we wait for */
	uint32_t commit_rcpt_count;          /* its distinct recipients */
	struct smtp_server smtp;             /* last: its arena is touched only when used */
};

struct smtpd {
	struct ring *ring;
	struct smtpd_params p;
	struct smtp_server_config *profiles; /* p.profiles with rcpt_check set */
	struct smtpd_session **slots;
	uint32_t slot_count;
	uint32_t slot_max;
	uint32_t free_head;
	uint8_t op_commit;
	uint32_t cmd_class;
	uint32_t data_class;
	struct record_rcpt *rcpt_scratch;    /* SMTP_RCPT_COUNT_MAX entries: envelope encoding */
	struct rcpt_dedup dedup;             /* drops repeated recipients from rcpt_scratch */
	struct smtpd_stats stats;
};

static const struct conn_session_ops smtpd_ops;

static enum smtp_rcpt_verdict
smtpd_rcpt_check(void *ctx, struct slice local_part, struct slice domain, bool quoted)
{
	struct smtpd_session *ss = ctx;
	return policy_rcpt(ss->d->p.policy, ss->relay_allowed, local_part, domain, quoted);
}

static struct smtpd_session *
smtpd_slot_alloc(struct smtpd *d)
{
	struct smtpd_session *ss;
	if (d->free_head != UINT32_MAX) {
		ss = d->slots[d->free_head];
		d->free_head = ss->next_free;
	} else {
		if (d->slot_count >= d->slot_max)
			return NULL;
		/* Not calloc: the smtp_server arena must stay untouched (no resident cost). */
		ss = malloc(sizeof(*ss));
		if (ss == NULL)
			return NULL;
		memset(ss, 0, offsetof(struct smtpd_session, smtp));
		ss->slot = d->slot_count;
		d->slots[d->slot_count++] = ss;
	}
	ss->d = d;
	ss->live = true;
	ss->msg = NULL;
	ss->messages = 0;
	return ss;
}

static void
smtpd_slot_free(struct smtpd_session *ss)
{
	struct smtpd *d = ss->d;
	ss->live = false;
	ss->gen++;
	ss->c = NULL;
	ss->next_free = d->free_head;
	d->free_head = ss->slot;
}

static void
smtpd_msg_drop(struct smtpd_session *ss)
{
	if (ss->msg == NULL)
		return;
	spool_body_abandon(ss->d->p.spool, ss->msg);
	msg_unref(ss->msg);
	ss->msg = NULL;
}

/* The idle deadline of the machine's state: none while our own disk is busy (RFC 5321
 * 4.5.3.2 timeouts are the client's). */
static void
smtpd_idle(struct smtpd_session *ss)
{
	uint32_t cls = CONN_TIMEOUT_NONE;
	if (!smtp_server_closed(&ss->smtp) && ss->smtp.state != SMTP_STATE_COMMIT_WAIT)
		cls = smtp_server_in_body(&ss->smtp) ? ss->d->data_class : ss->d->cmd_class;
	conn_idle(ss->c, cls);
	conn_body_mode(ss->c, smtp_server_in_body(&ss->smtp));
}

/* BODY_BEGIN: a new message with its queue id and the Received: header (RFC 5321 4.4). */
static void
smtpd_msg_begin(struct smtpd_session *ss)
{
	struct smtpd *d = ss->d;
	const struct config *cfg = d->p.cfg;
	smtpd_msg_drop(ss);
	uint64_t qid = spool_next_qid(d->p.spool);
	ss->msg = msg_new(qid, d->ring->now_real_ms, cfg->max_message_size + RECEIVED_LEN_MAX,
		d->p.conns->bufs);
	if (ss->msg == NULL)
		return;   /* the commit fails with 451 below */
	const struct smtp_envelope *env = smtp_server_envelope(&ss->smtp);
	struct slice only_rcpt = env->rcpt_count == 1 ? smtp_server_rcpt(&ss->smtp, 0).path
		: SLICE_LIT("");
	const char *peer = conn_peer_text(ss->c);
	uint8_t hdr[RECEIVED_LEN_MAX];
	size_t len = received_format(hdr, sizeof(hdr), &(struct received_info){
		.helo = env->helo,
		.client_addr = slice_make(peer, strlen(peer)),
		.myhostname = slice_make(cfg->myhostname, strlen(cfg->myhostname)),
		.protocol = received_protocol(env->esmtp, false, false),
		.queue_id = qid,
		.for_rcpt = only_rcpt,
		.now_ms = d->ring->now_real_ms,
	});
	if (msg_append(ss->msg, slice_make(hdr, len)) != 0)
		smtpd_msg_drop(ss);
}

/* A body slice, straight from the receive buffer it is in: the spool keeps it there and writes
 * it from there (no copy), or copies it aside if too little comes in a turn. */
static void
smtpd_msg_append(struct smtpd_session *ss, struct slice data)
{
	if (ss->msg != NULL)
		(void)spool_body_append(ss->d->p.spool, ss->msg, data);   /* a failure fails COMMIT */
}

static void smtpd_actions(struct smtpd_session *ss, const struct smtp_actions *acts);

static void
smtpd_commit_failed(struct smtpd_session *ss, int rc)
{
	struct smtp_actions acts = { .count = 0 };
	smtp_server_committed(&ss->smtp, rc, SLICE_LIT(""), &acts);
	smtpd_actions(ss, &acts);
}

/* COMMIT: the envelope and the message go to the spool; the verdict comes back as an event. */
static void
smtpd_msg_commit(struct smtpd_session *ss)
{
	struct smtpd *d = ss->d;
	struct msg *m = ss->msg;
	ss->msg = NULL;
	if (m == NULL) {
		smtpd_commit_failed(ss, -ENOMEM);
		return;
	}
	const struct smtp_envelope *env = smtp_server_envelope(&ss->smtp);
	ASSERT(env->rcpt_count <= SMTP_RCPT_COUNT_MAX);
	for (uint32_t i = 0; i < env->rcpt_count; i++) {
		struct smtp_rcpt r = smtp_server_rcpt(&ss->smtp, i);
		d->rcpt_scratch[i] = (struct record_rcpt){ .path = r.path, .local_part = r.local_part,
			.domain = r.domain, .orcpt = r.orcpt, .notify = r.notify };
	}
	uint32_t rcpt_count = rcpt_dedup_apply(&d->dedup, d->p.policy, d->rcpt_scratch,
		env->rcpt_count);
	const char *peer = conn_peer_text(ss->c);
	struct record_envelope renv = {
		.arrival_ms = m->arrival_ms,
		.client_addr = slice_make(peer, strlen(peer)),
		.helo = env->helo,
		.mail_from = env->mail_from,
		.declared_size = env->declared_size,
		.body_type = (uint8_t)env->body,
		.smtputf8 = env->smtputf8,
		.dsn_ret = (uint8_t)env->dsn_ret,
		.dsn_envid = env->dsn_envid,
		.rcpt_count = rcpt_count,
		.rcpts = d->rcpt_scratch,
	};
	ss->commit_qid = m->qid;
	ss->commit_rcpt_count = rcpt_count;
	int rc = spool_commit(d->p.spool, m, &renv, ring_ud(d->op_commit, ss->slot, ss->gen));
	if (rc < 0)
		spool_body_abandon(d->p.spool, m);
	msg_unref(m);   /* the spool holds its own reference while it needs one */
	if (rc < 0)
		smtpd_commit_failed(ss, rc);
}

static void
smtpd_reply(struct smtpd_session *ss, struct slice data)
{
	if (conn_write(ss->c, data) != 0)
		conn_abort(ss->c);   /* a client that reads nothing: nothing more to say to it */
}

static void
smtpd_auth_refused(struct smtpd_session *ss)
{
	struct smtp_actions acts = { .count = 0 };
	smtp_server_auth_done(&ss->smtp, -EAGAIN, &acts);
	for (uint32_t i = 0; i < acts.count; i++) {
		if (acts.items[i].type == SMTP_ACTION_REPLY)
			smtpd_reply(ss, acts.items[i].data);
	}
}

static void
smtpd_actions(struct smtpd_session *ss, const struct smtp_actions *acts)
{
	for (uint32_t i = 0; i < acts->count; i++) {
		const struct smtp_action *a = &acts->items[i];
		switch (a->type) {
		case SMTP_ACTION_REPLY:
			smtpd_reply(ss, a->data);
			break;
		case SMTP_ACTION_BODY_BEGIN:
			smtpd_msg_begin(ss);
			break;
		case SMTP_ACTION_BODY:
			smtpd_msg_append(ss, a->data);
			break;
		case SMTP_ACTION_BODY_DISCARD:
			smtpd_msg_drop(ss);
			break;
		case SMTP_ACTION_COMMIT:
			smtpd_msg_commit(ss);
			break;
		case SMTP_ACTION_STARTTLS:
			/* Not offered until the TLS stage exists; when it is, the bytes after the command
			 * are TLS (RFC 3207 4.2) and must not reach the machine. Until then: close. */
			conn_close(ss->c);
			break;
		case SMTP_ACTION_AUTH:
			/* Not offered on any listener until AUTH is wired in: a machine that asks
			 * anyway is told "454 try later", never "235". */
			smtpd_auth_refused(ss);
			break;
		case SMTP_ACTION_CLOSE:
			conn_close(ss->c);
			break;
		}
	}
}

static bool
smtpd_can_feed(const struct smtpd_session *ss)
{
	return !smtp_server_closed(&ss->smtp) && ss->smtp.state != SMTP_STATE_COMMIT_WAIT
		&& conn_unsent(ss->c) < CONN_OUTPUT_SOFT_MAX;
}

static size_t
smtpd_input(void *s, struct conn *c, struct slice in)
{
	struct smtpd_session *ss = s;
	ASSERT(ss->c == c);
	size_t used = 0;
	while (smtpd_can_feed(ss)) {
		struct smtp_actions acts = { .count = 0 };
		size_t n = smtp_server_feed(&ss->smtp, slice_skip(in, used), &acts);
		smtpd_actions(ss, &acts);
		used += n;
		if (n == 0 && acts.count == 0)
			break;
	}
	smtpd_idle(ss);
	return used;
}

static void
smtpd_timeout(void *s, struct conn *c)
{
	struct smtpd_session *ss = s;
	struct smtp_actions acts = { .count = 0 };
	smtp_server_timeout(&ss->smtp, &acts);
	smtpd_actions(ss, &acts);
	smtpd_msg_drop(ss);
	conn_close(c);
}

static void
smtpd_closed(void *s, struct conn *c, int res)
{
	struct smtpd_session *ss = s;
	struct smtpd *d = ss->d;
	/* A message not yet committed is dropped: it was never acknowledged (RFC 5321 3.3). A
	 * commit in flight stands all the same; its event finds the slot's generation moved on. */
	smtpd_msg_drop(ss);
	log_conn_close(d->ring->now_real_ms, d->ring->shard, conn_peer_text(c), ss->messages,
		d->ring->now_ms - ss->connected_ms);
	smtpd_slot_free(ss);
}

static void
smtpd_connected(void *s, struct conn *c, int res)
{
	ASSERT(false);   /* server sessions are accepted, never connected */
}

static const struct conn_session_ops smtpd_ops = {
	.input = smtpd_input,
	.connected = smtpd_connected,
	.timeout = smtpd_timeout,
	.closed = smtpd_closed,
};

static void
smtpd_refuse(int fd, struct slice reply)
{
	(void)!send(fd, reply.ptr, reply.len, MSG_DONTWAIT | MSG_NOSIGNAL);
	close(fd);
}

void
smtpd_accept(struct smtpd *d, int fd, uint32_t listener)
{
	ASSERT(listener < d->p.profile_count);
	if (d->ring->stopping) {
		smtpd_refuse(fd, SLICE_LIT("421 4.3.2 Service shutting down, try again later\r\n"));
		return;
	}
	struct smtpd_session *ss = smtpd_slot_alloc(d);
	struct conn *c = ss == NULL ? NULL : conn_adopt(d->p.conns, fd, listener, &smtpd_ops, ss);
	if (c == NULL) {
		if (ss != NULL)
			smtpd_slot_free(ss);
		smtpd_refuse(fd, SLICE_LIT("421 4.7.0 Too many connections, try again later\r\n"));
		return;
	}
	ss->c = c;
	ss->connected_ms = d->ring->now_ms;
	/* A user of this machine (the Unix socket of local_listen, where `ringmta sendmail` hands
	 * mail in) may relay, as mail picked up by Postfix's pickup may: the socket is not reachable
	 * from the network. Anyone else relays only from relay_networks. */
	const struct sockaddr *peer = (const struct sockaddr *)conn_peer(c);
	ss->relay_allowed = peer->sa_family == AF_UNIX || policy_client_may_relay(d->p.policy, peer);
	log_conn_open(d->ring->now_real_ms, d->ring->shard, conn_peer_text(c), ss->relay_allowed);
	smtp_server_init(&ss->smtp, &d->profiles[listener], ss);
	struct smtp_actions acts = { .count = 0 };
	smtp_server_start(&ss->smtp, &acts);
	smtpd_actions(ss, &acts);
	smtpd_idle(ss);
}

/* The spool's verdict on a session's COMMIT (a posted event). */
static void
smtpd_commit_done(void *ctx, const struct io_uring_cqe *cqe)
{
	struct smtpd *d = ctx;
	uint32_t slot = ring_ud_slot(cqe->user_data);
	if (slot >= d->slot_count)
		return;
	struct smtpd_session *ss = d->slots[slot];
	if (!ss->live || ss->gen != ring_ud_gen(cqe->user_data))
		return;   /* the client left before the answer: the message stands all the same */
	uint64_t qid = ss->commit_qid;
	char id[QUEUE_ID_STR_LEN + 1];
	queue_id_format(qid, id);
	if (cqe->res == 0) {
		const struct smtp_envelope *env = smtp_server_envelope(&ss->smtp);
		const char *peer = conn_peer_text(ss->c);
		log_accepted(d->ring->now_real_ms, qid, env->mail_from, env->body_size,
			ss->commit_rcpt_count, slice_make(peer, strlen(peer)), env->helo);
		d->stats.messages_committed++;
		ss->messages++;
	}
	struct smtp_actions acts = { .count = 0 };
	smtp_server_committed(&ss->smtp, cqe->res, slice_make(id, QUEUE_ID_STR_LEN), &acts);
	smtpd_actions(ss, &acts);
	if (d->ring->stopping) {
		acts.count = 0;
		smtp_server_shutdown(&ss->smtp, &acts);
		smtpd_actions(ss, &acts);
	}
	smtpd_idle(ss);
	conn_kick(ss->c);
}

/* Shutdown: 421 to every session not waiting for a commit; those get theirs after it. */
static void
smtpd_stop(void *ctx)
{
	struct smtpd *d = ctx;
	for (uint32_t i = 0; i < d->slot_count; i++) {
		struct smtpd_session *ss = d->slots[i];
		if (!ss->live || ss->smtp.state == SMTP_STATE_COMMIT_WAIT)
			continue;
		struct smtp_actions acts = { .count = 0 };
		smtp_server_shutdown(&ss->smtp, &acts);
		smtpd_actions(ss, &acts);
		smtpd_msg_drop(ss);
		conn_close(ss->c);
	}
}

static const struct ring_hooks smtpd_hooks = {
	.name = "smtpd",
	.stop = smtpd_stop,
};

int
smtpd_init(struct ring *r, const struct smtpd_params *p, struct smtpd **out)
{
	struct smtpd *d = calloc(1, sizeof(*d));
	if (d == NULL)
		return -ENOMEM;
	d->ring = r;
	d->p = *p;
	d->slot_max = p->cfg->max_connections;
	d->free_head = UINT32_MAX;
	d->slots = calloc(d->slot_max, sizeof(*d->slots));
	d->rcpt_scratch = calloc(SMTP_RCPT_COUNT_MAX, sizeof(*d->rcpt_scratch));
	d->profiles = calloc(p->profile_count, sizeof(*d->profiles));
	if (d->slots == NULL || d->rcpt_scratch == NULL || d->profiles == NULL) {
		smtpd_fini(d);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < p->profile_count; i++) {
		d->profiles[i] = p->profiles[i];
		d->profiles[i].rcpt_check = smtpd_rcpt_check;
	}
	rcpt_dedup_init(&d->dedup);
	d->cmd_class = conn_pool_timeout_class(p->conns, p->cfg->cmd_timeout_ms);
	d->data_class = conn_pool_timeout_class(p->conns, p->cfg->data_timeout_ms);
	d->op_commit = ring_op_register(r, smtpd_commit_done, d);
	ring_hooks_register(r, &smtpd_hooks, d);
	*out = d;
	return 0;
}

void
smtpd_fini(struct smtpd *d)
{
	if (d == NULL)
		return;
	for (uint32_t i = 0; i < d->slot_count; i++) {
		smtpd_msg_drop(d->slots[i]);
		free(d->slots[i]);
	}
	free(d->slots);
	free(d->rcpt_scratch);
	free(d->profiles);
	free(d);
}

const struct smtpd_stats *
smtpd_stats(const struct smtpd *d)
{
	return &d->stats;
}
