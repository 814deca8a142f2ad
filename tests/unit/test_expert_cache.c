// SPDX-License-Identifier: GPL-2.0
/*
 * The GPU expert cache's policy (runtime/src/expert_cache.c): which
 * experts start in the slots, how the router's counts make heat, which
 * swaps are planned (the hottest outsider for the coldest insider, only
 * when clearly hotter, a bounded number at a time), and the counters.
 */
#include <errno.h>
#include <stdint.h>

#include "harness.h"
#include "../../runtime/src/expert_cache.h"

#define NE 8

static void counts_of(uint32_t *c, const uint32_t *src)
{
	memcpy(c, src, NE * sizeof(*c));
}

TEST(init_checks_and_fills_the_first_slots)
{
	struct moex_xcache c;

	CHECK_INT(moex_xcache_init(&c, 0, 0, 1), -EINVAL);
	CHECK_INT(moex_xcache_init(&c, NE, NE + 1, 1), -EINVAL);
	CHECK_INT(moex_xcache_init(&c, NE, 3, 100), 0);
	for (int e = 0; e < NE; e++)
		CHECK_INT(c.slot_of[e], e < 3 ? e : -1);
	for (int s = 0; s < 3; s++)
		CHECK_INT(c.held[s], s);
	moex_xcache_fini(&c);
}

TEST(observe_counts_hits_misses_and_bytes)
{
	static const uint32_t n[NE] = { 5, 0, 1, 0, 0, 0, 2, 0 };
	static const uint8_t used[NE] = { 1, 1, 0, 0, 0, 0, 0, 0 };
	struct moex_xcache_stats st;
	struct moex_xcache c;
	uint32_t k[NE];

	CHECK_INT(moex_xcache_init(&c, NE, 2, 1000), 0);
	counts_of(k, n);
	moex_xcache_observe(&c, used, k);
	moex_xcache_stats(&c, &st);
	CHECK_U64(st.runs, 1);
	CHECK_U64(st.hits, 1);		/* expert 0; 1 was unused */
	CHECK_U64(st.misses, 2);	/* experts 2 and 6 */
	CHECK_U64(st.stream_bytes, 2000);
	CHECK_U64(st.fills, 0);
	moex_xcache_fini(&c);
}

TEST(plan_swaps_hottest_outsider_for_coldest_insider)
{
	static const uint32_t n[NE] = { 0, 3, 0, 0, 9, 0, 7, 1 };
	static const uint8_t used[NE] = { 0 };
	struct moex_xswap sw[4];
	struct moex_xcache_stats st;
	struct moex_xcache c;
	uint32_t k[NE];

	CHECK_INT(moex_xcache_init(&c, NE, 2, 10), 0);	/* 0, 1 inside */
	counts_of(k, n);
	moex_xcache_observe(&c, used, k);
	CHECK_INT(moex_xcache_plan(&c, sw, 4), 2);
	/* 4 (9) replaces 0 (0), then 6 (7) replaces 1 (3) */
	CHECK_INT(sw[0].in, 4);
	CHECK_INT(sw[0].out, 0);
	CHECK_INT(sw[0].slot, 0);
	CHECK_INT(sw[1].in, 6);
	CHECK_INT(sw[1].out, 1);
	CHECK_INT(sw[1].slot, 1);
	CHECK_INT(c.slot_of[4], 0);
	CHECK_INT(c.slot_of[6], 1);
	CHECK_INT(c.slot_of[0], -1);
	CHECK_INT(c.held[0], 4);
	/* 7 (1) is not hotter than 6 (7): nothing more */
	CHECK_INT(moex_xcache_plan(&c, sw, 4), 0);
	moex_xcache_stats(&c, &st);
	CHECK_U64(st.fills, 2);
	CHECK_U64(st.fill_bytes, 20);
	moex_xcache_fini(&c);
}

TEST(plan_is_bounded_and_needs_a_clear_winner)
{
	static const uint32_t a[NE] = { 4, 4, 0, 0, 0, 0, 0, 5 };
	static const uint32_t b[NE] = { 0, 0, 9, 9, 9, 9, 0, 0 };
	static const uint8_t used[NE] = { 0 };
	struct moex_xswap sw[4];
	struct moex_xcache c;
	uint32_t k[NE];

	CHECK_INT(moex_xcache_init(&c, NE, 2, 1), 0);
	counts_of(k, a);
	moex_xcache_observe(&c, used, k);
	/* 5 against 4: within the hysteresis, no swap */
	CHECK_INT(moex_xcache_plan(&c, sw, 4), 0);
	counts_of(k, b);
	moex_xcache_observe(&c, used, k);
	/* four hot outsiders, at most one swap asked for */
	CHECK_INT(moex_xcache_plan(&c, sw, 1), 1);
	CHECK_INT(sw[0].in, 2);
	moex_xcache_fini(&c);
}

TEST(heat_decays)
{
	static const uint32_t hot0[NE] = { 10, 0, 0, 0, 0, 0, 0, 0 };
	static const uint32_t hot5[NE] = { 0, 0, 0, 0, 0, 3, 0, 0 };
	static const uint8_t used[NE] = { 0 };
	struct moex_xswap sw[2];
	struct moex_xcache c;
	uint32_t k[NE];
	int runs = 0;

	CHECK_INT(moex_xcache_init(&c, NE, 1, 1), 0);	/* 0 inside */
	counts_of(k, hot0);
	moex_xcache_observe(&c, used, k);
	/* 0 goes cold, 5 stays warm: 5 must win within a few runs */
	counts_of(k, hot5);
	while (runs < 20) {
		moex_xcache_observe(&c, used, k);
		runs++;
		if (moex_xcache_plan(&c, sw, 2))
			break;
	}
	CHECK_MSG(runs < 20, "expert 5 never got the slot");
	/*
	 * After r runs 0 has 10 * 0.9^r, 5 has 30 * (1 - 0.9^r): 5 is
	 * above 1.25 times 0 from r = 4 (without the decay, from r = 5).
	 */
	CHECK_INT(runs, 4);
	CHECK_MSG(c.heat[0] > 6.560 && c.heat[0] < 6.562, "heat %g",
		  c.heat[0]);
	CHECK_INT(sw[0].in, 5);
	CHECK_INT(sw[0].out, 0);
	moex_xcache_fini(&c);
}

TEST(all_inside_never_swaps)
{
	static const uint32_t n[NE] = { 1, 2, 3, 4, 5, 6, 7, 8 };
	static const uint8_t used[NE] = { 1, 1, 1, 1, 1, 1, 1, 1 };
	struct moex_xswap sw[2];
	struct moex_xcache c;
	uint32_t k[NE];

	CHECK_INT(moex_xcache_init(&c, NE, NE, 1), 0);
	counts_of(k, n);
	moex_xcache_observe(&c, used, k);
	CHECK_INT(moex_xcache_plan(&c, sw, 2), 0);
	moex_xcache_fini(&c);
	CHECK_INT(moex_xcache_init(&c, NE, 0, 1), 0);
	moex_xcache_observe(&c, used, k);
	CHECK_INT(moex_xcache_plan(&c, sw, 2), 0);	/* no slot at all */
	moex_xcache_fini(&c);
}

RUN_TESTS(T(init_checks_and_fills_the_first_slots),
	  T(observe_counts_hits_misses_and_bytes),
	  T(plan_swaps_hottest_outsider_for_coldest_insider),
	  T(plan_is_bounded_and_needs_a_clear_winner),
	  T(heat_decays),
	  T(all_inside_never_swaps))
