/* base/log.c - log line formatting, the descriptor, the direct write; see log.h. */
#include "base/log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>

#include "base/queue_id.h"

#define LOG_TRUNCATED      " truncated"
/* Kept free while building: a closing quote, the marker and the LF always fit. */
#define LOG_RESERVE        (1u + sizeof(LOG_TRUNCATED) - 1u + 1u)
#define LOG_MS_PER_DAY     86400000ull

_Static_assert(LOG_LINE_MAX <= PIPE_BUF, "a line is one atomic pipe write");
_Static_assert(LOG_LINE_MIN > LOG_TIME_LEN + LOG_RESERVE + 32u, "room for time and event");

/* Set by the first log_open before the shards start; later opens dup3 onto the same number.
 * Atomic because a reopen may run while shard threads read them (relaxed: each is one word). */
static _Atomic int log_out_fd = STDERR_FILENO;
static _Atomic bool log_out_appends;

/* Each thread's sink (log_thread_sink); none for main and the helper threads. */
static __thread log_sink_fn log_tls_sink;
static __thread void *log_tls_sink_ctx;

/* Days since 1970-01-01 to a civil date (H. Hinnant's days_from_civil, inverted). */
void
log_utc(uint64_t unix_ms, struct log_utc *out)
{
	uint64_t days = unix_ms / LOG_MS_PER_DAY;
	uint64_t in_day = unix_ms % LOG_MS_PER_DAY;
	uint64_t z = days + 719468u;               /* days since 0000-03-01 */
	uint64_t era = z / 146097u;
	uint64_t doe = z - era * 146097u;          /* day of the 400-year era, 0..146096 */
	uint64_t yoe = (doe - doe / 1460u + doe / 36524u - doe / 146096u) / 365u;
	uint64_t doy = doe - (365u * yoe + yoe / 4u - yoe / 100u);   /* from March 1st */
	uint64_t mp = (5u * doy + 2u) / 153u;
	uint32_t month = (uint32_t)(mp < 10u ? mp + 3u : mp - 9u);
	out->year = (uint32_t)(yoe + era * 400u + (month <= 2u ? 1u : 0u));
	out->month = month;
	out->day = (uint32_t)(doy - (153u * mp + 2u) / 5u + 1u);
	out->hour = (uint32_t)(in_day / 3600000u);
	out->min = (uint32_t)(in_day / 60000u % 60u);
	out->sec = (uint32_t)(in_day / 1000u % 60u);
	out->ms = (uint32_t)(in_day % 1000u);
	out->wday = (uint32_t)((days + 4u) % 7u);   /* 1970-01-01 was a Thursday */
}

void
log_format_time(char *out, uint64_t unix_ms)
{
	struct log_utc t;
	log_utc(unix_ms, &t);
	/* Years past 9999 would widen the field: clamp, the log format has four digits. */
	int n = snprintf(out, LOG_TIME_LEN + 1, "%04u-%02u-%02uT%02u:%02u:%02u.%03uZ",
		t.year > 9999u ? 9999u : t.year, t.month, t.day, t.hour, t.min, t.sec, t.ms);
	ASSERT(n == (int)LOG_TIME_LEN);
}

/* ---- the line builder ---- */

static size_t
log_line_room(const struct log_line *l)
{
	return l->full ? 0 : l->cap - LOG_RESERVE - l->len;
}

static void
log_put(struct log_line *l, const char *s, size_t n)
{
	if (n > log_line_room(l)) {
		l->full = true;
		return;
	}
	memcpy(l->buf + l->len, s, n);
	l->len += n;
}

static void
log_put_str(struct log_line *l, const char *s)
{
	log_put(l, s, strlen(s));
}

static bool
log_needs_escape(uint8_t c, bool keep_blank)
{
	if (c == ' ' && keep_blank)
		return false;
	return c <= 0x20 || c >= 0x7f || c == '"' || c == '\\';
}

/* Appends value escaped; an escape sequence is never cut in two. */
static void
log_put_escaped(struct log_line *l, struct slice value, bool keep_blank)
{
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < value.len && !l->full; i++) {
		uint8_t c = value.ptr[i];
		if (!log_needs_escape(c, keep_blank)) {
			log_put(l, (const char *)&value.ptr[i], 1);
			continue;
		}
		char esc[4] = { '\\', 'x', hex[c >> 4], hex[c & 15u] };
		log_put(l, esc, sizeof(esc));
	}
}

static void
log_put_key(struct log_line *l, const char *key)
{
	log_put(l, " ", 1);
	log_put_str(l, key);
	log_put(l, "=", 1);
}

void
log_line_begin(struct log_line *l, char *buf, size_t cap, uint64_t now_ms, const char *event)
{
	ASSERT(cap >= LOG_LINE_MIN);
	*l = (struct log_line){ .buf = buf, .cap = cap };
	char t[LOG_TIME_LEN + 1];
	log_format_time(t, now_ms);
	log_put(l, t, LOG_TIME_LEN);
	log_put_str(l, " event=");
	log_put_str(l, event);
}

