"""Tests of the data boundary: to_panel / forecast_to_frame / validation errors."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import polars as pl
import polars.testing as plt
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rwkv_ts.data import (
    DataTypeError,
    DataValidationError,
    Panel,
    check_same_channels,
    forecast_to_frame,
    to_panel,
)

FREQS = ["h", "15min", "D", "W", "ME", "MS", "B", "QE"]


def _tail_forecasts(tails: list[np.ndarray]) -> list[np.ndarray]:
    return [np.asarray(t, dtype=np.float64) for t in tails]


def _future(last: pd.Timestamp, freq: str, h: int) -> pd.DatetimeIndex:
    return pd.date_range(start=last, periods=h + 1, freq=freq)[1:]


# ----------------------------------------------------------------------------------------------
# round trips: the head of a frame plus the forecast of its tail gives back the tail
# ----------------------------------------------------------------------------------------------


@settings(
    max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    t=st.integers(3, 30),
    h=st.integers(1, 8),
    c=st.integers(1, 3),
    freq=st.sampled_from(FREQS),
    where=st.sampled_from(["index", "column"]),
    tz=st.sampled_from([None, "UTC", "Europe/Paris"]),
    seed=st.integers(0, 2**16),
)
def test_pandas_wide_round_trip(t, h, c, freq, where, tz, seed):
    # business days: a head of weekdays only (no weekend inside) is indistinguishable from daily
    assume(freq != "B" or t >= 6)
    rng = np.random.default_rng(seed)
    times = pd.date_range("2021-01-04", periods=t + h, freq=freq, tz=tz, name="when")
    full = pd.DataFrame(rng.normal(size=(t + h, c)), columns=[f"c{j}" for j in range(c)])
    if where == "index":
        full.index = times
    else:
        full.insert(1 if c > 1 else 0, "when", times)
    head, tail = full.iloc[:t], full.iloc[t:]
    panel = to_panel(head)
    assert panel.channels == [f"c{j}" for j in range(c)]
    assert panel.series_ids is None
    np.testing.assert_array_equal(panel.values[0], head[panel.channels].to_numpy(np.float32))
    assert panel.last_times == [times[t - 1]]
    out = forecast_to_frame(_tail_forecasts([tail[panel.channels].to_numpy()]), panel, h)
    expected = tail if where == "index" else tail.reset_index(drop=True)
    pd.testing.assert_frame_equal(out, expected, check_freq=False)


@pytest.mark.parametrize(
    "index", [pd.RangeIndex(0, 12), pd.RangeIndex(5, 65, 5), pd.Index(np.arange(3, 15))]
)
def test_pandas_wide_integer_index_round_trip(index):
    full = pd.DataFrame({"a": np.arange(12.0), "b": np.arange(12) * 2.0}, index=index)
    panel = to_panel(full.iloc[:9])
    assert panel.last_times == [int(index[8])]
    out = forecast_to_frame([full.iloc[9:].to_numpy()], panel, 3)
    pd.testing.assert_frame_equal(out, full.iloc[9:])
    assert type(out.index) is type(index)


@settings(
    max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow]
)
@given(
    lengths=st.lists(st.integers(3, 15), min_size=1, max_size=5),
    h=st.integers(1, 5),
    freq=st.sampled_from(FREQS),
    interleave=st.booleans(),
    library=st.sampled_from(["pandas", "polars"]),
    seed=st.integers(0, 2**16),
)
def test_long_round_trip(lengths, h, freq, interleave, library, seed):
    rng = np.random.default_rng(seed)
    parts = []
    for i, n in enumerate(lengths):
        start = pd.Timestamp("2020-01-31") + pd.tseries.frequencies.to_offset(freq) * (3 * i)
        ds = pd.date_range(start, periods=n + h, freq=freq)
        parts.append(
            pd.DataFrame(
                {"unique_id": f"s{i}", "ds": ds, "y": rng.normal(size=n + h), "k": np.arange(n + h)}
            )
        )
    heads = pd.concat([p.iloc[:-h] for p in parts], ignore_index=True)
    tails = pd.concat([p.iloc[-h:] for p in parts], ignore_index=True)
    if interleave:  # rows of different series mixed, each series still in time order
        heads = heads.sort_values(["k", "unique_id"], kind="stable").reset_index(drop=True)
    heads, tails = heads.drop(columns="k"), tails.drop(columns="k")
    if library == "polars":
        heads, tails = pl.from_dict(heads.to_dict("list")), pl.from_dict(tails.to_dict("list"))
        heads = heads.with_columns(pl.col("ds").cast(pl.Datetime("us")))
        tails = tails.with_columns(pl.col("ds").cast(pl.Datetime("us")))
    panel = to_panel(heads)
    assert panel.spec.layout == "long"
    assert panel.series_ids == [f"s{i}" for i in range(len(lengths))]  # first appearance
    assert [len(v) for v in panel.values] == lengths
    tail_y = np.asarray(tails["y"]).reshape(len(lengths), h, 1)
    out = forecast_to_frame(list(tail_y), panel, h)
    if library == "polars":
        plt.assert_frame_equal(out, tails)
    else:
        pd.testing.assert_frame_equal(out, tails)


def test_long_explicit_columns_and_several_values():
    df = pd.DataFrame(
        {
            "v1": np.arange(6.0),
            "store": [7, 7, 7, 3, 3, 3],
            "t": [10, 11, 12, 0, 1, 2],
            "v2": np.arange(6) * 10,
        }
    )
    panel = to_panel(df, id_col="store", time_col="t")
    assert panel.series_ids == [7, 3]
    assert panel.channels == ["v1", "v2"]
    assert panel.freq == 1
    assert panel.last_times == [12, 2]
    out = forecast_to_frame([np.ones((2, 2)), np.zeros((2, 2))], panel, 2)
    assert list(out.columns) == ["v1", "store", "t", "v2"]
    assert out["store"].tolist() == [7, 7, 3, 3]
    assert out["t"].tolist() == [13, 14, 3, 4]
    assert out["t"].dtype == df["t"].dtype


def test_polars_wide_round_trip_with_tz_and_date():
    times = pl.datetime_range(
        pl.datetime(2020, 3, 25),
        pl.datetime(2020, 4, 3),
        "1d",
        eager=True,
        time_zone="Europe/Paris",
    )
    full = pl.DataFrame({"a": np.arange(10.0), "ds": times, "b": np.arange(10.0) ** 2})
    panel = to_panel(full.head(7))
    assert panel.channels == ["a", "b"]
    assert str(panel.last_times[0].tz) == "Europe/Paris"
    tail = full.tail(3)
    out = forecast_to_frame([tail.select("a", "b").to_numpy()], panel, 3)
    plt.assert_frame_equal(out, tail)

    dates = pl.date_range(pl.date(2024, 1, 31), pl.date(2024, 12, 31), "1mo", eager=True)
    dates = dates.dt.month_end()
    full = pl.DataFrame({"d": dates, "v": np.arange(12.0)})
    out = forecast_to_frame([np.arange(9.0, 12.0)], to_panel(full.head(9)), 3)
    plt.assert_frame_equal(out, full.tail(3))


def test_polars_lazy_and_positional():
    lf = pl.LazyFrame({"a": [1.0, 2.0, 3.0], "b": [1, 2, 3]})
    panel = to_panel(lf)
    assert panel.spec.library == "polars" and panel.spec.time_source == "position"
    out = forecast_to_frame([np.zeros((2, 2))], panel, 2)
    assert isinstance(out, pl.DataFrame) and out.columns == ["a", "b"]


@pytest.mark.parametrize(
    "index", [pd.date_range("2024-01-01", periods=8, freq="15min"), pd.RangeIndex(8)]
)
@pytest.mark.parametrize("name", ["load", None])
def test_series_round_trip(index, name):
    full = pd.Series(np.arange(8.0), index=index, name=name)
    panel = to_panel(full.iloc[:5])
    assert panel.channels == ["load" if name else "0"]
    out = forecast_to_frame([full.iloc[5:].to_numpy()], panel, 3)
    assert isinstance(out, pd.Series)
    pd.testing.assert_series_equal(out, full.iloc[5:], check_freq=False)


@pytest.mark.parametrize("shape", [(10,), (10, 3)])
def test_numpy_round_trip(shape):
    arr = np.arange(np.prod(shape), dtype=np.float64).reshape(shape)
    panel = to_panel(arr)
    c = 1 if len(shape) == 1 else shape[1]
    assert panel.channels == [str(j) for j in range(c)]
    assert panel.last_times == [9] and panel.freq == 1
    np.testing.assert_array_equal(panel.values[0], arr.reshape(10, c).astype(np.float32))
    out = forecast_to_frame([np.ones((4, c), np.float32)], panel, 4)
    assert isinstance(out, np.ndarray) and out.shape == (4, c)


def test_list_input_is_an_array():
    panel = to_panel([1.0, 2.0, 3.0])
    assert panel.spec.library == "numpy" and panel.values[0].shape == (3, 1)


# ----------------------------------------------------------------------------------------------
# forecast_to_frame: types, shapes, continued timestamps
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("freq", ["h", "15min", "W", "W-WED", "ME", "D", "B", "YE"])
@pytest.mark.parametrize("tz", [None, "America/New_York"])
def test_timestamps_continue_frequency(freq, tz):
    idx = pd.date_range("2023-01-01", periods=30, freq=freq, tz=tz)
    df = pd.DataFrame({"y": np.arange(30.0)}, index=idx)
    panel = to_panel(df)
    out = forecast_to_frame([np.zeros((12, 1))], panel, 12)
    expected = _future(idx[-1], freq, 12)
    pd.testing.assert_index_equal(out.index, expected, check_exact=True)
    assert out.index.dtype == idx.dtype


def test_daily_across_dst_is_calendar_daily():
    idx = pd.date_range("2024-03-05", periods=30, freq="D", tz="Europe/Berlin")  # spans DST
    panel = to_panel(pd.DataFrame({"ds": idx, "v": np.arange(30.0)}))
    out = forecast_to_frame([np.zeros((5, 1))], panel, 5)
    assert (out["ds"].dt.hour == 0).all()


def test_forecast_output_types_and_shapes():
    df = pd.DataFrame(
        {"unique_id": ["a"] * 4 + ["b"] * 4, "ds": list(range(4)) * 2, "y": np.arange(8.0)}
    )
    panel = to_panel(df, time_col="ds")
    out = forecast_to_frame([np.zeros((3, 1), np.float32), np.ones((3,), np.float32)], panel, 3)
    assert out.shape == (6, 3) and out["y"].dtype == np.float32
    assert out["unique_id"].tolist() == ["a"] * 3 + ["b"] * 3
    with pytest.raises(DataValidationError, match=r"series 'b' has shape \(2, 1\)"):
        forecast_to_frame([np.zeros((3, 1)), np.zeros((2, 1))], panel, 3)
    with pytest.raises(DataValidationError, match="1 forecast array"):
        forecast_to_frame([np.zeros((3, 1))], panel, 3)


def test_single_observation_has_no_frequency():
    panel = to_panel(pd.DataFrame({"y": [1.0]}, index=pd.DatetimeIndex(["2024-01-01"])))
    assert panel.freq is None
    with pytest.raises(DataValidationError, match="frequency is unknown"):
        forecast_to_frame([np.zeros((2, 1))], panel, 2)


def test_categorical_ids_keep_dtype():
    df = pd.DataFrame(
        {
            "unique_id": pd.Categorical(["b", "b", "a", "a"], categories=["a", "b", "z"]),
            "ds": pd.to_datetime(["2024-01-01", "2024-01-02"] * 2),
            "y": [1.0, 2, 3, 4],
        }
    )
    out = forecast_to_frame([np.zeros((1, 1))] * 2, to_panel(df), 1)
    assert out["unique_id"].dtype == df["unique_id"].dtype
    assert out["unique_id"].tolist() == ["b", "a"]


# ----------------------------------------------------------------------------------------------
# the caller's object is never modified
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("impute", [None, "linear", "ffill", "zero"])
def test_pandas_input_unchanged(impute):
    y = [1.0, np.nan, 3.0, 4.0] if impute else [1.0, 2.0, 3.0, 4.0]
    df = pd.DataFrame(
        {
            "unique_id": ["b", "a", "b", "a"],
            "ds": pd.to_datetime(["2024-01-01"] * 2 + ["2024-01-02"] * 2),
        }
    )
    df["y"] = y
    df = pd.concat([df, df.assign(unique_id=df["unique_id"] + "x")], ignore_index=True)
    before = copy.deepcopy(df)
    panel = to_panel(df, impute=impute)
    panel.values[0][:] = -1.0  # the panel's arrays are its own
    pd.testing.assert_frame_equal(df, before)
    assert list(df.columns) == list(before.columns)
    assert not any(np.shares_memory(v, df["y"].to_numpy()) for v in panel.values)


@pytest.mark.parametrize("impute", [None, "linear", "ffill", "zero"])
def test_polars_input_unchanged(impute):
    y = [1.0, None, 3.0, float("nan"), 5.0] if impute else [1.0, 2.0, 3.0, 4.0, 5.0]
    df = pl.DataFrame({"t": list(range(5)), "y": y, "z": [1, 2, 3, 4, 5]})
    before = df.clone()
    to_panel(df, time_col="t", impute=impute)
    plt.assert_frame_equal(df, before)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_numpy_input_unchanged(dtype):
    arr = np.array([[1.0, np.nan], [2.0, 3.0], [np.nan, 4.0]], dtype=dtype)
    before = arr.copy()
    panel = to_panel(arr, impute="linear")
    np.testing.assert_array_equal(arr, before)
    assert not np.shares_memory(panel.values[0], arr)
    series = pd.Series(arr[:, 1])
    to_panel(series, impute="zero")
    np.testing.assert_array_equal(series.to_numpy(), before[:, 1])


# ----------------------------------------------------------------------------------------------
# imputation
# ----------------------------------------------------------------------------------------------


def test_impute_methods():
    idx = pd.DatetimeIndex(["2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"])
    df = pd.DataFrame({"a": [np.nan, 1.0, np.nan, 3.0, np.nan]}, index=idx)
    get = lambda m: to_panel(df, impute=m).values[0][:, 0].tolist()  # noqa: E731
    assert get("linear") == [1.0, 1.0, 2.0, 3.0, 3.0]
    assert get("ffill") == [1.0, 1.0, 1.0, 3.0, 3.0]
    assert get("zero") == [0.0, 1.0, 0.0, 3.0, 0.0]


def test_impute_linear_is_time_linear():
    # month ends: the interpolation weights follow the day counts, not the row numbers
    idx = pd.date_range("2023-01-31", periods=3, freq="ME")
    df = pd.DataFrame({"a": [0.0, np.nan, 59.0]}, index=idx)  # Jan 31 -> Feb 28 -> Mar 31
    assert to_panel(df, impute="linear").values[0][1, 0] == pytest.approx(28.0)


def test_impute_polars_nulls_per_series():
    df = pl.DataFrame(
        {
            "unique_id": ["a", "b", "a", "b", "a"],
            "ds": [0, 0, 1, 1, 2],
            "y": [1.0, 5.0, None, None, 3.0],
        }
    )
    panel = to_panel(df, impute="ffill", time_col="ds")
    assert panel.values[0][:, 0].tolist() == [1.0, 1.0, 3.0]
    assert panel.values[1][:, 0].tolist() == [5.0, 5.0]


def test_impute_all_missing_column_is_an_error():
    df = pd.DataFrame({"a": [np.nan, np.nan], "b": [1.0, 2.0]})
    with pytest.raises(DataValidationError, match="column 'a' of the series has only missing"):
        to_panel(df, impute="linear")
    assert to_panel(df, impute="zero").values[0][:, 0].tolist() == [0.0, 0.0]


# ----------------------------------------------------------------------------------------------
# errors name the problem
# ----------------------------------------------------------------------------------------------

H6 = pd.date_range("2024-01-01", periods=6, freq="h")


@pytest.mark.parametrize(
    ("data", "kwargs", "exc", "match"),
    [
        (pd.DataFrame({"a": []}), {}, DataValidationError, "empty input"),
        (pl.DataFrame({"a": []}), {}, DataValidationError, "empty input"),
        (np.zeros((0, 2)), {}, DataValidationError, r"empty input.*\(0, 2\)"),
        (
            np.zeros((2, 3, 4)),
            {},
            DataValidationError,
            r"3-D array of shape \(2, 3, 4\).*\(T,\).*\(T, C\)",
        ),
        (np.array(1.0), {}, DataValidationError, r"0-D array"),
        (np.array(["a", "b"]), {}, DataTypeError, "dtype <U1"),
        (np.array([True, False]), {}, DataTypeError, "dtype bool"),
        (
            pd.DataFrame({"a": [1.0]}),
            {"value_cols": ["zz"]},
            DataValidationError,
            r"\['zz'\].*available columns: \['a'\]",
        ),
        (
            pd.DataFrame({"a": [1.0]}),
            {"time_col": "when"},
            DataValidationError,
            r"'when'.*available",
        ),
        (
            pd.DataFrame({"a": [1.0], "s": ["x"]}),
            {},
            DataTypeError,
            "column 's' has non-numeric dtype str",
        ),
        (
            pd.DataFrame({"a": [1.0], "s": [True]}),
            {},
            DataTypeError,
            "column 's' has non-numeric dtype bool",
        ),
        (
            pd.DataFrame({"a": [1.0], "o": pd.Series([{}], dtype=object)}),
            {},
            DataTypeError,
            "column 'o'.*object",
        ),
        (
            pl.DataFrame({"a": [1.0], "s": ["x"]}),
            {},
            DataTypeError,
            "column 's' has non-numeric dtype String",
        ),
        (
            pd.DataFrame({"ds": H6, "a": np.arange(6.0), "when": H6}),
            {},
            DataValidationError,
            r"several datetime columns \['ds', 'when'\]",
        ),
        (
            pd.DataFrame({"ds": ["2024-01-01"], "a": [1.0]}),
            {"time_col": "ds"},
            DataTypeError,
            "time column 'ds' has dtype str",
        ),
        (pd.DataFrame({"a": [1.0]}, index=["x"]), {}, DataTypeError, "index has dtype"),
        (pd.DataFrame({"y": [1.0]}), {"long": True}, DataValidationError, "series id column"),
        (pd.DataFrame({"unique_id": ["a"], "y": [1.0]}), {}, DataValidationError, "no time column"),
        (
            pd.DataFrame({"a": [1.0], "b": [2.0]}).rename(columns={"b": "a"}),
            {},
            DataValidationError,
            r"duplicated column.*'a'",
        ),
    ],
)
def test_structure_errors(data, kwargs, exc, match):
    with pytest.raises(exc, match=match):
        to_panel(data, **kwargs)


def test_wrong_type_is_type_error():
    with pytest.raises(TypeError, match="unsupported input type builtins.dict"):
        to_panel({"a": [1.0]})
    assert issubclass(DataTypeError, TypeError) and issubclass(DataValidationError, ValueError)


def test_nan_error_names_column_time_row_and_count():
    df = pd.DataFrame({"a": [1.0, np.nan, 3, np.nan, 5, 6], "b": np.arange(6.0)}, index=H6)
    with pytest.raises(DataValidationError) as info:
        to_panel(df)
    msg = str(info.value)
    assert "column 'a' has 2 missing" in msg and "row 1" in msg and "2024-01-01 01:00:00" in msg
    assert "impute" in msg and "'b'" not in msg


def test_nan_error_in_long_names_series():
    df = pl.DataFrame(
        {"unique_id": ["a", "b", "a", "b"], "ds": [0, 0, 1, 1], "y": [1.0, 2.0, 3.0, None]}
    )
    with pytest.raises(
        DataValidationError, match=r"column 'y' has 1 missing.*row 3 \(time 1, series 'b'\)"
    ):
        to_panel(df, time_col="ds")


@pytest.mark.parametrize("impute", [None, "linear"])
def test_inf_is_always_an_error(impute):
    df = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [1.0, -np.inf, np.inf]}, index=H6[:3])
    with pytest.raises(
        DataValidationError,
        match=r"column 'b' has 2 infinite value\(s\), first \(-inf\) at row 1 "
        r"\(time 2024-01-01 01:00:00\)",
    ):
        to_panel(df, impute=impute)


def test_float32_overflow_is_an_error():
    with pytest.raises(DataValidationError, match="float32 range"):
        to_panel(np.array([1e300, 1.0]))


def test_unsorted_error_suggests_sorting():
    df = pd.DataFrame({"ds": H6[[0, 1, 3, 2, 4, 5]], "a": np.arange(6.0)})
    with pytest.raises(
        DataValidationError,
        match=r"not sorted.*03:00:00 \(row 2\) is followed by .*02:00:00 \(row 3\).*sort_values",
    ):
        to_panel(df)


def test_duplicated_timestamp_names_time_and_series():
    df = pd.DataFrame(
        {"unique_id": ["a", "a", "b", "b", "b"], "ds": H6[[0, 1, 0, 1, 1]], "y": np.arange(5.0)}
    )
    with pytest.raises(
        DataValidationError, match=r"duplicated timestamp 2024-01-01 01:00:00 in series 'b'"
    ):
        to_panel(df)


def test_irregular_series_names_both_steps():
    df = pd.DataFrame({"a": np.arange(5.0)}, index=H6[[0, 1, 2, 3, 5]])
    with pytest.raises(
        DataValidationError, match=r"irregular time steps in the series: found steps 1h and 2h"
    ):
        to_panel(df)
    long = pd.DataFrame(
        {"unique_id": ["x"] * 3 + ["y"] * 4, "ds": [0, 1, 2, 0, 1, 3, 4], "y": np.arange(7.0)}
    )
    with pytest.raises(DataValidationError, match=r"series 'y': found steps 1 and 2"):
        to_panel(long, time_col="ds")


def test_differing_frequencies_across_series():
    df = pd.DataFrame(
        {
            "unique_id": ["x"] * 3 + ["y"] * 3,
            "ds": list(H6[:3]) + list(pd.date_range("2024", periods=3, freq="30min")),
            "y": np.arange(6.0),
        }
    )
    with pytest.raises(
        DataValidationError,
        match=r"different frequencies: series 'x' has step 1h while series 'y' has step 30min",
    ):
        to_panel(df)
    monthly = pd.DataFrame(
        {
            "unique_id": ["x"] * 3 + ["y"] * 3,
            "ds": list(pd.date_range("2024-01-31", periods=3, freq="ME"))
            + list(pd.date_range("2024-02-01", periods=3, freq="MS")),
            "y": np.arange(6.0),
        }
    )
    with pytest.raises(DataValidationError, match="different frequencies.*MS.*ME"):
        to_panel(monthly)


def test_short_series_mixed_with_calendar_frequency():
    df = pd.DataFrame(
        {
            "unique_id": ["x"] * 4 + ["y"] * 2,
            "ds": list(pd.date_range("2024-01-31", periods=4, freq="ME"))
            + list(pd.date_range("2024-03-31", periods=2, freq="ME")),
            "y": np.arange(6.0),
        }
    )
    panel = to_panel(df)
    assert panel.freq == pd.offsets.MonthEnd()
    out = forecast_to_frame([np.zeros((2, 1))] * 2, panel, 2)
    assert out["ds"].dt.strftime("%Y-%m-%d").tolist() == ["2024-05-31", "2024-06-30"] * 2


def test_min_length_names_series_and_lengths():
    df = pd.DataFrame(
        {
            "unique_id": ["long"] * 6 + ["short"] * 3,
            "ds": list(range(6)) + list(range(3)),
            "y": np.arange(9.0),
        }
    )
    with pytest.raises(
        DataValidationError,
        match=r"series 'short' is too short: it has 3 observation\(s\) but at least 5",
    ):
        to_panel(df, time_col="ds", min_length=5)
    with pytest.raises(
        DataValidationError, match=r"the series is too short: it has 4 .* at least 10"
    ):
        to_panel(np.zeros(4), min_length=10)


def test_bad_arguments():
    with pytest.raises(DataValidationError, match="impute='mean'"):
        to_panel(np.zeros(3), impute="mean")
    with pytest.raises(DataValidationError, match="id_col cannot be used with a pandas Series"):
        to_panel(pd.Series([1.0, 2.0]), id_col="x")


def test_missing_timestamps_and_ids_are_errors():
    df = pd.DataFrame({"ds": [H6[0], pd.NaT, H6[2]], "y": [1.0, 2.0, 3.0]})
    with pytest.raises(
        DataValidationError, match=r"time column 'ds' has 1 missing value\(s\), first at row 1"
    ):
        to_panel(df)
    df = pl.DataFrame({"unique_id": ["a", None], "ds": [0, 1], "y": [1.0, 2.0]})
    with pytest.raises(DataValidationError, match="id column 'unique_id' has 1 missing"):
        to_panel(df, time_col="ds")


def test_timezone_is_kept():
    idx = pd.date_range("2024-06-01", periods=5, freq="h", tz="Asia/Kolkata")
    panel = to_panel(pd.Series(np.arange(5.0), index=idx))
    assert panel.last_times[0] == idx[-1] and panel.spec.tz == idx.tz
    out = forecast_to_frame([np.zeros(2)], panel, 2)
    assert out.index.tz == idx.tz
    pd.testing.assert_index_equal(out.index, _future(idx[-1], "h", 2))


# ----------------------------------------------------------------------------------------------
# channels at predict time
# ----------------------------------------------------------------------------------------------


def test_check_same_channels():
    panel = to_panel(pd.DataFrame({"a": [1.0, 2.0], "b": [3.0, 4.0]}))
    assert isinstance(panel, Panel)
    check_same_channels(panel, ["a", "b"])
    with pytest.raises(
        DataValidationError,
        match=r"missing channel\(s\) \['c'\] and unexpected channel\(s\) \['b'\]",
    ):
        check_same_channels(panel, ["a", "c"])
    with pytest.raises(DataValidationError, match=r"missing channel\(s\) \['c'\]"):
        check_same_channels(panel, ["a", "b", "c"])
    with pytest.raises(DataValidationError, match="different order"):
        check_same_channels(panel, ["b", "a"])
