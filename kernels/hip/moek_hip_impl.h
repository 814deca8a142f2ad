/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * moek_hip_impl.h - what the kernels/hip translation units share: number
 * formats and block reductions on the device, the argument structs of the
 * kernels and their launchers (defined next to each kernel, called by
 * layer.hip). Internal: include compat.h first; C++ (hipcc, nvcc -x cu).
 */
#ifndef MOEK_HIP_IMPL_H
#define MOEK_HIP_IMPL_H

#include <errno.h>
#include <stdint.h>

#include "compat.h"
#include "moek.h"
#include "moek_hip.h"

/* Every kernel runs blocks of a multiple of 64 threads, so that a block
 * is whole warps whatever the warp size (reductions rely on it). */
#define MOEK_ROUTER_THREADS 256
#define MOEK_QUANT_THREADS MOEK_FP8_BLOCK	/* one per channel of a block */
#define MOEK_COMBINE_THREADS 256
#define MOEK_ALIGN_THREADS 256

/* Grouped GEMM tiles: rows (BM, 8 or 64) x columns x depth. */
#define MOEK_GEMM_THREADS 256
#define MOEK_GEMM_BN 64
#define MOEK_GEMM_BK 32

/* One expert's weights as the GEMMs read them (device memory). */
struct moek_hip_expert {
	const void *w1;
	const void *w3;
	const void *w2;
	const float *s1;
	const float *s3;
	const float *s2;
};

/*
 * struct moek_gemm_args - C[rows][n] = A . W^T (+ SiLU(A.W1^T) * A.W3^T
 * when gated) for row tiles of tile rows, each tile owned by one expert.
 * @a:           A, f32 [..][k], or e4m3 [..][k] when the weights are fp8
 * @a_scale:     fp8 only: A's act_quant scales [..][ceil(k/128)]
 * @a_row:       the row of A for each row of C (-1: a zero padding row;
 *               gemv.hip and gemm_mma.hip may leave it unwritten
 *               instead); NULL: the same row
 * @valid:       NULL, or per row of C: < 0 marks a padding row, which
 *               gemv.hip skips and leaves unwritten, and gemm_mma.hip
 *               reads as zeros (leaving unwritten the 16-row sub-tiles
 *               that hold no real row)
 * @rows:        rows of C (bound; rows past it are neither read nor written)
 * @tile_expert: the expert of each row tile, -1: skip the tile; NULL: all
 *               tiles use experts[0]
 * @experts:     the expert table
 * @gated:       1: C = silu(A.W1^T) * (A.W3^T) (gate/up); 0: C = A.W2^T
 * @n, @k:       C's columns, A's columns
 * @c:           C, f32 [rows][n]
 */
struct moek_gemm_args {
	const void *a;
	const float *a_scale;
	const int32_t *a_row;
	const int32_t *valid;
	uint32_t rows;
	const int32_t *tile_expert;
	const struct moek_hip_expert *experts;
	uint32_t gated;
	uint32_t n;
	uint32_t k;
	float *c;
};

/* struct moek_route_args - see router.hip; a copy of the shape's fields. */
struct moek_route_args {
	const float *x;
	const void *gate;
	const float *bias;
	uint32_t gtype;
	uint32_t dim;
	uint32_t n_experts;
	uint32_t topk;
	uint32_t n_groups;
	uint32_t topk_groups;
	uint32_t score;
	uint32_t norm_topk;
	float route_scale;
	int32_t *idx;
	float *w;
};

/* Launchers: queue the kernel(s) on stream, return hipGetLastError(). */
hipError_t moek_launch_router(const struct moek_route_args *a, uint32_t ntok,
			      hipStream_t stream);
hipError_t moek_launch_align(const int32_t *idx, uint32_t ntok, uint32_t topk,
			     uint32_t n_experts, uint32_t *fill,
			     const struct moek_hip_align *al,
			     hipStream_t stream);
hipError_t moek_launch_act_quant(const float *x, uint32_t rows, uint32_t n,
				 const int32_t *tile_expert, uint32_t tile,
				 uint8_t *q, float *scales, hipStream_t stream);
hipError_t moek_launch_gemm(const struct moek_gemm_args *g, uint32_t wtype,
			    uint32_t tile, uint32_t row_tiles,
			    hipStream_t stream);
/* The large tile on tensor cores (gemm_mma.hip): bf16 and fp8 weights,
 * where MOEK_MMA_TF32; hipErrorInvalidValue elsewhere. */
hipError_t moek_launch_gemm_mma(const struct moek_gemm_args *g,
				uint32_t wtype, uint32_t row_tiles,
				hipStream_t stream);
/* The decode path: MOEK_HIP_TILE_SMALL tiles, A f32 (no a_scale), k a
 * multiple of 16; warp_size the device's (columns per block). */
hipError_t moek_launch_gemv(const struct moek_gemm_args *g, uint32_t wtype,
			    uint32_t row_tiles, int warp_size,
			    hipStream_t stream);
