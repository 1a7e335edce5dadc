/* tests/unit/dns_packet_test.c - queries built by ldns, answers checked and read, hostile ones
 * refused: compression loops, truncated records, oversize counts, wrong id or question. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "dns/packet.h"
#include "dns_wire.h"

static struct wire w;
static struct dns_answer *ans;
static struct dns_question q;

static void
setup(void)
{
	ans = malloc(sizeof(*ans));
	cr_assert_not_null(ans);
}

static void
teardown(void)
{
	free(ans);
}

TestSuite(dns_packet, .init = setup, .fini = teardown);

static void
ask(const char *name, uint16_t qtype, uint16_t id)
{
	cr_assert_eq(dns_name_from_text(slice_make(name, strlen(name)), &q.qname), 0);
	q.qtype = qtype;
	q.id = id;
}

static int
parse(void)
{
	return dns_packet_parse(slice_make(w.b, w.len), &q, ans);
}

/* An answer header for q with the question written back. */
static void
answer_start(uint32_t flags, uint32_t an, uint32_t ns, uint32_t ar, const char *qname)
{
	wire_header(&w, q.id, WIRE_QR | WIRE_RD | WIRE_RA | flags, 1, an, ns, ar);
	wire_question(&w, qname, q.qtype);
}

/* ---- queries ---- */

Test(dns_packet, query_has_id_rd_ad_one_question_and_edns_1232)
{
	ask("Example.COM", DNS_TYPE_MX, 0xbeef);
	uint8_t out[DNS_QUERY_LEN_MAX];
	int len = dns_packet_query(&q, out, sizeof(out));
	cr_assert_gt(len, DNS_HEADER_LEN);
	cr_assert_eq(dns_packet_check(slice_make(out, (size_t)len)), 0);
	cr_assert_eq(out[0], 0xbe);
	cr_assert_eq(out[1], 0xef);
	cr_assert(out[2] & 0x01, "RD");
	cr_assert_eq(out[2] & 0x80, 0, "QR clear");
	cr_assert(out[3] & 0x20, "AD (RFC 6840 5.7)");
	cr_assert_eq(out[4] << 8 | out[5], 1, "QDCOUNT");
	cr_assert_eq(out[10] << 8 | out[11], 1, "ARCOUNT: the OPT record");
	static const uint8_t qname[] = "\x07" "example" "\x03" "com";
	cr_assert_eq(memcmp(out + 12, qname, sizeof(qname)), 0, "lower-cased name");
	size_t p = 12 + sizeof(qname);
	cr_assert_eq(out[p] << 8 | out[p + 1], DNS_TYPE_MX);
	p += 4;
	cr_assert_eq(out[p], 0, "OPT owner is the root");
	cr_assert_eq(out[p + 1] << 8 | out[p + 2], DNS_TYPE_OPT);
	cr_assert_eq(out[p + 3] << 8 | out[p + 4], DNS_EDNS_PAYLOAD);
	cr_assert_eq((size_t)len, p + 11);
	dns_packet_set_id(out, 0x1234);
	cr_assert_eq(out[0] << 8 | out[1], 0x1234);
}

Test(dns_packet, query_too_small_buffer_is_enospc)
{
	ask("example.com", DNS_TYPE_A, 1);
	uint8_t out[20];
	cr_assert_eq(dns_packet_query(&q, out, sizeof(out)), -ENOSPC);
}

/* ---- answers ---- */

Test(dns_packet, a_records_with_minimum_ttl_and_ad)
{
	ask("host.test", DNS_TYPE_A, 7);
	answer_start(WIRE_AD, 2, 0, 0, "HOST.test");
	wire_ptr(&w, 12);
	size_t at = wire_rr_fixed(&w, DNS_TYPE_A, 300);
	wire_bytes(&w, "\x7f\x00\x00\x01", 4);
	wire_rr_end(&w, at);
	wire_a(&w, "host.test", 200, 127, 0, 0, 2);
	cr_assert_eq(parse(), 0);
	cr_assert_eq(ans->kind, DNS_ANSWER_DATA);
	cr_assert_eq(ans->rr_count, 2);
	cr_assert_eq(ans->ttl, 200);
	cr_assert(ans->ad);
	cr_assert_eq(memcmp(ans->data + ans->rrs[1].off, "\x7f\x00\x00\x02", 4), 0);
}

