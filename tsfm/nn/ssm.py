"""SpaceTime layers (Zhang et al., ICLR 2023; research/models.md §5) on ``tsfm.kernels.companion``.

Every layer works channels-first on ``[N, D, T]`` (N series, D model channels, T time steps), so
the convolutions run along the last axis with no transposes. All convolutions are causal: the
output at time t only sees inputs at times <= t.

* :class:`PreprocessSSM` - fixed (non-trainable) kernels: differencing of orders 0..k-1 (signed
  binomial coefficients) and moving-average residuals ``u_t - mean(u_{t-m+1..t})``. The reference
  code builds the MA kernel and then returns the identity kernel (models.md §5.4); ours returns
  the residual kernel ``delta_0 - 1/m`` over the window, as the paper describes.
* :class:`CompanionSSM` - open-loop companion SSM: learned ``a, b, c`` per kernel, ``a`` divided
  by its L1 norm (spectral radius <= 1), kernel ``K[l] = c^T A^l b`` by the fast generating-function
  algorithm, FFT causal convolution, learned skip ``D`` per channel. A kernel is shared by
  ``D / n_kernels`` channels (heads): channel ``j`` uses kernel ``j % n_kernels``.
* :class:`ClosedLoopCompanionSSM` - the decoder: state after the lag, then the closed loop
  ``x_{n+h} = (A + b k^T)^h x_n`` with outputs ``y = c^T x`` and its own next inputs ``u_hat = k^T x``.
  One normalisation everywhere: the open-loop kernel, the final state and the closed loop all use
  the same L1-normalised ``a`` and the raw ``b, c, k`` (the reference mixes normalised and raw
  ``b``/``k``; models.md §5.5).
* :class:`SpaceTimeBlock` - (preprocessing ->) companion SSM -> pre-activation GELU MLP with
  residual, plus the block skip (from the preprocessed signal when there is a preprocessing SSM).

Initialisation: ``a ~ N(0, 1)`` (then normalised), ``b, c ~ N(0, 1/d)`` so a kernel's energy
``sum_l K[l]^2`` starts near 0.5 instead of ~2000 with the reference's unit-variance ``b, c``
(which blows activations up by ~45x per layer at L = 512); ``D = 1``; the decoder's ``k = 0``, so
the closed loop starts as the stable open-loop matrix ``A`` and learns its feedback.

Kernel arithmetic runs in float32 or float64 even under autocast (bf16 matrix powers and FFTs
lose the long-memory part of the kernel).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from tsfm.kernels import (
    BACKENDS,
    causal_conv,
    closed_loop_rollout,
    companion_final_state,
    companion_kernel,
    companion_matrix,
    companion_scan,
    krylov_doubling,
    resolve_backend,
)
from tsfm.nn.decay import exempt_from_weight_decay


def _full_precision(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """Disable autocast around kernel math (a no-op, and export-friendly, when autocast is off)."""
    if torch.is_autocast_enabled(x.device.type):
        return torch.autocast(x.device.type, enabled=False)
    return contextlib.nullcontext()


def _float(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _check_backend(backend: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"unknown scan backend {backend!r}; expected one of {BACKENDS}")
    return backend


def normalise_a(a: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``a / ||a||_1`` per kernel: every companion eigenvalue then lies in the closed unit disk.

    (For |z| > 1, ``|z|^d > sum_i |a_i| |z|^i`` when ``||a||_1 <= 1``, so z is no root.)
    A near-zero ``a`` is left (almost) as is instead of being blown up.
    """
    return a / a.abs().sum(-1, keepdim=True).clamp_min(eps)


# ----------------------------------------------------------------------------------------------
# preprocessing
# ----------------------------------------------------------------------------------------------
def differencing_kernel(order: int) -> torch.Tensor:
    """``(1 - B)^order`` as a causal kernel: signed binomial coefficients, length ``order + 1``."""
    return torch.tensor([(-1) ** j * math.comb(order, j) for j in range(order + 1)], dtype=torch.float64)


def ma_residual_kernel(window: int) -> torch.Tensor:
    """``u_t - mean(u_{t-window+1..t})`` as a causal kernel of length ``window``."""
    kernel = torch.full((window,), -1.0 / window, dtype=torch.float64)
    kernel[0] += 1.0
    return kernel


def preprocess_kernels(diff_orders: int, ma_windows: Sequence[int]) -> torch.Tensor:
    """[diff_orders + len(ma_windows), max length] float64: differencing orders 0..diff_orders-1,
    then one MA residual per window, zero-padded to a common length."""
    kernels = [differencing_kernel(k) for k in range(diff_orders)] + [ma_residual_kernel(m) for m in ma_windows]
    length = max(len(k) for k in kernels)
    return torch.stack([F.pad(k, (0, length - len(k))) for k in kernels])


