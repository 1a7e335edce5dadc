/* src/queue_cmd.c - `ringmta queue`: the control sockets' client; see queue_cmd.h. */
#include "src/queue_cmd.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include "base/assert.h"
#include "conf/config.h"
#include "proto/qctl.h"

#define QUEUE_CMD_OVERRIDES_MAX 64u

enum { QUEUE_CMD_OK = 0, QUEUE_CMD_FAILED = 1, QUEUE_CMD_USAGE = 2, QUEUE_CMD_NOT_RUNNING = 3 };

/* One row of the merged summary. */
struct queue_cmd_row {
	char *domain;
	uint64_t counts[QCTL_AGE_BUCKETS];
};

struct queue_cmd {
	struct qctl_request req;        /* what was asked (for the merge) */
	bool json;
	char line[QCTL_REQUEST_MAX];    /* the request, LF ended */
	size_t line_len;
	char arg[QCTL_REQUEST_MAX];     /* its argument (for the messages), or "" */
	uint64_t total;                 /* the shards' ok counts added up */
	uint64_t data_lines;
	struct queue_cmd_row *rows;     /* summary */
	size_t row_count, row_cap;
	char *buf;                      /* one shard's answer being read */
	size_t buf_len, buf_cap;
};

static void
queue_cmd_usage(FILE *f)
{
	fprintf(f, "usage: ringmta queue [-c FILE] [-o key=value]... COMMAND\n"
		"  list [--json]        every message: id, size, arrival, sender, recipients\n"
		"  summary [--json]     recipients not yet final by domain and age (as qshape)\n"
		"  flush [ID|DOMAIN]    deferred mail due now: all, one message, one domain\n"
		"  delete ID            remove a message (no notice to the sender)\n"
		"  hold ID              do not deliver it until released\n"
		"  release ID           deliver it again when due\n"
		"  bounce ID            expire it now: the sender gets a delivery status notice\n");
}

/* Connects to the socket at path. Returns the descriptor, or -errno. */
static int
queue_cmd_connect(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	struct timeval tv = { .tv_sec = QUEUE_CMD_TIMEOUT_S };
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	if (connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) != 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}

static int
queue_cmd_row_cmp(const void *a, const void *b)
{
	return strcmp(((const struct queue_cmd_row *)a)->domain,
		((const struct queue_cmd_row *)b)->domain);
}

static int
queue_cmd_add_row(struct queue_cmd *qc, struct slice payload)
{
	struct slice domain;
	uint64_t counts[QCTL_AGE_BUCKETS];
	if (qctl_parse_summary(payload, &domain, counts) != 0)
		return -EBADMSG;
	if (qc->row_count == qc->row_cap) {
		size_t cap = qc->row_cap ? qc->row_cap * 2 : 64;
		struct queue_cmd_row *grown = realloc(qc->rows, cap * sizeof(*grown));
		if (grown == NULL)
			return -ENOMEM;
		qc->rows = grown;
		qc->row_cap = cap;
	}
	struct queue_cmd_row *r = &qc->rows[qc->row_count];
	r->domain = strndup((const char *)domain.ptr, domain.len);
	if (r->domain == NULL)
		return -ENOMEM;
	memcpy(r->counts, counts, sizeof(counts));
	qc->row_count++;
	return 0;
}

/* A data line: printed at once (a listing) or kept for the merge (a summary). */
static int
queue_cmd_data(struct queue_cmd *qc, struct slice payload)
{
	if (qc->req.verb == QCTL_SUMMARY)
		return queue_cmd_add_row(qc, payload);
	if (qc->req.verb != QCTL_LIST)
		return 0;
	if (qc->json)
		fputs(qc->data_lines == 0 ? "[\n" : ",\n", stdout);
	fwrite(payload.ptr, 1, payload.len, stdout);
	if (!qc->json)
		fputc('\n', stdout);
	qc->data_lines++;
	return 0;
}

/* Reads lines from fd to the end line. Returns 0 (ok; *shards from the header), 1 (an error
 * answer, printed), or -errno. */
