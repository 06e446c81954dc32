"""What every ``tsfm`` verb shares: the one-line error exit and the note on a suite's chosen variant.

typer and the standard library only, so importing it keeps ``tsfm`` fast to start.
"""

from __future__ import annotations

import typer


def fail(message: str, code: int = 2) -> None:
    """One line on stderr and exit ``code`` (2: bad input)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def say_variant(forecaster, model: str) -> None:
    """When ``model`` is a suite (``ttm``), say on stderr which checkpoint the data chose."""
    chosen = getattr(forecaster, "model_name_", model)
    if chosen != model:
        typer.echo(f"model {chosen} (from suite {model}: median history {forecaster.history_length_:g} points)",
                   err=True)
