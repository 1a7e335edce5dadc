/* queue/reply_cache.h - the text of recent attempts' replies, for `ringmta queue list`.
 *
 * The index keeps each recipient's last reply code and status at no cost (queue/index.h); the
 * text ("451 4.7.1 greylisted, try later", "connect to ...: Connection refused") would cost
 * octets per recipient, so it lives here instead: a table of REPLY_CACHE_SLOTS slots of
 * REPLY_CACHE_TEXT_MAX octets, direct-mapped by (queue id, recipient), whatever the queue's
 * depth (REPLY_CACHE_SLOTS * sizeof(struct reply_cache_slot) per shard, 0 per recipient). A newer
 * reply whose key maps to the same slot replaces an older one: a listing then shows the code
 * and status alone for that recipient. In memory only; owned by one shard; no I/O. */
#ifndef RINGMTA_QUEUE_REPLY_CACHE_H
#define RINGMTA_QUEUE_REPLY_CACHE_H
#include <stdint.h>

#include "base/slice.h"

#define REPLY_CACHE_SLOTS    4096u   /* a power of two */
#define REPLY_CACHE_TEXT_MAX  116u   /* octets kept of a reply (a longer one is cut) */
_Static_assert((REPLY_CACHE_SLOTS & (REPLY_CACHE_SLOTS - 1)) == 0, "a power of two");

struct reply_cache_slot {
	uint64_t qid;                    /* 0: empty */
	uint16_t rcpt;
	uint8_t len;
	char text[REPLY_CACHE_TEXT_MAX + 1];
};
_Static_assert(sizeof(struct reply_cache_slot) == 128, "two slots per 256 octets");

struct reply_cache;

/* Returns the empty table, or NULL when memory is short. */
struct reply_cache *reply_cache_new(void);
void reply_cache_free(struct reply_cache *rc);

/* Keeps text as the last reply of recipient rcpt of qid (qid is not 0). */
void reply_cache_put(struct reply_cache *rc, uint64_t qid, uint32_t rcpt, struct slice text);

/* The last reply kept for (qid, rcpt), or an empty slice (never kept, or replaced since).
 * Valid until the next put. */
struct slice reply_cache_get(const struct reply_cache *rc, uint64_t qid, uint32_t rcpt);
#endif
