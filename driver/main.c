// SPDX-License-Identifier: GPL-2.0
/*
 * moex main: module load and unload, the moex class, the /dev/moexN
 * character devices, open/release and the command dispatcher.
 *
 * /dev/moex0 is the host device: it copies with a dmaengine DMA_MEMCPY
 * channel when the host has one, else with the CPU. Each QEMU edu device the
 * module binds (engine_edu.c) adds another /dev/moexN.
 *
 * Every command is one entry of moex_cmds[]: its number (which encodes the
 * size of its payload struct) and the handler. moex_cmd_run() runs one on a
 * payload in kernel memory for both paths: the ioctl copies the payload in
 * and back out for _IOR/_IOWR commands; uring.c takes it from the SQE.
 */
#include <linux/compat.h>
#include <linux/dma-buf.h>
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/idr.h>
#include <linux/module.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>
#include <linux/workqueue.h>

#include "moex.h"

unsigned int moex_max_pinned_mb;
module_param_named(max_pinned_mb, moex_max_pinned_mb, uint, 0644);
MODULE_PARM_DESC(max_pinned_mb,
		 "Cap on memory pinned by all moex devices together, in MiB (0 = no cap)");

static bool use_dmaengine = true;
module_param(use_dmaengine, bool, 0444);
MODULE_PARM_DESC(use_dmaengine,
		 "Let /dev/moex0 copy with a dmaengine DMA_MEMCPY channel when one exists (default: true)");

struct workqueue_struct *moex_wq;
static dev_t moex_devt;
static struct class *moex_class;
static DEFINE_IDA(moex_ida);
static struct moex_dev *moex_host;

void moex_dev_get(struct moex_dev *mdev)
{
	get_device(&mdev->dev);
}

void moex_dev_put(struct moex_dev *mdev)
{
	put_device(&mdev->dev);
}

/* ---- commands ---------------------------------------------------------- */

static int moex_cmd_info(struct moex_file *mf, void *payload)
{
	struct moex_info *arg = payload;
	struct moex_dev *mdev = mf->mdev;
	struct moex_engine *eng;
	int ret = 0;

	if (arg->flags ||
	    !moex_all_zero(arg->reserved, ARRAY_SIZE(arg->reserved)))
		return -EINVAL;

	memset(arg, 0, sizeof(*arg));
	arg->abi_version = MOEX_ABI_VERSION;
	arg->features = MOEX_FEAT_PIN | MOEX_FEAT_PIN_READONLY |
			MOEX_FEAT_DMABUF | MOEX_FEAT_COPY |
			MOEX_FEAT_URING_CMD | MOEX_FEAT_COPY_FIXED;
	arg->max_pinned_bytes = moex_cap_bytes(READ_ONCE(moex_max_pinned_mb));
	arg->pinned_bytes = atomic64_read(&mdev->stats.pinned_bytes);

	down_read(&mdev->engine_lock);
	eng = mdev->engine;
	if (eng) {
		arg->engine = eng->id;
		arg->dma_bits = eng->dma_bits;
		strscpy(arg->engine_name, eng->name, sizeof(arg->engine_name));
		if (eng->dma_dev)
			arg->features |= MOEX_FEAT_DMA_MAPPED;
	} else {
		ret = -ENODEV;
	}
	up_read(&mdev->engine_lock);
	return ret;
}

static int moex_cmd_unpin(struct moex_file *mf, void *payload)
{
	return moex_region_unpin(mf, payload);
}

static int moex_cmd_region_info(struct moex_file *mf, void *payload)
{
	return moex_region_info(mf, payload);
}

static int moex_cmd_copy(struct moex_file *mf, void *payload)
{
	return moex_copy(mf, payload);
}

static int moex_cmd_nop(struct moex_file *mf, void *payload)
{
	struct moex_nop *arg = payload;

	if (arg->flags || arg->pad ||
	    !moex_all_zero(arg->reserved, ARRAY_SIZE(arg->reserved)))
		return -EINVAL;
	return 0;
}

/**
 * struct moex_cmd - one command of the uapi.
 * @nr: the ioctl number (also the uring_cmd cmd_op).
 * @fn: the handler; it reads and updates the payload in kernel memory.
 *	NULL for REGION_PIN and REGION_EXPORT, which take their reply
 *	themselves (moex_cmd_pin(), moex_cmd_export()).
 */
