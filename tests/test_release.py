"""Shipping weights: cards are assembled from the runs' own cards and the benchmark results file."""

from __future__ import annotations

import json

import pytest
import torch

from tsfm import hub
from tsfm.models.ttm import TTM, TTMConfig
from tsfm.train import release


def results_file(path, rows: dict[str, float]):
    """A benchmarks/zero_shot.py results file: relative scores with their bootstrap intervals."""
    relative = {m: {"MASE": [v, v - 0.1, v + 0.1], "WQL": [v, v - 0.1, v + 0.1]} for m, v in rows.items()}
    summary = {"relative": {"all": relative}, "coverage_10_90": {m: 0.8 for m in rows}, "task_counts": {"all": 46}}
    path.write_text(json.dumps({"meta": {"command": "bench", "date": "today"}, "summary": summary}))
    return path


def test_release_then_refresh_and_suite_cards(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(release, "WEIGHTS_DIR", tmp_path / "weights")
    monkeypatch.setattr(hub, "WEIGHTS_DIR", tmp_path / "weights")
    torch.manual_seed(0)
    model = TTM(TTMConfig.tiny())
    run = hub.save_pretrained(model, tmp_path / "run",
                              card="# run\n\n- family: `ttm`; parameters: 1,234\n- steps: 10\n\n## Config\nx\n")
    out = release.release("ttm-64", [run], results_file(tmp_path / "a.json", {"ttm-64": 0.9, "Naive": 1.2}))
    card = (out / "README.md").read_text()
    assert "- steps: 10" in card and "| **ttm-64** | 0.900 [" in card and "| Naive | 1.200 [" in card
    shipped = hub.load_model("ttm-64").state_dict()
    assert all(torch.equal(v, shipped[k]) for k, v in model.state_dict().items())

    release.refresh_card("ttm-64", results_file(tmp_path / "b.json", {"ttm-64": 0.7}))
    refreshed = (out / "README.md").read_text()
    assert "| **ttm-64** | 0.700 [" in refreshed and "| **ttm-64** | 0.900 [" not in refreshed
    assert "| Naive |" not in refreshed
    assert refreshed.split("## Zero-shot accuracy")[0] == card.split("## Zero-shot accuracy")[0]
    assert refreshed.split("## Config")[1] == card.split("## Config")[1]

    (tmp_path / "weights" / "ttm").mkdir()
    (tmp_path / "weights" / "ttm" / hub.SUITE_FILE).write_text(json.dumps(
        {"default": "ttm-64", "variants": [{"name": "ttm-64", "min_history": 0}]}))
    suite = release.suite_card("ttm", tmp_path / "b.json").read_text()
    assert "| `ttm-64` | 0 points | 64 | 16 | 1,234 |" in suite and "| ttm-64 | 0.700 [" in suite
    assert "served by 1 checkpoints" in suite and "specialist" not in suite

    release.release("ttm-64-yearly", [run], tmp_path / "b.json")
    (tmp_path / "weights" / "ttm" / hub.SUITE_FILE).write_text(json.dumps(
        {"default": "ttm-64", "variants": [{"name": "ttm-64", "min_history": 0}],
         "by_frequency": {"Y": {"ttm-64": "ttm-64-yearly"}}}))
    suite = release.suite_card("ttm", tmp_path / "b.json").read_text()
    assert "served by 2 checkpoints" in suite and "a specialist trained on for it stands in" in suite
    assert "| `ttm-64-yearly` | in place of `ttm-64` for Y data | 64 | 16 | 1,234 |" in suite


def test_extend_appends_phases_to_a_shipped_card_only_from_its_exact_weights(tmp_path, monkeypatch) -> None:
    """Earlier phases come from the shipped card; a run that did not start from the shipped bytes is refused."""
    monkeypatch.setattr(release, "WEIGHTS_DIR", tmp_path / "weights")
    monkeypatch.setattr(hub, "WEIGHTS_DIR", tmp_path / "weights")
    torch.manual_seed(0)
    first = hub.save_pretrained(TTM(TTMConfig.tiny()), tmp_path / "one",
                                card="# run\n\n- family: `ttm`; parameters: 1,234\n- steps: 10\n\n## Config\nx\n")
    results = results_file(tmp_path / "a.json", {"ttm-64": 0.9})
    release.release("ttm-64", [first], results)
    shipped_copy = tmp_path / "copy"  # a run directory restored from the shipped files
    shipped_copy.mkdir()
    for name in (hub.CONFIG_FILE, hub.WEIGHTS_FILE):
        (shipped_copy / name).write_bytes((tmp_path / "weights" / "ttm-64" / name).read_bytes())

    def run(path, init_from, seed=1):
        torch.manual_seed(seed)
        card = (f"# run\n\n- family: `ttm`; parameters: 1,234\n- steps: 20; started from the weights in "
                f"`{init_from}`\n\n## Config\nx\n")
        return hub.save_pretrained(TTM(TTMConfig.tiny()), path, card=card)

    second = run(tmp_path / "two", shipped_copy)
    card = (release.release("ttm-64", [second], results, extend=True) / "README.md").read_text()
    assert card.index("### Phase 1 (") < card.index("- steps: 10") < card.index("### Phase 2 (") < card.index("- steps: 20")
    assert card.count("### Phase") == 2 and (tmp_path / "weights" / "ttm-64" / hub.WEIGHTS_FILE).read_bytes() == \
        (second / hub.WEIGHTS_FILE).read_bytes()

    # a specialist trained on from the shipped weights, named by the shipped name (init_from=ttm-64)
    special = run(tmp_path / "four", "ttm-64", seed=2)
    card = (release.release("ttm-64-special", [special], results, extend=True, base="ttm-64") / "README.md").read_text()
    assert card.count("### Phase") == 3 and card.index("- steps: 10") < card.index("### Phase 3 (") \
        and "started from the weights in `ttm-64`" in card
    assert (tmp_path / "weights" / "ttm-64" / hub.WEIGHTS_FILE).read_bytes() == (second / hub.WEIGHTS_FILE).read_bytes()
    with pytest.raises(SystemExit, match="is not the shipped"):  # the base is not where the run started
        release.release("ttm-64-other", [run(tmp_path / "five", "ttm-64")], results, extend=True,
                        base="ttm-64-special")

    stale = run(tmp_path / "three", shipped_copy)  # shipped_copy no longer holds the shipped weights
    with pytest.raises(SystemExit, match="is not the shipped"):
        release.release("ttm-64", [stale], results, extend=True)
    assert (tmp_path / "weights" / "ttm-64" / hub.WEIGHTS_FILE).read_bytes() == (second / hub.WEIGHTS_FILE).read_bytes()


def test_release_ensemble_of_shipped_checkpoints(tmp_path, monkeypatch) -> None:
    """The ensemble ships as one checkpoint holding its members' weights; its card carries their histories."""
    monkeypatch.setattr(release, "WEIGHTS_DIR", tmp_path / "weights")
    monkeypatch.setattr(hub, "WEIGHTS_DIR", tmp_path / "weights")
    results = results_file(tmp_path / "a.json", {"ttm-64-ensemble": 0.8})
    for seed, name in enumerate(("ttm-64", "ttm-64-anchored")):
        torch.manual_seed(seed)
        run = hub.save_pretrained(TTM(TTMConfig.tiny(anchor_last=bool(seed))), tmp_path / name,
                                  card=f"# run\n\n- family: `ttm`; parameters: 1,234\n- steps: {10 + seed}\n\n## Config\nx\n")
        release.release(name, [run], results)
    out = release.release_ensemble("ttm-64-ensemble", ["ttm-64", "ttm-64-anchored"], results, weights=[3, 1])
    card = (out / "README.md").read_text()
    assert "| `ttm-64` | ttm | 0.75 |" in card and "| `ttm-64-anchored` | ttm | 0.25 |" in card
    assert card.index("### Member 1: `ttm-64`") < card.index("#### Phase 1") < card.index("- steps: 10") \
        < card.index("### Member 2: `ttm-64-anchored`") < card.index("- steps: 11") < card.index("## Zero-shot")
    assert "| **ttm-64-ensemble** | 0.800 [" in card
    first = next(line for line in card.splitlines() if "parameters: " in line)  # what suite cards quote
    ensemble = hub.load_model("ttm-64-ensemble")
    assert ensemble.config.labels == ("ttm-64", "ttm-64-anchored") and ensemble.config.weights == (3.0, 1.0)
    assert first.endswith(f"parameters: {ensemble.num_parameters():,} (2 members)")
    for member, name in zip(ensemble.members, ("ttm-64", "ttm-64-anchored")):
        shipped = hub.load_model(name).state_dict()
        assert all(torch.equal(v, shipped[k]) for k, v in member.state_dict().items())
    assert release.refresh_card("ttm-64-ensemble", results_file(tmp_path / "b.json", {"ttm-64-ensemble": 0.7}))
    assert "| **ttm-64-ensemble** | 0.700 [" in (out / "README.md").read_text()
    with pytest.raises(SystemExit, match="not a shipped checkpoint"):
        release.release_ensemble("ttm-64-pair", ["ttm-64", "ttm-32"], results)
    with pytest.raises(SystemExit, match="one non-negative number per member"):
        release.release_ensemble("ttm-64-pair", ["ttm-64", "ttm-64-anchored"], results, weights=[1.0])
    with pytest.raises(SystemExit, match="choose a new name"):
        release.release_ensemble("ttm-64", ["ttm-64", "ttm-64-anchored"], results)
