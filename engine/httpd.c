/* engine/httpd.c - the metrics endpoint's HTTP sessions; see httpd.h. */
#include "engine/httpd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "engine/metrics.h"
#include "proto/http_request.h"

#define HTTPD_HEADER_MAX 256u

struct httpd_session {
	struct httpd *h;
	struct conn *c;
	bool live;
	struct http_request_parser parser;
};

struct httpd {
	struct ring *ring;
	struct conn_pool *conns;
	struct metrics *metrics;
	uint32_t idle_class;
	struct httpd_session sessions[HTTPD_SESSIONS_MAX];
	char *text;                          /* METRICS_TEXT_MAX: the body being sent */
	struct httpd_stats stats;
};

static const struct conn_session_ops httpd_ops;

static const char *
httpd_reason(uint16_t status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 414: return "URI Too Long";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 505: return "HTTP Version Not Supported";
	default: return "Error";
	}
}

/* One reply: the status line, the fields, and the body unless it answers a HEAD. Returns 0 or
 * -ENOBUFS (the output is full: the caller aborts the connection). */
static int
httpd_reply(struct httpd_session *hs, uint16_t status, const char *content_type,
	struct slice body, bool head_only, bool close)
{
	char hdr[HTTPD_HEADER_MAX];
	int n = snprintf(hdr, sizeof(hdr), "HTTP/1.1 %u %s\r\nContent-Type: %s\r\n"
		"Content-Length: %zu\r\n%s%s\r\n", status, httpd_reason(status), content_type,
		body.len, status == 405 ? "Allow: GET, HEAD\r\n" : "",
		close ? "Connection: close\r\n" : "");
	ASSERT(n > 0 && (size_t)n < sizeof(hdr));
	int rc = conn_write(hs->c, slice_make(hdr, (size_t)n));
	if (rc == 0 && !head_only && body.len > 0)
		rc = conn_write(hs->c, body);
	return rc;
}

/* A complete request: /metrics (its query ignored) by GET or HEAD, else 404 or 405. */
static int
httpd_serve(struct httpd_session *hs, const struct http_request *req)
{
	struct httpd *h = hs->h;
	bool close = !req->keep_alive;
	h->stats.requests++;
	if (!slice_eq(req->path, SLICE_LIT("/metrics")))
		return httpd_reply(hs, 404, "text/plain", SLICE_LIT("not found\n"), false, close);
	if (req->method == HTTP_METHOD_OTHER)
		return httpd_reply(hs, 405, "text/plain", SLICE_LIT("only GET and HEAD\n"), false,
			close);
	size_t len = metrics_render(h->metrics, h->text, METRICS_TEXT_MAX);
	if (len == 0)
		return httpd_reply(hs, 500, "text/plain", SLICE_LIT("metrics do not fit\n"), false,
			close);
	return httpd_reply(hs, 200, "text/plain; version=0.0.4; charset=utf-8",
		slice_make(h->text, len), req->method == HTTP_METHOD_HEAD, close);
}

static size_t
httpd_input(void *s, struct conn *c, struct slice in)
{
	struct httpd_session *hs = s;
	size_t taken = 0;
	for (uint32_t i = 0; i < HTTPD_REQUESTS_PER_INPUT; i++) {
		size_t used;
		struct http_request req;
		enum http_request_result res = http_request_feed(&hs->parser, slice_skip(in, taken),
			&used, &req);
		if (res == HTTP_REQUEST_MORE)
			return taken;
		if (res == HTTP_REQUEST_ERROR) {
			uint16_t status = http_request_status(&hs->parser);
			if (httpd_reply(hs, status, "text/plain", SLICE_LIT("bad request\n"), false,
				true) != 0)
				conn_abort(c);
			else
				conn_close(c);
			return in.len;
		}
		taken += used;
		if (httpd_serve(hs, &req) != 0) {
			conn_abort(c);
			return in.len;
		}
		if (!req.keep_alive) {
			conn_close(c);
			return in.len;
		}
		conn_idle(c, hs->h->idle_class);
	}
	conn_kick(c);   /* more pipelined requests: the rest waits for the end of the turn */
	return taken;
}

static void
httpd_timeout(void *s, struct conn *c)
{
	(void)s;
	conn_close(c);
}

static void
httpd_closed(void *s, struct conn *c, int res)
{
	struct httpd_session *hs = s;
	(void)c;
	(void)res;
	hs->live = false;
	hs->c = NULL;
}

static const struct conn_session_ops httpd_ops = {
	.input = httpd_input,
	.timeout = httpd_timeout,
	.closed = httpd_closed,
};

void
httpd_accept(void *httpd, int fd, uint32_t profile)
{
	struct httpd *h = httpd;
	(void)profile;
	struct httpd_session *hs = NULL;
	for (uint32_t i = 0; i < HTTPD_SESSIONS_MAX && hs == NULL; i++) {
		if (!h->sessions[i].live)
			hs = &h->sessions[i];
	}
	struct conn *c = hs == NULL || h->ring->stopping ? NULL
		: conn_adopt(h->conns, fd, UINT32_MAX, &httpd_ops, hs);
	if (c == NULL) {
		h->stats.refused++;
		close(fd);
		return;
	}
	hs->h = h;
	hs->c = c;
	hs->live = true;
	http_request_init(&hs->parser);
	conn_idle(c, h->idle_class);
}

static void
httpd_stop(void *ctx)
{
	struct httpd *h = ctx;
	for (uint32_t i = 0; i < HTTPD_SESSIONS_MAX; i++) {
		if (h->sessions[i].live)
			conn_close(h->sessions[i].c);
	}
}

static const struct ring_hooks httpd_hooks = {
	.name = "httpd",
	.stop = httpd_stop,
};

int
httpd_init(struct ring *r, struct conn_pool *conns, struct metrics *m, struct httpd **out)
{
	struct httpd *h = calloc(1, sizeof(*h));
	if (h == NULL)
		return -ENOMEM;
	h->text = malloc(METRICS_TEXT_MAX);
	if (h->text == NULL) {
		free(h);
		return -ENOMEM;
	}
	h->ring = r;
	h->conns = conns;
	h->metrics = m;
	h->idle_class = conn_pool_timeout_class(conns, HTTPD_IDLE_MS);
	ring_hooks_register(r, &httpd_hooks, h);
	*out = h;
	return 0;
}

void
httpd_fini(struct httpd *h)
{
	if (h == NULL)
		return;
	free(h->text);
	free(h);
}

const struct httpd_stats *
httpd_stats(const struct httpd *h)
{
	return &h->stats;
}
