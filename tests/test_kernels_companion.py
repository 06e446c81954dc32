"""Companion SSM: fast kernel vs matrix powers, FFT convolution vs recurrence, closed loop fast
vs loop, gradients, and ONNX export of the FFT path."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from tsfm.kernels import (
    causal_conv,
    closed_loop_rollout,
    companion_c_tilde,
    companion_final_state,
    companion_kernel,
    companion_matrix,
    companion_scan,
)

TOL = {torch.float64: 1e-5, torch.float32: 1e-3}


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    scale = ref.double().abs().max().clamp_min(1e-12)
    return ((x.double() - ref.double()).abs().max() / scale).item()


def params(heads, d, dtype, seed=0, requires_grad=False):
    """SpaceTime-style parameters: ``a`` divided by its L1 norm (spectral radius <= 1)."""
    gen = torch.Generator().manual_seed(seed)
    a, b, c, k = (torch.randn(heads, d, generator=gen, dtype=torch.float64) for _ in range(4))
    a = a / a.abs().sum(-1, keepdim=True)
    out = [t.to(dtype).requires_grad_(requires_grad) for t in (a, b, c, 0.1 * k)]
    return out


def test_companion_matrix_structure():
    a = torch.arange(1.0, 4.0)[None]
    expected = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 2.0], [0.0, 1.0, 3.0]])
    assert torch.equal(companion_matrix(a)[0], expected)  # ones at A[i+1, i], last column a


SHAPES = [(3, 4, 10), (2, 16, 37), (2, 64, 100), (1, 8, 5), (2, 6, 6)]  # d < L, d > L, d = L


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", SHAPES)
def test_fast_kernel_matches_matrix_powers(shape, dtype):
    heads, d, length = shape
    a, b, c, _ = params(heads, d, dtype, seed=d)
    fast = companion_kernel(a, b, c, length, backend="chunked")
    ref = companion_kernel(a, b, c, length, backend="reference")
    assert fast.shape == (heads, length) and fast.dtype == dtype
    assert rel_err(fast, ref) <= TOL[dtype]


def test_fast_kernel_accepts_c_tilde():
    a, b, c, _ = params(2, 8, torch.float64)
    c_t = companion_c_tilde(a, c, 30)
    fast = companion_kernel(a, b, c_t, 30, c_tilde=True)
    assert rel_err(fast, companion_kernel(a, b, c, 30, backend="reference")) < 1e-10
    with pytest.raises(ValueError):
        companion_kernel(a, b, c_t, 30, backend="reference", c_tilde=True)


def test_fast_kernel_gradients_match_reference():
    a, b, c, _ = params(2, 8, torch.float64, requires_grad=True)
    w = torch.randn(2, 24, dtype=torch.float64)
    grads = [torch.autograd.grad((companion_kernel(a, b, c, 24, backend=be) * w).sum(), (a, b, c))
             for be in ("reference", "chunked")]
    for g_ref, g_fast in zip(*grads):
        assert rel_err(g_fast, g_ref) < 1e-8


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("shape", [(3, 4, 17), (2, 16, 64), (1, 32, 9)])
def test_fft_scan_matches_recurrence(shape, dtype):
    heads, d, length = shape
    a, b, c, _ = params(heads, d, dtype, seed=length, requires_grad=True)
    D = torch.randn(heads, dtype=dtype, requires_grad=True)
    u = torch.randn(2, heads, length, dtype=dtype, requires_grad=True)
    w = torch.randn(2, heads, length, dtype=dtype)
    results = []
    for backend in ("reference", "chunked"):
        y = companion_scan(u, a, b, c, D, backend=backend)
        results.append((y, torch.autograd.grad((y * w).sum(), (u, a, b, c, D))))
    (y0, g0), (y1, g1) = results
    assert y1.shape == u.shape
    assert rel_err(y1, y0) <= TOL[dtype]
    for name, ga, gb in zip("u a b c D".split(), g1, g0):
        assert rel_err(ga, gb) <= TOL[dtype], name


def test_causal_conv_is_causal():
    u = torch.zeros(1, 1, 12, dtype=torch.float64)
    u[..., 5] = 1.0
    kernel = torch.arange(1.0, 13.0, dtype=torch.float64)[None]
    y = causal_conv(u, kernel)
    assert torch.allclose(y[..., :5], torch.zeros(5, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(y[0, 0, 5:], kernel[0, :7])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_final_state_fast_matches_loop(dtype):
    a, b, _, _ = params(3, 8, dtype, requires_grad=True)
    u = torch.randn(2, 3, 29, dtype=dtype, requires_grad=True)
    outs = []
    for backend in ("reference", "chunked"):
        x = companion_final_state(u, a, b, backend=backend)
        outs.append((x, torch.autograd.grad(x.pow(2).sum(), (u, a, b))))
    assert outs[0][0].shape == (2, 3, 8)
    assert rel_err(outs[1][0], outs[0][0]) <= TOL[dtype]
    for ga, gb in zip(outs[1][1], outs[0][1]):
        assert rel_err(ga, gb) <= TOL[dtype]


def test_final_state_continues_the_scan():
    """The state after the lag, read by c, gives the scan's last output."""
    a, b, c, _ = params(2, 6, torch.float64)
    u = torch.randn(3, 2, 20, dtype=torch.float64)
    x = companion_final_state(u, a, b)
    y = companion_scan(u, a, b, c, backend="reference")
    assert torch.allclose((x * c).sum(-1), y[..., -1], atol=1e-10)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("horizon", [1, 7, 16, 33])
