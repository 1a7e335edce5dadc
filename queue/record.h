/* queue/record.h - the spool's on-disk records: header, envelope encoding, segment scanning.
 *
 * I/O-free. A record is a 24-byte little-endian header followed by its payload:
 *   u32 magic "RMQ1" | u8 type | u8 version 1 | u16 reserved 0 | u32 payload length |
 *   u32 CRC32C (of the header with this field zero, then the payload) | u64 queue id
 * A MESSAGE payload is the envelope (it starts with its own length) followed by the message.
 * State payloads: DELIVERED and BOUNCED a u32 recipient index, DEFERRED that and a u64 next
 * attempt (ms), EXPIRED nothing.
 *
 * Disk bytes are untrusted: decoding validates every length and returns -EBADMSG, never asserts.
 * Scanning a segment skips what fails validation by searching for the next valid record, so a
 * hole left by a crash in the middle (writes cut short) hides nothing written after it. */
#ifndef RINGMTA_QUEUE_RECORD_H
#define RINGMTA_QUEUE_RECORD_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "engine/slice.h"

#define RECORD_MAGIC        0x31514d52u   /* "RMQ1" little-endian */
#define RECORD_VERSION      1u
#define RECORD_HEADER_SIZE  24u
#define RECORD_PAYLOAD_MAX  (1u << 30)

enum record_type {
	RECORD_MESSAGE = 1,
	RECORD_DELIVERED = 2,
	RECORD_DEFERRED = 3,
	RECORD_BOUNCED = 4,
	RECORD_EXPIRED = 5,
};

struct record_rcpt {
	struct slice path;        /* local@domain */
	struct slice local_part;  /* decoded (quotes removed) */
	struct slice domain;      /* empty for <postmaster> */
	struct slice orcpt;       /* RFC 3461 ORCPT as sent, or empty */
	uint8_t notify;           /* SMTP_DSN_NOTIFY_* bits */
};

struct record_envelope {
	uint64_t arrival_ms;
	struct slice client_addr;
	struct slice helo;
	struct slice mail_from;   /* empty: the null sender */
	uint64_t declared_size;
	uint8_t body_type;
	bool smtputf8;
	uint8_t dsn_ret;
	struct slice dsn_envid;
	uint32_t rcpt_count;
	const struct record_rcpt *rcpts;
};

/* A decoded envelope; slices point into the payload it was decoded from. */
struct record_envelope_view {
	uint64_t arrival_ms;
	struct slice client_addr;
	struct slice helo;
	struct slice mail_from;
	uint64_t declared_size;
	uint8_t body_type;
	bool smtputf8;
	uint8_t dsn_ret;
	struct slice dsn_envid;
	uint32_t rcpt_count;
	struct slice body;        /* the payload after the envelope */
	/* private: recipient cursor, so that reading them in order is linear */
	struct slice rcpt_area;
	uint32_t cursor_index;
	size_t cursor_off;
};

/* A validated record found by record_scan_next. */
struct record_view {
	uint8_t type;
	uint64_t queue_id;
	struct slice payload;
	uint64_t offset;          /* of the header in the segment */
	uint64_t size;            /* header + payload */
};

/* Fills hdr for a payload given as count iovecs (their total is the length; CRC over all). */
void record_header_encode(uint8_t hdr[RECORD_HEADER_SIZE], uint8_t type, uint64_t queue_id,
	const struct iovec *payload, uint32_t count);

size_t record_envelope_size(const struct record_envelope *env);
/* Writes the envelope; cap must be at least record_envelope_size(env). Returns bytes written. */
size_t record_envelope_encode(const struct record_envelope *env, uint8_t *out, size_t cap);

/* Decodes a MESSAGE payload (or just its envelope). Returns 0 or -EBADMSG. */
int record_envelope_decode(struct slice payload, struct record_envelope_view *v);
/* Recipient i, 0 <= i < v->rcpt_count. Linear when read in order. Returns 0 or -EBADMSG. */
int record_envelope_rcpt(struct record_envelope_view *v, uint32_t i, struct record_rcpt *out);

/* The u32 recipient index of a state record, or -EBADMSG. */
int record_state_rcpt(const struct record_view *r, uint32_t *rcpt);

/* From *offset on, finds the next valid record of seg: returns 1 with *out filled and *offset
 * moved past it, or 0 at the end (*offset = seg.len). *skipped grows by the bytes of invalid
 * data passed over; *valid_end is set past each valid record found. */
int record_scan_next(struct slice seg, uint64_t *offset, struct record_view *out,
	uint64_t *skipped, uint64_t *valid_end);
#endif
