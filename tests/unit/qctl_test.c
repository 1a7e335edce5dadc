/* tests/unit/qctl_test.c - the queue control protocol: requests, answer lines, summaries. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include "proto/qctl.h"

static enum qctl_parse
parse(const char *text, struct qctl_request *req, size_t *used, char *err)
{
	return qctl_parse_request(slice_make(text, strlen(text)), req, used, err);
}

/* Fed whole and byte by byte: MORE until the line end, then the same request. */
static void
parse_ok(const char *text, struct qctl_request *req)
{
	char err[QCTL_ERR_MAX];
	size_t used = 0;
	size_t len = strlen(text);
	for (size_t n = 0; n < len; n++) {
		struct qctl_request r;
		enum qctl_parse p = qctl_parse_request(slice_make(text, n), &r, &used, err);
		cr_assert_eq(p, QCTL_PARSE_MORE, "%s cut at %zu", text, n);
	}
	cr_assert_eq(parse(text, req, &used, err), QCTL_PARSE_OK, "%s: %s", text, err);
	cr_assert_eq(used, len);
}

static void
parse_err(const char *text, const char *want)
{
	struct qctl_request r;
	char err[QCTL_ERR_MAX] = "";
	size_t used = 0;
	cr_assert_eq(parse(text, &r, &used, err), QCTL_PARSE_ERROR, "%s", text);
	cr_assert(strstr(err, want) != NULL, "%s: %s", text, err);
}

Test(qctl, every_verb_parses_with_its_argument)
{
	struct qctl_request r;
	parse_ok("list\n", &r);
	cr_assert_eq(r.verb, QCTL_LIST);
	cr_assert_not(r.json);
	parse_ok("list json\r\n", &r);
	cr_assert(r.json);
	parse_ok("SUMMARY\n", &r);
	cr_assert_eq(r.verb, QCTL_SUMMARY);
	parse_ok("flush\n", &r);
	cr_assert_eq(r.verb, QCTL_FLUSH);
	cr_assert_eq(r.arg, QCTL_ARG_NONE);
	parse_ok("flush 6B03E9C700000000\n", &r);
	cr_assert_eq(r.arg, QCTL_ARG_QID);
	cr_assert_eq(r.qid, 0x6B03E9C700000000ull);
	parse_ok("flush  Example.COM \n", &r);
	cr_assert_eq(r.arg, QCTL_ARG_DOMAIN);
	cr_assert(slice_eq(r.domain, SLICE_LIT("Example.COM")));
	static const struct { const char *text; enum qctl_verb verb; } ids[] = {
		{ "delete 6b03e9c700000001\n", QCTL_DELETE }, { "hold 6B03E9C700000001\n", QCTL_HOLD },
		{ "release 6B03E9C700000001\n", QCTL_RELEASE },
		{ "bounce 6B03E9C700000001\n", QCTL_BOUNCE },
	};
	for (size_t i = 0; i < sizeof(ids) / sizeof(ids[0]); i++) {
		parse_ok(ids[i].text, &r);
		cr_assert_eq(r.verb, ids[i].verb);
		cr_assert_eq(r.arg, QCTL_ARG_QID);
		cr_assert_eq(r.qid, 0x6B03E9C700000001ull);
		cr_assert_str_eq(qctl_verb_name(r.verb), ids[i].text[0] == 'd' ? "delete"
			: ids[i].text[0] == 'h' ? "hold" : ids[i].text[0] == 'r' ? "release" : "bounce");
	}
}

