/* engine/conn.h - one SMTP connection of a shard: socket I/O around the smtp_server machine.
 *
 * A connection slot is allocated the first time the shard needs it and then reused (a
 * generation number tells stale completions apart); it embeds its smtp_server, so a session
 * allocates nothing but its message buffer. Input arrives by multishot recv into the shard's
 * provided buffers and is fed to the state machine straight from those buffers; only bytes the
 * machine cannot take yet (a partial command line, commands pipelined behind a message that is
 * being committed) are copied into the connection's pending buffer. Replies of one read leave in
 * one send. Back-pressure: while the pending input or the unsent output is over its bound, the
 * connection stops reading (its recv is cancelled and re-armed later). */
#ifndef RINGMTA_ENGINE_CONN_H
#define RINGMTA_ENGINE_CONN_H
#include <liburing.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proto/smtp_server.h"

struct shard;
struct msg;

#define CONN_PENDING_SOFT_MAX  65536u   /* pending input above this stops reading */
#define CONN_PENDING_HARD_MAX 262144u   /* cannot be reached with reading stopped; else 421 */
#define CONN_OUTPUT_SOFT_MAX   65536u   /* unsent replies above this stop parsing */

/* The recipient policy hook of struct smtp_server_config: the connection's relay right and the
 * shared policy decide (ctx is the connection). */
enum smtp_rcpt_verdict conn_rcpt_check(void *ctx, struct slice local_part, struct slice domain,
	bool quoted);

/* A new connection on fd from a listener; takes ownership of fd. */
void conn_accept(struct shard *sh, int fd);

/* A completion for a connection (RECV, SEND, CANCEL ops). */
void conn_complete(struct shard *sh, struct io_uring_cqe *cqe);

/* The spool's verdict on the message that connection (slot, gen) committed. */
void conn_committed(struct shard *sh, uint32_t slot, uint32_t gen, int result, uint64_t qid);

/* End of a loop turn: re-arm receives stopped for back-pressure or ENOBUFS. */
void conn_rearm_all(struct shard *sh);

/* Idle timeouts due at sh->now_ms: 421 and close. */
void conn_expire(struct shard *sh);

/* Milliseconds until the next idle deadline (UINT64_MAX: none). */
uint64_t conn_next_deadline_ms(struct shard *sh);

/* Shutdown: 421 to every session not waiting for a commit; those get theirs after the commit. */
void conn_shutdown_all(struct shard *sh);
#endif
