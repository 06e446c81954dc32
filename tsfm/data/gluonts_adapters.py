"""SeriesSet <-> GluonTS dataset entries.

GluonTS keeps ``start`` as a ``pd.Period``, and pandas has no period for start-anchored offsets
(``MS``, ``QS``, ``YS``), so each timestamp frequency maps to the period that contains its
stamps: ``MS``/``ME`` -> ``M``, ``QS-JAN`` -> ``Q-DEC``, ``YS-JAN`` -> ``Y-DEC``, ``W-SAT`` ->
``W-SAT`` (pandas labels weeks by their last day), ticks and ``B`` unchanged. On the way back a
period's stamp is its start rolled forward onto the offset, which recovers the original stamp.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from tsfm.data.freq import canonical_alias
from tsfm.data.series_set import SeriesSet
from tsfm.errors import InputError
from tsfm_runtime import rules

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def period_freq(freq: str | pd.DateOffset) -> str:
    """The pandas period frequency whose periods contain the stamps of ``freq``."""
    offset = to_offset(freq)
    name, n = type(offset).__name__, offset.n
    prefix = str(n) if n > 1 else ""
    if name in ("MonthBegin", "MonthEnd"):
        return f"{prefix}M"
    if name == "QuarterBegin":  # quarters starting in month m end in month m-1 (mod 12)
        return f"{prefix}Q-{_MONTHS[(offset.startingMonth - 2) % 12]}"
    if name == "QuarterEnd":
        return f"{prefix}Q-{_MONTHS[offset.startingMonth - 1]}"
    if name == "YearBegin":
        return f"{prefix}Y-{_MONTHS[(offset.month - 2) % 12]}"
    if name == "YearEnd":
        return f"{prefix}Y-{_MONTHS[offset.month - 1]}"
    return offset.freqstr


def timestamp_freq(pfreq: str | pd.DateOffset) -> str:
    """Inverse of :func:`period_freq`: ``M -> MS``, ``Q-DEC -> QS``, ``Y-DEC -> YS``, others unchanged."""
    text = pfreq if isinstance(pfreq, str) else pfreq.freqstr
    digits = "".join(ch for ch in text if ch.isdigit())
    base = text[len(digits):]
    head, _, anchor = base.partition("-")
    if head == "M":
        return f"{digits}MS"
    if head in ("Q", "Y", "A") and anchor in _MONTHS:
        start = _MONTHS[(_MONTHS.index(anchor) + 1) % 12]
        return canonical_alias(f"{digits}{'QS' if head == 'Q' else 'YS'}-{start}")
    if head in ("Q", "Y", "A"):
        return canonical_alias(f"{digits}{'QS' if head == 'Q' else 'YS'}")
    return canonical_alias(text)


def _period(stamp: pd.Timestamp, pfreq: str) -> pd.Period:
    with warnings.catch_warnings():  # Period[B] is deprecated in pandas but GluonTS still uses it
        warnings.simplefilter("ignore", FutureWarning)
        if stamp.tzinfo is not None:
            stamp = stamp.tz_convert("UTC").tz_localize(None)
        return pd.Period(stamp, freq=pfreq)


def to_gluonts(series: SeriesSet) -> list[dict[str, Any]]:
    """GluonTS entries: ``start`` (Period), ``target`` (``[T]`` when C = 1, else ``[C, T]``),
    ``item_id``, and ``past_feat_dynamic_real`` / ``feat_dynamic_real`` (``[E, T]``) for the
    past-only / known-future covariates (history only: append H future columns to
    ``feat_dynamic_real`` before predicting)."""
    pfreq = period_freq(series.freq)
    entries = []
    for i, uid in enumerate(series.ids):
        values = series.values[i]
        entry: dict[str, Any] = {
            "start": _period(series.starts[i], pfreq),
            "target": values[:, 0].copy() if series.n_channels == 1 else values.T.copy(),
            "item_id": uid,
        }
        if series.past_exog is not None:
            entry["past_feat_dynamic_real"] = series.past_exog[i].T.copy()
        if series.future_exog is not None:
            entry["feat_dynamic_real"] = series.future_exog[i].T.copy()
        entries.append(entry)
    return entries


def to_list_dataset(series: SeriesSet):
    """A ``gluonts.dataset.common.ListDataset`` of :func:`to_gluonts` entries."""
    from gluonts.dataset.common import ListDataset

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return ListDataset(to_gluonts(series), freq=period_freq(series.freq), one_dim_target=series.n_channels == 1)


def _start_stamp(start: Any, offset: pd.DateOffset) -> pd.Timestamp:
    if isinstance(start, pd.Period):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return offset.rollforward(start.start_time)
    return pd.Timestamp(start)


def _target(entry: dict[str, Any], name: str, min_length: int) -> np.ndarray:
    """An entry's target as float64 ``[T, C]``, checked as a table's target column is: numbers only,
    no infinity, at least ``min_length`` observed values per channel."""
    try:
        target = np.asarray(entry["target"], dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise InputError(f"GluonTS entry {name!r}: target must hold numbers ({err})") from None
    v = target[:, None] if target.ndim == 1 else target.T
    if np.isinf(v).any():
        raise InputError(f"GluonTS entry {name!r}: target has an infinite value; replace or remove it")
    observed = int((~np.isnan(v)).sum(axis=0).min()) if v.size else 0
    if observed == 0:
        raise InputError(f"GluonTS entry {name!r}: target has no values (all missing); drop it or fill it in")
    if observed < min_length:
        raise InputError(f"GluonTS entry {name!r}: target has {observed} observed values, fewer than {min_length}; "
                         "drop it or provide more history")
    return v


def from_gluonts(dataset: Iterable[dict[str, Any]], freq: str | None = None, min_length: int = 1) -> SeriesSet:
    """A SeriesSet from any iterable of GluonTS entries (ListDataset, FileDataset, list of dicts).

    ``freq`` (a timestamp alias) defaults to the one implied by the entries' Period starts.
    Entries without ``item_id`` are numbered. NaN in ``target`` stays NaN (missing). Targets are
    checked and scaled as a table's are (``load_series``): in float64, a series outside
    ``SAFE_MAGNITUDE`` divided by a power of ten before the float32 cast (``SeriesSet.scales``).
    """
    entries = list(dataset)
    if not entries:
        raise InputError("the GluonTS dataset is empty")
    if freq is None:
        pfreqs = {e["start"].freqstr for e in entries if isinstance(e["start"], pd.Period)}
        if len(pfreqs) != 1:
            raise InputError("cannot tell the frequency of the GluonTS entries; pass freq")
        freq = timestamp_freq(pfreqs.pop())
    offset = to_offset(freq)
    values, past, future, starts, ids = [], [], [], [], []
    for j, e in enumerate(entries):
        ids.append(str(e.get("item_id", j)))
        v = _target(e, ids[-1], min_length)
        values.append(v)
        starts.append(_start_stamp(e["start"], offset))
        for name, arrays in (("past_feat_dynamic_real", past), ("feat_dynamic_real", future)):
            if name in e:
                field = np.atleast_2d(np.asarray(e[name], dtype=np.float32)).T[: len(v)]  # [T, E]
                if len(field) < len(v):
                    raise InputError(f"GluonTS entry {ids[-1]!r}: {name} has {len(field)} steps, fewer than its "
                                     f"target's {len(v)}; give one value per target step")
                arrays.append(field)
    channels = {v.shape[1] for v in values}
    if len(channels) != 1:
        raise InputError("GluonTS entries have different numbers of target channels")
    c = channels.pop()
    scales = rules.magnitude_scales(np.stack([np.nanmax(np.abs(v), axis=0) for v in values]))  # [N, C] or None
    values = [(v if scales is None else v / scales[i]).astype(np.float32) for i, v in enumerate(values)]
    for name, arrays in (("past_feat_dynamic_real", past), ("feat_dynamic_real", future)):
        if arrays and len(arrays) != len(entries):
            raise InputError(f"only some GluonTS entries have {name}; give it to all or none")
    return SeriesSet(
        ids=ids,
        freq=canonical_alias(offset),
        starts=starts,
        values=values,
        target_names=["target"] if c == 1 else [f"target_{k}" for k in range(c)],
        past_exog=past or None,
        future_exog=future or None,
        past_exog_names=[f"past_feat_dynamic_real_{k}" for k in range(past[0].shape[1])] if past else [],
        future_exog_names=[f"feat_dynamic_real_{k}" for k in range(future[0].shape[1])] if future else [],
        layout="long",
        n_gaps=[int(np.isnan(v).all(axis=1).sum()) for v in values],
        scales=scales,
    )
