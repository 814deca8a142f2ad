/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * hipemu.h - a CPU emulation of the HIP device and runtime: as much of
 * them as kernels/hip uses, so that g++ builds those sources unchanged
 * (compat.h's MOEK_HIP_EMU branch) and CI runs tests/gpu on a machine
 * without a GPU. It checks the kernels' arithmetic, their use of warps and
 * barriers, and the host code's use of streams and events; it says
 * nothing about speed.
 *
 * The device (hipemu.cpp):
 *  - Every thread of a block is a fiber with its own stack, on one host
 *    thread. Fibers run in turn, each until it reaches a barrier: a
 *    shuffle or WMMA call (its warp's lanes meet) or __syncthreads (the
 *    whole block meets). Warps are consecutive thread ids, HIPEMU_WARP
 *    wide (32 or 64, chosen when building, as on a real target), and are
 *    released one at a time so that they drift apart between
 *    __syncthreads, as a GPU's warps may.
 *  - Faults, as a GPU would have them or worse: a shuffle that not every
 *    lane of the warp reaches (divergence), a __syncthreads that a thread
 *    skips or leaves early, a 16-byte vector load or store from an
 *    address that is not 16-byte aligned. A fault is printed on stderr
 *    with the kernel's block and thread, ends the kernel, and is sticky:
 *    every later runtime call returns hipErrorLaunchFailure.
 *  - A grid's blocks run one after another, one kernel at a time (a
 *    device lock), so __shared__ is plain static storage.
 *  - Device memory is host memory, counted against HIPEMU_MEM_MB
 *    (default 4096) so that an allocation can fail; hipMalloc fills it
 *    with 0xff bytes (NaN as floats) so that reading what nothing wrote
 *    shows in the results.
 *
 * The runtime:
 *  - Each stream is a host thread that runs its work in order. Copies,
 *    memsets, event records and host callbacks of different streams run
 *    at the same time as each other and as kernels, as they can on a GPU,
 *    so a missing event wait can show as a wrong result.
 *  - The NULL stream is the legacy one: its work waits for the blocking
 *    streams (created without hipStreamNonBlocking) and then runs on the
 *    calling thread.
 *  - hipMemcpy's direction is checked against the allocations: copying
 *    "to the device" into memory hipMalloc did not return fails.
 *
 *  - Devices: HIPEMU_DEVICES (default 1; 0 makes the device absent, and
 *    hipGetDeviceCount reports none), each named "hipemu (CPU, warp N)",
 *    all on the one CPU. The current device is per host thread, 0 until
 *    hipSetDevice(), as on CUDA; streams, events, device memory and
 *    registered or pinned host memory belong to the device current when
 *    they were made, and the runtime is strict about it: a launch, copy,
 *    memset, event record or wait, or callback on a stream (or an event
 *    record of an event) of another device than the calling thread's
 *    current one fails with hipErrorInvalidHandle (CUDA's
 *    cudaErrorInvalidResourceHandle; CUDA refuses the launch and an event
 *    record of two devices' event and stream, but queues a copy or a
 *    wait there: stricter); a copy or memset touching another
 *    device's memory, and the device alias of host memory registered for
 *    another device, fail with hipErrorInvalidValue (CUDA would copy
 *    between peers; nothing here means to), and unregistering it with
 *    hipErrorHostMemoryNotRegistered. hipMemGetInfo counts the current
 *    device's memory.
 */
#ifndef HIPEMU_H
#define HIPEMU_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <functional>
#include <tuple>
#include <type_traits>

#ifndef HIPEMU_WARP
#error "build with -DHIPEMU_WARP=32 or 64"
#endif

/* ---- qualifiers ---- */

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __shared__ static

/* ---- types ---- */

typedef int hipError_t;
enum {
	hipSuccess = 0,
	hipErrorInvalidValue = 1,
	hipErrorMemoryAllocation = 2,
	hipErrorOutOfMemory = 2,
	hipErrorInsufficientDriver = 35,
	hipErrorNoDevice = 100,
	hipErrorInvalidDevice = 101,
	hipErrorInvalidHandle = 400,
	hipErrorNotReady = 600,
	hipErrorHostMemoryAlreadyRegistered = 712,
	hipErrorHostMemoryNotRegistered = 713,
	hipErrorLaunchFailure = 719,
};

