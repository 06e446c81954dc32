"""DataModule over GluonTS-style corpora: synthetic recipes (built once, cached as arrow) and local files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader

from tsfm.data.sampling import Source, TrainingWindows, WindowLoader, WindowSpec, collate_windows
from tsfm.errors import InputError


def _plain(obj: Any) -> Any:
    """OmegaConf containers -> plain Python (recipes are hashed and written as JSON)."""
    try:
        from omegaconf import DictConfig, ListConfig, OmegaConf

        if isinstance(obj, (DictConfig, ListConfig)):
            return OmegaConf.to_container(obj, resolve=True)
    except ImportError:  # pragma: no cover - hydra is a dependency
        pass
    return obj


VALIDATION_SEED = 10_007


class CorpusDataModule(pl.LightningDataModule):
    """Random windows from weighted corpora; validation windows come from a separate seed stream.

    ``corpus`` is a synthetic recipe (configs/corpus/*.yaml); ``extra`` lists user datasets as
    ``{path, weight, freq, id_col, time_col, target}`` (``tsfm.data.sources.load_local_dataset``:
    Arrow, JSON lines, CSV or Parquet; only ``path`` is required), mixed in with their weights.
    Settings that cannot work raise InputError here, before any data is read.
    """

    def __init__(
        self,
        corpus: Mapping | None,
        context_length: int,
        prediction_length: int,
        batch_size: int = 128,
        windows_per_epoch: int = 100_000,
        val_windows: int = 2_048,
        num_workers: int = 0,
        build_workers: int = 1,
        cache_dir: str | None = None,
        extra: Sequence[Mapping] = (),
        augment: Mapping | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        for name, value, least in (("batch_size", batch_size, 1), ("windows_per_epoch", windows_per_epoch, 1),
                                   ("val_windows", val_windows, 1), ("num_workers", num_workers, 0),
                                   ("build_workers", build_workers, 1)):
            if not isinstance(value, int) or isinstance(value, bool) or value < least:
                raise InputError(f"data.{name} must be an integer >= {least}, got {value!r}")
        self.corpus = _plain(corpus)
        self.extra = [_checked_extra(item) for item in _plain(list(extra))]
        augment = _plain(dict(augment or {}))
        if "downsample_factors" in augment:
            augment["downsample_factors"] = tuple(augment["downsample_factors"])
        self.spec = WindowSpec(context_length=context_length, prediction_length=prediction_length, **augment)
        self.batch_size = batch_size
        self.windows_per_epoch = windows_per_epoch
        self.val_windows = val_windows
        self.num_workers = num_workers
        self.build_workers = build_workers
        self.cache_dir = cache_dir
        self.seed = seed
        self.sources: list[Source] = []
        self.train_set: TrainingWindows | None = None
        self._train_loader: WindowLoader | None = None
        self._pending_stream: dict[str, int] | None = None

    def _corpus_path(self) -> Path:
        from tsfm.data.corpus_recipe import corpus_dir, default_cache_root

        root = Path(self.cache_dir) if self.cache_dir else default_cache_root()
        return corpus_dir(self.corpus, root)

    def prepare_data(self) -> None:
        """Build the synthetic corpus once (rank 0); later runs hit the cache."""
        if self.corpus:
            from tsfm.data.corpus import build_corpus

            build_corpus(self.corpus, self._corpus_path(), num_workers=self.build_workers, progress=True)

    def setup(self, stage: str | None = None) -> None:
        if self.sources:
            return
        if self.corpus:
            from tsfm.data.corpus import build_corpus
            from tsfm.data.corpus_reading import open_corpus

            path = build_corpus(self.corpus, self._corpus_path(), num_workers=self.build_workers, progress=False)
            for name, generator in self.corpus["generators"].items():  # one pool per generator, at its weight
                targets = open_corpus(path, generators=[name])  # memory-mapped: streams from disk
                if len(targets) and float(generator.get("weight", 1.0)) > 0:
                    self.sources.append(Source.from_mapped(targets, weight=float(generator.get("weight", 1.0))))
        for item in self.extra:
            from tsfm.data.sources import load_local_dataset

            columns = {key: item[key] for key in ("id_col", "time_col", "target") if key in item}
            entries = load_local_dataset(item["path"], freq=item.get("freq"), **columns)
            if item["weight"] > 0:  # a weight of 0 leaves a source out, as for the corpus' generators
                self.sources.append(Source.from_entries(entries, weight=item["weight"]))
        if not self.sources:
            raise InputError("no training data: give a corpus recipe or extra datasets, at least one of weight > 0")
        rank, world = 0, 1
        if self.trainer is not None:
            rank, world = self.trainer.global_rank, self.trainer.world_size
        per_rank = int(np.ceil(self.windows_per_epoch / world))
        self.train_set = TrainingWindows(self.sources, self.spec, per_rank, seed=self.seed, rank=rank, world_size=world)
        # validation: same pools, one fixed stream without augmentation (but shown as training shows
        # windows, adjusted or not); its seed does not follow the run's seed, so val losses of runs
        # (and of training phases) are comparable
        val_spec = WindowSpec(self.spec.context_length, self.spec.prediction_length, self.spec.min_past,
                              seasonal_adjustment=self.spec.seasonal_adjustment)
        self.val_set = TrainingWindows(self.sources, val_spec, int(np.ceil(self.val_windows / world)),
                                       seed=VALIDATION_SEED, rank=rank, world_size=world)

    def train_dataloader(self) -> WindowLoader:
        """A resumable loader: its position (epoch, next window) is restored from checkpoints."""
        assert self.train_set is not None
        if self.trainer is not None:
            self.train_set.set_epoch(self.trainer.current_epoch)
        self._train_loader = WindowLoader(self.train_set, batch_size=self.batch_size, num_workers=self.num_workers,
                                          persistent_workers=False, generator=_own_generator(self.seed))
        if self._pending_stream is not None:
            self._train_loader.load_state_dict(self._pending_stream)
            self._pending_stream = None
        return self._train_loader

    def state_dict(self) -> dict[str, Any]:
        """The training stream's position, saved in Lightning checkpoints for an exact mid-epoch resume.

        Lightning also saves the loader's own state, but restores it only when the loader is created
        after the checkpoint is loaded; ``configure_optimizers`` asking for
        ``trainer.estimated_stepping_batches`` creates it earlier. A DataModule's state is restored
        before that (for every strategy that restores before setup: single device, DDP).
        """
        return {"train_stream": self._train_loader.state_dict()} if self._train_loader is not None else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending_stream = state_dict.get("train_stream")

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.batch_size, num_workers=0, collate_fn=collate_windows,
                          generator=_own_generator(VALIDATION_SEED))


EXTRA_KEYS = ("path", "weight", "freq", "id_col", "time_col", "target")


def _checked_extra(item: Any) -> dict[str, Any]:
    """One ``data.extra`` item with its weight as a float (InputError for unknown keys or a bad weight)."""
    if not isinstance(item, Mapping) or "path" not in item:
        raise InputError(f"each data.extra item is a mapping with a path ({', '.join(EXTRA_KEYS)}), got {item!r}")
    unknown = sorted(set(item) - set(EXTRA_KEYS))
    if unknown:
        raise InputError(f"data.extra item {item['path']}: unknown key(s) {', '.join(map(str, unknown))}; "
                         f"the keys are {', '.join(EXTRA_KEYS)}")
    try:
        weight = float(item.get("weight", 1.0))
    except (TypeError, ValueError):
        weight = float("nan")
    if not np.isfinite(weight) or weight < 0:
        raise InputError(f"data.extra item {item['path']}: weight must be a number >= 0, got {item.get('weight')!r}")
    return {**item, "weight": weight}


def _own_generator(seed: int) -> torch.Generator:
    """A loader's own generator: creating its iterator then draws from it, not from torch's global
    RNG, whose state a checkpoint keeps for the dropout masks. (The windows are drawn from numpy
    generators seeded by their index, so the loaders need no other randomness.) Otherwise the draw
    made when an epoch's iterator is created falls after an end-of-epoch checkpoint in the run that
    saved it and before the RNG's restore in the run resumed from it."""
    return torch.Generator().manual_seed(int(seed))
