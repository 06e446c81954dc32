"""Shared layers: scalers, patching, monotone quantile head, mixer blocks and adaptive patching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tsfm.nn import (
    AdaptivePatchingLevel,
    ChannelFeatureMixerBlock,
    FeatureMixerBlock,
    GatedAttention,
    MixerLayer,
    MixerStack,
    PatchMixerBlock,
    QuantileHead,
    adaptive_factors,
    adaptive_patching_error,
    fit_to_length,
    get_scaler,
    mean_abs_scale,
    monotone_quantiles,
    patchify,
    std_scale,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


# ---------------------------------------------------------------- scaling
def test_std_scale_matches_population_std_of_observed_points() -> None:
    values = torch.randn(3, 40, 2) * 5 + 10
    mask = (torch.rand(3, 40, 2) > 0.3).float()
    loc, scale = std_scale(values, mask)
    assert loc.shape == scale.shape == (3, 1, 2)
    for b in range(3):
        for c in range(2):
            obs = values[b, :, c][mask[b, :, c] > 0].double().numpy()
            assert loc[b, 0, c].item() == pytest.approx(obs.mean(), rel=1e-5)
            assert scale[b, 0, c].item() == pytest.approx(np.sqrt(obs.var(ddof=0) + 1e-5), rel=1e-5)


def test_scalers_ignore_unobserved_values() -> None:
    values = torch.randn(2, 30, 3)
    mask = torch.ones_like(values)
    mask[:, :10] = 0
    garbage = values.clone()
    garbage[:, :10] = 1e6
    for scaler in (std_scale, mean_abs_scale):
        for a, b in zip(scaler(values, mask), scaler(garbage, mask)):
            torch.testing.assert_close(a, b)


def test_scalers_are_finite_for_constant_and_all_masked_channels() -> None:
    values = torch.stack([torch.full((20,), 7.0), torch.zeros(20), torch.randn(20)], dim=-1)[None]
    mask = torch.ones_like(values)
    mask[..., 2] = 0  # third channel entirely unobserved
    loc, scale = std_scale(values, mask)
    assert torch.isfinite(loc).all() and (scale > 0).all()
    torch.testing.assert_close(loc[0, 0], torch.tensor([7.0, 0.0, 0.0]))
    torch.testing.assert_close(scale[0, 0], torch.full((3,), 1e-5**0.5))
    loc, scale = mean_abs_scale(values, mask)
    torch.testing.assert_close(loc, torch.zeros_like(loc))
    torch.testing.assert_close(scale[0, 0], torch.tensor([7.0, 1e-10, 1e-10]))


def test_mean_abs_scale_value_and_scaler_lookup() -> None:
    values = torch.tensor([[[1.0], [-3.0], [100.0]]])
    mask = torch.tensor([[[1.0], [1.0], [0.0]]])
    assert mean_abs_scale(values, mask)[1].item() == pytest.approx(2.0)
    assert get_scaler("std") is std_scale
    loc, scale = get_scaler("none")(values, mask)
    assert loc.shape == (1, 1, 1) and scale.item() == 1.0
    with pytest.raises(ValueError, match="unknown scaling"):
        get_scaler("robust")


# ---------------------------------------------------------------- patching
def test_patchify_matches_unfold_and_drops_oldest_remainder() -> None:
    x = torch.randn(2, 37, 3)  # 37 = 4 patches of 8 + 5 dropped points
    patches = patchify(x, 8)
    assert patches.shape == (2, 3, 4, 8)
    reference = x[:, 5:].permute(0, 2, 1).unfold(2, 8, 8)
    assert torch.equal(patches, reference)
    assert torch.equal(patches[:, :, -1, -1], x[:, -1])  # newest value is last


def test_fit_to_length_truncates_and_left_pads() -> None:
    x = torch.arange(10.0).reshape(1, 10, 1)
    assert fit_to_length(x, 4)[0, :, 0].tolist() == [6.0, 7.0, 8.0, 9.0]
    padded = fit_to_length(x, 13, pad_value=-1.0)[0, :, 0].tolist()
    assert padded == [-1.0] * 3 + list(range(10))
    assert fit_to_length(x, 10) is x


# ---------------------------------------------------------------- quantile head
def test_monotone_quantiles_values() -> None:
    raw = torch.tensor([0.0, 1.0, 2.0, -1.0, 0.5])  # median at index 2
    sp = torch.nn.functional.softplus
    expected = torch.stack([
        2.0 - sp(torch.tensor(0.0)) - sp(torch.tensor(1.0)),
        2.0 - sp(torch.tensor(1.0)),
        torch.tensor(2.0),
        2.0 + sp(torch.tensor(-1.0)),
        2.0 + sp(torch.tensor(-1.0)) + sp(torch.tensor(0.5)),
    ])
    torch.testing.assert_close(monotone_quantiles(raw, 2), expected)


def test_monotone_quantiles_never_cross() -> None:
    raw = torch.randn(64, 20, 9) * 3
    q = monotone_quantiles(raw, 4)
    assert (q.diff(dim=-1) > 0).all()
    assert torch.equal(q[..., 4], raw[..., 4])
    extreme = monotone_quantiles(torch.randn(64, 20, 9) * 100, 4)  # increments may underflow, never reverse
    assert (extreme.diff(dim=-1) >= 0).all()
    assert torch.equal(monotone_quantiles(raw[..., :1], 0), raw[..., :1])  # only the median


def test_quantile_head_shape_and_order() -> None:
    head = QuantileHead(num_tokens=5, d_model=8, horizon=7, quantiles=(0.1, 0.5, 0.9))
    out = head(torch.randn(3, 2, 5, 8))
    assert out.shape == (3, 2, 7, 3)
    assert (out[..., 0] < out[..., 1]).all() and (out[..., 1] < out[..., 2]).all()


# ---------------------------------------------------------------- mixer blocks
def test_gated_attention_is_softmax_gate() -> None:
    gate = GatedAttention(6)
    x = torch.randn(4, 6)
    expected = x * torch.softmax(x @ gate.proj.weight.T + gate.proj.bias, dim=-1)
    torch.testing.assert_close(gate(x), expected)


def _changed(block: torch.nn.Module, x: torch.Tensor, channel: int, patch: int) -> torch.Tensor:
    """Output change [B, C, N, D] after adding noise to one (channel, patch) embedding."""
    y = x.clone()  # noise, not a constant: LayerNorm would remove a constant shift of a patch
    y[:, channel, patch] += torch.randn_like(y[:, channel, patch])
    return (block(y) - block(x)).abs()


def test_each_block_mixes_only_its_axis() -> None:
    x = torch.randn(2, 3, 5, 8)  # [B, C, N, D]
    patch, feature = PatchMixerBlock(5, 8).eval(), FeatureMixerBlock(8).eval()
    channel = ChannelFeatureMixerBlock(3, 8).eval()
    # a patch mixer spreads a change of patch 0 to patch 4 of the same channel, never to other channels
    diff = _changed(patch, x, channel=0, patch=0)
    assert diff[:, 0, 4].max() > 1e-4 and diff[:, 1:].max() == 0
    # a feature mixer keeps every (channel, patch) embedding separate
    diff = _changed(feature, x, channel=0, patch=0)
    assert diff[:, 0, 0].max() > 1e-4 and diff[:, 1:].max() == 0 and diff[:, :, 1:].max() == 0
    # a channel mixer spreads a change of channel 0 to channel 2 at the same patch, never to other patches
    diff = _changed(channel, x, channel=0, patch=0)
    assert diff[:, 2, 0].max() > 1e-4 and diff[:, :, 1:].max() == 0


def test_mixer_layer_composition() -> None:
    assert MixerLayer(1, 8).patch_mixer is None  # a single patch has nothing to mix
    assert MixerLayer(4, 8).patch_mixer is not None and MixerLayer(4, 8).channel_mixer is None
    assert MixerLayer(4, 8, num_channels=3).channel_mixer.num_channels == 3
    assert MixerLayer(4, 8, gated_attn=False).feature_mixer.mix.gate is None


# ---------------------------------------------------------------- adaptive patching
def test_adaptive_patching_level_shapes() -> None:
    stack = MixerStack(num_patches=16, d_model=128, num_layers=2, adaptive_levels=3)
    assert stack.level_shapes == [(64, 32), (32, 64), (16, 128)]
    assert [len(level.layers) for level in stack.levels] == [2, 2, 2]
    assert [level.layers[0].patch_mixer.mix.mlp.fc1.in_features for level in stack.levels] == [64, 32, 16]
    assert [level.layers[0].feature_mixer.mix.mlp.fc1.in_features for level in stack.levels] == [32, 64, 128]
    assert MixerStack(16, 128, 2, adaptive_levels=0).level_shapes == [(16, 128)]
    assert adaptive_factors(3) == [4, 2, 1] and adaptive_factors(0) == [1]


def test_adaptive_level_splits_each_patch_embedding_and_restores_it() -> None:
    level = AdaptivePatchingLevel(num_patches=3, d_model=8, factor=4, num_layers=1)
    seen = []
    level.layers[0].register_forward_pre_hook(lambda _, args: seen.append(args[0]))
    x = torch.randn(2, 5, 3, 8)
    out = level(x)
    assert out.shape == x.shape
    torch.testing.assert_close(seen[0], x.reshape(2, 5, 12, 2))  # patch p -> sub-patches 4p..4p+3
    empty = AdaptivePatchingLevel(num_patches=3, d_model=8, factor=4, num_layers=0)
    assert torch.equal(empty(x), x)  # split + merge is the identity


def test_adaptive_patching_rejects_bad_d_model() -> None:
    assert adaptive_patching_error(128, 3) is None
    assert "not divisible" in adaptive_patching_error(100, 4)
    assert "more than 4" in adaptive_patching_error(16, 3)  # 16 / 4 = 4 features per sub-patch
    with pytest.raises(ValueError, match="adaptive patching"):
        MixerStack(8, 12, 1, adaptive_levels=3)
