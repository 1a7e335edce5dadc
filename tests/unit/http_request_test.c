/* tests/unit/http_request_test.c - the HTTP/1.1 request head parser (RFC 9112, RFC 9110,
 * RFC 6585 5).
 *
 * Every input goes through parse(): fed whole, and octet by octet re-offering what was not
 * consumed as the endpoint does; both must give the same result, request and status. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/http_request.h"

struct outcome {
	enum http_request_result res;
	uint16_t status;
	size_t used;
	enum http_method method;
	char path[HTTP_REQUEST_LINE_MAX];
	uint8_t version_minor;
	bool keep_alive;
};

static struct outcome
parse_mode(const char *text, size_t len, bool bytewise)
{
	struct http_request_parser p;
	http_request_init(&p);
	struct outcome o = { .res = HTTP_REQUEST_MORE };
	for (size_t n = bytewise ? 1 : len; n <= len; n++) {
		struct http_request req;
		o.res = http_request_feed(&p, slice_make(text, n), &o.used, &req);
		if (o.res == HTTP_REQUEST_MORE)
			continue;
		if (o.res == HTTP_REQUEST_ERROR) {
			o.status = http_request_status(&p);
			return o;
		}
		o.method = req.method;
		cr_assert(req.path.len < sizeof(o.path));
		memcpy(o.path, req.path.ptr, req.path.len);
		o.path[req.path.len] = '\0';
		o.version_minor = req.version_minor;
		o.keep_alive = req.keep_alive;
		return o;
	}
	return o;
}

static struct outcome
parse_len(const char *text, size_t len)
{
	struct outcome whole = parse_mode(text, len, false);
	struct outcome bytes = parse_mode(text, len, true);
	cr_assert_eq(whole.res, bytes.res);
	cr_assert_eq(whole.status, bytes.status);
	cr_assert_eq(whole.used, bytes.used);
	cr_assert_str_eq(whole.path, bytes.path);
	cr_assert_eq(whole.keep_alive, bytes.keep_alive);
	return whole;
}

static struct outcome
parse(const char *text)
{
	return parse_len(text, strlen(text));
}

static void
expect_status(const char *text, uint16_t status)
{
	struct outcome o = parse(text);
	cr_assert_eq(o.res, HTTP_REQUEST_ERROR, "%s", text);
	cr_assert_eq(o.status, status, "%s: got %u", text, o.status);
}

Test(http_request, prometheus_scrape_is_a_keep_alive_get_of_metrics)
{
	const char *req = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9100\r\n"
		"User-Agent: Prometheus/2.42.0\r\nAccept: text/plain;version=0.0.4;q=0.5,*/*;q=0.1\r\n"
		"Accept-Encoding: gzip\r\nX-Prometheus-Scrape-Timeout-Seconds: 10\r\n\r\n";
	struct outcome o = parse(req);
	cr_assert_eq(o.res, HTTP_REQUEST_DONE);
	cr_assert_eq(o.used, strlen(req));
	cr_assert_eq(o.method, HTTP_METHOD_GET);
	cr_assert_str_eq(o.path, "/metrics");
	cr_assert_eq(o.version_minor, 1);
	cr_assert(o.keep_alive);
}

Test(http_request, an_incomplete_head_consumes_nothing)
{
	struct outcome o = parse("GET /metrics HTTP/1.1\r\nHost: a\r\n");
	cr_assert_eq(o.res, HTTP_REQUEST_MORE);
	cr_assert_eq(o.used, 0);
}

Test(http_request, only_the_first_of_pipelined_requests_is_consumed)
{
	const char *one = "GET /a HTTP/1.1\r\nHost: a\r\n\r\n";
	char two[128];
	snprintf(two, sizeof(two), "%sHEAD /b HTTP/1.1\r\nHost: a\r\n\r\n", one);
	struct outcome o = parse(two);
	cr_assert_eq(o.res, HTTP_REQUEST_DONE);
	cr_assert_eq(o.used, strlen(one));
	cr_assert_str_eq(o.path, "/a");
}

Test(http_request, the_parser_is_ready_for_the_next_request_after_one)
{
	struct http_request_parser p;
	http_request_init(&p);
	const char *a = "GET /a HTTP/1.1\r\nHost: a\r\n\r\n";
	const char *b = "HEAD /b HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
	struct http_request req;
	size_t used;
	cr_assert_eq(http_request_feed(&p, slice_make(a, strlen(a)), &used, &req), HTTP_REQUEST_DONE);
	cr_assert_eq(http_request_feed(&p, slice_make(b, strlen(b)), &used, &req), HTTP_REQUEST_DONE);
	cr_assert_eq(req.method, HTTP_METHOD_HEAD);
	cr_assert_not(req.keep_alive);
}

