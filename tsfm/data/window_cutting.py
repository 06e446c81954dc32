"""Cutting windows out of series: the one place that says how (numpy only).

A context window is the ``length`` steps before an origin (the forecast's first step): a series
with less history is left-padded with NaN, and padding is never observed (mask 0; DESIGN §3).
A target window is the ``length`` steps from the origin, right-padded with NaN. Covariates have
no mask, so their context windows are made finite instead: gaps are filled from the nearest
observed value in time and all-missing columns become 0.

Inference (``tsfm.data.windows``: every series' last ``L`` steps), pretraining
(``tsfm.data.sampling``: random origins, truncated contexts) and fine-tuning
(``tsfm.train.finetune``: every origin) cut their windows here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def context_windows(
    arrays: Sequence[np.ndarray],
    length: int,
    origins: Sequence[int] | np.ndarray | None = None,
    spans: Sequence[int] | np.ndarray | None = None,
    width: int | None = None,
) -> np.ndarray:
    """``[N, length, C]`` float32 context windows, NaN where a series has no history.

    Window ``i`` holds the last ``min(length, spans[i])`` rows of ``arrays[i][:origins[i]]``
    (``arrays[i]`` is ``[T_i, C]``; ``origins`` default to the series' ends, ``spans`` to
    ``length``), right-aligned: the rows before them are NaN. ``width`` is C when there may be
    no array to tell it (N = 0).
    """
    n = len(arrays)
    if width is None:
        width = arrays[0].shape[1] if n else 0
    out = np.full((n * length, width), np.nan, dtype=np.float32)
    if n == 0 or width == 0:
        return out.reshape(n, length, width)
    ends = [len(a) for a in arrays] if origins is None else [int(o) for o in origins]
    keeps = [length] * n if spans is None else [min(length, int(s)) for s in spans]
    tails = [a[max(0, end - keep) : max(0, end)] for a, end, keep in zip(arrays, ends, keeps)]
    kept = np.array([len(t) for t in tails], dtype=np.int64)
    if n == 1:
        out[length - kept[0] :] = tails[0]
        return out.reshape(n, length, width)
    # destination row of every kept step: series i fills rows i*length + (length - kept_i) ... (i+1)*length - 1
    stops = np.cumsum(kept)
    within = np.arange(stops[-1]) - np.repeat(stops - kept, kept)
    dest = np.repeat(np.arange(n) * length + (length - kept), kept) + within
    out[dest] = np.concatenate(tails)
    return out.reshape(n, length, width)


def target_windows(
    arrays: Sequence[np.ndarray],
    length: int,
    origins: Sequence[int] | np.ndarray,
    stops: Sequence[int] | np.ndarray | None = None,
) -> np.ndarray:
    """``[N, length, C]`` float32 target windows: rows ``origins[i]`` up to ``length`` steps on,
    and before ``stops[i]`` (default: no limit), left-aligned; the rest is NaN."""
    width = arrays[0].shape[1] if len(arrays) else 0
    out = np.full((len(arrays), length, width), np.nan, dtype=np.float32)
    for i, (a, origin) in enumerate(zip(arrays, origins)):
        stop = origin + length if stops is None else min(origin + length, int(stops[i]))
        piece = a[max(0, origin) : max(0, stop)]
        out[i, : len(piece)] = piece
    return out


def observed_mask(values: np.ndarray) -> np.ndarray:
    """float32 mask of a window: 1 where a value was observed (finite), 0 for gaps and padding."""
    return np.isfinite(values).astype(np.float32)


def fill_covariates(x: np.ndarray) -> np.ndarray:
    """Covariate windows ``[N, L, E]`` made finite: NaN filled along time from the previous,
    else the next observed value; a column with no value at all becomes 0."""
    n, length, e = x.shape
    if x.size == 0 or not np.isnan(x).any():
        return x
    idx = np.arange(length)[None, :, None]
    valid = ~np.isnan(x)
    prev = np.maximum.accumulate(np.where(valid, idx, -1), axis=1)
    nxt = np.minimum.accumulate(np.where(valid, idx, length)[:, ::-1], axis=1)[:, ::-1]
    src = np.where(prev >= 0, prev, np.minimum(nxt, length - 1))
    filled = np.take_along_axis(x, src, axis=1)
    return np.nan_to_num(filled, nan=0.0).astype(np.float32)
