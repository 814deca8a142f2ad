// SPDX-License-Identifier: GPL-2.0
/*
 * Unit tests of libmoex queues without a moex device: the io_uring flag
 * ladder against a fake kernel that refuses flags, the fallback to the
 * synchronous path (and why), and that path's submit/peek/wait against a
 * fake driver (fakeioctl.h's ioctl() replaces libc's for moex commands);
 * and completions posted from another thread into the ring (MSG_RING).
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "moex.h"
#include "harness.h"
#include "../../runtime/src/internal.h"

/* ---- a fake kernel for io_uring_setup ----------------------------------- */

static struct {
	unsigned int refuse;	/* flags answered with -EINVAL */
	int error;		/* if non-zero, every setup fails so */
	unsigned int tries;
	unsigned int last_flags;
} kern;

static int fake_setup(unsigned int entries, struct io_uring *ring,
		      struct io_uring_params *p)
{
	(void)entries;
	(void)ring;
	kern.tries++;
	kern.last_flags = p->flags;
	if (kern.error)
		return kern.error;
	return p->flags & kern.refuse ? -EINVAL : 0;
}

/* COOP_TASKRUN comes with TASKRUN_FLAG, which needs it */
#define COOP		(IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG)
#define ALL_OPTIONAL	(COOP | IORING_SETUP_SINGLE_ISSUER |		\
			 IORING_SETUP_DEFER_TASKRUN)
#define REQUIRED	(IORING_SETUP_SQE128 | IORING_SETUP_CQE32)

static int ladder(unsigned int refuse, int error, unsigned int *flags)
{
	struct io_uring ring;

	memset(&kern, 0, sizeof(kern));
	kern.refuse = refuse;
	kern.error = error;
	moex__ring_setup = fake_setup;
	*flags = 0;
	return moex__queue_ring_init(&ring, 8, flags);
}

TEST(ladder_takes_everything_first)
{
	unsigned int flags;

	CHECK_INT(ladder(0, 0, &flags), 0);
	CHECK_INT(kern.tries, 1);
	CHECK_INT(flags, REQUIRED | ALL_OPTIONAL);
}

TEST(ladder_drops_defer_taskrun_first)
{
	unsigned int flags;

	CHECK_INT(ladder(IORING_SETUP_DEFER_TASKRUN, 0, &flags), 0);
	CHECK_INT(kern.tries, 2);
	CHECK_INT(flags, REQUIRED | COOP | IORING_SETUP_SINGLE_ISSUER);
}

TEST(ladder_drops_single_issuer_next)
{
	unsigned int flags;

	CHECK_INT(ladder(IORING_SETUP_SINGLE_ISSUER, 0, &flags), 0);
	CHECK_INT(kern.tries, 3);
	CHECK_INT(flags, REQUIRED | COOP);
}

TEST(ladder_keeps_only_what_is_required)
{
	unsigned int flags;

	CHECK_INT(ladder(IORING_SETUP_TASKRUN_FLAG, 0, &flags), 0);
	CHECK_INT(kern.tries, 4);
	CHECK_INT(flags, REQUIRED);
}

TEST(ladder_never_drops_sqe128)
{
	unsigned int flags;

	CHECK_INT(ladder(IORING_SETUP_SQE128, 0, &flags), -EINVAL);
	CHECK_INT(kern.tries, 4);
	CHECK_INT(kern.last_flags, REQUIRED);
}

TEST(ladder_stops_on_other_errors)
{
	unsigned int flags;

	CHECK_INT(ladder(0, -EPERM, &flags), -EPERM);
	CHECK_INT(kern.tries, 1);
	CHECK_INT(ladder(0, -ENOMEM, &flags), -ENOMEM);
	CHECK_INT(kern.tries, 1);
}

#include "fakeioctl.h"

static struct moex_device *fake_device(void)
{
	return fake_device_at("/dev/zero");
}

static struct moex_queue *sync_queue(struct moex_device *dev,
				     unsigned int entries)
{
	struct moex_queue_opts o = {
		.size = sizeof(o), .entries = entries, .flags = MOEX_QUEUE_SYNC,
	};
	struct moex_queue *q = NULL;

	if (moex_queue_create(dev, &o, &q))
		return NULL;
	return q;
}

TEST(create_rejects_bad_options)
{
	struct moex_device *dev = fake_device();
	struct moex_queue_opts o = { .size = sizeof(o) };
	struct moex_queue *q = (void *)1;

	CHECK(dev);
	CHECK_INT(moex_queue_create(dev, NULL, NULL), -EINVAL);
	o.size = 1;
	CHECK_INT(moex_queue_create(dev, &o, &q), -EINVAL);
	CHECK(q == NULL);
	o.size = sizeof(o);
	o.entries = 1u << 20;
	CHECK_INT(moex_queue_create(dev, &o, &q), -EINVAL);
	o.entries = 32769;	/* one past the most moex.h allows */
	CHECK_INT(moex_queue_create(dev, &o, &q), -EINVAL);
	o.entries = 0;
	o.flags = 0x80;
	CHECK_INT(moex_queue_create(dev, &o, &q), -EINVAL);
	moex_close(dev);
}

