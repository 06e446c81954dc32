"""Checkpoints: a directory of ``config.json`` + ``model.safetensors`` (+ ``README.md`` card).

Never pickle: loading an untrusted checkpoint only parses JSON and safetensors. Shipped weights
live in ``tsfm/weights/<name>/`` and resolve by name with no network. The layout follows the
Hugging Face Hub convention so a checkpoint directory can be published as is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from tsfm.errors import InputError
from tsfm.inference import LOG_SCALE_MODES
from tsfm.models.base import ForecastModel
from tsfm.models.registry import FAMILIES, build_model

WEIGHTS_DIR = Path(__file__).parent / "weights"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"
SUITE_FILE = "suite.json"


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


@dataclass(frozen=True)
class Suite:
    """One shipped name (``ttm``) served by several checkpoints, one chosen per dataset.

    granite-tsfm ships TTM as context/horizon revisions and picks one for the data at hand; a
    suite does the same from ``tsfm/weights/<name>/suite.json``: each variant names a shipped
    checkpoint and the shortest typical history it is meant for (``min_history``), and a
    variant is only eligible when its context covers ``min_seasons`` seasons of the data's
    frequency (a 96-step window is two days of half-hourly data but under two years of weekly).
    ``by_frequency`` names specialists: variants trained on for one resolution (canonical names:
    ``"Y"`` yearly, ``"M"`` monthly) that stand in for a general variant on data of that
    resolution, as granite-tsfm offers frequency-tuned TTM revisions.

    An ensemble variant is eligible only when every member's context covers those seasons (a
    96-step member cannot read a yearly season of weekly data), and among variants for the same
    ``min_history`` the first listed eligible one wins: an ensemble listed before its long-context
    member serves where both are eligible, the member alone where only it is. ``log_scale`` is the
    Forecaster's default for the suite's forecasts (``tsfm.inference.log_scale_channels``).

    A folder holding a ``suite.json`` (and no checkpoint) is a suite too: its variants are
    checkpoint folders beside the file or paths, else shipped names. That is how a trial swaps one
    variant for a new checkpoint and benchmarks the whole suite unchanged otherwise.
    """

    name: str
    default: str
    variants: tuple[tuple[str, int], ...]  # (checkpoint name, min_history), ascending min_history
    min_seasons: float = 2.0
    by_frequency: tuple[tuple[str, str, str], ...] = ()  # (canonical frequency, general variant, specialist)
    root: Path | None = None  # the suite's folder when it is not shipped
    log_scale: str = "never"

    def locate(self, variant: str) -> str:
        """The checkpoint a variant names: a folder in (or a path from) ``root``, else a shipped name."""
        if self.root is not None and (self.root / variant).is_dir():
            return str(self.root / variant)
        return variant

    def context_length(self, variant: str) -> int:
        """The shortest context the variant reads: its own, or for an ensemble its shortest member's."""
        config = json.loads((resolve(self.locate(variant)) / CONFIG_FILE).read_text())
        return int(min([m["context_length"] for m in config.get("members", [])] or [config["context_length"]]))

    def specialist(self, variant: str, freq: str) -> str | None:
        """The variant that stands in for ``variant`` on data of resolution ``freq``, if any."""
        return next((s for f, v, s in self.by_frequency if f == freq and v == variant), None)

    def select(self, history: float, season: int, freq: str = "") -> str:
        """The variant for series of resolution ``freq`` whose typical (median) observed length is
        ``history``: among the variants covering ``min_seasons`` seasons, the one for the longest
        ``min_history`` the history reaches (else the shortest such one), the default when none
        covers them; then its specialist for ``freq`` when the suite has one."""
        chosen = self._by_length(history, season)
        return self.locate(self.specialist(chosen, freq) or chosen)

    def _by_length(self, history: float, season: int) -> str:
        covering = [(name, h) for name, h in self.variants
                    if self.context_length(name) >= self.min_seasons * max(season, 1)]
        if not covering:
            return self.default
        reached = [(name, h) for name, h in covering if history >= h]
        if not reached:
            return covering[0][0]
        longest = max(h for _, h in reached)
        return next(name for name, h in reached if h == longest)


