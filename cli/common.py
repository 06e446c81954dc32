"""What every ``tsfm`` verb shares: the one-line error exit and the note on a suite's chosen variant.

typer and the standard library only, so importing it keeps ``tsfm`` fast to start.
"""

from __future__ import annotations

import typer


def fail(message: str, code: int = 2) -> None:
    """One line on stderr and exit ``code`` (2: bad input)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def say_variant(forecaster) -> None:
    """Say on stderr which checkpoint a suite (``ttm``) chose and why, and how integer steps were read."""
    if forecaster.plan_.reason:
        typer.echo(forecaster.plan_.reason, err=True)
