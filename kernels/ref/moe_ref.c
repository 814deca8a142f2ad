/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * moe_ref.c - the scalar reference of the DeepSeek MoE layer.
 *
 * Written for clarity, not speed: one token at a time, every dot product
 * and every sum accumulated in double, scratch allocated per call. The
 * other backends (kernels/cpu, kernels/hip) are tested against it with the
 * tolerances of Documentation/moe-kernels.rst.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "moek.h"

/*
 * ceil(n / 128): act-quant scales of an n-wide row, scale columns of an
 * FP8 matrix with n inputs.
 */
static size_t nblocks(size_t n)
{
	return (n + MOEK_FP8_BLOCK - 1) / MOEK_FP8_BLOCK;
}

/* malloc(n * size) with the multiplication checked; never malloc(0). */
static void *alloc_array(size_t n, size_t size)
{
	if (!n)
		n = 1;
	if (n > SIZE_MAX / size)
		return NULL;
	return malloc(n * size);
}

/* moek_bf16_to_f32(), inlined for the inner loops. */
static inline float bf16_f32(uint16_t v)
{
	uint32_t u = (uint32_t)v << 16;
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

/* Element i of an f32 or bf16 array as a double. */
static double elem(const void *w, uint32_t t, size_t i)
{
	if (t == MOEK_BF16)
		return bf16_f32(((const uint16_t *)w)[i]);
	return ((const float *)w)[i];
}

/* ---- router ---------------------------------------------------------- */

/* The weights the router reads: 0 or -EINVAL. */
static int check_route_args(const struct moek_shape *s,
			    const struct moek_weights *wt)
{
	if (moek_shape_check(s))
		return -EINVAL;
	if (!wt || !wt->gate)
		return -EINVAL;
	return 0;
}

/*
 * Scratch of the router: sc[n] unbiased scores, sel[n] selection scores,
 * gsc[n_groups] group scores, kept[n_groups] and taken[n] flags.
 */
struct route_scratch {
	double *sc;
	double *sel;
	double *gsc;
	unsigned char *kept;
	unsigned char *taken;
};

static void route_scratch_free(struct route_scratch *r)
{
	free(r->sc);
	free(r->sel);
	free(r->gsc);
	free(r->kept);
	free(r->taken);
}

static int route_scratch_alloc(const struct moek_shape *s,
			       struct route_scratch *r)
{
	size_t n = s->n_experts, g = s->n_groups > 1 ? s->n_groups : 1;

	r->sc = alloc_array(n, sizeof(double));
	r->sel = alloc_array(n, sizeof(double));
	r->gsc = alloc_array(g, sizeof(double));
	r->kept = alloc_array(g, 1);
	r->taken = alloc_array(n, 1);
	if (!r->sc || !r->sel || !r->gsc || !r->kept || !r->taken) {
		route_scratch_free(r);
		return -ENOMEM;
	}
	return 0;
}

/*
 * Index of the largest v[i], i < n, with taken[i] == 0; ties go to the
 * lower index (strict >). A NaN never wins against a number; -1 when
 * everything is taken.
 */
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
 * Group limiting: keep the topk_groups best groups and mark the other
 * groups' experts as taken, so that the top-k never chooses them. That
 * is model.py's -inf mask (never 0: a negative biased score must still
 * win), except that a NaN score of a kept group's expert still beats a
 * discarded expert, which a -inf would beat.
 */
static void limit_groups(const struct moek_shape *s, int have_bias,
			 struct route_scratch *r)
{
	size_t ng = s->n_groups, gs = s->n_experts / s->n_groups;
	size_t g, i, k;

	for (g = 0; g < ng; g++) {
		const double *v = r->sel + g * gs;
		double a = -INFINITY, b = -INFINITY;

		/* a: the best, b: the second best of the group. */
		for (i = 0; i < gs; i++) {
			if (v[i] > a) {
				b = a;
				a = v[i];
			} else if (v[i] > b) {
				b = v[i];
			}
		}
		r->gsc[g] = have_bias ? a + b : a;
	}
	memset(r->kept, 0, ng);
	for (k = 0; k < s->topk_groups; k++) {
		long best = argmax_free(r->gsc, ng, r->kept);

		if (best < 0)
			break;
		r->kept[best] = 1;
	}
	for (g = 0; g < ng; g++)
		if (!r->kept[g])
			memset(r->taken + g * gs, 1, gs);
}

/* Route one token: idx[topk], w[topk]. */
static void route_token(const struct moek_shape *s,
			const struct moek_weights *wt, const float *x,
			struct route_scratch *r, int32_t *idx, float *w)
{
	size_t n = s->n_experts, dim = s->dim, e, i, k;
	double sum;

