/* queue/record.c - record encoding, decoding and scanning; see record.h. */
#include "queue/record.h"

#include <errno.h>
#include <string.h>

#include "queue/crc32c.h"

#define RECORD_ENV_FIXED 32u   /* len u32, arrival u64, size u64, 4 flag bytes, rcpt count u32,
				* reserved u32 */
#define RECORD_STR_MAX   UINT16_MAX

static void
put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void
put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void
put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t
get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | (p[1] << 8));
}

static uint32_t
get32(const uint8_t *p)
{
	return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16)
		| ((uint32_t)p[3] << 24);
}

static uint64_t
get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | ((uint64_t)get32(p + 4) << 32);
}

static uint32_t
record_crc(const uint8_t hdr[RECORD_HEADER_SIZE], const struct iovec *payload, uint32_t count)
{
	uint8_t h[RECORD_HEADER_SIZE];
	memcpy(h, hdr, sizeof(h));
	put32(h + 12, 0);
	uint32_t crc = crc32c_update(0, h, sizeof(h));
	for (uint32_t i = 0; i < count; i++)
		crc = crc32c_update(crc, payload[i].iov_base, payload[i].iov_len);
	return crc;
}

void
record_header_encode(uint8_t hdr[RECORD_HEADER_SIZE], uint8_t type, uint64_t queue_id,
	const struct iovec *payload, uint32_t count)
{
	uint64_t len = 0;
	for (uint32_t i = 0; i < count; i++)
		len += payload[i].iov_len;
	ASSERT(len <= RECORD_PAYLOAD_MAX);
	ASSERT(type >= RECORD_MESSAGE && type <= RECORD_EXPIRED);
	put32(hdr, RECORD_MAGIC);
	hdr[4] = type;
	hdr[5] = RECORD_VERSION;
	put16(hdr + 6, 0);
	put32(hdr + 8, (uint32_t)len);
	put64(hdr + 16, queue_id);
	put32(hdr + 12, record_crc(hdr, payload, count));
}

static size_t
record_str_size(struct slice s)
{
	ASSERT(s.len <= RECORD_STR_MAX);
	return 2 + s.len;
}

size_t
record_envelope_size(const struct record_envelope *env)
{
	size_t n = RECORD_ENV_FIXED + record_str_size(env->client_addr) + record_str_size(env->helo)
		+ record_str_size(env->mail_from) + record_str_size(env->dsn_envid);
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
	put16(out, (uint16_t)s.len);
	if (s.len > 0)
		memcpy(out + 2, s.ptr, s.len);
	return 2 + s.len;
}

size_t
record_envelope_encode(const struct record_envelope *env, uint8_t *out, size_t cap)
{
	size_t size = record_envelope_size(env);
	ASSERT(cap >= size);
	ASSERT(size <= UINT32_MAX);
	put32(out, (uint32_t)size);
	put64(out + 4, env->arrival_ms);
	put64(out + 12, env->declared_size);
	out[20] = env->body_type;
	out[21] = env->smtputf8;
	out[22] = env->dsn_ret;
	out[23] = 0;
	put32(out + 24, env->rcpt_count);
	put32(out + 28, 0);
	size_t off = RECORD_ENV_FIXED;
	off += record_put_str(out + off, env->client_addr);
	off += record_put_str(out + off, env->helo);
	off += record_put_str(out + off, env->mail_from);
	off += record_put_str(out + off, env->dsn_envid);
	for (uint32_t i = 0; i < env->rcpt_count; i++) {
		const struct record_rcpt *r = &env->rcpts[i];
		out[off++] = r->notify;
		off += record_put_str(out + off, r->path);
		off += record_put_str(out + off, r->local_part);
		off += record_put_str(out + off, r->domain);
		off += record_put_str(out + off, r->orcpt);
	}
	ASSERT(off == size);
	return off;
}

/* Reads a length-prefixed string at *off of area; -EBADMSG if it runs past the end. */
static int
record_get_str(struct slice area, size_t *off, struct slice *out)
{
	if (area.len - *off < 2)
		return -EBADMSG;
	size_t len = get16(area.ptr + *off);
	if (area.len - *off - 2 < len)
		return -EBADMSG;
	*out = slice_sub(area, *off + 2, len);
	*off += 2 + len;
	return 0;
}

