/*
 * tinyml_kernels.c - int8 inference kernels, bit-exact with TensorFlow Lite Micro's reference
 * kernels (tensorflow/lite/kernels/internal/reference/...). See tinyml_kernels.h.
 *
 * The plain versions follow the reference loops closely. With -DTINYML_SIMD on a core with the
 * Arm DSP extension the convolution, fully connected and depthwise inner loops widen int8 pairs
 * to int16 with SXTB16/SXTAB16 and do two multiply-accumulates per SMLAD. Integer sums do not
 * depend on their order, so both paths produce the same bytes.
 */
#include "tinyml_kernels.h"

#if TINYML_USE_SIMD
#include <arm_acle.h>
#endif

#define TINYML_INT32_MIN ((int32_t)(-2147483647 - 1))
#define TINYML_INT32_MAX ((int32_t)2147483647)

static inline int32_t tinyml_min(int32_t a, int32_t b) { return a < b ? a : b; }
static inline int32_t tinyml_max(int32_t a, int32_t b) { return a > b ? a : b; }

/* ------------------------------------------------------------------ gemmlowp fixed point */

/* SaturatingRoundingDoublingHighMul: round(a * b / 2^31), halves away from zero. */
static inline int32_t tinyml_srdhm(int32_t a, int32_t b) {
    if (a == b && a == TINYML_INT32_MIN) {
        return TINYML_INT32_MAX;
    }
    int64_t ab = (int64_t)a * (int64_t)b;
    int64_t t = ab + (ab >= 0 ? (int64_t)(1 << 30) : (int64_t)(1 - (1 << 30)));
    /* C division by 2^31 truncates toward zero; written with shifts (no 64-bit divide call). */
    if (t < 0) {
        t += ((int64_t)1 << 31) - 1;
    }
    return (int32_t)(t >> 31);
}

/* RoundingDivideByPOT: x / 2^exponent, rounded to nearest, ties away from zero. */
static inline int32_t tinyml_rdbpot(int32_t x, int32_t exponent) {
    const int32_t mask = (int32_t)((((uint32_t)1) << exponent) - 1u);
    const int32_t remainder = x & mask;
    const int32_t threshold = (mask >> 1) + (x < 0 ? 1 : 0);
    return (x >> exponent) + (remainder > threshold ? 1 : 0);
}

/* Saturating x * 2^exponent for 0 < exponent < 31 (gemmlowp's SaturatingRoundingMultiplyByPOT). */
static inline int32_t tinyml_sat_shl(int32_t x, int32_t exponent) {
    const int32_t threshold = (int32_t)((((uint32_t)1) << (31 - exponent)) - 1u);
    if (x > threshold) {
        return TINYML_INT32_MAX;
    }
    if (x < -threshold) {
        return TINYML_INT32_MIN;
    }
    return (int32_t)((uint32_t)x << exponent);
}

int32_t tinyml_multiply_by_quantized_multiplier(int32_t x, int32_t multiplier, int32_t shift) {
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    return tinyml_rdbpot(tinyml_srdhm((int32_t)((uint32_t)x << left), multiplier), right);
}

static inline int32_t tinyml_requant(int32_t acc, int32_t multiplier, int32_t shift,
                                     int32_t output_offset, int32_t act_min, int32_t act_max) {
    int32_t v = tinyml_multiply_by_quantized_multiplier(acc, multiplier, shift) + output_offset;
    v = v < act_min ? act_min : v;
    v = v > act_max ? act_max : v;
    return v;
}

/* exp(a) for a in [-1/4, 0), Q0.31 in and out. */
static int32_t tinyml_exp_quarter(int32_t a) {
    const int32_t constant_term = 1895147668;  /* exp(-1/8) */
    const int32_t constant_1_over_3 = 715827883;
    const int32_t x = a + (1 << 28);
    const int32_t x2 = tinyml_srdhm(x, x);
    const int32_t x3 = tinyml_srdhm(x2, x);
    const int32_t x4 = tinyml_srdhm(x2, x2);
    const int32_t x4_over_4 = tinyml_rdbpot(x4, 2);
    const int32_t poly =
        tinyml_rdbpot(tinyml_srdhm(x4_over_4 + x3, constant_1_over_3) + x2, 1);
    return constant_term + tinyml_srdhm(constant_term, x + poly);
}

