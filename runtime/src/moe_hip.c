// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * The "hip" backend of libmoex's MoE layers: the layer runs on a GPU
 * through the plugin (hip.c, kernels/hip), with its weights where the
 * caller chose (struct moex_moe_opts.gpu_experts):
 *
 *  - all routed experts in device memory (the default): copied there once
 *    at create, with the router and the shared experts;
 *  - n of them (an expert cache): n slots in device memory hold the
 *    hottest experts by the router's counts (expert_cache.c); the others
 *    are read by the kernels straight from the caller's host memory,
 *    registered with the GPU (zero copy; moex-pinned memory is the
 *    intended home). Before each run the policy, fed by the counts of
 *    the runs so far, may swap a few experts; the copies into slots go
 *    on a second stream, after the last run that read the slot, and a
 *    later run uses a slot only once its copy is in.
 *
 * One GPU context, compute stream and copy stream per process serve every
 * layer (the kernels' scratch is sized by the biggest run, not per
 * layer); gpu_lock makes submissions take turns. The GPU is the one
 * $MOEX_GPU names (default 0). The current device is per thread in HIP
 * and CUDA, and layers are made, run and destroyed from any thread, so
 * every entry point makes that GPU current on its thread (gpu_here())
 * before it calls the runtime: a thread that never chose a device uses
 * device 0, and a stream of one device used there fails. The callbacks
 * (layer_callback) do not call the runtime.
 *
 * A layer has at most one run in flight: the next waits for it, because
 * they share the layer's staging buffers. Runs of a layer from several
 * threads take turns (run_lock), a synchronous run's end included: it
 * reads the layer's counts and run state after gpu_lock is let go, for
 * other layers' runs to go on meanwhile. Activations are host memory: x
 * is copied in, y and the counts copied out, once each.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "expert_cache.h"
#include "hip.h"
#include "internal.h"
#include "moe_hip.h"

#define MOEX_HIP_PAGE		4096u
/* Device memory left free beside the weights, for the kernels' scratch:
 * this much, or a sixteenth of the device when that is less. */
#define MOEX_HIP_SCRATCH_MARGIN	(1024ull << 20)

/*
 * The process's GPU; gpu_lock protects it and every layer's run state.
 * A layer's run_lock, when both are held, is taken first.
 */
static pthread_mutex_t gpu_lock = PTHREAD_MUTEX_INITIALIZER;
static struct {
	const struct moex_hip_api *api;
	struct moek_hip_ctx *ctx;
	void *stream;		/* the layers' kernels */
	void *copy;		/* fills of expert slots */
	unsigned int users;
} gpu;

struct moex_hip_layer {
	const struct moex_hip_api *api;
	struct moek_shape shape;
	struct moek_weights dw;		/* what runs read; experts = table */
	struct moek_ffn *table;		/* [n_experts] slot or host alias */
	struct moek_ffn *alias;		/* [n_experts] device view of host */
	uint8_t *used;			/* [n_experts] table[e] is its slot */
	void *fixed;			/* device: gate, bias, shared expert */
	void *slots;			/* device: n_slots experts */
	size_t slot_bytes;
	void **fill_ev;			/* [n_slots] after the slot's copy */
	uint8_t *filling;		/* [n_slots] a copy not yet waited for */
	struct moex_xcache cache;
	bool streaming;			/* fewer slots than experts */
	char **held;			/* the registry entries it counts in */
	size_t nheld, capheld;
	/* staging: device x, y (dcap tokens), pinned y and counts (hcap) */
	float *dx, *dy;
	size_t dcap;
	float *hy;
	size_t hcap;
	uint32_t *hcounts;
	void *done_ev;			/* after the last run's callback */
	void *read_ev;			/* after the last run's kernels */
	/* held by a run from its start to its return: a synchronous run's
	 * end (layer_finish()) reads the run state without gpu_lock */
	pthread_mutex_t run_lock;
	/* the run in flight; busy: an asynchronous one, whose end done_ev
	 * marks unless busy_unmarked (its record failed: wait for the
	 * stream) */
	bool busy;
	bool busy_unmarked;
	bool run_async;
	float *run_y;
	uint32_t *run_counts;
	size_t run_ntok;
	moex_hip_done_fn run_done;
	void *run_arg;
};

/* ---- the process's GPU ---- */

