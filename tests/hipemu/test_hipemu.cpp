/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * test_hipemu.cpp - the emulator's own tests: what it must get right for
 * tests/gpu to mean anything on it (shuffles, barriers, shared memory,
 * grids, atomics, stream order, events, callbacks, memory checks, slow
 * copies), and the faults it must report (each in a child process, since
 * a fault is sticky). Prints "ok NAME" / "FAIL NAME: why" and the
 * summary line "hipemu-wN-self: N passed, N failed".
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <thread>

#include "hipemu.h"

#define STR2(x) #x
#define STR(x) STR2(x)

static unsigned int g_pass, g_fail;
static char g_why[512];

#define CHECK(c, ...)							\
	do {								\
		if (!(c)) {						\
			snprintf(g_why, sizeof(g_why), __VA_ARGS__);	\
			return false;					\
		}							\
	} while (0)

static void run(const char *name, bool (*fn)(void))
{
	g_why[0] = '\0';
	if (fn()) {
		printf("ok %s\n", name);
		g_pass++;
	} else {
		printf("FAIL %s: %s\n", name, g_why);
		g_fail++;
	}
	fflush(stdout);
}

template <typename T> static T *dev(size_t n)
{
	void *p = NULL;

	if (hipMalloc(&p, n * sizeof(T)) != hipSuccess)
		abort();
	return (T *)p;
}

/* ---- the device ---- */

__global__ void k_shuffle(int *out)
{
	int v = (int)threadIdx.x;

	for (int o = HIPEMU_WARP / 2; o > 0; o >>= 1)
		v += __shfl_xor(v, o, HIPEMU_WARP);
	out[threadIdx.x] = v;
}

/* every lane gets the sum of its warp's lane ids */
static bool shuffle(void)
{
	const int nt = 4 * HIPEMU_WARP;
	int *d = dev<int>(nt), h[4 * HIPEMU_WARP];

	hipemu_launch(k_shuffle, 1, nt, NULL)(d);
	CHECK(hipMemcpy(h, d, sizeof(h), hipMemcpyDeviceToHost) == hipSuccess,
	      "copy back");
	for (int t = 0; t < nt; t++) {
		const int w0 = t / HIPEMU_WARP * HIPEMU_WARP;
		const int want = HIPEMU_WARP * w0 +
				 HIPEMU_WARP * (HIPEMU_WARP - 1) / 2;

		CHECK(h[t] == want, "thread %d: %d, want %d", t, h[t], want);
	}
	hipFree(d);
	return true;
}

__global__ void k_reverse(const int *in, int *out)
{
	__shared__ int s[256];

	s[threadIdx.x] = in[blockIdx.x * 256 + threadIdx.x];
	__syncthreads();
	out[blockIdx.x * 256 + threadIdx.x] = s[255 - threadIdx.x];
}

/* __syncthreads orders shared memory within each block of a grid */
static bool barrier(void)
{
	static int h[3 * 256], r[3 * 256];
	int *din = dev<int>(3 * 256), *dout = dev<int>(3 * 256);

	for (int i = 0; i < 3 * 256; i++)
		h[i] = i * 7 + 1;
	hipMemcpy(din, h, sizeof(h), hipMemcpyHostToDevice);
	hipemu_launch(k_reverse, 3, 256, NULL)(din, dout);
	hipMemcpy(r, dout, sizeof(r), hipMemcpyDeviceToHost);
	for (int b = 0; b < 3; b++)
		for (int t = 0; t < 256; t++)
			CHECK(r[b * 256 + t] == h[b * 256 + 255 - t],
			      "block %d thread %d", b, t);
	hipFree(din);
	hipFree(dout);
	return true;
}

__global__ void k_ids(unsigned int *seen, unsigned int *count)
{
	const unsigned int b = blockIdx.x + gridDim.x *
			       (blockIdx.y + gridDim.y * blockIdx.z);
	const unsigned int t = threadIdx.x + blockDim.x *
			       (threadIdx.y + blockDim.y * threadIdx.z);
	const unsigned int nt = blockDim.x * blockDim.y * blockDim.z;

	seen[b * nt + t]++;
	atomicAdd(count, 1u);
}

