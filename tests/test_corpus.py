"""Corpus building: determinism (bytes), parallel == serial, caching, dysts failures, reading back."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tsfm.data import corpus
from tsfm.data.corpus import build_corpus
from tsfm.data.corpus_reading import iter_corpus, load_corpus, open_corpus, read_manifest
from tsfm.data.corpus_recipe import GENERATOR_KINDS, corpus_dir, load_recipe, recipe_hash, validate_recipe
from tsfm.data.synthetic import SEASONAL_PERIODS
from tsfm.errors import InputError

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    """Each test probes dysts into its own cache (the probe list is cached per cache root)."""
    monkeypatch.setenv("TSFM_CACHE", str(tmp_path / "cache"))


def tiny(seed: int = 0, systems: tuple[str, ...] = ("Lorenz", "Henon")) -> dict:
    return {"name": "tiny", "seed": seed, "generators": {
        "structural": {"count": 30, "length_min": 20, "length_max": 120, "shard_size": 12, "weight": 3},
        "kernel_synth": {"count": 16, "length_min": 32, "length_max": 128, "shard_size": 8},
        "gluonts": {"count": 5, "length_min": 30, "length_max": 80},
        "chaos": {"count": 8, "length_min": 64, "length_max": 128, "shard_size": 4, "views": 2,
                  "systems": list(systems)},
        "chaos_mv": {"kind": "chaos", "count": 2, "length_min": 64, "length_max": 100, "multivariate": True,
                     "systems": ["Lorenz"]},
        "mixup": {"count": 10, "length_min": 20, "length_max": 100, "shard_size": 5},
    }}


def arrow_bytes(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*.arrow"))}


def test_same_seed_gives_identical_bytes_and_another_seed_does_not(tmp_path) -> None:
    a = build_corpus(tiny(0), tmp_path / "a", progress=False)
    b = build_corpus(tiny(0), tmp_path / "b", progress=False)
    c = build_corpus(tiny(1), tmp_path / "c", progress=False)
    files_a, files_b, files_c = arrow_bytes(a), arrow_bytes(b), arrow_bytes(c)
    assert len(files_a) == 11 and files_a == files_b  # 3 + 2 + 1 + 2 + 1 + 2 shards
    assert files_a.keys() == files_c.keys()
    assert all(files_a[k] != files_c[k] for k in files_a)
    assert read_manifest(a)["files"] == read_manifest(b)["files"]  # sha256 recorded per file


def test_parallel_build_equals_serial_build(tmp_path) -> None:
    serial = build_corpus(tiny(3), tmp_path / "serial", num_workers=1, progress=False)
    parallel = build_corpus(tiny(3), tmp_path / "parallel", num_workers=2, progress=False)
    assert arrow_bytes(serial) == arrow_bytes(parallel)
    assert read_manifest(parallel)["build"]["num_workers"] == 2


def test_cache_hit_returns_without_building(tmp_path, monkeypatch) -> None:
    out = corpus_dir(tiny(), tmp_path / "root")
    assert out.parent == tmp_path / "root" and out.name.startswith("tiny-")
    assert out.name.endswith(recipe_hash(tiny())[:16])
    build_corpus(tiny(), out, progress=False)
    stamp = (out / "manifest.json").stat().st_mtime_ns

    def no_build(task):
        raise AssertionError("a cached corpus must not be rebuilt")

    monkeypatch.setattr(corpus, "_run_shard", no_build)
    began = time.perf_counter()
    assert build_corpus(tiny(), out, num_workers=2, progress=False) == out
    assert time.perf_counter() - began < 0.5
    assert (out / "manifest.json").stat().st_mtime_ns == stamp
    with pytest.raises(InputError, match="another recipe"):
        build_corpus(tiny(seed=9), out, progress=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("mine")
    with pytest.raises(InputError, match="not an empty directory"):
        build_corpus(tiny(), tmp_path / "full", progress=False)
    assert not list(tmp_path.glob(".*building*"))  # no temporary build folders left behind


def test_entries_read_back_in_the_gluonts_format(tmp_path) -> None:
    from gluonts.dataset.arrow import ArrowFile

    out = build_corpus(tiny(5), tmp_path / "c", progress=False)
    manifest = read_manifest(out)
    entries = load_corpus(out)
    spec = validate_recipe(tiny(5))["generators"]
    assert len(entries) == sum(g["count"] for g in spec.values()) == manifest["totals"]["series"]
    assert len({e["item_id"] for e in entries}) == len(entries)
    for e in entries:
        name = e["item_id"].rsplit("-", 2)[0]
        assert set(e) == {"item_id", "start", "freq", "target"}
        assert e["target"].dtype == np.float32 and np.all(np.isfinite(e["target"]))
        assert e["freq"] in SEASONAL_PERIODS
        start = pd.Timestamp(e["start"])
        assert pd.date_range(start, periods=1, freq=e["freq"])[0] == start  # on the frequency's grid
        assert pd.Timestamp("1677-09-22") < start and start + 3 * pd.tseries.frequencies.to_offset(e["freq"]) \
            < pd.Timestamp("2262-01-01")
        length = e["target"].shape[-1]
        assert length <= spec[name]["length_max"]
        if name != "mixup":
            assert length >= spec[name]["length_min"]
        if name == "chaos_mv":
            assert e["target"].shape == (3, length)
        else:
            assert e["target"].ndim == 1
    assert {g: v["series"] for g, v in manifest["generators"].items()} == {n: s["count"] for n, s in spec.items()}
    weights = manifest["mixing_weights"]
    assert np.isclose(sum(weights.values()), 1.0) and np.isclose(weights["structural"], 3 / 8)
    first = manifest["files"][0]
    via_gluonts = list(ArrowFile(out / first["path"]))
    mine = [e for e in entries if e["item_id"].startswith(first["generator"] + "-00000-")]
    assert [e["item_id"] for e in via_gluonts] == [e["item_id"] for e in mine]
    assert all(np.array_equal(g["target"], m["target"]) for g, m in zip(via_gluonts, mine))
    streamed = list(iter_corpus(out, generators=["chaos_mv"]))
    assert len(streamed) == 2 and all(e["target"].shape[0] == 3 for e in streamed)


def test_memory_mapped_targets_equal_the_loaded_ones_without_copies(tmp_path) -> None:
    """The training path streams from the mapped Arrow files: same series, same order, views not
    copies (nothing owns its data), and a pickled copy (a spawned worker) re-maps the files."""
    import pickle

    out = build_corpus(tiny(5), tmp_path / "c", progress=False)
    for generators in (None, ["chaos_mv"], ["structural", "mixup"]):
        loaded = load_corpus(out, generators=generators)
        mapped = open_corpus(out, generators=generators)
        assert len(mapped) == len(loaded) and mapped.freqs == [e["freq"] for e in loaded]
        for i, entry in enumerate(loaded):
            assert mapped[i].dtype == np.float32 and mapped[i].shape == entry["target"].shape
            assert np.array_equal(mapped[i], entry["target"])
            assert not mapped[i].flags.owndata and not mapped[i].flags.writeable
        assert np.array_equal(mapped[-1], loaded[-1]["target"])
        with pytest.raises(IndexError):
            mapped[len(mapped)]
    state = pickle.dumps(open_corpus(out))
    assert len(state) < 2000  # the file list, not the values
    again = pickle.loads(state)
    assert all(np.array_equal(again[i], e["target"]) for i, e in enumerate(load_corpus(out)))


def test_failing_dysts_systems_are_skipped_with_reasons(tmp_path, monkeypatch) -> None:
    import dysts.flows

    def raises(self, n, **kw):
        raise ValueError("integration blew up")

    monkeypatch.setattr(dysts.flows.Rossler, "make_trajectory", raises)
    monkeypatch.setattr(dysts.flows.Aizawa, "make_trajectory", lambda self, n, **kw: None)
    monkeypatch.setattr(dysts.flows.Chen, "make_trajectory", lambda self, n, **kw: np.full((n, 3), np.nan))
    recipe = tiny(systems=("Lorenz", "Rossler", "Aizawa", "Chen"))
    out = build_corpus(recipe, tmp_path / "c", progress=False)
    dysts_info = read_manifest(out)["dysts"]
    assert dysts_info["working"] == ["Lorenz"]
    assert dysts_info["skipped"] == {
        "Aizawa": "returned None (integration did not complete)",
        "Chen": "non-finite or exploding values",
        "Rossler": "raised ValueError: integration blew up",
    }
    assert dysts_info["integrator"] == {"method": "LSODA", "rtol": 1e-6, "atol": 1e-9}
    assert read_manifest(out)["generators"]["chaos"]["series"] == 8
    cached = list((tmp_path / "cache" / "corpora").glob("dysts-systems-*.json"))
    assert len(cached) == 1 and json.loads(cached[0].read_text())["working"] == ["Lorenz"]


def test_held_out_dysts_systems_are_never_drawn(tmp_path, monkeypatch) -> None:
    from tsfm.data.synthetic import chaos as chaos_module

    recipe = tiny(systems=("Lorenz", "Henon"))
    for name in ("chaos", "chaos_mv"):
        recipe["generators"][name]["exclude_systems"] = ["Henon"]
    corpus._probe_chaos(validate_recipe(recipe), None)  # the cached probe integrates every listed system once
    drawn: list[str] = []
    integrate = chaos_module.integrate

    def recording(name, *args, **kwargs):
        drawn.append(name)
        return integrate(name, *args, **kwargs)

    monkeypatch.setattr(chaos_module, "integrate", recording)
    out = build_corpus(recipe, tmp_path / "c", progress=False)
    assert set(drawn) == {"Lorenz"} and len(drawn) >= 6  # 4 trajectories x 2 views + 2 multivariate
    assert read_manifest(out)["dysts"]["held_out"] == ["Henon"]
    assert read_manifest(out)["generators"]["chaos"]["series"] == 8


def test_a_label_relabels_every_series_of_its_generator_and_only_them(tmp_path) -> None:
    recipe = {"name": "labels", "seed": 3, "generators": {
        "yearly": {"kind": "structural", "count": 20, "length_min": 20, "length_max": 300, "label": "YS"},
        "own": {"kind": "structural", "count": 20, "length_min": 20, "length_max": 300},
    }}
    plain = {"name": "labels", "seed": 3, "generators": {
        "yearly": {"kind": "structural", "count": 20, "length_min": 20, "length_max": 300},
        "own": recipe["generators"]["own"],
    }}
    labelled, unlabelled = (load_corpus(build_corpus(r, tmp_path / n, progress=False))
                            for n, r in (("l", recipe), ("u", plain)))
    yearly = [e for e in labelled if e["item_id"].startswith("yearly-")]
    assert len(yearly) == 20 and {e["freq"] for e in yearly} == {"YS"}
    for e in yearly:  # a yearly start on the calendar's grid
        assert pd.Timestamp(e["start"]) == pd.Timestamp(e["start"]).to_period("Y").to_timestamp()
    same_draws = [e for e in unlabelled if e["item_id"].startswith("yearly-")]
    assert len({e["freq"] for e in same_draws}) > 1  # the structural kinds draw many labels themselves
    assert all(np.array_equal(a["target"], b["target"]) for a, b in zip(yearly, same_draws))  # values unchanged
    assert [e["freq"] for e in labelled if e["item_id"].startswith("own-")] == \
        [e["freq"] for e in unlabelled if e["item_id"].startswith("own-")]
    assert recipe_hash(validate_recipe(recipe)) != recipe_hash(validate_recipe(plain))


def test_keep_freqs_keeps_only_the_generators_own_draws_of_those_labels(tmp_path) -> None:
    recipe = {"name": "monthly", "seed": 4, "generators": {
        "structural": {"count": 25, "length_min": 36, "length_max": 400, "keep_freqs": ["MS"]},
        "mixup": {"count": 5, "length_min": 36, "length_max": 200, "keep_freqs": ["MS"]},
    }}
    entries = load_corpus(build_corpus(recipe, tmp_path / "m", progress=False))
    assert len(entries) == 30 and {e["freq"] for e in entries} == {"MS"}
    everything = load_corpus(build_corpus({**recipe, "generators": {"structural": {
        "count": 25, "length_min": 36, "length_max": 400}}}, tmp_path / "a", progress=False))
    assert len({e["freq"] for e in everything}) > 2  # without the filter the labels vary


def test_bad_recipes_are_one_line_input_errors() -> None:
    with pytest.raises(InputError, match="unknown kind 'nope'"):
        validate_recipe({"seed": 0, "generators": {"nope": {"count": 1}}})
    with pytest.raises(InputError, match="unknown parameters \\['colour'\\]"):
        validate_recipe({"seed": 0, "generators": {"structural": {"count": 1, "colour": "red"}}})
    with pytest.raises(InputError, match="length_min <= length_max"):
        validate_recipe({"seed": 0, "generators": {"structural": {"count": 1, "length_min": 50, "length_max": 10}}})
    with pytest.raises(InputError, match="seed"):
        validate_recipe({"seed": -1, "generators": {}})
    with pytest.raises(InputError, match="mixup generator 'mixup' lists unknown sources"):
        validate_recipe({"generators": {"mixup": {"count": 1, "sources": ["ghost"]}}})
    with pytest.raises(InputError, match="bootstrap generator 'copies' lists .* read a pool themselves: \\['mixup'\\]"):
        validate_recipe({"generators": {"copies": {"kind": "bootstrap", "count": 1, "sources": ["mixup"]},
                                        "mixup": {"count": 1}, "structural": {"count": 1}}})
    with pytest.raises(InputError, match="no source series"):
        validate_recipe({"generators": {"mixup": {"count": 1}, "structural": {"count": 0}}})
    with pytest.raises(InputError, match="unknown dysts systems \\['Lorentz'\\]"):
        validate_recipe({"generators": {"chaos": {"count": 1, "exclude_systems": ["Lorenz", "Lorentz"]}}})
    with pytest.raises(InputError, match="label 'annual' is not one of"):
        validate_recipe({"generators": {"structural": {"count": 1, "label": "annual"}}})
    with pytest.raises(InputError, match="labelled YS are at most 320 steps"):
        validate_recipe({"generators": {"structural": {"count": 1, "length_max": 400, "label": "YS"}}})
    with pytest.raises(InputError, match="keep_freqs must be a non-empty list"):
        validate_recipe({"generators": {"structural": {"count": 1, "keep_freqs": ["monthly"]}}})
    with pytest.raises(InputError, match="does not exist"):
        load_recipe("/nonexistent/recipe.yaml")


def test_smoke_recipe_builds_fast_with_every_kind(tmp_path) -> None:
    """Through the maintainer tool tools/build_corpus.py (the library builds the same corpus)."""
    from typer.testing import CliRunner

    from tools.build_corpus import app

    recipe = load_recipe(REPO / "configs" / "corpus" / "smoke.yaml")
    began = time.perf_counter()
    result = CliRunner().invoke(app, [str(REPO / "configs" / "corpus" / "smoke.yaml"), "--out", str(tmp_path / "s"),
                                      "--quiet"])
    seconds = time.perf_counter() - began
    assert result.exit_code == 0 and result.stdout.strip() == str(tmp_path / "s")
    manifest = read_manifest(tmp_path / "s")
    assert {n: g["series"] for n, g in manifest["generators"].items()} == \
        {n: g["count"] for n, g in recipe["generators"].items()}
    # every kind that draws its series (real sources read files: tests/test_real_data.py)
    assert {g["kind"] for g in manifest["generators"].values()} == set(GENERATOR_KINDS) - {"real"}
    assert seconds < 30  # about 2 s on one idle core; generous for a shared CI machine
    assert CliRunner().invoke(app, ["/nonexistent.yaml", "--quiet"]).exit_code == 2


@pytest.mark.parametrize("recipe_path", sorted((REPO / "configs" / "corpus").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_corpus_recipe_validates(recipe_path: Path) -> None:
    recipe = load_recipe(recipe_path)
    assert recipe["generators"] and all(g["count"] > 0 for g in recipe["generators"].values())


def test_every_experiment_composes_with_its_corpus() -> None:
    """Each configs/experiment/*.yaml composes, and the corpus it names is a valid recipe."""
    from hydra import compose, initialize_config_module
    from omegaconf import OmegaConf

    names = sorted(p.stem for p in (REPO / "configs" / "experiment").glob("*.yaml"))
    with initialize_config_module(config_module="tsfm.configs", version_base="1.3"):
        for name in names:
            cfg = compose("pretrain", overrides=[f"experiment={name}"])
            validate_recipe(OmegaConf.to_container(cfg.data.corpus, resolve=True))
    assert {"ttm_96_free_cycles", "ttm_96_cycles", "ttm_512_growth"} <= set(names)
