/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * gemm_avx512.c - AVX-512F/BW/VL kernels (built with -mavx512*; called only
 * when dispatch.c found the CPU able to run them).
 *
 * The GEMM works on tiles of up to 4 rows x 4 tokens with one 16-lane f32
 * accumulator per (row, token): each weight vector is loaded and widened
 * once and feeds every token of the tile, each activation vector feeds
 * every row. Batch-1 decode is the 4 x 1 tile: four weight streams per
 * thread, limited by memory bandwidth, not by the conversions. FP8 tiles
 * prefetch each 128-column block of the next row group's rows as they
 * start on it (moek_cpu_prefetch_next()).
 *
 * Weights are widened to f32 in registers:
 *   bf16  zero-extend to 32 bits and shift left by 16 (exact)
 *   e4m3  sign-extend the byte to 16 bits, shift left by 7 and clear bit
 *         14: that is the f16 with the same sign, exponent field and
 *         mantissa, i.e. the e4m3 value times 2^-8 (subnormals included,
 *         exactly); vcvtph2ps widens it and the 2^8 is folded into the
 *         block scale the vector is multiplied by. The NaN bytes
 *         0x7f/0xff read as +-480 (see Documentation/moe-cpu.rst).
 * f32 and bf16 weights meet f32 activations in f32 FMAs: vdpbf16ps would
 * round the activations to bf16, and the FMA path already streams at the
 * memory bandwidth. FP8 weights meet act-quantised activations, which
 * are e4m3 values too: both are exact in bf16, so where the CPU has
 * AVX512_BF16 the FP8 GEMM runs on vdpbf16ps (moek_kern_avx512_bf16),
 * 32 products per instruction, exact, summed in f32 per 128-column block
 * and scaled once per block, as DeepSeek's fp8_gemm does; it reads e4m3
 * subnormal weights as zero (Documentation/moe-cpu.rst). Without BF16
 * the f16 path above is used. VNNI does not apply: e4m3 is not an
 * integer format.
 *
 * The router's logits are summed in double, 16 lanes wide.
 */
#include <immintrin.h>
#include <stdint.h>

#include "cpu.h"

#define UNROLL _Pragma("GCC unroll 4")
#define INLINE static inline __attribute__((always_inline))

INLINE __m512 load_w(const int type, const void *w, size_t off,
		     __mmask16 mk, const int full, __m512 scale)
{
	if (type == MOEK_F32) {
		const float *p = (const float *)w + off;

		return full ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(mk, p);
	}
	if (type == MOEK_BF16) {
		const uint16_t *p = (const uint16_t *)w + off;
		__m256i v = full ? _mm256_loadu_si256((const __m256i *)p) :
				   _mm256_maskz_loadu_epi16(mk, p);

		return _mm512_castsi512_ps(
			_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
	} else {
		const uint8_t *p = (const uint8_t *)w + off;
		__m128i b = full ? _mm_loadu_si128((const __m128i *)p) :
				   _mm_maskz_loadu_epi8(mk, p);
		__m256i h = _mm256_slli_epi16(_mm256_cvtepi8_epi16(b), 7);

		h = _mm256_and_si256(h, _mm256_set1_epi16((short)0xbfff));
		return _mm512_mul_ps(_mm512_cvtph_ps(h), scale);
	}
}

INLINE __m512 load_x(const float *p, __mmask16 mk, const int full)
{
	return full ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(mk, p);
}

/* acc[i][j] += W[r + i][k .. k + 15] * x[j][k .. k + 15] */
#define STEP(FULL)							\
	do {								\
		__m512 wv[4];						\
		UNROLL							\
		for (i = 0; i < MR; i++)				\
			wv[i] = load_w(type, m->w, (size_t)(r + i) * n + k, \
				       mk, FULL, sc[i]);		\
		UNROLL							\
		for (j = 0; j < NT; j++) {				\
			__m512 xv = load_x(x[j] + k, mk, FULL);		\
			UNROLL						\
			for (i = 0; i < MR; i++)			\
				acc[i][j] = _mm512_fmadd_ps(wv[i], xv,	\
							    acc[i][j]);	\
		}							\
	} while (0)

INLINE void tile(const int type, const int MR, const int NT,
		 const struct moek_mat *m, uint32_t r, const float *const *x,
		 float *out, size_t ldo)
{
	const uint32_t n = m->cols;
	__m512 acc[4][4], sc[4];
	__mmask16 mk = 0xffff;
	uint32_t k, kend, b, nbc;
	int i, j;

	UNROLL
	for (i = 0; i < MR; i++) {
		sc[i] = _mm512_set1_ps(1.0f);
		UNROLL
		for (j = 0; j < NT; j++)
			acc[i][j] = _mm512_setzero_ps();
	}
	if (type == MOEK_FP8_E4M3) {
		nbc = (n + MOEK_FP8_BLOCK - 1) / MOEK_FP8_BLOCK;
		for (b = 0; b < nbc; b++) {
			UNROLL
			for (i = 0; i < MR; i++)
				sc[i] = _mm512_set1_ps(256.0f *
					m->s[(size_t)((r + i) / MOEK_FP8_BLOCK) *
					     nbc + b]);
			kend = (b + 1) * MOEK_FP8_BLOCK;
			if (kend > n)
				kend = n;
			moek_cpu_prefetch_next(m, r, MR, b * MOEK_FP8_BLOCK,
					       kend);
			for (k = b * MOEK_FP8_BLOCK; k + 16 <= kend; k += 16)
				STEP(1);
			if (k < kend) {
				mk = (__mmask16)((1u << (kend - k)) - 1);
				STEP(0);
			}
		}
	} else {
		for (k = 0; k + 16 <= n; k += 16)
			STEP(1);
		if (k < n) {
			mk = (__mmask16)((1u << (n - k)) - 1);
			STEP(0);
		}
	}
	UNROLL
	for (i = 0; i < MR; i++) {
		UNROLL
		for (j = 0; j < NT; j++)
			out[(size_t)j * ldo + i] =
				_mm512_reduce_add_ps(acc[i][j]);
	}
}

typedef void (*tile_fn)(const struct moek_mat *m, uint32_t r,
			const float *const *x, float *out, size_t ldo);

#define DEF_TILE(T, MR, NT)						\
	static void tile_##T##_##MR##_##NT(const struct moek_mat *m,	\
					   uint32_t r,			\
					   const float *const *x,	\
					   float *out, size_t ldo)	\
	{								\
		tile(T, MR, NT, m, r, x, out, ldo);			\
	}
