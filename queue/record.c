/* queue/record.c - record encoding, decoding and scanning; see record.h. */
#include "queue/record.h"

#include <errno.h>
#include <string.h>

#include "conf/config.h"
#include "proto/received.h"
#include "queue/crc32c.h"

#define RECORD_CRC_OFF      offsetof(struct record_header, crc)

/* The spool keeps a message in one record, and copies it forward in a COPY record: the largest
 * message the configuration allows must fit that, with its Received: header and envelope. */
_Static_assert(CONFIG_MESSAGE_SIZE_MAX + RECEIVED_LEN_MAX + RECORD_ENVELOPE_SIZE_MAX
	+ RECORD_COPY_PREFIX_MAX <= RECORD_PAYLOAD_MAX, "max_message_size fits a spool record");
#define RECORD_RCPT_MIN     (1u + 4u * RECORD_STR_MIN)

static void
record_put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void
record_put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void
record_put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t
record_get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t
record_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16)
		| ((uint32_t)p[3] << 24);
}

static uint64_t
record_get64(const uint8_t *p)
{
	return (uint64_t)record_get32(p) | ((uint64_t)record_get32(p + 4) << 32);
}

/* The CRC of a header (its crc field taken as zero) followed by the payload iovecs. */
static uint32_t
record_crc(const uint8_t hdr[RECORD_HEADER_SIZE], const struct iovec *payload, uint32_t count)
{
	static const uint8_t zero[4];
	uint32_t crc = crc32c_update(0, hdr, RECORD_CRC_OFF);
	crc = crc32c_update(crc, zero, sizeof(zero));
	crc = crc32c_update(crc, hdr + RECORD_CRC_OFF + 4, RECORD_HEADER_SIZE - RECORD_CRC_OFF - 4);
	for (uint32_t i = 0; i < count; i++)
		crc = crc32c_update(crc, payload[i].iov_base, payload[i].iov_len);
	return crc;
}

void
record_header_encode(uint8_t hdr[RECORD_HEADER_SIZE], uint8_t type, uint64_t queue_id,
	const struct iovec *payload, uint32_t count)
{
	ASSERT(type >= RECORD_MESSAGE);
	ASSERT(type <= RECORD_TYPE_LAST);
	uint64_t len = 0;
	for (uint32_t i = 0; i < count; i++)
		len += payload[i].iov_len;
	ASSERT(len <= RECORD_PAYLOAD_MAX);
	record_put32(hdr, RECORD_MAGIC);
	hdr[4] = type;
	hdr[5] = RECORD_VERSION;
	record_put16(hdr + 6, 0);
	record_put32(hdr + 8, (uint32_t)len);
	record_put32(hdr + RECORD_CRC_OFF, 0);
	record_put64(hdr + 16, queue_id);
	record_put32(hdr + RECORD_CRC_OFF, record_crc(hdr, payload, count));
}

static size_t
record_str_size(struct slice s)
{
	ASSERT(s.len <= RECORD_STR_MAX);
	return RECORD_STR_MIN + s.len;
}

size_t
record_envelope_size(const struct record_envelope *env)
{
	size_t n = RECORD_ENV_FIXED + record_str_size(env->client_addr)
		+ record_str_size(env->helo) + record_str_size(env->mail_from)
		+ record_str_size(env->dsn_envid);
	for (uint32_t i = 0; i < env->rcpt_count; i++) {
		const struct record_rcpt *r = &env->rcpts[i];
		n += 1 + record_str_size(r->path) + record_str_size(r->local_part)
			+ record_str_size(r->domain) + record_str_size(r->orcpt);
	}
	return n;
}

static size_t
record_put_str(uint8_t *out, struct slice s)
{
	record_put16(out, (uint16_t)s.len);
	if (s.len > 0)
		memcpy(out + RECORD_STR_MIN, s.ptr, s.len);   /* copy: envelope into the head */
	return RECORD_STR_MIN + s.len;
}

