/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * test_gpu.c - the GPU kernels (kernels/hip) against the scalar reference
 * (kernels/ref, from libmoex.a) on random data.
 *
 * Each stage is tested on its own (act_quant, router, align, the FFN's
 * grouped GEMMs with both row tiles and every weight type), then the whole
 * layer on several shapes, DeepSeek-V2-Lite's and DeepSeek-V3's among
 * them. V3's 256 experts share a few weight sets (expert e uses set
 * e % nsets), so the test fits in a few hundred MiB; the router still
 * sees 256 distinct gate rows. Where a layer is too big for the scalar
 * reference to run on every token, the GPU runs them all and the
 * reference checks a prefix (tokens are independent).
 *
 * Routing is compared exactly (expert order included); the GPU computes
 * in f32 and the reference in double, so a near tie may flip: such tokens
 * are counted, must stay rare, and are left out of the output comparison.
 *
 * Without a GPU (or a driver) every test prints "SKIP <name>: no GPU
 * (...)". Built with -DSUITE='"gpu"' by kernels/hip/rules.mk.
 */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "moek.h"
#include "moek_hip.h"

/* ---- the device ---- */

static int g_state;		/* 0: not probed, 1: ready, -1: none */
static char g_why[160];
static struct moek_hip_ctx *g_ctx;

static int gpu_ready(void)
{
	int n, r;

	if (g_state)
		return g_state > 0;
	g_state = -1;
	r = moek_hip_device_count(&n);
	if (r) {
		snprintf(g_why, sizeof(g_why), "no device or driver: %s",
			 strerror(-r));
		return 0;
	}
	r = moek_hip_create(0, &g_ctx);
	if (r) {
		snprintf(g_why, sizeof(g_why), "moek_hip_create: %s",
			 strerror(-r));
		return 0;
	}
	g_state = 1;
	return 1;
}

#define NEED_GPU()							\
	do {								\
		if (!gpu_ready())					\
			SKIP("no GPU (%s)", g_why);			\
	} while (0)

/*
 * On tests/hipemu's CPU emulation of the device (a name that starts with
 * "hipemu"), a layer of more than HIPEMU_MAX_GMACS (default 40) billion
 * multiply-adds would take minutes: such a case says SKIP there and runs
 * on every real GPU.
 */
static double emu_budget_gmacs(void)
{
	char name[128];
	const char *env = getenv("HIPEMU_MAX_GMACS");

	if (moek_hip_device_name(0, name, sizeof(name)) ||
	    strncmp(name, "hipemu", 6))
		return INFINITY;
	return env ? atof(env) : 40.0;
}

static double layer_gmacs(const struct moek_shape *s, size_t ntok)
{
	return 3e-9 * (double)ntok * s->dim * s->inter *
	       (s->topk + s->n_shared);
}

#define NEED_SMALL_ENOUGH(s, ntok)					\
	do {								\
		if (layer_gmacs((s), (ntok)) > emu_budget_gmacs())	\
			SKIP("%.0f billion multiply-adds: too many for "\
			     "the CPU emulator (HIPEMU_MAX_GMACS %.0f)",\
			     layer_gmacs((s), (ntok)), emu_budget_gmacs()); \
	} while (0)

/* Allocation failures end the program: they are not what is tested. */
static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (!p) {
		fprintf(stderr, "out of memory (%zu bytes)\n", n);
		exit(2);
	}
	return p;
}

static void *dev_copy(const void *h, size_t bytes)
{
	void *d;

	if (moek_hip_malloc(bytes, &d) || moek_hip_upload(d, h, bytes)) {
		fprintf(stderr, "device allocation of %zu bytes failed\n", bytes);
		exit(2);
	}
	return d;
}

static void *dev_alloc(size_t bytes)
{
	void *d;

	if (moek_hip_malloc(bytes, &d)) {
		fprintf(stderr, "device allocation of %zu bytes failed\n", bytes);
		exit(2);
	}
	return d;
}

/* ---- random data ---- */

static uint64_t rng = 0x853c49e6748fea9bull;

static uint64_t rnd(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return rng * 0x2545f4914f6cdd1dull;
}

/* uniform in [-1, 1) */
static float frand(void)
{
	return (float)(rnd() >> 40) * 0x1p-23f - 1.0f;
}

static float *rand_f32(size_t n, float scale)
{
	float *p = xmalloc(n * sizeof(*p));

	for (size_t i = 0; i < n; i++)
		p[i] = frand() * scale;
	return p;
}

/* ---- weights: host copy for the reference, device copy for the GPU ---- */

struct mat {
	void *h, *d, *dbase;	/* d: g_w_offset bytes into dbase */
	float *sh, *sd;		/* fp8 block scales */
};

/*
 * Where expert weights start in their device allocation: 0, or a few
 * bytes in, as a checkpoint's tensors read in place are (safetensors
 * pads its header to 8 bytes only; a tensor's offset is a multiple of its
 * element size).
 */
static size_t g_w_offset;

static void mat_make(struct mat *m, uint32_t t, size_t rows, size_t cols)
{
	size_t n = rows * cols, bytes = moek_matrix_bytes(t, rows, cols);
	float amp = 1.0f / sqrtf((float)cols);

	m->h = xmalloc(bytes);
	m->sh = m->sd = NULL;
	if (t == MOEK_F32) {
		float *p = m->h;

		for (size_t i = 0; i < n; i++)
			p[i] = frand() * amp;
	} else if (t == MOEK_BF16) {
		uint16_t *p = m->h;

		for (size_t i = 0; i < n; i++)
			p[i] = moek_f32_to_bf16(frand() * amp);
	} else {
		uint8_t *p = m->h;
		size_t ns = moek_scale_count(rows, cols);

		/* any byte but the NaNs; magnitudes span 2^-9 .. 448 */
		for (size_t i = 0; i < n; i++) {
			uint8_t b = (uint8_t)rnd();

			p[i] = (b & 0x7f) == 0x7f ? b ^ 1 : b;
		}
		m->sh = xmalloc(ns * sizeof(float));
		for (size_t i = 0; i < ns; i++)
			m->sh[i] = (1.25f + frand() * 0.75f) * amp / 64.0f;
		m->sd = dev_copy(m->sh, ns * sizeof(float));
	}
	m->dbase = dev_alloc(bytes + g_w_offset);
	m->d = (char *)m->dbase + g_w_offset;
	if (moek_hip_upload(m->d, m->h, bytes)) {
		fprintf(stderr, "upload of %zu bytes failed\n", bytes);
		exit(2);
	}
}

static void mat_free(struct mat *m)
{
	free(m->h);
	free(m->sh);
	moek_hip_free(m->dbase);
	moek_hip_free(m->sd);
}

struct ffn_set {
	struct mat w1, w2, w3;
	struct moek_ffn h, d;	/* host and device views */
};

static void ffn_make(struct ffn_set *f, uint32_t t, size_t width, size_t dim)
{
	mat_make(&f->w1, t, width, dim);
	mat_make(&f->w3, t, width, dim);
	mat_make(&f->w2, t, dim, width);
	f->h = (struct moek_ffn){ f->w1.h, f->w2.h, f->w3.h,
				  f->w1.sh, f->w2.sh, f->w3.sh };
	f->d = (struct moek_ffn){ f->w1.d, f->w2.d, f->w3.d,
				  f->w1.sd, f->w2.sd, f->w3.sd };
}

static void ffn_free(struct ffn_set *f)
{
	mat_free(&f->w1);
	mat_free(&f->w2);
	mat_free(&f->w3);
}

/* ---- comparisons ---- */