#define DEF_ROW(T, MR)							\
	DEF_TILE(T, MR, 1) DEF_TILE(T, MR, 2) DEF_TILE(T, MR, 3)	\
	DEF_TILE(T, MR, 4)
#define DEF_TYPE(T) DEF_ROW(T, 1) DEF_ROW(T, 2) DEF_ROW(T, 3) DEF_ROW(T, 4)

DEF_TYPE(0)
DEF_TYPE(1)
DEF_TYPE(2)

#define ROW(T, MR)							\
	{ tile_##T##_##MR##_1, tile_##T##_##MR##_2, tile_##T##_##MR##_3, \
	  tile_##T##_##MR##_4 }
#define TYPE(T) { ROW(T, 1), ROW(T, 2), ROW(T, 3), ROW(T, 4) }

/* [type][rows - 1][tokens - 1] */
static const tile_fn tiles[3][4][4] = { TYPE(0), TYPE(1), TYPE(2) };

static void gemm_avx512(const struct moek_mat *m, uint32_t r0, uint32_t r1,
			const float *const *x, const float *const *xs,
			uint32_t nt, float *out, size_t ldo)
{
	struct moek_mat later = *m;	/* later token groups: no prefetch */
	uint32_t r, t, mr, tt;

	(void)xs;
	later.prefetch = 0;
	for (r = r0; r < r1; r += 4) {
		mr = r1 - r < 4 ? r1 - r : 4;
		for (t = 0; t < nt; t += 4) {
			tt = nt - t < 4 ? nt - t : 4;
			/* cppcheck-suppress negativeIndex ; tt >= 1: t < nt */
			tiles[m->type][mr - 1][tt - 1](t ? &later : m, r, x + t,
						       out + t * ldo + (r - r0),
						       ldo);
		}
	}
}

/* ---- FP8 through vdpbf16ps (CPUs with AVX512_BF16) ---------------------- */

/*
 * 32 e4m3 bytes as bf16 holding the value times 2^-120: sign-extend to 16
 * bits, shift left by 4 and keep the sign bit and the 7 bits of exponent
 * and mantissa (mask 0x87f0). Normal e4m3 values land exactly; the
 * subnormal ones (|w| < 2^-6) become bf16 subnormals, which vdpbf16ps
 * reads as zero.
 */
INLINE __m512i w_bf16(const uint8_t *p, __mmask32 mk, const int full)
{
	__m256i b = full ? _mm256_loadu_si256((const __m256i *)p) :
			   _mm256_maskz_loadu_epi8(mk, p);
	__m512i v = _mm512_slli_epi16(_mm512_cvtepi8_epi16(b), 4);

	return _mm512_and_si512(v, _mm512_set1_epi16((short)0x87f0));
}

/*
 * One row group of an FP8 GEMM on vdpbf16ps: rows r .. r + MR - 1 (MR up
 * to 4) against nt tokens (up to MOEK_CPU_TB). x holds MOEK_ACT_BF16
 * rows: bf16(q * 2^100), so each product is w * q * 2^-20, exact in f32.
 *
 * The rows are walked one 128-column scale block at a time. A full block
 * is widened once into 16 registers (4 rows x 4 steps of 32 columns) and
 * serves every token in turn: at batch 16 a weight byte is widened once,
 * not once per token pair as a 4 x 2 tile would (the widening took more
 * instructions than the products it fed). Per (row, token) the block's
 * products are summed over its steps in order, then the sum is scaled by
 * ws * xs * 2^20 into the token's total (tot, in memory: 4 x 16 vectors
 * do not fit the register file); the totals are reduced at the end. A
 * last block shorter than 128 columns (odd shapes) reloads its masked
 * weights per token; it sums in the same order. ONE: a copy for calls of
 * one token (decode), where the compiler keeps tot in registers (in
 * memory it cost batch 1 about a tenth in cache).
 */
INLINE void rows_bh(const int MR, const int ONE, const struct moek_mat *m,
		    uint32_t r, const float *const *x, const float *const *xs,
		    uint32_t nt, float *out, size_t ldo)
{
	const uint32_t n = m->cols;
	const uint8_t *w = m->w;
	const uint32_t nbc = (n + MOEK_FP8_BLOCK - 1) / MOEK_FP8_BLOCK;
	__m512 tot[MOEK_CPU_TB][4], accb[4];
	__m512i wv[4][4];
	float ws[4];
	uint32_t b, t, k, kb, kend;
	__mmask32 mk;
	int i, s;

	if (ONE)
		nt = 1;	/* decode: a constant, tot stays in registers */
	for (t = 0; t < nt; t++) {
		UNROLL
		for (i = 0; i < MR; i++)
			tot[t][i] = _mm512_setzero_ps();
	}
	for (b = 0; b < nbc; b++) {
		kb = b * MOEK_FP8_BLOCK;
		kend = kb + MOEK_FP8_BLOCK;
		if (kend > n)
			kend = n;
		moek_cpu_prefetch_next(m, r, MR, kb, kend);
		UNROLL
		for (i = 0; i < MR; i++)
			ws[i] = m->s[(size_t)((r + i) / MOEK_FP8_BLOCK) * nbc +
				     b] * 0x1p20f;
		if (kend - kb == MOEK_FP8_BLOCK) {
			UNROLL
			for (i = 0; i < MR; i++) {
				UNROLL
				for (s = 0; s < 4; s++)
					wv[i][s] = w_bf16(w + (size_t)(r + i) *
							  n + kb + 32 * s,
							  0, 1);
			}
		}
		for (t = 0; t < nt; t++) {
			/* block b of token t: bf16 at its slots' start */
			const uint16_t *xp = (const uint16_t *)
				(const void *)(x[t] + kb);

			UNROLL
			for (i = 0; i < MR; i++)
				accb[i] = _mm512_setzero_ps();
			if (kend - kb == MOEK_FP8_BLOCK) {
				UNROLL
				for (s = 0; s < 4; s++) {
					__m512i xv = _mm512_loadu_si512(xp +
									32 * s);

					UNROLL
					for (i = 0; i < MR; i++)
						accb[i] = _mm512_dpbf16_ps(
							accb[i],
							(__m512bh)wv[i][s],
							(__m512bh)xv);
				}
			} else {
				for (k = kb; k < kend; k += 32) {
					__m512i xv;

					mk = kend - k >= 32 ? 0xffffffffu :
					     (__mmask32)((1u << (kend - k)) - 1);
					xv = _mm512_maskz_loadu_epi16(mk,
								      xp + (k - kb));
					UNROLL
					for (i = 0; i < MR; i++)
						accb[i] = _mm512_dpbf16_ps(
							accb[i],
							(__m512bh)w_bf16(w +
							(size_t)(r + i) * n +
							k, mk, 0),
							(__m512bh)xv);
				}
			}
			UNROLL
			for (i = 0; i < MR; i++)
				tot[t][i] = _mm512_fmadd_ps(accb[i],
					_mm512_set1_ps(ws[i] * xs[t][b]),
					tot[t][i]);
		}
	}
	for (t = 0; t < nt; t++) {
		UNROLL
		for (i = 0; i < MR; i++)
			out[(size_t)t * ldo + i] =
				_mm512_reduce_add_ps(tot[t][i]);
	}
}

typedef void (*rows_bh_fn)(const struct moek_mat *m, uint32_t r,
			   const float *const *x, const float *const *xs,
			   uint32_t nt, float *out, size_t ldo);

#define DEF_BH(MR, ONE)							\
	static void rows_bh_##MR##_##ONE(const struct moek_mat *m,	\
					 uint32_t r,			\
					 const float *const *x,		\
					 const float *const *xs,	\
					 uint32_t nt, float *out,	\
					 size_t ldo)			\
	{								\
		rows_bh(MR, ONE, m, r, x, xs, nt, out, ldo);		\
	}

