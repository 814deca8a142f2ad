/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * router.hip - the router with fused top-k: one block per token.
 *
 *   logits  one warp per expert at a time: a strided dot product over dim,
 *           reduced with shuffles (any warp size)
 *   scores  sigmoid per expert, or softmax over all experts (block max and
 *           block sum)
 *   sel     scores + bias (bias for selection only)
 *   groups  a group's score is the sum of its two best sel values (the
 *           max without bias); the best topk_groups groups stay, the
 *           others' experts are marked taken (model.py's -inf mask, but
 *           one a kept expert's NaN score, -inf here, does not lose to)
 *   top-k   topk rounds of a block-wide argmax over the experts not yet
 *           taken; a tie goes to the lower index, so idx comes out sorted
 *           by descending sel, lower index first, as moek_ref_route
 *   weights the unbiased scores of the chosen experts, divided by their
 *           sum when norm_topk and the sum is > 0, times route_scale;
 *           when a chosen sigmoid score is below f32's normal range
 *           (logits below about -87), from the logits instead
 *           (norm_from_logits())
 *
 * Everything per token lives in shared memory (n_experts <= 1024).
 */
#include <float.h>

#include "moek_hip_impl.h"

/*
 * The reference computes sigmoid in double, 1 / (1 + exp(-l)): 0 only
 * where exp(-l) overflows, for l below this.
 */
#define MOEK_REF_SIGMOID_ZERO (-709.78271f)

/* log(sigmoid(l)), without overflow or underflow for any finite l */
static __device__ __forceinline__ float log_sigmoid(float l)
{
	return l < 0.0f ? l - log1pf(expf(l)) : -log1pf(expf(-l));
}

/*
 * The chosen experts' weights when norm_topk and a chosen sigmoid score
 * is below FLT_MIN: 0 where the logit is below about -88.7 (f32's
 * exp(-l) overflows), a subnormal of few bits above, where the
 * reference's double scores still hold the value. The weights are the
 * scores over their sum all the same, formed from log-sigmoids as
 * exp(ls - max ls) / sum, which neither overflow nor underflow; a logit
 * where the reference's sigmoid is 0 gets 0, and with no logit above
 * that every weight stays 0, as in the reference. Three passes over the
 * chosen logits and no array of its own: w is shared memory.
 */
static __device__ void norm_from_logits(const float *logit, const int *chosen,
					uint32_t topk, float *w)
{
	float m = -INFINITY, sum = 0.0f;

	for (uint32_t k = 0; k < topk; k++) {
		float l = logit[chosen[k]];

		w[k] = l > MOEK_REF_SIGMOID_ZERO ? log_sigmoid(l) : -INFINITY;
		m = fmaxf(m, w[k]);
	}
	for (uint32_t k = 0; k < topk; k++) {
		w[k] = w[k] > -INFINITY ? expf(w[k] - m) : 0.0f;
		sum += w[k];
	}
	for (uint32_t k = 0; k < topk; k++)
		w[k] = sum > 0.0f ? w[k] / sum : 0.0f;
}

static __device__ __forceinline__ float gate_elem(const void *gate,
						  uint32_t gtype, size_t i)
{
	if (gtype == MOEK_BF16)
		return moek_dev_bf16(((const uint16_t *)gate)[i]);
	return ((const float *)gate)[i];
}

