// SPDX-License-Identifier: GPL-2.0
/*
 * moex-bench: measured figures for moex, each against the anchor it is
 * judged by, both measured in the same run on the same machine.
 *
 *   moex-bench queue [--json] [--device PATH]
 *	operations/s of the uring_cmd NOP on the device at batch 1, 8 and 32,
 *	of IORING_OP_NOP (the io_uring floor) at the same batches, and of the
 *	NOP ioctl; GiB/s of the device's COPY against memcpy of the same
 *	sizes. Ratios: uring_nop_vs_ioring_nop_b32, uring_nop_vs_ioctl_b32,
 *	cpu_copy_vs_memcpy_1m.
 *   moex-bench pin [--json] [--device PATH] [--size SIZE]
 *	GiB/s of REGION_PIN and of unpin for SIZE (default 1G) of memory
 *	backed by 4 KiB pages and by transparent huge pages, against
 *	io_uring_register_buffers of the same memory. Ratios:
 *	pin_vs_ioring_register_4k, pin_vs_ioring_register_thp.
 *
 * Every figure is the median of 5 runs. With --json each figure is one
 * line: {"suite": ..., "name": ..., "value": ..., "unit": ...}.
 */
#include <errno.h>
#include <getopt.h>
#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "moex.h"

#define RUNS		5
#define NOP_OPS		20000	/* operations per NOP run */

static bool json;
static const char *suite;

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return v[n / 2];
}

static void report(const char *name, double value, const char *unit)
{
	if (json)
		printf("{\"suite\": \"%s\", \"name\": \"%s\", \"value\": %.6g, \"unit\": \"%s\"}\n",
		       suite, name, value, unit);
	else
		printf("%-32s %14.4f %s\n", name, value, unit);
	fflush(stdout);
}

static void report_ratio(const char *name, double value, double target)
{
	if (json)
		printf("{\"suite\": \"%s\", \"name\": \"%s\", \"value\": %.4f, \"unit\": \"ratio\", \"target\": %.2f}\n",
		       suite, name, value, target);
	else
		printf("%-32s %14.4f ratio (target >= %.2f)\n", name, value,
		       target);
	fflush(stdout);
}

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

/* A ring as libmoex builds it (SQE128 | CQE32, device as fixed file 0). */
static int ring_open(struct io_uring *ring, int devfd)
{
	static const unsigned int tries[] = {
		IORING_SETUP_SQE128 | IORING_SETUP_CQE32 |
			IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
			IORING_SETUP_DEFER_TASKRUN,
		IORING_SETUP_SQE128 | IORING_SETUP_CQE32 |
			IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER,
		IORING_SETUP_SQE128 | IORING_SETUP_CQE32 |
			IORING_SETUP_COOP_TASKRUN,
		IORING_SETUP_SQE128 | IORING_SETUP_CQE32,
	};
	struct io_uring_params p;
	size_t i;
	int ret = -EINVAL;

	for (i = 0; i < sizeof(tries) / sizeof(tries[0]) && ret == -EINVAL; i++) {
		memset(&p, 0, sizeof(p));
		p.flags = tries[i];
		ret = io_uring_queue_init_params(64, ring, &p);
	}
	if (ret)
		return ret;
	ret = io_uring_register_files(ring, &devfd, 1);
	if (ret)
		io_uring_queue_exit(ring);
	return ret;
}

