/* queue/recover.h - start-up recovery of one shard's spool directory.
 *
 * Runs once per shard before it serves, with blocking I/O. Lists the segment files of the
 * directory (SEGMENT_NAME_FMT: 16 lower-case hex digits + ".log"; other names are left alone),
 * reads each whole in ascending order and scans its records up to the first invalid one
 * (queue/record.h: nothing past it is believed), and replays them into the index in log order:
 *   MESSAGE    inserts the message with every recipient pending
 *   PARTS      inserts a message whose body begins in BODY records (ignored themselves until a
 *              PARTS record names them); it counts as live in the oldest segment they are in
 *   COPY       a message copied forward: it moves to the new place (or is inserted, if its old
 *              segment is gone), and every recipient takes the state the copy records
 *   DELIVERED, BOUNCED   make a recipient final (the last one takes the message out)
 *   DEFERRED   sets a recipient's next attempt
 *   EXPIRED    takes the message out
 * State records may sit in later segments than their message, never in earlier ones; records
 * for ids no longer live are ignored. A COPY carries the states of all that came before it in
 * the log, so the state records between the original and the copy may go with the original's
 * segment.
 *
 * Then the torn tail of the LAST segment (everything after its last valid record) is cut off
 * (ftruncate + fsync), so that the writer appends right after valid data. The invalid tail of an
 * earlier segment (from its first invalid record to its end) stays and is only counted. Last,
 * segments are deleted from the oldest on, as long as every message of the segment and of all
 * older ones is final, never the last segment; the directory is fsynced after. Stopping at the
 * first segment with a live message matters: a later segment's state records may be the only
 * trace that a recipient of an older live message was delivered. */
#ifndef RINGMTA_QUEUE_RECOVER_H
#define RINGMTA_QUEUE_RECOVER_H
#include <stdint.h>

struct index;

#define RECOVER_SEGMENTS_MAX 1000000u   /* segment files per shard directory */
#define SEGMENT_NAME_FMT     "%016llx.log"
#define SEGMENT_NAME_LEN     20u        /* without the NUL */

struct recover_result {
	uint32_t segments_found;     /* segment files found */
	uint32_t segments_deleted;   /* of those, deleted: all their messages were final */
	uint32_t segment_count;      /* left, all between first_segment and last_segment */
	uint32_t first_segment;      /* the oldest left (0 if none) */
	uint32_t last_segment;       /* the newest: the one to append to (0 if none) */
	uint64_t last_valid_end;     /* its length after truncation: where appending goes on */
	uint64_t max_queue_id;       /* largest id in any valid record (0 if none) */
	uint64_t records;            /* valid records replayed */
	uint64_t records_unusable;   /* valid CRC, but a payload that does not decode: ignored */
	uint64_t messages_live;      /* in the index afterwards */
	uint64_t skipped_bytes;      /* invalid tails of earlier segments, left in place */
	uint64_t truncated_bytes;    /* torn tail cut from the last segment */
};

/* Writes the file name of segment seg into out. */
void recover_segment_name(uint32_t seg, char out[SEGMENT_NAME_LEN + 1]);

/* Recovers the shard directory shard_dir into ix, which must be freshly initialised (empty).
 * Fills *res (also on failure, as far as it got). Returns 0, or -errno: the directory or a
 * segment cannot be read, truncated, deleted or synced, -ENOMEM, or -E2BIG for more than
 * RECOVER_SEGMENTS_MAX segments. Any failure must stop the start-up: the index is partial. */
int recover_shard(const char *shard_dir, struct index *ix, struct recover_result *res);
#endif
