// SPDX-License-Identifier: GPL-2.0
/*
 * moex edu engine: copies with the QEMU "edu" educational PCI device
 * (hw/misc/edu.c, vendor 0x1234, device 0x11e8), the test VM's DMA engine.
 * Each bound device becomes one /dev/moexN.
 *
 * The device has one 4 KiB buffer at device address 0x40000 and one DMA
 * channel that moves bytes between that buffer and PCI memory, so a copy
 * runs chunk by chunk: source -> buffer, then buffer -> destination, each
 * step one DMA that QEMU runs from a 100 ms virtual-clock timer and ends with
 * an interrupt. The engine is slow by design (about 20 KiB/s).
 *
 * Two QEMU facts shape the code, because breaking them aborts the whole VM
 * (hw_error()) instead of failing the transfer:
 *  - the device-side range of a transfer must lie inside the buffer; up to
 *    QEMU 9.0 the check also rejects a range that ends exactly at the end of
 *    the buffer (QEMU issue 1254), so a transfer is at most 4095 bytes;
 *  - a transfer of 0 bytes is rejected as well.
 * The device masks DMA addresses with its dma_mask property, (1 << 28) - 1
 * by default, so the DMA mask is set to 28 bits (edu_dma_bits) and the DMA
 * API (the IOMMU in the test VM) hands out only addresses below 256 MiB.
 * A device started with a wider dma_mask (-device edu,dma_mask=0xffffffff)
 * is driven with the module parameter edu_dma_bits to match: the swiotlb
 * test VM needs 32 bits, as its bounce pool lies above 256 MiB. The device
 * cannot report its mask, and a parameter wider than it would send DMA to
 * the wrong memory.
 *
 * Objects and their owners:
 *  - struct moex_edu_hw: the bound PCI function (BAR mapping, IRQ, the
 *    DMA-done completion). Allocated in probe, freed in remove; it is the
 *    PCI driver data.
 *  - struct moex_edu_engine: the copy engine (request queue, worker). Probe
 *    creates it; once moex_dev_add() succeeded the moex_dev owns it and
 *    moex_dev_remove() calls its destroy(). If moex_dev_add() fails, probe
 *    destroys it. The engine uses the hw's mapping and IRQ, so remove calls
 *    moex_dev_remove() before it releases them.
 */
#include <linux/bits.h>
#include <linux/completion.h>
#include <linux/dma-mapping.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/io-64-nonatomic-lo-hi.h>
#include <linux/iopoll.h>
#include <linux/list.h>
#include <linux/minmax.h>
#include <linux/module.h>
#include <linux/pci.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/workqueue.h>

#include "moex.h"

#define MOEX_EDU_DRV_NAME	"moex_edu"

#define EDU_PCI_VENDOR_ID	0x1234
#define EDU_PCI_DEVICE_ID	0x11e8

/* BAR0 registers */
#define EDU_REG_ID		0x00	/* 0xMMmm00ed: major, minor, 0xed */
#define EDU_REG_LIVENESS	0x04	/* reads back ~(last value written) */
#define EDU_REG_IRQ_STATUS	0x24
#define EDU_REG_IRQ_ACK		0x64	/* write the status bits to clear */
#define EDU_REG_DMA_SRC		0x80	/* 64-bit */
#define EDU_REG_DMA_DST		0x88	/* 64-bit */
#define EDU_REG_DMA_CNT		0x90	/* 64-bit */
#define EDU_REG_DMA_CMD		0x98	/* 64-bit */
#define EDU_REG_MIN_LEN		0x100

#define EDU_ID_MAGIC		0xed
#define EDU_DMA_CMD_RUN		BIT(0)	/* set to start, clears when done */
#define EDU_DMA_CMD_TO_RAM	BIT(1)	/* 0: RAM -> buffer, 1: buffer -> RAM */
#define EDU_DMA_CMD_IRQ		BIT(2)	/* raise EDU_IRQ_DMA when done */
#define EDU_IRQ_DMA		BIT(8)

#define EDU_BUF_ADDR		0x40000
#define EDU_BUF_SIZE		4096
/* see the top of this file: the range may not end at the buffer's end */
#define EDU_MAX_XFER		(EDU_BUF_SIZE - 1)
#define EDU_DMA_BITS_MIN	28	/* QEMU's default dma_mask */

