/* tests/fuzz/smtp_auth_fuzz.c - the AUTH exchange on random input.
 *
 * Input: a control byte, two seed bytes, then a stream of lines. Two oracles:
 *   - every line goes to smtp_auth_base64_decode; the decoder is strict, so whatever it accepts
 *     must re-encode (reference encoder here) to exactly the line;
 *   - the stream, in random splits, goes to a session over (implicit) TLS with AUTH offered, as
 *     the engine would feed it after "EHLO". Checked: consumed <= offered; replies are CRLF
 *     lines of one 2xx..5xx code; AUTH is the last action and nothing is read until the verdict;
 *     the credentials are 1..255 octets with no NUL in the password; a 235 only follows a
 *     verdict of 0; after the session says "authenticated" no other AUTH is ever checked; the
 *     password is wiped after each verdict; at most SMTP_AUTH_FAILURES_MAX 535s, then CLOSE. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/smtp_auth.h"
#include "proto/smtp_server.h"

#define FUZZ_STREAM_MAX (1u << 16)
#define FUZZ_CALLS_MAX 100000u

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

struct fuzz {
	struct smtp_server s;
	struct smtp_server_config cfg;
	uint32_t rng;
	bool closed;
	bool verdict_ok;
	uint32_t checks_after_success;
	uint32_t fails;             /* 535 replies */
	uint8_t sink;
	uint8_t carry[FUZZ_STREAM_MAX + 64];   /* room for the EHLO put in front */
};

static struct fuzz fz;

static enum smtp_rcpt_verdict
fuzz_rcpt_check(void *ctx, struct slice local, struct slice domain, bool quoted)
{
	return SMTP_RCPT_OK;
}

static uint32_t
fuzz_rand(void)
{
	fz.rng ^= fz.rng << 13;
	fz.rng ^= fz.rng >> 17;
	fz.rng ^= fz.rng << 5;
	return fz.rng;
}

static size_t
fuzz_b64(const uint8_t *in, size_t len, char *out)
{
	static const char abc[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;
	for (size_t i = 0; i < len; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < len)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < len)
			v |= in[i + 2];
		out[o++] = abc[v >> 18 & 63];
		out[o++] = abc[v >> 12 & 63];
		out[o++] = i + 1 < len ? abc[v >> 6 & 63] : '=';
		out[o++] = i + 2 < len ? abc[v & 63] : '=';
	}
	return o;
}

static void
fuzz_base64_line(struct slice line)
{
	static uint8_t out[SMTP_AUTH_DECODED_MAX];
	static char again[SMTP_AUTH_RESPONSE_LEN_MAX + 4];
	size_t n = 0;
	if (!smtp_auth_base64_decode(line, out, sizeof(out), &n))
		return;
	CHECK(n <= sizeof(out));
	CHECK(fuzz_b64(out, n, again) == line.len);
	CHECK(memcmp(again, line.ptr, line.len) == 0);
}

static void
fuzz_check_reply(struct slice r)
{
	CHECK(r.len >= 6);
	CHECK(r.ptr[r.len - 2] == '\r' && r.ptr[r.len - 1] == '\n');
	CHECK(r.ptr[0] >= '2' && r.ptr[0] <= '5');
	for (size_t i = 0; i < r.len; i++)
		CHECK((r.ptr[i] >= ' ' && r.ptr[i] < 0x7f) || r.ptr[i] == '\r' || r.ptr[i] == '\n');
	if (memcmp(r.ptr, "235", 3) == 0)
		CHECK(fz.verdict_ok);
	if (memcmp(r.ptr, "535", 3) == 0)
		CHECK(++fz.fails <= SMTP_AUTH_FAILURES_MAX);
	fz.verdict_ok = false;
}

enum fuzz_wait { FUZZ_WAIT_NONE, FUZZ_WAIT_AUTH, FUZZ_WAIT_COMMIT };

/* Returns what the server now waits for. */
static enum fuzz_wait
fuzz_actions(const struct smtp_actions *acts)
{
	const uint8_t *end = NULL;
	CHECK(acts->count <= SMTP_ACTIONS_MAX);
	for (uint32_t i = 0; i < acts->count; i++) {
		const struct smtp_action *a = &acts->items[i];
		CHECK(!fz.closed);
		if (a->type == SMTP_ACTION_REPLY) {
			fuzz_check_reply(a->data);
			CHECK(end == NULL || a->data.ptr == end);
			end = a->data.ptr + a->data.len;
		} else if (a->type == SMTP_ACTION_AUTH) {
			CHECK(i + 1 == acts->count);
			return FUZZ_WAIT_AUTH;
		} else if (a->type == SMTP_ACTION_COMMIT) {
			CHECK(i + 1 == acts->count);
			return FUZZ_WAIT_COMMIT;
		} else if (a->type == SMTP_ACTION_CLOSE) {
			fz.closed = true;
		} else if (a->type == SMTP_ACTION_BODY) {
			for (size_t k = 0; k < a->data.len; k++)
				fz.sink ^= a->data.ptr[k];
		}
		CHECK(a->type != SMTP_ACTION_STARTTLS);   /* TLS is already up */
	}
	return FUZZ_WAIT_NONE;
}

