"""Run a benchmark script with the 96-context networks' forecasts averaged over two contexts: the
whole window and its most recent half (a trial, not shipped).

Why: an average over context lengths is a cheap test-time ensemble (two network calls instead of
one), and a shorter context weighs the recent level and trend more, which the suite lags on short
business series. The older half is masked exactly as the package pads a short history (NaN,
unobserved). Networks with longer contexts (`ttm-512`) are left alone: given half their context
they are far worse (`partial512` in README.md).

    python benchmarks/trials/context_halves.py benchmarks/zero_shot.py --skip-stats --models ttm ...

Without covariates only. The results file records this command.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import tsfm_runtime.rules as rules

sys.path.insert(0, str(Path(__file__).resolve().parent))
from swapped_rule import run_with_wrapped_steps  # noqa: E402

LONGEST = 96  # contexts up to this many steps are averaged with their recent half


def averaged(step_fn: rules.StepFn) -> rules.StepFn:
    """A network call that returns the mean of its quantiles on the window and on its recent half."""

    def step(values, mask, freq_id, past_exog, future_exog):
        whole = step_fn(values, mask, freq_id, past_exog, future_exog)
        half = values.shape[1] // 2
        recent_values, recent_mask = values.copy(), mask.copy()
        recent_values[:, :half], recent_mask[:, :half] = np.nan, 0.0
        recent = step_fn(recent_values, recent_mask, freq_id, past_exog, future_exog)
        return np.sort((whole + recent) / 2, axis=-1)

    return step


def main() -> None:
    run_with_wrapped_steps("context_halves.py",
                           lambda step_fn, values, levels: averaged(step_fn) if values.shape[1] <= LONGEST else step_fn)


if __name__ == "__main__":
    main()
