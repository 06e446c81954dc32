"""Fitting a history to a fixed context and cutting it into patches, with export-friendly ops.

Patching uses slicing + reshape rather than ``Tensor.unfold(-1, ...)``, which the legacy ONNX
exporter mistranslates (research/ecosystem.md §4.2); batch and channel sizes stay symbolic.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def fit_to_length(x: torch.Tensor, length: int, pad_value: float = 0.0) -> torch.Tensor:
    """Keep the last ``length`` steps of ``x [B, L, C]``, left-padding with ``pad_value`` if shorter."""
    steps = x.shape[1]
    if steps > length:
        return x[:, steps - length :, :]
    if steps < length:
        return F.pad(x, (0, 0, length - steps, 0), value=pad_value)
    return x


def num_patches(length: int, patch_length: int) -> int:
    """Number of non-overlapping patches in ``length`` steps (the oldest remainder is dropped)."""
    if patch_length < 1 or length < patch_length:
        raise ValueError(f"cannot cut {length} steps into patches of length {patch_length}")
    return length // patch_length


def patchify(x: torch.Tensor, patch_length: int) -> torch.Tensor:
    """``[B, L, C] -> [B, C, n, patch_length]`` non-overlapping patches, newest patch last.

    The oldest ``L % patch_length`` points do not fill a patch and are dropped.
    """
    n = num_patches(x.shape[1], patch_length)
    x = x[:, x.shape[1] - n * patch_length :, :]
    return x.transpose(1, 2).unflatten(-1, (n, patch_length))
