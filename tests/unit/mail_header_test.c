/* tests/unit/mail_header_test.c - header fields and address lists of submitted messages. */
#include <criterion/criterion.h>
#include <string.h>

#include "proto/mail_header.h"

static struct slice
S(const char *s)
{
	return slice_make(s, strlen(s));
}

static bool
slice_is(struct slice s, const char *want)
{
	return s.len == strlen(want) && memcmp(s.ptr, want, s.len) == 0;
}

static struct mail_header_addr addrs[8];

static enum mail_header_addr_status
parse(const char *value, uint32_t *count)
{
	*count = 0;
	return mail_header_addrs(S(value), addrs, 8, count);
}

Test(mail_header, fields_with_continuations_end_at_the_empty_line)
{
	const char *msg = "To: a@b,\n c@d\r\nSubject : hi\n\nbody: not a field\n";
	struct mail_header_iter it;
	struct mail_header_field f;
	mail_header_iter_init(&it, S(msg));
	cr_assert(mail_header_next(&it, &f));
	cr_assert(slice_is(f.name, "To"));
	cr_assert(slice_is(f.value, " a@b,\n c@d"));
	cr_assert(slice_is(f.whole, "To: a@b,\n c@d\r\n"));
	cr_assert(mail_header_next(&it, &f));
	cr_assert(slice_is(f.name, "Subject"), "RFC 5322 4.5.3: blanks before the colon");
	cr_assert(mail_header_is(&f, S("subject")));
	cr_assert(!mail_header_next(&it, &f));
	cr_assert(mail_header_ended_blank(&it));
	cr_assert_eq(mail_header_end(&it), strlen("To: a@b,\n c@d\r\nSubject : hi\n\n"));
}

Test(mail_header, a_line_that_is_not_a_field_starts_the_body)
{
	const char *msg = "Subject: x\nhello world\nTo: a@b\n";
	struct mail_header_iter it;
	struct mail_header_field f;
	mail_header_iter_init(&it, S(msg));
	cr_assert(mail_header_next(&it, &f));
	cr_assert(!mail_header_next(&it, &f));
	cr_assert(!mail_header_ended_blank(&it));
	cr_assert_eq(mail_header_end(&it), strlen("Subject: x\n"));
	mail_header_iter_init(&it, S(" folded first\n"));
	cr_assert(!mail_header_next(&it, &f), "a continuation with no field is body");
	mail_header_iter_init(&it, S(": no name\n"));
	cr_assert(!mail_header_next(&it, &f));
}

Test(mail_header, address_forms_of_rfc5322_3_4)
{
	uint32_t n;
	cr_assert_eq(parse("Alice <a@b.example>, \"Bob, B.\" <b@c> (friend), plain@d", &n),
		MAIL_HEADER_ADDR_OK);
	cr_assert_eq(n, 3);
	cr_assert(slice_is(slice_make(addrs[0].text, addrs[0].len), "a@b.example"));
	cr_assert(slice_is(slice_make(addrs[1].text, addrs[1].len), "b@c"));
	cr_assert(slice_is(slice_make(addrs[2].text, addrs[2].len), "plain@d"));
	cr_assert_eq(parse("team: x@y, z@w;, undisclosed-recipients:;", &n), MAIL_HEADER_ADDR_OK);
	cr_assert_eq(n, 2, "groups: members only, empty group none");
	cr_assert_eq(parse("\"john doe\"@e (c (nested)),\r\n <@r1,@r2:u@h>", &n),
		MAIL_HEADER_ADDR_OK);
	cr_assert_eq(n, 2);
	cr_assert(slice_is(slice_make(addrs[0].text, addrs[0].len), "\"john doe\"@e"));
	cr_assert(slice_is(slice_make(addrs[1].text, addrs[1].len), "u@h"), "4.4 obs-route");
	cr_assert_eq(parse("<>, , ", &n), MAIL_HEADER_ADDR_OK);
	cr_assert_eq(n, 0);
}

Test(mail_header, unclosed_quote_comment_or_angle_is_an_error)
{
	uint32_t n;
	cr_assert_eq(parse("\"a@b", &n), MAIL_HEADER_ADDR_UNCLOSED);
	cr_assert_eq(parse("(a@b", &n), MAIL_HEADER_ADDR_UNCLOSED);
	cr_assert_eq(parse("<a@b", &n), MAIL_HEADER_ADDR_UNCLOSED);
	cr_assert_eq(parse("x <a@b", &n), MAIL_HEADER_ADDR_UNCLOSED);
}

Test(mail_header, limits_at_and_past)
{
	uint32_t n;
	char v[2 * MAIL_HEADER_ADDR_LEN_MAX];
	memset(v, 'a', MAIL_HEADER_ADDR_LEN_MAX);
	v[MAIL_HEADER_ADDR_LEN_MAX] = '\0';
	cr_assert_eq(parse(v, &n), MAIL_HEADER_ADDR_OK);
	cr_assert_eq(addrs[0].len, MAIL_HEADER_ADDR_LEN_MAX);
	memset(v, 'a', MAIL_HEADER_ADDR_LEN_MAX + 1);
	v[MAIL_HEADER_ADDR_LEN_MAX + 1] = '\0';
	cr_assert_eq(parse(v, &n), MAIL_HEADER_ADDR_TOO_LONG);
	cr_assert_eq(parse("a,b,c,d,e,f,g,h", &n), MAIL_HEADER_ADDR_OK);
	cr_assert_eq(n, 8);
	cr_assert_eq(parse("a,b,c,d,e,f,g,h,i", &n), MAIL_HEADER_ADDR_TOO_MANY);
	char deep[2 * MAIL_HEADER_COMMENT_DEPTH_MAX + 8];
	size_t k = 0;
	for (uint32_t i = 0; i < MAIL_HEADER_COMMENT_DEPTH_MAX; i++)
		deep[k++] = '(';
	for (uint32_t i = 0; i < MAIL_HEADER_COMMENT_DEPTH_MAX; i++)
		deep[k++] = ')';
	deep[k] = '\0';
	cr_assert_eq(parse(deep, &n), MAIL_HEADER_ADDR_OK);
	memmove(deep + 1, deep, k + 1);
	deep[0] = '(';
	strcat(deep, ")");
	cr_assert_eq(parse(deep, &n), MAIL_HEADER_ADDR_TOO_DEEP);
}
