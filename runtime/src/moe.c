// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * libmoex MoE layers: the public description checked and turned into the
 * kernels' own (kernels/include/moek.h), bound to a backend, and run
 * directly or as work on a queue.
 *
 * The CPU backend's thread pool is one per process, shared by every CPU
 * layer and created with the first: the layers of a model run one after
 * another on the same cores, so more pools would only compete. A mutex
 * makes runs from several threads take turns on it. The "hip" backend is
 * moe_hip.c; a run's end is the same for both (moex_moe_ended()).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "moe_hip.h"
#include "moek.h"
#include "publish.h"

/* The process's CPU pool; pool_lock protects pool, pool_users and runs. */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static struct moek_cpu *pool;
static unsigned int pool_users;
static pthread_once_t pool_atfork_once = PTHREAD_ONCE_INIT;

struct moex_moe {
	struct moek_shape shape;
	struct moek_weights w;
	struct moek_ffn *experts;	/* [n_experts], the caller's copied */
	char backend[32];
	struct moex_hip_layer *hip;	/* the "hip" backend's, else NULL */
	/* Load publishing (publish.c), set by the model that owns the layer:
	 * runs add their counts to pub_slot; pub_counts is the counts buffer
	 * of runs whose caller passed none (used under pool_lock). */
	uint64_t *pub_slot;
	uint64_t *pub_updates;
	uint32_t *pub_counts;
	/* runs and tokens completed (atomic adds) */
	uint64_t runs, tokens;
};

/* A run queued on a queue, until the queue runs it (and, on a GPU, until
 * the GPU is done with it). */
struct moex_moe_job {
	struct moex_moe *moe;
	const float *x;
	float *y;
	uint32_t *counts;
	size_t ntok;
	struct moex_queue *q;
	uint64_t user_data;
	int status;		/* a synchronous GPU run's */
};

/*
 * fork(2) while another thread runs a CPU layer leaves the child a
 * pool_lock held by a thread it does not have: the child makes it anew
 * (nothing it guards is half-changed during a run), and its pool restarts
 * its workers (kernels/cpu/pool.c). Not a prepare handler that takes the
 * lock: fork would wait for the run, and never return when called from a
 * signal handler of the running thread (a crash reporter's).
 */
static void pool_lock_renew(void)
{
	pthread_mutex_init(&pool_lock, NULL);
}

static void pool_atfork(void)
{
	pthread_atfork(NULL, NULL, pool_lock_renew);
}

static int moex_pool_get(unsigned int threads)
{
	const char *env;
	int ret = 0;

	/* checked here too: the pool may exist already */
	if (threads > MOEK_CPU_MAX_THREADS)
		return -EINVAL;
	pthread_once(&pool_atfork_once, pool_atfork);
	env = threads ? NULL : secure_getenv("MOEX_THREADS");
	if (env && *env) {
		size_t len = strlen(env);
		unsigned long n = 0;

		/* digits only, no sign or space (strtoul would take both),
		 * and errno untouched */
		if (len <= 4 && strspn(env, "0123456789") == len && *env != '0')
			n = strtoul(env, NULL, 10);
		if (!n || n > MOEK_CPU_MAX_THREADS) {
			fprintf(stderr, "libmoex: MOEX_THREADS='%s': want 1 to %d threads\n",
				env, MOEK_CPU_MAX_THREADS);
			return -EINVAL;
		}
		threads = (unsigned int)n;
	}
	pthread_mutex_lock(&pool_lock);
	if (!pool)
		ret = moek_cpu_create(threads, MOEK_ISA_AVX512, &pool);
	if (!ret)
		pool_users++;
	pthread_mutex_unlock(&pool_lock);
	return ret;
}

/* The last user's pool is taken out of pool before it is destroyed: a
 * child of fork(2) during the destroy finds none (and makes its own)
 * instead of one half freed. */
