/* src/sendmail.c - sendmail(1) on the daemon's local socket; see sendmail.h. */
#include "src/sendmail.h"

#include <errno.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sysexits.h>
#include <time.h>
#include <unistd.h>

#include "base/assert.h"
#include "conf/config.h"
#include "proto/data_stuff.h"
#include "proto/mail_header.h"
#include "proto/msa_fixup.h"
#include "proto/smtp_reply.h"
#include "proto/smtp_server.h"

#ifndef RINGMTA_CONFIG_FILE
#define RINGMTA_CONFIG_FILE "/etc/ringmta/ringmta.conf"
#endif

#define SENDMAIL_RCPTS_MAX   SMTP_RCPT_COUNT_MAX
#define SENDMAIL_ADDED_MAX   1024u    /* From:, Date:, Message-ID: with their line ends */
#define SENDMAIL_CMD_MAX     (MAIL_HEADER_ADDR_LEN_MAX + 64u)
#define SENDMAIL_RECV_MAX    SMTP_REPLY_LINE_LEN_MAX
#define SENDMAIL_PIECES_MAX  (SMTP_RCPT_COUNT_MAX * 2u + 4u)   /* around each Bcc: field */
#define SENDMAIL_NAME_MAX    128u     /* the display name of From: */
#define SENDMAIL_BS_QUIET_MS 5000u    /* -bs: after stdin ends, the daemon's last answers */

enum sendmail_mode { SENDMAIL_SEND, SENDMAIL_SMTP, SENDMAIL_LIST, SENDMAIL_FLUSH };

struct sendmail_opts {
	const char *config_file;    /* -C; NULL: RINGMTA_CONFIG_FILE if it exists */
	const char *sender;         /* -f; NULL: the login name at myhostname */
	const char *full_name;      /* -F */
	bool extract;               /* -t */
	bool ignore_dots;           /* -i, -oi */
	enum sendmail_mode mode;
	char **rcpts;               /* the command line's */
	int rcpt_count;
};

/* The message and what is learnt from its header section. */
struct sendmail_msg {
	char *buf;
	size_t len;
	struct slice pieces[SENDMAIL_PIECES_MAX];   /* what is sent, in order */
	uint32_t piece_count;
	char added[SENDMAIL_ADDED_MAX];
	bool has_from, has_date, has_msgid;
};

struct sendmail_conn {
	int fd;
	struct smtp_reply_parser parser;
	uint8_t in[SENDMAIL_RECV_MAX];
	size_t in_len;
};

static struct mail_header_addr sendmail_rcpts[SENDMAIL_RCPTS_MAX];
static uint32_t sendmail_rcpt_count;

/* ---- options ---- */

static int
sendmail_usage(const char *why)
{
	fprintf(stderr, "sendmail: %s\n"
		"usage: sendmail [-t] [-i] [-f sender] [-F name] [-C config] [recipient...]\n"
		"       sendmail -bs | -bp | -q\n", why);
	return EX_USAGE;
}

/* The value of an option letter: attached ("-fuser") or the next argument. */
static const char *
sendmail_optarg(int argc, char **argv, int *i, const char *arg)
{
	if (arg[2] != '\0')
		return arg + 2;
	if (*i + 1 < argc)
		return argv[++(*i)];
	return NULL;
}

/* -b modes: s (SMTP on stdin), p (the queue), m (a message, the default). */
static int
sendmail_mode_letter(const char *arg, struct sendmail_opts *o)
{
	if (strcmp(arg, "-bs") == 0)
		o->mode = SENDMAIL_SMTP;
	else if (strcmp(arg, "-bp") == 0)
		o->mode = SENDMAIL_LIST;
	else if (strcmp(arg, "-bm") != 0)
		return sendmail_usage("only -bm, -bp and -bs are supported");
	return 0;
}

/* Options scripts pass (Postfix's set). Those that change nothing here (-v, -n, -U, -m, -oX
 * but -oi, -N, -R, -V, -B, -L) are taken and ignored, as Postfix ignores most of them. */
