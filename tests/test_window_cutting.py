"""tsfm.data.window_cutting: the one owner of cutting context and target windows out of series."""

from __future__ import annotations

import numpy as np

from tsfm.data.window_cutting import context_windows, fill_covariates, observed_mask, target_windows


def test_context_windows_take_the_last_points_before_the_origin_left_padded():
    a = np.arange(10.0)[:, None]
    b = np.arange(100.0, 103.0)[:, None]
    out = context_windows([a, b], 5)
    assert out.shape == (2, 5, 1) and out.dtype == np.float32
    np.testing.assert_array_equal(out[0, :, 0], [5, 6, 7, 8, 9])
    np.testing.assert_array_equal(out[1, :, 0], [np.nan, np.nan, 100, 101, 102])
    np.testing.assert_array_equal(observed_mask(out)[1, :, 0], [0, 0, 1, 1, 1])


def test_context_windows_at_origins_and_spans():
    a = np.arange(10.0)[:, None]
    out = context_windows([a, a, a], 4, origins=[6, 2, 10], spans=[4, 4, 2])
    np.testing.assert_array_equal(out[0, :, 0], [2, 3, 4, 5])  # before origin 6
    np.testing.assert_array_equal(out[1, :, 0], [np.nan, np.nan, 0, 1])  # little history
    np.testing.assert_array_equal(out[2, :, 0], [np.nan, np.nan, 8, 9])  # a span of 2: truncated context
    np.testing.assert_array_equal(context_windows([a], 4, [6])[0], out[0])  # one series: same cut


def test_context_windows_of_no_series_keep_their_width():
    assert context_windows([], 8, width=3).shape == (0, 8, 3)


def test_target_windows_start_at_the_origin_and_stop_before_the_limit():
    a = np.arange(10.0)[:, None]
    out = target_windows([a, a], 4, origins=[3, 8], stops=[5, 10])
    np.testing.assert_array_equal(out[0, :, 0], [3, 4, np.nan, np.nan])  # hidden from step 5 on
    np.testing.assert_array_equal(out[1, :, 0], [8, 9, np.nan, np.nan])  # the series ends


def test_missing_values_are_not_observed_and_covariates_are_made_finite():
    x = np.array([[[np.nan, np.nan], [1.0, np.nan], [np.nan, np.nan], [3.0, np.nan]]], dtype=np.float32)
    np.testing.assert_array_equal(observed_mask(x)[0, :, 0], [0, 1, 0, 1])
    filled = fill_covariates(x)
    np.testing.assert_array_equal(filled[0, :, 0], [1, 1, 1, 3])  # next, then previous observed value
    np.testing.assert_array_equal(filled[0, :, 1], [0, 0, 0, 0])  # nothing observed: 0
