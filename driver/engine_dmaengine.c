// SPDX-License-Identifier: GPL-2.0
/*
 * moex dmaengine engine: copies with any dmaengine channel that has the
 * DMA_MEMCPY capability (an Intel IOAT/DSA, a PL330, ...), for /dev/moex0.
 *
 * The test VM has no DMA_MEMCPY channel: there
 * moex_engine_dmaengine_create() returns -ENODEV and main.c falls back to
 * the CPU engine. KUnit runs this engine on a fake channel instead
 * (driver/kunit/dmaengine_test.c); no real one has run it.
 *
 * It is kept small on purpose: one descriptor per DMA-contiguous piece,
 * all submitted in order, and only the last one interrupts and completes
 * the request. That needs a channel that completes descriptors in order
 * (IOAT, PL330 and most others do). A channel whose device has
 * DMA_COMPLETION_NO_ORDER (Intel DSA, idxd) is passed over for another
 * device's; one whose status alone says DMA_OUT_OF_ORDER is refused, and
 * /dev/moex0 then gets the CPU engine, as it does where no channel is
 * left. A descriptor that cannot be prepared because the channel's ring
 * is full is tried again once the request's pieces so far have run, and
 * others' pieces have had a moment to.
 *
 * Requests from several submitters may share the channel at the same time,
 * so nothing here terminates the channel while a request is in flight
 * (that would drop other requests without their callbacks). destroy()
 * waits for the in-flight count to reach zero first.
 */
#include <linux/delay.h>
#include <linux/dma-mapping.h>
#include <linux/dmaengine.h>
#include <linux/slab.h>
#include <linux/wait_bit.h>

#include "moex.h"

/**
 * struct moex_dmaengine - a copy engine on one dmaengine channel.
 * @eng: the generic engine; @eng.dma_dev holds a reference on the
 *	channel's device.
 * @chan: the channel, held exclusively until destroy().
 * @inflight: requests whose last descriptor was submitted and whose
 *	callback has not run yet; destroy() waits for it to drop to zero.
 */
struct moex_dmaengine {
	struct moex_engine eng;
	struct dma_chan *chan;
	atomic_t inflight;
};

static struct moex_dmaengine *to_moex_dmaengine(struct moex_engine *eng)
{
	return container_of(eng, struct moex_dmaengine, eng);
}

/**
 * struct moex_dmaengine_cb - what the last descriptor's callback needs.
 * @e: the engine.
 * @req: the request to complete.
 */
struct moex_dmaengine_cb {
	struct moex_dmaengine *e;
	struct moex_copy_req *req;
};

/* The last descriptor of a request is done (any context). */
static void moex_dmaengine_done(void *param,
				const struct dmaengine_result *result)
{
	struct moex_dmaengine_cb *cb = param;
	struct moex_dmaengine *e = cb->e;
	struct moex_copy_req *req = cb->req;
	int err = result->result == DMA_TRANS_NOERROR ? 0 : -EIO;

	/* what the channel wrote, for the CPU (moex_dma_sync_piece()) */
	moex_dma_sync_range(req->dst, req->dst_off, req->len, false);
	kfree(cb);
	req->complete(req, err);
	/* wake_up_var() uses the address only as a key; destroy() syncs */
	if (atomic_dec_and_test(&e->inflight))
		wake_up_var(&e->inflight);
}

/*
 * Run what was submitted and wait until the channel is past @tail: when
 * the ring is full (moex_dmaengine_prep()), and when preparing a
 * descriptor failed midway (those pieces have no callback), so that the
 * caller may release the memory once we return.
 */
static void moex_dmaengine_drain(struct dma_chan *chan, dma_cookie_t tail)
{
	dma_async_issue_pending(chan);
	while (dma_async_is_tx_complete(chan, tail, NULL, NULL) ==
	       DMA_IN_PROGRESS)
		usleep_range(100, 1000);
}

/* Times a descriptor is prepared again when the channel's ring is full. */
#define MOEX_DMAENGINE_PREP_TRIES	100

/*
 * A descriptor for one piece. NULL from the channel usually means its
 * ring is full (IOAT's holds 64K descriptors: a 1 GiB copy of 4 KiB
 * pages is 256K pieces): run what is queued, wait for this request's last
 * piece (@tail), and a little more for other requests' pieces on the
 * channel, which may hold the ring too, then try again.
 */
static struct dma_async_tx_descriptor *
moex_dmaengine_prep(struct dma_chan *chan, dma_addr_t d, dma_addr_t s, u64 n,
		    unsigned long flags, dma_cookie_t tail)
{
	struct dma_async_tx_descriptor *tx;
	int tries;

	for (tries = 0; tries < MOEX_DMAENGINE_PREP_TRIES; tries++) {
		tx = dmaengine_prep_dma_memcpy(chan, d, s, n, flags);
		if (tx)
			return tx;
		if (!dma_submit_error(tail))
			moex_dmaengine_drain(chan, tail);
		else
			dma_async_issue_pending(chan);
		usleep_range(100, 1000);
	}
	return NULL;
}

static int moex_dmaengine_submit(struct moex_engine *eng,
				 struct moex_copy_req *req)
{
	struct moex_dmaengine *e = to_moex_dmaengine(eng);
	struct dma_chan *chan = e->chan;
	struct dma_device *dma = chan->device;
	u64 max = dma_get_max_seg_size(dma->dev);
	struct dma_async_tx_descriptor *tx;
	dma_cookie_t cookie, tail = -EINVAL;
	struct moex_dma_cursor sc, dc;
	struct moex_dmaengine_cb *cb;
	u64 left = req->len;
	int ret;

