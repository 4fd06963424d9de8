"""RWKVVoiceActivityDetector and the speech segmenter: streaming equals offline for any chunking,
the estimator contract, saving, stream states, and learning on real speech-in-noise streams."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.exceptions import NotFittedError

from rwkv_ts.audio.segments import SegmenterConfig, SpeechSegmenter, segments_from_probabilities
from rwkv_ts.audio.vad import RWKVVoiceActivityDetector
from rwkv_ts.datasets import frame_labels

SR = 16000


def _synthetic(seed: int, seconds: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Noise with tone bursts (the 'speech'), and sample labels."""
    rng = np.random.default_rng(seed)
    n = int(seconds * SR)
    audio = 0.02 * rng.normal(size=n)
    speech = np.zeros(n, dtype=bool)
    start = int(rng.integers(2000, n // 2))
    stop = int(min(n - 1000, start + rng.integers(4000, 12000)))
    t = np.arange(stop - start) / SR
    audio[start:stop] += 0.3 * np.sin(2 * np.pi * (150 + 100 * rng.random()) * t)
    speech[start:stop] = True
    return audio.astype(np.float32), speech


@pytest.fixture(scope="module")
def tiny():
    """A tiny detector trained for two epochs on synthetic bursts (the numbers matter, not the
    skill), with its training data."""
    data = [_synthetic(s) for s in range(6)]
    det = RWKVVoiceActivityDetector(
        d_model=16,
        head_size=8,
        n_layers=1,
        max_epochs=2,
        crop_s=1.0,
        val_fraction=0.0,
        random_state=0,
        accelerator="cpu",
    )
    det.fit([a for a, _ in data], [s for _, s in data])
    return det, data


def _thresholds_between(proba: np.ndarray) -> tuple[float, float]:
    """onset/offset inside gaps between the probabilities (no probability within 1e-4 of either),
    so float32 rounding between the parallel and recurrent forms cannot flip a decision."""
    values = np.unique(np.round(proba.astype(np.float64), 6))
    gaps = np.diff(values)
    mids = (values[:-1] + values[1:]) / 2
    ok = gaps > 2e-4
    onset = float(mids[ok][np.argmin(np.abs(mids[ok] - np.quantile(proba, 0.7)))])
    offset = float(mids[ok][np.argmin(np.abs(mids[ok] - np.quantile(proba, 0.5)))])
    return onset, min(offset, onset)


# ---------------------------------------------------------------------- segmenter
@settings(max_examples=60, deadline=None)
@given(
    probs=st.lists(st.floats(0, 1), min_size=0, max_size=300),
    cuts=st.lists(st.integers(0, 300), max_size=8),
    min_speech=st.sampled_from([0.0, 10.0, 50.0]),
    min_silence=st.sampled_from([0.0, 20.0, 80.0]),
    pad=st.sampled_from([0.0, 10.0, 30.0]),
)
def test_segmenter_any_chunking_equals_offline(probs, cuts, min_speech, min_silence, pad):
    cfg = SegmenterConfig(
        sample_rate=1000,
        hop=10,
        first=15,
        onset=0.6,
        offset=0.4,
        min_speech_ms=min_speech,
        min_silence_ms=min_silence,
        speech_pad_ms=pad,
    )
    p = np.array(probs)
    n_samples = cfg.first + cfg.hop * len(p) + 7
    offline = segments_from_probabilities(p, cfg, n_samples=n_samples)
    machine = SpeechSegmenter(cfg)
    got = []
    for part in np.split(p, sorted(c for c in cuts if c <= len(p))):
        got += machine.push(part)
    got += machine.flush(n_samples=n_samples)
    assert got == offline
    # segments are ordered, disjoint, inside the audio and at least min_speech long (unpadded)
    ends = [0.0]
    for start, end in offline:
        assert ends[-1] <= start < end <= n_samples / cfg.sample_rate
        ends.append(end)


def test_segmenter_hysteresis_hangover_and_padding():
    cfg = SegmenterConfig(
        sample_rate=100,
        hop=1,
        first=0,
        onset=0.5,
        offset=0.3,
        min_speech_ms=30,
        min_silence_ms=30,
        speech_pad_ms=10,
    )
    # 0.4 keeps speech going (>= offset) but cannot start it; a 2-frame dip is bridged
    # the last segment is clipped to the end of the audio (frame 14 ends at sample 15)
    p = [0.4, 0.4, 0.9, 0.4, 0.1, 0.1, 0.8, 0.2, 0.2, 0.2, 0.2, 0.4, 0.9, 0.9, 0.9]
    assert segments_from_probabilities(np.array(p), cfg) == [(0.01, 0.08), (0.11, 0.15)]
    # too short: one frame of speech is dropped
    assert segments_from_probabilities(np.array([0, 0.9, 0, 0, 0, 0]), cfg) == []


def test_segmenter_state_round_trip_and_errors():
    cfg = SegmenterConfig(sample_rate=100, hop=1, first=0, min_speech_ms=10, min_silence_ms=20)
    p = np.random.default_rng(0).random(200)
    a = SpeechSegmenter(cfg)
    first = a.push(p[:77])
    b = SpeechSegmenter(cfg)
    b.set_state(a.get_state())
    assert b.open_segment == a.open_segment
    assert first + b.push(p[77:]) + b.flush() == segments_from_probabilities(p, cfg)
    with pytest.raises(ValueError, match="offset"):
        SegmenterConfig(onset=0.4, offset=0.6)
    with pytest.raises(ValueError, match="NaN"):
        SpeechSegmenter(cfg).push([0.1, np.nan])


# ---------------------------------------------------------------------- streaming == offline
@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    sizes=st.lists(
        st.one_of(st.sampled_from([0, 1, 160, 512, 16000]), st.integers(1, 3000)),
        min_size=1,
        max_size=40,
    ),
    which=st.integers(0, 5),
)
def test_stream_equals_offline_for_any_chunking(tiny, sizes, which):
    det, data = tiny
    audio = data[which][0]
    proba = det.predict_proba(audio)
    onset, offset = _thresholds_between(proba)
    det = RWKVVoiceActivityDetector(**{**det.get_params(), "onset": onset, "offset": offset})
    det.__dict__.update({k: v for k, v in tiny[0].__dict__.items() if k.endswith("_")})
    stream = det.stream()
    probs, frames, segments, pos, i = [], [], [], 0, 0
    while pos < len(audio):
        # the drawn sizes first, then the same sizes again (at least 0.25 s) to the end
        size = sizes[i] if i < len(sizes) else max(sizes[i % len(sizes)], 4000)
        result = stream.push(audio[pos : pos + size])
        probs.append(result.probabilities)
        frames.append(result.frames)
        segments += result.segments
        assert result.probabilities.dtype == np.float32
        assert np.allclose(result.times, det.frame_times(len(proba))[result.frames])
        pos, i = pos + size, i + 1
    segments += stream.flush().segments
    np.testing.assert_allclose(np.concatenate(probs), proba, atol=1e-5, rtol=0)
    np.testing.assert_array_equal(np.concatenate(frames), np.arange(len(proba)))
    assert segments == det.predict_segments(audio) == stream.segments


def test_stream_standard_chunk_sizes_and_segments_exist(tiny):
    det, data = tiny
    audio = np.concatenate([data[0][0], data[1][0]])
    proba = det.predict_proba(audio)
    onset, offset = _thresholds_between(proba)
    det.set_params(onset=onset, offset=offset, min_speech_ms=30, min_silence_ms=50)
    try:
        offline = det.predict_segments(audio)
        assert offline, "the thresholds should give at least one segment"
        for chunk in (160, 512, 16000):  # 10 ms, 32 ms, 1 s
            stream = det.stream()
            results = [stream.push(audio[i : i + chunk]) for i in range(0, len(audio), chunk)]
            got = np.concatenate([r.probabilities for r in results])
            np.testing.assert_allclose(got, proba, atol=1e-5, rtol=0)
            closed = [s for r in results for s in r.segments] + stream.flush().segments
            assert closed == offline
    finally:
        det.set_params(onset=0.5, offset=0.35, min_speech_ms=100.0, min_silence_ms=100.0)


def test_stream_flush_open_segment_and_closed_stream(tiny):
    det, data = tiny
    audio = data[2][0]
    det.set_params(onset=1e-6, offset=1e-6)  # everything is speech: one segment to the end
    try:
        stream = det.stream()
        result = stream.push(audio)
        assert result.segments == [] and result.open_segment is not None
        final = stream.flush()
        assert final.segments == det.predict_segments(audio)
        assert final.segments[-1][1] == len(audio) / SR
        with pytest.raises(RuntimeError, match="flushed"):
            stream.push(audio[:10])
        assert stream.reset().push(audio[:100]).probabilities.shape == (0,)
    finally:
        det.set_params(onset=0.5, offset=0.35)


def test_stream_state_round_trip(tiny):
    det, data = tiny
    audio = data[3][0]
    proba = det.predict_proba(audio)
    stream = det.stream()
    head = stream.push(audio[:12345]).probabilities
    state = stream.get_state()
    blob = stream.save_state()
    tail = stream.push(audio[12345:]).probabilities
    for restored in (det.stream().set_state(state), det.stream().load_state(blob)):
        again = restored.push(audio[12345:]).probabilities
        np.testing.assert_array_equal(again, tail)
    np.testing.assert_allclose(np.concatenate([head, tail]), proba, atol=1e-5, rtol=0)
    assert stream.state_nbytes < 20_000
    corrupt = bytearray(blob)
    corrupt[-3] ^= 0xFF
    with pytest.raises(ValueError, match="corrupt"):
        det.stream().load_state(bytes(corrupt))
    other = RWKVVoiceActivityDetector(**det.get_params())
    other.__dict__.update({k: v for k, v in det.__dict__.items() if k.endswith("_")})
    other.scale_mean_ = det.scale_mean_ + 1.0
    with pytest.raises(ValueError, match="another detector"):
        other.stream().load_state(blob)


# ---------------------------------------------------------------------- estimator contract
def test_predict_shapes_and_fitted_attributes(tiny):
    det, data = tiny
    audio = data[0][0]
    proba = det.predict_proba(audio)
    assert proba.shape == (det.frontend_config_.n_frames(len(audio)),)
    assert proba.dtype == np.float32 and ((proba >= 0) & (proba <= 1)).all()
    np.testing.assert_array_equal(det.predict(audio), (proba >= det.onset).astype(np.int8))
    assert det.predict_proba(audio[:399]).shape == (0,)
    assert det.n_parameters_ < 1_000_000
    assert det.state_size_ > 0
    assert det.scale_mean_.shape == (40,) and det.history_
    before = audio.copy()
    det.predict_proba(audio)
    np.testing.assert_array_equal(audio, before)  # the caller's array is untouched


def test_not_fitted_and_bad_input():
    det = RWKVVoiceActivityDetector(max_epochs=1)
    with pytest.raises(NotFittedError):
        det.predict_proba(np.zeros(1000, dtype=np.float32))
    with pytest.raises(NotFittedError):
        det.stream()
    a, s = _synthetic(0, 1.0)
    with pytest.raises(ValueError, match="empty"):
        det.fit([], [])
    with pytest.raises(ValueError, match=r"audios\[1\] must be 1-D"):
        det.fit([a, np.stack([a, a])], [s, s])
    bad = a.copy()
    bad[5] = np.nan
    with pytest.raises(ValueError, match=r"audios\[1\] contains NaN"):
        det.fit([a, bad], [s, s])
    with pytest.raises(ValueError, match=r"labels\[1\] has 10 values"):
        det.fit([a, a], [s, s[:10]])
    with pytest.raises(ValueError, match="single class"):
        det.fit([a, a], [np.zeros_like(s), np.zeros_like(s)])
    with pytest.raises(ValueError, match="labels has 1 items"):
        det.fit([a, a], [s])
    with pytest.raises(ValueError, match="VADExample"):
        det.fit([a, a])
    with pytest.raises(ValueError, match=r"labels\[0\] must hold only 0/1"):
        det.fit([a], [s * 2.0])
    with pytest.raises(ValueError, match="offset"):
        RWKVVoiceActivityDetector(onset=0.3, offset=0.5).fit([a], [s])


def test_frame_labels_accepted(tiny):
    det, data = tiny
    cfg = det.frontend_config_
    audios = [a for a, _ in data[:4]]
    per_frame = [frame_labels(s, cfg) for _, s in data[:4]]
    params = {**det.get_params(), "max_epochs": 1}
    a = RWKVVoiceActivityDetector(**params).fit(audios, per_frame)
    b = RWKVVoiceActivityDetector(**params).fit(audios, [s for _, s in data[:4]])
    np.testing.assert_allclose(a.predict_proba(audios[0]), b.predict_proba(audios[0]), atol=1e-6)


def test_save_load_same_probabilities_and_tamper(tiny, tmp_path):
    import rwkv_ts
    from rwkv_ts.persistence import ModelFileError

    det, data = tiny
    path = tmp_path / "vad.rwkvts"
    det.save(path)
    loaded = rwkv_ts.load(path)
    assert isinstance(loaded, RWKVVoiceActivityDetector)
    assert loaded.get_params() == det.get_params()
    audio = data[4][0]
    np.testing.assert_array_equal(loaded.predict_proba(audio), det.predict_proba(audio))
    assert loaded.predict_segments(audio) == det.predict_segments(audio)
    blob = det.stream().save_state()
    loaded.stream().load_state(blob)  # same weights: same fingerprint
    raw = bytearray(path.read_bytes())
    raw[-5] ^= 0x01
    bad = tmp_path / "tampered.rwkvts"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ModelFileError, match="checksum"):
        rwkv_ts.load(bad)


