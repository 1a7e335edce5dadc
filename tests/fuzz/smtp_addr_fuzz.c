/* tests/fuzz/smtp_addr_fuzz.c - the path and parameter parsers on random bytes.
 *
 * Input: a control byte (flags, buffer size), then the text. Checked: results lie inside the
 * input (or the decode buffer); a parsed path parses again, rebuilt as "<path>", to the same
 * local part and domain; UTF-8 only with its flag; parameter slices stay inside the input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/smtp_addr.h"

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)
#define FUZZ_TEXT_MAX 4096u

static bool
fuzz_inside(struct slice inner, const uint8_t *base, size_t len)
{
	return inner.len == 0 || (inner.ptr >= base && inner.ptr + inner.len <= base + len);
}

static void
fuzz_params(struct slice rest, uint32_t flags)
{
	const uint8_t *base = rest.ptr;
	size_t len = rest.len;
	struct smtp_addr_param p;
	for (size_t guard = 0; guard <= len + 1; guard++) {
		enum smtp_addr_param_status st = smtp_addr_param_next(&rest, flags, &p);
		if (st != SMTP_ADDR_PARAM_OK)
			return;
		CHECK(p.keyword.len > 0);
		CHECK(fuzz_inside(p.keyword, base, len) && fuzz_inside(p.value, base, len));
		CHECK(p.has_value == (p.value.len > 0));
		(void)smtp_addr_xtext_valid(p.value);
		(void)smtp_addr_orcpt_valid(p.value, flags);
	}
	abort();   /* each parameter takes at least one octet */
}

static void
fuzz_roundtrip(const struct smtp_addr *a, uint32_t flags)
{
	static uint8_t text[FUZZ_TEXT_MAX + 2];
	static uint8_t buf[FUZZ_TEXT_MAX];
	text[0] = '<';
	if (a->path.len > 0)
		memcpy(text + 1, a->path.ptr, a->path.len);
	text[a->path.len + 1] = '>';
	struct smtp_addr b;
	size_t used;
	struct slice again = slice_make(text, a->path.len + 2);
	enum smtp_addr_status st = smtp_addr_parse_path(again, flags, buf, sizeof(buf), &b, &used);
	CHECK(st == SMTP_ADDR_OK);
	CHECK(used == a->path.len + 2);
	CHECK(slice_eq(a->local_part, b.local_part));
	CHECK(slice_eq(a->domain, b.domain));
	CHECK(a->quoted == b.quoted && a->null_path == b.null_path);
	CHECK(!b.utf8 || a->utf8);   /* a dropped source route may have held the only UTF-8 */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[FUZZ_TEXT_MAX];
	if (size < 1 || size - 1 > FUZZ_TEXT_MAX)
		return 0;
	uint32_t flags = data[0] & 7u;
	size_t cap = (data[0] & 0x80) ? (data[0] >> 3 & 15u) : sizeof(buf);
	struct slice in = slice_make(data + 1, size - 1);
	struct smtp_addr a;
	size_t used = 0;
	enum smtp_addr_status st = smtp_addr_parse_path(in, flags, buf, cap, &a, &used);
	(void)smtp_addr_domain_valid(in, flags);
	(void)smtp_addr_xtext_valid(in);
	(void)smtp_addr_orcpt_valid(in, flags);
	CHECK(smtp_addr_utf8_seq_len(in) <= 4 && smtp_addr_utf8_seq_len(in) <= in.len);
	fuzz_params(in, flags);
	if (st != SMTP_ADDR_OK)
		return 0;
	CHECK(used >= 2 && used <= in.len);
	CHECK(in.ptr[0] == '<' && in.ptr[used - 1] == '>');
	CHECK(fuzz_inside(a.path, in.ptr, used));
	CHECK(fuzz_inside(a.domain, a.path.ptr, a.path.len));
	if (a.quoted)
		CHECK(fuzz_inside(a.local_part, buf, cap));
	else
		CHECK(fuzz_inside(a.local_part, in.ptr, used));
	CHECK(!a.utf8 || (flags & SMTP_ADDR_ALLOW_UTF8));
	CHECK(!a.null_path || (flags & SMTP_ADDR_ALLOW_NULL));
	CHECK(a.null_path || a.local_part.len > 0 || a.quoted);
	CHECK(a.local_part.len <= SMTP_ADDR_LOCAL_LEN_MAX);
	CHECK(a.domain.len <= SMTP_ADDR_DOMAIN_LEN_MAX + 2 + 64);
	fuzz_params(slice_skip(in, used), flags);
	fuzz_roundtrip(&a, flags);
	return 0;
}
