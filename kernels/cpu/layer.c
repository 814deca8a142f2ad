/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * layer.c - one MoE layer on the CPU: the driver.
 *
 * The whole layer is one job of the pool; its threads meet at barriers
 * between five phases:
 *
 *   A  router logits, in parallel over blocks of 16 gate rows (each block
 *      stays in L2 while every token passes); on the FP8 path also the
 *      act-quant of x, in parallel over tokens (x is quantised once and
 *      serves the shared FFN and every routed expert)
 *   B  top-k selection, in parallel over tokens (route.c)
 *   C  thread 0 groups the tokens by expert (group.c)
 *   D  gate/up: work items of 128 intermediate rows of one expert, taken
 *      from an atomic counter; each computes silu(w1 x) * (w3 x) for all
 *      of that expert's tokens and, on the FP8 path, act-quantises the
 *      result (an item holds whole 128-channel blocks)
 *   E  down: the output channels (dim) cut into pieces of 64 rows, taken
 *      from an atomic counter; a piece runs w2 of the shared FFN and of
 *      every active expert over its rows and adds the results, scaled
 *      by the routing weights, into y. Threads own disjoint columns of y:
 *      no races and no per-pair output buffer.
 *
 * Splitting rows, not experts, across threads lets batch-1 decode (one
 * GEMV per active expert) keep every thread streaming weights. Work
 * pieces have fixed bounds and each (row, token) result is computed the
 * same way whichever thread runs it, so the output does not depend on
 * the number of threads.
 */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cpu.h"

#define GATE_BLOCK 16	/* gate rows per phase-A piece */
#define DOWN_CHUNK 64	/* output rows per phase-E piece */
#define ALIGN 64

static size_t nblocks(size_t n)
{
	return (n + MOEK_FP8_BLOCK - 1) / MOEK_FP8_BLOCK;
}

/* ---- argument checks: the reference's rules ---------------------------- */

static int check_ffn(const struct moek_shape *s, const struct moek_ffn *f)
{
	if (!f->w1 || !f->w2 || !f->w3)
		return -EINVAL;
	if (s->wtype == MOEK_FP8_E4M3 && (!f->s1 || !f->s2 || !f->s3))
		return -EINVAL;
	return 0;
}

static int check_args(const struct moek_shape *s,
		      const struct moek_weights *wt)
{
	uint32_t e;

	if (moek_shape_check(s))
		return -EINVAL;
	if (!wt || !wt->gate || !wt->experts)
		return -EINVAL;
	for (e = 0; e < s->n_experts; e++)
		if (check_ffn(s, &wt->experts[e]))
			return -EINVAL;
	if (s->n_shared && check_ffn(s, &wt->shared))
		return -EINVAL;
	return 0;
}

/* ---- scratch ------------------------------------------------------------ */

/* Bump allocator over the context's buffer: a NULL base measures. */
struct carve {
	char *base;
	size_t off;
	int overflow;
};

static void *carve(struct carve *cv, size_t n, size_t size)
{
	size_t off = (cv->off + ALIGN - 1) & ~(size_t)(ALIGN - 1);

	if (size && n > (SIZE_MAX / 2 - off) / size) {
		cv->overflow = 1;
		return NULL;
	}
	cv->off = off + n * size;
	return cv->base ? cv->base + off : NULL;
}

static void carve_layer(struct moek_cpu *c, struct carve *cv)
{
	const struct moek_shape *s = c->s;
	size_t ntok = c->ntok, n = s->n_experts, pairs;
	size_t shw = (size_t)s->n_shared * s->inter;

	pairs = ntok * s->topk;		/* topk <= 64: no overflow */
	c->logits = carve(cv, ntok, n * sizeof(double));
	c->idx = carve(cv, pairs, sizeof(*c->idx));
	c->rw = carve(cv, pairs, sizeof(*c->rw));
	c->counts = carve(cv, n, sizeof(*c->counts));
	c->offs = carve(cv, n + 1, sizeof(*c->offs));
	c->slot_tok = carve(cv, pairs, sizeof(*c->slot_tok));
	c->slot_w = carve(cv, pairs, sizeof(*c->slot_w));
	c->items = carve(cv, n * nblocks(s->inter) + nblocks(shw),
			 sizeof(*c->items));
	c->xd = NULL;
	c->xsc = NULL;
	if (s->wtype == MOEK_FP8_E4M3) {
		c->xd = carve(cv, ntok, (size_t)s->dim * sizeof(float));
		c->xsc = carve(cv, ntok, nblocks(s->dim) * sizeof(float));
	}
	c->h = carve(cv, pairs, (size_t)s->inter * sizeof(float));
	c->hsc = carve(cv, pairs, nblocks(s->inter) * sizeof(float));
	c->hs = shw ? carve(cv, ntok, shw * sizeof(float)) : NULL;
	c->hssc = shw ? carve(cv, ntok, nblocks(shw) * sizeof(float)) : NULL;
}

