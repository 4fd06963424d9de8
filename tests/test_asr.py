"""Speech recognition: vocabularies, greedy CTC decoding, word error rate, the CTC loss, and
``RWKVSpeechRecognizer`` (input checks, streaming == offline, state, persistence)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.exceptions import NotFittedError

from rwkv_ts.audio.asr import RWKVSpeechRecognizer, SpeechStream
from rwkv_ts.audio.ctc import (
    BLANK,
    CTCLoss,
    GreedyCTCDecoder,
    best_path,
    ctc_min_tokens,
    edit_distance,
    get_vocabulary,
    greedy_decode,
    word_error_rate,
)

DIGITS = get_vocabulary("digits")
CHARS = get_vocabulary("characters")

TINY = dict(d_model=32, head_size=16, n_layers=1, batch_size=16, random_state=0)


# ---------------------------------------------------------------------- vocabularies


def test_digit_vocabulary_round_trip_and_errors():
    assert DIGITS.size == 10
    assert DIGITS.encode("0 9 5") == [1, 10, 6]
    assert DIGITS.decode([1, 10, 6]) == "0 9 5"
    with pytest.raises(ValueError, match="'12'"):
        DIGITS.encode("3 12")
    with pytest.raises(ValueError, match="empty"):
        DIGITS.encode("")
    with pytest.raises(ValueError, match="single spaces"):
        DIGITS.encode("3  4")
    with pytest.raises(TypeError):
        DIGITS.encode(3)


def test_character_vocabulary():
    assert CHARS.size == 28
    ids = CHARS.encode("don't stop")
    assert CHARS.decode(ids) == "don't stop"
    with pytest.raises(ValueError, match="'D'"):
        CHARS.encode("Don't")
    with pytest.raises(ValueError, match="vocabulary must be one of"):
        get_vocabulary("phonemes")


# ---------------------------------------------------------------------- greedy decoding


def test_greedy_decode_hand_made():
    # repeats collapse, a blank separates a real repeat
    assert greedy_decode([0, 4, 4, 4, 0, 0, 4, 10, 10], DIGITS) == "3 3 9"
    assert greedy_decode([], DIGITS) == ""
    assert greedy_decode([0, 0, 0], DIGITS) == ""
    # characters: spaces are written only between words (no leading, trailing or double spaces)
    space = CHARS.encode("a b")[1]
    h, i = CHARS.encode("hi")
    seq = [space, 0, h, h, i, space, 0, space, space, i, space]
    assert greedy_decode(seq, CHARS) == "hi i"
    # logits: argmax per row
    logits = np.full((4, 11), -5.0)
    logits[[0, 1, 2, 3], [BLANK, 3, 3, BLANK]] = 5.0
    assert greedy_decode(logits, DIGITS) == "2"
    with pytest.raises(ValueError, match="outside"):
        greedy_decode([11], DIGITS)


def test_decoder_emits_as_soon_as_decided():
    dec = GreedyCTCDecoder(DIGITS)
    assert [dec.push(i) for i in (0, 2, 2, 0, 2, 5)] == ["", "1", "", "", " 1", " 4"]
    assert dec.text == "1 1 4"


@settings(max_examples=100, deadline=None)
@given(
    vocab_name=st.sampled_from(["digits", "characters"]),
    data=st.data(),
)
def test_incremental_equals_offline_for_any_split(vocab_name, data):
    vocab = get_vocabulary(vocab_name)
    ids = data.draw(st.lists(st.integers(0, vocab.size), max_size=60))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(ids)), max_size=6)))
    offline = greedy_decode(ids, vocab)
    dec = GreedyCTCDecoder(vocab)
    pieces, start = [], 0
    for cut in [*cuts, len(ids)]:
        pieces.append(dec.push_many(ids[start:cut]))
        start = cut
    assert "".join(pieces) == dec.text == offline
    # the text is always clean words
    assert offline == " ".join(offline.split())


@settings(max_examples=50, deadline=None)
@given(
    logits=st.lists(
        st.lists(st.floats(-10, 10, allow_nan=False), min_size=11, max_size=11), max_size=40
    ),
    cut=st.integers(0, 40),
)
def test_incremental_equals_offline_on_logits_with_state_restore(logits, cut):
    arr = np.asarray(logits, dtype=np.float32).reshape(-1, 11)
    ids = best_path(arr).tolist()
    first = GreedyCTCDecoder(DIGITS)
    first.push_many(ids[:cut])
    resumed = GreedyCTCDecoder(DIGITS)
    resumed.set_state(first.get_state())
    resumed.push_many(ids[cut:])
    assert resumed.text == greedy_decode(arr, DIGITS)


# ---------------------------------------------------------------------- word error rate


def test_word_error_rate_hand_made():
    assert word_error_rate(["1 2 3"], ["1 2 3"]) == 0.0
    assert word_error_rate(["1 2 3"], [""]) == 1.0  # three deletions
    assert word_error_rate(["1 2"], ["1 2 3 4"]) == 1.0  # two insertions over two words
    assert word_error_rate(["1 2 3", "4 5"], ["1 9 3", "4 5"]) == pytest.approx(1 / 5)
    # totals, not a mean of per-utterance rates: 1 edit / (1 + 4) words
    assert word_error_rate(["1", "2 3 4 5"], ["7", "2 3 4 5"]) == pytest.approx(1 / 5)
    assert word_error_rate("a b", "a c") == 0.5
    with pytest.raises(ValueError, match="3 transcripts"):
        word_error_rate(["1", "2", "3"], ["1"])
    with pytest.raises(ValueError, match="no words"):
        word_error_rate([""], ["1"])


words = st.lists(st.sampled_from(list("0123")), max_size=8)


@settings(max_examples=100, deadline=None)
@given(a=words, b=words, c=words)
def test_edit_distance_is_a_metric(a, b, c):
    d = edit_distance(a, b)
    assert d == edit_distance(b, a)
    assert abs(len(a) - len(b)) <= d <= max(len(a), len(b))
    assert (d == 0) == (a == b)
    assert edit_distance(a, c) <= d + edit_distance(b, c)


# ---------------------------------------------------------------------- CTC loss


def test_ctc_loss_matches_torch_and_counts_labels():
    torch.manual_seed(0)
    log_probs = torch.randn(3, 12, 11).log_softmax(-1)
    targets = torch.tensor([[1, 2, 3], [4, 4, 0], [5, 0, 0]])
    target_lengths = torch.tensor([3, 2, 1])
    input_lengths = torch.tensor([12, 9, 7])
    loss = CTCLoss()
    total = loss((log_probs, input_lengths), (targets, target_lengths), reduction="sum")
    expected = torch.nn.functional.ctc_loss(
        log_probs.transpose(0, 1), targets, input_lengths, target_lengths, reduction="none"
    ).sum()
    assert torch.allclose(total, expected)
    mean = loss((log_probs, input_lengths), (targets, target_lengths))
    assert torch.allclose(mean, expected / 6)
    assert loss.n_targets((targets, target_lengths)) == 6
    # an impossible alignment (3 labels, 1 token) counts as zero instead of infinity
    impossible = loss((log_probs[:1], torch.tensor([1])), (targets[:1], torch.tensor([3])))
    assert torch.isfinite(impossible)
    assert ctc_min_tokens([4, 4, 4]) == 5


# ---------------------------------------------------------------------- estimator: checks


def _noise(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(scale=0.1, size=n).astype(np.float32)


def test_not_fitted_and_parameter_errors():
    asr = RWKVSpeechRecognizer()
    with pytest.raises(NotFittedError):
        asr.transcribe(_noise(8000))
    with pytest.raises(ValueError, match="stride"):
        RWKVSpeechRecognizer(patch_len=2, stride=4).fit([_noise(8000)], ["1"])
    with pytest.raises(ValueError, match="vocabulary"):
        RWKVSpeechRecognizer(vocabulary="words").fit([_noise(8000)], ["1"])


@pytest.mark.parametrize(
    ("audios", "transcripts", "error", "match"),
    [
        ([_noise(8000), _noise(8000)], ["1 2", "1 x"], ValueError, r"transcripts\[1\].*'x'"),
        ([_noise(8000), _noise(8000)], ["1 2", ""], ValueError, r"transcripts\[1\] is empty"),
        # 1200 samples -> 14 frames -> 2 tokens; "1 1" needs 3 (two labels and a blank)
        ([_noise(8000), _noise(1200)], ["1", "1 1"], ValueError, r"audios\[1\] is too short"),
        ([_noise(8000), np.full(8000, np.nan, np.float32)], ["1", "2"], ValueError, r"\[1\].*NaN"),
        ([_noise(8000), np.zeros((2, 8000), np.float32)], ["1", "2"], ValueError, r"\[1\].*1-D"),
        ([_noise(8000), np.zeros(8000, np.int16)], ["1", "2"], TypeError, r"\[1\].*integer"),
        ([_noise(8000)], ["1", "2"], ValueError, "transcripts number 2"),
        ([_noise(8000)], None, TypeError, "transcripts are required"),
        (_noise(8000), ["1"], TypeError, "list of recordings"),
    ],
)
def test_fit_input_errors_name_the_item(audios, transcripts, error, match):
    with pytest.raises(error, match=match):
        RWKVSpeechRecognizer(max_epochs=1, **TINY).fit(audios, transcripts)


def test_other_sample_rate_is_an_error_naming_both_rates():
    from rwkv_ts.datasets import DigitUtterance

    utt = DigitUtterance(
        audio=_noise(16000), sample_rate=16000, digits=(1,), transcript="1", speaker="x"
    )
    with pytest.raises(ValueError, match=r"16000 Hz.*8000 Hz.*resample"):
        RWKVSpeechRecognizer(max_epochs=1, **TINY).fit([utt])


# ---------------------------------------------------------------------- estimator: trained


@pytest.fixture(scope="module")
def digits_data(shared_data_home):
    from rwkv_ts.datasets import make_digit_utterances

    if not (shared_data_home / "fsdd" / "recordings").is_dir():
        pytest.skip("FSDD not found in the shared data home")
    train = make_digit_utterances(
        "train", 48, max_digits=4, random_state=0, data_home=shared_data_home
    )
    val = make_digit_utterances("val", 8, max_digits=4, random_state=1, data_home=shared_data_home)
    test = make_digit_utterances("test", 4, random_state=2, data_home=shared_data_home)
    return train, val, test


@pytest.fixture(scope="module")
def trained(digits_data):
    train, val, _ = digits_data
    asr = RWKVSpeechRecognizer(max_epochs=2, **TINY).fit(train, validation=val)
    # Two epochs of CTC on 48 utterances mostly predict blanks; lower the blank's bias so that the
    # decoded text is not empty and the streaming == offline checks compare real text.
    with torch.no_grad():
        asr.model_.head.bias[BLANK] -= 4.0
    return asr


def test_fit_on_utterances_sets_fitted_attributes(trained, digits_data):
    train, val, test = digits_data
    assert trained.n_train_utterances_ == len(train)
    assert trained.n_val_utterances_ == len(val)
    assert trained.n_epochs_ == 2 and len(trained.history_) == 2
    assert trained.scale_mean_.shape == trained.scale_std_.shape == (40,)
    assert trained.config_.n_outputs == 11 and trained.config_.pooling == "last"
    text = trained.transcribe(test[0])
    assert text and set(text.replace(" ", "")) <= set("0123456789")
    logits = trained.token_logits(test[0].audio)
    n_frames = trained.frontend_config_.n_frames(test[0].audio.size)
    assert logits.shape == (trained.config_.n_tokens(n_frames), 11)
    # the audio is not modified
    before = test[0].audio.copy()
    trained.transcribe(test[0].audio)
    np.testing.assert_array_equal(test[0].audio, before)


def test_transcribe_batch_equals_single(trained, digits_data):
    _, _, test = digits_data
    audios = [u.audio for u in test] + [_noise(100)]  # the last is shorter than one token
    assert trained.transcribe_batch(audios, batch_size=2) == [trained.transcribe(a) for a in audios]
    assert trained.transcribe(_noise(100)) == ""
    with pytest.raises(ValueError, match=r"44100 Hz.*resample"):
        trained.transcribe(test[0].audio, sample_rate=44100)


chunkings = st.one_of(
    st.sampled_from([80, 256, 8000]).map(lambda c: ("fixed", c)),  # 10 ms, 32 ms, 1 s
    st.lists(st.integers(0, 997), min_size=1, max_size=12).map(lambda c: ("cycle", c)),
)


def _chunks(n: int, kind: str, spec) -> list[tuple[int, int]]:
    out, pos, k = [], 0, 0
    while pos < n:
        size = spec if kind == "fixed" else spec[k % len(spec)]
        if kind == "cycle" and not any(spec):
            size = n
        out.append((pos, min(n, pos + size)))
        pos += size
        k += 1
    return out


@settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(chunking=chunkings, which=st.integers(0, 3))
def test_stream_equals_offline_for_any_chunking(trained, digits_data, chunking, which):
    audio = digits_data[2][which].audio
    offline_logits = trained.token_logits(audio)
    offline_text = trained.transcribe(audio)
    assert offline_text  # a real comparison
    stream = trained.stream()
    pieces, texts = [], []
    for start, stop in _chunks(audio.size, *chunking):
        before = stream.text
        pieces.append(stream.push_logits(audio[start:stop]))
        texts.append(stream.text[len(before) :])
    logits = np.concatenate(pieces)
    assert logits.shape == offline_logits.shape
    np.testing.assert_allclose(logits, offline_logits, atol=1e-5, rtol=0)
    assert "".join(texts) == stream.text == offline_text
    assert stream.finish() == offline_text


def test_push_returns_text_as_it_is_decided(trained, digits_data):
    audio = digits_data[2][0].audio
    stream = trained.stream()
    emitted = [stream.push(audio[i : i + 80]) for i in range(0, audio.size, 80)]
    assert "".join(emitted) == trained.transcribe(audio)
    # text appears before the end of the recording (streaming, not at finish)
    first = next(i for i, t in enumerate(emitted) if t)
    assert first < len(emitted) - 1
    assert stream.push(np.zeros(0, np.float32)) == ""
    assert stream.flush() == ""
    stream.finish()
    with pytest.raises(RuntimeError, match="reset"):
        stream.push(audio[:80])
    stream.reset()
    assert stream.text == "" and stream.n_samples == 0
    assert "".join(stream.push(audio[i : i + 333]) for i in range(0, audio.size, 333)) == "".join(
        emitted
    )
    with pytest.raises(TypeError, match="chunk"):
        stream.push(np.zeros(10, np.int16))


def test_stream_state_restores_exactly(trained, digits_data):
    audio = digits_data[2][1].audio
    cut = 7001
    stream = trained.stream()
    stream.push(audio[:cut])
    state = stream.get_state()
    rest = stream.push_logits(audio[cut:])
    text = stream.text

    other = trained.stream()
    other.push(_noise(3000))  # whatever it held is replaced
    other.set_state(state)
    np.testing.assert_array_equal(other.push_logits(audio[cut:]), rest)
    assert other.text == text
    # the state is bounded: the same size after 1 s and after the whole recording
    fresh = trained.stream()
    fresh.push(audio[:8000])
    assert stream.state_nbytes <= fresh.state_nbytes + 4 * (40 * 8 + 200)
    # inconsistent states are rejected
    bad = dict(state)
    bad["n_tokens"] = np.array(int(state["n_tokens"]) + 1)
    with pytest.raises(ValueError, match="inconsistent"):
        trained.stream().set_state(bad)
    bad = {k: v for k, v in state.items() if k != "model.0.time_mix.wkv"}
    with pytest.raises(ValueError, match="model.0.time_mix.wkv"):
        trained.stream().set_state(bad)


def test_stream_state_bytes_round_trip_and_refusals(trained, digits_data):
    from safetensors.numpy import save as st_save

    from rwkv_ts._safefile import seal

    audio = digits_data[2][1].audio
    stream = trained.stream()
    stream.push(audio[:7001])
    blob = stream.save_state()
    rest = stream.push_logits(audio[7001:])
    restored = trained.stream().load_state(blob)
    np.testing.assert_array_equal(restored.push_logits(audio[7001:]), rest)
    assert restored.text == stream.text

    target = trained.stream()
    target.push(audio[:3000])
    before = target.get_state()
    flipped = bytearray(blob)
    flipped[-3] ^= 0xFF
    with pytest.raises(ValueError, match="checksum|corrupt"):
        target.load_state(bytes(flipped))
    other_format = seal(lambda m: st_save({"a": np.zeros(1)}, metadata=m), {"format": "other"})
    with pytest.raises(ValueError, match="not a speech-stream state"):
        target.load_state(other_format)
    foreign = copy.deepcopy(trained)
    with torch.no_grad():
        next(foreign.model_.parameters()).add_(1.0)
    with pytest.raises(ValueError, match="another recogniser"):
        foreign.stream().load_state(blob)
    with pytest.raises(TypeError, match="takes bytes"):
        target.load_state("state.safetensors")
    after = target.get_state()
    for key, value in before.items():
        np.testing.assert_array_equal(after[key], value)


def test_save_load_round_trip_and_tampering(trained, digits_data, tmp_path):
    import rwkv_ts
    from rwkv_ts.persistence import ModelFileError

    path = tmp_path / "asr.rwkvts"
    trained.save(path)
    loaded = rwkv_ts.load(path)
    assert isinstance(loaded, RWKVSpeechRecognizer)
    assert loaded.get_params() == trained.get_params()
    for u in digits_data[2]:
        np.testing.assert_array_equal(loaded.token_logits(u.audio), trained.token_logits(u.audio))
        assert loaded.transcribe(u) == trained.transcribe(u)
    assert isinstance(loaded.stream(), SpeechStream)

    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF  # a flipped byte in the weights
    bad = tmp_path / "bad.rwkvts"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match="checksum"):
        rwkv_ts.load(bad)
