/* tests/unit/log_test.c - log line formats, escaping, truncation, whole-line writes, and the
 * shard's sink: lines gathered per turn and written through a real ring, bounded, counted. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/config.h"
#include "base/log.h"
#include "base/log_sink.h"
#include "base/ring.h"

#define T0 1714566896789ull   /* 2024-05-01T12:34:56.789Z */

static char line[LOG_LINE_MAX + 1];

static struct slice
s(const char *text)
{
	return slice_make(text, strlen(text));
}

/* The line is NUL-terminated for the string asserts; len must match strlen. */
static const char *
done(size_t len)
{
	cr_assert(len <= LOG_LINE_MAX);
	line[len] = '\0';
	cr_assert_eq(strlen(line), len);
	return line;
}

static void
expect_one_line(const char *text, size_t len)
{
	cr_assert(len > 0 && text[len - 1] == '\n', "%s", text);
	for (size_t i = 0; i + 1 < len; i++) {
		unsigned char c = (unsigned char)text[i];
		cr_assert(c >= 0x20 && c < 0x7f, "octet %zu is 0x%02x in %s", i, c, text);
	}
}

/* ---- time ---- */

static const char *
fmt_time(uint64_t ms)
{
	static char out[LOG_TIME_LEN + 1];
	log_format_time(out, ms);
	return out;
}

Test(log, time_is_iso8601_utc_with_milliseconds)
{
	cr_assert_str_eq(fmt_time(0), "1970-01-01T00:00:00.000Z");
	cr_assert_str_eq(fmt_time(T0), "2024-05-01T12:34:56.789Z");
	cr_assert_str_eq(fmt_time(951782400000ull), "2000-02-29T00:00:00.000Z");
	cr_assert_str_eq(fmt_time(1709251199999ull), "2024-02-29T23:59:59.999Z");
	cr_assert_str_eq(fmt_time(4107542399999ull), "2100-02-28T23:59:59.999Z");
	cr_assert_str_eq(fmt_time(4107542400000ull), "2100-03-01T00:00:00.000Z");
	cr_assert_str_eq(fmt_time(253402300799999ull), "9999-12-31T23:59:59.999Z");
}

Test(log, utc_agrees_with_gmtime_and_gives_the_weekday)
{
	struct log_utc u;
	log_utc(0, &u);
	cr_assert_eq(u.wday, 4);   /* 1970-01-01 was a Thursday */
	uint64_t x = 88172645463325252ull;
	for (int i = 0; i < 200000; i++) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		uint64_t ms = x % 253402300800000ull;   /* up to year 9999 */
		time_t sec = (time_t)(ms / 1000u);
		struct tm tm;
		gmtime_r(&sec, &tm);
		log_utc(ms, &u);
		cr_assert_eq(u.year, (uint32_t)tm.tm_year + 1900u, "ms %llu",
			(unsigned long long)ms);
		cr_assert_eq(u.month, (uint32_t)tm.tm_mon + 1u);
		cr_assert_eq(u.day, (uint32_t)tm.tm_mday);
		cr_assert_eq(u.hour, (uint32_t)tm.tm_hour);
		cr_assert_eq(u.min, (uint32_t)tm.tm_min);
		cr_assert_eq(u.sec, (uint32_t)tm.tm_sec);
		cr_assert_eq(u.wday, (uint32_t)tm.tm_wday);
		cr_assert_eq(u.ms, (uint32_t)(ms % 1000u));
	}
}

/* ---- the events ---- */

Test(log, connection_open_and_close_lines)
{
	size_t n = log_format_conn_open(line, LOG_LINE_MAX, T0, 3, "127.0.0.1", false);
	cr_assert_str_eq(done(n), "2024-05-01T12:34:56.789Z event=connect shard=3 client=127.0.0.1 "
		"relay=no\n");
	n = log_format_conn_open(line, LOG_LINE_MAX, T0, 0, "::1", true);
	cr_assert_str_eq(done(n), "2024-05-01T12:34:56.789Z event=connect shard=0 client=::1 "
		"relay=yes\n");
	n = log_format_conn_close(line, LOG_LINE_MAX, T0, 1, "127.0.0.1", 7, 61005);
	cr_assert_str_eq(done(n), "2024-05-01T12:34:56.789Z event=disconnect shard=1 "
		"client=127.0.0.1 messages=7 duration=61.005\n");
}

