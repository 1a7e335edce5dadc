/* proto/received.c - Received: and Return-Path: header fields; see received.h. */
#include "proto/received.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "base/queue_id.h"
#include "base/log.h"

#define RECEIVED_DATE_MAX (RECEIVED_DATE_LEN_MAX + 1u)   /* and the NUL of snprintf */
#define RECEIVED_QID_LEN  QUEUE_ID_STR_LEN

/* The fixed text of a Received: field, and a bound on the whole. */
#define RECEIVED_FIXED_LEN (sizeof("Received: from  ([IPv6:])\r\n\t(using )\r\n\tby  (ringmta) "\
	"with ESMTPSA id \r\n\tfor <>;\r\n\t\r\n") - 1u)
_Static_assert(RECEIVED_FIXED_LEN + RECEIVED_HELO_MAX + RECEIVED_ADDR_MAX + RECEIVED_HOST_MAX
	+ RECEIVED_TLS_MAX + RECEIVED_QID_LEN + RECEIVED_RCPT_MAX + RECEIVED_DATE_MAX
	<= RECEIVED_LEN_MAX, "every Received: field fits RECEIVED_LEN_MAX");
/* RFC 5322 2.1.1: each folded line stays under 998 octets. */
_Static_assert(sizeof("\tfor <>;") + RECEIVED_RCPT_MAX < 998u, "the for line is short enough");

static const char received_wday[7][4] = { "Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat" };
static const char received_month[12][4] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
};

/* Appends to a buffer the caller sized for the worst case. */
struct received_buf {
	uint8_t *p;
	size_t cap;
	size_t len;
};

static void
received_put(struct received_buf *b, const void *s, size_t n)
{
	ASSERT(n <= b->cap - b->len);
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void
received_put_str(struct received_buf *b, const char *s)
{
	received_put(b, s, strlen(s));
}

static void
received_put_slice(struct received_buf *b, struct slice s)
{
	received_put(b, s.ptr, s.len);
}

/* A domain or an address literal holds letters, digits, '-', '.', and in literals '[', ']',
 * ':'; '_' is the stand-in for everything else. */
static bool
received_helo_octet_ok(uint8_t c)
{
	uint8_t lower = slice_ascii_lower(c);
	return (lower >= 'a' && lower <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'
		|| c == '[' || c == ']' || c == ':';
}

static void
received_put_helo(struct received_buf *b, struct slice helo)
{
	if (helo.len == 0) {
		received_put_str(b, "unknown");
		return;
	}
	size_t n = helo.len < RECEIVED_HELO_MAX ? helo.len : RECEIVED_HELO_MAX;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = received_helo_octet_ok(helo.ptr[i]) ? helo.ptr[i] : '_';
		received_put(b, &c, 1);
	}
}

static bool
received_addr_valid(struct slice addr)
{
	if (addr.len == 0 || addr.len > RECEIVED_ADDR_MAX)
		return false;
	for (size_t i = 0; i < addr.len; i++) {
		uint8_t c = slice_ascii_lower(addr.ptr[i]);
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || c == '.' || c == ':'))
			return false;
	}
	return true;
}

/* RFC 5321 4.1.3 address literal: [1.2.3.4] or [IPv6:...]; an IPv4-mapped IPv6 address (a
 * dual-stack listener's IPv4 client) is shown as the IPv4 address it is. */
static void
received_put_addr(struct received_buf *b, struct slice addr)
{
	static const struct slice mapped = SLICE_LIT("::ffff:");
	if (!received_addr_valid(addr)) {
		received_put_str(b, "unknown");
		return;
	}
	if (slice_starts_with_nocase(addr, mapped) && memchr(addr.ptr, '.', addr.len) != NULL)
		addr = slice_skip(addr, mapped.len);
	received_put_str(b, memchr(addr.ptr, ':', addr.len) != NULL ? "[IPv6:" : "[");
	received_put_slice(b, addr);
	received_put_str(b, "]");
}

/* Copies a path, control characters and DEL shown as '?' (the parser admits none; this keeps
 * a header line whole whatever it is given). */
static void
received_put_path(struct received_buf *b, struct slice path)
{
	for (size_t i = 0; i < path.len; i++) {
		uint8_t c = path.ptr[i] < 0x20 || path.ptr[i] == 0x7f ? '?' : path.ptr[i];
		received_put(b, &c, 1);
	}
}

size_t
received_date(uint8_t *buf, size_t cap, uint64_t unix_ms)
{
	ASSERT(cap >= RECEIVED_DATE_LEN_MAX);
	struct log_utc t;
	char date[RECEIVED_DATE_MAX];
	log_utc(unix_ms, &t);
	int n = snprintf(date, sizeof(date), "%s, %u %s %04u %02u:%02u:%02u +0000",
		received_wday[t.wday], t.day, received_month[t.month - 1],
		t.year > 9999u ? 9999u : t.year, t.hour, t.min, t.sec);
	ASSERT(n > 0 && (size_t)n <= RECEIVED_DATE_LEN_MAX);
	memcpy(buf, date, (size_t)n);
	return (size_t)n;
}