enum hipMemcpyKind {
	hipMemcpyHostToHost = 0,
	hipMemcpyHostToDevice = 1,
	hipMemcpyDeviceToHost = 2,
	hipMemcpyDeviceToDevice = 3,
	hipMemcpyDefault = 4,
};

#define hipHostMallocDefault	0u
#define hipHostRegisterDefault	0u
#define hipHostRegisterMapped	2u
#define hipStreamDefault	0u
#define hipStreamNonBlocking	1u
#define hipEventDefault		0u
#define hipEventDisableTiming	2u

typedef struct hipemu_stream *hipStream_t;
typedef struct hipemu_event *hipEvent_t;
typedef void (*hipStreamCallback_t)(hipStream_t stream, hipError_t status,
				    void *data);

struct hipDeviceProp_t {
	char name[256];
	size_t totalGlobalMem;
	int warpSize;
	int multiProcessorCount;
	int maxThreadsPerBlock;
};

struct dim3 {
	unsigned int x, y, z;
	dim3(unsigned int a = 1, unsigned int b = 1, unsigned int c = 1)
		: x(a), y(b), z(c)
	{
	}
};

struct hipemu_uint3 {
	unsigned int x, y, z;
};

/* ---- the device's threads (hipemu.cpp) ---- */

enum hipemu_state {
	HIPEMU_READY,
	HIPEMU_AT_SHUFFLE,
	HIPEMU_AT_SYNC,
	HIPEMU_DONE,
};

struct hipemu_fiber {
	void *sp;			/* saved stack pointer */
	char *stack;
	hipemu_uint3 tid;
	unsigned int linear;		/* thread id in the block */
	int state;			/* enum hipemu_state */
	int shfl_mask;			/* what this lane's shuffle asked */
	uint64_t slot;			/* the value it offers */
};

struct hipemu_grid {
	hipemu_uint3 block, bdim, gdim;
};

/* The fiber running now and its grid: read by one host thread at a time
 * (the one holding the device lock). */
extern hipemu_fiber *hipemu_cur;
extern hipemu_grid hipemu_now;

#define threadIdx (hipemu_cur->tid)
#define blockIdx (hipemu_now.block)
#define blockDim (hipemu_now.bdim)
#define gridDim (hipemu_now.gdim)

void hipemu_wait(int state);
hipemu_fiber *hipemu_lane(unsigned int linear);
void hipemu_fault(const char *what, const void *addr);
void hipemu_check_align(const void *p, size_t n, const char *what);

static inline void __syncthreads(void)
{
	hipemu_wait(HIPEMU_AT_SYNC);
}

/*
 * __shfl_xor over the whole warp: every lane offers its value, waits for
 * all the others, reads its partner's, and waits again before anyone
 * offers the next one.
 */
template <typename T> static inline T __shfl_xor(T v, int mask, int width)
{
	static_assert(sizeof(T) <= sizeof(uint64_t), "shuffle of at most 8 bytes");
	hipemu_fiber *f = hipemu_cur;
	const unsigned int lane = f->linear % HIPEMU_WARP;
	unsigned int src;
	T r;

	if (width != HIPEMU_WARP) {
		hipemu_fault("shuffle width is not the warp size", NULL);
		return v;
	}
	memcpy(&f->slot, &v, sizeof(T));
	f->shfl_mask = mask;
	hipemu_wait(HIPEMU_AT_SHUFFLE);
	src = lane ^ (unsigned int)mask;
	memcpy(&r, src < HIPEMU_WARP ?
		   &hipemu_lane(f->linear - lane + src)->slot : &f->slot,
	       sizeof(T));
	hipemu_wait(HIPEMU_AT_SHUFFLE);
	return r;
}

