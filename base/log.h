/* base/log.h - grep-able log lines: one line per event, `key=value` fields, each written whole.
 *
 * A line is "<time> event=<name> key=value ...\n", the time ISO-8601 UTC with milliseconds
 * (2024-05-01T12:34:56.789Z), queue ids as qid=<16 hex>, durations in seconds with three decimals.
 * Values that came from the network (addresses, HELO names, remote replies) are escaped so that
 * no value can end a line, add a field or forge one: every octet that is a control character,
 * a blank, DEL, non-ASCII, '"' or '\' is written as \xHH. Only a quoted value (detail="...")
 * keeps its blanks. RFC 2505 2.3 and 2.4: enough to trace each message and each refusal.
 *
 * Formatting is pure: the caller reads the clock and passes the time, and the text goes into the
 * caller's buffer (LOG_LINE_MAX is enough for every line here; a longer one is cut and ends with
 * " truncated"). log_write hands a whole line to the calling thread's sink if it installed one
 * (log_thread_sink: a shard gathers its lines and writes them through its ring, base/log_sink.h),
 * and otherwise writes it with one write(2) (main, or any thread before its shard starts). Either
 * way lines from several threads never interleave (a pipe keeps writes up to PIPE_BUF whole; a
 * file opened O_APPEND keeps each write together). log_open runs once before the shards start,
 * and again at any time to reopen. The convenience functions (log_conn_open, ...) format into a
 * stack buffer and write; nothing allocates. */
#ifndef RINGMTA_BASE_LOG_H
#define RINGMTA_BASE_LOG_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/slice.h"

#define LOG_LINE_MAX 2048u   /* octets, with the LF; at most PIPE_BUF so a pipe write is whole */
#define LOG_TIME_LEN   24u   /* "2024-05-01T12:34:56.789Z" */

/* A UTC calendar time (proleptic Gregorian), from milliseconds since 1970-01-01T00:00:00Z. */
struct log_utc {
	uint32_t year;
	uint32_t month;    /* 1..12 */
	uint32_t day;      /* 1..31 */
	uint32_t hour;
	uint32_t min;
	uint32_t sec;
	uint32_t ms;
	uint32_t wday;     /* 0 = Sunday */
};

/* Pure, thread-safe, takes no lock (unlike gmtime_r) and reads no time zone. */
void log_utc(uint64_t unix_ms, struct log_utc *out);

/* Writes the ISO-8601 time (LOG_TIME_LEN octets, then a NUL) to out[LOG_TIME_LEN + 1]. */
void log_format_time(char *out, uint64_t unix_ms);

enum log_status {
	LOG_STATUS_DELIVERED,
	LOG_STATUS_DEFERRED,
	LOG_STATUS_BOUNCED,
	LOG_STATUS_EXPIRED,
};

/* A line being built in a caller buffer; the log_line_* functions never write past cap. */
struct log_line {
	char *buf;
	size_t cap;
	size_t len;
	bool full;        /* something did not fit: the line ends with " truncated" */
	bool in_quote;
};

/* Starts "<time> event=<event>"; cap is at least LOG_LINE_MIN. */
#define LOG_LINE_MIN 128u
void log_line_begin(struct log_line *l, char *buf, size_t cap, uint64_t now_ms, const char *event);
/* " key=value" with value escaped. */
void log_line_slice(struct log_line *l, const char *key, struct slice value);
void log_line_str(struct log_line *l, const char *key, const char *value);
/* " key=<value>" with value escaped (mail addresses; the null path shows as <>). */
void log_line_path(struct log_line *l, const char *key, struct slice value);
/* " key="value"" with value escaped but its blanks kept. */
void log_line_quoted(struct log_line *l, const char *key, struct slice value);
void log_line_u64(struct log_line *l, const char *key, uint64_t value);
/* " qid=<16 upper-case hex digits>", as the 250 reply shows the queue id */
void log_line_qid(struct log_line *l, uint64_t qid);
/* " key=<seconds>.<ms>" */
void log_line_seconds(struct log_line *l, const char *key, uint64_t ms);
/* Ends the line with LF; returns its length (at most cap). */
size_t log_line_end(struct log_line *l);

/* The lines of the events; each returns the length written to buf (cap >= LOG_LINE_MIN). */
size_t log_format_conn_open(char *buf, size_t cap, uint64_t now_ms, uint32_t shard,
	const char *client, bool relay_allowed);
size_t log_format_conn_close(char *buf, size_t cap, uint64_t now_ms, uint32_t shard,
	const char *client, uint32_t messages, uint64_t duration_ms);
size_t log_format_accepted(char *buf, size_t cap, uint64_t now_ms, uint64_t qid,
	struct slice from, uint64_t size, uint32_t rcpt_count, struct slice client,
	struct slice helo);
/* dsn: the RFC 3463 status x.y.z; detail: the reason or the receiver's reply (escaped). */
size_t log_format_delivery(char *buf, size_t cap, uint64_t now_ms, uint64_t qid, struct slice to,
	enum log_status status, uint64_t delay_ms, struct slice dsn, struct slice detail);
/* err: a negative (or positive) errno, shown by name (error=ECONNRESET). */
size_t log_format_error(char *buf, size_t cap, uint64_t now_ms, const char *what, int err);

/* Sends later lines to path (opened O_WRONLY | O_APPEND | O_CREAT, mode 0640), or to stderr when
 * path is empty (a regular file there gets O_APPEND added, so that writes of several shards go
 * at its end, never over each other). Call before the shards start; called again (after log
 * rotation) it puts the new file on the same descriptor with dup3, so a concurrent writer never
 * sees it closed: a write in flight goes to the old file or to the new one. Returns 0, or -1 with
 * a message in err. */
int log_open(const char *path, char *err, size_t err_len);

/* The descriptor the lines go to: the same number from the first log_open to the exit. */
int log_fd(void);

/* Whether one write of any length reaches the log whole, at its end, untouched by other writers:
 * true for a regular file opened O_APPEND (the kernel appends each write under the file's lock);
 * otherwise (a pipe, a terminal, a socket) only writes of up to PIPE_BUF octets are safe. */
bool log_fd_appends(void);

/* Where log_write puts the calling thread's lines when set: fn(ctx, line, len) with one whole
 * line (len <= LOG_LINE_MAX, ending with LF), which fn copies before it returns. */
typedef void (*log_sink_fn)(void *ctx, const char *line, size_t len);

/* Installs fn(ctx) as the calling thread's sink; NULL goes back to the direct write. */
void log_thread_sink(log_sink_fn fn, void *ctx);

/* Gives line[0..len) (one whole line) to the thread's sink, or writes it with one write(2). A
 * failed write is dropped: there is nowhere to report it, and the daemon must not stop for it. */
void log_write(const char *line, size_t len);

/* Format and write (the time is the caller's). */
void log_conn_open(uint64_t now_ms, uint32_t shard, const char *client, bool relay_allowed);
void log_conn_close(uint64_t now_ms, uint32_t shard, const char *client, uint32_t messages,
	uint64_t duration_ms);
void log_accepted(uint64_t now_ms, uint64_t qid, struct slice from, uint64_t size,
	uint32_t rcpt_count, struct slice client, struct slice helo);
void log_delivery(uint64_t now_ms, uint64_t qid, struct slice to, enum log_status status,
	uint64_t delay_ms, struct slice dsn, struct slice detail);
void log_error(uint64_t now_ms, const char *what, int err);
#endif
