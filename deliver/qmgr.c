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
	uint32_t want;                  /* octets asked of the read in flight */
	struct record_envelope_view v;
	uint64_t body_off;              /* in the message (envelope, then body), as the spool reads */
	uint64_t body_len;
	uint32_t next_rcpt;             /* dispatch cursor over the envelope's recipients */
	uint32_t outstanding;           /* agent jobs running */
	struct bounce_item *reports;    /* v.rcpt_count entries, allocated at the first report */
	uint32_t report_count;
	bool bouncing;                  /* the DSN is being committed */
	bool waiting;                   /* on the list of messages waiting for agent slots */
	struct qmgr_msg *next_wait;
};

struct qmgr {
	struct ring *ring;
	struct qmgr_params p;
	uint8_t op_read;
	uint8_t op_result;
	uint8_t op_bounce;
	uint8_t *slab;                  /* QMGR_MSGS_MAX buffers, touched only when used */
	struct qmgr_msg msgs[QMGR_MSGS_MAX];
	uint32_t busy;
	struct qmgr_msg *wait_head, *wait_tail;
	struct qmgr_stats stats;
};

static uint32_t
qmgr_slot(const struct qmgr *q, const struct qmgr_msg *m)
{
	return (uint32_t)(m - q->msgs);
}

static void
qmgr_log(struct qmgr *q, struct qmgr_msg *m, struct slice to, enum log_status st,
	const char *dsn, const char *detail)
{
	uint64_t now = q->ring->now_real_ms;
	uint64_t delay = now > m->v.arrival_ms ? now - m->v.arrival_ms : 0;
	log_delivery(now, m->qid, to, st, delay, slice_make(dsn, strlen(dsn)),
		slice_make(detail, strlen(detail)));
}

/* Remembers what the DSN of this attempt must say of recipient rcpt, if one is due for it.
 * Returns whether it will be reported. */
static bool
qmgr_report(struct qmgr_msg *m, uint32_t rcpt, enum dsn_action action, const char *status,
	const char *diag, bool mark_bounced, uint64_t retry_until_ms)
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
	b->diag_type = DSN_DIAG_LOCAL;
	b->mark_bounced = mark_bounced;
	b->retry_until_ms = retry_until_ms;
	snprintf(b->status, sizeof(b->status), "%s", status);
	snprintf(b->diag, sizeof(b->diag), "%s", diag);
	return true;
}

/* A recipient failed for good: bounced once its notice is durable, at once if none is due. */
static void
qmgr_failed(struct qmgr *q, struct qmgr_msg *m, uint32_t i, const char *status,
	const char *detail)
{
	if (!qmgr_report(m, i, DSN_ACTION_FAILED, status, detail, true, 0))
		spool_rcpt_bounced(q->p.spool, m->qid, i);
}

/* One recipient's attempt is over: record it in the spool, log it, remember what to report. */
static void
qmgr_outcome(struct qmgr *q, struct qmgr_msg *m, uint32_t i, enum qmgr_outcome o,
	const char *status, const char *detail)
{
	struct record_rcpt r;
	int rc = record_envelope_rcpt(&m->v, i, &r);
	ASSERT(rc == 0);
	struct spool *sp = q->p.spool;
	if (o == QMGR_SENT) {
		spool_rcpt_delivered(sp, m->qid, i);
		q->stats.delivered++;
		qmgr_log(q, m, r.path, LOG_STATUS_DELIVERED, status, detail);
		(void)qmgr_report(m, i, DSN_ACTION_DELIVERED, status, detail, false, 0);
		return;
	}
	if (o == QMGR_TEMPFAIL) {
		uint64_t next;
		bool warn = false;
		if (spool_rcpt_defer(sp, m->qid, i, &next, &warn) == 0) {
			q->stats.deferred++;
			qmgr_log(q, m, r.path, LOG_STATUS_DEFERRED, status, detail);
			if (warn)
				(void)qmgr_report(m, i, DSN_ACTION_DELAYED, status, detail, false,
					m->v.arrival_ms + (uint64_t)q->p.cfg->queue_lifetime_s * 1000u);
			return;
		}
		/* RFC 3463 4.4.7: delivery time expired; the diagnostic is the last reason. */
		q->stats.expired++;
		qmgr_log(q, m, r.path, LOG_STATUS_EXPIRED, "4.4.7", detail);
		qmgr_failed(q, m, i, "4.4.7", detail);
		return;
	}
	q->stats.bounced++;
	qmgr_log(q, m, r.path, LOG_STATUS_BOUNCED, status, detail);
	qmgr_failed(q, m, i, status, detail);
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
	m->buf = NULL;
	free(m->reports);
	m->reports = NULL;
	m->report_count = 0;
	m->bouncing = false;
	m->busy = false;
	m->gen = (m->gen + 1) & 0xffffffu;
	ASSERT(q->busy > 0);
	q->busy--;
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
	uint64_t size = m->body_off + m->body_len;
	struct bounce_original o = { .qid = m->qid, .v = &m->v,
		.message = slice_make(m->buf + m->body_off, m->want - m->body_off),
		.whole = m->want == size };
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
	size_t in_buf = m->want > m->body_off ? m->want - m->body_off : 0;
	struct maildir_delivery d = {
		.qid = m->qid,
		.rcpt = i,
		.arrival_ms = m->v.arrival_ms,
		.mailbox = mailbox,
		.mail_from = m->v.mail_from,
		.body_read = slice_make(m->buf + m->body_off, in_buf),
		.body_off = m->body_off,
		.body_len = m->body_len,
	};
	m->outstanding++;
	maildir_deliver(q->p.maildir, &d,
		ring_ud(q->op_result, (qmgr_slot(q, m) << QMGR_RCPT_BITS) | i, m->gen));
	return true;
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
		struct record_rcpt r;
		int rc = record_envelope_rcpt(&m->v, i, &r);
		ASSERT(rc == 0);
		if (r.domain.len == 0 || policy_domain_is_local(q->p.policy, r.domain)) {
			if (!qmgr_to_maildir(q, m, i, &r)) {
				qmgr_wait(q, m);
				return;
			}
		} else {
			qmgr_outcome(q, m, i, QMGR_TEMPFAIL, "4.4.0", "no outbound transport");
		}
	}
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

