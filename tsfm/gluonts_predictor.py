"""A GluonTS ``Predictor`` over a fitted ``Forecaster``, for GluonTS backtesting and metrics."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
from gluonts.dataset.common import Dataset
from gluonts.model.forecast import QuantileForecast
from gluonts.model.predictor import Predictor

from tsfm.errors import InputError
from tsfm_runtime.rules import MIN_OBSERVED

FORECASTER_FOLDER = "forecaster"


def _rounds(entries: list[dict]) -> list[list[int]]:
    """Entry indexes in rounds of one frequency each that hold a series (an ``item_id``) at most once.

    A rolling GluonTS backtest passes every window of a series together, under one ``item_id``,
    and the suite calibrates its intervals on backtests pooled over the series forecast together:
    a later window's history would then reach into an earlier window's test period. Forecast
    apart, it cannot. An entry without ``item_id`` is a series of its own.
    """
    seen: dict[tuple, int] = {}
    rounds: dict[tuple, list[int]] = {}
    for i, entry in enumerate(entries):
        freq = entry["start"].freqstr if isinstance(entry["start"], pd.Period) else None
        key = (freq, entry["item_id"]) if "item_id" in entry else (freq, None, i)
        seen[key] = seen.get(key, -1) + 1
        rounds.setdefault((freq, seen[key]), []).append(i)
    return list(rounds.values())


class TSFMPredictor(Predictor):
    """Yields one ``QuantileForecast`` per univariate entry, keys ``"0.1"``... plus ``"mean"``.

    Each entry is forecast at its own frequency (its ``start`` period's; the fitted one for
    entries that start at a timestamp) as ``Forecaster.predict(df)`` forecasts it: by the fitted
    model and plan, or at another frequency by what ``fit`` would choose for that frequency.
    A model fine-tuned with known-future covariates reads the ``prediction_length`` values of
    ``feat_dynamic_real`` past each target, as GluonTS' test inputs carry them; past-only ones are
    ``past_feat_dynamic_real``, and each field's rows are taken in the fine-tuned columns' order.
    """

    def __init__(self, forecaster) -> None:
        horizon = getattr(forecaster, "horizon_", None) or forecaster.horizon
        if horizon is None:
            raise InputError("this Forecaster has no horizon (loaded without its series): give it horizon=H")
        super().__init__(prediction_length=int(horizon))
        self.forecaster = forecaster

    def predict(self, dataset: Dataset, **kwargs) -> Iterator[QuantileForecast]:
        from tsfm.data.gluonts_adapters import from_gluonts, period_freq

        entries = list(dataset)
        for j, entry in enumerate(entries):
            if np.ndim(entry["target"]) != 1:
                raise InputError(f"GluonTS entry {entry.get('item_id', j)!r} has {np.shape(entry['target'])[0]} "
                                 "target rows: the predictor forecasts univariate entries (one target each)")
        names = list(self.forecaster.quantile_names_)
        h = self.prediction_length
        forecasts: list[QuantileForecast | None] = [None] * len(entries)
        for indexes in _rounds(entries):
            part = [entries[i] if "item_id" in entries[i] else {**entries[i], "item_id": str(i)} for i in indexes]
            periods = isinstance(part[0]["start"], pd.Period)  # a round holds one kind of start
            series = from_gluonts(part, freq=None if periods else self.forecaster.freq_, min_length=MIN_OBSERVED)
            frame = self.forecaster.forecast_series(series, h, self._known_future(part, series))
            for k, i in enumerate(indexes):
                rows = frame.iloc[k * h:(k + 1) * h]
                arrays = np.stack([rows[name].to_numpy() for name in names] + [rows["mean"].to_numpy()])
                # the first forecast step, labelled in the entry's own periods (Q-MAR stays Q-MAR: its stamps
                # read as quarters from January, whose periods would be labelled Q-DEC)
                pfreq = part[k]["start"].freq if periods else period_freq(series.freq)
                start = pd.Period(rows["ds"].iloc[0], freq=pfreq)
                forecasts[i] = QuantileForecast(arrays, start_date=start, forecast_keys=names + ["mean"],
                                                item_id=part[k]["item_id"])
        yield from forecasts

    def _known_future(self, entries: list[dict], series) -> pd.DataFrame | None:
        """``X_future`` from the ``feat_dynamic_real`` steps after each entry's target, or None when
        the fitted model reads no known-future covariates."""
        from tsfm.pipeline import reads_future_covariates

        if not reads_future_covariates(self.forecaster.model_):
            return None
        h = self.prediction_length
        frames = []
        for i, entry in enumerate(entries):
            t = len(entry["target"])
            known = np.atleast_2d(np.asarray(entry.get("feat_dynamic_real", []), dtype=np.float64))  # [Ef, steps]
            if known.shape[1] < t + h:
                raise InputError(
                    f"GluonTS entry {entry['item_id']!r}: the model uses known-future covariates, so its "
                    f"feat_dynamic_real must run {h} steps past its target ({t + h} in all); it has {known.shape[1]}")
            columns = dict(zip(series.future_exog_names, known[:, t:t + h]))
            frames.append(pd.DataFrame({"unique_id": series.ids[i], "ds": series.future_index(i, h), **columns}))
        return pd.concat(frames, ignore_index=True)

    def serialize(self, path: Path) -> None:
        """GluonTS' type and version files, and the Forecaster (``Forecaster.save``) beside them."""
        super().serialize(path)
        self.forecaster.save(Path(path) / FORECASTER_FOLDER)
        (Path(path) / "tsfm.json").write_text(json.dumps({"horizon": self.prediction_length}))

    @classmethod
    def deserialize(cls, path: Path, **kwargs) -> TSFMPredictor:
        from tsfm.forecaster import Forecaster

        forecaster = Forecaster.load(Path(path) / FORECASTER_FOLDER)
        forecaster.horizon_ = int(json.loads((Path(path) / "tsfm.json").read_text())["horizon"])
        return cls(forecaster)