TEST(sync_when_asked)
{
	struct moex_device *dev = fake_device();
	struct moex_queue *q;
	unsigned int flags = 1;
	int why = 1;

	CHECK(dev);
	q = sync_queue(dev, 8);
	CHECK(q);
	CHECK_INT(moex_queue_mode(q, &flags, &why), MOEX_QUEUE_MODE_SYNC);
	CHECK_INT(flags, 0);
	CHECK_INT(why, 0);
	moex_queue_destroy(q);
	moex_close(dev);
}

TEST(host_only_queue_without_device)
{
	struct moex_cqe cqe[2];
	struct moex_queue *q = NULL;
	int why = 0;

	CHECK_INT(moex_queue_create(NULL, NULL, &q), 0);
	CHECK(q);
	CHECK_INT(moex_queue_mode(q, NULL, &why), MOEX_QUEUE_MODE_SYNC);
	CHECK_INT(why, -ENODEV);
	/* a device command has nowhere to go: it completes with -ENODEV */
	CHECK_INT(moex_queue_nop(q, 7), 0);
	CHECK_INT(moex_queue_submit(q), 1);
	CHECK_INT(moex_queue_wait(q, cqe, 2, 1, 0), 1);
	CHECK_INT((int)cqe[0].user_data, 7);
	CHECK_INT(cqe[0].res, -ENODEV);
	CHECK_INT(moex_queue_register_buffers(q, NULL, 0), -EOPNOTSUPP);
	moex_queue_destroy(q);
}

TEST(sync_when_io_uring_is_disabled)
{
	struct moex_device *dev = fake_device();
	struct moex_queue *q = NULL;
	int why = 0;

	CHECK(dev);
	memset(&kern, 0, sizeof(kern));
	kern.error = -EPERM;
	moex__ring_setup = fake_setup;
	CHECK_INT(moex_queue_create(dev, NULL, &q), 0);
	CHECK_INT(moex_queue_mode(q, NULL, &why), MOEX_QUEUE_MODE_SYNC);
	CHECK_INT(why, -EPERM);
	CHECK(strstr(moex_error_hint(why), "io_uring") != NULL);
	/* Still a working queue. */
	CHECK_INT(moex_queue_nop(q, 7), 0);
	CHECK_INT(moex_queue_submit(q), 1);
	CHECK_INT(drv.nops, 1);
	moex_queue_destroy(q);
	moex_close(dev);
}

/*
 * With the real io_uring (where this machine allows it), a file that does
 * not answer uring_cmd (/dev/zero) must fail the startup no-op and make the
 * queue synchronous: the probe is what catches a driver without uring_cmd.
 */
TEST(startup_nop_catches_a_driver_without_uring_cmd)
{
	struct moex_device *dev = fake_device();
	struct moex_queue *q = NULL;
	int why = 0;

	CHECK(dev);
	moex__ring_setup = io_uring_queue_init_params;
	CHECK_INT(moex_queue_create(dev, NULL, &q), 0);
	CHECK_INT(moex_queue_mode(q, NULL, &why), MOEX_QUEUE_MODE_SYNC);
	if (why == -EPERM || why == -ENOSYS) {
		moex_queue_destroy(q);
		moex_close(dev);
		SKIP("io_uring is not available here (%s)", moex_strerror(why));
	}
	CHECK_MSG(why == -EOPNOTSUPP || why == -EINVAL,
		  "fallback reason %d (%s)", why, moex_strerror(why));
	moex_queue_destroy(q);
	moex_close(dev);
}

/*
 * Host work that completes later, from its own thread (as a GPU's does),
 * after delay_us (0: at once).
 */
struct later {
	struct moex_queue *q;
	uint64_t user_data;
	int res;
	unsigned int delay_us;
	pthread_t thread;
	int post_ret;
};

/* q: a queue on /dev/null that takes later work (MSG_RING), or SKIP. */
#define POSTING_QUEUE(dev, q)						\
	do {								\
		int r_ = uring_queue_on_null(8, true, &(dev), &(q));	\
									\
		if (r_)							\
			SKIP("no io_uring queue with MSG_RING here (%s)", \
			     moex_strerror(r_));			\
	} while (0)

static void *later_main(void *arg)
{
	struct later *l = arg;

	if (l->delay_us)
		usleep(l->delay_us);
	l->post_ret = moex__queue_post(l->q, l->user_data, l->res);
	return NULL;
}

static int later_start(void *ctx)
{
	struct later *l = ctx;

	if (pthread_create(&l->thread, NULL, later_main, l))
		return -EAGAIN;
	return MOEX__QUEUE_LATER;
}

/*
 * The poster gets the queue's CQE out before its own: the owner may reap
 * it and destroy the queue while the poster still waits on the poster
 * ring. Destroy must wait for it (it freed the queue under it: ASan saw
 * the poster read freed memory). A race: many rounds make it likely.
 */