Test(dns_packet, mx_records_with_compressed_targets)
{
	ask("example.test", DNS_TYPE_MX, 9);
	answer_start(0, 2, 0, 0, "example.test");
	wire_ptr(&w, 12);
	size_t at = wire_rr_fixed(&w, DNS_TYPE_MX, 60);
	wire_u16(&w, 20);
	wire_u8(&w, 2);
	wire_bytes(&w, "mx", 2);
	wire_ptr(&w, 12);
	wire_rr_end(&w, at);
	wire_mx(&w, "example.test", 60, 10, "mx1.example.test");
	cr_assert_eq(parse(), 0);
	cr_assert_eq(ans->kind, DNS_ANSWER_DATA);
	cr_assert_eq(ans->rr_count, 2);
	cr_assert_eq(ans->rrs[0].pref, 20);
	struct dns_name n;
	cr_assert_eq(dns_name_from_wire(ans->data + ans->rrs[0].off, ans->rrs[0].len, &n), 0);
	char text[DNS_NAME_TEXT_MAX];
	dns_name_to_text(&n, text, sizeof(text));
	cr_assert_str_eq(text, "mx.example.test");
}

Test(dns_packet, cname_chain_in_answer_is_followed)
{
	ask("www.test", DNS_TYPE_A, 3);
	answer_start(0, 3, 0, 0, "www.test");
	wire_cname(&w, "www.test", 100, "alias.test");
	wire_cname(&w, "alias.test", 50, "real.test");
	wire_a(&w, "real.test", 300, 127, 0, 0, 9);
	cr_assert_eq(parse(), 0);
	cr_assert_eq(ans->kind, DNS_ANSWER_DATA);
	cr_assert_eq(ans->cname_count, 2);
	cr_assert_eq(ans->ttl, 50, "the chain's shortest TTL");
	cr_assert_eq(ans->rr_count, 1);
	char text[DNS_NAME_TEXT_MAX];
	dns_name_to_text(&ans->final, text, sizeof(text));
	cr_assert_str_eq(text, "real.test");
}

Test(dns_packet, cname_without_data_or_soa_asks_again)
{
	ask("www.test", DNS_TYPE_A, 3);
	answer_start(0, 1, 0, 0, "www.test");
	wire_cname(&w, "www.test", 100, "elsewhere.example");
	cr_assert_eq(parse(), 0);
	cr_assert_eq(ans->kind, DNS_ANSWER_CNAME);
	char text[DNS_NAME_TEXT_MAX];
	dns_name_to_text(&ans->final, text, sizeof(text));
	cr_assert_str_eq(text, "elsewhere.example");
}

Test(dns_packet, cname_loop_in_answer_is_bad)
{
	ask("a.test", DNS_TYPE_A, 3);
	answer_start(0, 2, 0, 0, "a.test");
	wire_cname(&w, "a.test", 100, "b.test");
	wire_cname(&w, "b.test", 100, "a.test");
	cr_assert_eq(parse(), 0);
	cr_assert_eq(ans->kind, DNS_ANSWER_BAD);
}

Test(dns_packet, cname_chain_at_and_past_the_limit)
{
	char owner[32], target[32];
	for (uint32_t links = DNS_CNAME_CHAIN_MAX; links <= DNS_CNAME_CHAIN_MAX + 1; links++) {
		ask("c0.test", DNS_TYPE_A, 3);
		answer_start(0, links + 1, 0, 0, "c0.test");
		for (uint32_t i = 0; i < links; i++) {
			snprintf(owner, sizeof(owner), "c%u.test", i);
			snprintf(target, sizeof(target), "c%u.test", i + 1);
			wire_cname(&w, owner, 100, target);
		}
		wire_a(&w, target, 100, 127, 0, 0, 1);
		cr_assert_eq(parse(), 0);
		enum dns_answer_kind want = links == DNS_CNAME_CHAIN_MAX ? DNS_ANSWER_DATA
			: DNS_ANSWER_BAD;
		cr_assert_eq(ans->kind, want, "%u links", links);
	}
}

Test(dns_packet, records_of_other_owners_are_ignored)
{
	ask("host.test", DNS_TYPE_A, 5);
	answer_start(0, 2, 0, 1, "host.test");
	wire_a(&w, "victim.example", 86400, 10, 6, 6, 6);
	wire_a(&w, "host.test", 60, 127, 0, 0, 5);
	wire_a(&w, "victim.example", 86400, 10, 6, 6, 7);
	cr_assert_eq(parse(), 0);
	cr_assert_eq(ans->rr_count, 1);
	cr_assert_eq(memcmp(ans->data + ans->rrs[0].off, "\x7f\x00\x00\x05", 4), 0);
}

