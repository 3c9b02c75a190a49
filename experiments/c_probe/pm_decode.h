#pragma once
#include <stdint.h>

// The decode entry point every driver (scalar.c, interleave.c) exports: one parameter list,
// the ABI that c_decode_probe.py calls through ctypes and main.c links against.
#define PM_DECODE_PARAMS                                                                       \
    const uint8_t *data, const int64_t *bb, const int64_t *boxes, int64_t n_tiles,             \
        const uint8_t *vq, int use_vq, const int64_t *coefs, const int64_t *prior,             \
        uint8_t *planes, int64_t n_ch, int64_t H, int64_t W, int64_t *err, const uint8_t *bk,  \
        const uint32_t *fc, const uint8_t *e_bucket, const uint8_t *lom, const int64_t *crc,   \
        const int32_t *recip, const uint8_t *grad_class

int pm_decode(PM_DECODE_PARAMS);
