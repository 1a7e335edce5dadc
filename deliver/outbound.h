/* deliver/outbound.h - the outbound SMTP agent: routes, destinations, connections, results.
 *
 * One agent per shard. The queue manager of a shard (its "home") hands it one request per
 * message attempt and recipient domain (outbound_submit); the request is the qmgr's and stays
 * put until the result. The home agent routes it (conf/route: transport_maps, relayhost, else
 * the domain's MX hosts), resolves the next hop through the shard's resolver (dns/), and names
 * its destination: the MX host set after rollup (every domain hosted by one provider shares one
 * destination), or the [host]:port of a relay. One shard owns each destination (the hash of its
 * key, modulo the shard count), so its limits and its connection pool are exact; when that is
 * another shard the request crosses as an XMSG_DELIVER naming it (xmsg.arg: a pointer to the
 * request; the body stays in the home spool, read through its descriptor), and the result comes
 * back as an XMSG_DELIVERY_RESULT. Ownership: the caller's fields are read-only for the agent;
 * the result slots and the `private` part belong to the owner shard from the XMSG_DELIVER to the
 * XMSG_DELIVERY_RESULT (the xshard ring's release/acquire orders them), then to home again.
 *
 * The owner queues the request on its destination, opens connections within the destination's
 * limits (deliver/outbound_sched.h, destination_policy_file overrides), reuses them while the
 * destination has work, gives each READY connection the next transaction (at most
 * destination_recipient_limit recipients of one request) and drives proto/smtp_client on
 * engine/conn. The body goes from the spool to the socket as slices of the qmgr's buffer (its
 * first part) and of this agent's read buffer (the rest, read through the ring), dot-stuffed by
 * proto/data_stuff or sent as one BDAT chunk; see outbound_session_body for the copies.
 *
 * The result: every recipient of the request gets its slot filled once (delivered, deferred or
 * bounced, RFC 3463 status, the receiver's reply or our reason, relay host[ip]:port, delay
 * parts), then one posted event goes to the submitter's user_data on home (reserved by
 * outbound_submit). UNTRIED means "not attempted" (the shard is stopping): release it.
 *
 * Limits: OUTBOUND_HOME_MAX requests under way per home shard, OUTBOUND_DESTS_MAX destinations
 * per owner shard (idle ones are dropped past it), OUTBOUND_ROUTE_ADDRS_MAX addresses per
 * destination (smtp_mx_address_limit), replies kept up to OUTBOUND_REPLY_MAX octets. */
#ifndef RINGMTA_DELIVER_OUTBOUND_H
#define RINGMTA_DELIVER_OUTBOUND_H
#include <stdbool.h>
#include <stdint.h>

#include "base/ring.h"
#include "base/slice.h"
#include "conf/config.h"
#include "dns/resolver.h"

struct tls_client_ctx;
#include "queue/spool.h"

struct outbound;
struct conn_pool;
struct route;
struct xshard_endpoint;

#define OUTBOUND_REPLY_MAX        512u   /* octets of a reply kept per recipient */
#define OUTBOUND_RELAY_MAX        320u   /* "host[ip]:port" */
#define OUTBOUND_TLS_MAX          160u   /* tls_stage_describe's text (TLS_STAGE_DESCRIBE_MAX) */
#define OUTBOUND_TLS_CACHE_ENTRIES 1024u /* TLS sessions kept per shard for resumption */
#define OUTBOUND_STATUS_MAX        10u   /* "5.123.456" and its NUL */
#define OUTBOUND_ROUTE_ADDRS_MAX  CONFIG_MX_ADDRESS_LIMIT_MAX
#define OUTBOUND_ROUTE_NAMES_MAX 2048u   /* octets of the host names of one route */
#define OUTBOUND_KEY_MAX         1024u   /* a destination's key text */
#define OUTBOUND_HOME_MAX       65536u   /* requests under way per home shard */
#define OUTBOUND_DESTS_MAX      65536u   /* destinations per owner shard */

enum outbound_outcome {
	OUTBOUND_UNTRIED = 0,   /* not attempted: give the recipient back (spool_rcpt_release) */
	OUTBOUND_DELIVERED,
	OUTBOUND_DEFERRED,
	OUTBOUND_BOUNCED,
};

/* One recipient's result, filled by the agent. */
struct outbound_result {
	uint8_t outcome;                      /* enum outbound_outcome */
	bool remote;                          /* the reply is the receiver's (DSN "smtp;") */
	bool dsn_passed;                      /* delivered to a receiver that offered DSN */
	char status[OUTBOUND_STATUS_MAX];     /* RFC 3463 */
	char reply[OUTBOUND_REPLY_MAX];       /* "550 5.1.1 <b@x>: unknown", or our reason */
	char relay[OUTBOUND_RELAY_MAX];       /* "mx.example.com[192.0.2.1]:25", or "none" */
	char tls[OUTBOUND_TLS_MAX];           /* "TLSv1.3 with cipher ...", or empty: clear text */
	uint32_t dns_ms;                      /* routing and DNS */
	uint32_t connect_ms;                  /* connect, greeting, EHLO (0 on a reused one) */
	uint32_t xmit_ms;                     /* the transaction: MAIL to the reply after data */
};

