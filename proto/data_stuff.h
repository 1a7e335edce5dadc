/* proto/data_stuff.h - a stored message body into SMTP DATA wire form (RFC 5321 4.5.2, 4.1.1.4).
 *
 * The mirror of data_scan: the spool keeps the body as received with the dots unstuffed; on the
 * way out a '.' that starts a line is doubled, the body is made to end with CRLF, and ".\r\n"
 * ends the data. I/O-free; one struct data_stuff per outgoing body, owned by the smtp_client that
 * embeds it. The output is a list of slices: slices of the input, and small inserted pieces in
 * static storage (".", "\r", "\n", the terminator). No byte of the body is copied: the engine
 * hands the slices to writev or SEND_ZC as they are.
 *
 * Line ends: RFC 5321 2.3.8 forbids a client to send a bare CR or a bare LF. A body received with
 * BDAT (binary-clean, RFC 3030) may hold them; they are sent as CRLF (an LF gets a CR inserted
 * before it, a CR an LF after it), and the line that follows is a new line for dot-stuffing. So
 * no receiver, strict or lenient about line ends, can see an end of data that we did not mean
 * (SMTP smuggling, CVE-2023-51764/5/6), and a body without bare newlines goes out unchanged but
 * for its doubled dots. data_stuff_fixed() counts the bare newlines that were completed.
 *
 * The state carries over between feeds, so any split of the body into pieces gives the same wire
 * bytes. Three implementations give identical output: the scalar reference, SSE2 and AVX2,
 * sharing data_scan's event finder (data_scan_impl.h): plain text goes out with no per-byte work.
 *
 * Limits: one feed adds at most DATA_STUFF_SLICES_MAX slices and stops early when full; the
 * caller leaves DATA_STUFF_ROOM_MIN free. Sizes are not counted or limited here. */
#ifndef RINGMTA_PROTO_DATA_STUFF_H
#define RINGMTA_PROTO_DATA_STUFF_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/slice.h"
#include "proto/data_scan.h"

#define DATA_STUFF_SLICES_MAX 64u
/* An event (a dot to double, a bare newline to complete) costs at most the text before it, the
 * inserted piece and the text after it. */
#define DATA_STUFF_SLICES_PER_EVENT 3u
#define DATA_STUFF_ROOM_MIN DATA_STUFF_SLICES_PER_EVENT

/* private: use the functions */
struct data_stuff {
	uint8_t state;          /* line start, text, after CR (enum data_scan_state values) */
	bool ended;             /* data_stuff_end was called */
	uint64_t fixed;         /* bare CR or bare LF completed to CRLF */
};

struct data_stuff_out {
	struct slice slices[DATA_STUFF_SLICES_MAX];
	uint32_t count;
};

/* Resets st for a new body; the body starts at the beginning of a line. */
void data_stuff_init(struct data_stuff *st);

/* Stuffs a prefix of `in` with the best implementation, appending wire slices to `out`, which
 * must have DATA_STUFF_ROOM_MIN free slots. Returns the octets consumed: all of `in`, or fewer
 * when `out` filled up (call again with the rest; every call with room consumes at least one
 * octet of a non-empty input). Slices point into `in` (valid while it is) or at static storage.
 * Cannot fail. */
size_t data_stuff_feed(struct data_stuff *st, struct slice in, struct data_stuff_out *out);

/* The same, with a chosen implementation (tests, benchmarks). impl must be supported. */
size_t data_stuff_feed_impl(enum data_scan_impl impl, struct data_stuff *st, struct slice in,
	struct data_stuff_out *out);

/* After the last octet: appends one static slice: the CRLF (or the LF after a final CR) that the
 * body lacked, if any, and the terminating ".\r\n". out needs one free slot. */
void data_stuff_end(struct data_stuff *st, struct data_stuff_out *out);

static inline uint64_t
data_stuff_fixed(const struct data_stuff *st)
{
	return st->fixed;
}
#endif
