"""Zero-shot accuracy on the broad dev benchmark: statistical baselines and tsfm models, same splits.

    python benchmarks/zero_shot.py                 # the full run: writes benchmarks/results/zero_shot.md
    python benchmarks/zero_shot.py --skip-tsfm --output /tmp/baselines.md
    python benchmarks/zero_shot.py --models ttm,ttm-512 --skip-stats --reuse benchmarks/results/zero_shot.json \\
        --output /tmp/trial.md                     # a trial against cached baselines
    python benchmarks/zero_shot.py --models "ttm[log_scale=never]" --skip-stats --reuse ... --output ...
    python benchmarks/zero_shot.py --data-dir ../shared/data/eval --min-windows 0 --output /tmp/eval.md
    python benchmarks/zero_shot.py --tasks etth1,etth2 --max-history 120 --skip-stats --output /tmp/short.md

Tasks: every task of each ``--data-dir`` manifest (default ``../shared/data/eval`` and
``../shared/data/real/dev``: 46 tasks). Each is backtested as its README says (last ``n_windows * H``
points, consecutive windows, each window sees all points before it), with ``n_windows`` raised to
``--min-windows`` where every series keeps a context of max(3 H, 2 m) points before the first
window: one window of one series moves a task's score a lot, several origins steady it.

Models: statsforecast's Naive, SeasonalNaive, AutoETS, AutoTheta and AutoARIMA in two settings,
``AutoARIMA`` (defaults; where m > 12 the default search takes 10+ minutes per window, so there it
uses ``approximation=True`` as R's auto.arima does by default) and ``AutoARIMA-approx``
(``approximation=True`` on the last 20 seasons, everywhere), plus ``StatsMedian``, the quantile-by-
quantile median of AutoETS, AutoARIMA and AutoTheta; and the tsfm models of ``--models`` through
the public ``Forecaster`` (``name[key=value;...]`` passes constructor keywords).

Scores: MASE, sMAPE (0-200) and WQL per task, divided by SeasonalNaive's, then the geometric mean
over tasks, overall and per frequency group, each with a 95% bootstrap-over-tasks interval. For
each tsfm model, the ratio to the best baseline of each metric (paired: the same resampled tasks)
with its interval: a change wins only when its interval clears the other's.
``--reuse`` takes the rows of models not being run from an earlier results JSON whose tasks have
the same windows (the baselines cost most of a run). ``--max-history N`` hands every model only the
last N points of each series before each window, as if the series were that short (the scale of
MASE still comes from the whole history, the same for every model). The full run (every option at its
default) writes ``benchmarks/results/zero_shot.md`` and ``.json``; any other run must name ``--output``,
so a trial never replaces the stored result. A reused row keeps the command, date and commit of the run
that made it (``provenance`` in the JSON, listed in the report).
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
    REPO_ROOT,
    check_model,
    existing_file,
    fail,
    finish_run,
    markdown_table,
    metadata_markdown,
    non_negative_int,
    output_path,
    positive_int,
    read_json,
    start_run,
    write_results,
)

QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
LEVELS = (20, 40, 60, 80)  # central intervals whose bounds are the quantiles above (0.5 = point)
BASELINE = "SeasonalNaive"
STATS_MODELS = ("Naive", "SeasonalNaive", "AutoETS", "AutoARIMA", "AutoARIMA-approx", "AutoTheta")
MEDIAN_OF = ("AutoETS", "AutoARIMA", "AutoTheta")
MEDIAN = "StatsMedian"
BASELINES = (*STATS_MODELS[2:], MEDIAN)  # the candidates for "best statistical baseline"
ARIMA_FULL_MAX_SEASON = 12
ARIMA_LONG_SEASONS = 20
# Statistical models read at most the last STATS_MAX_CONTEXT points: on one ETTh1 series (17,420
# hourly points) AutoETS took 14 s and AutoTheta more than 4 minutes per window, so full contexts
# would take hours on the long tasks. Tasks this cuts: ETTh1/2, exchange_rate, sunspots_monthly,
# co2_weekly, taylor_electricity; tsfm models read at most 512 points anyway.
STATS_MAX_CONTEXT = 1000
GROUPS = ("yearly", "quarterly", "monthly", "weekly", "daily", "sub-daily")
BOOTSTRAP_DRAWS = 4000
PACKAGES = ("tsfm", "statsforecast", "numpy", "pandas", "torch", "gluonts")
SHARED = REPO_ROOT.parent / "shared" / "data"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, action="append", default=None,
                        help="folder with manifest.json and task CSVs; repeat for several "
                        "(default: ../shared/data/eval and ../shared/data/real/dev)")
    parser.add_argument("--tasks", default="", help="comma-separated task names (default: every task)")
    parser.add_argument("--models", default="ttm", help="comma-separated tsfm models, name or name[key=value;...]")
    parser.add_argument("--skip-tsfm", action="store_true", help="run only the statsforecast models")
    parser.add_argument("--skip-stats", action="store_true",
                        help="run no statsforecast model except SeasonalNaive (the baseline)")
    parser.add_argument("--reuse", type=existing_file, default=None,
                        help="results JSON whose rows stand in for models not run here (same tasks and windows)")
    parser.add_argument("--min-windows", type=non_negative_int, default=5,
                        help="backtest at least this many windows per task where each window keeps a context "
                        "of max(3 H, 2 m) points (default 5; 0: the manifest's n_windows)")
    parser.add_argument("--max-history", type=non_negative_int, default=0,
                        help="give every model only the last N points of each series before each window "
                        "(default 0: all of them)")
    parser.add_argument("--integer-steps", action="store_true",
                        help="give tsfm models each series with its step numbers 1..n for timestamps and no "
                        "frequency (statistical models keep the dates and the task's season)")
    parser.add_argument("--output", type=Path, default=None,
                        help="markdown report path, the JSON goes next to it (default, for the full run only: "
                        "benchmarks/results/zero_shot.md)")
    parser.add_argument("--num-threads", type=positive_int, default=1,
                        help="threads for torch, OpenMP, BLAS and numba (default 1)")
    args = parser.parse_args(argv)
    output_path(parser, args, "zero_shot.md")
    args.data_dir = args.data_dir or [SHARED / "eval", SHARED / "real" / "dev"]
    return args


# ----------------------------------------------------------------------------- models


def arima_settings(name: str, m: int) -> tuple[dict[str, Any], int | None]:
    """AutoARIMA's extra arguments and context limit for one of the two named settings."""
    if name == "AutoARIMA-approx":
        return {"approximation": True}, ARIMA_LONG_SEASONS * m
    return ({"approximation": True} if m > ARIMA_FULL_MAX_SEASON else {}), None


