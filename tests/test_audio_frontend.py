"""The audio front end: WAV input/output, resampling, and the causal log-mel features (offline and
streaming give bit-identical numbers)."""

from __future__ import annotations

import subprocess
import sys
import wave

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rwkv_ts.audio import (
    AudioFileError,
    FrontendConfig,
    FrontendStream,
    LogMelFrontend,
    read_wav,
    resample,
    write_wav,
)

SMALL = FrontendConfig(sample_rate=8000, frame_ms=4.0, hop_ms=1.5, n_mels=8)  # 32 / 12 samples


def _noise(n, seed=0, scale=0.3):
    return np.random.default_rng(seed).normal(scale=scale, size=n).astype(np.float32)


# --------------------------------------------------------------------------- package


def test_import_is_light():
    code = (
        "import sys, rwkv_ts.audio as a; a.LogMelFrontend; a.read_wav; "
        "assert 'torch' not in sys.modules and 'lightning' not in sys.modules, 'heavy import'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_unknown_attribute():
    import rwkv_ts.audio

    with pytest.raises(AttributeError, match="no_such"):
        rwkv_ts.audio.no_such  # noqa: B018


# --------------------------------------------------------------------------- config


def test_config_derived_sizes():
    cfg = FrontendConfig()
    assert (cfg.frame_len, cfg.hop, cfg.fft_size) == (400, 160, 512)
    cfg8 = FrontendConfig(sample_rate=8000)
    assert (cfg8.frame_len, cfg8.hop, cfg8.fft_size) == (200, 80, 256)
    assert FrontendConfig(n_fft=1024).fft_size == 1024
    assert FrontendConfig(sample_rate=8000, frame_ms=32.0).fft_size == 256  # exact power of two
    assert [cfg.n_frames(n) for n in (0, 399, 400, 559, 560)] == [0, 0, 1, 1, 2]
    assert cfg.frame_end(0) == 400 and cfg.frame_end(3) == 880


def test_config_round_trip():
    cfg = FrontendConfig(sample_rate=8000, n_mels=23, fmax=3800.0, n_fft=512)
    assert FrontendConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="bogus"):
        FrontendConfig.from_dict({**cfg.to_dict(), "bogus": 1})


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"sample_rate": 0}, "sample_rate"),
        ({"sample_rate": 16000.0}, "sample_rate"),
        ({"frame_ms": -1.0}, "frame_ms"),
        ({"hop_ms": 0.0}, "hop_ms"),
        ({"hop_ms": 0.01}, "hop"),
        ({"n_mels": 0}, "n_mels"),
        ({"n_mels": True}, "n_mels"),
        ({"n_fft": 128}, "n_fft"),
        ({"fmin": -5.0}, "fmin"),
        ({"fmax": 9000.0}, "fmax"),
        ({"fmin": 5000.0, "fmax": 4000.0}, "fmin"),
        ({"log_floor": 0.0}, "log_floor"),
        ({"log_floor": float("nan")}, "log_floor"),
    ],
)
def test_bad_config(kwargs, name):
    with pytest.raises(ValueError, match=name):
        FrontendConfig(**kwargs).validate()
    with pytest.raises(ValueError, match=name):
        LogMelFrontend(FrontendConfig(**kwargs))


def test_bad_counts():
    with pytest.raises(ValueError, match="n_samples"):
        FrontendConfig().n_frames(-1)
    with pytest.raises(ValueError, match="t"):
        FrontendConfig().frame_end(-1)
    with pytest.raises(TypeError, match="config"):
        LogMelFrontend({"sample_rate": 8000})


# --------------------------------------------------------------------------- features


