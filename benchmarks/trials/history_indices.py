"""Run ``benchmarks/zero_shot.py`` with the suite's seasonal indices tested and estimated on the
whole history the rules receive, not only on the window the network reads (a trial; its rule is in
this folder's README).

The rules cut each history to the network's window (``fit_context``) just before processing it, in
the forecast and in every calibration backtest; the trial remembers the history that was cut and
computes the shipped ``seasonal_factors`` on it, then applies their last steps to the window.

    python benchmarks/trials/history_indices.py --skip-stats --reuse benchmarks/results/zero_shot.json \
        --models ttm --output /tmp/history_indices.md
    python benchmarks/compare.py /tmp/history_indices.json ttm ttm \
        --reference-results benchmarks/results/zero_shot.json
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swapped_rule import run_zero_shot_with  # noqa: E402

import tsfm_runtime.rules as rules  # noqa: E402

shipped_processed = rules._processed
shipped_fit_context = rules.fit_context
last_history: dict[str, np.ndarray] = {}


def remembering_fit_context(values: np.ndarray, mask: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The shipped cut, remembering the history it was cut from."""
    last_history["values"], last_history["mask"] = values, mask
    return shipped_fit_context(values, mask, length)


def aligned(factors: np.ndarray, t: int) -> np.ndarray:
    """The last ``t`` steps of history-long factors; 1 on the left where the window is longer."""
    if factors.shape[1] >= t:
        return factors[:, factors.shape[1] - t:]
    pad = np.ones((factors.shape[0], t - factors.shape[1], factors.shape[2]))
    return np.concatenate([pad, factors], axis=1)


def processed(step_fn, values, mask, freq_id, horizon, levels, step, log_scale, season, nonnegative,
              past_exog, future_exog, seasonal_adjustment=False):
    """The shipped ``_processed`` with indices from the remembered history."""
    history = last_history.pop("values", None), last_history.pop("mask", None)
    if not seasonal_adjustment or history[0] is None or history[0].shape[0] != values.shape[0]:
        return shipped_processed(step_fn, values, mask, freq_id, horizon, levels, step, log_scale, season,
                                 nonnegative, past_exog, future_exog, seasonal_adjustment)
    factors = rules.seasonal_factors(history[0], history[1], season, horizon)
    if factors is None:
        return shipped_processed(step_fn, values, mask, freq_id, horizon, levels, step, log_scale, season,
                                 nonnegative, past_exog, future_exog, False)
    past, ahead = aligned(factors[0], values.shape[1]), factors[1]
    adjusted = np.where(rules.observed(values, mask), values / past, values).astype(np.float32)
    out = shipped_processed(step_fn, adjusted, mask, freq_id, horizon, levels, step, log_scale, season,
                            nonnegative, past_exog, future_exog, False)
    return (out * ahead[..., None]).astype(np.float32)


if __name__ == "__main__":
    run_zero_shot_with(_processed=processed, fit_context=remembering_fit_context)
