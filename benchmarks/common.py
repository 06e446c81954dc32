"""Helpers every benchmark script shares: thread pinning, run metadata and results files.

A results file must let a reader rerun the measurement and judge it: it records the exact
command, date, git commit, machine load (``uptime``), thread settings and package versions.
Scripts run as ``python benchmarks/<name>.py``; they put the repository root first on
``sys.path`` so that the checkout they live in is the ``tsfm`` they measure.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
)


def use_checkout() -> None:
    """Make ``import tsfm`` resolve to this checkout (installed or not)."""
    root = str(REPO_ROOT)
    if root not in sys.path:
        sys.path.insert(0, root)


def pin_threads(n: int | None) -> dict[str, Any]:
    """Limit every thread pool we know of to ``n`` threads (None: leave defaults) and say what was set.

    Environment variables only bind libraries imported later (numba reads NUMBA_NUM_THREADS at
    import), so call this before importing numpy-heavy modules; threadpoolctl and torch
    cover pools that are already loaded. Subprocesses inherit the variables.
    """
    if n is not None:
        if n < 1:
            raise SystemExit(f"error: --num-threads must be >= 1 (got {n})")
        for var in THREAD_ENV_VARS:
            os.environ[var] = str(n)
        try:
            from threadpoolctl import threadpool_limits

            threadpool_limits(n)
        except ImportError:
            pass
    settings: dict[str, Any] = {var: os.environ.get(var, "(unset)") for var in THREAD_ENV_VARS}
    try:
        import torch

        if n is not None:
            torch.set_num_threads(n)
        settings["torch.get_num_threads()"] = torch.get_num_threads()
    except ImportError:
        settings["torch.get_num_threads()"] = "(torch not installed)"
    return settings


def uptime() -> str:
    """``uptime`` output (load averages), or the load from ``os.getloadavg`` where it is missing."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        one, five, fifteen = os.getloadavg()
        return f"load average: {one:.2f}, {five:.2f}, {fifteen:.2f}"


def git_commit() -> str:
    """Commit of the checkout (with ``+dirty`` when files differ), or a note when there is none."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "(no commit yet)"
    dirty = subprocess.run(["git", "status", "--porcelain"], cwd=REPO_ROOT, capture_output=True, text=True).stdout
    return commit + ("+dirty" if dirty.strip() else "")


def package_versions(names: Sequence[str]) -> dict[str, str]:
    """Installed versions of the named distributions ("not installed" where absent)."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_metadata(threads: Mapping[str, Any], packages: Sequence[str]) -> dict[str, Any]:
    """Everything a results file records about how and where it was produced."""
    return {
        "command": "python " + shlex.join(sys.argv),
        "date": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "git_commit": git_commit(),
        "uptime_at_start": uptime(),
        "machine": f"{cpu_model()}, {os.cpu_count()} logical CPUs, {platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "threads": dict(threads),
        "packages": package_versions(packages),
    }


def start_run(num_threads: int | None, packages: Sequence[str]) -> dict[str, Any]:
    """Begin a benchmark run: pin every thread pool to ``num_threads`` (before numpy-heavy imports;
    None leaves the defaults), make ``import tsfm`` this checkout, and return the run's record
    (``run_metadata``: command, date, commit, machine and its load, threads, package versions)."""
    threads = pin_threads(num_threads)
    use_checkout()
    return run_metadata(threads, packages)


def finish_run(meta: dict[str, Any]) -> dict[str, Any]:
    """The run's record with the machine load at the end: call it when the measuring is done."""
    meta["uptime_at_end"] = uptime()
    return meta


def metadata_markdown(meta: Mapping[str, Any]) -> str:
    """The run-metadata block at the top of a results file."""
    lines = [
        f"- command: `{meta['command']}` (from the repository root)",
        f"- date: {meta['date']}; git commit: {meta['git_commit']}",
        f"- machine: {meta['machine']}; Python {meta['python']}",
        f"- uptime at start: `{meta['uptime_at_start']}`",
    ]
    if "uptime_at_end" in meta:
        lines.append(f"- uptime at end: `{meta['uptime_at_end']}`")
    lines.append("- threads: " + ", ".join(f"{k}={v}" for k, v in meta["threads"].items()))
    lines.append("- packages: " + ", ".join(f"{k} {v}" for k, v in meta["packages"].items()))
    return "\n".join(lines)


def fmt(value: Any, digits: int = 3) -> str:
    """A table cell: floats with ``digits`` decimals, NaN/None as an en dash."""
    if value is None:
        return "–"
    if isinstance(value, float):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], digits: int = 3) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(fmt(cell, digits) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def write_results(md_path: Path, markdown: str, data: Mapping[str, Any] | None = None) -> list[Path]:
    """Write the markdown report (and ``data`` as JSON next to it, same stem); return the paths."""
    md_path = Path(md_path)
    md_path.parent.mkdir(parents=True, exist_ok=True)
    md_path.write_text(markdown.rstrip() + "\n")
    written = [md_path]
    if data is not None:
        json_path = md_path.with_suffix(".json")
        json_path.write_text(json.dumps(_nan_to_none(data), indent=1, default=_json_default, allow_nan=False) + "\n")
        written.append(json_path)
    return written


def _nan_to_none(value: Any) -> Any:
    """NaN is not JSON: write null instead."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_nan_to_none(v) for v in value]
    return value


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    return str(value)


def checkpoint_name(name: str) -> str:
    """The one checkpoint a model name stands for: a suite (``ttm``) is measured through its default
    variant, so every number of a run (size, export, parity, fine-tuning) is about the same weights."""
    from tsfm.hub import resolve

    return resolve(name).name
