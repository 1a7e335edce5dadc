/* base/slice.h - borrowed byte ranges (pointer + length), passed by value.
 *
 * A slice never owns its bytes: whoever hands one out says which buffer it points into and until
 * when it stays valid. Slices never go to str* functions; SLICE_LIT makes one from a literal. */
#ifndef RINGMTA_BASE_SLICE_H
#define RINGMTA_BASE_SLICE_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "base/assert.h"

struct slice {
	const uint8_t *ptr;
	size_t len;
};

#define SLICE_LIT(s) ((struct slice){ .ptr = (const uint8_t *)(s), .len = sizeof(s) - 1 })

static inline struct slice
slice_make(const void *ptr, size_t len)
{
	return (struct slice){ .ptr = (const uint8_t *)ptr, .len = len };
}

static inline struct slice
slice_sub(struct slice s, size_t offset, size_t len)
{
	ASSERT(offset <= s.len);
	ASSERT(len <= s.len - offset);
	return (struct slice){ .ptr = s.ptr + offset, .len = len };
}

/* A domain without its one final dot ("example.org." is "example.org"); "." stays as it is. */
static inline struct slice
slice_strip_final_dot(struct slice s)
{
	if (s.len > 1 && s.ptr[s.len - 1] == '.')
		s.len--;
	return s;
}

/* The part of s after its first n bytes. */
static inline struct slice
slice_skip(struct slice s, size_t n)
{
	return slice_sub(s, n, s.len - n);
}

static inline bool
slice_eq(struct slice a, struct slice b)
{
	return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

static inline bool
slice_starts_with(struct slice s, struct slice prefix)
{
	return s.len >= prefix.len && (prefix.len == 0 || memcmp(s.ptr, prefix.ptr, prefix.len) == 0);
}

static inline uint8_t
slice_ascii_lower(uint8_t c)
{
	return (c >= 'A' && c <= 'Z') ? (uint8_t)(c + ('a' - 'A')) : c;
}

/* ASCII case-insensitive equality (SMTP verbs, keywords and domains). */
static inline bool
slice_eq_nocase(struct slice a, struct slice b)
{
	if (a.len != b.len)
		return false;
	for (size_t i = 0; i < a.len; i++) {
		if (slice_ascii_lower(a.ptr[i]) != slice_ascii_lower(b.ptr[i]))
			return false;
	}
	return true;
}

static inline bool
slice_starts_with_nocase(struct slice s, struct slice prefix)
{
	return s.len >= prefix.len && slice_eq_nocase(slice_sub(s, 0, prefix.len), prefix);
}
#endif
