/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * moex - pinned expert-weight memory, DMA engines and dma-buf export for
 * Mixture-of-Experts inference hosts.
 *
 * This header is the only ABI between moex.ko and user space. Every command
 * is an ioctl on /dev/moexN and, with the same command number and payload
 * struct, an io_uring passthrough command (IORING_OP_URING_CMD, cmd_op = the
 * ioctl number, payload in the SQE128 command area: see struct
 * moex_uring_cmd below), so every payload struct stays within 72 bytes.
 *
 * Rules (Documentation/process/botching-up-ioctls.rst): only __u64 and __u32
 * fields, pointers carried as __u64, explicit padding, natural alignment.
 * Every "flags", "pad" and "reserved" field that is not defined must be zero
 * on input, otherwise the command fails with -EINVAL. Fields marked "out" are
 * ignored on input.
 */
#ifndef _UAPI_LINUX_MOEX_H
#define _UAPI_LINUX_MOEX_H

#include <linux/const.h>
#include <linux/ioctl.h>
#include <linux/types.h>

/* Bumped on any incompatible change; compatible additions use features. */
#define MOEX_ABI_VERSION		1

/* Feature bits reported in &moex_info.features. */
#define MOEX_FEAT_PIN			_BITULL(0) /* REGION_PIN/UNPIN/INFO */
#define MOEX_FEAT_PIN_READONLY		_BITULL(1) /* MOEX_PIN_READONLY */
#define MOEX_FEAT_DMABUF		_BITULL(2) /* REGION_EXPORT */
#define MOEX_FEAT_COPY			_BITULL(3) /* COPY */
/* regions are DMA-mapped for a device engine */
#define MOEX_FEAT_DMA_MAPPED		_BITULL(4)
/* every command as IORING_OP_URING_CMD, struct moex_uring_cmd */
#define MOEX_FEAT_URING_CMD		_BITULL(5)
/* COPY to or from io_uring fixed buffers: MOEX_COPY_{SRC,DST}_FIXED */
#define MOEX_FEAT_COPY_FIXED		_BITULL(6)

/* Copy engines, reported in &moex_info.engine. */
#define MOEX_ENGINE_CPU			1 /* CPU copy (always present) */
#define MOEX_ENGINE_DMAENGINE		2 /* a dmaengine DMA_MEMCPY channel */
#define MOEX_ENGINE_EDU			3 /* the QEMU edu PCI device */

#define MOEX_ENGINE_NAME_LEN		16

/**
 * struct moex_info - MOEX_IOCTL_INFO: describe the device and the module.
 * @flags: in, must be 0.
 * @abi_version: out, %MOEX_ABI_VERSION.
 * @features: out, mask of MOEX_FEAT_* bits.
 * @max_pinned_bytes: out, the module-wide cap on pinned memory
 *	(module parameter max_pinned_mb); 0 means no cap.
 * @pinned_bytes: out, bytes pinned by this device at the time of the call,
 *	regions held only by an exported dma-buf included.
 * @engine: out, the copy engine of this device, MOEX_ENGINE_*.
 * @dma_bits: out, the DMA address width of the engine's device, 0 when the
 *	engine does not DMA (the CPU engine).
 * @engine_name: out, NUL-terminated engine name, e.g. "cpu", "edu".
 * @reserved: must be zero.
 */
struct moex_info {
	__u32 flags;
	__u32 abi_version;
	__u64 features;
	__u64 max_pinned_bytes;
	__u64 pinned_bytes;
	__u32 engine;
	__u32 dma_bits;
	__u8 engine_name[MOEX_ENGINE_NAME_LEN];
	__u64 reserved[2];
};

/* Flags for &moex_region_pin.flags. */
/* pin without FOLL_WRITE: the region can only be a COPY source */
#define MOEX_PIN_READONLY		_BITUL(0)
#define MOEX_PIN_FLAGS_ALL		MOEX_PIN_READONLY

/**
 * struct moex_region_pin - MOEX_IOCTL_REGION_PIN: pin user memory.
 * @addr: in, user virtual address, page aligned.
 * @length: in, bytes, a non-zero multiple of the page size.
 * @flags: in, MOEX_PIN_* flags.
 * @handle: out, the region's handle, valid for this open file only.
 * @reserved: must be zero.
 *
 * The pages are pinned long-term (FOLL_LONGTERM), accounted against the
 * caller's RLIMIT_MEMLOCK unless it has CAP_IPC_LOCK, counted against the
 * module's max_pinned_mb, and DMA-mapped for the device's engine. A
 * writable pin of a shared mapping of a file other than shmem (memfd,
 * tmpfs) or hugetlbfs fails with -EOPNOTSUPP; more than 2^32 - 1 pages
 * with -E2BIG. A MOEX_PIN_READONLY pin takes the pages as they are: memory
 * written after it may get new pages the region does not see (anonymous
 * memory never written is the shared zero page), so fill it first.
 */
