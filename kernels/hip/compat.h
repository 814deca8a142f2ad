/* SPDX-License-Identifier: MIT OR LGPL-2.1-or-later */
/*
 * compat.h - one source for hipcc and nvcc.
 *
 * The kernels in kernels/hip are written against the HIP runtime API. Built
 * by hipcc they include <hip/hip_runtime.h>; built by nvcc (`nvcc -x cu`)
 * this header maps the few hip* names moex uses onto CUDA. HIP's own
 * NVIDIA headers (hip/nvidia_detail) are not used: HIP 5.2's do not build
 * with CUDA 13. Only what kernels/hip uses is mapped; add names here as
 * they are needed, never in the .hip files.
 *
 * Warp size: never assume one. MOEK_WARP is the warp (wavefront) size of
 * the target the device code is compiled for: 64 on CDNA (gfx90a,
 * gfx940), 32 on RDNA (gfx1030, wave32 by default) and on NVIDIA. In the
 * host pass it is the largest possible value (64) so that anything sized
 * by it is big enough; host code must not use it to choose launch sizes.
 * MOEK_MAX_WARPS bounds the warps of one block (1024 threads / 32).
 *
 * MOEK_MMA_TF32: 1 where gemm_mma.hip's tensor-core GEMMs are built
 * (NVIDIA's WMMA API, tf32, sm_80 and later; the emulator at warp 32).
 *
 * Launches: MOEK_LAUNCH(grid, block, stream, kernel)(args) rather than
 * kernel<<<grid, block, 0, stream>>>(args), so that a third compiler can
 * take the same sources: g++ with -DMOEK_HIP_EMU builds them against
 * tests/hipemu, a CPU emulation of the device that CI runs (every GPU
 * thread a fiber, shuffles and __syncthreads barriers). The kernel comes
 * last because a template's commas would split a macro argument.
 */
#ifndef MOEK_HIP_COMPAT_H
#define MOEK_HIP_COMPAT_H

#if defined(MOEK_HIP_EMU)
/* ---- g++ against the CPU emulator (tests/hipemu) ---- */
#include "hipemu.h"

#define MOEK_HIP_EMULATED 1
#define MOEK_WARP HIPEMU_WARP
/* the emulator's WMMA at warp 32, where it stands for an NVIDIA GPU */
#define MOEK_MMA_TF32 (HIPEMU_WARP == 32)
#define moek_shfl_xor(v, mask) __shfl_xor((v), (mask), MOEK_WARP)
#define MOEK_LAUNCH(grid, block, stream, ...)				\
	hipemu_launch(__VA_ARGS__, (grid), (block), (stream))

#elif defined(__HIPCC__)
/* ---- hipcc (AMD) ---- */
#include <hip/hip_runtime.h>

#define MOEK_HIP_AMD 1
#define MOEK_MMA_TF32 0		/* gemm_mma.hip: NVIDIA's WMMA only */

#if defined(__HIP_DEVICE_COMPILE__)
#define MOEK_WARP __AMDGCN_WAVEFRONT_SIZE
#else
#define MOEK_WARP 64
#endif

/* All lanes of the (converged) wave take part. */
#define moek_shfl_xor(v, mask) __shfl_xor((v), (mask), MOEK_WARP)
#define MOEK_LAUNCH(grid, block, stream, ...)				\
	__VA_ARGS__<<<(grid), (block), 0, (stream)>>>

#elif defined(__CUDACC__)
/* ---- nvcc (NVIDIA) ---- */
#include <cuda_runtime.h>
#include <mma.h>

#define MOEK_HIP_CUDA 1
/* WMMA tf32 needs sm_80 or later: older targets get no gemm_mma.hip
 * device code, and its launch then fails (CUDA_ARCH sm_90 by default) */
#if !defined(__CUDA_ARCH__) || __CUDA_ARCH__ >= 800
#define MOEK_MMA_TF32 1
#else
#define MOEK_MMA_TF32 0
#endif

