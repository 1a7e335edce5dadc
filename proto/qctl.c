/* proto/qctl.c - the queue control protocol; see qctl.h. */
#include "proto/qctl.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "base/assert.h"
#include "base/queue_id.h"

_Static_assert(QCTL_REQUEST_MAX > QUEUE_ID_STR_LEN + 16, "the longest request fits");
_Static_assert(QCTL_REQUEST_MAX > QCTL_DOMAIN_MAX + 16, "a request with a domain fits");

struct qctl_verb_spec {
	const char *name;
	enum qctl_verb verb;
	bool id;                    /* takes an ID */
	bool id_optional;           /* ... or nothing, or (flush) a domain */
};

static const struct qctl_verb_spec qctl_verbs[] = {
	{ "list", QCTL_LIST, false, false },
	{ "summary", QCTL_SUMMARY, false, false },
	{ "flush", QCTL_FLUSH, true, true },
	{ "delete", QCTL_DELETE, true, false },
	{ "hold", QCTL_HOLD, true, false },
	{ "release", QCTL_RELEASE, true, false },
	{ "bounce", QCTL_BOUNCE, true, false },
};

const char *
qctl_verb_name(enum qctl_verb v)
{
	for (size_t i = 0; i < ARRAY_LEN(qctl_verbs); i++) {
		if (qctl_verbs[i].verb == v)
			return qctl_verbs[i].name;
	}
	ASSERT(false);
	return "";
}

