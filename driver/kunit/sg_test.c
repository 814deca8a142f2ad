// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit: the scatter list of a region (moex_region_build_sgt()), and of a
 * dma-buf importer's mapping (moex_dmabuf_map()): runs of
 * physically contiguous pages coalesce into one segment, at most
 * max_segment bytes long, in the order of the region's pages.
 *
 * The cases take the pages from one order-3 block, so that which of them
 * are physically adjacent is known, and hand them to the region in various
 * orders.
 */
#include <kunit/test.h>
#include <linux/dma-buf.h>
#include <linux/dma-mapping.h>
#include <linux/gfp.h>
#include <linux/mm.h>
#include <linux/scatterlist.h>

#include "../moex.h"

#define BLOCK_ORDER	3
#define BLOCK_PAGES	BIT(BLOCK_ORDER)

struct sg_ctx {
	struct page *block;
	struct moex_region r;
	struct page *pages[BLOCK_PAGES];
};

static int moex_sg_init(struct kunit *test)
{
	struct sg_ctx *ctx = kunit_kzalloc(test, sizeof(*ctx), GFP_KERNEL);

	if (!ctx)
		return -ENOMEM;
	test->priv = ctx;
	ctx->block = alloc_pages(GFP_KERNEL, BLOCK_ORDER);
	return ctx->block ? 0 : -ENOMEM;
}

static void moex_sg_exit(struct kunit *test)
{
	struct sg_ctx *ctx = test->priv;

	if (!ctx || !ctx->block)
		return;
	sg_free_table(&ctx->r.sgt);
	__free_pages(ctx->block, BLOCK_ORDER);
}

/* Give the region the block's pages in the order @idx names them. */
static struct moex_region *region_of(struct kunit *test, const int *idx,
				     int n)
{
	struct sg_ctx *ctx = test->priv;
	int i;

	for (i = 0; i < n; i++)
		ctx->pages[i] = nth_page(ctx->block, idx[i]);
	ctx->r.pages = ctx->pages;
	ctx->r.npages = n;
	ctx->r.length = (u64)n * PAGE_SIZE;
	return &ctx->r;
}

/*
 * Check the segments: @first[i] is the block index of segment i's first
 * page, @len[i] its length in pages.
 */
static void expect_segments(struct kunit *test, struct moex_region *r,
			    const int *first, const int *len, int n)
{
	struct sg_ctx *ctx = test->priv;
	struct scatterlist *sg;
	u64 total = 0;
	int i;

	KUNIT_ASSERT_EQ(test, r->sgt.orig_nents, (unsigned int)n);
	KUNIT_EXPECT_EQ(test, r->sgt.nents, (unsigned int)n);
	for_each_sgtable_sg(&r->sgt, sg, i) {
		KUNIT_EXPECT_PTR_EQ_MSG(test, sg_page(sg),
					nth_page(ctx->block, first[i]),
					"segment %d", i);
		KUNIT_EXPECT_EQ_MSG(test, sg->offset, 0U, "segment %d", i);
		KUNIT_EXPECT_EQ_MSG(test, sg->length,
				    (unsigned int)(len[i] * PAGE_SIZE),
				    "segment %d", i);
		total += sg->length;
	}
	KUNIT_EXPECT_TRUE(test, sg_is_last(sg_last(r->sgt.sgl, n)));
	KUNIT_EXPECT_EQ(test, total, r->length);
}

static void sg_contiguous_one_segment(struct kunit *test)
{
	static const int idx[] = { 0, 1, 2, 3, 4, 5, 6, 7 };
	static const int first[] = { 0 }, len[] = { 8 };
	struct moex_region *r = region_of(test, idx, 8);

	KUNIT_ASSERT_EQ(test, moex_region_build_sgt(r, MOEX_MAX_SEGMENT), 0);
	expect_segments(test, r, first, len, 1);
}

static void sg_single_page(struct kunit *test)
{
	static const int idx[] = { 5 };
	static const int first[] = { 5 }, len[] = { 1 };
	struct moex_region *r = region_of(test, idx, 1);

	KUNIT_ASSERT_EQ(test, moex_region_build_sgt(r, MOEX_MAX_SEGMENT), 0);
	expect_segments(test, r, first, len, 1);
}

static void sg_runs(struct kunit *test)
{
	/* runs 0-2, 5-6 and 3: three segments, in the region's order */
	static const int idx[] = { 0, 1, 2, 5, 6, 3 };
	static const int first[] = { 0, 5, 3 }, len[] = { 3, 2, 1 };
	struct moex_region *r = region_of(test, idx, 6);

	KUNIT_ASSERT_EQ(test, moex_region_build_sgt(r, MOEX_MAX_SEGMENT), 0);
	expect_segments(test, r, first, len, 3);
}

static void sg_descending_not_merged(struct kunit *test)
{
	/* adjacent but descending pages are not contiguous for DMA */
	static const int idx[] = { 7, 6, 5, 4 };
	static const int first[] = { 7, 6, 5, 4 }, len[] = { 1, 1, 1, 1 };
	struct moex_region *r = region_of(test, idx, 4);

	KUNIT_ASSERT_EQ(test, moex_region_build_sgt(r, MOEX_MAX_SEGMENT), 0);
	expect_segments(test, r, first, len, 4);
}

static void sg_same_page_twice(struct kunit *test)
{
	/* the same page mapped twice in a row is two segments */
	static const int idx[] = { 2, 2, 3 };
	static const int first[] = { 2, 2 }, len[] = { 1, 2 };
	struct moex_region *r = region_of(test, idx, 3);

	KUNIT_ASSERT_EQ(test, moex_region_build_sgt(r, MOEX_MAX_SEGMENT), 0);
	expect_segments(test, r, first, len, 2);
}

