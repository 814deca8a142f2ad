// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * libmoex models: load the MoE layers of a model directory into pinned
 * memory and bind each to a backend.
 *
 * 1. Read the directory (model_read.c): config.json, the shards' headers,
 *    and for each layer asked for, its tensors, checked against the config.
 * 2. Plan: the tensors sorted by file and offset are merged into runs (one
 *    read range each; tensors closer than MOEX_RUN_GAP join a run), every
 *    run widened to whole 4 KiB blocks, as O_DIRECT needs. The runs are laid
 *    out back to back in one buffer, each at a 4 KiB boundary, so a tensor
 *    lies in memory exactly as in its file and the file bytes ARE the
 *    weights: no bounce buffer, no copy after the read.
 * 3. Memory: one anonymous mapping with transparent huge pages, pinned by
 *    moex before the reads (a memlock shortfall fails before any I/O), or
 *    mlock()ed when there is no device.
 * 4. Read: IORING_OP_READ of MOEX_READ_CHUNK pieces, queue_depth in flight,
 *    on files opened with O_DIRECT (buffered where the filesystem refuses
 *    it, still into the same memory); pread(2) of the same pieces where the
 *    host refuses io_uring (seccomp, kernel.io_uring_disabled). The
 *    weights are not io_uring fixed buffers: registering them would charge
 *    RLIMIT_MEMLOCK a second time for the same pages, and READ_FIXED saves
 *    only the per-read page lookup, which O_DIRECT of 1 MiB pieces
 *    amortises.
 * 5. Bind: one struct moex_moe per layer, pointing into the buffer.
 * 6. Publish: the layers' per-expert token counts go to a small shared
 *    file while the model is open (publish.c), for moexctl stats --watch.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "model.h"
#include "publish.h"

#define MOEX_BLOCK		4096u		/* O_DIRECT alignment */
#define MOEX_RUN_GAP		(1u << 20)	/* read through smaller gaps */
#define MOEX_READ_CHUNK		(1u << 20)	/* bytes per read */
#define MOEX_QD_DEFAULT		32

/* One read range of a file and where it lands in the buffer. */
struct moex_run {
	uint32_t file;
	uint64_t start, end;	/* file range, MOEX_BLOCK-aligned */
	uint64_t mem;		/* offset in the buffer */
};

struct moex_model {
	struct moex_model_files *files;
	struct moex_device *dev;
	struct moex_run *runs;
	uint32_t nruns;
	char *mem;
	size_t mem_len;
	uint32_t handle;	/* moex region, 0 when mlock()ed */
	bool locked;		/* pinned or mlock()ed: undo at close */
	uint32_t first, count;
	struct moex_moe **moe;	/* [count] */
	struct moex_model_info info;
	struct moex_pub *pub;	/* the published expert load, or NULL */
};

static double moex_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int moex_tensor_cmp(const void *a, const void *b)
{
	const struct moex_st_tensor *x = *(const struct moex_st_tensor *const *)a;
	const struct moex_st_tensor *y = *(const struct moex_st_tensor *const *)b;

	if (x->file != y->file)
		return x->file < y->file ? -1 : 1;
	return (x->offset > y->offset) - (x->offset < y->offset);
}

/* ---- 2. plan ---------------------------------------------------------- */

/* Runs covering tensors t[0..n), sorted by file and offset. */
static int moex_plan(struct moex_model *m, const struct moex_st_tensor **t,
		     size_t n)
{
	uint64_t mem = 0;
	size_t i;

	m->runs = calloc(n ? n : 1, sizeof(*m->runs));
	if (!m->runs)
		return -ENOMEM;
	for (i = 0; i < n; i++) {
		struct moex_run *r = m->nruns ? &m->runs[m->nruns - 1] : NULL;
		uint64_t end = t[i]->offset + t[i]->nbytes;

		if (r && r->file == t[i]->file &&
		    t[i]->offset <= r->end + MOEX_RUN_GAP) {
			if (end > r->end)
				r->end = end;
			continue;
		}
		r = &m->runs[m->nruns++];
		r->file = t[i]->file;
		r->start = t[i]->offset & ~(uint64_t)(MOEX_BLOCK - 1);
		r->end = end;
	}
	for (i = 0; i < m->nruns; i++) {
		struct moex_run *r = &m->runs[i];

		r->end = (r->end + MOEX_BLOCK - 1) & ~(uint64_t)(MOEX_BLOCK - 1);
		r->mem = mem;
		mem += r->end - r->start;
	}
	m->mem_len = mem ? mem : MOEX_BLOCK;
	return 0;
}

