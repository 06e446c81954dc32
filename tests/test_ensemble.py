"""Ensembles: members' quantiles averaged level by level, one checkpoint for every entry point."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import monthly_frame
from tsfm import Forecaster
from tsfm.errors import InputError
from tsfm.hub import load_model, save_pretrained
from tsfm.models.ensemble import Ensemble, EnsembleConfig
from tsfm.models.itransformer import ITransformer, ITransformerConfig
from tsfm.models.ttm import TTM, TTMConfig
from tsfm.train.finetune import freeze, resolve_mode

torch.set_num_threads(1)


def members(n: int = 2) -> list[TTM]:
    """Tiny TTMs with different weights; the second anchors on the last value."""
    out = []
    for seed in range(n):
        torch.manual_seed(seed)
        out.append(TTM(TTMConfig.tiny(anchor_last=seed % 2 == 1)).eval())
    return out


def windows(batch: int = 3, channels: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(7)
    t = torch.arange(64, dtype=torch.float32)
    values = 20 + 5 * torch.sin(2 * torch.pi * t / 12)[None, :, None] + torch.randn(batch, 64, channels)
    values[0, 5:9, 0] = float("nan")
    return values, (~torch.isnan(values)).float(), torch.tensor([3, 7, 11][:batch])


def test_forward_is_the_weighted_quantile_average_and_stays_sorted() -> None:
    parts = members(3)
    x, mask, freq = windows()
    with torch.no_grad():
        each = [m(x, mask, freq) for m in parts]
        equal = Ensemble.from_models(parts)(x, mask, freq)
        weighted = Ensemble.from_models(parts, weights=[2.0, 1.0, 1.0])(x, mask, freq)
    assert equal.shape == (3, 16, 2, 9)
    torch.testing.assert_close(equal, sum(each) / 3)
    torch.testing.assert_close(weighted, 0.5 * each[0] + 0.25 * each[1] + 0.25 * each[2])
    assert (equal.diff(dim=-1) >= 0).all()  # members' quantiles are sorted, so is their average
    assert not torch.allclose(each[0], each[1])  # the members do differ


def test_checkpoint_round_trip_and_complete_member_configs(tmp_path) -> None:
    ensemble = Ensemble.from_models(members(), weights=[3, 1])
    directory = save_pretrained(ensemble, tmp_path / "ens")
    config = json.loads((directory / "config.json").read_text())
    assert config["family"] == "ensemble" and config["weights"] == [3.0, 1.0]
    assert [m["anchor_last"] for m in config["members"]] == [False, True]
    loaded = load_model(directory)
    assert isinstance(loaded, Ensemble) and loaded.config == ensemble.config
    x, mask, freq = windows()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, mask, freq), ensemble(x, mask, freq), rtol=0, atol=0)


def test_members_referenced_by_checkpoint_are_stored_once_and_exactly(tmp_path) -> None:
    """A referencing ensemble (as shipped) reads its members' weights from their own checkpoints,
    only the exact weights it was released with; saving it again writes a self-contained folder."""
    from safetensors.torch import save_file

    from tsfm.models.ensemble import MEMBER_CHECKPOINTS, member_reference, referencing_config

    parts = members()
    ensemble = Ensemble.from_models(parts, weights=[3, 1])
    folder = tmp_path / "ens"
    folder.mkdir()
    first = save_pretrained(parts[0], folder / "first")  # a member stored as a folder inside the ensemble's
    elsewhere = save_pretrained(parts[1], tmp_path / "second")  # and one stored elsewhere (as a shipped name would be)
    references = [member_reference("first", (first / "model.safetensors").read_bytes()),
                  member_reference(str(elsewhere), (elsewhere / "model.safetensors").read_bytes())]
    (folder / "config.json").write_text(json.dumps(referencing_config(ensemble.config, references)))
    save_file({}, str(folder / "model.safetensors"), metadata={"family": "ensemble"})
    loaded = load_model(folder)
    assert loaded.config == ensemble.config
    x, mask, freq = windows()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x, mask, freq), ensemble(x, mask, freq), rtol=0, atol=0)

    copy = save_pretrained(loaded, tmp_path / "saved")  # what Forecaster.save and fine-tuning write
    assert MEMBER_CHECKPOINTS not in json.loads((copy / "config.json").read_text())
    with torch.no_grad():
        torch.testing.assert_close(load_model(copy)(x, mask, freq), ensemble(x, mask, freq), rtol=0, atol=0)

    mixed = referencing_config(ensemble.config, [references[0], None])  # member 1 in the ensemble's own file
    (folder / "config.json").write_text(json.dumps(mixed))
    save_file({k: v for k, v in ensemble.state_dict().items() if k.startswith("members.1.")},
              str(folder / "model.safetensors"))
    with torch.no_grad():
        torch.testing.assert_close(load_model(folder)(x, mask, freq), ensemble(x, mask, freq), rtol=0, atol=0)

    torch.manual_seed(5)
    save_pretrained(TTM(TTMConfig.tiny()), first)  # the member re-released with other weights
    with pytest.raises(InputError, match="re-release the ensemble"):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps(referencing_config(ensemble.config, [
        member_reference("first", (first / "model.safetensors").read_bytes()), None])))
    save_pretrained(TTM(TTMConfig.tiny(anchor_last=True)), first)  # right digest of a checkpoint of another config
    (folder / "config.json").write_text(json.dumps(referencing_config(ensemble.config, [
        member_reference("first", (first / "model.safetensors").read_bytes()), None])))
    with pytest.raises(InputError, match="whose config is not the member's"):
        load_model(folder)
    (folder / "config.json").write_text(json.dumps({**mixed, MEMBER_CHECKPOINTS: [references[0]]}))
    with pytest.raises(InputError, match="one entry per member"):
        load_model(folder)


def test_members_must_agree_and_take_no_covariates() -> None:
    tiny = TTMConfig.tiny()
    with pytest.raises(InputError, match="at least two members"):
        EnsembleConfig.of([tiny])
    with pytest.raises(InputError, match="member 1 .*quantiles .*must agree"):
        EnsembleConfig.of([tiny, TTMConfig.tiny(quantiles=(0.1, 0.5, 0.9))])
    mixed = EnsembleConfig.of([tiny, TTMConfig.tiny(prediction_length=8, context_length=32)])
    assert (mixed.context_length, mixed.prediction_length) == (64, 8)  # the longest context, the shortest horizon
    with pytest.raises(InputError, match="longest context \\(64\\) .*shortest horizon \\(8\\)"):
        EnsembleConfig(context_length=32, prediction_length=8, quantiles=tiny.quantiles, members=mixed.members)
    with pytest.raises(InputError, match="covariates"):
        EnsembleConfig.of([tiny, TTMConfig.tiny(num_exog_channels=1, decoder_mode="mix_channel",
                                                num_input_channels=2)])
    with pytest.raises(InputError, match="one non-negative number per member"):
        EnsembleConfig.of([tiny, tiny], weights=[1.0])
    with pytest.raises(InputError, match="one non-negative number per member"):
        EnsembleConfig.of([tiny, tiny], weights=[1.0, -1.0])
    with pytest.raises(InputError, match="no covariates"):
        Ensemble.from_models(members())(*windows()[:2], None, torch.zeros(3, 64, 1))


def test_mixed_families_and_frequency_input() -> None:
    """A member that ignores the frequency id sits beside one that reads it; the ensemble reads it."""
    torch.manual_seed(0)
    other = ITransformer(ITransformerConfig(context_length=64, prediction_length=16, d_model=16, e_layers=1,
                                            n_heads=2, d_ff=16)).eval()
    ensemble = Ensemble.from_models([members(1)[0], other])
    assert ensemble.capabilities.freq_token and ensemble.capabilities.export_example_channels is None
    no_freq = TTM(TTMConfig.tiny(resolution_prefix_tuning=False))
    assert not Ensemble.from_models([no_freq, other]).capabilities.freq_token
    x, mask, freq = windows()
    with torch.no_grad():
        torch.testing.assert_close(ensemble(x, mask, freq), (ensemble.members[0](x, mask, freq) + other(x, mask)) / 2)


def test_export_inputs_follow_what_members_declare() -> None:
    """A member family that declares it ignores the frequency id (Moirai-MoE) does not add the input."""
    from tsfm.models.moirai_moe import MoiraiMoE, MoiraiMoEConfig
    from tsfm.models.s_mamba import SMamba, SMambaConfig

    small = dict(context_length=64, prediction_length=16)
    moirai = MoiraiMoE(MoiraiMoEConfig.tiny(**small))
    no_freq = TTM(TTMConfig.tiny(resolution_prefix_tuning=False))
    assert not Ensemble.from_models([moirai, no_freq]).capabilities.freq_token
    assert Ensemble.from_models([moirai, members(1)[0]]).capabilities.freq_token
    mamba = SMamba(SMambaConfig.tiny(**small))
    example = Ensemble.from_models([no_freq, mamba]).capabilities.export_example_channels
    assert example == mamba.capabilities.export_example_channels > 1


def test_finetune_modes_train_every_members_part() -> None:
    ensemble = Ensemble.from_models(members())
    mode, prefixes = resolve_mode(ensemble, "head")
    trainable, frozen = freeze(ensemble, prefixes)
    heads = sum(freeze(m, resolve_mode(m, "head")[1])[0] for m in ensemble.members)
    assert mode == "head" and trainable == heads and 0 < trainable < trainable + frozen == ensemble.num_parameters()
    assert freeze(ensemble, resolve_mode(ensemble, "full")[1]) == (ensemble.num_parameters(), 0)


def test_forecaster_finetune_and_onnx_export(tmp_path) -> None:
    """The ensemble checkpoint serves the Forecaster, fine-tunes, and exports to a graph that matches it."""
    import onnxruntime as ort

    from tsfm.export import export_onnx

    directory = save_pretrained(Ensemble.from_models(members()), tmp_path / "ens")
    df = monthly_frame(n_series=3, length=120)
    zero_shot = Forecaster(model=str(directory), horizon=6).fit(df).predict()
    assert zero_shot.shape[0] == 18 and np.isfinite(zero_shot["0.5"]).all()
    tuned = Forecaster(model=str(directory), horizon=6).finetune(df, fraction=1.0, max_epochs=1, progress=False)
    assert tuned.finetune_report_.mode == "head" and tuned.finetune_report_.steps > 0

    path = export_onnx(directory, tmp_path / "ens.onnx")
    x, mask, freq = windows()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    assert names == ["past_values", "past_mask", "freq_id"]
    got = session.run(None, {"past_values": x.numpy(), "past_mask": mask.numpy(), "freq_id": freq.numpy()})[0]
    with torch.no_grad():
        want = load_model(directory)(x, mask, freq).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    int8 = export_onnx(directory, tmp_path / "ens-int8.onnx", quantize="int8")  # ORT's shape inference fails here
    session = ort.InferenceSession(str(int8), providers=["CPUExecutionProvider"])
    got8 = session.run(None, {"past_values": x.numpy(), "past_mask": mask.numpy(), "freq_id": freq.numpy()})[0]
    assert got8.shape == want.shape and np.abs(got8 - want).max() < 0.05 * np.abs(want).max()


def test_members_of_different_context_and_horizon(tmp_path) -> None:
    """A shorter-context member reads the window's most recent steps; "shortest" cuts a longer horizon
    to the ensemble's, "longest" lets a shorter member cover only its own steps. Both export to a
    graph that matches them and round-trip through a checkpoint."""
    import onnxruntime as ort

    from tsfm.export import export_onnx

    torch.manual_seed(3)
    long_ = TTM(TTMConfig.tiny()).eval()  # context 64, horizon 16
    short = TTM(TTMConfig.tiny(context_length=32, prediction_length=8, anchor_last=True)).eval()
    ensemble = Ensemble.from_models([long_, short], weights=[1.0, 3.0])
    x, mask, freq = windows()
    with torch.no_grad():
        got = ensemble(x, mask, freq)
        want = 0.25 * long_(x, mask, freq)[:, :8] + 0.75 * short(x[:, -32:], mask[:, -32:], freq)
    assert got.shape == (3, 8, 2, 9)
    torch.testing.assert_close(got, want)
    assert not torch.allclose(got, 0.25 * long_(x, mask, freq)[:, :8] + 0.75 * short(x[:, :32], mask[:, :32], freq))

    # "longest": 16 steps in one call; the 8-step member covers steps 1-7 at its full weight (0.75),
    # fades over its last quarter (reach (8 - step index) / 2: half of it on step 8), then gives way
    longest = Ensemble.from_models([long_, short], weights=[1.0, 3.0], horizon_rule="longest")
    assert (longest.config.context_length, longest.config.prediction_length) == (64, 16)
    with torch.no_grad():
        got = longest(x, mask, freq)
        a, b = long_(x, mask, freq), short(x[:, -32:], mask[:, -32:], freq)
    share = torch.tensor([0.75] * 7 + [0.5 * 0.75 / (0.25 + 0.5 * 0.75)] + [0.0] * 8)
    assert got.shape == (3, 16, 2, 9)
    torch.testing.assert_close(got[:, :8], (1 - share[:8])[None, :, None, None] * a[:, :8]
                               + share[:8][None, :, None, None] * b)
    torch.testing.assert_close(got[:, 8:], a[:, 8:])
    assert (got.diff(dim=-1) >= 0).all()
    with pytest.raises(InputError, match="horizon_rule must be one of shortest, longest"):
        EnsembleConfig.of([long_.config, short.config], horizon_rule="middle")

    for rule in ("shortest", "longest"):
        model = Ensemble.from_models([long_, short], horizon_rule=rule)
        path = export_onnx(model, tmp_path / f"mixed-{rule}.onnx")
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        onnx_out = session.run(None, {"past_values": x.numpy(), "past_mask": mask.numpy(), "freq_id": freq.numpy()})[0]
        with torch.no_grad():
            np.testing.assert_allclose(onnx_out, model(x, mask, freq).numpy(), rtol=1e-4, atol=1e-4)
        reloaded = load_model(save_pretrained(model, tmp_path / rule))
        assert reloaded.config.horizon_rule == rule and torch.equal(reloaded.step_weights, model.step_weights)
