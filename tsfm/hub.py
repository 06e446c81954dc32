"""Checkpoints: a directory of ``config.json`` + ``model.safetensors`` (+ ``README.md`` card).

Never pickle: loading an untrusted checkpoint only parses JSON and safetensors. Shipped weights
live in ``tsfm/weights/<name>/`` and resolve by name with no network. The layout follows the
Hugging Face Hub convention so a checkpoint directory can be published as is.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from tsfm.errors import InputError
from tsfm.models.base import ForecastModel
from tsfm.models.registry import FAMILIES, build_model

WEIGHTS_DIR = Path(__file__).parent / "weights"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"


def save_pretrained(model: ForecastModel, directory: str | Path, card: str | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (and the model card when given)."""
    from safetensors.torch import save_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    model.config.to_json(out / CONFIG_FILE)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE), metadata={"family": model.config.family})
    if card is not None:
        (out / CARD_FILE).write_text(card)
    return out


def shipped_models() -> list[str]:
    """Names of the checkpoints shipped inside the package."""
    if not WEIGHTS_DIR.is_dir():
        return []
    return sorted(p.name for p in WEIGHTS_DIR.iterdir() if (p / CONFIG_FILE).is_file())


def resolve(name_or_path: str | Path) -> Path:
    """A checkpoint directory for a shipped name (``"ttm"``) or a path to one."""
    path = Path(name_or_path)
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
            raise InputError(f"'{path}' is not a tsfm checkpoint: it needs {CONFIG_FILE} and {WEIGHTS_FILE}")
        return path
    shipped = WEIGHTS_DIR / str(name_or_path).lower()
    if (shipped / CONFIG_FILE).is_file():
        return shipped
    known = shipped_models()
    families = [f for f in FAMILIES if f not in known]
    hint = f"; families without shipped weights yet: {', '.join(families)}" if families else ""
    raise InputError(
        f"unknown model '{name_or_path}': use one of {', '.join(known) or '(none)'} or a checkpoint directory{hint}"
    )


def load_model(name_or_path: str | Path = "ttm", device: str | torch.device = "cpu") -> ForecastModel:
    """Load a shipped model by name or a checkpoint directory, in eval mode. No network."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = resolve(name_or_path)
    try:
        config = json.loads((directory / CONFIG_FILE).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read {directory / CONFIG_FILE}: {err}") from None
    try:
        model = build_model(config)
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"bad model config in {directory / CONFIG_FILE}: {err}") from None
    try:
        state = load_file(str(directory / WEIGHTS_FILE), device=str(device))
    except (SafetensorError, OSError) as err:
        raise InputError(f"cannot read {directory / WEIGHTS_FILE}: {err}") from None
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise InputError(f"weights in {directory} do not fit its config: {first}") from None
    return model.to(device).eval()