/* exp(a) for a <= 0 given with `integer_bits` integer bits (4 or 5); result in Q0.31. */
static int32_t tinyml_exp_on_negative_values(int32_t a, int32_t integer_bits) {
    static const int32_t multipliers[7] = {1672461947, 1302514674, 790015084, 290630308,
                                           39332535,   720401,     242};
    const int32_t fractional_bits = 31 - integer_bits;
    const int32_t one_quarter = (int32_t)1 << (fractional_bits - 2);
    const int32_t mask = one_quarter - 1;
    const int32_t a_mod_quarter_minus_one_quarter = (a & mask) - one_quarter;
    int32_t result =
        tinyml_exp_quarter(tinyml_sat_shl(a_mod_quarter_minus_one_quarter, integer_bits));
    const int32_t remainder = a_mod_quarter_minus_one_quarter - a;
    for (int32_t e = -2; e <= 4; ++e) {
        if (integer_bits > e) {
            const int32_t shift_amount = fractional_bits + e;
            if (remainder & ((int32_t)1 << shift_amount)) {
                result = tinyml_srdhm(result, multipliers[e + 2]);
            }
        }
    }
    if (a == 0) {
        result = TINYML_INT32_MAX;
    }
    return result;
}

/* 1 / (1 + a) for a in [0, 1), Q0.31 in and out (Newton-Raphson, as gemmlowp). */
static int32_t tinyml_one_over_one_plus_x(int32_t a) {
    int64_t sum = (int64_t)a + (int64_t)TINYML_INT32_MAX;
    sum += sum >= 0 ? 1 : -1;
    const int32_t half_denominator = (int32_t)(sum / 2);
    const int32_t constant_48_over_17 = 1515870810;
    const int32_t constant_neg_32_over_17 = -1010580540;
    const int32_t f2_one = (int32_t)1 << 29; /* 1.0 in Q2.29 */
    int32_t x = constant_48_over_17 + tinyml_srdhm(half_denominator, constant_neg_32_over_17);
    for (int i = 0; i < 3; ++i) {
        const int32_t half_denominator_times_x = tinyml_srdhm(half_denominator, x);
        const int32_t one_minus = f2_one - half_denominator_times_x;
        x = x + tinyml_sat_shl(tinyml_srdhm(x, one_minus), 2);
    }
    return tinyml_sat_shl(x, 1);
}

static inline int32_t tinyml_clz32(uint32_t x) {
#if defined(__GNUC__) || defined(__clang__)
    return x == 0 ? 32 : __builtin_clz(x);
#else
    int32_t n = 0;
    if (x == 0) {
        return 32;
    }
    while ((x & 0x80000000u) == 0) {
        x <<= 1;
        ++n;
    }
    return n;
#endif
}

/* ------------------------------------------------------------------ SIMD helpers */

#if TINYML_USE_SIMD
typedef int32_t __attribute__((aligned(1), may_alias)) tinyml_i32u; /* unaligned word */
typedef int32_t __attribute__((may_alias)) tinyml_i32a;             /* aligned word */

static inline int32_t tinyml_read_s8x4(const int8_t *p) { return *(const tinyml_i32u *)p; }
static inline int32_t tinyml_pack_offset(int32_t offset) {
    return (int32_t)(((uint32_t)offset & 0xFFFFu) | ((uint32_t)offset << 16));
}
#endif

/* ------------------------------------------------------------------ CONV_2D */

static void tinyml_conv2d_plain(const tinyml_conv_params *p, const int8_t *input,
                                const int8_t *filter, const int32_t *bias,
                                const int32_t *multiplier, const int32_t *shift,
                                int8_t *output) {
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c;
    const int32_t out_c = p->out_c, k_h = p->k_h, k_w = p->k_w;
    const int32_t input_offset = p->input_offset;
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + (size_t)b * in_h * in_w * in_c;
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                for (int32_t oc = 0; oc < out_c; ++oc) {
                    int32_t acc = bias ? bias[oc] : 0;
                    const int8_t *w_oc = filter + (size_t)oc * k_h * k_w * in_c;
                    for (int32_t ky = 0; ky < k_h; ++ky) {
                        const int32_t iy = iy0 + ky * p->dil_h;
                        if (iy < 0 || iy >= in_h) {
                            continue;
                        }
                        for (int32_t kx = 0; kx < k_w; ++kx) {
                            const int32_t ix = ix0 + kx * p->dil_w;
                            if (ix < 0 || ix >= in_w) {
                                continue;
                            }
                            const int8_t *x = in_b + ((size_t)iy * in_w + ix) * in_c;
                            const int8_t *w = w_oc + ((size_t)ky * k_w + kx) * in_c;
                            for (int32_t ic = 0; ic < in_c; ++ic) {
                                acc += (int32_t)w[ic] * ((int32_t)x[ic] + input_offset);
                            }
                        }
                    }
                    *output++ = (int8_t)tinyml_requant(acc, multiplier[oc], shift[oc],
                                                       p->output_offset, p->act_min, p->act_max);
                }
            }
        }
    }
}