static void
fuzz_verdict(void)
{
	static const int verdicts[] = { 0, -EACCES, -EACCES, -EIO };
	struct slice user, password;
	smtp_server_auth_credentials(&fz.s, &user, &password);
	CHECK(user.len >= 1 && user.len <= SMTP_AUTH_FIELD_LEN_MAX);
	CHECK(password.len >= 1 && password.len <= SMTP_AUTH_FIELD_LEN_MAX);
	CHECK(memchr(password.ptr, 0, password.len) == NULL);
	if (smtp_server_authenticated(&fz.s))
		fz.checks_after_success++;
	CHECK(fz.checks_after_success == 0);
	int verdict = verdicts[fuzz_rand() % ARRAY_LEN(verdicts)];
	fz.verdict_ok = verdict == 0;
	struct smtp_actions acts = { .count = 0 };
	smtp_server_auth_done(&fz.s, verdict, &acts);
	for (size_t k = 0; k < sizeof(fz.s.auth.password); k++)
		CHECK(fz.s.auth.password[k] == 0);
	fuzz_actions(&acts);
}

static void
fuzz_pump(size_t *len)
{
	for (uint32_t calls = 0; calls < FUZZ_CALLS_MAX && !fz.closed; calls++) {
		struct smtp_actions acts = { .count = 0 };
		size_t n = smtp_server_feed(&fz.s, slice_make(fz.carry, *len), &acts);
		CHECK(n <= *len);
		enum fuzz_wait wait = fuzz_actions(&acts);
		memmove(fz.carry, fz.carry + n, *len - n);
		*len -= n;
		if (wait != FUZZ_WAIT_NONE) {
			acts.count = 0;
			CHECK(smtp_server_feed(&fz.s, slice_make(fz.carry, *len), &acts) == 0);
			CHECK(acts.count == 0);
		}
		if (wait == FUZZ_WAIT_AUTH) {
			fuzz_verdict();
			continue;
		}
		if (wait == FUZZ_WAIT_COMMIT) {
			smtp_server_committed(&fz.s, 0, SLICE_LIT("FUZZQID"), &acts);
			fuzz_actions(&acts);
			continue;
		}
		if (n == 0 && acts.count == 0)
			break;
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 3 || size - 3 > FUZZ_STREAM_MAX)
		return 0;
	struct slice stream = slice_make(data + 3, size - 3);
	for (struct slice rest = stream; rest.len > 0;) {
		const uint8_t *lf = memchr(rest.ptr, '\n', rest.len);
		size_t n = lf != NULL ? (size_t)(lf - rest.ptr) : rest.len;
		struct slice line = slice_sub(rest, 0, n);
		if (line.len > 0 && line.ptr[line.len - 1] == '\r')
			line.len--;
		fuzz_base64_line(line);
		rest = slice_skip(rest, lf != NULL ? n + 1 : n);
	}
	uint8_t ctl = data[0];
	fz.rng = (uint32_t)data[1] << 8 | data[2] | 0x10000u;
	fz.cfg = (struct smtp_server_config){
		.hostname = SLICE_LIT("fuzz.example"),
		.max_message_size = 100000,
		.max_recipients = 10,
		.bad_cmd_max = (ctl & 1) ? 3 : 1000,
		.rcpt_check = fuzz_rcpt_check,
		.auth_offered = true,
		.auth_required = (ctl & 2) != 0,
	};
	fz.closed = false;
	fz.verdict_ok = false;
	fz.checks_after_success = 0;
	fz.fails = 0;
	smtp_server_init(&fz.s, &fz.cfg, NULL);
	smtp_server_tls_started(&fz.s);
	struct smtp_actions acts = { .count = 0 };
	smtp_server_start(&fz.s, &acts);
	fuzz_actions(&acts);
	static const char ehlo[] = "EHLO fuzz.example\r\n";
	size_t len = 0;
	if (ctl & 4) {   /* most inputs get a session that may authenticate */
		memcpy(fz.carry, ehlo, sizeof(ehlo) - 1);
		len = sizeof(ehlo) - 1;
	}
	size_t pos = 0;
	while (pos < stream.len && !fz.closed) {
		uint32_t r = fuzz_rand();
		size_t chunk = (r & 3) == 0 ? stream.len - pos : 1 + (r >> 8) % ((r & 4) ? 8 : 100);
		if (chunk > stream.len - pos)
			chunk = stream.len - pos;
		memcpy(fz.carry + len, stream.ptr + pos, chunk);
		len += chunk;
		pos += chunk;
		fuzz_pump(&len);
	}
	if (!fz.closed) {
		acts.count = 0;
		smtp_server_shutdown(&fz.s, &acts);
		fuzz_actions(&acts);
		CHECK(fz.closed);
	}
	return 0;
}
