/* proto/dsn.c - delivery status notifications (RFC 3464, RFC 6522, RFC 3461); see dsn.h. */
#include "proto/dsn.h"

#include <stdio.h>
#include <string.h>

#include "base/queue_id.h"
#include "proto/received.h"
#include "proto/smtp_addr.h"

#define DSN_BOUNDARY_PREFIX   "=_ringmta_"   /* "=_" never occurs in quoted-printable text */
#define DSN_TEXT_INDENT       "    "         /* continuation lines of the human-readable part */
#define DSN_HEADER_INDENT     " "            /* RFC 5322 2.2.3 folding white space */
#define DSN_U64_DIGITS_MAX    20u

_Static_assert(sizeof(DSN_BOUNDARY_PREFIX) - 1 + QUEUE_ID_STR_LEN + 1 + 2 <= DSN_BOUNDARY_LEN_MAX,
	"the longest boundary is within RFC 2046");
_Static_assert(DSN_BOUNDARY_TRIES_MAX < 100u, "the boundary suffix has at most two digits");
_Static_assert(DSN_DIAG_LEN_MAX > 3u, "room for the ellipsis");

/* Appends to the caller's buffer, or only counts when p is NULL (dsn_size). */
struct dsn_buf {
	uint8_t *p;
	size_t cap;
	size_t len;
	size_t line_start;   /* offset of the current line: the column for folding */
};

/* Decisions taken once from the report, the same for dsn_size and dsn_compose. */
struct dsn_plan {
	struct slice original;          /* what of the original is included */
	enum dsn_included included;
	bool cut;                       /* the original was over size_limit */
	bool dropped;                   /* the original held every boundary tried: not included */
	bool any_failed;
	bool any_delayed;
	bool utf8;                      /* RFC 6533 types and UTF-8 addresses */
	bool original_8bit;
	uint64_t retry_until_ms;        /* the latest Will-Retry-Until of delayed recipients */
	char boundary[DSN_BOUNDARY_LEN_MAX + 1];
	size_t boundary_len;
};

static void
dsn_put(struct dsn_buf *b, const void *s, size_t n)
{
	if (b->p != NULL) {
		ASSERT(n <= b->cap - b->len);
		memcpy(b->p + b->len, s, n);
	}
	b->len += n;
}

static void
dsn_put_byte(struct dsn_buf *b, uint8_t c)
{
	dsn_put(b, &c, 1);
}

static void
dsn_put_str(struct dsn_buf *b, const char *s)
{
	dsn_put(b, s, strlen(s));
}

static void
dsn_put_slice(struct dsn_buf *b, struct slice s)
{
	dsn_put(b, s.ptr, s.len);
}

static void
dsn_put_crlf(struct dsn_buf *b)
{
	dsn_put(b, "\r\n", 2);
	b->line_start = b->len;
}

static size_t
dsn_column(const struct dsn_buf *b)
{
	return b->len - b->line_start;
}

static void
dsn_put_date(struct dsn_buf *b, uint64_t unix_ms)
{
	uint8_t date[RECEIVED_DATE_LEN_MAX];
	size_t n = received_date(date, sizeof(date), unix_ms);
	dsn_put(b, date, n);
}

static void
dsn_put_qid(struct dsn_buf *b, uint64_t qid)
{
	char text[QUEUE_ID_STR_LEN + 1];
	queue_id_format(qid, text);
	dsn_put(b, text, QUEUE_ID_STR_LEN);
}

static bool
dsn_is_ascii(struct slice s)
{
	for (size_t i = 0; i < s.len; i++) {
		if (s.ptr[i] >= 0x80)
			return false;
	}
	return true;
}

/* ---- sanitising ---- */

size_t
dsn_sanitize_text(uint8_t *out, size_t cap, struct slice in)
{
	ASSERT(cap >= DSN_DIAG_LEN_MAX);
	size_t n = 0;
	bool blank = false;   /* a blank is owed before the next octet */
	bool cut = false;
	for (size_t i = 0; i < in.len; i++) {
		uint8_t c = in.ptr[i];
		if (c <= 0x20 || c == 0x7f) {
			blank = n > 0;
			continue;
		}
		if (n + (blank ? 2u : 1u) > DSN_DIAG_LEN_MAX) {
			cut = true;
			break;
		}
		if (blank)
			out[n++] = ' ';
		blank = false;
		out[n++] = c >= 0x80 ? '?' : c;
	}
	if (!cut)
		return n;
	/* Too long: the last octets make way for "..." so a reader sees the text is incomplete. */
	if (n > DSN_DIAG_LEN_MAX - 3u)
		n = DSN_DIAG_LEN_MAX - 3u;
	while (n > 0 && out[n - 1] == ' ')
		n--;
	memcpy(out + n, "...", 3);
	return n + 3;
}

