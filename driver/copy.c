// SPDX-License-Identifier: GPL-2.0
/*
 * moex COPY: check a copy between two regions of one file and run it on the
 * device's engine, for the ioctl (which waits for it) and for uring_cmd
 * (which does not); and the CPU copy between a region and an io_uring fixed
 * buffer.
 *
 * A copy is a struct moex_copy_op with two references: the submitter's and
 * the engine's. Whoever drops the last one releases the regions and the
 * device, so a submitter that stops waiting (a fatal signal) or never waits
 * (uring_cmd) leaves nothing behind and nothing used after free. Counters
 * move in the completion, so they are exact whatever the submitter does.
 *
 * The completion, which may run in IRQ context, hands the engine's
 * reference to whoever reports the result: the waiting ioctl, the uring
 * path's notify callback, or the submitter when the engine completed
 * before submit returned (the CPU engine always does). That side drops it
 * in process context before user space sees the result, so a copy that
 * returned has released its regions: an UNPIN right after it finds them
 * free. Only when nobody waits any more (a killed ioctl) does the
 * completion drop it, through a work item. struct moex_copy_op.state
 * decides which, without a lock.
 */
#include <linux/completion.h>
#include <linux/dma-mapping.h>
#include <linux/highmem.h>
#include <linux/refcount.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/uio.h>
#include <linux/workqueue.h>

#include "moex.h"

/* Pages copied between two cond_resched() calls by moex_copy_fixed(). */
#define MOEX_FIXED_RESCHED_PAGES	64

/* struct moex_copy_op.state */
enum {
	MOEX_OP_SUBMITTING,	/* submitting, or the ioctl is waiting */
	MOEX_OP_QUEUED,		/* moex_copy_async() returned -EIOCBQUEUED */
	MOEX_OP_ABANDONED,	/* a fatal signal ended the ioctl's wait */
	MOEX_OP_DONE,		/* completed: the submitter takes over */
};

/**
 * struct moex_copy_op - one COPY in flight.
 * @req: what the engine sees.
 * @mdev: the device whose counters the completion moves (holds a
 *	reference).
 * @refs: the submitter's and the engine's reference; the completion
 *	hands the engine's over as described at the top of this file.
 * @done: completed by the engine's completion unless it notifies; the
 *	ioctl waits on it.
 * @err: the engine's result, valid once @done completed.
 * @state: MOEX_OP_*; moved with atomic_cmpxchg() by the submitter and the
 *	completion, so exactly one of them reports the result.
 * @notify: the uring path's callback, NULL for the ioctl.
 * @cookie: @notify's argument.
 * @free_work: frees the op when the completion of an abandoned ioctl
 *	drops the last reference (it may run in IRQ context).
 */
struct moex_copy_op {
	struct moex_copy_req req;
	struct moex_dev *mdev;
	refcount_t refs;
	struct completion done;
	int err;
	atomic_t state;
	void (*notify)(void *cookie, struct moex_copy_op *op, int err);
	void *cookie;
	struct work_struct free_work;
};

static void moex_copy_op_free(struct moex_copy_op *op)
{
	moex_region_put(op->req.src);
	moex_region_put(op->req.dst);
	moex_dev_put(op->mdev);
	kfree(op);
}

static void moex_copy_op_free_work(struct work_struct *work)
{
	moex_copy_op_free(container_of(work, struct moex_copy_op, free_work));
}

/**
 * moex_copy_op_put() - drop a reference to a COPY in flight.
 * @op: the op.
 *
 * Process context only: the last put releases the regions, which sleeps.
 */
void moex_copy_op_put(struct moex_copy_op *op)
{
	if (refcount_dec_and_test(&op->refs))
		moex_copy_op_free(op);
}

static void moex_copy_count(struct moex_stats *st, u64 len, int err)
{
	if (err) {
		atomic64_inc(&st->copy_failures);
	} else {
		atomic64_inc(&st->copy_calls);
		atomic64_add(len, &st->copy_bytes);
	}
}