#if TINYML_USE_SIMD
/* The receptive field of output pixel `pix` as int16 (x + input_offset, 0 in the padding).
   Within each group of four values the order is 0, 2, 1, 3: the order in which SXTB16 widens
   a word of four int8 weights, so that SMLAD pairs each weight with its input. */
static void tinyml_im2col(const tinyml_conv_params *p, const int8_t *input, int32_t pix,
                          int16_t *col) {
    const int32_t ox = pix % p->out_w;
    const int32_t t = pix / p->out_w;
    const int32_t oy = t % p->out_h;
    const int32_t b = t / p->out_h;
    const int32_t in_c = p->in_c;
    const int8_t *in_b = input + (size_t)b * p->in_h * p->in_w * in_c;
    const int32_t iy0 = oy * p->stride_h - p->pad_h;
    const int32_t ix0 = ox * p->stride_w - p->pad_w;
    if ((in_c & 3) == 0) {
        const int32_t offset2 = tinyml_pack_offset(p->input_offset);
        tinyml_i32a *dst = (tinyml_i32a *)col;
        for (int32_t ky = 0; ky < p->k_h; ++ky) {
            const int32_t iy = iy0 + ky * p->dil_h;
            for (int32_t kx = 0; kx < p->k_w; ++kx) {
                const int32_t ix = ix0 + kx * p->dil_w;
                if (iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w) {
                    for (int32_t c = 0; c < in_c; c += 4) {
                        dst[0] = 0;
                        dst[1] = 0;
                        dst += 2;
                    }
                } else {
                    const int8_t *src = in_b + ((size_t)iy * p->in_w + ix) * in_c;
                    for (int32_t c = 0; c < in_c; c += 4) {
                        const int32_t v = tinyml_read_s8x4(src + c);
                        dst[0] = __sxtab16(offset2, v);
                        dst[1] = __sxtab16(offset2, __ror(v, 8));
                        dst += 2;
                    }
                }
            }
        }
    } else {
        static const uint8_t order[4] = {0, 2, 1, 3};
        const int32_t k_total = p->k_h * p->k_w * in_c;
        const int32_t k4 = k_total & ~3;
        int32_t k = 0;
        for (int32_t ky = 0; ky < p->k_h; ++ky) {
            const int32_t iy = iy0 + ky * p->dil_h;
            for (int32_t kx = 0; kx < p->k_w; ++kx) {
                const int32_t ix = ix0 + kx * p->dil_w;
                const int inside = !(iy < 0 || iy >= p->in_h || ix < 0 || ix >= p->in_w);
                const int8_t *src = in_b + ((size_t)iy * p->in_w + ix) * in_c;
                for (int32_t c = 0; c < in_c; ++c, ++k) {
                    const int32_t pos = k < k4 ? ((k & ~3) | order[k & 3]) : k;
                    col[pos] = inside ? (int16_t)(src[c] + p->input_offset) : 0;
                }
            }
        }
    }
}

/* Two output channels x two pixels: 8 SMLAD per 16 MACs. */
static void tinyml_conv_block_2x2(const int8_t *w0, const int8_t *w1, const int16_t *col0,
                                  const int16_t *col1, int32_t k_total, int32_t acc[4]) {
    const int32_t k4 = k_total & ~3;
    int32_t a00 = acc[0], a01 = acc[1], a10 = acc[2], a11 = acc[3];
    const tinyml_i32a *x0 = (const tinyml_i32a *)col0;
    const tinyml_i32a *x1 = (const tinyml_i32a *)col1;
    for (int32_t k = 0; k < k4; k += 4) {
        const int32_t wa = tinyml_read_s8x4(w0 + k);
        const int32_t wb = tinyml_read_s8x4(w1 + k);
        const int32_t wa_e = __sxtb16(wa), wa_o = __sxtb16(__ror(wa, 8));
        const int32_t wb_e = __sxtb16(wb), wb_o = __sxtb16(__ror(wb, 8));
        const int32_t x0_e = x0[0], x0_o = x0[1];
        const int32_t x1_e = x1[0], x1_o = x1[1];
        x0 += 2;
        x1 += 2;
        a00 = __smlad(wa_e, x0_e, a00);
        a01 = __smlad(wa_e, x1_e, a01);
        a10 = __smlad(wb_e, x0_e, a10);
        a11 = __smlad(wb_e, x1_e, a11);
        a00 = __smlad(wa_o, x0_o, a00);
        a01 = __smlad(wa_o, x1_o, a01);
        a10 = __smlad(wb_o, x0_o, a10);
        a11 = __smlad(wb_o, x1_o, a11);
    }
    for (int32_t k = k4; k < k_total; ++k) {
        a00 += (int32_t)w0[k] * col0[k];
        a01 += (int32_t)w0[k] * col1[k];
        a10 += (int32_t)w1[k] * col0[k];
        a11 += (int32_t)w1[k] * col1[k];
    }
    acc[0] = a00;
    acc[1] = a01;
    acc[2] = a10;
    acc[3] = a11;
}

