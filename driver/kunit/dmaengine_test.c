// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit: the dmaengine copy engine (engine_dmaengine.c) on a fake
 * DMA_MEMCPY channel, since the test VM has no real one.
 *
 * The fake is a dma_device of one channel, registered with the dmaengine
 * core for a platform device of its own, so that
 * moex_engine_dmaengine_create() finds it as it would an IOAT channel. It
 * copies what it is given with the CPU, from a work item, one descriptor
 * after the other in cookie order, and runs a descriptor's callback after
 * marking its cookie complete, as a driver's tasklet does. It can be told
 * to hold few descriptors at once (a full ring), to refuse to prepare any
 * more after some (a channel that fails midway), to align copies, to be
 * slow, and to say that it completes out of order.
 *
 * The regions are real pages, DMA-mapped for the fake's device one page
 * per segment, so that a copy at odd offsets is cut at both regions' page
 * ends: which pieces the channel is given is known.
 */
#include <kunit/test.h>
#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/dma-direct.h>
#include <linux/dma-mapping.h>
#include <linux/dmaengine.h>
#include <linux/mm.h>
#include <linux/platform_device.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/workqueue.h>

#include "../moex.h"

#define FAKE_NAME	"moex-kunit-dma"
#define REGION_PAGES	8
#define REGION_BYTES	(REGION_PAGES * PAGE_SIZE)

/**
 * struct fake_desc - one prepared copy.
 * @tx: what the engine sees.
 * @dst: destination DMA address.
 * @src: source DMA address.
 * @len: bytes.
 * @node: in fake_dma.submitted, then fake_dma.issued.
 */
struct fake_desc {
	struct dma_async_tx_descriptor tx;
	dma_addr_t dst;
	dma_addr_t src;
	size_t len;
	struct list_head node;
};

/**
 * struct fake_dma - a dma_device with one DMA_MEMCPY channel.
 * @dma: the device registered with the dmaengine core.
 * @chan: its channel.
 * @pdev: the platform device @dma is registered for.
 * @work: runs the issued descriptors.
 * @lock: protects the lists and the counters below it, and @chan's
 *	cookies.
 * @submitted: submitted, not issued yet.
 * @issued: issued, not run yet.
 * @ring: how many descriptors may be prepared and not yet run at once.
 * @live: descriptors prepared and not yet run.
 * @most_live: the most @live ever was.
 * @prepared: descriptors prepared so far.
 * @refuse_after: prepare no more than this many; 0: no limit.
 * @interrupts: descriptors prepared with DMA_PREP_INTERRUPT.
 * @callbacks: descriptors run that had a callback.
 * @too_long: descriptors longer than the device's segment size.
 * @delay_ms: how long each descriptor takes to run.
 * @out_of_order: the channel's status says DMA_OUT_OF_ORDER.
 * @registered: @dma is registered with the dmaengine core.
 */
struct fake_dma {
	struct dma_device dma;
	struct dma_chan chan;
	struct platform_device *pdev;
	struct work_struct work;
	spinlock_t lock;	/* the lists, counters, cookies */
	struct list_head submitted;
	struct list_head issued;
	unsigned int ring;
	unsigned int live;
	unsigned int most_live;
	unsigned int prepared;
	unsigned int refuse_after;
	unsigned int interrupts;
	unsigned int callbacks;
	unsigned int too_long;
	unsigned int delay_ms;
	bool out_of_order;
	bool registered;
};

static struct fake_dma *to_fake(struct dma_chan *chan)
{
	return container_of(chan->device, struct fake_dma, dma);
}

static dma_cookie_t fake_tx_submit(struct dma_async_tx_descriptor *tx)
{
	struct fake_desc *d = container_of(tx, struct fake_desc, tx);
	struct fake_dma *f = to_fake(tx->chan);
	unsigned long flags;

	spin_lock_irqsave(&f->lock, flags);
	tx->cookie = ++f->chan.cookie;
	list_add_tail(&d->node, &f->submitted);
	spin_unlock_irqrestore(&f->lock, flags);
	return tx->cookie;
}

