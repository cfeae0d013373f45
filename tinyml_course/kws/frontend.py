"""The audio front end in NumPy: framing, window, FFT, mel filterbank, log, DCT.

The same steps as micro_speech and "Hello Edge" (Zhang et al. 2017): 30 ms frames every
20 ms (49 frames per second of 16 kHz audio), a periodic Hann window, a 512-point FFT, a
40-band mel filterbank (HTK mel scale, as ``tf.signal.linear_to_mel_weight_matrix``), the
log, and a DCT-II keeping the first coefficients (MFCCs, as
``tf.signal.mfccs_from_log_mel_spectrograms``). :func:`reference_features` computes the same
with ``tf.signal`` so the NumPy version can be checked against it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

LOG_OFFSET = 1e-6


@dataclass(frozen=True)
class FrontEndConfig:
    """Front-end parameters (defaults: 49 x 10 MFCCs per second, as Hello Edge's DS-CNN).

    Attributes
    ----------
    sample_rate : int
        Audio rate in Hz.
    frame_length, frame_step : int
        Window and hop in samples (480 = 30 ms, 320 = 20 ms at 16 kHz).
    fft_length : int
        FFT size (a power of two at least ``frame_length``).
    num_mel_bins : int
        Mel bands.
    lower_hz, upper_hz : float
        The filterbank's edges.
    num_mfcc : int
        DCT coefficients kept; 0 returns the log-mel spectrogram instead.
    clip_samples : int
        Samples in one classifier input (one second).
    """

    sample_rate: int = 16000
    frame_length: int = 480
    frame_step: int = 320
    fft_length: int = 512
    num_mel_bins: int = 40
    lower_hz: float = 20.0
    upper_hz: float = 7600.0
    num_mfcc: int = 10
    clip_samples: int = 16000

    def __post_init__(self) -> None:
        if self.fft_length < self.frame_length:
            raise ValueError(
                f"fft_length={self.fft_length} must be at least frame_length={self.frame_length}."
            )
        if not 0 <= self.num_mfcc <= self.num_mel_bins:
            raise ValueError(f"num_mfcc={self.num_mfcc} must be between 0 and num_mel_bins.")
        if not 0 <= self.lower_hz < self.upper_hz <= self.sample_rate / 2:
            raise ValueError(
                f"need 0 <= lower_hz < upper_hz <= sample_rate/2; got {self.lower_hz}, {self.upper_hz}."
            )

    @property
    def num_frames(self) -> int:
        """Frames in one clip: ``1 + (clip_samples - frame_length) // frame_step``."""
        return 1 + (self.clip_samples - self.frame_length) // self.frame_step

    @property
    def num_features(self) -> int:
        """Values per frame."""
        return self.num_mfcc or self.num_mel_bins

    @property
    def shape(self) -> tuple[int, int]:
        """One clip's features: (frames, values per frame)."""
        return (self.num_frames, self.num_features)


DEFAULT_FRONTEND = FrontEndConfig()


def frame_signal(audio: np.ndarray, frame_length: int, frame_step: int) -> np.ndarray:
    """Cut ``audio`` (..., samples) into overlapping frames (..., frames, frame_length)."""
    audio = np.asarray(audio, dtype=np.float32)
    n = audio.shape[-1]
    if n < frame_length:
        raise ValueError(f"audio has {n} samples; need at least frame_length={frame_length}.")
    count = 1 + (n - frame_length) // frame_step
    index = np.arange(frame_length)[None, :] + frame_step * np.arange(count)[:, None]
    return audio[..., index]


def hann_window(length: int) -> np.ndarray:
    """Periodic Hann window: ``0.5 - 0.5 cos(2 pi n / N)``, n = 0..N-1."""
    n = np.arange(length)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)).astype(np.float32)


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """HTK mel scale: ``1127 ln(1 + f / 700)``."""
    return 1127.0 * np.log1p(np.asarray(hz, dtype=np.float64) / 700.0)


def mel_filterbank(
    num_mel_bins: int, num_spectrogram_bins: int, sample_rate: int, lower_hz: float, upper_hz: float
) -> np.ndarray:
    """Triangular mel filters, (num_spectrogram_bins, num_mel_bins), as TensorFlow builds them.

    Band ``m`` rises linearly in mel from edge ``m`` to centre ``m + 1`` and falls to edge
    ``m + 2``, with ``num_mel_bins + 2`` edges equally spaced in mel between ``lower_hz`` and
    ``upper_hz``; the DC bin gets no weight.
    """
    freqs = np.linspace(0.0, sample_rate / 2.0, num_spectrogram_bins)[1:]
    mel = hz_to_mel(freqs)[:, None]
    edges = np.linspace(hz_to_mel(lower_hz), hz_to_mel(upper_hz), num_mel_bins + 2)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (mel - lower) / (centre - lower)
    falling = (upper - mel) / (upper - centre)
    weights = np.maximum(0.0, np.minimum(rising, falling))
    return np.pad(weights, [[1, 0], [0, 0]]).astype(np.float32)