/* Make the process's GPU current on the calling thread; under gpu_lock,
 * with gpu.ctx made. */
static int gpu_here(void)
{
	return gpu.api->use(gpu.ctx);
}

static int gpu_get(int *why_err)
{
	const struct moex_hip_api *api;
	int dev, r;

	api = moex__hip(why_err);
	if (!api)
		return *why_err;
	pthread_mutex_lock(&gpu_lock);
	r = 0;
	if (!gpu.users) {
		r = moex__hip_pick_gpu(api, &dev);
		if (r) {
			pthread_mutex_unlock(&gpu_lock);
			*why_err = 0;
			return r;
		}
		gpu.api = api;
		/* makes dev current on this thread */
		r = api->create(dev, &gpu.ctx);
		if (!r)
			r = api->stream_create(&gpu.stream);
		if (!r)
			r = api->stream_create(&gpu.copy);
		if (r) {
			api->stream_destroy(gpu.copy);
			api->stream_destroy(gpu.stream);
			api->destroy(gpu.ctx);
			memset(&gpu, 0, sizeof(gpu));
		}
	}
	if (!r)
		gpu.users++;
	pthread_mutex_unlock(&gpu_lock);
	*why_err = 0;
	return r;
}

static void gpu_put(void)
{
	pthread_mutex_lock(&gpu_lock);
	if (!--gpu.users) {
		gpu_here();
		gpu.api->sync(gpu.stream);
		gpu.api->sync(gpu.copy);
		gpu.api->stream_destroy(gpu.copy);
		gpu.api->stream_destroy(gpu.stream);
		gpu.api->destroy(gpu.ctx);
		memset(&gpu, 0, sizeof(gpu));
	}
	pthread_mutex_unlock(&gpu_lock);
}

/* ---- an expert's matrices ---- */

/* The six parts of an FFN in order, with their sizes for the shape. */
static void ffn_parts(const struct moek_shape *s, uint32_t width,
		      const struct moek_ffn *f, const void *part[6],
		      size_t bytes[6])
{
	const bool fp8 = s->wtype == MOEK_FP8_E4M3;

	part[0] = f->w1;
	part[1] = f->w3;
	part[2] = f->w2;
	part[3] = f->s1;
	part[4] = f->s3;
	part[5] = f->s2;
	bytes[0] = moek_matrix_bytes(s->wtype, width, s->dim);
	bytes[1] = bytes[0];
	bytes[2] = moek_matrix_bytes(s->wtype, s->dim, width);
	bytes[3] = fp8 ? moek_scale_count(width, s->dim) * sizeof(float) : 0;
	bytes[4] = bytes[3];
	bytes[5] = fp8 ? moek_scale_count(s->dim, width) * sizeof(float) : 0;
}

static size_t align256(size_t n)
{
	return (n + 255) & ~(size_t)255;
}

/* Device bytes of one FFN laid out by ffn_place(). */
static size_t ffn_bytes(const struct moek_shape *s, uint32_t width)
{
	struct moek_ffn none = { 0 };
	const void *part[6];
	size_t bytes[6], n = 0;

	ffn_parts(s, width, &none, part, bytes);
	for (int i = 0; i < 6; i++)
		n += align256(bytes[i]);
	return n;
}

/* An FFN from its six parts, in ffn_parts() order. */
static void ffn_from(struct moek_ffn *to, void *const p[6])
{
	to->w1 = p[0];
	to->w3 = p[1];
	to->w2 = p[2];
	to->s1 = p[3];
	to->s3 = p[4];
	to->s2 = p[5];
}

/* Where ffn_place() puts an FFN's parts at base (device), as pointers. */
static void ffn_layout(const struct moek_shape *s, uint32_t width, char *base,
		       struct moek_ffn *to)
{
	struct moek_ffn none = { 0 };
	const void *part[6];
	void *dst[6] = { NULL };
	size_t bytes[6];

	ffn_parts(s, width, &none, part, bytes);
	for (int i = 0; i < 6; i++) {
		if (!bytes[i])
			continue;
		dst[i] = base;
		base += align256(bytes[i]);
	}
	ffn_from(to, dst);
}

/*
 * Queue copies of f's parts to base (device, ffn_bytes() of room) on
 * stream; *to (may be NULL) receives where they go.
 */
