// SPDX-License-Identifier: GPL-2.0
/*
 * The main job end to end without a device: mkmodel writes sharded
 * DeepSeek-style models, moex-run loads them (io_uring, O_DIRECT, mlock)
 * and checks every layer against the scalar reference. Also --input and
 * --output, and the errors an operator meets first.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "harness.h"
#include "runbin.h"

#if !defined(MKMODEL) || !defined(MOEX_RUN) || !defined(MOEX_BENCH) || \
	!defined(MOEX_BENCH_FAKE)
#error "build with -DMKMODEL='\"/path/to/mkmodel\"' -DMOEX_RUN=... -DMOEX_BENCH=... -DMOEX_BENCH_FAKE=..."
#endif

static char dir[64];

/* A fresh model in dir/NAME: mkmodel ARGS... */
#define MODEL(r, name, ...)						\
	RUN_BIN(r, MKMODEL, NULL, "--quiet", __VA_ARGS__, path(name))

#define RUN(r, ...) RUN_BIN(r, MOEX_RUN, NULL, __VA_ARGS__)

static const char *path(const char *name)
{
	static char p[4][128];
	static int i;

	i = (i + 1) % 4;
	snprintf(p[i], sizeof(p[i]), "%s/%s", dir, name);
	return p[i];
}

static long file_size(const char *p)
{
	struct stat st;

	return stat(p, &st) ? -1 : (long)st.st_size;
}

static float *read_f32(const char *p, size_t *n)
{
	long len = file_size(p);
	FILE *f = fopen(p, "rb");
	float *v;

	if (!f || len <= 0) {
		if (f)
			fclose(f);
		return NULL;
	}
	v = malloc((size_t)len);
	if (v && fread(v, 1, (size_t)len, f) != (size_t)len) {
		free(v);
		v = NULL;
	}
	fclose(f);
	*n = (size_t)len / sizeof(float);
	return v;
}

/* Whether files a and b hold the same bytes. */
static bool same_bytes(const char *a, const char *b)
{
	size_t na = 0, nb = 0;
	float *x = read_f32(a, &na), *y = read_f32(b, &nb);
	bool same = x && y && na == nb && !memcmp(x, y, na * sizeof(*x));

	free(x);
	free(y);
	return same;
}

/* How many times s holds what. */
static int count_of(const char *s, const char *what)
{
	int n = 0;

	while ((s = strstr(s, what))) {
		n++;
		s += strlen(what);
	}
	return n;
}

TEST(sharded_bf16_round_trip)
{
	unsigned int files = 0;
	const char *p;
	struct run r;

	MODEL(&r, "bf16", "--preset", "tiny", "--shards", "3");
	CHECK_INT(r.status, 0);
	RUN(&r, "--model", path("bf16"), "--no-device", "--check", "--quiet",
	    "--tokens", "50", "--batch", "7");
	CHECK_MSG(r.status == 0, "status %d: %s%s", r.status, r.out, r.err);
	/* the MoE layers' tensors lie in more than one shard */
	p = strstr(r.out, " from ");
	CHECK(p && sscanf(p, " from %u files", &files) == 1);
	CHECK_MSG(files >= 2, "read from %u files", files);
	CHECK_HAS(r.out, "check layer 1:");
	CHECK_HAS(r.out, "check layer 2:");
	CHECK_HAS(r.out, "routing identical");
	CHECK_HAS(r.out, "check: passed");
	CHECK_HAS(r.err, "not pinned by moex");	/* said once, no device */
}

TEST(fp8_round_trip)
{
	struct run r;

	MODEL(&r, "fp8", "--preset", "tiny", "--dtype", "fp8");
	CHECK_INT(r.status, 0);
	RUN(&r, "--model", path("fp8"), "--no-device", "--check", "--quiet");
	CHECK_MSG(r.status == 0, "status %d: %s%s", r.status, r.out, r.err);
	CHECK_HAS(r.out, "fp8");
	CHECK_HAS(r.out, "check: passed");
}

TEST(layer_range_and_expert_load)
{
	struct run r;
	const char *p;
	unsigned int n = 0, v, sum = 0, max = 0;
	double imb = 0;
	int used;

	MODEL(&r, "layers", "--preset", "tiny", "--layers", "4");
	CHECK_INT(r.status, 0);
	RUN(&r, "--model", path("layers"), "--no-device", "--layers", "2-3",
	    "--tokens", "10");
	CHECK_MSG(r.status == 0, "status %d: %s", r.status, r.err);
	CHECK_HAS(r.out, "layers 2-3 of 4");
	CHECK(strstr(r.out, "layer 1 expert") == NULL);
	/* layer 2's expert load: 16 counts summing to tokens x top-k */
	p = strstr(r.out, "layer 2 expert load");
	CHECK(p);
	CHECK(sscanf(p, "layer 2 expert load (tokens per expert; max/mean %lf)",
		     &imb) == 1);
	p = strchr(p, ':');
	CHECK(p);
	p++;
	while (n < 16 && sscanf(p, "%u%n", &v, &used) == 1) {
		sum += v;
		if (v > max)
			max = v;
		p += used;
		n++;
	}
	CHECK_INT(n, 16);
	CHECK_INT(sum, 10 * 4);
	/* the busiest expert's tokens over the mean, as printed (%.2f) */
	CHECK_MSG(fabs(imb - max * 16.0 / sum) < 0.006, "max/mean %.2f, max %u",
		  imb, max);
	RUN(&r, "--model", path("layers"), "--no-device", "--layers", "0");
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.err, "MoE layers are 1-3");
	/* the largest values moex-run(1) gives are taken */
	RUN(&r, "--model", path("layers"), "--no-device", "--layers", "3",
	    "--tokens", "8", "--batch", "65536", "--seed", "4294967295");
	CHECK_MSG(r.status == 0, "status %d: %s", r.status, r.err);
	CHECK_HAS(r.out, "ran 8 tokens through 1 layers on cpu");
	CHECK_HAS(r.out, "in batches of 65536:");
}