/* One DMA takes 100 ms of virtual time; TCG can stretch that a lot. */
#define EDU_DMA_TIMEOUT_MS	10000
/* After a timeout, how long to wait for the device to go idle. */
#define EDU_IDLE_POLL_US	10000
#define EDU_IDLE_TIMEOUT_US	2000000

static unsigned int edu_dma_bits = EDU_DMA_BITS_MIN;

/* a value outside [28, 64] fails the module's load with -EINVAL */
static int moex_edu_dma_bits_set(const char *val,
				 const struct kernel_param *kp)
{
	return param_set_uint_minmax(val, kp, EDU_DMA_BITS_MIN, 64);
}

static const struct kernel_param_ops moex_edu_dma_bits_ops = {
	.set = moex_edu_dma_bits_set,
	.get = param_get_uint,
};

module_param_cb(edu_dma_bits, &moex_edu_dma_bits_ops, &edu_dma_bits, 0444);
__MODULE_PARM_TYPE(edu_dma_bits, "uint");
MODULE_PARM_DESC(edu_dma_bits,
		 "DMA address width of QEMU edu devices, as their dma_mask property (default: 28)");

/**
 * struct moex_edu_hw - one bound edu PCI function.
 * @pdev: the PCI device.
 * @mmio: BAR0 mapping.
 * @irq: the Linux IRQ number of vector 0.
 * @mdev: the /dev/moexN created for this function.
 * @dma_bits: the DMA address width, edu_dma_bits when probed.
 * @dma_done: completed by the IRQ handler when EDU_IRQ_DMA is seen. Only
 *	the engine's worker programs DMAs (one at a time) and re-arms it.
 *
 * Everything here is set up in probe before the IRQ is requested and the
 * engine created, and torn down in remove after the engine was destroyed,
 * so none of it needs a lock.
 */
struct moex_edu_hw {
	struct pci_dev *pdev;
	void __iomem *mmio;
	int irq;
	struct moex_dev *mdev;
	unsigned int dma_bits;
	struct completion dma_done;
};

/**
 * struct moex_edu_engine - the copy engine of one edu function.
 * @eng: the generic engine; ops, id, name, dma_dev (a reference on the PCI
 *	device) and dma_bits.
 * @hw: the PCI function; it outlives the engine (see the top of the file).
 * @wq: ordered workqueue running @work; destroy() drains it.
 * @work: the worker: takes requests off @queue one by one and runs them.
 * @lock: protects @queue.
 * @queue: requests submitted and not yet taken by the worker, linked by
 *	moex_copy_req.node.
 * @stopping: set by destroy(); the worker then fails what is left with
 *	-ENODEV instead of running it. Read without a lock: a stale value only
 *	delays the abort by one chunk.
 * @dead: set by the worker when the device stayed busy after a timeout;
 *	every later request fails with -EIO. Used by the worker only.
 */
struct moex_edu_engine {
	struct moex_engine eng;
	struct moex_edu_hw *hw;
	struct workqueue_struct *wq;
	struct work_struct work;
	spinlock_t lock;		/* protects queue */
	struct list_head queue;
	bool stopping;
	bool dead;
};

static struct moex_edu_engine *to_edu_engine(struct moex_engine *eng)
{
	return container_of(eng, struct moex_edu_engine, eng);
}

/* ---- interrupt --------------------------------------------------------- */

static irqreturn_t moex_edu_irq(int irq, void *data)
{
	struct moex_edu_hw *hw = data;
	u32 status = readl(hw->mmio + EDU_REG_IRQ_STATUS);

	/* nothing pending (a shared INTx line), or the device is gone */
	if (!status || status == U32_MAX)
		return IRQ_NONE;
	writel(status, hw->mmio + EDU_REG_IRQ_ACK);
	if (status & EDU_IRQ_DMA)
		complete(&hw->dma_done);
	return IRQ_HANDLED;
}

/* ---- DMA --------------------------------------------------------------- */

static bool moex_edu_dma_busy(struct moex_edu_hw *hw)
{
	return readq(hw->mmio + EDU_REG_DMA_CMD) & EDU_DMA_CMD_RUN;
}

/*
 * A DMA did not signal completion in time. Give the device a little longer
 * to go idle; if it does, the interrupt was lost and the device is usable.
 * Returns false when it is still busy: it may still write into memory we
 * are about to give back, and it cannot be stopped, so it must not be used
 * again.
 */