static int
sendmail_parse(int argc, char **argv, struct sendmail_opts *o)
{
	int i = 1;
	for (; i < argc && argv[i][0] == '-' && argv[i][1] != '\0'; i++) {
		const char *a = argv[i];
		char letter = a[1];
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (strchr("fFCNRVBL", letter) != NULL) {
			const char *v = sendmail_optarg(argc, argv, &i, a);
			if (v == NULL)
				return sendmail_usage("an option needs a value");
			if (letter == 'f')
				o->sender = v;
			else if (letter == 'F')
				o->full_name = v;
			else if (letter == 'C')
				o->config_file = v;
		} else if (letter == 'b') {
			if (sendmail_mode_letter(a, o) != 0)
				return EX_USAGE;
		} else if (letter == 'q') {
			o->mode = SENDMAIL_FLUSH;   /* -q with an interval: the interval is ignored */
		} else if (strcmp(a, "-t") == 0) {
			o->extract = true;
		} else if (strcmp(a, "-i") == 0 || strcmp(a, "-oi") == 0) {
			o->ignore_dots = true;
		} else if (letter != 'o' && strchr("vnUmG", letter) == NULL) {
			return sendmail_usage("unknown option");
		}
	}
	o->rcpts = argv + i;
	o->rcpt_count = argc - i;
	return 0;
}

static int
sendmail_config(const struct sendmail_opts *o, struct config *cfg)
{
	char err[CONFIG_ERR_MAX];
	const char *file = o->config_file;
	config_default(cfg);
	if (file == NULL && access(RINGMTA_CONFIG_FILE, F_OK) == 0)
		file = RINGMTA_CONFIG_FILE;
	if ((file != NULL && config_load_file(cfg, file, err, sizeof(err)) != 0)
		|| config_check(cfg, err, sizeof(err)) != 0) {
		fprintf(stderr, "sendmail: %s\n", err);
		return EX_CONFIG;
	}
	if (cfg->local_listen[0] == '\0') {
		fprintf(stderr, "sendmail: local_listen is not set in %s: no way to reach ringmta\n",
			file != NULL ? file : "the default configuration");
		return EX_TEMPFAIL;
	}
	return 0;
}

/* ---- the message ---- */

/* Reads stdin; without -i a line of a single '.' ends the message (sendmail's old rule). */
static int
sendmail_read(const struct sendmail_opts *o, const struct config *cfg, struct sendmail_msg *m)
{
	char *line = NULL;
	size_t cap = 0;
	ssize_t n;
	FILE *mem = open_memstream(&m->buf, &m->len);
	if (mem == NULL)
		return EX_OSERR;
	int rc = 0;
	while ((n = getline(&line, &cap, stdin)) > 0) {
		if (!o->ignore_dots && line[0] == '.' && (n == 1 || strcmp(line, ".\n") == 0
			|| strcmp(line, ".\r\n") == 0))
			break;
		if (fwrite(line, 1, (size_t)n, mem) != (size_t)n || ftell(mem) < 0
			|| (uint64_t)ftell(mem) > cfg->max_message_size) {
			fprintf(stderr, "sendmail: the message is larger than max_message_size\n");
			rc = EX_DATAERR;
			break;
		}
	}
	if (rc == 0 && ferror(stdin)) {
		fprintf(stderr, "sendmail: reading the message: %s\n", strerror(errno));
		rc = EX_IOERR;
	}
	free(line);
	if (fclose(mem) != 0 && rc == 0)
		rc = EX_OSERR;
	return rc;
}

/* An address from the command line or a header: octets a path cannot hold are refused here, so
 * that none can break the SMTP command line the address goes into. */
static bool
sendmail_addr_ok(const uint8_t *p, size_t len)
{
	if (len == 0 || len > MAIL_HEADER_ADDR_LEN_MAX)
		return false;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < 0x20 || p[i] == 0x7f || p[i] == '<' || p[i] == '>')
			return false;
	}
	return true;
}

