/* conf/route.c - transport_maps, relayhost and destination_policy_file; see route.h. */
#include "conf/route.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/config.h"
#include "proto/smtp_server.h"

#define ROUTE_FILE_SIZE_MAX (16u << 20)   /* 100000 lines of about 160 octets */
#define ROUTE_LINE_LEN_MAX  4096u

_Static_assert(ROUTE_RATE_MAX == CONFIG_DEST_RATE_MAX, "one bound for the rate");

static bool
route_is_blank(uint8_t c)
{
	return c == ' ' || c == '\t';
}

static struct slice
route_trim(struct slice s)
{
	while (s.len > 0 && (route_is_blank(s.ptr[0]) || s.ptr[0] == '\r'))
		s = slice_skip(s, 1);
	while (s.len > 0 && (route_is_blank(s.ptr[s.len - 1]) || s.ptr[s.len - 1] == '\r'))
		s.len--;
	return s;
}

/* The next blank-separated word of *rest. */
static struct slice
route_word(struct slice *rest)
{
	*rest = route_trim(*rest);
	size_t n = 0;
	while (n < rest->len && !route_is_blank(rest->ptr[n]))
		n++;
	struct slice w = slice_sub(*rest, 0, n);
	*rest = slice_skip(*rest, n);
	return w;
}

static uint8_t
route_lower(uint8_t c)
{
	return c >= 'A' && c <= 'Z' ? (uint8_t)(c + 32) : c;
}

/* A host name: labels of letters, digits, '-' and '_' separated by single dots. */
static bool
route_name_valid(struct slice s)
{
	if (s.len == 0 || s.len > ROUTE_NAME_LEN_MAX || s.ptr[0] == '.' || s.ptr[s.len - 1] == '.')
		return false;
	for (size_t i = 0; i < s.len; i++) {
		uint8_t c = route_lower(s.ptr[i]);
		bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_'
			|| (c == '.' && s.ptr[i - 1] != '.');
		if (!ok)
			return false;
	}
	return true;
}

static bool
route_ip_valid(struct slice s)
{
	char buf[64];
	uint8_t addr[16];
	if (s.len == 0 || s.len >= sizeof(buf))
		return false;
	memcpy(buf, s.ptr, s.len);
	buf[s.len] = '\0';
	return inet_pton(AF_INET, buf, addr) == 1 || inet_pton(AF_INET6, buf, addr) == 1;
}

static void
route_copy_lower(char *out, struct slice s)
{
	for (size_t i = 0; i < s.len; i++)
		out[i] = (char)route_lower(s.ptr[i]);
	out[s.len] = '\0';
}

static bool
route_port_parse(struct slice s, uint16_t *out)
{
	uint32_t v = 0;
	if (s.len == 0 || s.len > 5)
		return false;
	for (size_t i = 0; i < s.len; i++) {
		if (s.ptr[i] < '0' || s.ptr[i] > '9')
			return false;
		v = v * 10 + (uint32_t)(s.ptr[i] - '0');
	}
	if (v == 0 || v > 65535)
		return false;
	*out = (uint16_t)v;
	return true;
}

bool
route_hop_parse(struct slice text, struct route_hop *out)
{
	memset(out, 0, sizeof(*out));
	if (slice_starts_with(text, SLICE_LIT("smtp:")))
		text = slice_skip(text, 5);
	struct slice host = text, port = slice_sub(text, 0, 0);
	bool bracketed = text.len > 0 && text.ptr[0] == '[';
	if (bracketed) {
		const uint8_t *close = memchr(text.ptr, ']', text.len);
		if (close == NULL)
			return false;
		size_t at = (size_t)(close - text.ptr);
		host = slice_sub(text, 1, at - 1);
		struct slice after = slice_skip(text, at + 1);
		if (after.len > 0 && (after.ptr[0] != ':' || after.len < 2))
			return false;
		port = after.len > 0 ? slice_skip(after, 1) : after;
	} else {
		const uint8_t *colon = memchr(text.ptr, ':', text.len);
		if (colon != NULL) {
			size_t at = (size_t)(colon - text.ptr);
			host = slice_sub(text, 0, at);
			port = slice_skip(text, at + 1);
			if (port.len == 0)
				return false;
		}
	}
	bool ip = route_ip_valid(host);
	if (!(bracketed && ip) && !(!ip && route_name_valid(host)))
		return false;   /* an IP address needs brackets, as in Postfix */
	if (port.len > 0 && !route_port_parse(port, &out->port))
		return false;
	route_copy_lower(out->host, host);
	out->mx = !bracketed;
	return true;
}