struct moex_region_pin {
	__u64 addr;
	__u64 length;
	__u32 flags;
	__u32 handle;
	__u64 reserved[2];
};

/**
 * struct moex_region_unpin - MOEX_IOCTL_REGION_UNPIN: drop a handle.
 * @handle: in, a handle returned by REGION_PIN on this file.
 * @flags: in, must be 0.
 * @reserved: must be zero.
 *
 * The handle is gone at once; the pages stay pinned while an exported
 * dma-buf of the region is still referenced, or a COPY that uses the
 * region is still running (an io_uring COPY, or the COPY of an ioctl a
 * fatal signal ended).
 */
struct moex_region_unpin {
	__u32 handle;
	__u32 flags;
	__u64 reserved[2];
};

/* Flags reported in &moex_region_info.region_flags. */
#define MOEX_REGION_READONLY		_BITUL(0) /* pinned with READONLY */
#define MOEX_REGION_EXPORTED		_BITUL(1) /* a dma-buf was exported */

/**
 * struct moex_region_info - MOEX_IOCTL_REGION_INFO: describe a region.
 * @handle: in, the region's handle.
 * @flags: in, must be 0.
 * @addr: out, the user address the region was pinned at.
 * @length: out, bytes.
 * @pages: out, number of pinned base pages.
 * @sg_segments: out, physically contiguous segments in the region's
 *	scatter list (huge pages coalesce to few segments).
 * @dma_segments: out, segments after DMA mapping for the engine's device
 *	(an IOMMU may merge further); 0 when the engine does not DMA.
 * @region_flags: out, MOEX_REGION_* flags.
 * @pad: out, zero.
 * @reserved: must be zero.
 */
struct moex_region_info {
	__u32 handle;
	__u32 flags;
	__u64 addr;
	__u64 length;
	__u64 pages;
	__u32 sg_segments;
	__u32 dma_segments;
	__u32 region_flags;
	__u32 pad;
	__u64 reserved[2];
};

/**
 * struct moex_region_export - MOEX_IOCTL_REGION_EXPORT: export a dma-buf.
 * @handle: in, the region's handle.
 * @flags: in, must be 0.
 * @fd: out, a new dma-buf file descriptor, opened O_CLOEXEC; O_RDWR, or
 *	O_RDONLY for a region pinned with %MOEX_PIN_READONLY.
 * @pad: must be zero.
 * @reserved: must be zero.
 *
 * The dma-buf holds the region: its pages stay pinned and accounted until
 * the last reference to the dma-buf goes, even after REGION_UNPIN or after
 * the moex file is closed. Importers attach and map it, and the CPU mmaps
 * it (MAP_SHARED). For a region pinned with %MOEX_PIN_READONLY only
 * DMA_TO_DEVICE mappings and read-only mmaps are allowed: a bidirectional
 * map fails with -EACCES, so importers that map every attachment both
 * ways (as amdgpu's dynamic attach does on 6.1) need a writable region.
 */
struct moex_region_export {
	__u32 handle;
	__u32 flags;
	__u32 fd;
	__u32 pad;
	__u64 reserved[2];
};

/*
 * Flags for &moex_copy.flags, io_uring only (the ioctl refuses them with
 * -EINVAL): one side of the copy is an io_uring registered buffer instead
 * of a region. The SQE carries IORING_URING_CMD_FIXED and the buffer's
 * index in sqe->buf_index; that side's handle must be 0 and its offset
 * field is a user address inside the registered buffer. At most one of
 * the two flags.
 */
#define MOEX_COPY_SRC_FIXED		_BITUL(0)
#define MOEX_COPY_DST_FIXED		_BITUL(1)
#define MOEX_COPY_FLAGS_ALL		(MOEX_COPY_SRC_FIXED | MOEX_COPY_DST_FIXED)

