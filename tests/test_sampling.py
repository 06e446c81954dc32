"""Training windows: shapes, masks, augmentation and rank/worker sharding."""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from tsfm.data.freq import FREQ_VOCAB
from tsfm.data.sampling import Source, TrainingWindows, WindowSpec, collate_windows, sample_window
from tsfm.errors import InputError


def _sources():
    rng = np.random.default_rng(0)
    entries = [
        {"target": rng.normal(size=300).astype(np.float32), "freq": "h"},
        {"target": rng.normal(size=(3, 40)).astype(np.float32), "freq": "MS"},
        {"target": np.arange(20, dtype=np.float32), "freq": "YS"},
    ]
    return [Source.from_entries(entries)]


def test_window_shapes_masks_and_token():
    spec = WindowSpec(context_length=64, prediction_length=16, min_past=4)
    for seed in range(50):
        w = sample_window(_sources(), spec, np.random.default_rng(seed))
        assert w["past_values"].shape == (64, 1) and w["future_values"].shape == (16, 1)
        # mask is exactly "finite", padding is on the left only
        assert np.array_equal(w["past_mask"], np.isfinite(w["past_values"]).astype(np.float32))
        observed = w["past_mask"][:, 0]
        first = int(np.argmax(observed))
        assert observed[first:].all() and not observed[:first].any()
        assert observed.sum() >= 4
        assert w["future_mask"][:, 0].sum() >= 4  # min_future_fraction 0.25 of 16
        assert FREQ_VOCAB[int(w["freq_id"])] in ("h", "M", "Y")


def test_window_values_continue_the_series():
    """Past and future are consecutive pieces of one series (checked on a ramp)."""
    entries = [{"target": np.arange(500, dtype=np.float32), "freq": "D"}]
    spec = WindowSpec(context_length=32, prediction_length=8)
    w = sample_window([Source.from_entries(entries)], spec, np.random.default_rng(3))
    past = w["past_values"][:, 0][w["past_mask"][:, 0] > 0]
    future = w["future_values"][:, 0][w["future_mask"][:, 0] > 0]
    joined = np.concatenate([past, future])
    assert np.array_equal(np.diff(joined), np.ones(len(joined) - 1, dtype=np.float32))


def test_seasonal_adjustment_divides_the_window_by_periodic_indices():
    """An adjusted window is the plain one divided by one season of indices (mean 1) repeated over
    the context and continued over the future, as inference adjusts; a context that is not
    positive stays as it is."""
    t = np.arange(400)
    season = np.array([0.6, 0.8, 1.0, 1.3, 1.5, 1.2, 1.1, 0.9, 0.8, 0.9, 0.9, 1.0])
    entries = [{"target": ((100 + 0.1 * t) * season[t % 12]).astype(np.float32), "freq": "MS"},
               {"target": np.random.default_rng(0).normal(size=400).astype(np.float32), "freq": "MS"}]
    sources = [Source.from_entries(entries)]
    plain_spec = WindowSpec(context_length=96, prediction_length=24, truncate_prob=0.5)
    adjusted_spec = WindowSpec(context_length=96, prediction_length=24, truncate_prob=0.5, seasonal_adjustment=True)
    changed = 0
    for seed in range(40):
        plain = sample_window(sources, plain_spec, np.random.default_rng(seed))
        adjusted = sample_window(sources, adjusted_spec, np.random.default_rng(seed))
        assert adjusted["freq_id"] == plain["freq_id"]
        joined = np.concatenate([plain["past_values"][:, 0], plain["future_values"][:, 0]])
        joined_adjusted = np.concatenate([adjusted["past_values"][:, 0], adjusted["future_values"][:, 0]])
        np.testing.assert_array_equal(np.isnan(joined), np.isnan(joined_adjusted))
        observed = plain["past_values"][:, 0][plain["past_mask"][:, 0] > 0]
        if observed.min() <= 0 or observed.size < 36:
            np.testing.assert_array_equal(joined_adjusted, joined)
            continue
        changed += 1
        index = joined / joined_adjusted
        both = np.isfinite(index[12:]) & np.isfinite(index[:-12])
        np.testing.assert_allclose(index[12:][both], index[:-12][both], rtol=1e-5)  # one season, repeated
        np.testing.assert_allclose(index[84:96].mean(), 1.0, rtol=1e-5)  # the context's last season
        assert np.ptp(index[84:96]) > 0.5  # the series' strong season was found
    assert changed >= 5


def test_seasonal_adjustment_setting_must_be_a_boolean():
    with pytest.raises(InputError, match="seasonal_adjustment must be true or false, got 'yes'"):
        WindowSpec(context_length=96, prediction_length=24, seasonal_adjustment="yes")


def test_downsampling_changes_resolution_token():
    entries = [{"target": np.arange(5000, dtype=np.float32), "freq": "h"}]
    spec = WindowSpec(context_length=32, prediction_length=8, downsample_prob=1.0, downsample_factors=(24,))
    w = sample_window([Source.from_entries(entries)], spec, np.random.default_rng(1))
    assert FREQ_VOCAB[int(w["freq_id"])] == "D"
    past = w["past_values"][:, 0][w["past_mask"][:, 0] > 0]
    assert np.all(np.diff(past) == 24)


