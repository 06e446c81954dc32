"""``--ensemble auto`` on the broad dev benchmark: accuracy against every member alone, coverage, cost.

    python benchmarks/ensemble.py                                   # 46 tasks, baselines from zero_shot.json
    python benchmarks/ensemble.py --tasks air_passengers,nile --output /tmp/ens.md   # a few tasks
    python benchmarks/ensemble.py --cost                            # 1,000 monthly series x 120 through the CLI

Same tasks and windows as ``benchmarks/zero_shot.py`` (its ``--min-windows 5`` rule), so the rows of
the members alone with their standard settings (ttm, moirai-moe, AutoARIMA, AutoETS, AutoTheta,
SeasonalNaive) and StatsMedian are read from ``--reuse`` (default ``results/zero_shot.json``). For
every outer window the script runs ``Forecaster(model="auto", horizon=H, quantiles=0.1..0.9)
.fit(context).predict()`` — the public path, with its inner backtests on the context alone — and
scores, from the same fit: ``auto`` (the default: uncalibrated while ``tsfm.auto.CALIBRATE`` is off),
``auto-calibrated`` (same weights, conformal widening; ``auto-uncalibrated`` when calibration is the
default), ``auto-equal`` (equal weights, no calibration: what fitted weights add) and each
member as it ran inside the ensemble (``member:<name>``, its budgeted settings; a member the
budget skipped on a task has no row there). Scores, intervals and the paired ratios as in
zero_shot.py; 80% coverage from the 0.1/0.9 columns and 50% from 0.25/0.75, interpolated linearly
between the 0.2/0.3 and 0.7/0.8 columns. Finished tasks are cached in ``<output>.partial.jsonl``
(``--resume`` continues a run). ``--cost`` times the CLI on 1,000 monthly series of 120 points,
with and without ``--ensemble auto``, and writes ``results/ensemble_cost.md``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from common import RESULTS_DIR, check_output, finish_run, markdown_table, metadata_markdown, start_run, write_results
from zero_shot import GROUPS, QUANTILES, SHARED, cell, geo_interval, load_tasks, log_ratios, reused_rows

from tsfm import auto

PACKAGES = ("tsfm", "statsforecast", "numpy", "pandas", "torch")
AUTO, EQUAL, IN_SAMPLE = "auto", "auto-equal", "auto-insample-calibration"
# The default is "auto"; the other calibration setting is named by what it changes.
CALIBRATED, UNCALIBRATED = (AUTO, "auto-uncalibrated") if auto.CALIBRATE else ("auto-calibrated", AUTO)
OTHER = UNCALIBRATED if auto.CALIBRATE else CALIBRATED
FORECASTER = "forecaster"  # what Forecaster(model="auto").predict() returned (the code's rule at run time)
RULES = {  # the documented weighting rules compared (prior, what n counts); the code's default is "auto"
    "equal-units": ("equal", "units"), "equal-points": ("equal", "points"), "default-units": ("default", "units"),
}
MEMBERS_ALONE = ("ttm", "moirai-moe", "AutoARIMA", "AutoTheta", "AutoETS", "SeasonalNaive")
REUSED = (*MEMBERS_ALONE, "AutoARIMA-approx", "StatsMedian")
COVERAGES = {"coverage_80": (0.1, 0.9), "coverage_50": (0.25, 0.75)}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, action="append", default=None)
    parser.add_argument("--tasks", default="")
    parser.add_argument("--min-windows", type=int, default=5)
    parser.add_argument("--reuse", type=Path, default=RESULTS_DIR / "zero_shot.json")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "ensemble.md")
    parser.add_argument("--resume", action="store_true", help="skip tasks already in <output>.partial.jsonl")
    parser.add_argument("--num-threads", type=int, default=1)
    parser.add_argument("--cost", action="store_true", help="time the CLI on 1,000 monthly series instead")
    parser.add_argument("--cost-series", type=int, default=1000)
    args = parser.parse_args(argv)
    args.data_dir = args.data_dir or [SHARED / "eval", SHARED / "real" / "dev"]
    return args


# ----------------------------------------------------------------------------- one task
def interpolated(frame, q: float):
    """The quantile column of level ``q``, linear between the two grid columns around it."""
    import numpy as np

    grid = np.asarray(QUANTILES)
    if any(abs(q - g) < 1e-9 for g in grid):
        return frame[str(q)].to_numpy()
    hi = int(np.searchsorted(grid, q))
    lo = hi - 1
    t = (q - grid[lo]) / (grid[hi] - grid[lo])
    return (1 - t) * frame[str(grid[lo])].to_numpy() + t * frame[str(grid[hi])].to_numpy()


def coverages(cv) -> dict[str, float]:
    import numpy as np

    y = cv["y"].to_numpy(dtype=float)
    seen = np.isfinite(y)
    return {name: float(np.mean(((y >= interpolated(cv, lo)) & (y <= interpolated(cv, hi)))[seen]))
            for name, (lo, hi) in COVERAGES.items()}


def variant_frames(forecaster) -> dict[str, Any]:
    """Quantile frames (columns "0.1".."0.9") of every variant scored, from one fitted-and-predicted ensemble."""
    import numpy as np

    from tsfm import aggregation
    from tsfm.auto import GRID
    from tsfm.data.forecast_frame import forecast_frame
    from tsfm.data.windows import inference_windows
    from tsfm_runtime import aggregate, rules

    ensemble, series = forecaster.model_, forecaster.series_
    windows = inference_windows(series, 512)
    values, mask = windows["past_values"], windows["past_mask"]

    def frame(quantiles):
        q = rules.floor_at_zero(rules.pin_constants(quantiles.astype(np.float32), values, mask), values, mask, None)
        return forecast_frame(series, q, list(GRID), [str(g) for g in GRID])

    stack = ensemble.last_members
    equal = np.full(ensemble.weights.shape, 1.0 / len(ensemble.members))
    out = {EQUAL: frame(aggregate.apply(stack, equal, GRID))}
    data = ensemble.backtests
    for name, (prior, count) in RULES.items():
        if data is None:  # too short for a backtest: the default model alone, whatever the rule
            out[f"rule:{name}"] = out[f"rule:{name}:uncalibrated"] = out[IN_SAMPLE] = frame(stack[0])
            continue
        rule = auto.weight_rule(ensemble.members, prior, count)
        weights = aggregation.fit_weights(data, GRID, **rule)
        widening = aggregation.calibration(data, GRID, **rule)
        out[f"rule:{name}"] = frame(aggregate.apply(stack, weights, GRID, widening))
        out[f"rule:{name}:uncalibrated"] = frame(aggregate.apply(stack, weights, GRID))
        if name == default_rule():  # the other calibration: on the very aggregates the weights were fitted on
            fitted = aggregate.combine(data.forecasts, weights)
            known = np.isfinite(data.actual) & np.isfinite(fitted).all(axis=1)
            out[IN_SAMPLE] = frame(aggregate.apply(stack, weights, GRID, rules.conformal_widening(
                fitted, data.actual, known, GRID)))
    for i, member in enumerate(ensemble.members):
        if np.isfinite(stack[i]).all():
            out[f"member:{member.name}"] = frame(stack[i])
    return out


def default_rule() -> str:
    from tsfm import aggregation

    return f"{auto.PRIOR}-{aggregation.COUNT}"


def run_task(task: dict[str, Any], num_threads: int) -> dict[str, Any]:
    import numpy as np
    import pandas as pd

    from tsfm import Forecaster
    from tsfm.evaluation import backtest_splits, evaluate_forecasts

    df = pd.read_csv(Path(task["dir"]) / task["file"], parse_dates=["ds"])
    frames: dict[str, list] = {}
    seconds, member_seconds, lines = 0.0, {}, []
    for context, actual in backtest_splits(df, task["horizon"], task["n_windows"]):
        start = time.perf_counter()
        forecaster = Forecaster(model="auto", horizon=task["horizon"], quantiles=QUANTILES, num_threads=num_threads)
        forecast = forecaster.fit(context).predict()
        seconds += time.perf_counter() - start
        for name, value in forecaster.model_.seconds.items():
            member_seconds[name] = member_seconds.get(name, 0.0) + value
        lines.append(forecaster.model_.lines)
        variants = {FORECASTER: forecast, **variant_frames(forecaster)}
        last = context.groupby("unique_id")["ds"].max()
        for name, f in variants.items():
            f = f.drop(columns=["mean"], errors="ignore").merge(actual[["unique_id", "ds", "y"]],
                                                                on=["unique_id", "ds"])
            f.insert(2, "cutoff", f["unique_id"].map(last).to_numpy())
            frames.setdefault(name, []).append(f)
    n_windows = task["n_windows"]
    models = {}
    for name, parts in frames.items():
        if len(parts) != n_windows:  # a member skipped or failing on some window: no row for the task
            continue
        cv = pd.concat(parts, ignore_index=True)
        scores = evaluate_forecasts(cv, cv, df, task["m"], QUANTILES)
        scores.update(coverages(cv))
        models[name] = {"scores": scores, "seconds": seconds if name == FORECASTER else 0.0, "error": None}
    weights = [line[-1] for line in lines]
    return {"models": models, "member_seconds": member_seconds, "lines": lines, "weights": weights,
            "mean_points": float(np.mean([len(p) for p in frames[FORECASTER]]))}


# ----------------------------------------------------------------------------- report
def summarise(results: dict[str, dict[str, Any]], tasks: list[dict[str, Any]]) -> dict[str, Any]:
    import numpy as np

    present = sorted({m for per in results.values() for m in per})
    models = [AUTO, OTHER, EQUAL, *[m for m in (IN_SAMPLE,) if m in present],
              *sorted(m for m in present if m.startswith("rule:")), FORECASTER,
              *[m for m in REUSED if m in present],
              *sorted(m for m in present if m.startswith("member:"))]
    groups = {"all": tasks, **{g: [t for t in tasks if t["group"] == g] for g in GROUPS}}
    groups = {g: ts for g, ts in groups.items() if ts}
    relative, coverage, counts = {}, {}, {}
    for g, ts in groups.items():
        relative[g] = {}
        for m in models:
            have = [t for t in ts if m in results[t["name"]]]
            if g == "all":
                counts[m] = len(have)
            relative[g][m] = {metric: geo_interval(log_ratios(results, have, m, metric)) if have else (np.nan,) * 3
                              for metric in ("MASE", "WQL")}
    for m in models:
        coverage[m] = {key: float(np.mean([results[t["name"]][m]["scores"].get(key, np.nan) for t in tasks
                                           if m in results[t["name"]]]))
                       for key in ("coverage_10_90", *COVERAGES)}
        if coverage[m]["coverage_80"] != coverage[m]["coverage_80"]:  # reused rows hold the 10-90 coverage only
            coverage[m]["coverage_80"] = coverage[m]["coverage_10_90"]
    versus = {}
    for candidate in (AUTO, OTHER):
        versus[candidate] = {}
        for ref in [m for m in models if m not in (AUTO, candidate)]:
            have = [t for t in tasks if ref in results[t["name"]]]
            versus[candidate][ref] = {metric: geo_interval(log_ratios(results, have, candidate, metric, ref))
                                      for metric in ("MASE", "WQL")}
            versus[candidate][ref]["tasks"] = len(have)
    return {"models": models, "relative": relative, "coverage": coverage, "task_counts": counts,
            "groups": {g: len(ts) for g, ts in groups.items()}, "versus": versus}


def render(meta, tasks, results, info, summary, notes) -> str:
    rel, models, counts = summary["relative"], summary["models"], summary["task_counts"]
    parts = ["# `--ensemble auto` on the broad dev benchmark", "", "Written by `benchmarks/ensemble.py`; do not edit "
             "by hand.", "", metadata_markdown(meta), "", f"## Aggregate over {len(tasks)} tasks", "",
             "Geometric mean over tasks of score / SeasonalNaive score (lower is better), 95% bootstrap-over-tasks "
             "interval; coverage = mean over tasks of the share of actual points inside the interval.", "",
             markdown_table(["model", "tasks", "rel. MASE", "rel. WQL", "80% coverage", "50% coverage"],
                            [[m, counts[m], cell(rel["all"][m]["MASE"]), cell(rel["all"][m]["WQL"]),
                              summary["coverage"][m]["coverage_80"], summary["coverage"][m]["coverage_50"]]
                             for m in models])]
    for candidate in (AUTO, OTHER):
        rows = [[ref, v["tasks"], cell(v["MASE"]), cell(v["WQL"])] for ref, v in summary["versus"][candidate].items()]
        parts += ["", f"## Paired ratios: `{candidate}` / each model (same tasks resampled)", "",
                  markdown_table(["reference", "tasks", "MASE ratio", "WQL ratio"], rows)]
    for metric in ("MASE", "WQL"):
        groups = [g for g in rel if g != "all"]
        rows = [[m] + [cell(rel[g][m][metric]) for g in groups] for m in models if not m.startswith("member:")]
        parts += ["", f"## Relative {metric} per frequency group", "",
                  markdown_table(["model", *[f"{g} ({summary['groups'][g]})" for g in groups]], rows)]
    parts += ["", "## Acceptance (issue 28)", "", *acceptance(summary)]
    parts += ["", "## Notes", "", *[f"- {n}" for n in notes]]
    shown = [AUTO, OTHER, EQUAL, "ttm", "AutoARIMA", "StatsMedian"]
    for metric, digits in (("MASE", 3), ("WQL", 4), ("coverage_80", 2), ("coverage_50", 2)):
        rows = [[t["name"], t["group"]] + [results[t["name"]].get(m, {}).get("scores", {}).get(metric, float("nan"))
                                           for m in shown] for t in tasks]
        parts += ["", f"## {metric} per task", "", markdown_table(["task", "group", *shown], rows, digits)]
    rows = [[t["name"], t["n_windows"], t["n_series"], f"{results[t['name']][FORECASTER]['seconds']:.1f}",
             ", ".join(f"{k} {v:.1f}" for k, v in info[t["name"]]["member_seconds"].items()),
             info[t["name"]]["lines"][-1][0].split(": ", 1)[-1]] for t in tasks]
    parts += ["", "## Seconds per task (fit + predict over all windows) and the last window's members", "",
              markdown_table(["task", "windows", "series", "auto s", "per member s", "members (last window)"], rows)]
    rows = [[t["name"], info[t["name"]]["lines"][-1][-1]] for t in tasks]
    parts += ["", "## Weights and calibration of each task's last window", "", markdown_table(["task", "said"], rows)]
    return "\n".join(parts)


def acceptance(summary: dict[str, Any]) -> list[str]:
    """Issue 28's bars: lower MASE and WQL than every member alone and StatsMedian; calibrated coverage."""
    rows = []
    for candidate in (AUTO, OTHER):
        for ref in (*MEMBERS_ALONE, "StatsMedian"):
            v = summary["versus"][candidate][ref]
            rows.append([candidate, ref] + [f"{cell(v[m])} {'lower' if v[m][0] < 1 else 'NOT lower'}"
                                            f"{', beyond the interval' if v[m][2] < 1 else ''}"
                                            for m in ("MASE", "WQL")])
    cov = summary["coverage"]
    lines = [markdown_table(["auto", "member alone", "MASE ratio", "WQL ratio"], rows), ""]
    for name, (lo, hi) in (("coverage_80", (0.77, 0.83)), ("coverage_50", (0.47, 0.53))):
        lines.append(f"- {name.split('_')[1]}% interval coverage: {cov[CALIBRATED][name]:.3f} calibrated "
                     f"({'within' if lo <= cov[CALIBRATED][name] <= hi else 'outside'} {lo}-{hi}), "
                     f"{cov[UNCALIBRATED][name]:.3f} uncalibrated.")
    return lines


