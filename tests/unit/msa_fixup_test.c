/* tests/unit/msa_fixup_test.c - Date: and Message-ID: added on submission (RFC 6409 8.2, 8.3). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "proto/msa_fixup.h"

#define NOW_MS 1714566896000ull   /* Wed, 1 May 2024 12:34:56 +0000 */
#define QID 0x6632356000000002ull
#define DATE "Date: Wed, 1 May 2024 12:34:56 +0000\r\n"
#define MSGID "Message-ID: <20240501123456.6632356000000002@mx.example.com>\r\n"

static char out[8192];
static size_t out_len;

static void
take(const struct msa_fixup_out *o)
{
	for (uint32_t i = 0; i < o->count; i++) {
		cr_assert(o->parts[i].len > 0, "no empty slice out");
		cr_assert(out_len + o->parts[i].len <= sizeof(out));
		memcpy(out + out_len, o->parts[i].ptr, o->parts[i].len);
		out_len += o->parts[i].len;
	}
}

/* The message through the filter in pieces cut at the given offsets (ascending, ending with
 * the length); the result in out. Each piece is a copy overwritten after its call, as a
 * receive buffer that is reused. */
static void
run_cut(const char *msg, const size_t *cuts, size_t ncuts)
{
	struct msa_fixup f;
	struct msa_fixup_out o;
	msa_fixup_init(&f, NOW_MS, QID, slice_make("mx.example.com", 14));
	out_len = 0;
	size_t at = 0;
	static char piece[8192];
	for (size_t i = 0; i < ncuts; i++) {
		size_t len = cuts[i] - at;
		memcpy(piece, msg + at, len);
		msa_fixup_feed(&f, slice_make(piece, len), &o);
		take(&o);
		memset(piece, '#', len);   /* the buffer is reused: only what was taken counts */
		at = cuts[i];
	}
	msa_fixup_end(&f, &o);
	take(&o);
	out[out_len] = '\0';
}

/* The result of one piece, checked against every split in two and in three. */
static const char *
run(const char *msg)
{
	size_t len = strlen(msg);
	size_t one[1] = { len };
	run_cut(msg, one, 1);
	static char whole[8192];
	memcpy(whole, out, out_len + 1);
	size_t whole_len = out_len;
	for (size_t a = 0; a <= len; a++) {
		size_t two[2] = { a, len };
		run_cut(msg, two, 2);
		cr_assert(out_len == whole_len && memcmp(out, whole, whole_len) == 0,
			"cut at %zu:\n%s\nvs\n%s", a, out, whole);
		for (size_t b = a; b <= len && len < 200; b++) {
			size_t three[3] = { a, b, len };
			run_cut(msg, three, 3);
			cr_assert(out_len == whole_len && memcmp(out, whole, whole_len) == 0,
				"cut at %zu, %zu", a, b);
		}
	}
	return whole;
}

Test(msa_fixup, rfc6409_8_both_added_before_the_empty_line)
{
	cr_assert_str_eq(run("From: a@b\r\nSubject: hi\r\n\r\nbody\r\n"),
		"From: a@b\r\nSubject: hi\r\n" DATE MSGID "\r\nbody\r\n");
}

Test(msa_fixup, rfc6409_8_3_a_date_present_is_kept)
{
	cr_assert_str_eq(run("DATE: Tue, 30 Apr 2024 01:02:03 +0200\r\nSubject: x\r\n\r\nb\r\n"),
		"DATE: Tue, 30 Apr 2024 01:02:03 +0200\r\nSubject: x\r\n" MSGID "\r\nb\r\n");
}

Test(msa_fixup, rfc6409_8_2_a_message_id_present_is_kept)
{
	cr_assert_str_eq(run("message-id: <x@y>\r\n\r\nb\r\n"),
		"message-id: <x@y>\r\n" DATE "\r\nb\r\n");
}

Test(msa_fixup, both_present_the_message_is_unchanged)
{
	const char *m = "Message-ID: <x@y>\r\nDate: Tue, 30 Apr 2024 01:02:03 +0200\r\nhello\r\n";
	cr_assert_str_eq(run(m), m, "not even the missing empty line is added");
}

Test(msa_fixup, rfc5322_4_5_3_blanks_before_the_colon)
{
	cr_assert_str_eq(run("Date \t: Tue, 30 Apr 2024 01:02:03 +0200\r\n\r\n"),
		"Date \t: Tue, 30 Apr 2024 01:02:03 +0200\r\n" MSGID "\r\n");
}

