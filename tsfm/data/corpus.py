"""Building pretraining corpora: once per recipe, deterministically, cached as Arrow.

A corpus is a directory of GluonTS-compatible Arrow IPC files (written by
``gluonts.dataset.arrow.ArrowWriter``; one file per generator shard, readable with
``gluonts.dataset.arrow.ArrowFile``) plus ``manifest.json``. Each entry is
``{"item_id": str, "start": ISO str, "freq": str, "target": float32 [T] or [C, T]}``
(multivariate targets are stored flat with GluonTS' ``target._np_shape`` column).

Recipe (YAML in ``configs/corpus/``, documented in ``datasets/recipes/README.md``)::

    name: default            # optional, names the cache directory
    seed: 0
    generators:
      <name>:                # kind defaults to the name
        kind: structural     # kernel_synth | structural | gluonts | chaos | mixup | bootstrap | real
        count: 1000          # series to generate
        length_min: 20       # lengths are log-uniform integers in [length_min, length_max]
        length_max: 2048
        weight: 0.3          # mixing weight when training samples from the corpus
        shard_size: 1000     # optional; series per file / task
        <params>             # passed to the generator function

Determinism: shard ``k`` of generator ``g`` draws from
``SeedSequence([seed, crc32(g), k])``, so the bytes of every file depend only on the recipe
(and the package's code), never on ``num_workers`` or scheduling. ``mixup`` and ``bootstrap`` run
after the other generators and read their shards. ``chaos`` first probes which dysts systems integrate at all
(cached, see ``tsfm.data.synthetic.chaos.working_systems``); a time budget inside the
integrator is the one clock-dependent step, and such timeouts are listed in the manifest.

Recipes are validated and hashed in ``tsfm.data.corpus_recipe``; a built corpus is read with
``tsfm.data.corpus_reading``.
"""

from __future__ import annotations

import concurrent.futures as cf
import importlib.metadata
import json
import logging
import multiprocessing
import os
import platform
import shutil
import sys
import tempfile
import time
import zlib
from collections import Counter
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tsfm.data.corpus_reading import MANIFEST
from tsfm.data.corpus_recipe import (
    COMMON_KEYS,
    CORPUS_FORMAT,
    KINDS,
    code_version,
    data_digests,
    default_cache_root,
    file_sha256,
    held_out_systems,
    pool_sources,
    recipe_hash,
    validate_recipe,
)
from tsfm.data.real import ValueFingerprints, read_real_series, table_files
from tsfm.data.synthetic import Sample
from tsfm.data.synthetic.chaos import ChaosFailure, list_systems, working_systems
from tsfm.errors import InputError

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- one shard
_STEP_DAYS = {"YS": 365.2425, "QS": 91.31, "MS": 30.44, "W-SUN": 7.0, "D": 1.0, "B": 1.4,
              "h": 1 / 24, "30min": 1 / 48, "15min": 1 / 96, "10min": 1 / 144}
_LATEST_END_YEAR = 2025.9
_EARLIEST_START_YEAR = 1700.0  # pandas Timestamps start in 1677


def _random_start(rng: np.random.Generator, freq: str, length: int) -> str:
    """An ISO start on the grid of ``freq`` such that the series ends within 40 years before 2026."""
    years = length * _STEP_DAYS.get(freq, 1.0) / 365.2425
    latest = max(_LATEST_END_YEAR - years, _EARLIEST_START_YEAR)
    when = rng.uniform(max(_EARLIEST_START_YEAR, latest - 40.0), latest)
    year = int(when)
    start = pd.Timestamp(year=year, month=1, day=1) + pd.Timedelta(days=int((when - year) * 365))
    return pd.date_range(start, periods=1, freq=freq)[0].isoformat()


def _log_uniform_length(rng: np.random.Generator, lo: int, hi: int) -> int:
    return int(min(hi, np.floor(np.exp(rng.uniform(np.log(lo), np.log(hi + 1))))))


def _shard_rng(seed: int, name: str, shard: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode()), shard]))



def _pool_source(pool_files: list[str]) -> tuple[int, Callable[[int], tuple[np.ndarray, str]]]:
    """(pool size, get(i)) over univariate shard files, reading rows lazily from memory maps."""
    import pyarrow as pa

    tables = [pa.ipc.open_file(pa.memory_map(f)).read_all() for f in pool_files]
    tables = [t for t in tables if "target._np_shape" not in t.column_names]
    sizes = np.cumsum([0] + [t.num_rows for t in tables])

    def get(i: int) -> tuple[np.ndarray, str]:
        k = int(np.searchsorted(sizes, i, side="right") - 1)
        row = i - int(sizes[k])
        target = np.asarray(tables[k].column("target")[row].values.to_numpy(zero_copy_only=False), dtype=np.float64)
        gaps = ~np.isfinite(target)
        if gaps.any():  # real series have gaps; a mixture is made of gap-free (interpolated) parts
            steps = np.arange(len(target))
            target[gaps] = np.interp(steps[gaps], steps[~gaps], target[~gaps])
        return target, str(tables[k].column("freq")[row])

    return int(sizes[-1]), get


