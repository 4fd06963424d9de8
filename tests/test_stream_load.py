"""Load on one stream: hundreds of series fed in random interleavings and random chunk sizes, with
series joining mid-way, give every series the forecasts of a stream that saw only that series, and
the state per series stays the same size however long the history grows.

The full scale (10,000 series x 1,000 steps) is ``benchmarks/stream_load.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_streaming_helpers import as_estimator, random_model, streamable_config

# the torch backend runs a chunk of more than ``stride`` samples as one scan per distinct sample
# count, i.e. per series under random interleaving (milliseconds each): fewer series keep it fast
N_SERIES = {"numba": 300, "torch": 100}
N_STEPS = 120
N_TRACKED = 20
TOL = 1e-5


@pytest.fixture(autouse=True)
def _one_thread():
    # tiny per-sample ops: threads only add synchronisation (and the CI machine has 2 cores)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _err(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, float) - np.asarray(b, float))))


def _schedule(rng: np.random.Generator, n_series: int, n_steps: int, max_chunk: int = 12):
    """Random update calls over ``n_series`` series of ``n_steps`` samples each.

    Yields ``(kind, {series: (start, stop)})``: ``kind`` is ``"dict"`` (``stream.update``, any
    chunk size per series) or ``"array"`` (``update_array``, one chunk size for all). The series
    come in three random waves: a wave joins once the series already open have had 40% of their
    samples, so that new lanes are added to a stream that holds state mid-way through others.
    """
    waves = np.array_split(rng.permutation(n_series), 3)
    is_open = np.zeros(n_series, dtype=bool)
    is_open[waves[0]] = True
    n_open_waves = 1
    fed = np.zeros(n_series, dtype=int)
    while (fed < n_steps).any():
        if n_open_waves < len(waves) and fed[is_open].sum() >= 0.4 * n_steps * is_open.sum():
            is_open[waves[n_open_waves]] = True
            n_open_waves += 1
        open_ = np.flatnonzero(is_open & (fed < n_steps))
        chosen = rng.choice(open_, size=min(len(open_), int(rng.integers(1, 41))), replace=False)
        if rng.random() < 0.3:
            room = int((n_steps - fed[chosen]).min())
            sizes = np.full(len(chosen), int(rng.integers(1, min(room, max_chunk) + 1)))
            kind = "array"
        else:
            sizes = np.minimum(rng.integers(1, max_chunk + 1, len(chosen)), n_steps - fed[chosen])
            kind = "dict"
        spans = {}
        for s, k in zip(chosen.tolist(), sizes.tolist(), strict=True):
            spans[s] = (int(fed[s]), int(fed[s] + k))
            fed[s] += k
        yield kind, spans


def _feed(stream, data: np.ndarray, kind: str, spans: dict) -> dict:
    """One update call; ``{series: forecast (horizon, C) or None while not ready}``."""
    if kind == "array":
        ids = list(spans)
        block = np.stack([data[s, a:b] for s, (a, b) in spans.items()])
        out = stream.update_array(block, series=ids)
        return {s: None if np.isnan(f).all() else f for s, f in zip(ids, out, strict=True)}
    got = stream.update({s: data[s, a:b] for s, (a, b) in spans.items()})
    return {s: got.get(s) for s in spans}


def _per_series_bytes(stream) -> float:
    return stream.state_nbytes() / stream.n_series


@pytest.mark.parametrize("backend", ["numba", "torch"])
def test_interleaved_random_chunks_equal_isolated_streams_and_memory_stays_flat(backend):
    n_series = N_SERIES[backend]
    rng = np.random.default_rng(20240917)
    config = streamable_config(lookback=24, patch_len=6, stride=3, n_layers=1, d_model=16)
    n_channels = 2
    data = np.cumsum(rng.normal(size=(n_series, N_STEPS, n_channels)), axis=1) * 0.3
    data += rng.normal(size=(n_series, 1, n_channels)) * 3.0  # each series its own level
    est = as_estimator(
        random_model(config, 17), data[0, : config.lookback], mean=[0.1, -0.4], std=[2.0, 0.6]
    )
    exact = backend == "numba"  # the kernel runs each lane sample by sample: batching is moot

    stream = est.stream(history=None, backend=backend)
    assert stream.kind == ("numba" if backend == "numba" else "recurrent")
    tracked = set(rng.choice(n_series, size=N_TRACKED, replace=False).tolist())
    chunks: dict[int, list[tuple[int, int]]] = {s: [] for s in tracked}
    seen: dict[int, list] = {s: [] for s in tracked}
    bytes_per_series = []
    for i, (kind, spans) in enumerate(_schedule(rng, n_series, N_STEPS)):
        out = _feed(stream, data, kind, spans)
        for s in tracked & spans.keys():
            chunks[s].append(spans[s])
            seen[s].append(out[s])
        if i % 25 == 0:
            bytes_per_series.append(_per_series_bytes(stream))
    assert stream.n_samples() == {s: N_STEPS for s in range(n_series)}
    # every series joined, in whatever order the schedule brought them
    assert sorted(stream.series_ids) == list(range(n_series))

    # the state is a fixed size per series, from the first samples to the last
    fresh = est.stream(history=None, backend=backend)
    fresh.update_array(data[:1, :1], series=[0])
    assert bytes_per_series and set(bytes_per_series) == {_per_series_bytes(fresh)}
    assert _per_series_bytes(stream) == _per_series_bytes(fresh)

    # tracked series: after each of their updates, the forecast of a stream that saw only them
    # (fed the same chunks, so the torch backend takes the same step/scan paths)
    worst = 0.0
    for s in sorted(tracked):
        alone = est.stream(history=None, backend=backend)
        n_ready = 0
        for (a, b), got in zip(chunks[s], seen[s], strict=True):
            ref = alone.update({s: data[s, a:b]}).get(s)
            assert (got is None) == (ref is None) == (b < config.lookback)
            if ref is None:
                continue
            n_ready += 1
            if exact:
                assert np.array_equal(got, ref), (s, b, _err(got, ref))
            worst = max(worst, _err(got, ref))
        assert n_ready > 0
        assert alone.state_nbytes() == _per_series_bytes(stream)
    assert worst < TOL

    # every series' final forecast against a stream fed all series in lockstep, one sample a call
    lockstep = est.stream(history=None, backend=backend)
    ids = list(range(n_series))
    for t in range(N_STEPS):
        lockstep.update_array(data[:, t], series=ids)
    final = stream.forecast_array(ids)
    ref = lockstep.forecast_array(ids)
    assert np.isfinite(final).all()
    if exact:
        assert np.array_equal(final, ref), _err(final, ref)
    assert _err(final, ref) < TOL
    assert _per_series_bytes(lockstep) == _per_series_bytes(stream)
