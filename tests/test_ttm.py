"""TTM: its pieces (RPT, adaptive patching, channel and exogenous mixing), its scaling and mask
input, safetensors checkpoints, config validation and the anchor. The contract every family keeps
(scale, padding, channels, round trips, training, ONNX export) is in test_model_contract.py."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import seasonal_walks as series
from tsfm.data.freq import FREQ_VOCAB, freq_token
from tsfm.errors import InputError
from tsfm.models.ttm import TTM, TTMConfig, last_observed, line_end

H, L = 16, 64  # TTMConfig.tiny(): context 64, horizon 16, 8 patches of 8


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**overrides) -> TTM:
    torch.manual_seed(0)
    return TTM(TTMConfig.tiny(**overrides)).eval()


# ---------------------------------------------------------------- channel mixing
def test_mix_channel_decoder_mixes_channels() -> None:
    model = tiny(decoder_mode="mix_channel", num_input_channels=3)
    x = series(2, L, 3)
    y = x.clone()
    y[:, :, 1] = torch.randn(2, L) * 100
    assert (model(x)[:, :, 0] - model(y)[:, :, 0]).abs().max() > 1e-4
    with pytest.raises(InputError, match="mixes exactly 3 channels"):
        model(series(2, L, 2))


# ---------------------------------------------------------------- resolution prefix tuning
def test_frequency_token_changes_the_forecast() -> None:
    model = tiny()
    x = series(2, L, 1)
    hourly, daily = torch.full((2,), freq_token("h")), torch.full((2,), freq_token("D"))
    assert (model(x, freq_id=hourly) - model(x, freq_id=daily)).abs().max() > 1e-4
    assert model.embedding.freq_embedding.num_embeddings == len(FREQ_VOCAB)
    assert model.backbone.level_shapes[-1] == (9, 16)  # 8 patches + the resolution token
    # a missing or out-of-vocabulary token is token 0 (oov), not an error
    oov = torch.zeros(2, dtype=torch.long)
    assert torch.equal(model(x), model(x, freq_id=oov))
    assert torch.equal(model(x, freq_id=torch.tensor([99, -1])), model(x, freq_id=oov))
    torch.testing.assert_close(model(x, freq_id=torch.tensor(8)), model(x, freq_id=daily))  # one id, whole batch


def test_frequency_token_has_no_path_without_prefix_tuning() -> None:
    model = tiny(resolution_prefix_tuning=False)
    assert model.embedding.freq_embedding is None
    assert not any("freq" in name for name, _ in model.named_parameters())
    x = series(2, L, 1)
    assert torch.equal(model(x, freq_id=torch.tensor([7, 8])), model(x))
    assert model.backbone.level_shapes[-1] == (8, 16)


# ---------------------------------------------------------------- adaptive patching
def test_adaptive_patching_levels_of_encoder_and_decoder() -> None:
    torch.manual_seed(0)
    no_rpt = TTM(TTMConfig(resolution_prefix_tuning=False))
    assert no_rpt.config.num_patches == 16
    assert no_rpt.backbone.level_shapes == [(64, 32), (32, 64), (16, 128)]
    assert no_rpt.decoder.mixer.level_shapes == [(16, 32)]
    default = TTM(TTMConfig())
    assert default.backbone.level_shapes == [(68, 32), (34, 64), (17, 128)]
    assert sum(len(level.layers) for level in default.backbone.levels) == 6  # 2 layers x 3 levels
    decoder = tiny(decoder_mode="mix_channel", num_input_channels=3, num_exog_channels=1, enable_exog_mixer=True,
                   decoder_d_model=16, decoder_adaptive_patching_levels=2).decoder
    assert decoder.mixer.level_shapes == [(18, 8), (9, 16)]


def test_default_config_stays_under_one_million_parameters() -> None:
    model = TTM(TTMConfig())
    assert 700_000 < model.num_parameters() < 1_000_000
    assert model.head.proj.in_features == 17 * 32 and model.head.proj.out_features == 96 * 9


# ---------------------------------------------------------------- scaling and padding
def test_relative_floor_keeps_equivariance_for_small_units() -> None:
    """Series in small units (std ~1e-3): TTM's absolute 1e-5 floor distorts them, ``std_rel`` does not."""
    model = tiny(scaling="std_rel")
    x = series(2, L, 1)
    base = model(x)
    for a, b in [(1e-3, 0.05), (2e-4, 0.0)]:
        torch.testing.assert_close(model(a * x + b), a * base + b, rtol=1e-3, atol=1e-3 * a)
    absolute = tiny(scaling="std")
    absolute.load_state_dict(model.state_dict())
    drift = (absolute(2e-4 * x) - 2e-4 * absolute(x)).abs().max() / 2e-4
    assert drift > 1e-2  # the absolute floor really does bend small-unit forecasts


