/* engine/control.c - the queue control socket and its sessions; see control.h. */
#include "engine/control.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/log.h"
#include "base/queue_id.h"
#include "proto/qctl.h"
#include "queue/record.h"
#include "queue/spool.h"

#define CONTROL_OUT_CAP (512u << 10)   /* one message's lines; a larger one is listed short */
_Static_assert(CONTROL_OUT_CAP + CONN_OUTPUT_SOFT_MAX <= CONN_OUTPUT_HARD_MAX,
	"a message's lines always fit behind what may wait");
_Static_assert(CONTROL_OUT_CAP <= QCTL_LINE_MAX, "the client reads every line");
_Static_assert(CONTROL_SESSIONS_MAX <= RING_SLOT_MAX, "a session fits a user_data slot");

/* One domain's row of a summary. */
struct control_dom {
	char *name;                     /* lower case, escaped as a text token; NULL: free */
	uint64_t counts[QCTL_AGE_BUCKETS];
};

struct control_session {
	struct control *q;
	struct conn *c;                 /* NULL once closed */
	bool busy;
	uint32_t gen;
	bool started;                   /* the request was read */
	bool reading;                   /* a spool_read (or a spool_ctl event) is in flight */
	bool draining;                  /* waiting for the output to drain */
	struct qctl_request req;
	char domain[QCTL_DOMAIN_MAX + 1];   /* copy: the request's bytes go with the input */
	uint64_t *ids;                  /* the walk: live messages when it began */
	uint32_t id_count;
	uint32_t id_next;
	uint8_t *env;                   /* the envelope being read */
	uint32_t env_cap;
	uint32_t want;
	uint64_t count;                 /* messages acted on or listed */
	struct control_dom *doms;          /* summary: open addressing, CONTROL_SUMMARY_DOMAINS_MAX */
	uint32_t dom_count;
	struct qctl_out out;
};

struct control {
	struct ring *ring;
	struct control_params p;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	int fd;
	bool armed;
	uint8_t op_accept, op_read, op_done;
	uint32_t timeout_class;
	struct control_session sessions[CONTROL_SESSIONS_MAX];
};

static void control_walk(struct control_session *s);

static uint32_t
control_slot(const struct control_session *s)
{
	return (uint32_t)(s - s->q->sessions);
}

static void
control_log(struct control *q, const char *action, uint64_t qid, const char *result)
{
	char buf[LOG_LINE_MAX];
	struct log_line l;
	log_line_begin(&l, buf, sizeof(buf), q->ring->now_real_ms, "queue_control");
	log_line_str(&l, "action", action);
	if (qid != 0)
		log_line_qid(&l, qid);
	log_line_u64(&l, "shard", q->p.shard);
	log_line_str(&l, "result", result);
	log_write(buf, log_line_end(&l));
}

static void
control_session_free(struct control_session *s)
{
	ASSERT(s->c == NULL);
	ASSERT(!s->reading);
	free(s->ids);
	free(s->env);
	free(s->out.buf);
	if (s->doms != NULL) {
		for (uint32_t i = 0; i < CONTROL_SUMMARY_DOMAINS_MAX; i++)
			free(s->doms[i].name);
		free(s->doms);
	}
	uint32_t gen = s->gen;
	struct control *q = s->q;
	memset(s, 0, sizeof(*s));
	s->q = q;
	s->gen = (gen + 1) & 0xffffffu;
}

/* Sends what s->out holds (a line or more) and starts it over. */
static void
control_flush_out(struct control_session *s)
{
	if (s->c != NULL && s->out.len > 0 && conn_write(s->c, slice_make(s->out.buf, s->out.len))
		!= 0)
		conn_abort(s->c);   /* cannot happen within the bounds above; the client sees EOF */
	s->out.len = 0;
	s->out.full = false;
}

/* The end line, then close. */
static void
control_finish(struct control_session *s, const char *error)
{
	if (error != NULL) {
		qctl_out_str(&s->out, "error ");
		qctl_out_str(&s->out, error);
	} else {
		qctl_out_str(&s->out, "ok ");
		qctl_out_u64(&s->out, s->count);
	}
	qctl_out_str(&s->out, "\n");
	control_flush_out(s);
	if (s->c != NULL)
		conn_close(s->c);
}

/* ---- commands on one message ---- */

