"""Speed: the `tsfm forecast` CLI end to end, TTM vs AutoETS, and raw model latency.

    python benchmarks/speed.py                     # 1,000 hourly series x 512 points, horizon 96
    python benchmarks/speed.py --repeats 5 --ets-series 100 --num-threads 1

(a) CLI target: a deterministic long CSV of ``--series`` synthetic hourly series is forecast by
    ``tsfm forecast data.csv --horizon 96 --output out.csv`` in a subprocess; wall time includes
    Python start-up and imports (median of ``--repeats``); the output must have series x 96 rows.
    A second subprocess runs the Forecaster and the CLI on a tiny frame and checks that the
    forecast path imports no Lightning/Hydra (``sys.modules`` and ``python -X importtime``).
(b) Zero-shot TTM (in-process ``Forecaster``) vs statsforecast AutoETS (season 24) on the same
    series; AutoETS runs on the first ``--ets-series`` series and is extrapolated per series.
(c) One forward pass of the model for 1 and for ``--series`` series.
Writes ``benchmarks/results/speed.md`` and ``.json``.
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

from common import RESULTS_DIR, finish_run, markdown_table, metadata_markdown, start_run, write_results

DEFAULT_MODEL = "ttm"
QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
HEAVY_MODULES = ("lightning", "pytorch_lightning", "lightning_fabric", "hydra", "omegaconf")
PACKAGES = ("tsfm", "torch", "numpy", "pandas", "statsforecast")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=1000, help="number of synthetic series (default 1000)")
    parser.add_argument("--length", type=int, default=512, help="points per series (default 512)")
    parser.add_argument("--horizon", type=int, default=96, help="forecast horizon (default 96)")
    parser.add_argument("--model", default=DEFAULT_MODEL, help="tsfm model name or checkpoint directory (default ttm)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="CLI and in-process repeats, median reported (default 3)")
    parser.add_argument("--ets-series", type=int, default=50, help="series AutoETS is timed on (default 50)")
    parser.add_argument("--skip-ets", action="store_true", help="leave out the AutoETS comparison")
    parser.add_argument("--large-series", type=int, default=10000,
                        help="series of the one large CLI run whose wall time and peak memory are recorded (0: skip)")
    parser.add_argument("--num-threads", type=int, default=1, help="threads for torch/OpenMP/BLAS, subprocesses too")
    parser.add_argument("--workdir", type=Path, default=None, help="where to write the CSVs (default: a temp dir)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "speed.md", help="markdown report path")
    return parser.parse_args(argv)


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


def time_cli(command: str, data_csv: Path, out_csv: Path, args: argparse.Namespace) -> dict:
    """Wall time of ``tsfm forecast`` subprocesses; every run's output is checked."""
    import pandas as pd

    argv = [command, "forecast", str(data_csv), "--horizon", str(args.horizon), "--output", str(out_csv)]
    argv += [] if args.model == DEFAULT_MODEL else ["--model", args.model]  # the target command uses the default
    expected_rows, repeats = args.series * args.horizon, args.repeats
    seconds = []
    for _ in range(repeats):
        out_csv.unlink(missing_ok=True)
        start = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True, env=os.environ.copy())
        seconds.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"error: `{' '.join(argv)}` exited with {proc.returncode}:\n{proc.stderr[-2000:]}")
        out = pd.read_csv(out_csv)
        missing = [c for c in ("unique_id", "ds", "mean", "0.5") if c not in out.columns]
        if len(out) != expected_rows or missing:
            raise SystemExit(
                f"error: the CLI wrote {len(out)} rows (expected {expected_rows})"
                + (f" and lacks columns {missing}" if missing else "")
            )
    shown = ["tsfm", *(Path(a).name if a in (str(data_csv), str(out_csv)) else a for a in argv[1:])]
    return {"argv": shown, "seconds": seconds, "median_s": statistics.median(seconds),
            "rows": expected_rows, "columns": list(out.columns)}


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
    argv = [command, "forecast", str(data_csv), "--horizon", str(args.horizon), "--output", str(out_csv)]
    argv += [] if args.model == DEFAULT_MODEL else ["--model", args.model]
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


def time_autoets(df, horizon: int, n_series: int) -> dict[str, Any]:
    """AutoETS(season_length=24) with the same quantile levels on the first ``n_series`` series."""
    import warnings

    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS

    warnings.filterwarnings("ignore", category=UserWarning, module=r"statsforecast\.")
    ids = df["unique_id"].drop_duplicates().iloc[:n_series]
    subset = df[df["unique_id"].isin(ids)]
    warm = subset[subset["unique_id"] == ids.iloc[0]]
    StatsForecast(models=[AutoETS(season_length=24)], freq="h", n_jobs=1).forecast(df=warm, h=horizon, level=[80])
    start = time.perf_counter()
    StatsForecast(models=[AutoETS(season_length=24)], freq="h", n_jobs=1).forecast(
        df=subset, h=horizon, level=[20, 40, 60, 80]
    )
    seconds = time.perf_counter() - start
    total = df["unique_id"].nunique()
    return {"series_timed": len(ids), "seconds": seconds, "per_series_s": seconds / len(ids),
            "extrapolated_s": seconds / len(ids) * total}


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
        "## (a) `tsfm forecast` end to end (subprocess: Python start-up, imports, CSV in and out)", "",
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
    rows = [[f"{args.model} (Forecaster, in-process)", args.series, f"{ttm['median_s']:.2f}", f"{ttm['median_s']:.2f}",
             f"{1000 * ttm['median_s'] / args.series:.2f}"]]
    if ets:
        rows.append(["AutoETS(season_length=24), n_jobs=1", ets["series_timed"], f"{ets['seconds']:.2f}",
                     f"{ets['extrapolated_s']:.1f} (extrapolated)", f"{1000 * ets['per_series_s']:.2f}"])
    parts += ["", f"## (b) Zero-shot {args.model} vs AutoETS on the same series", "",
              markdown_table(["model", "series timed", "seconds", f"seconds for {args.series} series",
                              "ms per series"], rows)]
    if ets:
        parts += ["", f"AutoETS / {args.model} time ratio: **{ets['extrapolated_s'] / ttm['median_s']:.1f}x** "
                  f"(AutoETS timed on the first {ets['series_timed']} series and extrapolated per series; "
                  f"{args.model}: median of {args.repeats} runs after a warm-up; both with quantiles 0.1..0.9)."]
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

    with tempfile.TemporaryDirectory(prefix="tsfm-speed-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        df = synthetic_frame(args.series, args.length)
        data_csv = workdir / "data.csv"
        df.to_csv(data_csv, index=False)
        results: dict[str, Any] = {}
        print("(a) CLI ...", file=sys.stderr, flush=True)
        results["cli"] = time_cli(command, data_csv, workdir / "out.csv", args)
        results["imports"] = check_imports(args.model, command, workdir)
        print("(b) Forecaster vs AutoETS ...", file=sys.stderr, flush=True)
        results["forecaster"] = time_forecaster(args.model, df, args.horizon, args.repeats)
        if not args.skip_ets:
            results["ets"] = time_autoets(df, args.horizon, min(args.ets_series, args.series))
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
