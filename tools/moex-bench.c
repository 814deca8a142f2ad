// SPDX-License-Identifier: GPL-2.0
/*
 * moex-bench: measured figures for moex, each against the anchor it is
 * judged by, both measured in the same run on the same machine.
 *
 *   moex-bench queue [--json] [--device PATH]
 *	operations/s of the uring_cmd NOP on the device at batch 1, 8 and 32,
 *	of IORING_OP_NOP (the io_uring floor) at the same batches, and of the
 *	NOP ioctl; GiB/s of the device's COPY against memcpy of the same
 *	sizes; at batch 32 also without the fixed file and on a ring without
 *	the task-run flags. Ratios: uring_nop_vs_ioring_nop_b32,
 *	uring_nop_vs_ioctl_b32, cpu_copy_vs_memcpy_1m.
 *   moex-bench pin [--json] [--device PATH] [--size SIZE]
 *	GiB/s of REGION_PIN and of unpin for SIZE (default 1G) of memory
 *	backed by 4 KiB pages and by transparent huge pages, against
 *	io_uring_register_buffers of the same memory. Ratios:
 *	pin_vs_ioring_register_4k, pin_vs_ioring_register_thp.
 *
 *   moex-bench load --model DIR [--json] [--device PATH]
 *	GB/s of moex_model_open() reading DIR's MoE layers (io_uring,
 *	O_DIRECT) against fio --direct=1 (dd iflag=direct without fio)
 *	reading the same files. Ratio: load_vs_direct_read.
 *   moex-bench moe [--json] [--threads N] [--isa ISA] [--quick] ...
 *	tokens/s and effective GB/s of the MoE layer on the CPU for
 *	DeepSeek-V2-Lite and V3 shapes, bf16 and fp8, against a STREAM-style
 *	triad measured in the same run (tools/bench-moe.c).
 *
 * Every figure is the median of 5 runs. With --json each figure is one
 * line: {"suite": ..., "name": ..., "value": ..., "unit": ...}.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench-moe.h"
#include "moex.h"

#define RUNS		5
#define NOP_OPS		20000	/* operations per NOP run */

bool bench_json;
const char *bench_suite;

double bench_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int bench_parse_int(const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	if (*s < '0' || *s > '9')
		return -1;
	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || *end || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

int bench_parse_positive(const char *s, double *out)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || *end || !(v > 0) || v > 1e300)
		return -1;
	*out = v;
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

double bench_median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return v[n / 2];
}

void bench_report(const char *name, double value, const char *unit)
{
	if (bench_json)
		printf("{\"suite\": \"%s\", \"name\": \"%s\", \"value\": %.6g, \"unit\": \"%s\"}\n",
		       bench_suite, name, value, unit);
	else
		printf("%-40s %14.4f %s\n", name, value, unit);
	fflush(stdout);
}

void bench_report_ratio(const char *name, double value, double target)
{
	if (bench_json)
		printf("{\"suite\": \"%s\", \"name\": \"%s\", \"value\": %.4f, \"unit\": \"ratio\", \"target\": %.2f}\n",
		       bench_suite, name, value, target);
	else
		printf("%-40s %14.4f ratio (target >= %.2f)\n", name, value,
		       target);
	fflush(stdout);
}

/* Short names for this file. */
#define now bench_now
#define median bench_median
#define report bench_report
#define report_ratio bench_report_ratio

static void *alloc_mem(size_t len, bool huge)
{
	void *p;

	if (moex_alloc_pinnable(len, huge, &p))
		return NULL;
	if (!huge)
		madvise(p, len, MADV_NOHUGEPAGE);
	memset(p, 0x5a, len);	/* fault every page in */
	return p;
}

/* ---- queue ---------------------------------------------------------------- */

/*
 * The NOP figures and where the time goes. IORING_OP_NOP is io_uring's own
 * floor. The variants at batch 32 take away one thing at a time: the fixed
 * file, and the ring's task-run flags (Documentation/moex.rst, "Where a
 * uring_cmd's time goes").
 */
enum ring_op {
	OP_IORING_NOP,		/* IORING_OP_NOP */
	OP_CMD_NOP,		/* uring_cmd MOEX_IOCTL_NOP */
};