Test(msa_fixup, rfc5322_2_2_3_a_folded_line_is_not_a_field)
{
	cr_assert_str_eq(run("Subject: a\r\n Date: no\r\nX-Date: no\r\nDated: no\r\n\r\n"),
		"Subject: a\r\n Date: no\r\nX-Date: no\r\nDated: no\r\n" DATE MSGID "\r\n");
}

Test(msa_fixup, a_date_in_the_body_does_not_count)
{
	cr_assert_str_eq(run("Subject: a\r\n\r\nDate: in the body\r\n"),
		"Subject: a\r\n" DATE MSGID "\r\nDate: in the body\r\n");
}

Test(msa_fixup, a_body_without_the_empty_line_gets_one)
{
	cr_assert_str_eq(run("Subject: a\r\nhello world\r\nDate: body\r\n"),
		"Subject: a\r\n" DATE MSGID "\r\nhello world\r\nDate: body\r\n");
	cr_assert_str_eq(run("Subject: a\r\n:colon first\r\n"),
		"Subject: a\r\n" DATE MSGID "\r\n:colon first\r\n");
	cr_assert_str_eq(run("Subject: a\r\nname-only\r\n"),
		"Subject: a\r\n" DATE MSGID "\r\nname-only\r\n");
}

Test(msa_fixup, no_header_at_all)
{
	cr_assert_str_eq(run("hello\r\n"), DATE MSGID "\r\nhello\r\n");
	cr_assert_str_eq(run(" indented first\r\n"), DATE MSGID "\r\n indented first\r\n",
		"a continuation with no field before it is body");
	cr_assert_str_eq(run("\r\nbody\r\n"), DATE MSGID "\r\nbody\r\n");
}

Test(msa_fixup, header_only_and_empty_messages)
{
	cr_assert_str_eq(run("Subject: a\r\n"), "Subject: a\r\n" DATE MSGID);
	cr_assert_str_eq(run(""), DATE MSGID);
	/* BDAT may end inside a line. */
	cr_assert_str_eq(run("Subject: a"), "Subject: a\r\n" DATE MSGID);
	cr_assert_str_eq(run("Subj"), DATE MSGID "\r\nSubj");
}

Test(msa_fixup, a_name_longer_than_the_hold_is_no_field)
{
	char msg[2 * MSA_FIXUP_HOLD_MAX + 64], want[sizeof(msg) + 256];
	char name[MSA_FIXUP_HOLD_MAX + 2];
	memset(name, 'X', sizeof(name) - 1);
	name[sizeof(name) - 1] = '\0';
	snprintf(msg, sizeof(msg), "Subject: a\r\n%s: v\r\n\r\n", name);
	snprintf(want, sizeof(want), "Subject: a\r\n" DATE MSGID "\r\n%s: v\r\n\r\n", name);
	cr_assert_str_eq(run(msg), want);
	/* One octet shorter: a field (the name and its ':' within the hold). */
	name[MSA_FIXUP_HOLD_MAX - 1] = '\0';
	snprintf(msg, sizeof(msg), "%s: v\r\n\r\n", name);
	snprintf(want, sizeof(want), "%s: v\r\n" DATE MSGID "\r\n", name);
	cr_assert_str_eq(run(msg), want);
}

Test(msa_fixup, after_the_header_pieces_pass_through_untouched)
{
	struct msa_fixup f;
	struct msa_fixup_out o;
	msa_fixup_init(&f, NOW_MS, QID, slice_make("h", 1));
	msa_fixup_feed(&f, slice_make("A: b\r\n\r\n", 8), &o);
	cr_assert(msa_fixup_done(&f));
	const char *body = "Date: x\r\n\r\n";
	msa_fixup_feed(&f, slice_make(body, strlen(body)), &o);
	cr_assert_eq(o.count, 1);
	cr_assert(o.parts[0].ptr == (const uint8_t *)body, "the caller's own octets: no copy");
	msa_fixup_end(&f, &o);
	cr_assert_eq(o.count, 0);
}

Test(msa_fixup, message_id_cuts_a_long_host)
{
	char host[400];
	memset(host, 'h', sizeof(host));
	uint8_t buf[MSA_FIXUP_MSGID_MAX];
	size_t n = msa_fixup_message_id(buf, sizeof(buf), NOW_MS, 1, slice_make(host, 400));
	cr_assert_eq(n, MSA_FIXUP_MSGID_MAX);
	cr_assert(memcmp(buf, "<20240501123456.0000000000000001@hhh", 36) == 0);
	cr_assert_eq(buf[n - 1], '>');
}
