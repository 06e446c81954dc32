"""Shared layers: scaling, patching, mixer blocks and output heads."""

from tsfm.nn.heads import QuantileHead, monotone_quantiles
from tsfm.nn.mixer import (
    MLP,
    AdaptivePatchingLevel,
    ChannelFeatureMixerBlock,
    FeatureMixerBlock,
    GatedAttention,
    MixerLayer,
    MixerStack,
    PatchMixerBlock,
    adaptive_factors,
    adaptive_patching_error,
)
from tsfm.nn.patching import fit_to_length, num_patches, patchify
from tsfm.nn.scaling import get_scaler, mean_abs_scale, no_scale, std_scale

__all__ = [
    "MLP",
    "AdaptivePatchingLevel",
    "ChannelFeatureMixerBlock",
    "FeatureMixerBlock",
    "GatedAttention",
    "MixerLayer",
    "MixerStack",
    "PatchMixerBlock",
    "QuantileHead",
    "adaptive_factors",
    "adaptive_patching_error",
    "fit_to_length",
    "get_scaler",
    "mean_abs_scale",
    "monotone_quantiles",
    "no_scale",
    "num_patches",
    "patchify",
    "std_scale",
]
