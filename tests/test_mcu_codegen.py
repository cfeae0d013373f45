"""The C code generator (tinyml_course.mcu.codegen) and its arena planner.

Generated C is compiled for the host with ``zig cc`` and loaded with ctypes; its int8 outputs must
equal tflite-micro's, byte for byte, on hundreds of random inputs. The SIMD variant is compiled
for a Cortex-M4 and, where unicorn is available, run in a small emulator harness (bit-exactness of
the DSP kernels and their instruction savings).
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinyml_course  # noqa: F401  (configures Keras before TensorFlow loads)
from tinyml_course.mcu.codegen import SUPPORTED_OPS, GeneratedModel, generate_c
from tinyml_course.mcu.planner import ArenaPlan, BufferRequest, plan_arena
from tinyml_course.micro import micro_available, run_micro

needs_micro = pytest.mark.skipif(
    not micro_available(), reason="tflite-micro (the reference) has wheels for Linux x86_64 only"
)

N_INPUTS = 256


# --------------------------------------------------------------------------- helpers
@pytest.fixture(scope="module")
def zig_env(tmp_path_factory) -> dict[str, str]:
    pytest.importorskip("ziglang")
    cache = tmp_path_factory.mktemp("zig-cache")
    return dict(os.environ, ZIG_GLOBAL_CACHE_DIR=str(cache), ZIG_LOCAL_CACHE_DIR=str(cache))


def _zig(args: list[str], cwd: Path, env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ziglang", "cc", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        pytest.fail(f"zig cc {' '.join(args)} failed:\n{result.stderr}")


class HostModel:
    """A generated model compiled into a shared library for the host and called through ctypes."""

    def __init__(
        self, gen: GeneratedModel, folder: Path, env: dict[str, str], *, simd: bool = False
    ):
        gen.write(folder)
        library = folder / f"{gen.name}{'_simd' if simd else ''}.so"
        flags = ["-O2", "-shared", "-fPIC", "-std=c99", "-Wall", "-Wextra", "-Werror"]
        flags += ["-DTINYML_SIMD"] if simd else []
        _zig([*flags, "-o", str(library), f"{gen.name}.c", "tinyml_kernels.c"], folder, env)
        self.gen = gen
        self.invoke = getattr(ctypes.CDLL(str(library)), f"{gen.name}_invoke")
        self.invoke.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        self.invoke.restype = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros((len(x), self.gen.output_size), np.int8)
        for i, sample in enumerate(x):
            sample = np.ascontiguousarray(sample, dtype=np.int8)
            self.invoke(sample.ctypes.data, out[i].ctypes.data)
        return out


def _random_inputs(gen: GeneratedModel, n: int = N_INPUTS, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(-128, 128, (n, *gen.input_shape[1:]), dtype=np.int64).astype(np.int8)


def assert_same_outputs(got: np.ndarray, expected: np.ndarray, what: str) -> None:
    """Fail with the first differing element (sample, index, got, expected)."""
    got = np.asarray(got).reshape(len(got), -1)
    expected = np.asarray(expected).reshape(len(expected), -1)
    assert got.shape == expected.shape, f"{what}: shape {got.shape} != {expected.shape}"
    bad = np.argwhere(got != expected)
    if bad.size:
        sample, index = (int(v) for v in bad[0])
        raise AssertionError(
            f"{what}: {len(bad)} of {got.size} int8 outputs differ from tflite-micro; first at "
            f"sample {sample}, index {index}: got {int(got[sample, index])}, expected "
            f"{int(expected[sample, index])}"
        )


def _check_against_micro(name: str, model_content: bytes, tmp_path: Path, env, *, simd=False):
    gen = generate_c(model_content)
    host = HostModel(gen, tmp_path, env, simd=simd)
    x = _random_inputs(gen)
    assert_same_outputs(host(x), run_micro(model_content, x), name)
    return gen


# --------------------------------------------------------------------------- models
@pytest.fixture(scope="module")
def course_models(small_model, small_int8, fashion) -> dict[str, tuple[bytes, object]]:
    """The course's baseline (conftest's small model), separable and mask CNNs, trained briefly."""
    from tinyml_course import keras
    from tinyml_course.datasets import to_model_input
    from tinyml_course.mask.model import build_mask_model
    from tinyml_course.models import build_separable_cnn, compile_classifier, set_seed
    from tinyml_course.tflite import convert_to_tflite

    x = to_model_input(fashion.x_train[:2000])
    y = fashion.y_train[:2000]
    set_seed(0)
    separable = compile_classifier(build_separable_cnn(width=4))
    separable.fit(x, y, epochs=1, batch_size=64, verbose=0)
    rng = np.random.default_rng(0)
    x_mask = rng.random((600, 10, 10, 1), dtype=np.float32)
    mask = build_mask_model(10, width=4)
    mask.compile(optimizer=keras.optimizers.Adam(1e-3), loss="binary_crossentropy")
    mask.fit(x_mask, (x_mask.mean(axis=(1, 2, 3)) > 0.5).astype(np.float32), epochs=1, verbose=0)
    return {
        "baseline": (small_int8, small_model),
        "separable": (convert_to_tflite(separable, "int8", representative_data=x[:200]), separable),
        "mask": (convert_to_tflite(mask, "int8", representative_data=x_mask[:200]), mask),
    }


def _synthetic() -> dict[str, tuple[object, tuple[int, ...]]]:
    from tinyml_course import keras

    layers = keras.layers
    models = {}
    # Residual block (ADD), average pooling, depthwise with depth_multiplier 2, stride 2 SAME,
    # ReLU6, ZeroPadding2D (PAD), a broadcast ADD, global average pooling (MEAN) and softmax.
    inp = keras.Input((12, 12, 3), batch_size=1)
    a = layers.Conv2D(8, 3, padding="same", activation="relu")(inp)
    b = layers.Conv2D(8, 3, padding="same")(a)
    c = layers.ReLU()(layers.Add()([a, b]))
    d = layers.AveragePooling2D()(c)
    d = layers.DepthwiseConv2D(
        3, depth_multiplier=2, strides=2, padding="same", activation="relu6"
    )(d)
    d = layers.ZeroPadding2D(((1, 0), (2, 1)))(d)
    d = layers.Conv2D(6, 2, activation="relu")(d)
    d = layers.Add()([d, layers.GlobalAveragePooling2D(keepdims=True)(d)])
    g = layers.GlobalAveragePooling2D()(d)
    models["residual_softmax"] = (
        keras.Model(inp, layers.Dense(3, activation="softmax")(g)),
        (12, 12, 3),
    )
    # Stride 2 SAME with ReLU6, flatten (RESHAPE) and a sigmoid output (LOGISTIC).
    inp = keras.Input((9, 9, 2), batch_size=1)
    a = layers.Conv2D(4, 3, strides=2, padding="same", activation="relu6")(inp)
    models["sigmoid"] = (
        keras.Model(inp, layers.Dense(1, activation="sigmoid")(layers.Flatten()(a))),
        (9, 9, 2),
    )
    # Dilation (kept in CONV_2D / DEPTHWISE_CONV_2D with a fixed batch size), padded pooling.
    inp = keras.Input((13, 11, 4), batch_size=1)
    a = layers.Conv2D(6, 3, dilation_rate=2, padding="same", activation="relu")(inp)
    a = layers.DepthwiseConv2D(3, dilation_rate=(2, 1), padding="valid")(a)
    a = layers.MaxPooling2D(3, strides=2, padding="same")(a)
    a = layers.AveragePooling2D(3, strides=1, padding="same")(a)
    a = layers.Conv2D(5, (1, 3), strides=(1, 2), padding="valid")(a)
    models["dilation_pooling"] = (keras.Model(inp, a), (13, 11, 4))
    # Pointwise (1x1) convolutions with channels a multiple of 4 (the SIMD fast path) and not.
    inp = keras.Input((6, 6, 12), batch_size=1)
    a = layers.Conv2D(16, 1, activation="relu")(inp)
    a = layers.Conv2D(7, 1)(a)
    a = layers.Conv2D(5, 3, padding="same")(a)
    models["pointwise"] = (keras.Model(inp, a), (6, 6, 12))
    # Two branches joined by CONCATENATION.
    inp = keras.Input((6, 6, 3), batch_size=1)
    a = layers.Conv2D(4, 3, padding="same", activation="relu")(inp)
    b = layers.Conv2D(5, 1, activation="relu6")(inp)
    c = layers.Conv2D(3, 1)(layers.Concatenate()([a, b]))
    models["concat"] = (keras.Model(inp, layers.Flatten()(c)), (6, 6, 3))
    return models


@pytest.fixture(scope="module")
def synthetic_models() -> dict[str, bytes]:
    """Small untrained Keras models, each exercising several operators, converted to int8."""
    from tinyml_course.tflite import convert_to_tflite

    rng = np.random.default_rng(1)
    converted = {}
    for name, (model, shape) in _synthetic().items():
        x = rng.standard_normal((100, *shape)).astype(np.float32)
        converted[name] = convert_to_tflite(model, "int8", representative_data=x)
    return converted


def _per_tensor_dense_with_requantize(rng: np.random.Generator) -> bytes:
    """Dense layers quantized per tensor (no bias), then a QUANTIZE (int8 -> int8 requantize)
    appended to the flatbuffer, since the converter emits one only in special cases."""
    import copy

    import flatbuffers
    import tensorflow as tf
    from ai_edge_litert import schema_py_generated as schema

    from tinyml_course import keras
    from tinyml_course._quiet import quiet_stderr

    inp = keras.Input((20,), batch_size=1)
    model = keras.Model(inp, keras.layers.Dense(7, activation="relu")(keras.layers.Dense(9)(inp)))
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    x = rng.standard_normal((100, 1, 20)).astype(np.float32)
    converter.representative_dataset = lambda: ([sample] for sample in x)
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = converter.inference_output_type = tf.int8
    converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    with quiet_stderr():
        content = converter.convert()
    flat = schema.ModelT.InitFromPackedBuf(content, 0)
    graph = flat.subgraphs[0]
    old_output = graph.outputs[0]
    tensor = copy.deepcopy(graph.tensors[old_output])
    tensor.name = b"requantized"
    tensor.quantization.scale = [float(tensor.quantization.scale[0]) * 1.7]
    tensor.quantization.zeroPoint = [5]
    graph.tensors.append(tensor)
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.QUANTIZE
    code.version = 1
    flat.operatorCodes.append(code)
    op = schema.OperatorT()
    op.opcodeIndex = len(flat.operatorCodes) - 1
    op.inputs, op.outputs = [old_output], [len(graph.tensors) - 1]
    graph.operators.append(op)
    graph.outputs = [len(graph.tensors) - 1]
    builder = flatbuffers.Builder(1024)
    builder.Finish(flat.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.fixture(scope="module")
def per_tensor_model() -> bytes:
    return _per_tensor_dense_with_requantize(np.random.default_rng(2))


# --------------------------------------------------------------------------- bit-exactness
@needs_micro
@pytest.mark.parametrize("name", ["baseline", "separable", "mask"])
def test_course_models_match_tflite_micro(course_models, name, tmp_path, zig_env) -> None:
    model_content, _ = course_models[name]
    gen = _check_against_micro(name, model_content, tmp_path, zig_env)
    assert gen.arena_bytes > 0 and gen.weight_bytes > 0


@needs_micro
@pytest.mark.parametrize(
    "name", ["residual_softmax", "sigmoid", "dilation_pooling", "pointwise", "concat"]
)
def test_synthetic_models_match_tflite_micro(synthetic_models, name, tmp_path, zig_env) -> None:
    _check_against_micro(name, synthetic_models[name], tmp_path, zig_env)


@needs_micro
def test_per_tensor_dense_and_requantize_match_tflite_micro(
    per_tensor_model, tmp_path, zig_env
) -> None:
    gen = _check_against_micro("per-tensor dense + QUANTIZE", per_tensor_model, tmp_path, zig_env)
    assert [layer.op for layer in gen.layers] == ["FULLY_CONNECTED"] * 2 + ["QUANTIZE"]
    assert "l0_filter, NULL," in gen.files["model.c"]  # no bias


@needs_micro
def test_synthetic_models_cover_the_operators(
    synthetic_models, course_models, per_tensor_model
) -> None:
    contents = [*synthetic_models.values(), *(m for m, _ in course_models.values())]
    ops = {
        layer.op
        for content in [*contents, per_tensor_model]
        for layer in generate_c(content).layers
    }
    expected = {
        "ADD",
        "AVERAGE_POOL_2D",
        "CONCATENATION",
        "CONV_2D",
        "DEPTHWISE_CONV_2D",
        "FULLY_CONNECTED",
        "LOGISTIC",
        "MAX_POOL_2D",
        "MEAN",
        "PAD",
        "QUANTIZE",
        "RESHAPE",
        "SOFTMAX",
    }
    assert expected <= ops, f"not exercised: {sorted(expected - ops)}"


@needs_micro
def test_simd_define_falls_back_on_the_host(synthetic_models, tmp_path, zig_env) -> None:
    _check_against_micro(
        "pointwise (-DTINYML_SIMD on the host)",
        synthetic_models["pointwise"],
        tmp_path,
        zig_env,
        simd=True,
    )


def test_mismatch_message_names_the_first_difference() -> None:
    expected = np.zeros((3, 4), np.int8)
    got = expected.copy()
    got[1, 2], got[2, 0] = 5, 7
    with pytest.raises(AssertionError, match=r"sample 1, index 2: got 5, expected 0"):
        assert_same_outputs(got, expected, "demo")


# --------------------------------------------------------------------------- generated sources
def test_generated_sources_follow_the_contract(course_models) -> None:
    model_content, keras_model = course_models["baseline"]
    gen = generate_c(model_content)
    assert set(gen.files) == {"model.h", "model.c", "tinyml_kernels.h", "tinyml_kernels.c"}
    header, source = gen.files["model.h"], gen.files["model.c"]
    for define in ("MODEL_INPUT_SIZE 784", "MODEL_OUTPUT_SIZE 10", "MODEL_ARENA_SIZE"):
        assert f"#define {define}" in header
    assert "void model_invoke(const int8_t *input, int8_t *output);" in header
    assert (
        "#ifndef TINYML_LAYER_DONE" in header and "#define TINYML_LAYER_DONE(i) ((void)0)" in header
    )
    for layer in gen.layers:
        assert f"TINYML_LAYER_DONE({layer.index});" in source
    assert (
        "static int8_t model_arena[MODEL_ARENA_SIZE > 0 ? MODEL_ARENA_SIZE : 1] TINYML_ALIGN(16);"
        in source
    )
    assert "static const int8_t l0_filter[36] TINYML_ALIGN(16)" in source  # 4 filters 3x3x1
    assert "float" not in source and "double" not in source and "malloc" not in source
    includes = {
        line
        for text in gen.files.values()
        for line in text.splitlines()
        if line.startswith("#include")
    }
    assert includes <= {
        '#include "model.h"',
        '#include "tinyml_kernels.h"',
        "#include <stdint.h>",
        "#include <stddef.h>",
        "#include <arm_acle.h>",
    }
    assert gen.input_shape == (1, 28, 28, 1) and gen.output_shape == (1, 10)
    assert gen.input_zero_point == -128 and gen.input_scale == pytest.approx(1 / 255, rel=1e-3)
    kinds = [layer.kind for layer in gen.layers]
    assert kinds == ["conv", "pool", "conv", "pool", "reshape", "dense", "dense"]
    from tinyml_course.profiling import profile_model

    assert gen.macs == profile_model(keras_model).macs
    assert "CONV_2D 3x3 stride 1x1 VALID" in source
    assert "MACs" in gen.summary()


def test_separable_layers_are_classified(course_models) -> None:
    gen = generate_c(course_models["separable"][0])
    assert [layer.kind for layer in gen.layers][:4] == ["conv", "pool", "depthwise", "pointwise"]
    assert gen.layers[2].macs == 11 * 11 * 4 * 9


def test_name_prefixes_symbols(course_models) -> None:
    gen = generate_c(course_models["mask"][0], name="mask_cnn")
    assert set(gen.files) == {"mask_cnn.h", "mask_cnn.c", "tinyml_kernels.h", "tinyml_kernels.c"}
    assert "void mask_cnn_invoke(const int8_t *input, int8_t *output);" in gen.files["mask_cnn.h"]
    assert "#define MASK_CNN_INPUT_SIZE 100" in gen.files["mask_cnn.h"]
    assert '#include "mask_cnn.h"' in gen.files["mask_cnn.c"]


def test_arena_is_planned_and_smaller_than_all_activations(course_models) -> None:
    gen = generate_c(course_models["baseline"][0])
    # baseline width 4: 28x28x1 input, 26x26x4, 13x13x4, 11x11x8, 5x5x8 (the reshape aliases it),
    # 16 and 10 outputs. The input and the output stay in the caller's buffers.
    intermediates = 26 * 26 * 4 + 13 * 13 * 4 + 11 * 11 * 8 + 5 * 5 * 8 + 16
    assert gen.arena_bytes < intermediates
    assert gen.arena_bytes >= 26 * 26 * 4 + 13 * 13 * 4  # pool1's input and output live together
    assert gen.arena_bytes % 16 == 0 and gen.simd_arena_bytes >= gen.arena_bytes
    source = gen.files["model.c"]
    assert "input /* the caller's buffer" in source and "tinyml_copy_s8" not in source


def test_write_refuses_to_overwrite_different_files(course_models, tmp_path) -> None:
    gen = generate_c(course_models["mask"][0])
    paths = gen.write(tmp_path)
    assert sorted(p.name for p in paths) == sorted(gen.files)
    assert gen.write(tmp_path) == paths  # identical content: nothing to refuse
    (tmp_path / "model.c").write_text("/* edited */\n")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        gen.write(tmp_path)
    gen.write(tmp_path, overwrite=True)
    assert (tmp_path / "model.c").read_text() == gen.files["model.c"]


# --------------------------------------------------------------------------- errors
def test_float_model_is_refused_with_the_fix(small_float) -> None:
    with pytest.raises(ValueError, match=r"float32.*int8.*convert_to_tflite\(model, 'int8'"):
        generate_c(small_float)


def test_unsupported_operator_is_named() -> None:
    from tinyml_course import keras
    from tinyml_course.tflite import convert_to_tflite

    inp = keras.Input((4, 4, 2), batch_size=1)
    model = keras.Model(inp, keras.layers.Activation("tanh")(keras.layers.Conv2D(2, 1)(inp)))
    x = np.random.default_rng(0).standard_normal((20, 4, 4, 2)).astype(np.float32)
    content = convert_to_tflite(model, "int8", representative_data=x)
    with pytest.raises(ValueError, match=r"operator 1 is TANH.*supported operators: ADD"):
        generate_c(content)
    assert "TANH" not in SUPPORTED_OPS


def test_bad_arguments_are_explained(course_models) -> None:
    content = course_models["mask"][0]
    with pytest.raises(TypeError, match="bytes of a .tflite model"):
        generate_c("model.tflite")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="TFL3"):
        generate_c(b"\x00" * 64)
    with pytest.raises(ValueError, match="name='2fast'.*C identifier"):
        generate_c(content, name="2fast")


# --------------------------------------------------------------------------- planner
def _live_lower_bound(requests: list[BufferRequest], alignment: int = 16) -> int:
    last = max(r.last for r in requests)
    return max(
        sum(-(-r.size // alignment) * alignment for r in requests if r.first <= t <= r.last)
        for t in range(last + 1)
    )


def test_planner_never_overlaps_live_buffers() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 14))
        requests = []
        for _ in range(n):
            first = int(rng.integers(0, 10))
            requests.append(
                BufferRequest(int(rng.integers(0, 3000)), first, first + int(rng.integers(0, 4)))
            )
        plan = plan_arena(requests)
        plan.check()
        assert all(offset % 16 == 0 for offset in plan.offsets)
        assert plan.size <= sum(-(-r.size // 16) * 16 for r in requests)
        assert plan.size >= _live_lower_bound(requests)
        for i, a in enumerate(requests):  # the invariant, checked here independently
            for j, b in enumerate(requests):
                if i < j and a.size and b.size and a.first <= b.last and b.first <= a.last:
                    oa, ob = plan.offsets[i], plan.offsets[j]
                    assert oa + a.size <= ob or ob + b.size <= oa


def test_planner_reuses_memory_of_dead_tensors() -> None:
    # A chain: input -> t1 -> t2 -> t3; t1 and t3 can share bytes, t2 must not touch them.
    chain = [
        BufferRequest(1000, 0, 0),
        BufferRequest(800, 0, 1),
        BufferRequest(1000, 1, 2),
        BufferRequest(800, 2, 3),
    ]
    plan = plan_arena(chain)
    assert isinstance(plan, ArenaPlan)
    assert plan.size == 1008 + 800  # two buffers alive at a time, never three
    assert plan.offsets[0] == plan.offsets[2] == 0


def test_planner_rejects_bad_requests() -> None:
    with pytest.raises(ValueError, match="size=-1"):
        plan_arena([BufferRequest(-1, 0, 0)])
    with pytest.raises(ValueError, match="first=3 > last=1"):
        plan_arena([BufferRequest(10, 3, 1)])
    with pytest.raises(ValueError, match="alignment=0"):
        plan_arena([BufferRequest(10, 0, 1)], alignment=0)
    bad = ArenaPlan((0, 8), 32, (BufferRequest(16, 0, 1), BufferRequest(16, 1, 2)))
    with pytest.raises(AssertionError, match="overlap"):
        bad.check()


# --------------------------------------------------------------------------- Cortex-M4 (SIMD)
THUMB = ["-target", "thumb-freestanding-eabi", "-mcpu=cortex_m4"]

_STUB = r"""
#include <stddef.h>
#include <stdint.h>
#include "model.h"
int8_t tinyml_in[MODEL_INPUT_SIZE] __attribute__((aligned(4)));
int8_t tinyml_out[MODEL_OUTPUT_SIZE] __attribute__((aligned(4)));
void *memcpy(void *d, const void *s, size_t n) {
    char *a = d; const char *b = s; while (n--) { *a++ = *b++; } return d; }