class PreprocessSSM(nn.Module):
    """Fixed kernels applied channel-wise: output channel j is filtered by kernel ``j // (D / n_kernels)``.

    The input is ``[N, D, T]`` (one signal per channel) or ``[N, 1, T]``: one signal that every
    channel would repeat. The latter is what SpaceTime's embedding produces, and filtering it with
    the ``n_kernels`` kernels before repeating gives the same result for ``D / n_kernels`` times
    less work. The kernels are constants rebuilt from the config, kept in float64 and cast at use
    (not a buffer, which ``module.float()`` would round before a later ``.double()``).
    """

    def __init__(self, model_dim: int, diff_orders: int, ma_windows: Sequence[int], backend: str = "auto") -> None:
        super().__init__()
        kernels = preprocess_kernels(diff_orders, ma_windows)
        if model_dim % kernels.shape[0]:
            raise ValueError(f"model_dim {model_dim} is not a multiple of the {kernels.shape[0]} preprocessing kernels")
        self.backend = _check_backend(backend)
        self.kernels = kernels
        self.model_dim = model_dim
        self.repeat = model_dim // kernels.shape[0]

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if u.shape[1] not in (1, self.model_dim):
            raise ValueError(f"expected 1 or {self.model_dim} channels, got {u.shape[1]}")
        with _full_precision(u):
            x = _float(u)
            kernel = self.kernels.to(device=x.device, dtype=x.dtype)
            if kernel.shape[-1] < x.shape[-1]:
                kernel = F.pad(kernel, (0, x.shape[-1] - kernel.shape[-1]))
            if x.shape[1] == 1:
                y = causal_conv(x.expand(-1, kernel.shape[0], -1), kernel, backend=self.backend)
                return y.repeat_interleave(self.repeat, dim=1).to(u.dtype)
            y = causal_conv(x, kernel.repeat_interleave(self.repeat, dim=0), backend=self.backend)
            return y.to(u.dtype)


# ----------------------------------------------------------------------------------------------
# companion SSMs
# ----------------------------------------------------------------------------------------------
class CompanionSSM(nn.Module):
    """Open-loop companion SSM over ``[N, D, T]``: ``y = causal_conv(u, K) + D * u``."""

    def __init__(self, model_dim: int, n_kernels: int, kernel_dim: int, backend: str = "auto",
                 skip: bool = True) -> None:
        super().__init__()
        if n_kernels < 1 or model_dim % n_kernels:
            raise ValueError(f"model_dim {model_dim} is not a multiple of n_kernels {n_kernels}")
        self.model_dim, self.n_kernels, self.kernel_dim = model_dim, n_kernels, kernel_dim
        self.backend = _check_backend(backend)
        self.a = nn.Parameter(torch.randn(n_kernels, kernel_dim))
        exempt_from_weight_decay(self.a)  # only a / ||a||_1 is used: decaying a's scale would only raise its step size
        self.b = nn.Parameter(torch.randn(n_kernels, kernel_dim) / math.sqrt(kernel_dim))
        self.c = nn.Parameter(torch.randn(n_kernels, kernel_dim) / math.sqrt(kernel_dim))
        self.D = nn.Parameter(torch.ones(model_dim)) if skip else None

    @property
    def heads(self) -> int:
        return self.model_dim // self.n_kernels

    def per_channel(self, p: torch.Tensor) -> torch.Tensor:
        """[n_kernels, ...] -> [D, ...]: channel j takes row ``j % n_kernels``."""
        return p if self.heads == 1 else p.repeat(self.heads, *([1] * (p.dim() - 1)))

    def kernel(self, length: int) -> torch.Tensor:
        """``K[l] = c^T A^l b``, l < length, per kernel: [n_kernels, length]."""
        with _full_precision(self.a):
            return companion_kernel(normalise_a(_float(self.a)), _float(self.b), _float(self.c), length,
                                    backend=self.backend)

    def scan(self, u: torch.Tensor) -> torch.Tensor:
        """``causal_conv(u, K)`` for ``u`` [N, D, T], without the skip.

        reference: the recurrence, step by step (the truth); otherwise the fast kernel and an FFT
        (or Triton) causal convolution.
        """
        with _full_precision(u):
            x, a, b, c = _float(u), normalise_a(_float(self.a)), _float(self.b), _float(self.c)
            if resolve_backend(self.backend, u.device) == "reference":
                a, b, c = (self.per_channel(t) for t in (a, b, c))
                y = companion_scan(x, a, b, c, backend="reference")
            else:
                kernel = companion_kernel(a, b, c, x.shape[-1], backend=self.backend)
                y = causal_conv(x, self.per_channel(kernel), backend=self.backend)
            return y.to(u.dtype)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        y = self.scan(u)
        return y if self.D is None else y + self.D[:, None] * u


