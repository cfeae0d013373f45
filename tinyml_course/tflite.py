"""Convert Keras models to ``.tflite`` and run them with LiteRT on the host.

Four conversions, as the TensorFlow Model Optimization guide names them:

===============  =====================================================  ==========
``"float"``      no optimisation, float32 weights and activations        ~4 B/param
``"float16"``    float16 weights, float32 compute                        ~2 B/param
``"dynamic"``    int8 weights, float activations quantized on the fly    ~1 B/param
``"int8"``       full integer: int8 weights, activations, input, output  ~1 B/param
===============  =====================================================  ==========

Full-integer conversion needs a *representative dataset* (a few hundred typical inputs)
to calibrate each activation's range. The interpreter is LiteRT's
(``ai_edge_litert.interpreter.Interpreter``), the maintained successor of
``tf.lite.Interpreter``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

QUANTIZATIONS = ("float", "float16", "dynamic", "int8")


class ConversionError(ValueError):
    """The model or the representative data cannot be converted as asked."""


def _representative(model: Any, data: Any, samples: int) -> Any:
    array = np.asarray(data, dtype=np.float32)
    expected = tuple(int(d) for d in model.inputs[0].shape[1:])
    if array.ndim == len(expected):
        array = array[None]
    if tuple(array.shape[1:]) != expected:
        raise ConversionError(
            f"representative_data has shape {array.shape}, but the model expects inputs of shape "
            f"(N, {', '.join(map(str, expected))}). Pass training images prepared exactly like the "
            "model's input (for Fashion-MNIST: to_model_input(x_train[:200]))."
        )
    if len(array) == 0:
        raise ConversionError("representative_data is empty; pass a few hundred training inputs.")
    array = array[:samples]

    def generator() -> Iterable[list[np.ndarray]]:
        for sample in array:
            yield [sample[None]]

    return generator


def convert_to_tflite(
    model: Any,
    quantization: str = "float",
    *,
    representative_data: Any = None,
    representative_samples: int = 200,
    int8_io: bool = True,
) -> bytes:
    """Convert a Keras model to a ``.tflite`` flatbuffer.

    Parameters
    ----------
    model : keras.Model
        A built tf-keras model.
    quantization : {"float", "float16", "dynamic", "int8"}
        See the module docstring.
    representative_data : array-like, required for ``"int8"``
        Typical inputs shaped like the model's input, ``(N, *input_shape)``.
    representative_samples : int
        How many of them calibrate the ranges.
    int8_io : bool
        For ``"int8"``: make the model's input and output int8 too (what a microcontroller
        wants). With False they stay float32 with quantize/dequantize ops at the ends.

    Returns
    -------
    bytes
        The ``.tflite`` model.

    Raises
    ------
    ConversionError
        Unbuilt model, unknown quantization, missing or wrongly shaped representative data.

    Examples
    --------
    >>> tflite_int8 = convert_to_tflite(model, "int8", representative_data=x_train[:200])  # doctest: +SKIP
    """
    from tinyml_course._setup import get_keras

    get_keras()
    import tensorflow as tf

    if quantization not in QUANTIZATIONS:
        raise ConversionError(f"quantization={quantization!r}; choose one of {QUANTIZATIONS}.")
    if not hasattr(model, "layers"):
        raise ConversionError(f"model must be a tf-keras model; got {type(model).__name__}.")
    if not getattr(model, "built", False) or not getattr(model, "inputs", None):
        raise ConversionError(
            "model is not built: start it with keras.Input(shape=...) or call "
            "model.build((None, *input_shape)) before converting."
        )
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if quantization != "float":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantization == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantization == "int8":
        if representative_data is None:
            raise ConversionError(
                "full-integer ('int8') conversion needs representative_data: a few hundred "
                "training inputs to calibrate activation ranges."
            )
        converter.representative_dataset = _representative(
            model, representative_data, representative_samples
        )
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if int8_io:
            converter.inference_input_type = tf.int8
            converter.inference_output_type = tf.int8
    elif representative_data is not None:
        _representative(model, representative_data, representative_samples)  # validate anyway
    from tinyml_course._quiet import quiet_stderr

    with quiet_stderr():
        try:
            return bytes(converter.convert())
        except Exception as err:  # the converter's own messages are long C++ dumps
            raise ConversionError(
                f"TFLite conversion ({quantization}) failed: {str(err).splitlines()[0]}"
            ) from None


@dataclass(frozen=True)
class TensorInfo:
    """Name, shape, dtype and (scale, zero_point) of a model input or output."""

    name: str
    shape: tuple[int, ...]
    dtype: type
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        return self.scale != 0.0


class TFLiteModel:
    """A ``.tflite`` model on the LiteRT interpreter, with float in / float out.

    ``predict`` quantizes float inputs with the model's input parameters
    (``q = round(x / scale) + zero_point``) and dequantizes the output, so float,
    dynamic-range and int8 models are called the same way.

    Parameters
    ----------
    model_content : bytes
        The ``.tflite`` model.
    reference_kernels : bool
        Use LiteRT's reference kernels (``OpResolverType.BUILTIN_REF``): slower, but the
        same integer arithmetic as the microcontroller runtime.
    num_threads : int
        Threads for the default kernels (1 mimics a microcontroller).
    """

    def __init__(
        self, model_content: bytes, *, reference_kernels: bool = False, num_threads: int = 1
    ) -> None:
        if not isinstance(model_content, (bytes, bytearray)) or len(model_content) < 8:
            raise TypeError(
                "model_content must be the bytes of a .tflite model (from convert_to_tflite)."
            )
        if bytes(model_content[4:8]) != b"TFL3":
            raise ValueError("model_content is not a .tflite flatbuffer (no 'TFL3' identifier).")
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        kwargs: dict[str, Any] = {"model_content": bytes(model_content), "num_threads": num_threads}
        if reference_kernels:
            kwargs["experimental_op_resolver_type"] = OpResolverType.BUILTIN_REF
        self.model_content = bytes(model_content)
        from tinyml_course._quiet import quiet_stderr

        with quiet_stderr():  # LiteRT logs "Created TensorFlow Lite XNNPACK delegate" to stderr
            self.interpreter = Interpreter(**kwargs)
            self.interpreter.allocate_tensors()
        self._batch = 1

    @staticmethod
    def _info(detail: dict[str, Any]) -> TensorInfo:
        scale, zero_point = detail.get("quantization", (0.0, 0))
        return TensorInfo(
            detail["name"],
            tuple(int(d) for d in detail["shape"]),
            detail["dtype"],
            float(scale),
            int(zero_point),
        )

    @property
    def input(self) -> TensorInfo:
        return self._info(self.interpreter.get_input_details()[0])

    @property
    def output(self) -> TensorInfo:
        return self._info(self.interpreter.get_output_details()[0])

    def quantize_input(self, x: np.ndarray) -> np.ndarray:
        """Float inputs to the model's input dtype (int8: ``round(x/scale)+zp``, clipped).

        Uses :func:`tinyml_course.quantization.quantize` in float32 with ties rounded away
        from zero, as TFLite's own QUANTIZE kernel does.
        """
        from tinyml_course.quantization import quantize

        info = self.input
        x = np.asarray(x)
        if not info.quantized:
            return np.asarray(x, dtype=info.dtype)
        if x.dtype == info.dtype:  # already quantized
            return x
        limits = np.iinfo(info.dtype)
        return quantize(
            x,
            info.scale,
            info.zero_point,
            qmin=int(limits.min),
            qmax=int(limits.max),
            dtype=info.dtype,
            compute_dtype=np.float32,
        )

    def invoke_raw(self, x: np.ndarray) -> np.ndarray:
        """Run a batch already in the model's input dtype; return the raw output tensor."""
        x = np.asarray(x)
        expected = self.input.shape[1:]
        if tuple(x.shape[1:]) != tuple(expected):
            raise ValueError(
                f"input batch has shape {x.shape}; the model expects (N, {', '.join(map(str, expected))})."
            )
        detail = self.interpreter.get_input_details()[0]
        if x.shape[0] != self._batch:
            from tinyml_course._quiet import quiet_stderr

            with quiet_stderr():
                self.interpreter.resize_tensor_input(detail["index"], list(x.shape))
                self.interpreter.allocate_tensors()
            self._batch = x.shape[0]
        self.interpreter.set_tensor(detail["index"], x)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self.interpreter.get_output_details()[0]["index"]).copy()

    def predict(self, x: np.ndarray, *, batch_size: int = 256) -> np.ndarray:
        """Float outputs for a float input batch (quantization handled both ways)."""
        from tinyml_course.quantization import dequantize

        x = np.asarray(x)
        outputs = []
        for start in range(0, len(x), batch_size):
            raw = self.invoke_raw(self.quantize_input(x[start : start + batch_size]))
            info = self.output
            outputs.append(dequantize(raw, info.scale, info.zero_point) if info.quantized else raw)
        return np.concatenate(outputs) if outputs else np.zeros((0,), np.float32)


