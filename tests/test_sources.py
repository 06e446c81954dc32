"""Real-data sources on local files only: a fake GluonTS repository cache, offline failures, local files."""

from __future__ import annotations

import gzip
import json
import urllib.error
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tsfm.data import sources
from tsfm.data.sources import DatasetUnavailableError, load_gluonts_repository, load_local_dataset
from tsfm.errors import InputError


def write_jsonl(path: Path, rows: list[dict], gz: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(r) + "\n" for r in rows)
    if gz:
        with gzip.open(path, "wt") as f:
            f.write(text)
    else:
        path.write_text(text)


def fake_repository(root: Path, name: str = "m4_hourly") -> Path:
    """The layout GluonTS' get_dataset leaves behind: metadata.json + train/ + test/."""
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "metadata.json").write_text(json.dumps({"freq": "H", "prediction_length": 4}))
    train = [{"start": "2020-01-01 00:00:00", "target": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "item_id": "T1"},
             {"start": "2020-02-01 05:00:00", "target": [7.0, "NaN", 9.0, 10.0, 11.0, 12.0], "item_id": "T2"}]
    write_jsonl(folder / "train" / "data.json", train)
    test = [dict(r, target=r["target"] + [0.5] * 4) for r in train]
    write_jsonl(folder / "test" / "data.json", test)
    return folder


@pytest.fixture
def no_network(monkeypatch):
    """Downloads fail the way GluonTS' Monash recipe fails offline: folder first, then URLError."""
    from gluonts.dataset.repository import datasets

    calls = []

    def offline_recipe(dataset_path: Path, **kwargs):
        calls.append(dataset_path)
        dataset_path.mkdir(exist_ok=True)
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    for name in ("m4_hourly", "nn5_daily_with_missing"):
        monkeypatch.setitem(datasets.dataset_recipes, name, offline_recipe)
    return calls


def test_cached_repository_loads_without_network(tmp_path, no_network) -> None:
    folder = fake_repository(tmp_path)
    data = load_gluonts_repository("m4_hourly", path=tmp_path)
    assert no_network == []  # the downloader was never called
    assert data.freq == "h" and data.prediction_length == 4 and data.path == folder
    assert [e["item_id"] for e in data.train] == ["T1", "T2"]
    first = data.train[1]
    assert first["start"] == "2020-02-01T05:00:00" and first["freq"] == "h"
    assert first["target"].dtype == np.float32 and np.isnan(first["target"][1])
    np.testing.assert_array_equal(data.test[0]["target"], [1, 2, 3, 4, 5, 6, 0.5, 0.5, 0.5, 0.5])


def test_offline_download_is_one_line_and_leaves_no_folder(tmp_path, no_network) -> None:
    with pytest.raises(DatasetUnavailableError) as err:
        load_gluonts_repository("nn5_daily_with_missing", path=tmp_path)
    message = str(err.value)
    assert "\n" not in message and isinstance(err.value, InputError)
    assert message.startswith(f"dataset nn5_daily_with_missing not cached at {tmp_path / 'nn5_daily_with_missing'}")
    assert "no network" in message and "URLError" in message
    assert len(no_network) == 1 and not (tmp_path / "nn5_daily_with_missing").exists()
    # the next call fails the same clean way instead of on a missing metadata.json
    with pytest.raises(DatasetUnavailableError, match="not cached"):
        load_gluonts_repository("nn5_daily_with_missing", path=tmp_path)


def test_stale_empty_folder_is_replaced_by_a_fresh_download(tmp_path, monkeypatch) -> None:
    (tmp_path / "m4_hourly").mkdir()  # what a failed GluonTS download used to leave

    def download(name: str, root: Path, regenerate: bool) -> None:
        assert not (root / name).exists()
        fake_repository(root, name)

    monkeypatch.setattr(sources, "_materialize", download)
    data = load_gluonts_repository("m4_hourly", path=tmp_path)
    assert len(data.train) == 2 and len(data.test) == 2


def test_unknown_repository_name(tmp_path) -> None:
    with pytest.raises(InputError, match="unknown GluonTS dataset 'm9_hourly'"):
        load_gluonts_repository("m9_hourly", path=tmp_path)