/**
 * struct moex_copy - MOEX_IOCTL_COPY: copy bytes between two regions.
 * @src_handle: in, the source region's handle (0 with %MOEX_COPY_SRC_FIXED).
 * @dst_handle: in, the destination region's handle, not read-only (0 with
 *	%MOEX_COPY_DST_FIXED).
 * @src_offset: in, byte offset into the source region; with
 *	%MOEX_COPY_SRC_FIXED the user address of the first byte, inside the
 *	registered buffer.
 * @dst_offset: in, byte offset into the destination region; with
 *	%MOEX_COPY_DST_FIXED the user address inside the registered buffer.
 * @length: in, bytes to copy, non-zero; offsets and length need no
 *	alignment, but both ranges must lie inside their regions (or
 *	registered buffer).
 * @flags: in, 0 or one MOEX_COPY_*_FIXED flag (io_uring only).
 * @pad: must be zero.
 * @reserved: must be zero.
 *
 * The copy runs on the device's engine and the ioctl returns when it is
 * done. Source and destination may be the same region if the ranges do not
 * overlap. A copy with a fixed buffer runs on the CPU, in the submitter's
 * context, on every engine.
 */
struct moex_copy {
	__u32 src_handle;
	__u32 dst_handle;
	__u64 src_offset;
	__u64 dst_offset;
	__u64 length;
	__u32 flags;
	__u32 pad;
	__u64 reserved[2];
};

/**
 * struct moex_nop - MOEX_IOCTL_NOP: do nothing, for measuring the command
 *	path and probing the driver.
 * @flags: in, must be 0.
 * @pad: must be zero.
 * @reserved: must be zero.
 */
struct moex_nop {
	__u32 flags;
	__u32 pad;
	__u64 reserved[2];
};

/**
 * struct moex_uring_cmd - the command area of a 128-byte io_uring SQE.
 * @payload: in, the command's payload struct, the same as the ioctl's, at
 *	offset 0; the bytes after the struct must be zero.
 * @out_addr: in, user address the command's output is copied to when it
 *	succeeds (the whole payload struct, as the ioctl returns it), or 0.
 *	Only for the commands that have output (INFO, REGION_PIN,
 *	REGION_INFO, REGION_EXPORT); must be 0 for the others. The driver
 *	zeroes the area first and fails the command with -EFAULT before
 *	doing anything if it cannot.
 *
 * An IORING_OP_URING_CMD SQE on /dev/moexN carries cmd_op = the ioctl
 * number (MOEX_IOCTL_*) and this struct in sqe->cmd; the ring must be set
 * up with IORING_SETUP_SQE128 (a 64-byte SQE has only 16 bytes of command
 * area: -EINVAL). The driver reads the 80 bytes once, so zero all of them
 * before filling an SQE (io_uring_get_sqe() does not clear a reused SQE).
 * Other SQE fields are not available to the driver (io_uring copies only
 * the command area when it defers a request). IORING_SETUP_IOPOLL rings
 * are refused by io_uring (-EOPNOTSUPP).
 *
 * The CQE's res is the result: -errno on failure (the ioctl's errno), else
 * the new handle for REGION_PIN (handles are 1 to INT_MAX), the new dma-buf
 * fd for REGION_EXPORT, and 0 for the other commands. With
 * IORING_SETUP_CQE32 the first extra word (big_cqe[0]) is 0. COPY
 * completes asynchronously on engines that DMA; the other commands
 * complete during submission (REGION_PIN is moved to io_uring's worker
 * threads, as it may take long).
 */
struct moex_uring_cmd {
	__u64 payload[9];
	__u64 out_addr;
};

#define MOEX_IOC_MAGIC		0xCE

#define MOEX_IOCTL_INFO		_IOWR(MOEX_IOC_MAGIC, 0x00, struct moex_info)
#define MOEX_IOCTL_REGION_PIN	_IOWR(MOEX_IOC_MAGIC, 0x01, struct moex_region_pin)
#define MOEX_IOCTL_REGION_UNPIN	_IOW(MOEX_IOC_MAGIC, 0x02, struct moex_region_unpin)
#define MOEX_IOCTL_REGION_INFO	_IOWR(MOEX_IOC_MAGIC, 0x03, struct moex_region_info)
#define MOEX_IOCTL_REGION_EXPORT _IOWR(MOEX_IOC_MAGIC, 0x04, struct moex_region_export)
#define MOEX_IOCTL_COPY		_IOW(MOEX_IOC_MAGIC, 0x05, struct moex_copy)
#define MOEX_IOCTL_NOP		_IOW(MOEX_IOC_MAGIC, 0x06, struct moex_nop)

#endif /* _UAPI_LINUX_MOEX_H */
