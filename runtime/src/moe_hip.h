/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * moe_hip.h - the "hip" backend of libmoex's MoE layers (moe_hip.c), as
 * moe.c calls it. Every call returns 0 or a negative errno.
 */
#ifndef LIBMOEX_MOE_HIP_H
#define LIBMOEX_MOE_HIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moek.h"

struct moex_hip_layer;
struct moex_moe_stats;

/*
 * A run's end: status 0 or -errno; counts, on success, the tokens routed
 * to each expert (valid during the call). From a GPU runtime thread for
 * an asynchronous run: it must not call into the GPU runtime.
 */
typedef void (*moex_hip_done_fn)(void *arg, int status,
				 const uint32_t *counts);

/*
 * A layer of shape s (checked already) on the GPU; w by host pointers,
 * which must stay valid. gpu_experts: routed experts kept in device
 * memory, 0 for all. -ENODEV (said on stderr: which part is missing),
 * -ENOMEM (device memory), -EFAULT (host weights the GPU cannot reach).
 */
int moex__hip_layer_create(const struct moek_shape *s,
			   const struct moek_weights *w, uint32_t gpu_experts,
			   struct moex_hip_layer **out);
void moex__hip_layer_destroy(struct moex_hip_layer *l);

/*
 * y[ntok][dim] from x, both host memory; counts may be NULL. async: queue
 * the run and return; done is called once it is over (not when this
 * returns an error). Not async: done is called, in this thread, before
 * the run returns (also on a GPU error). x and y must stay valid until
 * then.
 */
int moex__hip_layer_run(struct moex_hip_layer *l, const float *x, size_t ntok,
			float *y, uint32_t *counts, bool async,
			moex_hip_done_fn done, void *arg);

/* The expert cache's counters into the caller's size-carrying struct. */
void moex__hip_layer_stats(struct moex_hip_layer *l,
			   struct moex_moe_stats *st);

#endif /* LIBMOEX_MOE_HIP_H */
