/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * moek_common.c - helpers every MoE backend shares: the shape rules, the
 * byte counts behind the "effective bandwidth" figure, the bf16 and e4m3
 * conversions and DeepSeek's per-token activation quantisation.
 *
 * See kernels/include/moek.h and Documentation/moe-kernels.rst.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "moek.h"

/* ---- shapes ---------------------------------------------------------- */

/**
 * moek_shape_check() - validate a layer shape.
 * @s: the shape
 *
 * The rules (Documentation/moe-kernels.rst, "Shapes"): dim, inter and
 * n_experts at least 1, n_experts at most MOEK_MAX_EXPERTS, topk in
 * 1..min(n_experts, MOEK_MAX_TOPK); with n_groups > 1 the groups divide
 * the experts evenly, hold at least two experts each, topk_groups is in
 * 1..n_groups and the kept groups hold at least topk experts; score,
 * wtype and gtype are known values (the gate is never FP8), norm_topk is
 * 0 or 1, route_scale is finite and positive and the shared FFN's width
 * n_shared * inter fits in 32 bits.
 *
 * Return: 0, or -EINVAL.
 */
int moek_shape_check(const struct moek_shape *s)
{
	uint32_t max_topk;

	if (!s)
		return -EINVAL;
	if (!s->dim || !s->inter || !s->n_experts)
		return -EINVAL;
	if (s->n_experts > MOEK_MAX_EXPERTS)
		return -EINVAL;
	max_topk = s->n_experts < MOEK_MAX_TOPK ? s->n_experts : MOEK_MAX_TOPK;
	if (!s->topk || s->topk > max_topk)
		return -EINVAL;
	if (s->n_groups > 1) {
		uint32_t gsize;

		if (s->n_experts % s->n_groups)
			return -EINVAL;
		gsize = s->n_experts / s->n_groups;
		if (gsize < 2)
			return -EINVAL;
		if (!s->topk_groups || s->topk_groups > s->n_groups)
			return -EINVAL;
		if ((uint64_t)s->topk > (uint64_t)s->topk_groups * gsize)
			return -EINVAL;
	}
	if (s->score != MOEK_SCORE_SOFTMAX && s->score != MOEK_SCORE_SIGMOID)
		return -EINVAL;
	if (s->norm_topk > 1)
		return -EINVAL;
	if (!isfinite(s->route_scale) || !(s->route_scale > 0.0f))
		return -EINVAL;
	if (s->wtype != MOEK_F32 && s->wtype != MOEK_BF16 &&
	    s->wtype != MOEK_FP8_E4M3)
		return -EINVAL;
	if (s->gtype != MOEK_F32 && s->gtype != MOEK_BF16)
		return -EINVAL;
	if ((uint64_t)s->n_shared * s->inter > UINT32_MAX)
		return -EINVAL;
	return 0;
}

/* ---- sizes ----------------------------------------------------------- */

static size_t moek_dtype_size(uint32_t t)
{
	switch (t) {
	case MOEK_F32:
		return 4;
	case MOEK_BF16:
		return 2;
	case MOEK_FP8_E4M3:
		return 1;
	default:
		return 0;
	}
}

/**
 * moek_matrix_bytes() - bytes of a [rows][cols] matrix of type t.
 * @t:    enum moek_dtype
 * @rows: output rows
 * @cols: input columns
 *
 * The FP8 block scales are not included: see moek_scale_count().
 *
 * Return: the byte count; 0 for an unknown type or when it overflows.
 */
size_t moek_matrix_bytes(uint32_t t, size_t rows, size_t cols)
{
	size_t es = moek_dtype_size(t);

	if (!es || !rows || !cols)
		return 0;
	if (rows > SIZE_MAX / cols || rows * cols > SIZE_MAX / es)
		return 0;
	return rows * cols * es;
}

/**
 * moek_scale_count() - f32 block scales of an FP8 [rows][cols] matrix.
 * @rows: output rows
 * @cols: input columns
 *
 * Return: ceil(rows / 128) * ceil(cols / 128).
 */
size_t moek_scale_count(size_t rows, size_t cols)
{
	size_t br = rows / MOEK_FP8_BLOCK + !!(rows % MOEK_FP8_BLOCK);
	size_t bc = cols / MOEK_FP8_BLOCK + !!(cols % MOEK_FP8_BLOCK);

	return br * bc;
}

/* One [rows][cols] weight of the shape's wtype, with its scales. */
static size_t moek_weight_bytes(const struct moek_shape *s, size_t rows,
				size_t cols)
{
	size_t b = moek_matrix_bytes(s->wtype, rows, cols);

	if (s->wtype == MOEK_FP8_E4M3)
		b += moek_scale_count(rows, cols) * sizeof(float);
	return b;
}

/* w1, w3 ([width][dim]) and w2 ([dim][width]) with their scales. */
static size_t moek_ffn_bytes(const struct moek_shape *s, size_t width)
{
	return 2 * moek_weight_bytes(s, width, s->dim) +
	       moek_weight_bytes(s, s->dim, width);
}