TEST(destroy_right_after_a_posted_completion)
{
	struct moex_device *dev;
	struct moex_queue *q;
	struct moex_cqe c;
	int i;

	for (i = 0; i < 300; i++) {
		struct later l = { .user_data = 9, .res = 1 };

		POSTING_QUEUE(dev, q);
		l.q = q;
		CHECK_INT(moex__queue_host(q, later_start, &l, l.user_data), 0);
		CHECK_INT(moex_queue_submit(q), 1);
		CHECK_INT(moex_queue_wait(q, &c, 1, 1, 5000), 1);
		CHECK_INT(moex_queue_destroy(q), 0);
		moex_close(dev);
		pthread_join(l.thread, NULL);
		CHECK_INT(l.post_ret, 0);
	}
}

/*
 * Destroy with later work still to come waits for its completion: the
 * poster posts into the queue's ring after the destroy began (freeing
 * the queue at once: the poster used freed memory, or posted to a closed
 * ring).
 */
TEST(destroy_waits_for_later_work)
{
	struct later l = { .user_data = 5, .res = 0, .delay_us = 20000 };
	struct moex_device *dev;
	struct moex_queue *q;

	POSTING_QUEUE(dev, q);
	l.q = q;
	CHECK_INT(moex__queue_host(q, later_start, &l, l.user_data), 0);
	CHECK_INT(moex_queue_submit(q), 1);
	CHECK_INT(moex_queue_destroy(q), 0);
	moex_close(dev);
	pthread_join(l.thread, NULL);
	CHECK_INT(l.post_ret, 0);
}

/*
 * With DEFER_TASKRUN, a completion posted from another thread waits in
 * the kernel until the ring's thread asks for it: peek alone must get it
 * (it never came without io_uring_get_events()).
 */
TEST(peek_gets_a_posted_completion)
{
	struct later l = { .user_data = 8, .res = 4 };
	struct moex_device *dev;
	struct moex_queue *q;
	struct moex_cqe c[2];
	unsigned int flags = 0;
	int n = 0, i;

	POSTING_QUEUE(dev, q);
	moex_queue_mode(q, &flags, NULL);
	l.q = q;
	CHECK_INT(moex__queue_host(q, later_start, &l, l.user_data), 0);
	CHECK_INT(moex_queue_submit(q), 1);
	pthread_join(l.thread, NULL);	/* posted */
	CHECK_INT(l.post_ret, 0);
	for (i = 0; i < 1000 && !n; i++)
		n = moex_queue_peek(q, c, 2);
	CHECK_MSG(n == 1, "peek: %d after %d tries (flags 0x%x)", n, i, flags);
	CHECK_U64(c[0].user_data, 8);
	CHECK_INT(c[0].res, 4);
	CHECK_INT(moex_queue_destroy(q), 0);
	moex_close(dev);
}

TEST(later_work_completes_into_the_ring_from_another_thread)
{
	struct later l[3] = {
		{ .user_data = 101, .res = 0, .delay_us = 20000 },
		{ .user_data = 102, .res = -EIO, .delay_us = 20000 },
		{ .user_data = 103, .res = 7, .delay_us = 20000 },
	};
	struct moex_device *dev;
	struct moex_queue *q, *sq;
	struct moex_cqe c[8];
	bool seen[4] = { false };
	int ret, n, got = 0, i;

	ret = uring_queue_on_null(16, true, &dev, &q);
	if (ret)
		SKIP("no io_uring queue with MSG_RING (Linux 5.18) here (%s)",
		     moex_strerror(ret));
	for (i = 0; i < 3; i++) {
		l[i].q = q;
		CHECK_INT(moex__queue_host(q, later_start, &l[i],
					   l[i].user_data), 0);
	}
	CHECK_INT(moex_queue_nop(q, 104), 0);
	CHECK_INT(moex_queue_submit(q), 4);
	/* the NOP may come first; the three later ones come when posted */
	while (got < 4) {
		n = moex_queue_wait(q, c, 8, 1, 5000);
		CHECK_MSG(n > 0, "wait: %d (%s)", n, moex_strerror(n));
		for (i = 0; i < n; i++) {
			unsigned int k = (unsigned int)(c[i].user_data - 101);

			CHECK_MSG(k < 4 && !seen[k], "user_data %llu",
				  (unsigned long long)c[i].user_data);
			seen[k] = true;
			CHECK_INT(c[i].res, k < 3 ? l[k].res : 0);
		}
		got += n;
	}
	for (i = 0; i < 3; i++) {
		pthread_join(l[i].thread, NULL);
		CHECK_INT(l[i].post_ret, 0);
	}
	/* nothing more in flight, nothing more to come */
	CHECK_INT(moex_queue_wait(q, c, 8, 1, 0), -ETIME);
	/* a timeout under a second is its milliseconds (999: 20 ms is in) */
	l[0].delay_us = 20000;
	CHECK_INT(moex__queue_host(q, later_start, &l[0], l[0].user_data), 0);
	CHECK_INT(moex_queue_submit(q), 1);
	n = moex_queue_wait(q, c, 8, 1, 999);
	pthread_join(l[0].thread, NULL);
	CHECK_MSG(n == 1, "wait of 999 ms: %d (%s)", n, moex_strerror(n));
	CHECK_U64(c[0].user_data, 101);
	moex_queue_destroy(q);
	moex_close(dev);

	/* a synchronous queue cannot take later work: it must run it itself */
	CHECK_INT(moex_queue_create(NULL, NULL, &sq), 0);
	CHECK_INT(moex__queue_can_post(sq), -EOPNOTSUPP);
	moex_queue_destroy(sq);
}

