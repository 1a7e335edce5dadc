/* proto/data_scan.c - end-of-data detection and dot-unstuffing: the scalar reference state
 * machine, and the choice of implementation (cpuid, once). See data_scan.h for the semantics and
 * data_scan_impl.h for how the SIMD versions use this one. */
#include "proto/data_scan.h"

#include "proto/data_scan_impl.h"

/* A dropped dot costs at most three slices before the feed ends: the text before it, a held-back
 * CR, and the text after. Stopping at a line start when fewer are left keeps the state exact. */
#define DATA_SCAN_SLICES_PER_DOT 3u

static const uint8_t data_scan_cr[1] = { '\r' };

void
data_scan_init(struct data_scan *ds)
{
	ds->state = DS_LINE_START;
	ds->done = false;
	ds->bare_newlines = 0;
}

/* Appends input bytes [ptr, ptr + len) as body, merged with the previous slice when adjacent.
 * The callers keep room: data_scan_scalar_range stops before a dot it could not afford. */
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

/* One byte c at index i of in, in a state that neither drops nor holds anything. */
static void
data_scan_text_byte(struct data_scan *ds, uint8_t c)
{
	switch (ds->state) {
	case DS_CR:
		if (c == '\n') {
			ds->state = DS_LINE_START;
			return;
		}
		ds->bare_newlines++;   /* the CR before c was bare */
		break;
	default:
		ds->bare_newlines += c == '\n';   /* an LF not after a CR */
		break;
	}
	ds->state = c == '\r' ? DS_CR : DS_TEXT;
}

bool
data_scan_scalar_range(struct data_scan *ds, struct slice in, size_t *ip, size_t end,
	size_t *startp, struct data_scan_out *out)
{
	size_t i = *ip, start = *startp;
	bool more = true;
	while (i < end) {
		uint8_t c = in.ptr[i];
		if (ds->state == DS_LINE_START && c == '.') {
			data_scan_emit(out, in.ptr + start, i - start);
			start = i;
			if (out->count + DATA_SCAN_SLICES_PER_DOT > DATA_SCAN_SLICES_MAX) {
				more = false;   /* out is full: the caller comes back to this dot */
				break;
			}
			/* RFC 5321 4.5.2: drop the dot by ending the slice before it. */
			start = i + 1;
			ds->state = DS_DOT;
		} else if (ds->state == DS_DOT && c == '\r') {
			/* Maybe ".\r\n", the end: hold the CR back, and emit it if not. */
			data_scan_emit(out, in.ptr + start, i - start);
			start = i + 1;
			ds->state = DS_DOT_CR;
		} else if (ds->state == DS_DOT_CR && c == '\n') {
			ds->done = true;   /* CRLF "." CRLF: the body ends before the dot */
			i++;
			start = i;
			more = false;
			break;
		} else if (ds->state == DS_DOT_CR) {
			data_scan_emit(out, in.ptr + start, i - start);
			data_scan_emit(out, data_scan_cr, 1);
			start = i;
			ds->bare_newlines++;   /* the held CR was bare; c is looked at again after it */
			ds->state = DS_TEXT;
			continue;
		} else {
			if (ds->state == DS_DOT)
				ds->state = DS_TEXT;   /* a stuffed dot: the line goes on as text */
			data_scan_text_byte(ds, c);
		}
		i++;
	}
	*ip = i;
	*startp = start;
	return more;
}

size_t
data_scan_finish(struct data_scan *ds, struct slice in, size_t i, size_t start,
	struct data_scan_out *out)
{
	if (!ds->done)
		data_scan_emit(out, in.ptr + start, i - start);
	return i;
}

static size_t
data_scan_feed_scalar(struct data_scan *ds, struct slice in, struct data_scan_out *out)
{
	size_t i = 0, start = 0;
	if (ds->done)
		return 0;
	if (!data_scan_scalar_range(ds, in, &i, in.len, &start, out) && ds->done)
		return i;
	return data_scan_finish(ds, in, i, start, out);
}

size_t
data_scan_feed_impl(enum data_scan_impl impl, struct data_scan *ds, struct slice in,
	struct data_scan_out *out)
{
	ASSERT(data_scan_impl_supported(impl));
	switch (impl) {
	case DATA_SCAN_AVX2:
		return data_scan_feed_avx2(ds, in, out);
	case DATA_SCAN_SSE2:
		return data_scan_feed_sse2(ds, in, out);
	case DATA_SCAN_SCALAR:
		break;
	}
	return data_scan_feed_scalar(ds, in, out);
}

enum data_scan_impl
data_scan_best_impl(void)
{
	return __builtin_cpu_supports("avx2") ? DATA_SCAN_AVX2 : DATA_SCAN_SSE2;
}

size_t
data_scan_feed(struct data_scan *ds, struct slice in, struct data_scan_out *out)
{
	static int best = -1;   /* decided once; a benign race writes the same value */
	if (best < 0)
		best = (int)data_scan_best_impl();
	return data_scan_feed_impl((enum data_scan_impl)best, ds, in, out);
}

bool
data_scan_impl_supported(enum data_scan_impl impl)
{
	/* SSE2 is part of x86-64; AVX2 is asked of the CPU. */
	return impl != DATA_SCAN_AVX2 || __builtin_cpu_supports("avx2");
}

const char *
data_scan_impl_name(enum data_scan_impl impl)
{
	return impl == DATA_SCAN_AVX2 ? "avx2" : impl == DATA_SCAN_SSE2 ? "sse2" : "scalar";
}