static struct dma_async_tx_descriptor *
fake_prep_memcpy(struct dma_chan *chan, dma_addr_t dst, dma_addr_t src,
		 size_t len, unsigned long prep_flags)
{
	struct fake_dma *f = to_fake(chan);
	struct fake_desc *d;
	unsigned long flags;

	d = kzalloc(sizeof(*d), GFP_NOWAIT);
	if (!d)
		return NULL;
	spin_lock_irqsave(&f->lock, flags);
	if (f->live == f->ring ||
	    (f->refuse_after && f->prepared == f->refuse_after)) {
		spin_unlock_irqrestore(&f->lock, flags);
		kfree(d);
		return NULL;
	}
	f->live++;
	f->most_live = max(f->most_live, f->live);
	f->prepared++;
	if (prep_flags & DMA_PREP_INTERRUPT)
		f->interrupts++;
	if (len > dma_get_max_seg_size(f->dma.dev))
		f->too_long++;
	spin_unlock_irqrestore(&f->lock, flags);

	dma_async_tx_descriptor_init(&d->tx, chan);
	d->tx.flags = prep_flags;
	d->tx.tx_submit = fake_tx_submit;
	d->dst = dst;
	d->src = src;
	d->len = len;
	return &d->tx;
}

static void fake_issue_pending(struct dma_chan *chan)
{
	struct fake_dma *f = to_fake(chan);
	unsigned long flags;

	spin_lock_irqsave(&f->lock, flags);
	list_splice_tail_init(&f->submitted, &f->issued);
	spin_unlock_irqrestore(&f->lock, flags);
	queue_work(system_unbound_wq, &f->work);
}

/* The "hardware": run the issued descriptors in order. */
static void fake_run(struct work_struct *work)
{
	struct fake_dma *f = container_of(work, struct fake_dma, work);
	struct device *dev = f->dma.dev;
	struct dmaengine_result res = { .result = DMA_TRANS_NOERROR };
	struct fake_desc *d;
	unsigned long flags;

	for (;;) {
		spin_lock_irqsave(&f->lock, flags);
		d = list_first_entry_or_null(&f->issued, struct fake_desc,
					     node);
		if (d)
			list_del(&d->node);
		spin_unlock_irqrestore(&f->lock, flags);
		if (!d)
			return;

		if (f->delay_ms)
			msleep(f->delay_ms);
		memcpy(phys_to_virt(dma_to_phys(dev, d->dst)),
		       phys_to_virt(dma_to_phys(dev, d->src)), d->len);

		spin_lock_irqsave(&f->lock, flags);
		f->chan.completed_cookie = d->tx.cookie;
		f->live--;
		if (d->tx.callback_result || d->tx.callback)
			f->callbacks++;
		spin_unlock_irqrestore(&f->lock, flags);
		if (d->tx.callback_result)
			d->tx.callback_result(d->tx.callback_param, &res);
		else if (d->tx.callback)
			d->tx.callback(d->tx.callback_param);
		kfree(d);
	}
}

static enum dma_status fake_tx_status(struct dma_chan *chan,
				      dma_cookie_t cookie,
				      struct dma_tx_state *state)
{
	struct fake_dma *f = to_fake(chan);
	enum dma_status ret;
	unsigned long flags;

	if (f->out_of_order)
		return DMA_OUT_OF_ORDER;
	spin_lock_irqsave(&f->lock, flags);
	ret = dma_async_is_complete(cookie, chan->completed_cookie,
				    chan->cookie);
	spin_unlock_irqrestore(&f->lock, flags);
	return ret;
}

/* Nothing is dropped here: the tests terminate an idle channel only. */
static int fake_terminate_all(struct dma_chan *chan)
{
	return 0;
}

static void fake_synchronize(struct dma_chan *chan)
{
	flush_work(&to_fake(chan)->work);
}

/* The dmaengine core takes a device bound to a driver (its owner). */
static int fake_probe(struct platform_device *pdev)
{
	return 0;
}

static struct platform_driver fake_driver = {
	.driver = { .name = FAKE_NAME },
	.probe = fake_probe,
};

/**
 * struct dmaengine_ctx - one case's fakes, regions and copy.
 * @fakes: the fake channels added, in order.
 * @nr_fakes: how many.
 * @driver_registered: fake_driver is registered.
 * @eng: the engine, until the case destroys it (engine_destroy()).
 * @src: the source region.
 * @dst: the destination region.
 * @pages: @src's pages, then @dst's.
 * @req: the copy.
 * @done: completed by @req's callback.
 * @err: what the callback was given.
 * @calls: how many times it ran.
 */