Test(log, accepted_line_has_qid_sender_size_count_client_and_helo) /* RFC 2505 2.3 */
{
	size_t n = log_format_accepted(line, LOG_LINE_MAX, T0, 0x0123456789abcdefull,
		s("alice@example.com"), 1234, 2, s("127.0.0.1"), s("client.example"));
	cr_assert_str_eq(done(n), "2024-05-01T12:34:56.789Z event=accepted qid=0123456789ABCDEF "
		"from=<alice@example.com> size=1234 nrcpt=2 client=127.0.0.1 "
		"helo=client.example\n");
	n = log_format_accepted(line, LOG_LINE_MAX, T0, 255, s(""), 0, 1, s("::1"), s(""));
	cr_assert_str_eq(done(n), "2024-05-01T12:34:56.789Z event=accepted qid=00000000000000FF "
		"from=<> size=0 nrcpt=1 client=::1 helo=\n");
}

Test(log, delivery_lines_for_each_status)
{
	size_t n = log_format_delivery(line, LOG_LINE_MAX, T0, 1, s("bob@example.com"),
		LOG_STATUS_DELIVERED, 12, s("2.0.0"), s("maildir"));
	cr_assert_str_eq(done(n), "2024-05-01T12:34:56.789Z event=delivery qid=0000000000000001 "
		"to=<bob@example.com> status=delivered delay=0.012 dsn=2.0.0 detail=\"maildir\"\n");
	n = log_format_delivery(line, LOG_LINE_MAX, T0, 2, s("c@remote.example"),
		LOG_STATUS_DEFERRED, 3600000, s("4.7.1"), s("451 4.7.1 try \"later\""));
	cr_assert_str_eq(done(n), "2024-05-01T12:34:56.789Z event=delivery qid=0000000000000002 "
		"to=<c@remote.example> status=deferred delay=3600.000 dsn=4.7.1 "
		"detail=\"451 4.7.1 try \\x22later\\x22\"\n");
	n = log_format_delivery(line, LOG_LINE_MAX, T0, 3, s("d@remote.example"),
		LOG_STATUS_BOUNCED, 432000001, s("5.1.1"), s("550 5.1.1 no such user"));
	cr_assert(strstr(done(n), " status=bounced delay=432000.001 dsn=5.1.1 "
		"detail=\"550 5.1.1 no such user\"\n") != NULL, "%s", line);
}

Test(log, error_lines_name_the_errno)
{
	size_t n = log_format_error(line, LOG_LINE_MAX, T0, "accept", -ECONNRESET);
	cr_assert_str_eq(done(n), "2024-05-01T12:34:56.789Z event=error what=accept "
		"error=ECONNRESET\n");
	n = log_format_error(line, LOG_LINE_MAX, T0, "io_uring_enter", EINTR);
	cr_assert(strstr(done(n), " error=EINTR\n") != NULL, "%s", line);
	n = log_format_error(line, LOG_LINE_MAX, T0, "x", -9999);
	cr_assert(strstr(done(n), " error=9999\n") != NULL, "%s", line);
}

/* ---- escaping ---- */

Test(log, network_values_cannot_split_or_forge_a_line) /* RFC 2505 2.3 */
{
	size_t n = log_format_accepted(line, LOG_LINE_MAX, T0, 1,
		s("a@b\r\n2024-05-01T00:00:00.000Z event=accepted"), 1, 1, s("127.0.0.1"),
		s("evil\nfake relay=yes"));
	expect_one_line(line, n);
	cr_assert_str_eq(done(n), "2024-05-01T12:34:56.789Z event=accepted qid=0000000000000001 "
		"from=<a@b\\x0d\\x0a2024-05-01T00:00:00.000Z\\x20event=accepted> size=1 nrcpt=1 "
		"client=127.0.0.1 helo=evil\\x0afake\\x20relay=yes\n");
}

Test(log, control_non_ascii_quote_and_backslash_are_escaped)
{
	size_t n = log_format_accepted(line, LOG_LINE_MAX, T0, 1,
		slice_make("\"q\"\\\x00\x7f\xc3\xa9@x", 10), 1, 1, s("127.0.0.1"), s("h\tx"));
	expect_one_line(line, n);
	cr_assert(strstr(done(n), "from=<\\x22q\\x22\\x5c\\x00\\x7f\\xc3\\xa9@x> ") != NULL, "%s",
		line);
	cr_assert(strstr(line, "helo=h\\x09x\n") != NULL, "%s", line);
}

Test(log, quoted_detail_keeps_blanks_but_escapes_newlines)
{
	size_t n = log_format_delivery(line, LOG_LINE_MAX, T0, 1, s("a@b"), LOG_STATUS_DEFERRED, 0,
		s("4.0.0"), s("421 busy\r\n250 fake"));
	expect_one_line(line, n);
	cr_assert(strstr(done(n), "detail=\"421 busy\\x0d\\x0a250 fake\"\n") != NULL, "%s", line);
}

