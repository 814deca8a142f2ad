// SPDX-License-Identifier: GPL-2.0
/*
 * moex-run - the main job: load a DeepSeek-style model's MoE layers into
 * pinned memory and run hidden states through them.
 *
 *   moex-run --model DIR [--layers A-B] [--tokens N] [--batch B]
 *            [--backend cpu|hip] [--threads N] [--gpu-experts N] [--check]
 *            [--input FILE --output FILE] [--device PATH | --no-device]
 *            [--seed S] [--quiet]
 *
 * Every selected layer gets the same hidden states (random, or --input's
 * raw little-endian f32 [tokens][hidden_size]), in batches of B tokens
 * queued on one libmoex queue; --output writes the first selected layer's
 * MoE output in the same format. It prints the load (bytes, GB/s, pinned
 * or not), tokens/s and effective GB/s (weights read per batch over time),
 * each layer's expert load (tokens per routed expert, as EPLB counts it)
 * and the device's stats. --check runs the scalar reference on the same
 * tokens and fails unless every layer agrees within its dtype's tolerance
 * and routes every token to the same experts.
 *
 * Exit status: 0 success, 1 failure, 2 bad usage.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "moex.h"

#define EXIT_USAGE	2

static const char usage_text[] =
"usage: moex-run --model DIR [OPTIONS]\n"
"\n"
"  --model DIR          model directory (config.json, *.safetensors)\n"
"  --layers A-B         MoE layers to load and run (default: all); or A\n"
"  --tokens N           hidden states to run (default 64)\n"
"  --batch B            tokens per layer run (default 16)\n"
"  --backend cpu|hip    compute backend (default cpu)\n"
"  --threads N          CPU backend threads (default: one per CPU)\n"
"  --gpu-experts N      hip backend: routed experts per layer kept in GPU\n"
"                       memory, the others read from host memory (default:\n"
"                       all in GPU memory)\n"
"  --check              compare every layer with the scalar reference\n"
"  --input FILE         hidden states: raw little-endian f32 [tokens][hidden]\n"
"  --output FILE        write the first layer's output in the same format\n"
"  --device PATH        pin weights on this device (default /dev/moex0 when\n"
"                       present; without it weights are mlock()ed)\n"
"  --no-device          do not use a moex device\n"
"  --seed S             random hidden states' seed (default 1)\n"
"  --quiet              no progress bar\n"
"  --help               this text\n";

/* What --check allows: relative L2 error of a layer's output (see
 * Documentation/moe-kernels.rst, tolerances; with margin). */
static double tolerance(uint32_t dtype)
{
	return dtype == MOEX_DTYPE_FP8_E4M3 ? 2e-3 : 1e-4;
}

