/* queue/recover.c - start-up scan of a shard's segments; see recover.h. */
#include "queue/recover.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "queue/index.h"
#include "queue/record.h"

#define RECOVER_IDS_CAP_FIRST 64u
#define RECOVER_FILE_BYTES_MAX ((uint64_t)1 << 40)   /* far past any segment: a sanity bound */

void
recover_segment_name(uint32_t seg, char out[SEGMENT_NAME_LEN + 1])
{
	int n = snprintf(out, SEGMENT_NAME_LEN + 1, SEGMENT_NAME_FMT, (unsigned long long)seg);
	ASSERT(n == (int)SEGMENT_NAME_LEN);
}

/* The segment number of a name written by recover_segment_name, or -1 for any other name. */
static int64_t
recover_segment_id(const char *name)
{
	if (strlen(name) != SEGMENT_NAME_LEN || strcmp(name + 16, ".log") != 0)
		return -1;
	uint64_t v = 0;
	for (int i = 0; i < 16; i++) {
		char c = name[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
		if (d < 0)
			return -1;
		v = (v << 4) | (uint64_t)d;
	}
	return v <= UINT32_MAX ? (int64_t)v : -1;
}

static int
recover_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Appends id to the growing array *ids. Returns 0 or -ENOMEM. */
static int
recover_ids_push(uint32_t **ids, uint32_t *count, uint32_t *cap, uint32_t id)
{
	if (*count == *cap) {
		uint32_t grown_cap = *cap ? *cap * 2 : RECOVER_IDS_CAP_FIRST;
		uint32_t *grown = realloc(*ids, grown_cap * sizeof(*grown));
		if (grown == NULL)
			return -ENOMEM;
		*ids = grown;
		*cap = grown_cap;
	}
	(*ids)[(*count)++] = id;
	return 0;
}

/* The segment numbers in dir_fd, ascending, in a malloc'd array. Returns 0 or -errno. */
static int
recover_list(int dir_fd, uint32_t **ids, uint32_t *count)
{
	int fd = dup(dir_fd);   /* closedir closes it; dir_fd stays ours */
	DIR *dir = fd < 0 ? NULL : fdopendir(fd);
	if (dir == NULL) {
		int rc = -errno;
		if (fd >= 0)
			close(fd);
		return rc;
	}
	uint32_t *v = NULL, n = 0, cap = 0;
	int rc = 0;
	struct dirent *de;
	errno = 0;
	while (rc == 0 && (de = readdir(dir)) != NULL) {
		int64_t id = recover_segment_id(de->d_name);
		if (id < 0)
			continue;
		if (n == RECOVER_SEGMENTS_MAX)
			rc = -E2BIG;
		else
			rc = recover_ids_push(&v, &n, &cap, (uint32_t)id);
		errno = 0;
	}
	if (rc == 0 && errno != 0)
		rc = -errno;   /* readdir failed */
	closedir(dir);
	if (rc < 0) {
		free(v);
		return rc;
	}
	if (n > 0)
		qsort(v, n, sizeof(*v), recover_cmp_u32);
	*ids = v;
	*count = n;
	return 0;
}

/* Maps the whole file name (in dir_fd) read-only into *buf of *len bytes: page cache, not a
 * copy, so a 64 MiB segment costs no heap and its pages go with recover_unmap. Returns 0 or
 * -errno. */
static int
recover_map_file(int dir_fd, const char *name, uint8_t **buf, uint64_t *len)
{
	int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	int rc = 0;
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		goto out;
	}
	uint64_t size = st.st_size > 0 ? (uint64_t)st.st_size : 0;
	if (size > RECOVER_FILE_BYTES_MAX) {
		rc = -EFBIG;
		goto out;
	}
	*len = size;
	*buf = NULL;
	if (size == 0)
		goto out;
	void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
	if (map == MAP_FAILED) {
		rc = -errno;
		goto out;
	}
	(void)madvise(map, size, MADV_SEQUENTIAL);
	*buf = map;
out:
	close(fd);
	return rc;
}

static void
recover_unmap(uint8_t *buf, uint64_t len)
{
	if (buf != NULL)
		munmap(buf, len);
}

