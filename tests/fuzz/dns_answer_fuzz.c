/* tests/fuzz/dns_answer_fuzz.c - the DNS answer parser (dns/packet.c) on random messages.
 *
 * The input is a DNS message. The question it is parsed against is taken from the message's
 * own header and first question when that question is written plainly (no pointer), so that
 * the fuzzer gets past the id and question checks into ldns and the record reading; otherwise
 * a fixed question is used. Checked: the parse never reads outside the input (ASan), every
 * record kept lies inside the answer's data, MX/PTR data are valid wire names, the final name
 * is valid, and an answer the cache keeps comes back from it unchanged. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dns/cache.h"
#include "dns/packet.h"

#define CHECK(cond) do { if (!(cond)) abort(); } while (0)

static struct dns_answer answer;

/* The first question of msg, if it is plain labels (RFC 1035 4.1.2). */
static bool
fuzz_question(const uint8_t *data, size_t size, struct dns_question *q)
{
	if (size < DNS_HEADER_LEN + DNS_QUESTION_LEN_MIN)
		return false;
	size_t p = DNS_HEADER_LEN;
	while (p < size && data[p] != 0 && data[p] <= DNS_LABEL_LEN_MAX)
		p += 1u + data[p];
	if (p + 4 >= size || data[p] != 0)
		return false;
	if (dns_name_from_wire(data + DNS_HEADER_LEN, p + 1 - DNS_HEADER_LEN, &q->qname) != 0)
		return false;
	q->id = (uint16_t)(data[0] << 8 | data[1]);
	q->qtype = (uint16_t)(data[p + 1] << 8 | data[p + 2]);
	return true;
}

static void
fuzz_check_answer(const struct dns_question *q)
{
	CHECK(answer.rr_count <= DNS_ANSWER_RRS_MAX);
	CHECK(answer.data_len <= DNS_ANSWER_DATA_MAX);
	CHECK(answer.final.len >= 1 && answer.final.len <= DNS_NAME_LEN_MAX);
	struct dns_name n;
	CHECK(dns_name_from_wire(answer.final.wire, answer.final.len, &n) == 0);
	for (uint32_t i = 0; i < answer.rr_count; i++) {
		const struct dns_rr *rr = &answer.rrs[i];
		CHECK(rr->off <= answer.data_len && rr->len <= answer.data_len - rr->off);
		if (q->qtype == DNS_TYPE_MX || q->qtype == DNS_TYPE_PTR)
			CHECK(dns_name_from_wire(answer.data + rr->off, rr->len, &n) == 0);
		if (q->qtype == DNS_TYPE_A)
			CHECK(rr->len == 4);
		if (q->qtype == DNS_TYPE_AAAA)
			CHECK(rr->len == 16);
	}
}

static void
fuzz_cache(const struct dns_question *q)
{
	static const uint8_t key[DNS_CACHE_KEY_LEN] = "fuzz-cache-key!!";
	struct dns_cache *cache;
	CHECK(dns_cache_new(4, key, &cache) == 0);
	CHECK(dns_cache_put(cache, &q->qname, q->qtype, &answer, 1000) == 0);
	const struct dns_cache_entry *e = dns_cache_get(cache, &q->qname, q->qtype, 1000);
	bool kept = answer.ttl > 0 && ((answer.kind == DNS_ANSWER_DATA && !answer.rrs_dropped)
		|| answer.kind == DNS_ANSWER_NODATA || answer.kind == DNS_ANSWER_NXDOMAIN);
	CHECK(kept == (e != NULL));
	if (e != NULL) {
		CHECK(e->kind == answer.kind);
		CHECK(e->rr_count == answer.rr_count);
		for (uint32_t i = 0; i < e->rr_count; i++)
			CHECK(memcmp(e->data + e->rrs[i].off, answer.data + answer.rrs[i].off,
				answer.rrs[i].len) == 0);
		CHECK(dns_cache_get(cache, &q->qname, q->qtype, 1000 + (uint64_t)answer.ttl * 1000)
			== NULL);
	}
	dns_cache_free(cache);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct dns_question q;
	if (!fuzz_question(data, size, &q)) {
		q.id = 0;
		q.qtype = DNS_TYPE_MX;
		CHECK(dns_name_from_text(SLICE_LIT("example.test"), &q.qname) == 0);
	}
	/* A copy of exactly size octets, so that ASan sees any read past the end. */
	uint8_t *copy = malloc(size > 0 ? size : 1);
	CHECK(copy != NULL);
	if (size > 0)
		memcpy(copy, data, size);
	int rc = dns_packet_parse(slice_make(copy, size), &q, &answer);
	CHECK(rc == 0 || rc == -EPROTO || rc == -EBADMSG);
	if (rc == 0) {
		CHECK(dns_packet_check(slice_make(copy, size)) == 0);
		fuzz_check_answer(&q);
		fuzz_cache(&q);
	}
	free(copy);
	return 0;
}
