"""Where ``tsfm forecast`` writes: output paths checked before any work, and a crash-safe writer.

The atomic temp-file + rename is only safe for a regular file (or nothing yet) at the path: a
rename over ``/dev/null``, a FIFO or a symlink would replace the node or the link itself. So:

- ``-`` (and ``/dev/stdout``, whose reopening would truncate a file the shell appends to) is the
  open stdout; a FIFO, a character or block device or a socket (``/dev/stderr``, ``>(gzip)``) is
  written through (opened and written in place, no temp file);
- a symlink is followed: the file it points to is replaced, the link stays;
- a regular file (or a new path) gets a temp file beside it that is renamed over it, with the
  old file's mode kept (``tsfm.atomic.replace_file``);
- a directory (also a path ending in ``/``), a path under a regular file, a read-only file, or a
  folder where no file can be created, is refused with one line before the model runs.

SIGTERM during the write removes the temp file, says so on stderr and exits 143; the old output
stays as it was. Standard library, typer and ``tsfm.atomic`` only (imported on every ``tsfm`` call).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import typer

from tsfm.atomic import replace_file, written_through
from tsfm.cli.common import fail

STDOUT_NAMES = ("-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")  # written to the open stdout
# what a forecast file's name asks for (CSV otherwise): pandas' compressions, Parquet, and formats refused
COMPRESSIONS = {".gz": "gzip", ".bz2": "bz2", ".xz": "xz", ".zip": "zip"}
PARQUET_SUFFIXES = (".parquet", ".pq")
OTHER_FORMATS = (".json", ".jsonl", ".xlsx", ".xls", ".feather", ".arrow", ".orc", ".zst")


@dataclass(frozen=True)
class Target:
    """A checked output: ``kind`` is "stdout", "stream" (write through) or "file" (atomic replace)."""

    kind: str
    path: Path | None  # the resolved path (symlinks followed); None for stdout
    shown: str  # as the user typed it, for messages
    format: str = "csv"  # "csv", "parquet", or a compression of CSV ("gzip", "bz2", "xz", "zip"), from the name


def check_output(text: str | Path, option: str = "--output") -> Target:
    """Decide how ``text`` will be written, or exit 2 with one line (a directory, a path under a file,
    a folder where no file can be created)."""
    shown = str(text)
    if shown in STDOUT_NAMES:  # reopening /dev/stdout would truncate a file the shell appends to (>>)
        return Target("stdout", None, shown)
    if not shown:
        fail(f"{option} is empty: give a file path, or - for stdout")
    example = "forecast.png" if option == "--plot" else "forecast.csv"
    if shown.endswith(("/", os.sep)):
        fail(f"{option} {shown} names a directory: give a file path, e.g. {Path(shown) / example}")
    given = os.path.expanduser(shown)
    if os.path.isdir(given):
        fail(f"{option} {shown} is a directory: give a file path, e.g. {Path(shown) / example}")
    suffix = Path(shown).suffix.lower()
    form = "csv" if option == "--plot" else "parquet" if suffix in PARQUET_SUFFIXES else COMPRESSIONS.get(suffix, "csv")
    if option != "--plot" and suffix in OTHER_FORMATS:
        fail(f"{option} {shown}: forecasts are written as CSV (.csv, also compressed: .gz, .bz2, .xz, .zip) or "
             "Parquet (.parquet)")
    if written_through(given):
        return Target("stream", Path(given), shown, form)
    path = Path(os.path.realpath(given))  # follows every symlink, also dangling ones
    _check_writable(_nearest_existing_dir(path.parent, option, shown), option, shown)
    if path.is_file() and not os.access(path, os.W_OK):  # as `>` refuses it (root may write anything)
        fail(f"{option} {shown} is read-only: make it writable or choose another path")
    return Target("file", path, shown, form)


def check_output_folder(text: str | Path, option: str = "--output") -> Path:
    """A folder to write (made by the writer, next to its parent's other entries), or exit 2 with one
    line: a file there, the current folder or one above it, or a parent where nothing can be created."""
    if str(text) == "-":
        fail(f"{option} -: a folder cannot be written to stdout: give a folder name")
    path = Path(os.path.realpath(os.path.expanduser(str(text))))
    if path.exists() and not path.is_dir():
        fail(f"{option} {text} is a file: give a folder name")
    if path == Path.cwd().resolve() or path in Path.cwd().resolve().parents:
        fail(f"{option} {text} is the current folder or holds it: give a new folder name")
    _check_writable(_nearest_existing_dir(path.parent, option, str(text)), option, str(text))
    return path


def _nearest_existing_dir(path: Path, option: str, shown: str) -> Path:
    """``path`` or its nearest existing ancestor (missing folders are made when the file is
    written); exit 2 if that is a file."""
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                fail(f"{option} {shown} is under {folder}, which is a file, not a directory")
            return folder
    return Path(path.anchor or ".")


def _check_writable(folder: Path, option: str, shown: str) -> None:
    """Exit 2 unless a file can be created in ``folder``: tried, since permission bits do not tell
    (root passes every ``os.access`` check; /proc or a read-only mount refuse anyway)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".tsfm-probe-", dir=folder)
    except OSError as err:
        fail(f"{option} {shown}: cannot create files in {folder} ({err.strerror or err})")
    os.close(fd)
    os.unlink(probe)