/* An address or decoded xtext: printable ASCII as it is (blanks included: a quoted local part
 * may hold them), control octets and DEL as '?', non-ASCII kept only as well-formed UTF-8 in
 * utf8 mode, else '?'. Cut at max octets, never inside a UTF-8 sequence. */
static void
dsn_put_addr(struct dsn_buf *b, struct slice s, bool utf8, size_t max)
{
	size_t shown = 0;
	for (size_t i = 0; i < s.len && shown < max;) {
		uint8_t c = s.ptr[i];
		if (c < 0x80) {
			dsn_put_byte(b, c < 0x20 || c == 0x7f ? '?' : c);
			shown++;
			i++;
			continue;
		}
		size_t seq = utf8 ? smtp_addr_utf8_seq_len(slice_skip(s, i)) : 0;
		if (seq == 0 || shown + seq > max) {
			dsn_put_byte(b, '?');
			shown++;
			i++;
			continue;
		}
		dsn_put(b, s.ptr + i, seq);
		shown += seq;
		i += seq;
	}
}

/* A host name or address literal (letters, digits, '-', '.', '[', ']', ':'), anything else as
 * '_' like the HELO name in Received:, cut at DSN_HOST_LEN_MAX octets. */
static void
dsn_put_host(struct dsn_buf *b, struct slice host, size_t max)
{
	size_t n = host.len < max ? host.len : max;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = host.ptr[i];
		uint8_t lower = slice_ascii_lower(c);
		bool ok = (lower >= 'a' && lower <= 'z') || (c >= '0' && c <= '9') || c == '-'
			|| c == '.' || c == '[' || c == ']' || c == ':';
		dsn_put_byte(b, ok ? c : '_');
	}
}

/* Writes sanitised text (single blanks, no control octet) from the current column, folding at
 * a blank: the last one that keeps the line within DSN_FOLD_COLUMN if that line then holds at
 * least DSN_FOLD_MIN octets, else the first one after it; a word longer than a whole line is cut
 * at DSN_LINE_LEN_MAX. A fold writes CRLF and indent in place of the blank. */
static void
dsn_put_folded(struct dsn_buf *b, struct slice text, const char *indent)
{
	while (text.len > 0) {
		size_t col = dsn_column(b);
		ASSERT(col + 1 < DSN_LINE_LEN_MAX);
		size_t room = col < DSN_FOLD_COLUMN ? DSN_FOLD_COLUMN - col : 0;
		size_t hard = DSN_LINE_LEN_MAX - col;
		if (text.len <= room) {
			dsn_put_slice(b, text);
			return;
		}
		size_t cut = 0;
		for (size_t i = room < text.len ? room : text.len - 1; i > 0; i--) {
			if (text.ptr[i] == ' ') {
				cut = i;
				break;
			}
		}
		if (col + cut < DSN_FOLD_MIN || cut == 0) {
			size_t from = room > 0 ? room : 1;
			const uint8_t *sp = memchr(text.ptr + from, ' ', text.len - from);
			cut = sp != NULL ? (size_t)(sp - text.ptr) : text.len;
		}
		bool at_blank = cut < text.len && cut <= hard;
		if (cut > hard)
			cut = hard;
		if (cut == text.len) {
			dsn_put_slice(b, text);
			return;
		}
		dsn_put(b, text.ptr, cut);
		dsn_put_crlf(b);
		dsn_put_str(b, indent);
		text = slice_skip(text, at_blank ? cut + 1 : cut);
	}
}

/* ---- small parsers ---- */

