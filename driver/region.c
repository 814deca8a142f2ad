// SPDX-License-Identifier: GPL-2.0
/*
 * moex regions: long-term pinned, accounted, DMA-mapped user memory.
 *
 * REGION_PIN follows ib_umem_get() (drivers/infiniband/core/umem.c):
 * check the arguments, account the pages (the module-wide max_pinned_mb
 * cap, then the caller's mm->pinned_vm against RLIMIT_MEMLOCK unless it has
 * CAP_IPC_LOCK), pin with FOLL_LONGTERM in chunks, build a coalesced sg
 * table, DMA-map it for the engine's device, publish a handle. Every step
 * is undone in reverse order on failure, and by moex_region_release() when
 * the last reference goes.
 *
 * Handles live in the open file's xarray (struct moex_file.regions): a
 * process can only name its own regions.
 */
#include <linux/dma-mapping.h>
#include <linux/mm.h>
#include <linux/overflow.h>
#include <linux/sched/mm.h>
#include <linux/sched/signal.h>
#include <linux/shmem_fs.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/vmalloc.h>

#include "moex.h"

/* Pages pinned per pin_user_pages_fast() call: one page of page pointers. */
#define MOEX_PIN_CHUNK	(PAGE_SIZE / sizeof(struct page *))

/* Bytes pinned by all moex devices, checked against max_pinned_mb. */
static atomic64_t moex_pinned_all = ATOMIC64_INIT(0);

/* The last struct moex_region.serial handed out. */
static atomic64_t moex_region_serials = ATOMIC64_INIT(0);

u64 moex_pinned_total(void)
{
	return atomic64_read(&moex_pinned_all);
}

MOEX_STATIC_UNLESS_KUNIT int moex_pin_check(const struct moex_region_pin *arg)
{
	if (arg->flags & ~MOEX_PIN_FLAGS_ALL ||
	    !moex_all_zero(arg->reserved, ARRAY_SIZE(arg->reserved)))
		return -EINVAL;
	if (!arg->length || !PAGE_ALIGNED(arg->addr) ||
	    !PAGE_ALIGNED(arg->length))
		return -EINVAL;
	if (arg->addr + arg->length < arg->addr)
		return -EOVERFLOW;
	if (!access_ok(u64_to_user_ptr(arg->addr), arg->length))
		return -EFAULT;
	/* the sg table API counts a region's pages in an unsigned int */
	if (arg->length >> PAGE_SHIFT > UINT_MAX)
		return -E2BIG;
	return 0;
}

/* A new region for @arg: not charged, pinned or published yet. */
MOEX_STATIC_UNLESS_KUNIT struct moex_region *
moex_region_alloc(const struct moex_region_pin *arg)
{
	struct moex_region *r = kzalloc(sizeof(*r), GFP_KERNEL);

	if (!r)
		return NULL;
	kref_init(&r->kref);
	INIT_LIST_HEAD(&r->map_node);
	r->addr = arg->addr;
	r->length = arg->length;
	r->npages = arg->length >> PAGE_SHIFT;
	r->serial = atomic64_inc_return(&moex_region_serials);
	if (arg->flags & MOEX_PIN_READONLY)
		set_bit(MOEX_REGION_B_READONLY, &r->flags);
	return r;
}

/*
 * Charge the module cap and @mm's pinned_vm (the caller's mm, with its
 * RLIMIT_MEMLOCK in bytes as @memlock); undone by uncharge.
 */
