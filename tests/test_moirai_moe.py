"""Moirai-MoE: causality of the decoder, KV-cache decoding against full recomputation, the
quantile-path rollout against a cache-free reference, covariates, the native training loss and the
Forecaster. The contract every family keeps (scale, padding, channels, round trips, training) is in
test_model_contract.py; the ONNX export test of the model is in test_nn_moe.py (this file's time
budget)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import monthly_frame, randomise
from conftest import seasonal_walks as series
from tsfm.errors import InputError
from tsfm.hub import save_pretrained
from tsfm.models.moirai_moe import MoiraiMoE, MoiraiMoEConfig
from tsfm.nn.distributions import mixture_log_prob, mixture_quantiles

L, H, P = 64, 32, 16  # MoiraiMoEConfig.tiny(): context 64 (4 patches), horizon 32 (2 patches)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**overrides) -> MoiraiMoE:
    torch.manual_seed(0)
    model = MoiraiMoE(MoiraiMoEConfig.tiny(**overrides)).eval()
    randomise(model, scale=0.2)  # the variate biases start at 0, the norms at 1
    return model


def scaled_sequence(batch: int, patches: int, variates: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(batch, patches * P, variates, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- size and configs
def test_default_config_size() -> None:
    torch.manual_seed(0)
    model = MoiraiMoE(MoiraiMoEConfig())
    total = model.num_parameters()
    experts = sum(p.numel() for n, p in model.named_parameters() if ".experts." in n)
    active = total - experts + experts * model.config.top_k // model.config.num_experts
    assert 2_000_000 < total < 3_000_000 and active < 1_000_000
    assert MoiraiMoEConfig.tiny().to_dict()["gating"] == "learned"


@pytest.mark.parametrize("field,value,match", [
    ("context_length", 72, "multiple of patch_size"), ("top_k", 5, "top_k"), ("gating", "centroid", "gating"),
    ("num_heads", 3, "divisible"), ("quantiles", (0.0, 0.5), "strictly between"), ("scaling", "x", "scaling"),
])
def test_config_validation(field: str, value, match: str) -> None:
    with pytest.raises(InputError, match=match):
        MoiraiMoEConfig.tiny(**{field: value})


# ---------------------------------------------------------------- causality and decoding
def test_teacher_forced_outputs_are_causal_in_time_and_variates_at_a_step_interact() -> None:
    model = tiny()
    x = scaled_sequence(2, 6, 3)
    mask = torch.ones_like(x)
    changed = x.clone()
    changed[:, 3 * P : 4 * P, 1] += 2.0  # patch 3 of variate 1
    with torch.no_grad():
        a, _ = model.sequence_distribution(x, mask)
        b, _ = model.sequence_distribution(changed, mask)
    for pa, pb in zip(a, b):  # [B, V, T, P(, 3)]
        torch.testing.assert_close(pa[:, :, :3], pb[:, :, :3], rtol=0, atol=0)
    assert (a.t_loc[:, 0, 3] - b.t_loc[:, 0, 3]).abs().max() > 1e-4  # other variate, same step: sees it
    assert (a.t_loc[:, :, 3:] - b.t_loc[:, :, 3:]).abs().amin(dim=(0, 1, 3)).min() > 0


def test_forward_reads_the_context_like_the_teacher_forced_sequence() -> None:
    """With identity scaling, forecasting from the first m patches (left-padded to the context)
    gives the quantiles of token m-1 of a longer teacher-forced sequence: later patches are
    never used and padding is invisible."""
    model = tiny(scaling="none", prediction_length=P)
    x = scaled_sequence(2, 4, 2, seed=3)
    with torch.no_grad():
        params, _ = model.sequence_distribution(x, torch.ones_like(x))
        for m in (2, 3, 4):
            out = model(x[:, : m * P])  # [B, P, C, Q]
            want = mixture_quantiles(params.map(lambda t: t[:, :, m - 1]), model.quantiles)  # [B, C, P, Q]
            torch.testing.assert_close(out, want.transpose(1, 2).sort(dim=-1).values, rtol=1e-4, atol=1e-4)


def test_kv_cache_decoding_equals_full_recomputation() -> None:
    model = tiny()
    v, steps, prefix = 3, 7, 4
    x = scaled_sequence(2, steps, v, seed=4)
    mask = torch.ones_like(x)
    mask[0, : P + 5] = 0.0  # a padding token and a partly observed one in the prefix
    x = x * mask
    tokens, valid = model._tokens(x, mask)
    time_id, variate_id = model._grid_ids(v, steps, x.device)
    with torch.no_grad():
        full, _, _ = model.decode(tokens, time_id, variate_id, valid)
        grid = lambda t: t.unflatten(1, (v, steps))  # noqa: E731
        keep = grid(time_id[None])[0] < prefix
        first = lambda t: grid(t)[:, keep].reshape(t.shape[0], -1, *t.shape[2:]) if t.dim() > 1 else t  # noqa: E731
        hidden, _, cache = model.decode(first(tokens), time_id.unflatten(0, (v, steps))[:, :prefix].reshape(-1),
                                        variate_id.unflatten(0, (v, steps))[:, :prefix].reshape(-1),
                                        first(valid), None)
        torch.testing.assert_close(hidden, first(full), rtol=1e-5, atol=1e-5)
        for t in range(prefix, steps):  # one time step (all variates) per call
            new, _, cache = model.decode(grid(tokens)[:, :, t], time_id.new_full((v,), t),
                                         torch.arange(v), grid(valid)[:, :, t], cache)
            torch.testing.assert_close(new, grid(full)[:, :, t], rtol=1e-5, atol=1e-5)
        assert cache.layers[0][0].shape[2] == v * steps


def reference_forecast(model: MoiraiMoE, x: torch.Tensor) -> np.ndarray:
    """The quantile-path rollout written without a cache: every step re-runs the whole sequence of
    each path and reduces the Q x Q candidates with numpy's empirical quantiles."""
    levels = model.quantiles
    values, mask = model._variates(x, None, None, None)
    loc, scale = model.scaler(values, mask)
    scaled = (values - loc) / scale * mask
    c = x.shape[-1]
    params, _ = model.sequence_distribution(scaled, mask)
    first = mixture_quantiles(params.map(lambda t: t[:, :, -1]), levels)  # [B, C, P, Q]
    chunks = [first.sort(dim=-1).values.numpy()]
    paths = [torch.cat([scaled, first[..., j].transpose(1, 2)], dim=1) for j in range(len(levels))]
    for _ in range(model.config.prediction_length // P - 1):
        outs = []
        for seq in paths:
            pp, _ = model.sequence_distribution(seq, torch.ones_like(seq) if seq is not scaled else mask)
            outs.append(mixture_quantiles(pp.map(lambda t: t[:, :, -1]), levels))  # [B, C, P, Q]
        candidates = torch.stack(outs, dim=-2).flatten(-2).numpy()  # [B, C, P, Q*Q]
        chunks.append(np.moveaxis(np.quantile(candidates, levels, axis=-1), 0, -1))
        paths = [torch.cat([seq, outs[j][..., j].transpose(1, 2)], dim=1) for j, seq in enumerate(paths)]
    out = np.concatenate(chunks, axis=2)[:, :, : model.config.prediction_length]  # [B, C, H, Q]
    out = out.transpose(0, 2, 1, 3)
    return out * scale[:, :, :c, None].numpy() + loc[:, :, :c, None].numpy()


def test_forward_equals_a_cache_free_quantile_path_rollout() -> None:
    model = tiny(prediction_length=3 * P)
    x = series(2, L, 2, seed=5)
    with torch.no_grad():
        got = model(x).numpy()
        want = reference_forecast(model, x)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)


