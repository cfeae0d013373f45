"""Streaming keyword detection: sliding windows, posterior averaging, suppression.

The decision rule is micro_speech's ``RecognizeCommands``: average each class's score over
the last ``average_window`` inferences, take the best keyword (not silence or unknown),
report it when its averaged score reaches ``threshold`` and no detection happened in the
last ``suppression`` seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tinyml_course.kws.data import SILENCE, UNKNOWN, background
from tinyml_course.kws.frontend import DEFAULT_FRONTEND, FrontEndConfig, compute_features
from tinyml_course.kws.synth import Voice, synthesize


@dataclass(frozen=True)
class Event:
    """A word said in a stream: its start and end (seconds) and the word."""

    start: float
    end: float
    word: str


@dataclass(frozen=True)
class Detection:
    """A keyword the recogniser reported: when (seconds, end of the window), what, how sure."""

    time: float
    keyword: str
    score: float


@dataclass
class Stream:
    """A synthetic recording and the keywords said in it (``said``, in time order)."""

    audio: np.ndarray
    said: list[Event]
    sample_rate: int

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate


def make_stream(
    seconds: float,
    keywords: Sequence[str],
    other_words: Sequence[str],
    voices: Sequence[Voice],
    *,
    keyword_fraction: float = 0.5,
    gap: tuple[float, float] = (1.2, 2.5),
    snr_db: float = 15.0,
    seed: int = 0,
    sample_rate: int = 16000,
) -> Stream:
    """Synthesise a continuous stream: words at random gaps over babble and coloured noise.

    Parameters
    ----------
    seconds : float
        Length of the stream.
    keywords, other_words : sequence of str
        A word is a keyword with probability ``keyword_fraction``, else another word (so
        ``keyword_fraction=0`` makes keyword-free background audio for false accepts).
    voices : sequence of Voice
        Voices to speak with (use held-out voices for an honest test).
    gap : (float, float)
        Silence between words, seconds (uniform).
    snr_db : float
        Speech-to-background ratio.
    """
    if seconds <= 0:
        raise ValueError(f"seconds={seconds!r}: must be positive.")
    if not 0 <= keyword_fraction <= 1:
        raise ValueError(f"keyword_fraction={keyword_fraction!r}: must be in [0, 1].")
    if not voices:
        raise ValueError("voices: give at least one Voice.")
    rng = np.random.default_rng(seed)
    n = int(seconds * sample_rate)
    speech = np.zeros(n, np.float32)
    events: list[Event] = []
    t = rng.uniform(*gap)
    while True:
        is_keyword = rng.random() < keyword_fraction and len(keywords) > 0
        word = str(rng.choice(keywords if is_keyword else other_words))
        voice = voices[int(rng.integers(len(voices)))]
        audio = synthesize(
            word, voice, rate=int(rng.integers(120, 220)), pitch=int(rng.integers(25, 75)),
            sample_rate=sample_rate,
        )  # fmt: skip
        audio = audio / (np.max(np.abs(audio)) + 1e-9) * rng.uniform(0.3, 0.9)
        start = int(t * sample_rate)
        if start + len(audio) > n:
            break
        speech[start : start + len(audio)] += audio
        if is_keyword:
            events.append(Event(t, t + len(audio) / sample_rate, word))
        t += len(audio) / sample_rate + rng.uniform(*gap)
    babble_pool = [
        synthesize(str(w), voices[int(rng.integers(len(voices)))], sample_rate=sample_rate)
        for w in rng.choice(other_words, 30)
    ]
    noise = np.zeros(n, np.float32)
    chunk = 10 * sample_rate
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        colour = ("pink", "brown", "white", "babble")[int(rng.integers(4))]
        noise[lo:hi] = background(hi - lo, rng, colour, babble_pool)
    level = np.sqrt(np.mean(speech[speech != 0] ** 2)) if np.any(speech) else 0.1
    noise *= level / 10 ** (snr_db / 20.0)
    return Stream((speech + noise).astype(np.float32), events, sample_rate)


@dataclass
class Posteriors:
    """Class scores of sliding one-second windows: ``scores[i]`` ends at ``times[i]`` seconds."""

    times: np.ndarray
    scores: np.ndarray
    labels: tuple[str, ...]


def sliding_posteriors(
    model_content: bytes,
    labels: Sequence[str],
    audio: np.ndarray,
    *,
    hop_frames: int = 2,
    config: FrontEndConfig = DEFAULT_FRONTEND,
) -> Posteriors:
    """Run the int8 model on every one-second window, advancing ``hop_frames`` feature frames.

    The features of the whole stream are computed once (the front end is causal: a window's
    features are the last ``num_frames`` frames), as a device keeps a ring buffer of frames.
    """
    from tinyml_course.tflite import TFLiteModel

    if hop_frames < 1:
        raise ValueError(f"hop_frames={hop_frames!r}: must be at least 1.")
    audio = np.asarray(audio, np.float32)
    if len(audio) < config.clip_samples:
        audio = np.pad(audio, (0, config.clip_samples - len(audio)))
    frames = compute_features(audio, config)
    model = TFLiteModel(model_content)
    starts = np.arange(0, len(frames) - config.num_frames + 1, hop_frames)
    windows = np.stack([frames[s : s + config.num_frames] for s in starts])[..., None]
    scores = np.concatenate(
        [np.asarray(model.predict(windows[i : i + 512])) for i in range(0, len(windows), 512)]
    )
    times = (starts * config.frame_step + config.clip_samples) / config.sample_rate
    if scores.shape[1] != len(labels):
        raise ValueError(
            f"the model has {scores.shape[1]} outputs but {len(labels)} labels were given."
        )
    return Posteriors(times.astype(np.float64), scores.astype(np.float32), tuple(labels))


def recognize(
    posteriors: Posteriors,
    *,
    threshold: float = 0.7,
    average_window: int = 10,
    suppression: float = 1.0,
) -> list[Detection]:
    """micro_speech's decision rule: average, pick the best keyword, threshold, suppress.

    Parameters
    ----------
    threshold : float
        Minimum averaged score of a keyword to report it.
    average_window : int
        Inferences averaged (a moving mean over the last ones).
    suppression : float
        Seconds after a detection during which no other is reported.
    """
    if not 0 <= threshold <= 1:
        raise ValueError(f"threshold={threshold!r}: must be in [0, 1].")
    if average_window < 1:
        raise ValueError(f"average_window={average_window!r}: must be at least 1.")
    scores = posteriors.scores
    cumulative = np.cumsum(np.vstack([np.zeros((1, scores.shape[1])), scores]), axis=0)
    lo = np.maximum(0, np.arange(1, len(scores) + 1) - average_window)
    counts = np.arange(1, len(scores) + 1) - lo
    averaged = (cumulative[1:] - cumulative[lo]) / counts[:, None]
    keyword_ids = [i for i, name in enumerate(posteriors.labels) if name not in (SILENCE, UNKNOWN)]
    detections: list[Detection] = []
    last = -np.inf
    for i, t in enumerate(posteriors.times):
        row = averaged[i, keyword_ids]
        best = int(np.argmax(row))
        score = float(row[best])
        if score >= threshold and t - last >= suppression:
            detections.append(Detection(float(t), posteriors.labels[keyword_ids[best]], score))
            last = t
    return detections


@dataclass(frozen=True)
class StreamScore:
    """How a recogniser did on a stream."""

    detection_rate: float
    false_accepts: int
    hits: int
    keywords: int
    hours: float

    @property
    def false_accepts_per_hour(self) -> float:
        return self.false_accepts / self.hours if self.hours > 0 else float("nan")


def score_detections(
    detections: Sequence[Detection],
    events: Sequence[Event],
    seconds: float,
    *,
    latency: float = 1.1,
) -> StreamScore:
    """Match detections to said keywords.

    A detection is a hit when it names a keyword that was said, the window ending between
    the word's end and ``latency`` seconds after it (each event matched once). Any other
    detection (a wrong word, a duplicate, or none said) is a false accept.
    """
    used = [False] * len(events)
    hits = false = 0
    for det in detections:
        match = None
        for j, ev in enumerate(events):
            if not used[j] and ev.word == det.keyword and ev.start < det.time <= ev.end + latency:
                match = j
                break
        if match is None:
            false += 1
        else:
            used[match] = True
            hits += 1
    rate = hits / len(events) if events else float("nan")
    return StreamScore(rate, false, hits, len(events), seconds / 3600.0)


def threshold_curve(
    keyword_posteriors: Posteriors,
    events: Sequence[Event],
    keyword_seconds: float,
    background_posteriors: Posteriors,
    background_seconds: float,
    thresholds: Sequence[float],
    **rule: float,
) -> list[tuple[float, float, float]]:
    """(threshold, detection rate, false accepts per hour) for each threshold.

    The detection rate comes from the keyword stream; false accepts count both streams'
    unmatched detections over their total duration.
    """
    rows = []
    for th in thresholds:
        s1 = score_detections(
            recognize(keyword_posteriors, threshold=th, **rule), events, keyword_seconds
        )
        s2 = score_detections(
            recognize(background_posteriors, threshold=th, **rule), [], background_seconds
        )
        fa = (s1.false_accepts + s2.false_accepts) / ((keyword_seconds + background_seconds) / 3600)
        rows.append((float(th), s1.detection_rate, fa))
    return rows
