"""ONNX export and int8 quantization (installed as ``tsfm.export``).

``export_onnx`` writes one ``.onnx`` file, ``export_suite`` a suite's folder; ``tsfm_runtime``
(numpy + onnxruntime only) serves both on a device, and ``Forecaster(model=path)`` in the package.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["export_onnx", "export_suite", "quantize_onnx"]

if TYPE_CHECKING:  # pragma: no cover
    from tsfm.export.onnx_export import export_onnx, export_suite
    from tsfm.export.quantize import quantize_onnx


def __getattr__(name: str) -> Any:
    """Lazy: importing ``tsfm.export`` must not pull torch.onnx in until an export runs."""
    if name in ("export_onnx", "export_suite"):
        from tsfm.export import onnx_export

        return getattr(onnx_export, name)
    if name == "quantize_onnx":
        from tsfm.export.quantize import quantize_onnx

        return quantize_onnx
    raise AttributeError(f"module 'tsfm.export' has no attribute '{name}'")
