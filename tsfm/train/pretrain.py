"""``tsfm pretrain``: Hydra composes model + data + trainer configs, Lightning trains, the result
is saved as a checkpoint directory with a model card.

Run as ``tsfm pretrain experiment=smoke`` or ``python -m tsfm.train.pretrain experiment=smoke``
(the CLI re-executes the latter, so Lightning's DDP re-launch sees a module entry point).
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import hydra
from omegaconf import DictConfig, OmegaConf

from tsfm.errors import InputError

if TYPE_CHECKING:
    import lightning.pytorch as pl


def default_precision(accelerator: str) -> str:
    """``bf16-mixed`` on GPUs, ``32-true`` on CPU: trainer configs say ``${tsfm_precision:${.accelerator}}``."""
    name = str(accelerator).lower()
    if name == "auto":
        import torch

        name = "gpu" if torch.cuda.is_available() else "cpu"
    return "bf16-mixed" if name in ("gpu", "cuda") else "32-true"


OmegaConf.register_new_resolver("tsfm_precision", default_precision, replace=True)


def _held_out_note(corpus: dict | None) -> str:
    """``; dysts systems held out: ...`` for the systems no chaos generator of the recipe draws."""
    from tsfm.data.corpus_recipe import held_out_systems

    held = held_out_systems(corpus) if corpus else []
    return f"; dysts systems held out: {', '.join(held)}" if held else ""


def _data_note(corpus: dict | None, extra: list[str]) -> str:
    """What the weights saw: the corpus' synthetic generators and real sources, and user datasets."""
    if not corpus:
        return (", ".join(extra) if extra else "none") + "; no evaluation data"
    generators = corpus.get("generators", {})
    synthetic = sorted(n for n, g in generators.items() if g.get("kind", n) != "real")
    real = [f"{g['path']}/{{{', '.join(g.get('files') or ['*'])}}}"
            + (f" (series sharing values with {', '.join(g['exclude'])} dropped)" if g.get("exclude") else "")
            for n, g in generators.items() if g.get("kind", n) == "real"]
    note = (f"corpus `{corpus.get('name')}`, seed {corpus.get('seed')}: synthetic generators "
            f"{', '.join(synthetic) or 'none'}{_held_out_note(corpus)}")
    if real:
        note += "; real series " + "; ".join(real)
    if extra:
        note += " + " + ", ".join(extra)
    return note + "; no evaluation data"


def model_card(cfg: DictConfig, model: Any, steps: int, seconds: float, command: str, val_loss: float | None) -> str:
    """A model card recording exactly how the weights were produced."""
    import torch

    corpus = OmegaConf.to_container(cfg.data.get("corpus"), resolve=True) if cfg.data.get("corpus") else None
    extra = [str(e["path"]) for e in cfg.data.get("extra", [])]
    resumed = (f"; resumed from `{cfg.ckpt_path}` (the wall time counts this process only)"
               if cfg.get("ckpt_path") else "")
    lines = [
        f"# tsfm {model.config.family} checkpoint",
        "",
        f"- family: `{model.config.family}`; parameters: {model.num_parameters():,}",
        f"- context length {model.config.context_length}, prediction length {model.config.prediction_length}, "
        f"quantiles {list(model.config.quantiles)}",
        f"- command: `{command}`",
        f"- training data: {_data_note(corpus, extra)}",
        f"- steps: {steps}; batch size {cfg.data.batch_size}; wall time {seconds / 60:.1f} min"
        + (f"; started from the weights in `{cfg.init_from}`" if cfg.get("init_from") else "") + resumed,
        f"- hardware: {platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads, "
        f"accelerator `{cfg.trainer.get('accelerator', 'cpu')}`",
        f"- final validation loss (the family's training loss on windows of the training data, loss scale "
        f"`{cfg.optim.get('loss_scale', 'mad')}`): "
        + (f"{val_loss:.4f}" if val_loss is not None else "n/a"),
        "",
        "## Config",
        "```yaml",
        OmegaConf.to_yaml(cfg).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)


def keep_checkpoints_in_run_folder(trainer: pl.Trainer) -> None:
    """Point every checkpoint callback without a ``dirpath`` at ``<run>/checkpoints``: with a
    logger, Lightning would put them under the logger's ``version_<n>/`` folder, where a resume
    (``ckpt_path=<run>/checkpoints/last.ckpt``) does not look."""
    folder = str((Path(trainer.default_root_dir) / "checkpoints").resolve())
    for callback in trainer.checkpoint_callbacks:
        if callback.dirpath is None:
            callback.dirpath = folder


def check_resume(ckpt_path: str | None, trainer: pl.Trainer) -> None:
    """InputError when a resume has nothing to resume from: Lightning would only log a line and
    start again at step 0 (``last`` looks in ``<run>/checkpoints``, so the run folder must match)."""
    if not ckpt_path:
        return
    if str(ckpt_path) == "last":
        folders = [Path(c.dirpath) for c in trainer.checkpoint_callbacks if c.dirpath]
        if not any(any(f.glob("last*.ckpt")) for f in folders if f.is_dir()):
            where = ", ".join(str(f) for f in folders) or "this run (no checkpoint callback)"
            raise InputError(f"ckpt_path=last: no last.ckpt in {where}; resume with the same hydra.run.dir "
                             "as the run to continue, from a trainer that saves one (save_last)")
    elif str(ckpt_path) not in ("best", "hpc", "registry") and not Path(str(ckpt_path)).is_file():
        raise InputError(f"ckpt_path={ckpt_path}: no such checkpoint file")