static double max_abs(const float *a, size_t n)
{
	double m = 0.0;

	for (size_t i = 0; i < n; i++)
		if (fabs(a[i]) > m)
			m = fabs(a[i]);
	return m;
}

/* max |a - b| over max |b| (or 1e-30), and NaN-safe: a NaN fails */
static double rel_err(const float *a, const float *b, size_t n)
{
	double m = 0.0, ref = max_abs(b, n);

	for (size_t i = 0; i < n; i++) {
		double d = fabs((double)a[i] - (double)b[i]);

		if (!(d <= m))
			m = isnan(d) ? INFINITY : d;
	}
	return m / (ref > 1e-30 ? ref : 1e-30);
}

static double tol_of(uint32_t wtype)
{
	/* f32 accumulation against double; fp8 re-quantises h, where a
	 * last-bit difference can move one e4m3 step */
	return wtype == MOEK_FP8_E4M3 ? 1e-2 : 1e-4;
}

/* ---- act_quant ---- */

static void act_quant_case(size_t rows, size_t n, int *bad_q, int *bad_s)
{
	size_t nb = (n + MOEK_FP8_BLOCK - 1) / MOEK_FP8_BLOCK;
	float *x = rand_f32(rows * n, 1.0f);
	uint8_t *q = xmalloc(rows * n), *qr = xmalloc(n);
	float *s = xmalloc(rows * nb * sizeof(float)), *sr = xmalloc(nb * 4);
	float *dx;
	uint8_t *dq;
	float *ds;

	/* rows of different ranges, a zero row, an exact tie case */
	for (size_t r = 0; r < rows; r++)
		for (size_t i = 0; i < n; i++)
			x[r * n + i] *= ldexpf(1.0f, (int)(r % 9) * 3 - 12);
	if (rows > 1)
		memset(x + n, 0, n * sizeof(float));
	x[0] = 448.0f;
	dx = dev_copy(x, rows * n * sizeof(float));
	dq = dev_alloc(rows * n);
	ds = dev_alloc(rows * nb * sizeof(float));
	*bad_q = *bad_s = -1;
	if (moek_hip_act_quant(dx, rows, n, dq, ds, NULL) ||
	    moek_hip_sync(NULL) || moek_hip_download(q, dq, rows * n) ||
	    moek_hip_download(s, ds, rows * nb * sizeof(float)))
		goto out;
	*bad_q = *bad_s = 0;
	for (size_t r = 0; r < rows; r++) {
		moek_act_quant_row(x + r * n, n, qr, sr);
		for (size_t i = 0; i < n; i++)
			*bad_q += q[r * n + i] != qr[i];
		for (size_t b = 0; b < nb; b++)
			*bad_s += s[r * nb + b] != sr[b];
	}
out:
	moek_hip_free(dx);
	moek_hip_free(dq);
	moek_hip_free(ds);
	free(x);
	free(q);
	free(qr);
	free(s);
	free(sr);
}

TEST(act_quant)
{
	static const size_t cases[][2] = { { 1, 128 }, { 37, 300 },
					   { 9, 7168 }, { 5, 1 } };
	int bq, bs;

	NEED_GPU();
	/* the conversion itself, both ways, on every byte */
	for (unsigned int b = 0; b < 256; b++) {
		float f = moek_fp8_to_f32((uint8_t)b);

		if ((b & 0x7f) == 0x7f)
			continue;
		CHECK_INT(moek_f32_to_fp8(f), b);
	}
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		act_quant_case(cases[c][0], cases[c][1], &bq, &bs);
		CHECK_MSG(bq == 0 && bs == 0,
			  "rows %zu n %zu: %d q bytes and %d scales differ",
			  cases[c][0], cases[c][1], bq, bs);
	}
}

/* ---- a whole layer's weights ---- */

struct layer {
	struct moek_shape s;
	size_t nsets;
	struct ffn_set *sets;
	struct ffn_set shared;
	void *gate_h, *gate_d;
	float *bias_h, *bias_d;
	struct moek_ffn *ex_h, *ex_d;
	struct moek_weights wh, wd;	/* host (reference), device */
};

static void layer_make(struct layer *l, const struct moek_shape *s,
		       size_t nsets, int bias)
{
	size_t ne = s->n_experts, gn = ne * s->dim;
	float gamp = 2.0f / sqrtf((float)s->dim);

	memset(l, 0, sizeof(*l));
	l->s = *s;
	l->nsets = nsets < ne ? nsets : ne;
	l->sets = xmalloc(l->nsets * sizeof(*l->sets));
	for (size_t i = 0; i < l->nsets; i++)
		ffn_make(&l->sets[i], s->wtype, s->inter, s->dim);
	if (s->n_shared)
		ffn_make(&l->shared, s->wtype, (size_t)s->n_shared * s->inter,
			 s->dim);
	if (s->gtype == MOEK_BF16) {
		uint16_t *g = xmalloc(gn * sizeof(*g));

		for (size_t i = 0; i < gn; i++)
			g[i] = moek_f32_to_bf16(frand() * gamp);
		l->gate_h = g;
		l->gate_d = dev_copy(g, gn * sizeof(*g));
	} else {
		l->gate_h = rand_f32(gn, gamp);
		l->gate_d = dev_copy(l->gate_h, gn * sizeof(float));
	}
	if (bias) {
		l->bias_h = rand_f32(ne, 0.05f);
		l->bias_d = dev_copy(l->bias_h, ne * sizeof(float));
	}
	l->ex_h = xmalloc(ne * sizeof(*l->ex_h));
	l->ex_d = xmalloc(ne * sizeof(*l->ex_d));
	for (size_t e = 0; e < ne; e++) {
		l->ex_h[e] = l->sets[e % l->nsets].h;
		l->ex_d[e] = l->sets[e % l->nsets].d;
	}
	l->wh = (struct moek_weights){ l->gate_h, l->bias_h, l->ex_h,
				       l->shared.h };
	l->wd = (struct moek_weights){ l->gate_d, l->bias_d, l->ex_d,
				       l->shared.d };
}

static void layer_free(struct layer *l)
{
	for (size_t i = 0; i < l->nsets; i++)
		ffn_free(&l->sets[i]);
	if (l->s.n_shared)
		ffn_free(&l->shared);
	free(l->sets);
	free(l->gate_h);
	moek_hip_free(l->gate_d);
	free(l->bias_h);
	moek_hip_free(l->bias_d);
	free(l->ex_h);
	free(l->ex_d);
}

/* ---- shapes ---- */

static struct moek_shape shape(uint32_t dim, uint32_t inter, uint32_t ne,
			       uint32_t topk, uint32_t ng, uint32_t tkg,
			       uint32_t nsh, uint32_t score, uint32_t norm,
			       float rs, uint32_t wtype, uint32_t gtype)
{
	struct moek_shape s = { dim, inter, ne, topk, ng, tkg, nsh, score,
				norm, rs, wtype, gtype };

	return s;
}

/* DeepSeek-V3: sigmoid, 8 groups keep 4, bias, route_scale 2.5 */
static struct moek_shape v3(uint32_t wtype)
{
	return shape(7168, 2048, 256, 8, 8, 4, 1, MOEK_SCORE_SIGMOID, 1,
		     2.5f, wtype, MOEK_BF16);
}

/* DeepSeek-V2-Lite: softmax over 64, top-6, 2 shared, no groups */
static struct moek_shape v2lite(uint32_t wtype)
{
	return shape(2048, 1408, 64, 6, 1, 1, 2, MOEK_SCORE_SOFTMAX, 0,
		     1.0f, wtype, MOEK_BF16);
}

/* ---- router ---- */

