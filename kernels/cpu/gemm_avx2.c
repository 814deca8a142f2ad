/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * gemm_avx2.c - AVX2 + FMA + F16C kernels (built with -mavx2 -mfma -mf16c;
 * called only when dispatch.c found the CPU able to run them).
 *
 * The same scheme as gemm_avx512.c with 8 lanes: tiles of up to 4 rows x
 * 2 tokens (16 ymm registers), weights widened in registers (bf16 by a
 * shift, e4m3 through the f16 bit pattern and vcvtph2ps, the 2^8 folded
 * into the block scale, the next row group's block prefetched). FP8 at
 * 3 tokens a call or more first widens a segment of the rows into a
 * buffer that every token's tiles then read (gemm_fp8_seg()). AVX2 has
 * no byte/word masked loads: a partial last vector is copied into a
 * zero-padded buffer first.
 *
 * The router's logits are summed in double, 4 lanes wide.
 */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "cpu.h"

#define UNROLL _Pragma("GCC unroll 4")
#define INLINE static inline __attribute__((always_inline))

/* The first len (< 8) elements of p, zero-padded to 8, in buf. */
INLINE const void *pad(const void *p, uint32_t len, size_t esize, float *buf)
{
	memset(buf, 0, 8 * sizeof(float));
	memcpy(buf, p, len * esize);
	return buf;
}

INLINE __m256 load_w(const int type, const void *w, size_t off,
		     uint32_t len, const int full, __m256 scale)
{
	float buf[8];

	if (type == MOEK_F32) {
		const float *p = (const float *)w + off;

		if (!full)
			p = pad(p, len, 4, buf);
		return _mm256_loadu_ps(p);
	}
	if (type == MOEK_BF16) {
		const uint16_t *p = (const uint16_t *)w + off;
		__m128i v;

		if (!full)
			p = pad(p, len, 2, buf);
		v = _mm_loadu_si128((const __m128i *)p);
		return _mm256_castsi256_ps(
			_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
	} else {
		const uint8_t *p = (const uint8_t *)w + off;
		__m128i b, h;

		if (!full)
			p = pad(p, len, 1, buf);
		b = _mm_loadl_epi64((const __m128i *)p);
		h = _mm_slli_epi16(_mm_cvtepi8_epi16(b), 7);
		h = _mm_and_si128(h, _mm_set1_epi16((short)0xbfff));
		return _mm256_mul_ps(_mm256_cvtph_ps(h), scale);
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

/* acc[i][j] += W[r + i][k .. k + 15] * x[j][k .. k + 15] */
#define STEP(FULL)							\
	do {								\
		__m256 wv[4];						\
		UNROLL							\
		for (i = 0; i < MR; i++)				\
			wv[i] = load_w(type, m->w, (size_t)(r + i) * n + k, \
				       len, FULL, sc[i]);		\
		UNROLL							\
		for (j = 0; j < NT; j++) {				\
			__m256 xv = load_x(x[j] + k, len, FULL);	\
			UNROLL						\
			for (i = 0; i < MR; i++)			\
				acc[i][j] = _mm256_fmadd_ps(wv[i], xv,	\
							    acc[i][j]);	\
		}							\
	} while (0)

INLINE void tile(const int type, const int MR, const int NT,
		 const struct moek_mat *m, uint32_t r, const float *const *x,
		 float *out, size_t ldo)
{
	const uint32_t n = m->cols;
	__m256 acc[4][2], sc[4];
	uint32_t len = 8;
	uint32_t k, kend, b, nbc;
	int i, j;

	UNROLL
	for (i = 0; i < MR; i++) {
		sc[i] = _mm256_set1_ps(1.0f);
		UNROLL
		for (j = 0; j < NT; j++)
			acc[i][j] = _mm256_setzero_ps();
	}
	if (type == MOEK_FP8_E4M3) {
		nbc = (n + MOEK_FP8_BLOCK - 1) / MOEK_FP8_BLOCK;
		for (b = 0; b < nbc; b++) {
			UNROLL
			for (i = 0; i < MR; i++)
				sc[i] = _mm256_set1_ps(256.0f *
					m->s[(size_t)((r + i) / MOEK_FP8_BLOCK) *
					     nbc + b]);
			kend = (b + 1) * MOEK_FP8_BLOCK;
			if (kend > n)
				kend = n;
			moek_cpu_prefetch_next(m, r, MR, b * MOEK_FP8_BLOCK,
					       kend);
			for (k = b * MOEK_FP8_BLOCK; k + 8 <= kend; k += 8)
				STEP(1);
			if (k < kend) {
				len = kend - k;
				STEP(0);
			}
		}
	} else {
		for (k = 0; k + 8 <= n; k += 8)
			STEP(1);
		if (k < n) {
			len = n - k;
			STEP(0);
		}
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
#define DEF_ROW(T, MR) DEF_TILE(T, MR, 1) DEF_TILE(T, MR, 2)
#define DEF_TYPE(T) DEF_ROW(T, 1) DEF_ROW(T, 2) DEF_ROW(T, 3) DEF_ROW(T, 4)

DEF_TYPE(0)
DEF_TYPE(1)
DEF_TYPE(2)

#define ROW(T, MR) { tile_##T##_##MR##_1, tile_##T##_##MR##_2 }
#define TYPE(T) { ROW(T, 1), ROW(T, 2), ROW(T, 3), ROW(T, 4) }

/* [type][rows - 1][tokens - 1] */
static const tile_fn tiles[3][4][2] = { TYPE(0), TYPE(1), TYPE(2) };

/*
 * FP8 at batch: for each row group, FP8_SEG columns of its (up to) 4 rows
 * at a time are widened and scaled once into wb (16 KB, in L1), then
 * 4 x 2 tiles run over it for every token of the call, their
 * accumulators waiting in tot between segments. tile() widens the
 * weights again for every 2 tokens, 6 instructions a vector for 2 FMAs,
 * which bounds it from 3 tokens on (with 1 or 2 the buffer's stores and
 * loads cost more than they save: tile() stays; bf16, 3 instructions a
 * vector, got slower through a buffer and keeps tile() too). Each (row,
 * token) accumulator sees the same FMAs in the same order as in tile():
 * 8 columns a step, a block's last step zero-padded (wb holds zeros past
 * the row's end, as the padded copies gave).
 */
#define FP8_SEG 1024	/* a multiple of MOEK_FP8_BLOCK */

INLINE void seg_tile(const int MR, const int NT, const float *wb,
		     uint32_t kn, const float *const *x, uint32_t k0,
		     __m256 (*tot)[4])
{
	__m256 acc[4][2];
	uint32_t k;
	int i, j;

	UNROLL
	for (j = 0; j < NT; j++) {
		UNROLL
		for (i = 0; i < MR; i++)
			acc[i][j] = tot[j][i];
	}
	for (k = 0; k < kn; k += 8) {
		__m256 wv[4];

		UNROLL
		for (i = 0; i < MR; i++)
			wv[i] = _mm256_load_ps(wb + (size_t)i * FP8_SEG + k);
		UNROLL
		for (j = 0; j < NT; j++) {
			__m256 xv = load_x(x[j] + k0 + k, kn - k, kn - k >= 8);

			UNROLL
			for (i = 0; i < MR; i++)
				acc[i][j] = _mm256_fmadd_ps(wv[i], xv,
							    acc[i][j]);
		}
	}
	UNROLL
	for (j = 0; j < NT; j++) {
		UNROLL
		for (i = 0; i < MR; i++)
			tot[j][i] = acc[i][j];
	}
}

typedef void (*seg_fn)(const float *wb, uint32_t kn, const float *const *x,
		       uint32_t k0, __m256 (*tot)[4]);

#define DEF_SEG(MR, NT)							\
	static void seg_##MR##_##NT(const float *wb, uint32_t kn,	\
				    const float *const *x, uint32_t k0,	\
				    __m256 (*tot)[4])			\
	{								\
		seg_tile(MR, NT, wb, kn, x, k0, tot);			\
	}
#define DEF_SEG_ROW(MR) DEF_SEG(MR, 1) DEF_SEG(MR, 2)

DEF_SEG_ROW(1) DEF_SEG_ROW(2) DEF_SEG_ROW(3) DEF_SEG_ROW(4)

/* [rows - 1][tokens - 1] */
static const seg_fn segs[4][2] = {
	{ seg_1_1, seg_1_2 }, { seg_2_1, seg_2_2 },
	{ seg_3_1, seg_3_2 }, { seg_4_1, seg_4_2 },
};

/* Columns [k0, k0 + kn) of rows r .. r + mr - 1, widened and scaled. */
static void widen_fp8(const struct moek_mat *m, uint32_t r, uint32_t mr,
		      uint32_t k0, uint32_t kn, float *wb)
{
	const uint32_t n = m->cols;
	const uint32_t nbc = (n + MOEK_FP8_BLOCK - 1) / MOEK_FP8_BLOCK;
	uint32_t i, k, kb, kend;

	for (kb = 0; kb < kn; kb += MOEK_FP8_BLOCK) {
		kend = kb + MOEK_FP8_BLOCK < kn ? kb + MOEK_FP8_BLOCK : kn;
		moek_cpu_prefetch_next(m, r, (int)mr, k0 + kb, k0 + kend);
		for (i = 0; i < mr; i++) {
			const __m256 sc = _mm256_set1_ps(256.0f *
				m->s[(size_t)((r + i) / MOEK_FP8_BLOCK) * nbc +
				     (k0 + kb) / MOEK_FP8_BLOCK]);
			float *o = wb + (size_t)i * FP8_SEG;
			size_t row = (size_t)(r + i) * n + k0;

			for (k = kb; k + 8 <= kend; k += 8)
				_mm256_store_ps(o + k, load_w(MOEK_FP8_E4M3,
					m->w, row + k, 8, 1, sc));
			if (k < kend)
				_mm256_store_ps(o + k, load_w(MOEK_FP8_E4M3,
					m->w, row + k, kend - k, 0, sc));
		}
	}
}

/* Tokens per call from which gemm_fp8_seg() is the faster. */
#define FP8_SEG_MIN_NT 3

static void gemm_fp8_seg(const struct moek_mat *m, uint32_t r0, uint32_t r1,
			 const float *const *x, uint32_t nt, float *out,
			 size_t ldo)
{
	float wb[4 * FP8_SEG] __attribute__((aligned(32)));
	__m256 tot[MOEK_CPU_TB][4];
	struct moek_mat later = *m;	/* later token groups: no prefetch */
	uint32_t r, t, mr, tt, j, nj, k0, kn, i;

	later.prefetch = 0;
	for (r = r0; r < r1; r += 4) {
		mr = r1 - r < 4 ? r1 - r : 4;
		for (j = 0; j < nt; j += MOEK_CPU_TB) {
			nj = nt - j < MOEK_CPU_TB ? nt - j : MOEK_CPU_TB;
			for (t = 0; t < nj; t++)
				for (i = 0; i < 4; i++)
					tot[t][i] = _mm256_setzero_ps();
			for (k0 = 0; k0 < m->cols; k0 += FP8_SEG) {
				kn = m->cols - k0 < FP8_SEG ? m->cols - k0 :
							      FP8_SEG;
				widen_fp8(j ? &later : m, r, mr, k0, kn, wb);
				for (t = 0; t < nj; t += 2) {
					tt = nj - t < 2 ? nj - t : 2;
					/* cppcheck-suppress negativeIndex ; t < nj */
					segs[mr - 1][tt - 1](wb, kn,
							     x + j + t, k0,
							     tot + t);
				}
			}
			for (t = 0; t < nj; t++)
				for (i = 0; i < mr; i++)
					out[(size_t)(j + t) * ldo + (r - r0) +
					    i] = hsum(tot[t][i]);
		}
	}
}

static void gemm_avx2(const struct moek_mat *m, uint32_t r0, uint32_t r1,
			const float *const *x, const float *const *xs,
			uint32_t nt, float *out, size_t ldo)
{
	struct moek_mat later = *m;	/* later token groups: no prefetch */
	uint32_t r, t, mr, tt;

	(void)xs;
	if (m->type == MOEK_FP8_E4M3 && nt >= FP8_SEG_MIN_NT) {
		gemm_fp8_seg(m, r0, r1, x, nt, out, ldo);
		return;
	}
	later.prefetch = 0;
	for (r = r0; r < r1; r += 4) {
		mr = r1 - r < 4 ? r1 - r : 4;
		for (t = 0; t < nt; t += 2) {
			tt = nt - t < 2 ? nt - t : 2;
			/* cppcheck-suppress negativeIndex ; tt >= 1: t < nt */
			tiles[m->type][mr - 1][tt - 1](t ? &later : m, r, x + t,
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
					    (size_t)e * dim + i, len, len == 8,
					    xv);
			else
				gv = load_w(MOEK_F32, gate, (size_t)e * dim + i,
					    len, len == 8, xv);
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
	.act = MOEK_ACT_F32,
};