MOEX_STATIC_UNLESS_KUNIT int moex_charge(struct moex_region *r,
					 struct mm_struct *mm,
					 unsigned long memlock)
{
	u64 cap = moex_cap_bytes(READ_ONCE(moex_max_pinned_mb));
	unsigned long limit;
	s64 pinned, all;

	all = atomic64_add_return(r->length, &moex_pinned_all);
	if (cap && all > cap) {
		atomic64_sub(r->length, &moex_pinned_all);
		return -ENOMEM;
	}

	limit = memlock >> PAGE_SHIFT;
	pinned = atomic64_add_return(r->npages, &mm->pinned_vm);
	if (pinned > limit && !capable(CAP_IPC_LOCK)) {
		atomic64_sub(r->npages, &mm->pinned_vm);
		atomic64_sub(r->length, &moex_pinned_all);
		return -ENOMEM;
	}
	mmgrab(mm);
	r->owner_mm = mm;
	return 0;
}

MOEX_STATIC_UNLESS_KUNIT void moex_uncharge(struct moex_region *r)
{
	atomic64_sub(r->npages, &r->owner_mm->pinned_vm);
	mmdrop(r->owner_mm);
	r->owner_mm = NULL;
	atomic64_sub(r->length, &moex_pinned_all);
}

/*
 * Which memory a writable pin takes: anonymous memory (private mappings
 * included: the write fault gives them anonymous copies), shmem (memfd,
 * tmpfs, SysV shm) and hugetlbfs, not the page cache of other files. A
 * file system's writeback does not expect its pages dirtied behind its
 * back (unpinning one dirty can warn, as ext4 does); Linux 6.5 refuses
 * such long-term pins in GUP itself for the file systems that track dirty
 * pages, moex for all but those two.
 *
 * First by the VMAs, before any page is faulted in (a refused pin must not
 * allocate a sparse file's blocks), then by the pinned pages themselves,
 * which a concurrent mmap() cannot change.
 */
static int moex_pin_vmas_rw_ok(struct moex_region *r)
{
	struct mm_struct *mm = current->mm;
	struct vm_area_struct *vma;
	int ret = 0;

	VMA_ITERATOR(vmi, mm, r->addr);
	if (mmap_read_lock_killable(mm))
		return -EINTR;
	for_each_vma_range(vmi, vma, r->addr + r->length) {
		/* (GUP refuses VM_IO and VM_PFNMAP itself: EFAULT) */
		if (vma->vm_file && (vma->vm_flags & VM_SHARED) &&
		    !(vma->vm_flags & (VM_IO | VM_PFNMAP)) &&
		    !is_vm_hugetlb_page(vma) &&
		    !shmem_mapping(vma->vm_file->f_mapping)) {
			ret = -EOPNOTSUPP;
			break;
		}
	}
	mmap_read_unlock(mm);
	return ret;
}

static bool moex_page_pinnable_rw(struct page *page)
{
	struct folio *folio = page_folio(page);
	struct address_space *mapping;

	if (folio_test_anon(folio) || folio_test_hugetlb(folio))
		return true;
	mapping = folio_mapping(folio);
	return !mapping || shmem_mapping(mapping);
}

/*
 * The array of a region's @npages page pointers. kvmalloc() refuses more
 * than INT_MAX bytes (with 4 KiB pages, a region of 1 TiB), which a host
 * that large may well pin for one model's weights; vmalloc() has no such
 * limit, so past @kv_max bytes (INT_MAX; less in KUnit, to take this path)
 * the array comes from it. kvfree() frees either.
 */
MOEX_STATIC_UNLESS_KUNIT struct page **
moex_pages_alloc(unsigned long npages, size_t kv_max)
{
	size_t size = array_size(npages, sizeof(struct page *));

	if (size > kv_max)
		return __vmalloc(size, GFP_KERNEL | __GFP_NOWARN);
	return kvmalloc(size, GFP_KERNEL | __GFP_NOWARN);
}

