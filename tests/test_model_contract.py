"""The contract every trainable family keeps (``tsfm.models.base``), checked once for all of them:
raw ``[B, L, C]`` in, finite non-crossing quantiles ``[B, H, C, Q]`` out in the input's scale, for any
batch and channel count; affine equivariance; padding, masks, NaN and long histories; channels
forecast independently or mixed; inputs a family does not read; config and checkpoint round trips;
gradients, training and ONNX export. Where a family legitimately differs, the table below says so
(with the reason); what only one family does is tested in its own file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import assert_checkpoint_round_trip, randomise
from conftest import seasonal_walks as series
from tsfm.errors import InputError
from tsfm.models.base import ForecastModel
from tsfm.models.registry import FAMILIES, build_model, get_family
from tsfm.nn.scaling import SCALERS

TRAINABLE = sorted(name for name, family in FAMILIES.items() if not family.composite)

# ---------------------------------------------------------------- where families differ, and why
#: variate tokens attend to (itransformer, moirai-moe) or are scanned over (s-mamba) each other
MIXES_CHANNELS = {"itransformer", "moirai-moe", "s-mamba"}
#: its bidirectional Mamba scans the variate tokens in their order, so a permutation changes the forecast
ORDERED_CHANNELS = {"s-mamba"}
#: past covariates are extra variate tokens (ttm reads them only through a mix_channel decoder: test_ttm.py)
TAKES_PAST_EXOG = {"itransformer", "moirai-moe", "s-mamba"}
#: ttm reads freq_id (resolution prefix tuning) and, with its exog mixer, future_exog (test_ttm.py)
READS_FREQ_AND_FUTURE_EXOG = {"ttm"}
#: weights perturbed before the checks, so no zero-initialised part hides a term (moirai-moe: its
#: variate biases start at 0 and its norms at 1; spacetime: its mask embedding starts at 0)
PERTURBATION = {"moirai-moe": 0.2, "spacetime": 0.1}
#: (scale, offset) pairs; a 1e3 offset on a 0.25-scaled series is at float32's limit (s-mamba's
#: forecast moves by 1.5x the tolerance, moirai-moe's and spacetime's by ~1x), so only ttm and
#: itransformer, which keep a margin (0.6x, 0.9x), are held to it
AFFINE = [(3.7, -20.0), (40.0, 0.0), (7.5, -300.0), (1e-3, 0.05)]
AFFINE_LARGE_OFFSET = {"ttm", "itransformer"}
#: non-default settings a config and a checkpoint must carry through a round trip
NON_DEFAULT = dict(quantiles=(0.1, 0.5, 0.9), scaling="std")
FAMILY_NON_DEFAULT = {"itransformer": dict(num_exog_channels=1, activation="relu")}
#: ttm: every optional part on; its zero-initialised exog output layer passes gradient upstream
#: from the second step on (the others must get gradient everywhere from the first)
GRADIENT_OVERRIDES = {"ttm": dict(decoder_mode="mix_channel", num_input_channels=3, num_exog_channels=1,
                                  enable_exog_mixer=True, decoder_d_model=16, decoder_adaptive_patching_levels=2,
                                  head_dropout=0.1)}
GRADIENT_STEPS = {"ttm": 2}
#: s-mamba: one layer and chunks of 4 keep the unrolled scan graph small (the export traces two
#: chunks plus one variate, capabilities.export_example_channels, and the graph then runs with 2 and
#: 18 chunks); spacetime: the FFT kernels export, the recurrences do not
EXPORT_OVERRIDES = {"s-mamba": dict(scan_backend="chunked", scan_chunk_size=4, e_layers=1),
                    "spacetime": dict(scan_backend="chunked")}
#: moirai-moe's export (one layer, 2 bisection steps) is tested in test_nn_moe.py
EXPORTED = [pytest.param(f, marks=pytest.mark.slow) if f == "spacetime" else f for f in TRAINABLE if f != "moirai-moe"]

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(family: str, perturbation: float | None = None, **overrides) -> ForecastModel:
    """The family's ``tiny()`` model in eval mode, its weights perturbed by ``perturbation`` (default:
    the family's ``PERTURBATION``)."""
    config_class, _ = get_family(family).load()
    torch.manual_seed(0)
    model = build_model(config_class.tiny(**overrides)).eval()
    scale = PERTURBATION.get(family) if perturbation is None else perturbation
    if scale:
        randomise(model, scale=scale)
    return model


def lengths(model: ForecastModel) -> tuple[int, int]:
    return model.config.context_length, model.config.prediction_length


