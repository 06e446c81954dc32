"""Few-shot fine-tuning vs zero-shot TTM vs statsforecast, and fine-tuning speed on this CPU.

    python benchmarks/finetune.py                       # accuracy (5% and 10% few-shot) + speed
    python benchmarks/finetune.py --skip-accuracy       # speed only
    python benchmarks/finetune.py --tasks elnino_sst --fractions 0.1

Accuracy: the eval tasks whose series have at least ``--min-length`` points (few-shot needs
history to cut windows from; ``--tasks`` names others), with the windows of
``benchmarks/zero_shot.py`` (its ``load_tasks``: the manifest's ``n_windows`` raised to
``--min-windows`` 5 where each window keeps a context of max(3 H, 2 m) points) and backtested as it
does (last ``n_windows * H`` points, one forecast per window from everything before it). For every window,
``Forecaster(model, horizon=H).finetune(context, fraction=f)`` fine-tunes on that window's
context only (the last ``f`` of its training windows; its own last points held out for
validation), then forecasts. Zero-shot TTM runs the same windows without fine-tuning. The
statsforecast rows are read from ``--zero-shot-results`` (default ``results/zero_shot.json``, not
rerun); the script stops with an error when a task's row there has other windows or another horizon.
Relative scores: geometric mean over the tasks of score / SeasonalNaive's score.

Speed: one epoch over exactly 1,000 training windows (context 512, horizon 96: the shipped
TTM's full size) in each mode, wall time of ``finetune(max_epochs=1)`` including its two
validation passes over 10 windows, and the training throughput.
Writes ``benchmarks/results/finetune.md`` and ``.json`` (``--output`` to change).
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from common import (
    REPO_ROOT,
    RESULTS_DIR,
    check_output,
    checkpoint_name,
    finish_run,
    markdown_table,
    metadata_markdown,
    start_run,
    write_results,
)
from zero_shot import ARIMA_FULL_MAX_SEASON, SHARED, STATS_MAX_CONTEXT, load_tasks, reused_rows

QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
BASELINES = ("SeasonalNaive", "AutoETS", "AutoARIMA", "AutoTheta")
PACKAGES = ("tsfm", "torch", "lightning", "numpy", "pandas")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--eval-dir", type=Path, default=SHARED / "eval")
    parser.add_argument("--model", default="ttm", help="model name or checkpoint directory (default: ttm)")
    parser.add_argument("--tasks", default="", help="comma-separated task names (default: every long-enough task)")
    parser.add_argument("--min-length", type=int, default=300, help="shortest series a task may have (default 300)")
    parser.add_argument("--min-windows", type=int, default=5,
                        help="zero_shot.py's --min-windows rule, as the --zero-shot-results run used (default 5)")
    parser.add_argument("--fractions", default="0.05,0.1", help="few-shot fractions (default 0.05,0.1)")
    parser.add_argument("--mode", default="head", help="fine-tuning mode (default head)")
    parser.add_argument("--max-epochs", type=int, default=20)
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--zero-shot-results", type=Path, default=RESULTS_DIR / "zero_shot.json")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "finetune.md")
    parser.add_argument("--num-threads", type=int, default=1, help="torch/BLAS threads (default 1)")
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- accuracy


def long_tasks(eval_dir: Path, wanted: str, min_length: int, min_windows: int) -> list[dict[str, Any]]:
    """zero_shot.py's tasks and windows: the named ones, or those whose series have ``min_length`` points."""
    tasks = load_tasks([eval_dir], wanted, min_windows)
    return tasks if wanted else [t for t in tasks if t["min_length"] >= min_length]


