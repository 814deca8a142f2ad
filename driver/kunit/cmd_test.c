// SPDX-License-Identifier: GPL-2.0
/*
 * KUnit: command decoding. The ioctl numbers against the command table
 * (moex_cmd_known(), moex_cmd_run()), the dispatcher's reply protocol,
 * and the io_uring SQE command area (moex_uring_decode()).
 */
#include <kunit/test.h>
#include <linux/ioctl.h>
#include <linux/rwsem.h>
#include <linux/string.h>
#include <linux/xarray.h>

#include "../moex.h"

static const struct {
	unsigned int nr;
	size_t size;
	bool output;	/* copied back to user space: _IOC_READ */
} cmds[] = {
	{ MOEX_IOCTL_INFO, sizeof(struct moex_info), true },
	{ MOEX_IOCTL_REGION_PIN, sizeof(struct moex_region_pin), true },
	{ MOEX_IOCTL_REGION_UNPIN, sizeof(struct moex_region_unpin), false },
	{ MOEX_IOCTL_REGION_INFO, sizeof(struct moex_region_info), true },
	{ MOEX_IOCTL_REGION_EXPORT, sizeof(struct moex_region_export), true },
	{ MOEX_IOCTL_COPY, sizeof(struct moex_copy), false },
	{ MOEX_IOCTL_NOP, sizeof(struct moex_nop), false },
};

/* Numbers that are not commands: near misses of real ones. */
static const unsigned int not_cmds[] = {
	0, ~0U,
	_IOW(MOEX_IOC_MAGIC, 0x07, struct moex_nop),	/* next number */
	_IOW(MOEX_IOC_MAGIC, 0xff, struct moex_nop),
	_IOW(MOEX_IOC_MAGIC, 0x06, __u64),		/* NOP, wrong size */
	_IOW(MOEX_IOC_MAGIC, 0x06, struct moex_info),
	_IOR(MOEX_IOC_MAGIC, 0x00, struct moex_info),	/* wrong direction */
	_IOW(MOEX_IOC_MAGIC, 0x00, struct moex_info),
	_IOWR(MOEX_IOC_MAGIC, 0x06, struct moex_nop),
	_IO(MOEX_IOC_MAGIC, 0x06),
	_IOWR(MOEX_IOC_MAGIC + 1, 0x00, struct moex_info), /* wrong magic */
	_IOW(0, 0x05, struct moex_copy),
	/* a real command's size with another command's number */
	_IOWR(MOEX_IOC_MAGIC, 0x01, struct moex_region_info),
};

struct cmd_ctx {
	struct moex_dev *mdev;
	struct moex_engine eng;
	struct moex_file mf;
	unsigned int old_mb;
	/* what the reply callback saw */
	int replies;
	const void *reply_payload;
	size_t reply_size;
	int reply_ret;
};

static int reply(void *p, const void *payload, size_t size)
{
	struct cmd_ctx *ctx = p;

	ctx->replies++;
	ctx->reply_payload = payload;
	ctx->reply_size = size;
	return ctx->reply_ret;
}

static int run(struct cmd_ctx *ctx, unsigned int nr, void *payload)
{
	return moex_cmd_run(&ctx->mf, nr, payload, reply, ctx);
}

static int moex_cmd_init(struct kunit *test)
{
	struct cmd_ctx *ctx = kunit_kzalloc(test, sizeof(*ctx), GFP_KERNEL);

	if (!ctx)
		return -ENOMEM;
	ctx->mdev = kunit_kzalloc(test, sizeof(*ctx->mdev), GFP_KERNEL);
	if (!ctx->mdev)
		return -ENOMEM;
	moex_dev_init_locks(ctx->mdev);
	ctx->eng.id = MOEX_ENGINE_CPU;
	ctx->eng.name = "cpu";
	ctx->mdev->engine = &ctx->eng;
	ctx->mf.mdev = ctx->mdev;
	xa_init_flags(&ctx->mf.regions, XA_FLAGS_ALLOC1);
	ctx->old_mb = READ_ONCE(moex_max_pinned_mb);
	test->priv = ctx;
	return 0;
}

static void moex_cmd_exit(struct kunit *test)
{
	struct cmd_ctx *ctx = test->priv;

	if (!ctx)
		return;
	WRITE_ONCE(moex_max_pinned_mb, ctx->old_mb);
	xa_destroy(&ctx->mf.regions);
}