struct moex_cmd {
	unsigned int nr;
	int (*fn)(struct moex_file *mf, void *payload);
};

/* Indexed by _IOC_NR(): the uapi numbers its commands from 0 up. */
static const struct moex_cmd moex_cmds[] = {
	[_IOC_NR(MOEX_IOCTL_INFO)] = { MOEX_IOCTL_INFO, moex_cmd_info },
	[_IOC_NR(MOEX_IOCTL_REGION_PIN)] = { MOEX_IOCTL_REGION_PIN, NULL },
	[_IOC_NR(MOEX_IOCTL_REGION_UNPIN)] = { MOEX_IOCTL_REGION_UNPIN, moex_cmd_unpin },
	[_IOC_NR(MOEX_IOCTL_REGION_INFO)] = { MOEX_IOCTL_REGION_INFO, moex_cmd_region_info },
	[_IOC_NR(MOEX_IOCTL_REGION_EXPORT)] = { MOEX_IOCTL_REGION_EXPORT, NULL },
	[_IOC_NR(MOEX_IOCTL_COPY)] = { MOEX_IOCTL_COPY, moex_cmd_copy },
	[_IOC_NR(MOEX_IOCTL_NOP)] = { MOEX_IOCTL_NOP, moex_cmd_nop },
};

/* One lookup on every command of both paths: no search. */
static const struct moex_cmd *moex_cmd_find(unsigned int nr)
{
	unsigned int i = _IOC_NR(nr);

	if (i >= ARRAY_SIZE(moex_cmds) || moex_cmds[i].nr != nr)
		return NULL;
	return &moex_cmds[i];
}

/**
 * moex_cmd_known() - is @nr a command of the uapi?
 * @nr: the ioctl number / uring_cmd cmd_op.
 *
 * Return: true when moex_cmd_run() knows it; _IOC_SIZE(@nr) then fits
 * union moex_payload.
 */
bool moex_cmd_known(unsigned int nr)
{
	return moex_cmd_find(nr);
}

/*
 * REGION_PIN: a handle user space never learned would stay pinned, so a
 * failed reply takes the pin back (that region only: see
 * moex_region_pin_undo()).
 */
static int moex_cmd_pin(struct moex_file *mf, struct moex_region_pin *arg,
			int (*reply)(void *ctx, const void *payload,
				     size_t size),
			void *ctx)
{
	u64 serial;
	int ret;

	ret = moex_region_pin(mf, arg, &serial);
	if (ret)
		return ret;
	ret = reply(ctx, arg, sizeof(*arg));
	if (ret)
		moex_region_pin_undo(mf, arg->handle, serial);
	return ret;
}

/* REGION_EXPORT: the new fd is installed only once the reply was sent. */
static int moex_cmd_export(struct moex_file *mf,
			   struct moex_region_export *arg,
			   int (*reply)(void *ctx, const void *payload,
					size_t size),
			   void *ctx)
{
	struct dma_buf *dmabuf;
	int ret;

	ret = moex_export_prepare(mf, arg, &dmabuf);
	if (ret)
		return ret;
	ret = reply(ctx, arg, sizeof(*arg));
	if (ret) {
		moex_export_abort(arg, dmabuf);
		return ret;
	}
	moex_export_commit(mf, arg, dmabuf);
	return 0;
}

/**
 * moex_cmd_run() - run one command on a payload in kernel memory.
 * @mf: the open file.
 * @nr: the command: the ioctl number, which is also the uring_cmd cmd_op.
 * @payload: the payload struct, _IOC_SIZE(@nr) bytes (a union
 *	moex_payload), already copied from user space; updated with the
 *	command's output.
 * @reply: for commands with output (_IOC_READ), called once the command
 *	succeeded to hand @payload to user space; its error becomes the
 *	command's. REGION_EXPORT installs its fd only after @reply succeeded
 *	and undoes the export when it fails; REGION_PIN undoes the pin, so a
 *	failed reply leaves nothing pinned and no counter moved; the other
 *	commands with output change nothing.
 * @ctx: passed to @reply.
 *
 * Shared by the ioctl and the uring_cmd paths, so both check the same
 * things in the same order and return the same errnos. Sleeps.
 *
 * Return: 0, -ENOTTY for an unknown command, or the command's error.
 */