int
record_envelope_decode(struct slice payload, struct record_envelope_view *v)
{
	if (payload.len < RECORD_ENV_FIXED)
		return -EBADMSG;
	uint32_t env_len = get32(payload.ptr);
	if (env_len < RECORD_ENV_FIXED || env_len > payload.len)
		return -EBADMSG;
	struct slice env = slice_sub(payload, 0, env_len);
	v->arrival_ms = get64(env.ptr + 4);
	v->declared_size = get64(env.ptr + 12);
	v->body_type = env.ptr[20];
	v->smtputf8 = env.ptr[21] != 0;
	v->dsn_ret = env.ptr[22];
	v->rcpt_count = get32(env.ptr + 24);
	size_t off = RECORD_ENV_FIXED;
	if (record_get_str(env, &off, &v->client_addr) != 0
		|| record_get_str(env, &off, &v->helo) != 0
		|| record_get_str(env, &off, &v->mail_from) != 0
		|| record_get_str(env, &off, &v->dsn_envid) != 0)
		return -EBADMSG;
	/* Each recipient takes at least 9 octets: a cheap bound before anyone loops over them. */
	if (v->rcpt_count > (env.len - off) / 9)
		return -EBADMSG;
	v->rcpt_area = slice_skip(env, off);
	v->cursor_index = 0;
	v->cursor_off = 0;
	v->body = slice_skip(payload, env_len);
	return 0;
}

int
record_envelope_rcpt(struct record_envelope_view *v, uint32_t i, struct record_rcpt *out)
{
	if (i >= v->rcpt_count)
		return -EBADMSG;
	if (i < v->cursor_index) {
		v->cursor_index = 0;
		v->cursor_off = 0;
	}
	while (v->cursor_index <= i) {
		size_t off = v->cursor_off;
		if (off >= v->rcpt_area.len)
			return -EBADMSG;
		out->notify = v->rcpt_area.ptr[off++];
		if (record_get_str(v->rcpt_area, &off, &out->path) != 0
			|| record_get_str(v->rcpt_area, &off, &out->local_part) != 0
			|| record_get_str(v->rcpt_area, &off, &out->domain) != 0
			|| record_get_str(v->rcpt_area, &off, &out->orcpt) != 0)
			return -EBADMSG;
		v->cursor_off = off;
		v->cursor_index++;
	}
	return 0;
}

int
record_state_rcpt(const struct record_view *r, uint32_t *rcpt)
{
	if (r->payload.len < 4)
		return -EBADMSG;
	*rcpt = get32(r->payload.ptr);
	return 0;
}

/* Whether a valid record starts at off; fills out if so. */
static bool
record_valid_at(struct slice seg, uint64_t off, struct record_view *out)
{
	if (seg.len - off < RECORD_HEADER_SIZE)
		return false;
	const uint8_t *h = seg.ptr + off;
	if (get32(h) != RECORD_MAGIC || h[5] != RECORD_VERSION)
		return false;
	if (h[4] < RECORD_MESSAGE || h[4] > RECORD_EXPIRED)
		return false;
	uint32_t len = get32(h + 8);
	if (len > RECORD_PAYLOAD_MAX || len > seg.len - off - RECORD_HEADER_SIZE)
		return false;
	struct iovec iov = { .iov_base = (void *)(h + RECORD_HEADER_SIZE), .iov_len = len };
	if (record_crc(h, &iov, 1) != get32(h + 12))
		return false;
	out->type = h[4];
	out->queue_id = get64(h + 16);
	out->payload = slice_sub(seg, off + RECORD_HEADER_SIZE, len);
	out->offset = off;
	out->size = RECORD_HEADER_SIZE + (uint64_t)len;
	return true;
}

int
record_scan_next(struct slice seg, uint64_t *offset, struct record_view *out, uint64_t *skipped,
	uint64_t *valid_end)
{
	uint64_t off = *offset;
	while (off < seg.len) {
		if (record_valid_at(seg, off, out)) {
			*offset = off + out->size;
			*valid_end = *offset;
			return 1;
		}
		/* Resynchronise: the next candidate is the next occurrence of the magic's first byte. */
		const uint8_t *next = memchr(seg.ptr + off + 1, RECORD_MAGIC & 0xffu,
			seg.len - off - 1 > 0 ? seg.len - off - 1 : 0);
		uint64_t to = next == NULL ? seg.len : (uint64_t)(next - seg.ptr);
		*skipped += to - off;
		off = to;
	}
	*offset = seg.len;
	return 0;
}