bool
dsn_status_valid(struct slice s)
{
	if (s.len < 5 || s.len > DSN_STATUS_LEN_MAX)
		return false;
	if (s.ptr[0] != '2' && s.ptr[0] != '4' && s.ptr[0] != '5')
		return false;
	size_t i = 1;
	for (uint32_t part = 0; part < 2; part++) {
		if (i >= s.len || s.ptr[i] != '.')
			return false;
		i++;
		size_t digits = 0;
		while (i < s.len && s.ptr[i] >= '0' && s.ptr[i] <= '9' && digits < 3) {
			i++;
			digits++;
		}
		if (digits == 0)
			return false;
	}
	return i == s.len;
}

static int
dsn_hex_value(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

long
dsn_xtext_decode(uint8_t *out, size_t cap, struct slice in)
{
	ASSERT(cap >= in.len);
	size_t n = 0;
	for (size_t i = 0; i < in.len; i++) {
		if (in.ptr[i] != '+') {
			out[n++] = in.ptr[i];
			continue;
		}
		int hi = i + 2 < in.len ? dsn_hex_value(in.ptr[i + 1]) : -1;
		int lo = hi >= 0 ? dsn_hex_value(in.ptr[i + 2]) : -1;
		if (lo < 0)
			return -1;
		out[n++] = (uint8_t)(hi * 16 + lo);
		i += 2;
	}
	return (long)n;
}

bool
dsn_due(struct slice mail_from, uint8_t notify, enum dsn_action action)
{
	if (mail_from.len == 0 || (notify & SMTP_DSN_NOTIFY_NEVER) != 0)
		return false;
	switch (action) {
	case DSN_ACTION_FAILED:
		return notify == 0 || (notify & SMTP_DSN_NOTIFY_FAILURE) != 0;
	case DSN_ACTION_DELAYED:
		return notify == 0 || (notify & SMTP_DSN_NOTIFY_DELAY) != 0;
	case DSN_ACTION_DELIVERED:
	case DSN_ACTION_RELAYED:
	case DSN_ACTION_EXPANDED:
		return (notify & SMTP_DSN_NOTIFY_SUCCESS) != 0;
	}
	ASSERT(!"a known action");
	return false;
}

/* ---- the plan ---- */

/* The header section of a stored message, with the CRLF of its last line but not the blank
 * line; all of it if there is no blank line. */
static struct slice
dsn_header_section(struct slice msg)
{
	if (slice_starts_with(msg, SLICE_LIT("\r\n")))
		return slice_sub(msg, 0, 0);
	const uint8_t *end = memmem(msg.ptr, msg.len, "\r\n\r\n", 4);
	if (end == NULL)
		return msg;
	return slice_sub(msg, 0, (size_t)(end - msg.ptr) + 2);
}

/* A header section over limit octets is cut after the last whole line within the limit. */
static struct slice
dsn_headers_within(struct slice headers, uint64_t limit)
{
	if (headers.len <= limit)
		return headers;
	size_t keep = 0;
	for (size_t i = 1; i < (size_t)limit; i++) {
		if (headers.ptr[i - 1] == '\r' && headers.ptr[i] == '\n')
			keep = i + 1;
	}
	return slice_sub(headers, 0, keep);
}

static void
dsn_plan_boundary(const struct dsn_report *r, struct dsn_plan *pl)
{
	char qid[QUEUE_ID_STR_LEN + 1];
	queue_id_format(r->dsn_queue_id, qid);
	for (uint32_t try = 0; try < DSN_BOUNDARY_TRIES_MAX; try++) {
		int n = try == 0
			? snprintf(pl->boundary, sizeof(pl->boundary), "%s%s", DSN_BOUNDARY_PREFIX, qid)
			: snprintf(pl->boundary, sizeof(pl->boundary), "%s%s.%u", DSN_BOUNDARY_PREFIX,
				qid, try);
		ASSERT(n > 0 && (size_t)n < sizeof(pl->boundary));
		pl->boundary_len = (size_t)n;
		/* RFC 2046 5.1.1: the delimiter must not occur in any part. Ours cannot occur in
		 * the composed text (no line of it starts with "--"); the original is searched
		 * anywhere, not only at line starts, which is simpler and as safe. */
		char needle[DSN_BOUNDARY_LEN_MAX + 3];
		memcpy(needle, "--", 2);
		memcpy(needle + 2, pl->boundary, pl->boundary_len);
		if (memmem(pl->original.ptr, pl->original.len, needle, pl->boundary_len + 2) == NULL)
			return;
	}
	/* Only an original made to hold every candidate gets here: leave it out rather than let
	 * it end a part of the report. */
	pl->original = slice_sub(pl->original, 0, 0);
	pl->dropped = true;
}

static bool
dsn_rcpts_ascii(const struct dsn_report *r)
{
	for (uint32_t i = 0; i < r->rcpt_count; i++) {
		if (!dsn_is_ascii(r->rcpts[i].final_rcpt) || !dsn_is_ascii(r->rcpts[i].orcpt))
			return false;
	}
	return true;
}

static void
dsn_plan_make(const struct dsn_report *r, struct dsn_plan *pl)
{
	memset(pl, 0, sizeof(*pl));
	for (uint32_t i = 0; i < r->rcpt_count; i++) {
		const struct dsn_rcpt *rc = &r->rcpts[i];
		pl->any_failed |= rc->action == DSN_ACTION_FAILED;
		pl->any_delayed |= rc->action == DSN_ACTION_DELAYED;
		if (rc->action == DSN_ACTION_DELAYED && rc->retry_until_ms > pl->retry_until_ms)
			pl->retry_until_ms = rc->retry_until_ms;
	}
	struct slice headers = dsn_header_section(r->original);
	pl->cut = r->original.len > r->size_limit;
	/* RFC 3461 4.3: RET applies to DSNs reporting a failure; others return the headers. */
	if (pl->any_failed && r->env->ret != SMTP_DSN_RET_HDRS && !pl->cut) {
		pl->included = DSN_INCLUDED_MESSAGE;
		pl->original = r->original;
	} else {
		pl->included = DSN_INCLUDED_HEADERS;
		pl->original = dsn_headers_within(headers, r->size_limit);
	}
	pl->utf8 = r->env->smtputf8 && (!dsn_is_ascii(r->env->mail_from) || !dsn_rcpts_ascii(r)
		|| !dsn_is_ascii(pl->included == DSN_INCLUDED_MESSAGE ? headers : pl->original));
	dsn_plan_boundary(r, pl);
	pl->original_8bit = !dsn_is_ascii(pl->original);
}

/* ---- writing ---- */

static const char *
dsn_action_word(enum dsn_action a)
{
	static const char *const words[] = {
		[DSN_ACTION_FAILED] = "failed",
		[DSN_ACTION_DELAYED] = "delayed",
		[DSN_ACTION_DELIVERED] = "delivered",
		[DSN_ACTION_RELAYED] = "relayed",
		[DSN_ACTION_EXPANDED] = "expanded",
	};
	ASSERT((size_t)a < ARRAY_LEN(words));
	return words[a];
}

/* RFC 3463 3.1: the class alone when the caller has no valid detail. */
static struct slice
dsn_status_of(const struct dsn_rcpt *rc)
{
	if (dsn_status_valid(rc->status))
		return rc->status;
	if (rc->action == DSN_ACTION_FAILED)
		return SLICE_LIT("5.0.0");
	return rc->action == DSN_ACTION_DELAYED ? SLICE_LIT("4.0.0") : SLICE_LIT("2.0.0");
}

static void
dsn_put_delimiter(struct dsn_buf *b, const struct dsn_plan *pl, bool last)
{
	dsn_put_crlf(b);
	dsn_put_str(b, "--");
	dsn_put(b, pl->boundary, pl->boundary_len);
	if (last)
		dsn_put_str(b, "--");
	dsn_put_crlf(b);
}

static void
dsn_put_line(struct dsn_buf *b, const char *text)
{
	dsn_put_str(b, text);
	dsn_put_crlf(b);
}

static void
dsn_write_headers(struct dsn_buf *b, const struct dsn_report *r, const struct dsn_plan *pl)
{
	dsn_put_str(b, "Date: ");
	dsn_put_date(b, r->now_ms);
	dsn_put_crlf(b);
	dsn_put_str(b, "From: Mail Delivery System <MAILER-DAEMON@");
	dsn_put_host(b, r->myhostname, DSN_HOST_LEN_MAX);
	dsn_put_line(b, ">");
	dsn_put_str(b, "To: <");
	dsn_put_addr(b, r->env->mail_from, pl->utf8, DSN_ADDR_LEN_MAX);
	dsn_put_line(b, ">");
	dsn_put_str(b, "Subject: ");
	if (pl->any_failed)
		dsn_put_line(b, "Undelivered Mail Returned to Sender");
	else if (pl->any_delayed)
		dsn_put_line(b, "Delayed Mail (still being retried)");
	else
		dsn_put_line(b, "Successful Mail Delivery Report");
	dsn_put_str(b, "Message-ID: <");
	dsn_put_qid(b, r->dsn_queue_id);
	dsn_put_str(b, ".dsn@");
	dsn_put_host(b, r->myhostname, DSN_HOST_LEN_MAX);
	dsn_put_line(b, ">");
	dsn_put_line(b, "Auto-Submitted: auto-replied");   /* RFC 3834 5 */
	dsn_put_line(b, "MIME-Version: 1.0");
	dsn_put_line(b, "Content-Type: multipart/report; report-type=delivery-status;");
	dsn_put_str(b, "\tboundary=\"");
	dsn_put(b, pl->boundary, pl->boundary_len);
	dsn_put_line(b, "\"");
	dsn_put_str(b, "Content-Transfer-Encoding: ");
	dsn_put_line(b, pl->utf8 || pl->original_8bit ? "8bit" : "7bit");
	dsn_put_crlf(b);
	dsn_put_line(b, "This is a MIME-encapsulated message.");   /* RFC 2046 5.1.1 preamble */
}

/* The reason shown to a person: "host <remote-mta> said: <reply>", or the diagnostic, or the
 * status; written into out (sized by the caller for the worst case). */
static struct slice
dsn_reason(const struct dsn_rcpt *rc, uint8_t *out, size_t cap)
{
	struct dsn_buf b = { .p = out, .cap = cap };
	uint8_t diag[DSN_DIAG_LEN_MAX];
	size_t diag_len = rc->diag_type == DSN_DIAG_NONE ? 0
		: dsn_sanitize_text(diag, sizeof(diag), rc->diag);
	if (rc->diag_type == DSN_DIAG_SMTP && rc->remote_mta.len > 0 && diag_len > 0) {
		dsn_put_str(&b, "host ");
		dsn_put_host(&b, rc->remote_mta, DSN_HOST_LEN_MAX);
		dsn_put_str(&b, " said: ");
	}
	if (diag_len > 0) {
		dsn_put(&b, diag, diag_len);
	} else {
		dsn_put_str(&b, "delivery status ");
		dsn_put_slice(&b, dsn_status_of(rc));
	}
	return slice_make(out, b.len);
}

#define DSN_REASON_MAX (sizeof("host  said: ") - 1 + DSN_HOST_LEN_MAX + DSN_DIAG_LEN_MAX)

/* "<address>: reason", folded; the line starts with '<', never with "--". */
static void
dsn_write_human_rcpt(struct dsn_buf *b, const struct dsn_rcpt *rc, const struct dsn_plan *pl)
{
	uint8_t reason[DSN_REASON_MAX];
	dsn_put_str(b, "<");
	dsn_put_addr(b, rc->final_rcpt, pl->utf8, DSN_ADDR_LEN_MAX);
	dsn_put_str(b, ">: ");
	dsn_put_folded(b, dsn_reason(rc, reason, sizeof(reason)), DSN_TEXT_INDENT);
	dsn_put_crlf(b);
}

static void
dsn_write_group_intro(struct dsn_buf *b, enum dsn_action a, const struct dsn_plan *pl)
{
	switch (a) {
	case DSN_ACTION_FAILED:
		dsn_put_line(b, "Your message could not be delivered to the recipients below, and");
		dsn_put_line(b, "delivery has stopped: it will not be tried again.");
		return;
	case DSN_ACTION_DELAYED:
		dsn_put_line(b, "Your message has not been delivered to the recipients below yet.");
		if (pl->retry_until_ms == 0) {
			dsn_put_line(b, "Delivery will be tried again; you need not send it again.");
			return;
		}
		dsn_put_str(b, "Delivery will be tried again until ");
		dsn_put_date(b, pl->retry_until_ms);
		dsn_put_line(b, ";");
		dsn_put_line(b, "you need not send it again.");
		return;
	case DSN_ACTION_DELIVERED:
		dsn_put_line(b, "Your message was delivered to the recipients below.");
		return;
	case DSN_ACTION_RELAYED:
		dsn_put_line(b, "Your message was passed on for the recipients below to a system that");
		dsn_put_line(b, "sends no delivery reports: this is the last report you will get.");
		return;
	case DSN_ACTION_EXPANDED:
		dsn_put_line(b, "Your message was delivered to the recipients below, which are lists");
		dsn_put_line(b, "or aliases: it was passed on to their members.");
		return;
	}
	ASSERT(!"a known action");
}

static void
dsn_write_original_note(struct dsn_buf *b, const struct dsn_report *r, const struct dsn_plan *pl)
{
	char limit[DSN_U64_DIGITS_MAX + 1];
	if (pl->dropped) {
		dsn_put_line(b, "The original message could not be included.");
	} else if (pl->included == DSN_INCLUDED_MESSAGE) {
		dsn_put_line(b, "The original message is attached.");
	} else if (pl->any_failed && pl->cut) {
		int n = snprintf(limit, sizeof(limit), "%llu", (unsigned long long)r->size_limit);
		ASSERT(n > 0 && (size_t)n < sizeof(limit));
		dsn_put_str(b, "The message was larger than ");
		dsn_put_str(b, limit);
		dsn_put_line(b, " octets; only its header section");
		dsn_put_line(b, "is attached.");
	} else if (pl->any_failed) {
		dsn_put_line(b, "As the sender asked, only the header section of the message is attached.");
	} else {
		dsn_put_line(b, "The header section of the message is attached.");
	}
}

static void
dsn_write_human(struct dsn_buf *b, const struct dsn_report *r, const struct dsn_plan *pl)
{
	static const enum dsn_action order[] = { DSN_ACTION_FAILED, DSN_ACTION_DELAYED,
		DSN_ACTION_DELIVERED, DSN_ACTION_RELAYED, DSN_ACTION_EXPANDED };
	dsn_put_delimiter(b, pl, false);
	dsn_put_line(b, "Content-Description: Notification");
	dsn_put_str(b, "Content-Type: text/plain; charset=");
	dsn_put_line(b, pl->utf8 ? "utf-8" : "us-ascii");
	if (pl->utf8)
		dsn_put_line(b, "Content-Transfer-Encoding: 8bit");
	dsn_put_crlf(b);
	dsn_put_str(b, "This is the mail system at host ");
	dsn_put_host(b, r->myhostname, DSN_HOST_LEN_MAX);
	dsn_put_line(b, ".");
	for (size_t g = 0; g < ARRAY_LEN(order); g++) {
		bool intro = false;
		for (uint32_t i = 0; i < r->rcpt_count; i++) {
			if (r->rcpts[i].action != order[g])
				continue;
			if (!intro) {
				dsn_put_crlf(b);
				dsn_write_group_intro(b, order[g], pl);
				dsn_put_crlf(b);
				intro = true;
			}
			dsn_write_human_rcpt(b, &r->rcpts[i], pl);
		}
	}
	dsn_put_crlf(b);
	dsn_write_original_note(b, r, pl);
}

/* RFC 3464 2.2.1: the ENVID, decoded from xtext (RFC 3461 4.4); shown as sent if it is not
 * valid xtext. */
static void
dsn_write_envid(struct dsn_buf *b, struct slice envid)
{
	uint8_t decoded[DSN_ENVID_LEN_MAX];
	if (envid.len > DSN_ENVID_LEN_MAX)
		envid.len = DSN_ENVID_LEN_MAX;
	long n = dsn_xtext_decode(decoded, sizeof(decoded), envid);
	dsn_put_str(b, "Original-Envelope-Id: ");
	dsn_put_addr(b, n < 0 ? envid : slice_make(decoded, (size_t)n), false, DSN_ENVID_LEN_MAX);
	dsn_put_crlf(b);
}

static void
dsn_write_status_message(struct dsn_buf *b, const struct dsn_report *r, const struct dsn_plan *pl)
{
	const struct dsn_envelope *env = r->env;
	dsn_put_delimiter(b, pl, false);
	dsn_put_line(b, "Content-Description: Delivery report");
	dsn_put_str(b, "Content-Type: message/");
	dsn_put_line(b, pl->utf8 ? "global-delivery-status" : "delivery-status");
	if (pl->utf8)
		dsn_put_line(b, "Content-Transfer-Encoding: 8bit");
	dsn_put_crlf(b);
	dsn_put_str(b, "Reporting-MTA: dns; ");
	dsn_put_host(b, r->myhostname, DSN_HOST_LEN_MAX);
	dsn_put_crlf(b);
	dsn_put_str(b, "X-ringmta-Queue-ID: ");   /* RFC 3464 2.4 extension field */
	dsn_put_qid(b, r->queue_id);
	dsn_put_crlf(b);
	if (env->envid.len > 0)
		dsn_write_envid(b, env->envid);
	if (env->helo.len > 0) {
		dsn_put_str(b, "Received-From-MTA: dns; ");
		dsn_put_host(b, env->helo, DSN_HOST_LEN_MAX);
		if (env->client_addr.len > 0) {
			dsn_put_str(b, " (");
			dsn_put_host(b, env->client_addr, DSN_CLIENT_ADDR_LEN_MAX);
			dsn_put_str(b, ")");
		}
		dsn_put_crlf(b);
	}
	dsn_put_str(b, "Arrival-Date: ");
	dsn_put_date(b, env->arrival_ms);
	dsn_put_crlf(b);
}

/* RFC 3464 2.3.1, RFC 3461 4.2: "addr-type;" then the xtext decoded; an ORCPT that is not of
 * that form is shown as sent. */
static void
dsn_write_orcpt(struct dsn_buf *b, struct slice orcpt, const struct dsn_plan *pl)
{
	uint8_t decoded[DSN_ORCPT_LEN_MAX];
	if (orcpt.len > DSN_ORCPT_LEN_MAX)
		orcpt.len = DSN_ORCPT_LEN_MAX;
	const uint8_t *semi = memchr(orcpt.ptr, ';', orcpt.len);
	dsn_put_str(b, "Original-Recipient: ");
	if (semi == NULL) {
		dsn_put_addr(b, orcpt, pl->utf8, DSN_ORCPT_LEN_MAX);
		dsn_put_crlf(b);
		return;
	}
	size_t type_len = (size_t)(semi - orcpt.ptr) + 1;
	struct slice xtext = slice_skip(orcpt, type_len);
	long n = dsn_xtext_decode(decoded, sizeof(decoded), xtext);
	dsn_put_addr(b, slice_sub(orcpt, 0, type_len), false, DSN_ORCPT_LEN_MAX);
	dsn_put_addr(b, n < 0 ? xtext : slice_make(decoded, (size_t)n), pl->utf8,
		DSN_ORCPT_LEN_MAX - type_len);
	dsn_put_crlf(b);
}

static void
dsn_write_diag(struct dsn_buf *b, const struct dsn_rcpt *rc)
{
	uint8_t diag[DSN_DIAG_LEN_MAX];
	size_t n = dsn_sanitize_text(diag, sizeof(diag), rc->diag);
	dsn_put_str(b, "Diagnostic-Code: ");
	dsn_put_str(b, rc->diag_type == DSN_DIAG_SMTP ? "smtp; " : "X-ringmta; ");
	dsn_put_folded(b, slice_make(diag, n), DSN_HEADER_INDENT);
	dsn_put_crlf(b);
}

static void
dsn_write_status_rcpt(struct dsn_buf *b, const struct dsn_rcpt *rc, const struct dsn_plan *pl)
{
	dsn_put_crlf(b);   /* RFC 3464 2.1: a blank line before each recipient's fields */
	if (rc->orcpt.len > 0)
		dsn_write_orcpt(b, rc->orcpt, pl);
	dsn_put_str(b, "Final-Recipient: ");
	dsn_put_str(b, pl->utf8 && !dsn_is_ascii(rc->final_rcpt) ? "utf-8; " : "rfc822; ");
	dsn_put_addr(b, rc->final_rcpt, pl->utf8, DSN_ADDR_LEN_MAX);
	dsn_put_crlf(b);
	dsn_put_str(b, "Action: ");
	dsn_put_line(b, dsn_action_word(rc->action));
	dsn_put_str(b, "Status: ");
	dsn_put_slice(b, dsn_status_of(rc));
	dsn_put_crlf(b);
	if (rc->remote_mta.len > 0) {
		dsn_put_str(b, "Remote-MTA: dns; ");
		dsn_put_host(b, rc->remote_mta, DSN_HOST_LEN_MAX);
		dsn_put_crlf(b);
	}
	if (rc->diag_type != DSN_DIAG_NONE)
		dsn_write_diag(b, rc);
	if (rc->last_attempt_ms != 0) {
		dsn_put_str(b, "Last-Attempt-Date: ");
		dsn_put_date(b, rc->last_attempt_ms);
		dsn_put_crlf(b);
	}
	if (rc->action == DSN_ACTION_DELAYED && rc->retry_until_ms != 0) {
		dsn_put_str(b, "Will-Retry-Until: ");
		dsn_put_date(b, rc->retry_until_ms);
		dsn_put_crlf(b);
	}
}

static void
dsn_write_original_head(struct dsn_buf *b, const struct dsn_plan *pl)
{
	static const char *const types[2][2] = {
		{ "message/rfc822", "text/rfc822-headers" },          /* RFC 2046, RFC 6522 5 */
		{ "message/global", "message/global-headers" },       /* RFC 6532 3.7, RFC 6533 */
	};
	bool whole = pl->included == DSN_INCLUDED_MESSAGE;
	dsn_put_delimiter(b, pl, false);
	dsn_put_str(b, "Content-Description: ");
	dsn_put_line(b, whole ? "Undelivered Message" : "Message Headers");
	dsn_put_str(b, "Content-Type: ");
	dsn_put_line(b, types[pl->utf8 ? 1 : 0][whole ? 0 : 1]);
	dsn_put_str(b, "Content-Transfer-Encoding: ");
	dsn_put_line(b, pl->original_8bit ? "8bit" : "7bit");
	dsn_put_crlf(b);
}

static void
dsn_write_head(struct dsn_buf *b, const struct dsn_report *r, const struct dsn_plan *pl)
{
	dsn_write_headers(b, r, pl);
	dsn_write_human(b, r, pl);
	dsn_write_status_message(b, r, pl);
	for (uint32_t i = 0; i < r->rcpt_count; i++)
		dsn_write_status_rcpt(b, &r->rcpts[i], pl);
	dsn_write_original_head(b, pl);
}

static void
dsn_write_tail(struct dsn_buf *b, const struct dsn_plan *pl)
{
	/* The original normally ends with CRLF; if not, the delimiter still starts a line. */
	if (pl->original.len > 0 && !(pl->original.len >= 2
			&& pl->original.ptr[pl->original.len - 2] == '\r'
			&& pl->original.ptr[pl->original.len - 1] == '\n'))
		dsn_put_crlf(b);
	dsn_put_delimiter(b, pl, true);
}

static void
dsn_check_report(const struct dsn_report *r)
{
	ASSERT(r->env != NULL);
	ASSERT(r->env->mail_from.len > 0);   /* never a DSN to the null reverse-path */
	ASSERT(r->myhostname.len > 0);
	ASSERT(r->rcpt_count > 0);
	ASSERT(r->rcpt_count <= DSN_RCPT_MAX);
	ASSERT(r->rcpts != NULL);
}

size_t
dsn_size(const struct dsn_report *r)
{
	dsn_check_report(r);
	struct dsn_plan pl;
	dsn_plan_make(r, &pl);
	struct dsn_buf b = { .p = NULL };
	dsn_write_head(&b, r, &pl);
	b.line_start = b.len;
	dsn_write_tail(&b, &pl);
	return b.len;
}

void
dsn_compose(const struct dsn_report *r, uint8_t *buf, size_t cap, struct dsn_out *out)
{
	dsn_check_report(r);
	struct dsn_plan pl;
	dsn_plan_make(r, &pl);
	struct dsn_buf b = { .p = buf, .cap = cap };
	dsn_write_head(&b, r, &pl);
	size_t head_len = b.len;
	b.line_start = b.len;
	dsn_write_tail(&b, &pl);
	*out = (struct dsn_out){
		.head = slice_make(buf, head_len),
		.original = pl.original,
		.tail = slice_make(buf + head_len, b.len - head_len),
		.included = pl.included,
		.need_8bitmime = pl.utf8 || pl.original_8bit,
		.need_smtputf8 = pl.utf8 && !dsn_is_ascii(r->env->mail_from),
		.utf8_types = pl.utf8,
	};
}