def _run_shard(task: dict[str, Any]) -> dict[str, Any]:
    """Generate one shard and write it; returns its statistics (runs in a worker process)."""
    began = time.perf_counter()
    rng = _shard_rng(task["seed"], task["name"], task["shard"])
    params = dict(task["params"])
    failures: list[tuple[str, str]] = []
    if KINDS[task["kind"]].reads_pool:
        pool_size, get = _pool_source(task["pool_files"])
        params.pop("sources", None)
        params.update(pool_size=pool_size, get=get)
    elif task["kind"] == "chaos":
        params.pop("probe", None)
        params.pop("exclude_systems", None)
        params.update(systems=task["systems"], failures=failures)
    fn = KINDS[task["kind"]].fn

    def generate(r: np.random.Generator, length: int) -> list[Sample]:
        try:
            out = fn(r, length, **params)
        except ChaosFailure:  # every attempt of a chaos draw failed; the reasons are in `failures`
            return []
        return out if isinstance(out, list) else [out]

    entries: list[dict[str, Any]] = []
    attempts = 0
    while len(entries) < task["count"] and attempts < 10 * task["count"] + 10:
        attempts += 1
        length = _log_uniform_length(rng, task["length_min"], task["length_max"])
        samples = generate(rng, length)
        if task.get("keep_freqs"):
            samples = [sample for sample in samples if sample.freq in task["keep_freqs"]]
        for sample in samples[: task["count"] - len(entries)]:
            if task["label"]:
                sample = sample._replace(freq=task["label"])
            entries.append({
                "item_id": f"{task['name']}-{task['shard']:05d}-{len(entries):05d}",
                "start": _random_start(rng, sample.freq, sample.target.shape[-1]),
                "freq": sample.freq,
                "target": np.ascontiguousarray(sample.target, dtype=np.float32),
            })
    stats = _write_shard(entries, task["name"], task["shard"], Path(task["out_dir"]))
    stats.update(failures=failures, seconds=time.perf_counter() - began)
    return stats


def _write_shard(entries: list[dict[str, Any]], name: str, shard: int, out_dir: Path) -> dict[str, Any]:
    """Write one shard's entries as an Arrow file; its statistics (``path`` None when empty)."""
    from gluonts.dataset.arrow import ArrowWriter

    stats = {"name": name, "shard": shard, "series": len(entries),
             "points": int(sum(e["target"].size for e in entries)), "failures": [],
             "freqs": dict(Counter(e["freq"] for e in entries)), "path": None, "seconds": 0.0}
    if entries:
        rel = f"{name}/part-{shard:05d}.arrow"
        path = out_dir / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        ArrowWriter(compression=None).write_to_file(entries, path)
        stats.update(path=rel, sha256=file_sha256(path), bytes=path.stat().st_size)
    return stats


def _origin(entry: dict[str, Any]) -> str:
    """The real series an entry was read or aggregated from."""
    return entry.get("origin", entry["item_id"])


def _real_shards(recipe: dict[str, Any], out_dir: Path) -> list[dict[str, Any]]:
    """Shards of every real source: its series in file and id order, evaluation look-alikes dropped."""
    results = []
    for name, spec in recipe["generators"].items():
        if spec["kind"] != "real" or spec["count"] == 0:
            continue
        began = time.perf_counter()
        read = read_real_series(table_files(spec["path"], spec.get("files")), min_length=spec["length_min"],
                                aggregate_to=spec.get("aggregate_to", ()))
        series = [e for e in read if e["freq"] in spec["keep_freqs"]] if spec.get("keep_freqs") else read
        excluded: list[str] = []
        if spec["exclude"]:
            # a kept series goes when it, the series it was aggregated from or another aggregate of that
            # series shares values with an evaluation series
            guard = ValueFingerprints.of_folders(spec["exclude"], run=spec["exclude_run"])
            kept_origins = {_origin(e) for e in series}
            tainted = {_origin(e) for e in read if _origin(e) in kept_origins and guard.matches(e["target"])}
            excluded = [e["item_id"] for e in series if _origin(e) in tainted]
            series = [e for e in series if _origin(e) not in tainted]
        for e in series:
            e.pop("origin", None)  # bookkeeping, not a field of the corpus
        series = series[: spec["count"]]
        for e in series:  # the longest series keep their most recent length_max steps
            e["target"] = np.ascontiguousarray(e["target"][-spec["length_max"]:])
        # one statistics row per shard (at least one, so the exclusions are recorded even when nothing is
        # left); the first row carries the exclusions and the source's wall time
        starts = range(0, max(len(series), 1), spec["shard_size"])
        shards = [_write_shard(series[b: b + spec["shard_size"]], name, k, out_dir) for k, b in enumerate(starts)]
        shards[0].update(excluded=excluded, seconds=time.perf_counter() - began)
        results += shards
    return results