/* Where tensor t lies in the buffer (its run holds it: moex_plan()). */
static void *moex_tensor_addr(const struct moex_model *m,
			      const struct moex_st_tensor *t)
{
	uint32_t lo = 0, hi = m->nruns;

	while (hi - lo > 1) {
		uint32_t mid = lo + (hi - lo) / 2;
		const struct moex_run *r = &m->runs[mid];

		if (r->file < t->file ||
		    (r->file == t->file && r->start <= t->offset))
			lo = mid;
		else
			hi = mid;
	}
	return m->mem + m->runs[lo].mem + (t->offset - m->runs[lo].start);
}

/* ---- 4. read ---------------------------------------------------------- */

/*
 * One piece in the reader's hands, from moex_read_prep() until its result
 * went through moex_read_done().
 */
struct moex_read {
	uint32_t run;
	uint64_t off;		/* file offset of this piece */
	uint32_t len;
	bool direct;		/* issued on the file's O_DIRECT descriptor */
};

/*
 * The reads of one load. With io_uring, a prepared piece is queued (its
 * SQE filled in) until a submit hands it to the kernel; it is in flight
 * until its CQE is seen. Without (io_uring refused), pread() serves one
 * slot: prep queues it, the loop reads it. Either way every result goes
 * through moex_read_done(), and nothing is freed while the kernel may
 * still write into the weights: an error stops new pieces, submits what
 * is queued and waits for all in flight.
 */
struct moex_reader {
	struct moex_model *m;
	struct io_uring ring;
	bool uring;		/* reads through ring; else pread() */
	int *fds;		/* [nfiles] what new reads use, -1 when unused */
	int *direct_fds;	/* [nfiles] O_DIRECT fds given up, kept open
				 * until the end: reads in flight name them */
	bool *direct;		/* [nfiles] fds[f] is O_DIRECT */
	struct moex_read *slots;	/* [qd] */
	unsigned int qd, queued, inflight;
	uint32_t run;		/* next piece: run and offset */
	uint64_t off;
	uint64_t done, total;
	const struct moex_model_opts *opts;
};

/*
 * The result the reader sees: the kernel's. Tests that build this file
 * into themselves define it to inject errors.
 */
#ifndef MOEX_READ_RESULT
#define MOEX_READ_RESULT(s, res) (res)
#endif

static int moex_open_file(struct moex_reader *rd, uint32_t f)
{
	const char *path = rd->m->files->paths[f];

	if (rd->fds[f] >= 0)
		return 0;
	rd->fds[f] = open(path, O_RDONLY | O_DIRECT | O_CLOEXEC);
	rd->direct[f] = rd->fds[f] >= 0;
	if (rd->fds[f] < 0 && errno == EINVAL)	/* tmpfs and others */
		rd->fds[f] = open(path, O_RDONLY | O_CLOEXEC);
	return rd->fds[f] < 0 ? moex__neg_errno() : 0;
}

/*
 * O_DIRECT refused at read time: file f's new reads go buffered. The
 * O_DIRECT fd stays open until the load ends, since reads queued or in
 * flight still name it.
 */
