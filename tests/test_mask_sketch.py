"""The generated ESP32 sketch: constants from the model, no lost edits, and a host compile check
whose harness proves the sketch's parser, replies and quantization match the Python ones."""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest

from tinyml_course.mask import protocol
from tinyml_course.mask.protocol import SYNC, MessageType, encode

SIZE = 10
needs_gpp = pytest.mark.skipif(shutil.which("g++") is None, reason="no host C++ compiler")


def _model(seed: int, low: float, high: float) -> bytes:
    """A small seeded int8 model; the representative range sets the input quantization."""
    import tinyml_course  # noqa: F401
    from tinyml_course import keras
    from tinyml_course.tflite import convert_to_tflite

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 1)),
            keras.layers.SeparableConv2D(5, 3, activation="relu"),
            keras.layers.MaxPooling2D(2),
            keras.layers.Flatten(),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    rng = np.random.default_rng(seed)
    return convert_to_tflite(
        model,
        "int8",
        representative_data=rng.uniform(low, high, (100, SIZE, SIZE, 1)).astype("float32"),
    )


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    # Inputs calibrated on [-0.2, 0.8]: a scale and zero point that make rounding and clipping matter
    # (real pixels / 255 reach 1.0, beyond the calibrated range, so the top values clip at 127).
    return _model(0, -0.2, 0.8)


@pytest.fixture(scope="module")
def sketch_dir(model_bytes, tmp_path_factory):
    from tinyml_course.mask.sketch import generate_sketch

    return generate_sketch(model_bytes, tmp_path_factory.mktemp("sketch"), device_name="Test-Mask")


@pytest.fixture(scope="module")
def harness(sketch_dir, tmp_path_factory):
    from tinyml_course.mask.sketch import compile_check

    if shutil.which("g++") is None:
        pytest.skip("no host C++ compiler")
    result = compile_check(sketch_dir, build_dir=tmp_path_factory.mktemp("build"))
    assert result.ok, result.output
    return result


def _constants(header: str) -> dict[str, str]:
    return dict(re.findall(r"constexpr \w+ (k\w+)(?:\[\])? = ([^;]+);", header))


def test_model_ops_reads_the_operators_from_the_flatbuffer(model_bytes) -> None:
    from tinyml_course.mask.sketch import model_ops
    from tinyml_course.tflite import TFLiteModel

    ops = model_ops(model_bytes)
    # An independent read: the operators LiteRT's interpreter instantiated for the graph.
    interpreter = TFLiteModel(model_bytes, reference_kernels=True).interpreter
    assert set(ops) == {op["op_name"] for op in interpreter._get_ops_details()}
    assert "MAX_POOL_2D" in ops and len(ops) == len(set(ops))
    with pytest.raises(ValueError, match="TFL3"):
        model_ops(b"not a model at all")


def test_sketch_files_and_model_array(sketch_dir, model_bytes) -> None:
    from tinyml_course.deploy import from_c_array

    names = sorted(p.name for p in sketch_dir.iterdir() if not p.name.startswith("."))
    assert sketch_dir.name == "mask_detector"
    assert names == ["mask_detector.ino", "mask_protocol.h", "model_data.h", "model_settings.h"]
    assert from_c_array((sketch_dir / "model_data.h").read_text()) == model_bytes


