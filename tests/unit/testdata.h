/* SPDX-License-Identifier: GPL-2.0 */
/*
 * testdata.h - deterministic test data for the MoE unit tests: a small
 * linear congruential generator (uniform in [-0.5, 0.5)) and bf16 weights
 * from it. Include in one test file per binary.
 */
#ifndef MOEX_TEST_TESTDATA_H
#define MOEX_TEST_TESTDATA_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static uint32_t rng = 12345;

static float frand(void)
{
	rng = rng * 1664525u + 1013904223u;
	return (float)((rng >> 8) & 0xffff) / 65536.0f - 0.5f;
}

/* bf16 of f (truncation is enough for test data). */
static uint16_t bf16(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return (uint16_t)(u >> 16);
}

/* n bf16 values uniform in [-scale/2, scale/2). */
static void fill16(uint16_t *p, size_t n, float scale)
{
	while (n--)
		*p++ = bf16(frand() * scale);
}

#endif /* MOEX_TEST_TESTDATA_H */
