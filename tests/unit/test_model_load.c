// SPDX-License-Identifier: GPL-2.0
/*
 * The model loader's reads (runtime/src/model.c, section 4) when they go
 * wrong: this file builds model.c into itself, so that the results the
 * reader sees can be replaced (MOEX_READ_RESULT) and io_uring refused
 * (MOEX_READ_RING_INIT), and loads models mkmodel wrote:
 *   - a read that fails after others of its batch completed ends the load
 *     with its error (it hung: SQEs prepared in that batch were counted
 *     in flight but never submitted);
 *   - O_DIRECT refused at read time on every read in flight: each goes
 *     again buffered, and the weights are the file's bytes;
 *   - io_uring refused: pread(2) reads the same bytes, and errors still
 *     end the load;
 *   - what would fail once the layers bind (a tensor at a misaligned
 *     offset, a MoE shape the kernels refuse) fails before any read.
 * Every load that could hang runs in a child with an alarm.
 */
#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

struct moex_read;
struct moex_reader;
static int fault(const struct moex_reader *rd, const struct moex_read *s,
		 int res);
static int ring_init(unsigned int qd, struct io_uring *ring);
/* rd: the reader, in scope where model.c takes a result */
#define MOEX_READ_RESULT(s, res) fault(rd, (s), (res))
#define MOEX_READ_RING_INIT(qd, ring) ring_init((qd), (ring))
/* model.c's opens, to play a filesystem that refuses O_DIRECT at open */
static int test_open(const char *path, int flags);
#define open(path, flags) test_open((path), (flags))
#include "../../runtime/src/model.c"
#undef open

#include "harness.h"
#include "moek.h"
#include "runbin.h"

/*
 * A moex device on /dev/null for the loads that pin: INFO, REGION_PIN
 * (handle 7) and REGION_UNPIN answered here, in place of libc's ioctl().
 */
static struct {
	bool on;
	unsigned int pins, unpins;
	uint32_t unpinned;
} pin_drv;

int ioctl(int fd, unsigned long cmd, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, cmd);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (!pin_drv.on || _IOC_TYPE(cmd) != MOEX_IOC_MAGIC)
		return (int)syscall(SYS_ioctl, fd, cmd, arg);
	switch (cmd) {
	case MOEX_IOCTL_INFO:
		memset(arg, 0, sizeof(struct moex_info));
		((struct moex_info *)arg)->abi_version = MOEX_ABI_VERSION;
		return 0;
	case MOEX_IOCTL_REGION_PIN:
		pin_drv.pins++;
		((struct moex_region_pin *)arg)->handle = 7;
		return 0;
	case MOEX_IOCTL_REGION_UNPIN:
		pin_drv.unpins++;
		pin_drv.unpinned = ((struct moex_region_unpin *)arg)->handle;
		return 0;
	default:
		errno = ENOTTY;
		return -1;
	}
}

#if !defined(MKMODEL)
#error "build with -DMKMODEL='\"/path/to/mkmodel\"'"
#endif

/* ---- what the reader sees ---- */

static enum { F_NONE, F_EIO_NTH, F_EINVAL_DIRECT, F_SHORT, F_EOF_NTH }
	fault_mode;
static int fault_nth, fault_seen, fault_einvals;
static bool refuse_ring;

static int fault(const struct moex_reader *rd, const struct moex_read *s,
		 int res)
{
	fault_seen++;
	if (fault_mode == F_EIO_NTH && fault_seen == fault_nth)
		return -EIO;
	if (fault_mode == F_EOF_NTH && fault_seen == fault_nth)
		return 0;	/* the file ended before the piece */
	if (fault_mode == F_EINVAL_DIRECT && s->direct) {
		fault_einvals++;
		return -EINVAL;
	}
	/* a short read: the bytes past it are not the file's */
	if (fault_mode == F_SHORT && res > 8192) {
		int n = (res / 2) & ~4095;

		memset((char *)moex_read_dest(rd, s) + n, 0xa5,
		       (size_t)(res - n));
		return n;
	}
	return res;
}

static bool refuse_odirect_open;

static int test_open(const char *path, int flags)
{
	if (refuse_odirect_open && (flags & O_DIRECT)) {
		errno = EINVAL;
		return -1;
	}
	return open(path, flags);
}

static int ring_init(unsigned int qd, struct io_uring *ring)
{
	return refuse_ring ? -EPERM : io_uring_queue_init(qd, ring, 0);
}

static int progress_calls;

static void progress(void *ctx, uint64_t done, uint64_t total)
{
	(void)ctx;
	(void)done;
	(void)total;
	progress_calls++;
}

static void faults(int mode, int nth, bool no_ring)
{
	fault_mode = mode;
	fault_nth = nth;
	fault_seen = fault_einvals = 0;
	refuse_ring = no_ring;
}

/* ---- models ---- */

/* A 4-layer model of about 25 MB in base/NAME, in SHARDS files ("1": no
 * index), 1 MiB pieces aplenty. */
