/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * combine.hip - y[t] = sum_k w[t][k] * out[pair_pos[t * topk + k]]
 *                      + shared[t]
 * One block per token, one channel per thread and step. The k terms are
 * added in the router's order, so the result does not depend on where
 * align.hip put the rows.
 */
#include "moek_hip_impl.h"

__global__ void __launch_bounds__(MOEK_COMBINE_THREADS)
moek_combine(const float *out, const int32_t *pair_pos, const float *w,
	     uint32_t topk, const float *shared, uint32_t dim, float *y)
{
	const size_t t = blockIdx.x;

	for (uint32_t c = threadIdx.x; c < dim; c += blockDim.x) {
		float acc = 0.0f;

		for (uint32_t k = 0; k < topk; k++) {
			const int32_t row = pair_pos[t * topk + k];

			if (row >= 0)
				acc = fmaf(w[t * topk + k],
					   out[(size_t)row * dim + c], acc);
		}
		if (shared)
			acc += shared[t * dim + c];
		y[t * dim + c] = acc;
	}
}

hipError_t moek_launch_combine(const float *out, const int32_t *pair_pos,
			       const float *w, uint32_t topk,
			       const float *shared, uint32_t dim, uint32_t ntok,
			       float *y, hipStream_t stream)
{
	moek_launch_clear();
	MOEK_LAUNCH(ntok, MOEK_COMBINE_THREADS, stream, moek_combine)(
		out, pair_pos, w, topk, shared, dim, y);
	return hipGetLastError();
}
