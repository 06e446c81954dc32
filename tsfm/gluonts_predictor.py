"""A GluonTS ``Predictor`` over a fitted ``Forecaster``, for GluonTS backtesting and metrics."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
from gluonts.dataset.common import Dataset
from gluonts.model.forecast import QuantileForecast
from gluonts.model.predictor import Predictor


class TSFMPredictor(Predictor):
    """Yields one ``QuantileForecast`` per entry (univariate), keys ``"0.1"``... plus ``"mean"``."""

    def __init__(self, forecaster) -> None:
        super().__init__(prediction_length=forecaster.horizon_)
        self.forecaster = forecaster

    def predict(self, dataset: Dataset, **kwargs) -> Iterator[QuantileForecast]:
        from tsfm.data.gluonts_adapters import from_gluonts, period_freq
        from tsfm.pipeline import forecast_frame

        entries = list(dataset)
        series = from_gluonts(entries, freq=self.forecaster.freq_)
        names = list(self.forecaster.quantile_names_)
        frame = forecast_frame(self.forecaster.model_, series, self.prediction_length, self.forecaster.levels_, names,
                               **self.forecaster.forecast_options())
        h = self.prediction_length
        for i, entry in enumerate(entries):
            rows = frame.iloc[i * h:(i + 1) * h]
            arrays = np.stack([rows[name].to_numpy() for name in names] + [rows["mean"].to_numpy()])
            start = pd.Period(rows["ds"].iloc[0], freq=period_freq(series.freq))  # first forecast step
            yield QuantileForecast(arrays, start_date=start, forecast_keys=names + ["mean"],
                                   item_id=entry.get("item_id", series.ids[i]))
