/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * align.hip - sort the token x expert pairs by expert, padded to the tile.
 *
 * Three small kernels, no host round trip:
 *   count    one thread per pair: counts[e]++ (counts zeroed before)
 *   offsets  one block: offsets[e] = sum of the earlier experts' counts,
 *            each rounded up to the tile; then, in parallel, the tile ->
 *            expert map, -1 in the padding rows, -1 for the tiles past
 *            the end, and fill[] zeroed
 *   scatter  one thread per pair: row = offsets[e] + fill[e]++ (atomic),
 *            row_tok[row] = token, pair_pos[pair] = row
 * The order of the rows inside an expert depends on the atomics, but no
 * result does: every row of a GEMM is computed the same way wherever it
 * sits, and the combine reads the rows by pair.
 */
#include "moek_hip_impl.h"

__global__ void __launch_bounds__(MOEK_ALIGN_THREADS)
moek_align_count(const int32_t *idx, uint32_t npairs, uint32_t ne,
		 uint32_t *counts)
{
	const size_t p = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

	if (p < npairs && (uint32_t)idx[p] < ne)
		atomicAdd(&counts[idx[p]], 1u);
}

__global__ void __launch_bounds__(MOEK_ALIGN_THREADS)
moek_align_offsets(uint32_t ne, uint32_t *fill,
		   const struct moek_hip_align al)
{
	__shared__ uint32_t off[MOEK_MAX_EXPERTS + 1];
	const uint32_t tile = al.tile;

	if (threadIdx.x == 0) {
		uint32_t o = 0;

		for (uint32_t e = 0; e < ne; e++) {
			off[e] = o;
			o += (al.counts[e] + tile - 1) / tile * tile;
		}
		off[ne] = o;
	}
	__syncthreads();
	for (uint32_t e = threadIdx.x; e <= ne; e += blockDim.x)
		al.offsets[e] = off[e];
	for (uint32_t e = threadIdx.x; e < ne; e += blockDim.x) {
		for (uint32_t t = off[e] / tile; t < off[e + 1] / tile; t++)
			al.tile_expert[t] = (int32_t)e;
		for (uint32_t r = off[e] + al.counts[e]; r < off[e + 1]; r++)
			al.row_tok[r] = -1;
		fill[e] = 0;
	}
	for (uint32_t t = off[ne] / tile + threadIdx.x; t < al.max_tiles;
	     t += blockDim.x)
		al.tile_expert[t] = -1;
}

__global__ void __launch_bounds__(MOEK_ALIGN_THREADS)
moek_align_scatter(const int32_t *idx, uint32_t npairs, uint32_t topk,
		   uint32_t ne, uint32_t *fill, const struct moek_hip_align al)
{
	const size_t p = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	uint32_t e, row;

	if (p >= npairs)
		return;
	e = (uint32_t)idx[p];
	if (e >= ne) {
		al.pair_pos[p] = -1;
		return;
	}
	row = al.offsets[e] + atomicAdd(&fill[e], 1u);
	al.row_tok[row] = (int32_t)(p / topk);
	al.pair_pos[p] = (int32_t)row;
}

hipError_t moek_launch_align(const int32_t *idx, uint32_t ntok, uint32_t topk,
			     uint32_t n_experts, uint32_t *fill,
			     const struct moek_hip_align *al,
			     hipStream_t stream)
{
	const uint32_t npairs = ntok * topk;
	const uint32_t blocks = (npairs + MOEK_ALIGN_THREADS - 1) /
				MOEK_ALIGN_THREADS;
	hipError_t err;

	moek_launch_clear();
	err = hipMemsetAsync(al->counts, 0, n_experts * sizeof(uint32_t),
			     stream);
	if (err != hipSuccess)
		return err;
	/* no pairs (zero tokens): no grid of zero blocks, which the
	 * runtime refuses; the offsets and tiles are still made (all
	 * experts empty) */
	if (blocks)
		MOEK_LAUNCH(blocks, MOEK_ALIGN_THREADS, stream,
			    moek_align_count)(idx, npairs, n_experts,
					      al->counts);
	MOEK_LAUNCH(1, MOEK_ALIGN_THREADS, stream, moek_align_offsets)(
		n_experts, fill, *al);
	if (blocks)
		MOEK_LAUNCH(blocks, MOEK_ALIGN_THREADS, stream,
			    moek_align_scatter)(idx, npairs, topk, n_experts,
						fill, *al);
	return hipGetLastError();
}