/* ---- limits ---- */

Test(log, long_values_are_cut_and_the_line_says_so)
{
	static char big[3 * LOG_LINE_MAX];
	memset(big, 'h', sizeof(big) - 1);
	size_t n = log_format_accepted(line, LOG_LINE_MAX, T0, 1, s("a@b"), 1, 1, s("127.0.0.1"),
		s(big));
	expect_one_line(line, n);
	cr_assert(n <= LOG_LINE_MAX);
	cr_assert(n > LOG_LINE_MAX - 32);
	cr_assert(strcmp(done(n) + n - 11, " truncated\n") == 0, "%s", line + n - 40);
}

Test(log, an_escape_is_never_cut_in_two)
{
	static char big[LOG_LINE_MAX];
	memset(big, '\n', sizeof(big) - 1);
	for (size_t cap = LOG_LINE_MIN; cap < LOG_LINE_MIN + 8; cap++) {
		size_t n = log_format_accepted(line, cap, T0, 1, s("a@b"), 1, 1, s("127.0.0.1"),
			s(big));
		cr_assert(n <= cap);
		expect_one_line(line, n);
		done(n);
		const char *end = line + n - 11;
		cr_assert_str_eq(end, " truncated\n");
		/* The helo value is a whole number of \x0a escapes. */
		const char *v = strstr(line, "helo=") + 5;
		cr_assert_eq((size_t)(end - v) % 4, 0, "cap %zu: %s", cap, line);
	}
}

Test(log, a_cut_quoted_value_is_closed)
{
	static char big[3 * LOG_LINE_MAX];
	memset(big, ' ', sizeof(big) - 1);
	size_t n = log_format_delivery(line, LOG_LINE_MAX, T0, 1, s("a@b"), LOG_STATUS_BOUNCED, 0,
		s("5.0.0"), s(big));
	expect_one_line(line, n);
	cr_assert(strcmp(done(n) + n - 12, "\" truncated\n") == 0, "%s", line + n - 40);
}

/* ---- output ---- */

static char log_path[64];

static void
open_temp_log(void)
{
	char err[256];
	strcpy(log_path, "/tmp/ringmta-log-XXXXXX");
	int fd = mkstemp(log_path);
	cr_assert(fd >= 0);
	close(fd);
	cr_assert_eq(log_open(log_path, err, sizeof(err)), 0, "%s", err);
}

/* The whole file, NUL-terminated, in a buffer that stays valid until the next call. */
static char *
read_all(const char *path, size_t *len)
{
	static char *buf;
	FILE *f = fopen(path, "r");
	cr_assert(f != NULL);
	fseek(f, 0, SEEK_END);
	long size = ftell(f);
	rewind(f);
	free(buf);
	buf = malloc((size_t)size + 1);
	*len = fread(buf, 1, (size_t)size, f);
	cr_assert_eq(*len, (size_t)size);
	buf[*len] = '\0';
	fclose(f);
	return buf;
}

Test(log, log_open_appends_and_reopen_moves_to_the_new_file)
{
	char err[256];
	open_temp_log();
	log_error(T0, "first", -EIO);
	char first[64];
	strcpy(first, log_path);
	open_temp_log();   /* as after a rotation */
	log_error(T0, "second", -EIO);
	size_t len;
	cr_assert_str_eq(read_all(first, &len), "2024-05-01T12:34:56.789Z event=error what=first "
		"error=EIO\n");
	cr_assert_str_eq(read_all(log_path, &len), "2024-05-01T12:34:56.789Z event=error "
		"what=second error=EIO\n");
	unlink(first);
	unlink(log_path);
	cr_assert_eq(log_open("", err, sizeof(err)), 0);
}

Test(log, log_open_failure_names_the_file)
{
	char err[256];
	cr_assert_eq(log_open("/nonexistent/dir/ringmta.log", err, sizeof(err)), -1);
	cr_assert_str_eq(err, "log_file: /nonexistent/dir/ringmta.log: No such file or directory");
}

#define WRITERS 8
#define LINES_PER_WRITER 2000

static void *
writer(void *arg)
{
	uint32_t id = (uint32_t)(uintptr_t)arg;
	static char big[1200];
	memset(big, 'x', sizeof(big) - 1);
	for (uint32_t i = 0; i < LINES_PER_WRITER; i++) {
		log_delivery(T0 + i, ((uint64_t)id << 32) | i, s("a@b"), LOG_STATUS_DELIVERED, i,
			s("2.0.0"), s(big));
	}
	return NULL;
}

