"""Run ``benchmarks/zero_shot.py`` with the suite's interval calibration fitted per series (a trial;
its rule is in this folder's README).

The shipped calibration (``tsfm_runtime.rules.backtest_widening``) pools every series' backtest
scores into one widening per central interval. Here each series gets the widening of its own
scores; a series with too few scores for an interval's conformal rank takes the pooled one.

    python benchmarks/trials/series_calibration.py --skip-stats --reuse benchmarks/results/zero_shot.json \
        --models ttm --output /tmp/series_calibration.md
    python benchmarks/compare.py /tmp/series_calibration.json ttm ttm \
        --reference-results benchmarks/results/zero_shot.json
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swapped_rule import run_zero_shot_with  # noqa: E402

import tsfm_runtime.rules as rules  # noqa: E402

shipped_widen = rules.widen


def series_widening(quantiles: np.ndarray, actual: np.ndarray, known: np.ndarray, levels, series: np.ndarray
                    ) -> np.ndarray:
    """[N, pairs]: ``conformal_widening``'s rank on each series' own scores (rows of ``series``
    name the series of each backtest row), the pooled value where a series has too few."""
    pooled = rules.conformal_widening(quantiles, actual, known, levels)
    n_series = int(series.max()) + 1 if series.size else 0
    out = np.tile(pooled, (n_series, 1))
    for p, (lo, hi) in enumerate(rules.interval_pairs(levels)):
        lower, upper = quantiles[..., lo], quantiles[..., hi]
        width = upper - lower
        usable = known & np.isfinite(actual) & (width > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            scores = np.maximum(lower - actual, actual - upper) / width
        coverage = 1.0 - 2.0 * float(levels[lo])
        for i in range(n_series):
            own = scores[series == i][usable[series == i]].astype(np.float64)
            rank = int(np.ceil((own.size + 1) * coverage))
            if 1 <= rank <= own.size:
                out[i, p] = max(float(np.sort(own)[rank - 1]), -0.5)
    return out


def backtest_widening(step_fn, values, mask, freq_id, horizon, levels, step, context, windows, **rules_options):
    """The shipped backtests, scored per series: [N, pairs]."""
    n_steps = values.shape[1]
    forecasts, actuals, known, series = [], [], [], []
    for k in range(1, windows + 1):
        cut = n_steps - k * horizon
        if cut < horizon:
            break
        rows = np.flatnonzero((rules.observed(values[:, :cut], mask[:, :cut]).any(axis=2)).sum(axis=1) >= horizon)
        if rows.size == 0:
            break
        head_values, head_mask = rules.fit_context(values[rows, :cut], mask[rows, :cut], context)
        forecasts.append(rules._processed(step_fn, head_values, head_mask, freq_id[rows], horizon, levels, step,
                                          past_exog=None, future_exog=None, **rules_options))
        actuals.append(values[rows, cut:cut + horizon])
        known.append(rules.observed(values[rows, cut:cut + horizon], mask[rows, cut:cut + horizon]))
        series.append(rows)
    pairs = len(rules.interval_pairs(levels))
    if not forecasts:
        return np.zeros((values.shape[0], pairs))
    widening = series_widening(np.concatenate(forecasts), np.concatenate(actuals), np.concatenate(known), levels,
                               np.concatenate(series))
    if widening.shape[0] < values.shape[0]:  # series after the last backtested one: the pooled value
        pooled = rules.conformal_widening(np.concatenate(forecasts), np.concatenate(actuals),
                                          np.concatenate(known), levels)
        widening = np.vstack([widening, np.tile(pooled, (values.shape[0] - widening.shape[0], 1))])
    return widening


def widen(quantiles: np.ndarray, widening: np.ndarray, levels) -> np.ndarray:
    """Each series' central intervals moved outward by its own factors."""
    widening = np.asarray(widening)
    if widening.ndim == 1:
        return shipped_widen(quantiles, widening, levels)
    return np.concatenate([shipped_widen(quantiles[i:i + 1], widening[i], levels)
                           for i in range(quantiles.shape[0])], axis=0)


if __name__ == "__main__":
    run_zero_shot_with(backtest_widening=backtest_widening, widen=widen)
