/* tests/unit/data_scan_test.c - end of data and dot-unstuffing (RFC 5321 4.5.2), SMTP smuggling
 * (CVE-2023-51764/5/6), and SIMD == scalar on every input and every split. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "proto/data_scan.h"

#define BODY_MAX 65536u

struct result {
	uint8_t body[BODY_MAX];
	size_t body_len;
	size_t consumed;      /* up to and including the terminator, or everything */
	bool done;
	uint64_t bare;
};

static const uint8_t dummy[1];

/* Feeds in as the engine does: pieces of at most `piece` octets, re-offering what was not
 * consumed; `room` limits the slices each call may add (the rest of out is pre-filled). */
static void
scan(enum data_scan_impl impl, const uint8_t *in, size_t len, size_t piece, uint32_t room,
	struct result *r)
{
	struct data_scan ds;
	data_scan_init(&ds);
	memset(r, 0, sizeof(*r));
	size_t off = 0;
	for (uint32_t guard = 0; off < len && !data_scan_done(&ds); guard++) {
		cr_assert_lt(guard, 100000, "no progress");
		size_t n = len - off < piece ? len - off : piece;
		struct data_scan_out out = { .count = DATA_SCAN_SLICES_MAX - room };
		for (uint32_t k = 0; k < out.count; k++)
			out.slices[k] = slice_make(dummy, 0);
		size_t used = data_scan_feed_impl(impl, &ds, slice_make(in + off, n), &out);
		cr_assert_leq(used, n);
		for (uint32_t k = DATA_SCAN_SLICES_MAX - room; k < out.count; k++) {
			cr_assert_leq(r->body_len + out.slices[k].len, BODY_MAX);
			memcpy(r->body + r->body_len, out.slices[k].ptr, out.slices[k].len);
			r->body_len += out.slices[k].len;
		}
		off += used;
	}
	r->consumed = off;
	r->done = data_scan_done(&ds);
	r->bare = data_scan_bare_newlines(&ds);
}

static void
expect(const char *in, const char *body, size_t consumed, bool done, uint64_t bare)
{
	static const enum data_scan_impl impls[] = { DATA_SCAN_SCALAR, DATA_SCAN_SSE2,
		DATA_SCAN_AVX2 };
	size_t len = strlen(in);
	for (uint32_t k = 0; k < 3; k++) {
		if (!data_scan_impl_supported(impls[k]))
			continue;
		for (size_t piece = 1; piece <= len + 1; piece++) {
			static struct result r;
			scan(impls[k], (const uint8_t *)in, len, piece, DATA_SCAN_SLICES_MAX, &r);
			cr_assert_eq(r.body_len, strlen(body), "%s piece %zu: body length %zu",
				data_scan_impl_name(impls[k]), piece, r.body_len);
			cr_assert(memcmp(r.body, body, r.body_len) == 0, "%s piece %zu: body",
				data_scan_impl_name(impls[k]), piece);
			cr_assert_eq(r.consumed, consumed, "%s piece %zu: consumed %zu",
				data_scan_impl_name(impls[k]), piece, r.consumed);
			cr_assert_eq(r.done, done);
			cr_assert_eq(r.bare, bare, "%s piece %zu: bare %llu",
				data_scan_impl_name(impls[k]), piece, (unsigned long long)r.bare);
		}
	}
}

Test(data_scan, crlf_dot_crlf_ends_data_and_the_rest_is_not_consumed) /* RFC 5321 4.1.1.4 */
{
	expect("Subject: x\r\n\r\nbody\r\n.\r\nQUIT\r\n", "Subject: x\r\n\r\nbody\r\n", 23, true, 0);
}

Test(data_scan, empty_message_is_an_empty_body) /* the DATA line's CRLF starts the first line */
{
	expect(".\r\nNOOP\r\n", "", 3, true, 0);
}

Test(data_scan, leading_dots_are_unstuffed) /* RFC 5321 4.5.2 */
{
	expect("..a\r\n...\r\n..\r\n.b.\r\n.\r\n", ".a\r\n..\r\n.\r\nb.\r\n", 22, true, 0);
}

