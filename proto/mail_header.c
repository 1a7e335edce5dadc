/* proto/mail_header.c - header fields and address lists of a submitted message; see
 * mail_header.h. */
#include "proto/mail_header.h"

#include <string.h>

#include "base/assert.h"

/* The length of the line at the start of s, its LF included (all of s without one). */
static size_t
mail_header_line_len(struct slice s)
{
	const uint8_t *lf = memchr(s.ptr, '\n', s.len);
	return lf == NULL ? s.len : (size_t)(lf - s.ptr) + 1;
}

static bool
mail_header_is_blank(uint8_t c)
{
	return c == ' ' || c == '\t';
}

/* An empty line: "\n" or "\r\n" (the end of the section). */
static bool
mail_header_line_empty(struct slice line)
{
	return (line.len == 1 && line.ptr[0] == '\n')
		|| (line.len == 2 && line.ptr[0] == '\r' && line.ptr[1] == '\n');
}

/* RFC 5322 3.6.8 ftext: printable US-ASCII but ':'. Returns the name's length and the offset
 * of the ':' in *colon, or 0 when the line is not a field. */
static size_t
mail_header_name(struct slice line, size_t *colon)
{
	size_t i = 0;
	while (i < line.len && line.ptr[i] >= 33 && line.ptr[i] <= 126 && line.ptr[i] != ':')
		i++;
	size_t name_len = i;
	while (i < line.len && mail_header_is_blank(line.ptr[i]))   /* RFC 5322 4.5.3 obs */
		i++;
	if (name_len == 0 || i == line.len || line.ptr[i] != ':')
		return 0;
	*colon = i;
	return name_len;
}

void
mail_header_iter_init(struct mail_header_iter *it, struct slice msg)
{
	*it = (struct mail_header_iter){ .rest = msg, .offset = 0, .done = false,
		.blank_line = false };
}

static void
mail_header_consume(struct mail_header_iter *it, size_t n)
{
	ASSERT(n <= it->rest.len);
	it->rest = slice_skip(it->rest, n);
	it->offset += n;
}

bool
mail_header_next(struct mail_header_iter *it, struct mail_header_field *out)
{
	if (it->done || it->rest.len == 0) {
		it->done = true;
		return false;
	}
	struct slice line = slice_sub(it->rest, 0, mail_header_line_len(it->rest));
	size_t colon = 0;
	size_t name_len = mail_header_line_empty(line) ? 0 : mail_header_name(line, &colon);
	if (name_len == 0) {
		if (mail_header_line_empty(line)) {
			mail_header_consume(it, line.len);
			it->blank_line = true;
		}
		it->done = true;   /* a line that is not a field starts the body */
		return false;
	}
	size_t whole = line.len;
	while (whole < it->rest.len && mail_header_is_blank(it->rest.ptr[whole]))
		whole += mail_header_line_len(slice_skip(it->rest, whole));
	size_t end = whole;   /* the value stops before the final line end */
	if (end > 0 && it->rest.ptr[end - 1] == '\n')
		end--;
	if (end > colon + 1 && it->rest.ptr[end - 1] == '\r')
		end--;
	out->name = slice_sub(it->rest, 0, name_len);
	out->value = slice_sub(it->rest, colon + 1, end - colon - 1);
	out->whole = slice_sub(it->rest, 0, whole);
	mail_header_consume(it, whole);
	return true;
}

size_t
mail_header_end(const struct mail_header_iter *it)
{
	return it->offset;
}

bool
mail_header_ended_blank(const struct mail_header_iter *it)
{
	return it->blank_line;
}

bool
mail_header_is(const struct mail_header_field *f, struct slice name)
{
	return slice_eq_nocase(f->name, name);
}

/* ---- address lists ---- */

/* The mailbox being read: the text outside angle brackets (a bare addr-spec, or a display name
 * that an angle-addr then overrides) and the text inside them. */
struct mail_header_box {
	struct mail_header_addr plain;
	struct mail_header_addr angle;
	bool have_angle;
	bool in_angle;
	bool too_long;
};

static void
mail_header_box_put(struct mail_header_box *b, uint8_t c)
{
	struct mail_header_addr *a = b->in_angle ? &b->angle : &b->plain;
	if (a->len == MAIL_HEADER_ADDR_LEN_MAX) {
		b->too_long = true;
		return;
	}
	a->text[a->len++] = c;
}