/* Per-thread scratch: tmp, xp, the act-quant bytes and scales. */
static size_t tls_bytes(const struct moek_shape *s, size_t *qlen)
{
	size_t w = (size_t)s->n_shared * s->inter;

	if (w < s->inter)
		w = s->inter;
	if (w < s->dim)
		w = s->dim;
	*qlen = (w + ALIGN - 1) & ~(size_t)(ALIGN - 1);
	return 2 * MOEK_CPU_TB * MOEK_CPU_CHUNK * sizeof(float) +
	       2 * MOEK_CPU_TB * sizeof(float *) + *qlen + 4 * ALIGN;
}

static int reserve(struct moek_cpu *c)
{
	struct carve cv = { 0 };
	size_t need, qlen, per;
	unsigned int i;
	void *old;

	carve_layer(c, &cv);
	if (cv.overflow)
		return -ENOMEM;
	need = cv.off + ALIGN;
	if (need > c->buf_size) {
		void *nb;

		/* Grow by half again, so that a rising batch size does not
		 * reallocate on every call. */
		if (need < c->buf_size + c->buf_size / 2)
			need = c->buf_size + c->buf_size / 2;
		nb = NULL;
		if (posix_memalign(&nb, 4096, need))
			return -ENOMEM;
		/* the new buffer in place before the old is freed: a child
		 * of fork(2) (libmoex's runs go on in one) never finds a
		 * freed one */
		old = c->buf;
		c->buf = nb;
		c->buf_size = need;
		free(old);
	}
	cv.base = c->buf;
	cv.off = 0;
	carve_layer(c, &cv);

	per = tls_bytes(c->s, &qlen);
	per = (per + ALIGN - 1) & ~(size_t)(ALIGN - 1);
	if (per * c->nthreads > c->tls_size) {
		void *nb = NULL;

		if (posix_memalign(&nb, 4096, per * c->nthreads))
			return -ENOMEM;
		old = c->tls_buf;
		c->tls_buf = nb;
		c->tls_size = per * c->nthreads;
		free(old);
	}
	for (i = 0; i < c->nthreads; i++) {
		struct carve t = { (char *)c->tls_buf + i * per, 0, 0 };

		c->tls[i].tmp = carve(&t, 2 * MOEK_CPU_TB * MOEK_CPU_CHUNK,
				      sizeof(float));
		c->tls[i].xp = carve(&t, MOEK_CPU_TB, sizeof(float *));
		c->tls[i].xsp = carve(&t, MOEK_CPU_TB, sizeof(float *));
		c->tls[i].q = carve(&t, qlen, 1);
	}
	return 0;
}

/* ---- phases ------------------------------------------------------------- */

/*
 * f32 -> e4m3, round to nearest even, saturating to +-448, NaN to 0x7f
 * with the sign: moek_f32_to_fp8() bit for bit, without libm.
 */
static inline uint8_t to_e4m3(float f)
{
	uint32_t u, a;
	uint8_t sign;

	memcpy(&u, &f, sizeof(u));
	sign = (uint8_t)((u >> 24) & 0x80);
	a = u & 0x7fffffffu;
	if (a > 0x7f800000u)
		return sign | 0x7f;
	if (a >= 0x43e00000u)			/* 448 */
		return sign | 0x7e;
	if (a < 0x3c800000u) {			/* 2^-6: subnormal */
		float v;

		memcpy(&v, &a, sizeof(v));
		v = v * 512.0f;			/* exact */
		v = (v + 8388608.0f) - 8388608.0f;	/* rint, to even */
		return sign | (uint8_t)(int)v;
	}
	/* Round the mantissa to 3 bits, to even; a carry bumps the exponent;
	 * then rebias from 127 to 7. */
	a += 0x7ffffu + ((a >> 20) & 1u);
	return sign | (uint8_t)((a >> 20) - (120u << 3));
}

