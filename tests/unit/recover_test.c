/* tests/unit/recover_test.c - start-up recovery of a shard's segments from a real directory. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "queue/index.h"
#include "queue/record.h"
#include "queue/recover.h"

static char dir[64];
static struct index ix;
static struct recover_result res;

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static void
setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/recover_test.XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(index_init(&ix), 0);
}

static void
teardown(void)
{
	index_fini(&ix);
	nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

TestSuite(recover, .init = setup, .fini = teardown);

/* A segment being written: records are appended with pwrite, as the writer does. */
struct seg {
	int fd;
	uint64_t len;
};

static struct seg
seg_open(uint32_t id)
{
	char name[SEGMENT_NAME_LEN + 1], path[128];
	recover_segment_name(id, name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	struct seg s = { .fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600), .len = 0 };
	cr_assert_geq(s.fd, 0);
	return s;
}

static void
seg_write(struct seg *s, const void *bytes, size_t len)
{
	cr_assert_eq(pwrite(s->fd, bytes, len, (off_t)s->len), (ssize_t)len);
	s->len += len;
}

/* Appends a MESSAGE record of qid with rcpts recipients; returns its offset. */
static uint64_t
seg_message(struct seg *s, uint64_t qid, uint32_t rcpts)
{
	static struct record_rcpt r[RECORD_RCPT_MAX];
	for (uint32_t i = 0; i < rcpts; i++)
		r[i] = (struct record_rcpt){ .path = SLICE_LIT("u@example.org"),
			.local_part = SLICE_LIT("u"), .domain = SLICE_LIT("example.org") };
	struct record_envelope env = { .arrival_ms = 1700000000000ull + qid,
		.client_addr = SLICE_LIT("127.0.0.1"), .helo = SLICE_LIT("client.example"),
		.mail_from = SLICE_LIT("s@example.com"), .rcpt_count = rcpts, .rcpts = r };
	size_t env_len = record_envelope_size(&env);
	static const char body[] = "Subject: test\r\n\r\nhello\r\n";
	uint8_t *rec = malloc(RECORD_HEADER_SIZE + env_len + sizeof(body) - 1);
	record_envelope_encode(&env, rec + RECORD_HEADER_SIZE, env_len);
	memcpy(rec + RECORD_HEADER_SIZE + env_len, body, sizeof(body) - 1);
	struct iovec iov[2] = { { rec + RECORD_HEADER_SIZE, env_len },
		{ rec + RECORD_HEADER_SIZE + env_len, sizeof(body) - 1 } };
	record_header_encode(rec, RECORD_MESSAGE, qid, iov, 2);
	uint64_t off = s->len;
	seg_write(s, rec, RECORD_HEADER_SIZE + env_len + sizeof(body) - 1);
	free(rec);
	return off;
}

static void
seg_state(struct seg *s, uint8_t type, uint64_t qid, uint32_t rcpt, uint64_t next_ms)
{
	uint8_t rec[RECORD_STATE_SIZE_MAX];
	uint32_t n = record_state_encode(rec, type, qid, rcpt, next_ms);
	seg_write(s, rec, n);
}

static void
seg_close(struct seg *s)
{
	cr_assert_eq(close(s->fd), 0);
}

