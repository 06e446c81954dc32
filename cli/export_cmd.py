"""``tsfm export``: a model as one ``.onnx`` file for numpy + onnxruntime (optionally int8).

Registered in ``cli/main.py`` with ``app.command(name="export")(export)``. Bad input ends with
one line on stderr and exit code 2; the file appears only when the export succeeded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from tsfm.cli.common import fail


def default_output(model: str, quantize: str) -> Path:
    """``ttm.onnx`` / ``ttm-int8.onnx`` (from a directory's name for checkpoints) in the current directory."""
    stem = Path(model.rstrip("/\\")).name or "model"
    suffix = "" if quantize in ("none", "fp32") else ("-int8-static" if quantize == "int8-static" else "-int8")
    return Path(f"{stem}{suffix}.onnx")


def export(
    model: str = typer.Option("ttm", "--model", "-m", help="Model name (see `tsfm models`) or checkpoint directory"),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Output .onnx file (default: <model>.onnx or <model>-int8.onnx here)"),
    quantize: str = typer.Option(
        "none", "--quantize", "-q",
        help="none, int8 (= int8-dynamic: 3.4x smaller, accuracy kept) or int8-static (QDQ, calibrated)"),
    target: str = typer.Option(
        "x86", "--target", help="CPU of the int8 file: x86 (AVX2 without VNNI; safe default), x86-vnni or arm"),
    context_length: Optional[int] = typer.Option(
        None, "--context-length", help="History steps the file takes (default and maximum: the model's)"),
    horizon: Optional[int] = typer.Option(
        None, "--horizon", "-h",
        help="Steps to forecast: shorter than the model's is cut in the graph, longer is rolled out by the runtime"),
    calibration_series: int = typer.Option(
        128, "--calibration-series", help="Synthetic series that calibrate int8-static activations"),
    seed: int = typer.Option(0, "--seed", help="Seed of the calibration series"),
) -> None:
    """Export a model to ONNX (one file; batch and channels dynamic) for `runtime.py` on any device."""
    from tsfm.errors import InputError

    if context_length is not None and context_length < 1:
        fail("--context-length must be a positive integer")
    if horizon is not None and horizon < 1:
        fail("--horizon must be a positive integer")
    if calibration_series < 1:
        fail("--calibration-series must be a positive integer")
    output = output or default_output(model, quantize)
    if output.is_dir():
        fail(f"--output '{output}' is a directory: give a file name such as {output / 'model.onnx'}")
    try:
        from tsfm.export.onnx_export import export_onnx
        from tsfm.export.runtime import __file__ as runtime_file
        from tsfm.export.runtime import load
        from tsfm.hub import load_suite

        suite = load_suite(model)
        if suite is not None:
            typer.echo(f"model {suite.default} (the default of suite {model}; export another variant by its name)",
                       err=True)
        path = export_onnx(
            model, output, context_length=context_length, horizon=horizon, quantize=quantize, target=target,
            calibration_series=calibration_series, seed=seed, log=lambda line: typer.echo(line, err=True),
        )
    except InputError as err:
        fail(str(err).splitlines()[0] if str(err) else "bad input")
    edge = load(path)
    typer.echo(
        f"{path}: context {edge.context_length}, horizon {edge.default_horizon}"
        f"{'' if edge.default_horizon == edge.horizon else f' ({edge.horizon} per run, rolled out)'}, "
        f"quantiles {','.join(f'{q:g}' for q in edge.quantiles)}, quantization {edge.quantization}; "
        f"serve it with numpy + onnxruntime only by copying {Path(runtime_file)} next to it",
        err=True,
    )
