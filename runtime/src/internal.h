/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * libmoex internals shared by the runtime/src/ files. Nothing here is
 * exported from libmoex.so (runtime/libmoex.map); in libmoex.a the
 * moex__ prefix keeps these names out of an application's way.
 */
#ifndef LIBMOEX_INTERNAL_H
#define LIBMOEX_INTERNAL_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "moex.h"

/* An open /dev/moexN. */
struct moex_device {
	int fd;
	/* MOEX_IOCTL_INFO as answered at open: the ABI was checked. */
	struct moex_info info;
};

static inline void moex__errno_restore(const int *saved)
{
	errno = *saved;
}

/*
 * First statement of every public function that may touch errno: errno is
 * put back whichever way the function returns.
 */
#define MOEX_KEEP_ERRNO							\
	const int moex__saved_errno					\
		__attribute__((cleanup(moex__errno_restore), unused)) = errno

/* -errno of the libc call that just failed; never 0. */
static inline int moex__neg_errno(void)
{
	return errno > 0 ? -errno : -EIO;
}

/*
 * Size-carrying structs: check the caller's .size, and fill a field only
 * when it lies wholly inside it.
 */
static inline int moex__size_ok(size_t size)
{
	return size >= sizeof(size_t) && size <= MOEX_STRUCT_SIZE_MAX;
}

#define MOEX_COVERS(p, field)						\
	(offsetof(__typeof__(*(p)), field) + sizeof((p)->field) <= (p)->size)

#define MOEX_SET(p, field, value)					\
	do {								\
		if (MOEX_COVERS(p, field))				\
			(p)->field = (value);				\
	} while (0)

/* ioctl() on a moex fd, retried on EINTR: 0 or -errno (errno clobbered). */
int moex__ioctl(int fd, unsigned long cmd, void *arg);

/*
 * Write an explanation into err[0..errlen) (nothing when err is NULL or
 * errlen 0) and return ret: `return moex__errf(err, len, -EINVAL, ...)`.
 */
int moex__errf(char *err, size_t errlen, int ret, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/*
 * moex_error_hint() for a failed moex_lock_weights() without a device:
 * its -ENOMEM is the memlock limit alone (moex.ko's max_pinned_mb, which
 * the general hint also names, does not apply to mlock()).
 */
const char *moex__lock_hint(int err);

/* The sysfs root: $MOEX_SYSFS_ROOT (not in setuid programs) or /sys. */
const char *moex__sysfs_root(void);

/*
 * queue.c: the io_uring setup with its flag ladder, and the setup function
 * it calls (io_uring_queue_init_params), replaceable by the unit tests.
 */
struct io_uring;
struct io_uring_params;
extern int (*moex__ring_setup)(unsigned int entries, struct io_uring *ring,
			       struct io_uring_params *p);
int moex__queue_ring_init(struct io_uring *ring, unsigned int entries,
			  unsigned int *flags_out);
/* The startup probe of a new ring (INFO as uring_cmd), replaceable too. */
extern int (*moex__ring_probe)(struct moex_queue *q);

/*
 * Queue work the queue runs itself, in the submitting thread, at the next
 * moex_queue_submit(); fn's return (0 or -errno) is the completion's res.
 * -EBUSY when the queue is full.
 */
int moex__queue_host(struct moex_queue *q, int (*fn)(void *ctx), void *ctx,
		     uint64_t user_data);

/*
 * Host work that finishes later, on another thread (a GPU layer): fn
 * returns MOEX__QUEUE_LATER after moex__queue_can_post() said 0, and the
 * completion comes from moex__queue_post(q, user_data, res), from any
 * thread, exactly once. -EOPNOTSUPP from moex__queue_can_post() (a
 * synchronous queue, or no IORING_OP_MSG_RING): fn must finish the work
 * itself and return its res. moex__queue_post() returns 0, or -errno when
 * the ring would not take the completion: the ring's thread then finds it
 * at its next peek, or within MOEX_QUEUE_LOST_POLL_MS while it waits.
 */
/*
 * moe.c: 0 when desc (its size and topk covered) is a shape the kernels
 * take (moek_shape_check(), Documentation/moe-kernels.rst), else -EINVAL.
 */
int moex__moe_desc_check(const struct moex_moe_desc *desc);

#define MOEX__QUEUE_LATER 1
int moex__queue_can_post(struct moex_queue *q);
int moex__queue_post(struct moex_queue *q, uint64_t user_data, int res);
/* The poster's io_uring_submit_and_wait(), replaceable by the unit tests. */
extern int (*moex__post_submit)(struct io_uring *ring, unsigned int wait_nr);

#endif /* LIBMOEX_INTERNAL_H */