Test(data_scan, dot_inside_a_line_is_data)
{
	expect("a.b\r\n a .\r\n.\r\n", "a.b\r\n a .\r\n", 14, true, 0);
}

Test(data_scan, bare_lf_dot_lf_is_not_an_end) /* CVE-2023-51764: LF.LF */
{
	expect("a\n.\nb\r\n.\r\n", "a\n.\nb\r\n", 10, true, 2);
}

Test(data_scan, lf_dot_crlf_is_not_an_end) /* CVE-2023-51764: LF.CRLF */
{
	expect("a\n.\r\nb\r\n.\r\n", "a\n.\r\nb\r\n", 11, true, 1);
}

Test(data_scan, crlf_dot_lf_is_not_an_end_and_the_dot_is_unstuffed)
{
	expect("a\r\n.\nb\r\n.\r\n", "a\r\n\nb\r\n", 11, true, 1);
}

Test(data_scan, cr_dot_cr_is_not_an_end) /* CR.CR */
{
	expect("a\r.\rb\r\n.\r\n", "a\r.\rb\r\n", 10, true, 2);
}

Test(data_scan, crlf_dot_cr_x_keeps_the_held_cr)
{
	expect("a\r\n.\rx\r\n.\r\n", "a\r\n\rx\r\n", 11, true, 1);
}

Test(data_scan, nul_before_the_dot_is_data) /* "\r\n\0.\r\n" */
{
	static const char in[] = "a\r\n\0.\r\n.\r\n";
	static const char body[] = "a\r\n\0.\r\n";
	static struct result r;
	scan(DATA_SCAN_SCALAR, (const uint8_t *)in, sizeof(in) - 1, 64, DATA_SCAN_SLICES_MAX, &r);
	cr_assert_eq(r.body_len, sizeof(body) - 1);
	cr_assert(memcmp(r.body, body, r.body_len) == 0);
	cr_assert(r.done);
}

Test(data_scan, unterminated_data_is_all_consumed_and_not_done)
{
	expect("a\r\n.\r", "a\r\n", 5, false, 0);
	expect("a\r\n.", "a\r\n", 4, false, 0);
}

Test(data_scan, long_lines_are_kept) /* RFC 5321 4.5.3.1.6: 1000 is a minimum, we keep more */
{
	static char in[3100], body[3100];
	memset(in, 'x', 3000);
	memcpy(in + 3000, "\r\n.\r\n", 6);
	memcpy(body, in, 3002);
	body[3002] = '\0';
	static struct result r;
	scan(DATA_SCAN_AVX2 * data_scan_impl_supported(DATA_SCAN_AVX2), (const uint8_t *)in, 3005,
		4096, DATA_SCAN_SLICES_MAX, &r);
	cr_assert_eq(r.body_len, 3002);
	cr_assert(r.done);
}

/* Random inputs from an alphabet heavy in the bytes that matter. */
static size_t
random_input(uint8_t *buf, size_t max, uint32_t *seed)
{
	static const uint8_t alphabet[] = { '\r', '\n', '.', '.', 'a', '\0', '\r', '\n', 'b' };
	size_t len = (size_t)(rand_r(seed) % (int)max);
	for (size_t i = 0; i < len; i++)
		buf[i] = alphabet[rand_r(seed) % (int)sizeof(alphabet)];
	return len;
}

static void
compare_all(const uint8_t *in, size_t len, size_t piece, uint32_t room)
{
	static struct result ref, got;
	scan(DATA_SCAN_SCALAR, in, len, len ? len : 1, DATA_SCAN_SLICES_MAX, &ref);
	static const enum data_scan_impl impls[] = { DATA_SCAN_SCALAR, DATA_SCAN_SSE2,
		DATA_SCAN_AVX2 };
	for (uint32_t k = 0; k < 3; k++) {
		if (!data_scan_impl_supported(impls[k]))
			continue;
		scan(impls[k], in, len, piece, room, &got);
		cr_assert_eq(got.body_len, ref.body_len, "%s: body length",
			data_scan_impl_name(impls[k]));
		cr_assert(memcmp(got.body, ref.body, ref.body_len) == 0, "%s: body bytes",
			data_scan_impl_name(impls[k]));
		cr_assert_eq(got.consumed, ref.consumed);
		cr_assert_eq(got.done, ref.done);
		cr_assert_eq(got.bare, ref.bare);
	}
}