static int
sendmail_add_rcpt(const uint8_t *p, size_t len)
{
	if (!sendmail_addr_ok(p, len)) {
		fprintf(stderr, "sendmail: %.*s: not a usable address\n", (int)len, (const char *)p);
		return EX_DATAERR;
	}
	if (sendmail_rcpt_count == SENDMAIL_RCPTS_MAX) {
		fprintf(stderr, "sendmail: more than %u recipients\n", SENDMAIL_RCPTS_MAX);
		return EX_DATAERR;
	}
	struct mail_header_addr *a = &sendmail_rcpts[sendmail_rcpt_count++];
	memcpy(a->text, p, len);
	a->len = (uint32_t)len;
	return 0;
}

static void
sendmail_piece(struct sendmail_msg *m, struct slice s)
{
	if (s.len == 0)
		return;
	if (m->piece_count > 0) {
		struct slice *last = &m->pieces[m->piece_count - 1];
		if (last->ptr + last->len == s.ptr) {   /* adjacent: one piece */
			last->len += s.len;
			return;
		}
	}
	ASSERT(m->piece_count < SENDMAIL_PIECES_MAX);
	m->pieces[m->piece_count++] = s;
}

/* One header field: noted, its recipients taken with -t, and kept unless it is Bcc:. */
static int
sendmail_field(const struct sendmail_opts *o, struct sendmail_msg *m,
	const struct mail_header_field *f)
{
	m->has_from |= mail_header_is(f, SLICE_LIT("From"));
	m->has_date |= mail_header_is(f, SLICE_LIT("Date"));
	m->has_msgid |= mail_header_is(f, SLICE_LIT("Message-ID"));
	bool bcc = mail_header_is(f, SLICE_LIT("Bcc"));
	if (o->extract && (bcc || mail_header_is(f, SLICE_LIT("To"))
		|| mail_header_is(f, SLICE_LIT("Cc")))) {
		static struct mail_header_addr found[SENDMAIL_RCPTS_MAX];
		uint32_t count = 0;
		enum mail_header_addr_status st = mail_header_addrs(f->value, found,
			SENDMAIL_RCPTS_MAX, &count);
		if (st != MAIL_HEADER_ADDR_OK) {
			fprintf(stderr, "sendmail: %.*s: cannot read its addresses\n", (int)f->name.len,
				(const char *)f->name.ptr);
			return EX_DATAERR;
		}
		for (uint32_t i = 0; i < count; i++) {
			int rc = sendmail_add_rcpt(found[i].text, found[i].len);
			if (rc != 0)
				return rc;
		}
	}
	if (!bcc)
		sendmail_piece(m, f->whole);
	else if (m->piece_count + 3 > SENDMAIL_PIECES_MAX)   /* the next field, CRLF, the body */
		return EX_DATAERR;   /* more Bcc: fields than any message has */
	return 0;
}

/* Walks the header section: the pieces to send (Bcc: left out), the fields present. */
static int
sendmail_headers(const struct sendmail_opts *o, struct sendmail_msg *m)
{
	struct slice msg = slice_make(m->buf, m->len);
	struct mail_header_iter it;
	struct mail_header_field f;
	mail_header_iter_init(&it, msg);
	m->piece_count = 1;   /* pieces[0]: the added fields, once known */
	while (mail_header_next(&it, &f)) {
		int rc = sendmail_field(o, m, &f);
		if (rc != 0)
			return rc;
	}
	size_t end = mail_header_end(&it);
	if (!mail_header_ended_blank(&it) && end < msg.len)
		sendmail_piece(m, SLICE_LIT("\r\n"));   /* the body started without an empty line */
	else if (mail_header_ended_blank(&it))
		end -= msg.ptr[end - 1] == '\n' && end >= 2 && msg.ptr[end - 2] == '\r' ? 2 : 1;
	sendmail_piece(m, slice_skip(msg, end));
	return 0;
}