def run_notes(args) -> list[str]:
    from tsfm import aggregation

    notes = [
        f"`auto` is the rule `Forecaster(model=\"auto\")` uses now, `rule:{default_rule()}` (tsfm.auto.PRIOR = "
        f"{auto.PRIOR!r}, tsfm.aggregation.COUNT = {aggregation.COUNT!r}), "
        f"{'calibrated' if auto.CALIBRATE else 'not calibrated'}; `{OTHER}` the same weights "
        f"{'without' if auto.CALIBRATE else 'with'} calibration. The `rule:*` rows are the three documented "
        "weighting rules computed from the same fits (prior: equal weights or the default model alone; n: series x "
        "windows or points); "
        f"`{FORECASTER}` is what `Forecaster(model=\"auto\").predict()` returned during the run.",
        f"Rows of {', '.join(REUSED)}: `{args.reuse}` (same tasks and windows; the members alone with their standard "
        "settings: statsforecast defaults, ttm = the shipped suite with its own calibration).",
        "auto: `Forecaster(model=\"auto\")` defaults: members within a budget of "
        f"{auto.BUDGET_S:.0f} estimated CPU-seconds per fit (tsfm/auto.py), up to {auto.MAX_WINDOWS} inner backtest "
        f"windows of H inside each outer context (at least max(H, 2m, 8) points kept), at most "
        f"{auto.SAMPLE_SERIES} sampled series for the weights, shrinkage k = {aggregation.SHRINKAGE:g} series-windows, "
        "calibration from leave-one-window-out aggregates (conformal, per interval).",
        f"{IN_SAMPLE}: the same weights calibrated on the in-sample aggregates of all inner windows (the rule not "
        "taken: weights and calibration fitted on the same forecasts).",
        "member:<name> rows: the member as it ran inside the ensemble (budgeted settings, no own calibration); only on "
        "tasks where it ran on every window.",
        "50% coverage: the 0.25/0.75 quantiles interpolated linearly between the 0.2/0.3 and 0.7/0.8 columns.",
        f"Threads pinned to {args.num_threads}; statistical members in-process; run at the lowest priority on a shared "
        "2-core machine, so seconds include waiting (load in the header).",
    ]
    if args.resume:
        notes.append(f"Task rows were computed before this report (cached in `{args.output.stem}.partial.jsonl`, "
                     "`--resume`); the header's date and load are the report's.")
    return notes


