/* deliver/qmgr.c - due messages to agents, results to the spool; see qmgr.h. */
#include "deliver/qmgr.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "base/log.h"
#include "conf/config.h"
#include "conf/policy.h"
#include "base/queue_id.h"
#include "deliver/bounce.h"
#include "deliver/maildir.h"
#include "deliver/outbound.h"
#include "queue/record.h"
#include "queue/spool.h"

#define QMGR_RCPT_BITS   10u                    /* recipient index in a result's user_data */
_Static_assert(RECORD_RCPT_MAX <= (1u << QMGR_RCPT_BITS), "a recipient index fits");
_Static_assert(QMGR_MSGS_MAX << QMGR_RCPT_BITS <= RING_SLOT_MAX, "slot and recipient fit");
_Static_assert(QMGR_BUF_SIZE > DSN_SIZE_LIMIT_DEFAULT, "an original a DSN returns is read whole");
_Static_assert(RECORD_PAYLOAD_MAX + QMGR_BUF_SIZE <= RING_RW_MAX, "a record read is never cut");

enum qmgr_outcome { QMGR_SENT, QMGR_TEMPFAIL, QMGR_PERMFAIL };

struct qmgr_msg {
	bool busy;
	uint32_t gen;
	uint64_t qid;
	uint8_t *buf;                   /* QMGR_BUF_SIZE from the slab, or a larger malloc'd one */
	uint32_t buf_cap;
	uint32_t want;                  /* octets asked of the read in flight, then read */
	struct record_envelope_view v;
	struct spool_body body;         /* its parts and rest (borrows buf) */
	uint8_t *head;                  /* the body's first octets: in buf, or malloc'd (PARTS) */
	uint32_t head_len;              /* read so far */
	uint32_t head_cap;
	bool head_owned;
	uint32_t next_rcpt;             /* dispatch cursor over the envelope's recipients */
	uint32_t outstanding;           /* agent jobs running */
	struct bounce_item *reports;    /* v.rcpt_count entries, allocated at the first report */
	uint32_t report_count;
	bool bouncing;                  /* the DSN is being committed */
	bool waiting;                   /* on the list of messages waiting for agent slots */
	struct qmgr_msg *next_wait;
	bool remote_done;               /* its remote recipients went to the outbound agent */
	struct outbound_req *oreqs;     /* one per recipient domain, until their results */
	struct outbound_rcpt *orcpts;
	struct spool_extent *oext;      /* where the body is, for the outbound sessions */
};

struct qmgr {
	struct ring *ring;
	struct qmgr_params p;
	uint8_t op_read;
	uint8_t op_head;
	uint8_t op_result;
	uint8_t op_bounce;
	uint8_t op_remote;
	uint8_t *slab;                  /* QMGR_MSGS_MAX buffers, touched only when used */
	struct qmgr_msg msgs[QMGR_MSGS_MAX];
	uint32_t busy;
	uint32_t free_slots[QMGR_MSGS_MAX];   /* [busy ..) are the free slots, next first */
	struct qmgr_msg *wait_head, *wait_tail;
	struct qmgr_stats stats;
	struct tally destinations;
};

static uint32_t
qmgr_slot(const struct qmgr *q, const struct qmgr_msg *m)
{
	return (uint32_t)(m - q->msgs);
}

/* The line of a remote attempt: relay=host[ip]:port, and delays=a/b/c/d as Postfix's: queue
 * wait, routing and DNS, connection set-up, transmission; tls="TLSv1.3 with cipher ..." when
 * the transaction went over TLS. */
static void
qmgr_log_remote(struct qmgr *q, struct qmgr_msg *m, struct slice to, enum log_status st,
	const char *dsn, const struct outbound_result *res, uint64_t delay)
{
	static const char *const names[] = { [LOG_STATUS_DELIVERED] = "delivered",
		[LOG_STATUS_DEFERRED] = "deferred", [LOG_STATUS_BOUNCED] = "bounced",
		[LOG_STATUS_EXPIRED] = "expired" };
	char buf[LOG_LINE_MAX];
	char delays[96];
	struct log_line l;
	uint64_t parts = (uint64_t)res->dns_ms + res->connect_ms + res->xmit_ms;
	uint64_t wait = delay > parts ? delay - parts : 0;
	snprintf(delays, sizeof(delays), "%.3f/%.3f/%.3f/%.3f", (double)wait / 1000.0,
		res->dns_ms / 1000.0, res->connect_ms / 1000.0, res->xmit_ms / 1000.0);
	log_line_begin(&l, buf, sizeof(buf), q->ring->now_real_ms, "delivery");
	log_line_qid(&l, m->qid);
	log_line_path(&l, "to", to);
	log_line_str(&l, "status", names[st]);
	log_line_seconds(&l, "delay", delay);
	log_line_str(&l, "dsn", dsn);
	log_line_quoted(&l, "detail", slice_make(res->reply, strlen(res->reply)));
	log_line_str(&l, "relay", res->relay[0] != '\0' ? res->relay : "none");
	log_line_str(&l, "delays", delays);
	if (res->tls[0] != '\0')
		log_line_quoted(&l, "tls", slice_make(res->tls, strlen(res->tls)));
	log_write(buf, log_line_end(&l));
}

