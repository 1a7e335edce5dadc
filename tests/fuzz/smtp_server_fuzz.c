/* tests/fuzz/smtp_server_fuzz.c - random bytes in random splits through the SMTP server.
 *
 * Input: a control byte (configuration and mode), two seed bytes for the split sizes, then the
 * stream. The driver behaves like the engine: it re-offers unconsumed bytes with the next ones
 * and answers every COMMIT and AUTH (the verdict from the seed), and STARTTLS by dropping what
 * follows it and starting the session over as TLS. Checked on every call: consumed <= offered; at most
 * SMTP_ACTIONS_MAX actions; replies well formed ("ddd[ -]" lines, one code, CRLF), contiguous,
 * with an enhanced code of their class (except greeting, HELO/EHLO answer, 354, 334); COMMIT,
 * AUTH and STARTTLS last; nothing read while one waits; credentials of 1..255 octets; a 235
 * only right after a verdict of 0;
 * nothing after CLOSE; a committed body is the sum of its BODY slices and within the limit;
 * less than a line left over when the server waits. In line mode (one command line offered at
 * a time) a line holding a NUL never gets a 2xx or 3xx answer. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/smtp_server.h"

#define FUZZ_HOST "fuzz.example"
#define FUZZ_STREAM_MAX (1u << 20)
#define FUZZ_CALLS_MAX 1000000u

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

struct fuzz {
	struct smtp_server s;
	struct smtp_server_config cfg;
	uint32_t rng;
	int commit_result;
	uint64_t body_sum;        /* BODY octets since BODY_BEGIN */
	bool body_open;
	bool closed;
	bool verdict_ok;          /* the last AUTH verdict was 0 and no reply has followed it */
	uint8_t sink;             /* reads every body octet, so ASan sees bad slices */
	uint8_t carry[FUZZ_STREAM_MAX];
};

static struct fuzz fz;

static enum smtp_rcpt_verdict
fuzz_rcpt_check(void *ctx, struct slice local, struct slice domain, bool quoted)
{
	uint32_t h = quoted ? 7 : 3;
	for (size_t i = 0; i < local.len; i++)
		h = h * 31 + local.ptr[i];
	for (size_t i = 0; i < domain.len; i++)
		h = h * 31 + domain.ptr[i];
	switch (h % 8) {
	case 5:
		return SMTP_RCPT_UNKNOWN_USER;
	case 6:
		return SMTP_RCPT_RELAY_DENIED;
	case 7:
		return SMTP_RCPT_TEMPFAIL;
	default:
		return SMTP_RCPT_OK;
	}
}

static uint32_t
fuzz_rand(void)
{
	fz.rng ^= fz.rng << 13;
	fz.rng ^= fz.rng >> 17;
	fz.rng ^= fz.rng << 5;
	return fz.rng;
}

static bool
fuzz_digit(uint8_t c)
{
	return c >= '0' && c <= '9';
}

/* "c.d{1,3}.d{1,3} " at the start of t. */
static bool
fuzz_enhanced(const uint8_t *t, size_t len, uint8_t cls)
{
	if (len < 6 || t[0] != cls || t[1] != '.')
		return false;
	size_t i = 2;
	for (int part = 0; part < 2; part++) {
		size_t start = i;
		while (i < len && fuzz_digit(t[i]) && i - start < 3)
			i++;
		if (i == start || i >= len || t[i] != (part == 0 ? '.' : ' '))
			return false;
		i++;
	}
	return true;
}

static void
fuzz_check_reply(struct slice r)
{
	CHECK(r.len >= 6);
	CHECK(r.ptr[r.len - 2] == '\r' && r.ptr[r.len - 1] == '\n');
	CHECK(r.ptr[0] >= '2' && r.ptr[0] <= '5' && fuzz_digit(r.ptr[1]) && fuzz_digit(r.ptr[2]));
	size_t i = 0;
	bool last = false;
	while (i < r.len) {
		CHECK(!last);
		const uint8_t *lf = memchr(r.ptr + i, '\n', r.len - i);
		CHECK(lf != NULL);
		const uint8_t *line = r.ptr + i;
		size_t len = (size_t)(lf - line);
		CHECK(len >= 5 && line[len - 1] == '\r');
		len--;
		CHECK(memcmp(line, r.ptr, 3) == 0);
		CHECK(line[3] == ' ' || line[3] == '-');
		for (size_t k = 0; k < len; k++)
			CHECK(line[k] >= ' ' && line[k] < 0x7f);
		last = line[3] == ' ';
		bool exempt = memcmp(line, "354", 3) == 0 || memcmp(line, "334", 3) == 0
			|| ((memcmp(line, "220", 3) == 0
			|| memcmp(line, "250", 3) == 0) && len >= 4 + sizeof(FUZZ_HOST) - 1
			&& memcmp(line + 4, FUZZ_HOST, sizeof(FUZZ_HOST) - 1) == 0);
		if (i == 0 && !exempt)
			CHECK(fuzz_enhanced(line + 4, len - 4, line[0]));
		i = (size_t)(lf - r.ptr) + 1;
	}
	CHECK(last);
}

