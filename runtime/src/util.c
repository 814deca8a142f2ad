// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * libmoex helpers: size parsing.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

#include "internal.h"

/* The shift of a binary suffix letter, or -1. */
static int moex_suffix_shift(char c)
{
	switch (c) {
	case 'k': case 'K':
		return 10;
	case 'm': case 'M':
		return 20;
	case 'g': case 'G':
		return 30;
	case 't': case 'T':
		return 40;
	default:
		return -1;
	}
}

int moex_parse_size(const char *s, uint64_t *out)
{
	uint64_t v = 0;
	int shift = 0;
	const char *p;

	if (!s || !out)
		return -EINVAL;
	for (p = s; *p >= '0' && *p <= '9'; p++) {
		unsigned int d = (unsigned int)(*p - '0');

		if (v > (UINT64_MAX - d) / 10)
			return -ERANGE;
		v = v * 10 + d;
	}
	if (p == s)
		return -EINVAL;	/* empty, sign, space, letter first */
	if (*p) {
		shift = moex_suffix_shift(*p++);
		if (shift < 0)
			return -EINVAL;
		/* "iB" is the only thing that may follow the letter. */
		if (*p && strcmp(p, "iB") && strcmp(p, "ib"))
			return -EINVAL;
	}
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*out = v << shift;
	return 0;
}

int moex__errf(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return ret;
}
