"""The `ttm` suite's forecasts moved toward statistical point forecasts (a trial, not shipped).

Why: combining forecasts of different kinds is the most reliable gain the M competitions found,
and the suite's losses on unseen data are on short yearly and quarterly business series, where
ETS and Theta are strong. Each combination keeps the suite's calibrated spread and moves its
location: every quantile (and the mean) is shifted by ``location - suite median``.

Rows written (the suite, AutoETS and AutoTheta are run here; the other rows come from ``--reuse``):

- ``loc:mean3``   location = mean of the suite's median, AutoETS and AutoTheta (the rule under trial)
- ``loc:theta2``  location = mean of the suite's median and AutoTheta
- ``loc:median3`` location = median of the three
- ``avg:theta2``  every quantile the mean of the suite's and AutoTheta's (their spread too)

    python benchmarks/trials/stat_location.py --reuse benchmarks/results/zero_shot.json --output /tmp/loc.md
    python benchmarks/compare.py /tmp/loc.json loc:mean3 ttm
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import zero_shot as zs  # noqa: E402
from common import finish_run, start_run  # noqa: E402

SUITE, ETS, THETA = "ttm", "AutoETS", "AutoTheta"
COMBINATIONS = ("loc:mean3", "loc:theta2", "loc:median3", "avg:theta2")
LEVELS = [str(q) for q in zs.QUANTILES]


def shifted(suite, location: np.ndarray):
    """The suite's forecast with every quantile and the mean moved by ``location - median``."""
    out = suite.copy()
    shift = location - suite["0.5"].to_numpy()
    for column in ["mean", *LEVELS]:
        out[column] = suite[column].to_numpy() + shift
    return out


def combinations(forecasts: dict) -> dict:
    suite, ets, theta = (forecasts[m] for m in (SUITE, ETS, THETA))
    for other in (ets, theta):  # backtests are built the same way; be sure rows line up
        assert (other["unique_id"].to_numpy() == suite["unique_id"].to_numpy()).all()
        assert (other["ds"].to_numpy() == suite["ds"].to_numpy()).all()
    points = np.stack([suite["0.5"].to_numpy(), ets["0.5"].to_numpy(), theta["0.5"].to_numpy()])
    averaged = suite.copy()
    for column in ["mean", *LEVELS]:
        averaged[column] = (suite[column].to_numpy() + theta[column].to_numpy()) / 2
    averaged[LEVELS] = np.sort(averaged[LEVELS].to_numpy(), axis=1)
    return {
        "loc:mean3": shifted(suite, points.mean(axis=0)),
        "loc:theta2": shifted(suite, points[[0, 2]].mean(axis=0)),
        "loc:median3": shifted(suite, np.median(points, axis=0)),
        "avg:theta2": averaged,
    }


def main() -> int:
    args = zs.parse_args(sys.argv[1:])
    meta = start_run(args.num_threads, zs.PACKAGES)
    meta["command"] = "python benchmarks/trials/stat_location.py " + " ".join(sys.argv[1:])
    tasks = zs.load_tasks(args.data_dir, args.tasks, args.min_windows, args.max_history)
    run_here = [SUITE, ETS, THETA]
    reused = zs.reused_rows(args.reuse, tasks, set(run_here))

    import pandas as pd

    from tsfm.evaluation import evaluate_forecasts

    warnings.filterwarnings("ignore", category=UserWarning, module=r"statsforecast\.")
    makers = {ETS: lambda t: zs.statsforecast_fn(ETS, t), THETA: lambda t: zs.statsforecast_fn(THETA, t),
              SUITE: lambda t: zs.tsfm_fn(SUITE, t)}
    warm_seconds = zs.warm_up(makers)
    results = {}
    for task in tasks:
        df = pd.read_csv(Path(task["dir"]) / task["file"], parse_dates=["ds"])
        results[task["name"]] = dict(reused.get(task["name"], {}))
        forecasts = {}
        for name in run_here:
            run, forecasts[name] = zs.run_model(makers[name](task), df, task)
            results[task["name"]][name] = run
        if any(f is None for f in forecasts.values()):
            print(f"{task['name']}: a member failed, no combinations", file=sys.stderr)
            continue
        for label, frame in combinations(forecasts).items():
            scores = evaluate_forecasts(frame, frame, df, task["m"], zs.QUANTILES)
            results[task["name"]][label] = {"scores": scores, "seconds": 0.0, "error": None}
        print(f"{task['name']:<26} " + "  ".join(
            f"{m} {results[task['name']][m]['scores']['MASE']:.3f}" for m in (SUITE, "loc:mean3")), file=sys.stderr)
    finish_run(meta)

    zs.write_report(args, meta, tasks, results, [SUITE, *COMBINATIONS], warm_seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
