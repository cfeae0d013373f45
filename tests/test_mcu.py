"""The course's models on the virtual Cortex-M4: bit-exact with tflite-micro, measured, from the CLI."""

from __future__ import annotations

import numpy as np
import pytest

from tinyml_course.mcu.model import compare_with_micro, compile_model
from tinyml_course.micro import micro_available

needs_micro = pytest.mark.skipif(not micro_available(), reason="tflite-micro: Linux x86_64 only")


def _trained_int8(builder, fashion, **kwargs) -> bytes:
    from tinyml_course.datasets import to_model_input
    from tinyml_course.models import compile_classifier, set_seed
    from tinyml_course.tflite import convert_to_tflite

    set_seed(0)
    model = compile_classifier(builder(**kwargs))
    x = to_model_input(fashion.x_train[:2000])
    model.fit(x, fashion.y_train[:2000], epochs=1, batch_size=64, verbose=0)
    return convert_to_tflite(model, "int8", representative_data=x[:200])


@pytest.fixture(scope="module")
def separable_int8(fashion) -> bytes:
    from tinyml_course.models import build_separable_cnn

    return _trained_int8(build_separable_cnn, fashion)


@pytest.fixture(scope="module")
def mask_int8() -> tuple[bytes, np.ndarray]:
    from tinyml_course.mask.model import build_mask_model, synthetic_data, train_mask_model
    from tinyml_course.models import set_seed
    from tinyml_course.tflite import TFLiteModel, convert_to_tflite

    set_seed(0)
    x, y, _ = synthetic_data(600, 10, seed=3)
    model = train_mask_model(x[:500], y[:500], model=build_mask_model(10), epochs=2, verbose=0)
    content = convert_to_tflite(model, "int8", representative_data=x[:200])
    return content, TFLiteModel(content).quantize_input(x[:200])


def _fashion_inputs(content: bytes, fashion, n: int = 200) -> np.ndarray:
    from tinyml_course.datasets import to_model_input
    from tinyml_course.tflite import TFLiteModel

    return TFLiteModel(content).quantize_input(to_model_input(fashion.x_test[:n]))


def _assert_bit_exact(content: bytes, x: np.ndarray, *, simd: bool) -> None:
    result = compare_with_micro(compile_model(content, simd=simd), content, x)
    assert result.compared == len(x) >= 200
    assert result.mismatches == 0, str(result)


@needs_micro
@pytest.mark.parametrize("simd", [False, True])
def test_baseline_is_bit_exact_on_the_virtual_board(small_int8, fashion, simd) -> None:
    _assert_bit_exact(small_int8, _fashion_inputs(small_int8, fashion), simd=simd)


@needs_micro
@pytest.mark.parametrize("simd", [False, True])
def test_separable_cnn_is_bit_exact_on_the_virtual_board(separable_int8, fashion, simd) -> None:
    _assert_bit_exact(separable_int8, _fashion_inputs(separable_int8, fashion), simd=simd)


@needs_micro
@pytest.mark.parametrize("simd", [False, True])
def test_mask_model_is_bit_exact_on_the_virtual_board(mask_int8, simd) -> None:
    content, x = mask_int8
    _assert_bit_exact(content, x, simd=simd)


@needs_micro
def test_a_mismatch_names_the_first_differing_element(small_int8, fashion) -> None:
    compiled = compile_model(small_int8)
    x = _fashion_inputs(small_int8, fashion, 4)
    honest = compiled.infer
    compiled.infer = lambda xs: honest(xs) + np.int8(1) * (np.arange(len(xs)) == 2)[:, None]  # type: ignore[method-assign]
    result = compare_with_micro(compiled, small_int8, x)
    assert result.mismatches == 1
    assert result.first_difference.startswith("input 2, output element 0")


def test_measurement_adds_up(small_int8, fashion) -> None:
    plain = compile_model(small_int8)
    simd = compile_model(small_int8, simd=True)
    x = _fashion_inputs(small_int8, fashion, 1)[0]
    m, s = plain.measure(x), simd.measure(x)
    # every layer of the model was timed, in order
    assert [c.layer.index for c in m.layers] == [layer.index for layer in plain.generated.layers]
    assert sum(c.instructions for c in m.layers) <= m.instructions
    assert m.ram_bytes == plain.static_ram_bytes + m.stack_bytes and m.stack_bytes > 0
    assert m.flash_bytes > plain.generated.weight_bytes
    assert m.estimate.cycles >= m.instructions * 0.9 and m.estimate.milliseconds > 0
    assert s.instructions * 1.5 < m.instructions  # SMLAD kernels: far fewer instructions
    np.testing.assert_array_equal(plain.infer(x[None]), simd.infer(x[None]))


def test_compile_model_refuses_a_float_model(small_float) -> None:
    with pytest.raises(ValueError, match="int8"):
        compile_model(small_float)


def test_inputs_must_be_int8(small_int8) -> None:
    compiled = compile_model(small_int8)
    with pytest.raises(TypeError, match="int8"):
        compiled.infer(np.zeros((1, 28, 28, 1), np.float32))
    with pytest.raises(ValueError, match="one input"):
        compiled.measure(np.zeros((2, 28, 28, 1), np.int8))


def test_cli_runs_a_model_and_emits_its_project(small_int8, tmp_path, capsys) -> None:
    from tinyml_course.cli import main

    model = tmp_path / "m.tflite"
    model.write_bytes(small_int8)
    emit = tmp_path / "project"
    assert main(["mcu", "run", str(model), "--compare", "3", "--emit", str(emit)]) == 0
    out = capsys.readouterr().out
    for word in ("flash", "RAM", "instructions", "ESTIMATE", "output"):
        assert word in out
    if micro_available():
        assert "every output element equals tflite-micro's" in out
    assert (emit / "Makefile").is_file() and (emit / "model.c").is_file()
    (emit / "model.c").write_text("/* my edits */\n")
    assert main(["mcu", "run", str(model), "--compare", "0", "--emit", str(emit)]) == 2
    assert "my edits" in (emit / "model.c").read_text()  # nothing overwritten without asking
    assert "overwrite" in capsys.readouterr().err


def test_cli_rejects_what_is_not_a_model(tmp_path, capsys) -> None:
    from tinyml_course.cli import main

    bad = tmp_path / "x.tflite"
    bad.write_bytes(b"not a model at all")
    assert main(["mcu", "run", str(bad)]) == 2
    assert "not a .tflite model" in capsys.readouterr().err
    assert main(["mcu", "run", str(tmp_path / "missing.tflite")]) == 2
