/* SPDX-License-Identifier: GPL-2.0 */
/*
 * moex.ko internal interfaces: devices, regions, copy engines, stats.
 *
 * Object lifetimes:
 *  - struct moex_dev lives as long as its embedded struct device (get_device
 *    and put_device through moex_dev_get/moex_dev_put). The char device, every
 *    open file and every region hold a reference, so a region exported as
 *    dma-buf can outlive the file that pinned it.
 *  - struct moex_region is refcounted (kref). An open file's handle table,
 *    each exported dma-buf and each copy in flight hold a reference. The
 *    pages are unpinned, unmapped and unaccounted when the last one goes.
 */
#ifndef _MOEX_DRV_H
#define _MOEX_DRV_H

#include <linux/atomic.h>
#include <linux/cdev.h>
#include <linux/device.h>
#include <linux/dma-direction.h>
#include <linux/kref.h>
#include <linux/list.h>
#include <linux/mm_types.h>
#include <linux/mutex.h>
#include <linux/rwsem.h>
#include <linux/scatterlist.h>
#include <linux/types.h>
#include <linux/xarray.h>

#include "../uapi/linux/moex.h"

#define MOEX_NAME		"moex"
#define MOEX_MAX_DEVICES	64

/**
 * struct moex_stats - per-device counters shown in sysfs stats/.
 * @pinned_bytes: bytes pinned now (regions held by a dma-buf included).
 * @pinned_regions: regions pinned now.
 * @pin_calls: successful REGION_PINs.
 * @pin_failures: REGION_PINs that failed after validation.
 * @unpin_calls: successful REGION_UNPINs.
 * @copy_calls: COPYs that completed successfully.
 * @copy_bytes: bytes those copies moved.
 * @copy_failures: COPYs that failed after validation.
 * @dmabuf_exports: successful REGION_EXPORTs.
 * @open_files: open files of the device.
 *
 * All are atomics so that each file reads an exact value while commands run
 * concurrently. Failures of argument validation count nowhere; failures
 * after validation (accounting, pinning, mapping, the engine) count in
 * pin_failures or copy_failures.
 */
struct moex_stats {
	atomic64_t pinned_bytes;
	atomic64_t pinned_regions;
	atomic64_t pin_calls;
	atomic64_t pin_failures;
	atomic64_t unpin_calls;
	atomic64_t copy_calls;
	atomic64_t copy_bytes;
	atomic64_t copy_failures;
	atomic64_t dmabuf_exports;
	atomic64_t open_files;
};

struct moex_engine;
struct moex_region;

/**
 * struct moex_copy_req - one copy handed to an engine.
 * @src: source region (the caller holds a reference).
 * @dst: destination region (the caller holds a reference).
 * @src_off: byte offset into @src.
 * @dst_off: byte offset into @dst.
 * @len: bytes, non-zero; both ranges were checked against the regions.
 * @complete: called exactly once when the copy is done, with 0 or a
 *	negative errno, from any context (process, IRQ, or inside submit).
 * @node: list link owned by the engine while the request is queued.
 */
struct moex_copy_req {
	struct moex_region *src;
	struct moex_region *dst;
	u64 src_off;
	u64 dst_off;
	u64 len;
	void (*complete)(struct moex_copy_req *req, int err);
	struct list_head node;
};

/**
 * struct moex_engine_ops - what a copy engine implements.
 * @submit: start @req. Return 0 and call req->complete exactly once later
 *	(or before returning), or return a negative errno and never call it.
 * @destroy: wait for every submitted request to complete, then free the
 *	engine. Called once, after the last submit.
 */
struct moex_engine_ops {
	int (*submit)(struct moex_engine *eng, struct moex_copy_req *req);
	void (*destroy)(struct moex_engine *eng);
};

/**
 * struct moex_engine - a copy engine behind a moex device.
 * @ops: the engine's operations.
 * @id: MOEX_ENGINE_*.
 * @name: short name shown in sysfs and MOEX_IOCTL_INFO ("cpu", "edu", ...).
 * @dma_dev: the device regions are DMA-mapped for, or NULL for an engine
 *	that copies with the CPU. Engines that set it hold a reference on it.
 * @dma_bits: DMA address width of @dma_dev, 0 without one.
 */
