/* proto/data_stuff_impl.h - private to the dot-stuffer: the block driver shared by its SIMD
 * implementations, and the scalar step they fall back to.
 *
 * The events of stuffing are the events of data_scan in its three plain states (line start, text,
 * after CR): a dot at a line start, an LF not after a CR, a CR not before an LF. So the same
 * data_scan_block_events() finds them in a 64-octet block; everything before the first event is
 * plain text, which only extends the current input slice; the event goes through the scalar step,
 * the single definition of what is inserted. */
#ifndef RINGMTA_PROTO_DATA_STUFF_IMPL_H
#define RINGMTA_PROTO_DATA_STUFF_IMPL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/data_scan_impl.h"
#include "proto/data_stuff.h"

/* Scalar steps taken at an event: a CR and the octet after it settle a bare CR. */
#define DATA_STUFF_EVENT_STEP 2u

/* Runs the scalar stuffer over in[*i .. end); *start is the first input octet not yet emitted.
 * Returns false when it stopped early because out is full; *i says where. */
bool data_stuff_scalar_range(struct data_stuff *st, struct slice in, size_t *i, size_t end,
	size_t *start, struct data_stuff_out *out);

/* Emits in[start .. i); returns i. */
size_t data_stuff_finish(struct slice in, size_t i, size_t start, struct data_stuff_out *out);

/* The shared driver, inlined into each SIMD unit with its own masks_of (see data_scan_impl.h). */
static inline size_t
data_stuff_feed_blocks(struct data_stuff *st, struct slice in, struct data_stuff_out *out,
	void (*masks_of)(const uint8_t *p, struct data_scan_masks *m))
{
	size_t i = 0, start = 0;
	while (in.len - i >= DATA_SCAN_BLOCK) {
		struct data_scan_masks m;
		masks_of(in.ptr + i, &m);
		uint64_t events = data_scan_block_events(&m, st->state);
		if (events == 0) {
			st->state = data_scan_state_at(&m, DATA_SCAN_BLOCK);
			i += DATA_SCAN_BLOCK;
			continue;
		}
		unsigned e = (unsigned)__builtin_ctzll(events);
		if (e > 0) {
			st->state = data_scan_state_at(&m, e);
			i += e;
		}
		size_t step_end = in.len - i < DATA_STUFF_EVENT_STEP ? in.len
			: i + DATA_STUFF_EVENT_STEP;
		if (!data_stuff_scalar_range(st, in, &i, step_end, &start, out))
			return data_stuff_finish(in, i, start, out);
	}
	(void)data_stuff_scalar_range(st, in, &i, in.len, &start, out);
	return data_stuff_finish(in, i, start, out);
}

size_t data_stuff_feed_sse2(struct data_stuff *st, struct slice in, struct data_stuff_out *out);
size_t data_stuff_feed_avx2(struct data_stuff *st, struct slice in, struct data_stuff_out *out);
#endif
