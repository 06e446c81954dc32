"""tsfm: time-series forecasting foundation models.

Imports are lazy so that ``import tsfm`` (and ``tsfm forecast``) stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Forecaster", "load_model", "save_pretrained", "__version__"]

if TYPE_CHECKING:  # pragma: no cover
    from tsfm.forecaster import Forecaster
    from tsfm.hub import load_model, save_pretrained


def __getattr__(name: str) -> Any:
    if name == "Forecaster":
        from tsfm.forecaster import Forecaster

        return Forecaster
    if name in ("load_model", "save_pretrained"):
        from tsfm import hub

        return getattr(hub, name)
    raise AttributeError(f"module 'tsfm' has no attribute '{name}'")
