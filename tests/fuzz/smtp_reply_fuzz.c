/* tests/fuzz/smtp_reply_fuzz.c - server bytes through the SMTP reply parser.
 *
 * Input: two seed bytes for the split sizes, then the stream. The stream is parsed twice: whole,
 * and in random pieces re-offering what was not consumed, as a client does. Checked: consumed <=
 * offered; MORE and ERROR consume nothing; a line's text is inside the input and has no LF; less
 * than a line is left when the parser waits; every reply has a code 200..599, 1..LINES_MAX
 * lines, at most TEXT_MAX octets of text with no control octet, an enhanced code of its own class
 * or none; the error is final; and both runs give the same replies, lines and error. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/smtp_reply.h"

#define FUZZ_STREAM_MAX (1u << 18)
#define FUZZ_DIGEST_SEED 2166136261u

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz_run {
	uint32_t digest;    /* FNV-1a over every reply and line, in order */
	uint32_t replies;
	uint32_t lines;
	enum smtp_reply_error error;
};

static uint8_t fuzz_buf[FUZZ_STREAM_MAX];

static void
fuzz_mix(struct fuzz_run *r, const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		r->digest = (r->digest ^ b[i]) * 16777619u;
}

static void
fuzz_check_reply(struct fuzz_run *r, const struct smtp_reply *rep)
{
	CHECK(rep->code >= 200 && rep->code <= 599);
	CHECK(rep->line_count >= 1 && rep->line_count <= SMTP_REPLY_LINES_MAX);
	CHECK(rep->text.len <= SMTP_REPLY_TEXT_MAX);
	for (size_t i = 0; i < rep->text.len; i++)
		CHECK(rep->text.ptr[i] >= 0x20 && rep->text.ptr[i] != 0x7f);
	CHECK(rep->enhanced.cls == 0 || rep->enhanced.cls == rep->code / 100);
	uint8_t e[SMTP_REPLY_ENHANCED_LEN_MAX];
	size_t elen = smtp_reply_enhanced_format(rep->enhanced, e);
	fuzz_mix(r, &rep->code, sizeof(rep->code));
	fuzz_mix(r, e, elen);
	fuzz_mix(r, rep->text.ptr, rep->text.len);
	fuzz_mix(r, &rep->truncated, 1);
	r->replies++;
}

/* Parses what it can of fuzz_buf[0 .. *len); returns false after an error. */
static bool
fuzz_pump(struct smtp_reply_parser *p, struct fuzz_run *r, size_t *len)
{
	for (;;) {
		size_t used = 7;
		struct smtp_reply_line line;
		enum smtp_reply_event ev
			= smtp_reply_feed(p, (struct slice){ fuzz_buf, *len }, &used, &line);
		if (ev == SMTP_REPLY_ERROR) {
			CHECK(used == 0);
			r->error = smtp_reply_error(p);
			CHECK(r->error != SMTP_REPLY_ERR_NONE);
			CHECK(smtp_reply_feed(p, (struct slice){ fuzz_buf, *len }, &used, &line)
				== SMTP_REPLY_ERROR && used == 0);
			return false;
		}
		if (ev == SMTP_REPLY_MORE) {
			CHECK(used == 0 && *len < SMTP_REPLY_LINE_LEN_MAX);
			return true;
		}
		CHECK(used > 0 && used <= *len);
		CHECK(line.text.ptr >= fuzz_buf
			&& line.text.ptr + line.text.len <= fuzz_buf + used);
		CHECK(memchr(line.text.ptr, '\n', line.text.len) == NULL);
		CHECK(line.last == (ev == SMTP_REPLY_DONE));
		fuzz_mix(r, line.text.ptr, line.text.len);
		fuzz_mix(r, &line.index, sizeof(line.index));
		r->lines++;
		if (ev == SMTP_REPLY_DONE) {
			struct smtp_reply rep = smtp_reply_get(p);
			CHECK(rep.line_count == line.index + 1 && rep.code == line.code);
			fuzz_check_reply(r, &rep);
		}
		memmove(fuzz_buf, fuzz_buf + used, *len - used);
		*len -= used;
	}
}

static void
fuzz_run(const uint8_t *data, size_t size, uint32_t rng, struct fuzz_run *r)
{
	struct smtp_reply_parser p;
	smtp_reply_init(&p);
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
	CHECK(whole.digest == split.digest && whole.replies == split.replies
		&& whole.lines == split.lines && whole.error == split.error);
	return 0;
}