/* Signals for the waiting thread, every 20 ms until stop. */
struct kicker {
	pthread_t target, thread;
	volatile int stop;
};

static void on_kick(int sig)
{
	(void)sig;
}

static void *kicker_main(void *arg)
{
	struct kicker *k = arg;

	while (!k->stop) {
		pthread_kill(k->target, SIGUSR1);
		usleep(20000);
	}
	return NULL;
}

/*
 * A wait's timeout counts from the call, however many signals interrupt
 * it: each -EINTR restarted the whole timeout, so a wait of 200 ms under
 * a signal every 20 ms never timed out and returned the completion that
 * came 3 s later.
 */
TEST(wait_timeout_holds_under_signals)
{
	struct later l = { .user_data = 9, .res = 0, .delay_us = 3000000 };
	struct sigaction sa = { .sa_handler = on_kick }, old;
	struct kicker k = { .target = pthread_self() };
	struct moex_device *dev;
	struct moex_queue *q;
	struct moex_cqe c;
	int n;

	POSTING_QUEUE(dev, q);
	sigemptyset(&sa.sa_mask);	/* no SA_RESTART */
	CHECK_INT(sigaction(SIGUSR1, &sa, &old), 0);
	l.q = q;
	CHECK_INT(moex__queue_host(q, later_start, &l, l.user_data), 0);
	CHECK_INT(moex_queue_submit(q), 1);
	CHECK_INT(pthread_create(&k.thread, NULL, kicker_main, &k), 0);
	n = moex_queue_wait(q, &c, 1, 1, 200);
	k.stop = 1;
	pthread_join(k.thread, NULL);
	sigaction(SIGUSR1, &old, NULL);
	CHECK_MSG(n == -ETIME, "wait of 200 ms under signals: %d (%s)", n,
		  n < 0 ? moex_strerror(n) : "a completion");
	if (n == -ETIME)
		CHECK_INT(moex_queue_wait(q, &c, 1, 1, 10000), 1);
	pthread_join(l.thread, NULL);
	CHECK_INT(l.post_ret, 0);
	CHECK_INT(moex_queue_destroy(q), 0);
	moex_close(dev);
}

/*
 * A wait with no time (timeout 0) still enters the kernel once, which
 * runs the completions waiting for this thread (DEFER_TASKRUN: a posted
 * one): with the NOP's CQE already there, it returned -ETIME at once.
 */
TEST(wait_without_time_runs_waiting_completions)
{
	struct later l = { .user_data = 41, .res = 0 };
	struct moex_device *dev;
	struct moex_queue *q;
	struct moex_cqe c[4];
	int n;

	POSTING_QUEUE(dev, q);
	l.q = q;
	CHECK_INT(moex__queue_host(q, later_start, &l, l.user_data), 0);
	CHECK_INT(moex_queue_nop(q, 42), 0);
	CHECK_INT(moex_queue_submit(q), 2);
	pthread_join(l.thread, NULL);	/* posted */
	CHECK_INT(l.post_ret, 0);
	n = moex_queue_wait(q, c, 4, 2, 0);
	CHECK_MSG(n == 2, "wait(min 2, 0 ms): %d (%s)", n,
		  n < 0 ? moex_strerror(n) : "");
	CHECK_INT(moex_queue_destroy(q), 0);
	moex_close(dev);
}

/* The poster's ring refuses the next fail_posts submits. */
static int fail_posts;

static int refusing_submit(struct io_uring *ring, unsigned int wait_nr)
{
	if (__atomic_load_n(&fail_posts, __ATOMIC_SEQ_CST) > 0) {
		__atomic_sub_fetch(&fail_posts, 1, __ATOMIC_SEQ_CST);
		return -ENOMEM;
	}
	return io_uring_submit_and_wait(ring, wait_nr);
}

/* Run one later work whose post the poster's ring refuses refusals
 * times, and reap its completion (and nothing else) within 10 s. */
static int later_refused(struct moex_queue *q, uint64_t user_data,
			 int refusals, int *post_ret)
{
	struct later l = { .q = q, .user_data = user_data, .res = -EIO,
			   .delay_us = 20000 };
	struct moex_cqe c[2];
	int n;

	fail_posts = refusals;
	if (moex__queue_host(q, later_start, &l, l.user_data) ||
	    moex_queue_submit(q) != 1)
		return -1;
	n = moex_queue_wait(q, c, 2, 1, 10000);
	pthread_join(l.thread, NULL);
	fail_posts = 0;
	*post_ret = l.post_ret;
	if (n != 1 || c[0].user_data != user_data || c[0].res != -EIO)
		return -1;
	/* nothing more in flight, nothing sent twice */
	return moex_queue_wait(q, c, 2, 1, 50) == -ETIME ? 0 : -1;
}

/*
 * A completion the ring would not take still reaches the queue's thread,
 * once, with its own user_data and res: it was dropped with a line on
 * stderr and stayed in flight, so a wait without a limit, and destroy,
 * never returned. A submit the kernel refused once is tried again; one it
 * keeps refusing leaves its SQE behind, which the next post sent again
 * (the next completion came twice) until the poster was made anew.
 */