static void moex_copy_complete(struct moex_copy_req *req, int err)
{
	struct moex_copy_op *op = container_of(req, struct moex_copy_op, req);

	moex_copy_count(&op->mdev->stats, req->len, err);
	op->err = err;
	/* Fully ordered: a submitter that sees MOEX_OP_DONE sees @err. */
	switch (atomic_cmpxchg(&op->state, MOEX_OP_SUBMITTING, MOEX_OP_DONE)) {
	case MOEX_OP_QUEUED:
		op->notify(op->cookie, op, err);
		break;
	case MOEX_OP_ABANDONED:
		if (refcount_dec_and_test(&op->refs))
			queue_work(moex_wq, &op->free_work);
		break;
	default:
		/* The submitter holds the engine's reference now. */
		complete_all(&op->done);
		break;
	}
}

/*
 * The submitter saw MOEX_OP_DONE, so it holds both references: wait until
 * the completion has left complete_all() (at once, or nearly: a completed
 * @done lets any number of waits through), release the regions and return
 * the engine's result.
 */
static int moex_copy_op_finish(struct moex_copy_op *op)
{
	int err;

	wait_for_completion(&op->done);
	err = op->err;
	moex_copy_op_free(op);
	return err;
}

/* Is [@off, @off + @len) inside [0, @size), without overflowing? */
MOEX_STATIC_UNLESS_KUNIT bool moex_in_range(u64 off, u64 len, u64 size)
{
	return off <= size && len <= size - off;
}

/**
 * moex_copy_check() - check a COPY payload on its own.
 * @arg: the payload.
 * @flags: the MOEX_COPY_* flags this path accepts: 0 for the ioctl,
 *	%MOEX_COPY_FLAGS_ALL for uring_cmd.
 *
 * Return: 0 or -EINVAL (no counter moves).
 */
int moex_copy_check(const struct moex_copy *arg, u32 flags)
{
	if (arg->flags & ~flags || arg->pad ||
	    !moex_all_zero(arg->reserved, ARRAY_SIZE(arg->reserved)))
		return -EINVAL;
	if (!arg->length)
		return -EINVAL;
	if ((arg->flags & MOEX_COPY_FLAGS_ALL) == MOEX_COPY_FLAGS_ALL ||
	    (arg->flags & MOEX_COPY_SRC_FIXED && arg->src_handle) ||
	    (arg->flags & MOEX_COPY_DST_FIXED && arg->dst_handle))
		return -EINVAL;
	return 0;
}

MOEX_STATIC_UNLESS_KUNIT int
moex_copy_check_regions(const struct moex_copy *arg, struct moex_region *src,
			struct moex_region *dst)
{
	if (!moex_in_range(arg->src_offset, arg->length, src->length) ||
	    !moex_in_range(arg->dst_offset, arg->length, dst->length))
		return -ERANGE;
	if (test_bit(MOEX_REGION_B_READONLY, &dst->flags))
		return -EACCES;
	if (src == dst && arg->src_offset < arg->dst_offset + arg->length &&
	    arg->dst_offset < arg->src_offset + arg->length)
		return -EINVAL;
	return 0;
}

/*
 * Check a copy between two regions and hand it to the engine. On success
 * *@opp holds the submitter's reference (put it with moex_copy_op_put())
 * and the completion has run or will run exactly once.
 */
