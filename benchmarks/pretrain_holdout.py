"""Hold out half of the real pretraining series of one frequency as extra evaluation tasks.

    python benchmarks/pretrain_holdout.py                       # tsdl yearly -> runs/holdout/tsdl_yearly
    python benchmarks/zero_shot.py --data-dir runs/holdout/tsdl_yearly --output /tmp/holdout.md

Why: 7 of the broad dev benchmark's 11 yearly tasks are M1's, so it cannot tell a yearly prior that
suits business series from one that suits natural cycles. The 217 yearly series of tsdl (tree
rings, agriculture, hydrology, macro- and microeconomics, ecology, ...) are broader, and a model
trained on the other half (``exclude`` this folder in the corpus recipe) has never seen them.

The split is fixed by a hash of each series id, so it never depends on which series a run keeps.
Series that share values with ``shared/data/eval`` or ``shared/data/real/dev`` are left out (they
are scored there already), as are series with gaps in what is kept; series that start before
1700 are moved to start there (pandas reads CSV dates only from 1677). Each series keeps its last
``--max-length`` points, fewer than the 512 at which the ``ttm`` suite hands a history to a model
that was trained on every tsdl series. The yearly and monthly specialists never saw tsdl's
series before these held-out halves were made; ``ttm-96-quarterly`` trained on all of its quarterly
ones, so quarterly scores of the shipped suite here are not clean (compare with a model retrained
with the folder excluded). One task per subject; subjects with fewer than
``--min-series`` held-out series are pooled as ``other``. Written in the evaluation sets' format
(long CSVs and ``manifest.json``); windows follow ``shared/data/real/dev``'s convention.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import REPO_ROOT  # noqa: E402

PRETRAIN = REPO_ROOT.parent / "shared" / "data" / "real" / "pretrain"
EVALUATION = [REPO_ROOT.parent / "shared" / "data" / "eval", REPO_ROOT.parent / "shared" / "data" / "real" / "dev"]
HORIZON = {"YS": 6, "QS": 8, "MS": 18}
EARLIEST = pd.Timestamp("1700-01-01")
SEASON = {"YS": 1, "QS": 4, "MS": 12}


def held_out(unique_id: str) -> bool:
    """Half of all ids, fixed by their hash."""
    return hashlib.sha256(unique_id.encode()).digest()[0] % 2 == 0


def restamped(frame: pd.DataFrame, freq: str) -> pd.DataFrame:
    """Series that start before 1700 moved to start there, spacing kept: pandas reads CSV dates
    as nanosecond stamps, which begin in 1677 (tree-ring series reach back centuries)."""
    first = pd.Timestamp(frame["ds"].iloc[0])
    if first >= EARLIEST:
        return frame
    stamps = pd.date_range(EARLIEST, periods=len(frame), freq=freq)
    return frame.assign(ds=stamps.astype(frame["ds"].dtype))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--freq", default="YS", choices=sorted(HORIZON))
    parser.add_argument("--max-length", type=int, default=240)
    parser.add_argument("--min-series", type=int, default=5)
    parser.add_argument("--output", type=Path, default=None, help="default runs/holdout/tsdl_<yearly|...>")
    args = parser.parse_args(argv)
    from tsfm.data.real import ValueFingerprints

    name = {"YS": "yearly", "QS": "quarterly", "MS": "monthly"}[args.freq]
    out = args.output or REPO_ROOT / "runs" / "holdout" / f"tsdl_{name}"
    meta = pd.read_csv(PRETRAIN / "series.csv")
    meta = meta[(meta["file"] == "tsdl.parquet") & (meta["freq"] == args.freq)]
    meta = meta[meta["unique_id"].map(held_out)]
    table = pd.read_parquet(PRETRAIN / "tsdl.parquet")
    table = table[table["unique_id"].isin(meta["unique_id"])].sort_values(["unique_id", "ds"])
    guard = ValueFingerprints.of_folders(EVALUATION)
    h, m = HORIZON[args.freq], SEASON[args.freq]
    kept, dropped = {}, {"evaluation look-alike": [], "gaps": [], "too short": []}
    for uid, whole in table.groupby("unique_id", sort=True):
        frame = whole.tail(args.max_length)
        y = frame["y"].to_numpy(dtype=np.float64)
        if guard.matches(whole["y"].to_numpy(dtype=np.float64)):
            dropped["evaluation look-alike"].append(uid)
        elif not np.isfinite(y).all():
            dropped["gaps"].append(uid)
        elif len(y) < 3 * h + 2:
            dropped["too short"].append(uid)
        else:
            kept[uid] = restamped(frame[["unique_id", "ds", "y"]], args.freq)
    subject = meta.set_index("unique_id")["subject"].reindex(list(kept))
    counts = subject.value_counts()
    subject = subject.where(subject.map(counts) >= args.min_series, "other")

    out.mkdir(parents=True, exist_ok=True)
    tasks = []
    for group in sorted(subject.unique()):
        ids = sorted(subject.index[subject == group])
        frame = pd.concat([kept[i] for i in ids], ignore_index=True)
        lengths = frame.groupby("unique_id").size()
        task = f"tsdl_{name}_{re.sub(r'[^a-z0-9]+', '_', group.lower()).strip('_')}"
        frame.to_csv(out / f"{task}.csv", index=False)
        windows = 3 if lengths.min() - 3 * h >= max(2 * m, 12) else 1
        tasks.append({"name": task, "file": f"{task}.csv", "freq": args.freq, "m": m, "horizon": h,
                      "n_windows": windows, "n_series": len(ids), "min_length": int(lengths.min()),
                      "max_length": int(lengths.max()), "n_points": int(lengths.sum()), "multivariate": False,
                      "source": ["shared/data/real/pretrain/tsdl.parquet"], "subject": group})
    manifest = {"set": f"tsdl-{name}-holdout",
                "rule": "held out of pretraining: a corpus that trains a model scored here lists this folder in "
                        "its real sources' exclude",
                "split": "sha256(unique_id)[0] even", "max_length": args.max_length,
                "dropped": {k: sorted(v) for k, v in dropped.items()}, "tasks": tasks}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    print(f"wrote {out}: {len(kept)} series in {len(tasks)} tasks; dropped "
          + ", ".join(f"{len(v)} {k}" for k, v in dropped.items()), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
