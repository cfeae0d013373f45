"""The synthetic keyword data set: eSpeak NG utterances, augmented, split by voice, cached.

Training and test voices never overlap: a *voice* is an accent plus a variant, and the
test set uses variants (and an accent) that no training clip used, so the test accuracy
says how the model carries to speakers it never heard, within what eSpeak can produce.

:func:`load_folder` reads recordings laid out as ``DIR/<word>/*.wav`` (Speech Commands,
or a learner's own), the opt-in path to real speech.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from tinyml_course.kws.audio import SAMPLE_RATE, AudioReadError, read_wav
from tinyml_course.kws.frontend import DEFAULT_FRONTEND, FrontEndConfig, compute_features
from tinyml_course.kws.synth import ENGLISH_ACCENTS, OTHER_ACCENTS, Voice, list_variants, synthesize

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
"""The ten command words of Speech Commands' 12-class task (and of MLPerf Tiny's KWS)."""

SILENCE = "silence"
UNKNOWN = "unknown"

UNKNOWN_WORDS = (
    "bed", "bird", "cat", "dog", "happy", "house", "marvin", "sheila", "tree", "wow",
    "zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine",
    "learn", "follow", "forward", "backward", "visual",
)  # fmt: skip
"""Other words: Speech Commands' own auxiliary words (its "unknown" class)."""

HELDOUT_ACCENTS = ("en-029", "nl")
"""Accents used only for testing."""


def labels_for(keywords: Sequence[str] = KEYWORDS) -> tuple[str, ...]:
    """Class names in index order: ``silence``, ``unknown``, then the keywords."""
    return (SILENCE, UNKNOWN, *keywords)


def split_voices(seed: int = 0, heldout_fraction: float = 0.25) -> tuple[list[Voice], list[Voice]]:
    """Training and held-out voices: disjoint variants, and held-out accents only in the test.

    Returns
    -------
    train, test : list of Voice
        ``train``: training accents x training variants. ``test``: all accents x held-out
        variants (so no test voice, and no test variant, was ever heard in training).
    """
    if not 0 < heldout_fraction < 1:
        raise ValueError(f"heldout_fraction={heldout_fraction!r}: must be between 0 and 1.")
    variants = ["", *list_variants()]
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(variants))
    n_test = max(1, int(round(heldout_fraction * len(variants))))
    test_variants = sorted(variants[i] for i in order[:n_test])
    train_variants = sorted(variants[i] for i in order[n_test:])
    accents = [*ENGLISH_ACCENTS, *OTHER_ACCENTS]
    train_accents = [a for a in accents if a not in HELDOUT_ACCENTS]
    train = [Voice(a, v) for a in train_accents for v in train_variants]
    test = [Voice(a, v) for a in accents for v in test_variants]
    return train, test


# ---------------------------------------------------------------------------- augmentation
def coloured_noise(n: int, rng: np.random.Generator, colour: str = "white") -> np.ndarray:
    """Noise with a 1/f^a spectrum: white (a=0), pink (a=1) or brown (a=2), unit RMS."""
    exponents = {"white": 0.0, "pink": 1.0, "brown": 2.0}
    if colour not in exponents:
        raise ValueError(f"colour={colour!r}: choose one of {sorted(exponents)}.")
    spectrum = np.fft.rfft(rng.normal(size=n))
    freqs = np.fft.rfftfreq(n)
    freqs[0] = freqs[1]
    spectrum /= freqs ** (exponents[colour] / 2.0)
    noise = np.fft.irfft(spectrum, n)
    return (noise / (np.sqrt(np.mean(noise**2)) + 1e-12)).astype(np.float32)


def room_response(
    rng: np.random.Generator, rt60: float, sample_rate: int = SAMPLE_RATE
) -> np.ndarray:
    """A simple room impulse response: a direct path plus exponentially decaying noise."""
    n = max(1, int(rt60 * sample_rate))
    t = np.arange(n) / sample_rate
    tail = rng.normal(size=n) * np.exp(-6.9 * t / rt60) * 0.3
    tail[0] = 1.0
    return (tail / np.sqrt(np.sum(tail**2))).astype(np.float32)


