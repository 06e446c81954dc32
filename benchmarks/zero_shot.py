"""Zero-shot accuracy on the eval set: statistical baselines and tsfm models on the same splits.

    python benchmarks/zero_shot.py                       # every task, statsforecast models + ttm
    python benchmarks/zero_shot.py --skip-tsfm --num-threads 1
    python benchmarks/zero_shot.py --tasks air_passengers,lynx --models ttm --skip-stats
    python benchmarks/zero_shot.py --min-windows 8 --output benchmarks/results/zero_shot_windows.md

Each task of the manifest is backtested as its README says (last ``n_windows * H`` points,
consecutive windows, every window sees all points before it); ``--min-windows N`` backtests more
consecutive windows where a task's series allow (most tasks have one window, so one unlucky
window moves a task's score a lot; more origins give a steadier comparison). Models: statsforecast's Naive,
SeasonalNaive, AutoETS, AutoARIMA and AutoTheta (quantiles 0.1..0.9 from ``level=[20, 40, 60,
80]``, season = the task's ``m``) and the tsfm models named in ``--models`` through the public
``Forecaster``. Scores are MASE, sMAPE (0-200) and WQL per task, then the geometric mean over
tasks of each score divided by SeasonalNaive's. Seconds are fit+predict wall time summed over
windows, after an untimed warm-up of every model (first calls pay for lazy imports and kernels).
Writes ``benchmarks/results/zero_shot.md`` and ``.json`` (``--output`` to change).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common import (
    RESULTS_DIR,
    REPO_ROOT,
    markdown_table,
    metadata_markdown,
    pin_threads,
    run_metadata,
    uptime,
    use_checkout,
    write_results,
)

QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
LEVELS = (20, 40, 60, 80)  # central intervals whose bounds are the quantiles above (0.5 = point)
STATS_MODELS = ("Naive", "SeasonalNaive", "AutoETS", "AutoARIMA", "AutoTheta")
BASELINE = "SeasonalNaive"
# AutoARIMA with statsforecast's defaults (exact likelihood in the stepwise search) takes 10+
# minutes per window when the season is long: co2_weekly (m=52) 786 s for one window, also 810 s
# on its last 520 points. For m > 12 we therefore do what R's auto.arima does by default there
# (approximation=TRUE when frequency > 12) and fit on the last ARIMA_LONG_SEASONS seasons:
# 20-60 s per window on this machine. Tasks with m <= 12 use the defaults and full contexts.
ARIMA_FULL_MAX_SEASON = 12
ARIMA_LONG_SEASONS = 20
PACKAGES = ("tsfm", "statsforecast", "numpy", "pandas", "torch", "gluonts")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eval-dir", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "eval",
                        help="folder with manifest.json and the task CSVs (default: ../shared/data/eval)")
    parser.add_argument("--tasks", default="", help="comma-separated task names (default: every task)")
    parser.add_argument("--models", default="ttm", help="comma-separated tsfm models for Forecaster(model=...)")
    parser.add_argument("--skip-tsfm", action="store_true", help="run only the statsforecast models")
    parser.add_argument("--skip-stats", action="store_true",
                        help="run only the tsfm models (SeasonalNaive still runs: it is the baseline)")
    parser.add_argument("--arima-defaults", action="store_true",
                        help="AutoARIMA with statsforecast defaults on full contexts even when m > %d (slow)"
                        % ARIMA_FULL_MAX_SEASON)
    parser.add_argument("--min-windows", type=int, default=0,
                        help="backtest at least this many windows per task where the series leave each window "
                        "a context of max(3 H, 2 m) points (default: the manifest's n_windows)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "zero_shot.md",
                        help="markdown report path; the JSON goes next to it")
    parser.add_argument("--num-threads", type=int, default=1, help="threads for torch, OpenMP, BLAS and numba (default 1)")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- models


def arima_shortcut(m: int, defaults: bool) -> tuple[dict[str, Any], int | None]:
    """AutoARIMA's extra arguments and input length limit for season ``m`` (see ARIMA_LONG_SEASONS)."""
    if defaults or m <= ARIMA_FULL_MAX_SEASON:
        return {}, None
    return {"approximation": True}, ARIMA_LONG_SEASONS * m