# ----------------------------------------------------------------------------- building
def _limit_threads() -> None:
    """Worker initializer: one BLAS thread per process (the machine has few cores)."""
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover - threadpoolctl ships with scikit-learn
        pass


def _mp_context() -> Any:
    """fork where it exists: workers start in milliseconds and a caller's script needs no
    ``if __name__ == "__main__"`` guard (spawn re-imports it); workers use numpy/scipy only."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def _tasks(recipe: dict[str, Any], out_dir: Path, kinds: set[str]) -> list[dict[str, Any]]:
    tasks = []
    for name, spec in recipe["generators"].items():
        if spec["kind"] not in kinds:
            continue
        params = {k: v for k, v in spec.items() if k not in COMMON_KEYS}
        for shard, begin in enumerate(range(0, spec["count"], spec["shard_size"])):
            tasks.append({
                "seed": recipe["seed"], "name": name, "kind": spec["kind"], "shard": shard,
                "count": min(spec["shard_size"], spec["count"] - begin), "params": params,
                "length_min": spec["length_min"], "length_max": spec["length_max"],
                "label": spec.get("label"), "keep_freqs": spec.get("keep_freqs"), "out_dir": str(out_dir),
            })
    return tasks


def _run_all(tasks: list[dict[str, Any]], pool: cf.Executor | None, bar: Any) -> list[dict[str, Any]]:
    if pool is None:
        results = []
        for task in tasks:
            results.append(_run_shard(task))
            bar.update(1)
        return results
    futures = [pool.submit(_run_shard, t) for t in tasks]
    for _ in cf.as_completed(futures):
        bar.update(1)
    return [f.result() for f in futures]


def _probe_chaos(recipe: dict[str, Any], pool: cf.Executor | None) -> tuple[list[str], dict[str, str]]:
    """Working dysts systems for the recipe's chaos generators (union of their system lists)."""
    specs = [s for s in recipe["generators"].values() if s["kind"] == "chaos" and s["count"] > 0]
    if not specs:
        return [], {}
    names = sorted({n for s in specs for n in (s.get("systems") or list_systems())})
    probe = {k: v for s in specs for k, v in (s.get("probe") or {}).items()}
    map_fn = pool.map if pool is not None else map
    return working_systems(default_cache_root(), names, map_fn=map_fn, **probe)


def build_corpus(
    recipe: Mapping[str, Any], out_dir: str | Path, *, num_workers: int = 1, progress: bool = True
) -> Path:
    """Build (or find cached) the corpus of ``recipe`` in ``out_dir``; returns ``out_dir``.

    The same recipe gives byte-identical Arrow files whatever ``num_workers`` is. A directory
    whose manifest has the same recipe hash is returned at once; one holding anything else is
    refused. Files are written to a temporary sibling and renamed into place at the end.
    """
    from tqdm.auto import tqdm

    recipe = validate_recipe(recipe)
    digest = recipe_hash(recipe)
    out = Path(out_dir)
    manifest_path = out / MANIFEST
    if manifest_path.exists():
        if json.loads(manifest_path.read_text()).get("recipe_hash") == digest:
            return out
        raise InputError(f"{out} holds a corpus of another recipe; pass another out_dir or delete it")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError(f"{out} exists and is not an empty directory; pass another out_dir or delete it")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.building-", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the finished corpus is an ordinary directory
    began = time.perf_counter()
    pool = None
    try:
        if num_workers > 1:
            pool = cf.ProcessPoolExecutor(num_workers, mp_context=_mp_context(), initializer=_limit_threads)
        working, skipped = _probe_chaos(recipe, pool)
        base = _tasks(recipe, tmp, {k for k, kind in KINDS.items() if kind.fn is not None and not kind.reads_pool})
        for task in base:
            if task["kind"] == "chaos":
                wanted = task["params"].get("systems")
                held_out = set(task["params"].get("exclude_systems") or ())
                task["systems"] = [s for s in working if (not wanted or s in wanted) and s not in held_out]
        base.sort(key=lambda t: t["kind"] != "chaos")  # slow shards first balances the pool
        mix = _tasks(recipe, tmp, {k for k, kind in KINDS.items() if kind.reads_pool})
        with tqdm(total=len(base) + len(mix), desc=f"corpus {recipe['name']}", file=sys.stderr,
                  disable=not progress, unit="shard") as bar:
            results = _real_shards(recipe, tmp) + _run_all(base, pool, bar)
            for task in mix:
                sources = pool_sources(recipe["generators"], task["name"])
                task["pool_files"] = [str(tmp / r["path"]) for r in sorted(results, key=_order)
                                      if r["path"] and r["name"] in sources]
            results += _run_all(mix, pool, bar)
        manifest = _manifest(recipe, digest, results, working, skipped, num_workers,
                             time.perf_counter() - began)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
        _move_into_place(tmp, out, digest)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
        shutil.rmtree(tmp, ignore_errors=True)
    log.info("corpus %s: %d series in %.1f s", out, manifest["totals"]["series"], manifest["build"]["seconds"])
    return out


