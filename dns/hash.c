/* dns/hash.c - SipHash-1-3 (Aumasson and Bernstein) of a name; see hash.h. */
#include "dns/hash.h"

#include <string.h>

#define DNS_HASH_ROTL(x, b) (((x) << (b)) | ((x) >> (64 - (b))))

struct dns_hash_state {
	uint64_t v0, v1, v2, v3;
};

static void
dns_hash_round(struct dns_hash_state *s)
{
	s->v0 += s->v1;
	s->v1 = DNS_HASH_ROTL(s->v1, 13);
	s->v1 ^= s->v0;
	s->v0 = DNS_HASH_ROTL(s->v0, 32);
	s->v2 += s->v3;
	s->v3 = DNS_HASH_ROTL(s->v3, 16);
	s->v3 ^= s->v2;
	s->v0 += s->v3;
	s->v3 = DNS_HASH_ROTL(s->v3, 21);
	s->v3 ^= s->v0;
	s->v2 += s->v1;
	s->v1 = DNS_HASH_ROTL(s->v1, 17);
	s->v1 ^= s->v2;
	s->v2 = DNS_HASH_ROTL(s->v2, 32);
}

static void
dns_hash_word(struct dns_hash_state *s, uint64_t m)
{
	s->v3 ^= m;
	dns_hash_round(s);
	s->v0 ^= m;
}

static uint64_t
dns_hash_load(const uint8_t *p, size_t n)
{
	uint64_t w = 0;
	memcpy(&w, p, n);   /* little-endian, as SipHash reads its words */
	return w;
}

uint64_t
dns_hash_name(const uint8_t key[DNS_HASH_KEY_LEN], const struct dns_name *name)
{
	uint64_t k0 = dns_hash_load(key, 8), k1 = dns_hash_load(key + 8, 8);
	struct dns_hash_state s = {
		.v0 = k0 ^ 0x736f6d6570736575ull, .v1 = k1 ^ 0x646f72616e646f6dull,
		.v2 = k0 ^ 0x6c7967656e657261ull, .v3 = k1 ^ 0x7465646279746573ull,
	};
	/* The message: the wire name in words, its tail with the length in the top octet (as
	 * SipHash pads). */
	size_t len = name->len;
	size_t full = len & ~(size_t)7;
	for (size_t i = 0; i < full; i += 8)
		dns_hash_word(&s, dns_hash_load(name->wire + i, 8));
	dns_hash_word(&s, dns_hash_load(name->wire + full, len - full) | ((uint64_t)len << 56));
	s.v2 ^= 0xff;
	dns_hash_round(&s);
	dns_hash_round(&s);
	dns_hash_round(&s);
	return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}
