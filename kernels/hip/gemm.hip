/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * gemm.hip - the grouped GEMMs of the experts.
 *
 *   gate/up  C[r][n] = silu(A[r] . W1[n]) * (A[r] . W3[n])   (n < width)
 *   down     C[r][n] = A[r] . W2[n]                          (n < dim)
 *
 * Weights are row-major [out][in] (nn.Linear), so a C column n reads one
 * contiguous weight row. The rows of C come in tiles of BM rows (8 or 64)
 * that each belong to one expert (tile_expert, from align.hip); a block
 * computes one BM x 64 tile of C, looping over k in steps of 32:
 *
 *   - A's tile (gathered rows: a_row maps a C row to its A row, -1 is a
 *     zero padding row) and W's tile go to shared memory as f32;
 *     bf16 and fp8 weights are dequantised on the way, fp8 ones times
 *     their 128x128 block scale, fp8 activations (act_quant'd) times
 *     their per-row 128-channel scale;
 *   - each thread accumulates a TM x TN micro tile in registers (f32);
 *   - the gate/up epilogue applies silu(g) * u.
 *
 * A 64-column, 32-deep step never crosses a 128 block boundary, so one
 * weight scale serves a whole step. The small tile (BM = 8) is the
 * GEMV-like path for decode, when experts get a few rows each: it reads
 * the weights as fast and wastes less arithmetic on padding rows.
 */
#include "moek_hip_impl.h"

#define BN MOEK_GEMM_BN
#define BK MOEK_GEMM_BK
#define NT MOEK_GEMM_THREADS

static_assert(MOEK_FP8_BLOCK % BN == 0 && MOEK_FP8_BLOCK % BK == 0,
	      "a GEMM step must stay inside one fp8 scale block");

/*
 * W: the weight element type (float, uint16_t bf16, uint8_t fp8; fp8
 * weights take fp8 activations). BM x BN tile, TM x TN per thread.
 */
template <typename W, int BM, int TM, bool GATED>
__global__ void __launch_bounds__(NT) moek_gemm(const struct moek_gemm_args g)
{
	constexpr bool FP8 = sizeof(W) == 1;
	constexpr int NB = GATED ? 2 : 1;	/* weight matrices */
	constexpr int TY = BM / TM;		/* thread rows */
	constexpr int TX = NT / TY;		/* thread columns */
	constexpr int TN = BN / TX;
	static_assert(TY * TM == BM && TX * TY == NT && TX * TN == BN,
		      "tile shape");

	/* +1: the stores below walk k fastest, keep them off one bank */
	__shared__ float as[BK][BM + 1];
	__shared__ float bs[NB][BK][BN + 1];
	__shared__ int32_t arow[BM];

	const int tid = threadIdx.x;
	const int ty = tid / TX, tx = tid % TX;
	const uint32_t tile = blockIdx.x;
	const uint32_t m0 = tile * BM;
	const uint32_t n0 = blockIdx.y * BN;
	const uint32_t K = g.k, N = g.n;
	const uint32_t kblocks = moek_nblocks(K);
	const struct moek_hip_expert *ex;
	const W *wm[NB];
	const float *sm[NB];
	float acc[NB][TM][TN];

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

	for (int i = tid; i < BM; i += NT) {
		uint32_t r = m0 + i;
		int32_t src = -1;

		if (r < g.rows)
			src = g.a_row ? g.a_row[r] : (int32_t)r;
		arow[i] = src;
	}
	for (int b = 0; b < NB; b++)
		for (int i = 0; i < TM; i++)
			for (int j = 0; j < TN; j++)
				acc[b][i][j] = 0.0f;
	__syncthreads();

	for (uint32_t k0 = 0; k0 < K; k0 += BK) {
		/* A tile: BM rows x BK, k fastest (coalesced) */
		for (int i = tid; i < BM * BK; i += NT) {
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
			as[kk][m] = v;
		}
		/* W tiles: BN weight rows x BK, k fastest */
		for (int b = 0; b < NB; b++) {
			float scale = 1.0f;

			if (FP8)
				scale = sm[b][(n0 / MOEK_FP8_BLOCK) * kblocks +
					      k0 / MOEK_FP8_BLOCK];
			for (int i = tid; i < BN * BK; i += NT) {
				const int n = i / BK, kk = i % BK;
				const uint32_t k = k0 + kk;
				float v = 0.0f;

				if (n0 + n < N && k < K)
					v = moek_dev_w(wm[b],
						       (size_t)(n0 + n) * K + k) *
					    scale;
				bs[b][kk][n] = v;
			}
		}
		__syncthreads();

		for (int kk = 0; kk < BK; kk++) {
			float av[TM];

			for (int i = 0; i < TM; i++)
				av[i] = as[kk][ty + i * TY];
			for (int b = 0; b < NB; b++) {
				for (int j = 0; j < TN; j++) {
					const float bv = bs[b][kk][tx + j * TX];

					for (int i = 0; i < TM; i++)
						acc[b][i][j] = fmaf(av[i], bv,
								    acc[b][i][j]);
				}
			}
		}
		__syncthreads();
	}

	for (int i = 0; i < TM; i++) {
		const uint32_t r = m0 + ty + i * TY;

		if (r >= g.rows)
			continue;
		for (int j = 0; j < TN; j++) {
			const uint32_t n = n0 + tx + j * TX;
			float v = acc[0][i][j];

			if (n >= N)
				continue;
			if (GATED)
				v = moek_dev_silu(v) * acc[NB - 1][i][j];
			g.c[(size_t)r * N + n] = v;
		}
	}
}

template <typename W, int BM, int TM>
static void launch(const struct moek_gemm_args *g, uint32_t row_tiles,
		   hipStream_t stream)
{
	const dim3 grid(row_tiles, (g->n + BN - 1) / BN);

	if (g->gated)
		MOEK_LAUNCH(grid, NT, stream, moek_gemm<W, BM, TM, true>)(*g);
	else
		MOEK_LAUNCH(grid, NT, stream, moek_gemm<W, BM, TM, false>)(*g);
}

template <typename W>
static void launch_tile(const struct moek_gemm_args *g, uint32_t tile,
			uint32_t row_tiles, hipStream_t stream)
{
	if (tile == MOEK_HIP_TILE_SMALL)
		launch<W, MOEK_HIP_TILE_SMALL, 1>(g, row_tiles, stream);
	else
		launch<W, MOEK_HIP_TILE_LARGE, 4>(g, row_tiles, stream);
}

hipError_t moek_launch_gemm(const struct moek_gemm_args *g, uint32_t wtype,
			    uint32_t tile, uint32_t row_tiles,
			    hipStream_t stream)
{
	if (tile != MOEK_HIP_TILE_SMALL && tile != MOEK_HIP_TILE_LARGE)
		return hipErrorInvalidValue;
	moek_launch_clear();
	switch (wtype) {
	case MOEK_F32:
		launch_tile<float>(g, tile, row_tiles, stream);
		break;
	case MOEK_BF16:
		launch_tile<uint16_t>(g, tile, row_tiles, stream);
		break;
	case MOEK_FP8_E4M3:
		launch_tile<uint8_t>(g, tile, row_tiles, stream);
		break;
	default:
		return hipErrorInvalidValue;
	}
	return hipGetLastError();
}
