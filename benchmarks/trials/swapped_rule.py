"""Run a benchmark script unchanged but for a rule the trial has swapped in (shared by the trial
scripts that replace a function of ``tsfm_runtime.rules``)."""

from __future__ import annotations

import runpy
import shlex
import sys
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
