"""Export benchmark: size, parity, latency and accuracy of torch eager vs ONNX fp32 vs ONNX int8.

    python benchmarks/export.py                          # shipped TTM weights (the ttm suite's default)
    python benchmarks/export.py --model runs/ttm_512/checkpoint
    python benchmarks/export.py --model DIR --skip-accuracy --rounds 10 --threads 1

Variants: the torch model (eager, ``torch.inference_mode``), its ONNX fp32 export, int8 dynamic
with the x86 preset (per-channel, reduce_range: the default of ``tsfm export --quantize int8``)
and, for comparison, int8 static QDQ (x86 preset, calibrated on synthetic series).

(a) Size: ``model.safetensors`` vs each ``.onnx`` file (one file each, no side data).
(b) Parity: max |variant - torch| / max |torch| and the median deviation in units of each
    window's mean absolute step, on ``--parity-windows`` synthetic windows (structural
    generators, a seed unlike the calibration seed), one graph horizon.
(c) Latency of one forward call, batch 1 and 256 (one channel, full context), per thread
    count: torch ``set_num_threads(n)``, OMP/MKL env pinned to 1 at start, onnxruntime
    ``intra_op_num_threads=n``, ``inter_op_num_threads=1``. After warm-up, ``--rounds`` rounds
    run every variant once in a rotating order (interleaved), so machine load hits all alike;
    medians and p10 in ms; ``uptime`` before every block.
(d) Accuracy on the visible eval set, same splits and metrics as ``benchmarks/zero_shot.py``
    (``tsfm.evaluation``): every variant through the public path (``Forecaster`` for torch, the
    same Forecaster on the ``.onnx`` file for the others), relative MASE/sMAPE/WQL as the
    geometric mean over tasks of score / SeasonalNaive's score.
Writes ``benchmarks/results/export.md`` and ``.json``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
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
    uptime,
    write_results,
)

PACKAGES = ("tsfm", "torch", "onnx", "onnxruntime", "onnxscript", "numpy", "statsforecast")
QUANTILES = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
VARIANTS = ("torch eager", "onnx fp32", "onnx int8-dynamic x86", "onnx int8-dynamic x86-vnni", "onnx int8-static x86")
QUANTIZED = {  # variant -> (method, target); x86-vnni's dynamic settings are also the arm preset's
    "onnx int8-dynamic x86": ("int8-dynamic", "x86"),
    "onnx int8-dynamic x86-vnni": ("int8-dynamic", "x86-vnni"),
    "onnx int8-static x86": ("int8-static", "x86"),
}
INT8 = "onnx int8-dynamic x86"
TARGETS = {"size_bytes": 1_000_000, "rel_mase_delta": 0.02, "speedup_b1": 3.0, "speedup_b256": 1.3}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="model name or checkpoint directory (default: shipped ttm)")
    parser.add_argument("--threads", default="1,2", help="thread counts to time (default 1,2)")
    parser.add_argument("--batches", default="1,256", help="batch sizes to time (default 1,256)")
    parser.add_argument("--rounds", type=int, default=0,
                        help="interleaved rounds per block (default: 200 at batch 1, 40 above)")
    parser.add_argument("--parity-windows", type=int, default=256, help="synthetic windows for parity (default 256)")
    parser.add_argument("--calibration-series", type=int, default=128, help="int8-static calibration series")
    parser.add_argument("--eval-dir", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "eval",
                        help="folder with manifest.json and the task CSVs")
    parser.add_argument("--tasks", default="", help="comma-separated eval task names (default: every task)")
    parser.add_argument("--skip-accuracy", action="store_true", help="leave out the eval-set accuracy (d)")
    parser.add_argument("--workdir", type=Path, default=None, help="where the .onnx files go (default: a temp dir)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "export.md", help="markdown report path")
    return parser.parse_args(argv)


def default_model() -> str:
    from tsfm.hub import shipped_models

    if "ttm" not in shipped_models():
        raise SystemExit("error: no shipped TTM weights in tsfm/weights/ttm yet: pass --model CHECKPOINT_DIR")
    return "ttm"


# ----------------------------------------------------------------------------- artifacts
def build_artifacts(model_name: str, workdir: Path, calibration_series: int) -> dict[str, Any]:
    """Export once, quantize the fp32 file twice; seconds and paths per variant."""
    from tsfm.export.onnx_export import export_onnx
    from tsfm.export.quantize import quantize_onnx

    paths, seconds = {}, {}
    start = time.perf_counter()
    paths["onnx fp32"] = export_onnx(model_name, workdir / "fp32.onnx")
    seconds["onnx fp32"] = time.perf_counter() - start
    for name, (method, target) in QUANTIZED.items():
        start = time.perf_counter()
        paths[name] = quantize_onnx(paths["onnx fp32"], workdir / f"{method}-{target}.onnx", method=method,
                                    target=target, calibration_series=calibration_series)
        seconds[name] = time.perf_counter() - start
    return {"paths": paths, "seconds": seconds}


def sizes(model_name: str, paths: dict[str, Path]) -> dict[str, int]:
    from tsfm.hub import WEIGHTS_FILE, resolve

    out = {"torch eager": (resolve(model_name) / WEIGHTS_FILE).stat().st_size}
    out.update({name: path.stat().st_size for name, path in paths.items()})
    return out


# ----------------------------------------------------------------------------- parity
def parity(model, paths: dict[str, Path], n_windows: int) -> dict[str, dict[str, float]]:
    import numpy as np
    import torch

    from tsfm.export.quantize import calibration_windows
    from tsfm_runtime import edge

    values, mask, freq = calibration_windows(model.config.context_length, n_windows, seed=2024)
    with torch.inference_mode():
        want = model(torch.from_numpy(values), torch.from_numpy(mask), torch.from_numpy(freq)).numpy()
    step = np.nanmean(np.abs(np.diff(values, axis=1)), axis=1)[:, None, :, None] + 1e-8
    out = {}
    for name, path in paths.items():
        got = edge.load(path, num_threads=1).forecast_step(values, mask, freq)
        out[name] = {"max_rel": float(np.abs(got - want).max() / np.abs(want).max()),
                     "median_scaled": float(np.median(np.abs(got - want) / step))}
    return out


# ----------------------------------------------------------------------------- latency
def runners(model, paths: dict[str, Path], threads: int, batch: int):
    """One zero-argument callable per variant that runs a single forward call at ``batch``."""
    import numpy as np
    import onnxruntime as ort
    import torch

    from tsfm.export.quantize import calibration_windows
    from tsfm_runtime.edge import session_options

    torch.set_num_threads(threads)
    values, mask, freq = calibration_windows(model.config.context_length, batch, seed=7)
    values = np.nan_to_num(values, nan=0.0)
    feeds = {"past_values": values, "past_mask": mask, "freq_id": freq}
    tensors = [torch.from_numpy(feeds[k]) for k in ("past_values", "past_mask", "freq_id")]

    def eager():
        with torch.inference_mode():
            model(*tensors)

    calls = {"torch eager": eager}
    for name, path in paths.items():
        session = ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])
        names = [i.name for i in session.get_inputs()]
        calls[name] = (lambda s=session, f={k: feeds[k] for k in names}: s.run(None, f))
    return calls


def time_block(calls: dict[str, Any], rounds: int) -> dict[str, dict[str, float]]:
    """Interleaved timing: each round runs every variant once, the order rotating by one each round."""
    names = list(calls)
    for name in names:  # warm-up: first calls allocate and pick kernels
        for _ in range(3):
            calls[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[: r % len(names)]
        for name in order:
            start = time.perf_counter()
            calls[name]()
            times[name].append(time.perf_counter() - start)
    out = {}
    for name, values in times.items():
        values.sort()
        out[name] = {"median_ms": 1000 * statistics.median(values), "p10_ms": 1000 * values[len(values) // 10]}
    return out


def latency(model, paths, threads: list[int], batches: list[int], rounds: int) -> list[dict[str, Any]]:
    blocks = []
    for n in threads:
        for batch in batches:
            load = uptime()
            count = rounds or (200 if batch == 1 else 40)
            result = time_block(runners(model, paths, n, batch), count)
            blocks.append({"threads": n, "batch": batch, "rounds": count, "uptime": load, "results": result})
            eager = result["torch eager"]["median_ms"]
            print(f"threads {n} batch {batch}: " + ", ".join(
                f"{k} {v['median_ms']:.2f} ms ({eager / v['median_ms']:.2f}x)" for k, v in result.items()),
                file=sys.stderr, flush=True)
    return blocks


# ----------------------------------------------------------------------------- accuracy
def accuracy(model_name: str, paths: dict[str, Path], eval_dir: Path, wanted: str) -> dict[str, Any]:
    import pandas as pd
    from zero_shot import load_tasks, run_model, statsforecast_fn

    from tsfm import Forecaster
    from tsfm.evaluation import aggregate_relative

    def maker(name: str):
        source = model_name if name == "torch eager" else str(paths[name])

        def make(task):
            def forecast(context):
                f = Forecaster(model=source, horizon=task["horizon"], quantiles=QUANTILES, num_threads=1)
                return f.fit(context).predict()

            return forecast

        return make

    makers = {"SeasonalNaive": lambda task: statsforecast_fn("SeasonalNaive", task)}
    makers.update({name: maker(name) for name in VARIANTS})
    tasks = load_tasks([eval_dir], wanted, min_windows=0)  # the manifest's windows
    results: dict[str, dict[str, Any]] = {}
    for task in tasks:
        df = pd.read_csv(eval_dir / task["file"], parse_dates=["ds"])
        results[task["name"]] = {name: run_model(make(task), df, task)[0] for name, make in makers.items()}
        line = ", ".join(f"{n} {r['scores'].get('MASE', float('nan')):.3f}" for n, r in results[task["name"]].items())
        print(f"{task['name']:<26} MASE {line}", file=sys.stderr, flush=True)
    errors = {f"{t}/{m}": r["error"] for t, per in results.items() for m, r in per.items() if r["error"]}
    scores = {t: {m: r["scores"] for m, r in per.items() if r["scores"]} for t, per in results.items()}
    return {"relative": aggregate_relative(scores, baseline="SeasonalNaive"), "tasks": results, "errors": errors}


# ----------------------------------------------------------------------------- report
def vnni() -> str:
    """Whether this CPU has VNNI (Linux flags), which decides how the two dynamic presets compare."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "was not checked for VNNI"
    return "has VNNI" if "vnni" in flags else "has no VNNI"


