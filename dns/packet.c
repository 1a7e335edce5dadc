/* dns/packet.c - building queries and reading answers with ldns; see packet.h.
 *
 * The only dns/ file (with ldns_shim.c) that knows ldns. ldns's headers include OpenSSL 3's;
 * nothing here may include BoringSSL's (see ../meson.build). */
#include "dns/packet.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <ldns/ldns.h>

#define DNS_FLAG_QR 0x80u   /* octet 2 of the header */
#define DNS_FLAG_TC 0x02u
#define DNS_SOA_RDF_COUNT 7u
#define DNS_SOA_RDF_MINIMUM 6u
#define DNS_TLSA_RDF_COUNT 4u

static uint16_t
dns_get16(const uint8_t *p)
{
	return (uint16_t)((uint16_t)p[0] << 8 | p[1]);
}

int
dns_packet_query(const struct dns_question *q, uint8_t *out, size_t cap)
{
	ldns_rdf *owner = ldns_rdf_new_frm_data(LDNS_RDF_TYPE_DNAME, q->qname.len, q->qname.wire);
	if (owner == NULL)
		return -ENOMEM;
	ldns_pkt *pkt = ldns_pkt_query_new(owner, (ldns_rr_type)q->qtype, LDNS_RR_CLASS_IN,
		LDNS_RD);
	if (pkt == NULL) {
		ldns_rdf_deep_free(owner);
		return -ENOMEM;
	}
	ldns_pkt_set_id(pkt, q->id);
	ldns_pkt_set_ad(pkt, true);
	ldns_pkt_set_edns_udp_size(pkt, DNS_EDNS_PAYLOAD);
	uint8_t *wire = NULL;
	size_t len = 0;
	ldns_status st = ldns_pkt2wire(&wire, pkt, &len);
	ldns_pkt_free(pkt);
	int rc = -ENOMEM;
	if (st == LDNS_STATUS_OK) {
		rc = len <= cap ? (int)len : -ENOSPC;
		if (rc > 0)
			memcpy(out, wire, len);
	}
	free(wire);
	return rc;
}

/* ---- structure (no ldns) ---- */

/* Walks the name at *pos: labels of at most 63 octets, at most 255 octets decompressed, each
 * compression pointer pointing before itself, at most DNS_NAME_POINTERS_MAX of them (a loop of
 * pointers and labels is stopped by that bound and by the 255 octets). On success *pos is just
 * past the name's last octet in place (the pointer, or the root label). */
static int
dns_check_name(struct slice msg, size_t *pos, size_t end)
{
	size_t p = *pos;
	size_t resume = 0;        /* where the name ends in place, once a pointer was followed */
	size_t decoded = 0;
	uint32_t hops = 0;
	for (;;) {
		if (p >= end)
			return -EBADMSG;
		uint8_t l = msg.ptr[p];
		if ((l & 0xc0u) == 0xc0u) {
			if (p + 1 >= end || hops++ == DNS_NAME_POINTERS_MAX)
				return -EBADMSG;
			size_t target = (size_t)(l & 0x3fu) << 8 | msg.ptr[p + 1];
			if (target >= p)
				return -EBADMSG;      /* RFC 1035 4.1.4: to a prior occurrence */
			if (resume == 0)
				resume = p + 2;
			p = target;
			end = msg.len;            /* a pointer may leave the record's data */
			continue;
		}
		if (l > DNS_LABEL_LEN_MAX)
			return -EBADMSG;          /* extended label types (RFC 6891 5) */
		decoded += 1u + l;
		if (decoded > DNS_NAME_LEN_MAX)
			return -EBADMSG;
		if (l == 0)
			break;
		p += 1u + l;
	}
	*pos = resume != 0 ? resume : p + 1;
	return 0;
}

/* The data of the types we read: fixed sizes exact, names and strings inside the data and
 * filling it (ldns would read a 5-octet A record as an address and ignore the rest). */
