"""Reading a built corpus: its manifest, its entries (in memory) and its targets (memory-mapped)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tsfm.errors import InputError

MANIFEST = "manifest.json"


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of a built corpus directory, or ``InputError`` when there is none."""
    p = Path(path) / MANIFEST
    if not p.is_file():
        raise InputError(f"{path} is not a built corpus (no {MANIFEST}); build it with build_corpus")
    return json.loads(p.read_text())


def _read_shard(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow as pa

    with pa.memory_map(str(path)) as source:
        table = pa.ipc.open_file(source).read_all()
        target = table.column("target").combine_chunks()
        offsets = target.offsets.to_numpy()
        values = target.values.to_numpy(zero_copy_only=False).astype(np.float32, copy=True)
        shapes = table.column("target._np_shape").to_pylist() if "target._np_shape" in table.column_names else None
        ids, starts, freqs = (table.column(c).to_pylist() for c in ("item_id", "start", "freq"))
    for i in range(len(ids)):
        arr = values[offsets[i]: offsets[i + 1]]
        yield {"item_id": ids[i], "start": starts[i], "freq": freqs[i],
               "target": arr.reshape(shapes[i]) if shapes else arr}


def iter_corpus(path: str | Path, generators: list[str] | None = None) -> Iterator[dict[str, Any]]:
    """Entries of a corpus, one shard in memory at a time, in manifest order."""
    manifest = read_manifest(path)
    for f in manifest["files"]:
        if generators is None or f["generator"] in generators:
            yield from _read_shard(Path(path) / f["path"])


def load_corpus(path: str | Path, generators: list[str] | None = None) -> list[dict[str, Any]]:
    """All entries of a corpus (numpy float32 targets), optionally of some generators only."""
    return list(iter_corpus(path, generators))


class MappedTargets(Sequence):
    """The targets of some corpus shards, read through memory maps (the streaming path).

    ``self[i]`` is a zero-copy float32 view into the mapped Arrow file, so training keeps only
    offsets and frequency names in memory and the operating system pages values in on demand: the
    corpus size is bounded by disk, not RAM. Same series, same order as :func:`load_corpus`.
    Pickles as its file list (a spawned dataloader worker re-maps the files, copying nothing).
    """

    def __init__(self, files: Sequence[str | Path]) -> None:
        import pyarrow as pa

        self.files = [str(f) for f in files]
        self._chunks: list[tuple[np.ndarray, np.ndarray, list | None]] = []  # values, offsets, shapes
        self.freqs: list[str] = []
        ends = []
        for path in self.files:
            table = pa.ipc.open_file(pa.memory_map(path)).read_all()
            shapes = table.column("target._np_shape") if "target._np_shape" in table.column_names else None
            row = 0
            for chunk in table.column("target").chunks:
                values = chunk.values.to_numpy(zero_copy_only=True)  # float32 in the mapped file
                offsets = chunk.offsets.to_numpy()
                chunk_shapes = shapes.slice(row, len(chunk)).to_pylist() if shapes is not None else None
                self._chunks.append((values, offsets, chunk_shapes))
                row += len(chunk)
                ends.append((ends[-1] if ends else 0) + len(chunk))
            self.freqs += table.column("freq").to_pylist()
        self._ends = np.asarray(ends, dtype=np.int64)

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def __getitem__(self, index: int) -> np.ndarray:
        if not -len(self) <= index < len(self):
            raise IndexError(f"series {index} out of range for {len(self)} series")
        index %= len(self)
        k = int(np.searchsorted(self._ends, index, side="right"))
        local = index - (int(self._ends[k - 1]) if k else 0)
        values, offsets, shapes = self._chunks[k]
        series = values[offsets[local]: offsets[local + 1]]
        return series.reshape(shapes[local]) if shapes is not None else series

    def lengths(self) -> np.ndarray:
        """Time steps of every series (the last axis of a multivariate one), without reading values."""
        out = []
        for _, offsets, shapes in self._chunks:
            if shapes is None:
                out.append(np.diff(offsets))
            else:
                out.append(np.array([shape[-1] for shape in shapes], dtype=np.int64))
        return np.concatenate(out).astype(np.int64) if out else np.zeros(0, dtype=np.int64)

    def __getstate__(self) -> dict[str, Any]:
        return {"files": self.files}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["files"])


def open_corpus(path: str | Path, generators: list[str] | None = None) -> MappedTargets:
    """The targets of a built corpus (optionally of some generators), memory-mapped."""
    manifest = read_manifest(path)
    return MappedTargets([Path(path) / f["path"] for f in manifest["files"]
                          if generators is None or f["generator"] in generators])
