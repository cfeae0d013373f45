"""Speech synthesis with eSpeak NG, called through ``ctypes``.

The engine comes from the ``espeakng-loader`` wheel (PyPI, Linux, macOS and Windows), which
bundles ``libespeak-ng`` and its data; nothing is downloaded at run time. One process holds
one engine, so :func:`synthesize` is serialised with a lock. The engine keeps state between
utterances (its filters, pitch jitter), so the same call twice gives audio of the same length
and sound but not bit-identical samples: data sets are seeded in their choices and cached.

A *voice* is a language (its accent reading English text) plus a variant (eSpeak's
``+m3``, ``+f2``, ... timbres): ``Voice("en-us", "f3")``.
"""

from __future__ import annotations

import ctypes
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

ENGINE_RATE = 22050
"""Sample rate eSpeak NG synthesises at (Hz)."""

_AUDIO_OUTPUT_SYNCHRONOUS = 2
_RATE, _VOLUME, _PITCH, _RANGE = 1, 2, 3, 4
_CHARS_UTF8 = 1
_LOCK = threading.Lock()

ENGLISH_ACCENTS = (
    "en-us",
    "en",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-029",
)
"""eSpeak's English languages (accents)."""

OTHER_ACCENTS = ("de", "nl", "sv", "es", "fr", "it", "pt", "pl", "hi", "af")
"""Other languages whose rules read the English words with their own accent."""


class EngineUnavailable(RuntimeError):
    """eSpeak NG could not be loaded."""


@dataclass(frozen=True, order=True)
class Voice:
    """An eSpeak NG language plus a voice variant, e.g. ``Voice("en-us", "f3")``."""

    language: str
    variant: str = ""

    @property
    def name(self) -> str:
        """The name eSpeak takes: ``"en-us+f3"``."""
        return f"{self.language}+{self.variant}" if self.variant else self.language

    def __str__(self) -> str:
        return self.name


class _Engine:
    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as err:  # pragma: no cover - a dependency of the course
            raise EngineUnavailable(
                "eSpeak NG is missing: pip install espeakng-loader (it bundles the library and "
                "its voices for Linux, macOS and Windows)."
            ) from err
        try:
            self.lib = ctypes.cdll.LoadLibrary(espeakng_loader.get_library_path())
        except OSError as err:  # pragma: no cover
            raise EngineUnavailable(f"could not load libespeak-ng: {err}") from err
        data = str(espeakng_loader.get_data_path()).encode()
        self.data_path = Path(espeakng_loader.get_data_path())
        lib = self.lib
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, data, 0)
        if rate <= 0:  # pragma: no cover
            raise EngineUnavailable(f"espeak_Initialize failed ({rate}); data folder {data!r}")
        self.rate = rate
        self.chunks: list[np.ndarray] = []
        callback_type = ctypes.CFUNCTYPE(
            ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p
        )

        def _collect(wav, count, events):  # noqa: ANN001 - ctypes callback
            if count > 0 and wav:
                self.chunks.append(np.ctypeslib.as_array(wav, shape=(count,)).copy())
            return 0

        self._callback = callback_type(_collect)  # keep a reference
        lib.espeak_SetSynthCallback(self._callback)
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]

    def say(
        self, text: str, voice: Voice, *, rate: int, pitch: int, pitch_range: int
    ) -> np.ndarray:
        if self.lib.espeak_SetVoiceByName(voice.name.encode()) != 0:
            raise ValueError(
                f"voice={voice.name!r}: eSpeak NG has no such voice; see list_variants()"
            )
        self.lib.espeak_SetParameter(_RATE, int(rate), 0)
        self.lib.espeak_SetParameter(_PITCH, int(pitch), 0)
        self.lib.espeak_SetParameter(_RANGE, int(pitch_range), 0)
        self.lib.espeak_SetParameter(_VOLUME, 100, 0)
        self.chunks = []
        encoded = text.encode() + b"\0"
        self.lib.espeak_Synth(encoded, len(encoded), 0, 0, 0, _CHARS_UTF8, None, None)
        self.lib.espeak_Synchronize()
        if not self.chunks:
            return np.zeros(0, np.float32)
        return np.concatenate(self.chunks).astype(np.float32) / 32768.0


@lru_cache(maxsize=1)
def _engine() -> _Engine:
    return _Engine()


def engine_available() -> bool:
    """True when eSpeak NG loads on this machine."""
    try:
        _engine()
    except EngineUnavailable:
        return False
    return True


def list_variants() -> list[str]:
    """Names of eSpeak NG's voice variants (``m1``, ``f3``, ``klatt``, ...), sorted."""
    folder = _engine().data_path / "voices" / "!v"
    return sorted(p.name for p in folder.iterdir() if p.is_file())


def synthesize(
    text: str,
    voice: Voice,
    *,
    rate: int = 170,
    pitch: int = 50,
    pitch_range: int = 50,
    sample_rate: int = 16000,
) -> np.ndarray:
    """Speak ``text`` with eSpeak NG and return float32 audio in [-1, 1] at ``sample_rate``.

    Parameters
    ----------
    text : str
        What to say (a word or a sentence).
    voice : Voice
        Language (accent) and variant.
    rate : int
        Speed in words per minute (80 to 450).
    pitch, pitch_range : int
        Base pitch and its range, 0 to 100.
    sample_rate : int
        Output rate; eSpeak's 22,050 Hz audio is resampled (polyphase filter).

    Examples
    --------
    >>> audio = synthesize("yes", Voice("en-us", "f2"))  # doctest: +SKIP
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text={text!r}: give a non-empty string to speak.")
    if not 80 <= rate <= 450:
        raise ValueError(f"rate={rate!r}: words per minute must be between 80 and 450.")
    for name, value in (("pitch", pitch), ("pitch_range", pitch_range)):
        if not 0 <= value <= 100:
            raise ValueError(f"{name}={value!r}: must be between 0 and 100.")
    with _LOCK:
        engine = _engine()
        audio = engine.say(text, voice, rate=rate, pitch=pitch, pitch_range=pitch_range)
    from tinyml_course.kws.audio import resample

    return resample(audio, engine.rate, sample_rate)
