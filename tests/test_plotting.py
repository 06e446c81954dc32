"""What ``--plot`` draws: one panel per series and target, on the dates the user's times stand for."""

import numpy as np
import pandas as pd

from tsfm import Forecaster
from tsfm.plotting import MAX_PANELS, panels

DAYS = pd.date_range("2023-01-01", periods=80, freq="D")
WAVE = 5 + np.sin(np.arange(80) / 3)


def test_every_target_gets_a_panel_and_integer_dates_are_drawn_as_dates(tiny_checkpoint):
    frame = pd.DataFrame({"unique_id": "s", "ds": DAYS.strftime("%Y%m%d").astype(int), "y": WAVE, "z": 2 * WAVE})
    fitted = Forecaster(model=tiny_checkpoint, target=["y", "z"]).fit(frame)
    drawn = panels(fitted.series_, fitted.predict_band(h=5))
    assert [p.title for p in drawn] == ["s: y", "s: z"]
    assert np.allclose(drawn[1].history_y, 2 * WAVE) and len(drawn[1].band) == 5
    assert not drawn[0].band["0.5"].equals(drawn[1].band["0.5"])  # each panel its own target's forecast
    for panel in drawn:  # 20230131 is followed by 20230201: one day, not 70 steps
        assert panel.history_x.equals(DAYS)
        assert panel.band_x.equals(pd.date_range(DAYS[-1] + pd.Timedelta(days=1), periods=5, freq="D"))


def test_a_multivariate_item_draws_each_channel_with_its_own_band(tiny_checkpoint):
    frame = pd.DataFrame({"ds": DAYS, **{f"c{k}": WAVE + k for k in range(MAX_PANELS + 2)}})
    fitted = Forecaster(model=tiny_checkpoint, multivariate=True).fit(frame)
    drawn = panels(fitted.series_, fitted.predict_band(h=5))
    assert [p.title for p in drawn] == [f"c{k}" for k in range(MAX_PANELS)]
    assert all(len(p.band) == 5 for p in drawn) and np.allclose(drawn[3].history_y, WAVE + 3)


def test_a_series_of_extreme_magnitude_is_drawn_in_units_of_its_scale(tiny_checkpoint):
    frame = pd.DataFrame({"unique_id": np.repeat(["tiny", "plain"], 80), "ds": np.tile(DAYS, 2),
                          "y": np.r_[WAVE * 1e-300, WAVE]})
    fitted = Forecaster(model=tiny_checkpoint).fit(frame)
    band = fitted.predict_band(h=5)
    tiny, plain = panels(fitted.series_, band)
    assert tiny.title == "tiny (x 1e-300)" and np.allclose(tiny.history_y, WAVE, rtol=1e-6)
    np.testing.assert_allclose(tiny.band["0.5"], band[band.unique_id == "tiny"]["0.5"] / 1e-300, rtol=1e-6)
    assert plain.title == "plain" and np.allclose(plain.history_y, WAVE, rtol=1e-6)