DEF_BH(1, 0) DEF_BH(2, 0) DEF_BH(3, 0) DEF_BH(4, 0)
DEF_BH(1, 1) DEF_BH(2, 1) DEF_BH(3, 1) DEF_BH(4, 1)

/* [one token][rows - 1] */
static const rows_bh_fn rows_bh_mr[2][4] = {
	{ rows_bh_1_0, rows_bh_2_0, rows_bh_3_0, rows_bh_4_0 },
	{ rows_bh_1_1, rows_bh_2_1, rows_bh_3_1, rows_bh_4_1 },
};

static void gemm_avx512_bf16(const struct moek_mat *m, uint32_t r0,
			     uint32_t r1, const float *const *x,
			     const float *const *xs, uint32_t nt, float *out,
			     size_t ldo)
{
	struct moek_mat later = *m;	/* later token groups: no prefetch */
	uint32_t r, t, mr, tt;

	if (m->type != MOEK_FP8_E4M3) {
		gemm_avx512(m, r0, r1, x, xs, nt, out, ldo);
		return;
	}
	later.prefetch = 0;
	for (r = r0; r < r1; r += 4) {
		mr = r1 - r < 4 ? r1 - r : 4;
		for (t = 0; t < nt; t += MOEK_CPU_TB) {
			tt = nt - t < MOEK_CPU_TB ? nt - t : MOEK_CPU_TB;
			/* cppcheck-suppress negativeIndex ; r < r1 */
			rows_bh_mr[tt == 1][mr - 1](t ? &later : m, r, x + t,
						    xs + t, tt,
						    out + t * ldo + (r - r0),
						    ldo);
		}
	}
}