static void sg_max_segment_splits(struct kunit *test)
{
	static const int idx[] = { 0, 1, 2, 3, 4, 5, 6, 7 };
	static const int first2[] = { 0, 2, 4, 6 }, len2[] = { 2, 2, 2, 2 };
	static const int first3[] = { 0, 3, 6 }, len3[] = { 3, 3, 2 };
	struct sg_ctx *ctx = test->priv;
	struct moex_region *r = region_of(test, idx, 8);

	KUNIT_ASSERT_EQ(test, moex_region_build_sgt(r, 2 * PAGE_SIZE), 0);
	expect_segments(test, r, first2, len2, 4);
	sg_free_table(&ctx->r.sgt);

	KUNIT_ASSERT_EQ(test, moex_region_build_sgt(r, 3 * PAGE_SIZE), 0);
	expect_segments(test, r, first3, len3, 3);
}

static void sg_max_segment_value(struct kunit *test)
{
	/* whole pages, fits sg lengths, and a 1 GiB huge page is one segment */
	KUNIT_EXPECT_EQ(test, MOEX_MAX_SEGMENT % PAGE_SIZE, 0UL);
	KUNIT_EXPECT_LE(test, (u64)MOEX_MAX_SEGMENT, (u64)UINT_MAX);
	KUNIT_EXPECT_GE(test, (u64)MOEX_MAX_SEGMENT, (u64)SZ_1G);
	KUNIT_EXPECT_GT(test, (u64)MOEX_MAX_SEGMENT + PAGE_SIZE, (u64)UINT_MAX);
}

/* @sgt has every page of @r, in order, and its length. */
static void expect_covers(struct kunit *test, struct sg_table *sgt,
			  struct moex_region *r)
{
	struct sg_page_iter it;
	struct scatterlist *sg;
	unsigned int n = 0;
	u64 total = 0;
	int i;

	for_each_sgtable_page(sgt, &it, 0) {
		if (n < r->npages)
			KUNIT_EXPECT_PTR_EQ_MSG(test, sg_page_iter_page(&it),
						r->pages[n], "page %u", n);
		n++;
	}
	KUNIT_EXPECT_EQ(test, n, (unsigned int)r->npages);
	for_each_sgtable_sg(sgt, sg, i)
		total += sg->length;
	KUNIT_EXPECT_EQ(test, total, r->length);
}

/*
 * A dma-buf importer's mapping (moex_dmabuf_map()) has every page of the
 * region, in order, and its length: vgem never reads the pages, so the VM
 * suites cannot tell. Two maps of one attachment are two tables, each
 * unmapped on its own: they shared the attachment's one table, so behind
 * an IOMMU the second map overwrote the first's DMA addresses, leaking
 * its mapping, and the second unmap unmapped them again.
 */
static void sg_dmabuf_maps_cover_region(struct kunit *test)
{
	static const int idx[] = { 0, 1, 2, 5, 4, 6, 7 };
	struct moex_region *r = region_of(test, idx, ARRAY_SIZE(idx));
	struct dma_buf_attachment *at;
	struct sg_table *a, *b;
	struct dma_buf *buf;

	buf = kunit_kzalloc(test, sizeof(*buf), GFP_KERNEL);
	at = kunit_kzalloc(test, sizeof(*at), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, buf);
	KUNIT_ASSERT_NOT_NULL(test, at);
	/* a device without dma_parms: 64 KiB segments */
	at->dev = kunit_kzalloc(test, sizeof(*at->dev), GFP_KERNEL);
	KUNIT_ASSERT_NOT_NULL(test, at->dev);
	at->dev->coherent_dma_mask = DMA_BIT_MASK(64);
	at->dev->dma_mask = &at->dev->coherent_dma_mask;
	buf->priv = r;
	at->dmabuf = buf;
	a = moex_dmabuf_map(at, DMA_BIDIRECTIONAL);
	KUNIT_ASSERT_FALSE(test, IS_ERR(a));
	b = moex_dmabuf_map(at, DMA_TO_DEVICE);
	if (IS_ERR(b))
		moex_dmabuf_unmap(at, a, DMA_BIDIRECTIONAL);
	KUNIT_ASSERT_FALSE(test, IS_ERR(b));
	KUNIT_EXPECT_PTR_NE(test, a, b);
	expect_covers(test, a, r);
	expect_covers(test, b, r);
	moex_dmabuf_unmap(at, b, DMA_TO_DEVICE);
	moex_dmabuf_unmap(at, a, DMA_BIDIRECTIONAL);
}

static struct kunit_case moex_sg_cases[] = {
	KUNIT_CASE(sg_contiguous_one_segment),
	KUNIT_CASE(sg_single_page),
	KUNIT_CASE(sg_runs),
	KUNIT_CASE(sg_descending_not_merged),
	KUNIT_CASE(sg_same_page_twice),
	KUNIT_CASE(sg_max_segment_splits),
	KUNIT_CASE(sg_max_segment_value),
	KUNIT_CASE(sg_dmabuf_maps_cover_region),
	{}
};

static struct kunit_suite moex_sg_suite = {
	.name = "moex_sg",
	.init = moex_sg_init,
	.exit = moex_sg_exit,
	.test_cases = moex_sg_cases,
};

kunit_test_suite(moex_sg_suite);
