"""Triton causal convolution for the companion scan, forward and backward.

``y[r, t] = sum_{s <= t} K[r % H, t - s] x[r, s]`` over rows r of the flattened [B*H, L] input.
One program computes a block of outputs of one row and sweeps the input blocks at or before it,
gathering the Toeplitz tile of K on chip. The input gradient is the same convolution run on
time-reversed sequences; the kernel gradient ``dK[h, l] = sum_{b, t} dy[b, h, t] x[b, h, t - l]``
has its own kernel. Direct (O(L^2)) rather than FFT: simple, exact, and fast on a GPU for the
lengths SpaceTime uses. Imported only when the triton backend is requested.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd.function import once_differentiable

from tsfm.kernels.selective_scan_triton import require_device


@triton.jit
def _conv_kernel(x_ptr, k_ptr, y_ptr, L, H, BT: tl.constexpr, BS: tl.constexpr,
                 ACC: tl.constexpr):
    row = tl.program_id(0)
    offs_t = tl.program_id(1) * BT + tl.arange(0, BT)
    head = row % H
    acc = tl.zeros([BT], dtype=ACC)
    last_t = tl.program_id(1) * BT + BT - 1
    for start in range(0, last_t + 1, BS):
        offs_s = start + tl.arange(0, BS)
        x = tl.load(x_ptr + row * L + offs_s, mask=offs_s < L, other=0.0).to(ACC)
        lag = offs_t[:, None] - offs_s[None, :]
        valid = (lag >= 0) & (offs_t[:, None] < L) & (offs_s[None, :] < L)
        kern = tl.load(k_ptr + head * L + lag, mask=valid, other=0.0).to(ACC)
        acc += tl.sum(kern * x[None, :], axis=1)
    tl.store(y_ptr + row * L + offs_t, acc, mask=offs_t < L)


@triton.jit
def _kernel_grad_kernel(x_ptr, dy_ptr, dk_ptr, L, H, BATCH, BLAG: tl.constexpr,
                        BT: tl.constexpr, ACC: tl.constexpr):
    head = tl.program_id(0)
    offs_lag = tl.program_id(1) * BLAG + tl.arange(0, BLAG)
    acc = tl.zeros([BLAG], dtype=ACC)
    for batch in range(0, BATCH):
        row = batch * H + head
        for start in range(0, L, BT):
            offs_t = start + tl.arange(0, BT)
            dy = tl.load(dy_ptr + row * L + offs_t, mask=offs_t < L, other=0.0).to(ACC)
            src = offs_t[None, :] - offs_lag[:, None]
            valid = (src >= 0) & (offs_t[None, :] < L) & (offs_lag[:, None] < L)
            x = tl.load(x_ptr + row * L + src, mask=valid, other=0.0).to(ACC)
            acc += tl.sum(x * dy[None, :], axis=1)
    tl.store(dk_ptr + head * L + offs_lag, acc, mask=offs_lag < L)


def _acc(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _conv(x: Tensor, kernel: Tensor, block: int) -> Tensor:
    rows, length = x.shape
    y = torch.empty_like(x)
    grid = (rows, triton.cdiv(length, block))
    _conv_kernel[grid](x, kernel, y, length, kernel.shape[0], BT=block, BS=block,
                       ACC=_acc(x.dtype))
    return y


class _CausalConvFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, kernel, block):
        batch, heads, length = u.shape
        x = u.reshape(batch * heads, length).contiguous()
        ctx.kernel_dtype = kernel.dtype
        kernel = kernel.to(u.dtype).contiguous()
        ctx.save_for_backward(x, kernel)
        ctx.meta = (batch, heads, length, block)
        return _conv(x, kernel, block).reshape(batch, heads, length)

    @staticmethod
    @once_differentiable
    def backward(ctx, dy):
        x, kernel = ctx.saved_tensors
        batch, heads, length, block = ctx.meta
        dy = dy.reshape(batch * heads, length).contiguous()
        dx = _conv(dy.flip(-1).contiguous(), kernel, block).flip(-1)
        dk = torch.empty_like(kernel)
        grid = (heads, triton.cdiv(length, block))
        _kernel_grad_kernel[grid](x, dy, dk, length, heads, batch, BLAG=block, BT=block,
                                  ACC=_acc(x.dtype))
        return dx.reshape(batch, heads, length), dk.to(ctx.kernel_dtype), None


def causal_conv_triton(u: Tensor, kernel: Tensor, block: int | None = None) -> Tensor:
    """Triton causal convolution: ``u`` [B, H, L], ``kernel`` [H, L] -> [B, H, L]."""
    require_device(u)
    block = block or min(64, triton.next_power_of_2(u.shape[-1]))
    return _CausalConvFn.apply(u, kernel, block)