# ---------------------------------------------------------------- the forecast
@pytest.mark.parametrize("family", TRAINABLE)
@pytest.mark.parametrize("batch,channels", [(1, 1), (3, 2), (4, 7)])
def test_output_shape_finite_and_monotone(family: str, batch: int, channels: int) -> None:
    model = tiny(family, perturbation=0.1)  # every family: no zero-initialised output hides a term
    config = model.config
    with torch.no_grad():
        out = model(series(batch, config.context_length, channels) * torch.randn(1, 1, channels).exp())
    assert out.shape == (batch, config.prediction_length, channels, len(config.quantiles))
    assert torch.isfinite(out).all()
    assert (out.diff(dim=-1) >= 0).all()
    assert (out.diff(dim=-1) > 0).float().mean() > 0.99
    assert (out[:, -1, :, -1] - out[:, -1, :, 0]).mean() > 0  # the last step (Moirai: a later patch) has spread


@pytest.mark.parametrize("family", TRAINABLE)
def test_output_is_in_input_scale(family: str) -> None:
    """Untrained forecasts sit around the series level (de-normalised inside forward)."""
    model = tiny(family)
    x = series(4, model.config.context_length, 2) + 1000.0
    with torch.no_grad():
        median = model(x)[..., model.config.median_index]
    assert (median - x[:, -16:].mean(1, keepdim=True)).abs().max() < 50


@pytest.mark.parametrize("family", TRAINABLE)
@pytest.mark.parametrize("with_gaps", [False, True])
def test_forecast_is_equivariant_to_affine_rescaling(family: str, with_gaps: bool) -> None:
    model = tiny(family)
    x = series(3, model.config.context_length - 10, 2)  # shorter than the context: left-padded and masked inside
    if with_gaps:
        x[0, 5:9, 0] = float("nan")
        x[2, -3:, 1] = float("nan")
    with torch.no_grad():
        base = model(x)
        for a, b in AFFINE + ([(0.25, 1e3)] if family in AFFINE_LARGE_OFFSET else []):
            torch.testing.assert_close(model(a * x + b), a * base + b, rtol=1e-4, atol=1e-4 * a)


# ---------------------------------------------------------------- histories: padding, gaps, length
@pytest.mark.parametrize("family", TRAINABLE)
def test_padding_equals_mask_and_padded_values_do_not_matter(family: str) -> None:
    model = tiny(family)
    L, _ = lengths(model)
    n = L * 5 // 8 - 3  # 37 or 17 steps: a multiple of no patch length
    short = series(2, n, 3)
    g = torch.Generator().manual_seed(2)
    nan_padded = torch.cat([torch.full((2, L - n, 3), float("nan")), short], dim=1)
    garbage = torch.cat([torch.randn(2, L - n, 3, generator=g) * 1e4, short], dim=1)
    zero_padded = torch.cat([torch.zeros(2, L - n, 3), short], dim=1)
    mask = torch.cat([torch.zeros(2, L - n, 3), torch.ones(2, n, 3)], dim=1)
    gappy = short.clone()
    gappy[:, 5:9, 1] = float("nan")
    with torch.no_grad():
        expected = model(short)
        assert torch.equal(model(nan_padded), expected)
        assert torch.equal(model(garbage, past_mask=mask), expected)
        assert (model(garbage) - expected).abs().max() > 1e-3  # without the mask, those values count
        assert (model(zero_padded) - expected).abs().max() > 1.0  # zero padding counted as observed differs
        gap, two_steps = model(gappy), model(short[:, -2:])
    assert torch.isfinite(gap).all() and torch.isfinite(two_steps).all()
    assert (gap[:, :, 1] - expected[:, :, 1]).abs().max() > 1e-4


@pytest.mark.parametrize("family", TRAINABLE)
def test_longer_input_keeps_the_last_context(family: str) -> None:
    model = tiny(family)
    L, _ = lengths(model)
    x = series(2, 3 * L, 2)
    with torch.no_grad():
        assert torch.equal(model(x), model(x[:, -L:]))
        assert torch.equal(model(x[:, : L + 37]), model(x[:, 37 : L + 37]))
        torch.testing.assert_close(model(x.double()), model(x))  # other dtypes are cast to the weights'
    with pytest.raises(InputError, match=r"past_values must be \[batch, time, channels\]"):
        model(x[0])