void
log_line_slice(struct log_line *l, const char *key, struct slice value)
{
	log_put_key(l, key);
	log_put_escaped(l, value, false);
}

void
log_line_str(struct log_line *l, const char *key, const char *value)
{
	log_line_slice(l, key, slice_make(value, strlen(value)));
}

void
log_line_path(struct log_line *l, const char *key, struct slice value)
{
	log_put_key(l, key);
	log_put(l, "<", 1);
	log_put_escaped(l, value, false);
	log_put(l, ">", 1);
}

void
log_line_quoted(struct log_line *l, const char *key, struct slice value)
{
	log_put_key(l, key);
	log_put(l, "\"", 1);
	l->in_quote = !l->full;
	log_put_escaped(l, value, true);
	log_put(l, "\"", 1);
	if (!l->full)
		l->in_quote = false;
}

void
log_line_u64(struct log_line *l, const char *key, uint64_t value)
{
	char num[24];
	int n = snprintf(num, sizeof(num), "%" PRIu64, value);
	log_put_key(l, key);
	log_put(l, num, (size_t)n);
}

void
log_line_qid(struct log_line *l, uint64_t qid)
{
	char id[QUEUE_ID_STR_LEN + 1];
	queue_id_format(qid, id);   /* as the 250 reply shows it, so the reply's id greps */
	log_put_key(l, "qid");
	log_put(l, id, QUEUE_ID_STR_LEN);
}

void
log_line_seconds(struct log_line *l, const char *key, uint64_t ms)
{
	char num[32];
	int n = snprintf(num, sizeof(num), "%" PRIu64 ".%03u", ms / 1000u, (unsigned)(ms % 1000u));
	log_put_key(l, key);
	log_put(l, num, (size_t)n);
}

size_t
log_line_end(struct log_line *l)
{
	/* LOG_RESERVE keeps room for these whatever happened before. */
	if (l->in_quote)
		l->buf[l->len++] = '"';
	if (l->full) {
		memcpy(l->buf + l->len, LOG_TRUNCATED, sizeof(LOG_TRUNCATED) - 1);
		l->len += sizeof(LOG_TRUNCATED) - 1;
	}
	l->buf[l->len++] = '\n';
	ASSERT(l->len <= l->cap);
	return l->len;
}

/* ---- the events ---- */

size_t
log_format_conn_open(char *buf, size_t cap, uint64_t now_ms, uint32_t shard, const char *client,
	bool relay_allowed)
{
	struct log_line l;
	log_line_begin(&l, buf, cap, now_ms, "connect");
	log_line_u64(&l, "shard", shard);
	log_line_str(&l, "client", client);
	log_line_str(&l, "relay", relay_allowed ? "yes" : "no");
	return log_line_end(&l);
}

size_t
log_format_conn_close(char *buf, size_t cap, uint64_t now_ms, uint32_t shard, const char *client,
	uint32_t messages, uint64_t duration_ms)
{
	struct log_line l;
	log_line_begin(&l, buf, cap, now_ms, "disconnect");
	log_line_u64(&l, "shard", shard);
	log_line_str(&l, "client", client);
	log_line_u64(&l, "messages", messages);
	log_line_seconds(&l, "duration", duration_ms);
	return log_line_end(&l);
}

size_t
log_format_accepted(char *buf, size_t cap, uint64_t now_ms, uint64_t qid, struct slice from,
	uint64_t size, uint32_t rcpt_count, struct slice client, struct slice helo)
{
	struct log_line l;
	log_line_begin(&l, buf, cap, now_ms, "accepted");
	log_line_qid(&l, qid);
	log_line_path(&l, "from", from);
	log_line_u64(&l, "size", size);
	log_line_u64(&l, "nrcpt", rcpt_count);
	log_line_slice(&l, "client", client);
	log_line_slice(&l, "helo", helo);
	return log_line_end(&l);
}

static const char *
log_status_name(enum log_status status)
{
	switch (status) {
	case LOG_STATUS_DELIVERED:
		return "delivered";
	case LOG_STATUS_DEFERRED:
		return "deferred";
	case LOG_STATUS_BOUNCED:
		return "bounced";
	case LOG_STATUS_EXPIRED:
		return "expired";
	}
	ASSERT(!"unknown log_status");
	return "";
}

size_t
log_format_delivery(char *buf, size_t cap, uint64_t now_ms, uint64_t qid, struct slice to,
	enum log_status status, uint64_t delay_ms, struct slice dsn, struct slice detail)
{
	struct log_line l;
	log_line_begin(&l, buf, cap, now_ms, "delivery");
	log_line_qid(&l, qid);
	log_line_path(&l, "to", to);
	log_line_str(&l, "status", log_status_name(status));
	log_line_seconds(&l, "delay", delay_ms);
	log_line_slice(&l, "dsn", dsn);
	log_line_quoted(&l, "detail", detail);
	return log_line_end(&l);
}