static int
queue_cmd_read(struct queue_cmd *qc, int fd, uint32_t *shards)
{
	bool header = false;
	qc->buf_len = 0;
	for (;;) {
		char *lf = memchr(qc->buf, '\n', qc->buf_len);
		if (lf == NULL) {
			if (qc->buf_len == qc->buf_cap)
				return -EMSGSIZE;   /* longer than any line the daemon writes */
			ssize_t n = read(fd, qc->buf + qc->buf_len, qc->buf_cap - qc->buf_len);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0 && !header)
				return -ENOTCONN;   /* gone before a word: a daemon killed or stopping */
			if (n <= 0)
				return n < 0 ? -errno : -ECONNRESET;
			qc->buf_len += (size_t)n;
			continue;
		}
		size_t len = (size_t)(lf - qc->buf);
		struct qctl_line l = qctl_parse_line(slice_make(qc->buf, len));
		int rc = 0;
		if (!header && l.kind != QCTL_LINE_HEADER)
			return -EPROTO;
		switch (l.kind) {
		case QCTL_LINE_HEADER:
			if (header)
				return -EPROTO;
			header = true;
			*shards = l.shards;
			break;
		case QCTL_LINE_DATA:
			rc = queue_cmd_data(qc, l.text);
			break;
		case QCTL_LINE_OK:
			qc->total += l.count;
			return 0;
		case QCTL_LINE_ERROR:
			fprintf(stderr, "ringmta queue: %.*s\n", (int)l.text.len, (const char *)l.text.ptr);
			return 1;
		case QCTL_LINE_BAD:
			return -EPROTO;
		}
		if (rc < 0)
			return rc;
		memmove(qc->buf, lf + 1, qc->buf_len - len - 1);
		qc->buf_len -= len + 1;
	}
}

/* Asks one shard. Returns 0, 1 (an error answer), or an exit status from the connection. A
 * daemon that is starting has shard 0's socket before the others': those are waited for. */
static int
queue_cmd_ask(struct queue_cmd *qc, const char *path, bool first, uint32_t *shards)
{
	int fd = queue_cmd_connect(path);
	for (uint32_t i = 0; !first && i < QUEUE_CMD_START_WAIT_MS / 50u
		&& (fd == -ENOENT || fd == -ECONNREFUSED); i++) {
		usleep(50000);
		fd = queue_cmd_connect(path);
	}
	if (fd == -ENOENT || fd == -ECONNREFUSED) {
		fprintf(stderr, "ringmta queue: the daemon is not running (nothing listens on %s)\n",
			path);
		return QUEUE_CMD_NOT_RUNNING;
	}
	if (fd < 0) {
		fprintf(stderr, "ringmta queue: %s: %s\n", path, strerror(-fd));
		return fd == -EACCES ? QUEUE_CMD_NOT_RUNNING : QUEUE_CMD_FAILED;
	}
	int rc = write(fd, qc->line, qc->line_len) == (ssize_t)qc->line_len ? 0 : -ENOTCONN;
	if (rc == 0)
		rc = queue_cmd_read(qc, fd, shards);
	close(fd);
	if (rc == -ENOTCONN) {
		fprintf(stderr, "ringmta queue: the daemon is not running, or stopping (%s closed at "
			"once)\n", path);
		return QUEUE_CMD_NOT_RUNNING;
	}
	if (rc < 0) {
		fprintf(stderr, "ringmta queue: %s: %s\n", path, rc == -EPROTO
			? "not a ringmta control socket answer" : strerror(-rc));
		return QUEUE_CMD_FAILED;
	}
	return rc;
}

static void
queue_cmd_summary_row(const char *name, const uint64_t *counts, bool json, bool first)
{
	uint64_t total = 0;
	for (uint32_t b = 0; b < QCTL_AGE_BUCKETS; b++)
		total += counts[b];
	if (!json) {
		printf("%40s %6llu", name, (unsigned long long)total);
		for (uint32_t b = 0; b < QCTL_AGE_BUCKETS; b++)
			printf(" %5llu", (unsigned long long)counts[b]);
		printf("\n");
		return;
	}
	char esc[QCTL_DOMAIN_MAX * 4 * 6 + 8];
	struct qctl_out o = { .buf = esc, .cap = sizeof(esc) - 1 };
	qctl_out_json(&o, slice_make(name, strlen(name)));
	printf("%s{\"domain\":%.*s,\"total\":%llu,\"counts\":[", first ? "" : ",", (int)o.len, esc,
		(unsigned long long)total);
	for (uint32_t b = 0; b < QCTL_AGE_BUCKETS; b++)
		printf("%s%llu", b > 0 ? "," : "", (unsigned long long)counts[b]);
	printf("]}");
}

