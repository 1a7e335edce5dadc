/* queue/adopt.c - moving a stranded shard directory's mail into a running shard; see adopt.h. */
#include "queue/adopt.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "queue/index.h"
#include "queue/record.h"
#include "queue/recover.h"

#ifdef RINGMTA_UNSAFE_SKIP_SYNC
#define ADOPT_SYNC(fd) 0   /* the power-cut test's self-check build: meson_options.txt */
#else
#define ADOPT_SYNC(fd) fsync(fd)
#endif

static int
adopt_pread_all(int fd, uint8_t *buf, uint64_t len, uint64_t off)
{
	uint64_t got = 0;
	while (got < len) {
		ssize_t n = pread(fd, buf + got, len - got, (off_t)(off + got));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return n < 0 ? -errno : -EIO;
		got += (uint64_t)n;
	}
	return 0;
}

static int
adopt_seg_fd(int dir_fd, uint32_t seg)
{
	char name[SEGMENT_NAME_LEN + 1];
	recover_segment_name(seg, name);
	int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* The whole body of a PARTS message: its parts, read from their segments, then the rest. */
static int
adopt_parts_body(int dir_fd, struct slice after_env, uint32_t seg, uint64_t off,
	uint8_t **body, uint64_t *len)
{
	uint32_t n;
	struct slice table, rest;
	if (record_parts_decode(after_env, seg, off + RECORD_HEADER_SIZE, &n, &table, &rest) != 0)
		return -EBADMSG;
	uint64_t total = rest.len;
	for (uint32_t i = 0; i < n; i++)
		total += record_parts_get(table, i).len;
	if (total > RECORD_PAYLOAD_MAX)
		return -EFBIG;
	uint8_t *b = malloc(total > 0 ? total : 1);
	if (b == NULL)
		return -ENOMEM;
	uint64_t at = 0;
	int rc = 0;
	for (uint32_t i = 0; rc == 0 && i < n; i++) {
		struct record_part p = record_parts_get(table, i);
		int fd = adopt_seg_fd(dir_fd, p.segment);
		rc = fd < 0 ? fd : adopt_pread_all(fd, b + at, p.len, p.offset);
		if (fd >= 0)
			close(fd);
		at += p.len;
	}
	if (rc < 0) {
		free(b);
		return rc;
	}
	memcpy(b + at, rest.ptr, rest.len);   /* copy: the body moves to another shard */
	*body = b;
	*len = total;
	return 0;
}

/* One live message of the old directory as a COPY record written at *off of out_fd. */
static int
adopt_message(int dir_fd, const struct index_entry *e, int out_fd, uint64_t *off)
{
	int fd = adopt_seg_fd(dir_fd, e->segment);
	if (fd < 0)
		return fd;
	uint8_t *rec = malloc(e->size);
	int rc = rec == NULL ? -ENOMEM : adopt_pread_all(fd, rec, e->size, e->offset);
	close(fd);
	uint64_t scan = 0, skipped = 0, end = 0;
	struct record_view r;
	if (rc == 0 && (record_scan_next(slice_make(rec, e->size), &scan, &r, &skipped, &end) != 1
		|| r.queue_id != e->qid))
		rc = -EBADMSG;
	struct slice env = SLICE_LIT(""), body = SLICE_LIT("");
	uint8_t *parts_body = NULL;
	uint32_t env_len = 0;
	if (rc == 0) {
		struct slice message = slice_skip(r.payload, e->env_off);
		rc = record_envelope_length(message, &env_len);
		if (rc == 0 && env_len > message.len)
			rc = -EBADMSG;
		if (rc == 0) {
			env = slice_sub(message, 0, env_len);
			body = slice_skip(message, env_len);
		}
		uint64_t len;
		if (rc == 0 && e->kind == INDEX_KIND_PARTS) {
			rc = adopt_parts_body(dir_fd, body, e->segment, e->offset, &parts_body, &len);
			if (rc == 0)
				body = slice_make(parts_body, len);
		}
	}
	uint32_t prefix = record_copy_prefix_size(e->rcpt_count);
	uint8_t hdr[RECORD_HEADER_SIZE];
	uint8_t *pre = rc == 0 ? malloc(prefix) : NULL;
	if (rc == 0 && pre == NULL)
		rc = -ENOMEM;
	if (rc == 0) {
		(void)adopt_copy_prefix(e, pre);
		struct iovec iov[4] = { { hdr, RECORD_HEADER_SIZE }, { pre, prefix },
			{ (void *)env.ptr, env.len }, { (void *)body.ptr, body.len } };
		record_header_encode(hdr, RECORD_COPY, e->qid, iov + 1, 3);
		uint64_t len = RECORD_HEADER_SIZE + prefix + env.len + body.len;
		ssize_t n = pwritev(out_fd, iov, 4, (off_t)*off);
		rc = n == (ssize_t)len ? 0 : n < 0 ? -errno : -ENOSPC;
		if (rc == 0)
			*off += len;
	}
	free(pre);
	free(parts_body);
	free(rec);
	return rc;
}

/* A segment number one past every segment of own_dir (0 if it has none). */
static int
adopt_new_segment(int own_fd, uint32_t *seg)
{
	int fd = dup(own_fd);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	uint64_t next = 0;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		unsigned long long v;
		char tail[8];
		if (strlen(de->d_name) == SEGMENT_NAME_LEN
			&& sscanf(de->d_name, "%16llx%4s", &v, tail) == 2 && strcmp(tail, ".log") == 0
			&& v + 1 > next)
			next = v + 1;
	}
	closedir(d);
	if (next > UINT32_MAX)
		return -E2BIG;
	*seg = (uint32_t)next;
	return 0;
}