/* every (block, thread) of a 3-D grid of 3-D blocks runs once */
static bool grid(void)
{
	const dim3 g(3, 2, 2), b(8, 4, 2);
	const unsigned int n = 12 * 64;
	unsigned int *seen = dev<unsigned int>(n), *count = dev<unsigned int>(1);
	static unsigned int h[12 * 64];
	unsigned int c;

	hipMemsetAsync(seen, 0, n * 4, NULL);
	hipMemsetAsync(count, 0, 4, NULL);
	hipemu_launch(k_ids, g, b, NULL)(seen, count);
	hipMemcpy(h, seen, sizeof(h), hipMemcpyDeviceToHost);
	hipMemcpy(&c, count, 4, hipMemcpyDeviceToHost);
	for (unsigned int i = 0; i < n; i++)
		CHECK(h[i] == 1, "thread %u ran %u times", i, h[i]);
	CHECK(c == n, "atomic count %u, want %u", c, n);
	hipFree(seen);
	hipFree(count);
	return true;
}

/* a launch of no threads, or of more than 1024, is refused at once */
static bool bad_launch(void)
{
	int *d = dev<int>(2048);

	(void)hipGetLastError();
	hipemu_launch(k_shuffle, 1, 2048, NULL)(d);
	CHECK(hipGetLastError() == hipErrorInvalidValue, "2048 threads");
	hipemu_launch(k_shuffle, dim3(0), HIPEMU_WARP, NULL)(d);
	CHECK(hipGetLastError() == hipErrorInvalidValue, "an empty grid");
	CHECK(hipGetLastError() == hipSuccess, "the error is not cleared");
	hipFree(d);
	return true;
}

/* ---- WMMA (gemm_mma.hip's calls) ---- */

namespace wmma = nvcuda::wmma;

/* C[16][16] = A[16][8] . W[16][8]^T, A row-major, W as a col-major B */
__global__ void k_mma(const float *a, const float *w, float *c)
{
	wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32,
		       wmma::row_major> fa;
	wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32,
		       wmma::col_major> fb;
	wmma::fragment<wmma::accumulator, 16, 16, 8, float> fc;

	wmma::fill_fragment(fc, 1.0f);
	wmma::load_matrix_sync(fa, a, 8);
	wmma::load_matrix_sync(fb, w, 8);
	wmma::mma_sync(fc, fa, fb, fc);
	wmma::store_matrix_sync(c, fc, 16, wmma::mem_row_major);
}

/* small integers, exact in tf32: the product is exact */
static bool mma(void)
{
	float *a = dev<float>(128), *w = dev<float>(128), *c = dev<float>(256);
	float ha[128], hw[128], hc[256];

	for (int i = 0; i < 128; i++) {
		ha[i] = (float)(i % 7 - 3);
		hw[i] = (float)(i % 5 - 2);
	}
	hipMemcpy(a, ha, sizeof(ha), hipMemcpyHostToDevice);
	hipMemcpy(w, hw, sizeof(hw), hipMemcpyHostToDevice);
	hipemu_launch(k_mma, 1, HIPEMU_WARP, NULL)(a, w, c);
	CHECK(hipMemcpy(hc, c, sizeof(hc), hipMemcpyDeviceToHost) ==
	      hipSuccess, "the kernel failed");
	for (int m = 0; m < 16; m++) {
		for (int n = 0; n < 16; n++) {
			float want = 1.0f;

			for (int k = 0; k < 8; k++)
				want += ha[m * 8 + k] * hw[n * 8 + k];
			CHECK(hc[m * 16 + n] == want, "C[%d][%d] = %g, want %g",
			      m, n, hc[m * 16 + n], want);
		}
	}
	CHECK(wmma::__float_to_tf32(1.0f + 0x1p-11f) == 1.0f + 0x1p-10f &&
	      wmma::__float_to_tf32(1.0f + 0x1p-12f) == 1.0f,
	      "tf32 rounding: to nearest, ties away");
	hipFree(a);
	hipFree(w);
	hipFree(c);
	return true;
}

