/* proto/http_request.h - the parser of HTTP/1.1 request heads, as the metrics endpoint reads them.
 *
 * I/O-free and allocation-free: one struct http_request_parser per connection of the metrics
 * endpoint (engine/httpd). It reads a request head (RFC 9112 2.1: the request line, header field
 * lines, an empty line) and reports what the server needs to answer it: the method, the path of
 * the target (without its query), the version and whether the connection persists. It does not
 * read request bodies: a request that announces one (Content-Length other than 0, or any
 * Transfer-Encoding) is an error, since a GET or HEAD has no use for one (RFC 9110 9.3.1) and a
 * server that does not read a body cannot keep the connection in step.
 *
 * Feeding: the input always starts at the first octet of the request and grows as bytes arrive
 * (a caller offers the bytes not consumed again, with more). Nothing is consumed until the head
 * is complete; then *used is its length and the parser is ready for the next request on the
 * connection. The parser remembers how far it has looked, so feeding octet by octet costs no more
 * than feeding the head whole, and gives the same result.
 *
 * Strictness, each rule from RFC 9112 (and the status it gets): lines end in CRLF, a bare CR or LF
 * is 400 (2.2); up to HTTP_REQUEST_EMPTY_LINES_MAX empty lines before the request line are
 * ignored (2.2); the request line is method SP request-target SP HTTP-version, with single spaces
 * (3); a version other than HTTP/1.x is 505 (2.3, RFC 9110 15.6.6); whitespace between a field
 * name and its colon is 400 (5.1); an obsolete line folding is 400 (5.2); an HTTP/1.1 request
 * without exactly one Host field, or any request with more than one, is 400 (3.2); a control
 * octet in a field value is 400 (RFC 9110 5.5). Limits: a request line longer than
 * HTTP_REQUEST_LINE_MAX is 414 (RFC 9112 3); a head longer than HTTP_REQUEST_HEAD_MAX, or with
 * more than HTTP_REQUEST_FIELDS_MAX fields, is 431 (RFC 6585 5). An error is final: the byte
 * stream can no longer be trusted to be in step, so the server answers and closes. */
#ifndef RINGMTA_PROTO_HTTP_REQUEST_H
#define RINGMTA_PROTO_HTTP_REQUEST_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/slice.h"

#define HTTP_REQUEST_LINE_MAX        2048u   /* request line with its CRLF; longer: 414 */
#define HTTP_REQUEST_HEAD_MAX        8192u   /* the whole head with the empty line; longer: 431 */
#define HTTP_REQUEST_FIELDS_MAX        64u   /* header field lines; more: 431 */
#define HTTP_REQUEST_EMPTY_LINES_MAX    4u   /* ignored before the request line; more: 400 */
_Static_assert(HTTP_REQUEST_LINE_MAX <= HTTP_REQUEST_HEAD_MAX, "the request line is in the head");

enum http_request_result {
	HTTP_REQUEST_MORE,    /* no complete head yet: nothing consumed */
	HTTP_REQUEST_DONE,    /* a head was consumed: *out describes it */
	HTTP_REQUEST_ERROR,   /* see http_request_status(); final */
};

enum http_method {
	HTTP_METHOD_GET,
	HTTP_METHOD_HEAD,
	HTTP_METHOD_OTHER,    /* any other token (methods are case-sensitive: RFC 9110 9.1) */
};

/* A complete request head. path is a slice of the input given to the call that returned DONE. */
struct http_request {
	enum http_method method;
	struct slice path;     /* "/metrics" for "GET /metrics?x=1" or "GET http://h/metrics" */
	uint8_t version_minor; /* HTTP/1.0 or HTTP/1.1 */
	bool keep_alive;       /* HTTP/1.1 without "Connection: close" (HTTP/1.0 always closes) */
};

/* private: use the functions */
struct http_request_parser {
	uint32_t line_start;   /* where the line being read starts in the input */
	uint32_t scan_pos;     /* the input before this has no LF after line_start */
	uint32_t empty_lines;  /* before the request line */
	uint32_t fields;
	uint32_t path_off;
	uint32_t path_len;
	uint16_t status;       /* 0, or the error's status code */
	uint8_t method;        /* enum http_method */
	uint8_t version_minor;
	uint8_t hosts;
	bool have_request_line;
	bool close;
};

void http_request_init(struct http_request_parser *p);

/* Reads the head at the start of in (see the header comment). On DONE, *used is the head's length
 * and *out is filled; otherwise *used is 0. Cannot fail otherwise; no I/O. */
enum http_request_result http_request_feed(struct http_request_parser *p, struct slice in,
	size_t *used, struct http_request *out);

/* After HTTP_REQUEST_ERROR: the status to answer, 400, 414, 431 or 505. */
uint16_t http_request_status(const struct http_request_parser *p);
#endif