static bool moex_edu_recover(struct moex_edu_hw *hw)
{
	u64 cmd;
	int ret;

	ret = readq_poll_timeout(hw->mmio + EDU_REG_DMA_CMD, cmd,
				 !(cmd & EDU_DMA_CMD_RUN), EDU_IDLE_POLL_US,
				 EDU_IDLE_TIMEOUT_US);
	/* drop a late DMA-done status and let a running handler finish */
	writel(EDU_IRQ_DMA, hw->mmio + EDU_REG_IRQ_ACK);
	synchronize_irq(hw->irq);
	return !ret;
}

/**
 * moex_edu_dma() - run one DMA and wait for it.
 * @e: the engine; called from its worker only.
 * @src: source address (a DMA address, or the buffer's device address).
 * @dst: destination address.
 * @len: bytes, 1 to EDU_MAX_XFER.
 * @to_ram: false for RAM -> buffer, true for buffer -> RAM.
 *
 * Return: 0, -EIO if the device is unusable, or -ETIMEDOUT.
 */
static int moex_edu_dma(struct moex_edu_engine *e, u64 src, u64 dst, u64 len,
			bool to_ram)
{
	struct moex_edu_hw *hw = e->hw;
	u64 cmd = EDU_DMA_CMD_RUN | EDU_DMA_CMD_IRQ;

	/* the device ignores register writes while a DMA runs */
	if (moex_edu_dma_busy(hw)) {
		e->dead = true;
		dev_err_ratelimited(&hw->pdev->dev, "DMA engine busy, disabled\n");
		return -EIO;
	}
	if (to_ram)
		cmd |= EDU_DMA_CMD_TO_RAM;

	reinit_completion(&hw->dma_done);
	writeq(src, hw->mmio + EDU_REG_DMA_SRC);
	writeq(dst, hw->mmio + EDU_REG_DMA_DST);
	writeq(len, hw->mmio + EDU_REG_DMA_CNT);
	writeq(cmd, hw->mmio + EDU_REG_DMA_CMD);

	if (wait_for_completion_timeout(&hw->dma_done,
					msecs_to_jiffies(EDU_DMA_TIMEOUT_MS)))
		return 0;

	if (!moex_edu_recover(hw)) {
		e->dead = true;
		dev_err_ratelimited(&hw->pdev->dev,
				    "DMA did not finish, engine disabled\n");
	} else {
		dev_err_ratelimited(&hw->pdev->dev,
				    "DMA completion interrupt lost\n");
	}
	return -ETIMEDOUT;
}

/* Is [addr, addr + len) reachable by the device's DMA? */
static bool moex_edu_addr_ok(struct moex_edu_hw *hw, dma_addr_t addr, u64 len)
{
	u64 mask = DMA_BIT_MASK(hw->dma_bits);

	return addr <= mask && len - 1 <= mask - addr;
}

/* Run one request: chunk by chunk, source -> buffer -> destination. */
static int moex_edu_copy(struct moex_edu_engine *e, struct moex_copy_req *req)
{
	struct moex_dma_cursor sc, dc;
	u64 left = req->len;
	int ret;

	if (moex_dma_cursor_init(&sc, req->src, req->src_off) ||
	    moex_dma_cursor_init(&dc, req->dst, req->dst_off))
		return -EINVAL;

	while (left) {
		dma_addr_t s, d;
		u64 n;

		if (READ_ONCE(e->stopping))
			return -ENODEV;
		if (e->dead)
			return -EIO;
		/* the ranges were checked; never run off a mapping (n == 0) */
		n = moex_dma_chunk(&sc, &dc, left, EDU_MAX_XFER, &s, &d);
		if (!n || !moex_edu_addr_ok(e->hw, s, n) ||
		    !moex_edu_addr_ok(e->hw, d, n))
			return -EINVAL;

		moex_dma_sync_piece(req->src, s, n, true);
		ret = moex_edu_dma(e, s, EDU_BUF_ADDR, n, false);
		if (ret)
			return ret;
		moex_dma_sync_piece(req->dst, d, n, true);
		ret = moex_edu_dma(e, EDU_BUF_ADDR, d, n, true);
		if (ret)
			return ret;
		moex_dma_sync_piece(req->dst, d, n, false);

		moex_dma_cursor_advance(&sc, n);
		moex_dma_cursor_advance(&dc, n);
		left -= n;
	}
	return 0;
}

