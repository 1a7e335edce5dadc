/* proto/smtp_reply.c - the SMTP reply parser; see smtp_reply.h. */
#include "proto/smtp_reply.h"

#include <string.h>

#define SMTP_REPLY_SUBJECT_DIGITS_MAX 3u   /* RFC 3463 2: 1*3digit */

_Static_assert(SMTP_REPLY_LINES_MAX <= UINT16_MAX, "line counts stay small");
_Static_assert(SMTP_REPLY_TEXT_MAX <= UINT32_MAX / 2, "text lengths do not overflow");

void
smtp_reply_init(struct smtp_reply_parser *p)
{
	p->code = 0;
	p->done = false;
	p->truncated = false;
	p->error = SMTP_REPLY_ERR_NONE;
	p->lines = 0;
	p->text_len = 0;
	p->enhanced = (struct smtp_reply_enhanced){ .cls = 0 };
}

static bool
smtp_reply_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

/* 1 to 3 digits at t[*i]; advances *i. */
static bool
smtp_reply_number(struct slice t, size_t *i, uint16_t *out)
{
	size_t start = *i;
	uint16_t v = 0;
	while (*i < t.len && smtp_reply_digit(t.ptr[*i])
		&& *i - start < SMTP_REPLY_SUBJECT_DIGITS_MAX)
		v = (uint16_t)(v * 10 + (t.ptr[(*i)++] - '0'));
	*out = v;
	return *i > start;
}

size_t
smtp_reply_enhanced_parse(struct slice t, struct smtp_reply_enhanced *out)
{
	if (t.len < 5 || (t.ptr[0] != '2' && t.ptr[0] != '4' && t.ptr[0] != '5') || t.ptr[1] != '.')
		return 0;
	size_t i = 2;
	struct smtp_reply_enhanced e = { .cls = (uint8_t)(t.ptr[0] - '0') };
	if (!smtp_reply_number(t, &i, &e.subject) || i >= t.len || t.ptr[i] != '.')
		return 0;
	i++;
	if (!smtp_reply_number(t, &i, &e.detail) || (i < t.len && t.ptr[i] != ' '))
		return 0;
	*out = e;
	return i;
}

size_t
smtp_reply_enhanced_format(struct smtp_reply_enhanced e, uint8_t *buf)
{
	if (e.cls == 0)
		return 0;
	ASSERT(e.cls <= 9);
	ASSERT(e.subject <= 999);
	ASSERT(e.detail <= 999);
	size_t n = 0;
	buf[n++] = (uint8_t)('0' + e.cls);
	uint16_t parts[2] = { e.subject, e.detail };
	for (int k = 0; k < 2; k++) {
		buf[n++] = '.';
		uint16_t v = parts[k];
		if (v >= 100)
			buf[n++] = (uint8_t)('0' + v / 100);
		if (v >= 10)
			buf[n++] = (uint8_t)('0' + v / 10 % 10);
		buf[n++] = (uint8_t)('0' + v % 10);
	}
	ASSERT(n <= SMTP_REPLY_ENHANCED_LEN_MAX);
	return n;
}

/* Appends a line's text to the kept text: controls made '?', cut at the bound. */
static void
smtp_reply_keep(struct smtp_reply_parser *p, struct slice t)
{
	if (p->text_len > 0 && t.len > 0) {   /* one space between the texts of two lines */
		if (p->text_len == SMTP_REPLY_TEXT_MAX) {
			p->truncated = true;
			return;
		}
		p->text[p->text_len++] = ' ';
	}
	size_t room = SMTP_REPLY_TEXT_MAX - p->text_len;
	size_t n = t.len < room ? t.len : room;
	p->truncated |= n < t.len;
	for (size_t i = 0; i < n; i++) {   /* copy: the reply outlives the input buffer */
		uint8_t c = t.ptr[i];
		p->text[p->text_len + i] = (c < 0x20 || c == 0x7f) ? '?' : c;
	}
	p->text_len += (uint32_t)n;
}

static enum smtp_reply_event
smtp_reply_fail(struct smtp_reply_parser *p, enum smtp_reply_error err, size_t *used)
{
	p->error = err;
	*used = 0;
	return SMTP_REPLY_ERROR;
}

