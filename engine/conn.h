/* engine/conn.h - the transport: one TCP connection of a shard, whatever speaks on it.
 *
 * A connection is a socket with its receive path, its output, back-pressure, an idle deadline,
 * and cancel and close. What speaks on it is a session (the SMTP server session of engine/smtpd,
 * the SMTP client session of the outbound agent), plugged in through struct conn_session_ops;
 * a TLS stage will sit between the socket and the session, under the same interface.
 *
 * Input arrives by multishot recv into the shard's provided buffers and is offered to the
 * session straight from those buffers; only bytes the session does not take (a partial command
 * line, commands pipelined behind a message being committed) are copied into the connection's
 * pending buffer and offered again, ahead of newer bytes, when more arrive or the session calls
 * conn_kick. Output written with conn_write collects during the loop turn and leaves in one send
 * at its end. Back-pressure: while the pending input or the unsent output is over its soft bound,
 * the connection stops reading (its recv is cancelled and re-armed later) and stops offering
 * input. Outbound connections are opened with conn_connect (IORING_OP_CONNECT with a linked
 * timeout, an optional source address).
 *
 * Slots are allocated the first time the pool needs them and then reused; a generation number
 * tells stale completions apart. Owned by one shard: only its thread calls these functions. The
 * session callbacks are called from completions and from the end-of-turn hook, never from inside
 * a conn_* call the session made, so a session may call conn_* freely from a callback. After
 * `closed`, the connection pointer is dead. */
#ifndef RINGMTA_ENGINE_CONN_H
#define RINGMTA_ENGINE_CONN_H
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "base/ring.h"
#include "base/slice.h"
#include "base/bufring.h"
#include "engine/timer.h"

struct conn;

#define CONN_PENDING_SOFT_MAX  65536u   /* pending input above this stops reading */
#define CONN_PENDING_HARD_MAX 262144u   /* past this (input in flight when reading stopped): close */
#define CONN_OUTPUT_SOFT_MAX   65536u   /* unsent output above this stops offering input */
#define CONN_OUTPUT_HARD_MAX  (1u << 20) /* conn_write refuses past this */
_Static_assert(CONN_OUTPUT_HARD_MAX <= RING_RW_MAX, "a send is never cut by the kernel");
#define CONN_TIMEOUT_CLASSES_MAX 8u     /* distinct idle timeouts per pool */
#define CONN_SEGS_MAX        1024u      /* stretches per send (IOV_MAX), own and borrowed */
#define CONN_PEER_TEXT_MAX     64u      /* printable address, no port */
#define CONN_TIMEOUT_NONE      UINT32_MAX

struct conn_session_ops {
	/* Bytes from the peer (valid during the call only). Returns how many the session took. */
	size_t (*input)(void *s, struct conn *c, struct slice in);
	/* Outbound only: the connect finished (0) or failed (-errno; `closed` follows). */
	void (*connected)(void *s, struct conn *c, int res);
	/* Everything written so far has been sent. May be NULL. */
	void (*drained)(void *s, struct conn *c);
	/* The idle deadline set with conn_idle passed. */
	void (*timeout)(void *s, struct conn *c);
	/* The connection is gone (the peer left, an error, or a close the session asked for); the
	 * last call for this connection. res: 0, or the -errno that ended it. */
	void (*closed)(void *s, struct conn *c, int res);
};

struct conn_pool_stats {
	uint64_t opened;          /* accepted or connected */
	uint64_t body_copied;     /* octets copied into pending buffers while a session said BODY */
};

/* The connections of one shard. Embedded in the shard; private: use the functions. */
struct conn_pool {
	struct ring *ring;
	struct bufring *bufs;
	struct conn **slots;
	uint32_t slot_max;
	uint32_t slot_count;       /* allocated so far */
	uint32_t live;
	uint32_t free_head;        /* UINT32_MAX: none */
	struct conn *turn_head;    /* connections with work for the end of the turn */
	struct timer_list timers[CONN_TIMEOUT_CLASSES_MAX];
	uint32_t timer_count;
	uint8_t op_recv, op_send, op_connect;
	struct conn_pool_stats stats;
};