int moex_cmd_run(struct moex_file *mf, unsigned int nr, void *payload,
		 int (*reply)(void *ctx, const void *payload, size_t size),
		 void *ctx)
{
	const struct moex_cmd *c = moex_cmd_find(nr);
	int ret;

	if (!c)
		return -ENOTTY;
	if (nr == MOEX_IOCTL_REGION_PIN)
		return moex_cmd_pin(mf, payload, reply, ctx);
	if (nr == MOEX_IOCTL_REGION_EXPORT)
		return moex_cmd_export(mf, payload, reply, ctx);

	ret = c->fn(mf, payload);
	if (ret || !(_IOC_DIR(nr) & _IOC_READ))
		return ret;
	return reply(ctx, payload, _IOC_SIZE(nr));
}

static int moex_ioctl_reply(void *ctx, const void *payload, size_t size)
{
	return copy_to_user((void __user __force *)ctx, payload, size) ?
		-EFAULT : 0;
}

static long moex_ioctl(struct file *filp, unsigned int cmd, unsigned long arg)
{
	struct moex_file *mf = filp->private_data;
	void __user *uarg = (void __user *)arg;
	union moex_payload p;

	if (!moex_cmd_known(cmd))
		return -ENOTTY;
	if (copy_from_user(&p, uarg, _IOC_SIZE(cmd)))
		return -EFAULT;
	return moex_cmd_run(mf, cmd, &p, moex_ioctl_reply, (void __force *)uarg);
}

/* ---- open and release -------------------------------------------------- */

static int moex_open(struct inode *inode, struct file *filp)
{
	struct moex_dev *mdev = container_of(inode->i_cdev, struct moex_dev,
					     cdev);
	struct moex_file *mf;

	mf = kzalloc(sizeof(*mf), GFP_KERNEL);
	if (!mf)
		return -ENOMEM;
	moex_dev_get(mdev);
	mf->mdev = mdev;
	xa_init_flags(&mf->regions, XA_FLAGS_ALLOC1);
	filp->private_data = mf;
	atomic64_inc(&mdev->stats.open_files);
	return nonseekable_open(inode, filp);
}

static int moex_release(struct inode *inode, struct file *filp)
{
	struct moex_file *mf = filp->private_data;
	struct moex_dev *mdev = mf->mdev;

	moex_file_release_regions(mf);
	xa_destroy(&mf->regions);
	atomic64_dec(&mdev->stats.open_files);
	kfree(mf);
	moex_dev_put(mdev);
	return 0;
}

static const struct file_operations moex_fops = {
	.owner = THIS_MODULE,
	.open = moex_open,
	.release = moex_release,
	.unlocked_ioctl = moex_ioctl,
	.compat_ioctl = compat_ptr_ioctl,
	.uring_cmd = moex_uring_cmd,
	.llseek = no_llseek,
};

/* ---- devices ----------------------------------------------------------- */

static void moex_dev_release(struct device *dev)
{
	struct moex_dev *mdev = container_of(dev, struct moex_dev, dev);

	ida_free(&moex_ida, mdev->index);
	kfree(mdev);
}

/**
 * moex_dev_add() - create /dev/moexN for a copy engine.
 * @parent: the parent device (the edu PCI device), or NULL.
 * @eng: the engine. On success the new device owns it and destroys it in
 *	moex_dev_remove(); on failure the caller still owns it.
 *
 * Return: the device, or an ERR_PTR().
 */
struct moex_dev *moex_dev_add(struct device *parent, struct moex_engine *eng)
{
	struct moex_dev *mdev;
	int index, ret;

	mdev = kzalloc(sizeof(*mdev), GFP_KERNEL);
	if (!mdev)
		return ERR_PTR(-ENOMEM);
	index = ida_alloc_max(&moex_ida, MOEX_MAX_DEVICES - 1, GFP_KERNEL);
	if (index < 0) {
		kfree(mdev);
		return ERR_PTR(index);
	}
	mdev->index = index;
	moex_dev_init_locks(mdev);
	mdev->engine = eng;