/* 16-byte vectors: a load or store through a misaligned address faults. */
template <typename T> struct __attribute__((aligned(16))) hipemu_vec4 {
	T x, y, z, w;
	hipemu_vec4() = default;
	hipemu_vec4(const hipemu_vec4 &o) : x(o.x), y(o.y), z(o.z), w(o.w)
	{
		hipemu_check_align(&o, 16, "16-byte vector load");
	}
	hipemu_vec4 &operator=(const hipemu_vec4 &o)
	{
		hipemu_check_align(&o, 16, "16-byte vector load");
		hipemu_check_align(this, 16, "16-byte vector store");
		x = o.x;
		y = o.y;
		z = o.z;
		w = o.w;
		return *this;
	}
};
typedef hipemu_vec4<float> float4;
typedef hipemu_vec4<uint32_t> uint4;

/* 8-byte vectors: the same at 8 bytes. */
template <typename T> struct __attribute__((aligned(8))) hipemu_vec2 {
	T x, y;
	hipemu_vec2() = default;
	hipemu_vec2(const hipemu_vec2 &o) : x(o.x), y(o.y)
	{
		hipemu_check_align(&o, 8, "8-byte vector load");
	}
	hipemu_vec2 &operator=(const hipemu_vec2 &o)
	{
		hipemu_check_align(&o, 8, "8-byte vector load");
		hipemu_check_align(this, 8, "8-byte vector store");
		x = o.x;
		y = o.y;
		return *this;
	}
};
typedef hipemu_vec2<uint32_t> uint2;

static inline float __uint_as_float(uint32_t u)
{
	float f;

	memcpy(&f, &u, sizeof(f));
	return f;
}

static inline uint32_t __float_as_uint(float f)
{
	uint32_t u;

	memcpy(&u, &f, sizeof(u));
	return u;
}

template <typename T> static inline T atomicAdd(T *p, T v)
{
	return __atomic_fetch_add(p, v, __ATOMIC_RELAXED);
}

/*
 * ---- NVIDIA's WMMA API, tf32 m16n16k8 (gemm_mma.hip) ----
 *
 * The fragments' layout is opaque on a GPU; here a lane holds elements
 * lane, lane + warp, lane + 2 warp... of the row-major tile, a layout no
 * kernel could assume by accident. Loads, stores and MMAs are warp-wide:
 * every lane must reach them (a barrier, as a shuffle), pointers must be
 * 32-byte aligned and ldm a multiple of 4 floats, or the device faults.
 * mma_sync() reads its inputs as tf32 (the low 13 bits cut, as the
 * hardware ignores them) and accumulates in f32.
 */
