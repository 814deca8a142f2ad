/* SPDX-License-Identifier: GPL-2.0 */
/*
 * report: the "ok NAME", "FAIL NAME: why" and "SKIP NAME: why" lines of the
 * in-VM binaries that are not moex-vm-suite (moex-vm-uring, moex-vm-fuzz,
 * moex-vm-failnth), their counts, and the summary line that tools/run-suites
 * sums.
 */
#ifndef MOEX_VM_REPORT_H
#define MOEX_VM_REPORT_H

extern int passed, failed, skipped;

void ok(const char *name);
void fail(const char *name, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
void skip(const char *name, const char *why);
/* "SUITE: N passed, N failed, N skipped"; the exit status: 1 if one failed. */
int report_summary(const char *suite);

#endif /* MOEX_VM_REPORT_H */
