/* queue/crc32c.h - CRC32C (Castagnoli), the checksum of spool records.
 *
 * Standard initial value and final xor (RFC 3720 B.4): crc32c_update(0, "123456789", 9) ==
 * 0xE3069283, and crc32c_update(crc32c_update(0, a, n), b, m) is the CRC of a then b. Uses the
 * SSE4.2 crc32 instruction when the CPU has it (asked on each call: a load and a test, no shared
 * state written), in three interleaved streams for inputs of 1536 bytes and more, and a table
 * otherwise; the tests check that all agree. Every message body passes through here once, at
 * commit: about 11 GB/s by instruction, 0.4 GB/s by table (perf figures in the commit log).
 * Pure functions: any thread may call them at any time. */
#ifndef RINGMTA_QUEUE_CRC32C_H
#define RINGMTA_QUEUE_CRC32C_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Continues crc (0 to start) over the n bytes at p (p may be NULL when n is 0); returns the
 * CRC of everything so far. */
uint32_t crc32c_update(uint32_t crc, const void *p, size_t n);

/* The same computed with the table only (the fallback; the tests compare the two). */
uint32_t crc32c_update_table(uint32_t crc, const void *p, size_t n);

/* The same with the SSE4.2 instruction; call it only when crc32c_hw_available(). */
uint32_t crc32c_update_hw(uint32_t crc, const void *p, size_t n);

/* Whether this CPU has SSE4.2, so that crc32c_update uses the instruction. */
bool crc32c_hw_available(void);
#endif