static int moex_pin_pages(struct moex_region *r)
{
	unsigned int gup = FOLL_LONGTERM;
	unsigned long done = 0, i;
	int n;

	if (!test_bit(MOEX_REGION_B_READONLY, &r->flags)) {
		gup |= FOLL_WRITE;
		n = moex_pin_vmas_rw_ok(r);
		if (n)
			return n;
	}

	while (done < r->npages) {
		n = pin_user_pages_fast(r->addr + done * PAGE_SIZE,
					min_t(unsigned long, r->npages - done,
					      MOEX_PIN_CHUNK),
					gup, r->pages + done);
		if (n <= 0) {
			unpin_user_pages(r->pages, done);
			return n ? n : -EFAULT;
		}
		done += n;
		for (i = done - n; (gup & FOLL_WRITE) && i < done; i++) {
			if (!moex_page_pinnable_rw(r->pages[i])) {
				unpin_user_pages(r->pages, done);
				return -EOPNOTSUPP;
			}
		}
		if (fatal_signal_pending(current)) {
			unpin_user_pages(r->pages, done);
			return -EINTR;
		}
		cond_resched();
	}
	return 0;
}

static enum dma_data_direction moex_region_dir(struct moex_region *r)
{
	return test_bit(MOEX_REGION_B_READONLY, &r->flags) ?
		DMA_TO_DEVICE : DMA_BIDIRECTIONAL;
}

/*
 * The sg table of @r's pages: physically contiguous pages become one
 * segment of at most @max_segment bytes, so a 2 MiB huge page is one entry.
 */
MOEX_STATIC_UNLESS_KUNIT int moex_region_build_sgt(struct moex_region *r,
						   unsigned int max_segment)
{
	return sg_alloc_table_from_pages_segment(&r->sgt, r->pages, r->npages,
						 0, r->length, max_segment,
						 GFP_KERNEL);
}

/**
 * moex_dma_max_segment() - the longest sg segment @dev can map, in bytes.
 * @dev: the device the pages are mapped for.
 *
 * The shorter of the device's segment limit and what one mapping can take:
 * where dma-direct bounces through swiotlb (swiotlb=force, confidential
 * guests, memory beyond the device's DMA mask), one bounce buffer is at most
 * 256 KiB, and swiotlb warns and fails a longer segment. Page aligned, at
 * least a page.
 *
 * Return: the segment limit for sg_alloc_table_from_pages_segment().
 */
unsigned int moex_dma_max_segment(struct device *dev)
{
	u64 max = min_t(u64, dma_get_max_seg_size(dev),
			dma_max_mapping_size(dev));

	return clamp_t(u64, max & PAGE_MASK, PAGE_SIZE, MOEX_MAX_SEGMENT);
}

/*
 * Build the sg table and map it for the engine's device. No segment is
 * longer than the device takes (DMA-API debugging checks it; an IOMMU may
 * merge segments up to it). The engine lock is held throughout, so
 * moex_dev_remove() either finds the region in mdev->mapped or the pin
 * fails with -ENODEV.
 */
static int moex_map_pages(struct moex_region *r, struct moex_dev *mdev)
{
	unsigned int max_segment = MOEX_MAX_SEGMENT;
	struct device *dma_dev;
	int ret = -ENODEV;

	down_read(&mdev->engine_lock);
	if (!mdev->engine)
		goto out;
	dma_dev = mdev->engine->dma_dev;
	if (dma_dev)
		max_segment = moex_dma_max_segment(dma_dev);
	ret = moex_region_build_sgt(r, max_segment);
	if (ret || !dma_dev)
		goto out;
	/*
	 * The same memory may be pinned twice, or be mapped for an importer
	 * of the region's dma-buf too: DMA-API debugging refuses overlapping
	 * mappings unless they skip the CPU syncs. And the pages belong to
	 * the CPU between copies: the engines sync each piece they read or
	 * write, around the DMA (moex_dma_sync_piece()), and nothing else
	 * syncs this mapping, neither here nor at the unmap.
	 */
	ret = dma_map_sgtable(dma_dev, &r->sgt, moex_region_dir(r),
			      DMA_ATTR_SKIP_CPU_SYNC | DMA_ATTR_NO_WARN);
	/*
	 * dma-direct says -EIO when a page is out of the device's reach and
	 * swiotlb cannot bounce it (its pool is full); an IOMMU out of
	 * addresses says -ENOMEM. Both mean the device cannot map this much,
	 * which user space can ask for at will: NO_WARN keeps swiotlb from
	 * logging "buffer is full" for it.
	 */
	if (ret == -EIO)
		ret = -ENOMEM;
	if (ret) {
		sg_free_table(&r->sgt);
		goto out;
	}
	mutex_lock(&mdev->map_lock);
	r->dma_dev = get_device(dma_dev);
	list_add(&r->map_node, &mdev->mapped);
	mutex_unlock(&mdev->map_lock);
out:
	up_read(&mdev->engine_lock);
	return ret;
}

