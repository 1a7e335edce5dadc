/* engine/control.h - one shard's queue control socket: what `ringmta queue` talks to.
 *
 * Every shard owns its spool, so every shard listens on its own Unix socket (shard 0 on
 * control_socket, shard n on control_socket.n) and serves the commands for its own queue; the
 * client asks each in turn and merges the answers (the header of every answer says how many
 * shards there are). Chosen over forwarding through engine/xshard because a listing is large:
 * it would have to be built in memory and handed across, where here each shard streams its own
 * with the transport's back-pressure. The socket is made with mode 0600 before it listens.
 *
 * A connection is a session on engine/conn like an SMTP one: one request (proto/qctl), its
 * answer, close. Commands on one message go to queue/spool (spool_ctl: a durable record, the
 * answer once it is durable; flush in memory); list, summary and flush DOMAIN walk the live
 * messages, reading each one's envelope back through the ring, one at a time, never more than
 * the transport's soft bound of output waiting. One log line per action (event=queue_control,
 * with the queue id). At most CONTROL_SESSIONS_MAX sessions per shard; more get an error answer.
 * Owned by one shard. */
#ifndef RINGMTA_ENGINE_CONTROL_H
#define RINGMTA_ENGINE_CONTROL_H
#include <stdint.h>

#include "base/ring.h"
#include "engine/conn.h"

struct spool;
struct control;

#define CONTROL_SESSIONS_MAX      4u
#define CONTROL_TIMEOUT_MS    10000u      /* for the request line */
#define CONTROL_ENV_READ_FIRST 4096u      /* octets of a message read first for its envelope */
#define CONTROL_SUMMARY_DOMAINS_MAX 65536u /* distinct domains in a summary; the rest: "(other)" */
#define CONTROL_LISTEN_BACKLOG   16

/* Called on every flush, before the recipients are made due (main: the outbound agent revives
 * its dead destinations). */
typedef void (*control_flush_fn)(void *ctx);

struct control_params {
	const char *path;               /* this shard's socket */
	uint32_t shard;
	uint32_t shards;
	struct spool *spool;
	struct conn_pool *conns;
	control_flush_fn flush;         /* may be NULL */
	void *flush_ctx;
};

/* Start-up: makes the socket (an old one at path is removed first: the spool lock says no
 * other daemon owns it), mode 0600, listens, registers its ops and hooks. Returns 0 or -errno. */
int control_open(struct ring *r, const struct control_params *p, struct control **out);

/* After the ring is gone: the socket is closed and its name removed. */
void control_close(struct control *q);
#endif
