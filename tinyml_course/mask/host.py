"""The host side of the mask demo: a serial client and the streaming loop.

:class:`MaskClient` talks to the mask detector (an ESP32 over Bluetooth Serial, or the
:class:`~tinyml_course.mask.virtual_device.VirtualDevice`) with the protocol of
:mod:`tinyml_course.mask.protocol`. It first asks the device for its parameters (input size,
input and output quantization), so the host quantizes frames and dequantizes scores with
exactly the device's numbers, never with constants of its own.

:func:`stream` is ``tinyml-course mask stream``: image files or webcam frames ->
:func:`~tinyml_course.mask.preprocess.preprocess_face` ->
:func:`~tinyml_course.mask.preprocess.quantize_frame` -> framed bytes -> the device's answer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinyml_course.mask.protocol import (
    ERROR_TEXT,
    DecodeError,
    Decoder,
    DeviceInfo,
    ErrorCode,
    Message,
    MessageType,
    Score,
    encode,
)


class DeviceError(RuntimeError):
    """The device answered with an ERROR message, or sent something unexpected."""

    def __init__(self, message: str, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        self.code = code


class DeviceTimeout(TimeoutError):
    """The device did not answer in time."""


class MaskClient:
    """A serial client for the mask detector.

    Parameters
    ----------
    port : str
        Serial port: ``/dev/rfcomm0`` or ``COM5`` for a paired ESP32, ``/dev/ttyUSB0`` for
        USB, ``/dev/pts/N`` for the virtual device.
    baudrate : int
        Baud rate (ignored by Bluetooth Serial and by ptys, used by USB serial).
    timeout : float
        Seconds to wait for each answer.

    Examples
    --------
    >>> with MaskClient(device.port) as client:  # doctest: +SKIP
    ...     frame = quantize_frame(crop.pixels, client.info.input_scale, client.info.input_zero_point)
    ...     client.classify(frame)
    0.97265625
    """

    def __init__(self, port: str, *, baudrate: int = 115200, timeout: float = 5.0) -> None:
        if not isinstance(port, str) or not port:
            raise ValueError(
                f"port must be a serial port path such as '/dev/pts/3' or 'COM5'; got {port!r}."
            )
        if not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds; got {timeout!r}.")
        self.port = port
        self.baudrate = int(baudrate)
        self.timeout = float(timeout)
        self._serial = None
        self._decoder = Decoder()
        self._seq = 0
        self._info: DeviceInfo | None = None
        self.last_micros: int | None = None

    def open(self) -> MaskClient:
        """Open the port (done by ``with``)."""
        import serial

        if self._serial is None:
            try:
                self._serial = serial.Serial(
                    self.port, self.baudrate, timeout=0.05, write_timeout=self.timeout
                )
            except serial.SerialException as err:
                raise DeviceError(
                    f"cannot open serial port {self.port!r}: {err}. Is the device running and the port right?"
                ) from None
        return self

    def close(self) -> None:
        if self._serial is not None:
            self._serial.close()
            self._serial = None

    def __enter__(self) -> MaskClient:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, message_type: int, payload: bytes = b"") -> Message:
        """Send one message and return the device's answer to it (same sequence number).

        Raises
        ------
        DeviceTimeout
            No answer within ``timeout`` seconds.
        DeviceError
            The device answered with an ERROR message.
        """
        self.open()
        assert self._serial is not None
        self._seq = (self._seq + 1) % 256
        seq = self._seq
        self._serial.reset_input_buffer()
        self._decoder.reset()
        self._serial.write(encode(message_type, payload, seq=seq))
        self._serial.flush()
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            data = self._serial.read(max(1, self._serial.in_waiting))
            for event in self._decoder.feed(data):
                if isinstance(event, DecodeError) or event.seq != seq:
                    continue  # noise on the line, or a late answer to an earlier request
                if event.type == MessageType.ERROR:
                    code = (
                        ErrorCode(event.payload[0])
                        if event.payload and event.payload[0] in set(ErrorCode)
                        else None
                    )
                    text = (
                        ERROR_TEXT.get(code, "unknown error")
                        if code is not None
                        else "unknown error"
                    )
                    name = code.name if code is not None else f"code {event.payload[:1].hex()}"
                    raise DeviceError(f"the device answered ERROR {name}: {text}.", code)
                return event
        raise DeviceTimeout(
            f"no answer from {self.port} within {self.timeout:g} s. Check that the device is running "
            "and paired, and that nothing else has the port open."
        )

    @property
    def info(self) -> DeviceInfo:
        """The device's parameters (asked once, then remembered)."""
        if self._info is None:
            answer = self.request(MessageType.INFO)
            if answer.type != MessageType.DEVICE:
                raise DeviceError(f"expected a DEVICE answer to INFO, got {answer.type.name}.")
            self._info = DeviceInfo.from_payload(answer.payload)
        return self._info

    def _check_frame(self, frame: np.ndarray, dtype: type, fix: str) -> np.ndarray:
        frame = np.asarray(frame)
        if frame.dtype != dtype:
            raise TypeError(f"frame must be {np.dtype(dtype).name}; got {frame.dtype}. {fix}")
        size = self.info.size
        if frame.size != size * size:
            raise ValueError(
                f"frame has shape {frame.shape} ({frame.size} pixels) but the device's model takes "
                f"{size}x{size} = {size * size}; preprocess with preprocess_face(image, size={size})."
            )
        return frame

    def classify_raw(self, frame: np.ndarray) -> int:
        """Send one int8 frame; return the model's raw int8 output."""
        frame = self._check_frame(
            frame,
            np.int8,
            "Quantize it with quantize_frame(pixels, client.info.input_scale, client.info.input_zero_point).",
        )
        answer = self.request(MessageType.FRAME, frame.reshape(-1).tobytes())
        if answer.type != MessageType.SCORE:
            raise DeviceError(f"expected a SCORE answer, got {answer.type.name}.")
        score = Score.from_payload(answer.payload)
        self.last_micros = score.micros
        return score.raw

    def classify(self, frame: np.ndarray) -> float:
        """Send one int8 frame ``(size, size)``; return the score (probability of a mask).

        Raises
        ------
        TypeError
            If the frame is not int8.
        ValueError
            If it does not have the device's ``size * size`` pixels.
        DeviceError, DeviceTimeout
            As :meth:`request`.
        """
        return self.info.dequantize(self.classify_raw(frame))

    def classify_gray(self, pixels: np.ndarray) -> float:
        """Send uint8 grey pixels for the device to quantize itself; return the score."""
        pixels = self._check_frame(
            pixels, np.uint8, "Send the uint8 crop from preprocess_face(...).pixels."
        )
        answer = self.request(MessageType.GRAY, pixels.reshape(-1).tobytes())
        if answer.type != MessageType.SCORE:
            raise DeviceError(f"expected a SCORE answer, got {answer.type.name}.")
        score = Score.from_payload(answer.payload)
        self.last_micros = score.micros
        return self.info.dequantize(score.raw)