/* Undo @r's DMA mapping, if it has one. Under mdev->map_lock. */
static void moex_dma_unmap_locked(struct moex_region *r)
{
	lockdep_assert_held(&r->mdev->map_lock);
	if (!r->dma_dev)
		return;
	/* no sync: the engines synced what they wrote (see the map) */
	dma_unmap_sgtable(r->dma_dev, &r->sgt, moex_region_dir(r),
			  DMA_ATTR_SKIP_CPU_SYNC);
	put_device(r->dma_dev);
	r->dma_dev = NULL;
	list_del_init(&r->map_node);
}

static void moex_unmap_pages(struct moex_region *r)
{
	mutex_lock(&r->mdev->map_lock);
	moex_dma_unmap_locked(r);
	mutex_unlock(&r->mdev->map_lock);
	sg_free_table(&r->sgt);
}

/**
 * moex_dev_unmap_all() - undo the DMA mappings of all of a device's regions.
 * @mdev: a device whose engine is gone (moex_dev_remove()).
 */
void moex_dev_unmap_all(struct moex_dev *mdev)
{
	struct moex_region *r, *tmp;

	mutex_lock(&mdev->map_lock);
	list_for_each_entry_safe(r, tmp, &mdev->mapped, map_node)
		moex_dma_unmap_locked(r);
	mutex_unlock(&mdev->map_lock);
}

static void moex_region_release(struct kref *kref)
{
	struct moex_region *r = container_of(kref, struct moex_region, kref);
	struct moex_dev *mdev = r->mdev;

	moex_unmap_pages(r);
	unpin_user_pages_dirty_lock(r->pages, r->npages,
				    !test_bit(MOEX_REGION_B_READONLY, &r->flags));
	kvfree(r->pages);
	moex_uncharge(r);

	atomic64_sub(r->length, &mdev->stats.pinned_bytes);
	atomic64_dec(&mdev->stats.pinned_regions);
	kfree(r);
	moex_dev_put(mdev);
}

void moex_region_get(struct moex_region *r)
{
	kref_get(&r->kref);
}

/**
 * moex_region_put() - drop a reference to a region.
 * @r: the region.
 *
 * The last put unmaps, unpins and uncharges, so it may sleep: call it from
 * process context only.
 */
void moex_region_put(struct moex_region *r)
{
	might_sleep();
	kref_put(&r->kref, moex_region_release);
}

/* Publish @r in @mf's namespace under a new handle, 1 to INT_MAX. */
MOEX_STATIC_UNLESS_KUNIT int moex_handle_alloc(struct moex_file *mf,
					       struct moex_region *r,
					       u32 *handle)
{
	/* 0 never names a region: a zeroed payload names none */
	return xa_alloc(&mf->regions, handle, r, XA_LIMIT(1, INT_MAX),
			GFP_KERNEL);
}

/**
 * moex_region_pin() - REGION_PIN.
 * @mf: the open file whose namespace gets the handle.
 * @arg: the payload; @arg->handle is set on success.
 * @serial: set on success to the new region's serial, for
 *	moex_region_pin_undo().
 *
 * Return: 0, or -EINVAL/-EOVERFLOW/-EFAULT/-E2BIG for bad arguments (no
 * counter moves); pin_failures moves for the rest: -ENOMEM when a limit
 * is reached, -EFAULT when an address cannot be pinned, -EOPNOTSUPP for a
 * writable pin of an ordinary file's shared mapping, -EINTR on a fatal
 * signal, -ENODEV when the device is gone, -EBUSY when the file has
 * INT_MAX regions.
 */
