// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit: the per-file handle table (struct moex_file.regions, an
 * XA_FLAGS_ALLOC1 xarray as moex_open() makes it): moex_handle_alloc(),
 * moex_region_lookup(), moex_region_unpin(), moex_region_pin_undo(),
 * moex_region_info() and moex_file_release_regions().
 *
 * The regions are bare structs: each case holds a reference of its own on
 * every region, so the table's puts never release one (that would unpin
 * pages these regions do not have), and checks the reference counts.
 */
#include <kunit/test.h>
#include <linux/xarray.h>

#include "../moex.h"

struct handle_ctx {
	struct moex_dev *mdev;
	struct moex_file a, b;
};

static int moex_handle_init(struct kunit *test)
{
	struct handle_ctx *ctx = kunit_kzalloc(test, sizeof(*ctx), GFP_KERNEL);

	if (!ctx)
		return -ENOMEM;
	ctx->mdev = kunit_kzalloc(test, sizeof(*ctx->mdev), GFP_KERNEL);
	if (!ctx->mdev)
		return -ENOMEM;
	moex_dev_init_locks(ctx->mdev);
	/* as moex_open() does */
	ctx->a.mdev = ctx->mdev;
	xa_init_flags(&ctx->a.regions, XA_FLAGS_ALLOC1);
	ctx->b.mdev = ctx->mdev;
	xa_init_flags(&ctx->b.regions, XA_FLAGS_ALLOC1);
	test->priv = ctx;
	return 0;
}

static void moex_handle_exit(struct kunit *test)
{
	struct handle_ctx *ctx = test->priv;

	if (!ctx)
		return;
	/* the regions are the test's memory: just forget the entries */
	xa_destroy(&ctx->a.regions);
	xa_destroy(&ctx->b.regions);
}

static struct moex_region *new_region(struct kunit *test)
{
	struct handle_ctx *ctx = test->priv;
	struct moex_region *r = kunit_kzalloc(test, sizeof(*r), GFP_KERNEL);

	KUNIT_ASSERT_NOT_NULL(test, r);
	kref_init(&r->kref);		/* the test's reference */
	INIT_LIST_HEAD(&r->map_node);
	r->mdev = ctx->mdev;		/* as moex_region_pin() sets it */
	r->addr = 1UL << 30;
	r->length = 4 * PAGE_SIZE;
	r->npages = 4;
	return r;
}

/* Publish @r in @mf as moex_region_pin() does; the entry holds a ref. */
static u32 publish(struct kunit *test, struct moex_file *mf,
		   struct moex_region *r)
{
	u32 handle = 0;

	moex_region_get(r);
	KUNIT_ASSERT_EQ(test, moex_handle_alloc(mf, r, &handle), 0);
	return handle;
}

static int unpin(struct moex_file *mf, u32 handle)
{
	struct moex_region_unpin arg = { .handle = handle };

	return moex_region_unpin(mf, &arg);
}

static void handles_never_zero(struct kunit *test)
{
	struct handle_ctx *ctx = test->priv;
	u32 h, i;

	for (i = 1; i <= 5; i++) {
		h = publish(test, &ctx->a, new_region(test));
		KUNIT_EXPECT_EQ(test, h, i);
	}
	KUNIT_EXPECT_NULL(test, moex_region_lookup(&ctx->a, 0));
	KUNIT_EXPECT_NULL(test, moex_region_lookup(&ctx->b, 0));
}

