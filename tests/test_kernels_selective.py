"""Selective scan: reference semantics, chunked vs reference (values, last state, all
gradients) in both of its CPU forms (the compiled kernel and torch operations), dtypes, backend
dispatch, and ONNX export of the chunked path."""

from __future__ import annotations

import importlib
import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from tsfm.kernels import (
    cpu_scan,
    default_chunk_size,
    get_default_backend,
    resolve_backend,
    scan_backend,
    selective_scan,
    set_default_backend,
)

TOL = {torch.float64: 1e-5, torch.float32: 1e-3}
INPUT_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
# the package re-exports the function under the module's name: fetch the module itself
SCAN_MODULE = importlib.import_module("tsfm.kernels.selective_scan")
FORMS = ["kernel", "torch"]  # the chunked backend's CPU forms


def chunked_form(form: str):
    """Run the chunked backend as the compiled kernel or as torch operations."""
    if form == "kernel" and shutil.which("c++") is None:
        pytest.skip("no C++ compiler: the chunked backend runs on torch operations only")
    return cpu_scan.kernel_enabled(form == "kernel")


def rel_err(x: torch.Tensor, ref: torch.Tensor) -> float:
    scale = ref.double().abs().max().clamp_min(1e-12)
    return ((x.double() - ref.double()).abs().max() / scale).item()


def make_inputs(b, d, n, length, layout, dtype, seed=0, requires_grad=True):
    """Random scan inputs; ``layout`` says which of B, C are input-dependent."""
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(dtype)

    var_b = layout in ("selective", "var_b")
    var_c = layout in ("selective", "var_c")
    inputs = dict(
        u=rnd(b, d, length),
        delta=rnd(b, d, length, scale=0.5),
        A=-torch.exp(rnd(d, n, scale=0.5)).to(dtype),
        B=rnd(b, n, length) if var_b else rnd(d, n),
        C=rnd(b, n, length) if var_c else rnd(d, n),
        D=rnd(d),
        z=rnd(b, d, length),
        delta_bias=rnd(d, scale=0.3),
    )
    for t in inputs.values():
        t.requires_grad_(requires_grad)
    return inputs


def run(inputs, backend, **kw):
    return selective_scan(**inputs, delta_softplus=True, return_last_state=True, backend=backend,
                          **kw)


def mamba_ref(u, delta, A, B, C, D, z, delta_bias, delta_softplus):
    """Independent float64 re-statement of mamba's selective_scan_ref (materialised [b,d,l,n])."""
    u, delta = u.double(), delta.double() + delta_bias.double()[:, None]
    if delta_softplus:
        delta = F.softplus(delta)
    decay = torch.exp(torch.einsum("bdl,dn->bdln", delta, A.double()))
    if B.dim() == 3:
        drive = torch.einsum("bdl,bnl,bdl->bdln", delta, B.double(), u)
    else:
        drive = torch.einsum("bdl,dn,bdl->bdln", delta, B.double(), u)
    h = u.new_zeros(u.shape[0], u.shape[1], A.shape[1])
    ys = []
    for i in range(u.shape[2]):
        h = decay[:, :, i] * h + drive[:, :, i]
        c = C.double()[:, :, i] if C.dim() == 3 else C.double()
        ys.append(torch.einsum("bdn,bn->bd", h, c) if C.dim() == 3 else (h * c).sum(-1))
    y = torch.stack(ys, 2) + u * D.double()[:, None]
    return y * F.silu(z.double()), h


# ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("layout", ["selective", "time_invariant", "var_b"])
def test_reference_matches_mamba_semantics(layout):
    inputs = make_inputs(2, 3, 4, 23, layout, torch.float64, requires_grad=False)
    y, last = run(inputs, "reference")
    y_ref, last_ref = mamba_ref(**inputs, delta_softplus=True)
    assert rel_err(y, y_ref) < 1e-12
    assert rel_err(last, last_ref) < 1e-12


def test_softplus_threshold_is_the_cuda_kernels():
    """delta + bias above 20 passes through unchanged; at or below, log1p(exp(x))."""
    pre = torch.tensor([[[19.5, 20.5, -3.0]]], dtype=torch.float64)
    delta = SCAN_MODULE.step_sizes(pre, torch.zeros(1, dtype=torch.float64), True, torch.float64)
    expected = torch.tensor([19.5 + math.log1p(math.exp(-19.5)), 20.5, math.log1p(math.exp(-3.0))],
                            dtype=torch.float64)
    assert delta[0, 0, 1] == 20.5 and delta[0, 0, 0] != 19.5
    assert torch.allclose(delta[0, 0], expected, rtol=1e-14, atol=0)


