/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * cpu.h - private declarations of the CPU fast path (kernels/cpu).
 *
 * The public contract is kernels/include/moek.h ("the CPU fast path");
 * this header joins the files of kernels/cpu and lets tools/bench-moe.c
 * run its STREAM triad on the same thread pool. Nothing here is ABI.
 *
 *   pool.c          persistent pthread pool, barrier, dynamic work counter
 *   dispatch.c      ISA detection, moek_cpu_create() and friends
 *   route.c         router (logits in double, as the reference)
 *   group.c         counts, offsets, (token, k) permutation, work lists
 *   layer.c         the driver of one layer
 *   gemm_scalar.c   portable kernels
 *   gemm_avx2.c     AVX2 + FMA + F16C kernels
 *   gemm_avx512.c   AVX-512F/BW/VL kernels
 */
#ifndef MOEK_CPU_H
#define MOEK_CPU_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include "moek.h"

/* ---- thread pool (pool.c) -------------------------------------------- */

struct moek_pool;

/* A job: every thread runs fn(arg, tid, nthreads); the caller is tid 0. */
typedef void (*moek_pool_fn)(void *arg, unsigned int tid,
			     unsigned int nthreads);

int moek_pool_create(unsigned int nthreads, struct moek_pool **out);
void moek_pool_destroy(struct moek_pool *p);
unsigned int moek_pool_threads(const struct moek_pool *p);
/* Run fn on every thread and return once all have finished. */
void moek_pool_run(struct moek_pool *p, moek_pool_fn fn, void *arg);
/* Inside a job: wait until every thread of the pool has arrived. */
void moek_pool_barrier(struct moek_pool *p);

/* ---- kernels (gemm_*.c) ----------------------------------------------- */

/*
 * One weight matrix: [rows][cols] of type, and for FP8 its block scales
 * [ceil(rows/128)][ceil(cols/128)].
 */
struct moek_mat {
	const void *w;
	const float *s;
	uint32_t type;
	uint32_t rows;
	uint32_t cols;
	uint32_t prefetch;	/* FP8: moek_cpu_prefetch_next() on */
};

/*
 * out[t * ldo + (r - r0)] = sum_i W[r][i] * x[t][i] for r in [r0, r1) and
 * t < nt. For FP8, W[r][i] is fp8(w) * scale and x holds the act-quantised
 * activations in the kernel table's act format (below), with their block
 * scales in xs[t] (ignored for MOEK_ACT_F32). r0 may be any row: an FP8
 * tile looks up each of its rows' block scales.
 * Each (row, token) result is computed the same way whatever the tiling:
 * the output does not depend on how work is split across threads.
 */
typedef void (*moek_gemm_fn)(const struct moek_mat *m, uint32_t r0,
			     uint32_t r1, const float *const *x,
			     const float *const *xs, uint32_t nt, float *out,
			     size_t ldo);

/*
 * How a kernel table wants act-quantised (FP8 path) activations, in a
 * row of f32 slots:
 * MOEK_ACT_F32:  x[i] = fp8(q[i]) * scale[i / 128], dequantised f32
 * MOEK_ACT_BF16: block b's values as bf16(fp8(q[i]) * 2^100) (exact),
 *                packed at the start of the block's 128 f32 slots; the
 *                scales go to a separate array
 * MOEK_ACT_Q32:  x[i] = fp8(q[i]) * 2^100 in f32 (exact); the scales go
 *                to a separate array
 */
enum moek_act {
	MOEK_ACT_F32 = 0,
	MOEK_ACT_BF16 = 1,
	MOEK_ACT_Q32 = 2,
};

/* out[e - e0] = sum_i gate[e][i] * x[i] in double, e in [e0, e1). */
typedef void (*moek_gate_fn)(const void *gate, uint32_t gtype, uint32_t dim,
			     uint32_t e0, uint32_t e1, const float *x,
			     double *out);

struct moek_kern {
	moek_gemm_fn gemm;
	moek_gate_fn gate;
	enum moek_act act;
};

extern const struct moek_kern moek_kern_scalar;
extern const struct moek_kern moek_kern_avx2;
extern const struct moek_kern moek_kern_avx512;
extern const struct moek_kern moek_kern_avx512_bf16;

/* moek_act_quant_row() bit for bit, faster (layer.c). */
void moek_cpu_act_quant_row(const float *x, size_t n, uint8_t *q,
			    float *scales);