	/* Logits x . gate^T in double. */
	for (e = 0; e < n; e++) {
		double acc = 0.0;

		for (i = 0; i < dim; i++)
			acc += (double)x[i] * elem(wt->gate, s->gtype,
						   e * dim + i);
		r->sc[e] = acc;
	}

	/* Scores. */
	if (s->score == MOEK_SCORE_SOFTMAX) {
		double mx = -INFINITY;

		for (e = 0; e < n; e++)
			if (r->sc[e] > mx)
				mx = r->sc[e];
		sum = 0.0;
		for (e = 0; e < n; e++) {
			r->sc[e] = exp(r->sc[e] - mx);
			sum += r->sc[e];
		}
		for (e = 0; e < n; e++)
			r->sc[e] /= sum;
	} else {
		for (e = 0; e < n; e++)
			r->sc[e] = 1.0 / (1.0 + exp(-r->sc[e]));
	}

	/* Selection scores, then group limiting. */
	for (e = 0; e < n; e++)
		r->sel[e] = r->sc[e] + (wt->bias ? (double)wt->bias[e] : 0.0);
	memset(r->taken, 0, n);
	if (s->n_groups > 1)
		limit_groups(s, wt->bias != NULL, r);

	/* Top-k, best first, ties to the lower index. */
	sum = 0.0;
	for (k = 0; k < s->topk; k++) {
		long best = argmax_free(r->sel, n, r->taken);

		r->taken[best] = 1;
		idx[k] = (int32_t)best;
		sum += r->sc[best];
	}

	/* Weights: the unbiased scores, normalised, scaled. */
	for (k = 0; k < s->topk; k++) {
		double v = r->sc[idx[k]];

		if (s->norm_topk && sum > 0.0)
			v /= sum;
		w[k] = (float)(v * (double)s->route_scale);
	}
}

/**
 * moek_ref_route() - route a token batch.
 * @s:    the shape
 * @wt:   the weights; only gate and bias are read
 * @x:    [ntok][dim] activations
 * @ntok: tokens; 0 is valid and touches nothing
 * @idx:  out: [ntok][topk] expert indices, best first
 * @w:    out: [ntok][topk] routing weights
 *
 * Return: 0, -EINVAL (bad shape, NULL gate, NULL x/idx/w with ntok > 0) or
 * -ENOMEM.
 */
int moek_ref_route(const struct moek_shape *s, const struct moek_weights *wt,
		   const float *x, size_t ntok, int32_t *idx, float *w)
{
	struct route_scratch r;
	size_t t;
	int ret;

	ret = check_route_args(s, wt);
	if (ret)
		return ret;
	if (!ntok)
		return 0;
	if (!x || !idx || !w)
		return -EINVAL;
	ret = route_scratch_alloc(s, &r);
	if (ret)
		return ret;
	for (t = 0; t < ntok; t++)
		route_token(s, wt, x + t * s->dim, &r, idx + t * s->topk,
			    w + t * s->topk);
	route_scratch_free(&r);
	return 0;
}

/* ---- FFN ------------------------------------------------------------- */

static int check_ffn(const struct moek_shape *s, const struct moek_ffn *f)
{
	if (!f || !f->w1 || !f->w2 || !f->w3)
		return -EINVAL;
	if (s->wtype == MOEK_FP8_E4M3 && (!f->s1 || !f->s2 || !f->s3))
		return -EINVAL;
	return 0;
}

/*
 * Scratch of one FFN evaluation of width up to wmax on dim channels:
 * xd[dim] (x in double), h[wmax] the silu-mul intermediate; for FP8 also
 * the quantised input and intermediate with their scales and the e4m3
 * decode table.
 */
struct ffn_scratch {
	double *xd;
	double *h;
	float *hf;
	uint8_t *qx;
	float *sx;
	uint8_t *qh;
	float *sh;
	double lut[256];
};

static void ffn_scratch_free(struct ffn_scratch *f)
{
	free(f->xd);
	free(f->h);
	free(f->hf);
	free(f->qx);
	free(f->sx);
	free(f->qh);
	free(f->sh);
}

static int ffn_scratch_alloc(const struct moek_shape *s, size_t wmax,
			     struct ffn_scratch *f)
{
	size_t dim = s->dim;
	int i, fp8 = s->wtype == MOEK_FP8_E4M3;

