/* base/assert.h - assertions that stay on in release builds.
 *
 * ASSERT is for programmer errors only: never for bytes from the network, disk contents or kernel
 * results, which are validated and handled. ASSERT_DEBUG is compiled out unless RINGMTA_DEBUG. */
#ifndef RINGMTA_BASE_ASSERT_H
#define RINGMTA_BASE_ASSERT_H

_Noreturn void assert_fail(const char *cond, const char *file, int line, const char *func);

#define ASSERT(cond) ((cond) ? (void)0 : assert_fail(#cond, __FILE__, __LINE__, __func__))
#ifdef RINGMTA_DEBUG
#define ASSERT_DEBUG(cond) ASSERT(cond)
#else
#define ASSERT_DEBUG(cond) ((void)0)
#endif
#define MUST_USE __attribute__((warn_unused_result))
#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))
#endif
