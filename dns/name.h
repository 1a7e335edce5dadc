/* dns/name.h - domain names in wire form (RFC 1035 3.1), lower-cased: from text, to text, PTR.
 *
 * A struct dns_name holds the uncompressed wire form (length-prefixed labels ending with the
 * root label), ASCII letters folded to lower case, so that two names compare with memcmp
 * (RFC 4343: DNS names compare case-insensitively). Pure functions, no I/O, no allocation.
 *
 * Text accepted from callers (recipient domains, MX targets): letters, digits, '-' and '_'
 * (for _25._tcp TLSA owners), labels of 1..63 octets, at most 253 octets of text; a trailing dot
 * is allowed. Anything else is refused: such a name cannot be a mail domain. */
#ifndef RINGMTA_DNS_NAME_H
#define RINGMTA_DNS_NAME_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/slice.h"

#define DNS_NAME_LEN_MAX   255u   /* RFC 1035 2.3.4: octets of the wire form */
#define DNS_LABEL_LEN_MAX   63u   /* RFC 1035 2.3.4 */
#define DNS_NAME_TEXT_MAX  254u   /* 253 octets of text (no trailing dot) and a NUL */
#define DNS_PTR_NAME_TEXT_MAX 73u /* "1.0...0.ip6.arpa" (72 octets) and a NUL */

struct dns_name {
	uint16_t len;                    /* octets of wire, 1 (the root) .. DNS_NAME_LEN_MAX */
	uint8_t wire[DNS_NAME_LEN_MAX];
};

/* Parses host-name text into out (lower-cased). Returns 0, or -EINVAL if the text is not a
 * host name as described above (the root "." is refused too). */
int dns_name_from_text(struct slice text, struct dns_name *out);

/* Checks and copies an uncompressed wire name (as ldns hands them out) into out, lower-cased.
 * Returns 0, or -EBADMSG if the labels do not end with the root label exactly at len. */
int dns_name_from_wire(const uint8_t *wire, size_t len, struct dns_name *out);

/* Writes the name as text without the trailing dot ("." for the root), NUL-terminated, into
 * out[cap] with cap >= DNS_NAME_TEXT_MAX. Returns the length, or 0 if a label holds an octet
 * other than a letter, digit, '-' or '_' (such a name is no host name and is not written). */
size_t dns_name_to_text(const struct dns_name *n, char *out, size_t cap);

static inline bool
dns_name_eq(const struct dns_name *a, const struct dns_name *b)
{
	return a->len == b->len && memcmp(a->wire, b->wire, a->len) == 0;
}

/* True if n is sub, or a name below it (RFC 2308 5: the SOA's owner must enclose the name). */
bool dns_name_is_under(const struct dns_name *n, const struct dns_name *parent);

/* True if the name is the root ("."), as in a null MX "0 ." (RFC 7505). */
static inline bool
dns_name_is_root(const struct dns_name *n)
{
	return n->len == 1;
}

/* The PTR owner of an address: family AF_INET (4 octets) or AF_INET6 (16): "4.3.2.1.in-addr.arpa"
 * or the 32 nibbles of ip6.arpa (RFC 3596 2.5). */
void dns_name_reverse(int family, const uint8_t *addr, struct dns_name *out);

/* Parses an IPv4 or IPv6 address in text (no brackets). Returns AF_INET or AF_INET6 and fills
 * addr[16] (IPv4 in the first 4 octets), or 0 if the text is no address. */
int dns_name_parse_ip(struct slice text, uint8_t addr[16]);
#endif
