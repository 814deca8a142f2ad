/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * gemm_mma.hip - the large row tile's grouped GEMMs on tensor cores, for
 * bf16 and fp8 weights: the same results as gemm.hip (the same arguments,
 * tiles and epilogue) from NVIDIA's tf32 matrix units through the WMMA
 * API (sm_80 and later). Built where compat.h sets MOEK_MMA_TF32: nvcc,
 * and tests/hipemu at warp 32; hipcc builds gemm.hip alone.
 *
 * Why tf32, in two passes: the weights' values are exact in tf32 (bf16
 * has 8 significant bits, e4m3 4; tf32 has 11), the activations are not.
 * Each activation a is split into hi, a truncated to tf32 (its low 13
 * bits cleared), and lo = tf32(a - hi), and C += lo.W + hi.W: 21
 * significant bits of a, products exact, sums in f32, so the error stays
 * near gemm.hip's f32 FMA chain instead of tf32's 1e-3. hi is finite
 * wherever a is (rounding FLT_MAX to nearest would give inf); an infinite
 * a has lo = 0, so that C is inf where gemm.hip's is, and a NaN stays NaN.
 *
 * A block computes one 64-row tile (one expert's, as align.hip laid them
 * out) by 64 columns, for W1 and W3 at once when gated; 4 warps of 32
 * lanes, warp w owning columns 16w..16w+15 of each. Only the 16-row
 * sub-tiles that hold a real row are computed: an expert with 17 tokens
 * costs 2 of the tile's 4. Per 32-deep step of k:
 *   - A's sub-tiles and W's 64 x 32 tiles go to shared memory as f32
 *     (W in 16-byte loads where its rows are aligned), dequantised (fp8: A times its per-row 128-channel scale; W's
 *     values alone, which stay exact in tf32); rows that are not real
 *     load zeros;
 *   - each warp runs 4 tf32 m16n16k8 steps per sub-tile and matrix, two
 *     MMAs each (lo, then hi), with W's 128 x 128 block scale, one per
 *     step and matrix, multiplied into A's fragment before the split.
 * The accumulators go through shared memory (the fragments' layout is
 * opaque) to the epilogue: silu(g) * u when gated, then the real rows'
 * C. Rows of sub-tiles that were skipped are left unwritten.
 */
#include "moek_hip_impl.h"

#if MOEK_MMA_TF32

#define BM MOEK_HIP_TILE_LARGE
#define BN MOEK_GEMM_BN
#define BK MOEK_GEMM_BK
#define MMA_NT 128			/* 4 warps of 32 */
#define SUB 16				/* rows of a sub-tile, an MMA's M */
#define LDS (BK + 4)			/* shared row of A or W, floats */
#define LDC (BN + 4)			/* shared row of C, floats */

static_assert(BN == 4 * SUB && BK % 8 == 0, "4 warps x 16 columns, k by 8");
static_assert(MOEK_FP8_BLOCK % BN == 0 && MOEK_FP8_BLOCK % BK == 0,
	      "a step must stay inside one fp8 scale block");
/* WMMA loads and stores want 32-byte aligned pointers, ldm a multiple
 * of 4 floats: every fragment below starts at a row that is a multiple
 * of 16 and a column that is a multiple of 8 */
static_assert((SUB * LDS * 4) % 32 == 0 && (SUB * LDC * 4) % 32 == 0 &&
	      LDS % 4 == 0 && LDC % 4 == 0, "fragment alignment");

namespace wmma = nvcuda::wmma;

typedef wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32,
		       wmma::row_major> frag_a;
typedef wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32,
		       wmma::col_major> frag_b;
typedef wmma::fragment<wmma::accumulator, 16, 16, 8, float> frag_c;

/*
 * One step's W tile, BN rows x BK, 16 bytes at a time (a whole step, rows
 * al-aligned: moek_dev_ld16()): bf16 rows are 4 pieces of 8 values, fp8
 * rows 2 of 16. Rows past N load zeros.
 */
static __device__ __forceinline__ void load_w_vec(const uint16_t *w, int al,
						  uint32_t K, uint32_t N,
						  uint32_t n0, uint32_t k0,
						  float (*ws)[LDS], int tid)
{
	constexpr int PER_ROW = BK / 8;

	for (int i = tid; i < BN * PER_ROW; i += MMA_NT) {
		const int n = i / PER_ROW, q = i % PER_ROW;
		uint4 v = {};

		if (n0 + n < N)
			v = moek_dev_ld16(w + (size_t)(n0 + n) * K + k0 + q * 8,
					  al);
		const uint32_t u[4] = { v.x, v.y, v.z, v.w };
#pragma unroll
		for (int j = 0; j < 4; j++) {
			ws[n][q * 8 + 2 * j] = moek_dev_bf16((uint16_t)u[j]);
			ws[n][q * 8 + 2 * j + 1] =
				moek_dev_bf16((uint16_t)(u[j] >> 16));
		}
	}
}