def test_a_large_level_shifts_the_forecast_and_does_not_flatten_it() -> None:
    """A counter near 1e6 that moves by tens is forecast as the same series near 0, shifted: the
    level-relative floor sits under what float32 can hold (a floor of 1e-4 of the level squashed it)."""
    model = tiny(scaling="std_rel")
    x = 20 * series(2, L, 1) / series(2, L, 1).std()
    shifted = model(x.double().add(1e6).float()).double() - 1e6
    torch.testing.assert_close(shifted.float(), model(x), rtol=0, atol=0.05 * 20)  # float32 holds 1e6 to 0.06


def test_patch_embedding_sees_the_mask_only_when_asked() -> None:
    """A scaled 0 that was observed (a value at the mean) and one that is padding differ only by the mask."""
    scaled = torch.randn(2, L, 1)
    scaled[:, :24] = 0.0
    observed, padded = torch.ones(2, L, 1), torch.ones(2, L, 1)
    padded[:, :24] = 0.0
    with_mask, without_mask = tiny().embedding, tiny(mask_input=False).embedding
    assert with_mask.patcher.in_features == 16 and without_mask.patcher.in_features == 8
    diff = (with_mask(scaled, observed, None) - with_mask(scaled, padded, None)).abs()
    assert diff[:, :, 1:4].min() > 0 and diff[:, :, 4:].max() == 0  # patches 0-2 (+ token) see it
    assert torch.equal(without_mask(scaled, observed, None), without_mask(scaled, padded, None))


