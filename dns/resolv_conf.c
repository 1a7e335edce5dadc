/* dns/resolv_conf.c - nameserver lines and timeout/attempts options; see resolv_conf.h. */
#include "dns/resolv_conf.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "dns/name.h"

static bool
dns_rc_blank(uint8_t c)
{
	return c == ' ' || c == '\t' || c == '\r';
}

/* The next blank-separated word of *rest; false at the end of the line. */
static bool
dns_rc_word(struct slice *rest, struct slice *word)
{
	size_t i = 0;
	while (i < rest->len && dns_rc_blank(rest->ptr[i]))
		i++;
	size_t start = i;
	while (i < rest->len && !dns_rc_blank(rest->ptr[i]))
		i++;
	*word = slice_sub(*rest, start, i - start);
	*rest = slice_skip(*rest, i);
	return word->len > 0;
}

/* "name:n" with n decimal; n is clamped to max. */
static bool
dns_rc_option(struct slice word, struct slice name, uint32_t max, uint32_t *out)
{
	if (!slice_starts_with(word, name))
		return false;
	struct slice digits = slice_skip(word, name.len);
	if (digits.len == 0)
		return false;
	uint32_t v = 0;
	for (size_t i = 0; i < digits.len; i++) {
		if (digits.ptr[i] < '0' || digits.ptr[i] > '9')
			return false;
		v = v * 10 + (uint32_t)(digits.ptr[i] - '0');
		if (v > max)
			v = max;
	}
	*out = v;
	return true;
}

void
dns_resolv_conf_options(struct slice text, struct dns_resolv_conf *out)
{
	struct slice word;
	while (dns_rc_word(&text, &word)) {
		uint32_t v;
		if (dns_rc_option(word, SLICE_LIT("timeout:"), CONFIG_DNS_TIMEOUT_MAX_S, &v))
			out->timeout_s = v > 0 ? v : 1;
		else if (dns_rc_option(word, SLICE_LIT("attempts:"), CONFIG_DNS_ATTEMPTS_MAX, &v))
			out->attempts = v > 0 ? v : 1;
	}
}

static void
dns_rc_nameserver(struct slice rest, struct dns_resolv_conf *out)
{
	struct slice word;
	if (!dns_rc_word(&rest, &word) || out->server_count == CONFIG_DNS_SERVERS_MAX)
		return;
	const uint8_t *pct = memchr(word.ptr, '%', word.len);
	if (pct != NULL)
		word.len = (size_t)(pct - word.ptr);   /* fe80::1%eth0: the scope is not kept */
	uint8_t addr[16];
	int family = dns_name_parse_ip(word, addr);
	if (family == 0)
		return;
	struct config_addr *a = &out->servers[out->server_count];
	memset(a, 0, sizeof(*a));
	if (family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&a->sa;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(CONFIG_DNS_PORT_DEFAULT);
		memcpy(&sin->sin_addr, addr, 4);
		a->sa_len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&a->sa;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(CONFIG_DNS_PORT_DEFAULT);
		memcpy(&sin6->sin6_addr, addr, 16);
		a->sa_len = sizeof(*sin6);
	}
	out->server_count++;
}

void
dns_resolv_conf_parse(struct slice text, struct dns_resolv_conf *out)
{
	memset(out, 0, sizeof(*out));
	while (text.len > 0) {
		const uint8_t *lf = memchr(text.ptr, '\n', text.len);
		size_t n = lf == NULL ? text.len : (size_t)(lf - text.ptr);
		struct slice line = slice_sub(text, 0, n);
		text = slice_skip(text, lf == NULL ? n : n + 1);
		struct slice word;
		if (!dns_rc_word(&line, &word))
			continue;
		if (slice_eq(word, SLICE_LIT("nameserver")))
			dns_rc_nameserver(line, out);
		else if (slice_eq(word, SLICE_LIT("options")))
			dns_resolv_conf_options(line, out);
	}
}

int
dns_resolv_conf_read(const char *path, struct dns_resolv_conf *out)
{
	static char buf[DNS_RESOLV_CONF_SIZE_MAX];   /* start-up only, one thread */
	memset(out, 0, sizeof(*out));
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	size_t len = 0;
	for (;;) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int rc = -errno;
			close(fd);
			return rc;
		}
		if (n == 0 || (len += (size_t)n) == sizeof(buf))
			break;
	}
	close(fd);
	dns_resolv_conf_parse(slice_make(buf, len), out);
	return 0;
}