/*
 * The FP8 tiles' prefetch, where m->prefetch is set: bytes [k0, k1) of the
 * mr rows that follow rows r .. r + mr - 1 of an e4m3 matrix (cols bytes
 * a row), up to its last row: the block a tile reads now, of the next row
 * group. An e4m3 row is short (1.4 to 7 KB), too short a stream for the
 * hardware prefetcher to reach full speed in. moex-bench moe measures the
 * gain at batch 1 (*_fp8_b1_prefetch_gain, figures in moe-cpu.rst); bf16
 * rows, twice as long, got slower with it, so they have none. The GEMMs
 * clear m->prefetch for all but a row group's first token group.
 */
static inline void moek_cpu_prefetch_next(const struct moek_mat *m,
					  uint32_t r, int mr, uint32_t k0,
					  uint32_t k1)
{
	uint32_t row, k;

	if (!m->prefetch)
		return;
	for (row = r + mr; row < r + 2 * mr && row < m->rows; row++) {
		const char *p = (const char *)m->w + (size_t)row * m->cols;

		for (k = k0; k < k1; k += 64)
			__builtin_prefetch(p + k, 0, 3);
		__builtin_prefetch(p + k1 - 1, 0, 3);
	}
}

/* e4m3 byte -> f32, exact (the table behind the scalar kernels). */
extern float moek_cpu_fp8_lut[256];
void moek_cpu_init_tables(void);

/* ---- the context (dispatch.c, layer.c) -------------------------------- */

/* The threads of moek_cpu_create(0, ...): one per CPU this process may
 * run on, 1 to MOEK_CPU_MAX_THREADS. */
unsigned int moek_cpu_default_threads(void);

/* Tokens per GEMM call: bounds the per-thread scratch. */
#define MOEK_CPU_TB 16
/* Rows per work item (a multiple of 128 so that an FP8 intermediate's
 * act-quant blocks never straddle two items). */
#define MOEK_CPU_CHUNK 128

struct moek_cpu_tls {
	float *tmp;		/* [2][MOEK_CPU_TB][MOEK_CPU_CHUNK] */
	const float **xp;	/* [MOEK_CPU_TB] */
	const float **xsp;	/* [MOEK_CPU_TB] */
	uint8_t *q;		/* act-quant bytes, up to max(dim, width) */
};

/* A piece of the gate/up phase: rows [r0, r1) of expert e (n_experts:
 * the shared FFN). */
struct moek_item {
	uint32_t e;
	uint32_t r0;
	uint32_t r1;
};

struct moek_cpu {
	struct moek_pool *pool;
	enum moek_isa isa;
	const struct moek_kern *k;
	unsigned int nthreads;
	int prefetch;		/* moek_cpu_set_prefetch() */

	/* Scratch, grown by moek_cpu_reserve() and kept. */
	void *buf;
	size_t buf_size;
	struct moek_cpu_tls *tls;	/* [nthreads] */
	void *tls_buf;
	size_t tls_size;

	/* The layer being run (layer.c). */
	const struct moek_shape *s;
	const struct moek_weights *wt;
	const float *x;
	float *y;
	size_t ntok;
	double *logits;		/* [ntok][n_experts] */
	int32_t *idx;		/* [ntok][topk] */
	float *rw;		/* [ntok][topk] */
	uint32_t *counts;	/* [n_experts] */
	uint32_t *offs;		/* [n_experts + 1] */
	uint32_t *slot_tok;	/* [ntok * topk]: token of each slot */
	float *slot_w;		/* [ntok * topk]: its routing weight */
	float *xd;		/* [ntok][dim] act-quantised x (FP8) */
	float *xsc;		/* [ntok][ceil(dim / 128)] its scales */
	float *h;		/* [ntok * topk][inter] */
	float *hsc;		/* [ntok * topk][ceil(inter / 128)] */
	float *hs;		/* [ntok][n_shared * inter] */
	float *hssc;		/* [ntok][ceil(n_shared * inter / 128)] */
	struct moek_item *items;
	uint32_t n_items;
	atomic_uint next_item;
	atomic_uint next_row;
};

/* route.c: routes of tokens [t0, t1) from c->logits into c->idx, c->rw. */
void moek_cpu_route_select(struct moek_cpu *c, size_t t0, size_t t1);
/* group.c: counts, offsets, the slots and the gate/up work list. */
void moek_cpu_group(struct moek_cpu *c);

#endif /* MOEK_CPU_H */