/* Ring setups tried in order; RING_PLAIN: only what the structs need. */
#define RING_NEEDED	(IORING_SETUP_SQE128 | IORING_SETUP_CQE32)
#define RING_PLAIN	RING_NEEDED
static const unsigned int ring_ladder[] = {
	RING_NEEDED | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
		IORING_SETUP_DEFER_TASKRUN,
	RING_NEEDED | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER,
	RING_NEEDED | IORING_SETUP_COOP_TASKRUN,
	RING_PLAIN,
};

/*
 * A ring with the device as fixed file 0: the first setup of the ladder the
 * kernel takes (as libmoex builds its queues), or only RING_PLAIN.
 */
static int ring_open(struct io_uring *ring, int devfd, bool plain)
{
	struct io_uring_params p;
	size_t i = plain ? sizeof(ring_ladder) / sizeof(ring_ladder[0]) - 1 : 0;
	int ret = -EINVAL;

	for (; i < sizeof(ring_ladder) / sizeof(ring_ladder[0]) && ret == -EINVAL; i++) {
		memset(&p, 0, sizeof(p));
		p.flags = ring_ladder[i];
		ret = io_uring_queue_init_params(64, ring, &p);
	}
	if (ret)
		return ret;
	ret = io_uring_register_files(ring, &devfd, 1);
	if (ret)
		io_uring_queue_exit(ring);
	return ret;
}

/* ops/s of NOP_OPS operations of one kind at batch b. */
static double ring_op_rate(struct io_uring *ring, enum ring_op op,
			   unsigned int b, int devfd, bool fixed, int *err)
{
	struct io_uring_cqe *cqe;
	unsigned int done = 0, i, head, n;
	double t0 = now();
	int ret = 0;

	while (done < NOP_OPS) {
		for (i = 0; i < b; i++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

			if (op == OP_IORING_NOP) {
				io_uring_prep_nop(sqe);
				continue;
			}
			io_uring_prep_rw(IORING_OP_URING_CMD, sqe,
					 fixed ? 0 : devfd, NULL, 0, 0);
			if (fixed)
				sqe->flags |= IOSQE_FIXED_FILE;
			sqe->cmd_op = MOEX_IOCTL_NOP;
			memset(sqe->cmd, 0, sizeof(struct moex_uring_cmd));
		}
		ret = io_uring_submit_and_wait(ring, b);
		if (ret < 0)
			break;
		ret = 0;
		n = 0;
		io_uring_for_each_cqe(ring, head, cqe) {
			if (cqe->res < 0)	/* every command must have run */
				ret = cqe->res;
			n++;
		}
		io_uring_cq_advance(ring, n);
		done += n;
		if (ret < 0)
			break;
	}
	*err = ret < 0 ? ret : 0;
	if (*err)
		return 0;
	return done / (now() - t0);
}

/* Report the median of RUNS runs as name; 0 when a run failed. */
static double ring_op_figure(const char *name, bool plain, enum ring_op op,
			     unsigned int b, int devfd, bool fixed)
{
	struct io_uring ring;
	double v[RUNS], m;
	int r, err;

	err = ring_open(&ring, devfd, plain);
	if (!err) {
		for (r = 0; r < RUNS && !err; r++)
			v[r] = ring_op_rate(&ring, op, b, devfd, fixed, &err);
		io_uring_queue_exit(&ring);
	}
	if (err) {
		fprintf(stderr, "moex-bench: %s: %s; %s\n", name,
			moex_strerror(err), moex_error_hint(err));
		return 0;
	}
	m = median(v, RUNS);
	report(name, m, "ops/s");
	return m;
}

static double ioctl_nop_rate(int fd, int *err)
{
	struct moex_nop nop = { 0 };
	double t0 = now();
	unsigned int i;

	for (i = 0; i < NOP_OPS; i++) {
		if (ioctl(fd, MOEX_IOCTL_NOP, &nop) < 0) {
			*err = -errno;
			return 0;
		}
	}
	*err = 0;
	return NOP_OPS / (now() - t0);
}

