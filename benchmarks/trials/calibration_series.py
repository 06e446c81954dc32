"""Run ``benchmarks/zero_shot.py`` with the calibration backtests limited to fewer series than
shipped (a stress check of ``tsfm_runtime.rules.CALIBRATION_SERIES``; its rule is in this folder's
README).

    python benchmarks/trials/calibration_series.py --at-most 16 --skip-stats \\
        --reuse benchmarks/results/zero_shot.json --models ttm --output /tmp/cal16.md
    python benchmarks/compare.py /tmp/cal16.json ttm ttm --reference-results benchmarks/results/zero_shot.json \\
        --output /tmp/cal16_cmp.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from swapped_rule import run_script  # noqa: E402

import tsfm_runtime.rules as rules  # noqa: E402

if __name__ == "__main__":
    parser = argparse.ArgumentParser(add_help=False)
    parser.add_argument("--at-most", type=int, required=True)
    known, rest = parser.parse_known_args()
    if known.at_most < 1:
        raise SystemExit("error: --at-most must be 1 or more")
    rules.CALIBRATION_SERIES = known.at_most  # read at call time
    run_script(str(Path(__file__).resolve().parents[1] / "zero_shot.py"), rest)