/* Start-up: a pool of at most max connections on ring r, receiving into bufs. Registers its
 * ops and its turn hooks. Returns 0 or -ENOMEM. */
int conn_pool_init(struct conn_pool *p, struct ring *r, struct bufring *bufs, uint32_t max);

/* After every connection is closed and the ring drained. */
void conn_pool_fini(struct conn_pool *p);

/* Start-up: the idle timeout class for a duration (the same duration gives the same class). */
uint32_t conn_pool_timeout_class(struct conn_pool *p, uint32_t timeout_ms);

/* Connections open now. */
static inline uint32_t
conn_pool_live(const struct conn_pool *p)
{
	return p->live;
}

/* Takes an accepted socket fd (ownership too) for session s; `listener` is kept for the session
 * to read back. Returns the connection, or NULL when no slot is free (fd is left open). */
struct conn *conn_adopt(struct conn_pool *p, int fd, uint32_t listener,
	const struct conn_session_ops *ops, void *s);

/* Opens a connection to `to` (from `from` if not NULL) for session s; ops->connected tells the
 * outcome within timeout_ms. Returns the connection, or NULL with *err set (-EMFILE, -ENOBUFS:
 * no slot, ...). */
struct conn *conn_connect(struct conn_pool *p, const struct sockaddr *to, socklen_t to_len,
	const struct sockaddr *from, socklen_t from_len, uint32_t timeout_ms,
	const struct conn_session_ops *ops, void *s, int *err);

/* Appends data to the output (copied: the caller's buffer may go); it leaves at the end of the
 * turn. Returns 0, or -ENOBUFS past CONN_OUTPUT_HARD_MAX or when memory is short (nothing is
 * appended then). */
int conn_write(struct conn *c, struct slice data) MUST_USE;

/* Appends data to the output without copying it: the caller keeps data valid and unchanged
 * until the output has drained (`drained`) or the connection is closed (`closed`). Mixes with
 * conn_write in call order; the turn's output then leaves in one sendmsg. Returns 0, or
 * -ENOBUFS (past CONN_OUTPUT_HARD_MAX, CONN_SEGS_MAX stretches, or memory: nothing appended). */
int conn_write_ref(struct conn *c, struct slice data) MUST_USE;

/* How many more conn_write_ref calls the output being collected takes for sure. */
uint32_t conn_write_ref_room(const struct conn *c);

/* Octets written and not yet sent. */
uint32_t conn_unsent(const struct conn *c);

/* The session can take input again: pending bytes are offered at the end of the turn. */
void conn_kick(struct conn *c);

/* Closes after the output is sent. The session gets no more input, then `closed`. */
void conn_close(struct conn *c);

/* Closes now: unsent output is dropped, requests in flight are cancelled. */
void conn_abort(struct conn *c);

/* Starts (or restarts) the idle deadline of class `timeout_class` (CONN_TIMEOUT_NONE: none). */
void conn_idle(struct conn *c, uint32_t timeout_class);

/* The listener index given to conn_adopt (UINT32_MAX for an outbound connection). */
uint32_t conn_listener(const struct conn *c);

/* The peer's address, and as printable text without the port; for a Unix socket peer (family
 * AF_UNIX) "local:" and the login name of its uid ("local:1000" without one). */
const struct sockaddr_storage *conn_peer(const struct conn *c);
const char *conn_peer_text(const struct conn *c);

/* The local address of the connection (for the session: which address it came in on). */
const struct sockaddr_storage *conn_local(const struct conn *c);

/* The session is reading a message body (on) or commands: pending-buffer copies made while on
 * count as body copies in the pool's stats. */
void conn_body_mode(struct conn *c, bool on);
#endif
