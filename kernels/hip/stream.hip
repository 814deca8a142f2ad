/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * stream.hip - what libmoex's GPU backend needs around the layer: the
 * plugin's ABI number, streams, events, asynchronous copies, pinned host
 * memory, host callbacks, and the plain copy kernel that moex-bench uses
 * as its device-bandwidth anchor (moek_hip.h).
 *
 * Host callbacks: hipStreamAddCallback() (cudaStreamAddCallback() on
 * NVIDIA), which runs the callback exactly once and passes the stream's
 * error. Not cudaLaunchHostFunc(): CUDA does not call that one at all once
 * the context has an error (cuLaunchHostFunc's documentation), and the
 * asynchronous run waiting for it would never complete. The callback runs
 * on a runtime thread and must not call the runtime.
 */
#include <errno.h>
#include <stdlib.h>

#include <atomic>

#include "moek_hip_impl.h"

extern "C" int moek_hip_abi(void)
{
	return MOEK_HIP_ABI;
}

extern "C" int moek_hip_stream_create(void **stream)
{
	hipStream_t s;
	hipError_t e;

	if (!stream)
		return -EINVAL;
	*stream = NULL;
	e = hipStreamCreateWithFlags(&s, hipStreamNonBlocking);
	if (e != hipSuccess)
		return moek_hip_errno(e);
	*stream = (void *)s;
	return 0;
}

extern "C" void moek_hip_stream_destroy(void *stream)
{
	if (stream)
		(void)hipStreamDestroy((hipStream_t)stream);
}

extern "C" int moek_hip_event_create(void **event)
{
	hipEvent_t ev;
	hipError_t e;

	if (!event)
		return -EINVAL;
	*event = NULL;
	e = hipEventCreateWithFlags(&ev, hipEventDefault);
	if (e != hipSuccess)
		return moek_hip_errno(e);
	*event = (void *)ev;
	return 0;
}

extern "C" void moek_hip_event_destroy(void *event)
{
	if (event)
		(void)hipEventDestroy((hipEvent_t)event);
}

extern "C" int moek_hip_event_record(void *event, void *stream)
{
	if (!event)
		return -EINVAL;
	return moek_hip_errno(hipEventRecord((hipEvent_t)event,
					     (hipStream_t)stream));
}

extern "C" int moek_hip_event_sync(void *event)
{
	if (!event)
		return -EINVAL;
	return moek_hip_errno(hipEventSynchronize((hipEvent_t)event));
}

extern "C" int moek_hip_event_elapsed(void *start, void *end, float *ms)
{
	if (!start || !end || !ms)
		return -EINVAL;
	return moek_hip_errno(hipEventElapsedTime(ms, (hipEvent_t)start,
						  (hipEvent_t)end));
}

extern "C" int moek_hip_stream_wait(void *stream, void *event)
{
	if (!event)
		return -EINVAL;
	return moek_hip_errno(hipStreamWaitEvent((hipStream_t)stream,
						 (hipEvent_t)event, 0));
}

extern "C" int moek_hip_copy_async(void *dst, const void *src, size_t bytes,
				   void *stream)
{
	if ((!dst || !src) && bytes)
		return -EINVAL;
	if (!bytes)
		return 0;
	return moek_hip_errno(hipMemcpyAsync(dst, src, bytes,
					     hipMemcpyDefault,
					     (hipStream_t)stream));
}

extern "C" int moek_hip_host_alloc(size_t bytes, void **p)
{
	hipError_t e;

	if (!p)
		return -EINVAL;
	e = hipHostMalloc(p, bytes ? bytes : 1, hipHostMallocDefault);
	if (e != hipSuccess)
		*p = NULL;
	return moek_hip_errno(e);
}

extern "C" void moek_hip_host_free(void *p)
{
	if (p)
		(void)hipHostFree(p);
}

extern "C" int moek_hip_host_alias(void *p, void **dptr)
{
	if (!p || !dptr)
		return -EINVAL;
	return moek_hip_errno(hipHostGetDevicePointer(dptr, p, 0));
}

extern "C" int moek_hip_mem_info(size_t *free_bytes, size_t *total)
{
	if (!free_bytes || !total)
		return -EINVAL;
	return moek_hip_errno(hipMemGetInfo(free_bytes, total));
}

/* ---- host callbacks ---- */

struct host_call {
	moek_hip_host_fn fn;
	void *arg;
};

static void host_tramp(hipStream_t stream, hipError_t status, void *data)
{
	struct host_call c = *(struct host_call *)data;

	(void)stream;
	free(data);
	c.fn(c.arg, status == hipSuccess ? 0 : -EIO);
}

extern "C" int moek_hip_host_fn_launch(void *stream, moek_hip_host_fn fn,
				       void *arg)
{
	struct host_call *c;
	hipError_t e;

	if (!fn)
		return -EINVAL;
	c = (struct host_call *)malloc(sizeof(*c));
	if (!c)
		return -ENOMEM;
	c->fn = fn;
	c->arg = arg;
	e = hipStreamAddCallback((hipStream_t)stream, host_tramp, c, 0);
	if (e != hipSuccess) {
		free(c);
		return moek_hip_errno(e);
	}
	return 0;
}

/* ---- the bandwidth anchor ---- */

/*
 * A grid-stride copy of 16-byte vectors, then the tail byte by byte: what
 * a device can stream, read plus write, with no cleverness.
 */
__global__ void __launch_bounds__(256)
moek_copy_kernel(uint4 *dst, const uint4 *src, size_t n16, uint8_t *dtail,
		 const uint8_t *stail, size_t ntail)
{
	const size_t stride = (size_t)gridDim.x * blockDim.x;
	size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;

	for (; i < n16; i += stride)
		dst[i] = src[i];
	i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
	if (i < ntail)
		dtail[i] = stail[i];
}

/*
 * The multiprocessors of device dev, asked once: hipGetDeviceProperties()
 * (cudaGetDeviceProperties()) takes from about a millisecond to tens of
 * them, and moex-bench times each copy between two events recorded
 * around this call, so a query per call would count that time as the
 * copy's (a 1 GiB copy takes under a millisecond on an H100).
 */
#define MOEK_SM_CACHE 64

static int sm_count(int dev, int *n)
{
	static std::atomic<int> cache[MOEK_SM_CACHE];
	hipDeviceProp_t prop;
	hipError_t e;

	if (dev >= 0 && dev < MOEK_SM_CACHE && (*n = cache[dev].load()) > 0)
		return 0;
	e = hipGetDeviceProperties(&prop, dev);
	if (e != hipSuccess)
		return moek_hip_errno(e);
	*n = prop.multiProcessorCount > 0 ? prop.multiProcessorCount : 1;
	if (dev >= 0 && dev < MOEK_SM_CACHE)
		cache[dev].store(*n);
	return 0;
}

extern "C" int moek_hip_copy_kernel(void *dst, const void *src, size_t bytes,
				    void *stream)
{
	const size_t n16 = bytes / 16;
	int dev, sms, blocks, r;
	hipError_t e;

	if (!dst || !src || ((uintptr_t)dst | (uintptr_t)src) % 16)
		return -EINVAL;
	if (!bytes)
		return 0;
	e = hipGetDevice(&dev);
	if (e != hipSuccess)
		return moek_hip_errno(e);
	r = sm_count(dev, &sms);
	if (r)
		return r;
	/* enough blocks to fill every multiprocessor a few times */
	blocks = sms * 8;
	moek_launch_clear();
	MOEK_LAUNCH(blocks, 256, (hipStream_t)stream, moek_copy_kernel)(
		(uint4 *)dst, (const uint4 *)src, n16,
		(uint8_t *)dst + n16 * 16, (const uint8_t *)src + n16 * 16,
		bytes % 16);
	return moek_hip_errno(hipGetLastError());
}