Test(data_scan, simd_equals_scalar_on_random_inputs_splits_and_capacities)
{
	static uint8_t buf[4096];
	uint32_t seed = 20261123;
	for (uint32_t round = 0; round < 3000; round++) {
		size_t len = random_input(buf, sizeof(buf), &seed);
		size_t piece = 1 + (size_t)(rand_r(&seed) % 300);
		uint32_t room = 3 + (uint32_t)(rand_r(&seed) % (DATA_SCAN_SLICES_MAX - 3));
		compare_all(buf, len, piece, room);
	}
}

Test(data_scan, simd_equals_scalar_with_terminators_straddling_lanes_and_reads)
{
	static uint8_t buf[256];
	static const char *fills[] = { "a", ".", "\r", "\n", "\r\n", ".\r\n", "\r\n." };
	for (uint32_t f = 0; f < 7; f++) {
		for (size_t at = 0; at < 140; at++) {
			size_t len = 0;
			for (; len < at; len++)
				buf[len] = (uint8_t)fills[f][len % strlen(fills[f])];
			memcpy(buf + len, "\r\n.\r\nafter", 10);
			len += 10;
			for (size_t piece = 1; piece <= 70; piece += 7)
				compare_all(buf, len, piece, DATA_SCAN_SLICES_MAX);
			compare_all(buf, len, len, 3);
		}
	}
}

Test(data_scan, all_dots_and_every_crlf_mix_agree)
{
	static uint8_t buf[1024];
	memset(buf, '.', sizeof(buf));
	compare_all(buf, sizeof(buf), 100, DATA_SCAN_SLICES_MAX);
	for (size_t i = 0; i < sizeof(buf); i++)   /* every line "." -> stuffed empty lines */
		buf[i] = "\r\n."[i % 3];
	compare_all(buf, sizeof(buf), 1000, 5);
	for (uint32_t pattern = 0; pattern < 4096; pattern++) {   /* all 12-byte CR/LF/dot mixes */
		for (uint32_t i = 0; i < 12; i++)
			buf[i] = "\r\n.x"[(pattern >> (i % 6 * 2)) & 3u];
		memcpy(buf + 12, "\r\n.\r\n", 5);
		compare_all(buf, 17, 17, DATA_SCAN_SLICES_MAX);
		compare_all(buf, 17, 3, DATA_SCAN_SLICES_MAX);
	}
}

Test(data_scan, plain_text_comes_out_as_one_slice_per_feed)
{
	static uint8_t buf[4096];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (i % 70 == 68) ? '\r' : (i % 70 == 69) ? '\n' : 'x';
	struct data_scan ds;
	data_scan_init(&ds);
	struct data_scan_out out = { .count = 0 };
	cr_assert_eq(data_scan_feed(&ds, slice_make(buf, sizeof(buf)), &out), sizeof(buf));
	cr_assert_eq(out.count, 1);
	cr_assert_eq(out.slices[0].len, sizeof(buf));
}

Test(data_scan, a_cr_ending_one_block_and_text_starting_the_next_is_a_bare_cr)
{
	static uint8_t buf[300];
	for (size_t at = 0; at < 200; at++) {
		memset(buf, 'a', sizeof(buf));
		buf[at] = '\r';
		memcpy(buf + 250, "\r\n.\r\n", 5);
		compare_all(buf, 255, 255, DATA_SCAN_SLICES_MAX);
		compare_all(buf, 255, 64, DATA_SCAN_SLICES_MAX);
		static struct result r;
		scan(data_scan_best_impl(), buf, 255, 255, DATA_SCAN_SLICES_MAX, &r);
		cr_assert_eq(r.bare, 1, "CR at %zu", at);
	}
}
