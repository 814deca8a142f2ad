// SPDX-License-Identifier: GPL-2.0
/*
 * moex dma-buf export: a region as a dma-buf any importer can attach to.
 *
 * The dma-buf holds a reference to the region, so its pages stay pinned and
 * accounted until the last reference to the dma-buf goes, even after the
 * handle was unpinned or the moex file closed.
 *
 * Importers: each map of an attachment gets its own sg table, built from the
 * region's pages and mapped through the DMA API for the importer's device,
 * and its unmap frees it; so an importer may map one attachment more than
 * once, each mapping standing on its own.
 * CPU mmap: shared mappings only, filled page by page on fault with the
 * region's page frames (VM_PFNMAP); the mapping holds the dma-buf file, so
 * the pages cannot go while it exists.
 */
#include <linux/dma-buf.h>
#include <linux/dma-mapping.h>
#include <linux/fcntl.h>
#include <linux/file.h>
#include <linux/mm.h>
#include <linux/slab.h>

#include "moex.h"

static bool moex_region_ro(struct moex_region *r)
{
	return test_bit(MOEX_REGION_B_READONLY, &r->flags);
}

MOEX_STATIC_UNLESS_KUNIT struct sg_table *
moex_dmabuf_map(struct dma_buf_attachment *attach, enum dma_data_direction dir)
{
	struct moex_region *r = attach->dmabuf->priv;
	struct sg_table *sgt;
	int ret;

	if (moex_region_ro(r) && dir != DMA_TO_DEVICE)
		return ERR_PTR(-EACCES);
	sgt = kzalloc(sizeof(*sgt), GFP_KERNEL);
	if (!sgt)
		return ERR_PTR(-ENOMEM);
	ret = sg_alloc_table_from_pages_segment(sgt, r->pages, r->npages, 0,
						r->length,
						moex_dma_max_segment(attach->dev),
						GFP_KERNEL);
	if (ret)
		goto err_free;
	/*
	 * The pages may be mapped for the engine's device too, for the
	 * region's life: the same memory in two mappings, which DMA-API
	 * debugging refuses unless the second skips the CPU syncs. So this
	 * mapping syncs explicitly, as dma_map_sgtable() would have.
	 */
	ret = dma_map_sgtable(attach->dev, sgt, dir, DMA_ATTR_SKIP_CPU_SYNC);
	if (ret)
		goto err_table;
	dma_sync_sgtable_for_device(attach->dev, sgt, dir);
	return sgt;

err_table:
	sg_free_table(sgt);
err_free:
	kfree(sgt);
	return ERR_PTR(ret);
}

MOEX_STATIC_UNLESS_KUNIT void
moex_dmabuf_unmap(struct dma_buf_attachment *attach, struct sg_table *sgt,
		  enum dma_data_direction dir)
{
	dma_sync_sgtable_for_cpu(attach->dev, sgt, dir);
	dma_unmap_sgtable(attach->dev, sgt, dir, DMA_ATTR_SKIP_CPU_SYNC);
	sg_free_table(sgt);
	kfree(sgt);
}

static vm_fault_t moex_dmabuf_fault(struct vm_fault *vmf)
{
	struct moex_region *r = vmf->vma->vm_private_data;

	if (vmf->pgoff >= r->npages)
		return VM_FAULT_SIGBUS;
	return vmf_insert_pfn(vmf->vma, vmf->address,
			      page_to_pfn(r->pages[vmf->pgoff]));
}

static const struct vm_operations_struct moex_dmabuf_vm_ops = {
	.fault = moex_dmabuf_fault,
};

static int moex_dmabuf_mmap(struct dma_buf *dmabuf, struct vm_area_struct *vma)
{
	struct moex_region *r = dmabuf->priv;

	/*
	 * A private mapping of page frames could be copied on write. (For a
	 * read-only file the kernel clears VM_SHARED of a shared mapping, so
	 * check VM_MAYSHARE.)
	 */
	if (!(vma->vm_flags & VM_MAYSHARE))
		return -EINVAL;
	if (moex_region_ro(r)) {
		if (vma->vm_flags & VM_WRITE)
			return -EACCES;
		vma->vm_flags &= ~VM_MAYWRITE;
	}
	vma->vm_flags |= VM_PFNMAP | VM_DONTEXPAND | VM_DONTDUMP;
	vma->vm_ops = &moex_dmabuf_vm_ops;
	vma->vm_private_data = r;
	return 0;
}

static void moex_dmabuf_release(struct dma_buf *dmabuf)
{
	moex_region_put(dmabuf->priv);
}

static const struct dma_buf_ops moex_dmabuf_ops = {
	.map_dma_buf = moex_dmabuf_map,
	.unmap_dma_buf = moex_dmabuf_unmap,
	.mmap = moex_dmabuf_mmap,
	/*
	 * No begin/end_cpu_access: the CPU's view is the pages themselves,
	 * the engine syncs what it copies (moex_dma_sync_piece()) and each
	 * importer's mapping is synced at its map and unmap.
	 */
	.release = moex_dmabuf_release,
};

/**
 * moex_export_prepare() - REGION_EXPORT, first step: make the dma-buf and
 *	reserve its fd.
 * @mf: the open file naming the region.
 * @arg: the payload; @arg->fd is set to the reserved fd.
 * @dmabuf: set to the new dma-buf.
 *
 * The caller finishes with moex_export_commit() once the reply reached user
 * space, or moex_export_abort().
 *
 * Return: 0, -EINVAL, -ENOENT, or the error of dma_buf_export() or of the
 * fd reservation.
 */
int moex_export_prepare(struct moex_file *mf, struct moex_region_export *arg,
			struct dma_buf **dmabuf)
{
	DEFINE_DMA_BUF_EXPORT_INFO(info);
	struct moex_region *r;
	struct dma_buf *buf;
	int fd;

	if (arg->flags || arg->pad ||
	    !moex_all_zero(arg->reserved, ARRAY_SIZE(arg->reserved)))
		return -EINVAL;
	r = moex_region_lookup(mf, arg->handle);
	if (!r)
		return -ENOENT;

	info.ops = &moex_dmabuf_ops;
	info.size = r->length;
	info.flags = O_CLOEXEC | (moex_region_ro(r) ? O_RDONLY : O_RDWR);
	info.priv = r;	/* the lookup's reference now belongs to the dma-buf */
	buf = dma_buf_export(&info);
	if (IS_ERR(buf)) {
		moex_region_put(r);
		return PTR_ERR(buf);
	}

	fd = get_unused_fd_flags(O_CLOEXEC);
	if (fd < 0) {
		dma_buf_put(buf);
		return fd;
	}
	arg->fd = fd;
	*dmabuf = buf;
	return 0;
}

void moex_export_commit(struct moex_file *mf, struct moex_region_export *arg,
			struct dma_buf *dmabuf)
{
	struct moex_region *r = dmabuf->priv;

	set_bit(MOEX_REGION_B_EXPORTED, &r->flags);
	atomic64_inc(&mf->mdev->stats.dmabuf_exports);
	fd_install(arg->fd, dmabuf->file);
}

void moex_export_abort(struct moex_region_export *arg, struct dma_buf *dmabuf)
{
	put_unused_fd(arg->fd);
	dma_buf_put(dmabuf);
}
