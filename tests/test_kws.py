"""Keyword spotting (notebook 09): synthesis, augmentation, front end vs tf.signal, WAV reading,
the folder reader, the streaming decision rule, the model and the ``kws`` commands."""

from __future__ import annotations

import wave

import numpy as np
import pytest

from tinyml_course.kws import data as kws_data
from tinyml_course.kws.audio import AudioReadError, read_wav, resample, write_wav
from tinyml_course.kws.frontend import (
    DEFAULT_FRONTEND,
    FrontEndConfig,
    compute_features,
    frontend_cost,
    mel_filterbank,
    quantize_features,
    reference_features,
)
from tinyml_course.kws.stream import (
    Detection,
    Event,
    Posteriors,
    make_stream,
    recognize,
    score_detections,
    sliding_posteriors,
)
from tinyml_course.kws.synth import Voice, synthesize

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

LABELS = ("silence", "unknown", "yes", "no")


# ---------------------------------------------------------------------------- synthesis
def test_synthesize_gives_16k_audio_of_stable_length() -> None:
    a = synthesize("yes", Voice("en-us", "f2"), rate=160, pitch=40)
    b = synthesize("yes", Voice("en-us", "f2"), rate=160, pitch=40)
    assert a.dtype == np.float32 and 3000 < len(a) < 16000
    assert len(a) == len(b)  # same words and timing (samples differ: the engine keeps state)
    assert 0.05 < np.max(np.abs(a)) <= 1.0
    slow = synthesize("yes", Voice("en-us", "f2"), rate=100, pitch=40)
    assert len(slow) > len(a)


def test_synthesize_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="no such voice"):
        synthesize("yes", Voice("xx-nowhere", "m1"))
    with pytest.raises(ValueError, match="rate=10"):
        synthesize("yes", Voice("en"), rate=10)
    with pytest.raises(ValueError, match="text"):
        synthesize("  ", Voice("en"))


def test_split_voices_holds_out_variants_and_accents() -> None:
    train, test = kws_data.split_voices(seed=0)
    assert not {v.variant for v in train} & {v.variant for v in test}
    assert not set(train) & set(test)
    test_accents = {v.language for v in test}
    for accent in kws_data.HELDOUT_ACCENTS:
        assert accent in test_accents
        assert accent not in {v.language for v in train}


# ---------------------------------------------------------------------------- augmentation
def test_mix_at_snr_hits_the_ratio(rng) -> None:
    signal = np.sin(np.linspace(0, 200, 16000)).astype(np.float32)
    noise = kws_data.coloured_noise(16000, rng, "pink")
    mixed = kws_data.mix_at_snr(signal, noise, 10.0)
    residual = mixed - signal
    snr = 10 * np.log10(np.mean(signal**2) / np.mean(residual**2))
    assert snr == pytest.approx(10.0, abs=1e-3)


def test_coloured_noise_spectra_tilt(rng) -> None:
    def low_share(x):
        p = np.abs(np.fft.rfft(x)) ** 2
        return p[: len(p) // 10].sum() / p.sum()

    shares = [low_share(kws_data.coloured_noise(16000, rng, c)) for c in ("white", "pink", "brown")]
    assert shares[0] < shares[1] < shares[2]
    with pytest.raises(ValueError, match="colour='blue'"):
        kws_data.coloured_noise(10, rng, "blue")


def test_augment_makes_one_second_clips(rng) -> None:
    word = synthesize("go", Voice("en", "m3"))
    babble = [synthesize("cat", Voice("en", "f1"))]
    for _ in range(10):
        clip = kws_data.augment(word, rng, babble)
        assert clip.shape == (16000,) and np.all(np.abs(clip) <= 1.0)
    silence = kws_data.augment(None, rng, babble)
    assert silence.shape == (16000,) and np.max(np.abs(silence)) < 0.2


# ---------------------------------------------------------------------------- front end
def test_frontend_matches_tf_signal(rng) -> None:
    audio = (rng.normal(size=(4, 16000)) * 0.1).astype(np.float32)
    audio[0] = 0.0  # silence: the log's floor
    for config in (DEFAULT_FRONTEND, FrontEndConfig(num_mfcc=0)):
        ours = compute_features(audio, config)
        assert ours.shape == (4, *config.shape)
        assert np.max(np.abs(ours - reference_features(audio, config))) < 1e-3


def test_mel_filterbank_equals_tensorflow() -> None:
    import tensorflow as tf

    ours = mel_filterbank(40, 257, 16000, 20.0, 7600.0)
    ref = tf.signal.linear_to_mel_weight_matrix(40, 257, 16000, 20.0, 7600.0).numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-5)


def test_frontend_config_validates_and_costs() -> None:
    assert DEFAULT_FRONTEND.shape == (49, 10)
    with pytest.raises(ValueError, match="fft_length=256"):
        FrontEndConfig(fft_length=256)
    with pytest.raises(ValueError, match="num_mfcc=50"):
        FrontEndConfig(num_mfcc=50)
    cost = frontend_cost()
    assert cost.multiplies_per_second == cost.multiplies_per_frame * 50
    with pytest.raises(ValueError, match="at least frame_length"):
        compute_features(np.zeros(100, np.float32))