TEST(input_and_output_files)
{
	const size_t dim = 256, ntok = 9;
	size_t n1 = 0, n2 = 0, i;
	float *x, *y1 = NULL, *y2 = NULL;
	const float zero = 0;
	struct run r;
	FILE *f;
	double num = 0, den = 0;

	MODEL(&r, "io", "--preset", "tiny");
	CHECK_INT(r.status, 0);
	x = calloc(ntok * dim, sizeof(*x));
	CHECK(x);
	for (i = 0; i < ntok * dim; i++)
		x[i] = sinf((float)i * 0.37f);
	f = fopen(path("x.f32"), "wb");
	CHECK(f);
	CHECK_INT(fwrite(x, sizeof(*x), ntok * dim, f), ntok * dim);
	fclose(f);
	free(x);

	RUN(&r, "--model", path("io"), "--no-device", "--input",
	    path("x.f32"), "--output", path("y1.f32"), "--batch", "1");
	CHECK_MSG(r.status == 0, "status %d: %s", r.status, r.err);
	RUN(&r, "--model", path("io"), "--no-device", "--input",
	    path("x.f32"), "--output", path("y2.f32"), "--batch", "64");
	CHECK_INT(r.status, 0);
	y1 = read_f32(path("y1.f32"), &n1);
	y2 = read_f32(path("y2.f32"), &n2);
	CHECK(y1 && y2);
	CHECK_INT(n1, ntok * dim);
	CHECK_INT(n2, ntok * dim);
	/* the batch size changes the grouping, not the answer */
	for (i = 0; i < n1; i++) {
		num += ((double)y1[i] - y2[i]) * ((double)y1[i] - y2[i]);
		den += (double)y1[i] * y1[i];
	}
	free(y1);
	free(y2);
	CHECK(den > 0);
	CHECK_MSG(sqrt(num / den) < 1e-5, "batch 1 vs 64: %g", sqrt(num / den));

	/* --output is the first selected layer's: layers 1 and 2 give
	 * layer 1's output, as layer 1 alone does, and not layer 2's */
	RUN(&r, "--model", path("io"), "--no-device", "--input",
	    path("x.f32"), "--output", path("y3.f32"), "--layers", "1");
	CHECK_INT(r.status, 0);
	RUN(&r, "--model", path("io"), "--no-device", "--input",
	    path("x.f32"), "--output", path("y4.f32"), "--layers", "2");
	CHECK_INT(r.status, 0);
	CHECK_MSG(same_bytes(path("y2.f32"), path("y3.f32")),
		  "layers 1-2 did not write layer 1's output");
	CHECK(!same_bytes(path("y2.f32"), path("y4.f32")));

	/* --seed picks the random hidden states: the same seed the same
	 * outputs, another seed others (1 is the default) */
	RUN(&r, "--model", path("io"), "--no-device", "--tokens", "9",
	    "--seed", "2", "--output", path("s2a.f32"));
	CHECK_INT(r.status, 0);
	RUN(&r, "--model", path("io"), "--no-device", "--tokens", "9",
	    "--seed", "2", "--output", path("s2b.f32"));
	CHECK_INT(r.status, 0);
	RUN(&r, "--model", path("io"), "--no-device", "--tokens", "9",
	    "--output", path("s1a.f32"));
	CHECK_INT(r.status, 0);
	RUN(&r, "--model", path("io"), "--no-device", "--tokens", "9",
	    "--seed", "1", "--output", path("s1b.f32"));
	CHECK_INT(r.status, 0);
	CHECK(same_bytes(path("s2a.f32"), path("s2b.f32")));
	CHECK(same_bytes(path("s1a.f32"), path("s1b.f32")));
	CHECK_MSG(!same_bytes(path("s2a.f32"), path("s1a.f32")),
		  "--seed 2 gave --seed 1's hidden states");

	/* files that are not whole tokens: 3 bytes, and half a token */
	f = fopen(path("half.f32"), "wb");
	CHECK(f);
	for (i = 0; i < dim / 2; i++)
		CHECK_INT(fwrite(&zero, sizeof(zero), 1, f), 1);
	fclose(f);
	RUN(&r, "--model", path("io"), "--no-device", "--input",
	    path("half.f32"));
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.err, "512 bytes is not a whole number of tokens of 256 f32");
	f = fopen(path("bad.f32"), "wb");
	CHECK(f);
	fputs("abc", f);
	fclose(f);
	RUN(&r, "--model", path("io"), "--no-device", "--input",
	    path("bad.f32"));
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.err, "not a whole number of tokens");
	/* one line saying why, not a second one about memory */
	CHECK_MSG(count_of(r.err, "moex-run: ") == 1 &&
		  !strstr(r.err, "out of memory"), "stderr: %s", r.err);
	RUN(&r, "--model", path("io"), "--no-device", "--input",
	    path("missing.f32"));
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.err, "missing.f32: No such file or directory\n");
	CHECK_MSG(count_of(r.err, "moex-run: ") == 1 &&
		  !strstr(r.err, "out of memory"), "stderr: %s", r.err);
}

