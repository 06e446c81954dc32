"""ONNX export, int8 quantization and the numpy + onnxruntime edge runtime (installed as ``tsfm.export``).

``export_onnx`` writes one ``.onnx`` file; ``runtime.load`` serves it without torch (the file
``export/runtime.py`` can be copied onto a device on its own); ``onnx_model`` lets the package's
Forecaster and CLI forecast with such a file.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["export_onnx", "quantize_onnx", "load_edge_model", "forecast_with_onnx", "ModelFileError"]

if TYPE_CHECKING:  # pragma: no cover
    from tsfm.export.onnx_export import export_onnx
    from tsfm.export.onnx_model import forecast_with_onnx
    from tsfm.export.quantize import quantize_onnx
    from tsfm.export.runtime import ModelFileError


def __getattr__(name: str) -> Any:
    """Lazy: importing ``tsfm.export`` must not pull torch.onnx in until an export runs."""
    if name == "export_onnx":
        from tsfm.export.onnx_export import export_onnx

        return export_onnx
    if name == "quantize_onnx":
        from tsfm.export.quantize import quantize_onnx

        return quantize_onnx
    if name == "load_edge_model":
        from tsfm.export.runtime import load

        return load
    if name == "ModelFileError":
        from tsfm.export.runtime import ModelFileError

        return ModelFileError
    if name == "forecast_with_onnx":
        from tsfm.export.onnx_model import forecast_with_onnx

        return forecast_with_onnx
    raise AttributeError(f"module 'tsfm.export' has no attribute '{name}'")