@pytest.mark.parametrize("family", TRAINABLE)
def test_constant_and_empty_series_give_finite_forecasts(family: str) -> None:
    model = tiny(family)
    L, _ = lengths(model)
    x = torch.full((2, L, 3), 5.0)
    x[1, :, 1] = float("nan")  # nothing observed at all
    with torch.no_grad():
        out, short = model(x), model(torch.full((1, 20, 2), 4.2))
        assert torch.isfinite(out).all() and torch.isfinite(short).all()
        observed = torch.cat([out[0], out[1, :, ::2]], dim=1)  # every channel that has values
        assert (observed - 5.0).abs().max() < 0.1  # constant series: forecast stays near the level
        assert (short - 4.2).abs().max() < 0.1
        for scaling in SCALERS:
            assert torch.isfinite(tiny(family, scaling=scaling)(torch.zeros(1, L, 1))).all(), scaling


# ---------------------------------------------------------------- channels and other inputs
@pytest.mark.parametrize("family", TRAINABLE)
def test_channels_are_forecast_independently_or_mixed(family: str) -> None:
    """Channel-independent families forecast a channel alone exactly as among others; mixing
    families let every channel's forecast see the others (at a channel count no config names)."""
    model = tiny(family)
    L, H = lengths(model)
    x = series(2, L - 10, 13)
    x[1, 3:7, 2] = float("nan")
    changed = x.clone()
    changed[:, :, 12] += torch.linspace(0, 20, L - 10)
    with torch.no_grad():
        out, other, alone = model(x), model(changed), model(x[:, :, :1])
    assert out.shape == (2, H, 13, len(model.quantiles))
    assert (other[:, :, 12] - out[:, :, 12]).abs().max() > 1e-3
    if family in MIXES_CHANNELS:
        assert (other[:, :, :12] - out[:, :, :12]).abs().max() > 1e-3
        assert (alone - out[:, :, :1]).abs().max() > 1e-3  # alone, channel 0 gets another forecast
    else:
        assert torch.equal(other[:, :, :12], out[:, :, :12])
        torch.testing.assert_close(alone, out[:, :, :1])


@pytest.mark.parametrize("family", sorted(set(TRAINABLE) - ORDERED_CHANNELS))
def test_permuting_channels_permutes_the_forecast(family: str) -> None:
    model = tiny(family)
    L, _ = lengths(model)
    x = series(3, L - 10, 6)
    x[1, 3:7, 2] = float("nan")
    perm = torch.tensor([4, 2, 0, 5, 1, 3])
    exog, exog_perm = series(3, L - 10, 3, seed=8), torch.tensor([1, 2, 0])  # covariates in any order too
    with torch.no_grad():
        if family in TAKES_PAST_EXOG:
            base, permuted = model(x, past_exog=exog), model(x[:, :, perm], past_exog=exog[:, :, exog_perm])
        else:
            base, permuted = model(x), model(x[:, :, perm])
    torch.testing.assert_close(permuted, base[:, :, perm], rtol=1e-6, atol=1e-6 * base.abs().max().item())


@pytest.mark.parametrize("family", sorted(set(TRAINABLE) - READS_FREQ_AND_FUTURE_EXOG))
def test_freq_id_is_ignored_and_covariates_it_cannot_read_are_refused(family: str) -> None:
    model = tiny(family)
    L, H = lengths(model)
    assert not model.capabilities.freq_token and not model.capabilities.future_covariates
    x, exog = series(2, L, 3), series(2, L, 1, seed=5)
    past = dict(past_exog=exog) if family in TAKES_PAST_EXOG else {}
    with torch.no_grad():
        assert torch.equal(model(x, freq_id=torch.tensor([3, 4])), model(x))
    with pytest.raises(InputError, match="future_exog"):
        model(x, future_exog=torch.zeros(2, H, 1), **past)
    if family not in TAKES_PAST_EXOG:
        with pytest.raises(InputError, match="past_exog"):
            model(x, past_exog=exog)


# ---------------------------------------------------------------- configs and checkpoints
@pytest.mark.parametrize("family", TRAINABLE)
def test_config_dict_round_trip_and_registry(family: str) -> None:
    config_class, model_class = get_family(family).load()
    config = config_class.tiny(**NON_DEFAULT, **FAMILY_NON_DEFAULT.get(family, {}))
    data = json.loads(json.dumps(config.to_dict()))
    assert data["family"] == family
    assert config_class.from_dict(data) == config
    model = build_model(data)
    assert type(model) is model_class and model.config == config


@pytest.mark.parametrize("family", TRAINABLE)
def test_save_load_round_trip_is_bit_exact(family: str, tmp_path) -> None:
    model = tiny(family, **NON_DEFAULT, **FAMILY_NON_DEFAULT.get(family, {}))
    L, _ = lengths(model)
    inputs = dict(past_exog=torch.randn(2, L, 1)) if family in TAKES_PAST_EXOG else {}
    if model.capabilities.freq_token:
        inputs["freq_id"] = torch.tensor([7, 8])
    assert_checkpoint_round_trip(model, tmp_path / family, series(2, L, 3), **inputs)


