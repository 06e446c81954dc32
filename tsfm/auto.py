"""``model="auto"``: a quantile ensemble of our networks and statsforecast's models, weighted (and,
when asked, calibrated) on backtests of the user's own history (``tsfm forecast --ensemble auto``).

Members: the ``ttm`` suite (the checkpoint it picks for the data) and ``moirai-moe`` (both without
their own calibration: only the combination is ever calibrated), and statsforecast's AutoARIMA,
AutoTheta, AutoETS and SeasonalNaive.

**Budget.** A member costs what its forecasts cost: networks per window, statistical models per
fit and fitted point (``COST_MS``, measured on a 2-core Xeon here). Members join in the order
``ORDER`` (SeasonalNaive, then the default model, then by their accuracy alone on the broad dev
benchmark) while the estimated total stays within ``BUDGET_S`` CPU-seconds; the ttm suite always
joins. AutoARIMA is the statsforecast default search where the season is at most 12 and the data
small (at most ``ARIMA_EXACT_POINTS`` fitted points), ``approximation=True`` otherwise, a narrower
approximate search (orders up to 2, seasonal orders up to 1, 20 models) when that is still over the
budget, and skipped where the season is longer than 24 (a seasonal search over 48 or 52 lags took
50-90 s per series) or nothing fits. Statistical models read the last ``stats_context(m)`` points
and are fitted once per series in the backtests (at its oldest cutoff, then run forward).

**Backtests.** Up to ``MAX_WINDOWS`` windows of the horizon at the end of each history, cut by
``tsfm.data.backtest.backtest_windows``; a series takes part in a window when what it keeps before
it holds at least ``min_context(h, m)`` points. With more than ``SAMPLE_SERIES`` series the backtests
run on a fixed random sample of them (the weights are per dataset). Weights, shrinkage (toward the
ttm suite alone, ``PRIOR``) and the leave-one-window-out calibration: ``tsfm.aggregation``. No
window at all: the ttm suite alone, said in one line.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from tsfm import aggregation
from tsfm.data.backtest import backtest_windows
from tsfm.data.forecast_frame import forecast_frame as make_frame
from tsfm.data.series_set import SeriesSet
from tsfm.data.windows import inference_windows
from tsfm.errors import InputError
from tsfm.evaluation import seasonal_error
from tsfm.models.base import Capabilities
from tsfm.statistical import StatsMember, available_cpus, forecast_cuts
from tsfm_runtime import aggregate, rules

if TYPE_CHECKING:
    from tsfm.pipeline import Plan

AUTO = "auto"
FILE = "auto.json"
GRID = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)  # the levels every member forecasts; others interpolated
DEFAULT_MODEL = "ttm"
DEFAULT_SOURCE = "ttm"  # what the default member loads: the suite (its pick for the data)
NETWORKS = (DEFAULT_MODEL, "moirai-moe")
ORDER = ("SeasonalNaive", DEFAULT_MODEL, "AutoARIMA", "AutoTheta", "moirai-moe", "AutoETS")
MAX_WINDOWS = 4
# What few backtests shrink the weights toward: the "default" model alone (the ttm suite) or "equal"
# weights. Chosen between the three documented rules on the broad dev benchmark (46 tasks,
# benchmarks/results/ensemble.md): shrinking toward the default model beats equal weights with n =
# series x windows (paired MASE 0.946 [0.903, 0.984]) and with n = points (0.977 [0.956, 0.995]).
# With one backtest window the weights are that prior: the default model alone.
PRIOR = "default"
# Conformal calibration of the combination (leave-one-window-out) only when asked for
# (calibration_windows > 0): on the same benchmark it moves the 80% coverage 0.730 -> 0.798 and the 50%
# 0.472 -> 0.527 but costs WQL (paired 1.018 [0.996, 1.049]), and calibrated the ensemble no longer
# beats AutoARIMA's WQL (0.673 vs 0.669). It does not pay on the score the weights minimise, so it is opt-in.
CALIBRATE = False
SAMPLE_SERIES = 100
BUDGET_S = 60.0
ARIMA_EXACT_POINTS = 20_000
PARALLEL_S = 2.0  # a statistical member estimated to take longer runs on n_jobs worker processes
ARIMA_MAX_SEASON = 24
# Estimated cost on one core (milliseconds): statistical members per fit + per fitted point (AutoARIMA
# times (m / 12)^2 where m > 12), networks per forecast window. Measured here on M1 and synthetic
# monthly series (AutoARIMA's default search ~0.35 s per short series, whatever its length).
COST_MS = {
    "SeasonalNaive": (0.5, 0.001), "AutoTheta": (2.0, 0.07), "AutoETS": (10.0, 0.4),
    "AutoARIMA": (300.0, 1.0), "AutoARIMA-approx": (150.0, 0.5), "AutoARIMA-narrow": (40.0, 0.15),
    DEFAULT_MODEL: 5.0, "moirai-moe": 40.0,
}
APPROX_ARIMA = (("approximation", True),)
NARROW_ARIMA = (("approximation", True), ("max_p", 2), ("max_q", 2), ("max_P", 1), ("max_Q", 1), ("nmodels", 20))
ARIMA_SETTINGS = {"AutoARIMA": (), "AutoARIMA-approx": APPROX_ARIMA, "AutoARIMA-narrow": NARROW_ARIMA}


def stats_cost_s(key: str, fits: float, points: float, season: int) -> float:
    """Estimated CPU-seconds of ``fits`` fits over ``points`` points in all of one statistical member."""
    per_fit, per_point = COST_MS[key]
    factor = max(1.0, season / 12) ** 2 if key.startswith("AutoARIMA") else 1.0
    return factor * (per_fit * fits + per_point * points) / 1000


def min_context(h: int, season: int) -> int:
    """Points a series must keep before a backtest window to take part in it."""
    return max(h, 2 * season, 8)


def stats_context(season: int) -> int:
    """How many of the latest points the statistical members read: 20 seasons, within [200, 1000]."""
    return int(min(1000, max(200, 20 * season)))


def allowed_windows(series: SeriesSet, h: int, season: int, max_windows: int = MAX_WINDOWS) -> np.ndarray:
    """[N] how many backtest windows of ``h`` each series allows (at most ``max_windows``)."""
    return np.clip((series.lengths - min_context(h, season)) // h, 0, max_windows)


@dataclass
class Member:
    name: str
    source: str = ""  # a network's checkpoint (the ttm suite's pick)
    stats: StatsMember | None = None
    log_scale: str = "never"
    seasonal_adjustment: bool = False  # the ttm suite's choice, as for log_scale


@dataclass
class AutoEnsemble:
    """A fitted ensemble: its members, weights per level on ``GRID``, calibration and what it says."""

    members: list[Member]
    weights: np.ndarray  # [M, Q]
    widening: np.ndarray  # [pairs of GRID]
    horizon: int
    season: int
    windows: int = 0
    lines: list[str] = field(default_factory=list)  # what the CLI says
    notes: list[str] = field(default_factory=list)
    quantiles: tuple[float, ...] = GRID  # what check_levels reads, as for a network
    capabilities: Capabilities = field(default_factory=Capabilities)  # no covariates
    context_length: int | None = None
    device: str = "cpu"
    batch_size: int = 256
    n_jobs: int = 0  # statistical members' worker processes (0: the CPUs this process may use)
    num_threads: int | None = None  # torch threads of the networks (None: as set)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per member, fit + predict
    last_members: np.ndarray | None = field(default=None, repr=False)
    backtests: aggregation.Backtests | None = field(default=None, repr=False)  # what fit saw (not saved)
    _networks: dict[str, Any] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------- member forecasts
    def network(self, member: Member):
        if member.source not in self._networks:
            from tsfm.pipeline import load_network

            self._networks[member.source] = load_network(member.source, device=self.device,
                                                         num_threads=self.num_threads)
        return self._networks[member.source]

    def network_forecasts(self, member: Member, heads: Sequence[SeriesSet], h: int) -> list[np.ndarray]:
        """Per head, ``[N, h, C, Q]`` quantiles of a network member (its own calibration off)."""
        from tsfm.pipeline import forecast, model_context

        model = self.network(member)
        context = model_context(model, self.context_length)
        return [forecast(model, head, h, GRID, log_scale=member.log_scale,
                         seasonal_adjustment=member.seasonal_adjustment, context_length=context,
                         batch_size=self.batch_size, device=self.device, nonnegative=False)[0] for head in heads]

    def stats_forecasts(self, member: Member, series: SeriesSet, cuts: list[list[int]], h: int,
                        refit: bool) -> tuple[np.ndarray, dict[str, int]]:
        """``[N, cuts, h, C, Q]`` of a statistical member at per-series cuts, channel by channel."""
        c, context = series.n_channels, stats_context(self.season)
        histories = [v[:, j] for v in series.values for j in range(c)]
        fits = sum(len(cut) if refit else 1 for cut in cuts) * c
        points = sum(min(max(cut), context) * (len(cut) if refit else 1) for cut in cuts) * c
        key = member.name if member.stats.model != "AutoARIMA" else next(
            (k for k, v in ARIMA_SETTINGS.items() if v == member.stats.options), "AutoARIMA")
        cost = stats_cost_s(key, fits, points, self.season)
        result = forecast_cuts(member.stats, histories, [cut for cut in cuts for _ in range(c)], h, GRID,
                               self.season, context=context, refit=refit,
                               n_jobs=(self.n_jobs or self.num_threads or available_cpus()) if cost > PARALLEL_S else 1)
        q = result.quantiles  # [N * C, cuts, h, Q]
        return q.reshape(len(series), c, *q.shape[1:]).transpose(0, 2, 3, 1, 4), result.errors

    # ------------------------------------------------------------- prediction
    def predict(self, series: SeriesSet, h: int, levels: Sequence[float],
                nonnegative: bool | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Quantiles ``[N, h, C, L]``, medians ``[N, h, C]`` and notes on members that failed somewhere."""
        stack, notes = [], []
        for member in self.members:
            start = time.perf_counter()
            if member.stats is not None:
                cuts = [[int(n)] for n in series.lengths]
                values, errors = self.stats_forecasts(member, series, cuts, h, refit=True)
                values = values[:, 0]
            else:
                try:
                    values = self.network_forecasts(member, [series], h)[0]
                    errors = {}
                except Exception as err:  # noqa: BLE001 - a member's failure degrades to the others
                    values = np.full((len(series), h, series.n_channels, len(GRID)), np.nan)
                    errors = {f"{type(err).__name__}: {err}".splitlines()[0]: len(series)}
            notes += failure_notes(member.name, errors, len(series) * series.n_channels, "forecasts")
            stack.append(values)
            self.seconds[member.name] = self.seconds.get(member.name, 0.0) + time.perf_counter() - start
        self.last_members = np.stack(stack)  # [M, N, h, C, Q] on GRID, for benchmarks and diagnostics
        combined = aggregate.apply(self.last_members, self.weights, GRID, self.widening)
        missing = ~np.isfinite(combined).all(axis=(1, 2, 3))
        if missing.any():
            raise InputError(f"no member of the ensemble could forecast {int(missing.sum())} series "
                             f"(e.g. {series.ids[int(np.argmax(missing))]})")
        windows = inference_windows(series, 512)
        values, mask = windows["past_values"], windows["past_mask"]
        combined = rules.floor_at_zero(rules.pin_constants(combined, values, mask), values, mask, nonnegative)
        quantiles = rules.interpolate_levels(combined, GRID, levels)
        median = rules.interpolate_levels(combined, GRID, [0.5])[..., 0]
        return quantiles, median, notes

    def forecast_frame(self, series: SeriesSet, h: int, levels: Sequence[float], names: Sequence[str],
                       nonnegative: bool | None = None) -> pd.DataFrame:
        quantiles, median, notes = self.predict(series, h, levels, nonnegative)
        self.notes = notes
        return make_frame(series, quantiles, list(levels), list(names), mean=median)

    # ------------------------------------------------------------- persistence
    def to_dict(self) -> dict[str, Any]:
        return {"format": aggregate.FORMAT, "members": [m.name for m in self.members], "levels": list(GRID),
                "weights": self.weights.tolist(), "widening": self.widening.tolist(), "horizon": self.horizon,
                "season": self.season, "windows": self.windows, "lines": self.lines,
                "specs": [{"name": m.name, "source": m.source, "log_scale": m.log_scale,
                           "seasonal_adjustment": m.seasonal_adjustment,
                           "stats": None if m.stats is None else {"model": m.stats.model,
                                                                  "options": dict(m.stats.options)}}
                          for m in self.members]}

    def save(self, directory: str | Path) -> Path:
        path = Path(directory) / FILE
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, directory: str | Path, **settings: Any) -> AutoEnsemble:
        saved = json.loads((Path(directory) / FILE).read_text())
        members = [Member(s["name"], s["source"], None if s["stats"] is None else
                          StatsMember(s["stats"]["model"], tuple(s["stats"]["options"].items()), s["name"]),
                          s["log_scale"], bool(s.get("seasonal_adjustment", False))) for s in saved["specs"]]
        weights = aggregate.check_weights(np.asarray(saved["weights"]), len(members), len(GRID))
        return cls(members, weights, np.asarray(saved["widening"], dtype=np.float64), int(saved["horizon"]),
                   int(saved["season"]), int(saved["windows"]), list(saved["lines"]), **settings)