def test_sparse_and_dense_moe_give_the_same_forecast() -> None:
    model = tiny()
    x = series(3, L, 2, seed=6)
    with torch.no_grad():
        sparse = model(x)
        for layer in model.layers:
            layer.moe.dispatch = "dense"
        dense = model(x)
    torch.testing.assert_close(sparse, dense, rtol=1e-5, atol=1e-4)


# ---------------------------------------------------------------- variates and covariates
def test_past_exog_are_extra_variates() -> None:
    model = tiny()
    x, exog = series(2, L, 2), series(2, L, 2, seed=5)
    with torch.no_grad():
        out, plain = model(x, past_exog=exog), model(x)
    assert out.shape == plain.shape == (2, H, 2, 9)
    assert (out - plain).abs().max() > 1e-3
    with pytest.raises(InputError, match="past_exog"):
        model(x, past_exog=exog[:, :10])


# ---------------------------------------------------------------- training
def test_training_loss_is_next_patch_nll_plus_weighted_balance_and_ignores_unobserved_values() -> None:
    model = tiny()
    x, y = series(3, L, 2), series(3, 20, 2, seed=2)  # horizon 20: the last patch is right-padded
    no_balance = MoiraiMoE(dataclasses.replace(model.config, load_balance_weight=0.0))
    no_balance.load_state_dict(model.state_dict())
    with torch.no_grad():
        loss, nll = model.training_loss(x, y), no_balance.training_loss(x, y)
        # the same loss written out: token t's distribution scores patch t + 1, observed values only
        values, mask = model._variates(x, None, None, None)
        loc, scale = model.scaler(values, mask)
        seq = torch.cat([values, F.pad(y, (0, 0, 0, 12))], 1)
        seq_mask = torch.cat([mask, F.pad(torch.ones_like(y), (0, 0, 0, 12))], 1)
        scaled = (seq - loc) / scale * seq_mask
        params, balance = model.sequence_distribution(scaled, seq_mask)
        terms, count = 0.0, 0.0
        for t in range(L // P + 1):  # tokens 0..5 predict patches 1..6
            nxt = slice((t + 1) * P, (t + 2) * P)
            log_prob = mixture_log_prob(params.map(lambda a: a[:, :, t]), scaled[:, nxt].transpose(1, 2))
            terms = terms - (log_prob * seq_mask[:, nxt].transpose(1, 2)).sum()
            count = count + seq_mask[:, nxt].sum()
        torch.testing.assert_close(nll, terms / count, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(loss - nll, 0.01 * balance, rtol=1e-4, atol=1e-6)
        assert balance >= 1.0 - 1e-4
        y_gap = y.clone()
        y_gap[:, 5:9] = float("nan")
        wild = y.clone()
        wild[:, 5:9] = 1e6
        gap_mask = torch.ones_like(y)
        gap_mask[:, 5:9] = 0
        torch.testing.assert_close(model.training_loss(x, y_gap), model.training_loss(x, wild, future_mask=gap_mask))
    assert torch.isfinite(loss)


# ---------------------------------------------------------------- Forecaster
def test_forecaster_predicts_from_a_checkpoint(tmp_path) -> None:
    from tsfm import Forecaster

    path = save_pretrained(tiny(), tmp_path / "tiny-moirai-moe")
    df = monthly_frame(3, length=50)
    forecast = Forecaster(model=str(path), horizon=40, quantiles=(0.1, 0.5, 0.9)).fit(df).predict()
    assert len(forecast) == 3 * 40 and list(forecast.columns[-3:]) == ["0.1", "0.5", "0.9"]
    values = forecast[["0.1", "0.5", "0.9"]].to_numpy()
    assert np.isfinite(values).all() and (np.diff(values, axis=1) >= 0).all()
    assert (forecast.groupby("unique_id")["0.5"].mean() > 50).all()  # levels near the series' (~100)