# ---------------------------------------------------------------- training
@pytest.mark.parametrize("family", TRAINABLE)
def test_every_parameter_learns(family: str) -> None:
    """Adam steps on the family's training loss reach every parameter (with dropout on, and every
    input the model reads)."""
    config_class, _ = get_family(family).load()
    torch.manual_seed(0)
    model = build_model(config_class.tiny(dropout=0.1, **GRADIENT_OVERRIDES.get(family, {}))).train()
    L, H = lengths(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x, exog = series(8, L + H, 2), torch.randn(8, L + H, 1)
    inputs = {}
    if model.capabilities.freq_token:
        inputs["freq_id"] = torch.full((8,), 7)
    if model.capabilities.covariate_channels or family in TAKES_PAST_EXOG:
        inputs["past_exog"] = exog[:, :L]
    if model.capabilities.future_covariates:
        inputs["future_exog"] = exog[:, L:]
    touched = {name: torch.zeros_like(p) for name, p in model.named_parameters()}
    losses = []
    for _ in range(GRADIENT_STEPS.get(family, 1)):
        optimizer.zero_grad()
        loss = model.training_loss(x[:, :L], x[:, L:], **inputs)
        loss.backward()
        for name, p in model.named_parameters():
            if p.grad is not None:
                touched[name] += p.grad.abs()
        optimizer.step()
        losses.append(loss.item())
    assert all(np.isfinite(losses))
    dead = [name for name, grad in touched.items() if grad.sum() == 0]
    assert not dead, f"parameters without gradient: {dead}"


@pytest.mark.parametrize("family", TRAINABLE)
def test_training_reduces_loss_on_a_seasonal_series(family: str) -> None:
    config_class, _ = get_family(family).load()
    torch.manual_seed(0)
    model = build_model(config_class.tiny()).train()
    L, H = lengths(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    t = torch.arange(L + H, dtype=torch.float32)
    phase = torch.rand(32, 1) * 8
    x = (torch.sin(2 * torch.pi * (t + phase) / 8) * 5 + 20).unsqueeze(-1)
    first = None
    for _ in range(60):
        optimizer.zero_grad()
        loss = model.training_loss(x[:, :L], x[:, L:])
        loss.backward()
        optimizer.step()
        first = first if first is not None else loss.item()
    assert first > 0 and loss.item() < 0.3 * first


# ---------------------------------------------------------------- export
@pytest.mark.parametrize("family", EXPORTED)
def test_onnx_export_with_dynamic_batch_and_channels(family: str, tmp_path) -> None:
    """``tsfm.export`` traces the model (and checks parity itself); the graph then runs at other
    batch and channel counts, with NaN and a mask, and matches eager."""
    onnxruntime = pytest.importorskip("onnxruntime")
    from tsfm.export.onnx_export import export_onnx

    model = tiny(family, **EXPORT_OVERRIDES.get(family, {}))
    L, H = lengths(model)
    session = onnxruntime.InferenceSession(str(export_onnx(model, tmp_path / f"{family}.onnx")),
                                           providers=["CPUExecutionProvider"])
    for batch, channels in [(5, 6), (1, 70)]:
        x = series(batch, L, channels, seed=3)
        x[0, :6, 1] = float("nan")
        mask = torch.ones_like(x)
        mask[:, : L * 5 // 16] = 0
        feeds = {"past_values": x, "past_mask": mask}
        if model.capabilities.freq_token:
            feeds["freq_id"] = torch.tensor([0, 7, 8, 11, 13])[:batch]
        got = session.run(None, {name: value.numpy() for name, value in feeds.items()})[0]
        with torch.inference_mode():
            expected = model(x, mask, feeds.get("freq_id")).numpy()
        assert got.shape == (batch, H, channels, len(model.quantiles))
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_capabilities_pickle_and_deep_copy():
    """A fitted ``Forecaster(model="auto")`` holds one; pickle and deepcopy must not meet the read-only view."""
    import copy
    import pickle

    from tsfm.models.base import Capabilities

    caps = Capabilities(covariate_channels=2, finetune_modes={"head": ("decoder", "head")})
    for again in (pickle.loads(pickle.dumps(caps)), copy.deepcopy(caps)):
        assert again == caps and dict(again.finetune_modes) == {"head": ("decoder", "head")}
        with pytest.raises(TypeError):
            again.finetune_modes["full"] = ("",)  # still read-only