static void moex_pool_put(void)
{
	struct moek_cpu *old = NULL;

	pthread_mutex_lock(&pool_lock);
	if (!--pool_users) {
		old = pool;
		pool = NULL;
	}
	pthread_mutex_unlock(&pool_lock);
	moek_cpu_destroy(old);
}

static void moex_moe_shape(const struct moex_moe_desc *d, struct moek_shape *s)
{
	memset(s, 0, sizeof(*s));
	s->dim = d->dim;
	s->inter = d->inter;
	s->n_experts = d->n_experts;
	s->topk = d->topk;
	if (MOEX_COVERS(d, n_groups))
		s->n_groups = d->n_groups;
	if (MOEX_COVERS(d, topk_groups))
		s->topk_groups = d->topk_groups;
	if (MOEX_COVERS(d, n_shared))
		s->n_shared = d->n_shared;
	if (MOEX_COVERS(d, scoring))
		s->score = d->scoring;
	if (MOEX_COVERS(d, norm_topk))
		s->norm_topk = d->norm_topk;
	s->route_scale = MOEX_COVERS(d, route_scale) ? d->route_scale : 1.0f;
	if (MOEX_COVERS(d, weight_dtype))
		s->wtype = d->weight_dtype;
	if (MOEX_COVERS(d, gate_dtype))
		s->gtype = d->gate_dtype;
}

int moex__moe_desc_check(const struct moex_moe_desc *desc)
{
	struct moek_shape s;

	moex_moe_shape(desc, &s);
	return moek_shape_check(&s);
}

/* Every matrix the shape needs is there, with scales exactly for FP8. */
static bool moex_ffn_ok(const struct moek_shape *s, const struct moek_ffn *f)
{
	bool fp8 = s->wtype == MOEK_FP8_E4M3;

	if (!f->w1 || !f->w2 || !f->w3)
		return false;
	return fp8 ? f->s1 && f->s2 && f->s3 : !f->s1 && !f->s2 && !f->s3;
}

static void moex_ffn_from(struct moek_ffn *to, const struct moex_ffn_weights *f)
{
	to->w1 = f->w1;
	to->w2 = f->w2;
	to->w3 = f->w3;
	to->s1 = f->s1;
	to->s2 = f->s2;
	to->s3 = f->s3;
}

int moex_moe_create(const struct moex_moe_desc *desc,
		    const struct moex_moe_weights *weights,
		    const struct moex_moe_opts *opts, struct moex_moe **out)
{
	MOEX_KEEP_ERRNO;
	const char *backend = "cpu";
	unsigned int threads = 0, gpu_experts = 0;
	struct moex_moe *m;
	uint32_t e;
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!desc || !moex__size_ok(desc->size) ||
	    !MOEX_COVERS(desc, topk) || !weights ||
	    !moex__size_ok(weights->size) || !MOEX_COVERS(weights, experts))
		return -EINVAL;
	if (opts) {
		if (!moex__size_ok(opts->size))
			return -EINVAL;
		if (MOEX_COVERS(opts, backend) && opts->backend)
			backend = opts->backend;
		if (MOEX_COVERS(opts, threads))
			threads = opts->threads;
		if (MOEX_COVERS(opts, gpu_experts))
			gpu_experts = opts->gpu_experts;
	}
	if (strcmp(backend, "cpu") && strcmp(backend, "hip"))
		return -EINVAL;

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	moex_moe_shape(desc, &m->shape);
	ret = moek_shape_check(&m->shape);
	if (ret)
		goto err_free;
	ret = -EINVAL;
	if (!weights->gate || !weights->experts)
		goto err_free;
	m->experts = calloc(m->shape.n_experts, sizeof(*m->experts));
	if (!m->experts) {
		ret = -ENOMEM;
		goto err_free;
	}
	for (e = 0; e < m->shape.n_experts; e++) {
		moex_ffn_from(&m->experts[e], &weights->experts[e]);
		if (!moex_ffn_ok(&m->shape, &m->experts[e]))
			goto err_free;
	}
	m->w.gate = weights->gate;
	m->w.bias = weights->bias;
	m->w.experts = m->experts;
	if (m->shape.n_shared) {
		if (!MOEX_COVERS(weights, shared))
			goto err_free;
		moex_ffn_from(&m->w.shared, &weights->shared);
		if (!moex_ffn_ok(&m->shape, &m->w.shared))
			goto err_free;
	}

	if (!strcmp(backend, "hip")) {
		ret = moex__hip_layer_create(&m->shape, &m->w, gpu_experts,
					     &m->hip);
		if (ret)
			goto err_free;
		if (gpu_experts && gpu_experts < m->shape.n_experts)
			snprintf(m->backend, sizeof(m->backend), "hip:%u/%u",
				 gpu_experts, m->shape.n_experts);
		else
			snprintf(m->backend, sizeof(m->backend), "hip");
		*out = m;
		return 0;
	}
	ret = moex_pool_get(threads);
	if (ret)
		goto err_free;
	pthread_mutex_lock(&pool_lock);
	snprintf(m->backend, sizeof(m->backend), "cpu-%s",
		 moek_isa_name(moek_cpu_isa(pool)));
	pthread_mutex_unlock(&pool_lock);
	*out = m;
	return 0;