static void
qmgr_log(struct qmgr *q, struct qmgr_msg *m, struct slice to, enum log_status st,
	const char *dsn, const char *detail, const struct outbound_result *res)
{
	uint64_t now = q->ring->now_real_ms;
	uint64_t delay = now > m->v.arrival_ms ? now - m->v.arrival_ms : 0;
	if (res != NULL) {
		qmgr_log_remote(q, m, to, st, dsn, res, delay);
		return;
	}
	log_delivery(now, m->qid, to, st, delay, slice_make(dsn, strlen(dsn)),
		slice_make(detail, strlen(detail)));
}

/* Remembers what the DSN of this attempt must say of recipient rcpt, if one is due for it.
 * Returns whether it will be reported. */
static bool
qmgr_report(struct qmgr_msg *m, uint32_t rcpt, enum dsn_action action, const char *status,
	const char *diag, bool mark_bounced, uint64_t retry_until_ms,
	const struct outbound_result *res)
{
	if (!bounce_due(&m->v, rcpt, action))
		return false;
	if (m->reports == NULL) {
		m->reports = calloc(m->v.rcpt_count, sizeof(*m->reports));
		if (m->reports == NULL)
			return false;   /* no notice then: the outcome itself stands and is logged */
	}
	ASSERT(m->report_count < m->v.rcpt_count);
	struct bounce_item *b = &m->reports[m->report_count++];
	b->rcpt = rcpt;
	b->action = action;
	b->diag_type = res != NULL && res->remote ? DSN_DIAG_SMTP : DSN_DIAG_LOCAL;
	b->mark_bounced = mark_bounced;
	b->retry_until_ms = retry_until_ms;
	snprintf(b->status, sizeof(b->status), "%s", status);
	snprintf(b->diag, sizeof(b->diag), "%s", diag);
	b->remote_mta[0] = '\0';
	if (b->diag_type == DSN_DIAG_SMTP) {   /* "mx.example.com[192.0.2.1]:25": the name */
		const char *br = strchr(res->relay, '[');
		size_t n = br != NULL ? (size_t)(br - res->relay) : strlen(res->relay);
		snprintf(b->remote_mta, sizeof(b->remote_mta), "%.*s", (int)n, res->relay);
	}
	return true;
}

/* A recipient failed for good: bounced once its notice is durable, at once if none is due. */
static void
qmgr_failed(struct qmgr *q, struct qmgr_msg *m, uint32_t i, const char *status,
	const char *detail, const struct outbound_result *res)
{
	if (!qmgr_report(m, i, DSN_ACTION_FAILED, status, detail, true, 0, res))
		spool_rcpt_bounced(q->p.spool, m->qid, i);
}

/* Keeps the attempt's reply for `ringmta queue list`: the RFC 3463 status, the SMTP code a
 * receiver's reply ("451 4.7.1 ...") begins with, and the text (the reply, or our reason). */
static void
qmgr_note(struct qmgr *q, struct qmgr_msg *m, uint32_t i, const char *status,
	const char *detail, const struct outbound_result *res)
{
	uint8_t dsn[3] = { 0, 0, 0 };
	unsigned a, b, c;
	if (sscanf(status, "%u.%u.%u", &a, &b, &c) == 3 && a <= 9 && b <= 255 && c <= 255) {
		dsn[0] = (uint8_t)a;
		dsn[1] = (uint8_t)b;
		dsn[2] = (uint8_t)c;
	}
	uint16_t code = 0;
	const char *r = res != NULL && res->remote ? res->reply : "";
	if (r[0] >= '2' && r[0] <= '5' && r[1] >= '0' && r[1] <= '9' && r[2] >= '0' && r[2] <= '9')
		code = (uint16_t)((r[0] - '0') * 100 + (r[1] - '0') * 10 + (r[2] - '0'));
	spool_rcpt_note(q->p.spool, m->qid, i, code, dsn, slice_make(detail, strlen(detail)));
}

