"""Run ``benchmarks/zero_shot.py`` with the shipped seasonal adjustment extended, in its additive
form, to seasonal contexts that are not strictly positive (a trial; its rule is in this folder's
README).

A channel the shipped rule skips only because its context holds a zero or a negative value (it is
gap-free, at least three seasons long and seasonal by the same autocorrelation test) has its
additive seasonal indices subtracted before the network and added back to its quantiles; a channel
with no negative value is floored at zero again afterwards. Channels the shipped rule divides are
untouched.

    python benchmarks/trials/additive_adjustment.py --skip-stats --reuse benchmarks/results/zero_shot.json \
        --models ttm --output /tmp/additive_adjustment.md
    python benchmarks/compare.py /tmp/additive_adjustment.json ttm ttm \
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


def additive_offsets(values: np.ndarray, mask: np.ndarray, season: int, horizon: int
                     ) -> tuple[np.ndarray, np.ndarray] | None:
    """Offsets [N, T, C] over the context and [N, horizon, C] over the forecast (0 where a channel
    does not qualify), or None when none does; a channel qualifies as in the shipped rule but with
    a zero or a negative value in its context."""
    seen = rules.observed(values, mask)
    positive = np.where(seen, values > 0, True).all(axis=1)
    if positive.all():
        return None
    # the shipped test and indices, on the context shifted to be strictly positive: the test is
    # shift-free, and the ratio indices of the shifted series are not what we want, so only the
    # qualification is taken from it
    t = values.shape[1]
    y = np.where(seen, values, 0.0).astype(np.float64)
    low = np.where(seen, y, np.inf).min(axis=1)
    shifted = np.where(seen, y - low[:, None, :] + 1.0, values)
    factors = rules.seasonal_factors(shifted, mask, season, horizon)
    if factors is None:
        return None
    qualify = ~positive & ~np.isclose(factors[0], 1.0).all(axis=1)
    if not qualify.any():
        return None
    m = season
    count = seen.sum(axis=1)
    first = np.argmax(seen, axis=1)
    difference = y - rules.centred_moving_average(y, first, m)
    usable = np.isfinite(difference) & qualify[:, None, :] & (count >= 3 * m)[:, None, :]
    phase_of = (t - 1 - np.arange(t)) % m
    one_hot = (phase_of[:, None] == np.arange(m)[None, :]).astype(np.float64)
    totals = np.einsum("ntc,tp->ncp", np.where(usable, difference, 0.0), one_hot)
    counts = np.einsum("ntc,tp->ncp", usable.astype(np.float64), one_hot)
    with np.errstate(divide="ignore", invalid="ignore"):
        indices = totals / counts
    indices = indices - indices.mean(axis=-1, keepdims=True)
    indices = np.where(qualify[..., None] & np.isfinite(indices), indices, 0.0)
    past = indices[:, :, phase_of].transpose(0, 2, 1)
    ahead = indices[:, :, (-np.arange(1, horizon + 1)) % m].transpose(0, 2, 1)
    return past, ahead


def processed(step_fn, values, mask, freq_id, horizon, levels, step, log_scale, season, nonnegative,
              past_exog, future_exog, seasonal_adjustment=False):
    """The shipped ``_processed``, with additive adjustment of the contexts it leaves unadjusted."""
    offsets = additive_offsets(values, mask, season, horizon) if seasonal_adjustment and season > 1 else None
    if offsets is None:
        return shipped_processed(step_fn, values, mask, freq_id, horizon, levels, step, log_scale, season,
                                 nonnegative, past_exog, future_exog, seasonal_adjustment)
    factors = rules.seasonal_factors(values, mask, season, horizon)
    past, ahead = (np.ones_like(offsets[0]), np.ones_like(offsets[1])) if factors is None else factors
    seen = rules.observed(values, mask)
    adjusted = np.where(seen, values / past - offsets[0], values).astype(np.float32)
    out = shipped_processed(step_fn, adjusted, mask, freq_id, horizon, levels, step, log_scale, season,
                            False, past_exog, future_exog, False)
    restored = np.sort(out * ahead[..., None] + offsets[1][..., None], axis=-1).astype(np.float32)
    return rules.floor_at_zero(restored, values, mask, nonnegative)


if __name__ == "__main__":
    run_zero_shot_with(_processed=processed)