/*
 * Route ntok tokens on both sides; *mism counts tokens whose expert list
 * differs, *werr is the worst weight error of the others. gidx/ridx
 * (optional, [ntok][topk]) receive the two routings.
 */
static int route_both(struct layer *l, const float *x, const float *dx,
		      size_t ntok, size_t *mism, double *werr, int32_t *gidx,
		      int32_t *ridx)
{
	size_t n = ntok * l->s.topk;
	int32_t *gi = gidx ? gidx : xmalloc(n * 4);
	int32_t *ri = ridx ? ridx : xmalloc(n * 4);
	float *gw = xmalloc(n * 4), *rw = xmalloc(n * 4);
	int32_t *di = dev_alloc(n * 4);
	float *dw = dev_alloc(n * 4);
	int r;

	r = moek_hip_route(g_ctx, &l->s, &l->wd, dx, ntok, di, dw, NULL);
	if (!r)
		r = moek_hip_sync(NULL);
	if (!r)
		r = moek_hip_download(gi, di, n * 4);
	if (!r)
		r = moek_hip_download(gw, dw, n * 4);
	if (!r)
		r = moek_ref_route(&l->s, &l->wh, x, ntok, ri, rw);
	*mism = 0;
	*werr = 0.0;
	for (size_t t = 0; !r && t < ntok; t++) {
		size_t o = t * l->s.topk;

		if (memcmp(gi + o, ri + o, l->s.topk * 4)) {
			(*mism)++;
			continue;
		}
		for (size_t k = 0; k < l->s.topk; k++) {
			double d = fabs((double)gw[o + k] - rw[o + k]) /
				   fmax(fabs(rw[o + k]), 1e-6);

			if (!(d <= *werr))
				*werr = isnan(d) ? INFINITY : d;
		}
	}
	if (!gidx)
		free(gi);
	if (!ridx)
		free(ri);
	free(gw);
	free(rw);
	moek_hip_free(di);
	moek_hip_free(dw);
	return r;
}

/* near ties: at most 1 token in 64 (and 2 in any case) */
#define MISMATCH_OK(m, ntok) ((m) <= 2 + (ntok) / 64)

static void route_case(const struct moek_shape *s, int bias, size_t ntok,
		       int *ok, char *why, size_t wl)
{
	struct layer l;
	float *x, *dx;
	size_t mism;
	double werr;
	int r;

	/* the router reads no expert weights: one tiny set */
	struct moek_shape ls = *s;

	ls.inter = 1;
	ls.n_shared = 0;
	ls.wtype = MOEK_F32;
	layer_make(&l, &ls, 1, bias);
	x = rand_f32(ntok * s->dim, 1.0f);
	dx = dev_copy(x, ntok * s->dim * sizeof(float));
	r = route_both(&l, x, dx, ntok, &mism, &werr, NULL, NULL);
	*ok = !r && MISMATCH_OK(mism, ntok) && werr < 1e-4;
	snprintf(why, wl, "ret %d, %zu of %zu tokens routed differently, "
		 "weight error %.3g", r, mism, ntok, werr);
	moek_hip_free(dx);
	free(x);
	layer_free(&l);
}

#define ROUTE_TEST(name, shp, bias, ntok)				\
	TEST(name)							\
	{								\
		struct moek_shape s = shp;				\
		char why[200];						\
		int ok;							\
									\
		NEED_GPU();						\
		route_case(&s, bias, ntok, &ok, why, sizeof(why));	\
		CHECK_MSG(ok, "%s", why);				\
	}

ROUTE_TEST(route_sigmoid_groups_bias,
	   shape(96, 1, 32, 4, 4, 2, 0, MOEK_SCORE_SIGMOID, 1, 2.5f,
		 MOEK_F32, MOEK_F32), 1, 200)
ROUTE_TEST(route_sigmoid_groups_nobias,
	   shape(64, 1, 24, 3, 6, 3, 0, MOEK_SCORE_SIGMOID, 1, 1.0f,
		 MOEK_F32, MOEK_BF16), 0, 150)
ROUTE_TEST(route_softmax,
	   shape(130, 1, 10, 3, 0, 0, 0, MOEK_SCORE_SOFTMAX, 0, 1.0f,
		 MOEK_F32, MOEK_F32), 0, 77)
ROUTE_TEST(route_topk_all_kept_groups,
	   shape(40, 1, 16, 4, 8, 2, 0, MOEK_SCORE_SIGMOID, 1, 1.5f,
		 MOEK_F32, MOEK_F32), 1, 64)
ROUTE_TEST(route_v2lite, v2lite(MOEK_BF16), 0, 256)
ROUTE_TEST(route_v3, v3(MOEK_FP8_E4M3), 1, 256)
ROUTE_TEST(route_max_experts,
	   shape(64, 1, MOEK_MAX_EXPERTS, MOEK_MAX_TOPK, 16, 8, 0,
		 MOEK_SCORE_SIGMOID, 1, 1.0f, MOEK_F32, MOEK_F32), 1, 20)

/*
 * Route 3 tokens of a dim-1 gate with x = 1 (expert e's logit is lg[e])
 * and check the experts of each against want, on the GPU and in the
 * reference, and the GPU's weights against the reference's. *why says
 * what differed ("" when nothing did).
 */
static void route_fixed(struct moek_shape s, const float *lg,
			const float *bias, const int32_t *want, char *why,
			size_t wl)
{
	const size_t ntok = 3, n = ntok * s.topk;
	const float x[3] = { 1.0f, 1.0f, 1.0f };
	int32_t *gi = xmalloc(n * 4), *ri = xmalloc(n * 4);
	float *gw = xmalloc(n * 4), *rw = xmalloc(n * 4);
	int32_t *di = dev_alloc(n * 4);
	float *dw = dev_alloc(n * 4), *dx = dev_copy(x, sizeof(x));
	struct layer l;
	int r;

	s.dim = 1;
	s.inter = 1;
	s.n_shared = 0;
	s.wtype = MOEK_F32;
	s.gtype = MOEK_F32;
	layer_make(&l, &s, 1, bias != NULL);
	memcpy(l.gate_h, lg, s.n_experts * sizeof(float));
	r = moek_hip_upload(l.gate_d, lg, s.n_experts * sizeof(float));
	if (!r && bias) {
		memcpy(l.bias_h, bias, s.n_experts * sizeof(float));
		r = moek_hip_upload(l.bias_d, bias,
				    s.n_experts * sizeof(float));
	}
	if (!r)
		r = moek_hip_route(g_ctx, &l.s, &l.wd, dx, ntok, di, dw, NULL);
	if (!r)
		r = moek_hip_sync(NULL);
	if (!r)
		r = moek_hip_download(gi, di, n * 4);
	if (!r)
		r = moek_hip_download(gw, dw, n * 4);
	if (!r)
		r = moek_ref_route(&l.s, &l.wh, x, ntok, ri, rw);
	*why = '\0';
	if (r)
		snprintf(why, wl, "ret %d", r);
	for (size_t i = 0; !r && !*why && i < n; i++) {
		if (ri[i] != want[i % s.topk])
			snprintf(why, wl, "reference: route %zu: expert %d, "
				 "want %d", i, ri[i], want[i % s.topk]);
		else if (gi[i] != want[i % s.topk] ||
			 (isnan(rw[i]) ? !isnan(gw[i]) :
			  !(fabs(gw[i] - rw[i]) <= 1e-5 * fabs(rw[i]))))
			snprintf(why, wl, "route %zu: expert %d weight %g, "
				 "want %d weight %g", i, gi[i], gw[i],
				 want[i % s.topk], rw[i]);
	}
	layer_free(&l);
	moek_hip_free(di);
	moek_hip_free(dw);
	moek_hip_free(dx);
	free(gi);
	free(ri);
	free(gw);
	free(rw);
}