def test_shapes_at_edges():
    fe = LogMelFrontend(SMALL)
    for n in (0, 1, 31):
        out = fe.transform(np.zeros(n))
        assert out.shape == (0, 8) and out.dtype == np.float32
    assert fe.transform(np.zeros(32)).shape == (1, 8)
    assert fe.transform(np.zeros(32 + 11)).shape == (1, 8)
    assert fe.transform(np.zeros(32 + 12)).shape == (2, 8)
    for n in (0, 5, 100, 1001):
        assert fe.transform(np.zeros(n)).shape[0] == SMALL.n_frames(n)


def test_silence_is_log_floor():
    fe = LogMelFrontend(FrontendConfig(sample_rate=8000, log_floor=1e-4))
    out = fe.transform(np.zeros(1000))
    np.testing.assert_array_equal(out, np.float32(np.log(1e-4)))


def test_matches_direct_formula():
    # an independent dense computation (BLAS, batched FFT) agrees to float32 precision
    cfg = FrontendConfig(sample_rate=16000, n_mels=40)
    fe = LogMelFrontend(cfg)
    audio = _noise(4000, seed=3)
    frames = np.lib.stride_tricks.sliding_window_view(audio.astype(np.float64), 400)[::160]
    window = np.hanning(401)[:400]  # periodic Hann
    power = np.abs(np.fft.rfft(frames * window, n=512, axis=1)) ** 2
    expected = np.log(np.maximum(power @ fe.filterbank.T, 1e-6))
    np.testing.assert_allclose(fe.transform(audio), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("freq", [300.0, 1000.0, 2500.0, 6000.0])
def test_tone_peaks_in_its_mel_band(freq):
    cfg = FrontendConfig(sample_rate=16000, n_mels=40)
    fe = LogMelFrontend(cfg)
    t = np.arange(16000) / 16000
    feats = fe.transform(np.sin(2 * np.pi * freq * t))
    peak = np.bincount(feats.argmax(axis=1), minlength=40).argmax()
    fb = fe.filterbank
    bin_ = int(round(freq * cfg.fft_size / cfg.sample_rate))
    # the band with the largest weight at the tone's bin is the peak (or its neighbour)
    assert abs(int(fb[:, bin_].argmax()) - int(peak)) <= 1
    centres = fe.mel_centres
    assert centres[peak - 1] <= freq <= centres[min(peak + 1, 39)]


def test_filterbank_covers_fmin_fmax():
    cfg = FrontendConfig(sample_rate=8000, n_mels=20, fmin=100.0, fmax=3000.0)
    fb = LogMelFrontend(cfg).filterbank
    freqs = np.arange(fb.shape[1]) * 8000 / cfg.fft_size
    assert fb.shape == (20, 129)
    assert np.all(fb[:, freqs <= 100.0] == 0) and np.all(fb[:, freqs >= 3000.0] == 0)
    assert np.all(fb.max(axis=1) > 0.3)  # every band sees at least one bin
    assert np.all(np.diff(LogMelFrontend(cfg).mel_centres) > 0)


def test_bad_audio():
    fe = LogMelFrontend(SMALL)
    with pytest.raises(ValueError, match="1-D"):
        fe.transform(np.zeros((2, 100)))
    with pytest.raises(ValueError, match="NaN"):
        fe.transform(np.array([0.0, np.nan] * 50))
    with pytest.raises(ValueError, match="NaN"):
        fe.transform(np.array([0.0, np.inf] * 50))
    with pytest.raises(TypeError, match="numeric"):
        fe.transform(np.array(["a"] * 100))
    with pytest.raises(TypeError, match="numeric"):
        fe.transform(np.zeros(100, dtype=complex))
    stream = fe.stream()
    with pytest.raises(ValueError, match="chunk"):
        stream.push(np.zeros((3, 3)))
    assert stream.n_samples == 0


def test_inputs_unchanged():
    fe = LogMelFrontend(SMALL)
    audio = _noise(500).astype(np.float64)
    copy = audio.copy()
    fe.transform(audio)
    stream = fe.stream()
    stream.push(audio)
    np.testing.assert_array_equal(audio, copy)
    state = stream.get_state()
    state["buffer"][:] = 7.0  # the state is a copy
    assert not np.any(stream.get_state()["buffer"] == 7.0)


def test_integer_and_list_input():
    fe = LogMelFrontend(SMALL)
    ints = np.arange(-200, 200, dtype=np.int16)
    np.testing.assert_array_equal(fe.transform(ints), fe.transform(ints.astype(np.float32)))
    np.testing.assert_array_equal(fe.transform(list(ints)), fe.transform(ints))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n=st.integers(0, 400),
    seed=st.integers(0, 2**31 - 1),
    cuts=st.lists(st.integers(0, 400), max_size=12),
    hop_ms=st.sampled_from([1.0, 1.5, 4.0, 6.0]),
)
def test_stream_equals_offline_bitwise(n, seed, cuts, hop_ms):
    # any chunking (0-sample, 1-sample and longer-than-a-frame chunks), also hop > frame_len
    cfg = FrontendConfig(sample_rate=8000, frame_ms=4.0, hop_ms=hop_ms, n_mels=8)
    fe = LogMelFrontend(cfg)
    audio = np.random.default_rng(seed).normal(scale=0.5, size=n).astype(np.float32)
    offline = fe.transform(audio)
    bounds = sorted(min(c, n) for c in cuts)
    pieces = np.split(audio, bounds)  # repeated cuts give empty chunks
    stream = fe.stream()
    outs = [stream.push(p) for p in pieces]
    outs.append(stream.push(audio[:0]))
    assert all(o.shape[1] == 8 and o.dtype == np.float32 for o in outs)
    np.testing.assert_array_equal(np.concatenate(outs), offline)
    assert stream.n_samples == n and stream.n_frames == offline.shape[0]