static void
received_put_date(struct received_buf *b, uint64_t now_ms)
{
	ASSERT(b->cap - b->len >= RECEIVED_DATE_LEN_MAX);
	b->len += received_date(b->p + b->len, b->cap - b->len, now_ms);
}

static bool
received_protocol_known(struct slice p)
{
	static const struct slice words[] = {
		SLICE_LIT("SMTP"), SLICE_LIT("ESMTP"), SLICE_LIT("ESMTPS"), SLICE_LIT("ESMTPA"),
		SLICE_LIT("ESMTPSA"),
	};
	for (size_t i = 0; i < ARRAY_LEN(words); i++) {
		if (slice_eq(p, words[i]))
			return true;
	}
	return false;
}

/* The TLS comment: printable ASCII but '\\', and parentheses only in pairs (RFC 5322 3.2.2),
 * at most RECEIVED_TLS_MAX octets. */
static void
received_put_tls(struct received_buf *b, struct slice tls)
{
	uint8_t text[RECEIVED_TLS_MAX];
	uint16_t opens[RECEIVED_TLS_MAX];   /* positions of '(' not closed yet */
	uint32_t open_count = 0;
	if (tls.len > RECEIVED_TLS_MAX)
		tls.len = RECEIVED_TLS_MAX;
	for (size_t i = 0; i < tls.len; i++) {
		uint8_t c = tls.ptr[i];
		if (c < 0x20 || c >= 0x7f || c == '\\')
			c = '_';
		if (c == '(')
			opens[open_count++] = (uint16_t)i;
		else if (c == ')' && open_count > 0)
			open_count--;
		else if (c == ')')
			c = '_';
		text[i] = c;
	}
	for (uint32_t k = 0; k < open_count; k++)
		text[opens[k]] = '_';
	received_put_str(b, "\r\n\t(using ");
	received_put(b, text, tls.len);
	received_put_str(b, ")");
}

struct slice
received_protocol(bool esmtp, bool tls, bool auth)
{
	if (!esmtp)
		return SLICE_LIT("SMTP");
	if (tls && auth)
		return SLICE_LIT("ESMTPSA");
	if (tls)
		return SLICE_LIT("ESMTPS");
	return auth ? SLICE_LIT("ESMTPA") : SLICE_LIT("ESMTP");
}

size_t
received_format(uint8_t *buf, size_t cap, const struct received_info *info)
{
	ASSERT(cap >= RECEIVED_LEN_MAX);
	ASSERT(received_protocol_known(info->protocol));
	struct received_buf b = { .p = buf, .cap = RECEIVED_LEN_MAX };
	char qid[QUEUE_ID_STR_LEN + 1];
	queue_id_format(info->queue_id, qid);
	struct slice host = info->myhostname;
	if (host.len > RECEIVED_HOST_MAX)
		host.len = RECEIVED_HOST_MAX;
	if (info->local_user.len > 0) {
		/* The name is the system's, but shown with the HELO name's sanitising all the same. */
		struct slice user = info->local_user;
		if (user.len > RECEIVED_USER_MAX)
			user.len = RECEIVED_USER_MAX;
		received_put_str(&b, "Received: by ");
		received_put_slice(&b, host);
		received_put_str(&b, " (ringmta, from user ");
		received_put_helo(&b, user);
		received_put_str(&b, ") with ");
	} else {
		received_put_str(&b, "Received: from ");
		received_put_helo(&b, info->helo);
		received_put_str(&b, " (");
		received_put_addr(&b, info->client_addr);
		received_put_str(&b, ")");
		if (info->tls.len > 0)
			received_put_tls(&b, info->tls);
		received_put_str(&b, "\r\n\tby ");
		received_put_slice(&b, host);
		received_put_str(&b, " (ringmta) with ");
	}
	received_put_slice(&b, info->protocol);
	received_put_str(&b, " id ");
	received_put_str(&b, qid);
	if (info->for_rcpt.len > 0 && info->for_rcpt.len <= RECEIVED_RCPT_MAX) {
		received_put_str(&b, "\r\n\tfor <");
		received_put_path(&b, info->for_rcpt);
		received_put_str(&b, ">");
	}
	received_put_str(&b, ";\r\n\t");
	received_put_date(&b, info->now_ms);
	received_put_str(&b, "\r\n");
	return b.len;
}

size_t
received_return_path(uint8_t *buf, size_t cap, struct slice sender)
{
	ASSERT(cap >= RECEIVED_RETURN_PATH_MAX);
	struct received_buf b = { .p = buf, .cap = RECEIVED_RETURN_PATH_MAX };
	ASSERT(sender.len <= RECEIVED_SENDER_MAX);
	received_put_str(&b, "Return-Path: <");
	received_put_path(&b, sender);
	received_put_str(&b, ">\r\n");
	return b.len;
}
