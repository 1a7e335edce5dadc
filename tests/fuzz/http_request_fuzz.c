/* tests/fuzz/http_request_fuzz.c - client bytes through the HTTP request head parser.
 *
 * Input: two seed bytes for the split sizes, then the stream. The stream is parsed twice: whole,
 * and in random pieces re-offering what was not consumed, as the metrics endpoint does. Checked:
 * MORE and ERROR consume nothing; DONE consumes at most HTTP_REQUEST_HEAD_MAX octets ending in
 * CRLF CRLF, and its path lies inside them; a waiting parser holds less than a head; the error
 * is final and one of the documented statuses; both runs give the same requests and error. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/http_request.h"

#define FUZZ_STREAM_MAX (1u << 18)
#define FUZZ_DIGEST_SEED 2166136261u

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_run {
	uint32_t digest;    /* FNV-1a over every request, in order */
	uint32_t requests;
	uint16_t status;
};

static uint8_t fuzz_buf[FUZZ_STREAM_MAX];

static void
fuzz_mix(struct fuzz_run *r, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		r->digest = (r->digest ^ b[i]) * 16777619u;
}

/* Parses what it can of fuzz_buf[0 .. *len); returns false after an error. */
static bool
fuzz_pump(struct http_request_parser *p, struct fuzz_run *r, size_t *len)
{
	for (;;) {
		size_t used = 7;
		struct http_request req;
		enum http_request_result res
			= http_request_feed(p, (struct slice){ fuzz_buf, *len }, &used, &req);
		if (res == HTTP_REQUEST_ERROR) {
			CHECK(used == 0);
			r->status = http_request_status(p);
			CHECK(r->status == 400 || r->status == 414 || r->status == 431
				|| r->status == 505);
			CHECK(http_request_feed(p, (struct slice){ fuzz_buf, *len }, &used, &req)
				== HTTP_REQUEST_ERROR && used == 0);
			return false;
		}
		if (res == HTTP_REQUEST_MORE) {
			CHECK(used == 0 && *len < HTTP_REQUEST_HEAD_MAX);
			return true;
		}
		CHECK(used >= 4 && used <= *len && used <= HTTP_REQUEST_HEAD_MAX);
		CHECK(memcmp(fuzz_buf + used - 4, "\r\n\r\n", 4) == 0);
		CHECK(req.path.ptr >= fuzz_buf && req.path.ptr + req.path.len <= fuzz_buf + used);
		CHECK(req.version_minor <= 1);
		if (req.keep_alive)
			CHECK(req.version_minor == 1);
		fuzz_mix(r, req.path.ptr, req.path.len);
		fuzz_mix(r, &req.method, sizeof(req.method));
		fuzz_mix(r, &req.keep_alive, 1);
		r->requests++;
		memmove(fuzz_buf, fuzz_buf + used, *len - used);
		*len -= used;
	}
}

static void
fuzz_run(const uint8_t *data, size_t size, uint32_t rng, struct fuzz_run *r)
{
	struct http_request_parser p;
	http_request_init(&p);
	*r = (struct fuzz_run){ .digest = FUZZ_DIGEST_SEED };
	size_t pos = 0, len = 0;
	while (pos < size) {
		size_t chunk = size - pos;
		if (rng != 0) {
			rng ^= rng << 13;
			rng ^= rng >> 17;
			rng ^= rng << 5;
			chunk = 1 + (rng >> 8) % ((rng & 4) ? 8 : 300);
			if (chunk > size - pos)
				chunk = size - pos;
		}
		memcpy(fuzz_buf + len, data + pos, chunk);
		len += chunk;
		pos += chunk;
		if (!fuzz_pump(&p, r, &len))
			return;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2 || size - 2 > FUZZ_STREAM_MAX)
		return 0;
	uint32_t rng = (uint32_t)data[0] << 8 | data[1] | 0x10000u;
	struct fuzz_run whole, split;
	fuzz_run(data + 2, size - 2, 0, &whole);
	fuzz_run(data + 2, size - 2, rng, &split);
	CHECK(whole.digest == split.digest && whole.requests == split.requests
		&& whole.status == split.status);
	return 0;
}
