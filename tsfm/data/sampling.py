"""Random training windows over GluonTS-style entries, sharded across ranks and workers.

Window ``i`` of a stream is a pure function of ``(seed, epoch, rank, i)``: every rank draws its own
windows and dataloader workers split a rank's indices (GluonTS and Lightning shard neither), and a
resumed run skips straight to where it stopped (``WindowLoader`` carries the position in
Lightning's checkpoints). Augmentations live here because they act on raw series:
downsampling (TTM's diverse-resolution sampling) and context truncation (short histories with
masked padding, so yearly series of a few dozen points are in-distribution).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from tsfm.data.freq import FREQ_VOCAB, canonical_name, downsampled_name
from tsfm.data.window_cutting import context_windows, observed_mask, target_windows
from tsfm.errors import InputError
from tsfm_runtime import freq, rules

if TYPE_CHECKING:
    from tsfm.data.corpus_reading import MappedTargets


@dataclass(frozen=True)
class WindowSpec:
    """What a training window looks like and how it is augmented."""

    context_length: int
    prediction_length: int
    min_past: int = 8  # fewest observed context points in a window
    downsample_prob: float = 0.0  # chance to coarsen a series before cutting a window
    downsample_factors: tuple[int, ...] = (2, 3, 4, 6, 12, 24)
    aggregate_share: float = 0.0  # share of downsampled series coarsened by block means, not every f-th point
    truncate_prob: float = 0.0  # chance to keep only a random-length tail of the context
    min_future_fraction: float = 0.25  # fewest observed future points, as a fraction of H
    full_context_prob: float = 0.0  # chance to draw a window whose whole context is observed (never truncated)
    seasonal_adjustment: bool = False  # windows shown as the suite's seasonal adjustment shows them at inference

    def __post_init__(self) -> None:
        if not isinstance(self.seasonal_adjustment, bool):  # a string such as "yes" would read as true
            raise InputError("data.augment.seasonal_adjustment must be true or false, "
                             f"got {self.seasonal_adjustment!r}")

    @property
    def min_future(self) -> int:
        return max(1, int(math.ceil(self.min_future_fraction * self.prediction_length)))


@dataclass
class Source:
    """One weighted pool of series (a corpus or a user's dataset)."""

    targets: Sequence[np.ndarray]  # each [T] or [C, T], float32 (a list, or MappedTargets)
    freq_names: list[str]  # canonical frequency name per series ("" if unknown)
    weight: float = 1.0
    _long: dict[int, np.ndarray] = field(default_factory=dict, init=False, repr=False, compare=False)

    def long_series(self, length: int) -> np.ndarray:
        """Indices of the series with at least ``length`` time steps (computed once per length).

        Mapped corpora give their lengths from the Arrow offsets, without reading any values."""
        if length not in self._long:
            sizes = self.targets.lengths() if hasattr(self.targets, "lengths") else \
                np.array([np.shape(t)[-1] for t in self.targets], dtype=np.int64)
            self._long[length] = np.flatnonzero(sizes >= length)
        return self._long[length]

    @classmethod
    def from_mapped(cls, targets: MappedTargets, weight: float = 1.0) -> Source:
        """A pool over memory-mapped corpus shards: series stay on disk until a window needs them."""
        return cls(targets, [canonical_name(f) if f else "" for f in targets.freqs], weight)

    @classmethod
    def from_entries(cls, entries: Sequence[dict], weight: float = 1.0) -> Source:
        targets = [np.asarray(e["target"], dtype=np.float32) for e in entries]
        names = [canonical_name(e["freq"]) if e.get("freq") else "" for e in entries]
        return cls(targets, names, weight)


def _pick_channel(target: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Channel-independent pretraining: one channel of a multivariate entry."""
    if target.ndim == 1:
        return target
    return target[rng.integers(target.shape[0])]


def _downsample(series: np.ndarray, name: str, spec: WindowSpec, rng: np.random.Generator,
                min_length: int = 0) -> tuple[np.ndarray, str]:
    """Coarsen a series by a factor f (random phase); the token follows the new resolution when one
    exists. Only factors that leave at least ``min_length`` (and ``min_past + 2``) points are drawn.

    Keeping every f-th point is TTM's augmentation. With ``spec.aggregate_share`` the series is
    instead averaged over blocks of f steps, which is how real yearly and quarterly data arise from
    monthly flows and stocks: the aggregate is smoother than any one of its steps (a block with a
    missing step stays missing)."""
    least = max(spec.min_past + 2, min_length)
    factors = [f for f in spec.downsample_factors if len(series) // f >= least]
    if not factors:
        return series, name
    factor = int(rng.choice(factors))
    phase = int(rng.integers(factor))
    if spec.aggregate_share > 0 and rng.random() < spec.aggregate_share:
        start = min(phase, len(series) - least * factor)  # whole blocks only: keep at least `least` of them
        blocks = (len(series) - start) // factor
        coarse = series[start:start + blocks * factor].reshape(blocks, factor).mean(axis=1)
        return coarse.astype(series.dtype, copy=False), downsampled_name(name, factor)
    return series[phase::factor], downsampled_name(name, factor)


def sample_window(sources: Sequence[Source], spec: WindowSpec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One training window: past/future values and masks [L,1]/[H,1], and the resolution token.

    With ``spec.full_context_prob`` a window is drawn, that often, from the series long enough to
    fill the whole context (and its origin at least L steps in): uniform origins over a corpus of
    mostly short series leave most contexts of a long-context model half padded, so without it a
    512-step model rarely sees 512 observed steps (falls back to a plain draw when a pool has no
    such series).
    """
    weights = np.array([s.weight for s in sources], dtype=np.float64)
    source = sources[rng.choice(len(sources), p=weights / weights.sum())]
    L, H = spec.context_length, spec.prediction_length
    full = spec.full_context_prob > 0 and rng.random() < spec.full_context_prob
    candidates = source.long_series(L + spec.min_future) if full else None
    full = full and len(candidates) > 0
    index = int(candidates[rng.integers(len(candidates))]) if full else int(rng.integers(len(source.targets)))
    series = _pick_channel(source.targets[index], rng)
    name = source.freq_names[index]
    if spec.downsample_prob > 0 and rng.random() < spec.downsample_prob:
        series, name = _downsample(series, name, spec, rng, min_length=L + spec.min_future if full else 0)

    n = len(series)
    min_future = spec.min_future
    min_past = min(spec.min_past, max(1, n - min_future))
    # the forecast origin: at least min_past (a full context: L) points before it, min_future after
    low = L if full else min_past
    high = max(low, n - min_future)
    origin = int(rng.integers(low, high + 1))

    span = min(origin, L)  # the history the context holds (all of it, up to L)
    if not full and spec.truncate_prob > 0 and rng.random() < spec.truncate_prob and span > min_past:
        keep = int(np.exp(rng.uniform(np.log(min_past), np.log(span))))
        span = max(keep, min_past)
    column = series[:, None]
    past_values = context_windows([column], L, [origin], [span])[0]
    future_values = target_windows([column], H, [origin])[0]
    if spec.seasonal_adjustment:
        past_values, future_values = seasonally_adjusted(past_values, future_values, name)
    token = FREQ_VOCAB.index(name) if name in FREQ_VOCAB else 0
    return {
        "past_values": past_values,
        "past_mask": observed_mask(past_values),
        "future_values": future_values,
        "future_mask": observed_mask(future_values),
        "freq_id": np.int64(token),
    }


def seasonally_adjusted(past: np.ndarray, future: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """A window [L, 1] / [H, 1] divided by the seasonal indices of its context, as
    ``tsfm_runtime.rules.seasonal_factors`` finds them at inference (unchanged when its resolution
    has no season or the context does not qualify): a network that forecasts adjusted contexts
    learns on adjusted ones."""
    season = freq.season_and_horizon(name)[0]  # 1 for an unknown resolution ("")
    factors = rules.seasonal_factors(past[None], observed_mask(past)[None], season, len(future))
    if factors is None:
        return past, future
    return (past / factors[0][0]).astype(np.float32), (future / factors[1][0]).astype(np.float32)


class TrainingWindows(IterableDataset):
    """An endless stream of random windows; ``len`` windows make one epoch per rank.

    Window ``i`` is drawn with the seed ``(seed, epoch, rank, i)``, so ranks draw disjoint streams.
    Dataloader workers split the stream in blocks of ``batch_size`` consecutive indices (worker
    ``w`` takes blocks ``w, w + W, ...``); the DataLoader hands the blocks out round-robin, so the
    batches arrive in index order whatever the worker count, and after ``b`` batches exactly the
    windows ``[start, start + b * batch_size)`` were consumed. ``start_index`` resumes a stream
    mid-epoch (see :class:`WindowLoader`); it applies to the next iteration only.
    """

    def __init__(
        self,
        sources: Sequence[Source],
        spec: WindowSpec,
        windows_per_epoch: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        batch_size: int = 1,
    ) -> None:
        super().__init__()
        if not sources or not any(len(s.targets) for s in sources):
            raise ValueError("TrainingWindows needs at least one non-empty source")
        self.sources = [s for s in sources if len(s.targets)]
        self.spec = spec
        self.windows_per_epoch = windows_per_epoch
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.batch_size = max(1, int(batch_size))
        self.epoch = 0
        self.start_index = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.windows_per_epoch

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        # read the position now, not at the first ``next``: a DataLoader creates this iterator
        # when its own iterator is created, and the resume position is cleared right after
        start, self.start_index = self.start_index, 0
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        return self._windows(start, self.epoch, worker, workers)

    def _windows(self, start: int, epoch: int, worker: int, workers: int) -> Iterator[dict[str, np.ndarray]]:
        block = self.batch_size
        for first in range(start + worker * block, self.windows_per_epoch, workers * block):
            for i in range(first, min(first + block, self.windows_per_epoch)):
                rng = np.random.default_rng([self.seed, epoch, self.rank, i])
                yield sample_window(self.sources, self.spec, rng)


class WindowLoader(DataLoader):
    """A DataLoader over :class:`TrainingWindows` that Lightning can checkpoint mid-epoch.

    Lightning 2.x saves ``state_dict()`` of every training loader that has one in its checkpoints
    (``loops.fit_loop.state_dict.combined_loader``) and calls ``load_state_dict`` on a resumed run
    before creating the first iterator. The state is the epoch and the index of the next window
    this rank has not trained on (batches handed out x batch size: Lightning does not prefetch
    from a loader with a length), so a resumed run sees exactly the windows an uninterrupted run
    would have seen next.
    """

    def __init__(self, dataset: TrainingWindows, batch_size: int, num_workers: int = 0, **kwargs) -> None:
        dataset.batch_size = batch_size  # worker blocks = batches (see TrainingWindows)
        super().__init__(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_windows, **kwargs)
        self._origin = 0
        self._batches = 0

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        self._origin, self._batches = self.dataset.start_index, 0
        batches = super().__iter__()  # worker processes copy the dataset (and its position) here
        self.dataset.start_index = 0
        return self._counted(batches)

    def _counted(self, batches: Iterator[dict[str, torch.Tensor]]) -> Iterator[dict[str, torch.Tensor]]:
        for batch in batches:
            self._batches += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        dataset: TrainingWindows = self.dataset
        index = self._origin + self._batches * self.batch_size
        if index >= len(dataset):  # the epoch is over: the next one starts from its beginning
            return {"epoch": dataset.epoch + 1, "next_index": 0}
        return {"epoch": dataset.epoch, "next_index": index}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.dataset.set_epoch(int(state["epoch"]))
        self.dataset.start_index = int(state["next_index"])
        self._origin = self.dataset.start_index


def collate_windows(batch: Sequence[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    return {key: torch.from_numpy(np.stack([b[key] for b in batch])) for key in batch[0]}