/*
 * The routing rules random data never reaches, each as 8 experts' logits
 * routed on the GPU and in the reference (route_fixed()).
 */
static const struct route_case {
	const char *what;
	float lg[8];
	const float *bias;	/* NULL: none */
	uint32_t n_groups, topk_groups, topk, norm_topk, score;
	int32_t want[8];
} route_cases[] = {
	/* masked groups are -inf, not 0: only group 3 (experts 6, 7) kept,
	 * every biased score in (-2, -1) */
	{ "negative bias", { -1, -1, 0, 0.5f, -3, 1, 2, 3 },
	  (const float[8]){ -2, -2, -2, -2, -2, -2, -2, -2 },
	  4, 1, 2, 0, MOEK_SCORE_SIGMOID, { 7, 6 } },
	/* ties go to the lower index: experts 1, 2, 4 and 6 are equal */
	{ "expert ties", { 1, 2, 2, 1, 2, 0, 2, 0 }, NULL,
	  0, 1, 4, 0, MOEK_SCORE_SIGMOID, { 1, 2, 4, 6 } },
	/* and among groups: all equal, groups 0 and 1 kept */
	{ "group ties", { 0 }, (const float[8]){ 0 },
	  4, 2, 4, 0, MOEK_SCORE_SIGMOID, { 0, 1, 2, 3 } },
	/* a NaN score (expert 0's gate row) never chosen over numbers */
	{ "NaN", { NAN, 0.5f, 1, -1, -2, 0, -3, 0.25f }, NULL,
	  0, 2, 2, 1, MOEK_SCORE_SIGMOID, { 2, 1 } },
	/* nor in a group's score: groups 1 and 0 (0.5, not NaN) kept */
	{ "NaN in a group", { 0.5f, NAN, 1, -1, -2, 0, -3, 0.25f }, NULL,
	  4, 2, 3, 1, MOEK_SCORE_SIGMOID, { 2, 0, 3 } },
	/* and the kept groups' NaN expert beats the discarded groups'
	 * (they are out of the top-k, not -inf) */
	{ "NaN in a kept group, taken", { 0.5f, NAN, 1, -1, -2, 0, -3, 0.25f },
	  NULL, 4, 2, 4, 0, MOEK_SCORE_SIGMOID, { 2, 0, 3, 1 } },
	/* a NaN ranks below -inf, as in the reference (not as -inf, where
	 * the lower index would win): the NaN bias expert 0 comes last */
	{ "NaN below -inf", { 0 },
	  (const float[8]){ NAN, -INFINITY, 0, 0, 0, 0, 0, 0 },
	  0, 2, 8, 0, MOEK_SCORE_SIGMOID, { 2, 3, 4, 5, 6, 7, 1, 0 } },
	/* and among groups: group 0's score is NaN (+inf + -inf), group
	 * 1's -inf: groups 2, 3 and 1 are kept, not 0 with its +inf */
	{ "NaN group score below -inf", { 0 },
	  (const float[8]){ INFINITY, -INFINITY, -INFINITY, -INFINITY, 0, 0,
			    0, 0 },
	  4, 3, 6, 0, MOEK_SCORE_SIGMOID, { 4, 5, 6, 7, 2, 3 } },
	/* also where the discarded experts' indices are the lower ones
	 * (group 1 kept): a -inf mask ties with the NaN, -inf here, and
	 * the lower index, a discarded expert, would win */
	{ "NaN bias in the kept group", { -1, -1, -1, -1, 0.5f, 3, 2, 1 },
	  (const float[8]){ 0, 0, 0, 0, NAN, 0, 0, 0 },
	  2, 1, 4, 0, MOEK_SCORE_SIGMOID, { 5, 6, 7, 4 } },
	/* every score 0 (sigmoid of -1000): normalising divides by no
	 * sum, the weights stay 0 (not 0 / 0), ties to the lower index */
	{ "all scores 0", { -1000, -1000, -1000, -1000, -1000, -1000,
			    -1000, -1000 }, NULL,
	  0, 2, 2, 1, MOEK_SCORE_SIGMOID, { 0, 1 } },
	/* sigmoid scores below f32's range (logits -100 and -101): the
	 * reference's are not 0 (double), so normalised they are e / (1 +
	 * e) and 1 / (1 + e), from the logits; the selection among such
	 * scores is all ties in f32, hence the logits in index order */
	{ "sigmoid scores below FLT_MIN", { -100, -101, -120, -300, -1000,
					    -1000, -1000, -1000 }, NULL,
	  0, 2, 2, 1, MOEK_SCORE_SIGMOID, { 0, 1 } },
	/* and where only some chosen scores are below FLT_MIN: -87 is
	 * normal in f32, -89 is 0 there (exp(89) overflows), -100 too:
	 * 0.881 and 0.119, 1 - 4.2e-18 and 4.2e-18 (the zeros tie in
	 * f32, so the lowest index among them is the one chosen) */
	{ "one score below FLT_MIN", { -87, -89, -120, -300, -1000, -1000,
				       -1000, -1000 }, NULL,
	  0, 2, 2, 1, MOEK_SCORE_SIGMOID, { 0, 1 } },
	{ "one score 0 in f32", { -100, -1000, -1000, -1000, -60, -1000,
				  -1000, -1000 }, NULL,
	  0, 2, 2, 1, MOEK_SCORE_SIGMOID, { 4, 0 } },
	/* and one where even the reference's sigmoid is 0 (below -709.78,
	 * its exp(-l) overflows): weights 1 and 0 */
	{ "a sigmoid 0 in double too", { -700, -720, -1000, -1000, -1000,
					 -1000, -1000, -1000 }, NULL,
	  0, 2, 2, 1, MOEK_SCORE_SIGMOID, { 0, 1 } },
	/* softmax of logits whose exp overflows: the max is subtracted */
	{ "softmax, large logits", { 1000, 999, -1000, 0, 998, 0, 0, 0 },
	  NULL, 0, 2, 2, 1, MOEK_SCORE_SOFTMAX, { 0, 1 } },
	/* every expert taken: the NaN one comes last, its weight NaN */
	{ "NaN, top 8 of 8", { NAN, 0.5f, 1, -1, -2, 0, -3, 0.25f }, NULL,
	  0, 2, 8, 0, MOEK_SCORE_SIGMOID, { 2, 1, 7, 5, 3, 4, 6, 0 } },
};

TEST(route_edge_cases)
{
	char why[200];

	NEED_GPU();
	for (size_t i = 0; i < sizeof(route_cases) / sizeof(route_cases[0]);
	     i++) {
		const struct route_case *c = &route_cases[i];
		struct moek_shape s = shape(1, 1, 8, c->topk, c->n_groups,
					    c->topk_groups, 0, c->score,
					    c->norm_topk, 1.0f, MOEK_F32,
					    MOEK_F32);

		route_fixed(s, c->lg, c->bias, c->want, why, sizeof(why));
		CHECK_MSG(!*why, "%s: %s", c->what, why);
	}
}

/* ---- align ---- */

/* The host's view of the worst case, as layer.hip computes it. */
static size_t align_max_rows(size_t npairs, size_t ne, size_t tile)
{
	size_t tiles = (npairs + ne * (tile - 1) + tile - 1) / tile;

	return tiles * tile;
}