void *memset(void *d, int c, size_t n) { char *a = d; while (n--) { *a++ = (char)c; } return d; }
void *memmove(void *d, const void *s, size_t n) {
    char *a = d; const char *b = s;
    if (a < b) { while (n--) { *a++ = *b++; } } else { while (n--) { a[n] = b[n]; } }
    return d; }
void tinyml_run(void) { model_invoke(tinyml_in, tinyml_out); }
__attribute__((naked)) void tinyml_halt(void) { __asm__ volatile("b ."); }
"""

_LINKER_SCRIPT = """
MEMORY { FLASH (rx) : ORIGIN = 0x00000000, LENGTH = 1M
         RAM (rwx) : ORIGIN = 0x20000000, LENGTH = 256K }
SECTIONS {
  .text : { *(.text*) *(.rodata*) } > FLASH
  .data : { *(.data*) } > RAM
  .bss (NOLOAD) : { *(.bss*) *(COMMON) } > RAM
}
"""


class ThumbModel:
    """The model linked for a Cortex-M4 and run in unicorn (counts executed instructions)."""

    def __init__(self, gen: GeneratedModel, folder: Path, env: dict[str, str], *, simd: bool):
        unicorn = pytest.importorskip("unicorn")
        from elftools.elf.elffile import ELFFile
        from unicorn.arm_const import UC_ARM_REG_LR, UC_ARM_REG_SP, UC_CPU_ARM_CORTEX_M4

        gen.write(folder, overwrite=True)
        (folder / "stub.c").write_text(_STUB)
        (folder / "link.ld").write_text(_LINKER_SCRIPT)
        elf = folder / ("simd.elf" if simd else "plain.elf")
        flags = [
            *THUMB,
            "-O2",
            "-std=c99",
            "-ffreestanding",
            "-nostdlib",
            "-fno-unwind-tables",
            "-fno-asynchronous-unwind-tables",
            "-Wl,-T,link.ld",
            "-Wl,-e,tinyml_run",
        ]
        flags += ["-DTINYML_SIMD"] if simd else []
        _zig([*flags, "-o", str(elf), "stub.c", "model.c", "tinyml_kernels.c"], folder, env)
        with open(elf, "rb") as handle:
            image = ELFFile(handle)
            self.symbols = {
                s.name: (s["st_value"], s["st_size"])
                for s in image.get_section_by_name(".symtab").iter_symbols()
            }
            segments = [
                (s["p_vaddr"], s.data())
                for s in image.iter_segments()
                if s["p_type"] == "PT_LOAD" and s["p_filesz"]
            ]
        uc = unicorn.Uc(unicorn.UC_ARCH_ARM, unicorn.UC_MODE_THUMB | unicorn.UC_MODE_MCLASS)
        uc.ctl_set_cpu_model(UC_CPU_ARM_CORTEX_M4)
        uc.mem_map(0, 1 << 20)
        uc.mem_map(0x20000000, 256 << 10)
        for address, data in segments:
            uc.mem_write(address, data)
        self.uc, self.unicorn, self.regs = uc, unicorn, (UC_ARM_REG_SP, UC_ARM_REG_LR)

    @staticmethod
    def _instructions(code: bytes) -> int:
        count = i = 0
        while i < len(code):  # 32-bit Thumb-2 encodings start with 0b11101, 0b11110, 0b11111
            i += 4 if (code[i + 1] >> 3) in (0b11101, 0b11110, 0b11111) else 2
            count += 1
        return count

    def run(self, x: np.ndarray, *, count: bool = False) -> tuple[np.ndarray, int]:
        uc, (sp, lr) = self.uc, self.regs
        uc.mem_write(self.symbols["tinyml_in"][0], np.ascontiguousarray(x, np.int8).tobytes())
        halt = self.symbols["tinyml_halt"][0] & ~1
        uc.reg_write(sp, 0x20000000 + (256 << 10))
        uc.reg_write(lr, halt | 1)
        total = [0]
        hook = None
        if count:

            def on_block(emu, address, size, _data):
                total[0] += self._instructions(bytes(emu.mem_read(address, size)))

            hook = uc.hook_add(self.unicorn.UC_HOOK_BLOCK, on_block)
            uc.ctl_flush_tb()
        uc.emu_start(self.symbols["tinyml_run"][0] | 1, halt)
        if hook is not None:
            uc.hook_del(hook)
            uc.ctl_flush_tb()
        address, size = self.symbols["tinyml_out"]
        return np.frombuffer(bytes(uc.mem_read(address, size)), np.int8).copy(), total[0]


def test_simd_compiles_for_cortex_m4(course_models, tmp_path, zig_env) -> None:
    gen = generate_c(course_models["separable"][0])
    gen.write(tmp_path)
    for simd in ([], ["-DTINYML_SIMD"]):
        _zig(
            [
                *THUMB,
                "-O2",
                "-std=c99",
                "-ffreestanding",
                "-Wall",
                "-Wextra",
                "-Werror",
                *simd,
                "-c",
                "model.c",
                "tinyml_kernels.c",
            ],
            tmp_path,
            zig_env,
        )


@needs_micro
@pytest.mark.parametrize("name", ["residual_softmax", "dilation_pooling", "pointwise", "concat"])
def test_simd_kernels_on_cortex_m4_match_tflite_micro(
    synthetic_models, name, tmp_path, zig_env
) -> None:
    pytest.importorskip("elftools")
    content = synthetic_models[name]
    gen = generate_c(content)
    board = ThumbModel(gen, tmp_path, zig_env, simd=True)
    x = _random_inputs(gen, n=32, seed=3)
    got = np.stack([board.run(sample)[0] for sample in x])
    assert_same_outputs(got, run_micro(content, x), f"{name} (Cortex-M4, TINYML_SIMD)")


@needs_micro
def test_simd_kernels_on_the_course_cnn_match_tflite_micro(
    course_models, tmp_path, zig_env
) -> None:
    pytest.importorskip("elftools")
    content = course_models["separable"][0]
    gen = generate_c(content)
    board = ThumbModel(gen, tmp_path, zig_env, simd=True)
    x = _random_inputs(gen, n=16, seed=4)
    got = np.stack([board.run(sample)[0] for sample in x])
    assert_same_outputs(got, run_micro(content, x), "separable CNN (Cortex-M4, TINYML_SIMD)")


def test_simd_pointwise_needs_far_fewer_instructions(tmp_path, zig_env) -> None:
    pytest.importorskip("elftools")
    from tinyml_course import keras
    from tinyml_course.tflite import convert_to_tflite

    inp = keras.Input((8, 8, 32), batch_size=1)
    model = keras.Model(inp, keras.layers.Conv2D(32, 1, activation="relu")(inp))
    x = np.random.default_rng(0).standard_normal((50, 8, 8, 32)).astype(np.float32)
    gen = generate_c(convert_to_tflite(model, "int8", representative_data=x))
    sample = _random_inputs(gen, n=1)[0]
    plain_out, plain = ThumbModel(gen, tmp_path / "plain", zig_env, simd=False).run(
        sample, count=True
    )
    simd_out, simd = ThumbModel(gen, tmp_path / "simd", zig_env, simd=True).run(sample, count=True)
    np.testing.assert_array_equal(simd_out, plain_out)
    # Measured with zig 0.17 -O2: about 9.0 (plain) and 2.8 (SIMD) instructions per MAC.
    assert plain / simd >= 2.0, f"plain {plain} vs SIMD {simd} instructions"
    assert simd / gen.macs < 3.5, f"{simd / gen.macs:.2f} instructions per MAC with SIMD"
    assert plain / gen.macs > 4.0
