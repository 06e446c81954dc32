"""The model zoo: every shipped model's size, zero-shot accuracy and CPU latency in one table.

    python benchmarks/models.py --num-threads 1       # the full run: results/models.md and RESULTS.md's table
    python benchmarks/models.py --models ttm,itransformer --repeats 3 --output /tmp/models.md

Every shipped model, suites included (``ttm``, the default, runs as users run it: the Forecaster picks
the suite's variant; its size is its default variant's). For each model: parameters and
context/horizon (from the shipped checkpoint); zero-shot accuracy on the visible eval set, read
from ``benchmarks/results/zero_shot.json`` (written by
``benchmarks/zero_shot.py``, whose command is quoted; run it with the same ``--models`` first);
and the wall time of an in-process ``Forecaster(model).fit(df).predict()`` (data preparation,
model, forecast frame) for 1 series and for ``--series`` series of ``--length`` hourly points at
horizon ``--horizon``. Every repeat times all models one after the other (interleaved), after an
untimed warm-up; medians are reported. The full run (every option at its default) writes
``benchmarks/results/models.md`` and ``.json`` and regenerates the model table in
``benchmarks/RESULTS.md`` between its markers; any other run must name ``--output`` and leaves both alone.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from common import (
    REPO_ROOT,
    RESULTS_DIR,
    finish_run,
    markdown_table,
    metadata_markdown,
    output_path,
    positive_int,
    start_run,
    write_results,
)
from speed import synthetic_frame

PACKAGES = ("tsfm", "torch", "numpy", "pandas")
INDEX = REPO_ROOT / "benchmarks" / "RESULTS.md"
START_MARK, END_MARK = "<!-- models:start -->", "<!-- models:end -->"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="", help="comma-separated model names (default: every shipped model)")
    parser.add_argument("--series", type=positive_int, default=1000, help="series in the large batch (default 1000)")
    parser.add_argument("--length", type=positive_int, default=512, help="points per series (default 512)")
    parser.add_argument("--horizon", type=positive_int, default=96, help="forecast horizon (default 96)")
    parser.add_argument("--repeats", type=positive_int, default=5,
                        help="timed repeats per size, median reported (default 5)")
    parser.add_argument("--num-threads", type=positive_int, default=1,
                        help="threads for torch/OpenMP/BLAS (default 1)")
    parser.add_argument("--zero-shot", type=Path, default=RESULTS_DIR / "zero_shot.json",
                        help="zero-shot results to read the accuracy from")
    parser.add_argument("--output", type=Path, default=None,
                        help="markdown report path (default, for the full run only: benchmarks/results/models.md)")
    args = parser.parse_args(argv)
    args.full_run = args.output is None  # only the full run may replace RESULTS.md's table
    output_path(parser, args, "models.md", ignore=("full_run",))
    return args


def describe(name: str) -> dict[str, Any]:
    """Size and shape of a model; a suite's are its default variant's, named in the family column."""
    from tsfm.hub import load_model, load_suite, resolve

    model = load_model(name)
    config = model.config
    family = config.family if load_suite(name) is None else f"suite (default {resolve(name).name})"
    return {"family": family, "parameters": model.num_parameters(),
            "context_length": config.context_length, "prediction_length": config.prediction_length}


def time_predict(models: list[str], frames: dict[str, Any], horizon: int,
                 repeats: int) -> dict[str, dict[str, list[float]]]:
    """Seconds of ``Forecaster(model).fit(df).predict()`` per model and frame, models interleaved."""
    from tsfm import Forecaster

    def once(model: str, df) -> float:
        start = time.perf_counter()
        out = Forecaster(model=model, horizon=horizon).fit(df).predict()
        seconds = time.perf_counter() - start
        expected = df["unique_id"].nunique() * horizon
        if len(out) != expected:
            raise SystemExit(f"error: {model} returned {len(out)} rows, expected {expected}")
        return seconds

    for model in models:  # warm-up: imports, weights, allocator
        for df in frames.values():
            once(model, df)
    seconds: dict[str, dict[str, list[float]]] = {m: {k: [] for k in frames} for m in models}
    for repeat in range(repeats):
        order = models if repeat % 2 == 0 else models[::-1]
        for key, df in frames.items():
            for model in order:
                seconds[model][key].append(once(model, df))
    return seconds


def accuracy(path: Path, models: list[str]) -> tuple[dict[str, dict[str, float]], str]:
    if not path.is_file():
        return {}, "(no zero-shot results: run benchmarks/zero_shot.py)"
    data = json.loads(path.read_text())
    summary = data.get("summary", {})
    relative, coverage = summary.get("relative", {}).get("all", {}), summary.get("coverage_10_90", {})
    rows = {m: {"MASE": relative[m]["MASE"][0], "WQL": relative[m]["WQL"][0], "coverage_10_90": coverage.get(m)}
            for m in models if m in relative}
    return rows, data.get("meta", {}).get("command", "?")


def model_table(res: dict[str, Any]) -> str:
    large = res["args"]["series"]
    rows = []
    for name, info in res["models"].items():
        acc = res["accuracy"].get(name, {})
        rows.append([f"`{name}`", info["family"], f"{info['parameters']:,}",
                     f"{info['context_length']} / {info['prediction_length']}",
                     acc.get("MASE"), acc.get("WQL"), acc.get("coverage_10_90"),
                     f"{1000 * info['median_s']['one']:.1f}", f"{info['median_s']['many']:.2f}"])
    headers = ["model", "family", "parameters", "context / horizon", "rel. MASE", "rel. WQL", "10-90 coverage",
               "1 series (ms)", f"{large:,} series (s)"]
    baselines = [[b, "statsforecast", "–", "–", row.get("MASE"), row.get("WQL"), row.get("coverage_10_90"), None, None]
                 for b, row in res["baselines"].items()]
    return markdown_table(headers, rows + baselines, digits=3)


def render(meta: dict[str, Any], res: dict[str, Any]) -> str:
    args = res["args"]
    return "\n".join([
        "# Model zoo", "", "Written by `benchmarks/models.py`; do not edit by hand.", "", metadata_markdown(meta), "",
        f"Accuracy: zero-shot on the visible eval set, geometric mean over tasks of score / SeasonalNaive score, "
        f"read from `{Path(args['zero_shot']).name}` (command `{res['accuracy_command']}`); statsforecast rows "
        "from the same run for reference.",
        f"Latency: in-process `Forecaster(model, horizon={args['horizon']}).fit(df).predict()` on deterministic "
        f"synthetic hourly series of {args['length']} points (benchmarks/speed.py's generator), median of "
        f"{args['repeats']} repeats after a warm-up, models interleaved; {args['num_threads']} thread(s).", "",
        model_table(res), "",
        "Raw seconds per repeat: " + "; ".join(
            f"{m}: 1 series " + ", ".join(f"{s * 1000:.1f} ms" for s in info["seconds"]["one"])
            + f"; {args['series']} series " + ", ".join(f"{s:.2f} s" for s in info["seconds"]["many"])
            for m, info in res["models"].items()),
    ])


def update_index(table: str, command: str) -> None:
    """Replace the generated block of RESULTS.md (added at the end when the markers are missing)."""
    text = INDEX.read_text()
    note = f"_Generated by `{command}`; see [results/models.md](results/models.md)._"
    block = f"{START_MARK}\n{note}\n\n{table}\n{END_MARK}"
    if START_MARK in text and END_MARK in text:
        head, rest = text.split(START_MARK, 1)
        text = head + block + rest.split(END_MARK, 1)[1]
    else:
        text = text.rstrip() + "\n\n## Shipped models\n\n" + block + "\n"
    INDEX.write_text(text)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    meta = start_run(args.num_threads, PACKAGES)
    from tsfm.hub import shipped_models

    # by default every shipped name: a suite as users call it, its variants under their own names too
    models = [m.strip() for m in args.models.split(",") if m.strip()] or shipped_models()
    df = synthetic_frame(args.series, args.length)
    frames = {"one": df[df["unique_id"] == df["unique_id"].iloc[0]], "many": df}
    print(f"timing {', '.join(models)} ...", file=sys.stderr, flush=True)
    seconds = time_predict(models, frames, args.horizon, args.repeats)
    acc, acc_command = accuracy(args.zero_shot, models)
    all_acc, _ = accuracy(args.zero_shot, ["AutoETS", "AutoARIMA", "AutoTheta", "SeasonalNaive"])
    res: dict[str, Any] = {
        "args": {**vars(args), "zero_shot": str(args.zero_shot), "output": str(args.output)},
        "models": {m: {**describe(m), "seconds": seconds[m],
                       "median_s": {k: statistics.median(v) for k, v in seconds[m].items()}} for m in models},
        "accuracy": acc, "accuracy_command": acc_command, "baselines": all_acc,
    }
    finish_run(meta)
    written = write_results(args.output, render(meta, res), {"meta": meta, **res})
    if args.full_run:
        update_index(model_table(res), meta["command"])
        written.append(INDEX)
    print("wrote " + ", ".join(map(str, written)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