static void
fuzz_check_commit(void)
{
	const struct smtp_envelope *env = smtp_server_envelope(&fz.s);
	CHECK(fz.body_open);
	CHECK(env->rcpt_count >= 1 && env->rcpt_count <= fz.cfg.max_recipients);
	CHECK(env->body_size == fz.body_sum);
	CHECK(env->body_size <= fz.cfg.max_message_size);
	CHECK(env->helo.len > 0);
	for (uint32_t i = 0; i < env->rcpt_count; i++) {
		struct smtp_rcpt r = smtp_server_rcpt(&fz.s, i);
		CHECK(r.path.len > 0);
		CHECK(r.domain.ptr >= r.path.ptr);
		CHECK(r.domain.ptr + r.domain.len <= r.path.ptr + r.path.len);
		for (size_t k = 0; k < r.orcpt.len; k++)
			fz.sink ^= r.orcpt.ptr[k];
		for (size_t k = 0; k < r.local_part.len; k++)
			fz.sink ^= r.local_part.ptr[k];
	}
	fz.body_open = false;
}

enum fuzz_wait { FUZZ_WAIT_NONE, FUZZ_WAIT_COMMIT, FUZZ_WAIT_AUTH, FUZZ_WAIT_TLS };

/* Checks one call's actions; returns what the server waits for after them. */
static enum fuzz_wait
fuzz_actions(const struct smtp_actions *acts, bool nul_line)
{
	const uint8_t *reply_end = NULL;
	CHECK(acts->count <= SMTP_ACTIONS_MAX);
	for (uint32_t i = 0; i < acts->count; i++) {
		const struct smtp_action *a = &acts->items[i];
		CHECK(!fz.closed);
		switch (a->type) {
		case SMTP_ACTION_REPLY:
			fuzz_check_reply(a->data);
			CHECK(reply_end == NULL || a->data.ptr == reply_end);
			reply_end = a->data.ptr + a->data.len;
			if (nul_line)
				CHECK(a->data.ptr[0] == '4' || a->data.ptr[0] == '5');
			if (memcmp(a->data.ptr, "235", 3) == 0)
				CHECK(fz.verdict_ok);
			fz.verdict_ok = false;
			break;
		case SMTP_ACTION_BODY_BEGIN:
			fz.body_open = true;
			fz.body_sum = 0;
			break;
		case SMTP_ACTION_BODY:
			CHECK(fz.body_open);
			for (size_t k = 0; k < a->data.len; k++)
				fz.sink ^= a->data.ptr[k];
			fz.body_sum += a->data.len;
			break;
		case SMTP_ACTION_BODY_DISCARD:
			fz.body_open = false;
			break;
		case SMTP_ACTION_COMMIT:
			CHECK(i + 1 == acts->count);
			fuzz_check_commit();
			return FUZZ_WAIT_COMMIT;
		case SMTP_ACTION_AUTH:
			CHECK(i + 1 == acts->count);
			return FUZZ_WAIT_AUTH;
		case SMTP_ACTION_STARTTLS:
			CHECK(i + 1 == acts->count);
			return FUZZ_WAIT_TLS;
		case SMTP_ACTION_CLOSE:
			fz.closed = true;
			break;
		}
	}
	return FUZZ_WAIT_NONE;
}

/* The engine's part after an AUTH action: a verdict on well-formed credentials. */
static void
fuzz_auth(struct smtp_actions *acts)
{
	static const int verdicts[] = { 0, -EACCES, -EACCES, -EIO };
	struct slice user, password;
	smtp_server_auth_credentials(&fz.s, &user, &password);
	CHECK(user.len >= 1 && user.len <= SMTP_AUTH_FIELD_LEN_MAX);
	CHECK(password.len >= 1 && password.len <= SMTP_AUTH_FIELD_LEN_MAX);
	CHECK(memchr(password.ptr, 0, password.len) == NULL);
	for (size_t k = 0; k < user.len; k++)
		fz.sink ^= user.ptr[k];
	int verdict = verdicts[fuzz_rand() % ARRAY_LEN(verdicts)];
	fz.verdict_ok = verdict == 0;
	smtp_server_auth_done(&fz.s, verdict, acts);
	fuzz_actions(acts, false);
	CHECK(!fz.verdict_ok || smtp_server_authenticated(&fz.s));
}

