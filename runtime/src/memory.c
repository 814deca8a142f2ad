// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * libmoex pinnable memory: anonymous mappings aligned to a huge page, with
 * transparent huge pages on request.
 */
#include <errno.h>
#include <stdint.h>
#include <sys/mman.h>

#include "internal.h"

/* len rounded up to MOEX_PINNABLE_ALIGN; 0 when that overflows. */
static size_t moex_pinnable_len(size_t len)
{
	if (len > SIZE_MAX - (MOEX_PINNABLE_ALIGN - 1))
		return 0;
	return (len + MOEX_PINNABLE_ALIGN - 1) & ~(MOEX_PINNABLE_ALIGN - 1);
}

int moex_alloc_pinnable(size_t len, bool hugepages, void **out)
{
	MOEX_KEEP_ERRNO;
	size_t size, head, tail;
	uintptr_t base, start;
	void *p;

	if (!out)
		return -EINVAL;
	*out = NULL;
	size = moex_pinnable_len(len);
	if (!len || !size || size > SIZE_MAX - MOEX_PINNABLE_ALIGN)
		return len ? -ENOMEM : -EINVAL;

	/* Map one alignment unit more, then cut the ends to align. */
	p = mmap(NULL, size + MOEX_PINNABLE_ALIGN, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return moex__neg_errno();
	base = (uintptr_t)p;
	start = (base + MOEX_PINNABLE_ALIGN - 1) & ~(uintptr_t)(MOEX_PINNABLE_ALIGN - 1);
	head = start - base;
	tail = MOEX_PINNABLE_ALIGN - head;
	if (head)
		munmap(p, head);
	if (tail)
		munmap((void *)(start + size), tail);

	/* Advice only: without THP the memory still works, in small pages. */
	if (hugepages)
		(void)madvise((void *)start, size, MADV_HUGEPAGE);

	*out = (void *)start;
	return 0;
}

int moex_free_pinnable(void *addr, size_t len)
{
	MOEX_KEEP_ERRNO;
	size_t size;

	if (!addr)
		return 0;
	size = moex_pinnable_len(len);
	if (!len || !size || (uintptr_t)addr % MOEX_PINNABLE_ALIGN)
		return -EINVAL;
	if (munmap(addr, size) < 0)
		return moex__neg_errno();
	return 0;
}