Test(qctl, bad_requests_get_an_error_that_names_the_problem)
{
	parse_err("frobnicate\n", "unknown command");
	parse_err("\n", "unknown command");
	parse_err("hold\n", "hold needs a queue id");
	parse_err("delete example.com\n", "delete: not a queue id");
	parse_err("hold 6B03E9C70000000\n", "not a queue id");     /* 15 digits */
	parse_err("hold 6B03E9C7000000000\n", "not a queue id");   /* 17 digits */
	parse_err("flush exa$mple.com\n", "not a queue id (16 hex digits) or a domain");
	parse_err("list extra\n", "list takes no argument");
	parse_err("summary json\n", "summary takes no argument");
	parse_err("hold 6B03E9C700000000 6B03E9C700000001\n", "too many arguments");
	parse_err("list\tjson\n", "control character");
	struct qctl_request r;
	char err[QCTL_ERR_MAX];
	size_t used;
	cr_assert_eq(qctl_parse_request(slice_make("li\0st\n", 6), &r, &used, err),
		QCTL_PARSE_ERROR);
	cr_assert(strstr(err, "control character") != NULL, "%s", err);
}

/* A limit and one past it: a line of QCTL_REQUEST_MAX octets with its LF is read; without an
 * end within the limit it is refused at once, not waited for. */
Test(qctl, a_request_longer_than_the_limit_is_refused_without_its_end)
{
	char line[QCTL_REQUEST_MAX + 8];
	memset(line, ' ', sizeof(line));
	memcpy(line, "list", 4);
	line[QCTL_REQUEST_MAX - 1] = '\n';
	struct qctl_request r;
	char err[QCTL_ERR_MAX];
	size_t used;
	cr_assert_eq(qctl_parse_request(slice_make(line, QCTL_REQUEST_MAX), &r, &used, err),
		QCTL_PARSE_OK);
	cr_assert_eq(used, QCTL_REQUEST_MAX);
	line[QCTL_REQUEST_MAX - 1] = ' ';
	cr_assert_eq(qctl_parse_request(slice_make(line, QCTL_REQUEST_MAX - 1), &r, &used, err),
		QCTL_PARSE_MORE);
	cr_assert_eq(qctl_parse_request(slice_make(line, QCTL_REQUEST_MAX), &r, &used, err),
		QCTL_PARSE_ERROR);
	cr_assert(strstr(err, "longer than 512 octets") != NULL, "%s", err);
}

Test(qctl, a_domain_of_255_octets_is_taken_and_256_is_not)
{
	char line[QCTL_REQUEST_MAX];
	memcpy(line, "flush ", 6);
	memset(line + 6, 'a', 256);
	line[6 + 255] = '\n';
	struct qctl_request r;
	char err[QCTL_ERR_MAX];
	size_t used;
	cr_assert_eq(qctl_parse_request(slice_make(line, 6 + 256), &r, &used, err), QCTL_PARSE_OK);
	cr_assert_eq(r.domain.len, 255);
	line[6 + 255] = 'a';
	line[6 + 256] = '\n';
	cr_assert_eq(qctl_parse_request(slice_make(line, 6 + 257), &r, &used, err),
		QCTL_PARSE_ERROR);
}

Test(qctl, answer_lines_are_classified_and_checked)
{
	struct qctl_line l = qctl_parse_line(SLICE_LIT("ringmta-queue 1 shard=1 shards=4"));
	cr_assert_eq(l.kind, QCTL_LINE_HEADER);
	cr_assert_eq(l.shard, 1);
	cr_assert_eq(l.shards, 4);
	cr_assert_eq(qctl_parse_line(SLICE_LIT("ringmta-queue 1 shard=4 shards=4")).kind,
		QCTL_LINE_BAD);
	cr_assert_eq(qctl_parse_line(SLICE_LIT("ringmta-queue 1 shard=0 shards=65")).kind,
		QCTL_LINE_BAD);
	cr_assert_eq(qctl_parse_line(SLICE_LIT("ringmta-queue 2 shard=0 shards=1")).kind,
		QCTL_LINE_BAD);
	l = qctl_parse_line(SLICE_LIT("D some payload"));
	cr_assert_eq(l.kind, QCTL_LINE_DATA);
	cr_assert(slice_eq(l.text, SLICE_LIT("some payload")));
	l = qctl_parse_line(SLICE_LIT("ok 17"));
	cr_assert_eq(l.kind, QCTL_LINE_OK);
	cr_assert_eq(l.count, 17);
	cr_assert_eq(qctl_parse_line(SLICE_LIT("ok 17x")).kind, QCTL_LINE_BAD);
	cr_assert_eq(qctl_parse_line(SLICE_LIT("ok")).kind, QCTL_LINE_BAD);
	l = qctl_parse_line(SLICE_LIT("error busy"));
	cr_assert_eq(l.kind, QCTL_LINE_ERROR);
	cr_assert(slice_eq(l.text, SLICE_LIT("busy")));
	cr_assert_eq(qctl_parse_line(SLICE_LIT("")).kind, QCTL_LINE_BAD);
}