def test_local_json_lines_and_gzip(tmp_path) -> None:
    rows = [{"start": "2001-01-01", "target": [1, 2, 3], "item_id": "a"},
            {"start": "2001-04-01", "target": [[1, 2], [3, 4]]}]
    write_jsonl(tmp_path / "d.jsonl.gz", rows, gz=True)
    entries = load_local_dataset(tmp_path / "d.jsonl.gz", freq="QS")
    assert [e["item_id"] for e in entries] == ["a", f"{tmp_path / 'd.jsonl.gz'}#1"]
    assert entries[0]["start"] == "2001-01-01T00:00:00" and entries[0]["freq"] == "QS"
    assert entries[1]["target"].shape == (2, 2) and entries[1]["target"].dtype == np.float32
    with pytest.raises(InputError, match="has no frequency; pass freq"):
        load_local_dataset(tmp_path / "d.jsonl.gz")
    write_jsonl(tmp_path / "bad.json", [{"start": "2001-01-01", "target": ["x", 2]}])
    with pytest.raises(InputError, match="non-numeric target"):
        load_local_dataset(tmp_path / "bad.json", freq="D")


def test_local_arrow_from_gluonts_writer(tmp_path) -> None:
    from gluonts.dataset.arrow import ArrowWriter

    rows = [{"item_id": "x", "start": pd.Period("2010-03", freq="M"), "target": np.arange(5, dtype=np.float32)}]
    ArrowWriter().write_to_file(rows, tmp_path / "d.feather")
    (entry,) = load_local_dataset(tmp_path / "d.feather", freq="MS")
    assert entry["start"] == "2010-03-01T00:00:00" and entry["freq"] == "MS"
    np.testing.assert_array_equal(entry["target"], np.arange(5))


def test_local_csv_long_format_and_folders(tmp_path) -> None:
    df = pd.DataFrame({"unique_id": ["s1"] * 4 + ["s2"] * 3,
                       "ds": list(pd.date_range("2000-01-01", periods=4, freq="MS"))
                       + list(pd.date_range("2000-03-01", periods=3, freq="MS")),
                       "y": [1.0, 2.0, 3.0, 4.0, 10.0, 20.0, 30.0]})
    (tmp_path / "data").mkdir()
    df.to_csv(tmp_path / "data" / "long.csv", index=False)
    write_jsonl(tmp_path / "data" / "sub" / "more.json", [{"start": "2000-01-01", "target": [5, 6, 7]}])
    entries = load_local_dataset(tmp_path / "data" / "long.csv")
    assert [(e["item_id"], e["start"], e["freq"]) for e in entries] == [
        ("s1", "2000-01-01T00:00:00", "MS"), ("s2", "2000-03-01T00:00:00", "MS")]
    np.testing.assert_array_equal(entries[1]["target"], [10, 20, 30])
    both = load_local_dataset(tmp_path / "data", freq="MS")
    assert [e["item_id"] for e in both][:2] == ["s1", "s2"] and len(both) == 3
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no series files"):
        load_local_dataset(tmp_path / "empty")
    with pytest.raises(InputError, match="does not exist"):
        load_local_dataset(tmp_path / "missing.csv")
    sales = df.rename(columns={"unique_id": "store", "ds": "date", "y": "sales"}).assign(promo=1.0)
    sales.to_csv(tmp_path / "sales.csv", index=False)
    with pytest.raises(InputError, match="cannot tell long from wide format"):
        load_local_dataset(tmp_path / "sales.csv")
    named = load_local_dataset(tmp_path / "sales.csv", id_col="store", target="sales")  # as tsfm forecast names them
    assert [e["item_id"] for e in named] == ["s1", "s2"]
    np.testing.assert_array_equal(named[1]["target"], [10, 20, 30])
    with pytest.raises(InputError, match="name the columns of CSV/Parquet tables"):
        load_local_dataset(tmp_path / "data" / "sub" / "more.json", freq="D", target="y")


def test_local_built_corpus_folder(tmp_path, monkeypatch) -> None:
    from tsfm.data.corpus import build_corpus
    from tsfm.data.corpus_reading import load_corpus

    monkeypatch.setenv("TSFM_CACHE", str(tmp_path / "cache"))
    recipe = {"seed": 1, "generators": {"structural": {"count": 5, "length_min": 20, "length_max": 40}}}
    out = build_corpus(recipe, tmp_path / "corpus", progress=False)
    entries = load_local_dataset(out)
    reference = load_corpus(out)
    assert [e["item_id"] for e in entries] == [e["item_id"] for e in reference]
    assert all(np.array_equal(a["target"], b["target"]) for a, b in zip(entries, reference))
