// SPDX-License-Identifier: GPL-2.0
/*
 * unit-moe_ref: the scalar MoE reference (kernels/ref) and the helpers
 * every backend shares: shape rules, byte counts, bf16/e4m3 conversions,
 * act_quant, the router, the FFN and the whole layer.
 *
 * Routing tests mostly use dim 1 and x = 1, so that each expert's logit is
 * exactly its gate value and the expected indices can be worked out by
 * hand. The real DeepSeek-V2-Lite and V3 shapes are run against an
 * independent router written here (sorting instead of arg-max scans,
 * candidates gathered from the kept groups instead of masking).
 *
 * Memory: a V3 layer has 256 experts of 44 MB each in FP8 (11 GB, 22 GB in
 * bf16); the layer tests at real shapes therefore give the moek_ffn array
 * only a few distinct weight sets, expert e using set e % nsets. The gate
 * (and so the routing) is distinct per expert; only the FFN weights
 * repeat.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "moek.h"
#include "harness.h"

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* ---- helpers --------------------------------------------------------- */

static uint64_t rng_next(uint64_t *st)
{
	uint64_t x = *st;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*st = x;
	return x * 0x2545f4914f6cdd1dull;
}

/* Uniform in [-1, 1). */
static float rng_unit(uint64_t *st)
{
	return (float)((double)(rng_next(st) >> 11) * 0x1p-52 - 1.0);
}

