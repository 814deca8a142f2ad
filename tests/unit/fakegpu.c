// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * fakegpu.c - a pretend GPU plugin for the unit tests: moek_hip.h's
 * functions on the CPU, built as $(BUILD)/tests/libmoex-hip-fake.so and
 * loaded by libmoex through MOEX_HIP_LIB. It tests libmoex's side of the
 * "hip" backend (loading, staging, the expert cache and its copies,
 * completions from another thread) on machines without a GPU; the GPU
 * kernels themselves are tested by tests/gpu on a real one.
 *
 * What it keeps of a GPU's contract:
 *  - every stream is a thread running its work in order; a host function
 *    runs on that thread, as a GPU runtime's callback does;
 *  - events mark a point of a stream; streams and the host wait for them;
 *  - device memory is counted, and runs out at FAKEGPU_MEM_MB (default
 *    1024); registered host ranges may not overlap (-EEXIST), and only
 *    registered memory has a device alias;
 *  - the layer is moek_ref_layer() on the pointers it is given, with the
 *    expert table copied when queued, as the GPU copies it to the device.
 * Device pointers are host pointers, so it cannot catch a host pointer
 * given where a device one is needed: tests/gpu does.
 *
 *  - with FAKEGPU_DEVICES=N (default 1) there are N devices; the current
 *    one is per thread (0 until moek_hip_create() or moek_hip_use() makes
 *    another current), streams and events belong to the device current
 *    when they were made, and queueing work on a stream, or recording an
 *    event, of another device than the calling thread's fails with -EIO
 *    (CUDA's invalid resource handle, which CUDA gives for a launch and
 *    for an event record of two devices' event and stream, not for a
 *    copy: stricter).
 *
 * Knobs: FAKEGPU_NODEV=1 (no device), FAKEGPU_ABI=N (claim another ABI),
 * FAKEGPU_DEVICES=N, FAKEGPU_WRONG=y (every layer's outputs 0.5% too
 * large) or =counts (one token too many on expert 0 in the counts of
 * every layer run), for the callers' checks. Built with -DFAKEGPU_ABI1,
 * it is a plugin of ABI 1: no moek_hip_use().
 * fakegpu_outstanding() returns the allocations and registrations alive;
 * fakegpu_fail_records_after_host_fn(n) makes the next n event records
 * that come right after a host function's launch fail with -EIO;
 * fakegpu_fail_stream_waits(n) the next n stream waits for an event;
 * fakegpu_fail_host_register(n) makes the n-th host registration from
 * now fail with -ENOMEM (pinned allocations' count; 0: none), and
 * fakegpu_registrations() returns the registered host ranges alive.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "moek.h"
#include "moek_hip.h"

#define EXPORT __attribute__((visibility("default")))

static pthread_mutex_t fake_lock = PTHREAD_MUTEX_INITIALIZER;
static size_t fake_used;	/* device bytes allocated */
static long fake_live;		/* allocations + registrations + objects */

struct fake_alloc {		/* a device allocation */
	void *p;
	size_t bytes;
	struct fake_alloc *next;
};
static struct fake_alloc *fake_allocs;

struct fake_reg {
	char *p;
	size_t len;
	struct fake_reg *next;
};
static struct fake_reg *fake_regs;
static long fake_nregs;		/* in fake_regs */
static int fail_register;	/* fakegpu_fail_host_register()'s n */

static size_t fake_total(void)
{
	const char *env = getenv("FAKEGPU_MEM_MB");

	return (size_t)(env ? strtoull(env, NULL, 10) : 1024) << 20;
}

static void live(long d)
{
	__atomic_fetch_add(&fake_live, d, __ATOMIC_RELAXED);
}

EXPORT long fakegpu_outstanding(void)
{
	return __atomic_load_n(&fake_live, __ATOMIC_RELAXED);
}

/* ---- events ---- */

/* The calling thread's current device. */
static __thread int fake_dev;

struct fake_event {
	int dev;		/* current at its creation */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	uint64_t target;	/* records queued */
	uint64_t done;		/* records reached */
	struct timespec when;	/* the last record reached */
};

static void event_wait_for(struct fake_event *ev, uint64_t ticket)
{
	pthread_mutex_lock(&ev->lock);
	while (ev->done < ticket)
		pthread_cond_wait(&ev->cond, &ev->lock);
	pthread_mutex_unlock(&ev->lock);
}

/* ---- streams ---- */

enum op_kind { OP_COPY, OP_LAYER, OP_COUNTS, OP_HOSTFN, OP_RECORD, OP_WAIT };

struct fake_op {
	enum op_kind kind;
	struct fake_op *next;
	void *dst;
	const void *src;
	size_t bytes;
	struct fake_event *ev;
	uint64_t ticket;
	moek_hip_host_fn fn;
	void *arg;
	/* OP_LAYER */
	struct moek_hip_ctx *ctx;
	struct moek_shape shape;
	struct moek_weights wt;
	struct moek_ffn *experts;
	size_t ntok;
};

struct fake_stream {
	int dev;		/* current at its creation */
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct fake_op *head, *tail;
	bool stop;
	int err;		/* sticky: the first failed op's */
};

struct moek_hip_ctx {
	int dev;
	uint32_t *counts;	/* the last layer's */
	uint32_t n;
	uint32_t tile;
};

/* FAKEGPU_WRONG: a layer's outputs or counts made wrong, as asked. */
static void fake_wrong(const struct moek_shape *s, size_t ntok, float *y,
		       uint32_t *counts)
{
	const char *w = getenv("FAKEGPU_WRONG");
	size_t i;

	if (w && !strcmp(w, "y"))
		for (i = 0; i < ntok * s->dim; i++)
			y[i] *= 1.005f;
	else if (w && !strcmp(w, "counts"))
		counts[0]++;
}

static void op_run(struct fake_stream *s, struct fake_op *op)
{
	int r;

	switch (op->kind) {
	case OP_COPY:
		memcpy(op->dst, op->src, op->bytes);
		break;
	case OP_LAYER:
		op->wt.experts = op->experts;
		r = moek_ref_layer(&op->shape, &op->wt, op->src, op->ntok,
				   op->dst, op->ctx->counts);
		if (r && !s->err)
			s->err = -EIO;
		if (!r)
			fake_wrong(&op->shape, op->ntok, op->dst,
				   op->ctx->counts);
		free(op->experts);
		break;
	case OP_COUNTS:
		memcpy(op->dst, op->ctx->counts, op->bytes);
		break;
	case OP_HOSTFN:
		op->fn(op->arg, s->err ? -EIO : 0);
		break;
	case OP_RECORD:
		pthread_mutex_lock(&op->ev->lock);
		if (op->ev->done < op->ticket)
			op->ev->done = op->ticket;
		clock_gettime(CLOCK_MONOTONIC, &op->ev->when);
		pthread_cond_broadcast(&op->ev->cond);
		pthread_mutex_unlock(&op->ev->lock);
		break;
	case OP_WAIT:
		event_wait_for(op->ev, op->ticket);
		break;
	}
}

static void *stream_main(void *arg)
{
	struct fake_stream *s = arg;
	struct fake_op *op;

	for (;;) {
		pthread_mutex_lock(&s->lock);
		while (!s->head && !s->stop)
			pthread_cond_wait(&s->cond, &s->lock);
		op = s->head;
		if (!op) {
			pthread_mutex_unlock(&s->lock);
			return NULL;
		}
		pthread_mutex_unlock(&s->lock);
		op_run(s, op);	/* still first: sync waits on the queue */
		pthread_mutex_lock(&s->lock);
		s->head = op->next;
		if (!s->head)
			s->tail = NULL;
		pthread_cond_broadcast(&s->cond);
		pthread_mutex_unlock(&s->lock);
		free(op);
	}
}

static struct fake_stream *default_stream;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static struct fake_stream *stream_new(void)
{
	struct fake_stream *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->cond, NULL);
	if (pthread_create(&s->thread, NULL, stream_main, s)) {
		free(s);
		return NULL;
	}
	return s;
}