	/*
	 * Segments start page aligned: checking the offsets is enough. The
	 * uapi promises copies at any byte offset, so what the channel cannot
	 * align to is copied by the CPU (DMA-coherent hosts only, like every
	 * host with a memcpy channel this driver binds: x86).
	 */
	if (!is_dma_copy_aligned(dma, req->src_off, req->dst_off, req->len)) {
		moex_cpu_copy(req);
		return 0;
	}
	if (moex_dma_cursor_init(&sc, req->src, req->src_off) ||
	    moex_dma_cursor_init(&dc, req->dst, req->dst_off))
		return -EINVAL;

	cb = kmalloc(sizeof(*cb), GFP_KERNEL);
	if (!cb)
		return -ENOMEM;
	cb->e = e;
	cb->req = req;

	while (left) {
		unsigned long flags = DMA_CTRL_ACK;
		dma_addr_t s, d;
		u64 n;

		/* 0: a cursor ran off its mapping */
		ret = -EINVAL;
		n = moex_dma_chunk(&sc, &dc, left, max, &s, &d);
		if (!n)
			goto err;
		if (n == left)
			flags |= DMA_PREP_INTERRUPT;

		moex_dma_sync_piece(req->src, s, n, true);
		moex_dma_sync_piece(req->dst, d, n, true);
		ret = -ENOMEM;
		tx = moex_dmaengine_prep(chan, d, s, n, flags, tail);
		if (!tx)
			goto err;
		if (n == left) {
			tx->callback_result = moex_dmaengine_done;
			tx->callback_param = cb;
			atomic_inc(&e->inflight);
		}
		cookie = dmaengine_submit(tx);
		if (dma_submit_error(cookie)) {
			if (n == left)
				atomic_dec(&e->inflight);
			goto err;
		}
		tail = cookie;

		moex_dma_cursor_advance(&sc, n);
		moex_dma_cursor_advance(&dc, n);
		left -= n;
	}
	dma_async_issue_pending(chan);
	return 0;

err:
	/* the last descriptor was not submitted: no callback will run */
	if (!dma_submit_error(tail))
		moex_dmaengine_drain(chan, tail);
	kfree(cb);
	return ret;
}

/* Called once, after the last submit. */
static void moex_dmaengine_destroy(struct moex_engine *eng)
{
	struct moex_dmaengine *e = to_moex_dmaengine(eng);

	wait_var_event(&e->inflight, !atomic_read(&e->inflight));
	/* nothing is queued; this also waits for callbacks still running */
	dmaengine_terminate_sync(e->chan);
	dma_release_channel(e->chan);
	put_device(e->eng.dma_dev);
	kfree(e);
}

static const struct moex_engine_ops moex_dmaengine_ops = {
	.submit = moex_dmaengine_submit,
	.destroy = moex_dmaengine_destroy,
};

/*
 * dma_request_channel()'s filter: a channel whose device completes
 * descriptors out of order (DMA_COMPLETION_NO_ORDER: Intel DSA) is
 * passed over, so that an in-order channel of another device is taken.
 */
static bool moex_dmaengine_in_order(struct dma_chan *chan, void *param)
{
	return !dma_has_cap(DMA_COMPLETION_NO_ORDER, chan->device->cap_mask);
}

/**
 * moex_engine_dmaengine_create() - an engine on a DMA_MEMCPY channel.
 *
 * Return: the engine, or an ERR_PTR(): -ENODEV when the host has no such
 * channel (the usual case in a VM), or only ones that complete
 * descriptors out of order.
 */
struct moex_engine *moex_engine_dmaengine_create(void)
{
	struct moex_dmaengine *e;
	struct dma_chan *chan;
	dma_cap_mask_t mask;
	struct device *dev;

	dma_cap_zero(mask);
	dma_cap_set(DMA_MEMCPY, mask);
	chan = dma_request_channel(mask, moex_dmaengine_in_order, NULL);
	if (!chan)
		return ERR_PTR(-ENODEV);
	/*
	 * The capability is how a driver says it (provider.rst); its status
	 * of the last cookie must then say DMA_OUT_OF_ORDER too. Check that
	 * as well, for a driver that says it only there.
	 */
	if (dmaengine_tx_status(chan, chan->cookie, NULL) == DMA_OUT_OF_ORDER) {
		dev_info(chan->device->dev,
			 "moex: %s completes copies out of order, not used\n",
			 dma_chan_name(chan));
		dma_release_channel(chan);
		return ERR_PTR(-ENODEV);
	}

	e = kzalloc(sizeof(*e), GFP_KERNEL);
	if (!e) {
		dma_release_channel(chan);
		return ERR_PTR(-ENOMEM);
	}
	dev = chan->device->dev;
	e->chan = chan;
	atomic_set(&e->inflight, 0);
	e->eng.ops = &moex_dmaengine_ops;
	e->eng.id = MOEX_ENGINE_DMAENGINE;
	e->eng.name = "dmaengine";
	e->eng.dma_dev = get_device(dev);
	e->eng.dma_bits = fls64(dma_get_mask(dev));
	return &e->eng;
}
