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


def series_widening(quantiles: np.ndarray, actual: np.ndarray, known: np.ndarray, levels, series: np.ndarray,
                    n_series: int) -> np.ndarray:
    """[n_series, pairs]: ``conformal_widening``'s rank on each series' own scores (``series`` names
    the series of each backtest row), the pooled value where a series has too few."""
    pooled = rules.conformal_widening(quantiles, actual, known, levels)
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
    """The shipped backtests, scored per series: [N, pairs] (no change without any)."""
    runs = rules.backtests(step_fn, values, mask, freq_id, horizon, levels, step, context, windows, **rules_options)
    if not runs:
        return np.zeros((values.shape[0], len(rules.interval_pairs(levels))))
    return series_widening(np.concatenate([b.forecast for b in runs]), np.concatenate([b.actual for b in runs]),
                           np.concatenate([b.known for b in runs]), levels, np.concatenate([b.rows for b in runs]),
                           values.shape[0])


def widen(quantiles: np.ndarray, widening: np.ndarray, levels) -> np.ndarray:
    """Each series' central intervals moved outward by its own factors."""
    widening = np.asarray(widening)
    if widening.ndim == 1:
        return shipped_widen(quantiles, widening, levels)
    return np.concatenate([shipped_widen(quantiles[i:i + 1], widening[i], levels)
                           for i in range(quantiles.shape[0])], axis=0)


if __name__ == "__main__":
    run_zero_shot_with(backtest_widening=backtest_widening, widen=widen)
