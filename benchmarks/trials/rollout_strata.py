"""Rolled-out intervals from stratified levels (a trial; its rule is in this folder's README).

The shipped rollout (``tsfm_runtime.rules.rollout``) feeds back one path per quantile level and
pools every path's Q quantiles as Q x Q equally weighted samples. Points at the levels 0.1..0.9
hold only the central 80% of a distribution (0.6 of a normal's variance), so each chunk loses
spread. The candidate (``stratified_rollout``) reads every distribution at the Q stratified
levels (k - 1/2) / Q, whose equal weights are honest, and reads the pool back with Hazen's
plotting positions.

``--candidate calibration_halves`` scores that trial's rule (``calibration_halves.py`` beside this
file: calibration factors per half of the horizon) on the same data instead, as "strata" in the
tables; ``--candidate deseasonalize`` scores ``deseasonalize.py``'s rule the same way.
``--candidate model --candidate-model PATH`` scores another model (a trial suite's folder) in
place of the first of ``--models`` with the shipped rules, as "strata" (the `long_cross` trial).

First an oracle check (an exact Gaussian random-walk or AR(1) forecaster in the network's place:
rolled-out 10-90 widths over the true ones), then the real-data scores: the suite and two networks
at horizon 336 from ten origins per series on the dev and eval datasets long enough for it.

    python benchmarks/trials/rollout_strata.py --output benchmarks/results/suite_trials/rollout_strata.md
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from statistics import NormalDist

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import common  # noqa: E402

import tsfm_runtime.rules as rules  # noqa: E402

LEVELS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
DATASETS = ("eval/co2_weekly", "eval/sunspots_monthly", "eval/taylor_electricity",
            "real/dev/etth1", "real/dev/etth2", "real/dev/exchange_rate")


# ----------------------------------------------------------------------------- the candidate
def normal_scores(levels) -> np.ndarray:
    return np.array([NormalDist().inv_cdf(float(q)) for q in levels])


def at_levels(quantiles: np.ndarray, levels, targets) -> np.ndarray:
    """Sorted quantiles [..., Q] at ``levels`` read at ``targets``: piecewise linear in normal scores,
    the outermost segments extended beyond the model's range."""
    if len(levels) < 2:
        return np.repeat(quantiles, len(targets), axis=-1)
    z, t = normal_scores(levels), normal_scores(targets)
    idx = np.clip(np.searchsorted(z, t) - 1, 0, len(z) - 2)
    weight = (t - z[idx]) / (z[idx + 1] - z[idx])
    lower, upper = quantiles[..., idx], quantiles[..., idx + 1]
    return lower + weight * (upper - lower)


def stratified_rollout(step_fn, values, mask, freq_id, horizon, levels, step, past_exog=None, future_exog=None):
    """``rules.rollout`` with every distribution carried at the stratified levels (same calls)."""
    levels = np.asarray(levels)
    q = len(levels)
    strata = (np.arange(q) + 0.5) / q
    send_future = future_exog is not None
    if past_exog is not None and future_exog is None:
        future_exog = np.full((len(past_exog), horizon, past_exog.shape[2]), np.nan, dtype=np.float32)
    first = rules._chunk(future_exog, 0, step) if past_exog is not None and send_future else None
    chunks = [np.sort(step_fn(values, mask, freq_id, past_exog, first), axis=-1)]
    latest = at_levels(chunks[0], levels, strata)
    done = min(step, horizon)
    n, context_len, c = values.shape
    paths, paths_mask, path_freq = np.repeat(values, q, axis=0), np.repeat(mask, q, axis=0), np.repeat(freq_id, q)
    paths_exog = None if past_exog is None else np.repeat(past_exog, q, axis=0)
    while done < horizon:
        fed = latest.transpose(0, 3, 1, 2).reshape(n * q, step, c).astype(np.float32)
        paths = np.concatenate([paths, fed], axis=1)[:, -context_len:]
        paths_mask = np.concatenate([paths_mask, np.ones(fed.shape, dtype=paths_mask.dtype)], axis=1)[:, -context_len:]
        ahead = None
        if paths_exog is not None:
            seen = np.repeat(rules._chunk(future_exog, done - step, step), q, axis=0)
            paths_exog = np.concatenate([paths_exog, seen], axis=1)[:, -context_len:]
            ahead = np.repeat(rules._chunk(future_exog, done, step), q, axis=0) if send_future else None
        out = np.sort(step_fn(paths, paths_mask, path_freq, paths_exog, ahead), axis=-1)
        pool = at_levels(out, levels, strata).reshape(n, q, step, c, q).transpose(0, 2, 3, 1, 4).reshape(n, step, c, -1)
        chunks.append(np.quantile(pool, levels, axis=-1, method="hazen").transpose(1, 2, 3, 0).astype(np.float32))
        latest = np.quantile(pool, strata, axis=-1, method="hazen").transpose(1, 2, 3, 0)
        done += step
    return np.sort(np.concatenate(chunks, axis=1)[:, :horizon], axis=-1)


