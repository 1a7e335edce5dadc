/* tests/unit/log_test.c - log line formats, escaping, truncation and whole-line writes. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf/config.h"
#include "base/log.h"

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