/* The shards' summaries added up: TOTAL first, then each domain. */
static void
queue_cmd_summary(struct queue_cmd *qc)
{
	qsort(qc->rows, qc->row_count, sizeof(*qc->rows), queue_cmd_row_cmp);
	size_t n = 0;
	uint64_t total[QCTL_AGE_BUCKETS] = { 0 };
	for (size_t i = 0; i < qc->row_count; i++) {
		struct queue_cmd_row *r = &qc->rows[i];
		for (uint32_t b = 0; b < QCTL_AGE_BUCKETS; b++)
			total[b] += r->counts[b];
		if (n > 0 && strcmp(qc->rows[n - 1].domain, r->domain) == 0) {
			for (uint32_t b = 0; b < QCTL_AGE_BUCKETS; b++)
				qc->rows[n - 1].counts[b] += r->counts[b];
			free(r->domain);
			continue;
		}
		qc->rows[n++] = *r;
	}
	qc->row_count = n;
	if (qc->json) {
		printf("{\"bucket_minutes\":[");
		for (uint32_t b = 0; b + 1 < QCTL_AGE_BUCKETS; b++)
			printf("%u,", qctl_age_bucket_minutes(b));
		printf("null],\"total\":");
		queue_cmd_summary_row("TOTAL", total, true, true);
		printf(",\"domains\":[");
	} else {
		printf("%40s %6s", "", "T");
		for (uint32_t b = 0; b < QCTL_AGE_BUCKETS; b++) {
			uint32_t m = qctl_age_bucket_minutes(b);
			if (m == UINT32_MAX)
				printf(" %4u+", qctl_age_bucket_minutes(b - 1));
			else
				printf(" %5u", m);
		}
		printf("\n");
		queue_cmd_summary_row("TOTAL", total, false, true);
	}
	for (size_t i = 0; i < n; i++) {
		queue_cmd_summary_row(qc->rows[i].domain, qc->rows[i].counts, qc->json, i == 0);
		free(qc->rows[i].domain);
	}
	if (qc->json)
		printf("]}\n");
}

/* What the merged answer says, once every shard has answered ok. */
static int
queue_cmd_report(struct queue_cmd *qc)
{
	const struct qctl_request *r = &qc->req;
	if (r->verb == QCTL_LIST) {
		if (qc->json)
			fputs(qc->data_lines == 0 ? "[]\n" : "\n]\n", stdout);
		else if (qc->total == 0)
			printf("Mail queue is empty\n");
		else
			printf("-- %llu message%s\n", (unsigned long long)qc->total,
				qc->total == 1 ? "" : "s");
		return QUEUE_CMD_OK;
	}
	if (r->verb == QCTL_SUMMARY) {
		queue_cmd_summary(qc);
		return QUEUE_CMD_OK;
	}
	if (r->arg == QCTL_ARG_QID && qc->total == 0) {
		fprintf(stderr, "ringmta queue: %s: no such message in the queue\n", qc->arg);
		return QUEUE_CMD_FAILED;
	}
	if (r->verb == QCTL_FLUSH) {
		printf("flushed: %llu message%s\n", (unsigned long long)qc->total,
			qc->total == 1 ? "" : "s");
		return QUEUE_CMD_OK;
	}
	static const char *const done[] = { [QCTL_DELETE] = "deleted", [QCTL_HOLD] = "held",
		[QCTL_RELEASE] = "released", [QCTL_BOUNCE] = "bounced" };
	printf("%s: %s\n", qc->arg, done[r->verb]);
	return QUEUE_CMD_OK;
}

