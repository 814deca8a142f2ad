/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * bench-moe.h - what the moex-bench suites share (tools/moex-bench.c) and
 * `moex-bench moe`: the CPU MoE layer against the memory bandwidth of the
 * same machine (tools/bench-moe.c).
 */
#ifndef MOEX_BENCH_MOE_H
#define MOEX_BENCH_MOE_H

#include <stdbool.h>

/* --json, and the suite named in every JSON line. */
extern bool bench_json;
extern const char *bench_suite;

/* CLOCK_MONOTONIC seconds. */
double bench_now(void);
/* The median of v[0..n); sorts v. */
double bench_median(double *v, int n);
/* One figure, or a ratio with its target: a line of text or of JSON. */
void bench_report(const char *name, double value, const char *unit);
void bench_report_ratio(const char *name, double value, double target);

/* argv[0] is "moe"; 0 on success, 1 on a failure, 2 on a usage error. */
int bench_moe_main(int argc, char **argv);

#endif /* MOEX_BENCH_MOE_H */
