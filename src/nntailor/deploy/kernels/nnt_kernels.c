/* nntailor int8 kernels: see nnt_kernels.h. Loop order and rounding are TFLite Micro's reference kernels'.
 *
 * No int32 sum below can wrap for a model the generator accepts: IntModel.prepare bounds every MAC op's
 * accumulator, sum |w| max|x - zp| + |bias| < 2^31, per output channel (deploy/intmodel.py, _check_accumulator),
 * and each kernel states the bound of its own sums. Shifts of negative values go through uint32_t, so the
 * wrap that TFLM's int32 shift has is defined behaviour here.
 */
#include "nnt_kernels.h"

#include <string.h>

#if defined(__ARM_FEATURE_SIMD32)
#include <arm_acle.h>
#endif

#if defined(__ARM_FEATURE_SIMD32)
/* x rotated right by 8 (this gcc's arm_acle.h has no __ror): the idiom gcc folds into SXTB16/SXTAB16's ROR #8 */
static inline uint32_t nnt_ror8(uint32_t x) { return (x >> 8) | (x << 24); }
#endif

#define NNT_INT32_MIN (-2147483647 - 1)
#define NNT_INT32_MAX 2147483647
/* the largest conv window gathered on the stack (int16: 512 bytes); larger ones take the row path */
#define NNT_WINDOW_MAX 256

static inline int32_t nnt_clamp(int32_t x, int32_t lo, int32_t hi) { return x < lo ? lo : (x > hi ? hi : x); }

/* x + zp clamped to [lo, hi], without the int32 sum (x can be INT32_MAX after a saturated SRDHM) */
static inline int8_t nnt_offset_clamp(int32_t x, int32_t zp, int32_t lo, int32_t hi) {
    return (int8_t)(nnt_clamp(x, lo - zp, hi - zp) + zp);
}

/* gemmlowp SaturatingRoundingDoublingHighMul: the high 32 bits of 2ab, (ab + nudge) / 2^31 with C's truncating
 * division (nudge 2^30 for ab >= 0, 1 - 2^30 below). For ab < 0, trunc(y / 2^31) = floor((y + 2^31 - 1) / 2^31)
 * and y + 2^31 - 1 = ab + 2^30, so both signs are floor((ab + 2^30) / 2^31): one SMULL, an add with carry and a
 * 64-bit shift, no division. The low 32 bits of that shift are bits 31..62 of ab + 2^30 whether the shift is
 * arithmetic or logical, so it is done on uint64_t (defined in C99); |ab| <= 2^62 fits int64, and the one
 * product that does not fit the result (INT32_MIN^2) saturates. */