static int ffn_place(const struct moek_shape *s, uint32_t width,
		     const struct moek_ffn *f, char *base, void *stream,
		     struct moek_ffn *to)
{
	const void *part[6];
	size_t bytes[6];
	int r = 0;

	ffn_parts(s, width, f, part, bytes);
	for (int i = 0; i < 6 && !r; i++) {
		if (!bytes[i])
			continue;
		r = gpu.api->copy_async(base, part[i], bytes[i], stream);
		base += align256(bytes[i]);
	}
	if (to)
		ffn_layout(s, width, base - ffn_bytes(s, width), to);
	return r;
}

/* ---- host memory the kernels read in place ---- */

/*
 * Host memory libmoex registered with the GPU: page ranges, sorted, each
 * registered once and shared by every layer whose experts lie in it (the
 * layers of a model sit side by side in one buffer, and their ends may
 * share a page). refs counts the layers; the last one out unregisters.
 * gpu_lock protects.
 */
struct moex_hip_range {
	char *p;
	size_t len;
	unsigned int refs;
};

static struct moex_hip_range *reg;
static size_t nreg, capreg;

static int reg_insert(char *p, size_t len)
{
	void *alias;
	size_t i;
	int r;

	if (nreg == capreg) {
		size_t cap = capreg ? 2 * capreg : 16;
		struct moex_hip_range *n = realloc(reg, cap * sizeof(*n));

		if (!n)
			return -ENOMEM;
		reg = n;
		capreg = cap;
	}
	r = gpu.api->host_register(p, len, &alias);
	if (r)
		return r;
	for (i = nreg; i > 0 && reg[i - 1].p > p; i--)
		reg[i] = reg[i - 1];
	reg[i] = (struct moex_hip_range){ p, len, 0 };
	nreg++;
	return 0;
}

static struct moex_hip_range *reg_find(const char *p)
{
	for (size_t i = 0; i < nreg; i++)
		if (reg[i].p == p)
			return &reg[i];
	return NULL;
}

static void reg_put(char *p)
{
	struct moex_hip_range *e = reg_find(p);
	size_t i;

	if (!e || --e->refs)
		return;
	gpu.api->host_unregister(e->p);
	i = (size_t)(e - reg);
	memmove(&reg[i], &reg[i + 1], (nreg - i - 1) * sizeof(*reg));
	nreg--;
}

/* Room in l->held for n more entries. */
static int held_room(struct moex_hip_layer *l, size_t n)
{
	size_t cap = l->capheld ? l->capheld : 8;
	char **p;

	if (l->nheld + n <= l->capheld)
		return 0;
	while (cap < l->nheld + n)
		cap *= 2;
	p = realloc(l->held, cap * sizeof(*p));
	if (!p)
		return -ENOMEM;
	l->held = p;
	l->capheld = cap;
	return 0;
}

/*
 * Take [a, b) (page-aligned) for layer l: register the parts no entry
 * covers, and count l in on every entry that covers a part. A part that
 * someone else registered (-EEXIST) is left to them: ffn_alias() checks
 * that the kernels can reach every expert. When a registration fails,
 * l is still counted in on what it covers so far, the parts registered
 * by this call included, so that layer_unregister() undoes them; l->held
 * has room for all before the first registration.
 */
static int reg_take(struct moex_hip_layer *l, char *a, char *b)
{
	char **gap = malloc(2 * (nreg + 1) * sizeof(*gap));
	size_t ngap = 0, ncover = 0, i;
	char *cur = a;
	int r;

	if (!gap)
		return -ENOMEM;
	/* the gaps first: inserting moves the entries */
	for (i = 0; i < nreg && cur < b; i++) {
		char *end = reg[i].p + reg[i].len;

		if (end <= cur || reg[i].p >= b)
			continue;
		if (reg[i].p > cur) {
			gap[ngap++] = cur;
			gap[ngap++] = reg[i].p;
		}
		cur = end;
		ncover++;
	}
	if (cur < b) {
		gap[ngap++] = cur;
		gap[ngap++] = b;
	}
	r = held_room(l, ncover + ngap / 2);
	if (r) {
		free(gap);
		return r;
	}
	for (i = 0; !r && i < ngap; i += 2) {
		r = reg_insert(gap[i], (size_t)(gap[i + 1] - gap[i]));
		if (r == -EEXIST)
			r = 0;
	}
	free(gap);
	for (i = 0; i < nreg; i++) {
		if (reg[i].p + reg[i].len <= a || reg[i].p >= b)
			continue;
		l->held[l->nheld++] = reg[i].p;
		reg[i].refs++;
	}
	return r;
}

