"""The forecasting path every interface shares: windows -> model -> quantile arrays.

Kept free of Lightning and GluonTS so that ``tsfm forecast`` starts fast. Horizons longer than the
model's are rolled out Chronos-Bolt style: every quantile path is fed back as context, the Q x Q
resulting values per step are reduced to empirical quantiles, and those become the next paths.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from tsfm.errors import InputError
from tsfm.models.base import ForecastModel


def interpolate_levels(values: np.ndarray, model_levels: Sequence[float], levels: Sequence[float]) -> np.ndarray:
    """Quantiles at ``levels`` from the model's levels (last axis), linear in between; no extrapolation."""
    model_levels = np.asarray(model_levels, dtype=np.float64)
    lo, hi = model_levels[0], model_levels[-1]
    bad = [q for q in levels if not lo - 1e-9 <= q <= hi + 1e-9]
    if bad:
        raise InputError(
            f"quantile levels {', '.join(str(q) for q in bad)} are outside the model's range [{lo}, {hi}]: "
            f"ask for levels inside it (e.g. --level up to {round(100 * (hi - lo))})"
        )
    idx = np.searchsorted(model_levels, np.asarray(levels, dtype=np.float64) - 1e-12)
    idx = np.clip(idx, 1, len(model_levels) - 1)
    left, right = model_levels[idx - 1], model_levels[idx]
    weight = ((np.asarray(levels) - left) / (right - left)).astype(values.dtype)
    return values[..., idx - 1] * (1 - weight) + values[..., idx] * weight


def _run_batched(
    model: ForecastModel,
    past_values: np.ndarray,
    past_mask: np.ndarray,
    freq_id: np.ndarray,
    batch_size: int,
    device: torch.device,
    past_exog: np.ndarray | None = None,
    future_exog: np.ndarray | None = None,
) -> np.ndarray:
    """One model call over all windows, in batches: [N, L, C] (+ exog [N, L, E], [N, H, E]) -> [N, H, C, Q]."""
    outputs = []

    def batch(array: np.ndarray | None, start: int, stop: int) -> torch.Tensor | None:
        return None if array is None else torch.from_numpy(array[start:stop]).to(device)

    with torch.inference_mode():
        for start in range(0, len(past_values), batch_size):
            stop = start + batch_size
            args = [batch(a, start, stop) for a in (past_values, past_mask, freq_id, past_exog, future_exog)]
            outputs.append(model(*args).float().cpu().numpy())
    return np.concatenate(outputs, axis=0)


def _exog_chunk(future_exog: np.ndarray | None, start: int, step: int) -> np.ndarray | None:
    """Covariates for horizon steps ``[start, start + step)``, NaN (unknown) past the given ones."""
    if future_exog is None:
        return None
    chunk = future_exog[:, start : start + step]
    if chunk.shape[1] < step:
        pad = np.full((chunk.shape[0], step - chunk.shape[1], chunk.shape[2]), np.nan, dtype=np.float32)
        chunk = np.concatenate([chunk, pad], axis=1)
    return np.ascontiguousarray(chunk, dtype=np.float32)


