"""`tsfm pretrain experiment=smoke`: the whole training path (Hydra -> corpus -> Lightning -> checkpoint)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tsfm.hub import load_model


def test_smoke_pretraining_produces_a_loadable_checkpoint(tmp_path):
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    cmd = [sys.executable, "-m", "tsfm.train.pretrain", "experiment=smoke", f"hydra.run.dir={run_dir}",
           f"data.cache_dir={cache}", "trainer.enable_progress_bar=false"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    checkpoint = run_dir / "checkpoint"
    model = load_model(checkpoint)
    assert model.config.context_length == 64 and model.config.prediction_length == 16
    card = (checkpoint / "README.md").read_text()
    assert "experiment=smoke" in card and "steps: 20" in card
    assert "no evaluation data" in card and "synthetic generators" in card
    # Lightning's files: checkpoints in the run folder (where a resume looks), the loss curve beside them
    assert list((run_dir / "checkpoints").glob("*.ckpt"))
    curve = (run_dir / "logs" / "version_0" / "metrics.csv").read_text().splitlines()
    assert curve[0].split(",")[:3] == ["epoch", "step", "train_loss"] and len(curve) >= 4
    # trained weights differ from a fresh initialisation and forecast finite values
    fresh = type(model)(model.config)
    assert any(not torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))
    x = torch.randn(4, 64, 1).cumsum(1)
    out = model(x)
    assert out.shape == (4, 16, 1, 9) and torch.isfinite(out).all()
    assert np.all(np.diff(out.detach().numpy(), axis=-1) >= 0)


def test_a_later_phase_may_switch_a_weight_free_setting_but_not_the_model(tmp_path):
    """init_from continues a checkpoint with TTM's `anchor_last` switched on (it adds no weights);
    a setting that changes the weights is refused."""
    cache = tmp_path / "cache"

    def pretrain(run_dir, *overrides):
        cmd = [sys.executable, "-m", "tsfm.train.pretrain", "experiment=smoke", f"hydra.run.dir={run_dir}",
               f"data.cache_dir={cache}", *overrides]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300)

    first = pretrain(tmp_path / "a")
    assert first.returncode == 0, first.stderr[-3000:]
    start = tmp_path / "a" / "checkpoint"
    second = pretrain(tmp_path / "b", f"init_from={start}", "+model.anchor_last=true")
    assert second.returncode == 0, second.stderr[-3000:]
    before, after = load_model(start), load_model(tmp_path / "b" / "checkpoint")
    assert after.config.anchor_last and not before.config.anchor_last
    assert not torch.equal(before.head.proj.weight, after.head.proj.weight)
    refused = pretrain(tmp_path / "c", f"init_from={start}", "model.d_model=32")
    assert refused.returncode != 0 and "another model config" in refused.stderr


EXPERIMENTS = Path(__file__).resolve().parents[1] / "configs" / "experiment"


@pytest.mark.parametrize("name", sorted(p.stem for p in EXPERIMENTS.glob("*.yaml")))
def test_every_experiment_config_composes(name):
    """Each shipped recipe composes (defaults chain, overrides, keys the model and data accept)."""
    from hydra import compose, initialize_config_module

    from tsfm.models import get_family

    with initialize_config_module(config_module="tsfm.configs", version_base="1.3"):
        cfg = compose(config_name="pretrain", overrides=[f"experiment={name}"])
    model = OmegaConf.to_container(cfg.model, resolve=True)
    config_cls, _ = get_family(model["family"]).load()
    assert config_cls.from_dict(model).context_length == model["context_length"]
    assert cfg.data.batch_size > 0 and cfg.data.windows_per_epoch >= cfg.data.batch_size
    assert cfg.data.corpus.generators


def test_flush_denormals_makes_denormal_arithmetic_zero():
    """After ``flush_denormals`` (as ``train`` calls it: before the thread pool and Lightning)
    elementwise and matmul results below float32's normal range are zero; without it they are not."""
    if not torch.set_flush_denormal(False):
        pytest.skip("this CPU cannot flush denormals")
    script = (
        "import torch\n"
        "from tsfm.train.numerics import flush_denormals\n"
        "assert flush_denormals(); torch.set_num_threads(2)\n"
        "import lightning.pytorch\n"
        "tiny = torch.full((256, 256), 1e-39)\n"
        "print(float((tiny * 1.0).abs().max()), float((tiny @ torch.eye(256)).abs().max()))\n"
    )
    runs = {}
    for name, code in (("flushed", script), ("plain", script.replace("assert flush_denormals(); ", ""))):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr[-2000:]
        runs[name] = [float(v) for v in result.stdout.split()]
    assert runs["flushed"] == [0.0, 0.0]
    assert len(runs["plain"]) == 2 and all(v > 0 for v in runs["plain"])


