"""Speed: the `tsfm forecast` CLI end to end, TTM vs AutoETS, and raw model latency.

    python benchmarks/speed.py                     # the full run: writes benchmarks/results/speed.md
    python benchmarks/speed.py --repeats 5 --ets-series 100 --output /tmp/speed.md

Any option other than the defaults (``--workdir`` aside) measures something else, so such a run must
name ``--output``: it never replaces the stored result.

(a) CLI target: a deterministic long CSV of ``--series`` synthetic hourly series is forecast by
    ``tsfm forecast data.csv --horizon 96 --output out.csv`` in a subprocess; wall time includes
    Python start-up and imports (median of ``--repeats``); the output must have series x 96 rows.
    A second subprocess runs the Forecaster and the CLI on a tiny frame and checks that the
    forecast path imports no Lightning/Hydra (``sys.modules`` and ``python -X importtime``).
(b) The acceptance ratio: AutoETS (statsforecast, season 24) time for the same series over the CLI's
    median (a), and, as a second row, over the warm in-process ``Forecaster``. AutoETS is timed on
    the first ``--ets-series`` series (a full 1,000 takes ~10 minutes) and scaled per series, at
    least 3 times (``--repeats`` if more), each run interleaved with a CLI run; medians reported.
(c) One forward pass of the model for 1 and for ``--series`` series.
Writes ``benchmarks/results/speed.md`` and ``.json`` (``--output`` for any other run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from common import (
    check_model,
    cpu_model,
    finish_run,
    markdown_table,
    metadata_markdown,
    non_negative_int,
    output_path,
    positive_int,
    start_run,
    write_results,
)

DEFAULT_MODEL = "ttm"
QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
HEAVY_MODULES = ("lightning", "pytorch_lightning", "lightning_fabric", "hydra", "omegaconf")
PACKAGES = ("tsfm", "torch", "numpy", "pandas", "statsforecast")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=positive_int, default=1000, help="number of synthetic series (default 1000)")
    parser.add_argument("--length", type=positive_int, default=512, help="points per series (default 512)")
    parser.add_argument("--horizon", type=positive_int, default=96, help="forecast horizon (default 96)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="tsfm model name or checkpoint directory (default ttm)")
    parser.add_argument("--repeats", type=positive_int, default=3,
                        help="CLI and in-process repeats, median reported (default 3)")
    parser.add_argument("--ets-series", type=positive_int, default=50, help="series AutoETS is timed on (default 50)")
    parser.add_argument("--skip-ets", action="store_true", help="leave out the AutoETS comparison")
    parser.add_argument("--large-series", type=non_negative_int, default=10000,
                        help="series of the one large CLI run whose wall time and peak memory are recorded (0: skip)")
    parser.add_argument("--num-threads", type=positive_int, default=1,
                        help="threads for torch/OpenMP/BLAS, subprocesses too")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the CSVs (default: a temp dir)")
    parser.add_argument("--output", type=Path, default=None,
                        help="markdown report path (default, for the full run only: benchmarks/results/speed.md)")
    args = parser.parse_args(argv)
    output_path(parser, args, "speed.md", ignore=("workdir",))
    return args


# ----------------------------------------------------------------------------- preflight


def tsfm_command() -> str:
    """Path of the installed ``tsfm`` console script, or a clear exit when there is none."""
    found = shutil.which("tsfm") or shutil.which("tsfm", path=str(Path(sys.executable).parent))
    if not found:
        raise SystemExit(
            "error: the `tsfm` command is not installed: run `pip install -e .` in the repository root "
            "(in the environment of this Python) and retry"
        )
    return found


def require_forecaster() -> None:
    try:
        from tsfm import Forecaster  # noqa: F401
    except ImportError as err:
        raise SystemExit(f"error: cannot import tsfm.Forecaster ({err}): "
                         "install tsfm with `pip install -e .`") from None


# ----------------------------------------------------------------------------- data


def synthetic_frame(n_series: int, length: int, seed: int = 0):
    """Hourly series with daily and weekly cycles, trend and noise at varied levels (deterministic)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    t = np.arange(length)[None, :]
    level = rng.uniform(10, 1000, (n_series, 1))
    phase = lambda: rng.uniform(0, 2 * np.pi, (n_series, 1))  # noqa: E731
    daily = rng.uniform(0.05, 0.4, (n_series, 1)) * np.sin(2 * np.pi * t / 24 + phase())
    weekly = rng.uniform(0.0, 0.2, (n_series, 1)) * np.sin(2 * np.pi * t / 168 + phase())
    trend = rng.uniform(-0.3, 0.3, (n_series, 1)) * t / length
    noise = rng.normal(0, 0.05, (n_series, length))
    values = level * (1 + daily + weekly + trend + noise)
    ids = np.repeat([f"s{i:04d}" for i in range(n_series)], length)
    ds = np.tile(pd.date_range("2024-01-01", periods=length, freq="h").to_numpy(), n_series)
    return pd.DataFrame({"unique_id": ids, "ds": ds, "y": values.ravel().round(4)})