static void align_case(uint32_t ne, uint32_t topk, size_t ntok,
		       uint32_t tile, char *why, size_t wl, int *ok)
{
	struct moek_shape s = shape(8, 8, ne, topk, 0, 0, 0,
				    MOEK_SCORE_SOFTMAX, 0, 1.0f, MOEK_F32,
				    MOEK_F32);
	size_t np = ntok * topk;
	int32_t *idx = xmalloc(np * 4), *didx;
	uint32_t *cnt = calloc(ne, 4), *gcnt = xmalloc(ne * 4);
	uint32_t *off = xmalloc((ne + 1) * 4);
	unsigned char *seen;
	int32_t *row_tok = NULL, *pair_pos = NULL, *tile_exp = NULL;
	struct moek_hip_align al;
	int r;

	*ok = 0;
	snprintf(why, wl, "setup");
	/* skewed: half the pairs go to the first eighth of the experts */
	for (size_t t = 0; t < ntok; t++) {
		for (uint32_t k = 0; k < topk; k++) {
			uint32_t e;
			int dup;

			do {
				e = (rnd() & 1) ? (uint32_t)(rnd() % (ne / 8 + 1)) :
						  (uint32_t)(rnd() % ne);
				dup = 0;
				for (uint32_t j = 0; j < k; j++)
					dup |= idx[t * topk + j] == (int32_t)e;
			} while (dup);
			idx[t * topk + k] = (int32_t)e;
			cnt[e]++;
		}
	}
	didx = dev_copy(idx, np * 4);
	r = moek_hip_set_tile(g_ctx, tile);
	if (!r)
		r = moek_hip_align(g_ctx, &s, didx, ntok, &al, NULL);
	if (!r)
		r = moek_hip_sync(NULL);
	moek_hip_set_tile(g_ctx, 0);
	if (r) {
		snprintf(why, wl, "moek_hip_align: %d", r);
		goto out;
	}
	/* the sizes */
	if (al.tile != tile || al.max_rows != align_max_rows(np, ne, tile) ||
	    al.max_rows != al.max_tiles * tile) {
		snprintf(why, wl, "sizes: tile %u max_rows %u max_tiles %u",
			 al.tile, al.max_rows, al.max_tiles);
		goto out;
	}
	row_tok = xmalloc((size_t)al.max_rows * 4);
	pair_pos = xmalloc(np * 4);
	tile_exp = xmalloc((size_t)al.max_tiles * 4);
	seen = calloc(al.max_rows, 1);
	if (moek_hip_download(gcnt, al.counts, ne * 4) ||
	    moek_hip_download(off, al.offsets, (ne + 1) * 4) ||
	    moek_hip_download(row_tok, al.row_tok, (size_t)al.max_rows * 4) ||
	    moek_hip_download(pair_pos, al.pair_pos, np * 4) ||
	    moek_hip_download(tile_exp, al.tile_expert,
			      (size_t)al.max_tiles * 4)) {
		snprintf(why, wl, "download");
		free(seen);
		goto out;
	}
	/* counts and padded offsets */
	for (uint32_t e = 0; e < ne; e++) {
		uint32_t pad = (cnt[e] + tile - 1) / tile * tile;

		if (gcnt[e] != cnt[e] || off[e] % tile ||
		    off[e + 1] - off[e] != pad || (e == 0 && off[0])) {
			snprintf(why, wl, "expert %u: count %u (want %u), "
				 "rows [%u, %u)", e, gcnt[e], cnt[e], off[e],
				 off[e + 1]);
			free(seen);
			goto out;
		}
	}
	if (off[ne] > al.max_rows) {
		snprintf(why, wl, "%u rows used > max_rows %u", off[ne],
			 al.max_rows);
		free(seen);
		goto out;
	}
	/* every pair in its expert's real rows, once */
	for (size_t p = 0; p < np; p++) {
		int32_t e = idx[p], pos = pair_pos[p];

		if (pos < (int32_t)off[e] || pos >= (int32_t)(off[e] + cnt[e]) ||
		    seen[pos] || row_tok[pos] != (int32_t)(p / topk)) {
			snprintf(why, wl, "pair %zu (expert %d): row %d", p, e,
				 pos);
			free(seen);
			goto out;
		}
		seen[pos] = 1;
	}
	/* padding rows and the tile map */
	for (uint32_t e = 0; e < ne; e++) {
		for (uint32_t rw = off[e] + cnt[e]; rw < off[e + 1]; rw++) {
			if (row_tok[rw] != -1) {
				snprintf(why, wl, "padding row %u: %d", rw,
					 row_tok[rw]);
				free(seen);
				goto out;
			}
		}
		for (uint32_t t = off[e] / tile; t < off[e + 1] / tile; t++) {
			if (tile_exp[t] != (int32_t)e) {
				snprintf(why, wl, "tile %u: expert %d, want %u",
					 t, tile_exp[t], e);
				free(seen);
				goto out;
			}
		}
	}
	for (uint32_t t = off[ne] / tile; t < al.max_tiles; t++) {
		if (tile_exp[t] != -1) {
			snprintf(why, wl, "unused tile %u: expert %d", t,
				 tile_exp[t]);
			free(seen);
			goto out;
		}
	}
	free(seen);
	*ok = 1;
out:
	moek_hip_free(didx);
	free(idx);
	free(cnt);
	free(gcnt);
	free(off);
	free(row_tok);
	free(pair_pos);
	free(tile_exp);
}

TEST(align)
{
	static const struct {
		uint32_t ne, topk;
		size_t ntok;
	} c[] = {
		{ 8, 2, 1 }, { 16, 4, 33 }, { 64, 6, 500 }, { 256, 8, 1000 },
		{ 1024, 8, 3 }, { 256, 8, 4096 }, { 16, 4, 0 },
	};
	static const uint32_t tiles[] = { MOEK_HIP_TILE_SMALL,
					  MOEK_HIP_TILE_LARGE };
	char why[200];
	int ok;

	NEED_GPU();
	/* the worst-case bound covers every expert padded */
	for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {
		for (size_t j = 0; j < 2; j++) {
			size_t np = c[i].ntok * c[i].topk;
			size_t mr = align_max_rows(np, c[i].ne, tiles[j]);

			CHECK(mr % tiles[j] == 0);
			CHECK(mr >= np + (size_t)c[i].ne * (tiles[j] - 1));
			CHECK(mr < np + (size_t)c[i].ne * (tiles[j] - 1) +
				   tiles[j]);
			align_case(c[i].ne, c[i].topk, c[i].ntok, tiles[j],
				   why, sizeof(why), &ok);
			CHECK_MSG(ok, "ne %u topk %u ntok %zu tile %u: %s",
				  c[i].ne, c[i].topk, c[i].ntok, tiles[j], why);
		}
	}
}

/* ---- one FFN: the grouped GEMMs with one group ---- */

/* Make a matrix's weights positive and not zero, on the host and device. */
static void mat_positive(struct mat *m, uint32_t t, size_t rows, size_t cols)
{
	const size_t n = rows * cols;

	for (size_t i = 0; i < n; i++) {
		if (t == MOEK_F32) {
			float *p = m->h;

			p[i] = fabsf(p[i]) + 1e-3f;
		} else if (t == MOEK_BF16) {
			uint16_t *p = m->h;

			p[i] = p[i] & 0x7fff ? p[i] & 0x7fff : 0x3c00;
		} else {
			uint8_t *p = m->h;

			p[i] = p[i] & 0x7f ? p[i] & 0x7f : 1;
		}
	}
	if (moek_hip_upload(m->d, m->h, moek_matrix_bytes(t, rows, cols)))
		abort();
}