TEST(damaged_models_are_named)
{
	struct run r;
	char shard[128];
	FILE *f;

	MODEL(&r, "cut", "--preset", "tiny", "--shards", "2");
	CHECK_INT(r.status, 0);
	snprintf(shard, sizeof(shard), "%s/model-00002-of-00002.safetensors",
		 path("cut"));
	CHECK(truncate(shard, file_size(shard) / 2) == 0);
	RUN(&r, "--model", path("cut"), "--no-device");
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.err, "model-00002-of-00002.safetensors");

	MODEL(&r, "gone", "--preset", "tiny");
	CHECK_INT(r.status, 0);
	snprintf(shard, sizeof(shard), "%s/config.json", path("gone"));
	f = fopen(shard, "w");
	CHECK(f);
	fputs("{\"hidden_size\": 256}", f);
	fclose(f);
	RUN(&r, "--model", path("gone"), "--no-device");
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.err, "config.json");

	RUN(&r, "--model", path("nowhere"), "--no-device");
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.err, "nowhere");
}

/*
 * A --device that cannot be opened fails the run, naming it: only the
 * default device may be missing (then weights are mlock()ed).
 */
TEST(named_device_must_open)
{
	struct run r;

	MODEL(&r, "dev", "--preset", "tiny");
	CHECK_INT(r.status, 0);
	RUN(&r, "--model", path("dev"), "--device", "/nonexistent/moex9");
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.err, "moex-run: /nonexistent/moex9: No such file or directory");
	CHECK_STR(r.out, "");
}

/*
 * The run line's figures over the same time: at batch 1 every layer run
 * reads the gate, the bias, the shared expert and top-k routed experts,
 * so GB/s over tokens/s per layer is that byte count (tiny: 991296 bytes
 * of bf16); tokens/s counts every layer's tokens (4 MoE layers here).
 */
TEST(run_line_rates_agree)
{
	const double active = 16 * 256 * 2 + 16 * 4 + (1 + 4) * 3 * 128 * 256 * 2;
	double tps = 0, gbs = 0;
	unsigned int n = 0, layers = 0;
	const char *p;
	struct run r;

	MODEL(&r, "rates", "--preset", "tiny", "--layers", "5");
	CHECK_INT(r.status, 0);
	RUN(&r, "--model", path("rates"), "--no-device", "--tokens", "256",
	    "--batch", "1", "--quiet");
	CHECK_MSG(r.status == 0, "status %d: %s", r.status, r.err);
	p = strstr(r.out, "\nran ");
	CHECK_MSG(p && sscanf(p, "\nran %u tokens through %u layers on %*s in batches of 1: %lf tokens/s per layer, %lf GB/s",
			      &n, &layers, &tps, &gbs) == 4, "%s", r.out);
	CHECK_INT(n, 256);
	CHECK_INT(layers, 4);
	if (gbs < 0.1)
		SKIP("%.2f GB/s: too few digits to compare", gbs);
	CHECK_MSG(fabs(gbs * 1e9 / tps / active - 1) < 0.25,
		  "%.2f GB/s over %.1f tokens/s is %.0f bytes a layer run, not %.0f",
		  gbs, tps, gbs * 1e9 / tps, active);
}

/*
 * The child's seccomp filter: io_uring_setup(2) fails with EPERM, as under
 * container runtimes' default profiles; everything else runs.
 */
static void refuse_io_uring(void)
{
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS,
			 offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | EPERM),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]),
				   .filter = f };

	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
	    prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog))
		_exit(126);
}

TEST(loads_where_io_uring_is_refused)
{
	struct run r;

	MODEL(&r, "nouring", "--preset", "tiny", "--shards", "2");
	CHECK_INT(r.status, 0);
	run_bin_child_hook = refuse_io_uring;
	RUN(&r, "--model", path("nouring"), "--no-device", "--check",
	    "--tokens", "20");
	run_bin_child_hook = NULL;
	CHECK_MSG(r.status == 0, "status %d: %s%s", r.status, r.out, r.err);
	CHECK_HAS(r.out, "pread(2): io_uring refused by this host");
	CHECK_HAS(r.out, "check: passed");
}

