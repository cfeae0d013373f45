"""``tinyml-course kws ...``: classify one-second clips, detect keywords in recordings.

Loaded by :mod:`tinyml_course.cli` through :func:`register`.

* ``kws classify FILE.wav... [--model FILE]``: one line per clip,
  ``PATH<TAB>LABEL<TAB>SCORE`` (a clip longer than a second is centre-cropped, a shorter one
  padded).
* ``kws detect FILE.wav... [--model FILE] [--threshold T]``: one line per detection,
  ``PATH<TAB>SECONDS<TAB>KEYWORD<TAB>SCORE``.
* ``kws keywords [--model FILE]``: the words the model knows, one per line.

The course's model is used by default (trained and cached first when there is none). WAV
files at any sample rate, mono or stereo, are resampled to 16 kHz and mixed down.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any


def _load(path: str | None) -> tuple[bytes, tuple[str, ...]] | None:
    """(model bytes, labels), or None after printing why not."""
    from tinyml_course.kws.model import default_model, default_model_path, load_labels

    if path is None:
        if not default_model_path().exists():
            print(
                "no trained keyword model cached yet: synthesising the data set and training it "
                "(this happens once, about two minutes)...",
                file=sys.stderr,
            )
        return default_model()
    from tinyml_course.tflite import TFLiteModel, read_tflite

    try:
        data = read_tflite(path)
    except ValueError as err:
        print(f"error: --model {err}", file=sys.stderr)
        return None
    file = Path(path)
    try:
        model = TFLiteModel(data)
        outputs = int(model.output.shape[-1])
        labels = load_labels(file, outputs)
    except ValueError as err:
        print(f"error: --model {path}: {err}", file=sys.stderr)
        return None
    return data, labels


def _read_each(paths: list[str], failed: list[str]) -> Iterator[tuple[str, Any]]:
    """Yield ``(path, audio)`` for each readable WAV, in order; print why the others are not
    and append them to ``failed``."""
    from tinyml_course.kws.audio import AudioReadError, read_wav

    for path in paths:
        try:
            audio = read_wav(path)
        except AudioReadError as err:
            print(f"error: {err}", file=sys.stderr)
            failed.append(path)
            continue
        yield path, audio


def _cmd_classify(args: argparse.Namespace) -> int:
    import numpy as np

    from tinyml_course.kws.data import fit_clip
    from tinyml_course.kws.frontend import DEFAULT_FRONTEND, compute_features
    from tinyml_course.kws.model import int8_predict

    loaded = _load(args.model)
    if loaded is None:
        return 2
    model, labels = loaded
    failed: list[str] = []
    for path, audio in _read_each(args.paths, failed):
        features = compute_features(fit_clip(audio, DEFAULT_FRONTEND.clip_samples))
        scores = int8_predict(model, features)[0]
        best = int(np.argmax(scores))
        print(f"{path}\t{labels[best]}\t{scores[best]:.3f}", flush=True)
    return 1 if failed else 0


def _cmd_detect(args: argparse.Namespace) -> int:
    from tinyml_course.kws.stream import recognize, sliding_posteriors

    if not 0 <= args.threshold <= 1:
        print(f"error: --threshold {args.threshold}: must be between 0 and 1", file=sys.stderr)
        return 2
    loaded = _load(args.model)
    if loaded is None:
        return 2
    model, labels = loaded
    failed: list[str] = []
    for path, audio in _read_each(args.paths, failed):
        posteriors = sliding_posteriors(model, labels, audio)
        for det in recognize(posteriors, threshold=args.threshold):
            print(f"{path}\t{det.time:.2f}\t{det.keyword}\t{det.score:.3f}", flush=True)
    return 1 if failed else 0


def _cmd_keywords(args: argparse.Namespace) -> int:
    loaded = _load(args.model)
    if loaded is None:
        return 2
    for label in loaded[1]:
        print(label)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``kws`` command group to the ``tinyml-course`` parser."""
    kws = subparsers.add_parser("kws", help="keyword spotting: classify clips, detect keywords")
    sub = kws.add_subparsers(dest="kws_command", required=True)
    model_help = "an int8 keyword .tflite (labels in FILE.labels.json; default: the course's)"

    p = sub.add_parser("classify", help="classify one-second WAV clips: PATH, LABEL, SCORE")
    p.add_argument(
        "paths", nargs="+", metavar="FILE.wav", help="WAV files (any rate, mono or stereo)"
    )
    p.add_argument("--model", help=model_help)
    p.set_defaults(func=_cmd_classify)

    p = sub.add_parser("detect", help="find keywords in recordings: PATH, SECONDS, KEYWORD, SCORE")
    p.add_argument(
        "paths", nargs="+", metavar="FILE.wav", help="WAV files (any rate, mono or stereo)"
    )
    p.add_argument("--model", help=model_help)
    p.add_argument("--threshold", type=float, default=0.7, help="averaged score to report (0-1)")
    p.set_defaults(func=_cmd_detect)

    p = sub.add_parser("keywords", help="list the words the model knows")
    p.add_argument("--model", help=model_help)
    p.set_defaults(func=_cmd_keywords)
