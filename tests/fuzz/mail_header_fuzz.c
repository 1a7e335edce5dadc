/* tests/fuzz/mail_header_fuzz.c - what a script pipes to sendmail, through the header parser.
 *
 * Input: a message. Walked field by field; checked: each field's whole, name and value lie in
 * the input, in order and without gaps (the fields tile the section), the name has no ':' or
 * blank, the value lies inside the whole; the section's end is where the walk stopped. Every
 * field's value also goes through the address-list parser: each address is 1..LEN_MAX octets,
 * the count never passes max, and a second run gives the same addresses. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/mail_header.h"

#define FUZZ_ADDRS_MAX 64u

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct mail_header_addr fuzz_a[FUZZ_ADDRS_MAX];
static struct mail_header_addr fuzz_b[FUZZ_ADDRS_MAX];

static void
fuzz_addrs(struct slice value)
{
	uint32_t na = 0, nb = 0;
	enum mail_header_addr_status sa = mail_header_addrs(value, fuzz_a, FUZZ_ADDRS_MAX, &na);
	enum mail_header_addr_status sb = mail_header_addrs(value, fuzz_b, FUZZ_ADDRS_MAX, &nb);
	CHECK(sa == sb);
	CHECK(na == nb);
	CHECK(na <= FUZZ_ADDRS_MAX);
	for (uint32_t i = 0; i < na; i++) {
		CHECK(fuzz_a[i].len > 0);
		CHECK(fuzz_a[i].len <= MAIL_HEADER_ADDR_LEN_MAX);
		CHECK(fuzz_a[i].len == fuzz_b[i].len);
		CHECK(memcmp(fuzz_a[i].text, fuzz_b[i].text, fuzz_a[i].len) == 0);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct slice msg = { .ptr = data, .len = size };
	struct mail_header_iter it;
	struct mail_header_field f;
	mail_header_iter_init(&it, msg);
	size_t at = 0;
	while (mail_header_next(&it, &f)) {
		CHECK(f.whole.ptr == data + at);
		CHECK(f.whole.len > 0);
		CHECK(at + f.whole.len <= size);
		CHECK(f.name.ptr == f.whole.ptr);
		CHECK(f.name.len > 0);
		CHECK(memchr(f.name.ptr, ':', f.name.len) == NULL);
		CHECK(memchr(f.name.ptr, ' ', f.name.len) == NULL);
		CHECK(f.value.ptr > f.name.ptr);
		CHECK(f.value.ptr + f.value.len <= f.whole.ptr + f.whole.len);
		at += f.whole.len;
		fuzz_addrs(f.value);
	}
	size_t end = mail_header_end(&it);
	CHECK(end >= at);
	CHECK(end <= size);
	CHECK(end == at || mail_header_ended_blank(&it));
	CHECK(!mail_header_next(&it, &f));
	return 0;
}
