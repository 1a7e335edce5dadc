/* proto/qctl.h - the queue control protocol: `ringmta queue` and the daemon's control socket.
 *
 * I/O-free. A client connects to a shard's control socket (engine/qctl), sends one request line
 * and reads the answer to the end; the connection then closes. A request is one line of at most
 * QCTL_REQUEST_MAX octets, LF or CRLF ended:
 *   list [json]          every message: id, arrival, size, sender, held, each recipient with
 *                        its state, next attempt and last reply (json: one object per message)
 *   summary              per recipient domain, the recipients not final by age (qshape's
 *                        buckets, QCTL_AGE_BUCKETS of them)
 *   flush [ID|DOMAIN]    deferred recipients due now: all, one message's, or those of one domain
 *   delete ID | hold ID | release ID | bounce ID
 * ID is QUEUE_ID_STR_LEN hex digits (an argument of that form is always an ID); DOMAIN is a
 * domain name (letters, digits, '-', '.', '_', or octets >= 0x80 for UTF-8), case-insensitive.
 * Anything else gets an error answer naming what was wrong; a line longer than
 * QCTL_REQUEST_MAX is refused without waiting for its end.
 *
 * An answer is lines (LF ended): first the header `ringmta-queue 1 shard=N shards=M` (so the
 * client knows how many shards' sockets to ask), then data lines `D <payload>`, then exactly one
 * end line: `ok <count>` (count: messages acted on, or listed) or `error <text>`. A summary's
 * data line is `D <domain> <count>...` (QCTL_AGE_BUCKETS counts); the client adds the shards'
 * counts up. Every payload is printable ASCII: octets from the network are escaped (\xHH in text,
 * \u00HH in JSON). */
#ifndef RINGMTA_PROTO_QCTL_H
#define RINGMTA_PROTO_QCTL_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/slice.h"

#define QCTL_REQUEST_MAX     512u        /* octets of a request line, its end included */
#define QCTL_DOMAIN_MAX      255u        /* RFC 1035 2.3.4 */
#define QCTL_LINE_MAX        (1u << 20)  /* an answer line (a message with 1000 recipients) */
#define QCTL_AGE_BUCKETS     10u         /* qshape: 0-5, 5-10, 10-20 ... 640-1280, 1280+ min */
#define QCTL_ERR_MAX         128u

enum qctl_verb {
	QCTL_LIST,
	QCTL_SUMMARY,
	QCTL_FLUSH,
	QCTL_DELETE,
	QCTL_HOLD,
	QCTL_RELEASE,
	QCTL_BOUNCE,
};

enum qctl_arg { QCTL_ARG_NONE, QCTL_ARG_QID, QCTL_ARG_DOMAIN };

struct qctl_request {
	enum qctl_verb verb;
	enum qctl_arg arg;
	uint64_t qid;               /* QCTL_ARG_QID */
	struct slice domain;        /* QCTL_ARG_DOMAIN: points into the input */
	bool json;                  /* list json */
};

enum qctl_parse { QCTL_PARSE_MORE, QCTL_PARSE_OK, QCTL_PARSE_ERROR };

/* Parses the request line at the start of in. OK: *req is filled (its domain borrows in) and
 * *used is the line's length with its end. MORE: no line end yet, and fewer than
 * QCTL_REQUEST_MAX octets. ERROR: err (QCTL_ERR_MAX) says why, as an answer's text. */
enum qctl_parse qctl_parse_request(struct slice in, struct qctl_request *req, size_t *used,
	char err[QCTL_ERR_MAX]);

/* The verb's name as a request spells it. */
const char *qctl_verb_name(enum qctl_verb v);

/* Which bucket of the summary a recipient queued for age_ms is in. */
uint32_t qctl_age_bucket(uint64_t age_ms);

/* The bucket's upper bound in minutes, for the table's head (UINT32_MAX: the last, open). */
uint32_t qctl_age_bucket_minutes(uint32_t bucket);

/* One line of an answer, without its LF. */
enum qctl_line_kind { QCTL_LINE_BAD, QCTL_LINE_HEADER, QCTL_LINE_DATA, QCTL_LINE_OK,
	QCTL_LINE_ERROR };

struct qctl_line {
	enum qctl_line_kind kind;
	uint32_t shard, shards;     /* HEADER: shards is 1 .. 64 */
	uint64_t count;             /* OK */
	struct slice text;          /* DATA: the payload; ERROR: the text */
};

/* Classifies an answer line (client side: the daemon's bytes are checked, not trusted). */
struct qctl_line qctl_parse_line(struct slice line);

/* A summary data payload: the domain and QCTL_AGE_BUCKETS counts. Returns 0 or -EINVAL. */
int qctl_parse_summary(struct slice payload, struct slice *domain,
	uint64_t counts[QCTL_AGE_BUCKETS]);

/* An answer being written: a bounded buffer; what does not fit sets `full` and is dropped. */
struct qctl_out {
	char *buf;
	size_t len;
	size_t cap;
	bool full;
};

void qctl_out_str(struct qctl_out *o, const char *s);
void qctl_out_u64(struct qctl_out *o, uint64_t v);
/* s with every octet outside printable ASCII, and '\', as \xHH (and ' ' too: a text token). */
void qctl_out_text(struct qctl_out *o, struct slice s);
/* s as a JSON string, quotes included: '"', '\' and octets outside printable ASCII as \u00HH. */
void qctl_out_json(struct qctl_out *o, struct slice s);
/* A wall-clock time in ms as RFC 3339 UTC, e.g. 2026-11-23T07:25:59Z. */
void qctl_out_time(struct qctl_out *o, uint64_t ms);
#endif
