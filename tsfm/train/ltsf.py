"""Full-shot training on the long-horizon (LTSF) benchmark, the way the papers train.

iTransformer (thuml/iTransformer) and S-Mamba (wzhwzhwzh0921/S-D-Mamba) share one experiment
loop (``exp_long_term_forecasting.py``): Adam, MSE on z-normalised values, batch 32, at most 10
epochs, the learning rate halved after every epoch from the second on (``lradj=type1``),
early stopping on the validation MSE with patience 3 and the best validation checkpoint used
for the test. Here that loop is Lightning: :class:`LTSFDataModule` serves the protocol's
windows (:mod:`tsfm.data.ltsf`), :class:`LTSFTask` trains any registered family on the MSE of
its median (a ``quantiles=[0.5]`` config makes the quantile head the paper's point head), and
:func:`fit_and_test` runs fit + early stopping + test and returns the numbers.

The reference models also read the timestamps' ``timeF`` marks as extra variate tokens
(``DataEmbedding_inverted``); ``time_features=True`` passes the same four marks as
``past_exog`` (our tokenizer scales them per window, the reference feeds them unscaled).

SpaceTime (HazyResearch/spacetime) is trained in its own paper's setting instead: the Informer
benchmark's univariate task (the ``OT`` channel alone), lag 336, horizon 720, AdamW with weight
decay, batch 50 (``SPACETIME_SETTINGS``). The same loop trains it on the MSE of its closed-loop
forecast; the reference adds two auxiliary terms (open-loop next-step outputs and closed-loop
inputs, ``--criterion_weights 1 1 1``), which this loop leaves out.
"""

from __future__ import annotations

import copy
import math
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from tsfm.data.ltsf import LTSFData
from tsfm.models.registry import build_model

NUM_MARKS = 4

# The reference scripts' settings (scripts/multivariate_forecasting/...; run.py defaults: n_heads 8,
# e_layers 2, dropout 0.1, gelu, batch 32, lr 1e-4, 10 epochs, patience 3, lradj type1, d_state 32).
ITRANSFORMER_SETTINGS: dict[tuple[str, int], dict[str, Any]] = {
    **{("etth1", h): {"d_model": 256, "d_ff": 256} for h in (96, 192)},
    **{("etth1", h): {"d_model": 512, "d_ff": 512} for h in (336, 720)},
    **{("etth2", h): {"d_model": 128, "d_ff": 128} for h in (96, 192, 336, 720)},
    **{("exchange_rate", h): {"d_model": 128, "d_ff": 128} for h in (96, 192, 720)},
    ("exchange_rate", 336): {"d_model": 128, "d_ff": 128, "epochs": 1},  # the script says --train_epochs 1
}
S_MAMBA_SETTINGS: dict[tuple[str, int], dict[str, Any]] = {
    **{("etth1", h): {"d_model": 256, "d_ff": 256, "d_state": 2, "lr": 7e-5} for h in (96, 192)},
    **{("etth1", h): {"d_model": 256, "d_ff": 256, "d_state": 2, "lr": 5e-5} for h in (336, 720)},
    **{("etth2", h): {"d_model": 256, "d_ff": 256, "d_state": 2, "lr": lr}
       for h, lr in ((96, 4e-5), (192, 4e-5), (336, 3e-5), (720, 7e-5))},
    ("exchange_rate", 96): {"d_model": 128, "d_ff": 128, "d_state": 32, "lr": 1e-4, "batch_size": 16},
    ("exchange_rate", 192): {"d_model": 128, "d_ff": 128, "d_state": 32, "lr": 1e-4},
    **{("exchange_rate", h): {"d_model": 128, "d_ff": 128, "d_state": 32, "lr": 5e-5} for h in (336, 720)},
}
# SpaceTime (HazyResearch/spacetime README "ETTh1 720" / "ETTh2 720" commands + configs/model): univariate OT
# (configs/datasets/informer/etth.yaml: features 'S'), lag 336, horizon 720, --n_blocks 1 (one encoder block, the
# one with the preprocessing SSM, then the closed-loop decoder block), model_dim 128 (configs/model/*: 4 heads x
# 32 kernels), --kernel_dim 64, --norm_order 1, --dropout 0.25, --batch_size 50, AdamW (args.py default) lr 1e-3,
# --weight_decay 1e-4. Their budget (500 epochs, early stopping patience 20, timm cosine schedule with 10 warm-up
# epochs) does not fit a CPU session: ``epochs`` / ``patience`` below are ours, lr constant at its peak.
SPACETIME_SETTINGS: dict[tuple[str, int], dict[str, Any]] = {
    (dataset, 720): {"model_dim": 128, "kernel_dim": 64, "encoder_blocks": 1, "first_block_kernels": 32,
                     "dropout": 0.25, "lr": 1e-3, "batch_size": 50, "weight_decay": 1e-4, "optimizer": "adamw",
                     "lradj": "constant", "epochs": 15, "patience": 4}
    for dataset in ("etth1", "etth2")
}
SPACETIME_LOOKBACK, SPACETIME_TARGET = 336, "OT"
SETTINGS_SOURCE = {
    "itransformer": "thuml/iTransformer scripts/multivariate_forecasting/{ETT/iTransformer_ETTh1.sh, "
                    "ETT/iTransformer_ETTh2.sh, Exchange/iTransformer.sh} + run.py defaults",
    "s-mamba": "wzhwzhwzh0921/S-D-Mamba scripts/multivariate_forecasting/{ETT/S_Mamba_ETTh1.sh, "
               "ETT/S_Mamba_ETTh2.sh, Exchange/S_Mamba.sh} + run.py defaults",
    "spacetime": "HazyResearch/spacetime README (ETTh1 720 / ETTh2 720 commands), setup/args.py defaults, "
                 "configs/datasets/informer/etth.yaml, configs/model/{encoder,decoder,ssm,embedding}",
}


