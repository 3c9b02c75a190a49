// The pixel model's CPU entry points (pilc_cpu_model.h) once more, built for x86-64-v3 (AVX2,
// BMI2, FMA, ...) under a target pragma, so one library runs on any x86-64 and pilc_cpu.c
// calls these where the CPU runs them (the max levels run 1.03-1.17x faster there, the others
// at the same speed: benchmarks/results/isa_speed.md). FMA
// contraction stays off (setup.py's -ffp-contract=off holds under the pragma), so the float64
// steps round exactly as in the baseline build and the CUDA one.
#include "pilc_portable.h"

#if PILC_HAVE_V3
#pragma GCC target("arch=x86-64-v3")
#include <stdlib.h>
#include <string.h>

#include "pilc_model.h"
#include "pilc_fast_lanes.h"

extern int pilc_lanes_width;  // pilc_cpu.c

static int64_t claim_n(int64_t *counter, int64_t n) {
    return __atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

#define PM_ENTRY(name) name##_v3
#define PM_ENTRY_LINKAGE __attribute__((visibility("hidden")))
#include "pilc_cpu_model.h"
#else
typedef int pilc_no_v3_build;  // ISO C: a translation unit is not empty
#endif
