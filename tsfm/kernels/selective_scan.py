"""Selective scan (Mamba-1 "S6"): one signature, three backends.

Semantics follow ``mamba_ssm.ops.selective_scan_interface.selective_scan_ref``:

    delta = softplus(delta + delta_bias)            (softplus optional; identity above 20)
    h_t   = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t      (ZOH for A, Euler for B)
    y_t   = <h_t, C_t>                               (sum over the state axis n)
    out   = (y + D * u) * silu(z)                    (D and z optional)

Accumulation is float32 (float64 when the inputs are float64); ``out`` is cast back to the
dtype of ``u``; the optional last state [b, d, n] stays in the accumulation dtype.

Backends
    reference  plain loop over time; the truth for tests (float64-capable).
    chunked    CPU default and the ONNX path. Eager CPU calls run a fused C++ kernel
               (``cpu_scan``, compiled on first use; the torch form below where no compiler is
               found). In torch operations: the sequence is cut into chunks of
               length T; the T positions of a chunk are stepped through for all chunks at once
               (a fixed, L-independent number of steps), and the chunks are joined by a
               segment-sum (exp of segment sums of log-decays, never exp(+large)) in exported
               graphs, or one chunk after the other when running eagerly.
    triton     one fused GPU kernel for forward and backward (``selective_scan_triton``).

Why not the Mamba-2 quadratic (SSD) form inside a chunk: with a decay per (d, n) the T x T decay
matrix is [b, d, n, T, T] per chunk, i.e. T times the work and memory of the scan itself; the
stepped form does the minimum work and still exports to a graph whose size does not depend on L.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import math
import os
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

from tsfm.kernels import cpu_scan

BACKENDS = ("auto", "reference", "chunked", "triton")
TRACED_CHUNK_SIZE = 32  # chunked backend's chunk when the length is symbolic (torch.export / compile)
ENV_VAR = "TSFM_SCAN_BACKEND"
_default_backend: str | None = None


# ----------------------------------------------------------------------------------------------
# backend selection
# ----------------------------------------------------------------------------------------------
def set_default_backend(backend: str | None) -> str | None:
    """Force the backend used when a call says ``backend="auto"``; ``None`` clears it.

    Takes precedence over the ``TSFM_SCAN_BACKEND`` environment variable. Returns the previous
    setting so callers can restore it.
    """
    global _default_backend
    if backend is not None:
        _check_backend(backend)
    previous, _default_backend = _default_backend, backend
    return previous


def get_default_backend() -> str:
    """The backend ``"auto"`` starts from: setter, else ``$TSFM_SCAN_BACKEND``, else ``"auto"``."""
    if _default_backend is not None:
        return _default_backend
    return _check_backend(os.environ.get(ENV_VAR, "auto").strip().lower() or "auto")


@contextlib.contextmanager
def scan_backend(backend: str | None) -> Iterator[None]:
    """Context manager form of :func:`set_default_backend`."""
    previous = set_default_backend(backend)
    try:
        yield
    finally:
        set_default_backend(previous)


@functools.cache
def triton_available() -> bool:
    """Whether the ``triton`` package can be found (it is imported only when used)."""
    return importlib.util.find_spec("triton") is not None


def resolve_backend(backend: str, device: torch.device) -> str:
    """Map ``backend`` (possibly "auto") to a concrete one for tensors on ``device``.

    An explicit backend wins; "auto" consults the global switch, then picks triton for CUDA
    tensors when triton is importable and chunked otherwise.
    """
    backend = _check_backend(backend)
    if backend == "auto":
        backend = get_default_backend()
    if backend == "auto":
        return "triton" if device.type == "cuda" and triton_available() else "chunked"
    return backend


def backend_is_automatic(backend: str) -> bool:
    """Whether the backend was left to the dispatcher (neither the call nor the switch named one)."""
    return backend == "auto" and get_default_backend() == "auto"


def _fits_one_chunk(length, chunk_size: int | None) -> bool:
    """An eager scan no longer than one chunk (S-Mamba's few variate tokens): the chunked path
    would step through the same positions plus its padding. Exported graphs keep the chunked
    form, whose size does not depend on the (dynamic) length."""
    if not isinstance(length, int) or torch.compiler.is_compiling() or torch.compiler.is_exporting():
        return False
    return length <= (chunk_size or default_chunk_size(length))


def _check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown scan backend {backend!r}; expected one of {BACKENDS}")
    return backend


# ----------------------------------------------------------------------------------------------
# public entry point
# ----------------------------------------------------------------------------------------------
def selective_scan(
    u: Tensor,
    delta: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    delta_bias: Tensor | None = None,
    delta_softplus: bool = False,
    return_last_state: bool = False,
    backend: str = "auto",
    chunk_size: int | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Mamba-1 selective scan.

    Shapes: ``u, delta, z`` [b, d, l]; ``A`` [d, n] (real); ``B, C`` [b, n, l] (selective) or
    [d, n] (time-invariant); ``D, delta_bias`` [d]. Returns ``out`` [b, d, l] in ``u.dtype``, and
    ``(out, last_state [b, d, n])`` when ``return_last_state``. ``chunk_size`` only affects the
    chunked backend (default: about sqrt(l), a power of two in [16, 128]).
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    name = resolve_backend(backend, u.device)
    if name == "triton":
        from tsfm.kernels.selective_scan_triton import selective_scan_triton

        return selective_scan_triton(
            u, delta, A, B, C, D, z, delta_bias, delta_softplus, return_last_state
        )
    acc = accumulation_dtype(u.dtype)
    uf, deltaf, Af, Bf, Cf = (x.to(acc) for x in (u, delta, A, B, C))
    Df, zf, biasf = (None if x is None else x.to(acc) for x in (D, z, delta_bias))
    if name == "chunked" and cpu_scan.usable(
            uf, deltaf, Af, Bf, Cf, *(x for x in (Df, zf, biasf) if x is not None),
            build=_needs_grad(u, delta, A, B, C, D, z, delta_bias)):
        # the compiled kernel fuses the discretisation and the gate as well, as mamba_ssm's
        # kernel does; it has no padding or joins, so it serves every length
        out, last = cpu_scan.scan_fused(uf, deltaf, Af, Bf, Cf, Df, zf, biasf, delta_softplus)
    else:
        dt = step_sizes(deltaf, biasf, delta_softplus, acc)
        if name == "chunked" and backend_is_automatic(backend) and _fits_one_chunk(u.shape[-1], chunk_size):
            name = "reference"  # one chunk = the reference's steps, plus padding and joins
        if name == "reference":
            y, last = scan_reference(uf, dt, Af, Bf, Cf)
        else:
            y, last = scan_chunked(uf, dt, Af, Bf, Cf, chunk_size)
        out = gate_output(y, uf, Df, zf)
    out = out.to(u.dtype)
    return (out, last) if return_last_state else out


def selective_scan_reference(*args, **kwargs) -> Tensor | tuple[Tensor, Tensor]:
    """:func:`selective_scan` with ``backend="reference"``."""
    return selective_scan(*args, **kwargs, backend="reference")


def selective_scan_chunked(*args, **kwargs) -> Tensor | tuple[Tensor, Tensor]:
    """:func:`selective_scan` with ``backend="chunked"``."""
    return selective_scan(*args, **kwargs, backend="chunked")


# ----------------------------------------------------------------------------------------------
# pieces shared by the torch backends (the Triton kernel fuses the same steps)
# ----------------------------------------------------------------------------------------------
def accumulation_dtype(dtype: torch.dtype) -> torch.dtype:
    """float64 stays float64; everything else accumulates in float32."""
    return torch.float64 if dtype == torch.float64 else torch.float32


def step_sizes(delta: Tensor, delta_bias: Tensor | None, delta_softplus: bool,
               acc: torch.dtype) -> Tensor:
    """The step size dt in the accumulation dtype: delta + bias, then softplus (threshold 20)."""
    delta = delta.to(acc)
    if delta_bias is not None:
        delta = delta + delta_bias.to(acc)[:, None]
    if delta_softplus:
        delta = F.softplus(delta)  # beta=1, threshold=20: the CUDA kernel's rule
    return delta


def gate_output(y: Tensor, u: Tensor, D: Tensor | None, z: Tensor | None) -> Tensor:
    """``(y + D u) * silu(z)`` in the accumulation dtype."""
    if D is not None:
        y = y + u * D.to(y.dtype)[:, None]
    if z is not None:
        y = y * F.silu(z.to(y.dtype))
    return y


def _check_shapes(u, delta, A, B, C, D, z, delta_bias) -> None:
    if u.dim() != 3 or delta.shape != u.shape:
        raise ValueError(f"u and delta must be [b, d, l] and equal; got {tuple(u.shape)}, "
                         f"{tuple(delta.shape)}")
    b, d, length = u.shape
    if A.dim() != 2 or A.shape[0] != d or A.is_complex():
        raise ValueError(f"A must be real [d={d}, n]; got {tuple(A.shape)} {A.dtype}")
    n = A.shape[1]
    for name, m in (("B", B), ("C", C)):
        if tuple(m.shape) not in ((b, n, length), (d, n)):
            raise ValueError(f"{name} must be [b, n, l]={b, n, length} or [d, n]={d, n}; "
                             f"got {tuple(m.shape)}")
    for name, v in (("D", D), ("delta_bias", delta_bias)):
        if v is not None and tuple(v.shape) != (d,):
            raise ValueError(f"{name} must be [d]={d}; got {tuple(v.shape)}")
    if z is not None and z.shape != u.shape:
        raise ValueError(f"z must match u {tuple(u.shape)}; got {tuple(z.shape)}")


# ----------------------------------------------------------------------------------------------
# reference: one step per time index
# ----------------------------------------------------------------------------------------------
def scan_reference(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor
                   ) -> tuple[Tensor, Tensor]:
    """Sequential scan. Inputs already upcast, ``delta`` already discretised.

    Returns ``(y [b, d, l], h_last [b, d, n])``. Each step touches only [b, d, n] tensors and
    iterates with ``unbind`` (indexing inside the loop would make autograd quadratic in l).
    """
    batch, dim, _ = u.shape
    h = u.new_zeros(batch, dim, A.shape[1])
    steps_b = B.unbind(-1) if B.dim() == 3 else None
    steps_c = C.unbind(-1) if C.dim() == 3 else None
    ys = []
    for t, (d_t, v_t) in enumerate(zip(delta.unbind(-1), (delta * u).unbind(-1))):
        b_t = steps_b[t][:, None, :] if steps_b is not None else B
        h = torch.addcmul(v_t[..., None] * b_t, torch.exp(d_t[..., None] * A), h)
        if steps_c is not None:
            ys.append(torch.bmm(h, steps_c[t][..., None]).squeeze(-1))
        else:
            ys.append((h * C).sum(-1))
    return torch.stack(ys, -1), h


# ----------------------------------------------------------------------------------------------
# chunked: stepped inside chunks (all chunks at once), segment-sum across chunks
# ----------------------------------------------------------------------------------------------
def default_chunk_size(length: int) -> int:
    """About sqrt(length), rounded up to a power of two in [16, 128].

    Balances the T in-chunk steps against the nc chunk joins (and the [nc, nc] decay matrix of
    the exported segment-sum).
    """
    target = math.isqrt(max(int(length), 1) - 1) + 1
    return int(min(128, max(16, 1 << (target - 1).bit_length())))


def scan_chunked(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, chunk_size: int | None = None
) -> tuple[Tensor, Tensor]:
    """Chunked scan; same contract as :func:`scan_reference`.

    With ``T`` = chunk size and ``nc`` chunks: (1) step T times over [b, nc, d, n] to get every
    chunk's end state from a zero start; (2) join chunks exactly with a segment-sum over the
    [nc, nc] chunk-to-chunk decays; (3) step again from the true chunk start states and read y.
    The padding past ``l`` uses delta = 0 (decay 1, no input) so the last state survives it.

    This is the chunked backend in torch operations (eager CPU calls of :func:`selective_scan`
    take the compiled kernel of :mod:`tsfm.kernels.cpu_scan` instead, where it is built).
    Eagerly it runs as a custom autograd function whose steps work in place (no allocation
    per step), whose chunks are joined one after the other, and whose backward is the chunked
    adjoint scan; under torch.export / torch.compile the same steps run out of place and the
    join is the segment-sum, so the graph is functional and its size independent of l.
    """
    length = u.shape[-1]
    if chunk_size is None:
        chunk_size = default_chunk_size(length) if isinstance(length, int) else TRACED_CHUNK_SIZE
    if torch.compiler.is_compiling() or torch.compiler.is_exporting():
        chunks = _Chunks(u, delta, B, C, int(chunk_size))
        y, ends, _ = _chunked_forward(chunks, A, in_place=False, keep_states=False)
        return chunks.unsteps(y, length), ends[:, -1]
    return _ChunkedScan.apply(u, delta, A, B, C, int(chunk_size))


def _needs_grad(*tensors: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


class _Chunks:
    """Inputs cut into ``T`` steps of [b, nc, ...] (time inside the chunk first), zero-padded."""

    def __init__(self, u: Tensor, delta: Tensor, B: Tensor, C: Tensor, T: int):
        self.T, length = T, u.shape[-1]
        self.pad = (-length) % T
        self.nc = (length + self.pad) // T
        self.u = self.steps(u)
        self.dt = self.steps(delta)
        self.v = self.steps(delta * u)
        self.B = tuple(x[..., None, :] for x in self.steps(B)) if B.dim() == 3 else (B,) * T
        self.C = tuple(x[..., None, :] for x in self.steps(C)) if C.dim() == 3 else (C,) * T
        self.variable_b, self.variable_c = B.dim() == 3, C.dim() == 3

    def steps(self, x: Tensor) -> tuple[Tensor, ...]:  # [b, k, l] -> T x [b, nc, k]
        x = F.pad(x, (0, self.pad))
        x = x.reshape(x.shape[0], x.shape[1], self.nc, self.T).permute(3, 0, 2, 1)
        return x.contiguous().unbind(0)

    def unsteps(self, xs: list[Tensor] | tuple[Tensor, ...], length: int) -> Tensor:
        x = torch.stack(list(xs), -1)  # [b, nc, k, T]
        return x.permute(0, 2, 1, 3).reshape(x.shape[0], x.shape[2], -1)[..., :length]


def _step(h: Tensor, chunks: _Chunks, A: Tensor, t: int, work: Tensor | None,
          out: Tensor | None = None) -> Tensor:
    """``exp(dt_t A) h + v_t B_t`` for every chunk. With a ``work`` buffer it allocates
    nothing: the result goes to ``out`` (default: into ``h``)."""
    if work is None:
        return torch.addcmul(chunks.v[t][..., None] * chunks.B[t],
                             torch.exp(chunks.dt[t][..., None] * A), h)
    _decay_into(work, chunks.dt[t], A)
    out = h.mul_(work) if out is None else torch.mul(h, work, out=out)
    return out.addcmul_(chunks.v[t][..., None], chunks.B[t])


def _decay_into(work: Tensor, dt_t: Tensor, A: Tensor) -> Tensor:
    """``work <- exp(dt_t A)`` with the exponent held at or above 1 + log(smallest normal
    number): a decay below ~3e-38 (float32) is off by less than that, and exp stays off its
    underflow path, which is 10-40x slower on x86. An exponent of exactly log(tiny) is on that
    path (its result rounds into the subnormal range), so the floor sits one unit above it."""
    torch.mul(dt_t[..., None], A, out=work).clamp_min_(math.log(torch.finfo(work.dtype).tiny) + 1.0)
    return work.exp_()


def _read(h: Tensor, c_t: Tensor, variable: bool) -> Tensor:
    """``y = <h, C_t>`` over the state axis: [b, nc, d]."""
    if variable:
        return torch.matmul(h, c_t.transpose(-1, -2)).squeeze(-1)
    return (h * c_t).sum(-1)


def _chunked_forward(chunks: _Chunks, A: Tensor, in_place: bool, keep_states: bool
                     ) -> tuple[list[Tensor], Tensor, Tensor | None]:
    """Steps (1)-(3). Returns T outputs [b, nc, d], the chunk end states [b, nc, d, n] and,
    with ``keep_states``, every state [T, b, nc, d, n] (what the backward reads)."""
    T = chunks.T
    h = chunks.v[0][..., None] * chunks.B[0]  # (1) from a zero start
    work = torch.empty_like(h) if in_place else None
    for t in range(1, T):
        h = _step(h, chunks, A, t, work)
    join = _join_chunks_stepwise if in_place else _join_chunks
    ends = join(sum(chunks.dt), A, h)  # (2)
    h = torch.cat([torch.zeros_like(ends[:, :1]), ends[:, :-1]], dim=1)
    states = h.new_empty(T, *h.shape) if keep_states else None
    ys = []  # (3)
    for t in range(T):  # with keep_states, states[t] = state after step t
        h = _step(h, chunks, A, t, work, out=states[t] if keep_states else None)
        ys.append(_read(h, chunks.C[t], chunks.variable_c))
    return ys, ends, states


class _ChunkedScan(torch.autograd.Function):
    """Chunked scan with a hand-written chunked backward.

    Keeps every state ([b, d, l, n] in the accumulation dtype, as autograd would) and
    recomputes the decays; on CPU this beats recomputing the states.
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, T):
        chunks = _Chunks(u, delta, B, C, T)
        keep = any(ctx.needs_input_grad[:5])
        ys, ends, states = _chunked_forward(chunks, A, in_place=True, keep_states=keep)
        if keep:
            starts = torch.cat([torch.zeros_like(ends[:, :1]), ends[:, :-1]], dim=1)
            ctx.save_for_backward(A, states, starts)
            ctx.chunks, ctx.length = chunks, u.shape[-1]
        return chunks.unsteps(ys, u.shape[-1]), ends[:, -1]

    @staticmethod
    @once_differentiable
    def backward(ctx, dy, dlast):
        A, states, starts = ctx.saved_tensors
        grads = _chunked_backward(ctx.chunks, A, states, starts, dy, dlast, ctx.length)
        return (*grads, None)