__global__ void __launch_bounds__(MOEK_ROUTER_THREADS)
moek_router(const struct moek_route_args a)
{
	__shared__ float score[MOEK_MAX_EXPERTS];
	__shared__ float logit[MOEK_MAX_EXPERTS];
	__shared__ float sel[MOEK_MAX_EXPERTS];
	__shared__ float gscore[MOEK_MAX_EXPERTS];
	__shared__ unsigned char keep[MOEK_MAX_EXPERTS];	/* per group */
	__shared__ unsigned char taken[MOEK_MAX_EXPERTS];
	__shared__ int chosen[MOEK_MAX_TOPK];
	__shared__ float wlog[MOEK_MAX_TOPK];	/* norm_from_logits() */
	__shared__ float redv[MOEK_MAX_WARPS];
	__shared__ int redi[MOEK_MAX_WARPS];
	const uint32_t tid = threadIdx.x;
	const uint32_t lane = tid % MOEK_WARP;
	const uint32_t warp = tid / MOEK_WARP;
	const uint32_t nwarps = blockDim.x / MOEK_WARP;
	const uint32_t ne = a.n_experts;
	const size_t t = blockIdx.x;
	const float *x = a.x + t * a.dim;

	/* logits: warp-uniform loop, so every lane reaches the shuffles */
	for (uint32_t e = warp; e < ne; e += nwarps) {
		const size_t row = (size_t)e * a.dim;
		float acc = 0.0f;

		for (uint32_t c = lane; c < a.dim; c += MOEK_WARP)
			acc += x[c] * gate_elem(a.gate, a.gtype, row + c);
		acc = moek_warp_sum(acc);
		if (lane == 0) {
			score[e] = acc;
			logit[e] = acc;
		}
	}
	__syncthreads();

	if (a.score == MOEK_SCORE_SOFTMAX) {
		float m = -INFINITY, sum = 0.0f;

		for (uint32_t e = tid; e < ne; e += blockDim.x)
			m = fmaxf(m, score[e]);
		m = moek_block_max(m, redv);
		for (uint32_t e = tid; e < ne; e += blockDim.x)
			sum += expf(score[e] - m);
		sum = moek_block_sum(sum, redv);
		/* every thread has read every score it needs: the sums
		 * above end with __syncthreads() before the last read,
		 * and each thread rewrites only its own experts */
		for (uint32_t e = tid; e < ne; e += blockDim.x)
			score[e] = expf(score[e] - m) / sum;
	} else {
		for (uint32_t e = tid; e < ne; e += blockDim.x)
			score[e] = 1.0f / (1.0f + expf(-score[e]));
	}
	for (uint32_t e = tid; e < ne; e += blockDim.x) {
		sel[e] = score[e] + (a.bias ? a.bias[e] : 0.0f);
		taken[e] = 0;
	}
	__syncthreads();

	if (a.n_groups > 1) {
		const uint32_t gsz = ne / a.n_groups;

		for (uint32_t g = tid; g < a.n_groups; g += blockDim.x) {
			float b1 = -INFINITY, b2 = -INFINITY;

			for (uint32_t e = g * gsz; e < (g + 1) * gsz; e++) {
				float v = sel[e];

				if (v > b1) {
					b2 = b1;
					b1 = v;
				} else if (v > b2) {
					b2 = v;
				}
			}
			/* NaN (+inf and -inf) ranks last: moek_better() */
			gscore[g] = a.bias ? b1 + b2 : b1;
			keep[g] = 0;
		}
		__syncthreads();
		if (tid == 0) {
			/* a handful of groups: a serial selection is enough */
			for (uint32_t r = 0; r < a.topk_groups; r++) {
				float bv = -INFINITY;
				int bi = INT32_MAX;

				for (uint32_t g = 0; g < a.n_groups; g++) {
					if (!keep[g] &&
					    moek_better(gscore[g], (int)g, bv, bi)) {
						bv = gscore[g];
						bi = (int)g;
					}
				}
				/* a group is left: topk_groups <= n_groups */
				keep[bi] = 1;
			}
		}
		__syncthreads();
		/* the other groups' experts are out of the top-k (not -inf:
		 * a kept expert's NaN, which ranks below -inf, must still beat
		 * them) */
		for (uint32_t e = tid; e < ne; e += blockDim.x)
			if (!keep[e / gsz])
				taken[e] = 1;
		__syncthreads();
	}

	for (uint32_t k = 0; k < a.topk; k++) {
		float bv = -INFINITY;
		int bi = INT32_MAX;
		int win;

		for (uint32_t e = tid; e < ne; e += blockDim.x) {
			if (!taken[e] && moek_better(sel[e], (int)e, bv, bi)) {
				bv = sel[e];
				bi = (int)e;
			}
		}
		win = moek_block_argmax(bv, bi, redv, redi);
		/* topk <= topk_groups * group size: a kept expert is left,
		 * and any candidate beats the INT32_MAX start, so win < ne */
		if (tid == 0) {
			taken[win] = 1;
			chosen[k] = win;
		}
		__syncthreads();
	}

	if (tid == 0) {
		float sum = 0.0f;
		bool tiny = false, from_logits;

		for (uint32_t k = 0; k < a.topk; k++) {
			sum += score[chosen[k]];
			tiny = tiny || score[chosen[k]] < FLT_MIN;
		}
		/* a NaN score (and sum) leaves the weights unnormalised,
		 * as in the reference */
		from_logits = a.norm_topk && a.score == MOEK_SCORE_SIGMOID &&
			      tiny && sum == sum;
		if (from_logits)
			norm_from_logits(logit, chosen, a.topk, wlog);
		for (uint32_t k = 0; k < a.topk; k++) {
			float w = score[chosen[k]];

			/* softmax scores sum to more than 0; a NaN sum
			 * divides nothing, as in the reference */
			if (from_logits)
				w = wlog[k];
			else if (a.norm_topk && sum > 0.0f)
				w /= sum;
			a.idx[t * a.topk + k] = chosen[k];
			a.w[t * a.topk + k] = w * a.route_scale;
		}
	}
}

hipError_t moek_launch_router(const struct moek_route_args *a, uint32_t ntok,
			      hipStream_t stream)
{
	moek_launch_clear();
	MOEK_LAUNCH(ntok, MOEK_ROUTER_THREADS, stream, moek_router)(*a);
	return hipGetLastError();
}