def baseline_rows(path: Path, tasks: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{task: {baseline: row}}`` from a zero_shot.py results JSON, refused unless its windows are the tasks'."""
    rows = reused_rows(path, tasks, skip=set())
    for task, models in rows.items():
        missing = [b for b in BASELINES if not models.get(b, {}).get("scores")]
        if missing:
            raise SystemExit(f"error: {path} has no scores of {', '.join(missing)} on {task}")
    return {task: {b: models[b] for b in BASELINES} for task, models in rows.items()}


def run_task(task: dict[str, Any], df, model: str, fractions: list[float], args) -> dict[str, Any]:
    """Zero-shot and few-shot backtests of one task: scores plus each fine-tune's report."""
    from tsfm import Forecaster
    from tsfm.evaluation import backtest_forecasts, evaluate_forecasts

    h, m = task["horizon"], task["m"]
    out: dict[str, Any] = {}

    def zero_shot(context):
        return Forecaster(model=model, horizon=h, quantiles=QUANTILES).fit(context).predict()

    runs: list[tuple[str, Any]] = [("TTM zero-shot", zero_shot)]
    for fraction in fractions:
        reports: list[dict[str, Any]] = []

        def few_shot(context, fraction=fraction, reports=reports):
            f = Forecaster(model=model, horizon=h, quantiles=QUANTILES)
            f.finetune(context, fraction=fraction, mode=args.mode, max_epochs=args.max_epochs, progress=False)
            reports.append(f.finetune_report_.to_dict())
            return f.predict()

        runs.append((f"TTM few-shot {fraction:.0%}", few_shot, reports))
    for name, fn, *rest in runs:
        start = time.perf_counter()
        cv = backtest_forecasts(fn, df, h, task["n_windows"])
        out[name] = {"scores": evaluate_forecasts(cv, cv, df, m, QUANTILES), "seconds": time.perf_counter() - start}
        if rest:
            out[name]["finetune"] = rest[0]
        print(f"{task['name']:<22} {name:<18} MASE {out[name]['scores']['MASE']:.3f}  "
              f"{out[name]['seconds']:6.1f}s", file=sys.stderr, flush=True)
    return out


def aggregate(results: dict[str, dict[str, Any]], baseline_scores: dict[str, dict[str, Any]],
              models: list[str]) -> dict[str, dict[str, float]]:
    from tsfm.evaluation import aggregate_relative

    scores = {task: {**{b: baseline_scores[task][b]["scores"] for b in BASELINES},
                     **{m: per[m]["scores"] for m in models}} for task, per in results.items()}
    return aggregate_relative(scores, baseline="SeasonalNaive")


# ----------------------------------------------------------------------------- speed


def speed(model: str, mode: str) -> dict[str, Any]:
    """``finetune(max_epochs=1)`` over exactly 1,000 training windows of the model's full size."""
    import numpy as np
    import pandas as pd

    from tsfm import Forecaster
    from tsfm.hub import load_model

    config = load_model(model).config
    horizon, n_series, per_series = config.prediction_length, 10, 100
    # training origins per series = T - val_size - horizon - 8 + 1 with val_size = horizon
    length = per_series + 8 - 1 + 2 * horizon
    rng = np.random.default_rng(0)
    frames = []
    for i in range(n_series):
        t = np.arange(length)
        y = 10 + np.sin(2 * np.pi * t / 24) + 0.1 * rng.normal(size=length)
        frames.append(pd.DataFrame({"unique_id": f"s{i}", "ds": pd.date_range("2020-01-01", periods=length, freq="h"),
                                    "y": y}))
    df = pd.concat(frames, ignore_index=True)
    f = Forecaster(model=model, horizon=horizon)
    start = time.perf_counter()
    f.finetune(df, fraction=1.0, mode=mode, max_epochs=1, val_size=horizon, progress=False)
    wall = time.perf_counter() - start
    report = f.finetune_report_
    assert report.train_windows == n_series * per_series, report.train_windows
    return {"mode": mode, "windows": report.train_windows, "batch_size": report.batch_size,
            "finetune_seconds": wall, "train_seconds": report.seconds,
            "windows_per_second": report.train_windows / report.seconds,
            "trainable_parameters": report.trainable_parameters}


# ----------------------------------------------------------------------------- report


def render(meta, args, tasks, results, table, models, speeds, notes) -> str:
    parts = ["# Few-shot fine-tuning on the visible eval set", "",
             "Written by `benchmarks/finetune.py`; do not edit by hand.", "", metadata_markdown(meta), ""]
    if results:
        rows = [[m, table[m]["MASE"], table[m]["sMAPE"], table[m]["WQL"]] for m in [*BASELINES, *models]]
        chosen = "chosen tasks" if args.tasks else f"tasks with series of at least {args.min_length} points"
        parts += [f"## Aggregate over {len(tasks)} {chosen} "
                  "(geometric mean of score / SeasonalNaive; lower is better)", "",
                  markdown_table(["model", "rel. MASE", "rel. sMAPE", "rel. WQL"], rows), ""]
        header = ["task", "H", "windows", *[f"{m} MASE" for m in ["AutoARIMA", *models]]]
        rows = [[t["name"], t["horizon"], t["n_windows"], results["baseline"][t["name"]]["AutoARIMA"]["scores"]["MASE"],
                 *[results["tsfm"][t["name"]][m]["scores"]["MASE"] for m in models]] for t in tasks]
        parts += ["## MASE per task", "", markdown_table(header, rows), ""]
        rows = []
        for t in tasks:
            for m in models[1:]:
                for i, r in enumerate(results["tsfm"][t["name"]][m].get("finetune", [])):
                    rows.append([t["name"], m, i, r["train_windows"], r["val_windows"], r["epochs"],
                                 r["val_loss_before"], r["val_loss_best"], r["kept"], f"{r['seconds']:.1f}"])
        parts += ["## Fine-tuning runs (one per backtest window)", "",
                  markdown_table(["task", "model", "window", "train windows", "val windows", "epochs",
                                  "val loss zero-shot", "val loss best", "kept", "seconds"], rows, 4), ""]
    if speeds:
        rows = [[s["mode"], s["windows"], s["batch_size"], s["trainable_parameters"], f"{s['finetune_seconds']:.1f}",
                 f"{s['train_seconds']:.1f}", f"{s['windows_per_second']:.0f}"] for s in speeds]
        parts += ["## Speed: one epoch over 1,000 windows (context 512, horizon 96), "
                  f"{meta['threads'].get('torch.get_num_threads()')} torch thread(s)", "",
                  markdown_table(["mode", "windows", "batch", "trainable params", "finetune() wall s",
                                  "train+validate s", "windows/s"], rows), ""]
    parts += ["## Notes", "", *[f"- {n}" for n in notes]]
    return "\n".join(parts)


def shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_output(args.output)  # before the run, not after it
    meta = start_run(args.num_threads, PACKAGES)
    warnings.filterwarnings("ignore")
    import logging

    logging.getLogger("lightning").setLevel(logging.ERROR)
    import pandas as pd

    args.model = checkpoint_name(args.model)
    fractions = [float(x) for x in args.fractions.split(",") if x.strip()]
    models = ["TTM zero-shot", *[f"TTM few-shot {f:.0%}" for f in fractions]]
    tasks, results, table, speeds = [], {}, {}, []
    if not args.skip_accuracy:
        tasks = long_tasks(args.eval_dir, args.tasks, args.min_length, args.min_windows)
        results = {"tsfm": {}, "baseline": baseline_rows(args.zero_shot_results, tasks)}
        for task in tasks:
            df = pd.read_csv(Path(task["dir"]) / task["file"], parse_dates=["ds"])
            results["tsfm"][task["name"]] = run_task(task, df, args.model, fractions, args)
        table = aggregate(results["tsfm"], results["baseline"], models)
    if not args.skip_speed:
        speeds = [speed(args.model, mode) for mode in ("head", "full")]
        for s in speeds:
            print(f"speed {s['mode']}: {s['windows']} windows, {s['finetune_seconds']:.1f}s", file=sys.stderr)
    finish_run(meta)
    import hashlib

    from tsfm.hub import WEIGHTS_FILE, resolve

    weights = hashlib.sha256((resolve(args.model) / WEIGHTS_FILE).read_bytes()).hexdigest()[:16]
    notes = [
        f"Model `{args.model}` (weights sha256 {weights}...); fine-tuning mode `{args.mode}`, "
        f"at most {args.max_epochs} epochs, early stopping "
        "(patience 3) on each window's own held-out last points (twice the horizon, or one horizon for short "
        "contexts), the best epoch restored, the zero-shot weights kept when no epoch beat them (`kept`).",
        "Few-shot windows: every forecast origin of the context with the targets before the held-out part, last "
        "5% / 10% of them (granite-tsfm `fewshot_location=last`); the loss covers the task's H steps.",
        f"Windows: benchmarks/zero_shot.py's (`load_tasks`, --min-windows {args.min_windows}: the manifest's "
        "n_windows raised to that where each window keeps a context of max(3 H, 2 m) points).",
        "statsforecast rows: copied from " + shown(args.zero_shot_results) + " (not rerun; each task's "
        "n_windows and horizon checked equal to this run's), with that script's settings (statistical models "
        f"read at most the last {STATS_MAX_CONTEXT:,} points; AutoARIMA with approximation where "
        f"m > {ARIMA_FULL_MAX_SEASON}). "
        f"TTM rows run the checkpoint `{args.model}` itself, so they can differ from zero_shot.json's `ttm` "
        "(suite) row where the suite picks another variant or calibrates its intervals. "
        "Seconds in the JSON are wall time on a shared 2-core machine.",
        "Speed: 10 series x 100 training origins, batch 64, `finetune(fraction=1.0, max_epochs=1, val_size=96)`; "
        "'finetune() wall' includes loading the model and data, 'train+validate' is Lightning's part "
        "(validation before and after the epoch over 10 windows).",
    ]
    written = write_results(args.output, render(meta, args, tasks, results, table, models, speeds, notes),
                            {"meta": meta, "notes": notes, "aggregate": table, "speed": speeds,
                             "windows": {t["name"]: {"n_windows": t["n_windows"], "horizon": t["horizon"]}
                                         for t in tasks},
                             "tasks": results.get("tsfm", {})})
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