static bool
qctl_domain_ok(struct slice d)
{
	if (d.len == 0 || d.len > QCTL_DOMAIN_MAX)
		return false;
	for (size_t i = 0; i < d.len; i++) {
		uint8_t c = d.ptr[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
			|| c == '-' || c == '.' || c == '_' || c >= 0x80;
		if (!ok)
			return false;
	}
	return true;
}

/* The next space-separated word of *rest (runs of spaces are one separator). */
static struct slice
qctl_word(struct slice *rest)
{
	size_t i = 0;
	while (i < rest->len && rest->ptr[i] == ' ')
		i++;
	size_t start = i;
	while (i < rest->len && rest->ptr[i] != ' ')
		i++;
	struct slice w = slice_sub(*rest, start, i - start);
	*rest = slice_skip(*rest, i);
	return w;
}

/* The argument of a verb that takes one. Returns 0 or -EINVAL with err set. */
static int
qctl_parse_arg(const struct qctl_verb_spec *spec, struct slice arg, struct qctl_request *req,
	char err[QCTL_ERR_MAX])
{
	if (arg.len == 0) {
		if (spec->id_optional)
			return 0;
		snprintf(err, QCTL_ERR_MAX, "%s needs a queue id", spec->name);
		return -EINVAL;
	}
	if (arg.len == QUEUE_ID_STR_LEN && queue_id_parse(arg, &req->qid) == 0) {
		req->arg = QCTL_ARG_QID;
		return 0;
	}
	if (spec->id_optional && qctl_domain_ok(arg)) {
		req->arg = QCTL_ARG_DOMAIN;
		req->domain = arg;
		return 0;
	}
	snprintf(err, QCTL_ERR_MAX, "%s: not a queue id (%u hex digits)%s", spec->name,
		QUEUE_ID_STR_LEN, spec->id_optional ? " or a domain" : "");
	return -EINVAL;
}

/* One complete line, its end removed. */
static enum qctl_parse
qctl_parse_words(struct slice line, struct qctl_request *req, char err[QCTL_ERR_MAX])
{
	for (size_t i = 0; i < line.len; i++) {
		if (line.ptr[i] < 0x20 || line.ptr[i] == 0x7f) {
			snprintf(err, QCTL_ERR_MAX, "a control character in the request");
			return QCTL_PARSE_ERROR;
		}
	}
	struct slice rest = line;
	struct slice verb = qctl_word(&rest);
	const struct qctl_verb_spec *spec = NULL;
	for (size_t i = 0; i < ARRAY_LEN(qctl_verbs); i++) {
		if (slice_eq_nocase(verb, slice_make(qctl_verbs[i].name, strlen(qctl_verbs[i].name))))
			spec = &qctl_verbs[i];
	}
	if (spec == NULL) {
		snprintf(err, QCTL_ERR_MAX, "unknown command (list, summary, flush, delete, hold, "
			"release, bounce)");
		return QCTL_PARSE_ERROR;
	}
	*req = (struct qctl_request){ .verb = spec->verb, .arg = QCTL_ARG_NONE };
	struct slice arg = qctl_word(&rest);
	if (spec->verb == QCTL_LIST && slice_eq_nocase(arg, SLICE_LIT("json"))) {
		req->json = true;
	} else if (spec->id) {
		if (qctl_parse_arg(spec, arg, req, err) != 0)
			return QCTL_PARSE_ERROR;
	} else if (arg.len > 0) {
		snprintf(err, QCTL_ERR_MAX, "%s takes no argument", spec->name);
		return QCTL_PARSE_ERROR;
	}
	if (qctl_word(&rest).len > 0) {
		snprintf(err, QCTL_ERR_MAX, "%s: too many arguments", spec->name);
		return QCTL_PARSE_ERROR;
	}
	return QCTL_PARSE_OK;
}

enum qctl_parse
qctl_parse_request(struct slice in, struct qctl_request *req, size_t *used,
	char err[QCTL_ERR_MAX])
{
	size_t scan = in.len < QCTL_REQUEST_MAX ? in.len : QCTL_REQUEST_MAX;
	const uint8_t *lf = memchr(in.ptr, '\n', scan);
	if (lf == NULL) {
		if (in.len < QCTL_REQUEST_MAX)
			return QCTL_PARSE_MORE;
		snprintf(err, QCTL_ERR_MAX, "request longer than %u octets", QCTL_REQUEST_MAX);
		return QCTL_PARSE_ERROR;
	}
	size_t len = (size_t)(lf - in.ptr);
	*used = len + 1;
	if (len > 0 && in.ptr[len - 1] == '\r')
		len--;
	return qctl_parse_words(slice_sub(in, 0, len), req, err);
}

uint32_t
qctl_age_bucket(uint64_t age_ms)
{
	uint64_t minutes = age_ms / 60000u;
	uint32_t b = 0;
	while (b + 1 < QCTL_AGE_BUCKETS && minutes >= qctl_age_bucket_minutes(b))
		b++;
	return b;
}

uint32_t
qctl_age_bucket_minutes(uint32_t bucket)
{
	ASSERT(bucket < QCTL_AGE_BUCKETS);
	if (bucket + 1 == QCTL_AGE_BUCKETS)
		return UINT32_MAX;
	return 5u << bucket;   /* 5, 10, 20, ... 1280 */
}

/* Reads a decimal number (1 to 19 digits) from the start of *s. Returns 0 or -EINVAL. */
static int
qctl_number(struct slice *s, uint64_t *out)
{
	size_t i = 0;
	uint64_t v = 0;
	while (i < s->len && i < 19 && s->ptr[i] >= '0' && s->ptr[i] <= '9')
		v = v * 10u + (uint64_t)(s->ptr[i++] - '0');
	if (i == 0)
		return -EINVAL;
	*out = v;
	*s = slice_skip(*s, i);
	return 0;
}

/* The header's "shard=N shards=M" (rest is what follows "ringmta-queue 1 "). */
static struct qctl_line
qctl_parse_header(struct slice rest)
{
	struct qctl_line bad = { .kind = QCTL_LINE_BAD };
	uint64_t shard, shards;
	if (!slice_starts_with(rest, SLICE_LIT("shard=")))
		return bad;
	rest = slice_skip(rest, 6);
	if (qctl_number(&rest, &shard) != 0 || !slice_starts_with(rest, SLICE_LIT(" shards=")))
		return bad;
	rest = slice_skip(rest, 8);
	if (qctl_number(&rest, &shards) != 0 || rest.len != 0 || shards < 1
		|| shards > QUEUE_ID_SHARD_MAX || shard >= shards)
		return bad;
	return (struct qctl_line){ .kind = QCTL_LINE_HEADER, .shard = (uint32_t)shard,
		.shards = (uint32_t)shards };
}

struct qctl_line
qctl_parse_line(struct slice line)
{
	struct qctl_line bad = { .kind = QCTL_LINE_BAD };
	if (slice_starts_with(line, SLICE_LIT("ringmta-queue 1 ")))
		return qctl_parse_header(slice_skip(line, 16));
	if (slice_starts_with(line, SLICE_LIT("D ")))
		return (struct qctl_line){ .kind = QCTL_LINE_DATA, .text = slice_skip(line, 2) };
	if (slice_starts_with(line, SLICE_LIT("error ")))
		return (struct qctl_line){ .kind = QCTL_LINE_ERROR, .text = slice_skip(line, 6) };
	if (slice_starts_with(line, SLICE_LIT("ok "))) {
		struct slice rest = slice_skip(line, 3);
		uint64_t n;
		if (qctl_number(&rest, &n) != 0 || rest.len != 0)
			return bad;
		return (struct qctl_line){ .kind = QCTL_LINE_OK, .count = n };
	}
	return bad;
}

int
qctl_parse_summary(struct slice payload, struct slice *domain,
	uint64_t counts[QCTL_AGE_BUCKETS])
{
	struct slice rest = payload;
	*domain = qctl_word(&rest);
	if (domain->len == 0)
		return -EINVAL;
	for (uint32_t b = 0; b < QCTL_AGE_BUCKETS; b++) {
		if (rest.len == 0 || rest.ptr[0] != ' ')
			return -EINVAL;
		rest = slice_skip(rest, 1);
		if (qctl_number(&rest, &counts[b]) != 0)
			return -EINVAL;
	}
	return rest.len == 0 ? 0 : -EINVAL;
}

static void
qctl_out_bytes(struct qctl_out *o, const void *p, size_t n)
{
	if (o->full || n > o->cap - o->len) {
		o->full = true;
		return;
	}
	memcpy(o->buf + o->len, p, n);
	o->len += n;
}

void
qctl_out_str(struct qctl_out *o, const char *s)
{
	qctl_out_bytes(o, s, strlen(s));
}

void
qctl_out_u64(struct qctl_out *o, uint64_t v)
{
	char tmp[24];
	int n = snprintf(tmp, sizeof(tmp), "%llu", (unsigned long long)v);
	qctl_out_bytes(o, tmp, (size_t)n);
}

void
qctl_out_text(struct qctl_out *o, struct slice s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (size_t i = 0; i < s.len; i++) {
		uint8_t c = s.ptr[i];
		if (c > 0x20 && c < 0x7f && c != '\\') {
			qctl_out_bytes(o, &c, 1);
			continue;
		}
		char esc[4] = { '\\', 'x', hex[c >> 4], hex[c & 15] };
		qctl_out_bytes(o, esc, sizeof(esc));
	}
}

void
qctl_out_json(struct qctl_out *o, struct slice s)
{
	static const char hex[] = "0123456789abcdef";
	qctl_out_bytes(o, "\"", 1);
	for (size_t i = 0; i < s.len; i++) {
		uint8_t c = s.ptr[i];
		if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
			qctl_out_bytes(o, &c, 1);
			continue;
		}
		char esc[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 15] };
		qctl_out_bytes(o, esc, sizeof(esc));
	}
	qctl_out_bytes(o, "\"", 1);
}

void
qctl_out_time(struct qctl_out *o, uint64_t ms)
{
	time_t t = (time_t)(ms / 1000u);
	struct tm tm;
	char tmp[32];
	if (gmtime_r(&t, &tm) == NULL || strftime(tmp, sizeof(tmp), "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
		qctl_out_str(o, "?");
		return;
	}
	qctl_out_str(o, tmp);
}