# ---------------------------------------------------------------------- real data
def test_learns_on_real_streams(shared_data_home):
    """A tiny detector trained for a few epochs on real speech-in-noise streams ranks held-out
    frames (another noise segment, other clips) far better than chance."""
    from sklearn.metrics import roc_auc_score

    from rwkv_ts.datasets import frame_labels, make_vad_streams

    train = make_vad_streams(
        "train", 10, duration_s=4.0, snrs_db=(10, 20), data_home=shared_data_home
    )
    held = make_vad_streams(
        "val", 4, duration_s=4.0, snrs_db=(10, 20), random_state=1, data_home=shared_data_home
    )
    det = RWKVVoiceActivityDetector(
        d_model=16,
        head_size=8,
        n_layers=1,
        max_epochs=4,
        crop_s=2.0,
        learning_rate=1e-2,
        val_fraction=0.0,
        random_state=0,
        accelerator="cpu",
    ).fit(train)
    cfg = det.frontend_config_
    y = np.concatenate([frame_labels(ex.speech, cfg) for ex in held])
    p = np.concatenate([det.predict_proba(ex) for ex in held])
    assert 0 < y.mean() < 1
    assert roc_auc_score(y, p) > 0.85  # about 0.95 for seeds 0-2


def test_stream_without_numpy_stepper_also_matches(tiny):
    """A model with a TCN branch streams through the torch path only (the numpy frame stepper
    covers the default blocks); small and large chunks still equal offline."""
    import dataclasses

    import torch

    from rwkv_ts.nn.sequence import RWKVSequenceModel

    det, data = tiny
    other = RWKVVoiceActivityDetector(**det.get_params())
    other.__dict__.update({k: v for k, v in det.__dict__.items() if k.endswith("_")})
    torch.manual_seed(0)
    other.config_ = dataclasses.replace(det.config_, tcn_dilations=(1, 2))
    other.model_ = RWKVSequenceModel(other.config_).eval()
    audio = data[5][0]
    proba = other.predict_proba(audio)
    stream = other.stream()
    assert not stream._stepper.supported
    sizes = [160, 512, 16000, 1, 3000]
    got, pos, i = [], 0, 0
    while pos < len(audio):
        got.append(stream.push(audio[pos : pos + sizes[i % 5]]).probabilities)
        pos, i = pos + sizes[i % 5], i + 1
    np.testing.assert_allclose(np.concatenate(got), proba, atol=1e-5, rtol=0)
