/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * gemm_avx2.c - AVX2 + FMA + F16C kernels (built with -mavx2 -mfma -mf16c;
 * called only when dispatch.c found the CPU able to run them).
 *
 * The same scheme as gemm_avx512.c with 8 lanes, bf16 weights widened in
 * registers by a shift. f32 and bf16 tiles are 4 rows x 2 tokens below 3
 * tokens a call (decode: one x vector feeds 4 rows), 3 rows x 4 tokens
 * from 3 (12 accumulators, 3 weight vectors and one of x fill the 16 ymm
 * registers, 7 loads feed 12 FMAs, where 4 x 2 fed 8 with 6: in-cache
 * bf16 GEMM 1.3x faster on Zen 3 from 4 tokens). The tile's shape does
 * not change a result's bits.
 *
 * The FP8 GEMM sums exact products per 128-column block and scales each
 * block's sum once (the BF16 path's order, in f32 FMAs): three
 * instructions widen 8 e4m3 weights, no multiply. Its tiles are 4 rows x
 * 2 tokens below 3 tokens a call, 2 rows x up to 6 tokens from 3 (each
 * widening serves 6 FMAs); the next row group's block is prefetched.
 * AVX2 has no byte/word masked loads: a partial last vector is copied
 * into a zero-padded buffer first.
 *
 * The router's logits are summed in double, 4 lanes wide.
 */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "cpu.h"

#define UNROLL _Pragma("GCC unroll 8")	/* every tile loop, fully */
#define INLINE static inline __attribute__((always_inline))

/* The first len (< 8) elements of p, zero-padded to 8, in buf. */
INLINE const void *pad(const void *p, uint32_t len, size_t esize, float *buf)
{
	memset(buf, 0, 8 * sizeof(float));
	memcpy(buf, p, len * esize);
	return buf;
}

INLINE __m256 load_w(const int type, const void *w, size_t off,
		     uint32_t len, const int full)
{
	float buf[8];

	if (type == MOEK_F32) {
		const float *p = (const float *)w + off;

		if (!full)
			p = pad(p, len, 4, buf);
		return _mm256_loadu_ps(p);
	} else {
		const uint16_t *p = (const uint16_t *)w + off;
		__m128i v;

		if (!full)
			p = pad(p, len, 2, buf);
		v = _mm_loadu_si128((const __m128i *)p);
		return _mm256_castsi256_ps(
			_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
	}
}

INLINE __m256 load_x(const float *p, uint32_t len, const int full)
{
	float buf[8];

	if (!full)
		p = pad(p, len, 4, buf);
	return _mm256_loadu_ps(p);
}

/* Sum of the 8 lanes, always in the same order. */
INLINE float hsum(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v),
			      _mm256_extractf128_ps(v, 1));

	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

/* acc[i][j] += W[r + i][k .. k + 7] * x[j][k .. k + 7] */
#define STEP(FULL)							\
	do {								\
		__m256 wv[TILE_MR];					\
		UNROLL							\
		for (i = 0; i < MR; i++)				\
			wv[i] = load_w(type, m->w, (size_t)(r + i) * n + k, \
				       len, FULL);			\
		UNROLL							\
		for (j = 0; j < NT; j++) {				\
			__m256 xv = load_x(x[j] + k, len, FULL);	\
			UNROLL						\
			for (i = 0; i < MR; i++)			\
				acc[i][j] = _mm256_fmadd_ps(wv[i], xv,	\
							    acc[i][j]);	\
		}							\
	} while (0)

/* f32 and bf16 weights: up to 4 rows x 2 tokens, or 3 x 4 */
#define TILE_MR 4
#define TILE_NT 4