def _order(result: Mapping[str, Any]) -> tuple[str, int]:
    return result["name"], result["shard"]


def _move_into_place(tmp: Path, out: Path, digest: str) -> None:
    """Rename the finished build to ``out``; another process finishing first is fine."""
    try:
        if out.exists():
            out.rmdir()  # only an empty directory gets here
        os.replace(tmp, out)
    except OSError:
        theirs = out / MANIFEST
        if not (theirs.exists() and json.loads(theirs.read_text()).get("recipe_hash") == digest):
            raise


def _manifest(recipe: dict[str, Any], digest: str, results: list[dict[str, Any]], working: list[str],
              skipped: dict[str, str], num_workers: int, seconds: float) -> dict[str, Any]:
    results = sorted(results, key=_order)
    total_weight = sum(s["weight"] for s in recipe["generators"].values() if s["count"] > 0) or 1.0
    generators, failed_draws = {}, {}
    for name, spec in recipe["generators"].items():
        mine = [r for r in results if r["name"] == name]
        freqs: Counter[str] = Counter()
        for r in mine:
            freqs.update(r["freqs"])
        generators[name] = {
            "kind": spec["kind"], "series": sum(r["series"] for r in mine),
            "points": sum(r["points"] for r in mine), "requested": spec["count"],
            "weight": spec["weight"] / total_weight if spec["count"] > 0 else 0.0,
            "length_min": spec["length_min"], "length_max": spec["length_max"],
            "freqs": dict(sorted(freqs.items())),
            "worker_seconds": round(sum(r["seconds"] for r in mine), 2),
            "files": [r["path"] for r in mine if r["path"]],
        }
        if spec["kind"] == "real":
            generators[name]["excluded"] = sorted(e for r in mine for e in r.get("excluded", []))
        for r in mine:
            for system, reason in r["failures"]:
                failed_draws.setdefault(system, Counter())[reason] += 1
    files = [{"path": r["path"], "generator": r["name"], "series": r["series"], "points": r["points"],
              "bytes": r["bytes"], "sha256": r["sha256"]} for r in results if r["path"]]
    return {
        "format": CORPUS_FORMAT,
        "tsfm_version": code_version(),
        "recipe": recipe,
        "recipe_hash": digest,
        "data_files": data_digests(recipe),
        "seed": recipe["seed"],
        "generators": generators,
        "mixing_weights": {n: g["weight"] for n, g in generators.items()},
        "files": files,
        "totals": {"series": sum(f["series"] for f in files), "points": sum(f["points"] for f in files),
                   "bytes": sum(f["bytes"] for f in files)},
        "dysts": (_dysts_section(working, skipped, failed_draws, held_out_systems(recipe))
                  if working or skipped else None),
        "build": {"seconds": round(seconds, 2), "num_workers": num_workers,
                  "finished": pd.Timestamp.now(tz="UTC").isoformat(timespec="seconds"),
                  "python": platform.python_version(), "numpy": np.__version__},
    }



def _dysts_section(working: list[str], skipped: dict[str, str], failed: dict[str, Counter],
                   held_out: list[str]) -> dict[str, Any]:
    return {
        "held_out": held_out,
        "version": importlib.metadata.version("dysts"),
        "integrator": {"method": "LSODA", "rtol": 1e-6, "atol": 1e-9},
        "working": working,
        "skipped": dict(sorted(skipped.items())),
        "failed_draws": {s: dict(c) for s, c in sorted(failed.items())},
    }
