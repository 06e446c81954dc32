"""Paired comparison of two models of a `benchmarks/zero_shot.py` run: does a change win beyond the interval?

    python benchmarks/compare.py benchmarks/results/zero_shot.json CANDIDATE REFERENCE [--output trial.md]

Prints, overall and per frequency group, the geometric mean over tasks of candidate score /
reference score (MASE and WQL) with its 95% bootstrap-over-tasks interval, and the verdict the
project keeps changes by: "wins" when the whole interval is below 1, "loses" when above, else
"within the interval"; a group of one task has no interval and gets no verdict; a bound within
``ROUNDING`` of 1 counts as 1 (identical forecasts that differ by float rounding, such as an exported
graph against its torch model, are not a win). Both models must have run on the same tasks and
windows (one results file; a trial that reused cached rows with ``--reuse`` qualifies). To compare a
model with itself before a code change, take the reference's rows from the run made before it:
``--reference-results OTHER.json`` (same tasks, windows and history). ``--add-tasks RUN.json`` pools
the tasks of another run (a held-out set scored separately) into the
same comparison. ``--output`` writes the table with the run-metadata block every results file has.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common import (
    check_output,
    existing_file,
    fail,
    markdown_table,
    metadata_markdown,
    read_json,
    run_metadata,
    write_results,
)
from zero_shot import GROUPS, ONE_TASK, WINDOW_KEYS, cell, geo_interval, log_ratios

ROUNDING = 5e-4  # ratios print with three decimals: a bound that rounds to 1.000 is not beyond 1


def verdict(interval: tuple[float, float, float]) -> str:
    """wins / loses / within the interval; a group of one task has no interval, so no verdict."""
    value, low, high = interval
    if value != value:
        return "–"
    if low != low:
        return ONE_TASK
    return "wins" if high < 1 - ROUNDING else ("loses" if low > 1 + ROUNDING else "within the interval")


def compare(data: dict, candidate: str, reference: str) -> list[list[str]]:
    tasks = [{"name": name, **info} for name, info in data["tasks"].items()]
    results = {name: info["models"] for name, info in data["tasks"].items()}
    for model in (candidate, reference):
        if not any(model in per for per in results.values()):
            known = sorted({m for per in results.values() for m in per})
            fail(f"no rows of {model} in the results; known: {known}")
    rows = []
    groups = {"all": tasks, **{g: [t for t in tasks if t["group"] == g] for g in GROUPS}}
    for group, members in groups.items():
        if not members:
            continue
        row = [f"{group} ({len(members)})"]
        for metric in ("MASE", "WQL"):
            interval = geo_interval(log_ratios(results, members, candidate, metric, reference))
            row += [cell(interval), verdict(interval)]
        rows.append(row)
    return rows


def with_reference_from(data: dict, other: dict, reference: str) -> tuple[dict, str]:
    """``data`` with ``reference``'s rows from the run ``other`` added under a name of their own
    (the same model name may be the candidate here); refused unless every task has the same windows."""
    label = f"{reference} (reference run)"
    tasks = {}
    for name, info in data["tasks"].items():
        old = other["tasks"].get(name)
        if old is None or any(old.get(k, 0) != info.get(k, 0) for k in WINDOW_KEYS):
            fail(f"the reference run has no {name} with the same windows and history")
        if reference not in old["models"]:
            fail(f"the reference run has no rows of {reference} on {name}")
        tasks[name] = {**info, "models": {**info["models"], label: old["models"][reference]}}
    return {**data, "tasks": tasks}, label


def with_tasks_of(data: dict, other: dict) -> dict:
    """``data`` with the tasks of another run added (refused where a task name is in both)."""
    shared = sorted(set(data["tasks"]) & set(other["tasks"]))
    if shared:
        fail(f"both runs hold tasks {', '.join(shared)}; --add-tasks takes other tasks")
    return {**data, "tasks": {**data["tasks"], **other["tasks"]}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("results", type=existing_file)
    parser.add_argument("candidate")
    parser.add_argument("reference")
    parser.add_argument("--reference-results", type=existing_file, default=None,
                        help="take the reference's rows from this other run of the same tasks and windows")
    parser.add_argument("--add-tasks", type=existing_file, action="append", default=[],
                        help="also compare on the tasks of this other run (other tasks, such as a held-out set); "
                        "repeat for several")
    parser.add_argument("--output", type=Path, default=None, help="also write the table as markdown here")
    args = parser.parse_args(argv)
    if args.add_tasks and args.reference_results:
        parser.error("--add-tasks and --reference-results do not combine: the reference run has no rows of the added "
                     "tasks")
    if args.output:
        check_output(args.output, with_json=False)
    data = read_json(args.results)
    reference, source = args.reference, f"`{args.results}`"
    for path in args.add_tasks:
        data = with_tasks_of(data, read_json(path))
        source += f" + `{path}`"
    if args.reference_results:
        data, reference = with_reference_from(data, read_json(args.reference_results), reference)
        source += f", `{args.reference}` from `{args.reference_results}`"
    table = markdown_table(["group (tasks)", "MASE ratio", "MASE", "WQL ratio", "WQL"],
                           compare(data, args.candidate, reference))
    text = f"`{args.candidate}` / `{args.reference}` on {source}:\n\n{table}"
    print(text)
    if args.output:
        meta = run_metadata({}, ("tsfm", "numpy"))
        write_results(args.output, f"# Paired comparison\n\n{metadata_markdown(meta)}\n\n{text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
