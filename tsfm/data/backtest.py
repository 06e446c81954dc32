"""The backtest splitter: which points each window of a rolling-origin backtest sees and scores.

Window ``k`` of ``n_windows`` (0 = oldest) holds out the last ``h + (n_windows - 1 - k) * step``
grid points of every series: the forecaster sees everything before (its cutoff is the last point
it sees) and is scored on the ``h`` points after. Positions count grid points, gaps included, so
a series with missing stamps is scored on the same stamps wherever it is backtested:
``Forecaster.cross_validation`` and ``tsfm evaluate`` (on a SeriesSet) and
``tsfm.evaluation.backtest_splits`` (on a frame, for ``benchmarks/``) all split here.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from tsfm.data.filling import filled
from tsfm.data.series_set import SeriesSet
from tsfm.data.windows import blind_contexts
from tsfm.errors import InputError


def backtest_windows(
    series: SeriesSet, h: int, n_windows: int = 1, step: int | None = None, fill: str = "mask"
) -> Iterator[tuple[SeriesSet, list[np.ndarray]]]:
    """``(head, futures)`` per cutoff, oldest first.

    ``head`` is the set without the points window ``k`` holds out, its missing values then filled
    by ``fill`` (``tsfm.data.filling``: from that history alone); ``futures[i]`` is ``[h, C]``
    float64, the ``h`` points after series ``i``'s cutoff in the user's units (NaN where none
    was observed: pass ``series`` unfilled). ``step`` (default ``h``) is the distance between
    cutoffs. Raises InputError when a series is too short to keep a point before the oldest window.
    """
    step = h if step is None else int(step)
    if h < 1 or n_windows < 1 or step < 1:
        raise InputError(f"h, n_windows and step must be positive (got h={h}, n_windows={n_windows}, step={step})")
    for k in range(n_windows - 1, -1, -1):
        held_out = h + k * step
        head = filled(series.truncate(held_out), fill)
        futures = [as_written(v[len(v) - held_out : len(v) - held_out + h]) * series.scale_of(i)
                   for i, v in enumerate(series.values)]
        yield head, futures


def as_written(values: np.ndarray) -> np.ndarray:
    """float64 values read from the shortest decimals that round-trip their float32 storage: the
    numbers as the user wrote them (622.1, not 622.0999755859375) wherever they had at most 7
    significant digits, so that backtest actuals match the input and score on it."""
    return np.asarray(values, dtype=np.float32).astype(str).astype(np.float64)


def observed_windows(
    series: SeriesSet, h: int, n_windows: int, step: int, context: int | None, fill: str = "mask"
) -> Iterator[tuple[SeriesSet, SeriesSet, list[np.ndarray], int]]:
    """``backtest_windows`` without the series that hold no observed value in the last ``context``
    points before the cutoff (None: anywhere before it), which a model could only forecast as
    zero: ``(head, whole, futures, left_out)`` with ``whole`` (``series`` filled, for known-future
    covariates) cut to the same series as ``head`` (a multivariate item, whose channels are read
    together, is left out whole)."""
    whole = filled(series, fill)
    for head, futures in backtest_windows(series, h, n_windows, step, fill):
        blind = np.unique(blind_contexts(head, context or max(int(head.lengths.max()), 1))[:, 0])
        keep = np.setdiff1d(np.arange(len(head)), blind)
        if blind.size:
            yield head.subset(keep), whole.subset(keep), [futures[i] for i in keep], len(blind)
        else:
            yield head, whole, futures, 0
