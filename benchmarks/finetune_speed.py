"""Time `tsfm finetune` with and without denormal floats flushed to zero.

Why: a trained network's gradients underflow into denormals, which x86 cores compute many times
slower (`benchmarks/results/train_step.md`). `tsfm finetune` flushes them at its start, before
torch starts its threads, as `tsfm pretrain` does; this measures what that buys end to end.

Each run is the real command (`tsfm finetune ETTh1 --max-steps N`) in its own process; the `plain`
runs replace `tsfm.train.numerics.flush_denormals` by a no-op. Settings and models are interleaved
over `--repeats` rounds; the table quotes the medians of the training seconds each run reports in
its `finetune.json` (start-up, loading and saving excluded).

    python benchmarks/finetune_speed.py                   # ttm-96-general and ttm-512, head and full
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
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
SETTINGS = ("plain", "flush")
DATA = REPO_ROOT.parent / "shared" / "data" / "real" / "dev" / "etth1.csv"
CHILD = """
import sys
import tsfm.train.numerics as numerics
if sys.argv[1] == "plain":
    numerics.flush_denormals = lambda: False
from tsfm.cli.main import main
sys.argv = ["tsfm", "finetune", *sys.argv[2:]]
main()
"""


def run_once(model: str, mode: str, setting: str, threads: int, steps: int, folder: Path) -> float:
    """Training seconds of one `tsfm finetune` run, as its report gives them."""
    out = folder / f"{model}-{mode}-{setting}"
    cmd = [sys.executable, "-c", CHILD, setting, str(DATA), "--model", model, "--mode", mode, "--output-dir",
           str(out), "--overwrite", "--max-steps", str(steps), "--max-epochs", "1", "--horizon", "24",
           "--num-threads", str(threads), "--quiet"]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
    if done.returncode != 0:
        raise SystemExit(f"error: {model} {mode} {setting} failed:\n{done.stderr[-3000:]}")
    return float(json.loads((out / "finetune.json").read_text())["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ttm-96-general,ttm-512", help="comma-separated model names")
    parser.add_argument("--modes", default="head,full", help="comma-separated fine-tuning modes")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (--num-threads)")
    parser.add_argument("--steps", type=int, default=60, help="optimizer steps per run (--max-steps)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds over every setting")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "finetune_speed.md")
    args = parser.parse_args()
    check_output(args.output)  # before the run, not after it
    if not DATA.is_file():
        raise SystemExit(f"error: {DATA} is missing: this benchmark fine-tunes on it")
    models, modes = args.models.split(","), args.modes.split(",")
    meta = run_metadata({"torch threads": args.threads}, ("tsfm", "torch"))
    seconds: dict[tuple[str, str, str], list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(args.repeats):
            for model in models:
                for mode in modes:
                    for setting in SETTINGS:
                        took = run_once(model, mode, setting, args.threads, args.steps, Path(tmp))
                        seconds.setdefault((model, mode, setting), []).append(took)
    finish_run(meta)
    rows = []
    for model in models:
        for mode in modes:
            plain = statistics.median(seconds[(model, mode, "plain")])
            flush = statistics.median(seconds[(model, mode, "flush")])
            rows.append([model, mode, plain, flush, plain / flush,
                         ", ".join(f"{a:.1f}/{b:.1f}" for a, b in zip(seconds[(model, mode, "plain")],
                                                                     seconds[(model, mode, "flush")]))])
    markdown = "\n".join([
        "# `tsfm finetune` with and without denormals flushed",
        "",
        "Written by `benchmarks/finetune_speed.py`; do not edit by hand.",
        "",
        metadata_markdown(meta),
        f"- data: `{DATA.name}` (7 series), horizon 24, {args.steps} steps of 64 windows, "
        f"{args.threads} torch threads; {args.repeats} interleaved rounds",
        "",
        markdown_table(["model", "mode", "plain s (median)", "flushed s (median)", "speed-up",
                        "per round, plain/flushed (s)"], rows, digits=2),
        "",
        "Seconds are the training time each run reports (`finetune.json`): validation included, start-up,",
        "loading and saving not. `tsfm finetune` flushes; the Python API leaves the caller's process as it is.",
        "",
    ])
    write_results(args.output, markdown, {"meta": meta, "seconds": {"/".join(k): v for k, v in seconds.items()}})
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
