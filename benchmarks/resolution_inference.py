"""How often `tsfm_runtime.freq.infer_resolution` names the right resolution of integer steps.

    python benchmarks/resolution_inference.py

A table of integer steps carries no frequency; the package reads one from the series' seasons
and serves the data as that resolution. This checks the reading against known labels, not
forecast scores:
- ``groups``: 40 draws of 20 series of one frequency from the real pretraining data (tsdl, M4
  weekly and hourly), as a dataset of integer steps would be; yearly and daily series are right
  when read as non-seasonal (daily business data has no weekly season);
- ``single``: every one of those series alone;
- ``false seasons``: random walks, and random walks under noise, read as seasonal (1, 2, 4 series
  of 40, 200 and 500 steps; 200 draws each);
- ``tasks``: the first window's history of each task of the broad dev benchmark;
- the cost of one reading of 1,000 random walks of 512 steps (median of 5, one thread).
Writes ``resolution_inference.md`` and ``.json`` to ``benchmarks/results``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
from common import RESULTS_DIR, check_output, finish_run, markdown_table, metadata_markdown, start_run, write_results
from zero_shot import frequency_group

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
PRETRAIN_FILES = ("tsdl", "m4_weekly", "m4_hourly")
# the label of each pretraining frequency, and what a right reading is
RIGHT = {"YS": "YS", "QS": "QS", "MS": "MS", "W-SUN": "W", "D": "YS", "h": "h"}
TASK_RIGHT = {"yearly": "YS", "quarterly": "QS", "monthly": "MS", "weekly": "W", "daily": "YS"}
SUB_DAILY = {24: "h", 48: "30min", 96: "15min"}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--draws", type=int, default=40, help="draws of 20 series per frequency")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "resolution_inference.md")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_output(args.output)  # before the run, not after it
    meta = start_run(1, ("tsfm", "numpy", "pandas"))
    from tsfm.data.real import read_real_series
    from tsfm_runtime.freq import NON_SEASONAL, infer_resolution

    rng = np.random.default_rng(0)
    by_freq: dict[str, list[np.ndarray]] = {}
    for entry in read_real_series([SHARED / "real" / "pretrain" / f"{name}.parquet" for name in PRETRAIN_FILES]):
        by_freq.setdefault(entry["freq"], []).append(entry["target"])
    rows, data = [], {"groups": {}, "single": {}, "false_seasons": {}, "tasks": {}}
    for freq, series in by_freq.items():
        groups = Counter(infer_resolution([series[i] for i in rng.choice(len(series), 20, replace=False)])
                         for _ in range(args.draws))
        single = Counter(infer_resolution([y]) for y in series)
        data["groups"][freq], data["single"][freq] = dict(groups), dict(single)
        rows.append([freq, RIGHT[freq], f"{groups[RIGHT[freq]]}/{args.draws}", f"{single[RIGHT[freq]]}/{len(series)}",
                     ", ".join(f"{k} {v}" for k, v in single.most_common() if k != RIGHT[freq])])

    false_rows = []
    for n_series in (1, 2, 4):
        for length in (40, 200, 500):
            walks = [infer_resolution([np.cumsum(rng.normal(size=length)) for _ in range(n_series)])
                     for _ in range(200)]
            noisy = [infer_resolution([np.cumsum(0.5 * rng.normal(size=length)) + rng.normal(size=length)
                                       for _ in range(n_series)]) for _ in range(200)]
            shares = [float(np.mean([r != NON_SEASONAL for r in walks])),
                      float(np.mean([r != NON_SEASONAL for r in noisy]))]
            data["false_seasons"][f"{n_series}x{length}"] = shares
            false_rows.append([n_series, length, *shares])

    task_rows = []
    for folder in (SHARED / "eval", SHARED / "real" / "dev"):
        for task in json.loads((folder / "manifest.json").read_text())["tasks"]:
            frame = pd.read_csv(folder / task["file"])
            histories = [g["y"].to_numpy(float)[: len(g) - task["horizon"] * task["n_windows"]]
                         for _, g in frame.groupby("unique_id")]
            got = infer_resolution(histories)
            group = frequency_group(task["freq"])
            right = SUB_DAILY[task["m"]] if group == "sub-daily" else TASK_RIGHT[group]
            data["tasks"][task["name"]] = {"freq": task["freq"], "m": task["m"], "read": got}
            task_rows.append([task["name"], task["freq"], task["m"], got, "yes" if got == right else "no"])
    # cost: 1,000 random walks of 512 steps (the reading runs once per dataset of integer steps)
    walks = list(np.cumsum(rng.normal(size=(1000, 512)), axis=1))
    seconds = []
    for _ in range(5):
        began = time.perf_counter()
        infer_resolution(walks)
        seconds.append(time.perf_counter() - began)
    data["seconds_1000x512"] = seconds
    meta = finish_run(meta)
    right_tasks = sum(r[-1] == "yes" for r in task_rows)
    markdown = "\n".join([
        "# Reading the resolution of integer steps from their seasons", "",
        "Written by `benchmarks/resolution_inference.py`; do not edit by hand.", "", metadata_markdown(meta), "",
        "## Real series of known frequency (tsdl, M4 weekly and hourly)", "",
        "Right reading: the frequency's resolution; yearly and daily (business) series: non-seasonal (YS).", "",
        markdown_table(["frequency", "right reading", "groups of 20 right", "single series right",
                        "single series read otherwise"], rows), "",
        "## Random walks read as seasonal (share of 200 draws)", "",
        markdown_table(["series", "steps", "random walk", "random walk under noise"], false_rows), "",
        "## Cost", "",
        f"1,000 random walks of 512 steps, one thread: median {statistics.median(seconds):.3f} s over 5 runs "
        f"({', '.join(f'{x:.3f}' for x in seconds)}).", "",
        f"## Tasks of the broad dev benchmark (first window's history): {right_tasks} of {len(task_rows)} right", "",
        "Right reading: the task's resolution; daily tasks (prices, rates) non-seasonal.", "",
        markdown_table(["task", "freq", "m", "read", "right"], task_rows), "",
    ])
    write_results(args.output, markdown, {"meta": meta, **data})
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