static int bench_queue(const char *path)
{
	static const unsigned int batches[] = { 1, 8, 32 };
	static const size_t sizes[] = { 4096, 65536, 1 << 20, 16 << 20 };
	double v[RUNS], uring_b32 = 0, ioring_b32 = 0, ioctl_rate,
	       copy_1m = 0, memcpy_1m = 0;
	struct moex_device *dev;
	uint32_t hs, hd;
	char name[64];
	size_t i, r, max = 16 << 20;
	void *src, *dst;
	int fd, ret, err = 0;

	bench_suite = "queue";
	ret = moex_open(path, &dev);
	if (ret) {
		fprintf(stderr, "moex-bench: %s: %s; %s\n", path,
			moex_strerror(ret), moex_error_hint(ret));
		return 1;
	}
	fd = moex_device_fd(dev);
	for (i = 0; i < 3; i++) {
		double nop, cmd;

		snprintf(name, sizeof(name), "ioring_nop_b%u", batches[i]);
		nop = ring_op_figure(name, false, OP_IORING_NOP, batches[i], fd,
				     true);
		snprintf(name, sizeof(name), "uring_cmd_nop_b%u", batches[i]);
		cmd = ring_op_figure(name, false, OP_CMD_NOP, batches[i], fd,
				     true);
		if (batches[i] == 32) {
			ioring_b32 = nop;
			uring_b32 = cmd;
		}
	}
	ring_op_figure("uring_cmd_nop_b32_nofixed", false, OP_CMD_NOP, 32, fd,
		       false);
	ring_op_figure("ioring_nop_b32_plainring", true, OP_IORING_NOP, 32, fd,
		       true);
	ring_op_figure("uring_cmd_nop_b32_plainring", true, OP_CMD_NOP, 32, fd,
		       true);
	for (r = 0; r < RUNS; r++) {
		v[r] = ioctl_nop_rate(moex_device_fd(dev), &err);
		if (err)
			break;
	}
	ioctl_rate = err ? 0 : median(v, RUNS);
	if (ioctl_rate)
		report("ioctl_nop", ioctl_rate, "ops/s");

	src = alloc_mem(max, true);
	dst = alloc_mem(max, true);
	if (!src || !dst || moex_pin(dev, src, max, MOEX_PIN_READONLY, &hs) ||
	    moex_pin(dev, dst, max, 0, &hd)) {
		fprintf(stderr, "moex-bench: cannot pin 2 x 16 MiB\n");
		return 1;
	}
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		size_t len = sizes[i], reps = (64 << 20) / len;
		double cv[RUNS];
		size_t k;

		snprintf(name, sizeof(name), "copy_%zuk", len >> 10);
		for (r = 0; r < RUNS; r++) {
			double t0 = now();

			for (k = 0; k < reps && !ret; k++)
				ret = moex_copy(dev, hd, 0, hs, 0, len);
			if (ret) {
				/* a rate of copies that did not run is none */
				fprintf(stderr, "moex-bench: %s: %s; %s\n", name,
					moex_strerror(ret), moex_error_hint(ret));
				moex_unpin(dev, hs);
				moex_unpin(dev, hd);
				moex_close(dev);
				return 1;
			}
			v[r] = (double)len * reps / (now() - t0) / (1 << 30);
			t0 = now();
			for (k = 0; k < reps; k++) {
				memcpy(dst, src, len);
				__asm__ volatile("" : : "r"(dst) : "memory");
			}
			cv[r] = (double)len * reps / (now() - t0) / (1 << 30);
		}
		report(name, median(v, RUNS), "GiB/s");
		snprintf(name, sizeof(name), "memcpy_%zuk", len >> 10);
		report(name, median(cv, RUNS), "GiB/s");
		if (len == 1 << 20) {
			copy_1m = median(v, RUNS);
			memcpy_1m = median(cv, RUNS);
		}
	}
	moex_unpin(dev, hs);
	moex_unpin(dev, hd);

	if (uring_b32 && ioring_b32)
		report_ratio("uring_nop_vs_ioring_nop_b32", uring_b32 / ioring_b32,
			     0.40);
	if (uring_b32 && ioctl_rate)
		report_ratio("uring_nop_vs_ioctl_b32", uring_b32 / ioctl_rate, 1.5);

	report_ratio("cpu_copy_vs_memcpy_1m", copy_1m / memcpy_1m, 0.9);
	moex_close(dev);
	return uring_b32 ? 0 : 1;
}

/* ---- load ----------------------------------------------------------------- */

