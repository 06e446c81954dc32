"""Interval quality past a network's own horizon, with and without a width rule (a trial).

Rolling out every quantile path (``tsfm_runtime.rules.rollout``) shrinks the intervals chunk after
chunk: the Q paths, and each path's Q quantiles, pooled as Q x Q equally weighted samples, hold
less spread than the distributions they stand for (nine points at the levels 0.1..0.9 of a normal
have 0.6 of its variance), so a random walk's 80% band narrows after two chunks. The rule tried
(``hold``): past the first chunk, each quantile's distance from the median is at least what it was
at the same seasonal phase one chunk or more before (lag: the chunk rounded up to whole seasons),
so intervals never narrow at a phase; medians are untouched.

Scored on ETTh1 and ETTh2 (every channel a series; test origins spread over the last fifth), with
the 10-90 coverage and the WQL of the 9 levels per horizon block, for ttm-512 (96 steps a chunk)
and ttm-96-general (32), uncalibrated so that the rollout itself is measured.

    python benchmarks/trials/rollout_widths.py --output benchmarks/results/suite_trials/rollout_widths.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

import tsfm_runtime.rules as rules  # noqa: E402

LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def hold_widths(quantiles: np.ndarray, levels, step: int, season: int) -> np.ndarray:
    """[N, H, C, Q]: past the first ``step`` steps, every level's distance from the median at least
    its distance ``lag`` steps before (``lag``: ``step`` rounded up to whole seasons)."""
    lag = -(-step // max(season, 1)) * max(season, 1)
    median = quantiles[..., [int(np.argmin(np.abs(np.asarray(levels) - 0.5)))]]
    distance = np.abs(quantiles - median)
    for t in range(step, quantiles.shape[1]):
        if t - lag >= 0:
            distance[:, t] = np.maximum(distance[:, t], distance[:, t - lag])
    sign = np.sign(np.asarray(levels) - 0.5)
    return np.sort(median + sign * distance, axis=-1).astype(np.float32)


def with_rule(rule: str, season: int):
    shipped = rules.rollout

    def rollout(step_fn, values, mask, freq_id, horizon, levels, step, past_exog=None, future_exog=None):
        out = shipped(step_fn, values, mask, freq_id, horizon, levels, step, past_exog, future_exog)
        return hold_widths(out, levels, step, season) if rule == "hold" else out

    return rollout


def score(q: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(10-90 coverage, WQL over the 9 levels) of quantiles [..., Q] against y [...]."""
    lv = np.asarray(LEVELS)
    diff = y[..., None] - q
    loss = np.maximum(lv * diff, (lv - 1) * diff).sum(axis=-1) * 2 / len(lv)
    return float(((y >= q[..., 0]) & (y <= q[..., -1])).mean()), float(loss.sum() / np.abs(y).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizon", type=int, default=336)
    parser.add_argument("--origins", type=int, default=6)
    parser.add_argument("--models", default="ttm-512,ttm-96-general")
    parser.add_argument("--output", type=Path, default=Path("/tmp/rollout_widths.md"))
    args = parser.parse_args()
    meta = common.start_run(1, ["tsfm", "numpy", "torch"])
    from tsfm import Forecaster

    dev = common.REPO_ROOT.parent / "shared" / "data" / "real" / "dev"
    rows = []
    blocks = [(0, 96), (96, 192), (192, args.horizon)]
    for name in ("etth1", "etth2"):
        df = pd.read_csv(dev / f"{name}.csv", parse_dates=["ds"])
        n = df.groupby("unique_id").size().min()
        cuts = np.linspace(int(n * 0.8), n - args.horizon, args.origins).astype(int)
        for model in args.models.split(","):
            for rule in ("shipped", "hold"):
                rules.rollout = with_rule(rule, 24)
                qs, ys = [], []
                for cut in cuts:
                    context = df.groupby("unique_id").head(cut)
                    out = Forecaster(model=model, horizon=args.horizon, quantiles=LEVELS).fit(context).predict()
                    actual = df.groupby("unique_id").nth(list(range(cut, cut + args.horizon)))
                    qs.append(out[[str(q) for q in LEVELS]].to_numpy().reshape(-1, args.horizon, len(LEVELS)))
                    ys.append(actual["y"].to_numpy().reshape(-1, args.horizon))
                q, y = np.concatenate(qs), np.concatenate(ys)
                for lo, hi in blocks:
                    coverage, wql = score(q[:, lo:hi], y[:, lo:hi])
                    rows.append([name, model, rule, f"{lo + 1}-{hi}", coverage, wql])
                print(rows[-1], flush=True)
    meta = common.finish_run(meta)
    table = common.markdown_table(["dataset", "model", "rule", "steps", "10-90 coverage", "WQL"], rows, digits=4)
    common.write_results(args.output, f"# Intervals past the network's horizon\n\n{common.metadata_markdown(meta)}\n\n"
                         f"{table}\n", {"meta": meta, "rows": rows})


if __name__ == "__main__":
    main()
