"""Run a benchmark script with every network call averaged with its mirror image: the call on the
negated context, negated back (a trial, not shipped).

Why: a forecaster should treat a falling series as the mirror of a rising one, and a small network
trained on corpora with more rises than falls (growth, positive processes) need not. Averaging the
two calls removes whatever the network does differently to the two, the cheapest test-time
ensemble there is (two calls instead of one). The quantiles of the mirrored call are negated and
read in reverse (level q of -x is level 1 - q of x), so the levels must be symmetric.

    python benchmarks/trials/sign_flip.py benchmarks/zero_shot.py --skip-stats --models ttm ...

Without covariates only. The results file records this command.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import tsfm_runtime.rules as rules

sys.path.insert(0, str(Path(__file__).resolve().parent))
from swapped_rule import run_with_wrapped_steps  # noqa: E402


def mirrored(step_fn: rules.StepFn) -> rules.StepFn:
    """A network call returning the mean of its quantiles on the context and on the negated context."""

    def step(values, mask, freq_id, past_exog, future_exog):
        plain = step_fn(values, mask, freq_id, past_exog, future_exog)
        mirror = -step_fn(-values, mask, freq_id, past_exog, future_exog)[..., ::-1]
        return np.sort((plain + mirror) / 2, axis=-1)

    return step


def checked_mirror(step_fn: rules.StepFn, values: np.ndarray, levels) -> rules.StepFn:
    levels = np.asarray(levels, dtype=np.float64)
    if not np.allclose(levels + levels[::-1], 1.0):
        raise SystemExit(f"error: this trial needs symmetric quantile levels, not {levels.tolist()}")
    return mirrored(step_fn)


def main() -> None:
    run_with_wrapped_steps("sign_flip.py", checked_mirror)


if __name__ == "__main__":
    main()
