"""Run a benchmark script with another rollout rule past the network's horizon (a trial, not shipped).

The package rolls a network out Chronos-Bolt style with one path per quantile level (9 paths, so
every chunk after the first costs 9 network calls per series). This runs ``zero_shot.py`` or
``ltsf.py`` unchanged except for that rule, so the two can be compared on the same windows:

    python benchmarks/trials/rollout_paths.py three benchmarks/zero_shot.py --skip-stats --models ttm ...

- ``median``: the median path only (Chronos-Bolt's first rule), each later chunk's quantiles as
  the network gives them from that one path;
- ``three``: the paths of the levels nearest 0.1, 0.5 and 0.9, their 3 x Q values per step pooled
  into empirical quantiles as the package pools its Q x Q.

Covariates are not supported here. The results file records this command.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

import tsfm_runtime.rules as rules

sys.path.insert(0, str(Path(__file__).resolve().parent))
from swapped_rule import run_script  # noqa: E402

FEEDBACK_LEVELS = {"median": (0.5,), "three": (0.1, 0.5, 0.9)}


def rollout_with(feedback_levels: tuple[float, ...]) -> Callable[..., np.ndarray]:
    """A drop-in for ``tsfm_runtime.rules.rollout`` that feeds back only the paths of ``feedback_levels``."""

    def rollout(step_fn, values, mask, freq_id, horizon, levels, step, past_exog=None, future_exog=None):
        if past_exog is not None or future_exog is not None:
            raise SystemExit("error: this trial rollout takes no covariates")
        levels = np.asarray(levels)
        picks = sorted({int(np.abs(levels - p).argmin()) for p in feedback_levels})
        n, context_len, c = values.shape
        k, q = len(picks), len(levels)
        chunks = [step_fn(values, mask, freq_id, None, None)]
        done = min(step, horizon)
        paths, paths_mask, path_freq = np.repeat(values, k, axis=0), np.repeat(mask, k, axis=0), np.repeat(freq_id, k)
        while done < horizon:
            latest = chunks[-1][..., picks].transpose(0, 3, 1, 2).reshape(n * k, step, c)
            paths = np.concatenate([paths, latest], axis=1)[:, -context_len:]
            paths_mask = np.concatenate([paths_mask, np.ones_like(latest)], axis=1)[:, -context_len:]
            out = step_fn(paths, paths_mask, path_freq, None, None)
            if k == 1:  # one path: the network's own quantiles
                chunks.append(out.astype(np.float32))
            else:
                samples = out.reshape(n, k, step, c, q).transpose(0, 2, 3, 1, 4).reshape(n, step, c, k * q)
                chunks.append(np.quantile(samples, levels, axis=-1).transpose(1, 2, 3, 0).astype(np.float32))
            done += step
        return np.sort(np.concatenate(chunks, axis=1)[:, :horizon], axis=-1)

    return rollout


def main() -> None:
    if len(sys.argv) < 3 or sys.argv[1] not in FEEDBACK_LEVELS:
        raise SystemExit(f"usage: rollout_paths.py {{{','.join(FEEDBACK_LEVELS)}}} SCRIPT [ARGS...]")
    rules.rollout = rollout_with(FEEDBACK_LEVELS[sys.argv[1]])
    run_script(sys.argv[2], sys.argv[3:])


if __name__ == "__main__":
    main()
