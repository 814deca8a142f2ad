// SPDX-License-Identifier: GPL-2.0
/*
 * moex CPU copy engine: copies between pinned pages with the CPU, in the
 * submitter's context, and completes before submit returns. Always present;
 * /dev/moex0 uses it when the host has no dmaengine DMA_MEMCPY channel.
 */
#include <linux/highmem.h>
#include <linux/sched.h>
#include <linux/slab.h>

#include "moex.h"
#include "moex_probe.h"

#ifdef MOEX_HAVE_LINUX_UNALIGNED_H
#include <linux/unaligned.h>
#else
#include <asm/unaligned.h>
#endif

/* Pages copied between two cond_resched() calls. */
#define MOEX_CPU_RESCHED_PAGES	64

/*
 * Copy within a page with 64-bit loads and stores, four at a time, and
 * memcpy() for the tail. Not memcpy() for the bulk: on CPUs with ERMS or
 * REP_GOOD the kernel's memcpy() is one `rep movs`, which an emulator such
 * as QEMU's TCG (the test VM) runs one element per iteration, at a tenth of
 * the speed of this loop (Documentation/moex.rst, "Copies"); on hardware
 * both stream a page at memory speed.
 */
static void moex_cpu_copy_chunk(void *dst, const void *src, size_t len)
{
	u8 *d = dst;
	const u8 *s = src;

	for (; len >= 32; d += 32, s += 32, len -= 32) {
		u64 a = get_unaligned((const u64 *)s);
		u64 b = get_unaligned((const u64 *)(s + 8));
		u64 c = get_unaligned((const u64 *)(s + 16));
		u64 e = get_unaligned((const u64 *)(s + 24));

		put_unaligned(a, (u64 *)d);
		put_unaligned(b, (u64 *)(d + 8));
		put_unaligned(c, (u64 *)(d + 16));
		put_unaligned(e, (u64 *)(d + 24));
	}
	if (len)
		memcpy(d, s, len);
}

/**
 * moex_cpu_copy() - copy a request's bytes with the CPU and complete it.
 * @req: the request; process context.
 *
 * Also the fallback of the dmaengine engine for copies its channel cannot
 * do (offsets or length it cannot align to).
 */
void moex_cpu_copy(struct moex_copy_req *req)
{
	u64 s = req->src_off, d = req->dst_off, left = req->len;
	unsigned int n = 0;

	while (left) {
		unsigned int so = offset_in_page(s), doff = offset_in_page(d);
		size_t chunk = min3(left, (u64)(PAGE_SIZE - so),
				    (u64)(PAGE_SIZE - doff));
		void *src = kmap_local_page(req->src->pages[s >> PAGE_SHIFT]);
		void *dst = kmap_local_page(req->dst->pages[d >> PAGE_SHIFT]);

		moex_cpu_copy_chunk(dst + doff, src + so, chunk);
		kunmap_local(dst);
		kunmap_local(src);
		s += chunk;
		d += chunk;
		left -= chunk;
		if (++n % MOEX_CPU_RESCHED_PAGES == 0)
			cond_resched();
	}
	req->complete(req, 0);
}

static int moex_cpu_submit(struct moex_engine *eng, struct moex_copy_req *req)
{
	moex_cpu_copy(req);
	return 0;
}

static void moex_cpu_destroy(struct moex_engine *eng)
{
	kfree(eng);
}

static const struct moex_engine_ops moex_cpu_ops = {
	.submit = moex_cpu_submit,
	.destroy = moex_cpu_destroy,
};

struct moex_engine *moex_engine_cpu_create(void)
{
	struct moex_engine *eng = kzalloc(sizeof(*eng), GFP_KERNEL);

	if (!eng)
		return ERR_PTR(-ENOMEM);
	eng->ops = &moex_cpu_ops;
	eng->id = MOEX_ENGINE_CPU;
	eng->name = "cpu";
	return eng;
}
