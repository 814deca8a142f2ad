/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * expert_cache.h - which routed experts of a layer the GPU keeps in its
 * own memory (libmoex internal; the "hip" backend, moe_hip.c, applies it).
 *
 * A layer has n_slots expert slots in device memory; the other experts
 * are read by the GPU straight from pinned host memory (zero copy). The
 * router's counts of every run feed a heat per expert (a decayed count of
 * the tokens routed to it); after a run, plan() swaps the hottest expert
 * without a slot into the slot of the coldest one with a slot, when the
 * first is clearly hotter (MOEX_XCACHE_HYST), a few per run. The caller
 * copies the expert into the slot (asynchronously) and only then reads it
 * there. Pure bookkeeping: no GPU calls, safe from any thread.
 */
#ifndef LIBMOEX_EXPERT_CACHE_H
#define LIBMOEX_EXPERT_CACHE_H

#include <pthread.h>
#include <stdint.h>

/* heat = heat * DECAY + tokens routed, after every run */
#define MOEX_XCACHE_DECAY	0.9
/* a swap needs the newcomer's heat above (1 + HYST) times the leaver's */
#define MOEX_XCACHE_HYST	0.25
/* swaps planned after one run, at most */
#define MOEX_XCACHE_MAX_SWAPS	2

/* What the cache saw: hits and misses count (run, expert) pairs. */
struct moex_xcache_stats {
	uint64_t runs;
	uint64_t hits;		/* experts a run used from a slot */
	uint64_t misses;	/* experts a run read from host memory */
	uint64_t stream_bytes;	/* bytes of the missed experts */
	uint64_t fills;		/* experts copied into a slot */
	uint64_t fill_bytes;
};

/* One swap: expert in takes slot from expert out. */
struct moex_xswap {
	uint32_t slot;
	int32_t in;
	int32_t out;
};

struct moex_xcache {
	pthread_mutex_t lock;	/* protects everything below */
	uint32_t n_experts;
	uint32_t n_slots;
	uint64_t expert_bytes;
	double *heat;		/* [n_experts] */
	int32_t *slot_of;	/* [n_experts] its slot, or -1 */
	int32_t *held;		/* [n_slots] the expert given the slot, or -1 */
	struct moex_xcache_stats st;
};

/* Slots 0..n_slots-1 start with experts 0..n_slots-1. -EINVAL, -ENOMEM. */
int moex_xcache_init(struct moex_xcache *c, uint32_t n_experts,
		     uint32_t n_slots, uint64_t expert_bytes);
void moex_xcache_fini(struct moex_xcache *c);

/*
 * One run's counts[n_experts]; used[e] != 0 when the run read expert e
 * from its slot (what the caller's table said when the run was queued).
 */
void moex_xcache_observe(struct moex_xcache *c, const uint8_t *used,
			 const uint32_t *counts);

/* Plan up to max swaps into sw[]; returns how many. They take effect in
 * the cache's books at once (slot_of, held, fills). */
uint32_t moex_xcache_plan(struct moex_xcache *c, struct moex_xswap *sw,
			  uint32_t max);

void moex_xcache_stats(struct moex_xcache *c, struct moex_xcache_stats *st);

#endif /* LIBMOEX_EXPERT_CACHE_H */