@dataclass
class TrainSettings:
    """Optimisation settings of one run (the reference run.py's defaults)."""

    lr: float = 1e-4
    batch_size: int = 32
    epochs: int = 10
    patience: int = 3
    lradj: str = "type1"
    seed: int = 2023  # run.py's fix_seed
    optimizer: str = "adam"  # or "adamw" (SpaceTime's default)
    weight_decay: float = 0.0
    drop_last: bool = True  # the reference loaders drop the last partial training batch; HF Trainer (granite) does not
    time_features: bool = True
    eval_batch_size: int = 256

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class PaperSetup:
    model: dict[str, Any]
    train: TrainSettings
    source: str = ""
    notes: list[str] = field(default_factory=list)


def paper_setup(family: str, dataset: str, horizon: int, lookback: int = 96, time_features: bool = True) -> PaperSetup:
    """Model config + training settings of the papers' scripts for one family, dataset and horizon."""
    table = {"itransformer": ITRANSFORMER_SETTINGS, "s-mamba": S_MAMBA_SETTINGS,
             "spacetime": SPACETIME_SETTINGS}.get(family)
    if table is None:
        raise ValueError(f"no paper settings for family '{family}' (itransformer, s-mamba or spacetime)")
    if (dataset, horizon) not in table:
        raise ValueError(f"no paper settings for {family} on {dataset} at horizon {horizon}")
    item = dict(table[(dataset, horizon)])
    train = TrainSettings(time_features=time_features and family != "spacetime")
    for key in ("lr", "batch_size", "epochs", "patience", "lradj", "optimizer", "weight_decay"):
        if key in item:
            setattr(train, key, item.pop(key))
    if family == "spacetime":  # univariate, no timestamp marks; the paper's point output and plain repeat embedding
        model = dict(family=family, context_length=lookback, prediction_length=horizon, quantiles=[0.5],
                     mask_input=False, scaling="std", **item)
        return PaperSetup(model=model, train=train, source=SETTINGS_SOURCE[family])
    common: dict[str, Any] = dict(context_length=lookback, prediction_length=horizon, quantiles=[0.5],
                                  e_layers=2, dropout=0.1, mask_input=False, scaling="std")
    if family == "itransformer":
        model = dict(family=family, n_heads=8, activation="gelu",
                     num_exog_channels=NUM_MARKS if time_features else 0, **common, **item)
    else:
        model = dict(family=family, d_conv=2, expand=1, **common, **item)
    return PaperSetup(model=model, train=train, source=SETTINGS_SOURCE[family])