static int
dns_check_rdata(struct slice msg, uint16_t type, size_t start, size_t len)
{
	size_t end = start + len;
	size_t p = start;
	switch (type) {
	case DNS_TYPE_A:
		return len == 4 ? 0 : -EBADMSG;
	case DNS_TYPE_AAAA:
		return len == 16 ? 0 : -EBADMSG;
	case DNS_TYPE_TLSA:
		return len >= 3 ? 0 : -EBADMSG;
	case DNS_TYPE_TXT:
		if (len == 0)
			return -EBADMSG;
		while (p < end)
			p += 1u + msg.ptr[p];     /* RFC 1035 3.3.14: <character-string>s */
		break;
	case DNS_TYPE_CNAME:
	case DNS_TYPE_NS:
	case DNS_TYPE_PTR:
		if (dns_check_name(msg, &p, end) != 0)
			return -EBADMSG;
		break;
	case DNS_TYPE_MX:
		p += 2;
		if (p > end || dns_check_name(msg, &p, end) != 0)
			return -EBADMSG;
		break;
	case DNS_TYPE_SOA:
		if (dns_check_name(msg, &p, end) != 0 || dns_check_name(msg, &p, end) != 0)
			return -EBADMSG;
		p += 20;                      /* serial, refresh, retry, expire, minimum */
		break;
	default:
		return 0;
	}
	return p == end ? 0 : -EBADMSG;
}

int
dns_packet_check(struct slice msg)
{
	if (msg.len < DNS_HEADER_LEN || msg.len > DNS_MSG_LEN_MAX)
		return -EBADMSG;
	uint32_t qd = dns_get16(msg.ptr + 4);
	uint32_t rrs = (uint32_t)dns_get16(msg.ptr + 6) + dns_get16(msg.ptr + 8)
		+ dns_get16(msg.ptr + 10);
	/* Counts the length cannot hold are refused before anything is walked. */
	if ((uint64_t)qd * DNS_QUESTION_LEN_MIN + (uint64_t)rrs * DNS_RR_LEN_MIN
		> msg.len - DNS_HEADER_LEN)
		return -EBADMSG;
	size_t p = DNS_HEADER_LEN;
	for (uint32_t i = 0; i < qd; i++) {
		if (dns_check_name(msg, &p, msg.len) != 0 || msg.len - p < 4)
			return -EBADMSG;
		p += 4;
	}
	for (uint32_t i = 0; i < rrs; i++) {
		if (dns_check_name(msg, &p, msg.len) != 0 || msg.len - p < DNS_RR_FIXED_LEN)
			return -EBADMSG;
		uint16_t type = dns_get16(msg.ptr + p);
		size_t rdlen = dns_get16(msg.ptr + p + 8);
		p += DNS_RR_FIXED_LEN;
		if (rdlen > msg.len - p || dns_check_rdata(msg, type, p, rdlen) != 0)
			return -EBADMSG;
		p += rdlen;
	}
	return 0;
}

/* ---- meaning (ldns) ---- */

static int
dns_rdf_name(const ldns_rdf *rdf, struct dns_name *out)
{
	if (rdf == NULL || ldns_rdf_get_type(rdf) != LDNS_RDF_TYPE_DNAME)
		return -EBADMSG;
	return dns_name_from_wire(ldns_rdf_data(rdf), ldns_rdf_size(rdf), out);
}

/* Is rr of class IN, owned by name? */
static bool
dns_rr_owned_by(const ldns_rr *rr, const struct dns_name *name)
{
	struct dns_name owner;
	return ldns_rr_get_class(rr) == LDNS_RR_CLASS_IN
		&& dns_rdf_name(ldns_rr_owner(rr), &owner) == 0 && dns_name_eq(&owner, name);
}

static bool
dns_question_matches(const ldns_pkt *pkt, const struct dns_question *q)
{
	if (ldns_pkt_id(pkt) != q->id || !ldns_pkt_qr(pkt)
		|| ldns_pkt_get_opcode(pkt) != LDNS_PACKET_QUERY || ldns_pkt_qdcount(pkt) != 1)
		return false;
	const ldns_rr_list *question = ldns_pkt_question(pkt);
	if (question == NULL || ldns_rr_list_rr_count(question) != 1)
		return false;
	const ldns_rr *qrr = ldns_rr_list_rr(question, 0);
	return ldns_rr_get_type(qrr) == q->qtype && dns_rr_owned_by(qrr, &q->qname);
}