struct dmaengine_ctx {
	struct fake_dma *fakes[2];
	int nr_fakes;
	bool driver_registered;
	struct moex_engine *eng;
	struct moex_region src, dst;
	struct page *pages[2 * REGION_PAGES];
	struct moex_copy_req req;
	struct completion done;
	int err;
	atomic_t calls;
};

/*
 * A fake channel on platform device @id: @ring descriptors at once,
 * @max_seg bytes a descriptor.
 */
static struct fake_dma *fake_add(struct kunit *test, int id,
				 unsigned int ring, unsigned int max_seg,
				 bool no_order)
{
	struct dmaengine_ctx *ctx = test->priv;
	struct platform_device *pdev;
	struct fake_dma *f;

	f = kunit_kzalloc(test, sizeof(*f), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, f);
	spin_lock_init(&f->lock);
	INIT_LIST_HEAD(&f->submitted);
	INIT_LIST_HEAD(&f->issued);
	INIT_WORK(&f->work, fake_run);
	f->ring = ring;

	pdev = platform_device_register_simple(FAKE_NAME, id, NULL, 0);
	KUNIT_ASSERT_FALSE(test, IS_ERR(pdev));
	f->pdev = pdev;
	ctx->fakes[ctx->nr_fakes++] = f;
	KUNIT_ASSERT_NOT_NULL(test, pdev->dev.driver);
	KUNIT_ASSERT_EQ(test, dma_set_mask_and_coherent(&pdev->dev,
							DMA_BIT_MASK(64)), 0);
	KUNIT_ASSERT_EQ(test, dma_set_max_seg_size(&pdev->dev, max_seg), 0);

	f->dma.dev = &pdev->dev;
	/* private, as IOAT's: no public (async_tx) client takes it */
	dma_cap_set(DMA_PRIVATE, f->dma.cap_mask);
	dma_cap_set(DMA_MEMCPY, f->dma.cap_mask);
	if (no_order)
		dma_cap_set(DMA_COMPLETION_NO_ORDER, f->dma.cap_mask);
	f->dma.device_prep_dma_memcpy = fake_prep_memcpy;
	f->dma.device_issue_pending = fake_issue_pending;
	f->dma.device_tx_status = fake_tx_status;
	f->dma.device_terminate_all = fake_terminate_all;
	f->dma.device_synchronize = fake_synchronize;
	INIT_LIST_HEAD(&f->dma.channels);
	f->chan.device = &f->dma;
	f->chan.cookie = DMA_MIN_COOKIE;
	f->chan.completed_cookie = DMA_MIN_COOKIE;
	list_add_tail(&f->chan.device_node, &f->dma.channels);
	KUNIT_ASSERT_EQ(test, dma_async_device_register(&f->dma), 0);
	f->registered = true;
	return f;
}

static void copy_done(struct moex_copy_req *req, int err)
{
	struct dmaengine_ctx *ctx = container_of(req, struct dmaengine_ctx,
						 req);

	ctx->err = err;
	atomic_inc(&ctx->calls);
	complete(&ctx->done);
}

static int moex_dmaengine_init(struct kunit *test)
{
	struct dmaengine_ctx *ctx;
	struct moex_engine *eng;
	int i, ret;

	ctx = kunit_kzalloc(test, sizeof(*ctx), GFP_KERNEL);
	if (!ctx)
		return -ENOMEM;
	test->priv = ctx;
	/* the cases expect the engine to find their fakes only */
	eng = moex_engine_dmaengine_create();
	if (!IS_ERR(eng)) {
		eng->ops->destroy(eng);
		kunit_skip(test, "this host has a DMA_MEMCPY channel of its own");
	}
	init_completion(&ctx->done);
	ctx->req.complete = copy_done;
	for (i = 0; i < ARRAY_SIZE(ctx->pages); i++) {
		ctx->pages[i] = alloc_page(GFP_KERNEL);
		if (!ctx->pages[i])
			return -ENOMEM;
	}
	/*
	 * Owned by no module: KUnit runs the suites while moex.ko is coming,
	 * before its sysfs directory, where a driver it owned would be
	 * listed, exists. Unregistered before the case ends.
	 */
	ret = __platform_driver_register(&fake_driver, NULL);
	ctx->driver_registered = !ret;
	return ret;
}