size_t
record_envelope_encode(const struct record_envelope *env, uint8_t *out, size_t cap)
{
	ASSERT(env->rcpt_count >= 1);
	ASSERT(env->rcpt_count <= RECORD_RCPT_MAX);
	ASSERT(env->body_type <= RECORD_BODY_TYPE_MAX);
	ASSERT(env->dsn_ret <= RECORD_DSN_RET_MAX);
	size_t size = record_envelope_size(env);
	ASSERT(cap >= size);
	record_put32(out, (uint32_t)size);   /* < RECORD_PAYLOAD_MAX: bounded by the limits */
	record_put64(out + 4, env->arrival_ms);
	record_put64(out + 12, env->declared_size);
	out[20] = env->body_type;
	out[21] = env->smtputf8 ? 1 : 0;
	out[22] = env->dsn_ret;
	out[23] = 0;
	record_put32(out + 24, env->rcpt_count);
	record_put32(out + 28, 0);
	size_t off = RECORD_ENV_FIXED;
	off += record_put_str(out + off, env->client_addr);
	off += record_put_str(out + off, env->helo);
	off += record_put_str(out + off, env->mail_from);
	off += record_put_str(out + off, env->dsn_envid);
	for (uint32_t i = 0; i < env->rcpt_count; i++) {
		const struct record_rcpt *r = &env->rcpts[i];
		ASSERT((r->notify & ~RECORD_NOTIFY_MASK) == 0);
		out[off++] = r->notify;
		off += record_put_str(out + off, r->path);
		off += record_put_str(out + off, r->local_part);
		off += record_put_str(out + off, r->domain);
		off += record_put_str(out + off, r->orcpt);
	}
	ASSERT(off == size);
	return off;
}

/* Reads a length-prefixed string at *off of area. Returns 0, or -EBADMSG if it runs past the
 * end; *off <= area.len holds on entry and on return. */
static int
record_get_str(struct slice area, size_t *off, struct slice *out)
{
	if (area.len - *off < RECORD_STR_MIN)
		return -EBADMSG;
	size_t len = record_get16(area.ptr + *off);
	if (area.len - *off - RECORD_STR_MIN < len)
		return -EBADMSG;
	*out = slice_sub(area, *off + RECORD_STR_MIN, len);
	*off += RECORD_STR_MIN + len;
	return 0;
}

/* Reads the recipient at *off of area and moves *off past it. Returns 0 or -EBADMSG. */
static int
record_get_rcpt(struct slice area, size_t *off, struct record_rcpt *out)
{
	if (*off >= area.len)
		return -EBADMSG;
	out->notify = area.ptr[*off];
	*off += 1;
	if ((out->notify & ~RECORD_NOTIFY_MASK) != 0)
		return -EBADMSG;
	if (record_get_str(area, off, &out->path) != 0
		|| record_get_str(area, off, &out->local_part) != 0
		|| record_get_str(area, off, &out->domain) != 0
		|| record_get_str(area, off, &out->orcpt) != 0)
		return -EBADMSG;
	return 0;
}

/* The fixed part: lengths, scalars, flags and reserved bytes. */
static int
record_envelope_fixed(struct slice payload, struct record_envelope_view *v, uint32_t *env_len)
{
	if (payload.len < RECORD_ENV_FIXED)
		return -EBADMSG;
	const uint8_t *p = payload.ptr;
	*env_len = record_get32(p);
	if (*env_len < RECORD_ENV_FIXED || *env_len > payload.len)
		return -EBADMSG;
	v->arrival_ms = record_get64(p + 4);
	v->declared_size = record_get64(p + 12);
	v->body_type = p[20];
	v->smtputf8 = p[21] != 0;
	v->dsn_ret = p[22];
	v->rcpt_count = record_get32(p + 24);
	if (v->body_type > RECORD_BODY_TYPE_MAX || p[21] > 1 || v->dsn_ret > RECORD_DSN_RET_MAX
		|| p[23] != 0 || record_get32(p + 28) != 0)
		return -EBADMSG;
	if (v->rcpt_count < 1 || v->rcpt_count > RECORD_RCPT_MAX)
		return -EBADMSG;
	return 0;
}

int
record_envelope_length(struct slice payload, uint32_t *out)
{
	if (payload.len < 4)
		return -EBADMSG;
	*out = record_get32(payload.ptr);
	return *out < RECORD_ENV_FIXED ? -EBADMSG : 0;
}