# ---------------------------------------------------------------- exogenous inputs
def _exog(batch: int, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    past, future = torch.randn(batch, L, 2, generator=g), torch.randn(batch, H, 2, generator=g)
    return past * 3 + 10, future * 3 + 10


def test_exog_mixer_uses_future_covariates() -> None:
    model = tiny(num_exog_channels=2, enable_exog_mixer=True)
    x, (past, future) = series(3, L, 2), _exog(3)
    plain = model(x, past_exog=past)
    # the output layer starts at zero: enabling the mixer changes nothing until it is trained
    assert torch.equal(model(x, past_exog=past, future_exog=future), plain)
    torch.nn.init.normal_(model.exog_mixer.out.weight, std=0.5)
    with_future = model(x, past_exog=past, future_exog=future)
    assert with_future.shape == (3, H, 2, len(model.quantiles))
    assert (with_future - plain).abs().max() > 1e-3
    assert (with_future - model(x, past_exog=past, future_exog=future + 5.0)).abs().max() > 1e-3
    assert (with_future.diff(dim=-1) >= 0).all()
    torch.testing.assert_close(model(x[:, :, :1], past_exog=past, future_exog=future), with_future[:, :, :1])
    with pytest.raises(InputError, match="needs past_exog"):
        model(x, future_exog=future)
    with pytest.raises(InputError, match="expects 2 exogenous channels"):
        model(x, past_exog=past[..., :1], future_exog=future[..., :1])


def test_exog_is_ignored_without_mixer_and_common_channel() -> None:
    model = tiny()
    x, (past, future) = series(3, L, 1), _exog(3)
    torch.testing.assert_close(model(x, past_exog=past, future_exog=future), model(x), rtol=0, atol=1e-5)


def test_past_exog_reaches_targets_through_channel_mixing() -> None:
    model = tiny(decoder_mode="mix_channel", num_input_channels=3, num_exog_channels=2)
    x, (past, _) = series(2, L, 1), _exog(2)
    out = model(x, past_exog=past)
    assert out.shape == (2, H, 1, len(model.quantiles))
    assert (out - model(x, past_exog=past.flip(1))).abs().max() > 1e-4


# ---------------------------------------------------------------- checkpoints and configs
def test_safetensors_round_trip_is_bit_identical(tmp_path) -> None:
    model = tiny(num_exog_channels=1, enable_exog_mixer=True, decoder_mode="mix_channel", num_input_channels=2)
    torch.nn.init.normal_(model.exog_mixer.out.weight)
    save_file(model.state_dict(), tmp_path / "model.safetensors")
    model.config.to_json(tmp_path / "config.json")
    config = TTMConfig.from_dict(json.loads((tmp_path / "config.json").read_text()))
    assert config == model.config
    loaded = TTM(config).eval()
    loaded.load_state_dict(load_file(tmp_path / "model.safetensors"))
    x, past, future = series(2, L, 1), torch.randn(2, L, 1), torch.randn(2, H, 1)
    args = dict(freq_id=torch.tensor([7, 8]), past_exog=past, future_exog=future)
    assert torch.equal(model(x, **args), loaded(x, **args))


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(context_length=100), "not a multiple of patch_length"),
        (dict(d_model=18, adaptive_patching_levels=3), "d_model 18 is not divisible"),
        (dict(d_model=16, adaptive_patching_levels=3), "more than 4"),
        (dict(decoder_d_model=8, decoder_adaptive_patching_levels=2), "decoder_d_model"),
        (dict(decoder_mode="mix_channel"), "set num_input_channels"),
        (dict(decoder_mode="mixing"), "decoder_mode 'mixing' is unknown"),
        (dict(enable_exog_mixer=True), "needs num_exog_channels"),
        (dict(scaling="robust"), "scaling 'robust' is unknown"),
        (dict(quantiles=(0.1, 0.9)), "must include 0.5"),
        (dict(patch_length=0), "patch_length must be >= 1"),
    ],
)
def test_config_validation(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TTMConfig.tiny(**overrides)


# ---------------------------------------------------------------- anchor_last
def test_last_observed_skips_padding_and_trailing_gaps() -> None:
    values = torch.tensor([[[0.0, 0.0], [1.0, 5.0], [2.0, 6.0], [3.0, 0.0]]])  # [1, 4, 2]
    mask = torch.tensor([[[0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [1.0, 0.0]]])
    torch.testing.assert_close(last_observed(values, mask), torch.tensor([[3.0, 6.0]]))
    assert torch.equal(last_observed(values, torch.zeros_like(mask)), torch.zeros(1, 2))


def test_anchored_median_starts_from_the_last_observed_value() -> None:
    """With the head's median output zeroed, an anchored TTM forecasts the last observed value
    (after padding and a trailing gap); the plain TTM forecasts the context mean."""
    x = series(3, 40, 2) * 10.0 + 100.0
    x[1, -2:, 0] = float("nan")  # the last observed value of this channel is x[1, -3, 0]
    forecasts = {}
    for anchor in (False, True):
        model = tiny(anchor_last=anchor)
        with torch.no_grad():
            model.head.proj.weight.zero_()
            model.head.proj.bias.zero_()
        forecasts[anchor] = model(x)[..., model.config.median_index]  # [B, H, C]
    last = x[:, -1].clone()
    last[1, 0] = x[1, -3, 0]
    torch.testing.assert_close(forecasts[True], last[:, None, :].expand_as(forecasts[True]), rtol=1e-5, atol=1e-3)
    mean = torch.nanmean(x, dim=1)
    torch.testing.assert_close(forecasts[False], mean[:, None, :].expand_as(forecasts[False]), rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("window", [1, 5])
def test_anchor_is_weight_free_and_stays_equivariant(window) -> None:
    plain, anchored = tiny(), tiny(anchor_last=True, anchor_window=window)
    assert plain.state_dict().keys() == anchored.state_dict().keys()
    anchored.load_state_dict(plain.state_dict())
    x = series(2, L, 1)
    torch.testing.assert_close(anchored(3.0 * x - 7.0), 3.0 * anchored(x) - 7.0, rtol=1e-4, atol=1e-3)
    assert {"anchor_last", "anchor_window"} <= set(TTMConfig.weight_free_fields)


def test_line_end_is_exact_on_lines_and_averages_noise() -> None:
    """The end of a least-squares line through the last k observed values: the last value of a
    line (through padding and gaps), the value of a lone point, and on white noise about
    (4k + 2) / (k (k + 1)) of the variance the last value alone has (k = 8: 0.47)."""
    t = torch.arange(30.0)
    values = torch.stack([3 + 0.5 * t, -2 * t], dim=-1)[None]  # [1, 30, 2]
    mask = torch.ones_like(values)
    mask[0, :6, 0] = 0  # padding
    mask[0, 20:24, 1] = 0  # a gap inside the window
    mask[0, -2:, 1] = 0  # a trailing gap: the line ends at step 27
    torch.testing.assert_close(line_end(values, mask, 8), torch.tensor([[17.5, -54.0]]))
    torch.testing.assert_close(line_end(values, mask, 1), last_observed(values, mask))
    lone = torch.zeros(1, 10, 1)
    lone_mask = torch.zeros_like(lone)
    lone[0, 4], lone_mask[0, 4] = 7.0, 1.0
    assert line_end(lone, lone_mask, 8).item() == 7.0 and line_end(lone, 0 * lone_mask, 8).item() == 0.0
    noise = torch.randn(4000, 40, 1, generator=torch.Generator().manual_seed(0))
    observed = torch.ones_like(noise)
    ratio = (line_end(noise, observed, 8).var() / last_observed(noise, observed).var()).item()
    assert 0.40 < ratio < 0.55

