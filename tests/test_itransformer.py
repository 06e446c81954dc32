"""iTransformer: variate tokens (unseen variate counts, covariate tokens, the scaled lookback and
its mask), the attention layer, the default size and config validation. The contract every family
keeps (scale, padding, channels, round trips, training, ONNX export) is in test_model_contract.py."""

from __future__ import annotations

import pytest
import torch

from conftest import seasonal_walks as series
from tsfm.errors import InputError
from tsfm.models.itransformer import ITransformer, ITransformerConfig
from tsfm.nn.attention import MultiHeadSelfAttention

H, L = 16, 64  # ITransformerConfig.tiny(): context 64, horizon 16


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**overrides) -> ITransformer:
    torch.manual_seed(0)
    return ITransformer(ITransformerConfig.tiny(**overrides)).eval()


# ---------------------------------------------------------------- size
def test_default_config_size() -> None:
    model = ITransformer(ITransformerConfig())
    assert model.num_parameters() == 507_872
    assert model.tokenizer.embedding.in_features == 2 * 512 and model.head.projection.out_features == 96 * 9
    assert len(model.encoder.layers) == 2


# ---------------------------------------------------------------- variate tokens
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


# ---------------------------------------------------------------- scaling and mask
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


# ---------------------------------------------------------------- configs
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