/**
 * moek_cpu_act_quant_row() - moek_act_quant_row(), bit for bit.
 * @x:      n f32 values
 * @n:      the row length
 * @q:      out: n e4m3 values
 * @scales: out: ceil(n / 128) f32 scales
 */
void moek_cpu_act_quant_row(const float *x, size_t n, uint8_t *q,
			    float *scales)
{
	size_t b, i, end;

	for (b = 0; b * MOEK_FP8_BLOCK < n; b++) {
		float amax = 0.0f, sc;

		end = (b + 1) * MOEK_FP8_BLOCK;
		if (end > n)
			end = n;
		for (i = b * MOEK_FP8_BLOCK; i < end; i++)
			amax = fmaxf(amax, fabsf(x[i]));
		sc = fmaxf(amax, 1e-4f) / MOEK_FP8_MAX;
		scales[b] = sc;
		for (i = b * MOEK_FP8_BLOCK; i < end; i++)
			q[i] = to_e4m3(x[i] / sc);
	}
}

/*
 * Act-quantise n values in place (x starts a 128-channel block) into the
 * kernels' format (enum moek_act); the block scales go to sc.
 */
static void act_prep(const struct moek_cpu *c, float *x, size_t n,
		     uint8_t *q, float *sc)
{
	uint16_t bh[MOEK_FP8_BLOCK];
	size_t i, b, len;

	moek_cpu_act_quant_row(x, n, q, sc);
	if (c->k->act == MOEK_ACT_F32) {
		for (i = 0; i < n; i++)
			x[i] = moek_cpu_fp8_lut[q[i]] * sc[i / MOEK_FP8_BLOCK];
		return;
	}
	if (c->k->act == MOEK_ACT_Q32) {
		for (i = 0; i < n; i++)
			x[i] = moek_cpu_fp8_lut[q[i]] * 0x1p100f;
		return;
	}
	for (b = 0; b * MOEK_FP8_BLOCK < n; b++) {
		len = n - b * MOEK_FP8_BLOCK;
		if (len > MOEK_FP8_BLOCK)
			len = MOEK_FP8_BLOCK;
		for (i = 0; i < len; i++) {
			float v = moek_cpu_fp8_lut[q[b * MOEK_FP8_BLOCK + i]] *
				  0x1p100f;
			uint32_t u;

			memcpy(&u, &v, sizeof(u));
			bh[i] = (uint16_t)(u >> 16);
		}
		memcpy(x + b * MOEK_FP8_BLOCK, bh, len * sizeof(uint16_t));
	}
}

static void phase_route_logits(struct moek_cpu *c, unsigned int tid,
			       unsigned int nt)
{
	const struct moek_shape *s = c->s;
	uint32_t nb = (s->n_experts + GATE_BLOCK - 1) / GATE_BLOCK, b;
	size_t t;

	for (b = tid; b < nb; b += nt) {
		uint32_t e0 = b * GATE_BLOCK, e1 = e0 + GATE_BLOCK;

		if (e1 > s->n_experts)
			e1 = s->n_experts;
		for (t = 0; t < c->ntok; t++)
			c->k->gate(c->wt->gate, s->gtype, s->dim, e0, e1,
				   c->x + t * s->dim,
				   c->logits + t * s->n_experts + e0);
	}
	if (c->xd) {
		for (t = tid; t < c->ntok; t += nt) {
			float *xd = c->xd + t * s->dim;

			memcpy(xd, c->x + t * s->dim, s->dim * sizeof(float));
			act_prep(c, xd, s->dim, c->tls[tid].q,
				 c->xsc + t * nblocks(s->dim));
		}
	}
}

static void phase_route_select(struct moek_cpu *c, unsigned int tid,
			       unsigned int nt)
{
	size_t t0 = c->ntok * tid / nt, t1 = c->ntok * (tid + 1) / nt;

	moek_cpu_route_select(c, t0, t1);
}

static struct moek_mat mat(const struct moek_cpu *c, const void *w,
			   const float *sc, uint32_t rows, uint32_t cols)
{
	struct moek_mat m = {
		.w = w, .s = sc, .type = c->s->wtype, .rows = rows,
		.cols = cols, .prefetch = (uint32_t)c->prefetch,
	};
	return m;
}