/* The login name of the real uid (or "uid<n>"), and its full name from the GECOS field. */
static void
sendmail_login(char *login, size_t cap, char *gecos, size_t gecos_cap)
{
	struct passwd *pw = getpwuid(getuid());
	if (pw != NULL)
		snprintf(login, cap, "%s", pw->pw_name);
	else
		snprintf(login, cap, "uid%u", (unsigned)getuid());
	gecos[0] = '\0';
	if (pw != NULL && pw->pw_gecos != NULL)
		snprintf(gecos, gecos_cap, "%.*s", (int)strcspn(pw->pw_gecos, ","), pw->pw_gecos);
}

/* A display name as a quoted string (RFC 5322 3.2.4): '"' and '\' escaped, control characters
 * (a line break would start a new field) turned into blanks. */
static size_t
sendmail_quote_name(char *out, size_t cap, const char *name)
{
	size_t n = 0;
	ASSERT(cap >= 3);
	out[n++] = '"';
	for (; *name != '\0' && n + 3 < cap; name++) {
		unsigned char c = (unsigned char)*name;
		if (c == '"' || c == '\\')
			out[n++] = '\\';
		out[n++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
	}
	out[n++] = '"';
	out[n] = '\0';
	return n;
}

/* From:, Date: and Message-ID: for a message without them (RFC 5322 3.6: From and Date are
 * required; 3.6.4: Message-ID should be there). */
static void
sendmail_add_fields(const struct sendmail_opts *o, const struct config *cfg,
	const char *sender, const char *login_addr, const char *gecos, struct sendmail_msg *m)
{
	size_t n = 0;
	const char *name = o->full_name != NULL ? o->full_name : gecos;
	if (!m->has_from) {
		char quoted[SENDMAIL_NAME_MAX * 2 + 3];
		sendmail_quote_name(quoted, sizeof(quoted), name);
		n += (size_t)snprintf(m->added + n, sizeof(m->added) - n, "From: %s%s<%s>\r\n",
			name[0] != '\0' ? quoted : "", name[0] != '\0' ? " " : "",
			sender[0] != '\0' ? sender : login_addr);
	}
	time_t now = time(NULL);
	struct tm tm;
	localtime_r(&now, &tm);
	if (!m->has_date && n < sizeof(m->added)) {
		n += strftime(m->added + n, sizeof(m->added) - n,
			"Date: %a, %d %b %Y %H:%M:%S %z\r\n", &tm);
	}
	if (!m->has_msgid && n < sizeof(m->added)) {
		uint64_t r = 0;
		if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
			r = (uint64_t)getpid() << 32 ^ (uint64_t)now;
		uint8_t id[MSA_FIXUP_MSGID_MAX];
		size_t len = msa_fixup_message_id(id, sizeof(id), (uint64_t)now * 1000u, r,
			slice_make(cfg->myhostname, strlen(cfg->myhostname)));
		n += (size_t)snprintf(m->added + n, sizeof(m->added) - n, "Message-ID: %.*s\r\n",
			(int)len, (const char *)id);
	}
	ASSERT(n < sizeof(m->added));
	m->pieces[0] = slice_make(m->added, n);
}

/* ---- SMTP with the daemon ---- */

static int
sendmail_connect(const struct config *cfg, struct sendmail_conn *c)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	ASSERT(strlen(cfg->local_listen) < sizeof(sun.sun_path));
	memcpy(sun.sun_path, cfg->local_listen, strlen(cfg->local_listen) + 1);
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct timeval tv = { .tv_sec = SENDMAIL_TIMEOUT_S };
	if (c->fd < 0 || connect(c->fd, (const struct sockaddr *)&sun, sizeof(sun)) != 0) {
		fprintf(stderr, "sendmail: cannot reach ringmta at %s: %s (the mail is not sent)\n",
			cfg->local_listen, strerror(errno));
		return EX_TEMPFAIL;
	}
	(void)setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	(void)setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	smtp_reply_init(&c->parser);
	c->in_len = 0;
	return 0;
}

