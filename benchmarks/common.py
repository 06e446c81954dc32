"""Helpers every benchmark script shares: thread pinning, run metadata and results files.

A results file must let a reader rerun the measurement and judge it: it records the exact
command, date, git commit, machine load (``uptime``), thread settings and package versions.
Scripts run as ``python benchmarks/<name>.py``; they put the repository root first on
``sys.path`` so that the checkout they live in is the ``tsfm`` they measure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "benchmarks" / "results"
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
)
RESULTS_PATHSPEC = ":(exclude)benchmarks/results"  # files a run rewrites do not make its commit dirty


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
            fail(f"--num-threads must be >= 1 (got {n})")
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


def git_commit(root: Path = REPO_ROOT) -> str:
    """Commit of the checkout (with ``+dirty`` when files differ), or a note when there is none.

    Changes under ``benchmarks/results`` do not count: rewriting results is what a run does, and
    marking every rerun dirty would hide the runs made from changed code."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "(no commit yet)"
    dirty = subprocess.run(["git", "status", "--porcelain", "--", ".", RESULTS_PATHSPEC],
                           cwd=root, capture_output=True, text=True).stdout
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
    if meta["threads"]:
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
    """Write the markdown report (and ``data`` as JSON next to it, same stem); return the paths.

    Both files are written under temporary names in the target folder and renamed into place only
    when both are complete, so a failure (disk full, ``ulimit -f``) leaves the earlier pair as it was
    and never a new report beside an old JSON. A failure is one error line, not a traceback.
    """
    use_checkout()
    from tsfm.atomic import replace_file

    md_path = Path(md_path)
    json_text = None
    if data is not None:
        json_text = json.dumps(_nan_to_none(data), indent=1, default=_json_default, allow_nan=False) + "\n"

    def write_md(tmp: str) -> None:
        Path(tmp).write_text(markdown.rstrip() + "\n")
        if json_text is not None:  # the JSON goes in last-but-one: the report's rename follows at once
            replace_file(md_path.with_suffix(".json"), lambda tmp_json: Path(tmp_json).write_text(json_text))

    try:
        replace_file(md_path, write_md)
    except OSError as err:
        raise SystemExit(f"error: could not write the results to {md_path}: {err}") from None
    return [md_path] + ([md_path.with_suffix(".json")] if data is not None else [])


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


class BadInput(SystemExit):
    """Exit code 2, argparse's for bad input; ``str()`` is the message (``fail`` prints it)."""

    def __init__(self, message: str) -> None:
        super().__init__(2)
        self.message = message

    def __str__(self) -> str:
        return self.message


def fail(message: str) -> NoReturn:
    """Bad input: one error line and exit code 2, before any expensive work."""
    print(f"error: {message}", file=sys.stderr)
    raise BadInput(message)


def check_model(name: str, keywords: Mapping[str, Any] | None = None, label: str | None = None) -> None:
    """Exit 2 unless ``Forecaster(model=name, **keywords)`` names a model that exists and keywords
    it takes: checked before any data is made or read, as the Forecaster checks it at fit."""
    use_checkout()
    from tsfm import Forecaster
    from tsfm.errors import InputError
    from tsfm.forecaster_inputs import check_model_source

    try:
        Forecaster(model=name, **dict(keywords or {}))
        check_model_source(name)
    except (InputError, TypeError, ValueError) as err:
        fail(f"model {label or name}: {err}")


def _bounded_int(low: int, what: str) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be {what} (got {value})")
        return value

    parse.__name__ = "int"
    return parse


positive_int = _bounded_int(1, ">= 1")
"""argparse ``type=``: an integer >= 1 (argparse turns a bad one into one line and exit 2)."""
non_negative_int = _bounded_int(0, ">= 0")
"""argparse ``type=``: an integer >= 0."""


def existing_file(text: str) -> Path:
    """argparse ``type=``: a path to a file that exists (a results JSON to read)."""
    path = Path(text)
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{text} is not a file" if path.exists() else f"{text} does not exist")
    return path


def read_json(path: Path) -> Any:
    """A results JSON, or one error line (exit 2) when it cannot be read."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        fail(f"cannot read {path} as JSON: {err}")


def check_output(md_path: Path, with_json: bool = True) -> Path:
    """Exit 2 with one line unless the report (and its JSON beside it) can be written: each target a
    file or nothing yet (not a folder), in a folder that exists or can be made, and writable there.
    Called at the start, so an hours-long run does not end in a traceback."""
    md_path = Path(md_path)
    if with_json and md_path.suffix == ".json":
        fail(f"--output names the markdown report; its JSON goes beside it with the same stem: {md_path}")
    for target in [md_path] + ([md_path.with_suffix(".json")] if with_json else []):
        if target.is_dir():
            fail(f"cannot write the results to {target}: it is a folder")
        folder = Path(os.path.realpath(target)).parent
        while not folder.exists():
            folder = folder.parent
        if not folder.is_dir():
            fail(f"cannot write the results to {target}: {folder} is not a folder")
        try:  # the one sure test: make a file there (os.access says yes to root, even in /proc)
            tempfile.TemporaryFile(dir=folder).close()
        except OSError as err:
            fail(f"cannot write the results to {target}: cannot make a file in {folder} ({err.strerror})")
    return md_path


def output_path(parser: argparse.ArgumentParser, args: argparse.Namespace, name: str,
                ignore: Sequence[str] = ()) -> Path:
    """``args.output`` (checked), or the stored ``RESULTS_DIR/name`` for a run of the whole benchmark.

    A run with any option changed from its default (fewer tasks, smaller sizes, other models) covers
    only part of the benchmark: without ``--output`` it would replace the stored full result, so it is
    refused. ``ignore`` names options that change nothing measured (a work folder, say).
    """
    if args.output is None:
        changed = ["--" + dest.replace("_", "-") for dest, value in vars(args).items()
                   if dest != "output" and dest not in ignore and value != parser.get_default(dest)]
        if changed:
            fail(f"this run differs from the full benchmark ({', '.join(changed)}): name --output for it, "
                 f"so that it does not replace {(RESULTS_DIR / name).relative_to(REPO_ROOT)}")
        args.output = RESULTS_DIR / name
    return check_output(args.output)


def checkpoint_name(name: str) -> str:
    """The one checkpoint a model name stands for: a suite (``ttm``) is measured through its default
    variant, so every number of a run (size, export, parity, fine-tuning) is about the same weights."""
    from tsfm.hub import resolve

    return resolve(name).name
