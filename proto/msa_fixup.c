/* proto/msa_fixup.c - Date: and Message-ID: for submitted mail; see msa_fixup.h. */
#include "proto/msa_fixup.h"

#include <string.h>
#include <time.h>

#include "base/assert.h"

enum {
	MF_LINE_START,   /* at the first octet of a line */
	MF_NAME,         /* in a name: the line so far is held (or in data from line_at) */
	MF_BEFORE_COLON, /* blanks after a name, before its ':' */
	MF_REST,         /* in a field's line: on to its LF */
	MF_DONE,         /* the header section has ended */
};

void
msa_fixup_init(struct msa_fixup *f, uint64_t now_ms, uint64_t queue_id, struct slice host)
{
	f->now_ms = now_ms;
	f->queue_id = queue_id;
	f->host = host;
	f->state = MF_LINE_START;
	f->any_field = false;
	f->has_date = false;
	f->has_message_id = false;
	f->held = 0;
	f->cur = 0;
	f->fields_len = 0;
}

bool
msa_fixup_done(const struct msa_fixup *f)
{
	return f->state == MF_DONE;
}

static bool
mf_ftext(uint8_t c)
{
	return c >= 33 && c <= 126 && c != ':';   /* RFC 5322 3.6.8 */
}

static bool
mf_blank(uint8_t c)
{
	return c == ' ' || c == '\t';
}

size_t
msa_fixup_message_id(uint8_t *buf, size_t cap, uint64_t now_ms, uint64_t unique,
	struct slice host)
{
	static const char hex[] = "0123456789ABCDEF";
	ASSERT(cap >= MSA_FIXUP_MSGID_MAX);
	time_t secs = (time_t)(now_ms / 1000u);
	struct tm tm;
	gmtime_r(&secs, &tm);
	size_t n = 0;
	buf[n++] = '<';
	n += strftime((char *)buf + n, cap - n, "%Y%m%d%H%M%S", &tm);
	buf[n++] = '.';
	for (int i = 15; i >= 0; i--)
		buf[n++] = (uint8_t)hex[(unique >> (4 * i)) & 0xfu];
	buf[n++] = '@';
	size_t hl = host.len < MSA_FIXUP_HOST_MAX ? host.len : MSA_FIXUP_HOST_MAX;
	memcpy(buf + n, host.ptr, hl);
	n += hl;
	buf[n++] = '>';
	ASSERT(n <= MSA_FIXUP_MSGID_MAX);
	return n;
}

static void
mf_put(struct msa_fixup *f, const void *p, size_t len)
{
	ASSERT(f->fields_len + len <= sizeof(f->fields));
	memcpy(f->fields + f->fields_len, p, len);
	f->fields_len += (uint32_t)len;
}

/* The header section ends: the fields it lacks, with CRLF before them if a line is open and an
 * empty line after them if the body starts without one. */
static struct slice
mf_end(struct msa_fixup *f, bool crlf_before, bool blank_after)
{
	f->state = MF_DONE;
	f->fields_len = 0;
	if (f->has_date && f->has_message_id)
		return slice_make(f->fields, 0);
	if (crlf_before)
		mf_put(f, "\r\n", 2);
	if (!f->has_date) {
		uint8_t date[RECEIVED_DATE_LEN_MAX];
		mf_put(f, "Date: ", 6);
		mf_put(f, date, received_date(date, sizeof(date), f->now_ms));
		mf_put(f, "\r\n", 2);
	}
	if (!f->has_message_id) {
		uint8_t id[MSA_FIXUP_MSGID_MAX];
		mf_put(f, "Message-ID: ", 12);
		mf_put(f, id, msa_fixup_message_id(id, sizeof(id), f->now_ms, f->queue_id, f->host));
		mf_put(f, "\r\n", 2);
	}
	if (blank_after)
		mf_put(f, "\r\n", 2);
	return slice_make(f->fields, f->fields_len);
}

static void
mf_out(struct msa_fixup_out *out, struct slice s)
{
	if (s.len == 0)
		return;
	ASSERT(out->count < MSA_FIXUP_OUT_MAX);
	out->parts[out->count++] = s;
}

/* A name is complete (its ':' seen): a field; is it one we look for? */
static void
mf_field(struct msa_fixup *f)
{
	f->any_field = true;
	if (f->name_long)
		return;
	struct slice n = slice_make(f->name, f->name_len);
	if (slice_eq(n, SLICE_LIT("date")))
		f->has_date = true;
	else if (slice_eq(n, SLICE_LIT("message-id")))
		f->has_message_id = true;
}

