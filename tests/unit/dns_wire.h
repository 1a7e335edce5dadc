/* tests/unit/dns_wire.h - writes DNS messages octet by octet, for tests of hostile answers.
 *
 * Header-only helpers shared by the dns_* unit tests: a message under construction, names
 * written plainly or as compression pointers, records whose RDLENGTH is filled in at the end. */
#ifndef RINGMTA_TESTS_DNS_WIRE_H
#define RINGMTA_TESTS_DNS_WIRE_H
#include <stdint.h>
#include <string.h>

#define WIRE_CAP 70000u

struct wire {
	uint8_t b[WIRE_CAP];
	size_t len;
};

static inline void
wire_u8(struct wire *w, uint32_t v)
{
	w->b[w->len++] = (uint8_t)v;
}

static inline void
wire_u16(struct wire *w, uint32_t v)
{
	wire_u8(w, v >> 8);
	wire_u8(w, v);
}

static inline void
wire_u32(struct wire *w, uint32_t v)
{
	wire_u16(w, v >> 16);
	wire_u16(w, v);
}

static inline void
wire_bytes(struct wire *w, const void *p, size_t n)
{
	memcpy(w->b + w->len, p, n);
	w->len += n;
}

/* "a.b.test" as labels and the root; "." is the root alone. */
static inline void
wire_name(struct wire *w, const char *text)
{
	if (strcmp(text, ".") != 0) {
		const char *p = text;
		while (*p != '\0') {
			const char *dot = strchr(p, '.');
			size_t n = dot == NULL ? strlen(p) : (size_t)(dot - p);
			wire_u8(w, (uint32_t)n);
			wire_bytes(w, p, n);
			p += n;
			if (*p == '.')
				p++;
		}
	}
	wire_u8(w, 0);
}

static inline void
wire_ptr(struct wire *w, size_t offset)
{
	wire_u16(w, 0xc000u | (uint32_t)offset);
}

#define WIRE_QR 0x8000u
#define WIRE_AA 0x0400u
#define WIRE_TC 0x0200u
#define WIRE_RD 0x0100u
#define WIRE_RA 0x0080u
#define WIRE_AD 0x0020u

static inline void
wire_header(struct wire *w, uint16_t id, uint32_t flags, uint32_t qd, uint32_t an, uint32_t ns,
	uint32_t ar)
{
	w->len = 0;
	wire_u16(w, id);
	wire_u16(w, flags);
	wire_u16(w, qd);
	wire_u16(w, an);
	wire_u16(w, ns);
	wire_u16(w, ar);
}

static inline void
wire_question(struct wire *w, const char *name, uint32_t type)
{
	wire_name(w, name);
	wire_u16(w, type);
	wire_u16(w, 1);
}

/* The fixed part of a record after its owner; returns where RDLENGTH goes. */
static inline size_t
wire_rr_fixed(struct wire *w, uint32_t type, uint32_t ttl)
{
	wire_u16(w, type);
	wire_u16(w, 1);
	wire_u32(w, ttl);
	size_t at = w->len;
	wire_u16(w, 0);
	return at;
}

static inline size_t
wire_rr(struct wire *w, const char *owner, uint32_t type, uint32_t ttl)
{
	wire_name(w, owner);
	return wire_rr_fixed(w, type, ttl);
}

/* Sets RDLENGTH to what was written since wire_rr returned at. */
static inline void
wire_rr_end(struct wire *w, size_t at)
{
	size_t n = w->len - at - 2;
	w->b[at] = (uint8_t)(n >> 8);
	w->b[at + 1] = (uint8_t)n;
}

static inline void
wire_a(struct wire *w, const char *owner, uint32_t ttl, uint8_t a, uint8_t b, uint8_t c, uint8_t d)
{
	size_t at = wire_rr(w, owner, 1, ttl);
	uint8_t addr[4] = { a, b, c, d };
	wire_bytes(w, addr, 4);
	wire_rr_end(w, at);
}

static inline void
wire_cname(struct wire *w, const char *owner, uint32_t ttl, const char *target)
{
	size_t at = wire_rr(w, owner, 5, ttl);
	wire_name(w, target);
	wire_rr_end(w, at);
}

static inline void
wire_mx(struct wire *w, const char *owner, uint32_t ttl, uint32_t pref, const char *target)
{
	size_t at = wire_rr(w, owner, 15, ttl);
	wire_u16(w, pref);
	wire_name(w, target);
	wire_rr_end(w, at);
}

static inline void
wire_soa(struct wire *w, const char *owner, uint32_t ttl, uint32_t minimum)
{
	size_t at = wire_rr(w, owner, 6, ttl);
	wire_name(w, "ns.test");
	wire_name(w, "hostmaster.test");
	wire_u32(w, 1);
	wire_u32(w, 3600);
	wire_u32(w, 600);
	wire_u32(w, 86400);
	wire_u32(w, minimum);
	wire_rr_end(w, at);
}
#endif