CASES = [  # (b, d, n, length, chunk_size): odd lengths, length % chunk != 0, length < chunk;
    (2, 3, 1, 1, 16),  # the kernel: channels not a multiple of its 16 lanes, several blocks,
    (2, 3, 4, 37, 8),  # length % its checkpoint interval != 0, state sizes with a fixed loop
    (1, 4, 16, 70, 16),  # (2, 4, 16) and without (1, 3, 8)
    (3, 2, 4, 64, 16),
    (2, 2, 16, 5, None),
    (2, 37, 16, 50, 16),
    (1, 20, 8, 33, 8),
    (2, 17, 2, 19, None),
    (1, 5, 3, 16, 16),
    (1, 18, 24, 40, 16),  # n > 16: the kernel's per-step dB/dC rows exceed one tile of 16
]


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("layout", ["selective", "time_invariant", "var_c"])
@pytest.mark.parametrize("case", CASES)
def test_chunked_matches_reference(case, layout, dtype, form):
    b, d, n, length, chunk = case
    inputs = make_inputs(b, d, n, length, layout, dtype, seed=length + n)
    weights = torch.randn(b, d, length, generator=torch.Generator().manual_seed(1)).to(dtype)
    results = {}
    for backend in ("reference", "chunked"):
        with chunked_form(form):
            assert cpu_scan.usable(*inputs.values()) == (form == "kernel")
            y, last = run(inputs, backend, chunk_size=chunk)
        loss = (y * weights).sum() + last.pow(2).sum()
        grads = torch.autograd.grad(loss, list(inputs.values()))
        results[backend] = (y, last, grads)
    (y0, last0, g0), (y1, last1, g1) = results["reference"], results["chunked"]
    assert y1.dtype == dtype and last1.shape == (b, d, n)
    assert rel_err(y1, y0) <= TOL[dtype]
    assert rel_err(last1, last0) <= TOL[dtype]
    for name, ga, gb in zip(INPUT_NAMES, g1, g0):
        assert ga.shape == gb.shape, name
        assert rel_err(ga, gb) <= TOL[dtype], name


@pytest.mark.parametrize("layout", ["selective", "time_invariant"])
def test_export_path_matches_reference(layout, monkeypatch):
    """The functional path taken under torch.export (segment-sum join, autograd through it)."""
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    inputs = make_inputs(2, 3, 4, 45, layout, torch.float64, seed=7)
    outs = []
    for backend in ("reference", "chunked"):
        y, last = run(inputs, backend, chunk_size=8)
        outs.append((y, last, torch.autograd.grad(y.sum() + last.sum(), list(inputs.values()))))
    (y0, last0, g0), (y1, last1, g1) = outs
    assert rel_err(y1, y0) < 1e-10 and rel_err(last1, last0) < 1e-10
    for name, ga, gb in zip(INPUT_NAMES, g1, g0):
        assert rel_err(ga, gb) < 1e-10, name


def test_chunk_joins_agree():
    gen = torch.Generator().manual_seed(0)
    total = torch.rand(2, 9, 3, generator=gen, dtype=torch.float64) * 3
    A = -torch.rand(3, 4, generator=gen, dtype=torch.float64) * 5
    local = torch.randn(2, 9, 3, 4, generator=gen, dtype=torch.float64)
    assert rel_err(SCAN_MODULE._join_chunks(total, A, local),
                   SCAN_MODULE._join_chunks_stepwise(total, A, local)) < 1e-12