static void table_known_commands(struct kunit *test)
{
	size_t area = sizeof_field(struct moex_uring_cmd, payload);
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(cmds); i++) {
		unsigned int nr = cmds[i].nr;

		KUNIT_EXPECT_TRUE_MSG(test, moex_cmd_known(nr), "%#x", nr);
		KUNIT_EXPECT_EQ_MSG(test, _IOC_TYPE(nr), MOEX_IOC_MAGIC,
				    "%#x", nr);
		/* numbered from 0 up: the table is indexed by _IOC_NR() */
		KUNIT_EXPECT_EQ_MSG(test, _IOC_NR(nr), i, "%#x", nr);
		KUNIT_EXPECT_EQ_MSG(test, (size_t)_IOC_SIZE(nr), cmds[i].size,
				    "%#x", nr);
		KUNIT_EXPECT_LE_MSG(test, (size_t)_IOC_SIZE(nr),
				    sizeof(union moex_payload), "%#x", nr);
		KUNIT_EXPECT_LE_MSG(test, (size_t)_IOC_SIZE(nr), area,
				    "%#x", nr);
		KUNIT_EXPECT_EQ_MSG(test, _IOC_SIZE(nr) % sizeof(u64), 0UL,
				    "%#x", nr);
		KUNIT_EXPECT_TRUE_MSG(test, _IOC_DIR(nr) & _IOC_WRITE,
				      "%#x", nr);
		KUNIT_EXPECT_EQ_MSG(test, !!(_IOC_DIR(nr) & _IOC_READ),
				    cmds[i].output, "%#x", nr);
	}
}

static void table_unknown_commands(struct kunit *test)
{
	struct cmd_ctx *ctx = test->priv;
	union moex_payload p = {};
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(not_cmds); i++) {
		KUNIT_EXPECT_FALSE_MSG(test, moex_cmd_known(not_cmds[i]),
				       "%#x", not_cmds[i]);
		KUNIT_EXPECT_EQ_MSG(test, run(ctx, not_cmds[i], &p), -ENOTTY,
				    "%#x", not_cmds[i]);
	}
	KUNIT_EXPECT_EQ(test, ctx->replies, 0);
}

static void run_nop(struct kunit *test)
{
	struct cmd_ctx *ctx = test->priv;
	union moex_payload p = {};

	KUNIT_EXPECT_EQ(test, run(ctx, MOEX_IOCTL_NOP, &p), 0);
	p.nop.flags = 1;
	KUNIT_EXPECT_EQ(test, run(ctx, MOEX_IOCTL_NOP, &p), -EINVAL);
	p.nop.flags = 0;
	p.nop.pad = 1;
	KUNIT_EXPECT_EQ(test, run(ctx, MOEX_IOCTL_NOP, &p), -EINVAL);
	p.nop.pad = 0;
	p.nop.reserved[1] = 1;
	KUNIT_EXPECT_EQ(test, run(ctx, MOEX_IOCTL_NOP, &p), -EINVAL);
	/* no output: the reply is never called */
	KUNIT_EXPECT_EQ(test, ctx->replies, 0);
}

static void run_info(struct kunit *test)
{
	struct cmd_ctx *ctx = test->priv;
	union moex_payload p = {};
	struct moex_info *info = &p.info;

	WRITE_ONCE(moex_max_pinned_mb, 4096);
	atomic64_set(&ctx->mdev->stats.pinned_bytes, 12345);
	/* output fields are ignored on input and overwritten */
	info->abi_version = 77;
	info->features = ~0ULL;
	memset(info->engine_name, 'x', sizeof(info->engine_name));

	KUNIT_ASSERT_EQ(test, run(ctx, MOEX_IOCTL_INFO, &p), 0);
	KUNIT_EXPECT_EQ(test, ctx->replies, 1);
	KUNIT_EXPECT_PTR_EQ(test, ctx->reply_payload, (const void *)&p);
	KUNIT_EXPECT_EQ(test, ctx->reply_size, sizeof(struct moex_info));
	KUNIT_EXPECT_EQ(test, info->abi_version, (u32)MOEX_ABI_VERSION);
	KUNIT_EXPECT_EQ(test, info->features,
			(u64)(MOEX_FEAT_PIN | MOEX_FEAT_PIN_READONLY |
			      MOEX_FEAT_DMABUF | MOEX_FEAT_COPY |
			      MOEX_FEAT_URING_CMD | MOEX_FEAT_COPY_FIXED));
	KUNIT_EXPECT_EQ(test, info->max_pinned_bytes, 4ULL << 30);
	KUNIT_EXPECT_EQ(test, info->pinned_bytes, 12345ULL);
	KUNIT_EXPECT_EQ(test, info->engine, (u32)MOEX_ENGINE_CPU);
	KUNIT_EXPECT_EQ(test, info->dma_bits, 0U);
	KUNIT_EXPECT_STREQ(test, (char *)info->engine_name, "cpu");
	KUNIT_EXPECT_EQ(test, info->reserved[0] | info->reserved[1], 0ULL);

	/* an engine that DMAs */
	ctx->eng.dma_dev = (struct device *)ctx;	/* never dereferenced */
	ctx->eng.dma_bits = 28;
	ctx->eng.id = MOEX_ENGINE_EDU;
	ctx->eng.name = "edu";
	memset(&p, 0, sizeof(p));
	KUNIT_ASSERT_EQ(test, run(ctx, MOEX_IOCTL_INFO, &p), 0);
	KUNIT_EXPECT_TRUE(test, info->features & MOEX_FEAT_DMA_MAPPED);
	KUNIT_EXPECT_EQ(test, info->dma_bits, 28U);
	KUNIT_EXPECT_EQ(test, info->engine, (u32)MOEX_ENGINE_EDU);
	KUNIT_EXPECT_STREQ(test, (char *)info->engine_name, "edu");
}