def acceptance(size: dict[str, int], blocks: list[dict[str, Any]], acc: dict[str, Any] | None) -> list[list[Any]]:
    rows = [["int8 file < 1 MB (1,000,000 B)", f"{size[INT8]:,} B", size[INT8] < TARGETS["size_bytes"]]]
    if acc is not None:
        fp32, int8 = acc["relative"]["onnx fp32"]["MASE"], acc["relative"][INT8]["MASE"]
        delta = int8 / fp32 - 1
        rows.append(["int8 rel. MASE within 2% of fp32", f"{fp32:.4f} -> {int8:.4f} ({100 * delta:+.2f}%)",
                     abs(delta) <= TARGETS["rel_mase_delta"]])
    for batch, key in ((1, "speedup_b1"), (256, "speedup_b256")):
        block = next((b for b in blocks if b["threads"] == 1 and b["batch"] == batch), None)
        if block is None:
            continue
        ratio = block["results"]["torch eager"]["median_ms"] / block["results"][INT8]["median_ms"]
        rows.append([f"int8 >= {TARGETS[key]}x faster than torch eager, batch {batch}, 1 thread", f"{ratio:.2f}x",
                     ratio >= TARGETS[key]])
    return [[what, value, "yes" if ok else "NO"] for what, value, ok in rows]


