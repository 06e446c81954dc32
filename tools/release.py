"""Ship trained checkpoints as the package's weights (``tsfm/weights/<name>/``) with generated model cards.

A maintainer tool: it writes into the checkout it lives in (install that checkout with ``pip
install -e .``), from training runs' folders that only exist on the machine that ran them.

    python tools/release.py checkpoint ttm-512 --phase runs/ttm_512/checkpoint --phase runs/ttm_512_continue/checkpoint
    python tools/release.py checkpoint ttm-96-yearly --extend --base ttm-96 --phase runs/ttm_96_yearly/checkpoint
    python tools/release.py ensemble ttm-96-ensemble --member ttm-96 --member ttm-96-anchored --member ttm-96-wide
    python tools/release.py card ttm        # rewrite a shipped card (checkpoint, ensemble or suite) from its records

``checkpoint`` copies the last phase's ``config.json`` + ``model.safetensors`` and writes the card
from each phase's own card (command, data, steps, wall time; ``tsfm pretrain`` writes it) and the
benchmark rows recorded in ``benchmarks/results/zero_shot.json``. ``--extend`` puts the new phases
after the shipped phases of ``--base`` (default: the same name), whose run folders are gone
(``runs/`` is not in git): the first new phase must have started from exactly the shipped weights
(same SHA-256). ``ensemble`` ships the quantile average of shipped checkpoints
(``tsfm.models.ensemble``) as a folder that references its members instead of copying their
weights. ``card`` regenerates a shipped card from the phases it records, so every card has the
same sections: what the model is, how to reproduce it (the ``tsfm pretrain`` recipe of each phase,
then this tool), the data it saw, its training history, its zero-shot accuracy and its config.
Nothing in a card is typed by hand: every number comes from a file a run wrote.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import typer

from tsfm.errors import InputError
from tsfm.hub import CARD_FILE, CONFIG_FILE, SUITE_FILE, WEIGHTS_DIR, WEIGHTS_FILE, load_suite

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "zero_shot.json"
TOOL = "python tools/release.py"


@dataclass(frozen=True)
class Phase:
    """One training run of a checkpoint's history: its checkpoint folder and its card's bullet lines."""

    path: str
    lines: tuple[str, ...]

    def field(self, key: str) -> str:
        """The text after ``- <key>: `` in the phase's lines ('' when absent)."""
        return next((line[len(f"- {key}: "):] for line in self.lines if line.startswith(f"- {key}: ")), "")


def _card_lines(card: str) -> tuple[str, ...]:
    """The bullet list of a run's card (everything before its config dump), plus its optimiser
    settings read from that dump (the loss scale decides what its validation loss means)."""
    import yaml

    head, _, dump = card.partition("## Config")
    lines = [line for line in head.splitlines() if line.startswith("- ")]
    try:
        optim = (yaml.safe_load(dump.partition("```yaml")[2].partition("```")[0]) or {}).get("optim")
    except yaml.YAMLError:
        optim = None
    if isinstance(optim, dict) and "lr" in optim:
        lines.append(f"- optimiser: AdamW, peak lr {optim['lr']:g}, weight decay {optim.get('weight_decay', 0):g}, "
                     f"{optim.get('warmup_steps', 0)} warm-up steps then cosine; loss scale "
                     f"`{optim.get('loss_scale', 'mad')}` (`optim.loss_scale`)")
    return tuple(lines)


def recorded_phases(card: str) -> list[Phase]:
    """The ``### Phase`` sections of a shipped checkpoint's card."""
    trained = card.partition("## How it was trained")[2].partition("\n## ")[0]
    phases = []
    for section in re.split(r"\n(?=### Phase )", trained.strip()):
        match = re.match(r"### Phase \d+ \(`([^`]*)`\)", section)
        if match:
            phases.append(Phase(match.group(1), tuple(line for line in section.splitlines()[1:]
                                                          if line.startswith("- "))))
    return phases


