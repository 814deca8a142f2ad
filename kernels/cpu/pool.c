/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * pool.c - the persistent thread pool of the CPU fast path.
 *
 * Workers are created once (moek_pool_create) and sleep on a condition
 * variable between jobs; moek_pool_run() hands every worker the same job
 * and runs it on the calling thread as thread 0. Inside a job, threads
 * meet at moek_pool_barrier(): a sense-reversing counter that spins a
 * little and then yields, so that a pool larger than the machine (tests
 * run 4 threads on 2 cores) still makes progress.
 *
 * fork(2) copies the pool but none of its workers: the child's first run
 * (or destroy) sees that a fork happened since the workers started (a
 * child handler of pthread_atfork() counts forks: exact where a pid is
 * not, as pids are reused; or another pid, for a child of _Fork() or of
 * a raw clone(2), which run no handlers) and starts the pool afresh: new
 * lock and condition variable (a worker may have held the old lock when
 * the parent forked) and new workers, instead of waiting forever for
 * workers that do not exist in it.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

#include "cpu.h"

#define SPIN_ROUNDS 4000

struct moek_pool {
	unsigned int n;
	pthread_t *th;
	unsigned int started;
	unsigned int forks;		/* fork_count when the workers started */
	pid_t pid;			/* and the process they started in */

	pthread_mutex_t lock;
	pthread_cond_t wake;
	unsigned long gen;		/* under lock: bumped per job */
	bool stop;			/* under lock */
	moek_pool_fn fn;
	void *arg;
	atomic_ulong agen;		/* gen, for the spinning workers */

	atomic_uint done;		/* workers finished with the job */
	atomic_uint bar_count;
	atomic_uint bar_sense;
};

struct worker_arg {
	struct moek_pool *p;
	unsigned int tid;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#endif
}

static void *worker(void *v)
{
	struct worker_arg *wa = v;
	struct moek_pool *p = wa->p;
	unsigned int tid = wa->tid;
	unsigned long seen = 0;

	free(wa);
	for (;;) {
		moek_pool_fn fn;
		void *arg;
		int i;

		/* Spin briefly: back-to-back layers skip the sleep. */
		for (i = 0; i < SPIN_ROUNDS; i++) {
			if (atomic_load_explicit(&p->agen,
						 memory_order_acquire) != seen)
				break;
			cpu_relax();
		}
		pthread_mutex_lock(&p->lock);
		while (p->gen == seen && !p->stop)
			pthread_cond_wait(&p->wake, &p->lock);
		if (p->stop) {
			pthread_mutex_unlock(&p->lock);
			return NULL;
		}
		seen = p->gen;
		fn = p->fn;
		arg = p->arg;
		pthread_mutex_unlock(&p->lock);

		fn(arg, tid, p->n);
		atomic_fetch_add_explicit(&p->done, 1, memory_order_release);
	}
}

static void pool_stop(struct moek_pool *p)
{
	unsigned int i;

	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);
	for (i = 0; i < p->started; i++)
		pthread_join(p->th[i], NULL);
}

/* Children of fork(2) this process is a child of, counted in each. */
static atomic_uint fork_count;
static pthread_once_t fork_count_once = PTHREAD_ONCE_INIT;

static void fork_count_child(void)
{
	atomic_fetch_add(&fork_count, 1);
}

static void fork_count_start(void)
{
	pthread_atfork(NULL, NULL, fork_count_child);
}

/* Start workers 1 .. n - 1; 0 or -ENOMEM (p->started says how many run). */
static int pool_start(struct moek_pool *p)
{
	unsigned int i;

	p->forks = atomic_load(&fork_count);
	p->pid = getpid();
	for (i = 1; i < p->n; i++) {
		struct worker_arg *wa = malloc(sizeof(*wa));

		if (!wa)
			return -ENOMEM;
		wa->p = p;
		wa->tid = i;
		if (pthread_create(&p->th[p->started], NULL, worker, wa)) {
			free(wa);
			return -ENOMEM;
		}
		p->started++;
	}
	return 0;
}

