"""The forecast contract every family keeps, checked once for all of them (``tsfm.models.base``):
raw ``[B, L, C]`` in, finite non-crossing quantiles ``[B, H, C, Q]`` out, for any batch and
channel count."""

from __future__ import annotations

import pytest
import torch

from conftest import randomise
from conftest import seasonal_walks as series
from tsfm.models.registry import FAMILIES, build_model, get_family

TRAINABLE = sorted(name for name, family in FAMILIES.items() if not family.composite)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.parametrize("family", TRAINABLE)
@pytest.mark.parametrize("batch,channels", [(1, 1), (3, 2), (4, 7)])
def test_output_shape_finite_and_monotone(family: str, batch: int, channels: int) -> None:
    config_class, _ = get_family(family).load()
    config = config_class.tiny()
    torch.manual_seed(0)
    model = build_model(config).eval()
    randomise(model, scale=0.1)  # no zero-initialised output hides a term
    with torch.no_grad():
        out = model(series(batch, config.context_length, channels) * torch.randn(1, 1, channels).exp())
    assert out.shape == (batch, config.prediction_length, channels, len(config.quantiles))
    assert torch.isfinite(out).all()
    assert (out.diff(dim=-1) >= 0).all()
    assert (out.diff(dim=-1) > 0).float().mean() > 0.99
    assert (out[:, -1, :, -1] - out[:, -1, :, 0]).mean() > 0  # the last step (Moirai: a later patch) has spread
