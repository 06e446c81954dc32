"""Run a benchmark script with the suite's medians moved along the recent trend by what its own
backtests say they lag behind it (a trial, not shipped).

Why: on short yearly business and macro series the `ttm` suite's errors point mostly one way: its
forecasts fall behind the trend (a logged run, not kept, on the M1 yearly and quarterly macro
tasks). The suite already backtests the
horizon 3 times inside every history to calibrate its intervals; this uses the same backtests to
estimate, once per dataset, how far the medians lag behind the recent trend, and moves the
forecast's quantiles by that much before the intervals are calibrated (on the moved backtests).

Per series, the recent trend is over the last ``span = max(season, horizon)`` steps: the sign, or
the rate, of the change between the means of the last ``span`` steps and the ``span`` before them.
Errors and trends are in units of the series' mean absolute step. Two variants:

- ``noise``: the error at step t, signed by the trend's direction, regressed on t per backtest
  window and series; the correction at step t is slope * t * direction * scale;
- ``rate``: the error regressed on t * trend rate (the share of the recent trend the medians failed
  to continue); the correction is slope * t * rate.

Either way the slope is the (weighted) mean over backtest windows and series, shrunk toward 0 by
its standard error (positive-part James-Stein), so a dataset whose backtests disagree is left alone.

    python benchmarks/trials/trend_lag.py noise benchmarks/zero_shot.py --skip-stats --models ttm ...

Without covariates only. The results file records this command.
"""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

import tsfm_runtime.rules as rules

sys.path.insert(0, str(Path(__file__).resolve().parent))
from swapped_rule import run_script  # noqa: E402

VARIANTS = ("noise", "rate")


def trend_and_scale(values: np.ndarray, mask: np.ndarray, span: int) -> tuple[np.ndarray, np.ndarray]:
    """Per series and channel [N, C]: the recent trend per step (0 where it cannot be measured) and
    the mean absolute step (0 where none)."""
    x = np.where(rules.observed(values, mask), values, np.nan).astype(np.float64)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # empty slices: no trend there
        recent, before = np.nanmean(x[:, -span:], axis=1), np.nanmean(x[:, -2 * span:-span], axis=1)
        scale = np.nanmean(np.abs(np.diff(x, axis=1)), axis=1)
    return np.nan_to_num((recent - before) / span), np.where(np.isfinite(scale) & (scale > 0), scale, 0.0)


def regressor(variant: str, values: np.ndarray, mask: np.ndarray, span: int, steps: int) -> np.ndarray:
    """[N, steps, C]: what the correction is proportional to, in value units (slope 1 = one unit)."""
    rate, scale = trend_and_scale(values, mask, span)
    per_step = np.sign(rate) * scale if variant == "noise" else rate
    return np.arange(1, steps + 1, dtype=np.float64)[None, :, None] * per_step[:, None, :]


def lag_slope(variant: str, runs: list[tuple], levels: Sequence[float], span: int) -> float:
    """The pooled, shrunk least-squares slope of the backtests' median errors on the regressor."""
    mid = [round(float(q), 9) for q in levels].index(0.5)
    betas, weights = [], []
    for quantiles, actual, known, head_values, head_mask in runs:
        _, scale = trend_and_scale(head_values, head_mask, span)
        safe = np.where(scale > 0, scale, 1.0)[:, None, :]
        ok = known & np.isfinite(actual) & (scale > 0)[:, None, :]
        x = np.where(ok, regressor(variant, head_values, head_mask, span, actual.shape[1]) / safe, 0.0)
        y = np.where(ok, (actual - quantiles[..., mid]) / safe, 0.0)
        w = (x * x).sum(axis=1)
        keep = w > 0
        betas.append(((x * y).sum(axis=1)[keep] / w[keep]).ravel())
        weights.append(w[keep].ravel() if variant == "rate" else np.ones(int(keep.sum())))
    b, w = np.concatenate(betas), np.concatenate(weights)
    fine = np.isfinite(b)
    b, w = b[fine], w[fine]
    if b.size < 2:
        return 0.0
    beta = float((w * b).sum() / w.sum())
    se2 = float((w * w * (b - beta) ** 2).sum() / w.sum() ** 2) if variant == "rate" else float(b.var(ddof=1) / b.size)
    return beta * max(0.0, 1.0 - se2 / beta**2) if beta != 0 else 0.0


def forecast_with(variant: str) -> Callable[..., np.ndarray]:
    """A drop-in for ``tsfm_runtime.rules.forecast`` that applies the lag correction where the
    package calibrates (``calibration_windows`` > 0, no covariates), and is the package's elsewhere."""
    shipped = rules.forecast

    def forecast(step_fn, values, mask, freq_id, horizon, levels, step, *, context=None, log_scale="never",
                 season=1, nonnegative=None, calibration_windows=0, seasonal_adjustment=False, past_exog=None,
                 future_exog=None):
        kept = {"log_scale": log_scale, "season": season, "nonnegative": nonnegative,
                "seasonal_adjustment": seasonal_adjustment and past_exog is None}
        if calibration_windows <= 0 or past_exog is not None:
            return shipped(step_fn, values, mask, freq_id, horizon, levels, step, context=context,
                           calibration_windows=0, past_exog=past_exog, future_exog=future_exog, **kept)
        context = context or values.shape[1]
        window_values, window_mask = rules.fit_context(values, mask, context)
        result = rules._processed(step_fn, window_values, window_mask, freq_id, horizon, levels, step,
                                  past_exog=None, future_exog=None, **kept)
        span = max(int(season), horizon)
        runs = [(b.forecast, b.actual, b.known, b.values, b.mask)  # the package's backtests
                for b in rules.backtests(step_fn, values, mask, freq_id, horizon, levels, step, context,
                                         calibration_windows, **kept)]
        if not runs:
            return result
        slope = lag_slope(variant, runs, levels, span)
        moved = [q + (slope * regressor(variant, hv, hm, span, horizon))[..., None] for q, _, _, hv, hm in runs]
        widening = rules.conformal_widening(np.concatenate(moved), np.concatenate([r[1] for r in runs]),
                                            np.concatenate([r[2] for r in runs]), levels)
        result = (result + (slope * regressor(variant, window_values, window_mask, span, horizon))[..., None])
        return rules.floor_at_zero(rules.pin_constants(rules.widen(result.astype(np.float32), widening, levels),
                                                       window_values, window_mask),
                                   window_values, window_mask, nonnegative)

    return forecast


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] not in VARIANTS:
        raise SystemExit(f"usage: trend_lag.py {{{','.join(VARIANTS)}}} SCRIPT [ARGS...]")
    rules.forecast = forecast_with(sys.argv[1])
    run_script(sys.argv[2], sys.argv[3:])


if __name__ == "__main__":
    main()
