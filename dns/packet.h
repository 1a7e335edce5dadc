/* dns/packet.h - DNS messages: the query we send, and what an answer says about our question.
 *
 * I/O-free: bytes in, a struct out; no sockets, files or clocks. ldns builds the query and
 * splits the answer into records; before ldns sees an answer, dns_packet_check walks it and
 * validates every count, length and compression pointer itself (RFC 1035 4.1), so that ldns only
 * ever reads a message whose structure is known to be sound.
 *
 * An answer is untrusted input (RFC 5452): dns_packet_parse accepts it only as the answer to one
 * question (same id, QR set, opcode QUERY, exactly that one question, class IN) and otherwise says
 * -EPROTO, which the resolver treats as "not for us, keep waiting". Of the records it keeps only
 * those on the CNAME chain from the question's name (RFC 1034 3.6.2) and the records of the asked
 * type for the chain's last name; everything else (additional data, out-of-chain records) is
 * ignored. Negative answers take their TTL from the SOA in the authority section, min(SOA TTL,
 * SOA MINIMUM), and only when the SOA's owner encloses the name (RFC 2308 5).
 *
 * Limits: DNS_ANSWER_RRS_MAX records are kept (more set rrs_dropped), DNS_CNAME_CHAIN_MAX CNAMEs
 * are followed inside one answer (more: DNS_ANSWER_BAD), TTLs are capped at DNS_TTL_MAX_S and
 * negative ones at DNS_NEG_TTL_MAX_S. */
#ifndef RINGMTA_DNS_PACKET_H
#define RINGMTA_DNS_PACKET_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/slice.h"
#include "dns/name.h"

#define DNS_TYPE_A       1u
#define DNS_TYPE_NS      2u
#define DNS_TYPE_CNAME   5u
#define DNS_TYPE_SOA     6u
#define DNS_TYPE_PTR    12u
#define DNS_TYPE_MX     15u
#define DNS_TYPE_TXT    16u
#define DNS_TYPE_AAAA   28u
#define DNS_TYPE_OPT    41u
#define DNS_TYPE_TLSA   52u
#define DNS_CLASS_IN     1u

#define DNS_HEADER_LEN        12u
#define DNS_RR_FIXED_LEN      10u      /* type, class, TTL, RDLENGTH after the owner */
#define DNS_RR_LEN_MIN        11u      /* the root owner and the fixed part */
#define DNS_QUESTION_LEN_MIN   5u      /* the root name, type, class */
#define DNS_MSG_LEN_MAX    65535u      /* RFC 1035 4.2.2: TCP's two-octet length */
#define DNS_EDNS_PAYLOAD    1232u      /* EDNS0 UDP payload (RFC 6891; the 2020 flag day value) */
#define DNS_QUERY_LEN_MAX    512u      /* header, a 255-octet name, type, class, an OPT record */
#define DNS_NAME_POINTERS_MAX 127u     /* a name has at most 127 labels, so 127 hops suffice */
#define DNS_CNAME_CHAIN_MAX    8u      /* CNAMEs followed inside one answer */
#define DNS_ANSWER_RRS_MAX   256u      /* records of the asked type kept from one answer */
#define DNS_ANSWER_DATA_MAX 65536u     /* octets of record data kept from one answer */
#define DNS_TTL_MAX_S      86400u      /* positive answers are cached at most a day */
#define DNS_NEG_TTL_MAX_S  10800u      /* RFC 2308 5: negative caching of 1 to 3 hours */

_Static_assert(DNS_ANSWER_RRS_MAX * DNS_NAME_LEN_MAX <= DNS_ANSWER_DATA_MAX,
	"the names of the records kept always fit");
_Static_assert(DNS_MSG_LEN_MAX <= DNS_ANSWER_DATA_MAX, "the strings of one message always fit");
_Static_assert(DNS_HEADER_LEN + DNS_NAME_LEN_MAX + 4 + 11 <= DNS_QUERY_LEN_MAX, "a query fits");