/* One recipient's attempt is over: record it in the spool, log it, remember what to report.
 * res: the outbound agent's result for a remote recipient (relay, delays, the reply), or
 * NULL. */
static void
qmgr_outcome_ex(struct qmgr *q, struct qmgr_msg *m, uint32_t i, enum qmgr_outcome o,
	const char *status, const char *detail, const struct outbound_result *res)
{
	struct record_rcpt r;
	int rc = record_envelope_rcpt(&m->v, i, &r);
	ASSERT(rc == 0);
	struct spool *sp = q->p.spool;
	qmgr_note(q, m, i, status, detail, res);
	if (o == QMGR_SENT) {
		spool_rcpt_delivered(sp, m->qid, i);
		q->stats.delivered++;
		tally_add(&q->destinations, r.domain, QMGR_DEST_DELIVERED);
		uint64_t now = q->ring->now_real_ms;
		hist_add(&q->stats.delivery_latency,
			(now > m->v.arrival_ms ? now - m->v.arrival_ms : 0) * 1000u);
		qmgr_log(q, m, r.path, LOG_STATUS_DELIVERED, status, detail, res);
		/* RFC 3461 6.2.1.3: a receiver that took the DSN parameters reports success itself;
		 * to one that did not, the mail was "relayed". */
		if (res == NULL || !res->dsn_passed)
			(void)qmgr_report(m, i, res == NULL ? DSN_ACTION_DELIVERED : DSN_ACTION_RELAYED,
				status, detail, false, 0, res);
		return;
	}
	if (o == QMGR_TEMPFAIL) {
		uint64_t next;
		bool warn = false;
		if (spool_rcpt_defer(sp, m->qid, i, &next, &warn) == 0) {
			q->stats.deferred++;
			tally_add(&q->destinations, r.domain, QMGR_DEST_DEFERRED);
			qmgr_log(q, m, r.path, LOG_STATUS_DEFERRED, status, detail, res);
			if (warn)
				(void)qmgr_report(m, i, DSN_ACTION_DELAYED, status, detail, false,
					m->v.arrival_ms + (uint64_t)q->p.cfg->queue_lifetime_s * 1000u, res);
			return;
		}
		/* RFC 3463 4.4.7: delivery time expired; the diagnostic is the last reason. */
		q->stats.expired++;
		tally_add(&q->destinations, r.domain, QMGR_DEST_EXPIRED);
		qmgr_log(q, m, r.path, LOG_STATUS_EXPIRED, "4.4.7", detail, res);
		qmgr_failed(q, m, i, "4.4.7", detail, res);
		return;
	}
	q->stats.bounced++;
	tally_add(&q->destinations, r.domain, QMGR_DEST_BOUNCED);
	qmgr_log(q, m, r.path, LOG_STATUS_BOUNCED, status, detail, res);
	qmgr_failed(q, m, i, status, detail, res);
}

static void
qmgr_outcome(struct qmgr *q, struct qmgr_msg *m, uint32_t i, enum qmgr_outcome o,
	const char *status, const char *detail)
{
	qmgr_outcome_ex(q, m, i, o, status, detail, NULL);
}

static void
qmgr_wait(struct qmgr *q, struct qmgr_msg *m)
{
	if (m->waiting)
		return;
	m->waiting = true;
	m->next_wait = NULL;
	if (q->wait_tail != NULL)
		q->wait_tail->next_wait = m;
	else
		q->wait_head = m;
	q->wait_tail = m;
}

static void
qmgr_msg_free(struct qmgr *q, struct qmgr_msg *m)
{
	ASSERT(m->outstanding == 0);
	ASSERT(!m->waiting);
	if (m->buf_cap > QMGR_BUF_SIZE)
		free(m->buf);
	if (m->head_owned)
		free(m->head);
	m->buf = NULL;
	m->head = NULL;
	m->head_owned = false;
	free(m->reports);
	m->reports = NULL;
	m->report_count = 0;
	free(m->oreqs);
	free(m->orcpts);
	free(m->oext);
	m->oreqs = NULL;
	m->orcpts = NULL;
	m->oext = NULL;
	m->remote_done = false;
	m->bouncing = false;
	m->busy = false;
	m->gen = (m->gen + 1) & 0xffffffu;
	ASSERT(q->busy > 0);
	q->busy--;
	q->free_slots[q->busy] = qmgr_slot(q, m);
}

/* The notice could not be queued, or its commit failed: its failed recipients are tried
 * again later (a notice is never dropped while the message is not expired). */
