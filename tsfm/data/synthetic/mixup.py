"""TSMixup (Chronos, Ansari et al. 2024 §4.1): convex mixtures of existing series.

Recipe: draw k ~ U{1..max_components} series from a pool, take a window of the target length
from each (a random offset when a series is longer), scale each by its mean absolute value,
and sum them with Dirichlet(alpha) weights. The mixture keeps the frequency label of the first
component. Chronos uses max_components 3 and alpha 1.5; those are the defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from tsfm.data.synthetic import Sample, finite_float32

__all__ = ["mix", "tsmixup"]


def mix(
    rng: np.random.Generator, components: Sequence[np.ndarray], alpha: float = 1.5
) -> tuple[np.ndarray, np.ndarray]:
    """(mixture, weights): mean-abs-scaled components summed with Dirichlet(alpha) weights."""
    stacked = np.stack([np.asarray(c, dtype=np.float64) for c in components])
    scale = np.abs(stacked).mean(axis=1, keepdims=True)
    stacked = stacked / np.where(scale > 0, scale, 1.0)
    weights = rng.dirichlet(np.full(len(components), alpha))
    return weights @ stacked, weights


def tsmixup(
    rng: np.random.Generator,
    length: int,
    *,
    pool_size: int,
    get: Callable[[int], tuple[np.ndarray, str]],
    max_components: int = 3,
    alpha: float = 1.5,
    max_tries: int = 20,
) -> Sample:
    """One mixture of up to ``max_components`` pool series, ``length`` points or shorter.

    ``get(i)`` returns pool series ``i`` (1-D) and its frequency, so a caller can keep the
    pool on disk. The length shrinks to the first component's when that one is shorter;
    further components must be at least that long (``max_tries`` draws each, else dropped).
    """
    if pool_size <= 0:
        raise ValueError("TSMixup needs a non-empty pool of series")
    k = int(rng.integers(1, max_components + 1))
    first, freq = get(int(rng.integers(pool_size)))
    length = min(length, len(first))
    windows = [_window(rng, first, length)]
    for _ in range(k - 1):
        for _ in range(max_tries):
            series, _ = get(int(rng.integers(pool_size)))
            if len(series) >= length:
                windows.append(_window(rng, series, length))
                break
    mixture, _ = mix(rng, windows, alpha)
    return Sample(finite_float32(mixture), freq, ())


def _window(rng: np.random.Generator, series: np.ndarray, length: int) -> np.ndarray:
    start = int(rng.integers(len(series) - length + 1))
    return np.asarray(series[start: start + length], dtype=np.float64)