/* The next complete reply; false when the daemon went away, timed out or spoke nonsense. */
static bool
sendmail_reply(struct sendmail_conn *c, struct smtp_reply *out)
{
	for (;;) {
		size_t used = 0;
		struct smtp_reply_line line;
		enum smtp_reply_event ev = smtp_reply_feed(&c->parser, slice_make(c->in, c->in_len),
			&used, &line);
		memmove(c->in, c->in + used, c->in_len - used);
		c->in_len -= used;
		if (ev == SMTP_REPLY_DONE) {
			*out = smtp_reply_get(&c->parser);
			return true;
		}
		if (ev == SMTP_REPLY_ERROR || c->in_len == sizeof(c->in))
			return false;
		if (ev == SMTP_REPLY_LINE)
			continue;
		ssize_t n = recv(c->fd, c->in + c->in_len, sizeof(c->in) - c->in_len, 0);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		c->in_len += (size_t)n;
	}
}

static bool
sendmail_send_all(int fd, const void *p, size_t len)
{
	const uint8_t *b = p;
	while (len > 0) {
		ssize_t n = write(fd, b, len);   /* a socket or stdout; SIGPIPE is ignored */
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return false;
		b += n;
		len -= (size_t)n;
	}
	return true;
}

/* What a refusal means for the exit status (Postfix's sendmail maps the same way). */
static int
sendmail_refusal(const char *what, const struct smtp_reply *r)
{
	fprintf(stderr, "sendmail: %s: %u %.*s\n", what, r->code, (int)r->text.len,
		(const char *)r->text.ptr);
	if (r->code < 500)
		return EX_TEMPFAIL;
	if (r->enhanced.cls == 5 && r->enhanced.subject == 1 && r->enhanced.detail <= 2)
		return EX_NOUSER;   /* RFC 3463 5.1.1 bad mailbox, 5.1.2 bad system */
	if (r->code == 501 || r->code == 553 || r->code == 552 || r->code == 555
		|| (r->enhanced.cls == 5 && (r->enhanced.subject == 6 || r->enhanced.subject == 1)))
		return EX_DATAERR;
	return EX_UNAVAILABLE;
}

/* Sends a command and expects a reply of class 2 (or 3 for DATA). */
static int
sendmail_command(struct sendmail_conn *c, const char *cmd, uint16_t want, const char *what)
{
	struct smtp_reply r;
	if ((cmd != NULL && !sendmail_send_all(c->fd, cmd, strlen(cmd))) || !sendmail_reply(c, &r)) {
		fprintf(stderr, "sendmail: %s: the connection to ringmta broke\n", what);
		return EX_TEMPFAIL;
	}
	return r.code / 100 == want / 100 ? 0 : sendmail_refusal(what, &r);
}

/* The message through the dot-stuffer: bare CR and LF become CRLF, a leading '.' is doubled,
 * and ".\r\n" ends the data. */
static int
sendmail_body(struct sendmail_conn *c, const struct sendmail_msg *m)
{
	struct data_stuff st;
	struct data_stuff_out out = { .count = 0 };
	data_stuff_init(&st);
	for (uint32_t p = 0; p <= m->piece_count; p++) {
		struct slice in = p < m->piece_count ? m->pieces[p] : SLICE_LIT("");
		bool last = p == m->piece_count;
		while (in.len > 0 || last) {
			size_t used = 0;
			if (last)
				data_stuff_end(&st, &out);
			else
				used = data_stuff_feed(&st, in, &out);
			in = slice_skip(in, used);
			for (uint32_t i = 0; i < out.count; i++) {
				if (!sendmail_send_all(c->fd, out.slices[i].ptr, out.slices[i].len))
					return EX_TEMPFAIL;
			}
			out.count = 0;
			last = false;
		}
	}
	return 0;
}

/* One transaction: EHLO, MAIL, every RCPT, DATA, the message; 0 only after the final 250. Any
 * refusal ends it (no recipient is sent a message that another could not get). */