/**
 * moek_active_bytes() - weight bytes one token batch reads.
 * @s:      the shape
 * @counts: tokens per routed expert ([n_experts]), or NULL for all experts
 *
 * The gate, the bias (counted whenever it could be read: the shape does
 * not say whether a layer has one, so its n_experts f32 are always
 * counted), the shared FFN when n_shared > 0 and the three matrices of
 * every routed expert with counts[e] > 0, FP8 scales included.
 *
 * Return: the byte count, or 0 for a bad shape.
 */
size_t moek_active_bytes(const struct moek_shape *s, const uint32_t *counts)
{
	size_t total, expert;
	uint32_t e;

	if (moek_shape_check(s))
		return 0;
	total = moek_matrix_bytes(s->gtype, s->n_experts, s->dim);
	total += (size_t)s->n_experts * sizeof(float);
	if (s->n_shared)
		total += moek_ffn_bytes(s, (size_t)s->n_shared * s->inter);
	expert = moek_ffn_bytes(s, s->inter);
	for (e = 0; e < s->n_experts; e++)
		if (!counts || counts[e])
			total += expert;
	return total;
}

/* ---- conversions ----------------------------------------------------- */

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

/** moek_bf16_to_f32() - widen a bfloat16 (exact). */
float moek_bf16_to_f32(uint16_t v)
{
	return bits_f32((uint32_t)v << 16);
}

/**
 * moek_f32_to_bf16() - narrow to bfloat16, round to nearest even.
 * @f: the value
 *
 * Overflow rounds to infinity as IEEE rounding does; a NaN stays a NaN
 * (its sign and top payload bits kept, the quiet bit set so that a
 * payload living only in the low bits cannot turn into an infinity).
 */
uint16_t moek_f32_to_bf16(float f)
{
	uint32_t u = f32_bits(f);

	if ((u & 0x7fffffffu) > 0x7f800000u)
		return (uint16_t)((u >> 16) | 0x0040u);
	u += 0x7fffu + ((u >> 16) & 1u);
	return (uint16_t)(u >> 16);
}

/**
 * moek_fp8_to_f32() - decode an e4m3fn byte (exact).
 * @v: the byte: sign, 4 exponent bits (bias 7), 3 mantissa bits
 *
 * Exponent 0 is subnormal (m * 2^-9); 0x7f and 0xff are NaN; there are no
 * infinities, so exponent 15 with mantissa 0..6 is an ordinary number
 * (up to 0x7e = 448).
 */
float moek_fp8_to_f32(uint8_t v)
{
	unsigned int e = (v >> 3) & 0xfu, m = v & 0x7u;
	float r;

	if (e == 0xf && m == 0x7)
		return (v & 0x80) ? -NAN : NAN;
	if (!e)
		r = ldexpf((float)m, -9);
	else
		r = ldexpf((float)(8 + m), (int)e - 10);
	return (v & 0x80) ? -r : r;
}

/**
 * moek_f32_to_fp8() - encode as e4m3fn, round to nearest even, saturating.
 * @f: the value
 *
 * Anything of magnitude above 448 (infinities included) becomes +-448; a
 * NaN becomes 0x7f with f's sign bit (0xff when it is set); values below
 * half the smallest subnormal (2^-10) become a signed zero.
 */
uint8_t moek_f32_to_fp8(float f)
{
	uint8_t sign = (f32_bits(f) >> 31) ? 0x80 : 0x00;
	float a = fabsf(f);
	int ex, m;

	if (isnan(f))
		return sign | 0x7f;
	if (a >= MOEK_FP8_MAX)
		return sign | 0x7e;
	if (a < 0x1p-6f) {
		/* Subnormal range: units of 2^-9; 8 units is 0x08 = 2^-6. */
		m = (int)rintf(a * 0x1p9f);
		return sign | (uint8_t)m;
	}
	/* a = fr * 2^ex with fr in [0.5, 1): unbiased exponent ex - 1. */
	frexpf(a, &ex);
	ex -= 1;
	/* a * 2^(3 - ex) lies in [8, 16): 1.mmm scaled by 8; exact. */
	m = (int)rintf(ldexpf(a, 3 - ex));
	if (m == 16) {
		m = 8;
		ex++;
	}
	/* a < 448 keeps this at or below 0x7e. */
	return sign | (uint8_t)(((ex + 7) << 3) | (m - 8));
}

/**
 * moek_act_quant_row() - DeepSeek's act_quant of one activation row.
 * @x:      n f32 values
 * @n:      the row length; the last 128-channel block may be partial
 * @q:      out: n e4m3 values
 * @scales: out: ceil(n / 128) f32 scales
 *
 * For each block b: scales[b] = max(amax_b, 1e-4) / 448 and
 * q[i] = e4m3(x[i] / scales[b]), all in f32 arithmetic, so that
 * x[i] ~= fp8(q[i]) * scales[b].
 */
void moek_act_quant_row(const float *x, size_t n, uint8_t *q, float *scales)
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
			q[i] = moek_f32_to_fp8(x[i] / sc);
	}
}
