"""TTM — Tiny Time Mixers (Ekambaram et al., NeurIPS 2024), reimplemented for the tsfm contract.

Data flow (``forward``): raw ``[B, L, C]`` (+ past exogenous channels) -> fit to ``context_length``
(NaN / padding masked) -> per-channel mask-aware scaling -> non-overlapping patches -> patch
embedding of [scaled values, observed mask] -> optional resolution token prepended -> backbone
(adaptive-patching TSMixer) -> decoder (smaller mixer, optional channel mixing) -> quantile head on
the target channels -> optional exogenous mixer correction -> de-normalised ``[B, H, C, Q]``.

Deliberate differences from granite-tsfm (models.md §1): quantile output instead of a point
forecast; the patch embedding sees the observed mask (``mask_input``); shorter histories are
padded and masked instead of rejected; ``context_length`` must be a multiple of ``patch_length``;
config errors replace granite's silent fallbacks; a missing ``freq_id`` means token 0 (oov);
the exogenous mixer treats each target channel with the exogenous channels (so any number of
target channels works) and starts as an exact no-op (zero-initialised output layer).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from tsfm.errors import InputError
from tsfm.models.base import Capabilities, ForecastModel, ModelConfig
from tsfm.nn.heads import QuantileHead
from tsfm.nn.inputs import fit_context
from tsfm.nn.mixer import GatedAttention, MixerStack, adaptive_patching_error
from tsfm.nn.patching import patchify
from tsfm.nn.scaling import SCALERS, get_scaler
from tsfm_runtime.freq import FREQ_VOCAB

DECODER_MODES = ("common_channel", "mix_channel")
# granite's few-shot recipe: "head" freezes the patch embedding and backbone and trains the decoder,
# the head and the exogenous mixer (TTM's decoder is part of its head, so "decoder" is the same set)
HEAD_PARTS = ("decoder", "head", "exog_mixer")
FINETUNE_MODES = {"head": HEAD_PARTS, "decoder": HEAD_PARTS, "full": ("",)}


@dataclass
class TTMConfig(ModelConfig):
    """TTM hyperparameters. The defaults are the shipped model (< 1M parameters).

    ``decoder_d_model`` is 32 (granite's 512-96 release uses 128) because our head predicts
    ``H × Q`` values instead of ``H``: 64 would put the default config at ~1.3M parameters.
    ``num_input_channels`` is the channel count the decoder mixes in ``mix_channel`` mode:
    targets plus exogenous channels when ``past_exog`` is passed.
    ``anchor_last`` adds the last observed (scaled) value to the head's output, so the head predicts
    the change from where the history ends: with mean/std scaling alone, a forecast of a smooth
    trend had to rebuild the last level through the network and started up to a few steps off it.
    ``anchor_window`` > 1 anchors instead at the end point of a least-squares line through the last
    ``anchor_window`` observed values: exact on a line like the last value, but it averages the
    noise of a noisy level (the last value alone carries all of it).
    """

    family: ClassVar[str] = "ttm"
    patch_length: int = 32
    d_model: int = 128
    num_layers: int = 2
    adaptive_patching_levels: int = 3
    decoder_d_model: int = 32
    decoder_num_layers: int = 2
    decoder_adaptive_patching_levels: int = 0
    decoder_mode: str = "common_channel"
    num_input_channels: int | None = None
    expansion_factor: int = 2
    dropout: float = 0.2
    head_dropout: float = 0.2
    gated_attn: bool = True
    resolution_prefix_tuning: bool = True
    mask_input: bool = True
    scaling: str = "std_rel"  # TTM uses "std" (absolute 1e-5 floor); see tsfm.nn.scaling
    num_exog_channels: int = 0
    enable_exog_mixer: bool = False
    exog_context_length: int = 1
    exog_mix_layers: int = 2
    exog_prepend_past: bool = True
    anchor_last: bool = False
    anchor_window: int = 1

    weight_free_fields: ClassVar[tuple[str, ...]] = ("anchor_last", "anchor_window")
    # context 64, 8 patches of 8, d_model 16, 2 levels
    tiny_settings: ClassVar[dict[str, Any]] = dict(
        context_length=64, prediction_length=16, patch_length=8, d_model=16, num_layers=1,
        adaptive_patching_levels=2, decoder_d_model=8, decoder_num_layers=1, dropout=0.0, head_dropout=0.0,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_at_least(1, "patch_length", "d_model", "num_layers", "decoder_d_model", "decoder_num_layers",
                            "expansion_factor", "exog_mix_layers", "anchor_window")
        self.check_at_least(0, "adaptive_patching_levels", "decoder_adaptive_patching_levels", "num_exog_channels",
                            "exog_context_length")
        if self.context_length % self.patch_length:
            raise InputError(
                f"context_length {self.context_length} is not a multiple of patch_length {self.patch_length}; "
                "choose a patch_length that divides it (e.g. 8, 16, 32 or 64 for 512)"
            )
        for prefix in ("", "decoder_"):
            d_model, levels = getattr(self, f"{prefix}d_model"), getattr(self, f"{prefix}adaptive_patching_levels")
            error = adaptive_patching_error(d_model, levels)
            if error:
                raise InputError(
                    f"{prefix}d_model {error} ({prefix}adaptive_patching_levels={levels}); "
                    f"use a {prefix}d_model divisible by 2^{levels - 1} or fewer levels"
                )
        self.check_choice("decoder_mode", DECODER_MODES)
        if self.decoder_mode == "mix_channel" and (self.num_input_channels is None or self.num_input_channels < 1):
            raise InputError(
                "decoder_mode='mix_channel' mixes a fixed set of channels; set num_input_channels "
                "(targets + exogenous channels)"
            )
        self.check_choice("scaling", SCALERS)
        if self.enable_exog_mixer and self.num_exog_channels < 1:
            raise InputError("enable_exog_mixer=True needs num_exog_channels >= 1 (the number of future covariates)")
        self.check_rates("dropout", "head_dropout")

    @property
    def num_patches(self) -> int:
        """Patches cut from the context."""
        return self.context_length // self.patch_length

    @property
    def num_tokens(self) -> int:
        """Tokens on the patch axis seen by mixers, decoder and head (patches + resolution token)."""
        return self.num_patches + int(self.resolution_prefix_tuning)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            covariate_channels=self.num_exog_channels, future_covariates=self.enable_exog_mixer,
            freq_token=self.resolution_prefix_tuning, finetune_modes=FINETUNE_MODES,
            fixed_channels=self.num_input_channels if self.decoder_mode == "mix_channel" else None,
        )

    def with_covariates(self, n_targets: int, n_past: int, n_future: int) -> TTMConfig:
        """Covariates as extra channels of a channel-mixing decoder, known-future ones also through the
        exogenous mixer (both start as exact no-ops: see ``TTM.start_new_parts`` and ``ExogMixer``)."""
        n_exog = n_past + n_future
        return dataclasses.replace(self, num_exog_channels=n_exog, enable_exog_mixer=n_future > 0,
                                   decoder_mode="mix_channel", num_input_channels=n_targets + n_exog)


class PatchEmbedding(nn.Module):
    """Scaled values (+ observed mask) per patch -> ``d_model``; optional resolution token in front."""

    def __init__(self, config: TTMConfig) -> None:
        super().__init__()
        pl, d = config.patch_length, config.d_model
        self.patch_length = pl
        self.mask_input = config.mask_input
        self.patcher = nn.Linear(pl * (2 if config.mask_input else 1), d)
        self.freq_embedding: nn.Embedding | None = None
        if config.resolution_prefix_tuning:
            self.freq_embedding = nn.Embedding(len(FREQ_VOCAB), pl)
            self.freq_proj = nn.Sequential(nn.Linear(pl, (pl + d) // 2), nn.GELU(), nn.Linear((pl + d) // 2, d))

    def forward(self, scaled: torch.Tensor, mask: torch.Tensor, freq_id: torch.Tensor | None) -> torch.Tensor:
        patches = patchify(scaled, self.patch_length)  # [B, C, n, pl]
        if self.mask_input:
            patches = torch.cat([patches, patchify(mask, self.patch_length)], dim=-1)
        hidden = self.patcher(patches)  # [B, C, n, d]
        if self.freq_embedding is None:
            return hidden
        token = self.freq_proj(self.freq_embedding(self._token_ids(freq_id, scaled)))  # [B, d]
        token = token[:, None, None, :].expand(hidden.shape[0], hidden.shape[1], 1, -1)  # one id may serve all
        return torch.cat([token, hidden], dim=2)

    def _token_ids(self, freq_id: torch.Tensor | None, scaled: torch.Tensor) -> torch.Tensor:
        """``freq_id`` as long [B] (or one id for the batch); missing or out-of-vocabulary ids become 0 (oov)."""
        if freq_id is None:
            return torch.zeros(scaled.shape[0], dtype=torch.long, device=scaled.device)
        ids = freq_id.reshape(-1).long()
        valid = (ids >= 0) & (ids < len(FREQ_VOCAB))
        return torch.where(valid, ids, torch.zeros_like(ids))


class Decoder(nn.Module):
    """Adapter ``d_model -> decoder_d_model`` then a smaller mixer stack, optionally mixing channels."""

    def __init__(self, config: TTMConfig) -> None:
        super().__init__()
        d, dd = config.d_model, config.decoder_d_model
        self.adapter = nn.Linear(d, dd) if d != dd else nn.Identity()
        mix = config.decoder_mode == "mix_channel"
        self.mixer = MixerStack(
            config.num_tokens, dd, config.decoder_num_layers, config.decoder_adaptive_patching_levels,
            num_channels=config.num_input_channels if mix else None,
            expansion_factor=config.expansion_factor, dropout=config.head_dropout, gated_attn=config.gated_attn,
        )

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.mixer(self.adapter(hidden))


class ExogMixer(nn.Module):
    """Forecast channel mixing (TTM §1.6): corrects target forecasts with known-future covariates.

    For every horizon step it takes a window of ``2k+1`` values (``k = exog_context_length``) of a
    target's scaled base forecast and of each scaled future covariate (zero-padded after the
    horizon; before it, the last ``k`` past values or zeros), embeds each window, mixes the
    ``1 + E`` windows with a small gated mixer that treats channels as patches, and maps the result
    to one additive correction (scaled units). Each target channel is handled with the covariates
    on its own, so any number of targets works; the output layer starts at zero (an exact no-op).
    """

    def __init__(self, config: TTMConfig) -> None:
        super().__init__()
        self.k = config.exog_context_length
        self.prepend_past = config.exog_prepend_past
        window = 2 * self.k + 1
        tokens, features = 1 + config.num_exog_channels, 2 * window
        self.embed = nn.Linear(window, features)
        self.mixer = MixerStack(
            tokens, features, config.exog_mix_layers, 0, expansion_factor=config.expansion_factor,
            dropout=config.head_dropout, gated_attn=True,
        )
        self.gate = GatedAttention(tokens * features)
        self.out = nn.Linear(tokens * features, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def _windows(self, past: torch.Tensor, future: torch.Tensor) -> torch.Tensor:
        """``past [B, k, X]``, ``future [B, H, X]`` -> windows ``[B, H, X, 2k+1]`` centred on each step."""
        horizon = future.shape[1]
        lead = past if self.prepend_past else torch.zeros_like(past)
        series = torch.cat([lead, F.pad(future, (0, 0, 0, self.k))], dim=1)  # [B, H + 2k, X]
        return torch.stack([series[:, j : j + horizon] for j in range(2 * self.k + 1)], dim=-1)

    def forward(
        self, base: torch.Tensor, future_exog: torch.Tensor, past_target: torch.Tensor, past_exog: torch.Tensor
    ) -> torch.Tensor:
        """``base [B, H, C]``, ``future_exog [B, H, E]``, past tails ``[B, k, ·]`` -> correction ``[B, H, C]``."""
        targets = self._windows(past_target, base)  # [B, H, C, W]
        covariates = self._windows(past_exog, future_exog)  # [B, H, E, W]
        covariates = covariates.unsqueeze(2).expand(-1, -1, targets.shape[2], -1, -1)  # [B, H, C, E, W]
        tokens = torch.cat([targets.unsqueeze(3), covariates], dim=3)  # [B, H, C, 1+E, W]
        hidden = self.mixer(self.embed(tokens))  # [B, H, C, 1+E, 2W]
        return self.out(self.gate(hidden.flatten(-2))).squeeze(-1)


def last_observed(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``[B, C]``: each channel's value at its last observed step of ``values [B, L, C]`` (0 if none)."""
    steps = torch.arange(1, values.shape[1] + 1, device=values.device, dtype=values.dtype)[None, :, None]
    last = (mask * steps).argmax(dim=1, keepdim=True)  # the latest step whose mask is 1
    return values.gather(1, last).squeeze(1) * mask.amax(dim=1)