static void unpin_zero_keeps_zero_free(struct kunit *test)
{
	struct handle_ctx *ctx = test->priv;
	struct moex_region *r = new_region(test);
	u32 h;

	/* the fuzzer's sequence: unpin 0 on an empty table, then pin */
	KUNIT_EXPECT_EQ(test, unpin(&ctx->a, 0), -ENOENT);
	h = publish(test, &ctx->a, r);
	KUNIT_EXPECT_EQ(test, h, 1U);
	KUNIT_EXPECT_EQ(test, unpin(&ctx->a, 0), -ENOENT);
	KUNIT_EXPECT_EQ(test, unpin(&ctx->a, h), 0);
	KUNIT_EXPECT_EQ(test, unpin(&ctx->a, 0), -ENOENT);
	h = publish(test, &ctx->a, r);
	KUNIT_EXPECT_NE(test, h, 0U);
	h = publish(test, &ctx->a, new_region(test));
	KUNIT_EXPECT_NE(test, h, 0U);
	KUNIT_EXPECT_NULL(test, moex_region_lookup(&ctx->a, 0));
	KUNIT_EXPECT_EQ(test, atomic64_read(&ctx->mdev->stats.unpin_calls),
			1LL);
	/* UNPIN of 0 did not mark index 0 free in the xarray */
	KUNIT_EXPECT_FALSE(test, xa_get_mark(&ctx->a.regions, 0,
					     XA_FREE_MARK));
}

static void alloc_skips_free_zero(struct kunit *test)
{
	struct handle_ctx *ctx = test->priv;
	u32 h;

	publish(test, &ctx->a, new_region(test));
	/* whatever frees index 0, the allocator's limit still skips it */
	xa_erase(&ctx->a.regions, 0);
	KUNIT_ASSERT_TRUE(test, xa_get_mark(&ctx->a.regions, 0, XA_FREE_MARK));
	h = publish(test, &ctx->a, new_region(test));
	KUNIT_EXPECT_EQ(test, h, 2U);
	KUNIT_EXPECT_NULL(test, xa_load(&ctx->a.regions, 0));
}

static void lookup_takes_reference(struct kunit *test)
{
	struct handle_ctx *ctx = test->priv;
	struct moex_region *r = new_region(test);
	u32 h = publish(test, &ctx->a, r);

	KUNIT_EXPECT_EQ(test, kref_read(&r->kref), 2U);
	KUNIT_EXPECT_PTR_EQ(test, moex_region_lookup(&ctx->a, h), r);
	KUNIT_EXPECT_EQ(test, kref_read(&r->kref), 3U);
	moex_region_put(r);
	KUNIT_EXPECT_EQ(test, kref_read(&r->kref), 2U);
	KUNIT_EXPECT_NULL(test, moex_region_lookup(&ctx->a, h + 1));
	KUNIT_EXPECT_EQ(test, kref_read(&r->kref), 2U);
}

static void lookup_after_unpin_fails(struct kunit *test)
{
	struct handle_ctx *ctx = test->priv;
	struct moex_region *r1 = new_region(test), *r2 = new_region(test);
	u32 h1 = publish(test, &ctx->a, r1), h2 = publish(test, &ctx->a, r2);

	KUNIT_EXPECT_EQ(test, unpin(&ctx->a, h1), 0);
	KUNIT_EXPECT_EQ(test, kref_read(&r1->kref), 1U);
	KUNIT_EXPECT_NULL(test, moex_region_lookup(&ctx->a, h1));
	KUNIT_EXPECT_EQ(test, unpin(&ctx->a, h1), -ENOENT);
	KUNIT_EXPECT_EQ(test, kref_read(&r1->kref), 1U);
	KUNIT_EXPECT_EQ(test, atomic64_read(&ctx->mdev->stats.unpin_calls),
			1LL);
	/* the other handle is untouched */
	KUNIT_EXPECT_PTR_EQ(test, moex_region_lookup(&ctx->a, h2), r2);
	moex_region_put(r2);
	KUNIT_EXPECT_EQ(test, kref_read(&r2->kref), 2U);
}

static void unpin_checks_payload(struct kunit *test)
{
	struct handle_ctx *ctx = test->priv;
	struct moex_region *r = new_region(test);
	u32 h = publish(test, &ctx->a, r);
	struct moex_region_unpin arg = { .handle = h, .flags = 1 };

	KUNIT_EXPECT_EQ(test, moex_region_unpin(&ctx->a, &arg), -EINVAL);
	arg.flags = 0;
	arg.reserved[1] = 1;
	KUNIT_EXPECT_EQ(test, moex_region_unpin(&ctx->a, &arg), -EINVAL);
	KUNIT_EXPECT_EQ(test, kref_read(&r->kref), 2U);
	KUNIT_EXPECT_EQ(test, atomic64_read(&ctx->mdev->stats.unpin_calls),
			0LL);
	KUNIT_EXPECT_PTR_EQ(test, moex_region_lookup(&ctx->a, h), r);
	moex_region_put(r);
}

