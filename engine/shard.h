/* engine/shard.h - one shard: a thread, its ring, receive buffers, connections, and the loop.
 *
 * A shard owns everything hung on its ring; only its own thread touches it (STYLE.md 2). The
 * shards share only the frozen configuration and policy. What runs on a shard (spool, sessions,
 * listeners, delivery agents) is set up by the caller's setup function on the shard's thread,
 * once the ring exists, and registers its ops and hooks there (base/ring.h); the loop then
 * routes completions and calls the hooks, and never calls a module by name.
 *
 * The loop: submit and wait (at most until the earliest deadline a hook reports), read the
 * clocks, route the completions (at most SHARD_CQE_BATCH_MAX per turn, so one burst cannot
 * starve the turn's work), dispatch posted events, give the receive buffers back, run the turn
 * hooks. A shard learns of shutdown through an IORING_OP_MSG_RING completion sent by the main
 * thread: it tells every module (ring_stop) and exits once they are all idle, or after the
 * grace period (what is left over stays in the spool for the next start). */
#ifndef RINGMTA_ENGINE_SHARD_H
#define RINGMTA_ENGINE_SHARD_H
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "base/ring.h"
#include "base/bufring.h"
#include "engine/conn.h"

#define SHARD_RING_ENTRIES      4096u
#define SHARD_CQE_BATCH_MAX      512u   /* completions handled per loop turn before the hooks */
#define SHARD_BUF_COUNT          256u   /* provided receive buffers per shard (power of two) */
#define SHARD_BUF_SIZE         16384u
#define SHARD_TLS_BUF_COUNT      128u   /* spare receive buffers TLS plaintext is decrypted into */
#define SHARD_BUF_GROUP            1u
#define SHARD_FILES_MAX          256u   /* registered file slots, handed out by ring_files_take */
#define SHARD_IDLE_WAIT_MS      1000u   /* longest sleep of the loop */
_Static_assert((SHARD_BUF_COUNT & (SHARD_BUF_COUNT - 1)) == 0, "buffer ring size is a power of 2");
_Static_assert(SHARD_BUF_COUNT + SHARD_TLS_BUF_COUNT <= 65536u, "buffer ids are 16 bits");

struct shard;

/* Runs on the shard's thread once its ring, buffers and connection pool exist: creates what
 * runs on the shard. Returns 0 or -errno (the shard then does not start). */
typedef int (*shard_setup_fn)(struct shard *sh, void *ctx);
/* Runs on the shard's thread after the loop ended and the ring is closed, only if every
 * module was idle by then (else nothing is freed: see shard.c). */
typedef void (*shard_teardown_fn)(struct shard *sh, void *ctx);

struct shard_params {
	uint32_t max_connections;
	uint32_t stop_grace_ms;         /* after SIGTERM: finish commits and deliveries */
	shard_setup_fn setup;
	shard_teardown_fn teardown;
	shard_teardown_fn loop_end;     /* may be NULL: after the loop, before the ring closes */
	void *ctx;
};

/* What the loop did, for the exit stats line and perf/: the cost of a turn is busy_ns / turns. */
struct shard_stats {
	uint64_t turns;
	uint64_t completions;
	uint64_t busy_ns;               /* from waking up to the end of the turn's work */
};

struct shard {
	uint32_t index;
	struct shard_params p;
	struct ring ring;
	struct bufring bufs;
	struct conn_pool conns;
	pthread_t thread;
	uint8_t op_msg;                 /* MSG_RING from the main thread */
	uint64_t stop_deadline_ms;
	int start_rc;                   /* start-up result, read by shard_start */
	int ready_fd;                   /* eventfd: start-up finished */
	int serve_fd;                   /* eventfd: the loop may start (shard_serve) */
	bool clean_exit;                /* every module was idle when the loop ended */
	struct shard_stats stats;
};

/* Starts shard `index` on its own thread (pinned to CPU index): creates the ring, buffers and
 * connection pool and runs p->setup (listeners bound, spool open), then waits for shard_serve
 * before its loop submits anything, so that the process can give up root in between. Returns
 * once set up (0) or failed (-errno: the thread is gone). */
int shard_start(struct shard *sh, uint32_t index, const struct shard_params *p);

/* Lets a shard that shard_start set up run its loop. Once for every shard started, before
 * shard_request_stop. */
void shard_serve(struct shard *sh);

/* Asks the shard to stop, from another thread: an IORING_OP_MSG_RING sent on that thread's ring
 * `from`. Returns 0 or -errno. */
int shard_request_stop(struct io_uring *from, struct shard *sh);

/* Waits for the shard's thread (which ran teardown and closed its ring). */
void shard_join(struct shard *sh);
#endif
