"""Audio plumbing: resampling, reading and writing WAV files."""

from __future__ import annotations

import warnings
import wave
from math import gcd
from pathlib import Path

import numpy as np

SAMPLE_RATE = 16000
"""The course's audio rate (Hz), as Speech Commands and micro_speech use."""


class AudioReadError(ValueError):
    """A file that is not audio the course can read."""


def resample(audio: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Resample float audio from ``rate_in`` to ``rate_out`` Hz (polyphase, anti-aliased)."""
    audio = np.asarray(audio, dtype=np.float32)
    if rate_in <= 0 or rate_out <= 0:
        raise ValueError(f"rates must be positive; got rate_in={rate_in}, rate_out={rate_out}.")
    if rate_in == rate_out or audio.size == 0:
        return audio.copy()
    from scipy.signal import resample_poly

    g = gcd(int(rate_in), int(rate_out))
    return resample_poly(audio, rate_out // g, rate_in // g).astype(np.float32)


def read_wav(path: str | Path, *, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Read a WAV file as mono float32 at ``sample_rate`` (mixed down and resampled).

    Reads PCM (8, 16, 24, 32-bit) and IEEE float WAVs at any rate, mono or multi-channel.

    Raises
    ------
    AudioReadError
        When the file is missing, empty, or not a WAV the course can read; the message says
        which and how to convert it.
    """
    file = Path(path)
    if not file.is_file():
        raise AudioReadError(f"{path}: no such file")
    try:
        from scipy.io import wavfile

        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. "Chunk (non-data) not understood": skipped
            rate, data = wavfile.read(str(file))
    except Exception as err:  # noqa: BLE001 - any parse failure is reported the same way
        raise AudioReadError(
            f"{path}: not a readable WAV file ({err}); convert it to PCM WAV, e.g. "
            f"ffmpeg -i INPUT -ar 16000 -ac 1 OUTPUT.wav"
        ) from None
    data = np.asarray(data)
    if data.size == 0:
        raise AudioReadError(f"{path}: the WAV file holds no samples")
    if data.dtype == np.uint8:
        audio = (data.astype(np.float32) - 128.0) / 128.0
    elif data.dtype == np.int16:
        audio = data.astype(np.float32) / 32768.0
    elif data.dtype == np.int32:
        audio = data.astype(np.float32) / 2147483648.0
    elif data.dtype.kind == "f":
        audio = data.astype(np.float32)
    else:
        raise AudioReadError(
            f"{path}: unsupported sample type {data.dtype}; convert it to 16-bit PCM"
        )
    if audio.ndim == 2:
        audio = audio.mean(axis=1)
    return resample(audio, int(rate), sample_rate)


def write_wav(path: str | Path, audio: np.ndarray, *, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write float audio in [-1, 1] as a mono 16-bit PCM WAV; returns the path."""
    file = Path(path)
    file.parent.mkdir(parents=True, exist_ok=True)
    pcm = np.clip(np.asarray(audio, np.float32), -1.0, 1.0)
    with wave.open(str(file), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes((pcm * 32767.0).astype("<i2").tobytes())
    return file