def test_quantize_features() -> None:
    q = quantize_features(np.array([-1000.0, 0.0, 0.5, 1000.0]), 0.5, -3)
    assert q.dtype == np.int8 and q.tolist() == [-128, -3, -2, 127]
    with pytest.raises(ValueError, match="scale=0"):
        quantize_features(np.zeros(2), 0, 0)


# ---------------------------------------------------------------------------- WAV files
def _write_raw_wav(path, data: np.ndarray, rate: int, width: int) -> None:
    with wave.open(str(path), "wb") as out:
        out.setnchannels(data.shape[1] if data.ndim == 2 else 1)
        out.setsampwidth(width)
        out.setframerate(rate)
        out.writeframes(data.tobytes())


def test_read_wav_resamples_and_mixes_down(tmp_path) -> None:
    t = np.arange(44100) / 44100
    tone = np.sin(2 * np.pi * 440 * t)
    stereo = (np.stack([tone, tone], axis=1) * 16000).astype("<i2")
    _write_raw_wav(tmp_path / "stereo.wav", stereo, 44100, 2)
    audio = read_wav(tmp_path / "stereo.wav")
    assert audio.shape == (16000,) and audio.dtype == np.float32
    assert np.max(np.abs(audio)) == pytest.approx(16000 / 32768, rel=0.02)
    _write_raw_wav(tmp_path / "u8.wav", (tone[:8000] * 100 + 128).astype(np.uint8), 8000, 1)
    assert read_wav(tmp_path / "u8.wav").shape == (16000,)
    write_wav(tmp_path / "back.wav", audio)
    np.testing.assert_allclose(read_wav(tmp_path / "back.wav"), audio, atol=1e-4)


def test_read_wav_errors_are_clear(tmp_path) -> None:
    with pytest.raises(AudioReadError, match="no such file"):
        read_wav(tmp_path / "missing.wav")
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"this is not audio at all")
    with pytest.raises(AudioReadError, match="bad.wav: not a readable WAV file"):
        read_wav(bad)
    empty = tmp_path / "empty.wav"
    _write_raw_wav(empty, np.zeros(0, "<i2"), 16000, 2)
    with pytest.raises(AudioReadError, match="no samples"):
        read_wav(empty)


def test_resample_rejects_bad_rates() -> None:
    with pytest.raises(ValueError, match="rate_in=0"):
        resample(np.zeros(10), 0, 16000)


def test_load_folder_reads_word_folders(tmp_path) -> None:
    write_wav(tmp_path / "yes" / "a.wav", synthesize("yes", Voice("en", "m1")))
    write_wav(
        tmp_path / "yes" / "b.wav",
        synthesize("yes", Voice("en", "f1"), sample_rate=22050),
        sample_rate=22050,
    )
    write_wav(tmp_path / "bed" / "c.wav", synthesize("bed", Voice("en", "m2")))
    write_wav(tmp_path / "_background_noise_" / "n.wav", np.zeros(32000))
    x, y, paths = kws_data.load_folder(tmp_path, LABELS)
    assert x.shape == (3, 49, 10)
    assert sorted(y.tolist()) == [1, 2, 2]  # bed is unknown, the noise folder skipped
    assert len(paths) == 3
    with pytest.raises(FileNotFoundError, match="no such folder"):
        kws_data.load_folder(tmp_path / "nope", LABELS)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no WAV files"):
        kws_data.load_folder(tmp_path / "empty", LABELS)


# ---------------------------------------------------------------------------- streaming rule
def _posteriors(rows: list[list[float]], step: float = 0.04) -> Posteriors:
    scores = np.array(rows, np.float32)
    return Posteriors(np.arange(1, len(rows) + 1) * step, scores, LABELS)


def test_recognize_averages_thresholds_and_suppresses() -> None:
    yes = [0.0, 0.0, 1.0, 0.0]
    quiet = [1.0, 0.0, 0.0, 0.0]
    # one spiky window is averaged away; a sustained word is detected once
    assert (
        recognize(_posteriors([quiet] * 5 + [yes] + [quiet] * 5), threshold=0.5, average_window=3)
        == []
    )
    dets = recognize(
        _posteriors([quiet] * 5 + [yes] * 10 + [quiet] * 5), threshold=0.5, average_window=3
    )
    assert [d.keyword for d in dets] == ["yes"]
    assert dets[0].time == pytest.approx(0.04 * 7)  # the second "yes" window makes the mean 2/3
    # after the suppression time the same word can fire again
    long = recognize(_posteriors([yes] * 60), threshold=0.5, average_window=1, suppression=1.0)
    assert len(long) == 3
    # unknown and silence are never reported
    assert recognize(_posteriors([[0, 1.0, 0, 0]] * 10), threshold=0.1) == []
    with pytest.raises(ValueError, match="threshold=2"):
        recognize(_posteriors([yes]), threshold=2)


