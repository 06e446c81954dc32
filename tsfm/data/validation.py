"""Checks of the rows before they are put on the grid: duplicate stamps, empty and too short series."""

from __future__ import annotations

import numpy as np
import pandas as pd

from tsfm.data.grid import Segments
from tsfm.data.messages import RowSource, quoted_names
from tsfm.data.rows import Rows
from tsfm.errors import InputError


def check_duplicates(rows: Rows, src: RowSource) -> None:
    same = (rows.codes[1:] == rows.codes[:-1]) & (rows.times[1:] == rows.times[:-1])
    if not same.any():
        return
    pairs = np.flatnonzero(same)
    later = np.maximum(rows.rows[pairs], rows.rows[pairs + 1])
    j = int(pairs[np.argmin(later)])
    uid = rows.ids[rows.codes[j]]
    stamp = f"step {int(rows.times[j])}" if rows.steps else f"timestamp {pd.Timestamp(int(rows.times[j]))}"
    a, b = sorted((int(rows.rows[j]), int(rows.rows[j + 1])))
    raise InputError(
        f"duplicate {stamp} for series '{uid}' ({src.at(a)} and {src.at(b)}); keep one row per id and time"
    )


def check_observed(rows: Rows, seg: Segments, min_length: int) -> None:
    """All-NaN series first (the more specific diagnosis), then series below ``min_length``."""
    counts = np.add.reduceat((~np.isnan(rows.values)).astype(np.int64), seg.first, axis=0)  # [K, C]

    def label(k: int, c: int) -> str:
        if rows.channels_are_series:
            return rows.target_names[c]
        return f"{rows.ids[k]}/{rows.target_names[c]}" if len(rows.target_names) > 1 else rows.ids[k]

    empty = list(rows.empty_ids) + [label(k, c) for k, c in zip(*np.nonzero(counts == 0))]
    if empty:
        raise InputError(f"series with no values (all missing): {quoted_names(empty)}; drop them or fill them in")
    short = [(label(k, c), int(counts[k, c])) for k, c in zip(*np.nonzero(counts < min_length))]
    if short:
        listed = ", ".join(f"'{name}' ({n})" for name, n in short[:5])
        listed += f" and {len(short) - 5} more" if len(short) > 5 else ""
        raise InputError(
            f"{len(short)} series {'has' if len(short) == 1 else 'have'} fewer than {min_length} observed points: "
            f"{listed}; drop them or provide more history"
        )
