// SPDX-License-Identifier: GPL-2.0
/* report: ok/FAIL/SKIP lines and the summary (report.h). */
#include <stdarg.h>
#include <stdio.h>

#include "report.h"

int passed, failed, skipped;

void ok(const char *name)
{
	printf("ok %s\n", name);
	passed++;
}

void fail(const char *name, const char *fmt, ...)
{
	va_list ap;

	printf("FAIL %s: ", name);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	failed++;
}

void skip(const char *name, const char *why)
{
	printf("SKIP %s: %s\n", name, why);
	skipped++;
}

int report_summary(const char *suite)
{
	printf("%s: %d passed, %d failed, %d skipped\n", suite, passed, failed,
	       skipped);
	return failed ? 1 : 0;
}