def load_partial(path: Path) -> dict[str, Any]:
    done = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                done[row["task"]] = row
    return done


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_output(RESULTS_DIR / "ensemble_cost.md" if args.cost else args.output)  # before the run, not after it
    if args.cost:
        return cost(args)
    meta = start_run(args.num_threads, PACKAGES)
    tasks = load_tasks(args.data_dir, args.tasks, args.min_windows)
    reused = reused_rows(args.reuse, tasks, skip=set())  # refused unless each task has the same windows
    warnings.filterwarnings("ignore")
    partial = args.output.with_suffix(".partial.jsonl")
    done = load_partial(partial) if args.resume else {}
    if not args.resume:
        partial.unlink(missing_ok=True)
    results, info = {}, {}
    for task in tasks:
        if task["name"] not in done:
            start = time.perf_counter()
            row = {"task": task["name"], **run_task(task, args.num_threads)}
            with partial.open("a") as handle:
                handle.write(json.dumps(row, default=float) + "\n")
            done[task["name"]] = row
            auto_scores = row["models"][FORECASTER]["scores"]
            print(f"{task['name']:<26} {time.perf_counter() - start:7.1f}s  MASE {auto_scores['MASE']:.3f}  "
                  f"cov80 {auto_scores['coverage_80']:.2f}", file=sys.stderr, flush=True)
        ran = done[task["name"]]["models"]
        aliases = {CALIBRATED: ran[f"rule:{default_rule()}"], UNCALIBRATED: ran[f"rule:{default_rule()}:uncalibrated"]}
        results[task["name"]] = {**{m: r for m, r in reused[task["name"]].items() if m in REUSED}, **ran, **aliases}
        info[task["name"]] = done[task["name"]]
    finish_run(meta)
    summary = summarise(results, tasks)
    notes = run_notes(args)
    data = {"meta": meta, "notes": notes, "summary": summary,
            "tasks": {t["name"]: {"group": t["group"], "n_windows": t["n_windows"], "horizon": t["horizon"],
                                  "models": results[t["name"]], "lines": info[t["name"]]["lines"],
                                  "member_seconds": info[t["name"]]["member_seconds"]} for t in tasks}}
    written = write_results(args.output, render(meta, tasks, results, info, summary, notes), data)
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------- cost
def monthly_panel(n: int, length: int = 120, seed: int = 0):
    """``n`` positive monthly series: a level, a drift, a seasonal swing and random-walk noise (log scale)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    t = np.arange(length)
    level, drift = rng.uniform(50, 500, n), rng.normal(0, 0.003, n)
    swing, noise, phase = rng.uniform(0, 0.3, n), rng.uniform(0.02, 0.15, n), rng.uniform(0, 2 * np.pi, n)
    walk = np.cumsum(rng.normal(0, 1, (n, length)), axis=1) * noise[:, None] * 0.3
    y = level[:, None] * np.exp(drift[:, None] * t + swing[:, None] * np.sin(2 * np.pi * t / 12 + phase[:, None])
                                + walk + rng.normal(0, 1, (n, length)) * noise[:, None] * 0.5)
    ds = pd.date_range("2010-01-01", periods=length, freq="MS")
    return pd.DataFrame({"unique_id": np.repeat([f"s{i:04d}" for i in range(n)], length), "ds": np.tile(ds, n),
                         "y": y.ravel()})


def cost(args) -> int:
    import tempfile

    meta = start_run(None, PACKAGES)
    rows, said = [], ""
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "monthly.csv"
        monthly_panel(args.cost_series).to_csv(data, index=False)
        for label, extra in (("default (ttm suite)", []), ("--ensemble auto", ["--ensemble", "auto"])):
            command = ["tsfm", "forecast", str(data), "-o", str(Path(folder) / "out.csv"), *extra]
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True)
            seconds = time.perf_counter() - start
            if done.returncode != 0:
                raise SystemExit(f"error: {' '.join(command)} failed: {done.stderr[-2000:]}")
            if extra:
                said = done.stderr.strip()
            rows.append([label, f"{seconds:.1f}"])
            print(f"{label}: {seconds:.1f}s", file=sys.stderr, flush=True)
    finish_run(meta)
    text = "\n".join([
        "# Cost of `--ensemble auto` through the CLI", "", "Written by `benchmarks/ensemble.py --cost`.", "",
        metadata_markdown(meta), "",
        f"{args.cost_series} monthly series of 120 points (`monthly_panel`, seed 0), default horizon (18), "
        "`tsfm forecast data.csv -o out.csv [--ensemble auto]`, wall seconds including start-up and CSV I/O; "
        "threads: the CLI's default (the CPUs this process may use), statistical members on that many processes.",
        "", markdown_table(["command", "seconds"], rows), "", "What `--ensemble auto` said on stderr:", "", "```",
        said, "```"])
    written = write_results(RESULTS_DIR / "ensemble_cost.md", text, {"meta": meta, "rows": rows, "stderr": said})
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