static void region_unmap(struct moex_region *r)
{
	if (r->dma_dev)
		dma_unmap_sgtable(r->dma_dev, &r->sgt, DMA_BIDIRECTIONAL,
				  DMA_ATTR_SKIP_CPU_SYNC);
	r->dma_dev = NULL;
	sg_free_table(&r->sgt);
}

static void moex_dmaengine_exit(struct kunit *test)
{
	struct dmaengine_ctx *ctx = test->priv;
	int i;

	if (!ctx)
		return;
	/* a case that failed midway left its engine */
	if (ctx->eng)
		ctx->eng->ops->destroy(ctx->eng);
	region_unmap(&ctx->src);
	region_unmap(&ctx->dst);
	for (i = ctx->nr_fakes - 1; i >= 0; i--) {
		struct fake_dma *f = ctx->fakes[i];

		if (f->registered)
			dma_async_device_unregister(&f->dma);
		flush_work(&f->work);
		platform_device_unregister(f->pdev);
	}
	if (ctx->driver_registered)
		platform_driver_unregister(&fake_driver);
	for (i = 0; i < ARRAY_SIZE(ctx->pages); i++)
		if (ctx->pages[i])
			__free_page(ctx->pages[i]);
}

/*
 * Map @r, REGION_PAGES of the context's pages from @first on, for @f's
 * device as REGION_PIN does: one segment a page, since the fake takes a
 * page a descriptor. Its bytes are @fill, each byte's offset mixed in.
 */
static void region_map(struct kunit *test, struct moex_region *r,
		       struct fake_dma *f, int first, u8 fill)
{
	struct dmaengine_ctx *ctx = test->priv;
	unsigned int max_segment;
	int i, j;

	for (i = 0; i < REGION_PAGES; i++) {
		u8 *p = page_address(ctx->pages[first + i]);

		for (j = 0; j < PAGE_SIZE; j++)
			p[j] = fill ^ (u8)(i * 31 + j);
	}
	r->pages = &ctx->pages[first];
	r->npages = REGION_PAGES;
	r->length = REGION_BYTES;
	max_segment = moex_dma_max_segment(f->dma.dev);
	KUNIT_ASSERT_EQ(test, moex_region_build_sgt(r, max_segment), 0);
	KUNIT_ASSERT_EQ(test, r->sgt.orig_nents, REGION_PAGES);
	KUNIT_ASSERT_EQ(test, dma_map_sgtable(f->dma.dev, &r->sgt,
					      DMA_BIDIRECTIONAL,
					      DMA_ATTR_SKIP_CPU_SYNC), 0);
	r->dma_dev = f->dma.dev;
}

static u8 *region_byte(struct moex_region *r, u64 off)
{
	return (u8 *)page_address(r->pages[off >> PAGE_SHIFT]) +
		offset_in_page(off);
}

/* Are @dst's bytes @src's over the copy, and untouched around it? */
static void expect_copied(struct kunit *test, u8 dst_fill)
{
	struct dmaengine_ctx *ctx = test->priv;
	struct moex_copy_req *req = &ctx->req;
	u64 off, bad = 0;

	for (off = 0; off < REGION_BYTES; off++) {
		u8 want = dst_fill ^ (u8)((off >> PAGE_SHIFT) * 31 +
					  offset_in_page(off));

		if (off >= req->dst_off && off < req->dst_off + req->len)
			want = *region_byte(&ctx->src,
					    req->src_off + off - req->dst_off);
		if (*region_byte(&ctx->dst, off) != want)
			bad++;
	}
	KUNIT_EXPECT_EQ(test, bad, 0);
}

/*
 * Source at 100, destination at 3000, five pages less 7 bytes: the
 * source's page ends fall at 3996 + k * 4096 into the copy, the
 * destination's at 1096 + k * 4096, five of each before its end.
 */
#define ODD_SRC_OFF	100
#define ODD_DST_OFF	3000
#define ODD_LEN		(5 * PAGE_SIZE - 7)
#define ODD_PIECES	11

