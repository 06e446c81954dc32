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
) -> np.ndarray:
    """One model call over all windows, in batches: [N, L, C] -> [N, H, C, Q]."""
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(past_values), batch_size):
            stop = start + batch_size
            pv = torch.from_numpy(past_values[start:stop]).to(device)
            pm = torch.from_numpy(past_mask[start:stop]).to(device)
            fid = torch.from_numpy(freq_id[start:stop]).to(device)
            outputs.append(model(pv, pm, fid).float().cpu().numpy())
    return np.concatenate(outputs, axis=0)


def forecast_arrays(
    model: ForecastModel,
    past_values: np.ndarray,
    past_mask: np.ndarray,
    freq_id: np.ndarray,
    horizon: int,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Quantile forecasts [N, horizon, C, Q] at the model's levels, rolling out past its own horizon.

    ``past_values``/``past_mask`` are [N, L, C] windows (NaN/0 where unobserved), ``freq_id`` [N].
    """
    device = torch.device(device)
    model = model.to(device).eval()
    levels = np.asarray(model.quantiles)
    q = len(levels)
    step = model.config.prediction_length
    past_values = np.ascontiguousarray(past_values, dtype=np.float32)
    past_mask = np.ascontiguousarray(past_mask, dtype=np.float32)
    freq_id = np.ascontiguousarray(freq_id, dtype=np.int64)

    chunks = [_run_batched(model, past_values, past_mask, freq_id, batch_size, device)]  # [N, H, C, Q]
    done = min(step, horizon)
    n, context_len, c = past_values.shape
    # one path per quantile level: path j continues the history with quantile j of every chunk so far
    paths = np.repeat(past_values, q, axis=0)
    paths_mask = np.repeat(past_mask, q, axis=0)
    path_freq = np.repeat(freq_id, q)
    while done < horizon:
        latest = chunks[-1].transpose(0, 3, 1, 2).reshape(n * q, step, c)
        paths = np.concatenate([paths, latest], axis=1)[:, -context_len:]
        paths_mask = np.concatenate([paths_mask, np.ones_like(latest)], axis=1)[:, -context_len:]
        out = _run_batched(model, paths, paths_mask, path_freq, batch_size, device)  # [N*Q, H, C, Q]
        samples = out.reshape(n, q, step, c, q).transpose(0, 2, 3, 1, 4).reshape(n, step, c, q * q)
        chunks.append(np.quantile(samples, levels, axis=-1).transpose(1, 2, 3, 0).astype(np.float32))
        done += step
    result = np.concatenate(chunks, axis=1)[:, :horizon]
    return np.sort(result, axis=-1)


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