namespace nvcuda {
namespace wmma {
struct matrix_a;
struct matrix_b;
struct accumulator;
struct row_major;
struct col_major;
namespace precision {
struct tf32;
}
enum layout_t { mem_row_major, mem_col_major };

template <typename Use, int M, int N, int K> struct hipemu_dims;
template <int M, int N, int K> struct hipemu_dims<matrix_a, M, N, K> {
	static constexpr int rows = M, cols = K;
};
template <int M, int N, int K> struct hipemu_dims<matrix_b, M, N, K> {
	static constexpr int rows = K, cols = N;
};
template <int M, int N, int K> struct hipemu_dims<accumulator, M, N, K> {
	static constexpr int rows = M, cols = N;
};

template <typename Use, int M, int N, int K, typename T,
	  typename Layout = void>
struct fragment {
	static constexpr int rows = hipemu_dims<Use, M, N, K>::rows;
	static constexpr int cols = hipemu_dims<Use, M, N, K>::cols;
	static constexpr int num_elements = rows * cols / HIPEMU_WARP;
	static_assert(rows * cols % HIPEMU_WARP == 0, "whole warps");
	float x[num_elements];
};

void hipemu_mma_enter(const void *p, unsigned int ldm);
void hipemu_mma_wait(void);
void hipemu_mma_exchange(const void *mine);
const void *hipemu_mma_peer(unsigned int lane);

/* this fiber's lane: its fragment elements are lane + i * warp */
static inline unsigned int hipemu_frag_lane(void)
{
	return hipemu_cur->linear % HIPEMU_WARP;
}

static inline float __float_to_tf32(float f)
{
	uint32_t u = __float_as_uint(f);

	if ((u & 0x7f800000u) != 0x7f800000u)	/* finite: nearest, ties away */
		u = (u + 0x1000u) & ~0x1fffu;
	return __uint_as_float(u);
}

template <typename F> static inline void fill_fragment(F &f, float v)
{
	for (int i = 0; i < F::num_elements; i++)
		f.x[i] = v;
}

template <typename Use, int M, int N, int K, typename T, typename L>
static inline void load_matrix_sync(fragment<Use, M, N, K, T, L> &f,
				    const float *p, unsigned int ldm)
{
	typedef fragment<Use, M, N, K, T, L> F;
	const unsigned int lane = hipemu_frag_lane();
	const bool rowm = std::is_same<L, row_major>::value;

	hipemu_mma_enter(p, ldm);
	for (int i = 0; i < F::num_elements; i++) {
		const unsigned int e = lane + (unsigned int)i * HIPEMU_WARP;
		const unsigned int r = e / F::cols, c = e % F::cols;

		f.x[i] = rowm ? p[r * ldm + c] : p[c * ldm + r];
	}
}

template <int M, int N, int K>
static inline void store_matrix_sync(float *p,
				     const fragment<accumulator, M, N, K, float> &f,
				     unsigned int ldm, layout_t layout)
{
	typedef fragment<accumulator, M, N, K, float> F;
	const unsigned int lane = hipemu_frag_lane();

	hipemu_mma_enter(p, ldm);
	for (int i = 0; i < F::num_elements; i++) {
		const unsigned int e = lane + (unsigned int)i * HIPEMU_WARP;
		const unsigned int r = e / F::cols, c = e % F::cols;

		if (layout == mem_row_major)
			p[r * ldm + c] = f.x[i];
		else
			p[c * ldm + r] = f.x[i];
	}
}

static inline float hipemu_tf32_in(float f)
{
	return __uint_as_float(__float_as_uint(f) & ~0x1fffu);
}

/* Per warp of the running block: the product one lane computes for all. */
float *hipemu_mma_result(void);

template <int M, int N, int K, typename T, typename LA, typename LB>
static inline void mma_sync(fragment<accumulator, M, N, K, float> &d,
			    const fragment<matrix_a, M, N, K, T, LA> &a,
			    const fragment<matrix_b, M, N, K, T, LB> &b,
			    const fragment<accumulator, M, N, K, float> &c)
{
	typedef fragment<accumulator, M, N, K, float> FC;
	typedef fragment<matrix_a, M, N, K, T, LA> FA;
	typedef fragment<matrix_b, M, N, K, T, LB> FB;
	struct mine {
		const FA *a;
		const FB *b;
		const FC *c;
	} me = { &a, &b, &c };
	const unsigned int lane = hipemu_frag_lane();
	float *res = hipemu_mma_result();

	static_assert(M * N <= 256, "the result buffer holds 16 x 16");
	hipemu_mma_exchange(&me);	/* every lane's fragments visible */
	if (lane == 0) {
		/* the whole tile, row-major, from every lane's elements */
		float ta[M][K], tb[K][N], tc[M][N];

		for (unsigned int l = 0; l < HIPEMU_WARP; l++) {
			const mine *p = (const mine *)hipemu_mma_peer(l);

			for (int i = 0; i < FA::num_elements; i++) {
				const unsigned int e = l + i * HIPEMU_WARP;

				ta[e / K][e % K] = hipemu_tf32_in(p->a->x[i]);
			}
			for (int i = 0; i < FB::num_elements; i++) {
				const unsigned int e = l + i * HIPEMU_WARP;

				tb[e / N][e % N] = hipemu_tf32_in(p->b->x[i]);
			}
			for (int i = 0; i < FC::num_elements; i++) {
				const unsigned int e = l + i * HIPEMU_WARP;

				tc[e / N][e % N] = p->c->x[i];
			}
		}
		for (int r = 0; r < M; r++)
			for (int col = 0; col < N; col++) {
				float acc = tc[r][col];

				for (int k = 0; k < K; k++)
					acc = fmaf(ta[r][k], tb[k][col], acc);
				res[r * N + col] = acc;
			}
	}
	hipemu_mma_wait();		/* the product is there, c was read */
	for (int i = 0; i < FC::num_elements; i++)
		d.x[i] = res[lane + i * HIPEMU_WARP];
}
} /* namespace wmma */
} /* namespace nvcuda */

