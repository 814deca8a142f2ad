/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * group.c - tokens grouped by expert.
 *
 * From the routes (c->idx, c->rw) build the tokens per expert (counts),
 * their prefix sums (offs) and the permutation of the (token, k) pairs
 * into slots ordered by expert, then by token: the slots of expert e are
 * offs[e] .. offs[e + 1] - 1, so each expert's weights are read once per
 * batch for all of its tokens, and its silu-mul intermediates (c->h) are
 * contiguous rows.
 *
 * The gate/up work list cuts every active expert's intermediate rows
 * (and the shared FFN's, listed first: it has every token, so it is the
 * heaviest) into items of MOEK_CPU_CHUNK rows; threads take items from an
 * atomic counter.
 */
#include <string.h>

#include "cpu.h"

static void add_items(struct moek_cpu *c, uint32_t e, uint32_t width)
{
	uint32_t r;

	for (r = 0; r < width; r += MOEK_CPU_CHUNK) {
		struct moek_item *it = &c->items[c->n_items++];

		it->e = e;
		it->r0 = r;
		it->r1 = width - r > MOEK_CPU_CHUNK ? r + MOEK_CPU_CHUNK :
						       width;
	}
}

/**
 * moek_cpu_group() - counts, offsets, slots and the gate/up work list.
 * @c: the context of the running layer, routed
 */
void moek_cpu_group(struct moek_cpu *c)
{
	const struct moek_shape *s = c->s;
	uint32_t n = s->n_experts, topk = s->topk, e;
	uint32_t fill[MOEK_MAX_EXPERTS];
	size_t t, k;

	memset(c->counts, 0, n * sizeof(*c->counts));
	for (t = 0; t < c->ntok * topk; t++)
		c->counts[c->idx[t]]++;
	c->offs[0] = 0;
	for (e = 0; e < n; e++)
		c->offs[e + 1] = c->offs[e] + c->counts[e];
	memcpy(fill, c->offs, n * sizeof(*fill));
	for (t = 0; t < c->ntok; t++) {
		for (k = 0; k < topk; k++) {
			uint32_t slot = fill[c->idx[t * topk + k]]++;

			c->slot_tok[slot] = (uint32_t)t;
			c->slot_w[slot] = c->rw[t * topk + k];
		}
	}

	c->n_items = 0;
	if (s->n_shared)
		add_items(c, n, s->n_shared * s->inter);
	for (e = 0; e < n; e++)
		if (c->counts[e])
			add_items(c, e, s->inter);
	atomic_store_explicit(&c->next_item, 0, memory_order_relaxed);
	atomic_store_explicit(&c->next_row, 0, memory_order_relaxed);
}
