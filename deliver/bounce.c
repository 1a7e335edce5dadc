/* deliver/bounce.c - composing and queueing delivery status notifications; see bounce.h. */
#include "deliver/bounce.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "queue/msg.h"
#include "queue/record.h"
#include "queue/spool.h"

bool
bounce_due(struct record_envelope_view *v, uint32_t rcpt, enum dsn_action action)
{
	struct record_rcpt r;
	if (record_envelope_rcpt(v, rcpt, &r) != 0)
		return false;
	return dsn_due(v->mail_from, r.notify, action);
}

/* The DSN's one recipient: the original reverse-path, split at its last '@'. */
static struct record_rcpt
bounce_rcpt(struct slice sender)
{
	size_t at = sender.len;
	while (at > 0 && sender.ptr[at - 1] != '@')
		at--;
	struct slice local = at > 0 ? slice_sub(sender, 0, at - 1) : sender;
	struct slice domain = at > 0 ? slice_skip(sender, at) : SLICE_LIT("");
	return (struct record_rcpt){ .path = sender, .local_part = local, .domain = domain };
}

static struct msg *
bounce_message(uint64_t qid, const struct dsn_out *out, uint64_t now_ms)
{
	struct msg *m = msg_new(qid, now_ms, out->head.len + out->original.len + out->tail.len,
		NULL);
	if (m == NULL)
		return NULL;
	/* copy: the notice is a new message; the original's bytes were read from the spool into
	 * the queue manager's buffer, which goes back once the attempt ends. */
	if (msg_append(m, out->head) != 0 || msg_append(m, out->original) != 0
		|| msg_append(m, out->tail) != 0) {
		msg_unref(m);
		return NULL;
	}
	return m;
}

int
bounce_queue(struct spool *sp, struct slice myhostname, const struct bounce_original *o,
	const struct bounce_item *items, uint32_t n, uint64_t now_ms, uint64_t ud,
	uint64_t *dsn_qid)
{
	ASSERT(n > 0);
	ASSERT(o->v->mail_from.len > 0);
	struct dsn_rcpt *rcpts = calloc(n, sizeof(*rcpts));
	if (rcpts == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < n; i++) {
		struct record_rcpt r;
		int rc = record_envelope_rcpt(o->v, items[i].rcpt, &r);
		ASSERT(rc == 0);
		rcpts[i] = (struct dsn_rcpt){
			.final_rcpt = r.path, .orcpt = r.orcpt, .action = items[i].action,
			.status = slice_make(items[i].status, strlen(items[i].status)),
			.diag_type = items[i].diag_type,
			.diag = slice_make(items[i].diag, strlen(items[i].diag)),
			.remote_mta = slice_make(items[i].remote_mta, strlen(items[i].remote_mta)),
			.last_attempt_ms = now_ms, .retry_until_ms = items[i].retry_until_ms,
		};
	}
	struct dsn_envelope env = {
		.mail_from = o->v->mail_from, .envid = o->v->dsn_envid,
		.ret = (enum smtp_dsn_ret)o->v->dsn_ret, .smtputf8 = o->v->smtputf8,
		.arrival_ms = o->v->arrival_ms, .client_addr = o->v->client_addr, .helo = o->v->helo,
	};
	/* Only part of a large message was read: never present a part as the whole. */
	uint64_t limit = DSN_SIZE_LIMIT_DEFAULT;
	if (!o->whole && o->message.len <= limit)
		limit = o->message.len > 0 ? o->message.len - 1 : 0;
	struct dsn_report rep = {
		.myhostname = myhostname, .queue_id = o->qid, .dsn_queue_id = 0, .now_ms = now_ms,
		.env = &env, .rcpts = rcpts, .rcpt_count = n, .original = o->message,
		.size_limit = limit,
	};
	uint64_t qid = spool_next_qid(sp);
	rep.dsn_queue_id = qid;
	size_t cap = dsn_size(&rep);
	uint8_t *buf = malloc(cap);
	int rc = -ENOMEM;
	if (buf == NULL)
		goto out_rcpts;
	struct dsn_out out;
	dsn_compose(&rep, buf, cap, &out);
	struct msg *m = bounce_message(qid, &out, now_ms);
	if (m == NULL)
		goto out_buf;
	struct record_rcpt to = bounce_rcpt(o->v->mail_from);
	struct record_envelope renv = {
		.arrival_ms = now_ms, .client_addr = SLICE_LIT(""), .helo = myhostname,
		.mail_from = SLICE_LIT(""),
		.body_type = out.need_8bitmime ? SMTP_BODY_8BITMIME : SMTP_BODY_7BIT,
		.smtputf8 = out.need_smtputf8, .rcpt_count = 1, .rcpts = &to,
	};
	rc = spool_commit(sp, m, &renv, ud);
	msg_unref(m);
	if (rc == 0)
		*dsn_qid = qid;
out_buf:
	free(buf);
out_rcpts:
	free(rcpts);
	return rc;
}