static const char *
control_result_text(int rc)
{
	switch (rc) {
	case 0: return "ok";
	case -ENOENT: return "not_found";
	case -EBUSY: return "busy";
	case -EALREADY: return "unchanged";
	default: return "error";
	}
}

static void
control_one_error(struct control_session *s, int rc)
{
	char text[160], id[QUEUE_ID_STR_LEN + 1];
	queue_id_format(s->req.qid, id);
	if (rc == -EBUSY)
		snprintf(text, sizeof(text), "%s is being delivered now; try again in a moment", id);
	else if (rc == -EALREADY)
		snprintf(text, sizeof(text), "%s is %s", id,
			s->req.verb == QCTL_HOLD ? "held already" : "not held");
	else
		snprintf(text, sizeof(text), "%s: %s", id, strerror(-rc));
	control_finish(s, text);
}

static void
control_one(struct control_session *s)
{
	static const enum spool_ctl ops[] = { [QCTL_HOLD] = SPOOL_CTL_HOLD,
		[QCTL_RELEASE] = SPOOL_CTL_RELEASE, [QCTL_DELETE] = SPOOL_CTL_DELETE,
		[QCTL_BOUNCE] = SPOOL_CTL_BOUNCE };
	struct control *q = s->q;
	int rc = spool_ctl(q->p.spool, s->req.qid, ops[s->req.verb],
		ring_ud(q->op_done, control_slot(s), s->gen));
	if (rc != -ENOENT)   /* every shard is asked; only the one that has it logs */
		control_log(q, qctl_verb_name(s->req.verb), s->req.qid, control_result_text(rc));
	if (rc == 0) {
		s->reading = true;   /* until the record is durable */
		return;
	}
	if (rc == -ENOENT) {
		control_finish(s, NULL);   /* ok 0: not here */
		return;
	}
	control_one_error(s, rc);
}

/* The command's record is durable (or its batch failed). */
static void
control_done(void *ctx, const struct io_uring_cqe *cqe)
{
	struct control *q = ctx;
	struct control_session *s = &q->sessions[ring_ud_slot(cqe->user_data)];
	ASSERT(s->busy);
	ASSERT(s->gen == ring_ud_gen(cqe->user_data));
	ASSERT(s->reading);
	s->reading = false;
	if (cqe->res < 0)
		control_one_error(s, cqe->res);
	else {
		s->count = 1;
		control_finish(s, NULL);
	}
	if (s->c == NULL)
		control_session_free(s);
}

/* flush without an argument: every deferred recipient, no envelope needed. */
static void
control_flush_all(struct control_session *s)
{
	for (uint32_t i = 0; i < s->id_count; i++) {
		if (spool_ctl_flush(s->q->p.spool, s->ids[i]) > 0) {
			s->count++;
			control_log(s->q, "flush", s->ids[i], "ok");
		}
	}
	control_finish(s, NULL);
}

/* ---- the walk: list, summary, flush DOMAIN ---- */

static const char *
control_state_name(enum index_rcpt_state st)
{
	static const char *const names[] = { [INDEX_RCPT_PENDING] = "pending",
		[INDEX_RCPT_DELIVERED] = "delivered", [INDEX_RCPT_BOUNCED] = "bounced",
		[INDEX_RCPT_DEFERRED] = "deferred", [INDEX_RCPT_INFLIGHT] = "active" };
	return names[st];
}

/* The last reply as "451 4.7.1" (code or status may be missing), or "" when none is known. */
static void
control_last_reply(const struct index_rcpt *r, char out[24])
{
	out[0] = '\0';
	bool dsn = r->last_dsn[0] != 0;
	if (r->last_code != 0 && dsn)
		snprintf(out, 24, "%u %u.%u.%u", r->last_code, r->last_dsn[0], r->last_dsn[1],
			r->last_dsn[2]);
	else if (dsn)
		snprintf(out, 24, "%u.%u.%u", r->last_dsn[0], r->last_dsn[1], r->last_dsn[2]);
	else if (r->last_code != 0)
		snprintf(out, 24, "%u", r->last_code);
}