/*
 * In a child of fork(2) the pool has no workers (and its lock may be held
 * by a thread that is not there): forget them and reset every shared
 * field. Returns whether it did.
 */
static bool pool_forked(struct moek_pool *p)
{
	if (p->forks == atomic_load(&fork_count) && p->pid == getpid())
		return false;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	p->started = 0;
	p->gen = 0;
	p->stop = false;
	atomic_store(&p->agen, 0);
	atomic_store(&p->done, 0);
	atomic_store(&p->bar_count, 0);
	atomic_store(&p->bar_sense, 0);
	return true;
}

/**
 * moek_pool_create() - start a pool of nthreads threads (the caller
 * counts as one: nthreads - 1 workers are created).
 * @nthreads: at least 1
 * @out:      the pool
 *
 * Return: 0, -EINVAL or -ENOMEM (also when a thread cannot be created).
 */
int moek_pool_create(unsigned int nthreads, struct moek_pool **out)
{
	struct moek_pool *p;

	pthread_once(&fork_count_once, fork_count_start);
	if (!nthreads)
		return -EINVAL;
	p = calloc(1, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->n = nthreads;
	p->th = calloc(nthreads, sizeof(*p->th));
	if (!p->th) {
		free(p);
		return -ENOMEM;
	}
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	if (pool_start(p)) {
		pool_stop(p);
		pthread_cond_destroy(&p->wake);
		pthread_mutex_destroy(&p->lock);
		free(p->th);
		free(p);
		return -ENOMEM;
	}
	*out = p;
	return 0;
}

void moek_pool_destroy(struct moek_pool *p)
{
	if (!p)
		return;
	pool_forked(p);		/* a child joins no parent's workers */
	pool_stop(p);
	pthread_cond_destroy(&p->wake);
	pthread_mutex_destroy(&p->lock);
	free(p->th);
	free(p);
}

unsigned int moek_pool_threads(const struct moek_pool *p)
{
	return p->n;
}

static void wait_spin(atomic_uint *v, unsigned int want)
{
	unsigned int i = 0;

	while (atomic_load_explicit(v, memory_order_acquire) != want) {
		if (++i < SPIN_ROUNDS) {
			cpu_relax();
		} else {
			sched_yield();
		}
	}
}

void moek_pool_run(struct moek_pool *p, moek_pool_fn fn, void *arg)
{
	if (p->n > 1 && pool_forked(p) && pool_start(p)) {
		/* Fewer workers than before: run with those there are. */
		p->n = p->started + 1;
	}
	if (p->n == 1) {
		fn(arg, 0, 1);
		return;
	}
	atomic_store_explicit(&p->done, 0, memory_order_relaxed);
	pthread_mutex_lock(&p->lock);
	p->fn = fn;
	p->arg = arg;
	p->gen++;
	atomic_store_explicit(&p->agen, p->gen, memory_order_release);
	pthread_cond_broadcast(&p->wake);
	pthread_mutex_unlock(&p->lock);

	fn(arg, 0, p->n);
	wait_spin(&p->done, p->n - 1);
}

void moek_pool_barrier(struct moek_pool *p)
{
	unsigned int sense, i = 0;

	if (p->n == 1)
		return;
	sense = atomic_load_explicit(&p->bar_sense, memory_order_acquire);
	if (atomic_fetch_add_explicit(&p->bar_count, 1,
				      memory_order_acq_rel) == p->n - 1) {
		atomic_store_explicit(&p->bar_count, 0, memory_order_relaxed);
		atomic_store_explicit(&p->bar_sense, sense + 1,
				      memory_order_release);
		return;
	}
	while (atomic_load_explicit(&p->bar_sense, memory_order_acquire) ==
	       sense) {
		if (++i < SPIN_ROUNDS)
			cpu_relax();
		else
			sched_yield();
	}
}