static int moex_go_buffered(struct moex_reader *rd, uint32_t f)
{
	int fd;

	if (!rd->direct[f])
		return 0;	/* another read of this file got there first */
	fd = open(rd->m->files->paths[f], O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return moex__neg_errno();
	rd->direct_fds[f] = rd->fds[f];
	rd->fds[f] = fd;
	rd->direct[f] = false;
	return 0;
}

/* Queue the next piece into slot s; false when every piece is queued. */
static bool moex_read_next(struct moex_reader *rd, struct moex_read *s)
{
	const struct moex_run *r;
	uint64_t left;

	if (rd->run == rd->m->nruns)
		return false;
	r = &rd->m->runs[rd->run];
	left = r->end - rd->off;
	s->run = rd->run;
	s->off = rd->off;
	s->len = left < MOEX_READ_CHUNK ? (uint32_t)left : MOEX_READ_CHUNK;
	rd->off += s->len;
	if (rd->off == r->end && ++rd->run < rd->m->nruns)
		rd->off = rd->m->runs[rd->run].start;
	return true;
}

/* Where piece s lands in the weights' memory. */
static void *moex_read_dest(const struct moex_reader *rd,
			    const struct moex_read *s)
{
	const struct moex_run *r = &rd->m->runs[s->run];

	return rd->m->mem + r->mem + (s->off - r->start);
}

static void moex_read_prep(struct moex_reader *rd, struct moex_read *s)
{
	uint32_t f = rd->m->runs[s->run].file;

	s->direct = rd->direct[f];
	if (rd->uring) {
		/* at most one SQE per slot and qd slots: never NULL */
		struct io_uring_sqe *sqe = io_uring_get_sqe(&rd->ring);

		io_uring_prep_read(sqe, rd->fds[f], moex_read_dest(rd, s),
				   s->len, s->off);
		io_uring_sqe_set_data(sqe, s);
	}
	rd->queued++;
}

/*
 * A completed piece: res bytes of s, or -errno. Short reads continue where
 * they stopped; end of file ends a piece that reaches past it (the last
 * block of a file); O_DIRECT refused at read time makes the file buffered
 * and the piece goes again.
 */
static int moex_read_done(struct moex_reader *rd, struct moex_read *s, int res,
			  char *err, size_t errlen)
{
	const struct moex_run *r = &rd->m->runs[s->run];
	uint64_t fsize = rd->m->files->sizes[r->file];
	int ret;

	if (res == -EINVAL && s->direct) {
		ret = moex_go_buffered(rd, r->file);
		if (ret) {
			moex__errf(err, errlen, 0, "%s: reopening without O_DIRECT: %s",
				 rd->m->files->paths[r->file], strerror(-ret));
			return ret;
		}
		moex_read_prep(rd, s);
		return 0;
	}
	if (res < 0) {
		moex__errf(err, errlen, 0, "%s: read at %llu: %s",
			 rd->m->files->paths[r->file],
			 (unsigned long long)s->off, strerror(-res));
		return res;
	}
	if (res == 0 && s->off < fsize) {
		moex__errf(err, errlen, 0, "%s: ends early at %llu",
			 rd->m->files->paths[r->file],
			 (unsigned long long)s->off);
		return -EIO;
	}
	rd->done += (unsigned int)res;
	if (rd->opts && MOEX_COVERS(rd->opts, progress) && rd->opts->progress)
		rd->opts->progress(rd->opts->progress_ctx, rd->done, rd->total);
	if (res > 0 && (unsigned int)res < s->len && s->off + res < fsize) {
		s->off += (unsigned int)res;
		s->len -= (unsigned int)res;
		moex_read_prep(rd, s);
		return 0;
	}
	if (moex_read_next(rd, s))
		moex_read_prep(rd, s);
	return 0;
}

/* Hand what is queued to the kernel; -errno when it took none. */
static int moex_read_submit(struct moex_reader *rd, unsigned int wait)
{
	int n;

	do
		n = io_uring_submit_and_wait(&rd->ring, wait);
	while (n == -EINTR);
	if (n < 0)
		return n;
	rd->queued -= (unsigned int)n;
	rd->inflight += (unsigned int)n;
	return 0;
}

/* The io_uring loop: until every piece is read or one fails. */
static int moex_read_uring(struct moex_reader *rd, char *err, size_t errlen)
{
	struct io_uring_cqe *cqe;
	int ret = 0;

	while (!ret && (rd->queued || rd->inflight)) {
		ret = moex_read_submit(rd, 1);
		if (ret) {
			moex__errf(err, errlen, 0, "io_uring submit: %s",
				 strerror(-ret));
			break;
		}
		while (!ret && io_uring_peek_cqe(&rd->ring, &cqe) == 0) {
			struct moex_read *s = io_uring_cqe_get_data(cqe);
			int res = MOEX_READ_RESULT(s, cqe->res);

			io_uring_cqe_seen(&rd->ring, cqe);
			rd->inflight--;
			ret = moex_read_done(rd, s, res, err, errlen);
		}
	}
	if (!ret)
		return 0;
	/*
	 * An error: what is queued goes to the kernel too (liburing cannot
	 * take an SQE back), then everything in flight lands before the
	 * memory can go. Unless the kernel took none: those never run.
	 */
	if (rd->queued)
		moex_read_submit(rd, 0);
	while (rd->inflight) {
		int w = io_uring_wait_cqe(&rd->ring, &cqe);

		if (w == -EINTR)
			continue;
		if (w)
			break;	/* cannot happen with requests in flight */
		io_uring_cqe_seen(&rd->ring, cqe);
		rd->inflight--;
	}
	return ret;
}

/* Without io_uring: one slot, pread() into the same memory. */
static int moex_read_sync(struct moex_reader *rd, char *err, size_t errlen)
{
	struct moex_read *s = &rd->slots[0];
	int ret = 0;

	while (!ret && rd->queued) {
		uint32_t f = rd->m->runs[s->run].file;
		ssize_t n;

		rd->queued--;
		do
			n = pread(rd->fds[f], moex_read_dest(rd, s), s->len,
				  (off_t)s->off);
		while (n < 0 && errno == EINTR);
		ret = moex_read_done(rd, s, MOEX_READ_RESULT(s, n < 0 ?
				     -errno : (int)n), err, errlen);
	}
	return ret;
}

/*
 * io_uring refused by the host: seccomp (container runtimes' default
 * profiles), kernel.io_uring_disabled, or a kernel without it.
 */
static bool moex_uring_refused(int ret)
{
	return ret == -EPERM || ret == -EACCES || ret == -ENOSYS;
}

/* The ring (tests that build this file in define it to refuse). */
#ifndef MOEX_READ_RING_INIT
#define MOEX_READ_RING_INIT(qd, ring) io_uring_queue_init((qd), (ring), 0)
#endif

static int moex_read_all(struct moex_model *m, unsigned int qd,
			 const struct moex_model_opts *opts, char *err,
			 size_t errlen)
{
	struct moex_reader rd = { .m = m, .qd = qd, .opts = opts };
	uint32_t f, i;
	int ret;

	rd.fds = malloc(m->files->nfiles * sizeof(*rd.fds));
	rd.direct_fds = malloc(m->files->nfiles * sizeof(*rd.direct_fds));
	rd.direct = calloc(m->files->nfiles, sizeof(*rd.direct));
	rd.slots = calloc(qd, sizeof(*rd.slots));
	if (!rd.fds || !rd.direct_fds || !rd.direct || !rd.slots) {
		ret = -ENOMEM;
		goto out_free;
	}
	for (f = 0; f < m->files->nfiles; f++)
		rd.fds[f] = rd.direct_fds[f] = -1;
	for (i = 0; i < m->nruns; i++) {
		const struct moex_run *r = &m->runs[i];
		uint64_t fsize = m->files->sizes[r->file];

		/* a file's last block may reach past its end */
		rd.total += (r->end < fsize ? r->end : fsize) - r->start;
		ret = moex_open_file(&rd, m->runs[i].file);
		if (ret) {
			moex__errf(err, errlen, 0, "%s: %s",
				 m->files->paths[m->runs[i].file],
				 strerror(-ret));
			goto out_close;
		}
	}
	ret = MOEX_READ_RING_INIT(qd, &rd.ring);
	rd.uring = !ret;
	if (ret && !moex_uring_refused(ret)) {
		moex__errf(err, errlen, 0, "io_uring: %s", strerror(-ret));
		goto out_close;
	}
	if (m->nruns)
		rd.off = m->runs[0].start;
	for (i = 0; i < (rd.uring ? qd : 1) &&
	     moex_read_next(&rd, &rd.slots[i]); i++)
		moex_read_prep(&rd, &rd.slots[i]);
	if (rd.uring) {
		ret = moex_read_uring(&rd, err, errlen);
		io_uring_queue_exit(&rd.ring);
	} else {
		ret = moex_read_sync(&rd, err, errlen);
	}
	for (f = 0; f < m->files->nfiles; f++)
		m->info.direct += rd.direct[f];
	m->info.read_bytes = rd.done;
	m->info.uring = rd.uring;
out_close:
	for (f = 0; f < m->files->nfiles; f++) {
		if (rd.fds[f] >= 0)
			close(rd.fds[f]);
		if (rd.direct_fds[f] >= 0)
			close(rd.direct_fds[f]);
	}
out_free:
	free(rd.fds);
	free(rd.direct_fds);
	free(rd.direct);
	free(rd.slots);
	return ret;
}

/* ---- 5. bind ---------------------------------------------------------- */

static void moex_bind_ffn(const struct moex_model *m,
			  const struct moex_st_tensor *const t[6],
			  struct moex_ffn_weights *f)
{
	const void *p[6] = { NULL };
	int i;

	for (i = 0; i < 6; i++)
		if (t[i])
			p[i] = moex_tensor_addr(m, t[i]);
	*f = (struct moex_ffn_weights){ p[0], p[1], p[2], p[3], p[4], p[5] };
}

static int moex_bind_layer(struct moex_model *m,
			   const struct moex_layer_tensors *lt,
			   const struct moex_model_opts *opts,
			   struct moex_moe **out, char *err, size_t errlen)
{
	struct moex_moe_weights w = { .size = sizeof(w) };
	struct moex_moe_opts mo = { .size = sizeof(mo) };
	struct moex_ffn_weights *ex;
	uint32_t e, ne = lt->desc.n_experts;
	int ret = 0;

	ex = calloc(ne, sizeof(*ex));
	if (!ex)
		return -ENOMEM;
	for (e = 0; e < ne; e++)
		moex_bind_ffn(m, lt->experts[e], &ex[e]);
	if (lt->desc.n_shared)
		moex_bind_ffn(m, lt->shared, &w.shared);
	w.gate = moex_tensor_addr(m, lt->gate);
	w.bias = lt->bias ? moex_tensor_addr(m, lt->bias) : NULL;
	w.experts = ex;
	if (opts && MOEX_COVERS(opts, backend))
		mo.backend = opts->backend;
	if (opts && MOEX_COVERS(opts, threads))
		mo.threads = opts->threads;
	if (opts && MOEX_COVERS(opts, gpu_experts))
		mo.gpu_experts = opts->gpu_experts;
	ret = moex_moe_create(&lt->desc, &w, &mo, out);
	if (ret)
		moex__errf(err, errlen, 0, "layer: %s", strerror(-ret));
	free(ex);	/* moex_moe_create() copied the array */
	return ret;
}

/* ---- open and close ----------------------------------------------------- */

int moex_model_close(struct moex_model *m)
{
	MOEX_KEEP_ERRNO;
	uint32_t i;

	if (!m)
		return 0;
	for (i = 0; m->moe && i < m->count; i++)
		moex_moe_destroy(m->moe[i]);
	moex__pub_close(m->pub);
	free(m->moe);
	if (m->locked)
		moex_unlock_weights(m->dev, m->mem, m->mem_len, m->handle);
	if (m->mem)
		moex_free_pinnable(m->mem, m->mem_len);
	free(m->runs);
	moex__model_free(m->files);
	free(m);
	return 0;
}

/* The layers asked for, checked against the model. */
static int moex_model_range(struct moex_model *m,
			    const struct moex_model_opts *opts, char *err,
			    size_t errlen)
{
	const struct moex_model_config *c = &m->files->cfg;
	uint32_t first = MOEX_MODEL_ALL_LAYERS, last = MOEX_MODEL_ALL_LAYERS;

	if (c->first_k_dense_replace >= c->num_hidden_layers) {
		moex__errf(err, errlen, 0,
			 "the model has no MoE layers: all %u are dense (first_k_dense_replace %u)",
			 c->num_hidden_layers, c->first_k_dense_replace);
		return -EINVAL;
	}
	if (opts && MOEX_COVERS(opts, first_layer))
		first = opts->first_layer;
	if (opts && MOEX_COVERS(opts, last_layer))
		last = opts->last_layer;
	if (first == MOEX_MODEL_ALL_LAYERS)
		first = c->first_k_dense_replace;
	if (last == MOEX_MODEL_ALL_LAYERS)
		last = c->num_hidden_layers ? c->num_hidden_layers - 1 : 0;
	if (first < c->first_k_dense_replace || last >= c->num_hidden_layers ||
	    first > last) {
		moex__errf(err, errlen, 0,
			 "layers %u-%u: the model's MoE layers are %u-%u (num_hidden_layers %u, first_k_dense_replace %u)",
			 first, last, c->first_k_dense_replace,
			 c->num_hidden_layers ? c->num_hidden_layers - 1 : 0,
			 c->num_hidden_layers, c->first_k_dense_replace);
		return -EINVAL;
	}
	m->first = first;
	m->count = last - first + 1;
	return 0;
}

static uint64_t moex_dtype_size(uint32_t dtype)
{
	return dtype == MOEX_ST_F32 ? 4 : dtype == MOEX_ST_BF16 ? 2 : 1;
}

/*
 * Every tensor of the layers: lt[count] and the list t[*nt], sorted by
 * file and offset, after checking what would fail later (the shape, the
 * alignment): no byte is read for a load that cannot bind.
 */
static int moex_model_tensors(struct moex_model *m,
			      struct moex_layer_tensors *lt,
			      const struct moex_st_tensor ***tp, size_t *nt,
			      char *err, size_t errlen)
{
	const struct moex_st_tensor **t;
	size_t n = 0, cap = 0;
	uint32_t i, e, k;
	int ret;

	for (i = 0; i < m->count; i++) {
		ret = moex__model_layer(m->files, m->first + i, &lt[i], err,
					errlen);
		if (ret)
			return ret;
		/* before any byte is read: what the kernels would refuse */
		if (moex__moe_desc_check(&lt[i].desc))
			return moex__errf(err, errlen, -EINVAL,
					  "layer %u: the config's MoE shape is not one the kernels take (n_routed_experts %u, num_experts_per_tok %u, n_group %u, topk_group %u; Documentation/moe-kernels.rst, Shapes)",
					  m->first + i, lt[i].desc.n_experts,
					  lt[i].desc.topk, lt[i].desc.n_groups,
					  lt[i].desc.topk_groups);
		cap += 2 + 6 * ((size_t)lt[i].desc.n_experts + 1);
	}
	t = malloc(cap * sizeof(*t));
	if (!t)
		return -ENOMEM;
	for (i = 0; i < m->count; i++) {
		t[n++] = lt[i].gate;
		if (lt[i].bias)
			t[n++] = lt[i].bias;
		for (e = 0; e < lt[i].desc.n_experts; e++)
			for (k = 0; k < 6; k++)
				if (lt[i].experts[e][k])
					t[n++] = lt[i].experts[e][k];
		for (k = 0; k < 6; k++)
			if (lt[i].shared[k])
				t[n++] = lt[i].shared[k];
	}
	qsort(t, n, sizeof(*t), moex_tensor_cmp);
	for (i = 0; i < n; i++) {
		/*
		 * The plan keeps a tensor's offset modulo 4 KiB in memory: one
		 * at an offset that is not a multiple of its element size
		 * would be read by the kernels at a misaligned address.
		 */
		if (t[i]->offset % moex_dtype_size(t[i]->dtype)) {
			ret = moex__errf(err, errlen, -EINVAL,
					 "%s: data at file offset %llu is not aligned to its element size",
					 t[i]->name,
					 (unsigned long long)t[i]->offset);
			free(t);
			return ret;
		}
		m->info.bytes += t[i]->nbytes;
	}
	*tp = t;
	*nt = n;
	return 0;
}

int moex_model_open(const char *dir, const struct moex_model_opts *opts,
		    struct moex_model **out)
{
	MOEX_KEEP_ERRNO;
	const struct moex_st_tensor **t = NULL;
	struct moex_layer_tensors *lt = NULL;
	unsigned int qd = MOEX_QD_DEFAULT;
	char *err = NULL, scratch[8];
	size_t errlen = 0, nt = 0;
	struct moex_model *m;
	double t0;
	uint32_t i;
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (!dir || (opts && !moex__size_ok(opts->size)))
		return -EINVAL;
	if (opts && MOEX_COVERS(opts, errlen) && opts->errbuf && opts->errlen) {
		err = opts->errbuf;
		errlen = opts->errlen;
		err[0] = '\0';
	}
	if (!err) {	/* messages still need somewhere to go */
		err = scratch;
		errlen = sizeof(scratch);
	}
	if (opts && MOEX_COVERS(opts, queue_depth) && opts->queue_depth)
		qd = opts->queue_depth;
	if (qd > 4096)
		return -EINVAL;

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	m->info.size = sizeof(m->info);
	if (opts && MOEX_COVERS(opts, dev))
		m->dev = opts->dev;
	ret = moex__model_read(dir, &m->files, err, errlen);
	if (ret)
		goto fail;
	ret = moex_model_range(m, opts, err, errlen);
	if (ret)
		goto fail;
	lt = calloc(m->count, sizeof(*lt));
	m->moe = calloc(m->count, sizeof(*m->moe));
	if (!lt || !m->moe) {
		ret = -ENOMEM;
		goto fail;
	}
	ret = moex_model_tensors(m, lt, &t, &nt, err, errlen);
	if (!ret)
		ret = moex_plan(m, t, nt);
	if (ret)
		goto fail;

	ret = moex_alloc_pinnable(m->mem_len, true, (void **)&m->mem);
	if (ret) {
		moex__errf(err, errlen, 0, "%zu bytes of memory: %s", m->mem_len,
			 strerror(-ret));
		goto fail;
	}
	if (m->dev) {
		ret = moex_pin(m->dev, m->mem, m->mem_len, 0, &m->handle);
		m->info.pinned = !ret;
	} else {
		ret = moex_lock_weights(NULL, m->mem, m->mem_len, &m->handle);
	}
	if (ret) {
		moex__errf(err, errlen, 0, "%s %zu bytes: %s; %s",
			 m->dev ? "pinning" : "locking", m->mem_len,
			 moex_strerror(ret), m->dev ? moex_error_hint(ret) :
			 moex__lock_hint(ret));
		goto fail;
	}
	m->locked = true;

	t0 = moex_now();
	ret = moex_read_all(m, qd, opts, err, errlen);
	m->info.load_seconds = moex_now() - t0;
	if (ret)
		goto fail;

	for (i = 0; i < m->count && !ret; i++)
		ret = moex_bind_layer(m, &lt[i], opts, &m->moe[i], err, errlen);
	if (ret)
		goto fail;

	/* 6. publish the expert load for moexctl stats --watch */
	moex__pub_open(dir, m->first, m->count, lt[0].desc.n_experts, &m->pub);
	for (i = 0; m->pub && i < m->count; i++)
		if (moex__moe_publish(m->moe[i], moex__pub_slot(m->pub, i),
				      moex__pub_updates(m->pub)))
			break;

	m->info.first_layer = m->first;
	m->info.layers = m->count;
	m->info.n_layers = m->files->cfg.num_hidden_layers;
	m->info.desc = lt[0].desc;
	for (i = 0; i < m->nruns; i++)
		if (!i || m->runs[i].file != m->runs[i - 1].file)
			m->info.files++;
	for (i = 0; i < m->count; i++)
		free(lt[i].experts);
	free(lt);
	free(t);
	*out = m;
	return 0;

fail:
	for (i = 0; lt && i < m->count; i++)
		free(lt[i].experts);
	free(lt);
	free(t);
	moex_model_close(m);
	return ret;
}

int moex_model_info(const struct moex_model *m, struct moex_model_info *info)
{
	size_t n;

	if (!m || !info || !moex__size_ok(info->size))
		return -EINVAL;
	/* before the copy: it overwrites size with the library's */
	n = info->size < sizeof(m->info) ? info->size : sizeof(m->info);
	memcpy(info, &m->info, n);
	info->size = n;
	return 0;
}

struct moex_moe *moex_model_layer(struct moex_model *m, uint32_t layer)
{
	if (!m || layer < m->first || layer - m->first >= m->count)
		return NULL;
	return m->moe[layer - m->first];
}
