/* queue/adopt.h - taking in the spool directory of a shard that no longer runs.
 *
 * Started with fewer shards than the spool was written with, ringmta must not strand the mail
 * in <spool_dir>/<n> for n >= shards. Each such directory is adopted at start-up by shard
 * n % shards, before that shard recovers its own: its live messages are recovered, then written
 * into a new segment of the adopting shard as COPY records (queue/record.h) that carry every
 * recipient's state and the whole body (a PARTS body is read back part by part), that segment
 * is made durable, and only then are the old directory's segments and the directory itself
 * removed. A crash in between leaves the old directory in place; the next start adopts it
 * again, and the second COPY of a message only moves it (recovery never sees it twice).
 *
 * Blocking I/O, start-up only; bounded by one message in memory at a time. */
#ifndef RINGMTA_QUEUE_ADOPT_H
#define RINGMTA_QUEUE_ADOPT_H
#include <stdint.h>

struct adopt_result {
	uint32_t messages;           /* live messages taken in */
	uint32_t segments_removed;   /* of the old directory */
	uint64_t bytes;              /* written into the adopting shard */
};

struct index_entry;

/* Writes the prefix of a COPY record (queue/record.h) for live message e as the index has it:
 * every recipient's state (in flight counts as pending: it is being tried) and the hold and
 * bounce flags; out has record_copy_prefix_size(e->rcpt_count) octets. Returns that size. Also
 * what the copy forward of queue/spool writes. */
uint32_t adopt_copy_prefix(const struct index_entry *e, uint8_t *out);

/* Adopts other_dir into own_dir (both exist; own_dir not yet recovered). Returns 0, or -errno:
 * the old directory then stays as it was, and the start-up must stop. */
int adopt_shard_dir(const char *own_dir, const char *other_dir, struct adopt_result *res);
#endif
