"""Real series in the corpus: reading, determinism, and the value check that keeps evaluation data out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from tsfm.data.corpus import build_corpus
from tsfm.data.corpus_reading import load_corpus, read_manifest
from tsfm.data.corpus_recipe import recipe_hash, validate_recipe
from tsfm.data.real import ValueFingerprints, aggregate_to_calendar, read_real_series
from tsfm.errors import InputError

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("TSFM_CACHE", str(tmp_path / "cache"))


def long_table(series: dict[str, tuple[str, str, np.ndarray]]) -> pd.DataFrame:
    frames = [pd.DataFrame({"unique_id": uid, "ds": pd.date_range(start, periods=len(y), freq=freq), "y": y})
              for uid, (start, freq, y) in series.items()]
    return pd.concat(frames, ignore_index=True)


@pytest.fixture
def real_folder(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    folder = tmp_path / "real"
    folder.mkdir()
    gappy = np.r_[np.nan, np.nan, rng.normal(size=30), np.nan, rng.normal(size=20), np.nan]
    long_table({
        "b_monthly": ("1990-01-01", "MS", 100 + rng.normal(size=60).cumsum()),
        "a_yearly": ("1950-01-01", "YS", rng.normal(size=25).cumsum()),
        "c_gappy": ("2000-01-03", "W-MON", gappy),
        "d_short": ("2000-01-01", "QS", rng.normal(size=5)),
        "e_hourly": ("2000-01-01", "h", np.sin(np.arange(200) / 3.0) + rng.normal(size=200) * 0.1),
    }).to_parquet(folder / "series.parquet")
    return folder


def test_series_are_read_in_id_order_with_their_frequency_and_trimmed_gaps(real_folder) -> None:
    entries = read_real_series([real_folder / "series.parquet"], min_length=10)
    assert [e["item_id"] for e in entries] == ["series/a_yearly", "series/b_monthly", "series/c_gappy",
                                              "series/e_hourly"]  # d_short (5 points) dropped
    assert [e["freq"] for e in entries] == ["YS", "MS", "W-SUN", "h"]
    gappy = entries[2]["target"]
    assert len(gappy) == 51 and np.isfinite(gappy[[0, -1]]).all() and np.isnan(gappy[30])  # inner gap kept
    assert entries[0]["start"].startswith("1950-01-01") and entries[0]["target"].dtype == np.float32


def test_fingerprints_find_exact_and_affine_copies_but_not_chance_shapes() -> None:
    rng = np.random.default_rng(1)
    evaluation = rng.normal(size=80).cumsum()
    guard = ValueFingerprints([evaluation, np.arange(50.0), np.r_[np.zeros(20), np.ones(20)]])
    other = rng.normal(size=300).cumsum()
    assert guard.matches(np.r_[other, evaluation[30:40], other])  # an exact run of 10
    assert guard.matches(np.r_[other, 3.5 * evaluation[10:30] - 7.0])  # rescaled and shifted
    assert not guard.matches(other)
    assert not guard.matches(np.arange(100.0) * 2 + 5)  # every ramp z-normalises alike: not evidence
    assert not guard.matches(np.r_[np.zeros(30), 5 * np.ones(30)])  # nor do steps and plateaus


def recipe(folder: Path, exclude: list[str] | None = None) -> dict:
    return {"name": "real", "seed": 3, "generators": {
        "real": {"path": str(folder), "files": ["series.parquet"], "exclude": exclude or [],
                 "count": 100, "length_min": 10, "length_max": 100, "shard_size": 2, "weight": 0.5},
        "structural": {"count": 20, "length_min": 20, "length_max": 100, "shard_size": 10},
        "mixup": {"count": 12, "length_min": 20, "length_max": 80, "sources": ["real", "structural"]},
        "copies": {"kind": "bootstrap", "count": 40, "length_min": 20, "length_max": 80, "sources": ["real"]},
    }}


def test_a_real_source_builds_deterministically_and_mixes(real_folder, tmp_path) -> None:
    a = build_corpus(recipe(real_folder), tmp_path / "a", progress=False)
    b = build_corpus(recipe(real_folder), tmp_path / "b", num_workers=2, progress=False)
    files = sorted(p.relative_to(a) for p in a.rglob("*.arrow"))
    assert files and all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    real = load_corpus(a, generators=["real"])
    assert [e["item_id"] for e in real] == ["series/a_yearly", "series/b_monthly", "series/c_gappy",
                                           "series/e_hourly"]
    assert all(len(e["target"]) <= 100 for e in real)  # the longest keep their last 100 steps
    mixed = load_corpus(a, generators=["mixup"])
    assert len(mixed) == 12 and all(np.isfinite(e["target"]).all() for e in mixed)  # gaps interpolated
    copies = load_corpus(a, generators=["copies"])
    assert len(copies) == 40 and {e["freq"] for e in copies} <= {"YS", "MS", "W-SUN", "h"}
    manifest = read_manifest(a)
    assert manifest["generators"]["real"]["series"] == 4 and manifest["generators"]["real"]["excluded"] == []
    assert list(manifest["data_files"]) == [str(real_folder / "series.parquet")]


def test_keep_freqs_keeps_only_the_real_series_of_those_frequencies(real_folder, tmp_path) -> None:
    spec = recipe(real_folder)
    spec["generators"]["real"]["keep_freqs"] = ["MS", "h"]
    real = load_corpus(build_corpus(spec, tmp_path / "c", progress=False), generators=["real"])
    assert [(e["item_id"], e["freq"]) for e in real] == [("series/b_monthly", "MS"), ("series/e_hourly", "h")]


def test_calendar_aggregates_are_block_means_with_partial_and_gappy_blocks_left_out() -> None:
    months = np.arange("1990-02", "1992-06", dtype="datetime64[M]").astype("datetime64[ms]")
    y = np.arange(len(months), dtype=np.float64)  # Feb 1990 .. May 1992
    y[14] = np.nan  # April 1991
    start, quarters = aggregate_to_calendar(months, y, "QS")
    # Q1 1990 and Q2 1992 hold 2 months of 3: trimmed; Q2 1991 (April) has a gap
    assert start == np.datetime64("1990-04-01T00:00:00")
    np.testing.assert_allclose(quarters, [3, 6, 9, 12, np.nan, 18, 21, 24])
    start, years = aggregate_to_calendar(months, np.arange(len(months), dtype=np.float64), "YS")
    assert start == np.datetime64("1991-01-01T00:00:00") and years.tolist() == [16.5]  # 1990, 1992 partial
    weeks = np.arange(np.datetime64("2001-01-07"), np.datetime64("2001-12-31"), np.timedelta64(7, "D"))
    start, quarters = aggregate_to_calendar(weeks.astype("datetime64[ms]"), np.ones(len(weeks)), "QS")
    assert start == np.datetime64("2001-01-01T00:00:00") and quarters.tolist() == [1.0] * 4  # 13 or 14 weeks each
    gap = np.delete(weeks, 30).astype("datetime64[ms]")
    start, quarters = aggregate_to_calendar(gap, np.ones(len(gap)), "QS")
    assert np.isnan(quarters).tolist() == [False, False, True, False]  # a week's row missing: Q3 is partial


def test_real_series_are_aggregated_only_to_coarser_resolutions(real_folder) -> None:
    entries = read_real_series([real_folder / "series.parquet"], min_length=3, aggregate_to=["QS", "YS"])
    ids = [(e["item_id"], e["freq"], len(e["target"])) for e in entries]
    assert ids == [("series/a_yearly", "YS", 25),
                   ("series/b_monthly", "MS", 60), ("series/b_monthly@QS", "QS", 20), ("series/b_monthly@YS", "YS", 5),
                   ("series/c_gappy", "W-SUN", 51), ("series/c_gappy@QS", "QS", 3),
                   ("series/d_short", "QS", 5), ("series/e_hourly", "h", 200)]
    monthly = entries[1]["target"].astype(np.float64)
    np.testing.assert_allclose(entries[2]["target"], monthly.reshape(20, 3).mean(axis=1), rtol=1e-6)
    assert entries[2]["start"] == entries[1]["start"] == "1990-01-01T00:00:00"
    assert np.isnan(entries[5]["target"]).tolist() == [False, True, False]  # Q3 2000 holds the weekly gap


def test_an_aggregate_or_its_origin_sharing_values_with_evaluation_data_keeps_both_out(real_folder, tmp_path) -> None:
    spec = recipe(real_folder)
    spec["generators"]["real"].update(aggregate_to=["QS"], keep_freqs=["QS"], length_min=3)
    built = load_corpus(build_corpus(spec, tmp_path / "a", progress=False), generators=["real"])
    assert [e["item_id"] for e in built] == ["series/b_monthly@QS", "series/c_gappy@QS", "series/d_short"]
    monthly = pd.read_parquet(real_folder / "series.parquet").query("unique_id == 'b_monthly'")
    # evaluation data holding the monthly series' quarterly totals (an aggregate of it, rescaled) ...
    totals = tmp_path / "totals"
    totals.mkdir()
    pd.DataFrame({"unique_id": "q", "ds": pd.date_range("1990-01-01", periods=20, freq="QS"),
                  "y": monthly["y"].to_numpy().reshape(20, 3).sum(axis=1)}).to_csv(totals / "t.csv", index=False)
    # ... or a stretch of the monthly series itself, which the corpus never keeps at its own resolution
    stretch = tmp_path / "stretch"
    stretch.mkdir()
    monthly.iloc[10:30].assign(unique_id="m").to_csv(stretch / "t.csv", index=False)
    for evaluation in (totals, stretch):
        spec["generators"]["real"]["exclude"] = [str(evaluation)]
        out = build_corpus(spec, tmp_path / evaluation.name / "corpus", progress=False)
        assert read_manifest(out)["generators"]["real"]["excluded"] == ["series/b_monthly@QS"]
        assert [e["item_id"] for e in load_corpus(out, generators=["real"])] == ["series/c_gappy@QS",
                                                                                 "series/d_short"]
    with pytest.raises(InputError, match="aggregate_to must be a list of MS, QS, YS"):
        validate_recipe({"generators": {"real": {"path": str(real_folder), "aggregate_to": ["W"]}}})


def test_new_data_makes_a_new_corpus(real_folder) -> None:
    before = recipe_hash(recipe(real_folder))
    table = pd.read_parquet(real_folder / "series.parquet")
    table.loc[0, "y"] += 1.0
    table.to_parquet(real_folder / "series.parquet")
    assert recipe_hash(recipe(real_folder)) != before


def test_series_sharing_values_with_an_evaluation_folder_are_dropped_and_named(real_folder, tmp_path) -> None:
    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    monthly = pd.read_parquet(real_folder / "series.parquet").query("unique_id == 'b_monthly'")
    copy = monthly.assign(unique_id="copy", y=monthly["y"] * 1000 + 3).iloc[20:45]  # rescaled, cut
    copy.to_csv(evaluation / "task.csv", index=False)
    out = build_corpus(recipe(real_folder, exclude=[str(evaluation)]), tmp_path / "c", progress=False)
    assert read_manifest(out)["generators"]["real"]["excluded"] == ["series/b_monthly"]
    assert "series/b_monthly" not in {e["item_id"] for e in load_corpus(out, generators=["real"])}
    # nor does anything made from it: b_monthly is the one series near 100, and its copies would be too
    near_100 = lambda corpus: [e for e in load_corpus(corpus, generators=["copies"])  # noqa: E731
                               if abs(float(np.mean(e["target"])) - 100) < 30]
    assert not near_100(out)
    assert near_100(build_corpus(recipe(real_folder), tmp_path / "d", progress=False))  # the check can fail


def test_bad_real_sources_are_one_line_errors(real_folder) -> None:
    with pytest.raises(InputError, match="needs 'path'"):
        validate_recipe({"generators": {"real": {"count": 1}}})
    with pytest.raises(InputError, match="not found"):
        recipe_hash({"generators": {"real": {"path": str(real_folder), "files": ["nope.parquet"], "count": 1}}})
    with pytest.raises(InputError, match="does not exist"):
        recipe_hash({"generators": {"real": {"path": str(real_folder / "missing"), "count": 1}}})


@pytest.mark.skipif(not (SHARED / "real" / "pretrain").is_dir(), reason="needs ../shared/data (the project's data)")
def test_no_evaluation_series_reaches_the_general_corpus(tmp_path, monkeypatch) -> None:
    """The acceptance check, by values: no run of 8 consecutive values of any eval or real/dev series
    occurs in a real series of the shipped general recipe (checked here without the builder's guard)."""
    monkeypatch.chdir(REPO)
    general = yaml.safe_load((REPO / "configs" / "corpus" / "general.yaml").read_text())
    real_only = {**general, "generators": {"real": general["generators"]["real"]}}
    built = build_corpus(real_only, tmp_path / "general-real", progress=False)
    evaluation_runs = set()
    for folder in general["generators"]["real"]["exclude"]:
        for path in sorted(Path(folder).glob("*.csv")):
            for _, frame in pd.read_csv(path).groupby("unique_id"):
                y = frame["y"].to_numpy(dtype=np.float32)
                for i in range(len(y) - 7):
                    run = y[i:i + 8]
                    if np.isfinite(run).all() and len(np.unique(run)) > 4:
                        evaluation_runs.add(run.tobytes())
    assert len(evaluation_runs) > 300_000  # both folders were read
    entries = load_corpus(built)
    assert len(entries) > 1000
    for entry in entries:
        y = entry["target"]
        windows = np.lib.stride_tricks.sliding_window_view(y, 8) if len(y) >= 8 else []
        assert not any(w.tobytes() in evaluation_runs for w in windows), entry["item_id"]


@pytest.mark.skipif(not (SHARED / "real" / "pretrain").is_dir(), reason="needs ../shared/data (the project's data)")
def test_held_out_real_tasks_never_reach_a_corpus_that_excludes_them(tmp_path, monkeypatch) -> None:
    """benchmarks/pretrain_holdout.py's yearly half, scored as evaluation tasks: a real source that
    lists the folder in `exclude` keeps none of its values, and the other half still trains."""
    import sys

    sys.path.insert(0, str(REPO / "benchmarks"))
    import pretrain_holdout

    monkeypatch.chdir(REPO)
    held_out = tmp_path / "tsdl_yearly"
    assert pretrain_holdout.main(["--freq", "YS", "--output", str(held_out)]) == 0
    manifest = yaml.safe_load((held_out / "manifest.json").read_text())
    tables = pd.concat([pd.read_csv(held_out / t["file"]) for t in manifest["tasks"]])
    ids = set(tables["unique_id"])
    assert 80 < len(ids) < 140 and all(pretrain_holdout.held_out(i) for i in ids)
    recipe = {"name": "holdout-check", "seed": 0, "generators": {"real": {
        "kind": "real", "path": str(SHARED / "real" / "pretrain"), "files": ["tsdl.parquet"], "keep_freqs": ["YS"],
        "exclude": [str(held_out)], "count": 100000, "length_min": 10, "length_max": 30000, "weight": 1.0}}}
    entries = load_corpus(build_corpus(recipe, tmp_path / "corpus", progress=False))
    assert len(entries) > 80  # the other half
    held_runs = {w.tobytes() for _, frame in tables.groupby("unique_id")
                 for w in np.lib.stride_tricks.sliding_window_view(frame["y"].to_numpy(np.float32), 8)
                 if len(np.unique(w)) > 4}
    for entry in entries:
        y = entry["target"].astype(np.float32)
        windows = np.lib.stride_tricks.sliding_window_view(y, 8) if len(y) >= 8 else []
        assert not any(w.tobytes() in held_runs for w in windows), entry["item_id"]