/* Removes every segment of dir_fd and the directory itself (path), durably. */
static int
adopt_remove_dir(int dir_fd, const char *path, struct adopt_result *res)
{
	int fd = dup(dir_fd);
	DIR *d = fd < 0 ? NULL : fdopendir(fd);
	if (d == NULL) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	struct dirent *de;
	int rc = 0;
	while ((de = readdir(d)) != NULL) {
		if (strlen(de->d_name) != SEGMENT_NAME_LEN || strcmp(de->d_name + 16, ".log") != 0)
			continue;
		if (unlinkat(dir_fd, de->d_name, 0) != 0)
			rc = -errno;
		else
			res->segments_removed++;
	}
	closedir(d);
	if (rc == 0 && ADOPT_SYNC(dir_fd) != 0)
		rc = -errno;
	if (rc == 0 && rmdir(path) != 0)
		rc = -errno;   /* something else lives there: leave it, the mail is moved */
	return rc == -ENOTEMPTY ? 0 : rc;
}

uint32_t
adopt_copy_prefix(const struct index_entry *e, uint8_t *out)
{
	struct record_copy_rcpt states[RECORD_RCPT_MAX];
	for (uint32_t i = 0; i < e->rcpt_count; i++) {
		uint64_t next = 0;
		enum index_rcpt_state st = index_entry_rcpt(e, i, &next);
		states[i].state = st == INDEX_RCPT_INFLIGHT ? 0 : (uint8_t)st;
		states[i].next_attempt_ms = next;
	}
	uint32_t flags = (e->held ? RECORD_COPY_HELD : 0u) | (e->bounce ? RECORD_COPY_BOUNCE : 0u);
	return record_copy_prefix_encode(out, e->rcpt_count, flags, states);
}

int
adopt_shard_dir(const char *own_dir, const char *other_dir, struct adopt_result *res)
{
	memset(res, 0, sizeof(*res));
	struct index ix;
	int rc = index_init(&ix);
	if (rc < 0)
		return rc;
	struct recover_result rr;
	rc = recover_shard(other_dir, &ix, &rr);
	int other_fd = rc < 0 ? -1 : open(other_dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	int own_fd = rc < 0 ? -1 : open(own_dir, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
	int out_fd = -1;
	if (rc == 0 && (other_fd < 0 || own_fd < 0))
		rc = -errno;
	uint32_t seg = 0;
	if (rc == 0 && index_live(&ix) > 0)
		rc = adopt_new_segment(own_fd, &seg);
	if (rc == 0 && index_live(&ix) > 0) {
		char name[SEGMENT_NAME_LEN + 1];
		recover_segment_name(seg, name);
		out_fd = openat(own_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (out_fd < 0 || ADOPT_SYNC(own_fd) != 0)
			rc = -errno;
	}
	uint32_t cursor = 0;
	const struct index_entry *e;
	uint64_t off = 0;
	while (rc == 0 && (e = index_next(&ix, &cursor)) != NULL) {
		rc = adopt_message(other_fd, e, out_fd, &off);
		res->messages += rc == 0;
	}
	res->bytes = off;
	if (rc == 0 && out_fd >= 0 && ADOPT_SYNC(out_fd) != 0)
		rc = -errno;
	/* The copies are durable: only now may the originals go. */
	if (rc == 0)
		rc = adopt_remove_dir(other_fd, other_dir, res);
	if (out_fd >= 0)
		close(out_fd);
	if (own_fd >= 0)
		close(own_fd);
	if (other_fd >= 0)
		close(other_fd);
	index_fini(&ix);
	return rc;
}