class LTSFDataModule(pl.LightningDataModule):
    """Train / validation / test windows of one LTSF dataset at one lookback and horizon."""

    def __init__(self, data: LTSFData, lookback: int, horizon: int, batch_size: int = 32,
                 eval_batch_size: int = 256, seed: int = 0, test_stride: int = 1, train_fraction: float = 1.0,
                 drop_last: bool = True) -> None:
        super().__init__()
        if not 0.0 < train_fraction <= 1.0:
            raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
        self.data, self.lookback, self.horizon = data, lookback, horizon
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.seed, self.test_stride = seed, test_stride
        self.train_fraction, self.drop_last = train_fraction, drop_last

    def setup(self, stage: str | None = None) -> None:
        if getattr(self, "train_set", None) is not None:
            return
        self.train_set = self.data.windows("train", self.lookback, self.horizon)
        if self.train_fraction < 1.0:  # few-shot: granite's select_by_fixed_fraction(location="last",
            # minimum_size=context_length): the last int(f * (rows - L)) + L training rows, and the windows inside them
            rows = self.data.segments["train"][1] - self.data.segments["train"][0]
            keep = max(1, int(self.train_fraction * (rows - self.lookback)) - self.horizon + 1)
            self.train_set.starts = self.train_set.starts[-keep:]
        self.val_set = self.data.windows("val", self.lookback, self.horizon)
        self.test_set = self.data.windows("test", self.lookback, self.horizon, stride=self.test_stride)

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed)
        return DataLoader(self.train_set, batch_size=self.batch_size, shuffle=True,
                          drop_last=self.drop_last and len(self.train_set) > self.batch_size, generator=generator)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val_set, batch_size=self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return DataLoader(self.test_set, batch_size=self.eval_batch_size, shuffle=False)