/* Splits "ddd[ -]text" into its parts; false if it is not a reply line. */
static bool
smtp_reply_line_parse(struct slice line, uint16_t *code, bool *last, struct slice *text)
{
	if (line.len < 3 || line.ptr[0] < '2' || line.ptr[0] > '5' || !smtp_reply_digit(line.ptr[1])
		|| !smtp_reply_digit(line.ptr[2]))
		return false;
	*code = (uint16_t)((line.ptr[0] - '0') * 100 + (line.ptr[1] - '0') * 10
		+ (line.ptr[2] - '0'));
	if (line.len == 3) {   /* RFC 5321 4.2: Reply-code [ SP textstring ] CRLF */
		*last = true;
		*text = slice_sub(line, 3, 0);
		return true;
	}
	if (line.ptr[3] != ' ' && line.ptr[3] != '-')
		return false;
	*last = line.ptr[3] == ' ';
	*text = slice_skip(line, 4);
	return true;
}

enum smtp_reply_event
smtp_reply_feed(struct smtp_reply_parser *p, struct slice in, size_t *used,
	struct smtp_reply_line *out)
{
	if (p->error != SMTP_REPLY_ERR_NONE)
		return smtp_reply_fail(p, p->error, used);
	if (p->done)
		smtp_reply_init(p);   /* a new reply starts */
	size_t scan = in.len < SMTP_REPLY_LINE_LEN_MAX ? in.len : SMTP_REPLY_LINE_LEN_MAX;
	const uint8_t *lf = scan > 0 ? memchr(in.ptr, '\n', scan) : NULL;
	if (lf == NULL) {
		*used = 0;
		if (in.len >= SMTP_REPLY_LINE_LEN_MAX)
			return smtp_reply_fail(p, SMTP_REPLY_ERR_LINE_TOO_LONG, used);
		return SMTP_REPLY_MORE;
	}
	size_t n = (size_t)(lf - in.ptr) + 1;
	struct slice line = slice_sub(in, 0, n - 1);
	if (line.len > 0 && line.ptr[line.len - 1] == '\r')
		line.len--;
	uint16_t code;
	bool last;
	struct slice text;
	if (!smtp_reply_line_parse(line, &code, &last, &text))
		return smtp_reply_fail(p, SMTP_REPLY_ERR_SYNTAX, used);
	if (p->lines > 0 && code != p->code)   /* RFC 5321 4.2.1: one code per reply */
		return smtp_reply_fail(p, SMTP_REPLY_ERR_CODE_MISMATCH, used);
	if (p->lines == SMTP_REPLY_LINES_MAX)
		return smtp_reply_fail(p, SMTP_REPLY_ERR_TOO_MANY_LINES, used);
	*out = (struct smtp_reply_line){ .text = text, .index = p->lines, .code = code,
		.last = last };
	p->code = code;
	p->lines++;
	/* RFC 2034 3: the enhanced code leads each line; the first line's is the reply's. */
	struct smtp_reply_enhanced e;
	size_t elen = smtp_reply_enhanced_parse(text, &e);
	if (elen > 0 && e.cls == code / 100) {
		if (p->lines == 1)
			p->enhanced = e;
		text = slice_skip(text, elen < text.len ? elen + 1 : elen);
	}
	smtp_reply_keep(p, text);
	p->done = last;
	*used = n;
	return last ? SMTP_REPLY_DONE : SMTP_REPLY_LINE;
}

struct smtp_reply
smtp_reply_get(const struct smtp_reply_parser *p)
{
	ASSERT(p->done);
	return (struct smtp_reply){
		.code = p->code,
		.enhanced = p->enhanced,
		.text = slice_make(p->text, p->text_len),
		.line_count = p->lines,
		.truncated = p->truncated,
	};
}

enum smtp_reply_error
smtp_reply_error(const struct smtp_reply_parser *p)
{
	return p->error;
}

const char *
smtp_reply_error_name(enum smtp_reply_error err)
{
	switch (err) {
	case SMTP_REPLY_ERR_NONE:
		return "none";
	case SMTP_REPLY_ERR_SYNTAX:
		return "reply syntax";
	case SMTP_REPLY_ERR_CODE_MISMATCH:
		return "reply codes differ between lines";
	case SMTP_REPLY_ERR_LINE_TOO_LONG:
		return "reply line too long";
	case SMTP_REPLY_ERR_TOO_MANY_LINES:
		return "too many reply lines";
	}
	return "unknown";
}