@dataclass(frozen=True)
class StreamResult:
    """One streamed image and the device's answer."""

    source: str
    score: float
    detector: str
    pixels: np.ndarray
    device_micros: int
    round_trip_ms: float

    @property
    def label(self) -> str:
        return "mask" if self.score > 0.5 else "no_mask"

    def line(self) -> str:
        """``SOURCE<TAB>mask|no_mask<TAB>SCORE<TAB>DETECTOR``, like ``mask classify``."""
        return f"{self.source}\t{self.label}\t{self.score:.3f}\t{self.detector}"


def read_image(path: str | Path) -> np.ndarray:
    """An image file as an RGB uint8 array.

    Raises
    ------
    ValueError
        If the file is missing or not an image OpenCV can read.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such file")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{path}: not an image OpenCV can read (use PNG, JPEG, BMP, ...)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def camera_frames(
    camera: int, *, max_frames: int | None = None
) -> Iterator[tuple[str, np.ndarray]]:
    """RGB frames from webcam number ``camera`` until ``max_frames`` (or Ctrl-C)."""
    import cv2

    capture = cv2.VideoCapture(int(camera))
    if not capture.isOpened():
        raise ValueError(
            f"camera {camera} cannot be opened; check --camera N (0 is usually the built-in webcam)."
        )
    try:
        count = 0
        while max_frames is None or count < max_frames:
            ok, image = capture.read()
            if not ok:
                break
            count += 1
            yield f"camera{camera}:{count}", cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()


def stream_images(
    client: MaskClient,
    images: Iterable[tuple[str, np.ndarray]],
) -> Iterator[StreamResult]:
    """Preprocess, quantize with the device's parameters, send, and yield each answer."""
    from tinyml_course.mask.preprocess import preprocess_face, quantize_frame

    info = client.info
    for source, image in images:
        crop = preprocess_face(image, info.size)
        frame = quantize_frame(crop.pixels, info.input_scale, info.input_zero_point)
        start = time.perf_counter()
        score = client.classify(frame)
        elapsed = (time.perf_counter() - start) * 1000
        yield StreamResult(
            source, score, crop.detector, crop.pixels, client.last_micros or 0, elapsed
        )


def stream(
    port: str,
    paths: Iterable[str] = (),
    *,
    camera: int | None = None,
    max_frames: int | None = None,
    timeout: float = 5.0,
    out: Callable[[str], None] = print,
    err: Callable[[str], None] = print,
) -> int:
    """``tinyml-course mask stream``: print the device's answer for each image or camera frame.

    Unreadable files are reported with ``err`` and skipped; returns the exit status
    (0, or 1 if any image could not be read or classified).
    """
    status = 0

    def from_files() -> Iterator[tuple[str, np.ndarray]]:
        nonlocal status
        for path in paths:
            try:
                yield str(path), read_image(path)
            except ValueError as error:
                err(f"error: {error}")
                status = 1

    with MaskClient(port, timeout=timeout) as client:
        info = client.info
        err(
            f"device on {port}: {info.size}x{info.size} int8 input (scale {info.input_scale:.6g}, "
            f"zero point {info.input_zero_point}), arena {info.arena_bytes:,} bytes"
        )
        images = (
            camera_frames(camera, max_frames=max_frames) if camera is not None else from_files()
        )
        try:
            for result in stream_images(client, images):
                out(f"{result.line()}\t{result.round_trip_ms:.1f} ms")
        except KeyboardInterrupt:
            pass
    return status
