"""Real training data next to the synthetic corpus: GluonTS' repository and local files.

Everything comes out in the corpus entry format,
``{"item_id": str, "start": ISO str, "freq": str, "target": float32 [T] or [C, T]}``, with
timestamp aliases (``MS``, ``QS``, ``YS``...) rather than GluonTS' period aliases.

``load_gluonts_repository`` wraps ``gluonts.dataset.repository.get_dataset`` so that it never
touches the network when the dataset is cached, says in one line when it is not and cannot be
downloaded, and leaves no empty dataset folder behind a failed download (GluonTS' Monash
recipe creates the folder first, and the next call then fails on a missing metadata.json).
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from tsfm.errors import InputError

__all__ = [
    "DatasetUnavailableError", "RepositoryDataset", "gluonts_cache_dir", "load_gluonts_repository",
    "load_local_dataset",
]


class DatasetUnavailableError(InputError):
    """A GluonTS repository dataset is not cached and cannot be downloaded here."""


@dataclass
class RepositoryDataset:
    """A GluonTS repository dataset in the corpus entry format."""

    name: str
    path: Path
    freq: str
    prediction_length: int | None
    train: list[dict[str, Any]]
    test: list[dict[str, Any]]


def gluonts_cache_dir() -> Path:
    """Where GluonTS keeps repository datasets (``~/.gluonts/datasets``; no env override)."""
    return Path.home() / ".gluonts" / "datasets"


def _materialize(name: str, root: Path, regenerate: bool) -> None:
    """Download and convert one dataset with GluonTS (the step tests replace to go offline)."""
    from gluonts.dataset.repository.datasets import materialize_dataset

    materialize_dataset(name, path=root, regenerate=regenerate)


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0][:160]}" if text else type(err).__name__


def load_gluonts_repository(
    name: str, path: str | Path | None = None, regenerate: bool = False
) -> RepositoryDataset:
    """A GluonTS repository dataset, from the cache at ``path`` when it is there.

    Raises ``DatasetUnavailableError`` (an ``InputError``) in one line when the dataset is not
    cached and the download fails, and ``InputError`` for a name GluonTS does not know.
    """
    from gluonts.dataset.repository.datasets import dataset_names

    root = gluonts_cache_dir() if path is None else Path(path)
    folder = root / name
    cached = (folder / "metadata.json").is_file()
    if not cached or regenerate:
        if name not in dataset_names:
            raise InputError(f"unknown GluonTS dataset {name!r}; known names include "
                             f"{', '.join(sorted(dataset_names)[:8])}, ... (gluonts.dataset.repository)")
        if folder.exists() and not cached:
            shutil.rmtree(folder)  # leftover of an earlier failed download
        try:
            _materialize(name, root, regenerate)
        except Exception as err:  # urllib, zip, Kaggle and parsing errors all mean "not here"
            if not (folder / "metadata.json").is_file():
                shutil.rmtree(folder, ignore_errors=True)
            raise DatasetUnavailableError(
                f"dataset {name} not cached at {folder} and no network ({_first_line(err)}); "
                f"fetch it on a connected machine and copy it there, or pass path= to a copy"
            ) from None
        if not (folder / "metadata.json").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            raise DatasetUnavailableError(f"dataset {name}: the download left no metadata.json in {folder}")
    return _read_repository_folder(name, folder)


def _read_repository_folder(name: str, folder: Path) -> RepositoryDataset:
    from gluonts.dataset.common import load_datasets

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            data = load_datasets(metadata=folder, train=folder / "train", test=folder / "test")
            freq = _timestamp_freq(data.metadata.freq)
            train = _entries(data.train, freq, f"{name}/train")
            test = _entries(data.test, freq, f"{name}/test") if data.test is not None else []
    except Exception as err:
        raise InputError(f"cannot read GluonTS dataset {name} at {folder} ({_first_line(err)}); "
                         f"pass regenerate=True or delete the folder") from None
    return RepositoryDataset(name, folder, freq, data.metadata.prediction_length, train, test)


def _timestamp_freq(freq: str) -> str:
    """GluonTS/pandas period alias -> timestamp alias (``M`` -> ``MS``, ``H`` -> ``h``)."""
    from tsfm.data.gluonts_adapters import timestamp_freq

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return timestamp_freq(to_offset(freq).freqstr)


def _iso_start(start: Any, freq: str) -> str:
    """An ISO timestamp on the grid of ``freq`` for a Period, Timestamp, datetime or string."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        if isinstance(start, pd.Period):
            return to_offset(freq).rollforward(start.start_time).isoformat()
        return pd.Timestamp(start).isoformat()