def _benchmark_table(results: Path, name: str) -> list[str]:
    if not results.is_file():
        return ["(no benchmark results recorded yet: run `python benchmarks/zero_shot.py`)"]
    data = json.loads(results.read_text())
    summary = data.get("summary", {})
    relative = summary.get("relative", {}).get("all", {})
    coverage = summary.get("coverage_10_90", {})
    lines = [
        f"Broad dev benchmark ({summary.get('task_counts', {}).get('all', '?')} real tasks), zero-shot, from "
        f"`{data.get('meta', {}).get('command', 'benchmarks/zero_shot.py')}` ({data.get('meta', {}).get('date', '')}); "
        "geometric mean over tasks of score / SeasonalNaive score, 95% bootstrap interval over tasks:",
        "",
        "| model | rel. MASE | rel. WQL | mean 10-90 coverage |",
        "|---|---|---|---|",
    ]

    def cell(interval: list | None) -> str:
        if not interval or interval[0] is None:
            return "–"
        return f"{interval[0]:.3f} [{interval[1]:.3f}, {interval[2]:.3f}]"

    for model, row in relative.items():
        label = f"**{model}**" if model == name else model
        cov = coverage.get(model)
        lines.append(f"| {label} | {cell(row.get('MASE'))} | {cell(row.get('WQL'))} | "
                     f"{'–' if cov is None else f'{cov:.3f}'} |")
    return lines


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _spans(numbers: list[int]) -> str:
    """``1-3, 5`` for [1, 2, 3, 5]."""
    out, start = [], numbers[0]
    for previous, current in zip(numbers, numbers[1:] + [None]):
        if current != previous + 1:
            out.append(f"{start}" if start == previous else f"{start}-{previous}")
            start = current
    return ", ".join(out)


def _data_lines(phases: list[Phase], prefix: str = "phase") -> list[str]:
    """What the weights saw: each distinct training-data line, with the phases that read it."""
    seen: dict[str, list[int]] = {}
    for i, phase in enumerate(phases, 1):
        seen.setdefault(phase.field("training data") or "(not recorded)", []).append(i)
    plural = len(phases) > 1
    return [f"- {prefix}{'s' if len(numbers) > 1 else ''} {_spans(numbers)}: {data}" if plural else f"- {data}"
            for data, numbers in seen.items()]


def checkpoint_card(name: str, config: dict, phases: list[Phase], results: Path) -> str:
    """The card of a shipped checkpoint trained in ``phases`` (in order)."""
    data = ("synthetic and real series (no evaluation data)" if any("real series" in p.field("training data")
                                                                     for p in phases)
            else "synthetic series only (no real data, no evaluation data)")
    release = f"{TOOL} checkpoint {name} " + " ".join(f"--phase {shlex.quote(p.path)}" for p in phases)
    parts = [
        f"# `{name}`: tsfm's shipped {config['family'].upper()} weights",
        "",
        f"Pretrained by our own recipe on {data}; "
        f"context {config['context_length']}, horizon {config['prediction_length']}, quantiles "
        f"{config['quantiles']}. Load with `tsfm.load_model(\"{name}\")` or `tsfm forecast --model {name}`.",
        "",
        "## Reproduce",
        "",
        (f"{len(phases)} training phases, each a recipe of `configs/experiment/` run by `tsfm pretrain` "
         "(docs/training.md) from the weights of the phase before it (the recipe's or the command's `init_from`), "
         "then the release tool, which writes this folder and card:" if len(phases) > 1 else
         "One training phase, a recipe of `configs/experiment/` run by `tsfm pretrain` (docs/training.md), then the "
         "release tool, which writes this folder and card:"),
        "",
        "```bash",
        *[p.field("command").strip("`") or f"# phase {i}: command not recorded" for i, p in enumerate(phases, 1)],
        release,
        "```",
        "",
        "Data it saw:",
        "",
        *_data_lines(phases),
        "",
        "## How it was trained",
    ]
    for i, phase in enumerate(phases, 1):
        parts += ["", f"### Phase {i} (`{phase.path}`)", *phase.lines]
    parts += ["", "## Zero-shot accuracy", "", *_benchmark_table(results, name), ""]
    parts += ["## Config", "", "```json", json.dumps(config, indent=2), "```", ""]
    return "\n".join(parts)


