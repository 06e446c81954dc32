"""One LightningModule for every family: the model's own training loss, AdamW, warmup + cosine."""

from __future__ import annotations

import math
from typing import Any

import lightning.pytorch as pl
import torch

from tsfm.models.base import ForecastModel, ModelConfig
from tsfm.models.registry import build_model
from tsfm.nn.decay import decays
from tsfm.nn.losses import check_loss_scale


class ForecastingTask(pl.LightningModule):
    """Trains any registered family through ``ForecastModel.training_loss``."""

    def __init__(
        self,
        model: dict[str, Any],
        lr: float = 1e-3,
        weight_decay: float = 0.05,
        warmup_steps: int = 100,
        min_lr_ratio: float = 0.05,
        loss_scale: str = "mad",
    ) -> None:
        check_loss_scale(loss_scale)  # before any step, not at the first batch
        super().__init__()
        self.save_hyperparameters()
        self.model: ForecastModel = build_model(dict(model))

    @property
    def model_config(self) -> ModelConfig:
        return self.model.config

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.model.training_loss(
            batch["past_values"],
            batch["future_values"],
            past_mask=batch.get("past_mask"),
            future_mask=batch.get("future_mask"),
            freq_id=batch.get("freq_id"),
            past_exog=batch.get("past_exog"),
            future_exog=batch.get("future_exog"),
            loss_scale=self.hparams.loss_scale,
        )

    def on_train_epoch_start(self) -> None:
        """Each epoch draws fresh windows: the sampler's seed includes the epoch."""
        train_set = getattr(getattr(self.trainer, "datamodule", None), "train_set", None)
        if train_set is not None and hasattr(train_set, "set_epoch"):
            train_set.set_epoch(self.current_epoch)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep the random-number state, so a resumed run draws the dropout masks an uninterrupted one would."""
        states = {"torch": torch.get_rng_state()}
        if torch.cuda.is_available() and self.device.type == "cuda":
            states["cuda"] = torch.cuda.get_rng_state(self.device)
        checkpoint["tsfm_rng_states"] = states

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._rng_states_to_restore = checkpoint.get("tsfm_rng_states")

    def on_train_start(self) -> None:
        """Restore the saved RNG state here, not on load: creating the dataloader iterator draws from it."""
        states = getattr(self, "_rng_states_to_restore", None)
        if not states:
            return
        torch.set_rng_state(states["torch"].cpu())
        if "cuda" in states and self.device.type == "cuda":
            torch.cuda.set_rng_state(states["cuda"].cpu(), self.device)
        self._rng_states_to_restore = None

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("train_loss", loss, prog_bar=True, batch_size=batch["past_values"].shape[0])
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        self.log("val_loss", loss, prog_bar=True, sync_dist=True, batch_size=batch["past_values"].shape[0])
        return loss

    def parameter_groups(self) -> list[dict[str, Any]]:
        """AdamW groups of the trainable parameters: no weight decay on vectors, norms, embeddings and
        parameters their layer exempts (``tsfm.nn.decay``: Mamba's ``A_log``, as in mamba_ssm)."""
        decay, no_decay = [], []
        for name, param in self.model.named_parameters():
            if param.requires_grad:
                (decay if decays(name, param) else no_decay).append(param)
        return [{"params": decay, "weight_decay": self.hparams.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    def configure_optimizers(self) -> dict[str, Any]:
        optimizer = torch.optim.AdamW(self.parameter_groups(), lr=self.hparams.lr)
        total = self.trainer.estimated_stepping_batches if self.trainer is not None else 1000
        total = max(int(total), 1)
        warmup = min(self.hparams.warmup_steps, max(total // 10, 1))
        floor = self.hparams.min_lr_ratio

        def schedule(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