def statsforecast_fn(name: str, task: dict[str, Any]) -> Callable:
    """``context_df -> forecast_df`` for one statsforecast model, quantile columns "0.1".."0.9"."""
    import statsforecast.models as sf_models
    from statsforecast import StatsForecast

    kwargs, max_length = arima_settings(name, task["m"]) if name.startswith("AutoARIMA") else ({}, None)
    max_length = min(max_length or STATS_MAX_CONTEXT, STATS_MAX_CONTEXT)
    model_class = getattr(sf_models, name.split("-")[0])

    def forecast(context):
        model = model_class() if name == "Naive" else model_class(season_length=task["m"], **kwargs)
        context = context.groupby("unique_id", sort=False).tail(max_length)
        engine = StatsForecast(models=[model], freq=task["freq"], n_jobs=1)
        raw = engine.forecast(df=context, h=task["horizon"], level=list(LEVELS))
        return to_quantile_frame(raw, model_class.__name__)

    return forecast


def to_quantile_frame(raw, alias: str):
    """statsforecast's ``alias-lo-80`` ... columns -> ``mean, "0.1", ..., "0.9"``."""
    columns = {"mean": raw[alias], "0.5": raw[alias]}
    for level in LEVELS:
        lower = round((100 - level) / 200, 10)
        columns[str(lower)] = raw[f"{alias}-lo-{level}"]
        columns[str(round(1 - lower, 10))] = raw[f"{alias}-hi-{level}"]
    out = raw[["unique_id", "ds"]].copy()
    out.insert(2, "mean", columns["mean"].to_numpy())
    for q in QUANTILES:
        out[str(q)] = columns[str(q)].to_numpy()
    return out