def test_stream_sample_by_sample_default_config():
    fe = LogMelFrontend()
    audio = _noise(2300, seed=5)
    stream = fe.stream()
    outs = []
    for i, x in enumerate(audio):
        out = stream.push(audio[i : i + 1])
        outs.append(out)
        assert out.shape[0] == (1 if fe.config.n_frames(i + 1) > fe.config.n_frames(i) else 0)
        assert float(x) == audio[i]
    np.testing.assert_array_equal(np.concatenate(outs), fe.transform(audio))


def test_long_signal_blocks_are_exact():
    # transform works in blocks of frames; a signal longer than a block gives the same frames
    from rwkv_ts.audio import features

    cfg = FrontendConfig(sample_rate=8000, frame_ms=4.0, hop_ms=1.0, n_mels=8)
    fe = LogMelFrontend(cfg)
    audio = _noise(8 * (features._BLOCK + 300), seed=9)
    full = fe.transform(audio)
    stream = fe.stream()
    parts = [stream.push(audio[i : i + 777]) for i in range(0, audio.size, 777)]
    np.testing.assert_array_equal(np.concatenate(parts), full)


def test_causality():
    cfg = FrontendConfig(sample_rate=8000)
    fe = LogMelFrontend(cfg)
    audio = _noise(4000, seed=1)
    base = fe.transform(audio)
    rng = np.random.default_rng(2)
    for t in (0, 3, 17, base.shape[0] - 2):
        changed = audio.copy()
        end = cfg.frame_end(t)
        changed[end:] = rng.normal(size=audio.size - end).astype(np.float32)
        other = fe.transform(changed)
        np.testing.assert_array_equal(other[: t + 1], base[: t + 1])
        assert not np.array_equal(other[t + 1], base[t + 1])
        # and the last sample of frame t does matter
        nudged = audio.copy()
        nudged[end - 1] += 0.5
        assert not np.array_equal(fe.transform(nudged)[t], base[t])