static void moex_edu_work(struct work_struct *work)
{
	struct moex_edu_engine *e = container_of(work, struct moex_edu_engine,
						 work);
	struct moex_copy_req *req;
	int ret;

	for (;;) {
		spin_lock(&e->lock);
		req = list_first_entry_or_null(&e->queue,
					       struct moex_copy_req, node);
		if (req)
			list_del_init(&req->node);
		spin_unlock(&e->lock);
		if (!req)
			break;

		if (READ_ONCE(e->stopping))
			ret = -ENODEV;
		else if (e->dead)
			ret = -EIO;
		else
			ret = moex_edu_copy(e, req);
		req->complete(req, ret);
		cond_resched();
	}
}

/* ---- engine ------------------------------------------------------------ */

static int moex_edu_submit(struct moex_engine *eng, struct moex_copy_req *req)
{
	struct moex_edu_engine *e = to_edu_engine(eng);
	struct moex_dma_cursor c;

	/* fail what cannot be mapped now, without a completion */
	if (moex_dma_cursor_init(&c, req->src, req->src_off) ||
	    moex_dma_cursor_init(&c, req->dst, req->dst_off))
		return -EINVAL;

	spin_lock(&e->lock);
	list_add_tail(&req->node, &e->queue);
	spin_unlock(&e->lock);
	queue_work(e->wq, &e->work);
	return 0;
}

/*
 * Called once, by moex_dev_remove() (or by probe when moex_dev_add()
 * failed), after the last submit. Requests still queued complete with
 * -ENODEV, the one running stops at its next chunk.
 */
static void moex_edu_destroy(struct moex_engine *eng)
{
	struct moex_edu_engine *e = to_edu_engine(eng);

	WRITE_ONCE(e->stopping, true);
	destroy_workqueue(e->wq);	/* drains: the worker empties the queue */
	WARN_ON_ONCE(!list_empty(&e->queue));
	put_device(e->eng.dma_dev);
	kfree(e);
}

static const struct moex_engine_ops moex_edu_ops = {
	.submit = moex_edu_submit,
	.destroy = moex_edu_destroy,
};

static struct moex_edu_engine *moex_edu_engine_create(struct moex_edu_hw *hw)
{
	struct moex_edu_engine *e;

	e = kzalloc(sizeof(*e), GFP_KERNEL);
	if (!e)
		return NULL;
	e->wq = alloc_ordered_workqueue(MOEX_EDU_DRV_NAME "/%s", 0,
					pci_name(hw->pdev));
	if (!e->wq) {
		kfree(e);
		return NULL;
	}
	INIT_WORK(&e->work, moex_edu_work);
	spin_lock_init(&e->lock);
	INIT_LIST_HEAD(&e->queue);
	e->hw = hw;
	e->eng.ops = &moex_edu_ops;
	e->eng.id = MOEX_ENGINE_EDU;
	e->eng.name = "edu";
	e->eng.dma_dev = get_device(&hw->pdev->dev);
	e->eng.dma_bits = hw->dma_bits;
	return e;
}

/* ---- PCI driver -------------------------------------------------------- */

static int moex_edu_check(struct moex_edu_hw *hw)
{
	struct device *dev = &hw->pdev->dev;
	u32 id = readl(hw->mmio + EDU_REG_ID);
	u32 probe = 0x5a5aa5a5;

	if ((id & 0xff) != EDU_ID_MAGIC) {
		dev_err(dev, "unexpected identification %#010x\n", id);
		return -ENODEV;
	}
	writel(probe, hw->mmio + EDU_REG_LIVENESS);
	if (readl(hw->mmio + EDU_REG_LIVENESS) != ~probe) {
		dev_err(dev, "liveness check failed\n");
		return -EIO;
	}
	if (moex_edu_dma_busy(hw)) {
		dev_err(dev, "DMA engine busy\n");
		return -EBUSY;
	}
	dev_info(dev, "edu %u.%u\n", id >> 24, (id >> 16) & 0xff);
	return 0;
}

