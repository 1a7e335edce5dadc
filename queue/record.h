/* queue/record.h - the spool's on-disk records: header, envelope, state records, scanning.
 *
 * I/O-free: bytes in, bytes out; the writer (queue/spool.c) and recovery (queue/recover.c) do
 * the file work. A record is a 24-byte little-endian header followed by its payload:
 *
 *   u32 magic "RMQ1" | u8 type | u8 version 1 | u16 reserved 0 | u32 payload length |
 *   u32 CRC32C | u64 queue id
 *
 * The CRC covers the header with its crc field zero, then the payload. Payloads by type:
 *   MESSAGE    the envelope (below), then the message as stored (Received: + body)
 *   DELIVERED  u32 recipient index                        recipient delivered (final)
 *   BOUNCED    u32 recipient index                        recipient failed, DSN queued (final)
 *   DEFERRED   u32 recipient index, u64 next attempt (ms) recipient to be retried
 *   EXPIRED    nothing                                    every recipient still pending is
 *                                                         bounced: the message is final
 *   BODY       octets of the body of message queue id, written while it still arrives; they
 *              count only once a PARTS record names them (an abandoned body is dead bytes)
 *   PARTS      a MESSAGE whose body begins in BODY records: the envelope, then u32 part count
 *              and per part u32 segment, u32 offset (of the BODY payload in that segment),
 *              u32 length, then the rest of the body inline; the body is the parts in order,
 *              then the inline rest. Parts are in this segment or older ones.
 *   COPY       u32 recipient count, then per recipient u8 state (0 pending, 1 delivered,
 *              2 bounced, 3 deferred) and u64 next attempt (ms), then a MESSAGE payload:
 *              a live message copied forward out of an old segment, with the state of
 *              every recipient at the moment of the copy, in one record (one CRC), so that
 *              the old segment may go whatever the state records after it say
 * The envelope (version 1; every integer little-endian):
 *   u32 envelope length (this field included) | u64 arrival (ms) | u64 declared SIZE |
 *   u8 body type | u8 smtputf8 (0/1) | u8 DSN RET | u8 0 | u32 recipient count | u32 0 |
 *   str client address | str HELO | str MAIL FROM (empty: <>) | str DSN ENVID |
 *   recipient count x (u8 NOTIFY | str path | str local part | str domain | str ORCPT)
 * where str = u16 length + bytes. The encoding is canonical: decoding then encoding again gives
 * the same bytes.
 *
 * Disk bytes are untrusted: decoding validates every length, count and flag and returns
 * -EBADMSG; nothing here asserts on them. Scanning a segment stops at the first offset where
 * no valid record starts: everything from there on is a torn tail. The writer (queue/spool.c)
 * keeps the valid records a prefix of each segment (one batch in flight; a failed batch is
 * overwritten by the next), so nothing acknowledged lies past a torn stretch. Never searching
 * beyond it also means a record hidden in a message body (a body can hold any bytes) is never
 * taken for a real one after a crash cuts the record that carries it. */
#ifndef RINGMTA_QUEUE_RECORD_H
#define RINGMTA_QUEUE_RECORD_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "base/slice.h"
#include "proto/smtp_server.h"

#define RECORD_MAGIC             0x31514d52u   /* "RMQ1" as a little-endian u32 */
#define RECORD_VERSION           1u
#define RECORD_HEADER_SIZE       24u
#define RECORD_PAYLOAD_MAX       (1u << 30)    /* CONFIG_MESSAGE_SIZE_MAX is checked against it */
#define RECORD_RCPT_MAX          1000u         /* SMTP_RCPT_COUNT_MAX, RFC 5321 4.5.3.1.8 */
#define RECORD_STR_MAX           UINT16_MAX    /* one envelope string (paths are <= 256) */
#define RECORD_BODY_TYPE_MAX     2u            /* enum smtp_body_type: none, 7BIT, 8BITMIME */
#define RECORD_DSN_RET_MAX       2u            /* enum smtp_dsn_ret: none, FULL, HDRS */
#define RECORD_NOTIFY_MASK       0x0fu         /* SMTP_DSN_NOTIFY_* bits, RFC 3461 4.1 */
#define RECORD_STATE_PAYLOAD_MAX 12u           /* DEFERRED: u32 + u64 */
#define RECORD_STATE_SIZE_MAX    (RECORD_HEADER_SIZE + RECORD_STATE_PAYLOAD_MAX)

enum record_type {
	RECORD_MESSAGE = 1,
	RECORD_DELIVERED = 2,
	RECORD_DEFERRED = 3,
	RECORD_BOUNCED = 4,
	RECORD_EXPIRED = 5,
	RECORD_COPY = 6,
	RECORD_BODY = 7,
	RECORD_PARTS = 8,
};
#define RECORD_TYPE_LAST RECORD_PARTS