/* One output channel x one pixel. */
static int32_t tinyml_conv_block_1x1(const int8_t *w, const int16_t *col, int32_t k_total,
                                     int32_t acc) {
    const int32_t k4 = k_total & ~3;
    const tinyml_i32a *x = (const tinyml_i32a *)col;
    for (int32_t k = 0; k < k4; k += 4) {
        const int32_t wa = tinyml_read_s8x4(w + k);
        acc = __smlad(__sxtb16(wa), x[0], acc);
        acc = __smlad(__sxtb16(__ror(wa, 8)), x[1], acc);
        x += 2;
    }
    for (int32_t k = k4; k < k_total; ++k) {
        acc += (int32_t)w[k] * col[k];
    }
    return acc;
}

static void tinyml_conv2d_simd(const tinyml_conv_params *p, const int8_t *input,
                               const int8_t *filter, const int32_t *bias,
                               const int32_t *multiplier, const int32_t *shift, int8_t *output,
                               int16_t *scratch) {
    const int32_t k_total = p->k_h * p->k_w * p->in_c;
    const int32_t col_stride = (k_total + 1) & ~1;
    const int32_t out_c = p->out_c;
    const int32_t n_pix = p->batches * p->out_h * p->out_w;
    int16_t *col0 = scratch;
    int16_t *col1 = scratch + col_stride;
    int32_t pix = 0;
    for (; pix + 1 < n_pix; pix += 2) {
        tinyml_im2col(p, input, pix, col0);
        tinyml_im2col(p, input, pix + 1, col1);
        int8_t *out0 = output + (size_t)pix * out_c;
        int8_t *out1 = out0 + out_c;
        int32_t oc = 0;
        for (; oc + 1 < out_c; oc += 2) {
            const int8_t *w0 = filter + (size_t)oc * k_total;
            int32_t acc[4];
            acc[0] = acc[1] = bias ? bias[oc] : 0;
            acc[2] = acc[3] = bias ? bias[oc + 1] : 0;
            tinyml_conv_block_2x2(w0, w0 + k_total, col0, col1, k_total, acc);
            out0[oc] = (int8_t)tinyml_requant(acc[0], multiplier[oc], shift[oc],
                                              p->output_offset, p->act_min, p->act_max);
            out1[oc] = (int8_t)tinyml_requant(acc[1], multiplier[oc], shift[oc],
                                              p->output_offset, p->act_min, p->act_max);
            out0[oc + 1] = (int8_t)tinyml_requant(acc[2], multiplier[oc + 1], shift[oc + 1],
                                                  p->output_offset, p->act_min, p->act_max);
            out1[oc + 1] = (int8_t)tinyml_requant(acc[3], multiplier[oc + 1], shift[oc + 1],
                                                  p->output_offset, p->act_min, p->act_max);
        }
        if (oc < out_c) {
            const int8_t *w = filter + (size_t)oc * k_total;
            const int32_t b0 = bias ? bias[oc] : 0;
            out0[oc] = (int8_t)tinyml_requant(tinyml_conv_block_1x1(w, col0, k_total, b0),
                                              multiplier[oc], shift[oc], p->output_offset,
                                              p->act_min, p->act_max);
            out1[oc] = (int8_t)tinyml_requant(tinyml_conv_block_1x1(w, col1, k_total, b0),
                                              multiplier[oc], shift[oc], p->output_offset,
                                              p->act_min, p->act_max);
        }
    }
    if (pix < n_pix) {
        tinyml_im2col(p, input, pix, col0);
        int8_t *out0 = output + (size_t)pix * out_c;
        for (int32_t oc = 0; oc < out_c; ++oc) {
            const int8_t *w = filter + (size_t)oc * k_total;
            const int32_t acc = tinyml_conv_block_1x1(w, col0, k_total, bias ? bias[oc] : 0);
            out0[oc] = (int8_t)tinyml_requant(acc, multiplier[oc], shift[oc], p->output_offset,
                                              p->act_min, p->act_max);
        }
    }
}
#endif /* TINYML_USE_SIMD */

