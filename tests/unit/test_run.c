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
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "harness.h"
#include "runbin.h"

#if !defined(MKMODEL) || !defined(MOEX_RUN) || !defined(MOEX_BENCH)
#error "build with -DMKMODEL='\"/path/to/mkmodel\"' -DMOEX_RUN=... -DMOEX_BENCH=..."
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
	unsigned int n = 0, v, sum = 0;
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
	p = strchr(p, ':');
	CHECK(p);
	p++;
	while (n < 16 && sscanf(p, "%u%n", &v, &used) == 1) {
		sum += v;
		p += used;
		n++;
	}
	CHECK_INT(n, 16);
	CHECK_INT(sum, 10 * 4);
	RUN(&r, "--model", path("layers"), "--no-device", "--layers", "0");
	CHECK_INT(r.status, 1);
	CHECK_HAS(r.err, "MoE layers are 1-3");
}

TEST(input_and_output_files)
{
	const size_t dim = 256, ntok = 9;
	size_t n1 = 0, n2 = 0, i;
	float *x, *y1 = NULL, *y2 = NULL;
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

	/* a file that is not whole tokens */
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
 * moex-bench load's anchor reads every shard, however many: 120 here (V3
 * has 163), whose names are more than fio takes in one --filename value
 * (4096 bytes; a fixed 4200-byte list dropped shards before).
 */
TEST(bench_load_reads_every_shard)
{
	char shard[192];
	struct run r;
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
		{ "--reps", "5x" }, { "--reps", "65" }, { "--reps", "0" },
		{ "--mem-gb", "1x" }, { "--mem-gb", "0" },
		{ "--mem-gb", "nan" },
	};
	struct run r;
	size_t i;

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		RUN_BIN(&r, MOEX_BENCH, NULL, "moe", bad[i][0], bad[i][1]);
		CHECK_INT(r.status, 2);
		CHECK_HAS(r.err, "usage: moex-bench moe");
	}
	/* the GPU suite's own parser: a usage error before any GPU work */
	RUN_BIN(&r, MOEX_BENCH, NULL, "moe", "--backend", "hip", "--reps",
		"3x");
	CHECK_INT(r.status, 2);
	RUN_BIN(&r, MOEX_BENCH, NULL, "moe", "--backend", "hip", "--mem-gb",
		"-1");
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
		T(bench_load_reads_every_shard),
		T(bench_moe_usage_errors),
		T(bench_suite_options),
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