#define RECORD_PART_SIZE  12u        /* u32 segment, u32 offset, u32 length */
#define RECORD_PARTS_MAX  (1u << 20) /* parts of one message (each >= 4 KiB but the last) */

#define RECORD_COPY_STATE_SIZE 9u   /* u8 state + u64 next attempt */
#define RECORD_COPY_PREFIX_MAX (4u + RECORD_RCPT_MAX * RECORD_COPY_STATE_SIZE)

/* The largest envelope the SMTP server can hand over. Each of its strings comes from one command
 * line (EHLO, MAIL, RCPT with their parameters) or is the client's address text, so none is
 * longer than SMTP_CMD_LINE_LEN_MAX; a recipient has four strings. A message of max_message_size
 * with its Received: header and this envelope, in a COPY record, must fit RECORD_PAYLOAD_MAX:
 * record.c checks CONFIG_MESSAGE_SIZE_MAX against it at compile time. */
#define RECORD_ENV_FIXED         32u   /* the envelope up to its first string */
#define RECORD_STR_MIN           2u    /* an empty string: its length alone */
#define RECORD_STR_SIZE_MAX      (RECORD_STR_MIN + SMTP_CMD_LINE_LEN_MAX)
#define RECORD_ENVELOPE_SIZE_MAX (RECORD_ENV_FIXED + 4u * RECORD_STR_SIZE_MAX \
	+ RECORD_RCPT_MAX * (1u + 4u * RECORD_STR_SIZE_MAX))
_Static_assert(SMTP_CMD_LINE_LEN_MAX <= RECORD_STR_MAX, "a command line fits an envelope string");
_Static_assert(RECORD_RCPT_MAX == SMTP_RCPT_COUNT_MAX, "every recipient fits the envelope");

/* The header as laid out on disk (little-endian); the functions encode it byte by byte, this
 * struct only pins the offsets down. */
struct record_header {
	uint32_t magic;
	uint8_t type;
	uint8_t version;
	uint16_t reserved;
	uint32_t payload_len;
	uint32_t crc;
	uint64_t queue_id;
};
_Static_assert(sizeof(struct record_header) == RECORD_HEADER_SIZE, "record header layout");
_Static_assert(offsetof(struct record_header, payload_len) == 8, "record header layout");
_Static_assert(offsetof(struct record_header, crc) == 12, "record header layout");
_Static_assert(offsetof(struct record_header, queue_id) == 16, "record header layout");
_Static_assert(RECORD_PAYLOAD_MAX <= UINT32_MAX - RECORD_HEADER_SIZE, "a record size fits u32");

struct record_rcpt {
	struct slice path;        /* local@domain as in RCPT TO */
	struct slice local_part;  /* decoded (quotes removed) */
	struct slice domain;      /* empty for <postmaster> */
	struct slice orcpt;       /* RFC 3461 4.2 ORCPT as sent, or empty */
	uint8_t notify;           /* SMTP_DSN_NOTIFY_* bits, 0: not given */
};

/* What a MESSAGE record's envelope holds, for encoding. The slices are only read. */
struct record_envelope {
	uint64_t arrival_ms;
	struct slice client_addr; /* text, e.g. "127.0.0.1" */
	struct slice helo;
	struct slice mail_from;   /* empty: the null sender <> */
	uint64_t declared_size;   /* RFC 1870 SIZE=, 0: not given */
	uint8_t body_type;        /* enum smtp_body_type */
	bool smtputf8;
	uint8_t dsn_ret;          /* enum smtp_dsn_ret */
	struct slice dsn_envid;
	uint32_t rcpt_count;      /* 1 .. RECORD_RCPT_MAX */
	const struct record_rcpt *rcpts;
};

/* A decoded envelope; every slice points into the payload it was decoded from. */
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
	/* private: a cursor over the recipients, so that reading them in order is linear */
	struct slice rcpt_area;
	uint32_t cursor_index;
	size_t cursor_off;
};

/* A record found valid by record_scan_next; payload points into the segment image. */
struct record_view {
	uint8_t type;             /* enum record_type */
	uint64_t queue_id;
	struct slice payload;
	uint64_t offset;          /* of the header in the segment */
	uint64_t size;            /* header + payload */
};

/* The payload of a state record. */
struct record_state {
	uint32_t rcpt;            /* index into the message's recipients */
	uint64_t next_attempt_ms; /* DEFERRED only, else 0 */
};

/* Fills hdr for a record of type whose payload is the count iovecs (in this order: their total
 * is the length, the CRC runs over all). The payload must not exceed RECORD_PAYLOAD_MAX. */
void record_header_encode(uint8_t hdr[RECORD_HEADER_SIZE], uint8_t type, uint64_t queue_id,
	const struct iovec *payload, uint32_t count);

