/* tests/unit/smtp_auth_test.c - the AUTH mechanisms (PLAIN, LOGIN) and their base64, alone.
 *
 * The exchange inside a session (when AUTH may run, the verdicts, fed whole, byte by byte and
 * split at every offset) is tested as transcripts in smtp_server_test.c. */
#include <criterion/criterion.h>
#include <string.h>

#include "proto/smtp_auth.h"

/* A reference encoder, to build responses of any content. */
static size_t
b64(const uint8_t *in, size_t len, char *out)
{
	static const char abc[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		out[o++] = abc[v >> 18 & 63];
		out[o++] = abc[v >> 12 & 63];
		out[o++] = i + 1 < len ? abc[v >> 6 & 63] : '=';
		out[o++] = i + 2 < len ? abc[v & 63] : '=';
	}
	out[o] = '\0';
	return o;
}

static bool
decodes_to(const char *in, const char *want, size_t want_len)
{
	uint8_t out[64];
	size_t n = 99;
	if (!smtp_auth_base64_decode(slice_make(in, strlen(in)), out, sizeof(out), &n))
		return false;
	return n == want_len && memcmp(out, want, n) == 0;
}

static bool
refused(const char *in)
{
	uint8_t out[64];
	size_t n;
	return !smtp_auth_base64_decode(slice_make(in, strlen(in)), out, sizeof(out), &n);
}

Test(smtp_auth, base64_decodes_the_rfc_4648_vectors) /* RFC 4648 10 */
{
	cr_assert(decodes_to("", "", 0));
	cr_assert(decodes_to("Zg==", "f", 1));
	cr_assert(decodes_to("Zm8=", "fo", 2));
	cr_assert(decodes_to("Zm9v", "foo", 3));
	cr_assert(decodes_to("Zm9vYg==", "foob", 4));
	cr_assert(decodes_to("Zm9vYmE=", "fooba", 5));
	cr_assert(decodes_to("Zm9vYmFy", "foobar", 6));
	cr_assert(decodes_to("AP8+/w==", "\0\xff\x3e\xff", 4));
}

Test(smtp_auth, base64_is_strict) /* RFC 4648 3.3, 3.5 */
{
	cr_assert(refused("Zg"), "padding is required");
	cr_assert(refused("Zg="));
	cr_assert(refused("Zg==="));
	cr_assert(refused("Z==="));
	cr_assert(refused("===="));
	cr_assert(refused("Zm=v"), "'=' only at the end");
	cr_assert(refused("Zg==Zm9v"), "nothing after padding");
	cr_assert(refused("Zh=="), "leftover bits must be zero");
	cr_assert(refused("Zm9="));
	cr_assert(refused("Zm9v\r\n"));
	cr_assert(refused("Zm 9v"));
	cr_assert(refused("Zm9-"), "the URL-safe alphabet is another encoding");
	cr_assert(refused("Zm9_"));
	cr_assert(refused("Zm9\x80"));
}

Test(smtp_auth, base64_output_is_bounded_at_cap_and_refused_past_it)
{
	uint8_t out[3];
	size_t n;
	cr_assert(smtp_auth_base64_decode(SLICE_LIT("Zm9v"), out, 3, &n));
	cr_assert_eq(n, 3);
	cr_assert_not(smtp_auth_base64_decode(SLICE_LIT("Zm9vYg=="), out, 3, &n));
	cr_assert(smtp_auth_base64_decode(SLICE_LIT("Zm8="), out, 2, &n));
	cr_assert_not(smtp_auth_base64_decode(SLICE_LIT("Zm9v"), out, 2, &n));
}

/* Starts PLAIN with msg[0..len) as the initial response. */
static enum smtp_auth_status
plain_ir(struct smtp_auth *a, const uint8_t *msg, size_t len, struct slice *reply)
{
	static char args[8 + 2 * SMTP_AUTH_RESPONSE_LEN_MAX];
	memcpy(args, "PLAIN ", 6);
	size_t n = b64(msg, len, args + 6);
	return smtp_auth_start(a, slice_make(args, 6 + n), reply);
}

