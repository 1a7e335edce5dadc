/* deliver/outbound_int.h - private to deliver/outbound*.c: the agent's own structures.
 *
 * outbound.c: requests at home (routing, DNS, hand-over), destinations and their queues on the
 * owner, the turn hook. outbound_session.c: one outgoing SMTP connection driving
 * proto/smtp_client on engine/conn. Everything here belongs to one shard's thread. */
#ifndef RINGMTA_DELIVER_OUTBOUND_INT_H
#define RINGMTA_DELIVER_OUTBOUND_INT_H
#include <stdbool.h>
#include <stdint.h>

#include "deliver/outbound.h"
#include "deliver/outbound_sched.h"
#include "engine/conn.h"
#include "proto/smtp_client.h"

#define OUTBOUND_BODY_BUF_SIZE   (128u << 10)  /* body read from the spool per round */
#define OUTBOUND_FEED_ROUNDS_MAX 64u           /* smtp_client_feed calls per input */
#define OUTBOUND_BODY_ROUNDS_MAX 4096u         /* smtp_client_body calls per pump */
#define OUTBOUND_ADDR_DOWN_MS    60000u        /* an address that failed is tried last */
#define OUTBOUND_ROUTE_TTL_MS    60000u        /* a destination takes a newer route after */
#define OUTBOUND_EVICT_WAIT_MS     100u        /* a destination evicts one idle session per */
#define OUTBOUND_DEST_BUCKETS    (1u << 16)
#define OUTBOUND_TXN_RCPTS_MAX   SMTP_CLIENT_RCPT_COUNT_MAX
#define OUTBOUND_TIMEOUTS_MAX    6u            /* distinct client timeouts: greeting, cmd,
                                                * data init, data block, data term, idle */
_Static_assert((OUTBOUND_DEST_BUCKETS & (OUTBOUND_DEST_BUCKETS - 1)) == 0, "power of two");
_Static_assert(OUTBOUND_HOME_MAX <= RING_SLOT_MAX, "a home slot fits a user_data");

struct ob_session;

/* A destination on its owner shard. */
struct ob_dest {
	uint64_t hash;
	char *key;
	uint32_t key_len;
	struct outbound_route route;            /* the owner's copy */
	uint64_t route_ms;
	uint64_t addr_down_until[OUTBOUND_ROUTE_ADDRS_MAX];
	uint32_t rotate;                        /* spreads sessions over the first preference */
	struct outbound_sched_dest sched;
	uint8_t tls_level;                      /* enum config_tls_level: global or its policy's */
	struct outbound_req *q_head, *q_tail;   /* requests with recipients not in a transaction */
	uint32_t q_count;
	struct ob_session *idle_head;           /* READY sessions waiting for work */
	uint32_t sessions;                      /* alive */
	uint32_t opening;                       /* alive and not READY yet */
	bool on_work;
	uint64_t wake_ms;                       /* rate: when the next transaction may start */
	struct ob_dest *work_next;
	struct ob_dest *hash_next;
	uint64_t idle_since_ms;
	uint64_t evicted_ms;                    /* when it last made an idle session QUIT */
	/* Why the last session failed, for recipients deferred without connecting. */
	char last_error[OUTBOUND_REPLY_MAX];
	char last_status[OUTBOUND_STATUS_MAX];
	char last_relay[OUTBOUND_RELAY_MAX];
};

struct ob_home {
	struct outbound_req *req;
	uint32_t gen;
	uint32_t next_free;
};

struct ob_timeout {
	uint32_t ms;
	uint32_t cls;
};

struct outbound {
	struct ring *ring;
	struct outbound_params p;
	uint32_t shard;
	uint8_t op_dns, op_body;
	struct smtp_client_config ccfg[CONFIG_TLS_VERIFY + 1];   /* per enum config_tls_level */
	struct tls_cache *tls_cache;            /* with p.tls: sessions to resume, by MX name */
	struct ob_timeout timeouts[OUTBOUND_TIMEOUTS_MAX];
	uint32_t timeout_count;
	uint32_t idle_class;
	uint32_t rcpt_limit_max;                /* the largest recipients limit of any policy */
	/* home */
	struct ob_home *homes;                  /* OUTBOUND_HOME_MAX */
	uint32_t home_free;
	uint32_t home_count;
	struct outbound_req *dns_retry;         /* lookups refused for now (-EAGAIN) */
	struct outbound_req *send_retry;        /* XMSG_DELIVER refused for now */
	/* owner */
	struct ob_dest **buckets;
	uint32_t dest_count;
	struct ob_dest *work_head;              /* destinations with queued work */
	struct outbound_req *done_retry;        /* XMSG_DELIVERY_RESULT refused for now */
	uint32_t owned_reqs;                    /* requests of other shards held here */
	struct ob_session **slots;
	uint32_t slot_count, slot_max, free_head;
	uint32_t live;                          /* sessions alive */
	uint32_t conn_limit;                    /* this shard's share of outbound_connection_limit */
	struct ob_session *reconnect;           /* sessions to move to their next address */
	struct ob_session *idle_oldest, *idle_newest;   /* every idle session, oldest first */
	struct outbound_stats stats;
};

/* outbound.c, for the sessions. */
void outbound_rcpt_done(struct outbound *ob, struct outbound_req *req);
void outbound_dest_kick(struct outbound *ob, struct ob_dest *d);
struct outbound_req *outbound_dest_take(struct outbound *ob, struct ob_dest *d);
void outbound_dest_fail_head(struct outbound *ob, struct ob_dest *d, const char *status,
	const char *reply, const char *relay, bool perm);
void outbound_result_set(struct outbound_result *res, enum outbound_outcome o,
	const char *status, const char *reply, const char *relay, bool remote);
const char *outbound_addr_name(const struct outbound_route *rt, uint32_t i, uint32_t *len);

/* outbound_session.c */
int outbound_session_open(struct outbound *ob, struct ob_dest *d) MUST_USE;
/* An idle READY session of d takes req (or the next queued one). */
void outbound_session_give(struct ob_session *s, struct outbound_req *req);
void outbound_session_quit(struct ob_session *s);
/* The shard is at its connection share and d needs one: the session idle the longest (of
 * another destination) QUITs to make room. Returns whether one did. */
bool outbound_session_evict(struct outbound *ob, const struct ob_dest *d);
void outbound_sessions_turn(struct outbound *ob);
void outbound_sessions_init(struct outbound *ob);
void outbound_sessions_fini(struct outbound *ob);
#endif