struct moex_engine {
	const struct moex_engine_ops *ops;
	u32 id;
	const char *name;
	struct device *dma_dev;
	u32 dma_bits;
};

/**
 * struct moex_dev - one /dev/moexN.
 * @index: N in moexN.
 * @cdev: the character device.
 * @dev: the class device (/sys/class/moex/moexN); its refcount is the
 *	lifetime of this struct, see the note at the top of this file.
 * @engine_lock: protects @engine. Commands hold it for read while they use
 *	the engine (REGION_PIN also while it DMA-maps for the engine's device);
 *	moex_dev_remove() holds it for write to detach the engine.
 * @engine: the copy engine; NULL once the device was removed.
 * @map_lock: protects @mapped and, for every region of this device, its
 *	@dma_dev and the DMA mapping of its @sgt. Taken after @engine_lock
 *	where both are held.
 * @mapped: the regions DMA-mapped for the engine's device, linked by
 *	moex_region.map_node; moex_dev_remove() unmaps them all, so no mapping
 *	outlives the device (regions stay pinned and usable by the CPU).
 * @stats: counters, see struct moex_stats.
 */
struct moex_dev {
	int index;
	struct cdev cdev;
	struct device dev;
	struct rw_semaphore engine_lock;
	struct moex_engine *engine;
	struct mutex map_lock;	/* @mapped, the regions' DMA mappings */
	struct list_head mapped;
	struct moex_stats stats;
};

/* The locks and lists of a new struct moex_dev (moex_dev_add(), KUnit). */
static inline void moex_dev_init_locks(struct moex_dev *mdev)
{
	init_rwsem(&mdev->engine_lock);
	mutex_init(&mdev->map_lock);
	INIT_LIST_HEAD(&mdev->mapped);
}

/**
 * struct moex_region - a pinned, accounted and DMA-mapped user range.
 * @kref: see the lifetime note at the top of this file.
 * @mdev: the device it was pinned on (holds a reference).
 * @owner_mm: the mm whose pinned_vm was charged (always, as
 *	ib_umem_get() does; CAP_IPC_LOCK only skips the RLIMIT_MEMLOCK check);
 *	holds an mmgrab() reference.
 * @addr: user address it was pinned at.
 * @length: bytes.
 * @npages: pinned base pages (@length >> PAGE_SHIFT).
 * @pages: the pinned pages.
 * @sgt: coalesced scatter list of @pages; after DMA mapping, nents holds
 *	the mapped segments for @dma_dev.
 * @dma_dev: device @sgt is mapped for (holds a reference), NULL if none;
 *	under @mdev->map_lock (stable while the engine exists).
 * @map_node: in @mdev->mapped while @dma_dev is set.
 * @flags: MOEX_REGION_B_* bit numbers, changed with set_bit() only (a bit
 *	only ever goes from 0 to 1), so no lock is needed.
 * @serial: unique among all regions since the module loaded, set before
 *	the region is published and never changed: names this region where
 *	its handle, or its address once freed, may name another
 *	(moex_region_pin_undo()).
 */
struct moex_region {
	struct kref kref;
	struct moex_dev *mdev;
	struct mm_struct *owner_mm;
	u64 addr;
	u64 length;
	unsigned long npages;
	struct page **pages;
	struct sg_table sgt;
	struct device *dma_dev;
	struct list_head map_node;
	unsigned long flags;
	u64 serial;
};

/* Region flag bits in moex_region.flags (set_bit/test_bit numbers). */
#define MOEX_REGION_B_READONLY	0
#define MOEX_REGION_B_EXPORTED	1

/**
 * struct moex_file - per-open-file state: the handle namespace.
 * @mdev: the device (holds a reference).
 * @regions: handle -> struct moex_region *, each entry holds a reference.
 *	The xarray's own lock serialises insert and erase.
 */
