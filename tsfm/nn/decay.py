"""Which parameters AdamW must not decay: the layer that owns a parameter says so, training asks.

The mark is mamba_ssm's ``_no_weight_decay`` attribute on the parameter, so checkpoints and
optimiser recipes written for mamba_ssm read the same parameters as exempt.
"""

from __future__ import annotations

from torch import nn

MARK = "_no_weight_decay"


def exempt_from_weight_decay(param: nn.Parameter) -> nn.Parameter:
    """Mark ``param`` as one AdamW leaves undecayed; returns it."""
    setattr(param, MARK, True)
    return param


def decays(name: str, param: nn.Parameter) -> bool:
    """Whether AdamW decays ``param`` (named ``name`` in its model): not vectors, norms, embeddings
    or parameters their layer exempted."""
    return not (param.ndim < 2 or "norm" in name or "embedding" in name or getattr(param, MARK, False))
