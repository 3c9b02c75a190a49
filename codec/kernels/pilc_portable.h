// The common subset of C and CUDA C++ the kernels are written in: fixed-width integers, the
// function qualifiers and the thread index. gcc builds it for the CPU (and, with the shim in
// pilc_emu.h, the CUDA entry points as host loops); NVRTC and nvcc build it for the GPU.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define PILC_CUDA 1
#if defined(__CUDACC_RTC__)
// NVRTC ships no libc headers: the fixed-width types are spelled out (LP64 on every target).
typedef signed char int8_t;
typedef short int16_t;
typedef int int32_t;
typedef long long int64_t;
typedef unsigned char uint8_t;
typedef unsigned short uint16_t;
typedef unsigned int uint32_t;
typedef unsigned long long uint64_t;
#else
#include <stdint.h>
#endif
#define PILC_FN __device__ __forceinline__
#define PILC_NOINLINE __device__ __noinline__
#define PILC_GLOBAL extern "C" __global__
#define PILC_RESTRICT __restrict__
#define PILC_SHARED __shared__
#define PILC_THREAD_ID() ((int64_t)blockIdx.x * blockDim.x + threadIdx.x)
#define PILC_N_THREADS() ((int64_t)gridDim.x * blockDim.x)
#define PILC_SYNC() __syncthreads()
// cooperative copy into shared memory: the block's threads split the range
#define PILC_COOP_FOR(i, n) for (int64_t i = threadIdx.x; i < (n); i += blockDim.x)
#else
#include <stdint.h>
#define PILC_FN static inline __attribute__((always_inline))
#define PILC_NOINLINE static __attribute__((noinline))
#define PILC_RESTRICT __restrict
#endif

// The CPU library carries the model's entry points twice, the second copy built for x86-64-v3
// (pilc_cpu_v3.c), where gcc builds for x86-64.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(PILC_CUDA) \
    && !defined(PILC_NO_V3)
#define PILC_HAVE_V3 1
#else
#define PILC_HAVE_V3 0
#endif

// A loop the CUDA build keeps rolled (its values then stay in memory, not registers).
#if defined(PILC_CUDA)
#define PILC_ROLLED _Pragma("unroll 1")
#else
#define PILC_ROLLED
#endif
// A loop of at most a few dozen steps that the CUDA build keeps rolled and gcc unrolls: the max
// levels' local LS, whose sums and 6-10 tap solves are short loops (unrolled, the max levels
// decode 12-33% faster on one core; docs/experiments.md entry 33). Unrolling reorders no float
// operation, so every value rounds as before.
#if defined(PILC_CUDA)
#define PILC_UNROLL_CPU _Pragma("unroll 1")
#else
#define PILC_UNROLL_CPU _Pragma("GCC unroll 12")
#endif

#define PILC_MIN(a, b) ((a) < (b) ? (a) : (b))
#define PILC_MAX(a, b) ((a) > (b) ? (a) : (b))

PILC_FN int64_t pilc_abs(int64_t v) { return v < 0 ? -v : v; }
PILC_FN int32_t pilc_abs32(int32_t v) { return v < 0 ? -v : v; }
PILC_FN double pilc_fabs(double v) { return v < 0 ? -v : v; }  // no libm in kernel bodies

// floor(v) for |v| < 2^52 without libm (the same instructions on both compilers).
PILC_FN int64_t pilc_floor(double v) {
    int64_t t = (int64_t)v;  // truncates toward zero
    return t - ((double)t > v);
}

// Round half to even (numpy's np.round) for |v| < 2^51, without libm: adding and subtracting
// 1.5 * 2^52 leaves the nearest integer under the default rounding mode. Both builds compile
// with FMA contraction off, so the two operations stay two correctly rounded IEEE additions.
PILC_FN double pilc_rint(double v) {
    const double magic = 6755399441055744.0;
    return (v + magic) - magic;
}
