/* conf/policy.c - relay and recipient policy; see policy.h.
 *
 * The users are a set of lower-cased local parts: an open-addressing table of offsets into one
 * block of names, both allocated once by policy_init and only read afterwards. */
#include "conf/policy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define POLICY_SLOTS_MIN 16u

_Static_assert(POLICY_LOCAL_PART_LEN_MAX <= UINT8_MAX, "a name's length fits its length octet");
_Static_assert((uint64_t)POLICY_USERS_FILE_SIZE_MAX + 16u < UINT32_MAX,
	"offsets into names fit the uint32_t slots");
_Static_assert((uint64_t)POLICY_USERS_MAX * 2u < UINT32_MAX, "the slot count fits a uint32_t");

static const struct slice policy_postmaster = SLICE_LIT("postmaster");

/* FNV-1a over the lower-cased octets, so that lookups need no lower-cased copy. */
static uint32_t
policy_hash(struct slice s)
{
	uint32_t h = 2166136261u;
	for (size_t i = 0; i < s.len; i++) {
		h ^= slice_ascii_lower(s.ptr[i]);
		h *= 16777619u;
	}
	return h;
}

static struct slice
policy_name_at(const struct policy *p, uint32_t slot_value)
{
	const uint8_t *name = p->names + (slot_value - 1);
	return slice_make(name + 1, name[0]);
}

/* The slot holding s, or the empty slot where it would go. */
static uint32_t
policy_slot_find(const struct policy *p, struct slice s)
{
	uint32_t i = policy_hash(s) & p->slot_mask;
	/* The table is at most half full, so an empty slot ends every probe. */
	for (uint32_t probes = 0; probes <= p->slot_mask; probes++) {
		if (p->slots[i] == 0 || slice_eq_nocase(policy_name_at(p, p->slots[i]), s))
			return i;
		i = (i + 1) & p->slot_mask;
	}
	ASSERT(!"policy: user table full");
	return 0;
}

static bool
policy_user_exists(const struct policy *p, struct slice local_part)
{
	if (p->every_user_exists || slice_eq_nocase(local_part, policy_postmaster))
		return true;
	return p->slots[policy_slot_find(p, local_part)] != 0;
}

/* Adds a safe local part (lower-cased) unless it is already there. */
static void
policy_user_add(struct policy *p, struct slice name)
{
	ASSERT(policy_local_part_safe(name));
	uint32_t i = policy_slot_find(p, name);
	if (p->slots[i] != 0)
		return;
	ASSERT(p->user_count < (p->slot_mask + 1) / 2);
	uint8_t *dst = p->names + p->names_len;
	dst[0] = (uint8_t)name.len;
	for (size_t k = 0; k < name.len; k++)
		dst[1 + k] = slice_ascii_lower(name.ptr[k]);
	p->slots[i] = (uint32_t)p->names_len + 1;
	p->names_len += 1 + name.len;
	p->user_count++;
}

bool
policy_local_part_safe(struct slice lp)
{
	if (lp.len == 0 || lp.len > POLICY_LOCAL_PART_LEN_MAX || lp.ptr[0] == '.')
		return false;
	for (size_t i = 0; i < lp.len; i++) {
		uint8_t c = lp.ptr[i];
		/* '/' and NUL would leave or cut the Maildir path; '%', '!' and '@' are the relay
		 * tricks of RFC 2505 2.1; blanks and control characters only come quoted. */
		if (c <= 0x20 || c == 0x7f || c == '/' || c == '%' || c == '!' || c == '@')
			return false;
	}
	return true;
}

static struct slice
policy_trim(struct slice s)
{
	while (s.len > 0 && (s.ptr[0] == ' ' || s.ptr[0] == '\t'))
		s = slice_skip(s, 1);
	while (s.len > 0 && (s.ptr[s.len - 1] == ' ' || s.ptr[s.len - 1] == '\t'
		|| s.ptr[s.len - 1] == '\r'))
		s.len--;
	return s;
}

