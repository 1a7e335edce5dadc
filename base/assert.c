/* base/assert.c - the one place an assertion failure ends the process. */
#include "base/assert.h"

#include <stdio.h>
#include <stdlib.h>

_Noreturn void
assert_fail(const char *cond, const char *file, int line, const char *func)
{
	fprintf(stderr, "ringmta: assertion failed: %s (%s:%d, %s)\n", cond, file, line, func);
	abort();
}