/* The request line from the words after the options; checked by the daemon's own parser. */
static int
queue_cmd_request(struct queue_cmd *qc, int argc, char **argv, int first)
{
	size_t len = 0;
	for (int i = first; i < argc; i++) {
		int n = snprintf(qc->line + len, sizeof(qc->line) - len, "%s%s", i > first ? " " : "",
			argv[i]);
		if (n < 0 || (size_t)n >= sizeof(qc->line) - len - 1)
			return -1;
		len += (size_t)n;
	}
	if (qc->json && len + 5 < sizeof(qc->line) - 1 && first < argc
		&& strcmp(argv[first], "list") == 0)
		len += (size_t)snprintf(qc->line + len, sizeof(qc->line) - len, " json");
	qc->line[len++] = '\n';
	qc->line_len = len;
	char err[QCTL_ERR_MAX];
	size_t used;
	if (qctl_parse_request(slice_make(qc->line, len), &qc->req, &used, err) != QCTL_PARSE_OK) {
		fprintf(stderr, "ringmta queue: %s\n", err);
		return -1;
	}
	if (first + 1 < argc)
		snprintf(qc->arg, sizeof(qc->arg), "%s", argv[first + 1]);
	return 0;
}

/* Options first (-c, -o, --json anywhere), then the command words. Returns the index of the
 * first word, or -1. */
static int
queue_cmd_options(int argc, char **argv, const char **file, const char **overrides,
	uint32_t *override_count, bool *json)
{
	int words = 0;
	char **kept = argv;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "-c") == 0 && i + 1 < argc) {
			*file = argv[++i];
		} else if (strcmp(argv[i], "-o") == 0 && i + 1 < argc
			&& *override_count < QUEUE_CMD_OVERRIDES_MAX) {
			overrides[(*override_count)++] = argv[++i];
		} else if (strcmp(argv[i], "--json") == 0) {
			*json = true;
		} else if (argv[i][0] == '-') {
			return -1;
		} else {
			kept[1 + words++] = argv[i];   /* in place: words never overtake the reading */
		}
	}
	return words > 0 ? 1 + words : -1;
}

int
queue_cmd_main(int argc, char **argv)
{
	static struct config cfg;
	static struct queue_cmd qc;
	const char *file = NULL;
	const char *overrides[QUEUE_CMD_OVERRIDES_MAX] = { NULL };
	uint32_t override_count = 0;
	int end = queue_cmd_options(argc, argv, &file, overrides, &override_count, &qc.json);
	if (end < 0) {
		queue_cmd_usage(stderr);
		return QUEUE_CMD_USAGE;
	}
	/* Given no -c: the package's configuration when it is there, as sendmail(1) (and mailq,
	 * which runs this) reads it; meson defines RINGMTA_CONFIG_FILE for src/. */
	if (file == NULL && access(RINGMTA_CONFIG_FILE, F_OK) == 0)
		file = RINGMTA_CONFIG_FILE;
	char err[CONFIG_ERR_MAX];
	if (config_load_all(&cfg, file, overrides, override_count, err, sizeof(err)) != 0) {
		fprintf(stderr, "ringmta queue: %s\n", err);
		return QUEUE_CMD_USAGE;
	}
	if (queue_cmd_request(&qc, end, argv, 1) != 0)
		return QUEUE_CMD_USAGE;
	qc.buf_cap = QCTL_LINE_MAX + 1;
	qc.buf = malloc(qc.buf_cap);
	if (qc.buf == NULL)
		return QUEUE_CMD_FAILED;
	uint32_t shards = 1;
	int rc = QUEUE_CMD_OK;
	for (uint32_t s = 0; s < shards && rc == QUEUE_CMD_OK; s++) {
		char path[CONFIG_CONTROL_SOCKET_MAX];
		if (config_control_socket(&cfg, s, path, sizeof(path)) != 0)
			rc = QUEUE_CMD_USAGE;   /* config_check made sure it fits */
		uint32_t n = 0;
		if (rc == QUEUE_CMD_OK)
			rc = queue_cmd_ask(&qc, path, s == 0, &n);
		if (rc == QUEUE_CMD_OK && s == 0)
			shards = n;
	}
	if (rc == QUEUE_CMD_OK)
		rc = queue_cmd_report(&qc);
	free(qc.buf);
	free(qc.rows);
	return rc;
}