static void gate_avx512(const void *gate, uint32_t gtype, uint32_t dim,
			uint32_t e0, uint32_t e1, const float *x, double *out)
{
	uint32_t e, i;

	for (e = e0; e < e1; e++) {
		__m512d a0 = _mm512_setzero_pd(), a1 = _mm512_setzero_pd();

		for (i = 0; i < dim; i += 16) {
			__mmask16 mk = dim - i >= 16 ? 0xffff :
				       (__mmask16)((1u << (dim - i)) - 1);
			__m512 xv = _mm512_maskz_loadu_ps(mk, x + i);
			__m512 gv;

			if (gtype == MOEK_BF16) {
				const uint16_t *g = (const uint16_t *)gate +
						    (size_t)e * dim + i;
				__m256i v = _mm256_maskz_loadu_epi16(mk, g);

				gv = _mm512_castsi512_ps(_mm512_slli_epi32(
					_mm512_cvtepu16_epi32(v), 16));
			} else {
				gv = _mm512_maskz_loadu_ps(mk,
					(const float *)gate + (size_t)e * dim +
					i);
			}
			a0 = _mm512_fmadd_pd(
				_mm512_cvtps_pd(_mm512_castps512_ps256(gv)),
				_mm512_cvtps_pd(_mm512_castps512_ps256(xv)), a0);
			a1 = _mm512_fmadd_pd(
				_mm512_cvtps_pd(_mm256_castpd_ps(
					_mm512_extractf64x4_pd(
						_mm512_castps_pd(gv), 1))),
				_mm512_cvtps_pd(_mm256_castpd_ps(
					_mm512_extractf64x4_pd(
						_mm512_castps_pd(xv), 1))),
				a1);
		}
		out[e - e0] = _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
	}
}

const struct moek_kern moek_kern_avx512 = {
	.gemm = gemm_avx512,
	.gate = gate_avx512,
	.act = MOEK_ACT_F32,
};

const struct moek_kern moek_kern_avx512_bf16 = {
	.gemm = gemm_avx512_bf16,
	.gate = gate_avx512,
	.act = MOEK_ACT_BF16,
};
