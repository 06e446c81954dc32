"""Fused Triton selective scan, forward and backward (GPU; CPU only under TRITON_INTERPRET=1).

One program owns a block of channels of one batch row and walks the sequence in chunks of
``BL`` positions. Per chunk it does, in registers: bias + softplus on delta, the discretisation
``(exp(delta A), delta B u)``, an inclusive ``tl.associative_scan`` with
``(a0, b0) o (a1, b1) = (a1 a0, a1 b0 + b1)`` plus the carried state, ``y = <h, C>``, the D skip
and the silu(z) gate. Only the state at each chunk start is written out ([b, d, chunks, n]).

The backward kernel walks the chunks in reverse: it recomputes the chunk's states from the saved
chunk-start state, runs the adjoint recurrence ``g_t = C_t dy_t + exp(delta_{t+1} A) g_{t+1}``
as a reverse associative scan, and forms every gradient from ``g`` and ``h`` without storing
[b, d, l, n]. Cross-program reductions (dA, dB, dC, dD, d bias) are written per program and
summed in torch, which keeps the result deterministic.

This module imports triton at import time; ``tsfm.kernels`` only imports it when the triton
backend is requested.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl
from torch import Tensor
from torch.autograd.function import once_differentiable

from tsfm.kernels.selective_scan import accumulation_dtype

_MAX_TILE = 4096  # elements of one [BD, NP, BL] tile: keeps the backward within registers


@triton.jit
def _combine(a0, b0, a1, b1):
    return a1 * a0, a1 * b0 + b1


@triton.jit
def _softplus(x):
    # log1p(exp(x)) for x <= 20, identity above (the CUDA kernel's rule); log1p written out
    # (Kahan's trick) because exp(x) can be far below the float epsilon.
    e = tl.exp(tl.minimum(x, 20.0))
    w = 1.0 + e
    log1p = tl.where(w == 1.0, e, tl.log(w) * e / (w - 1.0))
    return tl.where(x <= 20.0, log1p, x)


@triton.jit
def _delta(delta_ptr, bias_ptr, offs_d, offs_l, mask_d, mask, L, ACC: tl.constexpr,
           HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    """Pre-activation and discretised delta for a [BD, BL] tile (0 outside the sequence)."""
    pre = tl.load(delta_ptr + offs_d[:, None] * L + offs_l[None, :], mask=mask, other=0.0).to(ACC)
    if HAS_BIAS:
        pre += tl.load(bias_ptr + offs_d, mask=mask_d, other=0.0).to(ACC)[:, None]
    if SOFTPLUS:
        dt = _softplus(pre)
    else:
        dt = pre
    return pre, tl.where(mask, dt, 0.0)


@triton.jit
def _load_bc(ptr, batch, offs_d, offs_n, offs_l, mask_dn, mask_nl, L, N,
             ACC: tl.constexpr, VARIABLE: tl.constexpr):
    """B or C as a tile broadcastable to [BD, NP, BL].

    One return after a constexpr if/else: Triton's compiler (unlike its interpreter) checks every
    return of a function against the others, and the two layouts differ in shape.
    """
    if VARIABLE:
        t = tl.load(ptr + batch * N * L + offs_n[:, None] * L + offs_l[None, :], mask=mask_nl,
                    other=0.0).to(ACC)[None, :, :]
    else:
        t = tl.load(ptr + offs_d[:, None] * N + offs_n[None, :], mask=mask_dn, other=0.0).to(ACC)[:, :, None]
    return t


@triton.jit
def _states(dt, u, a_mat, b_tile, h0):
    """States h [BD, NP, BL] of one chunk and the pieces the backward reuses."""
    decay = tl.exp(dt[:, None, :] * a_mat[:, :, None])
    x = (dt * u)[:, None, :] * b_tile
    cum, hs = tl.associative_scan((decay, x), 2, _combine)
    return hs + cum * h0[:, :, None], x


@triton.jit
def _last(t, idx, BL: tl.constexpr):
    return tl.sum(tl.where(idx[None, None, :] == BL - 1, t, 0.0), axis=2)


@triton.jit
def _first(t, idx):
    return tl.sum(tl.where(idx[None, None, :] == 0, t, 0.0), axis=2)


@triton.jit
def _fwd_kernel(u_ptr, delta_ptr, a_ptr, b_ptr, c_ptr, d_ptr, z_ptr, bias_ptr,
                out_ptr, chunk_h_ptr, last_ptr,
                L, DIM, N, N_CHUNKS,
                NP: tl.constexpr, BD: tl.constexpr, BL: tl.constexpr, ACC: tl.constexpr,
                VAR_B: tl.constexpr, VAR_C: tl.constexpr, HAS_D: tl.constexpr,
                HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    batch = tl.program_id(0)
    offs_d = tl.program_id(1) * BD + tl.arange(0, BD)
    offs_n = tl.arange(0, NP)
    idx = tl.arange(0, BL)
    mask_d = offs_d < DIM
    mask_dn = mask_d[:, None] & (offs_n < N)[None, :]
    a_mat = tl.load(a_ptr + offs_d[:, None] * N + offs_n[None, :], mask=mask_dn, other=0.0).to(ACC)
    if HAS_D:
        skip = tl.load(d_ptr + offs_d, mask=mask_d, other=0.0).to(ACC)
    row = batch * DIM * L + offs_d[:, None] * L
    h = tl.zeros([BD, NP], dtype=ACC)
    for chunk in range(0, N_CHUNKS):
        state_offs = ((batch * DIM + offs_d[:, None]) * N_CHUNKS + chunk) * N + offs_n[None, :]
        tl.store(chunk_h_ptr + state_offs, h, mask=mask_dn)
        offs_l = chunk * BL + idx
        mask = mask_d[:, None] & (offs_l < L)[None, :]
        mask_nl = (offs_n < N)[:, None] & (offs_l < L)[None, :]
        _, dt = _delta(delta_ptr + batch * DIM * L, bias_ptr, offs_d, offs_l, mask_d, mask, L,
                       ACC, HAS_BIAS, SOFTPLUS)
        u = tl.load(u_ptr + row + offs_l[None, :], mask=mask, other=0.0).to(ACC)
        b_tile = _load_bc(b_ptr, batch, offs_d, offs_n, offs_l, mask_dn, mask_nl, L, N, ACC, VAR_B)
        c_tile = _load_bc(c_ptr, batch, offs_d, offs_n, offs_l, mask_dn, mask_nl, L, N, ACC, VAR_C)
        hs, _ = _states(dt, u, a_mat, b_tile, h)
        y = tl.sum(hs * c_tile, axis=1)
        h = _last(hs, idx, BL)
        if HAS_D:
            y += skip[:, None] * u
        if HAS_Z:
            zz = tl.load(z_ptr + row + offs_l[None, :], mask=mask, other=0.0).to(ACC)
            y *= zz * tl.sigmoid(zz)
        tl.store(out_ptr + row + offs_l[None, :], y, mask=mask)
    tl.store(last_ptr + (batch * DIM + offs_d[:, None]) * N + offs_n[None, :], h, mask=mask_dn)


@triton.jit
def _bwd_kernel(u_ptr, delta_ptr, a_ptr, b_ptr, c_ptr, d_ptr, z_ptr, bias_ptr,
                chunk_h_ptr, dout_ptr, dlast_ptr,
                du_ptr, ddelta_ptr, dz_ptr, da_part_ptr, db_part_ptr, dc_part_ptr,
                dd_part_ptr, dbias_part_ptr,
                L, DIM, N, N_CHUNKS, N_DBLOCKS,
                NP: tl.constexpr, BD: tl.constexpr, BL: tl.constexpr, ACC: tl.constexpr,
                VAR_B: tl.constexpr, VAR_C: tl.constexpr, HAS_D: tl.constexpr,
                HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
    batch = tl.program_id(0)
    dblock = tl.program_id(1)
    offs_d = dblock * BD + tl.arange(0, BD)
    offs_n = tl.arange(0, NP)
    idx = tl.arange(0, BL)
    mask_d = offs_d < DIM
    mask_dn = mask_d[:, None] & (offs_n < N)[None, :]
    dn_offs = (batch * DIM + offs_d[:, None]) * N + offs_n[None, :]
    a_mat = tl.load(a_ptr + offs_d[:, None] * N + offs_n[None, :], mask=mask_dn, other=0.0).to(ACC)
    if HAS_D:
        skip = tl.load(d_ptr + offs_d, mask=mask_d, other=0.0).to(ACC)
    row = batch * DIM * L + offs_d[:, None] * L
    delta_row = delta_ptr + batch * DIM * L
    # g_next = gradient w.r.t. the state at the first position of the following chunk
    g_next = tl.load(dlast_ptr + dn_offs, mask=mask_dn, other=0.0).to(ACC)
    da_acc = tl.zeros([BD, NP], dtype=ACC)
    db_acc = tl.zeros([BD, NP], dtype=ACC)
    dc_acc = tl.zeros([BD, NP], dtype=ACC)
    dd_acc = tl.zeros([BD], dtype=ACC)
    dbias_acc = tl.zeros([BD], dtype=ACC)
    for step in range(0, N_CHUNKS):
        chunk = N_CHUNKS - 1 - step
        offs_l = chunk * BL + idx
        mask = mask_d[:, None] & (offs_l < L)[None, :]
        mask_nl = (offs_n < N)[:, None] & (offs_l < L)[None, :]
        pre, dt = _delta(delta_row, bias_ptr, offs_d, offs_l, mask_d, mask, L, ACC, HAS_BIAS,
                         SOFTPLUS)
        mask_next = mask_d[:, None] & (offs_l + 1 < L)[None, :]
        _, dt_next = _delta(delta_row, bias_ptr, offs_d, offs_l + 1, mask_d, mask_next, L, ACC,
                            HAS_BIAS, SOFTPLUS)
        u = tl.load(u_ptr + row + offs_l[None, :], mask=mask, other=0.0).to(ACC)
        dout = tl.load(dout_ptr + row + offs_l[None, :], mask=mask, other=0.0).to(ACC)
        b_tile = _load_bc(b_ptr, batch, offs_d, offs_n, offs_l, mask_dn, mask_nl, L, N, ACC, VAR_B)
        c_tile = _load_bc(c_ptr, batch, offs_d, offs_n, offs_l, mask_dn, mask_nl, L, N, ACC, VAR_C)
        state_offs = ((batch * DIM + offs_d[:, None]) * N_CHUNKS + chunk) * N + offs_n[None, :]
        h0 = tl.load(chunk_h_ptr + state_offs, mask=mask_dn, other=0.0).to(ACC)
        hs, x = _states(dt, u, a_mat, b_tile, h0)
        # output gate and skip
        dy = dout
        if HAS_Z:
            zz = tl.load(z_ptr + row + offs_l[None, :], mask=mask, other=0.0).to(ACC)
            sig = tl.sigmoid(zz)
            pre_gate = tl.sum(hs * c_tile, axis=1)
            if HAS_D:
                pre_gate += skip[:, None] * u
            dz = dout * pre_gate * sig * (1.0 + zz * (1.0 - sig))
            tl.store(dz_ptr + row + offs_l[None, :], dz, mask=mask)
            dy = dout * zz * sig
        du = tl.zeros([BD, BL], dtype=ACC)
        if HAS_D:
            dd_acc += tl.sum(dy * u, axis=1)
            du += dy * skip[:, None]
        # adjoint scan: g_t = C_t dy_t + exp(dt_{t+1} A) g_{t+1}
        decay_next = tl.exp(dt_next[:, None, :] * a_mat[:, :, None])
        cum, gs = tl.associative_scan((decay_next, c_tile * dy[:, None, :]), 2, _combine,
                                      reverse=True)
        g = gs + cum * g_next[:, :, None]
        g_next = _first(g, idx)
        # gradients; s = dLoss/d(dt*A) = g_t * exp(dt_t A) * h_{t-1} = g_t * (h_t - x_t)
        s = g * (hs - x)
        gb = tl.sum(g * b_tile, axis=1)  # dLoss / d(dt * u)
        ddt = tl.sum(s * a_mat[:, :, None], axis=1) + gb * u
        du += gb * dt
        da_acc += tl.sum(s * dt[:, None, :], axis=2)
        dtu = (dt * u)[:, None, :]
        if VAR_B:
            part = (batch * N_DBLOCKS + dblock) * N * L + offs_n[:, None] * L + offs_l[None, :]
            tl.store(db_part_ptr + part, tl.sum(g * dtu, axis=0), mask=mask_nl)
        else:
            db_acc += tl.sum(g * dtu, axis=2)
        if VAR_C:
            part = (batch * N_DBLOCKS + dblock) * N * L + offs_n[:, None] * L + offs_l[None, :]
            tl.store(dc_part_ptr + part, tl.sum(hs * dy[:, None, :], axis=0), mask=mask_nl)
        else:
            dc_acc += tl.sum(hs * dy[:, None, :], axis=2)
        if SOFTPLUS:
            ddt = ddt * tl.where(pre <= 20.0, tl.sigmoid(pre), 1.0)
        ddt = tl.where(mask, ddt, 0.0)
        dbias_acc += tl.sum(ddt, axis=1)
        tl.store(ddelta_ptr + row + offs_l[None, :], ddt, mask=mask)
        tl.store(du_ptr + row + offs_l[None, :], du, mask=mask)
    tl.store(da_part_ptr + dn_offs, da_acc, mask=mask_dn)
    if not VAR_B:
        tl.store(db_part_ptr + dn_offs, db_acc, mask=mask_dn)
    if not VAR_C:
        tl.store(dc_part_ptr + dn_offs, dc_acc, mask=mask_dn)
    tl.store(dd_part_ptr + batch * DIM + offs_d, dd_acc, mask=mask_d)
    tl.store(dbias_part_ptr + batch * DIM + offs_d, dbias_acc, mask=mask_d)


def _blocks(dim: int, n: int, length: int, block_l: int | None, block_d: int | None
            ) -> tuple[int, int, int]:
    np2 = triton.next_power_of_2(n)
    bl = block_l or min(64, triton.next_power_of_2(length))
    bd = block_d or max(1, min(triton.next_power_of_2(dim), _MAX_TILE // (np2 * bl)))
    return np2, bl, bd


def require_device(t: Tensor) -> None:
    """Triton runs CUDA tensors, or CPU tensors under the interpreter (TRITON_INTERPRET=1)."""
    if not t.is_cuda and os.environ.get("TRITON_INTERPRET", "0") != "1":
        raise RuntimeError("the triton backend needs CUDA tensors (or TRITON_INTERPRET=1 set "
                           "before triton is imported, to interpret it on CPU)")


def _tl_dtype(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _contig(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.contiguous()


class _SelectiveScanFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus, block_l, block_d):
        u, delta, A, B, C, D, z, delta_bias = map(_contig, (u, delta, A, B, C, D, z, delta_bias))
        batch, dim, length = u.shape
        n = A.shape[1]
        acc = accumulation_dtype(u.dtype)
        np2, bl, bd = _blocks(dim, n, length, block_l, block_d)
        n_chunks = triton.cdiv(length, bl)
        out = torch.empty_like(u)
        chunk_h = torch.empty(batch, dim, n_chunks, n, device=u.device, dtype=acc)
        last = torch.empty(batch, dim, n, device=u.device, dtype=acc)
        flags = _flags(B, C, D, z, delta_bias, delta_softplus)
        grid = (batch, triton.cdiv(dim, bd))
        _fwd_kernel[grid](u, delta, A, B, C, D, z, delta_bias, out, chunk_h, last,
                          length, dim, n, n_chunks, NP=np2, BD=bd, BL=bl, ACC=_tl_dtype(acc),
                          **flags)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, chunk_h)
        ctx.meta = (flags, np2, bl, bd, n_chunks)
        return out, last

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, dlast):
        u, delta, A, B, C, D, z, delta_bias, chunk_h = ctx.saved_tensors
        flags, np2, bl, bd, n_chunks = ctx.meta
        batch, dim, length = u.shape
        n = A.shape[1]
        acc = chunk_h.dtype
        dev = u.device
        n_dblocks = triton.cdiv(dim, bd)
        dout = dout.contiguous()
        dlast = torch.zeros_like(chunk_h[:, :, 0]) if dlast is None else dlast.contiguous()
        du = torch.empty(u.shape, device=dev, dtype=acc)
        ddelta = torch.empty(u.shape, device=dev, dtype=acc)
        dz = torch.empty(u.shape, device=dev, dtype=acc) if z is not None else None
        da_part = torch.empty(batch, dim, n, device=dev, dtype=acc)
        db_part = _bc_grad_buffer(B, batch, n_dblocks, dim, n, length, dev, acc)
        dc_part = _bc_grad_buffer(C, batch, n_dblocks, dim, n, length, dev, acc)
        dd_part = torch.empty(batch, dim, device=dev, dtype=acc)
        dbias_part = torch.empty(batch, dim, device=dev, dtype=acc)
        _bwd_kernel[(batch, n_dblocks)](
            u, delta, A, B, C, D, z, delta_bias, chunk_h, dout, dlast,
            du, ddelta, dz, da_part, db_part, dc_part, dd_part, dbias_part,
            length, dim, n, n_chunks, n_dblocks, NP=np2, BD=bd, BL=bl, ACC=_tl_dtype(acc),
            **flags)
        grads = (
            du.to(u.dtype), ddelta.to(delta.dtype), da_part.sum(0).to(A.dtype),
            db_part.sum(1 if B.dim() == 3 else 0).to(B.dtype),
            dc_part.sum(1 if C.dim() == 3 else 0).to(C.dtype),
            None if D is None else dd_part.sum(0).to(D.dtype),
            None if z is None else dz.to(z.dtype),
            None if delta_bias is None else dbias_part.sum(0).to(delta_bias.dtype),
        )
        return (*grads, None, None, None)


def _flags(B, C, D, z, delta_bias, delta_softplus) -> dict[str, bool]:
    return dict(VAR_B=B.dim() == 3, VAR_C=C.dim() == 3, HAS_D=D is not None,
                HAS_Z=z is not None, HAS_BIAS=delta_bias is not None,
                SOFTPLUS=bool(delta_softplus))


def _bc_grad_buffer(m: Tensor, batch, n_dblocks, dim, n, length, dev, acc) -> Tensor:
    if m.dim() == 3:  # per batch row and channel block, summed over blocks afterwards
        return torch.zeros(batch, n_dblocks, n, length, device=dev, dtype=acc)
    return torch.empty(batch, dim, n, device=dev, dtype=acc)


def selective_scan_triton(
    u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor, D: Tensor | None = None,
    z: Tensor | None = None, delta_bias: Tensor | None = None, delta_softplus: bool = False,
    return_last_state: bool = False, block_l: int | None = None, block_d: int | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Triton backend of :func:`tsfm.kernels.selective_scan` (same arguments and returns).

    ``block_l`` / ``block_d`` override the tile sizes (positions per chunk, channels per
    program); tests use tiny ones to exercise several chunks and channel blocks.
    """
    require_device(u)
    out, last = _SelectiveScanFn.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus,
                                       block_l, block_d)
    return (out, last) if return_last_state else out