static void
mf_name_octet(struct msa_fixup *f, uint8_t c)
{
	if (f->name_len < MSA_FIXUP_NAME_MAX)
		f->name[f->name_len++] = c >= 'A' && c <= 'Z' ? (uint8_t)(c + ('a' - 'A')) : c;
	else
		f->name_long = true;
}

void
msa_fixup_feed(struct msa_fixup *f, struct slice data, struct msa_fixup_out *out)
{
	out->count = 0;
	if (f->state == MF_DONE) {
		mf_out(out, data);
		return;
	}
	const uint8_t *p = data.ptr;
	size_t len = data.len;
	/* The line being judged started in an earlier piece (held) or here, at line_at. */
	bool line_held = f->held > 0;
	size_t line_at = 0;
	size_t i = 0;
	while (i < len) {
		uint8_t c = p[i];
		switch (f->state) {
		case MF_LINE_START:
			if (mf_blank(c) && f->any_field) {
				f->state = MF_REST;
				break;
			}
			if (mf_ftext(c)) {
				f->state = MF_NAME;
				f->name_len = 0;
				f->name_long = false;
				mf_name_octet(f, c);
				line_at = i;
				line_held = false;
				break;
			}
			/* An empty line (CR or LF first), or a line that is no field. */
			mf_out(out, slice_make(p, i));
			mf_out(out, mf_end(f, false, c != '\r' && c != '\n'));
			mf_out(out, slice_make(p + i, len - i));
			return;
		case MF_NAME:
		case MF_BEFORE_COLON:
			if (c == ':') {
				mf_field(f);
				f->state = MF_REST;
				break;
			}
			size_t line_len = (line_held ? f->held + i : i - line_at) + 1;
			bool fits = line_len <= MSA_FIXUP_HOLD_MAX;
			if (fits && mf_blank(c)) {
				f->state = MF_BEFORE_COLON;
				break;
			}
			if (fits && f->state == MF_NAME && mf_ftext(c)) {
				mf_name_octet(f, c);
				break;
			}
			/* Not a field: the fields and an empty line go before this line. */
			if (line_held) {
				mf_out(out, mf_end(f, false, true));
				mf_out(out, slice_make(f->hold[f->cur], f->held));
				f->held = 0;
				mf_out(out, data);
			} else {
				mf_out(out, slice_make(p, line_at));
				mf_out(out, mf_end(f, false, true));
				mf_out(out, slice_make(p + line_at, len - line_at));
			}
			return;
		case MF_REST: {
			const uint8_t *lf = memchr(p + i, '\n', len - i);
			if (lf == NULL) {
				i = len;
				continue;
			}
			i = (size_t)(lf - p);
			f->state = MF_LINE_START;
			break;
		}
		default:
			ASSERT(false);
		}
		if (line_held && f->state == MF_REST) {
			/* The held line is a field after all: out it goes, before this piece. */
			mf_out(out, slice_make(f->hold[f->cur], f->held));
			f->held = 0;
			line_held = false;
			line_at = 0;
		}
		i++;
	}
	if (f->state != MF_NAME && f->state != MF_BEFORE_COLON) {
		mf_out(out, data);
		return;
	}
	/* The piece ends inside a name: its line waits for the next piece. */
	if (line_held) {
		ASSERT(f->held + len <= MSA_FIXUP_HOLD_MAX);
		memcpy(f->hold[f->cur] + f->held, p, len);
		f->held += (uint32_t)len;
		return;
	}
	mf_out(out, slice_make(p, line_at));
	uint8_t next = f->cur ^ 1u;   /* hold[cur] may still be in out */
	memcpy(f->hold[next], p + line_at, len - line_at);
	f->cur = next;
	f->held = (uint32_t)(len - line_at);
}

void
msa_fixup_end(struct msa_fixup *f, struct msa_fixup_out *out)
{
	out->count = 0;
	switch (f->state) {
	case MF_DONE:
		return;
	case MF_NAME:
	case MF_BEFORE_COLON:
		/* The last line is a name without ':' and without a line end: no field. */
		mf_out(out, mf_end(f, false, true));
		mf_out(out, slice_make(f->hold[f->cur], f->held));
		f->held = 0;
		return;
	case MF_REST:
		mf_out(out, mf_end(f, true, false));
		return;
	default:
		mf_out(out, mf_end(f, false, false));
		return;
	}
}