static int range_cmp(const void *x, const void *y)
{
	char *const *a = x, *const *b = y;

	return *a < *b ? -1 : *a > *b;
}

/* Register the pages of every routed expert's parts, merged into ranges. */
static int layer_register(struct moex_hip_layer *l,
			  const struct moek_weights *w)
{
	const struct moek_shape *s = &l->shape;
	const uint32_t ne = s->n_experts;
	char *(*r)[2];
	uint32_t n = 0, m = 0;
	int ret = 0;

	r = calloc((size_t)ne * 6, sizeof(*r));
	if (!r)
		return -ENOMEM;
	for (uint32_t e = 0; e < ne; e++) {
		const void *part[6];
		size_t bytes[6];

		ffn_parts(s, s->inter, &w->experts[e], part, bytes);
		for (int i = 0; i < 6; i++) {
			uintptr_t a, b;

			if (!bytes[i])
				continue;
			a = (uintptr_t)part[i] & ~(uintptr_t)(MOEX_HIP_PAGE - 1);
			b = ((uintptr_t)part[i] + bytes[i] + MOEX_HIP_PAGE - 1) &
			    ~(uintptr_t)(MOEX_HIP_PAGE - 1);
			r[n][0] = (char *)a;
			r[n][1] = (char *)b;
			n++;
		}
	}
	qsort(r, n, sizeof(*r), range_cmp);
	for (uint32_t i = 1; i < n; i++) {
		if (r[i][0] <= r[m][1]) {
			if (r[i][1] > r[m][1])
				r[m][1] = r[i][1];
		} else {
			m++;
			r[m][0] = r[i][0];
			r[m][1] = r[i][1];
		}
	}
	for (uint32_t i = 0; n && i <= m && !ret; i++)
		ret = reg_take(l, r[i][0], r[i][1]);
	free(r);
	return ret;
}

static void layer_unregister(struct moex_hip_layer *l)
{
	for (size_t i = l->nheld; i-- > 0;)
		reg_put(l->held[i]);
	free(l->held);
	l->held = NULL;
	l->nheld = 0;
}

/* The device view of a routed expert in host memory. */
static int ffn_alias(const struct moex_hip_layer *l, const struct moek_ffn *f,
		     struct moek_ffn *to)
{
	const void *part[6];
	void *dev[6] = { NULL };
	size_t bytes[6];
	int r;

	ffn_parts(&l->shape, l->shape.inter, f, part, bytes);
	for (int i = 0; i < 6; i++) {
		if (!bytes[i])
			continue;
		r = l->api->host_alias((void *)part[i], &dev[i]);
		if (r)
			return r == -EINVAL ? -EFAULT : r;
	}
	ffn_from(to, dev);
	return 0;
}

/* ---- create and destroy ---- */

static size_t gate_bytes(const struct moek_shape *s)
{
	return moek_matrix_bytes(s->gtype, s->n_experts, s->dim);
}

/* The router and the shared experts: always in device memory. */
static int layer_fixed(struct moex_hip_layer *l, const struct moek_weights *w)
{
	const struct moek_shape *s = &l->shape;
	const size_t gb = align256(gate_bytes(s));
	const size_t bb = w->bias ? align256(s->n_experts * sizeof(float)) : 0;
	const uint32_t sw = s->n_shared * s->inter;
	const size_t sb = s->n_shared ? ffn_bytes(s, sw) : 0;
	char *base;
	int r;

	r = l->api->malloc(gb + bb + sb, &l->fixed);
	if (r)
		return r;
	base = l->fixed;
	r = l->api->copy_async(base, w->gate, gate_bytes(s), gpu.stream);
	l->dw.gate = base;
	if (!r && w->bias) {
		r = l->api->copy_async(base + gb, w->bias,
				       s->n_experts * sizeof(float), gpu.stream);
		l->dw.bias = (const float *)(const void *)(base + gb);
	}
	if (!r && s->n_shared)
		r = ffn_place(s, sw, &w->shared, base + gb + bb, gpu.stream,
			      &l->dw.shared);
	return r;
}

