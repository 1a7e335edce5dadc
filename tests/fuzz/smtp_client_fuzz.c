/* tests/fuzz/smtp_client_fuzz.c - random server bytes in random splits through the SMTP client.
 *
 * Input: a control byte (STARTTLS wanted, BDAT chosen, 8-bit and SMTPUTF8 needed, how the run
 * ends), a recipient count byte, two seed bytes for the split sizes, then the server's stream.
 * The driver behaves like the engine: it re-offers unconsumed bytes, gives a transaction at
 * every READY (three, then QUIT), the body in pieces at every BODY, "TLS up" at STARTTLS, and
 * ends the session with a timeout, a lost connection or a quit when the stream runs out.
 *
 * Checked on every call: consumed <= offered; at most SMTP_CLIENT_ACTIONS_MAX actions; nothing
 * after CLOSE; READY, BODY, STARTTLS last; command SENDs are whole CRLF lines with no other CR or
 * LF; results have a code 200..599, an enhanced code of their class, text without control
 * octets, and resolve each recipient of each transaction exactly once; at the end the session is
 * closed with every recipient resolved. The stream is run twice, whole and in random pieces, and
 * both runs must send the same bytes and give the same results. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/smtp_client.h"

#define FUZZ_STREAM_MAX (1u << 18)
#define FUZZ_TXNS 3u
#define FUZZ_RCPTS_MAX 40u
#define FUZZ_CALLS_MAX 1000000u
#define FUZZ_DIGEST_SEED 2166136261u

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct fuzz {
	struct smtp_client c;
	struct smtp_client_config cfg;
	struct smtp_client_txn txns[FUZZ_TXNS];
	struct smtp_client_rcpt rcpts[FUZZ_RCPTS_MAX];
	uint8_t resolved[FUZZ_TXNS][FUZZ_RCPTS_MAX];
	uint32_t ntxns;
	bool txn_open;
	bool closed;
	bool in_body;
	uint32_t digest;
	uint8_t carry[FUZZ_STREAM_MAX];
};

static struct fuzz fz;
static const char fuzz_body[] = ".dot first\r\nline two\r\n.\r\nbare\nlf and cr\r. end";
static char fuzz_paths[FUZZ_RCPTS_MAX][24];

static void
fuzz_mix(const void *p, size_t n)
{
	const uint8_t *b = p;
	for (size_t i = 0; i < n; i++)
		fz.digest = (fz.digest ^ b[i]) * 16777619u;
}

static void fuzz_actions(const struct smtp_client_actions *acts);

static void
fuzz_commands(struct slice s)
{
	CHECK(s.len >= 2 && s.ptr[s.len - 2] == '\r' && s.ptr[s.len - 1] == '\n');
	for (size_t i = 0; i + 1 < s.len; i++) {
		if (s.ptr[i] == '\r')
			CHECK(s.ptr[i + 1] == '\n');
		if (s.ptr[i] == '\n')
			CHECK(i > 0 && s.ptr[i - 1] == '\r');
	}
}

static void
fuzz_resolve(const struct smtp_client_result *r)
{
	CHECK(r->code >= 200 && r->code <= 599);
	CHECK(r->enhanced.cls == r->code / 100);
	CHECK(r->text.len <= SMTP_CLIENT_TEXT_BUF_SIZE);
	for (size_t i = 0; i < r->text.len; i++)
		CHECK(r->text.ptr[i] >= 0x20 && r->text.ptr[i] != 0x7f);
	fuzz_mix(&r->scope, sizeof(r->scope));
	fuzz_mix(&r->code, sizeof(r->code));
	fuzz_mix(&r->rcpt_count, sizeof(r->rcpt_count));
	fuzz_mix(r->text.ptr, r->text.len);
	uint32_t k = fz.ntxns - 1;
	if (r->scope == SMTP_CLIENT_SCOPE_RCPT) {
		CHECK(fz.txn_open && r->rcpt_count == 1 && r->rcpt < fz.txns[k].rcpt_count);
		CHECK(fz.resolved[k][r->rcpt] == 0);
		fz.resolved[k][r->rcpt] = 1;
		return;
	}
	if (!fz.txn_open) {
		CHECK(r->rcpt_count == 0 && r->scope == SMTP_CLIENT_SCOPE_CONNECTION);
		return;
	}
	uint32_t left = 0;
	for (uint32_t i = 0; i < fz.txns[k].rcpt_count; i++) {
		left += fz.resolved[k][i] == 0;
		fz.resolved[k][i] = 1;
	}
	CHECK(r->rcpt_count == left);
	fz.txn_open = false;
}

static void
fuzz_body_send(void)
{
	struct slice body = { (const uint8_t *)fuzz_body, fz.txns[fz.ntxns - 1].body_size };
	size_t off = 0, piece = 1 + (fz.digest % 23);
	for (uint32_t calls = 0; calls < FUZZ_CALLS_MAX; calls++) {
		size_t n = body.len - off < piece ? body.len - off : piece;
		bool last = off + n == body.len;
		struct smtp_client_actions acts = { .count = 0 };
		size_t used
			= smtp_client_body(&fz.c, (struct slice){ body.ptr + off, n }, last, &acts);
		CHECK(used <= n && (used > 0 || n == 0));
		off += used;
		fz.in_body = true;
		fuzz_actions(&acts);
		fz.in_body = false;
		if (last && used == n)
			return;
	}
	abort();
}

static void
fuzz_react(enum smtp_client_action_type type)
{
	struct smtp_client_actions acts = { .count = 0 };
	if (type == SMTP_CLIENT_ACTION_BODY) {
		fuzz_body_send();
		return;
	}
	if (type == SMTP_CLIENT_ACTION_STARTTLS) {
		smtp_client_tls_done(&fz.c, (fz.digest & 7) == 0 ? -EPROTO : 0, &acts);
	} else if (fz.ntxns < FUZZ_TXNS) {
		CHECK(!fz.txn_open);
		fz.txn_open = true;
		smtp_client_transaction(&fz.c, &fz.txns[fz.ntxns++], &acts);
	} else {
		smtp_client_quit(&fz.c, &acts);
	}
	fuzz_actions(&acts);
}

static void
fuzz_actions(const struct smtp_client_actions *acts)
{
	CHECK(acts->count <= SMTP_CLIENT_ACTIONS_MAX);
	enum smtp_client_action_type react = SMTP_CLIENT_ACTION_SEND;
	for (uint32_t i = 0; i < acts->count; i++) {
		const struct smtp_client_action *a = &acts->items[i];
		CHECK(!fz.closed);
		switch (a->type) {
		case SMTP_CLIENT_ACTION_SEND:
			CHECK(a->data.len > 0);
			if (!fz.in_body)
				fuzz_commands(a->data);
			fuzz_mix(a->data.ptr, a->data.len);
			break;
		case SMTP_CLIENT_ACTION_RESULT:
			fuzz_resolve(&a->result);
			break;
		case SMTP_CLIENT_ACTION_CLOSE:
			fz.closed = true;
			fuzz_mix("C", 1);
			break;
		default:
			CHECK(i + 1 == acts->count);
			react = a->type;
			fuzz_mix(&a->type, sizeof(a->type));
			break;
		}
	}
	if (react != SMTP_CLIENT_ACTION_SEND)
		fuzz_react(react);
}

static void
fuzz_pump(size_t *len)
{
	for (uint32_t calls = 0; calls < FUZZ_CALLS_MAX; calls++) {
		struct smtp_client_actions acts = { .count = 0 };
		size_t n = smtp_client_feed(&fz.c, (struct slice){ fz.carry, *len }, &acts);
		CHECK(n <= *len);
		if (fz.closed)
			CHECK(n == 0 && acts.count == 0);
		memmove(fz.carry, fz.carry + n, *len - n);
		*len -= n;
		fuzz_actions(&acts);
		if (n == 0 && acts.count == 0)
			return;
	}
	abort();
}

static void
fuzz_setup(uint8_t ctl, uint8_t nrcpt)
{
	fz.cfg = (struct smtp_client_config){ .helo_name = { (const uint8_t *)"fuzz.test", 9 },
		.starttls = (ctl & 1) != 0 };
	uint32_t n = 1 + nrcpt % FUZZ_RCPTS_MAX;
	for (uint32_t i = 0; i < n; i++) {
		size_t len = 0;
		for (uint32_t v = i;; v /= 10) {   /* "r<i>@b.test", and one non-ASCII */
			fuzz_paths[i][len++] = (char)('0' + v % 10);
			if (v < 10)
				break;
		}
		memcpy(fuzz_paths[i] + len, i == 7 ? "@b\xc3\xa9.test" : "@b.test", i == 7 ? 9 : 7);
		len += i == 7 ? 9 : 7;
		uint8_t notify = i % 5 == 1 ? SMTP_DSN_NOTIFY_NEVER : i % 3 == 0
			? SMTP_DSN_NOTIFY_SUCCESS | SMTP_DSN_NOTIFY_DELAY : 0;
		struct slice orcpt = { (const uint8_t *)"rfc822;x@y.test", i % 2 ? 15 : 0 };
		fz.rcpts[i] = (struct smtp_client_rcpt){ .notify = notify, .orcpt = orcpt,
			.path = { (const uint8_t *)fuzz_paths[i], len } };
	}
	for (uint32_t k = 0; k < FUZZ_TXNS; k++) {
		fz.txns[k] = (struct smtp_client_txn){
			.mail_from = { (const uint8_t *)"s@a.test", k == 2 ? 0 : 8 },
			.rcpts = fz.rcpts + (k == 1 ? n / 2 : 0),
			.rcpt_count = k == 1 ? n - n / 2 : n,
			.body_size = k == 2 ? 0 : sizeof(fuzz_body) - 1 - k,
			.needs_8bitmime = (ctl & 4) != 0,
			.needs_smtputf8 = (ctl & 8) != 0 && k == 0,
			.use_bdat = (ctl & 2) != 0,
			.dsn_ret = (enum smtp_dsn_ret)(k % 3),
			.dsn_envid = { (const uint8_t *)"ENV+2Bx", k == 1 ? 7 : 0 },
		};
	}
	memset(fz.resolved, 0, sizeof(fz.resolved));
	fz.ntxns = 0;
	fz.txn_open = fz.closed = fz.in_body = false;
	fz.digest = FUZZ_DIGEST_SEED;
	smtp_client_init(&fz.c, &fz.cfg);
}