/* ---- the runtime ---- */

/* the host opens the gate: until then the kernel, and its stream, wait */
static int g_gate;

__global__ void k_gated_fill(int *p, int v)
{
	while (!__atomic_load_n(&g_gate, __ATOMIC_ACQUIRE))
		usleep(1000);
	p[threadIdx.x] = v;
}

static void note(hipStream_t, hipError_t status, void *data)
{
	int *p = (int *)data;

	p[1] = status == hipSuccess ? p[0] : -1;	/* what was there */
}

/*
 * A stream runs in order; another stream waits for an event recorded on
 * the first; a callback sees what came before it.
 */
static bool streams(void)
{
	hipStream_t a, b;
	hipEvent_t e;
	int *d = dev<int>(HIPEMU_WARP), *d2 = dev<int>(HIPEMU_WARP);
	void *hp;
	int *h;

	CHECK(hipStreamCreateWithFlags(&a, hipStreamNonBlocking) == hipSuccess &&
	      hipStreamCreateWithFlags(&b, hipStreamNonBlocking) == hipSuccess &&
	      hipEventCreateWithFlags(&e, 0) == hipSuccess, "create");
	CHECK(hipHostMalloc(&hp, 4096, 0) == hipSuccess, "host memory");
	h = (int *)hp;
	h[0] = 0;
	h[1] = 0;
	hipemu_launch(k_gated_fill, 1, HIPEMU_WARP, a)(d, 42);
	hipEventRecord(e, a);
	hipStreamWaitEvent(b, e, 0);
	hipMemcpyAsync(d2, d, 4 * HIPEMU_WARP, hipMemcpyDeviceToDevice, b);
	hipMemcpyAsync(h, d2, 4, hipMemcpyDeviceToHost, b);
	hipStreamAddCallback(b, note, h, 0);
	usleep(20000);
	CHECK(hipEventQuery(e) == hipErrorNotReady && h[0] == 0 && h[1] == 0,
	      "the event or stream b went past a kernel still running");
	__atomic_store_n(&g_gate, 1, __ATOMIC_RELEASE);
	CHECK(hipStreamSynchronize(b) == hipSuccess, "sync");
	CHECK(h[0] == 42 && h[1] == 42, "stream b saw %d, callback %d",
	      h[0], h[1]);
	CHECK(hipEventQuery(e) == hipSuccess, "event not done");
	hipStreamDestroy(a);
	hipStreamDestroy(b);
	hipEventDestroy(e);
	hipHostFree(hp);
	hipFree(d);
	hipFree(d2);
	return true;
}

/* copies are checked against the allocations; memory is counted */
static bool memory(void)
{
	static char host[256];
	size_t fr, total, fr2;
	void *p, *q, *alias;

	CHECK(hipMemGetInfo(&fr, &total) == hipSuccess && fr <= total, "info");
	p = dev<char>(1 << 20);
	hipMemGetInfo(&fr2, &total);
	CHECK(fr - fr2 == 1 << 20, "1 MiB allocated, %zu counted", fr - fr2);
	CHECK(hipMemcpy(host, host + 32, 16, hipMemcpyHostToDevice) ==
	      hipErrorInvalidValue, "a copy to the device into host memory");
	CHECK(hipMemcpy(host, (char *)p + (1 << 20) - 64, 128,
			hipMemcpyDeviceToHost) ==
	      hipErrorInvalidValue, "a copy past the end of an allocation");
	CHECK(hipMalloc(&q, total) == hipErrorOutOfMemory, "more than there is");
	CHECK(hipFree(host) == hipErrorInvalidValue, "freeing host memory");
	CHECK(hipHostGetDevicePointer(&alias, host, 0) == hipErrorInvalidValue,
	      "an unregistered alias");
	CHECK(hipHostRegister(host, 64, hipHostRegisterMapped) == hipSuccess,
	      "register");
	CHECK(hipHostRegister(host + 8, 8, hipHostRegisterMapped) ==
	      hipErrorHostMemoryAlreadyRegistered, "registered twice");
	CHECK(hipHostGetDevicePointer(&alias, host + 8, 0) == hipSuccess &&
	      alias == host + 8, "alias");
	CHECK(hipHostUnregister(host) == hipSuccess, "unregister");
	CHECK(hipFree(p) == hipSuccess, "free");
	hipMemGetInfo(&fr2, &total);
	CHECK(fr2 == fr, "freed memory not returned");
	return true;
}

