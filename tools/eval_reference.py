"""Write the forecasts the regression test compares against (tests/data/eval_reference/).

Run it only when a change is meant to alter forecasts, and say so in the commit: the test
exists so that refactors of the forecast path leave every number of the eval set unchanged.

    python tools/eval_reference.py [--eval ../shared/data/eval]
"""

from __future__ import annotations

import argparse
import json
import subprocess
from pathlib import Path

import torch

from tsfm import Forecaster

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "data" / "eval_reference"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval", type=Path, default=REPO.parent / "shared" / "data" / "eval")
    args = parser.parse_args()
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    tasks = json.loads((args.eval / "manifest.json").read_text())["tasks"]
    for task in tasks:
        forecaster = Forecaster(model="ttm", horizon=task["horizon"]).fit(args.eval / task["file"])
        forecaster.predict().to_csv(OUT / f"{task['name']}.forecast.csv", index=False, float_format="%.9g")
        backtest = forecaster.cross_validation(args.eval / task["file"], n_windows=task["n_windows"])
        backtest.to_csv(OUT / f"{task['name']}.backtest.csv", index=False, float_format="%.9g")
        print(task["name"], forecaster.model_name_)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=REPO).stdout.strip()
    (OUT / "README.md").write_text(
        "Forecasts of the `ttm` suite on every task of shared/data/eval (manifest horizon; the backtest over its "
        f"windows), written by `python tools/eval_reference.py` at commit {commit}.\n")


if __name__ == "__main__":
    main()