void tinyml_conv2d_s8(const tinyml_conv_params *p, const int8_t *input, const int8_t *filter,
                      const int32_t *bias, const int32_t *multiplier, const int32_t *shift,
                      int8_t *output, int16_t *scratch) {
#if TINYML_USE_SIMD
    if (scratch != NULL) {
        tinyml_conv2d_simd(p, input, filter, bias, multiplier, shift, output, scratch);
        return;
    }
#else
    (void)scratch;
#endif
    tinyml_conv2d_plain(p, input, filter, bias, multiplier, shift, output);
}

/* ------------------------------------------------------------------ DEPTHWISE_CONV_2D */

void tinyml_depthwise_conv2d_s8(const tinyml_conv_params *p, const int8_t *input,
                                const int8_t *filter, const int32_t *bias,
                                const int32_t *multiplier, const int32_t *shift,
                                int8_t *output) {
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c;
    const int32_t out_c = p->out_c, dm = p->depth_multiplier;
    const int32_t input_offset = p->input_offset;
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + (size_t)b * in_h * in_w * in_c;
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                int32_t oc = 0;
#if TINYML_USE_SIMD
                if (dm == 1) {
                    /* Four channels at a time: SXTB16 splits them into (0, 2) and (1, 3),
                       SMLABB/SMLATT multiply-accumulate each 16-bit lane separately. */
                    const int32_t offset2 = tinyml_pack_offset(input_offset);
                    for (; oc + 3 < out_c; oc += 4) {
                        int32_t a0 = bias ? bias[oc] : 0, a1 = bias ? bias[oc + 1] : 0;
                        int32_t a2 = bias ? bias[oc + 2] : 0, a3 = bias ? bias[oc + 3] : 0;
                        for (int32_t ky = 0; ky < p->k_h; ++ky) {
                            const int32_t iy = iy0 + ky * p->dil_h;
                            if (iy < 0 || iy >= in_h) {
                                continue;
                            }
                            for (int32_t kx = 0; kx < p->k_w; ++kx) {
                                const int32_t ix = ix0 + kx * p->dil_w;
                                if (ix < 0 || ix >= in_w) {
                                    continue;
                                }
                                const int32_t xv = tinyml_read_s8x4(
                                    in_b + ((size_t)iy * in_w + ix) * in_c + oc);
                                const int32_t wv = tinyml_read_s8x4(
                                    filter + ((size_t)ky * p->k_w + kx) * out_c + oc);
                                const int32_t x_e = __sxtab16(offset2, xv);
                                const int32_t x_o = __sxtab16(offset2, __ror(xv, 8));
                                const int32_t w_e = __sxtb16(wv);
                                const int32_t w_o = __sxtb16(__ror(wv, 8));
                                a0 = __smlabb(w_e, x_e, a0);
                                a2 = __smlatt(w_e, x_e, a2);
                                a1 = __smlabb(w_o, x_o, a1);
                                a3 = __smlatt(w_o, x_o, a3);
                            }
                        }
                        int8_t *out = output + (((size_t)b * p->out_h + oy) * p->out_w + ox) * out_c;
                        out[oc] = (int8_t)tinyml_requant(a0, multiplier[oc], shift[oc],
                                                         p->output_offset, p->act_min, p->act_max);
                        out[oc + 1] = (int8_t)tinyml_requant(a1, multiplier[oc + 1],
                                                             shift[oc + 1], p->output_offset,
                                                             p->act_min, p->act_max);
                        out[oc + 2] = (int8_t)tinyml_requant(a2, multiplier[oc + 2],
                                                             shift[oc + 2], p->output_offset,
                                                             p->act_min, p->act_max);
                        out[oc + 3] = (int8_t)tinyml_requant(a3, multiplier[oc + 3],
                                                             shift[oc + 3], p->output_offset,
                                                             p->act_min, p->act_max);
                    }
                }
#endif
                for (; oc < out_c; ++oc) {
                    const int32_t ic = oc / dm;
                    int32_t acc = bias ? bias[oc] : 0;
                    for (int32_t ky = 0; ky < p->k_h; ++ky) {
                        const int32_t iy = iy0 + ky * p->dil_h;
                        if (iy < 0 || iy >= in_h) {
                            continue;
                        }
                        for (int32_t kx = 0; kx < p->k_w; ++kx) {
                            const int32_t ix = ix0 + kx * p->dil_w;
                            if (ix < 0 || ix >= in_w) {
                                continue;
                            }
                            const int32_t x = in_b[((size_t)iy * in_w + ix) * in_c + ic];
                            const int32_t w = filter[((size_t)ky * p->k_w + kx) * out_c + oc];
                            acc += w * (x + input_offset);
                        }
                    }
                    output[(((size_t)b * p->out_h + oy) * p->out_w + ox) * out_c + oc] =
                        (int8_t)tinyml_requant(acc, multiplier[oc], shift[oc], p->output_offset,
                                               p->act_min, p->act_max);
                }
            }
        }
    }
}

