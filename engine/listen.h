/* engine/listen.h - a shard's listening sockets and their accepts.
 *
 * Every shard opens its own socket on each listen address (SO_REUSEPORT: the kernel spreads the
 * connections over the shards) and keeps one multishot accept armed on it. Each listener has a
 * profile index (port 25 style, submission, implicit TLS): an accepted connection goes to the
 * SMTP server sessions with its listener's profile. When the process is out of descriptors
 * (EMFILE, ENFILE) the accept is not re-armed at once, which would spin: it waits
 * LISTEN_BACKOFF_MS, the shard keeps serving the connections it has, and the condition is
 * logged at most once per LISTEN_LOG_INTERVAL_MS. At shutdown the accepts are cancelled and the
 * sockets closed. A spec of family AF_UNIX (local_listen) is a Unix socket: main gives it to one
 * shard only; a stale socket file at its path is replaced, and the socket is open to every local
 * user (LISTEN_UNIX_MODE). Owned by one shard. */
#ifndef RINGMTA_ENGINE_LISTEN_H
#define RINGMTA_ENGINE_LISTEN_H
#include <stdint.h>
#include <sys/socket.h>

#include "base/ring.h"

struct smtpd;
struct listeners;

#define LISTEN_MAX                48u      /* sockets per shard */
#define LISTEN_BACKLOG          4096
#define LISTEN_BACKOFF_MS        100u      /* after EMFILE/ENFILE before accepting again */
#define LISTEN_LOG_INTERVAL_MS 10000u
#define LISTEN_UNIX_MODE        0666     /* local_listen: any local user may connect */

struct listen_spec {
	struct sockaddr_storage sa;     /* port set; or AF_UNIX with a path */
	socklen_t sa_len;
	uint32_t profile;               /* smtpd profile index */
};

struct listen_stats {
	uint64_t accepted;
	uint64_t fd_exhausted;          /* accepts that failed for want of descriptors */
};

/* Opens and arms every listener (blocking socket calls: start-up only). Returns 0, or -errno
 * with the failing address's index in *failed. */
int listeners_open(struct ring *r, struct smtpd *d, const struct listen_spec *specs,
	uint32_t count, struct listeners **out, uint32_t *failed);

/* After the ring is gone. */
void listeners_close(struct listeners *l);

const struct listen_stats *listeners_stats(const struct listeners *l);
#endif
