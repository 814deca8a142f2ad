// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * The GPU expert cache's policy (expert_cache.h): heat per expert from
 * the router's counts, and the swaps that keep the hottest experts in the
 * device's slots.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "expert_cache.h"

int moex_xcache_init(struct moex_xcache *c, uint32_t n_experts,
		     uint32_t n_slots, uint64_t expert_bytes)
{
	uint32_t e;

	memset(c, 0, sizeof(*c));
	if (!n_experts || n_slots > n_experts)
		return -EINVAL;
	c->heat = calloc(n_experts, sizeof(*c->heat));
	c->slot_of = malloc(n_experts * sizeof(*c->slot_of));
	c->held = malloc((n_slots ? n_slots : 1) * sizeof(*c->held));
	if (!c->heat || !c->slot_of || !c->held) {
		moex_xcache_fini(c);
		return -ENOMEM;
	}
	for (e = 0; e < n_experts; e++)
		c->slot_of[e] = e < n_slots ? (int32_t)e : -1;
	for (e = 0; e < n_slots; e++)
		c->held[e] = (int32_t)e;
	c->n_experts = n_experts;
	c->n_slots = n_slots;
	c->expert_bytes = expert_bytes;
	pthread_mutex_init(&c->lock, NULL);
	return 0;
}

void moex_xcache_fini(struct moex_xcache *c)
{
	if (c->n_experts)
		pthread_mutex_destroy(&c->lock);
	free(c->heat);
	free(c->slot_of);
	free(c->held);
	memset(c, 0, sizeof(*c));
}

void moex_xcache_observe(struct moex_xcache *c, const uint8_t *used,
			 const uint32_t *counts)
{
	uint32_t e;

	pthread_mutex_lock(&c->lock);
	c->st.runs++;
	for (e = 0; e < c->n_experts; e++) {
		c->heat[e] = c->heat[e] * MOEX_XCACHE_DECAY + counts[e];
		if (!counts[e])
			continue;
		if (used[e]) {
			c->st.hits++;
		} else {
			c->st.misses++;
			c->st.stream_bytes += c->expert_bytes;
		}
	}
	pthread_mutex_unlock(&c->lock);
}

uint32_t moex_xcache_plan(struct moex_xcache *c, struct moex_xswap *sw,
			  uint32_t max)
{
	uint32_t n = 0, e;

	pthread_mutex_lock(&c->lock);
	while (n < max && c->n_slots && c->n_slots < c->n_experts) {
		int32_t hot = -1, cold = -1;

		for (e = 0; e < c->n_experts; e++) {
			if (c->slot_of[e] < 0) {
				if (hot < 0 || c->heat[e] > c->heat[hot])
					hot = (int32_t)e;
			} else if (cold < 0 || c->heat[e] < c->heat[cold]) {
				cold = (int32_t)e;
			}
		}
		if (hot < 0 || cold < 0 || c->heat[hot] <= 0.0 ||
		    c->heat[hot] <= c->heat[cold] * (1.0 + MOEX_XCACHE_HYST))
			break;
		sw[n].slot = (uint32_t)c->slot_of[cold];
		sw[n].in = hot;
		sw[n].out = cold;
		c->held[sw[n].slot] = hot;
		c->slot_of[hot] = (int32_t)sw[n].slot;
		c->slot_of[cold] = -1;
		c->st.fills++;
		c->st.fill_bytes += c->expert_bytes;
		n++;
	}
	pthread_mutex_unlock(&c->lock);
	return n;
}

void moex_xcache_stats(struct moex_xcache *c, struct moex_xcache_stats *st)
{
	pthread_mutex_lock(&c->lock);
	*st = c->st;
	pthread_mutex_unlock(&c->lock);
}