Test(dns_packet, nxdomain_takes_ttl_from_soa_minimum)
{
	ask("nope.example.test", DNS_TYPE_MX, 11);
	wire_header(&w, q.id, WIRE_QR | WIRE_RD | WIRE_RA | 3, 1, 0, 1, 0);
	wire_question(&w, "nope.example.test", DNS_TYPE_MX);
	wire_soa(&w, "example.test", 3600, 120);
	cr_assert_eq(parse(), 0);
	cr_assert_eq(ans->kind, DNS_ANSWER_NXDOMAIN);
	cr_assert_eq(ans->ttl, 120);
}

Test(dns_packet, nodata_ttl_is_min_of_soa_ttl_and_minimum)
{
	ask("host.example.test", DNS_TYPE_AAAA, 11);
	answer_start(0, 0, 1, 0, "host.example.test");
	wire_soa(&w, "example.test", 30, 120);
	cr_assert_eq(parse(), 0);
	cr_assert_eq(ans->kind, DNS_ANSWER_NODATA);
	cr_assert_eq(ans->ttl, 30);
}

Test(dns_packet, soa_of_an_unrelated_zone_is_not_used)
{
	ask("host.example.test", DNS_TYPE_AAAA, 11);
	answer_start(0, 0, 1, 0, "host.example.test");
	wire_soa(&w, "other.test", 300, 300);
	cr_assert_eq(parse(), 0);
	cr_assert_eq(ans->kind, DNS_ANSWER_NODATA);
	cr_assert_eq(ans->ttl, 0, "not cacheable");
}

Test(dns_packet, rcodes_and_tc_are_reported)
{
	static const struct { uint32_t flags; enum dns_answer_kind kind; } cases[] = {
		{ 2, DNS_ANSWER_SERVFAIL }, { 5, DNS_ANSWER_REFUSED }, { 1, DNS_ANSWER_FORMERR },
		{ 4, DNS_ANSWER_FORMERR }, { WIRE_TC, DNS_ANSWER_TRUNCATED },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		ask("host.test", DNS_TYPE_A, 77);
		answer_start(cases[i].flags, 0, 0, 0, "host.test");
		cr_assert_eq(parse(), 0);
		cr_assert_eq(ans->kind, cases[i].kind, "case %zu: %s", i,
			dns_packet_kind_name(ans->kind));
		cr_assert_eq(ans->ttl, 0);
	}
}

Test(dns_packet, referral_without_soa_is_lame)
{
	ask("host.test", DNS_TYPE_A, 77);
	wire_header(&w, q.id, WIRE_QR, 1, 0, 1, 0);
	wire_question(&w, "host.test", DNS_TYPE_A);
	size_t at = wire_rr(&w, "test", DNS_TYPE_NS, 300);
	wire_name(&w, "ns.test");
	wire_rr_end(&w, at);
	cr_assert_eq(parse(), 0);
	cr_assert_eq(ans->kind, DNS_ANSWER_LAME);
}

Test(dns_packet, txt_strings_are_joined_and_tlsa_fields_read)
{
	ask("example.test", DNS_TYPE_TXT, 1);
	answer_start(0, 1, 0, 0, "example.test");
	size_t at = wire_rr(&w, "example.test", DNS_TYPE_TXT, 60);
	wire_u8(&w, 6);
	wire_bytes(&w, "v=spf1", 6);
	wire_u8(&w, 5);
	wire_bytes(&w, " -all", 5);
	wire_rr_end(&w, at);
	cr_assert_eq(parse(), 0);
	cr_assert_eq(ans->rrs[0].len, 11);
	cr_assert_eq(memcmp(ans->data + ans->rrs[0].off, "v=spf1 -all", 11), 0);

	ask("_25._tcp.mx.test", DNS_TYPE_TLSA, 2);
	answer_start(WIRE_AD, 1, 0, 0, "_25._tcp.mx.test");
	at = wire_rr(&w, "_25._tcp.mx.test", DNS_TYPE_TLSA, 60);
	wire_u8(&w, 3);
	wire_u8(&w, 1);
	wire_u8(&w, 1);
	for (int i = 0; i < 32; i++)
		wire_u8(&w, (uint32_t)i);
	wire_rr_end(&w, at);
	cr_assert_eq(parse(), 0);
	cr_assert_eq(ans->kind, DNS_ANSWER_DATA);
	cr_assert(ans->ad);
	cr_assert_eq(ans->rrs[0].tlsa_usage, 3);
	cr_assert_eq(ans->rrs[0].tlsa_selector, 1);
	cr_assert_eq(ans->rrs[0].tlsa_mtype, 1);
	cr_assert_eq(ans->rrs[0].len, 32);
	cr_assert_eq(ans->data[ans->rrs[0].off + 31], 31);
}