static int make_model_shards(const char *base, const char *name,
			     const char *shards, char *dir, size_t len)
{
	struct run r;
	const char *args[] = { "--quiet", "--force", "--preset", "tiny",
		"--layers", "4", "--first-dense", "0", "--hidden", "512",
		"--inter", "256", "--experts", "8", "--shards", shards,
		"--align", "4096", dir, NULL };

	snprintf(dir, len, "%s/%s", base, name);
	if (run_bin(&r, MKMODEL, NULL, args) || r.status)
		return -1;
	return 0;
}

static int make_model(const char *base, const char *name, char *dir,
		      size_t len)
{
	return make_model_shards(base, name, "2", dir, len);
}

/* This process's scratch directories: [1] on tmpfs where there is one. */
static char scratch_dirs[2][64];

static const char *scratch(bool tmpfs)
{
	char *d = scratch_dirs[tmpfs];

	if (*d)
		return d;
	snprintf(d, sizeof(scratch_dirs[0]), "%s/moex-load-XXXXXX",
		 tmpfs && access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	if (!mkdtemp(d))
		*d = '\0';
	return *d ? d : NULL;
}

/* Does dir's filesystem take O_DIRECT? */
static bool odirect_ok(const char *dir)
{
	char path[192];
	int fd;

	snprintf(path, sizeof(path), "%s/config.json", dir);
	fd = open(path, O_RDONLY | O_DIRECT);
	if (fd >= 0)
		close(fd);
	return fd >= 0;
}

/* The weights the load placed are the file's bytes, run by run. */
static bool same_bytes(const struct moex_model *m)
{
	bool ok = true;
	uint32_t i;

	for (i = 0; ok && i < m->nruns; i++) {
		const struct moex_run *r = &m->runs[i];
		uint64_t fsize = m->files->sizes[r->file];
		uint64_t end = r->end < fsize ? r->end : fsize;
		size_t n = (size_t)(end - r->start);
		char *buf = malloc(n);
		int fd = open(m->files->paths[r->file], O_RDONLY);

		ok = buf && fd >= 0 &&
		     pread(fd, buf, n, (off_t)r->start) == (ssize_t)n &&
		     !memcmp(buf, m->mem + r->mem, n);
		if (fd >= 0)
			close(fd);
		free(buf);
	}
	return ok;
}

/*
 * Load dir with queue depth qd in a child that has 20 s. Returns the
 * child's report: 0 loaded with the file's bytes (*uring, *direct: from
 * the info), 1 failed with -EIO and a message naming the read, 5 failed
 * with -EINVAL before any read, 2 anything else, 3 a hang (SIGALRM), 4
 * another death; msg: the error message.
 */
static int load_in_child(const char *dir, unsigned int qd, int *uring,
			 int *direct, char *msg, size_t msglen)
{
	int p[2], st;
	pid_t pid;
	ssize_t n;

	*msg = '\0';
	if (pipe(p))
		return 4;
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		struct moex_model_opts o = { .size = sizeof(o) };
		struct moex_model_info info = { .size = sizeof(info) };
		struct moex_model *m;
		char err[512] = "";
		int ret, code = 2;

		close(p[0]);
		/* libmoex's one-time note on mlock(2): once per child */
		if (freopen("/dev/null", "w", stderr) == NULL)
			_exit(2);
		alarm(20);
		o.first_layer = o.last_layer = MOEX_MODEL_ALL_LAYERS;
		o.queue_depth = qd;
		o.progress = progress;
		o.errbuf = err;
		o.errlen = sizeof(err);
		ret = moex_model_open(dir, &o, &m);
		if (!ret) {
			moex_model_info(m, &info);
			code = same_bytes(m) ? 0 : 2;
			snprintf(err, sizeof(err), "%u %u", info.uring,
				 info.direct);
			moex_model_close(m);
		} else if (ret == -EIO && strstr(err, "read at")) {
			code = 1;
		} else if (ret == -EINVAL && !progress_calls) {
			code = 5;
		}
		if (write(p[1], err, strlen(err) + 1) < 0)
			code = 2;
		_exit(code);
	}
	close(p[1]);
	n = pid > 0 ? read(p[0], msg, msglen - 1) : -1;
	msg[n > 0 ? n : 0] = '\0';
	close(p[0]);
	if (pid < 0 || waitpid(pid, &st, 0) != pid)
		return 4;
	if (WIFSIGNALED(st))
		return WTERMSIG(st) == SIGALRM ? 3 : 4;
	if (WEXITSTATUS(st) == 0 && sscanf(msg, "%d %d", uring, direct) != 2)
		return 2;
	return WEXITSTATUS(st);
}

/* Remove a model once its test is done: tmpfs is memory. */
static void rm_dir(const char *dir)
{
	char cmd[192];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		fprintf(stderr, "cannot remove %s\n", dir);
}

/* ---- the cases ---- */

