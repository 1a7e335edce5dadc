/* proto/http_request.c - HTTP/1.1 request heads; see http_request.h. */
#include "proto/http_request.h"

#include <string.h>

void
http_request_init(struct http_request_parser *p)
{
	*p = (struct http_request_parser){ .method = HTTP_METHOD_OTHER };
}

/* RFC 9110 5.6.2: tchar, the octets of a token (methods, field names, connection options). */
static bool
http_tchar(uint8_t c)
{
	if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'))
		return true;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static bool
http_token(struct slice s)
{
	if (s.len == 0)
		return false;
	for (size_t i = 0; i < s.len; i++) {
		if (!http_tchar(s.ptr[i]))
			return false;
	}
	return true;
}

static uint8_t
http_fail(struct http_request_parser *p, uint16_t status)
{
	p->status = status;
	return HTTP_REQUEST_ERROR;
}

/* The path of a request-target (RFC 9112 3.2): origin-form as it is, absolute-form from the
 * first slash after the authority; without the query. Offsets are into the input. */
static void
http_target_path(struct http_request_parser *p, struct slice target, uint32_t target_off)
{
	size_t start = 0;
	if (slice_starts_with_nocase(target, SLICE_LIT("http://"))
		|| slice_starts_with_nocase(target, SLICE_LIT("https://"))) {
		const uint8_t *sep = memchr(target.ptr, ':', target.len);
		start = (size_t)(sep - target.ptr) + 3;
		const uint8_t *slash = memchr(target.ptr + start, '/', target.len - start);
		start = slash != NULL ? (size_t)(slash - target.ptr) : target.len;
	}
	const uint8_t *query = memchr(target.ptr + start, '?', target.len - start);
	size_t end = query != NULL ? (size_t)(query - target.ptr) : target.len;
	p->path_off = target_off + (uint32_t)start;
	p->path_len = (uint32_t)(end - start);
}

/* RFC 9112 3: method SP request-target SP HTTP-version, single spaces. */
static uint8_t
http_request_line(struct http_request_parser *p, struct slice line, uint32_t line_off)
{
	const uint8_t *sp1 = memchr(line.ptr, ' ', line.len);
	if (sp1 == NULL)
		return http_fail(p, 400);
	size_t m_len = (size_t)(sp1 - line.ptr);
	struct slice rest = slice_skip(line, m_len + 1);
	const uint8_t *sp2 = memchr(rest.ptr, ' ', rest.len);
	if (sp2 == NULL)
		return http_fail(p, 400);
	struct slice method = slice_sub(line, 0, m_len);
	struct slice target = slice_sub(rest, 0, (size_t)(sp2 - rest.ptr));
	struct slice version = slice_skip(rest, target.len + 1);
	if (!http_token(method) || target.len == 0)
		return http_fail(p, 400);
	for (size_t i = 0; i < target.len; i++) {
		if (target.ptr[i] < 0x21 || target.ptr[i] > 0x7e)
			return http_fail(p, 400);
	}
	/* RFC 9112 2.3: HTTP-version = "HTTP" "/" DIGIT "." DIGIT, case-sensitive. */
	if (version.len != 8 || !slice_starts_with(version, SLICE_LIT("HTTP/"))
		|| version.ptr[5] < '0' || version.ptr[5] > '9' || version.ptr[6] != '.'
		|| version.ptr[7] < '0' || version.ptr[7] > '9')
		return http_fail(p, 400);
	if (version.ptr[5] != '1')
		return http_fail(p, 505);
	p->version_minor = version.ptr[7] == '0' ? 0 : 1;
	if (slice_eq(method, SLICE_LIT("GET")))
		p->method = HTTP_METHOD_GET;
	else if (slice_eq(method, SLICE_LIT("HEAD")))
		p->method = HTTP_METHOD_HEAD;
	else
		p->method = HTTP_METHOD_OTHER;
	http_target_path(p, target, line_off + (uint32_t)(target.ptr - line.ptr));
	p->have_request_line = true;
	return HTTP_REQUEST_MORE;
}

/* RFC 9110 7.6.1: a comma-separated list of connection options; "close" ends the connection. */
static bool
http_has_close(struct slice v)
{
	while (v.len > 0) {
		const uint8_t *comma = memchr(v.ptr, ',', v.len);
		size_t n = comma != NULL ? (size_t)(comma - v.ptr) : v.len;
		struct slice opt = slice_sub(v, 0, n);
		while (opt.len > 0 && (opt.ptr[0] == ' ' || opt.ptr[0] == '\t'))
			opt = slice_skip(opt, 1);
		while (opt.len > 0 && (opt.ptr[opt.len - 1] == ' ' || opt.ptr[opt.len - 1] == '\t'))
			opt.len--;
		if (slice_eq_nocase(opt, SLICE_LIT("close")))
			return true;
		v = slice_skip(v, comma != NULL ? n + 1 : n);
	}
	return false;
}

/* The fields the server acts on; every other field is checked for syntax and ignored. */
static uint8_t
http_field(struct http_request_parser *p, struct slice name, struct slice value)
{
	if (slice_eq_nocase(name, SLICE_LIT("host"))) {
		if (p->hosts < 2)
			p->hosts++;
	} else if (slice_eq_nocase(name, SLICE_LIT("connection"))) {
		if (http_has_close(value))
			p->close = true;
	} else if (slice_eq_nocase(name, SLICE_LIT("transfer-encoding"))) {
		return http_fail(p, 400);   /* a body this server does not read */
	} else if (slice_eq_nocase(name, SLICE_LIT("content-length"))) {
		bool zero = value.len > 0;
		for (size_t i = 0; i < value.len; i++) {
			if (value.ptr[i] < '0' || value.ptr[i] > '9')
				return http_fail(p, 400);   /* RFC 9112 6.3: invalid Content-Length */
			zero = zero && value.ptr[i] == '0';
		}
		if (!zero)
			return http_fail(p, 400);
	}
	return HTTP_REQUEST_MORE;
}

/* RFC 9112 5: field-name ":" OWS field-value OWS. */
static uint8_t
http_field_line(struct http_request_parser *p, struct slice line)
{
	if (line.ptr[0] == ' ' || line.ptr[0] == '\t')
		return http_fail(p, 400);   /* RFC 9112 5.2: obs-fold */
	if (++p->fields > HTTP_REQUEST_FIELDS_MAX)
		return http_fail(p, 431);
	const uint8_t *colon = memchr(line.ptr, ':', line.len);
	if (colon == NULL)
		return http_fail(p, 400);
	struct slice name = slice_sub(line, 0, (size_t)(colon - line.ptr));
	if (!http_token(name))
		return http_fail(p, 400);   /* RFC 9112 5.1: no whitespace before the colon */
	struct slice value = slice_skip(line, name.len + 1);
	while (value.len > 0 && (value.ptr[0] == ' ' || value.ptr[0] == '\t'))
		value = slice_skip(value, 1);
	while (value.len > 0 && (value.ptr[value.len - 1] == ' ' || value.ptr[value.len - 1] == '\t'))
		value.len--;
	for (size_t i = 0; i < value.len; i++) {
		uint8_t c = value.ptr[i];
		if (c != '\t' && (c < 0x20 || c == 0x7f))
			return http_fail(p, 400);   /* RFC 9110 5.5: no control octets */
	}
	return http_field(p, name, value);
}

/* The empty line: the head is complete if its Host fields are right (RFC 9112 3.2). */
static uint8_t
http_head_end(struct http_request_parser *p)
{
	if (p->hosts > 1 || (p->version_minor == 1 && p->hosts == 0))
		return http_fail(p, 400);
	return HTTP_REQUEST_DONE;
}

/* One complete line, its CRLF removed. */
static uint8_t
http_line(struct http_request_parser *p, struct slice line, uint32_t line_off)
{
	if (!p->have_request_line) {
		if (line.len == 0)   /* RFC 9112 2.2: empty lines before the request line */
			return ++p->empty_lines > HTTP_REQUEST_EMPTY_LINES_MAX ? http_fail(p, 400)
				: HTTP_REQUEST_MORE;
		return http_request_line(p, line, line_off);
	}
	if (line.len == 0)
		return http_head_end(p);
	return http_field_line(p, line);
}

enum http_request_result
http_request_feed(struct http_request_parser *p, struct slice in, size_t *used,
	struct http_request *out)
{
	*used = 0;
	if (p->status != 0)
		return HTTP_REQUEST_ERROR;
	ASSERT(p->scan_pos <= in.len);   /* the input only grows until a head is consumed */
	size_t limit = in.len < HTTP_REQUEST_HEAD_MAX ? in.len : HTTP_REQUEST_HEAD_MAX;
	for (;;) {
		const uint8_t *lf = p->scan_pos < limit
			? memchr(in.ptr + p->scan_pos, '\n', limit - p->scan_pos) : NULL;
		if (lf == NULL) {
			p->scan_pos = (uint32_t)limit;
			if (!p->have_request_line && in.len - p->line_start >= HTTP_REQUEST_LINE_MAX)
				return http_fail(p, 414);
			if (in.len >= HTTP_REQUEST_HEAD_MAX)
				return http_fail(p, 431);
			return HTTP_REQUEST_MORE;
		}
		size_t end = (size_t)(lf - in.ptr);
		if (!p->have_request_line && end + 1 - p->line_start > HTTP_REQUEST_LINE_MAX)
			return http_fail(p, 414);
		if (end == p->line_start || in.ptr[end - 1] != '\r')
			return http_fail(p, 400);   /* RFC 9112 2.2: a bare LF */
		struct slice line = slice_sub(in, p->line_start, end - 1 - p->line_start);
		if (memchr(line.ptr, '\r', line.len) != NULL)
			return http_fail(p, 400);   /* RFC 9112 2.2: a bare CR */
		uint8_t rc = http_line(p, line, p->line_start);
		p->line_start = p->scan_pos = (uint32_t)end + 1;
		if (rc == HTTP_REQUEST_ERROR)
			return HTTP_REQUEST_ERROR;
		if (rc == HTTP_REQUEST_DONE) {
			*out = (struct http_request){ .method = (enum http_method)p->method,
				.path = slice_sub(in, p->path_off, p->path_len),
				.version_minor = p->version_minor,
				.keep_alive = p->version_minor == 1 && !p->close };
			*used = end + 1;
			http_request_init(p);
			return HTTP_REQUEST_DONE;
		}
	}
}

uint16_t
http_request_status(const struct http_request_parser *p)
{
	return p->status;
}
