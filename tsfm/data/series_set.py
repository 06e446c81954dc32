"""The series container every interface shares: :class:`SeriesSet`, series on one regular grid."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from tsfm.data.freq import FreqInfo, freq_info
from tsfm.data.messages import quoted_names
from tsfm.errors import InputError


@dataclass
class SeriesSet:
    """Series on a regular grid: ``values[i]`` is ``[T_i, C]`` float32, NaN = missing.

    ``ids_as_channels`` is True when the C channels are separate input series gathered into one
    item (wide or long input read with ``multivariate=True``); :func:`forecast_frame` then
    writes one ``unique_id`` per channel, so the output looks the same with or without mixing.
    ``n_gaps[i]`` counts grid points that had no input row (before any fill).

    ``starts`` are naive: wall-clock times of ``tz`` when ``wall_time`` (daily and coarser data),
    else UTC; ``timestamps``/``last_timestamp``/``future_index`` give them back in ``tz``.
    ``step_index``: the time column was plain integers (stamps are those integers as ns; the
    methods above give integers back); ``resolution`` is then the user's ``--freq`` (season,
    default horizon, resolution token), and without it ``inferred`` is the resolution their
    seasons suggest (``tsfm_runtime.freq.infer_resolution``), which sets the season, the token and
    the suite's choice but not the default horizon. ``scales [N, C]`` (None = all 1): the user's values are
    ``values[i] * scales[i]`` (float64); only series outside ``tsfm_runtime.rules.SAFE_MAGNITUDE`` get a factor.
    """

    ids: list[str]
    freq: str
    starts: list[pd.Timestamp]
    values: list[np.ndarray]
    target_names: list[str]
    past_exog: list[np.ndarray] | None = None
    future_exog: list[np.ndarray] | None = None
    past_exog_names: list[str] = field(default_factory=list)
    future_exog_names: list[str] = field(default_factory=list)
    layout: str = "long"
    ids_as_channels: bool = False
    n_gaps: list[int] = field(default_factory=list)
    tz: Any = None
    wall_time: bool = True
    step_index: bool = False
    resolution: str | None = None
    inferred: str | None = None
    scales: np.ndarray | None = None
    month_first: bool = False  # stamps were dd/mm-or-mm/dd text that could not tell, read month-first
    int_dates: str | None = None  # the time column held dates written as integers ("%Y", "%Y%m", "%Y%m%d")
    id_dtype: Any = None  # the user's id column held numbers of this dtype (ids_as_given gives them back so)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def lengths(self) -> np.ndarray:
        return np.array([len(v) for v in self.values], dtype=np.int64)

    @property
    def n_channels(self) -> int:
        return len(self.target_names)

    @property
    def offset(self) -> pd.DateOffset:
        return to_offset(self.freq)

    @property
    def freq_info(self) -> FreqInfo:
        return freq_info(self.resolution or self.inferred or self.freq)

    @property
    def stated_freq_info(self) -> FreqInfo:
        """What the dates or ``--freq`` say, without ``inferred``: the default horizon and the season
        of scores (14 steps and no season for integer steps alone), which a guess must not move."""
        return freq_info(self.resolution or self.freq)

    def user_stamps(self, naive: pd.DatetimeIndex) -> pd.Index:
        """Internal naive stamps as the user wrote them: in their zone, integers for a step index, and
        integers again for dates written as integers (years 2021, 20230131), so that forecasts join
        the user's own rows."""
        naive = pd.DatetimeIndex(naive)
        if self.step_index:
            return pd.Index(naive.asi8, dtype=np.int64)
        if self.int_dates:
            return pd.Index(naive.strftime(self.int_dates).astype(np.int64), dtype=np.int64)
        if self.tz is None:
            return naive
        if not self.wall_time:
            return naive.tz_localize("UTC").tz_convert(self.tz)
        return naive.tz_localize(self.tz, ambiguous=np.zeros(len(naive), dtype=bool), nonexistent="shift_forward")

    def scale_of(self, i: int) -> np.ndarray:
        """[C] float64 factors giving series ``i``'s values back in the user's units."""
        return np.ones(self.n_channels) if self.scales is None else self.scales[i]

    def last_naive(self, i: int) -> pd.Timestamp:
        return self.starts[i] + (len(self.values[i]) - 1) * self.offset

    def timestamps(self, i: int) -> pd.Index:
        """The grid stamps of series ``i``."""
        return self.user_stamps(pd.date_range(self.starts[i], periods=len(self.values[i]), freq=self.freq))

    def last_timestamp(self, i: int):
        return self.user_stamps(pd.DatetimeIndex([self.last_naive(i)]))[0]

    def future_index(self, i: int, h: int) -> pd.Index:
        """The next ``h`` stamps after series ``i``, continuing its grid."""
        return self.user_stamps(pd.date_range(self.last_naive(i), periods=h + 1, freq=self.freq)[1:])

    def subset(self, idx: Sequence[int] | np.ndarray | slice) -> SeriesSet:
        """The series at ``idx`` (ints, a boolean mask or a slice), in that order."""
        picked = np.atleast_1d(np.arange(len(self))[idx]).tolist()

        def take(items: list | None) -> list | None:
            return None if items is None else [items[i] for i in picked]

        return replace(
            self,
            ids=take(self.ids),
            starts=take(self.starts),
            values=take(self.values),
            past_exog=take(self.past_exog),
            future_exog=take(self.future_exog),
            n_gaps=take(self.n_gaps) if self.n_gaps else [],
            scales=None if self.scales is None else self.scales[picked],
        )

    def truncate(self, n_last: int) -> SeriesSet:
        """Drop the last ``n_last`` points of every series (a backtest cutoff)."""
        if n_last < 0:
            raise ValueError("n_last must be >= 0")
        if n_last == 0:
            return replace(self)
        short = [i for i, t in enumerate(self.lengths) if t <= n_last]
        if short:
            longest = int(max(self.lengths[i] for i in short))
            raise InputError(
                f"cannot hold out {n_last} points: {quoted_names([self.ids[i] for i in short])} "
                f"{'has' if len(short) == 1 else 'have'} {'only ' if len(short) == 1 else 'at most '}{longest} "
                "points (a point must stay before the oldest window); use fewer windows or a shorter horizon"
            )

        def cut(items: list[np.ndarray] | None) -> list[np.ndarray] | None:
            return None if items is None else [a[:-n_last] for a in items]

        return replace(self, values=cut(self.values), past_exog=cut(self.past_exog), future_exog=cut(self.future_exog))

    def to_frame(self) -> pd.DataFrame:
        """Long frame of the grid (NaN rows included): ``unique_id, ds, y`` (or one column per
        target when C > 1), then the exog columns; reading it back gives the same set."""
        per_channel = self.ids_as_channels or self.n_channels == 1
        parts = []
        for i in range(len(self)):
            ds = self.timestamps(i)
            exog = {}
            for names, arrays in ((self.past_exog_names, self.past_exog), (self.future_exog_names, self.future_exog)):
                for j, name in enumerate(names):
                    exog[name] = arrays[i][:, j]
            values = self.values[i] * self.scale_of(i) if self.scales is not None else self.values[i]
            if per_channel:
                for c, channel in enumerate(self.target_names):
                    uid = channel if self.ids_as_channels else self.ids[i]
                    parts.append(pd.DataFrame({"unique_id": uid, "ds": ds, "y": values[:, c], **exog}))
            else:
                cols = {name: values[:, c] for c, name in enumerate(self.target_names)}
                parts.append(pd.DataFrame({"unique_id": self.ids[i], "ds": ds, **cols, **exog}))
        return pd.concat(parts, ignore_index=True)