static void
control_list_text(struct control_session *s, const struct index_entry *e,
	struct record_envelope_view *v, uint64_t size)
{
	struct qctl_out *o = &s->out;
	char id[QUEUE_ID_STR_LEN + 1];
	queue_id_format(e->qid, id);
	qctl_out_str(o, "D ");
	qctl_out_str(o, id);
	qctl_out_str(o, " ");
	qctl_out_u64(o, size);
	qctl_out_str(o, " ");
	qctl_out_time(o, v->arrival_ms);
	qctl_out_str(o, " <");
	qctl_out_text(o, v->mail_from);
	qctl_out_str(o, ">");
	if (e->held)
		qctl_out_str(o, " held");
	if (e->bounce)
		qctl_out_str(o, " bouncing");
	qctl_out_str(o, "\n");
	for (uint32_t i = 0; i < v->rcpt_count; i++) {
		struct record_rcpt r;
		(void)record_envelope_rcpt(v, i, &r);   /* decoded whole already */
		uint64_t next = 0;
		enum index_rcpt_state st = index_entry_rcpt(e, i, &next);
		char last[24];
		control_last_reply(index_entry_rcpt_info(e, i), last);
		qctl_out_str(o, "D     <");
		qctl_out_text(o, r.path);
		qctl_out_str(o, "> ");
		qctl_out_str(o, control_state_name(st));
		if (st == INDEX_RCPT_DEFERRED) {
			qctl_out_str(o, " next=");
			qctl_out_time(o, next);
		}
		if (last[0] != '\0') {
			qctl_out_str(o, " last=\"");
			qctl_out_str(o, last);
			qctl_out_str(o, "\"");
		}
		struct slice text = spool_rcpt_reply(s->q->p.spool, e->qid, i);
		if (text.len > 0) {
			qctl_out_str(o, " reply=");
			qctl_out_json(o, text);
		}
		qctl_out_str(o, "\n");
	}
}

static void
control_list_json(struct control_session *s, const struct index_entry *e,
	struct record_envelope_view *v, uint64_t size)
{
	struct qctl_out *o = &s->out;
	char id[QUEUE_ID_STR_LEN + 1];
	queue_id_format(e->qid, id);
	qctl_out_str(o, "D {\"id\":\"");
	qctl_out_str(o, id);
	qctl_out_str(o, "\",\"arrival\":\"");
	qctl_out_time(o, v->arrival_ms);
	qctl_out_str(o, "\",\"arrival_ms\":");
	qctl_out_u64(o, v->arrival_ms);
	qctl_out_str(o, ",\"size\":");
	qctl_out_u64(o, size);
	qctl_out_str(o, ",\"sender\":");
	qctl_out_json(o, v->mail_from);
	qctl_out_str(o, e->held ? ",\"held\":true" : ",\"held\":false");
	qctl_out_str(o, e->bounce ? ",\"bouncing\":true" : ",\"bouncing\":false");
	qctl_out_str(o, ",\"recipients\":[");
	for (uint32_t i = 0; i < v->rcpt_count; i++) {
		struct record_rcpt r;
		(void)record_envelope_rcpt(v, i, &r);
		uint64_t next = 0;
		enum index_rcpt_state st = index_entry_rcpt(e, i, &next);
		char last[24];
		control_last_reply(index_entry_rcpt_info(e, i), last);
		qctl_out_str(o, i > 0 ? ",{\"address\":" : "{\"address\":");
		qctl_out_json(o, r.path);
		qctl_out_str(o, ",\"state\":\"");
		qctl_out_str(o, control_state_name(st));
		qctl_out_str(o, "\",\"next_attempt\":");
		if (st == INDEX_RCPT_DEFERRED) {
			qctl_out_str(o, "\"");
			qctl_out_time(o, next);
			qctl_out_str(o, "\",\"next_attempt_ms\":");
			qctl_out_u64(o, next);
		} else {
			qctl_out_str(o, "null,\"next_attempt_ms\":null");
		}
		qctl_out_str(o, ",\"last_reply\":");
		if (last[0] != '\0')
			qctl_out_json(o, slice_make(last, strlen(last)));
		else
			qctl_out_str(o, "null");
		struct slice text = spool_rcpt_reply(s->q->p.spool, e->qid, i);
		qctl_out_str(o, ",\"last_reply_text\":");
		if (text.len > 0)
			qctl_out_json(o, text);
		else
			qctl_out_str(o, "null");
		qctl_out_str(o, "}");
	}
	qctl_out_str(o, "]}\n");
}