static void handles_private_to_file(struct kunit *test)
{
	struct handle_ctx *ctx = test->priv;
	struct moex_region *ra = new_region(test), *rb = new_region(test);
	u32 ha = publish(test, &ctx->a, ra), hb;

	KUNIT_EXPECT_NULL(test, moex_region_lookup(&ctx->b, ha));
	KUNIT_EXPECT_EQ(test, unpin(&ctx->b, ha), -ENOENT);
	KUNIT_EXPECT_EQ(test, kref_read(&ra->kref), 2U);

	/* the same number names a different region in each file */
	hb = publish(test, &ctx->b, rb);
	KUNIT_EXPECT_EQ(test, hb, ha);
	KUNIT_EXPECT_PTR_EQ(test, moex_region_lookup(&ctx->a, ha), ra);
	moex_region_put(ra);
	KUNIT_EXPECT_PTR_EQ(test, moex_region_lookup(&ctx->b, hb), rb);
	moex_region_put(rb);

	KUNIT_EXPECT_EQ(test, unpin(&ctx->b, hb), 0);
	KUNIT_EXPECT_NULL(test, moex_region_lookup(&ctx->b, hb));
	KUNIT_EXPECT_PTR_EQ(test, moex_region_lookup(&ctx->a, ha), ra);
	moex_region_put(ra);
	KUNIT_EXPECT_EQ(test, kref_read(&ra->kref), 2U);
	KUNIT_EXPECT_EQ(test, kref_read(&rb->kref), 1U);
}

static void release_drops_every_handle(struct kunit *test)
{
	struct handle_ctx *ctx = test->priv;
	struct moex_region *r[3];
	int i;

	for (i = 0; i < 3; i++) {
		r[i] = new_region(test);
		publish(test, &ctx->a, r[i]);
	}
	/* one region under two handles holds two references */
	publish(test, &ctx->a, r[0]);
	KUNIT_EXPECT_EQ(test, kref_read(&r[0]->kref), 3U);
	publish(test, &ctx->b, r[1]);

	moex_file_release_regions(&ctx->a);
	KUNIT_EXPECT_TRUE(test, xa_empty(&ctx->a.regions));
	KUNIT_EXPECT_EQ(test, kref_read(&r[0]->kref), 1U);
	KUNIT_EXPECT_EQ(test, kref_read(&r[2]->kref), 1U);
	/* the other file's handle still holds its reference */
	KUNIT_EXPECT_EQ(test, kref_read(&r[1]->kref), 2U);
	KUNIT_EXPECT_FALSE(test, xa_empty(&ctx->b.regions));
}

static void pin_undo(struct kunit *test)
{
	struct handle_ctx *ctx = test->priv;
	struct moex_region *r = new_region(test);
	u32 h = publish(test, &ctx->a, r);

	r->serial = 7;
	atomic64_set(&ctx->mdev->stats.pin_calls, 1);
	moex_region_pin_undo(&ctx->a, h, 7);
	KUNIT_EXPECT_NULL(test, moex_region_lookup(&ctx->a, h));
	KUNIT_EXPECT_EQ(test, kref_read(&r->kref), 1U);
	KUNIT_EXPECT_EQ(test, atomic64_read(&ctx->mdev->stats.pin_calls), 0LL);

	/* a handle that is gone already: nothing moves */
	moex_region_pin_undo(&ctx->a, h, 7);
	KUNIT_EXPECT_EQ(test, atomic64_read(&ctx->mdev->stats.pin_calls), 0LL);
	KUNIT_EXPECT_EQ(test, kref_read(&r->kref), 1U);
}

/*
 * The race user space can make: the pinned handle is unpinned before the
 * reply fails and another PIN gets it back. The undo must leave that
 * region alone.
 */