/* Slots for n_slots experts, the first n_slots experts copied in. */
static int layer_slots(struct moex_hip_layer *l, const struct moek_weights *w,
		       uint32_t n_slots)
{
	const struct moek_shape *s = &l->shape;
	size_t free_b, total;
	int r;

	l->slot_bytes = ffn_bytes(s, s->inter);
	r = l->api->mem_info(&free_b, &total);
	if (r)
		return r;
	if ((unsigned __int128)n_slots * l->slot_bytes +
	    (total / 16 < MOEX_HIP_SCRATCH_MARGIN ? total / 16 :
	     MOEX_HIP_SCRATCH_MARGIN) > free_b)
		return -ENOMEM;
	l->fill_ev = calloc(n_slots ? n_slots : 1, sizeof(*l->fill_ev));
	l->filling = calloc(n_slots ? n_slots : 1, 1);
	if (!l->fill_ev || !l->filling)
		return -ENOMEM;
	if (!n_slots)
		return 0;
	r = l->api->malloc(n_slots * l->slot_bytes, &l->slots);
	for (uint32_t i = 0; !r && i < n_slots; i++) {
		r = l->api->event_create(&l->fill_ev[i]);
		if (!r)
			r = ffn_place(s, s->inter, &w->experts[i],
				      (char *)l->slots + i * l->slot_bytes,
				      gpu.stream, &l->table[i]);
		l->used[i] = 1;
	}
	return r;
}

static void layer_free(struct moex_hip_layer *l)
{
	const struct moex_hip_api *api = l->api;

	if (gpu.stream) {
		api->sync(gpu.stream);
		api->sync(gpu.copy);
	}
	for (uint32_t i = 0; l->fill_ev && i < l->cache.n_slots; i++)
		api->event_destroy(l->fill_ev[i]);
	api->event_destroy(l->done_ev);
	api->event_destroy(l->read_ev);
	api->free(l->slots);
	api->free(l->fixed);
	api->free(l->dx);
	api->free(l->dy);
	api->host_free(l->hy);
	api->host_free(l->hcounts);
	layer_unregister(l);
	moex_xcache_fini(&l->cache);
	free(l->fill_ev);
	free(l->filling);
	free(l->used);
	free(l->alias);
	free(l->table);
	pthread_mutex_destroy(&l->run_lock);
	free(l);
}

int moex__hip_layer_create(const struct moek_shape *s,
			   const struct moek_weights *w, uint32_t gpu_experts,
			   struct moex_hip_layer **out)
{
	const uint32_t ne = s->n_experts;
	struct moex_hip_layer *l;
	uint32_t n_slots;
	int r, why, here;

	*out = NULL;
	if (gpu_experts > ne)
		return -EINVAL;
	n_slots = gpu_experts ? gpu_experts : ne;
	r = gpu_get(&why);
	if (r) {
		if (why)
			fprintf(stderr, "libmoex: %s\n", moex__hip_why());
		return r;
	}
	l = calloc(1, sizeof(*l));
	if (!l) {
		gpu_put();
		return -ENOMEM;
	}
	pthread_mutex_init(&l->run_lock, NULL);
	l->api = gpu.api;
	l->shape = *s;
	l->streaming = n_slots < ne;
	l->table = calloc(ne, sizeof(*l->table));
	l->alias = calloc(ne, sizeof(*l->alias));
	l->used = calloc(ne, 1);
	r = (l->table && l->alias && l->used) ? 0 : -ENOMEM;
	if (!r)
		r = moex_xcache_init(&l->cache, ne, n_slots,
				     ffn_bytes(s, s->inter));
	pthread_mutex_lock(&gpu_lock);
	here = gpu_here();
	if (!r)
		r = here;
	if (!r)
		r = l->api->event_create(&l->done_ev);
	if (!r)
		r = l->api->event_create(&l->read_ev);
	if (!r)
		r = layer_fixed(l, w);
	if (!r && l->streaming)
		r = layer_register(l, w);
	for (uint32_t e = 0; !r && l->streaming && e < ne; e++) {
		r = ffn_alias(l, &w->experts[e], &l->alias[e]);
		l->table[e] = l->alias[e];
	}
	if (!r)
		r = layer_slots(l, w, n_slots);
	if (!r)
		r = l->api->sync(gpu.stream);
	if (r)
		layer_free(l);
	pthread_mutex_unlock(&gpu_lock);
	if (r == -EFAULT)
		fprintf(stderr,
			"libmoex: the GPU cannot reach an expert's host memory (registered in part by someone else?); give the layer all its experts on the GPU, or register the whole weight buffer\n");
	if (r) {
		gpu_put();
		return r;
	}
	l->dw.experts = l->table;
	*out = l;
	return 0;
}

