"""Run ``benchmarks/zero_shot.py`` with contexts that have a significant drift shown to the network
without it (a trial; its rule is in this folder's README).

After the shipped seasonal adjustment, a channel whose gap-free context of at least 5 observations
has a mean first difference ``d`` at least 2 standard errors from zero is replaced by
``y_t - d (t - T)``; ``d h`` (times ``DRIFT_BACK``) is added to its quantiles at horizon step ``h``
before the zero floor and the seasons.

    python benchmarks/trials/drift_adjustment.py --skip-stats --reuse benchmarks/results/zero_shot.json \
        --models ttm --output /tmp/drift_adjustment.md
    python benchmarks/compare.py /tmp/drift_adjustment.json ttm ttm \
        --reference-results benchmarks/results/zero_shot.json

``DRIFT_BACK=0.5`` in the environment runs the exploratory ``half`` variant.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swapped_rule import run_zero_shot_with  # noqa: E402

import tsfm_runtime.rules as rules  # noqa: E402

shipped_processed = rules._processed
DRIFT_BACK = float(os.environ.get("DRIFT_BACK", "1.0"))
MIN_OBSERVED = 5
DRIFT_Z = 2.0


def significant_drift(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Drift [N, C] per step of each channel that passes the test, 0 elsewhere."""
    t = values.shape[1]
    seen = rules.observed(values, mask)
    count = seen.sum(axis=1)
    first = np.argmax(seen, axis=1)
    gap_free = (count == t - first) & (count >= MIN_OBSERVED)
    y = values.astype(np.float64)
    steps = np.diff(y, axis=1)
    both = seen[:, 1:] & seen[:, :-1]
    n = both.sum(axis=1)
    mean = np.where(both, steps, 0.0).sum(axis=1) / np.maximum(n, 1)
    spread = np.sqrt(np.where(both, (steps - mean[:, None, :]) ** 2, 0.0).sum(axis=1) / np.maximum(n - 1, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(mean) / (spread / np.sqrt(np.maximum(n, 1)))
    passes = gap_free & (spread > 0) & (z >= DRIFT_Z)
    return np.where(passes, mean, 0.0)


def processed(step_fn, values, mask, freq_id, horizon, levels, step, log_scale, season, nonnegative,
              past_exog, future_exog, seasonal_adjustment=False):
    """The shipped ``_processed`` with the drift of qualifying channels taken out and put back."""
    if past_exog is not None:
        return shipped_processed(step_fn, values, mask, freq_id, horizon, levels, step, log_scale, season,
                                 nonnegative, past_exog, future_exog, seasonal_adjustment)
    t = values.shape[1]
    seen = rules.observed(values, mask)
    factors = rules.seasonal_factors(values, mask, season, horizon) if seasonal_adjustment else None
    adjusted = values if factors is None else np.where(seen, values / factors[0], values).astype(np.float32)
    drift = significant_drift(adjusted, mask)
    if not drift.any():
        return shipped_processed(step_fn, values, mask, freq_id, horizon, levels, step, log_scale, season,
                                 nonnegative, past_exog, future_exog, seasonal_adjustment)
    back_steps = (np.arange(t) - (t - 1)).astype(np.float64)
    driftless = np.where(seen, adjusted - drift[:, None, :] * back_steps[None, :, None], adjusted)
    out = shipped_processed(step_fn, driftless.astype(np.float32), mask, freq_id, horizon, levels, step,
                            log_scale, season, False, None, None, False)
    ahead = DRIFT_BACK * drift[:, None, :] * np.arange(1, horizon + 1, dtype=np.float64)[None, :, None]
    out = (out + ahead[..., None]).astype(np.float32)
    out = rules.floor_at_zero(rules.pin_constants(out, adjusted, mask), adjusted, mask, nonnegative)
    return out if factors is None else (out * factors[1][..., None]).astype(np.float32)


if __name__ == "__main__":
    run_zero_shot_with(_processed=processed)
