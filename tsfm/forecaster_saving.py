"""A ``Forecaster`` saved to a folder and read back.

The folder holds the network (a checkpoint; for ``model="auto"`` the ensemble's members, weights
and calibration), the Forecaster's parameters (``forecaster.json``, with the choices its plan made,
which the bare checkpoint would not know) and the series it was fitted on (``context.npz``), so
that a loaded Forecaster predicts at once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tsfm.forecaster_inputs import CONTEXT_FILE, FORECASTER_FILE, quantile_names

if TYPE_CHECKING:
    from tsfm.auto import AutoEnsemble
    from tsfm.data.series_set import SeriesSet
    from tsfm.pipeline import Plan


def write_folder(directory: str | Path, model: Any, params: dict[str, Any], series: SeriesSet | None,
                 finetune_report: Any = None, base_model: str = "") -> Path:
    """Write ``model`` (a network, or an "auto" ensemble when ``params["model"] == "auto"``), the
    parameters and the fitted series into ``directory``; a fine-tune's card names its base model."""
    out = Path(directory)
    if params["model"] == "auto":
        out.mkdir(parents=True, exist_ok=True)
        model.save(out)
    else:
        from tsfm.hub import save_pretrained

        card = None
        if finetune_report is not None:
            from tsfm.train.finetune import model_card

            card = model_card(finetune_report, base_model)
        save_pretrained(model, out, card=card)
    quantiles = params["quantiles"]
    params = {**params, "quantiles": (quantile_names(quantiles)[1] if isinstance(quantiles, str)
                                      else [quantiles] if isinstance(quantiles, (int, float)) else list(quantiles))}
    (out / FORECASTER_FILE).write_text(json.dumps(params, indent=2, default=list) + "\n")
    if series is not None:
        from tsfm.data.saved_series import save_series

        save_series(series, out / CONTEXT_FILE)
    return out


def read_folder(directory: str | Path) -> tuple[dict[str, Any], SeriesSet | None]:
    """The Forecaster parameters saved in ``directory`` (its model: the folder itself, or "auto") and
    the series it was fitted on (None when it was saved without them)."""
    path = Path(directory)
    params = json.loads((path / FORECASTER_FILE).read_text()) if (path / FORECASTER_FILE).is_file() else {}
    params["model"] = "auto" if params.get("model") == "auto" else str(path)
    if isinstance(params.get("quantiles"), list):
        params["quantiles"] = tuple(params["quantiles"])
    series = None
    if (path / CONTEXT_FILE).is_file():
        from tsfm.data.saved_series import load_saved_series

        series = load_saved_series(path / CONTEXT_FILE)
    return params, series


def load_auto(directory: str | Path, **options: Any) -> tuple[AutoEnsemble, Plan]:
    """The saved "auto" ensemble with its weights and calibration (not refitted), and its plan."""
    from tsfm.auto import AUTO, AutoEnsemble
    from tsfm.pipeline import Plan

    ensemble = AutoEnsemble.load(Path(directory), **options)
    return ensemble, Plan(AUTO, "never", 0.0, "\n".join(ensemble.lines))