def test_aggregation_averages_blocks_of_the_factor():
    """aggregate_share=1: a daily cycle averages out of hourly data coarsened to days, and the
    token says daily; keeping every 24th hour instead keeps a phase of the cycle."""
    hours = np.arange(5000)
    entries = [{"target": (1000 + 10 * np.sin(2 * np.pi * (hours + 0.3) / 24)).astype(np.float32), "freq": "h"}]
    source = Source.from_entries(entries)

    def past(share: float, seed: int) -> tuple[np.ndarray, str]:
        spec = WindowSpec(context_length=32, prediction_length=8, downsample_prob=1.0,
                          downsample_factors=(24,), aggregate_share=share)
        w = sample_window([source], spec, np.random.default_rng(seed))
        return w["past_values"][:, 0][w["past_mask"][:, 0] > 0], FREQ_VOCAB[int(w["freq_id"])]

    for seed in range(10):
        values, token = past(1.0, seed)
        assert token == "D" and np.allclose(values, 1000, atol=1e-3)
    assert max(abs(past(0.0, seed)[0][0] - 1000) for seed in range(10)) > 5

    # a series just long enough for one full window of 24-hour blocks: every phase still leaves
    # enough whole blocks for a full context and the least observed future
    tight = Source.from_entries([{"target": np.arange(24 * 34 + 5, dtype=np.float32), "freq": "h"}])
    spec = WindowSpec(context_length=32, prediction_length=8, downsample_prob=1.0, downsample_factors=(24,),
                      aggregate_share=1.0, full_context_prob=1.0)
    for seed in range(20):
        w = sample_window([tight], spec, np.random.default_rng(seed))
        assert w["past_mask"].all() and w["future_mask"].sum() >= spec.min_future


def test_truncation_shortens_context():
    entries = [{"target": np.arange(5000, dtype=np.float32), "freq": "h"}]
    spec = WindowSpec(context_length=128, prediction_length=8, truncate_prob=1.0, min_past=8)
    counts = [sample_window([Source.from_entries(entries)], spec, np.random.default_rng(s))["past_mask"].sum()
              for s in range(40)]
    assert min(counts) >= 8 and np.mean(counts) < 100


def test_full_context_windows_fill_the_context():
    """full_context_prob=1: only series long enough are drawn, and no context step is padding,
    even after downsampling; a pool without long series falls back to padded windows."""
    rng = np.random.default_rng(2)
    entries = [{"target": rng.normal(size=30).astype(np.float32), "freq": "h"} for _ in range(30)]
    entries.append({"target": np.arange(400, dtype=np.float32), "freq": "h"})
    source = Source.from_entries(entries)
    spec = WindowSpec(context_length=64, prediction_length=16, downsample_prob=0.5,
                      downsample_factors=(2, 4, 12), full_context_prob=1.0)
    for seed in range(40):
        w = sample_window([source], spec, np.random.default_rng(seed))
        assert w["past_mask"].all()  # only the 400-point ramp can fill 64 + 4 steps
        steps = np.diff(w["past_values"][:, 0])
        assert steps.min() == steps.max() and steps[0] in (1, 2, 4)  # factor 12 leaves < 68 points
    plain = WindowSpec(context_length=64, prediction_length=16)
    padded = sum(not sample_window([source], plain, np.random.default_rng(s))["past_mask"].all() for s in range(40))
    assert padded > 30  # without the option most windows come from the 30-point series
    short_only = Source.from_entries(entries[:-1])
    w = sample_window([short_only], spec, np.random.default_rng(0))
    assert 0 < w["past_mask"].sum() < 64


def test_mapped_lengths_match_the_series(tmp_path):
    from gluonts.dataset.arrow import ArrowWriter

    from tsfm.data.corpus_reading import MappedTargets

    rng = np.random.default_rng(3)
    entries = [{"target": rng.normal(size=n).astype(np.float32), "freq": "D", "start": "2020-01-01"}
               for n in (5, 17, 300)]
    multivariate = [{"target": rng.normal(size=(2, 9)).astype(np.float32), "freq": "D", "start": "2020-01-01"}]
    ArrowWriter(compression=None).write_to_file(entries, tmp_path / "uni.arrow")
    ArrowWriter(compression=None).write_to_file(multivariate, tmp_path / "multi.arrow")
    mapped = MappedTargets([tmp_path / "uni.arrow", tmp_path / "multi.arrow"])
    assert mapped[3].shape == (2, 9)
    assert mapped.lengths().tolist() == [5, 17, 300, 9]
    assert Source.from_mapped(mapped).long_series(17).tolist() == [1, 2]


def _long_sources():
    rng = np.random.default_rng(1)
    return [Source.from_entries([{"target": rng.normal(size=2000).astype(np.float32), "freq": "h"}
                                 for _ in range(20)])]


def _stream(rank, world, workers=0, n=64):
    ds = TrainingWindows(_long_sources(), WindowSpec(32, 8), n, seed=7, rank=rank, world_size=world)
    loader = DataLoader(ds, batch_size=8, num_workers=workers, collate_fn=collate_windows)
    return torch.cat([b["past_values"] for b in loader])


def test_streams_are_deterministic_and_rank_disjoint():
    a0, b0 = _stream(0, 2), _stream(0, 2)
    assert torch.equal(torch.nan_to_num(a0), torch.nan_to_num(b0))
    a1 = _stream(1, 2)
    rows0 = {tuple(np.nan_to_num(r.numpy().ravel(), nan=-9).round(5)) for r in a0}
    rows1 = {tuple(np.nan_to_num(r.numpy().ravel(), nan=-9).round(5)) for r in a1}
    assert len(rows0 & rows1) == 0


def test_workers_split_the_same_windows():
    """Two dataloader workers yield exactly the windows one process would (no duplicates)."""
    single = _stream(0, 1, workers=0)
    double = _stream(0, 1, workers=2)
    key = lambda t: sorted(tuple(np.nan_to_num(r.numpy().ravel(), nan=-9).round(5)) for r in t)  # noqa: E731
    assert key(single) == key(double)
