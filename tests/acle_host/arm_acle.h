/* Test double of <arm_acle.h> for the host: the three ACLE SIMD32 intrinsics nnt_dot uses, written from their
 * definitions in the ACLE specification (Arm C Language Extensions, "SIMD32 intrinsics") and the Armv7-M
 * Architecture Reference Manual (SXTB16, SXTAB16, SMLAD), so the host can run the kernels' SIMD path and compare
 * it with the portable one. */
#ifndef NNT_TEST_ARM_ACLE_H
#define NNT_TEST_ARM_ACLE_H

#include <stdint.h>

typedef int32_t int8x4_t;
typedef int32_t int16x2_t;

static inline int32_t acle_half(int32_t x, int hi) { return (int16_t)(((uint32_t)x >> (hi ? 16 : 0)) & 0xFFFFu); }

static inline int32_t acle_byte(int32_t x, int k) { return (int8_t)(((uint32_t)x >> (8 * k)) & 0xFFu); }

static inline int16x2_t acle_pack(int32_t lo, int32_t hi) {
    return (int16x2_t)((((uint32_t)hi & 0xFFFFu) << 16) | ((uint32_t)lo & 0xFFFFu));
}

/* SXTB16: bytes 0 and 2 sign-extended to the two halfwords */
static inline int16x2_t __sxtb16(int8x4_t x) { return acle_pack(acle_byte(x, 0), acle_byte(x, 2)); }

/* SXTAB16: a's halfwords plus bytes 0 and 2 of b sign-extended, each modulo 2^16 */
static inline int16x2_t __sxtab16(int16x2_t a, int8x4_t b) {
    return acle_pack(acle_half(a, 0) + acle_byte(b, 0), acle_half(a, 1) + acle_byte(b, 2));
}

/* SMLAD: c + a.lo b.lo + a.hi b.hi (int32, wrapping; the Q flag is not modelled) */
static inline int32_t __smlad(int16x2_t a, int16x2_t b, int32_t c) {
    int64_t sum = (int64_t)c + acle_half(a, 0) * acle_half(b, 0) + acle_half(a, 1) * acle_half(b, 1);
    return (int32_t)(uint32_t)(uint64_t)sum;
}

#endif
