"""Chaotic series from dysts: flows (ODEs and delay equations) and discrete maps.

dysts' defaults are a trap (research/models.md §6, pitfall 10): ``make_trajectory`` integrates
with Radau at rtol=atol=1e-12 (tens of seconds per system), reseeds numpy's global RNG, and
returns None when integration stops early. Here every call integrates with LSODA at
rtol 1e-6 / atol 1e-9, runs with the global RNG state saved and restored, and runs under a
work budget enforced inside the right-hand side (a count of evaluations, so it does not depend
on machine load, plus a wall-clock safety net). A system that raises, returns None, non-finite
or collapsed values, or exceeds the budget is skipped with a reason, never a crash.

Which systems work is decided once by ``probe_systems`` (default parameters and initial
condition, a short trajectory) and cached as JSON, so a corpus build sees a fixed list.
Per series (ranges): a system drawn uniformly from the working list; initial condition
x (1 + U[-0.1, 0.1]) per coordinate; with probability 0.5 every float parameter x
(1 + U[-0.05, 0.05]); 10 % extra points integrated and dropped as transient; flows sampled at
``pts_per_period`` points per dominant period — either the primary season of a frequency
(12 "MS", 24 "h", 48 "30min", 52 "W-SUN", so the cycle matches the label) or U{10..60} with a
non-seasonal label. A failed perturbed draw falls back to default parameters, then to another
system, up to ``max_attempts``.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata
import json
import time
import warnings
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from tsfm.data.synthetic import Sample, choose, nonseasonal_freq

__all__ = [
    "INTEGRATOR", "ChaosFailure", "chaos", "chaos_views", "integrate", "list_systems", "probe_systems",
    "working_systems",
]

INTEGRATOR: dict[str, Any] = {"method": "LSODA", "rtol": 1e-6, "atol": 1e-9}
# Seasonal frequencies whose primary period is a sensible number of points per chaotic cycle.
CYCLE_FREQS: dict[str, float] = {"MS": 12.0, "h": 24.0, "30min": 48.0, "W-SUN": 52.0}


class ChaosFailure(RuntimeError):
    """A dysts system could not produce a usable trajectory; ``str(err)`` is the reason."""


class _OverBudget(Exception):
    pass


def _dysts_version() -> str:
    return importlib.metadata.version("dysts")


@cache
def list_systems(kinds: tuple[str, ...] = ("continuous", "discrete")) -> tuple[str, ...]:
    """Names of dysts systems of the given kinds ('continuous' includes delay equations).

    A map named like a flow (dysts has both a ``Duffing`` flow and map) is listed as
    ``maps.<name>``; plain names resolve to the flow.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from dysts.systems import get_attractor_list

        flows = set(get_attractor_list("continuous"))
        names = []
        for kind in kinds:
            for name in get_attractor_list(kind):
                names.append(f"maps.{name}" if kind == "discrete" and name in flows else name)
        return tuple(names)