Test(http_request, query_is_not_part_of_the_path)
{
	cr_assert_str_eq(parse("GET /metrics?name[]=x HTTP/1.1\r\nHost: a\r\n\r\n").path,
		"/metrics");
}

/* RFC 9112 3.2.2: a server MUST accept the absolute-form. */
Test(http_request, absolute_form_target_gives_its_path)
{
	cr_assert_str_eq(parse("GET http://127.0.0.1:9100/metrics HTTP/1.1\r\nHost: a\r\n\r\n").path,
		"/metrics");
	cr_assert_str_eq(parse("GET HTTP://h HTTP/1.1\r\nHost: a\r\n\r\n").path, "");
}

/* RFC 9110 9.1: the method token is case-sensitive. */
Test(http_request, methods_are_case_sensitive)
{
	cr_assert_eq(parse("HEAD / HTTP/1.1\r\nHost: a\r\n\r\n").method, HTTP_METHOD_HEAD);
	cr_assert_eq(parse("get / HTTP/1.1\r\nHost: a\r\n\r\n").method, HTTP_METHOD_OTHER);
	cr_assert_eq(parse("POST / HTTP/1.1\r\nHost: a\r\n\r\n").method, HTTP_METHOD_OTHER);
}

/* RFC 9112 9.3: HTTP/1.1 persists unless "close" is among the Connection options. */
Test(http_request, connection_close_among_options_ends_persistence)
{
	cr_assert_not(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: TE, Close \r\n\r\n").keep_alive);
	cr_assert(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\n\r\n").keep_alive);
	cr_assert(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n").keep_alive);
}

Test(http_request, http_1_0_does_not_persist_and_needs_no_host)
{
	struct outcome o = parse("GET /metrics HTTP/1.0\r\n\r\n");
	cr_assert_eq(o.res, HTTP_REQUEST_DONE);
	cr_assert_eq(o.version_minor, 0);
	cr_assert_not(o.keep_alive);
}

/* RFC 9112 2.2: at least one empty line before the request line SHOULD be ignored. */
Test(http_request, empty_lines_before_the_request_line_are_ignored_up_to_the_limit)
{
	cr_assert_eq(parse("\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n").res, HTTP_REQUEST_DONE);
	char many[256] = "";
	for (uint32_t i = 0; i <= HTTP_REQUEST_EMPTY_LINES_MAX; i++)
		strcat(many, "\r\n");
	strcat(many, "GET / HTTP/1.1\r\nHost: a\r\n\r\n");
	expect_status(many, 400);
}

/* RFC 9112 3.2: 400 for an HTTP/1.1 request without Host, and for any with more than one. */
Test(http_request, host_must_be_there_once)
{
	expect_status("GET / HTTP/1.1\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", 400);
	expect_status("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 400);
}

/* RFC 9112 2.2: lines end in CRLF; a bare CR or LF is refused here. */
Test(http_request, bare_lf_and_bare_cr_are_400)
{
	expect_status("GET / HTTP/1.1\nHost: a\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost: a\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost: a\r\n\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", 400);
}

/* RFC 9112 3: method SP request-target SP HTTP-version. */
Test(http_request, malformed_request_lines_are_400)
{
	expect_status("GET\r\n\r\n", 400);
	expect_status("GET /\r\nHost: a\r\n\r\n", 400);
	expect_status("GET  / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	expect_status("GET / x HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1 \r\nHost: a\r\n\r\n", 400);
	expect_status("GET / http/1.1\r\nHost: a\r\n\r\n", 400);
	expect_status("GET / HTTP/11\r\nHost: a\r\n\r\n", 400);
	expect_status("G(T / HTTP/1.1\r\nHost: a\r\n\r\n", 400);
	expect_status("GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n", 400);
}

/* RFC 9110 15.6.6: a major version the server does not support. */
Test(http_request, other_major_versions_are_505)
{
	expect_status("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505);
	expect_status("GET / HTTP/0.9\r\nHost: a\r\n\r\n", 505);
}

/* RFC 9112 5.1: no whitespace between a field name and its colon; 5.2: no obs-fold. */
Test(http_request, malformed_fields_are_400)
{
	expect_status("GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost: a\r\nX-A: b\r\n c\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost: a\r\nno colon\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", 400);
}

/* RFC 9110 5.5: a field value has no control octets (a NUL, an ESC). */
Test(http_request, control_octets_in_a_value_are_400)
{
	const char req[] = "GET / HTTP/1.1\r\nHost: a\x00" "b\r\n\r\n";
	struct outcome o = parse_len(req, sizeof(req) - 1);
	cr_assert_eq(o.res, HTTP_REQUEST_ERROR);
	cr_assert_eq(o.status, 400);
	expect_status("GET / HTTP/1.1\r\nHost: a\x1b[m\r\n\r\n", 400);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: a\tb \xc3\xa9\r\n\r\n").res, HTTP_REQUEST_DONE);
}

/* A body is refused: this server never reads one, so it could not stay in step. */
Test(http_request, a_request_body_is_400)
{
	expect_status("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", 400);
	expect_status("GET / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", 400);
	expect_status("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: -0\r\n\r\n", 400);
	cr_assert_eq(parse("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 00\r\n\r\n").res,
		HTTP_REQUEST_DONE);
}

static char *
request_with_target(size_t line_len)
{
	/* "GET " target " HTTP/1.1\r\n" is line_len octets. */
	size_t target = line_len - strlen("GET  HTTP/1.1\r\n");
	char *s = malloc(line_len + 64);
	cr_assert_not_null(s);
	strcpy(s, "GET /");
	memset(s + 5, 'a', target - 1);
	strcpy(s + 4 + target, " HTTP/1.1\r\nHost: a\r\n\r\n");
	return s;
}

/* RFC 9112 3: 414 for a request line over the limit; at the limit it is read. */
Test(http_request, request_line_at_the_limit_is_read_past_it_414)
{
	char *at = request_with_target(HTTP_REQUEST_LINE_MAX);
	struct outcome o = parse(at);
	cr_assert_eq(o.res, HTTP_REQUEST_DONE);
	cr_assert_eq(strlen(o.path), HTTP_REQUEST_LINE_MAX - strlen("GET  HTTP/1.1\r\n"));
	char *past = request_with_target(HTTP_REQUEST_LINE_MAX + 1);
	expect_status(past, 414);
	free(at);
	free(past);
}

static char *
request_of_head(size_t head_len)
{
	/* "GET / HTTP/1.1\r\nHost: a\r\nX: vvv...\r\n\r\n" is head_len octets. */
	const char *start = "GET / HTTP/1.1\r\nHost: a\r\nX: ";
	size_t fill = head_len - strlen(start) - 4;
	char *s = malloc(head_len + 1);
	cr_assert_not_null(s);
	strcpy(s, start);
	memset(s + strlen(start), 'v', fill);
	strcpy(s + strlen(start) + fill, "\r\n\r\n");
	return s;
}

/* RFC 6585 5: 431 for header fields that are too large, by size or by count. */
Test(http_request, head_at_the_limit_is_read_past_it_431)
{
	char *at = request_of_head(HTTP_REQUEST_HEAD_MAX);
	cr_assert_eq(parse(at).res, HTTP_REQUEST_DONE);
	char *past = request_of_head(HTTP_REQUEST_HEAD_MAX + 1);
	expect_status(past, 431);
	free(at);
	free(past);
	/* Without any line end, the limit alone decides. */
	char *endless = malloc(HTTP_REQUEST_HEAD_MAX + 1);
	cr_assert_not_null(endless);
	strcpy(endless, "GET / HTTP/1.1\r\nHost: ");
	memset(endless + strlen(endless), 'h', HTTP_REQUEST_HEAD_MAX - strlen(endless));
	endless[HTTP_REQUEST_HEAD_MAX] = '\0';
	expect_status(endless, 431);
	free(endless);
}

Test(http_request, fields_at_the_count_limit_are_read_past_it_431)
{
	char buf[HTTP_REQUEST_HEAD_MAX];
	strcpy(buf, "GET / HTTP/1.1\r\n");
	for (uint32_t i = 0; i < HTTP_REQUEST_FIELDS_MAX; i++)
		strcat(buf, i == 0 ? "Host: a\r\n" : "X: y\r\n");
	size_t len = strlen(buf);
	strcat(buf, "\r\n");
	cr_assert_eq(parse(buf).res, HTTP_REQUEST_DONE);
	strcpy(buf + len, "X: y\r\n\r\n");
	expect_status(buf, 431);
}

Test(http_request, an_error_is_final)
{
	struct http_request_parser p;
	http_request_init(&p);
	struct http_request req;
	size_t used;
	const char *bad = "GET / HTTP/1.1\nHost: a\r\n\r\n";
	cr_assert_eq(http_request_feed(&p, slice_make(bad, strlen(bad)), &used, &req),
		HTTP_REQUEST_ERROR);
	const char *good = "GET / HTTP/1.1\r\nHost: a\r\n\r\n";
	cr_assert_eq(http_request_feed(&p, slice_make(good, strlen(good)), &used, &req),
		HTTP_REQUEST_ERROR);
	cr_assert_eq(used, 0);
}