def test_optional_arguments_and_plain_output():
    inputs = make_inputs(2, 3, 4, 19, "selective", torch.float64, requires_grad=False)
    core = {k: inputs[k] for k in ("u", "delta", "A", "B", "C")}
    for backend in ("reference", "chunked"):
        y = selective_scan(**core, backend=backend)  # no D, z, bias, softplus; tensor only
        assert isinstance(y, torch.Tensor) and y.shape == (2, 3, 19)
    y_ref = selective_scan(**core, backend="reference")
    assert rel_err(selective_scan(**core, backend="chunked", chunk_size=4), y_ref) < 1e-12


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("bias, softplus", [(True, True), (False, True), (True, False)])
def test_discretisation_over_its_range(form, dtype, bias, softplus):
    """dt = softplus(delta + bias) for delta + bias across [-45, 45] (both sides of the identity
    threshold at 20, and steps down to 1e-20), read off a one-step scan whose output is dt
    itself (A = 0, u = B = C = 1); every element to a few ulp, and so is its gradient."""
    delta = torch.linspace(-45, 45, 4 * 37, dtype=torch.float64).reshape(4, 37, 1).to(dtype)
    shift = torch.linspace(-0.5, 0.5, 37, dtype=dtype) if bias else None
    ones = torch.ones(4, 1, 1, dtype=dtype)
    delta.requires_grad_(True)
    if shift is not None:
        shift.requires_grad_(True)
    with chunked_form(form):
        dt = selective_scan(ones.expand(4, 37, 1).contiguous(), delta,
                            torch.zeros(37, 1, dtype=dtype), ones, ones, delta_bias=shift,
                            delta_softplus=softplus, backend="chunked")
    x = (delta + shift[:, None] if bias else delta).detach().double()
    expected = F.softplus(x) if softplus else x
    weights = torch.linspace(-1, 1, dt.numel(), dtype=dtype).reshape(dt.shape)
    grads = torch.autograd.grad((dt * weights).sum(), [delta] + ([shift] if bias else []))
    slope = torch.sigmoid(x).masked_fill(x > 20, 1.0) if softplus else torch.ones_like(x)
    rtol = 1e-13 if dtype == torch.float64 else 4e-7
    torch.testing.assert_close(dt.double(), expected, rtol=rtol, atol=0)
    torch.testing.assert_close(grads[0].double(), slope * weights.double(), rtol=rtol, atol=0)
    if bias:
        torch.testing.assert_close(grads[1].double(), (slope * weights.double()).sum((0, 2)),
                                   rtol=rtol, atol=10 * rtol)  # sums of 4 terms of size <= 1


@pytest.mark.parametrize("form", FORMS)
def test_zero_decay_keeps_the_state_exactly(form):
    """A = 0 gives decays of exp(0) = 1: a state set at the first step must survive 2,000
    steps unchanged (a decay of 1 + 1 ulp would drift by 2.4e-4 in float32)."""
    length, d = 2000, 20
    u = torch.zeros(2, d, length)
    u[:, :, 0] = 1.0
    ones = torch.ones(2, 1, length)
    inputs = dict(u=u, delta=torch.ones(2, d, length), A=torch.zeros(d, 1), B=ones, C=ones)
    with chunked_form(form):
        y = selective_scan(**{k: v.clone().requires_grad_(True) for k, v in inputs.items()},
                           backend="chunked")
    assert (y.detach() - 1).abs().max() <= 1e-6


def test_empty_inputs_never_reach_the_kernel():
    assert not cpu_scan.usable(torch.zeros(2, 0, 5), build=False)
    assert not cpu_scan.usable(torch.zeros(2, 3, 5), torch.zeros(3, 0), build=False)


@pytest.mark.parametrize("form", FORMS)
def test_gradients_without_the_gate(form):
    """No D, z, bias or softplus: the kernel's ungated path, gradients of u, delta, A, B, C."""
    inputs = make_inputs(2, 19, 16, 23, "selective", torch.float64, seed=5)
    core = {k: inputs[k] for k in ("u", "delta", "A", "B", "C")}
    grads = []
    for backend in ("reference", "chunked"):
        with chunked_form(form):
            y, last = selective_scan(**core, return_last_state=True, backend=backend)
            grads.append(torch.autograd.grad((y.sin()).sum() + last.square().sum(),
                                             list(core.values())))
    for name, ga, gb in zip(INPUT_NAMES, grads[1], grads[0]):
        assert rel_err(ga, gb) <= TOL[torch.float64], name


def test_half_precision_accumulates_in_float32():
    inputs = make_inputs(2, 4, 4, 40, "selective", torch.float32, requires_grad=False)
    y32, last32 = run(inputs, "reference")
    half = {k: v.to(torch.bfloat16) for k, v in inputs.items()}
    exact = run({k: v.float() for k, v in half.items()}, "reference")[0]
    for backend in ("reference", "chunked"):
        y, last = run(half, backend)
        assert y.dtype == torch.bfloat16 and last.dtype == torch.float32
        assert rel_err(y, exact) < 1e-2  # only the final cast to bfloat16 rounds
    assert rel_err(exact, y32) < 0.1  # sanity: bf16 inputs are close to the fp32 ones


