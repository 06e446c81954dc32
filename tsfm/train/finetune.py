"""Few-shot fine-tuning: a pretrained model adapted to the user's own series, with Lightning.

Data. Windows in the pretraining format (``past_values, past_mask, future_values, future_mask,
freq_id`` + ``past_exog, future_exog``) are cut from each series at every origin (stride 1). The
split is in time: the last ``val_size`` points of every series are held out, training windows
end before them (their targets never reach into the held-out part) and validation windows
forecast inside them. Few-shot keeps only the last ``fraction`` of each series' training windows
(granite-tsfm's ``fewshot_fraction`` with ``fewshot_location="last"``). The loss covers the first
``min(horizon, prediction_length)`` steps: the steps the user forecasts.

Modes. Which parameters train in each mode is the model's declared
``capabilities.finetune_modes`` (``tsfm.models.base.Capabilities``). TTM follows granite's few-shot
recipe: ``"head"`` freezes the patch embedding and backbone and trains the decoder, the head and
the exogenous mixer (TTM's decoder is part of its head, so ``"decoder"`` is the same set);
``"full"`` trains everything. A family that declares only ``"full"`` has no separate pretrained
head: it always fine-tunes fully (a note on stderr says so). Parameters missing from the
pretrained weights (new covariate modules) always train.

Covariates. A pretrained model becomes covariate-aware by the config its family derives
(``ModelConfig.with_covariates``: TTM gains a channel-mixing decoder and, when some covariates are
known in the future, its exogenous mixer) and loads the pretrained weights that fit
(``ForecastModel.load_fitting_weights``). The new modules start as exact no-ops (zeroed output
layers), so before training the converted model forecasts exactly what the zero-shot one does.

Selection. The validation loss is measured before training (the zero-shot model) and after every
epoch; training stops early when it stops improving, the best epoch's weights are restored, and
the zero-shot model is kept when no epoch beat it (fine-tuning must never make a model worse on
held-out data: chronos-forecasting#209).
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import logging
import math
import signal
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from tsfm.data.sampling import collate_windows
from tsfm.data.series_set import SeriesSet
from tsfm.data.window_cutting import context_windows, fill_covariates, observed_mask, target_windows
from tsfm.errors import InputError
from tsfm.models.base import ForecastModel
from tsfm.models.registry import build_model
from tsfm.train.module import ForecastingTask

MODES = ("head", "decoder", "full")
DEFAULT_LEARNING_RATE = {"head": 1e-3, "decoder": 1e-3, "full": 3e-4}
MIN_PAST = 8  # fewest context points a training window may have


# ----------------------------------------------------------------------------- report


@dataclass
class FinetuneReport:
    """What a fine-tuning run did; ``kept`` says which weights the Forecaster now uses."""

    mode: str
    fraction: float
    horizon: int
    loss_steps: int
    val_size: int
    train_windows: int
    val_windows: int
    learning_rate: float
    batch_size: int
    trainable_parameters: int
    frozen_parameters: int
    val_loss_before: float
    val_loss_best: float
    best_epoch: int | None  # 0-based
    epochs: int  # validation rounds: one per epoch, and one at max_steps when it ends an epoch early
    steps: int
    windows_seen: int
    seconds: float
    kept: str  # "fine-tuned" or "zero-shot"
    past_exog: list[str] = field(default_factory=list)
    future_exog: list[str] = field(default_factory=list)
    missing_keys: list[str] = field(default_factory=list)
    unexpected_keys: list[str] = field(default_factory=list)

    @property
    def windows_per_second(self) -> float:
        """Training windows per second of the whole run (validation passes included)."""
        return self.windows_seen / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "windows_per_second": self.windows_per_second}

    def summary(self) -> str:
        """One line for stderr."""
        change = self.val_loss_best - self.val_loss_before  # a likelihood loss can be negative: no ratio then
        change_text = f"{change / self.val_loss_before * 100:+.1f}%" if self.val_loss_before > 0 else f"{change:+.4f}"
        return (
            f"fine-tuned ({self.mode}) on {self.train_windows} windows, {self.epochs} epoch(s), {self.steps} steps, "
            f"{self.seconds:.1f}s: validation loss {self.val_loss_before:.4f} (zero-shot) -> {self.val_loss_best:.4f} "
            f"(best epoch, {change_text}); kept the {self.kept} weights"
        )


def model_card(report: FinetuneReport, base: str) -> str:
    """README.md of a fine-tuned checkpoint directory."""
    covariates = ", ".join(
        [f"{c} (past)" for c in report.past_exog] + [f"{c} (known future)" for c in report.future_exog]
    ) or "none"
    return "\n".join([
        "# tsfm fine-tuned checkpoint",
        "",
        f"- base model: `{base}`; mode `{report.mode}`; kept the **{report.kept}** weights",
        f"- few-shot fraction {report.fraction}: {report.train_windows} training windows, "
        f"{report.val_windows} validation windows (last {report.val_size} points of each series held out)",
        f"- horizon {report.horizon} (loss on the first {report.loss_steps} steps); covariates: {covariates}",
        f"- learning rate {report.learning_rate:g}, batch size {report.batch_size}, {report.epochs} epoch(s), "
        f"{report.steps} steps, {report.seconds:.1f} s; trainable parameters {report.trainable_parameters:,} "
        f"of {report.trainable_parameters + report.frozen_parameters:,}",
        f"- validation loss (scaled pinball): zero-shot {report.val_loss_before:.4f}, best epoch "
        f"{report.val_loss_best:.4f}",
        "",
    ])


# ----------------------------------------------------------------------------- modes and covariates


def resolve_mode(model: ForecastModel, mode: str) -> tuple[str, tuple[str, ...]]:
    """The mode that will run and its trainable prefixes (families without a pretrained head: full)."""
    if mode not in MODES:
        raise InputError(f"unknown fine-tuning mode '{mode}': use one of {', '.join(MODES)}")
    modes = model.capabilities.finetune_modes
    if mode in modes:
        return mode, modes[mode]
    print(f"note: {model.config.family} has no separately pretrained head; fine-tuning all parameters "
          "(mode 'full')", file=sys.stderr)
    return "full", modes.get("full", ("",))


def with_covariates(model: ForecastModel, n_targets: int, n_past: int, n_future: int) -> tuple[ForecastModel, dict]:
    """The model rebuilt to take ``n_past + n_future`` covariate channels (its family's
    ``config.with_covariates``), the pretrained weights that fit loaded.

    Returns the model and ``{"missing_keys", "unexpected_keys", "mismatched_keys"}`` of the load.
    Unchanged (and empty lists) when the model already has this covariate layout.
    """
    config = model.config.with_covariates(n_targets, n_past, n_future)
    if config == model.config:
        return model, {"missing_keys": [], "unexpected_keys": [], "mismatched_keys": []}
    new = build_model(config)
    report = new.load_fitting_weights(model.state_dict())
    return new.to(next(model.parameters()).device), report


def freeze(model: ForecastModel, trainable: Sequence[str], always: set[str] = frozenset()) -> tuple[int, int]:
    """Set ``requires_grad`` by top-level prefix (plus the names in ``always``); return (trainable, frozen) counts."""
    counts = [0, 0]
    for name, param in model.named_parameters():
        train = name in always or any(p == "" or name == p or name.startswith(p + ".") for p in trainable)
        param.requires_grad_(train)
        counts[0 if train else 1] += param.numel()
    return counts[0], counts[1]


# ----------------------------------------------------------------------------- windows


@dataclass(frozen=True)
class Split:
    """Window origins (series index, first forecast step) and the point beyond which targets are hidden."""

    series: np.ndarray
    origins: np.ndarray
    ends: np.ndarray

    def __len__(self) -> int:
        return len(self.origins)


def plan_windows(
    lengths: Sequence[int], loss_steps: int, val_size: int | None, fraction: float
) -> tuple[Split, Split, int]:
    """Training and validation origins for every series, and the validation size used.

    Validation: origins ``T - v .. T - loss_steps`` (futures inside the held-out last ``v`` points).
    Training: origins ``MIN_PAST .. T - v - loss_steps`` (futures end before them), last ``fraction``.
    """
    v = int(val_size) if val_size is not None else 2 * loss_steps
    if v < loss_steps:
        raise InputError(f"val_size (--val-size) {v} is shorter than the {loss_steps} forecast steps; "
                         f"use at least {loss_steps}")
    train, val = ([], [], []), ([], [], [])
    for i, length in enumerate(lengths):
        size = v
        if val_size is None and length - size - loss_steps < MIN_PAST:
            size = loss_steps  # a short series: one validation window
        last_train = length - size - loss_steps
        if last_train < MIN_PAST:
            continue
        candidates = np.arange(MIN_PAST, last_train + 1)
        keep = candidates[-max(1, math.ceil(fraction * len(candidates))):]
        for parts, origins, end in ((train, keep, length - size),
                                    (val, np.arange(length - size, length - loss_steps + 1), length)):
            parts[0].append(np.full(len(origins), i))
            parts[1].append(origins)
            parts[2].append(np.full(len(origins), end))
    if not train[0]:
        need = MIN_PAST + loss_steps + (v if val_size is not None else loss_steps)
        raise InputError(
            f"every series is too short to fine-tune: need at least {need} points (longest has {max(lengths)}); "
            "use a shorter horizon or a smaller val_size"
        )
    as_split = lambda p: Split(*(np.concatenate(a).astype(np.int64) for a in p))  # noqa: E731
    return as_split(train), as_split(val), v


class SeriesWindows(Dataset):
    """Map-style windows over in-memory series (shuffled per epoch by the DataLoader).

    ``values[i]`` is ``[T, C]``; ``exog[i]`` is ``[T, Ep + Ef]`` (past-only columns first, then the
    known-future ones). A window at origin ``t`` has the context ``[t - L, t)`` (left-padded,
    masked) and the targets ``[t, t + H)``, observed only before ``end`` and for the first
    ``loss_steps`` steps. ``future_exog`` carries the known-future columns for those steps and NaN
    elsewhere (unknown, as at prediction time).
    """

    def __init__(
        self,
        values: Sequence[np.ndarray],
        split: Split,
        context_length: int,
        prediction_length: int,
        loss_steps: int,
        freq_id: int,
        exog: Sequence[np.ndarray] | None = None,
        n_future_exog: int = 0,
    ) -> None:
        self.values, self.split, self.exog = values, split, exog
        self.L, self.H, self.loss_steps = context_length, prediction_length, loss_steps
        self.freq_id = np.int64(freq_id)
        self.n_future_exog = n_future_exog

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, k: int) -> dict[str, np.ndarray]:
        i, t, end = int(self.split.series[k]), int(self.split.origins[k]), int(self.split.ends[k])
        series = self.values[i]
        past = context_windows([series], self.L, [t])[0]
        future = target_windows([series], self.H, [t], [min(t + self.loss_steps, end)])[0]
        item = {
            "past_values": past,
            "past_mask": observed_mask(past),
            "future_values": future,
            "future_mask": observed_mask(future),
            "freq_id": self.freq_id,
        }
        if self.exog is not None:
            exog = self.exog[i]
            item["past_exog"] = fill_covariates(context_windows([exog], self.L, [t]))[0]
            if self.n_future_exog:
                ahead = target_windows([exog], self.H, [t], [t + self.loss_steps])[0]
                ahead[:, : exog.shape[1] - self.n_future_exog] = np.nan  # past-only covariates: unknown ahead
                item["future_exog"] = ahead
        return item


def series_exog(series: SeriesSet) -> list[np.ndarray] | None:
    """Per series ``[T, Ep + Ef]``: past-only covariates, then the known-future ones (inference order)."""
    parts = [a for a in (series.past_exog, series.future_exog) if a is not None]
    if not parts:
        return None
    return [np.concatenate(p, axis=1).astype(np.float32) for p in zip(*parts)]


# ----------------------------------------------------------------------------- training

NEW_MODULE_LR_SCALE = 10.0  # new (randomly initialised) covariate modules learn this much faster


class FinetuneTask(ForecastingTask):
    """The shared training task on a given model; parameters new to it get a larger learning rate.

    The covariate modules start as exact no-ops (zeroed output layers) and must move far from
    there in a few hundred steps, while the pretrained decoder and head need only small changes.
    """

    def __init__(self, model: dict[str, Any], new_parameters: Sequence[str] = (), **optim: Any) -> None:
        super().__init__(model=model, **optim)
        self.new_parameters = set(new_parameters)

    @classmethod
    def on_model(cls, model: ForecastModel, new_parameters: Sequence[str], **optim: Any) -> FinetuneTask:
        """The task training ``model`` itself (the constructor builds a fresh one from its config)."""
        task = cls(model.config.to_dict(), sorted(new_parameters), **optim)
        task.model = model
        return task

    def parameter_groups(self) -> list[dict[str, Any]]:
        new = {id(p) for n, p in self.model.named_parameters() if n in self.new_parameters}
        groups = []
        for group in super().parameter_groups():
            fresh = [p for p in group["params"] if id(p) in new]
            kept = [p for p in group["params"] if id(p) not in new]
            groups.append({**group, "params": kept})
            if fresh:
                groups.append({**group, "params": fresh, "lr": self.hparams.lr * NEW_MODULE_LR_SCALE})
        return [g for g in groups if g["params"]]



class KeepBestWeights(pl.Callback):
    """Remembers the weights of the epoch with the lowest validation loss (in memory, no pickles)."""

    def __init__(self) -> None:
        self.best = math.inf
        self.state: dict[str, torch.Tensor] | None = None
        self.epoch: int | None = None
        self.validated_step = 0  # the training step of the last validation

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        loss = trainer.callback_metrics.get("val_loss")
        self.offer(None if loss is None else float(loss), pl_module, trainer.current_epoch, trainer.global_step)

    def offer(self, loss: float | None, pl_module: pl.LightningModule, epoch: int, step: int) -> None:
        """Keep ``pl_module``'s weights if ``loss`` (theirs, at ``step``) is the lowest so far."""
        self.validated_step = step
        if loss is not None and loss < self.best:
            self.best = loss
            self.state = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}
            self.epoch = epoch


