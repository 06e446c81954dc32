"""statsforecast's models as ensemble members: quantiles at our levels, series by series, never a crash.

``forecast_cuts`` forecasts ``h`` steps after given cut points of every history with one
statsforecast model (AutoETS, AutoTheta, AutoARIMA, SeasonalNaive; the real library) and returns
quantiles ``[N, cuts, h, Q]``. A statsforecast interval at level L (%) has the quantiles
(1 - L/100)/2 and (1 + L/100)/2 as its bounds, and the point forecast is the 0.5 quantile
(``interval_levels`` / ``to_quantiles``, the one conversion). A series the model fails on (an
exception, a non-finite output, too few points) gets NaN there and its error is counted, so the
ensemble degrades to its other members for that series. Work is split over ``n_jobs`` processes.

Costs are bounded by the caller (``tsfm.auto``): histories are cut to their last ``context``
points, and with ``refit=False`` a model is fitted once at a series' first cut and only run forward
(statsforecast's ``forward``: same parameters, new data) at the later ones, as statsforecast's
``cross_validation(refit=False)`` does.
"""

from __future__ import annotations

import multiprocessing
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MODELS = ("SeasonalNaive", "AutoTheta", "AutoETS", "AutoARIMA")
MIN_POINTS = 3


@dataclass(frozen=True)
class StatsMember:
    """One statsforecast model with its settings: ``AutoARIMA`` + ``{"approximation": True}``."""

    model: str
    options: tuple[tuple[str, Any], ...] = ()
    label: str = ""

    @property
    def name(self) -> str:
        return self.label or self.model

    def build(self, season: int):
        import statsforecast.models as models

        return getattr(models, self.model)(season_length=max(int(season), 1), **dict(self.options))


@dataclass
class StatsResult:
    quantiles: np.ndarray  # [N, cuts, h, Q], NaN where the model gave nothing
    errors: dict[str, int] = field(default_factory=dict)  # one line per kind of failure -> series count


def interval_levels(levels: Sequence[float]) -> list[int]:
    """statsforecast's ``level=`` (interval coverages in %) whose bounds are the quantile ``levels``."""
    out = sorted({round(abs(1.0 - 2.0 * float(q)) * 100, 6) for q in levels if abs(float(q) - 0.5) > 1e-9})
    return [int(x) if float(x).is_integer() else x for x in out]


def to_quantiles(result: dict[str, np.ndarray], levels: Sequence[float]) -> np.ndarray:
    """statsforecast's ``{"mean", "lo-80", "hi-80", ...}`` -> ``[h, Q]`` at ``levels``: level L gives the
    quantiles (1 -+ L/100)/2; 0.5 is the point forecast (the median of the symmetric intervals)."""
    columns = []
    for q in levels:
        coverage = round(abs(1.0 - 2.0 * float(q)) * 100, 6)
        if coverage == 0:
            columns.append(result["mean"])
            continue
        key = int(coverage) if float(coverage).is_integer() else coverage
        columns.append(result[f"{'lo' if q < 0.5 else 'hi'}-{key}"])
    return np.stack([np.asarray(c, dtype=np.float64) for c in columns], axis=-1)


def clean_history(values: np.ndarray, context: int) -> np.ndarray | None:
    """The last ``context`` points without leading/trailing gaps, inner gaps interpolated (float64), or
    None when fewer than ``MIN_POINTS`` are observed."""
    y = np.asarray(values, dtype=np.float64)[-context:]
    seen = np.flatnonzero(np.isfinite(y))
    if seen.size < MIN_POINTS:
        return None
    y = y[seen[0]:]
    gaps = ~np.isfinite(y)
    if gaps.any():
        idx = np.arange(y.size)
        y[gaps] = np.interp(idx[gaps], idx[~gaps], y[~gaps])
    return y


def _forecast_one(member: StatsMember, season: int, history: np.ndarray, cuts: Sequence[int], h: int,
                  levels: Sequence[float], context: int, refit: bool) -> tuple[np.ndarray, str | None]:
    """[cuts, h, Q] for one series (NaN where no cut could be forecast) and the first error."""
    out = np.full((len(cuts), h, len(levels)), np.nan)
    interval = interval_levels(levels)
    fitted, error = None, None
    for j, cut in enumerate(cuts):
        y = clean_history(history[:cut], context)
        if y is None:
            error = error or "too few observed points"
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                if refit or fitted is None:
                    model = member.build(season)
                    if refit:
                        raw = model.forecast(y=y, h=h, level=interval)
                    else:
                        fitted = model.fit(y=y)
                        raw = fitted.predict(h=h, level=interval)
                else:
                    raw = fitted.forward(y=y, h=h, level=interval)
            quantiles = np.sort(to_quantiles(raw, levels), axis=-1)
        except Exception as err:  # noqa: BLE001 - one failing series must not end the others
            error = error or f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}".strip()
            fitted = None
            continue
        if not np.isfinite(quantiles).all() or quantiles.shape != out.shape[1:]:
            error = error or "non-finite forecast"
            continue
        out[j] = quantiles
    return out, error


def _run_chunk(args: tuple) -> tuple[np.ndarray, list[str | None]]:
    member, season, histories, cuts, h, levels, context, refit = args
    results = [_forecast_one(member, season, y, c, h, levels, context, refit) for y, c in zip(histories, cuts)]
    width = max(len(c) for c in cuts)
    values = np.full((len(results), width, h, len(levels)), np.nan)
    for row, (forecast, _) in enumerate(results):
        values[row, :len(forecast)] = forecast
    return values, [r[1] for r in results]


def forecast_cuts(member: StatsMember, histories: Sequence[np.ndarray], cuts: Sequence[Sequence[int]], h: int,
                  levels: Sequence[float], season: int, *, context: int, refit: bool = True,
                  n_jobs: int = 1) -> StatsResult:
    """Quantiles ``[N, max cuts, h, Q]`` of ``member`` forecasting ``h`` steps after each cut of each
    history (``histories[i][:cut]``; cuts oldest first, padded with NaN where a series has fewer)."""
    n, width = len(histories), max((len(c) for c in cuts), default=0)
    out = np.full((n, width, h, len(levels)), np.nan)
    if n == 0 or width == 0:
        return StatsResult(out)
    jobs = max(1, min(int(n_jobs), n))
    order = np.argsort([-len(y) for y in histories], kind="stable")  # long series spread over the chunks
    chunks = [order[i::jobs * 4] for i in range(jobs * 4)] if jobs > 1 else [order]
    chunks = [c for c in chunks if c.size]
    tasks = [(member, season, [histories[i] for i in c], [list(cuts[i]) for i in c], h, list(levels), context,
              refit) for c in chunks]
    if jobs == 1:
        results = [_run_chunk(t) for t in tasks]
    else:
        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("fork")) as pool:
            results = list(pool.map(_run_chunk, tasks))
    errors: dict[str, int] = {}
    for chunk, (values, chunk_errors) in zip(chunks, results):
        for row, i in enumerate(chunk):
            out[i, :values.shape[1]] = values[row]
        for error in chunk_errors:
            if error:
                errors[error] = errors.get(error, 0) + 1
    return StatsResult(out, errors)


def available_cpus() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
