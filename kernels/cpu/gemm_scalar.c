/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * gemm_scalar.c - the portable kernels: the floor of the dispatch and the
 * model the SIMD kernels follow.
 *
 * gemm: each (row, token) dot product accumulates in f32, one element at
 * a time; FP8 rows accumulate each 128-column block and add it scaled by
 * the block's weight scale (the activations arrive dequantised).
 * gate: the router's logits in double, summed in order, as the reference
 * sums them.
 */
#include <pthread.h>
#include <string.h>

#include "cpu.h"

float moek_cpu_fp8_lut[256];

static pthread_once_t tables_once = PTHREAD_ONCE_INIT;

static void init_tables(void)
{
	int i;

	for (i = 0; i < 256; i++)
		moek_cpu_fp8_lut[i] = moek_fp8_to_f32((uint8_t)i);
}

void moek_cpu_init_tables(void)
{
	pthread_once(&tables_once, init_tables);
}

static float dot_f32(const float *w, const float *x, uint32_t n)
{
	float acc = 0.0f;
	uint32_t i;

	for (i = 0; i < n; i++)
		acc += w[i] * x[i];
	return acc;
}

static float dot_bf16(const uint16_t *w, const float *x, uint32_t n)
{
	float acc = 0.0f;
	uint32_t i;

	for (i = 0; i < n; i++)
		acc += moek_bf16_to_f32(w[i]) * x[i];
	return acc;
}

static float dot_fp8(const uint8_t *w, const float *ws, const float *x,
		     uint32_t n)
{
	float acc = 0.0f;
	uint32_t b, i, end;

	for (b = 0; b * MOEK_FP8_BLOCK < n; b++) {
		float part = 0.0f;

		end = (b + 1) * MOEK_FP8_BLOCK;
		if (end > n)
			end = n;
		for (i = b * MOEK_FP8_BLOCK; i < end; i++)
			part += moek_cpu_fp8_lut[w[i]] * x[i];
		acc += part * ws[b];
	}
	return acc;
}

static void gemm_scalar(const struct moek_mat *m, uint32_t r0, uint32_t r1,
			const float *const *x, const float *const *xs,
			uint32_t nt, float *out, size_t ldo)
{
	uint32_t n = m->cols, nbc = (n + MOEK_FP8_BLOCK - 1) / MOEK_FP8_BLOCK;
	uint32_t r, t;

	(void)xs;
	for (r = r0; r < r1; r++) {
		for (t = 0; t < nt; t++) {
			float v;

			switch (m->type) {
			case MOEK_BF16:
				v = dot_bf16((const uint16_t *)m->w +
					     (size_t)r * n, x[t], n);
				break;
			case MOEK_FP8_E4M3:
				v = dot_fp8((const uint8_t *)m->w +
					    (size_t)r * n,
					    m->s + (size_t)(r / MOEK_FP8_BLOCK) *
						   nbc, x[t], n);
				break;
			default:
				v = dot_f32((const float *)m->w + (size_t)r * n,
					    x[t], n);
				break;
			}
			out[t * ldo + (r - r0)] = v;
		}
	}
}

static void gate_scalar(const void *gate, uint32_t gtype, uint32_t dim,
			uint32_t e0, uint32_t e1, const float *x, double *out)
{
	uint32_t e, i;

	for (e = e0; e < e1; e++) {
		double acc = 0.0;

		if (gtype == MOEK_BF16) {
			const uint16_t *g = (const uint16_t *)gate +
					    (size_t)e * dim;

			for (i = 0; i < dim; i++)
				acc += (double)x[i] *
				       (double)moek_bf16_to_f32(g[i]);
		} else {
			const float *g = (const float *)gate + (size_t)e * dim;

			for (i = 0; i < dim; i++)
				acc += (double)x[i] * (double)g[i];
		}
		out[e - e0] = acc;
	}
}

const struct moek_kern moek_kern_scalar = {
	.gemm = gemm_scalar,
	.gate = gate_scalar,
	.act = MOEK_ACT_F32,
};