Test(dns_packet, records_past_the_limit_are_dropped_and_said)
{
	ask("many.test", DNS_TYPE_A, 1);
	answer_start(0, DNS_ANSWER_RRS_MAX + 1, 0, 0, "many.test");
	for (uint32_t i = 0; i <= DNS_ANSWER_RRS_MAX; i++) {
		wire_ptr(&w, 12);
		size_t at = wire_rr_fixed(&w, DNS_TYPE_A, 60);
		wire_u32(&w, i);
		wire_rr_end(&w, at);
	}
	cr_assert_eq(parse(), 0);
	cr_assert_eq(ans->rr_count, DNS_ANSWER_RRS_MAX);
	cr_assert(ans->rrs_dropped);
}

/* ---- not the answer to our question ---- */

Test(dns_packet, wrong_id_is_not_ours)
{
	ask("host.test", DNS_TYPE_A, 100);
	answer_start(0, 1, 0, 0, "host.test");
	wire_a(&w, "host.test", 60, 127, 0, 0, 1);
	w.b[1] ^= 1;
	cr_assert_eq(parse(), -EPROTO);
}

Test(dns_packet, answer_for_another_question_is_not_ours)
{
	ask("host.test", DNS_TYPE_A, 100);
	answer_start(0, 1, 0, 0, "other.test");
	wire_a(&w, "other.test", 60, 127, 0, 0, 1);
	cr_assert_eq(parse(), -EPROTO, "another name");
	ask("host.test", DNS_TYPE_AAAA, 100);
	wire_header(&w, q.id, WIRE_QR, 1, 0, 0, 0);
	wire_question(&w, "host.test", DNS_TYPE_A);
	cr_assert_eq(parse(), -EPROTO, "another type");
	wire_header(&w, q.id, WIRE_QR, 2, 0, 0, 0);
	wire_question(&w, "host.test", DNS_TYPE_AAAA);
	wire_question(&w, "host.test", DNS_TYPE_AAAA);
	cr_assert_eq(parse(), -EPROTO, "two questions");
	wire_header(&w, q.id, 0, 1, 0, 0, 0);
	wire_question(&w, "host.test", DNS_TYPE_AAAA);
	cr_assert_eq(parse(), -EPROTO, "a query, not an answer");
	wire_header(&w, q.id, WIRE_QR, 1, 0, 0, 0);
	wire_name(&w, "host.test");
	wire_u16(&w, DNS_TYPE_AAAA);
	wire_u16(&w, 3);
	cr_assert_eq(parse(), -EPROTO, "class CH");
}

Test(dns_packet, question_name_compares_case_insensitively)
{
	ask("host.test", DNS_TYPE_A, 100);
	answer_start(0, 1, 0, 0, "HoSt.TeSt");
	wire_a(&w, "HOST.TEST", 60, 127, 0, 0, 1);
	cr_assert_eq(parse(), 0);
	cr_assert_eq(ans->rr_count, 1);
}

/* ---- malformed ---- */

Test(dns_packet, pointer_to_itself_is_a_loop)
{
	ask("host.test", DNS_TYPE_A, 1);
	answer_start(0, 1, 0, 0, "host.test");
	size_t self = w.len;
	wire_ptr(&w, self);
	size_t at = wire_rr_fixed(&w, DNS_TYPE_A, 60);
	wire_u32(&w, 1);
	wire_rr_end(&w, at);
	cr_assert_eq(parse(), -EBADMSG);
	cr_assert_eq(dns_packet_check(slice_make(w.b, w.len)), -EBADMSG);
}

Test(dns_packet, forward_pointer_is_refused)
{
	ask("host.test", DNS_TYPE_A, 1);
	answer_start(0, 1, 0, 0, "host.test");
	size_t here = w.len;
	wire_ptr(&w, here + 2 + 10 + 4);
	size_t at = wire_rr_fixed(&w, DNS_TYPE_A, 60);
	wire_u32(&w, 1);
	wire_rr_end(&w, at);
	wire_name(&w, "host.test");
	cr_assert_eq(dns_packet_check(slice_make(w.b, w.len)), -EBADMSG);
}

Test(dns_packet, label_and_pointer_loop_is_stopped)
{
	/* At 12: label "a", then a pointer back to 12: each pointer points backward, yet the walk
	 * would go round for ever. */
	wire_header(&w, 1, WIRE_QR, 1, 0, 0, 0);
	wire_u8(&w, 1);
	wire_u8(&w, 'a');
	wire_ptr(&w, 12);
	wire_u16(&w, 1);
	wire_u16(&w, 1);
	cr_assert_eq(dns_packet_check(slice_make(w.b, w.len)), -EBADMSG);
}

