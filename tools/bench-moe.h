/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * bench-moe.h - what the moex-bench suites share (tools/moex-bench.c) and
 * `moex-bench moe`: the CPU MoE layer against the memory bandwidth of the
 * same machine (tools/bench-moe.c).
 */
#ifndef MOEX_BENCH_MOE_H
#define MOEX_BENCH_MOE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "moek.h"

/* --json, and the suite named in every JSON line. */
extern bool bench_json;
extern const char *bench_suite;

/* CLOCK_MONOTONIC seconds. */
double bench_now(void);
/* The median of v[0..n); sorts v. */
double bench_median(double *v, int n);
/*
 * An option's value, all of it: a decimal integer in [min, max] (a digit
 * first: no sign, no space), or a finite number above 0. 0 or -1.
 */
int bench_parse_int(const char *s, long min, long max, long *out);
int bench_parse_positive(const char *s, double *out);
/* One figure, or a ratio with its target: a line of text or of JSON. */
void bench_report(const char *name, double value, const char *unit);
void bench_report_ratio(const char *name, double value, double target);

/* The layer shapes both backends measure: DeepSeek-V2-Lite's and V3's,
 * and small ones of the same structure for --quick. */
struct shape_def {
	const char *name;
	struct moek_shape s;
	int bias;
};
extern const struct shape_def bench_shapes[2];
extern const struct shape_def bench_quick_shapes[2];

/* "bf16", "fp8" or "f32". */
const char *bench_type_name(uint32_t t);
/* Random weights of type t (never NaN; f32 below 2^-6 in magnitude), or
 * with t = BENCH_FILL_SCALES f32 block scales near 1/448. */
#define BENCH_FILL_SCALES 0x100u
void bench_fill(void *mem, size_t len, uint32_t type, uint64_t seed);

/* argv[0] is "moe"; 0 on success, 1 on a failure, 2 on a usage error.
 * With --backend hip, bench_gpu_main() (tools/bench-gpu.c) runs instead. */
int bench_moe_main(int argc, char **argv);
int bench_gpu_main(int argc, char **argv);

#endif /* MOEX_BENCH_MOE_H */
