/* proto/smtp_addr.h - paths and esmtp-params of MAIL and RCPT (RFC 5321 4.1.2, 4.1.3, 4.1.1.11).
 *
 * Pure parsing: no I/O, no allocation, owned by nobody (any shard calls it). Results are slices of
 * the input, except a quoted local part, which is decoded (quotes and backslashes removed) into a
 * buffer the caller provides, so that `"a b"@x` and `a\ b` compare as the same mailbox.
 *
 * Accepted: "<" [source route ":"] Mailbox ">", where the source route ("@a,@b:", RFC 5321 4.1.2
 * and appendix C) is checked and dropped; a local part that is a dot-string or a quoted-string; a
 * domain of letter-digit-hyphen labels or an address literal [1.2.3.4] / [IPv6:...]. UTF-8
 * (RFC 6531) in local parts and domains only with SMTP_ADDR_ALLOW_UTF8; without it a valid path
 * with non-ASCII octets is SMTP_ADDR_NEED_UTF8, so the server can answer 553 5.6.7. "<>" and
 * "<postmaster>" only when the caller allows them. Not accepted: bare addresses without brackets,
 * general address literals ("[tag:...]", none is standardized), trailing dots, comments.
 *
 * Limits: a local part of at most SMTP_ADDR_LOCAL_LEN_MAX octets, a domain of at most
 * SMTP_ADDR_DOMAIN_LEN_MAX octets with ASCII labels of at most SMTP_ADDR_LABEL_LEN_MAX. */
#ifndef RINGMTA_PROTO_SMTP_ADDR_H
#define RINGMTA_PROTO_SMTP_ADDR_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/slice.h"

/* RFC 5321 4.5.3.1.1 asks for at least 64 and for no limit where possible: SRS and VERP local
 * parts pass 64, so we take four times that. */
#define SMTP_ADDR_LOCAL_LEN_MAX  256u
#define SMTP_ADDR_DOMAIN_LEN_MAX 255u   /* RFC 5321 4.5.3.1.2 */
#define SMTP_ADDR_LABEL_LEN_MAX   63u   /* RFC 1035 2.3.4 */

enum smtp_addr_flag {
	SMTP_ADDR_ALLOW_NULL = 1u << 0,        /* "<>": the null reverse-path (MAIL) */
	SMTP_ADDR_ALLOW_POSTMASTER = 1u << 1,  /* "<postmaster>" without a domain (RCPT, 4.1.1.3) */
	SMTP_ADDR_ALLOW_UTF8 = 1u << 2,        /* RFC 6531: UTF-8 in local parts and domains */
};

enum smtp_addr_status {
	SMTP_ADDR_OK,
	SMTP_ADDR_SYNTAX,      /* not a path we accept */
	SMTP_ADDR_NEED_UTF8,   /* valid, but non-ASCII and SMTP_ADDR_ALLOW_UTF8 not given */
	SMTP_ADDR_NO_SPACE,    /* the decoded quoted local part does not fit the caller's buffer */
};

struct smtp_addr {
	struct slice path;        /* local@domain inside the input, brackets and route left out; */
	                          /* empty for "<>"; "postmaster" for "<postmaster>" */
	struct slice local_part;  /* dot-string: inside path; quoted-string: decoded in buf */
	struct slice domain;      /* inside path (an address literal keeps its brackets); */
	                          /* empty for "<>" and "<postmaster>" */
	bool quoted;              /* the local part was a quoted-string */
	bool null_path;           /* "<>" */
	bool utf8;                /* non-ASCII octets between the brackets (source route too) */
};

/* Parses the path at the start of `in` (no leading space allowed) into *out and sets *used to
 * the octets it took, up to and including ">". A quoted local part is decoded into buf (buf_cap
 * octets); the result slices borrow `in` and buf. *out and *used are set only on SMTP_ADDR_OK. */
enum smtp_addr_status smtp_addr_parse_path(struct slice in, uint32_t flags, uint8_t *buf,
	size_t buf_cap, struct smtp_addr *out, size_t *used);

/* A domain or address literal as in a path (also usable for a HELO argument). */
bool smtp_addr_domain_valid(struct slice domain, uint32_t flags);

/* One esmtp-param (RFC 5321 4.1.2): esmtp-keyword ["=" esmtp-value]. */
struct smtp_addr_param {
	struct slice keyword;
	struct slice value;       /* empty when has_value is false */
	bool has_value;
};

enum smtp_addr_param_status {
	SMTP_ADDR_PARAM_OK,       /* *out holds the next parameter */
	SMTP_ADDR_PARAM_END,      /* nothing but spaces was left */
	SMTP_ADDR_PARAM_SYNTAX,   /* not a parameter list */
};

/* Takes the next parameter off the front of *rest (spaces before it are skipped). The list that
 * follows a path must begin with a space; this function does not check that. Non-ASCII values
 * (RFC 6531 3.3) are accepted only with SMTP_ADDR_ALLOW_UTF8. */
enum smtp_addr_param_status smtp_addr_param_next(struct slice *rest, uint32_t flags,
	struct smtp_addr_param *out);

/* RFC 3461 4: xtext = *( xchar / "+" 2HEXDIG-uppercase ), xchar = "!".."~" but "+" and "=". */
bool smtp_addr_xtext_valid(struct slice s);

/* RFC 3461 4.2 ORCPT value: addr-type ";" xtext, where addr-type is an atom. With
 * SMTP_ADDR_ALLOW_UTF8 the xtext may also hold UTF-8 (RFC 6533 utf-8-addr-xtext, loosely). */
bool smtp_addr_orcpt_valid(struct slice s, uint32_t flags);

/* The length of the well-formed UTF-8 sequence (2 to 4 octets, no overlong form, no surrogate)
 * at the start of s, or 0. */
size_t smtp_addr_utf8_seq_len(struct slice s);
#endif
