"""Fitting a quantile aggregation from backtests: per-level weights on the simplex, shrunk toward
equal weights, and a conformal calibration measured out of sample.

The data are backtest forecasts of M members at Q levels on P scored points (one point = one
series, window and horizon step): ``forecasts [M, P, Q]``, the ``actual [P]`` values, a ``scale [P]``
per point (the series' in-sample seasonal-naive error, so that every series counts alike, as in
MASE), the ``window [P]`` each point belongs to and its ``unit [P]`` (one id per series x window).

- **Weights** (Fakoor et al., "Flexible model aggregation for quantile regression"): for each level
  q, the simplex vector minimising the mean scaled pinball loss of the weighted quantile, found by
  exponentiated gradient (mirror descent on the simplex, best iterate kept). The loss is convex and
  piecewise linear, so the solver reaches the optimum up to its step size (checked against an LP).
- **Shrinkage**: ``w = (n w_fit + k e) / (n + k)`` with ``e`` the prior (equal weights here;
  ``tsfm.auto`` passes its default model alone), ``n`` the number of scored units (series x windows;
  ``count="points"`` counts points instead) and ``k = SHRINKAGE``: one series with 4 windows keeps
  4/14 of its fitted weights, a hundred series with 4 windows 98%. Fewer than ``MIN_WINDOWS``
  windows: the prior (nothing is fitted).
- **Calibration** from leave-one-window-out aggregates: each window is aggregated with weights fitted
  on the other windows, and ``tsfm_runtime.rules.conformal_widening`` measures, on those honest
  forecasts, how much each central interval must widen to cover its share. Calibrating on the very
  forecasts the weights were fitted on would be optimistic (in-sample weights look better than they
  are); with the prior's weights nothing was fitted, so one window calibrates on its own aggregate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tsfm_runtime import aggregate, rules

SHRINKAGE = 10.0  # k: the weight of the equal-weight prior, in scored units (series x windows)
COUNT = "units"  # what n counts: "units" (series x windows) or "points" (series x windows x steps)
MIN_WINDOWS = 2  # fewer backtest windows than this: equal weights
SOLVER_STEPS = 300
MAX_POINTS = 50_000  # the solver reads at most this many points (an even subsample of the rest)


@dataclass
class Backtests:
    """Members' backtest forecasts and what happened, flattened to scored points."""

    forecasts: np.ndarray  # [M, P, Q]: NaN where a member has no forecast of that point
    actual: np.ndarray  # [P]
    scale: np.ndarray  # [P] > 0
    window: np.ndarray  # [P] int: which backtest window
    unit: np.ndarray  # [P] int: which series x window

    @property
    def n_windows(self) -> int:
        return int(np.unique(self.window).size)

    def subset(self, keep: np.ndarray) -> Backtests:
        return Backtests(self.forecasts[:, keep], self.actual[keep], self.scale[keep], self.window[keep],
                         self.unit[keep])