/* tls=none|may|encrypt|verify (smtp_tls_security_level's names). */
static bool
route_tls_parse(struct slice value, uint8_t *out, char *why, size_t why_len)
{
	static const char *const names[] = { [CONFIG_TLS_NONE] = "none", [CONFIG_TLS_MAY] = "may",
		[CONFIG_TLS_ENCRYPT] = "encrypt", [CONFIG_TLS_VERIFY] = "verify" };
	for (uint8_t i = 0; i < ARRAY_LEN(names); i++) {
		if (slice_eq(value, slice_make(names[i], strlen(names[i])))) {
			*out = (uint8_t)(ROUTE_TLS_GIVEN + i);
			return true;
		}
	}
	snprintf(why, why_len, "tls: not none, may, encrypt or verify");
	return false;
}

/* "concurrency=5 recipients=20 messages_per_connection=50 rate=20/s tls=encrypt" */
static bool
route_limits_parse(struct slice rest, struct route_limits *out, char *why, size_t why_len)
{
	static const struct { const char *key; size_t off; uint32_t max; } keys[] = {
		{ "concurrency", offsetof(struct route_limits, concurrency),
			CONFIG_DEST_CONCURRENCY_MAX },
		{ "recipients", offsetof(struct route_limits, recipients), SMTP_RCPT_COUNT_MAX },
		{ "messages_per_connection", offsetof(struct route_limits, messages_per_connection),
			CONFIG_REUSE_LIMIT_MAX },
		{ "rate", offsetof(struct route_limits, rate), ROUTE_RATE_MAX },
	};
	memset(out, 0, sizeof(*out));
	for (uint32_t words = 0; words < (ARRAY_LEN(keys) + 1) * 2; words++) {
		struct slice w = route_word(&rest);
		if (w.len == 0)
			return true;
		const uint8_t *eq = memchr(w.ptr, '=', w.len);
		size_t klen = eq == NULL ? w.len : (size_t)(eq - w.ptr);
		struct slice value = eq == NULL ? slice_sub(w, 0, 0) : slice_skip(w, klen + 1);
		if (slice_eq(slice_sub(w, 0, klen), SLICE_LIT("tls"))) {
			if (!route_tls_parse(value, &out->tls, why, why_len))
				return false;
			continue;
		}
		uint32_t k = 0;
		while (k < ARRAY_LEN(keys) && !slice_eq(slice_sub(w, 0, klen),
			slice_make(keys[k].key, strlen(keys[k].key))))
			k++;
		if (k == ARRAY_LEN(keys)) {
			snprintf(why, why_len, "unknown key %.*s", (int)(klen > 64 ? 64 : klen),
				(const char *)w.ptr);
			return false;
		}
		if (k == 3 && value.len > 2 && value.ptr[value.len - 2] == '/'
			&& value.ptr[value.len - 1] == 's')
			value.len -= 2;
		uint32_t v = 0;
		bool ok = value.len > 0 && value.len <= 6;
		for (size_t i = 0; ok && i < value.len; i++) {
			ok = value.ptr[i] >= '0' && value.ptr[i] <= '9';
			v = v * 10 + (uint32_t)(value.ptr[i] - '0');
		}
		if (!ok || v == 0 || v > keys[k].max) {
			snprintf(why, why_len, "%s: not a number in 1..%u", keys[k].key, keys[k].max);
			return false;
		}
		*(uint32_t *)((char *)out + keys[k].off) = v;
	}
	snprintf(why, why_len, "too many keys");
	return false;
}

static int
route_entry_cmp(const void *a, const void *b)
{
	return strcmp(((const struct route_entry *)a)->name, ((const struct route_entry *)b)->name);
}