@cache
def _prototype(name: str) -> Any:
    """One instance per system and process (instantiation parses dysts' metadata JSON)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import dysts.flows
        import dysts.maps

        if name.startswith("maps."):
            return getattr(dysts.maps, name[len("maps."):])()
        cls = getattr(dysts.flows, name, None) or getattr(dysts.maps, name)
        return cls()


def _is_map(system: Any) -> bool:
    import dysts.base

    return isinstance(system, dysts.base.DynMap)


def _budget(system: Any, max_evals: int, time_budget: float) -> list[str]:
    """Make the system's right-hand side raise once it has run ``max_evals`` times (the
    deterministic limit) or past ``time_budget`` seconds (a safety net against hangs).

    Delay systems call the static ``_rhs``; flows and maps call ``rhs``, which some systems
    override. An instance attribute shadows either, because dysts looks them up on ``self``.
    Returns a list that receives the reason: scipy's ``ode`` (used for delay equations) turns
    exceptions from the callback into a misleading ValueError, so the caller checks it.
    """
    import dysts.base

    attr = "_rhs" if isinstance(system, dysts.base.DynSysDelay) else "rhs"
    inner = getattr(system, attr)
    deadline = time.monotonic() + time_budget
    calls = 0
    exceeded: list[str] = []

    def budgeted(*args: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls > max_evals:
            exceeded[:] = [f"exceeded {max_evals} right-hand-side evaluations"]
        elif time.monotonic() > deadline:
            exceeded[:] = [f"exceeded time budget of {time_budget:g} s"]
        if exceeded:
            raise _OverBudget(exceeded[0])
        return inner(*args)

    setattr(system, attr, budgeted)
    return exceeded


def _jitter_params(system: Any, rng: np.random.Generator, scale: float) -> None:
    """Scale every float parameter by 1 + U[-scale, scale]; integer parameters stay put."""

    def jitter(name: str, value: Any, system: Any = None) -> Any:
        arr = np.asarray(value)
        if not np.issubdtype(arr.dtype, np.floating):
            return value
        out = arr * (1.0 + rng.uniform(-scale, scale, arr.shape))
        return out if arr.ndim else float(out)

    system.transform_params(jitter)


def integrate(
    name: str,
    length: int,
    *,
    pts_per_period: int = 30,
    rng: np.random.Generator | None = None,
    ic_jitter: float = 0.0,
    param_jitter: float = 0.0,
    max_evals: int = 100_000,
    time_budget: float = 60.0,
) -> np.ndarray:
    """A finite ``[length, dim]`` float64 trajectory of system ``name`` or ``ChaosFailure``.

    ``rng`` draws the perturbations (none when ``ic_jitter`` and ``param_jitter`` are 0) and the
    seed dysts wants; numpy's global RNG is restored afterwards whatever happens. The work limit
    is ``max_evals`` right-hand-side calls (about 1.4 s at dysts' typical 14 us per call, 5.5 s
    for the costliest systems), so whether a draw fits never depends on how busy the machine is.
    """
    rng = np.random.default_rng(0) if rng is None else rng
    system = copy.deepcopy(_prototype(name))
    if param_jitter > 0:
        _jitter_params(system, rng, param_jitter)
    ic = np.asarray(system.ic, dtype=np.float64)
    if ic_jitter > 0:
        ic = ic * (1.0 + rng.uniform(-ic_jitter, ic_jitter, ic.shape))
    seed = int(rng.integers(2**31 - 1))
    transient = max(length // 10, 1)
    exceeded = _budget(system, max_evals, time_budget)
    state = np.random.get_state()
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            if _is_map(system):
                traj = system.make_trajectory(length + transient, init_cond=ic)
            else:
                traj = system.make_trajectory(
                    length + transient, init_cond=ic, pts_per_period=pts_per_period,
                    random_seed=seed, **INTEGRATOR,
                )
    except _OverBudget as err:
        raise ChaosFailure(str(err)) from None
    except Exception as err:  # dysts and scipy raise many kinds; every one means "skip"
        if exceeded:
            raise ChaosFailure(exceeded[0]) from None
        first_line = (str(err).strip().splitlines() or [""])[0][:120]
        raise ChaosFailure(f"raised {type(err).__name__}: {first_line}") from None
    finally:
        np.random.set_state(state)
    if traj is None:
        raise ChaosFailure("returned None (integration did not complete)")
    traj = np.asarray(traj, dtype=np.float64)
    traj = traj.reshape(len(traj), -1)[transient:]
    if traj.shape[0] != length:
        raise ChaosFailure(f"returned {traj.shape[0]} points instead of {length}")
    if not np.all(np.isfinite(traj)) or np.abs(traj).max() > 1e12:
        raise ChaosFailure("non-finite or exploding values")
    tail = traj[length // 2:]
    if np.all(tail.std(axis=0) <= 1e-6 * (np.abs(tail).mean(axis=0) + 1e-6)):
        raise ChaosFailure("collapsed to a fixed point")
    return traj


def _probe_one(name: str, length: int, pts_per_period: int, max_evals: int,
               time_budget: float) -> tuple[str, str | None]:
    try:
        integrate(name, length, pts_per_period=pts_per_period, max_evals=max_evals, time_budget=time_budget)
    except ChaosFailure as err:
        return name, str(err)
    return name, None


def probe_systems(
    names: Sequence[str] | None = None,
    *,
    length: int = 256,
    pts_per_period: int = 30,
    max_evals: int = 100_000,
    time_budget: float = 60.0,
    map_fn: Callable[..., Any] = map,
) -> tuple[list[str], dict[str, str]]:
    """(working systems, {skipped system: reason}) from one default trajectory per system.

    ``map_fn`` lets the caller spread the probe over a process pool (``pool.map``).
    """
    names = list(list_systems() if names is None else names)
    n = len(names)
    results = map_fn(_probe_one, names, [length] * n, [pts_per_period] * n, [max_evals] * n, [time_budget] * n)
    working, skipped = [], {}
    for name, reason in results:
        if reason is None:
            working.append(name)
        else:
            skipped[name] = reason
    return working, skipped


def working_systems(
    cache_dir: str | Path,
    names: Sequence[str] | None = None,
    *,
    length: int = 256,
    pts_per_period: int = 30,
    max_evals: int = 100_000,
    time_budget: float = 60.0,
    map_fn: Callable[..., Any] = map,
) -> tuple[list[str], dict[str, str]]:
    """``probe_systems`` cached as JSON in ``cache_dir`` (keyed by dysts version and settings).

    The cache pins the list: should a system ever hit the wall-clock safety net on a busy
    machine, it stays skipped until the cache file is deleted, so builds stay reproducible.
    """
    names = sorted(list_systems() if names is None else names)
    key = json.dumps([_dysts_version(), names, length, pts_per_period, max_evals, time_budget])
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    path = Path(cache_dir) / f"dysts-systems-{_dysts_version()}-{digest}.json"
    if path.exists():
        data = json.loads(path.read_text())
        return list(data["working"]), dict(data["skipped"])
    working, skipped = probe_systems(names, length=length, pts_per_period=pts_per_period,
                                     max_evals=max_evals, time_budget=time_budget, map_fn=map_fn)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{id(path)}")
    tmp.write_text(json.dumps({"working": working, "skipped": skipped}, indent=1, sort_keys=True))
    tmp.replace(path)
    return working, skipped


def chaos_views(
    rng: np.random.Generator,
    length: int,
    *,
    systems: Sequence[str],
    multivariate: bool = False,
    views: int = 1,
    ppp_range: tuple[int, int] = (10, 60),
    ic_jitter: float = 0.1,
    param_jitter: float = 0.05,
    param_jitter_prob: float = 0.5,
    max_evals: int = 100_000,
    time_budget: float = 60.0,
    max_attempts: int = 4,
    failures: list[tuple[str, str]] | None = None,
) -> list[Sample]:
    """Series cut from one trajectory of a random system: all coordinates as one ``[C, T]``
    sample (``multivariate``), or up to ``views`` distinct non-constant coordinates.

    Each failed attempt is appended to ``failures`` as (system, reason) when given; after
    ``max_attempts`` failures ``ChaosFailure`` is raised.
    """
    if not systems:
        raise ChaosFailure("no working dysts systems to draw from")
    for _ in range(max_attempts):
        name = systems[int(rng.integers(len(systems)))]
        if rng.random() < 0.5:
            freq = choose(rng, {f: 1.0 for f in CYCLE_FREQS})
            ppp = int(CYCLE_FREQS[freq])
        else:
            freq = nonseasonal_freq(rng, length)
            ppp = int(rng.integers(ppp_range[0], ppp_range[1] + 1))
        jitter = param_jitter if rng.random() < param_jitter_prob else 0.0
        for p_jitter in ((jitter, 0.0) if jitter > 0 else (0.0,)):
            try:
                traj = integrate(name, length, pts_per_period=ppp, rng=rng, ic_jitter=ic_jitter,
                                 param_jitter=p_jitter, max_evals=max_evals, time_budget=time_budget)
            except ChaosFailure as err:
                if failures is not None:
                    failures.append((name, str(err)))
                continue
            if _is_map(_prototype(name)) and freq in CYCLE_FREQS:
                freq = nonseasonal_freq(rng, length)  # a map has no cycle to match a season
            if multivariate:
                return [Sample(traj.T.astype(np.float32), freq, ())]
            spread = traj.std(axis=0)
            alive = np.flatnonzero(spread > 1e-6 * (np.abs(traj).mean(axis=0) + 1e-6))
            chosen = rng.permutation(alive)[:views]
            return [Sample(traj[:, int(c)].astype(np.float32), freq, ()) for c in chosen]
    raise ChaosFailure(f"{max_attempts} attempts failed")


def chaos(rng: np.random.Generator, length: int, *, systems: Sequence[str], **options: Any) -> Sample:
    """One chaotic series: a random coordinate (or all, ``multivariate=True``) of one trajectory.

    Options are those of ``chaos_views``.
    """
    return chaos_views(rng, length, systems=systems, **{**options, "views": 1})[0]
