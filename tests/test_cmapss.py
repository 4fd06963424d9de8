"""C-MAPSS loading and preprocessing, the RUL metrics, and the classification data loaders."""

from __future__ import annotations

import gzip
import shutil

import numpy as np
import pytest

from rwkv_ts.datasets import (
    ChecksumError,
    list_classification_datasets,
    load_classification,
    load_cmapss,
)
from rwkv_ts.metrics import phm08_score, rmse


@pytest.fixture(scope="module")
def fd002(shared_data_home):
    return load_cmapss("FD002", data_home=shared_data_home)


def test_load_fd001_layout(shared_data_home):
    data = load_cmapss("fd001", data_home=shared_data_home)
    assert data.name == "FD001" and data.n_conditions == 1
    assert data.train.shape == (20631, 26) and data.test.shape == (13096, 26)
    assert list(data.train.columns[:5]) == [
        "unit",
        "cycle",
        "op_setting_1",
        "op_setting_2",
        "op_setting_3",
    ]
    assert data.train.columns[-1] == "sensor_21"
    assert data.train["unit"].nunique() == 100 and len(data.test_rul) == 100
    assert data.test_rul.loc[1] == 112.0 and data.test_rul.loc[3] == 69.0
    rul = data.train_rul(None)
    assert rul.min() == 0 and (data.train_rul(125).max() == 125.0)


def test_six_operating_conditions(fd002):
    train_c, test_c = fd002.conditions()
    counts = np.bincount(train_c)
    assert len(counts) == 6 and counts.min() > 7000
    # the clusters are the altitude levels of op_setting_1, numbered by altitude
    altitude = fd002.train["op_setting_1"].round().to_numpy()
    for k in range(6):
        assert len(np.unique(altitude[train_c == k])) == 1
    assert np.all(np.diff([altitude[train_c == k][0] for k in range(6)]) > 0)
    assert set(test_c) == set(range(6))


def test_prepare_condition_normalisation_and_targets(fd002):
    prep = fd002.prepare(rul_cap=125)
    assert prep.options["normalise"] == "condition"
    assert len(prep.X_train) == 260 and len(prep.X_test) == 259
    assert prep.X_train[0].shape[0] == 14 and prep.channels[0] == "sensor_2"
    stacked = np.concatenate([x.T for x in prep.X_train])
    train_c, _ = fd002.conditions()
    for k in range(6):
        part = stacked[train_c == k]
        np.testing.assert_allclose(part.mean(axis=0), 0.0, atol=1e-8)
    y0 = prep.y_train[0]
    assert y0[0] == 125 and y0[-1] == 0 and np.all(np.diff(y0) <= 0)
    np.testing.assert_array_equal(prep.y_test, fd002.test_rul.to_numpy())


def test_prepare_windows_sensors_and_errors(shared_data_home):
    data = load_cmapss("FD001", data_home=shared_data_home)
    prep = data.prepare(window=30, sensors=[2, 3, 4], rul_cap=130)
    lengths = data.train.groupby("unit").size().to_numpy()
    assert len(prep.X_train) == int(np.sum(lengths - 29))
    assert prep.X_train[0].shape == (3, 30) and prep.y_train.max() == 130
    assert len(np.unique(prep.groups_train)) == 100
    assert all(x.shape[1] <= 30 for x in prep.X_test)
    with pytest.raises(ValueError, match="sensors must be numbers in 1..21"):
        data.prepare(sensors=[0, 5])
    with pytest.raises(ValueError, match="normalise must be"):
        data.prepare(normalise="minmax")
    with pytest.raises(ValueError, match="unknown C-MAPSS subset"):
        load_cmapss("FD005", data_home=shared_data_home)


def test_prepare_smoothing_and_cycle_channel(shared_data_home):
    data = load_cmapss("FD001", data_home=shared_data_home)
    plain = data.prepare()
    prep = data.prepare(smoothing=0.3, cycle_feature=True)
    assert prep.channels[-1] == "cycle" and prep.options["smoothing"] == 0.3
    for raw, x in [(plain.X_train[4], prep.X_train[4]), (plain.X_test[7], prep.X_test[7])]:
        assert x.shape == (raw.shape[0] + 1, raw.shape[1])
        np.testing.assert_allclose(x[-1], np.arange(1, raw.shape[1] + 1) / 100.0)
        # restarted at each unit, then s_t = 0.3 x_t + 0.7 s_{t-1}: causal
        expected = raw.copy()
        for t in range(1, raw.shape[1]):
            expected[:, t] = 0.3 * raw[:, t] + 0.7 * expected[:, t - 1]
        np.testing.assert_allclose(x[:-1], expected, rtol=1e-12, atol=1e-12)
    assert data.prepare(smoothing=1.0).X_train[3].tolist() == plain.X_train[3].tolist()
    for bad in (0.0, 1.5, -0.2):
        with pytest.raises(ValueError, match=f"smoothing must lie in \\(0, 1\\].*{bad}"):
            data.prepare(smoothing=bad)


