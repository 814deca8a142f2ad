/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * route.c - the router of the CPU fast path.
 *
 * The logits (x . gate^T) are computed by the ISA kernels in double, in
 * parallel over blocks of gate rows (layer.c); this file turns one token's
 * logits into its top-k experts and weights with exactly the semantics of
 * moek_ref_route(): scores in double (sigmoid, or softmax over all
 * experts), the bias added for selection only, group limiting (a group
 * scores the sum of its two best biased scores, its best without a bias;
 * the other groups' experts are left out of the top-k), top-k by
 * repeated arg-max with ties to the lower index and NaN never beating a
 * number, then the unbiased scores normalised and
 * scaled. The arithmetic is the reference's, step for step, so that the
 * chosen experts are the same whenever the logits are.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "cpu.h"

/* Arg-max of v[i] over the i with !taken[i]; -1 when none is left. */
static long argmax_free(const double *v, size_t n, const unsigned char *taken)
{
	long best = -1;
	size_t i;

	for (i = 0; i < n; i++) {
		if (taken[i])
			continue;
		if (best < 0 || v[i] > v[best] ||
		    (isnan(v[best]) && !isnan(v[i])))
			best = (long)i;
	}
	return best;
}

/*
 * Group limiting: mark the experts of every group but the topk_groups
 * best as taken, so that the top-k never chooses them (not even over a
 * NaN score of a kept group's expert, as a -inf mask would let it).
 */
static void limit_groups(const struct moek_shape *s, int have_bias,
			 const double *sel, unsigned char *taken)
{
	size_t ng = s->n_groups, gs = s->n_experts / s->n_groups;
	double gsc[MOEK_MAX_EXPERTS / 2];
	unsigned char kept[MOEK_MAX_EXPERTS / 2];
	size_t g, i, k;

	for (g = 0; g < ng; g++) {
		const double *v = sel + g * gs;
		double a = -INFINITY, b = -INFINITY;

		for (i = 0; i < gs; i++) {
			if (v[i] > a) {
				b = a;
				a = v[i];
			} else if (v[i] > b) {
				b = v[i];
			}
		}
		gsc[g] = have_bias ? a + b : a;
	}
	memset(kept, 0, ng);
	for (k = 0; k < s->topk_groups; k++) {
		long best = argmax_free(gsc, ng, kept);

		if (best < 0)
			break;
		kept[best] = 1;
	}
	for (g = 0; g < ng; g++)
		if (!kept[g])
			memset(taken + g * gs, 1, gs);
}

static void route_one(const struct moek_shape *s, const float *bias,
		      double *sc, int32_t *idx, float *w)
{
	double sel[MOEK_MAX_EXPERTS];
	unsigned char taken[MOEK_MAX_EXPERTS];
	size_t n = s->n_experts, e, k;
	double sum;

	if (s->score == MOEK_SCORE_SOFTMAX) {
		double mx = -INFINITY;

		for (e = 0; e < n; e++)
			if (sc[e] > mx)
				mx = sc[e];
		sum = 0.0;
		for (e = 0; e < n; e++) {
			sc[e] = exp(sc[e] - mx);
			sum += sc[e];
		}
		for (e = 0; e < n; e++)
			sc[e] /= sum;
	} else {
		for (e = 0; e < n; e++)
			sc[e] = 1.0 / (1.0 + exp(-sc[e]));
	}

	for (e = 0; e < n; e++)
		sel[e] = sc[e] + (bias ? (double)bias[e] : 0.0);
	memset(taken, 0, n);
	if (s->n_groups > 1)
		limit_groups(s, bias != NULL, sel, taken);

	sum = 0.0;
	for (k = 0; k < s->topk; k++) {
		long best = argmax_free(sel, n, taken);

		taken[best] = 1;
		idx[k] = (int32_t)best;
		sum += sc[best];
	}
	for (k = 0; k < s->topk; k++) {
		double v = sc[idx[k]];

		if (s->norm_topk && sum > 0.0)
			v /= sum;
		w[k] = (float)(v * (double)s->route_scale);
	}
}

/**
 * moek_cpu_route_select() - route tokens [t0, t1) from their logits.
 * @c:  the context of the running layer; c->logits is overwritten with
 *      the scores
 * @t0: first token
 * @t1: one past the last
 */
void moek_cpu_route_select(struct moek_cpu *c, size_t t0, size_t t1)
{
	const struct moek_shape *s = c->s;
	size_t t;

	for (t = t0; t < t1; t++)
		route_one(s, c->wt->bias, c->logits + t * s->n_experts,
			  c->idx + t * s->topk, c->rw + t * s->topk);
}
