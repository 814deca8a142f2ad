/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * moek.h - the DeepSeek MoE layer as moex's compute kernels see it.
 *
 * Internal to moex: libmoex's public MoE API (runtime/include/moex.h) is
 * built on this, and the kernels in kernels/ref (scalar reference),
 * kernels/cpu (SIMD + threads) and kernels/hip (GPU) all implement it.
 * Everything here is plain C11 so that HIP/CUDA host code can include it.
 *
 * Semantics follow DeepSeek-V3's inference/model.py (see shared/DESIGN.md
 * and Documentation/moe-kernels.rst):
 *
 *   s      = score(x . gate^T)              sigmoid, or softmax over experts
 *   sel    = s + bias                       (bias for selection only)
 *   groups : experts split into n_groups equal groups; a group's score is
 *            the sum of its two best sel values (the max when bias == NULL);
 *            the best topk_groups groups stay, the rest are left out
 *   idx    = top-k of sel                   ties: the lower expert index wins
 *   w      = s[idx]; if norm_topk: w /= sum(w); w *= route_scale
 *   y      = sum_k w_k * ffn_{idx_k}(x) + shared(x)
 *   ffn(x) = w2 . (silu(w1 . x) * (w3 . x))
 *
 * Layouts: activations are f32, row-major [tokens][dim]. Weights are stored
 * as nn.Linear stores them, row-major [out][in]: w1 (gate_proj) and w3
 * (up_proj) are [inter][dim], w2 (down_proj) is [dim][inter]. The gate is
 * [n_experts][dim]. FP8 weights are e4m3 (OCP/NVIDIA "e4m3fn": bias 7, no
 * infinities, 0x7f/0xff NaN, max 448) with one f32 scale per 128x128 block,
 * DeepSeek-V3's weight_scale_inv layout: [ceil(out/128)][ceil(in/128)],
 * real value = fp8 value * scale. On the FP8 path activations entering
 * each linear are quantised per token per 128 channels as DeepSeek's
 * act_quant does: scale = max(amax, 1e-4) / 448, q = e4m3(x / scale).
 */
#ifndef MOEK_H
#define MOEK_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** enum moek_dtype - element type of a weight matrix. */
enum moek_dtype {
	MOEK_F32 = 0,
	MOEK_BF16 = 1,		/* bfloat16, round to nearest even */
	MOEK_FP8_E4M3 = 2,	/* with 128x128 block scales */
};

/** enum moek_score - the router's scoring function. */
enum moek_score {
	MOEK_SCORE_SOFTMAX = 0,	/* over all routed experts (V2) */
	MOEK_SCORE_SIGMOID = 1,	/* per expert (V3) */
};

#define MOEK_FP8_BLOCK 128	/* block edge of FP8 weight and act scales */
#define MOEK_FP8_MAX 448.0f	/* largest finite e4m3 value */
#define MOEK_MAX_EXPERTS 1024	/* n_experts limit, keeps scratch bounded */
#define MOEK_MAX_TOPK 64

/**
 * struct moek_shape - one MoE layer's dimensions and routing.
 * @dim:         hidden size
 * @inter:       intermediate size of one routed expert (moe_intermediate_size)
 * @n_experts:   routed experts
 * @topk:        experts per token (num_experts_per_tok), <= n_experts
 * @n_groups:    expert groups (n_group); 0 or 1: no group limiting.
 *               n_experts % n_groups == 0 and each group has >= 2 experts
 *               (a group's score may need its best two)
 * @topk_groups: groups kept per token (topk_group), 1..n_groups
 * @n_shared:    shared experts, run as one FFN of width n_shared * inter
 * @score:       enum moek_score
 * @norm_topk:   1: divide the top-k weights by their sum (norm_topk_prob)
 * @route_scale: factor on the routing weights (routed_scaling_factor)
 * @wtype:       enum moek_dtype of every expert weight (routed and shared)
 * @gtype:       enum moek_dtype of the gate weight: MOEK_F32 or MOEK_BF16
 */
struct moek_shape {
	uint32_t dim;
	uint32_t inter;
	uint32_t n_experts;
	uint32_t topk;
	uint32_t n_groups;
	uint32_t topk_groups;
	uint32_t n_shared;
	uint32_t score;
	uint32_t norm_topk;
	float route_scale;
	uint32_t wtype;
	uint32_t gtype;
};

/**
 * struct moek_ffn - one expert's weights (see the layouts above).
 * @w1, @w3: [inter][dim] of the shape's wtype (for the shared FFN:
 *           [n_shared * inter][dim])
 * @w2:      [dim][inter]
 * @s1, @s2, @s3: FP8 block scales of w1, w2, w3; NULL for f32 and bf16
 */
