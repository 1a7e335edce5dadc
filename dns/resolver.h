/* dns/resolver.h - a shard's asynchronous DNS resolver: MX, A/AAAA, TXT, TLSA, PTR over its ring.
 *
 * One resolver per shard, owned by the shard's thread (STYLE.md 2); it puts its own UDP and TCP
 * requests on the shard's ring (struct ring, base/ring.h) under two op codes it registers, and
 * runs its deadlines from a turn hook. ldns only builds and parses packets (dns/packet.h).
 *
 * Lookups. A requester starts a lookup with a user_data of its own; when the result is known the
 * resolver posts an event (ring_post) with that user_data and res = enum dns_status; the room for
 * that event is reserved when the lookup starts. The requester then reads the result with
 * dns_lookup_result and gives the handle back with dns_lookup_release, which also cancels a
 * lookup still under way (its requester went away): nothing it held stays behind. After release,
 * an event posted earlier for the handle may still be dispatched in the same turn: requesters put
 * a generation of their own in user_data (as ring.h suggests) to recognise it.
 *
 * Servers: dns_servers, else the nameservers of /etc/resolv.conf (and its timeout:/attempts:
 * options). Attempts go round the servers in order (attempt 1 on each server, then attempt 2 on
 * each, as glibc does), each with the per-attempt timeout; a lookup also has an overall deadline.
 * A server's SERVFAIL, REFUSED, FORMERR, referral, malformed answer or silence moves the query to
 * the next server.
 *
 * Spoofing (RFC 5452): every UDP attempt uses a fresh socket connect()ed to the server, so the
 * kernel picks a random source port (its ephemeral range, e.g. 32768-60999) and delivers only
 * datagrams from the server's address and port; the query id is random (getrandom(2)) and drawn
 * anew for each attempt; an answer is taken only if its id, QR bit and question (name, type,
 * class) match, else it is ignored and the attempt keeps waiting (at most DNS_UDP_STRAY_MAX).
 * Names are not 0x20-randomised. Queries carry EDNS0 with a DNS_EDNS_PAYLOAD-octet payload; a
 * truncated answer (TC) is asked again over TCP (RFC 7766 5), on one connection per server that
 * stays open for DNS_TCP_IDLE_MS and carries up to DNS_TCP_PIPELINE_MAX queries at once.
 *
 * Cache and coalescing: answers are cached per (name, type) with their TTLs, negative ones per
 * RFC 2308 (dns/cache.h), at most dns_cache_max entries with LRU eviction. Lookups for the same
 * (type, name) under way share one lookup, and queries for the same (name, type) share one query:
 * a hundred messages for a new domain cause one MX query and one query per MX host and family.
 *
 * MX (RFC 5321 5.1): hosts by preference, equal preferences shuffled; no MX but the domain exists
 * (NODATA) gives the implicit MX (the domain itself, preference 0); a lone "0 ." is a null MX
 * (RFC 7505): permanent failure 5.1.10. As Postfix does, an MX target that is an IP address is
 * used as that address (DNS_HOST_IP_LITERAL), and a target that is an alias is followed
 * (DNS_HOST_CNAME; RFC 2181 10.3 forbids it, but mail still flows). Hosts without an address are
 * left out of the result (counted in hosts_unresolved). Addresses per inet_protocols, the IPv6
 * ones first. CNAME chains are followed in an answer and by asking again for the chain's end, at
 * most DNS_REQUERY_MAX times per name.
 *
 * Limits: DNS_LOOKUPS_MAX lookups, DNS_WAITERS_MAX handles, DNS_QUERIES_MAX queries under way;
 * past them dns_lookup_start says -EAGAIN. A result holds at most DNS_RESULT_HOSTS_MAX hosts of
 * DNS_HOST_ADDRS_MAX addresses, DNS_RESULT_RECORDS_MAX records and DNS_RESULT_DATA_MAX octets of
 * names and record data; a TXT, TLSA or PTR answer that does not fit is a temporary failure
 * (DNS_REASON_TOO_LARGE), extra MX hosts and addresses are left out. */
#ifndef RINGMTA_DNS_RESOLVER_H
#define RINGMTA_DNS_RESOLVER_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/ring.h"
#include "base/slice.h"
#include "conf/config.h"
#include "dns/packet.h"