def dct_matrix(num_mel_bins: int, num_mfcc: int) -> np.ndarray:
    """DCT-II basis (num_mel_bins, num_mfcc) scaled as ``tf.signal.mfccs_from_log_mel_spectrograms``.

    ``c_k = sqrt(2 / M) * sum_m x_m cos(pi k (m + 1/2) / M)`` (TensorFlow's unnormalised DCT-II
    times ``1 / sqrt(2 M)``).
    """
    m = np.arange(num_mel_bins)[:, None]
    k = np.arange(num_mfcc)[None, :]
    return (np.sqrt(2.0 / num_mel_bins) * np.cos(np.pi * k * (m + 0.5) / num_mel_bins)).astype(
        np.float32
    )


def power_spectrum(audio: np.ndarray, config: FrontEndConfig = DEFAULT_FRONTEND) -> np.ndarray:
    """Magnitude spectrum of each windowed frame: (..., frames, fft_length // 2 + 1)."""
    frames = frame_signal(audio, config.frame_length, config.frame_step)
    windowed = frames * hann_window(config.frame_length)
    return np.abs(np.fft.rfft(windowed, n=config.fft_length, axis=-1)).astype(np.float32)


def compute_features(audio: np.ndarray, config: FrontEndConfig = DEFAULT_FRONTEND) -> np.ndarray:
    """MFCCs (or log-mel energies when ``num_mfcc == 0``) of ``audio`` (..., samples).

    Returns (..., frames, num_features) float32: frame, window, FFT magnitude, mel
    filterbank, ``log(x + 1e-6)``, DCT-II.

    Examples
    --------
    >>> compute_features(np.zeros(16000, np.float32)).shape
    (49, 10)
    """
    spectrum = power_spectrum(audio, config)
    bank = mel_filterbank(
        config.num_mel_bins,
        config.fft_length // 2 + 1,
        config.sample_rate,
        config.lower_hz,
        config.upper_hz,
    )
    log_mel = np.log(spectrum @ bank + LOG_OFFSET)
    if config.num_mfcc == 0:
        return log_mel.astype(np.float32)
    return (log_mel @ dct_matrix(config.num_mel_bins, config.num_mfcc)).astype(np.float32)


def reference_features(audio: np.ndarray, config: FrontEndConfig = DEFAULT_FRONTEND) -> np.ndarray:
    """The same features computed by ``tf.signal`` (the reference the NumPy version is checked with)."""
    import tensorflow as tf

    signal = tf.constant(np.asarray(audio, np.float32))
    stft = tf.signal.stft(
        signal,
        frame_length=config.frame_length,
        frame_step=config.frame_step,
        fft_length=config.fft_length,
        window_fn=tf.signal.hann_window,
    )
    bank = tf.signal.linear_to_mel_weight_matrix(
        config.num_mel_bins,
        config.fft_length // 2 + 1,
        config.sample_rate,
        config.lower_hz,
        config.upper_hz,
    )
    log_mel = tf.math.log(tf.tensordot(tf.abs(stft), bank, 1) + LOG_OFFSET)
    if config.num_mfcc == 0:
        return log_mel.numpy()
    return tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[..., : config.num_mfcc].numpy()


@dataclass(frozen=True)
class FrontEndCost:
    """Arithmetic and memory of the front end for one frame and per second of audio."""

    multiplies_per_frame: int
    frames_per_second: float
    state_bytes: int

    @property
    def multiplies_per_second(self) -> float:
        return self.multiplies_per_frame * self.frames_per_second


def frontend_cost(config: FrontEndConfig = DEFAULT_FRONTEND) -> FrontEndCost:
    """Count the front end's real multiplies per frame (FFT as ``2 N log2 N``) and its buffers.

    Window: ``frame_length``; real FFT: about ``2 N log2 N`` for N = fft_length (a complex FFT of
    N/2 points, 4 real multiplies per butterfly); magnitude: 2 per bin; mel: the filterbank's
    non-zero weights; log: one per band; DCT: ``num_mel_bins x num_mfcc``. Memory: the float32
    frame buffer, the spectrum, the non-zero filter weights and the DCT table.
    """
    bins = config.fft_length // 2 + 1
    bank = mel_filterbank(
        config.num_mel_bins, bins, config.sample_rate, config.lower_hz, config.upper_hz
    )
    nonzero = int(np.count_nonzero(bank))
    n = config.fft_length
    fft = int(2 * n * np.log2(n))
    mults = config.frame_length + fft + 2 * bins + nonzero + config.num_mel_bins
    mults += config.num_mel_bins * config.num_mfcc
    state = 4 * (config.fft_length + 2 * bins + nonzero + config.num_mel_bins * config.num_mfcc)
    return FrontEndCost(mults, config.sample_rate / config.frame_step, state)


def quantize_features(features: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Features to the model's int8 input: ``clip(round(x / scale) + zero_point, -128, 127)``."""
    if not scale > 0:
        raise ValueError(f"scale={scale!r}: must be positive (read it from the model's input).")
    q = np.round(np.asarray(features, np.float32) / scale) + int(zero_point)
    return np.clip(q, -128, 127).astype(np.int8)
