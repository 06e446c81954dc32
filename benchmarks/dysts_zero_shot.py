"""Zero-shot forecasts of chaotic systems held out of pretraining, scored over 1 and 2 Lyapunov times.

    python benchmarks/dysts_zero_shot.py                       # the 16 held-out flows: ttm + baselines
    python benchmarks/dysts_zero_shot.py --models ttm s-mamba --baselines naive autoets
    python benchmarks/dysts_zero_shot.py --systems Lorenz84 Chen --trajectories 1 --baselines naive \\
        --output-dir /tmp/dysts_check                          # a quick check that keeps real results

The protocol follows the dysts benchmark (Gilpin 2021, "Chaos as an interpretable benchmark for
forecasting and data-driven modelling"): forecast error is sMAPE (0-200) over horizons measured in
Lyapunov times, so that a step means the same loss of predictability on every system. The systems
are the dysts flows the ``chaos`` generator of ``configs/corpus/default_heldout.yaml`` holds out
(``exclude_systems``, read from that file). For each system, ``--trajectories`` initial conditions
(dysts' default one x (1 + U[-0.1, 0.1]), seeded by ``[--seed, crc32(name), k]``) are integrated with
``tsfm.data.synthetic.chaos.integrate`` (LSODA as in the corpus, work-limited; a transient is dropped)
at ``--pts-per-period`` points per dominant period. One Lyapunov time is ``pts_per_period /
(lambda_max * period)`` steps (dysts metadata), rounded up; every coordinate is forecast as its own
univariate series from the last ``--context`` points, ``ceil(2 Lyapunov times)`` steps ahead (at
most ``--max-horizon``), and the median forecast is scored over the first 1 and 2 Lyapunov times.
Models: the tsfm models named by ``--models`` through the public ``Forecaster`` and statsforecast
baselines (Naive, AutoETS, AutoTheta; season 1). Each model card says whether the model had the
systems held out. Writes ``dysts_zero_shot.md`` and ``.json`` to ``--output-dir``
(default ``benchmarks/results``).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
import traceback
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# numpy's BLAS is already loaded when pin_threads runs: threadpoolctl limits it there.
import numpy as np
import pandas as pd
import yaml
from common import (
    REPO_ROOT,
    RESULTS_DIR,
    check_output,
    finish_run,
    markdown_table,
    metadata_markdown,
    start_run,
    write_results,
)

HELD_OUT_RECIPE = REPO_ROOT / "configs" / "corpus" / "default_heldout.yaml"
QUANTILES = (0.1, 0.5, 0.9)
FREQ = "h"  # the same regular hourly index for every series and model
START = "2000-01-01"
IC_JITTER = 0.1  # the corpus' initial-condition perturbation
TIME_BUDGET = 60.0  # integrate's wall-clock safety net (seconds); max_evals is the real limit
BASELINES = {"naive": "Naive", "autoets": "AutoETS", "autotheta": "AutoTheta"}
REFERENCE = "Naive"
HORIZONS = (1, 2)  # scored horizons, in Lyapunov times
# What a model card says about the benchmarked systems (baselines are not pretrained).
HELD, SEEN, UNKNOWN = "held out", "not held out (seen in pretraining)", "unknown"
NOT_PRETRAINED = "n/a (no pretraining)"
HELD_OUT_NOTE = re.compile(r"dysts systems held out: ([^);]*)")  # as tsfm/train/pretrain.py writes it
PACKAGES = ("tsfm", "dysts", "statsforecast", "numpy", "pandas", "scipy", "torch")

# A forecast function: (context frame unique_id/ds/y, horizon) -> (frame unique_id/ds/forecast with the
# median, the checkpoint that produced it: a suite such as ``ttm`` picks a variant per frame).
Runner = Callable[[pd.DataFrame, int], tuple[pd.DataFrame, str]]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="*", default=["ttm"],
                        help="tsfm models for Forecaster(model=...) (default: ttm; none: baselines only)")
    parser.add_argument("--baselines", nargs="*", default=list(BASELINES), choices=list(BASELINES),
                        help="statsforecast baselines (default: all); Naive is the reference of the relative scores")
    parser.add_argument("--systems", nargs="+", default=None,
                        help="a subset of the held-out systems (default: all of them)")
    parser.add_argument("--trajectories", type=int, default=3, help="initial conditions per system (default 3)")
    parser.add_argument("--pts-per-period", type=int, default=30, help="points per dominant period (default 30)")
    parser.add_argument("--context", type=int, default=512, help="context points before the forecast origin")
    parser.add_argument("--max-horizon", type=int, default=512, help="cap on the forecast horizon in steps")
    parser.add_argument("--seed", type=int, default=0, help="seed of the initial-condition draws (default 0)")
    parser.add_argument("--max-evals", type=int, default=100_000,
                        help="right-hand-side evaluations one trajectory may use (default 100000, as the corpus)")
    parser.add_argument("--output-dir", type=Path, default=RESULTS_DIR,
                        help="folder for dysts_zero_shot.md and .json (default benchmarks/results)")
    parser.add_argument("--num-threads", type=int, default=1,
                        help="threads for torch, OpenMP, BLAS and numba (default 1)")
    args = parser.parse_args(argv)
    for name in ("trajectories", "pts_per_period", "context", "max_horizon"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")
    return args


# ----------------------------------------------------------------------------- systems and series


def held_out_systems(recipe: Path = HELD_OUT_RECIPE) -> list[str]:
    """The ``exclude_systems`` of the recipe's ``chaos`` generator: the single list of held-out systems."""
    generators = yaml.safe_load(recipe.read_text())["generators"]
    return list(generators["chaos"]["exclude_systems"])


