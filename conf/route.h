/* conf/route.h - where outbound mail goes: transport_maps, relayhost, destination_policy_file.
 *
 * Read once at start-up (blocking file reads, before the shards run) and frozen: every shard
 * looks up the same read-only tables, without locks.
 *
 * transport_maps: a file of "domain nexthop" lines ('#' starts a comment line). "example.com"
 * matches that domain only; ".example.com" matches its subdomains (a.example.com,
 * b.a.example.com), the most specific entry winning. The next hop is Postfix's syntax, with an
 * optional "smtp:" in front: "[host]:port" or "[host]" (no MX lookup: the host's addresses, or
 * the IP address itself), "host:port" or "host" (the MX records of host). No port: the
 * remote_smtp_port. A domain that no entry matches goes to relayhost when it is set, else to its
 * own MX hosts (route_next_hop says which).
 *
 * destination_policy_file: per-destination overrides of the outbound limits, one line per domain
 * or MX-host suffix: "example.com concurrency=5 recipients=20 messages_per_connection=50
 * rate=20/s tls=encrypt" (tls: smtp_tls_security_level for it). "example.com" matches the recipient domain example.com, or an MX host named
 * example.com; ".google.com" matches any MX host (or domain) under google.com. Keys not given
 * keep the global value. route_policy_find returns the most specific match.
 *
 * Limits: ROUTE_ENTRIES_MAX lines per file, names up to ROUTE_NAME_LEN_MAX octets; a longer file
 * or a bad line is a start-up error naming the file and the line. */
#ifndef RINGMTA_CONF_ROUTE_H
#define RINGMTA_CONF_ROUTE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/assert.h"
#include "base/slice.h"

struct config;

#define ROUTE_ENTRIES_MAX   100000u   /* lines per file */
#define ROUTE_NAME_LEN_MAX     253u   /* RFC 1035 2.3.4, without the trailing dot */
#define ROUTE_ERR_MAX          512u
#define ROUTE_RATE_MAX      100000u   /* messages per second (CONFIG_DEST_RATE_MAX) */

/* A next hop. */
struct route_hop {
	char host[ROUTE_NAME_LEN_MAX + 1];   /* a host name or an IP address, no brackets */
	uint16_t port;                        /* 0: remote_smtp_port */
	bool mx;                              /* look up the MX records of host */
};

#define ROUTE_TLS_GIVEN 1u   /* route_limits.tls: ROUTE_TLS_GIVEN + enum config_tls_level */

/* Overrides; 0 means "not given": the global value holds. */
struct route_limits {
	uint32_t concurrency;
	uint32_t recipients;
	uint32_t messages_per_connection;
	uint32_t rate;                        /* messages per second */
	uint8_t tls;                          /* tls=none|may|encrypt|verify, or 0 */
};

struct route_entry {
	char name[ROUTE_NAME_LEN_MAX + 2];   /* lower case; a leading '.' for a suffix entry */
	struct route_hop hop;                /* transport_maps */
	struct route_limits limits;          /* destination_policy_file */
};

struct route_table {
	struct route_entry *entries;         /* sorted by name */
	uint32_t count;
};

/* The frozen routing of the process. */
struct route {
	struct route_table transport;
	struct route_table policy;
	struct route_hop relayhost;          /* host empty: none */
};

/* Start-up: reads cfg's transport_maps and destination_policy_file (when set) and takes
 * relayhost. Returns 0, or -1 with a message in err ("transport:3: ..."). */
int route_init(struct route *r, const struct config *cfg, char *err, size_t err_len) MUST_USE;

void route_fini(struct route *r);

/* Some policy entry asks for outbound TLS (tls=may or above). */
bool route_policy_wants_tls(const struct route *r);

/* Parses a whole transport_maps (policy false) or policy (true) text into t; name is shown in
 * errors. Returns 0, or -1 with a message in err. (Exposed for the unit tests.) */
int route_table_parse(struct route_table *t, bool policy, const char *name, struct slice text,
	char *err, size_t err_len) MUST_USE;

/* Parses a next hop: "[host]:port", "[host]", "host:port", "host", with an optional "smtp:".
 * Returns whether it is one. */
bool route_hop_parse(struct slice text, struct route_hop *out);

/* Where mail for domain goes: the transport entry, else relayhost, else the domain's own MX
 * hosts (hop.host = domain, mx = true). A domain literal "[192.0.2.1]" goes to that address
 * (mx = false). Returns false when the domain is not a valid name (the caller bounces). */
bool route_next_hop(const struct route *r, struct slice domain, struct route_hop *out);

/* The most specific policy entry for a destination, matched against the domain and each of the
 * names (the MX host names), or NULL. */
const struct route_limits *route_policy_find(const struct route *r, struct slice domain,
	const struct slice *names, uint32_t name_count);
#endif
