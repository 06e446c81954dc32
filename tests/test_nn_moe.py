"""Layers of Moirai-MoE: top-k MoE routing and its two dispatch formulations, the Switch
load-balancing loss, the Student-t / mixture CDF and quantiles against scipy, RoPE, RMSNorm and
the any-variate attention mask; and the ONNX export of a whole tiny Moirai-MoE (its ~15-30 s
export lives here so that tests/test_moirai_moe.py stays within the per-file time budget)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import optimize, stats

from conftest import seasonal_walks as series
from tsfm.models.moirai_moe import MoiraiMoE, MoiraiMoEConfig
from tsfm.nn.attention import RMSNorm, RotaryEmbedding, any_variate_mask
from tsfm.nn.distributions import (
    MAX_DF,
    MixtureParams,
    bracket_width,
    mixture_cdf,
    mixture_log_prob,
    mixture_quantiles,
    params_from_raw,
    student_t_cdf,
)
from tsfm.nn.moe import MoEFeedForward, load_balancing_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def moe(num_experts: int = 6, top_k: int = 2, d: int = 8, d_ff: int = 12) -> MoEFeedForward:
    torch.manual_seed(0)
    return MoEFeedForward(d, d_ff, num_experts, top_k)


# ---------------------------------------------------------------- routing and dispatch
@pytest.mark.parametrize("top_k", [1, 2, 3])
def test_each_token_goes_to_exactly_k_distinct_experts_with_weights_summing_to_one(top_k: int) -> None:
    layer = moe(top_k=top_k)
    x = torch.randn(50, 8, generator=torch.Generator().manual_seed(1))
    probs, indices, weights = layer.route(x)
    assert indices.shape == weights.shape == (50, top_k)
    assert all(len(set(row.tolist())) == top_k for row in indices)
    torch.testing.assert_close(weights.sum(-1), torch.ones(50))
    assert (weights > 0).all()
    # the chosen experts are the k most probable, and the weights are their renormalised probabilities
    top = probs.topk(top_k, dim=-1)
    assert torch.equal(indices, top.indices)
    torch.testing.assert_close(weights, top.values / top.values.sum(-1, keepdim=True))


def reference_moe(layer: MoEFeedForward, x: torch.Tensor) -> torch.Tensor:
    """Token by token: sum over the chosen experts of weight x expert(token)."""
    _, indices, weights = layer.route(x)
    rows = []
    for n in range(x.shape[0]):
        rows.append(sum(weights[n, j] * layer.experts.expert(int(indices[n, j]), x[n : n + 1])[0]
                        for j in range(indices.shape[1])))
    return torch.stack(rows)


def test_sparse_and_dense_dispatch_compute_the_same_function_and_gradients() -> None:
    layer = moe(num_experts=5, top_k=2)
    x = torch.randn(3, 7, 8, generator=torch.Generator().manual_seed(2), requires_grad=True)
    results = {}
    for mode in ("sparse", "dense"):
        layer.dispatch = mode
        y, loss = layer(x)
        grads = torch.autograd.grad((y * torch.linspace(-1, 1, 8)).sum() + loss, [x, *layer.parameters()])
        results[mode] = (y, loss, grads)
    y_sparse, loss_sparse, g_sparse = results["sparse"]
    y_dense, loss_dense, g_dense = results["dense"]
    torch.testing.assert_close(y_sparse, y_dense, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(y_sparse.reshape(-1, 8), reference_moe(layer, x.reshape(-1, 8)), rtol=1e-5, atol=1e-6)
    assert loss_sparse == loss_dense
    for a, b in zip(g_sparse, g_dense):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert y_sparse.abs().min() > 0  # every token received expert output


def test_auto_dispatch_is_dense_while_exporting(monkeypatch) -> None:
    layer = moe()
    x = torch.randn(10, 8)

    def refuse(*args):
        raise AssertionError("sparse dispatch used while exporting")

    monkeypatch.setattr(layer, "_sparse", refuse)
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    y, _ = layer(x)
    monkeypatch.undo()
    layer.dispatch = "sparse"
    torch.testing.assert_close(y, layer(x)[0], rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- load balancing
def test_load_balancing_loss_is_one_for_uniform_routing() -> None:
    layer = moe(num_experts=8, top_k=2)
    with torch.no_grad():
        layer.router.weight.zero_()  # every expert equally probable
    _, loss = layer(torch.randn(64, 8))
    assert abs(loss.item() - 1.0) < 1e-6
    # a perfectly balanced assignment is also the minimum, whatever the probabilities
    probs = torch.softmax(torch.randn(8, 4, generator=torch.Generator().manual_seed(3)), dim=-1)
    indices = torch.tensor([[0, 1], [2, 3]] * 4)
    assert abs(load_balancing_loss(probs, indices, 4).item() - 1.0) < 1e-6


def test_load_balancing_loss_grows_for_skewed_routing_and_its_gradient_rebalances() -> None:
    layer = moe(num_experts=4, top_k=2)
    with torch.no_grad():
        layer.router.weight.zero_()
        layer.router.weight[:2] = 0.1  # positive inputs: experts 0 and 1 always win
    x = torch.rand(32, 8) + 0.1
    probs, indices, _ = layer.route(x)
    assert set(indices.flatten().tolist()) == {0, 1}
    _, loss = layer(x)
    expected = 4 * (0.5 * probs[:, 0].mean() + 0.5 * probs[:, 1].mean())
    torch.testing.assert_close(loss, expected)
    assert loss.item() > 1.2
    optimizer = torch.optim.SGD(layer.router.parameters(), lr=1.0)
    for _ in range(20):
        optimizer.zero_grad()
        layer(x)[1].backward()
        optimizer.step()
    assert layer(x)[1].item() < loss.item() - 0.1


def test_padding_tokens_do_not_count_in_the_balance() -> None:
    layer = moe()
    x = torch.randn(20, 8, generator=torch.Generator().manual_seed(4))
    keep = torch.tensor([1.0] * 12 + [0.0] * 8)
    _, weighted = layer(x, keep)
    _, subset = layer(x[:12])
    torch.testing.assert_close(weighted, subset)


# ---------------------------------------------------------------- distributions
@pytest.mark.parametrize("df", [2.0, 2.0001, 2.3, 3.0, 5.5, 17.0, 60.0, MAX_DF])
def test_student_t_cdf_matches_scipy(df: float) -> None:
    t = torch.cat([torch.linspace(-80, 80, 3001, dtype=torch.float64), torch.tensor([0.0, 1e-6, -1e-6],
                                                                                      dtype=torch.float64)])
    got = student_t_cdf(t, torch.tensor(df, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(got, stats.t.cdf(t.numpy(), df), rtol=0, atol=5e-7)


def random_params(n: int, seed: int = 0, dtype=torch.float64) -> MixtureParams:
    g = torch.Generator().manual_seed(seed)
    raw = torch.randn(n, 9, generator=g, dtype=dtype) * torch.tensor([2, 2, 2, 1, 3, 1, 1, 1, 1], dtype=dtype)
    return params_from_raw(raw)


def scipy_mixture(params: MixtureParams, i: int):
    w = torch.softmax(params.logits[i], -1).numpy()
    comps = [stats.t(params.t_df[i].item(), params.t_loc[i].item(), params.t_scale[i].item()),
             stats.norm(params.n_loc[i].item(), params.n_scale[i].item()),
             stats.norm(params.f_loc[i].item(), 1e-3)]
    return w, comps


def test_params_are_valid_and_log_prob_and_cdf_match_scipy() -> None:
    params = random_params(12)
    assert (params.t_df > 2).all() and (params.t_df <= MAX_DF).all()
    assert (params.t_scale > 0).all() and (params.n_scale > 0).all()
    x = torch.randn(12, generator=torch.Generator().manual_seed(5), dtype=torch.float64) * 2
    log_prob, cdf = mixture_log_prob(params, x), mixture_cdf(params, x)
    for i in range(12):
        w, comps = scipy_mixture(params, i)
        want_pdf = sum(wk * c.pdf(x[i].item()) for wk, c in zip(w, comps))
        want_cdf = sum(wk * c.cdf(x[i].item()) for wk, c in zip(w, comps))
        assert abs(log_prob[i].item() - np.log(want_pdf)) < 1e-8
        assert abs(cdf[i].item() - want_cdf) < 1e-6


def test_mixture_quantiles_are_monotone_and_match_a_root_finder() -> None:
    levels = (0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99)
    params = random_params(20, seed=6)
    got = mixture_quantiles(params, levels, steps=20)
    for i in range(20):
        w, comps = scipy_mixture(params, i)

        def cdf(x: float) -> float:
            return sum(wk * c.cdf(x) for wk, c in zip(w, comps))

        want = [optimize.brentq(lambda x: cdf(x) - p, -1e4, 1e4, xtol=1e-13) for p in levels]
        np.testing.assert_allclose(got[i].numpy(), want, rtol=3e-5, atol=3e-5)  # quadrature: CDF error < 5e-7
    got32 = mixture_quantiles(random_params(200, seed=7, dtype=torch.float32), levels)
    assert (got32.diff(dim=-1) >= 0).all()


def test_bracket_holds_every_student_t_quantile() -> None:
    for p in (0.01, 0.1, 0.3, 0.5, 0.8, 0.999):
        for df in (2.0, 2.5, 4.0, 30.0, 1e6):
            assert abs(stats.t.ppf(p, df)) <= bracket_width(p) + 1e-12
    assert bracket_width(0.5) == 0.0


# ---------------------------------------------------------------- attention pieces
def test_rms_norm() -> None:
    norm = RMSNorm(4)
    with torch.no_grad():
        norm.weight.copy_(torch.tensor([1.0, 2.0, 0.5, -1.0]))
    x = torch.tensor([[3.0, -4.0, 0.0, 0.0]])
    rms = (25.0 / 4) ** 0.5
    torch.testing.assert_close(norm(x), x / rms * norm.weight, rtol=1e-5, atol=1e-6)


def test_rope_scores_depend_only_on_the_time_difference_and_unrotated_features_pass() -> None:
    rope = RotaryEmbedding(4)
    g = torch.Generator().manual_seed(8)
    q, k = torch.randn(1, 6, generator=g), torch.randn(1, 6, generator=g)

    def score(pq: float, pk: float) -> torch.Tensor:
        cq, sq = rope.angles(torch.tensor([pq]))
        ck, sk = rope.angles(torch.tensor([pk]))
        return (rope.rotate(q, cq, sq) * rope.rotate(k, ck, sk)).sum()

    torch.testing.assert_close(score(3, 1), score(10, 8))
    assert (score(3, 1) - score(3, 2)).abs() > 1e-3
    c, s = rope.angles(torch.tensor([5.0]))
    torch.testing.assert_close(rope.rotate(q, c, s)[:, 4:], q[:, 4:])
    torch.testing.assert_close(rope.rotate(q, c, s).norm(), q.norm())


def test_any_variate_mask() -> None:
    time = torch.tensor([0, 1, 2, 0, 1, 2])  # two variates, three steps, variate-major
    valid = torch.tensor([[False, True, True, True, True, True]])
    mask = any_variate_mask(time, time, valid)[0, 0]
    expected = torch.tensor([
        [1, 0, 0, 1, 0, 0],  # an invalid (padding) token sees only itself ...
        [0, 1, 0, 1, 1, 0],  # ... and nobody else sees it
        [0, 1, 1, 1, 1, 1],
        [0, 0, 0, 1, 0, 0],
        [0, 1, 0, 1, 1, 0],  # same step, other variate: visible
        [0, 1, 1, 1, 1, 1],
    ], dtype=torch.bool)
    assert torch.equal(mask, expected)


# ---------------------------------------------------------------- ONNX export of the model
def test_onnx_export_matches_eager_with_other_batch_and_channels(tmp_path) -> None:
    """The whole forecast (two patches: KV-cache decoding, quantile paths, bisection) in one graph.

    One layer and 2 bisection steps keep the unrolled graph, and the export, small.
    """
    onnxruntime = pytest.importorskip("onnxruntime")
    from tsfm.export.onnx_export import export_onnx

    torch.manual_seed(0)
    model = MoiraiMoE(MoiraiMoEConfig.tiny(num_layers=1, quantile_bisection_steps=2)).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.2 * torch.randn(p.shape, generator=g))
    path = export_onnx(model, tmp_path / "moirai_moe.onnx")  # checks parity itself at batch 3 x 2 channels
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = series(4, 64, 5, seed=13)
    mask = torch.ones_like(x)
    mask[:, :20] = 0
    got = session.run(None, {"past_values": x.numpy(), "past_mask": mask.numpy()})[0]
    with torch.no_grad():
        want = model(x, mask).numpy()
    assert got.shape == (4, 32, 5, 9)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
