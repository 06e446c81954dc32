"""Where ``tsfm forecast`` writes: output paths checked before any work, and a crash-safe writer.

The atomic temp-file + rename is only safe for a regular file (or nothing yet) at the path: a
rename over ``/dev/null``, a FIFO or a symlink would replace the node or the link itself. So:

- ``-`` is stdout; a FIFO, a character or block device or a socket is written through (opened
  and written in place, no temp file);
- a symlink is followed: the file it points to is replaced, the link stays;
- a regular file (or a new path) gets a temp file beside it that is renamed over it, with the
  old file's mode kept (a new file gets ``0o666 & ~umask``, like ``open`` would give it);
- a directory (also a path ending in ``/``), a path under a regular file, or a folder where no file
  can be created, is refused with one line before the model runs.

SIGTERM during the write removes the temp file, says so on stderr and exits 143; the old output
stays as it was. Standard library + typer only (imported on every ``tsfm`` call).
"""

from __future__ import annotations

import os
import signal
import stat
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

import typer

from tsfm.cli.common import fail

FLOAT_FORMAT = "%.7g"  # forecasts are float32: seven significant digits carry all of their precision


@dataclass(frozen=True)
class Target:
    """A checked output: ``kind`` is "stdout", "stream" (write through) or "file" (atomic replace)."""

    kind: str
    path: Path | None  # the resolved path (symlinks followed); None for stdout
    shown: str  # as the user typed it, for messages


def check_output(text: str | Path, option: str = "--output") -> Target:
    """Decide how ``text`` will be written, or exit 2 with one line (a directory, a path under a file,
    a folder where no file can be created)."""
    shown = str(text)
    if shown == "-":
        return Target("stdout", None, shown)
    example = "forecast.png" if option == "--plot" else "forecast.csv"
    if shown.endswith(("/", os.sep)) or shown == "":
        fail(f"{option} '{shown}' names a directory: give a file path, e.g. {Path(shown or '.') / example}")
    path = Path(os.path.realpath(os.path.expanduser(shown)))  # follows every symlink, also dangling ones
    if path.exists():
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            fail(f"{option} {shown} is a directory: give a file path, e.g. {Path(shown) / example}")
        if not stat.S_ISREG(mode):
            return Target("stream", path, shown)
        _check_writable(path.parent, option, shown)
        return Target("file", path, shown)
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                fail(f"{option} {shown} is under {parent}, which is a file, not a directory")
            _check_writable(parent, option, shown)
            break
    return Target("file", path, shown)


def check_output_folder(text: str | Path, option: str = "--output") -> Path:
    """A folder to write into (made if missing), or exit 2 with one line: a file there, or a place
    where nothing can be created."""
    path = Path(os.path.realpath(os.path.expanduser(str(text))))
    if path.exists() and not path.is_dir():
        fail(f"{option} {text} is a file: give a folder name")
    for folder in (path, *path.parents):
        if folder.exists():
            if not folder.is_dir():
                fail(f"{option} {text} is under {folder}, which is a file, not a directory")
            _check_writable(folder, option, str(text))
            break
    return path


def _check_writable(folder: Path, option: str, shown: str) -> None:
    """Exit 2 unless a file can be created in ``folder``: tried, since permission bits do not tell
    (root passes every ``os.access`` check; /proc or a read-only mount refuse anyway)."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".tsfm-probe-", dir=folder)
    except OSError as err:
        fail(f"{option} {shown}: cannot create files in {folder} ({err.strerror or err})")
    os.close(fd)
    os.unlink(probe)


def _umask() -> int:
    """The process umask (read by setting it and putting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class Interrupted(SystemExit):
    """Raised by the SIGTERM handler while the output is being written (exit code 128 + signal)."""


def _raise_interrupted(signum: int, frame) -> None:  # noqa: ARG001 - signal handler signature
    raise Interrupted(128 + signum)


def _write_frame(frame, handle) -> None:
    frame.to_csv(handle, index=False, float_format=FLOAT_FORMAT)


def write_output(frame, target: Target) -> None:
    """Write ``frame`` as CSV to a checked target (see the module docstring for what each kind gets)."""
    if target.kind == "stdout":
        _write_frame(frame, sys.stdout)
        return
    if target.kind == "stream":
        with open(target.path, "w", newline="") as handle:
            _write_frame(frame, handle)
        return
    write_atomically(frame, target.path, shown=target.shown)


def write_atomically(frame, output: Path, shown: str | None = None) -> None:
    """Write a CSV to a temporary file beside ``output`` and rename it over ``output``.

    ``output`` must be a regular file or a new path (``check_output`` decides). The old file's
    mode is kept (a new file gets ``0o666 & ~umask``); on SIGTERM, Ctrl-C or any error the temp
    file is removed and ``output`` is left as it was.
    """
    output = Path(output)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        fail(f"cannot create the folder {output.parent} for {shown or output}: {err.strerror or err}", code=1)
    try:
        mode = stat.S_IMODE(output.stat().st_mode)
    except FileNotFoundError:
        mode = 0o666 & ~_umask()
    in_main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _raise_interrupted) if in_main else None
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", newline="") as handle:
            _write_frame(frame, handle)
        os.replace(tmp, output)
        tmp = None
    except BaseException as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(err, (Interrupted, KeyboardInterrupt)):
            typer.echo(f"interrupted while writing {shown or output}: nothing written, the old file is unchanged",
                       err=True)
        if isinstance(err, OSError):  # a full disk, a folder that refuses files: the old file stays
            fail(f"cannot write {shown or output}: {err.strerror or err}; the old file is unchanged", code=1)
        raise
    finally:
        if in_main:
            signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
