/* proto/smtp_auth.c - PLAIN and LOGIN over RFC 4954's exchange; see smtp_auth.h. */
#include "proto/smtp_auth.h"

#include <string.h>

#include "base/assert.h"

_Static_assert(SMTP_AUTH_RESPONSE_LEN_MAX / 4u * 3u >= SMTP_AUTH_DECODED_MAX,
	"the longest response line decodes to the longest PLAIN message");
_Static_assert(SMTP_AUTH_FIELD_LEN_MAX <= UINT16_MAX, "field lengths fit 16 bits");

#define SMTP_AUTH_B64_BAD 0xffu

static const struct slice smtp_auth_reply_syntax =
	SLICE_LIT("501 5.5.4 Syntax: AUTH mechanism [initial-response]");
static const struct slice smtp_auth_reply_mech =
	SLICE_LIT("504 5.5.4 Error: unrecognized authentication type");
static const struct slice smtp_auth_reply_base64 =
	SLICE_LIT("501 5.5.2 Error: cannot base64-decode the response");
static const struct slice smtp_auth_reply_plain =
	SLICE_LIT("501 5.5.2 Error: malformed PLAIN response");
static const struct slice smtp_auth_reply_login =
	SLICE_LIT("501 5.5.2 Error: malformed LOGIN response");
static const struct slice smtp_auth_reply_cancel =
	SLICE_LIT("501 5.7.0 Error: authentication cancelled");
static const struct slice smtp_auth_reply_authzid =
	SLICE_LIT("535 5.7.8 Error: authentication failed");
static const struct slice smtp_auth_challenge_plain = SLICE_LIT("334 ");
static const struct slice smtp_auth_challenge_user = SLICE_LIT("334 VXNlcm5hbWU6");
static const struct slice smtp_auth_challenge_password = SLICE_LIT("334 UGFzc3dvcmQ6");

struct slice
smtp_auth_mechanisms(void)
{
	return SLICE_LIT("PLAIN LOGIN");
}

static uint8_t
smtp_auth_b64_value(uint8_t c)
{
	if (c >= 'A' && c <= 'Z')
		return (uint8_t)(c - 'A');
	if (c >= 'a' && c <= 'z')
		return (uint8_t)(c - 'a' + 26);
	if (c >= '0' && c <= '9')
		return (uint8_t)(c - '0' + 52);
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return SMTP_AUTH_B64_BAD;
}

bool
smtp_auth_base64_decode(struct slice in, uint8_t *out, size_t cap, size_t *out_len)
{
	if (in.len % 4 != 0)
		return false;
	size_t pad = 0;
	if (in.len > 0 && in.ptr[in.len - 1] == '=')
		pad = (in.len > 1 && in.ptr[in.len - 2] == '=') ? 2 : 1;
	size_t n = in.len / 4 * 3 - pad;
	if (n > cap)
		return false;
	size_t o = 0;
	for (size_t i = 0; i < in.len; i += 4) {
		bool last = i + 4 == in.len;
		uint32_t quad = 0;
		for (size_t k = 0; k < 4; k++) {
			bool is_pad = last && k >= 4 - pad;
			uint8_t v = is_pad ? 0 : smtp_auth_b64_value(in.ptr[i + k]);
			if (v == SMTP_AUTH_B64_BAD)
				return false;   /* includes an '=' before the end */
			quad = quad << 6 | v;
		}
		uint8_t bytes[3] = { (uint8_t)(quad >> 16), (uint8_t)(quad >> 8), (uint8_t)quad };
		size_t take = last ? 3 - pad : 3;
		/* RFC 4648 3.5: the bits a padded group leaves over must be zero. */
		if (last && pad > 0 && bytes[take] != 0)
			return false;
		memcpy(out + o, bytes, take);
		o += take;
	}
	ASSERT(o == n);
	*out_len = n;
	return true;
}

/* Decodes a response into a->decoded; "=" is the empty response (RFC 4954 4). */
static bool
smtp_auth_decode(struct smtp_auth *a, struct slice b64, size_t *len)
{
	if (slice_eq(b64, SLICE_LIT("="))) {
		*len = 0;
		return true;
	}
	return smtp_auth_base64_decode(b64, a->decoded, sizeof(a->decoded), len);
}

/* RFC 4616 2: message = [authzid] UTF8NUL authcid UTF8NUL passwd, each 1..255 octets except the
 * optional authzid, no NUL inside them. */