static inline float silu_mul(float g, float u)
{
	return g / (1.0f + expf(-g)) * u;
}

/* Phase D, one item: rows [r0, r1) of an expert's intermediate. */
static void gate_up_item(struct moek_cpu *c, const struct moek_item *it,
			 struct moek_cpu_tls *tl)
{
	const struct moek_shape *s = c->s;
	const struct moek_ffn *f;
	const float *xin = c->xd ? c->xd : c->x;
	uint32_t width, ntk, j0, j, nb, rows = it->r1 - it->r0, r;
	float *out, *osc, *g = tl->tmp;
	float *u = tl->tmp + MOEK_CPU_TB * MOEK_CPU_CHUNK;
	size_t ldh, ldsc, nbd = nblocks(s->dim);
	struct moek_mat m1, m3;

	if (it->e == s->n_experts) {
		f = &c->wt->shared;
		width = s->n_shared * s->inter;
		ntk = (uint32_t)c->ntok;
		out = c->hs;
		osc = c->hssc;
	} else {
		f = &c->wt->experts[it->e];
		width = s->inter;
		ntk = c->counts[it->e];
		out = c->h + (size_t)c->offs[it->e] * s->inter;
		osc = c->hsc + (size_t)c->offs[it->e] * nblocks(s->inter);
	}
	ldh = width;
	ldsc = nblocks(width);
	m1 = mat(c, f->w1, f->s1, width, s->dim);
	m3 = mat(c, f->w3, f->s3, width, s->dim);

	for (j0 = 0; j0 < ntk; j0 += MOEK_CPU_TB) {
		nb = ntk - j0 < MOEK_CPU_TB ? ntk - j0 : MOEK_CPU_TB;
		for (j = 0; j < nb; j++) {
			size_t tok = it->e == s->n_experts ? j0 + j :
				     c->slot_tok[c->offs[it->e] + j0 + j];

			tl->xp[j] = xin + tok * s->dim;
			tl->xsp[j] = c->xsc ? c->xsc + tok * nbd : NULL;
		}
		c->k->gemm(&m1, it->r0, it->r1, tl->xp, tl->xsp, nb, g,
			   MOEK_CPU_CHUNK);
		c->k->gemm(&m3, it->r0, it->r1, tl->xp, tl->xsp, nb, u,
			   MOEK_CPU_CHUNK);
		for (j = 0; j < nb; j++) {
			float *o = out + (j0 + j) * ldh + it->r0;

			for (r = 0; r < rows; r++)
				o[r] = silu_mul(g[j * MOEK_CPU_CHUNK + r],
						u[j * MOEK_CPU_CHUNK + r]);
			if (c->xd)
				act_prep(c, o, rows, tl->q,
					 osc + (j0 + j) * ldsc +
					 it->r0 / MOEK_FP8_BLOCK);
		}
	}
}

static void phase_gate_up(struct moek_cpu *c, unsigned int tid)
{
	for (;;) {
		unsigned int i = atomic_fetch_add_explicit(&c->next_item, 1,
							   memory_order_relaxed);

		if (i >= c->n_items)
			break;
		gate_up_item(c, &c->items[i], &c->tls[tid]);
	}
}

/* Phase E, one piece: output rows [o0, o1) of every token. */
static void down_piece(struct moek_cpu *c, uint32_t o0, uint32_t o1,
		       struct moek_cpu_tls *tl)
{
	const struct moek_shape *s = c->s;
	uint32_t rows = o1 - o0, j0, j, nb, r, e;
	size_t dim = s->dim, t;
	float *tmp = tl->tmp;

	if (s->n_shared) {
		const struct moek_ffn *f = &c->wt->shared;
		uint32_t width = s->n_shared * s->inter;
		struct moek_mat m2 = mat(c, f->w2, f->s2, s->dim, width);

		for (j0 = 0; j0 < c->ntok; j0 += MOEK_CPU_TB) {
			nb = c->ntok - j0 < MOEK_CPU_TB ? c->ntok - j0 :
							  MOEK_CPU_TB;
			for (j = 0; j < nb; j++) {
				tl->xp[j] = c->hs + (size_t)(j0 + j) * width;
				tl->xsp[j] = c->hssc + (size_t)(j0 + j) *
						       nblocks(width);
			}
			c->k->gemm(&m2, o0, o1, tl->xp, tl->xsp, nb, tmp,
				   MOEK_CPU_CHUNK);
			for (j = 0; j < nb; j++)
				memcpy(c->y + (j0 + j) * dim + o0,
				       tmp + j * MOEK_CPU_CHUNK,
				       rows * sizeof(float));
		}
	} else {
		for (t = 0; t < c->ntok; t++)
			memset(c->y + t * dim + o0, 0, rows * sizeof(float));
	}