def _shipped_card_phases(name: str) -> list[Phase]:
    path = WEIGHTS_DIR / name / CARD_FILE
    phases = recorded_phases(path.read_text()) if path.is_file() else []
    if not phases:
        raise SystemExit(f"error: {path} records no '## How it was trained' phases")
    return phases


def _shipped_phases(name: str, first_new: Path) -> list[Phase]:
    """The phases of ``name``'s shipped card, after checking that ``first_new`` was trained from
    exactly the shipped weights (its card names the ``init_from`` folder, or the shipped name itself)."""
    out = WEIGHTS_DIR / name
    phases = _shipped_card_phases(name)
    started = re.search(r"started from the weights in `([^`]+)`", (first_new / CARD_FILE).read_text())
    if started is None:
        raise SystemExit(f"error: {first_new} did not start from earlier weights (init_from): nothing to extend")
    source = Path(started.group(1))
    source = source if source.is_absolute() else REPO / source
    if not source.is_dir() and (WEIGHTS_DIR / started.group(1)).is_dir():  # init_from=<shipped name>
        source = WEIGHTS_DIR / started.group(1)
    if not (source / WEIGHTS_FILE).is_file() or _sha256(source / WEIGHTS_FILE) != _sha256(out / WEIGHTS_FILE):
        raise SystemExit(f"error: {first_new} started from {source}, whose {WEIGHTS_FILE} is not the shipped "
                         f"{name}'s: the shipped card's phases would not describe its history")
    return phases


def _stale_ensembles(name: str) -> list[str]:
    """Shipped ensembles that reference ``name`` with weights other than its shipped ones."""
    if not (WEIGHTS_DIR / name / WEIGHTS_FILE).is_file():
        return []
    digest = _sha256(WEIGHTS_DIR / name / WEIGHTS_FILE)
    stale = []
    for config_path in sorted(WEIGHTS_DIR.glob(f"*/{CONFIG_FILE}")):
        references = json.loads(config_path.read_text()).get("member_checkpoints") or []
        if any(r and r["checkpoint"] == name and r["sha256"] != digest for r in references):
            stale.append(config_path.parent.name)
    return stale


def release(name: str, phases: list[Path], results: Path = RESULTS, extend: bool = False,
            base: str | None = None) -> Path:
    """Ship ``phases[-1]`` as ``name``; with ``extend``, after the shipped phases of ``base`` (default ``name``)."""
    final = phases[-1]
    out = WEIGHTS_DIR / name
    if (out / SUITE_FILE).exists():
        raise SystemExit(f"error: {out} is a suite; release the checkpoint under a variant name (e.g. {name}-512)")
    earlier = _shipped_phases(base or name, phases[0]) if extend else []
    history = earlier + [Phase(str(p), _card_lines((p / CARD_FILE).read_text())) for p in phases]
    out.mkdir(parents=True, exist_ok=True)
    for filename in (CONFIG_FILE, WEIGHTS_FILE):
        shutil.copyfile(final / filename, out / filename)
    config = json.loads((final / CONFIG_FILE).read_text())
    (out / CARD_FILE).write_text(checkpoint_card(name, config, history, results))
    for ensemble in _stale_ensembles(name):
        typer.echo(f"note: the shipped ensemble {ensemble} references {name}'s earlier weights and no longer loads: "
                   f"re-release it ({TOOL} ensemble {ensemble} --member ...)", err=True)
    return out


