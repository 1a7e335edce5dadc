/* proto/data_scan.c - end-of-data detection and dot-unstuffing; scalar reference and dispatch. */
#include "proto/data_scan.h"

enum data_scan_state {
	DS_LINE_START,   /* after CRLF (or at the start of the body) */
	DS_TEXT,         /* inside a line */
	DS_CR,           /* inside a line, after a CR (emitted) */
	DS_DOT,          /* a line-start dot was dropped */
	DS_DOT_CR,       /* ".\r" at a line start: the CR is held back */
};

static const uint8_t data_scan_cr[1] = { '\r' };

void
data_scan_init(struct data_scan *ds)
{
	ds->state = DS_LINE_START;
	ds->done = false;
	ds->bare_newlines = 0;
}

/* Appends input bytes [ptr, ptr + len) as body, merged with the previous slice when adjacent.
 * The callers keep room: data_scan_feed_scalar stops before a dot it could not afford. */
static void
data_scan_emit(struct data_scan_out *out, const uint8_t *ptr, size_t len)
{
	if (len == 0)
		return;
	if (out->count > 0) {
		struct slice *last = &out->slices[out->count - 1];
		if (last->ptr + last->len == ptr) {
			last->len += len;
			return;
		}
	}
	ASSERT(out->count < DATA_SCAN_SLICES_MAX);
	out->slices[out->count++] = slice_make(ptr, len);
}

/* A dropped dot costs at most three slices before the feed ends: the text before it, a held-back
 * CR, and the text after. Stopping at a line start when fewer are left keeps the state exact. */
#define DATA_SCAN_SLICES_PER_DOT 3u

static size_t
data_scan_feed_scalar(struct data_scan *ds, struct slice in, struct data_scan_out *out)
{
	size_t i = 0;
	size_t start = 0;   /* first input byte not yet emitted */
	while (i < in.len && !ds->done) {
		uint8_t c = in.ptr[i];
		switch (ds->state) {
		case DS_LINE_START:
			if (c == '.') {
				data_scan_emit(out, in.ptr + start, i - start);
				if (out->count + DATA_SCAN_SLICES_PER_DOT > DATA_SCAN_SLICES_MAX)
					return i;   /* out is full: the caller comes back to this dot */
				/* RFC 5321 4.5.2: drop the dot by ending the slice before it. */
				start = i + 1;
				ds->state = DS_DOT;
			} else {
				ds->bare_newlines += c == '\n';
				ds->state = c == '\r' ? DS_CR : DS_TEXT;
			}
			break;
		case DS_TEXT:
			ds->bare_newlines += c == '\n';
			ds->state = c == '\r' ? DS_CR : DS_TEXT;
			break;
		case DS_CR:
			if (c == '\n') {
				ds->state = DS_LINE_START;
			} else {
				ds->bare_newlines++;   /* the CR before c was bare */
				ds->state = c == '\r' ? DS_CR : DS_TEXT;
			}
			break;
		case DS_DOT:
			if (c == '\r') {
				/* Maybe ".\r\n", the end: hold the CR back, and emit it if not. */
				data_scan_emit(out, in.ptr + start, i - start);
				start = i + 1;
				ds->state = DS_DOT_CR;
			} else {
				ds->bare_newlines += c == '\n';
				ds->state = DS_TEXT;
			}
			break;
		case DS_DOT_CR:
			if (c == '\n') {
				ds->done = true;   /* CRLF "." CRLF: the body ends before the dot */
				start = i + 1;
				break;
			}
			data_scan_emit(out, in.ptr + start, i - start);
			data_scan_emit(out, data_scan_cr, 1);
			start = i;
			ds->bare_newlines++;   /* the held CR was bare */
			ds->state = DS_TEXT;
			continue;              /* c is looked at again, as the byte after a bare CR */
		}
		i++;
	}
	if (!ds->done)
		data_scan_emit(out, in.ptr + start, i - start);
	return i;
}

size_t
data_scan_feed_impl(enum data_scan_impl impl, struct data_scan *ds, struct slice in,
	struct data_scan_out *out)
{
	(void)impl;
	return data_scan_feed_scalar(ds, in, out);
}

size_t
data_scan_feed(struct data_scan *ds, struct slice in, struct data_scan_out *out)
{
	return data_scan_feed_scalar(ds, in, out);
}

enum data_scan_impl
data_scan_best_impl(void)
{
	return DATA_SCAN_SCALAR;
}

bool
data_scan_impl_supported(enum data_scan_impl impl)
{
	return impl == DATA_SCAN_SCALAR;
}

const char *
data_scan_impl_name(enum data_scan_impl impl)
{
	return impl == DATA_SCAN_AVX2 ? "avx2" : impl == DATA_SCAN_SSE2 ? "sse2" : "scalar";
}