/*
 * The anchor: seconds to read the files with O_DIRECT, by fio (io_uring,
 * 1 MiB blocks, queue depth 32: what the loader does, so the anchor is the
 * disk's own speed) or, without fio, dd (4 MiB blocks, one at a time).
 * files is "a:b:c" (fio's list); < 0: failed.
 */
static double direct_read(const char *files, bool fio)
{
	char out[64] = "/tmp/moex-bench-fio.XXXXXX", oarg[80], *arg;
	size_t alen = strlen(files) + sizeof("--filename=");
	char *argv[16];
	double t0, t;
	pid_t pid;
	int st, n = 0, fd = -1;

	arg = malloc(alen);
	if (!arg)
		return -1;
	if (fio) {
		fd = mkstemp(out);
		if (fd < 0) {
			free(arg);
			return -1;
		}
		snprintf(oarg, sizeof(oarg), "--output=%s", out);
		snprintf(arg, alen, "--filename=%s", files);
		argv[n++] = "fio";
		argv[n++] = "--name=anchor";
		argv[n++] = arg;
		argv[n++] = "--rw=read";
		argv[n++] = "--bs=1M";
		argv[n++] = "--iodepth=32";
		argv[n++] = "--ioengine=io_uring";
		argv[n++] = "--direct=1";
		argv[n++] = "--output-format=terse";
		argv[n++] = "--terse-version=3";
		argv[n++] = oarg;
	} else {
		snprintf(arg, alen, "if=%s", files);
		argv[n++] = "dd";
		argv[n++] = arg;
		argv[n++] = "of=/dev/null";
		argv[n++] = "bs=4M";
		argv[n++] = "iflag=direct";
		argv[n++] = "status=none";
	}
	argv[n] = NULL;
	t0 = now();
	pid = fork();
	if (pid == 0) {
		execvp(argv[0], argv);
		_exit(127);
	}
	free(arg);
	if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) ||
	    WEXITSTATUS(st))
		t = -1;
	else
		t = now() - t0;
	if (fio) {
		/* fio's own clock, without its start-up: terse v3 fields 6
		 * and 9 are the KiB read and the milliseconds it took */
		FILE *f = fdopen(fd, "r");
		unsigned long long kib = 0, ms = 0;
		char line[4096];
		int i;

		t = -1;
		if (f && fgets(line, sizeof(line), f)) {
			char *p = line;

			for (i = 1; i < 6 && p; i++)
				p = strchr(p, ';') ? strchr(p, ';') + 1 : NULL;
			if (p && sscanf(p, "%llu;%*u;%*u;%llu", &kib, &ms) == 2 &&
			    ms)
				t = ms / 1e3;
		}
		if (f)
			fclose(f);
		else
			close(fd);
		unlink(out);
	}
	return t;
}

/* fio refuses an option's value longer than 4096 bytes */
#define FIO_NAMES_MAX	4000

/*
 * Seconds for fio (or dd) to read the ':'-separated files with O_DIRECT,
 * each run's own time summed: dd reads one file a run, fio as many as its
 * --filename takes. -1 when a run failed.
 */
static double anchor_read(const char *files, bool fio)
{
	char *chunk = malloc(strlen(files) + 1);
	const char *p = files;
	double sum = 0, t;
	size_t len;

	if (!chunk)
		return -1;
	while (*p) {
		len = strcspn(p, ":");
		while (fio && p[len] == ':' &&
		       len + 1 + strcspn(p + len + 1, ":") <= FIO_NAMES_MAX)
			len += 1 + strcspn(p + len + 1, ":");
		memcpy(chunk, p, len);
		chunk[len] = '\0';
		t = direct_read(chunk, fio);
		if (t < 0) {
			sum = -1;
			break;
		}
		sum += t;
		p += len + (p[len] == ':');
	}
	free(chunk);
	return sum;
}

static bool have(const char *prog)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "command -v %s >/dev/null 2>&1", prog);
	return system(cmd) == 0;
}

/*
 * GB/s of moex_model_open() reading a model's MoE layers (io_uring,
 * O_DIRECT, into locked memory) against fio (or dd) reading the same files
 * with O_DIRECT, both in this run. The anchor reads the files whole; the
 * loader reads the blocks around the MoE tensors: each figure is its own
 * bytes over its own time.
 */
