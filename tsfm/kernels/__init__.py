"""Scan kernels: the Mamba selective scan and the SpaceTime companion SSM.

Every scan has one function with a ``backend`` argument: ``"reference"`` (plain loop, the
truth), ``"chunked"`` (CPU default, ONNX-exportable: a compiled C++ kernel eagerly on CPU,
see :mod:`tsfm.kernels.cpu_scan`, torch operations in exported graphs and as the fallback),
``"triton"`` (fused GPU kernels; importing triton is deferred until used) or ``"auto"``. ``"auto"`` follows
:func:`set_default_backend`, then ``$TSFM_SCAN_BACKEND``, then picks triton for CUDA tensors
when triton is installed and chunked otherwise.
"""

from tsfm.kernels.companion import (
    causal_conv,
    closed_loop_rollout,
    companion_c_tilde,
    companion_final_state,
    companion_kernel,
    companion_kernel_fast,
    companion_kernel_reference,
    companion_matrix,
    companion_recurrence,
    companion_scan,
    krylov_doubling,
)
from tsfm.kernels.selective_scan import (
    BACKENDS,
    default_chunk_size,
    get_default_backend,
    resolve_backend,
    scan_backend,
    selective_scan,
    selective_scan_chunked,
    selective_scan_reference,
    set_default_backend,
    triton_available,
)

__all__ = [
    "BACKENDS",
    "causal_conv",
    "closed_loop_rollout",
    "companion_c_tilde",
    "companion_final_state",
    "companion_kernel",
    "companion_kernel_fast",
    "companion_kernel_reference",
    "companion_matrix",
    "companion_recurrence",
    "companion_scan",
    "default_chunk_size",
    "get_default_backend",
    "krylov_doubling",
    "resolve_backend",
    "scan_backend",
    "selective_scan",
    "selective_scan_chunked",
    "selective_scan_reference",
    "set_default_backend",
    "triton_available",
]


def __getattr__(name: str):
    if name == "selective_scan_triton":  # imports triton, so only on request (not in __all__)
        from tsfm.kernels.selective_scan_triton import selective_scan_triton

        return selective_scan_triton
    raise AttributeError(f"module 'tsfm.kernels' has no attribute {name!r}")