static __device__ __forceinline__ void load_w_vec(const uint8_t *w, int al,
						  uint32_t K, uint32_t N,
						  uint32_t n0, uint32_t k0,
						  float (*ws)[LDS], int tid)
{
	constexpr int PER_ROW = BK / 16;

	for (int i = tid; i < BN * PER_ROW; i += MMA_NT) {
		const int n = i / PER_ROW, q = i % PER_ROW;
		uint4 v = {};

		if (n0 + n < N)
			v = moek_dev_ld16(w + (size_t)(n0 + n) * K + k0 +
					  q * 16, al);
		const uint32_t u[4] = { v.x, v.y, v.z, v.w };
#pragma unroll
		for (int j = 0; j < 16; j++)
			ws[n][q * 16 + j] =
				moek_dev_fp8((uint8_t)(u[j / 4] >> (8 * (j % 4))));
	}
}

/* A row of C is real when it has a source row and is not padding. */
static __device__ __forceinline__ int32_t source_row(
	const struct moek_gemm_args &g, uint32_t r)
{
	if (r >= g.rows || (g.valid && g.valid[r] < 0))
		return -1;
	return g.a_row ? g.a_row[r] : (int32_t)r;
}

template <typename W, bool GATED>
__global__ void __launch_bounds__(MMA_NT)
moek_gemm_mma(const struct moek_gemm_args g)
{
	constexpr bool FP8 = sizeof(W) == 1;
	constexpr int NB = GATED ? 2 : 1;
	constexpr int SMEM = 2 * BM * LDC;	/* >= BM * LDS + 2 * BN * LDS */
	static_assert(SMEM >= BM * LDS + 2 * BN * LDS, "shared sizes");

	/* the steps' A and W tiles, then the epilogue's C tiles */
	alignas(32) __shared__ float smem[SMEM];
	__shared__ int32_t arow[BM];
	__shared__ int nsub;
	float (*as)[LDS] = (float (*)[LDS])smem;
	float (*ws)[BN][LDS] = (float (*)[BN][LDS])(smem + BM * LDS);
	float (*cs)[BM][LDC] = (float (*)[BM][LDC])smem;

	const int tid = threadIdx.x, warp = tid / 32;
	const uint32_t tile = blockIdx.x;
	const uint32_t m0 = tile * BM, n0 = blockIdx.y * BN;
	const uint32_t K = g.k, N = g.n, kblocks = moek_nblocks(K);
	const struct moek_hip_expert *ex;
	const W *wm[NB];
	const float *sm[NB];
	frag_c acc[NB][BM / SUB];
	float scale[NB];
	int vec[NB];

	/* block-uniform exits, before any barrier */
	if (m0 >= g.rows)
		return;
	if (g.tile_expert) {
		int32_t e = g.tile_expert[tile];

		if (e < 0)
			return;
		ex = &g.experts[e];
	} else {
		ex = &g.experts[0];
	}
	if (GATED) {
		wm[0] = (const W *)ex->w1;
		sm[0] = ex->s1;
		wm[NB - 1] = (const W *)ex->w3;
		sm[NB - 1] = ex->s3;
	} else {
		wm[0] = (const W *)ex->w2;
		sm[0] = ex->s2;
	}

	/* weights 16 bytes at a time where every row of W starts at least
	 * 4-byte aligned (vec: the alignment, moek_ld_align()) */
#pragma unroll
	for (int b = 0; b < NB; b++)
		vec[b] = K * sizeof(W) % 16 ? 0 :
			 moek_ld_align((uintptr_t)wm[b]);
	for (int i = tid; i < BM; i += MMA_NT)
		arow[i] = source_row(g, m0 + i);
	__syncthreads();
	if (tid == 0) {
		int n = 0;

		for (int i = 0; i < BM; i++)
			if (arow[i] >= 0)
				n = i / SUB + 1;
		nsub = n;
	}
#pragma unroll
	for (int b = 0; b < NB; b++)
#pragma unroll
		for (int s = 0; s < BM / SUB; s++)
			wmma::fill_fragment(acc[b][s], 0.0f);
	__syncthreads();
	if (!nsub)
		return;			/* block-uniform: nothing real here */

	for (uint32_t k0 = 0; k0 < K; k0 += BK) {
		/* A: the sub-tiles' rows x BK, k fastest */
		for (int i = tid; i < nsub * SUB * BK; i += MMA_NT) {
			const int m = i / BK, kk = i % BK;
			const uint32_t k = k0 + kk;
			const int32_t src = arow[m];
			float v = 0.0f;

			if (src >= 0 && k < K) {
				const size_t o = (size_t)src * K + k;

				if (FP8)
					v = moek_dev_fp8(((const uint8_t *)g.a)[o]) *
					    g.a_scale[(size_t)src * kblocks +
						      k0 / MOEK_FP8_BLOCK];
				else
					v = ((const float *)g.a)[o];
			}
			as[m][kk] = v;
		}
		/* W: BN weight rows x BK, k fastest, unscaled: exact in
		 * tf32. An fp8 block scale is the same for the whole step
		 * (it depends on n0 and k0 only), so it goes on A instead. */
#pragma unroll
		for (int b = 0; b < NB; b++) {
			scale[b] = FP8 ? sm[b][(n0 / MOEK_FP8_BLOCK) * kblocks +
					       k0 / MOEK_FP8_BLOCK] : 1.0f;
			if (vec[b] && k0 + BK <= K) {
				load_w_vec(wm[b], vec[b], K, N, n0, k0, ws[b],
					   tid);
				continue;
			}
			for (int i = tid; i < BN * BK; i += MMA_NT) {
				const int n = i / BK, kk = i % BK;
				const uint32_t k = k0 + kk;
				float v = 0.0f;

				if (n0 + n < N && k < K)
					v = moek_dev_w(wm[b],
						       (size_t)(n0 + n) * K + k);
				ws[b][n][kk] = v;
			}
		}
		__syncthreads();

#pragma unroll
		for (int kk = 0; kk < BK; kk += 8) {
			frag_b wf[NB];

#pragma unroll
			for (int b = 0; b < NB; b++) {
				wmma::load_matrix_sync(wf[b],
						       &ws[b][warp * SUB][kk],
						       LDS);
				for (int e = 0; e < wf[b].num_elements; e++)
					wf[b].x[e] = wmma::__float_to_tf32(
						wf[b].x[e]);
			}
			/* constant bounds, unrolled: the accumulators stay in
			 * registers */
#pragma unroll
			for (int s = 0; s < BM / SUB; s++) {
				frag_a a, hi, lo;

				if (s >= nsub)
					break;
				wmma::load_matrix_sync(a, &as[s * SUB][kk],
						       LDS);
#pragma unroll
				for (int b = 0; b < NB; b++) {
					for (int e = 0; e < a.num_elements;
					     e++) {
						const float v = a.x[e] * scale[b];
						const float h = __uint_as_float(
							__float_as_uint(v) &
							~0x1fffu);

						/* an infinite a: hi carries
						 * it (inf - inf would make
						 * lo NaN) */
						hi.x[e] = h;
						lo.x[e] = wmma::__float_to_tf32(
							isinf(v) ? 0.0f : v - h);
					}
					wmma::mma_sync(acc[b][s], lo, wf[b],
						       acc[b][s]);
					wmma::mma_sync(acc[b][s], hi, wf[b],
						       acc[b][s]);
				}
			}
		}
		__syncthreads();
	}

	/* the epilogue: C through shared memory (over the A and W tiles) */
#pragma unroll
	for (int b = 0; b < NB; b++) {
#pragma unroll
		for (int s = 0; s < BM / SUB; s++) {
			if (s < nsub)
				wmma::store_matrix_sync(
					&cs[b][s * SUB][warp * SUB], acc[b][s],
					LDC, wmma::mem_row_major);
		}
	}
	__syncthreads();
	for (int i = tid; i < nsub * SUB * BN; i += MMA_NT) {
		const int m = i / BN, n = i % BN;
		const uint32_t r = m0 + m;
		float v;

		if (r >= g.rows || n0 + n >= N)
			continue;
		v = cs[0][m][n];
		if (GATED)
			v = moek_dev_silu(v) * cs[NB - 1][m][n];
		g.c[(size_t)r * N + n0 + n] = v;
	}
}