def load_suite(name: str | Path) -> Suite | None:
    """The suite shipped under ``name`` or held in folder ``name``, or None when ``name`` is not one."""
    root = Path(name) if Path(name).is_dir() else None
    path = (root if root is not None else WEIGHTS_DIR / str(name).lower()) / SUITE_FILE
    if not path.is_file():
        return None
    if (path.parent / CONFIG_FILE).exists():
        raise InputError(f"{path.parent} holds both a suite and a checkpoint: remove one")
    spec = json.loads(path.read_text())
    variants = tuple(sorted(((v["name"], int(v["min_history"])) for v in spec["variants"]), key=lambda v: v[1]))
    by_frequency = tuple(sorted((freq, general, special) for freq, pairs in spec.get("by_frequency", {}).items()
                                for general, special in pairs.items()))
    label = str(name) if root is not None else str(name).lower()
    log_scale = spec.get("log_scale", "never")
    if log_scale not in LOG_SCALE_MODES:
        raise InputError(f"{path}: log_scale must be one of {', '.join(LOG_SCALE_MODES)}, got {log_scale!r}")
    return Suite(label, spec["default"], variants, float(spec.get("min_seasons", 2.0)), by_frequency, root, log_scale)


def select_checkpoint(name_or_path: str | Path, history: float, season: int, freq: str = "") -> str:
    """The checkpoint to load for series of resolution ``freq`` and typical observed length
    ``history``: a suite's variant, else the name itself."""
    suite = load_suite(name_or_path)
    return str(name_or_path) if suite is None else suite.select(history, season, freq)


def shipped_models() -> list[str]:
    """Names shipped inside the package: checkpoints and suites."""
    if not WEIGHTS_DIR.is_dir():
        return []
    return sorted(p.name for p in WEIGHTS_DIR.iterdir() if (p / CONFIG_FILE).is_file() or (p / SUITE_FILE).is_file())


def resolve(name_or_path: str | Path) -> Path:
    """A checkpoint directory for a shipped name (``"ttm"``; a suite gives its default) or a path to one."""
    path = Path(name_or_path)
    suite = load_suite(name_or_path)
    if suite is not None:
        return resolve(suite.locate(suite.default))
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
            raise InputError(f"'{path}' is not a tsfm checkpoint or suite: "
                             f"it needs {CONFIG_FILE} and {WEIGHTS_FILE}, or {SUITE_FILE}")
        return path
    shipped = WEIGHTS_DIR / str(name_or_path).lower()
    if (shipped / CONFIG_FILE).is_file():
        return shipped
    known = shipped_models()
    families = [f for f, family in FAMILIES.items() if f not in known and not family.composite]
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
    from tsfm.models.ensemble import referenced_member_state, split_member_references

    config, references = split_member_references(config)  # ensemble members stored as checkpoints of their own
    try:
        model = build_model(config)
    except (KeyError, TypeError, ValueError) as err:
        raise InputError(f"bad model config in {directory / CONFIG_FILE}: {err}") from None
    try:
        state = load_file(str(directory / WEIGHTS_FILE), device=str(device))
    except (SafetensorError, OSError) as err:
        raise InputError(f"cannot read {directory / WEIGHTS_FILE}: {err}") from None
    for index, reference in references.items():  # a folder beside the ensemble's files, else a shipped name
        member = resolve(directory / reference["checkpoint"] if (directory / reference["checkpoint"]).is_dir()
                         else reference["checkpoint"])
        state.update(referenced_member_state(config, index, reference, (member / CONFIG_FILE).read_text(),
                                             (member / WEIGHTS_FILE).read_bytes()))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise InputError(f"weights in {directory} do not fit its config: {first}") from None
    return model.to(device).eval()