/* Bytes record_envelope_encode writes for env. */
size_t record_envelope_size(const struct record_envelope *env);

/* Writes env's encoding to out; cap must be at least record_envelope_size(env) (asserted), and
 * env must be within the limits above (asserted: the SMTP server enforces them). Returns the
 * bytes written. */
size_t record_envelope_encode(const struct record_envelope *env, uint8_t *out, size_t cap);

/* The envelope's length as its first field says (not checked against anything else), from the
 * first octets of a MESSAGE payload: how much to read before decoding. Returns 0 or -EBADMSG. */
int record_envelope_length(struct slice payload, uint32_t *out);

/* Decodes the envelope at the start of a MESSAGE payload (the payload may also be just the
 * envelope: body is then empty). Checks every length, the recipient count, flags and reserved
 * bytes, and walks every recipient once. Returns 0 or -EBADMSG (*v is then unspecified). */
int record_envelope_decode(struct slice payload, struct record_envelope_view *v);

/* Recipient i of a view record_envelope_decode filled. Linear when read in order (the view keeps
 * a cursor, hence not const), from the start otherwise. Returns 0, or -EINVAL if i >= count. */
int record_envelope_rcpt(struct record_envelope_view *v, uint32_t i, struct record_rcpt *out);

/* Builds a whole state record (header + payload) of type DELIVERED, BOUNCED, DEFERRED (uses
 * next_attempt_ms) or EXPIRED (uses neither rcpt nor next_attempt_ms) into out. Returns its
 * size. */
uint32_t record_state_encode(uint8_t out[RECORD_STATE_SIZE_MAX], uint8_t type, uint64_t queue_id,
	uint32_t rcpt, uint64_t next_attempt_ms);

/* Reads the payload of a state record r (any type but MESSAGE). Returns 0, or -EBADMSG if its
 * length is not the one of its type. */
int record_state_decode(const struct record_view *r, struct record_state *out);

/* One part of a PARTS record's body: a BODY payload somewhere in the spool. */
struct record_part {
	uint32_t segment;
	uint32_t offset;          /* of the BODY payload (its record's offset + the header) */
	uint32_t len;
};

/* Octets of a PARTS table (count and entries) for n parts. */
static inline uint32_t
record_parts_size(uint32_t n)
{
	return 4u + n * RECORD_PART_SIZE;
}

/* Writes a PARTS table of n parts to out (record_parts_size(n) octets). */
void record_parts_encode(uint8_t *out, const struct record_part *parts, uint32_t n);

/* Splits what follows the envelope of a PARTS payload into the table of parts and the inline
 * rest of the body, checking the count, that no part is empty, and that every part lies in
 * segment `segment` (the record's) or an older one, before offset `offset` (the record's) if in
 * the same segment. Returns 0 or -EBADMSG. */
int record_parts_decode(struct slice after_envelope, uint32_t segment, uint64_t offset,
	uint32_t *count, struct slice *table, struct slice *rest);

/* Part i of a table record_parts_decode accepted. */
struct record_part record_parts_get(struct slice table, uint32_t i);

/* A recipient's state in a COPY record. */
struct record_copy_rcpt {
	uint8_t state;            /* 0 pending, 1 delivered, 2 bounced, 3 deferred */
	uint64_t next_attempt_ms; /* deferred only, else 0 */
};

/* Octets of a COPY record's prefix (count and states) for rcpt_count recipients. */
static inline uint32_t
record_copy_prefix_size(uint32_t rcpt_count)
{
	return 4u + rcpt_count * RECORD_COPY_STATE_SIZE;
}

/* Writes the prefix of a COPY record: rcpt_count (1 .. RECORD_RCPT_MAX) and the states. Returns
 * its size. */
uint32_t record_copy_prefix_encode(uint8_t *out, uint32_t rcpt_count,
	const struct record_copy_rcpt *rcpts);

/* Splits a COPY payload into its recipient states and the MESSAGE payload after them, checking
 * the count and every state. Returns 0 or -EBADMSG. */
int record_copy_decode(struct slice payload, uint32_t *rcpt_count, struct slice *states,
	struct slice *message);

/* State i of a prefix record_copy_decode accepted. */
struct record_copy_rcpt record_copy_state(struct slice states, uint32_t i);

/* Reads the record at *offset of the segment image seg if it is valid (magic, version, reserved
 * 0, known type, payload inside seg, CRC): returns 1 with *out filled, *offset moved past the
 * record and *valid_end set to that same offset. Otherwise returns 0 with *offset = seg.len
 * and *skipped grown by the bytes from the old *offset to the end: the torn tail, which starts
 * at *valid_end. Never fails. */
int record_scan_next(struct slice seg, uint64_t *offset, struct record_view *out,
	uint64_t *skipped, uint64_t *valid_end);
#endif