static int bench_load(const char *path, const char *model)
{
	struct moex_model_info info = { .size = sizeof(info) };
	double ld[RUNS], dd[RUNS];
	struct moex_device *dev = NULL;
	char err[512], file[PATH_MAX], *files = NULL;
	size_t flen = 0;
	bool fio = have("fio");
	uint64_t total = 0;
	struct dirent *de;
	int r, ret = 1;
	DIR *d;

	bench_suite = "load";
	if (!model) {
		fprintf(stderr, "moex-bench: load needs --model DIR\n");
		return 2;
	}
	d = opendir(model);
	if (!d) {
		fprintf(stderr, "moex-bench: %s: %s\n", model, strerror(errno));
		return 1;
	}
	/* every shard (V3 has 163), ':'-separated as fio's --filename
	 * takes them */
	while ((de = readdir(d))) {
		size_t n = strlen(de->d_name), fl;
		struct stat st;
		char *more;

		if (n < 12 || strcmp(de->d_name + n - 12, ".safetensors"))
			continue;
		if ((size_t)snprintf(file, sizeof(file), "%s/%s", model,
				     de->d_name) >= sizeof(file) ||
		    strchr(file, ':')) {
			fprintf(stderr, "moex-bench: %s/%s: a path fio cannot take\n",
				model, de->d_name);
			goto out;
		}
		if (stat(file, &st)) {
			fprintf(stderr, "moex-bench: %s: %s\n", file,
				strerror(errno));
			goto out;
		}
		fl = strlen(file);
		more = realloc(files, flen + fl + 2);
		if (!more) {
			fprintf(stderr, "moex-bench: out of memory\n");
			goto out;
		}
		files = more;
		if (flen)
			files[flen++] = ':';
		memcpy(files + flen, file, fl + 1);
		flen += fl;
		total += (uint64_t)st.st_size;
	}
	closedir(d);
	d = NULL;
	if (!total) {
		fprintf(stderr, "moex-bench: %s: no .safetensors files\n", model);
		goto out;
	}
	for (r = 0; r < RUNS; r++) {
		dd[r] = anchor_read(files, fio);
		if (dd[r] < 0) {
			fprintf(stderr, "moex-bench: %s of %s's .safetensors files failed\n",
				fio ? "fio --direct=1" : "dd iflag=direct",
				model);
			goto out;
		}
	}
	if (moex_open(path, &dev))
		dev = NULL;	/* natively without the module: mlock */
	for (r = 0; r < RUNS; r++) {
		struct moex_model_opts o = {
			.size = sizeof(o), .dev = dev,
			.first_layer = MOEX_MODEL_ALL_LAYERS,
			.last_layer = MOEX_MODEL_ALL_LAYERS,
			.errbuf = err, .errlen = sizeof(err),
		};
		struct moex_model *m;

		if (moex_model_open(model, &o, &m)) {
			fprintf(stderr, "moex-bench: %s: %s\n", model, err);
			moex_close(dev);
			goto out;
		}
		moex_model_info(m, &info);
		ld[r] = info.read_bytes / info.load_seconds / 1e9;
		moex_model_close(m);
		dd[r] = total / dd[r] / 1e9;
	}
	moex_close(dev);
	report("model_load", median(ld, RUNS), "GB/s");
	report(fio ? "fio_direct_read" : "dd_direct_read", median(dd, RUNS),
	       "GB/s");
	report_ratio("load_vs_direct_read", median(ld, RUNS) / median(dd, RUNS),
		     0.9);
	ret = 0;
out:
	if (d)
		closedir(d);
	free(files);
	return ret;
}

/* ---- pin ------------------------------------------------------------------ */