def _entry(raw: dict[str, Any], freq: str | None, fallback_id: str, source: str) -> dict[str, Any]:
    """A raw GluonTS-style dict as a corpus entry; ``freq`` wins over the entry's own."""
    start = raw.get("start")
    if start is None or "target" not in raw:
        raise InputError(f"{source}: entry {fallback_id} needs 'start' and 'target' fields")
    entry_freq = freq or raw.get("freq")
    if entry_freq is None and isinstance(start, pd.Period):
        entry_freq = _timestamp_freq(start.freqstr)
    if entry_freq is None:
        raise InputError(f"{source} has no frequency; pass freq (a pandas alias such as 'h' or 'MS')")
    try:
        target = np.asarray(raw["target"], dtype=np.float32)
    except (TypeError, ValueError):
        raise InputError(f"{source}: entry {fallback_id} has a non-numeric target") from None
    if target.ndim not in (1, 2) or target.shape[-1] == 0:
        raise InputError(f"{source}: entry {fallback_id} needs a non-empty [T] or [C, T] target")
    return {"item_id": str(raw.get("item_id", fallback_id)), "start": _iso_start(start, entry_freq),
            "freq": str(entry_freq), "target": target}


def _entries(raws: Iterable[dict[str, Any]], freq: str | None, source: str) -> list[dict[str, Any]]:
    return [_entry(raw, freq, f"{source}#{i}", source) for i, raw in enumerate(raws)]


_ARROW = (".arrow", ".feather")
_JSONL = (".json", ".jsonl", ".json.gz", ".jsonl.gz")
_TABLE = (".csv", ".csv.gz", ".parquet", ".pq")
_SKIP = {"metadata.json", "manifest.json"}


def _suffix(path: Path) -> str:
    name = path.name.lower()
    for suffix in _ARROW + _JSONL + _TABLE:
        if name.endswith(suffix):
            return suffix
    return ""


def _read_arrow(path: Path) -> Iterator[dict[str, Any]]:
    from gluonts.dataset.arrow import ArrowFile

    yield from ArrowFile(path)


def _read_jsonl(path: Path) -> Iterator[dict[str, Any]]:
    from gluonts.dataset.jsonl import JsonLinesFile

    yield from JsonLinesFile(path)


def _read_table(path: Path, freq: str | None, columns: Mapping[str, str]) -> list[dict[str, Any]]:
    """A long or wide CSV/Parquet table through ``tsfm.data.loading.load_series`` (``columns``: its
    ``id_col`` / ``time_col`` / ``target``, as ``tsfm forecast`` takes them)."""
    from tsfm.data.loading import load_series

    try:
        series = load_series(path, freq=freq, **columns)
    except InputError as err:  # a folder of files: say which one
        raise InputError(f"{path}: {str(err).splitlines()[0]}") from None
    entries = []
    for uid, start, values in zip(series.ids, series.starts, series.values):
        target = values[:, 0] if values.shape[1] == 1 else values.T
        entries.append({"item_id": str(uid), "start": pd.Timestamp(start).isoformat(), "freq": series.freq,
                        "target": np.ascontiguousarray(target, dtype=np.float32)})
    return entries


def _read_file(path: Path, freq: str | None, columns: Mapping[str, str]) -> list[dict[str, Any]]:
    suffix = _suffix(path)
    if suffix in _TABLE:
        return _read_table(path, freq, columns)
    if columns:
        raise InputError(f"{path}: {', '.join(columns)} name the columns of CSV/Parquet tables; "
                         "Arrow and JSON lines entries carry their target in 'target'")
    reader = _read_arrow if suffix in _ARROW else _read_jsonl
    try:
        raws = list(reader(path))
    except Exception as err:  # pyarrow / orjson raise their own types for broken files
        raise InputError(f"cannot read {path} as {'Arrow' if suffix in _ARROW else 'JSON lines'} "
                         f"({_first_line(err)}); is the file complete?") from None
    return _entries(raws, freq, str(path))


def load_local_dataset(path: str | Path, freq: str | None = None, *, id_col: str | None = None,
                       time_col: str | None = None, target: str | None = None) -> list[dict[str, Any]]:
    """Series from a file or a folder of files in the corpus entry format.

    Reads Arrow/Feather and JSON lines (``.json``, ``.jsonl``, optionally ``.gz``) written by
    GluonTS or by ``build_corpus``, and long or wide CSV/Parquet tables (``id_col``, ``time_col``,
    ``target`` name their columns where they cannot be told, as in ``tsfm forecast``). A folder
    holding a built corpus (``manifest.json``) is read as that corpus; any other folder contributes
    every supported file below it, in sorted order. ``freq`` overrides the files' own frequency and
    is required for JSON/Arrow entries that carry none.
    """
    columns = {k: v for k, v in (("id_col", id_col), ("time_col", time_col), ("target", target)) if v is not None}
    p = Path(path)
    if not p.exists():
        raise InputError(f"dataset path {p} does not exist")
    if p.is_dir() and (p / "manifest.json").is_file():
        from tsfm.data.corpus_reading import load_corpus

        entries = load_corpus(p)
        if freq is not None:
            for e in entries:
                e["freq"] = freq
        return entries
    if p.is_file():
        if not _suffix(p):
            raise InputError(f"{p}: unsupported file type; use .arrow/.feather, .json(l)[.gz], .csv or .parquet")
        files = [p]
    else:
        files = sorted(f for f in p.rglob("*") if f.is_file() and _suffix(f) and f.name not in _SKIP)
    if not files:
        raise InputError(f"no series files in {p}; expected .arrow/.feather, .json(l)[.gz], .csv or .parquet")
    entries: list[dict[str, Any]] = []
    for f in files:
        entries.extend(_read_file(f, freq, columns))
    return entries