def statsforecast_fn(name: str, task: dict[str, Any], arima_defaults: bool = False) -> Callable:
    """``context_df -> forecast_df`` for one statsforecast model, quantile columns "0.1".."0.9"."""
    import statsforecast.models as sf_models
    from statsforecast import StatsForecast

    kwargs, max_length = arima_shortcut(task["m"], arima_defaults) if name == "AutoARIMA" else ({}, None)

    def forecast(context):
        model_class = getattr(sf_models, name)
        model = model_class() if name == "Naive" else model_class(season_length=task["m"], **kwargs)
        if max_length is not None:
            context = context.groupby("unique_id", sort=False).tail(max_length)
        engine = StatsForecast(models=[model], freq=task["freq"], n_jobs=1)
        return to_quantile_frame(engine.forecast(df=context, h=task["horizon"], level=list(LEVELS)), name)

    return forecast


def to_quantile_frame(raw, alias: str):
    """statsforecast's ``alias-lo-80`` ... columns -> ``mean, "0.1", ..., "0.9"``."""
    columns = {"mean": raw[alias], "0.5": raw[alias]}
    for level in LEVELS:
        lower = round((100 - level) / 200, 10)
        columns[str(lower)] = raw[f"{alias}-lo-{level}"]
        columns[str(round(1 - lower, 10))] = raw[f"{alias}-hi-{level}"]
    out = raw[["unique_id", "ds"]].copy()
    for q in QUANTILES:
        out[str(q)] = columns[str(q)].to_numpy()
    out.insert(2, "mean", columns["mean"].to_numpy())
    return out


def tsfm_fn(name: str, task: dict[str, Any]) -> Callable:
    """``context_df -> forecast_df`` through the public API, exactly as a user calls it."""
    from tsfm import Forecaster

    def forecast(context):
        return Forecaster(model=name, horizon=task["horizon"], quantiles=QUANTILES).fit(context).predict()

    return forecast


def load_tsfm_or_exit(models: list[str]) -> None:
    try:
        from tsfm import Forecaster  # noqa: F401
    except ImportError as err:
        raise SystemExit(
            f"error: cannot import tsfm.Forecaster ({err}); models {', '.join(models)} need it: "
            "install tsfm (pip install -e .) or pass --skip-tsfm"
        ) from None


def warm_up(makers: dict[str, Callable[[dict[str, Any]], Callable]]) -> dict[str, float]:
    """Run every model once on a small seasonal series, untimed: first calls pay for imports and kernels."""
    import numpy as np
    import pandas as pd

    t = np.arange(60)
    df = pd.DataFrame({"unique_id": "warm", "ds": pd.date_range("2000-01-01", periods=60, freq="MS"),
                       "y": 10 + np.sin(2 * np.pi * t / 12) + 0.1 * t})
    task = {"m": 12, "freq": "MS", "horizon": 6}
    seconds = {}
    for name, make in makers.items():
        start = time.perf_counter()
        try:
            make(task)(df)
        except Exception as err:  # the task runs will report it per task
            print(f"warm-up of {name} failed: {err}", file=sys.stderr)
        seconds[name] = time.perf_counter() - start
    return seconds


# ----------------------------------------------------------------------------- running


def load_manifest(eval_dir: Path, wanted: str) -> list[dict[str, Any]]:
    path = eval_dir / "manifest.json"
    if not path.is_file():
        raise SystemExit(f"error: no manifest at {path}: pass --eval-dir pointing to the eval set")
    tasks = json.loads(path.read_text())["tasks"]
    if wanted:
        names = [n.strip() for n in wanted.split(",") if n.strip()]
        unknown = sorted(set(names) - {t["name"] for t in tasks})
        if unknown:
            raise SystemExit(f"error: unknown task(s) {', '.join(unknown)}; known: {', '.join(t['name'] for t in tasks)}")
        tasks = [t for t in tasks if t["name"] in names]
    return tasks


def with_windows(task: dict[str, Any], min_windows: int) -> dict[str, Any]:
    """``task`` with ``n_windows`` raised to ``min_windows`` where every window keeps a context of
    at least max(3 H, 2 m) points (never lowered below the manifest's)."""
    h, m = task["horizon"], task["m"]
    fits = (task["min_length"] - max(3 * h, 2 * m)) // h
    return {**task, "n_windows": max(task["n_windows"], min(min_windows, fits))}