static int bench_pin(const char *path, uint64_t size)
{
	struct moex_device *dev;
	double pin[RUNS], unpin[RUNS], reg[RUNS];
	char name[64];
	int huge, r, ret;

	bench_suite = "pin";
	ret = moex_open(path, &dev);
	if (ret) {
		fprintf(stderr, "moex-bench: %s: %s; %s\n", path,
			moex_strerror(ret), moex_error_hint(ret));
		return 1;
	}
	for (huge = 0; huge < 2; huge++) {
		const char *kind = huge ? "thp" : "4k";
		void *mem = alloc_mem(size, huge);
		struct io_uring ring;
		struct iovec iov = { mem, size };

		if (!mem || io_uring_queue_init(8, &ring, 0)) {
			fprintf(stderr, "moex-bench: no memory or ring\n");
			return 1;
		}
		for (r = 0; r < RUNS; r++) {
			uint32_t h;
			double t0 = now();

			ret = moex_pin(dev, mem, size, 0, &h);
			pin[r] = (double)size / (now() - t0) / (1 << 30);
			if (ret) {
				fprintf(stderr, "moex-bench: pin: %s; %s\n",
					moex_strerror(ret), moex_error_hint(ret));
				return 1;
			}
			t0 = now();
			moex_unpin(dev, h);
			unpin[r] = (double)size / (now() - t0) / (1 << 30);

			t0 = now();
			ret = io_uring_register_buffers(&ring, &iov, 1);
			reg[r] = (double)size / (now() - t0) / (1 << 30);
			if (ret) {
				fprintf(stderr, "moex-bench: register: %s\n",
					moex_strerror(ret));
				return 1;
			}
			io_uring_unregister_buffers(&ring);
		}
		snprintf(name, sizeof(name), "pin_%s", kind);
		report(name, median(pin, RUNS), "GiB/s");
		snprintf(name, sizeof(name), "unpin_%s", kind);
		report(name, median(unpin, RUNS), "GiB/s");
		snprintf(name, sizeof(name), "ioring_register_%s", kind);
		report(name, median(reg, RUNS), "GiB/s");
		snprintf(name, sizeof(name), "pin_vs_ioring_register_%s", kind);
		report_ratio(name, median(pin, RUNS) / median(reg, RUNS),
			     huge ? 2.0 : 1.0);
		io_uring_queue_exit(&ring);
		moex_free_pinnable(mem, size);
	}
	moex_close(dev);
	return 0;
}

static void usage(FILE *f)
{
	fputs("usage: moex-bench queue|pin|load [--json] [--device PATH] [--size SIZE]\n"
	      "                  [--model DIR]\n"
	      "       moex-bench moe [--help for its options]\n"
	      "  queue  uring_cmd NOP vs IORING_OP_NOP vs ioctl; COPY vs memcpy\n"
	      "  pin    REGION_PIN vs io_uring_register_buffers, 4 KiB and THP\n"
	      "  load   loading --model DIR's MoE layers vs fio/dd O_DIRECT reads\n"
	      "  moe    the MoE layer on the CPU vs a STREAM triad (native)\n",
	      f);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "device", required_argument, NULL, 'd' },
		{ "size", required_argument, NULL, 's' },
		{ "model", required_argument, NULL, 'm' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = "/dev/moex0", *model = NULL, *suite;
	uint64_t size = 1ull << 30;
	bool size_given = false;
	int c;

	/* moe has options of its own (tools/bench-moe.c) */
	if (argc > 1 && !strcmp(argv[1], "moe"))
		return bench_moe_main(argc - 1, argv + 1);
	while ((c = getopt_long(argc, argv, "jd:s:m:h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			bench_json = true;
			break;
		case 'd':
			path = optarg;
			break;
		case 'm':
			model = optarg;
			break;
		case 's':
			if (moex_parse_size(optarg, &size) || !size) {
				fprintf(stderr, "moex-bench: bad size '%s'\n", optarg);
				return 2;
			}
			size_given = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 2;
		}
	}
	if (optind != argc - 1) {
		usage(stderr);
		return 2;
	}
	suite = argv[optind];
	if (strcmp(suite, "queue") && strcmp(suite, "pin") &&
	    strcmp(suite, "load")) {
		usage(stderr);
		return 2;
	}
	/* an option the suite does not use would be ignored: refused */
	if ((size_given && strcmp(suite, "pin")) ||
	    (model && strcmp(suite, "load"))) {
		fprintf(stderr, "moex-bench: %s goes with %s only, not with %s\n",
			model && strcmp(suite, "load") ? "--model" : "--size",
			model && strcmp(suite, "load") ? "load" : "pin", suite);
		usage(stderr);
		return 2;
	}
	if (!strcmp(suite, "queue"))
		return bench_queue(path);
	if (!strcmp(suite, "pin"))
		return bench_pin(path, size);
	return bench_load(path, model);
}