# ----------------------------------------------------------------------------- (a) CLI


def cli_argv(command: str, data_csv: Path, out_csv: Path, args: argparse.Namespace) -> list[str]:
    argv = [command, "forecast", str(data_csv), "--horizon", str(args.horizon), "--output", str(out_csv)]
    return argv + ([] if args.model == DEFAULT_MODEL else ["--model", args.model])  # the target uses the default


def run_cli(argv: list[str], out_csv: Path, expected_rows: int) -> tuple[float, list[str]]:
    """Wall seconds of one ``tsfm forecast`` subprocess and its output's columns (checked)."""
    import pandas as pd

    out_csv.unlink(missing_ok=True)
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=os.environ.copy())
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"error: `{' '.join(argv)}` exited with {proc.returncode}:\n{proc.stderr[-2000:]}")
    out = pd.read_csv(out_csv)
    missing = [c for c in ("unique_id", "ds", "mean", "0.5") if c not in out.columns]
    if len(out) != expected_rows or missing:
        raise SystemExit(
            f"error: the CLI wrote {len(out)} rows (expected {expected_rows})"
            + (f" and lacks columns {missing}" if missing else "")
        )
    return seconds, list(out.columns)


def time_cli_and_ets(command: str, df, data_csv: Path, out_csv: Path,
                     args: argparse.Namespace) -> dict[str, Any]:
    """The CLI ``--repeats`` times and AutoETS max(3, ``--repeats``) times, interleaved, so that
    both see the same machine load (the ratio of their medians is the acceptance claim)."""
    argv = cli_argv(command, data_csv, out_csv, args)
    expected_rows = args.series * args.horizon
    ets_repeats = 0 if args.skip_ets else max(3, args.repeats)
    ets_run = None if args.skip_ets else autoets_runner(df, args.horizon, min(args.ets_series, args.series))
    cli_seconds, ets_seconds, columns = [], [], []
    for i in range(max(args.repeats, ets_repeats)):
        if i < args.repeats:
            seconds, columns = run_cli(argv, out_csv, expected_rows)
            cli_seconds.append(seconds)
        if i < ets_repeats:
            ets_seconds.append(ets_run())
    shown = ["tsfm", *(Path(a).name if a in (str(data_csv), str(out_csv)) else a for a in argv[1:])]
    out: dict[str, Any] = {"cli": {"argv": shown, "seconds": cli_seconds, "median_s": statistics.median(cli_seconds),
                                   "rows": expected_rows, "columns": columns}}
    if ets_run is not None:
        n_timed, total = min(args.ets_series, args.series), df["unique_id"].nunique()
        median = statistics.median(ets_seconds)
        out["ets"] = {"series_timed": n_timed, "seconds": ets_seconds, "median_s": median,
                      "per_series_s": median / n_timed, "extrapolated_s": median / n_timed * total}
    return out


PEAK_PROBE = """
import resource, subprocess, sys, time
start = time.perf_counter()
code = subprocess.run(sys.argv[1:], capture_output=True).returncode
print(code, time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
"""


