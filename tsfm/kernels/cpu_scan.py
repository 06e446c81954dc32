"""The chunked selective scan's compiled CPU kernel (``csrc/selective_scan_cpu.cpp``).

Whole-tensor torch operations cannot take a selective scan much below the reference on a CPU:
every operation makes one pass over the [b, d, l, n] states and a forward+backward needs about a
dozen of them (benchmarks/results/scan.md). The fused kernel makes none: a task walks one batch
row and 16 channels (the lanes of one vector) through time with the states in registers,
computes exp(dt A) where it is used, and keeps the state every ``CHECKPOINT_EVERY`` steps, from
which the backward recomputes one chunk of states at a time.

It is compiled with ``torch.utils.cpp_extension`` on the first call that needs gradients
(training, where the build's minute pays off; inference uses it only once it is built) and
cached under ``$TORCH_EXTENSIONS_DIR`` (default ``~/.cache/torch_extensions``), one build per
instruction set. Without a C++ compiler or ninja, with ``TSFM_CPU_KERNEL=0``, or under
torch.export / torch.compile / tracing, the chunked backend runs its torch-operation form, with
the same numerics within tolerance.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

CHECKPOINT_EVERY = 32  # steps between the states the forward keeps for the backward
LANES = 16  # channels per kernel task (csrc: W)
ENV_VAR = "TSFM_CPU_KERNEL"
SOURCE = Path(__file__).with_name("csrc") / "selective_scan_cpu.cpp"
# instruction sets by torch's CPU capability: portable across the machines that share a cache
ARCH_FLAGS = {
    "AVX512": ["-mavx512f", "-mavx512dq", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma"],
    "AVX2": ["-mavx2", "-mfma"],
}
_enabled: bool | None = None
log = logging.getLogger(__name__)


def set_enabled(enabled: bool | None) -> bool | None:
    """Allow (True) or forbid (False) the compiled kernel; ``None`` returns to the environment
    variable ``TSFM_CPU_KERNEL`` (default: allowed). Returns the previous setting."""
    global _enabled
    previous, _enabled = _enabled, enabled
    return previous


@contextlib.contextmanager
def kernel_enabled(enabled: bool | None) -> Iterator[None]:
    """Context manager form of :func:`set_enabled`."""
    previous = set_enabled(enabled)
    try:
        yield
    finally:
        set_enabled(previous)


def enabled() -> bool:
    if _enabled is not None:
        return _enabled
    return os.environ.get(ENV_VAR, "1").strip().lower() not in ("0", "false", "no", "off")


def usable(*tensors: Tensor, build: bool = True) -> bool:
    """Whether this call can run on the compiled kernel: allowed, eager (not exporting, compiling
    or tracing), CPU float32/float64, and built: already, or now when ``build``."""
    if not enabled() or torch.compiler.is_compiling() or torch.compiler.is_exporting():
        return False
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return False
    if any(t.device.type != "cpu" or t.dtype not in (torch.float32, torch.float64)
           or t.numel() == 0 for t in tensors):
        return False
    if not build and extension.cache_info().currsize == 0:
        return False
    return extension() is not None


@functools.cache
def extension() -> ModuleType | None:
    """Build (or load the cached build of) the extension; ``None`` with one warning if it fails."""
    if shutil.which(os.environ.get("CXX", "c++")) is None:
        warnings.warn("tsfm: no C++ compiler found; the chunked scan runs on torch operations "
                      "(slower on CPU)", RuntimeWarning, stacklevel=3)
        return None
    from torch.utils import cpp_extension

    if not cpp_extension.is_ninja_available():
        warnings.warn("tsfm: ninja not found (pip install ninja); the chunked scan runs on torch "
                      "operations (slower on CPU)", RuntimeWarning, stacklevel=3)
        return None
    capability = torch.backends.cpu.get_cpu_capability()
    arch = ARCH_FLAGS.get(capability, [])
    digest = hashlib.sha1(SOURCE.read_bytes() + " ".join(arch).encode()).hexdigest()[:10]
    log.info("building the CPU scan kernel (once per machine, about a minute; cached under "
             "$TORCH_EXTENSIONS_DIR)")
    try:
        return cpp_extension.load(
            name=f"tsfm_selective_scan_cpu_{capability.lower()}_{digest}",
            sources=[str(SOURCE)],
            extra_cflags=["-O3", "-fopenmp", *arch],
            extra_ldflags=["-fopenmp"],
            verbose=False,
        )
    except Exception as err:  # a broken toolchain must not break forecasting
        warnings.warn(f"tsfm: could not build the CPU scan kernel ({type(err).__name__}: "
                      f"{str(err).splitlines()[0] if str(err) else ''}); the chunked scan runs "
                      "on torch operations (slower on CPU)", RuntimeWarning, stacklevel=3)
        return None


def scan_fused(u: Tensor, delta: Tensor, A: Tensor, B: Tensor, C: Tensor,
               D: Tensor | None = None, z: Tensor | None = None,
               delta_bias: Tensor | None = None, delta_softplus: bool = False
               ) -> tuple[Tensor, Tensor]:
    """Inputs upcast; ``delta`` raw: the kernel forms softplus(delta + delta_bias) itself.
    Returns ``((y + D u) * silu(z) [b, d, l], h_last [b, d, n])``; without D and z, ``y`` and
    the last state as ``scan_reference``."""
    return _FusedScan.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


def _per_channel(x: Tensor, padded: int) -> Tensor:
    """[d, n] -> [n, dp] (A, or a time-invariant B or C)."""
    return F.pad(x, (0, 0, 0, padded - x.shape[0])).t().contiguous()


def _state_blocks(h: Tensor, padded: int) -> Tensor:
    """[b, d, n] -> [b, blocks, n, LANES] (the kernel's layout of a state)."""
    b, d, n = h.shape
    h = F.pad(h, (0, 0, 0, padded - d)).reshape(b, padded // LANES, LANES, n)
    return h.transpose(2, 3).contiguous()


class _FusedScan(torch.autograd.Function):
    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        ext = extension()
        d = u.shape[1]
        padded = -(-d // LANES) * LANES
        keep = any(ctx.needs_input_grad)
        none = u.new_empty(0)
        args = (u.contiguous(), delta.contiguous(), _per_channel(A, padded),
                B.transpose(1, 2).contiguous() if B.dim() == 3 else _per_channel(B, padded),
                C.transpose(1, 2).contiguous() if C.dim() == 3 else _per_channel(C, padded),
                none if D is None else F.pad(D, (0, padded - d)).contiguous(),
                none if z is None else z.contiguous(),
                none if delta_bias is None else F.pad(delta_bias, (0, padded - d)).contiguous())
        out, last, checkpoints = ext.forward(*args, bool(delta_softplus), CHECKPOINT_EVERY, keep)
        if keep:
            ctx.save_for_backward(*args, checkpoints)
            ctx.delta_softplus, ctx.checkpoint_every = bool(delta_softplus), CHECKPOINT_EVERY
            ctx.set_materialize_grads(False)  # an unused output's gradient arrives as None
        b, n = u.shape[0], A.shape[1]
        return out, last.transpose(2, 3).reshape(b, padded, n)[:, :d]

    @staticmethod
    @once_differentiable
    def backward(ctx, dout, dlast):
        u, delta, A, B, C, D, z, delta_bias, checkpoints = ctx.saved_tensors
        d, padded = u.shape[1], A.shape[1]
        dout = torch.zeros_like(u) if dout is None else dout.to(u.dtype).contiguous()
        dlast = u.new_empty(0) if dlast is None else _state_blocks(dlast.to(u.dtype), padded)
        du, ddelta, dA, dB, dC, dz, dD, dbias = extension().backward(
            u, delta, A, B, C, D, z, delta_bias, ctx.delta_softplus, checkpoints, dout, dlast,
            ctx.checkpoint_every)
        return (du, ddelta, dA.sum(0)[:, :d].t(), _reduce_partial(dB, d, B.dim() == 3),
                _reduce_partial(dC, d, C.dim() == 3),
                dD.sum(0)[:d] if D.numel() else None, dz if z.numel() else None,
                dbias.sum(0)[:d] if delta_bias.numel() else None, None)


def _reduce_partial(part: Tensor, d: int, selective: bool) -> Tensor:
    """Selective [b, l, n] (summed by the kernel) -> [b, n, l]; time-invariant partials
    [b, n, dp] -> [d, n]."""
    return part.transpose(1, 2) if selective else part.sum(0)[:, :d].t()