static int moex_edu_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct device *dev = &pdev->dev;
	struct moex_edu_engine *e;
	struct moex_edu_hw *hw;
	int ret;

	hw = kzalloc(sizeof(*hw), GFP_KERNEL);
	if (!hw)
		return -ENOMEM;
	hw->pdev = pdev;
	init_completion(&hw->dma_done);

	ret = pci_enable_device(pdev);
	if (ret)
		goto err_free;
	ret = pci_request_regions(pdev, MOEX_EDU_DRV_NAME);
	if (ret)
		goto err_disable;
	ret = -ENODEV;
	if (!(pci_resource_flags(pdev, 0) & IORESOURCE_MEM) ||
	    pci_resource_len(pdev, 0) < EDU_REG_MIN_LEN)
		goto err_regions;
	ret = -ENOMEM;
	hw->mmio = pci_iomap(pdev, 0, EDU_REG_MIN_LEN);
	if (!hw->mmio)
		goto err_regions;

	ret = moex_edu_check(hw);
	if (ret)
		goto err_unmap;
	hw->dma_bits = edu_dma_bits;
	ret = dma_set_mask_and_coherent(dev, DMA_BIT_MASK(hw->dma_bits));
	if (ret) {
		dev_err(dev, "no usable %u-bit DMA\n", hw->dma_bits);
		goto err_unmap;
	}
	/*
	 * The engine splits every segment into transfers the device takes
	 * (moex_edu_copy()), so a segment may be as long as a region's: a
	 * huge page stays one entry. PCI's default is 64 KiB.
	 */
	ret = dma_set_max_seg_size(dev, MOEX_MAX_SEGMENT);
	if (ret)
		goto err_unmap;
	pci_set_master(pdev);

	ret = pci_alloc_irq_vectors(pdev, 1, 1, PCI_IRQ_MSI | PCI_IRQ_LEGACY);
	if (ret < 0)
		goto err_master;
	hw->irq = pci_irq_vector(pdev, 0);
	/* clear what a previous driver left pending */
	writel(readl(hw->mmio + EDU_REG_IRQ_STATUS),
	       hw->mmio + EDU_REG_IRQ_ACK);
	ret = request_irq(hw->irq, moex_edu_irq, IRQF_SHARED,
			  MOEX_EDU_DRV_NAME, hw);
	if (ret)
		goto err_vectors;

	ret = -ENOMEM;
	e = moex_edu_engine_create(hw);
	if (!e)
		goto err_irq;
	hw->mdev = moex_dev_add(dev, &e->eng);
	if (IS_ERR(hw->mdev)) {
		ret = PTR_ERR(hw->mdev);
		/* moex_dev_add() failed: the engine is still ours */
		moex_edu_destroy(&e->eng);
		goto err_irq;
	}
	/* from here on the moex_dev owns the engine */
	pci_set_drvdata(pdev, hw);
	return 0;

err_irq:
	free_irq(hw->irq, hw);
err_vectors:
	pci_free_irq_vectors(pdev);
err_master:
	pci_clear_master(pdev);
err_unmap:
	pci_iounmap(pdev, hw->mmio);
err_regions:
	pci_release_regions(pdev);
err_disable:
	pci_disable_device(pdev);
err_free:
	kfree(hw);
	return ret;
}

static void moex_edu_remove(struct pci_dev *pdev)
{
	struct moex_edu_hw *hw = pci_get_drvdata(pdev);

	/* destroys the engine: no DMA runs or starts after this returns */
	moex_dev_remove(hw->mdev);
	free_irq(hw->irq, hw);
	pci_free_irq_vectors(pdev);
	pci_clear_master(pdev);
	pci_iounmap(pdev, hw->mmio);
	pci_release_regions(pdev);
	pci_disable_device(pdev);
	kfree(hw);
}

static const struct pci_device_id moex_edu_ids[] = {
	{ PCI_DEVICE(EDU_PCI_VENDOR_ID, EDU_PCI_DEVICE_ID) },
	{ }
};
MODULE_DEVICE_TABLE(pci, moex_edu_ids);

static struct pci_driver moex_edu_driver = {
	.name = MOEX_EDU_DRV_NAME,
	.id_table = moex_edu_ids,
	.probe = moex_edu_probe,
	.remove = moex_edu_remove,
};

int moex_edu_register(void)
{
	return pci_register_driver(&moex_edu_driver);
}

void moex_edu_unregister(void)
{
	pci_unregister_driver(&moex_edu_driver);
}