TEST(completion_the_ring_refused_still_arrives)
{
	struct later l = { .user_data = 21, .res = -EIO, .delay_us = 50000 };
	struct moex_device *dev;
	struct moex_queue *q;
	int post_ret;

	POSTING_QUEUE(dev, q);
	moex__post_submit = refusing_submit;
	/* refused once: sent on the next try */
	CHECK_INT(later_refused(q, 31, 1, &post_ret), 0);
	CHECK_INT(post_ret, 0);
	/* refused every time: through lost */
	CHECK_INT(later_refused(q, 32, 1000, &post_ret), 0);
	CHECK_INT(post_ret, -ENOMEM);
	/* and the next one comes once */
	CHECK_INT(later_refused(q, 33, 0, &post_ret), 0);
	CHECK_INT(post_ret, 0);
	/* destroy, with one refused while it waits, returns */
	fail_posts = 1000;
	l.q = q;
	CHECK_INT(moex__queue_host(q, later_start, &l, l.user_data), 0);
	CHECK_INT(moex_queue_submit(q), 1);
	CHECK_INT(moex_queue_destroy(q), 0);
	pthread_join(l.thread, NULL);
	CHECK_INT(l.post_ret, -ENOMEM);
	fail_posts = 0;
	moex__post_submit = io_uring_submit_and_wait;
	moex_close(dev);
}

/* Another thread's calls on q, which must all fail with -EEXIST. */
struct foreign {
	struct moex_queue *q;
	int submit, peek, wait, destroy;
};

static void *foreign_calls(void *arg)
{
	struct foreign *f = arg;
	struct moex_cqe c[4];

	f->submit = moex_queue_submit(f->q);
	f->peek = moex_queue_peek(f->q, c, 4);
	f->wait = moex_queue_wait(f->q, c, 4, 1, 0);
	f->destroy = moex_queue_destroy(f->q);
	return NULL;
}

/* Host work that completes at once, with res 5. */
static int done_now(void *ctx)
{
	(void)ctx;
	return 5;
}

/*
 * The ring belongs to the thread that made it (SINGLE_ISSUER): another
 * thread's submit, peek, wait and destroy fail with -EEXIST before they
 * touch anything (destroy used to stop waiting and free the queue under
 * the later work's completion, and wait to swallow completions), and the
 * owner then gets every completion: one that was done at submit, one that
 * was queued and one posted later from yet another thread.
 */
TEST(calls_from_another_thread_change_nothing)
{
	struct later l = { .user_data = 7, .res = 3, .delay_us = 20000 };
	struct foreign f = { 0 };
	struct moex_device *dev;
	struct moex_queue *q;
	struct moex_cqe c[4];
	bool seen[3] = { false };
	unsigned int flags = 0;
	pthread_t t;
	int ret, n, got = 0;

	ret = uring_queue_on_null(16, true, &dev, &q);
	if (ret)
		SKIP("no io_uring queue with MSG_RING (Linux 5.18) here (%s)",
		     moex_strerror(ret));
	moex_queue_mode(q, &flags, NULL);
	if (!(flags & IORING_SETUP_SINGLE_ISSUER)) {
		moex_queue_destroy(q);
		moex_close(dev);
		SKIP("no SINGLE_ISSUER here: any thread may use the ring");
	}
	l.q = q;
	CHECK_INT(moex__queue_host(q, done_now, NULL, 5), 0);
	CHECK_INT(moex__queue_host(q, later_start, &l, l.user_data), 0);
	CHECK_INT(moex_queue_submit(q), 2);
	CHECK_INT(moex__queue_host(q, done_now, NULL, 6), 0);
	f.q = q;
	CHECK(!pthread_create(&t, NULL, foreign_calls, &f));
	CHECK(!pthread_join(t, NULL));
	CHECK_INT(f.submit, -EEXIST);
	CHECK_INT(f.peek, -EEXIST);
	CHECK_INT(f.wait, -EEXIST);
	CHECK_INT(f.destroy, -EEXIST);
	/* the queue is whole: all three completions arrive here */
	CHECK_INT(moex_queue_submit(q), 1);
	while (got < 3) {
		n = moex_queue_wait(q, c, 4, 1, 5000);
		CHECK_MSG(n > 0, "wait: %d (%s)", n, moex_strerror(n));
		for (int i = 0; i < n; i++) {
			unsigned int k = (unsigned int)c[i].user_data - 5;

			CHECK_MSG(k < 3 && !seen[k], "user_data %llu",
				  (unsigned long long)c[i].user_data);
			seen[k] = true;
			CHECK_INT(c[i].res, k == 2 ? 3 : 5);
		}
		got += n;
	}
	pthread_join(l.thread, NULL);
	CHECK_INT(l.post_ret, 0);
	CHECK_INT(moex_queue_destroy(q), 0);
	moex_close(dev);
}

/*
 * /dev/null answers every uring_cmd with 0 (Linux 6.0 added that for
 * benchmarking): the startup probe must not take it for moex, or COPYs
 * would "complete" having done nothing.
 */