def test_settings_are_the_models_quantization_parameters(sketch_dir, model_bytes) -> None:
    from tinyml_course.micro import measure_arena
    from tinyml_course.tflite import TFLiteModel

    constants = _constants((sketch_dir / "model_settings.h").read_text())
    model = TFLiteModel(model_bytes)
    assert int(constants["kInputSize"]) == SIZE
    assert float.fromhex(constants["kInputScale"].rstrip("f")) == pytest.approx(
        model.input.scale, rel=1e-7
    )
    assert int(constants["kInputZeroPoint"]) == model.input.zero_point
    assert model.input.zero_point != -128, "the test model should have a non-trivial zero point"
    assert float.fromhex(constants["kOutputScale"].rstrip("f")) == pytest.approx(
        model.output.scale, rel=1e-7
    )
    assert int(constants["kOutputZeroPoint"]) == model.output.zero_point
    measured = measure_arena(model_bytes).bytes
    assert int(constants["kMeasuredArenaBytes"]) == measured
    assert (
        measured + 1024
        <= int(constants["kTensorArenaSize"])
        <= measured + max(1024, measured // 4) + 16 + 1
    )
    assert int(constants["kProtocolMaxPayload"]) == protocol.device_max_payload(SIZE)
    assert int(constants["kSync0"], 16) == SYNC[0] and int(constants["kSync1"], 16) == SYNC[1]
    assert constants["kDeviceName"] == '"Test-Mask"'


def test_op_resolver_registers_exactly_the_models_ops(sketch_dir, model_bytes) -> None:
    from tinyml_course.mask.sketch import OP_RESOLVER_METHODS, model_ops

    ino = (sketch_dir / "mask_detector.ino").read_text()
    registered = re.findall(r"resolver\.(Add\w+)\(\)", ino)
    assert registered == [OP_RESOLVER_METHODS[op] for op in model_ops(model_bytes)]
    constants = _constants((sketch_dir / "model_settings.h").read_text())
    assert int(constants["kOpCount"]) == len(registered)


def test_regenerating_an_untouched_sketch_is_allowed(sketch_dir, model_bytes) -> None:
    from tinyml_course.mask.sketch import generate_sketch

    before = (sketch_dir / "model_settings.h").read_text()
    again = generate_sketch(model_bytes, sketch_dir.parent, device_name="Test-Mask")
    assert again == sketch_dir and (sketch_dir / "model_settings.h").read_text() == before


def test_edited_sketch_is_not_overwritten_without_asking(model_bytes, tmp_path) -> None:
    from tinyml_course.mask.sketch import edited_files, generate_sketch

    folder = generate_sketch(model_bytes, tmp_path, arena_bytes=8192)
    ino = folder / "mask_detector.ino"
    edited = ino.read_text() + "\n// my LED blink code\n"
    ino.write_text(edited)
    (folder / "notes.txt").write_text("pairing PIN 1234")
    assert edited_files(folder) == ["mask_detector.ino", "notes.txt"]
    with pytest.raises(FileExistsError, match=r"mask_detector\.ino.*overwrite=True"):
        generate_sketch(model_bytes, tmp_path, arena_bytes=8192)
    assert ino.read_text() == edited and (folder / "notes.txt").exists()
    generate_sketch(model_bytes, tmp_path, arena_bytes=8192, overwrite=True)
    assert "my LED blink code" not in ino.read_text()


def test_a_folder_not_made_by_the_generator_is_refused(model_bytes, tmp_path) -> None:
    from tinyml_course.mask.sketch import generate_sketch

    (tmp_path / "mask_detector").mkdir()
    (tmp_path / "mask_detector" / "mask_detector.ino").write_text(
        "void setup() {}\nvoid loop() {}\n"
    )
    with pytest.raises(FileExistsError, match="did not write"):
        generate_sketch(model_bytes, tmp_path, arena_bytes=8192)


def test_invalid_arguments_are_named(model_bytes, tmp_path) -> None:
    from tinyml_course.mask.sketch import arena_with_margin, generate_sketch

    with pytest.raises(ValueError, match="device_name"):
        generate_sketch(model_bytes, tmp_path, arena_bytes=8192, device_name='bad"name')
    with pytest.raises(ValueError, match="arena_bytes"):
        generate_sketch(model_bytes, tmp_path, arena_bytes=-5)
    with pytest.raises(ValueError, match="measured_bytes"):
        arena_with_margin(0)
    assert arena_with_margin(2000) == 3024 and arena_with_margin(10_000) == 12_512


@needs_gpp
def test_compile_check_passes_and_catches_a_broken_sketch(harness, sketch_dir, tmp_path) -> None:
    from tinyml_course.mask.sketch import compile_check

    assert harness.ok and harness.executable.is_file()
    broken = tmp_path / "mask_detector"
    shutil.copytree(sketch_dir, broken)
    settings = broken / "model_settings.h"
    settings.write_text(settings.read_text().replace("kInputZeroPoint =", "kInputZeroPt ="))
    result = compile_check(broken, build_dir=tmp_path / "build")
    assert not result.ok and "kInputZeroPoint" in result.output


@needs_gpp
def test_sketch_registers_its_ops_and_constants_at_setup(harness, model_bytes) -> None:
    from tinyml_course.mask.sketch import OP_RESOLVER_METHODS, model_ops, run_harness

    lines = run_harness(harness, mode="settings").decode().splitlines()
    ops = [line.split()[1] for line in lines if line.startswith("op ")]
    assert ops == [OP_RESOLVER_METHODS[op] for op in model_ops(model_bytes)]
    assert "device_name Test-Mask" in lines and f"input_size {SIZE}" in lines


@needs_gpp
def test_sketch_quantization_matches_quantize_frame(harness, model_bytes) -> None:
    from tinyml_course.mask.preprocess import quantize_frame
    from tinyml_course.mask.sketch import run_harness
    from tinyml_course.tflite import TFLiteModel

    info = TFLiteModel(model_bytes).input
    sketch = np.array(run_harness(harness, mode="quantize").decode().split(), dtype=int)
    python = quantize_frame(np.arange(256, dtype=np.uint8), info.scale, info.zero_point).astype(int)
    np.testing.assert_array_equal(sketch, python)
    assert python.min() > -128 and python.max() == 127 and len(set(python.tolist())) > 150


def _python_device_replies(data: bytes, model_bytes: bytes, arena_bytes: int) -> bytes:
    """What the virtual device's protocol logic answers, with the stand-in interpreter's output."""
    from tinyml_course.mask.protocol import Decoder, DeviceInfo, device_max_payload
    from tinyml_course.mask.virtual_device import DeviceModel
    from tinyml_course.tflite import TFLiteModel

    model = TFLiteModel(model_bytes)
    device = DeviceModel.__new__(DeviceModel)  # the answer logic without an interpreter
    device.size = SIZE
    device.info = DeviceInfo(
        SIZE,
        model.input.scale,
        model.input.zero_point,
        model.output.scale,
        model.output.zero_point,
        arena_bytes,
    )
    device.clock = lambda: 0.0
    # The stand-in interpreter: low byte of the sum of the int8 inputs.
    device.run = lambda frame: int(np.int8(np.uint8(int(np.asarray(frame, np.int64).sum()) & 0xFF)))
    decoder = Decoder(max_payload=device_max_payload(SIZE))
    events = decoder.feed(data)
    expired = decoder.expire()
    events += [expired] if expired is not None else []
    return b"".join(device.answer(event)[0] for event in events)


@needs_gpp
def test_sketch_answers_byte_for_byte_like_the_virtual_device(
    harness, sketch_dir, model_bytes
) -> None:
    from tinyml_course.mask.sketch import run_harness

    arena = int(_constants((sketch_dir / "model_settings.h").read_text())["kTensorArenaSize"])
    rng = np.random.default_rng(7)
    frame = rng.integers(-128, 128, SIZE * SIZE, dtype=np.int8).tobytes()
    gray = rng.integers(0, 256, SIZE * SIZE, dtype=np.uint8).tobytes()
    bad_crc = bytearray(encode(MessageType.FRAME, frame, seq=3))
    bad_crc[10] ^= 0x01
    scripted = (
        encode(MessageType.INFO, seq=1)
        + encode(MessageType.FRAME, frame, seq=2)
        + b"line noise"
        + bytes(bad_crc)
        + encode(MessageType.GRAY, gray, seq=4)
        + encode(MessageType.FRAME, frame[:50], seq=5)
        + encode(0x66, b"?", seq=6)
        + encode(MessageType.SCORE, b"12345", seq=7)
        + SYNC
        + bytes([MessageType.FRAME, 8, 0xFF, 0xFF])
        + encode(MessageType.INFO, b"x", seq=9)
        + encode(MessageType.FRAME, frame, seq=10)[:40]
        + encode(MessageType.FRAME, frame, seq=11)
        + encode(MessageType.FRAME, frame, seq=12)[:20]
    )
    replies = run_harness(harness, scripted)
    assert replies == _python_device_replies(scripted, model_bytes, arena)
    answers = protocol.Decoder().feed(replies)
    kinds = [(a.type.name, a.seq) for a in answers]
    assert (
        ("DEVICE", 1) in kinds
        and ("SCORE", 2) in kinds
        and ("SCORE", 4) in kinds
        and ("SCORE", 11) in kinds
    )
    errors = {
        a.seq: protocol.ErrorCode(a.payload[0]).name for a in answers if a.type == MessageType.ERROR
    }
    assert errors[3] == "BAD_CRC" and errors[5] == "BAD_LENGTH" and errors[6] == "UNKNOWN_TYPE"
    assert errors[7] == "UNKNOWN_TYPE" and errors[8] == "BAD_LENGTH" and errors[9] == "BAD_LENGTH"
    assert errors[12] == "TIMEOUT"
    # The stand-in model's output proves every pixel arrived: the FRAME as sent, the GRAY quantized.
    score_2 = next(a for a in answers if a.seq == 2)
    assert np.int8(
        score_2.payload[0] - 256 if score_2.payload[0] > 127 else score_2.payload[0]
    ) == np.int8(np.uint8(int(np.frombuffer(frame, np.int8).astype(int).sum()) & 0xFF))

    # Random streams: frames, corrupted frames, truncations and noise, byte for byte identical.
    for trial in range(25):
        pieces = []
        for _ in range(int(rng.integers(1, 12))):
            kind = rng.integers(0, 5)
            seq = int(rng.integers(0, 256))
            if kind == 0:
                pieces.append(
                    rng.integers(0, 256, int(rng.integers(1, 30)), dtype=np.uint8).tobytes()
                )
            elif kind == 1:
                pieces.append(
                    encode(
                        MessageType.FRAME,
                        rng.integers(0, 256, SIZE * SIZE, dtype=np.uint8).tobytes(),
                        seq=seq,
                    )
                )
            elif kind == 2:
                pieces.append(
                    encode(
                        MessageType.GRAY,
                        rng.integers(0, 256, SIZE * SIZE, dtype=np.uint8).tobytes(),
                        seq=seq,
                    )
                )
            elif kind == 3:
                damaged = bytearray(encode(MessageType.FRAME, bytes(SIZE * SIZE), seq=seq))
                damaged[int(rng.integers(2, len(damaged)))] ^= int(rng.integers(1, 256))
                pieces.append(bytes(damaged))
            else:
                full = encode(MessageType.INFO, seq=seq)
                pieces.append(full[: int(rng.integers(1, len(full) + 1))])
        stream = b"".join(pieces)
        assert run_harness(harness, stream) == _python_device_replies(stream, model_bytes, arena), (
            f"trial {trial}"
        )


@needs_gpp
def test_cli_sketch_command_writes_and_checks(model_bytes, tmp_path, capsys, monkeypatch) -> None:
    from tinyml_course.cli import main

    monkeypatch.setenv("TINYML_COURSE_RESULTS", str(tmp_path / "results"))  # the build folder

    model_file = tmp_path / "mask.tflite"
    model_file.write_bytes(model_bytes)
    assert (
        main(
            ["mask", "sketch", str(tmp_path / "out"), "--model", str(model_file), "--arena", "8192"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "sketch written to" in out and "compiled OK" in out
    (tmp_path / "out" / "mask_detector" / "mask_detector.ino").write_text("// mine\n")
    assert (
        main(["mask", "sketch", str(tmp_path / "out"), "--model", str(model_file), "--no-check"])
        == 2
    )
    assert "overwrite" in capsys.readouterr().err