/* ---- the runtime (hipemu.cpp) ---- */

hipError_t hipGetDeviceCount(int *n);
hipError_t hipGetDevice(int *d);
hipError_t hipSetDevice(int d);
hipError_t hipGetDeviceProperties(hipDeviceProp_t *p, int d);
hipError_t hipDeviceSynchronize(void);
hipError_t hipGetLastError(void);
const char *hipGetErrorString(hipError_t e);

hipError_t hipMalloc(void **p, size_t bytes);
hipError_t hipFree(void *p);
hipError_t hipHostMalloc(void **p, size_t bytes, unsigned int flags);
hipError_t hipHostFree(void *p);
hipError_t hipHostRegister(void *p, size_t bytes, unsigned int flags);
hipError_t hipHostUnregister(void *p);
hipError_t hipHostGetDevicePointer(void **d, void *h, unsigned int flags);
hipError_t hipMemGetInfo(size_t *free_bytes, size_t *total);

hipError_t hipMemcpy(void *dst, const void *src, size_t n, hipMemcpyKind k);
hipError_t hipMemcpyAsync(void *dst, const void *src, size_t n,
			  hipMemcpyKind k, hipStream_t s);
hipError_t hipMemsetAsync(void *dst, int v, size_t n, hipStream_t s);

hipError_t hipStreamCreateWithFlags(hipStream_t *s, unsigned int flags);
hipError_t hipStreamDestroy(hipStream_t s);
hipError_t hipStreamSynchronize(hipStream_t s);
hipError_t hipStreamWaitEvent(hipStream_t s, hipEvent_t e, unsigned int flags);
hipError_t hipStreamAddCallback(hipStream_t s, hipStreamCallback_t fn,
				void *data, unsigned int flags);

hipError_t hipEventCreateWithFlags(hipEvent_t *e, unsigned int flags);
hipError_t hipEventDestroy(hipEvent_t e);
hipError_t hipEventRecord(hipEvent_t e, hipStream_t s);
hipError_t hipEventSynchronize(hipEvent_t e);
hipError_t hipEventQuery(hipEvent_t e);
hipError_t hipEventElapsedTime(float *ms, hipEvent_t a, hipEvent_t b);

/* ---- launches ---- */

/*
 * Checks the launch's shape now (a bad one is the caller's last error)
 * and queues the grid on the stream: run_thread(ctx) runs one thread.
 */
void hipemu_launch_grid(dim3 grid, dim3 block, hipStream_t s,
			std::function<void()> run_thread);

/*
 * MOEK_LAUNCH(grid, block, stream, kernel)(args) is
 * hipemu_launch(kernel, grid, block, stream)(args): the arguments are
 * converted to the kernel's parameter types and copied, as a launch
 * does, and every thread calls the kernel with them.
 */
template <typename... P> struct hipemu_launcher {
	void (*kernel)(P...);
	dim3 grid, block;
	hipStream_t stream;

	void operator()(P... args) const
	{
		std::tuple<P...> params(args...);
		void (*k)(P...) = kernel;

		hipemu_launch_grid(grid, block, stream,
				   [k, params]() { std::apply(k, params); });
	}
};

template <typename... P>
static inline hipemu_launcher<P...>
hipemu_launch(void (*kernel)(P...), dim3 grid, dim3 block, hipStream_t s)
{
	return hipemu_launcher<P...>{ kernel, grid, block, s };
}

#endif /* HIPEMU_H */