__global__ void k_fill(int *p, int v)
{
	p[threadIdx.x] = v;
}

/* What a thread whose current device is another than s's can do with
 * s, event e (s's device's) and d (s's device's memory): nothing. */
static bool refused_elsewhere(hipStream_t s, hipEvent_t e, int *d, int *h)
{
	hipemu_launch(k_fill, 1, HIPEMU_WARP, s)(d, 1);
	CHECK(hipGetLastError() == hipErrorInvalidHandle,
	      "a launch on another device's stream");
	CHECK(hipMemcpyAsync(d, h, 4, hipMemcpyHostToDevice, s) ==
	      hipErrorInvalidHandle, "a copy on another device's stream");
	CHECK(hipMemsetAsync(d, 0, 4, s) == hipErrorInvalidHandle,
	      "a memset on another device's stream");
	CHECK(hipEventRecord(e, s) == hipErrorInvalidHandle,
	      "an event record on another device's stream");
	CHECK(hipEventRecord(e, NULL) == hipErrorInvalidHandle,
	      "a record of another device's event");
	CHECK(hipStreamWaitEvent(s, e, 0) == hipErrorInvalidHandle,
	      "a wait on another device's stream");
	CHECK(hipStreamAddCallback(s, note, h, 0) == hipErrorInvalidHandle,
	      "a callback on another device's stream");
	CHECK(hipMemcpy(h, d, 4, hipMemcpyDeviceToHost) ==
	      hipErrorInvalidValue, "a copy of another device's memory");
	CHECK(hipHostUnregister(h) == hipErrorHostMemoryNotRegistered,
	      "unregistering another device's registration");
	(void)hipGetLastError();
	return true;
}

/*
 * HIPEMU_DEVICES=2: the current device is per thread, 0 until set;
 * streams, events and memory are their device's, and using them while
 * another device is current fails as on CUDA.
 */
