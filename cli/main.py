"""The ``tsfm`` command: forecast, models, pretrain (and the verbs later issues add).

Bad input ends with one line on stderr and exit code 2, never a traceback or a half-written file
(set ``TSFM_DEBUG=1`` to see the traceback of an unexpected error). Data goes to stdout only when
no ``--output`` is given; logs and progress go to stderr.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Optional

import typer

from tsfm.cli.common import fail, say_variant

FLOAT_FORMAT = "%.7g"  # forecasts are float32: seven significant digits carry all of their precision

app = typer.Typer(
    name="tsfm",
    help="Time-series forecasting foundation models: zero-shot forecasts from tiny pretrained models.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _split_list(text: Optional[str]) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()] if text else []


def _levels_to_quantiles(levels: list[str]) -> list[str]:
    """Nixtla-style ``--level 80,95`` -> quantile names 0.1/0.9, 0.025/0.975."""
    out = []
    for text in levels:
        try:
            level = float(text)
        except ValueError:
            fail(f"--level '{text}' is not a number: give coverage percentages like 80,95")
        if not 0 < level < 100:
            fail(f"--level {text} must be between 0 and 100 (a coverage percentage)")
        lo, hi = (100 - level) / 200, (100 + level) / 200
        out += [f"{round(lo, 6):g}", f"{round(hi, 6):g}"]
    return out


def write_atomically(frame, output: Path) -> None:
    """Write a CSV to a temporary file beside ``output`` and rename it into place."""
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".tmp", dir=output.parent)
    try:
        with os.fdopen(fd, "w", newline="") as handle:
            frame.to_csv(handle, index=False, float_format=FLOAT_FORMAT)
        os.replace(tmp, output)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@app.command()
def forecast(
    input: Path = typer.Argument(..., help="CSV (long: unique_id,ds,y or wide: one time column + one column per series)"),
    horizon: Optional[int] = typer.Option(None, "--horizon", "-h", help="Steps to forecast (default: from the frequency)"),
    model: str = typer.Option("ttm", "--model", "-m", help="Model name (see `tsfm models`), checkpoint directory, suite folder (suite.json) or exported .onnx file"),
    quantiles: str = typer.Option("0.1,0.5,0.9", "--quantiles", "-q", help="Quantile levels, e.g. 0.1,0.5,0.9"),
    level: Optional[str] = typer.Option(None, "--level", help="Prediction-interval coverages in %, e.g. 80,95"),
    freq: Optional[str] = typer.Option(None, "--freq", help="Pandas frequency alias, when it cannot be inferred"),
    id_col: Optional[str] = typer.Option(None, "--id-col", help="Series id column (long format)"),
    time_col: Optional[str] = typer.Option(None, "--time-col", help="Timestamp column"),
    target: Optional[list[str]] = typer.Option(None, "--target", help="Target column(s); repeat for several"),
    exog: Optional[list[str]] = typer.Option(None, "--exog", help="Covariate column(s) (past values); repeat for several"),
    future_exog: Optional[list[str]] = typer.Option(
        None, "--future-exog", help="Known-future covariate column(s); their next H values come from --future"
    ),
    future: Optional[Path] = typer.Option(
        None, "--future", help="CSV of known-future covariates for the next H steps (id, time, --future-exog columns)"
    ),
    context_length: Optional[int] = typer.Option(None, "--context-length", help="Use at most this many past points"),
    batch_size: int = typer.Option(256, "--batch-size", help="Windows per model call"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto"),
    fill: str = typer.Option("mask", "--fill", help="Gaps: mask (default), none, ffill, interpolate or zero"),
    nonnegative: Optional[bool] = typer.Option(
        None, "--nonnegative/--allow-negative",
        help="Floor every forecast at zero / never floor (default: floor series whose context has no negative value)",
    ),
    log_scale: Optional[str] = typer.Option(
        None, "--log-scale",
        help="Forecast in log space: seasonal (positive series of a seasonal frequency), positive or never "
             "(default: the model's choice; the ttm suite says seasonal, single checkpoints never)",
    ),
    num_threads: Optional[int] = typer.Option(None, "--num-threads", help="Torch threads"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output CSV (default: stdout)"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="Write a PNG of history + median + 80% band"),
) -> None:
    """Forecast every series in INPUT with a pretrained model (zero-shot: no training, no network)."""
    from tsfm.errors import InputError

    if horizon is not None and horizon < 1:
        fail("--horizon must be a positive integer")
    if context_length is not None and context_length < 1:
        fail("--context-length must be a positive integer")
    if fill not in ("mask", "none", "ffill", "interpolate", "zero"):
        fail(f"--fill '{fill}' is not one of mask, none, ffill, interpolate, zero")
    names = _split_list(quantiles) + (_levels_to_quantiles(_split_list(level)) if level else [])
    names = sorted(dict.fromkeys(names), key=lambda q: float(q) if q.replace(".", "", 1).isdigit() else -1)
    if not input.is_file():
        fail(f"input file '{input}' does not exist")
    if future is not None and not future.is_file():
        fail(f"--future file '{future}' does not exist")
    try:
        from tsfm.data.frames import read_table
        from tsfm.forecaster import Forecaster

        forecaster = Forecaster(
            model=model, horizon=horizon, quantiles=tuple(names), context_length=context_length, freq=freq,
            id_col=id_col, time_col=time_col, target=(target[0] if target and len(target) == 1 else target) or None,
            past_exog=exog or None, future_exog=future_exog or None, fill="mask" if fill == "none" else fill,
            nonnegative=nonnegative, log_scale=log_scale, device=device, batch_size=batch_size,
            num_threads=num_threads,
        )
        forecaster.fit(input)
        say_variant(forecaster, model)
        if horizon is None:
            typer.echo(f"horizon {forecaster.horizon_} (default for frequency {forecaster.freq_})", err=True)
        uses_covariates = bool(getattr(forecaster.model_.config, "num_exog_channels", 0))
        if (exog or future_exog or future) and not uses_covariates:
            typer.echo("note: the zero-shot model forecasts from the targets alone; covariates take effect "
                       "after `tsfm finetune` with --exog/--future-exog", err=True)
        x_future = read_table(future) if future is not None and uses_covariates else None
        result = forecaster.predict(X_future=x_future)
        if plot is not None:
            from tsfm.plotting import plot_forecast

            plot_forecast(forecaster, plot, h=forecaster.horizon_)
    except InputError as err:
        fail(str(err).splitlines()[0] if str(err) else "bad input")
    if output is None:
        result.to_csv(sys.stdout, index=False, float_format=FLOAT_FORMAT)
    else:
        write_atomically(result, output)
        typer.echo(f"wrote {len(result)} rows to {output}", err=True)


@app.command()
def evaluate(
    input: Path = typer.Argument(..., help="CSV with the full history of every series (long or wide)"),
    horizon: Optional[int] = typer.Option(None, "--horizon", "-h", help="Steps per backtest window"),
    n_windows: int = typer.Option(1, "--n-windows", help="Consecutive backtest windows at the end of each series"),
    model: str = typer.Option("ttm", "--model", "-m", help="Model name or checkpoint directory"),
    season: Optional[int] = typer.Option(None, "--season", help="Seasonal period of the MASE scale"),
    freq: Optional[str] = typer.Option(None, "--freq", help="Pandas frequency alias, when it cannot be inferred"),
    id_col: Optional[str] = typer.Option(None, "--id-col"),
    time_col: Optional[str] = typer.Option(None, "--time-col"),
    target: Optional[str] = typer.Option(None, "--target"),
) -> None:
    """Backtest on the last n-windows x horizon points: MASE, sMAPE (0-200), WQL, 10-90% coverage."""
    from tsfm.errors import InputError

    if not input.is_file():
        fail(f"input file '{input}' does not exist")
    if n_windows < 1 or (horizon is not None and horizon < 1):
        fail("--horizon and --n-windows must be positive integers")
    try:
        from tsfm.forecaster import Forecaster

        levels = tuple(round(0.1 * i, 1) for i in range(1, 10))
        forecaster = Forecaster(model=model, horizon=horizon, quantiles=levels, freq=freq, id_col=id_col,
                                time_col=time_col, target=target)
        scores = forecaster.evaluate(input, h=horizon, n_windows=n_windows, m=season)
    except InputError as err:
        fail(str(err).splitlines()[0] if str(err) else "bad input")
    for name, value in scores.items():
        typer.echo(f"{name}\t{value:.6g}")


@app.command()
def models() -> None:
    """List model families and the pretrained weights shipped with the package."""
    from tsfm.hub import WEIGHTS_DIR, load_suite, shipped_models
    from tsfm.models.registry import FAMILIES

    shipped = set(shipped_models())
    suites = {n: suite for n in sorted(shipped) if (suite := load_suite(n))}
    width = max(14, *(len(n) + 2 for n in shipped | set(FAMILIES)))
    indent = " " * (width + 10)
    typer.echo(f"{'name':<{width}}{'weights':<10}description")
    for name, family in FAMILIES.items():
        suite = suites.get(name)
        kind = "suite" if suite else "shipped" if name in shipped else "-"
        typer.echo(f"{name:<{width}}{kind:<10}{family.summary}")
        if suite:
            rule = ", ".join(f"{v} from {h} points" for v, h in suite.variants)
            typer.echo(f"{indent}picks a variant by median history length: {rule} (default {suite.default})")
            for freq, general, special in suite.by_frequency:
                typer.echo(f"{indent}{freq} data: {special} in place of {general}")
            if suite.log_scale != "never":
                typer.echo(f"{indent}forecasts in log space: {suite.log_scale} positive contexts (--log-scale)")
    roles = {special: f"; in suite {n}, stands in for {general} on {freq} data"
             for n, suite in suites.items() for freq, general, special in suite.by_frequency}
    for name in sorted(shipped - set(FAMILIES)):
        if name in suites:
            typer.echo(f"{name:<{width}}{'suite':<10}variants: {', '.join(v for v, _ in suites[name].variants)}")
            continue
        config = json.loads((WEIGHTS_DIR / name / "config.json").read_text())
        family = config["family"] + (f" of {' + '.join(config['labels'])}" if config.get("labels") else "")
        typer.echo(f"{name:<{width}}{'shipped':<10}{family} checkpoint: context {config['context_length']}, "
                   f"horizon {config['prediction_length']}{roles.get(name, '')}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def pretrain(ctx: typer.Context) -> None:
    """Pretrain with Hydra overrides, e.g. `tsfm pretrain experiment=smoke trainer.max_steps=100`."""
    # Re-execute as a module so Lightning's DDP re-launch (which re-runs the entry point) keeps
    # the subcommand and Hydra sees exactly the overrides.
    args = [sys.executable, "-m", "tsfm.train.pretrain", *ctx.args]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, args)


from tsfm.cli.export_cmd import export as export_command  # noqa: E402 - light: typer + pathlib only
from tsfm.cli.finetune_cmd import finetune as finetune_command  # noqa: E402 - light: typer + stdlib only

app.command(name="export")(export_command)
app.command(name="finetune")(finetune_command)


def main() -> None:
    """Console-script entry: unexpected errors become one line (TSFM_DEBUG=1 shows the traceback)."""
    try:
        app()
    except SystemExit:
        raise
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - last line of defence for users
        if os.environ.get("TSFM_DEBUG"):
            raise
        from tsfm.errors import InputError

        code = 2 if isinstance(err, InputError) else 1
        typer.echo(f"error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}", err=True)
        sys.exit(code)


if __name__ == "__main__":
    main()