/*
 * tmpfs: buffered reads complete while they are submitted, so a batch of
 * CQEs comes back together, and a piece that completes well queues the
 * next before the failing one is seen.
 */
TEST(error_after_completions_of_its_batch)
{
	const char *base = scratch(true);
	char dir[128], msg[512];
	int nth, got, uring, direct;
	unsigned int qd;

	CHECK(base && make_model(base, "eio", dir, sizeof(dir)) == 0);
	for (qd = 2; qd <= 8; qd *= 2) {
		for (nth = 1; nth <= 6; nth++) {
			faults(F_EIO_NTH, nth, false);
			got = load_in_child(dir, qd, &uring, &direct, msg,
					    sizeof(msg));
			CHECK_MSG(got == 1, "queue depth %u, completion %d "
				  "fails: %s (%s)", qd, nth,
				  got == 3 ? "the load hung" :
				  got == 0 ? "the load succeeded" :
				  "not the read's error", msg);
		}
	}
	rm_dir(dir);
}

/*
 * A filesystem that refuses O_DIRECT only at read time: every read in
 * flight gets -EINVAL, not just the first.
 */
TEST(odirect_refused_at_read_time)
{
	const char *base = scratch(false);
	char dir[128], msg[512];
	int got, uring = -1, direct = -1;

	CHECK(base && make_model(base, "einval", dir, sizeof(dir)) == 0);
	if (!odirect_ok(dir))
		SKIP("%s refuses O_DIRECT at open", base);
	faults(F_EINVAL_DIRECT, 0, false);
	got = load_in_child(dir, 8, &uring, &direct, msg, sizeof(msg));
	CHECK_MSG(got == 0, "load: %d (%s)", got, msg);
	CHECK_INT(uring, 1);
	CHECK_INT(direct, 0);
	rm_dir(dir);
}

TEST(pread_where_io_uring_is_refused)
{
	const char *base = scratch(true);
	char dir[128], msg[512];
	int got, uring = -1, direct = -1;

	CHECK(base && make_model(base, "pread", dir, sizeof(dir)) == 0);
	faults(F_NONE, 0, true);
	got = load_in_child(dir, 8, &uring, &direct, msg, sizeof(msg));
	CHECK_MSG(got == 0, "load: %d (%s)", got, msg);
	CHECK_INT(uring, 0);
	faults(F_EIO_NTH, 3, true);
	got = load_in_child(dir, 8, &uring, &direct, msg, sizeof(msg));
	CHECK_MSG(got == 1, "a failing pread: %d (%s)", got, msg);
	rm_dir(dir);
}

/* O_DIRECT refused at read time without io_uring too. */
TEST(pread_odirect_refused_at_read_time)
{
	const char *base = scratch(false);
	char dir[128], msg[512];
	int got, uring = -1, direct = -1;

	CHECK(base && make_model(base, "pread-einval", dir, sizeof(dir)) == 0);
	if (!odirect_ok(dir))
		SKIP("%s refuses O_DIRECT at open", base);
	faults(F_EINVAL_DIRECT, 0, true);
	got = load_in_child(dir, 8, &uring, &direct, msg, sizeof(msg));
	CHECK_MSG(got == 0, "load: %d (%s)", got, msg);
	CHECK_INT(uring, 0);
	CHECK_INT(direct, 0);
	rm_dir(dir);
}

/*
 * In the single shard of dir, move tensor name's data by one byte (into
 * the gap --align 4096 leaves after it), keeping the header's length.
 */
static int shift_tensor(const char *dir, const char *name)
{
	char path[192], *hdr = NULL, *p, *q, num[2][32];
	unsigned long long a, b;
	uint64_t hlen;
	int fd, ret = -1;

	snprintf(path, sizeof(path), "%s/model.safetensors", dir);
	fd = open(path, O_RDWR);
	if (fd < 0 || pread(fd, &hlen, 8, 0) != 8 || hlen > (1u << 24))
		goto out;
	hdr = calloc(1, hlen + 1);
	if (!hdr || pread(fd, hdr, hlen, 8) != (ssize_t)hlen)
		goto out;
	p = strstr(hdr, name);
	p = p ? strstr(p, "\"data_offsets\"") : NULL;
	p = p ? strchr(p, '[') : NULL;
	if (!p || sscanf(p, "[%llu,%llu]", &a, &b) != 2)
		goto out;
	q = strchr(p, ']');
	snprintf(num[0], sizeof(num[0]), "[%llu,%llu]", a, b);
	snprintf(num[1], sizeof(num[1]), "[%llu,%llu]", a + 1, b + 1);
	if (!q || (size_t)(q + 1 - p) != strlen(num[0]) ||
	    strlen(num[0]) != strlen(num[1]))
		goto out;
	memcpy(p, num[1], strlen(num[1]));
	if (pwrite(fd, hdr, hlen, 8) == (ssize_t)hlen)
		ret = 0;
out:
	free(hdr);
	if (fd >= 0)
		close(fd);
	return ret;
}