static void default_make(void)
{
	default_stream = stream_new();
}

static struct fake_stream *stream_of(void *stream)
{
	if (stream)
		return stream;
	pthread_once(&default_once, default_make);
	return default_stream;
}

static int enqueue(void *stream, struct fake_op *tmpl)
{
	struct fake_stream *s = stream_of(stream);
	struct fake_op *op;

	if (!s)
		return -ENOMEM;
	if (stream && s->dev != fake_dev)
		return -EIO;	/* another device's stream */
	op = malloc(sizeof(*op));
	if (!op)
		return -ENOMEM;
	*op = *tmpl;
	op->next = NULL;
	pthread_mutex_lock(&s->lock);
	if (s->tail)
		s->tail->next = op;
	else
		s->head = op;
	s->tail = op;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

EXPORT int moek_hip_sync(void *stream)
{
	struct fake_stream *s = stream_of(stream);
	int err;

	if (!s)
		return -ENOMEM;
	pthread_mutex_lock(&s->lock);
	while (s->head)
		pthread_cond_wait(&s->cond, &s->lock);
	err = s->err;
	pthread_mutex_unlock(&s->lock);
	return err;
}

EXPORT int moek_hip_stream_create(void **stream)
{
	if (!stream)
		return -EINVAL;
	*stream = stream_new();
	if (!*stream)
		return -ENOMEM;
	((struct fake_stream *)*stream)->dev = fake_dev;
	live(1);
	return 0;
}

EXPORT void moek_hip_stream_destroy(void *stream)
{
	struct fake_stream *s = stream;

	if (!s)
		return;
	pthread_mutex_lock(&s->lock);
	s->stop = true;
	pthread_cond_broadcast(&s->cond);
	pthread_mutex_unlock(&s->lock);
	pthread_join(s->thread, NULL);
	free(s);
	live(-1);
}

EXPORT int moek_hip_event_create(void **event)
{
	struct fake_event *ev;

	if (!event)
		return -EINVAL;
	ev = calloc(1, sizeof(*ev));
	if (!ev)
		return -ENOMEM;
	pthread_mutex_init(&ev->lock, NULL);
	pthread_cond_init(&ev->cond, NULL);
	ev->dev = fake_dev;
	*event = ev;
	live(1);
	return 0;
}

EXPORT void moek_hip_event_destroy(void *event)
{
	if (!event)
		return;
	free(event);
	live(-1);
}

/* fakegpu_fail_records_after_host_fn(): under fake_lock */
static int fail_records;
static bool after_host_fn;

EXPORT void fakegpu_fail_records_after_host_fn(int n)
{
	pthread_mutex_lock(&fake_lock);
	fail_records = n;
	after_host_fn = false;
	pthread_mutex_unlock(&fake_lock);
}

/* Was the last launch a host function's, with a failure asked for? */
static bool fail_this_record(void)
{
	bool fail;

	pthread_mutex_lock(&fake_lock);
	fail = after_host_fn && fail_records > 0;
	fail_records -= fail;
	after_host_fn = false;
	pthread_mutex_unlock(&fake_lock);
	return fail;
}

EXPORT int moek_hip_event_record(void *event, void *stream)
{
	struct fake_event *ev = event;
	struct fake_op op = { .kind = OP_RECORD, .ev = ev };

	if (!ev)
		return -EINVAL;
	if (ev->dev != fake_dev)
		return -EIO;	/* another device's event */
	if (fail_this_record())
		return -EIO;
	pthread_mutex_lock(&ev->lock);
	op.ticket = ++ev->target;
	pthread_mutex_unlock(&ev->lock);
	return enqueue(stream, &op);
}

EXPORT int moek_hip_event_sync(void *event)
{
	struct fake_event *ev = event;
	uint64_t t;

	if (!ev)
		return -EINVAL;
	pthread_mutex_lock(&ev->lock);
	t = ev->target;
	pthread_mutex_unlock(&ev->lock);
	event_wait_for(ev, t);
	return 0;
}

EXPORT int moek_hip_event_elapsed(void *start, void *end, float *ms)
{
	struct fake_event *a = start, *b = end;

	if (!a || !b || !ms)
		return -EINVAL;
	*ms = (float)((b->when.tv_sec - a->when.tv_sec) * 1e3 +
		      (b->when.tv_nsec - a->when.tv_nsec) / 1e6);
	return 0;
}

/* fakegpu_fail_stream_waits(): under fake_lock */
static int fail_waits;

EXPORT void fakegpu_fail_stream_waits(int n)
{
	pthread_mutex_lock(&fake_lock);
	fail_waits = n;
	pthread_mutex_unlock(&fake_lock);
}

EXPORT int moek_hip_stream_wait(void *stream, void *event)
{
	struct fake_event *ev = event;
	struct fake_op op = { .kind = OP_WAIT, .ev = ev };
	bool fail;

	if (!ev)
		return -EINVAL;
	pthread_mutex_lock(&fake_lock);
	fail = fail_waits > 0;
	fail_waits -= fail;
	pthread_mutex_unlock(&fake_lock);
	if (fail)
		return -EIO;
	pthread_mutex_lock(&ev->lock);
	op.ticket = ev->target;
	pthread_mutex_unlock(&ev->lock);
	return enqueue(stream, &op);
}

EXPORT int moek_hip_copy_async(void *dst, const void *src, size_t bytes,
			       void *stream)
{
	struct fake_op op = { .kind = OP_COPY, .dst = dst, .src = src,
			      .bytes = bytes };

	if ((!dst || !src) && bytes)
		return -EINVAL;
	return bytes ? enqueue(stream, &op) : 0;
}

EXPORT int moek_hip_host_fn_launch(void *stream, moek_hip_host_fn fn,
				   void *arg)
{
	struct fake_op op = { .kind = OP_HOSTFN, .fn = fn, .arg = arg };
	int r;

	if (!fn)
		return -EINVAL;
	r = enqueue(stream, &op);
	pthread_mutex_lock(&fake_lock);
	after_host_fn = !r;
	pthread_mutex_unlock(&fake_lock);
	return r;
}

EXPORT int moek_hip_copy_kernel(void *dst, const void *src, size_t bytes,
				void *stream)
{
	return moek_hip_copy_async(dst, src, bytes, stream);
}

/* ---- devices, contexts, memory ---- */

EXPORT int moek_hip_abi(void)
{
	const char *env = getenv("FAKEGPU_ABI");

#ifdef FAKEGPU_ABI1
	(void)env;
	return 1;	/* the plugin of ABI 1: no moek_hip_use() */
#else
	return env ? atoi(env) : MOEK_HIP_ABI;
#endif
}

EXPORT int moek_hip_device_count(int *n)
{
	const char *env = getenv("FAKEGPU_DEVICES");

	if (!n)
		return -EINVAL;
	*n = getenv("FAKEGPU_NODEV") ? 0 : env ? atoi(env) : 1;
	return *n > 0 ? 0 : -ENODEV;
}

EXPORT int moek_hip_device_name(int device, char *name, size_t len)
{
	if (device || !name || !len)
		return -EINVAL;
	strncpy(name, "fakegpu", len - 1);
	name[len - 1] = '\0';
	return 0;
}

EXPORT int moek_hip_create(int device, struct moek_hip_ctx **out)
{
	int n, r;

	if (!out)
		return -EINVAL;
	r = moek_hip_device_count(&n);
	if (r)
		return r;
	if (device < 0 || device >= n)
		return -ENODEV;
	*out = calloc(1, sizeof(**out));
	if (!*out)
		return -ENOMEM;
	(*out)->dev = device;
	fake_dev = device;
	live(1);
	return 0;
}

EXPORT void moek_hip_destroy(struct moek_hip_ctx *ctx)
{
	if (!ctx)
		return;
	free(ctx->counts);
	free(ctx);
	live(-1);
}

#ifndef FAKEGPU_ABI1
EXPORT int moek_hip_use(struct moek_hip_ctx *ctx)
{
	if (!ctx)
		return -EINVAL;
	fake_dev = ctx->dev;
	return 0;
}
#endif

EXPORT int moek_hip_set_tile(struct moek_hip_ctx *ctx, uint32_t tile)
{
	if (!ctx)
		return -EINVAL;
	ctx->tile = tile;
	return 0;
}

EXPORT int moek_hip_set_gemv(struct moek_hip_ctx *ctx, int on)
{
	(void)on;
	return ctx ? 0 : -EINVAL;
}

EXPORT int moek_hip_malloc(size_t bytes, void **dptr)
{
	struct fake_alloc *a;

	if (!dptr)
		return -EINVAL;
	*dptr = NULL;
	a = malloc(sizeof(*a));
	if (!a)
		return -ENOMEM;
	a->p = malloc(bytes ? bytes : 1);
	a->bytes = bytes;
	pthread_mutex_lock(&fake_lock);
	if (!a->p || fake_used + bytes > fake_total()) {
		pthread_mutex_unlock(&fake_lock);
		free(a->p);
		free(a);
		return -ENOMEM;
	}
	fake_used += bytes;
	a->next = fake_allocs;
	fake_allocs = a;
	pthread_mutex_unlock(&fake_lock);
	*dptr = a->p;
	live(1);
	return 0;
}

EXPORT void moek_hip_free(void *dptr)
{
	struct fake_alloc **pp, *a;

	if (!dptr)
		return;
	pthread_mutex_lock(&fake_lock);
	for (pp = &fake_allocs; (a = *pp); pp = &a->next) {
		if (a->p == dptr) {
			*pp = a->next;
			fake_used -= a->bytes;
			break;
		}
	}
	pthread_mutex_unlock(&fake_lock);
	if (!a)
		abort();	/* not ours: a bug in the caller */
	free(a->p);
	free(a);
	live(-1);
}

EXPORT int moek_hip_upload(void *dst, const void *src, size_t bytes)
{
	memcpy(dst, src, bytes);
	return 0;
}

EXPORT int moek_hip_download(void *dst, const void *src, size_t bytes)
{
	memcpy(dst, src, bytes);
	return 0;
}

EXPORT int moek_hip_memset(void *dst, int value, size_t bytes)
{
	memset(dst, value, bytes);
	return 0;
}

EXPORT int moek_hip_mem_info(size_t *free_bytes, size_t *total)
{
	if (!free_bytes || !total)
		return -EINVAL;
	pthread_mutex_lock(&fake_lock);
	*total = fake_total();
	*free_bytes = *total - fake_used;
	pthread_mutex_unlock(&fake_lock);
	return 0;
}


EXPORT void fakegpu_fail_host_register(int n)
{
	pthread_mutex_lock(&fake_lock);
	fail_register = n;
	pthread_mutex_unlock(&fake_lock);
}

EXPORT long fakegpu_registrations(void)
{
	long n;

	pthread_mutex_lock(&fake_lock);
	n = fake_nregs;
	pthread_mutex_unlock(&fake_lock);
	return n;
}

EXPORT int moek_hip_host_register(void *p, size_t bytes, void **dptr)
{
	struct fake_reg *r;

	if (!p || !bytes || !dptr)
		return -EINVAL;
	pthread_mutex_lock(&fake_lock);
	if (fail_register > 0 && !--fail_register) {
		pthread_mutex_unlock(&fake_lock);
		return -ENOMEM;
	}
	for (r = fake_regs; r; r = r->next) {
		if ((char *)p < r->p + r->len && r->p < (char *)p + bytes) {
			pthread_mutex_unlock(&fake_lock);
			return -EEXIST;
		}
	}
	r = malloc(sizeof(*r));
	if (!r) {
		pthread_mutex_unlock(&fake_lock);
		return -ENOMEM;
	}
	r->p = p;
	r->len = bytes;
	r->next = fake_regs;
	fake_regs = r;
	fake_nregs++;
	pthread_mutex_unlock(&fake_lock);
	*dptr = p;
	live(1);
	return 0;
}

EXPORT int moek_hip_host_unregister(void *p)
{
	struct fake_reg **pp, *r;

	pthread_mutex_lock(&fake_lock);
	for (pp = &fake_regs; (r = *pp); pp = &r->next) {
		if (r->p == p) {
			*pp = r->next;
			fake_nregs--;
			pthread_mutex_unlock(&fake_lock);
			free(r);
			live(-1);
			return 0;
		}
	}
	pthread_mutex_unlock(&fake_lock);
	return -EINVAL;
}

EXPORT int moek_hip_host_alias(void *p, void **dptr)
{
	struct fake_reg *r;

	if (!p || !dptr)
		return -EINVAL;
	pthread_mutex_lock(&fake_lock);
	for (r = fake_regs; r; r = r->next) {
		if ((char *)p >= r->p && (char *)p < r->p + r->len) {
			pthread_mutex_unlock(&fake_lock);
			*dptr = p;
			return 0;
		}
	}
	pthread_mutex_unlock(&fake_lock);
	return -EINVAL;
}

/* Pinned memory is mapped for the device, as a registered range. */
EXPORT int moek_hip_host_alloc(size_t bytes, void **p)
{
	void *alias;
	int r;

	if (!p)
		return -EINVAL;
	*p = malloc(bytes ? bytes : 1);
	if (!*p)
		return -ENOMEM;
	r = moek_hip_host_register(*p, bytes ? bytes : 1, &alias);
	if (r) {
		free(*p);
		*p = NULL;
	}
	return r;
}

EXPORT void moek_hip_host_free(void *p)
{
	if (!p)
		return;
	moek_hip_host_unregister(p);
	free(p);
}

/* ---- the layer ---- */

EXPORT int moek_hip_layer(struct moek_hip_ctx *ctx, const struct moek_shape *s,
			  const struct moek_weights *wt, const float *x,
			  size_t ntok, float *y, uint32_t *counts,
			  void *stream)
{
	struct fake_op op = { .kind = OP_LAYER, .ctx = ctx, .src = x,
			      .dst = y, .ntok = ntok };
	int r;

	if (!ctx || !s || !wt || !wt->experts || !x || !y ||
	    moek_shape_check(s))
		return -EINVAL;
	if (ctx->n != s->n_experts) {
		r = moek_hip_sync(stream);	/* its layers use counts */
		if (r)
			return r;
		free(ctx->counts);
		ctx->counts = calloc(s->n_experts, sizeof(*ctx->counts));
		if (!ctx->counts)
			return -ENOMEM;
		ctx->n = s->n_experts;
	}
	op.shape = *s;
	op.wt = *wt;
	op.experts = malloc(s->n_experts * sizeof(*op.experts));
	if (!op.experts)
		return -ENOMEM;
	memcpy(op.experts, wt->experts, s->n_experts * sizeof(*op.experts));
	r = enqueue(stream, &op);
	if (r) {
		free(op.experts);
		return r;
	}
	if (!counts)
		return 0;
	r = moek_hip_layer_counts(ctx, s->n_experts, counts, stream);
	return r ? r : moek_hip_sync(stream);
}

EXPORT int moek_hip_layer_counts(struct moek_hip_ctx *ctx, uint32_t n_experts,
				 uint32_t *counts, void *stream)
{
	struct fake_op op = { .kind = OP_COUNTS, .ctx = ctx, .dst = counts,
			      .bytes = n_experts * sizeof(*counts) };

	if (!ctx || !counts || !n_experts || n_experts > ctx->n)
		return -EINVAL;
	return enqueue(stream, &op);
}

/* The stages one by one: not faked; libmoex's backend does not use them. */
EXPORT int moek_hip_route(struct moek_hip_ctx *ctx, const struct moek_shape *s,
			  const struct moek_weights *wt, const float *x,
			  size_t ntok, int32_t *idx, float *w, void *stream)
{
	(void)ctx, (void)s, (void)wt, (void)x, (void)ntok, (void)idx, (void)w;
	(void)stream;
	return -EOPNOTSUPP;
}

EXPORT int moek_hip_align(struct moek_hip_ctx *ctx, const struct moek_shape *s,
			  const int32_t *idx, size_t ntok,
			  struct moek_hip_align *out, void *stream)
{
	(void)ctx, (void)s, (void)idx, (void)ntok, (void)out, (void)stream;
	return -EOPNOTSUPP;
}

EXPORT int moek_hip_act_quant(const float *x, size_t rows, size_t n,
			      uint8_t *q, float *scales, void *stream)
{
	(void)x, (void)rows, (void)n, (void)q, (void)scales, (void)stream;
	return -EOPNOTSUPP;
}

EXPORT int moek_hip_ffn(struct moek_hip_ctx *ctx, const struct moek_shape *s,
			const struct moek_ffn *f, uint32_t width,
			const float *x, size_t ntok, float *y, void *stream)
{
	(void)ctx, (void)s, (void)f, (void)width, (void)x, (void)ntok, (void)y;
	(void)stream;
	return -EOPNOTSUPP;
}