def _task_spread(acc: dict[str, Any], name: str) -> float:
    """Largest |MASE / fp32 MASE - 1| over tasks (NaN where a task failed)."""
    ratios = []
    for per in acc["tasks"].values():
        base, value = per["onnx fp32"]["scores"].get("MASE"), per[name]["scores"].get("MASE")
        ratios.append(abs(value / base - 1) if base and value is not None else float("nan"))
    return max(ratios) if ratios else float("nan")


def _sci(value: float | None, spec: str = ".1e") -> str:
    return "–" if value is None else format(value, spec)


def render(meta, model_name, params, build, size, par, blocks, acc) -> str:
    parts = [
        "# ONNX export: size, parity, latency, accuracy",
        "",
        "Written by `benchmarks/export.py`; do not edit by hand.",
        "",
        metadata_markdown(meta),
        f"- model: `{model_name}` ({params:,} parameters)",
        "",
        "## Acceptance targets",
        "",
        markdown_table(["target", "measured", "met"], acceptance(size, blocks, acc)),
        "",
        "## Size and parity (one graph horizon, synthetic windows)",
        "",
        markdown_table(
            ["variant", "bytes", "vs torch weights", "build s", "max abs diff / max abs torch",
             "median abs diff / mean abs step"],
            [[v, f"{size[v]:,}", f"{size[v] / size['torch eager']:.2f}", _sci(build["seconds"].get(v), ".1f"),
              _sci(par.get(v, {}).get("max_rel")), _sci(par.get(v, {}).get("median_scaled"))] for v in VARIANTS]),
        "",
        "## Latency of one forward call (median / p10 ms; speed-up = torch median / variant median)",
        "",
    ]
    rows = []
    for block in blocks:
        eager = block["results"]["torch eager"]["median_ms"]
        rows += [[block["threads"], block["batch"], v, r["median_ms"], r["p10_ms"], eager / r["median_ms"]]
                 for v, r in block["results"].items()]
    parts += [markdown_table(["threads", "batch", "variant", "median ms", "p10 ms", "speed-up vs torch"], rows, 3), ""]
    parts += ["uptime before each block:", ""] + [f"- {b['threads']} thread(s), batch {b['batch']}, {b['rounds']} "
                                                 f"rounds: `{b['uptime']}`" for b in blocks]
    if acc is not None:
        rel = acc["relative"]
        names = ["SeasonalNaive", *VARIANTS]
        parts += ["", "## Accuracy on the visible eval set (geometric mean of score / SeasonalNaive; lower is better)",
                  "", "The last column is the largest change of a single task's MASE against ONNX fp32: how "
                  "faithful a variant is, beyond the aggregate.", "",
                  markdown_table(["variant", "rel. MASE", "rel. sMAPE", "rel. WQL",
                                  "max per-task abs(MASE / fp32 - 1)"],
                                 [[n, rel[n]["MASE"], rel[n]["sMAPE"], rel[n]["WQL"], _task_spread(acc, n)]
                                  for n in names], 4)]
        task_rows = [[t] + [per[n]["scores"].get("MASE", float("nan")) for n in names]
                     for t, per in acc["tasks"].items()]
        parts += ["", "### MASE per task", "", markdown_table(["task", *names], task_rows, 4)]
        if acc["errors"]:
            parts += ["", "Errors:", ""] + [f"- {k}: `{v}`" for k, v in acc["errors"].items()]
    parts += ["", "## Notes", "",
              "- ONNX variants are served by `tsfm_runtime` (numpy + onnxruntime); accuracy runs them "
              "through `Forecaster` on the .onnx file, so windows, rollout and constant pinning are the package's.",
              "- int8 presets: x86 = per-channel QInt8 weights with reduce_range (7-bit) for AVX2 CPUs without VNNI "
              "(`tsfm export --quantize int8`); x86-vnni = the same with 8-bit weights (identical settings to the arm "
              "preset for dynamic quantization; on a CPU without VNNI u8 x s8 products can saturate); "
              f"this CPU {vnni()}; "
              "the static variant is QDQ with QUInt8 activations calibrated (MinMax) on synthetic structural series.",
              "- The machine is shared: compare latencies within one block; the 2-thread blocks compete with "
              "other work on 2 cores (see uptime)."]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_output(args.output)  # before the run, not after it
    meta = start_run(1, PACKAGES)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    model_name = checkpoint_name(args.model or default_model())
    threads = [int(t) for t in args.threads.split(",") if t.strip()]
    batches = [int(b) for b in args.batches.split(",") if b.strip()]

    from tsfm.hub import load_model

    model = load_model(model_name)
    with tempfile.TemporaryDirectory(prefix="tsfm-export-bench-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        build = build_artifacts(model_name, workdir, args.calibration_series)
        paths = build["paths"]
        size = sizes(model_name, paths)
        print("sizes: " + ", ".join(f"{k} {v:,} B" for k, v in size.items()), file=sys.stderr, flush=True)
        par = parity(model, paths, args.parity_windows)
        blocks = latency(model, paths, threads, batches, args.rounds)
        import torch

        torch.set_num_threads(1)
        acc = None if args.skip_accuracy else accuracy(model_name, paths, args.eval_dir, args.tasks)
    finish_run(meta)
    data = {"meta": meta, "model": model_name, "parameters": model.num_parameters(), "sizes": size,
            "build_seconds": build["seconds"], "parity": par, "latency": blocks,
            "accuracy": None if acc is None else {"relative": acc["relative"], "errors": acc["errors"],
                                                  "tasks": {t: {m: r["scores"] for m, r in per.items()}
                                                            for t, per in acc["tasks"].items()}},
            "acceptance": acceptance(size, blocks, acc)}
    report = render(meta, model_name, model.num_parameters(), build, size, par, blocks, acc)
    written = write_results(args.output, report, data)
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
