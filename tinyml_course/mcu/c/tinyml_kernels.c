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

/* Short loops (a few channels, a kernel row) run faster without the compiler's unrolling. */
#if defined(__clang__)
#define TINYML_SHORT_LOOP _Pragma("clang loop unroll(disable) vectorize(disable)")
#else
#define TINYML_SHORT_LOOP
#endif

static inline int32_t tinyml_min(int32_t a, int32_t b) { return a < b ? a : b; }
static inline int32_t tinyml_max(int32_t a, int32_t b) { return a > b ? a : b; }

/* ------------------------------------------------------------------ gemmlowp fixed point */

/* SaturatingRoundingDoublingHighMul: gemmlowp computes (a*b + nudge) / 2^31 with C's truncating
   division and a nudge of 2^30 (1 - 2^30 for negative products). That equals
   floor((a*b + 2^30) / 2^31) for every a, b except the saturating case a == b == INT32_MIN;
   the shift form avoids a 64-bit division (and compiles to SMULL + a few instructions). */
static inline int32_t tinyml_srdhm(int32_t a, int32_t b) {
    if (a == b && a == TINYML_INT32_MIN) {
        return TINYML_INT32_MAX;
    }
    return (int32_t)(((int64_t)a * (int64_t)b + ((int64_t)1 << 30)) >> 31);
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

/* Requantize an accumulator: MultiplyByQuantizedMultiplier, + output offset, clamp.
 *
 * Fast path, exact: for |x| < 2^30 (x = acc << left shift, the usual case by far),
 * SaturatingRoundingDoublingHighMul(x, m) = floor((x*m + 2^30) / 2^31) is the rounded high
 * word of (2x)*m, one SMMULR; and for a right shift r in [1, 30] RoundingDivideByPOT(y, r) is
 * (y + 2^(r-1) - (y < 0)) >> r. Anything else takes the reference formulas. The multipliers
 * come from QuantizeMultiplier (0 <= m < 2^31), so the saturating case cannot occur. */
static inline int32_t tinyml_requant(int32_t acc, int32_t multiplier, int32_t shift,
                                     int32_t output_offset, int32_t act_min, int32_t act_max) {
    const int32_t left = shift > 0 ? shift : 0;
    const int32_t right = shift > 0 ? 0 : -shift;
    const int32_t x = (int32_t)((uint32_t)acc << left);
    int32_t v;
    if ((uint32_t)x + 0x40000000u < 0x80000000u && (uint32_t)(right - 1) < 30u) {
        const int32_t high = (int32_t)(((int64_t)(x * 2) * multiplier + 0x80000000LL) >> 32);
        v = (high + ((int32_t)1 << (right - 1)) + (high >> 31)) >> right;
    } else {
        v = tinyml_rdbpot(tinyml_srdhm(x, multiplier), right);
    }
    v += output_offset;
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

/* The taps [*lo, *hi) of a kernel of `k` taps (dilation `dil`) starting at input position
   `origin` that fall inside [0, size): padding is skipped, as in the reference kernels. */
static inline void tinyml_valid_taps(int32_t origin, int32_t dil, int32_t k, int32_t size,
                                     int32_t *lo, int32_t *hi) {
    int32_t a = 0, b = k;
    while (a < k && origin + a * dil < 0) {
        ++a;
    }
    while (b > a && origin + (b - 1) * dil >= size) {
        --b;
    }
    *lo = a;
    *hi = b;
}

static void tinyml_conv2d_plain(const tinyml_conv_params *p, const int8_t *input,
                                const int8_t *filter, const int32_t *bias,
                                const int32_t *multiplier, const int32_t *shift,
                                int8_t *output) {
    /* Parameters in locals: stores through int8_t pointers may alias anything, so the
       compiler would otherwise reload them after every output byte. */
    const int32_t batches = p->batches, in_h = p->in_h, in_w = p->in_w, in_c = p->in_c;
    const int32_t out_h = p->out_h, out_w = p->out_w, out_c = p->out_c;
    const int32_t k_h = p->k_h, k_w = p->k_w, stride_h = p->stride_h, stride_w = p->stride_w;
    const int32_t dil_h = p->dil_h, dil_w = p->dil_w, pad_h = p->pad_h, pad_w = p->pad_w;
    const int32_t input_offset = p->input_offset, output_offset = p->output_offset;
    const int32_t act_min = p->act_min, act_max = p->act_max;
    const int32_t filter_stride = k_h * k_w * in_c;
    for (int32_t b = 0; b < batches; ++b) {
        const int8_t *in_b = input + (size_t)b * in_h * in_w * in_c;
        for (int32_t oy = 0; oy < out_h; ++oy) {
            const int32_t iy0 = oy * stride_h - pad_h;
            int32_t ky_lo, ky_hi;
            tinyml_valid_taps(iy0, dil_h, k_h, in_h, &ky_lo, &ky_hi);
            for (int32_t ox = 0; ox < out_w; ++ox) {
                const int32_t ix0 = ox * stride_w - pad_w;
                int32_t kx_lo, kx_hi;
                tinyml_valid_taps(ix0, dil_w, k_w, in_w, &kx_lo, &kx_hi);
                const int32_t row_len = (kx_hi - kx_lo) > 0 ? (kx_hi - kx_lo) : 0;
                /* With dilation 1 the valid part of a kernel row is one contiguous run of
                   row_len * in_c values, in the input as in the filter. */
                const int32_t run = dil_w == 1 ? row_len * in_c : in_c;
                const int32_t runs = dil_w == 1 ? 1 : row_len;
                for (int32_t oc = 0; oc < out_c; ++oc) {
                    int32_t acc = bias ? bias[oc] : 0;
                    const int8_t *w_oc = filter + (size_t)oc * filter_stride;
                    for (int32_t ky = ky_lo; ky < ky_hi; ++ky) {
                        const int8_t *x = in_b + ((size_t)(iy0 + ky * dil_h) * in_w +
                                                  (ix0 + kx_lo * dil_w)) * in_c;
                        const int8_t *w = w_oc + ((size_t)ky * k_w + kx_lo) * in_c;
                        for (int32_t r = 0; r < runs; ++r) {
                            for (int32_t j = 0; j < run; ++j) {
                                acc += (int32_t)w[j] * ((int32_t)x[j] + input_offset);
                            }
                            x += dil_w * in_c;
                            w += in_c;
                        }
                    }
                    *output++ = (int8_t)tinyml_requant(acc, multiplier[oc], shift[oc],
                                                       output_offset, act_min, act_max);
                }
            }
        }
    }
}

#if TINYML_USE_SIMD
/*
 * SIMD convolution (im2col + 2x2 register blocking, as CMSIS-NN does).
 *
 * The receptive fields of two output pixels A and B are widened to int16 (x + input_offset,
 * 0 in the padding) and interleaved by groups of four values: words [A02, A13, B02, B13].
 * A02 holds values 0 and 2 of the group, A13 values 1 and 3: the order in which SXTB16 splits
 * a word of four int8 weights, so one SMLAD multiplies two weights with their two inputs.
 * The k_total % 4 leftover values follow, A's then B's, in natural order.
 */
/* k_h rows of `run` int8 values (x + offset as int16; rows outside [0, in_h) are zeros). A small
   function of its own, so that its loop keeps its variables in registers. */
static __attribute__((noinline)) void tinyml_gather_rows(const int8_t *src, int32_t iy,
                                                         int32_t dil_h, int32_t in_h,
                                                         size_t row_step, int32_t k_h,
                                                         int32_t run, int32_t offset,
                                                         int16_t *dst) {
    for (int32_t ky = 0; ky < k_h; ++ky, iy += dil_h, src += row_step) {
        if (iy < 0 || iy >= in_h) {
            TINYML_SHORT_LOOP
            for (int32_t j = 0; j < run; ++j) {
                *dst++ = 0;
            }
        } else {
            TINYML_SHORT_LOOP
            for (int32_t j = 0; j < run; ++j) {
                *dst++ = (int16_t)(src[j] + offset);
            }
        }
    }
}

static void tinyml_im2col(const tinyml_conv_params *p, const int8_t *input, int32_t pix,
                          int16_t *col, int32_t which, int16_t *natural) {
    const int32_t in_h = p->in_h, in_w = p->in_w, in_c = p->in_c;
    const int32_t k_h = p->k_h, k_w = p->k_w, dil_h = p->dil_h, dil_w = p->dil_w;
    const int32_t input_offset = p->input_offset;
    const int32_t ox = pix % p->out_w;
    const int32_t t = pix / p->out_w;
    const int32_t oy = t % p->out_h;
    const int32_t b = t / p->out_h;
    const int8_t *in_b = input + (size_t)b * in_h * in_w * in_c;
    const int32_t iy0 = oy * p->stride_h - p->pad_h;
    const int32_t ix0 = ox * p->stride_w - p->pad_w;
    if ((in_c & 3) == 0) {
        const int32_t offset2 = tinyml_pack_offset(input_offset);
        tinyml_i32a *dst = (tinyml_i32a *)col + 2 * which;
        for (int32_t ky = 0; ky < k_h; ++ky) {
            const int32_t iy = iy0 + ky * dil_h;
            for (int32_t kx = 0; kx < k_w; ++kx) {
                const int32_t ix = ix0 + kx * dil_w;
                if (iy < 0 || iy >= in_h || ix < 0 || ix >= in_w) {
                    for (int32_t c = 0; c < in_c; c += 4) {
                        dst[0] = 0;
                        dst[1] = 0;
                        dst += 4;
                    }
                } else {
                    const int8_t *src = in_b + ((size_t)iy * in_w + ix) * in_c;
                    for (int32_t c = 0; c < in_c; c += 4) {
                        const int32_t v = tinyml_read_s8x4(src + c);
                        dst[0] = __sxtab16(offset2, v);
                        dst[1] = __sxtab16(offset2, __ror(v, 8));
                        dst += 4;
                    }
                }
            }
        }
        return;
    }
    /* Channels not a multiple of four: gather in natural order, then reorder by words. With
       dilation 1 and the kernel inside the image horizontally, a kernel row is one run of
       k_w * in_c contiguous bytes. */
    const int32_t k_total = k_h * k_w * in_c;
    if (dil_w == 1 && ix0 >= 0 && ix0 + k_w <= in_w) {
        tinyml_gather_rows(in_b + ((size_t)iy0 * in_w + ix0) * in_c, iy0, dil_h, in_h,
                           (size_t)dil_h * in_w * in_c, k_h, k_w * in_c, input_offset, natural);
    } else {
        int16_t *n = natural;
        for (int32_t ky = 0; ky < k_h; ++ky) {
            const int32_t iy = iy0 + ky * dil_h;
            for (int32_t kx = 0; kx < k_w; ++kx) {
                const int32_t ix = ix0 + kx * dil_w;
                const int8_t *src = in_b + ((size_t)iy * in_w + ix) * in_c;
                const int inside = iy >= 0 && iy < in_h && ix >= 0 && ix < in_w;
                TINYML_SHORT_LOOP
                for (int32_t c = 0; c < in_c; ++c) {
                    *n++ = inside ? (int16_t)(src[c] + input_offset) : 0;
                }
            }
        }
    }
    const int32_t groups = k_total >> 2;
    const tinyml_i32a *src = (const tinyml_i32a *)natural;
    tinyml_i32a *dst = (tinyml_i32a *)col + 2 * which;
    for (int32_t g = 0; g < groups; ++g) {
        const int32_t v01 = src[0], v23 = src[1];
        src += 2;
        /* values 0, 2 and values 1, 3 (the compiler emits PKHBT / PKHTB) */
        dst[0] = (int32_t)(((uint32_t)v01 & 0xFFFFu) | ((uint32_t)v23 << 16));
        dst[1] = (int32_t)(((uint32_t)v01 >> 16) | ((uint32_t)v23 & 0xFFFF0000u));
        dst += 4;
    }
    const int32_t tail = k_total - 4 * groups;
    int16_t *tail_dst = col + 8 * groups + which * tail;
    for (int32_t k = 0; k < tail; ++k) {
        tail_dst[k] = natural[4 * groups + k];
    }
}

/* Two output pixels (the interleaved columns `col`) times every filter: two filters at a time,
   8 SMLAD per 16 MACs, then requantization. Not inlined, so the inner loop gets the registers. */
static __attribute__((noinline)) void tinyml_conv_2col(
    const int8_t *filter, const int32_t *bias, const int32_t *multiplier, const int32_t *shift,
    const int16_t *col, int32_t k_total, int32_t out_c, int8_t *out_a, int8_t *out_b,
    int32_t output_offset, int32_t act_min, int32_t act_max) {
    const int32_t groups = k_total >> 2;
    const int32_t tail = k_total & 3;
    const int16_t *tail_a = col + 8 * groups;
    const int16_t *tail_b = tail_a + tail;
    for (int32_t oc = 0; oc < out_c; oc += 2) {
        const int32_t oc1 = oc + 1 < out_c ? oc + 1 : oc;
        const int8_t *w0 = filter + (size_t)oc * k_total;
        const int8_t *w1 = filter + (size_t)oc1 * k_total;
        int32_t a0 = 0, a1 = 0;
        if (bias) {
            a0 = bias[oc];
            a1 = bias[oc1];
        }
        int32_t b0 = a0, b1 = a1;
        const tinyml_i32a *x = (const tinyml_i32a *)col;
        for (int32_t g = groups; g > 0; --g) {
            const int32_t xa_e = x[0], xa_o = x[1], xb_e = x[2], xb_o = x[3];
            x += 4;
            const int32_t u = tinyml_read_s8x4(w0);
            const int32_t v = tinyml_read_s8x4(w1);
            w0 += 4;
            w1 += 4;
            const int32_t u_e = __sxtb16(u), u_o = __sxtb16(__ror(u, 8));
            a0 = __smlad(u_e, xa_e, a0);
            b0 = __smlad(u_e, xb_e, b0);
            a0 = __smlad(u_o, xa_o, a0);
            b0 = __smlad(u_o, xb_o, b0);
            const int32_t v_e = __sxtb16(v), v_o = __sxtb16(__ror(v, 8));
            a1 = __smlad(v_e, xa_e, a1);
            b1 = __smlad(v_e, xb_e, b1);
            a1 = __smlad(v_o, xa_o, a1);
            b1 = __smlad(v_o, xb_o, b1);
        }
        for (int32_t k = 0; k < tail; ++k) {
            a0 += (int32_t)w0[k] * tail_a[k];
            b0 += (int32_t)w0[k] * tail_b[k];
            a1 += (int32_t)w1[k] * tail_a[k];
            b1 += (int32_t)w1[k] * tail_b[k];
        }
        const int32_t m0 = multiplier[oc], s0 = shift[oc];
        out_a[oc] = (int8_t)tinyml_requant(a0, m0, s0, output_offset, act_min, act_max);
        if (out_b) {
            out_b[oc] = (int8_t)tinyml_requant(b0, m0, s0, output_offset, act_min, act_max);
        }
        if (oc1 != oc) {
            const int32_t m1 = multiplier[oc1], s1 = shift[oc1];
            out_a[oc1] = (int8_t)tinyml_requant(a1, m1, s1, output_offset, act_min, act_max);
            if (out_b) {
                out_b[oc1] = (int8_t)tinyml_requant(b1, m1, s1, output_offset, act_min, act_max);
            }
        }
    }
}

static void tinyml_conv2d_simd(const tinyml_conv_params *p, const int8_t *input,
                               const int8_t *filter, const int32_t *bias,
                               const int32_t *multiplier, const int32_t *shift, int8_t *output,
                               int16_t *scratch) {
    const int32_t k_total = p->k_h * p->k_w * p->in_c;
    const int32_t out_c = p->out_c;
    const int32_t n_pix = p->batches * p->out_h * p->out_w;
    const int32_t output_offset = p->output_offset, act_min = p->act_min, act_max = p->act_max;
    /* Two interleaved columns, then (channels not a multiple of 4) one natural-order column. */
    int16_t *natural = scratch + 2 * (k_total + (k_total & 1));
    for (int32_t pix = 0; pix < n_pix; pix += 2) {
        const int32_t has_b = pix + 1 < n_pix;
        tinyml_im2col(p, input, pix, scratch, 0, natural);
        tinyml_im2col(p, input, has_b ? pix + 1 : pix, scratch, 1, natural);
        int8_t *out_a = output + (size_t)pix * out_c;
        tinyml_conv_2col(filter, bias, multiplier, shift, scratch, k_total, out_c, out_a,
                         has_b ? out_a + out_c : NULL, output_offset, act_min, act_max);
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
    const int32_t batches = p->batches, in_h = p->in_h, in_w = p->in_w, in_c = p->in_c;
    const int32_t out_h = p->out_h, out_w = p->out_w, out_c = p->out_c;
    const int32_t k_h = p->k_h, k_w = p->k_w, stride_h = p->stride_h, stride_w = p->stride_w;
    const int32_t dil_h = p->dil_h, dil_w = p->dil_w, pad_h = p->pad_h, pad_w = p->pad_w;
    const int32_t dm = p->depth_multiplier;
    const int32_t input_offset = p->input_offset, output_offset = p->output_offset;
    const int32_t act_min = p->act_min, act_max = p->act_max;
    for (int32_t b = 0; b < batches; ++b) {
        const int8_t *in_b = input + (size_t)b * in_h * in_w * in_c;
        for (int32_t oy = 0; oy < out_h; ++oy) {
            const int32_t iy0 = oy * stride_h - pad_h;
            int32_t ky_lo, ky_hi;
            tinyml_valid_taps(iy0, dil_h, k_h, in_h, &ky_lo, &ky_hi);
            for (int32_t ox = 0; ox < out_w; ++ox) {
                const int32_t ix0 = ox * stride_w - pad_w;
                int32_t kx_lo, kx_hi;
                tinyml_valid_taps(ix0, dil_w, k_w, in_w, &kx_lo, &kx_hi);
                int8_t *out = output + (((size_t)b * out_h + oy) * out_w + ox) * out_c;
                int32_t oc = 0;
#if TINYML_USE_SIMD
                if (dm == 1) {
                    /* Four channels at a time: SXTB16 splits them into lanes (0, 2) and (1, 3),
                       SMLABB/SMLATT multiply-accumulate each 16-bit lane into its channel. */
                    const int32_t offset2 = tinyml_pack_offset(input_offset);
                    for (; oc + 3 < out_c; oc += 4) {
                        int32_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
                        if (bias) {
                            a0 = bias[oc];
                            a1 = bias[oc + 1];
                            a2 = bias[oc + 2];
                            a3 = bias[oc + 3];
                        }
                        TINYML_SHORT_LOOP
                        for (int32_t ky = ky_lo; ky < ky_hi; ++ky) {
                            const int8_t *x = in_b + ((size_t)(iy0 + ky * dil_h) * in_w +
                                                      (ix0 + kx_lo * dil_w)) * in_c + oc;
                            const int8_t *w = filter + ((size_t)ky * k_w + kx_lo) * out_c + oc;
                            TINYML_SHORT_LOOP
                            for (int32_t kx = kx_lo; kx < kx_hi; ++kx) {
                                const int32_t xv = tinyml_read_s8x4(x);
                                const int32_t wv = tinyml_read_s8x4(w);
                                x += dil_w * in_c;
                                w += out_c;
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
                        out[oc] = (int8_t)tinyml_requant(a0, multiplier[oc], shift[oc],
                                                         output_offset, act_min, act_max);
                        out[oc + 1] = (int8_t)tinyml_requant(a1, multiplier[oc + 1], shift[oc + 1],
                                                             output_offset, act_min, act_max);
                        out[oc + 2] = (int8_t)tinyml_requant(a2, multiplier[oc + 2], shift[oc + 2],
                                                             output_offset, act_min, act_max);
                        out[oc + 3] = (int8_t)tinyml_requant(a3, multiplier[oc + 3], shift[oc + 3],
                                                             output_offset, act_min, act_max);
                    }
                }
#endif
                for (; oc < out_c; ++oc) {
                    const int32_t ic = oc / dm;
                    int32_t acc = bias ? bias[oc] : 0;
                    TINYML_SHORT_LOOP
                    for (int32_t ky = ky_lo; ky < ky_hi; ++ky) {
                        const int8_t *x = in_b + ((size_t)(iy0 + ky * dil_h) * in_w +
                                                  (ix0 + kx_lo * dil_w)) * in_c + ic;
                        const int8_t *w = filter + ((size_t)ky * k_w + kx_lo) * out_c + oc;
                        TINYML_SHORT_LOOP
                        for (int32_t kx = kx_lo; kx < kx_hi; ++kx) {
                            acc += (int32_t)*w * ((int32_t)*x + input_offset);
                            x += dil_w * in_c;
                            w += out_c;
                        }
                    }
                    out[oc] = (int8_t)tinyml_requant(acc, multiplier[oc], shift[oc],
                                                     output_offset, act_min, act_max);
                }
            }
        }
    }
}

/* ------------------------------------------------------------------ FULLY_CONNECTED */

#if TINYML_USE_SIMD
/* Two weight rows against one input row, the input widened on the fly with its offset. */
static __attribute__((noinline)) void tinyml_dot_2x1(const int8_t *w0, const int8_t *w1,
                                                     const int8_t *x, int32_t groups,
                                                     int32_t offset2, int32_t *acc) {
    int32_t a0 = acc[0], a1 = acc[1];
    while (groups-- > 0) {
        const int32_t xv = tinyml_read_s8x4(x);
        const int32_t u = tinyml_read_s8x4(w0);
        const int32_t v = tinyml_read_s8x4(w1);
        x += 4;
        w0 += 4;
        w1 += 4;
        const int32_t x_e = __sxtab16(offset2, xv);
        const int32_t x_o = __sxtab16(offset2, __ror(xv, 8));
        a0 = __smlad(__sxtb16(u), x_e, a0);
        a1 = __smlad(__sxtb16(v), x_e, a1);
        a0 = __smlad(__sxtb16(__ror(u, 8)), x_o, a0);
        a1 = __smlad(__sxtb16(__ror(v, 8)), x_o, a1);
    }
    acc[0] = a0;
    acc[1] = a1;
}
#endif

void tinyml_fully_connected_s8(const tinyml_fc_params *p, const int8_t *input,
                               const int8_t *filter, const int32_t *bias,
                               const int32_t *multiplier, const int32_t *shift, int8_t *output) {
    const int32_t batches = p->batches, depth = p->in_depth, out_depth = p->out_depth;
    const int32_t input_offset = p->input_offset, output_offset = p->output_offset;
    const int32_t act_min = p->act_min, act_max = p->act_max;
    for (int32_t b = 0; b < batches; ++b) {
        const int8_t *x = input + (size_t)b * depth;
        int8_t *out = output + (size_t)b * out_depth;
        int32_t oc = 0;
#if TINYML_USE_SIMD
        const int32_t offset2 = tinyml_pack_offset(input_offset);
        const int32_t k4 = depth & ~3;
        for (; oc + 1 < out_depth; oc += 2) {
            const int8_t *w0 = filter + (size_t)oc * depth;
            const int8_t *w1 = w0 + depth;
            int32_t acc[2];
            acc[0] = bias ? bias[oc] : 0;
            acc[1] = bias ? bias[oc + 1] : 0;
            tinyml_dot_2x1(w0, w1, x, k4 >> 2, offset2, acc);
            for (int32_t k = k4; k < depth; ++k) {
                const int32_t xk = (int32_t)x[k] + input_offset;
                acc[0] += (int32_t)w0[k] * xk;
                acc[1] += (int32_t)w1[k] * xk;
            }
            out[oc] = (int8_t)tinyml_requant(acc[0], multiplier[oc], shift[oc], output_offset,
                                             act_min, act_max);
            out[oc + 1] = (int8_t)tinyml_requant(acc[1], multiplier[oc + 1], shift[oc + 1],
                                                 output_offset, act_min, act_max);
        }
#endif
        for (; oc < out_depth; ++oc) {
            const int8_t *w = filter + (size_t)oc * depth;
            int32_t acc = bias ? bias[oc] : 0;
            for (int32_t k = 0; k < depth; ++k) {
                acc += (int32_t)w[k] * ((int32_t)x[k] + input_offset);
            }
            out[oc] = (int8_t)tinyml_requant(acc, multiplier[oc], shift[oc], output_offset,
                                             act_min, act_max);
        }
    }
}

/* ------------------------------------------------------------------ pooling */

void tinyml_max_pool_s8(const tinyml_pool_params *p, const int8_t *input, int8_t *output) {
    const int32_t batches = p->batches, in_h = p->in_h, in_w = p->in_w, ch = p->channels;
    const int32_t out_h = p->out_h, out_w = p->out_w, k_h = p->k_h, k_w = p->k_w;
    const int32_t stride_h = p->stride_h, stride_w = p->stride_w;
    const int32_t pad_h = p->pad_h, pad_w = p->pad_w;
    const int32_t act_min = p->act_min, act_max = p->act_max;
    const int clamp = act_min > -128 || act_max < 127;
#if TINYML_USE_SIMD
    /* Four channels per instruction: SSUB8 compares four int8 lanes, SEL keeps the larger. */
    const int32_t lo4 = (int32_t)(0x01010101u * (uint8_t)(int8_t)act_min);
    const int32_t hi4 = (int32_t)(0x01010101u * (uint8_t)(int8_t)act_max);
#endif
    for (int32_t b = 0; b < batches; ++b) {
        const int8_t *in_b = input + (size_t)b * in_h * in_w * ch;
        for (int32_t oy = 0; oy < out_h; ++oy) {
            const int32_t iy0 = oy * stride_h - pad_h;
            const int32_t y_start = tinyml_max(0, -iy0);
            const int32_t y_end = tinyml_min(k_h, in_h - iy0);
            for (int32_t ox = 0; ox < out_w; ++ox) {
                const int32_t ix0 = ox * stride_w - pad_w;
                const int32_t x_start = tinyml_max(0, -ix0);
                const int32_t x_end = tinyml_min(k_w, in_w - ix0);
                /* The first tap of the window initializes the maxima, the others update them
                   (the reference starts from -128; the window is never empty). */
                const int8_t *first =
                    in_b + ((size_t)(iy0 + y_start) * in_w + (ix0 + x_start)) * ch;
                int32_t c = 0;
#if TINYML_USE_SIMD
                for (; c + 3 < ch; c += 4) {
                    int32_t m = tinyml_read_s8x4(first + c);
                    TINYML_SHORT_LOOP
                    for (int32_t fy = y_start; fy < y_end; ++fy) {
                        const int8_t *q = in_b + ((size_t)(iy0 + fy) * in_w + (ix0 + x_start)) * ch + c;
                        TINYML_SHORT_LOOP
                        for (int32_t fx = x_start; fx < x_end; ++fx) {
                            const int32_t v = tinyml_read_s8x4(q);
                            q += ch;
                            (void)__ssub8(v, m);
                            m = __sel(v, m);
                        }
                    }
                    if (clamp) {
                        (void)__ssub8(m, lo4);
                        m = __sel(m, lo4);
                        (void)__ssub8(m, hi4);
                        m = __sel(hi4, m);
                    }
                    *(tinyml_i32u *)(output + c) = m;
                }
#endif
                if (c == ch) {
                    output += ch;
                    continue;
                }
                for (int32_t k = c; k < ch; ++k) {
                    output[k] = first[k];
                }
                TINYML_SHORT_LOOP
                for (int32_t fy = y_start; fy < y_end; ++fy) {
                    const int8_t *row = in_b + ((size_t)(iy0 + fy) * in_w + ix0) * ch;
                    TINYML_SHORT_LOOP
                    for (int32_t fx = x_start; fx < x_end; ++fx) {
                        const int8_t *q = row + (size_t)fx * ch;
                        for (int32_t k = c; k < ch; ++k) {
                            output[k] = q[k] > output[k] ? q[k] : output[k];
                        }
                    }
                }
                if (clamp) {
                    for (int32_t k = c; k < ch; ++k) {
                        int32_t v = output[k];
                        v = v < act_min ? act_min : v;
                        v = v > act_max ? act_max : v;
                        output[k] = (int8_t)v;
                    }
                }
                output += ch;
            }
        }
    }
}

void tinyml_avg_pool_s8(const tinyml_pool_params *p, const int8_t *input, int8_t *output) {
    const int32_t batches = p->batches, in_h = p->in_h, in_w = p->in_w, ch = p->channels;
    const int32_t out_h = p->out_h, out_w = p->out_w, k_h = p->k_h, k_w = p->k_w;
    const int32_t stride_h = p->stride_h, stride_w = p->stride_w;
    const int32_t pad_h = p->pad_h, pad_w = p->pad_w;
    const int32_t act_min = p->act_min, act_max = p->act_max;
    const int32_t row_step = in_w * ch;
    for (int32_t b = 0; b < batches; ++b) {
        const int8_t *in_b = input + (size_t)b * in_h * in_w * ch;
        for (int32_t oy = 0; oy < out_h; ++oy) {
            const int32_t iy0 = oy * stride_h - pad_h;
            const int32_t y_start = tinyml_max(0, -iy0);
            const int32_t y_end = tinyml_min(k_h, in_h - iy0);
            for (int32_t ox = 0; ox < out_w; ++ox) {
                const int32_t ix0 = ox * stride_w - pad_w;
                const int32_t x_start = tinyml_max(0, -ix0);
                const int32_t x_end = tinyml_min(k_w, in_w - ix0);
                const int32_t count = (y_end - y_start) * (x_end - x_start);
                const int8_t *window =
                    in_b + ((size_t)(iy0 + y_start) * in_w + (ix0 + x_start)) * ch;
                for (int32_t c = 0; c < ch; ++c) {
                    int32_t acc = 0;
                    const int8_t *row = window + c;
                    TINYML_SHORT_LOOP
                    for (int32_t fy = y_start; fy < y_end; ++fy) {
                        const int8_t *q = row;
                        TINYML_SHORT_LOOP
                        for (int32_t fx = x_start; fx < x_end; ++fx) {
                            acc += *q;
                            q += ch;
                        }
                        row += row_step;
                    }
                    if (count > 0) {
                        /* Round to nearest, halves away from zero (C division truncates). */
                        acc = acc > 0 ? (acc + count / 2) / count : (acc - count / 2) / count;
                    }
                    acc = acc < act_min ? act_min : acc;
                    acc = acc > act_max ? act_max : acc;
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

void tinyml_concat_piece_s8(const tinyml_concat_params *p, const int8_t *input, int8_t *output) {
    const int32_t outer = p->outer, in_inner = p->in_inner, out_inner = p->out_inner;
    int8_t *dst = output + p->offset;
    for (int32_t o = 0; o < outer; ++o) {
        for (int32_t j = 0; j < in_inner; ++j) {
            dst[j] = input[j];
        }
        input += in_inner;
        dst += out_inner;
    }
}

void tinyml_copy_s8(int8_t *dst, const int8_t *src, int32_t n) {
    for (int32_t i = 0; i < n; ++i) {
        dst[i] = src[i];
    }
}
