/* tests/fuzz/msa_fixup_fuzz.c - a submitted body through the MSA filter (Date:, Message-ID:).
 *
 * Input: two octets that choose two cut points, then the body. Checked: the body cut in three
 * pieces (each copied to a buffer that is wiped after its call, as a receive buffer is reused)
 * gives the same octets as the body in one piece; that output is the input with one block
 * inserted at one place; the block is at most MSA_FIXUP_FIELDS_MAX octets of nothing but
 * CRLF, a Date: line and a Message-ID: line; and no slice out is empty. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/msa_fixup.h"

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)
#define FUZZ_MAX (64u << 10)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t fuzz_out[2][FUZZ_MAX + MSA_FIXUP_FIELDS_MAX];
static uint8_t fuzz_piece[FUZZ_MAX];

static size_t
fuzz_take(const struct msa_fixup_out *o, uint8_t *out, size_t len)
{
	CHECK(o->count <= MSA_FIXUP_OUT_MAX);
	for (uint32_t i = 0; i < o->count; i++) {
		CHECK(o->parts[i].len > 0);
		CHECK(len + o->parts[i].len <= sizeof(fuzz_out[0]));
		memcpy(out + len, o->parts[i].ptr, o->parts[i].len);
		len += o->parts[i].len;
	}
	return len;
}

static size_t
fuzz_run(const uint8_t *msg, size_t len, size_t a, size_t b, uint8_t *out)
{
	struct msa_fixup f;
	struct msa_fixup_out o;
	msa_fixup_init(&f, 1714566896000ull, 0x6632356000000002ull, slice_make("mx.example", 10));
	size_t cuts[3] = { a, b, len };
	size_t at = 0, n = 0;
	for (int i = 0; i < 3; i++) {
		size_t plen = cuts[i] - at;
		memcpy(fuzz_piece, msg + at, plen);
		msa_fixup_feed(&f, slice_make(fuzz_piece, plen), &o);
		n = fuzz_take(&o, out, n);
		memset(fuzz_piece, 0xa5, plen);
		at = cuts[i];
	}
	msa_fixup_end(&f, &o);
	n = fuzz_take(&o, out, n);
	CHECK(msa_fixup_done(&f));
	return n;
}

static bool
fuzz_starts(const uint8_t *p, size_t len, const char *lit)
{
	size_t n = strlen(lit);
	return len >= n && memcmp(p, lit, n) == 0;
}

/* The block is lines "Date: ...", "Message-ID: <...>" and empty ones, each ending in CRLF. */
static bool
fuzz_block_ok(const uint8_t *p, size_t len)
{
	if (len > MSA_FIXUP_FIELDS_MAX)
		return false;
	while (len > 0) {
		const uint8_t *lf = memchr(p, '\n', len);
		if (lf == NULL || lf == p || lf[-1] != '\r')
			return false;
		size_t line = (size_t)(lf - p) + 1;
		if (line != 2 && !fuzz_starts(p, line, "Date: ") && !fuzz_starts(p, line, "Message-ID: <"))
			return false;
		p += line;
		len -= line;
	}
	return true;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2 || size - 2 > FUZZ_MAX)
		return 0;
	const uint8_t *msg = data + 2;
	size_t len = size - 2;
	size_t a = len == 0 ? 0 : data[0] % (len + 1);
	size_t b = a + (len - a == 0 ? 0 : data[1] % (len - a + 1));
	size_t whole = fuzz_run(msg, len, len, len, fuzz_out[0]);
	size_t cut = fuzz_run(msg, len, a, b, fuzz_out[1]);
	CHECK(whole == cut && memcmp(fuzz_out[0], fuzz_out[1], whole) == 0);
	CHECK(whole >= len);
	const uint8_t *out = fuzz_out[0];
	size_t add = whole - len;
	/* out must be msg[0..k], a block, msg[k..]: k no further than the common prefix, and no
	 * nearer than the common suffix allows; one k in between must give a valid block. */
	size_t pre = 0, suf = 0;
	while (pre < len && out[pre] == msg[pre])
		pre++;
	while (suf < len && out[whole - 1 - suf] == msg[len - 1 - suf])
		suf++;
	CHECK(len - suf <= pre);
	bool found = false;
	for (size_t k = len - suf; k <= pre && !found; k++)
		found = fuzz_block_ok(out + k, add);
	CHECK(found);
	return 0;
}