def test_prepare_drift_from_the_units_start(shared_data_home):
    data = load_cmapss("FD001", data_home=shared_data_home)
    plain = data.prepare()
    prep = data.prepare(baseline_cycles=5)
    n = len(plain.channels)
    assert prep.channels[n:] == [f"{c}_drift" for c in plain.channels]
    assert prep.options["baseline_cycles"] == 5
    for raw, x in [(plain.X_train[4], prep.X_train[4]), (plain.X_test[7], prep.X_test[7])]:
        np.testing.assert_array_equal(x[:n], raw)
        # causal: before the 5th cycle, the mean of the cycles seen so far
        for t in (0, 2, 4, 5, raw.shape[1] - 1):
            start = raw[:, : min(t + 1, 5)].mean(axis=1)
            np.testing.assert_allclose(x[n:, t], raw[:, t] - start, rtol=1e-12, atol=1e-12)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match=f"baseline_cycles must be a positive integer.*{bad}"):
            data.prepare(baseline_cycles=bad)


def test_missing_and_corrupt_files(tmp_path, shared_data_home):
    with pytest.raises(FileNotFoundError, match="train_FD001.txt not found.*cmapss"):
        load_cmapss("FD001", data_home=tmp_path)
    folder = tmp_path / "cmapss"
    folder.mkdir()
    for kind in ("train", "test"):
        shutil.copy(shared_data_home / f"cmapss/{kind}_FD001.txt.gz", folder)
    with gzip.open(shared_data_home / "cmapss/RUL_FD001.txt.gz") as fh:
        text = fh.read()
    (folder / "RUL_FD001.txt").write_bytes(text.replace(b"112", b"113", 1))
    with pytest.raises(ChecksumError, match="RUL_FD001.txt"):
        load_cmapss("FD001", data_home=tmp_path)
    (folder / "RUL_FD001.txt").write_bytes(text)
    assert load_cmapss("FD001", data_home=tmp_path).test_rul.loc[1] == 112.0


def test_rul_metrics():
    truth = np.array([50.0, 50.0])
    assert phm08_score(truth, truth) == 0.0
    # ten cycles late costs more than ten cycles early
    assert phm08_score([50.0], [60.0]) > phm08_score([50.0], [40.0]) > 0
    np.testing.assert_allclose(phm08_score([50.0], [60.0]), np.e - 1)
    assert rmse(truth, [40.0, 60.0]) == 10.0
    with pytest.raises(ValueError, match="shape"):
        phm08_score([1.0, 2.0], [1.0])


# --------------------------------------------------------------------------- classification data

SHAPES = {
    "CBF": (30, 900, 1, 128, 3),
    "Coffee": (28, 28, 1, 286, 2),
    "ECG200": (100, 100, 1, 96, 2),
    "ECGFiveDays": (23, 861, 1, 136, 2),
    "FaceFour": (24, 88, 1, 350, 4),
    "Lightning7": (70, 73, 1, 319, 7),
    "MoteStrain": (20, 1252, 1, 84, 2),
    "SonyAIBORobotSurface1": (20, 601, 1, 70, 2),
    "SyntheticControl": (300, 300, 1, 60, 6),
    "TwoLeadECG": (23, 1139, 1, 82, 2),
    "Epilepsy": (137, 138, 3, 206, 4),
    "NATOPS": (180, 180, 24, 51, 6),
}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_classification_sets_match_their_cards(name, shared_data_home):
    n_train, n_test, channels, length, n_classes = SHAPES[name]
    X, y = load_classification(name, "train", data_home=shared_data_home)
    Xt, yt = load_classification(name, "test", data_home=shared_data_home)
    assert X.shape == (n_train, channels, length) and Xt.shape == (n_test, channels, length)
    assert len(y) == n_train and len(np.unique(np.concatenate([y, yt]))) == n_classes
    assert np.isfinite(X).all()


def test_classification_labels_and_names(shared_data_home):
    assert sorted(list_classification_datasets()) == sorted(SHAPES)
    _, y = load_classification("ECG200", data_home=shared_data_home)
    assert sorted(set(y.tolist())) == [-1, 1]
    _, y = load_classification("epilepsy", "test", data_home=shared_data_home)
    assert set(y) == {"EPILEPSY", "WALKING", "RUNNING", "SAWING"}
    with pytest.raises(ValueError, match="unknown classification data set"):
        load_classification("FordA", data_home=shared_data_home)