struct moex_file {
	struct moex_dev *mdev;
	struct xarray regions;
};

/**
 * moex_all_zero() - check a payload's reserved words.
 * @p: the first word.
 * @n: how many.
 *
 * Return: true when all @n words are zero.
 */
static inline bool moex_all_zero(const u64 *p, size_t n)
{
	while (n--)
		if (*p++)
			return false;
	return true;
}

/**
 * union moex_payload - room for any command's payload struct.
 * @info: MOEX_IOCTL_INFO.
 * @pin: MOEX_IOCTL_REGION_PIN.
 * @unpin: MOEX_IOCTL_REGION_UNPIN.
 * @region_info: MOEX_IOCTL_REGION_INFO.
 * @exp: MOEX_IOCTL_REGION_EXPORT.
 * @copy: MOEX_IOCTL_COPY.
 * @nop: MOEX_IOCTL_NOP.
 *
 * Every struct fits struct moex_uring_cmd's payload (checked at build time).
 */
union moex_payload {
	struct moex_info info;
	struct moex_region_pin pin;
	struct moex_region_unpin unpin;
	struct moex_region_info region_info;
	struct moex_region_export exp;
	struct moex_copy copy;
	struct moex_nop nop;
};

/**
 * union moex_uring_area - the local copy of an SQE's command area.
 * @words: as read from the SQE, word by word.
 * @area: the uapi's view: payload words and out_addr.
 * @p: the payload as a command's struct: it starts the area, and every
 *	payload struct is a whole number of words (checked in uring.c).
 */
union moex_uring_area {
	u64 words[sizeof(struct moex_uring_cmd) / sizeof(u64)];
	struct moex_uring_cmd area;
	union moex_payload p;
};

/**
 * moex_cap_bytes() - the module-wide cap on pinned memory, in bytes.
 * @mb: the max_pinned_mb module parameter.
 *
 * Return: @mb MiB as a 64-bit byte count; 0 means no cap.
 */
static inline u64 moex_cap_bytes(unsigned int mb)
{
	return (u64)mb << 20;
}

/*
 * Functions the KUnit suites (driver/kunit/, built into moex.ko with
 * `make MOEX_KUNIT=1`) call besides the ones declared below: static in a
 * normal build, visible to the rest of the module in a KUnit build.
 */
#ifdef MOEX_KUNIT
#define MOEX_STATIC_UNLESS_KUNIT
struct mm_struct;
int moex_pin_check(const struct moex_region_pin *arg);
struct moex_region *moex_region_alloc(const struct moex_region_pin *arg);
int moex_charge(struct moex_region *r, struct mm_struct *mm,
		unsigned long memlock);
void moex_uncharge(struct moex_region *r);
int moex_region_build_sgt(struct moex_region *r, unsigned int max_segment);
int moex_handle_alloc(struct moex_file *mf, struct moex_region *r,
		      u32 *handle);
bool moex_in_range(u64 off, u64 len, u64 size);
int moex_copy_check_regions(const struct moex_copy *arg,
			    struct moex_region *src, struct moex_region *dst);
int moex_uring_decode(const u64 *sqe_words, unsigned int nr, bool sqe128,
		      union moex_uring_area *a);
struct page **moex_pages_alloc(unsigned long npages, size_t kv_max);
struct dma_buf_attachment;
struct sg_table *moex_dmabuf_map(struct dma_buf_attachment *attach,
				 enum dma_data_direction dir);
void moex_dmabuf_unmap(struct dma_buf_attachment *attach,
		       struct sg_table *sgt, enum dma_data_direction dir);
#else
#define MOEX_STATIC_UNLESS_KUNIT static
#endif

/*
 * The longest sg segment of a region (sg lengths are u32); a device may
 * take less.
 */
#define MOEX_MAX_SEGMENT	(UINT_MAX & PAGE_MASK)