/* A router gate or an expert's matrix (bf16) at an odd offset: refused
 * before any read. */
TEST(misaligned_tensor_fails_before_reading)
{
	static const char *const names[] = {
		"model.layers.0.mlp.gate.weight\"",
		"model.layers.1.mlp.experts.3.down_proj.weight\"",
	};
	/* sizes that are not multiples of 4 KiB: room after each */
	const char *base = scratch(true);
	char dir[128], msg[512];
	int got, uring, direct;
	size_t i;

	for (i = 0; i < 2; i++) {
		struct run r;
		const char *args[] = { "--quiet", "--force", "--preset",
			"tiny", "--layers", "2", "--first-dense", "0",
			"--hidden", "200", "--inter", "72", "--experts", "8",
			"--shards", "1", "--align", "4096", dir, NULL };

		snprintf(dir, sizeof(dir), "%s/misaligned%zu", base, i);
		CHECK(run_bin(&r, MKMODEL, NULL, args) == 0 && !r.status);
		CHECK_MSG(shift_tensor(dir, names[i]) == 0, "cannot move %s",
			  names[i]);
		faults(F_NONE, 0, false);
		got = load_in_child(dir, 8, &uring, &direct, msg,
				    sizeof(msg));
		CHECK_MSG(got == 5, "%s one byte on: %d (%s)", names[i], got,
			  msg);
		CHECK_HAS(msg, "not aligned to its element size");
		rm_dir(dir);
	}
}

/* A config the kernels refuse (groups of one expert): before any read. */
TEST(kernel_refused_shape_fails_before_reading)
{
	const char *base = scratch(true);
	char dir[128], path[192], msg[512], *cfg, *p, *q;
	int got, uring, direct;
	FILE *f;
	long n;

	CHECK(base && make_model(base, "groups", dir, sizeof(dir)) == 0);
	snprintf(path, sizeof(path), "%s/config.json", dir);
	f = fopen(path, "r+");
	CHECK(f);
	cfg = calloc(1, 1 << 16);
	n = cfg ? (long)fread(cfg, 1, (1 << 16) - 1, f) : -1;
	/*
	 * 8 experts in 4 groups of 2, 2 kept, become 8 groups of 1, all
	 * kept: a config that reads well, which the kernels refuse
	 */
	p = n > 0 ? strstr(cfg, "\"n_group\": 4,") : NULL;
	if (p)
		p[strlen("\"n_group\": ")] = '8';
	q = n > 0 ? strstr(cfg, "\"topk_group\": 2") : NULL;
	if (q)
		q[strlen("\"topk_group\": ")] = '8';
	if (p && q) {
		rewind(f);
		fwrite(cfg, 1, (size_t)n, f);
	}
	fclose(f);
	free(cfg);
	CHECK_MSG(p && q, "no \"n_group\": 4 or \"topk_group\": 2 in %s",
		  path);
	faults(F_NONE, 0, false);
	got = load_in_child(dir, 8, &uring, &direct, msg, sizeof(msg));
	CHECK_MSG(got == 5, "n_group 8 of 8 experts: %d (%s)", got, msg);
	CHECK_HAS(msg, "not one the kernels take");
	rm_dir(dir);
}

/* Short reads (half of a piece, block-aligned) go on where they stopped. */
TEST(short_reads_continue)
{
	const char *base = scratch(true);
	char dir[128], msg[512];
	int got, uring = -1, direct = -1;

	CHECK(base && make_model(base, "short", dir, sizeof(dir)) == 0);
	faults(F_SHORT, 0, false);
	got = load_in_child(dir, 4, &uring, &direct, msg, sizeof(msg));
	CHECK_MSG(got == 0, "load: %d (%s)", got, msg);
	CHECK_INT(uring, 1);
	faults(F_SHORT, 0, true);
	got = load_in_child(dir, 4, &uring, &direct, msg, sizeof(msg));
	CHECK_MSG(got == 0, "pread: %d (%s)", got, msg);
	CHECK_INT(uring, 0);
	rm_dir(dir);
}

/* A file that ends before its tensors do (read 0 bytes early): -EIO. */
TEST(file_ending_early_fails_the_load)
{
	struct moex_model_opts o = { .size = sizeof(o) };
	const char *base = scratch(true);
	struct moex_model *m = NULL;
	char dir[128], err[512] = "";

	CHECK(base && make_model(base, "eof", dir, sizeof(dir)) == 0);
	o.first_layer = o.last_layer = MOEX_MODEL_ALL_LAYERS;
	o.errbuf = err;
	o.errlen = sizeof(err);
	for (int no_ring = 0; no_ring < 2; no_ring++) {
		int ret;

		faults(F_EOF_NTH, 3 - no_ring, no_ring);
		ret = moex_model_open(dir, &o, &m);
		faults(F_NONE, 0, false);
		if (!ret)
			moex_model_close(m);	/* the next tests' pool */
		CHECK_MSG(ret == -EIO, "%s: %d (%s)",
			  no_ring ? "pread" : "io_uring", ret, err);
		CHECK_HAS(err, "ends early at");
	}
	rm_dir(dir);
}