static bool two_devices(void)
{
	size_t fr0, fr0b, fr1, fr1b, total;
	hipStream_t s;
	hipEvent_t e, e0;
	int *d, h[HIPEMU_WARP] = { 0 }, n = 0, cur = -1;
	void *hp, *alias;
	bool ok = false;

	CHECK(hipGetDeviceCount(&n) == hipSuccess && n == 2, "%d devices", n);
	CHECK(hipSetDevice(2) == hipErrorInvalidDevice, "device 2 of 2");
	(void)hipGetLastError();
	hipMemGetInfo(&fr0, &total);
	CHECK(hipSetDevice(1) == hipSuccess && hipGetDevice(&cur) ==
	      hipSuccess && cur == 1, "device 1 current: %d", cur);
	hipMemGetInfo(&fr1, &total);
	CHECK(hipStreamCreateWithFlags(&s, hipStreamNonBlocking) ==
	      hipSuccess && hipEventCreateWithFlags(&e, 0) == hipSuccess,
	      "create on device 1");
	d = dev<int>(HIPEMU_WARP);
	CHECK(hipHostMalloc(&hp, 4096, 0) == hipSuccess &&
	      hipHostRegister(h, sizeof(h), hipHostRegisterMapped) ==
	      hipSuccess, "pinned and registered on device 1");
	hipMemGetInfo(&fr1b, &total);
	CHECK(fr1 - fr1b == 4 * HIPEMU_WARP, "device 1 counted %zu bytes",
	      fr1 - fr1b);
	/* on device 1, everything works */
	hipemu_launch(k_fill, 1, HIPEMU_WARP, s)(d, 7);
	CHECK(hipEventRecord(e, s) == hipSuccess &&
	      hipStreamWaitEvent(s, e, 0) == hipSuccess &&
	      hipMemcpyAsync(h, d, sizeof(h), hipMemcpyDeviceToHost, s) ==
	      hipSuccess && hipStreamSynchronize(s) == hipSuccess &&
	      hipGetLastError() == hipSuccess && h[0] == 7 &&
	      h[HIPEMU_WARP - 1] == 7, "work on device 1: %d", h[0]);
	CHECK(hipHostGetDevicePointer(&alias, hp, 0) == hipSuccess,
	      "device 1's alias of its pinned memory");
	/* device 0 current: refused, and device 0's memory untouched */
	CHECK(hipSetDevice(0) == hipSuccess, "device 0");
	if (!refused_elsewhere(s, e, d, h))
		return false;
	CHECK(hipHostGetDevicePointer(&alias, hp, 0) == hipErrorInvalidValue,
	      "device 0's alias of device 1's pinned memory");
	(void)hipGetLastError();
	hipMemGetInfo(&fr0b, &total);
	CHECK(fr0b == fr0, "device 0 counted %zu bytes", fr0 - fr0b);
	/* another device may wait for device 1's event */
	CHECK(hipEventCreateWithFlags(&e0, 0) == hipSuccess &&
	      hipStreamWaitEvent(NULL, e, 0) == hipSuccess &&
	      hipEventDestroy(e0) == hipSuccess, "device 0 waits for 1");
	/* a new thread starts on device 0 */
	std::thread([&] { ok = refused_elsewhere(s, e, d, h); }).join();
	if (!ok)
		return false;
	CHECK(hipSetDevice(1) == hipSuccess &&
	      hipHostUnregister(h) == hipSuccess, "unregister on device 1");
	/* freeing works from any device */
	CHECK(hipSetDevice(0) == hipSuccess && hipStreamDestroy(s) ==
	      hipSuccess && hipEventDestroy(e) == hipSuccess &&
	      hipFree(d) == hipSuccess && hipHostFree(hp) == hipSuccess,
	      "destroy and free from device 0");
	return true;
}

static bool devices(void)
{
	bool ok;

	setenv("HIPEMU_DEVICES", "2", 1);
	ok = two_devices();
	hipSetDevice(0);
	(void)hipGetLastError();
	unsetenv("HIPEMU_DEVICES");
	return ok;
}

/* HIPEMU_COPY_MBPS: a copy to the device lands after its time, and its
 * stream's later work waits for it */
static bool slow_copy(void)
{
	const size_t n = 256 << 10;	/* 256 ms at 1 MB/s */
	unsigned char *d = dev<unsigned char>(n), *d2 = dev<unsigned char>(n);
	unsigned char *h = (unsigned char *)calloc(1, n);
	hipStream_t s;
	hipEvent_t e;
	bool early;

	/* set while no other thread reads the environment: before the
	 * stream's thread starts, unset after it is gone */
	setenv("HIPEMU_COPY_MBPS", "1", 1);
	CHECK(h && hipStreamCreateWithFlags(&s, hipStreamNonBlocking) ==
	      hipSuccess && hipEventCreateWithFlags(&e, 0) == hipSuccess,
	      "create");
	hipMemcpyAsync(d, h, n, hipMemcpyHostToDevice, s);
	hipMemcpyAsync(d2, d, n, hipMemcpyDeviceToDevice, s);	/* not slowed */
	hipEventRecord(e, s);
	usleep(20000);
	early = d[0] != 0xff || d[n - 1] != 0xff ||
		hipEventQuery(e) != hipErrorNotReady;
	CHECK(hipStreamSynchronize(s) == hipSuccess, "sync");
	CHECK(!early, "the copy landed at once");
	CHECK(d2[0] == 0 && d2[n - 1] == 0,
	      "the next copy on the stream did not wait for it");
	hipStreamDestroy(s);
	unsetenv("HIPEMU_COPY_MBPS");
	hipEventDestroy(e);
	hipFree(d);
	hipFree(d2);
	free(h);
	return true;
}