Test(log, lines_from_many_threads_never_interleave)
{
	char err[256];
	open_temp_log();
	pthread_t t[WRITERS];
	for (uintptr_t i = 0; i < WRITERS; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, writer, (void *)i), 0);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(t[i], NULL);
	size_t len;
	char *text = read_all(log_path, &len);
	uint32_t count = 0;
	for (char *p = text; *p != '\0'; count++) {
		char *nl = strchr(p, '\n');
		cr_assert(nl != NULL);
		*nl = '\0';
		cr_assert(strncmp(p + LOG_TIME_LEN, " event=delivery qid=", 20) == 0, "%s", p);
		cr_assert(strcmp(nl - 2, "x\"") == 0, "line %u ends badly", count);
		p = nl + 1;
	}
	cr_assert_eq(count, WRITERS * LINES_PER_WRITER);
	unlink(log_path);
	cr_assert_eq(log_open("", err, sizeof(err)), 0);
}

/* ---- the shard's sink: lines gathered per turn, written through the ring ---- */

#define SEQ_LINES_MAX 4000u

/* A shard as the sink sees it: a ring, the loop's turns, and a clock the test moves. */
struct tloop {
	struct ring ring;
	struct log_sink *sink;
	uint64_t base_ms;           /* the sink's clock (now_ms) is base_ms + skew_ms: the test's */
	uint64_t skew_ms;
};

static void
tloop_open(struct tloop *t, uint32_t shard)
{
	memset(t, 0, sizeof(*t));
	cr_assert_eq(ring_init(&t->ring, shard, 64, 0), 0);
	cr_assert_eq(log_sink_open(&t->ring, &t->sink), 0);
	t->base_ms = t->ring.now_ms;
}

/* One loop turn as engine/shard.c runs it: wait (at most wait_ms) and route completions, move the
 * clock by advance_ms (the monotonic clock is the test's alone), run the hooks, submit. */
static void
tloop_turn(struct tloop *t, uint64_t advance_ms, uint32_t wait_ms)
{
	struct __kernel_timespec ts = { .tv_sec = 0, .tv_nsec = (long long)wait_ms * 1000000 };
	struct io_uring_cqe *cqe;
	(void)io_uring_submit_and_wait_timeout(&t->ring.uring, &cqe, wait_ms > 0 ? 1 : 0, &ts,
		NULL);
	ring_clock(&t->ring);
	t->skew_ms += advance_ms;
	t->ring.now_ms = t->base_ms + t->skew_ms;
	unsigned head, seen = 0;
	io_uring_for_each_cqe(&t->ring.uring, head, cqe) {
		ring_dispatch(&t->ring, cqe);
		seen++;
	}
	io_uring_cq_advance(&t->ring.uring, seen);
	ring_dispatch_posted(&t->ring);
	ring_turn(&t->ring);
	(void)io_uring_submit(&t->ring.uring);
}

/* Turns until every line is written (or the log fails), bounded. */
static void
tloop_flush(struct tloop *t)
{
	for (uint32_t i = 0; i < 2000; i++) {
		tloop_turn(t, LOG_SINK_LINGER_MS, 10);
		if (ring_idle(&t->ring))
			return;
	}
	cr_assert_fail("the sink did not become idle");
}

/* As the shard stops: the ring closes, then the sink. */
static void
tloop_close(struct tloop *t)
{
	cr_assert(ring_idle(&t->ring));
	ring_fini(&t->ring);
	log_sink_close(t->sink);
}

/* A delivery line that names (writer, seq) in its qid, with a detail of detail_len octets. */
static void
log_seq(uint32_t writer, uint32_t seq, size_t detail_len)
{
	static char detail[LOG_LINE_MAX];
	memset(detail, 'x', sizeof(detail));
	log_delivery(T0, ((uint64_t)writer << 32) | seq, s("a@b"), LOG_STATUS_DELIVERED, 0,
		s("2.0.0"), slice_make(detail, detail_len));
}

/* Whether p..nl is one whole log_seq line; if so, its writer and seq. */
static bool
parse_seq(const char *p, const char *nl, uint32_t *writer, uint32_t *seq)
{
	size_t len = (size_t)(nl - p);
	if (len < LOG_TIME_LEN + 40 || p[4] != '-' || p[LOG_TIME_LEN - 1] != 'Z')
		return false;
	if (strncmp(p + LOG_TIME_LEN, " event=delivery qid=", 20) != 0)
		return false;
	if (nl[-1] != '"' || (nl[-2] != 'x' && nl[-2] != '"'))
		return false;
	if (memmem(p + LOG_TIME_LEN, len - LOG_TIME_LEN, "Z event=", 8) != NULL)
		return false;   /* two lines glued together */
	char hex[17];
	memcpy(hex, p + LOG_TIME_LEN + 20, 16);
	hex[16] = '\0';
	uint64_t qid = strtoull(hex, NULL, 16);
	*writer = (uint32_t)(qid >> 32);
	*seq = (uint32_t)qid;
	return true;
}

