"""Run a benchmark script unchanged but for a rule the trial has swapped in (shared by the trial
scripts that replace a function of ``tsfm_runtime.rules``, or wrap its network calls)."""

from __future__ import annotations

import runpy
import shlex
import sys
from collections.abc import Callable
from pathlib import Path


def run_script(script: str, args: list[str]) -> None:
    """Run ``script`` with ``args`` as ``__main__``; its results file records the trial's whole
    command line (``sys.argv`` as this process got it) instead of the script's own."""
    command = "python " + shlex.join(sys.argv)
    sys.path.insert(0, str(Path(script).resolve().parent))
    import common

    run_metadata = common.run_metadata

    def recorded(*a, **kw):
        meta = run_metadata(*a, **kw)
        meta["command"] = command
        return meta

    common.run_metadata = recorded
    sys.argv = [script, *args]
    runpy.run_path(script, run_name="__main__")


def run_with_wrapped_steps(usage: str, wrap: Callable) -> None:
    """Run ``sys.argv[1]`` (with the rest as its arguments) with the network calls of every rollout
    replaced by ``wrap(step_fn, values, levels)``: a test-time ensemble over one call's inputs.
    Without covariates only."""
    import tsfm_runtime.rules as rules

    shipped = rules.rollout

    def rollout(step_fn, values, mask, freq_id, horizon, levels, step, past_exog=None, future_exog=None):
        if past_exog is not None or future_exog is not None:
            raise SystemExit("error: this trial takes no covariates")
        return shipped(wrap(step_fn, values, levels), values, mask, freq_id, horizon, levels, step)

    if len(sys.argv) < 2:
        raise SystemExit(f"usage: {usage} SCRIPT [ARGS...]")
    rules.rollout = rollout
    run_script(sys.argv[1], sys.argv[2:])


def run_zero_shot_with(**replaced: Callable) -> None:
    """Run ``benchmarks/zero_shot.py`` with this process's arguments and the named functions of
    ``tsfm_runtime.rules`` replaced (the rules look them up at call time)."""
    import tsfm_runtime.rules as rules

    unknown = [name for name in replaced if not hasattr(rules, name)]
    if unknown:
        raise SystemExit(f"error: tsfm_runtime.rules has no {', '.join(unknown)}")
    for name, function in replaced.items():
        setattr(rules, name, function)
    run_script(str(Path(__file__).resolve().parents[1] / "zero_shot.py"), sys.argv[1:])