TEST(startup_probe_refuses_a_file_that_is_not_moex)
{
	struct moex_device *dev = fake_device_at("/dev/null");
	struct moex_queue *q = NULL;
	unsigned int flags = 1;
	int why = 0;

	CHECK(dev);
	moex__ring_setup = io_uring_queue_init_params;
	CHECK_INT(moex_queue_create(dev, NULL, &q), 0);
	CHECK_INT(moex_queue_mode(q, &flags, &why), MOEX_QUEUE_MODE_SYNC);
	moex_queue_destroy(q);
	moex_close(dev);
	if (why == -EPERM || why == -ENOSYS)
		SKIP("io_uring is not available here (%s)", moex_strerror(why));
	/* the ring was made, then given up: a synchronous queue has none */
	CHECK_INT(flags, 0);
	CHECK_MSG(why == -EOPNOTSUPP || why == -EINVAL,
		  "fallback reason %d (%s)", why, moex_strerror(why));
}

/*
 * The ring's own mechanics on the real io_uring, on /dev/null with the
 * probe told to trust it: every completion must come back exactly once.
 */
TEST(uring_mode_completes_each_command_once)
{
	struct moex_device *dev = fake_device_at("/dev/null");
	struct moex_queue_opts o = { .size = sizeof(o), .entries = 64 };
	static unsigned char seen[200];
	struct moex_cqe c[16];
	struct moex_queue *q = NULL;
	unsigned int flags = 0, i, got = 0, next = 0;
	int (*probe)(struct moex_queue *q);
	int why = 0, n, ret;

	CHECK(dev);
	moex__ring_setup = io_uring_queue_init_params;
	probe = moex__ring_probe;
	moex__ring_probe = probe_trusts_anything;
	ret = moex_queue_create(dev, &o, &q);
	moex__ring_probe = probe;
	CHECK_INT(ret, 0);
	if (moex_queue_mode(q, &flags, &why) != MOEX_QUEUE_MODE_URING) {
		moex_queue_destroy(q);
		moex_close(dev);
		SKIP("no io_uring queue on /dev/null here (%s)",
		     moex_strerror(why));
	}
	CHECK((flags & REQUIRED) == REQUIRED);
	memset(seen, 0, sizeof(seen));
	CHECK_INT(moex_queue_wait(q, c, 16, 1, 0), -ETIME); /* none in flight */
	while (got < 200) {
		while (next < 200 && moex_queue_nop(q, next) == 0)
			next++;
		CHECK(moex_queue_submit(q) >= 0);
		n = moex_queue_wait(q, c, 16, 1, 5000);
		CHECK_MSG(n > 0, "wait: %d", n);
		for (i = 0; i < (unsigned int)n; i++) {
			CHECK(c[i].user_data < 200);
			CHECK_INT(seen[c[i].user_data]++, 0);
			CHECK_INT(c[i].res, 0);
		}
		got += (unsigned int)n;
	}
	CHECK_INT(moex_queue_peek(q, c, 16), 0);
	/* entries bounds what is queued and in flight together */
	for (i = 0; i < 64; i++)
		CHECK_INT(moex_queue_nop(q, i), 0);
	CHECK_INT(moex_queue_nop(q, 64), -EBUSY);
	CHECK_INT(moex_queue_submit(q), 64);
	/* in flight, not reaped: still no room (the SQ itself has room) */
	CHECK_INT(moex_queue_nop(q, 64), -EBUSY);
	CHECK_INT(moex_queue_wait(q, c, 1, 1, 5000), 1);
	CHECK_INT(moex_queue_nop(q, 64), 0);
	CHECK_INT(moex_queue_submit(q), 1);
	CHECK_INT(moex_queue_destroy(q), 0);	/* waits for all 64 */
	moex_close(dev);
}

TEST(sync_submit_runs_in_order_and_keeps_results)
{
	struct moex_device *dev = fake_device();
	struct moex_cqe c[4];
	struct moex_queue *q;

	CHECK(dev);
	q = sync_queue(dev, 8);
	CHECK(q);
	CHECK_INT(moex_queue_nop(q, 1), 0);
	CHECK_INT(moex_queue_copy(q, 2, 0, 3, 0, 4096, 2), 0);
	CHECK_INT(moex_queue_copy(q, 2, 0, 0, 0, 4096, 3), 0);
	CHECK_INT(drv.nops + drv.copies, 0);	/* nothing runs before submit */
	CHECK_INT(moex_queue_peek(q, c, 4), 0);
	CHECK_INT(moex_queue_submit(q), 3);
	CHECK_INT(drv.nops, 1);
	CHECK_INT(drv.copies, 1);
	CHECK_INT(moex_queue_peek(q, c, 2), 2);
	CHECK_U64(c[0].user_data, 1);
	CHECK_INT(c[0].res, 0);
	CHECK_U64(c[1].user_data, 2);
	CHECK_INT(c[1].res, 0);
	CHECK_INT(moex_queue_wait(q, c, 4, 1, 0), 1);
	CHECK_U64(c[0].user_data, 3);
	CHECK_INT(c[0].res, -ENOENT);
	moex_queue_destroy(q);
	moex_close(dev);
}