def _ensemble_card(name: str, model, members: list[str], stored: dict, results: Path) -> str:
    """The card of a shipped ensemble of the shipped checkpoints ``members`` (``model``: it, loaded)."""
    config = model.config
    mixed = ""
    if len({(m.config.context_length, m.config.prediction_length) for m in model.members}) > 1:
        horizons = ("a shorter member horizon covers only its own steps, its weight fading out over their last "
                    "quarter" if config.horizon_rule == "longest"
                    else "a longer member horizon is cut to the ensemble's")
        mixed = f" (a member with a shorter context reads the most recent steps of the window; {horizons})"
    command = f"{TOOL} ensemble {name} " + " ".join(f"--member {m}" for m in members)
    if config.weights is not None:
        command += " " + " ".join(f"--weight {w:g}" for w in config.weights)
    if config.horizon_rule != "shortest":
        command += f" --horizon-rule {config.horizon_rule}"
    parts = [
        f"# `{name}`: tsfm's shipped ensemble of {', '.join(f'`{m}`' for m in members)}",
        "",
        "The quantile forecasts of its members averaged level by level (tsfm/models/ensemble.py), shipped as one "
        f"checkpoint: context {config.context_length}, horizon {config.prediction_length}, quantiles "
        f"{list(config.quantiles)}{mixed}. Load with `tsfm.load_model(\"{name}\")` or `tsfm forecast --model {name}`. "
        "Each member is also offered by its own name, with its own card.",
        "",
        f"- family: `ensemble`; parameters: {model.num_parameters():,} ({len(members)} members)",
        "",
        "| member | family | weight | parameters |",
        "|---|---|---|---|",
    ]
    for member, share, module in zip(members, config.normalised_weights, model.members):
        parts.append(f"| `{member}` | {module.config.family} | {share:.3g} | {module.num_parameters():,} |")
    parts += [
        "",
        "## Reproduce",
        "",
        "Each member is a shipped checkpoint, reproduced as its own card says "
        f"({', '.join(f'`tsfm/weights/{m}/README.md`' for m in members)}); then the release tool writes this "
        "folder and card. The folder holds no copy of the members' weights: its `config.json` names each member's "
        "checkpoint with the SHA-256 of its weights file (`member_checkpoints`), and loading checks it.",
        "",
        "```bash",
        command,
        "```",
        "",
        "Data it saw: its members' (below); none of it evaluation data.",
        "",
        "## How it was trained",
    ]
    for i, member in enumerate(members, 1):
        phases = _shipped_card_phases(member)
        parts += ["", f"### Member {i}: `{member}`", "", "Data:", "", *_data_lines(phases)]
        for j, phase in enumerate(phases, 1):
            parts += ["", f"#### Phase {j} (`{phase.path}`)", *phase.lines]
    parts += ["", "## Zero-shot accuracy", "", *_benchmark_table(results, name), ""]
    parts += ["## Config", "", "```json", json.dumps(stored, indent=2), "```", ""]
    return "\n".join(parts)


def release_ensemble(name: str, members: list[str], results: Path = RESULTS, weights: list[float] | None = None,
                     horizon_rule: str = "shortest") -> Path:
    """Ship the quantile average of the shipped checkpoints ``members`` as ``name``: a folder whose
    ``config.json`` references each member (shipped name + SHA-256 of its weights) and whose
    ``model.safetensors`` holds no tensor, so no shipped weight is stored twice."""
    from safetensors.torch import save_file

    from tsfm.hub import load_model
    from tsfm.models.ensemble import Ensemble, member_reference, referencing_config

    if name in members or (WEIGHTS_DIR / name / SUITE_FILE).exists():
        raise SystemExit(f"error: {name} is one of its members or a suite: choose a new name for the ensemble")
    for member in members:
        if not (WEIGHTS_DIR / member / CONFIG_FILE).is_file():
            raise SystemExit(f"error: ensemble member {member} is not a shipped checkpoint: release it first")
        if json.loads((WEIGHTS_DIR / member / CONFIG_FILE).read_text()).get("family") == "ensemble":
            raise SystemExit(f"error: ensemble member {member} is an ensemble: name its members instead")
    try:
        model = Ensemble.from_models([load_model(WEIGHTS_DIR / m) for m in members], weights, labels=members,
                                     horizon_rule=horizon_rule)
    except InputError as err:  # members that do not agree, bad weights
        raise SystemExit(f"error: {err}") from None
    references = [member_reference(m, (WEIGHTS_DIR / m / WEIGHTS_FILE).read_bytes()) for m in members]
    stored = referencing_config(model.config, references)
    out = WEIGHTS_DIR / name
    out.mkdir(parents=True, exist_ok=True)
    (out / CONFIG_FILE).write_text(json.dumps(stored, indent=2) + "\n")
    save_file({}, str(out / WEIGHTS_FILE), metadata={"family": "ensemble"})
    (out / CARD_FILE).write_text(_ensemble_card(name, model, members, stored, results))
    return out


