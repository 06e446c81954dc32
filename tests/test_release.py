"""Shipping weights (tools/release.py): cards are assembled from the runs' own cards and the
benchmark results file; ensembles reference their members instead of copying them."""

from __future__ import annotations

import json

import pytest
import torch

from tools import release
from tsfm import hub
from tsfm.errors import InputError
from tsfm.models.ttm import TTM, TTMConfig


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

    reproduce = card.split("## Reproduce")[1].split("## How it was trained")[0]
    assert "tsfm pretrain experiment" not in reproduce and "# phase 1: command not recorded" in reproduce
    assert f"python tools/release.py checkpoint ttm-64 --phase {run}" in reproduce

    release.write_card("ttm-64", results_file(tmp_path / "b.json", {"ttm-64": 0.7}))  # from the card's own records
    refreshed = (out / "README.md").read_text()
    assert "| **ttm-64** | 0.700 [" in refreshed and "| **ttm-64** | 0.900 [" not in refreshed
    assert "| Naive |" not in refreshed
    assert refreshed.split("## Zero-shot accuracy")[0] == card.split("## Zero-shot accuracy")[0]
    assert refreshed.split("## Config")[1] == card.split("## Config")[1]

    (tmp_path / "weights" / "ttm").mkdir()
    (tmp_path / "weights" / "ttm" / hub.SUITE_FILE).write_text(json.dumps(
        {"default": "ttm-64", "variants": [{"name": "ttm-64", "min_history": 0}]}))
    suite = release.write_card("ttm", tmp_path / "b.json").read_text()
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
        card = (f"# run\n\n- family: `ttm`; parameters: 1,234\n- command: `tsfm pretrain experiment=x{seed} "
                f"init_from={init_from}`\n- training data: corpus `c{seed}`\n- steps: 20; started from the weights in "
                f"`{init_from}`\n\n## Config\nx\n")
        return hub.save_pretrained(TTM(TTMConfig.tiny()), path, card=card)

    second = run(tmp_path / "two", shipped_copy)
    card = (release.release("ttm-64", [second], results, extend=True) / "README.md").read_text()
    assert card.index("### Phase 1 (") < card.index("- steps: 10") < card.index("### Phase 2 (") \
        < card.index("- steps: 20")
    assert card.count("### Phase") == 2 and (tmp_path / "weights" / "ttm-64" / hub.WEIGHTS_FILE).read_bytes() == \
        (second / hub.WEIGHTS_FILE).read_bytes()

    # a specialist trained on from the shipped weights, named by the shipped name (init_from=ttm-64)
    special = run(tmp_path / "four", "ttm-64", seed=2)
    card = (release.release("ttm-64-special", [special], results, extend=True, base="ttm-64") / "README.md").read_text()
    assert card.count("### Phase") == 3 and card.index("- steps: 10") < card.index("### Phase 3 (") \
        and "started from the weights in `ttm-64`" in card
    reproduce = card.split("## Reproduce")[1].split("## How it was trained")[0]  # every phase's recipe, in order
    assert reproduce.index("experiment=x1 ") < reproduce.index("experiment=x2 ") < reproduce.index(
        f"python tools/release.py checkpoint ttm-64-special --phase {first} --phase {second} --phase {special}")
    assert "- phase 2: corpus `c1`" in reproduce and "- phase 3: corpus `c2`" in reproduce
    assert (tmp_path / "weights" / "ttm-64" / hub.WEIGHTS_FILE).read_bytes() == (second / hub.WEIGHTS_FILE).read_bytes()
    with pytest.raises(SystemExit, match="is not the shipped"):  # the base is not where the run started
        release.release("ttm-64-other", [run(tmp_path / "five", "ttm-64")], results, extend=True,
                        base="ttm-64-special")

    stale = run(tmp_path / "three", shipped_copy)  # shipped_copy no longer holds the shipped weights
    with pytest.raises(SystemExit, match="is not the shipped"):
        release.release("ttm-64", [stale], results, extend=True)
    assert (tmp_path / "weights" / "ttm-64" / hub.WEIGHTS_FILE).read_bytes() == (second / hub.WEIGHTS_FILE).read_bytes()