err_free:
	free(m->experts);
	free(m);
	return ret;
}

int moex_moe_destroy(struct moex_moe *moe)
{
	MOEX_KEEP_ERRNO;

	if (!moe)
		return 0;
	if (moe->hip)
		moex__hip_layer_destroy(moe->hip);
	else
		moex_pool_put();
	free(moe->pub_counts);
	free(moe->experts);
	free(moe);
	return 0;
}

int moex__moe_publish(struct moex_moe *moe, uint64_t *slot, uint64_t *updates)
{
	uint32_t *counts = NULL, *old;

	if (!moe)
		return -EINVAL;
	if (slot) {
		counts = calloc(moe->shape.n_experts, sizeof(*counts));
		if (!counts)
			return -ENOMEM;
	}
	pthread_mutex_lock(&pool_lock);
	old = moe->pub_counts;	/* freed after: a fork finds no freed one */
	moe->pub_counts = counts;
	moe->pub_slot = slot;
	moe->pub_updates = updates;
	pthread_mutex_unlock(&pool_lock);
	free(old);
	return 0;
}

const char *moex_moe_backend(const struct moex_moe *moe)
{
	return moe ? moe->backend : "";
}

/* A run is over (any backend, any thread): count it, and publish its
 * load into slot when the layer's model publishes (moex__moe_publish). */
static void moex_moe_ended(struct moex_moe *moe, size_t ntok,
			   const uint32_t *counts, uint64_t *slot,
			   uint64_t *updates)
{
	__atomic_fetch_add(&moe->runs, 1, __ATOMIC_RELAXED);
	__atomic_fetch_add(&moe->tokens, (uint64_t)ntok, __ATOMIC_RELAXED);
	if (slot && ntok && counts)
		moex__pub_add(slot, updates, moe->shape.n_experts, ntok,
			      counts);
}

/* The end of a GPU run: the job's, synchronous or from the GPU's thread. */
static void moex_moe_hip_done(void *arg, int status, const uint32_t *counts)
{
	struct moex_moe_job *j = arg;
	struct moex_queue *q = j->q;
	uint64_t user_data = j->user_data;
	uint64_t *slot, *updates;

	pthread_mutex_lock(&pool_lock);
	slot = j->moe->pub_slot;
	updates = j->moe->pub_updates;
	pthread_mutex_unlock(&pool_lock);
	if (!status) {
		struct moex_moe_stats st = { .size = sizeof(st) };

		if (slot) {
			moex__hip_layer_stats(j->moe->hip, &st);
			moex__pub_gpu(slot, st.gpu_hits, st.gpu_misses,
				      st.stream_bytes, st.fill_bytes);
		}
		moex_moe_ended(j->moe, j->ntok, counts, slot, updates);
	}
	j->status = status;
	if (q) {	/* asynchronous: the job is done with */
		free(j);
		moex__queue_post(q, user_data, status);
	}
}

