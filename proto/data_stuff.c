/* proto/data_stuff.c - the outbound dot-stuffer: the scalar reference, the choice of
 * implementation and the end of data. See data_stuff.h for the semantics and data_stuff_impl.h for
 * how the SIMD versions use this one. */
#include "proto/data_stuff.h"

#include "proto/data_stuff_impl.h"

/* The inserted pieces (static: slices of them stay valid for ever). */
static const uint8_t data_stuff_dot[] = ".";        /* doubles a line-start dot */
static const uint8_t data_stuff_cr[] = "\r";        /* before a bare LF */
static const uint8_t data_stuff_lf[] = "\n";        /* after a bare CR */
static const uint8_t data_stuff_lf_dot[] = "\n.";   /* after a bare CR, before a dot */
static const uint8_t data_stuff_end_lf[] = "\n.\r\n";
static const uint8_t data_stuff_end_crlf[] = "\r\n.\r\n";

void
data_stuff_init(struct data_stuff *st)
{
	st->state = DS_LINE_START;
	st->ended = false;
	st->fixed = 0;
}

static void
data_stuff_emit(struct data_stuff_out *out, const uint8_t *ptr, size_t len)
{
	if (len == 0)
		return;
	ASSERT(out->count < DATA_STUFF_SLICES_MAX);
	out->slices[out->count++] = slice_make(ptr, len);
}

/* What goes before octet c in state s: nothing (len 0), a dot, or the other half of a newline. */
static struct slice
data_stuff_insert(uint8_t s, uint8_t c)
{
	if (s == DS_CR && c != '\n')   /* the CR before c was bare: the line ends here */
		return c == '.' ? slice_make(data_stuff_lf_dot, 2) : slice_make(data_stuff_lf, 1);
	if (s != DS_CR && c == '\n')   /* a bare LF */
		return slice_make(data_stuff_cr, 1);
	if (s == DS_LINE_START && c == '.')   /* RFC 5321 4.5.2 */
		return slice_make(data_stuff_dot, 1);
	return slice_make(NULL, 0);
}

bool
data_stuff_scalar_range(struct data_stuff *st, struct slice in, size_t *ip, size_t end,
	size_t *startp, struct data_stuff_out *out)
{
	size_t i = *ip, start = *startp;
	bool more = true;
	for (; i < end; i++) {
		uint8_t c = in.ptr[i];
		struct slice ins = data_stuff_insert(st->state, c);
		if (ins.len > 0) {
			if (out->count + DATA_STUFF_SLICES_PER_EVENT > DATA_STUFF_SLICES_MAX) {
				more = false;   /* the caller comes back to this octet */
				break;
			}
			data_stuff_emit(out, in.ptr + start, i - start);
			data_stuff_emit(out, ins.ptr, ins.len);
			start = i;   /* c itself goes out with the text after it */
			st->fixed += ins.ptr != data_stuff_dot;
		}
		st->state = c == '\r' ? DS_CR : c == '\n' ? DS_LINE_START : DS_TEXT;
	}
	*ip = i;
	*startp = start;
	return more;
}

size_t
data_stuff_finish(struct slice in, size_t i, size_t start, struct data_stuff_out *out)
{
	data_stuff_emit(out, in.ptr + start, i - start);
	return i;
}

static size_t
data_stuff_feed_scalar(struct data_stuff *st, struct slice in, struct data_stuff_out *out)
{
	size_t i = 0, start = 0;
	(void)data_stuff_scalar_range(st, in, &i, in.len, &start, out);
	return data_stuff_finish(in, i, start, out);
}

size_t
data_stuff_feed_impl(enum data_scan_impl impl, struct data_stuff *st, struct slice in,
	struct data_stuff_out *out)
{
	ASSERT(data_scan_impl_supported(impl));
	ASSERT(!st->ended);
	ASSERT(out->count + DATA_STUFF_ROOM_MIN <= DATA_STUFF_SLICES_MAX);
	switch (impl) {
	case DATA_SCAN_AVX2:
		return data_stuff_feed_avx2(st, in, out);
	case DATA_SCAN_SSE2:
		return data_stuff_feed_sse2(st, in, out);
	case DATA_SCAN_SCALAR:
		break;
	}
	return data_stuff_feed_scalar(st, in, out);
}

size_t
data_stuff_feed(struct data_stuff *st, struct slice in, struct data_stuff_out *out)
{
	static int best = -1;   /* decided once; a benign race writes the same value */
	if (best < 0)
		best = (int)data_scan_best_impl();
	return data_stuff_feed_impl((enum data_scan_impl)best, st, in, out);
}

void
data_stuff_end(struct data_stuff *st, struct data_stuff_out *out)
{
	ASSERT(!st->ended);
	ASSERT(out->count < DATA_STUFF_SLICES_MAX);
	/* RFC 5321 4.1.1.4: the data ends with CRLF "." CRLF, so the body must end with CRLF. */
	struct slice end = st->state == DS_LINE_START ? slice_make(data_stuff_end_crlf + 2, 3)
		: st->state == DS_CR ? slice_make(data_stuff_end_lf, 4)
		: slice_make(data_stuff_end_crlf, 5);
	st->fixed += st->state == DS_CR;
	out->slices[out->count++] = end;
	st->ended = true;
}