/* A MESSAGE record: a new message, or the copy forward of a live one. Returns 0 or -ENOMEM. */
static int
recover_message(struct index *ix, uint32_t seg, const struct record_view *r,
	struct recover_result *res)
{
	struct record_envelope_view v;
	if (record_envelope_decode(r->payload, &v) != 0) {
		res->records_unusable++;
		return 0;
	}
	int rc = index_insert(ix, r->queue_id, seg, r->offset, (uint32_t)r->size, v.rcpt_count,
		v.arrival_ms);
	if (rc == -EEXIST)
		rc = index_relocate(ix, r->queue_id, seg, r->offset, (uint32_t)r->size, 0);
	if (rc == -EINVAL) {   /* a reserved id: no writer makes one */
		res->records_unusable++;
		rc = 0;
	}
	return rc;
}

/* A PARTS record: a message whose body begins in BODY records before it; it counts as live in
 * the oldest segment that holds one of them. */
static int
recover_parts(struct index *ix, uint32_t seg, const struct record_view *r,
	struct recover_result *res)
{
	struct record_envelope_view v;
	uint32_t n;
	struct slice table, rest;
	if (record_envelope_decode(r->payload, &v) != 0
		|| record_parts_decode(v.body, seg, r->offset + RECORD_HEADER_SIZE, &n, &table, &rest)
		!= 0 || n == 0) {
		res->records_unusable++;
		return 0;
	}
	uint32_t first = seg;
	for (uint32_t i = 0; i < n; i++) {
		struct record_part p = record_parts_get(table, i);
		if (p.segment < first)
			first = p.segment;
	}
	int rc = index_insert(ix, r->queue_id, seg, r->offset, (uint32_t)r->size, v.rcpt_count,
		v.arrival_ms);
	if (rc == -EINVAL || rc == -EEXIST) {
		res->records_unusable++;   /* a reserved id, or one seen already: no writer does that */
		return 0;
	}
	if (rc < 0)
		return rc;
	index_set_kind(ix, r->queue_id, INDEX_KIND_PARTS);
	return index_set_span(ix, r->queue_id, seg - first);
}

/* A COPY record: a live message moved forward with its recipients' states, which it restores
 * (the segment of the original may be gone, and with it the records that made those states). */
static int
recover_copy(struct index *ix, uint32_t seg, const struct record_view *r,
	struct recover_result *res)
{
	uint32_t n, flags;
	struct slice states, message;
	struct record_envelope_view v;
	if (record_copy_decode(r->payload, &n, &flags, &states, &message) != 0
		|| record_envelope_decode(message, &v) != 0 || v.rcpt_count != n) {
		res->records_unusable++;
		return 0;
	}
	uint16_t env_off = (uint16_t)record_copy_prefix_size(n);
	int rc = index_insert(ix, r->queue_id, seg, r->offset, (uint32_t)r->size, n, v.arrival_ms);
	if (rc == -EINVAL) {
		res->records_unusable++;
		return 0;
	}
	if (rc != 0 && rc != -EEXIST)
		return rc;
	rc = index_relocate(ix, r->queue_id, seg, r->offset, (uint32_t)r->size, env_off);
	if (rc < 0)
		return rc;
	static const enum index_rcpt_state by_code[4] = { INDEX_RCPT_PENDING,
		INDEX_RCPT_DELIVERED, INDEX_RCPT_BOUNCED, INDEX_RCPT_DEFERRED };
	for (uint32_t i = 0; i < n; i++) {
		struct record_copy_rcpt c = record_copy_state(states, i);
		if (index_restore(ix, r->queue_id, i, by_code[c.state], c.next_attempt_ms))
			return 0;   /* every recipient final: a copy no writer makes, but harmless */
	}
	(void)index_set_held(ix, r->queue_id, (flags & RECORD_COPY_HELD) != 0);
	if (flags & RECORD_COPY_BOUNCE)
		(void)index_set_bounce(ix, r->queue_id);
	return 0;
}

/* A state record, for a message that may be gone already (then it changes nothing). */
static void
recover_state(struct index *ix, const struct record_view *r, struct recover_result *res)
{
	struct record_state st;
	if (record_state_decode(r, &st) != 0) {
		res->records_unusable++;
		return;
	}
	switch (r->type) {
	case RECORD_DELIVERED:
		(void)index_mark_final(ix, r->queue_id, st.rcpt, INDEX_RCPT_DELIVERED);
		break;
	case RECORD_BOUNCED:
		(void)index_mark_final(ix, r->queue_id, st.rcpt, INDEX_RCPT_BOUNCED);
		break;
	case RECORD_DEFERRED:
		(void)index_mark_deferred(ix, r->queue_id, st.rcpt, st.next_attempt_ms);
		break;
	case RECORD_EXPIRED:
		(void)index_remove(ix, r->queue_id);
		break;
	case RECORD_HOLD:
		(void)index_set_held(ix, r->queue_id, st.rcpt != 0);
		break;
	case RECORD_BOUNCE:
		(void)index_set_bounce(ix, r->queue_id);
		break;
	default:
		ASSERT(false);   /* record_state_decode accepts only the state types */
	}
}