static void pin_undo_spares_reused_handle(struct kunit *test)
{
	struct handle_ctx *ctx = test->priv;
	struct moex_region *r = new_region(test), *other = new_region(test);
	u32 h = publish(test, &ctx->a, r);

	r->serial = 7;
	other->serial = 8;
	atomic64_set(&ctx->mdev->stats.pin_calls, 2);
	KUNIT_ASSERT_EQ(test, unpin(&ctx->a, h), 0);
	KUNIT_ASSERT_EQ(test, publish(test, &ctx->a, other), h);

	moex_region_pin_undo(&ctx->a, h, 7);
	KUNIT_EXPECT_PTR_EQ(test, xa_load(&ctx->a.regions, h), (void *)other);
	KUNIT_EXPECT_EQ(test, kref_read(&other->kref), 2U);
	KUNIT_EXPECT_EQ(test, kref_read(&r->kref), 1U);
	KUNIT_EXPECT_EQ(test, atomic64_read(&ctx->mdev->stats.pin_calls), 2LL);
}

static void region_info(struct kunit *test)
{
	struct handle_ctx *ctx = test->priv;
	struct moex_region *r = new_region(test);
	struct moex_region_info arg = { .pad = 0xdead };

	arg.handle = publish(test, &ctx->a, r);
	r->sgt.orig_nents = 3;
	r->sgt.nents = 2;
	set_bit(MOEX_REGION_B_READONLY, &r->flags);
	KUNIT_ASSERT_EQ(test, moex_region_info(&ctx->a, &arg), 0);
	KUNIT_EXPECT_EQ(test, arg.addr, r->addr);
	KUNIT_EXPECT_EQ(test, arg.length, r->length);
	KUNIT_EXPECT_EQ(test, arg.pages, 4ULL);
	KUNIT_EXPECT_EQ(test, arg.sg_segments, 3U);
	KUNIT_EXPECT_EQ(test, arg.dma_segments, 0U);	/* not DMA-mapped */
	KUNIT_EXPECT_EQ(test, arg.region_flags, (u32)MOEX_REGION_READONLY);
	KUNIT_EXPECT_EQ(test, arg.pad, 0U);
	KUNIT_EXPECT_EQ(test, kref_read(&r->kref), 2U);

	set_bit(MOEX_REGION_B_EXPORTED, &r->flags);
	KUNIT_ASSERT_EQ(test, moex_region_info(&ctx->a, &arg), 0);
	KUNIT_EXPECT_EQ(test, arg.region_flags,
			(u32)(MOEX_REGION_READONLY | MOEX_REGION_EXPORTED));

	arg.flags = 1;
	KUNIT_EXPECT_EQ(test, moex_region_info(&ctx->a, &arg), -EINVAL);
	arg.flags = 0;
	KUNIT_EXPECT_EQ(test, moex_region_info(&ctx->b, &arg), -ENOENT);
	arg.handle = 0;
	KUNIT_EXPECT_EQ(test, moex_region_info(&ctx->a, &arg), -ENOENT);
	KUNIT_EXPECT_EQ(test, kref_read(&r->kref), 2U);
}

static struct kunit_case moex_handle_cases[] = {
	KUNIT_CASE(handles_never_zero),
	KUNIT_CASE(unpin_zero_keeps_zero_free),
	KUNIT_CASE(alloc_skips_free_zero),
	KUNIT_CASE(lookup_takes_reference),
	KUNIT_CASE(lookup_after_unpin_fails),
	KUNIT_CASE(unpin_checks_payload),
	KUNIT_CASE(handles_private_to_file),
	KUNIT_CASE(release_drops_every_handle),
	KUNIT_CASE(pin_undo),
	KUNIT_CASE(pin_undo_spares_reused_handle),
	KUNIT_CASE(region_info),
	{}
};

static struct kunit_suite moex_handle_suite = {
	.name = "moex_handle",
	.init = moex_handle_init,
	.exit = moex_handle_exit,
	.test_cases = moex_handle_cases,
};

kunit_test_suite(moex_handle_suite);