/* One non-comment line into e. Returns 0, or -1 with the reason in why. */
static int
route_line_parse(struct slice line, bool policy, struct route_entry *e, char *why,
	size_t why_len)
{
	memset(e, 0, sizeof(*e));
	struct slice rest = line;
	struct slice name = route_word(&rest);
	bool suffix = name.len > 0 && name.ptr[0] == '.';
	struct slice bare = suffix ? slice_skip(name, 1) : name;
	if (!route_name_valid(bare)) {
		snprintf(why, why_len, "not a domain");
		return -1;
	}
	route_copy_lower(e->name, name);
	if (policy)
		return route_limits_parse(rest, &e->limits, why, why_len) ? 0 : -1;
	struct slice hop = route_word(&rest);
	if (!route_hop_parse(hop, &e->hop) || route_trim(rest).len > 0) {
		snprintf(why, why_len, "not a next hop ([host]:port, [host], host:port or host)");
		return -1;
	}
	return 0;
}

int
route_table_parse(struct route_table *t, bool policy, const char *name, struct slice text,
	char *err, size_t err_len)
{
	memset(t, 0, sizeof(*t));
	uint32_t cap = 0;
	uint32_t lineno = 0;
	char why[128];
	while (text.len > 0) {
		lineno++;
		const uint8_t *lf = memchr(text.ptr, '\n', text.len);
		size_t n = lf == NULL ? text.len : (size_t)(lf - text.ptr);
		struct slice line = route_trim(slice_sub(text, 0, n));
		text = slice_skip(text, lf == NULL ? n : n + 1);
		if (n >= ROUTE_LINE_LEN_MAX) {
			snprintf(why, sizeof(why), "line too long");
			goto fail;
		}
		if (line.len == 0 || line.ptr[0] == '#')
			continue;
		if (t->count == ROUTE_ENTRIES_MAX) {
			snprintf(why, sizeof(why), "more than %u entries", ROUTE_ENTRIES_MAX);
			goto fail;
		}
		if (t->count == cap) {
			cap = cap ? cap * 2 : 64;
			struct route_entry *grown = realloc(t->entries, cap * sizeof(*grown));
			if (grown == NULL) {
				snprintf(why, sizeof(why), "out of memory");
				goto fail;
			}
			t->entries = grown;
		}
		if (route_line_parse(line, policy, &t->entries[t->count], why, sizeof(why)) != 0)
			goto fail;
		t->count++;
	}
	qsort(t->entries, t->count, sizeof(*t->entries), route_entry_cmp);
	for (uint32_t i = 1; i < t->count; i++) {
		if (strcmp(t->entries[i - 1].name, t->entries[i].name) == 0) {
			snprintf(err, err_len, "%s: %s is listed twice", name, t->entries[i].name);
			goto fail_free;
		}
	}
	return 0;
fail:
	snprintf(err, err_len, "%s:%u: %s", name, lineno, why);
fail_free:
	free(t->entries);
	memset(t, 0, sizeof(*t));
	return -1;
}

static int
route_table_load(struct route_table *t, bool policy, const char *path, char *err,
	size_t err_len)
{
	memset(t, 0, sizeof(*t));
	if (path[0] == '\0')
		return 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	struct stat st;
	if (fd < 0 || fstat(fd, &st) != 0 || st.st_size > ROUTE_FILE_SIZE_MAX) {
		snprintf(err, err_len, "%s: %s", path, fd < 0 ? strerror(errno) : "too large");
		if (fd >= 0)
			close(fd);
		return -1;
	}
	char *buf = malloc((size_t)st.st_size + 1);
	size_t len = 0;
	while (buf != NULL && len < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + len, (size_t)st.st_size - len);
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	if (buf == NULL || len != (size_t)st.st_size) {
		snprintf(err, err_len, "%s: cannot read", path);
		free(buf);
		return -1;
	}
	int rc = route_table_parse(t, policy, path, slice_make(buf, len), err, err_len);
	free(buf);
	return rc;
}

