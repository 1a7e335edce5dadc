/* engine/smtpd.c - SMTP server sessions on the transport; see smtpd.h. */
#include "engine/smtpd.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/log.h"
#include "base/queue_id.h"
#include "base/workpool.h"
#include "conf/config.h"
#include "conf/passwd.h"
#include "conf/policy.h"
#include "engine/rcpt_dedup.h"
#include "proto/msa_fixup.h"
#include "proto/received.h"
#include "queue/msg.h"
#include "queue/record.h"
#include "queue/spool.h"
#include "tls/tls_ctx.h"
#include "tls/tls_stage.h"

struct smtpd_session {
	struct smtpd *d;
	struct conn *c;
	uint32_t slot;
	uint32_t gen;
	uint32_t next_free;
	bool live;
	bool relay_allowed;
	bool msa;                            /* the listener's profile fixes submissions up */
	bool fixing;                         /* msg's header section goes through fix */
	bool auth_busy;                      /* job is with the worker pool */
	bool free_deferred;                  /* closed while auth_busy: freed when the job is back */
	uint32_t messages;
	uint64_t connected_ms;
	struct msg *msg;                     /* the body being received */
	uint64_t commit_qid;                 /* the message whose commit we wait for */
	uint32_t commit_rcpt_count;          /* its distinct recipients */
	struct passwd_job job;               /* AUTH: the credentials being verified */
	struct __kernel_timespec auth_delay; /* read by the kernel: the wait before a 535 */
	struct smtp_server smtp;             /* its arena is touched only when used */
	struct msa_fixup fix;                /* on MSA profiles, RFC 6409 8 (touched only there) */
};

