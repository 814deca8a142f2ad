// SPDX-License-Identifier: MIT OR LGPL-2.1-or-later
/*
 * libmoex's GPU plugin: libmoex-hip.so.0 (kernels/hip, built by nvcc or
 * hipcc with `make hip-plugin`), loaded the first time a "hip" layer is
 * asked for, once per process, and never unloaded.
 *
 * libmoex itself links no GPU runtime, so one build serves hosts with and
 * without a GPU. The plugin is looked for in this order:
 *   1. $MOEX_HIP_LIB, a path (ignored in setuid programs);
 *   2. next to the object that holds libmoex (libmoex.so.0, or the program
 *      linked with libmoex.a): a build tree or an install keeps them
 *      together;
 *   3. by soname through the dynamic loader's search path.
 * When the file beside libmoex is there but does not load (the GPU
 * runtime it links is missing, say), and the search by soname finds none,
 * the failure names that file with the loader's reason: the search's own
 * would only say that there is no plugin.
 * Its functions are moek_hip.h's, resolved by name into the table of
 * hip.h; tools/check-plugin checks that the plugin exports exactly those.
 */
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hip.h"
#include "internal.h"

#define MOEX_HIP_SONAME "libmoex-hip.so.0"

static pthread_once_t hip_once = PTHREAD_ONCE_INIT;
static struct moex_hip_api hip_api;
static int hip_err;		/* 0: hip_api is usable */
static char hip_why[1280];	/* why not, when hip_err */
static int hip_devices;

/* Where libmoex's own code lives: its directory, with a trailing '/'. */
static int hip_self_dir(char *dir, size_t len)
{
	Dl_info info;
	const char *slash;

	if (!dladdr((void *)hip_self_dir, &info) || !info.dli_fname)
		return -ENOENT;
	slash = strrchr(info.dli_fname, '/');
	if (!slash || (size_t)(slash - info.dli_fname) + 1 >= len)
		return -ENOENT;
	memcpy(dir, info.dli_fname, (size_t)(slash - info.dli_fname) + 1);
	dir[slash - info.dli_fname + 1] = '\0';
	return 0;
}

/*
 * The plugin, or NULL with tried[len] saying why and *there true when the
 * file beside libmoex is there but did not load.
 */
static void *hip_dlopen(char *tried, size_t len, bool *there)
{
	const char *env = secure_getenv("MOEX_HIP_LIB");
	char path[4096];
	void *h;

	*there = false;
	if (env && *env) {
		h = dlopen(env, RTLD_NOW | RTLD_LOCAL);
		if (!h)
			snprintf(tried, len, "MOEX_HIP_LIB=%s: %s", env,
				 dlerror());
		return h;
	}
	if (!hip_self_dir(path, sizeof(path) - sizeof(MOEX_HIP_SONAME))) {
		strcat(path, MOEX_HIP_SONAME);
		h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
		if (h)
			return h;
		/* the loader's error may name only a library it links */
		snprintf(tried, len, "%.900s does not load: %s", path, dlerror());
		*there = !access(path, F_OK);
	}
	h = dlopen(MOEX_HIP_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (!h && !*there)
		snprintf(tried, len, "%s", dlerror());
	return h;
}

static void hip_load(void)
{
	char tried[1024] = "";
	bool there;
	void *h, *sym;
	int abi, r;

	hip_err = -ENODEV;
	h = hip_dlopen(tried, sizeof(tried), &there);
	if (!h) {
		snprintf(hip_why, sizeof(hip_why), there ?
			 "no GPU backend: %s (is the GPU runtime it links, CUDA's or HIP's, installed and on the loader's path?)" :
			 "no GPU backend: %s (build it with `make hip-plugin`, or set MOEX_HIP_LIB)",
			 tried);
		return;
	}
	/* the ABI first: a plugin of another one lacks or has other
	 * functions, and that is what to say */
	sym = dlsym(h, "moek_hip_abi");
	if (sym) {
		memcpy(&hip_api.abi, &sym, sizeof(sym));
		abi = hip_api.abi();
		if (abi != MOEK_HIP_ABI) {
			snprintf(hip_why, sizeof(hip_why),
				 "the GPU backend speaks ABI %d, this libmoex %d: install both from the same release",
				 abi, MOEK_HIP_ABI);
			dlclose(h);
			return;
		}
	}
#define MOEX_HIP_RESOLVE(name, member)					\
	sym = dlsym(h, #name);						\
	if (!sym) {							\
		snprintf(hip_why, sizeof(hip_why),			\
			 "the GPU backend lacks %s: rebuild it with this libmoex", \
			 #name);					\
		dlclose(h);						\
		return;							\
	}								\
	memcpy(&hip_api.member, &sym, sizeof(sym));
	MOEX_HIP_SYMS(MOEX_HIP_RESOLVE)
#undef MOEX_HIP_RESOLVE
	r = hip_api.device_count(&hip_devices);
	if (r) {
		snprintf(hip_why, sizeof(hip_why),
			 "the GPU backend found no GPU: %s (is the GPU driver loaded, and /dev/nvidia* or /dev/kfd readable?)",
			 moex_strerror(r));
		hip_err = r;
		return;		/* keep the library: nothing to gain by unloading */
	}
	hip_err = 0;
}

const struct moex_hip_api *moex__hip(int *err)
{
	pthread_once(&hip_once, hip_load);
	*err = hip_err;
	return hip_err ? NULL : &hip_api;
}

int moex_gpu_probe(char *why, size_t len)
{
	MOEX_KEEP_ERRNO;
	int err;

	if (!moex__hip(&err)) {
		if (why && len)
			snprintf(why, len, "%s", hip_why);
		return err;
	}
	if (why && len)
		why[0] = '\0';
	return hip_devices;
}

/*
 * The GPU $MOEX_GPU names (the hip backend's, moex-bench's): unset or
 * empty, 0; else decimal digits only
 * (-EINVAL otherwise: "abc", "-1", " 1", "1x" or past INT_MAX), checked
 * against the GPUs there are by the plugin (-ENODEV). Says why on
 * standard error.
 */
int moex__hip_pick_gpu(const struct moex_hip_api *api, int *dev)
{
	const char *env = secure_getenv("MOEX_GPU");
	int n = 0;

	*dev = 0;
	if (!env || !*env)
		return 0;
	for (const char *p = env; *p; p++) {
		if (*p < '0' || *p > '9' || *dev > (INT_MAX - (*p - '0')) / 10) {
			fprintf(stderr,
				"libmoex: MOEX_GPU=%s is not a GPU number (0, 1, ...: the GPU the \"hip\" backend uses)\n",
				env);
			return -EINVAL;
		}
		*dev = *dev * 10 + (*p - '0');
	}
	if (api->device_count(&n) || *dev >= n) {
		fprintf(stderr,
			"libmoex: MOEX_GPU=%s: no such GPU (this host has %d, numbered from 0)\n",
			env, n);
		return -ENODEV;
	}
	return 0;
}

/* The reason moex__hip() failed, for messages. */
const char *moex__hip_why(void)
{
	return hip_why;
}