def failure_notes(name: str, errors: dict[str, int], total: int, where: str) -> list[str]:
    if not errors:
        return []
    count = sum(errors.values())
    first = max(errors, key=errors.get)
    return [f"note: {name} failed on {min(count, total)} of {total} series in the {where} ({first}): "
            "the other members stand in there"]


# ----------------------------------------------------------------------------- choosing members
def choose_members(series: SeriesSet, h: int, sample: np.ndarray, windows: np.ndarray, budget_s: float,
                   plan: Any) -> tuple[list[Member], list[str]]:
    """Members within the budget (``ORDER``), and one phrase per member skipped and why."""
    season = series.freq_info.season
    context = stats_context(season)
    lengths = np.minimum(series.lengths, context).astype(np.float64) * series.n_channels
    points = float(lengths.sum() + lengths[sample].sum())  # final fits + one backtest fit per sampled series
    fits = float((len(series) + len(sample)) * series.n_channels)
    runs = float(len(series) + windows[sample].sum())  # network windows
    chosen, skipped, spent = [], [], 0.0
    for name in ORDER:
        options: tuple = ()
        if name in NETWORKS:
            cost = COST_MS[name] * runs / 1000
        elif name == "AutoARIMA":
            if season > ARIMA_MAX_SEASON:
                skipped.append(f"AutoARIMA (season {season} > {ARIMA_MAX_SEASON})")
                continue
            exact = season <= 12 and points <= ARIMA_EXACT_POINTS
            for key in ("AutoARIMA", "AutoARIMA-approx", "AutoARIMA-narrow")[0 if exact else 1:]:
                options, cost = ARIMA_SETTINGS[key], stats_cost_s(key, fits, points, season)
                if spent + cost <= budget_s:
                    break
        else:
            cost = stats_cost_s(name, fits, points, season)
        if name != DEFAULT_MODEL and spent + cost > budget_s:
            skipped.append(f"{name} (est. {cost:.0f} s over the {budget_s:.0f} s budget)")
            continue
        spent += cost
        if name == DEFAULT_MODEL:
            chosen.append(suite_member(plan))
        elif name in NETWORKS:
            chosen.append(Member(name, name))
        else:
            chosen.append(Member(name, stats=StatsMember(name, options, name)))
    return chosen, skipped