/* The log_seq lines of text: every one whole, each writer's in increasing order; counts them per
 * writer into count[]; returns the value of the last "event=log_dropped ... lines=N" (0: none). */
static uint64_t
check_seq_lines(char *text, uint32_t writers, uint32_t *count, uint32_t *last_seq)
{
	uint64_t reported = 0;
	for (uint32_t w = 0; w < writers; w++) {
		count[w] = 0;
		last_seq[w] = UINT32_MAX;
	}
	for (char *p = text; *p != '\0';) {
		char *nl = strchr(p, '\n');
		cr_assert(nl != NULL, "the text ends inside a line");
		char *dropped = strstr(p, " event=log_dropped ");
		uint32_t w, seq;
		if (dropped != NULL && dropped < nl) {
			char *n = strstr(p, " lines=");
			cr_assert(n != NULL && n < nl);
			reported = strtoull(n + 7, NULL, 10);
		} else {
			cr_assert(parse_seq(p, nl, &w, &seq), "not a whole line: %.*s", (int)(nl - p), p);
			cr_assert(w < writers);
			if (last_seq[w] != UINT32_MAX)
				cr_assert_gt(seq, last_seq[w], "writer %u: %u after %u", w, seq,
					last_seq[w]);
			last_seq[w] = seq;
			count[w]++;
		}
		p = nl + 1;
	}
	return reported;
}

static off_t
file_size(const char *path)
{
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	return st.st_size;
}

Test(log, sink_holds_a_turns_lines_and_writes_them_in_one_write)
{
	struct tloop t;
	open_temp_log();
	tloop_open(&t, 3);
	for (uint32_t i = 0; i < 100; i++)
		log_seq(0, i, i);
	cr_assert_eq(file_size(log_path), 0, "a line left before the end of the turn");
	tloop_turn(&t, LOG_SINK_GATHER_MS, 0);
	cr_assert_eq(log_sink_stats(t.sink)->writes, 1);
	tloop_flush(&t);
	cr_assert_eq(log_sink_stats(t.sink)->writes, 1);
	size_t len;
	uint32_t count, last;
	cr_assert_eq(check_seq_lines(read_all(log_path, &len), 1, &count, &last), 0);
	cr_assert_eq(count, 100);
	cr_assert_eq(last, 99);
	tloop_close(&t);
	unlink(log_path);
}

Test(log, sink_waits_for_company_unless_enough_octets_or_stopping)
{
	struct tloop t;
	open_temp_log();
	tloop_open(&t, 0);
	log_seq(0, 0, 10);
	tloop_turn(&t, 0, 0);
	cr_assert_eq(log_sink_stats(t.sink)->writes, 0, "a lone line went at once");
	/* An idle shard sleeps until the linger time, not only the gather time. */
	cr_assert_eq(ring_next_ms(&t.ring, UINT64_MAX), LOG_SINK_LINGER_MS);
	tloop_turn(&t, LOG_SINK_GATHER_MS - 1, 0);
	cr_assert_eq(log_sink_stats(t.sink)->writes, 0);
	tloop_turn(&t, 1, 0);
	cr_assert_eq(log_sink_stats(t.sink)->writes, 1, "the gather time passed");
	tloop_flush(&t);
	uint32_t i = 1;
	for (size_t octets = 0; octets < LOG_SINK_FLUSH_OCTETS; octets += 1000)
		log_seq(0, i++, 900);
	tloop_turn(&t, 0, 0);
	cr_assert_eq(log_sink_stats(t.sink)->writes, 2, "enough octets wait");
	tloop_flush(&t);
	log_seq(0, i++, 10);
	ring_stop(&t.ring);
	tloop_turn(&t, 0, 0);
	cr_assert_eq(log_sink_stats(t.sink)->writes, 3, "a stopping shard writes at once");
	tloop_flush(&t);
	size_t len;
	uint32_t count, last;
	check_seq_lines(read_all(log_path, &len), 1, &count, &last);
	cr_assert_eq(count, i);
	tloop_close(&t);
	unlink(log_path);
}

#define SHARDS 4
#define LINES_PER_SHARD 3000

