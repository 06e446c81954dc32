"""CPU floating-point settings for training."""

from __future__ import annotations


def flush_denormals() -> bool:
    """Compute denormal floats as zero on this thread and the threads it starts from now on (False
    where the CPU cannot). A trained network's gradients underflow into denormals, which x86
    cores process many times slower (``benchmarks/results/train_step.md``); values below 1e-38
    do not move the weights. It stays on for the process, so only commands that own their process
    (``tsfm pretrain``, ``tsfm finetune``) set it, before torch starts its thread pool: threads
    started earlier keep computing denormals."""
    import torch

    return bool(torch.set_flush_denormal(True))
