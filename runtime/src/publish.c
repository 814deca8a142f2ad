// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * libmoex load publishing: the per-expert token counts of an open model in
 * a small shared file that `moexctl stats --watch` shows (format:
 * publish.h). Everything here is best effort: a model whose load cannot be
 * published runs exactly the same.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "publish.h"

struct moex_pub {
	struct moex_load_header *hdr;	/* the mapping */
	size_t len;
	int fd;				/* holds the file's flock(LOCK_EX) */
	uint32_t experts;
	char path[4096];
};

/* The files of one process are told apart by a sequence number. */
static unsigned int moex_pub_seq;

void moex__pub_open(const char *model, uint32_t first_layer, uint32_t layers,
		    uint32_t experts, struct moex_pub **out)
{
	MOEX_KEEP_ERRNO;
	const char *dir = secure_getenv("MOEX_STATS_DIR");
	char tmp[4096];
	struct moex_pub *p;
	unsigned int seq;
	size_t len;
	int fd, n;

	*out = NULL;
	if (!dir)
		dir = MOEX_LOAD_DEFAULT_DIR;
	if (!*dir || !layers || !experts || layers > MOEX_LOAD_MAX_LAYERS ||
	    experts > MOEX_LOAD_MAX_EXPERTS)
		return;
	p = calloc(1, sizeof(*p));
	if (!p)
		return;
	seq = __atomic_fetch_add(&moex_pub_seq, 1, __ATOMIC_RELAXED);
	n = snprintf(p->path, sizeof(p->path), "%s/" MOEX_LOAD_PREFIX "%ld-%u"
		     MOEX_LOAD_SUFFIX, dir, (long)getpid(), seq);
	if (n < 0 || (size_t)n >= sizeof(p->path) ||
	    snprintf(tmp, sizeof(tmp), "%s.tmp", p->path) >= (int)sizeof(tmp))
		goto err_free;
	len = MOEX_LOAD_HDR_SIZE +
	      (size_t)layers * MOEX_LOAD_SLOT_WORDS(experts) * sizeof(uint64_t);

	/* Readable by all: an operator watches another user's service. */
	unlink(tmp);
	fd = open(tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
	if (fd < 0)
		goto err_free;
	/*
	 * The blocks are reserved now (posix_fallocate() returns the error,
	 * not -1): with ftruncate() alone, the first count stored into a page
	 * that a full tmpfs (Docker's 64 MiB /dev/shm) cannot give killed the
	 * process with SIGBUS. Without them the model is not published.
	 */
	if (fchmod(fd, 0644) || posix_fallocate(fd, 0, (off_t)len) != 0)
		goto err_unlink;
	/*
	 * Locked while the model is open: the kernel drops the lock when the
	 * process dies, however it dies, and readers skip a file that no one
	 * holds locked (one left by a crash, whose pid may be another
	 * process's by now). A child of fork(2) shares the lock through the
	 * descriptor until it execs (O_CLOEXEC) or exits; readers check the
	 * header's pid too, for a publisher that died before such a child.
	 */
	if (flock(fd, LOCK_EX | LOCK_NB))
		goto err_unlink;
	p->hdr = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (p->hdr == MAP_FAILED)
		goto err_unlink;
	p->fd = fd;
	p->len = len;
	p->experts = experts;
	memcpy(p->hdr->magic, MOEX_LOAD_MAGIC, sizeof(p->hdr->magic));
	p->hdr->version = MOEX_LOAD_VERSION;
	p->hdr->header_size = MOEX_LOAD_HDR_SIZE;
	p->hdr->pid = (uint32_t)getpid();
	p->hdr->first_layer = first_layer;
	p->hdr->layers = layers;
	p->hdr->experts = experts;
	snprintf(p->hdr->model, sizeof(p->hdr->model), "%s", model ? model : "");
	/* Complete before it has its name. */
	if (rename(tmp, p->path)) {
		munmap(p->hdr, len);
		goto err_unlink;
	}
	*out = p;
	return;

err_unlink:
	close(fd);
	unlink(tmp);
err_free:
	free(p);
}

uint64_t *moex__pub_slot(struct moex_pub *p, uint32_t i)
{
	if (!p || i >= p->hdr->layers)
		return NULL;
	return (uint64_t *)((char *)p->hdr + MOEX_LOAD_HDR_SIZE) +
	       (size_t)i * MOEX_LOAD_SLOT_WORDS(p->experts);
}

uint64_t *moex__pub_updates(struct moex_pub *p)
{
	return p ? &p->hdr->updates : NULL;
}

void moex__pub_close(struct moex_pub *p)
{
	MOEX_KEEP_ERRNO;

	if (!p)
		return;
	unlink(p->path);
	munmap(p->hdr, p->len);
	close(p->fd);	/* the lock goes after the name */
	free(p);
}

void moex__pub_add(uint64_t *slot, uint64_t *updates, uint32_t experts,
		   size_t ntok, const uint32_t *counts)
{
	uint32_t e;

	if (!slot)
		return;
	__atomic_fetch_add(&slot[MOEX_LOAD_TOKENS], (uint64_t)ntok,
			   __ATOMIC_RELAXED);
	__atomic_fetch_add(&slot[MOEX_LOAD_RUNS], 1, __ATOMIC_RELAXED);
	for (e = 0; e < experts; e++)
		if (counts[e])
			__atomic_fetch_add(&slot[MOEX_LOAD_COUNTS + e],
					   counts[e], __ATOMIC_RELAXED);
	if (updates)
		__atomic_fetch_add(updates, 1, __ATOMIC_RELEASE);
}

void moex__pub_gpu(uint64_t *slot, uint64_t hits, uint64_t misses,
		   uint64_t stream_bytes, uint64_t fill_bytes)
{
	if (!slot)
		return;
	__atomic_store_n(&slot[MOEX_LOAD_GPU_HITS], hits, __ATOMIC_RELAXED);
	__atomic_store_n(&slot[MOEX_LOAD_GPU_MISSES], misses, __ATOMIC_RELAXED);
	__atomic_store_n(&slot[MOEX_LOAD_STREAM_BYTES], stream_bytes,
			 __ATOMIC_RELAXED);
	__atomic_store_n(&slot[MOEX_LOAD_FILL_BYTES], fill_bytes,
			 __ATOMIC_RELAXED);
}