def suite_card(name: str, results: Path = RESULTS) -> Path:
    """Write the card of the suite ``name`` (its ``suite.json`` already in place) from its variants' cards."""
    suite = load_suite(name)
    if suite is None:
        raise SystemExit(f"error: {WEIGHTS_DIR / name / SUITE_FILE} does not exist")
    parts = [
        f"# `{name}`: a suite of shipped {name.upper()} checkpoints",
        "",
        f"`{name}` is served by {len(suite.variants) + len(suite.by_frequency)} checkpoints; "
        f"`Forecaster(model=\"{name}\")`, "
        f"`tsfm forecast --model {name}` and the other entry points pick one per dataset by the median "
        f"observed length of its series, among the variants whose context covers at least "
        f"{suite.min_seasons:g} seasons of the data's frequency (granite-tsfm chooses among its TTM "
        f"revisions the same way)"
        + ("; on data of some resolutions a specialist trained on for it stands in for the chosen variant"
           if suite.by_frequency else "")
        + (f". Its intervals are calibrated from {suite.spec.calibration_windows} backtests of the horizon "
           "inside each series' own history (conformal: each central interval widened or narrowed until it "
           "covers its nominal share there)" if suite.spec.calibration_windows else "")
        + (f"; forecasts of positive contexts are made in log space ({suite.log_scale})"
           if suite.log_scale != "never" else "")
        + ("; a seasonal series is shown to the networks divided by its classical multiplicative seasonal "
           "indices, which multiply the forecast back (strictly positive contexts of three seasons or more that "
           "pass a 90% autocorrelation test at the seasonal lag)" if suite.spec.seasonal_adjustment else "")
        + f". Without data (`tsfm.load_model(\"{name}\")`) it is `{suite.default}`; `tsfm export --model {name}` "
        "writes the whole suite (a folder: `suite.json` and one `.onnx` per checkpoint) and `tsfm_runtime` chooses "
        "and calibrates on the device as the package does. Each variant is also offered by its own name.",
        "",
        "| variant | chosen from a median history of | context | horizon | parameters |",
        "|---|---|---|---|---|",
    ]
    rows = [(v, f"{h} points") for v, h in suite.variants]
    rows += [(s, f"in place of `{v}` for {f} data") for f, v, s in suite.by_frequency]
    for variant, chosen in rows:
        config = json.loads((WEIGHTS_DIR / variant / CONFIG_FILE).read_text())
        params = next((line.split("parameters: ")[1] for line in (WEIGHTS_DIR / variant / CARD_FILE).read_text()
                       .splitlines() if "parameters: " in line), "?")
        parts.append(f"| `{variant}` | {chosen} | {config['context_length']} | "
                     f"{config['prediction_length']} | {params} |")
    parts += ["", "## Reproduce", "",
              f"The selection rule is `tsfm/weights/{name}/suite.json` (written by hand; each change to it is "
              "decided on the broad dev benchmark, CHANGELOG.md). Each variant is reproduced as its own card says "
              f"(`tsfm/weights/<variant>/README.md`); `{TOOL} card {name}` writes this card.", "",
              "## Zero-shot accuracy", "", *_benchmark_table(results, name), ""]
    out = WEIGHTS_DIR / name / CARD_FILE
    out.write_text("\n".join(parts))
    return out


