"""``tsfm finetune``: few-shot fine-tuning of a pretrained model on a CSV, saved as a checkpoint directory.

Registered in ``cli/main.py`` with ``app.command()(finetune)``. The directory it writes is a normal
checkpoint (config.json + model.safetensors + README.md card) plus ``forecaster.json`` (the
Forecaster's parameters, covariate roles included) and ``finetune.json`` (the run report), so
``tsfm forecast DATA.csv --model DIR`` and ``Forecaster(model=DIR)`` use it directly. The
directory appears only when everything succeeded (written beside it, then renamed).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path

import typer

from tsfm.atomic import replace_folder
from tsfm.cli.common import fail, fail_on_input, readable_input, say_variant


def _check_output_dir(output_dir: Path, overwrite: bool, input: Path) -> None:
    """Refuse, before any training, a folder that cannot be written or must not be replaced:
    ``--overwrite`` replaces only a checkpoint folder, never the current folder, one above it, or
    one holding the input."""
    if output_dir.exists() and not output_dir.is_dir():
        fail(f"--output-dir '{output_dir}' is a file: give a directory path")
    target, here = output_dir.resolve(), Path.cwd().resolve()
    if target == here or target in here.parents:
        fail(f"--output-dir '{output_dir}' is the current folder or holds it: give a new folder for the checkpoint")
    if target in input.resolve().parents:
        fail(f"--output-dir '{output_dir}' holds the input file {input}: give a new folder for the checkpoint")
    existing = next(p for p in target.parents if p.exists())  # where the new folder is written, then renamed
    if not existing.is_dir():
        fail(f"--output-dir '{output_dir}': '{existing}' is a file, so no folder can be made there")
    try:  # a folder made and removed now, rather than a failure after the training
        os.rmdir(tempfile.mkdtemp(prefix=".tsfm-probe.", dir=existing))
    except OSError as err:
        fail(f"--output-dir '{output_dir}': cannot write in '{existing}' ({err.strerror})")
    if output_dir.is_dir() and any(output_dir.iterdir()):
        if not overwrite:
            fail(f"--output-dir '{output_dir}' already exists and is not empty: choose another or pass --overwrite")
        from tsfm.hub import is_checkpoint_folder  # here: torch is not imported before the options are good

        if not is_checkpoint_folder(output_dir):
            fail(f"--output-dir '{output_dir}' is not a checkpoint folder tsfm wrote: --overwrite replaces only "
                 "those; give a new folder")


def _save(forecaster, output_dir: Path) -> None:
    """Write the checkpoint into a temporary sibling folder and move it into place (``_check_output_dir``
    decided before the training that the folder there may be replaced)."""

    def write(folder: Path) -> None:
        forecaster.save(folder)
        (folder / "finetune.json").write_text(json.dumps(forecaster.finetune_report_.to_dict(), indent=2) + "\n")

    replace_folder(output_dir, write)


def finetune(
    input: Path = typer.Argument(
        ..., help="CSV (long or wide, as for `tsfm forecast`; '-': stdin): the history to adapt to"),
    output_dir: Path = typer.Option(..., "--output-dir", "-o", help="Checkpoint directory to write"),
    model: str = typer.Option("ttm", "--model", "-m", help="Model name (see `tsfm models`) or checkpoint directory"),
    horizon: int | None = typer.Option(None, "--horizon", "-H", help="Steps to forecast (default: from the frequency)"),
    fraction: float = typer.Option(0.1, "--fraction", help="Share of each series' training windows (the last ones)"),
    mode: str = typer.Option("head", "--mode", help="head (backbone frozen), decoder, or full"),
    exog: list[str] | None = typer.Option(None, "--exog", help="Past covariate column(s); repeat for several"),
    future_exog: list[str] | None = typer.Option(
        None, "--future-exog", help="Known-future covariate column(s) (forecast needs --future); repeat for several"
    ),
    max_epochs: int = typer.Option(20, "--max-epochs", help="Most epochs (early stopping usually ends sooner)"),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Most optimizer steps"),
    val_size: int | None = typer.Option(None, "--val-size", help="Points per series held out for validation"),
    learning_rate: float | None = typer.Option(None, "--learning-rate", "--lr", help="Default: per mode"),
    batch_size: int = typer.Option(64, "--batch-size", help="Windows per step"),
    patience: int = typer.Option(3, "--patience", help="Epochs without validation improvement before stopping"),
    freq: str | None = typer.Option(None, "--freq", help="Pandas frequency alias, when it cannot be inferred"),
    id_col: str | None = typer.Option(None, "--id-col", help="Series id column (long format)"),
    time_col: str | None = typer.Option(None, "--time-col", help="Timestamp column"),
    target: list[str] | None = typer.Option(None, "--target", help="Target column(s); repeat for several"),
    context_length: int | None = typer.Option(None, "--context-length", help="Use at most this many past points"),
    fill: str = typer.Option("mask", "--fill", help="Gaps: mask (default), none, ffill, interpolate or zero"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto"),
    num_threads: int | None = typer.Option(None, "--num-threads", help="Torch threads"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --output-dir"),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar"),
) -> None:
    """Few-shot fine-tune a pretrained model on INPUT and save it for `tsfm forecast --model DIR`."""
    from tsfm.errors import InputError
    from tsfm.train.numerics import flush_denormals

    if horizon is not None and horizon < 1:
        fail("--horizon must be a positive integer")
    if fill not in ("mask", "none", "ffill", "interpolate", "zero"):
        fail(f"--fill '{fill}' is not one of mask, none, ffill, interpolate, zero")
    _check_output_dir(output_dir, overwrite, input)
    read = readable_input(input)  # stdin is read only once the options are known to be good
    flush_denormals()  # before torch starts its threads, so that they all inherit it (a CLI run owns its process)
    try:
        from tsfm.forecaster import Forecaster

        forecaster = Forecaster(
            model=model, horizon=horizon, context_length=context_length, freq=freq, id_col=id_col,
            time_col=time_col, target=(target[0] if target and len(target) == 1 else target) or None,
            past_exog=exog or None, future_exog=future_exog or None, fill="mask" if fill == "none" else fill,
            device=device, num_threads=num_threads,
        )
        forecaster.finetune(
            read, fraction=fraction, mode=mode, max_epochs=max_epochs, max_steps=max_steps, val_size=val_size,
            learning_rate=learning_rate, batch_size=batch_size, patience=patience, progress=not quiet,
        )
        say_variant(forecaster)
        if quiet:
            typer.echo(forecaster.finetune_report_.summary(), err=True)
        _save(forecaster, output_dir)
    except InputError as err:
        fail_on_input(err, read, str(input))
    extra = " --future FUTURE.csv" if future_exog else ""
    data = "DATA.csv" if str(input) == "-" else input
    typer.echo(f"saved checkpoint to {output_dir} (forecast with: tsfm forecast {data} --model {output_dir}{extra})",
               err=True)
    sys.stderr.flush()