def _chunked_backward(chunks: _Chunks, A: Tensor, states: Tensor, starts: Tensor, dy: Tensor,
                      dlast: Tensor, length: int) -> tuple[Tensor, ...]:
    """Adjoint ``g_t = C_t dy_t + exp(dt_{t+1} A) g_{t+1}`` (``g`` after the end = dlast).

    Like the forward: a local reverse pass per chunk gives ``q = exp(dt_0 A) g_0`` from a zero
    carry, a reverse segment-sum joins the chunks, and a second reverse pass forms gradients.
    With ``s_t = g_t * exp(dt_t A) * h_{t-1}`` (gradient of the log-decay):
    dA = sum s dt, d dt = sum_n s A + u sum_n g B, du = dt sum_n g B, dB = sum_d g dt u,
    dC = sum_d h dy.
    """
    T = chunks.T
    dys = chunks.steps(dy.to(A.dtype))
    work = torch.empty_like(starts)
    r = torch.zeros_like(starts)  # carry: exp(dt_{t+1} A) g_{t+1}
    for t in reversed(range(T)):
        r.addcmul_(dys[t][..., None], chunks.C[t]).mul_(_decay_into(work, chunks.dt[t], A))
    totals = sum(chunks.dt)  # join in reverse: carry into chunk c from chunks c+1 ...
    rev_totals = torch.cat([torch.zeros_like(totals[:, :1]), totals.flip(1)[:, :-1]], dim=1)
    rev_locals = torch.cat([dlast.to(A.dtype)[:, None], r.flip(1)[:, :-1]], dim=1)
    r = _join_chunks_stepwise(rev_totals, A, rev_locals).flip(1)

    s = torch.empty_like(starts)
    da = torch.zeros_like(starts)
    db = None if chunks.variable_b else torch.zeros_like(starts)
    dc = None if chunks.variable_c else torch.zeros_like(starts)
    ddt, du, db_steps, dc_steps = [None] * T, [None] * T, [None] * T, [None] * T
    for t in reversed(range(T)):
        dt_t, v_t, b_t, c_t = chunks.dt[t], chunks.v[t], chunks.B[t], chunks.C[t]
        _decay_into(work, dt_t, A)
        g = r.addcmul_(dys[t][..., None], c_t)  # g_t, in the carry's buffer
        torch.mul(g, work, out=s).mul_(states[t - 1] if t > 0 else starts)
        da.addcmul_(s, dt_t[..., None])
        gb = _read(g, b_t, chunks.variable_b)  # sum_n g B: gradient of v = dt u
        ddt[t] = s.mul_(A).sum(-1) + gb * chunks.u[t]
        du[t] = gb * dt_t
        if chunks.variable_b:
            db_steps[t] = torch.matmul(v_t[..., None, :], g).squeeze(-2)
        else:
            db.addcmul_(g, v_t[..., None])
        if chunks.variable_c:
            dc_steps[t] = torch.matmul(dys[t][..., None, :], states[t]).squeeze(-2)
        else:
            dc.addcmul_(states[t], dys[t][..., None])
        r = g.mul_(work)
    grad_b = chunks.unsteps(db_steps, length) if chunks.variable_b else db.sum((0, 1))
    grad_c = chunks.unsteps(dc_steps, length) if chunks.variable_c else dc.sum((0, 1))
    return (chunks.unsteps(du, length), chunks.unsteps(ddt, length), da.sum((0, 1)), grad_b,
            grad_c)