int
record_envelope_decode(struct slice payload, struct record_envelope_view *v)
{
	uint32_t env_len;
	if (record_envelope_fixed(payload, v, &env_len) != 0)
		return -EBADMSG;
	struct slice env = slice_sub(payload, 0, env_len);
	size_t off = RECORD_ENV_FIXED;
	if (record_get_str(env, &off, &v->client_addr) != 0
		|| record_get_str(env, &off, &v->helo) != 0
		|| record_get_str(env, &off, &v->mail_from) != 0
		|| record_get_str(env, &off, &v->dsn_envid) != 0)
		return -EBADMSG;
	/* A cheap bound before the walk, then the walk itself: afterwards every recipient is
	 * known to decode, and the last one ends exactly at the envelope's end. */
	if (v->rcpt_count > (env.len - off) / RECORD_RCPT_MIN)
		return -EBADMSG;
	v->rcpt_area = slice_skip(env, off);
	size_t roff = 0;
	for (uint32_t i = 0; i < v->rcpt_count; i++) {
		struct record_rcpt r;
		if (record_get_rcpt(v->rcpt_area, &roff, &r) != 0)
			return -EBADMSG;
	}
	if (roff != v->rcpt_area.len)
		return -EBADMSG;
	v->cursor_index = 0;
	v->cursor_off = 0;
	v->body = slice_skip(payload, env_len);
	return 0;
}

int
record_envelope_rcpt(struct record_envelope_view *v, uint32_t i, struct record_rcpt *out)
{
	if (i >= v->rcpt_count)
		return -EINVAL;
	if (i < v->cursor_index) {
		v->cursor_index = 0;
		v->cursor_off = 0;
	}
	while (v->cursor_index <= i) {
		/* Decoded once already by record_envelope_decode: cannot fail now. */
		int rc = record_get_rcpt(v->rcpt_area, &v->cursor_off, out);
		ASSERT(rc == 0);
		v->cursor_index++;
	}
	return 0;
}

/* The payload length of each state record type; MESSAGE has none fixed. */
static int64_t
record_state_len(uint8_t type)
{
	switch (type) {
	case RECORD_DELIVERED:
	case RECORD_BOUNCED:
		return 4;
	case RECORD_DEFERRED:
		return 12;
	case RECORD_EXPIRED:
		return 0;
	default:
		return -1;
	}
}

uint32_t
record_state_encode(uint8_t out[RECORD_STATE_SIZE_MAX], uint8_t type, uint64_t queue_id,
	uint32_t rcpt, uint64_t next_attempt_ms)
{
	int64_t len = record_state_len(type);
	ASSERT(len >= 0);
	uint8_t *payload = out + RECORD_HEADER_SIZE;
	if (len >= 4)
		record_put32(payload, rcpt);
	if (len >= 12)
		record_put64(payload + 4, next_attempt_ms);
	struct iovec iov = { .iov_base = payload, .iov_len = (size_t)len };
	record_header_encode(out, type, queue_id, &iov, 1);
	return RECORD_HEADER_SIZE + (uint32_t)len;
}

int
record_state_decode(const struct record_view *r, struct record_state *out)
{
	int64_t len = record_state_len(r->type);
	if (len < 0 || r->payload.len != (uint64_t)len)
		return -EBADMSG;
	out->rcpt = len >= 4 ? record_get32(r->payload.ptr) : 0;
	out->next_attempt_ms = len >= 12 ? record_get64(r->payload.ptr + 4) : 0;
	return 0;
}

void
record_parts_encode(uint8_t *out, const struct record_part *parts, uint32_t n)
{
	ASSERT(n <= RECORD_PARTS_MAX);
	record_put32(out, n);
	for (uint32_t i = 0; i < n; i++) {
		uint8_t *p = out + 4 + i * RECORD_PART_SIZE;
		ASSERT(parts[i].len > 0);
		record_put32(p, parts[i].segment);
		record_put32(p + 4, parts[i].offset);
		record_put32(p + 8, parts[i].len);
	}
}

int
record_parts_decode(struct slice after_envelope, uint32_t segment, uint64_t offset,
	uint32_t *count, struct slice *table, struct slice *rest)
{
	if (after_envelope.len < 4)
		return -EBADMSG;
	uint32_t n = record_get32(after_envelope.ptr);
	if (n > RECORD_PARTS_MAX || after_envelope.len - 4 < (uint64_t)n * RECORD_PART_SIZE)
		return -EBADMSG;
	struct slice t = slice_sub(after_envelope, 4, (size_t)n * RECORD_PART_SIZE);
	for (uint32_t i = 0; i < n; i++) {
		struct record_part p = record_parts_get(t, i);
		uint64_t end = (uint64_t)p.offset + p.len;
		if (p.len == 0 || p.segment > segment || (p.segment == segment && end > offset))
			return -EBADMSG;
	}
	*count = n;
	*table = t;
	*rest = slice_skip(after_envelope, record_parts_size(n));
	return 0;
}