def evaluate_tflite(model_content: bytes, x: np.ndarray, y: np.ndarray, **kwargs: Any) -> float:
    """Top-1 accuracy of a ``.tflite`` classifier on float inputs ``x`` and integer labels ``y``.

    For a single sigmoid output, a score above 0.5 means class 1.
    """
    x, y = np.asarray(x), np.asarray(y).reshape(-1)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)} labels.")
    scores = TFLiteModel(model_content, **kwargs).predict(x)
    predicted = (
        (scores.reshape(-1) > 0.5).astype(int)
        if scores.ndim == 1 or scores.shape[-1] == 1
        else scores.argmax(-1)
    )
    return float(np.mean(predicted == y))


@dataclass(frozen=True)
class Latency:
    """Host latency of single-sample inference, in milliseconds."""

    median_ms: float
    p10_ms: float
    p90_ms: float
    runs: int

    def __str__(self) -> str:
        return f"{self.median_ms:.3f} ms median (p10 {self.p10_ms:.3f}, p90 {self.p90_ms:.3f}, {self.runs} runs)"


def measure_latency(
    model_content: bytes, *, runs: int = 200, warmup: int = 20, num_threads: int = 1
) -> Latency:
    """Median latency of one ``invoke()`` on this host, warm-up runs excluded.

    The input is random data of the right dtype; latency of these models does not
    depend on the values. Single-threaded by default, like a microcontroller.
    """
    if runs < 1:
        raise ValueError(f"runs must be >= 1; got {runs}.")
    model = TFLiteModel(model_content, num_threads=num_threads)
    info = model.input
    rng = np.random.default_rng(0)
    if np.issubdtype(info.dtype, np.integer):
        limits = np.iinfo(info.dtype)
        sample = rng.integers(
            limits.min, limits.max, size=(1, *info.shape[1:]), endpoint=True
        ).astype(info.dtype)
    else:
        sample = rng.random((1, *info.shape[1:])).astype(info.dtype)
    interpreter = model.interpreter
    index = interpreter.get_input_details()[0]["index"]
    interpreter.set_tensor(index, sample)
    for _ in range(warmup):
        interpreter.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interpreter.invoke()
        times.append((time.perf_counter() - start) * 1000)
    deciles = statistics.quantiles(times, n=10) if len(times) > 1 else [times[0]] * 9
    return Latency(statistics.median(times), deciles[0], deciles[-1], runs)


def is_full_integer(model_content: bytes) -> bool:
    """True when the model's input and output are int8 (a full-integer model)."""
    model = TFLiteModel(model_content)
    return model.input.dtype == np.int8 and model.output.dtype == np.int8


def save_tflite(model_content: bytes, path: Any) -> int:
    """Write a ``.tflite`` file (folders created) and return its size in bytes."""
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model_content)
    return len(model_content)


def read_tflite(path: Any) -> bytes:
    """Read a ``.tflite`` file, checking that it is one.

    Raises
    ------
    ValueError
        ``"<path>: no such file"`` or ``"<path>: not a .tflite model"`` (the flatbuffer's
        ``TFL3`` identifier is missing), for a command to print after the option's name.
    """
    from pathlib import Path

    file = Path(path)
    if not file.is_file():
        raise ValueError(f"{path}: no such file")
    data = file.read_bytes()
    if data[4:8] != b"TFL3":
        raise ValueError(f"{path}: not a .tflite model")
    return data