/* In line mode only one command line is offered at a time, so its replies are known. */
static size_t
fuzz_offer_len(bool line_mode, size_t len, bool *nul_line)
{
	*nul_line = false;
	const struct smtp_server *s = &fz.s;
	if (!line_mode || s->state == SMTP_STATE_DATA || s->state == SMTP_STATE_BDAT
		|| s->skip_left > 0 || s->discard_line)
		return len;
	const uint8_t *lf = memchr(fz.carry, '\n', len);
	if (lf == NULL)
		return len;
	size_t n = (size_t)(lf - fz.carry) + 1;
	*nul_line = n <= SMTP_CMD_LINE_LEN_MAX && memchr(fz.carry, 0, n) != NULL;
	return n;
}

static void
fuzz_pump(size_t *len, bool line_mode)
{
	for (uint32_t calls = 0; calls < FUZZ_CALLS_MAX; calls++) {
		bool nul_line;
		size_t offer = fuzz_offer_len(line_mode, *len, &nul_line);
		struct smtp_actions acts = { .count = 0 };
		size_t n = smtp_server_feed(&fz.s, slice_make(fz.carry, offer), &acts);
		CHECK(n <= offer);
		if (fz.closed)
			CHECK(n == 0 && acts.count == 0);
		enum fuzz_wait wait = fuzz_actions(&acts, nul_line && n == offer);
		memmove(fz.carry, fz.carry + n, *len - n);
		*len -= n;
		if (wait != FUZZ_WAIT_NONE) {
			acts.count = 0;
			CHECK(smtp_server_feed(&fz.s, slice_make(fz.carry, *len), &acts) == 0);
			CHECK(acts.count == 0);
		}
		if (wait == FUZZ_WAIT_COMMIT) {
			smtp_server_committed(&fz.s, fz.commit_result, SLICE_LIT("FUZZQID"), &acts);
			fuzz_actions(&acts, false);
			continue;
		}
		if (wait == FUZZ_WAIT_AUTH) {
			fuzz_auth(&acts);
			continue;
		}
		if (wait == FUZZ_WAIT_TLS) {
			*len = 0;   /* plaintext pipelined after STARTTLS is dropped */
			smtp_server_tls_started(&fz.s);
			CHECK(smtp_server_tls_active(&fz.s));
			continue;
		}
		if (n == 0 && acts.count == 0)
			break;
	}
	if (!fz.closed && fz.s.state != SMTP_STATE_COMMIT_WAIT)
		CHECK(*len < SMTP_CMD_LINE_LEN_MAX);
}

static void
fuzz_setup(uint8_t ctl)
{
	static const int results[] = { 0, 0, -ENOSPC, -EIO };
	fz.cfg = (struct smtp_server_config){
		.hostname = SLICE_LIT(FUZZ_HOST),
		.max_message_size = (ctl & 1) ? 300 : 100000,
		.max_recipients = (ctl & 2) ? 2 : 100,
		.bad_cmd_max = (ctl & 4) ? 3 : 1000,
		.rcpt_check = fuzz_rcpt_check,
		.starttls_offered = (ctl & 8) != 0,
		.auth_offered = (ctl & 8) != 0,
	};
	fz.commit_result = results[(ctl >> 5) & 3];
	fz.body_open = false;
	fz.closed = false;
	fz.verdict_ok = false;
	smtp_server_init(&fz.s, &fz.cfg, NULL);
	struct smtp_actions acts = { .count = 0 };
	smtp_server_start(&fz.s, &acts);
	fuzz_actions(&acts, false);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3 || size - 3 > FUZZ_STREAM_MAX)
		return 0;
	uint8_t ctl = data[0];
	fz.rng = (uint32_t)data[1] << 8 | data[2] | 0x10000u;
	bool line_mode = (ctl & 16) != 0;
	fuzz_setup(ctl);
	size_t pos = 3;
	size_t len = 0;
	while (pos < size && !fz.closed) {
		uint32_t r = fuzz_rand();
		size_t chunk = (r & 3) == 0 ? size - pos : 1 + (r >> 8) % ((r & 4) ? 8 : 200);
		if (chunk > size - pos)
			chunk = size - pos;
		memcpy(fz.carry + len, data + pos, chunk);
		len += chunk;
		pos += chunk;
		fuzz_pump(&len, line_mode);
	}
	if (!fz.closed && fz.s.state != SMTP_STATE_COMMIT_WAIT) {
		struct smtp_actions acts = { .count = 0 };
		if (ctl & 128)
			smtp_server_timeout(&fz.s, &acts);
		else
			smtp_server_shutdown(&fz.s, &acts);
		fuzz_actions(&acts, false);
		CHECK(fz.closed);
	}
	return 0;
}
