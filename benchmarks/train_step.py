"""Time one CPU training step of a trained checkpoint: plain fp32, denormals flushed, bf16 autocast.

Why: a trained network's gradients underflow into denormal floats, which x86 cores compute many
times slower, so a pretraining run slows down as it learns. `tsfm pretrain` flushes them
(`tsfm.train.numerics.flush_denormals`); this measures what that buys, and what bf16 autocast
would add on top (AMX/AVX-512-BF16 cores only), on the training loss of the checkpoint itself.

A step is `ForecastModel.training_loss` + backward + AdamW, on 128 windows cut (seeded) from the
real pretraining series in `../shared/data/real/pretrain`. Each (setting, threads) pair runs in
its own process, because the flush must be set before torch's thread pool exists; the pairs are
interleaved over `--repeats` rounds and the table quotes medians.

    python benchmarks/train_step.py                       # ttm-96-general, 1 and 2 threads
    python benchmarks/train_step.py --model runs/ttm_96_large/checkpoint --threads 2
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (  # noqa: E402
    REPO_ROOT,
    RESULTS_DIR,
    check_output,
    finish_run,
    markdown_table,
    metadata_markdown,
    run_metadata,
    use_checkout,
    write_results,
)

use_checkout()  # the measured tsfm is this checkout's, in the parent and in every child process
SETTINGS = ("fp32", "flush", "flush+bf16")
REAL_PRETRAIN = REPO_ROOT.parent / "shared" / "data" / "real" / "pretrain" / "tsdl.parquet"


def measure(model_name: str, setting: str, threads: int, steps: int, batch: int) -> list[float]:
    """Seconds per training step, one entry per timed step (after 2 untimed ones)."""
    import torch

    if "flush" in setting:
        from tsfm.train.numerics import flush_denormals

        flush_denormals()
    torch.set_num_threads(threads)
    import numpy as np

    from tsfm.data.freq import freq_token
    from tsfm.data.real import read_real_series
    from tsfm.hub import load_model

    model = load_model(model_name).train()
    context, horizon = model.config.context_length, model.config.prediction_length
    series = [s for s in read_real_series([REAL_PRETRAIN]) if len(s["target"]) >= context + horizon
              and np.isfinite(s["target"]).all()]
    rng = np.random.default_rng(0)
    picks = rng.integers(0, len(series), size=batch * (steps + 2))
    windows, tokens = [], []
    for i in picks:
        y = series[i]["target"]
        start = rng.integers(0, len(y) - context - horizon + 1)
        windows.append(y[start:start + context + horizon])
        tokens.append(freq_token(series[i]["freq"]))
    values = torch.tensor(np.stack(windows), dtype=torch.float32)[..., None]
    tokens = torch.tensor(tokens)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-6)
    times = []
    for k in range(steps + 2):
        rows = slice(k * batch, (k + 1) * batch)
        start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled="bf16" in setting):
            loss = model.training_loss(values[rows, :context], values[rows, context:], freq_id=tokens[rows],
                                       loss_scale="naive")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if k >= 2:
            times.append(time.perf_counter() - start)
    return times


def bf16_units() -> str:
    """The CPU's bf16 matrix flags (amx_bf16, avx512_bf16), comma-separated; "" when none or unknown."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return ""
    return ", ".join(f for f in ("amx_bf16", "avx512_bf16") if f in flags.split())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ttm-96-general", help="shipped name or checkpoint folder")
    parser.add_argument("--threads", default="1,2", help="comma-separated torch thread counts")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds over every setting")
    parser.add_argument("--steps", type=int, default=8, help="timed steps per process")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "train_step.md")
    parser.add_argument("--child", nargs=2, metavar=("SETTING", "THREADS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    check_output(args.output)  # before the run, not after it
    if args.child:
        print(json.dumps(measure(args.model, args.child[0], int(args.child[1]), args.steps, args.batch)))
        return
    if not REAL_PRETRAIN.is_file():
        raise SystemExit(f"error: {REAL_PRETRAIN} is missing: this benchmark cuts its batches from it")
    threads = [int(t) for t in args.threads.split(",")]
    meta = run_metadata({"torch threads": args.threads}, ("tsfm", "torch"))
    meta["bf16_units"] = bf16_units()
    per_step: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.repeats):
        for n in threads:
            for setting in SETTINGS:
                out = subprocess.run([sys.executable, __file__, "--model", args.model, "--steps", str(args.steps),
                                      "--batch", str(args.batch), "--child", setting, str(n)],
                                     capture_output=True, text=True, cwd=REPO_ROOT)
                if out.returncode != 0:
                    raise SystemExit(f"error: the {setting} run on {n} threads failed:\n{out.stderr[-3000:]}")
                per_step.setdefault((setting, n), []).append(statistics.median(json.loads(out.stdout)))
    finish_run(meta)
    rows = []
    for n in threads:
        base = statistics.median(per_step[("fp32", n)])
        for setting in SETTINGS:
            runs = per_step[(setting, n)]
            rows.append([n, setting, 1000 * statistics.median(runs), base / statistics.median(runs),
                         ", ".join(f"{1000 * r:.0f}" for r in runs)])
    markdown = "\n".join([
        "# One CPU training step: fp32, denormals flushed, bf16 autocast",
        "",
        "Written by `benchmarks/train_step.py`; do not edit by hand.",
        "",
        metadata_markdown(meta),
        f"- bf16 matrix units (/proc/cpuinfo flags): {meta['bf16_units'] or 'none'}",
        f"- model: `{args.model}`; batch {args.batch} windows of the real pretraining series; "
        f"{args.steps} timed steps per process after 2 untimed ones; {args.repeats} interleaved rounds",
        "",
        markdown_table(["threads", "setting", "median ms/step", "speed-up vs fp32", "per-round medians (ms)"],
                       rows, digits=2),
        "",
        "`tsfm pretrain` always flushes; bf16 autocast is not its CPU default (`trainer.precision=bf16-mixed`",
        "turns it on): cores without bf16 matrix units have no fast bf16 path.",
        "",
    ])
    write_results(args.output, markdown, {"meta": meta, "seconds_per_step": {f"{s}/{n}": v for (s, n), v in
                                                                            per_step.items()}})
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