int
route_init(struct route *r, const struct config *cfg, char *err, size_t err_len)
{
	memset(r, 0, sizeof(*r));
	if (route_table_load(&r->transport, false, cfg->transport_maps, err, err_len) != 0)
		return -1;
	if (route_table_load(&r->policy, true, cfg->destination_policy_file, err, err_len) != 0) {
		route_fini(r);
		return -1;
	}
	size_t rh_len = strlen(cfg->relayhost_name);
	if (rh_len > ROUTE_NAME_LEN_MAX) {
		snprintf(err, err_len, "relayhost: name too long");
		route_fini(r);
		return -1;
	}
	if (rh_len > 0) {
		route_copy_lower(r->relayhost.host, slice_make(cfg->relayhost_name, rh_len));
		r->relayhost.port = cfg->relayhost_port;
		r->relayhost.mx = cfg->relayhost_mx;
	}
	return 0;
}

void
route_fini(struct route *r)
{
	free(r->transport.entries);
	free(r->policy.entries);
	memset(r, 0, sizeof(*r));
}

bool
route_policy_wants_tls(const struct route *r)
{
	for (uint32_t i = 0; i < r->policy.count; i++) {
		if (r->policy.entries[i].limits.tls > ROUTE_TLS_GIVEN + CONFIG_TLS_NONE)
			return true;
	}
	return false;
}

static const struct route_entry *
route_find(const struct route_table *t, struct slice name, bool suffix)
{
	char key[ROUTE_NAME_LEN_MAX + 2];
	if (t->count == 0 || name.len > ROUTE_NAME_LEN_MAX)
		return NULL;
	size_t at = 0;
	if (suffix)
		key[at++] = '.';
	route_copy_lower(key + at, name);
	uint32_t lo = 0, hi = t->count;
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;
		int c = strcmp(t->entries[mid].name, key);
		if (c == 0)
			return &t->entries[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

/* The exact entry for name, else the ".parent" entry of its nearest parent. */
static const struct route_entry *
route_match(const struct route_table *t, struct slice name, size_t *specificity)
{
	const struct route_entry *e = route_find(t, name, false);
	if (e != NULL) {
		*specificity = name.len + 1;
		return e;
	}
	for (size_t i = 0; i < name.len; i++) {
		if (name.ptr[i] != '.')
			continue;
		struct slice parent = slice_skip(name, i + 1);
		e = route_find(t, parent, true);
		if (e != NULL) {
			*specificity = parent.len;
			return e;
		}
	}
	return NULL;
}

bool
route_next_hop(const struct route *r, struct slice domain, struct route_hop *out)
{
	memset(out, 0, sizeof(*out));
	if (domain.len >= 2 && domain.ptr[0] == '[' && domain.ptr[domain.len - 1] == ']') {
		struct slice ip = slice_sub(domain, 1, domain.len - 2);
		if (slice_starts_with(ip, SLICE_LIT("IPv6:")) || slice_starts_with(ip, SLICE_LIT("ipv6:")))
			ip = slice_skip(ip, 5);
		if (!route_ip_valid(ip))
			return false;
		route_copy_lower(out->host, ip);
		return true;   /* RFC 5321 4.1.3: an address literal is the host itself */
	}
	if (!route_name_valid(domain))
		return false;
	size_t spec;
	const struct route_entry *e = route_match(&r->transport, domain, &spec);
	if (e != NULL) {
		*out = e->hop;
		return true;
	}
	if (r->relayhost.host[0] != '\0') {
		*out = r->relayhost;
		return true;
	}
	route_copy_lower(out->host, domain);
	out->mx = true;
	return true;
}

const struct route_limits *
route_policy_find(const struct route *r, struct slice domain, const struct slice *names,
	uint32_t name_count)
{
	const struct route_limits *best = NULL;
	size_t best_spec = 0, spec = 0;
	const struct route_entry *e = route_match(&r->policy, domain, &spec);
	if (e != NULL) {
		best = &e->limits;
		best_spec = spec;
	}
	for (uint32_t i = 0; i < name_count; i++) {
		e = route_match(&r->policy, names[i], &spec);
		if (e != NULL && spec > best_spec) {
			best = &e->limits;
			best_spec = spec;
		}
	}
	return best;
}