int moex_moe_run(struct moex_moe *moe, const float *x, size_t ntok, float *y,
		 uint32_t *counts)
{
	MOEX_KEEP_ERRNO;
	int ret;

	if (!moe || (ntok && (!x || !y)))
		return -EINVAL;
	if (moe->hip) {
		struct moex_moe_job j = { .moe = moe, .ntok = ntok };

		ret = moex__hip_layer_run(moe->hip, x, ntok, y, counts, false,
					  moex_moe_hip_done, &j);
		return ret ? ret : j.status;
	}
	/* no tokens, no load: the kernels write nothing, not even counts */
	if (!ntok && counts)
		memset(counts, 0, moe->shape.n_experts * sizeof(*counts));
	pthread_mutex_lock(&pool_lock);
	if (moe->pub_slot && !counts)
		counts = moe->pub_counts;
	ret = moek_cpu_layer(pool, &moe->shape, &moe->w, x, ntok, y, counts);
	if (!ret)
		moex_moe_ended(moe, ntok, counts, moe->pub_slot,
			       moe->pub_updates);
	pthread_mutex_unlock(&pool_lock);
	return ret;
}

int moex_moe_stats(struct moex_moe *moe, struct moex_moe_stats *st)
{
	MOEX_KEEP_ERRNO;

	if (!moe || !st || !moex__size_ok(st->size))
		return -EINVAL;
	memset((char *)st + sizeof(st->size), 0,
	       (st->size < sizeof(*st) ? st->size : sizeof(*st)) -
	       sizeof(st->size));
	MOEX_SET(st, runs, __atomic_load_n(&moe->runs, __ATOMIC_RELAXED));
	MOEX_SET(st, tokens, __atomic_load_n(&moe->tokens, __ATOMIC_RELAXED));
	if (moe->hip)
		moex__hip_layer_stats(moe->hip, st);
	return 0;
}

int moex_moe_run_reference(struct moex_moe *moe, const float *x, size_t ntok,
			   float *y, uint32_t *counts)
{
	MOEX_KEEP_ERRNO;

	if (!moe || (ntok && (!x || !y)))
		return -EINVAL;
	if (!ntok && counts)
		memset(counts, 0, moe->shape.n_experts * sizeof(*counts));
	return moek_ref_layer(&moe->shape, &moe->w, x, ntok, y, counts);
}

uint64_t moex_moe_active_bytes(const struct moex_moe *moe,
			       const uint32_t *counts)
{
	return moe ? moek_active_bytes(&moe->shape, counts) : 0;
}

static int moex_moe_job_run(void *ctx)
{
	struct moex_moe_job *j = ctx;
	int ret;

	if (j->moe->hip && !moex__queue_can_post(j->q)) {
		/* the GPU's callback posts the completion and frees j */
		ret = moex__hip_layer_run(j->moe->hip, j->x, j->ntok, j->y,
					  j->counts, true, moex_moe_hip_done,
					  j);
		if (!ret)
			return MOEX__QUEUE_LATER;
	} else {
		ret = moex_moe_run(j->moe, j->x, j->ntok, j->y, j->counts);
	}
	free(j);
	return ret;
}

int moex_queue_moe(struct moex_queue *q, struct moex_moe *moe, const float *x,
		   size_t ntok, float *y, uint32_t *counts,
		   uint64_t user_data)
{
	MOEX_KEEP_ERRNO;
	struct moex_moe_job *j;
	int ret;

	if (!q || !moe || (ntok && (!x || !y)))
		return -EINVAL;
	j = malloc(sizeof(*j));
	if (!j)
		return -ENOMEM;
	*j = (struct moex_moe_job){ .moe = moe, .x = x, .y = y,
				    .counts = counts, .ntok = ntok, .q = q,
				    .user_data = user_data };
	ret = moex__queue_host(q, moex_moe_job_run, j, user_data);
	if (ret)
		free(j);
	return ret;
}
