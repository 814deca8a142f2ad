/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * moek_hip.h - the MoE layer on a GPU (kernels/hip), as a C API.
 *
 * Plain C11, no HIP or CUDA header needed: streams are passed as void *
 * (a hipStream_t or cudaStream_t; NULL is the default stream). The same
 * sources build with hipcc (AMD) and nvcc (NVIDIA); see
 * Documentation/moe-hip.rst. Every call returns 0 or a negative errno:
 *
 *   -EINVAL  bad argument or shape (moek_shape_check and the limits below)
 *   -ENODEV  no GPU, or no driver
 *   -ENOMEM  device or pinned host memory exhausted
 *   -EEXIST  host memory registered already (moek_hip_host_register)
 *   -EIO     any other runtime error (a failed launch, a faulting kernel)
 *
 * Pointers: x, y, idx, w and every weight and scale pointer in struct
 * moek_weights and struct moek_ffn are device pointers, or device aliases
 * of host-registered memory (moek_hip_host_register). The array
 * moek_weights.experts itself lives in host memory; the context copies the
 * pointer table to the device when it changes. Nothing here is reentrant
 * on one context; contexts on different threads are independent.
 *
 * Devices: the current device is per thread, as in HIP and CUDA. The
 * calls that take a context make its device current on the calling
 * thread; the others (memory, streams, events, copies, host callbacks,
 * mem_info) act on the calling thread's current device, which is 0 on a
 * thread that never chose one. moek_hip_create() makes its device current
 * on the creating thread; another thread calls moek_hip_use() first.
 */
#ifndef MOEK_HIP_H
#define MOEK_HIP_H

#include <stddef.h>
#include <stdint.h>

#include "moek.h"

