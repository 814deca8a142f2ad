// SPDX-License-Identifier: GPL-2.0
/*
 * moex main: module load and unload, the moex class, the /dev/moexN
 * character devices, open/release and the command dispatcher.
 *
 * /dev/moex0 is the host device: it copies with a dmaengine DMA_MEMCPY
 * channel when the host has one, else with the CPU. Each QEMU edu device the
 * module binds (engine_edu.c) adds another /dev/moexN.
 *
 * Every command is one entry of moex_cmds[]: its number, the size of its
 * payload struct, and the handler. The ioctl path copies the payload in,
 * runs the handler and copies it back out for _IOR/_IOWR commands.
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
			MOEX_FEAT_DMABUF | MOEX_FEAT_COPY;
	arg->max_pinned_bytes = (u64)READ_ONCE(moex_max_pinned_mb) << 20;
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

static int moex_cmd_pin(struct moex_file *mf, void *payload)
{
	return moex_region_pin(mf, payload);
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
 *	NULL for REGION_EXPORT, which needs the two-step path.
 */
struct moex_cmd {
	unsigned int nr;
	int (*fn)(struct moex_file *mf, void *payload);
};

static const struct moex_cmd moex_cmds[] = {
	{ MOEX_IOCTL_INFO, moex_cmd_info },
	{ MOEX_IOCTL_REGION_PIN, moex_cmd_pin },
	{ MOEX_IOCTL_REGION_UNPIN, moex_cmd_unpin },
	{ MOEX_IOCTL_REGION_INFO, moex_cmd_region_info },
	{ MOEX_IOCTL_REGION_EXPORT, NULL },
	{ MOEX_IOCTL_COPY, moex_cmd_copy },
	{ MOEX_IOCTL_NOP, moex_cmd_nop },
};

/* The largest payload; every uapi struct fits (checked at build time). */
union moex_payload {
	struct moex_info info;
	struct moex_region_pin pin;
	struct moex_region_unpin unpin;
	struct moex_region_info region_info;
	struct moex_region_export exp;
	struct moex_copy copy;
	struct moex_nop nop;
};

static const struct moex_cmd *moex_cmd_find(unsigned int nr)
{
	size_t i;

	for (i = 0; i < ARRAY_SIZE(moex_cmds); i++)
		if (moex_cmds[i].nr == nr)
			return &moex_cmds[i];
	return NULL;
}

/* REGION_EXPORT: the new fd is installed only after the reply was copied. */
static long moex_ioctl_export(struct moex_file *mf, void __user *uarg)
{
	struct moex_region_export arg;
	struct dma_buf *dmabuf;
	int ret;

	if (copy_from_user(&arg, uarg, sizeof(arg)))
		return -EFAULT;
	ret = moex_export_prepare(mf, &arg, &dmabuf);
	if (ret)
		return ret;
	if (copy_to_user(uarg, &arg, sizeof(arg))) {
		moex_export_abort(&arg, dmabuf);
		return -EFAULT;
	}
	moex_export_commit(mf, &arg, dmabuf);
	return 0;
}

static long moex_ioctl(struct file *filp, unsigned int cmd, unsigned long arg)
{
	struct moex_file *mf = filp->private_data;
	void __user *uarg = (void __user *)arg;
	const struct moex_cmd *c = moex_cmd_find(cmd);
	union moex_payload p;
	size_t size = _IOC_SIZE(cmd);
	int ret;

	if (!c)
		return -ENOTTY;
	if (!c->fn)
		return moex_ioctl_export(mf, uarg);

	if (copy_from_user(&p, uarg, size))
		return -EFAULT;
	ret = c->fn(mf, &p);
	if (ret)
		return ret;
	if ((_IOC_DIR(cmd) & _IOC_READ) && copy_to_user(uarg, &p, size))
		return -EFAULT;
	return 0;
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
	init_rwsem(&mdev->engine_lock);
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
 * destroyed once no command uses it any more.
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

	BUILD_BUG_ON(sizeof(union moex_payload) > 80);

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
