"""Quantization math and integer-only reference kernels.

Affine (asymmetric) quantization maps a real value ``r`` to an integer ``q``:

    r = (q - zero_point) * scale          q = clip(round(r / scale) + zero_point, qmin, qmax)

TensorFlow Lite's int8 scheme (Jacob et al. 2018; the TFLite quantization spec) uses

* **weights**: symmetric, per output channel, range ``[-127, 127]``, ``zero_point = 0``;
* **activations**: asymmetric, per tensor, range ``[-128, 127]``;
* **biases**: int32 with ``scale = input_scale * weight_scale`` and ``zero_point = 0``.

A layer then runs in integers only: int8 products are summed in an int32 accumulator,
and the accumulator is rescaled to the output's int8 scale with a fixed-point multiplier
``M = input_scale * weight_scale / output_scale`` written as ``M = m * 2**shift`` with an
int32 ``m`` in ``[2**30, 2**31)`` (:func:`quantize_multiplier`), applied with the same
rounding as TFLite's reference kernels (:func:`multiply_by_quantized_multiplier`). The
kernels here (:func:`integer_dense`, :func:`integer_conv2d`) reproduce the
microcontroller runtime's int8 outputs bit for bit.

Rounding: ``round`` here is round-half-away-from-zero (C's ``std::round``, what TFLite
uses), not NumPy's round-half-to-even.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

INT8_MIN, INT8_MAX = -128, 127
INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1


# --------------------------------------------------------------------------- helpers
ROUNDING_RULES = ("half_away_from_zero", "half_to_even")


def round_half_away(x: np.ndarray | float) -> np.ndarray:
    """Round to the nearest integer, halves away from zero (C's ``std::round``).

    >>> round_half_away(np.array([0.5, 1.5, -0.5, 2.4]))
    array([ 1.,  2., -1.,  2.])
    """
    x = np.asarray(x)
    if x.dtype != np.float32:
        x = x.astype(np.float64)
    return np.sign(x) * np.floor(np.abs(x) + x.dtype.type(0.5))


def _round(x: np.ndarray, rounding: str) -> np.ndarray:
    if rounding == "half_away_from_zero":
        return round_half_away(x)
    if rounding == "half_to_even":
        return np.round(x)
    raise ValueError(f"rounding must be one of {ROUNDING_RULES}; got {rounding!r}.")


def _int_range(bits: int, symmetric: bool) -> tuple[int, int]:
    if not isinstance(bits, (int, np.integer)) or not 2 <= int(bits) <= 16:
        raise ValueError(f"bits={bits!r} must be an integer from 2 to 16 (8 for int8).")
    qmax = 2 ** (int(bits) - 1) - 1
    return (-qmax if symmetric else -qmax - 1), qmax


def _broadcast_params(values: np.ndarray, ndim: int, axis: int | None, name: str) -> np.ndarray:
    """Reshape per-channel parameters so they broadcast along ``axis`` of an ``ndim`` array."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim == 0 or axis is None:
        if values.size != 1:
            raise ValueError(
                f"{name} has {values.size} values but axis=None (per tensor); pass axis= the channel "
                "axis for per-channel parameters."
            )
        return values.reshape(())
    if not -ndim <= axis < ndim:
        raise ValueError(f"axis={axis} is out of range for an array with {ndim} dimensions.")
    shape = [1] * ndim
    shape[axis] = values.size
    return values.reshape(shape)


# --------------------------------------------------------------------------- quantize
def quantize(
    x: np.ndarray,
    scale: float | np.ndarray,
    zero_point: int | np.ndarray = 0,
    *,
    qmin: int = INT8_MIN,
    qmax: int = INT8_MAX,
    axis: int | None = None,
    dtype: type = np.int8,
    rounding: str = "half_away_from_zero",
    compute_dtype: type = np.float64,
) -> np.ndarray:
    """Real values to integers: ``clip(round(x / scale) + zero_point, qmin, qmax)``.

    The course's one float-to-integer quantizer: weights, activations, model inputs on the
    host and (by the same formula) in the ESP32 sketch all go through it.

    Parameters
    ----------
    x : np.ndarray
        Real values.
    scale, zero_point : float or array
        One value each (per tensor), or one per channel along ``axis``.
    qmin, qmax : int
        The integer range (``-127, 127`` for TFLite int8 weights).
    axis : int, optional
        Channel axis for per-channel parameters.
    dtype : numpy dtype
        Integer type of the result.
    rounding : {"half_away_from_zero", "half_to_even"}
        How ties (``x / scale`` exactly halfway between two integers) are broken. TFLite's
        converter and its QUANTIZE kernel round halves away from zero (C's ``std::round``),
        so that is the default everywhere in the course; ``"half_to_even"`` is NumPy's
        ``np.round``, kept to show the difference.
    compute_dtype : numpy float dtype
        The precision of ``x / scale``: ``np.float64`` (default), or ``np.float32`` to do the
        arithmetic a microcontroller's C code does in ``float`` (inputs quantized on a device).

    Returns
    -------
    np.ndarray

    Raises
    ------
    ValueError
        If a scale is not positive, the range is empty or the rounding rule is unknown.

    Examples
    --------
    >>> quantize(np.array([-1.0, 0.0, 0.5, 1.0]), scale=1 / 127)
    array([-127,    0,   64,  127], dtype=int8)
    >>> quantize(np.array([0.5, 1.5, 2.5]), scale=1.0, rounding="half_to_even")
    array([0, 2, 2], dtype=int8)
    """
    if compute_dtype not in (np.float32, np.float64):
        raise ValueError(f"compute_dtype must be np.float32 or np.float64; got {compute_dtype!r}.")
    x = np.asarray(x, dtype=compute_dtype)
    scale_b = _broadcast_params(scale, x.ndim, axis, "scale")
    zp_b = _broadcast_params(zero_point, x.ndim, axis, "zero_point")
    if np.any(scale_b <= 0) or not np.all(np.isfinite(scale_b)):
        raise ValueError(f"scale must be positive and finite; got {np.asarray(scale)}.")
    if qmin >= qmax:
        raise ValueError(f"qmin={qmin} must be below qmax={qmax}.")
    q = _round(x / scale_b.astype(compute_dtype), rounding) + zp_b
    return np.clip(q, qmin, qmax).astype(dtype)


def dequantize(
    q: np.ndarray,
    scale: float | np.ndarray,
    zero_point: int | np.ndarray = 0,
    *,
    axis: int | None = None,
) -> np.ndarray:
    """Integers back to real values: ``(q - zero_point) * scale`` (float32).

    >>> dequantize(np.array([-127, 0, 64], dtype=np.int8), scale=0.5)
    array([-63.5,   0. ,  32. ], dtype=float32)
    """
    q = np.asarray(q)
    scale_b = _broadcast_params(scale, q.ndim, axis, "scale")
    zp_b = _broadcast_params(zero_point, q.ndim, axis, "zero_point")
    return ((q.astype(np.float64) - zp_b) * scale_b).astype(np.float32)


def scale_zero_point(
    rmin: float, rmax: float, *, qmin: int = INT8_MIN, qmax: int = INT8_MAX
) -> tuple[float, int]:
    """Scale and zero point that map the real range ``[rmin, rmax]`` onto ``[qmin, qmax]``.

    The range is first widened to include 0, so that real zero is exactly representable
    (zero padding and ReLU outputs stay exact)::

        scale = (rmax - rmin) / (qmax - qmin)
        zero_point = clip(round(qmin - rmin / scale), qmin, qmax)

    Parameters
    ----------
    rmin, rmax : float
        The real range to cover (``rmin <= rmax``).
    qmin, qmax : int
        The integer range.

    Returns
    -------
    (float, int)
        ``scale`` and ``zero_point``. A range of only zeros gives scale 1.0.

    Raises
    ------
    ValueError
        If ``rmin > rmax`` or a bound is not finite.

    Examples
    --------
    >>> scale_zero_point(0.0, 6.0)
    (0.023529411764705882, -128)
    """
    if not (np.isfinite(rmin) and np.isfinite(rmax)):
        raise ValueError(f"rmin={rmin} and rmax={rmax} must be finite numbers.")
    if rmin > rmax:
        raise ValueError(f"rmin={rmin} is above rmax={rmax}; pass the range as (min, max).")
    if qmin >= qmax:
        raise ValueError(f"qmin={qmin} must be below qmax={qmax}.")
    rmin, rmax = min(float(rmin), 0.0), max(float(rmax), 0.0)
    if rmax == rmin:
        return 1.0, 0
    scale = (rmax - rmin) / (qmax - qmin)
    zero_point = int(np.clip(round_half_away(qmin - rmin / scale), qmin, qmax))
    return scale, zero_point


@dataclass(frozen=True)
class QuantParams:
    """Quantization parameters of a tensor: per tensor (``axis=None``) or per channel."""

    scale: np.ndarray
    zero_point: np.ndarray
    qmin: int
    qmax: int
    axis: int | None = None

    @property
    def per_channel(self) -> bool:
        return self.axis is not None

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Quantize ``x`` with these parameters (int8 up to 8 bits, int16 above)."""
        dtype = np.int8 if self.qmax <= 127 else np.int16
        return quantize(
            x,
            self.scale,
            self.zero_point,
            qmin=self.qmin,
            qmax=self.qmax,
            axis=self.axis,
            dtype=dtype,
        )

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """Back to real values."""
        return dequantize(q, self.scale, self.zero_point, axis=self.axis)


def choose_qparams(
    x: np.ndarray, *, bits: int = 8, symmetric: bool = False, axis: int | None = None
) -> QuantParams:
    """Choose scale and zero point for ``x`` from its range.

    Parameters
    ----------
    x : np.ndarray
        The real tensor (weights or a sample of activations).
    bits : int
        Integer width (8 for int8).
    symmetric : bool
        True: ``zero_point = 0``, range ``[-(2**(bits-1)-1), 2**(bits-1)-1]`` and
        ``scale = max|x| / qmax`` (TFLite's weights). False: the full range
        ``[-2**(bits-1), 2**(bits-1)-1]`` fitted to ``[min(x), max(x)]`` (activations).
    axis : int, optional
        Per-channel: one scale per index of this axis (the output channels, the last axis
        of a Keras Conv2D or Dense kernel). None: one scale for the whole tensor.

    Returns
    -------
    QuantParams

    Raises
    ------
    ValueError
        If ``x`` is empty or not finite, or ``bits`` / ``axis`` are out of range.

    Examples
    --------
    >>> p = choose_qparams(np.array([-0.5, 0.25, 1.0]), symmetric=True)
    >>> float(p.scale), int(p.zero_point)
    (0.007874015748031496, 0)
    """
    x = np.asarray(x, dtype=np.float64)
    if x.size == 0:
        raise ValueError("x is empty; pass the tensor whose range the parameters should cover.")
    if not np.all(np.isfinite(x)):
        raise ValueError("x contains NaN or infinity; quantization needs finite values.")
    qmin, qmax = _int_range(bits, symmetric)
    if axis is not None:
        if not -x.ndim <= axis < x.ndim:
            raise ValueError(f"axis={axis} is out of range for x with shape {x.shape}.")
        axis = axis % x.ndim
        reduce_axes = tuple(i for i in range(x.ndim) if i != axis)
    else:
        reduce_axes = None
    if symmetric:
        amax = np.max(np.abs(x), axis=reduce_axes)
        scale = np.where(amax > 0, amax / qmax, 1.0)
        zero_point = np.zeros_like(scale, dtype=np.int64)
    else:
        lo = np.atleast_1d(np.min(x, axis=reduce_axes))
        hi = np.atleast_1d(np.max(x, axis=reduce_axes))
        pairs = [scale_zero_point(a, b, qmin=qmin, qmax=qmax) for a, b in zip(lo, hi, strict=True)]
        scale = np.array([s for s, _ in pairs])
        zero_point = np.array([z for _, z in pairs], dtype=np.int64)
        if axis is None:
            scale, zero_point = scale[0], zero_point[0]
    return QuantParams(
        np.asarray(scale, np.float64), np.asarray(zero_point, np.int64), qmin, qmax, axis
    )


def quantization_error(x: np.ndarray, params: QuantParams) -> np.ndarray:
    """``dequantize(quantize(x)) - x``: rounding error inside the range, clipping error outside."""
    x = np.asarray(x, dtype=np.float64)
    return params.dequantize(params.quantize(x)).astype(np.float64) - x


# --------------------------------------------------------------------------- fixed point
def quantize_multiplier(real_multiplier: float) -> tuple[int, int]:
    """A real multiplier as an int32 fixed-point multiplier and a power-of-two shift.

    ``real_multiplier ~= multiplier * 2**(shift - 31)`` with ``multiplier`` in
    ``[2**30, 2**31)``: TFLite's ``QuantizeMultiplier`` (``frexp``, then the mantissa
    rounded to 31 fractional bits, half away from zero).

    Parameters
    ----------
    real_multiplier : float
        A non-negative real number, usually ``input_scale * weight_scale / output_scale``.

    Returns
    -------
    (int, int)
        ``multiplier`` and ``shift`` (negative: a right shift).

    Raises
    ------
    ValueError
        If the multiplier is negative or not finite.

    Examples
    --------
    >>> quantize_multiplier(0.5)
    (1073741824, 0)
    >>> quantize_multiplier(0.1)
    (1717986918, -3)
    """
    real = float(real_multiplier)
    if not np.isfinite(real) or real < 0:
        raise ValueError(
            f"real_multiplier={real_multiplier!r} must be a finite number >= 0 (a ratio of scales)."
        )
    if real == 0.0:
        return 0, 0
    mantissa, shift = np.frexp(real)  # real = mantissa * 2**shift, mantissa in [0.5, 1)
    q_fixed = int(round_half_away(float(mantissa) * (1 << 31)))
    shift = int(shift)
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if q_fixed > INT32_MAX:  # pragma: no cover - impossible after the halving above
        raise ValueError(f"real_multiplier={real_multiplier} cannot be represented.")
    return q_fixed, shift


def quantize_multipliers(real_multipliers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`quantize_multiplier` for each value (per-channel multipliers); int64 arrays."""
    pairs = [
        quantize_multiplier(m) for m in np.asarray(real_multipliers, dtype=np.float64).reshape(-1)
    ]
    return np.array([m for m, _ in pairs], np.int64), np.array([s for _, s in pairs], np.int64)


def saturating_rounding_doubling_high_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """gemmlowp's ``SaturatingRoundingDoublingHighMul``: ``round(a * b / 2**31)`` in int32.

    The product is formed in 64 bits, a nudge of ``2**30`` (towards the sign) is added and
    the sum divided by ``2**31`` with C's truncating division. The one overflow case,
    ``a == b == -2**31``, saturates to ``2**31 - 1``.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    ab = a * b
    nudge = np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    total = ab + nudge
    high = np.sign(total) * (np.abs(total) // (1 << 31))  # truncation toward zero, as in C
    overflow = (a == b) & (a == INT32_MIN)
    return np.where(overflow, INT32_MAX, high).astype(np.int64)


def rounding_divide_by_pot(x: np.ndarray, exponent: np.ndarray | int) -> np.ndarray:
    """gemmlowp's ``RoundingDivideByPOT``: ``x / 2**exponent`` rounded half away from zero."""
    x = np.asarray(x, dtype=np.int64)
    exponent = np.asarray(exponent, dtype=np.int64)
    if np.any(exponent < 0) or np.any(exponent > 31):
        raise ValueError(f"exponent must be in [0, 31]; got {exponent}.")
    mask = (np.int64(1) << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (x < 0)
    return (x >> exponent) + (remainder > threshold)


def multiply_by_quantized_multiplier(
    x: np.ndarray, multiplier: np.ndarray | int, shift: np.ndarray | int
) -> np.ndarray:
    """Rescale int32 accumulators by ``multiplier * 2**(shift - 31)``, bit-exact with TFLite.

    TFLite's ``MultiplyByQuantizedMultiplier``: a left shift for ``shift > 0``, then
    :func:`saturating_rounding_doubling_high_mul`, then :func:`rounding_divide_by_pot`
    for ``shift < 0``. ``multiplier`` and ``shift`` broadcast against ``x`` (one per
    output channel along the last axis).

    Examples
    --------
    >>> m, s = quantize_multiplier(0.1)
    >>> multiply_by_quantized_multiplier(np.array([1000, 15, -15, 25]), m, s)
    array([100,   2,  -2,   3])
    """
    x = np.asarray(x, dtype=np.int64)
    if np.any(x < INT32_MIN) or np.any(x > INT32_MAX):
        raise ValueError("x must hold int32 accumulator values; some are out of the int32 range.")
    shift = np.asarray(shift, dtype=np.int64)
    left = np.where(shift > 0, shift, 0)
    right = np.where(shift > 0, 0, -shift)
    shifted = x * (np.int64(1) << left)
    if np.any(shifted < INT32_MIN) or np.any(shifted > INT32_MAX):
        raise ValueError(
            "x shifted left by `shift` overflows int32; the multiplier is too large for these accumulators."
        )
    return rounding_divide_by_pot(saturating_rounding_doubling_high_mul(shifted, multiplier), right)


def requantization_multipliers(
    input_scale: float, weight_scales: np.ndarray, output_scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel fixed-point multipliers and shifts of ``input_scale * weight_scale / output_scale``.

    The product is formed in double precision from the (float32) scales, as TFLite does.
    """
    weight_scales = np.atleast_1d(np.asarray(weight_scales, dtype=np.float64))
    if input_scale <= 0 or output_scale <= 0 or np.any(weight_scales <= 0):
        raise ValueError(
            f"scales must be positive; got input_scale={input_scale}, output_scale={output_scale}, "
            f"weight_scales min {weight_scales.min()}."
        )
    real = float(input_scale) * weight_scales / float(output_scale)
    return quantize_multipliers(real)


def activation_range(
    activation: str | None,
    output_scale: float,
    output_zero_point: int,
    *,
    qmin: int = INT8_MIN,
    qmax: int = INT8_MAX,
) -> tuple[int, int]:
    """Integer clamp of a fused activation (TFLite's ``CalculateActivationRangeQuantized``).

    ``None``/``"linear"``: the whole range; ``"relu"``: from the zero point up;
    ``"relu6"``: from the zero point to the quantized 6.
    """
    if activation in (None, "linear", "none"):
        return qmin, qmax
    if activation == "relu":
        return max(qmin, int(output_zero_point)), qmax
    if activation == "relu6":
        six = int(output_zero_point + round_half_away(6.0 / output_scale))
        return max(qmin, int(output_zero_point)), min(qmax, six)
    raise ValueError(f"activation={activation!r}; choose None, 'relu' or 'relu6'.")


# --------------------------------------------------------------------------- kernels
def _check_int(name: str, array: np.ndarray, dtype: type) -> np.ndarray:
    array = np.asarray(array)
    if array.dtype != np.dtype(dtype):
        raise TypeError(
            f"{name} must be {np.dtype(dtype).name}; got {array.dtype}. Read it from the int8 model's tensors."
        )
    return array


def _add_bias_and_requantize(
    acc: np.ndarray,
    bias: np.ndarray | None,
    per: str,
    multiplier: np.ndarray,
    shift: np.ndarray,
    output_zero_point: int,
    activation_min: int,
    activation_max: int,
) -> np.ndarray:
    """Add the int32 bias (one per last-axis channel) to the accumulators, then requantize."""
    if bias is not None:
        bias = _check_int("bias", bias, np.int32)
        channels = acc.shape[-1]
        if bias.shape != (channels,):
            raise ValueError(f"bias has shape {bias.shape}; expected ({channels},), one per {per}.")
        acc = acc + bias.astype(np.int64)
    out = multiply_by_quantized_multiplier(acc, multiplier, shift) + int(output_zero_point)
    return np.clip(out, activation_min, activation_max).astype(np.int8)


def integer_dense(
    x: np.ndarray,
    weights: np.ndarray,
    bias: np.ndarray | None,
    *,
    input_zero_point: int,
    output_multiplier: np.ndarray | int,
    output_shift: np.ndarray | int,
    output_zero_point: int,
    activation_min: int = INT8_MIN,
    activation_max: int = INT8_MAX,
) -> np.ndarray:
    """An int8 fully connected layer in integers only (TFLite's reference kernel).

    ``acc[n, o] = sum_i (x[n, i] - input_zero_point) * weights[o, i] + bias[o]`` in int32,
    then ``clip(multiply_by_quantized_multiplier(acc, m, s) + output_zero_point)``.
    Weights are symmetric (zero point 0).

    Parameters
    ----------
    x : np.ndarray
        int8 inputs ``(N, in_features)``.
    weights : np.ndarray
        int8 weights in TFLite's layout ``(units, in_features)`` (a Keras kernel transposed).
    bias : np.ndarray or None
        int32 biases ``(units,)`` (scale ``input_scale * weight_scale``).
    input_zero_point, output_zero_point : int
        The activations' zero points.
    output_multiplier, output_shift : int or array
        From :func:`requantization_multipliers`; one value or one per unit.
    activation_min, activation_max : int
        The fused activation's clamp (:func:`activation_range`).

    Returns
    -------
    np.ndarray
        int8 outputs ``(N, units)``.

    Raises
    ------
    TypeError
        If an array has the wrong integer type.
    ValueError
        If the shapes do not fit together.
    """
    x = _check_int("x", x, np.int8)
    weights = _check_int("weights", weights, np.int8)
    if x.ndim != 2 or weights.ndim != 2 or x.shape[1] != weights.shape[1]:
        raise ValueError(
            f"x has shape {x.shape} and weights {weights.shape}: expected (N, in) and (units, in); "
            "transpose a Keras kernel (in, units) with .T."
        )
    acc = (x.astype(np.int64) - int(input_zero_point)) @ weights.astype(np.int64).T
    return _add_bias_and_requantize(
        acc,
        bias,
        "unit",
        np.asarray(output_multiplier),
        np.asarray(output_shift),
        output_zero_point,
        activation_min,
        activation_max,
    )


def integer_conv2d(
    x: np.ndarray,
    weights: np.ndarray,
    bias: np.ndarray | None,
    *,
    input_zero_point: int,
    output_multiplier: np.ndarray | int,
    output_shift: np.ndarray | int,
    output_zero_point: int,
    strides: int | tuple[int, int] = 1,
    padding: str = "valid",
    activation_min: int = INT8_MIN,
    activation_max: int = INT8_MAX,
) -> np.ndarray:
    """An int8 2-D convolution in integers only (TFLite's per-channel reference kernel).

    Parameters
    ----------
    x : np.ndarray
        int8 inputs ``(N, H, W, C_in)``.
    weights : np.ndarray
        int8 weights in TFLite's layout ``(C_out, Kh, Kw, C_in)`` (a Keras kernel
        ``(Kh, Kw, C_in, C_out)`` moved with ``np.moveaxis(k, -1, 0)``).
    bias : np.ndarray or None
        int32 biases ``(C_out,)``.
    input_zero_point, output_zero_point : int
        The activations' zero points. ``"same"`` padding pads with the input zero point
        (a real zero), as the reference kernel does by skipping outside taps.
    output_multiplier, output_shift : int or array
        One value or one per output channel.
    strides : int or (int, int)
    padding : {"valid", "same"}
    activation_min, activation_max : int
        The fused activation's clamp.

    Returns
    -------
    np.ndarray
        int8 outputs ``(N, H_out, W_out, C_out)``.
    """
    x = _check_int("x", x, np.int8)
    weights = _check_int("weights", weights, np.int8)
    if x.ndim != 4 or weights.ndim != 4 or x.shape[3] != weights.shape[3]:
        raise ValueError(
            f"x has shape {x.shape} and weights {weights.shape}: expected (N, H, W, C_in) and "
            "(C_out, Kh, Kw, C_in); move a Keras kernel's last axis first with np.moveaxis(k, -1, 0)."
        )
    if padding not in ("valid", "same"):
        raise ValueError(f"padding={padding!r}; choose 'valid' or 'same'.")
    sh, sw = (
        (strides, strides)
        if isinstance(strides, (int, np.integer))
        else (int(strides[0]), int(strides[1]))
    )
    _, h, w, _ = x.shape
    c_out, kh, kw, _ = weights.shape
    centred = x.astype(np.int64) - int(input_zero_point)
    if padding == "same":
        ho, wo = -(-h // sh), -(-w // sw)
        pad_h = max((ho - 1) * sh + kh - h, 0)
        pad_w = max((wo - 1) * sw + kw - w, 0)
        centred = np.pad(
            centred,
            ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2), (0, 0)),
        )
    else:
        ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
        if ho <= 0 or wo <= 0:
            raise ValueError(
                f"the {kh}x{kw} kernel does not fit the {h}x{w} input with 'valid' padding."
            )
    acc = np.zeros((x.shape[0], ho, wo, c_out), dtype=np.int64)
    w64 = weights.astype(np.int64)
    for i in range(kh):
        for j in range(kw):
            patch = centred[:, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw, :]
            acc += patch @ w64[:, i, j, :].T
    return _add_bias_and_requantize(
        acc,
        bias,
        "output channel",
        np.asarray(output_multiplier),
        np.asarray(output_shift),
        output_zero_point,
        activation_min,
        activation_max,
    )


def integer_max_pool2d(x: np.ndarray, pool_size: int = 2) -> np.ndarray:
    """int8 max pooling (stride = pool size, 'valid'): a max needs no rescaling."""
    x = _check_int("x", x, np.int8)
    if x.ndim != 4:
        raise ValueError(f"x must be (N, H, W, C); got shape {x.shape}.")
    n, h, w, c = x.shape
    ho, wo = h // pool_size, w // pool_size
    trimmed = x[:, : ho * pool_size, : wo * pool_size, :]
    return trimmed.reshape(n, ho, pool_size, wo, pool_size, c).max(axis=(2, 4))


__all__ = [
    "INT8_MAX",
    "INT8_MIN",
    "QuantParams",
    "activation_range",
    "choose_qparams",
    "dequantize",
    "integer_conv2d",
    "integer_dense",
    "integer_max_pool2d",
    "multiply_by_quantized_multiplier",
    "quantization_error",
    "quantize",
    "quantize_multiplier",
    "quantize_multipliers",
    "requantization_multipliers",
    "round_half_away",
    "rounding_divide_by_pot",
    "saturating_rounding_doubling_high_mul",
    "scale_zero_point",
]
