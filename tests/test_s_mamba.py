"""S-Mamba: the Mamba block against an unrolled recurrence, causality and bidirectionality,
covariate tokens, scan-backend parity, the traced export channels, config validation and weight
decay. The contract every family keeps (scale, padding, channels, round trips, training, ONNX
export) is in test_model_contract.py."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import randomise
from conftest import seasonal_walks as series
from tsfm.errors import InputError
from tsfm.models.s_mamba import BiMambaLayer, SMamba, SMambaConfig
from tsfm.nn.mamba import MambaBlock

H, L = 8, 32  # SMambaConfig.tiny(): context 32, horizon 8


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny(**overrides) -> SMamba:
    torch.manual_seed(0)
    return SMamba(SMambaConfig.tiny(**overrides)).eval()


# ---------------------------------------------------------------- Mamba block
def recurrent_mamba(block: MambaBlock, hidden: torch.Tensor) -> torch.Tensor:
    """The Mamba block written as a plain step-by-step loop (conv window + state update)."""
    b, length, _ = hidden.shape
    w = block.conv1d.weight[:, 0]  # [d_inner, k]
    k = w.shape[1]
    A = -torch.exp(block.A_log)
    xz = hidden @ block.in_proj.weight.T
    xs, zs = xz[..., : block.d_inner], xz[..., block.d_inner :]
    window = torch.zeros(b, block.d_inner, k)
    h = torch.zeros(b, block.d_inner, block.d_state)
    outs = []
    for t in range(length):
        window = torch.cat([window[:, :, 1:], xs[:, t, :, None]], dim=-1)
        x = F.silu((window * w).sum(-1) + block.conv1d.bias)  # [b, d_inner]
        proj = x @ block.x_proj.weight.T
        dt_low = proj[:, : block.dt_rank]
        Bt = proj[:, block.dt_rank : block.dt_rank + block.d_state]
        Ct = proj[:, block.dt_rank + block.d_state :]
        dt = F.softplus(dt_low @ block.dt_proj.weight.T + block.dt_proj.bias)  # [b, d_inner]
        h = torch.exp(dt[..., None] * A) * h + dt[..., None] * Bt[:, None, :] * x[..., None]
        y = (h * Ct[:, None, :]).sum(-1) + block.D * x
        y = y * F.silu(zs[:, t])
        outs.append(y @ block.out_proj.weight.T)
    return torch.stack(outs, dim=1)


@pytest.mark.parametrize("backend", ["reference", "chunked"])
def test_mamba_block_matches_unrolled_recurrence(backend: str) -> None:
    torch.manual_seed(0)
    block = MambaBlock(8, d_state=3, d_conv=3, expand=2, scan_backend=backend)
    randomise(block)
    x = torch.randn(2, 11, 8)
    with torch.no_grad():
        torch.testing.assert_close(block(x), recurrent_mamba(block, x), rtol=1e-5, atol=1e-5)


def test_mamba_block_init_follows_mamba() -> None:
    torch.manual_seed(0)
    block = MambaBlock(32, d_state=5, expand=2)
    assert block.dt_rank == 2
    torch.testing.assert_close(block.A_log[7], torch.log(torch.arange(1.0, 6.0)))
    assert (block.D == 1).all()
    dt = F.softplus(block.dt_proj.bias)
    assert dt.min() >= 1e-3 * 0.999 and dt.max() <= 0.1 * 1.001
    assert dt.max() / dt.min() > 10  # log-uniform spread, not a constant


def test_mamba_block_is_causal() -> None:
    torch.manual_seed(0)
    block = MambaBlock(8, d_state=4, d_conv=2, expand=1).eval()
    randomise(block)
    x = torch.randn(1, 9, 8)
    changed = x.clone()
    changed[:, 5] += 3.0
    with torch.no_grad():
        a, b = block(x), block(changed)
    torch.testing.assert_close(a[:, :5], b[:, :5], rtol=0, atol=0)
    assert (a[:, 5:] - b[:, 5:]).abs().amax(dim=-1).min() > 1e-4


def test_bidirectional_layer_sees_both_sides() -> None:
    torch.manual_seed(0)
    layer = BiMambaLayer(SMambaConfig.tiny()).eval()
    randomise(layer)
    x = torch.randn(1, 9, 16)
    changed = x.clone()
    changed[:, 4] += 3.0
    with torch.no_grad():
        diff = (layer(x) - layer(changed)).abs().amax(dim=-1)[0]
    assert (diff > 1e-4).all()  # tokens before and after 4 both change


# ---------------------------------------------------------------- configs and covariates
def test_config_validation() -> None:
    with pytest.raises(InputError, match="scan_backend"):
        SMambaConfig.tiny(scan_backend="cuda")
    with pytest.raises(InputError, match="d_state"):
        SMambaConfig.tiny(d_state=0)


def test_default_config_is_small() -> None:
    torch.manual_seed(0)
    assert 400_000 < SMamba(SMambaConfig()).num_parameters() < 800_000


def test_past_exog_are_extra_tokens() -> None:
    model = tiny()
    x, exog = series(2, L, 3), series(2, L, 2, seed=5)
    with torch.no_grad():
        out, plain = model(x, past_exog=exog), model(x)
    assert out.shape == (2, H, 3, len(model.quantiles))
    assert (out - plain).abs().max() > 1e-4


# ---------------------------------------------------------------- backends and export
def test_scan_backends_agree() -> None:
    """Issue 6 acceptance: reference vs chunked scan change the forecast by < 1e-4 relative."""
    torch.manual_seed(0)
    ref = SMamba(SMambaConfig.tiny(scan_backend="reference")).eval()
    randomise(ref)
    chunked = SMamba(SMambaConfig.tiny(scan_backend="chunked")).eval()
    chunked.load_state_dict(ref.state_dict())
    x = series(3, L, 40)  # 40 variate tokens: several scan chunks
    with torch.no_grad():
        a, b = ref(x), chunked(x)
    assert ((a - b).abs().max() / a.abs().max()) < 1e-4
    assert ((a - b).abs() / a.abs().clamp(min=1e-6)).max() < 1e-4


def test_export_traces_two_scan_chunks_and_one_variate() -> None:
    """An example inside one chunk would bake in a single chunk (the graph then fails for more
    variates than the chunk size), so ``tsfm.export`` traces two chunks plus one variate (with
    ``Dim.AUTO``: a named ``Dim`` trips the exporter's guards on the chunk padding)."""
    assert tiny(scan_backend="chunked", scan_chunk_size=8).capabilities.export_example_channels == 17


# ---------------------------------------------------------------- training
def test_a_log_is_exempt_from_weight_decay():
    """As in mamba_ssm: A_log (2-D) must not be decayed; ordinary weight matrices are."""
    from tsfm.train.module import ForecastingTask

    task = ForecastingTask(model=SMambaConfig.tiny().to_dict())
    decay, no_decay = task.parameter_groups()
    exempt = {id(p) for p in no_decay["params"]}
    a_logs = [p for n, p in task.model.named_parameters() if n.endswith("A_log")]
    assert a_logs and all(id(p) in exempt for p in a_logs)
    assert any(p.ndim == 2 for p in decay["params"])