static uint64_t last_done, last_total;

static void progress_last(void *ctx, uint64_t done, uint64_t total)
{
	(void)ctx;
	if (done < last_done)
		last_total = UINT64_MAX;	/* went back: wrong */
	else if (last_total != UINT64_MAX)
		last_total = total;
	last_done = done;
}

/* Tensor t's bytes where the load put it are the file's. */
static bool tensor_in_place(const struct moex_model *m,
			    const struct moex_st_tensor *t)
{
	char *buf;
	bool ok;
	int fd;

	if (!t)
		return true;
	buf = malloc(t->nbytes ? t->nbytes : 1);
	fd = open(m->files->paths[t->file], O_RDONLY | O_CLOEXEC);
	ok = buf && fd >= 0 &&
	     pread(fd, buf, t->nbytes, (off_t)t->offset) == (ssize_t)t->nbytes &&
	     !memcmp(buf, moex_tensor_addr(m, t), t->nbytes);
	if (fd >= 0)
		close(fd);
	free(buf);
	return ok;
}

/*
 * The plan and what the load of dir says of itself: every tensor of every
 * layer where its bytes are (each run's first one too), the runs
 * block-aligned and back to back in memory, no two runs of a file closer
 * than the gap read through, read_bytes the runs' bytes within their
 * files and the progress ending there, O_DIRECT kept where the
 * filesystem takes it.
 */
static void check_load(const char *dir)
{
	struct moex_model_opts o = { .size = sizeof(o) };
	struct moex_model_info info = { .size = sizeof(info) };
	struct moex_layer_tensors lt;
	struct moex_model *m = NULL;
	uint64_t mem = 0, bytes = 0, used = 0;
	char err[512] = "";
	uint32_t i, l, e, k, files = 0;
	int ret;

	faults(F_NONE, 0, false);
	o.first_layer = o.last_layer = MOEX_MODEL_ALL_LAYERS;
	o.progress = progress_last;
	o.errbuf = err;
	o.errlen = sizeof(err);
	last_done = last_total = 0;
	ret = moex_model_open(dir, &o, &m);
	CHECK_MSG(ret == 0, "%s: open: %d (%s)", dir, ret, err);
	CHECK_INT(moex_model_info(m, &info), 0);
	CHECK(m->nruns >= 1);
	for (i = 0; i < m->nruns; i++) {
		const struct moex_run *r = &m->runs[i];
		uint64_t fsize = m->files->sizes[r->file];

		CHECK_MSG(r->start % MOEX_BLOCK == 0 && r->end % MOEX_BLOCK == 0,
			  "%s: run %u [%llu, %llu)", dir, i,
			  (unsigned long long)r->start,
			  (unsigned long long)r->end);
		CHECK_U64(r->mem, mem);
		mem += r->end - r->start;
		bytes += (r->end < fsize ? r->end : fsize) - r->start;
		files += !i || r->file != m->runs[i - 1].file;
		if (i && r->file == m->runs[i - 1].file)
			CHECK_MSG(r->start > m->runs[i - 1].end + MOEX_RUN_GAP -
				  2 * MOEX_BLOCK, "runs %u and %u: a gap of %llu",
				  i - 1, i, (unsigned long long)(r->start -
				  m->runs[i - 1].end));
	}
	CHECK_U64(m->mem_len, mem);
	CHECK_U64(info.read_bytes, bytes);
	CHECK_U64(last_done, bytes);
	CHECK_U64(last_total, bytes);
	CHECK_INT(info.files, files);
	if (odirect_ok(dir))
		CHECK_INT(info.direct, files);
	for (l = 0; l < m->count; l++) {
		ret = moex__model_layer(m->files, m->first + l, &lt, err,
					sizeof(err));
		CHECK_MSG(ret == 0, "layer %u: %s", m->first + l, err);
		ret = tensor_in_place(m, lt.gate) && tensor_in_place(m, lt.bias);
		used += lt.gate->nbytes + (lt.bias ? lt.bias->nbytes : 0);
		for (e = 0; ret && e < lt.desc.n_experts; e++)
			for (k = 0; k < 6; k++) {
				ret = ret && tensor_in_place(m, lt.experts[e][k]);
				used += lt.experts[e][k] ?
					lt.experts[e][k]->nbytes : 0;
			}
		for (k = 0; k < 6; k++) {
			ret = ret && tensor_in_place(m, lt.shared[k]);
			used += lt.shared[k] ? lt.shared[k]->nbytes : 0;
		}
		free(lt.experts);
		CHECK_MSG(ret, "%s: layer %u: a tensor is not where its bytes are",
			  dir, m->first + l);
	}
	CHECK_U64(info.bytes, used);	/* the layers' tensors, no gaps */
	moex_model_close(m);
}

