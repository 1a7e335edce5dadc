/* proto/smtp_reply.h - the parser of SMTP replies, as a client reads them (RFC 5321 4.2).
 *
 * I/O-free and allocation-free: one struct smtp_reply_parser per outgoing connection, embedded in
 * its smtp_client. A reply is one or more lines: "ddd-text" CRLF for every line but the last,
 * "ddd text" CRLF (or "ddd" CRLF) for the last; every line carries the same code (RFC 5321 4.2.1
 * grammar: the first digit 2 to 5; the other two any digit). An LF without its CR also ends a
 * line, as servers in the wild send them; the CR is not part of the text.
 *
 * Feeding: smtp_reply_feed looks at one line at the start of its input. A partial line is not
 * consumed (the caller offers it again with more octets). Each complete line is consumed and
 * reported (its text is a slice of the input, so a caller can read EHLO keywords line by line);
 * the last line completes the reply, which smtp_reply_get() then describes.
 *
 * The kept reply: its code, its RFC 3463 enhanced status code when the first line starts with
 * one of the reply's class (RFC 2034 3: "c.sss.ddd" SP, subject and detail of 1 to 3 digits), and
 * the text of its lines joined by one space, each line's leading enhanced code of that class
 * removed. Octets below 0x20 and 0x7f become '?' in the kept text, so that it can go into a log
 * line or a DSN's Diagnostic-Code as it is; other octets (UTF-8 included) are kept.
 *
 * Limits and their outcomes: a line longer than SMTP_REPLY_LINE_LEN_MAX octets with its CRLF, a
 * reply of more than SMTP_REPLY_LINES_MAX lines, a line that is not "ddd", "ddd text" or
 * "ddd-text" (first digit 2..5), and a line whose code differs from the first line's end the
 * parse with SMTP_REPLY_ERROR and a reason; the error is final (every later call returns it
 * again and consumes nothing): the byte stream can no longer be trusted to be in step. Kept text
 * beyond SMTP_REPLY_TEXT_MAX octets is cut, and the reply says it was. */
#ifndef RINGMTA_PROTO_SMTP_REPLY_H
#define RINGMTA_PROTO_SMTP_REPLY_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/slice.h"

#define SMTP_REPLY_LINE_LEN_MAX 2048u  /* RFC 5321 4.5.3.1.5: 512 with CRLF; servers send more */
#define SMTP_REPLY_LINES_MAX     128u  /* a large EHLO answer has about 20 */
#define SMTP_REPLY_TEXT_MAX     2048u  /* kept text of one reply; longer is cut */
#define SMTP_REPLY_ENHANCED_LEN_MAX 9u /* "5.123.456" */

enum smtp_reply_event {
	SMTP_REPLY_MORE,    /* no complete line at the start of the input: nothing consumed */
	SMTP_REPLY_LINE,    /* a line that is not the last was consumed */
	SMTP_REPLY_DONE,    /* the last line was consumed: smtp_reply_get() holds the reply */
	SMTP_REPLY_ERROR,   /* the input broke the syntax or a bound; see smtp_reply_error() */
};

enum smtp_reply_error {
	SMTP_REPLY_ERR_NONE,
	SMTP_REPLY_ERR_SYNTAX,          /* not "ddd", "ddd text" or "ddd-text" with ddd 200..599 */
	SMTP_REPLY_ERR_CODE_MISMATCH,   /* a line's code differs from the first line's */
	SMTP_REPLY_ERR_LINE_TOO_LONG,   /* no line end within SMTP_REPLY_LINE_LEN_MAX octets */
	SMTP_REPLY_ERR_TOO_MANY_LINES,  /* more than SMTP_REPLY_LINES_MAX lines */
};

/* RFC 3463 class.subject.detail; cls 0 when the reply had none. */
struct smtp_reply_enhanced {
	uint8_t cls;        /* 2, 4 or 5: the first digit of the reply code */
	uint16_t subject;   /* 0..999 */
	uint16_t detail;    /* 0..999 */
};

/* A complete reply. text points into the parser and stays valid until its next feed. */
struct smtp_reply {
	uint16_t code;                         /* 200..599 */
	struct smtp_reply_enhanced enhanced;
	struct slice text;                     /* see the header comment */
	uint32_t line_count;                   /* 1..SMTP_REPLY_LINES_MAX */
	bool truncated;                        /* text was cut at SMTP_REPLY_TEXT_MAX */
};

/* One line as it is consumed. */
struct smtp_reply_line {
	struct slice text;   /* after "ddd-" or "ddd ", without the line end; slice of the input */
	uint32_t index;      /* 0 for the first line of a reply */
	uint16_t code;
	bool last;
};

/* private: use the functions */
struct smtp_reply_parser {
	uint16_t code;                         /* of the reply being read; 0 before a first line */
	bool done;                             /* the last call completed a reply */
	bool truncated;
	enum smtp_reply_error error;
	uint32_t lines;
	uint32_t text_len;
	struct smtp_reply_enhanced enhanced;
	uint8_t text[SMTP_REPLY_TEXT_MAX];
};

/* Prepares p for a new connection. */
void smtp_reply_init(struct smtp_reply_parser *p);

/* Looks at one line at the start of `in`. Sets *used to the octets consumed (0 for MORE and
 * ERROR, the line with its end otherwise) and, for LINE and DONE, *line to that line. After
 * DONE the next call starts a new reply. Cannot fail; a server's bytes end at worst in ERROR. */
enum smtp_reply_event smtp_reply_feed(struct smtp_reply_parser *p, struct slice in, size_t *used,
	struct smtp_reply_line *line);

/* The reply the last DONE completed; valid until the next smtp_reply_feed. */
struct smtp_reply smtp_reply_get(const struct smtp_reply_parser *p);

/* Why the parse ended (SMTP_REPLY_ERR_NONE while it has not), and a short name for it. */
enum smtp_reply_error smtp_reply_error(const struct smtp_reply_parser *p);
const char *smtp_reply_error_name(enum smtp_reply_error err);

/* The enhanced code at the start of text: "c.sss.ddd" followed by a space or the end, with c in
 * 2, 4, 5 and 1 to 3 digits for sss and ddd. Returns the octets it spans (0 if there is none). */
size_t smtp_reply_enhanced_parse(struct slice text, struct smtp_reply_enhanced *out);

/* Writes "c.sss.ddd" into buf (at least SMTP_REPLY_ENHANCED_LEN_MAX octets); returns its length,
 * 0 when e.cls is 0. */
size_t smtp_reply_enhanced_format(struct smtp_reply_enhanced e, uint8_t *buf);
#endif