/* Column c of an f32 or bf16 matrix set to v (exact in bf16), uploaded. */
static void mat_set_col(struct mat *m, uint32_t t, size_t rows, size_t cols,
			size_t c, float v)
{
	for (size_t r = 0; r < rows; r++) {
		if (t == MOEK_F32)
			((float *)m->h)[r * cols + c] = v;
		else
			((uint16_t *)m->h)[r * cols + c] = moek_f32_to_bf16(v);
	}
	if (moek_hip_upload(m->d, m->h, moek_matrix_bytes(t, rows, cols)))
		abort();
}

/* 0 NaN, 1 +inf, 2 -inf, 3 finite */
static int fp_class(float v)
{
	return isnan(v) ? 0 : isinf(v) ? (v > 0 ? 1 : 2) : 3;
}

/*
 * y = ffn(x) for ntok tokens on the GPU and by the reference; *err is the
 * relative error. With last_x (not 0), the weights are positive and the
 * last token's channel dim / 3 is last_x:
 *   - INFINITY: its outputs are +inf in the reference (NaN on the fp8
 *     path, where act_quant divides inf by inf);
 *   - FLT_MAX (f32 and bf16 weights): W1's and W3's column for that
 *     channel is 2^-70, so that g and u are near 2^58 and the outputs
 *     finite, near 2^121.
 * *bad_class counts the GPU's outputs of that token of another class
 * than the reference's; *err covers the other tokens, and that token
 * too where the reference's outputs are finite.
 */
static void ffn_case(uint32_t wtype, uint32_t dim, uint32_t width,
		     size_t ntok, uint32_t tile, float last_x, double *err,
		     int *bad_class, int *ret)
{
	struct moek_shape s = shape(dim, width, 2, 1, 0, 0, 0,
				    MOEK_SCORE_SOFTMAX, 0, 1.0f, wtype,
				    MOEK_F32);
	struct ffn_set f;
	float *x = rand_f32(ntok * dim, 1.0f);
	float *y = xmalloc(ntok * dim * 4), *yr = xmalloc(ntok * dim * 4);
	float *dx, *dy = dev_alloc(ntok * dim * 4);
	const size_t last = (ntok - 1) * dim;
	int finite = 1;

	ffn_make(&f, wtype, width, dim);
	if (last_x != 0.0f) {
		mat_positive(&f.w1, wtype, width, dim);
		mat_positive(&f.w3, wtype, width, dim);
		mat_positive(&f.w2, wtype, dim, width);
		x[last + dim / 3] = last_x;
	}
	if (last_x == FLT_MAX) {
		mat_set_col(&f.w1, wtype, width, dim, dim / 3, 0x1p-70f);
		mat_set_col(&f.w3, wtype, width, dim, dim / 3, 0x1p-70f);
	}
	dx = dev_copy(x, ntok * dim * 4);
	*ret = moek_hip_set_tile(g_ctx, tile);
	if (!*ret)
		*ret = moek_hip_ffn(g_ctx, &s, &f.d, width, dx, ntok, dy, NULL);
	if (!*ret)
		*ret = moek_hip_sync(NULL);
	if (!*ret)
		*ret = moek_hip_download(y, dy, ntok * dim * 4);
	if (!*ret)
		*ret = moek_ref_ffn(&s, &f.h, width, x, ntok, yr);
	moek_hip_set_tile(g_ctx, 0);
	*bad_class = 0;
	for (size_t c = 0; last_x != 0.0f && c < dim; c++) {
		*bad_class += fp_class(y[last + c]) != fp_class(yr[last + c]);
		finite &= fp_class(yr[last + c]) == 3;
	}
	if (*ret)
		*err = INFINITY;
	else if (last_x == 0.0f)
		*err = rel_err(y, yr, ntok * dim);
	else
		*err = fmax(rel_err(y, yr, last),
			    finite ? rel_err(y + last, yr + last, dim) : 0.0);
	ffn_free(&f);
	moek_hip_free(dx);
	moek_hip_free(dy);
	free(x);
	free(y);
	free(yr);
}

#define FFN_TEST(name, wtype)						\
	TEST(name)							\
	{								\
		static const uint32_t c[][4] = {			\
			/* dim, width, ntok, tile */			\
			{ 200, 72, 5, MOEK_HIP_TILE_SMALL },		\
			{ 200, 72, 70, MOEK_HIP_TILE_LARGE },		\
			{ 384, 256, 9, MOEK_HIP_TILE_SMALL },		\
			{ 384, 256, 130, MOEK_HIP_TILE_LARGE },		\
			{ 33, 300, 1, MOEK_HIP_TILE_LARGE },		\
			{ 1024, 1408, 17, 0 },				\
			/* gemv.hip, n not a multiple of its warps */	\
			{ 384, 100, 3, MOEK_HIP_TILE_SMALL },		\
			{ 100, 256, 3, MOEK_HIP_TILE_SMALL },		\
		};							\
		double err;						\
		int r, bad;						\
									\
		NEED_GPU();						\
		for (size_t i = 0; i < sizeof(c) / sizeof(c[0]); i++) {	\
			ffn_case(wtype, c[i][0], c[i][1], c[i][2],	\
				 c[i][3], 0.0f, &err, &bad, &r);	\
			CHECK_MSG(!r && err < tol_of(wtype),		\
				  "dim %u width %u ntok %u tile %u: "	\
				  "ret %d, error %.3g", c[i][0],	\
				  c[i][1], c[i][2], c[i][3], r, err);	\
		}							\
	}

FFN_TEST(ffn_f32, MOEK_F32)
FFN_TEST(ffn_bf16, MOEK_BF16)
FFN_TEST(ffn_fp8, MOEK_FP8_E4M3)

/*
 * ffn_case() with last_x on the first ntypes of f32, bf16, fp8 and both
 * tiles; *why names the first case that failed ("" when none did).
 */
static void extreme_cases(size_t ntypes, float last_x, char *why,
			  size_t wl)
{
	static const uint32_t types[] = { MOEK_F32, MOEK_BF16, MOEK_FP8_E4M3 };
	static const uint32_t tiles[] = { MOEK_HIP_TILE_SMALL,
					  MOEK_HIP_TILE_LARGE };
	double err;
	int r, bad;

	*why = '\0';
	for (size_t t = 0; t < ntypes; t++) {
		for (size_t i = 0; i < 2; i++) {
			ffn_case(types[t], 200, 72, 70, tiles[i], last_x,
				 &err, &bad, &r);
			if (!r && !bad && err < tol_of(types[t]))
				continue;
			snprintf(why, wl, "type %u tile %u: ret %d, %d of 200 "
				 "outputs of the %g token not as the "
				 "reference's, error %.3g", types[t], tiles[i],
				 r, bad, last_x, err);
			return;
		}
	}
}

/*
 * An infinite activation stays inf (not NaN) through both tiles' GEMMs,
 * as in the reference, and leaves the other tokens alone. What it guards
 * is gemm_mma.hip's hi/lo split (bf16, large tile, where built): f32 never
 * goes there, and on the fp8 path act_quant already makes the token NaN
 * (inf / inf) in the reference and on the GPU alike.
 */
TEST(ffn_inf_activation)
{
	char why[256];

	NEED_GPU();
	extreme_cases(3, INFINITY, why, sizeof(why));
	CHECK_MSG(!*why, "%s", why);
}

/*
 * FLT_MAX is finite: its products with small weights stay finite, on
 * both tiles, as in the reference (f32 and bf16 weights: fp8's act_quant
 * scales it down). What it guards is the same split: rounded to nearest,
 * tf32(FLT_MAX) is inf; hi is truncated instead.
 */
TEST(ffn_max_activation)
{
	char why[256];

	NEED_GPU();
	extreme_cases(2, FLT_MAX, why, sizeof(why));
	CHECK_MSG(!*why, "%s", why);
}