struct smtpd {
	struct ring *ring;
	struct smtpd_params p;
	struct smtp_server_config *profiles; /* p.profiles' machines, with rcpt_check set */
	struct smtpd_session **slots;
	uint32_t slot_count;
	uint32_t slot_max;
	uint32_t free_head;
	uint8_t op_commit;
	uint8_t op_auth;
	uint8_t op_auth_delay;
	uint32_t auth_busy;                  /* jobs out with the worker pool */
	struct tls_server_view tls_view;     /* valid with p.tls */
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
	bool relay = ss->relay_allowed || smtp_server_authenticated(&ss->smtp);
	return policy_rcpt(ss->d->p.policy, relay, local_part, domain, quoted);
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
smtpd_slot_push(struct smtpd_session *ss)
{
	struct smtpd *d = ss->d;
	ss->next_free = d->free_head;
	d->free_head = ss->slot;
}

/* The session is over; its slot is reused once no job of it is out. */
static void
smtpd_slot_free(struct smtpd_session *ss)
{
	ss->live = false;
	ss->gen++;
	ss->c = NULL;
	if (ss->auth_busy)
		ss->free_deferred = true;
	else
		smtpd_slot_push(ss);
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
	ss->msg = msg_new(qid, d->ring->now_real_ms,
		cfg->max_message_size + RECEIVED_LEN_MAX + MSA_FIXUP_FIELDS_MAX, d->p.conns->bufs);
	if (ss->msg == NULL)
		return;   /* the commit fails with 451 below */
	const struct smtp_envelope *env = smtp_server_envelope(&ss->smtp);
	struct slice only_rcpt = env->rcpt_count == 1 ? smtp_server_rcpt(&ss->smtp, 0).path
		: SLICE_LIT("");
	const char *peer = conn_peer_text(ss->c);
	struct slice local = SLICE_LIT("");
	if (((const struct sockaddr *)conn_peer(ss->c))->sa_family == AF_UNIX)
		local = slice_skip(slice_make(peer, strlen(peer)), sizeof("local:") - 1);
	char tls[TLS_STAGE_DESCRIBE_MAX];
	size_t tls_len = 0;
	if (conn_tls_ready(ss->c))
		tls_len = tls_stage_describe(conn_tls(ss->c), tls, sizeof(tls));
	uint8_t hdr[RECEIVED_LEN_MAX];
	size_t len = received_format(hdr, sizeof(hdr), &(struct received_info){
		.helo = env->helo,
		.client_addr = slice_make(peer, strlen(peer)),
		.local_user = local,
		.myhostname = slice_make(cfg->myhostname, strlen(cfg->myhostname)),
		.protocol = received_protocol(env->esmtp, smtp_server_tls_active(&ss->smtp),
			smtp_server_authenticated(&ss->smtp)),
		.tls = slice_make(tls, tls_len),
		.queue_id = qid,
		.for_rcpt = only_rcpt,
		.now_ms = d->ring->now_real_ms,
	});
	if (msg_append(ss->msg, slice_make(hdr, len)) != 0)
		smtpd_msg_drop(ss);
	ss->fixing = ss->msa;
	if (ss->fixing)
		msa_fixup_init(&ss->fix, d->ring->now_real_ms, qid,
			slice_make(cfg->myhostname, strlen(cfg->myhostname)));
}

static void
smtpd_msg_append_fixed(struct smtpd_session *ss, const struct msa_fixup_out *o)
{
	for (uint32_t i = 0; i < o->count; i++)
		(void)spool_body_append(ss->d->p.spool, ss->msg, o->parts[i]);
	ss->fixing = !msa_fixup_done(&ss->fix);
}

/* A body slice, straight from the receive buffer it is in: the spool keeps it there and writes
 * it from there (no copy), or copies it aside if too little comes in a turn. On a submission
 * profile the header section goes through the MSA filter first (Date:, Message-ID:). */
static void
smtpd_msg_append(struct smtpd_session *ss, struct slice data)
{
	if (ss->msg == NULL)
		return;
	if (!ss->fixing) {
		(void)spool_body_append(ss->d->p.spool, ss->msg, data);   /* a failure fails COMMIT */
		return;
	}
	struct msa_fixup_out o;
	msa_fixup_feed(&ss->fix, data, &o);
	smtpd_msg_append_fixed(ss, &o);
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
	if (ss->msg != NULL && ss->fixing) {
		struct msa_fixup_out o;
		msa_fixup_end(&ss->fix, &o);
		smtpd_msg_append_fixed(ss, &o);
	}
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
smtpd_log_auth(struct smtpd_session *ss, int result)
{
	struct smtpd *d = ss->d;
	char buf[LOG_LINE_MAX];
	struct log_line l;
	const char *peer = conn_peer_text(ss->c);
	log_line_begin(&l, buf, sizeof(buf), d->ring->now_real_ms, "auth");
	log_line_slice(&l, "client", slice_make(peer, strlen(peer)));
	log_line_slice(&l, "user", slice_make(ss->job.user, ss->job.user_len));
	log_line_str(&l, "result", result == 0 ? "ok" : result == -EACCES ? "failed" : "error");
	log_write(buf, log_line_end(&l));
	if (result == 0)
		d->stats.auth_ok++;
	else
		d->stats.auth_failed++;
}

/* The machine's verdict, and the replies it gives. */
static void
smtpd_auth_verdict(struct smtpd_session *ss, int result)
{
	smtpd_log_auth(ss, result);
	struct smtp_actions acts = { .count = 0 };
	smtp_server_auth_done(&ss->smtp, result, &acts);
	smtpd_actions(ss, &acts);
	smtpd_idle(ss);
	conn_kick(ss->c);
}

/* AUTH action: the credentials go to a worker; its verdict comes back as a completion. */
static void
smtpd_auth_start(struct smtpd_session *ss)
{
	struct smtpd *d = ss->d;
	struct slice user, password;
	smtp_server_auth_credentials(&ss->smtp, &user, &password);
	int rc = -EAGAIN;
	ss->job.user_len = 0;
	if (d->p.passwd != NULL && !d->ring->stopping
		&& passwd_job_init(&ss->job, d->p.passwd, user, password)) {
		rc = workpool_submit(d->p.workpool, d->ring->fd, ring_ud(d->op_auth, ss->slot, ss->gen),
			passwd_job_run, &ss->job);
		if (rc < 0)
			passwd_job_cancel(&ss->job);
	}
	if (rc == 0) {
		ss->auth_busy = true;
		d->auth_busy++;
		return;
	}
	smtpd_auth_verdict(ss, rc == -EAGAIN || rc == -ESHUTDOWN ? -EAGAIN : rc);
}

/* A completion for a session's AUTH (the worker's verdict, or the end of the wait before a
 * 535): the session, or NULL if the client left meanwhile (its slot is free now). */
static struct smtpd_session *
smtpd_auth_back(struct smtpd *d, const struct io_uring_cqe *cqe)
{
	uint32_t slot = ring_ud_slot(cqe->user_data);
	ASSERT(slot < d->slot_count);
	struct smtpd_session *ss = d->slots[slot];
	ASSERT(ss->auth_busy);
	ss->auth_busy = false;
	d->auth_busy--;
	if (ss->free_deferred) {
		ss->free_deferred = false;
		smtpd_slot_push(ss);
		return NULL;
	}
	ASSERT(ss->live && ss->gen == ring_ud_gen(cqe->user_data));
	return ss;
}

/* A failed authentication is answered after SMTPD_AUTH_FAIL_DELAY_MS times the failures so
 * far, this one included: guessing gets slower, then the machine closes with 421. The slot
 * stays busy while the kernel's timeout runs. Not while the shard stops. */
static bool
smtpd_auth_delay(struct smtpd_session *ss)
{
	struct smtpd *d = ss->d;
	if (d->ring->stopping)
		return false;
	uint64_t ms = (uint64_t)SMTPD_AUTH_FAIL_DELAY_MS * (smtp_server_auth_failures(&ss->smtp) + 1u);
	ss->auth_delay = (struct __kernel_timespec){ .tv_sec = (long long)(ms / 1000u),
		.tv_nsec = (long long)(ms % 1000u) * 1000000 };
	struct io_uring_sqe *sqe = ring_sqe(d->ring);
	io_uring_prep_timeout(sqe, &ss->auth_delay, 0, 0);
	io_uring_sqe_set_data64(sqe, ring_ud(d->op_auth_delay, ss->slot, ss->gen));
	ss->auth_busy = true;
	d->auth_busy++;
	return true;
}

/* A worker's verdict on a session's credentials. */
static void
smtpd_auth_done(void *ctx, const struct io_uring_cqe *cqe)
{
	struct smtpd *d = ctx;
	struct smtpd_session *ss = smtpd_auth_back(d, cqe);
	if (ss == NULL)
		return;
	int result = cqe->res == 0 || cqe->res == -EACCES ? cqe->res : -EIO;
	if (result == -EACCES && smtpd_auth_delay(ss))
		return;
	smtpd_auth_verdict(ss, result);
}

/* The wait before a 535 is over. */
static void
smtpd_auth_delay_done(void *ctx, const struct io_uring_cqe *cqe)
{
	struct smtpd *d = ctx;
	struct smtpd_session *ss = smtpd_auth_back(d, cqe);
	if (ss != NULL)
		smtpd_auth_verdict(ss, -EACCES);
}

/* STARTTLS action: its 220 is written (it leaves in the clear); TLS starts behind it. */
static void
smtpd_starttls(struct smtpd_session *ss)
{
	struct smtpd *d = ss->d;
	if (d->p.tls == NULL || conn_tls_server(ss->c, tls_server_view_get(&d->tls_view),
		d->cmd_class) != 0)
		conn_close(ss->c);   /* not offered without TLS; else out of memory */
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
			smtpd_starttls(ss);
			break;
		case SMTP_ACTION_AUTH:
			smtpd_auth_start(ss);
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

/* The handshake is done (after STARTTLS: the machine starts over) or TLS failed (the
 * connection closes by itself). */
static void
smtpd_tls_done(void *s, struct conn *c, int res)
{
	struct smtpd_session *ss = s;
	struct smtpd *d = ss->d;
	char buf[LOG_LINE_MAX];
	struct log_line l;
	const char *peer = conn_peer_text(c);
	log_line_begin(&l, buf, sizeof(buf), d->ring->now_real_ms, res == 0 ? "tls" : "tls_failed");
	log_line_slice(&l, "client", slice_make(peer, strlen(peer)));
	if (res == 0) {
		char what[TLS_STAGE_DESCRIBE_MAX];
		size_t len = tls_stage_describe(conn_tls(c), what, sizeof(what));
		log_line_str(&l, "resumed", tls_stage_resumed(conn_tls(c)) ? "yes" : "no");
		log_line_quoted(&l, "detail", slice_make(what, len));
		d->stats.tls_handshakes++;
	} else {
		const char *why = conn_tls_reason(c);
		log_line_quoted(&l, "reason", slice_make(why, strlen(why)));
		d->stats.tls_failures++;
	}
	log_write(buf, log_line_end(&l));
	if (res != 0)
		return;
	if (ss->smtp.state == SMTP_STATE_TLS_WAIT)
		smtp_server_tls_started(&ss->smtp);
	smtpd_idle(ss);
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
	.tls_done = smtpd_tls_done,
};

static void
smtpd_refuse(int fd, struct slice reply)
{
	(void)!send(fd, reply.ptr, reply.len, MSG_DONTWAIT | MSG_NOSIGNAL);
	close(fd);
}

void
smtpd_accept(void *smtpd, int fd, uint32_t listener)
{
	struct smtpd *d = smtpd;
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
	ss->msa = d->p.profiles[listener].msa_fixup;
	if (d->p.profiles[listener].implicit_tls) {
		ASSERT(d->p.tls != NULL);
		if (conn_tls_server(c, tls_server_view_get(&d->tls_view), d->cmd_class) != 0) {
			conn_abort(c);
			return;
		}
		smtp_server_tls_started(&ss->smtp);   /* the greeting below is sealed */
	}
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

/* Stopped once no job is out with the worker pool (it answers through this ring). */
static bool
smtpd_idle_hook(void *ctx)
{
	return ((struct smtpd *)ctx)->auth_busy == 0;
}

static const struct ring_hooks smtpd_hooks = {
	.name = "smtpd",
	.stop = smtpd_stop,
	.idle = smtpd_idle_hook,
};

int
smtpd_init(struct ring *r, const struct smtpd_params *p, struct smtpd **out)
{
	struct smtpd *d = calloc(1, sizeof(*d));
	if (d == NULL)
		return -ENOMEM;
	d->ring = r;
	d->p = *p;
	ASSERT((p->passwd == NULL) == (p->workpool == NULL));
	if (p->tls != NULL)
		tls_server_view_init(&d->tls_view, p->tls);
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
		d->profiles[i] = p->profiles[i].smtp;
		d->profiles[i].rcpt_check = smtpd_rcpt_check;
	}
	rcpt_dedup_init(&d->dedup);
	d->cmd_class = conn_pool_timeout_class(p->conns, p->cfg->cmd_timeout_ms);
	d->data_class = conn_pool_timeout_class(p->conns, p->cfg->data_timeout_ms);
	d->op_commit = ring_op_register(r, smtpd_commit_done, d);
	d->op_auth = ring_op_register(r, smtpd_auth_done, d);
	d->op_auth_delay = ring_op_register(r, smtpd_auth_delay_done, d);
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
	if (d->p.tls != NULL)
		tls_server_view_fini(&d->tls_view);
	free(d);
}

const struct smtpd_stats *
smtpd_stats(const struct smtpd *d)
{
	return &d->stats;
}
