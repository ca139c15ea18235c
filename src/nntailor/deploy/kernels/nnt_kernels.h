/* nntailor int8 kernels: portable C99, integer only, no allocation.
 *
 * The arithmetic of TFLite Micro's reference integer kernels (integer_ops/conv.h, depthwise_conv.h,
 * fully_connected.h, add.h, mul.h, pooling.h, mean, concatenation, pad, softmax.h, logistic.h) and of
 * nntailor's numpy reference interpreter (deploy/reference.py): int32 accumulation of w (x - zp_in), the bias,
 * then MultiplyByQuantizedMultiplier (SaturatingRoundingDoublingHighMul + RoundingDivideByPOT, or one 64-bit
 * rounding when built with -DNNT_SINGLE_ROUNDING), the output zero point and the fused activation's clamp.
 * Every constant (multipliers, shifts, clamps, geometry) is computed by the generator (TFLM's Prepare) and
 * passed in; nothing here rescales in floating point.
 */
#ifndef NNT_KERNELS_H
#define NNT_KERNELS_H

#include <stdint.h>

/* fixed-point helpers (gemmlowp fixedpoint.h, TFLM common.h) */
int32_t nnt_srdhm(int32_t a, int32_t b);
int32_t nnt_rdbpot(int32_t x, int32_t exponent);
int32_t nnt_requantize(int32_t x, int32_t multiplier, int32_t shift);
int32_t nnt_dot(const int8_t *x, const int8_t *w, int32_t n, int32_t x_offset);

/* geometry of a spatial op: NHWC input [n, in_h, in_w, in_c] -> [n, out_h, out_w, out_c] */
typedef struct {
    int32_t batches, in_h, in_w, in_c, out_h, out_w, out_c;
    int32_t kernel_h, kernel_w, stride_h, stride_w, dilation_h, dilation_w, pad_top, pad_left;
} nnt_geometry;

/* quantization of a MAC op's output: per-channel multipliers and shifts (or one for the tensor) */
typedef struct {
    int32_t input_offset, output_offset, act_min, act_max, per_channel;
    const int32_t *multiplier, *shift;
} nnt_quant;

void nnt_conv(const nnt_geometry *g, const nnt_quant *q, const int8_t *input, const int8_t *weight,
              const int32_t *bias, int8_t *output);
/* conv 1x1, stride 1, unpadded, in_c % 4 == 0 and <= NNT_POINTWISE_MAX_C, out_c even, the weight in the
 * generator's int16 pair order (nnt_kernels.c) */
#define NNT_POINTWISE_MAX_C 512
void nnt_pointwise(int32_t pixels, int32_t in_c, int32_t out_c, const nnt_quant *q, const int8_t *input,
                   const int16_t *weight, const int32_t *bias, int8_t *output);
void nnt_depthwise(const nnt_geometry *g, int32_t depth_multiplier, const nnt_quant *q, const int8_t *input,
                   const int8_t *weight, const int32_t *bias, int8_t *output);
void nnt_fully_connected(int32_t batches, int32_t in_features, int32_t out_features, const nnt_quant *q,
                         const int8_t *input, const int8_t *weight, const int32_t *bias, int8_t *output);
void nnt_add(int32_t size, const int8_t *a, const int8_t *b, int32_t a_offset, int32_t a_multiplier,
             int32_t a_shift, int32_t b_offset, int32_t b_multiplier, int32_t b_shift, int32_t left_shift,
             int32_t out_multiplier, int32_t out_shift, int32_t out_offset, int32_t act_min, int32_t act_max,
             int8_t *output);
void nnt_mul(int32_t size, const int8_t *a, const int8_t *b, int32_t a_offset, int32_t b_offset,
             int32_t multiplier, int32_t shift, int32_t out_offset, int32_t act_min, int32_t act_max, int8_t *output);
void nnt_avgpool(const nnt_geometry *g, int32_t act_min, int32_t act_max, const int8_t *input, int8_t *output);
void nnt_maxpool(const nnt_geometry *g, int32_t act_min, int32_t act_max, const int8_t *input, int8_t *output);
void nnt_mean(const int32_t shape[4], const int32_t reduced[4], int32_t input_offset, int32_t multiplier,
              int32_t shift, int32_t out_offset, const int8_t *input, int8_t *output);
void nnt_concat(int32_t parts, const int8_t *const *inputs, const int32_t *inner, int32_t outer, int8_t *output);
void nnt_pad(const int32_t in_shape[4], const int32_t before[4], const int32_t out_shape[4], int8_t value,
             const int8_t *input, int8_t *output);
void nnt_copy(int32_t size, const int8_t *input, int8_t *output);
void nnt_softmax(int32_t rows, int32_t depth, int32_t multiplier, int32_t shift, int32_t diff_min,
                 const int8_t *input, int8_t *output);
void nnt_logistic(int32_t size, int32_t input_offset, int32_t multiplier, int32_t shift, int32_t radius,
                  const int8_t *input, int8_t *output);

#endif
