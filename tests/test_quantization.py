"""Quantization math and integer-only kernels: hand-derived values, and bit-exactness with tflite-micro."""

from __future__ import annotations

import numpy as np
import pytest

from tinyml_course import quantization as q


# --------------------------------------------------------------------------- affine quantization
def test_round_half_away_from_zero_not_to_even() -> None:
    assert q.round_half_away(np.array([0.5, 1.5, 2.5, -0.5, -2.5])).tolist() == [1, 2, 3, -1, -3]


def test_quantize_by_hand() -> None:
    # scale 0.1, zero point -10: 0.0 -> -10, 0.25 -> round(2.5) - 10 = -7, 100 -> clipped to 127
    got = q.quantize(np.array([0.0, 0.25, -0.04, 100.0, -100.0]), 0.1, -10)
    assert got.dtype == np.int8
    assert got.tolist() == [-10, -7, -10, 127, -128]


def test_dequantize_by_hand() -> None:
    got = q.dequantize(np.array([-10, -7, 127], np.int8), 0.1, -10)
    np.testing.assert_allclose(got, [0.0, 0.3, 13.7], rtol=1e-6)


def test_scale_zero_point_by_hand() -> None:
    # scale = 4 / 255; zero point = round(-128 - (-1.0) / (4 / 255)) = round(-64.25) = -64
    scale, zp = q.scale_zero_point(-1.0, 3.0)
    assert scale == pytest.approx(4.0 / 255)
    assert zp == -64
    assert q.dequantize(np.array([zp], np.int8), scale, zp)[0] == 0.0


def test_scale_zero_point_includes_zero() -> None:
    scale, zp = q.scale_zero_point(2.0, 6.0)  # widened to [0, 6]
    assert scale == pytest.approx(6.0 / 255)
    assert zp == -128


def test_scale_zero_point_rejects_reversed_range() -> None:
    with pytest.raises(ValueError, match="rmin"):
        q.scale_zero_point(1.0, -1.0)


def test_round_trip_error_is_at_most_half_a_step_inside_the_range() -> None:
    x = np.random.default_rng(0).normal(size=1000)
    params = q.choose_qparams(x)
    err = q.quantization_error(x, params)
    assert np.max(np.abs(err)) <= float(params.scale) / 2 + 1e-12


def test_clipping_error_outside_the_range() -> None:
    params = q.QuantParams(np.float64(0.01), np.int64(0), -127, 127)
    err = q.quantization_error(np.array([2.0]), params)
    assert err[0] == pytest.approx(1.27 - 2.0)


def test_symmetric_per_tensor() -> None:
    w = np.array([[-0.5, 0.25], [1.0, -0.1]])
    params = q.choose_qparams(w, symmetric=True)
    assert float(params.scale) == pytest.approx(1.0 / 127)
    assert int(params.zero_point) == 0
    assert params.quantize(w).tolist() == [[-64, 32], [127, -13]]


def test_symmetric_per_channel_uses_each_channels_max() -> None:
    w = np.array([[-0.5, 0.02], [0.25, -0.01]])  # channels on the last axis: max |w| 0.5 and 0.02
    params = q.choose_qparams(w, symmetric=True, axis=-1)
    np.testing.assert_allclose(params.scale, [0.5 / 127, 0.02 / 127])
    assert params.quantize(w).tolist() == [[-127, 127], [64, -64]]
    per_tensor = q.choose_qparams(w, symmetric=True)
    small_channel_error = np.abs(q.quantization_error(w, params)[:, 1]).max()
    assert small_channel_error < np.abs(q.quantization_error(w, per_tensor)[:, 1]).max()


def test_asymmetric_uses_the_full_range() -> None:
    x = np.array([0.0, 1.0, 2.0, 5.1])
    params = q.choose_qparams(x)
    assert (params.qmin, params.qmax) == (-128, 127)
    qx = params.quantize(x)
    assert qx.min() == -128 and qx.max() == 127


def test_choose_qparams_validates() -> None:
    with pytest.raises(ValueError, match="bits"):
        q.choose_qparams(np.ones(3), bits=1)
    with pytest.raises(ValueError, match="axis"):
        q.choose_qparams(np.ones((2, 3)), axis=2)
    with pytest.raises(ValueError, match="empty"):
        q.choose_qparams(np.array([]))


def test_quantize_rejects_bad_scale() -> None:
    with pytest.raises(ValueError, match="scale"):
        q.quantize(np.ones(3), 0.0)


# --------------------------------------------------------------------------- fixed point
@pytest.mark.parametrize(
    ("real", "multiplier", "shift"),
    [
        (0.5, 1 << 30, 0),
        (0.25, 1 << 30, -1),
        (1.0, 1 << 30, 1),
        (0.1, 1717986918, -3),  # 0.8 * 2**31 = 1717986918.4
        (0.0, 0, 0),
        (0.9999999999, 1 << 30, 1),  # mantissa rounds up to 2**31: halved, shift + 1
    ],
)
def test_quantize_multiplier_by_hand(real: float, multiplier: int, shift: int) -> None:
    assert q.quantize_multiplier(real) == (multiplier, shift)