static int moex_copy_submit(struct moex_file *mf, const struct moex_copy *arg,
			    void (*notify)(void *cookie,
					   struct moex_copy_op *op, int err),
			    void *cookie, struct moex_copy_op **opp)
{
	struct moex_dev *mdev = mf->mdev;
	struct moex_region *src, *dst;
	struct moex_copy_op *op;
	int ret;

	ret = moex_copy_check(arg, 0);
	if (ret)
		return ret;

	ret = -ENOENT;
	src = moex_region_lookup(mf, arg->src_handle);
	if (!src)
		return ret;
	dst = moex_region_lookup(mf, arg->dst_handle);
	if (!dst)
		goto err_src;
	ret = moex_copy_check_regions(arg, src, dst);
	if (ret)
		goto err_dst;

	ret = -ENOMEM;
	op = kzalloc(sizeof(*op), GFP_KERNEL);
	if (!op)
		goto err_dst;
	op->req.src = src;
	op->req.dst = dst;
	op->req.src_off = arg->src_offset;
	op->req.dst_off = arg->dst_offset;
	op->req.len = arg->length;
	op->req.complete = moex_copy_complete;
	moex_dev_get(mdev);
	op->mdev = mdev;
	refcount_set(&op->refs, 2);
	init_completion(&op->done);
	atomic_set(&op->state, MOEX_OP_SUBMITTING);
	op->notify = notify;
	op->cookie = cookie;
	INIT_WORK(&op->free_work, moex_copy_op_free_work);

	down_read(&mdev->engine_lock);
	if (mdev->engine) {
		ret = mdev->engine->ops->submit(mdev->engine, &op->req);
		if (ret)
			atomic64_inc(&mdev->stats.copy_failures);
	} else {
		ret = -ENODEV;
	}
	up_read(&mdev->engine_lock);
	if (ret) {
		/* The engine never saw it: nobody else holds a reference. */
		moex_copy_op_free(op);
		return ret;
	}
	*opp = op;
	return 0;

err_dst:
	moex_region_put(dst);
err_src:
	moex_region_put(src);
	return ret;
}

/**
 * moex_copy() - COPY: copy between two regions and wait for the engine.
 * @mf: the open file that names both regions.
 * @arg: the payload.
 *
 * When it returns, the copy's regions are released (an UNPIN that follows
 * unpins at once), except after -EINTR.
 *
 * Return: 0; -EINVAL, -ENOENT, -ERANGE or -EACCES for bad arguments (no
 * counter moves); -ENOMEM when the op cannot be allocated and -ENODEV
 * when the device is gone (neither moves a counter); -EINTR when a fatal
 * signal ended the wait (the copy still finishes and is counted, and its
 * completion releases the regions); or the engine's error (copy_failures
 * moves).
 */
int moex_copy(struct moex_file *mf, struct moex_copy *arg)
{
	struct moex_copy_op *op;
	int ret;

	ret = moex_copy_submit(mf, arg, NULL, NULL, &op);
	if (ret)
		return ret;
	if (wait_for_completion_killable(&op->done) &&
	    atomic_cmpxchg(&op->state, MOEX_OP_SUBMITTING, MOEX_OP_ABANDONED) ==
	    MOEX_OP_SUBMITTING) {
		moex_copy_op_put(op);
		return -EINTR;
	}
	return moex_copy_op_finish(op);
}

/**
 * moex_copy_async() - COPY without waiting (the uring_cmd path).
 * @mf: the open file that names both regions.
 * @arg: the payload.
 * @notify: called exactly once with @cookie, the op and the result when
 *	this returns -EIOCBQUEUED, from any context (the engine's IRQ handler
 *	included), possibly before this returns; never called otherwise. It
 *	owns a reference to the op: it must moex_copy_op_put() it, from
 *	process context, before it reports the result.
 * @cookie: passed to @notify.
 *
 * The op holds both regions and the device until the engine is done, so
 * the caller may go away at once. Sleeps.
 *
 * Return: -EIOCBQUEUED when the copy is in flight; otherwise the result of
 * a copy that was refused or already finished, as moex_copy() returns it.
 */