	memset(f, 0, sizeof(*f));
	f->xd = alloc_array(dim, sizeof(double));
	f->h = alloc_array(wmax, sizeof(double));
	if (!f->xd || !f->h)
		goto nomem;
	if (fp8) {
		f->hf = alloc_array(wmax, sizeof(float));
		f->qx = alloc_array(dim, 1);
		f->sx = alloc_array(nblocks(dim), sizeof(float));
		f->qh = alloc_array(wmax, 1);
		f->sh = alloc_array(nblocks(wmax), sizeof(float));
		if (!f->hf || !f->qx || !f->sx || !f->qh || !f->sh)
			goto nomem;
		for (i = 0; i < 256; i++)
			f->lut[i] = moek_fp8_to_f32((uint8_t)i);
	}
	return 0;
nomem:
	ffn_scratch_free(f);
	return -ENOMEM;
}

/* Row o of an f32/bf16 [rows][n] matrix times v[n], in double. */
static double dot_row(const void *m, uint32_t t, size_t o, size_t n,
		      const double *v)
{
	double acc = 0.0;
	size_t i;

	if (t == MOEK_BF16) {
		const uint16_t *r = (const uint16_t *)m + o * n;

		for (i = 0; i < n; i++)
			acc += (double)bf16_f32(r[i]) * v[i];
	} else {
		const float *r = (const float *)m + o * n;

		for (i = 0; i < n; i++)
			acc += (double)r[i] * v[i];
	}
	return acc;
}

/*
 * Row o of an FP8 [rows][n] matrix with block scales ws times the
 * act-quantised q[n] with scales qs: DeepSeek's fp8_gemm, each 128-wide
 * block's integer-exact partial sum scaled by both block scales.
 */
static double dot_row_fp8(const uint8_t *m, const float *ws, size_t o,
			  size_t n, const uint8_t *q, const float *qs,
			  const double *lut)
{
	const uint8_t *r = m + o * n;
	const float *wsr = ws + (o / MOEK_FP8_BLOCK) * nblocks(n);
	double acc = 0.0;
	size_t b, i, end;

	for (b = 0; b * MOEK_FP8_BLOCK < n; b++) {
		double part = 0.0;

		end = (b + 1) * MOEK_FP8_BLOCK;
		if (end > n)
			end = n;
		for (i = b * MOEK_FP8_BLOCK; i < end; i++)
			part += lut[r[i]] * lut[q[i]];
		acc += part * (double)qs[b] * (double)wsr[b];
	}
	return acc;
}

static double silu(double v)
{
	return v / (1.0 + exp(-v));
}

/* out[dim] = ffn(x) for one token, in double. */
static void ffn_token(const struct moek_shape *s, const struct moek_ffn *f,
		      size_t width, const float *x, struct ffn_scratch *sc,
		      double *out)
{
	size_t dim = s->dim, i, j;

	if (s->wtype == MOEK_FP8_E4M3) {
		moek_act_quant_row(x, dim, sc->qx, sc->sx);
		for (j = 0; j < width; j++) {
			double a = dot_row_fp8(f->w1, f->s1, j, dim, sc->qx,
					       sc->sx, sc->lut);
			double g = dot_row_fp8(f->w3, f->s3, j, dim, sc->qx,
					       sc->sx, sc->lut);

			sc->hf[j] = (float)(silu(a) * g);
		}
		moek_act_quant_row(sc->hf, width, sc->qh, sc->sh);
		for (i = 0; i < dim; i++)
			out[i] = dot_row_fp8(f->w2, f->s2, i, width, sc->qh,
					     sc->sh, sc->lut);
		return;
	}

	for (i = 0; i < dim; i++)
		sc->xd[i] = x[i];
	for (j = 0; j < width; j++) {
		double a = dot_row(f->w1, s->wtype, j, dim, sc->xd);
		double g = dot_row(f->w3, s->wtype, j, dim, sc->xd);

		sc->h[j] = silu(a) * g;
	}
	for (i = 0; i < dim; i++)
		out[i] = dot_row(f->w2, s->wtype, i, width, sc->h);
}

/**
 * moek_ref_ffn() - y = w2 . (silu(w1 . x) * (w3 . x)) for a token batch.
 * @s:     the shape (dim and wtype are used)
 * @f:     the FFN's weights (and scales for FP8)
 * @width: its intermediate size: inter, or n_shared * inter
 * @x:     [ntok][dim] activations
 * @ntok:  tokens; 0 is valid and touches nothing
 * @y:     out: [ntok][dim]
 *
 * On the FP8 path x and the silu-mul intermediate are act-quantised
 * (moek_act_quant_row) before their linears.
 *
 * Return: 0, -EINVAL (bad shape, width 0, a NULL weight or scale, NULL
 * x/y with ntok > 0) or -ENOMEM.
 */
