"""The rules around a forecasting network, in numpy: what the package and the edge runtime share.

A network maps a context window to quantiles for its own horizon. Around it: windows are cut to
the context (left-padded with NaN, marked unobserved); seasonal series may be shown to the
network seasonally adjusted, and chosen series forecast in log space;
horizons past the network's are rolled out; a constant history gets a constant forecast; series
that never went negative get no negative forecast; quantiles come back sorted, at the levels
asked for. Every rule is written here once, so a forecast from an exported file equals the
package's.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

StepFn = Callable[[np.ndarray, np.ndarray, np.ndarray, "np.ndarray | None", "np.ndarray | None"], np.ndarray]
"""One network call: values, mask [N, L, C], freq ids [N], past/future covariates (or None) -> [N, H, C, Q]."""

LOG_SCALE_MODES = ("seasonal", "positive", "never")
LOG_SCALE_MAX_RATIO = 100.0  # a context whose largest value exceeds this times its smallest stays raw
SEASONALITY_Z = 1.645  # the 90% one-sided bound of the seasonality test (as in the M4 competition's benchmarks)
MAX_HORIZON = 10_000
"""Longest horizon a forecast accepts. Past the network's own horizon every step is forecast from
earlier forecasts (a rollout of Q paths), so time grows with it and the forecast fades to the
paths' spread. 10,000 steps is 27 years of daily data or 14 months of hourly data."""


