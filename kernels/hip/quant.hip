/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * quant.hip - DeepSeek's act_quant on the GPU: per row, per 128 channels,
 * scale = max(amax, 1e-4) / 448 and q = e4m3(x / scale), rounded to
 * nearest even and saturated. One block of 128 threads per (row, channel
 * block), one channel per thread; amax is a block max (any warp size).
 * The qdq variant writes the dequantised values instead, in f32 (what the
 * GEMV path reads; it may work in place).
 */
#include "moek_hip_impl.h"

template <bool QDQ>
__global__ void __launch_bounds__(MOEK_QUANT_THREADS)
moek_act_quant(const float *x, uint32_t n, const int32_t *tile_expert,
	       uint32_t tile, uint8_t *q, float *scales, float *y)
{
	__shared__ float red[MOEK_MAX_WARPS];
	const size_t row = blockIdx.x;
	const uint32_t kb = blockIdx.y;
	const uint32_t c = kb * MOEK_FP8_BLOCK + threadIdx.x;
	float v = 0.0f, amax, scale;

	/* rows of unused tiles hold nothing: leave them (block-uniform) */
	if (tile_expert && tile_expert[row / tile] < 0)
		return;
	if (c < n)
		v = x[row * n + c];
	amax = moek_block_max(fabsf(v), red);
	scale = fmaxf(amax, 1e-4f) / MOEK_FP8_MAX;
	if (QDQ) {
		if (c < n)
			y[row * n + c] = moek_dev_fp8(moek_dev_to_fp8(v / scale)) *
					 scale;
		return;
	}
	if (c < n)
		q[row * n + c] = moek_dev_to_fp8(v / scale);
	if (threadIdx.x == 0)
		scales[row * moek_nblocks(n) + kb] = scale;
}

hipError_t moek_launch_act_quant(const float *x, uint32_t rows, uint32_t n,
				 const int32_t *tile_expert, uint32_t tile,
				 uint8_t *q, float *scales, hipStream_t stream)
{
	const dim3 grid(rows, moek_nblocks(n));

	moek_launch_clear();
	MOEK_LAUNCH(grid, MOEK_QUANT_THREADS, stream, moek_act_quant<false>)(
		x, n, tile_expert, tile, q, scales, NULL);
	return hipGetLastError();
}

hipError_t moek_launch_act_qdq(const float *x, uint32_t rows, uint32_t n,
			       const int32_t *tile_expert, uint32_t tile,
			       float *y, hipStream_t stream)
{
	const dim3 grid(rows, moek_nblocks(n));

	moek_launch_clear();
	MOEK_LAUNCH(grid, MOEK_QUANT_THREADS, stream, moek_act_quant<true>)(
		x, n, tile_expert, tile, NULL, NULL, y);
	return hipGetLastError();
}
