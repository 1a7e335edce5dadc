/* proto/data_scan.h - end-of-data detection and dot-unstuffing for SMTP DATA (RFC 5321 4.5.2).
 *
 * I/O-free. One struct data_scan per transaction body, owned by the smtp_server that embeds it.
 * The input is scanned in place: the output is a list of slices of that same input with the
 * stuffed dots left out (a dot is dropped by ending one slice before it and starting the next one
 * after it; no byte is copied). The state carries over between feeds, so any split of the stream
 * into reads gives the same body.
 *
 * Only CRLF "." CRLF ends the data. Every other mix (bare LF, bare CR, LF.LF, CR.CR, LF.CRLF,
 * CRLF.LF, a NUL before the dot, ...) is data, never an end. Bare CR and bare LF (a CR not
 * followed by LF, an LF not preceded by CR) are counted in `bare_newlines`; the server rejects such
 * a message after the real terminator (SMTP smuggling, CVE-2023-51764/5/6), so nothing ambiguous
 * is ever stored or relayed.
 *
 * The body handed out ends with the CRLF that precedes the terminating ".": an empty message is an
 * empty body. The scanner does not count or limit size: the caller sums slice lengths.
 *
 * Three implementations give identical results: a scalar reference, SSE2 (the x86-64 baseline)
 * and AVX2, chosen once at run time by cpuid (data_scan_select). */
#ifndef RINGMTA_PROTO_DATA_SCAN_H
#define RINGMTA_PROTO_DATA_SCAN_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/slice.h"

/* Slices one feed may produce before it stops early (a dot-heavy body makes one per line). */
#define DATA_SCAN_SLICES_MAX 64u

enum data_scan_impl {
	DATA_SCAN_SCALAR,
	DATA_SCAN_SSE2,
	DATA_SCAN_AVX2,
};

/* private: use the functions */
struct data_scan {
	uint8_t state;          /* line start, text, after CR, after line-start dot, after ".\r" */
	bool done;              /* CRLF.CRLF seen */
	uint64_t bare_newlines; /* bare CR or bare LF seen in this body */
};

struct data_scan_out {
	struct slice slices[DATA_SCAN_SLICES_MAX];
	uint32_t count;
};

/* Resets ds for a new body: the scanner starts at the beginning of a line (the DATA command's
 * CRLF counts as the line end before the first body line). */
void data_scan_init(struct data_scan *ds);

/* Scans a prefix of `in` with the selected implementation, appending body slices to `out` (which
 * the caller resets). Returns the bytes consumed: all of `in`, or fewer when the terminator was
 * found (then data_scan_done() is true and the rest of `in` is the next command) or when `out` is
 * full (call again with the rest). Slices point into `in`, or at static storage for a CR that was
 * held back across a feed boundary. Cannot fail. */
size_t data_scan_feed(struct data_scan *ds, struct slice in, struct data_scan_out *out);

/* The same, with a chosen implementation (tests, benchmarks). impl must be supported by the CPU. */
size_t data_scan_feed_impl(enum data_scan_impl impl, struct data_scan *ds, struct slice in,
	struct data_scan_out *out);

static inline bool
data_scan_done(const struct data_scan *ds)
{
	return ds->done;
}

static inline uint64_t
data_scan_bare_newlines(const struct data_scan *ds)
{
	return ds->bare_newlines;
}

/* The best implementation this CPU supports (cpuid), and whether impl is supported. */
enum data_scan_impl data_scan_best_impl(void);
bool data_scan_impl_supported(enum data_scan_impl impl);
const char *data_scan_impl_name(enum data_scan_impl impl);
#endif