TEST(sync_queue_is_bounded_by_entries)
{
	struct moex_device *dev = fake_device();
	struct moex_cqe c[4];
	struct moex_queue *q;
	unsigned int i;

	CHECK(dev);
	q = sync_queue(dev, 4);
	CHECK(q);
	for (i = 0; i < 4; i++)
		CHECK_INT(moex_queue_nop(q, i), 0);
	CHECK_INT(moex_queue_nop(q, 9), -EBUSY);
	CHECK_INT(moex_queue_submit(q), 4);
	/* Unreaped completions take the room too. */
	CHECK_INT(moex_queue_nop(q, 9), -EBUSY);
	CHECK_INT(moex_queue_peek(q, c, 4), 4);
	for (i = 0; i < 4; i++)
		CHECK_U64(c[i].user_data, i);
	CHECK_INT(moex_queue_nop(q, 9), 0);
	moex_queue_destroy(q);
	moex_close(dev);
}

/* entries 0 in the options is the default, 256. */
TEST(zero_entries_is_the_default)
{
	struct moex_device *dev = fake_device();
	struct moex_queue *q;
	unsigned int i;

	CHECK(dev);
	q = sync_queue(dev, 0);
	CHECK(q);
	for (i = 0; i < 256; i++)
		CHECK_INT(moex_queue_nop(q, i), 0);
	CHECK_INT(moex_queue_nop(q, 256), -EBUSY);
	moex_queue_destroy(q);
	moex_close(dev);
}

/* The most entries moex.h allows (32768) is a queue that works. */
TEST(queue_of_the_most_entries)
{
	struct moex_device *dev = fake_device();
	struct moex_cqe c;
	struct moex_queue *q;

	CHECK(dev);
	q = sync_queue(dev, 32768);
	CHECK(q);
	CHECK_INT(moex_queue_nop(q, 1), 0);
	CHECK_INT(moex_queue_submit(q), 1);
	CHECK_INT(moex_queue_wait(q, &c, 1, 1, 0), 1);
	CHECK_U64(c.user_data, 1);
	moex_queue_destroy(q);
	moex_close(dev);
}

/*
 * The completions of a synchronous queue are a ring of entries: rounds of
 * 3 on a queue of 4 go round it several times, each completion coming
 * back once and in order.
 */
TEST(sync_completions_wrap_around_the_ring)
{
	struct moex_device *dev = fake_device();
	struct moex_cqe c[4];
	struct moex_queue *q;
	unsigned int round, i;

	CHECK(dev);
	q = sync_queue(dev, 4);
	CHECK(q);
	for (round = 0; round < 5; round++) {
		for (i = 0; i < 3; i++)
			CHECK_INT(moex_queue_nop(q, round * 10 + i), 0);
		CHECK_INT(moex_queue_submit(q), 3);
		CHECK_INT(moex_queue_peek(q, c, 2), 2);
		CHECK_U64(c[0].user_data, round * 10);
		CHECK_U64(c[1].user_data, round * 10 + 1);
		CHECK_INT(moex_queue_wait(q, c, 4, 1, 0), 1);
		CHECK_U64(c[0].user_data, round * 10 + 2);
		CHECK_INT(c[0].res, 0);
	}
	CHECK_INT(drv.nops, 15);
	moex_queue_destroy(q);
	moex_close(dev);
}

/*
 * Fixed buffers on a real io_uring queue (/dev/null): registering again
 * replaces them, 0 buffers unregisters, and that can be done twice; a
 * fixed COPY takes buf_index up to UINT16_MAX (the SQE's field) and one
 * direction flag. Only the queueing is tested: /dev/null copies nothing.
 */
TEST(uring_fixed_buffers_and_copy_fixed_arguments)
{
	static unsigned char buf[2][4096];
	struct iovec iov[2] = {
		{ .iov_base = buf[0], .iov_len = sizeof(buf[0]) },
		{ .iov_base = buf[1], .iov_len = sizeof(buf[1]) },
	};
	struct moex_device *dev;
	struct moex_queue *q;
	int ret;

	ret = uring_queue_on_null(8, false, &dev, &q);
	if (ret)
		SKIP("no io_uring queue on /dev/null here (%s)",
		     moex_strerror(ret));
	ret = moex_queue_register_buffers(q, iov, 2);
	if (ret == -ENOMEM || ret == -EPERM) {
		moex_queue_destroy(q);
		moex_close(dev);
		SKIP("cannot register buffers here (%s)", moex_strerror(ret));
	}
	CHECK_INT(ret, 0);
	CHECK_INT(moex_queue_register_buffers(q, iov, 1), 0);
	CHECK_INT(moex_queue_register_buffers(q, NULL, 0), 0);
	CHECK_INT(moex_queue_register_buffers(q, NULL, 0), 0);
	CHECK_INT(moex_queue_register_buffers(q, iov, 2), 0);
	CHECK_INT(moex_queue_register_buffers(q, NULL, 1), -EINVAL);

	CHECK_INT(moex_queue_copy_fixed(q, MOEX_COPY_SRC_FIXED, 1, 0, 65535,
					buf[0], 8, 1), 0);
	CHECK_INT(moex_queue_copy_fixed(q, MOEX_COPY_DST_FIXED, 1, 0, 0,
					buf[0], 8, 2), 0);
	CHECK_INT(moex_queue_copy_fixed(q, MOEX_COPY_SRC_FIXED, 1, 0, 65536,
					buf[0], 8, 3), -EINVAL);
	CHECK_INT(moex_queue_copy_fixed(q, 0, 1, 0, 0, buf[0], 8, 4), -EINVAL);
	CHECK_INT(moex_queue_copy_fixed(q, MOEX_COPY_SRC_FIXED |
					MOEX_COPY_DST_FIXED, 1, 0, 0, buf[0],
					8, 5), -EINVAL);
	CHECK_INT(moex_queue_copy_fixed(NULL, MOEX_COPY_SRC_FIXED, 1, 0, 0,
					buf[0], 8, 6), -EINVAL);
	CHECK_INT(moex_queue_destroy(q), 0);	/* runs and reaps the two */
	moex_close(dev);

	/* a synchronous queue has no fixed buffers */
	CHECK_INT(moex_queue_create(NULL, NULL, &q), 0);
	CHECK_INT(moex_queue_register_buffers(q, iov, 1), -EOPNOTSUPP);
	CHECK_INT(moex_queue_copy_fixed(q, MOEX_COPY_SRC_FIXED, 1, 0, 0,
					buf[0], 8, 7), -EOPNOTSUPP);
	moex_queue_destroy(q);
}