	for (e = 0; e < s->n_experts; e++) {
		const struct moek_ffn *f = &c->wt->experts[e];
		uint32_t ntk = c->counts[e], base = c->offs[e];
		struct moek_mat m2;

		if (!ntk)
			continue;
		m2 = mat(c, f->w2, f->s2, s->dim, s->inter);
		for (j0 = 0; j0 < ntk; j0 += MOEK_CPU_TB) {
			nb = ntk - j0 < MOEK_CPU_TB ? ntk - j0 : MOEK_CPU_TB;
			for (j = 0; j < nb; j++) {
				tl->xp[j] = c->h +
					    (size_t)(base + j0 + j) * s->inter;
				tl->xsp[j] = c->hsc + (size_t)(base + j0 + j) *
						      nblocks(s->inter);
			}
			c->k->gemm(&m2, o0, o1, tl->xp, tl->xsp, nb, tmp,
				   MOEK_CPU_CHUNK);
			for (j = 0; j < nb; j++) {
				uint32_t slot = base + j0 + j;
				float w = c->slot_w[slot];
				float *yr = c->y + c->slot_tok[slot] * dim + o0;
				const float *tr = tmp + j * MOEK_CPU_CHUNK;

				for (r = 0; r < rows; r++)
					yr[r] += w * tr[r];
			}
		}
	}
}

static void phase_down(struct moek_cpu *c, unsigned int tid)
{
	uint32_t dim = c->s->dim;

	for (;;) {
		unsigned int i = atomic_fetch_add_explicit(&c->next_row, 1,
							   memory_order_relaxed);
		uint32_t o0 = i * DOWN_CHUNK, o1;

		if (o0 >= dim)
			break;
		o1 = dim - o0 > DOWN_CHUNK ? o0 + DOWN_CHUNK : dim;
		down_piece(c, o0, o1, &c->tls[tid]);
	}
}

static void layer_job(void *arg, unsigned int tid, unsigned int nt)
{
	struct moek_cpu *c = arg;

	phase_route_logits(c, tid, nt);
	moek_pool_barrier(c->pool);
	phase_route_select(c, tid, nt);
	moek_pool_barrier(c->pool);
	if (!tid)
		moek_cpu_group(c);
	moek_pool_barrier(c->pool);
	phase_gate_up(c, tid);
	moek_pool_barrier(c->pool);
	phase_down(c, tid);
}

/**
 * moek_cpu_layer() - the MoE layer on the CPU; moek_ref_layer()'s contract.
 * @c:      the context (not reentrant)
 * @s:      the shape
 * @wt:     the weights
 * @x:      [ntok][dim] activations
 * @ntok:   tokens; 0 is valid and touches nothing
 * @y:      out: [ntok][dim]; must not overlap x
 * @counts: out, optional: [n_experts] tokens routed to each expert
 *
 * Return: 0, -EINVAL (NULL context, bad shape, a NULL weight or scale the
 * shape needs, NULL x/y with ntok > 0) or -ENOMEM.
 */
int moek_cpu_layer(struct moek_cpu *c, const struct moek_shape *s,
		   const struct moek_weights *wt, const float *x, size_t ntok,
		   float *y, uint32_t *counts)
{
	int ret;

	if (!c)
		return -EINVAL;
	ret = check_args(s, wt);
	if (ret)
		return ret;
	if (!ntok)
		return 0;
	if (!x || !y)
		return -EINVAL;
	if (ntok > UINT32_MAX / MOEK_MAX_TOPK)
		return -ENOMEM;

	c->s = s;
	c->wt = wt;
	c->x = x;
	c->y = y;
	c->ntok = ntok;
	ret = reserve(c);
	if (ret)
		return ret;
	moek_pool_run(c->pool, layer_job, c);
	if (counts)
		memcpy(counts, c->counts, s->n_experts * sizeof(*counts));
	return 0;
}