/*
 * run_bin_child_hook: no memory may be locked (RLIMIT_MEMLOCK 0, and
 * CAP_IPC_LOCK dropped from the bounding set, so that root does not get
 * it back at exec). Exit 126 when the hook cannot, so the test skips.
 */
static void no_memlock(void)
{
	struct rlimit rl = { 0, 0 };

	if ((prctl(PR_CAPBSET_DROP, CAP_IPC_LOCK, 0, 0, 0) && geteuid() == 0) ||
	    setrlimit(RLIMIT_MEMLOCK, &rl))
		_exit(126);
}

/*
 * Without a device the weights are mlock()ed: over the memlock limit,
 * moex-run says so with the fix for mlock(), not moex.ko's max_pinned_mb
 * (which binds only pins by the module).
 */
TEST(lock_over_the_memlock_limit_names_its_fix)
{
	struct run r;

	MODEL(&r, "nolock", "--preset", "tiny");
	CHECK_INT(r.status, 0);
	run_bin_child_hook = no_memlock;
	RUN(&r, "--model", path("nolock"), "--no-device", "--tokens", "1");
	run_bin_child_hook = NULL;
	if (r.status == 126)
		SKIP("cannot drop CAP_IPC_LOCK and RLIMIT_MEMLOCK here");
	if (r.status == 0)
		SKIP("mlock(2) locked the weights with RLIMIT_MEMLOCK 0 (ASan's does nothing)");
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.err, "locking ");
	CHECK_HAS(r.err, "Cannot allocate memory; memlock limit reached: ");
	CHECK_HAS(r.err, "ulimit -l");
	CHECK_HAS(r.err, "CAP_IPC_LOCK");
	CHECK_MSG(!strstr(r.err, "max_pinned_mb"), "%s", r.err);
}

/* The figures of moex-bench --json output: name, value and unit. */
struct figure {
	char name[96], unit[16];
	double value;
};

static int figures(const char *out, struct figure *f, int max)
{
	const char *p = out;
	int n = 0;

	while (n < max && (p = strstr(p, "{\"suite\": "))) {
		if (sscanf(p, "{\"suite\": \"%*[^\"]\", \"name\": \"%95[^\"]\", \"value\": %lf, \"unit\": \"%15[^\"]\"",
			   f[n].name, &f[n].value, f[n].unit) == 3)
			n++;
		p++;
	}
	return n;
}

/* The value of the figure name with unit, or -1. */
static double figure(const struct figure *f, int n, const char *name,
		     const char *unit)
{
	int i;

	for (i = 0; i < n; i++)
		if (!strcmp(f[i].name, name))
			return strcmp(f[i].unit, unit) ? -1 : f[i].value;
	return -1;
}

/*
 * moex-bench load's anchor reads every shard, however many: 120 here (V3
 * has 163), whose names are more than fio takes in one --filename value
 * (4096 bytes; a fixed 4200-byte list dropped shards before).
 */
TEST(bench_load_reads_every_shard)
{
	char shard[192];
	struct figure f[8];
	double ld, dd, ratio;
	struct run r;
	int n;
	void *buf;
	int fd;

	MODEL(&r, "many", "--layers", "40", "--shards", "120");
	CHECK_INT(r.status, 0);
	snprintf(shard, sizeof(shard), "%s/model-00120-of-00120.safetensors",
		 path("many"));
	fd = open(shard, O_RDONLY | O_DIRECT);
	CHECK(fd >= 0 && !posix_memalign(&buf, 4096, 4096));
	if (pread(fd, buf, 4096, 0) < 0) {
		close(fd);
		free(buf);
		SKIP("no O_DIRECT reads in %s's file system", dir);
	}
	close(fd);
	free(buf);
	RUN_BIN(&r, MOEX_BENCH, NULL, "load", "--json", "--model",
		path("many"));
	CHECK_INT(r.status, 0);
	CHECK_HAS(r.out, "\"load_vs_direct_read\"");
	/* the ratio: the loader's GB/s over the anchor's, as printed */
	n = figures(r.out, f, 8);
	CHECK_INT(n, 3);
	ld = figure(f, n, "model_load", "GB/s");
	dd = figure(f, n, strstr(r.out, "fio_direct_read") ? "fio_direct_read" :
		    "dd_direct_read", "GB/s");
	ratio = figure(f, n, "load_vs_direct_read", "ratio");
	CHECK_MSG(ld > 0 && dd > 0 && ratio > 0, "%s", r.out);
	CHECK_MSG(fabs(ratio - ld / dd) <= 1e-4 + 1e-3 * ld / dd,
		  "load_vs_direct_read %g, model_load %g over direct_read %g",
		  ratio, ld, dd);
}

/*
 * moex-bench moe's values are checked whole, before anything runs:
 * --threads "abc" silently meant the default and 2000 failed as "cannot
 * create the CPU context"; --reps "5x" and --mem-gb "1x" were taken.
 */