def pinball(actual: np.ndarray, quantiles: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Pinball loss of ``quantiles [..., Q]`` for ``actual [...]``, per level ``[..., Q]``."""
    diff = np.asarray(actual, dtype=np.float64)[..., None] - quantiles
    q = np.asarray(levels, dtype=np.float64)
    return np.maximum(q * diff, (q - 1.0) * diff)


def simplex_weights(forecasts: np.ndarray, actual: np.ndarray, levels: Sequence[float],
                    steps: int = SOLVER_STEPS) -> np.ndarray:
    """``[M, Q]``: per level, the simplex weights minimising the mean pinball loss of ``forecasts [M, P, Q]``
    (already scaled) against ``actual [P]``. Exponentiated gradient with normalised steps 1/sqrt(t);
    the best iterate of each level is kept."""
    m, p, q = forecasts.shape
    if m == 1:
        return np.ones((1, q))
    levels_arr = np.asarray(levels, dtype=np.float64)
    # Translation invariance (weights sum to 1): measure everything from the members' median, so the
    # gradient is about errors, not the series' level.
    centre = np.median(forecasts, axis=0)  # [P, Q]
    x = (forecasts - centre[None]).transpose(2, 1, 0)  # [Q, P, M]
    y = actual[None, :] - centre.T  # [Q, P]
    w = np.full((q, m), 1.0 / m)
    best_w, best_loss = w.copy(), np.full(q, np.inf)
    for t in range(1, steps + 1):
        pred = np.einsum("qpm,qm->qp", x, w)
        diff = y - pred
        loss = np.maximum(levels_arr[:, None] * diff, (levels_arr[:, None] - 1.0) * diff).mean(axis=1)
        better = loss < best_loss
        best_w[better], best_loss[better] = w[better], loss[better]
        grad = np.einsum("qp,qpm->qm", (diff < 0).astype(np.float64) - levels_arr[:, None], x) / p
        span = np.abs(grad).max(axis=1, keepdims=True)
        step = 1.0 / np.sqrt(t) / np.where(span > 0, span, 1.0)
        w = w * np.exp(-np.clip(step * grad, -30.0, 30.0))
        w /= w.sum(axis=1, keepdims=True)
    return best_w.T


def prior_weights(n_members: int, n_levels: int, prior: np.ndarray | None = None) -> np.ndarray:
    """``[M, Q]``: the weights shrinkage pulls toward (equal ones unless a simplex ``prior [M]`` is given)."""
    base = np.full(n_members, 1.0 / n_members) if prior is None else np.asarray(prior, dtype=np.float64)
    return np.repeat(base[:, None], n_levels, axis=1)


def shrink(fitted: np.ndarray, n_units: int, k: float = SHRINKAGE, prior: np.ndarray | None = None) -> np.ndarray:
    """``(n w_fit + k e) / (n + k)``: fitted weights pulled toward the prior ``e`` (equal weights) when
    units are few."""
    toward = prior_weights(*fitted.shape, prior)
    return (n_units * fitted + k * toward) / (n_units + k)


def fit_weights(data: Backtests, levels: Sequence[float], *, min_windows: int = MIN_WINDOWS,
                k: float = SHRINKAGE, count: str = COUNT, prior: np.ndarray | None = None,
                seed: int = 0) -> np.ndarray:
    """``[M, Q]`` weights: simplex fits on the points every member forecast, shrunk toward the prior
    (equal weights) with ``n`` = scored series x windows (``count="units"``) or scored points
    (``"points"``); the prior alone with fewer than ``min_windows`` windows or no such point."""
    m, q = data.forecasts.shape[0], len(levels)
    complete = np.isfinite(data.forecasts).all(axis=(0, 2)) & np.isfinite(data.actual) & (data.scale > 0)
    if data.n_windows < min_windows or not complete.any():
        return prior_weights(m, q, prior)
    used = data.subset(complete)
    if used.actual.size > MAX_POINTS:
        pick = np.sort(np.random.default_rng(seed).choice(used.actual.size, MAX_POINTS, replace=False))
        used = used.subset(pick)
    scaled = used.forecasts / used.scale[None, :, None]
    fitted = simplex_weights(scaled, used.actual / used.scale, levels)
    n = int(np.unique(used.unit).size) if count == "units" else int(complete.sum())
    return shrink(fitted, n, k, prior)


def holdout_aggregates(data: Backtests, levels: Sequence[float], **fit: Any) -> np.ndarray:
    """``[P, Q]``: every window's points aggregated with weights fitted on the other windows (the prior,
    equal weights, when there is a single window: nothing was fitted on it)."""
    out = np.full(data.forecasts.shape[1:], np.nan)
    windows = np.unique(data.window)
    for k in windows:
        inside = data.window == k
        weights = (fit_weights(data.subset(~inside), levels, min_windows=1, **fit) if windows.size > 1
                   else prior_weights(data.forecasts.shape[0], len(levels), fit.get("prior")))
        out[inside] = aggregate.combine(data.forecasts[:, inside], weights)
    return out


def calibration(data: Backtests, levels: Sequence[float], **fit: Any) -> np.ndarray:
    """Widening of each central interval (``rules.interval_pairs(levels)``) from the leave-one-window-out
    aggregates: ``rules.conformal_widening`` on forecasts no weight was fitted on."""
    held_out = holdout_aggregates(data, levels, **fit)
    known = np.isfinite(data.actual) & np.isfinite(held_out).all(axis=1)
    return rules.conformal_widening(held_out, data.actual, known, levels)