int moex_region_pin(struct moex_file *mf, struct moex_region_pin *arg,
		    u64 *serial)
{
	struct moex_dev *mdev = mf->mdev;
	struct moex_region *r;
	u32 handle;
	int ret;

	ret = moex_pin_check(arg);
	if (ret)
		return ret;

	ret = -ENOMEM;
	r = moex_region_alloc(arg);
	if (!r)
		goto err_count;
	moex_dev_get(mdev);
	r->mdev = mdev;

	ret = moex_charge(r, current->mm, rlimit(RLIMIT_MEMLOCK));
	if (ret)
		goto err_put;

	/* More than the host's memory can never be pinned. */
	ret = -ENOMEM;
	if (r->npages > totalram_pages())
		goto err_uncharge;
	r->pages = moex_pages_alloc(r->npages, INT_MAX);
	if (!r->pages)
		goto err_uncharge;

	ret = moex_pin_pages(r);
	if (ret)
		goto err_pages;

	ret = moex_map_pages(r, mdev);
	if (ret)
		goto err_unpin;

	/*
	 * Counted before it is published: an UNPIN of the new handle racing
	 * with this finds the counts that moex_region_release() takes back.
	 */
	atomic64_add(r->length, &mdev->stats.pinned_bytes);
	atomic64_inc(&mdev->stats.pinned_regions);
	ret = moex_handle_alloc(mf, r, &handle);
	if (ret)
		goto err_uncount;

	/* Published: from here on moex_region_release() undoes everything. */
	atomic64_inc(&mdev->stats.pin_calls);
	arg->handle = handle;
	*serial = r->serial;
	return 0;

err_uncount:
	atomic64_dec(&mdev->stats.pinned_regions);
	atomic64_sub(r->length, &mdev->stats.pinned_bytes);
	moex_unmap_pages(r);
err_unpin:
	unpin_user_pages(r->pages, r->npages);
err_pages:
	kvfree(r->pages);
err_uncharge:
	moex_uncharge(r);
err_put:
	moex_dev_put(mdev);
	kfree(r);
err_count:
	atomic64_inc(&mdev->stats.pin_failures);
	return ret;
}

/**
 * moex_region_pin_undo() - take back a pin whose reply did not reach user
 *	space.
 * @mf: the open file.
 * @handle: the handle moex_region_pin() returned.
 * @serial: the serial it returned.
 *
 * The handle goes and the region is released (unless someone else already
 * holds it through that handle), and pin_calls is taken back. Only if the
 * handle still names that region: user space, which may guess the handle,
 * can UNPIN it first and another PIN can get it back; that PIN's region
 * stays.
 */
void moex_region_pin_undo(struct moex_file *mf, u32 handle, u64 serial)
{
	struct moex_region *r;

	/* the entry's reference keeps r alive while the lock is held */
	xa_lock(&mf->regions);
	r = xa_load(&mf->regions, handle);
	if (r && r->serial == serial)
		__xa_erase(&mf->regions, handle);
	else
		r = NULL;
	xa_unlock(&mf->regions);
	if (!r)
		return;
	atomic64_dec(&mf->mdev->stats.pin_calls);
	moex_region_put(r);
}

/**
 * moex_region_lookup() - find a region by handle and take a reference.
 * @mf: the open file.
 * @handle: the handle.
 *
 * Return: the region (put it with moex_region_put()), or NULL.
 */
struct moex_region *moex_region_lookup(struct moex_file *mf, u32 handle)
{
	struct moex_region *r;

	/* The xarray's entry holds a reference; erase takes the same lock. */
	xa_lock(&mf->regions);
	r = xa_load(&mf->regions, handle);
	if (r)
		moex_region_get(r);
	xa_unlock(&mf->regions);
	return r;
}