static void
qmgr_bounce_failed(struct qmgr *q, struct qmgr_msg *m, int err)
{
	log_error(q->ring->now_real_ms, "bounce", err);
	for (uint32_t k = 0; k < m->report_count; k++) {
		const struct bounce_item *b = &m->reports[k];
		uint64_t next;
		if (b->mark_bounced
			&& spool_rcpt_defer(q->p.spool, m->qid, b->rcpt, &next, NULL) != 0)
			spool_rcpt_bounced(q->p.spool, m->qid, b->rcpt);   /* expired: no notice */
	}
}

static void
qmgr_log_dsn(struct qmgr *q, struct qmgr_msg *m, uint64_t dsn_qid)
{
	char buf[LOG_LINE_MAX];
	char id[QUEUE_ID_STR_LEN + 1];
	struct log_line l;
	queue_id_format(dsn_qid, id);
	log_line_begin(&l, buf, sizeof(buf), q->ring->now_real_ms, "dsn");
	log_line_qid(&l, m->qid);
	log_line_str(&l, "dsn_qid", id);
	log_line_path(&l, "to", m->v.mail_from);
	log_line_u64(&l, "rcpts", m->report_count);
	log_write(buf, log_line_end(&l));
}

/* Every recipient of the attempt has its outcome: queue the notice if one is due. */
static void
qmgr_msg_end(struct qmgr *q, struct qmgr_msg *m)
{
	if (m->outstanding > 0 || m->next_rcpt < m->v.rcpt_count || m->bouncing)
		return;
	if (m->report_count == 0) {
		qmgr_msg_free(q, m);
		return;
	}
	const struct config *cfg = q->p.cfg;
	struct bounce_original o = { .qid = m->qid, .v = &m->v,
		.message = slice_make(m->head, m->head_len), .whole = m->head_len == m->body.len };
	uint64_t dsn_qid = 0;
	int rc = bounce_queue(q->p.spool, slice_make(cfg->myhostname, strlen(cfg->myhostname)),
		&o, m->reports, m->report_count, q->ring->now_real_ms,
		ring_ud(q->op_bounce, qmgr_slot(q, m), m->gen), &dsn_qid);
	if (rc < 0) {
		qmgr_bounce_failed(q, m, rc);
		qmgr_msg_free(q, m);
		return;
	}
	m->bouncing = true;
	qmgr_log_dsn(q, m, dsn_qid);
}

/* The spool's verdict on the notice: its failed recipients are bounced only once it is
 * durable. */
static void
qmgr_bounce_done(void *ctx, const struct io_uring_cqe *cqe)
{
	struct qmgr *q = ctx;
	struct qmgr_msg *m = &q->msgs[ring_ud_slot(cqe->user_data)];
	ASSERT(m->busy);
	ASSERT(m->bouncing);
	ASSERT(m->gen == ring_ud_gen(cqe->user_data));
	if (cqe->res < 0) {
		qmgr_bounce_failed(q, m, cqe->res);
	} else {
		for (uint32_t k = 0; k < m->report_count; k++) {
			if (m->reports[k].mark_bounced)
				spool_rcpt_bounced(q->p.spool, m->qid, m->reports[k].rcpt);
		}
	}
	m->bouncing = false;
	qmgr_msg_free(q, m);
}

/* A local recipient to Maildir. Returns false when it must wait for a free job slot. */
static bool
qmgr_to_maildir(struct qmgr *q, struct qmgr_msg *m, uint32_t i, const struct record_rcpt *r)
{
	char mailbox[MAILDIR_MAILBOX_MAX];
	if (policy_mailbox_name(q->p.policy, r->local_part, mailbox, sizeof(mailbox)) != 0) {
		qmgr_outcome(q, m, i, QMGR_PERMFAIL, "5.1.1", "no such mailbox");
		return true;
	}
	if (!maildir_can_start(q->p.maildir) || ring_post_reserve(q->ring, 1) != 0)
		return false;
	struct maildir_delivery d = {
		.qid = m->qid,
		.rcpt = i,
		.arrival_ms = m->v.arrival_ms,
		.mailbox = mailbox,
		.mail_from = m->v.mail_from,
		.body_read = slice_make(m->head, m->head_len),
		.body = m->body,
	};
	m->outstanding++;
	maildir_deliver(q->p.maildir, &d,
		ring_ud(q->op_result, (qmgr_slot(q, m) << QMGR_RCPT_BITS) | i, m->gen));
	return true;
}

static bool
qmgr_is_remote(struct qmgr *q, const struct record_rcpt *r)
{
	return r->domain.len > 0 && !policy_domain_is_local(q->p.policy, r->domain);
}