/* ---- faults, each in a child ---- */

__global__ void k_divergent(int *out)
{
	int v = 1;

	if (threadIdx.x % HIPEMU_WARP < 3)	/* some lanes only */
		v = __shfl_xor(v, 1, HIPEMU_WARP);
	out[threadIdx.x] = v;
}

__global__ void k_early_exit(int *out)
{
	if (threadIdx.x == 5)
		return;
	__syncthreads();
	out[threadIdx.x] = 1;
}

__global__ void k_misaligned(const float *in, float *out)
{
	const float4 v = *(const float4 *)(in + 1);

	out[threadIdx.x] = v.x;
}

__global__ void k_mma_misaligned(const float *a)
{
	wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32,
		       wmma::row_major> fa;

	wmma::load_matrix_sync(fa, a + 4, 8);	/* 16 bytes off */
}

/* Run f in a child; its stderr must hold what, and after the fault
 * every call must fail. */
static bool faults_in_child(void (*f)(int *), const char *what)
{
	int pipefd[2], status;
	char buf[4096];
	ssize_t n, got = 0;
	pid_t pid;

	CHECK(!pipe(pipefd), "pipe");
	pid = fork();
	CHECK(pid >= 0, "fork");
	if (!pid) {
		int *d = dev<int>(1024);

		dup2(pipefd[1], 2);
		f(d);
		_exit(hipDeviceSynchronize() == hipErrorLaunchFailure &&
		      hipGetLastError() == hipErrorLaunchFailure &&
		      hipMemsetAsync(d, 0, 4, NULL) == hipErrorLaunchFailure ?
			      0 : 1);
	}
	close(pipefd[1]);
	while ((n = read(pipefd[0], buf + got, sizeof(buf) - 1 - got)) > 0)
		got += n;
	buf[got] = '\0';
	close(pipefd[0]);
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && !WEXITSTATUS(status),
	      "the device did not stay faulted (status %d)", status);
	CHECK(strstr(buf, what), "stderr lacks \"%s\": %.160s", what, buf);
	return true;
}

static void divergent(int *d)
{
	hipemu_launch(k_divergent, 1, 2 * HIPEMU_WARP, NULL)(d);
}

static void early_exit(int *d)
{
	hipemu_launch(k_early_exit, 1, 64, NULL)(d);
}

static void misaligned(int *d)
{
	hipemu_launch(k_misaligned, 1, HIPEMU_WARP, NULL)((const float *)d,
							  (float *)d + 64);
}

static void mma_misaligned(int *d)
{
	hipemu_launch(k_mma_misaligned, 1, HIPEMU_WARP, NULL)((const float *)d);
}

static bool fault_mma_misaligned(void)
{
	return faults_in_child(mma_misaligned, "WMMA load or store not "
			       "32-byte aligned");
}

static bool fault_divergent_shuffle(void)
{
	return faults_in_child(divergent, "shuffle that not every lane");
}

static bool fault_syncthreads_skipped(void)
{
	return faults_in_child(early_exit, "__syncthreads that some threads");
}

static bool fault_misaligned_vector(void)
{
	return faults_in_child(misaligned, "16-byte vector load");
}

int main(void)
{
	run("shuffle", shuffle);
	run("barrier", barrier);
	run("grid", grid);
	run("bad_launch", bad_launch);
	run("mma", mma);
	run("streams", streams);
	run("memory", memory);
	run("slow_copy", slow_copy);
	run("devices", devices);
	run("fault_divergent_shuffle", fault_divergent_shuffle);
	run("fault_syncthreads_skipped", fault_syncthreads_skipped);
	run("fault_misaligned_vector", fault_misaligned_vector);
	run("fault_mma_misaligned", fault_mma_misaligned);
	printf("hipemu-w%d-self: %u passed, %u failed\n", HIPEMU_WARP, g_pass,
	       g_fail);
	return g_fail ? 1 : 0;
}
