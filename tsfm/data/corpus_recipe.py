"""Corpus recipes: the generator kinds a recipe may name, validation, hashing and cache paths.

A recipe (YAML in ``configs/corpus/``, see ``tsfm.data.corpus``) names generators of the kinds
in :data:`KINDS`; :func:`validate_recipe` fills in the defaults and :func:`recipe_hash` names the
corpus it builds: the validated recipe, :data:`CORPUS_FORMAT`, the tsfm version, a digest of the
code that decides the corpus' bytes and the contents of the real data files it reads.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import inspect
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from tsfm.data.real import AGGREGATE_ALIASES, real_source_files
from tsfm.data.synthetic import MAX_LENGTH, Sample
from tsfm.data.synthetic.bootstrap import bootstrap_sample
from tsfm.data.synthetic.chaos import chaos_views, list_systems
from tsfm.data.synthetic.gluonts_artificial import gluonts_artificial
from tsfm.data.synthetic.kernel_synth import kernel_synth
from tsfm.data.synthetic.mixup import tsmixup
from tsfm.data.synthetic.structural import structural
from tsfm.errors import InputError

# Bump when the on-disk layout changes. Generator code changes need no bump: the recipe hash
# covers a digest of the generator sources (``generator_code_digest``).
CORPUS_FORMAT = 2
# "label": a frequency alias every series of the generator carries instead of its own (a yearly
# specialist's corpus labels trends and cycles yearly: yearly data has no calendar season).
# "keep_freqs": only series the generator itself labels with one of these aliases are kept (a
# monthly specialist's corpus keeps the monthly draws, their seasons on the calendar's periods); a
# real source keeps the series whose timestamps have one of these frequencies.
COMMON_KEYS = {"kind", "count", "length_min", "length_max", "weight", "shard_size", "label", "keep_freqs"}


# ----------------------------------------------------------------------------- generator kinds
@dataclass(frozen=True)
class GeneratorKind:
    """How the corpus runs one kind: its function, default shard size, recipe parameters (the
    function's keyword-only arguments, plus ``extra`` corpus-level ones, minus ``drop``), and
    whether it draws from the series of other generators (``reads_pool``: it runs after them,
    with ``pool_size`` and ``get``; its recipe names them in ``sources``, by default every
    generator that does not read a pool itself)."""

    fn: Callable[..., Sample | list[Sample]] | None  # None: the kind reads data instead of drawing it
    shard_size: int
    extra: frozenset[str] = frozenset()
    drop: frozenset[str] = frozenset()
    reads_pool: bool = False

    @property
    def params(self) -> frozenset[str]:
        sig = inspect.signature(self.fn).parameters.values() if self.fn is not None else ()
        names = {p.name for p in sig if p.kind == p.KEYWORD_ONLY} | self.extra
        if self.reads_pool:  # the recipe names the pool; the builder hands it over
            names = (names | {"sources"}) - {"pool_size", "get"}
        return frozenset(names) - self.drop


KINDS: dict[str, GeneratorKind] = {
    "kernel_synth": GeneratorKind(kernel_synth, 1000),
    "structural": GeneratorKind(structural, 1000),
    "gluonts": GeneratorKind(gluonts_artificial, 250),
    # chaos: ~10 trajectories/s, so small shards keep the workers balanced; "systems" restricts
    # the probed list, "exclude_systems" holds systems out (for zero-shot evaluation on unseen
    # dynamics), "probe" sets the probe's length / pts_per_period / max_evals / time_budget
    "chaos": GeneratorKind(chaos_views, 40, frozenset({"probe", "exclude_systems"}), frozenset({"failures"})),
    # mixup: TSMixup of the series of its "sources"; bootstrap: block-bootstrapped copies of them
    "mixup": GeneratorKind(tsmixup, 1000, reads_pool=True),
    "bootstrap": GeneratorKind(bootstrap_sample, 1000, reads_pool=True),
    # real: the long tables of a folder ("path", optionally only "files"), at most "count" series
    # of at least "length_min" steps; any series sharing a run of "exclude_run" values with a series
    # of the "exclude" folders (evaluation sets) is dropped and listed in the manifest; "aggregate_to"
    # (MS, QS, YS) adds each finer series' calendar means at those resolutions
    "real": GeneratorKind(None, 500, frozenset({"path", "files", "exclude", "exclude_run", "aggregate_to"})),
}


GENERATOR_KINDS: tuple[str, ...] = tuple(KINDS)



# ----------------------------------------------------------------------------- recipes and paths
def default_cache_root() -> Path:
    """``$TSFM_CACHE/corpora`` when ``TSFM_CACHE`` is set, else ``~/.cache/tsfm/corpora``."""
    root = os.environ.get("TSFM_CACHE")
    return (Path(root) if root else Path.home() / ".cache" / "tsfm") / "corpora"


def load_recipe(path: str | Path) -> dict[str, Any]:
    """A recipe from a YAML (or JSON) file."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputError(f"corpus recipe {p} does not exist; pass a YAML file like configs/corpus/smoke.yaml")
    return validate_recipe(yaml.safe_load(p.read_text()))


def validate_recipe(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """The recipe as plain JSON-able data with defaults filled in, or one-line ``InputError``."""
    if not isinstance(recipe, Mapping) or not isinstance(recipe.get("generators"), Mapping):
        raise InputError("a corpus recipe needs a 'generators' mapping (see configs/corpus/smoke.yaml)")
    seed = recipe.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise InputError(f"recipe seed must be a non-negative integer, got {seed!r}")
    kinds = KINDS
    out: dict[str, Any] = {"name": str(recipe.get("name", "corpus")), "seed": seed, "generators": {}}
    for name, spec in recipe["generators"].items():
        spec = dict(spec or {})
        kind = spec.get("kind", name)
        if kind not in kinds:
            raise InputError(f"generator {name!r} has unknown kind {kind!r}; use one of {', '.join(GENERATOR_KINDS)}")
        unknown = set(spec) - COMMON_KEYS - kinds[kind].params
        if unknown:
            raise InputError(f"generator {name!r} has unknown parameters {sorted(unknown)}; "
                             f"{kind} accepts {sorted(kinds[kind].params)}")
        count, lo, hi = spec.get("count", 0), spec.get("length_min", 64), spec.get("length_max", 512)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (count, lo, hi)) or count < 0 \
                or not 2 <= lo <= hi:
            raise InputError(f"generator {name!r}: count >= 0 and 2 <= length_min <= length_max must be integers")
        weight = float(spec.get("weight", 1.0))
        if weight < 0:
            raise InputError(f"generator {name!r}: weight must be >= 0")
        if kind == "chaos" and spec.get("exclude_systems"):
            spec["exclude_systems"] = sorted(set(spec["exclude_systems"]))  # order does not change the corpus
            unknown_systems = sorted(set(spec["exclude_systems"]) - set(list_systems()))
            if unknown_systems:  # a typo would silently hold nothing out
                raise InputError(f"generator {name!r}: exclude_systems names unknown dysts systems {unknown_systems}")
        if kind == "real":
            if not isinstance(spec.get("path"), str):
                raise InputError(f"generator {name!r}: a real source needs 'path', a folder of long tables")
            spec.setdefault("exclude", [])
            spec.setdefault("exclude_run", 8)
            if not isinstance(spec["exclude_run"], int) or spec["exclude_run"] < 4:
                raise InputError(f"generator {name!r}: exclude_run must be an integer >= 4")
            aggregate_to = spec.get("aggregate_to", [])
            if not isinstance(aggregate_to, list) or set(aggregate_to) - set(AGGREGATE_ALIASES):
                raise InputError(f"generator {name!r}: aggregate_to must be a list of {', '.join(AGGREGATE_ALIASES)}")
            if aggregate_to:
                spec["aggregate_to"] = list(dict.fromkeys(aggregate_to))  # twice would add every aggregate twice
        label = spec.get("label")
        if label is not None:
            if label not in MAX_LENGTH:
                raise InputError(f"generator {name!r}: label {label!r} is not one of {', '.join(MAX_LENGTH)}")
            if hi > MAX_LENGTH[label]:
                raise InputError(f"generator {name!r}: series labelled {label} are at most {MAX_LENGTH[label]} "
                                 f"steps long (calendar range); lower length_max from {hi}")
        keep = spec.get("keep_freqs")
        if keep is not None and (not isinstance(keep, list) or not keep or set(keep) - set(MAX_LENGTH)):
            raise InputError(f"generator {name!r}: keep_freqs must be a non-empty list of {', '.join(MAX_LENGTH)}")
        spec.update(kind=kind, count=count, length_min=lo, length_max=hi, weight=weight,
                    shard_size=int(spec.get("shard_size", kinds[kind].shard_size)))
        out["generators"][str(name)] = json.loads(json.dumps(spec))  # tuples -> lists, JSON-able
    gens = out["generators"]
    readers = pool_readers(gens)
    for name in readers:
        sources = pool_sources(gens, name)
        bad = [s for s in sources if s not in gens or s in readers]
        if bad:
            raise InputError(f"{gens[name]['kind']} generator {name!r} lists unknown sources or sources that "
                             f"read a pool themselves: {bad}")
        if gens[name]["count"] > 0 and not any(gens[s]["count"] > 0 for s in sources):
            raise InputError(f"{gens[name]['kind']} generator {name!r} has no source series to draw from; "
                             "give a source a count > 0")
    return out


def pool_readers(generators: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """The generators whose kind draws from other generators' series (mixup, bootstrap)."""
    return [n for n, spec in generators.items() if KINDS[spec["kind"]].reads_pool]


def pool_sources(generators: Mapping[str, Mapping[str, Any]], name: str) -> list[str]:
    """The generators whose series ``name`` draws from: its ``sources``, else every generator
    that does not read a pool itself."""
    readers = pool_readers(generators)
    return list(generators[name].get("sources") or [n for n in generators if n not in readers])


def code_version() -> str:
    try:
        return importlib.metadata.version("tsfm")
    except importlib.metadata.PackageNotFoundError:
        import tsfm

        return getattr(tsfm, "__version__", "0+unknown")


@lru_cache(maxsize=1)
def generator_code_digest() -> str:
    """SHA-256 of the sources that decide a corpus' bytes (the build, the recipes and the generators).

    Part of the recipe hash, so editing a generator invalidates cached corpora by itself: a
    hand-bumped format number is easy to forget, and a stale cache trains on old data silently.
    """
    digest = hashlib.sha256()
    here = Path(__file__).resolve().parent
    sources = [here / "corpus.py", here / "corpus_recipe.py", here / "real.py"]
    for path in [*sources, *sorted((here / "synthetic").glob("*.py"))]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def data_digests(recipe: Mapping[str, Any]) -> dict[str, str]:
    """SHA-256 of every file the real sources read: new data (or a new exclusion set) is a new corpus."""
    files = {f for s in recipe["generators"].values() if s["kind"] == "real" and s["count"] > 0
             for f in real_source_files(s)}
    return {str(f): _file_digest(str(f.resolve()), f.stat().st_size, f.stat().st_mtime_ns) for f in sorted(files)}


@lru_cache(maxsize=256)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    """``file_sha256`` of a file, read once per (path, size, modification time): the recipe hash is asked for
    several times per training run and the real sources are megabytes."""
    return file_sha256(Path(path))


def recipe_hash(recipe: Mapping[str, Any]) -> str:
    """SHA-256 of the validated recipe, the corpus format, the tsfm version, the generator code and
    the contents of the real data files it reads."""
    recipe = validate_recipe(recipe)
    payload = json.dumps([recipe, CORPUS_FORMAT, code_version(), generator_code_digest(),
                          sorted(data_digests(recipe).values())], sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def corpus_dir(recipe: Mapping[str, Any], cache_root: str | Path | None = None) -> Path:
    """The cache directory of a recipe: ``<cache_root>/<name>-<hash[:16]>``."""
    root = default_cache_root() if cache_root is None else Path(cache_root)
    return root / f"{validate_recipe(recipe)['name']}-{recipe_hash(recipe)[:16]}"



def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()



def held_out_systems(recipe: Mapping[str, Any]) -> list[str]:
    """dysts systems every chaos generator of the recipe holds out (never drawn into the corpus)."""
    specs = [set(s.get("exclude_systems") or ()) for s in validate_recipe(recipe)["generators"].values()
             if s["kind"] == "chaos"]
    return sorted(set.intersection(*specs)) if specs else []