static enum mail_header_addr_status
mail_header_box_emit(struct mail_header_box *b, struct mail_header_addr *out, uint32_t max,
	uint32_t *count)
{
	const struct mail_header_addr *a = b->have_angle ? &b->angle : &b->plain;
	enum mail_header_addr_status st = MAIL_HEADER_ADDR_OK;
	if (b->too_long)
		st = MAIL_HEADER_ADDR_TOO_LONG;
	else if (a->len > 0 && *count >= max)
		st = MAIL_HEADER_ADDR_TOO_MANY;
	else if (a->len > 0)
		out[(*count)++] = *a;
	*b = (struct mail_header_box){ .have_angle = false };
	return st;
}

/* A comment at value[*i] == '(' (RFC 5322 3.2.2: nested, with quoted pairs): skipped. */
static enum mail_header_addr_status
mail_header_skip_comment(struct slice v, size_t *i)
{
	uint32_t depth = 0;
	for (; *i < v.len; (*i)++) {
		uint8_t c = v.ptr[*i];
		if (c == '\\') {
			(*i)++;
		} else if (c == '(') {
			if (++depth > MAIL_HEADER_COMMENT_DEPTH_MAX)
				return MAIL_HEADER_ADDR_TOO_DEEP;
		} else if (c == ')' && --depth == 0) {
			return MAIL_HEADER_ADDR_OK;
		}
	}
	return MAIL_HEADER_ADDR_UNCLOSED;
}

/* A quoted string at value[*i] == '"' (3.2.4): copied with its quotes and quoted pairs. */
static enum mail_header_addr_status
mail_header_copy_quoted(struct slice v, size_t *i, struct mail_header_box *b)
{
	mail_header_box_put(b, '"');
	for ((*i)++; *i < v.len; (*i)++) {
		uint8_t c = v.ptr[*i];
		if (c == '\r' || c == '\n')
			continue;   /* folding inside the quotes */
		if (c == '\\' && *i + 1 < v.len) {
			mail_header_box_put(b, c);
			c = v.ptr[++(*i)];
		} else if (c == '"') {
			mail_header_box_put(b, c);
			return MAIL_HEADER_ADDR_OK;
		}
		mail_header_box_put(b, c);
	}
	return MAIL_HEADER_ADDR_UNCLOSED;
}

/* One octet outside comments and quotes: structure, or part of an address. */
static enum mail_header_addr_status
mail_header_addr_octet(uint8_t c, struct mail_header_box *b, struct mail_header_addr *out,
	uint32_t max, uint32_t *count)
{
	if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
		return MAIL_HEADER_ADDR_OK;   /* folding white space separates, is not kept */
	if (b->in_angle) {
		if (c == '>') {
			b->in_angle = false;
			b->have_angle = true;
		} else if (c == ':') {
			b->angle.len = 0;     /* RFC 5322 4.4 obs-route "@a,@b:" is dropped */
		} else {
			mail_header_box_put(b, c);
		}
		return MAIL_HEADER_ADDR_OK;
	}
	if (c == '<') {
		b->in_angle = true;
		b->angle.len = 0;
	} else if (c == ',' || c == ';') {
		return mail_header_box_emit(b, out, max, count);
	} else if (c == ':') {
		*b = (struct mail_header_box){ .have_angle = false };   /* a group's display name */
	} else {
		mail_header_box_put(b, c);
	}
	return MAIL_HEADER_ADDR_OK;
}

enum mail_header_addr_status
mail_header_addrs(struct slice value, struct mail_header_addr *out, uint32_t max,
	uint32_t *count)
{
	struct mail_header_box b = { .have_angle = false };
	enum mail_header_addr_status st = MAIL_HEADER_ADDR_OK;
	for (size_t i = 0; i < value.len && st == MAIL_HEADER_ADDR_OK; i++) {
		uint8_t c = value.ptr[i];
		if (c == '(')
			st = mail_header_skip_comment(value, &i);
		else if (c == '"')
			st = mail_header_copy_quoted(value, &i, &b);
		else
			st = mail_header_addr_octet(c, &b, out, max, count);
	}
	if (st != MAIL_HEADER_ADDR_OK)
		return st;
	if (b.in_angle)
		return MAIL_HEADER_ADDR_UNCLOSED;
	return mail_header_box_emit(&b, out, max, count);
}