/* ---- the whole layer ---- */

/*
 * Run the layer on ntok tokens with the given tile (0: auto); the
 * reference checks the first nref. Routing mismatches (near ties) leave
 * their tokens out.
 */
static void layer_case(const struct moek_shape *s, size_t nsets, int bias,
		       size_t ntok, size_t nref, uint32_t tile, int gemv,
		       char *why, size_t wl, int *ok)
{
	struct layer l;
	size_t dim = s->dim, ne = s->n_experts, mism, bad_tok = 0;
	float *x = rand_f32(ntok * dim, 1.0f);
	float *y = xmalloc(ntok * dim * 4), *yr = xmalloc(nref * dim * 4);
	float *dx = dev_copy(x, ntok * dim * 4), *dy = dev_alloc(ntok * dim * 4);
	int32_t *gi = xmalloc(ntok * s->topk * 4), *ri = xmalloc(ntok * s->topk * 4);
	uint32_t *gc = xmalloc(ne * 4), *rc = calloc(ne, 4), *cg = calloc(ne, 4);
	double werr, err = 0.0, cdiff = 0.0;
	int r;

	*ok = 0;
	layer_make(&l, s, nsets, bias);
	r = moek_hip_set_tile(g_ctx, tile);
	if (!r)
		r = moek_hip_set_gemv(g_ctx, gemv);
	if (!r)
		r = moek_hip_layer(g_ctx, &l.s, &l.wd, dx, ntok, dy, gc, NULL);
	if (!r)
		r = moek_hip_download(y, dy, ntok * dim * 4);
	moek_hip_set_tile(g_ctx, 0);
	moek_hip_set_gemv(g_ctx, 1);
	if (r) {
		snprintf(why, wl, "moek_hip_layer: %d", r);
		goto out;
	}
	r = route_both(&l, x, dx, ntok, &mism, &werr, gi, ri);
	if (r || !MISMATCH_OK(mism, ntok) || werr >= 1e-4) {
		snprintf(why, wl, "routing: ret %d, %zu of %zu tokens differ, "
			 "weight error %.3g", r, mism, ntok, werr);
		goto out;
	}
	/* counts: the layer's against its routing (moek_hip_route runs
	 * the same kernel), and against the reference's when all agree */
	for (size_t p = 0; p < ntok * s->topk; p++) {
		cg[gi[p]]++;
		rc[ri[p]]++;
	}
	for (size_t e = 0; e < ne; e++) {
		if (gc[e] != cg[e] || (!mism && gc[e] != rc[e])) {
			snprintf(why, wl, "counts[%zu] = %u, routed %u, "
				 "reference %u", e, gc[e], cg[e], rc[e]);
			goto out;
		}
	}
	r = moek_ref_layer(&l.s, &l.wh, x, nref, yr, NULL);
	if (r) {
		snprintf(why, wl, "moek_ref_layer: %d", r);
		goto out;
	}
	for (size_t t = 0; t < nref; t++) {
		double e;

		if (memcmp(gi + t * s->topk, ri + t * s->topk, s->topk * 4)) {
			bad_tok++;
			continue;
		}
		e = rel_err(y + t * dim, yr + t * dim, dim);
		if (!(e <= err))
			err = isnan(e) ? INFINITY : e;
	}
	for (size_t t = nref; t < ntok; t++) {
		double m = max_abs(y + t * dim, dim);

		/* unchecked tokens: at least finite and not all zero */
		if (!(m > 0.0) || isinf(m))
			cdiff = INFINITY;
	}
	snprintf(why, wl, "%zu tokens (%zu checked, %zu near ties), error "
		 "%.3g (tolerance %.3g)%s", ntok, nref - bad_tok, mism, err,
		 tol_of(s->wtype), cdiff ? ", unchecked tokens zero or inf" : "");
	*ok = err < tol_of(s->wtype) && !cdiff && bad_tok < nref;
out:
	layer_free(&l);
	moek_hip_free(dx);
	moek_hip_free(dy);
	free(x);
	free(y);
	free(yr);
	free(gi);
	free(ri);
	free(gc);
	free(rc);
	free(cg);
}

/* A layer_case() test, its expert weights off bytes into their
 * allocations (g_w_offset). */
#define LAYER_TEST_AT_GEMV(name, shp, nsets, bias, ntok, nref, tile, gemv, \
			   off)						\
	TEST(name)							\
	{								\
		struct moek_shape s = shp;				\
		char why[300];						\
		int ok;							\
									\
		NEED_GPU();						\
		NEED_SMALL_ENOUGH(&s, ntok);				\
		g_w_offset = off;					\
		layer_case(&s, nsets, bias, ntok, nref, tile, gemv, why, \
			   sizeof(why), &ok);				\
		g_w_offset = 0;						\
		CHECK_MSG(ok, "weights at +%d: %s", off, why);		\
	}
#define LAYER_TEST_GEMV(name, shp, nsets, bias, ntok, nref, tile, gemv) \
	LAYER_TEST_AT_GEMV(name, shp, nsets, bias, ntok, nref, tile, gemv, 0)
#define LAYER_TEST(name, shp, nsets, bias, ntok, nref, tile)		\
	LAYER_TEST_GEMV(name, shp, nsets, bias, ntok, nref, tile, 1)

#define TINY(w, g) shape(96, 40, 16, 4, 4, 2, 1, MOEK_SCORE_SIGMOID, 1, \
			 2.5f, w, g)
#define ODD(w) shape(130, 70, 8, 2, 0, 0, 0, MOEK_SCORE_SOFTMAX, 0, 1.0f, \
		     w, MOEK_F32)

LAYER_TEST(layer_tiny_f32, TINY(MOEK_F32, MOEK_F32), 16, 1, 33, 33, 0)
LAYER_TEST(layer_tiny_bf16, TINY(MOEK_BF16, MOEK_BF16), 16, 1, 33, 33, 0)
LAYER_TEST(layer_tiny_fp8, TINY(MOEK_FP8_E4M3, MOEK_BF16), 16, 1, 33, 33, 0)
LAYER_TEST(layer_tiny_fp8_large_tile, TINY(MOEK_FP8_E4M3, MOEK_F32), 16, 1,
	   70, 70, MOEK_HIP_TILE_LARGE)
LAYER_TEST(layer_odd_f32_small_tile, ODD(MOEK_F32), 8, 0, 100, 100,
	   MOEK_HIP_TILE_SMALL)
LAYER_TEST(layer_odd_bf16_large_tile, ODD(MOEK_BF16), 8, 0, 100, 100,
	   MOEK_HIP_TILE_LARGE)
LAYER_TEST(layer_one_token, TINY(MOEK_BF16, MOEK_F32), 16, 1, 1, 1, 0)
LAYER_TEST(layer_v2lite_bf16, v2lite(MOEK_BF16), 16, 0, 64, 16, 0)
LAYER_TEST(layer_v2lite_bf16_large_tile, v2lite(MOEK_BF16), 16, 0, 256, 8,
	   MOEK_HIP_TILE_LARGE)
LAYER_TEST(layer_v3_fp8_decode, v3(MOEK_FP8_E4M3), 4, 1, 32, 6, 0)
LAYER_TEST(layer_v3_fp8_prefill, v3(MOEK_FP8_E4M3), 4, 1, 1024, 4, 0)
LAYER_TEST(layer_v3_bf16, v3(MOEK_BF16), 2, 1, 64, 4, 0)
/* the small tile without gemv.hip: gemm.hip's path for decode */
LAYER_TEST_GEMV(layer_v3_fp8_decode_no_gemv, v3(MOEK_FP8_E4M3), 4, 1, 32, 6,
		0, 0)
