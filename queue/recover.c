/* queue/recover.c - start-up scan of a shard's segments; see recover.h. */
#include "queue/recover.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "queue/index.h"
#include "queue/record.h"

#define RECOVER_NAME_LEN 20u   /* 16 hex digits + ".log" */

static int
recover_cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* The segment number of a name like 000000000000002a.log, or -1. */
static int64_t
recover_segment_id(const char *name)
{
	if (strlen(name) != RECOVER_NAME_LEN || strcmp(name + 16, ".log") != 0)
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
recover_list(int dir_fd, uint32_t **ids, uint32_t *count)
{
	int fd = dup(dir_fd);
	DIR *dir = fd < 0 ? NULL : fdopendir(fd);
	if (dir == NULL)
		return -errno;
	uint32_t cap = 16, n = 0;
	uint32_t *v = malloc(cap * sizeof(*v));
	struct dirent *de;
	while (v != NULL && (de = readdir(dir)) != NULL && n < RECOVER_SEGMENTS_MAX) {
		int64_t id = recover_segment_id(de->d_name);
		if (id < 0)
			continue;
		if (n == cap) {
			cap *= 2;
			uint32_t *grown = realloc(v, cap * sizeof(*v));
			if (grown == NULL) {
				free(v);
				v = NULL;
				break;
			}
			v = grown;
		}
		v[n++] = (uint32_t)id;
	}
	closedir(dir);
	if (v == NULL)
		return -ENOMEM;
	qsort(v, n, sizeof(*v), recover_cmp_u32);
	*ids = v;
	*count = n;
	return 0;
}

int
recover_read_file(int dir_fd, const char *name, uint8_t **buf, uint64_t *len)
{
	int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	int rc = 0;
	uint8_t *b = NULL;
	if (fstat(fd, &st) != 0) {
		rc = -errno;
		goto out;
	}
	b = malloc(st.st_size > 0 ? (size_t)st.st_size : 1);
	if (b == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	uint64_t got = 0;
	while (got < (uint64_t)st.st_size) {
		ssize_t n = pread(fd, b + got, (size_t)st.st_size - got, (off_t)got);
		if (n <= 0) {
			rc = n < 0 ? -errno : -EIO;
			goto out;
		}
		got += (uint64_t)n;
	}
	*buf = b;
	*len = got;
	b = NULL;
out:
	free(b);
	close(fd);
	return rc;
}

static void
recover_apply(struct index *ix, uint32_t seg, const struct record_view *r,
	struct recover_result *res)
{
	res->records++;
	if (r->queue_id > res->max_queue_id)
		res->max_queue_id = r->queue_id;
	if (r->type == RECORD_MESSAGE) {
		struct record_envelope_view v;
		if (record_envelope_decode(r->payload, &v) == 0)
			(void)index_insert(ix, r->queue_id, seg, r->offset, (uint32_t)r->size,
				v.rcpt_count, v.arrival_ms);
		return;
	}
	struct record_state st;
	uint32_t rcpt = 0;
	if ((r->type == RECORD_DELIVERED || r->type == RECORD_BOUNCED)
		&& record_state_decode(r, &st) == 0 && (rcpt = st.rcpt, true))
		(void)index_mark_final(ix, r->queue_id, rcpt,
			r->type == RECORD_DELIVERED ? INDEX_RCPT_DELIVERED : INDEX_RCPT_BOUNCED);
}

/* Scans one segment into the index; for the last one, cuts the torn tail. */
static int
recover_segment(int dir_fd, uint32_t seg, bool last, struct index *ix, struct recover_result *res)
{
	char name[32];
	snprintf(name, sizeof(name), "%016" PRIx64 ".log", (uint64_t)seg);
	uint8_t *buf;
	uint64_t len;
	int rc = recover_read_file(dir_fd, name, &buf, &len);
	if (rc < 0)
		return rc;
	struct slice all = slice_make(buf, len);
	uint64_t off = 0, valid_end = 0;
	struct record_view r;
	while (record_scan_next(all, &off, &r, &res->skipped_bytes, &valid_end) == 1)
		recover_apply(ix, seg, &r, res);
	free(buf);
	if (!last)
		return 0;
	res->last_valid_end = valid_end;
	if (valid_end < len) {
		res->truncated_bytes = len - valid_end;
		res->skipped_bytes -= len - valid_end;   /* counted as truncated, not skipped */
		int fd = openat(dir_fd, name, O_WRONLY | O_CLOEXEC);
		if (fd < 0)
			return -errno;
		rc = ftruncate(fd, (off_t)valid_end) == 0 && fsync(fd) == 0 ? 0 : -errno;
		close(fd);
	}
	return rc;
}

/* Deletes the oldest segments whose messages are all final (never the last one). */
static int
recover_delete_final(int dir_fd, const struct index *ix, const uint32_t *ids, uint32_t count,
	struct recover_result *res)
{
	uint32_t i = 0;
	while (i + 1 < count && index_segment_live(ix, ids[i]) == 0) {
		char name[32];
		snprintf(name, sizeof(name), "%016" PRIx64 ".log", (uint64_t)ids[i]);
		if (unlinkat(dir_fd, name, 0) != 0 && errno != ENOENT)
			return -errno;
		res->segments_deleted++;
		i++;
	}
	if (i > 0 && fsync(dir_fd) != 0)
		return -errno;
	res->first_segment = ids[i];
	res->segment_count = count - i;
	return 0;
}

int
recover_shard(const char *shard_dir, struct index *ix, struct recover_result *res)
{
	memset(res, 0, sizeof(*res));
	int dir_fd = open(shard_dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	if (dir_fd < 0)
		return -errno;
	uint32_t *ids = NULL, count = 0;
	int rc = recover_list(dir_fd, &ids, &count);
	for (uint32_t i = 0; rc == 0 && i < count; i++)
		rc = recover_segment(dir_fd, ids[i], i + 1 == count, ix, res);
	if (rc == 0 && count > 0) {
		res->last_segment = ids[count - 1];
		rc = recover_delete_final(dir_fd, ix, ids, count, res);
	}
	res->messages_live = ix->live;
	free(ids);
	close(dir_fd);
	return rc;
}