TEST(bench_moe_usage_errors)
{
	static const char *const bad[][2] = {
		{ "--threads", "abc" }, { "--threads", "2000" },
		{ "--threads", "0" }, { "--threads", " 4" },
		{ "--threads", "1025" }, { "--isa", "sse2" },
		{ "--reps", "5x" }, { "--reps", "65" }, { "--reps", "0" },
		{ "--mem-gb", "1x" }, { "--mem-gb", "0" },
		{ "--mem-gb", "nan" },
	};
	struct run r;
	size_t i;

	/* --quick and little memory first: a value taken by mistake runs a
	 * short bench (and the check fails), not the full one */
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		RUN_BIN(&r, MOEX_BENCH, NULL, "moe", "--quick", "--mem-gb",
			"0.05", "--reps", "1", bad[i][0], bad[i][1]);
		CHECK_MSG(r.status == 2, "%s %s: status %d", bad[i][0],
			  bad[i][1], r.status);
		CHECK_HAS(r.err, "usage: moex-bench moe");
	}
	/* --backend cpu is the CPU suite, as moex-run takes it; another
	 * value is a bad value, not an unknown option */
	RUN_BIN(&r, MOEX_BENCH, NULL, "moe", "--backend", "cpu", "--help");
	CHECK_MSG(r.status == 0, "--backend cpu: status %d: %s", r.status,
		  r.err);
	CHECK_HAS(r.out, "usage: moex-bench moe");
	RUN_BIN(&r, MOEX_BENCH, NULL, "moe", "--backend", "tpu");
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "moex-bench moe: bad value 'tpu' for --backend (cpu or hip)");
	/* the GPU suite's own parser: a usage error before any GPU work */
	RUN_BIN(&r, MOEX_BENCH, NULL, "moe", "--backend", "hip", "--reps",
		"3x");
	CHECK_INT(r.status, 2);
	RUN_BIN(&r, MOEX_BENCH, NULL, "moe", "--backend", "hip", "--mem-gb",
		"-1");
	CHECK_INT(r.status, 2);
	RUN_BIN(&r, MOEX_BENCH, NULL, "moe", "--backend", "hip", "--backend",
		"tpu");
	CHECK_INT(r.status, 2);
	/* at most 64 runs a figure: the GPU suite keeps 64 times */
	RUN_BIN(&r, MOEX_BENCH, NULL, "moe", "--backend", "hip", "--reps",
		"65");
	CHECK_INT(r.status, 2);
	RUN_BIN(&r, MOEX_BENCH, NULL, "moe", "--backend", "hip", "--reps",
		"0");
	CHECK_INT(r.status, 2);
}

/*
 * moex-bench's suites and the options each takes: --model went with load
 * and --size with pin, and another suite ignored them without a word
 * (queue --model DIR measured the queue and said nothing of DIR).
 */
TEST(bench_suite_options)
{
	struct run r;

	RUN_BIN(&r, MOEX_BENCH, NULL, "queue", "--model", dir);
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "moex-bench: --model goes with load only, not with queue\n");
	RUN_BIN(&r, MOEX_BENCH, NULL, "--model", dir, "pin");
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "--model goes with load only, not with pin\n");
	RUN_BIN(&r, MOEX_BENCH, NULL, "load", "--model", dir, "--size", "1G");
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "--size goes with pin only, not with load\n");
	RUN_BIN(&r, MOEX_BENCH, NULL, "queue", "--size", "4k");
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "--size goes with pin only, not with queue\n");
	/* the values each suite takes */
	RUN_BIN(&r, MOEX_BENCH, NULL, "pin", "--size", "0");
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "moex-bench: bad size '0'\n");
	RUN_BIN(&r, MOEX_BENCH, NULL, "load");
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "load needs --model DIR");
	/* a --model that is no model: exit 1, saying why */
	RUN_BIN(&r, MOEX_BENCH, NULL, "load", "--model", path("nowhere"));
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.err, "nowhere: No such file or directory\n");
	CHECK(mkdir(path("empty"), 0755) == 0 || errno == EEXIST);
	RUN_BIN(&r, MOEX_BENCH, NULL, "load", "--model", path("empty"));
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.err, "empty: no .safetensors files\n");
	CHECK_STR(r.out, "");
	/* one suite, a known one */
	RUN_BIN(&r, MOEX_BENCH, NULL, "queue", "pin");
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "usage: moex-bench");
	RUN_BIN(&r, MOEX_BENCH, NULL, "frob");
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "usage: moex-bench");
	RUN_BIN(&r, MOEX_BENCH, NULL, "--help");
	CHECK_INT(r.status, 0);
	CHECK_HAS(r.out, "usage: moex-bench");
}

/*
 * moex-bench queue on the fake driver (moex-bench-fake; it has no
 * io_uring, so the ring figures fail and the exit status is 1): the NOP
 * ioctl, COPY and memcpy at each size, and cpu_copy_vs_memcpy_1m the
 * 1 MiB COPY over the 1 MiB memcpy as printed. A COPY that fails ends
 * the suite saying so: its rate was printed as if the copies had run.
 */