class ClosedLoopCompanionSSM(CompanionSSM):
    """Decoder SSM: one kernel per channel, no skip; open loop for training, closed loop to forecast.

    Time convention: the state after reading ``u_t`` is ``x_t`` and its readout ``c^T x_t``
    is the layer's output at t, which the model maps to the value at ``t + 1``. The closed loop
    takes over after the lag (``u_0 .. u_{n-1}``): step ``h = 1 .. H`` reads
    ``x = (A + b k^T)^(h-1) x_{n-1}``, so step 1 equals the open-loop output at the last lag step,
    and ``u_hat_h = k^T x`` is the layer's guess of its next input ``u_{n-1+h}``.
    """

    def __init__(self, model_dim: int, kernel_dim: int, backend: str = "auto") -> None:
        super().__init__(model_dim, model_dim, kernel_dim, backend=backend, skip=False)
        self.k = nn.Parameter(torch.zeros(model_dim, kernel_dim))

    def final_state(self, u: torch.Tensor) -> torch.Tensor:
        """State after the lag, ``x_{n-1} = sum_j A^(n-1-j) b u_j``: [N, D, d]."""
        with _full_precision(u):
            return companion_final_state(_float(u), normalise_a(_float(self.a)), _float(self.b), backend=self.backend)

    def rollout(self, state: torch.Tensor, horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Closed loop from ``state`` [N, D, d]: outputs ``y`` and next inputs ``u_hat``, [N, D, horizon].

        reference: ``closed_loop_rollout`` steps every state through ``M = A + b k^T`` (the truth,
        O(N D d^2 H)). Otherwise the dual form ``y_h = x^T (M^T)^h c``, ``u_hat_h = x^T (M^T)^h k``:
        the readout vectors ``(M^T)^h [c, k]`` come from ``krylov_doubling`` once per channel
        (independent of the batch), then one contraction with the states, O(D d^2 H + N D d H):
        ~60x less work than rolling 128 x 128 states at d = 64.
        """
        if horizon < 1:
            raise ValueError(f"horizon must be >= 1, got {horizon}")
        with _full_precision(state):
            a, b, c, k = normalise_a(_float(self.a)), _float(self.b), _float(self.c), _float(self.k)
            if resolve_backend(self.backend, state.device) != "reference":
                closed = companion_matrix(a) + b[:, :, None] * k[:, None, :]
                readout = krylov_doubling(closed.transpose(1, 2), torch.stack([c, k], -1), horizon)
                y, u_hat = torch.einsum("ndj,djhr->rndh", _float(state), readout).unbind(0)
                return y.to(state.dtype), u_hat.to(state.dtype)
            y0, u0 = (state * c).sum(-1, keepdim=True), (state * k).sum(-1, keepdim=True)
            if horizon == 1:
                return y0, u0
            y, u_hat = closed_loop_rollout(state, a, b, c, k, horizon - 1, backend="reference")
            return torch.cat([y0, y], dim=-1), torch.cat([u0, u_hat], dim=-1)

    def forecast(self, u: torch.Tensor, horizon: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Read the lag ``u`` [N, D, n] and roll the closed loop ``horizon`` steps."""
        return self.rollout(self.final_state(u), horizon)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """Open loop (teacher forcing): the output after each input, [N, D, T]."""
        return self.scan(u)


# ----------------------------------------------------------------------------------------------
# blocks
# ----------------------------------------------------------------------------------------------
class ChannelMLP(nn.Module):
    """Pre-activation MLP over the channel axis of ``[N, D, T]``: ``dropout(W gelu(x) + bias)``."""

    def __init__(self, model_dim: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.linear = nn.Linear(model_dim, model_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(torch.matmul(self.linear.weight, F.gelu(x)) + self.linear.bias[:, None])


class SpaceTimeBlock(nn.Module):
    """``z = pre(x)`` (or ``x``); ``h = ssm(z)``; ``h = h + mlp(h)``; returns ``h + z``."""

    def __init__(self, model_dim: int, n_kernels: int, kernel_dim: int, dropout: float = 0.0,
                 preprocess: PreprocessSSM | None = None, backend: str = "auto") -> None:
        super().__init__()
        self.preprocess = preprocess
        self.ssm = CompanionSSM(model_dim, n_kernels, kernel_dim, backend=backend)
        self.mlp = ChannelMLP(model_dim, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x if self.preprocess is None else self.preprocess(x)
        h = self.ssm(z)
        return h + self.mlp(h) + z