/* Reads the whole file into a fresh buffer; returns its length or -errno (-EFBIG: too large,
 * -EAGAIN: it grew while being read). */
static long
policy_read_file(const char *path, uint8_t **out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	struct stat st;
	if (fstat(fd, &st) != 0 || st.st_size > (off_t)POLICY_USERS_FILE_SIZE_MAX) {
		long rc = st.st_size > (off_t)POLICY_USERS_FILE_SIZE_MAX ? -EFBIG : -errno;
		close(fd);
		return rc;
	}
	/* One octet more than the size, to notice a file that grew while it was read. */
	size_t cap = (size_t)st.st_size + 1u;
	uint8_t *buf = malloc(cap);
	size_t len = 0;
	ssize_t n = 1;
	while (buf != NULL && len < cap && n != 0) {
		n = read(fd, buf + len, cap - len);
		if (n < 0 && errno != EINTR)
			break;
		if (n > 0)
			len += (size_t)n;
	}
	long rc = buf == NULL ? -ENOMEM : n < 0 ? -errno : len == cap ? -EAGAIN : (long)len;
	close(fd);
	if (rc < 0)
		free(buf);
	else
		*out = buf;
	return rc;
}

/* Sizes the table for at most `lines` names besides postmaster, in `bytes` octets of text. */
static int
policy_alloc(struct policy *p, size_t lines, size_t bytes)
{
	uint32_t slots = POLICY_SLOTS_MIN;
	while (slots < 2 * (lines + 1))
		slots *= 2;
	p->slots = calloc(slots, sizeof(p->slots[0]));
	p->names = malloc(bytes + lines + 1 + policy_postmaster.len + 1);
	p->slot_mask = slots - 1;
	return p->slots != NULL && p->names != NULL ? 0 : -ENOMEM;
}

static int
policy_load_lines(struct policy *p, const char *path, struct slice text, char *err,
	size_t err_len)
{
	uint32_t line = 0;
	while (text.len > 0) {
		line++;
		const uint8_t *lf = memchr(text.ptr, '\n', text.len);
		size_t len = lf == NULL ? text.len : (size_t)(lf - text.ptr);
		struct slice name = policy_trim(slice_sub(text, 0, len));
		text = slice_skip(text, lf == NULL ? len : len + 1);
		if (name.len == 0 || name.ptr[0] == '#')
			continue;
		if (!policy_local_part_safe(name)) {
			snprintf(err, err_len, "%s:%u: not a local part that can receive mail "
				"(1..%u octets, no '/', '%%', '!', '@', blank or control "
				"character, no leading '.')", path, line,
				POLICY_LOCAL_PART_LEN_MAX);
			return -1;
		}
		if (p->user_count == POLICY_USERS_MAX) {
			snprintf(err, err_len, "%s:%u: more than %u users", path, line,
				POLICY_USERS_MAX);
			return -1;
		}
		policy_user_add(p, name);
	}
	return 0;
}

static size_t
policy_count_lines(struct slice text)
{
	size_t lines = 1;
	for (const uint8_t *q = text.ptr; (q = memchr(q, '\n', (size_t)(text.ptr + text.len - q)));
		q++)
		lines++;
	return lines;
}

static int
policy_load_users(struct policy *p, const char *path, char *err, size_t err_len)
{
	uint8_t *buf = NULL;
	long len = policy_read_file(path, &buf);
	if (len < 0) {
		snprintf(err, err_len, "local_users_file: %s: %s", path, len == -EFBIG
			? "larger than the limit" : strerror((int)-len));
		return -1;
	}
	struct slice text = slice_make(buf, (size_t)len);
	int rc = policy_alloc(p, policy_count_lines(text), (size_t)len);
	if (rc != 0)
		snprintf(err, err_len, "local_users_file: %s: out of memory", path);
	else
		rc = policy_load_lines(p, path, text, err, err_len);
	if (rc == 0)
		policy_user_add(p, policy_postmaster);
	free(buf);
	return rc;
}

