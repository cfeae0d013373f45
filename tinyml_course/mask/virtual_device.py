"""A virtual ESP32: the mask detector's serial protocol served on a pseudo-terminal.

The real demo pairs a laptop with an ESP32 over Bluetooth Serial, which the laptop sees as
a serial port. Here a *pseudo-terminal* (a pty, the kernel's pair of connected serial
endpoints) plays the Bluetooth link: a server process holds one end and answers the
protocol of :mod:`tinyml_course.mask.protocol` by running the int8 model in
TensorFlow Lite Micro (the same interpreter and reference kernels as the firmware), and any
serial client (pyserial, ``tinyml-course mask stream``) opens the other end by its path,
for example ``/dev/pts/5``. With an ESP32, only the port changes.

What still differs from the board: the timing (a PC core, not a 240 MHz Xtensa core, and
no radio), the kernels (the ESP32 build may use the ESP-NN optimized kernels; the outputs of
TFLM's reference kernels are what the tests compare), and the memory (the arena is given
the sketch's size, but nothing else of the ESP32's RAM is simulated).

Examples
--------
>>> with VirtualDevice(model_bytes) as device:  # doctest: +SKIP
...     with MaskClient(device.port) as client:
...         print(client.classify(frame))
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from tinyml_course.mask.protocol import (
    FRAME_TIMEOUT_S,
    DecodeError,
    Decoder,
    DeviceInfo,
    ErrorCode,
    Message,
    MessageType,
    Score,
    device_max_payload,
    encode,
    encode_error,
)


class DeviceModel:
    """The device's side of the protocol: an interpreter and the answer to each message.

    Parameters
    ----------
    model_content : bytes
        A full-integer int8 ``.tflite`` with a ``(1, size, size, 1)`` input and one output.
    arena_size : int
        Tensor arena bytes for tflite-micro (the sketch's ``kTensorArenaSize``).

    Raises
    ------
    NotInt8ModelError
        If the model is not full-integer int8.
    ValueError
        If the input is not a square single-channel image.
    """

    def __init__(self, model_content: bytes, arena_size: int) -> None:
        from tinyml_course.micro import micro_available, require_int8
        from tinyml_course.tflite import TFLiteModel

        require_int8(model_content)
        host = TFLiteModel(model_content, reference_kernels=True)
        shape = host.input.shape
        if len(shape) != 4 or shape[1] != shape[2] or shape[3] != 1:
            raise ValueError(
                f"the mask model's input must be (1, size, size, 1); this model's is {shape}."
            )
        self.size = int(shape[1])
        self.info = DeviceInfo(
            self.size,
            host.input.scale,
            host.input.zero_point,
            host.output.scale,
            host.output.zero_point,
            int(arena_size),
        )
        self.runtime = "tflite-micro" if micro_available() else "LiteRT reference kernels"
        self.clock: Callable[[], float] = time.perf_counter  # seconds; times each inference
        if micro_available():
            from tflite_micro import runtime

            self._micro = runtime.Interpreter.from_bytes(
                bytes(model_content), arena_size=int(arena_size)
            )
            self._host = None
        else:
            self._micro = None
            self._host = host

    def run(self, frame: np.ndarray) -> int:
        """The raw int8 output for one int8 frame ``(size, size)``."""
        sample = np.asarray(frame, np.int8).reshape(1, self.size, self.size, 1)
        if self._micro is not None:
            self._micro.set_input(sample, 0)
            self._micro.invoke()
            return int(np.asarray(self._micro.get_output(0)).reshape(-1)[0])
        return int(self._host.invoke_raw(sample).reshape(-1)[0])  # type: ignore[union-attr]

    def answer(self, event: Message | DecodeError) -> tuple[bytes, str]:
        """The reply frame for one decoded message or decoding error, and a log line."""
        if isinstance(event, DecodeError):
            return encode_error(
                event.code, seq=event.seq
            ), f"seq {event.seq}: error {event.code.name} ({event.reason})"
        if event.type == MessageType.INFO:
            if event.payload:
                return encode_error(
                    ErrorCode.BAD_LENGTH, seq=event.seq
                ), f"seq {event.seq}: INFO with a payload"
            return encode(
                MessageType.DEVICE, self.info.to_payload(), seq=event.seq
            ), f"seq {event.seq}: info"
        if event.type in (MessageType.FRAME, MessageType.GRAY):
            pixels = self.size * self.size
            if len(event.payload) != pixels:
                line = f"seq {event.seq}: error BAD_LENGTH ({len(event.payload)} pixels, expected {pixels})"
                return encode_error(ErrorCode.BAD_LENGTH, seq=event.seq), line
            if event.type == MessageType.FRAME:
                frame = np.frombuffer(event.payload, np.int8)
            else:
                from tinyml_course.mask.preprocess import quantize_frame

                gray = np.frombuffer(event.payload, np.uint8)
                frame = quantize_frame(gray, self.info.input_scale, self.info.input_zero_point)
            start = self.clock()
            try:
                raw = self.run(frame)
            except Exception as err:  # the device must keep serving
                return encode_error(
                    ErrorCode.INVOKE_FAILED, seq=event.seq
                ), f"seq {event.seq}: invoke failed: {err}"
            micros = int((self.clock() - start) * 1e6)
            score = self.info.dequantize(raw)
            line = f"seq {event.seq}: score {score:.3f} (raw {raw}) in {micros} us"
            return encode(MessageType.SCORE, Score(raw, micros).to_payload(), seq=event.seq), line
        # A well-formed reply type sent to the device.
        return encode_error(
            ErrorCode.UNKNOWN_TYPE, seq=event.seq
        ), f"seq {event.seq}: unexpected {event.type.name}"


def serve(
    fd: int,
    device: DeviceModel,
    *,
    should_stop: Callable[[], bool] = lambda: False,
    log: Callable[[str], None] | None = None,
) -> None:
    """Answer the protocol on file descriptor ``fd`` (a pty master) until ``should_stop()``.

    Malformed input is answered with ERROR replies and never ends the loop; a frame that
    stops arriving for :data:`FRAME_TIMEOUT_S` seconds is answered with ``TIMEOUT``.
    """
    decoder = Decoder(max_payload=device_max_payload(device.size))
    last_byte = time.monotonic()
    while not should_stop():
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                data = os.read(fd, 4096)
            except OSError:  # no client has the port open (EIO on a pty): wait for one
                time.sleep(0.05)
                continue
            if not data:
                time.sleep(0.05)
                continue
            last_byte = time.monotonic()
            events: list[Message | DecodeError] = decoder.feed(data)
        elif decoder.pending and time.monotonic() - last_byte > FRAME_TIMEOUT_S:
            expired = decoder.expire()
            events = [expired] if expired is not None else []
        else:
            continue
        for event in events:
            reply, line = device.answer(event)
            try:
                os.write(fd, reply)
            except OSError:
                pass
            if log is not None:
                log(line)


def open_pty() -> tuple[int, int, str]:
    """A raw pseudo-terminal: ``(master_fd, slave_fd, slave_path)``.

    Both ends are set raw (no echo, no line editing, no CR/LF translation): a serial link
    carries bytes, and echo would send the device its own replies.
    """
    if not hasattr(os, "openpty"):
        raise OSError(
            "the virtual device needs a POSIX pseudo-terminal (Linux or macOS); on Windows run it in WSL, "
            "or stream to a real ESP32 with --port COMn."
        )
    import tty

    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    return master, slave, os.ttyname(slave)


def default_arena(model_content: bytes) -> int:
    """The arena the sketch gets: tflite-micro's measured arena plus the sketch's margin."""
    from tinyml_course.mask.sketch import arena_with_margin
    from tinyml_course.micro import measure_arena

    return arena_with_margin(measure_arena(model_content).bytes)


class VirtualDevice:
    """A virtual ESP32 running the mask model in tflite-micro behind a pseudo-terminal.

    The server runs in a child process (like a separate board: its own interpreter and
    memory; a crash cannot take the notebook down) and is stopped cleanly by :meth:`stop`
    or by leaving the ``with`` block.

    Parameters
    ----------
    model_content : bytes
        Full-integer int8 ``.tflite`` mask model.
    arena_size : int, optional
        Tensor arena bytes; default: the measured arena plus the sketch's margin
        (:func:`tinyml_course.mask.sketch.arena_with_margin`), exactly what the sketch gets.

    Attributes
    ----------
    port : str
        The serial port path to open (``/dev/pts/N``); set once started.

    Examples
    --------
    >>> with VirtualDevice(model_bytes) as device:  # doctest: +SKIP
    ...     print(device.port)
    /dev/pts/4
    """

    def __init__(self, model_content: bytes, *, arena_size: int | None = None) -> None:
        from tinyml_course.micro import require_int8

        if not isinstance(model_content, (bytes, bytearray)):
            raise TypeError(
                f"model_content must be the bytes of an int8 .tflite; got {type(model_content).__name__}."
            )
        require_int8(bytes(model_content))
        if arena_size is not None and (
            isinstance(arena_size, bool) or not isinstance(arena_size, int) or arena_size <= 0
        ):
            raise ValueError(
                f"arena_size must be a positive number of bytes or None (measured); got {arena_size!r}."
            )
        self.model_content = bytes(model_content)
        self.arena_size = arena_size
        self.port: str | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._slave: int | None = None
        self._folder: tempfile.TemporaryDirectory[str] | None = None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self, *, timeout: float = 60.0) -> VirtualDevice:
        """Open the pty and start the server process; return when it is ready.

        Raises
        ------
        RuntimeError
            If the server does not come up (its output is in the message).
        """
        if self.running:
            return self
        if self.arena_size is None:
            self.arena_size = default_arena(self.model_content)
        self._folder = tempfile.TemporaryDirectory(prefix="tinyml-virtual-esp32-")
        folder = Path(self._folder.name)
        (folder / "model.tflite").write_bytes(self.model_content)
        master, self._slave, self.port = open_pty()
        log = open(folder / "device.log", "wb")  # noqa: SIM115 - closed below, the child keeps its copy
        try:
            self._process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tinyml_course.mask.virtual_device",
                    "--fd",
                    str(master),
                    "--model",
                    str(folder / "model.tflite"),
                    "--arena",
                    str(self.arena_size),
                    "--ready",
                ],
                pass_fds=(master,),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        finally:
            os.close(master)  # the child holds the device end now
            log.close()
        deadline = time.monotonic() + timeout
        line = b""
        assert self._process.stdout is not None
        while time.monotonic() < deadline and self._process.poll() is None:
            ready, _, _ = select.select([self._process.stdout], [], [], 0.1)
            if ready:
                line = self._process.stdout.readline()
                break
        if not line.startswith(b"READY"):
            output = (folder / "device.log").read_text(errors="replace").strip().splitlines()[-5:]
            self.stop()
            raise RuntimeError(
                f"the virtual device did not start: {' | '.join(output) or 'no output'}"
            )
        return self

    def stop(self, *, timeout: float = 5.0) -> None:
        """Stop the server process and close the pty (safe to call twice)."""
        process, self._process = self._process, None
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            if process.stdout is not None:
                process.stdout.close()
        if self._slave is not None:
            os.close(self._slave)
            self._slave = None
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None

    def __enter__(self) -> VirtualDevice:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        try:
            self.stop()
        except Exception:
            pass


def run_foreground(
    model_content: bytes, *, arena_size: int | None = None, quiet: bool = False
) -> int:
    """The ``tinyml-course mask virtual-device`` command: serve on a new pty until Ctrl-C."""
    arena = default_arena(model_content) if arena_size is None else arena_size
    device = DeviceModel(model_content, arena)
    master, slave, port = open_pty()
    print(f"virtual ESP32 mask detector on {port}", flush=True)
    print(
        f"  model {len(model_content):,} bytes, input {device.size}x{device.size} int8, arena {arena:,} bytes, "
        f"runtime {device.runtime}",
        flush=True,
    )
    print(f"  try: tinyml-course mask stream --port {port} IMAGE...   (Ctrl-C to stop)", flush=True)
    stop = {"now": False}

    def _on_term(signum: int, frame: object) -> None:
        stop["now"] = True

    previous = signal.signal(signal.SIGTERM, _on_term)  # `kill PID` stops it cleanly too
    try:
        serve(
            master,
            device,
            should_stop=lambda: stop["now"],
            log=None if quiet else (lambda line: print(line, flush=True)),
        )
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        os.close(master)
        os.close(slave)
    print("stopped", flush=True)
    return 0


def _child(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="virtual ESP32 server process (started by VirtualDevice)"
    )
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--arena", type=int, required=True)
    parser.add_argument("--ready", action="store_true")
    args = parser.parse_args(argv)
    stop = {"now": False}

    def _on_term(signum: int, frame: object) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, _on_term)
    device = DeviceModel(Path(args.model).read_bytes(), args.arena)
    if args.ready:
        print(f"READY {device.runtime}", flush=True)
    serve(args.fd, device, should_stop=lambda: stop["now"])
    return 0


if __name__ == "__main__":
    sys.exit(_child())