def time_large_cli(command: str, workdir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One ``tsfm forecast`` of ``--large-series`` series: wall time and peak resident memory of the
    CLI process alone (a probe process runs it, so earlier runs do not count)."""
    data_csv, out_csv = workdir / "large.csv", workdir / "large_out.csv"
    synthetic_frame(args.large_series, args.length).to_csv(data_csv, index=False)
    argv = cli_argv(command, data_csv, out_csv, args)
    proc = subprocess.run([sys.executable, "-c", PEAK_PROBE, *argv], capture_output=True, text=True, check=True)
    code, seconds, peak_kb = proc.stdout.split()
    if int(code) != 0:
        raise SystemExit(f"error: `{' '.join(argv)}` exited with {code}")
    return {"series": args.large_series, "seconds": float(seconds), "peak_mib": int(peak_kb) / 1024,
            "bytes_in": data_csv.stat().st_size}


IMPORT_PROBE = """
import json, sys
import numpy as np, pandas as pd
from tsfm import Forecaster
df = pd.DataFrame({"unique_id": "a", "ds": pd.date_range("2024-01-01", periods=200, freq="h"),
                   "y": np.sin(np.arange(200) / 4.0) + 5})
Forecaster(model=sys.argv[1], horizon=8).fit(df).predict()
heavy = sorted(m for m in sys.modules if m.split(".")[0] in sys.argv[2].split(","))
print(json.dumps(heavy))
"""


def check_imports(model: str, command: str, workdir: Path) -> dict[str, Any]:
    """Which heavy modules the Forecaster and the CLI forecast paths import, and the slowest imports."""
    probe = subprocess.run([sys.executable, "-c", IMPORT_PROBE, model, ",".join(HEAVY_MODULES)],
                           capture_output=True, text=True, env=os.environ.copy())
    if probe.returncode != 0:
        raise SystemExit(f"error: the Forecaster import probe failed:\n{probe.stderr[-2000:]}")
    forecaster_heavy = json.loads(probe.stdout.strip().splitlines()[-1])

    tiny = workdir / "tiny.csv"
    synthetic_frame(2, 200, seed=1).to_csv(tiny, index=False)
    # run the console script's own file under -X importtime, so the CLI path is exactly what users run
    argv = [sys.executable, "-X", "importtime", command, "forecast", str(tiny), "--horizon", "8",
            "--output", str(workdir / "tiny_out.csv"), "--model", model]
    cli = subprocess.run(argv, capture_output=True, text=True, env=os.environ.copy())
    if cli.returncode != 0:
        raise SystemExit(f"error: `tsfm forecast` on a tiny CSV failed:\n{cli.stderr[-2000:]}")
    imports = parse_importtime(cli.stderr)
    cli_heavy = sorted(name for name in imports if name.split(".")[0] in HEAVY_MODULES)
    packages = sorted(((name, us) for name, us in imports.items() if "." not in name), key=lambda x: -x[1])[:10]
    return {"forecaster_heavy_modules": forecaster_heavy, "cli_heavy_modules": cli_heavy,
            "cli_slowest_packages_ms": [(name, us / 1000) for name, us in packages]}


def parse_importtime(stderr: str) -> dict[str, int]:
    """``-X importtime`` lines (``import time: self | cumulative | name``) -> {module: cumulative us}."""
    out = {}
    for line in stderr.splitlines():
        if line.startswith("import time:") and "cumulative" not in line:
            _, cumulative, name = line.split("|")
            out[name.strip()] = int(cumulative)
    return out


# ----------------------------------------------------------------------------- (b) TTM vs AutoETS


def time_forecaster(model: str, df, horizon: int, repeats: int) -> dict[str, Any]:
    """In-process ``Forecaster(...).fit(df).predict()`` seconds (after an untimed warm-up)."""
    from tsfm import Forecaster

    Forecaster(model=model, horizon=horizon, quantiles=QUANTILES).fit(df.groupby("unique_id").head(300)).predict()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = Forecaster(model=model, horizon=horizon, quantiles=QUANTILES).fit(df).predict()
        seconds.append(time.perf_counter() - start)
    expected = df["unique_id"].nunique() * horizon
    if len(out) != expected:
        raise SystemExit(f"error: Forecaster returned {len(out)} rows, expected {expected}")
    return {"seconds": seconds, "median_s": statistics.median(seconds)}


def autoets_runner(df, horizon: int, n_series: int):
    """A function that times AutoETS(season_length=24), same quantile levels, on the first
    ``n_series`` series and returns the seconds (after one untimed warm-up fit here)."""
    import warnings

    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS

    warnings.filterwarnings("ignore", category=UserWarning, module=r"statsforecast\.")
    ids = df["unique_id"].drop_duplicates().iloc[:n_series]
    subset = df[df["unique_id"].isin(ids)]
    warm = subset[subset["unique_id"] == ids.iloc[0]]
    StatsForecast(models=[AutoETS(season_length=24)], freq="h", n_jobs=1).forecast(df=warm, h=horizon, level=[80])

    def run() -> float:
        start = time.perf_counter()
        StatsForecast(models=[AutoETS(season_length=24)], freq="h", n_jobs=1).forecast(
            df=subset, h=horizon, level=[20, 40, 60, 80]
        )
        return time.perf_counter() - start

    return run


# ----------------------------------------------------------------------------- (c) latency


def model_latency(model_name: str, batch_sizes: list[int]) -> dict[str, Any]:
    """Median wall time of one ``forward`` on random inputs of the model's context length."""
    import torch

    from tsfm.hub import load_model

    model = load_model(model_name)
    model.eval()
    config = model.config
    generator = torch.Generator().manual_seed(0)
    rows = []
    for batch in batch_sizes:
        x = torch.randn(batch, config.context_length, 1, generator=generator) * 10 + 50
        repeats = 50 if batch <= 16 else 5
        with torch.inference_mode():
            for _ in range(3):
                model(x)
            seconds = []
            for _ in range(repeats):
                start = time.perf_counter()
                out = model(x)
                seconds.append(time.perf_counter() - start)
        rows.append({"batch": batch, "repeats": repeats, "median_ms": 1000 * statistics.median(seconds),
                     "per_series_ms": 1000 * statistics.median(seconds) / batch, "output_shape": list(out.shape)})
    return {"context_length": config.context_length, "prediction_length": config.prediction_length,
            "parameters": model.num_parameters(), "rows": rows}


# ----------------------------------------------------------------------------- report


def render(meta: dict[str, Any], args: argparse.Namespace, res: dict[str, Any]) -> str:
    cli, imports = res["cli"], res["imports"]
    parts = [
        "# Speed", "", "Written by `benchmarks/speed.py`; do not edit by hand.", "", metadata_markdown(meta), "",
        f"Data: {args.series} deterministic synthetic hourly series x {args.length} points (daily + weekly cycles, "
        f"trend, noise; seed 0), long CSV `unique_id,ds,y`; horizon {args.horizon}; model `{args.model}`.", "",
        f"## (a) `tsfm forecast` end to end (subprocess: Python start-up, imports, CSV in and out; {cpu_model()})",
        "",
        f"`{' '.join(cli['argv'])}`", "",
        markdown_table(["runs (s)", "median (s)", "output rows", "columns"],
                       [[", ".join(f"{s:.2f}" for s in cli["seconds"]), f"{cli['median_s']:.2f}", cli["rows"],
                         ", ".join(cli["columns"])]]),
        "",
        "Heavy modules on the forecast path (must be none): Forecaster "
        + (", ".join(imports["forecaster_heavy_modules"]) or "none")
        + "; CLI " + (", ".join(imports["cli_heavy_modules"]) or "none") + ".",
        "",
        "Slowest packages to import in `tsfm forecast` (`python -X importtime`, cumulative ms, nested ones "
        "counted inside their importer too): "
        + ", ".join(f"{name} {ms:.0f}" for name, ms in imports["cli_slowest_packages_ms"]) + ".",
    ]
    ttm, ets = res["forecaster"], res.get("ets")
    cpu = cpu_model()
    rows = [[f"`tsfm forecast` CLI ({args.model}, subprocess)", args.series, f"{cli['median_s']:.2f}",
             f"{cli['median_s']:.2f}", f"{1000 * cli['median_s'] / args.series:.2f}"],
            [f"{args.model} (Forecaster, in-process, warm)", args.series, f"{ttm['median_s']:.2f}",
             f"{ttm['median_s']:.2f}", f"{1000 * ttm['median_s'] / args.series:.2f}"]]
    if ets:
        rows.append(["AutoETS(season_length=24), n_jobs=1", ets["series_timed"], f"{ets['median_s']:.2f}",
                     f"{ets['extrapolated_s']:.1f} (scaled from {ets['series_timed']})",
                     f"{1000 * ets['per_series_s']:.2f}"])
    parts += ["", f"## (b) AutoETS vs `{args.model}` on the same series ({cpu})", "",
              markdown_table(["run", "series timed", "median seconds", f"seconds for {args.series} series",
                              "ms per series"], rows)]
    if ets:
        parts += ["", markdown_table(["ratio (AutoETS seconds for the same series / tsfm seconds)", "value"], [
            ["**AutoETS / `tsfm forecast` CLI** (the acceptance claim: >= 100x)",
             f"**{ets['extrapolated_s'] / cli['median_s']:.1f}x**"],
            [f"AutoETS / in-process warm Forecaster ({args.model})", f"{ets['extrapolated_s'] / ttm['median_s']:.1f}x"],
        ]), "",
            f"On {cpu}. AutoETS was timed on the first {ets['series_timed']} series, "
            f"{len(ets['seconds'])} times ({', '.join(f'{x:.2f}' for x in ets['seconds'])} s; median quoted), "
            f"interleaved with the {args.repeats} CLI run(s), and scaled per series to {args.series} series "
            f"(AutoETS on all of them would take about {ets['extrapolated_s'] / 60:.0f} minutes per run). The CLI: "
            f"median of {args.repeats} runs, start-up and CSV in and out included, its default quantiles (columns "
            f"above); the Forecaster: median of {args.repeats} runs after a warm-up; it and AutoETS with quantiles "
            "0.1..0.9."]
    lat = res["latency"]
    parts += ["", f"## (c) `{args.model}` forward latency (context {lat['context_length']}, prediction length "
              f"{lat['prediction_length']}, {lat['parameters']:,} parameters, torch eager, inference_mode)", "",
              markdown_table(["batch (series)", "repeats", "median ms", "ms per series", "output shape"],
                             [[r["batch"], r["repeats"], f"{r['median_ms']:.2f}", f"{r['per_series_ms']:.3f}",
                               "x".join(map(str, r["output_shape"]))] for r in lat["rows"]])]
    if "large" in res:
        big = res["large"]
        parts += ["", f"## (d) `tsfm forecast` of {big['series']:,} series x {args.length} points (one run)", "",
                  markdown_table(["input CSV (MB)", "wall (s)", "peak resident memory of the CLI process (MiB)"],
                                 [[f"{big['bytes_in'] / 1e6:.1f}", f"{big['seconds']:.2f}", f"{big['peak_mib']:.0f}"]]),
                  "", "Peak memory is the CLI process's `ru_maxrss`, read by a probe process that runs it."]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    meta = start_run(args.num_threads, PACKAGES)  # subprocesses inherit the variables
    command = tsfm_command()
    require_forecaster()
    check_model(args.model, {"horizon": args.horizon})  # before any data is made

    with tempfile.TemporaryDirectory(prefix="tsfm-speed-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        df = synthetic_frame(args.series, args.length)
        data_csv = workdir / "data.csv"
        df.to_csv(data_csv, index=False)
        results: dict[str, Any] = {}
        print("(a) CLI, interleaved with AutoETS ...", file=sys.stderr, flush=True)
        results.update(time_cli_and_ets(command, df, data_csv, workdir / "out.csv", args))
        results["imports"] = check_imports(args.model, command, workdir)
        print("(b) in-process Forecaster ...", file=sys.stderr, flush=True)
        results["forecaster"] = time_forecaster(args.model, df, args.horizon, args.repeats)
        if args.large_series:
            print("(d) large CLI run ...", file=sys.stderr, flush=True)
            results["large"] = time_large_cli(command, workdir, args)
        print("(c) latency ...", file=sys.stderr, flush=True)
        results["latency"] = model_latency(args.model, [1, args.series])
    finish_run(meta)
    written = write_results(args.output, render(meta, args, results), {"meta": meta, "args": vars(args), **results})
    heavy = results["imports"]["forecaster_heavy_modules"] + results["imports"]["cli_heavy_modules"]
    print("wrote " + ", ".join(map(str, written)), file=sys.stderr)
    if heavy:
        print(f"error: the forecast path imports {', '.join(sorted(set(heavy)))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
