/* base/log_sink.h - a shard's log lines, gathered over a loop turn, written through its ring.
 *
 * Owned by one shard thread (STYLE.md 2). log_sink_open installs the sink as that thread's
 * (log_thread_sink), so log_write, and every log_* function on top of it, copies the line into
 * the sink's buffers instead of calling write(2). At the end of a loop turn (a ring turn hook)
 * the lines gathered so far leave in one IORING_OP_WRITEV on the log descriptor, and the shard
 * goes on without waiting. The write starts at the end of the first turn at least
 * LOG_SINK_GATHER_MS after the oldest of its lines was logged (a busy shard turns often), and the
 * sink asks for a turn of its own only LOG_SINK_LINGER_MS after it (so an idle shard is not woken
 * up for it sooner); at once when LOG_SINK_FLUSH_OCTETS wait or the shard stops. Every write's
 * completion, and every wake-up for a deadline, can cost the loop one more io_uring_enter: a write
 * at the end of every turn cost more of them than this (perf/RESULTS.md). One write is in flight
 * at a time, so the shard's lines reach the log in the order they were logged (a connection
 * lives on one shard: its lines stay in order); what is logged meanwhile waits in the next
 * buffers and goes in the next write, whole.
 *
 * Whole lines, never mixed with another shard's: on a regular file opened O_APPEND
 * (log_fd_appends) the write runs in an io-wq worker as one blocking write (IOSQE_ASYNC: never a
 * non-blocking try that io_uring would complete with a second write after other writers), and
 * the kernel appends one write under the file's lock, so no other write lands inside it. A write
 * the kernel cuts short (a full disk, RLIMIT_FSIZE) may end inside a line: the rest of that line
 * is dropped, and the next write of every sink in the process begins with a LF, so the cut piece
 * ends as a line of its own and nothing is glued to it (empty lines may follow it); only a write
 * another shard submitted before its sink saw the cut, landing after it because space came back
 * in that instant, could still be. On anything
 * else (a pipe, a terminal) a write is at most PIPE_BUF octets and ends at a line end: a pipe
 * takes it whole. Lines of threads without a sink (main) are single write(2)s, whole as well.
 *
 * Bounded: LOG_SINK_BUF_COUNT buffers of LOG_SINK_BUF_SIZE octets, reserved at open. When they are
 * full (a slow or full disk, a pipe nobody reads) a new line is dropped and counted; a failed
 * write is retried after LOG_SINK_RETRY_MS with the lines it held. The shard never blocks and
 * mail goes on. After a write succeeds again, an "event=log_dropped shard=N lines=K" line says how
 * many lines were lost since the last such line.
 *
 * Shutdown: the sink is not idle while lines wait (unless the log is failing: they are dropped at
 * close). log_sink_close, after the loop, writes what is left with plain writes (the lines the
 * teardown logged: the exit stats). log_open may reopen the log at any time: a write in flight
 * goes to the old file or to the new one, whole. */
#ifndef RINGMTA_BASE_LOG_SINK_H
#define RINGMTA_BASE_LOG_SINK_H
#include <stdint.h>

#include "base/assert.h"
#include "base/ring.h"

#define LOG_SINK_BUF_SIZE  (64u * 1024u)   /* octets per buffer: many turns of lines */
#define LOG_SINK_BUF_COUNT        16u      /* buffers per shard: 1 MiB in all */
#define LOG_SINK_RETRY_MS        200u      /* after a failed write (full disk), try again */
#define LOG_SINK_GATHER_MS        20u      /* a line waits this long for company in busy turns */
#define LOG_SINK_LINGER_MS       100u      /* and at most this long on an idle shard */
#define LOG_SINK_FLUSH_OCTETS (LOG_SINK_BUF_SIZE / 2u)   /* this many wait: write now */
_Static_assert(LOG_SINK_GATHER_MS <= LOG_SINK_LINGER_MS, "an idle shard waits longer");

struct log_sink;   /* opaque: defined in log_sink.c */

struct log_sink_stats {
	uint64_t lines;            /* taken into the buffers (log_dropped lines included) */
	uint64_t dropped;          /* lost: no room, the rest of a cut line, unwritable at close */
	uint64_t writes;           /* writes submitted */
	uint64_t write_errors;     /* writes that failed (their lines were kept and retried) */
	uint64_t cuts;             /* writes the kernel cut short inside a line */
};

/* On the shard's thread, at start-up: reserves the buffers, registers an op and the turn hooks on
 * r, and installs the sink as the thread's (later log lines of this thread go through it). Returns
 * 0 or -ENOMEM. */
int log_sink_open(struct ring *r, struct log_sink **out) MUST_USE;

const struct log_sink_stats *log_sink_stats(const struct log_sink *s);

/* On the same thread, after the loop ended idle and the ring was closed: uninstalls the sink,
 * writes the lines still buffered with write(2) (they count as dropped if the log fails), and
 * frees it. */
void log_sink_close(struct log_sink *s);

/* On the same thread, when the loop ended with work unfinished (the stop's grace period ran out):
 * uninstalls the sink and writes with write(2) the lines that no write in flight holds (one that
 * is may land after them). The sink is not freed: a write in flight still reads its buffers. */
void log_sink_abandon(struct log_sink *s);
#endif
