"""What a ``Forecaster`` accepts: checks of its arguments, its quantile columns, and the settings
a checkpoint folder was saved with (``forecaster.json``, which ``Forecaster.save`` writes)."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tsfm.errors import InputError
from tsfm_runtime.rules import MAX_HORIZON

FORECASTER_FILE = "forecaster.json"
CONTEXT_FILE = "context.npz"  # the fitted series, so that a loaded Forecaster predicts without fit


def column_names(columns: str | Sequence[str] | None) -> list[str]:
    """One column name or several, as a list (none: empty)."""
    if columns is None:
        return []
    return [columns] if isinstance(columns, str) else list(columns)


def checkpoint_params(model: str | Path) -> dict[str, Any]:
    """The Forecaster parameters saved beside a checkpoint directory ({} for a name or a bare checkpoint)."""
    path = Path(str(model)) / FORECASTER_FILE
    if str(model) == "auto" or not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def checkpoint_roles(model: str | Path) -> dict[str, list[str]]:
    """Covariate columns a fine-tuned checkpoint directory was trained with (its forecaster.json)."""
    params = checkpoint_params(model)
    return {key: column_names(params.get(key)) for key in ("past_exog", "future_exog")}


def covariate_roles(model: str | Path, past_exog: Any, future_exog: Any) -> tuple[list[str], list[str]]:
    """Covariate column names: those a fine-tuned checkpoint was trained with (columns named here
    must be the same ones: the network reads them by position), else the ones given."""
    saved = checkpoint_roles(model)
    roles = []
    for key, flag, given in (("past_exog", "--exog", past_exog), ("future_exog", "--future-exog", future_exog)):
        if any(saved.values()) and given is not None and column_names(given) != saved[key]:
            trained = ", ".join(f"'{c}'" for c in saved[key]) or "none"
            raise InputError(f"this checkpoint was fine-tuned with the {key} covariates {trained}, not "
                             f"{', '.join(repr(c) for c in column_names(given)) or 'none'}: pass the same columns "
                             f"(CLI: {flag}), or leave them out to use those")
        roles.append(column_names(given) if given is not None else saved.get(key, []))
    return roles[0], roles[1]


def torch_device(device: str) -> str:
    """The torch device ``device`` asks for ("auto": cuda when there is one); InputError when it is
    unknown or unavailable."""
    import torch

    if device not in ("cpu", "cuda", "auto") and not str(device).startswith("cuda:"):
        raise InputError(f"unknown device '{device}': use cpu, cuda or auto")
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise InputError("device cuda was asked for but no CUDA device is available: "
                         "use --device cpu / device='cpu'")
    return device


def check_model_source(model: Any) -> None:
    """InputError (one line naming the valid ones) unless ``model`` is a model name, a checkpoint or
    suite folder, an exported ``.onnx`` file or "auto"; a suite's checkpoints are loaded later."""
    from tsfm.hub import load_suite, resolve
    from tsfm.pipeline import is_exported

    if not isinstance(model, (str, Path)):
        raise InputError(f"model must be a name (see `tsfm models`), a checkpoint folder or an .onnx file, "
                         f"got {model!r}")
    if model != "auto" and not is_exported(model) and load_suite(model) is None:
        resolve(model)


def check_steps(name: str, value: Any) -> None:
    """``horizon``/``h``: a positive integer no larger than ``MAX_HORIZON`` (InputError otherwise)."""
    check_count(name, value)
    if value > MAX_HORIZON:
        raise InputError(f"{name}={value} is above the limit of {MAX_HORIZON} steps: past the model's own horizon "
                         "each step is forecast from earlier forecasts (slow, and accuracy fades); "
                         "forecast a coarser frequency instead")


def check_future_fits(series, h: int) -> None:
    """InputError when the next ``h`` stamps of a series run past the dates pandas can hold
    (year 2262): checked before the model runs, not after."""
    if len(series) == 0 or series.step_index:
        return
    try:  # an upper bound first: the latest start plus the longest series plus h steps
        max(series.starts) + (int(series.lengths.max()) - 1 + h) * series.offset
        return
    except (OverflowError, ValueError):  # pandas' OutOfBoundsDatetime is a ValueError
        pass
    for i in range(len(series)):
        try:
            series.future_index(i, h)
        except (OverflowError, ValueError):
            raise InputError(f"{h} steps of {series.freq} after '{series.ids[i]}' ends run past "
                             f"{pd.Timestamp.max:%Y-%m-%d}, the last date pandas can hold: "
                             "use a shorter horizon") from None


def check_count(name: str, value: Any) -> None:
    """A count (``n_windows``, ``m``, ``batch_size``...): a positive integer (InputError otherwise)."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")


class NotFittedError(ValueError, AttributeError):
    """Raised when ``predict`` runs before ``fit`` (same bases as scikit-learn's)."""


_PLAIN_DECIMAL = re.compile(r"^0?\.\d+$")


def quantile_names(quantiles: Sequence[float | str] | str | float) -> tuple[list[float], list[str]]:
    """Levels as floats, ascending, and their column names: a plain decimal as written ("0.10"),
    any other spelling (``1e-1``, a float) as Python's shortest decimal ("0.1", not 0.1000000001).

    A string is a comma-separated list (``"0.1,0.9"``), a lone number is one level; an empty
    list is refused here, before any model runs.
    """
    if isinstance(quantiles, str):
        quantiles = [part.strip() for part in quantiles.split(",") if part.strip()]
    elif isinstance(quantiles, (int, float, np.integer, np.floating)):
        quantiles = [quantiles]
    try:
        quantiles = list(quantiles)
    except TypeError:  # None, or an object that is not a list of levels
        raise InputError(f"quantiles must be a list of levels like 0.1,0.5,0.9 (got {quantiles!r})") from None
    levels, names = [], []
    if len(quantiles) == 0:
        raise InputError("quantiles is empty: give levels like 0.1,0.5,0.9")
    for q in quantiles:
        try:  # a float32 level as its shortest decimal (0.1, not 0.10000000149)
            value = float(str(q)) if isinstance(q, np.floating) and q.itemsize < 8 else float(q)
        except (TypeError, ValueError):
            raise InputError(f"quantile '{q}' is not a number: give levels like 0.1,0.5,0.9") from None
        if 0.0 < round(value, 12) < 1.0:  # float arithmetic's residue: 0.7 + 0.2 is the level 0.9
            value = round(value, 12)
        name = q.strip() if isinstance(q, str) and _PLAIN_DECIMAL.match(q.strip()) else repr(value)
        if not 0.0 < value < 1.0:
            raise InputError(f"quantile {q} is outside (0, 1): give levels like 0.1,0.5,0.9")
        levels.append(value)
        names.append(name)
    if len(set(levels)) != len(levels):
        raise InputError("quantile levels must be distinct")
    order = np.argsort(levels, kind="stable")  # columns in ascending levels, as the CLI writes them
    return [levels[i] for i in order], [names[i] for i in order]


def check_settings(params: dict[str, Any]) -> None:
    """InputError for a Forecaster parameter of the wrong kind, before any data is read."""
    if params["horizon"] is not None:
        check_steps("horizon", params["horizon"])
    check_count("batch_size", params["batch_size"])
    if params["context_length"] is not None:
        check_count("context_length", params["context_length"])
    if params["num_threads"] is not None:
        check_count("num_threads", params["num_threads"])
    if params["multivariate"] not in (True, False):
        raise InputError(f"multivariate must be True or False, got {params['multivariate']!r}")
    if params["nonnegative"] not in (None, True, False):
        raise InputError(f"nonnegative must be None (decide per series), True or False, got {params['nonnegative']!r}")