#if defined(__CUDA_ARCH__)
#define MOEK_WARP 32
#else
#define MOEK_WARP 64
#endif

#define moek_shfl_xor(v, mask) __shfl_xor_sync(0xffffffffu, (v), (mask), MOEK_WARP)
#define MOEK_LAUNCH(grid, block, stream, ...)				\
	__VA_ARGS__<<<(grid), (block), 0, (stream)>>>

typedef cudaError_t hipError_t;
typedef cudaStream_t hipStream_t;
typedef cudaEvent_t hipEvent_t;
typedef cudaDeviceProp hipDeviceProp_t;
typedef cudaStreamCallback_t hipStreamCallback_t;

#define hipSuccess			cudaSuccess
#define hipErrorInvalidValue		cudaErrorInvalidValue
#define hipErrorMemoryAllocation	cudaErrorMemoryAllocation
#define hipErrorOutOfMemory		cudaErrorMemoryAllocation
#define hipErrorNoDevice		cudaErrorNoDevice
#define hipErrorInsufficientDriver	cudaErrorInsufficientDriver
#define hipErrorInvalidDevice		cudaErrorInvalidDevice
#define hipErrorHostMemoryAlreadyRegistered \
	cudaErrorHostMemoryAlreadyRegistered

#define hipMemcpyHostToDevice		cudaMemcpyHostToDevice
#define hipMemcpyDeviceToHost		cudaMemcpyDeviceToHost
#define hipMemcpyDeviceToDevice		cudaMemcpyDeviceToDevice
#define hipMemcpyDefault		cudaMemcpyDefault

#define hipHostMallocDefault		cudaHostAllocDefault
#define hipHostRegisterMapped		cudaHostRegisterMapped
#define hipStreamNonBlocking		cudaStreamNonBlocking
#define hipEventDefault			cudaEventDefault
#define hipEventDisableTiming		cudaEventDisableTiming
#define hipErrorNotReady		cudaErrorNotReady

#define hipGetDeviceCount		cudaGetDeviceCount
#define hipGetDevice			cudaGetDevice
#define hipSetDevice			cudaSetDevice
#define hipGetDeviceProperties		cudaGetDeviceProperties
#define hipDeviceSynchronize		cudaDeviceSynchronize
#define hipGetLastError			cudaGetLastError
#define hipGetErrorString		cudaGetErrorString
#define hipMalloc			cudaMalloc
#define hipFree				cudaFree
#define hipHostMalloc			cudaHostAlloc
#define hipHostFree			cudaFreeHost
#define hipHostRegister			cudaHostRegister
#define hipHostUnregister		cudaHostUnregister
#define hipHostGetDevicePointer		cudaHostGetDevicePointer
#define hipMemcpy			cudaMemcpy
#define hipMemcpyAsync			cudaMemcpyAsync
#define hipMemsetAsync			cudaMemsetAsync
#define hipStreamSynchronize		cudaStreamSynchronize
#define hipStreamCreateWithFlags	cudaStreamCreateWithFlags
#define hipStreamDestroy		cudaStreamDestroy
#define hipStreamWaitEvent		cudaStreamWaitEvent
#define hipStreamAddCallback		cudaStreamAddCallback
#define hipEventCreateWithFlags		cudaEventCreateWithFlags
#define hipEventDestroy			cudaEventDestroy
#define hipEventRecord			cudaEventRecord
#define hipEventSynchronize		cudaEventSynchronize
#define hipEventQuery			cudaEventQuery
#define hipEventElapsedTime		cudaEventElapsedTime
#define hipMemGetInfo			cudaMemGetInfo

#else
#error "kernels/hip is built by hipcc, by nvcc -x cu, or by g++ -DMOEK_HIP_EMU"
#endif

#define MOEK_MAX_WARPS 32

#endif /* MOEK_HIP_COMPAT_H */