@pytest.mark.parametrize("form", FORMS)
def test_long_sequence_strong_decay_is_finite(form):
    """Large delta * |A| over many chunks: segment-sum never forms exp(+large), the kernel's
    exp holds its floor; gradients stay finite too."""
    inputs = make_inputs(1, 2, 4, 300, "selective", torch.float32, requires_grad=False)
    inputs["delta"] = inputs["delta"].abs() * 20
    inputs["A"] = inputs["A"] * 10
    y0, last0 = run(inputs, "reference")
    for t in inputs.values():
        t.requires_grad_(True)
    with chunked_form(form):
        y1, last1 = run(inputs, "chunked", chunk_size=16)
        grads = torch.autograd.grad(y1.sum() + last1.sum(), list(inputs.values()))
    assert torch.isfinite(y1).all() and torch.isfinite(last1).all()
    assert all(torch.isfinite(g).all() for g in grads)
    assert rel_err(y1, y0) <= 1e-3


def test_shape_errors():
    inputs = make_inputs(2, 3, 4, 10, "selective", torch.float32, requires_grad=False)
    with pytest.raises(ValueError, match="B must be"):
        selective_scan(**{**inputs, "B": torch.zeros(2, 4, 9)})
    with pytest.raises(ValueError, match="unknown scan backend"):
        selective_scan(**inputs, backend="cuda")