/* The remote recipients in flight of m, or how many (out NULL). */
static uint32_t
qmgr_remote_list(struct qmgr *q, struct qmgr_msg *m, uint32_t *out)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < m->v.rcpt_count; i++) {
		struct record_rcpt r;
		int rc = record_envelope_rcpt(&m->v, i, &r);
		ASSERT(rc == 0);
		if (qmgr_is_remote(q, &r) && spool_rcpt_state(q->p.spool, m->qid, i)
			== INDEX_RCPT_INFLIGHT) {
			if (out != NULL)
				out[n] = i;
			n++;
		}
	}
	return n;
}

/* One request for the recipients of `list` (indices into the envelope) of one domain. */
static void
qmgr_remote_req(struct qmgr *q, struct qmgr_msg *m, struct outbound_req *req,
	struct outbound_rcpt *rcpts, struct slice domain, const struct outbound_body *body)
{
	*req = (struct outbound_req){ .qid = m->qid, .domain = domain, .mail_from = m->v.mail_from,
		.body_type = m->v.body_type, .smtputf8 = m->v.smtputf8, .dsn_ret = m->v.dsn_ret,
		.dsn_envid = m->v.dsn_envid, .body = *body, .rcpts = rcpts };
	(void)q;
}

/* Groups the remote recipients in flight by domain (case-insensitive) into requests for the
 * outbound agent. The requests and their recipients live in m until the results. */
static void
qmgr_dispatch_remote(struct qmgr *q, struct qmgr_msg *m)
{
	if (q->p.outbound == NULL || m->remote_done)
		return;
	m->remote_done = true;
	uint32_t n = qmgr_remote_list(q, m, NULL);
	if (n == 0)
		return;
	uint32_t *list = malloc(n * sizeof(*list));
	m->oreqs = calloc(n, sizeof(*m->oreqs));
	m->orcpts = calloc(n, sizeof(*m->orcpts));
	m->oext = calloc(m->body.parts + 1, sizeof(*m->oext));
	struct outbound_body body = { .ext = m->oext, .len = m->body.len,
		.head = slice_make(m->head, m->head_len) };
	int rc = list == NULL || m->oreqs == NULL || m->orcpts == NULL || m->oext == NULL ? -ENOMEM
		: spool_body_extents(q->p.spool, m->qid, &m->body, m->oext, m->body.parts + 1);
	if (rc >= 0) {
		body.ext_count = (uint32_t)rc;
		rc = 0;
		(void)qmgr_remote_list(q, m, list);
	}
	uint32_t used = 0, groups = 0;
	for (uint32_t k = 0; k < n && rc == 0; k++) {
		if (list[k] == UINT32_MAX)
			continue;
		struct record_rcpt r;
		(void)record_envelope_rcpt(&m->v, list[k], &r);
		struct outbound_req *req = &m->oreqs[groups];
		qmgr_remote_req(q, m, req, &m->orcpts[used], r.domain, &body);
		for (uint32_t j = k; j < n; j++) {
			struct record_rcpt o;
			if (list[j] == UINT32_MAX)
				continue;
			(void)record_envelope_rcpt(&m->v, list[j], &o);
			if (!slice_eq_nocase(o.domain, r.domain))
				continue;
			m->orcpts[used++] = (struct outbound_rcpt){ .path = o.path, .orcpt = o.orcpt,
				.notify = o.notify, .index = list[j] };
			req->rcpt_count++;
			list[j] = UINT32_MAX;
		}
		if (q->ring->stopping || outbound_submit(q->p.outbound, req,
			ring_ud(q->op_remote, (qmgr_slot(q, m) << QMGR_RCPT_BITS) | groups, m->gen)) != 0) {
			for (uint32_t i = 0; i < req->rcpt_count; i++) {
				if (q->ring->stopping)
					spool_rcpt_release(q->p.spool, m->qid, req->rcpts[i].index);
				else
					qmgr_outcome(q, m, req->rcpts[i].index, QMGR_TEMPFAIL, "4.3.0",
						"outbound agent busy");
			}
		} else {
			m->outstanding++;
		}
		groups++;
	}
	if (rc != 0) {
		for (uint32_t i = 0; i < m->v.rcpt_count; i++) {
			struct record_rcpt r;
			(void)record_envelope_rcpt(&m->v, i, &r);
			if (qmgr_is_remote(q, &r)
				&& spool_rcpt_state(q->p.spool, m->qid, i) == INDEX_RCPT_INFLIGHT)
				qmgr_outcome(q, m, i, QMGR_TEMPFAIL, "4.3.0", strerror(-rc));
		}
	}
	free(list);
}