/* Tensors aligned to 4 KiB in their files, and packed at odd sizes. */
TEST(load_places_every_tensor)
{
	const char *base = scratch(false);
	char dir[128];
	struct run r;
	const char *args[] = { "--quiet", "--force", "--preset", "tiny",
		"--layers", "3", "--first-dense", "1", "--hidden", "200",
		"--inter", "72", "--experts", "8", "--shards", "2",
		"--align", "0", dir, NULL };

	CHECK(base && make_model(base, "place", dir, sizeof(dir)) == 0);
	check_load(dir);
	rm_dir(dir);
	if (h_result == H_FAIL)
		return;
	snprintf(dir, sizeof(dir), "%s/packed", base);
	CHECK(run_bin(&r, MKMODEL, NULL, args) == 0 && !r.status);
	check_load(dir);
	rm_dir(dir);
}

/*
 * O_DIRECT refused, at open (tmpfs before Linux 6.6 and others) or at
 * read time for every read in flight: the load reads the same bytes
 * buffered and leaves no descriptor open behind it.
 */
TEST(odirect_refused_in_process)
{
	struct moex_model_opts o = { .size = sizeof(o) };
	struct moex_model_info info = { .size = sizeof(info) };
	const char *base = scratch(false);
	struct moex_model *m = NULL;
	char dir[128], err[512] = "";
	int fd, ret, round;

	CHECK(base && make_model(base, "direct", dir, sizeof(dir)) == 0);
	o.first_layer = o.last_layer = MOEX_MODEL_ALL_LAYERS;
	o.queue_depth = 8;
	o.errbuf = err;
	o.errlen = sizeof(err);
	for (round = 0; round < 2; round++) {
		if (round == 0) {
			faults(F_NONE, 0, false);
			refuse_odirect_open = true;
		} else {
			if (!odirect_ok(dir))
				break;
			faults(F_EINVAL_DIRECT, 0, false);
		}
		fd = next_fd();
		ret = moex_model_open(dir, &o, &m);
		refuse_odirect_open = false;
		CHECK_MSG(ret == 0, "round %d: %d (%s)", round, ret, err);
		CHECK_INT(moex_model_info(m, &info), 0);
		CHECK_INT(info.direct, 0);
		CHECK(same_bytes(m));
		moex_model_close(m);
		CHECK_MSG(next_fd() == fd, "round %d: descriptor %d left open",
			  round, fd);
	}
	faults(F_NONE, 0, false);
	rm_dir(dir);
}

/* model.h's roles: gate_proj is w1, down_proj w2, up_proj w3. */
static struct moek_ffn ffn_of(const struct moex_model *m,
			      const struct moex_st_tensor *const t[6])
{
	const void *p[6] = { NULL };
	int k;

	for (k = 0; k < 6; k++)
		p[k] = t[k] ? moex_tensor_addr(m, t[k]) : NULL;
	return (struct moek_ffn){ p[0], p[1], p[2], p[3], p[4], p[5] };
}

/*
 * Each layer runs on the model's tensors in their roles: its reference
 * run is moek_ref_layer() on weights the test takes from the files'
 * tensors itself (moex-run --check compares two runs of the same bound
 * layer, so swapped or dropped weights went unseen).
 */