static uint32_t f32_bits(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

static float bits_f32(uint32_t u)
{
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

static int close_rel(double a, double b, double rel)
{
	return fabs(a - b) <= rel * fmax(fabs(a), fabs(b)) + 1e-300;
}

static double sigm(double v)
{
	return 1.0 / (1.0 + exp(-v));
}

/* A valid small shape: 8 experts in 4 groups, f32 everything. */
static struct moek_shape small_shape(void)
{
	struct moek_shape s = {
		.dim = 16, .inter = 8, .n_experts = 8, .topk = 2,
		.n_groups = 4, .topk_groups = 2, .n_shared = 1,
		.score = MOEK_SCORE_SIGMOID, .norm_topk = 1,
		.route_scale = 1.0f, .wtype = MOEK_F32, .gtype = MOEK_F32,
	};
	return s;
}

static struct moek_shape v2_lite_shape(void)
{
	struct moek_shape s = {
		.dim = 2048, .inter = 1408, .n_experts = 64, .topk = 6,
		.n_groups = 1, .topk_groups = 1, .n_shared = 2,
		.score = MOEK_SCORE_SOFTMAX, .norm_topk = 0,
		.route_scale = 1.0f, .wtype = MOEK_BF16, .gtype = MOEK_BF16,
	};
	return s;
}

static struct moek_shape v3_shape(void)
{
	struct moek_shape s = {
		.dim = 7168, .inter = 2048, .n_experts = 256, .topk = 8,
		.n_groups = 8, .topk_groups = 4, .n_shared = 1,
		.score = MOEK_SCORE_SIGMOID, .norm_topk = 1,
		.route_scale = 2.5f, .wtype = MOEK_FP8_E4M3,
		.gtype = MOEK_BF16,
	};
	return s;
}

/*
 * Route one token with dim 1 and x = 1: logit e is exactly logits[e].
 * The shape's dim is forced to 1 and gtype to f32.
 */
static int route_logits(struct moek_shape s, const float *logits,
			const float *bias, int32_t *idx, float *w)
{
	struct moek_weights wt = { .gate = logits, .bias = bias };
	const float one = 1.0f;

	s.dim = 1;
	s.gtype = MOEK_F32;
	return moek_ref_route(&s, &wt, &one, 1, idx, w);
}

/* ---- an independent router ------------------------------------------- */

struct cand {
	double v;
	uint32_t i;
};

/* Descending value, then ascending index. */
static int cand_cmp(const void *pa, const void *pb)
{
	const struct cand *a = pa, *b = pb;

	if (a->v > b->v)
		return -1;
	if (a->v < b->v)
		return 1;
	return a->i < b->i ? -1 : a->i > b->i;
}

/*
 * Route one token by sorting: logits, scores, group scores sorted, the
 * candidates of the kept groups sorted, the first topk taken. Returns 0,
 * or -1 when out of memory.
 */
static int oracle_route(const struct moek_shape *s, const void *gate,
			const float *bias, const float *x, int32_t *idx,
			float *w)
{
	uint32_t n = s->n_experts, ng = s->n_groups > 1 ? s->n_groups : 1;
	uint32_t gs = n / ng, e, g, k, nc = 0;
	double *sc = calloc(n, sizeof(double)), *sel = calloc(n, sizeof(*sel));
	struct cand *c = calloc(n, sizeof(*c)), *gc = calloc(ng, sizeof(*gc));
	double mx = -INFINITY, sum = 0.0;
	int ret = -1;

	if (!sc || !sel || !c || !gc)
		goto out;
	for (e = 0; e < n; e++) {
		double acc = 0.0;
		uint32_t i;

		for (i = 0; i < s->dim; i++) {
			size_t at = (size_t)e * s->dim + i;
			float gv = s->gtype == MOEK_BF16 ?
				moek_bf16_to_f32(((const uint16_t *)gate)[at]) :
				((const float *)gate)[at];

			acc += (double)x[i] * gv;
		}
		sc[e] = acc;
		mx = fmax(mx, acc);
	}
	for (e = 0; e < n; e++) {
		if (s->score == MOEK_SCORE_SIGMOID) {
			sc[e] = sigm(sc[e]);
		} else {
			sc[e] = exp(sc[e] - mx);
			sum += sc[e];
		}
	}
	if (s->score == MOEK_SCORE_SOFTMAX)
		for (e = 0; e < n; e++)
			sc[e] /= sum;
	for (e = 0; e < n; e++)
		sel[e] = sc[e] + (bias ? bias[e] : 0.0);

	for (g = 0; g < ng; g++) {
		for (k = 0; k < gs; k++) {
			c[k].v = sel[g * gs + k];
			c[k].i = k;
		}
		qsort(c, gs, sizeof(*c), cand_cmp);
		gc[g].v = (ng > 1 && bias) ? c[0].v + c[1].v : c[0].v;
		gc[g].i = g;
	}
	qsort(gc, ng, sizeof(*gc), cand_cmp);
	for (g = 0; g < (ng > 1 ? s->topk_groups : 1); g++)
		for (k = 0; k < gs; k++) {
			c[nc].i = gc[g].i * gs + k;
			c[nc].v = sel[c[nc].i];
			nc++;
		}
	qsort(c, nc, sizeof(*c), cand_cmp);
	sum = 0.0;
	for (k = 0; k < s->topk; k++)
		sum += sc[c[k].i];
	for (k = 0; k < s->topk; k++) {
		double v = sc[c[k].i];

		if (s->norm_topk)
			v /= sum;
		idx[k] = (int32_t)c[k].i;
		w[k] = (float)(v * s->route_scale);
	}
	ret = 0;
out:
	free(sc);
	free(sel);
	free(c);
	free(gc);
	return ret;
}

/* ---- weight sets ------------------------------------------------------ */

/* One FFN's weights, owned. */
struct ffn_buf {
	void *w1, *w2, *w3;
	float *s1, *s2, *s3;
};

static void ffn_buf_free(struct ffn_buf *b)
{
	free(b->w1);
	free(b->w2);
	free(b->w3);
	free(b->s1);
	free(b->s2);
	free(b->s3);
	memset(b, 0, sizeof(*b));
}

static struct moek_ffn ffn_view(const struct ffn_buf *b)
{
	struct moek_ffn f = {
		.w1 = b->w1, .w2 = b->w2, .w3 = b->w3,
		.s1 = b->s1, .s2 = b->s2, .s3 = b->s3,
	};
	return f;
}

/* e4m3 codes of 256 values uniform in (-1, 1): a byte -> code table. */
static void fp8_uniform_table(uint8_t *tab)
{
	int i;

	for (i = 0; i < 256; i++)
		tab[i] = moek_f32_to_fp8(((float)i - 127.5f) / 128.0f);
}

/*
 * A random [rows][cols] matrix of type t with entries of size ~amp (FP8:
 * codes of uniform values in (-1, 1) and block scales in [0.5, 1.5) * amp).
 */
static int rand_matrix(uint32_t t, size_t rows, size_t cols, float amp,
		       uint64_t *rng, void **wp, float **sp)
{
	size_t n = rows * cols, i;
	void *w = malloc(moek_matrix_bytes(t, rows, cols));

	*wp = w;
	*sp = NULL;
	if (!w)
		return -1;
	if (t == MOEK_F32) {
		for (i = 0; i < n; i++)
			((float *)w)[i] = amp * rng_unit(rng);
	} else if (t == MOEK_BF16) {
		for (i = 0; i < n; i++)
			((uint16_t *)w)[i] = moek_f32_to_bf16(amp *
							      rng_unit(rng));
	} else {
		uint8_t tab[256], *b = w;
		size_t ns = moek_scale_count(rows, cols);
		float *sc = malloc(ns * sizeof(float));

		*sp = sc;
		if (!sc)
			return -1;
		fp8_uniform_table(tab);
		for (i = 0; i + 8 <= n; i += 8) {
			uint64_t r = rng_next(rng);
			int j;

			for (j = 0; j < 8; j++)
				b[i + j] = tab[(r >> (8 * j)) & 0xff];
		}
		for (; i < n; i++)
			b[i] = tab[rng_next(rng) & 0xff];
		for (i = 0; i < ns; i++)
			sc[i] = amp * (1.0f + 0.5f * rng_unit(rng));
	}
	return 0;
}

static int ffn_buf_init(struct ffn_buf *b, uint32_t t, size_t width,
			size_t dim, uint64_t *rng)
{
	float a_in = 1.0f / sqrtf((float)dim), a_out = 1.0f / sqrtf(width);
	int r = 0;

	memset(b, 0, sizeof(*b));
	r |= rand_matrix(t, width, dim, a_in, rng, &b->w1, &b->s1);
	r |= rand_matrix(t, dim, width, a_out, rng, &b->w2, &b->s2);
	r |= rand_matrix(t, width, dim, a_in, rng, &b->w3, &b->s3);
	if (r)
		ffn_buf_free(b);
	return r;
}

/*
 * A layer: gate, optional bias, nsets distinct expert weight sets
 * (expert e uses set e % nsets), the shared FFN.
 */
struct layer_buf {
	struct moek_shape s;
	struct moek_weights wt;
	struct ffn_buf *sets;
	unsigned int nsets;
	struct ffn_buf shared;
	struct moek_ffn *experts;
	void *gate;
	float *bias;
};

static void layer_buf_free(struct layer_buf *L)
{
	unsigned int i;

	if (L->sets)
		for (i = 0; i < L->nsets; i++)
			ffn_buf_free(&L->sets[i]);
	free(L->sets);
	ffn_buf_free(&L->shared);
	free(L->experts);
	free(L->gate);
	free(L->bias);
	memset(L, 0, sizeof(*L));
}

static int layer_buf_init(struct layer_buf *L, const struct moek_shape *s,
			  unsigned int nsets, int with_bias, uint64_t seed)
{
	uint64_t rng = seed | 1;
	float *unused;
	uint32_t e;

	memset(L, 0, sizeof(*L));
	L->s = *s;
	L->nsets = nsets;
	L->sets = calloc(nsets, sizeof(*L->sets));
	L->experts = calloc(s->n_experts, sizeof(*L->experts));
	if (!L->sets || !L->experts)
		goto fail;
	if (rand_matrix(s->gtype, s->n_experts, s->dim,
			3.0f / sqrtf((float)s->dim), &rng, &L->gate, &unused))
		goto fail;
	if (with_bias) {
		L->bias = malloc(s->n_experts * sizeof(float));
		if (!L->bias)
			goto fail;
		for (e = 0; e < s->n_experts; e++)
			L->bias[e] = 0.1f * rng_unit(&rng);
	}
	for (e = 0; e < nsets; e++)
		if (ffn_buf_init(&L->sets[e], s->wtype, s->inter, s->dim,
				 &rng))
			goto fail;
	for (e = 0; e < s->n_experts; e++)
		L->experts[e] = ffn_view(&L->sets[e % nsets]);
	if (s->n_shared && ffn_buf_init(&L->shared, s->wtype,
					(size_t)s->n_shared * s->inter,
					s->dim, &rng))
		goto fail;
	L->wt.gate = L->gate;
	L->wt.bias = L->bias;
	L->wt.experts = L->experts;
	L->wt.shared = ffn_view(&L->shared);
	return 0;
fail:
	layer_buf_free(L);
	return -1;
}

static float *rand_acts(size_t n, uint64_t seed)
{
	uint64_t rng = seed | 1;
	float *x = malloc(n * sizeof(float));
	size_t i;

	if (x)
		for (i = 0; i < n; i++)
			x[i] = rng_unit(&rng);
	return x;
}

/*
 * Check moek_ref_layer() on ntok tokens against moek_ref_route() plus one
 * moek_ref_ffn() per distinct weight set and token: y = sum_k w_k ffn_k +
 * shared, each element within 1e-5 of the sum of the terms' magnitudes.
 * Also checks counts. Returns NULL, or what went wrong.
 */
static const char *check_layer(const struct layer_buf *L, size_t ntok,
			       uint64_t seed)
{
	const struct moek_shape *s = &L->s;
	size_t dim = s->dim, t, i, k;
	float *x = rand_acts(ntok * dim, seed);
	float *y = malloc(ntok * dim * sizeof(float));
	float *ys = malloc((L->nsets + 1) * dim * sizeof(float));
	unsigned char *have = malloc(L->nsets);
	int32_t *idx = malloc(ntok * s->topk * sizeof(*idx));
	float *w = malloc(ntok * s->topk * sizeof(*w));
	uint32_t *counts = malloc(s->n_experts * sizeof(*counts));
	uint32_t *cexp = calloc(s->n_experts, sizeof(*cexp));
	static char why[256];
	const char *err = NULL;

	if (!x || !y || !ys || !have || !idx || !w || !counts || !cexp) {
		err = "out of memory";
		goto out;
	}
	memset(counts, 0xa5, s->n_experts * sizeof(*counts));
	if (moek_ref_layer(s, &L->wt, x, ntok, y, counts)) {
		err = "moek_ref_layer failed";
		goto out;
	}
	if (moek_ref_route(s, &L->wt, x, ntok, idx, w)) {
		err = "moek_ref_route failed";
		goto out;
	}
	for (t = 0; t < ntok; t++) {
		const float *xt = x + t * dim;
		float *ysh = ys + L->nsets * dim;
		struct moek_ffn sh = ffn_view(&L->shared);

		memset(have, 0, L->nsets);
		if (s->n_shared &&
		    moek_ref_ffn(s, &sh, s->n_shared * s->inter, xt, 1, ysh)) {
			err = "moek_ref_ffn(shared) failed";
			goto out;
		}
		for (k = 0; k < s->topk; k++) {
			unsigned int set = (unsigned int)idx[t * s->topk + k] %
					   L->nsets;
			struct moek_ffn f = ffn_view(&L->sets[set]);

			cexp[idx[t * s->topk + k]]++;
			if (have[set])
				continue;
			if (moek_ref_ffn(s, &f, s->inter, xt, 1,
					 ys + set * dim)) {
				err = "moek_ref_ffn failed";
				goto out;
			}
			have[set] = 1;
		}
		for (i = 0; i < dim; i++) {
			double e = s->n_shared ? ysh[i] : 0.0;
			double mag = fabs(e);

			for (k = 0; k < s->topk; k++) {
				unsigned int set = (unsigned int)
					idx[t * s->topk + k] % L->nsets;
				double term = (double)w[t * s->topk + k] *
					      ys[set * dim + i];

				e += term;
				mag += fabs(term);
			}
			if (!(fabs(y[t * dim + i] - e) <= 1e-5 * mag + 1e-30)) {
				snprintf(why, sizeof(why),
					 "token %zu y[%zu] = %.9g, want %.9g",
					 t, i, y[t * dim + i], e);
				err = why;
				goto out;
			}
		}
	}
	for (i = 0; i < s->n_experts; i++)
		if (counts[i] != cexp[i]) {
			snprintf(why, sizeof(why), "counts[%zu] = %u, want %u",
				 i, counts[i], cexp[i]);
			err = why;
			goto out;
		}
out:
	free(x);
	free(y);
	free(ys);
	free(have);
	free(idx);
	free(w);
	free(counts);
	free(cexp);
	return err;
}

/* ---- conversions ----------------------------------------------------- */

TEST(fp8_decode_known)
{
	static const struct {
		uint8_t v;
		float f;
	} tab[] = {
		{ 0x00, 0.0f }, { 0x01, 0x1p-9f }, { 0x02, 0x1p-8f },
		{ 0x07, 7 * 0x1p-9f }, { 0x08, 0x1p-6f }, { 0x09, 0x1.2p-6f },
		{ 0x30, 0.5f }, { 0x38, 1.0f }, { 0x39, 1.125f },
		{ 0x3c, 1.5f }, { 0x3f, 1.875f }, { 0x40, 2.0f },
		{ 0x48, 4.0f }, { 0x70, 128.0f }, { 0x77, 240.0f },
		{ 0x78, 256.0f }, { 0x7c, 384.0f }, { 0x7d, 416.0f },
		{ 0x7e, 448.0f }, { 0xb8, -1.0f }, { 0x81, -0x1p-9f },
		{ 0xfe, -448.0f }, { 0xc0, -2.0f },
	};
	size_t i;

	for (i = 0; i < ARRAY_SIZE(tab); i++)
		CHECK_MSG(moek_fp8_to_f32(tab[i].v) == tab[i].f,
			  "fp8 0x%02x = %g, want %g", tab[i].v,
			  moek_fp8_to_f32(tab[i].v), tab[i].f);
	CHECK(moek_fp8_to_f32(0x80) == 0.0f && signbit(moek_fp8_to_f32(0x80)));
	CHECK(isnan(moek_fp8_to_f32(0x7f)));
	CHECK(isnan(moek_fp8_to_f32(0xff)));
}

/* Every code against a formula written from the e4m3fn definition. */
TEST(fp8_decode_exhaustive)
{
	int v;
	float prev = -1.0f;

	for (v = 0; v < 256; v++) {
		int sign = v >> 7, e = (v >> 3) & 15, m = v & 7;
		double want;
		float got = moek_fp8_to_f32((uint8_t)v);

		if (e == 15 && m == 7) {
			CHECK_MSG(isnan(got), "0x%02x not NaN", v);
			continue;
		}
		want = e ? pow(2.0, e - 7) * (1.0 + m / 8.0) :
			   pow(2.0, -6) * (m / 8.0);
		if (sign)
			want = -want;
		CHECK_MSG(got == want, "0x%02x = %a, want %a", v, got, want);
		CHECK(!signbit(got) == !sign);
		if (v < 0x7f) {
			/* positive codes are monotonic */
			CHECK_MSG(got > prev || v == 0, "0x%02x not above", v);
			prev = got;
		}
		if (!isnan(got))
			CHECK_MSG(moek_f32_to_fp8(got) == v,
				  "round trip 0x%02x -> 0x%02x", v,
				  moek_f32_to_fp8(got));
	}
}

TEST(fp8_encode_rounding)
{
	int v;

	/*
	 * Exact ties go to the even code, anything off a tie to the nearer
	 * neighbour; for every pair of adjacent positive codes.
	 */
	for (v = 0; v < 0x7e; v++) {
		float lo = moek_fp8_to_f32((uint8_t)v);
		float hi = moek_fp8_to_f32((uint8_t)(v + 1));
		float mid = (lo + hi) / 2.0f;	/* exact in f32 */
		uint8_t even = (v & 1) ? (uint8_t)(v + 1) : (uint8_t)v;

		CHECK_MSG(moek_f32_to_fp8(mid) == even,
			  "tie %a -> 0x%02x, want 0x%02x", mid,
			  moek_f32_to_fp8(mid), even);
		CHECK(moek_f32_to_fp8(-mid) == (even | 0x80));
		CHECK(moek_f32_to_fp8(nextafterf(mid, 0.0f)) == v);
		CHECK(moek_f32_to_fp8(nextafterf(mid, 1e9f)) == v + 1);
	}
	CHECK_INT(moek_f32_to_fp8(1.0f), 0x38);
	CHECK_INT(moek_f32_to_fp8(1.0625f), 0x38);	/* tie, even */
	CHECK_INT(moek_f32_to_fp8(1.1875f), 0x3a);	/* tie, even */
	CHECK_INT(moek_f32_to_fp8(1.07f), 0x39);
	CHECK_INT(moek_f32_to_fp8(0x1p-10f), 0x00);	/* tie to 0 */
	CHECK_INT(moek_f32_to_fp8(0x1.0001p-10f), 0x01);
	CHECK_INT(moek_f32_to_fp8(3 * 0x1p-10f), 0x02);
	CHECK_INT(moek_f32_to_fp8(1e-30f), 0x00);
	CHECK_INT(moek_f32_to_fp8(-1e-30f), 0x80);
	CHECK_INT(moek_f32_to_fp8(FLT_TRUE_MIN), 0x00);
	CHECK_INT(moek_f32_to_fp8(0.0f), 0x00);
	CHECK_INT(moek_f32_to_fp8(-0.0f), 0x80);
	/* 7.875 subnormal units round up to the smallest normal */
	CHECK_INT(moek_f32_to_fp8(0x1.f8p-7f), 0x08);
	CHECK_INT(moek_f32_to_fp8(-0x1.f8p-7f), 0x88);
}

TEST(fp8_encode_saturation)
{
	CHECK_INT(moek_f32_to_fp8(448.0f), 0x7e);
	CHECK_INT(moek_f32_to_fp8(447.0f), 0x7e);
	CHECK_INT(moek_f32_to_fp8(431.0f), 0x7d);	/* < 432 = tie */
	CHECK_INT(moek_f32_to_fp8(432.0f), 0x7e);	/* tie to even */
	CHECK_INT(moek_f32_to_fp8(449.0f), 0x7e);
	CHECK_INT(moek_f32_to_fp8(464.0f), 0x7e);
	CHECK_INT(moek_f32_to_fp8(480.0f), 0x7e);
	CHECK_INT(moek_f32_to_fp8(1e30f), 0x7e);
	CHECK_INT(moek_f32_to_fp8(FLT_MAX), 0x7e);
	CHECK_INT(moek_f32_to_fp8(INFINITY), 0x7e);
	CHECK_INT(moek_f32_to_fp8(-449.0f), 0xfe);
	CHECK_INT(moek_f32_to_fp8(-INFINITY), 0xfe);
	CHECK_INT(moek_f32_to_fp8(NAN), 0x7f);
	CHECK_INT(moek_f32_to_fp8(-NAN), 0xff);
	CHECK_INT(moek_f32_to_fp8(bits_f32(0x7f800001u)), 0x7f);
	CHECK_INT(moek_f32_to_fp8(bits_f32(0xffc00000u)), 0xff);
}

TEST(bf16_conversions)
{
	uint32_t c;

	CHECK_INT(moek_f32_to_bf16(1.0f), 0x3f80);
	CHECK_INT(moek_f32_to_bf16(-1.0f), 0xbf80);
	CHECK_INT(moek_f32_to_bf16(0.0f), 0x0000);
	CHECK_INT(moek_f32_to_bf16(-0.0f), 0x8000);
	/* 1 + 2^-8 is the tie between 0x3f80 and 0x3f81: even wins */
	CHECK_INT(moek_f32_to_bf16(1.0f + 0x1p-8f), 0x3f80);
	CHECK_INT(moek_f32_to_bf16(1.0f + 3 * 0x1p-8f), 0x3f82);
	CHECK_INT(moek_f32_to_bf16(1.0f + 0x1p-8f + 0x1p-20f), 0x3f81);
	CHECK_INT(moek_f32_to_bf16(1.0f + 0x1p-8f - 0x1p-20f), 0x3f80);
	CHECK_INT(moek_f32_to_bf16(bits_f32(0x3f80ffffu)), 0x3f81);
	CHECK_INT(moek_f32_to_bf16(INFINITY), 0x7f80);
	CHECK_INT(moek_f32_to_bf16(-INFINITY), 0xff80);
	CHECK_INT(moek_f32_to_bf16(FLT_MAX), 0x7f80);	/* rounds up */
	CHECK_INT(moek_f32_to_bf16(bits_f32(0x7f7f7fffu)), 0x7f7f);
	CHECK_INT(moek_f32_to_bf16(FLT_TRUE_MIN), 0x0000);
	CHECK_INT(moek_f32_to_bf16(bits_f32(0x00008000u)), 0x0000);
	CHECK_INT(moek_f32_to_bf16(bits_f32(0x00018000u)), 0x0002);
	CHECK(isnan(moek_bf16_to_f32(moek_f32_to_bf16(NAN))));
	/* a NaN whose payload is only in the low half must not become inf */
	CHECK(isnan(moek_bf16_to_f32(moek_f32_to_bf16(bits_f32(0x7f800001u)))));
	CHECK(isnan(moek_bf16_to_f32(moek_f32_to_bf16(bits_f32(0xff800001u)))));
	CHECK(moek_f32_to_bf16(bits_f32(0xff800001u)) & 0x8000);
	CHECK(moek_bf16_to_f32(0x4049) == 3.140625f);
	CHECK(moek_bf16_to_f32(0xc000) == -2.0f);
	/* every non-NaN bf16 survives the round trip exactly */
	for (c = 0; c < 0x10000; c++) {
		float f = moek_bf16_to_f32((uint16_t)c);

		CHECK(f32_bits(f) == c << 16);
		if (!isnan(f))
			CHECK_MSG(moek_f32_to_bf16(f) == c, "0x%04x", c);
	}
}

TEST(act_quant_row)
{
	enum { N = 300 };	/* blocks of 128, 128 and a partial 44 */
	float x[N], sc[3];
	uint8_t q[N];
	uint64_t rng = 7;
	size_t i, b;

	for (i = 0; i < N; i++)
		x[i] = 3.0f * rng_unit(&rng);
	x[5] = -7.5f;		/* block 0's amax, negative */
	for (i = 256; i < N; i++)
		x[i] = 1e-6f * rng_unit(&rng);	/* below the 1e-4 floor */
	memset(sc, 0, sizeof(sc));
	moek_act_quant_row(x, N, q, sc);
	CHECK(sc[0] == 7.5f / 448.0f);
	CHECK(q[5] == 0xfe);
	CHECK(sc[2] == 1e-4f / 448.0f);
	for (b = 0; b < 3; b++) {
		float amax = 0.0f;
		size_t end = (b + 1) * 128 < N ? (b + 1) * 128 : N;

		for (i = b * 128; i < end; i++)
			amax = fmaxf(amax, fabsf(x[i]));
		CHECK(sc[b] == fmaxf(amax, 1e-4f) / 448.0f);
		for (i = b * 128; i < end; i++) {
			double back = moek_fp8_to_f32(q[i]) * (double)sc[b];
			double err = fabs(back - x[i]);

			CHECK_INT(q[i], moek_f32_to_fp8(x[i] / sc[b]));
			/*
			 * half an ulp: 2^-4 relative, 2^-10 units below
			 * the normal range, plus f32 division slack
			 */
			CHECK_MSG(err <= fmax(fabs(x[i]) * 0x1p-4,
					      0x1p-10 * sc[b]) * 1.0001,
				  "x[%zu] = %g back %g", i, x[i], back);
		}
	}

	/* zeros: the floor keeps the scale positive, codes are 0 */
	memset(x, 0, sizeof(x));
	moek_act_quant_row(x, 5, q, sc);
	CHECK(sc[0] == 1e-4f / 448.0f);
	for (i = 0; i < 5; i++)
		CHECK_INT(q[i], 0);

	/* exact block: 1 and 0.5 map to 448 and 224 */
	x[0] = 1.0f;
	x[1] = -0.5f;
	moek_act_quant_row(x, 2, q, sc);
	CHECK_INT(q[0], 0x7e);
	CHECK_INT(q[1], 0xf6);
	CHECK(sc[0] == 1.0f / 448.0f);
}

/* ---- shapes and sizes ------------------------------------------------ */

TEST(shape_check_valid)
{
	struct moek_shape s = small_shape();

	CHECK_INT(moek_shape_check(&s), 0);
	s = v2_lite_shape();
	CHECK_INT(moek_shape_check(&s), 0);
	s = v3_shape();
	CHECK_INT(moek_shape_check(&s), 0);
	/* no grouping: topk_groups is not looked at */
	s = small_shape();
	s.n_groups = 0;
	s.topk_groups = 99;
	CHECK_INT(moek_shape_check(&s), 0);
	s.n_groups = 1;
	s.topk_groups = 0;
	CHECK_INT(moek_shape_check(&s), 0);
	s.topk = s.n_experts;
	CHECK_INT(moek_shape_check(&s), 0);
	s.n_experts = MOEK_MAX_EXPERTS;
	s.topk = MOEK_MAX_TOPK;
	CHECK_INT(moek_shape_check(&s), 0);
	/* limits of grouping: groups of 2, topk = all kept experts */
	s = small_shape();
	s.n_groups = 4;
	s.topk_groups = 1;
	s.topk = 2;
	CHECK_INT(moek_shape_check(&s), 0);
	s.topk_groups = 4;
	s.topk = 8;
	CHECK_INT(moek_shape_check(&s), 0);
	s = small_shape();
	s.n_shared = 0;
	s.n_experts = 1;
	s.n_groups = 0;
	s.topk = 1;
	s.score = MOEK_SCORE_SOFTMAX;
	s.norm_topk = 0;
	s.wtype = MOEK_FP8_E4M3;
	s.gtype = MOEK_BF16;
	s.route_scale = 1e-30f;
	CHECK_INT(moek_shape_check(&s), 0);
}

TEST(shape_check_einval)
{
	struct moek_shape s;

#define BAD(field, val)							\
	do {								\
		s = small_shape();					\
		s.field = val;						\
		CHECK_MSG(moek_shape_check(&s) == -EINVAL,		\
			  "%s = %s accepted", #field, #val);		\
	} while (0)

	CHECK_INT(moek_shape_check(NULL), -EINVAL);
	BAD(dim, 0);
	BAD(inter, 0);
	BAD(n_experts, 0);
	BAD(n_experts, MOEK_MAX_EXPERTS + 1);
	BAD(topk, 0);
	BAD(topk, 9);				/* > n_experts */
	BAD(n_groups, 3);			/* does not divide 8 */
	BAD(n_groups, 8);			/* groups of 1 */
	BAD(n_groups, 16);
	BAD(topk_groups, 0);
	BAD(topk_groups, 5);			/* > n_groups */
	BAD(score, 2);
	BAD(norm_topk, 2);
	BAD(wtype, 3);
	BAD(gtype, MOEK_FP8_E4M3);
	BAD(gtype, 3);
	BAD(route_scale, 0.0f);
	BAD(route_scale, -1.0f);
	BAD(route_scale, NAN);
	BAD(route_scale, INFINITY);
	BAD(n_shared, UINT32_MAX);		/* width overflows */
#undef BAD
	/* topk above the kept groups' experts: 1 group of 2 kept, topk 3 */
	s = small_shape();
	s.topk_groups = 1;
	s.topk = 3;
	CHECK_INT(moek_shape_check(&s), -EINVAL);
	/* topk over MOEK_MAX_TOPK with enough experts */
	s = small_shape();
	s.n_groups = 0;
	s.n_experts = 128;
	s.topk = MOEK_MAX_TOPK + 1;
	CHECK_INT(moek_shape_check(&s), -EINVAL);
}

TEST(matrix_sizes)
{
	CHECK_U64(moek_matrix_bytes(MOEK_F32, 3, 5), 60);
	CHECK_U64(moek_matrix_bytes(MOEK_BF16, 3, 5), 30);
	CHECK_U64(moek_matrix_bytes(MOEK_FP8_E4M3, 3, 5), 15);
	CHECK_U64(moek_matrix_bytes(7, 3, 5), 0);
	CHECK_U64(moek_matrix_bytes(MOEK_F32, SIZE_MAX / 2, 3), 0);
	/* rows * cols wraps to a small number: (2^32 + 1) * 2^32 = 2^32 */
	if (SIZE_MAX / UINT32_MAX > UINT32_MAX)
		CHECK_U64(moek_matrix_bytes(MOEK_FP8_E4M3,
					    (size_t)UINT32_MAX + 2,
					    (size_t)UINT32_MAX + 1), 0);
	CHECK_U64(moek_scale_count(1, 1), 1);
	CHECK_U64(moek_scale_count(128, 128), 1);
	CHECK_U64(moek_scale_count(129, 128), 2);
	CHECK_U64(moek_scale_count(2048, 7168), 16 * 56);
	CHECK_U64(moek_scale_count(300, 200), 3 * 2);
	CHECK_U64(moek_scale_count(0, 5), 0);
}

TEST(active_bytes)
{
	struct moek_shape s = small_shape();
	uint32_t counts[8] = { 1, 0, 2, 0, 0, 0, 0, 0 };
	uint32_t c4[4] = { 0, 5, 0, 1 };

	/*
	 * f32, dim 4, inter 3, 4 experts, 1 shared: gate 64, bias 16,
	 * every FFN 3 * 12 * 4 = 144
	 */
	s.dim = 4;
	s.inter = 3;
	s.n_experts = 4;
	s.n_groups = 0;
	CHECK_U64(moek_active_bytes(&s, counts), 64 + 16 + 144 + 2 * 144);
	CHECK_U64(moek_active_bytes(&s, NULL), 64 + 16 + 144 + 4 * 144);
	s.n_shared = 0;
	CHECK_U64(moek_active_bytes(&s, counts), 64 + 16 + 2 * 144);
	memset(counts, 0, sizeof(counts));
	CHECK_U64(moek_active_bytes(&s, counts), 64 + 16);

	/*
	 * fp8, dim 300, inter 200, 2 shared, bf16 gate: gate 2400, bias
	 * 16; shared width 400: 3 * 120000 + (12 + 12 + 12) * 4 scales;
	 * expert: 3 * 60000 + (6 + 6 + 6) * 4
	 */
	s.dim = 300;
	s.inter = 200;
	s.n_shared = 2;
	s.wtype = MOEK_FP8_E4M3;
	s.gtype = MOEK_BF16;
	CHECK_U64(moek_active_bytes(&s, c4),
		  2400 + 16 + 360144 + 2 * 180072);

	/* V3 FP8: 2 active experts + shared, each 44040192 + 2688 * 4 */
	s = v3_shape();
	{
		uint32_t *c = calloc(256, sizeof(*c));
		size_t ffn = 3 * 7168 * 2048 + 3 * 16 * 56 * 4;

		CHECK(c);
		c[3] = 7;
		c[200] = 1;
		CHECK_U64(moek_active_bytes(&s, c),
			  256 * 7168 * 2 + 256 * 4 + 3 * ffn);
		free(c);
		CHECK_U64(moek_active_bytes(&s, NULL),
			  256 * 7168 * 2 + 256 * 4 + 257 * ffn);
	}
	s.dim = 0;
	CHECK_U64(moek_active_bytes(&s, NULL), 0);
	CHECK_U64(moek_active_bytes(NULL, NULL), 0);
}

/* ---- router ---------------------------------------------------------- */

TEST(route_order_and_weights)
{
	struct moek_shape s = small_shape();
	const float lg[5] = { 0.1f, 0.5f, -1.0f, 3.0f, 0.7f };
	int32_t idx[3];
	float w[3];

	s.n_experts = 5;
	s.n_groups = 0;
	s.topk = 3;
	s.norm_topk = 0;
	CHECK_INT(route_logits(s, lg, NULL, idx, w), 0);
	CHECK_INT(idx[0], 3);
	CHECK_INT(idx[1], 4);
	CHECK_INT(idx[2], 1);
	CHECK(w[0] == (float)sigm(3.0));
	CHECK(w[1] == (float)sigm(0.7f));
	CHECK(w[2] == (float)sigm(0.5));

	/* route_scale multiplies, before any rounding to f32 */
	s.route_scale = 2.5f;
	CHECK_INT(route_logits(s, lg, NULL, idx, w), 0);
	CHECK(w[0] == (float)(sigm(3.0) * 2.5));
	CHECK(w[2] == (float)(sigm(0.5) * 2.5));

	/* norm: the weights sum to route_scale, ratios kept */
	s.norm_topk = 1;
	CHECK_INT(route_logits(s, lg, NULL, idx, w), 0);
	{
		double sum = sigm(3.0) + sigm(0.7f) + sigm(0.5);

		CHECK(close_rel(w[0], sigm(3.0) / sum * 2.5, 1e-7));
		CHECK(close_rel(w[1], sigm(0.7f) / sum * 2.5, 1e-7));
		CHECK(close_rel(w[0] + w[1] + w[2], 2.5, 1e-6));
	}
}

TEST(route_softmax_vs_sigmoid)
{
	struct moek_shape s = small_shape();
	const float lg[4] = { 1.0f, -2.0f, 0.25f, 2.0f };
	double z = exp(1.0) + exp(-2.0) + exp(0.25) + exp(2.0);
	int32_t idx[2];
	float w[2];

	s.n_experts = 4;
	s.n_groups = 0;
	s.topk = 2;
	s.norm_topk = 0;
	s.score = MOEK_SCORE_SOFTMAX;
	CHECK_INT(route_logits(s, lg, NULL, idx, w), 0);
	CHECK_INT(idx[0], 3);
	CHECK_INT(idx[1], 0);
	/* softmax over all four experts, not only the chosen two */
	CHECK(close_rel(w[0], exp(2.0) / z, 1e-7));
	CHECK(close_rel(w[1], exp(1.0) / z, 1e-7));
	s.norm_topk = 1;
	CHECK_INT(route_logits(s, lg, NULL, idx, w), 0);
	CHECK(close_rel(w[0], exp(2.0) / (exp(2.0) + exp(1.0)), 1e-7));

	s.score = MOEK_SCORE_SIGMOID;
	s.norm_topk = 0;
	CHECK_INT(route_logits(s, lg, NULL, idx, w), 0);
	CHECK_INT(idx[0], 3);
	CHECK_INT(idx[1], 0);
	CHECK(close_rel(w[0], sigm(2.0), 1e-7));
	CHECK(close_rel(w[1], sigm(1.0), 1e-7));

	/* softmax with huge logits stays finite (max subtracted) */
	{
		const float big[4] = { 1000.0f, 999.0f, -1000.0f, 0.0f };

		s.score = MOEK_SCORE_SOFTMAX;
		CHECK_INT(route_logits(s, big, NULL, idx, w), 0);
		CHECK_INT(idx[0], 0);
		CHECK_INT(idx[1], 1);
		CHECK(close_rel(w[0], 1.0 / (1.0 + exp(-1.0)), 1e-6));
	}
}

TEST(route_ties_lower_index)
{
	struct moek_shape s = small_shape();
	const float lg[6] = { 1.0f, 2.0f, 2.0f, 1.0f, 2.0f, 0.0f };
	const float flat[6] = { 0 };
	int32_t idx[6];
	float w[6];
	int k;

	s.n_experts = 6;
	s.n_groups = 0;
	s.topk = 4;
	s.norm_topk = 0;
	CHECK_INT(route_logits(s, lg, NULL, idx, w), 0);
	CHECK_INT(idx[0], 1);
	CHECK_INT(idx[1], 2);
	CHECK_INT(idx[2], 4);
	CHECK_INT(idx[3], 0);

	/* all equal: 0, 1, 2, ... with equal weights */
	s.topk = 3;
	s.norm_topk = 1;
	CHECK_INT(route_logits(s, flat, NULL, idx, w), 0);
	for (k = 0; k < 3; k++) {
		CHECK_INT(idx[k], k);
		CHECK(close_rel(w[k], 1.0 / 3.0, 1e-7));
	}
	/* equal after the bias: the bias breaks nothing by index */
	{
		const float b[6] = { 0, 0, 0, 0.5f, 0.5f, 0.5f };

		CHECK_INT(route_logits(s, flat, b, idx, w), 0);
		for (k = 0; k < 3; k++)
			CHECK_INT(idx[k], 3 + k);
	}
	/* softmax, all equal: each weight 1/n before norm */
	s.score = MOEK_SCORE_SOFTMAX;
	s.norm_topk = 0;
	CHECK_INT(route_logits(s, flat, NULL, idx, w), 0);
	for (k = 0; k < 3; k++) {
		CHECK_INT(idx[k], k);
		CHECK(close_rel(w[k], 1.0 / 6.0, 1e-7));
	}
}

TEST(route_topk_all)
{
	struct moek_shape s = small_shape();
	const float lg[8] = { 0.5f, -1.0f, 2.0f, 0.5f, 3.0f, -4.0f, 0.0f,
			      1.0f };
	const int32_t want[8] = { 4, 2, 7, 0, 3, 6, 1, 5 };
	int32_t idx[8];
	float w[8];
	double sum = 0.0;
	int k;

	s.n_groups = 0;
	s.topk = 8;
	CHECK_INT(route_logits(s, lg, NULL, idx, w), 0);
	for (k = 0; k < 8; k++) {
		CHECK_INT(idx[k], want[k]);
		sum += w[k];
		if (k)
			CHECK(w[k] <= w[k - 1]);
	}
	CHECK(close_rel(sum, 1.0, 1e-6));
	/* all groups kept, every expert taken */
	s.n_groups = 4;
	s.topk_groups = 4;
	CHECK_INT(route_logits(s, lg, NULL, idx, w), 0);
	for (k = 0; k < 8; k++)
		CHECK_INT(idx[k], want[k]);
}

TEST(route_bias_selects_only)
{
	struct moek_shape s = small_shape();
	const float lg[4] = { 2.0f, 0.0f, 0.0f, 0.0f };
	const float b[4] = { 0.0f, 0.0f, 0.0f, 5.0f };
	int32_t idx[2];
	float w[2];

	s.n_experts = 4;
	s.n_groups = 0;
	s.topk = 2;
	s.norm_topk = 0;
	CHECK_INT(route_logits(s, lg, b, idx, w), 0);
	CHECK_INT(idx[0], 3);
	CHECK_INT(idx[1], 0);
	CHECK(w[0] == 0.5f);			/* sigmoid(0), no bias */
	CHECK(w[1] == (float)sigm(2.0));
}

/*
 * 8 experts, groups {0,1} {2,3} {4,5} {6,7}, 2 groups kept, top-4.
 * logits 5, 4.9 | 1, 0 | 3, 2.9 | 4, -5.
 * No bias: group score = max = 5, 1, 3, 4: keep groups 0 and 3, so
 *   idx = 0, 1, 6, 7 (ungrouped top-4 would be 0, 1, 6, 4).
 * Bias 0: group score = top-2 sum of sigmoids = 1.986, 1.231, 1.900,
 *   0.989: keep groups 0 and 2, idx = 0, 1, 4, 5.
 */
TEST(route_group_limiting)
{
	struct moek_shape s = small_shape();
	const float lg[8] = { 5.0f, 4.9f, 1.0f, 0.0f, 3.0f, 2.9f, 4.0f,
			      -5.0f };
	const float zero[8] = { 0 };
	int32_t idx[4];
	float w[4];

	s.topk = 4;
	s.norm_topk = 0;
	CHECK_INT(route_logits(s, lg, NULL, idx, w), 0);
	CHECK_INT(idx[0], 0);
	CHECK_INT(idx[1], 1);
	CHECK_INT(idx[2], 6);
	CHECK_INT(idx[3], 7);
	CHECK(w[3] == (float)sigm(-5.0));

	CHECK_INT(route_logits(s, lg, zero, idx, w), 0);
	CHECK_INT(idx[0], 0);
	CHECK_INT(idx[1], 1);
	CHECK_INT(idx[2], 4);
	CHECK_INT(idx[3], 5);

	s.n_groups = 0;
	CHECK_INT(route_logits(s, lg, NULL, idx, w), 0);
	CHECK_INT(idx[2], 6);
	CHECK_INT(idx[3], 4);

	/* group ties: equal group scores keep the lower groups */
	{
		const float flat[8] = { 0 };

		s.n_groups = 4;
		s.topk_groups = 2;
		CHECK_INT(route_logits(s, flat, zero, idx, w), 0);
		CHECK_INT(idx[0], 0);
		CHECK_INT(idx[1], 1);
		CHECK_INT(idx[2], 2);
		CHECK_INT(idx[3], 3);
	}
}

/*
 * Masked groups must be -inf, not 0: with a bias of -2 every biased
 * score is in (-2, -1), so a group masked to 0 would beat the kept one.
 * Group 3 (experts 6, 7) is the best and the only one kept; masking to 0
 * would pick experts 0 and 1 instead.
 */
TEST(route_negative_bias_beats_mask)
{
	struct moek_shape s = small_shape();
	const float lg[8] = { -1.0f, -1.0f, 0.0f, 0.5f, -3.0f, 1.0f, 2.0f,
			      3.0f };
	const float b[8] = { -2, -2, -2, -2, -2, -2, -2, -2 };
	int32_t idx[2];
	float w[2];

	s.topk_groups = 1;
	s.topk = 2;
	s.norm_topk = 0;
	CHECK_INT(route_logits(s, lg, b, idx, w), 0);
	CHECK_INT(idx[0], 7);
	CHECK_INT(idx[1], 6);
	CHECK(w[0] == (float)sigm(3.0));
	CHECK(w[1] == (float)sigm(2.0));
	/* same without bias (max rule): still group 3 */
	CHECK_INT(route_logits(s, lg, NULL, idx, w), 0);
	CHECK_INT(idx[0], 7);
	CHECK_INT(idx[1], 6);
	/* a bias that makes every kept score very negative */
	{
		const float nb[8] = { 0, 0, 0, 0, 0, 0, -100, -50 };

		s.topk_groups = 1;
		CHECK_INT(route_logits(s, lg, nb, idx, w), 0);
		/* group sums: g0 .54, g1 1.12, g2 .78, g3 -148: keep g1 */
		CHECK_INT(idx[0], 3);
		CHECK_INT(idx[1], 2);
	}
}

/*
 * A NaN score (a NaN in expert 0's gate row) never beats a number, in a
 * group's score or in the top-k; with every expert taken it comes last.
 * But it still beats the discarded groups' experts: those are out of the
 * top-k, not -inf (which beats a NaN).
 */
TEST(route_nan_never_wins)
{
	struct moek_shape s = small_shape();
	const float lg[8] = { NAN, 0.5f, 1.0f, -1.0f, -2.0f, 0.0f, -3.0f,
			      0.25f };
	const float lg2[8] = { 0.5f, NAN, 1.0f, -1.0f, -2.0f, 0.0f, -3.0f,
			       0.25f };
	const float lg3[8] = { 3.0f, 2.0f, 1.0f, 0.5f, -1.0f, -1.0f, -1.0f,
			       -1.0f };
	const float nan_bias[8] = { NAN, 0, 0, 0, 0, 0, 0, 0 };
	const int32_t all[8] = { 2, 1, 7, 5, 3, 4, 6, 0 };
	int32_t idx[8];
	float w[8];
	int k;

	s.n_groups = 0;
	s.norm_topk = 0;
	CHECK_INT(route_logits(s, lg, NULL, idx, w), 0);
	CHECK_INT(idx[0], 2);
	CHECK_INT(idx[1], 1);
	CHECK(w[0] == (float)sigm(1.0));
	/* groups {0,1} {2,3} {4,5} {6,7}, max rule: 0.5 (not NaN), 1,
	 * 0, 0.25: groups 1 and 0 kept; the same with the NaN second in
	 * its group */
	s.n_groups = 4;
	s.topk_groups = 2;
	s.topk = 3;
	CHECK_INT(route_logits(s, lg, NULL, idx, w), 0);
	CHECK_INT(idx[0], 2);
	CHECK_INT(idx[1], 1);
	CHECK_INT(idx[2], 3);
	CHECK_INT(route_logits(s, lg2, NULL, idx, w), 0);
	CHECK_INT(idx[0], 2);
	CHECK_INT(idx[1], 0);
	CHECK_INT(idx[2], 3);
	/* the kept groups' four experts: the NaN one last, not expert 4 */
	s.topk = 4;
	CHECK_INT(route_logits(s, lg2, NULL, idx, w), 0);
	CHECK_INT(idx[3], 1);
	/* a NaN bias (two groups of four, group 0 kept: 0.88 + 0.73 against
	 * 0.27 + 0.27): expert 0 comes after 1, 2, 3, before experts 4..7,
	 * with its unbiased weight */
	s.n_groups = 2;
	s.topk_groups = 1;
	CHECK_INT(route_logits(s, lg3, nan_bias, idx, w), 0);
	CHECK_INT(idx[0], 1);
	CHECK_INT(idx[1], 2);
	CHECK_INT(idx[2], 3);
	CHECK_INT(idx[3], 0);
	CHECK(w[3] == (float)sigm(3.0));
	s.n_groups = 0;
	s.topk = 8;
	CHECK_INT(route_logits(s, lg, NULL, idx, w), 0);
	for (k = 0; k < 8; k++)
		CHECK_INT(idx[k], all[k]);
	CHECK(isnan(w[7]));
}

/*
 * Sigmoid scores of logits of -1000 are 0 in double: with norm_topk the
 * sum of the chosen is 0, and the weights stay 0 rather than 0 / 0.
 */
TEST(route_all_scores_zero)
{
	struct moek_shape s = small_shape();
	const float lg[8] = { -1000, -1000, -1000, -1000, -1000, -1000,
			      -1000, -1000 };
	int32_t idx[2];
	float w[2];

	CHECK_INT(route_logits(s, lg, NULL, idx, w), 0);
	CHECK_INT(idx[0], 0);
	CHECK_INT(idx[1], 1);
	CHECK(w[0] == 0.0f && w[1] == 0.0f);
}

TEST(route_zero_and_one_token)
{
	struct moek_shape s = small_shape();
	struct moek_weights wt = { 0 };
	float gate[8 * 16], x[16];
	int32_t idx[2] = { -7, -7 };
	float w[2] = { -7.0f, -7.0f };
	size_t i;

	for (i = 0; i < ARRAY_SIZE(gate); i++)
		gate[i] = (float)((i * 37) % 11) - 5.0f;
	for (i = 0; i < 16; i++)
		x[i] = 0.1f * (float)i;
	wt.gate = gate;
	CHECK_INT(moek_ref_route(&s, &wt, x, 0, idx, w), 0);
	CHECK_INT(moek_ref_route(&s, &wt, NULL, 0, NULL, NULL), 0);
	CHECK_INT(idx[0], -7);
	CHECK(w[0] == -7.0f);
	CHECK_INT(moek_ref_route(&s, &wt, x, 1, idx, w), 0);
	{
		int32_t oi[2];
		float ow[2];

		CHECK_INT(oracle_route(&s, gate, NULL, x, oi, ow), 0);
		CHECK_INT(idx[0], oi[0]);
		CHECK_INT(idx[1], oi[1]);
		CHECK(close_rel(w[0], ow[0], 1e-6));
	}
}

/* A bf16 gate routes as the f32 gate holding the same values. */
TEST(route_bf16_gate)
{
	struct moek_shape s = small_shape();
	struct moek_weights wt = { 0 };
	float gate[8 * 16], x[4 * 16], w1[8], w2[8];
	uint16_t gb[8 * 16];
	int32_t i1[8], i2[8];
	uint64_t rng = 99;
	size_t i;

	for (i = 0; i < ARRAY_SIZE(gate); i++) {
		gb[i] = moek_f32_to_bf16(rng_unit(&rng));
		gate[i] = moek_bf16_to_f32(gb[i]);
	}
	for (i = 0; i < ARRAY_SIZE(x); i++)
		x[i] = rng_unit(&rng);
	wt.gate = gate;
	CHECK_INT(moek_ref_route(&s, &wt, x, 4, i1, w1), 0);
	s.gtype = MOEK_BF16;
	wt.gate = gb;
	CHECK_INT(moek_ref_route(&s, &wt, x, 4, i2, w2), 0);
	CHECK(!memcmp(i1, i2, sizeof(i1)));
	CHECK(!memcmp(w1, w2, sizeof(w1)));
}

/* Real shapes, 16 random tokens each, against the sorting router. */
static const char *check_route_shape(struct moek_shape s, int with_bias,
				     uint64_t seed)
{
	enum { NTOK = 16 };
	struct layer_buf L;
	float *x = rand_acts((size_t)NTOK * s.dim, seed);
	int32_t idx[NTOK * MOEK_MAX_TOPK], oi[MOEK_MAX_TOPK];
	float w[NTOK * MOEK_MAX_TOPK], ow[MOEK_MAX_TOPK];
	static char why[200];
	const char *err = NULL;
	size_t t, k;

	/* only the gate is needed: no FFN sets, no shared */
	s.n_shared = 0;
	s.inter = 1;
	s.wtype = MOEK_F32;
	if (!x || layer_buf_init(&L, &s, 1, with_bias, seed + 1)) {
		free(x);
		return "out of memory";
	}
	if (moek_ref_route(&s, &L.wt, x, NTOK, idx, w)) {
		err = "moek_ref_route failed";
		goto out;
	}
	for (t = 0; t < NTOK && !err; t++) {
		double sum = 0.0;

		if (oracle_route(&s, L.gate, L.bias, x + t * s.dim, oi, ow)) {
			err = "out of memory";
			break;
		}
		for (k = 0; k < s.topk; k++) {
			sum += w[t * s.topk + k];
			if (idx[t * s.topk + k] != oi[k] ||
			    !close_rel(w[t * s.topk + k], ow[k], 1e-6)) {
				snprintf(why, sizeof(why),
					 "token %zu k %zu: %d %g, want %d %g",
					 t, k, idx[t * s.topk + k],
					 w[t * s.topk + k], oi[k], ow[k]);
				err = why;
				break;
			}
		}
		if (!err && s.norm_topk && !close_rel(sum, s.route_scale, 1e-5))
			err = "weights do not sum to route_scale";
		/* at most topk_groups distinct groups */
		if (!err && s.n_groups > 1) {
			unsigned int seen = 0, ng = 0;
			uint32_t gs = s.n_experts / s.n_groups;

			for (k = 0; k < s.topk; k++)
				seen |= 1u << (idx[t * s.topk + k] / gs);
			for (; seen; seen &= seen - 1)
				ng++;
			if (ng > s.topk_groups)
				err = "too many groups";
		}
	}
out:
	layer_buf_free(&L);
	free(x);
	return err;
}

TEST(route_v2_lite_shape)
{
	struct moek_shape s = v2_lite_shape();
	const char *err;

	err = check_route_shape(s, 0, 11);
	CHECK_MSG(!err, "%s", err);
	s.gtype = MOEK_F32;
	s.norm_topk = 1;
	err = check_route_shape(s, 0, 12);
	CHECK_MSG(!err, "%s", err);
	/*
	 * V2 (236B)-style group limiting on the Lite sizes: 8 groups, 3 kept,
	 * max rule
	 */
	s.n_groups = 8;
	s.topk_groups = 3;
	err = check_route_shape(s, 0, 13);
	CHECK_MSG(!err, "%s", err);
}

TEST(route_v3_shape)
{
	struct moek_shape s = v3_shape();
	const char *err;

	err = check_route_shape(s, 1, 21);
	CHECK_MSG(!err, "%s", err);
	s.gtype = MOEK_F32;
	err = check_route_shape(s, 1, 22);
	CHECK_MSG(!err, "%s", err);
	err = check_route_shape(s, 0, 23);
	CHECK_MSG(!err, "%s", err);
}

TEST(route_einval)
{
	struct moek_shape s = small_shape();
	struct moek_weights wt = { 0 };
	float gate[8 * 16] = { 0 }, x[16] = { 0 };
	int32_t idx[2] = { -7, -7 };
	float w[2];

	CHECK_INT(moek_ref_route(&s, &wt, x, 1, idx, w), -EINVAL);
	wt.gate = gate;
	CHECK_INT(moek_ref_route(NULL, &wt, x, 1, idx, w), -EINVAL);
	CHECK_INT(moek_ref_route(&s, NULL, x, 1, idx, w), -EINVAL);
	CHECK_INT(moek_ref_route(&s, &wt, NULL, 1, idx, w), -EINVAL);
	CHECK_INT(moek_ref_route(&s, &wt, x, 1, NULL, w), -EINVAL);
	CHECK_INT(moek_ref_route(&s, &wt, x, 1, idx, NULL), -EINVAL);
	s.topk = 0;
	CHECK_INT(moek_ref_route(&s, &wt, x, 1, idx, w), -EINVAL);
	/* a bad shape is refused even with no tokens */
	CHECK_INT(moek_ref_route(&s, &wt, x, 0, idx, w), -EINVAL);
	CHECK_INT(idx[0], -7);
}

/* ---- FFN ------------------------------------------------------------- */

/*
 * dim 2, inter 1: w1 = [1 2], w3 = [0.5 -1], w2 = [2; -3].
 * x = (1, 1): h = 3, g = -0.5, a = silu(3) * -0.5 = -1.4288612..,
 * y = (2a, -3a). x = (0, 0): y = 0.
 */
TEST(ffn_hand)
{
	struct moek_shape s = small_shape();
	const float w1[2] = { 1.0f, 2.0f }, w3[2] = { 0.5f, -1.0f };
	const float w2[2] = { 2.0f, -3.0f };
	const float x[6] = { 1.0f, 1.0f, 0.0f, 0.0f, -2.0f, 0.5f };
	struct moek_ffn f = { .w1 = w1, .w2 = w2, .w3 = w3 };
	double a = 3.0 / (1.0 + exp(-3.0)) * -0.5;
	/* x = (-2, 0.5): h = -1, g = -1.5, a2 = silu(-1) * -1.5 */
	double a2 = -1.0 / (1.0 + exp(1.0)) * -1.5;
	float y[6];

	CHECK(fabs(a - -1.4288612) < 1e-7);
	s.dim = 2;
	s.inter = 1;
	CHECK_INT(moek_ref_ffn(&s, &f, 1, x, 3, y), 0);
	CHECK(y[0] == (float)(2 * a));
	CHECK(y[1] == (float)(-3 * a));
	CHECK(y[2] == 0.0f && y[3] == 0.0f);
	CHECK(y[4] == (float)(2 * a2));
	CHECK(y[5] == (float)(-3 * a2));

	/* the same in bf16: every weight is exact */
	{
		uint16_t b1[2], b2[2], b3[2];
		struct moek_ffn fb = { .w1 = b1, .w2 = b2, .w3 = b3 };
		float yb[6];
		int i;

		for (i = 0; i < 2; i++) {
			b1[i] = moek_f32_to_bf16(w1[i]);
			b2[i] = moek_f32_to_bf16(w2[i]);
			b3[i] = moek_f32_to_bf16(w3[i]);
		}
		s.wtype = MOEK_BF16;
		CHECK_INT(moek_ref_ffn(&s, &fb, 1, x, 3, yb), 0);
		CHECK(!memcmp(y, yb, sizeof(y)));
	}

	/*
	 * and in FP8, every weight an exact code with scale 1: w1 = 1.0
	 * (0x38), 2.0 (0x40); w3 = 0.5 (0x30), -1 (0xb8); w2 = 2 (0x40),
	 * -3 (0xc4). x = (1, 1) quantises exactly (448, 448, scale 1/448),
	 * so does the one-element intermediate: y within f32 rounding.
	 */
	{
		const uint8_t q1[2] = { 0x38, 0x40 }, q3[2] = { 0x30, 0xb8 };
		const uint8_t q2[2] = { 0x40, 0xc4 };
		const float one[2] = { 1.0f, 1.0f };
		struct moek_ffn f8 = {
			.w1 = q1, .w2 = q2, .w3 = q3,
			.s1 = one, .s2 = one, .s3 = one,
		};
		float y8[2];

		CHECK(moek_fp8_to_f32(0xc4) == -3.0f);
		s.wtype = MOEK_FP8_E4M3;
		CHECK_INT(moek_ref_ffn(&s, &f8, 1, x, 1, y8), 0);
		CHECK_MSG(close_rel(y8[0], 2 * a, 1e-6), "%g", y8[0]);
		CHECK_MSG(close_rel(y8[1], -3 * a, 1e-6), "%g", y8[1]);
	}
}

/* dim 3, inter 2, two tokens: every product spelled out. */
TEST(ffn_hand_wider)
{
	struct moek_shape s = small_shape();
	const float w1[6] = { 1, 0, -1, 0.5f, 0.5f, 0.5f };	/* [2][3] */
	const float w3[6] = { 2, 1, 0, 0, 0, 1 };
	const float w2[6] = { 1, 1, -1, 2, 0, 0.25f };		/* [3][2] */
	const float x[6] = { 1, 2, 3, -1, 0, 1 };
	struct moek_ffn f = { .w1 = w1, .w2 = w2, .w3 = w3 };
	float y[6];
	int t, o;

	s.dim = 3;
	s.inter = 2;
	CHECK_INT(moek_ref_ffn(&s, &f, 2, x, 2, y), 0);
	for (t = 0; t < 2; t++) {
		const float *xt = x + 3 * t;
		double h0 = xt[0] - xt[2];
		double h1 = 0.5 * (xt[0] + xt[1] + xt[2]);
		double g0 = 2 * xt[0] + xt[1], g1 = xt[2];
		double a0 = h0 / (1 + exp(-h0)) * g0;
		double a1 = h1 / (1 + exp(-h1)) * g1;
		double want[3] = { a0 + a1, -a0 + 2 * a1, 0.25 * a1 };

		for (o = 0; o < 3; o++)
			CHECK_MSG(y[3 * t + o] == (float)want[o],
				  "t %d o %d: %g want %g", t, o, y[3 * t + o],
				  want[o]);
	}
}

/* Dequantise an FP8 [rows][cols] matrix with its block scales to f32. */
static float *dequant(const uint8_t *q, const float *sc, size_t rows,
		      size_t cols)
{
	float *w = malloc(rows * cols * sizeof(float));
	size_t cb = (cols + 127) / 128, r, c;

	if (w)
		for (r = 0; r < rows; r++)
			for (c = 0; c < cols; c++)
				w[r * cols + c] = moek_fp8_to_f32(
					q[r * cols + c]) *
					sc[(r / 128) * cb + c / 128];
	return w;
}

/* The same in double: every fp8 * scale product exact. */
static double *dequant_d(const uint8_t *q, const float *sc, size_t rows,
			 size_t cols)
{
	double *w = malloc(rows * cols * sizeof(double));
	size_t cb = (cols + 127) / 128, r, c;

	if (w)
		for (r = 0; r < rows; r++)
			for (c = 0; c < cols; c++)
				w[r * cols + c] = (double)moek_fp8_to_f32(
					q[r * cols + c]) *
					sc[(r / 128) * cb + c / 128];
	return w;
}

/* Dequantise an act-quantised row to double. */
static void deq_row(const float *x, size_t n, double *out)
{
	uint8_t *q = malloc(n);
	float *sc = malloc((n + 127) / 128 * sizeof(float));
	size_t i;

	if (!q || !sc) {
		free(q);
		free(sc);
		memset(out, 0, n * sizeof(*out));
		return;
	}
	moek_act_quant_row(x, n, q, sc);
	for (i = 0; i < n; i++)
		out[i] = (double)moek_fp8_to_f32(q[i]) * sc[i / 128];
	free(q);
	free(sc);
}

/*
 * FP8 on partial blocks (dim 300, inter 200, 3 tokens):
 * 1. against the same FFN computed here on dequantised weights and
 *    dequantised (act-quantised) activations in plain double dot
 *    products: the blockwise fp8_gemm is the same sum, so within 1e-6 of
 *    the sum of the terms' magnitudes;
 * 2. against the f32 FFN on the dequantised weights (no act_quant): the
 *    activation quantisation error only, relative L2 error in
 *    (0.1%, 10%) (measured: 5.0%).
 */
TEST(ffn_fp8)
{
	enum { DIM = 300, INTER = 200, NTOK = 3 };
	struct moek_shape s = small_shape();
	struct ffn_buf b;
	uint64_t rng = 5;
	float *d1 = NULL, *d2 = NULL, *d3 = NULL, *x, y8[NTOK * DIM],
	      y32[NTOK * DIM];
	double *e1 = NULL, *e2 = NULL, *e3 = NULL;
	double xd[DIM], hd[INTER], en = 0.0, yn = 0.0;
	float hf[INTER];
	struct moek_ffn f8, f32;
	size_t t, i, j;

	s.dim = DIM;
	s.inter = INTER;
	s.wtype = MOEK_FP8_E4M3;
	CHECK(!ffn_buf_init(&b, MOEK_FP8_E4M3, INTER, DIM, &rng));
	x = rand_acts(NTOK * DIM, 77);
	d1 = dequant(b.w1, b.s1, INTER, DIM);
	d2 = dequant(b.w2, b.s2, DIM, INTER);
	d3 = dequant(b.w3, b.s3, INTER, DIM);
	e1 = dequant_d(b.w1, b.s1, INTER, DIM);
	e2 = dequant_d(b.w2, b.s2, DIM, INTER);
	e3 = dequant_d(b.w3, b.s3, INTER, DIM);
	if (!x || !d1 || !d2 || !d3 || !e1 || !e2 || !e3) {
		h_fail(__FILE__, __LINE__, "out of memory");
		goto out;
	}
	for (i = 0; i < DIM; i++)	/* a wide range within block 1 */
		x[i] *= (i >= 128 && i < 256) ? 100.0f : 1.0f;
	f8 = ffn_view(&b);
	if (moek_ref_ffn(&s, &f8, INTER, x, NTOK, y8)) {
		h_fail(__FILE__, __LINE__, "fp8 ffn failed");
		goto out;
	}
	s.wtype = MOEK_F32;
	f32 = (struct moek_ffn){ .w1 = d1, .w2 = d2, .w3 = d3 };
	if (moek_ref_ffn(&s, &f32, INTER, x, NTOK, y32)) {
		h_fail(__FILE__, __LINE__, "f32 ffn failed");
		goto out;
	}
	for (t = 0; t < NTOK; t++) {
		deq_row(x + t * DIM, DIM, xd);
		for (j = 0; j < INTER; j++) {
			double h = 0.0, g = 0.0;

			for (i = 0; i < DIM; i++) {
				h += e1[j * DIM + i] * xd[i];
				g += e3[j * DIM + i] * xd[i];
			}
			hf[j] = (float)(h / (1.0 + exp(-h)) * g);
		}
		deq_row(hf, INTER, hd);
		for (i = 0; i < DIM; i++) {
			double o = 0.0, mag = 0.0;

			for (j = 0; j < INTER; j++) {
				o += e2[i * INTER + j] * hd[j];
				mag += fabs(e2[i * INTER + j] * hd[j]);
			}
			if (!(fabs(y8[t * DIM + i] - o) <= 1e-6 * mag)) {
				h_fail(__FILE__, __LINE__,
				       "t %zu y[%zu] = %.9g, want %.9g", t, i,
				       y8[t * DIM + i], o);
				goto out;
			}
			en += pow(y8[t * DIM + i] - y32[t * DIM + i], 2);
			yn += pow(y32[t * DIM + i], 2);
		}
	}
	/*
	 * e4m3 keeps 3 mantissa bits: up to 2^-4 relative per element,
	 * about 3.6% RMS; two quantisation stages land near 5%
	 */
	if (!(sqrt(en / yn) < 0.1 && sqrt(en / yn) > 1e-3))
		h_fail(__FILE__, __LINE__, "fp8 vs f32 rel L2 error %g",
		       sqrt(en / yn));
out:
	ffn_buf_free(&b);
	free(x);
	free(d1);
	free(d2);
	free(d3);
	free(e1);
	free(e2);
	free(e3);
}

/* bf16 weights: the f32 FFN on the widened weights, bit for bit. */
TEST(ffn_bf16_vs_f32)
{
	enum { DIM = 130, INTER = 70, NTOK = 2 };
	struct moek_shape s = small_shape();
	struct ffn_buf b;
	uint64_t rng = 8;
	float *x = rand_acts(NTOK * DIM, 3), yb[NTOK * DIM], yf[NTOK * DIM];
	float *f1 = malloc(INTER * DIM * 4), *f2 = malloc(INTER * DIM * 4),
	      *f3 = malloc(INTER * DIM * 4);
	struct moek_ffn fb, ff = { .w1 = f1, .w2 = f2, .w3 = f3 };
	size_t i;
	int ok = 0;

	s.dim = DIM;
	s.wtype = MOEK_BF16;
	if (ffn_buf_init(&b, MOEK_BF16, INTER, DIM, &rng))
		memset(&b, 0, sizeof(b));
	if (x && f1 && f2 && f3 && b.w1) {
		for (i = 0; i < INTER * DIM; i++) {
			f1[i] = moek_bf16_to_f32(((uint16_t *)b.w1)[i]);
			f2[i] = moek_bf16_to_f32(((uint16_t *)b.w2)[i]);
			f3[i] = moek_bf16_to_f32(((uint16_t *)b.w3)[i]);
		}
		fb = ffn_view(&b);
		ok = !moek_ref_ffn(&s, &fb, INTER, x, NTOK, yb);
		s.wtype = MOEK_F32;
		ok = ok && !moek_ref_ffn(&s, &ff, INTER, x, NTOK, yf);
		ok = ok && !memcmp(yb, yf, sizeof(yb));
	}
	ffn_buf_free(&b);
	free(x);
	free(f1);
	free(f2);
	free(f3);
	CHECK(ok);
}

TEST(ffn_einval)
{
	struct moek_shape s = small_shape();
	float w[16 * 8] = { 0 }, x[16] = { 0 }, y[16];
	float sc[1] = { 1.0f };
	struct moek_ffn f = { .w1 = w, .w2 = w, .w3 = w };

	y[0] = -7.0f;
	CHECK_INT(moek_ref_ffn(&s, &f, 8, x, 1, y), 0);
	CHECK_INT(moek_ref_ffn(&s, &f, 8, x, 0, NULL), 0);
	CHECK_INT(moek_ref_ffn(&s, &f, 8, NULL, 0, y), 0);
	CHECK_INT(moek_ref_ffn(NULL, &f, 8, x, 1, y), -EINVAL);
	CHECK_INT(moek_ref_ffn(&s, NULL, 8, x, 1, y), -EINVAL);
	CHECK_INT(moek_ref_ffn(&s, &f, 0, x, 1, y), -EINVAL);
	CHECK_INT(moek_ref_ffn(&s, &f, 8, NULL, 1, y), -EINVAL);
	CHECK_INT(moek_ref_ffn(&s, &f, 8, x, 1, NULL), -EINVAL);
	f.w1 = NULL;
	CHECK_INT(moek_ref_ffn(&s, &f, 8, x, 1, y), -EINVAL);
	f.w1 = w;
	f.w2 = NULL;
	CHECK_INT(moek_ref_ffn(&s, &f, 8, x, 1, y), -EINVAL);
	f.w2 = w;
	f.w3 = NULL;
	CHECK_INT(moek_ref_ffn(&s, &f, 8, x, 1, y), -EINVAL);
	f.w3 = w;
	/* FP8 needs all three scales */
	s.wtype = MOEK_FP8_E4M3;
	CHECK_INT(moek_ref_ffn(&s, &f, 8, x, 1, y), -EINVAL);
	f.s1 = sc;
	f.s2 = sc;
	CHECK_INT(moek_ref_ffn(&s, &f, 8, x, 1, y), -EINVAL);
	f.s3 = sc;
	f.s2 = NULL;
	CHECK_INT(moek_ref_ffn(&s, &f, 8, x, 1, y), -EINVAL);
	f.s2 = sc;
	CHECK_INT(moek_ref_ffn(&s, &f, 8, x, 1, y), 0);
	s.wtype = 9;
	CHECK_INT(moek_ref_ffn(&s, &f, 8, x, 1, y), -EINVAL);
	CHECK_INT(moek_ref_ffn(&s, &f, 8, x, 0, y), -EINVAL);
}

/* ---- layer ----------------------------------------------------------- */

TEST(layer_sum_of_ffns)
{
	static const uint32_t types[3] = { MOEK_F32, MOEK_BF16,
					   MOEK_FP8_E4M3 };
	struct moek_shape s = small_shape();
	struct layer_buf L;
	const char *err;
	int i;

	s.dim = 40;
	s.inter = 24;
	s.topk = 3;
	s.n_shared = 2;
	s.route_scale = 2.5f;
	for (i = 0; i < 3; i++) {
		s.wtype = types[i];
		CHECK(!layer_buf_init(&L, &s, s.n_experts, 1, 100 + i));
		err = check_layer(&L, 5, 200 + i);
		layer_buf_free(&L);
		CHECK_MSG(!err, "wtype %d: %s", i, err);
	}
	/* no shared expert, no groups, softmax, no bias */
	s.n_shared = 0;
	s.n_groups = 0;
	s.score = MOEK_SCORE_SOFTMAX;
	s.norm_topk = 0;
	s.route_scale = 1.0f;
	s.wtype = MOEK_F32;
	CHECK(!layer_buf_init(&L, &s, s.n_experts, 0, 300));
	err = check_layer(&L, 7, 301);
	layer_buf_free(&L);
	CHECK_MSG(!err, "%s", err);
	/* topk == n_experts, one expert */
	s.n_experts = 1;
	s.topk = 1;
	s.n_shared = 1;
	CHECK(!layer_buf_init(&L, &s, 1, 0, 400));
	err = check_layer(&L, 3, 401);
	layer_buf_free(&L);
	CHECK_MSG(!err, "%s", err);
}

/*
 * dim 2, inter 1, 2 experts, top-1, softmax without norm, 1 shared; every
 * weight by hand: expert 0: w1 [1 0], w3 [1 0], w2 [1; 0];
 * expert 1: w1 [0 1], w3 [0 1], w2 [0; 1]; shared: w1 [1 1], w3 [1 1],
 * w2 [1; 1]; gate [1 0; 0 1]. Token (2, 0): expert 0, weight
 * e^2 / (e^2 + 1), ffn = (silu(2) * 2, 0), shared = silu(2) * 2 on both.
 */
TEST(layer_hand)
{
	const float e0[2] = { 1, 0 }, e1[2] = { 0, 1 }, sh[2] = { 1, 1 };
	const float gate[4] = { 1, 0, 0, 1 };
	struct moek_ffn ex[2] = {
		{ .w1 = e0, .w2 = e0, .w3 = e0 },
		{ .w1 = e1, .w2 = e1, .w3 = e1 },
	};
	struct moek_weights wt = {
		.gate = gate, .experts = ex,
		.shared = { .w1 = sh, .w2 = sh, .w3 = sh },
	};
	struct moek_shape s = {
		.dim = 2, .inter = 1, .n_experts = 2, .topk = 1,
		.n_shared = 1, .score = MOEK_SCORE_SOFTMAX,
		.route_scale = 1.0f, .wtype = MOEK_F32, .gtype = MOEK_F32,
	};
	const float x[4] = { 2, 0, 0, -1 };
	float y[4];
	uint32_t counts[2];
	double a = 2.0 / (1.0 + exp(-2.0)) * 2.0;
	double p = exp(2.0) / (exp(2.0) + 1.0);
	/*
	 * token (0, -1): softmax(0, -1) picks expert 0 with weight
	 * 1 / (1 + e^-1); expert 0 sees x0 = 0: 0; shared: h = -1, g = -1
	 */
	double b = -1.0 / (1.0 + exp(1.0)) * -1.0;

	CHECK_INT(moek_ref_layer(&s, &wt, x, 2, y, counts), 0);
	CHECK(close_rel(y[0], p * a + a, 1e-7));
	CHECK(close_rel(y[1], a, 1e-7));
	CHECK(close_rel(y[2], b, 1e-7));
	CHECK(close_rel(y[3], b, 1e-7));
	CHECK_INT(counts[0], 2);
	CHECK_INT(counts[1], 0);
	/* no shared */
	s.n_shared = 0;
	CHECK_INT(moek_ref_layer(&s, &wt, x, 1, y, NULL), 0);
	CHECK(close_rel(y[0], p * a, 1e-7));
	CHECK(y[1] == 0.0f);
}

/* Every token to one expert: counts[e] = ntok, the rest 0. */
TEST(layer_all_to_one)
{
	struct moek_shape s = small_shape();
	struct layer_buf L;
	enum { NTOK = 9 };
	float *x, y[NTOK * 16];
	uint32_t counts[8];
	size_t i;
	int r;

	s.topk = 1;
	s.n_groups = 0;
	CHECK(!layer_buf_init(&L, &s, 8, 1, 500));
	/* a bias that dwarfs any score sends everything to expert 5 */
	for (i = 0; i < 8; i++)
		L.bias[i] = i == 5 ? 10.0f : 0.0f;
	x = rand_acts(NTOK * 16, 501);
	r = x ? moek_ref_layer(&s, &L.wt, x, NTOK, y, counts) : -ENOMEM;
	free(x);
	if (!r) {
		const char *err = check_layer(&L, NTOK, 501);

		layer_buf_free(&L);
		CHECK_MSG(!err, "%s", err);
	} else {
		layer_buf_free(&L);
	}
	CHECK_INT(r, 0);
	for (i = 0; i < 8; i++)
		CHECK_INT(counts[i], i == 5 ? NTOK : 0);
}

TEST(layer_zero_tokens)
{
	struct moek_shape s = small_shape();
	struct layer_buf L;
	float y[4] = { -7, -7, -7, -7 };
	uint32_t counts[8];
	int r1, r2;

	memset(counts, 0xa5, sizeof(counts));
	CHECK(!layer_buf_init(&L, &s, 2, 1, 600));
	r1 = moek_ref_layer(&s, &L.wt, NULL, 0, NULL, counts);
	r2 = moek_ref_layer(&s, &L.wt, y, 0, y, NULL);
	layer_buf_free(&L);
	CHECK_INT(r1, 0);
	CHECK_INT(r2, 0);
	CHECK(y[0] == -7.0f);
	CHECK_U64(counts[7], 0xa5a5a5a5u);
}

TEST(layer_einval)
{
	struct moek_shape s = small_shape();
	struct layer_buf L;
	struct moek_weights wt;
	struct moek_ffn ex[8];
	float x[16] = { 0 }, y[16];
	uint32_t counts[8];
	int r[12], n = 0, i;

	s.wtype = MOEK_FP8_E4M3;
	CHECK(!layer_buf_init(&L, &s, 3, 1, 700));
	memcpy(ex, L.experts, sizeof(ex));
	wt = L.wt;
	wt.experts = ex;
	r[n++] = moek_ref_layer(&s, &wt, x, 1, y, counts);	/* 0 */
	r[n++] = moek_ref_layer(NULL, &wt, x, 1, y, counts);
	r[n++] = moek_ref_layer(&s, NULL, x, 1, y, counts);
	r[n++] = moek_ref_layer(&s, &wt, NULL, 1, y, counts);
	r[n++] = moek_ref_layer(&s, &wt, x, 1, NULL, counts);
	wt.experts = NULL;
	r[n++] = moek_ref_layer(&s, &wt, x, 0, y, counts);
	wt.experts = ex;
	ex[6].w2 = NULL;
	r[n++] = moek_ref_layer(&s, &wt, x, 1, y, counts);
	ex[6].w2 = ex[5].w2;
	ex[7].s3 = NULL;
	r[n++] = moek_ref_layer(&s, &wt, x, 1, y, counts);
	ex[7].s3 = ex[5].s3;
	wt.shared.s1 = NULL;
	r[n++] = moek_ref_layer(&s, &wt, x, 1, y, counts);
	s.n_shared = 0;		/* the shared FFN is ignored then */
	r[n++] = moek_ref_layer(&s, &wt, x, 1, y, counts);	/* 0 */
	wt.gate = NULL;
	r[n++] = moek_ref_layer(&s, &wt, x, 1, y, counts);
	layer_buf_free(&L);
	CHECK_INT(r[0], 0);
	for (i = 1; i < n - 2; i++)
		CHECK_MSG(r[i] == -EINVAL, "case %d: %d", i, r[i]);
	CHECK_INT(r[n - 2], 0);
	CHECK_INT(r[n - 1], -EINVAL);
	s = small_shape();
	s.n_groups = 3;
	CHECK_INT(moek_ref_layer(&s, &wt, x, 1, y, counts), -EINVAL);
}

/*
 * DeepSeek-V2-Lite at full size, bf16: 64 experts over 4 distinct weight
 * sets (expert e uses set e % 4), 2 shared, softmax top-6, 2 tokens.
 */
TEST(layer_v2_lite)
{
	struct moek_shape s = v2_lite_shape();
	struct layer_buf L;
	const char *err;

	CHECK(!layer_buf_init(&L, &s, 4, 0, 800));
	err = check_layer(&L, 2, 801);
	layer_buf_free(&L);
	CHECK_MSG(!err, "%s", err);
}

/*
 * DeepSeek-V3 at full size, FP8 with block scales: 256 experts over 3
 * distinct weight sets (expert e uses set e % 3; 256 distinct would be
 * 11 GB), bf16 gate with bias, 8 groups / 4 kept, top-8, route_scale 2.5,
 * 1 shared, 1 token.
 */
TEST(layer_v3)
{
	struct moek_shape s = v3_shape();
	struct layer_buf L;
	const char *err;

	CHECK(!layer_buf_init(&L, &s, 3, 1, 900));
	err = check_layer(&L, 1, 901);
	layer_buf_free(&L);
	CHECK_MSG(!err, "%s", err);
}

RUN_TESTS(T(fp8_decode_known), T(fp8_decode_exhaustive),
	  T(fp8_encode_rounding), T(fp8_encode_saturation),
	  T(bf16_conversions), T(act_quant_row), T(shape_check_valid),
	  T(shape_check_einval), T(matrix_sizes), T(active_bytes),
	  T(route_order_and_weights), T(route_softmax_vs_sigmoid),
	  T(route_ties_lower_index), T(route_topk_all),
	  T(route_bias_selects_only), T(route_group_limiting),
	  T(route_negative_bias_beats_mask), T(route_nan_never_wins),
	  T(route_all_scores_zero),
	  T(route_zero_and_one_token),
	  T(route_bf16_gate), T(route_v2_lite_shape), T(route_v3_shape),
	  T(route_einval), T(ffn_hand), T(ffn_hand_wider), T(ffn_fp8),
	  T(ffn_bf16_vs_f32), T(ffn_einval), T(layer_sum_of_ffns),
	  T(layer_hand), T(layer_all_to_one), T(layer_zero_tokens),
	  T(layer_einval), T(layer_v2_lite), T(layer_v3))