int moex_region_unpin(struct moex_file *mf, struct moex_region_unpin *arg)
{
	struct moex_region *r;

	if (arg->flags ||
	    !moex_all_zero(arg->reserved, ARRAY_SIZE(arg->reserved)))
		return -EINVAL;

	/*
	 * Never erase index 0: in an XA_FLAGS_ALLOC1 xarray that marks it
	 * free, and the next pin would get handle 0 (found by the VM fuzzer).
	 */
	if (!arg->handle)
		return -ENOENT;
	r = xa_erase(&mf->regions, arg->handle);
	if (!r)
		return -ENOENT;
	atomic64_inc(&mf->mdev->stats.unpin_calls);
	moex_region_put(r);
	return 0;
}

int moex_region_info(struct moex_file *mf, struct moex_region_info *arg)
{
	struct moex_region *r;

	if (arg->flags ||
	    !moex_all_zero(arg->reserved, ARRAY_SIZE(arg->reserved)))
		return -EINVAL;

	r = moex_region_lookup(mf, arg->handle);
	if (!r)
		return -ENOENT;

	arg->addr = r->addr;
	arg->length = r->length;
	arg->pages = r->npages;
	arg->sg_segments = r->sgt.orig_nents;
	mutex_lock(&r->mdev->map_lock);
	arg->dma_segments = r->dma_dev ? r->sgt.nents : 0;
	mutex_unlock(&r->mdev->map_lock);
	arg->region_flags = 0;
	if (test_bit(MOEX_REGION_B_READONLY, &r->flags))
		arg->region_flags |= MOEX_REGION_READONLY;
	if (test_bit(MOEX_REGION_B_EXPORTED, &r->flags))
		arg->region_flags |= MOEX_REGION_EXPORTED;
	arg->pad = 0;
	moex_region_put(r);
	return 0;
}

/* Drop every handle of a closing file; exported regions live on. */
void moex_file_release_regions(struct moex_file *mf)
{
	struct moex_region *r;
	unsigned long handle;

	xa_for_each(&mf->regions, handle, r) {
		xa_erase(&mf->regions, handle);
		moex_region_put(r);
	}
}

/* ---- DMA cursor: walk the mapped segments of a region ------------------ */

/**
 * moex_dma_cursor_init() - position a cursor in a region's DMA mapping.
 * @c: the cursor.
 * @r: a region mapped for a device (r->dma_dev set).
 * @offset: byte offset into the region.
 *
 * Return: 0, or -EINVAL if the region is not mapped or @offset is past it.
 */
int moex_dma_cursor_init(struct moex_dma_cursor *c, struct moex_region *r,
			 u64 offset)
{
	if (!r->dma_dev || offset >= r->length)
		return -EINVAL;
	c->sg = r->sgt.sgl;
	c->left = r->sgt.nents;
	c->seg_off = 0;
	moex_dma_cursor_advance(c, offset);
	return c->left ? 0 : -EINVAL;
}

/**
 * moex_dma_cursor_addr() - the DMA address at the cursor.
 * @c: the cursor, not at the end.
 * @contig: set to the bytes contiguous in DMA space from there.
 *
 * Return: the DMA address.
 */
dma_addr_t moex_dma_cursor_addr(struct moex_dma_cursor *c, u64 *contig)
{
	*contig = sg_dma_len(c->sg) - c->seg_off;
	return sg_dma_address(c->sg) + c->seg_off;
}

/**
 * moex_dma_cursor_advance() - move a cursor forward.
 * @c: the cursor.
 * @bytes: how far; moving past the last segment leaves c->left at 0.
 */
void moex_dma_cursor_advance(struct moex_dma_cursor *c, u64 bytes)
{
	c->seg_off += bytes;
	while (c->left && c->seg_off >= sg_dma_len(c->sg)) {
		c->seg_off -= sg_dma_len(c->sg);
		c->left--;
		c->sg = c->left ? sg_next(c->sg) : NULL;
	}
}