# ----------------------------------------------------------------------------------------------
def test_backend_resolution(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.delenv("TSFM_SCAN_BACKEND", raising=False)
    assert get_default_backend() == "auto"
    assert resolve_backend("auto", cpu) == "chunked"
    monkeypatch.setattr(SCAN_MODULE, "triton_available", lambda: True)
    assert resolve_backend("auto", cuda) == "triton"
    monkeypatch.setattr(SCAN_MODULE, "triton_available", lambda: False)
    assert resolve_backend("auto", cuda) == "chunked"
    monkeypatch.setenv("TSFM_SCAN_BACKEND", "reference")
    assert resolve_backend("auto", cpu) == "reference"
    assert resolve_backend("chunked", cpu) == "chunked"  # an explicit argument wins
    with scan_backend("chunked"):  # the setter beats the environment variable
        assert resolve_backend("auto", cpu) == "chunked"
    assert resolve_backend("auto", cpu) == "reference"
    monkeypatch.setenv("TSFM_SCAN_BACKEND", "bogus")
    with pytest.raises(ValueError):
        resolve_backend("auto", cpu)
    with pytest.raises(ValueError):
        set_default_backend("bogus")


def test_global_switch_reaches_the_scan(monkeypatch):
    calls = []
    monkeypatch.setattr(SCAN_MODULE, "scan_reference", lambda *a: calls.append("ref") or (
        a[0] * 0, a[0].new_zeros(a[0].shape[0], a[0].shape[1], a[2].shape[1])))
    inputs = make_inputs(1, 2, 2, 4, "selective", torch.float32, requires_grad=False)
    with scan_backend("reference"):
        selective_scan(**inputs)
    assert calls == ["ref"]


def test_auto_steps_sequences_of_one_chunk_with_the_reference(monkeypatch):
    """Eager "auto" on CPU without the compiled kernel: the reference for a sequence no longer
    than one chunk (the chunked path would take the same steps plus padding), the chunked
    backend beyond; a named backend or the global switch is always obeyed."""
    monkeypatch.delenv("TSFM_SCAN_BACKEND", raising=False)
    monkeypatch.setenv("TSFM_CPU_KERNEL", "0")
    calls = []
    real_ref, real_chunked = SCAN_MODULE.scan_reference, SCAN_MODULE.scan_chunked
    monkeypatch.setattr(SCAN_MODULE, "scan_reference", lambda *a: calls.append("ref") or real_ref(*a))
    monkeypatch.setattr(SCAN_MODULE, "scan_chunked", lambda *a: calls.append("chunked") or real_chunked(*a))
    for length in (1, 7, 16, 17, 40):
        selective_scan(**make_inputs(1, 2, 2, length, "selective", torch.float32, requires_grad=False))
    selective_scan(**make_inputs(1, 2, 2, 40, "selective", torch.float32, requires_grad=False), chunk_size=64)
    selective_scan(**make_inputs(1, 2, 2, 7, "selective", torch.float32, requires_grad=False), backend="chunked")
    with scan_backend("chunked"):
        selective_scan(**make_inputs(1, 2, 2, 7, "selective", torch.float32, requires_grad=False))
    assert calls == ["ref", "ref", "ref", "chunked", "chunked", "ref", "chunked", "chunked"]


def test_auto_takes_the_built_kernel_even_for_one_chunk(monkeypatch):
    """The kernel has no padding or joins, so once built it beats the reference at any length."""
    if shutil.which("c++") is None:
        pytest.skip("no C++ compiler")
    monkeypatch.delenv("TSFM_SCAN_BACKEND", raising=False)
    monkeypatch.delenv("TSFM_CPU_KERNEL", raising=False)
    assert cpu_scan.extension() is not None
    calls = []
    real = cpu_scan.scan_fused
    monkeypatch.setattr(cpu_scan, "scan_fused", lambda *a: calls.append("kernel") or real(*a))
    inputs = make_inputs(1, 2, 2, 7, "selective", torch.float32, requires_grad=False)
    y = selective_scan(**inputs)
    assert calls == ["kernel"]
    assert rel_err(y, selective_scan(**inputs, backend="reference")) < 1e-5


def test_kernel_is_built_only_for_gradients(monkeypatch):
    """Inference never waits for a compiler: without gradients an unbuilt kernel is not built."""
    monkeypatch.setattr(cpu_scan, "extension", _never_built)
    x = torch.randn(1, 2, 40)
    assert not cpu_scan.usable(x, build=False)
    inputs = make_inputs(1, 2, 2, 40, "selective", torch.float32, requires_grad=False)
    y = selective_scan(**inputs, backend="chunked")  # would raise if it tried to build
    assert rel_err(y, selective_scan(**inputs, backend="reference")) < 1e-5


def _never_built():
    raise AssertionError("the kernel was built for a call without gradients")


_never_built.cache_info = lambda: type("Info", (), {"currsize": 0})()


def test_kernel_results_do_not_depend_on_threads():
    """Partial sums over channels and batch have fixed slots: bitwise equal for 1 and 2 threads."""
    if shutil.which("c++") is None:
        pytest.skip("no C++ compiler")
    inputs = make_inputs(3, 40, 16, 45, "selective", torch.float32, seed=3)
    threads = torch.get_num_threads()
    results = []
    try:
        for count in (1, 2):
            torch.set_num_threads(count)
            y, last = run(inputs, "chunked")
            results.append([y, last, *torch.autograd.grad(y.square().sum() + last.sum(),
                                                          list(inputs.values()))])
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(*results):
        assert torch.equal(a, b)


def test_kernel_switch(monkeypatch):
    x = torch.randn(1, 2, 3)
    monkeypatch.setenv("TSFM_CPU_KERNEL", "0")
    assert not cpu_scan.usable(x)
    with cpu_scan.kernel_enabled(True):
        assert cpu_scan.enabled()
    assert not cpu_scan.enabled()
    assert not cpu_scan.usable(x.to(torch.float16))


def test_default_chunk_size():
    assert [default_chunk_size(n) for n in (1, 128, 512, 2048, 10**6)] == [16, 16, 32, 64, 128]


# ----------------------------------------------------------------------------------------------
class _TinyMamba(torch.nn.Module):
    """Input-dependent delta, B, C from a projection, as in a Mamba block."""

    def __init__(self, d: int = 4, n: int = 4):
        super().__init__()
        self.n = n
        self.proj = torch.nn.Linear(d, 2 * n + d)
        self.A_log = torch.nn.Parameter(torch.log(torch.arange(1, n + 1.0)).repeat(d, 1))
        self.D = torch.nn.Parameter(torch.ones(d))
        self.dt_bias = torch.nn.Parameter(torch.rand(d))

    def forward(self, x):  # [b, d, l]
        p = self.proj(x.transpose(1, 2)).transpose(1, 2)
        B, C, dt = p[:, : self.n], p[:, self.n: 2 * self.n], p[:, 2 * self.n:]
        return selective_scan(x, dt, -torch.exp(self.A_log), B, C, self.D, x, self.dt_bias,
                              delta_softplus=True, backend="chunked", chunk_size=8)


def test_chunked_exports_to_onnx(tmp_path):
    """Dynamic batch and length: runs at another batch and a length that pads differently."""
    ort = pytest.importorskip("onnxruntime")
    from torch.export import Dim

    torch.manual_seed(0)
    model = _TinyMamba().eval()
    path = tmp_path / "scan.onnx"
    torch.onnx.export(model, (torch.randn(2, 4, 21),), str(path), dynamo=True,
                      external_data=False, input_names=["x"],
                      dynamic_shapes={"x": {0: Dim.AUTO, 2: Dim.AUTO}})
    session = ort.InferenceSession(str(path))
    x = torch.randn(3, 4, 45)
    got = session.run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        want = model(x).numpy()
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1e-4