#define DNS_LOOKUPS_MAX          1024u
#define DNS_WAITERS_MAX         16384u
#define DNS_QUERIES_MAX          1024u
#define DNS_RESULT_HOSTS_MAX       16u
#define DNS_HOST_ADDRS_MAX          8u   /* per host: at most half of them of each family */
#define DNS_RESULT_RECORDS_MAX     32u
#define DNS_RESULT_DATA_MAX      8192u
#define DNS_REASON_LEN_MAX        256u
#define DNS_REQUERY_MAX             4u   /* new queries for the end of a CNAME chain, per name */
#define DNS_UDP_STRAY_MAX          16u   /* ignored datagrams per attempt before giving it up */
#define DNS_UDP_RECV_MAX         4096u   /* receive buffer; a datagram filling it counts as TC */
#define DNS_TCP_PIPELINE_MAX       32u   /* queries sent and unanswered on one connection */
#define DNS_TCP_IDLE_MS         10000u   /* RFC 7766 6.2.3: close idle connections, in seconds */
#define DNS_TIMEOUT_DEFAULT_MS   5000u   /* resolv.conf(5)'s defaults */
#define DNS_ATTEMPTS_DEFAULT        2u
#define DNS_LOOKUP_DEADLINE_MS  60000u   /* a lookup ends by then, whatever its queries do */
_Static_assert(DNS_UDP_RECV_MAX > DNS_EDNS_PAYLOAD, "a full-size EDNS answer is not cut");

struct dns_resolver;   /* opaque: one per shard */

enum dns_lookup_type {
	DNS_LOOKUP_MX,       /* name: a mail domain; result: hosts */
	DNS_LOOKUP_ADDR,     /* name: a host (or an IP address); result: one host */
	DNS_LOOKUP_TXT,      /* result: records (data: the strings joined) */
	DNS_LOOKUP_TLSA,     /* name: "_25._tcp.mx.example.com"; result: records, and ad */
	DNS_LOOKUP_PTR,      /* name: an IP address; result: hosts (names, no addresses) */
};

enum dns_status {
	DNS_STATUS_OK = 0,
	DNS_STATUS_PERM = 1,   /* bounce: 5.x.x */
	DNS_STATUS_TEMP = 2,   /* defer: 4.x.x */
};

enum dns_reason {
	DNS_REASON_NONE,
	DNS_REASON_NXDOMAIN,    /* perm: the name does not exist */
	DNS_REASON_NODATA,      /* perm: no record of the type */
	DNS_REASON_NULL_MX,     /* perm: RFC 7505 */
	DNS_REASON_NO_ADDRESS,  /* perm or temp: no MX host (or the host) has an address */
	DNS_REASON_SERVFAIL,    /* temp, like all that follow */
	DNS_REASON_REFUSED,
	DNS_REASON_TIMEOUT,
	DNS_REASON_BAD_ANSWER,  /* malformed, FORMERR, a referral, a CNAME chain too long */
	DNS_REASON_NETWORK,     /* a socket error (ECONNREFUSED: ICMP port unreachable) */
	DNS_REASON_TOO_LARGE,
	DNS_REASON_BUSY,        /* no query slot free */
};

#define DNS_HOST_IMPLICIT   0x1u   /* no MX: the domain itself (RFC 5321 5.1) */
#define DNS_HOST_IP_LITERAL 0x2u   /* the MX target was an IP address, used as it is */
#define DNS_HOST_CNAME      0x4u   /* the MX target (or the host) was an alias */

struct dns_addr {
	int family;                  /* AF_INET or AF_INET6 */
	uint8_t bytes[16];           /* network order; IPv4 in the first 4 */
};

struct dns_host {
	uint16_t pref;
	uint16_t flags;              /* DNS_HOST_* */
	struct slice name;           /* text, no trailing dot, in the result's data */
	uint32_t addr_count;
	struct dns_addr addrs[DNS_HOST_ADDRS_MAX];
};

struct dns_record {
	uint8_t tlsa_usage;          /* RFC 6698 2.1 */
	uint8_t tlsa_selector;
	uint8_t tlsa_mtype;
	struct slice data;           /* TXT: the strings joined; TLSA: the association data */
};