static void setup_copy(struct kunit *test, struct fake_dma *f)
{
	struct dmaengine_ctx *ctx = test->priv;

	region_map(test, &ctx->src, f, 0, 0x5a);
	region_map(test, &ctx->dst, f, REGION_PAGES, 0xc3);
	ctx->req.src = &ctx->src;
	ctx->req.dst = &ctx->dst;
	ctx->req.src_off = ODD_SRC_OFF;
	ctx->req.dst_off = ODD_DST_OFF;
	ctx->req.len = ODD_LEN;
}

/* The engine moex_engine_dmaengine_create() makes: on @f's channel. */
static struct moex_engine *engine_on(struct kunit *test, struct fake_dma *f)
{
	struct dmaengine_ctx *ctx = test->priv;
	struct moex_engine *eng = moex_engine_dmaengine_create();

	KUNIT_ASSERT_FALSE_MSG(test, IS_ERR(eng), "create: %ld",
			       PTR_ERR_OR_ZERO(eng));
	ctx->eng = eng;
	KUNIT_ASSERT_PTR_EQ(test, eng->dma_dev, f->dma.dev);
	KUNIT_EXPECT_STREQ(test, eng->name, "dmaengine");
	KUNIT_EXPECT_EQ(test, eng->id, MOEX_ENGINE_DMAENGINE);
	KUNIT_EXPECT_EQ(test, eng->dma_bits, 64);
	return eng;
}

static void engine_destroy(struct kunit *test)
{
	struct dmaengine_ctx *ctx = test->priv;

	ctx->eng->ops->destroy(ctx->eng);
	ctx->eng = NULL;
}

/* moex_engine_dmaengine_create() finds no channel it takes. */
static void expect_no_engine(struct kunit *test)
{
	struct moex_engine *eng = moex_engine_dmaengine_create();

	KUNIT_EXPECT_EQ(test, PTR_ERR_OR_ZERO(eng), -ENODEV);
	if (!IS_ERR(eng))
		eng->ops->destroy(eng);
}

static void wait_done(struct kunit *test)
{
	struct dmaengine_ctx *ctx = test->priv;

	KUNIT_ASSERT_NE(test, wait_for_completion_timeout(&ctx->done, 10 * HZ),
			0);
}

/*
 * The odd copy on @f's engine, waited for: it is cut at both regions'
 * segment ends, only the last piece interrupts and completes it, and the
 * bytes around it are untouched.
 */
static void copy_whole(struct kunit *test, struct fake_dma *f)
{
	struct dmaengine_ctx *ctx = test->priv;
	struct moex_engine *eng = engine_on(test, f);

	setup_copy(test, f);
	KUNIT_EXPECT_EQ(test, eng->ops->submit(eng, &ctx->req), 0);
	wait_done(test);
	engine_destroy(test);
	KUNIT_EXPECT_EQ(test, ctx->err, 0);
	KUNIT_EXPECT_EQ(test, atomic_read(&ctx->calls), 1);
	KUNIT_EXPECT_EQ(test, f->prepared, ODD_PIECES);
	KUNIT_EXPECT_EQ(test, f->interrupts, 1);
	KUNIT_EXPECT_EQ(test, f->callbacks, 1);
	KUNIT_EXPECT_EQ(test, f->too_long, 0);
	expect_copied(test, 0xc3);
}

static void copy_in_pieces(struct kunit *test)
{
	copy_whole(test, fake_add(test, 0, 64, PAGE_SIZE, false));
}

/*
 * A channel that holds fewer descriptors than the copy has pieces: the
 * engine runs what it queued and prepares again (IOAT's ring is 64K
 * descriptors; a 1 GiB copy of 4 KiB pages is 256K pieces).
 */
static void copy_waits_for_full_ring(struct kunit *test)
{
	struct fake_dma *f = fake_add(test, 0, 3, PAGE_SIZE, false);

	copy_whole(test, f);
	KUNIT_EXPECT_LE(test, f->most_live, 3);
}

/*
 * A channel that prepares no more after four pieces: submit fails with
 * -ENOMEM, the callback never runs, and the four pieces have run by the
 * time submit returns (they read and write the regions, which the caller
 * releases then).
 */
