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
    from tsfm.hub import load_suite

    chosen = getattr(forecaster, "model_name_", model)
    if chosen != model:
        suite = load_suite(model)
        freq = forecaster.series_.freq_info.name
        special = suite is not None and any(f == freq and suite.locate(v) == chosen for f, _, v in suite.by_frequency)
        from tsfm.inference import log_scale_applies

        mode = forecaster._log_scale_mode()
        log_note = (f"; positive contexts in log space, --log-scale {mode}"
                    if log_scale_applies(mode, forecaster.series_.freq_info.season) else "")
        typer.echo(f"model {chosen} (from suite {model}: median history {forecaster.history_length_:g} points"
                   f"{f', {freq} data' if special else ''}{log_note})", err=True)
