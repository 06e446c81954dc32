"""Run ``benchmarks/zero_shot.py`` with every tsfm forecast of monthly and quarterly data reconciled
with a forecast of the same series at the next coarser resolution (a trial, not shipped).

Why: temporal hierarchies (Athanasopoulos, Hyndman, Kourentzes & Petropoulos 2017, "THieF") forecast
a series at several levels of temporal aggregation and reconcile the forecasts; on the M3 monthly
and quarterly series this improved each base method. Aggregation averages the noise of the fine
level away, so the coarse level sees the trend and level more clearly, while the fine level keeps
the season. Here: monthly data also forecast as quarterly means (blocks of 3), quarterly data as
yearly means (blocks of 4), each by the same tsfm model given the coarse frequency.

Blocks end at each series' last observation (the first, incomplete block is dropped; a block with a
missing month is missing). A series is reconciled where it has at least ``MIN_BLOCKS`` complete
blocks. With two levels and THieF's structural scaling (each forecast's variance proportional to the
number of fine steps it sums), the reconciled fine forecast is the base forecast with each block's
steps moved by half the difference between the coarse forecast and the base forecast's block mean:
``fine + (coarse - mean(fine over the block)) / 2``. The move is taken from the medians and applied
to every quantile level (the calibrated spread is kept); series that never went negative are floored
at zero, as the suite does. A block cut by the end of the horizon is not moved.

    python benchmarks/trials/temporal_hierarchy.py --skip-stats --reuse benchmarks/results/zero_shot.json \
        --models ttm --output /tmp/th.md
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

COARSER = {"monthly": (3, "QS"), "quarterly": (4, "YS")}  # group -> (block length, coarse frequency)
MIN_BLOCKS = 4
SHARE = 0.5  # THieF's structural scaling with two levels


def block_means(y: np.ndarray, k: int) -> np.ndarray:
    """Means of the complete blocks of ``k`` steps ending at the last step (NaN where a step is missing)."""
    n = len(y) // k
    return y[len(y) - n * k:].reshape(n, k).mean(axis=1) if n else np.empty(0)


def reconciled(base: pd.DataFrame, coarse: pd.DataFrame, k: int, nonnegative: dict[str, bool]) -> pd.DataFrame:
    """``base`` with each complete block of each series' steps moved toward the ``coarse`` medians."""
    value_cols = [c for c in base.columns if c not in ("unique_id", "ds")]
    out = []
    for uid, fine in base.groupby("unique_id", sort=False):
        fine = fine.copy()
        top = coarse.loc[coarse["unique_id"] == uid, "0.5"].to_numpy(np.float64)
        if len(top):
            median = fine["0.5"].to_numpy(np.float64)
            blocks = min(len(median) // k, len(top))
            move = np.zeros(len(median))
            for b in range(blocks):
                move[b * k:(b + 1) * k] = SHARE * (top[b] - median[b * k:(b + 1) * k].mean())
            moved = fine[value_cols].to_numpy(np.float64) + move[:, None]
            if nonnegative[uid]:
                moved = np.maximum(moved, 0.0)
            fine[value_cols] = moved
        out.append(fine)
    return pd.concat(out, ignore_index=True)


def hierarchical(make_forecast):
    """Wrap ``zero_shot.tsfm_fn``: the same forecast, reconciled with the coarser level."""

    def tsfm_fn(spec, task, integer_steps=False):
        base_fn = make_forecast(spec, task, integer_steps)
        if task.get("group") not in COARSER or integer_steps:
            return base_fn
        import zero_shot

        from tsfm import Forecaster

        k, coarse_freq = COARSER[task["group"]]
        name, kwargs = zero_shot.parse_model_spec(spec)

        def forecast(context: pd.DataFrame) -> pd.DataFrame:
            base = base_fn(context)
            rows, nonnegative = [], {}
            for uid, g in context.groupby("unique_id", sort=False):
                y = g.sort_values("ds")["y"].to_numpy(np.float64)
                nonnegative[uid] = bool(np.nanmin(y) >= 0)
                means = block_means(y, k)
                if np.isfinite(means).sum() >= MIN_BLOCKS:
                    rows.append(pd.DataFrame({"unique_id": uid, "ds": np.arange(1, len(means) + 1), "y": means}))
            if not rows:
                return base
            horizon = -(-task["horizon"] // k)
            coarse = Forecaster(model=name, horizon=horizon, quantiles=zero_shot.QUANTILES, freq=coarse_freq,
                                **kwargs).fit(pd.concat(rows, ignore_index=True)).predict()
            return reconciled(base, coarse, k, nonnegative)

        return forecast

    return tsfm_fn


def main() -> None:
    import shlex

    import common
    import zero_shot

    command, run_metadata = "python " + shlex.join(sys.argv), common.run_metadata

    def recorded(*args, **kwargs):  # the results file records this trial's command line
        return {**run_metadata(*args, **kwargs), "command": command}

    common.run_metadata = recorded
    zero_shot.tsfm_fn = hierarchical(zero_shot.tsfm_fn)
    raise SystemExit(zero_shot.main(sys.argv[1:]))


if __name__ == "__main__":
    main()