def suite_member(plan: Plan) -> Member:
    """The ttm suite as a member: the checkpoint and value rules its plan chose for the series."""
    return Member(DEFAULT_MODEL, plan.source, log_scale=plan.log_scale, seasonal_adjustment=plan.seasonal_adjustment)


def describe_member(member: Member) -> str:
    if member.name == DEFAULT_MODEL:
        return f"ttm ({member.source})"
    if member.stats is not None and member.stats.options:
        return f"{member.name} ({'narrow search' if member.stats.options == NARROW_ARIMA else 'approximation'})"
    return member.name


# ----------------------------------------------------------------------------- fitting
def fit(series: SeriesSet, h: int, *, context_length: int | None = None, log_scale: str | None = None,
        seasonal_adjustment: bool | None = None, calibrate: bool = CALIBRATE, device: str = "cpu",
        batch_size: int = 256, n_jobs: int | None = None,
        num_threads: int | None = None, budget_s: float = BUDGET_S, max_windows: int = MAX_WINDOWS,
        seed: int = 0) -> AutoEnsemble:
    """Choose the members, backtest them on the user's history, fit weights and calibration."""
    from tsfm.pipeline import plan as make_plan

    season = series.freq_info.season
    plan = make_plan(DEFAULT_SOURCE, series, context_length=context_length, log_scale=log_scale,
                     calibration_windows=0, seasonal_adjustment=seasonal_adjustment)
    settings = {"context_length": context_length, "device": device, "batch_size": batch_size,
                "n_jobs": int(n_jobs or 0), "num_threads": num_threads}
    no_change = np.zeros(len(rules.interval_pairs(GRID)))
    windows = allowed_windows(series, h, season, max_windows)
    rows = np.flatnonzero(windows > 0)
    if rows.size == 0:
        member = suite_member(plan)
        line = (f"ensemble auto: no series is long enough for a backtest of {h} steps "
                f"(each needs {min_context(h, season) + h} points): {describe_member(member)} alone")
        return AutoEnsemble([member], np.ones((1, len(GRID))), no_change, h, season, 0, [line], **settings)
    sample = rows if rows.size <= SAMPLE_SERIES else np.sort(
        np.random.default_rng(seed).choice(rows, SAMPLE_SERIES, replace=False))
    members, skipped = choose_members(series, h, sample, windows, budget_s, plan)
    ensemble = AutoEnsemble(members, np.full((len(members), len(GRID)), 1.0 / len(members)), no_change, h, season,
                            **settings)
    data, available, notes = backtests(ensemble, series.subset(sample), h, windows[sample])
    keep = available >= 0.5
    for member, share in zip(members, available):
        if share < 0.5:
            notes.append(f"note: {member.name} forecast only {share:.0%} of the backtest points: left out")
    if not keep.any():
        keep[0] = True
    ensemble.members = [m for m, k in zip(members, keep) if k]
    data = aggregation.Backtests(data.forecasts[keep], data.actual, data.scale, data.window, data.unit)
    rule = weight_rule(ensemble.members)
    ensemble.weights = aggregation.fit_weights(data, GRID, seed=seed, **rule)
    ensemble.widening = aggregation.calibration(data, GRID, seed=seed, **rule) if calibrate else no_change
    ensemble.windows, ensemble.backtests = data.n_windows, data
    ensemble.lines = summary(ensemble, skipped, len(sample), len(series), calibrate) + notes
    return ensemble