void moex__hip_layer_destroy(struct moex_hip_layer *l)
{
	if (!l)
		return;
	pthread_mutex_lock(&gpu_lock);
	gpu_here();
	layer_free(l);
	pthread_mutex_unlock(&gpu_lock);
	gpu_put();
}

/* ---- runs ---- */

/* Staging for ntok tokens; called with no run of the layer in flight. */
static int layer_stage(struct moex_hip_layer *l, size_t ntok, bool async)
{
	const size_t row = (size_t)l->shape.dim * sizeof(float);
	const size_t ne = l->shape.n_experts;
	int r = 0;

	if (!l->hcounts) {
		r = l->api->host_alloc(ne * sizeof(uint32_t),
				       (void **)&l->hcounts);
		if (r)
			return r;
	}
	if (l->dcap < ntok) {
		r = l->api->sync(gpu.stream);
		if (r)
			return r;
		l->api->free(l->dx);
		l->api->free(l->dy);
		l->dx = l->dy = NULL;
		l->dcap = 0;
		r = l->api->malloc(ntok * row, (void **)&l->dx);
		if (!r)
			r = l->api->malloc(ntok * row, (void **)&l->dy);
		if (r)
			return r;
		l->dcap = ntok;
	}
	if (async && l->hcap < ntok) {
		l->api->host_free(l->hy);
		l->hy = NULL;
		l->hcap = 0;
		r = l->api->host_alloc(ntok * row, (void **)&l->hy);
		if (r)
			return r;
		l->hcap = ntok;
	}
	return 0;
}

/*
 * The cache's moves before a run: slots whose copy was queued by an
 * earlier run are waited for by the compute stream and used from now on;
 * then the swaps the policy plans start copying, on the copy stream once
 * the last run that read those slots is done, and their experts are read
 * from host memory until a later run. (That last wait, on read_ev, never
 * blocks today: moex__hip_layer_run() lets one run of a layer be in
 * flight at a time. It keeps the moves right if runs ever overlap.
 * hipemu-check's slow-copy runs test the first wait; nothing can test
 * this one.) The plan is in the cache's books at once, so the experts it
 * takes out of slots are read from host memory before the first call
 * that can fail: a swap then not carried out leaves its slot unused
 * (filling 0) until the cache gives it to another expert, whose copy
 * overwrites it.
 */
static int layer_cache_moves(struct moex_hip_layer *l)
{
	const struct moex_hip_api *api = l->api;
	struct moex_xswap sw[MOEX_XCACHE_MAX_SWAPS];
	uint32_t n;
	int r;

	for (uint32_t s = 0; s < l->cache.n_slots; s++) {
		int32_t e = l->cache.held[s];

		if (!l->filling[s])
			continue;
		r = api->stream_wait(gpu.stream, l->fill_ev[s]);
		if (r)
			return r;
		l->filling[s] = 0;
		ffn_layout(&l->shape, l->shape.inter,
			   (char *)l->slots + s * l->slot_bytes, &l->table[e]);
		l->used[e] = 1;
	}
	n = moex_xcache_plan(&l->cache, sw, MOEX_XCACHE_MAX_SWAPS);
	for (uint32_t i = 0; i < n; i++) {
		l->table[sw[i].out] = l->alias[sw[i].out];
		l->used[sw[i].out] = 0;
	}
	if (!n)
		return 0;
	r = api->stream_wait(gpu.copy, l->read_ev);
	for (uint32_t i = 0; !r && i < n; i++) {
		r = ffn_place(&l->shape, l->shape.inter, &l->alias[sw[i].in],
			      (char *)l->slots + sw[i].slot * l->slot_bytes,
			      gpu.copy, NULL);
		if (!r)
			r = api->event_record(l->fill_ev[sw[i].slot], gpu.copy);
		if (!r)
			l->filling[sw[i].slot] = 1;
	}
	return r;
}