static uint32_t
dns_min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

/* Appends len octets to the answer's data; false (answer BAD) if they do not fit. */
static bool
dns_answer_put(struct dns_answer *out, struct dns_rr *rr, const uint8_t *data, size_t len)
{
	if (len > DNS_ANSWER_DATA_MAX - out->data_len)
		return false;
	rr->off = out->data_len;
	rr->len = (uint32_t)len;
	if (len > 0)
		memcpy(out->data + out->data_len, data, len);
	out->data_len += (uint32_t)len;
	return true;
}

/* TXT: each character-string is a length octet and its octets (RFC 1035 3.3.14); joined. */
static bool
dns_answer_put_txt(struct dns_answer *out, struct dns_rr *rr, const ldns_rr *src)
{
	rr->off = out->data_len;
	rr->len = 0;
	for (size_t i = 0; i < ldns_rr_rd_count(src); i++) {
		const ldns_rdf *rdf = ldns_rr_rdf(src, i);
		const uint8_t *d = ldns_rdf_data(rdf);
		size_t n = ldns_rdf_size(rdf);
		if (n == 0 || (size_t)d[0] + 1 != n || n - 1 > DNS_ANSWER_DATA_MAX - out->data_len)
			return false;
		memcpy(out->data + out->data_len, d + 1, n - 1);
		out->data_len += (uint32_t)(n - 1);
		rr->len += (uint32_t)(n - 1);
	}
	return true;
}

/* The record's data in our form; false if it is malformed for its type. */
static bool
dns_answer_take(struct dns_answer *out, struct dns_rr *rr, const ldns_rr *src, uint16_t type)
{
	size_t count = ldns_rr_rd_count(src);
	const ldns_rdf *r0 = ldns_rr_rdf(src, 0);
	struct dns_name name;
	switch (type) {
	case DNS_TYPE_A:
	case DNS_TYPE_AAAA: {
		size_t want = type == DNS_TYPE_A ? 4 : 16;
		if (count != 1 || ldns_rdf_size(r0) != want)
			return false;
		return dns_answer_put(out, rr, ldns_rdf_data(r0), want);
	}
	case DNS_TYPE_MX:
		if (count != 2 || ldns_rdf_size(r0) != 2
			|| dns_rdf_name(ldns_rr_rdf(src, 1), &name) != 0)
			return false;
		rr->pref = ldns_rdf2native_int16(r0);
		return dns_answer_put(out, rr, name.wire, name.len);
	case DNS_TYPE_PTR:
		if (count != 1 || dns_rdf_name(r0, &name) != 0)
			return false;
		return dns_answer_put(out, rr, name.wire, name.len);
	case DNS_TYPE_TXT:
		return count > 0 && dns_answer_put_txt(out, rr, src);
	case DNS_TYPE_TLSA: {
		if (count != DNS_TLSA_RDF_COUNT)
			return false;
		const ldns_rdf *r1 = ldns_rr_rdf(src, 1), *r2 = ldns_rr_rdf(src, 2);
		const ldns_rdf *r3 = ldns_rr_rdf(src, 3);
		if (ldns_rdf_size(r0) != 1 || ldns_rdf_size(r1) != 1 || ldns_rdf_size(r2) != 1)
			return false;
		rr->tlsa_usage = ldns_rdf_data(r0)[0];
		rr->tlsa_selector = ldns_rdf_data(r1)[0];
		rr->tlsa_mtype = ldns_rdf_data(r2)[0];
		return dns_answer_put(out, rr, ldns_rdf_data(r3), ldns_rdf_size(r3));
	}
	default:
		return false;
	}
}

/* Follows CNAMEs from the question's name inside the answer section. Returns 0, or -1 if the
 * chain is longer than DNS_CNAME_CHAIN_MAX or a CNAME is malformed. */