/* act_quant then back: y = e4m3(x / scale) * scale, f32, as the fp8 GEMMs
 * see their activations (y may be x). */
hipError_t moek_launch_act_qdq(const float *x, uint32_t rows, uint32_t n,
			       const int32_t *tile_expert, uint32_t tile,
			       float *y, hipStream_t stream);
hipError_t moek_launch_combine(const float *out, const int32_t *pair_pos,
			       const float *w, uint32_t topk,
			       const float *shared, uint32_t dim, uint32_t ntok,
			       float *y, hipStream_t stream);

/* A runtime error as a negative errno (moek_hip.h's list). */
static inline int moek_hip_errno(hipError_t e)
{
	switch (e) {
	case hipSuccess:
		return 0;
	case hipErrorInvalidValue:
		return -EINVAL;
	case hipErrorMemoryAllocation:	/* == hipErrorOutOfMemory */
		return -ENOMEM;
	case hipErrorNoDevice:
	case hipErrorInsufficientDriver:
	case hipErrorInvalidDevice:
		return -ENODEV;
	case hipErrorHostMemoryAlreadyRegistered:
		return -EEXIST;
	default:
		return -EIO;
	}
}

/*
 * Before a launch whose status hipGetLastError() then reports: that call
 * returns the last error of any runtime call on this thread, not only of
 * launches (HIP as CUDA), so an error an earlier call left there (a
 * registration refused with -EEXIST, a failed allocation, an ignored
 * hipFree) would come back as the launch's. Clear it first. A kernel's
 * fault is sticky and still shows.
 */
static inline void moek_launch_clear(void)
{
	(void)hipGetLastError();
}

/* Rows of fp8 scales: ceil(n / 128). */
static __host__ __device__ inline uint32_t moek_nblocks(uint32_t n)
{
	return (n + MOEK_FP8_BLOCK - 1) / MOEK_FP8_BLOCK;
}

/* ---- number formats (device) ---- */

static __device__ __forceinline__ float moek_dev_bf16(uint16_t v)
{
	return __uint_as_float((uint32_t)v << 16);
}

/* e4m3fn: bias 7, no infinities, S.1111.111 is NaN. */
static __device__ __forceinline__ float moek_dev_fp8(uint8_t v)
{
	uint32_t sign = (uint32_t)(v & 0x80) << 24;
	uint32_t exp = (v >> 3) & 0xf;
	uint32_t man = v & 0x7;
	float f;

	if (exp == 0xf && man == 0x7)
		return __uint_as_float(sign | 0x7fc00000u);
	if (exp == 0)	/* subnormal: man * 2^-9 */
		f = (float)man * (1.0f / 512.0f);
	else
		f = __uint_as_float(((exp + 120) << 23) | (man << 20));
	return __uint_as_float(__float_as_uint(f) | sign);
}

/* Round to nearest even, saturate to +-448, NaN to NaN. */
static __device__ __forceinline__ uint8_t moek_dev_to_fp8(float f)
{
	uint32_t u = __float_as_uint(f);
	uint8_t sign = (uint8_t)((u >> 24) & 0x80);
	float a = fabsf(f);
	uint32_t r;

	if (a != a)
		return sign | 0x7f;
	if (a >= MOEK_FP8_MAX)
		return sign | 0x7e;
	if (a < 0.015625f) {
		/* subnormal range (< 2^-6): steps of 2^-9; 8 carries into
		 * the exponent field and encodes 2^-6, which is right */
		return sign | (uint8_t)rintf(a * 512.0f);
	}
	/* normal: round the f32 mantissa to 3 bits, nearest even */
	r = __float_as_uint(a);
	r += 0x7ffffu + ((r >> 20) & 1);
	r >>= 20;			/* exponent (8 bits) and 3 mantissa bits */
	r -= (127 - 7) << 3;		/* rebias the exponent */
	if (r > 0x7e)			/* rounded up past 448 */
		r = 0x7e;
	return sign | (uint8_t)r;
}

/* Element i of a weight matrix as f32 (e4m3 without its block scale). */
static __device__ __forceinline__ float moek_dev_w(const float *w, size_t i)
{
	return w[i];
}

static __device__ __forceinline__ float moek_dev_w(const uint16_t *w,
						   size_t i)
{
	return moek_dev_bf16(w[i]);
}

static __device__ __forceinline__ float moek_dev_w(const uint8_t *w, size_t i)
{
	return moek_dev_fp8(w[i]);
}

/*
 * How a weight row at address a can be read 16 bytes at a time by
 * moek_dev_ld16(): 16, 8 or 4 (its alignment), or 0 where it is less
 * (read element by element then). A checkpoint's tensors read in place
 * are as aligned as their file offsets, which safetensors pads to 8 bytes
 * only: 8-aligned weights are as common as 16-aligned ones.
 */
