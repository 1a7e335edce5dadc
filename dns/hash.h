/* dns/hash.h - SipHash-1-3 of a name under a secret key, and the mix of a type into it.
 *
 * Domain names come from senders and recipients, so a table keyed by them must not let anyone
 * choose colliding names: the key is drawn at random per resolver. A name is hashed once and
 * the hash serves every (name, type) table through dns_hash_mix. Pure; no allocation. */
#ifndef RINGMTA_DNS_HASH_H
#define RINGMTA_DNS_HASH_H
#include <stdint.h>

#include "dns/name.h"

#define DNS_HASH_KEY_LEN 16u

uint64_t dns_hash_name(const uint8_t key[DNS_HASH_KEY_LEN], const struct dns_name *name);

/* The hash of (name, type) from the name's: a bijective finaliser (splitmix64) of the two, so
 * names that do not collide under the key do not collide for any one type. */
static inline uint64_t
dns_hash_mix(uint64_t name_hash, uint16_t type)
{
	uint64_t x = name_hash ^ ((uint64_t)type * 0x9e3779b97f4a7c15ull);
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}
#endif
