"""Write wide_example.csv: a small wide-format sample for the README (deterministic).

Two monthly series (10 years from 2015-01) with a trend, a yearly season and seeded noise, one
column per series next to a ``date`` column: the layout ``tsfm forecast`` reads as "wide".
Run from anywhere: ``python datasets/samples/make_wide_example.py``.
"""

from pathlib import Path

import numpy as np
import pandas as pd

N_MONTHS = 120


def make() -> pd.DataFrame:
    rng = np.random.default_rng(20240101)
    t = np.arange(N_MONTHS)
    season = np.sin(2 * np.pi * t / 12)
    store_a = 200 + 0.8 * t + 30 * season + rng.normal(0, 5, N_MONTHS)
    store_b = 120 + 0.3 * t - 15 * np.cos(2 * np.pi * t / 12) + rng.normal(0, 3, N_MONTHS)
    return pd.DataFrame(
        {
            "date": pd.date_range("2015-01-01", periods=N_MONTHS, freq="MS").strftime("%Y-%m-%d"),
            "store_a": store_a.round(1),
            "store_b": store_b.round(1),
        }
    )


if __name__ == "__main__":
    out = Path(__file__).with_name("wide_example.csv")
    make().to_csv(out, index=False)
    print(f"wrote {out}")
