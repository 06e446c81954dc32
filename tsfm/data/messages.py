"""How input problems are worded: where a row came from, and short lists of names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class RowSource:
    """Where rows came from, so messages can say 'line 7' (files) or 'row 5' (frames), and which
    time column, if any, holds integer steps by construction (row numbers, a Series' RangeIndex):
    those are never years or dates, whatever their numbers."""

    is_file: bool
    step_col: str | None = None

    def at(self, row: int) -> str:
        return f"line {row + 2}" if self.is_file else f"row {row}"


def quoted_names(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(f"'{n}'" for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