/* Replays every valid record of one segment image. Returns 0 or -ENOMEM; *valid_end is
 * where the valid records end. */
static int
recover_replay(struct index *ix, uint32_t seg, struct slice image, uint64_t *valid_end,
	struct recover_result *res)
{
	uint64_t off = 0;
	struct record_view r;
	*valid_end = 0;
	while (record_scan_next(image, &off, &r, &res->skipped_bytes, valid_end) == 1) {
		res->records++;
		if (r.queue_id > res->max_queue_id)
			res->max_queue_id = r.queue_id;
		if (r.type == RECORD_BODY)
			continue;   /* counts only once a PARTS record names it */
		if (r.type != RECORD_MESSAGE && r.type != RECORD_COPY && r.type != RECORD_PARTS) {
			recover_state(ix, &r, res);
			continue;
		}
		int rc = r.type == RECORD_MESSAGE ? recover_message(ix, seg, &r, res)
			: r.type == RECORD_PARTS ? recover_parts(ix, seg, &r, res)
			: recover_copy(ix, seg, &r, res);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* Cuts the last segment at its valid end and makes the new length durable. */
static int
recover_truncate(int dir_fd, const char *name, uint64_t len, uint64_t valid_end,
	struct recover_result *res)
{
	res->last_valid_end = valid_end;
	if (valid_end == len)
		return 0;
	/* No valid record follows valid_end: the scan counted the tail as skipped. */
	res->truncated_bytes = len - valid_end;
	res->skipped_bytes -= len - valid_end;
	int fd = openat(dir_fd, name, O_WRONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	int rc = 0;
	if (ftruncate(fd, (off_t)valid_end) != 0 || fsync(fd) != 0)
		rc = -errno;
	close(fd);
	return rc;
}

/* Reads and replays one segment; for the last one, cuts the torn tail. */
static int
recover_segment(int dir_fd, uint32_t seg, bool last, struct index *ix, struct recover_result *res)
{
	char name[SEGMENT_NAME_LEN + 1];
	recover_segment_name(seg, name);
	uint8_t *buf = NULL;
	uint64_t len = 0;
	int rc = recover_map_file(dir_fd, name, &buf, &len);
	if (rc < 0)
		return rc;
	uint64_t valid_end;
	rc = recover_replay(ix, seg, slice_make(buf, len), &valid_end, res);
	recover_unmap(buf, len);
	if (rc == 0 && last)
		rc = recover_truncate(dir_fd, name, len, valid_end, res);
	return rc;
}

/* Deletes segments from the oldest on while they and all older ones hold no live message,
 * never the last one; then makes the deletions durable. */
static int
recover_delete_final(int dir_fd, const struct index *ix, const uint32_t *ids, uint32_t count,
	struct recover_result *res)
{
	uint32_t i = 0;
	int rc = 0;
	while (i + 1 < count && index_segment_live(ix, ids[i]) == 0) {
		char name[SEGMENT_NAME_LEN + 1];
		recover_segment_name(ids[i], name);
		if (unlinkat(dir_fd, name, 0) != 0 && errno != ENOENT) {
			rc = -errno;
			break;
		}
		res->segments_deleted++;
		i++;
	}
	if (i > 0 && fsync(dir_fd) != 0 && rc == 0)
		rc = -errno;
	res->first_segment = ids[i];
	res->segment_count = count - i;
	return rc;
}

int
recover_shard(const char *shard_dir, struct index *ix, struct recover_result *res)
{
	ASSERT(index_live(ix) == 0);
	memset(res, 0, sizeof(*res));
	int dir_fd = open(shard_dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (dir_fd < 0)
		return -errno;
	uint32_t *ids = NULL, count = 0;
	int rc = recover_list(dir_fd, &ids, &count);
	if (rc == 0)
		res->segments_found = count;
	for (uint32_t i = 0; rc == 0 && i < count; i++)
		rc = recover_segment(dir_fd, ids[i], i + 1 == count, ix, res);
	if (rc == 0 && count > 0) {
		res->last_segment = ids[count - 1];
		rc = recover_delete_final(dir_fd, ix, ids, count, res);
	}
	res->messages_live = index_live(ix);
	free(ids);
	close(dir_fd);
	return rc;
}