# ----------------------------------------------------------------------------- oracle check
def oracle_rows(step: int = 32, horizon: int = 320) -> list[list]:
    z = normal_scores(LEVELS)
    ar = 0.97
    spreads = {"random walk": lambda s: np.sqrt(s),
               "AR(1) 0.97": lambda s: np.sqrt((1 - ar ** (2 * s)) / (1 - ar ** 2))}
    decay = {"random walk": lambda s: np.ones_like(s, dtype=float), "AR(1) 0.97": lambda s: ar ** s}
    rows = []
    for name in spreads:
        def step_fn(values, mask, freq_id, past, future, name=name):
            s = np.arange(1, step + 1)
            mean = values[:, -1, :][:, None, :, None] * decay[name](s)[None, :, None, None]
            return (mean + spreads[name](s)[None, :, None, None] * z).astype(np.float32)

        values = np.zeros((1, 96, 1), np.float32)
        at = np.array([32, 64, 128, 192, 320])
        for label, fn in (("shipped", rules.rollout), ("strata", stratified_rollout)):
            out = fn(step_fn, values, np.ones_like(values, bool), np.zeros(1, int), horizon, LEVELS, step)
            width = out[0, at - 1, 0, -1] - out[0, at - 1, 0, 0]
            rows.append([name, label, *(width / (2 * z[-1] * spreads[name](at)))])
    return rows


# ----------------------------------------------------------------------------- real data
def blocks(chunk: int, horizon: int) -> dict[str, tuple[int, int]]:
    """The first network call's steps, the rolled-out ones, and all."""
    return {f"1-{chunk}": (0, chunk), f"{chunk + 1}-{horizon}": (chunk, horizon), f"1-{horizon}": (0, horizon)}