static void check_bind(const char *dir)
{
	struct moex_model_opts o = { .size = sizeof(o) };
	struct moex_layer_tensors lt;
	struct moex_model *m = NULL;
	struct moek_ffn *kx = NULL;
	float *x = NULL, *y = NULL, *r = NULL;
	uint32_t *counts = NULL, *rcounts = NULL;
	char err[512] = "";
	size_t ntok = 5, i;
	uint32_t l, e;
	int ret;

	faults(F_NONE, 0, false);
	o.first_layer = o.last_layer = MOEX_MODEL_ALL_LAYERS;
	o.errbuf = err;
	o.errlen = sizeof(err);
	ret = moex_model_open(dir, &o, &m);
	CHECK_MSG(ret == 0, "open: %d (%s)", ret, err);
	for (l = m->first; l < m->first + m->count; l++) {
		struct moek_shape s;
		struct moek_weights kw;

		ret = moex__model_layer(m->files, l, &lt, err, sizeof(err));
		if (ret)
			break;
		s = (struct moek_shape){
			.dim = lt.desc.dim, .inter = lt.desc.inter,
			.n_experts = lt.desc.n_experts, .topk = lt.desc.topk,
			.n_groups = lt.desc.n_groups,
			.topk_groups = lt.desc.topk_groups,
			.n_shared = lt.desc.n_shared, .score = lt.desc.scoring,
			.norm_topk = lt.desc.norm_topk,
			.route_scale = lt.desc.route_scale,
			.wtype = lt.desc.weight_dtype,
			.gtype = lt.desc.gate_dtype,
		};
		free(kx);
		free(x);
		free(y);
		free(r);
		free(counts);
		free(rcounts);
		kx = calloc(s.n_experts, sizeof(*kx));
		x = calloc(ntok * s.dim, sizeof(*x));
		y = calloc(ntok * s.dim, sizeof(*y));
		r = calloc(ntok * s.dim, sizeof(*r));
		counts = calloc(s.n_experts, sizeof(*counts));
		rcounts = calloc(s.n_experts, sizeof(*rcounts));
		if (!kx || !x || !y || !r || !counts || !rcounts) {
			free(lt.experts);
			ret = -ENOMEM;
			break;
		}
		for (e = 0; e < s.n_experts; e++)
			kx[e] = ffn_of(m, lt.experts[e]);
		kw = (struct moek_weights){
			moex_tensor_addr(m, lt.gate),
			lt.bias ? moex_tensor_addr(m, lt.bias) : NULL,
			kx, ffn_of(m, lt.shared),
		};
		free(lt.experts);
		for (i = 0; i < ntok * s.dim; i++)
			x[i] = (float)((i * 7919) % 201) / 100.0f - 1.0f;
		ret = moex_moe_run_reference(moex_model_layer(m, l), x, ntok,
					     y, counts);
		if (!ret)
			ret = moek_ref_layer(&s, &kw, x, ntok, r, rcounts);
		if (!ret && (memcmp(y, r, ntok * s.dim * sizeof(*y)) ||
			     memcmp(counts, rcounts,
				    s.n_experts * sizeof(*counts))))
			ret = 1;
		if (ret)
			break;
	}
	moex_model_close(m);
	free(kx);
	free(x);
	free(y);
	free(r);
	free(counts);
	free(rcounts);
	CHECK_MSG(ret == 0, "%s: layer %u: %d (%s)", dir, l, ret,
		  ret == 1 ? "not the model's tensors in their roles" : err);
}

/* A BF16 model and an FP8 one (with its scales). */
TEST(layers_bind_the_model_tensors)
{
	const char *base = scratch(true);
	char dir[128];
	struct run r;
	const char *args[] = { "--quiet", "--force", "--preset", "tiny",
		"--dtype", "fp8", "--layers", "2", "--hidden", "200",
		"--inter", "136", "--experts", "8", "--shards", "1", dir, NULL };

	CHECK(base && make_model(base, "bind", dir, sizeof(dir)) == 0);
	check_bind(dir);
	rm_dir(dir);
	if (h_result == H_FAIL)
		return;
	snprintf(dir, sizeof(dir), "%s/bind-fp8", base);
	CHECK(run_bin(&r, MKMODEL, NULL, args) == 0 && !r.status);
	check_bind(dir);
	rm_dir(dir);
}

/*
 * VmLck of this process in kB (what mlock(2) holds), or -1; -1 under
 * ASan, whose mlock() does nothing.
 */
static long vm_locked_kb(void)
{
	char line[256];
	long kb = -1;
	FILE *f = NULL;

#ifndef __SANITIZE_ADDRESS__
	f = fopen("/proc/self/status", "re");
#endif
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "VmLck:", 6))
			kb = strtol(line + 6, NULL, 10);
	if (f)
		fclose(f);
	return kb;
}

static char open_err[512];

static int open_layers(const char *dir, uint32_t first, uint32_t last,
		       unsigned int qd, struct moex_model **m)
{
	struct moex_model_opts o = { .size = sizeof(o) };

	o.errbuf = open_err;
	o.errlen = sizeof(open_err);
	o.first_layer = first;
	o.last_layer = last;
	o.queue_depth = qd;
	*m = NULL;
	return moex_model_open(dir, &o, m);
}

/*
 * The model API around a load of layers 0-3 (all MoE): the layer range
 * asked for and the layers it gives, the queue depth's limit, the info
 * cut to an older caller's size, the CPU backend's threads passed on, the
 * mlock(2) held while the model is open (close's munmap would drop it
 * even without the munlock), and the pin of a device undone at close.
 */
