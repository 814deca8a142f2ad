// SPDX-License-Identifier: GPL-2.0
/*
 * moex COPY: check a copy between two regions of one file and run it on the
 * device's engine.
 *
 * A copy is a struct moex_copy_op with two references: the submitter's and
 * the engine's (dropped by the completion). Whoever drops the last one
 * releases the regions, so a submitter that stops waiting (a fatal signal)
 * leaves nothing behind and nothing used after free. Counters move in the
 * completion, so they are exact whatever the submitter does.
 */
#include <linux/completion.h>
#include <linux/refcount.h>
#include <linux/slab.h>
#include <linux/workqueue.h>

#include "moex.h"

/**
 * struct moex_copy_op - one COPY in flight.
 * @req: what the engine sees.
 * @mdev: the device whose counters the completion moves.
 * @refs: the submitter's and the engine's reference.
 * @done: completed by the engine's completion.
 * @err: the engine's result, valid once @done completed.
 * @free_work: frees the op when the completion, which may run in IRQ
 *	context, drops the last reference.
 */
struct moex_copy_op {
	struct moex_copy_req req;
	struct moex_dev *mdev;
	refcount_t refs;
	struct completion done;
	int err;
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

/* Process context only: the last put releases regions, which sleeps. */
static void moex_copy_op_put(struct moex_copy_op *op)
{
	if (refcount_dec_and_test(&op->refs))
		moex_copy_op_free(op);
}

static void moex_copy_complete(struct moex_copy_req *req, int err)
{
	struct moex_copy_op *op = container_of(req, struct moex_copy_op, req);
	struct moex_stats *st = &op->mdev->stats;

	if (err) {
		atomic64_inc(&st->copy_failures);
	} else {
		atomic64_inc(&st->copy_calls);
		atomic64_add(req->len, &st->copy_bytes);
	}
	op->err = err;
	complete(&op->done);
	if (refcount_dec_and_test(&op->refs))
		queue_work(moex_wq, &op->free_work);
}

static bool moex_in_range(u64 off, u64 len, u64 size)
{
	return off <= size && len <= size - off;
}

static int moex_copy_check(const struct moex_copy *arg)
{
	if (arg->flags || arg->pad ||
	    !moex_all_zero(arg->reserved, ARRAY_SIZE(arg->reserved)))
		return -EINVAL;
	if (!arg->length)
		return -EINVAL;
	return 0;
}

static int moex_copy_check_regions(const struct moex_copy *arg,
				   struct moex_region *src,
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

/**
 * moex_copy() - COPY: copy between two regions and wait for the engine.
 * @mf: the open file that names both regions.
 * @arg: the payload.
 *
 * Return: 0; -EINVAL, -ENOENT, -ERANGE or -EACCES for bad arguments (no
 * counter moves); -ENODEV when the device is gone; -EINTR when a fatal
 * signal ended the wait (the copy still finishes and is counted); or the
 * engine's error (copy_failures moves).
 */
int moex_copy(struct moex_file *mf, struct moex_copy *arg)
{
	struct moex_dev *mdev = mf->mdev;
	struct moex_region *src, *dst;
	struct moex_copy_op *op;
	int ret;

	ret = moex_copy_check(arg);
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

	ret = wait_for_completion_killable(&op->done);
	if (!ret)
		ret = op->err;
	moex_copy_op_put(op);
	return ret;

err_dst:
	moex_region_put(dst);
err_src:
	moex_region_put(src);
	return ret;
}