def test_closed_loop_fast_matches_loop(horizon, dtype):
    a, b, c, k = params(3, 8, dtype, seed=horizon, requires_grad=True)
    x0 = torch.randn(2, 3, 8, dtype=dtype, requires_grad=True)
    outs = []
    for backend in ("reference", "chunked"):
        y, u_hat = closed_loop_rollout(x0, a, b, c, k, horizon, backend=backend)
        loss = y.pow(2).sum() + (u_hat * torch.linspace(0, 1, horizon, dtype=dtype)).sum()
        outs.append((y, u_hat, torch.autograd.grad(loss, (x0, a, b, c, k))))
    (y0, uh0, g0), (y1, uh1, g1) = outs
    assert y1.shape == (2, 3, horizon) and uh1.shape == (2, 3, horizon)
    assert rel_err(y1, y0) <= TOL[dtype] and rel_err(uh1, uh0) <= TOL[dtype]
    for name, ga, gb in zip("x0 a b c k".split(), g1, g0):
        assert rel_err(ga, gb) <= TOL[dtype], name


def test_closed_loop_feeds_its_own_inputs():
    """u_hat is the input that, fed to the open-loop recurrence, reproduces the rollout."""
    a, b, c, k = params(1, 5, torch.float64)
    x = torch.randn(1, 1, 5, dtype=torch.float64)
    y, u_hat = closed_loop_rollout(x, a, b, c, k, 6)
    A = companion_matrix(a)
    for step in range(6):
        u_in = (k * x).sum(-1)  # the input the loop generates from the current state
        x = (A @ x[..., None]).squeeze(-1) + b * u_in[..., None]
        assert torch.allclose((c * x).sum(-1), y[..., step], atol=1e-12)
        assert torch.allclose((k * x).sum(-1), u_hat[..., step], atol=1e-12)


class _CompanionLayer(torch.nn.Module):
    def __init__(self, heads: int = 3, d: int = 8):
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.a = torch.nn.Parameter(torch.randn(heads, d, generator=gen) / d)
        self.b = torch.nn.Parameter(torch.randn(heads, d, generator=gen))
        self.c = torch.nn.Parameter(torch.randn(heads, d, generator=gen))
        self.D = torch.nn.Parameter(torch.randn(heads, generator=gen))

    def forward(self, x):  # [b, heads, l]
        return companion_scan(x, self.a, self.b, self.c, self.D, backend="chunked")


def test_fft_scan_exports_to_onnx(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from torch.export import Dim

    model = _CompanionLayer().eval()
    path = tmp_path / "companion.onnx"
    torch.onnx.export(model, (torch.randn(2, 3, 32),), str(path), dynamo=True,
                      external_data=False, input_names=["x"],
                      dynamic_shapes={"x": {0: Dim.AUTO}})
    x = torch.randn(5, 3, 32)
    got = ort.InferenceSession(str(path)).run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    assert np.abs(got - want).max() <= 1e-4


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_fast_kernel_with_eigenvalues_on_the_unit_circle(dtype):
    """a >= 0 with |a|_1 = 1 has eigenvalue 1; a = e_0 makes A a cyclic shift (all roots of
    unity). The paper's unit-circle evaluation is 0/0 there; ours must stay exact."""
    a = torch.tensor([[0.2, 0.3, 0.1, 0.4], [1.0, 0.0, 0.0, 0.0]], dtype=dtype)
    gen = torch.Generator().manual_seed(3)
    b, c = (torch.randn(2, 4, generator=gen).to(dtype) for _ in range(2))
    for length in (8, 12, 64):
        fast = companion_kernel(a, b, c, length)
        ref = companion_kernel(a, b, c, length, backend="reference")
        assert torch.isfinite(fast).all()
        assert rel_err(fast, ref) <= TOL[dtype]


def test_auto_backend_leaves_long_convolutions_to_the_fft(monkeypatch):
    """On a GPU "auto" takes the Triton convolution up to TRITON_CONV_MAX_AUTO_LENGTH and the FFT
    beyond it (the direct kernel is O(L^2)); a backend named explicitly is always obeyed."""
    import types

    import tsfm.kernels.companion as companion

    calls = []
    fake = types.ModuleType("tsfm.kernels.companion_triton")
    fake.causal_conv_triton = lambda u, kernel: calls.append(u.shape[-1]) or torch.zeros_like(u)
    monkeypatch.setitem(sys.modules, "tsfm.kernels.companion_triton", fake)
    monkeypatch.setattr(companion, "resolve_backend", lambda backend, device: "triton")
    gen = torch.Generator().manual_seed(0)
    limit = companion.TRITON_CONV_MAX_AUTO_LENGTH
    for length in (8, limit):
        companion.causal_conv(torch.randn(1, 2, length, generator=gen), torch.randn(2, length, generator=gen))
    u, kernel = torch.randn(1, 2, limit + 1, generator=gen), torch.randn(2, limit + 1, generator=gen)
    y = companion.causal_conv(u, kernel)
    assert calls == [8, limit]
    assert torch.allclose(y[..., :3], torch.stack([kernel[:, 0] * u[..., 0],
                                                    kernel[:, 0] * u[..., 1] + kernel[:, 1] * u[..., 0],
                                                    kernel[:, 0] * u[..., 2] + kernel[:, 1] * u[..., 1]
                                                    + kernel[:, 2] * u[..., 0]], -1), atol=1e-4)
    companion.causal_conv(u, kernel, backend="triton")
    assert calls == [8, limit, limit + 1]
