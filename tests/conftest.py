"""Shared fixtures: a tiny TTM checkpoint (random weights, for API behaviour) and small frames."""

from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path

# Triton kernels run under the CPU interpreter in tests. The switch must be set before anything
# imports triton (Lightning and torch's exporter may, at import time), so it lives here.
# TSFM_TEST_DEVICE=cuda (tests/test_kernels_triton.py) compiles them on a GPU instead.
os.environ.setdefault("TRITON_INTERPRET", "1" if os.environ.get("TSFM_TEST_DEVICE", "cpu") == "cpu" else "0")

import numpy as np
import pandas as pd
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def eval_dir() -> Path | None:
    """The visible eval set: ../shared/data/eval beside the repo (CI has it there)."""
    for candidate in (REPO.parent / "shared" / "data" / "eval", Path("/work/shared/data/eval")):
        if (candidate / "manifest.json").is_file():
            return candidate
    return None


@pytest.fixture(scope="module")
def one_torch_thread():
    """Two shared cores: a second intra-op thread makes tiny-model steps up to 100x slower here."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory) -> Path:
    """A tiny TTM (context 64, horizon 16) saved as a checkpoint directory."""
    from tsfm.hub import save_pretrained
    from tsfm.models.ttm import TTM, TTMConfig

    torch.manual_seed(0)
    model = TTM(TTMConfig.tiny()).eval()
    return save_pretrained(model, tmp_path_factory.mktemp("ckpt") / "tiny-ttm")


def seasonal_walks(batch: int, length: int, channels: int, seed: int = 0) -> torch.Tensor:
    """[batch, length, channels] random walks with a season of 8 steps, level ~50 (model tests)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(length, dtype=torch.float32)[None, :, None]
    season = torch.sin(2 * torch.pi * t / 8) * (1 + torch.rand(batch, 1, channels, generator=g))
    return 50 + season + torch.randn(batch, length, channels, generator=g).cumsum(1) * 0.3


def randomise(module: torch.nn.Module, seed: int = 1, scale: float = 0.3) -> None:
    """Perturb every parameter (zero-initialised outputs, unit norms) so no init hides a wrong term."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g, dtype=p.dtype))


def monthly_frame(n_series: int = 3, length: int = 60, seed: int = 0) -> pd.DataFrame:
    """Long frame of seasonal monthly series with different levels and lengths."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_series):
        t = np.arange(length - 5 * i)
        y = 100 + 10 * i + 5 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.5, len(t))
        rows.append(pd.DataFrame({"unique_id": f"s{i}", "ds": pd.date_range("2010-01-01", periods=len(t), freq="MS"),
                                  "y": y}))
    return pd.concat(rows, ignore_index=True)


def assert_checkpoint_round_trip(model: torch.nn.Module, directory: Path, *inputs, **kwargs) -> torch.nn.Module:
    """``save_pretrained`` then ``load_model``: same class and config, eval mode, bit-identical outputs."""
    from tsfm.hub import load_model, save_pretrained

    model.eval()
    loaded = load_model(save_pretrained(model, directory))
    assert type(loaded) is type(model) and loaded.config == model.config and not loaded.training
    with torch.no_grad():
        torch.testing.assert_close(loaded(*inputs, **kwargs), model(*inputs, **kwargs), rtol=0, atol=0)
    return loaded


@pytest.fixture()
def read_only_folder(tmp_path, monkeypatch):
    """A folder where no file can be created (as on a read-only mount, whoever runs the tests)."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    create = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve() == folder.resolve():
            raise OSError(errno.EROFS, "Read-only file system")
        return create(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    return folder
