/* proto/data_scan_impl.h - private to the DATA scanner: the block driver shared by the SIMD
 * implementations, and the scalar state machine they fall back to.
 *
 * A SIMD implementation only turns 64 input bytes into three bit masks (CR, LF, '.'). From those
 * the driver finds the first event: an LF not after a CR, a CR not before an LF, a dot at the
 * start of a line. Everything before it is plain text, consumed with no per-byte work (body
 * slices only change at dots, so plain text just extends the current slice); the event itself
 * goes through the scalar state machine, which stays the single definition of the semantics. */
#ifndef RINGMTA_PROTO_DATA_SCAN_IMPL_H
#define RINGMTA_PROTO_DATA_SCAN_IMPL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/data_scan.h"

#define DATA_SCAN_BLOCK 64u

enum data_scan_state {
	DS_LINE_START,   /* after CRLF (or at the start of the body) */
	DS_TEXT,         /* inside a line */
	DS_CR,           /* inside a line, after a CR (emitted) */
	DS_DOT,          /* a line-start dot was dropped */
	DS_DOT_CR,       /* ".\r" at a line start: the CR is held back */
};

struct data_scan_masks {
	uint64_t cr, lf, dot;
};

/* Runs the scalar state machine over in[*i .. end): *start is the first byte not yet emitted.
 * Returns false when it stopped early (end of data, or out nearly full); *i says where. */
bool data_scan_scalar_range(struct data_scan *ds, struct slice in, size_t *i, size_t end,
	size_t *start, struct data_scan_out *out);

/* Emits in[start .. i) unless the data ended; returns i. */
size_t data_scan_finish(struct data_scan *ds, struct slice in, size_t i, size_t start,
	struct data_scan_out *out);

/* The positions of a block that need the scalar state machine, for a scanner in state s: an LF
 * not after a CR, a CR not before an LF (a CR in the last byte is judged with the next block,
 * as the state then says DS_CR), a dot at a line start, and position 0 when the scanner is in
 * the middle of a line-start dot or holds a CR that the first byte shows to be bare. */
static inline uint64_t
data_scan_block_events(const struct data_scan_masks *m, uint8_t s)
{
	if (s == DS_DOT || s == DS_DOT_CR || (s == DS_CR && !(m->lf & 1u)))
		return 1u;
	uint64_t prev_cr = (m->cr << 1) | (s == DS_CR);
	uint64_t crlf = m->lf & prev_cr;
	uint64_t bare_lf = m->lf & ~prev_cr;
	uint64_t bare_cr = m->cr & ~(m->lf >> 1) & ~(1ull << 63);
	uint64_t line_start = (crlf << 1) | (s == DS_LINE_START);
	return bare_lf | bare_cr | (m->dot & line_start);
}

/* The state at position e (1 <= e <= 64) of a block with no event before e: set by byte e - 1,
 * which is a CR, an LF after a CR, or text. */
static inline uint8_t
data_scan_state_at(const struct data_scan_masks *m, unsigned e)
{
	uint64_t bit = 1ull << (e - 1);
	return (m->cr & bit) ? DS_CR : (m->lf & bit) ? DS_LINE_START : DS_TEXT;
}

/* Scalar steps taken at an event: enough to settle a dot, "\r" and "\n" behind it. */
#define DATA_SCAN_EVENT_STEP 3u

/* The shared driver: masks_of computes the masks of 64 bytes at p. Inlined into each
 * implementation so that masks_of is a direct call of its own instructions. Plain stretches are
 * skipped 64 octets at a time; at an event the scalar machine takes a few steps, and the blocks
 * go on from there (unaligned loads cost nothing extra). */
static inline size_t
data_scan_feed_blocks(struct data_scan *ds, struct slice in, struct data_scan_out *out,
	void (*masks_of)(const uint8_t *p, struct data_scan_masks *m))
{
	size_t i = 0, start = 0;
	if (ds->done)
		return 0;
	while (in.len - i >= DATA_SCAN_BLOCK) {
		struct data_scan_masks m;
		masks_of(in.ptr + i, &m);
		uint64_t events = data_scan_block_events(&m, ds->state);
		if (events == 0) {
			ds->state = data_scan_state_at(&m, DATA_SCAN_BLOCK);
			i += DATA_SCAN_BLOCK;
			continue;
		}
		unsigned e = (unsigned)__builtin_ctzll(events);
		if (e > 0) {
			ds->state = data_scan_state_at(&m, e);
			i += e;
		}
		size_t step_end = in.len - i < DATA_SCAN_EVENT_STEP ? in.len : i + DATA_SCAN_EVENT_STEP;
		if (!data_scan_scalar_range(ds, in, &i, step_end, &start, out))
			return ds->done ? i : data_scan_finish(ds, in, i, start, out);
	}
	if (!data_scan_scalar_range(ds, in, &i, in.len, &start, out) && ds->done)
		return i;
	return data_scan_finish(ds, in, i, start, out);
}

size_t data_scan_feed_sse2(struct data_scan *ds, struct slice in, struct data_scan_out *out);
size_t data_scan_feed_avx2(struct data_scan *ds, struct slice in, struct data_scan_out *out);
#endif