/* The end of a run, in the GPU runtime's thread (async) or the caller's. */
static void layer_finish(struct moex_hip_layer *l, int status)
{
	if (!status) {
		if (l->run_async)
			memcpy(l->run_y, l->hy,
			       l->run_ntok * l->shape.dim * sizeof(float));
		if (l->run_counts)
			memcpy(l->run_counts, l->hcounts,
			       l->shape.n_experts * sizeof(uint32_t));
		moex_xcache_observe(&l->cache, l->used, l->hcounts);
	}
	l->run_done(l->run_arg, status, status ? NULL : l->hcounts);
}

static void layer_callback(void *arg, int status)
{
	layer_finish(arg, status);
}

int moex__hip_layer_run(struct moex_hip_layer *l, const float *x, size_t ntok,
			float *y, uint32_t *counts, bool async,
			moex_hip_done_fn done, void *arg)
{
	const struct moex_hip_api *api = l->api;
	const size_t bytes = ntok * l->shape.dim * sizeof(float);
	int r;

	pthread_mutex_lock(&l->run_lock);
	pthread_mutex_lock(&gpu_lock);
	r = gpu_here();
	if (r)
		goto out;
	if (l->busy) {
		/* the last asynchronous run, its callback included */
		r = l->busy_unmarked ? api->sync(gpu.stream) :
				       api->event_sync(l->done_ev);
		if (r)
			goto out;
		l->busy = false;
	}
	r = layer_stage(l, ntok ? ntok : 1, async);
	if (!r && l->streaming)
		r = layer_cache_moves(l);
	if (r)
		goto out;
	l->run_async = async;
	l->run_y = y;
	l->run_counts = counts;
	l->run_ntok = ntok;
	l->run_done = done;
	l->run_arg = arg;
	if (!ntok) {
		memset(l->hcounts, 0, l->shape.n_experts * sizeof(uint32_t));
		if (counts)
			memset(counts, 0, l->shape.n_experts * sizeof(*counts));
		pthread_mutex_unlock(&gpu_lock);
		done(arg, 0, l->hcounts);
		pthread_mutex_unlock(&l->run_lock);
		return 0;
	}
	r = api->copy_async(l->dx, x, bytes, gpu.stream);
	if (!r)
		r = api->layer(gpu.ctx, &l->shape, &l->dw, l->dx, ntok, l->dy,
			       NULL, gpu.stream);
	if (!r)
		r = api->event_record(l->read_ev, gpu.stream);
	if (!r)
		r = api->layer_counts(gpu.ctx, l->shape.n_experts, l->hcounts,
				      gpu.stream);
	if (!r)
		r = api->copy_async(async ? (void *)l->hy : (void *)y, l->dy,
				    bytes, gpu.stream);
	if (r)
		goto out;
	if (async) {
		/* a launch that failed: nothing will call back */
		r = api->host_fn_launch(gpu.stream, layer_callback, l);
		if (r)
			goto out;
		/*
		 * Launched: the callback completes the run, so this returns
		 * 0 whatever follows. Without done_ev the next run waits for
		 * the whole stream instead.
		 */
		l->busy = true;
		l->busy_unmarked = api->event_record(l->done_ev,
						     gpu.stream) != 0;
		goto out;
	}
	r = api->sync(gpu.stream);
	pthread_mutex_unlock(&gpu_lock);
	layer_finish(l, r);
	pthread_mutex_unlock(&l->run_lock);
	return r;
out:
	pthread_mutex_unlock(&gpu_lock);
	pthread_mutex_unlock(&l->run_lock);
	return r;
}

void moex__hip_layer_stats(struct moex_hip_layer *l, struct moex_moe_stats *st)
{
	struct moex_xcache_stats c;

	moex_xcache_stats(&l->cache, &c);
	MOEX_SET(st, gpu_experts, l->cache.n_slots);
	MOEX_SET(st, gpu_hits, c.hits);
	MOEX_SET(st, gpu_misses, c.misses);
	MOEX_SET(st, stream_bytes, c.stream_bytes);
	MOEX_SET(st, fills, c.fills);
	MOEX_SET(st, fill_bytes, c.fill_bytes);
}