def mix_at_snr(signal: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``signal + g * noise`` with g chosen so the signal-to-noise ratio is ``snr_db``."""
    p_signal = np.mean(signal**2) + 1e-12
    p_noise = np.mean(noise**2) + 1e-12
    gain = np.sqrt(p_signal / (p_noise * 10 ** (snr_db / 10.0)))
    return (signal + gain * noise).astype(np.float32)


@dataclass(frozen=True)
class Augmentation:
    """How clips are varied: time shift, level, room, background noise and its SNR."""

    max_shift: float = 0.15
    room_probability: float = 0.4
    rt60: tuple[float, float] = (0.1, 0.5)
    noise_probability: float = 0.8
    snr_db: tuple[float, ...] = (30.0, 20.0, 15.0, 10.0)
    colours: tuple[str, ...] = ("white", "pink", "brown", "babble")
    level: tuple[float, float] = (0.1, 0.9)


def background(
    n: int, rng: np.random.Generator, colour: str, babble_pool: Sequence[np.ndarray]
) -> np.ndarray:
    """Unit-RMS background: coloured noise, or babble (several other utterances summed)."""
    if colour != "babble":
        return coloured_noise(n, rng, colour)
    out = np.zeros(n, np.float32)
    for _ in range(int(rng.integers(3, 7))):
        words = babble_pool[int(rng.integers(len(babble_pool)))]
        start = int(rng.integers(-len(words) + 1, n))
        lo, hi = max(0, start), min(n, start + len(words))
        if hi > lo:
            out[lo:hi] += words[lo - start : hi - start] * rng.uniform(0.3, 1.0)
    rms = np.sqrt(np.mean(out**2))
    return out / rms if rms > 0 else coloured_noise(n, rng, "pink")


def place(utterance: np.ndarray, n: int, rng: np.random.Generator, max_shift: float) -> np.ndarray:
    """Centre ``utterance`` in ``n`` samples, shifted by up to ``max_shift`` of a clip."""
    clip = np.zeros(n, np.float32)
    u = utterance[:n]
    start = (n - len(u)) // 2 + int(rng.uniform(-max_shift, max_shift) * n)
    start = min(max(start, 0), n - len(u))
    clip[start : start + len(u)] = u
    return clip


def augment(
    utterance: np.ndarray | None,
    rng: np.random.Generator,
    babble_pool: Sequence[np.ndarray],
    aug: Augmentation = Augmentation(),
    n: int = SAMPLE_RATE,
) -> np.ndarray:
    """One augmented one-second clip; ``utterance=None`` makes a silence (background only) clip."""
    if utterance is None:  # background noise only (no babble: that would be speech)
        colours = [c for c in aug.colours if c != "babble"] or ["pink"]
        colour = colours[int(rng.integers(len(colours)))]
        level = 10 ** rng.uniform(-4, -1.3)
        return (background(n, rng, colour, babble_pool) * level * (rng.random() < 0.9)).astype(
            np.float32
        )
    speech = utterance / (np.max(np.abs(utterance)) + 1e-9)
    if rng.random() < aug.room_probability:
        speech = np.convolve(speech, room_response(rng, rng.uniform(*aug.rt60)))[
            : len(speech) + 2000
        ]
    clip = place(speech, n, rng, aug.max_shift)
    if rng.random() < aug.noise_probability:
        colour = aug.colours[int(rng.integers(len(aug.colours)))]
        snr = aug.snr_db[int(rng.integers(len(aug.snr_db)))]
        clip = mix_at_snr(clip, background(n, rng, colour, babble_pool), snr)
    peak = np.max(np.abs(clip)) + 1e-9
    return (clip / peak * rng.uniform(*aug.level)).astype(np.float32)


# ---------------------------------------------------------------------------- the data set
@dataclass(frozen=True)
class DatasetSpec:
    """What to synthesise; its hash names the cache file."""

    keywords: tuple[str, ...] = KEYWORDS
    unknown_words: tuple[str, ...] = UNKNOWN_WORDS
    train_per_keyword: int = 500
    test_per_keyword: int = 100
    unknown_fraction: float = 2.0
    silence_fraction: float = 1.0
    seed: int = 0
    frontend: FrontEndConfig = DEFAULT_FRONTEND
    augmentation: Augmentation = field(default_factory=Augmentation)

    def key(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:12]


@dataclass
class KeywordDataset:
    """Features and labels of the train and held-out-voice test splits."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    labels: tuple[str, ...]
    train_voices: list[str]
    test_voices: list[str]
    spec: DatasetSpec
    seconds: float = 0.0
    cached: bool = False

    def __repr__(self) -> str:
        return (
            f"KeywordDataset({len(self.labels)} classes, {len(self.x_train)} train clips from "
            f"{len(self.train_voices)} voices, {len(self.x_test)} test clips from "
            f"{len(self.test_voices)} held-out voices, features {self.x_train.shape[1:]})"
        )


def _random_voice_utterance(
    text: str, voices: Sequence[Voice], rng: np.random.Generator
) -> np.ndarray:
    voice = voices[int(rng.integers(len(voices)))]
    return synthesize(
        text,
        voice,
        rate=int(rng.integers(110, 230)),
        pitch=int(rng.integers(20, 80)),
        pitch_range=int(rng.integers(10, 90)),
    )


def synthesize_split(
    keywords: Sequence[str],
    unknown_words: Sequence[str],
    voices: Sequence[Voice],
    per_keyword: int,
    spec: DatasetSpec,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Augmented one-second clips (N, samples) and label indices for one split."""
    babble = [_random_voice_utterance(str(w), voices, rng) for w in rng.choice(unknown_words, 40)]
    n_unknown = int(round(spec.unknown_fraction * per_keyword))
    n_silence = int(round(spec.silence_fraction * per_keyword))
    plan: list[tuple[int, str | None]] = [(0, None)] * n_silence
    plan += [(1, str(w)) for w in rng.choice(unknown_words, n_unknown)]
    plan += [(2 + k, word) for k, word in enumerate(keywords) for _ in range(per_keyword)]
    n = spec.frontend.clip_samples
    clips = np.zeros((len(plan), n), np.float32)
    labels = np.zeros(len(plan), np.int64)
    for i, (label, text) in enumerate(plan):
        utterance = None if text is None else _random_voice_utterance(text, voices, rng)
        clips[i] = augment(utterance, rng, babble, spec.augmentation, n)
        labels[i] = label
    return clips, labels


def cache_folder() -> Path:
    """``results/kws`` when writable, else a folder in the system's temporary directory."""
    import os
    import tempfile

    try:
        from tinyml_course.paths import output_path

        folder = output_path("kws", "x").parent
        if os.access(folder, os.W_OK):
            return folder
    except OSError:
        pass
    folder = Path(tempfile.gettempdir()) / "tinyml-course-kws"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _cache_file(spec: DatasetSpec) -> Path:
    return cache_folder() / f"dataset-{spec.key()}.npz"


def load_keyword_dataset(
    spec: DatasetSpec | None = None, *, rebuild: bool = False
) -> KeywordDataset:
    """The synthetic keyword set, built once and cached under ``results/kws/``.

    Parameters
    ----------
    spec : DatasetSpec
        Words, sizes, seed, front end and augmentation (default: 10 keywords, 400
        training clips each, plus unknown words and silence).
    rebuild : bool
        Synthesise again even if the cache exists.
    """
    spec = spec or DatasetSpec()
    if spec.train_per_keyword < 1 or spec.test_per_keyword < 1:
        raise ValueError("train_per_keyword and test_per_keyword must be at least 1.")
    labels = labels_for(spec.keywords)
    path = _cache_file(spec)
    if path.exists() and not rebuild:
        with np.load(path) as f:
            return KeywordDataset(
                f["x_train"], f["y_train"], f["x_test"], f["y_test"], labels,
                [str(v) for v in f["train_voices"]], [str(v) for v in f["test_voices"]],
                spec, float(f["seconds"]), cached=True,
            )  # fmt: skip
    start = time.perf_counter()
    train_voices, test_voices = split_voices(spec.seed)
    rng = np.random.default_rng(spec.seed)
    a_train, y_train = synthesize_split(
        spec.keywords, spec.unknown_words, train_voices, spec.train_per_keyword, spec, rng
    )
    a_test, y_test = synthesize_split(
        spec.keywords, spec.unknown_words, test_voices, spec.test_per_keyword, spec, rng
    )
    x_train = compute_features(a_train, spec.frontend)
    x_test = compute_features(a_test, spec.frontend)
    seconds = time.perf_counter() - start
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(
        tmp, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test,
        train_voices=np.array([v.name for v in train_voices]),
        test_voices=np.array([v.name for v in test_voices]), seconds=seconds,
    )  # fmt: skip
    tmp.replace(path)
    return KeywordDataset(
        x_train, y_train, x_test, y_test, labels,
        [v.name for v in train_voices], [v.name for v in test_voices], spec, seconds,
    )  # fmt: skip


# ---------------------------------------------------------------------------- real recordings
def fit_clip(audio: np.ndarray, n: int = SAMPLE_RATE) -> np.ndarray:
    """Pad (centred) or centre-crop audio to exactly ``n`` samples."""
    audio = np.asarray(audio, np.float32)
    if len(audio) >= n:
        start = (len(audio) - n) // 2
        return audio[start : start + n]
    out = np.zeros(n, np.float32)
    start = (n - len(audio)) // 2
    out[start : start + len(audio)] = audio
    return out


def load_folder(
    folder: str | Path,
    labels: Sequence[str] = labels_for(KEYWORDS),
    *,
    frontend: FrontEndConfig = DEFAULT_FRONTEND,
    max_per_word: int | None = None,
) -> tuple[np.ndarray, np.ndarray, list[Path]]:
    """Read ``DIR/<word>/*.wav`` (Speech Commands' layout, or your own recordings) as features.

    Words that are not in ``labels`` become ``unknown``; a ``_background_noise_`` folder is
    skipped; ``silence`` is taken from a ``silence`` folder if there is one.

    Returns
    -------
    x, y, paths : features (N, frames, values), label indices, and the files read.

    Raises
    ------
    FileNotFoundError
        If ``folder`` does not exist or holds no WAV files in word folders.
    AudioReadError
        If a WAV file cannot be read (the message names it).
    """
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(
            f"folder={str(folder)!r}: no such folder (expected DIR/<word>/*.wav)."
        )
    if max_per_word is not None and max_per_word < 1:
        raise ValueError(f"max_per_word={max_per_word!r}: must be at least 1 or None.")
    index = {name: i for i, name in enumerate(labels)}
    clips, ys, paths = [], [], []
    for word_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        if word_dir.name.startswith("_"):
            continue
        label = index.get(word_dir.name, index.get(UNKNOWN))
        if label is None:
            continue
        files = sorted(word_dir.glob("*.wav"))[:max_per_word]
        for file in files:
            clips.append(
                fit_clip(read_wav(file, sample_rate=frontend.sample_rate), frontend.clip_samples)
            )
            ys.append(label)
            paths.append(file)
    if not clips:
        raise FileNotFoundError(f"folder={str(folder)!r}: no WAV files found in DIR/<word>/*.wav.")
    x = compute_features(np.stack(clips), frontend)
    return x, np.array(ys, np.int64), paths


__all__ = [
    "KEYWORDS", "SILENCE", "UNKNOWN", "UNKNOWN_WORDS", "Augmentation", "AudioReadError",
    "DatasetSpec", "KeywordDataset", "augment", "coloured_noise", "fit_clip", "labels_for",
    "load_folder", "load_keyword_dataset", "mix_at_snr", "room_response", "split_voices",
]  # fmt: skip
