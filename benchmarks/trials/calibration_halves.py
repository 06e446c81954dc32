"""Run ``benchmarks/zero_shot.py`` with the suite's interval calibration fitted per half of the
horizon (a trial; its rule is in this folder's README).

The shipped calibration (``tsfm_runtime.rules.forecast`` with ``calibration_windows``) widens every
step by one factor per central interval, fitted on all steps of the backtests together. Here the
factors are fitted and applied on the first ceil(H/2) steps and on the rest separately.

    python benchmarks/trials/calibration_halves.py --skip-stats --reuse benchmarks/results/zero_shot.json \
        --models ttm --output /tmp/halves.md
    python benchmarks/compare.py /tmp/halves.json ttm ttm --reference-results benchmarks/results/zero_shot.json
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from swapped_rule import run_zero_shot_with  # noqa: E402

import tsfm_runtime.rules as rules  # noqa: E402

shipped_widening, shipped_widen = rules.conformal_widening, rules.widen


def halves(horizon: int) -> list[slice]:
    first = -(-horizon // 2)
    return [slice(0, first), slice(first, horizon)] if horizon > 1 else [slice(0, horizon)]


def widening_by_half(quantiles, actual, observed_actual, levels) -> np.ndarray:
    """[halves, pairs]: ``conformal_widening`` on each half of the backtests' steps."""
    return np.stack([shipped_widening(quantiles[:, part], actual[:, part], observed_actual[:, part], levels)
                     for part in halves(quantiles.shape[1])])


def widen_by_half(quantiles, widening, levels) -> np.ndarray:
    """Each half widened by its own factors (one row of factors, as shipped, widens every step)."""
    widening = np.atleast_2d(widening)
    parts = halves(quantiles.shape[1])
    if len(widening) == 1:
        widening = np.repeat(widening, len(parts), axis=0)
    return np.concatenate([shipped_widen(quantiles[:, part], factors, levels)
                           for part, factors in zip(parts, widening)], axis=1)


if __name__ == "__main__":
    run_zero_shot_with(conformal_widening=widening_by_half, widen=widen_by_half)
