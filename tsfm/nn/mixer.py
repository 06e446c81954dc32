"""TSMixer blocks, the backbone of TTM: MLPs and soft gates mixing patches, features and channels.

Hidden states are ``[B, C, N, D]`` (batch, channels, patches, features). Every block is pre-norm
residual, ``x + f(LayerNorm(x))`` with the LayerNorm over ``D``; a block mixes along one axis
with an MLP (expansion factor, GELU) and an optional gate ``x * softmax(Linear(x))``.
Adaptive patching (TTM §3) runs groups of layers at finer patch resolutions by splitting each
patch embedding into ``2^i`` shorter sub-patch embeddings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MLP(nn.Module):
    """``Linear(n -> n·e) -> GELU -> Dropout -> Linear(-> n) -> Dropout`` over the last axis."""

    def __init__(self, features: int, expansion_factor: int = 2, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(features, features * expansion_factor)
        self.fc2 = nn.Linear(features * expansion_factor, features)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.fc2(self.dropout(F.gelu(self.fc1(x)))))


class GatedAttention(nn.Module):
    """``x * softmax(Linear(x))`` over the last axis: a learned soft feature gate, not dot-product attention."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.proj = nn.Linear(features, features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.softmax(self.proj(x), dim=-1)


class _AxisMixer(nn.Module):
    """MLP (+ gate) applied along one axis; ``gate_first`` puts the gate before the MLP."""

    def __init__(self, size: int, expansion_factor: int, dropout: float, gated_attn: bool, gate_first: bool) -> None:
        super().__init__()
        self.mlp = MLP(size, expansion_factor, dropout)
        self.gate = GatedAttention(size) if gated_attn else None
        self.gate_first = gate_first

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate is not None and self.gate_first:
            x = self.gate(x)
        x = self.mlp(x)
        if self.gate is not None and not self.gate_first:
            x = self.gate(x)
        return x


class PatchMixerBlock(nn.Module):
    """Mixes along the patch axis (time): the same MLP for every channel and feature."""

    def __init__(
        self, num_patches: int, d_model: int, expansion_factor: int = 2, dropout: float = 0.0, gated_attn: bool = True
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.mix = _AxisMixer(num_patches, expansion_factor, dropout, gated_attn, gate_first=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mix(self.norm(x).transpose(-1, -2))
        return x + y.transpose(-1, -2)


class FeatureMixerBlock(nn.Module):
    """Mixes along the feature axis of each patch embedding."""

    def __init__(self, d_model: int, expansion_factor: int = 2, dropout: float = 0.0, gated_attn: bool = True) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.mix = _AxisMixer(d_model, expansion_factor, dropout, gated_attn, gate_first=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mix(self.norm(x))


class ChannelFeatureMixerBlock(nn.Module):
    """Mixes along the channel axis (TTM's decoder channel mixing); needs a fixed channel count.

    As in TTM the gate comes before the MLP here.
    """

    def __init__(
        self, num_channels: int, d_model: int, expansion_factor: int = 2, dropout: float = 0.0, gated_attn: bool = True
    ) -> None:
        super().__init__()
        self.num_channels = num_channels
        self.norm = nn.LayerNorm(d_model)
        self.mix = _AxisMixer(num_channels, expansion_factor, dropout, gated_attn, gate_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.mix(self.norm(x).permute(0, 3, 2, 1))  # [B, D, N, C]
        return x + y.permute(0, 3, 2, 1)


class MixerLayer(nn.Module):
    """One TSMixer layer: [channel mixer] -> patch mixer (skipped for one patch) -> feature mixer."""

    def __init__(
        self,
        num_patches: int,
        d_model: int,
        num_channels: int | None = None,
        expansion_factor: int = 2,
        dropout: float = 0.0,
        gated_attn: bool = True,
    ) -> None:
        super().__init__()
        args = (expansion_factor, dropout, gated_attn)
        self.channel_mixer = ChannelFeatureMixerBlock(num_channels, d_model, *args) if num_channels else None
        self.patch_mixer = PatchMixerBlock(num_patches, d_model, *args) if num_patches > 1 else None
        self.feature_mixer = FeatureMixerBlock(d_model, *args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.channel_mixer is not None:
            x = self.channel_mixer(x)
        if self.patch_mixer is not None:
            x = self.patch_mixer(x)
        return self.feature_mixer(x)


class AdaptivePatchingLevel(nn.Module):
    """``num_layers`` mixer layers run on ``[.., N·f, D/f]``: each patch embedding split into ``f`` sub-patches."""

    def __init__(self, num_patches: int, d_model: int, factor: int, num_layers: int, **layer_args) -> None:
        super().__init__()
        if d_model % factor:
            raise ValueError(f"d_model {d_model} is not divisible by the adaptive patching factor {factor}")
        self.factor = factor
        self.d_model = d_model
        self.shape = (num_patches * factor, d_model // factor)
        self.layers = nn.ModuleList(MixerLayer(*self.shape, **layer_args) for _ in range(num_layers))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.factor > 1:  # [.., N, D] -> [.., N·f, D/f]; -1 keeps the patch count symbolic for export
            x = x.unflatten(-1, (self.factor, self.d_model // self.factor)).flatten(-3, -2)
        for layer in self.layers:
            x = layer(x)
        if self.factor > 1:
            x = x.unflatten(-2, (-1, self.factor)).flatten(-2, -1)
        return x


def adaptive_factors(levels: int) -> list[int]:
    """Patch-splitting factors from coarsest to finest level: ``levels=3 -> [4, 2, 1]`` (``0 -> [1]``)."""
    return [2**i for i in reversed(range(levels))] if levels > 0 else [1]


def adaptive_patching_error(d_model: int, levels: int) -> str | None:
    """Why ``d_model`` cannot be split over ``levels`` adaptive levels (None if it can).

    granite-tsfm silently disables a level whose sub-patch width would be <= 4; we refuse instead.
    """
    factor = adaptive_factors(levels)[0]
    if d_model % factor:
        return f"{d_model} is not divisible by 2^{levels - 1} = {factor}"
    if factor > 1 and d_model // factor <= 4:
        return f"{d_model} / 2^{levels - 1} = {d_model // factor} features per sub-patch, need more than 4"
    return None


class MixerStack(nn.Module):
    """TTM's backbone block: adaptive patching levels from coarsest to finest, ``num_layers`` layers each.

    With ``adaptive_levels=0`` it is a plain stack of ``num_layers`` layers. ``num_channels`` turns on
    channel mixing in every layer. ``level_shapes`` lists the (patches, features) each level mixes.
    """

    def __init__(
        self,
        num_patches: int,
        d_model: int,
        num_layers: int,
        adaptive_levels: int = 0,
        num_channels: int | None = None,
        expansion_factor: int = 2,
        dropout: float = 0.0,
        gated_attn: bool = True,
    ) -> None:
        super().__init__()
        error = adaptive_patching_error(d_model, adaptive_levels)
        if error:
            raise ValueError(f"adaptive patching: {error}")
        layer_args = dict(
            num_channels=num_channels, expansion_factor=expansion_factor, dropout=dropout, gated_attn=gated_attn
        )
        self.levels = nn.ModuleList(
            AdaptivePatchingLevel(num_patches, d_model, f, num_layers, **layer_args)
            for f in adaptive_factors(adaptive_levels)
        )

    @property
    def level_shapes(self) -> list[tuple[int, int]]:
        return [level.shape for level in self.levels]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for level in self.levels:
            x = level(x)
        return x