def test_a_resume_with_nothing_to_resume_from_is_refused(tmp_path):
    """``ckpt_path=last`` in a run folder without last.ckpt (a mistyped hydra.run.dir) would start
    again at step 0 behind one log line; it is an input error instead, as a missing file is."""
    from types import SimpleNamespace

    from tsfm.errors import InputError
    from tsfm.train.pretrain import check_resume

    folder = tmp_path / "checkpoints"
    trainer = SimpleNamespace(checkpoint_callbacks=[SimpleNamespace(dirpath=str(folder))])
    with pytest.raises(InputError, match="no last.ckpt in"):
        check_resume("last", trainer)
    folder.mkdir()
    (folder / "epoch=0-step=10.ckpt").write_bytes(b"")  # a run that kept no last.ckpt
    with pytest.raises(InputError, match="no last.ckpt in"):
        check_resume("last", trainer)
    (folder / "last.ckpt").write_bytes(b"")
    check_resume("last", trainer)
    check_resume(None, trainer)
    with pytest.raises(InputError, match="no such checkpoint file"):
        check_resume(str(tmp_path / "missing.ckpt"), trainer)


@pytest.mark.parametrize("override, message", [
    ("data.batch_size=0", "data.batch_size must be an integer >= 1, got 0"),
    ("data.num_workers=-1", "data.num_workers must be an integer >= 0"),
    ("seed=null", "seed must be an integer, got None"),
    ("optim.loss_scale=foo", "unknown loss scale 'foo'"),
    ("model=itransformer", "unknown ITransformerConfig fields"),
    ("data.extra=[{path: datasets/samples, wieght: 1}]", "unknown key(s) wieght"),
    ("data.extra=[{path: datasets/samples, weight: -0.5}]", "weight must be a number >= 0, got -0.5"),
])
def test_settings_that_cannot_work_are_one_line_and_exit_2(tmp_path, override, message):
    cmd = [sys.executable, "-m", "tsfm.train.pretrain", "experiment=smoke", f"hydra.run.dir={tmp_path / 'run'}",
           f"data.cache_dir={tmp_path / 'cache'}", "data.corpus=null",
           "data.extra=[{path: datasets/samples}]", override]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=Path(__file__).parents[1])
    assert result.returncode == 2 and message in result.stderr, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()  # Lightning's log lines may come first ("Seed set to 0")
    assert lines[-1].startswith("error:") and "Traceback" not in result.stderr
    assert not (tmp_path / "run" / "checkpoint").exists()


def test_a_folder_of_the_users_files_is_not_replaced_by_a_checkpoint(tmp_path):
    from tsfm.errors import InputError
    from tsfm.train.pretrain import check_output_dir

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text("{}")
    (mine / "notes.txt").write_text("keep")
    with pytest.raises(InputError, match="holds files that are not a tsfm checkpoint"):
        check_output_dir(mine)
    (tmp_path / "file").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        check_output_dir(tmp_path / "file")
    (tmp_path / "link").symlink_to(tmp_path / "new")  # a link is followed: the checkpoint goes where it points
    assert check_output_dir(tmp_path / "link") == (tmp_path / "new").resolve()
    (mine / "model.safetensors").write_bytes(b"")  # an earlier checkpoint: replaced
    assert check_output_dir(mine) == mine.resolve()


def test_a_sweep_jobs_card_records_the_command_of_that_job(tmp_path):
    """`-m seed=0,1` runs two jobs; each card's command reruns its own job, not the whole sweep."""
    cmd = [sys.executable, "-m", "tsfm.train.pretrain", "-m", "experiment=smoke", "seed=0,1",
           f"hydra.sweep.dir={tmp_path / 'sweep'}", f"data.cache_dir={tmp_path / 'cache'}", "trainer.max_steps=2"]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    card = (tmp_path / "sweep" / "1" / "checkpoint" / "README.md").read_text()
    assert "seed=1" in card and "seed=0,1" not in card and "experiment=smoke" in card