	device_initialize(&mdev->dev);
	mdev->dev.class = moex_class;
	mdev->dev.parent = parent;
	mdev->dev.devt = MKDEV(MAJOR(moex_devt), index);
	mdev->dev.groups = moex_dev_groups;
	mdev->dev.release = moex_dev_release;
	ret = dev_set_name(&mdev->dev, MOEX_NAME "%d", index);
	if (ret)
		goto err_put;

	cdev_init(&mdev->cdev, &moex_fops);
	mdev->cdev.owner = THIS_MODULE;
	ret = cdev_device_add(&mdev->cdev, &mdev->dev);
	if (ret)
		goto err_put;
	return mdev;

err_put:
	mdev->engine = NULL;	/* the caller keeps it */
	put_device(&mdev->dev);	/* frees mdev and its index */
	return ERR_PTR(ret);
}

/**
 * moex_dev_remove() - remove /dev/moexN and destroy its engine.
 * @mdev: the device.
 *
 * No new open succeeds afterwards; files still open keep the struct alive
 * but their commands that need the engine fail with -ENODEV. The engine is
 * destroyed once no command uses it any more, then every region's DMA
 * mapping for its device is undone: the caller may release the device when
 * this returns. The regions stay pinned until unpinned.
 */
void moex_dev_remove(struct moex_dev *mdev)
{
	struct moex_engine *eng;

	cdev_device_del(&mdev->cdev, &mdev->dev);

	down_write(&mdev->engine_lock);
	eng = mdev->engine;
	mdev->engine = NULL;
	up_write(&mdev->engine_lock);
	if (eng)
		eng->ops->destroy(eng);
	moex_dev_unmap_all(mdev);

	put_device(&mdev->dev);
}

static struct moex_engine *moex_host_engine(void)
{
	struct moex_engine *eng = ERR_PTR(-ENODEV);

	if (use_dmaengine)
		eng = moex_engine_dmaengine_create();
	if (IS_ERR(eng))
		eng = moex_engine_cpu_create();
	return eng;
}

static int __init moex_init(void)
{
	struct moex_engine *eng;
	int ret;

	BUILD_BUG_ON(sizeof(struct moex_uring_cmd) != 80);
	BUILD_BUG_ON(sizeof(union moex_payload) >
		     sizeof_field(struct moex_uring_cmd, payload));

	ret = alloc_chrdev_region(&moex_devt, 0, MOEX_MAX_DEVICES, MOEX_NAME);
	if (ret)
		return ret;

	moex_class = class_create(THIS_MODULE, MOEX_NAME);
	if (IS_ERR(moex_class)) {
		ret = PTR_ERR(moex_class);
		goto err_chrdev;
	}

	ret = -ENOMEM;
	moex_wq = alloc_workqueue(MOEX_NAME, 0, 0);
	if (!moex_wq)
		goto err_class;

	eng = moex_host_engine();
	if (IS_ERR(eng)) {
		ret = PTR_ERR(eng);
		goto err_wq;
	}
	moex_host = moex_dev_add(NULL, eng);
	if (IS_ERR(moex_host)) {
		ret = PTR_ERR(moex_host);
		eng->ops->destroy(eng);
		goto err_wq;
	}

	ret = moex_edu_register();
	if (ret)
		goto err_host;
	return 0;

err_host:
	moex_dev_remove(moex_host);
err_wq:
	destroy_workqueue(moex_wq);
err_class:
	class_destroy(moex_class);
err_chrdev:
	unregister_chrdev_region(moex_devt, MOEX_MAX_DEVICES);
	return ret;
}

static void __exit moex_exit(void)
{
	moex_edu_unregister();
	moex_dev_remove(moex_host);
	destroy_workqueue(moex_wq);	/* frees copies whose waiter was killed */
	class_destroy(moex_class);
	unregister_chrdev_region(moex_devt, MOEX_MAX_DEVICES);
}

module_init(moex_init);
module_exit(moex_exit);

MODULE_DESCRIPTION("moex: pinned expert-weight memory, DMA engines and dma-buf export for MoE inference");
MODULE_AUTHOR("The moex developers");
MODULE_LICENSE("GPL");
MODULE_IMPORT_NS(DMA_BUF);