/* A message whose lines do not fit CONTROL_OUT_CAP: listed by id alone. */
static void
control_list_short(struct control_session *s, uint64_t qid)
{
	char id[QUEUE_ID_STR_LEN + 1];
	queue_id_format(qid, id);
	s->out.len = 0;
	s->out.full = false;
	qctl_out_str(&s->out, s->req.json ? "D {\"id\":\"" : "D ");
	qctl_out_str(&s->out, id);
	qctl_out_str(&s->out, s->req.json ? "\",\"error\":\"too many recipients to list\"}\n"
		: " (too many recipients to list)\n");
}

static uint32_t
control_hash(const char *s)
{
	uint32_t h = 2166136261u;
	for (; *s != '\0'; s++)
		h = (h ^ (uint8_t)*s) * 16777619u;
	return h;
}

/* The summary's row for domain d (as a lower-case text token), made if new; past the bound,
 * the row "(other)". NULL when memory is short (the recipient is not counted). */
static struct control_dom *
control_dom(struct control_session *s, struct slice d)
{
	char name[QCTL_DOMAIN_MAX * 4 + 8];   /* every octet escaped as \xHH at worst */
	struct qctl_out o = { .buf = name, .cap = sizeof(name) - 1 };
	qctl_out_text(&o, s->dom_count + 1 < CONTROL_SUMMARY_DOMAINS_MAX ? d : SLICE_LIT("(other)"));
	for (size_t k = 0; k < o.len; k++)
		name[k] = (char)slice_ascii_lower((uint8_t)name[k]);
	name[o.len] = '\0';
	uint32_t mask = CONTROL_SUMMARY_DOMAINS_MAX - 1;
	for (uint32_t i = control_hash(name) & mask;; i = (i + 1) & mask) {
		struct control_dom *r = &s->doms[i];
		if (r->name != NULL && strcmp(r->name, name) == 0)
			return r;
		if (r->name != NULL)
			continue;
		r->name = strdup(name);   /* copy: the envelope buffer is read over next */
		if (r->name == NULL)
			return NULL;
		s->dom_count++;
		return r;
	}
}

static void
control_summary_add(struct control_session *s, const struct index_entry *e,
	struct record_envelope_view *v)
{
	uint64_t now = s->q->ring->now_real_ms;
	uint32_t b = qctl_age_bucket(now > v->arrival_ms ? now - v->arrival_ms : 0);
	for (uint32_t i = 0; i < v->rcpt_count; i++) {
		enum index_rcpt_state st = index_entry_rcpt(e, i, NULL);
		if (st == INDEX_RCPT_DELIVERED || st == INDEX_RCPT_BOUNCED)
			continue;
		struct record_rcpt r;
		(void)record_envelope_rcpt(v, i, &r);
		struct control_dom *d = control_dom(s, r.domain.len > 0 ? r.domain : SLICE_LIT("(local)"));
		if (d != NULL)
			d->counts[b]++;
	}
}

static void
control_summary_end(struct control_session *s)
{
	for (uint32_t i = 0; i < CONTROL_SUMMARY_DOMAINS_MAX; i++) {
		const struct control_dom *d = &s->doms[i];
		if (d->name == NULL)
			continue;
		qctl_out_str(&s->out, "D ");
		qctl_out_str(&s->out, d->name);
		for (uint32_t b = 0; b < QCTL_AGE_BUCKETS; b++) {
			qctl_out_str(&s->out, " ");
			qctl_out_u64(&s->out, d->counts[b]);
		}
		qctl_out_str(&s->out, "\n");
		control_flush_out(s);
	}
}

/* flush DOMAIN: the message has a deferred recipient there. */
static void
control_flush_domain(struct control_session *s, const struct index_entry *e,
	struct record_envelope_view *v)
{
	struct slice want = slice_make(s->domain, strlen(s->domain));
	for (uint32_t i = 0; i < v->rcpt_count; i++) {
		struct record_rcpt r;
		(void)record_envelope_rcpt(v, i, &r);
		if (index_entry_rcpt(e, i, NULL) == INDEX_RCPT_DEFERRED
			&& slice_eq_nocase(r.domain, want)) {
			uint64_t qid = e->qid;
			if (spool_ctl_flush(s->q->p.spool, qid) > 0) {   /* e may move: not used after */
				s->count++;
				control_log(s->q, "flush", qid, "ok");
			}
			return;
		}
	}
}

