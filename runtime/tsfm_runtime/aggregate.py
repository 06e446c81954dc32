"""Quantile aggregation of several forecasters, in numpy: what the package and an edge device share.

An ensemble (``tsfm forecast --ensemble auto``, ``Forecaster(model="auto")``) combines its members'
quantiles level by level with weights on the simplex (one weight vector per quantile level), sorts
the result so that levels never cross, then widens its central intervals by the conformal
calibration it fitted (``tsfm_runtime.rules.widen``). The package fits the weights and the
calibration from backtests of the user's history and saves them (``auto.json`` beside a saved
Forecaster); ``combine_saved`` reproduces the combination from that file, so an edge device that
runs the members' exported files can aggregate their quantiles itself. Statistical members
(statsforecast) run on the Python side; the runtime only combines what it is given.

Sorting after the weighted average never raises the pinball loss: for any outcome, the sorted
vector of values is the one that pairs smaller values with smaller levels, and the summed pinball
loss is a sum of terms whose cross-pairing is never better (a rearrangement inequality; see
Chernozhukov, Fernandez-Val and Galichon, "Quantile and probability curves without crossing").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tsfm_runtime import rules

FORMAT = "tsfm-auto/1"
SIMPLEX_TOLERANCE = 1e-6


def check_weights(weights: np.ndarray, n_members: int, n_levels: int) -> np.ndarray:
    """``weights [M, Q]`` as float64, each column on the simplex (``ValueError`` otherwise)."""
    w = np.asarray(weights, dtype=np.float64)
    if w.shape != (n_members, n_levels):
        raise ValueError(f"weights have shape {w.shape}, expected ({n_members} members, {n_levels} levels)")
    if not np.isfinite(w).all() or (w < -SIMPLEX_TOLERANCE).any() or \
            not np.allclose(w.sum(axis=0), 1.0, atol=1e-4):
        raise ValueError("weights must be non-negative and sum to 1 at every quantile level")
    return np.clip(w, 0.0, None) / np.clip(w, 0.0, None).sum(axis=0, keepdims=True)


def combine(members: np.ndarray | Sequence[np.ndarray], weights: np.ndarray,
            available: np.ndarray | None = None) -> np.ndarray:
    """Weighted quantiles ``[N, ...,  Q]`` from members' ``[M, N, ..., Q]``, re-sorted along the levels.

    ``weights [M, Q]``: one simplex vector per level. A member whose forecast of a series holds a
    NaN, or that ``available [M, N]`` marks False, takes no part in that series: the other members'
    weights are renormalised there. A series no member forecasts stays NaN.
    """
    stack = np.asarray(members, dtype=np.float64)
    m, n, q = stack.shape[0], stack.shape[1], stack.shape[-1]
    w = check_weights(weights, m, q)
    finite = np.isfinite(stack).reshape(m, n, -1).all(axis=2)
    usable = finite if available is None else finite & np.asarray(available, dtype=bool)
    shape = (m, n) + (1,) * (stack.ndim - 3) + (q,)
    per_series = w[:, None, :] * usable[:, :, None]  # [M, N, Q]
    total = per_series.sum(axis=0)  # [N, Q]
    with np.errstate(invalid="ignore", divide="ignore"):
        per_series = per_series / np.where(total > 0, total, np.nan)[None]
    combined = np.nansum(np.where(usable.reshape(shape[:2] + (1,) * (stack.ndim - 2)), stack, 0.0)
                         * per_series.reshape(shape), axis=0)
    combined[~usable.any(axis=0)] = np.nan
    return np.sort(combined, axis=-1)


def apply(members: np.ndarray | Sequence[np.ndarray], weights: np.ndarray, levels: Sequence[float],
          widening: np.ndarray | Sequence[float] | None = None, available: np.ndarray | None = None) -> np.ndarray:
    """``combine`` then the conformal widening of each central interval (``rules.widen``), float32."""
    combined = combine(members, weights, available)
    if widening is None or not np.any(np.asarray(widening)):
        return combined.astype(np.float32)
    return rules.widen(combined, np.asarray(widening, dtype=np.float64), levels)


def combine_saved(saved: Mapping[str, Any], members: Mapping[str, np.ndarray]) -> np.ndarray:
    """Combine members' quantiles ``{name: [N, h, C, Q]}`` (at the saved levels) with a saved ensemble
    (the dict of an ``auto.json``). A saved member not given (e.g. a statistical one on a device
    without statsforecast) takes no part: the others' weights are renormalised."""
    if saved.get("format") != FORMAT:
        raise ValueError(f"not a saved ensemble of format {FORMAT!r}: {saved.get('format')!r}")
    names, levels = list(saved["members"]), [float(q) for q in saved["levels"]]
    given = [name for name in names if name in members]
    if not given:
        raise ValueError(f"none of the ensemble's members ({', '.join(names)}) was given")
    shape = np.shape(members[given[0]])
    if shape[-1] != len(levels):
        raise ValueError(f"members' quantiles have {shape[-1]} levels, the ensemble was fitted on {len(levels)}")
    stack = np.stack([np.asarray(members[name], dtype=np.float64) if name in members
                      else np.full(shape, np.nan) for name in names])
    return apply(stack, np.asarray(saved["weights"]), levels, saved.get("widening"))
