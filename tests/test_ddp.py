"""Scale-out: rank-disjoint resumable window streams, a 2-process CPU DDP run, exact mid-epoch resume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from tsfm.data.sampling import Source, TrainingWindows, WindowLoader, WindowSpec

REPO = Path(__file__).resolve().parents[1]

# records, per rank, a fingerprint of every training window it trained on
PROBE = textwrap.dedent('''
    import json, os
    import lightning.pytorch as pl
    import torch

    class RecordWindows(pl.Callback):
        def __init__(self, out_dir):
            self.out_dir, self.rows = out_dir, []

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            values = torch.nan_to_num(batch["past_values"], nan=0.0).double()
            self.rows += [round(float(v), 6) for v in values.sum(dim=(1, 2))]

        def on_train_end(self, trainer, pl_module):
            path = os.path.join(self.out_dir, f"rank{trainer.global_rank}.json")
            with open(path, "w") as f:
                json.dump({"world": trainer.world_size, "steps": trainer.global_step, "windows": self.rows,
                           "backend": getattr(trainer.strategy, "process_group_backend", None)}, f)
''')


def _sources() -> list[Source]:
    """Long random series: two independent draws practically never pick the same window."""
    rng = np.random.default_rng(0)
    return [Source.from_entries([{"target": rng.normal(size=50_000).astype(np.float32), "freq": "h"}
                                 for _ in range(8)])]


def _batches(loader) -> list[np.ndarray]:
    return [torch.nan_to_num(b["past_values"], nan=-1.0).numpy() for b in loader]


def _loader(workers: int = 0, rank: int = 0, world: int = 1, n: int = 70) -> WindowLoader:
    windows = TrainingWindows(_sources(), WindowSpec(32, 8), n, seed=3, rank=rank, world_size=world)
    return WindowLoader(windows, batch_size=8, num_workers=workers)


def test_batches_arrive_in_index_order_whatever_the_worker_count():
    single, double = _batches(_loader(0)), _batches(_loader(2))
    assert len(single) == len(double) == 9  # 70 windows in batches of 8
    for a, b in zip(single, double):
        np.testing.assert_array_equal(a, b)


def test_ranks_draw_disjoint_windows():
    rows = [{tuple(w.ravel().round(5)) for b in _batches(_loader(rank=r, world=2)) for w in b} for r in (0, 1)]
    assert len(rows[0]) == len(rows[1]) == 70 and not rows[0] & rows[1]


def test_loader_state_resumes_exactly_mid_epoch():
    full = _batches(_loader())
    first = _loader()
    it = iter(first)
    for _ in range(3):
        next(it)
    state = first.state_dict()
    assert state == {"epoch": 0, "next_index": 24}
    resumed = _loader()
    resumed.load_state_dict(state)
    rest = _batches(resumed)
    assert len(rest) == len(full) - 3
    for a, b in zip(rest, full[3:]):
        np.testing.assert_array_equal(a, b)
    # the position applies to one iteration only; a finished epoch hands over to the next one
    assert len(_batches(resumed)) == len(full)
    assert resumed.state_dict() == {"epoch": 1, "next_index": 0}


def test_trainer_configs_compose():
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate
    from torch.distributed.fsdp.wrap import ModuleWrapPolicy

    import tsfm.train.pretrain  # noqa: F401  (registers the tsfm_precision resolver)
    from tsfm.nn.mixer import MixerLayer

    with initialize_config_module(config_module="tsfm.configs", version_base="1.3"):
        ddp = compose("pretrain", overrides=["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2",
                                             "trainer.accumulate_grad_batches=4"])
        fsdp = compose("pretrain", overrides=["trainer=fsdp"])
        gpu_ddp = compose("pretrain", overrides=["trainer=ddp", "trainer.accelerator=gpu"])
    assert ddp.trainer.precision == "32-true" and gpu_ddp.trainer.precision == "bf16-mixed"
    assert ddp.trainer.accumulate_grad_batches == 4 and ddp.trainer.use_distributed_sampler is False
    assert ddp.trainer.callbacks[0].save_last is True  # what `ckpt_path=last` resumes from
    strategy = instantiate(ddp.trainer.strategy)
    assert type(strategy).__name__ == "DDPStrategy" and strategy._ddp_kwargs == {"find_unused_parameters": False}
    sharded = instantiate(fsdp.trainer.strategy)
    assert type(sharded).__name__ == "FSDPStrategy" and fsdp.trainer.precision == "bf16-mixed"
    policy = sharded.kwargs["auto_wrap_policy"]
    assert isinstance(policy, ModuleWrapPolicy) and policy._module_classes == {MixerLayer}


def _pretrain(args: list[str], probe_dir: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(probe_dir), str(REPO)])}
    command = [sys.executable, "-m", "tsfm.cli", "pretrain", "experiment=smoke", "num_threads=1", *args]
    result = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


@pytest.fixture()
def probe_dir(tmp_path: Path) -> Path:
    (tmp_path / "tsfm_probe.py").write_text(PROBE)
    return tmp_path


def test_ddp_cpu_two_ranks_train_on_distinct_windows(probe_dir, tmp_path):
    run = tmp_path / "ddp"
    _pretrain(["trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.max_steps=4",
               f"hydra.run.dir={run}", f"+trainer.callbacks=[{{_target_:tsfm_probe.RecordWindows,out_dir:'{run}'}}]"],
              probe_dir)
    ranks = [json.loads((run / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert all(r["world"] == 2 and r["steps"] == 4 and r["backend"] == "gloo" for r in ranks)
    windows = [r["windows"] for r in ranks]
    assert len(windows[0]) == len(windows[1]) == 4 * 32  # 4 steps of batch 32 on each rank
    # separate streams: the same window on both ranks only by chance (the smoke corpus is small)
    assert len(set(windows[0]) & set(windows[1])) <= 0.05 * len(windows[0])
    assert (run / "checkpoint" / "model.safetensors").is_file()


def test_resume_from_mid_epoch_checkpoint_matches_uninterrupted_run(probe_dir, tmp_path):
    """8 steps straight vs. the same run resumed from its step-4 checkpoint: same windows, same weights."""
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    every4 = (f"{{_target_:lightning.pytorch.callbacks.ModelCheckpoint,dirpath:'{full}/ck',"
              "every_n_train_steps:4,save_top_k:-1}")
    _pretrain(["trainer.max_steps=8", f"hydra.run.dir={full}",
               f"+trainer.callbacks=[{every4},{{_target_:tsfm_probe.RecordWindows,out_dir:'{full}'}}]"], probe_dir)
    mid = full / "ck" / "epoch=0-step=4.ckpt"
    state = torch.load(mid, map_location="cpu", weights_only=False)
    assert state["loops"]["fit_loop"]["state_dict"]["combined_loader"] == [{"epoch": 0, "next_index": 128}]
    _pretrain(["trainer.max_steps=8", f"hydra.run.dir={resumed}", f"ckpt_path='{mid}'",
               f"+trainer.callbacks=[{{_target_:tsfm_probe.RecordWindows,out_dir:'{resumed}'}}]"], probe_dir)
    seen_full = json.loads((full / "rank0.json").read_text())["windows"]
    seen_resumed = json.loads((resumed / "rank0.json").read_text())["windows"]
    assert seen_resumed == seen_full[4 * 32:]  # the resumed run trains on exactly the remaining windows
    a = load_file(str(full / "checkpoint" / "model.safetensors"))
    b = load_file(str(resumed / "checkpoint" / "model.safetensors"))
    assert a.keys() == b.keys()
    for key in a:  # dropout is on in the smoke model: the RNG state is restored too
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=1e-7)


def test_resume_from_end_of_epoch_checkpoint_matches_uninterrupted_run(probe_dir, tmp_path):
    """Two epochs straight vs. resumed from the first epoch's checkpoint (what the cpu trainer saves):
    the next epoch's loader must not draw from the RNG whose state the checkpoint restores."""
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    each_epoch = f"{{_target_:lightning.pytorch.callbacks.ModelCheckpoint,dirpath:'{full}/ck',save_top_k:-1}}"
    _pretrain(["trainer.max_epochs=2", f"hydra.run.dir={full}", f"+trainer.callbacks=[{each_epoch}]"], probe_dir)
    first = full / "ck" / "epoch=0-step=20.ckpt"
    _pretrain(["trainer.max_epochs=2", f"hydra.run.dir={resumed}", f"ckpt_path='{first}'"], probe_dir)
    a = load_file(str(full / "checkpoint" / "model.safetensors"))
    b = load_file(str(resumed / "checkpoint" / "model.safetensors"))
    for key in a:  # dropout is on in the smoke model
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