static void *
shard_writer(void *arg)
{
	uint32_t id = (uint32_t)(uintptr_t)arg;
	struct tloop t;
	tloop_open(&t, id);
	for (uint32_t i = 0; i < LINES_PER_SHARD; i++) {
		log_seq(id, i, (i * 37u + id * 101u) % 1500u);
		if (i % 7 == 6)
			tloop_turn(&t, LOG_SINK_GATHER_MS, 0);
		if (i % 100 == 99)
			tloop_flush(&t);   /* 100 lines always fit: no drop to account for */
	}
	tloop_flush(&t);
	tloop_close(&t);
	return NULL;
}

Test(log, sink_lines_of_many_shards_never_interleave)
{
	open_temp_log();
	pthread_t th[SHARDS];
	for (uintptr_t i = 0; i < SHARDS; i++)
		cr_assert_eq(pthread_create(&th[i], NULL, shard_writer, (void *)i), 0);
	for (int i = 0; i < SHARDS; i++)
		pthread_join(th[i], NULL);
	size_t len;
	uint32_t count[SHARDS], last[SHARDS];
	cr_assert_eq(check_seq_lines(read_all(log_path, &len), SHARDS, count, last), 0);
	for (int i = 0; i < SHARDS; i++) {
		cr_assert_eq(count[i], LINES_PER_SHARD, "shard %d", i);
		cr_assert_eq(last[i], LINES_PER_SHARD - 1);
	}
	unlink(log_path);
}

/* Reads what the pipe holds into text (after *len), dropping the filler lines ("F...F\n"). */
static void
pipe_read(int fd, char *text, size_t cap, size_t *len)
{
	static char chunk[65536];
	static char part[LOG_LINE_MAX + 8192];
	static size_t part_len;
	ssize_t n;
	while ((n = read(fd, chunk, sizeof(chunk))) > 0) {
		for (ssize_t i = 0; i < n; i++) {
			cr_assert(part_len < sizeof(part));
			part[part_len++] = chunk[i];
			if (chunk[i] != '\n')
				continue;
			if (part[0] != 'F') {
				cr_assert(*len + part_len < cap);
				memcpy(text + *len, part, part_len);
				*len += part_len;
				text[*len] = '\0';
			}
			part_len = 0;
		}
	}
}