static int
dns_follow_cnames(const ldns_rr_list *an, uint16_t qtype, struct dns_answer *out)
{
	size_t count = an == NULL ? 0 : ldns_rr_list_rr_count(an);
	if (qtype == DNS_TYPE_CNAME)
		return 0;
	/* Each round either moves final along one CNAME or stops; a loop hits the bound. */
	for (uint32_t round = 0; round <= DNS_CNAME_CHAIN_MAX; round++) {
		const ldns_rr *cname = NULL;
		for (size_t i = 0; i < count && cname == NULL; i++) {
			const ldns_rr *rr = ldns_rr_list_rr(an, i);
			if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_CNAME
				&& dns_rr_owned_by(rr, &out->final))
				cname = rr;
		}
		if (cname == NULL)
			return 0;
		if (round == DNS_CNAME_CHAIN_MAX || ldns_rr_rd_count(cname) != 1
			|| dns_rdf_name(ldns_rr_rdf(cname, 0), &out->final) != 0)
			return -1;
		out->ttl = dns_min_u32(out->ttl, ldns_rr_ttl(cname));
		out->cname_count++;
	}
	return -1;
}

/* The records of the asked type owned by final. Returns 0, or -1 if one is malformed. */
static int
dns_collect(const ldns_rr_list *an, uint16_t qtype, struct dns_answer *out)
{
	size_t count = an == NULL ? 0 : ldns_rr_list_rr_count(an);
	for (size_t i = 0; i < count; i++) {
		const ldns_rr *rr = ldns_rr_list_rr(an, i);
		if (ldns_rr_get_type(rr) != qtype || !dns_rr_owned_by(rr, &out->final))
			continue;
		if (out->rr_count == DNS_ANSWER_RRS_MAX) {
			out->rrs_dropped = true;
			continue;
		}
		struct dns_rr *dst = &out->rrs[out->rr_count];
		memset(dst, 0, sizeof(*dst));
		dst->ttl = dns_min_u32(ldns_rr_ttl(rr), DNS_TTL_MAX_S);
		if (!dns_answer_take(out, dst, rr, qtype))
			return -1;
		out->ttl = dns_min_u32(out->ttl, dst->ttl);
		out->rr_count++;
	}
	return 0;
}

/* RFC 2308 5: the negative TTL is min(SOA TTL, SOA MINIMUM) of an SOA whose owner encloses the
 * name; without one the answer is not cached. Also tells whether the authority holds NS records
 * (a referral, when nothing else is there). */
static uint32_t
dns_negative_ttl(const ldns_rr_list *ns, const struct dns_name *final, bool *has_ns)
{
	size_t count = ns == NULL ? 0 : ldns_rr_list_rr_count(ns);
	*has_ns = false;
	for (size_t i = 0; i < count; i++) {
		const ldns_rr *rr = ldns_rr_list_rr(ns, i);
		struct dns_name owner;
		if (ldns_rr_get_type(rr) == LDNS_RR_TYPE_NS)
			*has_ns = true;
		if (ldns_rr_get_type(rr) != LDNS_RR_TYPE_SOA
			|| ldns_rr_get_class(rr) != LDNS_RR_CLASS_IN
			|| ldns_rr_rd_count(rr) != DNS_SOA_RDF_COUNT
			|| dns_rdf_name(ldns_rr_owner(rr), &owner) != 0
			|| !dns_name_is_under(final, &owner))
			continue;
		const ldns_rdf *minimum = ldns_rr_rdf(rr, DNS_SOA_RDF_MINIMUM);
		if (ldns_rdf_size(minimum) != 4)
			continue;
		uint32_t ttl = dns_min_u32(ldns_rr_ttl(rr), ldns_rdf2native_int32(minimum));
		return dns_min_u32(ttl, DNS_NEG_TTL_MAX_S);
	}
	return 0;
}

static enum dns_answer_kind
dns_rcode_kind(uint8_t rcode)
{
	switch (rcode) {
	case DNS_RCODE_SERVFAIL:
		return DNS_ANSWER_SERVFAIL;
	case DNS_RCODE_REFUSED:
		return DNS_ANSWER_REFUSED;
	default:
		return DNS_ANSWER_FORMERR;
	}
}

