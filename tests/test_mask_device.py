"""The virtual ESP32: frames in over a pseudo-terminal, the in-process tflite-micro scores out.

Uses a small seeded int8 model (the original demo's architecture, untrained): the device is
tested for carrying the bits faithfully, not for recognising masks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("serial")

from tinyml_course.mask.protocol import SYNC, Decoder, ErrorCode, Message, MessageType, encode

SIZE = 10


def _tiny_mask_model(seed: int = 0) -> bytes:
    import tinyml_course  # noqa: F401  (Keras 2, quiet TensorFlow)
    from tinyml_course import keras
    from tinyml_course.tflite import convert_to_tflite

    keras.utils.set_random_seed(seed)
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 1)),
            keras.layers.SeparableConv2D(5, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(1, activation="sigmoid"),
        ]
    )
    rng = np.random.default_rng(seed)
    representative = rng.random((100, SIZE, SIZE, 1)).astype("float32")
    return convert_to_tflite(model, "int8", representative_data=representative)


@pytest.fixture(scope="module")
def model_bytes() -> bytes:
    return _tiny_mask_model()


@pytest.fixture(scope="module")
def device(model_bytes):
    from tinyml_course.mask.virtual_device import VirtualDevice

    with VirtualDevice(model_bytes) as running:
        yield running


def _raw_exchange(port: str, data: bytes, *, expect: int, timeout: float = 5.0) -> list:
    """Write bytes to the device; collect decoded answers until ``expect`` arrive."""
    import serial

    decoder = Decoder()
    events: list = []
    with serial.Serial(port, timeout=0.05) as link:
        link.write(data)
        deadline = time.monotonic() + timeout
        while len(events) < expect and time.monotonic() < deadline:
            events += decoder.feed(link.read(256))
    return events


def test_device_reports_the_models_quantization(device, model_bytes) -> None:
    from tinyml_course.mask.host import MaskClient
    from tinyml_course.tflite import TFLiteModel

    reference = TFLiteModel(model_bytes)
    with MaskClient(device.port, timeout=5) as client:
        info = client.info
    assert info.size == SIZE
    assert info.input_scale == pytest.approx(reference.input.scale, rel=1e-7)
    assert info.input_zero_point == reference.input.zero_point
    assert info.output_scale == pytest.approx(reference.output.scale, rel=1e-7)
    assert info.output_zero_point == reference.output.zero_point
    assert info.arena_bytes == device.arena_size > 0


def test_round_trip_gives_the_in_process_tflite_micro_scores(device, model_bytes) -> None:
    from tinyml_course.mask.host import MaskClient
    from tinyml_course.mask.preprocess import quantize_frame
    from tinyml_course.micro import run_micro

    rng = np.random.default_rng(1)
    frames = rng.integers(-128, 128, size=(40, SIZE, SIZE), dtype=np.int8)
    expected = run_micro(model_bytes, frames[..., None]).reshape(-1)
    assert len(set(expected.tolist())) > 3, "the test model should give varied outputs"
    with MaskClient(device.port, timeout=5) as client:
        raws = np.array([client.classify_raw(frame) for frame in frames])
        np.testing.assert_array_equal(raws, expected)
        info = client.info
        assert client.classify(frames[0]) == pytest.approx(
            (int(expected[0]) - info.output_zero_point) * info.output_scale
        )
        # GRAY frames are quantized on the device with the same formula as the host's quantize_frame.
        gray = rng.integers(0, 256, size=(SIZE, SIZE), dtype=np.uint8)
        on_host = client.classify(quantize_frame(gray, info.input_scale, info.input_zero_point))
        assert client.classify_gray(gray) == on_host


def test_client_checks_frames_before_sending(device) -> None:
    from tinyml_course.mask.host import MaskClient

    with MaskClient(device.port, timeout=5) as client:
        with pytest.raises(TypeError, match="quantize_frame"):
            client.classify(np.zeros((SIZE, SIZE), np.uint8))
        with pytest.raises(ValueError, match="10x10"):
            client.classify(np.zeros((16, 16), np.int8))


def test_malformed_frames_get_errors_and_the_device_keeps_serving(device) -> None:
    good = encode(MessageType.FRAME, bytes(SIZE * SIZE), seq=50)
    bad_crc = bytearray(encode(MessageType.FRAME, bytes(SIZE * SIZE), seq=51))
    bad_crc[-1] ^= 0xFF
    wrong_length = encode(MessageType.FRAME, bytes(64), seq=52)
    unknown = encode(0x55, b"?", seq=53)
    too_long = SYNC + bytes([MessageType.FRAME, 54, 0xFF, 0x7F])
    stream = b"noise" + bytes(bad_crc) + wrong_length + unknown + too_long + good
    events = _raw_exchange(device.port, stream, expect=5)
    answers = [(e.type, e.seq, e.payload[:1]) for e in events if isinstance(e, Message)]
    assert answers[:4] == [
        (MessageType.ERROR, 51, bytes([ErrorCode.BAD_CRC])),
        (MessageType.ERROR, 52, bytes([ErrorCode.BAD_LENGTH])),
        (MessageType.ERROR, 53, bytes([ErrorCode.UNKNOWN_TYPE])),
        (MessageType.ERROR, 54, bytes([ErrorCode.BAD_LENGTH])),
    ]
    assert answers[4][:2] == (MessageType.SCORE, 50)
    assert device.running


def test_a_stalled_frame_times_out_and_the_next_one_is_answered(device) -> None:
    partial = encode(MessageType.FRAME, bytes(SIZE * SIZE), seq=60)[:30]
    (timeout,) = _raw_exchange(device.port, partial, expect=1)
    assert (
        timeout.type == MessageType.ERROR
        and timeout.seq == 60
        and timeout.payload == bytes([ErrorCode.TIMEOUT])
    )
    (answer,) = _raw_exchange(device.port, encode(MessageType.INFO, seq=61), expect=1)
    assert answer.type == MessageType.DEVICE and answer.seq == 61


def test_client_reports_device_errors_and_timeouts(device) -> None:
    from tinyml_course.mask.host import DeviceError, DeviceTimeout, MaskClient
    from tinyml_course.mask.virtual_device import open_pty

    with MaskClient(device.port, timeout=5) as client:
        with pytest.raises(DeviceError, match="BAD_LENGTH") as caught:
            client.request(MessageType.FRAME, bytes(7))
        assert caught.value.code == ErrorCode.BAD_LENGTH
    master, slave, port = open_pty()  # a port nobody answers on
    try:
        with (
            MaskClient(port, timeout=0.3) as silent,
            pytest.raises(DeviceTimeout, match="no answer"),
        ):
            silent.info  # noqa: B018
    finally:
        os.close(master)
        os.close(slave)


def test_stop_ends_the_process_and_closes_the_port(model_bytes) -> None:
    from tinyml_course.mask.virtual_device import VirtualDevice

    device = VirtualDevice(model_bytes, arena_size=64 * 1024).start()
    process = device._process
    assert device.running and Path(device.port).exists()
    device.stop()
    assert not device.running and process.poll() is not None
    device.stop()  # twice is fine


def test_too_small_arena_fails_to_start_with_a_message(model_bytes) -> None:
    from tinyml_course.mask.virtual_device import VirtualDevice

    with pytest.raises(RuntimeError, match="did not start"):
        VirtualDevice(model_bytes, arena_size=64).start(timeout=30)


def test_virtual_device_refuses_a_float_model() -> None:
    from tinyml_course import keras
    from tinyml_course.mask.virtual_device import VirtualDevice
    from tinyml_course.micro import NotInt8ModelError
    from tinyml_course.tflite import convert_to_tflite

    model = keras.Sequential(
        [keras.Input((SIZE, SIZE, 1)), keras.layers.Flatten(), keras.layers.Dense(1)]
    )
    with pytest.raises(NotInt8ModelError):
        VirtualDevice(convert_to_tflite(model, "float"))


def _write_images(folder: Path) -> list[Path]:
    import cv2
    from skimage import data

    astronaut = data.astronaut()  # RGB, a real face
    paths = [folder / "astronaut.png", folder / "noise.jpg"]
    cv2.imwrite(str(paths[0]), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    rng = np.random.default_rng(3)
    cv2.imwrite(str(paths[1]), rng.integers(0, 256, size=(120, 90, 3), dtype=np.uint8))
    return paths


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "tinyml_course.cli", *args]


def test_cli_virtual_device_and_stream_end_to_end(model_bytes, tmp_path) -> None:
    from tinyml_course.mask.host import read_image
    from tinyml_course.mask.preprocess import preprocess_face, quantize_frame
    from tinyml_course.micro import run_micro
    from tinyml_course.tflite import TFLiteModel

    model_file = tmp_path / "mask.tflite"
    model_file.write_bytes(model_bytes)
    images = _write_images(tmp_path)
    missing = tmp_path / "missing.png"
    server = subprocess.Popen(
        _cli("mask", "virtual-device", "--model", str(model_file)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        first = server.stdout.readline()
        assert first.startswith("virtual ESP32 mask detector on /dev/"), (
            first + server.stderr.read()
        )
        port = first.split(" on ", 1)[1].strip()
        streamed = subprocess.run(
            _cli("mask", "stream", "--port", port, str(images[0]), str(missing), str(images[1])),
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server_out, _ = server.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            raise
    assert server.returncode == 0
    assert "stopped" in server_out
    assert streamed.returncode == 1, streamed.stderr  # one path was unreadable
    assert f"{missing}: no such file" in streamed.stderr
    lines = [line.split("\t") for line in streamed.stdout.splitlines()]
    assert [fields[0] for fields in lines] == [str(images[0]), str(images[1])]
    info = TFLiteModel(model_bytes)
    for fields, path in zip(lines, (images[0], images[1]), strict=True):
        crop = preprocess_face(read_image(path), SIZE)
        frame = quantize_frame(crop.pixels, info.input.scale, info.input.zero_point)
        raw = int(run_micro(model_bytes, frame[None, ..., None]).reshape(-1)[0])
        score = (raw - info.output.zero_point) * info.output.scale
        assert float(fields[2]) == pytest.approx(score, abs=5e-4)
        assert fields[1] == ("mask" if score > 0.5 else "no_mask")
        assert fields[3] == crop.detector
    assert "seq" in server_out  # the device logged the requests it served


def test_cli_classify_prints_one_line_per_image(model_bytes, tmp_path) -> None:
    from tinyml_course.mask.preprocess import DETECTORS

    model_file = tmp_path / "mask.tflite"
    model_file.write_bytes(model_bytes)
    images = _write_images(tmp_path)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    result = subprocess.run(
        _cli(
            "mask",
            "classify",
            "--model",
            str(model_file),
            str(images[0]),
            str(broken),
            str(images[1]),
        ),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert f"{broken}: not an image" in result.stderr
    lines = [line.split("\t") for line in result.stdout.splitlines()]
    assert [fields[0] for fields in lines] == [str(images[0]), str(images[1])]
    for _, label, score, detector in lines:
        assert 0.0 <= float(score) <= 1.0
        assert label == ("mask" if float(score) > 0.5 else "no_mask")
        assert detector in DETECTORS
