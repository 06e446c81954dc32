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
from collections.abc import Callable
from pathlib import Path

import numpy as np

import tsfm_runtime.rules as rules

sys.path.insert(0, str(Path(__file__).resolve().parent))
from swapped_rule import run_script  # noqa: E402


def mirrored(step_fn: rules.StepFn) -> rules.StepFn:
    """A network call returning the mean of its quantiles on the context and on the negated context."""

    def step(values, mask, freq_id, past_exog, future_exog):
        plain = step_fn(values, mask, freq_id, past_exog, future_exog)
        mirror = -step_fn(-values, mask, freq_id, past_exog, future_exog)[..., ::-1]
        return np.sort((plain + mirror) / 2, axis=-1)

    return step


def rollout_with(shipped: Callable[..., np.ndarray]) -> Callable[..., np.ndarray]:
    def rollout(step_fn, values, mask, freq_id, horizon, levels, step, past_exog=None, future_exog=None):
        if past_exog is not None or future_exog is not None:
            raise SystemExit("error: this trial takes no covariates")
        levels = np.asarray(levels, dtype=np.float64)
        if not np.allclose(levels + levels[::-1], 1.0):
            raise SystemExit(f"error: this trial needs symmetric quantile levels, not {levels.tolist()}")
        return shipped(mirrored(step_fn), values, mask, freq_id, horizon, levels, step)

    return rollout


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit("usage: sign_flip.py SCRIPT [ARGS...]")
    rules.rollout = rollout_with(rules.rollout)
    run_script(sys.argv[1], sys.argv[2:])


if __name__ == "__main__":
    main()