Test(smtp_auth, plain_fields_at_255_octets_pass_and_at_256_fail) /* RFC 4616 2 */
{
	static uint8_t msg[3 * 257];
	struct smtp_auth a;
	struct slice reply;
	size_t n = 0;
	msg[n++] = 0;
	memset(msg + n, 'u', 255);
	n += 255;
	msg[n++] = 0;
	memset(msg + n, 'p', 255);
	n += 255;
	cr_assert_eq(plain_ir(&a, msg, n, &reply), SMTP_AUTH_VERIFY);
	cr_assert_eq(smtp_auth_user(&a).len, 255);
	cr_assert_eq(smtp_auth_password(&a).len, 255);
	msg[n++] = 'p';
	cr_assert_eq(plain_ir(&a, msg, n, &reply), SMTP_AUTH_FAILED, "a 256-octet password");
	cr_assert(slice_starts_with(reply, SLICE_LIT("501 5.5.2")));
	/* The longest valid message: authzid = authcid, 255 octets each, and a 255-octet password. */
	size_t m = 0;
	memset(msg, 'u', 255);
	m = 255;
	msg[m++] = 0;
	memset(msg + m, 'u', 255);
	m += 255;
	msg[m++] = 0;
	memset(msg + m, 'p', 255);
	m += 255;
	cr_assert_eq(m, SMTP_AUTH_DECODED_MAX);
	cr_assert_eq(plain_ir(&a, msg, m, &reply), SMTP_AUTH_VERIFY);
	msg[m++] = 'p';
	cr_assert_eq(plain_ir(&a, msg, m, &reply), SMTP_AUTH_FAILED, "one octet too many");
}

Test(smtp_auth, plain_messages_need_two_nuls_and_non_empty_fields) /* RFC 4616 2 */
{
	static const struct { const char *msg; size_t len; } bad[] = {
		{ "alice\0secret", 12 }, { "\0\0secret", 8 }, { "\0alice\0", 7 },
		{ "\0alice\0sec\0ret", 14 }, { "alice", 5 },
	};
	struct smtp_auth a;
	struct slice reply;
	for (size_t i = 0; i < ARRAY_LEN(bad); i++) {
		cr_assert_eq(plain_ir(&a, (const uint8_t *)bad[i].msg, bad[i].len, &reply),
			SMTP_AUTH_FAILED, "message %zu", i);
		cr_assert(slice_eq(reply, SLICE_LIT("501 5.5.2 Error: malformed PLAIN response")));
	}
	cr_assert_eq(smtp_auth_start(&a, SLICE_LIT("PLAIN ="), &reply), SMTP_AUTH_FAILED,
		"\"=\" is the empty response, which is no PLAIN message");
}

Test(smtp_auth, an_authzid_other_than_the_user_is_denied) /* RFC 4616 2 */
{
	struct smtp_auth a;
	struct slice reply;
	cr_assert_eq(plain_ir(&a, (const uint8_t *)"bob\0alice\0secret", 16, &reply),
		SMTP_AUTH_DENIED);
	cr_assert(slice_starts_with(reply, SLICE_LIT("535 5.7.8")));
	cr_assert_eq(plain_ir(&a, (const uint8_t *)"alice\0alice\0secret", 18, &reply),
		SMTP_AUTH_VERIFY);
	cr_assert(slice_eq(smtp_auth_user(&a), SLICE_LIT("alice")));
	cr_assert(slice_eq(smtp_auth_password(&a), SLICE_LIT("secret")));
}