Test(log, stuck_pipe_drops_and_counts_new_lines_without_blocking_then_reports_them)
{
	char err[256];
	char fifo[] = "/tmp/ringmta-log-fifo-XXXXXX";
	cr_assert(mkdtemp(fifo) != NULL);
	char path[64];
	snprintf(path, sizeof(path), "%s/log", fifo);
	cr_assert_eq(mkfifo(path, 0600), 0);
	int reader = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	cr_assert_geq(reader, 0);
	cr_assert_eq(log_open(path, err, sizeof(err)), 0, "%s", err);
	cr_assert(!log_fd_appends());
	/* Nobody reads: fill the pipe. */
	int filler = open(path, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	static char f[4096];
	memset(f, 'F', sizeof(f));
	f[sizeof(f) - 1] = '\n';
	while (write(filler, f, sizeof(f)) == (ssize_t)sizeof(f))
		;
	close(filler);
	struct tloop t;
	tloop_open(&t, 5);
	const uint32_t lines = 3000;
	for (uint32_t i = 0; i < lines; i++) {
		log_seq(0, i, 900);
		if (i % 10 == 9)
			tloop_turn(&t, LOG_SINK_LINGER_MS, 0);
	}
	const struct log_sink_stats *st = log_sink_stats(t.sink);
	uint64_t kept = st->lines;
	cr_assert_eq(kept + st->dropped, lines);
	cr_assert_gt(st->dropped, 0);
	/* Bounded: the buffers hold what fits in them, no more. */
	cr_assert_leq(kept * 1000u, (uint64_t)LOG_SINK_BUF_COUNT * LOG_SINK_BUF_SIZE);
	cr_assert(!ring_idle(&t.ring), "lines wait: the shard must not stop yet");
	/* The reader comes back: every kept line, in order, then the count of the others. */
	static char text[2u * LOG_SINK_BUF_COUNT * LOG_SINK_BUF_SIZE];
	size_t len = 0;
	for (uint32_t i = 0; i < 100000 && !ring_idle(&t.ring); i++) {
		pipe_read(reader, text, sizeof(text), &len);
		tloop_turn(&t, LOG_SINK_LINGER_MS, 1);
	}
	pipe_read(reader, text, sizeof(text), &len);
	cr_assert(ring_idle(&t.ring));
	uint32_t count, last;
	uint64_t reported = check_seq_lines(text, 1, &count, &last);
	cr_assert_eq(count, kept);
	cr_assert_eq(last, kept - 1, "the first lines were kept, the later ones dropped");
	cr_assert_eq(reported, lines - kept);
	cr_assert(strstr(text, " event=log_dropped shard=5 lines=") != NULL);
	tloop_close(&t);
	close(reader);
	unlink(path);
	rmdir(fifo);
}

Test(log, full_device_keeps_lines_retries_and_reports_the_drops_once_writable)
{
	char err[256];
	cr_assert_eq(log_open("/dev/full", err, sizeof(err)), 0, "%s", err);
	struct tloop t;
	tloop_open(&t, 2);
	uint32_t i = 0;
	for (; i < 50; i++)
		log_seq(0, i, 100);
	tloop_turn(&t, LOG_SINK_GATHER_MS, 0);
	tloop_turn(&t, 0, 100);   /* the write fails with ENOSPC */
	const struct log_sink_stats *st = log_sink_stats(t.sink);
	cr_assert_eq(st->write_errors, 1);
	cr_assert_eq(st->dropped, 0, "a failed write keeps its lines");
	tloop_turn(&t, 0, 0);
	cr_assert_eq(st->writes, 1, "no new try before the retry time");
	cr_assert_eq(ring_next_ms(&t.ring, UINT64_MAX), LOG_SINK_RETRY_MS);
	tloop_turn(&t, LOG_SINK_RETRY_MS, 0);
	cr_assert_eq(st->writes, 2);
	tloop_turn(&t, 0, 100);
	cr_assert_eq(st->write_errors, 2);
	/* The disk stays full: the buffers fill, then lines are dropped; mail would go on. */
	for (; i < SEQ_LINES_MAX; i++)
		log_seq(0, i, 1000);
	cr_assert_gt(st->dropped, 0);
	uint64_t kept = st->lines;
	/* Writable again (a new file on the same descriptor, as after a rotation). A failing log
	 * counts as idle (see a_failing_log_...), so turn until the retry has gone out. */
	open_temp_log();
	for (uint32_t k = 0; k < 10; k++)
		tloop_turn(&t, LOG_SINK_RETRY_MS, 10);
	tloop_flush(&t);
	size_t len;
	uint32_t count, last;
	uint64_t reported = check_seq_lines(read_all(log_path, &len), 1, &count, &last);
	cr_assert_eq(count, kept, "%u lines, %llu kept", count, (unsigned long long)kept);
	cr_assert_eq(reported, SEQ_LINES_MAX - kept);
	tloop_close(&t);
	unlink(log_path);
}

/* What a second shard does after the first one's write was cut: log and write 3 lines. */
static void *
second_shard(void *arg)
{
	struct tloop t;
	tloop_open(&t, 1);
	for (uint32_t i = 0; i < 3; i++)
		log_seq(1, i, 50);
	tloop_flush(&t);
	tloop_close(&t);
	return NULL;
}

Test(log, a_cut_line_ends_before_another_shards_line_begins)
{
	open_temp_log();
	signal(SIGXFSZ, SIG_IGN);
	struct tloop t;
	tloop_open(&t, 0);
	for (uint32_t i = 0; i < 10; i++)
		log_seq(0, i, 100);
	tloop_flush(&t);
	off_t whole = file_size(log_path);
	/* The "disk" fills in the middle of the next write's second line, after its qid. */
	static char expected[LOG_LINE_MAX];
	static char detail[150];
	memset(detail, 'x', sizeof(detail));
	size_t first_len = log_format_delivery(expected, sizeof(expected), T0, 10, s("a@b"),
		LOG_STATUS_DELIVERED, 0, s("2.0.0"), slice_make(detail, sizeof(detail)));
	log_format_delivery(expected, sizeof(expected), T0, 11, s("a@b"), LOG_STATUS_DELIVERED, 0,
		s("2.0.0"), slice_make(detail, sizeof(detail)));
	const size_t piece = 80;
	off_t limit = whole + (off_t)(first_len + piece);
	struct rlimit lim = { .rlim_cur = (rlim_t)limit, .rlim_max = RLIM_INFINITY };
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
	for (uint32_t i = 10; i < 15; i++)
		log_seq(0, i, 150);
	tloop_turn(&t, LOG_SINK_GATHER_MS, 0);
	const struct log_sink_stats *st = log_sink_stats(t.sink);
	/* The cut write, then the try of the rest, which fails (EFBIG) and waits for the retry. */
	for (uint32_t k = 0; k < 100 && st->write_errors == 0; k++)
		tloop_turn(&t, 0, 10);
	cr_assert_eq(st->write_errors, 1);
	cr_assert_eq(st->cuts, 1);
	cr_assert_eq(st->dropped, 1, "the rest of the cut line");
	cr_assert_eq(file_size(log_path), limit);
	lim.rlim_cur = RLIM_INFINITY;
	cr_assert_eq(setrlimit(RLIMIT_FSIZE, &lim), 0);
	/* Another shard writes first after the cut. */
	pthread_t th;
	cr_assert_eq(pthread_create(&th, NULL, second_shard, NULL), 0);
	pthread_join(th, NULL);
	tloop_flush(&t);
	tloop_close(&t);
	size_t len;
	char *text = read_all(log_path, &len);
	char *cut = text + whole;
	char *nl = strchr(cut, '\n');
	cut = nl + 1;                               /* line 10 was whole */
	nl = strchr(cut, '\n');
	uint32_t w, seq;
	cr_assert(!parse_seq(cut, nl, &w, &seq), "line 11 should be cut");
	cr_assert_eq((size_t)(nl - cut), piece, "%.*s", (int)(nl - cut), cut);
	cr_assert(memcmp(cut, expected, piece) == 0, "%.*s", (int)(nl - cut), cut);
	cr_assert_eq(nl - text, limit, "the LF comes right after the cut piece");
	char *p = nl + 1;
	for (uint32_t i = 0; i < 3; i++) {
		nl = strchr(p, '\n');
		cr_assert(parse_seq(p, nl, &w, &seq), "%.*s", (int)(nl - p), p);
		cr_assert_eq(w, 1);
		cr_assert_eq(seq, i);
		p = nl + 1;
	}
	if (*p == '\n')
		p++;                                    /* the first shard's own LF: an empty line */
	uint32_t count, last;
	cr_assert_eq(check_seq_lines(p, 1, &count, &last), 1);
	cr_assert_eq(count, 3);
	cr_assert_eq(last, 14);
	unlink(log_path);
}

Test(log, reopen_with_a_write_in_flight_loses_and_cuts_no_line)
{
	struct tloop t;
	open_temp_log();
	char first[64];
	strcpy(first, log_path);
	tloop_open(&t, 0);
	for (uint32_t i = 0; i < 200; i++)
		log_seq(0, i, 500);
	tloop_turn(&t, LOG_SINK_GATHER_MS, 0);
	cr_assert_eq(log_sink_stats(t.sink)->writes, 1);
	open_temp_log();   /* rotated while the write is in flight */
	for (uint32_t i = 200; i < 400; i++)
		log_seq(0, i, 500);
	tloop_flush(&t);
	tloop_close(&t);
	size_t len;
	uint32_t old_count, old_last, new_count, new_last;
	check_seq_lines(read_all(first, &len), 1, &old_count, &old_last);
	check_seq_lines(read_all(log_path, &len), 1, &new_count, &new_last);
	cr_assert_eq(old_count + new_count, 400);
	cr_assert(old_count == 0 || old_count == 200, "the first write went whole to one file");
	if (old_count == 200)
		cr_assert_eq(old_last, 199);
	cr_assert_eq(new_last, 399);
	unlink(first);
	unlink(log_path);
}

Test(log, close_writes_what_is_left_and_later_lines_go_direct)
{
	struct tloop t;
	open_temp_log();
	tloop_open(&t, 0);
	for (uint32_t i = 0; i < 50; i++)
		log_seq(0, i, 100);
	cr_assert_eq(file_size(log_path), 0);
	ring_fini(&t.ring);       /* the loop ended; teardown logged the stats line */
	log_sink_close(t.sink);
	size_t len;
	uint32_t count, last;
	check_seq_lines(read_all(log_path, &len), 1, &count, &last);
	cr_assert_eq(count, 50);
	log_seq(0, 50, 100);      /* no sink: one write(2), at once */
	check_seq_lines(read_all(log_path, &len), 1, &count, &last);
	cr_assert_eq(count, 51);
	unlink(log_path);
}

Test(log, a_failing_log_does_not_keep_the_shard_from_stopping)
{
	char err[256];
	cr_assert_eq(log_open("/dev/full", err, sizeof(err)), 0, "%s", err);
	struct tloop t;
	tloop_open(&t, 0);
	log_seq(0, 0, 100);
	cr_assert(!ring_idle(&t.ring), "a line waits");
	ring_stop(&t.ring);
	tloop_turn(&t, 0, 0);
	tloop_turn(&t, 0, 100);
	cr_assert_eq(log_sink_stats(t.sink)->write_errors, 1);
	cr_assert(ring_idle(&t.ring), "the log fails: its lines must not hold the shard");
	tloop_close(&t);
}