/* One message's envelope is in s->env: list it, count it, or flush it. */
static void
control_visit(struct control_session *s, uint64_t qid, const struct index_entry *e,
	struct record_envelope_view *v, uint64_t body_len)
{
	switch (s->req.verb) {
	case QCTL_LIST:
		if (s->req.json)
			control_list_json(s, e, v, body_len);
		else
			control_list_text(s, e, v, body_len);
		if (s->out.full)
			control_list_short(s, qid);
		s->count++;
		control_flush_out(s);
		break;
	case QCTL_SUMMARY:
		control_summary_add(s, e, v);
		s->count++;
		break;
	case QCTL_FLUSH:
		control_flush_domain(s, e, v);
		break;
	default:
		ASSERT(false);
	}
}

/* Reads the first want octets of the message (the envelope, and the table of a body in parts)
 * into s->env. Returns 0 or -errno. */
static int
control_read(struct control_session *s, uint64_t qid, uint64_t want)
{
	struct spool *sp = s->q->p.spool;
	uint64_t size = spool_message_size(sp, qid);
	if (want > size)
		want = size;
	if (want > RECORD_PAYLOAD_MAX)
		return -EFBIG;
	if (want > s->env_cap) {
		uint8_t *grown = realloc(s->env, want);
		if (grown == NULL)
			return -ENOMEM;
		s->env = grown;
		s->env_cap = (uint32_t)want;
	}
	s->want = (uint32_t)want;
	int rc = spool_read(sp, qid, 0, s->env, s->want,
		ring_ud(s->q->op_read, control_slot(s), s->gen), 0);
	if (rc == 0)
		s->reading = true;
	return rc;
}

/* What the read brought: decode, or read more, or skip a message that went meanwhile. Returns
 * true when the walk may go on to the next message. */
static bool
control_read_done_one(struct control_session *s, int res)
{
	struct spool *sp = s->q->p.spool;
	uint64_t qid = s->ids[s->id_next];
	const struct index_entry *e = spool_entry(sp, qid);
	if (e == NULL || res != (int)s->want)
		return true;   /* delivered meanwhile, or unreadable: not listed */
	struct slice head = slice_make(s->env, s->want);
	uint32_t env_len;
	if (record_envelope_length(head, &env_len) != 0)
		return true;
	struct spool_body b;
	uint64_t need = env_len > head.len ? env_len : 0;
	int rc = need > 0 ? -EAGAIN : spool_body_open(sp, qid, head, env_len, &b, &need);
	if (rc == -EAGAIN && need > head.len && head.len < spool_message_size(sp, qid)
		&& control_read(s, qid, need) == 0)
		return false;
	struct record_envelope_view v;
	if (rc != 0 || record_envelope_decode(head, &v) != 0 || v.rcpt_count != e->rcpt_count)
		return true;
	control_visit(s, qid, e, &v, b.len);
	return true;
}

static void
control_read_done(void *ctx, const struct io_uring_cqe *cqe)
{
	struct control *q = ctx;
	struct control_session *s = &q->sessions[ring_ud_slot(cqe->user_data)];
	ASSERT(s->busy);
	ASSERT(s->gen == ring_ud_gen(cqe->user_data));
	ASSERT(s->reading);
	s->reading = false;
	if (s->c == NULL) {
		control_session_free(s);
		return;
	}
	if (!control_read_done_one(s, cqe->res))
		return;
	s->id_next++;
	control_walk(s);
}

/* The next message of the walk, or the end. Waits while output is over the soft bound. */
static void
control_walk(struct control_session *s)
{
	struct spool *sp = s->q->p.spool;
	while (s->id_next < s->id_count) {
		if (conn_unsent(s->c) > CONN_OUTPUT_SOFT_MAX) {
			s->draining = true;
			return;
		}
		uint64_t qid = s->ids[s->id_next];
		if (spool_entry(sp, qid) != NULL && control_read(s, qid, CONTROL_ENV_READ_FIRST) == 0)
			return;
		s->id_next++;   /* gone meanwhile, or unreadable */
	}
	if (s->req.verb == QCTL_SUMMARY)
		control_summary_end(s);
	if (s->req.verb == QCTL_LIST || s->req.verb == QCTL_SUMMARY)
		control_log(s->q, qctl_verb_name(s->req.verb), 0, "ok");
	control_finish(s, NULL);
}