TEST(model_api)
{
	struct moex_model_opts o = { .size = sizeof(o) };
	struct moex_model_info info;
	const char *base = scratch(true);
	struct moex_device *dev = NULL;
	struct moex_model *m = NULL;
	char dir[128], err[512];
	long locked;

	CHECK(base && make_model(base, "api", dir, sizeof(dir)) == 0);
	faults(F_NONE, 0, false);
	CHECK_INT(open_layers(dir, 2, 1, 0, &m), -EINVAL);
	CHECK(!m);
	CHECK_INT(open_layers(dir, 0, 4, 0, &m), -EINVAL);
	CHECK_HAS(open_err, "layers 0-4: the model's MoE layers are 0-3");
	/* a model whose layers are all dense has none to load (it said
	 * "layers 2-1: the model's MoE layers are 2-1") */
	{
		char dense[128];
		struct run r;
		const char *args[] = { "--quiet", "--force", "--preset",
			"tiny", "--layers", "2", "--first-dense", "2", dense,
			NULL };

		snprintf(dense, sizeof(dense), "%s/all-dense", base);
		CHECK(run_bin(&r, MKMODEL, NULL, args) == 0 && !r.status);
		CHECK_INT(open_layers(dense, MOEX_MODEL_ALL_LAYERS,
				      MOEX_MODEL_ALL_LAYERS, 0, &m), -EINVAL);
		CHECK(!m);
		CHECK_HAS(open_err, "no MoE layers: all 2 are dense");
	}
	CHECK_INT(open_layers(dir, 1, 3, 4097, &m), -EINVAL);
	o.size = 1;
	CHECK_INT(moex_model_open(dir, &o, &m), -EINVAL);
	o.size = sizeof(o);

	locked = vm_locked_kb();
	CHECK_INT(open_layers(dir, 1, 3, 4096, &m), 0);
	CHECK(!moex_model_layer(m, 0));
	CHECK(moex_model_layer(m, 1) && moex_model_layer(m, 3));
	CHECK(!moex_model_layer(m, 4));
	memset(&info, 0x5a, sizeof(info));
	info.size = offsetof(struct moex_model_info, files);
	CHECK_INT(moex_model_info(m, &info), 0);
	CHECK_U64(info.size, offsetof(struct moex_model_info, files));
	CHECK_INT(info.first_layer, 1);
	CHECK_INT(info.layers, 3);
	CHECK_INT(info.n_layers, 4);
	CHECK_INT(info.files, 0x5a5a5a5a);	/* past the caller's size */
	info.size = sizeof(info) + 8;	/* a newer caller's: cut to ours */
	CHECK_INT(moex_model_info(m, &info), 0);
	CHECK_U64(info.size, sizeof(info));
	CHECK_INT(info.pinned, 0);
	if (locked >= 0)
		CHECK_MSG(vm_locked_kb() > locked, "VmLck %ld kB, was %ld",
			  vm_locked_kb(), locked);
	moex_model_close(m);
	if (locked >= 0)
		CHECK_MSG(vm_locked_kb() == locked,
			  "VmLck %ld kB after close, was %ld", vm_locked_kb(),
			  locked);

	/* the CPU backend's limit of threads: the layers' error */
	o.first_layer = o.last_layer = MOEX_MODEL_ALL_LAYERS;
	o.threads = 1025;
	o.errbuf = err;
	o.errlen = sizeof(err);
	CHECK_INT(moex_model_open(dir, &o, &m), -EINVAL);
	CHECK_HAS(err, "layer:");

	/* pinned on a device, unpinned at close */
	memset(&pin_drv, 0, sizeof(pin_drv));
	pin_drv.on = true;
	CHECK_INT(moex_open("/dev/null", &dev), 0);
	o.threads = 0;
	o.dev = dev;
	CHECK_INT(moex_model_open(dir, &o, &m), 0);
	info.size = sizeof(info);
	CHECK_INT(moex_model_info(m, &info), 0);
	CHECK_INT(info.pinned, 1);
	CHECK_INT(pin_drv.pins, 1);
	CHECK_INT(pin_drv.unpins, 0);
	moex_model_close(m);
	CHECK_INT(pin_drv.unpins, 1);
	CHECK_INT(pin_drv.unpinned, 7);
	moex_close(dev);
	pin_drv.on = false;
	rm_dir(dir);

	/*
	 * A model of one file opens with nothing in errbuf: the missing
	 * index's "missing" stayed there, and any later failure without a
	 * message of its own gave it as its cause.
	 */
	CHECK(make_model_shards(base, "one", "1", dir, sizeof(dir)) == 0);
	o.dev = NULL;
	strcpy(err, "stale");
	CHECK_INT(moex_model_open(dir, &o, &m), 0);
	CHECK_STR(err, "");
	moex_model_close(m);
	rm_dir(dir);
}

static void rm_scratch(void)
{
	char cmd[160];
	int i;

	for (i = 0; i < 2; i++) {
		if (!*scratch_dirs[i])
			continue;
		snprintf(cmd, sizeof(cmd), "rm -rf '%s'", scratch_dirs[i]);
		if (system(cmd))
			fprintf(stderr, "cannot remove %s\n", scratch_dirs[i]);
	}
}

int main(int argc, char **argv)
{
	static const struct h_test tests[] = {
		T(error_after_completions_of_its_batch),
		T(odirect_refused_at_read_time),
		T(pread_where_io_uring_is_refused),
		T(pread_odirect_refused_at_read_time),
		T(misaligned_tensor_fails_before_reading),
		T(kernel_refused_shape_fails_before_reading),
		T(short_reads_continue),
		T(file_ending_early_fails_the_load),
		T(load_places_every_tensor),
		T(model_api),
		T(odirect_refused_in_process),
		T(layers_bind_the_model_tensors),
	};
	int r = h_run(tests, sizeof(tests) / sizeof(tests[0]), argc, argv);

	rm_scratch();
	return r;
}