def line_end(values: torch.Tensor, mask: torch.Tensor, window: int) -> torch.Tensor:
    """``[B, C]``: a least-squares line through each channel's last ``window`` observed values of
    ``values [B, L, C]``, evaluated at the last observed step (its value there if only one; 0 if none)."""
    if window <= 1:
        return last_observed(values, mask)
    from_end = mask.flip(1).cumsum(1).flip(1)  # observed steps from here to the end, this one included
    weight = mask * (from_end <= window).to(mask.dtype)
    steps = torch.arange(values.shape[1], device=values.device, dtype=values.dtype)[None, :, None]
    total = weight.sum(1, keepdim=True).clamp(min=1.0)
    mean_t = (weight * steps).sum(1, keepdim=True) / total
    mean_y = (weight * values).sum(1, keepdim=True) / total
    spread = (weight * (steps - mean_t) ** 2).sum(1, keepdim=True)
    slope = (weight * (steps - mean_t) * (values - mean_y)).sum(1, keepdim=True) / spread.clamp(min=1e-6)
    last_t = (mask * steps).amax(1, keepdim=True)
    return (mean_y + slope * (last_t - mean_t)).squeeze(1)


class TTM(ForecastModel):
    """Tiny Time Mixer: ``forward(past_values [B, L, C], ...) -> quantiles [B, H, C, Q]`` (see module doc)."""

    config_class: ClassVar[type[ModelConfig]] = TTMConfig
    config: TTMConfig

    def __init__(self, config: TTMConfig) -> None:
        super().__init__(config)
        self.scaler = get_scaler(config.scaling)
        self.embedding = PatchEmbedding(config)
        self.backbone = MixerStack(
            config.num_tokens, config.d_model, config.num_layers, config.adaptive_patching_levels,
            expansion_factor=config.expansion_factor, dropout=config.dropout, gated_attn=config.gated_attn,
        )
        self.decoder = Decoder(config)
        self.head = QuantileHead(
            config.num_tokens, config.decoder_d_model, config.prediction_length, config.quantiles,
            config.head_dropout,
        )
        self.exog_mixer = ExogMixer(config) if config.enable_exog_mixer else None

    def forward(
        self,
        past_values: torch.Tensor,
        past_mask: torch.Tensor | None = None,
        freq_id: torch.Tensor | None = None,
        past_exog: torch.Tensor | None = None,
        future_exog: torch.Tensor | None = None,
    ) -> torch.Tensor:
        values, mask = fit_context(past_values, past_mask, self.config.context_length,
                                   self.embedding.patcher.weight.dtype, past_exog, self.config.num_exog_channels)
        n_targets = past_values.shape[-1]
        if past_exog is not None:
            self._check_future_exog(past_exog, future_exog)
        elif future_exog is not None and self.exog_mixer is not None:
            raise InputError("future_exog needs past_exog (the same covariates over the context) to be scaled")
        self._check_channels(values.shape[-1], past_exog is not None)

        loc, scale = self.scaler(values, mask)
        scaled = (values - loc) / scale * mask  # unobserved points are exactly 0
        hidden = self.decoder(self.backbone(self.embedding(scaled, mask, freq_id)))
        if past_exog is not None:
            hidden = hidden[:, :n_targets]
        out = self.head(hidden).transpose(1, 2)  # [B, H, C, Q], scaled units
        if self.config.anchor_last:
            anchor = line_end(scaled[..., :n_targets], mask[..., :n_targets], self.config.anchor_window)
            out = out + anchor[:, None, :, None]

        if self.exog_mixer is not None and future_exog is not None:
            out = out + self._exog_correction(out, scaled, loc, scale, future_exog, n_targets).unsqueeze(-1)
        loc, scale = loc[:, :, :n_targets, None], scale[:, :, :n_targets, None]
        return out * scale + loc

    def _exog_correction(
        self,
        out: torch.Tensor,
        scaled: torch.Tensor,
        loc: torch.Tensor,
        scale: torch.Tensor,
        future_exog: torch.Tensor,
        n_targets: int,
    ) -> torch.Tensor:
        """Exogenous-mixer correction ``[B, H, C]`` in scaled units, from the median base forecast."""
        horizon, k = self.config.prediction_length, self.config.exog_context_length
        future = future_exog[:, :horizon].to(scaled.dtype)
        future = (future - loc[:, :, n_targets:]) / scale[:, :, n_targets:]
        future = torch.where(torch.isnan(future), torch.zeros_like(future), future)
        tail = scaled[:, scaled.shape[1] - k :]
        base = out[..., self.config.median_index]
        return self.exog_mixer(base, future, tail[..., :n_targets], tail[..., n_targets:])

    def _check_future_exog(self, past_exog: torch.Tensor, future_exog: torch.Tensor | None) -> None:
        cfg = self.config
        n_exog = past_exog.shape[-1]
        if future_exog is None:
            return
        if future_exog.dim() != 3 or future_exog.shape[0] != past_exog.shape[0] or future_exog.shape[2] != n_exog:
            raise InputError(
                f"future_exog must be [batch, horizon, {n_exog}] like past_exog, got {tuple(future_exog.shape)}"
            )
        if future_exog.shape[1] < cfg.prediction_length:
            raise InputError(
                f"future_exog covers {future_exog.shape[1]} steps but the model forecasts "
                f"{cfg.prediction_length}; pass covariates for the whole horizon"
            )

    def start_new_parts(self, missing: set[str]) -> None:
        """A channel mixer new to the decoder (a univariate model made covariate-aware) starts as an
        exact no-op: its residual branch's last linear layer is zeroed. The exogenous mixer already
        starts as one."""
        for name, module in self.named_modules():
            if name.endswith("channel_mixer") and f"{name}.mix.mlp.fc2.weight" in missing:
                nn.init.zeros_(module.mix.mlp.fc2.weight)
                nn.init.zeros_(module.mix.mlp.fc2.bias)

    def _check_channels(self, channels: int, with_exog: bool) -> None:
        cfg = self.config
        if cfg.decoder_mode == "mix_channel" and channels != cfg.num_input_channels:
            what = "target + exogenous channels" if with_exog else "channels"
            raise InputError(
                f"this TTM mixes exactly {cfg.num_input_channels} channels (decoder_mode='mix_channel') but got "
                f"{channels} {what}; pass that many or use a common_channel model"
            )
