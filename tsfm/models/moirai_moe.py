"""Moirai-MoE (Liu et al., arXiv 2410.10469, ICML 2025), reimplemented for the tsfm contract.

Data flow (``forward``): raw ``[B, L, C]`` (+ past covariates ``[B, L, E]`` as extra variates) ->
fit to ``context_length`` (shorter histories left-padded with masked values; a multiple of the
patch size) -> per-sample, per-variate mask-aware scaling from the context -> non-overlapping
patches of ``patch_size`` -> one input projection of [scaled values (0 where unobserved),
observed mask] (``Linear -> SiLU -> Linear`` plus a linear residual, Moirai's shape) -> all
variates' tokens flattened into one sequence -> ``num_layers`` pre-norm decoder layers (RMSNorm;
any-variate attention: query sees keys of the same sample with ``time_k <= time_q`` — variates at
the same step see each other —, QK-norm, RoPE on the time index, a learned per-head scalar bias
for same- vs different-variate pairs; then a sparse top-k MoE of SwiGLU experts) -> final
RMSNorm -> one output projection to a mixture distribution over the next patch's values
(``tsfm.nn.distributions``) read from the last context token of every target variate ->
quantiles by bisection on the mixture CDF -> patches after the first decoded autoregressively
with a KV cache (quantile paths, below) -> de-scaled ``[B, H, C, Q]``.

Longer horizons than one patch — quantile paths: after the first patch the batch is expanded
by Q; path j is fed, for every generated patch, its own distribution's level-j quantile (16
values), and only the new tokens are computed (KV cache). For each later patch the Q paths'
quantiles at the Q levels give Q x Q candidate values per step, reduced to the Q output levels
by empirical quantiles (numpy's "linear" rule, on sorted candidates, so the output is monotone).
This is deterministic and costs Q decoder passes instead of Moirai's 100 sampled paths, each
re-running the whole sequence (models.md §3.3, pitfall 6); like Chronos-Bolt's rollout it treats
the Q levels as equally weighted scenarios, so it ignores the mass beyond the outer levels.

Training (``training_loss``): context and future form one teacher-forced sequence; the loss is
the mean negative log-likelihood (scaled space) of every observed value of every next patch
(token t predicts patch t + 1; context patches included, target variates only), plus
``load_balance_weight`` x the Switch load-balancing loss averaged over the MoE layers.

Deliberate differences from Salesforce's Moirai-MoE (models.md §3, pitfalls 3, 5, 6):
- gating is a learned linear router (softmax, top-k, renormalised) with the Switch
  load-balancing loss (``gating="learned"``, recorded in the config), not ``cdist`` to frozen
  k-means centroids picking the two farthest; sizes are scaled down (8 experts, not 32);
- the mixture is Student-t + Normal + Normal(scale 1e-3): NegativeBinomial and LogNormal have
  the wrong support for standardised real values (see ``tsfm.nn.distributions``);
- the patch embedding sees the observed mask, fully unobserved (padding) tokens are never
  attended to, and the default scaler is ``std_rel`` (Moirai: Bessel-corrected std, 1e-5 in the sqrt);
- forecasts are deterministic quantiles (bisection + quantile paths) instead of 100 samples;
- decoding uses a KV cache; new steps add target tokens only: past covariates are unknown in the
  future, so their future tokens would be fully masked and are never attended to (in training
  they are present but masked, which gives the same result);
- ``freq_id`` is accepted and ignored (Moirai-MoE has no frequency input); ``future_exog``
  raises ``InputError`` (no path for known-future covariates).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from tsfm.errors import InputError
from tsfm.models.base import Capabilities, ForecastModel, ModelConfig
from tsfm.nn.attention import AnyVariateAttention, KVCache, RMSNorm, RotaryEmbedding, any_variate_mask
from tsfm.nn.distributions import MixtureHead, MixtureParams, mixture_log_prob, mixture_quantiles
from tsfm.nn.inputs import fit_context, prepare_inputs
from tsfm.nn.moe import GATINGS, MoEFeedForward
from tsfm.nn.scaling import SCALERS, get_scaler


@dataclass
class MoiraiMoEConfig(ModelConfig):
    """Moirai-MoE hyperparameters; the defaults are ~2.7M parameters, ~0.9M active per token.

    ``d_ff`` is each expert's hidden size. ``num_exog_channels`` is the number of past
    covariates the model was trained with (0: none, or any count): they are extra variates.
    """

    family: ClassVar[str] = "moirai-moe"
    patch_size: int = 16
    d_model: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_experts: int = 8
    top_k: int = 2
    d_ff: int = 192
    gating: str = "learned"
    load_balance_weight: float = 0.01
    rope_fraction: float = 0.5  # share of each head's features rotated (Moirai: half)
    rope_base: float = 10000.0
    dropout: float = 0.0
    scaling: str = "std_rel"
    quantile_bisection_steps: int = 20
    num_exog_channels: int = 0

    tiny_settings: ClassVar[dict[str, Any]] = dict(  # context 64, horizon 32 = two patches of 16, d_model 16
        context_length=64, prediction_length=32, d_model=16, num_layers=2, num_heads=2, num_experts=4,
        top_k=2, d_ff=32,
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        self.check_at_least(1, "patch_size", "d_model", "num_layers", "num_heads", "num_experts", "top_k", "d_ff",
                            "quantile_bisection_steps")
        if self.context_length % self.patch_size:
            raise InputError(
                f"context_length {self.context_length} is not a multiple of patch_size {self.patch_size}; "
                f"use a multiple such as {max(1, self.context_length // self.patch_size) * self.patch_size}"
            )
        if self.d_model % self.num_heads:
            raise InputError(f"d_model {self.d_model} is not divisible by num_heads {self.num_heads}")
        if self.top_k > self.num_experts:
            raise InputError(f"top_k {self.top_k} exceeds num_experts {self.num_experts}; use top_k <= num_experts")
        self.check_choice("gating", GATINGS)
        if not 0.0 < self.rope_fraction <= 1.0 or self.rotary_dim < 2:
            raise InputError(
                f"rope_fraction {self.rope_fraction} gives {self.rotary_dim} rotated features per head "
                f"(head_dim {self.d_model // self.num_heads}); pick a fraction in (0, 1] giving at least 2"
            )
        if self.load_balance_weight < 0 or self.rope_base <= 1:
            raise InputError("load_balance_weight must be >= 0 and rope_base > 1")
        self.check_rates("dropout")
        self.check_choice("scaling", SCALERS)
        self.check_at_least(0, "num_exog_channels")
        if not all(0.0 < q < 1.0 for q in self.quantiles):
            raise InputError("Moirai-MoE quantile levels must lie strictly between 0 and 1")

    @property
    def rotary_dim(self) -> int:
        """Rotated features per head: ``rope_fraction * head_dim`` rounded down to even."""
        return int(self.rope_fraction * (self.d_model // self.num_heads)) // 2 * 2

    @property
    def num_patches(self) -> int:
        return self.context_length // self.patch_size

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(covariate_channels=self.num_exog_channels)

    def with_covariates(self, n_targets: int, n_past: int, n_future: int) -> MoiraiMoEConfig:
        """Covariates are extra variates: only their count changes, every weight is kept."""
        return self.with_past_covariates(n_past, n_future, num_exog_channels=n_past)


class PatchEmbedding(nn.Module):
    """[scaled values, observed mask] of a patch -> ``d_model`` (``Linear -> SiLU -> Linear`` + linear residual)."""

    def __init__(self, patch_size: int, d_model: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(2 * patch_size, d_model)
        self.proj = nn.Linear(d_model, d_model)
        self.residual = nn.Linear(2 * patch_size, d_model)

    def forward(self, values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = torch.cat([values, mask], dim=-1)
        return self.proj(F.silu(self.hidden(x))) + self.residual(x)


class DecoderLayer(nn.Module):
    """Pre-norm block: ``x + Attn(RMSNorm(x))``, then ``+ MoE(RMSNorm(x))``; returns the MoE loss and KV."""

    def __init__(self, config: MoiraiMoEConfig, rope: RotaryEmbedding) -> None:
        super().__init__()
        d = config.d_model
        self.attn_norm = RMSNorm(d)
        self.attention = AnyVariateAttention(d, config.num_heads, rope, config.dropout)
        self.ffn_norm = RMSNorm(d)
        self.moe = MoEFeedForward(d, config.d_ff, config.num_experts, config.top_k, config.gating)
        self.dropout = nn.Dropout(config.dropout)

    def forward(
        self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, attn_mask: torch.Tensor,
        same_variate: torch.Tensor, token_weights: torch.Tensor, past: tuple[torch.Tensor, torch.Tensor] | None,
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        attended, kv = self.attention(self.attn_norm(x), cos, sin, attn_mask, same_variate, past)
        x = x + self.dropout(attended)
        mixed, balance = self.moe(self.ffn_norm(x), token_weights)
        return x + self.dropout(mixed), balance, kv


class MoiraiMoE(ForecastModel):
    """Decoder-only patch transformer with sparse MoE FFNs and a mixture head (see module doc)."""

    config_class: ClassVar[type[ModelConfig]] = MoiraiMoEConfig
    config: MoiraiMoEConfig

    def __init__(self, config: MoiraiMoEConfig) -> None:
        super().__init__(config)
        self.scaler = get_scaler(config.scaling)
        self.embedding = PatchEmbedding(config.patch_size, config.d_model)
        self.rope = RotaryEmbedding(config.rotary_dim, config.rope_base)
        self.layers = nn.ModuleList(DecoderLayer(config, self.rope) for _ in range(config.num_layers))
        self.final_norm = RMSNorm(config.d_model)
        self.head = MixtureHead(config.d_model, config.patch_size)

    # ------------------------------------------------------------------ inputs
    def _variates(
        self, past_values: torch.Tensor, past_mask: torch.Tensor | None, past_exog: torch.Tensor | None,
        future_exog: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(values, mask) ``[B, context_length, C + E]``: NaN-free, fitted to the context, covariates last."""
        if future_exog is not None:
            raise InputError("Moirai-MoE cannot use future_exog (known-future covariates); pass past_exog only")
        return fit_context(past_values, past_mask, self.config.context_length, self.head.proj.weight.dtype,
                           past_exog, self.config.num_exog_channels)

    def _tokens(self, scaled: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, T*P, V]`` scaled values and mask -> (tokens ``[B, V*T, D]``, valid ``[B, V*T]``), variate-major."""
        p = self.config.patch_size
        values = scaled.transpose(1, 2).unflatten(-1, (-1, p))  # [B, V, T, P]
        observed = mask.transpose(1, 2).unflatten(-1, (-1, p))
        tokens = self.embedding(values, observed)  # [B, V, T, D]
        return tokens.flatten(1, 2), observed.amax(dim=-1).flatten(1) > 0

    @staticmethod
    def _grid_ids(num_variates: int, num_steps: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(time_id, variate_id) ``[V*T]`` of variate-major tokens."""
        time = torch.arange(num_steps, device=device)[None, :].expand(num_variates, num_steps)
        variate = torch.arange(num_variates, device=device)[:, None].expand(num_variates, num_steps)
        return time.reshape(-1), variate.reshape(-1)

    # ------------------------------------------------------------------ the decoder
    def decode(
        self, tokens: torch.Tensor, time_id: torch.Tensor, variate_id: torch.Tensor, valid: torch.Tensor,
        cache: KVCache | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, KVCache]:
        """Run new tokens ``[B, N, D]`` through the decoder after the cached ones.

        Returns (final-normed hidden ``[B, N, D]``, mean load-balancing loss, the cache with the
        new tokens). With ``cache=None`` the tokens are a whole sequence.
        """
        if cache is None:
            time_k, variate_k, valid_k, offset = time_id, variate_id, valid, 0
        else:
            time_k = torch.cat([cache.time_id, time_id])
            variate_k = torch.cat([cache.variate_id, variate_id])
            valid_k = torch.cat([cache.valid, valid], dim=1)
            offset = cache.length
        attn_mask = any_variate_mask(time_id, time_k, valid_k, offset)
        same_variate = variate_id[:, None] == variate_k[None, :]
        cos, sin = self.rope.angles(time_id)
        weights = valid.to(tokens.dtype)
        x, balance, layers = tokens, tokens.new_zeros(()), []
        for i, layer in enumerate(self.layers):
            past = None if cache is None else cache.layers[i]
            x, loss, kv = layer(x, cos, sin, attn_mask, same_variate, weights, past)
            balance = balance + loss
            layers.append(kv)
        return self.final_norm(x), balance / len(self.layers), KVCache(layers, time_k, variate_k, valid_k)

    def sequence_distribution(
        self, scaled: torch.Tensor, mask: torch.Tensor, num_targets: int | None = None
    ) -> tuple[MixtureParams, torch.Tensor]:
        """Teacher-forced pass over a whole scaled sequence ``[B, T*P, V]`` (T patches, V variates).

        Returns the next-patch distribution of every token of the first ``num_targets`` variates
        (parameters ``[B, V', T, P]``; token t's describe patch t + 1) and the load-balancing loss.
        """
        v, steps = scaled.shape[-1], scaled.shape[1] // self.config.patch_size
        tokens, valid = self._tokens(scaled, mask)
        time_id, variate_id = self._grid_ids(v, steps, scaled.device)
        hidden, balance, _ = self.decode(tokens, time_id, variate_id, valid)
        hidden = hidden.unflatten(1, (v, steps))[:, :num_targets]
        return self.head(hidden), balance

    # ------------------------------------------------------------------ forecasting
    def forward(
        self,
        past_values: torch.Tensor,
        past_mask: torch.Tensor | None = None,
        freq_id: torch.Tensor | None = None,
        past_exog: torch.Tensor | None = None,
        future_exog: torch.Tensor | None = None,
    ) -> torch.Tensor:
        cfg = self.config
        values, mask = self._variates(past_values, past_mask, past_exog, future_exog)
        batch, n_targets, n_variates = values.shape[0], past_values.shape[-1], values.shape[-1]
        steps, p = cfg.num_patches, cfg.patch_size
        levels = cfg.quantiles
        nq = len(levels)
        loc, scale = self.scaler(values, mask)
        scaled = (values - loc) / scale * mask
        tokens, valid = self._tokens(scaled, mask)
        time_id, variate_id = self._grid_ids(n_variates, steps, scaled.device)
        hidden, _, cache = self.decode(tokens, time_id, variate_id, valid)
        last = hidden.unflatten(1, (n_variates, steps))[:, :n_targets, -1]  # [B, C, D]
        first = mixture_quantiles(self.head(last), levels, cfg.quantile_bisection_steps)  # [B, C, P, Q]
        patches = [first.sort(dim=-1).values]
        num_new = math.ceil(cfg.prediction_length / p) - 1
        if num_new > 0:
            cache = cache.repeat_batch(nq)
            # path j (batch row b*Q + j) continues with level j of its own distribution
            feed = first.permute(0, 3, 1, 2).reshape(batch * nq, n_targets, p)
            new_variates = torch.arange(n_targets, device=scaled.device)
            new_valid = torch.ones(batch * nq, n_targets, dtype=torch.bool, device=scaled.device)
            ones = torch.ones_like(feed)
            lower_index, upper_index, weights = empirical_positions(levels, nq * nq)
            for step in range(num_new):
                new_time = torch.full((n_targets,), steps + step, dtype=time_id.dtype, device=scaled.device)
                hidden, _, cache = self.decode(self.embedding(feed, ones), new_time, new_variates, new_valid, cache)
                paths = mixture_quantiles(self.head(hidden), levels, cfg.quantile_bisection_steps)  # [BQ, C, P, Q]
                paths = paths.unflatten(0, (batch, nq))  # [B, path, C, P, level]
                candidates = paths.permute(0, 2, 3, 1, 4).reshape(batch, n_targets, p, nq * nq).sort(dim=-1).values
                lower, upper = candidates[..., lower_index], candidates[..., upper_index]
                patches.append(lower + (upper - lower) * weights.to(candidates.dtype))
                feed = torch.diagonal(paths, dim1=1, dim2=4)  # [B, C, P, Q]: path j's level j
                feed = feed.permute(0, 3, 1, 2).reshape(batch * nq, n_targets, p)
        out = torch.cat(patches, dim=2)[:, :, : cfg.prediction_length]  # [B, C, H, Q], scaled
        out = out.transpose(1, 2)
        return out * scale[:, :, :n_targets, None] + loc[:, :, :n_targets, None]

    # ------------------------------------------------------------------ training
    def training_loss(
        self,
        past_values: torch.Tensor,
        future_values: torch.Tensor,
        past_mask: torch.Tensor | None = None,
        future_mask: torch.Tensor | None = None,
        freq_id: torch.Tensor | None = None,
        past_exog: torch.Tensor | None = None,
        future_exog: torch.Tensor | None = None,
        loss_scale: str = "mad",
    ) -> torch.Tensor:
        """Mean NLL (scaled space) of every observed next-patch value + weighted load-balancing loss.

        The likelihood lives in the scaler's space, so ``loss_scale`` (a pinball-loss setting) has no
        meaning here: only the default is accepted."""
        if loss_scale != "mad":
            raise ValueError(f"moirai-moe trains on its mixture likelihood; loss_scale={loss_scale!r} applies "
                             "to the pinball-loss families only")
        values, mask = self._variates(past_values, past_mask, past_exog, future_exog)
        n_targets, p = past_values.shape[-1], self.config.patch_size
        future, fmask = prepare_inputs(future_values.to(values.dtype), future_mask)
        if future.shape[-1] != n_targets or future.shape[0] != values.shape[0]:
            raise InputError(
                f"future_values must be [batch, horizon, {n_targets}] like past_values, got {tuple(future.shape)}"
            )
        pad = -future.shape[1] % p  # right-pad the future to whole patches (masked)
        future, fmask = F.pad(future, (0, 0, 0, pad)), F.pad(fmask, (0, 0, 0, pad))
        extra = values.shape[-1] - n_targets  # past covariates are unknown in the future: masked
        future, fmask = F.pad(future, (0, extra)), F.pad(fmask, (0, extra))
        loc, scale = self.scaler(values, mask)
        sequence = torch.cat([values, future], dim=1)
        seq_mask = torch.cat([mask, fmask], dim=1)
        scaled = (sequence - loc) / scale * seq_mask
        params, balance = self.sequence_distribution(scaled, seq_mask, n_targets)  # [B, C, T, P]
        target = scaled[..., :n_targets].transpose(1, 2).unflatten(-1, (-1, p))[:, :, 1:]  # next patches
        observed = seq_mask[..., :n_targets].transpose(1, 2).unflatten(-1, (-1, p))[:, :, 1:]
        params = params.map(lambda t: t[:, :, :-1])
        nll = -mixture_log_prob(params, target)
        loss = (nll * observed).sum() / observed.sum().clamp(min=1.0)
        return loss + self.config.load_balance_weight * balance


def empirical_positions(levels: tuple[float, ...], count: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(lower index, upper index, weight) of numpy's "linear" quantile rule on ``count`` sorted values.

    Level q sits at ``(count - 1) * q``; the result is ``v[lower] + w * (v[upper] - v[lower])``.
    Python constants, so the exported graph gathers at fixed indices.
    """
    lower, upper, weights = [], [], []
    for q in levels:
        pos = (count - 1) * q
        i = min(int(math.floor(pos)), count - 1)
        lower.append(i)
        upper.append(min(i + 1, count - 1))
        weights.append(pos - i)
    return torch.tensor(lower), torch.tensor(upper), torch.tensor(weights)