class LTSFTask(pl.LightningModule):
    """Any registered family trained on the MSE of its median forecast (Adam, per-epoch lr decay)."""

    def __init__(self, model: dict[str, Any], lr: float = 1e-4, lradj: str = "type1", time_features: bool = True,
                 trainable: tuple[str, ...] = ("",), horizon: int | None = None, optimizer: str = "adam",
                 weight_decay: float = 0.0) -> None:
        super().__init__()
        if lradj not in ("type1", "constant", "onecycle"):
            raise ValueError(f"lradj must be 'type1', 'constant' or 'onecycle', got {lradj!r}")
        if optimizer not in ("adam", "adamw"):
            raise ValueError(f"optimizer must be 'adam' or 'adamw', got {optimizer!r}")
        self.save_hyperparameters()
        self.model = build_model(dict(model))
        self.set_trainable(trainable)

    def set_trainable(self, prefixes: tuple[str, ...]) -> None:
        """Train only the parameters under these top-level names ("" = all), e.g. TTM's head for few-shot."""
        for name, param in self.model.named_parameters():
            param.requires_grad = any(name == p or name.startswith(p + ".") or p == "" for p in prefixes)
        self._sums = torch.zeros(3, dtype=torch.float64)

    def point_forecast(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, H, C]``: the median level of the model's quantiles (the only level when quantiles=[0.5]),
        its first ``horizon`` steps."""
        exog = batch.get("past_exog") if self.hparams.time_features else None
        out = self.model(batch["past_values"], None, batch.get("freq_id"), exog)
        return out[:, : self.hparams.horizon or out.shape[1], :, self.model.config.median_index]

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = F.mse_loss(self.point_forecast(batch), batch["future_values"])
        self.log("train_loss", loss, prog_bar=True, batch_size=batch["past_values"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss = F.mse_loss(self.point_forecast(batch), batch["future_values"])
        self.log("val_loss", loss, prog_bar=True, on_epoch=True, batch_size=batch["past_values"].shape[0])

    def on_test_epoch_start(self) -> None:
        self._sums = torch.zeros(3, dtype=torch.float64)

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        diff = (self.point_forecast(batch) - batch["future_values"]).double().cpu()
        self._sums += torch.stack([(diff**2).sum(), diff.abs().sum(), torch.tensor(float(diff.numel()),
                                                                                    dtype=torch.float64)])

    def on_test_epoch_end(self) -> None:
        n = float(self._sums[2])
        self.test_metrics = {"mse": float(self._sums[0]) / n, "mae": float(self._sums[1]) / n}
        self.log("test_mse", self.test_metrics["mse"])
        self.log("test_mae", self.test_metrics["mae"])

    def configure_optimizers(self) -> dict[str, Any]:
        params = [p for p in self.model.parameters() if p.requires_grad]
        opt_cls = torch.optim.AdamW if self.hparams.optimizer == "adamw" else torch.optim.Adam
        optimizer = opt_cls(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        if self.hparams.lradj == "constant":
            return {"optimizer": optimizer}
        if self.hparams.lradj == "onecycle":  # granite-tsfm's few-shot: OneCycleLR(lr) over all planned steps
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, self.hparams.lr, total_steps=max(int(self.trainer.estimated_stepping_batches), 2))
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
        # type1: epochs 1 and 2 at lr, then halved after every epoch (the reference's adjust_learning_rate)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda epoch: 0.5 ** max(epoch - 1, 0))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


class BestWeights(pl.Callback):
    """Keep the weights of the epoch with the lowest validation loss (restored after fit) and time epochs."""

    def __init__(self) -> None:
        self.best_loss, self.best_epoch, self.state = math.inf, -1, None
        self.epoch_seconds: list[float] = []
        self.val_losses: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.epoch_seconds.append(time.perf_counter() - self._start)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        loss = float(trainer.callback_metrics["val_loss"])
        self.val_losses.append(loss)
        if loss < self.best_loss:
            self.best_loss, self.best_epoch = loss, trainer.current_epoch
            self.state = copy.deepcopy(pl_module.model.state_dict())

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.state is not None:
            pl_module.model.load_state_dict(self.state)


def fit_and_test(data: LTSFData, model: dict[str, Any], settings: TrainSettings, *, accelerator: str = "cpu",
                 progress: bool = True, limit_train_batches: int | float = 1.0, limit_val_batches: int | float = 1.0,
                 test_stride: int = 1, pretrained: torch.nn.Module | None = None,
                 trainable: tuple[str, ...] = ("",), train_fraction: float = 1.0,
                 horizon: int | None = None) -> dict[str, Any]:
    """Train ``model`` on ``data``'s training windows with validation early stopping, test the best
    validation epoch on every test origin; return the metrics and how the run went.

    Few-shot: ``pretrained`` (a model of config ``model``) gives the starting weights, ``trainable``
    the parameters that train, ``train_fraction`` the last share of the training windows kept, and
    ``horizon`` the steps scored (default: the model's prediction length)."""
    from lightning.pytorch.callbacks import EarlyStopping

    pl.seed_everything(settings.seed, workers=True, verbose=False)
    lookback, horizon = int(model["context_length"]), int(horizon or model["prediction_length"])
    dm = LTSFDataModule(data, lookback, horizon, batch_size=settings.batch_size,
                        eval_batch_size=settings.eval_batch_size, seed=settings.seed, test_stride=test_stride,
                        train_fraction=train_fraction, drop_last=settings.drop_last)
    task = LTSFTask(model, lr=settings.lr, lradj=settings.lradj, time_features=settings.time_features,
                    trainable=trainable, horizon=horizon, optimizer=settings.optimizer,
                    weight_decay=settings.weight_decay)
    if pretrained is not None:
        task.model.load_state_dict(pretrained.state_dict())
        task.set_trainable(trainable)
    best = BestWeights()
    stop = EarlyStopping(monitor="val_loss", mode="min", patience=settings.patience, check_on_train_epoch_end=False)
    with tempfile.TemporaryDirectory() as root:
        trainer = pl.Trainer(accelerator=accelerator, devices=1, max_epochs=settings.epochs,
                             limit_train_batches=limit_train_batches,
                             logger=False, enable_checkpointing=False, enable_model_summary=False,
                             enable_progress_bar=progress, num_sanity_val_steps=0, callbacks=[best, stop],
                             limit_val_batches=limit_val_batches, default_root_dir=root)
        start = time.perf_counter()
        trainer.fit(task, datamodule=dm)
        fit_seconds = time.perf_counter() - start
        trainer.test(task, datamodule=dm, verbose=False)
    return {
        **task.test_metrics,
        "n_train_windows": len(dm.train_set),
        "n_val_windows": len(dm.val_set),
        "n_test_windows": len(dm.test_set),
        "epochs_run": len(best.epoch_seconds),
        "best_epoch": best.best_epoch + 1,
        "best_val_mse": best.best_loss,
        "val_mse_per_epoch": best.val_losses,
        "seconds_per_epoch": best.epoch_seconds,
        "fit_seconds": fit_seconds,
        "parameters": task.model.num_parameters(),
        "trainable_parameters": sum(p.numel() for p in task.model.parameters() if p.requires_grad),
    }