/* What a NOERROR or NXDOMAIN answer says, once the chain and the records are known. */
static void
dns_classify(const ldns_pkt *pkt, struct dns_answer *out)
{
	bool has_ns;
	uint32_t neg_ttl = dns_negative_ttl(ldns_pkt_authority(pkt), &out->final, &has_ns);
	if (out->rr_count > 0 || out->rrs_dropped) {
		out->kind = DNS_ANSWER_DATA;
		return;
	}
	out->ttl = dns_min_u32(out->ttl, neg_ttl);
	if (out->rcode == DNS_RCODE_NXDOMAIN)
		out->kind = DNS_ANSWER_NXDOMAIN;
	else if (neg_ttl > 0)
		out->kind = DNS_ANSWER_NODATA;
	else if (out->cname_count > 0)
		out->kind = DNS_ANSWER_CNAME;           /* the server did not chase the alias */
	else if (has_ns && !ldns_pkt_aa(pkt))
		out->kind = DNS_ANSWER_LAME;
	else
		out->kind = DNS_ANSWER_NODATA;          /* no SOA: true, but not cacheable */
}

int
dns_packet_parse(struct slice msg, const struct dns_question *q, struct dns_answer *out)
{
	if (dns_packet_check(msg) != 0)
		return -EBADMSG;
	/* Cheap header checks first: a flood of wrong ids never reaches ldns. */
	if (dns_get16(msg.ptr) != q->id || (msg.ptr[2] & DNS_FLAG_QR) == 0)
		return -EPROTO;
	ldns_pkt *pkt = NULL;
	if (ldns_wire2pkt(&pkt, msg.ptr, msg.len) != LDNS_STATUS_OK)
		return -EBADMSG;
	int rc = -EPROTO;
	if (!dns_question_matches(pkt, q))
		goto done;
	rc = 0;
	out->rcode = (uint8_t)ldns_pkt_get_rcode(pkt);
	out->ad = ldns_pkt_ad(pkt);
	out->rrs_dropped = false;
	out->ttl = DNS_TTL_MAX_S;
	out->cname_count = 0;
	out->final = q->qname;
	out->rr_count = 0;
	out->data_len = 0;
	if (ldns_pkt_tc(pkt)) {
		out->kind = DNS_ANSWER_TRUNCATED;
		out->ttl = 0;
		goto done;
	}
	if (out->rcode != DNS_RCODE_NOERROR && out->rcode != DNS_RCODE_NXDOMAIN) {
		out->kind = dns_rcode_kind(out->rcode);
		out->ttl = 0;
		goto done;
	}
	const ldns_rr_list *an = ldns_pkt_answer(pkt);
	if (dns_follow_cnames(an, q->qtype, out) != 0 || dns_collect(an, q->qtype, out) != 0) {
		out->kind = DNS_ANSWER_BAD;
		out->ttl = 0;
		out->rr_count = 0;
		goto done;
	}
	dns_classify(pkt, out);
done:
	ldns_pkt_free(pkt);
	return rc;
}

const char *
dns_packet_kind_name(enum dns_answer_kind kind)
{
	static const char *const names[] = {
		[DNS_ANSWER_DATA] = "DATA",
		[DNS_ANSWER_NODATA] = "NODATA",
		[DNS_ANSWER_NXDOMAIN] = "NXDOMAIN",
		[DNS_ANSWER_CNAME] = "CNAME",
		[DNS_ANSWER_TRUNCATED] = "TRUNCATED",
		[DNS_ANSWER_SERVFAIL] = "SERVFAIL",
		[DNS_ANSWER_REFUSED] = "REFUSED",
		[DNS_ANSWER_FORMERR] = "FORMERR",
		[DNS_ANSWER_LAME] = "LAME",
		[DNS_ANSWER_BAD] = "BAD",
	};
	ASSERT((size_t)kind < ARRAY_LEN(names));
	return names[kind];
}
