"""Companion-matrix SSM (SpaceTime): kernel, scan and closed-loop rollout.

Per channel h the state matrix is the companion matrix ``A = S + a e_d^T``: ``S`` shifts down
(ones on the sub-diagonal, ``A[i+1, i] = 1``) and the last column is ``a``. With ``a, b, c`` of
shape [H, d] the open-loop layer is

    x_t = A x_{t-1} + b u_t,   y_t = c^T x_t (+ D u_t),   i.e.  y = causal_conv(u, K),
    K[l] = c^T A^l b,  l = 0 .. L-1.

Backends (same names as the selective scan; "auto" resolves the same way):
    reference  dense matrix powers / a plain loop over time (float64-capable: the truth);
    chunked    K by the O((d + L) log(d + L)) generating-function algorithm + FFT convolution
               (CPU default, exports to ONNX);
    triton     the same K + a Triton causal-convolution kernel (forward and backward).

Normalising ``a`` (SpaceTime divides it by its L1 norm) is the layer's business, not these
functions': the kernels take the matrices as given.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from tsfm.kernels.selective_scan import backend_is_automatic, resolve_backend


def _matvec(A: Tensor, x: Tensor) -> Tensor:
    """``A x`` per channel: ``A`` [H, d, d], ``x`` [..., H, d] (no copy of A per batch row)."""
    return torch.einsum("hij,...hj->...hi", A, x)


def companion_matrix(a: Tensor) -> Tensor:
    """Dense ``A = S + a e_d^T`` of shape [H, d, d] from ``a`` [H, d]."""
    d = a.shape[-1]
    shift = torch.diag(a.new_ones(d - 1), diagonal=-1)[:, :-1]  # columns 0 .. d-2 of S
    return torch.cat([shift.expand(*a.shape[:-1], d, d - 1), a[..., None]], dim=-1)


# ----------------------------------------------------------------------------------------------
# convolution kernel K[l] = c^T A^l b
# ----------------------------------------------------------------------------------------------
def companion_kernel(a: Tensor, b: Tensor, c: Tensor, length: int, backend: str = "auto",
                     c_tilde: bool = False) -> Tensor:
    """Kernel ``K`` [H, length] of the companion SSM with ``a, b, c`` [H, d].

    ``backend="reference"`` multiplies by the dense matrix ``length`` times (O(L d^2)); any
    other backend uses :func:`companion_kernel_fast`. ``c_tilde=True`` means ``c`` already is
    ``c~ = (I - A^L)^T c`` (SpaceTime's trick to learn it directly; only the fast path then
    skips the O(d^3 log L) matrix power; such a ``c~`` is defined on the unit circle).
    """
    name = resolve_backend(backend, a.device)
    if name == "reference":
        if c_tilde:
            raise ValueError("the reference kernel needs c itself, not c_tilde")
        return companion_kernel_reference(a, b, c, length)
    return companion_kernel_fast(a, b, c, length, c_tilde=c_tilde)


def companion_kernel_reference(a: Tensor, b: Tensor, c: Tensor, length: int) -> Tensor:
    """``K[l] = c^T A^l b`` by repeated dense matrix-vector products (the truth)."""
    A = companion_matrix(a)
    x, out = b, []
    for _ in range(length):
        out.append((c * x).sum(-1))
        x = _matvec(A, x)
    return torch.stack(out, -1)


def companion_c_tilde(a: Tensor, c: Tensor, length: int, radius: float = 1.0) -> Tensor:
    """``c~ = c - radius^L (A^L)^T c`` (dense matrix power by repeated squaring)."""
    power = torch.linalg.matrix_power(companion_matrix(a), length)
    return c - radius**length * (power.transpose(-1, -2) @ c[..., None]).squeeze(-1)


def companion_kernel_fast(a: Tensor, b: Tensor, c: Tensor, length: int,
                          c_tilde: bool = False) -> Tensor:
    """SpaceTime's kernel algorithm (models.md §5.3), on a circle of radius r <= 1.

    For z with z^L = r^L the truncated generating function of K is
    ``sum_{l<L} K[l] z^l = c~^T (I - zA)^{-1} b`` with ``c~ = (I - r^L A^L)^T c``. With
    ``M = I - zS`` (S nilpotent) Sherman-Morrison gives

        c~^T (I - zA)^{-1} b = Q(c~, b) + z Q(c~, a) Q(e_d, b) / (1 - z Q(e_d, a)),
        Q(u, v)(z) = u^T M^{-1} v = sum_{j<d} z^j sum_i u_i v_{i-j},

    so each Q is a length-2d FFT correlation, scaled by r^j, folded modulo L, and an rfft of
    length L; K[l] is the inverse rfft divided by r^l. O((d + L) log(d + L)) given ``c~``.

    On the unit circle (r = 1, the paper's choice) the division is 0/0 whenever an eigenvalue of
    A is an L-th root of unity, e.g. lambda = 1 for any ``a >= 0`` with L1 norm 1 (SpaceTime's
    normalisation). We therefore use r = 2^(-1/L): for spectral radius <= 1 the denominator stays
    >= 1 - r away from zero and dividing by r^l amplifies errors at most twice. A learned
    ``c_tilde`` is defined on the unit circle, so that path keeps r = 1.
    """
    radius = 1.0 if c_tilde else 0.5 ** (1.0 / length)
    if not c_tilde:
        c = companion_c_tilde(a, c, length, radius)
    e_d = torch.zeros_like(a)
    e_d[..., -1] = 1
    q_cb, q_ca, q_eb, q_ea = (_q_on_circle(u, v, length, radius) for u, v in
                              ((c, b), (c, a), (e_d, b), (e_d, a)))
    k = torch.arange(length // 2 + 1, device=a.device, dtype=a.dtype)
    z = torch.polar(torch.full_like(k, radius), -2 * math.pi * k / length)
    spectrum = q_cb + z * q_ca * q_eb / (1 - z * q_ea)
    ell = torch.arange(length, device=a.device, dtype=a.dtype)
    return torch.fft.irfft(spectrum, n=length) * radius ** (-ell)


def _q_on_circle(u: Tensor, v: Tensor, length: int, radius: float) -> Tensor:
    """``Q(u, v)`` at z_k = r exp(-2 pi i k / L), k = 0 .. L//2: [H, L//2 + 1] complex."""
    d = u.shape[-1]
    spec = torch.fft.rfft(u, n=2 * d) * torch.fft.rfft(v, n=2 * d).conj()
    coeffs = torch.fft.irfft(spec, n=2 * d)[..., :d]  # r_j = sum_i u_i v_{i-j}
    coeffs = coeffs * radius ** torch.arange(d, device=u.device, dtype=u.dtype)
    folds = -(-d // length)  # fold omega^j with omega^L = 1
    coeffs = torch.nn.functional.pad(coeffs, (0, folds * length - d))
    coeffs = coeffs.reshape(*coeffs.shape[:-1], folds, length).sum(-2)
    return torch.fft.rfft(coeffs, n=length)


# ----------------------------------------------------------------------------------------------
# open-loop scan y = causal_conv(u, K) (+ D u)
# ----------------------------------------------------------------------------------------------
def companion_scan(u: Tensor, a: Tensor, b: Tensor, c: Tensor, D: Tensor | None = None,
                   backend: str = "auto") -> Tensor:
    """Companion SSM over ``u`` [B, H, L]; ``a, b, c`` [H, d]; ``D`` [H]; returns [B, H, L].

    reference: the recurrence ``x_t = A x_{t-1} + b u_t`` step by step; chunked: fast kernel +
    FFT convolution; triton: fast kernel + Triton causal convolution.
    """
    name = resolve_backend(backend, u.device)
    if name == "reference":
        y = companion_recurrence(u, a, b, c)
    else:
        kernel = companion_kernel_fast(a, b, c, u.shape[-1])
        y = causal_conv(u, kernel, backend=name)
    if D is not None:
        y = y + D[:, None] * u
    return y


def companion_recurrence(u: Tensor, a: Tensor, b: Tensor, c: Tensor) -> Tensor:
    """``y_t = c^T x_t`` with ``x_t = A x_{t-1} + b u_t``, ``x_{-1} = 0``, one step at a time."""
    A = companion_matrix(a)
    x = u.new_zeros(*u.shape[:-1], a.shape[-1])
    ys = []
    for u_t in u.unbind(-1):
        x = torch.addcmul(_matvec(A, x), b, u_t[..., None])
        ys.append((x * c).sum(-1))
    return torch.stack(ys, -1)


# Longest sequence for which "auto" picks the Triton convolution on a GPU. On an H200 (forward +
# backward, 16 x 128 channels; benchmarks/results/scan_gpu.md) it beat the FFT at L=512 (8.0 vs
# 9.2 ms) and lost at L=2048 (18.2 vs 7.9 ms); 1024 lies between the two measured lengths.
TRITON_CONV_MAX_AUTO_LENGTH = 1024


def causal_conv(u: Tensor, kernel: Tensor, backend: str = "auto") -> Tensor:
    """``y[..., t] = sum_{s <= t} kernel[..., t - s] u[..., s]`` for ``u`` [B, H, L], ``kernel``
    [H, >= L]. FFT of size 2L (chunked/reference) or the Triton kernel (triton)."""
    length = u.shape[-1]
    kernel = kernel[..., :length]
    name = resolve_backend(backend, u.device)
    if name == "triton" and backend_is_automatic(backend) and length > TRITON_CONV_MAX_AUTO_LENGTH:
        name = "chunked"  # the direct O(L^2) kernel loses to the FFT on long sequences
    if name == "triton":
        from tsfm.kernels.companion_triton import causal_conv_triton

        return causal_conv_triton(u, kernel)
    n = 2 * length
    spec = torch.fft.rfft(u, n=n) * torch.fft.rfft(kernel, n=n)
    return torch.fft.irfft(spec, n=n)[..., :length]


# ----------------------------------------------------------------------------------------------
# state after the lag, and closed-loop rollout
# ----------------------------------------------------------------------------------------------
def companion_final_state(u: Tensor, a: Tensor, b: Tensor, backend: str = "auto") -> Tensor:
    """State ``x_{L-1} = sum_j A^{L-1-j} b u_j`` [B, H, d] after reading ``u`` [B, H, L].

    reference: the recurrence; otherwise the Krylov matrix [A^l b] (log-depth doubling) contracted
    with the reversed input.
    """
    if resolve_backend(backend, u.device) == "reference":
        A = companion_matrix(a)
        x = u.new_zeros(*u.shape[:-1], a.shape[-1])
        for u_t in u.unbind(-1):
            x = torch.addcmul(_matvec(A, x), b, u_t[..., None])
        return x
    krylov = krylov_doubling(companion_matrix(a), b[..., None], u.shape[-1])  # [H, d, L, 1]
    return torch.einsum("hdl,bhl->bhd", krylov[..., 0], u.flip(-1))


def krylov_doubling(A: Tensor, x: Tensor, count: int) -> Tensor:
    """``out[..., :, j, :] = A^j x`` for j < count, with log2(count) matrix products.

    ``A`` [..., d, d], ``x`` [..., d, k] (k columns rolled together); returns [..., d, count, k].
    Each round appends ``A^m @ (columns so far)`` and squares ``A^m``; columns are kept as one
    [d, m * k] matrix so every product is a plain batched matmul.
    """
    k = x.shape[-1]
    cols, power = x, A
    while cols.shape[-1] < count * k:
        cols = torch.cat([cols, power @ cols], dim=-1)
        if cols.shape[-1] < count * k:
            power = power @ power
    return cols[..., : count * k].reshape(*cols.shape[:-1], count, k)


def closed_loop_rollout(x0: Tensor, a: Tensor, b: Tensor, c: Tensor, k: Tensor, horizon: int,
                        backend: str = "auto") -> tuple[Tensor, Tensor]:
    """Roll the closed loop ``x_{n+h} = (A + b k^T)^h x_n`` for h = 1 .. horizon.

    ``x0`` [B, H, d] is the state after the lag; ``a, b, c, k`` [H, d]. Returns ``y = c^T x``
    and the layer's own next inputs ``u_hat = k^T x``, both [B, H, horizon]. reference: one
    matrix-vector product per step; otherwise Krylov doubling (log2(horizon) matrix products).
    """
    closed = companion_matrix(a) + b[..., :, None] * k[..., None, :]
    if resolve_backend(backend, x0.device) == "reference":
        x, states = x0, []
        for _ in range(horizon):
            x = _matvec(closed, x)
            states.append(x)
        xs = torch.stack(states, -1).permute(1, 2, 3, 0)  # [H, d, horizon, B]
    else:
        first = _matvec(closed, x0).permute(1, 2, 0)  # x_{n+1} for every batch row: [H, d, B]
        xs = krylov_doubling(closed, first, horizon)
    return torch.einsum("hdtb,hd->bht", xs, c), torch.einsum("hdtb,hd->bht", xs, k)