def forecast_arrays(
    model: ForecastModel,
    past_values: np.ndarray,
    past_mask: np.ndarray,
    freq_id: np.ndarray,
    horizon: int,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    past_exog: np.ndarray | None = None,
    future_exog: np.ndarray | None = None,
) -> np.ndarray:
    """Quantile forecasts [N, horizon, C, Q] at the model's levels, rolling out past its own horizon.

    ``past_values``/``past_mask`` are [N, L, C] windows (NaN/0 where unobserved), ``freq_id`` [N].
    Covariate-aware models also take ``past_exog`` [N, L, E] and ``future_exog`` [N, h, E] (the
    same E columns, NaN where a value is not known ahead); a rollout feeds each chunk's covariates
    back into the context with the forecast paths. Without covariates nothing changes.
    """
    device = torch.device(device)
    model = model.to(device).eval()
    levels = np.asarray(model.quantiles)
    q = len(levels)
    step = model.config.prediction_length
    past_values = np.ascontiguousarray(past_values, dtype=np.float32)
    past_mask = np.ascontiguousarray(past_mask, dtype=np.float32)
    freq_id = np.ascontiguousarray(freq_id, dtype=np.int64)
    if past_exog is not None:
        past_exog = np.ascontiguousarray(past_exog, dtype=np.float32)
        if future_exog is None:  # no covariates known ahead: the rollout extends them as unknown
            future_exog = np.full((len(past_exog), horizon, past_exog.shape[2]), np.nan, dtype=np.float32)
            send_future = False
        else:
            send_future = True
    elif future_exog is not None:
        raise InputError("future_exog needs past_exog (the same covariates over the context)")

    first = _exog_chunk(future_exog, 0, step) if past_exog is not None and send_future else None
    chunks = [_run_batched(model, past_values, past_mask, freq_id, batch_size, device, past_exog, first)]
    done = min(step, horizon)
    n, context_len, c = past_values.shape
    # one path per quantile level: path j continues the history with quantile j of every chunk so far
    paths = np.repeat(past_values, q, axis=0)
    paths_mask = np.repeat(past_mask, q, axis=0)
    path_freq = np.repeat(freq_id, q)
    paths_exog = None if past_exog is None else np.repeat(past_exog, q, axis=0)
    while done < horizon:
        latest = chunks[-1].transpose(0, 3, 1, 2).reshape(n * q, step, c)
        paths = np.concatenate([paths, latest], axis=1)[:, -context_len:]
        paths_mask = np.concatenate([paths_mask, np.ones_like(latest)], axis=1)[:, -context_len:]
        ahead = None
        if paths_exog is not None:
            seen = np.repeat(_exog_chunk(future_exog, done - step, step), q, axis=0)
            paths_exog = np.concatenate([paths_exog, seen], axis=1)[:, -context_len:]
            ahead = np.repeat(_exog_chunk(future_exog, done, step), q, axis=0) if send_future else None
        out = _run_batched(model, paths, paths_mask, path_freq, batch_size, device, paths_exog, ahead)
        samples = out.reshape(n, q, step, c, q).transpose(0, 2, 3, 1, 4).reshape(n, step, c, q * q)
        chunks.append(np.quantile(samples, levels, axis=-1).transpose(1, 2, 3, 0).astype(np.float32))
        done += step
    result = np.concatenate(chunks, axis=1)[:, :horizon]
    return np.sort(result, axis=-1)


LOG_SCALE_MODES = ("seasonal", "positive", "never")
LOG_SCALE_MAX_RATIO = 100.0  # a context whose largest value exceeds this times its smallest stays raw


def log_scale_applies(mode: str, season: int) -> bool:
    """Whether ``mode`` forecasts any positive context of data with this ``season`` in log space."""
    if mode not in LOG_SCALE_MODES:
        raise InputError(f"log_scale must be one of {', '.join(LOG_SCALE_MODES)} (or None), got {mode!r}")
    return mode == "positive" or (mode == "seasonal" and season > 1)


def log_scale_channels(past_values: np.ndarray, past_mask: np.ndarray, mode: str, season: int) -> np.ndarray:
    """[N, C] boolean: channels forecast in log space under ``mode``.

    "positive": every channel whose observed context is strictly positive; "seasonal": the same,
    on data of a seasonal frequency (season > 1) only; "never": none. A log turns a seasonal swing
    that grows with the level (airline passengers, retail sales) into a constant one, which a
    model scaled by the window's mean and spread reads better (Box-Cox with lambda 0, as in the
    classical toolbox). Yearly cycles whose amplitude is not proportional to the level (lynx)
    lose by it, hence "seasonal" (docs/training.md, session 15). A context spanning more than
    ``LOG_SCALE_MAX_RATIO`` between its smallest and largest value stays raw: near-zero values
    (a solar cycle's minimum) would dominate its logs, and it is close to the zero-floored series
    that stay raw anyway, so the rule changes little between a value of 0 and one of 0.001.
    """
    n, _, c = past_values.shape
    if not log_scale_applies(mode, season):
        return np.zeros((n, c), dtype=bool)
    observed = (past_mask > 0) & np.isfinite(past_values)
    smallest = np.where(observed, past_values, np.inf).min(axis=1)
    largest = np.where(observed, past_values, -np.inf).max(axis=1)
    return observed.any(axis=1) & (smallest > 0) & (largest <= LOG_SCALE_MAX_RATIO * smallest)