TEST(bench_queue_on_the_fake_driver)
{
	static const char *const sizes[] = { "4", "64", "1024", "16384" };
	struct figure f[32];
	char name[32];
	double ratio, copy, mem;
	struct run r;
	size_t i;
	int n;

	RUN_BIN(&r, MOEX_BENCH_FAKE, NULL, "queue", "--json", "--device",
		"/dev/null");
	CHECK_MSG(r.status == 1, "status %d: %s", r.status, r.err);
	CHECK_HAS(r.err, "moex-bench: uring_cmd_nop_b32: Function not implemented");
	n = figures(r.out, f, 32);
	CHECK_INT(n, 10);
	CHECK(figure(f, n, "ioctl_nop", "ops/s") > 0);
	for (i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		snprintf(name, sizeof(name), "copy_%sk", sizes[i]);
		CHECK_MSG(figure(f, n, name, "GiB/s") > 0, "%s: %s", name, r.out);
		snprintf(name, sizeof(name), "memcpy_%sk", sizes[i]);
		CHECK_MSG(figure(f, n, name, "GiB/s") > 0, "%s: %s", name, r.out);
	}
	copy = figure(f, n, "copy_1024k", "GiB/s");
	mem = figure(f, n, "memcpy_1024k", "GiB/s");
	ratio = figure(f, n, "cpu_copy_vs_memcpy_1m", "ratio");
	CHECK_MSG(fabs(ratio - copy / mem) <= 1e-4 + 1e-3 * copy / mem,
		  "cpu_copy_vs_memcpy_1m %g, copy_1024k %g over memcpy_1024k %g",
		  ratio, copy, mem);

	RUN_BIN(&r, MOEX_BENCH_FAKE, "MOEX_FAKE_COPY_ERRNO=5", "queue",
		"--json", "--device", "/dev/null");
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.err, "moex-bench: copy_4k: Input/output error");
	CHECK_MSG(!strstr(r.out, "\"copy_") && !strstr(r.out, "cpu_copy_vs"),
		  "figures of copies that failed: %s", r.out);
}

/*
 * moex-bench pin on the fake driver, with liburing's own rings for the
 * anchor (MOEX_FAKE_URING): for 4 KiB pages and THP, REGION_PIN, unpin
 * and io_uring_register_buffers, and pin_vs_ioring_register_* the pin
 * figure over the register one as printed, with its target. A pin that
 * fails ends the suite with the fix.
 */
TEST(bench_pin_on_the_fake_driver)
{
	static const char *const kinds[] = { "4k", "thp" };
	struct figure f[16];
	char name[48], want[160];
	double pin, reg, ratio;
	struct run r;
	size_t i;
	int n;

	RUN_BIN(&r, MOEX_BENCH_FAKE, "MOEX_FAKE_URING=1", "pin", "--json",
		"--device", "/dev/null", "--size", "2M");
	if (r.status == 1 && (strstr(r.err, "no memory or ring") ||
			      strstr(r.err, "moex-bench: register: ")))
		SKIP("no io_uring, or no RLIMIT_MEMLOCK for 2 MiB here");
	CHECK_MSG(r.status == 0, "status %d: %s", r.status, r.err);
	n = figures(r.out, f, 16);
	CHECK_INT(n, 8);
	for (i = 0; i < 2; i++) {
		snprintf(name, sizeof(name), "unpin_%s", kinds[i]);
		CHECK_MSG(figure(f, n, name, "GiB/s") > 0, "%s: %s", name, r.out);
		snprintf(name, sizeof(name), "pin_%s", kinds[i]);
		pin = figure(f, n, name, "GiB/s");
		snprintf(name, sizeof(name), "ioring_register_%s", kinds[i]);
		reg = figure(f, n, name, "GiB/s");
		snprintf(name, sizeof(name), "pin_vs_ioring_register_%s",
			 kinds[i]);
		ratio = figure(f, n, name, "ratio");
		CHECK_MSG(pin > 0 && reg > 0, "%s", r.out);
		CHECK_MSG(fabs(ratio - pin / reg) <= 1e-4 + 1e-3 * pin / reg,
			  "%s %g, pin %g over register %g", name, ratio, pin,
			  reg);
		snprintf(want, sizeof(want),
			 "\"name\": \"%s\", \"value\": %.4f, \"unit\": \"ratio\", \"target\": %s}",
			 name, ratio, i ? "2.00" : "1.00");
		CHECK_HAS(r.out, want);
	}

	setenv("MOEX_FAKE_URING", "1", 1);
	RUN_BIN(&r, MOEX_BENCH_FAKE, "MOEX_FAKE_PIN_ERRNO=12", "pin", "--json",
		"--device", "/dev/null", "--size", "2M");
	unsetenv("MOEX_FAKE_URING");
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.err, "moex-bench: pin: Cannot allocate memory; ");
	CHECK_HAS(r.err, "ulimit -l");
	CHECK_STR(r.out, "");
}