static void run_info_errors(struct kunit *test)
{
	struct cmd_ctx *ctx = test->priv;
	union moex_payload p = {};

	p.info.flags = 1;
	KUNIT_EXPECT_EQ(test, run(ctx, MOEX_IOCTL_INFO, &p), -EINVAL);
	p.info.flags = 0;
	p.info.reserved[0] = 1;
	KUNIT_EXPECT_EQ(test, run(ctx, MOEX_IOCTL_INFO, &p), -EINVAL);
	KUNIT_EXPECT_EQ(test, ctx->replies, 0);

	/* the reply's error is the command's */
	memset(&p, 0, sizeof(p));
	ctx->reply_ret = -EFAULT;
	KUNIT_EXPECT_EQ(test, run(ctx, MOEX_IOCTL_INFO, &p), -EFAULT);
	KUNIT_EXPECT_EQ(test, ctx->replies, 1);

	/* a removed device */
	ctx->reply_ret = 0;
	ctx->mdev->engine = NULL;
	KUNIT_EXPECT_EQ(test, run(ctx, MOEX_IOCTL_INFO, &p), -ENODEV);
	KUNIT_EXPECT_EQ(test, ctx->replies, 1);
}

static void run_dispatches(struct kunit *test)
{
	struct cmd_ctx *ctx = test->priv;
	union moex_payload p = {};

	/* each number reaches its own handler, which checks its payload */
	KUNIT_EXPECT_EQ(test, run(ctx, MOEX_IOCTL_REGION_UNPIN, &p), -ENOENT);
	memset(&p, 0, sizeof(p));
	p.region_info.handle = 1;
	KUNIT_EXPECT_EQ(test, run(ctx, MOEX_IOCTL_REGION_INFO, &p), -ENOENT);
	memset(&p, 0, sizeof(p));
	p.pin.addr = 1UL << 30;		/* length 0 */
	KUNIT_EXPECT_EQ(test, run(ctx, MOEX_IOCTL_REGION_PIN, &p), -EINVAL);
	p.pin.length = PAGE_SIZE;
	p.pin.addr = (1UL << 30) + 1;
	KUNIT_EXPECT_EQ(test, run(ctx, MOEX_IOCTL_REGION_PIN, &p), -EINVAL);
	memset(&p, 0, sizeof(p));
	p.copy.src_handle = 1;
	p.copy.dst_handle = 2;		/* length 0 */
	KUNIT_EXPECT_EQ(test, run(ctx, MOEX_IOCTL_COPY, &p), -EINVAL);
	p.copy.length = 1;		/* no such handles */
	KUNIT_EXPECT_EQ(test, run(ctx, MOEX_IOCTL_COPY, &p), -ENOENT);
	KUNIT_EXPECT_EQ(test, ctx->replies, 0);
	/* argument errors move no counter */
	KUNIT_EXPECT_EQ(test, atomic64_read(&ctx->mdev->stats.pin_failures),
			0LL);
	KUNIT_EXPECT_EQ(test, atomic64_read(&ctx->mdev->stats.copy_failures),
			0LL);
}

/* ---- the uring_cmd SQE command area --------------------------------- */

#define AREA_WORDS	(sizeof(struct moex_uring_cmd) / sizeof(u64))
#define OUT_WORD	(AREA_WORDS - 1)

