/* proto/smtp_auth.h - the I/O-free SASL exchange of SMTP AUTH (RFC 4954): PLAIN and LOGIN.
 *
 * One per session, embedded in struct smtp_server, which decides when AUTH may run (after EHLO,
 * over TLS, outside a transaction, once) and turns the outcome into actions. This module only
 * runs the mechanism: it parses "AUTH mechanism [initial-response]", hands out the 334
 * challenges, decodes the client's base64 responses and ends with the credentials to verify,
 * or with the reply that refuses the exchange. Verifying is not done here (it is slow and needs
 * the users file): the session hands user and password out and gets the verdict back.
 *
 *   PLAIN (RFC 4616): one response, "[authzid] NUL authcid NUL passwd", as the initial response
 *     or after an empty "334 " challenge. An authzid other than the authcid is refused (535):
 *     nobody may act for another user.
 *   LOGIN (draft-murchison-sasl-login): "334 VXNlcm5hbWU6" (Username:), "334 UGFzc3dvcmQ6"
 *     (Password:); an initial response is taken as the user name.
 *
 * Replies (static text, without CRLF): 501 5.5.4 for AUTH syntax, 504 5.5.4 for an unknown
 * mechanism, 501 5.5.2 for malformed base64 or a malformed PLAIN message, 501 5.7.0 when the
 * client cancels with "*" (RFC 4954 4), 535 5.7.8 for a refused authzid.
 *
 * Base64 is RFC 4648 4, strict: the alphabet only, padding to a multiple of 4, no bits left
 * over. A response line longer than SMTP_AUTH_RESPONSE_LEN_MAX decodes to more than any valid
 * PLAIN message and is refused like malformed base64.
 *
 * The password stays in the struct until smtp_auth_wipe(); the session calls it once the
 * verdict is in. Nothing here is logged. */
#ifndef RINGMTA_PROTO_SMTP_AUTH_H
#define RINGMTA_PROTO_SMTP_AUTH_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/slice.h"

#define SMTP_AUTH_FIELD_LEN_MAX        255u  /* RFC 4616 2: authzid, authcid, passwd */
#define SMTP_AUTH_DECODED_MAX  (3u * SMTP_AUTH_FIELD_LEN_MAX + 2u)   /* the longest PLAIN */
#define SMTP_AUTH_RESPONSE_LEN_MAX ((SMTP_AUTH_DECODED_MAX + 2u) / 3u * 4u)   /* its base64 */

enum smtp_auth_status {
	SMTP_AUTH_CHALLENGE,   /* send *reply (334); the client's next line goes to smtp_auth_response */
	SMTP_AUTH_VERIFY,      /* user and password are complete: verify them */
	SMTP_AUTH_DENIED,      /* send *reply (535): counts as a failed authentication */
	SMTP_AUTH_FAILED,      /* send *reply (501, 504): a protocol error, the exchange is over */
};

enum smtp_auth_mech {
	SMTP_AUTH_MECH_NONE,
	SMTP_AUTH_MECH_PLAIN,
	SMTP_AUTH_MECH_LOGIN,
};

struct smtp_auth {
	/* private: use the functions */
	uint8_t mech;                 /* enum smtp_auth_mech */
	uint8_t step;                 /* LOGIN: 1 waits for the user name, 2 for the password */
	uint16_t user_len;
	uint16_t password_len;
	uint8_t user[SMTP_AUTH_FIELD_LEN_MAX];
	uint8_t password[SMTP_AUTH_FIELD_LEN_MAX];
	uint8_t decoded[SMTP_AUTH_DECODED_MAX];   /* a response being split; wiped with it */
};

/* The mechanism list for the EHLO keyword: "PLAIN LOGIN". Static text. */
struct slice smtp_auth_mechanisms(void);

/* Starts an exchange from the AUTH command's argument (trimmed, not empty). Returns CHALLENGE,
 * VERIFY, DENIED or FAILED; *reply is set for every status but VERIFY. */
enum smtp_auth_status smtp_auth_start(struct smtp_auth *a, struct slice args, struct slice *reply);

/* The client's response line (without CRLF) to the last challenge. Same returns. */
enum smtp_auth_status smtp_auth_response(struct smtp_auth *a, struct slice line,
	struct slice *reply);

/* After VERIFY: the authentication identity and the password; slices into a, valid until the
 * next smtp_auth_* call on it. */
struct slice smtp_auth_user(const struct smtp_auth *a);
struct slice smtp_auth_password(const struct smtp_auth *a);

/* Zeroes the password and every decoded response; the user name stays. */
void smtp_auth_wipe(struct smtp_auth *a);

/* Strict RFC 4648 base64 into out[0..cap). Returns false on a character outside the alphabet,
 * bad padding, leftover bits, or more than cap octets. */
bool smtp_auth_base64_decode(struct slice in, uint8_t *out, size_t cap, size_t *out_len);
#endif
