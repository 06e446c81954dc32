"""The edge file is the suite: `tsfm export --model ttm` (fp32 and int8) scored against the torch suite.

    python benchmarks/export_suite.py                 # eval + real/dev, 46 tasks, cached baselines
    python benchmarks/export_suite.py --data-dir ../shared/data/eval

Exports the ``ttm`` suite twice through the CLI a user runs (``tsfm export --model ttm -o DIR`` and
``--quantize int8``) into ``runs/export_suite/``, then scores the torch suite and both folders
with ``benchmarks/zero_shot.py`` (same tasks, windows and metrics; ``Forecaster(model=DIR)``
serves an exported folder with the suite's own choice of checkpoint) and writes, beside its
report, the paired ratio of each export to the torch suite (``benchmarks/compare.py``).
The acceptance bar: within 1% of the torch suite's relative MASE and WQL for fp32, 3% for int8.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import zero_shot
from common import REPO_ROOT, RESULTS_DIR, check_output, markdown_table, write_results
from compare import compare

WORK = REPO_ROOT / "runs" / "export_suite"
EXPORTS = {"fp32": [], "int8": ["--quantize", "int8"]}


def export(name: str, extra: list[str]) -> tuple[Path, float]:
    folder = WORK / f"ttm-{name}-edge"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "tsfm.cli", "export", "--model", "ttm", "-o", str(folder), *extra],
                   check=True, cwd=REPO_ROOT)
    return folder, time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", action="append", default=None, help="as zero_shot.py (default: eval + real/dev)")
    parser.add_argument("--reuse", type=Path, default=RESULTS_DIR / "zero_shot.json",
                        help="baseline rows with the same windows (default: benchmarks/results/zero_shot.json)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "export_suite.md")
    args = parser.parse_args(argv)
    check_output(args.output)  # before the run, not after it
    WORK.mkdir(parents=True, exist_ok=True)
    folders = {name: export(name, extra) for name, extra in EXPORTS.items()}
    models = ["ttm", *(str(folder.relative_to(REPO_ROOT)) for folder, _ in folders.values())]
    data_dirs = [item for d in (args.data_dir or []) for item in ("--data-dir", d)]
    zero_shot.main([*data_dirs, "--models", ",".join(models), "--skip-stats", "--reuse", str(args.reuse),
                    "--output", str(args.output)])
    data = json.loads(args.output.with_suffix(".json").read_text())
    title = "## Exported suite / torch suite (paired, same tasks and windows)"
    lines = [args.output.read_text().rstrip(), "", title, ""]
    for (name, (folder, seconds)), model in zip(folders.items(), models[1:]):
        size = sum(p.stat().st_size for p in folder.iterdir()) / 1e6
        lines += [f"`tsfm export --model ttm{' ' + ' '.join(EXPORTS[name]) if EXPORTS[name] else ''}` -> `{model}` "
                  f"({size:.1f} MB, exported in {seconds:.0f} s):", "",
                  markdown_table(["group (tasks)", "MASE ratio", "MASE", "WQL ratio", "WQL"],
                                 compare(data, model, "ttm")), ""]
    write_results(args.output, "\n".join(lines))  # the JSON zero_shot wrote stays
    print(f"wrote {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
