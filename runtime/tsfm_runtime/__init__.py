"""tsfm's edge runtime: forecasts from exported files with numpy + onnxruntime only.

``rules``, ``freq`` and ``suite`` need numpy alone and are what the tsfm package itself runs
around its networks; ``load`` (onnxruntime) opens a file or suite folder written by ``tsfm export``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["load", "EdgeModel", "EdgeSuite", "ModelFileError", "FORMAT_VERSION"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """The onnxruntime part on first use, so that importing the numpy rules needs no onnxruntime."""
    if name in __all__:
        from tsfm_runtime import edge

        return getattr(edge, name)
    raise AttributeError(f"module 'tsfm_runtime' has no attribute {name!r}")