INLINE void tile(const int type, const int MR, const int NT,
		 const struct moek_mat *m, uint32_t r, const float *const *x,
		 float *out, size_t ldo)
{
	const uint32_t n = m->cols;
	__m256 acc[TILE_MR][TILE_NT];
	uint32_t len = 8;
	uint32_t k;
	int i, j;

	UNROLL
	for (i = 0; i < MR; i++) {
		UNROLL
		for (j = 0; j < NT; j++)
			acc[i][j] = _mm256_setzero_ps();
	}
	for (k = 0; k + 8 <= n; k += 8)
		STEP(1);
	if (k < n) {
		len = n - k;
		STEP(0);
	}
	UNROLL
	for (i = 0; i < MR; i++) {
		UNROLL
		for (j = 0; j < NT; j++)
			out[(size_t)j * ldo + i] = hsum(acc[i][j]);
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
#define DEF_TYPE(T)							\
	DEF_ROW(T, 1) DEF_ROW(T, 2) DEF_ROW(T, 3)			\
	DEF_TILE(T, 4, 1) DEF_TILE(T, 4, 2)

DEF_TYPE(0)
DEF_TYPE(1)

#define ROW(T, MR)							\
	{ tile_##T##_##MR##_1, tile_##T##_##MR##_2, tile_##T##_##MR##_3, \
	  tile_##T##_##MR##_4 }
#define TYPE(T)							\
	{ ROW(T, 1), ROW(T, 2), ROW(T, 3),				\
	  { tile_##T##_4_1, tile_##T##_4_2, NULL, NULL } }

/* [type][rows - 1][tokens - 1], f32 and bf16 (no 4 x 3, 4 x 4) */
static const tile_fn tiles[2][TILE_MR][TILE_NT] = { TYPE(0), TYPE(1) };

/* ---- FP8 ---------------------------------------------------------------- */

/*
 * The FP8 GEMM sums exact products per 128-column block and scales each
 * block's sum once, as DeepSeek's fp8_gemm does and as the BF16 path of
 * gemm_avx512.c: x holds the act-quant values themselves, fp8(q) * 2^100
 * (MOEK_ACT_Q32), the weights widen to their value times 2^-120, so each
 * product is w * q * 2^-20, normal f32 (|w * q| is 2^-18 or more), and
 * each block's sum is multiplied by ws * 2^20 * xs into its (row, token)
 * total.
 *
 * 8 e4m3 bytes at p (len of them, zero-padded, when !full) widen to the
 * values times 2^-120, exactly: the byte sign-extended to 32 bits,
 * shifted left by 20 and masked with 0x87f00000 keeps its sign (bit 31),
 * exponent (26..23) and mantissa (22..20), an f32 with the same fields
 * whose exponent bias (127) exceeds e4m3's (7) by 120. Subnormal e4m3
 * values become f32 subnormals, exactly; the NaN bytes 0x7f/0xff read as
 * +-480 (see Documentation/moe-cpu.rst). Three instructions for 8
 * weights, the load folded into the first, and no multiply: through f16
 * and vcvtph2ps, then times the block scale, batch-1 decode ran at the
 * rate of those instructions, not at the memory's.
 */
INLINE __m256 fp8_x8(const uint8_t *p, uint32_t len, const int full)
{
	float buf[8];
	__m256i v;

	if (!full)
		p = pad(p, len, 1, buf);
	v = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)p));
	v = _mm256_slli_epi32(v, 20);
	return _mm256_castsi256_ps(_mm256_and_si256(v,
			_mm256_set1_epi32((int)0x87f00000u)));
}

/* The scale of block b of row row, times 2^20. */
INLINE float fp8_wscale(const struct moek_mat *m, uint32_t row, uint32_t b)
{
	const uint32_t nbc = (m->cols + MOEK_FP8_BLOCK - 1) / MOEK_FP8_BLOCK;

	return m->s[(size_t)(row / MOEK_FP8_BLOCK) * nbc + b] * 0x1p20f;
}

/*
 * FP8 tiles: 4 rows x 1 or 2 tokens for calls of 1 or 2 tokens (decode:
 * one x vector feeds 4 rows), 2 rows x 3 to 6 tokens from 3 tokens a call.
 * 12 accumulators, the 2 widened weight vectors, the widening's mask and
 * one x vector fill the 16 ymm registers; each widening (three
 * instructions) then serves 6 FMAs. With 3 rows x 4 tokens one register
 * short, an accumulator went to the stack and its chain through memory
 * set the pace.
 */
#define FP8_MR 4
#define FP8_NT 6

/* acc[i][j] += W[i][k .. k + 7] * x[j][k .. k + 7] */
#define FP8_STEP(LEN, FULL)						\
	do {								\
		__m256 wv[FP8_MR];					\
		UNROLL							\
		for (i = 0; i < MR; i++)				\
			wv[i] = fp8_x8(wr[i] + k, LEN, FULL);		\
		UNROLL							\
		for (j = 0; j < NT; j++) {				\
			__m256 xv = load_x(x[j] + k, LEN, FULL);	\
			UNROLL						\
			for (i = 0; i < MR; i++)			\
				acc[i][j] = _mm256_fmadd_ps(wv[i], xv,	\
							    acc[i][j]);	\
		}							\
	} while (0)

/*
 * Rows r .. r + MR - 1 against NT tokens. Per (row, token) and 128-column
 * block: acc sums the products 8 columns a step in column order (the last
 * step of a short block zero-padded), then tot += acc * (ws * xs). The
 * totals wait in memory (L1), touched once a block: the accumulators
 * take the registers.
 */
INLINE void fp8_tile(const int MR, const int NT, const struct moek_mat *m,
		     uint32_t r, const float *const *x,
		     const float *const *xs, float *out, size_t ldo)
{
	const uint32_t n = m->cols;
	const uint8_t *wr[FP8_MR];
	float tot[FP8_MR][FP8_NT][8] __attribute__((aligned(32)));
	__m256 acc[FP8_MR][FP8_NT];
	uint32_t b, k, kb, kend;
	int i, j;

	UNROLL
	for (i = 0; i < MR; i++) {
		wr[i] = (const uint8_t *)m->w + (size_t)(r + i) * n;
		UNROLL
		for (j = 0; j < NT; j++)
			_mm256_store_ps(tot[i][j], _mm256_setzero_ps());
	}
	for (b = 0, kb = 0; kb < n; b++, kb += MOEK_FP8_BLOCK) {
		kend = n - kb < MOEK_FP8_BLOCK ? n : kb + MOEK_FP8_BLOCK;
		moek_cpu_prefetch_next(m, r, MR, kb, kend);
		UNROLL
		for (i = 0; i < MR; i++) {
			UNROLL
			for (j = 0; j < NT; j++)
				acc[i][j] = _mm256_setzero_ps();
		}
		for (k = kb; k + 8 <= kend; k += 8)
			FP8_STEP(8, 1);
		if (k < kend)
			FP8_STEP(kend - k, 0);
		UNROLL
		for (i = 0; i < MR; i++) {
			const float ws = fp8_wscale(m, r + i, b);

			UNROLL
			for (j = 0; j < NT; j++)
				_mm256_store_ps(tot[i][j], _mm256_fmadd_ps(
					acc[i][j], _mm256_set1_ps(ws * xs[j][b]),
					_mm256_load_ps(tot[i][j])));
		}
	}
	UNROLL
	for (i = 0; i < MR; i++) {
		UNROLL
		for (j = 0; j < NT; j++)
			out[(size_t)j * ldo + i] =
				hsum(_mm256_load_ps(tot[i][j]));
	}
}

typedef void (*fp8_tile_fn)(const struct moek_mat *m, uint32_t r,
			    const float *const *x, const float *const *xs,
			    float *out, size_t ldo);

#define DEF_FP8_TILE(MR, NT)						\
	static void fp8_tile_##MR##_##NT(const struct moek_mat *m,	\
					 uint32_t r,			\
					 const float *const *x,		\
					 const float *const *xs,	\
					 float *out, size_t ldo)	\
	{								\
		fp8_tile(MR, NT, m, r, x, xs, out, ldo);		\
	}
#define DEF_FP8_ROW(MR)							\
	DEF_FP8_TILE(MR, 1) DEF_FP8_TILE(MR, 2) DEF_FP8_TILE(MR, 3)	\
	DEF_FP8_TILE(MR, 4) DEF_FP8_TILE(MR, 5) DEF_FP8_TILE(MR, 6)

DEF_FP8_ROW(1) DEF_FP8_ROW(2)
DEF_FP8_TILE(3, 1) DEF_FP8_TILE(3, 2) DEF_FP8_TILE(4, 1) DEF_FP8_TILE(4, 2)

#define FP8_ROW(MR)							\
	{ fp8_tile_##MR##_1, fp8_tile_##MR##_2, fp8_tile_##MR##_3,	\
	  fp8_tile_##MR##_4, fp8_tile_##MR##_5, fp8_tile_##MR##_6 }
#define FP8_SHORT(MR)							\
	{ fp8_tile_##MR##_1, fp8_tile_##MR##_2, NULL, NULL, NULL, NULL }

/* [rows - 1][tokens - 1] (3 and 4 rows: 1 or 2 tokens only) */
static const fp8_tile_fn fp8_tiles[FP8_MR][FP8_NT] = {
	FP8_ROW(1), FP8_ROW(2), FP8_SHORT(3), FP8_SHORT(4),
};

/*
 * From 3 tokens a call, the tokens go to the fewest tiles of up to 6,
 * of sizes that differ by at most one (7 tokens: 4 and 3, not 6 and 1,
 * whose one-token tile would widen its weights for a single FMA each).
 * The rows of the call's first tiles prefetch; later ones find them in
 * the cache.
 */
static void gemm_fp8(const struct moek_mat *m, uint32_t r0, uint32_t r1,
		     const float *const *x, const float *const *xs,
		     uint32_t nt, float *out, size_t ldo)
{
	const uint32_t rows = nt < 3 ? 4 : 2, toks = nt < 3 ? 2 : FP8_NT;
	struct moek_mat later = *m;	/* later token groups: no prefetch */
	uint32_t r, t, mr, tt, left;

	later.prefetch = 0;
	for (r = r0; r < r1; r += rows) {
		mr = r1 - r < rows ? r1 - r : rows;
		left = (nt + toks - 1) / toks;	/* tiles left in the row */
		for (t = 0; t < nt; t += tt, left--) {
			tt = (nt - t + left - 1) / left;
			/* cppcheck-suppress negativeIndex ; tt >= 1: t < nt */
			fp8_tiles[mr - 1][tt - 1](t ? &later : m, r, x + t,
						  xs + t,
						  out + t * ldo + (r - r0),
						  ldo);
		}
	}
}

static void gemm_avx2(const struct moek_mat *m, uint32_t r0, uint32_t r1,
		      const float *const *x, const float *const *xs,
		      uint32_t nt, float *out, size_t ldo)
{
	uint32_t r, t, mr, tt, rows, toks;

	if (m->type == MOEK_FP8_E4M3) {
		gemm_fp8(m, r0, r1, x, xs, nt, out, ldo);
		return;
	}
	rows = nt < 3 ? 4 : 3;
	toks = nt < 3 ? 2 : 4;
	for (r = r0; r < r1; r += rows) {
		mr = r1 - r < rows ? r1 - r : rows;
		for (t = 0; t < nt; t += toks) {
			tt = nt - t < toks ? nt - t : toks;
			/* cppcheck-suppress negativeIndex ; tt >= 1: t < nt */
			tiles[m->type][mr - 1][tt - 1](m, r, x + t,
						       out + t * ldo + (r - r0),
						       ldo);
		}
	}
}


static void gate_avx2(const void *gate, uint32_t gtype, uint32_t dim,
		      uint32_t e0, uint32_t e1, const float *x, double *out)
{
	uint32_t e, i;

	for (e = e0; e < e1; e++) {
		__m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
		double s[4];

		for (i = 0; i < dim; i += 8) {
			uint32_t len = dim - i >= 8 ? 8 : dim - i;
			__m256 xv = load_x(x + i, len, len == 8);
			__m256 gv;

			if (gtype == MOEK_BF16)
				gv = load_w(MOEK_BF16, gate,
					    (size_t)e * dim + i, len, len == 8);
			else
				gv = load_w(MOEK_F32, gate, (size_t)e * dim + i,
					    len, len == 8);
			a0 = _mm256_fmadd_pd(
				_mm256_cvtps_pd(_mm256_castps256_ps128(gv)),
				_mm256_cvtps_pd(_mm256_castps256_ps128(xv)), a0);
			a1 = _mm256_fmadd_pd(
				_mm256_cvtps_pd(_mm256_extractf128_ps(gv, 1)),
				_mm256_cvtps_pd(_mm256_extractf128_ps(xv, 1)), a1);
		}
		_mm256_storeu_pd(s, _mm256_add_pd(a0, a1));
		out[e - e0] = (s[0] + s[1]) + (s[2] + s[3]);
	}
}

const struct moek_kern moek_kern_avx2 = {
	.gemm = gemm_avx2,
	.gate = gate_avx2,
	.act = MOEK_ACT_Q32,
};
