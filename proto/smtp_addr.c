/* proto/smtp_addr.c - RFC 5321 paths and esmtp-params; see smtp_addr.h. */
#include "proto/smtp_addr.h"

#include <string.h>

/* A position in the text being parsed; utf8 records whether non-ASCII octets were taken. */
struct smtp_addr_cur {
	struct slice in;
	size_t pos;
	bool utf8;
};

static bool
smtp_addr_is_alpha(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
smtp_addr_is_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

static bool
smtp_addr_is_alnum(uint8_t c)
{
	return smtp_addr_is_alpha(c) || smtp_addr_is_digit(c);
}

static bool
smtp_addr_is_hex(uint8_t c)
{
	return smtp_addr_is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* RFC 5322 3.2.3 atext. */
static bool
smtp_addr_is_atext(uint8_t c)
{
	if (smtp_addr_is_alnum(c))
		return true;
	return c != 0 && memchr("!#$%&'*+-/=?^_`{|}~", c, 19) != NULL;
}

static int
smtp_addr_peek(const struct smtp_addr_cur *c)
{
	return c->pos < c->in.len ? c->in.ptr[c->pos] : -1;
}

static bool
smtp_addr_take(struct smtp_addr_cur *c, uint8_t want)
{
	if (smtp_addr_peek(c) != want)
		return false;
	c->pos++;
	return true;
}

size_t
smtp_addr_utf8_seq_len(struct slice s)
{
	if (s.len == 0)
		return 0;
	uint8_t c = s.ptr[0];
	size_t n;
	uint32_t cp;
	if (c >= 0xc2 && c <= 0xdf) {
		n = 2;
		cp = c & 0x1fu;
	} else if (c >= 0xe0 && c <= 0xef) {
		n = 3;
		cp = c & 0x0fu;
	} else if (c >= 0xf0 && c <= 0xf4) {
		n = 4;
		cp = c & 0x07u;
	} else {
		return 0;
	}
	if (s.len < n)
		return 0;
	for (size_t i = 1; i < n; i++) {
		if ((s.ptr[i] & 0xc0u) != 0x80u)
			return 0;
		cp = (cp << 6) | (s.ptr[i] & 0x3fu);
	}
	/* RFC 3629 3: no overlong forms, no surrogates, nothing past U+10FFFF. */
	if (n == 3 && (cp < 0x800u || (cp >= 0xd800u && cp <= 0xdfffu)))
		return 0;
	if (n == 4 && (cp < 0x10000u || cp > 0x10ffffu))
		return 0;
	return n;
}

/* Takes one UTF-8 sequence (RFC 6531 UTF8-non-ascii) at the cursor. */
static bool
smtp_addr_take_utf8(struct smtp_addr_cur *c)
{
	size_t n = smtp_addr_utf8_seq_len(slice_skip(c->in, c->pos));
	if (n == 0)
		return false;
	c->pos += n;
	c->utf8 = true;
	return true;
}

/* Dot-string = Atom *("." Atom) (RFC 5321 4.1.2, atext extended by RFC 6531 3.3). */
static bool
smtp_addr_dot_string(struct smtp_addr_cur *c)
{
	bool atom_empty = true;
	while (c->pos < c->in.len) {
		uint8_t ch = c->in.ptr[c->pos];
		if (smtp_addr_is_atext(ch)) {
			c->pos++;
		} else if (ch >= 0x80) {
			if (!smtp_addr_take_utf8(c))
				return false;
		} else if (ch == '.' && !atom_empty) {
			c->pos++;
			atom_empty = true;
			continue;
		} else {
			break;
		}
		atom_empty = false;
	}
	return !atom_empty;
}

/* Quoted-string (RFC 5321 4.1.2), decoded into buf. Returns the decoded length through *len and
 * sets *no_space when buf was too small (the syntax is still checked to the end). */
static bool
smtp_addr_quoted(struct smtp_addr_cur *c, uint8_t *buf, size_t cap, size_t *len, bool *no_space)
{
	size_t n = 0;
	c->pos++;   /* the opening DQUOTE */
	while (c->pos < c->in.len) {
		uint8_t ch = c->in.ptr[c->pos];
		size_t from = c->pos;
		size_t take = 1;
		if (ch == '"') {
			c->pos++;
			*len = n;
			return true;
		}
		if (ch == '\\') {   /* quoted-pairSMTP = "\" %d32-126 */
			if (c->pos + 1 >= c->in.len || c->in.ptr[c->pos + 1] < 32
				|| c->in.ptr[c->pos + 1] > 126)
				return false;
			from++;
			c->pos += 2;
		} else if (ch >= 0x80) {
			if (!smtp_addr_take_utf8(c))
				return false;
			take = c->pos - from;
		} else if (ch < 32 || ch > 126) {
			return false;
		} else {
			c->pos++;
		}
		if (!*no_space && take <= cap - n)
			memcpy(buf + n, c->in.ptr + from, take);   /* copy: the decoded form */
		else
			*no_space = true;   /* n may pass cap from here on: no more copying */
		n += take;
	}
	return false;
}

static bool
smtp_addr_ipv4_valid(struct slice s)
{
	size_t i = 0;
	for (int part = 0; part < 4; part++) {
		if (part > 0) {
			if (i >= s.len || s.ptr[i] != '.')
				return false;
			i++;
		}
		uint32_t v = 0;
		size_t start = i;
		while (i < s.len && i - start < 3 && smtp_addr_is_digit(s.ptr[i]))
			v = v * 10 + (uint32_t)(s.ptr[i++] - '0');
		if (i == start || v > 255)
			return false;
	}
	return i == s.len;
}

/* RFC 5321 4.1.3 IPv6-addr: eight groups, or fewer around one "::", the last two may be IPv4. */
static bool
smtp_addr_ipv6_valid(struct slice s)
{
	size_t groups = 0;
	size_t i = 0;
	bool gap = s.len >= 2 && s.ptr[0] == ':' && s.ptr[1] == ':';
	if (gap)
		i = 2;
	while (i < s.len) {
		size_t j = i;
		while (j < s.len && j - i < 5 && smtp_addr_is_hex(s.ptr[j]))
			j++;
		if (j < s.len && s.ptr[j] == '.') {
			if (!smtp_addr_ipv4_valid(slice_skip(s, i)))
				return false;
			groups += 2;
			break;
		}
		if (j == i || j - i > 4)
			return false;
		groups++;
		i = j;
		if (i == s.len)
			break;
		if (s.ptr[i++] != ':' || i == s.len)
			return false;
		if (s.ptr[i] == ':') {
			if (gap)
				return false;
			gap = true;
			i++;
		}
	}
	return gap ? groups <= 7 : groups == 8;
}

/* address-literal = "[" ( IPv4 / "IPv6:" IPv6 ) "]"; the cursor is on "[". */
static bool
smtp_addr_literal(struct smtp_addr_cur *c)
{
	struct slice rest = slice_skip(c->in, c->pos + 1);
	const uint8_t *end = memchr(rest.ptr, ']', rest.len);
	if (end == NULL)
		return false;
	struct slice inner = slice_sub(rest, 0, (size_t)(end - rest.ptr));
	bool ok;
	if (slice_starts_with_nocase(inner, SLICE_LIT("IPv6:")))
		ok = smtp_addr_ipv6_valid(slice_skip(inner, 5));
	else
		ok = smtp_addr_ipv4_valid(inner);
	c->pos += inner.len + 2;
	return ok;
}

/* One sub-domain = Let-dig [Ldh-str] (RFC 5321 4.1.2), or a U-label (RFC 6531 3.3). */
static bool
smtp_addr_label(struct smtp_addr_cur *c)
{
	size_t start = c->pos;
	bool ascii = true;
	int last = -1;
	while (c->pos < c->in.len) {
		uint8_t ch = c->in.ptr[c->pos];
		if (smtp_addr_is_alnum(ch) || (ch == '-' && c->pos > start)) {
			c->pos++;
		} else if (ch >= 0x80) {
			if (!smtp_addr_take_utf8(c))
				return false;
			ascii = false;
		} else {
			break;
		}
		last = ch;
	}
	if (c->pos == start || last == '-')
		return false;
	return !ascii || c->pos - start <= SMTP_ADDR_LABEL_LEN_MAX;
}

/* Domain / address-literal at the cursor. */
static bool
smtp_addr_domain(struct smtp_addr_cur *c)
{
	size_t start = c->pos;
	if (smtp_addr_peek(c) == '[')
		return smtp_addr_literal(c);
	for (;;) {
		if (!smtp_addr_label(c))
			return false;
		if (!smtp_addr_take(c, '.'))
			break;
	}
	return c->pos - start <= SMTP_ADDR_DOMAIN_LEN_MAX;
}

bool
smtp_addr_domain_valid(struct slice domain, uint32_t flags)
{
	struct smtp_addr_cur c = { .in = domain };
	if (!smtp_addr_domain(&c) || c.pos != domain.len)
		return false;
	return !c.utf8 || (flags & SMTP_ADDR_ALLOW_UTF8);
}

/* A-d-l ":" (RFC 5321 4.1.2): checked, then dropped (appendix C: routes are ignored). */
static bool
smtp_addr_source_route(struct smtp_addr_cur *c)
{
	do {
		if (!smtp_addr_take(c, '@') || !smtp_addr_domain(c))
			return false;
	} while (smtp_addr_take(c, ','));
	return smtp_addr_take(c, ':');
}

/* Mailbox (or "postmaster" when allowed) up to, not including, ">". */
static enum smtp_addr_status
smtp_addr_mailbox(struct smtp_addr_cur *c, uint32_t flags, uint8_t *buf, size_t cap,
	struct smtp_addr *a)
{
	size_t start = c->pos;
	bool no_space = false;
	size_t dec_len = 0;
	a->quoted = smtp_addr_peek(c) == '"';
	if (a->quoted ? !smtp_addr_quoted(c, buf, cap, &dec_len, &no_space)
		: !smtp_addr_dot_string(c))
		return SMTP_ADDR_SYNTAX;
	struct slice raw_local = slice_sub(c->in, start, c->pos - start);
	if (raw_local.len > SMTP_ADDR_LOCAL_LEN_MAX)
		return SMTP_ADDR_SYNTAX;
	a->local_part = a->quoted ? slice_make(no_space ? NULL : buf, no_space ? 0 : dec_len)
		: raw_local;
	size_t dom_start = c->pos + 1;
	if (smtp_addr_take(c, '@')) {
		if (!smtp_addr_domain(c))
			return SMTP_ADDR_SYNTAX;
	} else if (!(flags & SMTP_ADDR_ALLOW_POSTMASTER) || a->quoted
		|| !slice_eq_nocase(raw_local, SLICE_LIT("postmaster"))) {
		return SMTP_ADDR_SYNTAX;
	} else {
		dom_start = c->pos;   /* RFC 5321 4.1.1.3: <postmaster> needs no domain */
	}
	a->domain = slice_sub(c->in, dom_start, c->pos - dom_start);
	a->path = slice_sub(c->in, start, c->pos - start);
	return no_space ? SMTP_ADDR_NO_SPACE : SMTP_ADDR_OK;
}

enum smtp_addr_status
smtp_addr_parse_path(struct slice in, uint32_t flags, uint8_t *buf, size_t buf_cap,
	struct smtp_addr *out, size_t *used)
{
	struct smtp_addr_cur c = { .in = in };
	struct smtp_addr a = { .path = slice_make(in.ptr, 0) };
	if (!smtp_addr_take(&c, '<'))
		return SMTP_ADDR_SYNTAX;
	if (smtp_addr_take(&c, '>')) {
		if (!(flags & SMTP_ADDR_ALLOW_NULL))
			return SMTP_ADDR_SYNTAX;
		a.null_path = true;
		a.path = a.local_part = a.domain = slice_make(in.ptr + 1, 0);
		*out = a;
		*used = c.pos;
		return SMTP_ADDR_OK;
	}
	if (smtp_addr_peek(&c) == '@' && !smtp_addr_source_route(&c))
		return SMTP_ADDR_SYNTAX;
	enum smtp_addr_status st = smtp_addr_mailbox(&c, flags, buf, buf_cap, &a);
	if (st == SMTP_ADDR_SYNTAX || !smtp_addr_take(&c, '>'))
		return SMTP_ADDR_SYNTAX;
	if (c.utf8 && !(flags & SMTP_ADDR_ALLOW_UTF8))
		return SMTP_ADDR_NEED_UTF8;
	if (st != SMTP_ADDR_OK)
		return st;
	a.utf8 = c.utf8;
	*out = a;
	*used = c.pos;
	return SMTP_ADDR_OK;
}

/* esmtp-value = 1*(%d33-60 / %d62-126), plus UTF8-non-ascii with RFC 6531 3.3. */
static size_t
smtp_addr_param_value_len(struct slice s, uint32_t flags)
{
	struct smtp_addr_cur c = { .in = s };
	while (c.pos < s.len) {
		uint8_t ch = s.ptr[c.pos];
		if (ch >= 33 && ch <= 126 && ch != '=')
			c.pos++;
		else if (ch < 0x80 || !(flags & SMTP_ADDR_ALLOW_UTF8) || !smtp_addr_take_utf8(&c))
			break;
	}
	return c.pos;
}

enum smtp_addr_param_status
smtp_addr_param_next(struct slice *rest, uint32_t flags, struct smtp_addr_param *out)
{
	struct slice s = *rest;
	size_t i = 0;
	while (i < s.len && s.ptr[i] == ' ')
		i++;
	if (i == s.len) {
		*rest = slice_skip(s, i);
		return SMTP_ADDR_PARAM_END;
	}
	/* esmtp-keyword = (ALPHA / DIGIT) *(ALPHA / DIGIT / "-") */
	size_t k = i;
	if (!smtp_addr_is_alnum(s.ptr[k]))
		return SMTP_ADDR_PARAM_SYNTAX;
	while (k < s.len && (smtp_addr_is_alnum(s.ptr[k]) || s.ptr[k] == '-'))
		k++;
	struct smtp_addr_param p = {
		.keyword = slice_sub(s, i, k - i),
		.value = slice_make(s.ptr, 0),
	};
	if (k < s.len && s.ptr[k] == '=') {
		k++;
		size_t n = smtp_addr_param_value_len(slice_skip(s, k), flags);
		if (n == 0)
			return SMTP_ADDR_PARAM_SYNTAX;
		p.value = slice_sub(s, k, n);
		p.has_value = true;
		k += n;
	}
	if (k < s.len && s.ptr[k] != ' ')
		return SMTP_ADDR_PARAM_SYNTAX;
	*rest = slice_skip(s, k);
	*out = p;
	return SMTP_ADDR_PARAM_OK;
}

/* xtext with non-ASCII UTF-8 allowed when utf8 is set. */
static bool
smtp_addr_xtext_check(struct slice s, bool utf8)
{
	struct smtp_addr_cur c = { .in = s };
	while (c.pos < s.len) {
		uint8_t ch = s.ptr[c.pos];
		if (ch == '+') {
			/* RFC 3461 4: hexchar = "+" 2(%x30-39 / %x41-46), uppercase only */
			for (size_t k = 1; k <= 2; k++) {
				uint8_t h = c.pos + k < s.len ? s.ptr[c.pos + k] : 0;
				if (!smtp_addr_is_digit(h) && !(h >= 'A' && h <= 'F'))
					return false;
			}
			c.pos += 3;
		} else if (ch >= 33 && ch <= 126 && ch != '=') {
			c.pos++;
		} else if (ch < 0x80 || !utf8 || !smtp_addr_take_utf8(&c)) {
			return false;
		}
	}
	return true;
}

bool
smtp_addr_xtext_valid(struct slice s)
{
	return smtp_addr_xtext_check(s, false);
}

bool
smtp_addr_orcpt_valid(struct slice s, uint32_t flags)
{
	size_t i = 0;
	while (i < s.len && smtp_addr_is_atext(s.ptr[i]))
		i++;
	if (i == 0 || i + 1 >= s.len || s.ptr[i] != ';')
		return false;
	return smtp_addr_xtext_check(slice_skip(s, i + 1), (flags & SMTP_ADDR_ALLOW_UTF8) != 0);
}
