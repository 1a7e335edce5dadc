/* engine/shard.h - one shard: a thread, its io_uring, listeners, connections, buffers, spool.
 *
 * A shard owns everything in struct shard; only its own thread touches it (STYLE.md 2). The
 * shards share only the frozen configuration and policy (struct engine). A shard learns of
 * shutdown through an IORING_OP_MSG_RING completion sent by the main thread.
 *
 * Completions carry (op, slot, generation) packed into user_data so that a completion for a
 * connection slot that was closed and reused meanwhile is recognised as stale and ignored. */
#ifndef RINGMTA_ENGINE_SHARD_H
#define RINGMTA_ENGINE_SHARD_H
#include <liburing.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "engine/timer.h"
#include "proto/smtp_server.h"

struct config;
struct policy;
struct conn;
struct spool;
struct deliver;
struct record_rcpt;

#define SHARD_RING_ENTRIES      4096u
#define SHARD_CQE_BATCH_MAX      512u   /* completions handled per loop turn before flushing */
#define SHARD_BUF_COUNT          256u   /* provided receive buffers per shard (power of two) */
#define SHARD_BUF_SIZE         16384u
#define SHARD_BUF_GROUP            1u
#define SHARD_LISTEN_MAX          16u
#define SHARD_FILES_MAX          256u   /* registered file slots (one per Maildir delivery job) */
_Static_assert((SHARD_BUF_COUNT & (SHARD_BUF_COUNT - 1)) == 0, "buffer ring size is a power of 2");
_Static_assert(SMTP_CMD_LINE_LEN_MAX <= SHARD_BUF_SIZE, "a command line fits in one buffer");

/* What a completion belongs to (the low 8 bits of user_data). */
enum shard_op {
	SHARD_OP_NONE = 0,     /* completions nobody waits for (CQE_SKIP_SUCCESS failures) */
	SHARD_OP_ACCEPT,       /* slot: listener index */
	SHARD_OP_RECV,         /* slot + gen: connection */
	SHARD_OP_SEND,
	SHARD_OP_CLOSE,
	SHARD_OP_CANCEL,
	SHARD_OP_MSG,          /* MSG_RING from the main thread: shutdown */
	SHARD_OP_SPOOL,        /* slot: spool operation (see queue/spool.c) */
	SHARD_OP_DELIVER,      /* slot + gen: delivery job (see queue/maildir.c) */
};

static inline uint64_t
shard_user_data(enum shard_op op, uint32_t slot, uint32_t gen)
{
	return (uint64_t)op | ((uint64_t)(slot & 0xffffffu) << 8) | ((uint64_t)gen << 32);
}

static inline enum shard_op shard_ud_op(uint64_t ud) { return (enum shard_op)(ud & 0xffu); }
static inline uint32_t shard_ud_slot(uint64_t ud) { return (uint32_t)(ud >> 8) & 0xffffffu; }
static inline uint32_t shard_ud_gen(uint64_t ud) { return (uint32_t)(ud >> 32); }

/* The read-only world every shard shares, frozen before the shards start. */
struct engine {
	const struct config *cfg;
	const struct policy *policy;
	struct smtp_server_config smtp;
	uint32_t shard_count;
};

struct shard_stats {
	uint64_t accepted_conns;
	uint64_t messages_committed;
	uint64_t fdatasyncs;
	uint64_t maildir_syncs;              /* syncfs calls of the Maildir group sync */
	uint64_t deliveries;
	uint64_t body_bytes;                 /* octets of the messages committed */
	uint64_t body_copied;                /* octets of body copied in user space on the way */
};

struct shard {
	uint32_t index;
	const struct engine *eng;
	struct io_uring ring;
	pthread_t thread;
	int ring_fd;                         /* for MSG_RING from the main thread */
	uint64_t now_ms;                     /* CLOCK_MONOTONIC, read once per loop turn */
	uint64_t now_real_ms;                /* CLOCK_REALTIME, for logs and headers */
	bool stopping;

	int listen_fd[SHARD_LISTEN_MAX];
	uint32_t listen_count;

	struct io_uring_buf_ring *buf_ring;
	uint8_t *buf_base;
	uint32_t buf_returned;               /* buffers added back since the last advance */

	struct conn **conns;                 /* slots, allocated on first use and kept */
	uint32_t conn_slots;                 /* allocated so far */
	uint32_t conn_live;
	uint32_t conn_free;                  /* head of the free slot list, UINT32_MAX: none */
	struct conn *rearm_head;             /* connections whose recv must be re-armed */
	struct timer_list idle_cmd;
	struct timer_list idle_data;

	struct spool *spool;
	struct deliver *deliver;
	struct record_rcpt *rcpt_scratch;    /* SMTP_RCPT_COUNT_MAX entries: envelope encoding */
	struct shard_stats stats;
	uint64_t stop_deadline_ms;
	int start_rc;                        /* start-up result, read by shard_start */
	int ready_fd;                        /* eventfd: start-up finished */
};

/* Starts shard `index`: its thread creates the ring (SINGLE_ISSUER), buffers and listeners,
 * recovers its spool, then serves. Returns once it serves (0) or failed (-errno, message on
 * stderr). */
int shard_start(struct shard *sh, const struct engine *eng, uint32_t index);

/* Asks the shard to stop, from another thread: an IORING_OP_MSG_RING sent on that thread's ring
 * `from`. Returns 0 or -errno. */
int shard_request_stop(struct io_uring *from, struct shard *sh);

/* Waits for the shard's thread; returns its exit code. */
int shard_join(struct shard *sh);

/* An SQE from the shard's ring, submitting first if the ring is full. Never NULL. */
struct io_uring_sqe *shard_sqe(struct shard *sh);

/* Makes room for n SQEs, so that a linked chain reaches the kernel in one submission. */
void shard_sqe_reserve(struct shard *sh, uint32_t n);

/* Gives receive buffer bid back to the buffer ring (made visible at the end of the turn). */
void shard_buf_return(struct shard *sh, uint16_t bid);

static inline uint8_t *
shard_buf(struct shard *sh, uint16_t bid)
{
	return sh->buf_base + (size_t)bid * SHARD_BUF_SIZE;
}
#endif