static __host__ __device__ inline int moek_ld_align(uintptr_t a)
{
	return !(a % 16) ? 16 : !(a % 8) ? 8 : !(a % 4) ? 4 : 0;
}

/* 16 bytes at p, al-aligned (moek_ld_align(), not 0): in one load, two
 * or four. */
static __device__ __forceinline__ uint4 moek_dev_ld16(const void *p, int al)
{
	const uint32_t *u = (const uint32_t *)p;
	uint4 v;

	if (al == 16)
		return *(const uint4 *)p;
	if (al == 8) {
		const uint2 lo = ((const uint2 *)p)[0];
		const uint2 hi = ((const uint2 *)p)[1];

		v.x = lo.x;
		v.y = lo.y;
		v.z = hi.x;
		v.w = hi.y;
		return v;
	}
	v.x = u[0];
	v.y = u[1];
	v.z = u[2];
	v.w = u[3];
	return v;
}

/* silu(g) = g * sigmoid(g), as moek_ref computes it */
static __device__ __forceinline__ float moek_dev_silu(float g)
{
	return g / (1.0f + expf(-g));
}

/* ---- reductions over whole warps and blocks (any warp size) ---- */

static __device__ __forceinline__ float moek_warp_sum(float v)
{
	for (int o = MOEK_WARP / 2; o > 0; o >>= 1)
		v += moek_shfl_xor(v, o);
	return v;
}

static __device__ __forceinline__ float moek_warp_max(float v)
{
	for (int o = MOEK_WARP / 2; o > 0; o >>= 1)
		v = fmaxf(v, moek_shfl_xor(v, o));
	return v;
}

/*
 * (v, i) beats (bv, bi): the larger value, on a tie the lower index; a
 * NaN ranks below every number (-inf too) and NaNs tie, as in the
 * reference (moek_ref_route()). Index INT32_MAX is no candidate yet:
 * every candidate beats it.
 */
static __device__ __forceinline__ bool moek_better(float v, int i, float bv,
						   int bi)
{
	const bool vnan = v != v, bnan = bv != bv;

	if (i == INT32_MAX || bi == INT32_MAX)
		return bi == INT32_MAX && i != INT32_MAX;
	if (vnan || bnan)
		return bnan && (!vnan || i < bi);
	return v > bv || (v == bv && i < bi);
}

static __device__ __forceinline__ void moek_warp_argmax(float *v, int *i)
{
	for (int o = MOEK_WARP / 2; o > 0; o >>= 1) {
		float ov = moek_shfl_xor(*v, o);
		int oi = moek_shfl_xor(*i, o);

		if (moek_better(ov, oi, *v, *i)) {
			*v = ov;
			*i = oi;
		}
	}
}

/*
 * Block reductions: every thread of the block calls them with its value
 * and gets the result. red is __shared__ scratch of MOEK_MAX_WARPS floats
 * (and ints); the leading __syncthreads() lets one scratch serve
 * consecutive calls. Every thread sums the per-warp partials in the same
 * order, so all get the same bits.
 */
static __device__ __forceinline__ float moek_block_sum(float v, float *red)
{
	const int lane = threadIdx.x % MOEK_WARP;
	const int warp = threadIdx.x / MOEK_WARP;
	const int nw = blockDim.x / MOEK_WARP;
	float r = 0.0f;

	v = moek_warp_sum(v);
	__syncthreads();
	if (lane == 0)
		red[warp] = v;
	__syncthreads();
	for (int i = 0; i < nw; i++)
		r += red[i];
	return r;
}

static __device__ __forceinline__ float moek_block_max(float v, float *red)
{
	const int lane = threadIdx.x % MOEK_WARP;
	const int warp = threadIdx.x / MOEK_WARP;
	const int nw = blockDim.x / MOEK_WARP;
	float r;

	v = moek_warp_max(v);
	__syncthreads();
	if (lane == 0)
		red[warp] = v;
	__syncthreads();
	r = red[0];
	for (int i = 1; i < nw; i++)
		r = fmaxf(r, red[i]);
	return r;
}

/* Returns the winning index (INT32_MAX when every value was the
 * (-inf, INT32_MAX) sentinel). */
static __device__ __forceinline__ int moek_block_argmax(float v, int i,
							 float *redv, int *redi)
{
	const int lane = threadIdx.x % MOEK_WARP;
	const int warp = threadIdx.x / MOEK_WARP;
	const int nw = blockDim.x / MOEK_WARP;
	float bv;
	int bi;

	moek_warp_argmax(&v, &i);
	__syncthreads();
	if (lane == 0) {
		redv[warp] = v;
		redi[warp] = i;
	}
	__syncthreads();
	bv = redv[0];
	bi = redi[0];
	for (int w = 1; w < nw; w++) {
		if (moek_better(redv[w], redi[w], bv, bi)) {
			bv = redv[w];
			bi = redi[w];
		}
	}
	return bi;
}

#endif /* MOEK_HIP_IMPL_H */