class CountWindows(pl.Callback):
    """Training windows seen (the throughput numerator) and validation rounds run."""

    def __init__(self) -> None:
        self.windows = 0
        self.validations = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.windows += int(batch["past_values"].shape[0])

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.sanity_checking:
            self.validations += 1


@contextlib.contextmanager
def quiet_lightning() -> Iterator[None]:
    """Keep Lightning's banners ("GPU available: ...", tips) and data-loader hints off the user's stderr."""
    loggers = [logging.getLogger(n) for n in ("lightning.pytorch", "lightning.fabric", "lightning")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.WARNING)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*(does not have many workers|LeafSpec|num_workers|"
                                                  r"val_check_interval|GPU available|TPU available).*")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"lightning\.")
        try:
            yield
        finally:
            for lg, level in zip(loggers, levels):
                lg.setLevel(level)


def _accelerator(device: str) -> tuple[str, Any]:
    device = str(device)
    if device.startswith("cuda"):
        return "gpu", [int(device.split(":")[1])] if ":" in device else 1
    return "cpu", 1


def _trainer(device: str, progress: bool, **kwargs: Any) -> pl.Trainer:
    accelerator, devices = _accelerator(device)
    return pl.Trainer(
        accelerator=accelerator, devices=devices, logger=False, enable_checkpointing=False,
        enable_model_summary=False, enable_progress_bar=progress, num_sanity_val_steps=0,
        gradient_clip_val=1.0, **kwargs,
    )