/* ------------------------------------------------------------------ FULLY_CONNECTED */

void tinyml_fully_connected_s8(const tinyml_fc_params *p, const int8_t *input,
                               const int8_t *filter, const int32_t *bias,
                               const int32_t *multiplier, const int32_t *shift, int8_t *output) {
    const int32_t depth = p->in_depth, out_depth = p->out_depth;
    const int32_t input_offset = p->input_offset;
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *x = input + (size_t)b * depth;
        int8_t *out = output + (size_t)b * out_depth;
        int32_t oc = 0;
#if TINYML_USE_SIMD
        const int32_t offset2 = tinyml_pack_offset(input_offset);
        const int32_t k4 = depth & ~3;
        for (; oc + 1 < out_depth; oc += 2) {
            const int8_t *w0 = filter + (size_t)oc * depth;
            const int8_t *w1 = w0 + depth;
            int32_t a0 = bias ? bias[oc] : 0;
            int32_t a1 = bias ? bias[oc + 1] : 0;
            for (int32_t k = 0; k < k4; k += 4) {
                const int32_t xv = tinyml_read_s8x4(x + k);
                const int32_t x_e = __sxtab16(offset2, xv);
                const int32_t x_o = __sxtab16(offset2, __ror(xv, 8));
                const int32_t wa = tinyml_read_s8x4(w0 + k);
                const int32_t wb = tinyml_read_s8x4(w1 + k);
                a0 = __smlad(__sxtb16(wa), x_e, a0);
                a1 = __smlad(__sxtb16(wb), x_e, a1);
                a0 = __smlad(__sxtb16(__ror(wa, 8)), x_o, a0);
                a1 = __smlad(__sxtb16(__ror(wb, 8)), x_o, a1);
            }
            for (int32_t k = k4; k < depth; ++k) {
                const int32_t xk = (int32_t)x[k] + input_offset;
                a0 += (int32_t)w0[k] * xk;
                a1 += (int32_t)w1[k] * xk;
            }
            out[oc] = (int8_t)tinyml_requant(a0, multiplier[oc], shift[oc], p->output_offset,
                                             p->act_min, p->act_max);
            out[oc + 1] = (int8_t)tinyml_requant(a1, multiplier[oc + 1], shift[oc + 1],
                                                 p->output_offset, p->act_min, p->act_max);
        }
#endif
        for (; oc < out_depth; ++oc) {
            const int8_t *w = filter + (size_t)oc * depth;
            int32_t acc = bias ? bias[oc] : 0;
            for (int32_t k = 0; k < depth; ++k) {
                acc += (int32_t)w[k] * ((int32_t)x[k] + input_offset);
            }
            out[oc] = (int8_t)tinyml_requant(acc, multiplier[oc], shift[oc], p->output_offset,
                                             p->act_min, p->act_max);
        }
    }
}

/* ------------------------------------------------------------------ pooling */

void tinyml_max_pool_s8(const tinyml_pool_params *p, const int8_t *input, int8_t *output) {
    const int32_t ch = p->channels;
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + (size_t)b * p->in_h * p->in_w * ch;
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            const int32_t y_start = tinyml_max(0, -iy0);
            const int32_t y_end = tinyml_min(p->k_h, p->in_h - iy0);
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                const int32_t x_start = tinyml_max(0, -ix0);
                const int32_t x_end = tinyml_min(p->k_w, p->in_w - ix0);
                for (int32_t c = 0; c < ch; ++c) {
                    int32_t m = -128;
                    for (int32_t fy = y_start; fy < y_end; ++fy) {
                        for (int32_t fx = x_start; fx < x_end; ++fx) {
                            const int32_t v =
                                in_b[((size_t)(iy0 + fy) * p->in_w + (ix0 + fx)) * ch + c];
                            m = v > m ? v : m;
                        }
                    }
                    m = tinyml_max(m, p->act_min);
                    m = tinyml_min(m, p->act_max);
                    *output++ = (int8_t)m;
                }
            }
        }
    }
}

