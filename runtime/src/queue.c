// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * libmoex queues: commands submitted to one device, completions reaped in
 * one place.
 *
 * The fast path is an io_uring ring with 128-byte SQEs (the command's uapi
 * struct travels in the SQE's command area, cmd_op is its ioctl number) and
 * 32-byte CQEs, the device registered as fixed file 0. The setup asks for
 * COOP_TASKRUN (with TASKRUN_FLAG), SINGLE_ISSUER and DEFER_TASKRUN and
 * drops them one at a time where the kernel says -EINVAL (as fio does); a
 * startup INFO tells whether the driver answers uring_cmd.
 *
 * Where io_uring cannot be used, the queue is synchronous: each command
 * runs through ioctl(2) when it is submitted and its completion waits in a
 * small ring of struct moex_cqe until it is reaped. Same calls, same
 * results.
 *
 * Host work (a MoE layer) runs at submit. Work that finishes later on
 * another thread (a GPU layer: moe_hip.c) completes into the same ring:
 * its completion is posted with IORING_OP_MSG_RING (Linux 5.18) from a
 * second, small ring of the queue's, the poster, so an application waits
 * in one place. A synchronous queue, or a kernel without MSG_RING, has
 * such work wait for itself at submit instead (moex__queue_can_post()).
 */
#include <errno.h>
#include <liburing.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define MOEX_QUEUE_DEFAULT_ENTRIES	256
#define MOEX_QUEUE_MAX_ENTRIES		32768
/* How often a wait looks for completions the poster could not post, on a
 * queue that ever had later work (moex_queue_take_lost()). */
#define MOEX_QUEUE_LOST_POLL_MS		100
/* Submits of one MSG_RING the kernel could not take, 1 ms apart, before
 * the completion goes to lost instead. */
#define MOEX_POST_TRIES			10

/* Always asked for: without them the uapi structs do not fit. */
#define MOEX_RING_REQUIRED	(IORING_SETUP_SQE128 | IORING_SETUP_CQE32)
/* Asked for, dropped in this order where the kernel refuses them. */
static const unsigned int moex_ring_optional[] = {
	IORING_SETUP_DEFER_TASKRUN,	/* 6.1 */
	IORING_SETUP_SINGLE_ISSUER,	/* 6.0 */
	/* 5.19; TASKRUN_FLAG (also 5.19, and only with one of the two
	 * TASKRUN modes) says when completions wait for io_uring_get_events()
	 * (moex_ring_ready()) */
	IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG,
};

/* One command of the synchronous path, kept until submit. */
struct moex_sync_cmd {
	unsigned int nr;
	uint64_t user_data;
	union {
		struct moex_nop nop;
		struct moex_copy copy;
	} arg;
};

/* Work the queue runs itself at submit: a MoE layer (moe.c); fn returns
 * its completion's res, or MOEX__QUEUE_LATER. */
struct moex_host_op {
	int (*fn)(void *ctx);
	void *ctx;
	uint64_t user_data;
};

struct moex_queue {
	struct moex_device *dev;
	unsigned int entries;
	int mode;
	int fallback_err;
	/* io_uring mode */
	struct io_uring ring;
	unsigned int setup_flags;
	unsigned int queued;	/* SQEs prepared, not submitted */
	unsigned int inflight;	/* submitted, CQE not reaped */
	unsigned int nr_bufs;	/* registered fixed buffers */
	/* synchronous mode */
	struct moex_sync_cmd *cmds;	/* [entries], queued commands */
	/* both modes: host work queued, and completions the ring did not
	 * post (every completion of the synchronous mode) */
	struct moex_host_op *host;	/* [entries] */
	unsigned int host_queued;
	struct moex_cqe *done;		/* [entries], a ring of completions */
	unsigned int done_head, done_count;
	/* io_uring mode: the poster ring, for completions posted from other
	 * threads (moex__queue_post); post_lock protects post, which exists
	 * when post_state is 1 (0: not tried yet, < 0: cannot be made), and
	 * lost: the completions it could not post ([entries], with post), for
	 * the ring's thread to take (moex_queue_take_lost()) */
	pthread_mutex_t post_lock;
	struct io_uring post;
	int post_state;
	struct moex_cqe *lost;
	unsigned int lost_count;
	/* the ring's thread: later work was started, so a wait also looks at
	 * lost now and then */
	bool later_seen;
	/* io_uring mode with SINGLE_ISSUER: the only thread that may submit,
	 * reap or destroy (the creating one) */
	pthread_t owner;
};

/*
 * -EEXIST when the ring belongs to another thread (SINGLE_ISSUER kept):
 * checked before a call touches anything, so that a wrong thread's call
 * changes nothing (the kernel would refuse only part of it).
 */
static int moex_queue_not_owner(const struct moex_queue *q)
{
	return q->mode == MOEX_QUEUE_MODE_URING &&
	       (q->setup_flags & IORING_SETUP_SINGLE_ISSUER) &&
	       !pthread_equal(q->owner, pthread_self()) ? -EEXIST : 0;
}

/* Replaced by the unit tests to play a kernel that refuses some flags. */
int (*moex__ring_setup)(unsigned int entries, struct io_uring *ring,
			struct io_uring_params *p) = io_uring_queue_init_params;

/*
 * Set up the ring, dropping optional flags one at a time on -EINVAL.
 * 0, or the error of the last try.
 */
int moex__queue_ring_init(struct io_uring *ring, unsigned int entries,
			  unsigned int *flags_out)
{
	unsigned int flags = MOEX_RING_REQUIRED;
	struct io_uring_params p;
	size_t i;
	int ret;

	for (i = 0; i < sizeof(moex_ring_optional) / sizeof(moex_ring_optional[0]); i++)
		flags |= moex_ring_optional[i];

	for (i = 0;; i++) {
		memset(&p, 0, sizeof(p));
		p.flags = flags;
		ret = moex__ring_setup(entries, ring, &p);
		if (ret != -EINVAL ||
		    i == sizeof(moex_ring_optional) / sizeof(moex_ring_optional[0]))
			break;
		flags &= ~moex_ring_optional[i];
	}
	if (!ret)
		*flags_out = flags;
	return ret;
}

static void moex_sqe_cmd(struct io_uring_sqe *sqe, unsigned int nr,
			 const void *arg, size_t len, uint64_t user_data)
{
	io_uring_prep_rw(IORING_OP_URING_CMD, sqe, 0, NULL, 0, 0);
	sqe->flags |= IOSQE_FIXED_FILE;
	sqe->cmd_op = nr;
	/* The whole command area: the driver refuses stray bytes after the
	 * payload, and SQEs are reused. */
	memset(sqe->cmd, 0, sizeof(struct moex_uring_cmd));
	memcpy(sqe->cmd, arg, len);
	io_uring_sqe_set_data64(sqe, user_data);
}

/* Ready CQEs; with DEFER_TASKRUN the kernel runs completions only here. */
static unsigned int moex_ring_ready(struct moex_queue *q)
{
	unsigned int n = io_uring_cq_ready(&q->ring);

	if (!n && q->inflight &&
	    ((q->setup_flags & IORING_SETUP_DEFER_TASKRUN) ||
	     io_uring_cq_has_overflow(&q->ring) ||
	     (IO_URING_READ_ONCE(*q->ring.sq.kflags) & IORING_SQ_TASKRUN))) {
		io_uring_get_events(&q->ring);
		n = io_uring_cq_ready(&q->ring);
	}
	return n;
}

static unsigned int moex_ring_reap(struct moex_queue *q, struct moex_cqe *out,
				   unsigned int max)
{
	struct io_uring_cqe *cqe;
	unsigned int head, n = 0;

	io_uring_for_each_cqe(&q->ring, head, cqe) {
		if (n == max)
			break;
		out[n].user_data = io_uring_cqe_get_data64(cqe);
		out[n].res = cqe->res;
		out[n].reserved = 0;
		n++;
	}
	io_uring_cq_advance(&q->ring, n);
	q->inflight -= n;
	return n;
}

/*
 * The startup probe: INFO as a uring_cmd, its output at out_addr. 0 when
 * a moex driver answered it with its ABI version; else the errno that
 * makes the queue synchronous (-EOPNOTSUPP for a file that answers
 * uring_cmd without being moex).
 */
static int moex_ring_probe_info(struct moex_queue *q)
{
	struct moex_info info = { 0 };
	struct moex_uring_cmd area = { .out_addr = (uintptr_t)&info };
	struct io_uring_cqe *cqe;
	int ret, res;

	memset(&info, 0xff, sizeof(info));
	memset(area.payload, 0, sizeof(area.payload));
	moex_sqe_cmd(io_uring_get_sqe(&q->ring), MOEX_IOCTL_INFO, &area,
		     sizeof(area), 0);
	ret = io_uring_submit_and_wait(&q->ring, 1);
	if (ret < 0)
		return ret;
	ret = io_uring_wait_cqe(&q->ring, &cqe);
	if (ret < 0)
		return ret;
	res = cqe->res;
	io_uring_cqe_seen(&q->ring, cqe);
	if (!res && info.abi_version != MOEX_ABI_VERSION)
		res = -EOPNOTSUPP;
	return res;
}

/* Replaced by the unit tests to drive a ring on /dev/null. */
int (*moex__ring_probe)(struct moex_queue *q) = moex_ring_probe_info;

static int moex_queue_ring_open(struct moex_queue *q)
{
	int fd = moex_device_fd(q->dev);
	int ret;

	ret = moex__queue_ring_init(&q->ring, q->entries, &q->setup_flags);
	if (ret)
		return ret;
	ret = io_uring_register_files(&q->ring, &fd, 1);
	if (!ret)
		ret = moex__ring_probe(q);
	if (ret)
		io_uring_queue_exit(&q->ring);
	return ret;
}

static int moex_queue_sync_open(struct moex_queue *q)
{
	q->cmds = calloc(q->entries, sizeof(*q->cmds));
	if (!q->cmds)
		return -ENOMEM;
	q->mode = MOEX_QUEUE_MODE_SYNC;
	return 0;
}

static void moex_queue_free(struct moex_queue *q)
{
	/*
	 * A poster may still wait for its own CQE after the queue's was
	 * reaped (moex__queue_post() holds post_lock throughout, and touches
	 * nothing of q once it let go).
	 */
	pthread_mutex_lock(&q->post_lock);
	if (q->post_state > 0)
		io_uring_queue_exit(&q->post);
	free(q->lost);
	pthread_mutex_unlock(&q->post_lock);
	pthread_mutex_destroy(&q->post_lock);
	free(q->cmds);
	free(q->host);
	free(q->done);
	free(q);
}

int moex_queue_create(struct moex_device *dev,
		      const struct moex_queue_opts *opts,
		      struct moex_queue **out)
{
	MOEX_KEEP_ERRNO;
	unsigned int entries = MOEX_QUEUE_DEFAULT_ENTRIES, flags = 0;
	struct moex_queue *q;
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (opts) {
		if (!moex__size_ok(opts->size))
			return -EINVAL;
		if (MOEX_COVERS(opts, entries) && opts->entries)
			entries = opts->entries;
		if (MOEX_COVERS(opts, flags))
			flags = opts->flags;
	}
	if (entries > MOEX_QUEUE_MAX_ENTRIES || flags & ~MOEX_QUEUE_SYNC)
		return -EINVAL;

	q = calloc(1, sizeof(*q));
	if (!q)
		return -ENOMEM;
	q->dev = dev;
	q->entries = entries;
	pthread_mutex_init(&q->post_lock, NULL);
	q->host = calloc(entries, sizeof(*q->host));
	q->done = calloc(entries, sizeof(*q->done));
	if (!q->host || !q->done) {
		moex_queue_free(q);
		return -ENOMEM;
	}

	if (!dev)
		ret = -ENODEV;	/* host work only */
	else if (flags & MOEX_QUEUE_SYNC)
		ret = -ECANCELED;
	else
		ret = moex_queue_ring_open(q);
	if (!ret) {
		q->mode = MOEX_QUEUE_MODE_URING;
		q->owner = pthread_self();
	} else {
		/* -ECANCELED: asked for; else why io_uring is not usable. */
		q->fallback_err = ret == -ECANCELED ? 0 : ret;
		q->setup_flags = 0;
		ret = moex_queue_sync_open(q);
		if (ret) {
			moex_queue_free(q);
			return ret;
		}
	}
	*out = q;
	return 0;
}

int moex_queue_destroy(struct moex_queue *q)
{
	MOEX_KEEP_ERRNO;
	struct moex_cqe cqe;

	if (!q)
		return 0;
	/* another thread than the ring's: nothing is torn down, for the
	 * ring's thread to do it */
	if (moex_queue_not_owner(q) &&
	    (q->queued || q->host_queued || q->inflight))
		return -EEXIST;
	/* What was queued runs: host work owns memory only running frees. */
	if (q->queued || q->host_queued)
		moex_queue_submit(q);
	if (q->mode == MOEX_QUEUE_MODE_URING) {
		/* The driver's commands hold buffers of the caller's, and
		 * later work posts into the ring. */
		while (q->inflight && moex_queue_wait(q, &cqe, 1, 1, -1) >= 0)
			;
		io_uring_queue_exit(&q->ring);
	}
	moex_queue_free(q);
	return 0;
}

int moex_queue_mode(const struct moex_queue *q, unsigned int *setup_flags,
		    int *fallback_err)
{
	if (!q)
		return -EINVAL;
	if (setup_flags)
		*setup_flags = q->setup_flags;
	if (fallback_err)
		*fallback_err = q->fallback_err;
	return q->mode;
}

/*
 * Queue one command on either path. buf_index >= 0 names the registered
 * buffer of a fixed COPY (io_uring only).
 */
static int moex_queue_cmd(struct moex_queue *q, unsigned int nr,
			  const void *arg, size_t len, uint64_t user_data,
			  int buf_index)
{
	struct moex_sync_cmd *c;

	if (q->mode == MOEX_QUEUE_MODE_URING) {
		struct io_uring_sqe *sqe;

		if (q->queued + q->inflight + q->host_queued + q->done_count >=
		    q->entries)
			return -EBUSY;
		sqe = io_uring_get_sqe(&q->ring);
		if (!sqe)
			return -EBUSY;
		moex_sqe_cmd(sqe, nr, arg, len, user_data);
		if (buf_index >= 0) {
			sqe->uring_cmd_flags = IORING_URING_CMD_FIXED;
			sqe->buf_index = (uint16_t)buf_index;
		}
		q->queued++;
		return 0;
	}

	/* Room for its completion too: every queued command makes one. */
	if (q->queued + q->host_queued + q->done_count >= q->entries)
		return -EBUSY;
	c = &q->cmds[q->queued++];
	c->nr = nr;
	c->user_data = user_data;
	memcpy(&c->arg, arg, len);
	return 0;
}

int moex_queue_nop(struct moex_queue *q, uint64_t user_data)
{
	struct moex_nop nop = { 0 };

	if (!q)
		return -EINVAL;
	return moex_queue_cmd(q, MOEX_IOCTL_NOP, &nop, sizeof(nop), user_data, -1);
}

int moex_queue_copy(struct moex_queue *q, uint32_t dst_handle,
		    uint64_t dst_off, uint32_t src_handle, uint64_t src_off,
		    uint64_t len, uint64_t user_data)
{
	struct moex_copy c = {
		.src_handle = src_handle,
		.dst_handle = dst_handle,
		.src_offset = src_off,
		.dst_offset = dst_off,
		.length = len,
	};

	if (!q)
		return -EINVAL;
	return moex_queue_cmd(q, MOEX_IOCTL_COPY, &c, sizeof(c), user_data, -1);
}

/* A completion that does not come from the ring. */
static void moex_queue_done(struct moex_queue *q, uint64_t user_data, int res)
{
	struct moex_cqe *d = &q->done[(q->done_head + q->done_count) %
				      q->entries];

	d->user_data = user_data;
	d->res = res;
	d->reserved = 0;
	q->done_count++;
}

int moex__queue_host(struct moex_queue *q, int (*fn)(void *ctx), void *ctx,
		     uint64_t user_data)
{
	struct moex_host_op *h;

	if (q->queued + q->inflight + q->host_queued + q->done_count >=
	    q->entries)
		return -EBUSY;
	h = &q->host[q->host_queued++];
	h->fn = fn;
	h->ctx = ctx;
	h->user_data = user_data;
	return 0;
}

/* Run the host work queued, in order, after the device commands left. */
static int moex_queue_run_host(struct moex_queue *q)
{
	unsigned int i, n = q->host_queued;
	int res;

	for (i = 0; i < n; i++) {
		res = q->host[i].fn(q->host[i].ctx);
		if (res == MOEX__QUEUE_LATER) {
			q->inflight++;	/* its CQE comes through the poster */
			q->later_seen = true;
		} else
			moex_queue_done(q, q->host[i].user_data, res);
	}
	q->host_queued = 0;
	return (int)n;
}

/* The poster ring: small, no flags, since any thread may post through it. */
static int moex_post_open(struct moex_queue *q)
{
	struct io_uring_probe *probe;
	int ret;

	probe = io_uring_get_probe_ring(&q->ring);
	if (!probe)
		return -ENOMEM;
	ret = io_uring_opcode_supported(probe, IORING_OP_MSG_RING) ?
		0 : -EOPNOTSUPP;
	io_uring_free_probe(probe);
	if (ret)
		return ret;
	q->lost = calloc(q->entries, sizeof(*q->lost));
	if (!q->lost)
		return -ENOMEM;
	ret = io_uring_queue_init(4, &q->post, 0);
	if (ret) {
		free(q->lost);
		q->lost = NULL;
	}
	return ret;
}

int moex__queue_can_post(struct moex_queue *q)
{
	if (q->mode != MOEX_QUEUE_MODE_URING)
		return -EOPNOTSUPP;
	pthread_mutex_lock(&q->post_lock);
	if (!q->post_state)
		q->post_state = moex_post_open(q) ? -1 : 1;
	pthread_mutex_unlock(&q->post_lock);
	return q->post_state > 0 ? 0 : -EOPNOTSUPP;
}

/* Replaced by the unit tests to play a ring that refuses a MSG_RING. */
int (*moex__post_submit)(struct io_uring *ring, unsigned int wait_nr) =
	io_uring_submit_and_wait;

/*
 * Send one MSG_RING through the poster, under post_lock. 0: the message
 * went and *res_out is its result (negative when the queue's ring refused
 * it). 1: it went, but its CQE was not seen. -errno: the kernel never took
 * it (a signal, no memory for the request: tried MOEX_POST_TRIES times).
 * The poster is left dirty in the last two cases: a submit that never went
 * leaves its SQE queued, for the next post to send by mistake, and an
 * unseen CQE would answer the next post.
 */
static int moex_post_send(struct moex_queue *q, uint64_t user_data, int res,
			  int *res_out)
{
	const struct timespec pause = { .tv_nsec = 1000000 };
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	int ret, tries = 0;

	sqe = io_uring_get_sqe(&q->post);
	if (!sqe)
		return -EBUSY;	/* never: the poster is empty between posts */
	io_uring_prep_msg_ring(sqe, q->ring.ring_fd, (unsigned int)res,
			       user_data, 0);
	while ((ret = moex__post_submit(&q->post, 1)) < 0 &&
	       ++tries < MOEX_POST_TRIES)
		nanosleep(&pause, NULL);
	if (ret < 0)
		return ret;
	do
		ret = io_uring_wait_cqe(&q->post, &cqe);
	while (ret == -EINTR || ret == -EAGAIN);
	if (ret < 0)
		return 1;
	*res_out = cqe->res;
	io_uring_cqe_seen(&q->post, cqe);
	return 0;
}

int moex__queue_post(struct moex_queue *q, uint64_t user_data, int res)
{
	int ret, sent = 0, got = -EAGAIN;

	pthread_mutex_lock(&q->post_lock);
	ret = q->post_state > 0 ? 0 : -EBADF;
	while (!ret && !sent && got == -EAGAIN) {
		sent = moex_post_send(q, user_data, res, &got);
		if (sent < 0)
			ret = sent;
	}
	if (!ret && !sent && got < 0)
		ret = got;	/* the queue's ring refused the message */
	/* a dirty poster is made again; where it cannot be, later posts go
	 * to lost at once */
	if (sent) {
		io_uring_queue_exit(&q->post);
		if (io_uring_queue_init(4, &q->post, 0))
			q->post_state = -1;
	}
	/*
	 * The completion did not reach the ring: the ring's thread takes it
	 * from lost. Never full: each entry is a completion in flight.
	 */
	if (ret < 0) {
		q->lost[q->lost_count].user_data = user_data;
		q->lost[q->lost_count].res = res;
		q->lost[q->lost_count].reserved = 0;
		q->lost_count++;
	}
	pthread_mutex_unlock(&q->post_lock);
	return ret;
}

/*
 * The ring's thread: the completions the poster could not post join the
 * queue's own, and leave the count in flight.
 */
static void moex_queue_take_lost(struct moex_queue *q)
{
	unsigned int i;

	if (!q->later_seen)
		return;
	pthread_mutex_lock(&q->post_lock);
	for (i = 0; i < q->lost_count; i++)
		moex_queue_done(q, q->lost[i].user_data, q->lost[i].res);
	q->inflight -= q->lost_count;
	q->lost_count = 0;
	pthread_mutex_unlock(&q->post_lock);
}

int moex_queue_register_buffers(struct moex_queue *q, const struct iovec *iov,
				unsigned int nr)
{
	MOEX_KEEP_ERRNO;
	int ret;

	if (!q || (nr && !iov))
		return -EINVAL;
	if (q->mode != MOEX_QUEUE_MODE_URING)
		return -EOPNOTSUPP;
	if (q->nr_bufs) {
		ret = io_uring_unregister_buffers(&q->ring);
		if (ret)
			return ret;
		q->nr_bufs = 0;
	}
	if (!nr)
		return 0;
	ret = io_uring_register_buffers(&q->ring, iov, nr);
	if (!ret)
		q->nr_bufs = nr;
	return ret;
}

int moex_queue_copy_fixed(struct moex_queue *q, unsigned int flags,
			  uint32_t handle, uint64_t off, unsigned int buf_index,
			  void *addr, uint64_t len, uint64_t user_data)
{
	struct moex_copy c = { .length = len, .flags = flags };

	if (!q || buf_index > UINT16_MAX ||
	    (flags != MOEX_COPY_SRC_FIXED && flags != MOEX_COPY_DST_FIXED))
		return -EINVAL;
	if (q->mode != MOEX_QUEUE_MODE_URING)
		return -EOPNOTSUPP;
	if (flags == MOEX_COPY_SRC_FIXED) {
		c.src_offset = (uintptr_t)addr;
		c.dst_handle = handle;
		c.dst_offset = off;
	} else {
		c.dst_offset = (uintptr_t)addr;
		c.src_handle = handle;
		c.src_offset = off;
	}
	return moex_queue_cmd(q, MOEX_IOCTL_COPY, &c, sizeof(c), user_data,
			      (int)buf_index);
}

int moex_queue_submit(struct moex_queue *q)
{
	MOEX_KEEP_ERRNO;
	unsigned int i, n;
	int ret;

	if (!q)
		return -EINVAL;
	if (moex_queue_not_owner(q))
		return -EEXIST;
	if (q->mode == MOEX_QUEUE_MODE_URING) {
		ret = 0;
		if (q->queued) {
			ret = io_uring_submit(&q->ring);
			if (ret < 0)
				return ret;
			q->queued -= (unsigned int)ret;
			q->inflight += (unsigned int)ret;
		}
		return ret + moex_queue_run_host(q);
	}

	n = q->queued;
	for (i = 0; i < n; i++) {
		struct moex_sync_cmd *c = &q->cmds[i];

		moex_queue_done(q, c->user_data,
				q->dev ? moex__ioctl(moex_device_fd(q->dev),
						     c->nr, &c->arg) : -ENODEV);
	}
	q->queued = 0;
	return (int)n + moex_queue_run_host(q);
}

static unsigned int moex_sync_reap(struct moex_queue *q, struct moex_cqe *out,
				   unsigned int max)
{
	unsigned int n = 0;

	while (n < max && q->done_count) {
		out[n++] = q->done[q->done_head];
		q->done_head = (q->done_head + 1) % q->entries;
		q->done_count--;
	}
	return n;
}

int moex_queue_peek(struct moex_queue *q, struct moex_cqe *cqes,
		    unsigned int max)
{
	MOEX_KEEP_ERRNO;
	unsigned int n;

	if (!q || (!cqes && max))
		return -EINVAL;
	if (moex_queue_not_owner(q))
		return -EEXIST;
	moex_queue_take_lost(q);
	n = moex_sync_reap(q, cqes, max);
	if (q->mode == MOEX_QUEUE_MODE_SYNC || n == max)
		return (int)n;
	moex_ring_ready(q);
	return (int)(n + moex_ring_reap(q, cqes + n, max - n));
}

/* *left: from now until *deadline (CLOCK_MONOTONIC), 0 when past it. */
static void moex_time_left(const struct timespec *deadline,
			   struct __kernel_timespec *left)
{
	struct timespec now;
	long long ns;

	clock_gettime(CLOCK_MONOTONIC, &now);
	ns = (long long)(deadline->tv_sec - now.tv_sec) * 1000000000 +
	     (deadline->tv_nsec - now.tv_nsec);
	if (ns < 0)
		ns = 0;
	left->tv_sec = ns / 1000000000;
	left->tv_nsec = ns % 1000000000;
}

int moex_queue_wait(struct moex_queue *q, struct moex_cqe *cqes,
		    unsigned int max, unsigned int min, int timeout_ms)
{
	MOEX_KEEP_ERRNO;
	struct __kernel_timespec ts, *wtsp, poll = {
		.tv_nsec = MOEX_QUEUE_LOST_POLL_MS * 1000000LL,
	};
	bool timed = timeout_ms >= 0, expired = false;
	struct timespec deadline;
	struct io_uring_cqe *cqe;
	int ret;

	if (!q || !cqes || !max || min > max || timeout_ms < -1)
		return -EINVAL;
	if (moex_queue_not_owner(q))
		return -EEXIST;
	if (q->mode == MOEX_QUEUE_MODE_SYNC) {
		/* Nothing is ever in flight: what is done is all there is. */
		if (q->done_count < min)
			return -ETIME;
		return (int)moex_sync_reap(q, cqes, max);
	}

	if (timed) {
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_sec += timeout_ms / 1000;
		deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
		if (deadline.tv_nsec >= 1000000000) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000;
		}
	}
	/*
	 * The local completions count towards min; the ring gives the rest.
	 * Later work's completions come through the ring, or, where it would
	 * not take one, through lost, which nothing signals: looked at every
	 * MOEX_QUEUE_LOST_POLL_MS. Each wait is followed by a look at both,
	 * the last one too (it enters the kernel, which runs the completions
	 * waiting for this thread, even with no time left).
	 */
	for (;;) {
		unsigned int want;

		moex_queue_take_lost(q);
		if (q->done_count + moex_ring_ready(q) >= min)
			break;
		want = min - q->done_count;
		if (want > q->inflight || expired)
			return -ETIME;	/* can never arrive, or too late */
		/* what is left of the timeout: a signal does not restart it */
		wtsp = NULL;
		if (timed) {
			moex_time_left(&deadline, &ts);
			expired = !ts.tv_sec && !ts.tv_nsec;
			wtsp = &ts;
		}
		if (q->later_seen &&
		    (!wtsp || ts.tv_sec || ts.tv_nsec > poll.tv_nsec))
			wtsp = &poll;
		ret = io_uring_wait_cqes(&q->ring, &cqe, want, wtsp, NULL);
		if (ret < 0 && ret != -EINTR && ret != -ETIME)
			return ret;
	}
	return moex_queue_peek(q, cqes, max);
}