@dataclass
class SystemCase:
    """The series of one system: contexts and futures of every coordinate of every trajectory."""

    name: str
    lyapunov_exponent: float
    period: float
    steps_per_lyapunov: float  # forecast steps in one Lyapunov time (not rounded)
    wanted: tuple[int, ...]  # steps in each of HORIZONS Lyapunov times, rounded up
    horizons: tuple[int, ...]  # the steps scored: ``wanted`` capped at --max-horizon
    ids: list[str] = field(default_factory=list)
    contexts: list[np.ndarray] = field(default_factory=list)
    futures: list[np.ndarray] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)  # trajectory index -> why it could not be integrated

    @property
    def horizon(self) -> int:
        """Steps forecast (and integrated after the context): the longest scored horizon."""
        return self.horizons[-1]

    @property
    def capped(self) -> bool:
        return self.horizons != self.wanted

    def frame(self) -> pd.DataFrame:
        """All contexts as one long frame ``unique_id, ds, y`` on the fixed hourly index."""
        ds = pd.date_range(START, periods=len(self.contexts[0]), freq=FREQ)
        frames = [pd.DataFrame({"unique_id": uid, "ds": ds, "y": y}) for uid, y in zip(self.ids, self.contexts)]
        return pd.concat(frames, ignore_index=True)