void tinyml_avg_pool_s8(const tinyml_pool_params *p, const int8_t *input, int8_t *output) {
    const int32_t ch = p->channels;
    for (int32_t b = 0; b < p->batches; ++b) {
        const int8_t *in_b = input + (size_t)b * p->in_h * p->in_w * ch;
        for (int32_t oy = 0; oy < p->out_h; ++oy) {
            const int32_t iy0 = oy * p->stride_h - p->pad_h;
            const int32_t y_start = tinyml_max(0, -iy0);
            const int32_t y_end = tinyml_min(p->k_h, p->in_h - iy0);
            for (int32_t ox = 0; ox < p->out_w; ++ox) {
                const int32_t ix0 = ox * p->stride_w - p->pad_w;
                const int32_t x_start = tinyml_max(0, -ix0);
                const int32_t x_end = tinyml_min(p->k_w, p->in_w - ix0);
                const int32_t count = (y_end - y_start) * (x_end - x_start);
                for (int32_t c = 0; c < ch; ++c) {
                    int32_t acc = 0;
                    for (int32_t fy = y_start; fy < y_end; ++fy) {
                        for (int32_t fx = x_start; fx < x_end; ++fx) {
                            acc += in_b[((size_t)(iy0 + fy) * p->in_w + (ix0 + fx)) * ch + c];
                        }
                    }
                    if (count > 0) {
                        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    }
                    acc = tinyml_max(acc, p->act_min);
                    acc = tinyml_min(acc, p->act_max);
                    *output++ = (int8_t)acc;
                }
            }
        }
    }
}

/* ------------------------------------------------------------------ MEAN */

void tinyml_mean_s8(const tinyml_mean_params *p, const int8_t *input, int8_t *output) {
    const int32_t n = p->reduce;
    for (int32_t o = 0; o < p->outer; ++o) {
        const int8_t *in_o = input + (size_t)o * n * p->inner;
        for (int32_t i = 0; i < p->inner; ++i) {
            int32_t sum = 0;
            for (int32_t r = 0; r < n; ++r) {
                sum += in_o[(size_t)r * p->inner + i];
            }
            const int32_t shifted = sum - p->input_zero_point * n;
            int32_t v = tinyml_multiply_by_quantized_multiplier(shifted, p->multiplier, p->shift) +
                        p->output_zero_point;
            v = tinyml_min(tinyml_max(v, -128), 127);
            *output++ = (int8_t)v;
        }
    }
}

/* ------------------------------------------------------------------ ADD */

static inline int8_t tinyml_add_one(const tinyml_add_params *p, int32_t x, int32_t y) {
    const int32_t in1 = (int32_t)((uint32_t)(p->input1_offset + x) << p->left_shift);
    const int32_t in2 = (int32_t)((uint32_t)(p->input2_offset + y) << p->left_shift);
    const int32_t s1 =
        tinyml_multiply_by_quantized_multiplier(in1, p->input1_multiplier, p->input1_shift);
    const int32_t s2 =
        tinyml_multiply_by_quantized_multiplier(in2, p->input2_multiplier, p->input2_shift);
    int32_t out = tinyml_multiply_by_quantized_multiplier(s1 + s2, p->output_multiplier,
                                                          p->output_shift) +
                  p->output_offset;
    out = tinyml_min(p->act_max, tinyml_max(p->act_min, out));
    return (int8_t)out;
}

void tinyml_add_s8(const tinyml_add_params *p, const int8_t *input1, const int8_t *input2,
                   int8_t *output) {
    if (!p->broadcast) {
        for (int32_t i = 0; i < p->size; ++i) {
            output[i] = tinyml_add_one(p, input1[i], input2[i]);
        }
        return;
    }
    for (int32_t d0 = 0; d0 < p->dims[0]; ++d0) {
        for (int32_t d1 = 0; d1 < p->dims[1]; ++d1) {
            for (int32_t d2 = 0; d2 < p->dims[2]; ++d2) {
                const int8_t *a = input1 + d0 * p->stride1[0] + d1 * p->stride1[1] +
                                  d2 * p->stride1[2];
                const int8_t *b = input2 + d0 * p->stride2[0] + d1 * p->stride2[1] +
                                  d2 * p->stride2[2];
                for (int32_t d3 = 0; d3 < p->dims[3]; ++d3) {
                    *output++ = tinyml_add_one(p, a[d3 * p->stride1[3]], b[d3 * p->stride2[3]]);
                }
            }
        }
    }
}

/* ------------------------------------------------------------------ PAD */

void tinyml_pad_s8(const tinyml_pad_params *p, const int8_t *input, int8_t *output) {
    const int32_t *o = p->out_dims;
    const int32_t *n = p->in_dims;
    const int32_t *bf = p->before;
    for (int32_t d0 = 0; d0 < o[0]; ++d0) {
        const int32_t i0 = d0 - bf[0];
        for (int32_t d1 = 0; d1 < o[1]; ++d1) {
            const int32_t i1 = d1 - bf[1];
            for (int32_t d2 = 0; d2 < o[2]; ++d2) {
                const int32_t i2 = d2 - bf[2];
                const int row_inside = i0 >= 0 && i0 < n[0] && i1 >= 0 && i1 < n[1] &&
                                       i2 >= 0 && i2 < n[2];
                const int8_t *src = input + (((size_t)i0 * n[1] + i1) * n[2] + i2) * n[3];
                for (int32_t d3 = 0; d3 < o[3]; ++d3) {
                    const int32_t i3 = d3 - bf[3];
                    *output++ = (row_inside && i3 >= 0 && i3 < n[3]) ? src[i3]
                                                                     : (int8_t)p->pad_value;
                }
            }
        }
    }
}