/* The outbound agent's results for one request of a message (a posted event). */
static void
qmgr_remote_result(void *ctx, const struct io_uring_cqe *cqe)
{
	struct qmgr *q = ctx;
	uint32_t slot = ring_ud_slot(cqe->user_data);
	struct qmgr_msg *m = &q->msgs[slot >> QMGR_RCPT_BITS];
	uint32_t g = slot & ((1u << QMGR_RCPT_BITS) - 1);
	ASSERT(m->busy);
	ASSERT(m->gen == ring_ud_gen(cqe->user_data));
	ASSERT(m->outstanding > 0);
	m->outstanding--;
	const struct outbound_req *req = &m->oreqs[g];
	for (uint32_t k = 0; k < req->rcpt_count; k++) {
		const struct outbound_rcpt *r = &req->rcpts[k];
		const struct outbound_result *res = &r->result;
		if (res->outcome == OUTBOUND_UNTRIED) {
			spool_rcpt_release(q->p.spool, m->qid, r->index);
			continue;
		}
		enum qmgr_outcome o = res->outcome == OUTBOUND_DELIVERED ? QMGR_SENT
			: res->outcome == OUTBOUND_BOUNCED ? QMGR_PERMFAIL : QMGR_TEMPFAIL;
		qmgr_outcome_ex(q, m, r->index, o, res->status, res->reply, res);
	}
	qmgr_msg_end(q, m);
}

/* Hands the message's recipients in flight to their agents, as far as agents take them. */
static void
qmgr_dispatch(struct qmgr *q, struct qmgr_msg *m)
{
	struct spool *sp = q->p.spool;
	for (; m->next_rcpt < m->v.rcpt_count; m->next_rcpt++) {
		uint32_t i = m->next_rcpt;
		if (spool_rcpt_state(sp, m->qid, i) != INDEX_RCPT_INFLIGHT)
			continue;
		if (q->ring->stopping) {
			spool_rcpt_release(sp, m->qid, i);   /* tried after the restart */
			continue;
		}
		const struct index_entry *e = spool_entry(sp, m->qid);
		if (e != NULL && e->bounce) {   /* `ringmta queue bounce`: expires as at its lifetime */
			m->remote_done = true;   /* every recipient of the attempt ends here, remote too */
			qmgr_outcome(q, m, i, QMGR_TEMPFAIL, "4.4.7", "bounced by the administrator");
			continue;
		}
		struct record_rcpt r;
		int rc = record_envelope_rcpt(&m->v, i, &r);
		ASSERT(rc == 0);
		if (r.domain.len == 0 || policy_domain_is_local(q->p.policy, r.domain)) {
			if (!qmgr_to_maildir(q, m, i, &r)) {
				qmgr_wait(q, m);
				return;
			}
		} else if (q->p.outbound == NULL) {
			qmgr_outcome(q, m, i, QMGR_TEMPFAIL, "4.4.0", "no outbound transport");
		}
	}
	qmgr_dispatch_remote(q, m);
	qmgr_msg_end(q, m);
}

/* Every in-flight recipient of m goes back untried (the record could not be read). */
static void
qmgr_msg_abandon(struct qmgr *q, struct qmgr_msg *m, uint32_t rcpt_count, int err)
{
	const struct index_entry *e = spool_entry(q->p.spool, m->qid);
	uint32_t n = e != NULL ? e->rcpt_count : rcpt_count;
	for (uint32_t i = 0; i < n; i++) {
		if (spool_rcpt_state(q->p.spool, m->qid, i) == INDEX_RCPT_INFLIGHT)
			spool_rcpt_release(q->p.spool, m->qid, i);
	}
	log_error(q->ring->now_real_ms, "spool read", err);
	m->next_rcpt = m->v.rcpt_count = 0;
	qmgr_msg_free(q, m);
}

/* Reads the message's first `want` octets (at most all of it) into m->buf, which grows past
 * its slab place when an envelope or a table of parts is larger. */
static int
qmgr_read(struct qmgr *q, struct qmgr_msg *m, uint64_t want)
{
	uint64_t size = spool_message_size(q->p.spool, m->qid);
	if (want > size)
		want = size;
	if (want > UINT32_MAX)
		return -EFBIG;
	if (want > m->buf_cap) {
		uint8_t *big = malloc(want);
		if (big == NULL)
			return -ENOMEM;
		if (m->buf_cap > QMGR_BUF_SIZE)
			free(m->buf);
		m->buf = big;
		m->buf_cap = (uint32_t)want;
	}
	m->want = (uint32_t)want;
	return spool_read(q->p.spool, m->qid, 0, m->buf, m->want,
		ring_ud(q->op_read, qmgr_slot(q, m), m->gen), 0);
}