/**
 * moex_dma_sync_piece() - hand one piece of a region between CPU and engine.
 * @r: the region the piece lies in (DMA-mapped).
 * @addr: the piece's DMA address, from a cursor of @r.
 * @len: its length, within one mapped segment.
 * @for_device: true before the engine reads or writes the piece, false
 *	after the engine wrote it and before the CPU may read it.
 *
 * The pages are the CPU's between copies, so these per-piece syncs are the
 * only ones of the engine's mapping: a sync of the whole region for the
 * CPU would, where the mapping bounces, copy the bounce buffers' older
 * bytes over what the CPU wrote since (tests/vm's cpu_writes_kept).
 * A no-op where the mapping is coherent and not bounced (x86, with or
 * without an IOMMU, the hosts moex is built and tested for); where
 * dma-direct's swiotlb bounces it (memory beyond a device's DMA mask
 * without an IOMMU, swiotlb=force, confidential guests), this carries
 * user space's writes to the engine and the engine's back (make
 * vm-swiotlb). Before a write it cleans the destination's cache lines on
 * hosts whose caches are not DMA-coherent; those would need more still:
 * IOVA segments merged from separate pages synced page by page, and a
 * piece's partial cache lines at either end kept from the CPU while the
 * engine writes. A copy that fails midway leaves what the engine wrote of
 * its destination unsynced: the destination's bytes are undefined after a
 * failed copy (Documentation/moex.rst, Copies).
 * Any context.
 */
void moex_dma_sync_piece(struct moex_region *r, dma_addr_t addr, u64 len,
			 bool for_device)
{
	if (for_device)
		dma_sync_single_for_device(r->dma_dev, addr, len,
					   moex_region_dir(r));
	else
		dma_sync_single_for_cpu(r->dma_dev, addr, len,
					moex_region_dir(r));
}

/**
 * moex_dma_sync_range() - moex_dma_sync_piece() over a byte range.
 * @r: the region (DMA-mapped).
 * @off: the range's first byte.
 * @len: its length.
 * @for_device: as for moex_dma_sync_piece().
 *
 * Any context.
 */
void moex_dma_sync_range(struct moex_region *r, u64 off, u64 len,
			 bool for_device)
{
	struct moex_dma_cursor c;
	dma_addr_t a;
	u64 n;

	if (moex_dma_cursor_init(&c, r, off))
		return;
	while (len && c.left) {
		a = moex_dma_cursor_addr(&c, &n);
		n = min(n, len);
		moex_dma_sync_piece(r, a, n, for_device);
		moex_dma_cursor_advance(&c, n);
		len -= n;
	}
}

/**
 * moex_dma_chunk() - the next piece of a copy between two DMA cursors.
 * @sc: the source cursor.
 * @dc: the destination cursor.
 * @left: bytes still to copy.
 * @max: the longest piece the engine moves at once.
 * @s: set to the piece's source DMA address.
 * @d: set to the piece's destination DMA address.
 *
 * A piece is contiguous in DMA space on both sides: it ends at the end of
 * the current source or destination segment, after @left bytes or after
 * @max bytes, whichever comes first. The caller moves both cursors past
 * it with moex_dma_cursor_advance().
 *
 * Return: the piece's length, or 0 when a cursor ran off its mapping (or
 * @left or @max is 0).
 */
u64 moex_dma_chunk(struct moex_dma_cursor *sc, struct moex_dma_cursor *dc,
		   u64 left, u64 max, dma_addr_t *s, dma_addr_t *d)
{
	u64 scont, dcont;

	if (!sc->left || !dc->left)
		return 0;
	*s = moex_dma_cursor_addr(sc, &scont);
	*d = moex_dma_cursor_addr(dc, &dcont);
	return min(min3(left, scont, dcont), max);
}
