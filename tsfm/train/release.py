"""Ship a trained checkpoint as package weights, with a model card assembled from its records.

``python -m tsfm.train.release --name ttm-512 --phase runs/a/checkpoint --phase runs/b/checkpoint``
copies the last phase's ``config.json`` + ``model.safetensors`` into ``tsfm/weights/<name>/`` and
writes ``README.md`` from each phase's own card (command, data, steps, wall time) and the benchmark
rows recorded in ``benchmarks/results/zero_shot.json``. ``--suite --name ttm`` writes the card of a
suite (``tsfm/weights/ttm/suite.json``) from its variants' configs and cards; ``--refresh --name
NAME`` only rewrites a shipped card's zero-shot table from newer results. ``--extend`` adds phases
to a shipped model whose earlier run directories are gone (``runs/`` is not in git): the earlier
phases come from the shipped card, and the first new phase must have started from exactly the
shipped weights (same SHA-256). ``--extend --base ttm-96 --name ttm-96-yearly`` does the same for a
new checkpoint trained on from another shipped one (a suite's specialist). ``--ensemble ttm-96
--ensemble ttm-96-anchored --name ttm-96-ensemble`` ships the quantile average of shipped checkpoints
as one checkpoint (``tsfm.models.ensemble``) whose card carries each member's history. Nothing in a
card is typed by hand: every number comes from a file a run wrote.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
from pathlib import Path

from tsfm.errors import InputError
from tsfm.hub import CARD_FILE, CONFIG_FILE, SUITE_FILE, WEIGHTS_DIR, WEIGHTS_FILE, load_suite

REPO = Path(__file__).resolve().parents[2]


def _card_lines(card: str) -> list[str]:
    """The bullet list of a phase's card (everything before its config dump), plus its optimiser
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
                     f"`{optim.get('loss_scale', 'mad')}` (tsfm/train/losses.py)")
    return lines


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


def _shipped_phases(name: str, first_new: Path) -> list[str]:
    """The "### Phase" sections of ``name``'s shipped card, after checking that ``first_new`` was
    trained from exactly the shipped weights (its card names the ``init_from`` directory, or the
    shipped name itself)."""
    out = WEIGHTS_DIR / name
    card = (out / CARD_FILE).read_text() if (out / CARD_FILE).is_file() else ""
    trained = card.partition("## How it was trained")[2].partition("\n## ")[0]
    sections = re.split(r"\n(?=### Phase )", trained.strip())
    if not trained or not sections[0].startswith("### Phase "):
        raise SystemExit(f"error: {out / CARD_FILE} has no '## How it was trained' phases to extend")
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
    return sections


def release(name: str, phases: list[Path], results: Path, extend: bool = False, base: str | None = None) -> Path:
    """Ship ``phases[-1]`` as ``name``; with ``extend``, after the shipped phases of ``base`` (default ``name``)."""
    final = phases[-1]
    out = WEIGHTS_DIR / name
    if (out / SUITE_FILE).exists():
        raise SystemExit(f"error: {out} is a suite; release the checkpoint under a variant name (e.g. {name}-512)")
    earlier = _shipped_phases(base or name, phases[0]) if extend else []
    out.mkdir(parents=True, exist_ok=True)
    for filename in (CONFIG_FILE, WEIGHTS_FILE):
        shutil.copyfile(final / filename, out / filename)
    config = json.loads((final / CONFIG_FILE).read_text())
    histories = "\n".join(earlier) + "".join((p / CARD_FILE).read_text() for p in phases)
    data = ("synthetic and real series (no evaluation data)" if "real series" in histories
            else "synthetic series only (no real data, no evaluation data)")
    parts = [
        f"# `{name}`: tsfm's shipped {config['family'].upper()} weights",
        "",
        f"Pretrained by our own recipe on {data}; "
        f"context {config['context_length']}, horizon {config['prediction_length']}, quantiles "
        f"{config['quantiles']}. Load with `tsfm.load_model(\"{name}\")` or `tsfm forecast --model {name}`.",
        "",
        "## How it was trained",
    ]
    for section in earlier:
        parts += ["", *section.strip().splitlines()]
    for i, phase in enumerate(phases, len(earlier) + 1):
        parts += ["", f"### Phase {i} (`{phase}`)", *_card_lines((phase / CARD_FILE).read_text())]
    parts += ["", "## Zero-shot accuracy", "", *_benchmark_table(results, name), ""]
    parts += ["## Config", "", "```json", json.dumps(config, indent=2), "```", ""]
    (out / CARD_FILE).write_text("\n".join(parts))
    return out


