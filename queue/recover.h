/* queue/recover.h - start-up recovery of one shard's spool directory.
 *
 * Blocking I/O, before the shard serves. Reads every <16 hex digits>.log segment in order, scans
 * its records (queue/record.h: invalid stretches are skipped), rebuilds the index (MESSAGE
 * records, then the state records that make recipients final), truncates the torn tail of the
 * last segment, and deletes the oldest segments whose messages are all final. */
#ifndef RINGMTA_QUEUE_RECOVER_H
#define RINGMTA_QUEUE_RECOVER_H
#include <stdint.h>

struct index;

#define RECOVER_SEGMENTS_MAX 1000000u

struct recover_result {
	uint32_t segment_count;      /* segments left after deletion */
	uint32_t first_segment;      /* oldest one left */
	uint32_t last_segment;       /* the one to append to */
	uint64_t last_valid_end;     /* its length after truncation */
	uint64_t max_queue_id;
	uint64_t records;
	uint64_t messages_live;
	uint64_t skipped_bytes;      /* invalid data passed over inside segments */
	uint64_t truncated_bytes;    /* torn tail cut from the last segment */
	uint32_t segments_deleted;
};

/* Returns 0 or -errno (an unreadable directory or segment). */
int recover_shard(const char *shard_dir, struct index *ix, struct recover_result *res);

/* Reads the whole file name of dir_fd into *buf (malloc'd) and *len. Returns 0 or -errno. */
int recover_read_file(int dir_fd, const char *name, uint8_t **buf, uint64_t *len);
#endif