size_t
log_format_error(char *buf, size_t cap, uint64_t now_ms, const char *what, int err)
{
	struct log_line l;
	int e = err < 0 ? -err : err;
	const char *name = strerrorname_np(e);   /* static text: safe in any thread */
	log_line_begin(&l, buf, cap, now_ms, "error");
	log_line_str(&l, "what", what);
	if (name != NULL)
		log_line_str(&l, "error", name);
	else
		log_line_u64(&l, "error", (uint64_t)e);
	return log_line_end(&l);
}

/* ---- output ---- */

/* Learns whether fd appends each write whole (see log_fd_appends); a regular file without
 * O_APPEND (stderr redirected by a shell) gets it, as positioned writes of two shards could land
 * on the same offset. */
static void
log_probe(int fd)
{
	struct stat st;
	int flags = fcntl(fd, F_GETFL);
	bool regular = fstat(fd, &st) == 0 && S_ISREG(st.st_mode);
	if (regular && flags >= 0 && (flags & O_APPEND) == 0
		&& fcntl(fd, F_SETFL, flags | O_APPEND) == 0)
		flags |= O_APPEND;
	atomic_store_explicit(&log_out_appends, regular && flags >= 0 && (flags & O_APPEND) != 0,
		memory_order_relaxed);
}

int
log_open(const char *path, char *err, size_t err_len)
{
	if (path[0] == '\0') {
		atomic_store_explicit(&log_out_fd, STDERR_FILENO, memory_order_relaxed);
		log_probe(STDERR_FILENO);
		return 0;
	}
	int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0) {
		snprintf(err, err_len, "log_file: %s: %s", path, strerror(errno));
		return -1;
	}
	int out = log_fd();
	if (out == STDERR_FILENO) {
		log_probe(fd);
		atomic_store_explicit(&log_out_fd, fd, memory_order_relaxed);
		return 0;
	}
	/* Reopening: the descriptor number other threads use stays valid throughout. */
	int rc = dup3(fd, out, O_CLOEXEC);
	int dup_errno = errno;
	close(fd);
	if (rc < 0) {
		snprintf(err, err_len, "log_file: %s: %s", path, strerror(dup_errno));
		return -1;
	}
	log_probe(out);
	return 0;
}

int
log_fd(void)
{
	return atomic_load_explicit(&log_out_fd, memory_order_relaxed);
}

bool
log_fd_appends(void)
{
	return atomic_load_explicit(&log_out_appends, memory_order_relaxed);
}

void
log_thread_sink(log_sink_fn fn, void *ctx)
{
	log_tls_sink = fn;
	log_tls_sink_ctx = ctx;
}

void
log_write(const char *line, size_t len)
{
	ASSERT(len <= LOG_LINE_MAX);
	if (log_tls_sink != NULL) {
		log_tls_sink(log_tls_sink_ctx, line, len);
		return;
	}
	ssize_t n;
	do
		n = write(log_fd(), line, len);
	while (n < 0 && errno == EINTR);
}

void
log_conn_open(uint64_t now_ms, uint32_t shard, const char *client, bool relay_allowed)
{
	char buf[LOG_LINE_MAX];
	log_write(buf, log_format_conn_open(buf, sizeof(buf), now_ms, shard, client,
		relay_allowed));
}

void
log_conn_close(uint64_t now_ms, uint32_t shard, const char *client, uint32_t messages,
	uint64_t duration_ms)
{
	char buf[LOG_LINE_MAX];
	log_write(buf, log_format_conn_close(buf, sizeof(buf), now_ms, shard, client, messages,
		duration_ms));
}

void
log_accepted(uint64_t now_ms, uint64_t qid, struct slice from, uint64_t size,
	uint32_t rcpt_count, struct slice client, struct slice helo)
{
	char buf[LOG_LINE_MAX];
	log_write(buf, log_format_accepted(buf, sizeof(buf), now_ms, qid, from, size, rcpt_count,
		client, helo));
}

void
log_delivery(uint64_t now_ms, uint64_t qid, struct slice to, enum log_status status,
	uint64_t delay_ms, struct slice dsn, struct slice detail)
{
	char buf[LOG_LINE_MAX];
	log_write(buf, log_format_delivery(buf, sizeof(buf), now_ms, qid, to, status, delay_ms,
		dsn, detail));
}

void
log_error(uint64_t now_ms, const char *what, int err)
{
	char buf[LOG_LINE_MAX];
	log_write(buf, log_format_error(buf, sizeof(buf), now_ms, what, err));
}