def lyapunov_timescale(name: str, pts_per_period: int) -> tuple[float, float, float]:
    """(lambda_max, period, steps per Lyapunov time) from the dysts metadata of flow ``name``."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import dysts.flows

        system = getattr(dysts.flows, name)()
    lam, period = system.maximum_lyapunov_estimated, system.period
    if not lam or not period or lam <= 0 or period <= 0:
        raise ValueError(f"no positive Lyapunov exponent and period in dysts metadata ({lam=}, {period=})")
    return float(lam), float(period), pts_per_period / (lam * period)


def build_case(name: str, args: argparse.Namespace) -> SystemCase:
    """Integrate ``args.trajectories`` trajectories of ``name``; ValueError when none can be used."""
    from tsfm.data.synthetic.chaos import ChaosFailure, integrate

    lam, period, steps = lyapunov_timescale(name, args.pts_per_period)
    wanted = [math.ceil(k * steps) for k in HORIZONS]
    horizons = tuple(min(h, args.max_horizon) for h in wanted)
    case = SystemCase(name, lam, period, steps, tuple(wanted), horizons)
    length = args.context + case.horizon
    for k in range(args.trajectories):
        rng = np.random.default_rng([args.seed, zlib.crc32(name.encode()), k])
        try:
            traj = integrate(name, length, pts_per_period=args.pts_per_period, rng=rng, ic_jitter=IC_JITTER,
                             param_jitter=0.0, max_evals=args.max_evals, time_budget=TIME_BUDGET)
        except ChaosFailure as err:
            case.failed[k] = str(err)
            continue
        for c in range(traj.shape[1]):
            case.ids.append(f"{name}/ic{k}/x{c}")
            case.contexts.append(traj[: args.context, c])
            case.futures.append(traj[args.context:, c])
    if not case.ids:
        raise ValueError("no trajectory integrated: " + "; ".join(f"#{k}: {r}" for k, r in case.failed.items()))
    return case


# ----------------------------------------------------------------------------- models


def tsfm_runner(name: str) -> Runner:
    """The median forecast through the public API, exactly as a user calls it."""
    from tsfm import Forecaster

    def run(context: pd.DataFrame, h: int) -> tuple[pd.DataFrame, str]:
        forecaster = Forecaster(model=name, horizon=h, quantiles=QUANTILES).fit(context)
        out = forecaster.predict()
        checkpoint = str(getattr(forecaster, "model_name_", name))  # what fit loaded, where tsfm says
        return out[["unique_id", "ds"]].assign(forecast=out["0.5"].to_numpy()), checkpoint

    return run


def stats_runner(name: str) -> Runner:
    """A statsforecast model (season length 1); its point forecast is the median of its Gaussian band."""
    import statsforecast.models as sf_models
    from statsforecast import StatsForecast

    def run(context: pd.DataFrame, h: int) -> tuple[pd.DataFrame, str]:
        model = sf_models.Naive() if name == "Naive" else getattr(sf_models, name)(season_length=1)
        out = StatsForecast(models=[model], freq=FREQ, n_jobs=1).forecast(df=context, h=h)
        return out[["unique_id", "ds"]].assign(forecast=out[name].to_numpy()), f"statsforecast.{name}"

    return run


def warm_up(runners: dict[str, Runner]) -> dict[str, float]:
    """Run every model once on two short sine waves, untimed: first calls pay for imports and weights."""
    t = np.arange(64)
    ds = pd.date_range(START, periods=len(t), freq=FREQ)
    df = pd.concat([pd.DataFrame({"unique_id": f"w{i}", "ds": ds, "y": np.sin(t / 5 + i)}) for i in range(2)])
    seconds = {}
    for name, run in runners.items():
        start = time.perf_counter()
        try:
            run(df, 8)
        except Exception as err:  # the system runs report it per system
            print(f"warm-up of {name} failed: {err}", file=sys.stderr)
        seconds[name] = time.perf_counter() - start
    return seconds


def shown_path(path: Path) -> Path:
    """``path`` relative to the repository root where it lies inside it."""
    path = path.resolve()
    return path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path


def card_status(name: str, systems: Sequence[str]) -> dict[str, Any]:
    """Whether the model card lists every benchmarked system as held out of pretraining.

    Our pretraining writes ``dysts systems held out: A, B, ...`` into each phase's "training data"
    line; a system missing from any of them (older cards record none) was seen in pretraining.
    """
    from tsfm.errors import InputError
    from tsfm.hub import resolve

    try:
        card = resolve(name) / "README.md"
    except InputError:
        return {"status": UNKNOWN, "detail": f"{name}: not a shipped model or checkpoint directory, no model card"}
    if not card.is_file():
        return {"status": UNKNOWN, "detail": f"no model card at {shown_path(card)}"}
    lines = [line for line in card.read_text().splitlines() if "training data:" in line]
    if not lines:
        return {"status": UNKNOWN, "detail": f"{shown_path(card)} has no training data line"}
    records = [HELD_OUT_NOTE.search(line) for line in lines]
    unlisted = set()
    for record in records:
        unlisted |= set(systems) - ({s.strip() for s in record.group(1).split(",")} if record else set())
    recorded = f"{shown_path(card)}: held-out systems recorded in {sum(map(bool, records))} of {len(lines)} " \
               "training data line(s)"
    if not unlisted:
        return {"status": HELD, "detail": f"{recorded}; every benchmarked system listed"}
    if len(unlisted) == len(systems):
        return {"status": SEEN, "detail": f"{recorded}; none of the {len(systems)} benchmarked systems listed"}
    return {"status": SEEN, "detail": f"{recorded}; not listed: {', '.join(sorted(unlisted))}"}


def held_out_status(model: str, checkpoints: Sequence[str], systems: Sequence[str]) -> dict[str, Any]:
    """``card_status`` over every checkpoint that served ``model`` (the name itself where none ran):
    seen when any card misses a system, else unknown when any card cannot tell, else held out."""
    cards = [card_status(c, systems) for c in sorted(set(checkpoints) or {model})]
    status = next(s for s in (SEEN, UNKNOWN, HELD) if any(card["status"] == s for card in cards))
    return {"status": status, "checkpoints": sorted(set(checkpoints)), "detail": "; ".join(c["detail"] for c in cards)}


# ----------------------------------------------------------------------------- scoring


def smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    """sMAPE on the 0-200 scale; a step where forecast and actual are both 0 counts as 0."""
    denom = np.abs(actual) + np.abs(forecast)
    terms = np.divide(2.0 * np.abs(forecast - actual), denom, out=np.zeros_like(denom), where=denom > 0)
    return float(100.0 * terms.mean())


def run_model(run: Runner, case: SystemCase) -> dict[str, Any]:
    """One model on every series of one system: sMAPE per series and horizon, seconds, or the error."""
    start = time.perf_counter()
    try:
        out, checkpoint = run(case.frame(), case.horizon)
        seconds = time.perf_counter() - start
        medians = {uid: g["forecast"].to_numpy(np.float64) for uid, g in out.sort_values("ds").groupby("unique_id")}
        for uid in case.ids:
            if len(medians.get(uid, ())) != case.horizon or not np.all(np.isfinite(medians[uid])):
                raise ValueError(f"no {case.horizon} finite forecast steps for series {uid}")
    except Exception as err:  # a failing model is reported in the results, never dropped silently
        line = traceback.format_exception_only(type(err), err)[-1].strip()
        return {"seconds": time.perf_counter() - start, "error": line, "checkpoint": None, "smape": {}}
    scores = {f"{k}": [smape(y[:h], medians[uid][:h]) for uid, y in zip(case.ids, case.futures)]
              for k, h in zip(HORIZONS, case.horizons)}
    return {"seconds": seconds, "error": None, "checkpoint": checkpoint, "smape": scores}


def system_mean(result: dict[str, Any], k: int) -> float:
    scores = result["smape"].get(f"{k}")
    return float(np.mean(scores)) if scores else math.nan


def aggregate(cases: list[SystemCase], results: dict[str, dict[str, dict[str, Any]]],
              models: list[str]) -> dict[str, dict[str, Any]]:
    """Per model: mean and median sMAPE over all series, geometric mean over systems of the
    system-mean ratio to Naive (per horizon), total seconds and the systems it failed on."""
    table = {}
    for model in models:
        row: dict[str, Any] = {"series": sum(len(results[c.name][model]["smape"].get("1", ())) for c in cases)}
        for k in HORIZONS:
            scores = [s for c in cases for s in results[c.name][model]["smape"].get(f"{k}", ())]
            row[f"mean_{k}"] = float(np.mean(scores)) if scores else math.nan
            row[f"median_{k}"] = float(np.median(scores)) if scores else math.nan
            ratios = [system_mean(results[c.name][model], k) / system_mean(results[c.name][REFERENCE], k)
                      for c in cases if REFERENCE in results[c.name]]
            ratios = [r for r in ratios if math.isfinite(r) and r > 0]
            row[f"relative_{k}"] = float(np.exp(np.mean(np.log(ratios)))) if ratios else math.nan
        row["seconds"] = float(sum(results[c.name][model]["seconds"] for c in cases))
        row["failed_systems"] = [c.name for c in cases if results[c.name][model]["error"]]
        table[model] = row
    return table


# ----------------------------------------------------------------------------- report


def held_out_cell(status: dict[str, Any]) -> str:
    return f"**{SEEN}**" if status["status"] == SEEN else status["status"]


def model_cell(model: str, status: dict[str, Any]) -> str:
    """The model name, with the checkpoint(s) it loaded where they differ (a suite's variants)."""
    checkpoints = status.get("checkpoints", [model])
    return model if checkpoints in ([], [model]) else f"{model} ({', '.join(checkpoints)})"


def horizon_cell(case: SystemCase, i: int) -> str:
    """Steps of horizon ``i``, with the Lyapunov times it really covers where it was capped."""
    h = case.horizons[i]
    return f"{h} (capped: {h / case.steps_per_lyapunov:.2f}λ)" if h != case.wanted[i] else str(h)


def render(meta: dict[str, Any], cases: list[SystemCase], results: dict[str, dict[str, dict[str, Any]]],
           table: dict[str, dict[str, Any]], held: dict[str, dict[str, Any]], notes: list[str]) -> str:
    models = list(table)
    score_headers = [f"{stat} {k}λ" for k in HORIZONS for stat in ("mean", "median")]
    score_headers += [f"rel. Naive {k}λ" for k in HORIZONS]
    aggregate_rows = [
        [model_cell(m, held[m]), held_out_cell(held[m]), table[m]["series"]]
        + [table[m][f"{stat}_{k}"] for k in HORIZONS for stat in ("mean", "median")]
        + [table[m][f"relative_{k}"] for k in HORIZONS]
        + [f"{table[m]['seconds']:.1f}", ", ".join(table[m]["failed_systems"]) or "none"]
        for m in models
    ]
    system_rows = [
        [c.name, c.lyapunov_exponent, c.period, f"{c.steps_per_lyapunov:.1f}"]
        + [horizon_cell(c, i) for i in range(len(HORIZONS))]
        + [len(c.ids), ", ".join(f"#{k}: {r}" for k, r in c.failed.items()) or "none"]
        for c in cases
    ]
    parts = [
        "# Zero-shot forecasts of chaotic systems held out of pretraining (dysts)",
        "",
        "Written by `benchmarks/dysts_zero_shot.py`; do not edit by hand.",
        "",
        metadata_markdown(meta),
        "",
        "## Aggregate (sMAPE 0-200 of the median forecast; lower is better)",
        "",
        "Mean and median over all series (system x trajectory x coordinate); relative: geometric mean over systems "
        "of the model's system-mean sMAPE / Naive's. Horizons in Lyapunov times (λ).",
        "",
        markdown_table(["model", "systems held out in pretraining", "series", *score_headers, "seconds",
                        "failed systems"], aggregate_rows, 2),
        "",
        "## Systems",
        "",
        markdown_table(["system", "λ_max", "period", "steps per λ", *[f"H {k}λ" for k in HORIZONS], "series",
                        "failed trajectories"], system_rows, 4),
    ]
    for k in HORIZONS:
        rows = [[c.name] + [system_mean(results[c.name][m], k) for m in models] for c in cases]
        parts += ["", f"## sMAPE over {k} Lyapunov time{'s' if k > 1 else ''} per system (mean over series)", "",
                  markdown_table(["system", *models], rows, 2)]
    parts += ["", "## Notes", "", *[f"- {note}" for note in notes]]
    errors = [(c.name, m, r["error"]) for c in cases for m, r in results[c.name].items() if r["error"]]
    if errors:
        parts += ["", "## Errors", "", *[f"- {m} on {s}: `{e}`" for s, m, e in errors]]
    return "\n".join(parts)


def run_notes(args: argparse.Namespace, cases: list[SystemCase], skipped: dict[str, str],
              held: dict[str, dict[str, Any]], warm_seconds: dict[str, float]) -> list[str]:
    """What a reader needs to judge the numbers: protocol, frequency, caps, skips, model cards."""
    from tsfm.data.freq import freq_info
    from tsfm.data.synthetic.chaos import INTEGRATOR

    info = freq_info(FREQ)
    capped = [f"{c.name} ({c.wanted[-1]} -> {c.horizon} steps)" for c in cases if c.capped]
    notes = [
        f"Systems: the `exclude_systems` of the chaos generator in `{HELD_OUT_RECIPE.relative_to(REPO_ROOT)}`"
        + (f", restricted by --systems to {len(args.systems)}" if args.systems else "") + ".",
        f"Trajectories: {args.trajectories} per system from `tsfm.data.synthetic.chaos.integrate` ({INTEGRATOR}, "
        f"at most {args.max_evals} right-hand-side evaluations, {TIME_BUDGET:g} s safety net; the first 10 % of the "
        f"integrated points are dropped as transient), {args.pts_per_period} points per dominant period, initial "
        f"condition dysts' default x (1 + U[-{IC_JITTER}, {IC_JITTER}]) per coordinate, default parameters, rng "
        f"`numpy.random.default_rng([{args.seed}, crc32(name), k])`; every coordinate is its own univariate series.",
        f"Horizons: one Lyapunov time = pts_per_period / (maximum_lyapunov_estimated x period) steps from the dysts "
        f"metadata; H kλ = ceil(k x that), at most --max-horizon {args.max_horizon}; each series is forecast "
        f"H 2λ steps from its last {args.context} points and scored over the first H 1λ and H 2λ steps. dysts "
        f"spaces the points by period x n / (pts_per_period x (n - 1)) for n integrated points, a step longer by "
        f"under 0.1 % than period / pts_per_period.",
        "Capped horizons (the 2λ score covers fewer Lyapunov times there; every model sees the same cap): "
        + (", ".join(capped) or "none") + ".",
        "Skipped systems: " + ("; ".join(f"{s}: {r}" for s, r in skipped.items()) or "none") + ".",
        f"Index: every series gets `pd.date_range('{START}', periods={args.context}, freq='{FREQ}')`; tsfm infers "
        f"'{info.alias}' (resolution token {info.token}; season {info.season}, which with the horizon given only "
        f"enters a suite's choice of variant) and statsforecast runs with freq='{FREQ}', the same for every model.",
        f"tsfm models: `Forecaster(model=name, horizon=H 2λ, quantiles={QUANTILES}).fit(frame).predict()`, one frame "
        "per system (all its trajectories and coordinates), scored on the 0.5 column; horizons past a model's "
        "prediction length are rolled out by tsfm itself.",
        "Baselines: statsforecast Naive (last value) and AutoETS/AutoTheta with season_length=1, n_jobs=1, one frame "
        "per system; the point forecast of AutoETS/AutoTheta is the median of their Gaussian predictive distribution.",
        "sMAPE: 200 x mean |f - y| / (|f| + |y|) per series, a 0/0 step counts 0. It is not scale-free around 0: "
        "coordinates that oscillate about zero score 100-200 for every model, and a forecast that shrinks towards "
        "the mean is punished there; compare models on the same systems (per-system tables, relative columns).",
        "Held out in pretraining, from each model card's training data line(s) (pretraining records `dysts systems "
        "held out: ...` there; older cards record none): "
        + ("; ".join(f"{m}: {held[m]['status']} ({held[m]['detail']})" for m in args.models) or "no tsfm model")
        + ".",
        "Warm-up (untimed, before the systems): each model forecast two 64-point sine waves once: "
        + ", ".join(f"{m} {s:.2f}s" for m, s in warm_seconds.items())
        + f". Seconds are fit+predict wall time (tsfm: weight loading included) summed over systems, threads pinned "
        f"to {args.num_threads}; the machine may be shared, so compare seconds within one run (see the load above).",
    ]
    return notes


def case_record(case: SystemCase, results: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "lyapunov_exponent": case.lyapunov_exponent, "period": case.period,
        "steps_per_lyapunov": case.steps_per_lyapunov, "horizons": dict(zip(map(str, HORIZONS), case.horizons)),
        "capped": case.capped, "failed_trajectories": case.failed, "series": case.ids, "models": results,
    }


# ----------------------------------------------------------------------------- main


def select_systems(wanted: list[str] | None) -> list[str]:
    systems = held_out_systems()
    if wanted is None:
        return systems
    unknown = sorted(set(wanted) - set(systems))
    if unknown:
        raise SystemExit(f"error: not held-out systems: {', '.join(unknown)}; held out: {', '.join(systems)}")
    return [s for s in systems if s in wanted]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_output(args.output_dir / "dysts_zero_shot.md")  # before the run, not after it
    meta = start_run(args.num_threads, PACKAGES)
    systems = select_systems(args.systems)

    # statsforecast's optimisers warn per fit ("possible convergence problem"): hundreds of lines
    warnings.filterwarnings("ignore", category=UserWarning, module=r"statsforecast\.")
    runners = {BASELINES[b]: stats_runner(BASELINES[b]) for b in BASELINES if b in args.baselines}
    runners.update({name: tsfm_runner(name) for name in args.models})
    warm_seconds = warm_up(runners)

    cases, skipped, results = [], {}, {}
    for name in systems:
        try:
            case = build_case(name, args)
        except ValueError as err:
            skipped[name] = str(err)
            print(f"{name:<24} skipped: {err}", file=sys.stderr, flush=True)
            continue
        cases.append(case)
        results[name] = {}
        for model, run in runners.items():
            result = run_model(run, case)
            results[name][model] = result
            status = f"error: {result['error']}" if result["error"] else "sMAPE " + "  ".join(
                f"{k}λ {system_mean(result, k):6.2f}" for k in HORIZONS)
            print(f"{name:<24} H={case.horizons} {model:<10} {result['seconds']:7.2f}s  {status}",
                  file=sys.stderr, flush=True)
    finish_run(meta)

    held = {m: {"status": NOT_PRETRAINED, "detail": "statsforecast"} for m in runners if m not in args.models}
    held.update({m: held_out_status(m, [results[c.name][m]["checkpoint"] for c in cases
                                        if results[c.name][m]["checkpoint"]], systems) for m in args.models})
    table = aggregate(cases, results, list(runners))
    notes = run_notes(args, cases, skipped, held, warm_seconds)
    data = {"meta": meta, "notes": notes, "held_out": held, "aggregate": table, "skipped_systems": skipped,
            "protocol": {"recipe": str(HELD_OUT_RECIPE.relative_to(REPO_ROOT)), "systems": systems,
                         "trajectories": args.trajectories, "pts_per_period": args.pts_per_period,
                         "context": args.context, "max_horizon": args.max_horizon, "seed": args.seed,
                         "ic_jitter": IC_JITTER, "param_jitter": 0.0, "max_evals": args.max_evals,
                         "freq": FREQ, "quantiles": QUANTILES, "horizons_lyapunov_times": HORIZONS},
            "systems": {c.name: case_record(c, results[c.name]) for c in cases}}
    markdown = render(meta, cases, results, table, held, notes)
    written = write_results(args.output_dir / "dysts_zero_shot.md", markdown, data)
    print("wrote " + ", ".join(str(p) for p in written), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