def parse_model_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``ttm[log_scale=never;context_length=96]`` -> ("ttm", {...}); values parsed as JSON when they can be."""
    if "[" not in spec:
        return spec, {}
    name, rest = spec.split("[", 1)
    kwargs = {}
    for item in filter(None, rest.rstrip("]").split(";")):
        if "=" not in item:
            raise ValueError(f"{spec}: '{item}' is not key=value (write name[key=value;...])")
        key, value = item.split("=", 1)
        try:
            kwargs[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            kwargs[key.strip()] = value.strip()
    return name.strip(), kwargs


def check_models(specs: list[str]) -> None:
    """Exit 2 on a model spec this script cannot run (unknown name, bad ``[key=value]`` or a keyword
    the Forecaster does not take), before any model runs: it would otherwise score "–" on every task."""
    for spec in specs:
        try:
            name, kwargs = parse_model_spec(spec)
        except ValueError as err:
            fail(f"--models: {err}")
        check_model(name, {"horizon": 1, "quantiles": QUANTILES, **kwargs}, label=spec)


def tsfm_fn(spec: str, task: dict[str, Any], integer_steps: bool = False) -> Callable:
    """``context_df -> forecast_df`` through the public API, exactly as a user calls it; with
    ``integer_steps`` each series' timestamps become its step numbers 1..n (no frequency given, as
    with tables that carry no dates) and the forecast's steps are put back on the task's dates."""
    import numpy as np
    import pandas as pd

    from tsfm import Forecaster

    name, kwargs = parse_model_spec(spec)

    def forecast(context):
        if not integer_steps:
            return Forecaster(model=name, horizon=task["horizon"], quantiles=QUANTILES, **kwargs).fit(context).predict()
        offset = pd.tseries.frequencies.to_offset(task["freq"])

        def step_numbers(ds: pd.Series) -> np.ndarray:  # positions on the task's grid: a gap stays a gap
            position = pd.date_range(ds.min(), ds.max(), freq=offset).get_indexer(ds)
            if (position < 0).any():
                raise ValueError(f"{task['name']}: timestamps off the {task['freq']} grid")
            return position + 1

        steps = context.assign(ds=context.groupby("unique_id")["ds"].transform(step_numbers))
        out = Forecaster(model=name, horizon=task["horizon"], quantiles=QUANTILES, **kwargs).fit(steps).predict()
        last = context.groupby("unique_id")["ds"].max()
        ahead = out["ds"] - out["unique_id"].map(steps.groupby("unique_id")["ds"].max())
        return out.assign(ds=[last[u] + int(k) * offset for u, k in zip(out["unique_id"], ahead)])

    return forecast


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


# ----------------------------------------------------------------------------- tasks


def frequency_group(freq: str) -> str:
    from tsfm.data.freq import canonical_name

    name = canonical_name(freq)
    return {"Y": "yearly", "Q": "quarterly", "M": "monthly", "W": "weekly", "D": "daily", "B": "daily"}.get(
        name, "sub-daily")


def load_tasks(data_dirs: list[Path], wanted: str, min_windows: int, max_history: int = 0) -> list[dict[str, Any]]:
    """Tasks of every manifest, each with its folder, set name, frequency group, windows and the
    history each window may read (``max_history``, 0 for all of it)."""
    tasks = []
    for folder in data_dirs:
        path = folder / "manifest.json"
        if not path.is_file():
            fail(f"no manifest at {path}: pass --data-dir pointing to an evaluation set")
        for task in json.loads(path.read_text())["tasks"]:
            tasks.append(with_windows({**task, "dir": str(folder), "set": folder.name, "max_history": max_history,
                                       "group": frequency_group(task["freq"])}, min_windows))
    names = [t["name"] for t in tasks]
    if len(set(names)) != len(names):
        fail("two data folders hold tasks of the same name")
    if wanted:
        keep = [n.strip() for n in wanted.split(",") if n.strip()]
        unknown = sorted(set(keep) - set(names))
        if unknown or not keep:
            fail(f"unknown task(s) {', '.join(unknown) or repr(wanted)}; known: {', '.join(names)}")
        tasks = [t for t in tasks if t["name"] in keep]
    return tasks


def with_windows(task: dict[str, Any], min_windows: int) -> dict[str, Any]:
    """``task`` with ``n_windows`` raised to ``min_windows`` where every window keeps a context of
    at least max(3 H, 2 m) points (never lowered below the manifest's)."""
    h, m = task["horizon"], task["m"]
    fits = (task["min_length"] - max(3 * h, 2 * m)) // h
    return {**task, "n_windows": max(task["n_windows"], min(min_windows, fits))}


def run_model(fn: Callable, df, task: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """Backtest one model on one task: (scores, seconds or the error; the forecasts or None)."""
    from tsfm.evaluation import backtest_forecasts, evaluate_forecasts

    elapsed = 0.0

    def timed(context):
        nonlocal elapsed
        if task.get("max_history"):
            context = context.groupby("unique_id", sort=False).tail(task["max_history"])
        start = time.perf_counter()
        out = fn(context)
        elapsed += time.perf_counter() - start
        return out

    try:
        cv = backtest_forecasts(timed, df, task["horizon"], task["n_windows"])
        scores = evaluate_forecasts(cv, cv, df, task["m"], QUANTILES)
    except Exception as err:  # a failing model is reported in the results, never dropped silently
        line = traceback.format_exception_only(type(err), err)[-1].strip()
        return {"scores": {}, "seconds": elapsed, "error": line}, None
    return {"scores": scores, "seconds": elapsed, "error": None}, cv


def median_run(forecasts: dict[str, Any], df, task: dict[str, Any]) -> dict[str, Any]:
    """StatsMedian: the quantile-wise median of the MEDIAN_OF models' backtest forecasts."""
    import numpy as np

    from tsfm.evaluation import evaluate_forecasts

    missing = [m for m in MEDIAN_OF if forecasts.get(m) is None]
    if missing:
        return {"scores": {}, "seconds": 0.0, "error": f"no forecasts of {', '.join(missing)}"}
    frames = [forecasts[m] for m in MEDIAN_OF]
    out = frames[0].copy()
    for column in ["mean", *map(str, QUANTILES)]:
        out[column] = np.median(np.stack([f[column].to_numpy() for f in frames]), axis=0)
    levels = [str(q) for q in QUANTILES]
    out[levels] = np.sort(out[levels].to_numpy(), axis=1)  # medians of sorted quantiles stay sorted; be sure
    return {"scores": evaluate_forecasts(out, out, df, task["m"], QUANTILES), "seconds": 0.0, "error": None}


WINDOW_KEYS = ("n_windows", "horizon", "max_history")  # what makes two runs of a task comparable, row by row


def reused_rows(path: Path | None, tasks: list[dict[str, Any]], skip: set[str]) -> dict[str, dict[str, Any]]:
    """``{task: {model: row}}`` from an earlier results JSON, for tasks with the same windows."""
    if path is None:
        return {}
    earlier = read_json(path).get("tasks", {})
    rows = {}
    for task in tasks:
        old = earlier.get(task["name"])
        same = old is not None and all(old.get(k, 0) == task.get(k, 0) for k in WINDOW_KEYS)
        if not same:
            fail(f"{path} has no run of {task['name']} with {task['n_windows']} windows "
                             f"of {task['horizon']} reading {task.get('max_history') or 'all'} points of history; "
                             "rerun the baselines with these settings")
        rows[task["name"]] = {m: r for m, r in old["models"].items() if m not in skip}
    return rows


def provenance(path: Path | None, reused: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Where reused rows came from: each earlier run's command, date and commit with the models whose
    rows it made, carried forward through files that themselves reused rows."""
    models = sorted({m for rows in reused.values() for m in rows})
    if path is None or not models:
        return []
    earlier = read_json(path)
    carried = earlier.get("provenance", [])
    inherited = {m for entry in carried for m in entry["models"]}
    meta = earlier.get("meta", {})
    own = {**{k: meta.get(k, "?") for k in ("command", "date", "git_commit")}, "file": str(path),
           "models": [m for m in models if m not in inherited]}
    entries = [{**entry, "models": [m for m in entry["models"] if m in models]} for entry in [*carried, own]]
    return [entry for entry in entries if entry["models"]]


def provenance_markdown(entries: list[dict[str, Any]]) -> list[str]:
    """The report's list of earlier runs whose rows it shows."""
    if not entries:
        return []
    return ["", "Rows of models not run here (`--reuse`) come from earlier runs:", "",
            *[f"- {', '.join(e['models'])}: `{e['command']}` ({e['date']}, git commit {e['git_commit']}; "
              f"read from `{e.get('file', '?')}`)" for e in entries]]


# ----------------------------------------------------------------------------- aggregation


def log_ratios(results, tasks, model: str, metric: str, reference: str = BASELINE):
    """Per-task log(model / reference) of one metric (NaN where either is missing)."""
    import numpy as np

    out = []
    for t in tasks:
        per = results[t["name"]]
        a = per.get(model, {}).get("scores", {}).get(metric, np.nan)
        b = per.get(reference, {}).get("scores", {}).get(metric, np.nan)
        out.append(np.log(a / b) if a > 0 and b > 0 else (-np.inf if a == 0 and b > 0 else np.nan))
    return np.asarray(out, dtype=np.float64)


def geo_interval(values, seed: int = 0) -> tuple[float, float, float]:
    """exp(mean) of per-task log ratios and its 95% bootstrap-over-tasks interval (NaN if any is missing).

    One task has no interval (every resample is that task: zero width, a false certainty), so its
    bounds are NaN and ``cell`` and compare's verdict say so."""
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    if len(values) == 0 or np.isnan(values).any():
        return (np.nan, np.nan, np.nan)
    values = np.maximum(values, np.log(1e-6))  # a perfect task (ratio 0) counts as a very small ratio
    if len(values) == 1:
        return (float(np.exp(values[0])), np.nan, np.nan)
    draws = np.random.default_rng(seed).integers(0, len(values), size=(BOOTSTRAP_DRAWS, len(values)))
    means = values[draws].mean(axis=1)
    return (float(np.exp(values.mean())), float(np.exp(np.percentile(means, 2.5))),
            float(np.exp(np.percentile(means, 97.5))))


def aggregate(results, tasks, models: list[str], tsfm_models: list[str]) -> dict[str, Any]:
    """Relative scores with intervals per model (all tasks and per group); each tsfm model against
    the best baseline of each metric, overall and per group."""
    import numpy as np

    groups = {"all": tasks, **{g: [t for t in tasks if t["group"] == g] for g in GROUPS}}
    groups = {g: ts for g, ts in groups.items() if ts}
    relative = {g: {m: {metric: geo_interval(log_ratios(results, ts, m, metric))
                        for metric in ("MASE", "sMAPE", "WQL")} for m in models} for g, ts in groups.items()}
    best = {}
    for metric in ("MASE", "WQL"):
        ranked = [(relative["all"][b][metric][0], b) for b in BASELINES if b in models
                  and np.isfinite(relative["all"][b][metric][0])]
        best[metric] = min(ranked)[1] if ranked else None
    versus = {m: {g: {metric: geo_interval(log_ratios(results, ts, m, metric, best[metric]))
                      if best[metric] else (np.nan,) * 3 for metric in ("MASE", "WQL")}
                  for g, ts in groups.items()} for m in tsfm_models}
    coverage = {m: float(np.mean([results[t["name"]][m]["scores"].get("coverage_10_90", np.nan)
                                  if results[t["name"]].get(m, {}).get("scores") else np.nan for t in tasks]))
                for m in models}
    seconds = {m: float(sum(results[t["name"]].get(m, {}).get("seconds", 0.0) for t in tasks)) for m in models}
    failed = {m: [t["name"] for t in tasks if results[t["name"]].get(m, {}).get("error")] for m in models}
    return {"relative": relative, "best_baseline": best, "versus_best": versus, "coverage_10_90": coverage,
            "seconds": seconds, "failed_tasks": failed, "task_counts": {g: len(ts) for g, ts in groups.items()}}


# ----------------------------------------------------------------------------- report


ONE_TASK = "one task: no interval"


def cell(interval) -> str:
    """A ratio and its interval; one task's ratio alone, marked (see ``geo_interval``)."""
    value, low, high = interval
    if value != value:
        return "–"
    return f"{value:.3f} ({ONE_TASK})" if low != low else f"{value:.3f} [{low:.3f}, {high:.3f}]"


def render(meta, tasks, results, summary, models, tsfm_models, notes: list[str],
           sources: list[dict[str, Any]] = ()) -> str:
    rel, counts = summary["relative"], summary["task_counts"]
    parts = [
        "# Zero-shot accuracy on the broad dev benchmark",
        "",
        "Written by `benchmarks/zero_shot.py`; do not edit by hand.",
        "",
        metadata_markdown(meta),
        *provenance_markdown(list(sources)),
        "",
        f"## Aggregate over {counts['all']} tasks",
        "",
        "Geometric mean over tasks of score / SeasonalNaive score (lower is better), with the 95% "
        "bootstrap-over-tasks interval.",
        "",
        markdown_table(
            ["model", "rel. MASE", "rel. WQL", "rel. sMAPE", "mean 10-90 coverage (ideal 0.8)", "seconds",
             "failed tasks"],
            [[m, cell(rel["all"][m]["MASE"]), cell(rel["all"][m]["WQL"]), cell(rel["all"][m]["sMAPE"]),
              summary["coverage_10_90"][m], f"{summary['seconds'][m]:.1f}",
              ", ".join(summary["failed_tasks"][m]) or "none"] for m in models],
        ),
    ]
    best = summary["best_baseline"]
    if tsfm_models and not any(best.values()):
        parts += ["", "No statistical baseline ran (`--skip-stats` without `--reuse`): no ratios to the best one."]
    elif tsfm_models:
        rows = []
        for m in tsfm_models:
            for g in rel:
                v = summary["versus_best"][m][g]
                rows.append([m, f"{g} ({counts[g]})", cell(v["MASE"]), cell(v["WQL"])])
        parts += [
            "",
            f"## tsfm models against the best baseline (MASE: {best['MASE']}, WQL: {best['WQL']})",
            "",
            "Paired ratio (geometric mean over the group's tasks of model score / baseline score) and its "
            "95% bootstrap interval; below 1 is better than the baseline. The acceptance bar is 0.90 overall.",
            "",
            markdown_table(["model", "group (tasks)", "MASE ratio", "WQL ratio"], rows),
        ]
    for metric in ("MASE", "WQL"):
        rows = [[m] + [cell(rel[g][m][metric]) for g in rel if g != "all"] for m in models]
        parts += ["", f"## Relative {metric} per frequency group", "",
                  markdown_table(["model", *[f"{g} ({counts[g]})" for g in rel if g != "all"]], rows)]
    parts += ["", "## Notes", "", *[f"- {note}" for note in notes]]
    for metric, digits in (("MASE", 3), ("WQL", 4), ("coverage_10_90", 2)):
        rows = [[t["name"], t["group"]] + [results[t["name"]].get(m, {}).get("scores", {}).get(metric, float("nan"))
                                           for m in models] for t in tasks]
        parts += ["", f"## {metric} per task", "", markdown_table(["task", "group", *models], rows, digits)]
    rows = [[t["name"], t["set"], t["freq"], t["m"], t["horizon"], t["n_windows"], t["n_series"]]
            + [f"{results[t['name']][m]['seconds']:.2f}" if m in results[t["name"]] else None for m in models]
            for t in tasks]
    parts += ["", "## Tasks and seconds (fit+predict, summed over windows)", "",
              markdown_table(["task", "set", "freq", "m", "H", "windows", "series", *models], rows, 2)]
    errors = [(t, m, r["error"]) for t, per in results.items() for m, r in per.items() if r.get("error")]
    if errors:
        parts += ["", "## Errors", "", *[f"- {m} on {t}: `{e}`" for t, m, e in errors]]
    return "\n".join(parts)


def run_notes(args: argparse.Namespace, models: list[str], warm_seconds: dict[str, float]) -> list[str]:
    """What a reader needs to judge the numbers: windows, warm-up, quantile mapping, metrics, settings."""
    notes = [
        f"Windows: the manifest's n_windows raised to --min-windows {args.min_windows} where each window keeps a "
        "context of max(3 H, 2 m) points (table at the end).",
        "Warm-up (untimed, before any task): each model run here forecast a 60-point monthly series once: "
        + ", ".join(f"{k} {v:.2f}s" for k, v in warm_seconds.items()) + ".",
        "Quantiles 0.1..0.9: statsforecast's `level=[20, 40, 60, 80]` interval bounds with its point forecast "
        "as 0.5; tsfm models through `Forecaster(model=..., horizon=H, quantiles=(0.1, ..., 0.9)).fit(context)"
        ".predict()`.",
        "Metrics (tsfm/evaluation.py, parity with gluonts.ev tested): MASE and sMAPE on the 0.5 quantile, mean "
        "over series x windows; WQL over 0.1..0.9 as a ratio of sums over the task.",
        f"Statistical models read at most the last {STATS_MAX_CONTEXT} points of each context (on one ETTh1 series "
        "of 17,420 points AutoTheta took over 4 minutes per window); tsfm models read at most 512.",
        f"Baselines: AutoARIMA = statsforecast defaults where m <= {ARIMA_FULL_MAX_SEASON} and "
        f"`approximation=True` where m > {ARIMA_FULL_MAX_SEASON} (the exact search took 13+ minutes per window on "
        f"co2_weekly); AutoARIMA-approx = `approximation=True` on the last {ARIMA_LONG_SEASONS} seasons everywhere; "
        f"{MEDIAN} = the quantile-wise median of {', '.join(MEDIAN_OF)}. AutoETS fits no seasonal model when "
        "m > 24 (statsforecast's rule). The best baseline of a metric is the lowest aggregate among "
        + ", ".join(BASELINES) + ".",
        f"Intervals: {BOOTSTRAP_DRAWS} bootstrap resamples of the tasks (seed 0), 2.5-97.5 percentiles of the "
        "geometric mean; paired ratios resample the same tasks for both models.",
        f"Models run one after another in one process, statsforecast with n_jobs=1, threads pinned to "
        f"{args.num_threads}; the machine is shared, so compare seconds within one run (load above).",
    ]
    if args.max_history:
        notes.insert(1, f"History: every model read only the last {args.max_history} points of each series before "
                     "each window (--max-history), as if the series were that short.")
    if args.integer_steps:
        notes.insert(1, "Integer steps (--integer-steps): tsfm models read each series with its step numbers 1..n "
                     "as timestamps and no frequency, as from a table without dates; the statistical models "
                     "keep the dates and the task's season, as a user would give statsforecast season_length.")
    if args.reuse:
        notes.insert(1, f"Rows of models not run here come from `{args.reuse}` (same tasks and windows).")
    return notes


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    meta = start_run(args.num_threads, PACKAGES)  # before numpy and friends are imported
    tasks = load_tasks(args.data_dir, args.tasks, args.min_windows, args.max_history)
    tsfm_models = [] if args.skip_tsfm else [m.strip() for m in args.models.split(",") if m.strip()]
    check_models(tsfm_models)
    run_stats = [BASELINE] if args.skip_stats else list(STATS_MODELS)
    if args.reuse:
        run_stats = [] if args.skip_stats else run_stats
    run_here = run_stats + tsfm_models
    reused = reused_rows(args.reuse, tasks, set(run_here))

    import pandas as pd

    # statsforecast's optimisers warn per fit ("possible convergence problem"): thousands of lines
    warnings.filterwarnings("ignore", category=UserWarning, module=r"statsforecast\.")
    makers = {name: (lambda task, name=name: statsforecast_fn(name, task)) for name in run_stats}
    makers.update({name: (lambda task, name=name: tsfm_fn(name, task, args.integer_steps)) for name in tsfm_models})
    warm_seconds = warm_up(makers)

    results: dict[str, dict[str, dict[str, Any]]] = {}
    for task in tasks:
        df = pd.read_csv(Path(task["dir"]) / task["file"], parse_dates=["ds"])
        results[task["name"]] = dict(reused.get(task["name"], {}))
        forecasts = {}
        for name in run_here:
            run, forecasts[name] = run_model(makers[name](task), df, task)
            results[task["name"]][name] = run
            status = f"error: {run['error']}" if run["error"] else f"MASE {run['scores']['MASE']:.3f}"
            print(f"{task['name']:<26} {name:<18} {run['seconds']:8.2f}s  {status}", file=sys.stderr, flush=True)
        if set(MEDIAN_OF) <= set(run_here):
            results[task["name"]][MEDIAN] = median_run(forecasts, df, task)
    finish_run(meta)
    write_report(args, meta, tasks, results, tsfm_models, warm_seconds, provenance(args.reuse, reused))
    return 0


def write_report(args: argparse.Namespace, meta: dict, tasks: list[dict[str, Any]], results: dict,
                 tsfm_models: list[str], warm_seconds: dict[str, float],
                 sources: list[dict[str, Any]] = ()) -> None:
    """Aggregate a finished run and write its markdown and JSON: the baselines first, then
    ``tsfm_models`` (the rows run here), then any other rows the results hold."""
    present = {m for per in results.values() for m in per}
    stats_order = [m for m in (*STATS_MODELS, MEDIAN) if m in present]
    models = stats_order + tsfm_models + sorted(present - set(stats_order) - set(tsfm_models))
    ours = [m for m in models if m not in (*STATS_MODELS, MEDIAN)]
    summary = aggregate(results, tasks, models, ours)
    notes = run_notes(args, models, warm_seconds)
    keys = ("set", "group", "freq", "m", "horizon", "n_windows", "n_series", "max_history")
    data = {"meta": meta, "provenance": list(sources), "notes": notes, "summary": summary,
            "tasks": {t["name"]: {**{k: t[k] for k in keys}, "models": results[t["name"]]} for t in tasks}}
    written = write_results(args.output, render(meta, tasks, results, summary, models, ours, notes, sources), data)
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