struct moek_ffn {
	const void *w1;
	const void *w2;
	const void *w3;
	const float *s1;
	const float *s2;
	const float *s3;
};

/**
 * struct moek_weights - a layer's weights, all by pointer.
 * @gate:    [n_experts][dim] of the shape's gtype
 * @bias:    [n_experts] f32 e_score_correction_bias, or NULL
 * @experts: [n_experts] routed experts
 * @shared:  the shared FFN; ignored when n_shared == 0
 */
struct moek_weights {
	const void *gate;
	const float *bias;
	const struct moek_ffn *experts;
	struct moek_ffn shared;
};

/* ---- helpers shared by every backend (kernels/ref/moek_common.c) ---- */

/* 0, or -EINVAL when the shape breaks a rule above. */
int moek_shape_check(const struct moek_shape *s);

/* Bytes of one [rows][cols] matrix of type t, and of its FP8 scales. */
size_t moek_matrix_bytes(uint32_t t, size_t rows, size_t cols);
size_t moek_scale_count(size_t rows, size_t cols);

/* Bytes of weights one token batch reads: the gate, the shared FFN and
 * each routed expert used by at least one token (counts[e] > 0), scales
 * included. The "effective bandwidth" figure divides this by the time. */
size_t moek_active_bytes(const struct moek_shape *s, const uint32_t *counts);

/* Scalar conversions: round to nearest even; fp8 saturates to +-448 and
 * maps NaN to NaN. */
float moek_bf16_to_f32(uint16_t v);
uint16_t moek_f32_to_bf16(float f);
float moek_fp8_to_f32(uint8_t v);
uint8_t moek_f32_to_fp8(float f);

/* DeepSeek's act_quant of one row of n f32 values: q[n] e4m3 and
 * scales[ceil(n/128)] with x ~= q * scale per 128-channel block. */
void moek_act_quant_row(const float *x, size_t n, uint8_t *q, float *scales);

/* ---- the scalar reference (kernels/ref/moe_ref.c) ---- */

/* Routing of ntok tokens: idx[ntok][topk] and w[ntok][topk], sorted by
 * descending selection score (ties: lower index first). 0 or -errno. */
int moek_ref_route(const struct moek_shape *s, const struct moek_weights *wt,
		   const float *x, size_t ntok, int32_t *idx, float *w);

/* y[ntok][dim] = ffn(x) for an FFN of the given width (inter, or
 * n_shared * inter for the shared one). Accumulates in double. */
int moek_ref_ffn(const struct moek_shape *s, const struct moek_ffn *f,
		 uint32_t width, const float *x, size_t ntok, float *y);

/* The whole layer: y[ntok][dim]. counts[n_experts] (optional) receives
 * the number of tokens routed to each expert. 0 or -errno. */
int moek_ref_layer(const struct moek_shape *s, const struct moek_weights *wt,
		   const float *x, size_t ntok, float *y, uint32_t *counts);

/* ---- the CPU fast path (kernels/cpu) ---- */

struct moek_cpu;

/* Instruction-set levels, best last. */
enum moek_isa {
	MOEK_ISA_SCALAR = 0,
	MOEK_ISA_AVX2 = 1,	/* AVX2 + FMA + F16C */
	MOEK_ISA_AVX512 = 2,	/* AVX-512F/BW/VL (+ BF16/VNNI where present) */
};

/* Threads of a pool at most (moek_cpu_create). */
#define MOEK_CPU_MAX_THREADS 1024

/* A persistent pool of nthreads workers (0: one per CPU the
 * process may run on, its affinity mask) and its
 * scratch. max_isa caps the dispatch (tests run every level the host has);
 * the best level the host supports up to it is used. 0 or -errno. */
int moek_cpu_create(unsigned int nthreads, enum moek_isa max_isa,
		    struct moek_cpu **out);
void moek_cpu_destroy(struct moek_cpu *c);
enum moek_isa moek_cpu_isa(const struct moek_cpu *c);
const char *moek_isa_name(enum moek_isa isa);
unsigned int moek_cpu_threads(const struct moek_cpu *c);
/* FP8 tiles prefetch the next row group (on by default); off only to
 * measure what it gains (moex-bench moe). */
void moek_cpu_set_prefetch(struct moek_cpu *c, int on);

/* Same contract as moek_ref_layer. Not reentrant on one moek_cpu. */
int moek_cpu_layer(struct moek_cpu *c, const struct moek_shape *s,
		   const struct moek_weights *wt, const float *x, size_t ntok,
		   float *y, uint32_t *counts);

#ifdef __cplusplus
}
#endif

#endif /* MOEK_H */
