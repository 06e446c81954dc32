"""A suite: one name served by several checkpoints, one chosen per dataset.

granite-tsfm ships TTM as context/horizon revisions and picks one for the data at hand; a suite
does the same from a ``suite.json``: each variant names a checkpoint and the shortest typical
history it is meant for (``min_history``), and a variant is only eligible when its context
covers ``min_seasons`` seasons of the data's frequency (a 96-step window is two days of
half-hourly data but under two years of weekly). ``by_frequency`` names specialists: variants
trained for one resolution (``"Y"`` yearly, ``"Q"`` quarterly, ``"M"`` monthly) that stand in for a general
variant on data of that resolution. ``log_scale`` is the value-space rule for the suite's
forecasts, ``seasonal_adjustment`` whether seasonal series are shown to its networks seasonally
adjusted (``tsfm_runtime.rules.seasonal_factors``), ``calibration_windows`` how many backtests
inside each history calibrate its intervals.
The package and the edge runtime both choose through ``SuiteSpec.select``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tsfm_runtime.rules import LOG_SCALE_MODES

SUITE_FILE = "suite.json"


@dataclass(frozen=True)
class SuiteSpec:
    """The selection rule of a ``suite.json``."""

    default: str
    variants: tuple[tuple[str, int], ...]  # (variant, min_history), ascending min_history
    min_seasons: float = 2.0
    by_frequency: tuple[tuple[str, str, str], ...] = ()  # (resolution name, general variant, specialist)
    log_scale: str = "never"
    description: str = ""
    calibration_windows: int = 0  # backtests inside each history that calibrate the intervals (0: none)
    seasonal_adjustment: bool = False  # seasonal series forecast after classical decomposition

    @classmethod
    def from_dict(cls, spec: dict[str, Any], where: str = SUITE_FILE) -> SuiteSpec:
        """Parse a ``suite.json`` (``ValueError`` with one line naming ``where`` when it is malformed)."""
        try:
            variants = tuple(sorted(((str(v["name"]), int(v["min_history"])) for v in spec["variants"]),
                                    key=lambda v: v[1]))
            by_frequency = tuple(sorted((str(freq), str(general), str(special))
                                        for freq, pairs in spec.get("by_frequency", {}).items()
                                        for general, special in pairs.items()))
            suite = cls(str(spec["default"]), variants, float(spec.get("min_seasons", 2.0)), by_frequency,
                        str(spec.get("log_scale", "never")), str(spec.get("description", "")),
                        int(spec.get("calibration_windows", 0)), spec.get("seasonal_adjustment", False))
        except (KeyError, TypeError, ValueError, AttributeError) as err:
            raise ValueError(f"{where} is not a valid suite ({type(err).__name__}: {err})") from None
        if suite.calibration_windows < 0:
            raise ValueError(f"{where}: calibration_windows must be 0 or more, got {suite.calibration_windows}")
        if not isinstance(suite.seasonal_adjustment, bool):
            raise ValueError(f"{where}: seasonal_adjustment must be true or false, got {suite.seasonal_adjustment!r}")
        if suite.log_scale not in LOG_SCALE_MODES:
            raise ValueError(f"{where}: log_scale must be one of {', '.join(LOG_SCALE_MODES)}, got {suite.log_scale!r}")
        return suite

    def to_dict(self) -> dict[str, Any]:
        by_frequency: dict[str, dict[str, str]] = {}
        for freq, general, special in self.by_frequency:
            by_frequency.setdefault(freq, {})[general] = special
        return {"description": self.description, "default": self.default, "min_seasons": self.min_seasons,
                "variants": [{"name": name, "min_history": h} for name, h in self.variants],
                "by_frequency": by_frequency, "log_scale": self.log_scale,
                "calibration_windows": self.calibration_windows, "seasonal_adjustment": self.seasonal_adjustment}

    def checkpoints(self) -> list[str]:
        """Every checkpoint the suite may serve, each once: default, variants, specialists."""
        names = [self.default, *(name for name, _ in self.variants), *(s for _, _, s in self.by_frequency)]
        return list(dict.fromkeys(names))

    def specialist(self, variant: str, freq: str) -> str | None:
        """The variant that stands in for ``variant`` on data of resolution ``freq``, if any."""
        return next((s for f, v, s in self.by_frequency if f == freq and v == variant), None)

    def select(self, history: float, season: int, freq: str, context_length: Callable[[str], int]) -> str:
        """The checkpoint for series of resolution ``freq`` whose typical (median) observed length is
        ``history``: among the variants whose context (``context_length(variant)``; an ensemble's
        shortest member's) covers ``min_seasons`` seasons, the one for the longest ``min_history``
        the history reaches (else the shortest such one), the default when none covers them; then
        its specialist for ``freq`` when the suite has one. Among variants for the same
        ``min_history`` the first listed wins."""
        covering = [(name, h) for name, h in self.variants if context_length(name) >= self.min_seasons * max(season, 1)]
        if not covering:
            chosen = self.default
        else:
            reached = [(name, h) for name, h in covering if history >= h]
            if not reached:
                chosen = covering[0][0]
            else:
                longest = max(h for _, h in reached)
                chosen = next(name for name, h in reached if h == longest)
        return self.specialist(chosen, freq) or chosen

    def is_specialist(self, variant: str, freq: str) -> bool:
        """Whether ``variant`` serves data of resolution ``freq`` as its specialist."""
        return any(f == freq and s == variant for f, _, s in self.by_frequency)