static bool
seg_exists(uint32_t id)
{
	char name[SEGMENT_NAME_LEN + 1], path[128];
	recover_segment_name(id, name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	return access(path, F_OK) == 0;
}

static uint64_t
seg_size(uint32_t id)
{
	char name[SEGMENT_NAME_LEN + 1], path[128];
	recover_segment_name(id, name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	struct stat st;
	cr_assert_eq(stat(path, &st), 0);
	return (uint64_t)st.st_size;
}

static void
recover_again(void)
{
	index_fini(&ix);
	cr_assert_eq(index_init(&ix), 0);
	cr_assert_eq(recover_shard(dir, &ix, &res), 0);
}

Test(recover, segment_names_are_sixteen_lower_case_hex_digits)
{
	char name[SEGMENT_NAME_LEN + 1];
	recover_segment_name(0x2a, name);
	cr_assert_str_eq(name, "000000000000002a.log");
	recover_segment_name(UINT32_MAX, name);
	cr_assert_str_eq(name, "00000000ffffffff.log");
}

Test(recover, empty_directory_recovers_to_nothing)
{
	cr_assert_eq(recover_shard(dir, &ix, &res), 0);
	cr_assert_eq(res.segments_found, 0);
	cr_assert_eq(res.segment_count, 0);
	cr_assert_eq(res.max_queue_id, 0);
	cr_assert_eq(index_live(&ix), 0);
}

Test(recover, missing_directory_is_an_error)
{
	char missing[128];
	snprintf(missing, sizeof(missing), "%s/nope", dir);
	cr_assert_eq(recover_shard(missing, &ix, &res), -ENOENT);
}

Test(recover, messages_and_their_state_records_rebuild_the_index)
{
	struct seg s = seg_open(0);
	uint64_t off_a = seg_message(&s, 0x100, 2);
	uint64_t off_b = seg_message(&s, 0x101, 1);
	seg_message(&s, 0x102, 1);
	seg_state(&s, RECORD_DELIVERED, 0x102, 0, 0);
	seg_state(&s, RECORD_DELIVERED, 0x100, 1, 0);
	seg_close(&s);
	cr_assert_eq(recover_shard(dir, &ix, &res), 0);
	cr_assert_eq(res.segments_found, 1);
	cr_assert_eq(res.segment_count, 1);
	cr_assert_eq(res.last_segment, 0);
	cr_assert_eq(res.last_valid_end, s.len);
	cr_assert_eq(res.records, 5);
	cr_assert_eq(res.messages_live, 2);
	cr_assert_eq(res.skipped_bytes, 0);
	cr_assert_eq(res.truncated_bytes, 0);
	cr_assert_eq(res.max_queue_id, 0x102);
	const struct index_entry *a = index_find(&ix, 0x100);
	cr_assert_not_null(a);
	cr_assert_eq(a->offset, off_a);
	cr_assert_eq(a->size, off_b - off_a);
	cr_assert_eq(a->arrival_ms, 1700000000000ull + 0x100);
	cr_assert(index_rcpt_pending(&ix, 0x100, 0));
	cr_assert_not(index_rcpt_pending(&ix, 0x100, 1));
	cr_assert_null(index_find(&ix, 0x102));
	cr_assert_eq(index_segment_live(&ix, 0), 2);
}

Test(recover, torn_tail_of_the_last_segment_is_cut_once)
{
	struct seg s = seg_open(3);
	seg_message(&s, 0x100, 1);
	uint64_t valid = s.len;
	struct seg t = s;
	uint64_t torn_off = seg_message(&t, 0x101, 1);
	/* The second record only half written. */
	cr_assert_eq(ftruncate(s.fd, (off_t)(torn_off + (t.len - torn_off) / 2)), 0);
	seg_close(&s);
	uint64_t before = seg_size(3);
	cr_assert_eq(recover_shard(dir, &ix, &res), 0);
	cr_assert_eq(res.last_valid_end, valid);
	cr_assert_eq(res.truncated_bytes, before - valid);
	cr_assert_eq(res.skipped_bytes, 0);
	cr_assert_eq(seg_size(3), valid);
	cr_assert_eq(res.messages_live, 1);
	cr_assert_null(index_find(&ix, 0x101));
	recover_again();
	cr_assert_eq(res.truncated_bytes, 0);
	cr_assert_eq(res.last_valid_end, valid);
	cr_assert_eq(res.messages_live, 1);
}

Test(recover, a_last_segment_of_garbage_is_cut_to_nothing)
{
	struct seg s = seg_open(1);
	uint8_t junk[300];
	memset(junk, 'R', sizeof(junk));
	seg_write(&s, junk, sizeof(junk));
	seg_close(&s);
	cr_assert_eq(recover_shard(dir, &ix, &res), 0);
	cr_assert_eq(res.truncated_bytes, 300);
	cr_assert_eq(res.last_valid_end, 0);
	cr_assert_eq(seg_size(1), 0);
}

/* The writer keeps the valid records a prefix (queue/spool.c): nothing acknowledged lies past
 * an invalid stretch, and nothing past it is believed (it could be a record inside a body). */
Test(recover, an_invalid_stretch_ends_the_segment_and_is_cut_from_the_last)
{
	struct seg s0 = seg_open(0);
	seg_message(&s0, 0x100, 1);
	uint64_t s0_valid = s0.len;
	uint8_t zeros[5000] = { 0 };
	seg_write(&s0, zeros, sizeof(zeros));   /* a batch whose writes never landed */
	seg_message(&s0, 0x101, 1);
	seg_close(&s0);
	struct seg s1 = seg_open(1);
	seg_message(&s1, 0x102, 1);
	uint64_t s1_valid = s1.len;
	seg_write(&s1, zeros, 100);
	seg_message(&s1, 0x103, 1);
	seg_close(&s1);
	cr_assert_eq(recover_shard(dir, &ix, &res), 0);
	cr_assert_eq(res.messages_live, 2);
	cr_assert_eq(res.skipped_bytes, s0.len - s0_valid);
	cr_assert_eq(res.truncated_bytes, s1.len - s1_valid);
	cr_assert_eq(res.last_valid_end, s1_valid);
	cr_assert_eq(seg_size(0), s0.len);    /* only the last segment is cut */
	cr_assert_eq(seg_size(1), s1_valid);
	cr_assert_null(index_find(&ix, 0x101));
	cr_assert_null(index_find(&ix, 0x103));
}

Test(recover, state_records_in_later_segments_apply_to_older_messages)
{
	struct seg s0 = seg_open(0);
	seg_message(&s0, 0x100, 2);
	seg_message(&s0, 0x101, 1);
	seg_message(&s0, 0x102, 3);
	seg_close(&s0);
	struct seg s1 = seg_open(1);
	seg_state(&s1, RECORD_DELIVERED, 0x100, 0, 0);
	seg_state(&s1, RECORD_DEFERRED, 0x101, 0, 1700000600000ull);
	seg_state(&s1, RECORD_DEFERRED, 0x102, 2, 1700000900000ull);
	seg_close(&s1);
	struct seg s2 = seg_open(2);
	seg_state(&s2, RECORD_BOUNCED, 0x100, 1, 0);
	seg_state(&s2, RECORD_EXPIRED, 0x102, 0, 0);
	seg_state(&s2, RECORD_DELIVERED, 0x999, 0, 0);   /* long gone: ignored */
	seg_close(&s2);
	cr_assert_eq(recover_shard(dir, &ix, &res), 0);
	cr_assert_eq(res.records, 9);
	cr_assert_eq(res.messages_live, 1);
	cr_assert_null(index_find(&ix, 0x100));
	cr_assert_null(index_find(&ix, 0x102));
	const struct index_entry *e = index_find(&ix, 0x101);
	cr_assert_not_null(e);
	uint64_t next = 0;
	cr_assert_eq(index_entry_rcpt(e, 0, &next), INDEX_RCPT_DEFERRED);
	cr_assert_eq(next, 1700000600000ull);
	cr_assert_eq(e->due_ms, 1700000600000ull);
	cr_assert_eq(res.max_queue_id, 0x999);
	cr_assert_eq(res.segments_deleted, 0);   /* segment 0 holds the live message */
	cr_assert_eq(res.first_segment, 0);
}

Test(recover, only_the_oldest_all_final_segments_are_deleted)
{
	struct seg s0 = seg_open(10);
	seg_message(&s0, 0x100, 1);
	seg_close(&s0);
	struct seg s1 = seg_open(11);
	seg_message(&s1, 0x101, 2);
	seg_state(&s1, RECORD_DELIVERED, 0x100, 0, 0);
	seg_state(&s1, RECORD_DELIVERED, 0x101, 0, 0);
	seg_close(&s1);
	struct seg s2 = seg_open(12);
	seg_message(&s2, 0x102, 1);
	seg_state(&s2, RECORD_DELIVERED, 0x102, 0, 0);
	seg_close(&s2);
	struct seg s3 = seg_open(13);
	seg_message(&s3, 0x103, 1);
	seg_state(&s3, RECORD_BOUNCED, 0x103, 0, 0);
	seg_close(&s3);
	cr_assert_eq(recover_shard(dir, &ix, &res), 0);
	/* 10 is all final; 11 has 0x101 half delivered, and its state record for recipient 0 is
	 * needed; 12 is all final but newer than 11; 13 is the last. */
	cr_assert_eq(res.segments_found, 4);
	cr_assert_eq(res.segments_deleted, 1);
	cr_assert_eq(res.segment_count, 3);
	cr_assert_eq(res.first_segment, 11);
	cr_assert_eq(res.last_segment, 13);
	cr_assert_not(seg_exists(10));
	cr_assert(seg_exists(11) && seg_exists(12) && seg_exists(13));
	/* Recipient 1 delivered too: now everything but the last segment goes. */
	struct seg s4 = seg_open(14);
	seg_state(&s4, RECORD_DELIVERED, 0x101, 1, 0);
	seg_close(&s4);
	recover_again();
	cr_assert_eq(res.segments_found, 4);
	cr_assert_eq(res.segments_deleted, 3);
	cr_assert_eq(res.segment_count, 1);
	cr_assert_eq(res.first_segment, 14);
	cr_assert_eq(res.last_segment, 14);
	cr_assert_eq(res.messages_live, 0);
	cr_assert(seg_exists(14));
	cr_assert_not(seg_exists(11) || seg_exists(12) || seg_exists(13));
}

Test(recover, a_copied_forward_message_moves_with_its_states)
{
	struct seg s0 = seg_open(0);
	seg_message(&s0, 0x100, 2);
	seg_state(&s0, RECORD_DELIVERED, 0x100, 0, 0);
	seg_close(&s0);
	struct seg s1 = seg_open(1);
	uint64_t off = seg_message(&s1, 0x100, 2);
	seg_close(&s1);
	cr_assert_eq(recover_shard(dir, &ix, &res), 0);
	const struct index_entry *e = index_find(&ix, 0x100);
	cr_assert_not_null(e);
	cr_assert_eq(e->segment, 1);
	cr_assert_eq(e->offset, off);
	cr_assert_not(index_rcpt_pending(&ix, 0x100, 0));
	cr_assert(index_rcpt_pending(&ix, 0x100, 1));
	cr_assert_eq(res.segments_deleted, 1);
	cr_assert_not(seg_exists(0));
}

/* Appends a COPY record of qid: the given states, then the MESSAGE payload seg_message writes. */
static uint64_t
seg_copy_flags(struct seg *s, uint64_t qid, uint32_t rcpts, const struct record_copy_rcpt *st,
	uint32_t flags)
{
	struct seg tmp = seg_open(999);
	seg_message(&tmp, qid, rcpts);
	seg_close(&tmp);
	char name[SEGMENT_NAME_LEN + 1], path[128];
	recover_segment_name(999, name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	uint8_t *msg = malloc(tmp.len);
	int fd = open(path, O_RDONLY);
	cr_assert_eq(pread(fd, msg, tmp.len, 0), (ssize_t)tmp.len);
	close(fd);
	unlink(path);
	uint32_t prefix = record_copy_prefix_size(rcpts);
	size_t payload = prefix + tmp.len - RECORD_HEADER_SIZE;
	uint8_t *rec = malloc(RECORD_HEADER_SIZE + payload);
	cr_assert_eq(record_copy_prefix_encode(rec + RECORD_HEADER_SIZE, rcpts, flags, st), prefix);
	memcpy(rec + RECORD_HEADER_SIZE + prefix, msg + RECORD_HEADER_SIZE,
		tmp.len - RECORD_HEADER_SIZE);
	struct iovec iov = { rec + RECORD_HEADER_SIZE, payload };
	record_header_encode(rec, RECORD_COPY, qid, &iov, 1);
	uint64_t off = s->len;
	seg_write(s, rec, RECORD_HEADER_SIZE + payload);
	free(rec);
	free(msg);
	return off;
}

static uint64_t
seg_copy(struct seg *s, uint64_t qid, uint32_t rcpts, const struct record_copy_rcpt *st)
{
	return seg_copy_flags(s, qid, rcpts, st, 0);
}

/* `ringmta queue hold/release/delete/bounce` leave HOLD, EXPIRED and BOUNCE records: the next
 * start finds each message as the administrator left it (after a kill -9 too). */
Test(recover, queue_commands_replay_hold_release_delete_and_bounce)
{
	struct seg s0 = seg_open(0);
	seg_message(&s0, 0x100, 1);   /* held */
	seg_message(&s0, 0x200, 1);   /* held, then released */
	seg_message(&s0, 0x300, 1);   /* deleted */
	seg_message(&s0, 0x400, 2);   /* deferred, held, then bounced: the bounce ends the hold */
	seg_state(&s0, RECORD_HOLD, 0x100, 1, 0);
	seg_state(&s0, RECORD_HOLD, 0x200, 1, 0);
	seg_state(&s0, RECORD_HOLD, 0x200, 0, 0);
	seg_state(&s0, RECORD_EXPIRED, 0x300, 0, 0);
	seg_state(&s0, RECORD_DEFERRED, 0x400, 0, 9000);
	seg_state(&s0, RECORD_DEFERRED, 0x400, 1, 8000);
	seg_state(&s0, RECORD_HOLD, 0x400, 1, 0);
	seg_state(&s0, RECORD_BOUNCE, 0x400, 0, 0);
	seg_close(&s0);
	cr_assert_eq(recover_shard(dir, &ix, &res), 0);
	cr_assert_eq(res.records_unusable, 0);
	cr_assert(index_find(&ix, 0x100)->held);
	cr_assert_eq(index_take_due(&ix, 0x100, UINT64_MAX), 0, "a held message is not taken");
	cr_assert_not(index_find(&ix, 0x200)->held);
	cr_assert_null(index_find(&ix, 0x300));
	const struct index_entry *e = index_find(&ix, 0x400);
	cr_assert_not(e->held);
	cr_assert(e->bounce);
	cr_assert_eq(e->due_ms, 0, "a bounce makes the deferred recipients due now");
	cr_assert_eq(index_entry_rcpt(e, 1, NULL), INDEX_RCPT_PENDING);
}

/* Copy-forward keeps the marks: the COPY's flags stand for the HOLD and BOUNCE records of the
 * segment it empties, and a record after the copy still applies. */
Test(recover, a_copy_carries_hold_and_bounce_when_the_original_is_gone)
{
	struct seg s1 = seg_open(1);
	struct record_copy_rcpt st[1] = { { .state = 3, .next_attempt_ms = 777 } };
	seg_copy_flags(&s1, 0x100, 1, st, RECORD_COPY_HELD);
	seg_copy_flags(&s1, 0x200, 1, st, RECORD_COPY_BOUNCE);
	seg_copy_flags(&s1, 0x300, 1, st, RECORD_COPY_HELD);
	seg_state(&s1, RECORD_HOLD, 0x300, 0, 0);
	seg_close(&s1);
	cr_assert_eq(recover_shard(dir, &ix, &res), 0);
	cr_assert(index_find(&ix, 0x100)->held);
	cr_assert_not(index_find(&ix, 0x100)->bounce);
	cr_assert(index_find(&ix, 0x200)->bounce);
	cr_assert_eq(index_find(&ix, 0x200)->due_ms, 0);
	cr_assert_not(index_find(&ix, 0x300)->held);
}

Test(recover, a_copy_restores_the_states_when_the_original_segment_is_gone)
{
	/* Segment 0 (the original and its DELIVERED record) was deleted after the copy. */
	struct seg s1 = seg_open(1);
	seg_state(&s1, RECORD_DELIVERED, 0x100, 0, 0);   /* for a message not known yet: ignored */
	struct record_copy_rcpt st[3] = { { .state = 1 }, { .state = 3, .next_attempt_ms = 777 },
		{ .state = 0 } };
	uint64_t off = seg_copy(&s1, 0x100, 3, st);
	seg_state(&s1, RECORD_BOUNCED, 0x100, 2, 0);     /* after the copy: applies */
	seg_close(&s1);
	cr_assert_eq(recover_shard(dir, &ix, &res), 0);
	const struct index_entry *e = index_find(&ix, 0x100);
	cr_assert_not_null(e);
	cr_assert_eq(e->segment, 1);
	cr_assert_eq(e->offset, off);
	cr_assert_eq(e->env_off, record_copy_prefix_size(3));
	uint64_t next = 0;
	cr_assert_eq(index_entry_rcpt(e, 0, NULL), INDEX_RCPT_DELIVERED);
	cr_assert_eq(index_entry_rcpt(e, 1, &next), INDEX_RCPT_DEFERRED);
	cr_assert_eq(next, 777);
	cr_assert_eq(index_entry_rcpt(e, 2, NULL), INDEX_RCPT_BOUNCED);
	cr_assert_eq(e->unfinished, 1);
	cr_assert_eq(e->due_ms, 777);
}

Test(recover, a_copy_moves_a_live_message_and_the_old_segment_goes)
{
	struct seg s0 = seg_open(0);
	seg_message(&s0, 0x200, 2);
	seg_state(&s0, RECORD_DEFERRED, 0x200, 1, 5000);
	seg_close(&s0);
	struct seg s1 = seg_open(1);
	struct record_copy_rcpt st[2] = { { .state = 0 }, { .state = 3, .next_attempt_ms = 5000 } };
	uint64_t off = seg_copy(&s1, 0x200, 2, st);
	seg_state(&s1, RECORD_DELIVERED, 0x200, 0, 0);
	seg_close(&s1);
	cr_assert_eq(recover_shard(dir, &ix, &res), 0);
	const struct index_entry *e = index_find(&ix, 0x200);
	cr_assert_not_null(e);
	cr_assert_eq(e->segment, 1);
	cr_assert_eq(e->offset, off);
	cr_assert_eq(index_entry_rcpt(e, 0, NULL), INDEX_RCPT_DELIVERED);
	cr_assert_eq(index_entry_rcpt(e, 1, NULL), INDEX_RCPT_DEFERRED);
	cr_assert_eq(res.segments_deleted, 1);
	cr_assert_not(seg_exists(0));
}

Test(recover, a_copy_with_a_bad_state_or_count_is_ignored)
{
	struct seg s0 = seg_open(0);
	struct record_copy_rcpt st[2] = { { .state = 0 }, { .state = 0 } };
	uint64_t off = seg_copy(&s0, 0x300, 2, st);
	seg_close(&s0);
	/* Corrupt the state byte of recipient 1 and fix the CRC: valid record, bad payload. */
	char name[SEGMENT_NAME_LEN + 1], path[128];
	recover_segment_name(0, name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	int fd = open(path, O_RDWR);
	uint8_t hdr[RECORD_HEADER_SIZE];
	cr_assert_eq(pread(fd, hdr, sizeof(hdr), (off_t)off), (ssize_t)sizeof(hdr));
	uint32_t len = (uint32_t)hdr[8] | (uint32_t)hdr[9] << 8 | (uint32_t)hdr[10] << 16
		| (uint32_t)hdr[11] << 24;
	uint8_t *payload = malloc(len);
	cr_assert_eq(pread(fd, payload, len, (off_t)off + RECORD_HEADER_SIZE), (ssize_t)len);
	payload[4 + RECORD_COPY_STATE_SIZE] = 9;
	struct iovec iov = { payload, len };
	record_header_encode(hdr, RECORD_COPY, 0x300, &iov, 1);
	cr_assert_eq(pwrite(fd, hdr, sizeof(hdr), (off_t)off), (ssize_t)sizeof(hdr));
	cr_assert_eq(pwrite(fd, payload, len, (off_t)off + RECORD_HEADER_SIZE), (ssize_t)len);
	close(fd);
	free(payload);
	cr_assert_eq(recover_shard(dir, &ix, &res), 0);
	cr_assert_null(index_find(&ix, 0x300));
	cr_assert_eq(res.records_unusable, 1);
}

/* Appends a BODY record of qid; returns where its payload is. */
static struct record_part
seg_body(struct seg *s, uint32_t seg_id, uint64_t qid, const char *text)
{
	size_t len = strlen(text);
	uint8_t rec[RECORD_HEADER_SIZE + 256];
	cr_assert_leq(len, 256);
	memcpy(rec + RECORD_HEADER_SIZE, text, len);
	struct iovec iov = { rec + RECORD_HEADER_SIZE, len };
	record_header_encode(rec, RECORD_BODY, qid, &iov, 1);
	struct record_part p = { .segment = seg_id, .offset = (uint32_t)(s->len + RECORD_HEADER_SIZE),
		.len = (uint32_t)len };
	seg_write(s, rec, RECORD_HEADER_SIZE + len);
	return p;
}

/* Appends a PARTS record of qid naming parts[0..n) and an inline rest. */
static uint64_t
seg_parts(struct seg *s, uint64_t qid, const struct record_part *parts, uint32_t n)
{
	static struct record_rcpt r = { .path = SLICE_LIT("u@example.org"),
		.local_part = SLICE_LIT("u"), .domain = SLICE_LIT("example.org") };
	struct record_envelope env = { .arrival_ms = 1700000000000ull,
		.client_addr = SLICE_LIT("127.0.0.1"), .helo = SLICE_LIT("client.example"),
		.mail_from = SLICE_LIT("s@example.com"), .rcpt_count = 1, .rcpts = &r };
	size_t env_len = record_envelope_size(&env);
	size_t len = env_len + record_parts_size(n) + 4;
	uint8_t *rec = malloc(RECORD_HEADER_SIZE + len);
	record_envelope_encode(&env, rec + RECORD_HEADER_SIZE, env_len);
	record_parts_encode(rec + RECORD_HEADER_SIZE + env_len, parts, n);
	memcpy(rec + RECORD_HEADER_SIZE + env_len + record_parts_size(n), "end\n", 4);
	struct iovec iov = { rec + RECORD_HEADER_SIZE, len };
	record_header_encode(rec, RECORD_PARTS, qid, &iov, 1);
	uint64_t off = s->len;
	seg_write(s, rec, RECORD_HEADER_SIZE + len);
	free(rec);
	return off;
}

Test(recover, a_message_in_parts_counts_where_its_body_begins)
{
	struct seg s0 = seg_open(0);
	struct record_part p[2];
	p[0] = seg_body(&s0, 0, 0x500, "first part\n");
	seg_body(&s0, 0, 0x600, "a body never committed\n");   /* no PARTS names it: dead */
	seg_close(&s0);
	struct seg s1 = seg_open(1);
	p[1] = seg_body(&s1, 1, 0x500, "second part\n");
	uint64_t off = seg_parts(&s1, 0x500, p, 2);
	seg_close(&s1);
	struct seg s2 = seg_open(2);
	seg_message(&s2, 0x700, 1);
	seg_close(&s2);
	cr_assert_eq(recover_shard(dir, &ix, &res), 0);
	const struct index_entry *e = index_find(&ix, 0x500);
	cr_assert_not_null(e);
	cr_assert_eq(e->kind, INDEX_KIND_PARTS);
	cr_assert_eq(e->segment, 1);
	cr_assert_eq(e->offset, off);
	cr_assert_eq(e->span, 1);
	cr_assert_null(index_find(&ix, 0x600));
	cr_assert_eq(index_segment_live(&ix, 0), 1);   /* segment 0 holds its first part */
	cr_assert_eq(res.segments_deleted, 0);
	cr_assert(seg_exists(0));
	cr_assert_eq(res.records_unusable, 0);
}

Test(recover, parts_that_lie_after_their_record_make_it_unusable)
{
	struct seg s0 = seg_open(0);
	struct record_part p = { .segment = 0, .offset = 4000, .len = 10 };   /* past the record */
	seg_parts(&s0, 0x800, &p, 1);
	seg_close(&s0);
	cr_assert_eq(recover_shard(dir, &ix, &res), 0);
	cr_assert_null(index_find(&ix, 0x800));
	cr_assert_eq(res.records_unusable, 1);
}

Test(recover, segments_are_replayed_in_numeric_order)
{
	/* Message in 0x10, its delivery in 0x11 and a new message in 0x2: 0x2 < 0x10 < 0x11. */
	struct seg a = seg_open(0x11);
	seg_state(&a, RECORD_DELIVERED, 0x100, 0, 0);
	seg_close(&a);
	struct seg b = seg_open(0x2);
	seg_message(&b, 0x50, 1);
	seg_close(&b);
	struct seg c = seg_open(0x10);
	seg_message(&c, 0x100, 1);
	seg_close(&c);
	cr_assert_eq(recover_shard(dir, &ix, &res), 0);
	cr_assert_null(index_find(&ix, 0x100));
	cr_assert_not_null(index_find(&ix, 0x50));
	cr_assert_eq(res.last_segment, 0x11);
	cr_assert_eq(res.first_segment, 0x2);
}

Test(recover, other_names_in_the_directory_are_left_alone)
{
	static const char *const names[] = { "notes.txt", "0000000000000001.log.tmp",
		"000000000000000A.log", "0000000100000000.log", "000000000000001.log" };
	char path[128];
	for (uint32_t i = 0; i < ARRAY_LEN(names); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		int fd = open(path, O_WRONLY | O_CREAT, 0600);
		cr_assert_geq(fd, 0);
		cr_assert_eq(write(fd, "RMQ1garbage", 11), 11);
		close(fd);
	}
	struct seg s = seg_open(5);
	seg_message(&s, 0x100, 1);
	seg_close(&s);
	cr_assert_eq(recover_shard(dir, &ix, &res), 0);
	cr_assert_eq(res.segments_found, 1);
	cr_assert_eq(res.last_segment, 5);
	for (uint32_t i = 0; i < ARRAY_LEN(names); i++) {
		snprintf(path, sizeof(path), "%s/%s", dir, names[i]);
		struct stat st;
		cr_assert_eq(stat(path, &st), 0);
		cr_assert_eq(st.st_size, 11);
	}
}

Test(recover, valid_records_that_do_not_decode_are_counted_and_ignored)
{
	struct seg s = seg_open(0);
	uint8_t rec[RECORD_HEADER_SIZE + 40] = { 0 };   /* a MESSAGE with no envelope */
	struct iovec iov = { rec + RECORD_HEADER_SIZE, 40 };
	record_header_encode(rec, RECORD_MESSAGE, 0x100, &iov, 1);
	seg_write(&s, rec, sizeof(rec));
	uint8_t st[RECORD_HEADER_SIZE + 3] = { 0 };    /* DELIVERED with 3 payload bytes */
	iov = (struct iovec){ st + RECORD_HEADER_SIZE, 3 };
	record_header_encode(st, RECORD_DELIVERED, 0x100, &iov, 1);
	seg_write(&s, st, sizeof(st));
	seg_message(&s, 0x101, 1);
	seg_close(&s);
	cr_assert_eq(recover_shard(dir, &ix, &res), 0);
	cr_assert_eq(res.records, 3);
	cr_assert_eq(res.records_unusable, 2);
	cr_assert_eq(res.messages_live, 1);
	cr_assert_eq(res.last_valid_end, s.len);
}

Test(recover, an_unreadable_segment_stops_recovery)
{
	char name[SEGMENT_NAME_LEN + 1], path[128];
	recover_segment_name(7, name);
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	cr_assert_eq(mkdir(path, 0700), 0);   /* opens, but cannot be read */
	cr_assert_lt(recover_shard(dir, &ix, &res), 0);
}

Test(recover, a_message_with_a_thousand_recipients_survives_a_restart)
{
	struct seg s = seg_open(0);
	seg_message(&s, 0x100, RECORD_RCPT_MAX);
	for (uint32_t i = 0; i < RECORD_RCPT_MAX; i += 2)
		seg_state(&s, RECORD_DELIVERED, 0x100, i, 0);
	seg_close(&s);
	cr_assert_eq(recover_shard(dir, &ix, &res), 0);
	const struct index_entry *e = index_find(&ix, 0x100);
	cr_assert_not_null(e);
	cr_assert_eq(e->unfinished, RECORD_RCPT_MAX / 2);
	for (uint32_t i = 0; i < RECORD_RCPT_MAX; i++)
		cr_assert_eq(index_rcpt_pending(&ix, 0x100, i), i % 2 == 1);
}
