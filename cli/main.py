"""The ``tsfm`` command: forecast, models, pretrain (and the verbs later issues add).

Bad input ends with one line on stderr and exit code 2, never a traceback or a half-written file
(set ``TSFM_DEBUG=1`` to see the traceback of an unexpected error). Data goes to stdout only when
no ``--output`` is given; logs and progress go to stderr.
"""

from __future__ import annotations

import os
import sys
import warnings
from pathlib import Path

import typer

from tsfm.cli.common import fail, fail_on_input, readable_input, say_variant
from tsfm.cli.output import check_output, interruptible, write_atomically, write_output  # noqa: F401

MAX_HORIZON = 10_000  # tsfm.forecaster_inputs.MAX_HORIZON (kept here so that checking it imports nothing heavy)
PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")

app = typer.Typer(
    name="tsfm",
    help="Time-series forecasting foundation models: zero-shot forecasts from tiny pretrained models.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(asked: bool) -> None:
    if asked:
        from tsfm import __version__

        typer.echo(f"tsfm {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")) -> None:
    """Time-series forecasting foundation models: zero-shot forecasts from tiny pretrained models."""


def default_threads() -> int:
    """Threads when ``--num-threads`` is not given: ``OMP_NUM_THREADS`` if set, else the CPUs this
    process may run on (its affinity mask, so a pinned or containerised run does not oversubscribe)."""
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    if text.isdigit() and int(text) > 0:
        return int(text)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def _check_horizon(horizon: int | None) -> None:
    if horizon is not None and horizon < 1:
        fail("--horizon must be a positive integer")
    if horizon is not None and horizon > MAX_HORIZON:
        fail(f"--horizon {horizon} is above the limit of {MAX_HORIZON} steps: past the model's own horizon "
             "each step is forecast from earlier forecasts, so time grows with H and accuracy fades; "
             "forecast a coarser frequency instead")


def _split_list(texts: str | list[str] | None) -> list[str]:
    """Comma lists, from one option or from the option repeated (``-q 0.1 -q 0.9``)."""
    texts = [texts] if isinstance(texts, str) else texts or []
    return [part.strip() for text in texts for part in text.split(",") if part.strip()]


def _one_per_level(names: list[str]) -> list[str]:
    """The first spelling of each level (``-q 0.10 --level 80`` asks for 0.1 once)."""
    unique: dict[object, str] = {}
    for name in names:
        try:
            unique.setdefault(float(name), name)
        except ValueError:
            unique.setdefault(name, name)  # the Forecaster names what is wrong with it
    return list(unique.values())


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


