"""Where the time of an exported TTM goes: onnxruntime's per-operator profile, fp32 vs int8.

At large batch int8 buys little over fp32 on the CPUs measured so far (AMD EPYC without VNNI, an
Intel Xeon with it); this script records which operators the time is spent on (onnxruntime's own
profiler, one thread), which is how the unfused GELU was found.

    python benchmarks/export_profile.py [--model ttm] [--batch 256] [--runs 20]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    check_output,
    markdown_table,
    metadata_markdown,
    pin_threads,
    run_metadata,
    use_checkout,
    write_results,
)

use_checkout()
RESULTS = Path(__file__).resolve().parent / "results" / "export_profile.md"


def profile(path: Path, batch: int, runs: int, context: int, freq_input: bool) -> dict[str, float]:
    """Total microseconds per operator type over ``runs`` session runs (after two warm-up runs)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    values = (100 + np.cumsum(rng.normal(size=(batch, context, 1)), axis=1)).astype(np.float32)
    feeds = {"past_values": values, "past_mask": np.ones_like(values)}
    if freq_input:
        feeds["freq_id"] = np.full(batch, 7, dtype=np.int64)
    for _ in range(2 + runs):
        session.run(None, feeds)
    trace = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[str, float] = defaultdict(float)
    seen_runs = 0
    for event in trace:
        if event.get("cat") == "Session" and event.get("name") == "model_run":
            seen_runs += 1
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            totals[event["args"]["op_name"]] += float(event["dur"])
    scale = runs / max(seen_runs, 1)  # keep the measured runs' share only (warm-up runs included equally)
    return {op: us * scale / runs for op, us in totals.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ttm")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args()
    check_output(args.output)  # before the run, not after it
    threads = pin_threads(1)
    from tsfm.export import export_onnx
    from tsfm.hub import load_model

    model = load_model(args.model)
    context = model.config.context_length
    freq_input = model.capabilities.freq_token
    rows, data = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        files = {
            "fp32": export_onnx(args.model, Path(tmp) / "fp32.onnx"),
            "int8-dynamic x86": export_onnx(args.model, Path(tmp) / "int8.onnx", quantize="int8-dynamic"),
        }
        for name, path in files.items():
            per_op = profile(Path(path), args.batch, args.runs, context, freq_input)
            data[name] = per_op
        ops = sorted({op for per_op in data.values() for op in per_op},
                     key=lambda op: -max(d.get(op, 0.0) for d in data.values()))
        totals = {name: sum(per_op.values()) for name, per_op in data.items()}
        for op in ops:
            row = [op]
            for name in files:
                us = data[name].get(op, 0.0)
                row += [us / 1000.0, 100.0 * us / totals[name] if totals[name] else 0.0]
            rows.append(row)
        rows.append(["total (operator kernels)"] + sum(([totals[n] / 1000.0, 100.0] for n in files), []))
    meta = run_metadata(threads, ("tsfm", "onnxruntime", "onnx", "numpy"))
    meta["command"] = "python benchmarks/export_profile.py " + " ".join(sys.argv[1:])
    headers = ["operator"] + sum(([f"{n} ms", f"{n} %"] for n in files), [])
    markdown = "\n".join([
        "# Where an exported TTM spends its time (onnxruntime profile)",
        "",
        "Written by `benchmarks/export_profile.py`; do not edit by hand.",
        "",
        metadata_markdown(meta),
        f"- model: `{args.model}`; batch {args.batch}; {args.runs} profiled runs after 2 warm-up runs; "
        "one intra-op thread; times are per run, summed over the operator's nodes",
        "",
        markdown_table(headers, rows, digits=2),
        "",
    ])
    write_results(args.output, markdown, {"meta": meta, "per_op_us": data})
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