/* ---- the session ---- */

static void
control_start(struct control_session *s)
{
	struct control *q = s->q;
	if (s->req.verb == QCTL_FLUSH && q->p.flush != NULL)
		q->p.flush(q->p.flush_ctx);
	if (s->req.arg == QCTL_ARG_QID) {
		if (s->req.verb == QCTL_FLUSH) {
			const struct index_entry *e = spool_entry(q->p.spool, s->req.qid);
			if (e != NULL) {
				(void)spool_ctl_flush(q->p.spool, s->req.qid);
				s->count = 1;
				control_log(q, "flush", s->req.qid, "ok");
			}
			control_finish(s, NULL);
			return;
		}
		control_one(s);
		return;
	}
	uint32_t live = spool_live(q->p.spool);
	s->ids = malloc(((size_t)live + 1) * sizeof(*s->ids));
	if (s->ids == NULL) {
		control_finish(s, "out of memory");
		return;
	}
	s->id_count = spool_ids(q->p.spool, s->ids, live);
	if (s->req.verb == QCTL_FLUSH && s->req.arg == QCTL_ARG_NONE) {
		control_flush_all(s);
		return;
	}
	if (s->req.verb == QCTL_SUMMARY) {
		s->doms = calloc(CONTROL_SUMMARY_DOMAINS_MAX, sizeof(*s->doms));
		if (s->doms == NULL) {
			control_finish(s, "out of memory");
			return;
		}
	}
	control_walk(s);
}

static size_t
control_input(void *ctx, struct conn *c, struct slice in)
{
	struct control_session *s = ctx;
	(void)c;
	if (s->started)
		return in.len;   /* one request per connection: the rest is ignored */
	char err[QCTL_ERR_MAX];
	size_t used = 0;
	enum qctl_parse p = qctl_parse_request(in, &s->req, &used, err);
	if (p == QCTL_PARSE_MORE)
		return 0;
	s->started = true;
	conn_idle(s->c, CONN_TIMEOUT_NONE);
	if (p == QCTL_PARSE_ERROR) {
		control_finish(s, err);
		return in.len;
	}
	if (s->req.arg == QCTL_ARG_DOMAIN) {
		memcpy(s->domain, s->req.domain.ptr, s->req.domain.len);
		s->domain[s->req.domain.len] = '\0';
		s->req.domain = slice_make(s->domain, s->req.domain.len);
	}
	control_start(s);
	return in.len;
}

static void
control_drained(void *ctx, struct conn *c)
{
	struct control_session *s = ctx;
	(void)c;
	if (!s->draining)
		return;
	s->draining = false;
	control_walk(s);
}

static void
control_timeout(void *ctx, struct conn *c)
{
	struct control_session *s = ctx;
	(void)c;
	control_finish(s, "no request within the time allowed");
}

static void
control_closed(void *ctx, struct conn *c, int res)
{
	struct control_session *s = ctx;
	(void)c;
	(void)res;
	s->c = NULL;
	if (!s->reading)
		control_session_free(s);
}

static const struct conn_session_ops control_ops = {
	.input = control_input,
	.drained = control_drained,
	.timeout = control_timeout,
	.closed = control_closed,
};

/* The answer's first line, written before anything else. */
static void
control_header(struct control_session *s)
{
	char line[64];
	snprintf(line, sizeof(line), "ringmta-queue 1 shard=%u shards=%u\n", s->q->p.shard,
		s->q->p.shards);
	qctl_out_str(&s->out, line);
	control_flush_out(s);
}

static void
control_accept(struct control *q, int fd)
{
	struct control_session *s = NULL;
	for (uint32_t i = 0; i < CONTROL_SESSIONS_MAX && s == NULL; i++) {
		if (!q->sessions[i].busy)
			s = &q->sessions[i];
	}
	if (s == NULL) {
		char busy[160];
		int n = snprintf(busy, sizeof(busy), "ringmta-queue 1 shard=%u shards=%u\nerror busy: "
			"%u queue commands at once already\n", q->p.shard, q->p.shards, CONTROL_SESSIONS_MAX);
		(void)!write(fd, busy, (size_t)n);   /* a new socket's buffer takes it whole */
		close(fd);
		return;
	}
	s->out.buf = malloc(CONTROL_OUT_CAP);
	if (s->out.buf == NULL) {
		close(fd);
		return;
	}
	s->out.cap = CONTROL_OUT_CAP;
	s->c = conn_adopt(q->p.conns, fd, 0, &control_ops, s);
	if (s->c == NULL) {
		free(s->out.buf);
		s->out.buf = NULL;
		close(fd);
		return;
	}
	s->busy = true;
	conn_idle(s->c, q->timeout_class);
	control_header(s);
}

