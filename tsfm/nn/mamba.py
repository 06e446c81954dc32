"""The Mamba-1 block (state-spaces/mamba ``mamba_simple.Mamba``) on our own selective scan.

``[B, L, D] -> [B, L, D]``: in_proj to ``2·d_inner`` (x, z) -> causal depthwise conv1d over L
-> SiLU -> x_proj to (dt_low, B, C) -> dt_proj (its bias enters the scan as ``delta_bias`` with
softplus) -> selective scan with ``A = -exp(A_log)``, skip ``D`` and gate ``silu(z)`` -> out_proj.
Initialisation follows mamba: S4D-real ``A_log = log(1..N)``, ``D = 1``, ``dt_proj.bias =
softplus⁻¹(dt)`` with ``dt`` log-uniform in [dt_min, dt_max] (floored), ``dt_proj.weight ~
U(±dt_rank^-½)``. The scan runs through ``tsfm.kernels.selective_scan`` so the same weights run
on the reference loop, the pure-torch chunked scan (CPU, ONNX) or the Triton kernel (models.md §4).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tsfm.kernels import BACKENDS, selective_scan
from tsfm.nn.decay import exempt_from_weight_decay


class MambaBlock(nn.Module):
    """One Mamba mixer over the sequence axis of ``[B, L, d_model]``; causal in L."""

    def __init__(
        self,
        d_model: int,
        d_state: int = 16,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | None = None,
        dt_min: float = 1e-3,
        dt_max: float = 0.1,
        dt_init_floor: float = 1e-4,
        conv_bias: bool = True,
        bias: bool = False,
        scan_backend: str = "auto",
        scan_chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        if scan_backend not in BACKENDS:
            raise ValueError(f"unknown scan backend {scan_backend!r}; expected one of {BACKENDS}")
        self.d_inner = expand * d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.dt_rank = dt_rank if dt_rank is not None else math.ceil(d_model / 16)
        self.scan_backend = scan_backend
        self.scan_chunk_size = scan_chunk_size  # chunked backend only; None = the kernel's default
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=bias)
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, d_conv, groups=self.d_inner, bias=conv_bias)
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(self.d_inner, 1))
        exempt_from_weight_decay(self.A_log)  # decaying A_log would pull every state towards one timescale
        self.D = nn.Parameter(torch.ones(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=bias)
        self._init_dt(dt_min, dt_max, dt_init_floor)

    @torch.no_grad()
    def _init_dt(self, dt_min: float, dt_max: float, floor: float) -> None:
        """mamba's dt init: the softplus of the bias starts log-uniform in [dt_min, dt_max]."""
        bound = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -bound, bound)
        u = torch.rand(self.d_inner)
        dt = torch.exp(u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)).clamp(min=floor)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus⁻¹(dt)

    def causal_conv(self, x: torch.Tensor) -> torch.Tensor:
        """Depthwise conv over ``x [B, d_inner, L]`` padded on the left only: output t sees inputs ≤ t."""
        return self.conv1d(F.pad(x, (self.d_conv - 1, 0)))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        x, z = self.in_proj(hidden).transpose(1, 2).chunk(2, dim=1)  # each [B, d_inner, L]
        x = F.silu(self.causal_conv(x))
        dt_low, B, C = self.x_proj(x.transpose(1, 2)).split([self.dt_rank, self.d_state, self.d_state], dim=-1)
        delta = (dt_low @ self.dt_proj.weight.T).transpose(1, 2)  # [B, d_inner, L]; bias added in the scan
        y = selective_scan(
            x, delta, -torch.exp(self.A_log.float()), B.transpose(1, 2), C.transpose(1, 2), self.D.float(),
            z=z, delta_bias=self.dt_proj.bias.float(), delta_softplus=True, backend=self.scan_backend,
            chunk_size=self.scan_chunk_size,
        )
        return self.out_proj(y.transpose(1, 2))
