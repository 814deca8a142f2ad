/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * gemv.hip - the grouped GEMMs of gemm.hip for decode: row tiles of
 * MOEK_HIP_TILE_SMALL (8) rows, each tile one expert's, of which only the
 * real rows are computed (a few per expert when tokens are few; padding
 * rows are skipped and left unwritten).
 *
 * Reading the weights is all the time a decode layer takes, so the kernel
 * is built around that stream: one warp per output column n reads weight
 * row n (and the W3 row beside W1's for gate/up) in 16-byte loads, lane
 * after lane across k, dequantising in registers (bf16: a shift; e4m3: two
 * masks and shifts into an f32 whose exponent is 2^120 short, folded into
 * the block scale), and multiplies them with the tile's real A rows, which
 * are f32 and small enough to stay in L1/L2. A warp reduction and one
 * store per row end it. No shared memory and no block barrier: a warp
 * past N just returns.
 *
 * A is always f32 here: on the fp8 path the layer passes the activations
 * quantised and dequantised in place (moek_launch_act_qdq: the very values
 * gemm.hip reconstructs from e4m3 and the row scale), so the arithmetic is
 * the same. Needs K a multiple of 16 (16-byte loads of any weight type
 * stay inside one 128-wide scale block) and A 16-byte aligned; layer.hip
 * checks both.
 *
 * Subnormal e4m3 weights become f32 denormals here, and tiny products
 * are denormal before the 2^120 comes back: build without flushing f32
 * denormals to zero (no fast math; kernels/hip/rules.mk says so to both
 * compilers), or those lose their precision (gemm.hip builds normal
 * floats and does not care).
 *
 * MOEK_GEMV=0 in the environment turns it off (moek_hip_create).
 */
#include "moek_hip_impl.h"

#define GV_ROWS MOEK_HIP_TILE_SMALL

/* 16 bytes of weights as f32: 4 f32, 8 bf16 or 16 e4m3 (times 2^-120),
 * from an al-aligned address (moek_dev_ld16()). */
template <typename W> struct gv_vec;

template <> struct gv_vec<float> {
	static constexpr int N = 4;
	static __device__ __forceinline__ void load(const float *p, int al,
						    float *v)
	{
		const uint4 q = moek_dev_ld16(p, al);

		v[0] = __uint_as_float(q.x);
		v[1] = __uint_as_float(q.y);
		v[2] = __uint_as_float(q.z);
		v[3] = __uint_as_float(q.w);
	}
};

template <> struct gv_vec<uint16_t> {
	static constexpr int N = 8;
	static __device__ __forceinline__ void load(const uint16_t *p, int al,
						    float *v)
	{
		const uint4 q = moek_dev_ld16(p, al);
		const uint32_t w[4] = { q.x, q.y, q.z, q.w };

		for (int i = 0; i < 4; i++) {
			v[2 * i] = __uint_as_float(w[i] << 16);
			v[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
		}
	}
};

template <> struct gv_vec<uint8_t> {
	static constexpr int N = 16;
	static __device__ __forceinline__ void load(const uint8_t *p, int al,
						    float *v)
	{
		const uint4 q = moek_dev_ld16(p, al);
		const uint32_t w[4] = { q.x, q.y, q.z, q.w };

		/* e4m3 S.EEEE.MMM into f32 bits S.000EEEE.MMM0...: the value
		 * times 2^-120, subnormals included (0x7f, NaN in e4m3, reads
		 * as 480: weights never hold it) */
		for (int i = 0; i < 4; i++) {
			for (int j = 0; j < 4; j++) {
				const uint32_t b = w[i] >> (8 * j);

				v[4 * i + j] = __uint_as_float(
					((b & 0x80u) << 24) | ((b & 0x7fu) << 20));
			}
		}
	}
};

/* The same from weights not even 4-byte aligned, element by element. */
static __device__ __forceinline__ float gv_one(const float *p)
{
	return *p;
}

static __device__ __forceinline__ float gv_one(const uint16_t *p)
{
	return __uint_as_float((uint32_t)*p << 16);
}

static __device__ __forceinline__ float gv_one(const uint8_t *p)
{
	const uint32_t b = *p;

	return __uint_as_float(((b & 0x80u) << 24) | ((b & 0x7fu) << 20));
}

template <typename W>
static __device__ __forceinline__ void gv_load(const W *p, int al, float *v)
{
	if (al) {
		gv_vec<W>::load(p, al, v);
		return;
	}
	for (int j = 0; j < gv_vec<W>::N; j++)
		v[j] = gv_one(p + j);
}

template <typename W, bool GATED>
__global__ void __launch_bounds__(MOEK_GEMM_THREADS)
moek_gemv(const struct moek_gemm_args g)
{
	constexpr bool FP8 = sizeof(W) == 1;
	constexpr int VN = gv_vec<W>::N;
	const int lane = threadIdx.x % MOEK_WARP;
	const int nwarps = blockDim.x / MOEK_WARP;
	const uint32_t n = blockIdx.y * nwarps + threadIdx.x / MOEK_WARP;
	const uint32_t m0 = blockIdx.x * GV_ROWS;
	const uint32_t K = g.k, N = g.n;
	const uint32_t kblocks = moek_nblocks(K);
	const struct moek_hip_expert *ex;
	const float *arow[GV_ROWS];
	float acc1[GV_ROWS], acc3[GV_ROWS];
	bool real[GV_ROWS];
	const W *w1, *w3;
	const float *s1, *s3;
	int al;

	if (m0 >= g.rows || n >= N)
		return;
	if (g.tile_expert) {
		const int32_t e = g.tile_expert[blockIdx.x];

		if (e < 0)
			return;
		ex = &g.experts[e];
	} else {
		ex = &g.experts[0];
	}
	w1 = (const W *)(GATED ? ex->w1 : ex->w2) + (size_t)n * K;
	s1 = GATED ? ex->s1 : ex->s2;
	w3 = GATED ? (const W *)ex->w3 + (size_t)n * K : w1;
	s3 = GATED ? ex->s3 : s1;
	/* weights from any host or device address: 16 bytes a lane in as
	 * few loads as the rows' alignment allows (K % 16 == 0 keeps every
	 * row and step as aligned as its base) */
	al = moek_ld_align((uintptr_t)w1 | (uintptr_t)w3);

	/* the tile's real rows (the same on every lane: fixed slots, no
	 * dynamic indexing, so everything stays in registers) */
#pragma unroll
	for (int i = 0; i < GV_ROWS; i++) {
		const uint32_t r = m0 + i;
		int32_t src = -1;

		if (r < g.rows && !(g.valid && g.valid[r] < 0))
			src = g.a_row ? g.a_row[r] : (int32_t)r;
		real[i] = src >= 0;
		arow[i] = (const float *)g.a + (size_t)(src >= 0 ? src : 0) * K;
		acc1[i] = 0.0f;
		acc3[i] = 0.0f;
	}

#pragma unroll 2
	for (uint32_t k = (uint32_t)lane * VN; k < K; k += MOEK_WARP * VN) {
		float v1[VN], v3[VN];
		float sc1 = 1.0f, sc3 = 1.0f;

		gv_load(w1 + k, al, v1);
		if (GATED)
			gv_load(w3 + k, al, v3);
		if (FP8) {
			const size_t si = (size_t)(n / MOEK_FP8_BLOCK) * kblocks +
					  k / MOEK_FP8_BLOCK;

			sc1 = s1[si];
			if (GATED)
				sc3 = s3[si];
		}
#pragma unroll
		for (int i = 0; i < GV_ROWS; i++) {
			float d1 = 0.0f, d3 = 0.0f;

			if (!real[i])
				continue;
#pragma unroll
			for (int j = 0; j < VN; j += 4) {
				const float4 a = *(const float4 *)(arow[i] + k + j);

				d1 = fmaf(a.x, v1[j], d1);
				d1 = fmaf(a.y, v1[j + 1], d1);
				d1 = fmaf(a.z, v1[j + 2], d1);
				d1 = fmaf(a.w, v1[j + 3], d1);
				if (GATED) {
					d3 = fmaf(a.x, v3[j], d3);
					d3 = fmaf(a.y, v3[j + 1], d3);
					d3 = fmaf(a.z, v3[j + 2], d3);
					d3 = fmaf(a.w, v3[j + 3], d3);
				}
			}
			/* e4m3's 2^-120 undone on the partial sum, not on the
			 * scale (a scale of 256 or more would overflow) */
			if (FP8) {
				d1 *= 0x1p120f;
				d3 *= 0x1p120f;
			}
			acc1[i] = fmaf(d1, sc1, acc1[i]);
			if (GATED)
				acc3[i] = fmaf(d3, sc3, acc3[i]);
		}
	}

	/* real[] is the same on every lane: the shuffles are warp-uniform */
#pragma unroll
	for (int i = 0; i < GV_ROWS; i++) {
		float c;

		if (!real[i])
			continue;
		c = moek_warp_sum(acc1[i]);
		if (GATED) {
			const float u = moek_warp_sum(acc3[i]);

			c = moek_dev_silu(c) * u;
		}
		if (lane == 0)
			g.c[(size_t)(m0 + i) * N + n] = c;
	}
}

template <typename W>
static void gv_launch(const struct moek_gemm_args *g, uint32_t row_tiles,
		      int warps, hipStream_t stream)
{
	const dim3 grid(row_tiles, (g->n + warps - 1) / warps);

	if (g->gated)
		MOEK_LAUNCH(grid, MOEK_GEMM_THREADS, stream,
			    moek_gemv<W, true>)(*g);
	else
		MOEK_LAUNCH(grid, MOEK_GEMM_THREADS, stream,
			    moek_gemv<W, false>)(*g);
}

hipError_t moek_launch_gemv(const struct moek_gemm_args *g, uint32_t wtype,
			    uint32_t row_tiles, int warp_size,
			    hipStream_t stream)
{
	const int warps = MOEK_GEMM_THREADS / warp_size;

	if (g->k % 16 || g->a_scale || warp_size <= 0 ||
	    MOEK_GEMM_THREADS % warp_size)
		return hipErrorInvalidValue;
	moek_launch_clear();
	switch (wtype) {
	case MOEK_F32:
		gv_launch<float>(g, row_tiles, warps, stream);
		break;
	case MOEK_BF16:
		gv_launch<uint16_t>(g, row_tiles, warps, stream);
		break;
	case MOEK_FP8_E4M3:
		gv_launch<uint8_t>(g, row_tiles, warps, stream);
		break;
	default:
		return hipErrorInvalidValue;
	}
	return hipGetLastError();
}
