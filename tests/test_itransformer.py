"""iTransformer: the forward contract, variate tokens (permutation equivariance, unseen variate
counts, covariate tokens), scaling and padding semantics, the attention layer, checkpoints,
config validation, training and ONNX export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import assert_checkpoint_round_trip
from conftest import seasonal_walks as series
from tsfm.errors import InputError
from tsfm.models.itransformer import ITransformer, ITransformerConfig
from tsfm.models.registry import build_model
from tsfm.nn.attention import MultiHeadSelfAttention

H, L = 16, 64  # ITransformerConfig.tiny(): context 64, horizon 16


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**overrides) -> ITransformer:
    torch.manual_seed(0)
    return ITransformer(ITransformerConfig.tiny(**overrides)).eval()


# ---------------------------------------------------------------- contract
def test_output_is_in_input_scale() -> None:
    model = tiny()
    x = series(4, L, 2) + 1000.0
    median = model(x)[..., model.config.median_index]
    assert (median - x[:, -16:].mean(1, keepdim=True)).abs().max() < 50


def test_default_config_size() -> None:
    model = ITransformer(ITransformerConfig())
    assert model.num_parameters() == 507_872
    assert model.tokenizer.embedding.in_features == 2 * 512 and model.head.projection.out_features == 96 * 9
    assert len(model.encoder.layers) == 2


def test_freq_id_is_ignored_and_future_exog_is_refused() -> None:
    model = tiny()
    x = series(2, L, 2)
    assert torch.equal(model(x, freq_id=torch.tensor([7, 8])), model(x))
    with pytest.raises(InputError, match="future_exog"):
        model(x, past_exog=torch.randn(2, L, 1), future_exog=torch.randn(2, H, 1))
    with pytest.raises(InputError, match="batch, time, channels"):
        model(x[0])


# ---------------------------------------------------------------- variate tokens
def test_permuting_variates_permutes_the_forecast() -> None:
    model = tiny()
    x = series(3, L - 10, 6)
    x[1, 3:7, 2] = float("nan")
    perm = torch.tensor([4, 2, 0, 5, 1, 3])
    base, permuted = model(x), model(x[:, :, perm])
    torch.testing.assert_close(permuted, base[:, :, perm], rtol=1e-6, atol=1e-6 * base.abs().max().item())


def test_variates_interact_through_attention() -> None:
    model = tiny()
    x = series(2, L, 3)
    y = x.clone()
    y[:, :, 1] = series(2, L, 1, seed=5)[..., 0] * 3
    a, b = model(x), model(y)
    assert (a[:, :, 0] - b[:, :, 0]).abs().max() > 1e-3  # channel 0 sees channel 1
    assert (model(x[:, :, :1]) - a[:, :, :1]).abs().max() > 1e-3  # alone, channel 0 gets another forecast


def test_unseen_variate_count_after_training() -> None:
    """Trained on 3 variates, the same weights forecast 7 (all weights are shared per token)."""
    torch.manual_seed(0)
    model = ITransformer(ITransformerConfig.tiny(dropout=0.1)).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = series(8, L + H, 3)
    for _ in range(3):
        optimizer.zero_grad()
        model.training_loss(x[:, :L], x[:, L:]).backward()
        optimizer.step()
    model.eval()
    wide = series(2, L, 7, seed=4)
    out = model(wide)
    assert out.shape == (2, H, 7, len(model.quantiles))
    assert torch.isfinite(out).all() and (out.diff(dim=-1) >= 0).all()
    perm = torch.randperm(7, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(model(wide[:, :, perm]), out[:, :, perm], rtol=1e-6, atol=1e-4)


def test_past_exog_tokens_change_targets_but_are_not_returned() -> None:
    model = tiny()
    x = series(2, L, 2)
    g = torch.Generator().manual_seed(1)
    exog = torch.randn(2, L, 3, generator=g) * 5 + 10
    with_exog = model(x, past_exog=exog)
    assert with_exog.shape == (2, H, 2, len(model.quantiles))
    assert (with_exog - model(x)).abs().max() > 1e-3
    assert (with_exog - model(x, past_exog=exog.flip(1))).abs().max() > 1e-3
    # a covariate token is embedded like a variate token: the same series as target or covariate
    # contributes the same token, so targets' forecasts match the all-target model's
    torch.testing.assert_close(with_exog, model(torch.cat([x, exog], dim=-1))[:, :, :2], rtol=1e-6, atol=1e-4)
    with pytest.raises(InputError, match="expects 2 exogenous channels"):
        tiny(num_exog_channels=2)(x, past_exog=exog)
    with pytest.raises(InputError, match="aligned with past_values"):
        model(x, past_exog=exog[:, 1:])


# ---------------------------------------------------------------- scaling and padding
@pytest.mark.parametrize("with_gaps", [False, True])
def test_forecast_is_equivariant_to_affine_rescaling(with_gaps: bool) -> None:
    model = tiny()
    x = series(3, L - 10, 2)
    if with_gaps:
        x[0, 5:9, 0] = float("nan")
        x[2, -3:, 1] = float("nan")
    base = model(x)
    for a, b in [(3.7, -20.0), (0.25, 1e3), (40.0, 0.0), (1e-3, 0.05)]:
        torch.testing.assert_close(model(a * x + b), a * base + b, rtol=1e-4, atol=1e-3 * a)


def test_padding_equals_mask_and_padded_values_do_not_matter() -> None:
    model = tiny()
    short = series(2, 40, 2)
    nan_padded = torch.cat([torch.full((2, L - 40, 2), float("nan")), short], dim=1)
    garbage = torch.cat([torch.randn(2, L - 40, 2) * 1e4, short], dim=1)
    mask = torch.cat([torch.zeros(2, L - 40, 2), torch.ones(2, 40, 2)], dim=1)
    expected = model(short)
    assert torch.equal(model(nan_padded), expected)
    assert torch.equal(model(garbage, past_mask=mask), expected)
    assert (model(garbage) - expected).abs().max() > 1e-3  # without the mask, those values count


def test_longer_input_keeps_the_last_context() -> None:
    model = tiny()
    x = series(2, L + 37, 1)
    assert torch.equal(model(x), model(x[:, -L:]))
    torch.testing.assert_close(model(x.double()), model(x))  # other dtypes are cast to the weights'


@pytest.mark.parametrize("mask_input", [True, False])
def test_variate_token_is_the_scaled_lookback_and_its_mask(mask_input: bool) -> None:
    """A padded point and an observed value at the mean both scale to 0: only the mask half of the
    token tells them apart."""
    model = tiny(mask_input=mask_input)
    seen = []
    model.tokenizer.embedding.register_forward_hook(lambda module, args, out: seen.append(args[0]))
    x = series(2, 40, 3)
    x[1, 10:15, 2] = float("nan")
    model(x)
    tokens = seen[0]
    assert tokens.shape == (2, 3, 2 * L if mask_input else L)
    observed = torch.cat([torch.zeros(2, L - 40, 3), (~torch.isnan(x)).float()], dim=1).transpose(1, 2)
    values = tokens[..., :L]
    assert (values[observed == 0] == 0).all() and (values[observed == 1] != 0).all()
    torch.testing.assert_close(values[observed == 1].std(), torch.tensor(1.0), rtol=0.05, atol=0)
    if mask_input:
        assert torch.equal(tokens[..., L:], observed)


def test_constant_and_empty_series_give_finite_forecasts() -> None:
    model = tiny()
    x = torch.full((2, L, 2), 5.0)
    x[1, :, 1] = float("nan")
    out = model(x)
    assert torch.isfinite(out).all()
    assert (out[0, :, 0] - 5.0).abs().max() < 0.1
    assert torch.isfinite(tiny(scaling="std")(torch.zeros(1, L, 1))).all()


# ---------------------------------------------------------------- attention layer
def test_attention_mask_blocks_future_tokens() -> None:
    torch.manual_seed(0)
    attention = MultiHeadSelfAttention(8, 2).eval()
    x = torch.randn(2, 5, 8)
    causal = torch.tril(torch.ones(5, 5, dtype=torch.bool))
    a = attention(x, causal)
    y = x.clone()
    y[:, 3:] = torch.randn(2, 2, 8)
    b = attention(y, causal)
    assert torch.equal(a[:, :3], b[:, :3]) and (a[:, 3:] - b[:, 3:]).abs().max() > 1e-3
    assert (attention(x)[:, :3] - a[:, :3]).abs().max() > 1e-3


# ---------------------------------------------------------------- checkpoints and configs
def test_save_load_round_trip_is_bit_exact(tmp_path) -> None:
    model = tiny(num_exog_channels=1, scaling="std", quantiles=(0.1, 0.5, 0.9))
    assert_checkpoint_round_trip(model, tmp_path / "itr", series(2, L, 3), past_exog=torch.randn(2, L, 1))


def test_config_dict_round_trip_and_registry() -> None:
    config = ITransformerConfig.tiny(quantiles=(0.1, 0.5, 0.9), activation="relu")
    data = json.loads(json.dumps(config.to_dict()))
    assert data["family"] == "itransformer"
    assert ITransformerConfig.from_dict(data) == config
    model = build_model(data)
    assert isinstance(model, ITransformer) and model.config == config


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(d_model=18, n_heads=4), "not divisible by n_heads"),
        (dict(e_layers=0), "e_layers must be >= 1"),
        (dict(dropout=1.0), "dropout must be in"),
        (dict(activation="tanh"), "activation 'tanh' is unknown"),
        (dict(scaling="robust"), "scaling 'robust' is unknown"),
        (dict(num_exog_channels=-1), "num_exog_channels must be >= 0"),
        (dict(quantiles=(0.1, 0.9)), "must include 0.5"),
    ],
)
def test_config_validation(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ITransformerConfig.tiny(**overrides)


# ---------------------------------------------------------------- training
def test_every_parameter_learns() -> None:
    torch.manual_seed(0)
    model = ITransformer(ITransformerConfig.tiny(dropout=0.1)).train()
    x, exog = series(8, L + H, 2), torch.randn(8, L, 1)
    model.training_loss(x[:, :L], x[:, L:], past_exog=exog).backward()
    dead = [name for name, p in model.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
    assert not dead, f"parameters without gradient: {dead}"


def test_training_reduces_loss_on_a_seasonal_series() -> None:
    torch.manual_seed(0)
    model = ITransformer(ITransformerConfig.tiny()).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    t = torch.arange(L + H, dtype=torch.float32)
    phase = torch.rand(32, 1) * 8
    x = (torch.sin(2 * torch.pi * (t + phase) / 8) * 5 + 20).unsqueeze(-1)
    first = None
    for _ in range(60):
        optimizer.zero_grad()
        loss = model.training_loss(x[:, :L], x[:, L:])
        loss.backward()
        optimizer.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.3 * first


# ---------------------------------------------------------------- export
def test_onnx_export_with_dynamic_batch_and_channels(tmp_path) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    from torch.export import Dim

    model = tiny()
    path = tmp_path / "itransformer.onnx"
    batch, channels = Dim("batch"), Dim("channels")
    torch.onnx.export(
        model, (series(2, L, 3), torch.ones(2, L, 3)), str(path), dynamo=True, external_data=False,
        input_names=["past_values", "past_mask"], output_names=["quantiles"],
        dynamic_shapes={"past_values": {0: batch, 2: channels}, "past_mask": {0: batch, 2: channels}},
    )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = series(5, L, 6, seed=3)
    mask = torch.ones_like(x)
    mask[:, :20] = 0
    got = session.run(None, {"past_values": x.numpy(), "past_mask": mask.numpy()})[0]
    with torch.inference_mode():
        expected = model(x, mask).numpy()
    assert got.shape == (5, H, 6, len(model.quantiles))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