def test_score_detections_counts_hits_and_false_accepts() -> None:
    events = [Event(1.0, 1.5, "yes"), Event(5.0, 5.4, "no")]
    dets = [
        Detection(1.9, "yes", 0.9),  # hit
        Detection(2.2, "yes", 0.9),  # duplicate: false accept
        Detection(5.6, "yes", 0.8),  # wrong word: false accept
        Detection(20.0, "no", 0.8),  # too late: false accept
    ]
    score = score_detections(dets, events, 3600.0)
    assert (score.hits, score.false_accepts, score.keywords) == (1, 3, 2)
    assert score.detection_rate == 0.5 and score.false_accepts_per_hour == 3.0


def test_make_stream_places_keywords() -> None:
    stream = make_stream(12, ["yes"], ["cat"], [Voice("en", "m1")], keyword_fraction=1.0, seed=0)
    assert stream.audio.shape == (12 * 16000,)
    assert stream.said and all(e.word == "yes" and 0 < e.start < e.end < 12 for e in stream.said)
    none = make_stream(8, ["yes"], ["cat"], [Voice("en", "m1")], keyword_fraction=0.0, seed=0)
    assert none.said == []


# ---------------------------------------------------------------------------- model and CLI
@pytest.fixture(scope="session")
def tiny_kws(tmp_path_factory):
    """A tiny DS-CNN trained for seconds on a tiny synthetic set, saved with its labels."""
    from tinyml_course.kws.model import build_ds_cnn, save_model
    from tinyml_course.models import set_seed
    from tinyml_course.tflite import convert_to_tflite

    spec = kws_data.DatasetSpec(keywords=("yes", "no"), train_per_keyword=40, test_per_keyword=10)
    voices, _ = kws_data.split_voices()
    rng = np.random.default_rng(0)
    clips, y = kws_data.synthesize_split(spec.keywords, ("cat", "bed"), voices, 40, spec, rng)
    x = compute_features(clips)
    set_seed(0)
    model = build_ds_cnn(x.shape[1:], 4, channels=8, blocks=1)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x[..., None], y, epochs=3, batch_size=32, verbose=0)
    tflite = convert_to_tflite(model, "int8", representative_data=x[:100, ..., None])
    path = save_model(tflite, LABELS, tmp_path_factory.mktemp("kws") / "tiny.tflite")
    return path, tflite, x, y


def test_model_int8_and_streaming(tiny_kws) -> None:
    from tinyml_course.kws.model import int8_predict, load_labels, quantized_input

    path, tflite, x, _ = tiny_kws
    scores = int8_predict(tflite, x[:5])
    assert scores.shape == (5, 4)
    np.testing.assert_allclose(scores.sum(1), 1.0, atol=0.02)
    q = quantized_input(tflite, x[:2])
    assert q.dtype == np.int8 and q.shape == (2, 49, 10)
    assert load_labels(path, 4) == LABELS
    with pytest.raises(ValueError, match="4 outputs but 12 labels"):
        load_labels(path.with_name("other.tflite"), 4)
    post = sliding_posteriors(tflite, LABELS, np.zeros(32000, np.float32), hop_frames=5)
    assert post.scores.shape == (len(post.times), 4) and post.times[0] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="this model takes"):
        int8_predict(tflite, np.zeros((1, 40, 10)))


def test_build_ds_cnn_validates() -> None:
    from tinyml_course.kws.model import build_ds_cnn

    with pytest.raises(ValueError, match="channels=0"):
        build_ds_cnn(channels=0)


def test_cli_classify_detect_keywords(tiny_kws, tmp_path, capsys) -> None:
    from tinyml_course.cli import main

    path = tiny_kws[0]
    clip = write_wav(
        tmp_path / "yes.wav",
        synthesize("yes", Voice("en-us", "f1"), sample_rate=44100),
        sample_rate=44100,
    )
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF0000WAVEjunk")
    assert main(["kws", "classify", str(clip), str(bad), "--model", str(path)]) == 1
    out, err = capsys.readouterr()
    (line,) = out.strip().splitlines()
    name, label, score = line.split("\t")
    assert name == str(clip) and label in LABELS and 0 <= float(score) <= 1
    assert f"error: {bad}: not a readable WAV file" in err

    long = write_wav(tmp_path / "long.wav", np.tile(synthesize("yes", Voice("en")), 6))
    assert main(["kws", "detect", str(long), "--model", str(path), "--threshold", "0.0"]) == 0
    out, _ = capsys.readouterr()
    for row in out.strip().splitlines():
        file, seconds, keyword, score = row.split("\t")
        assert file == str(long) and float(seconds) >= 1.0 and keyword in ("yes", "no")

    assert main(["kws", "keywords", "--model", str(path)]) == 0
    assert capsys.readouterr().out.split() == list(LABELS)
    assert main(["kws", "keywords", "--model", str(tmp_path / "none.tflite")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main(["kws", "detect", str(long), "--model", str(path), "--threshold", "3"]) == 2


@pytest.mark.slow
def test_default_dataset_split_sizes() -> None:
    data = kws_data.load_keyword_dataset()
    assert len(data.labels) == 12 and data.x_train.shape[1:] == (49, 10)
    assert np.bincount(data.y_test).min() > 0