int moek_ref_ffn(const struct moek_shape *s, const struct moek_ffn *f,
		 uint32_t width, const float *x, size_t ntok, float *y)
{
	struct ffn_scratch sc;
	double *out;
	size_t t, i;
	int ret;

	if (moek_shape_check(s) || !width)
		return -EINVAL;
	ret = check_ffn(s, f);
	if (ret)
		return ret;
	if (!ntok)
		return 0;
	if (!x || !y)
		return -EINVAL;
	out = alloc_array(s->dim, sizeof(double));
	if (!out)
		return -ENOMEM;
	ret = ffn_scratch_alloc(s, width, &sc);
	if (ret) {
		free(out);
		return ret;
	}
	for (t = 0; t < ntok; t++) {
		ffn_token(s, f, width, x + t * s->dim, &sc, out);
		for (i = 0; i < s->dim; i++)
			y[t * s->dim + i] = (float)out[i];
	}
	ffn_scratch_free(&sc);
	free(out);
	return 0;
}

/* ---- layer ----------------------------------------------------------- */

/**
 * moek_ref_layer() - the whole MoE layer.
 * @s:      the shape
 * @wt:     the weights: gate, optional bias, n_experts routed experts and,
 *          when n_shared > 0, the shared FFN
 * @x:      [ntok][dim] activations
 * @ntok:   tokens; 0 is valid and touches nothing (counts included)
 * @y:      out: [ntok][dim], y = sum_k w_k * ffn_{idx_k}(x) + shared(x);
 *          must not overlap x
 * @counts: out, optional: [n_experts] tokens routed to each expert
 *
 * The weighted sum and the shared FFN are accumulated in double per token
 * and rounded to f32 once; the routing weights are the f32 values
 * moek_ref_route() returns.
 *
 * Return: 0, -EINVAL (bad shape, any NULL weight or scale that the shape
 * needs, NULL x/y with ntok > 0) or -ENOMEM.
 */
int moek_ref_layer(const struct moek_shape *s, const struct moek_weights *wt,
		   const float *x, size_t ntok, float *y, uint32_t *counts)
{
	struct route_scratch r;
	struct ffn_scratch sc;
	size_t t, i, k, dim, shw = 0, wmax;
	double *acc = NULL, *out = NULL;
	int32_t *idx = NULL;
	float *w = NULL;
	uint32_t e;
	int ret;

	ret = check_route_args(s, wt);
	if (ret)
		return ret;
	if (!wt->experts)
		return -EINVAL;
	for (e = 0; e < s->n_experts; e++)
		if (check_ffn(s, &wt->experts[e]))
			return -EINVAL;
	if (s->n_shared) {
		if (check_ffn(s, &wt->shared))
			return -EINVAL;
		shw = (size_t)s->n_shared * s->inter;
	}
	if (!ntok)
		return 0;
	if (!x || !y)
		return -EINVAL;

	dim = s->dim;
	wmax = shw > s->inter ? shw : s->inter;
	ret = route_scratch_alloc(s, &r);
	if (ret)
		return ret;
	ret = ffn_scratch_alloc(s, wmax, &sc);
	if (ret) {
		route_scratch_free(&r);
		return ret;
	}
	ret = -ENOMEM;
	acc = alloc_array(dim, sizeof(double));
	out = alloc_array(dim, sizeof(double));
	idx = alloc_array(s->topk, sizeof(*idx));
	w = alloc_array(s->topk, sizeof(*w));
	if (!acc || !out || !idx || !w)
		goto out;

	if (counts)
		memset(counts, 0, (size_t)s->n_experts * sizeof(*counts));
	for (t = 0; t < ntok; t++) {
		const float *xt = x + t * dim;

		route_token(s, wt, xt, &r, idx, w);
		if (shw) {
			ffn_token(s, &wt->shared, shw, xt, &sc, acc);
		} else {
			for (i = 0; i < dim; i++)
				acc[i] = 0.0;
		}
		for (k = 0; k < s->topk; k++) {
			ffn_token(s, &wt->experts[idx[k]], s->inter, xt, &sc,
				  out);
			for (i = 0; i < dim; i++)
				acc[i] += (double)w[k] * out[i];
			if (counts)
				counts[idx[k]]++;
		}
		for (i = 0; i < dim; i++)
			y[t * dim + i] = (float)acc[i];
	}
	ret = 0;
out:
	free(w);
	free(idx);
	free(out);
	free(acc);
	ffn_scratch_free(&sc);
	route_scratch_free(&r);
	return ret;
}