LAYER_TEST_GEMV(layer_tiny_bf16_no_gemv, TINY(MOEK_BF16, MOEK_BF16), 16, 1,
		33, 33, 0, 0)

/*
 * Expert weights 8, 4, 2 or 1 bytes past an aligned address, as read in
 * place from a checkpoint: each kernel loads them in the widest pieces
 * their alignment allows (the emulator faults on a misaligned vector
 * load), decode (gemv.hip) and prefill (the large tile) alike.
 */
#define LAYER_TEST_AT(name, shp, ntok, tile, off)			\
	LAYER_TEST_AT_GEMV(name, shp, 16, 1, ntok, ntok, tile, 1, off)

LAYER_TEST_AT(layer_bf16_weights_at_8, TINY(MOEK_BF16, MOEK_BF16), 2, 0, 8)
LAYER_TEST_AT(layer_bf16_weights_at_8_large_tile, TINY(MOEK_BF16, MOEK_F32),
	      70, MOEK_HIP_TILE_LARGE, 8)
LAYER_TEST_AT(layer_bf16_weights_at_2, TINY(MOEK_BF16, MOEK_BF16), 2, 0, 2)
LAYER_TEST_AT(layer_fp8_weights_at_4, TINY(MOEK_FP8_E4M3, MOEK_BF16), 2, 0, 4)
LAYER_TEST_AT(layer_fp8_weights_at_1_large_tile,
	      TINY(MOEK_FP8_E4M3, MOEK_F32), 70, MOEK_HIP_TILE_LARGE, 1)
LAYER_TEST_AT(layer_f32_weights_at_4_large_tile, TINY(MOEK_F32, MOEK_F32), 70,
	      MOEK_HIP_TILE_LARGE, 4)

/* ---- argument checks ---- */

TEST(errors)
{
	struct moek_shape s = TINY(MOEK_F32, MOEK_F32);
	struct layer l;
	float *dx;
	int r;

	NEED_GPU();
	layer_make(&l, &s, 1, 1);
	dx = dev_alloc(96 * 4);
	l.s.topk = 0;
	r = moek_hip_layer(g_ctx, &l.s, &l.wd, dx, 1, dx, NULL, NULL);
	l.s.topk = 4;
	CHECK_INT(r, -EINVAL);
	l.ex_d[3].w2 = NULL;
	r = moek_hip_layer(g_ctx, &l.s, &l.wd, dx, 1, dx, NULL, NULL);
	l.ex_d[3].w2 = l.sets[0].d.w2;
	CHECK_INT(r, -EINVAL);
	CHECK_INT(moek_hip_set_tile(g_ctx, 7), -EINVAL);
	CHECK_INT(moek_hip_layer(g_ctx, &l.s, &l.wd, dx, 0, dx, NULL, NULL), 0);
	moek_hip_free(dx);
	layer_free(&l);
}

/*
 * The runtime's "last error" is that of any call, not only of launches: a
 * refused call (a second registration, an allocation too big) must not
 * make the next launch report its error.
 */
TEST(errors_do_not_linger)
{
	struct moek_shape s = TINY(MOEK_F32, MOEK_F32);
	const size_t pg = 4096;
	struct layer l;
	void *h, *alias, *big;
	float *dx, *dy;

	NEED_GPU();
	layer_make(&l, &s, 1, 1);
	dx = dev_alloc(s.dim * sizeof(float));
	dy = dev_alloc(s.dim * sizeof(float));
	CHECK_INT(moek_hip_memset(dx, 0, s.dim * sizeof(float)), 0);
	h = aligned_alloc(pg, pg);
	CHECK(h != NULL);
	CHECK_INT(moek_hip_host_register(h, pg, &alias), 0);
	CHECK_INT(moek_hip_host_register(h, pg, &alias), -EEXIST);
	CHECK_INT(moek_hip_layer(g_ctx, &l.s, &l.wd, dx, 1, dy, NULL, NULL),
		  0);
	CHECK_INT(moek_hip_sync(NULL), 0);
	CHECK_INT(moek_hip_malloc((size_t)1 << 60, &big), -ENOMEM);
	CHECK_INT(moek_hip_layer(g_ctx, &l.s, &l.wd, dx, 1, dy, NULL, NULL),
		  0);
	CHECK_INT(moek_hip_sync(NULL), 0);
	CHECK_INT(moek_hip_host_unregister(h), 0);
	free(h);
	moek_hip_free(dx);
	moek_hip_free(dy);
	layer_free(&l);
}

/* moex-bench's bandwidth anchor: a plain copy, its tail byte by byte;
 * twice (the second call takes the multiprocessor count it kept) */
TEST(copy_kernel)
{
	const size_t n = 100003;
	uint8_t *h = xmalloc(n), *back = xmalloc(n);
	void *src, *dst;

	NEED_GPU();
	for (size_t i = 0; i < n; i++)
		h[i] = (uint8_t)rnd();
	src = dev_copy(h, n);
	dst = dev_alloc(n);
	for (int round = 0; round < 2; round++) {
		CHECK_INT(moek_hip_memset(dst, round, n), 0);
		CHECK_INT(moek_hip_copy_kernel(dst, src, n - round, NULL), 0);
		CHECK_INT(moek_hip_sync(NULL), 0);
		CHECK_INT(moek_hip_download(back, dst, n), 0);
		CHECK(!memcmp(back, h, n - round));
		CHECK_INT(back[n - 1], round ? round : h[n - 1]);
	}
	CHECK_INT(moek_hip_copy_kernel((char *)dst + 1, src, 16, NULL),
		  -EINVAL);
	moek_hip_free(src);
	moek_hip_free(dst);
	free(h);
	free(back);
}

static void test_done(void)
{
	moek_hip_destroy(g_ctx);
	g_ctx = NULL;
}

TEST(device)
{
	char name[128];

	NEED_GPU();
	CHECK_INT(moek_hip_device_name(0, name, sizeof(name)), 0);
	printf("# GPU 0: %s\n", name);
}

static const struct h_test gpu_tests[] = {
	T(device), T(act_quant),
	T(route_sigmoid_groups_bias), T(route_sigmoid_groups_nobias),
	T(route_softmax), T(route_topk_all_kept_groups), T(route_v2lite),
	T(route_v3), T(route_max_experts), T(route_edge_cases),
	T(align),
	T(ffn_f32), T(ffn_bf16), T(ffn_fp8), T(ffn_inf_activation),
	T(ffn_max_activation),
	T(layer_tiny_f32), T(layer_tiny_bf16), T(layer_tiny_fp8),
	T(layer_tiny_fp8_large_tile), T(layer_odd_f32_small_tile),
	T(layer_odd_bf16_large_tile), T(layer_one_token),
	T(layer_v2lite_bf16), T(layer_v2lite_bf16_large_tile),
	T(layer_v3_fp8_decode), T(layer_v3_fp8_prefill), T(layer_v3_bf16),
	T(layer_v3_fp8_decode_no_gemv), T(layer_tiny_bf16_no_gemv),
	T(layer_bf16_weights_at_8), T(layer_bf16_weights_at_8_large_tile),
	T(layer_bf16_weights_at_2), T(layer_fp8_weights_at_4),
	T(layer_fp8_weights_at_1_large_tile),
	T(layer_f32_weights_at_4_large_tile),
	T(errors), T(errors_do_not_linger), T(copy_kernel),
};

int main(int argc, char **argv)
{
	int r = h_run(gpu_tests, sizeof(gpu_tests) / sizeof(gpu_tests[0]),
		      argc, argv);

	test_done();
	return r;
}