def job_arguments() -> list[str]:
    """The command-line arguments that reproduce this job: in a sweep (``-m``), the job's own
    overrides (``seed=1``), not the sweep's (``seed=0,1``, which would train every job)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN:
        return list(HydraConfig.get().overrides.task)
    return sys.argv[1:]


def check_output_dir(output_dir: str | Path) -> Path:
    """The checkpoint folder's real path, refused (InputError) before training when it is a file or a
    folder of the user's files: only an empty folder or an earlier checkpoint is replaced."""
    from tsfm.hub import is_checkpoint_folder

    out = Path(os.path.realpath(os.path.expanduser(str(output_dir))))
    if out.exists() and not out.is_dir():
        raise InputError(f"output_dir={output_dir} is a file: give a folder for the checkpoint")
    if out.is_dir() and any(out.iterdir()) and not is_checkpoint_folder(out):
        raise InputError(f"output_dir={output_dir} holds files that are not a tsfm checkpoint: give a new folder "
                         "(only an empty one or an earlier checkpoint is replaced)")
    return out


def train(cfg: DictConfig) -> Path:
    """Build data, model and trainer from the config, fit, and save the checkpoint directory."""
    import torch

    from tsfm.train.numerics import flush_denormals

    flush_denormals()  # first: importing Lightning already starts worker threads
    if cfg.get("num_threads"):
        torch.set_num_threads(int(cfg.num_threads))

    import lightning.pytorch as pl

    from tsfm.atomic import replace_folder
    from tsfm.hub import save_pretrained
    from tsfm.train.datamodule import CorpusDataModule
    from tsfm.train.module import ForecastingTask

    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool):
        raise InputError(f"seed must be an integer, got {cfg.seed!r}")
    out = check_output_dir(cfg.output_dir)
    pl.seed_everything(cfg.seed, workers=True)
    model_cfg = OmegaConf.to_container(cfg.model, resolve=True)
    data = CorpusDataModule(
        context_length=model_cfg["context_length"],
        prediction_length=model_cfg["prediction_length"],
        seed=cfg.seed,
        **{k: v for k, v in cfg.data.items()},
    )
    task = ForecastingTask(model=model_cfg, **cfg.optim)
    if cfg.get("init_from"):
        # continue from a checkpoint directory's weights (a later training phase, or fine-tuning)
        from tsfm.hub import load_model

        start_model = load_model(cfg.init_from)
        if not task.model.config.fits_weights_of(start_model.config):
            raise InputError(f"init_from={cfg.init_from} has another model config than model=...: "
                             "pass the same model settings")
        task.model.load_state_dict(start_model.state_dict())
    trainer: pl.Trainer = hydra.utils.instantiate(cfg.trainer)
    keep_checkpoints_in_run_folder(trainer)
    check_resume(cfg.get("ckpt_path"), trainer)
    start = time.time()
    trainer.fit(task, datamodule=data, ckpt_path=cfg.get("ckpt_path"))
    seconds = time.time() - start
    if trainer.is_global_zero:
        val = trainer.callback_metrics.get("val_loss")
        command = cfg.get("command") or "tsfm pretrain " + " ".join(shlex.quote(a) for a in job_arguments())
        card = model_card(cfg, task.model, trainer.global_step, seconds, command,
                          float(val) if val is not None else None)
        replace_folder(out, lambda folder: save_pretrained(task.model.cpu(), folder, card=card))
        print(f"saved checkpoint to {out}", file=sys.stderr)
    return out


def export_checkpoint(ckpt_path: str | Path, output_dir: str | Path, card: str | None = None) -> Path:
    """Turn a Lightning checkpoint of ours (trusted, local) into a safe checkpoint directory."""
    import torch

    from tsfm.hub import save_pretrained
    from tsfm.train.module import ForecastingTask

    state = torch.load(str(ckpt_path), map_location="cpu", weights_only=False)
    task = ForecastingTask(**state["hyper_parameters"])
    task.load_state_dict(state["state_dict"])
    return save_pretrained(task.model.eval(), output_dir, card=card)


@hydra.main(version_base="1.3", config_path="pkg://tsfm.configs", config_name="pretrain")
def main(cfg: DictConfig) -> None:
    """Bad data or settings end in one line and exit 2, as every ``tsfm`` command (``TSFM_DEBUG=1``:
    the traceback); Hydra would print a traceback and exit 1."""
    try:
        train(cfg)
    except InputError as err:
        if os.environ.get("TSFM_DEBUG"):
            raise
        print(f"error: {str(err).splitlines()[0] if str(err) else 'bad input'}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