static const char *dtype_name(uint32_t t)
{
	return t == MOEX_DTYPE_F32 ? "f32" : t == MOEX_DTYPE_BF16 ? "bf16" :
	       t == MOEX_DTYPE_FP8_E4M3 ? "fp8" : "?";
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int fail(const char *fmt, ...)
{
	va_list ap;

	fputs("moex-run: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return 1;
}

/* The progress bar: bytes, GB/s and time left, on stderr, on a terminal. */
struct progress {
	double t0, last;
};

static void progress(void *ctx, uint64_t done, uint64_t total)
{
	struct progress *p = ctx;
	double t = now(), rate;
	int i, w = 30, fill;

	if (t - p->last < 0.1 && done < total)
		return;
	p->last = t;
	rate = done / (t - p->t0 + 1e-9);
	fill = total ? (int)((double)w * done / total) : w;
	fputs("\rloading [", stderr);
	for (i = 0; i < w; i++)
		fputc(i < fill ? '#' : ' ', stderr);
	fprintf(stderr, "] %8.1f/%.1f MB %6.2f GB/s %5.1f s left ",
		done / 1e6, total / 1e6, rate / 1e9,
		done && total > done ? (total - done) / rate : 0.0);
	if (done >= total)
		fputc('\n', stderr);
}

static int parse_layers(const char *s, uint32_t *a, uint32_t *b)
{
	char *end;
	unsigned long x, y;

	errno = 0;
	x = strtoul(s, &end, 10);
	if (end == s || errno || x >= MOEX_MODEL_ALL_LAYERS)
		return -1;
	y = x;
	if (*end == '-') {
		s = end + 1;
		y = strtoul(s, &end, 10);
		if (end == s || errno || y >= MOEX_MODEL_ALL_LAYERS || y < x)
			return -1;
	}
	if (*end)
		return -1;
	*a = (uint32_t)x;
	*b = (uint32_t)y;
	return 0;
}

static int parse_count(const char *s, unsigned long max, unsigned long *out)
{
	char *end;

	errno = 0;
	*out = strtoul(s, &end, 10);
	return end == s || *end || errno || !*out || *out > max ? -1 : 0;
}

/*
 * Hidden states: from --input, or random in [-1, 1). NULL after saying
 * why on stderr.
 */
static float *hidden_states(const char *input, uint32_t dim, size_t *ntok,
			    unsigned int seed)
{
	size_t n = *ntok * dim, i;
	uint32_t r = seed * 2654435761u + 1;
	float *x;

	if (input) {
		struct stat st;
		FILE *f = fopen(input, "rb");

		if (!f || fstat(fileno(f), &st)) {
			fail("%s: %s", input, strerror(errno));
			if (f)
				fclose(f);
			return NULL;
		}
		if (!st.st_size || st.st_size % ((off_t)dim * 4)) {
			fail("%s: %lld bytes is not a whole number of tokens of %u f32",
			     input, (long long)st.st_size, dim);
			fclose(f);
			return NULL;
		}
		*ntok = (size_t)st.st_size / ((size_t)dim * 4);
		x = malloc((size_t)st.st_size);
		if (!x || fread(x, 1, (size_t)st.st_size, f) !=
			  (size_t)st.st_size) {
			fail("%s: %s", input, !x ? "out of memory" :
			     ferror(f) ? strerror(errno) : "short read");
			free(x);
			x = NULL;
		}
		fclose(f);
		return x;
	}
	x = malloc(n * sizeof(*x));
	if (!x) {
		fail("out of memory for %zu tokens", *ntok);
		return NULL;
	}
	for (i = 0; i < n; i++) {
		r = r * 1664525u + 1013904223u;
		x[i] = (float)(r >> 8) / 8388608.0f - 1.0f;
	}
	return x;
}

/* Relative L2 error of y against the reference r. */
static double rel_l2(const float *y, const float *r, size_t n)
{
	double num = 0, den = 0;
	size_t i;

	for (i = 0; i < n; i++) {
		num += ((double)y[i] - r[i]) * ((double)y[i] - r[i]);
		den += (double)r[i] * r[i];
	}
	return den ? sqrt(num / den) : sqrt(num);
}

static void print_counts(uint32_t layer, const uint64_t *counts, uint32_t ne)
{
	uint64_t max = 0, sum = 0;
	uint32_t e;

	for (e = 0; e < ne; e++) {
		sum += counts[e];
		if (counts[e] > max)
			max = counts[e];
	}
	printf("layer %u expert load (tokens per expert; max/mean %.2f):",
	       layer, sum ? (double)max * ne / sum : 0.0);
	for (e = 0; e < ne; e++)
		printf("%s%4" PRIu64, e % 16 ? " " : "\n  ", counts[e]);
	printf("\n");
}

static void print_stats(const char *devpath)
{
	struct moex_stats st = { .size = sizeof(st) };
	const char *name = strrchr(devpath, '/');
	size_t i;

	name = name ? name + 1 : devpath;
	if (moex_stats_read(name, &st))
		return;
	printf("%s stats:", name);
	for (i = 0; moex_stats_name(i); i++)
		printf("%s%s %" PRIu64, i % 4 ? ", " : "\n  ",
		       moex_stats_name(i), moex_stats_get(&st, i));
	printf("\n");
}

struct run_args {
	const char *model, *input, *output, *backend, *device;
	uint32_t first, last;
	unsigned long tokens, batch, threads, gpu_experts;
	unsigned int seed;
	bool check, no_device, quiet;
};

/* Run every batch of x through one layer on q; y and counts accumulate. */
static int run_layer(struct moex_queue *q, struct moex_moe *moe,
		     const float *x, size_t ntok, size_t batch, uint32_t dim,
		     float *y, uint32_t *bc, uint64_t *counts, uint32_t ne,
		     uint64_t *bytes)
{
	struct moex_cqe cqe;
	size_t t, n;
	uint32_t e;
	int ret;

	for (t = 0; t < ntok; t += n) {
		n = ntok - t < batch ? ntok - t : batch;
		ret = moex_queue_moe(q, moe, x + t * dim, n, y + t * dim, bc,
				     t);
		if (!ret)
			ret = moex_queue_submit(q);
		if (ret >= 0)
			ret = moex_queue_wait(q, &cqe, 1, 1, -1);
		if (ret >= 0)
			ret = cqe.res;
		if (ret < 0)
			return ret;
		for (e = 0; e < ne; e++)
			counts[e] += bc[e];
		*bytes += moex_moe_active_bytes(moe, bc);
	}
	return 0;
}

static int run(const struct run_args *a)
{
	struct moex_model_info info = { .size = sizeof(info) };
	struct moex_model_opts mo = { .size = sizeof(mo) };
	struct progress pr = { 0 };
	struct moex_device *dev = NULL;
	struct moex_queue *q = NULL;
	struct moex_model *model = NULL;
	const char *devpath = a->device ? a->device : MOEX_DEFAULT_DEVICE;
	char err[512] = "";
	float *x = NULL, *y = NULL, *r = NULL;
	uint64_t *counts = NULL, bytes = 0;
	uint32_t *bc = NULL, *rc = NULL, l, e, ne, dim;
	size_t ntok = a->tokens;
	double t0, secs = 0;
	int ret, rc_exit = 1;
	bool check_ok = true;

	if (!a->no_device) {
		ret = moex_open(devpath, &dev);
		if (ret && (a->device || (ret != -ENOENT && ret != -ENODEV)))
			return fail("%s: %s; %s", devpath, moex_strerror(ret),
				    moex_error_hint(ret));
	}
	mo.dev = dev;
	mo.first_layer = a->first;
	mo.last_layer = a->last;
	mo.backend = a->backend;
	mo.threads = (unsigned int)a->threads;
	mo.gpu_experts = (unsigned int)a->gpu_experts;
	mo.errbuf = err;
	mo.errlen = sizeof(err);
	if (!a->quiet && isatty(STDERR_FILENO)) {
		pr.t0 = now();
		mo.progress = progress;
		mo.progress_ctx = &pr;
	}
	ret = moex_model_open(a->model, &mo, &model);
	if (ret) {
		fail("%s: %s", a->model, err[0] ? err : moex_strerror(ret));
		goto out;
	}
	moex_model_info(model, &info);
	ne = info.desc.n_experts;
	dim = info.desc.dim;
	printf("model %s: layers %u-%u of %u, %u experts (top-%u), dim %u, %s\n",
	       a->model, info.first_layer, info.first_layer + info.layers - 1,
	       info.n_layers, ne, info.desc.topk, dim,
	       dtype_name(info.desc.weight_dtype));
	printf("loaded %.1f MB (%.1f MB read) from %u files in %.3f s: %.2f GB/s, %s, %u of %u files O_DIRECT%s\n",
	       info.bytes / 1e6, info.read_bytes / 1e6, info.files,
	       info.load_seconds,
	       info.read_bytes / (info.load_seconds + 1e-12) / 1e9,
	       info.pinned ? "pinned by moex" : "mlock()ed (no moex device)",
	       info.direct, info.files,
	       info.uring ? "" : ", pread(2): io_uring refused by this host");

	x = hidden_states(a->input, dim, &ntok, a->seed);
	if (!x)
		goto out;	/* it said why */
	y = calloc(ntok * dim, sizeof(*y));
	r = calloc(ntok * dim, sizeof(*r));
	counts = calloc(ne, sizeof(*counts));
	bc = calloc(ne, sizeof(*bc));
	rc = calloc(ne, sizeof(*rc));
	if (!y || !r || !counts || !bc || !rc) {
		fail("out of memory for %zu tokens", ntok);
		goto out;
	}
	ret = moex_queue_create(dev, NULL, &q);
	if (ret) {
		fail("queue: %s; %s", moex_strerror(ret), moex_error_hint(ret));
		goto out;
	}

	for (l = info.first_layer; l < info.first_layer + info.layers; l++) {
		struct moex_moe *moe = moex_model_layer(model, l);

		memset(counts, 0, ne * sizeof(*counts));
		t0 = now();
		ret = run_layer(q, moe, x, ntok, a->batch, dim, y, bc, counts,
				ne, &bytes);
		secs += now() - t0;
		if (ret) {
			fail("layer %u: %s", l, moex_strerror(ret));
			goto out;
		}
		if (l == info.first_layer && a->output) {
			FILE *f = fopen(a->output, "wb");

			if (!f || fwrite(y, sizeof(*y) * dim, ntok, f) != ntok ||
			    fclose(f)) {
				fail("%s: %s", a->output, strerror(errno));
				goto out;
			}
		}
		print_counts(l, counts, ne);
		if (a->check) {
			double err_l2;
			bool same = true;

			ret = moex_moe_run_reference(moe, x, ntok, r, rc);
			if (ret) {
				fail("layer %u reference: %s", l,
				     moex_strerror(ret));
				goto out;
			}
			for (e = 0; e < ne; e++)
				same &= rc[e] == counts[e];
			err_l2 = rel_l2(y, r, ntok * dim);
			printf("check layer %u: relative error %.3g (tolerance %.0e), routing %s: %s\n",
			       l, err_l2, tolerance(info.desc.weight_dtype),
			       same ? "identical" : "DIFFERS",
			       same && err_l2 <= tolerance(info.desc.weight_dtype) ?
			       "ok" : "FAILED");
			check_ok &= same &&
				    err_l2 <= tolerance(info.desc.weight_dtype);
		}
	}
	printf("ran %zu tokens through %u layers on %s in batches of %lu: %.1f tokens/s per layer, %.2f GB/s of weights\n",
	       ntok, info.layers,
	       moex_moe_backend(moex_model_layer(model, info.first_layer)),
	       a->batch, ntok * info.layers / (secs + 1e-12),
	       bytes / (secs + 1e-12) / 1e9);
	if (dev)
		print_stats(devpath);
	if (a->check)
		printf("check: %s\n", check_ok ? "passed" : "FAILED");
	rc_exit = check_ok ? 0 : 1;
out:
	moex_queue_destroy(q);
	moex_model_close(model);
	moex_close(dev);
	free(x);
	free(y);
	free(r);
	free(counts);
	free(bc);
	free(rc);
	return rc_exit;
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "model", required_argument, NULL, 'm' },
		{ "layers", required_argument, NULL, 'l' },
		{ "tokens", required_argument, NULL, 't' },
		{ "batch", required_argument, NULL, 'b' },
		{ "backend", required_argument, NULL, 'B' },
		{ "threads", required_argument, NULL, 'T' },
		{ "gpu-experts", required_argument, NULL, 'G' },
		{ "check", no_argument, NULL, 'c' },
		{ "input", required_argument, NULL, 'i' },
		{ "output", required_argument, NULL, 'o' },
		{ "device", required_argument, NULL, 'd' },
		{ "no-device", no_argument, NULL, 'n' },
		{ "seed", required_argument, NULL, 's' },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct run_args a = {
		.first = MOEX_MODEL_ALL_LAYERS, .last = MOEX_MODEL_ALL_LAYERS,
		.tokens = 64, .batch = 16, .seed = 1,
	};
	unsigned long v;
	int c, idx = 0;
	bool hip;

	while ((c = getopt_long(argc, argv, "", opts, &idx)) != -1) {
		switch (c) {
		case 'm':
			a.model = optarg;
			break;
		case 'l':
			if (parse_layers(optarg, &a.first, &a.last))
				goto bad;
			break;
		case 't':
			if (parse_count(optarg, 1ul << 24, &a.tokens))
				goto bad;
			break;
		case 'b':
			if (parse_count(optarg, 1ul << 16, &a.batch))
				goto bad;
			break;
		case 'B':
			a.backend = optarg;
			break;
		case 'T':
			/* the CPU pool's limit (moek_cpu_create): more
			 * failed the load as "layer: Invalid argument" */
			if (parse_count(optarg, 1024, &a.threads))
				goto bad;
			break;
		case 'G':
			if (parse_count(optarg, 1ul << 16, &a.gpu_experts))
				goto bad;
			break;
		case 'c':
			a.check = true;
			break;
		case 'i':
			a.input = optarg;
			break;
		case 'o':
			a.output = optarg;
			break;
		case 'd':
			a.device = optarg;
			break;
		case 'n':
			a.no_device = true;
			break;
		case 's':
			if (parse_count(optarg, UINT32_MAX, &v))
				goto bad;
			a.seed = (unsigned int)v;
			break;
		case 'q':
			a.quiet = true;
			break;
		case 'h':
			fputs(usage_text, stdout);
			return 0;
		default:
			fputs(usage_text, stderr);
			return EXIT_USAGE;
		}
	}
	if (!a.model || optind != argc || (a.device && a.no_device)) {
		fputs(usage_text, stderr);
		return EXIT_USAGE;
	}
	/* a backend's options with the other backend would be ignored */
	if (a.backend && strcmp(a.backend, "cpu") && strcmp(a.backend, "hip")) {
		fprintf(stderr, "moex-run: bad value '%s' for --backend\n",
			a.backend);
		fputs(usage_text, stderr);
		return EXIT_USAGE;
	}
	hip = a.backend && !strcmp(a.backend, "hip");
	if ((a.threads && hip) || (a.gpu_experts && !hip)) {
		fprintf(stderr, "moex-run: %s goes with --backend %s only\n",
			hip ? "--threads" : "--gpu-experts", hip ? "cpu" : "hip");
		fputs(usage_text, stderr);
		return EXIT_USAGE;
	}
	return run(&a);
bad:
	/* the option by name: argv[optind - 1] is its value when apart */
	fprintf(stderr, "moex-run: bad value '%s' for --%s\n", optarg,
		opts[idx].name);
	fputs(usage_text, stderr);
	return EXIT_USAGE;
}