def to_log_space(past_values: np.ndarray, past_mask: np.ndarray, logged: np.ndarray) -> np.ndarray:
    """``past_values`` with the ``logged`` [N, C] channels replaced by their logs (NaN where unobserved)."""
    observed = (past_mask > 0) & np.isfinite(past_values) & (past_values > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(np.where(observed, past_values, np.nan))
    return np.where(logged[:, None, :], logs, past_values).astype(np.float32)


def from_log_space(quantiles: np.ndarray, log_values: np.ndarray, past_mask: np.ndarray,
                   logged: np.ndarray) -> np.ndarray:
    """Quantiles [N, H, C, Q] of the ``logged`` channels taken back from log space.

    A quantile of the log is the log of the quantile, so ``exp`` maps each level to itself. Before
    it, log forecasts are kept within the context's log range widened by that range on each side:
    a trend extrapolated in log space grows exponentially, and this bounds the growth to the ratio
    the history itself spans.
    """
    if not logged.any():
        return quantiles
    observed = (past_mask > 0) & np.isfinite(log_values)
    lo = np.where(observed, log_values, np.inf).min(axis=1)  # [N, C]
    hi = np.where(observed, log_values, -np.inf).max(axis=1)
    lo, hi = np.where(logged, lo, 0.0), np.where(logged, hi, 0.0)
    span = hi - lo
    bounded = np.clip(quantiles, (lo - span)[:, None, :, None], (hi + span)[:, None, :, None])
    back = np.exp(bounded.astype(np.float64)).astype(np.float32)
    return np.where(logged[:, None, :, None], back, quantiles).astype(np.float32)


def constant_channels(past_values: np.ndarray, past_mask: np.ndarray) -> np.ndarray:
    """[N, C] boolean: channels whose observed context is a single repeated value."""
    observed = (past_mask > 0) & np.isfinite(past_values)
    big = np.where(observed, past_values, -np.inf).max(axis=1)
    small = np.where(observed, past_values, np.inf).min(axis=1)
    return observed.any(axis=1) & (big == small)


def pin_constants(quantiles: np.ndarray, past_values: np.ndarray, past_mask: np.ndarray) -> np.ndarray:
    """A constant history gets an exactly constant forecast (the model's output is only near it)."""
    const = constant_channels(past_values, past_mask)  # [N, C]
    if not const.any():
        return quantiles
    observed = (past_mask > 0) & np.isfinite(past_values)
    level = np.where(observed, past_values, 0.0).sum(axis=1) / np.maximum(observed.sum(axis=1), 1)  # [N, C]
    pinned = np.broadcast_to(level[:, None, :, None], quantiles.shape)
    return np.where(const[:, None, :, None], pinned, quantiles).astype(np.float32)


def nonnegative_channels(past_values: np.ndarray, past_mask: np.ndarray) -> np.ndarray:
    """[N, C] boolean: channels with observed values and no negative one among them."""
    observed = (past_mask > 0) & np.isfinite(past_values)
    negative = (np.where(observed, past_values, 0.0) < 0).any(axis=1)
    return observed.any(axis=1) & ~negative


def floor_at_zero(
    quantiles: np.ndarray, past_values: np.ndarray, past_mask: np.ndarray, nonnegative: bool | None = None
) -> np.ndarray:
    """Quantiles below zero raised to zero where the series cannot go negative.

    Solar power at night, counts and sales have a hard floor at zero that the network only
    approaches. ``nonnegative=None`` decides per channel: a context with no negative value gets
    no negative forecast. ``True`` floors every channel, ``False`` none. Raising values to a floor
    keeps quantiles sorted, and never worsens the pinball loss of a value at or above the floor.
    """
    if nonnegative is False:
        return quantiles
    if nonnegative is None:
        floored = nonnegative_channels(past_values, past_mask)  # [N, C]
    else:
        floored = np.ones((past_values.shape[0], past_values.shape[2]), dtype=bool)
    if not floored.any():
        return quantiles
    return np.where(floored[:, None, :, None], np.maximum(quantiles, 0.0), quantiles).astype(np.float32)
