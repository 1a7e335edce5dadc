/* tests/fuzz/qctl_fuzz.c - the queue control protocol: request lines (the daemon's side) and
 * answer lines and summaries (the client's side) on any bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/qctl.h"

#define CHECK(c) do { if (!(c)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct slice in = { .ptr = data, .len = size };
	struct qctl_request r;
	char err[QCTL_ERR_MAX];
	size_t used = 0;
	enum qctl_parse p = qctl_parse_request(in, &r, &used, err);
	if (p == QCTL_PARSE_OK) {
		CHECK(used >= 1 && used <= size && used <= QCTL_REQUEST_MAX);
		if (r.arg == QCTL_ARG_DOMAIN)
			CHECK(r.domain.ptr >= data && r.domain.ptr + r.domain.len <= data + used);
	} else if (p == QCTL_PARSE_MORE) {
		CHECK(size < QCTL_REQUEST_MAX);
		CHECK(memchr(data, '\n', size) == NULL);
	} else {
		CHECK(memchr(err, '\0', QCTL_ERR_MAX) != NULL);
	}
	/* Every line of the input as an answer line, and its data as a summary. */
	size_t at = 0;
	while (at < size) {
		const uint8_t *lf = memchr(data + at, '\n', size - at);
		size_t len = lf != NULL ? (size_t)(lf - (data + at)) : size - at;
		struct qctl_line l = qctl_parse_line(slice_make(data + at, len));
		if (l.kind == QCTL_LINE_HEADER)
			CHECK(l.shards >= 1 && l.shard < l.shards);
		if (l.kind == QCTL_LINE_DATA) {
			struct slice d;
			uint64_t c[QCTL_AGE_BUCKETS];
			if (qctl_parse_summary(l.text, &d, c) == 0)
				CHECK(d.len > 0 && d.ptr >= l.text.ptr);
		}
		at += len + 1;
	}
	/* Escaping never writes past the buffer and only printable ASCII. */
	char buf[256];
	struct qctl_out o = { .buf = buf, .cap = sizeof(buf) };
	qctl_out_json(&o, in);
	qctl_out_text(&o, in);
	CHECK(o.len <= o.cap);
	for (size_t i = 0; i < o.len; i++)
		CHECK(buf[i] >= 0x20 && buf[i] < 0x7f);
	return 0;
}