def write_card(name: str, results: Path = RESULTS) -> Path:
    """Rewrite the card of the shipped ``name`` (suite, ensemble or checkpoint) from what it records
    (its phases, its members' cards, its suite.json) and from ``results``; no weight changes."""
    from tsfm.hub import load_model

    if load_suite(name) is not None:
        return suite_card(name, results)
    path = WEIGHTS_DIR / name / CONFIG_FILE
    if not path.is_file():
        raise SystemExit(f"error: {path} does not exist")
    stored = json.loads(path.read_text())
    if stored.get("family") == "ensemble":
        model = load_model(WEIGHTS_DIR / name)
        members = list(model.config.labels or [])
        if len(members) != len(model.members):
            raise SystemExit(f"error: {path} does not name its members (labels)")
        card = _ensemble_card(name, model, members, stored, results)
    else:
        card = checkpoint_card(name, stored, _shipped_card_phases(name), results)
    (WEIGHTS_DIR / name / CARD_FILE).write_text(card)
    return WEIGHTS_DIR / name / CARD_FILE


# ----------------------------------------------------------------------------- command line
app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.splitlines()[0])


@app.callback()
def _in_a_checkout() -> None:
    """Refuse to write into an installed copy of the package: releases go into this checkout."""
    if WEIGHTS_DIR.resolve() != (REPO / "tsfm" / "weights").resolve():
        raise SystemExit(f"error: tsfm is imported from {WEIGHTS_DIR.parent}, not from this checkout ({REPO}): "
                         "run `pip install -e .` in the checkout first")


@app.command("checkpoint")
def checkpoint_command(
    name: str = typer.Argument(..., help="shipped model name (tsfm/weights/NAME)"),
    phase: list[Path] = typer.Option(..., "--phase", help="checkpoint folder of a training phase, in order; "
                                                          "the last one ships (repeat per phase)"),
    extend: bool = typer.Option(False, "--extend", help="append the phases to the shipped phases of --base "
                                                        "(the first must have started from its weights)"),
    base: str | None = typer.Option(None, "--base", help="with --extend: the shipped model the first phase "
                                                            "started from (default NAME)"),
    results: Path = typer.Option(RESULTS, "--results", help="zero-shot results for the card's accuracy table"),
) -> None:
    """Ship a trained checkpoint (its last phase's files) with a card made from every phase's card."""
    if base and not extend:
        raise typer.BadParameter("--base goes with --extend", param_hint="--base")
    typer.echo(release(name, phase, results, extend=extend, base=base))


@app.command("ensemble")
def ensemble_command(
    name: str = typer.Argument(..., help="shipped name of the ensemble (tsfm/weights/NAME)"),
    member: list[str] = typer.Option(..., "--member", help="a shipped checkpoint (repeat per member, two or more)"),
    weight: list[float] | None = typer.Option(None, "--weight", help="one relative weight per member, in order "
                                                                         "(default equal)"),
    horizon_rule: str = typer.Option("shortest", "--horizon-rule", help="shortest: every member forecasts every "
                                     "step; longest: a shorter member only its own steps (tsfm/models/ensemble.py)"),
    results: Path = typer.Option(RESULTS, "--results", help="zero-shot results for the card's accuracy table"),
) -> None:
    """Ship the quantile average of shipped checkpoints, referencing them (no copy of their weights)."""
    if horizon_rule not in ("shortest", "longest"):
        raise typer.BadParameter("shortest or longest", param_hint="--horizon-rule")
    typer.echo(release_ensemble(name, member, results, weight or None, horizon_rule))


@app.command("card")
def card_command(
    name: str = typer.Argument(..., help="shipped name: a checkpoint, an ensemble or a suite"),
    results: Path = typer.Option(RESULTS, "--results", help="zero-shot results for the card's accuracy table"),
) -> None:
    """Rewrite a shipped card from its recorded phases (or members, or suite.json) and newer results."""
    typer.echo(write_card(name, results))


if __name__ == "__main__":
    app()