def test_quantize_multiplier_is_close_to_the_real_value() -> None:
    for real in np.random.default_rng(1).uniform(1e-6, 0.99, size=200):
        m, s = q.quantize_multiplier(real)
        assert 1 << 30 <= m < 1 << 31
        assert m * 2.0 ** (s - 31) == pytest.approx(real, rel=1e-9)


def test_quantize_multiplier_rejects_negative() -> None:
    with pytest.raises(ValueError, match="real_multiplier"):
        q.quantize_multiplier(-0.5)


def test_saturating_rounding_doubling_high_mul_by_hand() -> None:
    # (2**30 * 2**30 + 2**30) / 2**31 = 2**29 (+ a fraction truncated)
    assert q.saturating_rounding_doubling_high_mul(1 << 30, 1 << 30) == 1 << 29
    # 3 * 2**30 / 2**31 = 1.5 -> 2. For -1.5 the nudge is 1 - 2**30 (just under a half), so the
    # truncating division gives -1: exact negative halves round up, not away from zero.
    assert q.saturating_rounding_doubling_high_mul(3, 1 << 30) == 2
    assert q.saturating_rounding_doubling_high_mul(-3, 1 << 30) == -1
    assert q.saturating_rounding_doubling_high_mul(-5, 1 << 29) == -1  # -1.25 -> -1
    assert q.saturating_rounding_doubling_high_mul(-7, 1 << 29) == -2  # -1.75 -> -2
    assert q.saturating_rounding_doubling_high_mul(q.INT32_MIN, q.INT32_MIN) == q.INT32_MAX


def test_rounding_divide_by_pot_rounds_half_away_from_zero() -> None:
    x = np.array([5, 6, 7, -5, -6, -7, 4])
    assert q.rounding_divide_by_pot(x, 2).tolist() == [1, 2, 2, -1, -2, -2, 1]


def test_multiply_by_quantized_multiplier_by_hand() -> None:
    m, s = q.quantize_multiplier(0.1)
    got = q.multiply_by_quantized_multiplier(np.array([1000, 15, -15, 25, 0]), m, s)
    assert got.tolist() == [100, 2, -2, 3, 0]


def test_multiply_by_quantized_multiplier_per_channel_and_left_shift() -> None:
    m, s = q.quantize_multipliers(np.array([0.5, 3.0]))
    got = q.multiply_by_quantized_multiplier(np.array([[10, 10], [-7, -7]]), m, s)
    assert got.tolist() == [[5, 30], [-3, -21]]  # -3.5 -> -3 (see the high-mul test)


def test_activation_range() -> None:
    assert q.activation_range(None, 0.1, 3) == (-128, 127)
    assert q.activation_range("relu", 0.1, -128) == (-128, 127)
    assert q.activation_range("relu", 0.1, -20) == (-20, 127)
    assert q.activation_range("relu6", 0.1, -128) == (-128, -68)


# --------------------------------------------------------------------------- kernels by hand
def test_integer_dense_by_hand() -> None:
    x = np.array([[2, -1]], np.int8)  # input zero point 1: centred [1, -2]
    w = np.array([[3, 4], [-5, 6]], np.int8)  # (units, in)
    bias = np.array([10, 0], np.int32)
    # acc = [1*3 - 2*4 + 10, 1*-5 - 2*6] = [5, -17]; times 0.5 = [2.5, -8.5] -> [3, -8]; + zp 2
    m, s = q.quantize_multiplier(0.5)
    got = q.integer_dense(
        x, w, bias, input_zero_point=1, output_multiplier=m, output_shift=s, output_zero_point=2
    )
    assert got.tolist() == [[5, -6]]