int moex_copy_async(struct moex_file *mf, const struct moex_copy *arg,
		    void (*notify)(void *cookie, struct moex_copy_op *op,
				   int err),
		    void *cookie)
{
	struct moex_copy_op *op;
	int ret;

	ret = moex_copy_submit(mf, arg, notify, cookie, &op);
	if (ret)
		return ret;
	/*
	 * The submitter's reference goes first, never the last: once the
	 * state says QUEUED, @notify may run (from io_uring task work, on
	 * another thread than an io-wq issuer) and post the CQE, and the
	 * regions must be released by then. With MOEX_OP_DONE this side
	 * holds the engine's reference and frees the op itself.
	 */
	refcount_dec(&op->refs);
	if (atomic_cmpxchg(&op->state, MOEX_OP_SUBMITTING, MOEX_OP_QUEUED) ==
	    MOEX_OP_DONE)
		return moex_copy_op_finish(op);
	return -EIOCBQUEUED;
}

/* Copy between @iter and bytes [@off, @off + @len) of @r's pages. */
static int moex_copy_iter(struct moex_region *r, u64 off, u64 len,
			  struct iov_iter *iter, bool to_region)
{
	unsigned int n = 0;

	while (len) {
		unsigned int po = offset_in_page(off);
		size_t chunk = min_t(u64, len, PAGE_SIZE - po);
		void *p = kmap_local_page(r->pages[off >> PAGE_SHIFT]);
		size_t done;

		if (to_region)
			done = copy_from_iter(p + po, chunk, iter);
		else
			done = copy_to_iter(p + po, chunk, iter);
		kunmap_local(p);
		if (done != chunk)
			return -EFAULT;
		off += chunk;
		len -= chunk;
		if (++n % MOEX_FIXED_RESCHED_PAGES == 0)
			cond_resched();
	}
	return 0;
}

/**
 * moex_copy_fixed() - COPY between a region and an io_uring fixed buffer.
 * @mf: the open file naming the region.
 * @arg: the payload, with exactly one MOEX_COPY_*_FIXED flag.
 * @iter: the fixed buffer's @arg->length bytes (io_uring_cmd_import_fixed():
 *	an ITER_SOURCE iterator with %MOEX_COPY_SRC_FIXED, ITER_DEST with
 *	%MOEX_COPY_DST_FIXED).
 *
 * The CPU copies, in the caller's context and on every engine: the fixed
 * buffer's pages are pinned by io_uring but not DMA-mapped for the engine.
 * A DMA-mapped region needs no sync: its pages are the CPU's between the
 * engine's copies (moex_dma_sync_piece()). The engine lock is held for
 * read, so a removed device fails with -ENODEV as for moex_copy(). Sleeps.
 *
 * Return: 0, or the errnos of moex_copy() (only copy failures move
 * copy_failures), or -EFAULT when the fixed buffer's pages cannot be
 * copied (copy_failures moves).
 */
int moex_copy_fixed(struct moex_file *mf, const struct moex_copy *arg,
		    struct iov_iter *iter)
{
	bool to_region = arg->flags & MOEX_COPY_SRC_FIXED;
	u32 handle = to_region ? arg->dst_handle : arg->src_handle;
	u64 off = to_region ? arg->dst_offset : arg->src_offset;
	struct moex_dev *mdev = mf->mdev;
	struct moex_region *r;
	int ret;

	ret = moex_copy_check(arg, MOEX_COPY_FLAGS_ALL);
	if (ret)
		return ret;
	if (!(arg->flags & MOEX_COPY_FLAGS_ALL) ||
	    iov_iter_count(iter) != arg->length)
		return -EINVAL;

	r = moex_region_lookup(mf, handle);
	if (!r)
		return -ENOENT;
	ret = -ERANGE;
	if (!moex_in_range(off, arg->length, r->length))
		goto out;
	ret = -EACCES;
	if (to_region && test_bit(MOEX_REGION_B_READONLY, &r->flags))
		goto out;

	down_read(&mdev->engine_lock);
	if (mdev->engine) {
		ret = moex_copy_iter(r, off, arg->length, iter, to_region);
		moex_copy_count(&mdev->stats, arg->length, ret);
	} else {
		ret = -ENODEV;
	}
	up_read(&mdev->engine_lock);
out:
	moex_region_put(r);
	return ret;
}