def test_state_round_trip():
    fe = LogMelFrontend(SMALL)
    audio = _noise(1000, seed=4)
    stream = fe.stream()
    first = stream.push(audio[:437])
    state = stream.get_state()
    assert set(state) == {"buffer", "n_samples", "n_frames"}
    assert all(isinstance(v, np.ndarray) for v in state.values())
    rest_a = stream.push(audio[437:])
    other = FrontendStream(fe).set_state(state)
    assert (other.n_samples, other.n_frames) == (437, SMALL.n_frames(437))
    rest_b = other.push(audio[437:])
    np.testing.assert_array_equal(rest_a, rest_b)
    np.testing.assert_array_equal(np.concatenate([first, rest_b]), fe.transform(audio))
    # a new stream built from the same settings accepts the state too
    again = LogMelFrontend(FrontendConfig.from_dict(SMALL.to_dict())).stream().set_state(state)
    np.testing.assert_array_equal(again.push(audio[437:]), rest_a)


def test_reset():
    fe = LogMelFrontend(SMALL)
    audio = _noise(300, seed=6)
    stream = fe.stream()
    stream.push(_noise(77, seed=7))
    stream.reset()
    assert stream.n_samples == 0 and stream.n_frames == 0
    np.testing.assert_array_equal(stream.push(audio), fe.transform(audio))


def test_bad_state():
    fe = LogMelFrontend(SMALL)
    stream = fe.stream()
    stream.push(_noise(100))
    good = stream.get_state()
    with pytest.raises(ValueError, match="lacks"):
        fe.stream().set_state({"buffer": good["buffer"]})
    with pytest.raises(ValueError, match="inconsistent"):
        fe.stream().set_state({**good, "n_frames": np.array(0)})
    with pytest.raises(ValueError, match="buffer"):
        fe.stream().set_state({**good, "buffer": good["buffer"][1:]})
    with pytest.raises(ValueError, match="n_samples"):
        fe.stream().set_state({**good, "n_samples": np.array(1.5)})
    with pytest.raises(TypeError, match="mapping"):
        fe.stream().set_state([1, 2])


# --------------------------------------------------------------------------- WAV files


def test_read_real_fsdd_and_speech_commands(shared_data_home):
    audio, sr = read_wav(shared_data_home / "fsdd" / "recordings" / "3_jackson_7.wav")
    assert sr == 8000 and audio.dtype == np.float32 and audio.ndim == 1
    assert 2000 < audio.size < 16000 and 0.05 < np.abs(audio).max() <= 1.0
    audio, sr = read_wav(
        shared_data_home / "speech_commands_subset/speech/yes/439c84f4_nohash_1.wav"
    )
    assert sr == 16000 and audio.shape == (16000,) and np.abs(audio).max() <= 1.0
    feats = LogMelFrontend(FrontendConfig(sample_rate=sr)).transform(audio)
    assert feats.shape == (98, 40) and np.all(np.isfinite(feats))


def test_write_read_round_trip(tmp_path):
    audio = np.clip(_noise(1234, seed=8), -1, 1)
    path = write_wav(tmp_path / "sub" / "a.wav", audio, 16000)
    assert path == tmp_path / "sub" / "a.wav"
    back, sr = read_wav(path)
    assert sr == 16000 and back.shape == audio.shape and back.dtype == np.float32
    np.testing.assert_allclose(back, audio, rtol=0, atol=0.5 / 32768)
    loud = write_wav(tmp_path / "loud.wav", np.array([2.0, -3.0, 0.0]), 8000)
    np.testing.assert_allclose(read_wav(loud)[0], [32767 / 32768, -1.0, 0.0])
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left no temporary file