def test_integer_conv2d_matches_a_direct_loop() -> None:
    rng = np.random.default_rng(3)
    x = rng.integers(-128, 128, size=(2, 6, 5, 3)).astype(np.int8)
    w = rng.integers(-127, 128, size=(4, 3, 3, 3)).astype(np.int8)
    bias = rng.integers(-1000, 1000, size=4).astype(np.int32)
    m, s = q.quantize_multipliers(np.array([0.001, 0.002, 0.0005, 0.003]))
    for padding in ("valid", "same"):
        got = q.integer_conv2d(
            x,
            w,
            bias,
            input_zero_point=-5,
            output_multiplier=m,
            output_shift=s,
            output_zero_point=3,
            padding=padding,
        )
        pad = 1 if padding == "same" else 0
        xp = np.pad(x.astype(np.int64) + 5, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
        ho, wo = xp.shape[1] - 2, xp.shape[2] - 2
        expected = np.zeros((2, ho, wo, 4), np.int64)
        for n in range(2):
            for i in range(ho):
                for j in range(wo):
                    for o in range(4):
                        acc = int(
                            np.sum(xp[n, i : i + 3, j : j + 3, :] * w[o].astype(np.int64))
                        ) + int(bias[o])
                        expected[n, i, j, o] = (
                            q.multiply_by_quantized_multiplier(np.array(acc), m[o], s[o]) + 3
                        )
        np.testing.assert_array_equal(got, np.clip(expected, -128, 127))


def test_kernels_validate_dtypes_and_shapes() -> None:
    with pytest.raises(TypeError, match="int8"):
        q.integer_dense(
            np.zeros((1, 2)),
            np.zeros((3, 2), np.int8),
            None,
            input_zero_point=0,
            output_multiplier=1 << 30,
            output_shift=0,
            output_zero_point=0,
        )
    with pytest.raises(ValueError, match="transpose"):
        q.integer_dense(
            np.zeros((1, 2), np.int8),
            np.zeros((2, 3), np.int8),
            None,
            input_zero_point=0,
            output_multiplier=1 << 30,
            output_shift=0,
            output_zero_point=0,
        )


# --------------------------------------------------------------------------- against the runtime
@pytest.fixture(scope="module")
def tiny_int8_model() -> bytes:
    from tinyml_course import keras
    from tinyml_course.models import set_seed
    from tinyml_course.tflite import convert_to_tflite

    set_seed(0)
    model = keras.Sequential(
        [
            keras.Input((8, 8, 2)),
            keras.layers.Conv2D(4, 3, padding="same", activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Flatten(),
            keras.layers.Dense(6, activation="relu", bias_initializer="random_normal"),
            keras.layers.Dense(3, use_bias=False),  # no bias tensor: the kernels accept None
        ]
    )
    rng = np.random.default_rng(0)
    return convert_to_tflite(
        model, "int8", representative_data=rng.random((64, 8, 8, 2), dtype=np.float32)
    )


def test_integer_kernels_match_tflite_micro_bit_for_bit(tiny_int8_model: bytes) -> None:
    from tinyml_course.micro import run_micro
    from tinyml_course.tflite import TFLiteModel

    model = TFLiteModel(tiny_int8_model)
    interp = model.interpreter
    details = {t["index"]: t for t in interp.get_tensor_details()}

    def params(index: int) -> tuple[np.ndarray, np.ndarray]:
        p = details[index]["quantization_parameters"]
        return p["scales"], p["zero_points"]

    x = model.quantize_input(np.random.default_rng(1).random((40, 8, 8, 2), dtype=np.float32))
    expected = run_micro(tiny_int8_model, x)
    activations = iter(["relu", "relu", None])
    h = x
    ops = [op for op in interp._get_ops_details() if op["op_name"] != "DELEGATE"]
    assert [op["op_name"] for op in ops] == [
        "CONV_2D",
        "MAX_POOL_2D",
        "RESHAPE",
        "FULLY_CONNECTED",
        "FULLY_CONNECTED",
    ]
    for op in ops:
        inputs, output = op["inputs"], op["outputs"][0]
        if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED"):
            (s_in,), (z_in,) = params(inputs[0])
            s_w, _ = params(inputs[1])
            (s_out,), (z_out,) = params(output)
            m, s = q.requantization_multipliers(s_in, s_w, s_out)
            lo, hi = q.activation_range(next(activations), s_out, z_out)
            kernel = q.integer_conv2d if op["op_name"] == "CONV_2D" else q.integer_dense
            extra = {"padding": "same"} if op["op_name"] == "CONV_2D" else {}
            bias = interp.get_tensor(inputs[2]) if len(inputs) > 2 and inputs[2] >= 0 else None
            h = kernel(
                h,
                interp.get_tensor(inputs[1]),
                bias,
                input_zero_point=int(z_in),
                output_multiplier=m,
                output_shift=s,
                output_zero_point=int(z_out),
                activation_min=lo,
                activation_max=hi,
                **extra,
            )
        elif op["op_name"] == "MAX_POOL_2D":
            h = q.integer_max_pool2d(h, 2)
        else:
            h = h.reshape(len(h), -1)
    assert h.shape == expected.shape
    np.testing.assert_array_equal(h, expected)


def test_naive_float_rescaling_is_not_bit_exact() -> None:
    # Accumulators times the real multiplier, rounded in float, differ from the fixed-point path somewhere.
    rng = np.random.default_rng(0)
    acc = rng.integers(-(2**20), 2**20, size=200_000)
    real = 0.000123456789
    m, s = q.quantize_multiplier(real)
    fixed = q.multiply_by_quantized_multiplier(acc, m, s)
    naive = np.round(acc * real).astype(np.int64)
    assert np.any(fixed != naive)
    assert np.max(np.abs(fixed - naive)) == 1