static uint32_t
fuzz_run(const uint8_t *data, size_t size, uint8_t ctl, uint8_t nrcpt, uint32_t rng)
{
	fuzz_setup(ctl, nrcpt);
	size_t pos = 0, len = 0;
	while (pos < size && !fz.closed) {
		size_t chunk = size - pos;
		if (rng != 0) {
			rng ^= rng << 13;
			rng ^= rng >> 17;
			rng ^= rng << 5;
			chunk = 1 + (rng >> 8) % ((rng & 4) ? 8 : 200);
			if (chunk > size - pos)
				chunk = size - pos;
		}
		memcpy(fz.carry + len, data + pos, chunk);
		len += chunk;
		pos += chunk;
		fuzz_pump(&len);
	}
	struct smtp_client_actions acts = { .count = 0 };
	if ((ctl >> 4) % 3 == 0)
		smtp_client_timeout(&fz.c, &acts);
	else if ((ctl >> 4) % 3 == 1)
		smtp_client_lost(&fz.c, 0, &acts);
	else
		smtp_client_quit(&fz.c, &acts);
	fuzz_actions(&acts);
	if (!fz.closed) {   /* a quit when idle waits for the 221: the server hangs up instead */
		acts.count = 0;
		smtp_client_lost(&fz.c, 0, &acts);
		fuzz_actions(&acts);
	}
	CHECK(fz.closed && !fz.txn_open && smtp_client_closed(&fz.c));
	return fz.digest;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4 || size - 4 > FUZZ_STREAM_MAX)
		return 0;
	uint8_t ctl = data[0], nrcpt = data[1];
	uint32_t rng = (uint32_t)data[2] << 8 | data[3] | 0x10000u;
	uint32_t whole = fuzz_run(data + 4, size - 4, ctl, nrcpt, 0);
	uint32_t split = fuzz_run(data + 4, size - 4, ctl, nrcpt, rng);
	CHECK(whole == split);
	return 0;
}
