"""Ship a trained checkpoint as package weights, with a model card assembled from its records.

``python -m tsfm.train.release --name ttm --phase runs/a/checkpoint --phase runs/b/checkpoint``
copies the last phase's ``config.json`` + ``model.safetensors`` into ``tsfm/weights/<name>/`` and
writes ``README.md`` from each phase's own card (command, data, steps, wall time) and the
benchmark rows recorded in ``benchmarks/results/zero_shot.json``. Nothing in the card is typed
by hand: every number comes from a file a run wrote.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from tsfm.hub import CARD_FILE, CONFIG_FILE, WEIGHTS_DIR, WEIGHTS_FILE

REPO = Path(__file__).resolve().parents[2]


def _card_lines(card: str) -> list[str]:
    """The bullet list of a phase's card (everything before its config dump)."""
    return [line for line in card.split("## Config")[0].splitlines() if line.startswith("- ")]


def _benchmark_table(results: Path, name: str) -> list[str]:
    if not results.is_file():
        return ["(no benchmark results recorded yet: run `python benchmarks/zero_shot.py`)"]
    data = json.loads(results.read_text())
    aggregate = data.get("aggregate", {})
    lines = [
        f"Visible eval set (22 real tasks), zero-shot, from `{data.get('meta', {}).get('command', 'benchmarks/zero_shot.py')}` "
        f"({data.get('meta', {}).get('date', '')}); geometric mean over tasks of score / SeasonalNaive score:",
        "",
        "| model | rel. MASE | rel. sMAPE | rel. WQL | mean 10-90 coverage |",
        "|---|---|---|---|---|",
    ]
    for model, row in aggregate.items():
        label = f"**{model}**" if model == name else model
        cov = row.get("coverage_10_90")
        lines.append(
            f"| {label} | {row.get('MASE', float('nan')):.3f} | {row.get('sMAPE', float('nan')):.3f} | "
            f"{row.get('WQL', float('nan')):.3f} | {cov if cov is None else f'{cov:.3f}'} |"
        )
    return lines


def release(name: str, phases: list[Path], results: Path) -> Path:
    final = phases[-1]
    out = WEIGHTS_DIR / name
    out.mkdir(parents=True, exist_ok=True)
    for filename in (CONFIG_FILE, WEIGHTS_FILE):
        shutil.copyfile(final / filename, out / filename)
    config = json.loads((final / CONFIG_FILE).read_text())
    parts = [
        f"# `{name}`: tsfm's shipped {config['family'].upper()} weights",
        "",
        "Pretrained by our own recipe on synthetic series only (no real data, no evaluation data); "
        f"context {config['context_length']}, horizon {config['prediction_length']}, quantiles "
        f"{config['quantiles']}. Load with `tsfm.load_model(\"{name}\")` or `tsfm forecast --model {name}`.",
        "",
        "## How it was trained",
    ]
    for i, phase in enumerate(phases, 1):
        parts += ["", f"### Phase {i} (`{phase}`)", *_card_lines((phase / CARD_FILE).read_text())]
    parts += ["", "## Zero-shot accuracy", "", *_benchmark_table(results, name), ""]
    parts += ["## Config", "", "```json", json.dumps(config, indent=2), "```", ""]
    (out / CARD_FILE).write_text("\n".join(parts))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True, help="shipped model name (tsfm/weights/<name>)")
    parser.add_argument("--phase", action="append", required=True, type=Path,
                        help="checkpoint directory of a training phase, in order (the last one ships)")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results" / "zero_shot.json")
    args = parser.parse_args(argv)
    print(release(args.name, args.phase, args.results))


if __name__ == "__main__":
    main()
