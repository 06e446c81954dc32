"""Checkpoints: a directory of ``config.json`` + ``model.safetensors`` (+ ``README.md`` card).

Never pickle: loading an untrusted checkpoint only parses JSON and safetensors. Shipped weights
live in ``tsfm/weights/<name>/`` and resolve by name with no network. The layout follows the
Hugging Face Hub convention so a checkpoint directory can be published as is.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from tsfm.atomic import umask
from tsfm.errors import InputError
from tsfm.models.base import ForecastModel, ModelConfig
from tsfm.models.registry import FAMILIES, build_config, build_model
from tsfm_runtime.suite import SUITE_FILE, SuiteSpec

WEIGHTS_DIR = Path(__file__).parent / "weights"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"


def is_checkpoint_folder(folder: str | Path) -> bool:
    """A folder tsfm wrote: its config.json beside the weights or the settings tsfm saves (a folder
    that may be replaced by a new checkpoint; any other is the user's)."""
    folder = Path(folder)
    return (folder / CONFIG_FILE).is_file() and any(
        (folder / name).is_file() for name in (WEIGHTS_FILE, "forecaster.json", "finetune.json"))


def save_pretrained(model: ForecastModel, directory: str | Path, card: str | None = None) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (and the model card when given)."""
    from safetensors.torch import save_file

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    model.config.to_json(out / CONFIG_FILE)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS_FILE), metadata={"family": model.config.family})
    (out / WEIGHTS_FILE).chmod(0o666 & ~umask())  # safetensors writes 0600; a checkpoint is shared as any file
    if card is not None:
        (out / CARD_FILE).write_text(card)
    return out


@dataclass(frozen=True)
class Suite:
    """One shipped name (``ttm``) served by several checkpoints, one chosen per dataset.

    The selection rule is ``tsfm_runtime.suite.SuiteSpec``'s (the edge runtime chooses the same
    way); this class finds the checkpoints. A folder holding a ``suite.json`` (and no checkpoint)
    is a suite too: its variants are checkpoint folders or exported ``.onnx`` files beside the
    file, else shipped names. That is how a trial swaps one variant for a new checkpoint and
    benchmarks the whole suite unchanged otherwise, and how an exported suite forecasts.
    """

    name: str
    spec: SuiteSpec
    root: Path | None = None  # the suite's folder when it is not shipped

    default = property(lambda self: self.spec.default)
    variants = property(lambda self: self.spec.variants)
    by_frequency = property(lambda self: self.spec.by_frequency)
    min_seasons = property(lambda self: self.spec.min_seasons)
    log_scale = property(lambda self: self.spec.log_scale)

    def locate(self, variant: str) -> str:
        """The checkpoint a variant names: a folder or ``.onnx`` file in ``root``, else a shipped name."""
        if self.root is not None:
            for candidate in (self.root / variant, self.root / f"{variant}.onnx"):
                if candidate.exists():
                    return str(candidate)
        return variant

    def variant_of(self, located: str) -> str:
        """The variant name of a located checkpoint (``locate``'s inverse)."""
        return next((v for v in self.spec.checkpoints() if self.locate(v) == located), located)

    def context_length(self, variant: str) -> int:
        """The shortest context the variant reads: its own, or for an ensemble its shortest member's."""
        located = self.locate(variant)
        if located.lower().endswith(".onnx"):
            return exported_lengths(located, Path(located).stat().st_mtime_ns)[0]
        return read_config(resolve(located)).shortest_context

    def specialist(self, variant: str, freq: str) -> str | None:
        """The variant that stands in for ``variant`` on data of resolution ``freq``, if any."""
        return self.spec.specialist(variant, freq)

    def select(self, history: float, season: int, freq: str = "") -> str:
        """The checkpoint (located) for series of resolution ``freq`` and typical observed length ``history``."""
        return self.locate(self.spec.select(history, season, freq, self.context_length))


def load_suite(name: str | Path) -> Suite | None:
    """The suite shipped under ``name`` or held in folder ``name``, or None when ``name`` is not one."""
    root = Path(name) if Path(name).is_dir() else None
    path = (root if root is not None else WEIGHTS_DIR / str(name).lower()) / SUITE_FILE
    if not path.is_file():
        return None
    if (path.parent / CONFIG_FILE).exists():
        raise InputError(f"{path.parent} holds both a suite and a checkpoint: remove one")
    try:
        spec = SuiteSpec.from_dict(json.loads(path.read_text()), str(path))
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read {path}: {err}") from None
    except ValueError as err:
        raise InputError(str(err)) from None
    return Suite(str(name) if root is not None else str(name).lower(), spec, root)


@functools.lru_cache(maxsize=64)
def exported_lengths(path: str, modified_ns: int) -> tuple[int, int | None]:
    """The context an exported file reads and the horizon it was exported for (None: the frequency's),
    from its metadata; the graph is opened once per file version."""
    from tsfm_runtime.edge import load as load_exported

    edge = load_exported(path)
    return edge.context_length, edge.default_horizon


def read_config(directory: Path) -> ModelConfig:
    """The config of the checkpoint in ``directory`` (its weights are not read)."""
    from tsfm.models.ensemble import split_member_references

    config, _ = split_member_references(json.loads((directory / CONFIG_FILE).read_text()))
    return build_config(config)


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