/* main.c: devices and the command table shared by ioctl and uring_cmd */
extern unsigned int moex_max_pinned_mb;
extern struct workqueue_struct *moex_wq;	/* drained at module exit */
struct moex_dev *moex_dev_add(struct device *parent, struct moex_engine *eng);
void moex_dev_remove(struct moex_dev *mdev);
void moex_dev_put(struct moex_dev *mdev);
void moex_dev_get(struct moex_dev *mdev);
bool moex_cmd_known(unsigned int nr);
int moex_cmd_run(struct moex_file *mf, unsigned int nr, void *payload,
		 int (*reply)(void *ctx, const void *payload, size_t size),
		 void *ctx);

/* region.c: pinning */
int moex_region_pin(struct moex_file *mf, struct moex_region_pin *arg,
		    u64 *serial);
int moex_region_unpin(struct moex_file *mf, struct moex_region_unpin *arg);
void moex_region_pin_undo(struct moex_file *mf, u32 handle, u64 serial);
int moex_region_info(struct moex_file *mf, struct moex_region_info *arg);
struct moex_region *moex_region_lookup(struct moex_file *mf, u32 handle);
void moex_region_get(struct moex_region *r);
void moex_region_put(struct moex_region *r);
void moex_file_release_regions(struct moex_file *mf);
u64 moex_pinned_total(void);
void moex_dev_unmap_all(struct moex_dev *mdev);

/**
 * struct moex_dma_cursor - walks a region's DMA-mapped segments.
 * @sg: current mapped segment.
 * @left: mapped segments from @sg to the end, @sg included.
 * @seg_off: byte offset into @sg of the current position.
 */
struct moex_dma_cursor {
	struct scatterlist *sg;
	unsigned int left;
	u64 seg_off;
};

int moex_dma_cursor_init(struct moex_dma_cursor *c, struct moex_region *r,
			 u64 offset);
dma_addr_t moex_dma_cursor_addr(struct moex_dma_cursor *c, u64 *contig);
void moex_dma_cursor_advance(struct moex_dma_cursor *c, u64 bytes);
u64 moex_dma_chunk(struct moex_dma_cursor *sc, struct moex_dma_cursor *dc,
		   u64 left, u64 max, dma_addr_t *s, dma_addr_t *d);
unsigned int moex_dma_max_segment(struct device *dev);
void moex_dma_sync_piece(struct moex_region *r, dma_addr_t addr, u64 len,
			 bool for_device);
void moex_dma_sync_range(struct moex_region *r, u64 off, u64 len,
			 bool for_device);

/* copy.c: the COPY command */
int moex_copy_check(const struct moex_copy *arg, u32 flags);
int moex_copy(struct moex_file *mf, struct moex_copy *arg);
struct moex_copy_op;
int moex_copy_async(struct moex_file *mf, const struct moex_copy *arg,
		    void (*notify)(void *cookie, struct moex_copy_op *op,
				   int err),
		    void *cookie);
void moex_copy_op_put(struct moex_copy_op *op);
struct iov_iter;
int moex_copy_fixed(struct moex_file *mf, const struct moex_copy *arg,
		    struct iov_iter *iter);

/* uring.c: the io_uring passthrough commands */
struct io_uring_cmd;
int moex_uring_cmd(struct io_uring_cmd *cmd, unsigned int issue_flags);

/*
 * dmabuf.c: export, in two steps so the fd is installed only once the
 * reply reached user space
 */
struct dma_buf;
int moex_export_prepare(struct moex_file *mf, struct moex_region_export *arg,
			struct dma_buf **dmabuf);
void moex_export_commit(struct moex_file *mf, struct moex_region_export *arg,
			struct dma_buf *dmabuf);
void moex_export_abort(struct moex_region_export *arg, struct dma_buf *dmabuf);

/* engines */
struct moex_engine *moex_engine_cpu_create(void);
void moex_cpu_copy(struct moex_copy_req *req);
struct moex_engine *moex_engine_dmaengine_create(void);
int moex_edu_register(void);
void moex_edu_unregister(void);

/* sysfs.c */
extern const struct attribute_group *moex_dev_groups[];

#endif /* _MOEX_DRV_H */