/*
 * moex-bench moe --quick --json: every figure, and each ratio the named
 * measurement over its anchor as printed in the same run (the layer's
 * batch-1 GB/s over the better of the two triads). At batch 1 a layer
 * reads its gate, bias, shared experts and top-k experts: GB/s over
 * tokens/s is that byte count (bf16, --quick's shapes: V3 896 x 256, 32
 * experts, top-8, 1 shared; V2-Lite 512 x 352, 16 experts, top-6, 2
 * shared); at batch 16 the tokens share experts, so it is no more.
 */
TEST(bench_moe_figures_agree)
{
	static const char *const shapes[] = { "v2_lite", "v3" };
	static const char *const types[] = { "bf16", "fp8" };
	const double b1_bytes[] = {
		16 * 512 * 2 + 16 * 4 + (2 + 6) * 3 * 352 * 512 * 2,
		32 * 896 * 2 + 32 * 4 + (1 + 8) * 3 * 256 * 896 * 2,
	};
	struct figure f[64];
	double tri, tri_end, anchor;
	char name[96];
	struct run r;
	int n, si, ti;

	RUN_BIN(&r, MOEX_BENCH, NULL, "moe", "--quick", "--json", "--reps", "1",
		"--threads", "1", "--mem-gb", "0.05");
	CHECK_MSG(r.status == 0, "status %d: %s", r.status, r.err);
	n = figures(r.out, f, 64);
	CHECK_INT(n, 25);
	CHECK(figure(f, n, "threads", "threads") == 1);
	tri = figure(f, n, "triad_bw", "GB/s");
	tri_end = figure(f, n, "triad_bw_end", "GB/s");
	CHECK(tri > 0 && tri_end > 0);
	anchor = tri > tri_end ? tri : tri_end;
	for (si = 0; si < 2; si++) {
		for (ti = 0; ti < 2; ti++) {
			double tok1, bw1, tok16, bw16, ratio, want;

			snprintf(name, sizeof(name), "%s_%s_b1_tokens",
				 shapes[si], types[ti]);
			tok1 = figure(f, n, name, "tokens/s");
			snprintf(name, sizeof(name), "%s_%s_b1_eff_bw",
				 shapes[si], types[ti]);
			bw1 = figure(f, n, name, "GB/s");
			snprintf(name, sizeof(name), "%s_%s_b16_tokens",
				 shapes[si], types[ti]);
			tok16 = figure(f, n, name, "tokens/s");
			snprintf(name, sizeof(name), "%s_%s_b16_eff_bw",
				 shapes[si], types[ti]);
			bw16 = figure(f, n, name, "GB/s");
			CHECK_MSG(tok1 > 0 && bw1 > 0 && tok16 > 0 && bw16 > 0,
				  "%s %s: a figure is missing: %s", shapes[si],
				  types[ti], r.out);
			if (ti == 0)
				CHECK_MSG(fabs(bw1 * 1e9 / tok1 / b1_bytes[si] - 1) < 1e-4,
					  "%s bf16 b1: %g GB/s over %g tokens/s is %g bytes, not %g",
					  shapes[si], bw1, tok1, bw1 * 1e9 / tok1,
					  b1_bytes[si]);
			CHECK_MSG(bw16 * 1e9 / tok16 <= bw1 * 1e9 / tok1 * 1.0001,
				  "%s %s b16: %g bytes a token, b1 %g",
				  shapes[si], types[ti], bw16 * 1e9 / tok16,
				  bw1 * 1e9 / tok1);
			if (si)
				snprintf(name, sizeof(name),
					 "decode_b1_bw_ratio_%s_quick", types[ti]);
			else
				snprintf(name, sizeof(name),
					 "decode_b1_bw_ratio_%s_v2_lite_quick",
					 types[ti]);
			ratio = figure(f, n, name, "ratio");
			want = bw1 / anchor;
			CHECK_MSG(fabs(ratio - want) <= 1e-4 + 1e-3 * want,
				  "%s = %g, want %g / %g = %g", name, ratio, bw1,
				  anchor, want);
		}
		snprintf(name, sizeof(name), "%s_fp8_b1_prefetch_gain",
			 shapes[si]);
		CHECK_MSG(figure(f, n, name, "x") > 0, "no %s", name);
	}
}

/*
 * --no-shared and --f32: every figure gets _no_shared, f32 comes after
 * bf16 and fp8, and a batch-1 layer reads its gate, bias and top-k
 * routed experts only (f32: 4 bytes a weight), no shared expert.
 */