/* Reads the next stretch of the body's first octets (a PARTS body: they are elsewhere). */
static void
qmgr_read_head(struct qmgr *q, struct qmgr_msg *m)
{
	if (m->head_len == m->head_cap) {
		qmgr_dispatch(q, m);
		return;
	}
	int64_t n = spool_body_read(q->p.spool, m->qid, &m->body, m->head_len,
		m->head + m->head_len, m->head_cap - m->head_len,
		ring_ud(q->op_head, qmgr_slot(q, m), m->gen), 0);
	if (n < 0)
		qmgr_msg_abandon(q, m, 0, (int)n);
	else
		m->want = (uint32_t)n;
}

static void
qmgr_head_done(void *ctx, const struct io_uring_cqe *cqe)
{
	struct qmgr *q = ctx;
	struct qmgr_msg *m = &q->msgs[ring_ud_slot(cqe->user_data)];
	ASSERT(m->busy);
	ASSERT(m->gen == ring_ud_gen(cqe->user_data));
	if (cqe->res != (int)m->want) {
		qmgr_msg_abandon(q, m, 0, cqe->res < 0 ? cqe->res : -EIO);
		return;
	}
	m->head_len += m->want;
	qmgr_read_head(q, m);
}

/* The envelope and the body's map are known: find the body's first octets, then dispatch. */
static void
qmgr_body_ready(struct qmgr *q, struct qmgr_msg *m)
{
	m->next_rcpt = 0;
	if (m->body.parts == 0) {
		m->head = m->buf + m->body.rest_off;
		m->head_len = m->want > m->body.rest_off ? m->want - (uint32_t)m->body.rest_off : 0;
		qmgr_dispatch(q, m);
		return;
	}
	m->head_cap = m->body.len < QMGR_BUF_SIZE ? (uint32_t)m->body.len : QMGR_BUF_SIZE;
	m->head = malloc(m->head_cap > 0 ? m->head_cap : 1);
	if (m->head == NULL) {
		qmgr_msg_abandon(q, m, 0, -ENOMEM);
		return;
	}
	m->head_owned = true;
	m->head_len = 0;
	qmgr_read_head(q, m);
}

/* The start of the record is in m->buf: decode it, then the body's map. */
static void
qmgr_read_done(void *ctx, const struct io_uring_cqe *cqe)
{
	struct qmgr *q = ctx;
	struct qmgr_msg *m = &q->msgs[ring_ud_slot(cqe->user_data)];
	ASSERT(m->busy);
	ASSERT(m->gen == ring_ud_gen(cqe->user_data));
	const struct index_entry *e = spool_entry(q->p.spool, m->qid);
	if (cqe->res != (int)m->want || e == NULL) {
		qmgr_msg_abandon(q, m, 0, cqe->res < 0 ? cqe->res : -EIO);
		return;
	}
	uint64_t size = spool_message_size(q->p.spool, m->qid);
	struct slice payload = slice_make(m->buf, m->want);
	uint32_t env_len;
	uint64_t need = 0;
	int rc = record_envelope_length(payload, &env_len);
	if (rc == 0 && env_len > payload.len && m->want < size)
		need = env_len;
	if (rc == 0 && need == 0)
		rc = spool_body_open(q->p.spool, m->qid, payload, env_len, &m->body, &need);
	if (rc == -EAGAIN || (rc == 0 && need > 0)) {
		rc = qmgr_read(q, m, need + QMGR_BUF_SIZE);   /* the envelope or the table is bigger */
		if (rc < 0)
			qmgr_msg_abandon(q, m, 0, rc);
		return;
	}
	if (rc != 0 || record_envelope_decode(payload, &m->v) != 0
		|| m->v.rcpt_count != e->rcpt_count) {
		qmgr_msg_abandon(q, m, 0, -EBADMSG);   /* cannot happen to a record we wrote */
		return;
	}
	qmgr_body_ready(q, m);
}

static void
qmgr_take(struct qmgr *q, uint64_t qid)
{
	ASSERT(q->busy < QMGR_MSGS_MAX);
	uint32_t slot = q->free_slots[q->busy];
	struct qmgr_msg *m = &q->msgs[slot];
	ASSERT(!m->busy);
	m->busy = true;
	q->busy++;
	m->qid = qid;
	m->buf = q->slab + (size_t)slot * QMGR_BUF_SIZE;
	m->buf_cap = QMGR_BUF_SIZE;
	m->outstanding = 0;
	m->report_count = 0;
	m->bouncing = false;
	m->head = NULL;
	m->head_owned = false;
	int rc = qmgr_read(q, m, QMGR_BUF_SIZE);
	if (rc < 0)
		qmgr_msg_abandon(q, m, 0, rc);
}