static void decode_sqe64(struct kunit *test)
{
	u64 sqe[AREA_WORDS] = {};
	union moex_uring_area a;
	unsigned int i;

	/* a 64-byte SQE is refused before the area is read at all */
	memset(&a, 0xa5, sizeof(a));
	KUNIT_EXPECT_EQ(test, moex_uring_decode(sqe, MOEX_IOCTL_NOP, false, &a),
			-EINVAL);
	KUNIT_EXPECT_EQ(test, moex_uring_decode(sqe, 0, false, &a), -EINVAL);
	for (i = 0; i < AREA_WORDS; i++)
		KUNIT_EXPECT_EQ(test, a.words[i], 0xa5a5a5a5a5a5a5a5ULL);
}

static void decode_unknown(struct kunit *test)
{
	u64 sqe[AREA_WORDS] = {};
	union moex_uring_area a;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(not_cmds); i++)
		KUNIT_EXPECT_EQ_MSG(test,
				    moex_uring_decode(sqe, not_cmds[i], true,
						      &a),
				    -ENOTTY, "%#x", not_cmds[i]);
}

static void decode_copies_area(struct kunit *test)
{
	u64 sqe[AREA_WORDS];
	union moex_uring_area a;
	unsigned int i;

	/* INFO fills all 9 payload words and has output: all may be set */
	for (i = 0; i < AREA_WORDS; i++)
		sqe[i] = 0x0101010101010101ULL * (i + 1);
	KUNIT_ASSERT_EQ(test, moex_uring_decode(sqe, MOEX_IOCTL_INFO, true, &a),
			0);
	for (i = 0; i < AREA_WORDS; i++)
		KUNIT_EXPECT_EQ(test, a.words[i], sqe[i]);
	KUNIT_EXPECT_EQ(test, a.area.out_addr, sqe[OUT_WORD]);
	KUNIT_EXPECT_EQ(test, a.p.info.max_pinned_bytes, sqe[2]);
	/* a local copy: later writes to the SQE do not reach it */
	sqe[0] = 0;
	KUNIT_EXPECT_EQ(test, a.words[0], 0x0101010101010101ULL);

	memset(sqe, 0, sizeof(sqe));
	sqe[0] = 0x1000;
	sqe[1] = 0x2000;
	sqe[2] = MOEX_PIN_READONLY;
	KUNIT_ASSERT_EQ(test,
			moex_uring_decode(sqe, MOEX_IOCTL_REGION_PIN, true, &a),
			0);
	KUNIT_EXPECT_EQ(test, a.p.pin.addr, 0x1000ULL);
	KUNIT_EXPECT_EQ(test, a.p.pin.length, 0x2000ULL);
	KUNIT_EXPECT_EQ(test, a.p.pin.flags, (u32)MOEX_PIN_READONLY);
	KUNIT_EXPECT_EQ(test, a.area.out_addr, 0ULL);
}

static void decode_stray_words(struct kunit *test)
{
	union moex_uring_area a;
	unsigned int i, w;

	for (i = 0; i < ARRAY_SIZE(cmds); i++) {
		unsigned int nr = cmds[i].nr;
		unsigned int words = cmds[i].size / sizeof(u64);

		for (w = 0; w < OUT_WORD; w++) {
			u64 sqe[AREA_WORDS] = {};

			sqe[w] = 1ULL << (w * 7);
			KUNIT_EXPECT_EQ_MSG(test,
					    moex_uring_decode(sqe, nr, true, &a),
					    w < words ? 0 : -EINVAL,
					    "command %#x, word %u", nr, w);
		}
	}
}

static void decode_out_addr(struct kunit *test)
{
	union moex_uring_area a;
	unsigned int i;

	for (i = 0; i < ARRAY_SIZE(cmds); i++) {
		u64 sqe[AREA_WORDS] = {};

		sqe[OUT_WORD] = 0x7f0000001000ULL;
		KUNIT_EXPECT_EQ_MSG(test,
				    moex_uring_decode(sqe, cmds[i].nr, true, &a),
				    cmds[i].output ? 0 : -EINVAL,
				    "command %#x", cmds[i].nr);
	}
}

static struct kunit_case moex_cmd_cases[] = {
	KUNIT_CASE(table_known_commands),
	KUNIT_CASE(table_unknown_commands),
	KUNIT_CASE(run_nop),
	KUNIT_CASE(run_info),
	KUNIT_CASE(run_info_errors),
	KUNIT_CASE(run_dispatches),
	KUNIT_CASE(decode_sqe64),
	KUNIT_CASE(decode_unknown),
	KUNIT_CASE(decode_copies_area),
	KUNIT_CASE(decode_stray_words),
	KUNIT_CASE(decode_out_addr),
	{}
};

static struct kunit_suite moex_cmd_suite = {
	.name = "moex_cmd",
	.init = moex_cmd_init,
	.exit = moex_cmd_exit,
	.test_cases = moex_cmd_cases,
};

kunit_test_suite(moex_cmd_suite);
