"""Run ``benchmarks/zero_shot.py`` with seasonal contexts shown to the networks after classical
multiplicative decomposition (a trial; its rule is in this folder's README).

A channel qualifies when its data has a season m > 1 and its observed context is strictly
positive, gap-free after its first observation, at least 3m steps long and seasonal by the 90%
autocorrelation test at lag m (the test of the M4 competition's benchmarks). It is divided by its
seasonal indices before the network and the rollout, and its quantiles are multiplied back by the
indices of their phases; this holds in every forecast and every calibration backtest.

The suite has shipped this rule since (``seasonal_adjustment`` in its ``suite.json``): to repeat
the trial, set that to false in a copy of the suite and name the copy in ``--models``.

    python benchmarks/trials/deseasonalize.py --skip-stats --reuse benchmarks/results/zero_shot.json \
        --models ttm --output /tmp/deseasonalize.md
    python benchmarks/compare.py /tmp/deseasonalize.json ttm ttm --reference-results benchmarks/results/zero_shot.json
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swapped_rule import run_zero_shot_with  # noqa: E402

import tsfm_runtime.rules as rules  # noqa: E402

shipped_processed = rules._processed
TEST_Z = 1.645  # the 90% test of the M4 benchmarks: r_m beyond 1.645 of its standard error


def is_seasonal(y: np.ndarray, m: int) -> bool:
    """The autocorrelation at lag ``m`` exceeds 1.645 of its standard error (Bartlett's formula)."""
    x = y - y.mean()
    denom = float(x @ x)
    if len(y) < 3 * m or denom <= 0:
        return False
    r = np.array([float(x[k:] @ x[:-k]) / denom for k in range(1, m + 1)])
    limit = TEST_Z * np.sqrt((1 + 2 * np.sum(r[:-1] ** 2)) / len(y))
    return abs(r[-1]) > limit


def seasonal_indices(y: np.ndarray, m: int) -> np.ndarray:
    """[m] multiplicative indices, phase 0 at ``y[0]``: per-phase means of ``y`` over its centred
    moving average (order m, 2 x m for even m), normalised to mean 1."""
    ma = np.convolve(y, np.ones(m) / m, mode="valid")
    if m % 2 == 0:
        ma, offset = (ma[:-1] + ma[1:]) / 2, m // 2
    else:
        offset = (m - 1) // 2
    ratios = y[offset:offset + len(ma)] / ma
    phases = np.arange(offset, offset + len(ma)) % m
    indices = np.array([ratios[phases == p].mean() for p in range(m)])
    return indices / indices.mean()


def season_factors(values: np.ndarray, mask: np.ndarray, season: int, horizon: int
                   ) -> tuple[np.ndarray, np.ndarray] | None:
    """Factors [N, T, C] for the context and [N, horizon, C] for the forecast (1 where a channel
    does not qualify), or None when none does."""
    n, t, c = values.shape
    seen = rules.observed(values, mask)
    past, ahead = np.ones((n, t, c)), np.ones((n, horizon, c))
    found = False
    for i in range(n):
        for j in range(c):
            where = np.flatnonzero(seen[i, :, j])
            if where.size == 0:
                continue
            start = where[0]
            y = values[i, start:, j].astype(np.float64)
            if where.size != t - start or np.any(y <= 0) or not is_seasonal(y, season):
                continue
            indices = seasonal_indices(y, season)
            past[i, start:, j] = indices[np.arange(t - start) % season]
            ahead[i, :, j] = indices[np.arange(t - start, t - start + horizon) % season]
            found = True
    return (past, ahead) if found else None


def processed(step_fn, values, mask, freq_id, horizon, levels, step, log_scale, season, nonnegative,
              past_exog, future_exog, seasonal_adjustment=False):  # noqa: ARG001 - the trial adjusts whatever is asked
    """The shipped ``_processed`` on the seasonally adjusted context, its quantiles reseasonalised
    (the shipped adjustment stays off, so nothing is adjusted twice)."""
    factors = season_factors(values, mask, season, horizon) if season > 1 else None
    if factors is None:
        return shipped_processed(step_fn, values, mask, freq_id, horizon, levels, step, log_scale, season,
                                 nonnegative, past_exog, future_exog)
    past, ahead = factors
    adjusted = np.where(rules.observed(values, mask), values / past, values).astype(np.float32)
    out = shipped_processed(step_fn, adjusted, mask, freq_id, horizon, levels, step, log_scale, season,
                            nonnegative, past_exog, future_exog)
    return np.sort(out * ahead[..., None], axis=-1).astype(np.float32)


if __name__ == "__main__":
    run_zero_shot_with(_processed=processed)