Test(dns_packet, name_longer_than_255_through_pointers_is_refused)
{
	/* Names of 63-octet labels built on one another: the fourth is 257 octets decompressed. */
	wire_header(&w, 1, WIRE_QR, 4, 0, 0, 0);
	char label[64];
	memset(label, 'x', 63);
	size_t prev = 0;
	for (int i = 0; i < 4; i++) {
		size_t here = w.len;
		wire_u8(&w, 63);
		wire_bytes(&w, label, 63);
		if (i == 0)
			wire_u8(&w, 0);
		else
			wire_ptr(&w, prev);
		wire_u16(&w, 1);
		wire_u16(&w, 1);
		prev = here;
	}
	cr_assert_eq(dns_packet_check(slice_make(w.b, w.len)), -EBADMSG);
	/* Three of them (193 octets) are fine. */
	w.b[5] = 3;
	w.len = 12 + 3 * (1 + 63 + 2 + 4) - 1;
	cr_assert_eq(dns_packet_check(slice_make(w.b, w.len)), 0);
}

Test(dns_packet, truncated_records_are_refused)
{
	ask("host.test", DNS_TYPE_A, 1);
	answer_start(0, 1, 0, 0, "host.test");
	wire_a(&w, "host.test", 60, 127, 0, 0, 1);
	size_t full = w.len;
	cr_assert_eq(parse(), 0);
	for (size_t cut = 0; cut < full; cut++) {
		w.len = cut;
		cr_assert_eq(parse(), -EBADMSG, "cut at %zu", cut);
	}
}

Test(dns_packet, rdlength_past_the_end_is_refused)
{
	ask("host.test", DNS_TYPE_A, 1);
	answer_start(0, 1, 0, 0, "host.test");
	wire_a(&w, "host.test", 60, 127, 0, 0, 1);
	w.b[w.len - 5] = 5;   /* RDLENGTH 4 -> 5 */
	cr_assert_eq(parse(), -EBADMSG);
}

Test(dns_packet, a_record_of_the_wrong_length_is_bad)
{
	ask("host.test", DNS_TYPE_A, 1);
	answer_start(0, 1, 0, 0, "host.test");
	size_t at = wire_rr(&w, "host.test", DNS_TYPE_A, 60);
	wire_bytes(&w, "\x7f\0\0\1\1", 5);
	wire_rr_end(&w, at);
	int rc = parse();
	cr_assert(rc == -EBADMSG || (rc == 0 && ans->kind == DNS_ANSWER_BAD), "rc %d", rc);
}

Test(dns_packet, oversize_counts_are_refused_before_walking)
{
	ask("host.test", DNS_TYPE_A, 1);
	answer_start(0, 1, 0, 0, "host.test");
	wire_a(&w, "host.test", 60, 127, 0, 0, 1);
	w.b[6] = 0xff;
	w.b[7] = 0xff;
	cr_assert_eq(dns_packet_check(slice_make(w.b, w.len)), -EBADMSG);
	cr_assert_eq(parse(), -EBADMSG);
}

Test(dns_packet, mx_name_running_out_of_its_rdata_is_refused)
{
	ask("example.test", DNS_TYPE_MX, 1);
	answer_start(0, 1, 0, 0, "example.test");
	size_t at = wire_rr(&w, "example.test", DNS_TYPE_MX, 60);
	wire_u16(&w, 10);
	wire_name(&w, "mx.example.test");
	wire_rr_end(&w, at);
	w.b[at + 1] -= 3;    /* RDLENGTH ends inside the target's name */
	w.len -= 3;
	cr_assert_eq(dns_packet_check(slice_make(w.b, w.len)), -EBADMSG);
}

Test(dns_packet, extended_label_types_are_refused)
{
	wire_header(&w, 1, WIRE_QR, 1, 0, 0, 0);
	wire_u8(&w, 0x41);
	wire_bytes(&w, "x", 1);
	wire_u8(&w, 0);
	wire_u16(&w, 1);
	wire_u16(&w, 1);
	cr_assert_eq(dns_packet_check(slice_make(w.b, w.len)), -EBADMSG);
}

Test(dns_packet, short_header_and_oversize_message_are_refused)
{
	uint8_t hdr[11] = { 0 };
	cr_assert_eq(dns_packet_check(slice_make(hdr, sizeof(hdr))), -EBADMSG);
	static uint8_t big[DNS_MSG_LEN_MAX + 1];
	cr_assert_eq(dns_packet_check(slice_make(big, sizeof(big))), -EBADMSG);
	cr_assert_eq(dns_packet_check(slice_make(big, DNS_HEADER_LEN)), 0);
}