/* ------------------------------------------------------------------ SOFTMAX */

void tinyml_softmax_s8(const tinyml_softmax_params *p, const int8_t *input, int8_t *output) {
    const int32_t depth = p->depth;
    for (int32_t i = 0; i < p->outer; ++i) {
        const int8_t *x = input + (size_t)i * depth;
        int8_t *y = output + (size_t)i * depth;
        int32_t max_in_row = -128;
        for (int32_t c = 0; c < depth; ++c) {
            max_in_row = tinyml_max(max_in_row, x[c]);
        }
        int32_t sum_of_exps = 0; /* Q12.19 */
        for (int32_t c = 0; c < depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t rescaled = tinyml_multiply_by_quantized_multiplier(
                    diff, p->input_multiplier, p->input_left_shift);
                sum_of_exps += tinyml_rdbpot(tinyml_exp_on_negative_values(rescaled, 5), 12);
            }
        }
        const int32_t headroom_plus_one = tinyml_clz32((uint32_t)sum_of_exps);
        const int32_t num_bits_over_unit = 12 - headroom_plus_one;
        const int32_t shifted_sum_minus_one =
            (int32_t)(((uint32_t)sum_of_exps << headroom_plus_one) - ((uint32_t)1 << 31));
        const int32_t shifted_scale = tinyml_one_over_one_plus_x(shifted_sum_minus_one);
        const int32_t exponent = num_bits_over_unit + 31 - 8;
        for (int32_t c = 0; c < depth; ++c) {
            const int32_t diff = (int32_t)x[c] - max_in_row;
            if (diff >= p->diff_min) {
                const int32_t rescaled = tinyml_multiply_by_quantized_multiplier(
                    diff, p->input_multiplier, p->input_left_shift);
                const int32_t exp_in_0 = tinyml_exp_on_negative_values(rescaled, 5);
                const int32_t unsat =
                    tinyml_rdbpot(tinyml_srdhm(shifted_scale, exp_in_0), exponent);
                y[c] = (int8_t)tinyml_max(tinyml_min(unsat - 128, 127), -128);
            } else {
                y[c] = -128;
            }
        }
    }
}

/* ------------------------------------------------------------------ LOGISTIC */

static int32_t tinyml_logistic_q4(int32_t a) {
    if (a == 0) {
        return (int32_t)1 << 30;
    }
    const int32_t abs_a = a > 0 ? a : -a;
    const int32_t positive = tinyml_one_over_one_plus_x(tinyml_exp_on_negative_values(-abs_a, 4));
    return a > 0 ? positive : TINYML_INT32_MAX - positive;
}

void tinyml_logistic_s8(const tinyml_logistic_params *p, const int8_t *input, int8_t *output) {
    for (int32_t i = 0; i < p->size; ++i) {
        const int32_t x = (int32_t)input[i] - p->input_zero_point;
        if (x <= -p->input_range_radius) {
            output[i] = -128;
        } else if (x >= p->input_range_radius) {
            output[i] = 127;
        } else {
            const int32_t in_q4 = tinyml_multiply_by_quantized_multiplier(
                x, p->input_multiplier, p->input_left_shift);
            int32_t out = tinyml_rdbpot(tinyml_logistic_q4(in_q4), 23) - 128;
            out = tinyml_min(tinyml_max(out, -128), 127);
            output[i] = (int8_t)out;
        }
    }
}

/* ------------------------------------------------------------------ QUANTIZE, copy */

void tinyml_requantize_s8(const tinyml_requantize_params *p, const int8_t *input,
                          int8_t *output) {
    for (int32_t i = 0; i < p->size; ++i) {
        int32_t v = tinyml_multiply_by_quantized_multiplier(
                        (int32_t)input[i] - p->input_zero_point, p->multiplier, p->shift) +
                    p->output_zero_point;
        v = tinyml_max(tinyml_min(v, 127), -128);
        output[i] = (int8_t)v;
    }
}

void tinyml_copy_s8(int8_t *dst, const int8_t *src, int32_t n) {
    for (int32_t i = 0; i < n; ++i) {
        dst[i] = src[i];
    }
}