@contextlib.contextmanager
def _ctrl_c_raised(trainer: pl.Trainer) -> Iterator[None]:
    """Ctrl-C inside ``trainer`` as a KeyboardInterrupt: Lightning turns it into exit(1), its message
    hidden by quiet_lightning, and ignores SIGINT from then on."""
    on_interrupt = signal.getsignal(signal.SIGINT)
    try:
        yield
    except SystemExit:
        if trainer.interrupted:
            signal.signal(signal.SIGINT, on_interrupt)
            raise KeyboardInterrupt from None
        raise


def _validation_loss(task: ForecastingTask, loader: DataLoader, device: str) -> float:
    trainer = _trainer(device, progress=False)
    with _ctrl_c_raised(trainer):
        result = trainer.validate(task, dataloaders=loader, verbose=False)
    return float(result[0]["val_loss"])


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and value == value


def finetune_model(
    model: ForecastModel,
    series: SeriesSet,
    horizon: int,
    *,
    context_length: int | None = None,
    fraction: float = 0.1,
    mode: str = "head",
    max_epochs: int = 20,
    max_steps: int | None = None,
    val_size: int | None = None,
    learning_rate: float | None = None,
    batch_size: int = 64,
    patience: int = 3,
    progress: bool = True,
    device: str = "cpu",
    seed: int = 0,
) -> tuple[ForecastModel, FinetuneReport]:
    """Fine-tune ``model`` on ``series`` (see the module docstring); returns the kept model and a report.

    The input model is never modified: the returned model is a trained copy, or ``model`` itself
    when the zero-shot weights validated better.
    """
    if not _is_number(fraction) or not 0.0 < fraction <= 1.0:
        raise InputError(f"fraction must be in (0, 1], got {fraction!r}: e.g. 0.1 for 10% of each series' windows")
    for name, value in (("max_epochs", max_epochs), ("batch_size", batch_size), ("patience", patience),
                        ("max_steps", 1 if max_steps is None else max_steps)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
            raise InputError(f"{name} must be a positive integer, got {value!r}")
    if learning_rate is not None and not (_is_number(learning_rate) and 0.0 < learning_rate < float("inf")):
        raise InputError(f"learning rate must be a positive number, got {learning_rate!r}")
    config = model.config
    loss_steps = min(int(horizon), config.prediction_length)
    context = min(int(context_length or config.context_length), config.context_length)
    train_split, val_split, v = plan_windows(series.lengths.tolist(), loss_steps, val_size, fraction)
    if not any(np.isfinite(values[-v:]).any() for values in series.values):
        raise InputError(f"the validation points (the last {v} of every series) hold no observed value, so no "
                         "epoch could be judged: drop the trailing empty rows, or set val_size")
    skipped = len(series) - len(np.unique(train_split.series))
    if skipped:
        print(f"note: {skipped} series too short to cut training windows from are left out of fine-tuning "
              "(they are still forecast)", file=sys.stderr)

    exog = series_exog(series)
    n_past, n_future = len(series.past_exog_names), len(series.future_exog_names)
    with torch.random.fork_rng(devices=[]):  # new covariate modules start the same on every run
        torch.manual_seed(seed)
        work, load_report = (with_covariates(model, series.n_channels, n_past, n_future) if exog is not None
                             else (model, {"missing_keys": [], "unexpected_keys": []}))
    work = copy.deepcopy(work) if work is model else work
    mode, trainable = resolve_mode(work, mode)
    n_train, n_frozen = freeze(work, trainable, set(load_report["missing_keys"]))
    lr = float(learning_rate if learning_rate is not None else DEFAULT_LEARNING_RATE[mode])

    make = lambda split: SeriesWindows(  # noqa: E731
        series.values, split, context, config.prediction_length, loss_steps, series.freq_info.token,
        exog, n_future if exog is not None else 0,
    )
    generator = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(make(train_split), batch_size=batch_size, shuffle=True, generator=generator,
                              collate_fn=collate_windows)
    val_loader = DataLoader(make(val_split), batch_size=max(batch_size, 256), collate_fn=collate_windows)
    task = FinetuneTask.on_model(work, load_report["missing_keys"], lr=lr, weight_decay=0.0, warmup_steps=0,
                        min_lr_ratio=0.1)

    task.train()  # load_model hands out eval-mode models; Lightning keeps the mode it finds
    keep, count = KeepBestWeights(), CountWindows()
    stopper = pl.callbacks.EarlyStopping(monitor="val_loss", patience=patience, mode="min",
                                         check_on_train_epoch_end=False)
    # validate every epoch, or at the step limit when that comes first
    val_every = min(len(train_loader), max_steps) if max_steps else len(train_loader)
    start = time.perf_counter()
    bars = [pl.callbacks.TQDMProgressBar()] if progress else []
    # Lightning's bars print to stdout; stdout is for data (CLI contract), so they go to stderr
    with quiet_lightning(), torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(sys.stderr):
        torch.manual_seed(seed)
        before = _validation_loss(task, val_loader, device)
        trainer = _trainer(device, progress, max_epochs=max_epochs, max_steps=max_steps or -1,
                           callbacks=[stopper, keep, count, *bars], val_check_interval=val_every)
        with _ctrl_c_raised(trainer):
            trainer.fit(task, train_dataloaders=train_loader, val_dataloaders=val_loader)
        if trainer.global_step > keep.validated_step:  # a step limit inside an epoch: its last steps count too
            epoch = (trainer.global_step - 1) // len(train_loader)  # Lightning has closed the epoch by now
            keep.offer(_validation_loss(task, val_loader, device), task, epoch, trainer.global_step)
            count.validations += 1
    seconds = time.perf_counter() - start

    improved = keep.state is not None and keep.best < before
    if improved:
        work.load_state_dict(keep.state)
        for param in work.parameters():
            param.requires_grad_(True)
    report = FinetuneReport(
        mode=mode, fraction=float(fraction), horizon=int(horizon), loss_steps=loss_steps, val_size=v,
        train_windows=len(train_split), val_windows=len(val_split), learning_rate=lr, batch_size=batch_size,
        trainable_parameters=n_train, frozen_parameters=n_frozen, val_loss_before=before,
        val_loss_best=keep.best if keep.state is not None else math.nan, best_epoch=keep.epoch,
        epochs=count.validations, steps=trainer.global_step, windows_seen=count.windows, seconds=seconds,
        kept="fine-tuned" if improved else "zero-shot",
        past_exog=list(series.past_exog_names), future_exog=list(series.future_exog_names),
        missing_keys=list(load_report["missing_keys"]), unexpected_keys=list(load_report["unexpected_keys"]),
    )
    return (work if improved else model).eval(), report