static int
qmgr_read(struct qmgr *q, struct qmgr_msg *m, uint32_t len)
{
	m->want = len;
	return spool_read(q->p.spool, m->qid, 0, m->buf, len,
		ring_ud(q->op_read, qmgr_slot(q, m), m->gen), 0);
}

/* The envelope does not fit the first read: read again into a buffer that holds it. */
static int
qmgr_read_more(struct qmgr *q, struct qmgr_msg *m, uint32_t env_len, uint64_t size)
{
	uint64_t want = (uint64_t)env_len + QMGR_BUF_SIZE;
	if (want > size)
		want = size;
	uint8_t *big = malloc(want);
	if (big == NULL)
		return -ENOMEM;
	m->buf = big;
	m->buf_cap = (uint32_t)want;
	return qmgr_read(q, m, (uint32_t)want);
}

/* The start of the record is in m->buf: decode it and dispatch. */
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
	if (record_envelope_length(payload, &env_len) != 0) {
		qmgr_msg_abandon(q, m, 0, -EBADMSG);
		return;
	}
	if (env_len > payload.len && m->want < size) {
		int rc = qmgr_read_more(q, m, env_len, size);
		if (rc < 0)
			qmgr_msg_abandon(q, m, 0, rc);
		return;
	}
	if (record_envelope_decode(payload, &m->v) != 0 || m->v.rcpt_count != e->rcpt_count) {
		qmgr_msg_abandon(q, m, 0, -EBADMSG);   /* cannot happen to a record we wrote */
		return;
	}
	m->body_off = env_len;
	m->body_len = size - m->body_off;
	m->next_rcpt = 0;
	qmgr_dispatch(q, m);
}

static void
qmgr_take(struct qmgr *q, uint64_t qid)
{
	uint32_t slot = 0;
	while (q->msgs[slot].busy)
		slot++;
	struct qmgr_msg *m = &q->msgs[slot];
	m->busy = true;
	q->busy++;
	m->qid = qid;
	m->buf = q->slab + (size_t)slot * QMGR_BUF_SIZE;
	m->buf_cap = QMGR_BUF_SIZE;
	m->outstanding = 0;
	m->report_count = 0;
	m->bouncing = false;
	uint64_t size = spool_message_size(q->p.spool, qid);
	uint32_t len = size < QMGR_BUF_SIZE ? (uint32_t)size : QMGR_BUF_SIZE;
	int rc = qmgr_read(q, m, len);
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
	q->ring = r;
	q->p = *p;
	q->op_read = ring_op_register(r, qmgr_read_done, q);
	q->op_result = ring_op_register(r, qmgr_result, q);
	q->op_bounce = ring_op_register(r, qmgr_bounce_done, q);
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
		free(q->msgs[i].reports);
	}
	munmap(q->slab, (size_t)QMGR_MSGS_MAX * QMGR_BUF_SIZE);
	free(q);
}

const struct qmgr_stats *
qmgr_stats(const struct qmgr *q)
{
	return &q->stats;
}