def run_model(fn: Callable, df, task: dict[str, Any]) -> dict[str, Any]:
    """Backtest one model on one task: scores, seconds (forecast calls only) or the error."""
    from tsfm.evaluation import backtest_forecasts, evaluate_forecasts

    elapsed = 0.0

    def timed(context):
        nonlocal elapsed
        start = time.perf_counter()
        out = fn(context)
        elapsed += time.perf_counter() - start
        return out

    try:
        cv = backtest_forecasts(timed, df, task["horizon"], task["n_windows"])
        scores = evaluate_forecasts(cv, cv, df, task["m"], QUANTILES)
    except Exception as err:  # a failing model is reported in the results, never dropped silently
        line = traceback.format_exception_only(type(err), err)[-1].strip()
        return {"scores": {}, "seconds": elapsed, "error": line}
    return {"scores": scores, "seconds": elapsed, "error": None}


# ----------------------------------------------------------------------------- report


def aggregate(results: dict[str, dict[str, dict[str, Any]]], models: list[str]) -> dict[str, dict[str, Any]]:
    """Relative MASE/sMAPE/WQL (geometric mean vs SeasonalNaive), mean coverage, total seconds."""
    import numpy as np

    from tsfm.errors import InputError
    from tsfm.evaluation import aggregate_relative

    scores = {task: {m: r["scores"] for m, r in per_model.items() if r["scores"]} for task, per_model in results.items()}
    try:
        relative = aggregate_relative(scores, baseline=BASELINE)
    except InputError as err:  # the baseline failed somewhere: no relative score is defined
        print(f"no aggregate: {err}", file=sys.stderr)
        relative = {}
    table = {}
    for model in models:
        runs = [per_model[model] for per_model in results.values() if model in per_model]
        coverage = [r["scores"].get("coverage_10_90", np.nan) for r in runs if r["scores"]]
        table[model] = {
            **relative.get(model, {"MASE": np.nan, "sMAPE": np.nan, "WQL": np.nan}),
            "coverage_10_90": float(np.mean(coverage)) if coverage and len(coverage) == len(runs) else np.nan,
            "seconds": float(sum(r["seconds"] for r in runs)),
            "failed_tasks": [task for task, per_model in results.items() if per_model.get(model, {}).get("error")],
        }
    return table


def render(meta: dict[str, Any], tasks: list[dict[str, Any]], results, table, models, notes: list[str]) -> str:
    parts = [
        "# Zero-shot accuracy on the visible eval set",
        "",
        "Written by `benchmarks/zero_shot.py`; do not edit by hand.",
        "",
        metadata_markdown(meta),
        "",
        "## Aggregate (geometric mean over tasks of score / SeasonalNaive score; lower is better)",
        "",
        markdown_table(
            ["model", "rel. MASE", "rel. sMAPE", "rel. WQL", "mean 10-90 coverage (ideal 0.8)", "total seconds", "failed tasks"],
            [[m, table[m]["MASE"], table[m]["sMAPE"], table[m]["WQL"], table[m]["coverage_10_90"],
              f"{table[m]['seconds']:.1f}", ", ".join(table[m]["failed_tasks"]) or "none"] for m in models],
        ),
        "",
        "## Notes",
        "",
        *[f"- {note}" for note in notes],
    ]
    for metric, digits in (("MASE", 3), ("sMAPE", 2), ("WQL", 4), ("coverage_10_90", 2)):
        rows = [[t["name"]] + [results[t["name"]].get(m, {}).get("scores", {}).get(metric, float("nan")) for m in models]
                for t in tasks]
        parts += ["", f"## {metric} per task", "", markdown_table(["task", *models], rows, digits)]
    rows = [[t["name"], t["freq"], t["m"], t["horizon"], t["n_windows"], t["n_series"]]
            + [f"{results[t['name']][m]['seconds']:.2f}" if m in results[t["name"]] else None for m in models]
            for t in tasks]
    parts += ["", "## Seconds per task (fit+predict, summed over windows)", "",
              markdown_table(["task", "freq", "m", "H", "windows", "series", *models], rows, 2)]
    errors = [(t, m, r["error"]) for t, per in results.items() for m, r in per.items() if r["error"]]
    if errors:
        parts += ["", "## Errors", "", *[f"- {m} on {t}: `{e}`" for t, m, e in errors]]
    return "\n".join(parts)


