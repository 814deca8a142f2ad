/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * dispatch.c - instruction-set detection and the CPU context.
 *
 * This file is compiled for plain x86-64: it only asks the CPU (and the
 * kernel, through __builtin_cpu_supports' use of XGETBV) what it has and
 * picks the kernel table of the best level at or below the caller's cap.
 * Code of a level the CPU lacks is never called.
 */
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif

#include "cpu.h"

/* F16C (CPUID.1:ECX bit 29) has no __builtin_cpu_supports name in GCC 12. */
static bool has_f16c(void)
{
#if defined(__x86_64__) || defined(__i386__)
	unsigned int a, b, c, d;

	if (__get_cpuid(1, &a, &b, &c, &d))
		return c & bit_F16C;
#endif
	return false;
}

static enum moek_isa host_isa(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_cpu_init();
	if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") ||
	    !has_f16c())
		return MOEK_ISA_SCALAR;
	if (__builtin_cpu_supports("avx512f") &&
	    __builtin_cpu_supports("avx512bw") &&
	    __builtin_cpu_supports("avx512vl") &&
	    __builtin_cpu_supports("avx512dq"))
		return MOEK_ISA_AVX512;
	return MOEK_ISA_AVX2;
#else
	return MOEK_ISA_SCALAR;
#endif
}

const char *moek_isa_name(enum moek_isa isa)
{
	switch (isa) {
	case MOEK_ISA_SCALAR:
		return "scalar";
	case MOEK_ISA_AVX2:
		return "avx2";
	case MOEK_ISA_AVX512:
		return "avx512";
	}
	return "unknown";
}

/*
 * One thread per CPU this process may run on: its affinity mask, so that a
 * process given 4 of a host's 64 CPUs (taskset, a cgroup's cpuset, a
 * container's --cpuset-cpus) runs 4 threads and not 64 that spin at the
 * pool's barriers on 4 CPUs. The online count where the mask cannot be
 * read (a host with more CPUs than a cpu_set_t holds); at least 1, at most
 * MOEK_CPU_MAX_THREADS.
 */
unsigned int moek_cpu_default_threads(void)
{
	cpu_set_t set;
	long n = 0;

	if (!sched_getaffinity(0, sizeof(set), &set))
		n = CPU_COUNT(&set);
	if (n <= 0)
		n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n <= 0)
		return 1;
	return n > MOEK_CPU_MAX_THREADS ? MOEK_CPU_MAX_THREADS :
	       (unsigned int)n;
}

/**
 * moek_cpu_create() - a CPU context: thread pool, kernels, scratch.
 * @nthreads: threads (the caller is one of them), at most
 *            MOEK_CPU_MAX_THREADS; 0: moek_cpu_default_threads()
 * @max_isa:  the best instruction-set level to use; the host's best
 *            level up to it is chosen
 * @out:      the context
 *
 * Return: 0, -EINVAL (unknown max_isa, NULL out, too many threads) or
 * -ENOMEM.
 */
int moek_cpu_create(unsigned int nthreads, enum moek_isa max_isa,
		    struct moek_cpu **out)
{
	struct moek_cpu *c;
	enum moek_isa isa;
	int ret;

	if (!out || (unsigned int)max_isa > MOEK_ISA_AVX512)
		return -EINVAL;
	if (!nthreads)
		nthreads = moek_cpu_default_threads();
	if (nthreads > MOEK_CPU_MAX_THREADS)
		return -EINVAL;
	moek_cpu_init_tables();
	isa = host_isa();
	if (isa > max_isa)
		isa = max_isa;

	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->isa = isa;
	c->k = isa == MOEK_ISA_AVX512 ? &moek_kern_avx512 :
	       isa == MOEK_ISA_AVX2 ? &moek_kern_avx2 : &moek_kern_scalar;
#if defined(__x86_64__) || defined(__i386__)
	/* FP8 weights go through vdpbf16ps where the CPU has it. */
	if (isa == MOEK_ISA_AVX512 && __builtin_cpu_supports("avx512bf16"))
		c->k = &moek_kern_avx512_bf16;
#endif
	c->nthreads = nthreads;
	c->prefetch = 1;
	c->tls = calloc(nthreads, sizeof(*c->tls));
	if (!c->tls) {
		free(c);
		return -ENOMEM;
	}
	ret = moek_pool_create(nthreads, &c->pool);
	if (ret) {
		free(c->tls);
		free(c);
		return ret;
	}
	*out = c;
	return 0;
}

void moek_cpu_destroy(struct moek_cpu *c)
{
	if (!c)
		return;
	moek_pool_destroy(c->pool);
	free(c->buf);
	free(c->tls_buf);
	free(c->tls);
	free(c);
}

enum moek_isa moek_cpu_isa(const struct moek_cpu *c)
{
	return c->isa;
}

unsigned int moek_cpu_threads(const struct moek_cpu *c)
{
	return c->nthreads;
}

void moek_cpu_set_prefetch(struct moek_cpu *c, int on)
{
	c->prefetch = !!on;
}