@app.command()
def forecast(
    input: Path = typer.Argument(
        ..., help="CSV (long: unique_id,ds,y; wide: one time column + one column per series; or numbers "
                  "alone, one column per series, each row the next step)"),
    horizon: int | None = typer.Option(
        None, "--horizon", "-H", help=f"Steps to forecast, at most {MAX_HORIZON} (default: from the frequency; "
        "for an .onnx exported with --horizon, that horizon)"
    ),
    model: str = typer.Option(
        "ttm", "--model", "-m",
        help="Model name (see `tsfm models`), checkpoint directory, suite folder (suite.json) or exported .onnx file"),
    quantiles: list[str] | None = typer.Option(
        None, "--quantiles", "-q",
        help="Quantile levels, e.g. 0.1,0.5,0.9 (the default), or repeated; within the model's range (0.1-0.9 "
             "for the shipped models)",
    ),
    level: list[str] | None = typer.Option(
        None, "--level",
        help="Prediction-interval coverages in %, e.g. 50,80, or repeated; at most 80 for the shipped models "
             "(quantiles 0.1-0.9)",
    ),
    freq: str | None = typer.Option(None, "--freq", help="Pandas frequency alias, when it cannot be inferred"),
    id_col: str | None = typer.Option(None, "--id-col", help="Series id column (long format)"),
    time_col: str | None = typer.Option(None, "--time-col", help="Timestamp column"),
    target: list[str] | None = typer.Option(None, "--target", help="Target column(s); repeat for several"),
    multivariate: bool = typer.Option(
        False, "--multivariate",
        help="Read the series as the channels of one item, which a model that mixes channels (itransformer, s-mamba, "
             "moirai-moe) reads together; they must share their time stamps (default: each series alone)"),
    exog: list[str] | None = typer.Option(None, "--exog", help="Covariate column(s) (past values); repeat for several"),
    future_exog: list[str] | None = typer.Option(
        None, "--future-exog", help="Known-future covariate column(s); their next H values come from --future"
    ),
    future: Path | None = typer.Option(
        None, "--future", help="CSV of known-future covariates for the next H steps (id, time, --future-exog columns)"
    ),
    context_length: int | None = typer.Option(None, "--context-length", help="Use at most this many past points"),
    batch_size: int = typer.Option(256, "--batch-size", help="Windows per model call"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto"),
    fill: str = typer.Option("mask", "--fill", help="Gaps: mask (default), none, ffill, interpolate or zero"),
    nonnegative: bool | None = typer.Option(
        None, "--nonnegative/--allow-negative",
        help="Floor every forecast at zero / never floor (default: floor series whose context has no negative value)",
    ),
    log_scale: str | None = typer.Option(
        None, "--log-scale",
        help="Forecast in log space: seasonal (positive series of a seasonal frequency), positive or never "
             "(default: the model's choice; single checkpoints never)",
    ),
    calibration_windows: int | None = typer.Option(
        None, "--calibration-windows",
        help="Backtests of the horizon inside each history that calibrate the intervals (conformal); 0: none "
             "(default: the model's choice; the ttm suite says 3, single checkpoints 0; --ensemble auto: none by "
             "default, any positive value calibrates it leave-one-window-out over its own backtests)",
    ),
    seasonal_adjustment: bool | None = typer.Option(
        None, "--seasonal-adjustment/--no-seasonal-adjustment",
        help="Show seasonal series to the network divided by their classical seasonal indices, then multiply them "
             "back (strictly positive series of 3+ seasons that test seasonal; default: the model's choice; the ttm "
             "suite adjusts, single checkpoints do not)",
    ),
    ensemble: str | None = typer.Option(
        None, "--ensemble",
        help="auto: combine the ttm suite, moirai-moe and statsforecast's AutoARIMA, AutoTheta, AutoETS and "
             "SeasonalNaive with per-quantile weights fitted on backtests of INPUT's own history (intervals "
             "calibrated with --calibration-windows N > 0); members within a CPU budget; stderr says the members, "
             "weights and calibration (sets the model: no --model)",
    ),
    num_threads: int | None = typer.Option(
        None, "--num-threads", help="Threads (default: OMP_NUM_THREADS if set, else the CPUs this process may use)"
    ),
    output: str | None = typer.Option(None, "--output", "-o", help="Output CSV (default or '-': stdout)"),
    plot: Path | None = typer.Option(
        None, "--plot", help="Write a picture (.png, .pdf, .svg, .jpg) of history + median + 80% band"
    ),
) -> None:
    """Forecast every series in INPUT ('-': stdin) with a pretrained model (zero-shot: no training, no network)."""
    from tsfm.errors import InputError

    _check_horizon(horizon)
    if num_threads is not None and num_threads < 1:
        fail(f"--num-threads must be a positive integer, got {num_threads}")
    if context_length is not None and context_length < 1:
        fail("--context-length must be a positive integer")
    if calibration_windows is not None and calibration_windows < 0:
        fail(f"--calibration-windows must be 0 or more, got {calibration_windows}")
    if fill not in ("mask", "none", "ffill", "interpolate", "zero"):
        fail(f"--fill '{fill}' is not one of mask, none, ffill, interpolate, zero")
    if ensemble is not None and ensemble != "auto":
        fail(f"--ensemble '{ensemble}' is not known: use --ensemble auto")
    if ensemble and model != "ttm":
        fail("--ensemble auto chooses its own members: leave out --model")
    names = _split_list("0.1,0.5,0.9" if quantiles is None else quantiles)
    names += _levels_to_quantiles(_split_list(level))
    names = _one_per_level(names)  # the Forecaster checks and sorts them
    if not names:
        fail("--quantiles is empty: give levels like 0.1,0.5,0.9 (or --level 80)")
    target_out = check_output(output) if output is not None else None
    if plot is not None:
        if plot.suffix.lower() not in PLOT_SUFFIXES:
            fail(f"--plot {plot}: unsupported picture type '{plot.suffix or '(none)'}'; use {', '.join(PLOT_SUFFIXES)}")
        plot_out = check_output(plot, "--plot")
    given = str(input)
    input = readable_input(input)
    if future is not None and not future.is_file():
        fail(f"--future file '{future}' does not exist")
    for option, out in (("--output", target_out), ("--plot", plot_out if plot is not None else None)):
        if out is not None and out.kind == "file" and out.path.exists() and any(
                os.path.samefile(out.path, read) for read in (input, future) if read is not None):
            fail(f"{option} {out.shown} is an input file: give another path (writing it would replace your data)")
    if target_out is not None and plot is not None and target_out.kind == plot_out.kind == "file" \
            and target_out.path == plot_out.path:
        fail(f"--output and --plot name the same file {output}: give two paths")
    with warnings.catch_warnings():  # numpy overflow/empty-slice notes: the inputs and results are checked instead
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            from tsfm.data.tables import read_table
            from tsfm.forecaster import Forecaster
            from tsfm.pipeline import reads_covariates

            forecaster = Forecaster(
                model=ensemble or model, horizon=horizon, quantiles=tuple(names), context_length=context_length,
                freq=freq, multivariate=multivariate,
                id_col=id_col, time_col=time_col, target=(target[0] if target and len(target) == 1 else target) or None,
                past_exog=exog or None, future_exog=future_exog or None, fill="mask" if fill == "none" else fill,
                nonnegative=nonnegative, log_scale=log_scale, calibration_windows=calibration_windows,
                seasonal_adjustment=seasonal_adjustment, device=device, batch_size=batch_size,
                num_threads=num_threads or default_threads(),
            )
            forecaster.fit(input)
            say_variant(forecaster)
            if forecaster.series_.month_first:
                typer.echo("note: dates like 03/04/2020 were read month-first (March 4); if they are day-first, "
                           "write them as ISO dates (2020-04-03)", err=True)
            if horizon is None:
                series = forecaster.series_
                what = (series.resolution or "integer steps") if series.step_index else forecaster.freq_
                source = (f"default for frequency {what}" if forecaster.horizon_ == series.stated_freq_info.horizon
                          else "the horizon the model was exported for" if str(model).lower().endswith(".onnx")
                          else "the horizon the model was saved with")
                typer.echo(f"horizon {forecaster.horizon_} ({source})", err=True)
            uses_covariates = reads_covariates(forecaster.model_)
            if (exog or future_exog or future) and not uses_covariates:
                typer.echo("note: the zero-shot model forecasts from the targets alone; covariates take effect "
                           "after `tsfm finetune` with --exog/--future-exog", err=True)
            x_future = read_table(future) if future is not None and uses_covariates else None
            result = forecaster.predict(X_future=x_future)
            for note in forecaster.notes_:  # an ensemble member that failed somewhere
                typer.echo(note, err=True)
        except InputError as err:
            fail_on_input(err, input, given)
    write_output(result, target_out)
    if target_out is not None and target_out.kind != "stdout":
        typer.echo(f"wrote {len(result)} rows to {output}", err=True)
    if plot is not None:  # after the forecast is written: a picture never stands in for a failed forecast
        from tsfm.plotting import plot_forecast

        with interruptible(str(plot)):
            plot_forecast(forecaster, plot, h=forecaster.horizon_)


@app.command()
def evaluate(
    input: Path = typer.Argument(..., help="File with the full history of every series (long or wide; '-': stdin)"),
    horizon: int | None = typer.Option(
        None, "--horizon", "-H", help=f"Steps per backtest window (at most {MAX_HORIZON})"
    ),
    n_windows: int = typer.Option(1, "--n-windows", help="Backtest windows at the end of each series"),
    step_size: int | None = typer.Option(
        None, "--step-size", help="Steps between the windows' cutoffs (default: the horizon; windows do not overlap)"),
    model: str = typer.Option("ttm", "--model", "-m", help="Model name or checkpoint directory"),
    season: int | None = typer.Option(
        None, "--season", help="Seasonal period of the MASE scale (default: the frequency's; 1 for integer steps)"),
    freq: str | None = typer.Option(None, "--freq", help="Pandas frequency alias, when it cannot be inferred"),
    id_col: str | None = typer.Option(None, "--id-col", help="Series id column (long format)"),
    time_col: str | None = typer.Option(None, "--time-col", help="Timestamp column"),
    target: str | None = typer.Option(None, "--target", help="Target column (one: evaluate scores one target)"),
    num_threads: int | None = typer.Option(
        None, "--num-threads", help="Threads (default: OMP_NUM_THREADS if set, else the CPUs this process may use)"),
) -> None:
    """Backtest on the last windows of each series: MASE, sMAPE (0-200), WQL, 10-90% coverage."""
    from tsfm.errors import InputError

    if n_windows < 1:
        fail("--n-windows must be a positive integer")
    if step_size is not None and step_size < 1:
        fail(f"--step-size must be a positive integer, got {step_size}")
    if num_threads is not None and num_threads < 1:
        fail(f"--num-threads must be a positive integer, got {num_threads}")
    if season is not None and season < 1:
        fail(f"--season must be a positive integer, got {season}")
    _check_horizon(horizon)
    given = str(input)
    input = readable_input(input)  # stdin is read only once the options are known to be good
    with warnings.catch_warnings():  # numpy's overflow/empty-slice notes stay off stderr, as in forecast
        warnings.simplefilter("ignore", RuntimeWarning)
        try:
            from tsfm.forecaster import Forecaster

            levels = tuple(round(0.1 * i, 1) for i in range(1, 10))
            forecaster = Forecaster(model=model, horizon=horizon, quantiles=levels, freq=freq, id_col=id_col,
                                    time_col=time_col, target=target, num_threads=num_threads or default_threads())
            scores = forecaster.evaluate(input, h=horizon, n_windows=n_windows, m=season, step_size=step_size)
        except InputError as err:
            fail_on_input(err, input, given)
    for name, value in scores.items():
        typer.echo(f"{name}\t{value:.6g}")


@app.command()
def models() -> None:
    """List model families and the pretrained weights shipped with the package."""
    from tsfm.hub import WEIGHTS_DIR, load_suite, read_config, shipped_models
    from tsfm.models.registry import FAMILIES

    shipped = set(shipped_models())
    suites = {n: suite for n in sorted(shipped) if (suite := load_suite(n))}
    width = max(14, *(len(n) + 2 for n in shipped | set(FAMILIES)))
    indent = " " * (width + 10)
    typer.echo(f"{'name':<{width}}{'weights':<10}description")
    for name, family in FAMILIES.items():
        if family.composite and name not in shipped:
            continue  # built from shipped checkpoints (e.g. ttm-512-ensemble), not a --model name of its own
        suite = suites.get(name)
        kind = "suite" if suite else "shipped" if name in shipped else "-"
        typer.echo(f"{name:<{width}}{kind:<10}{family.summary}")
        if suite:
            rule = ", ".join(f"{v} from {h} points" for v, h in suite.variants)
            typer.echo(f"{indent}picks a variant by median history length: {rule}, among those whose context "
                       f"covers {suite.min_seasons:g} seasons (else {suite.default})")
            for freq, general, special in suite.by_frequency:
                typer.echo(f"{indent}{freq} data: {special} in place of {general}")
            if suite.log_scale != "never":
                typer.echo(f"{indent}forecasts in log space: {suite.log_scale} positive contexts (--log-scale)")
            if suite.spec.seasonal_adjustment:
                typer.echo(f"{indent}forecasts seasonal series seasonally adjusted (--no-seasonal-adjustment)")
    roles = {special: f"; in suite {n}, stands in for {general} on {freq} data"
             for n, suite in suites.items() for freq, general, special in suite.by_frequency}
    for name in sorted(shipped - set(FAMILIES)):
        if name in suites:
            typer.echo(f"{name:<{width}}{'suite':<10}variants: {', '.join(v for v, _ in suites[name].variants)}")
            continue
        config = read_config(WEIGHTS_DIR / name)
        typer.echo(f"{name:<{width}}{'shipped':<10}{config.description} checkpoint: context {config.context_length}, "
                   f"horizon {config.prediction_length}{roles.get(name, '')}")


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
    click_errors = getattr(typer, "TyperException", None)  # click's errors, in a typer that vendors click
    if click_errors is None:  # an older typer, which depends on click itself
        import click

        click_errors = click.ClickException
    try:
        code = app(standalone_mode=False)  # usage errors come back here, to be said in one line
    except click_errors as err:  # a bad or missing option or argument (exit 2), or a file click could not open
        ctx, lines = getattr(err, "ctx", None), err.format_message().strip().splitlines()
        where = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        if lines:  # empty for a bare `tsfm`, which has printed its help instead
            typer.echo(f"error: {lines[0]}{where}", err=True)
        sys.exit(getattr(err, "exit_code", 2))
    except SystemExit:
        raise
    except (KeyboardInterrupt, typer.Abort):
        typer.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as err:  # noqa: BLE001 - last line of defence for users
        if os.environ.get("TSFM_DEBUG"):
            raise
        from tsfm.errors import InputError

        code = 2 if isinstance(err, InputError) else 1
        typer.echo(f"error: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}", err=True)
        sys.exit(code)
    if code == 130:  # click hands Ctrl-C back as exit code 130, having said nothing
        typer.echo("interrupted", err=True)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
