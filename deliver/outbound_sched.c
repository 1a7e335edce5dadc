/* deliver/outbound_sched.c - limits and feedback of one destination; see outbound_sched.h. */
#include "deliver/outbound_sched.h"

#include <string.h>

#include "base/assert.h"

void
outbound_sched_dest_init(struct outbound_sched_dest *d, const struct outbound_sched_limits *lim)
{
	ASSERT(lim->concurrency >= 1);
	ASSERT(lim->recipients >= 1);
	ASSERT(lim->reuse >= 1);
	memset(d, 0, sizeof(*d));
	d->lim = *lim;
	d->window = lim->concurrency < OUTBOUND_SCHED_WINDOW_INITIAL ? lim->concurrency
		: OUTBOUND_SCHED_WINDOW_INITIAL;
}

bool
outbound_sched_suspended(struct outbound_sched_dest *d, uint64_t now_ms)
{
	if (d->suspended_until_ms == 0)
		return false;
	if (now_ms < d->suspended_until_ms)
		return true;
	d->suspended_until_ms = 0;   /* tried again, one connection first */
	d->window = 1;
	d->fail_streak = 0;
	return false;
}

bool
outbound_sched_may_connect(struct outbound_sched_dest *d, uint64_t now_ms, uint32_t shard_conns,
	uint32_t shard_limit)
{
	if (outbound_sched_suspended(d, now_ms))
		return false;
	return d->conns < d->window && shard_conns < shard_limit;
}

void
outbound_sched_conn_opened(struct outbound_sched_dest *d)
{
	d->conns++;
	ASSERT(d->conns <= d->lim.concurrency);
}

void
outbound_sched_conn_closed(struct outbound_sched_dest *d)
{
	ASSERT(d->conns > 0);
	d->conns--;
}

uint64_t
outbound_sched_txn_wait_ms(const struct outbound_sched_dest *d, uint64_t now_ms)
{
	uint64_t now_us = now_ms * 1000u;
	if (d->lim.rate == 0 || d->next_txn_us <= now_us)
		return 0;
	return (d->next_txn_us - now_us + 999u) / 1000u;
}

void
outbound_sched_txn_started(struct outbound_sched_dest *d, uint64_t now_ms)
{
	if (d->lim.rate == 0)
		return;
	uint64_t now_us = now_ms * 1000u;
	uint64_t from = d->next_txn_us > now_us ? d->next_txn_us : now_us;
	d->next_txn_us = from + OUTBOUND_SCHED_US_PER_S / d->lim.rate;
}

void
outbound_sched_success(struct outbound_sched_dest *d)
{
	d->fail_streak = 0;
	if (d->window >= d->lim.concurrency)
		return;
	if (++d->credit >= d->window) {
		d->window++;
		d->credit = 0;
	}
}

bool
outbound_sched_failure(struct outbound_sched_dest *d, uint64_t now_ms, uint64_t retry_ms)
{
	d->credit = 0;
	if (d->window > 1)
		d->window--;
	d->fail_streak++;
	if (d->fail_streak < d->window)
		return false;
	d->suspended_until_ms = now_ms + (retry_ms > 0 ? retry_ms : 1u);
	d->fail_streak = 0;
	d->suspensions++;
	return true;
}

uint32_t
outbound_sched_share(uint32_t limit, uint32_t shards, uint32_t shard)
{
	ASSERT(shards > 0);
	ASSERT(shard < shards);
	uint32_t share = limit / shards + (shard < limit % shards ? 1u : 0u);
	return share > 0 ? share : 1u;
}
