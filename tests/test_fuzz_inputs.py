"""Property-based fuzzing of the input layer (issue 27): random long and wide frames with gaps,
duplicates, zones, text/slash/integer stamps, NaN/inf/extreme values and look-alike-missing ids.

The contract: ``Forecaster.predict(df)`` returns a valid forecast (H rows per series, stamps after
each series' history and strictly increasing, finite values, sorted quantiles) or raises
``InputError`` with one line; never another exception. The same for the edge runtime's
``predict`` on random arrays (a forecast or one ``ValueError`` line).

Profiles (derandomized, so CI sees the same examples every run): ``TSFM_FUZZ_PROFILE=ci``
(default, 150 examples per test, well under a minute here) or ``long`` (10,000, by hand);
``TSFM_FUZZ_EXAMPLES=N`` sets any count::

    TSFM_FUZZ_PROFILE=long python -m pytest -q tests/test_fuzz_inputs.py
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from tsfm import Forecaster  # noqa: E402
from tsfm.errors import InputError  # noqa: E402

PROFILES = {"ci": 150, "long": 10_000}
PROFILE = os.environ.get("TSFM_FUZZ_PROFILE", "ci")
FUZZ = settings(
    max_examples=int(os.environ.get("TSFM_FUZZ_EXAMPLES") or PROFILES.get(PROFILE, PROFILES["ci"])),
    derandomize=True,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)
H = 5
LEVELS = ("0.1", "0.5", "0.9")

FREQS = ["D", "h", "MS", "W", "QS", "YS", "15min", "B", "ME"]
ZONES = [None, "UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"]
IDS = ["a", "b", "NA", "None", "nan", "1", " x ", "é"]
VALUES = st.one_of(
    st.floats(-1e6, 1e6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([np.nan, 0.0, 1e300, -1e300, 1e-300, 1e38, 5e-324, 1.7e308]),
)


@st.composite
def frames(draw) -> pd.DataFrame:
    """A long or wide frame with the defects users have."""
    freq = draw(st.sampled_from(FREQS))
    zone = draw(st.sampled_from(ZONES))
    n_series = draw(st.integers(1, 3))
    stamps = draw(st.sampled_from(["datetime", "iso", "slash", "integer"]))
    start = pd.Timestamp("2000-01-01") + pd.Timedelta(days=draw(st.integers(0, 9000)))
    ids = draw(st.lists(st.sampled_from(IDS), min_size=n_series, max_size=n_series, unique=True))
    if draw(st.integers(0, 9)) == 9:  # two series under one id (hypothesis favours small draws)
        ids[-1] = ids[0]
    parts = []
    for k in range(n_series):
        n = draw(st.one_of(st.integers(3, 40), st.integers(0, 2)))
        ds = pd.date_range(start, periods=n, freq=freq, tz=zone)
        if stamps == "integer":
            ds = pd.Index(np.arange(n) * draw(st.sampled_from([1, 2])) + draw(st.integers(-5, 100)))
        level = draw(st.sampled_from([1.0, 100.0, 1e-300, 1e300, -50.0]))
        shape = draw(st.sampled_from(["sine", "constant", "random"]))
        t = np.arange(n)
        y = level * (2 + np.sin(t / 3) if shape == "sine" else np.ones(n)) if shape != "random" else np.array(
            draw(st.lists(VALUES, min_size=n, max_size=n)), dtype=float)
        part = pd.DataFrame({"unique_id": ids[k], "ds": ds, "y": y})
        keep = draw(st.lists(st.booleans(), min_size=n, max_size=n)) if draw(st.booleans()) else [True] * n
        part = part[np.asarray(keep, dtype=bool)] if n else part
        if draw(st.integers(0, 7)) == 7 and len(part):  # a duplicated row
            part = pd.concat([part, part.sample(1, random_state=draw(st.integers(0, 99)))])
        parts.append(part)
    df = pd.concat(parts, ignore_index=True)
    if draw(st.booleans()):
        df = df.sample(frac=1, random_state=draw(st.integers(0, 99))).reset_index(drop=True)
    if stamps == "iso" and len(df):
        df["ds"] = df["ds"].astype(str)
    elif stamps == "slash" and len(df):
        parsed = pd.to_datetime(df["ds"].astype(str), utc=zone is not None, format="ISO8601")
        df["ds"] = parsed.dt.strftime("%d/%m/%Y %H:%M")
    if draw(st.booleans()):  # wide: one column per id (needs unique (id, ds) pairs)
        try:
            df = df.pivot(index="ds", columns="unique_id", values="y").reset_index()
            df.columns = [str(c) for c in df.columns]
        except ValueError:
            pass
    return df


@pytest.fixture(scope="module")
def fitted(tiny_checkpoint):
    from conftest import monthly_frame

    return Forecaster(model=str(tiny_checkpoint), horizon=H, quantiles=LEVELS).fit(monthly_frame(1))


def _check_forecast(df: pd.DataFrame, fc: pd.DataFrame) -> None:
    assert list(fc.columns[-4:]) == ["mean", *LEVELS], fc.columns
    values = fc[["mean", *LEVELS]].to_numpy(dtype=float)
    assert np.isfinite(values).all(), fc
    assert (np.diff(values[:, 1:], axis=1) >= -1e-6 * np.abs(values[:, 1:-1]).max(initial=1)).all(), fc
    for _, rows in fc.groupby("unique_id", sort=False):
        assert len(rows) % H == 0, rows
        for block in range(len(rows) // H):
            ds = pd.Index(rows["ds"].iloc[block * H:(block + 1) * H])
            assert ds.is_monotonic_increasing and ds.is_unique, ds


@FUZZ
@given(df=frames(), as_csv=st.booleans())
def test_frames_forecast_or_one_line_error(fitted, df, as_csv):
    data = df
    with tempfile.TemporaryDirectory() as folder:
        if as_csv:
            data = Path(folder) / "input.csv"
            df.to_csv(data, index=False)
        try:
            fc = fitted.predict(data, h=H)
        except InputError as err:
            message = str(err)
            assert message and "\n" not in message, message
            return
    _check_forecast(df, fc)


@pytest.fixture(scope="module")
def edge_model(tiny_checkpoint, tmp_path_factory):
    import tsfm_runtime
    from tsfm.export.onnx_export import export_onnx

    path = export_onnx(tiny_checkpoint, tmp_path_factory.mktemp("fuzz-onnx") / "model.onnx")
    return tsfm_runtime.load(path, num_threads=1)


@FUZZ
@given(values=st.lists(VALUES, min_size=1, max_size=80), channels=st.integers(1, 2),
       horizon=st.integers(1, 40), freq=st.sampled_from([None, "h", "MS", "D", 3]))
def test_edge_runtime_forecast_or_one_line_error(edge_model, values, channels, horizon, freq):
    past = np.array(values, dtype=np.float64)
    past = past[: len(past) - len(past) % channels].reshape(-1, channels)[None] if len(past) >= channels else past
    try:
        q = edge_model.predict(past, freq=freq, horizon=horizon)
    except ValueError as err:
        assert str(err) and "\n" not in str(err), str(err)
        return
    assert q.shape[1] == horizon and np.isfinite(q).all()
    assert (np.diff(q, axis=-1) >= 0).all()