struct dns_result {
	enum dns_status status;
	enum dns_reason reason;
	const char *enhanced;        /* RFC 3463 code for a DSN: "5.1.10", "5.4.4", "4.4.3", "" */
	bool ad;                     /* every answer used had AD set (RFC 4035 3.2.3; for DANE) */
	uint32_t host_count;         /* MX: usable hosts in order; ADDR: 1; PTR: the names */
	uint32_t hosts_unresolved;   /* MX hosts left out for want of an address */
	uint32_t record_count;
	struct dns_host hosts[DNS_RESULT_HOSTS_MAX];
	struct dns_record records[DNS_RESULT_RECORDS_MAX];
	char reason_text[DNS_REASON_LEN_MAX];   /* failures, for logs and bounces: "name=... type=MX:
	                                         * ..."; empty when OK */
	uint32_t data_len;
	uint8_t data[DNS_RESULT_DATA_MAX];
};

/* Resolver settings, made once at start-up (dns_resolver_config_from) and shared read-only. */
struct dns_resolver_config {
	struct config_addr servers[CONFIG_DNS_SERVERS_MAX];
	uint32_t server_count;
	uint32_t timeout_ms;           /* per attempt */
	uint32_t attempts;             /* rounds over the servers */
	uint32_t lookup_deadline_ms;
	uint32_t cache_max;            /* entries */
	uint32_t inet_protocols;       /* enum config_inet */
};

struct dns_resolver_stats {
	uint64_t lookups;              /* started */
	uint64_t lookups_coalesced;    /* joined a lookup under way */
	uint64_t queries;              /* distinct (name, type) questions sent */
	uint64_t queries_coalesced;    /* a lookup joined a query under way */
	uint64_t attempts_udp;
	uint64_t attempts_tcp;
	uint64_t timeouts;
	uint64_t strays;               /* datagrams ignored: wrong id, question or malformed */
	uint64_t tcp_connects;
	uint64_t cache_hits;
	uint64_t cache_misses;
	uint32_t cache_entries;
	uint32_t queries_active;       /* query slots in use (draining ones too) */
	uint32_t lookups_active;       /* lookups under way */
};

/* Start-up, once for all shards: servers from cfg->dns (else from the file at resolv_conf_path,
 * and RES_OPTIONS), timeout and attempts from cfg (else the file's, else 5 s and 2), the cache
 * bound and inet_protocols from cfg. Returns 0, or -1 with a message in err (no server). */
int dns_resolver_config_from(const struct config *cfg, const char *resolv_conf_path,
	struct dns_resolver_config *out, char *err, size_t err_len) MUST_USE;

/* Start-up, on the shard's thread: the shard's resolver on ring r (registers two op codes and a
 * hook set; rc is copied). Returns 0 or -ENOMEM (or -errno of getrandom). */
int dns_resolver_new(struct ring *r, const struct dns_resolver_config *rc,
	struct dns_resolver **out) MUST_USE;

/* After the shard's loop has ended: closes the sockets and frees everything. Outstanding
 * handles become invalid. */
void dns_resolver_free(struct dns_resolver *res);

/* Starts a lookup of name (text; for PTR an IP address) and reserves the event that will carry
 * user_data and the status. *handle names it until dns_lookup_release. Returns 0, -EINVAL (the
 * name is not a host name or address), -EAGAIN (a limit is reached: retry later), or -ENOMEM
 * (no room for the event). The name is copied. The event may be posted before this returns
 * (answer cached): it is dispatched by the loop as usual. */
int dns_lookup_start(struct dns_resolver *res, enum dns_lookup_type type, struct slice name,
	uint64_t user_data, uint64_t *handle) MUST_USE;

/* The result of a lookup whose event was posted; NULL before that. Valid, and unchanged, until
 * dns_lookup_release(handle). */
const struct dns_result *dns_lookup_result(const struct dns_resolver *res, uint64_t handle);

/* Gives the handle back: before the event, this cancels the lookup for this requester (the
 * event is not posted, and the lookup and its queries end when no one else waits for them). */
void dns_lookup_release(struct dns_resolver *res, uint64_t handle);

void dns_resolver_get_stats(const struct dns_resolver *res, struct dns_resolver_stats *out);

/* Short names for logs: "MX", "NXDOMAIN", ... */
const char *dns_lookup_type_name(enum dns_lookup_type type);
const char *dns_reason_name(enum dns_reason reason);
#endif
