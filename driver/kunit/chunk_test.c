// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit: how copies are split. The DMA cursor over a region's mapped
 * segments (moex_dma_cursor_*()), the pieces the DMA engines program
 * (moex_dma_chunk(): the edu engine with at most EDU_MAX_XFER bytes, the
 * dmaengine engine with the channel's segment size), and the CPU engine's
 * page-by-page copy (moex_cpu_copy()) at odd offsets.
 *
 * The DMA cases describe a mapping by hand: an sg table whose DMA
 * addresses and lengths are set directly, and a dma_dev that is never
 * dereferenced.
 */
#include <kunit/test.h>
#include <linux/gfp.h>
#include <linux/highmem.h>
#include <linux/limits.h>
#include <linux/mm.h>
#include <linux/scatterlist.h>
#include <linux/string.h>

#include "../moex.h"

struct seg {
	dma_addr_t addr;
	u32 len;
};

/* Three segments, not in address order: 0x3000 + 0x1000 + 0x2000 bytes. */
static const struct seg layout_a[] = {
	{ 0x10000, 0x3000 }, { 0x80000, 0x1000 }, { 0x20000, 0x2000 },
};

/* The same bytes as two segments split elsewhere. */
static const struct seg layout_b[] = {
	{ 0x400000, 0x1800 }, { 0x500000, 0x4800 },
};

struct chunk_ctx {
	struct moex_region src, dst;
	struct device fake_dev;	/* only its address is used */
};

static int moex_chunk_init(struct kunit *test)
{
	struct chunk_ctx *ctx = kunit_kzalloc(test, sizeof(*ctx), GFP_KERNEL);

	if (!ctx)
		return -ENOMEM;
	test->priv = ctx;
	return 0;
}

static void moex_chunk_exit(struct kunit *test)
{
	struct chunk_ctx *ctx = test->priv;

	if (!ctx)
		return;
	sg_free_table(&ctx->src.sgt);
	sg_free_table(&ctx->dst.sgt);
}

/* Make @r a region mapped as @segs. */
static void map(struct kunit *test, struct moex_region *r,
		const struct seg *segs, unsigned int n)
{
	struct chunk_ctx *ctx = test->priv;
	struct scatterlist *sg;
	unsigned int i;

	KUNIT_ASSERT_EQ(test, sg_alloc_table(&r->sgt, n, GFP_KERNEL), 0);
	r->length = 0;
	for_each_sgtable_sg(&r->sgt, sg, i) {
		sg_dma_address(sg) = segs[i].addr;
		sg_dma_len(sg) = segs[i].len;
		r->length += segs[i].len;
	}
	r->sgt.nents = n;
	r->dma_dev = &ctx->fake_dev;
}

static void expect_at(struct kunit *test, struct moex_dma_cursor *c,
		      dma_addr_t addr, u64 contig, unsigned int left)
{
	u64 got_contig;

	KUNIT_ASSERT_EQ(test, c->left, left);
	KUNIT_EXPECT_EQ(test, moex_dma_cursor_addr(c, &got_contig), addr);
	KUNIT_EXPECT_EQ(test, got_contig, contig);
}

static void cursor_init_positions(struct kunit *test)
{
	struct chunk_ctx *ctx = test->priv;
	struct moex_dma_cursor c;

	map(test, &ctx->src, layout_a, ARRAY_SIZE(layout_a));
	KUNIT_ASSERT_EQ(test, moex_dma_cursor_init(&c, &ctx->src, 0), 0);
	expect_at(test, &c, 0x10000, 0x3000, 3);
	KUNIT_ASSERT_EQ(test, moex_dma_cursor_init(&c, &ctx->src, 0x2fff), 0);
	expect_at(test, &c, 0x12fff, 1, 3);
	/* a segment's end is the next segment's start */
	KUNIT_ASSERT_EQ(test, moex_dma_cursor_init(&c, &ctx->src, 0x3000), 0);
	expect_at(test, &c, 0x80000, 0x1000, 2);
	KUNIT_ASSERT_EQ(test, moex_dma_cursor_init(&c, &ctx->src, 0x3001), 0);
	expect_at(test, &c, 0x80001, 0xfff, 2);
	KUNIT_ASSERT_EQ(test, moex_dma_cursor_init(&c, &ctx->src, 0x4000), 0);
	expect_at(test, &c, 0x20000, 0x2000, 1);
	KUNIT_ASSERT_EQ(test, moex_dma_cursor_init(&c, &ctx->src, 0x5fff), 0);
	expect_at(test, &c, 0x21fff, 1, 1);
}

static void cursor_init_refused(struct kunit *test)
{
	struct chunk_ctx *ctx = test->priv;
	struct moex_dma_cursor c;

	map(test, &ctx->src, layout_a, ARRAY_SIZE(layout_a));
	KUNIT_EXPECT_EQ(test, moex_dma_cursor_init(&c, &ctx->src, 0x6000),
			-EINVAL);
	KUNIT_EXPECT_EQ(test, moex_dma_cursor_init(&c, &ctx->src, U64_MAX),
			-EINVAL);
	/* inside the region but past what is mapped */
	ctx->src.length = 0x7000;
	KUNIT_EXPECT_EQ(test, moex_dma_cursor_init(&c, &ctx->src, 0x6800),
			-EINVAL);
	/* not DMA-mapped (a CPU engine's region) */
	ctx->src.dma_dev = NULL;
	KUNIT_EXPECT_EQ(test, moex_dma_cursor_init(&c, &ctx->src, 0), -EINVAL);
}

static void cursor_advance(struct kunit *test)
{
	struct chunk_ctx *ctx = test->priv;
	struct moex_dma_cursor c;

	map(test, &ctx->src, layout_a, ARRAY_SIZE(layout_a));
	KUNIT_ASSERT_EQ(test, moex_dma_cursor_init(&c, &ctx->src, 0), 0);
	moex_dma_cursor_advance(&c, 0x1000);
	expect_at(test, &c, 0x11000, 0x2000, 3);
	moex_dma_cursor_advance(&c, 0x2000);
	expect_at(test, &c, 0x80000, 0x1000, 2);
	moex_dma_cursor_advance(&c, 0);
	expect_at(test, &c, 0x80000, 0x1000, 2);
	/* across a whole segment in one step */
	moex_dma_cursor_advance(&c, 0x1800);
	expect_at(test, &c, 0x20800, 0x1800, 1);
	moex_dma_cursor_advance(&c, 0x1800);
	KUNIT_EXPECT_EQ(test, c.left, 0U);
	KUNIT_EXPECT_NULL(test, c.sg);
}

static void cursor_uses_mapped_segments(struct kunit *test)
{
	/* an IOMMU merged three CPU segments into one DMA segment */
	static const struct seg merged[] = {
		{ 0x7000000, 0x6000 }, { 0xdead000, 0x123 }, { 0xbeef000, 0x45 },
	};
	struct chunk_ctx *ctx = test->priv;
	struct moex_dma_cursor c;

	map(test, &ctx->src, merged, ARRAY_SIZE(merged));
	ctx->src.sgt.nents = 1;
	ctx->src.length = 0x6000;
	KUNIT_ASSERT_EQ(test, moex_dma_cursor_init(&c, &ctx->src, 0x5000), 0);
	expect_at(test, &c, 0x7005000, 0x1000, 1);
	moex_dma_cursor_advance(&c, 0x1000);
	KUNIT_EXPECT_EQ(test, c.left, 0U);
	/* the entries past nents are never looked at */
	ctx->src.length = 0x9000;
	KUNIT_EXPECT_EQ(test, moex_dma_cursor_init(&c, &ctx->src, 0x6000),
			-EINVAL);
}

struct piece {
	dma_addr_t s, d;
	u64 len;
};

/* Split a copy as the engines do; check it against @want. */
static void expect_pieces(struct kunit *test, u64 src_off, u64 dst_off,
			  u64 len, u64 max, const struct piece *want,
			  unsigned int n)
{
	struct chunk_ctx *ctx = test->priv;
	struct moex_dma_cursor sc, dc;
	unsigned int i = 0;
	dma_addr_t s, d;
	u64 left = len;

	KUNIT_ASSERT_EQ(test, moex_dma_cursor_init(&sc, &ctx->src, src_off),
			0);
	KUNIT_ASSERT_EQ(test, moex_dma_cursor_init(&dc, &ctx->dst, dst_off),
			0);
	while (left) {
		u64 got = moex_dma_chunk(&sc, &dc, left, max, &s, &d);

		KUNIT_ASSERT_LT_MSG(test, i, n, "more pieces than expected");
		KUNIT_EXPECT_EQ_MSG(test, got, want[i].len, "piece %u", i);
		KUNIT_EXPECT_EQ_MSG(test, s, want[i].s, "piece %u", i);
		KUNIT_EXPECT_EQ_MSG(test, d, want[i].d, "piece %u", i);
		KUNIT_ASSERT_NE(test, got, 0ULL);
		moex_dma_cursor_advance(&sc, got);
		moex_dma_cursor_advance(&dc, got);
		left -= got;
		i++;
	}
	KUNIT_EXPECT_EQ(test, i, n);
}

static void chunk_at_segment_ends(struct kunit *test)
{
	static const struct piece want[] = {
		{ 0x10800, 0x400000, 0x1800 },	/* dst segment 0 ends */
		{ 0x12000, 0x500000, 0x1000 },	/* src segment 0 ends */
		{ 0x80000, 0x501000, 0x1000 },	/* src segment 1 ends */
		{ 0x20000, 0x502000, 0x1800 },	/* the copy ends */
	};
	struct chunk_ctx *ctx = test->priv;

	map(test, &ctx->src, layout_a, ARRAY_SIZE(layout_a));
	map(test, &ctx->dst, layout_b, ARRAY_SIZE(layout_b));
	expect_pieces(test, 0x800, 0, 0x5000, U64_MAX, want, ARRAY_SIZE(want));
}

static void chunk_max_transfer(struct kunit *test)
{
	/* the edu engine: at most 4095 bytes per DMA */
	static const struct seg one_src[] = { { 0x10000, 0x3000 } };
	static const struct seg one_dst[] = { { 0x90000, 0x3000 } };
	static const struct piece want[] = {
		{ 0x10000, 0x90000, 4095 },
		{ 0x10fff, 0x90fff, 4095 },
		{ 0x11ffe, 0x91ffe, 4095 },
		{ 0x12ffd, 0x92ffd, 3 },
	};
	static const struct piece want_seg[] = {
		{ 0x10000, 0x400000, 0x1000 },	/* the channel's limit */
		{ 0x11000, 0x401000, 0x800 },	/* dst segment 0 ends */
		{ 0x11800, 0x500000, 0x1000 },	/* the channel's limit */
		{ 0x12800, 0x501000, 0x800 },	/* the copy ends */
	};
	struct chunk_ctx *ctx = test->priv;

	map(test, &ctx->src, one_src, ARRAY_SIZE(one_src));
	map(test, &ctx->dst, one_dst, ARRAY_SIZE(one_dst));
	expect_pieces(test, 0, 0, 0x3000, 4095, want, ARRAY_SIZE(want));
	sg_free_table(&ctx->src.sgt);
	sg_free_table(&ctx->dst.sgt);

	/* a dmaengine channel with 4 KiB segments, and segment ends */
	map(test, &ctx->src, layout_a, ARRAY_SIZE(layout_a));
	map(test, &ctx->dst, layout_b, ARRAY_SIZE(layout_b));
	expect_pieces(test, 0, 0, 0x3000, 0x1000, want_seg,
		      ARRAY_SIZE(want_seg));
}

static void chunk_runs_off(struct kunit *test)
{
	static const struct seg short_dst[] = { { 0x90000, 0x1000 } };
	struct chunk_ctx *ctx = test->priv;
	struct moex_dma_cursor sc, dc;
	dma_addr_t s, d;
	u64 n;

	map(test, &ctx->src, layout_a, ARRAY_SIZE(layout_a));
	map(test, &ctx->dst, short_dst, ARRAY_SIZE(short_dst));
	KUNIT_ASSERT_EQ(test, moex_dma_cursor_init(&sc, &ctx->src, 0), 0);
	KUNIT_ASSERT_EQ(test, moex_dma_cursor_init(&dc, &ctx->dst, 0), 0);
	KUNIT_EXPECT_EQ(test, moex_dma_chunk(&sc, &dc, 0x2000, 0, &s, &d), 0ULL);
	KUNIT_EXPECT_EQ(test, moex_dma_chunk(&sc, &dc, 0, U64_MAX, &s, &d),
			0ULL);
	n = moex_dma_chunk(&sc, &dc, 0x2000, U64_MAX, &s, &d);
	KUNIT_ASSERT_EQ(test, n, 0x1000ULL);
	moex_dma_cursor_advance(&sc, n);
	moex_dma_cursor_advance(&dc, n);
	/* the destination's mapping ends before the copy: never run off */
	KUNIT_EXPECT_EQ(test, moex_dma_chunk(&sc, &dc, 0x1000, U64_MAX, &s, &d),
			0ULL);
}

/* ---- the CPU engine ---------------------------------------------------- */

#define CPU_PAGES	3

struct cpu_ctx {
	struct moex_region src, dst;
	struct page *src_pages[CPU_PAGES], *dst_pages[CPU_PAGES];
	int completions;
	int err;
};

static void cpu_complete(struct moex_copy_req *req, int err)
{
	struct cpu_ctx *cc = container_of(req->src, struct cpu_ctx, src);

	cc->completions++;
	cc->err = err;
}

static u8 src_byte(u64 off)
{
	return (u8)(off * 7 + 1 + (off >> 12));
}

/* Copy @len bytes from @src_off to @dst_off and check every dst byte. */
static void cpu_copy_check(struct kunit *test, struct cpu_ctx *cc,
			   u64 src_off, u64 dst_off, u64 len)
{
	struct moex_copy_req req = {
		.src = &cc->src, .dst = &cc->dst, .src_off = src_off,
		.dst_off = dst_off, .len = len, .complete = cpu_complete,
	};
	unsigned int bad = 0;
	u64 off;
	int i;

	for (i = 0; i < CPU_PAGES; i++) {
		u8 *p = kmap_local_page(cc->src_pages[i]);
		unsigned int j;

		for (j = 0; j < PAGE_SIZE; j++)
			p[j] = src_byte((u64)i * PAGE_SIZE + j);
		kunmap_local(p);
		p = kmap_local_page(cc->dst_pages[i]);
		memset(p, 0xee, PAGE_SIZE);
		kunmap_local(p);
	}
	cc->completions = 0;
	cc->err = 1;
	moex_cpu_copy(&req);
	KUNIT_EXPECT_EQ(test, cc->completions, 1);
	KUNIT_EXPECT_EQ(test, cc->err, 0);

	for (off = 0; off < CPU_PAGES * PAGE_SIZE; off++) {
		u8 *p = kmap_local_page(cc->dst_pages[off >> PAGE_SHIFT]);
		u8 got = p[offset_in_page(off)];
		u8 want = 0xee;

		kunmap_local(p);
		if (off >= dst_off && off < dst_off + len)
			want = src_byte(off - dst_off + src_off);
		if (got != want && bad++ < 4)
			KUNIT_FAIL(test,
				   "copy %llu+%llu -> %llu: byte %llu is %#x, not %#x",
				   src_off, len, dst_off, off, got, want);
	}
	KUNIT_EXPECT_EQ(test, bad, 0U);
}

static void cpu_copy_offsets(struct kunit *test)
{
	struct cpu_ctx *cc = kunit_kzalloc(test, sizeof(*cc), GFP_KERNEL);
	int i;

	KUNIT_ASSERT_NOT_NULL(test, cc);
	for (i = 0; i < CPU_PAGES; i++) {
		/* separate allocations: not contiguous, in general */
		cc->src_pages[i] = alloc_page(GFP_KERNEL);
		cc->dst_pages[i] = alloc_page(GFP_KERNEL);
		if (!cc->src_pages[i] || !cc->dst_pages[i]) {
			KUNIT_FAIL(test, "no memory for the pages");
			goto out;
		}
	}
	cc->src.pages = cc->src_pages;
	cc->dst.pages = cc->dst_pages;
	cc->src.npages = CPU_PAGES;
	cc->dst.npages = CPU_PAGES;
	cc->src.length = CPU_PAGES * PAGE_SIZE;
	cc->dst.length = CPU_PAGES * PAGE_SIZE;

	/* page boundaries at different places on the two sides */
	cpu_copy_check(test, cc, 100, PAGE_SIZE - 50, 2 * PAGE_SIZE - 200);
	cpu_copy_check(test, cc, PAGE_SIZE - 50, 100, 2 * PAGE_SIZE - 200);
	/* whole pages, and the last bytes of both regions */
	cpu_copy_check(test, cc, 0, 0, CPU_PAGES * PAGE_SIZE);
	cpu_copy_check(test, cc, CPU_PAGES * PAGE_SIZE - 1,
		       CPU_PAGES * PAGE_SIZE - 1, 1);
	/* shorter than the word loop, straddling a page on both sides */
	cpu_copy_check(test, cc, PAGE_SIZE - 3, 2 * PAGE_SIZE - 5, 31);
	cpu_copy_check(test, cc, 1, 3, 33);
out:
	for (i = 0; i < CPU_PAGES; i++) {
		if (cc->src_pages[i])
			__free_page(cc->src_pages[i]);
		if (cc->dst_pages[i])
			__free_page(cc->dst_pages[i]);
	}
}

static struct kunit_case moex_chunk_cases[] = {
	KUNIT_CASE(cursor_init_positions),
	KUNIT_CASE(cursor_init_refused),
	KUNIT_CASE(cursor_advance),
	KUNIT_CASE(cursor_uses_mapped_segments),
	KUNIT_CASE(chunk_at_segment_ends),
	KUNIT_CASE(chunk_max_transfer),
	KUNIT_CASE(chunk_runs_off),
	KUNIT_CASE(cpu_copy_offsets),
	{}
};

static struct kunit_suite moex_chunk_suite = {
	.name = "moex_chunk",
	.init = moex_chunk_init,
	.exit = moex_chunk_exit,
	.test_cases = moex_chunk_cases,
};

kunit_test_suite(moex_chunk_suite);