/* An agent's result for recipient i of a message (a posted event). */
static void
qmgr_result(void *ctx, const struct io_uring_cqe *cqe)
{
	struct qmgr *q = ctx;
	uint32_t slot = ring_ud_slot(cqe->user_data);
	struct qmgr_msg *m = &q->msgs[slot >> QMGR_RCPT_BITS];
	uint32_t i = slot & ((1u << QMGR_RCPT_BITS) - 1);
	ASSERT(m->busy);
	ASSERT(m->gen == ring_ud_gen(cqe->user_data));
	ASSERT(m->outstanding > 0);
	m->outstanding--;
	int res = cqe->res;
	if (res == 0)
		qmgr_outcome(q, m, i, QMGR_SENT, "2.0.0", "maildir");
	else if (maildir_error_permanent(res))
		qmgr_outcome(q, m, i, QMGR_PERMFAIL, "5.3.0", strerror(-res));
	else
		qmgr_outcome(q, m, i, QMGR_TEMPFAIL, "4.3.0", strerror(-res));
	qmgr_msg_end(q, m);
}

static void
qmgr_turn(void *ctx)
{
	struct qmgr *q = ctx;
	/* First the messages already begun, then new ones while there is room. */
	struct qmgr_msg *w = q->wait_head;
	q->wait_head = q->wait_tail = NULL;
	while (w != NULL) {
		struct qmgr_msg *next = w->next_wait;
		w->waiting = false;
		qmgr_dispatch(q, w);
		w = next;
	}
	if (q->ring->stopping)
		return;
	uint64_t qid;
	for (uint32_t n = 0; n < QMGR_TAKE_PER_TURN && q->busy < QMGR_MSGS_MAX
		&& q->wait_head == NULL && spool_take_due(q->p.spool, &qid); n++)
		qmgr_take(q, qid);
}

static uint64_t
qmgr_next_ms(void *ctx)
{
	const struct qmgr *q = ctx;
	if (q->wait_head != NULL)
		return maildir_can_start(q->p.maildir) ? 0 : UINT64_MAX;
	if (q->busy >= QMGR_MSGS_MAX || q->ring->stopping)
		return UINT64_MAX;
	return spool_next_due_ms(q->p.spool);
}

static bool
qmgr_idle(void *ctx)
{
	const struct qmgr *q = ctx;
	return q->busy == 0;
}

static const struct ring_hooks qmgr_hooks = {
	.name = "qmgr",
	.turn = qmgr_turn,
	.next_ms = qmgr_next_ms,
	.idle = qmgr_idle,
};

int
qmgr_init(struct ring *r, const struct qmgr_params *p, struct qmgr **out)
{
	struct qmgr *q = calloc(1, sizeof(*q));
	if (q == NULL)
		return -ENOMEM;
	void *slab = mmap(NULL, (size_t)QMGR_MSGS_MAX * QMGR_BUF_SIZE, PROT_READ | PROT_WRITE,
		MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (slab == MAP_FAILED) {
		free(q);
		return -ENOMEM;
	}
	q->slab = slab;
	for (uint32_t i = 0; i < QMGR_MSGS_MAX; i++)
		q->free_slots[i] = i;
	q->ring = r;
	q->p = *p;
	q->op_read = ring_op_register(r, qmgr_read_done, q);
	q->op_head = ring_op_register(r, qmgr_head_done, q);
	q->op_result = ring_op_register(r, qmgr_result, q);
	q->op_bounce = ring_op_register(r, qmgr_bounce_done, q);
	q->op_remote = ring_op_register(r, qmgr_remote_result, q);
	ring_hooks_register(r, &qmgr_hooks, q);
	*out = q;
	return 0;
}

void
qmgr_fini(struct qmgr *q)
{
	for (uint32_t i = 0; i < QMGR_MSGS_MAX; i++) {
		if (q->msgs[i].buf_cap > QMGR_BUF_SIZE)
			free(q->msgs[i].buf);
		if (q->msgs[i].head_owned)
			free(q->msgs[i].head);
		free(q->msgs[i].reports);
		free(q->msgs[i].oreqs);
		free(q->msgs[i].orcpts);
		free(q->msgs[i].oext);
	}
	munmap(q->slab, (size_t)QMGR_MSGS_MAX * QMGR_BUF_SIZE);
	free(q);
}

const struct qmgr_stats *
qmgr_stats(const struct qmgr *q)
{
	return &q->stats;
}

const struct tally *
qmgr_destinations(const struct qmgr *q)
{
	return &q->destinations;
}