enum dns_rcode {
	DNS_RCODE_NOERROR = 0,
	DNS_RCODE_FORMERR = 1,
	DNS_RCODE_SERVFAIL = 2,
	DNS_RCODE_NXDOMAIN = 3,
	DNS_RCODE_NOTIMP = 4,
	DNS_RCODE_REFUSED = 5,
};

enum dns_answer_kind {
	DNS_ANSWER_DATA,       /* records of the asked type for `final` */
	DNS_ANSWER_NODATA,     /* `final` exists but has no record of the type (RFC 2308 2.2) */
	DNS_ANSWER_NXDOMAIN,   /* `final` does not exist (RFC 2308 2.1) */
	DNS_ANSWER_CNAME,      /* the chain ends at `final` and says no more: ask again for it */
	DNS_ANSWER_TRUNCATED,  /* TC set: ask again over TCP (RFC 7766 5) */
	DNS_ANSWER_SERVFAIL,
	DNS_ANSWER_REFUSED,
	DNS_ANSWER_FORMERR,    /* FORMERR, NOTIMP, or an rcode we do not know */
	DNS_ANSWER_LAME,       /* a referral: the server does not resolve for us */
	DNS_ANSWER_BAD,        /* ours, but malformed records, or a CNAME chain too long */
};

/* One record of the asked type; its data lies in the answer's (or cache entry's) data. */
struct dns_rr {
	uint32_t ttl;
	uint32_t off;             /* A: 4 octets; AAAA: 16; MX, PTR: the wire name; TXT: the */
	uint32_t len;             /* strings joined (RFC 7208 3.3); TLSA: the association data */
	uint16_t pref;            /* MX preference */
	uint8_t tlsa_usage;       /* RFC 6698 2.1 */
	uint8_t tlsa_selector;
	uint8_t tlsa_mtype;
};

struct dns_question {
	uint16_t id;
	uint16_t qtype;
	struct dns_name qname;
};

struct dns_answer {
	enum dns_answer_kind kind;
	uint8_t rcode;
	bool ad;                  /* RFC 4035 3.2.3: the server says it validated the answer */
	bool rrs_dropped;         /* more than DNS_ANSWER_RRS_MAX records of the type */
	uint32_t ttl;             /* seconds it may be cached (0: not at all) */
	uint32_t cname_count;     /* CNAMEs followed from the question's name to final */
	struct dns_name final;
	uint32_t rr_count;
	uint32_t data_len;
	struct dns_rr rrs[DNS_ANSWER_RRS_MAX];
	uint8_t data[DNS_ANSWER_DATA_MAX];
};

/* Writes the query for q (RD and AD set, RFC 6840 5.7; an EDNS0 OPT record offering
 * DNS_EDNS_PAYLOAD octets) into out[cap]. Returns its length, or -ENOMEM (ldns could not
 * allocate) or -ENOSPC (cap too small). */
int dns_packet_query(const struct dns_question *q, uint8_t *out, size_t cap) MUST_USE;

/* Sets the id of a query written by dns_packet_query (a new id for each retransmission). */
static inline void
dns_packet_set_id(uint8_t *msg, uint16_t id)
{
	msg[0] = (uint8_t)(id >> 8);
	msg[1] = (uint8_t)id;
}

/* Validates the structure of a message: the header, counts that the length can hold, every
 * question and record inside the message, every name (including those in CNAME, NS, PTR, MX
 * and SOA data) of at most 255 octets, with compression pointers that point strictly backward
 * and at most DNS_NAME_POINTERS_MAX of them. Returns 0 or -EBADMSG. */
int dns_packet_check(struct slice msg) MUST_USE;

/* Parses msg as the answer to q into out. Returns 0 (out->kind says what it is), -EPROTO if it
 * is not the answer to q (id, QR, opcode, question), or -EBADMSG if it is malformed. out is
 * scratch on failure. */
int dns_packet_parse(struct slice msg, const struct dns_question *q, struct dns_answer *out)
	MUST_USE;

/* A short text for an answer kind ("NXDOMAIN", "SERVFAIL", ...). */
const char *dns_packet_kind_name(enum dns_answer_kind kind);
#endif
