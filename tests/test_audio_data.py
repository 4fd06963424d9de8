"""Audio data: the FSDD and Speech Commands loaders, the VAD streams (splits, labels, SNR) and the
connected-digit utterances, on the real files."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rwkv_ts.audio import FrontendConfig, LogMelFrontend, read_wav
from rwkv_ts.datasets import (
    DigitUtterance,
    VADExample,
    _audio,
    frame_labels,
    load_fsdd,
    load_speech_commands,
    make_digit_utterances,
    make_vad_streams,
)

FSDD_NAME = re.compile(r"(\d)_([a-z]+)_(\d+)\.wav$")


@pytest.fixture
def spy(monkeypatch):
    """Record the clip files and noise parts the builders read."""
    seen = {"clips": [], "noise": []}
    clip, part = _audio._clip, _audio._noise_part

    def clip_spy(path, rate):
        seen["clips"].append(path)
        return clip(path, rate)

    def part_spy(path, split, rate):
        seen["noise"].append((Path(path).stem, split))
        return part(path, split, rate)

    monkeypatch.setattr(_audio, "_clip", clip_spy)
    monkeypatch.setattr(_audio, "_noise_part", part_spy)
    return seen


# --------------------------------------------------------------------------- loaders


def test_load_fsdd(shared_data_home):
    frame = load_fsdd(data_home=shared_data_home)
    assert list(frame.columns) == ["path", "digit", "speaker", "take", "split"]
    assert len(frame) == 2500
    assert frame.groupby("split").size().to_dict() == {"test": 250, "train": 2000, "val": 250}
    assert set(frame.loc[frame["split"] == "test", "take"]) == set(range(5))
    assert set(frame.loc[frame["split"] == "val", "take"]) == set(range(5, 10))
    assert frame.loc[frame["split"] == "train", "take"].min() == 10
    assert sorted(frame["speaker"].unique()) == ["george", "jackson", "nicolas", "theo", "yweweler"]
    for row in frame.sample(20, random_state=0).itertuples():
        assert Path(row.path).is_absolute() and Path(row.path).is_file()
        digit, speaker, take = FSDD_NAME.search(row.path).groups()
        assert (int(digit), speaker, int(take)) == (row.digit, row.speaker, row.take)


def test_load_speech_commands(shared_data_home):
    clips, noise = load_speech_commands(data_home=shared_data_home)
    assert len(clips) == 300
    assert clips.groupby("split").size().to_dict() == {"test": 51, "train": 205, "val": 44}
    assert {"path", "label", "speaker_id", "split"} <= set(clips.columns)
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in clips["path"])
    assert [p.stem for p in noise] == [
        "doing_the_dishes",
        "dude_miaowing",
        "exercise_bike",
        "running_tap",
    ]
    assert read_wav(noise[0])[1] == 16000


def test_missing_data(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_fsdd(data_home=tmp_path)
    with pytest.raises(FileNotFoundError, match="labels.csv"):
        load_speech_commands(data_home=tmp_path)
    (tmp_path / "fsdd" / "recordings").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="recordings"):
        load_fsdd(data_home=tmp_path)


# --------------------------------------------------------------------------- labels


def test_speech_activity_synthetic():
    sr = 8000
    t = np.arange(800) / sr
    burst = 0.5 * np.sin(2 * np.pi * 300 * t)
    quiet = 0.5 * 10 ** (-40 / 20) * np.sin(2 * np.pi * 300 * t)  # 40 dB below: inactive
    clip = np.concatenate(
        [np.zeros(800), burst, np.zeros(400), burst, np.zeros(1200), burst, quiet]
    )
    mask = _audio.speech_activity(clip, sr)
    assert mask.dtype == bool and mask.shape == clip.shape
    expected = np.zeros(clip.size, dtype=bool)
    expected[800:2800] = True  # the 50 ms pause is filled
    expected[4000:4800] = True  # the 150 ms pause is not
    np.testing.assert_array_equal(mask, expected)
    # the constants are keyword arguments
    assert _audio.speech_activity(clip, sr, threshold_db=45.0)[-400:].all()
    assert not _audio.speech_activity(clip, sr, min_gap_ms=10.0)[1600:2000].any()
    # below the absolute floor nothing is speech
    assert not _audio.speech_activity(1e-4 * clip, sr).any()
    assert _audio.speech_activity(np.zeros(0), sr).shape == (0,)


def test_frame_labels_examples():
    cfg = FrontendConfig(sample_rate=8000)  # frame_len 200, hop 80
    speech = np.zeros(600, dtype=bool)
    speech[300:] = True
    np.testing.assert_array_equal(frame_labels(speech, cfg), [0, 0, 1, 1, 1, 1])
    half = np.zeros(280, dtype=bool)
    half[240:] = True  # exactly half of frame 1's newest hop [200, 280)
    np.testing.assert_array_equal(frame_labels(half, cfg), [0, 1])
    half[240] = False
    np.testing.assert_array_equal(frame_labels(half, cfg), [0, 0])
    out = frame_labels(np.ones(199, dtype=bool), cfg)
    assert out.shape == (0,) and out.dtype == np.float32
    np.testing.assert_array_equal(frame_labels(np.ones(300, dtype=int), cfg), [1, 1])
    with pytest.raises(ValueError, match="1-D"):
        frame_labels(np.ones((2, 300), dtype=bool), cfg)
    with pytest.raises(ValueError, match="boolean"):
        frame_labels(np.full(300, 0.5), cfg)
    with pytest.raises(TypeError, match="config"):
        frame_labels(speech, None)


@settings(max_examples=40, deadline=None)
@given(
    labels=st.lists(st.booleans(), max_size=300),
    hop_ms=st.sampled_from([1.0, 1.5, 4.0, 6.0]),
)
def test_frame_labels_match_definition(labels, hop_ms):
    cfg = FrontendConfig(sample_rate=8000, frame_ms=4.0, hop_ms=hop_ms, n_mels=4)
    speech = np.array(labels, dtype=bool)
    out = frame_labels(speech, cfg)
    assert out.shape == (cfg.n_frames(speech.size),)
    for t, value in enumerate(out):
        end = cfg.frame_end(t)
        newest = speech[end - cfg.hop : end]
        assert value == float(2 * newest.sum() >= newest.size)


# --------------------------------------------------------------------------- VAD streams


def test_vad_streams_labels(shared_data_home):
    streams = make_vad_streams("test", 5, data_home=shared_data_home, random_state=1)
    assert len(streams) == 5 and all(isinstance(s, VADExample) for s in streams)
    assert [s.snr_db for s in streams] == [-5.0, 0.0, 5.0, 10.0, 20.0]
    cfg = FrontendConfig(sample_rate=16000)
    frontend = LogMelFrontend(cfg)
    fractions = []
    for s in streams:
        assert s.sample_rate == 16000 and s.audio.dtype == np.float32
        assert s.audio.shape == (128000,) and s.speech.shape == (128000,)
        assert s.speech.dtype == bool and np.abs(s.audio).max() <= 1.0
        assert s.noise in {"doing_the_dishes", "dude_miaowing", "exercise_bike", "running_tap"}
        assert len(s.clips) >= 2
        inside = np.zeros(s.audio.size, dtype=bool)
        for (a, b), (c, _) in zip(s.clips, [*s.clips[1:], (s.audio.size, None)], strict=True):
            assert 0 <= a < b <= c  # in order, no overlap
            assert s.speech[a:b].any()  # every placed clip has speech
            inside[a:b] = True
        assert not s.speech[~inside].any()  # speech only inside placed clips
        y = frame_labels(s.speech, cfg)
        assert y.shape == (frontend.transform(s.audio).shape[0],)
        fractions.append(y.mean())
    assert 0.1 < np.mean(fractions) < 0.7
    assert all(0.03 < f < 0.85 for f in fractions)


def test_vad_streams_snr(shared_data_home):
    snrs = (-5.0, 3.0, 20.0)
    examples, parts = _audio._vad_streams(
        "val",
        3,
        duration_s=4.0,
        snrs_db=snrs,
        sample_rate=16000,
        random_state=7,
        data_home=shared_data_home,
    )
    for ex, (speech, noise), snr in zip(examples, parts, snrs, strict=True):
        assert ex.snr_db == snr
        np.testing.assert_allclose(ex.audio, speech + noise, atol=1e-6)
        p_noise = np.mean(noise**2)
        measured = 10 * np.log10(np.mean(speech[ex.speech] ** 2) / p_noise)
        assert abs(measured - snr) < 0.5
        for a, b in ex.clips:  # every clip, not only on average
            clip_active = ex.speech[a:b]
            clip_snr = 10 * np.log10(np.mean(speech[a:b][clip_active] ** 2) / p_noise)
            assert abs(clip_snr - snr) < 0.5
    # the public builder gives the same mixtures
    again = make_vad_streams(
        "val", 3, duration_s=4.0, snrs_db=snrs, random_state=7, data_home=shared_data_home
    )
    for a, b in zip(examples, again, strict=True):
        np.testing.assert_array_equal(a.audio, b.audio)


def test_vad_streams_deterministic(shared_data_home):
    kw = {"duration_s": 3.0, "data_home": shared_data_home}
    a = make_vad_streams("train", 3, random_state=3, **kw)
    a[0].audio[:] = 0.0  # results are fresh arrays: mutating them changes no later build
    b = make_vad_streams("train", 3, random_state=3, **kw)
    c = make_vad_streams("train", 3, random_state=4, **kw)
    assert not np.all(b[0].audio == 0.0)
    for x, y in zip(a[1:], b[1:], strict=True):
        np.testing.assert_array_equal(x.audio, y.audio)
        np.testing.assert_array_equal(x.speech, y.speech)
        assert (x.clips, x.noise, x.snr_db) == (y.clips, y.noise, y.snr_db)
    assert not np.array_equal(b[1].audio, c[1].audio)


def test_vad_streams_splits_are_disjoint(shared_data_home, spy):
    fsdd = load_fsdd(data_home=shared_data_home)
    clips, noise = load_speech_commands(data_home=shared_data_home)
    for split in ("test", "val", "train"):
        spy["clips"].clear()
        spy["noise"].clear()
        make_vad_streams(split, 4, duration_s=4.0, data_home=shared_data_home, random_state=2)
        allowed = set(clips.loc[clips["split"] == split, "path"]) | set(
            fsdd.loc[fsdd["split"] == split, "path"]
        )
        assert spy["clips"] and set(spy["clips"]) <= allowed
        assert {s for _, s in spy["noise"]} == {split}
        if split == "test":
            takes = [int(FSDD_NAME.search(p).group(3)) for p in spy["clips"] if "fsdd" in p]
            assert takes and max(takes) <= 4
    # the noise parts are consecutive, non-overlapping time ranges of each recording
    for path in noise:
        audio, _ = read_wav(path)
        parts = {s: _audio._noise_part(str(path), s, 16000) for s in ("train", "val", "test")}
        lo = 0
        for split in ("train", "val", "test"):
            part = parts[split]
            np.testing.assert_array_equal(part, audio[lo : lo + part.size])
            lo += part.size
        assert lo == audio.size
        assert parts["train"].size == int(0.7 * audio.size)


def test_vad_stream_noise_comes_from_its_part(shared_data_home):
    # locate a test stream's noise in its recording: it lies in the last 20 %
    from scipy.signal import correlate

    examples, parts = _audio._vad_streams(
        "test",
        2,
        duration_s=2.0,
        snrs_db=(10.0,),
        sample_rate=16000,
        random_state=5,
        data_home=shared_data_home,
    )
    _, noise_paths = load_speech_commands(data_home=shared_data_home)
    by_name = {p.stem: p for p in noise_paths}
    for ex, (_, noise) in zip(examples, parts, strict=True):
        recording, _ = read_wav(by_name[ex.noise])
        template = noise[:400] / np.linalg.norm(noise[:400])
        score = correlate(recording.astype(np.float64), template, mode="valid", method="fft")
        energy = np.sqrt(np.convolve(recording.astype(np.float64) ** 2, np.ones(400), "valid"))
        where = int(np.argmax(score / np.maximum(energy, 1e-12)))
        assert where >= int(0.8 * recording.size)


def test_vad_streams_8k(shared_data_home):
    (s,) = make_vad_streams(
        "val", 1, duration_s=2.5, sample_rate=8000, data_home=shared_data_home, random_state=0
    )
    assert s.sample_rate == 8000 and s.audio.shape == (20000,) and s.speech.any()


def test_vad_streams_bad_arguments(shared_data_home):
    with pytest.raises(ValueError, match="split"):
        make_vad_streams("dev", 1, data_home=shared_data_home)
    with pytest.raises(ValueError, match="n_streams"):
        make_vad_streams("test", -1, data_home=shared_data_home)
    with pytest.raises(ValueError, match="snrs_db"):
        make_vad_streams("test", 1, snrs_db=(), data_home=shared_data_home)
    with pytest.raises(ValueError, match="duration_s"):
        make_vad_streams("test", 1, duration_s=0.0, data_home=shared_data_home)
    with pytest.raises(ValueError, match="sample_rate"):
        make_vad_streams("test", 1, sample_rate=0, data_home=shared_data_home)
    assert make_vad_streams("test", 0, data_home=shared_data_home) == []


# --------------------------------------------------------------------------- digit utterances


def test_digit_utterances(shared_data_home, spy):
    utts = make_digit_utterances("test", 6, data_home=shared_data_home, random_state=0)
    assert len(utts) == 6 and all(isinstance(u, DigitUtterance) for u in utts)
    used = iter(spy["clips"])
    for u in utts:
        assert u.sample_rate == 8000 and u.audio.dtype == np.float32 and u.audio.ndim == 1
        assert 2 <= len(u.digits) <= 7 and all(0 <= d <= 9 for d in u.digits)
        assert u.transcript == " ".join(str(d) for d in u.digits)
        assert re.fullmatch(r"\d( \d)*", u.transcript)
        assert len(u.segments) == len(u.digits)
        assert u.segments[0][0] == 0 and u.segments[-1][1] == u.audio.size
        for (_, b), (c, _) in zip(u.segments[:-1], u.segments[1:], strict=True):
            assert int(0.05 * 8000) <= c - b <= int(0.4 * 8000)  # the pause
            assert not u.audio[b:c].any()
        for digit in u.digits:  # one recording per digit, of this speaker, test takes only
            d, speaker, take = FSDD_NAME.search(next(used)).groups()
            assert (int(d), speaker) == (digit, u.speaker) and int(take) <= 4
    assert len({u.speaker for u in utts}) > 1


def test_digit_utterances_trimmed(shared_data_home):
    (u,) = make_digit_utterances(
        "val", 1, min_digits=1, max_digits=1, data_home=shared_data_home, random_state=3
    )
    edge = int(0.01 * 8000)
    level = np.sqrt(np.mean(u.audio**2))
    # the trimmed clip starts and ends in active speech windows, not in silence
    assert np.sqrt(np.mean(u.audio[:edge] ** 2)) > 0.01 * level
    assert np.sqrt(np.mean(u.audio[-edge:] ** 2)) > 0.01 * level


def test_digit_utterances_options(shared_data_home):
    kw = {"data_home": shared_data_home, "random_state": 11}
    a = make_digit_utterances("train", 4, min_digits=3, max_digits=3, **kw)
    b = make_digit_utterances("train", 4, min_digits=3, max_digits=3, **kw)
    assert all(len(u.digits) == 3 for u in a)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.audio, y.audio)
        assert (x.digits, x.speaker) == (y.digits, y.speaker)
    c = make_digit_utterances(
        "train", 4, min_digits=3, max_digits=3, sample_rate=16000, pause_s=(0.1, 0.1), **kw
    )
    for x, y in zip(a, c, strict=True):
        assert y.sample_rate == 16000 and x.digits == y.digits
        (_, b0), (c1, _) = y.segments[0], y.segments[1]
        assert c1 - b0 == 1600
    lengths = {len(u.digits) for u in make_digit_utterances("train", 40, **kw)}
    assert lengths == set(range(2, 8))


def test_digit_utterances_bad_arguments(shared_data_home):
    kw = {"data_home": shared_data_home}
    with pytest.raises(ValueError, match="split"):
        make_digit_utterances("training", 1, **kw)
    with pytest.raises(ValueError, match="max_digits"):
        make_digit_utterances("test", 1, min_digits=4, max_digits=3, **kw)
    with pytest.raises(ValueError, match="min_digits"):
        make_digit_utterances("test", 1, min_digits=0, **kw)
    with pytest.raises(ValueError, match="pause_s"):
        make_digit_utterances("test", 1, pause_s=(0.5, 0.1), **kw)
    with pytest.raises(ValueError, match="pause_s"):
        make_digit_utterances("test", 1, pause_s=0.1, **kw)
    with pytest.raises(ValueError, match="n"):
        make_digit_utterances("test", -2, **kw)