Test(qctl, summary_payloads_need_a_domain_and_every_bucket)
{
	struct slice d;
	uint64_t c[QCTL_AGE_BUCKETS];
	cr_assert_eq(qctl_parse_summary(SLICE_LIT("example.com 1 2 3 4 5 6 7 8 9 10"), &d, c), 0);
	cr_assert(slice_eq(d, SLICE_LIT("example.com")));
	cr_assert_eq(c[0], 1);
	cr_assert_eq(c[9], 10);
	cr_assert_eq(qctl_parse_summary(SLICE_LIT("example.com 1 2 3 4 5 6 7 8 9"), &d, c), -EINVAL);
	cr_assert_eq(qctl_parse_summary(SLICE_LIT("example.com 1 2 3 4 5 6 7 8 9 10 11"), &d, c),
		-EINVAL);
	cr_assert_eq(qctl_parse_summary(SLICE_LIT(""), &d, c), -EINVAL);
}

/* qshape's buckets: 0-5 minutes, 5-10, 10-20, ... 640-1280, and over 1280. */
Test(qctl, ages_fall_into_qshape_buckets)
{
	cr_assert_eq(qctl_age_bucket(0), 0);
	cr_assert_eq(qctl_age_bucket(5 * 60000 - 1), 0);
	cr_assert_eq(qctl_age_bucket(5 * 60000), 1);
	cr_assert_eq(qctl_age_bucket(10 * 60000), 2);
	cr_assert_eq(qctl_age_bucket(1279ull * 60000), 8);
	cr_assert_eq(qctl_age_bucket(1280ull * 60000), 9);
	cr_assert_eq(qctl_age_bucket(UINT64_MAX), 9);
	cr_assert_eq(qctl_age_bucket_minutes(0), 5);
	cr_assert_eq(qctl_age_bucket_minutes(8), 1280);
	cr_assert_eq(qctl_age_bucket_minutes(9), UINT32_MAX);
}

Test(qctl, network_octets_are_escaped_in_text_and_json)
{
	char buf[128];
	struct qctl_out o = { .buf = buf, .cap = sizeof(buf) };
	qctl_out_text(&o, SLICE_LIT("a b\\\n\xc3\xa9"));
	cr_assert_eq(o.len, strlen("a\\x20b\\x5C\\x0A\\xC3\\xA9"));
	cr_assert(memcmp(buf, "a\\x20b\\x5C\\x0A\\xC3\\xA9", o.len) == 0);
	o.len = 0;
	qctl_out_json(&o, SLICE_LIT("a\"\\\x01\xff"));
	cr_assert_eq(o.len, strlen("\"a\\u0022\\u005c\\u0001\\u00ff\""));
	cr_assert(memcmp(buf, "\"a\\u0022\\u005c\\u0001\\u00ff\"", o.len) == 0);
	o.len = 0;
	qctl_out_time(&o, 1796169394936ull);
	cr_assert(memcmp(buf, "2026-12-01T23:56:34Z", o.len) == 0);
	struct qctl_out small = { .buf = buf, .cap = 3 };
	qctl_out_str(&small, "abcd");
	cr_assert(small.full);
	cr_assert_eq(small.len, 0);
}