static void copy_prep_failure_drains(struct kunit *test)
{
	struct dmaengine_ctx *ctx = test->priv;
	struct fake_dma *f = fake_add(test, 0, 64, PAGE_SIZE, false);
	struct moex_engine *eng = engine_on(test, f);

	f->refuse_after = 4;
	f->delay_ms = 20;
	setup_copy(test, f);
	KUNIT_EXPECT_EQ(test, eng->ops->submit(eng, &ctx->req), -ENOMEM);
	KUNIT_EXPECT_EQ(test, f->live, 0);
	KUNIT_EXPECT_EQ(test, f->chan.completed_cookie, f->chan.cookie);
	engine_destroy(test);
	KUNIT_EXPECT_EQ(test, atomic_read(&ctx->calls), 0);
	KUNIT_EXPECT_EQ(test, f->prepared, 4);
	KUNIT_EXPECT_EQ(test, f->callbacks, 0);
}

/* What the channel cannot align to is copied by the CPU, at once. */
static void copy_unaligned_by_cpu(struct kunit *test)
{
	struct dmaengine_ctx *ctx = test->priv;
	struct fake_dma *f = fake_add(test, 0, 64, PAGE_SIZE, false);
	struct moex_engine *eng;

	f->dma.copy_align = DMAENGINE_ALIGN_8_BYTES;
	eng = engine_on(test, f);
	setup_copy(test, f);
	KUNIT_EXPECT_EQ(test, eng->ops->submit(eng, &ctx->req), 0);
	KUNIT_EXPECT_EQ(test, atomic_read(&ctx->calls), 1);
	engine_destroy(test);
	KUNIT_EXPECT_EQ(test, ctx->err, 0);
	KUNIT_EXPECT_EQ(test, f->prepared, 0);
	expect_copied(test, 0xc3);
}

/* destroy() returns once every submitted copy completed. */
static void destroy_waits_for_copies(struct kunit *test)
{
	struct dmaengine_ctx *ctx = test->priv;
	struct fake_dma *f = fake_add(test, 0, 64, PAGE_SIZE, false);
	struct moex_engine *eng = engine_on(test, f);

	f->delay_ms = 10;
	setup_copy(test, f);
	KUNIT_EXPECT_EQ(test, eng->ops->submit(eng, &ctx->req), 0);
	engine_destroy(test);
	KUNIT_EXPECT_EQ(test, atomic_read(&ctx->calls), 1);
	KUNIT_EXPECT_EQ(test, ctx->err, 0);
	expect_copied(test, 0xc3);
}

/*
 * A device that completes out of order (Intel DSA) is passed over for an
 * in-order one registered after it; alone, it gives -ENODEV.
 */
static void create_skips_out_of_order(struct kunit *test)
{
	struct fake_dma *dsa = fake_add(test, 0, 64, PAGE_SIZE, true);
	struct fake_dma *ioat;

	dsa->out_of_order = true;
	expect_no_engine(test);

	ioat = fake_add(test, 1, 64, PAGE_SIZE, false);
	engine_on(test, ioat);
	engine_destroy(test);
}

/* A driver that says it only in its status is not used either. */
static void create_checks_status(struct kunit *test)
{
	struct fake_dma *f = fake_add(test, 0, 64, PAGE_SIZE, false);

	f->out_of_order = true;
	expect_no_engine(test);
	/* and the channel was given back: it can be taken again */
	f->out_of_order = false;
	engine_on(test, f);
	engine_destroy(test);
}

static struct kunit_case moex_dmaengine_cases[] = {
	KUNIT_CASE(copy_in_pieces),
	KUNIT_CASE(copy_waits_for_full_ring),
	KUNIT_CASE(copy_prep_failure_drains),
	KUNIT_CASE(copy_unaligned_by_cpu),
	KUNIT_CASE(destroy_waits_for_copies),
	KUNIT_CASE(create_skips_out_of_order),
	KUNIT_CASE(create_checks_status),
	{}
};

static struct kunit_suite moex_dmaengine_suite = {
	.name = "moex_dmaengine",
	.init = moex_dmaengine_init,
	.exit = moex_dmaengine_exit,
	.test_cases = moex_dmaengine_cases,
};

kunit_test_suite(moex_dmaengine_suite);
