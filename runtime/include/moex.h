/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * libmoex - the moex user-space runtime.
 *
 * This is the public header of libmoex. The first slice covers the device
 * (open, query, no-op), pinned regions (pin, unpin, describe, export as a
 * dma-buf, copy through the device's engine), pinnable memory, the sysfs
 * statistics and error texts. Later slices add io_uring queues; they are
 * added as new functions and new fields at the end of the size-carrying
 * structs, never by changing what is here.
 *
 * Conventions:
 *  - Every function that can fail returns 0 (or, where stated, a
 *    non-negative value) on success and a negative errno on failure. No
 *    function changes errno, whatever happens inside it.
 *  - A NULL pointer where an object or an out parameter is required gives
 *    -EINVAL. -EFAULT only ever comes from the kernel, for a bad address
 *    inside a region, or from the GPU runtime, for host memory the GPU
 *    cannot reach (moex_moe_create() on "hip"). moex_close(NULL) and
 *    moex_free_pinnable(NULL, n) are no-ops that return 0, like free(NULL).
 *  - Structs that the library fills carry their own size in their first
 *    field (SPDK style): set .size = sizeof(struct ...) before the call.
 *    The library fills only the fields that lie wholly inside .size, so an
 *    application built against an older, smaller struct keeps working, and
 *    leaves the bytes it does not know (a newer caller's new fields)
 *    untouched: zero-initialise the struct. .size smaller than the size
 *    field itself, or larger than MOEX_STRUCT_SIZE_MAX, gives -EINVAL.
 *  - Handles, offsets and lengths are those of the kernel ABI
 *    (<linux/moex.h>, included below for the MOEX_* constants).
 *  - A struct moex_device may be used by several threads at once, except
 *    that moex_close() must not race with any other call on it. So may a
 *    struct moex_moe, except moex_moe_destroy(): runs of one layer from
 *    several threads take turns.
 *
 * Symbols are versioned (LIBMOEX_0.1 to LIBMOEX_0.5, runtime/libmoex.map);
 * link with `pkg-config --libs moex`.
 */
#ifndef LIBMOEX_MOEX_H
#define LIBMOEX_MOEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include <linux/moex.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LIBMOEX_VERSION_MAJOR	0
#define LIBMOEX_VERSION_MINOR	5
#define LIBMOEX_VERSION		"0.5"

/* The default device: the host device, always present when moex.ko is. */
#define MOEX_DEFAULT_DEVICE	"/dev/moex0"

/* The largest .size a size-carrying struct may announce. */
#define MOEX_STRUCT_SIZE_MAX	4096

/* The alignment of moex_alloc_pinnable() memory: one x86-64 huge page. */
#define MOEX_PINNABLE_ALIGN	((size_t)2 << 20)

/* ---- device -------------------------------------------------------------- */

/* An open /dev/moexN. Opaque. */
struct moex_device;

/**
 * struct moex_device_info - what moex_query() reports.
 * @size: in: sizeof(struct moex_device_info) as the caller knows it.
 * @features: MOEX_FEAT_* bits of the driver.
 * @max_pinned_bytes: the module-wide cap on pinned memory (module parameter
 *	max_pinned_mb), 0 for no cap.
 * @pinned_bytes: bytes pinned on this device at the time of the call.
 * @abi_version: the driver's MOEX_ABI_VERSION.
 * @engine: the copy engine, MOEX_ENGINE_*.
 * @dma_bits: the engine's DMA address width, 0 for the CPU engine.
 * @engine_name: the engine's name, NUL-terminated ("cpu", "dmaengine",
 *	"edu").
 */
struct moex_device_info {
	size_t size;
	uint64_t features;
	uint64_t max_pinned_bytes;
	uint64_t pinned_bytes;
	uint32_t abi_version;
	uint32_t engine;
	uint32_t dma_bits;
	char engine_name[MOEX_ENGINE_NAME_LEN];
	/* New fields go here. */
};

/*
 * Open a moex device (path NULL: MOEX_DEFAULT_DEVICE) and check that it
 * answers MOEX_IOCTL_INFO with this library's ABI version. Errors: those
 * of open(2) (-ENOENT, -EACCES, ...), -ENOTTY when the file is not a moex
 * device, -EPROTO when the driver's ABI version differs, -ENOMEM.
 */
int moex_open(const char *path, struct moex_device **out);

/* Close the device. Regions it still holds are unpinned by the driver. */
int moex_close(struct moex_device *dev);

/* The device's file descriptor (>= 0), e.g. for poll or io_uring. */
int moex_device_fd(const struct moex_device *dev);

/* Ask the driver for a fresh description of the device. */
int moex_query(struct moex_device *dev, struct moex_device_info *info);

/* A round trip through the driver that does nothing. */
int moex_nop(struct moex_device *dev);

/* ---- regions --------------------------------------------------------------- */

/**
 * struct moex_region_desc - what moex_region_query() reports.
 * @size: in: sizeof(struct moex_region_desc) as the caller knows it.
 * @addr: the address the region was pinned at.
 * @length: bytes.
 * @pages: pinned base pages.
 * @handle: the region's handle.
 * @flags: MOEX_REGION_* flags (READONLY, EXPORTED).
 * @sg_segments: physically contiguous segments (huge pages coalesce).
 * @dma_segments: segments as DMA-mapped for the engine, 0 for the CPU.
 */
struct moex_region_desc {
	size_t size;
	void *addr;
	uint64_t length;
	uint64_t pages;
	uint32_t handle;
	uint32_t flags;
	uint32_t sg_segments;
	uint32_t dma_segments;
	/* New fields go here. */
};

/*
 * Pin [addr, addr + len) on the device: page-aligned address, non-zero
 * multiple of the page size (else -EINVAL before any system call). flags:
 * 0 or MOEX_PIN_READONLY (the region can then only be a copy source; fill
 * it before pinning), other bits are refused by the driver (-EINVAL).
 * *handle names the region on this device only. -ENOMEM: RLIMIT_MEMLOCK
 * or the module's max_pinned_mb is reached (moex_error_hint() says how to
 * raise them); -EFAULT: the range is not mapped as needed; -E2BIG: more
 * than 2^32 - 1 pages; -EOVERFLOW: addr + len wraps; -EOPNOTSUPP: a
 * writable pin of a shared mapping of an ordinary file (memfd, tmpfs and
 * hugetlbfs are fine); -EINTR: a fatal signal came while pinning;
 * -EBUSY: the open file holds INT_MAX regions.
 */
int moex_pin(struct moex_device *dev, void *addr, size_t len, unsigned flags,
	     uint32_t *handle);

/* Drop a handle. The pages stay pinned while an exported dma-buf holds them. */
int moex_unpin(struct moex_device *dev, uint32_t handle);

/* Describe a pinned region. */
int moex_region_query(struct moex_device *dev, uint32_t handle,
		      struct moex_region_desc *desc);

/*
 * Export a region as a dma-buf: *fd is a new O_CLOEXEC file descriptor
 * (read-only for a READONLY region) that any importer can attach and the
 * CPU can mmap (MAP_SHARED). The caller closes it.
 */
int moex_export(struct moex_device *dev, uint32_t handle, int *fd);

/*
 * Copy len bytes (non-zero, no alignment needed) from src_handle at
 * src_off to dst_handle at dst_off on the device's engine; returns when
 * the copy is done. -ERANGE: a range leaves its region; -EACCES: the
 * destination is READONLY; -EINVAL: overlapping ranges of one region.
 */
int moex_copy(struct moex_device *dev, uint32_t dst_handle, uint64_t dst_off,
	      uint32_t src_handle, uint64_t src_off, uint64_t len);

/* ---- queues ---------------------------------------------------------------- */

/*
 * A queue submits commands to one device and reaps their completions from
 * one place. It is an io_uring ring (SQE128 | CQE32, the device registered
 * as a fixed file) where the kernel and the driver allow it (Linux 6.1 or
 * later with a moex.ko that answers uring_cmd); otherwise the same calls
 * run each command synchronously through ioctl(2) when it is submitted and
 * queue its completion, so callers need no second code path.
 */
struct moex_queue;

/* Force the synchronous ioctl path (moex_queue_opts.flags). */
#define MOEX_QUEUE_SYNC		(1u << 0)

/* What moex_queue_mode() reports. */
#define MOEX_QUEUE_MODE_URING	1
#define MOEX_QUEUE_MODE_SYNC	2

/**
 * struct moex_queue_opts - how to build a queue.
 * @size: sizeof(struct moex_queue_opts) as the caller knows it.
 * @entries: commands that can be queued before a submit, and in flight;
 *	0 for the default (256); at most 32768.
 * @flags: MOEX_QUEUE_* flags.
 */
struct moex_queue_opts {
	size_t size;
	unsigned int entries;
	unsigned int flags;
	/* New fields go here. */
};

/**
 * struct moex_cqe - one completion.
 * @user_data: what the command was queued with.
 * @res: its result: 0 (or a value the command defines) or a negative errno.
 */
struct moex_cqe {
	uint64_t user_data;
	int32_t res;
	uint32_t reserved;
};

/*
 * Make a queue on dev (opts may be NULL for the defaults). The io_uring
 * setup asks for COOP_TASKRUN (with TASKRUN_FLAG), SINGLE_ISSUER and
 * DEFER_TASKRUN and drops them one at a time where the kernel answers
 * -EINVAL; a startup INFO tells whether the driver answers uring_cmd.
 * When io_uring cannot be used (it is disabled: -EPERM, see
 * moex_error_hint(); too old: -EINVAL or -ENOSYS; the driver lacks
 * uring_cmd: -EOPNOTSUPP) the queue falls back
 * to the synchronous path and moex_queue_mode() says why.
 * An io_uring queue belongs to the thread that created it (SINGLE_ISSUER
 * and DEFER_TASKRUN, where the kernel has them): submit, peek, wait and
 * destroy it there; another thread's submit, peek or wait fails with
 * -EEXIST and changes nothing. A synchronous queue, or a ring without
 * SINGLE_ISSUER, may move between threads, one at a time.
 * dev may be NULL for a queue of host work only (MoE layers on a host
 * without the module): it is synchronous, fallback_err -ENODEV, and its
 * device commands complete with -ENODEV.
 */
int moex_queue_create(struct moex_device *dev,
		      const struct moex_queue_opts *opts,
		      struct moex_queue **out);

/* Destroy a queue: what is queued is submitted and every command in
 * flight waited for first. -EEXIST, with nothing changed, when that needs
 * the ring from another thread than the one that created it. */
int moex_queue_destroy(struct moex_queue *q);

/*
 * MOEX_QUEUE_MODE_URING or MOEX_QUEUE_MODE_SYNC. setup_flags (may be NULL)
 * gets the IORING_SETUP_* flags kept, fallback_err (may be NULL) the
 * negative errno that made the queue synchronous (0 when it was asked for
 * or the queue uses io_uring).
 */
int moex_queue_mode(const struct moex_queue *q, unsigned int *setup_flags,
		    int *fallback_err);

/*
 * Queue a command without submitting it (-EBUSY when entries commands are
 * queued or in flight already). Arguments are checked by the driver; the
 * completion carries its result.
 */
int moex_queue_nop(struct moex_queue *q, uint64_t user_data);
int moex_queue_copy(struct moex_queue *q, uint32_t dst_handle,
		    uint64_t dst_off, uint32_t src_handle, uint64_t src_off,
		    uint64_t len, uint64_t user_data);

/*
 * Registered (fixed) buffers, for small hot buffers such as activations:
 * a COPY between one and a region needs no region of its own and no page
 * pinning per command. Register nr iovecs once (they count against
 * RLIMIT_MEMLOCK, as any io_uring fixed buffer does); registering again
 * replaces the set (a registration that fails leaves none registered),
 * nr == 0 unregisters. -EOPNOTSUPP on a synchronous
 * queue (fixed buffers belong to io_uring), -errno from the kernel.
 * Needs Linux 6.1 and a moex.ko with MOEX_FEAT_COPY_FIXED.
 */
int moex_queue_register_buffers(struct moex_queue *q, const struct iovec *iov,
				unsigned int nr);

/*
 * Queue a COPY between registered buffer buf_index and a region. flags is
 * MOEX_COPY_SRC_FIXED (buffer to region: the buffer's bytes at addr go to
 * handle at off) or MOEX_COPY_DST_FIXED (region to buffer); addr lies
 * inside the registered buffer. -EOPNOTSUPP on a synchronous queue.
 */
int moex_queue_copy_fixed(struct moex_queue *q, unsigned int flags,
			  uint32_t handle, uint64_t off, unsigned int buf_index,
			  void *addr, uint64_t len, uint64_t user_data);

/* Submit what was queued: the number of commands submitted, or -errno. */
int moex_queue_submit(struct moex_queue *q);

/* Up to max completions that are ready, without waiting: the count. */
int moex_queue_peek(struct moex_queue *q, struct moex_cqe *cqes,
		    unsigned int max);

/*
 * Wait until at least min (<= max) completions are ready or timeout_ms
 * passed (-1: no limit), then reap up to max: the count, or -ETIME when
 * fewer than min arrived in time (none is reaped then), -EINVAL, -errno.
 * The timeout counts from the call: signals that interrupt the wait do not
 * restart it.
 */
int moex_queue_wait(struct moex_queue *q, struct moex_cqe *cqes,
		    unsigned int max, unsigned int min, int timeout_ms);

/* ---- MoE layers ------------------------------------------------------------ */

/*
 * A DeepSeek-style MoE layer (router, grouped top-k, expert FFNs, combine,
 * shared experts) run by a backend chosen at run time: "cpu" (SIMD and a
 * thread pool, on any x86-64 host, with or without the module) or "hip"
 * (a GPU). Semantics: Documentation/moe-kernels.rst; activations are f32
 * row-major [tokens][dim]; weights stay where the caller keeps them (in
 * moex regions, see moex_region_addr()) and are never copied.
 */
enum moex_dtype {
	MOEX_DTYPE_F32 = 0,
	MOEX_DTYPE_BF16 = 1,
	MOEX_DTYPE_FP8_E4M3 = 2,	/* 128x128 block scales */
};

enum moex_scoring {
	MOEX_SCORING_SOFTMAX = 0,	/* DeepSeek-V2 */
	MOEX_SCORING_SIGMOID = 1,	/* DeepSeek-V3 */
};

/**
 * struct moex_moe_desc - one MoE layer's shape (config.json's names).
 * @size: sizeof(struct moex_moe_desc) as the caller knows it.
 * @dim: hidden_size.
 * @inter: moe_intermediate_size.
 * @n_experts: n_routed_experts.
 * @topk: num_experts_per_tok.
 * @n_groups: n_group (0 or 1: no group limiting).
 * @topk_groups: topk_group.
 * @n_shared: n_shared_experts (one FFN of width n_shared * inter).
 * @scoring: enum moex_scoring (scoring_func).
 * @norm_topk: norm_topk_prob: 1 to normalise the top-k weights.
 * @route_scale: routed_scaling_factor.
 * @weight_dtype: enum moex_dtype of the expert weights.
 * @gate_dtype: MOEX_DTYPE_F32 or MOEX_DTYPE_BF16.
 */
struct moex_moe_desc {
	size_t size;
	uint32_t dim;
	uint32_t inter;
	uint32_t n_experts;
	uint32_t topk;
	uint32_t n_groups;
	uint32_t topk_groups;
	uint32_t n_shared;
	uint32_t scoring;
	uint32_t norm_topk;
	float route_scale;
	uint32_t weight_dtype;
	uint32_t gate_dtype;
	/* New fields go here. */
};

/**
 * struct moex_ffn_weights - one expert, as nn.Linear stores it.
 * @w1: gate_proj, [inter][dim].
 * @w2: down_proj, [dim][inter].
 * @w3: up_proj, [inter][dim].
 * @s1, @s2, @s3: their FP8 weight_scale_inv, f32
 *	[ceil(out/128)][ceil(in/128)]; NULL for f32 and bf16.
 */
struct moex_ffn_weights {
	const void *w1;
	const void *w2;
	const void *w3;
	const float *s1;
	const float *s2;
	const float *s3;
};

/**
 * struct moex_moe_weights - a layer's weights, by address.
 * @size: sizeof(struct moex_moe_weights) as the caller knows it.
 * @gate: the router, [n_experts][dim] of gate_dtype.
 * @bias: e_score_correction_bias, f32 [n_experts], or NULL.
 * @experts: [n_experts]; the array is copied, the weights are not.
 * @shared: the shared experts as one FFN; unused when n_shared is 0.
 */
struct moex_moe_weights {
	size_t size;
	const void *gate;
	const float *bias;
	const struct moex_ffn_weights *experts;
	struct moex_ffn_weights shared;
	/* New fields go here. */
};

/**
 * struct moex_moe_opts - how to run a layer.
 * @size: sizeof(struct moex_moe_opts) as the caller knows it.
 * @backend: "cpu" (the default when NULL) or "hip".
 * @threads: CPU backend threads, at most 1024 (more: -EINVAL); 0:
 *	$MOEX_THREADS (1 to 1024; anything else: -EINVAL), else one per
 *	CPU the process may run on (sched_getaffinity(2), 1024 at most).
 *	Every CPU layer of a process shares one pool, sized by the first.
 * @gpu_experts: "hip" backend (since 0.4): routed experts kept in GPU
 *	memory; 0 keeps all of them. Fewer makes an expert cache: the GPU
 *	keeps the hottest by the router's counts and reads the others
 *	straight from their host memory (pinned by moex, registered with
 *	the GPU by libmoex): see moex_moe_stats().
 */
struct moex_moe_opts {
	size_t size;
	const char *backend;
	unsigned int threads;
	unsigned int gpu_experts;
	/* New fields go here. */
};

struct moex_moe;

/*
 * Bind a layer to a backend. The weights must stay valid and unchanged
 * until moex_moe_destroy(). -EINVAL: a bad shape or a missing weight, or
 * (the "hip" backend's first layer) a $MOEX_GPU that is not a number;
 * -ENODEV: the backend is not built in or has no device (or none numbered
 * $MOEX_GPU); -ENOMEM. The "hip" backend's layers may be created, run and
 * destroyed from any thread: each call uses the GPU $MOEX_GPU named.
 */
int moex_moe_create(const struct moex_moe_desc *desc,
		    const struct moex_moe_weights *weights,
		    const struct moex_moe_opts *opts, struct moex_moe **out);
int moex_moe_destroy(struct moex_moe *moe);

/* "cpu-avx512", "cpu-avx2", "cpu-scalar" or "hip" (plus ":N/M" when N of
 * M routed experts are kept in GPU memory). */
const char *moex_moe_backend(const struct moex_moe *moe);

/**
 * struct moex_moe_stats - what a layer did (since 0.4).
 * @size: in: sizeof(struct moex_moe_stats) as the caller knows it.
 * @runs: runs completed.
 * @tokens: tokens run.
 * @gpu_experts: "hip": routed experts with a place in GPU memory; 0 "cpu".
 * @gpu_hits: "hip": routed experts a run found in GPU memory, summed over
 *	runs (each expert a run used counts once).
 * @gpu_misses: "hip": the same, read from host memory instead.
 * @stream_bytes: "hip": bytes of the missed experts' weights.
 * @fills: "hip": experts copied into GPU memory by the cache.
 * @fill_bytes: "hip": their bytes.
 */
struct moex_moe_stats {
	size_t size;
	uint64_t runs;
	uint64_t tokens;
	uint64_t gpu_experts;
	uint64_t gpu_hits;
	uint64_t gpu_misses;
	uint64_t stream_bytes;
	uint64_t fills;
	uint64_t fill_bytes;
};

/* Fill *st as far as st->size covers. */
int moex_moe_stats(struct moex_moe *moe, struct moex_moe_stats *st);

/*
 * Whether the "hip" backend can run here (since 0.4): the number of GPUs
 * (> 0), or -ENODEV with why[0..len) saying what is missing: the plugin
 * libmoex-hip.so.0 (looked for in $MOEX_HIP_LIB, beside libmoex, then on
 * the loader's path), a plugin of another ABI, or a GPU.
 */
int moex_gpu_probe(char *why, size_t len);

/*
 * Run the layer on ntok tokens: y = moe(x), both [ntok][dim] f32.
 * counts (may be NULL) receives the tokens routed to each expert
 * ([n_experts], the expert load as EPLB uses it; all 0 when ntok is 0).
 * Returns when done.
 */
int moex_moe_run(struct moex_moe *moe, const float *x, size_t ntok, float *y,
		 uint32_t *counts);

/*
 * The same through the scalar reference (double accumulation; slow): what
 * moex-run --check and the tests compare the backends with.
 */
int moex_moe_run_reference(struct moex_moe *moe, const float *x, size_t ntok,
			   float *y, uint32_t *counts);

/*
 * Bytes of weights one run reads: the router, the shared experts and each
 * routed expert with counts[e] > 0 (all of them when counts is NULL).
 */
uint64_t moex_moe_active_bytes(const struct moex_moe *moe,
			       const uint32_t *counts);

/*
 * Queue a run of the layer on q: it runs when moex_queue_submit() is
 * called (the CPU backend runs in the submitting thread and its pool; the
 * "hip" backend queues it on the GPU, and a callback posts the completion
 * into the queue's ring with IORING_OP_MSG_RING, Linux 5.18, or, without
 * it or on a synchronous queue, waits for the GPU at submit), and
 * its completion, res 0 or -errno, is reaped with the queue's others by
 * moex_queue_peek() and moex_queue_wait(). Completions of layers and of
 * device commands submitted together may arrive in any order. -EBUSY when
 * the queue is full.
 */
int moex_queue_moe(struct moex_queue *q, struct moex_moe *moe, const float *x,
		   size_t ntok, float *y, uint32_t *counts,
		   uint64_t user_data);

/*
 * The address of [off, off + len) of a region pinned on dev, for weights
 * given by region: -ENOENT for an unknown handle, -ERANGE when the range
 * leaves the region.
 */
int moex_region_addr(struct moex_device *dev, uint32_t handle, uint64_t off,
		     uint64_t len, void **out);

/*
 * Keep [addr, addr + len) resident for weights: pinned by moex when dev is
 * open (*handle: the region; addr page-aligned, len a page multiple), else
 * (dev NULL) locked with mlock(2) and *handle = 0, and libmoex says once on
 * stderr that the weights are not pinned by moex. -ENOMEM when the memlock
 * limit is reached either way (also a limit of 0, where mlock(2) says
 * EPERM). moex_unlock_weights() undoes either.
 *
 * For weights in place already: the pin is read-only, which takes the
 * pages as they are, and anonymous memory never written is the shared zero
 * page (uapi/linux/moex.h, MOEX_PIN_READONLY): writes after the pin would
 * land in other pages. To load weights into pinned memory, moex_pin() it
 * writable (flags 0) first, as moex_model_open() does.
 */
int moex_lock_weights(struct moex_device *dev, void *addr, size_t len,
		      uint32_t *handle);
int moex_unlock_weights(struct moex_device *dev, void *addr, size_t len,
			uint32_t handle);

/* ---- models ----------------------------------------------------------------- */

/*
 * A DeepSeek-style model directory (config.json, safetensors shards and
 * model.safetensors.index.json; Documentation/model-format.rst): its MoE
 * layers' weights read with O_DIRECT through io_uring straight into
 * huge-page memory that moex pins (or that is mlock()ed when no device is
 * given), and one struct moex_moe per layer bound to a backend.
 */
struct moex_model;

/* MoE layers of a model: first_layer..last_layer, both included. */
#define MOEX_MODEL_ALL_LAYERS	UINT32_MAX

/**
 * struct moex_model_opts - how to load a model.
 * @size: sizeof(struct moex_model_opts) as the caller knows it.
 * @dev: the device that pins the weights; NULL: mlock(2) instead.
 * @first_layer: the first layer to load (a MoE layer: at least
 *	config.json's first_k_dense_replace); MOEX_MODEL_ALL_LAYERS for the
 *	first MoE layer.
 * @last_layer: the last layer to load; MOEX_MODEL_ALL_LAYERS for the last.
 * @queue_depth: reads in flight (0: 32; at least 16 is best; at most
 *	4096, more: -EINVAL).
 * @backend: see struct moex_moe_opts.
 * @threads: see struct moex_moe_opts.
 * @progress: called after each completed read with the bytes read so far
 *	and the total (may be NULL).
 * @progress_ctx: passed to @progress.
 * @errbuf: where a failure's explanation goes (naming the file, tensor or
 *	key), may be NULL.
 * @errlen: its size.
 * @gpu_experts: see struct moex_moe_opts (since 0.4).
 */
struct moex_model_opts {
	size_t size;
	struct moex_device *dev;
	uint32_t first_layer;
	uint32_t last_layer;
	unsigned int queue_depth;
	const char *backend;
	unsigned int threads;
	void (*progress)(void *ctx, uint64_t done, uint64_t total);
	void *progress_ctx;
	char *errbuf;
	size_t errlen;
	unsigned int gpu_experts;
	/* New fields go here. */
};

/**
 * struct moex_model_info - what was loaded, and how.
 * @size: sizeof(struct moex_model_info) as the caller knows it.
 * @first_layer: the first layer loaded.
 * @layers: layers loaded.
 * @n_layers: num_hidden_layers of the model.
 * @files: safetensors files read from.
 * @bytes: weight bytes the layers use.
 * @read_bytes: bytes read: the tensors' runs widened to 4 KiB blocks (a
 *	file's last block may end early, with the file).
 * @load_seconds: wall time of the reads.
 * @pinned: 1 when moex pinned the weights, 0 when they are mlock()ed.
 * @direct: files read with O_DIRECT (the others: buffered, still into the
 *	weights' memory).
 * @desc: the first layer's shape (all MoE layers of a model share it).
 * @uring: 1 when the reads went through io_uring, 0 when through pread(2)
 *	because the host refuses io_uring (a seccomp profile, as container
 *	runtimes' defaults, or kernel.io_uring_disabled): one read at a time.
 */
struct moex_model_info {
	size_t size;
	uint32_t first_layer;
	uint32_t layers;
	uint32_t n_layers;
	uint32_t files;
	uint64_t bytes;
	uint64_t read_bytes;
	double load_seconds;
	uint32_t pinned;
	uint32_t direct;
	struct moex_moe_desc desc;
	uint32_t uring;
	/* New fields go here. */
};

/* Load; 0 or -errno, with the explanation in opts->errbuf. */
int moex_model_open(const char *dir, const struct moex_model_opts *opts,
		    struct moex_model **out);
int moex_model_close(struct moex_model *model);
int moex_model_info(const struct moex_model *model,
		    struct moex_model_info *info);
/* The layer's MoE, owned by the model; NULL when it was not loaded. */
struct moex_moe *moex_model_layer(struct moex_model *model, uint32_t layer);

/* ---- pinnable memory ------------------------------------------------------- */

/*
 * Allocate len bytes (non-zero) of anonymous memory for pinning: aligned to
 * MOEX_PINNABLE_ALIGN, the length rounded up to it. hugepages asks the
 * kernel for transparent huge pages (madvise(MADV_HUGEPAGE)); this is
 * advice, and a kernel without THP still gives ordinary pages. The pages
 * are not populated: a writable pin faults them in (a read-only one would
 * take the zero page, see moex_lock_weights()).
 */
int moex_alloc_pinnable(size_t len, bool hugepages, void **out);

/*
 * Free memory from moex_alloc_pinnable(); len as given to it. -EINVAL for
 * len 0 or an address that is not MOEX_PINNABLE_ALIGN-aligned.
 */
int moex_free_pinnable(void *addr, size_t len);

/* ---- statistics (sysfs) ---------------------------------------------------- */

/* Indexes of the counters, in the order of struct moex_stats. */
enum moex_stat {
	MOEX_STAT_PINNED_BYTES,
	MOEX_STAT_PINNED_REGIONS,
	MOEX_STAT_PIN_CALLS,
	MOEX_STAT_PIN_FAILURES,
	MOEX_STAT_UNPIN_CALLS,
	MOEX_STAT_COPY_CALLS,
	MOEX_STAT_COPY_BYTES,
	MOEX_STAT_COPY_FAILURES,
	MOEX_STAT_DMABUF_EXPORTS,
	MOEX_STAT_OPEN_FILES,
	MOEX_STATS_COUNT /* the number of counters this header knows */
};

/**
 * struct moex_stats - the counters of /sys/class/moex/<dev>/stats/, see
 *	Documentation/ABI/testing/sysfs-class-moex for their meaning.
 * @size: in: sizeof(struct moex_stats) as the caller knows it.
 */
struct moex_stats {
	size_t size;
	uint64_t pinned_bytes;
	uint64_t pinned_regions;
	uint64_t pin_calls;
	uint64_t pin_failures;
	uint64_t unpin_calls;
	uint64_t copy_calls;
	uint64_t copy_bytes;
	uint64_t copy_failures;
	uint64_t dmabuf_exports;
	uint64_t open_files;
	/* New counters go here, with a new enum moex_stat entry. */
};

/*
 * The sysfs file name of counter idx (enum moex_stat), or NULL past the
 * last counter of the library you run with (since 0.5): iterate until NULL
 * rather than to MOEX_STATS_COUNT to see them all.
 */
const char *moex_stats_name(unsigned idx);

/*
 * The names of the first ten counters (libmoex 0.1 to 0.4), terminated by
 * NULL; use moex_stats_name(). This array never grows: a program linked
 * against it may hold its own copy of it, as long as it was then (a copy
 * relocation), which a longer array would overrun.
 */
extern const char *const moex_stats_names[];

/* The value moex_stats_get() gives for an index it does not know. */
#define MOEX_STAT_INVALID	UINT64_MAX

/*
 * Counter idx (enum moex_stat) of s, or MOEX_STAT_INVALID when s is NULL,
 * idx is out of range or the counter lies beyond s->size.
 */
uint64_t moex_stats_get(const struct moex_stats *s, unsigned idx);

/*
 * Read the counters of device devname (NULL: "moex0") from
 * $MOEX_SYSFS_ROOT/class/moex/<devname>/stats/<name>, one decimal value per
 * file; MOEX_SYSFS_ROOT defaults to /sys (it is ignored in setuid
 * programs). Errors: -EINVAL for a devname that is empty, too long or
 * holds '/' or is "." or ".."; -ENOENT when the device or a counter file
 * is missing (module not loaded, or an older driver); -EIO when a file
 * does not hold one non-negative decimal number; other read errors.
 */
int moex_stats_read(const char *devname, struct moex_stats *s);

/* ---- errors and helpers ------------------------------------------------- */

/*
 * A static description of err (either sign: -ENOMEM and ENOMEM are the
 * same). Never NULL; safe from any thread.
 */
const char *moex_strerror(int err);

/*
 * A static one-line hint naming the usual fix for err as libmoex reports
 * it (either sign), or "" when there is none. Never NULL. E.g. for ENOENT:
 * the module is not loaded, `modprobe moex`; for ENOMEM: raise the
 * memlock limit.
 */
const char *moex_error_hint(int err);

/*
 * Parse a size: decimal digits with an optional binary suffix k, M, G, T
 * (either case, optionally followed by "iB"): "4096", "4k", "2M", "1GiB",
 * "512MiB". -EINVAL for an empty or malformed string (signs, spaces, hex,
 * fractions, "KB"), -ERANGE when the value does not fit in 64 bits.
 */
int moex_parse_size(const char *s, uint64_t *out);

#ifdef __cplusplus
}
#endif

#endif /* LIBMOEX_MOEX_H */