def _join_chunks(total: Tensor, A: Tensor, local_ends: Tensor) -> Tensor:
    """End state of every chunk from the local (zero-start) end states.

    ``total`` [b, nc, d] is the summed delta per chunk, ``local_ends`` [b, nc, d, n]. State at the
    end of chunk c is sum_{c' <= c} exp(A * sum_{k=c'+1..c} total_k) * local_ends_c'.
    """
    nc = total.shape[1]
    seg = segment_sum(total.transpose(1, 2))  # [b, d, nc, nc], 0 above the diagonal
    keep = torch.ones(nc, nc, dtype=torch.bool, device=total.device).tril()
    logw = (seg[..., None] * A[:, None, None, :]).masked_fill(~keep[..., None], float("-inf"))
    return torch.einsum("bdcen,bedn->bcdn", torch.exp(logw), local_ends)


def _join_chunks_stepwise(total: Tensor, A: Tensor, local_ends: Tensor) -> Tensor:
    """Same result as :func:`_join_chunks` by ``H_c = exp(A total_c) H_{c-1} + local_c``, one
    chunk at a time: nc cheap [b, d, n] steps instead of an [nc, nc] decay tensor. Eager only
    (its loop length depends on l, so exported graphs use the segment-sum)."""
    h, ends = None, []
    for tot, loc in zip(total.unbind(1), local_ends.unbind(1)):
        h = loc if h is None else torch.addcmul(loc, _decay_into(torch.empty_like(loc), tot, A), h)
        ends.append(h)
    return torch.stack(ends, 1)


def segment_sum(x: Tensor) -> Tensor:
    """``out[..., i, j] = sum_{k=j+1..i} x[..., k]`` for j <= i, 0 elsewhere.

    Summed directly (masked cumsum) rather than as a difference of long prefix sums, so the
    exponent of a decay loses no precision to cancellation.
    """
    n = x.shape[-1]
    strict = torch.ones(n, n, dtype=torch.bool, device=x.device).tril(-1)
    rep = x[..., :, None].expand(*x.shape, n).masked_fill(~strict, 0)
    return rep.cumsum(-2)