struct record_part
record_parts_get(struct slice table, uint32_t i)
{
	ASSERT((uint64_t)(i + 1) * RECORD_PART_SIZE <= table.len);
	const uint8_t *p = table.ptr + (size_t)i * RECORD_PART_SIZE;
	return (struct record_part){ .segment = record_get32(p), .offset = record_get32(p + 4),
		.len = record_get32(p + 8) };
}

uint32_t
record_copy_prefix_encode(uint8_t *out, uint32_t rcpt_count, const struct record_copy_rcpt *rcpts)
{
	ASSERT(rcpt_count >= 1);
	ASSERT(rcpt_count <= RECORD_RCPT_MAX);
	record_put32(out, rcpt_count);
	for (uint32_t i = 0; i < rcpt_count; i++) {
		uint8_t *p = out + 4 + i * RECORD_COPY_STATE_SIZE;
		ASSERT(rcpts[i].state <= 3);
		p[0] = rcpts[i].state;
		record_put64(p + 1, rcpts[i].state == 3 ? rcpts[i].next_attempt_ms : 0);
	}
	return record_copy_prefix_size(rcpt_count);
}

int
record_copy_decode(struct slice payload, uint32_t *rcpt_count, struct slice *states,
	struct slice *message)
{
	if (payload.len < 4)
		return -EBADMSG;
	uint32_t n = record_get32(payload.ptr);
	if (n < 1 || n > RECORD_RCPT_MAX || payload.len < record_copy_prefix_size(n))
		return -EBADMSG;
	for (uint32_t i = 0; i < n; i++) {
		if (payload.ptr[4 + i * RECORD_COPY_STATE_SIZE] > 3)
			return -EBADMSG;
	}
	*rcpt_count = n;
	*states = slice_sub(payload, 4, n * RECORD_COPY_STATE_SIZE);
	*message = slice_skip(payload, record_copy_prefix_size(n));
	return 0;
}

struct record_copy_rcpt
record_copy_state(struct slice states, uint32_t i)
{
	ASSERT((uint64_t)(i + 1) * RECORD_COPY_STATE_SIZE <= states.len);
	const uint8_t *p = states.ptr + (size_t)i * RECORD_COPY_STATE_SIZE;
	return (struct record_copy_rcpt){ .state = p[0], .next_attempt_ms = record_get64(p + 1) };
}

/* Whether a valid record starts at off (< seg.len); fills out if so. The cheap header checks
 * come first so that a byte search pays for a CRC only at plausible headers. */
static bool
record_valid_at(struct slice seg, uint64_t off, struct record_view *out)
{
	if (seg.len - off < RECORD_HEADER_SIZE)
		return false;
	const uint8_t *h = seg.ptr + off;
	if (record_get32(h) != RECORD_MAGIC || h[5] != RECORD_VERSION || record_get16(h + 6) != 0)
		return false;
	if (h[4] < RECORD_MESSAGE || h[4] > RECORD_TYPE_LAST)
		return false;
	uint32_t len = record_get32(h + 8);
	if (len > RECORD_PAYLOAD_MAX || len > seg.len - off - RECORD_HEADER_SIZE)
		return false;
	struct iovec iov = { .iov_base = (void *)(h + RECORD_HEADER_SIZE), .iov_len = len };
	if (record_crc(h, &iov, 1) != record_get32(h + RECORD_CRC_OFF))
		return false;
	out->type = h[4];
	out->queue_id = record_get64(h + 16);
	out->payload = slice_sub(seg, off + RECORD_HEADER_SIZE, len);
	out->offset = off;
	out->size = RECORD_HEADER_SIZE + (uint64_t)len;
	return true;
}

int
record_scan_next(struct slice seg, uint64_t *offset, struct record_view *out, uint64_t *skipped,
	uint64_t *valid_end)
{
	uint64_t off = *offset <= seg.len ? *offset : seg.len;
	if (off < seg.len && record_valid_at(seg, off, out)) {
		*offset = off + out->size;
		*valid_end = *offset;
		return 1;
	}
	*skipped += seg.len - off;   /* no search past it: see record.h */
	*offset = seg.len;
	return 0;
}
