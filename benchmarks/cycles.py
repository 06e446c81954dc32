"""Zero-shot probes of two skills the eval set leans on: continuing cycles and extrapolating trends.

    python benchmarks/cycles.py                                   # ttm, ttm-96, moirai-moe + baselines
    python benchmarks/cycles.py --models ttm runs/x/checkpoint --baselines naive --output-dir /tmp/c

Probes (yearly index, no calendar season, so only the values tell the period):
- ``sine``: 50 + 30 sin(2 pi t / p + phase) at periods p in PERIODS (mostly non-integer), clean
  and with Gaussian noise of 0.2 amplitudes; ``--series`` series per (period, noise) cell.
- ``trend``: a line with Gaussian noise (slopes 0.5 and 2 noise sds); ``drift``: a random walk
  with drift (drift 0.5 and 2 step sds).
Every series has ``--context`` points of history and a ``--horizon``-step future; the median
forecast is scored with MASE (scale: mean absolute one-step change of the history), averaged per
cell; families are summarised by the geometric mean over their cells. Seeds are fixed
(``--seed``), so reruns see the same series. Baselines are statsforecast's Naive and AutoARIMA
(season 1). Writes ``cycles.md`` and ``.json`` to ``--output-dir`` (default ``benchmarks/results``).

Why: the eval set's worst tasks for TTM were cycles at non-calendar periods (sunspots_yearly, the
11-year cycle; lynx, ~10 years) and damped trends; these probes isolate the skill from the noise of
one real series, and show whether a corpus change taught it.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from common import RESULTS_DIR, check_output, finish_run, markdown_table, metadata_markdown, start_run, write_results

PERIODS = (5.3, 7.5, 9.6, 11.0, 13.7, 16.0, 23.0)
NOISES = (0.0, 0.2)
SLOPES = (0.5, 2.0)
BASELINES = {"naive": "Naive", "autoarima": "AutoARIMA"}
PACKAGES = ("tsfm", "statsforecast", "numpy", "pandas", "torch")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=["ttm", "ttm-96", "moirai-moe"],
                        help="tsfm model names or checkpoint directories")
    parser.add_argument("--baselines", nargs="*", default=list(BASELINES), choices=list(BASELINES))
    parser.add_argument("--series", type=int, default=4, help="series per probe cell")
    parser.add_argument("--context", type=int, default=150)
    parser.add_argument("--horizon", type=int, default=12)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num-threads", type=int, default=1)
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR)
    return parser.parse_args(argv)


def make_probes(n: int, context: int, horizon: int, seed: int) -> list[tuple[str, str, np.ndarray]]:
    """``(family, cell, values[context + horizon])`` for every probe series."""
    rng = np.random.default_rng(seed)
    t = np.arange(context + horizon, dtype=np.float64)
    probes = []
    for period in PERIODS:
        for noise in NOISES:
            for _ in range(n):
                y = 50 + 30 * np.sin(2 * np.pi * t / period + rng.uniform(0, 2 * np.pi))
                y += noise * 30 * rng.standard_normal(len(t))
                probes.append(("sine", f"sine p={period:g} noise={noise:g}", y))
    for slope in SLOPES:
        for _ in range(n):
            probes.append(("trend", f"trend slope={slope:g}", 100 + slope * t + rng.standard_normal(len(t))))
            probes.append(("drift", f"drift={slope:g}", 100 + np.cumsum(slope + rng.standard_normal(len(t)))))
    return probes


def tsfm_fn(name: str, horizon: int) -> Callable[[pd.DataFrame], np.ndarray]:
    from tsfm import Forecaster

    def forecast(frame: pd.DataFrame) -> np.ndarray:
        return Forecaster(model=name, horizon=horizon).fit(frame).predict()["0.5"].to_numpy()

    return forecast


def stats_fn(name: str, horizon: int) -> Callable[[pd.DataFrame], np.ndarray]:
    from statsforecast import StatsForecast
    from statsforecast import models as sf_models

    def forecast(frame: pd.DataFrame) -> np.ndarray:
        model = getattr(sf_models, BASELINES[name])(**({"season_length": 1} if name == "autoarima" else {}))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out = StatsForecast(models=[model], freq="YS", n_jobs=1).forecast(df=frame, h=horizon)
        return out[BASELINES[name]].to_numpy()

    return forecast


def score(fn: Callable[[pd.DataFrame], np.ndarray], probes, context: int) -> tuple[dict[str, float], float]:
    """Mean MASE per cell and the seconds spent forecasting."""
    per_cell: dict[str, list[float]] = {}
    seconds = 0.0
    index = pd.date_range("1800-01-01", periods=context, freq="YS")
    for _, cell, y in probes:
        frame = pd.DataFrame({"unique_id": "probe", "ds": index, "y": y[:context]})
        start = time.perf_counter()
        median = fn(frame)
        seconds += time.perf_counter() - start
        scale = np.abs(np.diff(y[:context])).mean()
        per_cell.setdefault(cell, []).append(float(np.abs(median - y[context:]).mean() / scale))
    return {cell: float(np.mean(v)) for cell, v in per_cell.items()}, seconds


def family_means(cells: dict[str, float], probes) -> dict[str, float]:
    """Geometric mean of the cell scores of each probe family."""
    families: dict[str, list[float]] = {}
    for family, cell in dict.fromkeys((f, c) for f, c, _ in probes):
        families.setdefault(family, []).append(math.log(cells[cell]))
    return {f: math.exp(float(np.mean(v))) for f, v in families.items()}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_output(args.output_dir / "cycles.md")  # before the run, not after it
    meta = start_run(args.num_threads, PACKAGES)
    probes = make_probes(args.series, args.context, args.horizon, args.seed)
    makers: dict[str, Callable[[pd.DataFrame], np.ndarray]] = {}
    for name in args.baselines:
        makers[BASELINES[name]] = stats_fn(name, args.horizon)
    for name in args.models:
        makers[name] = tsfm_fn(name, args.horizon)
    results: dict[str, dict[str, Any]] = {}
    for label, fn in makers.items():
        fn(pd.DataFrame({"unique_id": "w", "ds": pd.date_range("1800-01-01", periods=args.context, freq="YS"),
                         "y": np.linspace(1.0, 2.0, args.context)}))  # warm-up: imports, weights
        cells, seconds = score(fn, probes, args.context)
        results[label] = {"cells": cells, "families": family_means(cells, probes), "seconds": seconds}
        print(f"{label}: " + ", ".join(f"{k} {v:.3f}" for k, v in results[label]["families"].items()),
              file=sys.stderr)
    finish_run(meta)
    labels = list(results)
    families = list(results[labels[0]]["families"])
    cells = list(results[labels[0]]["cells"])
    lines = [
        "# Cycles and trends: zero-shot probes",
        "",
        "Written by `benchmarks/cycles.py`; do not edit by hand.",
        "",
        metadata_markdown(meta),
        f"- {args.series} series per cell, {args.context}-point histories (yearly index), horizon "
        f"{args.horizon}, seed {args.seed}; score: MASE of the median (lower is better); families: "
        "geometric mean over their cells.",
        "",
        "## Families",
        "",
        markdown_table(["model", *families, "seconds"],
                       [[m, *(results[m]["families"][f] for f in families), results[m]["seconds"]] for m in labels]),
        "",
        "## Cells",
        "",
        markdown_table(["cell", *labels], [[c, *(results[m]["cells"][c] for m in labels)] for c in cells]),
    ]
    data = {"meta": meta, "args": {k: str(v) for k, v in vars(args).items()}, "results": results}
    for path in write_results(args.output_dir / "cycles.md", "\n".join(lines), data):
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
