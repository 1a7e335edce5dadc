/* proto/mail_header.h - the header section of a message handed to `ringmta sendmail` (RFC 5322).
 *
 * I/O-free and allocation-free; the input is untrusted (whatever a script pipes in). Two parts:
 *
 * Fields. mail_header_next walks the header section field by field: a field is a name (printable
 * ASCII but ':', RFC 5322 2.2; obsolete blanks before the ':' admitted, 4.5.3) and its value
 * with every continuation line (a line starting with a blank, 2.2.3). Lines end with LF or CRLF
 * (sendmail's input is text from a pipe). The section ends at an empty line (consumed with the
 * section, `blank_line` set), at a line that is not a field (which starts the body), or at the
 * end of the input. A field slice spans the field's lines with their line ends, so a caller can
 * drop one (Bcc:) by leaving its slice out.
 *
 * Addresses. mail_header_addrs takes the value of an address field (To:, Cc:, Bcc:; 3.4:
 * address-list with groups, display names, quoted strings, nested comments, obsolete routes)
 * and writes each mailbox's addr-spec (comments and folding white space removed, quoted strings
 * kept with their quotes) into out[], NUL-free, each with its length. It does not judge the
 * addr-spec beyond its length: the daemon's RCPT parser does that.
 *
 * Limits and outcomes: an addr-spec of more than MAIL_HEADER_ADDR_LEN_MAX octets, more than
 * `max` addresses, comments nested deeper than MAIL_HEADER_COMMENT_DEPTH_MAX, and an unclosed
 * quote, comment or angle bracket each end the parse with an error (no address is used). */
#ifndef RINGMTA_PROTO_MAIL_HEADER_H
#define RINGMTA_PROTO_MAIL_HEADER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/slice.h"

#define MAIL_HEADER_ADDR_LEN_MAX      254u  /* RFC 5321 4.5.3.1.3: a path of 256 with <> */
#define MAIL_HEADER_COMMENT_DEPTH_MAX  32u

struct mail_header_field {
	struct slice name;       /* without blanks or ':' */
	struct slice value;      /* after the ':', continuation lines included, final line end not */
	struct slice whole;      /* from the name to the end of its last line, line end included */
};

/* private: use the functions */
struct mail_header_iter {
	struct slice rest;       /* the input not yet walked */
	size_t offset;           /* of rest in the input */
	bool done;
	bool blank_line;         /* the section ended at an empty line */
};

/* Starts walking the header section at the start of msg. */
void mail_header_iter_init(struct mail_header_iter *it, struct slice msg);

/* The next field, or false at the end of the section. Cannot fail. */
bool mail_header_next(struct mail_header_iter *it, struct mail_header_field *out);

/* After the end: the octets of msg that belong to the header section (the empty line
 * included), and whether it ended at an empty line. */
size_t mail_header_end(const struct mail_header_iter *it);
bool mail_header_ended_blank(const struct mail_header_iter *it);

/* True if the field name equals `name`, ignoring ASCII case (RFC 5322 1.2.2). */
bool mail_header_is(const struct mail_header_field *f, struct slice name);

enum mail_header_addr_status {
	MAIL_HEADER_ADDR_OK,
	MAIL_HEADER_ADDR_UNCLOSED,     /* a quote, comment or '<' without its end */
	MAIL_HEADER_ADDR_TOO_LONG,     /* an addr-spec over MAIL_HEADER_ADDR_LEN_MAX */
	MAIL_HEADER_ADDR_TOO_MANY,     /* more than max */
	MAIL_HEADER_ADDR_TOO_DEEP,     /* comments nested deeper than the limit */
};

struct mail_header_addr {
	uint8_t text[MAIL_HEADER_ADDR_LEN_MAX];
	uint32_t len;
};

/* Appends the addr-specs of an address-list value to out[*count..max). Returns OK, or the first
 * error (out then holds what came before it; the caller should use none of it). */
enum mail_header_addr_status mail_header_addrs(struct slice value, struct mail_header_addr *out,
	uint32_t max, uint32_t *count);
#endif