#ifdef __cplusplus
extern "C" {
#endif

struct moek_hip_ctx;

/*
 * The ABI of this API as a shared object: libmoex loads the GPU backend,
 * libmoex-hip.so.0, at run time and refuses one whose moek_hip_abi()
 * differs from the MOEK_HIP_ABI it was built with. Bump it whenever a
 * declaration below changes.
 */
#define MOEK_HIP_ABI 2
int moek_hip_abi(void);

/* Row tiles of the grouped GEMMs: each expert's rows are padded to one. */
#define MOEK_HIP_TILE_SMALL 8	/* few tokens per expert: GEMV-like */
#define MOEK_HIP_TILE_LARGE 64	/* prefill */

/* *n = GPUs visible; -ENODEV (and *n = 0) when there is none or no driver. */
int moek_hip_device_count(int *n);
/* The device's name, NUL-terminated, truncated to len. */
int moek_hip_device_name(int device, char *name, size_t len);

/* A context on one device (made current on the calling thread) with its
 * scratch buffers, grown on demand. -ENODEV: no such device. */
int moek_hip_create(int device, struct moek_hip_ctx **out);
void moek_hip_destroy(struct moek_hip_ctx *ctx);
/* Make ctx's device current on the calling thread (since ABI 2): the
 * calls without a context that follow, on this thread, use that device. */
int moek_hip_use(struct moek_hip_ctx *ctx);

/* Force the row tile of the grouped GEMMs (MOEK_HIP_TILE_SMALL or
 * _LARGE); 0 (the default) picks it from the tokens per expert. */
int moek_hip_set_tile(struct moek_hip_ctx *ctx, uint32_t tile);

/* Whether the small tile's GEMMs use the GEMV kernels (gemv.hip; the
 * default, unless MOEK_GEMV=0 was in the environment at create) or the
 * tiled ones (gemm.hip). */
int moek_hip_set_gemv(struct moek_hip_ctx *ctx, int on);

/* Device memory and copies (synchronous). */
int moek_hip_malloc(size_t bytes, void **dptr);
void moek_hip_free(void *dptr);
int moek_hip_upload(void *dst, const void *src, size_t bytes);
int moek_hip_download(void *dst, const void *src, size_t bytes);
int moek_hip_memset(void *dst, int value, size_t bytes);

/* Register host memory (e.g. moex's pinned weights) for the GPU; *dptr
 * receives the device alias to put in struct moek_weights. */
int moek_hip_host_register(void *p, size_t bytes, void **dptr);
int moek_hip_host_unregister(void *p);

/* Wait for a stream (NULL: the default stream). */
int moek_hip_sync(void *stream);

/* ---- streams, events, asynchronous copies (stream.hip) ---- */

/* A stream that does not synchronise with the default stream. */
int moek_hip_stream_create(void **stream);
void moek_hip_stream_destroy(void *stream);
int moek_hip_event_create(void **event);
void moek_hip_event_destroy(void *event);
/* Record event at this point of stream; later work on another stream
 * may wait for it (moek_hip_stream_wait) or the host (moek_hip_event_sync). */
int moek_hip_event_record(void *event, void *stream);
int moek_hip_event_sync(void *event);
/* Milliseconds between two recorded, completed events. */
int moek_hip_event_elapsed(void *start, void *end, float *ms);
/* Work queued on stream after this waits for event. */
int moek_hip_stream_wait(void *stream, void *event);
/* Queue a copy in any direction (unified addressing). Host memory that is
 * not pinned or registered makes the call wait for the copy. */
int moek_hip_copy_async(void *dst, const void *src, size_t bytes,
			void *stream);
/* Pinned host memory, for the asynchronous copies. */
int moek_hip_host_alloc(size_t bytes, void **p);
void moek_hip_host_free(void *p);
/* The device alias of p, which lies in registered host memory (whoever
 * registered it). */
int moek_hip_host_alias(void *p, void **dptr);
/* The current device's free and total memory. */
int moek_hip_mem_info(size_t *free_bytes, size_t *total);

/*
 * Call fn(arg, status) once the work queued on stream so far is done,
 * from a thread of the GPU runtime, exactly once: status is 0, or -EIO
 * when that work failed (a kernel's fault). fn must not call the GPU
 * runtime.
 */
typedef void (*moek_hip_host_fn)(void *arg, int status);
int moek_hip_host_fn_launch(void *stream, moek_hip_host_fn fn, void *arg);

/* Queue a device-to-device copy of bytes by a plain grid-stride kernel:
 * moex-bench's device-bandwidth anchor. dst and src 16-byte aligned. */
int moek_hip_copy_kernel(void *dst, const void *src, size_t bytes,
			 void *stream);

/*
 * The whole layer, same contract as moek_ref_layer: y[ntok][dim] from
 * x[ntok][dim]. counts (optional, host memory) receives the tokens routed
 * to each expert; asking for it waits for the stream. Without counts the
 * call only queues work on the stream. x and y must not overlap.
 */
int moek_hip_layer(struct moek_hip_ctx *ctx, const struct moek_shape *s,
		   const struct moek_weights *wt, const float *x, size_t ntok,
		   float *y, uint32_t *counts, void *stream);

/*
 * Queue a copy of the routed-token counts of ctx's last moek_hip_layer()
 * (n_experts values) into counts (host memory; pinned keeps it
 * asynchronous). The stream must be the one that layer ran on.
 */
int moek_hip_layer_counts(struct moek_hip_ctx *ctx, uint32_t n_experts,
			  uint32_t *counts, void *stream);

/* ---- the stages one by one (for tests and for callers that split the
 * layer); all pointers are device pointers ---- */

/* Router with fused top-k: idx[ntok][topk], w[ntok][topk], sorted by
 * descending selection score, as moek_ref_route. */
int moek_hip_route(struct moek_hip_ctx *ctx, const struct moek_shape *s,
		   const struct moek_weights *wt, const float *x, size_t ntok,
		   int32_t *idx, float *w, void *stream);

/*
 * struct moek_hip_align - the token x expert pairs sorted by expert.
 * Pair p = t * topk + k (token t's k-th choice). Expert e owns the rows
 * [offsets[e], offsets[e + 1]) of the permuted problem: counts[e] real
 * rows then padding up to a multiple of tile. Device arrays, owned by the
 * context, valid until its next call:
 * @counts:      [n_experts] pairs per expert
 * @offsets:     [n_experts + 1] first row of each expert; offsets[n_experts]
 *               is the rows in use
 * @row_tok:     [max_rows] the token of each row, -1 for padding
 * @pair_pos:    [ntok * topk] the row of each pair
 * @tile_expert: [max_tiles] the expert of each row tile, -1 past the end
 * @tile, @max_rows, @max_tiles: the sizes (host values); max_rows =
 *               max_tiles * tile bounds offsets[n_experts]
 */
struct moek_hip_align {
	uint32_t *counts;
	uint32_t *offsets;
	int32_t *row_tok;
	int32_t *pair_pos;
	int32_t *tile_expert;
	uint32_t tile;
	uint32_t max_rows;
	uint32_t max_tiles;
};

int moek_hip_align(struct moek_hip_ctx *ctx, const struct moek_shape *s,
		   const int32_t *idx, size_t ntok, struct moek_hip_align *out,
		   void *stream);

/* DeepSeek's act_quant of rows x[rows][n]: q[rows][n] e4m3 and
 * scales[rows][ceil(n/128)], as moek_act_quant_row. */
int moek_hip_act_quant(const float *x, size_t rows, size_t n, uint8_t *q,
		       float *scales, void *stream);

/* One dense FFN, as moek_ref_ffn: y[ntok][dim] = ffn(x) of the given
 * width (the shared-expert path: grouped GEMMs with one group). */
int moek_hip_ffn(struct moek_hip_ctx *ctx, const struct moek_shape *s,
		 const struct moek_ffn *f, uint32_t width, const float *x,
		 size_t ntok, float *y, void *stream);

#ifdef __cplusplus
}
#endif

#endif /* MOEK_HIP_H */