TEST(bench_moe_no_shared_f32)
{
	static const char *const shapes[] = { "v2_lite", "v3" };
	static const char *const types[] = { "bf16", "fp8", "f32" };
	const double b1_bytes[2][3] = {
		{ 16 * 512 * 2 + 16 * 4 + 6 * 3 * 352 * 512 * 2, 0,
		  16 * 512 * 2 + 16 * 4 + 6 * 3 * 352 * 512 * 4 },
		{ 32 * 896 * 2 + 32 * 4 + 8 * 3 * 256 * 896 * 2, 0,
		  32 * 896 * 2 + 32 * 4 + 8 * 3 * 256 * 896 * 4 },
	};
	struct figure f[64];
	char name[96];
	struct run r;
	int n, si, ti;

	RUN_BIN(&r, MOEX_BENCH, NULL, "moe", "--quick", "--json", "--reps", "1",
		"--threads", "1", "--mem-gb", "0.05", "--no-shared", "--f32");
	CHECK_MSG(r.status == 0, "status %d: %s", r.status, r.err);
	n = figures(r.out, f, 64);
	CHECK_INT(n, 33);
	for (si = 0; si < 2; si++) {
		for (ti = 0; ti < 3; ti++) {
			double tok, bw;

			snprintf(name, sizeof(name), "%s_no_shared_%s_b1_tokens",
				 shapes[si], types[ti]);
			tok = figure(f, n, name, "tokens/s");
			snprintf(name, sizeof(name), "%s_no_shared_%s_b16_eff_bw",
				 shapes[si], types[ti]);
			CHECK_MSG(figure(f, n, name, "GB/s") > 0, "no %s: %s",
				  name, r.out);
			snprintf(name, sizeof(name), "%s_no_shared_%s_b1_eff_bw",
				 shapes[si], types[ti]);
			bw = figure(f, n, name, "GB/s");
			CHECK_MSG(tok > 0 && bw > 0, "no %s: %s", name, r.out);
			if (b1_bytes[si][ti] > 0)
				CHECK_MSG(fabs(bw * 1e9 / tok / b1_bytes[si][ti] - 1) < 1e-4,
					  "%s: %g bytes a token, not %g", name,
					  bw * 1e9 / tok, b1_bytes[si][ti]);
		}
	}
	CHECK(figure(f, n, "v3_no_shared_fp8_b1_prefetch_gain", "x") > 0);
	CHECK(figure(f, n, "decode_b1_bw_ratio_fp8_no_shared_quick", "ratio") >= 0);
	CHECK(figure(f, n, "decode_b1_bw_ratio_bf16_v2_lite_no_shared_quick",
		     "ratio") >= 0);
}

TEST(usage_errors)
{
	struct run r;

	RUN(&r, "--tokens", "5");
	CHECK_INT(r.status, 2);
	RUN(&r, "--model", "x", "--tokens", "0");
	CHECK_INT(r.status, 2);
	/* the option by its name, also when its value is a word apart */
	CHECK_HAS(r.err, "moex-run: bad value '0' for --tokens\n");
	RUN(&r, "--model", "x", "--batch=many");
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "moex-run: bad value 'many' for --batch\n");
	/* the CPU pool takes at most 1024 threads: a usage error, not a
	 * failed load ("layer: Invalid argument") */
	RUN(&r, "--model", "x", "--threads", "1025");
	CHECK_INT(r.status, 2);
	/* a backend's options with the other: refused, not ignored */
	RUN(&r, "--model", "x", "--gpu-experts", "8");
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "--gpu-experts goes with --backend hip only");
	RUN(&r, "--model", "x", "--backend", "cpu", "--gpu-experts", "8");
	CHECK_INT(r.status, 2);
	RUN(&r, "--model", "x", "--backend", "hip", "--threads", "2");
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "--threads goes with --backend cpu only");
	RUN(&r, "--model", "x", "--backend", "tpu");
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "bad value 'tpu' for --backend");
	RUN(&r, "--model", "x", "--layers", "3-1");
	CHECK_INT(r.status, 2);
	RUN(&r, "--model", "x", "--device", "/dev/moex0", "--no-device");
	CHECK_INT(r.status, 2);
	/* moex-run(1)'s limits: --batch 1 to 65536, --tokens to 2^24 */
	RUN(&r, "--model", "x", "--batch", "65537");
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "bad value '65537' for --batch");
	RUN(&r, "--model", "x", "--tokens", "16777217");
	CHECK_INT(r.status, 2);
	CHECK_HAS(r.err, "bad value '16777217' for --tokens");
	RUN(&r, "--help");
	CHECK_INT(r.status, 0);
	CHECK_HAS(r.out, "--model DIR");
}

int main(void)
{
	static const struct h_test tests[] = {
		T(sharded_bf16_round_trip),
		T(fp8_round_trip),
		T(layer_range_and_expert_load),
		T(input_and_output_files),
		T(damaged_models_are_named),
		T(loads_where_io_uring_is_refused),
		T(lock_over_the_memlock_limit_names_its_fix),
		T(named_device_must_open),
		T(run_line_rates_agree),
		T(bench_load_reads_every_shard),
		T(bench_moe_usage_errors),
		T(bench_suite_options),
		T(bench_moe_figures_agree),
		T(bench_moe_no_shared_f32),
		T(bench_queue_on_the_fake_driver),
		T(bench_pin_on_the_fake_driver),
		T(usage_errors),
	};
	char cmd[96];
	int ret;

	snprintf(dir, sizeof(dir), "/tmp/moex-run-test.XXXXXX");
	if (!mkdtemp(dir)) {
		perror("mkdtemp");
		return 1;
	}
	ret = h_run(tests, sizeof(tests) / sizeof(tests[0]), 0, NULL);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd))
		fprintf(stderr, "could not remove %s\n", dir);
	return ret;
}
