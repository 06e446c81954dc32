"""What every ``tsfm`` verb shares: the one-line error exit, the INPUT argument read from a file,
stdin or a pipe, and the note on a suite's chosen variant.

typer and the standard library only, so importing it keeps ``tsfm`` fast to start.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer


def fail(message: str, code: int = 2) -> None:
    """One line on stderr and exit ``code`` (2: bad input)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def say_variant(forecaster) -> None:
    """Say on stderr which checkpoint a suite (``ttm``) chose and why, and how integer steps were read."""
    if forecaster.plan_.reason:
        typer.echo(forecaster.plan_.reason, err=True)


def _stream_to_file(source: Path | None = None) -> Path:
    """stdin (the input ``-``) or a pipe such as ``<(zcat x.gz)`` copied to a temporary file, so it is
    read like any CSV (sniffed, re-read for its header); the copy is removed at exit."""
    import atexit
    import shutil
    import tempfile

    fd, name = tempfile.mkstemp(prefix="tsfm-stdin-", suffix=".csv")
    atexit.register(lambda: Path(name).unlink(missing_ok=True))
    with os.fdopen(fd, "wb") as handle:
        if source is None:
            shutil.copyfileobj(sys.stdin.buffer, handle)
        else:
            with open(source, "rb") as stream:
                shutil.copyfileobj(stream, handle)
    return Path(name)


def readable_input(input: Path) -> Path:
    """The file to read for the INPUT argument: ``-`` (stdin) and pipes are copied to a temporary
    file; a directory or a missing path exits 2 with one line."""
    if str(input) == "-":
        return _stream_to_file()
    if input.exists() and not input.is_file() and not input.is_dir():  # a FIFO or /dev/fd/N
        return _stream_to_file(input)
    if not input.is_file():
        fail(f"input file '{input}' {'is a directory' if input.is_dir() else 'does not exist'}")
    return input


def fail_on_input(err: Exception, read: Path, given: str) -> None:
    """Exit 2 with the first line of ``err``, naming the input as the user gave it (``stdin``, not
    the temporary copy that was read)."""
    text = str(err).splitlines()[0] if str(err) else "bad input"
    fail(text.replace(str(read), "stdin" if given == "-" else given))
