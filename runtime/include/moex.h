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
 *    inside a region. moex_close(NULL) and moex_free_pinnable(NULL, n) are
 *    no-ops that return 0, like free(NULL).
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
 *    that moex_close() must not race with any other call on it.
 *
 * Symbols are versioned (LIBMOEX_0.1); link with `pkg-config --libs moex`.
 */
#ifndef LIBMOEX_MOEX_H
#define LIBMOEX_MOEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/moex.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LIBMOEX_VERSION_MAJOR	0
#define LIBMOEX_VERSION_MINOR	1
#define LIBMOEX_VERSION		"0.1"

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
 * raise them); -EFAULT: the range is not mapped as needed.
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
 * setup asks for COOP_TASKRUN, SINGLE_ISSUER and DEFER_TASKRUN and drops
 * them one at a time where the kernel answers -EINVAL; a startup no-op
 * tells whether the driver answers uring_cmd. When io_uring cannot be used
 * (it is disabled: -EPERM, see moex_error_hint(); too old: -EINVAL or
 * -ENOSYS; the driver lacks uring_cmd: -EOPNOTSUPP) the queue falls back
 * to the synchronous path and moex_queue_mode() says why.
 * A queue is for one thread at a time (SINGLE_ISSUER).
 */
int moex_queue_create(struct moex_device *dev,
		      const struct moex_queue_opts *opts,
		      struct moex_queue **out);

/* Destroy a queue; commands in flight are waited for first. */
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

/* Submit what was queued: the number of commands submitted, or -errno. */
int moex_queue_submit(struct moex_queue *q);

/* Up to max completions that are ready, without waiting: the count. */
int moex_queue_peek(struct moex_queue *q, struct moex_cqe *cqes,
		    unsigned int max);

/*
 * Wait until at least min (<= max) completions are ready or timeout_ms
 * passed (-1: no limit), then reap up to max: the count, or -ETIME when
 * fewer than min arrived in time (none is reaped then), -EINVAL, -errno.
 */
int moex_queue_wait(struct moex_queue *q, struct moex_cqe *cqes,
		    unsigned int max, unsigned int min, int timeout_ms);

/* ---- pinnable memory ------------------------------------------------------- */

/*
 * Allocate len bytes (non-zero) of anonymous memory for pinning: aligned to
 * MOEX_PINNABLE_ALIGN, the length rounded up to it. hugepages asks the
 * kernel for transparent huge pages (madvise(MADV_HUGEPAGE)); this is
 * advice, and a kernel without THP still gives ordinary pages. The pages
 * are not populated: pinning faults them in.
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
 * The sysfs file names of the counters, indexed by enum moex_stat and
 * terminated by NULL: iterate until NULL rather than to MOEX_STATS_COUNT
 * to see the counters of the library you run with.
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
