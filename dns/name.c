/* dns/name.c - domain names in wire form; see name.h. */
#include "dns/name.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define DNS_NAME_IP_TEXT_MAX 64u   /* an IP address in text, with room to spare */

_Static_assert(DNS_NAME_TEXT_MAX - 1 + 2 <= DNS_NAME_LEN_MAX + 1,
	"253 octets of text make at most 255 octets of wire");

static bool
dns_name_char_ok(uint8_t c)
{
	uint8_t l = slice_ascii_lower(c);
	return (l >= 'a' && l <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

int
dns_name_from_text(struct slice text, struct dns_name *out)
{
	if (text.len > 1 && text.ptr[text.len - 1] == '.')
		text.len--;
	if (text.len == 0 || text.len > DNS_NAME_TEXT_MAX - 1)
		return -EINVAL;
	size_t w = 0;
	size_t label_start = 0;
	/* wire[w] is the length octet of the label being copied. */
	out->wire[w++] = 0;
	for (size_t i = 0; i <= text.len; i++) {
		if (i == text.len || text.ptr[i] == '.') {
			size_t label_len = i - label_start;
			if (label_len == 0 || label_len > DNS_LABEL_LEN_MAX)
				return -EINVAL;
			out->wire[w - label_len - 1] = (uint8_t)label_len;
			out->wire[w++] = 0;
			label_start = i + 1;
			continue;
		}
		if (!dns_name_char_ok(text.ptr[i]))
			return -EINVAL;
		out->wire[w++] = slice_ascii_lower(text.ptr[i]);
	}
	ASSERT(w <= DNS_NAME_LEN_MAX);
	out->len = (uint16_t)w;
	return 0;
}

int
dns_name_from_wire(const uint8_t *wire, size_t len, struct dns_name *out)
{
	if (len == 0 || len > DNS_NAME_LEN_MAX)
		return -EBADMSG;
	size_t i = 0;
	/* Each label: a length octet of 1..63 and its octets, until the root label. */
	for (uint32_t labels = 0; labels <= DNS_NAME_LEN_MAX / 2; labels++) {
		uint8_t l = wire[i];
		if (l == 0)
			break;
		if (l > DNS_LABEL_LEN_MAX || i + 1 + l >= len)
			return -EBADMSG;
		out->wire[i] = l;
		for (size_t j = 1; j <= l; j++)
			out->wire[i + j] = slice_ascii_lower(wire[i + j]);
		i += 1u + l;
	}
	if (i != len - 1 || wire[i] != 0)
		return -EBADMSG;
	out->wire[i] = 0;
	out->len = (uint16_t)len;
	return 0;
}

size_t
dns_name_to_text(const struct dns_name *n, char *out, size_t cap)
{
	ASSERT(cap >= DNS_NAME_TEXT_MAX);
	ASSERT(n->len >= 1);
	if (dns_name_is_root(n)) {
		memcpy(out, ".", 2);
		return 1;
	}
	size_t o = 0;
	size_t i = 0;
	while (i < n->len && n->wire[i] != 0) {
		uint8_t l = n->wire[i];
		ASSERT(i + 1u + l < n->len);
		if (o > 0)
			out[o++] = '.';
		for (size_t j = 1; j <= l; j++) {
			if (!dns_name_char_ok(n->wire[i + j])) {
				out[0] = '\0';
				return 0;
			}
			out[o++] = (char)n->wire[i + j];
		}
		i += 1u + l;
	}
	ASSERT(o < cap);
	out[o] = '\0';
	return o;
}

bool
dns_name_is_under(const struct dns_name *n, const struct dns_name *parent)
{
	if (parent->len > n->len)
		return false;
	/* Walk n's labels until the rest is as long as parent: a name boundary is needed. */
	size_t i = 0;
	while (n->len - i > parent->len) {
		ASSERT(n->wire[i] != 0);
		i += 1u + n->wire[i];
	}
	return n->len - i == parent->len && memcmp(n->wire + i, parent->wire, parent->len) == 0;
}

static size_t
dns_name_put_label(uint8_t *wire, size_t w, const char *text, size_t len)
{
	wire[w] = (uint8_t)len;
	memcpy(wire + w + 1, text, len);
	return w + 1 + len;
}

void
dns_name_reverse(int family, const uint8_t *addr, struct dns_name *out)
{
	static const char hex[] = "0123456789abcdef";
	size_t w = 0;
	if (family == AF_INET) {
		for (int i = 3; i >= 0; i--) {
			char digits[4];
			int n = snprintf(digits, sizeof(digits), "%u", addr[i]);
			w = dns_name_put_label(out->wire, w, digits, (size_t)n);
		}
		w = dns_name_put_label(out->wire, w, "in-addr", 7);
	} else {
		ASSERT(family == AF_INET6);
		for (int i = 15; i >= 0; i--) {
			w = dns_name_put_label(out->wire, w, &hex[addr[i] & 0x0f], 1);
			w = dns_name_put_label(out->wire, w, &hex[addr[i] >> 4], 1);
		}
		w = dns_name_put_label(out->wire, w, "ip6", 3);
	}
	w = dns_name_put_label(out->wire, w, "arpa", 4);
	out->wire[w++] = 0;
	out->len = (uint16_t)w;
}

int
dns_name_parse_ip(struct slice text, uint8_t addr[16])
{
	char buf[DNS_NAME_IP_TEXT_MAX];
	if (text.len == 0 || text.len >= sizeof(buf))
		return 0;
	/* Host names are the common case: an IPv4 address is digits and dots, an IPv6 one has a
	 * colon; anything else is refused before inet_pton. */
	bool colon = memchr(text.ptr, ':', text.len) != NULL;
	for (size_t i = 0; i < text.len && !colon; i++) {
		if ((text.ptr[i] < '0' || text.ptr[i] > '9') && text.ptr[i] != '.')
			return 0;
	}
	memcpy(buf, text.ptr, text.len);
	buf[text.len] = '\0';
	memset(addr, 0, 16);
	if (inet_pton(AF_INET, buf, addr) == 1)
		return AF_INET;
	if (inet_pton(AF_INET6, buf, addr) == 1)
		return AF_INET6;
	return 0;
}