class Interrupted(SystemExit):
    """Raised by the SIGTERM handler while the output is being written (exit code 128 + signal)."""


def _raise_interrupted(signum: int, frame) -> None:  # noqa: ARG001 - signal handler signature
    raise Interrupted(128 + signum)


def csv_ready(frame):
    """``frame`` with its float columns as text: the shortest decimal that reads back as the same
    float32 (the forecasts are float32), or float64 for a column beyond float32's range. pyarrow
    formats them ten times faster than pandas' ``float_format``, which at a fixed seven digits also
    rounded 123456792 to 123456800."""
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc

    def as_text(column) -> pd.api.extensions.ExtensionArray:
        values = column.to_numpy(dtype="float64", na_value=np.nan)
        if np.nanmax(np.abs(values), initial=0.0, where=np.isfinite(values)) <= np.finfo(np.float32).max:
            values = values.astype(np.float32)
        return pd.array(pc.cast(pa.array(values, from_pandas=True), pa.string()), dtype="string[pyarrow]")

    floats = [name for name, dtype in frame.dtypes.items() if pd.api.types.is_float_dtype(dtype)]
    return frame.assign(**{name: as_text(frame[name]) for name in floats}) if floats else frame


def _write_frame(frame, handle) -> None:
    csv_ready(frame).to_csv(handle, index=False)


def write_output(frame, target: Target | None) -> None:
    """Write ``frame`` to a checked target (None: stdout) in the format its name asks for (see the
    module docstring for what each kind of target gets)."""
    if target is None or target.kind == "stdout":
        _write_frame(frame, sys.stdout)
        return
    write_atomically(frame, target.path, shown=target.shown, form=target.format)  # a stream is written through


def write_atomically(frame, output: Path, shown: str | None = None, form: str = "csv") -> None:
    """Write a CSV (or ``form``: Parquet, compressed CSV) to a temporary file beside ``output`` and
    rename it over ``output`` (``tsfm.atomic.replace_file``: the old file's mode is kept; a FIFO or
    device is written through).

    On SIGTERM, Ctrl-C or any error the temp file is removed and ``output`` is left as it was.
    """
    def write(path: str) -> None:
        if form == "parquet":
            frame.to_parquet(path, index=False)
        elif form != "csv":  # the temporary name says nothing: the method is given, and a zip's member named
            member = Path(output).stem if Path(Path(output).stem).suffix else f"{Path(output).stem}.csv"
            method = {"method": form, **({"archive_name": member} if form == "zip" else {})}
            csv_ready(frame).to_csv(path, index=False, compression=method)
        else:
            with open(path, "w", newline="") as handle:
                _write_frame(frame, handle)

    try:
        with interruptible(shown or str(output)):
            replace_file(output, write)
    except OSError as err:  # a full disk, a folder that refuses files: nothing is replaced
        fail(f"cannot write {shown or output}: {err.strerror or err}", code=1)


@contextlib.contextmanager
def interruptible(shown: str) -> Iterator[None]:
    """SIGTERM raises ``Interrupted`` inside the block (as Ctrl-C raises KeyboardInterrupt), so that an
    atomic write removes its temporary file; either is said in one line and passed on."""
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupted) if in_main else None
    try:
        yield
    except (Interrupted, KeyboardInterrupt):
        typer.echo(f"interrupted while writing {shown}: nothing was replaced", err=True)
        raise
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
