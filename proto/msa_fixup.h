/* proto/msa_fixup.h - what a submission server adds to a message (RFC 6409 8.2, 8.3): a
 * Message-ID: and a Date: field when the header section has none.
 *
 * I/O-free and incremental, a filter on the body as the server machine hands it out
 * (unstuffed, split anywhere): each piece in, up to MSA_FIXUP_OUT_MAX slices out, to be stored
 * in that order before the next call. The slices are the caller's own octets (no copy) except
 * for the added fields and, when a piece ends inside what may be a field name, that name's
 * octets (at most MSA_FIXUP_HOLD_MAX), which the filter keeps until the next piece decides
 * whether the line is a field. Once the header section has ended the rest of the body passes
 * through unlooked-at; the state is a fixed few hundred octets whatever the input.
 *
 * The header section (RFC 5322 2.1, 2.2) is the lines from the start up to the first empty
 * line; a line starting with a blank continues the field before it (2.2.3); a field line is a
 * name of printable ASCII but ':' (obsolete blanks before the ':' allowed, 4.5.3), then ':'.
 * A name longer than MSA_FIXUP_HOLD_MAX octets is taken as no field. The section ends:
 *  - at an empty line: the fields go just before it (they join the header section);
 *  - at a line that is not a field (the body began without an empty line, or there was no
 *    header at all): the fields go before that line, followed by the missing empty line;
 *  - at the end of the data (a message of header fields only, msa_fixup_end): the fields go at
 *    the end, after a CRLF if the last line had none (BDAT may end anywhere).
 * Lines end at LF (the server refuses bare newlines in DATA, so that is CRLF there). Names are
 * compared without regard to ASCII case (1.2.2). When neither field is missing nothing is
 * added, not even a missing empty line. */
#ifndef RINGMTA_PROTO_MSA_FIXUP_H
#define RINGMTA_PROTO_MSA_FIXUP_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/slice.h"
#include "proto/received.h"

#define MSA_FIXUP_HOLD_MAX      200u   /* octets of a field name awaiting its ':' */
#define MSA_FIXUP_HOST_MAX      255u   /* octets of the host name in a Message-ID: */
/* <YYYYMMDDhhmmss.UNIQUE@host> */
#define MSA_FIXUP_MSGID_MAX (1u + 14u + 1u + 16u + 1u + MSA_FIXUP_HOST_MAX + 1u)
/* CRLF, "Date: " date CRLF, "Message-ID: " id CRLF, CRLF */
#define MSA_FIXUP_FIELDS_MAX (2u + 6u + RECEIVED_DATE_LEN_MAX + 2u + 12u + MSA_FIXUP_MSGID_MAX \
	+ 2u + 2u)
#define MSA_FIXUP_OUT_MAX         4u   /* slices out of one call */
#define MSA_FIXUP_NAME_MAX       10u   /* octets of a name compared: "message-id" */

struct msa_fixup_out {
	struct slice parts[MSA_FIXUP_OUT_MAX];
	uint32_t count;
};

struct msa_fixup {
	/* private: use the functions */
	uint64_t now_ms;
	uint64_t queue_id;
	struct slice host;
	uint8_t state;
	bool any_field;                   /* a field was seen: a blank line start continues it */
	bool has_date;
	bool has_message_id;
	bool name_long;                   /* the name is longer than name[] */
	uint8_t name_len;                 /* octets of name[] used */
	uint8_t name[MSA_FIXUP_NAME_MAX];
	uint8_t cur;                      /* hold[cur] has the held octets */
	uint32_t held;                    /* octets in hold[cur] */
	uint32_t fields_len;
	uint8_t hold[2][MSA_FIXUP_HOLD_MAX];
	uint8_t fields[MSA_FIXUP_FIELDS_MAX];
};

/* A new message: its arrival time (CLOCK_REALTIME, ms), queue id and the host name for the
 * fields. host must stay valid while f is used. */
void msa_fixup_init(struct msa_fixup *f, uint64_t now_ms, uint64_t queue_id, struct slice host);

/* The next piece of the body: what to store in its place. */
void msa_fixup_feed(struct msa_fixup *f, struct slice data, struct msa_fixup_out *out);

/* The end of the data: what is left to store (held octets, fields). */
void msa_fixup_end(struct msa_fixup *f, struct msa_fixup_out *out);

/* True once the header section has ended: every later piece passes through as it is. */
bool msa_fixup_done(const struct msa_fixup *f);

/* Writes "<YYYYMMDDhhmmss.UNIQUE@host>" (UTC, UNIQUE as 16 hex digits, host cut at
 * MSA_FIXUP_HOST_MAX) to buf and returns its length; cap must be at least MSA_FIXUP_MSGID_MAX.
 * What `ringmta sendmail` writes as well. */
size_t msa_fixup_message_id(uint8_t *buf, size_t cap, uint64_t now_ms, uint64_t unique,
	struct slice host);
#endif