static int
sendmail_transaction(struct sendmail_conn *c, const struct config *cfg, const char *sender,
	const struct sendmail_msg *m)
{
	char cmd[SENDMAIL_CMD_MAX + CONFIG_STR_MAX];
	int rc = sendmail_command(c, NULL, 220, "greeting");
	snprintf(cmd, sizeof(cmd), "EHLO %s\r\n", cfg->myhostname);
	if (rc == 0)
		rc = sendmail_command(c, cmd, 250, "EHLO");
	bool eight_bit = false;
	for (uint32_t p = 0; p < m->piece_count && !eight_bit; p++) {
		for (size_t i = 0; i < m->pieces[p].len && !eight_bit; i++)
			eight_bit = m->pieces[p].ptr[i] >= 0x80;
	}
	snprintf(cmd, sizeof(cmd), "MAIL FROM:<%s>%s\r\n", sender, eight_bit ? " BODY=8BITMIME"
		: "");
	if (rc == 0)
		rc = sendmail_command(c, cmd, 250, "MAIL FROM");
	for (uint32_t i = 0; i < sendmail_rcpt_count && rc == 0; i++) {
		const struct mail_header_addr *a = &sendmail_rcpts[i];
		snprintf(cmd, sizeof(cmd), "RCPT TO:<%.*s>\r\n", (int)a->len, (const char *)a->text);
		char what[SENDMAIL_CMD_MAX];
		snprintf(what, sizeof(what), "RCPT TO:<%.*s>", (int)a->len, (const char *)a->text);
		rc = sendmail_command(c, cmd, 250, what);
	}
	if (rc == 0)
		rc = sendmail_command(c, "DATA\r\n", 354, "DATA");
	if (rc == 0)
		rc = sendmail_body(c, m);
	if (rc == 0)
		rc = sendmail_command(c, NULL, 250, "end of data");
	(void)sendmail_send_all(c->fd, "QUIT\r\n", 6);
	return rc;
}

/* The envelope sender: -f (with or without <>; "" or "<>" is the null sender), else the login
 * name at myhostname. */
static int
sendmail_sender(const struct sendmail_opts *o, const char *login_addr, char *out, size_t cap)
{
	const char *s = o->sender != NULL ? o->sender : login_addr;
	size_t len = strlen(s);
	if (len >= 2 && s[0] == '<' && s[len - 1] == '>') {
		s++;
		len -= 2;
	}
	if (len > 0 && !sendmail_addr_ok((const uint8_t *)s, len))
		return sendmail_usage("-f: not a usable address");
	snprintf(out, cap, "%.*s", (int)len, s);
	return 0;
}

/* -bs: the caller speaks SMTP on stdin and stdout, relayed to the daemon as they are (the
 * daemon's own parser and limits apply). At the end of stdin the daemon still answers what was
 * pipelined: the socket is half-closed only once it has been quiet for SENDMAIL_BS_QUIET_MS (a
 * dialog without QUIT), and the relay ends when the daemon closes. */
static int
sendmail_smtp(const struct config *cfg)
{
	struct sendmail_conn *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return EX_OSERR;
	if (sendmail_connect(cfg, c) != 0) {
		fputs("421 4.3.0 ringmta is not running, try again later\r\n", stdout);
		free(c);
		return EX_TEMPFAIL;
	}
	struct pollfd pf[2] = { { .fd = STDIN_FILENO, .events = POLLIN },
		{ .fd = c->fd, .events = POLLIN } };
	uint8_t buf[16384];
	int rc = 0;
	bool half_closed = false;
	while (rc == 0) {
		int wait_ms = pf[0].fd < 0 && !half_closed ? (int)SENDMAIL_BS_QUIET_MS
			: (int)SENDMAIL_TIMEOUT_S * 1000;
		int n_ready = poll(pf, 2, wait_ms);
		if (n_ready == 0 && pf[0].fd < 0 && !half_closed) {
			shutdown(c->fd, SHUT_WR);
			half_closed = true;
			continue;
		}
		if (n_ready <= 0)
			rc = EX_TEMPFAIL;
		for (int i = 0; i < 2 && rc == 0; i++) {
			if (pf[i].fd < 0 || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR)))
				continue;
			ssize_t n = read(pf[i].fd, buf, sizeof(buf));
			if (n <= 0 && i == 1)
				rc = -1;   /* the daemon closed the session: done */
			else if (n <= 0)
				pf[0].fd = -1;
			else if (!sendmail_send_all(i == 0 ? c->fd : STDOUT_FILENO, buf, (size_t)n))
				rc = i == 0 ? EX_TEMPFAIL : EX_IOERR;
		}
	}
	close(c->fd);
	free(c);
	return rc == -1 ? 0 : rc;
}