def test_release_ensemble_of_shipped_checkpoints(tmp_path, monkeypatch) -> None:
    """The ensemble ships as a folder that references its members (no copy of their weights) and
    loads as one checkpoint; its card carries their histories; a member re-released with other
    weights stops it from loading until it is re-released."""
    monkeypatch.setattr(release, "WEIGHTS_DIR", tmp_path / "weights")
    monkeypatch.setattr(hub, "WEIGHTS_DIR", tmp_path / "weights")
    results = results_file(tmp_path / "a.json", {"ttm-64-ensemble": 0.8})
    for seed, name in enumerate(("ttm-64", "ttm-64-anchored")):
        torch.manual_seed(seed)
        card = f"# run\n\n- family: `ttm`; parameters: 1,234\n- steps: {10 + seed}\n\n## Config\nx\n"
        run = hub.save_pretrained(TTM(TTMConfig.tiny(anchor_last=bool(seed))), tmp_path / name, card=card)
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
    stored = json.loads((out / hub.CONFIG_FILE).read_text())
    assert [r["checkpoint"] for r in stored["member_checkpoints"]] == ["ttm-64", "ttm-64-anchored"]
    assert (out / hub.WEIGHTS_FILE).stat().st_size < 100  # no tensor of its own
    assert "python tools/release.py ensemble ttm-64-ensemble --member ttm-64 --member ttm-64-anchored --weight 3 " \
        "--weight 1" in card
    assert release.write_card("ttm-64-ensemble", results_file(tmp_path / "b.json", {"ttm-64-ensemble": 0.7}))
    rewritten = (out / "README.md").read_text()
    assert "| **ttm-64-ensemble** | 0.700 [" in rewritten
    assert rewritten.split("## Zero-shot accuracy")[0] == card.split("## Zero-shot accuracy")[0]

    torch.manual_seed(9)  # the member re-released with other weights
    rerun = hub.save_pretrained(TTM(TTMConfig.tiny()), tmp_path / "rerun",
                                card="# run\n\n- family: `ttm`; parameters: 1,234\n- steps: 12\n\n## Config\nx\n")
    release.release("ttm-64", [rerun], results)
    with pytest.raises(InputError, match="re-release the ensemble"):
        hub.load_model("ttm-64-ensemble")
    release.release_ensemble("ttm-64-ensemble", ["ttm-64", "ttm-64-anchored"], results, weights=[3, 1])
    assert hub.load_model("ttm-64-ensemble").config.labels == ("ttm-64", "ttm-64-anchored")
    with pytest.raises(SystemExit, match="not a shipped checkpoint"):
        release.release_ensemble("ttm-64-pair", ["ttm-64", "ttm-32"], results)
    with pytest.raises(SystemExit, match="one non-negative number per member"):
        release.release_ensemble("ttm-64-pair", ["ttm-64", "ttm-64-anchored"], results, weights=[1.0])
    with pytest.raises(SystemExit, match="choose a new name"):
        release.release_ensemble("ttm-64", ["ttm-64", "ttm-64-anchored"], results)
    with pytest.raises(SystemExit, match="is an ensemble"):
        release.release_ensemble("ttm-64-pair", ["ttm-64", "ttm-64-ensemble"], results)


def test_release_command_line_refuses_an_installed_copy(monkeypatch, tmp_path) -> None:
    """The tool writes into its own checkout only; its commands are typer's."""
    from typer.testing import CliRunner

    assert CliRunner().invoke(release.app, ["--help"]).exit_code == 0
    monkeypatch.setattr(release, "WEIGHTS_DIR", tmp_path / "site-packages" / "tsfm" / "weights")
    result = CliRunner().invoke(release.app, ["card", "ttm"])
    assert result.exit_code != 0 and "pip install -e ." in str(result.exception or result.output)


def test_maintainer_tools_stay_out_of_the_installed_package() -> None:
    """tools/ is not a package of the distribution, and nothing installed imports it or parses a
    command line of its own (the package's commands are typer's, in cli/)."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    setuptools = (repo / "pyproject.toml").read_text().partition("[tool.setuptools]")[2].partition("\n[")[0]
    packages = re.findall(r'"([\w.]+)"', setuptools.partition("packages")[2])
    assert "tsfm" in packages and not any(p == "tools" or p.startswith("tools.") for p in packages)
    installed = [repo / "tsfm", repo / "cli", repo / "export"]
    for path in (f for root in installed for f in root.rglob("*.py")):
        text = path.read_text()
        assert "import argparse" not in text and "from tools" not in text and "import tools" not in text, path
    assert not (repo / "tsfm" / "train" / "release.py").exists()
