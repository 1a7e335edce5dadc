/* proto/received.h - the trace header fields ringmta writes: Received: and Return-Path:.
 *
 * Received: (RFC 5321 4.4, RFC 5322 3.6.7) is prepended when a message is accepted:
 *
 *   Received: from <helo> ([<client address>])
 *   	(using <TLS protocol and cipher>)          (only over TLS)
 *   	by <myhostname> (ringmta) with <protocol> id <queue id>
 *   	for <<recipient>>;                        (only when there is exactly one recipient)
 *   	Thu, 1 Feb 2024 12:34:56 +0000
 *
 * It carries the client's IP address and the date, and the HELO name as an aid (RFC 2505 2.2.1).
 * Over TLS the protocol word says so (RFC 3848: ESMTPS, ESMTPSA) and a comment names the TLS
 * version and cipher as Postfix writes it (tls/tls_stage_describe gives the text); octets that
 * could end or escape the comment (control characters, '\\', unbalanced parentheses) become
 * '_'.
 * Mail a user of this machine handed in over the local socket (`ringmta sendmail`) has no
 * client address to show: its field names the user instead, as Postfix's pickup does:
 *
 *   Received: by <myhostname> (ringmta, from user <name>) with <protocol> id <queue id>
 *   	for <<recipient>>;
 *   	Thu, 1 Feb 2024 12:34:56 +0000
 *
 * The HELO name is the client's claim and is sanitised: any octet that a domain or an address
 * literal cannot hold becomes '_', so that a header line cannot be split or extended. Return-Path:
 * is added at final delivery (RFC 5321 4.4: the reverse path, <> for the null sender).
 *
 * Pure: the time is an argument, the text goes to the caller's buffer, nothing is allocated. */
#ifndef RINGMTA_PROTO_RECEIVED_H
#define RINGMTA_PROTO_RECEIVED_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/slice.h"

#define RECEIVED_HELO_MAX       255u   /* octets of the HELO name shown; longer is cut */
#define RECEIVED_USER_MAX        64u   /* octets of a local user's name shown; longer is cut */
#define RECEIVED_HOST_MAX       255u   /* octets of myhostname shown */
#define RECEIVED_ADDR_MAX        64u   /* octets of the client address; longer shows "unknown" */
#define RECEIVED_RCPT_MAX       256u   /* RFC 5321 4.5.3.1.3 path; longer: no "for" clause */
#define RECEIVED_TLS_MAX        160u   /* octets of the TLS comment; longer is cut */
#define RECEIVED_LEN_MAX       1280u   /* the whole Received: field, CRLFs included */
#define RECEIVED_SENDER_MAX     512u   /* a 256-octet local part (smtp_addr allows it), '@', domain */
#define RECEIVED_RETURN_PATH_MAX (sizeof("Return-Path: <>\r\n") - 1u + RECEIVED_SENDER_MAX)
#define RECEIVED_DATE_LEN_MAX    31u   /* "Thu, 31 Dec 9999 23:59:59 +0000" */

struct received_info {
	struct slice helo;           /* HELO/EHLO argument as sent; empty shows "unknown" */
	struct slice client_addr;    /* printable IP address, no brackets ("127.0.0.1", "::1") */
	struct slice local_user;     /* a local user's login name or uid: the local form (above) */
	struct slice myhostname;
	struct slice protocol;       /* one of received_protocol()'s words */
	struct slice tls;            /* "TLSv1.3 with cipher ..." (tls_stage_describe), or empty */
	uint64_t queue_id;           /* shown as queue_id_format does */
	struct slice for_rcpt;       /* the one recipient's path (no brackets), or empty */
	uint64_t now_ms;             /* CLOCK_REALTIME, milliseconds since the epoch */
};

/* The RFC 3848 protocol word: "SMTP" (HELO), "ESMTP", "ESMTPS" (TLS), "ESMTPA" (AUTH),
 * "ESMTPSA" (both). Static text. */
struct slice received_protocol(bool esmtp, bool tls, bool auth);

/* Writes the Received: field (see above) to buf and returns its length (<= RECEIVED_LEN_MAX);
 * cap must be at least RECEIVED_LEN_MAX. */
size_t received_format(uint8_t *buf, size_t cap, const struct received_info *info);

/* Writes the RFC 5322 3.3 date-time of unix_ms in UTC ("Wed, 1 May 2024 12:34:56 +0000"; a
 * year past 9999 shows as 9999) to buf and returns its length (<= RECEIVED_DATE_LEN_MAX); cap
 * must be at least RECEIVED_DATE_LEN_MAX. Used by every header date ringmta writes. */
size_t received_date(uint8_t *buf, size_t cap, uint64_t unix_ms);

/* Writes "Return-Path: <sender>\r\n" ("<>" for the empty, null sender) and returns its length;
 * cap must be at least RECEIVED_RETURN_PATH_MAX. Control characters in sender become '?' (the
 * parser lets none through); the server accepts no sender longer than RECEIVED_SENDER_MAX. */
size_t received_return_path(uint8_t *buf, size_t cap, struct slice sender);
#endif