/* `ringmta queue list` or `ringmta queue flush` (with -c when sendmail had -C). */
static int
sendmail_queue(const char *what, const char *config_file)
{
	char *argv[] = { "ringmta", "queue", (char *)what, NULL, NULL, NULL };
	if (config_file != NULL) {
		argv[3] = "-c";
		argv[4] = (char *)config_file;
	}
	execv("/proc/self/exe", argv);
	fprintf(stderr, "sendmail: ringmta queue %s: %s\n", what, strerror(errno));
	return EX_OSERR;
}

int
sendmail_mailq(int argc, char **argv)
{
	struct sendmail_opts o = { .mode = SENDMAIL_LIST };
	if (sendmail_parse(argc, argv, &o) != 0)
		return EX_USAGE;
	return sendmail_queue("list", o.config_file);
}

static int
sendmail_send(const struct sendmail_opts *o, const struct config *cfg)
{
	static struct sendmail_msg m;
	static struct sendmail_conn c;
	char login[256], gecos[SENDMAIL_NAME_MAX], login_addr[512], sender[512];
	sendmail_login(login, sizeof(login), gecos, sizeof(gecos));
	snprintf(login_addr, sizeof(login_addr), "%s@%s", login, cfg->myhostname);
	int rc = sendmail_sender(o, login_addr, sender, sizeof(sender));
	for (int i = 0; i < o->rcpt_count && rc == 0; i++)
		rc = sendmail_add_rcpt((const uint8_t *)o->rcpts[i], strlen(o->rcpts[i]));
	if (rc == 0)
		rc = sendmail_read(o, cfg, &m);
	if (rc == 0)
		rc = sendmail_headers(o, &m);
	if (rc == 0 && sendmail_rcpt_count == 0) {
		fprintf(stderr, "sendmail: no recipients%s\n", o->extract
			? " in the command line or in To:, Cc: or Bcc:" : " (give some, or use -t)");
		rc = o->extract ? EX_DATAERR : EX_USAGE;
	}
	if (rc == 0) {
		sendmail_add_fields(o, cfg, sender, login_addr, gecos, &m);
		rc = sendmail_connect(cfg, &c);
	}
	if (rc == 0) {
		rc = sendmail_transaction(&c, cfg, sender, &m);
		close(c.fd);
	}
	free(m.buf);
	return rc;
}

int
sendmail_main(int argc, char **argv)
{
	static struct config cfg;
	struct sendmail_opts o = { .mode = SENDMAIL_SEND };
	signal(SIGPIPE, SIG_IGN);   /* a daemon that goes away is an error return, not a kill */
	int rc = sendmail_parse(argc, argv, &o);
	if (rc != 0)
		return rc;
	if (o.mode == SENDMAIL_LIST || o.mode == SENDMAIL_FLUSH)
		return sendmail_queue(o.mode == SENDMAIL_LIST ? "list" : "flush", o.config_file);
	rc = sendmail_config(&o, &cfg);
	if (rc != 0)
		return rc;
	return o.mode == SENDMAIL_SMTP ? sendmail_smtp(&cfg) : sendmail_send(&o, &cfg);
}