static enum smtp_auth_status
smtp_auth_plain(struct smtp_auth *a, struct slice msg, struct slice *reply)
{
	const uint8_t *nul1 = memchr(msg.ptr, '\0', msg.len);
	const uint8_t *nul2 = nul1 != NULL
		? memchr(nul1 + 1, '\0', (size_t)(msg.ptr + msg.len - nul1 - 1)) : NULL;
	if (nul2 == NULL) {
		*reply = smtp_auth_reply_plain;
		return SMTP_AUTH_FAILED;
	}
	struct slice authzid = slice_make(msg.ptr, (size_t)(nul1 - msg.ptr));
	struct slice authcid = slice_make(nul1 + 1, (size_t)(nul2 - nul1 - 1));
	struct slice passwd = slice_make(nul2 + 1, (size_t)(msg.ptr + msg.len - nul2 - 1));
	if (authcid.len == 0 || authcid.len > SMTP_AUTH_FIELD_LEN_MAX || passwd.len == 0
		|| passwd.len > SMTP_AUTH_FIELD_LEN_MAX || authzid.len > SMTP_AUTH_FIELD_LEN_MAX
		|| memchr(passwd.ptr, '\0', passwd.len) != NULL) {
		*reply = smtp_auth_reply_plain;
		return SMTP_AUTH_FAILED;
	}
	if (authzid.len > 0 && !slice_eq(authzid, authcid)) {
		*reply = smtp_auth_reply_authzid;
		return SMTP_AUTH_DENIED;
	}
	memcpy(a->user, authcid.ptr, authcid.len);
	a->user_len = (uint16_t)authcid.len;
	memcpy(a->password, passwd.ptr, passwd.len);
	a->password_len = (uint16_t)passwd.len;
	return SMTP_AUTH_VERIFY;
}

/* One LOGIN field (user name or password): 1..255 octets, no NUL. */
static bool
smtp_auth_login_field(struct slice v, uint8_t *dst, uint16_t *dst_len)
{
	if (v.len == 0 || v.len > SMTP_AUTH_FIELD_LEN_MAX || memchr(v.ptr, '\0', v.len) != NULL)
		return false;
	memcpy(dst, v.ptr, v.len);
	*dst_len = (uint16_t)v.len;
	return true;
}

/* A decoded response for the current mechanism and step. */
static enum smtp_auth_status
smtp_auth_step(struct smtp_auth *a, struct slice msg, struct slice *reply)
{
	if (a->mech == SMTP_AUTH_MECH_PLAIN)
		return smtp_auth_plain(a, msg, reply);
	ASSERT(a->mech == SMTP_AUTH_MECH_LOGIN);
	bool ok = a->step == 1 ? smtp_auth_login_field(msg, a->user, &a->user_len)
		: smtp_auth_login_field(msg, a->password, &a->password_len);
	if (!ok) {
		*reply = smtp_auth_reply_login;
		return SMTP_AUTH_FAILED;
	}
	if (a->step == 2)
		return SMTP_AUTH_VERIFY;
	a->step = 2;
	*reply = smtp_auth_challenge_password;
	return SMTP_AUTH_CHALLENGE;
}

enum smtp_auth_status
smtp_auth_start(struct smtp_auth *a, struct slice args, struct slice *reply)
{
	ASSERT(args.len > 0);
	size_t n = 0;
	while (n < args.len && args.ptr[n] != ' ')
		n++;
	struct slice mech = slice_sub(args, 0, n);
	struct slice ir = slice_skip(args, n < args.len ? n + 1 : n);
	a->mech = SMTP_AUTH_MECH_NONE;
	a->user_len = 0;
	a->password_len = 0;
	if (memchr(ir.ptr, ' ', ir.len) != NULL || (n < args.len && ir.len == 0)) {
		*reply = smtp_auth_reply_syntax;
		return SMTP_AUTH_FAILED;
	}
	if (slice_eq_nocase(mech, SLICE_LIT("PLAIN")))
		a->mech = SMTP_AUTH_MECH_PLAIN;
	else if (slice_eq_nocase(mech, SLICE_LIT("LOGIN")))
		a->mech = SMTP_AUTH_MECH_LOGIN;
	else {
		*reply = smtp_auth_reply_mech;
		return SMTP_AUTH_FAILED;
	}
	a->step = 1;
	if (ir.len == 0) {
		*reply = a->mech == SMTP_AUTH_MECH_PLAIN ? smtp_auth_challenge_plain
			: smtp_auth_challenge_user;
		return SMTP_AUTH_CHALLENGE;
	}
	size_t len;
	if (!smtp_auth_decode(a, ir, &len)) {
		*reply = smtp_auth_reply_base64;
		return SMTP_AUTH_FAILED;
	}
	return smtp_auth_step(a, slice_make(a->decoded, len), reply);
}

enum smtp_auth_status
smtp_auth_response(struct smtp_auth *a, struct slice line, struct slice *reply)
{
	ASSERT(a->mech != SMTP_AUTH_MECH_NONE);
	if (slice_eq(line, SLICE_LIT("*"))) {   /* RFC 4954 4: the client cancels */
		*reply = smtp_auth_reply_cancel;
		return SMTP_AUTH_FAILED;
	}
	size_t len;
	if (!smtp_auth_decode(a, line, &len)) {
		*reply = smtp_auth_reply_base64;
		return SMTP_AUTH_FAILED;
	}
	return smtp_auth_step(a, slice_make(a->decoded, len), reply);
}

struct slice
smtp_auth_user(const struct smtp_auth *a)
{
	return slice_make(a->user, a->user_len);
}

struct slice
smtp_auth_password(const struct smtp_auth *a)
{
	return slice_make(a->password, a->password_len);
}

void
smtp_auth_wipe(struct smtp_auth *a)
{
	/* A volatile pointer: a plain memset of memory never read again may be optimised away. */
	volatile uint8_t *p = a->password;
	for (size_t i = 0; i < sizeof(a->password); i++)
		p[i] = 0;
	p = a->decoded;
	for (size_t i = 0; i < sizeof(a->decoded); i++)
		p[i] = 0;
	a->password_len = 0;
}