def weight_rule(members: list[Member], prior: str | None = None, count: str | None = None) -> dict[str, Any]:
    """``fit_weights`` options: what n counts (``aggregation.COUNT``) and the prior (``PRIOR``) as a vector."""
    prior = prior or PRIOR
    vector = None
    if prior == "default":
        vector = np.array([float(m.name == DEFAULT_MODEL) for m in members])
        vector = vector / vector.sum() if vector.sum() > 0 else None
    return {"count": count or aggregation.COUNT, "prior": vector}


def backtests(ensemble: AutoEnsemble, series: SeriesSet, h: int,
              windows: np.ndarray) -> tuple[aggregation.Backtests, np.ndarray, list[str]]:
    """Every member's forecasts of every series' backtest windows (window k holds out k x h points),
    flattened to scored points; the share of points each member forecast; notes on failures."""
    c, notes = series.n_channels, []
    oldest = int(windows.max())
    heads, actual = {}, {}
    for k in range(oldest, 0, -1):
        rows = np.flatnonzero(windows >= k)
        sub = series.subset(rows)
        head, futures = next(iter(backtest_windows(sub, h, k)))
        heads[k] = (rows, head)
        actual[k] = np.stack([f / sub.scale_of(j) for j, f in enumerate(futures)])  # [N_k, h, C] stored units
    per_member = []
    for member in ensemble.members:
        start = time.perf_counter()
        if member.stats is None:
            try:
                out = ensemble.network_forecasts(member, [heads[k][1] for k in range(oldest, 0, -1)], h)
                errors = {}
            except Exception as err:  # noqa: BLE001
                out = [np.full((len(heads[k][0]), h, c, len(GRID)), np.nan) for k in range(oldest, 0, -1)]
                errors = {f"{type(err).__name__}: {err}".splitlines()[0]: len(series)}
            per_member.append(dict(zip(range(oldest, 0, -1), out)))
        else:
            cuts = [[int(n - k * h) for k in range(int(w), 0, -1)] for n, w in zip(series.lengths, windows)]
            values, errors = ensemble.stats_forecasts(member, series, cuts, h, refit=False)
            per_member.append({k: values[rows, windows[rows] - k] for k, (rows, _) in heads.items()})
        notes += failure_notes(member.name, errors, len(series) * c, "backtests")
        ensemble.seconds[member.name] = ensemble.seconds.get(member.name, 0.0) + time.perf_counter() - start
    scale = np.array([[seasonal_error(v[:, j], ensemble.season) for j in range(c)] for v in series.values])  # [N, C]
    forecasts, ys, scales, window_ids, units = [], [], [], [], []
    for k, (rows, _) in heads.items():
        forecasts.append(np.stack([m[k] for m in per_member]).reshape(len(per_member), -1, len(GRID)))
        ys.append(actual[k].reshape(-1))
        scales.append(np.broadcast_to(scale[rows][:, None, :], actual[k].shape).reshape(-1))
        window_ids.append(np.full(actual[k].size, k))
        unit = (rows[:, None, None] * c + np.arange(c)[None, None, :]) * (oldest + 1) + k
        units.append(np.broadcast_to(unit, actual[k].shape).reshape(-1))
    data = aggregation.Backtests(np.concatenate(forecasts, axis=1), np.concatenate(ys), np.concatenate(scales),
                                 np.concatenate(window_ids), np.concatenate(units))
    scored = np.isfinite(data.actual)
    available = np.isfinite(data.forecasts[:, scored]).all(axis=2).mean(axis=1) if scored.any() \
        else np.zeros(len(per_member))
    return data, available, notes