int
policy_init(struct policy *p, const struct config *cfg, char *err, size_t err_len)
{
	memset(p, 0, sizeof(*p));
	p->cfg = cfg;
	for (uint32_t i = 0; i < cfg->local_domain_count; i++)
		p->domain_len[i] = (uint16_t)strnlen(cfg->local_domains[i],
			sizeof(cfg->local_domains[i]));
	if (cfg->local_users_file[0] == '\0') {
		p->every_user_exists = true;
		return 0;
	}
	if (policy_load_users(p, cfg->local_users_file, err, err_len) != 0) {
		policy_fini(p);
		return -1;
	}
	return 0;
}

void
policy_fini(struct policy *p)
{
	free(p->slots);
	free(p->names);
	p->slots = NULL;
	p->names = NULL;
	p->user_count = 0;
}

/* True if the first prefix_len bits of a and b agree. */
static bool
policy_prefix_eq(const uint8_t *a, const uint8_t *b, uint32_t prefix_len)
{
	uint32_t whole = prefix_len / 8, rest = prefix_len % 8;
	if (whole > 0 && memcmp(a, b, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	uint8_t mask = (uint8_t)(0xffu << (8 - rest));
	return (a[whole] & mask) == (b[whole] & mask);
}

bool
policy_client_may_relay(const struct policy *p, const struct sockaddr *sa)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };
	if (sa == NULL)
		return false;
	const uint8_t *addr;
	int family = sa->sa_family;
	if (family == AF_INET) {
		addr = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
	} else if (family == AF_INET6) {
		addr = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
		if (memcmp(addr, mapped, sizeof(mapped)) == 0) {
			family = AF_INET;   /* config stores IPv4-mapped networks as IPv4 */
			addr += sizeof(mapped);
		}
	} else {
		return false;
	}
	const struct config *cfg = p->cfg;
	for (uint32_t i = 0; i < cfg->relay_network_count; i++) {
		const struct config_network *net = &cfg->relay_networks[i];
		if (net->family == family && policy_prefix_eq(net->addr, addr, net->prefix_len))
			return true;
	}
	return false;
}

bool
policy_domain_is_local(const struct policy *p, struct slice domain)
{
	domain = slice_strip_final_dot(domain);
	const struct config *cfg = p->cfg;
	for (uint32_t i = 0; i < cfg->local_domain_count; i++) {
		struct slice local = slice_make(cfg->local_domains[i], p->domain_len[i]);
		if (local.len == domain.len && slice_eq_nocase(local, domain))
			return true;
	}
	return false;
}

enum smtp_rcpt_verdict
policy_rcpt(const struct policy *p, bool relay_allowed, struct slice local_part,
	struct slice domain, bool quoted)
{
	if (domain.len == 0) {
		/* RFC 5321 4.1.1.3: <postmaster> without a domain is ours. */
		return slice_eq_nocase(local_part, policy_postmaster) && !quoted ? SMTP_RCPT_OK
			: SMTP_RCPT_UNKNOWN_USER;
	}
	if (policy_domain_is_local(p, domain)) {
		/* RFC 2505 2.1: a local part that routes elsewhere is never followed. */
		if (quoted || !policy_local_part_safe(local_part))
			return SMTP_RCPT_UNKNOWN_USER;
		return policy_user_exists(p, local_part) ? SMTP_RCPT_OK : SMTP_RCPT_UNKNOWN_USER;
	}
	return relay_allowed ? SMTP_RCPT_OK : SMTP_RCPT_RELAY_DENIED;
}

int
policy_mailbox_name(const struct policy *p, struct slice local_part, char *out, size_t out_len)
{
	(void)p;
	if (!policy_local_part_safe(local_part) || local_part.len >= out_len)
		return -1;
	for (size_t i = 0; i < local_part.len; i++)
		out[i] = (char)slice_ascii_lower(local_part.ptr[i]);
	out[local_part.len] = '\0';
	return 0;
}