def release_ensemble(name: str, members: list[str], results: Path, weights: list[float] | None = None,
                     horizon_rule: str = "shortest") -> Path:
    """Ship the quantile average of the shipped checkpoints ``members`` as one checkpoint ``name``."""
    from tsfm.hub import load_model, save_pretrained
    from tsfm.models.ensemble import Ensemble

    if name in members or (WEIGHTS_DIR / name / SUITE_FILE).exists():
        raise SystemExit(f"error: {name} is one of its members or a suite: choose a new name for the ensemble")
    for member in members:
        if not (WEIGHTS_DIR / member / CONFIG_FILE).is_file():
            raise SystemExit(f"error: ensemble member {member} is not a shipped checkpoint: release it first")
    try:
        model = Ensemble.from_models([load_model(WEIGHTS_DIR / m) for m in members], weights, labels=members,
                                     horizon_rule=horizon_rule)
    except InputError as err:  # members that do not agree, bad weights
        raise SystemExit(f"error: {err}") from None
    config = model.config
    shares = config.normalised_weights
    mixed = ""
    if len({(m.config.context_length, m.config.prediction_length) for m in model.members}) > 1:
        horizons = ("a shorter member horizon covers only its own steps, its weight fading out over their last "
                    "quarter" if config.horizon_rule == "longest" else "a longer member horizon is cut to the ensemble's")
        mixed = f" (a member with a shorter context reads the most recent steps of the window; {horizons})"
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
    for member, share, module in zip(members, shares, model.members):
        parts.append(f"| `{member}` | {module.config.family} | {share:.3g} | {module.num_parameters():,} |")
    parts += ["", "## How it was trained"]
    for i, member in enumerate(members, 1):
        card = (WEIGHTS_DIR / member / CARD_FILE).read_text()
        trained = card.partition("## How it was trained")[2].partition("\n## ")[0].strip()
        parts += ["", f"### Member {i}: `{member}`", ""]
        parts += [("#" + line) if line.startswith("### ") else line for line in trained.splitlines()]
    parts += ["", "## Zero-shot accuracy", "", *_benchmark_table(results, name), ""]
    parts += ["## Config", "", "```json", json.dumps(config.to_dict(), indent=2), "```", ""]
    return save_pretrained(model, WEIGHTS_DIR / name, card="\n".join(parts))


def refresh_card(name: str, results: Path) -> Path:
    """Rewrite the zero-shot table of a shipped card (checkpoint or suite) from ``results``; the rest stays."""
    if load_suite(name) is not None:
        return suite_card(name, results)
    path = WEIGHTS_DIR / name / CARD_FILE
    if not path.is_file():
        raise SystemExit(f"error: {path} does not exist")
    head, marker, tail = path.read_text().partition("## Zero-shot accuracy")
    if not marker:
        raise SystemExit(f"error: {path} has no '## Zero-shot accuracy' section")
    rest = tail[tail.index("\n## "):] if "\n## " in tail else "\n"
    path.write_text(head + marker + "\n\n" + "\n".join(_benchmark_table(results, name)) + "\n" + rest)
    return path


def suite_card(name: str, results: Path) -> Path:
    """Write the card of the suite ``name`` (its ``suite.json`` already in place) from its variants' cards."""
    suite = load_suite(name)
    if suite is None:
        raise SystemExit(f"error: {WEIGHTS_DIR / name / SUITE_FILE} does not exist")
    parts = [
        f"# `{name}`: a suite of shipped {name.upper()} checkpoints",
        "",
        f"`{name}` is served by {len(suite.variants) + len(suite.by_frequency)} checkpoints; `Forecaster(model=\"{name}\")`, "
        f"`tsfm forecast --model {name}` and the other entry points pick one per dataset by the median "
        f"observed length of its series, among the variants whose context covers at least "
        f"{suite.min_seasons:g} seasons of the data's frequency (granite-tsfm chooses among its TTM "
        f"revisions the same way)"
        + ("; on data of some resolutions a specialist trained on for it stands in for the chosen variant"
           if suite.by_frequency else "")
        + f". Without data (`tsfm.load_model(\"{name}\")`, `tsfm export`) it is "
        f"`{suite.default}`. Each variant is also offered by its own name.",
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
    parts += ["", "How each variant was trained: its own card (`tsfm/weights/<variant>/README.md`).", "",
              "## Zero-shot accuracy", "", *_benchmark_table(results, name), ""]
    out = WEIGHTS_DIR / name / CARD_FILE
    out.write_text("\n".join(parts))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="shipped model name (tsfm/weights/<name>)")
    parser.add_argument("--phase", action="append", type=Path,
                        help="checkpoint directory of a training phase, in order (the last one ships)")
    parser.add_argument("--suite", action="store_true",
                        help="write the card of the suite NAME (tsfm/weights/NAME/suite.json) instead")
    parser.add_argument("--refresh", action="store_true",
                        help="only rewrite the zero-shot table of NAME's shipped card from --results")
    parser.add_argument("--extend", action="store_true",
                        help="append the --phase runs to NAME's shipped phases (the first must start from its weights)")
    parser.add_argument("--base", help="with --extend: the shipped model the first phase started from (default NAME)")
    parser.add_argument("--ensemble", action="append", metavar="MEMBER",
                        help="ship NAME as the quantile average of these shipped checkpoints (repeat per member)")
    parser.add_argument("--weight", action="append", type=float,
                        help="with --ensemble: one relative weight per member, in order (default equal)")
    parser.add_argument("--horizon-rule", choices=("shortest", "longest"), default="shortest",
                        help="with --ensemble: forecast the members' shortest horizon (all members every step) or "
                             "their longest (a shorter member only its own steps); tsfm/models/ensemble.py")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results" / "zero_shot.json")
    args = parser.parse_args(argv)
    if (args.weight or args.horizon_rule != "shortest") and not args.ensemble:
        parser.error("--weight and --horizon-rule go with --ensemble")
    if args.refresh:
        print(refresh_card(args.name, args.results))
    elif args.suite:
        print(suite_card(args.name, args.results))
    elif args.ensemble:
        print(release_ensemble(args.name, args.ensemble, args.results, args.weight, args.horizon_rule))
    elif not args.phase:
        parser.error("--phase is required (or --suite)")
    else:
        print(release(args.name, args.phase, args.results, extend=args.extend, base=args.base))


if __name__ == "__main__":
    main()