/* ops/s of NOP_OPS operations at batch b: uring_cmd NOP or IORING_OP_NOP. */
static double ring_nop_rate(struct io_uring *ring, unsigned int b,
			    bool uring_cmd, int *err)
{
	struct io_uring_cqe *cqe;
	unsigned int done = 0, i, head, n;
	double t0 = now();
	int ret = 0;

	while (done < NOP_OPS) {
		for (i = 0; i < b; i++) {
			struct io_uring_sqe *sqe = io_uring_get_sqe(ring);

			if (uring_cmd) {
				io_uring_prep_rw(IORING_OP_URING_CMD, sqe, 0,
						 NULL, 0, 0);
				sqe->flags |= IOSQE_FIXED_FILE;
				sqe->cmd_op = MOEX_IOCTL_NOP;
				memset(sqe->cmd, 0, sizeof(struct moex_nop));
			} else {
				io_uring_prep_nop(sqe);
			}
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
	double v[RUNS], uring_b32 = 0, ioring_b32 = 0, ioctl_rate, copy_1m = 0,
	       memcpy_1m = 0;
	struct moex_device *dev;
	struct io_uring ring;
	uint32_t hs, hd;
	char name[64];
	size_t i, r, max = 16 << 20;
	void *src, *dst;
	int ret, err = 0;

	suite = "queue";
	ret = moex_open(path, &dev);
	if (ret) {
		fprintf(stderr, "moex-bench: %s: %s; %s\n", path,
			moex_strerror(ret), moex_error_hint(ret));
		return 1;
	}
	ret = ring_open(&ring, moex_device_fd(dev));
	if (ret) {
		fprintf(stderr, "moex-bench: io_uring: %s; %s\n",
			moex_strerror(ret), moex_error_hint(ret));
		return 1;
	}

	for (i = 0; i < 3; i++) {
		bool cmd;

		for (cmd = false;; cmd = true) {
			for (r = 0; r < RUNS; r++) {
				v[r] = ring_nop_rate(&ring, batches[i], cmd, &err);
				if (err)
					break;
			}
			snprintf(name, sizeof(name), "%s_b%u",
				 cmd ? "uring_cmd_nop" : "ioring_nop", batches[i]);
			if (err) {
				fprintf(stderr, "moex-bench: %s: %s\n", name,
					moex_strerror(err));
			} else {
				double m = median(v, RUNS);

				report(name, m, "ops/s");
				if (batches[i] == 32)
					*(cmd ? &uring_b32 : &ioring_b32) = m;
			}
			if (cmd)
				break;
		}
	}
	for (r = 0; r < RUNS; r++) {
		v[r] = ioctl_nop_rate(moex_device_fd(dev), &err);
		if (err)
			break;
	}
	ioctl_rate = err ? 0 : median(v, RUNS);
	if (ioctl_rate)
		report("ioctl_nop", ioctl_rate, "ops/s");
	io_uring_queue_exit(&ring);

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

		for (r = 0; r < RUNS; r++) {
			double t0 = now();

			for (k = 0; k < reps; k++)
				if (moex_copy(dev, hd, 0, hs, 0, len))
					break;
			v[r] = (double)len * reps / (now() - t0) / (1 << 30);
			t0 = now();
			for (k = 0; k < reps; k++) {
				memcpy(dst, src, len);
				__asm__ volatile("" : : "r"(dst) : "memory");
			}
			cv[r] = (double)len * reps / (now() - t0) / (1 << 30);
		}
		snprintf(name, sizeof(name), "copy_%zuk", len >> 10);
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

/* ---- pin ------------------------------------------------------------------ */

static int bench_pin(const char *path, uint64_t size)
{
	struct moex_device *dev;
	double pin[RUNS], unpin[RUNS], reg[RUNS];
	char name[64];
	int huge, r, ret;

	suite = "pin";
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
	fputs("usage: moex-bench queue|pin [--json] [--device PATH] [--size SIZE]\n"
	      "  queue  uring_cmd NOP vs IORING_OP_NOP vs ioctl; COPY vs memcpy\n"
	      "  pin    REGION_PIN vs io_uring_register_buffers, 4 KiB and THP\n",
	      f);
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ "device", required_argument, NULL, 'd' },
		{ "size", required_argument, NULL, 's' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *path = "/dev/moex0";
	uint64_t size = 1ull << 30;
	int c;

	while ((c = getopt_long(argc, argv, "jd:s:h", opts, NULL)) != -1) {
		switch (c) {
		case 'j':
			json = true;
			break;
		case 'd':
			path = optarg;
			break;
		case 's':
			if (moex_parse_size(optarg, &size) || !size) {
				fprintf(stderr, "moex-bench: bad size '%s'\n", optarg);
				return 2;
			}
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
	if (!strcmp(argv[optind], "queue"))
		return bench_queue(path);
	if (!strcmp(argv[optind], "pin"))
		return bench_pin(path, size);
	usage(stderr);
	return 2;
}
