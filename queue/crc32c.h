/* queue/crc32c.h - CRC32C (Castagnoli), the checksum of spool records.
 *
 * Standard initial value and final xor: crc32c_update(0, "123456789", 9) == 0xE3069283. Uses the
 * SSE4.2 crc32 instruction when the CPU has it (checked once), a table otherwise; both agree. */
#ifndef RINGMTA_QUEUE_CRC32C_H
#define RINGMTA_QUEUE_CRC32C_H
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Continues crc (0 to start) over n bytes at p. */
uint32_t crc32c_update(uint32_t crc, const void *p, size_t n);

/* The same with the table only (tests compare the two). */
uint32_t crc32c_update_table(uint32_t crc, const void *p, size_t n);

bool crc32c_hw_available(void);
#endif