def summary(ensemble: AutoEnsemble, skipped: list[str], n_sample: int, n_series: int, calibrate: bool) -> list[str]:
    """Two lines for the user: members (and those skipped), then weights at 0.1/0.5/0.9 and calibration."""
    sample = f"{n_sample} of {n_series} series" if n_sample < n_series else f"{n_series} series"
    fitted = (f"weights fitted on {ensemble.windows} backtests of {ensemble.horizon} steps ({sample})"
              if ensemble.windows >= aggregation.MIN_WINDOWS
              else f"prior weights (one backtest window of {ensemble.horizon} steps fits the data)")
    line = f"ensemble auto: {', '.join(describe_member(m) for m in ensemble.members)}"
    line += f"; skipped: {', '.join(skipped)}" if skipped else ""
    shown = [GRID.index(q) for q in (0.1, 0.5, 0.9)]
    weights = ", ".join(f"{m.name} " + "/".join(f"{ensemble.weights[i, j]:.2f}" for j in shown)
                        for i, m in enumerate(ensemble.members))
    if calibrate:
        pairs = rules.interval_pairs(GRID)
        widths = ", ".join(f"{round(100 * (GRID[hi] - GRID[lo]))}% {200 * w:+.0f}%"
                           for (lo, hi), w in zip(pairs, ensemble.widening))
        calibration = f"calibrated (conformal, leave-one-window-out; interval width change: {widths})"
    else:
        calibration = "not calibrated"
    return [f"{line}; {fitted}", f"weights at 0.1/0.5/0.9: {weights}; {calibration}"]
