"""Triton kernels (selective scan fwd+bwd, companion causal convolution fwd+bwd) against the
reference, on CPU through the Triton interpreter. Cases are tiny: the interpreter is slow.

``TSFM_TEST_DEVICE=cuda`` runs the same tests compiled on a GPU (plus cases of realistic size):
the interpreter accepts code the compiler rejects, e.g. a function whose returns differ in shape.
"""

from __future__ import annotations

import importlib
import os
import sys

import pytest

DEVICE = os.environ.get("TSFM_TEST_DEVICE", "cpu")
# The interpreter is chosen when a kernel is decorated, i.e. when our Triton modules are
# imported: set it first, and re-import modules someone loaded without it.
os.environ["TRITON_INTERPRET"] = "1" if DEVICE == "cpu" else "0"
pytest.importorskip("triton", reason="triton is not installed (pip install triton)")

import torch  # noqa: E402

if DEVICE != "cpu" and not torch.cuda.is_available():
    pytest.skip(f"TSFM_TEST_DEVICE={DEVICE} but CUDA is not available", allow_module_level=True)

for _name in ("tsfm.kernels.selective_scan_triton", "tsfm.kernels.companion_triton"):
    if _name in sys.modules:
        importlib.reload(sys.modules[_name])
from tsfm.kernels import causal_conv, companion_kernel, selective_scan  # noqa: E402
from tsfm.kernels.companion_triton import causal_conv_triton  # noqa: E402
from tsfm.kernels.selective_scan_triton import selective_scan_triton  # noqa: E402

TOL = {torch.float64: 1e-5, torch.float32: 1e-3}
NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    scale = ref.double().abs().max().clamp_min(1e-12)
    return ((x.double() - ref.double()).abs().max() / scale).item()


def make_inputs(b, d, n, length, layout, dtype, seed):
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype)

    var_b, var_c = layout in ("selective", "var_b"), layout in ("selective", "var_c")
    inputs = dict(u=rnd(b, d, length), delta=rnd(b, d, length, scale=0.5),
                  A=-torch.exp(rnd(d, n, scale=0.5)),
                  B=rnd(b, n, length) if var_b else rnd(d, n),
                  C=rnd(b, n, length) if var_c else rnd(d, n),
                  D=rnd(d), z=rnd(b, d, length), delta_bias=rnd(d, scale=0.3))
    return {k: v.to(DEVICE).requires_grad_(True) for k, v in inputs.items()}


# (b, d, n, length, block_l, block_d, layout, dtype): several chunks and channel blocks, a
# ragged last chunk and channel block, n padded to a power of two (3 -> 4)
CASES = [
    (2, 3, 4, 37, 8, 2, "selective", torch.float64),
    (2, 3, 4, 37, 8, 2, "selective", torch.float32),
    (1, 4, 1, 20, 8, 4, "time_invariant", torch.float32),
    (1, 2, 16, 9, 4, 1, "var_b", torch.float64),
    (2, 2, 3, 11, 4, 2, "var_c", torch.float32),
    (1, 2, 16, 1, None, None, "selective", torch.float64),
]
if DEVICE != "cpu":  # S-Mamba's sizes, default blocks: too slow for the interpreter
    CASES += [(4, 128, 16, 512, None, None, "selective", torch.float32),
              (2, 64, 16, 300, None, None, "time_invariant", torch.float32)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"b{c[0]}d{c[1]}n{c[2]}l{c[3]}-{c[6]}-"
                         f"{str(c[7])[6:]}")
def test_selective_scan_triton_matches_reference(case):
    b, d, n, length, block_l, block_d, layout, dtype = case
    inputs = make_inputs(b, d, n, length, layout, dtype, seed=length)
    weights = torch.randn(b, d, length, generator=torch.Generator().manual_seed(1)).to(DEVICE, dtype)
    outs = []
    for use_triton in (False, True):
        if use_triton:
            y, last = selective_scan_triton(**inputs, delta_softplus=True, return_last_state=True,
                                            block_l=block_l, block_d=block_d)
        else:
            y, last = selective_scan(**inputs, delta_softplus=True, return_last_state=True,
                                     backend="reference")
        loss = (y * weights).sum() + last.pow(2).sum()
        outs.append((y, last, torch.autograd.grad(loss, list(inputs.values()))))
    (y0, last0, g0), (y1, last1, g1) = outs
    assert y1.dtype == dtype and y1.shape == y0.shape
    assert rel_err(y1, y0) <= TOL[dtype]
    assert rel_err(last1, last0) <= TOL[dtype]
    for name, ga, gb in zip(NAMES, g1, g0):
        assert ga.shape == gb.shape, name
        assert rel_err(ga, gb) <= TOL[dtype], name


def test_selective_scan_triton_without_optionals():
    """No D, z, bias or softplus; dispatch through backend="triton"."""
    inputs = make_inputs(1, 2, 4, 13, "selective", torch.float64, seed=5)
    core = {k: inputs[k] for k in ("u", "delta", "A", "B", "C")}
    y1 = selective_scan(**core, backend="triton")
    y0 = selective_scan(**core, backend="reference")
    assert rel_err(y1, y0) <= 1e-10
    g1 = torch.autograd.grad(y1.sum(), list(core.values()))
    g0 = torch.autograd.grad(y0.sum(), list(core.values()))
    for ga, gb in zip(g1, g0):
        assert rel_err(ga, gb) <= 1e-10


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("length,block", [(19, 8), (5, None)])
def test_causal_conv_triton_matches_fft(length, block, dtype):
    gen = torch.Generator().manual_seed(length)
    u = torch.randn(2, 3, length, generator=gen).to(DEVICE, dtype).requires_grad_(True)
    kernel = torch.randn(3, length, generator=gen).to(DEVICE, dtype).requires_grad_(True)
    w = torch.randn(2, 3, length, generator=gen).to(DEVICE, dtype)
    y1 = causal_conv_triton(u, kernel, block)
    y0 = causal_conv(u, kernel, backend="chunked")
    assert rel_err(y1, y0) <= TOL[dtype]
    for ga, gb in zip(torch.autograd.grad((y1 * w).sum(), (u, kernel)),
                      torch.autograd.grad((y0 * w).sum(), (u, kernel))):
        assert rel_err(ga, gb) <= TOL[dtype]


def test_companion_scan_triton_backend():
    from tsfm.kernels import companion_scan

    gen = torch.Generator().manual_seed(0)
    a, b, c = (torch.randn(2, 6, generator=gen, dtype=torch.float64) for _ in range(3))
    a = a / a.abs().sum(-1, keepdim=True)
    u = torch.randn(2, 2, 17, generator=gen, dtype=torch.float64)
    a, b, c, u = (t.to(DEVICE) for t in (a, b, c, u))
    y1 = companion_scan(u, a, b, c, backend="triton")
    y0 = companion_scan(u, a, b, c, backend="reference")
    assert rel_err(y1, y0) <= 1e-10
    assert companion_kernel(a, b, c, 17).shape == (2, 17)