# ----------------------------------------------------------------------------- windows
def fit_context(values: np.ndarray, mask: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """``[N, T, C]`` windows cut to their last ``length`` steps; shorter ones left-padded with NaN (mask 0)."""
    steps = values.shape[1]
    if steps >= length:
        return np.ascontiguousarray(values[:, steps - length:]), np.ascontiguousarray(mask[:, steps - length:])
    pad = ((0, 0), (length - steps, 0), (0, 0))
    return np.pad(values, pad, constant_values=np.nan), np.pad(mask, pad, constant_values=0.0)


def observed(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Where a value counts: flagged observed and finite (NaN always counts as missing)."""
    return (mask > 0) & np.isfinite(values)


MIN_OBSERVED = 3  # a series needs this many observed values to be forecast (one or two fix no level or slope)


def short_histories(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``[K, 2]`` (series, channel) pairs with some observed values but fewer than ``MIN_OBSERVED``
    (none at all is ``blind_contexts``' more specific case)."""
    counts = observed(values, mask).sum(axis=1)
    return np.argwhere((counts > 0) & (counts < MIN_OBSERVED))


def blind_contexts(values: np.ndarray, mask: np.ndarray, context: int) -> np.ndarray:
    """``[K, 2]`` (series, channel) pairs with no observed value in their last ``context`` steps: the
    network would see only padding and forecast about zero, so callers refuse them."""
    return np.argwhere(~observed(values[:, -context:], mask[:, -context:]).any(axis=1))


# ----------------------------------------------------------------------------- magnitudes
# Largest |values| the networks' float32 arithmetic handles as they are; a series outside is divided
# by a power of ten (in float64, before the float32 cast) and its forecast multiplied back.
SAFE_MAGNITUDE = (1e-6, 1e12)


def magnitude_scales(biggest: np.ndarray) -> np.ndarray | None:
    """Float64 powers of ten, one per entry of ``biggest`` (each series' largest |value|), for the
    series outside ``SAFE_MAGNITUDE`` (1e300 would overflow float32, 1e-300 would become 0), 1
    elsewhere; None when every series is inside."""
    biggest = np.asarray(biggest, dtype=np.float64)
    lo, hi = SAFE_MAGNITUDE
    outside = np.isfinite(biggest) & (biggest > 0) & ((biggest < lo) | (biggest > hi))
    if not outside.any():
        return None
    with np.errstate(divide="ignore", invalid="ignore"):
        # 10**-324 is 0; the subnormal powers above it are inexact, but a series is divided and its
        # forecast multiplied by the same number
        power = np.clip(np.floor(np.log10(np.where(outside, biggest, 1.0))), -323, 307)
    return np.where(outside, 10.0 ** power, 1.0)


# ----------------------------------------------------------------------------- value space
def log_scale_applies(mode: str, season: int) -> bool:
    """Whether ``mode`` forecasts any positive context of data with this ``season`` in log space."""
    if mode not in LOG_SCALE_MODES:
        raise ValueError(f"log_scale must be one of {', '.join(LOG_SCALE_MODES)}, got {mode!r}")
    return mode == "positive" or (mode == "seasonal" and season > 1)


def log_scale_channels(values: np.ndarray, mask: np.ndarray, mode: str, season: int) -> np.ndarray:
    """[N, C] boolean: channels forecast in log space under ``mode``.

    "positive": every channel whose observed context is strictly positive; "seasonal": the same,
    on data of a seasonal frequency only; "never": none. A log turns a seasonal swing that grows
    with the level into a constant one (Box-Cox with lambda 0). A context spanning more than
    ``LOG_SCALE_MAX_RATIO`` between its smallest and largest value stays raw: near-zero values
    would dominate its logs.
    """
    n, _, c = values.shape
    if not log_scale_applies(mode, season):
        return np.zeros((n, c), dtype=bool)
    seen = observed(values, mask)
    smallest = np.where(seen, values, np.inf).min(axis=1)
    largest = np.where(seen, values, -np.inf).max(axis=1)
    return seen.any(axis=1) & (smallest > 0) & (largest <= LOG_SCALE_MAX_RATIO * smallest)


def to_log_space(values: np.ndarray, mask: np.ndarray, logged: np.ndarray) -> np.ndarray:
    """``values`` with the ``logged`` [N, C] channels replaced by their logs (NaN where unobserved)."""
    positive = observed(values, mask) & (values > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(np.where(positive, values, np.nan))
    return np.where(logged[:, None, :], logs, values).astype(np.float32)


def from_log_space(quantiles: np.ndarray, log_values: np.ndarray, mask: np.ndarray, logged: np.ndarray) -> np.ndarray:
    """Quantiles [N, H, C, Q] of the ``logged`` channels taken back from log space.

    A quantile of the log is the log of the quantile, so ``exp`` maps each level to itself. Before
    it, log forecasts are kept within the context's log range widened by that range on each side:
    a trend extrapolated in log space grows exponentially, and this bounds the growth to the ratio
    the history itself spans.
    """
    if not logged.any():
        return quantiles
    seen = observed(log_values, mask)
    lo = np.where(logged, np.where(seen, log_values, np.inf).min(axis=1), 0.0)
    hi = np.where(logged, np.where(seen, log_values, -np.inf).max(axis=1), 0.0)
    span = hi - lo
    bounded = np.clip(quantiles, (lo - span)[:, None, :, None], (hi + span)[:, None, :, None])
    back = np.exp(bounded.astype(np.float64)).astype(np.float32)
    return np.where(logged[:, None, :, None], back, quantiles).astype(np.float32)


def seasonal_factors(values: np.ndarray, mask: np.ndarray, season: int, horizon: int
                     ) -> tuple[np.ndarray, np.ndarray] | None:
    """Classical multiplicative seasonal indices: factors [N, T, C] over the context and [N, horizon, C]
    over the forecast (1 for channels that do not qualify), or None when none does.

    A channel qualifies when its observed context is strictly positive, has no gap after its first
    observation, holds at least three seasons, and its autocorrelation at the seasonal lag exceeds
    ``SEASONALITY_Z`` standard errors (Bartlett). Its indices are the per-phase means of its ratios
    to a centred moving average of one season (2 x m for an even m), normalised to mean 1: the
    decomposition the M4 competition's statistical benchmarks forecast after. Networks see few
    seasons in a short context; divided out, the season no longer has to be inferred from them.
    """
    t = values.shape[1]
    m = int(season)
    if m < 2:
        return None
    seen = observed(values, mask)
    count = seen.sum(axis=1)
    first = np.argmax(seen, axis=1)
    positive = np.where(seen, values > 0, True).all(axis=1)
    qualify = (count >= 3 * m) & (count == t - first) & positive
    if not qualify.any():
        return None
    y = np.where(seen, values, 0.0).astype(np.float64)
    mean = y.sum(axis=1) / np.maximum(count, 1)
    x = np.where(seen, y - mean[:, None, :], 0.0)  # zeros outside the observed run add nothing to the sums
    spread = (x * x).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.stack([(x[:, k:] * x[:, :-k]).sum(axis=1) for k in range(1, m + 1)], axis=-1) / spread[..., None]
        bound = SEASONALITY_Z * np.sqrt((1 + 2 * (r[..., :-1] ** 2).sum(axis=-1)) / np.maximum(count, 1))
    qualify &= (spread > 0) & (np.abs(r[..., -1]) > bound)
    if not qualify.any():
        return None
    with np.errstate(invalid="ignore"):
        ratio = y / centred_moving_average(y, first, m)
    usable = np.isfinite(ratio) & qualify[:, None, :]
    phase_of = (t - 1 - np.arange(t)) % m  # phases counted back from the last step
    one_hot = (phase_of[:, None] == np.arange(m)[None, :]).astype(np.float64)
    totals = np.einsum("ntc,tp->ncp", np.where(usable, ratio, 0.0), one_hot)
    counts = np.einsum("ntc,tp->ncp", usable.astype(np.float64), one_hot)
    with np.errstate(divide="ignore", invalid="ignore"):
        indices = totals / counts
        indices = indices / indices.mean(axis=-1, keepdims=True)
    indices = np.where(qualify[..., None], indices, 1.0)  # [N, C, m]
    past = indices[:, :, phase_of].transpose(0, 2, 1)
    ahead = indices[:, :, (-np.arange(1, horizon + 1)) % m].transpose(0, 2, 1)
    return past, ahead


def centred_moving_average(y: np.ndarray, first: np.ndarray, m: int) -> np.ndarray:
    """[N, T, C] moving average of one season centred on each step (2 x m for an even m), NaN where
    its window reaches before a channel's ``first`` [N, C] observed step or past either end; ``y``
    is zero before ``first``."""
    n, t, c = y.shape
    sums = np.concatenate([np.zeros((n, 1, c)), np.cumsum(y, axis=1)], axis=1)
    average = (sums[:, m:] - sums[:, :-m]) / m  # window [i, i + m) at index i
    starts = np.arange(t - m + 1)[None, :, None]
    average = np.where(starts >= first[:, None, :], average, np.nan)
    centred = np.full((n, t, c), np.nan)
    if m % 2:
        centred[:, (m - 1) // 2:t - (m - 1) // 2] = average
    else:
        centred[:, m // 2:t - m // 2] = (average[:, :-1] + average[:, 1:]) / 2
    return centred


# ----------------------------------------------------------------------------- rollout
def _chunk(future_exog: np.ndarray | None, start: int, step: int) -> np.ndarray | None:
    """Covariates for horizon steps ``[start, start + step)``, NaN (unknown) past the given ones."""
    if future_exog is None:
        return None
    chunk = future_exog[:, start:start + step]
    if chunk.shape[1] < step:
        pad = np.full((chunk.shape[0], step - chunk.shape[1], chunk.shape[2]), np.nan, dtype=np.float32)
        chunk = np.concatenate([chunk, pad], axis=1)
    return np.ascontiguousarray(chunk, dtype=np.float32)


def rollout(
    step_fn: StepFn,
    values: np.ndarray,
    mask: np.ndarray,
    freq_id: np.ndarray,
    horizon: int,
    levels: Sequence[float],
    step: int,
    past_exog: np.ndarray | None = None,
    future_exog: np.ndarray | None = None,
) -> np.ndarray:
    """Sorted quantiles [N, horizon, C, Q] from a network forecasting ``step`` steps per call.

    Past its own horizon, every quantile path is fed back as context (Chronos-Bolt style): the
    Q x Q values per step are reduced to empirical quantiles, and those become the next paths.
    With covariates (``past_exog`` [N, L, E]; ``future_exog`` [N, h, E], NaN where not known
    ahead, or None when none is known), each chunk's covariates follow the paths into the context.
    """
    levels = np.asarray(levels)
    q = len(levels)
    send_future = future_exog is not None
    if past_exog is not None and future_exog is None:  # nothing known ahead: the context extends them as unknown
        future_exog = np.full((len(past_exog), horizon, past_exog.shape[2]), np.nan, dtype=np.float32)
    first = _chunk(future_exog, 0, step) if past_exog is not None and send_future else None
    chunks = [step_fn(values, mask, freq_id, past_exog, first)]
    done = min(step, horizon)
    n, context_len, c = values.shape
    # one path per quantile level: path j continues the history with quantile j of every chunk so far
    paths, paths_mask, path_freq = np.repeat(values, q, axis=0), np.repeat(mask, q, axis=0), np.repeat(freq_id, q)
    paths_exog = None if past_exog is None else np.repeat(past_exog, q, axis=0)
    while done < horizon:
        latest = chunks[-1].transpose(0, 3, 1, 2).reshape(n * q, step, c)
        paths = np.concatenate([paths, latest], axis=1)[:, -context_len:]
        paths_mask = np.concatenate([paths_mask, np.ones_like(latest)], axis=1)[:, -context_len:]
        ahead = None
        if paths_exog is not None:
            seen = np.repeat(_chunk(future_exog, done - step, step), q, axis=0)
            paths_exog = np.concatenate([paths_exog, seen], axis=1)[:, -context_len:]
            ahead = np.repeat(_chunk(future_exog, done, step), q, axis=0) if send_future else None
        out = step_fn(paths, paths_mask, path_freq, paths_exog, ahead)
        samples = out.reshape(n, q, step, c, q).transpose(0, 2, 3, 1, 4).reshape(n, step, c, q * q)
        chunks.append(np.quantile(samples, levels, axis=-1).transpose(1, 2, 3, 0).astype(np.float32))
        done += step
    return np.sort(np.concatenate(chunks, axis=1)[:, :horizon], axis=-1)


# ----------------------------------------------------------------------------- after the network
def constant_channels(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """[N, C] boolean: channels whose observed context is a single repeated value."""
    seen = observed(values, mask)
    big = np.where(seen, values, -np.inf).max(axis=1)
    small = np.where(seen, values, np.inf).min(axis=1)
    return seen.any(axis=1) & (big == small)


def pin_constants(quantiles: np.ndarray, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """A constant history gets an exactly constant forecast (the network's output is only near it)."""
    const = constant_channels(values, mask)
    if not const.any():
        return quantiles
    seen = observed(values, mask)
    level = np.where(seen, values, 0.0).sum(axis=1) / np.maximum(seen.sum(axis=1), 1)  # [N, C]
    pinned = np.broadcast_to(level[:, None, :, None], quantiles.shape)
    return np.where(const[:, None, :, None], pinned, quantiles).astype(np.float32)


def nonnegative_channels(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """[N, C] boolean: channels with observed values and no negative one among them."""
    seen = observed(values, mask)
    return seen.any(axis=1) & ~(np.where(seen, values, 0.0) < 0).any(axis=1)


def floor_at_zero(quantiles: np.ndarray, values: np.ndarray, mask: np.ndarray,
                  nonnegative: bool | None = None) -> np.ndarray:
    """Quantiles below zero raised to zero where the series cannot go negative.

    Solar power at night, counts and sales have a hard floor at zero that a network only
    approaches. ``nonnegative=None`` decides per channel (a context with no negative value gets no
    negative forecast), ``True`` floors every channel, ``False`` none. Raising values to a floor
    keeps quantiles sorted and never worsens the pinball loss of a value at or above the floor.
    """
    if nonnegative is False:
        return quantiles
    floored = (nonnegative_channels(values, mask) if nonnegative is None
               else np.ones((values.shape[0], values.shape[2]), dtype=bool))
    if not floored.any():
        return quantiles
    return np.where(floored[:, None, :, None], np.maximum(quantiles, 0.0), quantiles).astype(np.float32)


def _processed(step_fn: StepFn, values: np.ndarray, mask: np.ndarray, freq_id: np.ndarray, horizon: int,
               levels: Sequence[float], step: int, log_scale: str, season: int, nonnegative: bool | None,
               past_exog: np.ndarray | None, future_exog: np.ndarray | None,
               seasonal_adjustment: bool = False) -> np.ndarray:
    """seasonal adjustment -> value space -> rollout -> back -> constants pinned -> floor at zero ->
    seasons restored, on context windows."""
    factors = seasonal_factors(values, mask, season, horizon) if seasonal_adjustment else None
    if factors is not None:
        values = np.where(observed(values, mask), values / factors[0], values).astype(np.float32)
    logged = log_scale_channels(values, mask, log_scale, season)
    model_values = to_log_space(values, mask, logged) if logged.any() else values
    raw = rollout(step_fn, model_values, mask, freq_id, horizon, levels, step, past_exog, future_exog)
    raw = from_log_space(raw, model_values, mask, logged)
    result = floor_at_zero(pin_constants(raw, values, mask), values, mask, nonnegative)
    return result if factors is None else (result * factors[1][..., None]).astype(np.float32)


# ----------------------------------------------------------------------------- calibration
def interval_pairs(levels: Sequence[float]) -> list[tuple[int, int]]:
    """Index pairs (lower, upper) of the central intervals the levels hold: 0.1 with 0.9, 0.2 with 0.8..."""
    levels = [round(float(q), 9) for q in levels]
    return [(i, levels.index(round(1 - q, 9))) for i, q in enumerate(levels) if q < 0.5 and round(1 - q, 9) in levels]


def conformal_widening(quantiles: np.ndarray, actual: np.ndarray, observed_actual: np.ndarray,
                       levels: Sequence[float]) -> np.ndarray:
    """How much to widen each central interval, in units of its own width, so that it covers its
    nominal share of the ``actual`` values (conformalized quantile regression, normalised by width).

    ``quantiles`` [N, h, C, Q] are backtest forecasts, ``actual`` [N, h, C] what happened
    (``observed_actual`` says where it is known). For the interval of levels (a, 1 - a) the score of
    an outcome is how far it falls outside, over the interval's width (negative inside); the
    widening is the score's ``ceil((n + 1)(1 - 2a)) / n`` empirical quantile, so that on
    exchangeable windows the widened interval covers at least 1 - 2a. It is 0 (no change) for an
    interval with too few scores for that quantile, and at least -0.5 (an interval never inverts).
    Returns one value per pair of ``interval_pairs(levels)``.
    """
    out = []
    for lo, hi in interval_pairs(levels):
        lower, upper = quantiles[..., lo], quantiles[..., hi]
        width = upper - lower
        usable = observed_actual & np.isfinite(actual) & (width > 0)
        scores = (np.maximum(lower - actual, actual - upper)[usable] / width[usable]).astype(np.float64)
        n, coverage = scores.size, 1.0 - 2.0 * float(levels[lo])
        rank = int(np.ceil((n + 1) * coverage))
        out.append(max(float(np.sort(scores)[rank - 1]), -0.5) if 1 <= rank <= n else 0.0)
    return np.asarray(out, dtype=np.float64)


def widen(quantiles: np.ndarray, widening: np.ndarray, levels: Sequence[float]) -> np.ndarray:
    """Each central interval moved outward (inward for a negative value) by ``widening`` times its width;
    quantiles re-sorted, so levels never cross. The median stays where it is: an interval narrowed
    past it stops there (an asymmetric interval moved inward by its width can pass it, and the sort
    would then hand the median's place to another level)."""
    out = quantiles.astype(np.float64).copy()
    rounded = [round(float(q), 9) for q in levels]
    median = quantiles[..., rounded.index(0.5)].astype(np.float64) if 0.5 in rounded else None
    for (lo, hi), c in zip(interval_pairs(levels), widening):
        width = quantiles[..., hi] - quantiles[..., lo]
        out[..., lo] = quantiles[..., lo] - c * width
        out[..., hi] = quantiles[..., hi] + c * width
        if median is not None:
            out[..., lo], out[..., hi] = np.minimum(out[..., lo], median), np.maximum(out[..., hi], median)
    return np.sort(out, axis=-1).astype(np.float32)


@dataclass(frozen=True)
class Backtest:
    """One backtest inside the histories: the series that took part and what was forecast for them."""

    rows: np.ndarray  # [R] indices of the series taking part
    values: np.ndarray  # [R, context, C] their context windows before the cut
    mask: np.ndarray  # [R, context, C]
    forecast: np.ndarray  # [R, horizon, C, Q]
    actual: np.ndarray  # [R, horizon, C] what followed the cut
    known: np.ndarray  # [R, horizon, C] where ``actual`` is observed


CALIBRATION_SERIES = 256
"""At most this many series (evenly spaced through the call) take part in each calibration backtest:
a width factor is one quantile of their pooled scores, which 256 series already fix to within the
spread between series; more series cost a forward pass each, not precision."""


def evenly_spaced(rows: np.ndarray, at_most: int) -> np.ndarray:
    """``rows`` itself, or ``at_most`` of them spread evenly from the first to the last."""
    if rows.size <= at_most:
        return rows
    return rows[np.unique(np.linspace(0, rows.size - 1, at_most).round().astype(np.int64))]


def backtests(step_fn: StepFn, values: np.ndarray, mask: np.ndarray, freq_id: np.ndarray, horizon: int,
              levels: Sequence[float], step: int, context: int, windows: int, **rules: object) -> list[Backtest]:
    """The last ``windows`` backtests of ``horizon`` steps inside the given histories [N, T, C]:
    backtest k forecasts the ``horizon`` steps that follow its history cut ``k * horizon`` steps
    before the end, under the same rules as the forecast. A series takes part in a backtest only
    when its cut history holds at least ``horizon`` observed steps, and then only
    ``CALIBRATION_SERIES`` of those, evenly spaced."""
    n_steps, done = values.shape[1], []
    for k in range(1, windows + 1):
        cut = n_steps - k * horizon
        if cut < horizon:
            break
        rows = np.flatnonzero((observed(values[:, :cut], mask[:, :cut]).any(axis=2)).sum(axis=1) >= horizon)
        if rows.size == 0:
            break
        rows = evenly_spaced(rows, CALIBRATION_SERIES)
        head_values, head_mask = fit_context(values[rows, :cut], mask[rows, :cut], context)
        quantiles = _processed(step_fn, head_values, head_mask, freq_id[rows], horizon, levels, step,
                               past_exog=None, future_exog=None, **rules)
        done.append(Backtest(rows, head_values, head_mask, quantiles, values[rows, cut:cut + horizon],
                             observed(values[rows, cut:cut + horizon], mask[rows, cut:cut + horizon])))
    return done


def backtest_widening(step_fn: StepFn, values: np.ndarray, mask: np.ndarray, freq_id: np.ndarray, horizon: int,
                      levels: Sequence[float], step: int, context: int, windows: int, **rules: object) -> np.ndarray:
    """``conformal_widening`` from the scores of all series in all ``backtests`` together (no
    change without any)."""
    runs = backtests(step_fn, values, mask, freq_id, horizon, levels, step, context, windows, **rules)
    if not runs:
        return np.zeros(len(interval_pairs(levels)))
    return conformal_widening(np.concatenate([b.forecast for b in runs]), np.concatenate([b.actual for b in runs]),
                              np.concatenate([b.known for b in runs]), levels)


def forecast(
    step_fn: StepFn,
    values: np.ndarray,
    mask: np.ndarray,
    freq_id: np.ndarray,
    horizon: int,
    levels: Sequence[float],
    step: int,
    *,
    context: int | None = None,
    log_scale: str = "never",
    season: int = 1,
    nonnegative: bool | None = None,
    calibration_windows: int = 0,
    seasonal_adjustment: bool = False,
    past_exog: np.ndarray | None = None,
    future_exog: np.ndarray | None = None,
) -> np.ndarray:
    """Quantiles [N, horizon, C, Q] at the network's ``levels`` from histories [N, T, C] (the last
    ``context`` steps are the network's context): seasonal adjustment (``seasonal_factors``, when
    asked) -> value space -> rollout -> back -> constants pinned -> floor at zero -> seasons
    restored. With ``calibration_windows`` > 0, the central intervals are then widened (or narrowed)
    by what that many backtests inside the histories say they cover (``backtest_widening``).
    Seasonal adjustment and calibration apply without covariates only."""
    context = context or values.shape[1]
    rules = {"log_scale": log_scale, "season": season, "nonnegative": nonnegative,
             "seasonal_adjustment": seasonal_adjustment and past_exog is None}
    window_values, window_mask = fit_context(values, mask, context)
    result = _processed(step_fn, window_values, window_mask, freq_id, horizon, levels, step,
                        past_exog=past_exog, future_exog=future_exog, **rules)
    if calibration_windows > 0 and past_exog is None:
        widening = backtest_widening(step_fn, values, mask, freq_id, horizon, levels, step, context,
                                     calibration_windows, **rules)
        result = floor_at_zero(pin_constants(widen(result, widening, levels), window_values, window_mask),
                               window_values, window_mask, nonnegative)
    return result


def check_levels(model_levels: Sequence[float], levels: Sequence[float]) -> None:
    """``ValueError`` (one line) for levels outside the model's range: quantiles are never extrapolated."""
    lo, hi = min(model_levels), max(model_levels)
    bad = [q for q in levels if not lo - 1e-9 <= q <= hi + 1e-9]
    if bad:
        raise ValueError(
            f"quantile levels {', '.join(f'{q:g}' for q in bad)} are outside the model's range [{lo:g}, {hi:g}]: "
            f"ask for levels inside it (--level up to {round(100 * (hi - lo))})"
        )


def interpolate_levels(values: np.ndarray, model_levels: Sequence[float], levels: Sequence[float]) -> np.ndarray:
    """Quantiles at ``levels`` from the model's levels (last axis), linear in between; no extrapolation."""
    check_levels(model_levels, levels)
    model_levels = np.asarray(model_levels, dtype=np.float64)
    idx = np.searchsorted(model_levels, np.asarray(levels, dtype=np.float64) - 1e-12)
    idx = np.clip(idx, 1, len(model_levels) - 1)
    left, right = model_levels[idx - 1], model_levels[idx]
    weight = ((np.asarray(levels) - left) / (right - left)).astype(values.dtype)
    return values[..., idx - 1] * (1 - weight) + values[..., idx] * weight