/* One recipient as the spool keeps it; slices stay valid until the result. */
struct outbound_rcpt {
	struct slice path;                    /* local@domain */
	struct slice orcpt;                   /* RFC 3461 ORCPT as received, or empty */
	uint8_t notify;                       /* SMTP_DSN_NOTIFY_* */
	uint32_t index;                       /* in the message's envelope, for the caller */
	struct outbound_result result;
};

/* Where the body is: the octets already in memory (a prefix, possibly all of it), then the
 * whole body again as stretches of spool segments (spool_body_extents), read from head.len on.
 * len is the whole body. */
struct outbound_body {
	struct slice head;
	const struct spool_extent *ext;
	uint32_t ext_count;
	uint64_t len;
};

/* private: the agent's */
struct outbound_addr {
	int family;                           /* AF_INET, AF_INET6 */
	uint8_t bytes[16];
	uint16_t pref;
	uint16_t name_off, name_len;          /* in names */
};

struct outbound_route {
	uint64_t hash;                        /* of key */
	uint16_t port;
	uint32_t addr_count;
	uint32_t key_len;
	uint32_t names_len;
	struct outbound_addr addrs[OUTBOUND_ROUTE_ADDRS_MAX];
	char key[OUTBOUND_KEY_MAX];
	char names[OUTBOUND_ROUTE_NAMES_MAX];
};

struct outbound_req_private {
	/* home */
	uint64_t ud;                          /* the submitter's event */
	uint32_t home_slot;
	uint32_t home_shard;
	uint64_t submit_ms;                   /* ring now_ms at submit */
	uint64_t dns_handle;
	bool dns_busy;
	struct outbound_req *home_next;       /* home retry lists */
	struct outbound_route route;
	uint32_t dns_ms;
	/* owner */
	struct outbound_req *owner_next;      /* the destination's queue, the done list */
	uint32_t next_rcpt;                   /* first recipient not yet in a transaction */
	uint32_t unresolved;                  /* recipients without a result */
};

/* One request: the recipients of one message attempt for one domain. */
struct outbound_req {
	uint64_t qid;
	struct slice domain;                  /* the recipients' domain */
	struct slice mail_from;               /* empty: <> */
	uint8_t body_type;                    /* enum smtp_body_type */
	bool smtputf8;
	uint8_t dsn_ret;                      /* enum smtp_dsn_ret */
	struct slice dsn_envid;
	struct outbound_body body;
	struct outbound_rcpt *rcpts;
	uint32_t rcpt_count;                  /* 1 .. RECORD_RCPT_MAX */
	struct outbound_req_private priv;
};

struct outbound_params {
	const struct config *cfg;
	const struct route *route;
	struct conn_pool *conns;
	struct dns_resolver *resolver;        /* NULL: no DNS servers (lookups defer) */
	struct xshard_endpoint *xshard;       /* NULL with one shard */
	uint32_t shard_count;
	struct tls_client_ctx *tls;           /* STARTTLS, or NULL when no level asks for it */
};

struct outbound_stats {
	uint64_t connections;                 /* opened */
	uint64_t connect_failures;
	uint64_t transactions;
	uint64_t delivered;
	uint64_t deferred;
	uint64_t bounced;
	uint64_t sent_away;                   /* requests handed to another shard */
	uint64_t owned;                       /* requests this shard delivered as owner */
	uint64_t body_bytes;                  /* body octets handed to the output, all borrowed
	                                       * (conn_write_ref): none is copied in user space */
	uint64_t suspensions;
	uint64_t tls_handshakes;              /* completed after STARTTLS */
	uint64_t tls_failures;
};

/* Start-up, on the shard's thread: registers ops, hooks and xshard handlers. Returns 0 or
 * -ENOMEM. */
int outbound_init(struct ring *r, const struct outbound_params *p, struct outbound **out);

void outbound_fini(struct outbound *ob);

/* Starts delivering req; posts one event to ud when every recipient has its result (res 0).
 * Returns 0, or -ENOMEM (no event will come: the caller defers). */
int outbound_submit(struct outbound *ob, struct outbound_req *req, uint64_t ud) MUST_USE;

/* `ringmta queue flush`: every destination this shard owns that is suspended is tried again
 * (Postfix's flush revives dead destinations too); each shard gets the command. */
void outbound_flush(struct outbound *ob);

const struct outbound_stats *outbound_stats(const struct outbound *ob);
#endif