template <typename W>
static void mma_launch(const struct moek_gemm_args *g, uint32_t row_tiles,
		       hipStream_t stream)
{
	const dim3 grid(row_tiles, (g->n + BN - 1) / BN);

	if (g->gated)
		MOEK_LAUNCH(grid, MMA_NT, stream, moek_gemm_mma<W, true>)(*g);
	else
		MOEK_LAUNCH(grid, MMA_NT, stream, moek_gemm_mma<W, false>)(*g);
}

hipError_t moek_launch_gemm_mma(const struct moek_gemm_args *g,
				uint32_t wtype, uint32_t row_tiles,
				hipStream_t stream)
{
	moek_launch_clear();
	switch (wtype) {
	case MOEK_BF16:
		mma_launch<uint16_t>(g, row_tiles, stream);
		break;
	case MOEK_FP8_E4M3:
		mma_launch<uint8_t>(g, row_tiles, stream);
		break;
	default:
		return hipErrorInvalidValue;
	}
	return hipGetLastError();
}

#else /* !MOEK_MMA_TF32 */

hipError_t moek_launch_gemm_mma(const struct moek_gemm_args *g,
				uint32_t wtype, uint32_t row_tiles,
				hipStream_t stream)
{
	(void)g;
	(void)wtype;
	(void)row_tiles;
	(void)stream;
	return hipErrorInvalidValue;	/* not built for this target */
}

#endif /* MOEK_MMA_TF32 */
