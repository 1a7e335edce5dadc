/* tests/fuzz/received_fuzz.c - what a client says, in the Received: header and the log lines.
 *
 * Input: 8 octets of time, 8 of queue id, a flags octet, then NUL-separated fields: HELO, client
 * address, recipient, sender, delivery detail (also, with flag 8, the local user's name of the
 * local form). Each goes where the daemon puts it: the Received:
 * field, Return-Path: (a sender the server accepts, at most RECEIVED_SENDER_MAX), the accepted
 * and delivery log lines. Checked: the header stays one field (CRLF only at line ends, every
 * continuation folded with a tab, no other control octet, the HELO shown only with the octets
 * a domain or an address literal has), Return-Path: is one line, and each log line is one line
 * of printable ASCII whose fields cannot be multiplied by what the values hold. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "base/log.h"
#include "proto/received.h"

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)
#define FUZZ_FIELDS           5u
#define FUZZ_HEAD            17u   /* time, queue id, flags */
#define FUZZ_ACCEPTED_FIELDS  8u   /* time event qid from size nrcpt client helo */
#define FUZZ_DELIVERY_FIELDS  8u   /* time event qid to status delay dsn detail */

static uint64_t
fuzz_u64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

/* The header is one field: CR only before LF, LF only after CR, a tab after each inner CRLF,
 * no other control octet. */
static void
fuzz_check_field(const uint8_t *h, size_t n)
{
	CHECK(n >= 2 && h[n - 2] == '\r' && h[n - 1] == '\n');
	for (size_t i = 0; i < n; i++) {
		if (h[i] == '\r')
			CHECK(i + 1 < n && h[i + 1] == '\n');
		else if (h[i] == '\n')
			CHECK(i > 0 && h[i - 1] == '\r' && (i + 1 == n || h[i + 1] == '\t'));
		else
			CHECK(h[i] == '\t' || (h[i] >= 0x20 && h[i] != 0x7f));
	}
}

static void
fuzz_received(const struct received_info *info)
{
	static uint8_t h[RECEIVED_LEN_MAX];
	size_t n = received_format(h, sizeof(h), info);
	CHECK(n <= RECEIVED_LEN_MAX);
	fuzz_check_field(h, n);
	static const char from[] = "Received: from ";
	static const char local[] = "Received: by mx.example.test (ringmta, from user ";
	const char *lead = info->local_user.len > 0 ? local : from;
	size_t lead_len = strlen(lead);
	CHECK(n > lead_len && memcmp(h, lead, lead_len) == 0);
	/* The HELO name (or the user's) runs to the first blank or ')': only octets a domain or a
	 * literal holds. */
	for (size_t i = lead_len; i < n && h[i] != ' ' && h[i] != ')'; i++) {
		uint8_t c = h[i];
		CHECK((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
			|| c == '-' || c == '.' || c == '[' || c == ']' || c == ':' || c == '_');
	}
}

static void
fuzz_return_path(struct slice sender)
{
	static uint8_t h[RECEIVED_RETURN_PATH_MAX];
	if (sender.len > RECEIVED_SENDER_MAX)
		sender.len = RECEIVED_SENDER_MAX;   /* the server accepts no longer sender */
	size_t n = received_return_path(h, sizeof(h), sender);
	CHECK(n <= RECEIVED_RETURN_PATH_MAX);
	fuzz_check_field(h, n);
	CHECK(memchr(h, '\n', n) == h + n - 1);
	CHECK(memcmp(h, "Return-Path: <", 14) == 0 && h[n - 3] == '>');
}

/* One line of printable ASCII; unless cut, exactly `fields` blank-separated fields outside the
 * one quoted value (whose own quotes are escaped, so there are two). */
static void
fuzz_check_line(const char *l, size_t n, uint32_t fields, bool quoted)
{
	CHECK(n > 0 && n <= LOG_LINE_MAX && l[n - 1] == '\n');
	uint32_t blanks = 0, quotes = 0;
	for (size_t i = 0; i + 1 < n; i++) {
		CHECK(l[i] >= 0x20 && l[i] < 0x7f);
		quotes += l[i] == '"';
		blanks += l[i] == ' ' && quotes % 2 == 0;
	}
	static const char cut[] = " truncated\n";
	if (n >= sizeof(cut) - 1 && memcmp(l + n - (sizeof(cut) - 1), cut, sizeof(cut) - 1) == 0)
		return;
	CHECK(blanks + 1 == fields);
	CHECK(quotes == (quoted ? 2u : 0u));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < FUZZ_HEAD)
		return 0;
	uint64_t now_ms = fuzz_u64(data);
	uint64_t qid = fuzz_u64(data + 8);
	uint8_t flags = data[16];
	struct slice f[FUZZ_FIELDS] = { { 0 } };
	struct slice rest = slice_make(data + FUZZ_HEAD, size - FUZZ_HEAD);
	for (uint32_t i = 0; i < FUZZ_FIELDS && rest.len > 0; i++) {
		const uint8_t *nul = memchr(rest.ptr, 0, rest.len);
		size_t len = nul == NULL ? rest.len : (size_t)(nul - rest.ptr);
		f[i] = slice_sub(rest, 0, len);
		rest = slice_skip(rest, nul == NULL ? len : len + 1);
	}
	struct slice helo = f[0], client = f[1], rcpt = f[2], sender = f[3], detail = f[4];
	fuzz_received(&(struct received_info){
		.helo = helo,
		.client_addr = client,
		.local_user = flags & 8u ? detail : SLICE_LIT(""),
		.myhostname = SLICE_LIT("mx.example.test"),
		.protocol = received_protocol(flags & 1u, flags & 2u, flags & 4u),
		.queue_id = qid,
		.for_rcpt = rcpt,
		.now_ms = now_ms,
	});
	fuzz_return_path(sender);
	static char line[LOG_LINE_MAX];
	size_t n = log_format_accepted(line, sizeof(line), now_ms, qid, sender, size, flags,
		client, helo);
	fuzz_check_line(line, n, FUZZ_ACCEPTED_FIELDS, false);
	n = log_format_delivery(line, sizeof(line), now_ms, qid, rcpt, (enum log_status)(flags % 4u),
		now_ms % 100000u, SLICE_LIT("4.3.0"), detail);
	fuzz_check_line(line, n, FUZZ_DELIVERY_FIELDS, true);
	return 0;
}