Test(smtp_auth, plain_without_initial_response_and_cancel) /* RFC 4954 4 */
{
	struct smtp_auth a;
	struct slice reply;
	cr_assert_eq(smtp_auth_start(&a, SLICE_LIT("plain"), &reply), SMTP_AUTH_CHALLENGE);
	cr_assert(slice_eq(reply, SLICE_LIT("334 ")));
	cr_assert_eq(smtp_auth_response(&a, SLICE_LIT("AGFsaWNlAHNlY3JldA=="), &reply),
		SMTP_AUTH_VERIFY);
	cr_assert(slice_eq(smtp_auth_password(&a), SLICE_LIT("secret")));
	cr_assert_eq(smtp_auth_start(&a, SLICE_LIT("PLAIN"), &reply), SMTP_AUTH_CHALLENGE);
	cr_assert_eq(smtp_auth_response(&a, SLICE_LIT("*"), &reply), SMTP_AUTH_FAILED);
	cr_assert(slice_starts_with(reply, SLICE_LIT("501 5.7.0")));
	cr_assert_eq(smtp_auth_start(&a, SLICE_LIT("PLAIN"), &reply), SMTP_AUTH_CHALLENGE);
	cr_assert_eq(smtp_auth_response(&a, SLICE_LIT("AGFsaWNlAHNlY3JldA"), &reply),
		SMTP_AUTH_FAILED);
	cr_assert(slice_starts_with(reply, SLICE_LIT("501 5.5.2")));
}

Test(smtp_auth, login_asks_for_user_then_password) /* draft-murchison-sasl-login */
{
	struct smtp_auth a;
	struct slice reply;
	cr_assert_eq(smtp_auth_start(&a, SLICE_LIT("LOGIN"), &reply), SMTP_AUTH_CHALLENGE);
	cr_assert(slice_eq(reply, SLICE_LIT("334 VXNlcm5hbWU6")));
	cr_assert_eq(smtp_auth_response(&a, SLICE_LIT("YWxpY2U="), &reply), SMTP_AUTH_CHALLENGE);
	cr_assert(slice_eq(reply, SLICE_LIT("334 UGFzc3dvcmQ6")));
	cr_assert_eq(smtp_auth_response(&a, SLICE_LIT("c2VjcmV0"), &reply), SMTP_AUTH_VERIFY);
	cr_assert(slice_eq(smtp_auth_user(&a), SLICE_LIT("alice")));
	cr_assert(slice_eq(smtp_auth_password(&a), SLICE_LIT("secret")));
	smtp_auth_wipe(&a);
	cr_assert_eq(smtp_auth_password(&a).len, 0);
	cr_assert(slice_eq(smtp_auth_user(&a), SLICE_LIT("alice")), "the user name stays");
	for (size_t i = 0; i < sizeof(a.password); i++)
		cr_assert_eq(a.password[i], 0);
	/* Empty or NUL-holding fields are malformed; the initial response is the user name. */
	cr_assert_eq(smtp_auth_start(&a, SLICE_LIT("LOGIN ="), &reply), SMTP_AUTH_FAILED);
	cr_assert_eq(smtp_auth_start(&a, SLICE_LIT("LOGIN YWxpY2U="), &reply),
		SMTP_AUTH_CHALLENGE);
	cr_assert_eq(smtp_auth_response(&a, SLICE_LIT("AA=="), &reply), SMTP_AUTH_FAILED);
	cr_assert(slice_starts_with(reply, SLICE_LIT("501 5.5.2")));
}

Test(smtp_auth, unknown_mechanisms_and_bad_syntax) /* RFC 4954 4 */
{
	struct smtp_auth a;
	struct slice reply;
	cr_assert_eq(smtp_auth_start(&a, SLICE_LIT("CRAM-MD5"), &reply), SMTP_AUTH_FAILED);
	cr_assert(slice_starts_with(reply, SLICE_LIT("504 5.5.4")));
	cr_assert_eq(smtp_auth_start(&a, SLICE_LIT("PLAINX"), &reply), SMTP_AUTH_FAILED);
	cr_assert(slice_starts_with(reply, SLICE_LIT("504 5.5.4")));
	cr_assert_eq(smtp_auth_start(&a, SLICE_LIT("PLAIN a b"), &reply), SMTP_AUTH_FAILED);
	cr_assert(slice_starts_with(reply, SLICE_LIT("501 5.5.4")));
	cr_assert(slice_eq(smtp_auth_mechanisms(), SLICE_LIT("PLAIN LOGIN")));
}