static inline int32_t nnt_srdhm_(int32_t a, int32_t b) {
    if (a == NNT_INT32_MIN && b == NNT_INT32_MIN) return NNT_INT32_MAX;
    return (int32_t)(uint32_t)((uint64_t)((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
}

/* gemmlowp RoundingDivideByPOT: x / 2^exponent rounded half away from zero, 0 <= exponent <= 31 */
static inline int32_t nnt_rdbpot_(int32_t x, int32_t exponent) {
    const int32_t mask = (int32_t)(((int64_t)1 << exponent) - 1);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* TFLM MultiplyByQuantizedMultiplier: x M 2^(shift - 31). shift <= 31 (every real multiplier is < 2^31).
 * Double rounding (TFLM's default): SRDHM of x 2^max(shift, 0), wrapping as TFLM's int32 shift does, then
 * RDBPOT by max(-shift, 0). Single rounding (TFLITE_SINGLE_ROUNDING): one 64-bit product rounded once; with the
 * shift clamped to [-31, 30], |x M| + 2^61 < 2^63. */
static inline int32_t nnt_requantize_(int32_t x, int32_t multiplier, int32_t shift) {
#if defined(NNT_SINGLE_ROUNDING)
    int32_t total;
    int64_t result;
    if (shift > 30) {
        multiplier = NNT_INT32_MAX;
        shift = 30;
    }
    total = 31 - shift;
    result = ((int64_t)x * (int64_t)multiplier + ((int64_t)1 << (total - 1))) >> total;
    if (result > NNT_INT32_MAX) return NNT_INT32_MAX;
    if (result < NNT_INT32_MIN) return NNT_INT32_MIN;
    return (int32_t)result;
#else
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    return nnt_rdbpot_(nnt_srdhm_((int32_t)((uint32_t)x << left), multiplier), right);
#endif
}

/* sum (x[i] + x_offset) w[i] over n: the inner product of conv, pointwise conv and fully connected.
 * |x + x_offset| <= 255 and |w| <= 127, so each product fits int16 x int16 and the sum is bounded by the
 * accumulator check. The SIMD path (ARMv7E-M DSP, ACLE) takes four int8 at a time: SXTAB16 sign-extends bytes
 * 0 and 2 (and, after a shift by 8, bytes 1 and 3) into int16 pairs while adding the offset to each half
 * (|x + offset| <= 255 fits a half), and SMLAD multiplies both pairs and adds them to the accumulator, as
 * CMSIS-NN's kernels pack int8 into int16x2. The products are the same integers, summed in another order;
 * int32 addition is exact below the bound, so both paths give identical results. */
static inline int32_t nnt_dot_(const int8_t *x, const int8_t *w, int32_t n, int32_t x_offset) {
    int32_t acc = 0;
    int32_t i = 0;
#if defined(__ARM_FEATURE_SIMD32)
    const uint32_t half = (uint32_t)(uint16_t)x_offset;
    const int16x2_t offset = (int16x2_t)((half << 16) | half);
    for (; i + 4 <= n; i += 4) {
        uint32_t xv, wv;
        memcpy(&xv, x + i, 4); /* an unaligned word load */
        memcpy(&wv, w + i, 4);
        acc = __smlad(__sxtab16(offset, (int8x4_t)xv), __sxtb16((int8x4_t)wv), acc);
        acc = __smlad(__sxtab16(offset, (int8x4_t)(xv >> 8)), __sxtb16((int8x4_t)(wv >> 8)), acc);
    }
#endif
#if !defined(__ARM_FEATURE_SIMD32)
    /* blocks of a fixed 16: a loop the host compiler vectorizes at -O2 (no epilogue to cost) */
    for (; i + 16 <= n; i += 16) {
        int32_t j, block = 0;
        for (j = 0; j < 16; ++j) {
            /* int16 operands (|x + offset| <= 255): the int16 x int16 -> int32 dot product pattern (PMADDWD) */
            const int16_t xv = (int16_t)(x[i + j] + x_offset);
            const int16_t wv = w[i + j];
            block += xv * wv;
        }
        acc += block;
    }
#endif
    for (; i < n; ++i) acc += ((int32_t)x[i] + x_offset) * (int32_t)w[i];
    return acc;
}

/* two output channels' inner products over the same input, added to acc[0] and acc[1]: on the SIMD path the
 * input is loaded and unpacked once for both rows (as CMSIS-NN's matrix kernels share a column between two
 * rows), which takes the loop from 11 to 8.5 instructions per four MACs. Same bound and the same sums as
 * nnt_dot. */
static inline void nnt_dot2_(const int8_t *x, const int8_t *w0, const int8_t *w1, int32_t n, int32_t x_offset,
                             int32_t acc[2]) {
#if defined(__ARM_FEATURE_SIMD32)
    const uint32_t half = (uint32_t)(uint16_t)x_offset;
    const int16x2_t offset = (int16x2_t)((half << 16) | half);
    int32_t a0 = 0, a1 = 0, i = 0;
    for (; i + 4 <= n; i += 4) {
        uint32_t xv, v0, v1;
        int16x2_t x02, x13;
        memcpy(&xv, x + i, 4);
        memcpy(&v0, w0 + i, 4);
        memcpy(&v1, w1 + i, 4);
        x02 = __sxtab16(offset, (int8x4_t)xv);
        x13 = __sxtab16(offset, (int8x4_t)(xv >> 8));
        a0 = __smlad(x02, __sxtb16((int8x4_t)v0), a0);
        a0 = __smlad(x13, __sxtb16((int8x4_t)(v0 >> 8)), a0);
        a1 = __smlad(x02, __sxtb16((int8x4_t)v1), a1);
        a1 = __smlad(x13, __sxtb16((int8x4_t)(v1 >> 8)), a1);
    }
    for (; i < n; ++i) {
        const int32_t xi = (int32_t)x[i] + x_offset;
        a0 += xi * w0[i];
        a1 += xi * w1[i];
    }
    acc[0] += a0;
    acc[1] += a1;
#else
    acc[0] += nnt_dot_(x, w0, n, x_offset);
    acc[1] += nnt_dot_(x, w1, n, x_offset);
#endif
}

/* sum window[i] w[i] over n, the window already offset (int16, |.| <= 255, padded taps 0): the conv path for
 * windows whose rows are short (a first layer on one channel), gathered once per output pixel */
static inline int32_t nnt_dot_window(const int16_t *window, const int8_t *w, int32_t n) {
    int32_t acc = 0, i = 0;
    for (; i + 16 <= n; i += 16) {
        int32_t j, block = 0;
        for (j = 0; j < 16; ++j) block += window[i + j] * (int16_t)w[i + j];
        acc += block;
    }
    for (; i < n; ++i) acc += window[i] * (int32_t)w[i];
    return acc;
}

/* the exported helpers (nnt_kernels.h); the kernels call the inline versions */
int32_t nnt_srdhm(int32_t a, int32_t b) { return nnt_srdhm_(a, b); }
int32_t nnt_rdbpot(int32_t x, int32_t exponent) { return nnt_rdbpot_(x, exponent); }
int32_t nnt_requantize(int32_t x, int32_t multiplier, int32_t shift) { return nnt_requantize_(x, multiplier, shift); }
int32_t nnt_dot(const int8_t *x, const int8_t *w, int32_t n, int32_t x_offset) { return nnt_dot_(x, w, n, x_offset); }

/* the filter taps [start, end) of a window at input position origin that fall inside [0, size): padded taps
 * are skipped, which equals padding with the input zero point (x - zp = 0 there) */
static void nnt_taps(int32_t origin, int32_t size, int32_t kernel, int32_t dilation, int32_t *start,
                     int32_t *end) {
    int32_t s = 0, e = kernel;
    if (origin < 0) s = (-origin + dilation - 1) / dilation;
    if (origin >= size) e = s;
    else if (origin + (kernel - 1) * dilation > size - 1) e = (size - 1 - origin) / dilation + 1;
    *start = s;
    *end = e > s ? e : s;
}

static inline int8_t nnt_mac_output(int32_t acc, const nnt_quant *q, int32_t channel) {
    const int32_t k = q->per_channel ? channel : 0;
    return nnt_offset_clamp(nnt_requantize_(acc, q->multiplier[k], q->shift[k]), q->output_offset, q->act_min,
                            q->act_max);
}

/* integer_ops/conv.h ConvPerChannel: input NHWC, weight OHWI. Int32 bound: the accumulator check of the
 * generator, sum |w| 255 + |bias| < 2^31 per channel. With dilation 1 across, the taps of one filter row are
 * contiguous in input and weight alike (NHWC, OHWI), so a row is one inner product. */
void nnt_conv(const nnt_geometry *g, const nnt_quant *q, const int8_t *input, const int8_t *weight,
              const int32_t *bias, int8_t *output) {
    const int32_t window_size = g->kernel_h * g->kernel_w * g->in_c;
    int32_t b, oy, ox, oc, ky, kx;
    for (b = 0; b < g->batches; ++b) {
        const int8_t *in_b = input + (int64_t)b * g->in_h * g->in_w * g->in_c;
        for (oy = 0; oy < g->out_h; ++oy) {
            const int32_t y0 = oy * g->stride_h - g->pad_top;
            int32_t ky0, ky1;
            nnt_taps(y0, g->in_h, g->kernel_h, g->dilation_h, &ky0, &ky1);
            for (ox = 0; ox < g->out_w; ++ox) {
                const int32_t x0 = ox * g->stride_w - g->pad_left;
                int32_t kx0, kx1;
                nnt_taps(x0, g->in_w, g->kernel_w, g->dilation_w, &kx0, &kx1);
                if (window_size <= NNT_WINDOW_MAX && g->kernel_w * g->in_c < 32) {
                    /* short filter rows: gather the window once (x - zp, 0 at padded taps, which adds nothing,
                     * as a skipped tap) and take one inner product per output channel over all of it */
                    int16_t window[NNT_WINDOW_MAX];
                    int32_t k = 0, c;
                    for (ky = 0; ky < g->kernel_h; ++ky) {
                        const int32_t iy = y0 + ky * g->dilation_h;
                        for (kx = 0; kx < g->kernel_w; ++kx) {
                            const int32_t ix = x0 + kx * g->dilation_w;
                            if (ky >= ky0 && ky < ky1 && kx >= kx0 && kx < kx1) {
                                const int8_t *src = in_b + ((int64_t)iy * g->in_w + ix) * g->in_c;
                                for (c = 0; c < g->in_c; ++c) window[k++] = (int16_t)(src[c] + q->input_offset);
                            } else {
                                for (c = 0; c < g->in_c; ++c) window[k++] = 0;
                            }
                        }
                    }
                    for (oc = 0; oc < g->out_c; ++oc) {
                        int32_t acc = nnt_dot_window(window, weight + (int64_t)oc * window_size, window_size);
                        if (bias) acc += bias[oc];
                        *output++ = nnt_mac_output(acc, q, oc);
                    }
                    continue;
                }
                for (oc = 0; oc < g->out_c; oc += 2) {
                    /* two output channels at a time (the last alone when out_c is odd) */
                    const int32_t pair = oc + 1 < g->out_c;
                    const int8_t *w0 = weight + (int64_t)oc * window_size;
                    const int8_t *w1 = pair ? w0 + window_size : w0;
                    int32_t acc[2] = {0, 0};
                    for (ky = ky0; ky < ky1; ++ky) {
                        const int32_t iy = y0 + ky * g->dilation_h;
                        const int8_t *in_row = in_b + (int64_t)iy * g->in_w * g->in_c;
                        const int64_t w_row = (int64_t)ky * g->kernel_w * g->in_c;
                        if (g->dilation_w == 1) {
                            const int64_t at = (int64_t)kx0 * g->in_c;
                            nnt_dot2_(in_row + (int64_t)(x0 + kx0) * g->in_c, w0 + w_row + at, w1 + w_row + at,
                                      (kx1 - kx0) * g->in_c, q->input_offset, acc);
                        } else {
                            for (kx = kx0; kx < kx1; ++kx) {
                                const int32_t ix = x0 + kx * g->dilation_w;
                                const int64_t at = w_row + (int64_t)kx * g->in_c;
                                nnt_dot2_(in_row + (int64_t)ix * g->in_c, w0 + at, w1 + at, g->in_c,
                                          q->input_offset, acc);
                            }
                        }
                    }
                    *output++ = nnt_mac_output(bias ? acc[0] + bias[oc] : acc[0], q, oc);
                    if (pair) *output++ = nnt_mac_output(bias ? acc[1] + bias[oc + 1] : acc[1], q, oc + 1);
                }
            }
        }
    }
}

/* integer_ops/depthwise_conv.h DepthwiseConvPerChannel: weight [1, KH, KW, C M], output channel ic M + m reads
 * input channel ic. Int32 bound: sum over the KH KW taps of |w| 255 + |bias| < 2^31 (the generator's check). */
void nnt_depthwise(const nnt_geometry *g, int32_t depth_multiplier, const nnt_quant *q, const int8_t *input,
                   const int8_t *weight, const int32_t *bias, int8_t *output) {
    int32_t b, oy, ox, ic, m, ky, kx;
    for (b = 0; b < g->batches; ++b) {
        const int8_t *in_b = input + (int64_t)b * g->in_h * g->in_w * g->in_c;
        for (oy = 0; oy < g->out_h; ++oy) {
            const int32_t y0 = oy * g->stride_h - g->pad_top;
            int32_t ky0, ky1;
            nnt_taps(y0, g->in_h, g->kernel_h, g->dilation_h, &ky0, &ky1);
            for (ox = 0; ox < g->out_w; ++ox) {
                const int32_t x0 = ox * g->stride_w - g->pad_left;
                int32_t kx0, kx1;
                nnt_taps(x0, g->in_w, g->kernel_w, g->dilation_w, &kx0, &kx1);
                ic = 0;
                if (depth_multiplier == 1) {
                    /* output channel = input channel: 16 channels at a time, contiguous in input and weight
                     * alike, so the host compiler vectorizes the tap loop; the same sums per channel */
                    for (; ic + 16 <= g->in_c; ic += 16) {
                        int32_t acc[16], j;
                        for (j = 0; j < 16; ++j) acc[j] = 0;
                        for (ky = ky0; ky < ky1; ++ky) {
                            const int32_t iy = y0 + ky * g->dilation_h;
                            for (kx = kx0; kx < kx1; ++kx) {
                                const int32_t ix = x0 + kx * g->dilation_w;
                                const int8_t *xs = in_b + ((int64_t)iy * g->in_w + ix) * g->in_c + ic;
                                const int8_t *ws = weight + ((int64_t)ky * g->kernel_w + kx) * g->out_c + ic;
                                for (j = 0; j < 16; ++j) {
                                    const int16_t xv = (int16_t)(xs[j] + q->input_offset);
                                    acc[j] += xv * ws[j];
                                }
                            }
                        }
                        for (j = 0; j < 16; ++j) {
                            *output++ = nnt_mac_output(bias ? acc[j] + bias[ic + j] : acc[j], q, ic + j);
                        }
                    }
                }
                for (; ic < g->in_c; ++ic) {
                    for (m = 0; m < depth_multiplier; ++m) {
                        const int32_t oc = ic * depth_multiplier + m;
                        int32_t acc = 0;
                        for (ky = ky0; ky < ky1; ++ky) {
                            const int32_t iy = y0 + ky * g->dilation_h;
                            for (kx = kx0; kx < kx1; ++kx) {
                                const int32_t ix = x0 + kx * g->dilation_w;
                                const int32_t x = in_b[((int64_t)iy * g->in_w + ix) * g->in_c + ic];
                                const int32_t w = weight[((int64_t)ky * g->kernel_w + kx) * g->out_c + oc];
                                acc += (x + q->input_offset) * w;
                            }
                        }
                        if (bias) acc += bias[oc];
                        *output++ = nnt_mac_output(acc, q, oc);
                    }
                }
            }
        }
    }
}

/* one output of the pointwise kernel: TFLM MultiplyByQuantizedMultiplier (double rounding) with the shift
 * already split into its left and right parts, or the single rounding of nnt_requantize_ */
static inline int8_t nnt_pointwise_output(int32_t acc, int32_t multiplier, int32_t shift, int32_t left,
                                          int32_t right, const nnt_quant q) {
#if defined(NNT_SINGLE_ROUNDING)
    (void)left;
    (void)right;
    return nnt_offset_clamp(nnt_requantize_(acc, multiplier, shift), q.output_offset, q.act_min, q.act_max);
#else
    /* nnt_srdhm_ without its saturation: Prepare's multipliers lie in [2^30, 2^31) or are 0 (TFLM
     * QuantizeMultiplier), never INT32_MIN, so the one product it saturates cannot occur */
    const int64_t ab = (int64_t)(int32_t)((uint32_t)acc << left) * (int64_t)multiplier;
    (void)shift;
    return nnt_offset_clamp(nnt_rdbpot_((int32_t)(uint32_t)((uint64_t)(ab + ((int64_t)1 << 30)) >> 31), right),
                            q.output_offset, q.act_min, q.act_max);
#endif
}

#if defined(__ARM_FEATURE_SIMD32)
/* one group of four input channels in nnt_pointwise's inner loop: the weights of channel o, (c0, c2) and (c1, c3),
 * then of channel o + 1, one word each (loads into scalars stay in registers, where an array goes through the
 * stack), against the pixels' pairs at xp[X..X+3]; a macro so that the unrolled loop keeps one register set */
#define NNT_POINTWISE_GROUP(X, W)                                           \
    do {                                                                    \
        uint32_t w0, w1, w2, w3;                                            \
        memcpy(&w0, wp + (W), 4);                                           \
        memcpy(&w1, wp + (W) + 2, 4);                                       \
        memcpy(&w2, wp + (W) + 4, 4);                                       \
        memcpy(&w3, wp + (W) + 6, 4);                                       \
        a00 = __smlad((int16x2_t)xp[(X)], (int16x2_t)w0, a00);              \
        a00 = __smlad((int16x2_t)xp[(X) + 1], (int16x2_t)w1, a00);          \
        a01 = __smlad((int16x2_t)xp[(X)], (int16x2_t)w2, a01);              \
        a01 = __smlad((int16x2_t)xp[(X) + 1], (int16x2_t)w3, a01);          \
        a10 = __smlad((int16x2_t)xp[(X) + 2], (int16x2_t)w0, a10);          \
        a10 = __smlad((int16x2_t)xp[(X) + 3], (int16x2_t)w1, a10);          \
        a11 = __smlad((int16x2_t)xp[(X) + 2], (int16x2_t)w2, a11);          \
        a11 = __smlad((int16x2_t)xp[(X) + 3], (int16x2_t)w3, a11);          \
    } while (0)
#endif

/* integer_ops/conv.h ConvPerChannel for a 1x1 filter, stride 1, no padding: a [pixels, in_c] x [in_c, out_c]
 * matrix product, in_c a multiple of 4 (at most NNT_POINTWISE_MAX_C), out_c even. The weight is widened to int16
 * and arranged by the generator (deploy/c.py, TFLM's Prepare step) in the order this loop reads it: for each
 * output channel pair (o, o + 1) and each group of four input channels c0..c3, w[o] at (c0, c2, c1, c3), then
 * w[o+1] the same; widening at Prepare time doubles those weights' flash and takes the unpacking out of the loop.
 *
 * The SIMD path follows CMSIS-NN's arm_nn_mat_mult_kernel_s8_s16: two pixels x two output channels per inner
 * pass (four accumulators). The two pixels are widened once, with the input offset, into int16 pairs (SXTAB16
 * takes bytes 0 and 2, and after a rotate by 8 bytes 1 and 3; |x + offset| <= 255 fits a half), the order the
 * weight halves were written in, so every SMLAD adds two exact products. Per four input channels: four weight
 * and four pixel words loaded, eight SMLAD (16 MACs). The int32 sums are the same products in another order,
 * exact under the generator's accumulator bound, so both paths give nnt_conv's bytes. An odd last pixel is
 * computed twice (the second copy not stored), as nnt_fully_connected treats an odd last channel. */
void nnt_pointwise(int32_t pixels, int32_t in_c, int32_t out_c, const nnt_quant *q, const int8_t *input,
                   const int16_t *weight, const int32_t *bias, int8_t *output) {
    /* a local copy: the int8 stores may alias *q, which would make gcc reload its fields after every output */
    const nnt_quant qc = *q;
    const int32_t groups = in_c / 4;
    int32_t p, o, gi;
    for (p = 0; p < pixels; p += 2) {
        const int32_t pair = p + 1 < pixels;
        const int8_t *x0 = input + (int64_t)p * in_c;
        const int8_t *x1 = pair ? x0 + in_c : x0;
        int8_t *y0 = output + (int64_t)p * out_c;
        int8_t *y1 = y0 + out_c;
        const int16_t *wp = weight;
#if defined(__ARM_FEATURE_SIMD32)
        uint32_t xs[NNT_POINTWISE_MAX_C]; /* per group: pixel 0 (c0, c2), (c1, c3), then pixel 1's */
        const uint32_t half = (uint32_t)(uint16_t)qc.input_offset;
        const int16x2_t offset = (int16x2_t)((half << 16) | half);
        for (gi = 0; gi < groups; ++gi) {
            uint32_t a, b;
            memcpy(&a, x0 + 4 * gi, 4);
            memcpy(&b, x1 + 4 * gi, 4);
            xs[4 * gi] = (uint32_t)__sxtab16(offset, (int8x4_t)a);
            xs[4 * gi + 1] = (uint32_t)__sxtab16(offset, (int8x4_t)nnt_ror8(a));
            xs[4 * gi + 2] = (uint32_t)__sxtab16(offset, (int8x4_t)b);
            xs[4 * gi + 3] = (uint32_t)__sxtab16(offset, (int8x4_t)nnt_ror8(b));
        }
#endif
        for (o = 0; o < out_c; o += 2) {
            const int32_t k0 = qc.per_channel ? o : 0, k1 = qc.per_channel ? o + 1 : 0;
            const int32_t m0 = qc.multiplier[k0], m1 = qc.multiplier[k1];
            const int32_t s0 = qc.shift[k0], s1 = qc.shift[k1];
            const int32_t l0 = s0 > 0 ? s0 : 0, r0 = s0 > 0 ? 0 : -s0, l1 = s1 > 0 ? s1 : 0, r1 = s1 > 0 ? 0 : -s1;
            int32_t a00 = bias ? bias[o] : 0, a01 = bias ? bias[o + 1] : 0; /* a<pixel><channel> */
            int32_t a10 = a00, a11 = a01;
#if defined(__ARM_FEATURE_SIMD32)
            const uint32_t *xp = xs, *const xend = xs + 4 * groups;
            /* two groups (32 MACs) per trip halve the loop's own compare, branch and pointer steps */
            while (xp + 8 <= xend) {
                NNT_POINTWISE_GROUP(0, 0);
                NNT_POINTWISE_GROUP(4, 8);
                xp += 8;
                wp += 16;
            }
            if (xp < xend) {
                NNT_POINTWISE_GROUP(0, 0);
                wp += 8;
            }
#else
            for (gi = 0; gi < groups; ++gi) {
                static const int32_t channel[4] = {0, 2, 1, 3}; /* the pair order of the weight's halves */
                int32_t j;
                for (j = 0; j < 4; ++j) {
                    const int32_t v0 = (int32_t)x0[4 * gi + channel[j]] + qc.input_offset;
                    const int32_t v1 = (int32_t)x1[4 * gi + channel[j]] + qc.input_offset;
                    a00 += v0 * wp[j];
                    a01 += v0 * wp[4 + j];
                    a10 += v1 * wp[j];
                    a11 += v1 * wp[4 + j];
                }
                wp += 8;
            }
#endif
            y0[o] = nnt_pointwise_output(a00, m0, s0, l0, r0, qc);
            y0[o + 1] = nnt_pointwise_output(a01, m1, s1, l1, r1, qc);
            if (pair) {
                y1[o] = nnt_pointwise_output(a10, m0, s0, l0, r0, qc);
                y1[o + 1] = nnt_pointwise_output(a11, m1, s1, l1, r1, qc);
            }
        }
    }
}

/* integer_ops/fully_connected.h, per channel or per tensor: weight [O, I]. Int32 bound: sum |w| 255 + |bias|
 * < 2^31 per output (the generator's check). */
void nnt_fully_connected(int32_t batches, int32_t in_features, int32_t out_features, const nnt_quant *q,
                         const int8_t *input, const int8_t *weight, const int32_t *bias, int8_t *output) {
    int32_t b, o;
    for (b = 0; b < batches; ++b) {
        const int8_t *row = input + (int64_t)b * in_features;
        for (o = 0; o < out_features; o += 2) {
            const int32_t pair = o + 1 < out_features;
            const int8_t *w0 = weight + (int64_t)o * in_features;
            int32_t acc[2] = {0, 0};
            nnt_dot2_(row, w0, pair ? w0 + in_features : w0, in_features, q->input_offset, acc);
            *output++ = nnt_mac_output(bias ? acc[0] + bias[o] : acc[0], q, o);
            if (pair) *output++ = nnt_mac_output(bias ? acc[1] + bias[o + 1] : acc[1], q, o + 1);
        }
    }
}

/* integer_ops/add.h: (x - zp) 2^left_shift (|.| <= 255 2^20 < 2^28), each input rescaled by a multiplier
 * below 1/2 (s_i / 2 max s), so the int32 sum of the two stays below 2^28; then the output multiplier. */
void nnt_add(int32_t size, const int8_t *a, const int8_t *b, int32_t a_offset, int32_t a_multiplier,
             int32_t a_shift, int32_t b_offset, int32_t b_multiplier, int32_t b_shift, int32_t left_shift,
             int32_t out_multiplier, int32_t out_shift, int32_t out_offset, int32_t act_min, int32_t act_max,
             int8_t *output) {
    int32_t i;
    for (i = 0; i < size; ++i) {
        const int32_t x1 = ((int32_t)a[i] + a_offset) * (1 << left_shift);
        const int32_t x2 = ((int32_t)b[i] + b_offset) * (1 << left_shift);
        const int32_t sum = nnt_requantize_(x1, a_multiplier, a_shift) + nnt_requantize_(x2, b_multiplier, b_shift);
        output[i] = nnt_offset_clamp(nnt_requantize_(sum, out_multiplier, out_shift), out_offset, act_min, act_max);
    }
}

/* integer_ops/mul.h: (a - zp_a)(b - zp_b), |.| <= 255^2 < 2^16, then the output multiplier */
void nnt_mul(int32_t size, const int8_t *a, const int8_t *b, int32_t a_offset, int32_t b_offset,
             int32_t multiplier, int32_t shift, int32_t out_offset, int32_t act_min, int32_t act_max, int8_t *output) {
    int32_t i;
    for (i = 0; i < size; ++i) {
        const int32_t product = ((int32_t)a[i] + a_offset) * ((int32_t)b[i] + b_offset);
        output[i] = nnt_offset_clamp(nnt_requantize_(product, multiplier, shift), out_offset, act_min, act_max);
    }
}

/* integer_ops/pooling.h AveragePool: the sum of the taps inside the image (|sum| <= 128 KH KW), divided by
 * their count, rounded half away from zero with C's truncating division; no rescale (input and output share
 * scale and zero point). */
void nnt_avgpool(const nnt_geometry *g, int32_t act_min, int32_t act_max, const int8_t *input, int8_t *output) {
    int32_t b, oy, ox, c, ky, kx;
    for (b = 0; b < g->batches; ++b) {
        const int8_t *in_b = input + (int64_t)b * g->in_h * g->in_w * g->in_c;
        for (oy = 0; oy < g->out_h; ++oy) {
            const int32_t y0 = oy * g->stride_h - g->pad_top;
            int32_t ky0, ky1;
            nnt_taps(y0, g->in_h, g->kernel_h, 1, &ky0, &ky1);
            for (ox = 0; ox < g->out_w; ++ox) {
                const int32_t x0 = ox * g->stride_w - g->pad_left;
                int32_t kx0, kx1, count;
                nnt_taps(x0, g->in_w, g->kernel_w, 1, &kx0, &kx1);
                count = (ky1 - ky0) * (kx1 - kx0);
                for (c = 0; c < g->in_c; ++c) {
                    int32_t sum = 0, average;
                    for (ky = ky0; ky < ky1; ++ky) {
                        for (kx = kx0; kx < kx1; ++kx) {
                            sum += in_b[((int64_t)(y0 + ky) * g->in_w + (x0 + kx)) * g->in_c + c];
                        }
                    }
                    average = sum > 0 ? (sum + count / 2) / count : (sum - count / 2) / count;
                    *output++ = (int8_t)nnt_clamp(average, act_min, act_max);
                }
            }
        }
    }
}

/* integer_ops/pooling.h MaxPool: the largest tap inside the image, clamped; no arithmetic to overflow */
void nnt_maxpool(const nnt_geometry *g, int32_t act_min, int32_t act_max, const int8_t *input, int8_t *output) {
    int32_t b, oy, ox, c, ky, kx;
    for (b = 0; b < g->batches; ++b) {
        const int8_t *in_b = input + (int64_t)b * g->in_h * g->in_w * g->in_c;
        for (oy = 0; oy < g->out_h; ++oy) {
            const int32_t y0 = oy * g->stride_h - g->pad_top;
            int32_t ky0, ky1;
            nnt_taps(y0, g->in_h, g->kernel_h, 1, &ky0, &ky1);
            for (ox = 0; ox < g->out_w; ++ox) {
                const int32_t x0 = ox * g->stride_w - g->pad_left;
                int32_t kx0, kx1;
                nnt_taps(x0, g->in_w, g->kernel_w, 1, &kx0, &kx1);
                for (c = 0; c < g->in_c; ++c) {
                    int32_t best = -128;
                    for (ky = ky0; ky < ky1; ++ky) {
                        for (kx = kx0; kx < kx1; ++kx) {
                            const int32_t x = in_b[((int64_t)(y0 + ky) * g->in_w + (x0 + kx)) * g->in_c + c];
                            best = x > best ? x : best;
                        }
                    }
                    *output++ = (int8_t)nnt_clamp(best, act_min, act_max);
                }
            }
        }
    }
}

/* reference/reduce.h QuantizedMeanOrSum over the axes flagged in ``reduced`` of an NHWC shape: the int32 sum of
 * n values (|.| <= 128 n) minus n zp_in (|.| <= 255 n), n < 2^23, then the multiplier that folds in 1/n */
void nnt_mean(const int32_t shape[4], const int32_t reduced[4], int32_t input_offset, int32_t multiplier,
              int32_t shift, int32_t out_offset, const int8_t *input, int8_t *output) {
    int32_t keep[4], over[4], i[4], r[4], count = 1, d;
    for (d = 0; d < 4; ++d) {
        keep[d] = reduced[d] ? 1 : shape[d];
        over[d] = reduced[d] ? shape[d] : 1;
        count *= over[d];
    }
    for (i[0] = 0; i[0] < keep[0]; ++i[0])
        for (i[1] = 0; i[1] < keep[1]; ++i[1])
            for (i[2] = 0; i[2] < keep[2]; ++i[2])
                for (i[3] = 0; i[3] < keep[3]; ++i[3]) {
                    int32_t sum = 0;
                    for (r[0] = 0; r[0] < over[0]; ++r[0])
                        for (r[1] = 0; r[1] < over[1]; ++r[1])
                            for (r[2] = 0; r[2] < over[2]; ++r[2])
                                for (r[3] = 0; r[3] < over[3]; ++r[3]) {
                                    const int64_t at = (((int64_t)(i[0] + r[0]) * shape[1] + (i[1] + r[1])) * shape[2]
                                                        + (i[2] + r[2])) * shape[3] + (i[3] + r[3]);
                                    sum += input[at];
                                }
                    sum += input_offset * count;
                    *output++ = nnt_offset_clamp(nnt_requantize_(sum, multiplier, shift), out_offset, -128, 127);
                }
}

/* CONCATENATION: for each of the ``outer`` leading positions, each input's ``inner`` contiguous bytes in turn
 * (inputs and output share scale and zero point: a copy) */
void nnt_concat(int32_t parts, const int8_t *const *inputs, const int32_t *inner, int32_t outer, int8_t *output) {
    int32_t o, p;
    for (o = 0; o < outer; ++o) {
        for (p = 0; p < parts; ++p) {
            memcpy(output, inputs[p] + (int64_t)o * inner[p], (size_t)inner[p]);
            output += inner[p];
        }
    }
}

/* PAD / PADV2 on NHWC: the input placed at ``before``, every other byte ``value`` (the output zero point, or
 * PADV2's constant) */
void nnt_pad(const int32_t in_shape[4], const int32_t before[4], const int32_t out_shape[4], int8_t value,
             const int8_t *input, int8_t *output) {
    int32_t n, h, w;
    const int32_t after_c = out_shape[3] - before[3] - in_shape[3];
    for (n = 0; n < out_shape[0]; ++n) {
        const int32_t in_n = n - before[0];
        for (h = 0; h < out_shape[1]; ++h) {
            const int32_t in_h = h - before[1];
            for (w = 0; w < out_shape[2]; ++w) {
                const int32_t in_w = w - before[2];
                if (in_n < 0 || in_n >= in_shape[0] || in_h < 0 || in_h >= in_shape[1] || in_w < 0 ||
                    in_w >= in_shape[2]) {
                    memset(output, value, (size_t)out_shape[3]);
                } else {
                    const int8_t *src = input + (((int64_t)in_n * in_shape[1] + in_h) * in_shape[2] + in_w)
                                                * in_shape[3];
                    memset(output, value, (size_t)before[3]);
                    memcpy(output + before[3], src, (size_t)in_shape[3]);
                    memset(output + before[3] + in_shape[3], value, (size_t)after_c);
                }
                output += out_shape[3];
            }
        }
    }
}

/* RESHAPE where input and output do not share the buffer */
void nnt_copy(int32_t size, const int8_t *input, int8_t *output) {
    if (input != output) memmove(output, input, (size_t)size);
}

/* ---- gemmlowp fixed point, as TFLite's int8 softmax and logistic use it (FixedPoint<int32, k>) ---- */

/* SaturatingRoundingMultiplyByPOT with exponent e >= 1: x 2^e saturated; below the threshold the product fits */
static int32_t nnt_saturating_shift_left(int32_t x, int32_t e) {
    const int32_t threshold = (int32_t)(((int64_t)1 << (31 - e)) - 1);
    if (x > threshold) return NNT_INT32_MAX;
    if (x < -threshold) return NNT_INT32_MIN;
    return x * (1 << e);
}

/* exp(a) for a in [-1/4, 0), Q0.31: Taylor expansion around -1/8 (gemmlowp) */
static int32_t nnt_exp_quarter(int32_t a) {
    const int32_t constant_term = 1895147668; /* exp(-1/8) */
    const int32_t constant_1_over_3 = 715827883;
    const int32_t x = a + (1 << 28);
    const int32_t x2 = nnt_srdhm_(x, x);
    const int32_t x3 = nnt_srdhm_(x2, x);
    const int32_t x4 = nnt_srdhm_(x2, x2);
    const int32_t x4_over_4 = nnt_rdbpot_(x4, 2);
    const int32_t poly = nnt_rdbpot_(nnt_srdhm_(x4_over_4 + x3, constant_1_over_3) + x2, 1);
    return constant_term + nnt_srdhm_(constant_term, x + poly);
}

/* gemmlowp exp_on_negative_values: a <= 0 in Q(integer_bits).(31 - integer_bits), result Q0.31. The remainder
 * a mod 1/4 by the polynomial, then exp(-2^k) multiplied in for each set bit above it (the barrel shifter). */
static int32_t nnt_exp_on_negative_values(int32_t a, int32_t integer_bits) {
    static const int32_t barrel[7] = {1672461947, 1302514674, 790015084, 290630308, 39332535, 720401, 242};
    const int32_t fractional_bits = 31 - integer_bits;
    const int32_t one_quarter = 1 << (fractional_bits - 2);
    const int32_t a_mod_quarter_minus_one_quarter = (a & (one_quarter - 1)) - one_quarter;
    const int32_t remainder = a_mod_quarter_minus_one_quarter - a; /* >= 0 for a <= 0 */
    int32_t result = nnt_exp_quarter(nnt_saturating_shift_left(a_mod_quarter_minus_one_quarter, integer_bits));
    int32_t k;
    for (k = 0; k < 7; ++k) {
        const int32_t exponent = k - 2;
        if (integer_bits > exponent && ((remainder >> (fractional_bits + exponent)) & 1)) {
            result = nnt_srdhm_(result, barrel[k]);
        }
    }
    return a == 0 ? NNT_INT32_MAX : result;
}

/* gemmlowp one_over_one_plus_x_for_x_in_0_1: 1 / (1 + a), a in [0, 1) Q0.31, three Newton-Raphson steps in
 * Q2.29; the half sum a + 1 needs 33 bits, so it is formed in int64 */
static int32_t nnt_one_over_one_plus_x(int32_t a) {
    const int64_t total = (int64_t)a + NNT_INT32_MAX;
    const int32_t half_denominator = (int32_t)(total >= 0 ? (total + 1) / 2 : -((-total + 1) / 2));
    int32_t x = 1515870810 + nnt_srdhm_(half_denominator, -1010580540); /* 48/17 - 32/17 d */
    int32_t i;
    for (i = 0; i < 3; ++i) {
        const int32_t one_minus = (1 << 29) - nnt_srdhm_(half_denominator, x);
        x = x + nnt_saturating_shift_left(nnt_srdhm_(x, one_minus), 2);
    }
    return nnt_saturating_shift_left(x, 1);
}

static int32_t nnt_count_leading_zeros(uint32_t x) {
    int32_t n = 0;
    while (n < 32 && !(x & 0x80000000u)) {
        x <<= 1;
        ++n;
    }
    return n;
}

/* gemmlowp logistic: 1 / (1 + exp(-|a|)) mirrored for a < 0, 1/2 at 0; Q0.31 */
static int32_t nnt_logistic_fixed_point(int32_t a, int32_t integer_bits) {
    int32_t positive;
    if (a == 0) return 1 << 30;
    positive = nnt_one_over_one_plus_x(nnt_exp_on_negative_values(a > 0 ? -a : a, integer_bits));
    return a > 0 ? positive : NNT_INT32_MAX - positive;
}

/* reference/softmax.h int8: the differences from the row maximum rescaled to Q5.26, exp in Q0.31, summed in
 * Q12.19 (each term <= 2^19; a row shorter than 512 keeps the sum below 2^28, so the final shift
 * num_bits_over_unit + 23 stays <= 31, the RoundingDivideByPOT domain), one reciprocal (GetReciprocal), each exp
 * times it, in 1/256 steps minus 128; differences below diff_min give -128. */
void nnt_softmax(int32_t rows, int32_t depth, int32_t multiplier, int32_t shift, int32_t diff_min,
                 const int8_t *input, int8_t *output) {
    int32_t r, c;
    for (r = 0; r < rows; ++r) {
        const int8_t *x = input + (int64_t)r * depth;
        int8_t *y = output + (int64_t)r * depth;
        int32_t max_in = -128, sum = 0, headroom, bits_over_unit, reciprocal;
        for (c = 0; c < depth; ++c) max_in = x[c] > max_in ? x[c] : max_in;
        for (c = 0; c < depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_in;
            if (diff >= diff_min) {
                sum += nnt_rdbpot_(nnt_exp_on_negative_values(nnt_requantize_(diff, multiplier, shift), 5), 12);
            }
        }
        headroom = nnt_count_leading_zeros((uint32_t)sum);
        bits_over_unit = 12 - headroom;
        reciprocal = nnt_one_over_one_plus_x((int32_t)(((uint32_t)sum << headroom) - 0x80000000u));
        for (c = 0; c < depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_in;
            if (diff >= diff_min) {
                const int32_t e = nnt_exp_on_negative_values(nnt_requantize_(diff, multiplier, shift), 5);
                const int32_t out = nnt_rdbpot_(nnt_srdhm_(reciprocal, e), bits_over_unit + 31 - 8);
                y[c] = (int8_t)nnt_clamp(out - 128, -128, 127);
            } else {
                y[c] = -128;
            }
        }
    }
}

/* integer_ops/logistic.h: x - zp (|.| <= 255) beyond the input radius saturates; inside, rescaled to Q4.27
 * (|.| < 2^31 by the radius), gemmlowp's logistic in Q0.31, to 1/256 steps minus 128 */
void nnt_logistic(int32_t size, int32_t input_offset, int32_t multiplier, int32_t shift, int32_t radius,
                  const int8_t *input, int8_t *output) {
    int32_t i;
    for (i = 0; i < size; ++i) {
        const int32_t diff = (int32_t)input[i] + input_offset;
        if (diff <= -radius) {
            output[i] = -128;
        } else if (diff >= radius) {
            output[i] = 127;
        } else {
            const int32_t q4 = nnt_requantize_(diff, multiplier, shift);
            const int32_t y = nnt_rdbpot_(nnt_logistic_fixed_point(q4, 4), 31 - 8) - 128;
            output[i] = (int8_t)nnt_clamp(y, -128, 127);
        }
    }
}
