/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * bench-moe.h - `moex-bench moe`: the CPU MoE layer against the memory
 * bandwidth of the same machine (tools/bench-moe.c).
 */
#ifndef MOEX_BENCH_MOE_H
#define MOEX_BENCH_MOE_H

/* argv[0] is "moe"; 0 on success, 1 on a failure, 2 on a usage error. */
int bench_moe_main(int argc, char **argv);

#endif /* MOEX_BENCH_MOE_H */
