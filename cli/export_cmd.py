"""``tsfm export``: a model as one ``.onnx`` file, or a suite as a folder of them, for numpy + onnxruntime.

Registered in ``cli/main.py`` with ``app.command(name="export")(export)``. Bad input ends with
one line on stderr and exit code 2; the file appears only when the export succeeded. ``-o`` is
written as ``tsfm forecast -o`` writes (``-`` is stdout; pipes and devices are written through).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import typer

from tsfm.cli.common import fail
from tsfm.cli.output import check_output, check_output_folder


def default_output(model: str, quantize: str, suite: bool = False) -> Path:
    """``ttm-512.onnx`` / ``ttm-512-int8.onnx`` (from a directory's name for checkpoints), or for a suite
    the folder ``ttm-edge`` / ``ttm-int8-edge``, in the current directory."""
    stem = Path(model.rstrip("/\\")).name or "model"
    suffix = "" if quantize in ("none", "fp32") else ("-int8-static" if quantize == "int8-static" else "-int8")
    return Path(f"{stem}{suffix}-edge") if suite else Path(f"{stem}{suffix}.onnx")


def export(
    model: str = typer.Option("ttm", "--model", "-m", help="Model name (see `tsfm models`) or checkpoint directory"),
    output: Path | None = typer.Option(
        None, "--output", "-o",
        help="Output .onnx file, or folder for a suite (default: <model>.onnx, <model>-int8.onnx, <suite>-edge, "
             "<suite>-int8-edge here)"),
    quantize: str = typer.Option(
        "none", "--quantize", "-q",
        help="none, int8 (= int8-dynamic: 3.4x smaller, accuracy kept) or int8-static (QDQ, calibrated)"),
    target: str | None = typer.Option(
        None, "--target", help="CPU of the int8 file: x86 (AVX2 without VNNI; the default), x86-vnni or arm"),
    context_length: int | None = typer.Option(
        None, "--context-length", help="History steps the file takes (default and maximum: the model's)"),
    horizon: int | None = typer.Option(
        None, "--horizon", "-H",
        help="Steps to forecast: shorter than the model's is cut in the graph, longer is rolled out by the runtime"),
    calibration_series: int = typer.Option(
        128, "--calibration-series", help="Synthetic series that calibrate int8-static activations"),
    seed: int = typer.Option(0, "--seed", help="Seed of the calibration series"),
) -> None:
    """Export a model to ONNX (one file; batch and channels dynamic), or a suite to a folder, for tsfm_runtime."""
    from tsfm.errors import InputError

    if context_length is not None and context_length < 1:
        fail("--context-length must be a positive integer")
    if horizon is not None and horizon < 1:
        fail("--horizon must be a positive integer")
    if calibration_series < 1:
        fail("--calibration-series must be a positive integer")
    if target is not None and quantize.lower() in ("none", "fp32", ""):
        fail(f"--target {target} chooses the kernels of an int8 file: add --quantize int8 "
             "(a float32 file runs on any CPU)")
    target = target or "x86"
    if model.lower().endswith(".onnx"):
        fail(f"--model {model} is already an exported graph: export the checkpoint it came from")
    try:
        from tsfm.export.onnx_export import export_onnx, export_suite
        from tsfm.hub import load_suite

        suite = load_suite(model)
        output = output or default_output(model, quantize, suite is not None)
        say = lambda line: typer.echo(line, err=True)  # noqa: E731
        if suite is not None:
            if context_length is not None or horizon is not None:
                fail(f"--context-length and --horizon apply to one checkpoint; suite {model} exports every checkpoint "
                     "whole (export one by its name to cut it)")
            if output.suffix.lower() == ".onnx":
                fail(f"suite {model} exports to a folder (one .onnx per checkpoint and its suite.json): "
                     f"give a folder name such as {output.with_suffix('')}-edge")
            path = export_suite(model, check_output_folder(output), quantize=quantize, target=target,
                                calibration_series=calibration_series, seed=seed, log=say)
        else:
            if output.is_dir():
                fail(f"--output '{output}' is a directory: give a file name such as {output / 'model.onnx'}")
            written = check_output(output)
            if written.kind == "file" and output.suffix.lower() != ".onnx":
                fail(f"--output '{output}': an exported model is a .onnx file, e.g. {output.with_suffix('.onnx')}")
            with tempfile.TemporaryDirectory(prefix="tsfm-export-") as tmp:
                to_stdout = written.kind == "stdout"
                path = export_onnx(model, Path(tmp) / "model.onnx" if to_stdout else written.path,
                                   context_length=context_length, horizon=horizon, quantize=quantize, target=target,
                                   calibration_series=calibration_series, seed=seed, log=say)
                if to_stdout:
                    stdout = typer.get_binary_stream("stdout")
                    stdout.write(path.read_bytes())
                    stdout.flush()
    except InputError as err:
        fail(str(err).splitlines()[0] if str(err) else "bad input")
    except OSError as err:  # a full disk, a pipe whose reader went away: one line, nothing half-written kept
        fail(f"cannot write {output}: {err.strerror or err}", code=1)
    if suite is None and written.kind != "file":
        typer.echo(f"{output}: written to {'stdout' if written.kind == 'stdout' else 'a pipe or device'}", err=True)
        return
    import tsfm_runtime

    edge = tsfm_runtime.load(path)
    where = Path(tsfm_runtime.__file__).parent
    if suite is not None:
        typer.echo(f"{path}/: suite {model} ({', '.join(edge.spec.checkpoints())}), chosen per dataset as "
                   f"`tsfm forecast --model {model}` chooses; serve it with numpy + onnxruntime only: "
                   f"tsfm_runtime.load('{path}') (copy {where} to the device)", err=True)
        return
    horizon = (f"horizon {edge.horizon} per run (by default the frequency's horizon)" if edge.default_horizon is None
               else f"horizon {edge.default_horizon}"
               + ("" if edge.default_horizon == edge.horizon else f" ({edge.horizon} per run, rolled out)"))
    typer.echo(
        f"{path}: context {edge.context_length}, {horizon}, "
        f"quantiles {','.join(f'{q:g}' for q in edge.quantiles)}, quantization {edge.quantization}; "
        f"serve it with numpy + onnxruntime only: tsfm_runtime.load('{path}') (copy {where} to the device)",
        err=True,
    )