static void
control_arm(struct control *q)
{
	struct io_uring_sqe *sqe = ring_sqe(q->ring);
	io_uring_prep_multishot_accept(sqe, q->fd, NULL, NULL, SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ring_ud(q->op_accept, 0, 0));
	q->armed = true;
}

static void
control_accept_done(void *ctx, const struct io_uring_cqe *cqe)
{
	struct control *q = ctx;
	if (!(cqe->flags & IORING_CQE_F_MORE))
		q->armed = false;
	if (cqe->res >= 0)
		control_accept(q, cqe->res);
	else if (cqe->res != -ECANCELED)
		log_error(q->ring->now_real_ms, "control accept", cqe->res);
	/* EMFILE and the like: the next turn's hook arms it again, not this completion (no spin). */
}

static void
control_turn(void *ctx)
{
	struct control *q = ctx;
	if (!q->armed && q->fd >= 0 && !q->ring->stopping)
		control_arm(q);
}

static void
control_stop(void *ctx)
{
	struct control *q = ctx;
	if (q->armed) {
		struct io_uring_sqe *sqe = ring_sqe(q->ring);
		io_uring_prep_cancel64(sqe, ring_ud(q->op_accept, 0, 0), 0);
		io_uring_sqe_set_data64(sqe, ring_ud(RING_OP_NONE, 0, 0));
	}
	for (uint32_t i = 0; i < CONTROL_SESSIONS_MAX; i++) {
		if (q->sessions[i].busy && q->sessions[i].c != NULL)
			conn_abort(q->sessions[i].c);
	}
	/* Closed and unnamed now, so that a client is refused ("not running") rather than left
	 * waiting in the backlog; the accept in flight holds its own reference until cancelled. */
	close(q->fd);
	(void)unlink(q->path);
	q->fd = -1;
}

static bool
control_idle(void *ctx)
{
	const struct control *q = ctx;
	for (uint32_t i = 0; i < CONTROL_SESSIONS_MAX; i++) {
		if (q->sessions[i].busy)
			return false;
	}
	return true;
}

static const struct ring_hooks control_hooks = {
	.name = "control",
	.turn = control_turn,
	.idle = control_idle,
	.stop = control_stop,
};

/* socket, unlink of an old name, bind, chmod 0600, listen: nobody can connect before the mode
 * is set, since a Unix socket takes connections only once it listens. */
static int
control_socket(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t len = strlen(path);
	if (len >= sizeof(sa.sun_path))
		return -ENAMETOOLONG;
	memcpy(sa.sun_path, path, len + 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if ((unlink(path) != 0 && errno != ENOENT)
		|| bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) != 0
		|| chmod(path, 0600) != 0 || listen(fd, CONTROL_LISTEN_BACKLOG) != 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

int
control_open(struct ring *r, const struct control_params *p, struct control **out)
{
	struct control *q = calloc(1, sizeof(*q));
	if (q == NULL)
		return -ENOMEM;
	q->ring = r;
	q->p = *p;
	snprintf(q->path, sizeof(q->path), "%s", p->path);
	q->fd = control_socket(p->path);
	if (q->fd < 0) {
		int rc = q->fd;
		free(q);
		return rc;
	}
	for (uint32_t i = 0; i < CONTROL_SESSIONS_MAX; i++)
		q->sessions[i].q = q;
	q->timeout_class = conn_pool_timeout_class(p->conns, CONTROL_TIMEOUT_MS);
	q->op_accept = ring_op_register(r, control_accept_done, q);
	q->op_read = ring_op_register(r, control_read_done, q);
	q->op_done = ring_op_register(r, control_done, q);
	ring_hooks_register(r, &control_hooks, q);
	control_arm(q);
	*out = q;
	return 0;
}

void
control_close(struct control *q)
{
	if (q->fd >= 0) {
		close(q->fd);
		(void)unlink(q->path);
	}
	free(q);
}