@pytest.mark.parametrize("width", [1, 2, 3, 4])
def test_read_pcm_widths_and_channels(tmp_path, width):
    rng = np.random.default_rng(width)
    n, channels = 50, 2
    full = 2 ** (8 * width - 1)
    values = rng.integers(-full, full, size=(n, channels))
    if width == 1:
        raw = (values + 128).astype(np.uint8).tobytes()
    elif width == 3:
        u = (values % (1 << 24)).astype(np.uint32)
        raw = np.stack([u & 0xFF, (u >> 8) & 0xFF, (u >> 16) & 0xFF], axis=-1)
        raw = raw.astype(np.uint8).tobytes()
    else:
        raw = values.astype(f"<i{width}").tobytes()
    path = tmp_path / f"w{width}.wav"
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(channels)
        handle.setsampwidth(width)
        handle.setframerate(11025)
        handle.writeframes(raw)
    audio, sr = read_wav(path)
    assert sr == 11025 and audio.dtype == np.float32
    np.testing.assert_allclose(audio, values.mean(axis=1) / full, rtol=1e-6, atol=1e-7)


def test_bad_files(tmp_path):
    text = tmp_path / "notes.wav"
    text.write_text("this is not audio at all, just some text" * 3)
    with pytest.raises(AudioFileError, match="notes.wav"):
        read_wav(text)
    good = write_wav(tmp_path / "good.wav", _noise(1000).clip(-1, 1), 8000)
    data = good.read_bytes()
    cut = tmp_path / "cut.wav"
    cut.write_bytes(data[:-300])
    with pytest.raises(AudioFileError, match="cut.wav.*truncated"):
        read_wav(cut)
    stub = tmp_path / "stub.wav"
    stub.write_bytes(data[:20])
    with pytest.raises(AudioFileError, match="stub.wav"):
        read_wav(stub)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(AudioFileError, match="empty.wav"):
        read_wav(empty)
    floaty = tmp_path / "float.wav"
    floaty.write_bytes(data[:20] + (3).to_bytes(2, "little") + data[22:])  # IEEE float format tag
    with pytest.raises(AudioFileError, match="float.wav"):
        read_wav(floaty)
    with pytest.raises(FileNotFoundError, match="missing.wav"):
        read_wav(tmp_path / "missing.wav")
    assert issubclass(AudioFileError, ValueError)


def test_write_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="1-D"):
        write_wav(tmp_path / "x.wav", np.zeros((2, 2)), 8000)
    with pytest.raises(ValueError, match="sample_rate"):
        write_wav(tmp_path / "x.wav", np.zeros(4), 0)
    with pytest.raises(ValueError, match="NaN"):
        write_wav(tmp_path / "x.wav", np.array([np.nan]), 8000)
    assert not (tmp_path / "x.wav").exists()


# --------------------------------------------------------------------------- resampling


def test_resample_round_trip():
    sr = 8000
    t = np.arange(4000) / sr
    x = (0.4 * np.sin(2 * np.pi * 300 * t) + 0.3 * np.sin(2 * np.pi * 1700 * t + 1.0)).astype(
        np.float32
    )
    up = resample(x, 8000, 16000)
    assert up.dtype == np.float32 and up.shape == (8000,)
    t16 = np.arange(8000) / 16000
    ref16 = 0.4 * np.sin(2 * np.pi * 300 * t16) + 0.3 * np.sin(2 * np.pi * 1700 * t16 + 1.0)
    inner = slice(400, -400)  # away from the filter's edge effects
    assert np.max(np.abs(up[inner] - ref16[inner])) < 0.02
    back = resample(up, 16000, 8000)
    assert back.shape == x.shape
    assert np.max(np.abs(back[200:-200] - x[200:-200])) < 0.02


def test_resample_equal_rates_copies():
    x = _noise(100)
    y = resample(x, 16000, 16000)
    np.testing.assert_array_equal(x, y)
    y[0] = 5.0
    assert x[0] != 5.0
    assert resample(np.zeros(0), 8000, 16000).shape == (0,)
    assert resample(np.zeros(10), 16000, 8000).shape == (5,)
    with pytest.raises(ValueError, match="target_sr"):
        resample(x, 8000, -1)
    with pytest.raises(ValueError, match="1-D"):
        resample(np.zeros((2, 5)), 8000, 16000)