def unit_scores(q: np.ndarray, y: np.ndarray, chunk: int) -> dict[str, np.ndarray]:
    """Per unit (series x origin) and block: pinball sum, |y| sum, |error of the median| sum, covered count."""
    lv = np.asarray(LEVELS)
    out = {}
    for block, (lo, hi) in blocks(chunk, y.shape[1]).items():
        qb, yb = q[:, lo:hi], y[:, lo:hi]
        diff = yb[..., None] - qb
        out[block] = np.stack([
            (np.maximum(lv * diff, (lv - 1) * diff).sum(axis=-1) * 2 / len(lv)).sum(axis=1),
            np.abs(yb).sum(axis=1),
            np.abs(yb - qb[..., len(lv) // 2]).sum(axis=1),
            ((yb >= qb[..., 0]) & (yb <= qb[..., -1])).sum(axis=1),
            np.full(len(yb), hi - lo),
        ], axis=1)
    return out


def forecast_units(model: str, frame: pd.DataFrame, horizon: int, origins: int,
                   history: int | None) -> tuple[np.ndarray, np.ndarray]:
    from tsfm import Forecaster

    n = frame.groupby("unique_id").size().min()
    cuts = np.linspace(int(n * 0.7), n - horizon, origins).astype(int)
    qs, ys = [], []
    for cut in cuts:
        context = frame.groupby("unique_id").head(cut)
        if history:
            context = context.groupby("unique_id").tail(history)
        out = Forecaster(model=model, horizon=horizon, quantiles=LEVELS).fit(context).predict()
        actual = frame.groupby("unique_id").nth(list(range(cut, cut + horizon)))
        qs.append(out[[str(q) for q in LEVELS]].to_numpy().reshape(-1, horizon, len(LEVELS)))
        ys.append(actual["y"].to_numpy().reshape(-1, horizon))
    return np.concatenate(qs), np.concatenate(ys)


def paired(cand: dict[str, dict[str, np.ndarray]], ref: dict[str, dict[str, np.ndarray]], block: str, metric: int,
           rng: np.random.Generator, resamples: int = 2000) -> tuple[float, float, float, dict[str, tuple]]:
    """Geometric mean over datasets of ratio-of-sums (metric column over |y|), with a stratified bootstrap."""
    def ratio(c, r, idx):
        return (c[idx, metric].sum() / c[idx, 1].sum()) / (r[idx, metric].sum() / r[idx, 1].sum())

    names = list(cand)
    per, draws = {}, []
    for name in names:
        c, r = cand[name][block], ref[name][block]
        boots = np.array([ratio(c, r, rng.integers(0, len(c), len(c))) for _ in range(resamples)])
        per[name] = (ratio(c, r, np.arange(len(c))), *np.percentile(boots, [2.5, 97.5]))
        draws.append(np.log(boots))
    point = float(np.exp(np.mean([np.log(per[name][0]) for name in names])))
    lo, hi = np.exp(np.percentile(np.mean(draws, axis=0), [2.5, 97.5]))
    return point, float(lo), float(hi), per


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--horizon", type=int, default=336)
    parser.add_argument("--origins", type=int, default=10)
    parser.add_argument("--chunk", type=int, default=96, help="steps of the first network call (scored apart)")
    parser.add_argument("--history", type=int, default=None, help="cut each history to its last N points")
    parser.add_argument("--models", default="ttm,ttm-512,ttm-96-general")
    parser.add_argument("--candidate", choices=("strata", "calibration_halves", "deseasonalize", "model"),
                        default="strata")
    parser.add_argument("--candidate-model", default=None, help="with --candidate model: the model compared")
    parser.add_argument("--output", type=Path, default=Path("/tmp/rollout_strata.md"))
    args = parser.parse_args()
    meta = common.start_run(1, ["tsfm", "numpy", "torch"])
    data = common.REPO_ROOT.parent / "shared" / "data"
    oracle = oracle_rows()
    shipped = {"rollout": rules.rollout, "conformal_widening": rules.conformal_widening, "widen": rules.widen,
               "_processed": rules._processed}
    if args.candidate == "strata":
        candidate = {"rollout": stratified_rollout}
    elif args.candidate == "model":
        if not args.candidate_model:
            parser.error("--candidate model needs --candidate-model")
        candidate = {}
    elif args.candidate == "deseasonalize":
        import deseasonalize

        candidate = {"_processed": deseasonalize.processed}
    else:
        import calibration_halves

        candidate = {"conformal_widening": calibration_halves.widening_by_half,
                     "widen": calibration_halves.widen_by_half}
    scores: dict = {}
    for model in args.models.split(","):
        for name in DATASETS:
            frame = pd.read_csv(data / f"{name}.csv", parse_dates=["ds"])
            for label, patch in (("shipped", shipped), ("strata", candidate)):
                for attr, fn in {**shipped, **patch}.items():
                    setattr(rules, attr, fn)
                scored = args.candidate_model if label == "strata" and args.candidate == "model" else model
                q, y = forecast_units(scored, frame, args.horizon, args.origins, args.history)
                scores.setdefault(model, {}).setdefault(label, {})[Path(name).name] = unit_scores(q, y, args.chunk)
            print(model, name, flush=True)
    for attr, fn in shipped.items():
        setattr(rules, attr, fn)
    meta = common.finish_run(meta)

    rng = np.random.default_rng(0)
    summary, per_dataset = [], []
    for model, by_rule in scores.items():
        for block in blocks(args.chunk, args.horizon):
            wql = paired(by_rule["strata"], by_rule["shipped"], block, 0, rng)
            wape = paired(by_rule["strata"], by_rule["shipped"], block, 2, rng)
            cover = {label: sum(s[block][:, 3].sum() for s in by_rule[label].values())
                     / sum(s[block][:, 4].sum() for s in by_rule[label].values()) for label in by_rule}
            summary.append([model, block, f"{wql[0]:.3f} [{wql[1]:.3f}, {wql[2]:.3f}]",
                            f"{wape[0]:.3f} [{wape[1]:.3f}, {wape[2]:.3f}]", cover["shipped"], cover["strata"]])
            for name, (point, lo, hi) in wql[3].items():
                w = wape[3][name]
                per_dataset.append([model, block, name, f"{point:.3f} [{lo:.3f}, {hi:.3f}]",
                                    f"{w[0]:.3f} [{w[1]:.3f}, {w[2]:.3f}]"])
    oracle_table = common.markdown_table(["process", "rollout", "step 32", "64", "128", "192", "320"], oracle)
    summary_table = common.markdown_table(
        ["model", "steps", "WQL strata / shipped", "WAPE strata / shipped", "10-90 coverage shipped", "strata"],
        summary)
    per_table = common.markdown_table(["model", "steps", "dataset", "WQL ratio", "WAPE ratio"], per_dataset)
    text = (f"# Rolled-out intervals from stratified levels\n\n{common.metadata_markdown(meta)}\n\n"
            f"## Oracle: rolled-out 10-90 width over the true width (32 steps a call)\n\n{oracle_table}\n\n"
            f"## Horizon {args.horizon}, {args.origins} origins per series, 6 datasets, histories "
            f"{f'cut to {args.history} points' if args.history else 'whole'} (geometric mean, 95% interval)"
            f"\n\n{summary_table}\n\n## Per dataset\n\n{per_table}\n")
    common.write_results(args.output, text, {"meta": meta, "oracle": oracle, "summary": summary,
                                             "per_dataset": per_dataset})


if __name__ == "__main__":
    main()