TEST(sync_wait_never_blocks_on_nothing)
{
	struct moex_device *dev = fake_device();
	struct moex_cqe c[2];
	struct moex_queue *q;

	CHECK(dev);
	q = sync_queue(dev, 4);
	CHECK(q);
	CHECK_INT(moex_queue_wait(q, c, 2, 1, -1), -ETIME);
	CHECK_INT(moex_queue_wait(q, c, 2, 3, 0), -EINVAL);	/* min > max */
	CHECK_INT(moex_queue_wait(q, NULL, 2, 1, 0), -EINVAL);
	CHECK_INT(moex_queue_wait(q, c, 2, 1, -2), -EINVAL);
	moex_queue_destroy(q);
	moex_close(dev);
}

TEST(queue_calls_keep_errno)
{
	struct moex_device *dev = fake_device();
	struct moex_cqe c[2];
	struct moex_queue *q;

	CHECK(dev);
	q = sync_queue(dev, 4);
	CHECK(q);
	CHECK_INT(moex_queue_copy(q, 1, 0, 0, 0, 1, 5), 0);
	errno = 1234;
	CHECK_INT(moex_queue_submit(q), 1);
	CHECK_INT(moex_queue_peek(q, c, 2), 1);
	CHECK_INT(c[0].res, -ENOENT);
	CHECK_INT(errno, 1234);
	CHECK_INT(moex_queue_destroy(q), 0);
	CHECK_INT(errno, 1234);
	moex_close(dev);
}

TEST(null_queue_is_einval)
{
	struct moex_cqe c;

	CHECK_INT(moex_queue_nop(NULL, 0), -EINVAL);
	CHECK_INT(moex_queue_copy(NULL, 1, 0, 2, 0, 1, 0), -EINVAL);
	CHECK_INT(moex_queue_submit(NULL), -EINVAL);
	CHECK_INT(moex_queue_peek(NULL, &c, 1), -EINVAL);
	CHECK_INT(moex_queue_wait(NULL, &c, 1, 1, 0), -EINVAL);
	CHECK_INT(moex_queue_mode(NULL, NULL, NULL), -EINVAL);
	CHECK_INT(moex_queue_destroy(NULL), 0);
}

RUN_TESTS(T(ladder_takes_everything_first),
	  T(ladder_drops_defer_taskrun_first),
	  T(ladder_drops_single_issuer_next),
	  T(ladder_keeps_only_what_is_required),
	  T(ladder_never_drops_sqe128),
	  T(ladder_stops_on_other_errors),
	  T(create_rejects_bad_options),
	  T(sync_when_asked),
	  T(host_only_queue_without_device),
	  T(sync_when_io_uring_is_disabled),
	  T(startup_nop_catches_a_driver_without_uring_cmd),
	  T(startup_probe_refuses_a_file_that_is_not_moex),
	  T(uring_mode_completes_each_command_once),
	  T(later_work_completes_into_the_ring_from_another_thread),
	  T(wait_timeout_holds_under_signals),
	  T(completion_the_ring_refused_still_arrives),
	  T(wait_without_time_runs_waiting_completions),
	  T(destroy_waits_for_later_work),
	  T(peek_gets_a_posted_completion),
	  T(calls_from_another_thread_change_nothing),
	  T(destroy_right_after_a_posted_completion),
	  T(sync_submit_runs_in_order_and_keeps_results),
	  T(sync_queue_is_bounded_by_entries),
	  T(zero_entries_is_the_default),
	  T(queue_of_the_most_entries),
	  T(sync_completions_wrap_around_the_ring),
	  T(uring_fixed_buffers_and_copy_fixed_arguments),
	  T(sync_wait_never_blocks_on_nothing),
	  T(queue_calls_keep_errno),
	  T(null_queue_is_einval))