def run_notes(args: argparse.Namespace, tasks: list[dict[str, Any]], models: list[str],
              warm_seconds: dict[str, float]) -> list[str]:
    """What a reader needs to judge the numbers: warm-up, quantile mapping, metric rules, shortcuts."""
    arima = []
    for t in tasks:
        limit = arima_shortcut(t["m"], args.arima_defaults)[1]
        if limit is not None:
            shortest, longest = t["min_length"] - t["n_windows"] * t["horizon"], t["max_length"] - t["horizon"]
            cut = f"last {limit} of {shortest}-{longest} context points" if longest > limit else "context not cut"
            arima.append(f"{t['name']} (m={t['m']}: {cut})")
    arima_note = (
        f"AutoARIMA: statsforecast defaults on full contexts where m <= {ARIMA_FULL_MAX_SEASON}; where m > "
        f"{ARIMA_FULL_MAX_SEASON}, `approximation=True` (R auto.arima's default there) and at most the last "
        f"{ARIMA_LONG_SEASONS} seasons, because the default search took over 13 minutes per window on co2_weekly: "
        + ", ".join(arima)
        if arima
        else "AutoARIMA: statsforecast defaults on full contexts on every task run."
    )
    long_season = [t["name"] for t in tasks if t["m"] > 24]
    windows = (f"Windows per task (--min-windows {args.min_windows}: the manifest's n_windows raised where each "
               "window keeps a context of max(3 H, 2 m) points): "
               + ", ".join(f"{t['name']} {t['n_windows']}" for t in tasks) + ".") if args.min_windows else None
    notes = [
        "Warm-up (untimed, before any task): each model forecast a 60-point monthly series once, so first-call "
        "costs (imports, compiled kernels, weight loading) stay out of the task timings: "
        + ", ".join(f"{k} {v:.2f}s" for k, v in warm_seconds.items()) + ".",
        "Quantiles 0.1..0.9: statsforecast's `level=[20, 40, 60, 80]` interval bounds with its point forecast as 0.5; "
        "tsfm models through `Forecaster(model=..., horizon=H, quantiles=(0.1, ..., 0.9)).fit(context).predict()`.",
        "Metrics (tsfm/evaluation.py, parity with gluonts.ev tested): MASE and sMAPE (0-200) on the 0.5 quantile, "
        "mean over series x windows; WQL over 0.1..0.9 as a ratio of sums over the task; sMAPE counts 0/0 (a zero "
        "forecast of a zero actual) as 0.",
        f"Models run one after another in one process, statsforecast with n_jobs=1, threads pinned to "
        f"{args.num_threads}; the machine is shared, so compare seconds within one run (see the load above).",
    ]
    if windows:
        notes.insert(0, windows)
    if "AutoARIMA" in models:
        notes.append(arima_note + ".")
    if "AutoETS" in models and long_season:
        notes.append("AutoETS: statsforecast fits no seasonal ETS model when m > 24, so it is non-seasonal on "
                     + ", ".join(long_season) + ".")
    return notes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    threads = pin_threads(args.num_threads)  # before numpy and friends are imported
    use_checkout()
    tasks = [with_windows(t, args.min_windows) for t in load_manifest(args.eval_dir, args.tasks)]
    tsfm_models = [] if args.skip_tsfm else [m.strip() for m in args.models.split(",") if m.strip()]
    if tsfm_models:
        load_tsfm_or_exit(tsfm_models)
    stats_models = [BASELINE] if args.skip_stats else list(STATS_MODELS)
    models = stats_models + tsfm_models
    meta = run_metadata(threads, PACKAGES)

    import pandas as pd

    # statsforecast's optimisers warn per fit ("possible convergence problem"): thousands of lines
    warnings.filterwarnings("ignore", category=UserWarning, module=r"statsforecast\.")
    makers = {name: (lambda task, name=name: statsforecast_fn(name, task, args.arima_defaults)) for name in stats_models}
    makers.update({name: (lambda task, name=name: tsfm_fn(name, task)) for name in tsfm_models})
    warm_seconds = warm_up(makers)

    results: dict[str, dict[str, dict[str, Any]]] = {}
    for task in tasks:
        df = pd.read_csv(args.eval_dir / task["file"], parse_dates=["ds"])
        results[task["name"]] = {}
        for name in models:
            run = run_model(makers[name](task), df, task)
            results[task["name"]][name] = run
            status = f"error: {run['error']}" if run["error"] else f"MASE {run['scores']['MASE']:.3f}"
            print(f"{task['name']:<26} {name:<14} {run['seconds']:8.2f}s  {status}", file=sys.stderr, flush=True)
    meta["uptime_at_end"] = uptime()

    table = aggregate(results, models)
    notes = run_notes(args, tasks, models, warm_seconds)
    data = {"meta": meta, "notes": notes, "aggregate": table,
            "tasks": {t["name"]: {**{k: t[k] for k in ("freq", "m", "horizon", "n_windows", "n_series")},
                                  "models": results[t["name"]]} for t in tasks}}
    written = write_results(args.output, render(meta, tasks, results, table, models, notes), data)
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
