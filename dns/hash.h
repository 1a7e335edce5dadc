/* dns/hash.h - SipHash-1-3 of (type, name) under a secret key, for the resolver's tables.
 *
 * Domain names come from senders and recipients, so a table keyed by them must not let anyone
 * choose colliding names: the key is drawn at random per resolver. Pure; no allocation. */
#ifndef RINGMTA_DNS_HASH_H
#define RINGMTA_DNS_HASH_H
#include <stdint.h>

#include "dns/name.h"

#define DNS_HASH_KEY_LEN 16u

uint64_t dns_hash_name(const uint8_t key[DNS_HASH_KEY_LEN], uint16_t type,
	const struct dns_name *name);
#endif
