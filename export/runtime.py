"""tsfm edge runtime: forecasts from an exported ``.onnx`` file with numpy + onnxruntime only.

This file is self-contained on purpose: copy it next to the model on a device that has
``numpy`` and ``onnxruntime`` (no torch, no pandas, no tsfm) and run::

    import runtime
    model = runtime.load("ttm-int8.onnx", num_threads=1)
    q = model.predict(history, freq="h")          # [batch, horizon, channels, quantiles]
    median = q[..., model.quantiles.index(0.5)]

It does what the tsfm package does around the model, so that both give the same numbers:

- inputs ``[L]``, ``[B, L]`` or ``[B, L, C]``; the last ``context_length`` steps are kept, shorter
  histories are left-padded with NaN and the padding is marked unobserved;
- NaN always counts as unobserved (also where ``past_mask`` says 1); the graph scales the raw
  values itself;
- ``freq`` is a pandas alias (``"h"``, ``"MS"``, ``"QS-OCT"``, ``"15min"``...) mapped to the
  resolution token like ``tsfm.data.freq.freq_token`` (table below), or a token id;
- horizons past the graph's own are rolled out as ``tsfm.inference.forecast_arrays`` does:
  every quantile path is fed back as context and the Q x Q values per step are reduced to
  empirical quantiles; quantiles are sorted at the end;
- a channel whose observed history is one repeated value gets exactly that value as forecast
  (``tsfm.inference.pin_constants``);
- a channel whose observed context has no negative value gets no negative forecast
  (``tsfm.inference.floor_at_zero``; ``predict(..., nonnegative=False)`` turns it off, ``True``
  floors every channel);
- ``predict(..., log_scale=True)`` forecasts every channel whose observed context is strictly
  positive (and spans at most a factor of ``LOG_SCALE_MAX_RATIO``) in log space and takes the
  quantiles back with ``exp``, bounded as ``tsfm.inference.from_log_space`` bounds them. The ``ttm`` suite does this on seasonal data by
  default; an exported graph is one checkpoint, so here the caller decides (off by default, as for
  ``Forecaster(model="x.onnx")``).

A file that is not a tsfm export (truncated, another tool's ONNX, wrong inputs) raises
``ModelFileError`` (a ``ValueError``) with one line saying what is wrong. ``predict`` raises
``ValueError`` (one line) for input it cannot forecast instead of returning zeros or NaN: a
series with no observed value in its context, infinite values, magnitudes float32 cannot hold
(above ~3.4e38 or nonzero below ~1.2e-38: divide by a constant and multiply the forecast back),
and a forecast that overflowed inside the graph.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

__all__ = ["ModelFileError", "EdgeModel", "load", "freq_name", "FORMAT_VERSION"]

FORMAT_VERSION = 1  # bumped when the metadata or the graph signature changes incompatibly
DEFAULT_BATCH_SIZE = 256
REQUIRED_KEYS = ("tsfm.format_version", "tsfm.context_length", "tsfm.horizon", "tsfm.quantiles", "tsfm.inputs")


class ModelFileError(ValueError):
    """The file cannot serve as a tsfm edge model; the message is one line with the fix."""


# ----------------------------------------------------------------------------- frequencies
# pandas offset base alias (upper case) -> resolution base, as tsfm.data.freq reads offsets.
_FREQ_BASES = {
    "S": "s", "T": "min", "MIN": "min", "H": "h", "D": "D", "B": "B", "W": "W",
    "M": "M", "ME": "M", "MS": "M", "Q": "Q", "QE": "Q", "QS": "Q",
    "Y": "Y", "YE": "Y", "YS": "Y", "A": "Y", "AS": "Y",
}
# pandas aliases that are valid but have no resolution token (token 0, "oov").
_FREQ_OOV = {
    "L", "U", "US", "N", "NS", "C", "BH", "CBH", "BM", "BME", "BMS", "CBM", "CBME", "CBMS", "SM", "SME",
    "SMS", "BQ", "BQE", "BQS", "BA", "BAS", "BY", "BYE", "BYS", "WOM",
}
# (base, multiple) -> resolution name, e.g. 60 minutes is hourly, 3 months quarterly.
_FREQ_MULTIPLES = {
    ("s", 60): "min", ("min", 60): "h", ("min", 5): "5min", ("min", 10): "10min", ("min", 15): "15min",
    ("min", 30): "30min", ("h", 24): "D", ("D", 7): "W", ("M", 3): "Q", ("M", 12): "Y", ("Q", 4): "Y",
}
_ALIAS = re.compile(r"^\+?(\d*)([A-Za-z]+)(?:-[A-Za-z0-9]+)?$")
_OOV_NUMBER = re.compile(r"^[+-]?\d*\.?\d+[A-Za-z]+(?:-[A-Za-z0-9]+)?$")  # "1.5h", "-1D": valid, no token


def freq_name(alias: str) -> str:
    """Resolution name of a pandas frequency alias (``"QS-OCT"`` -> ``"Q"``; ``""`` when it has none).

    Mirrors ``tsfm.data.freq.canonical_name`` without pandas; an alias that pandas would not
    parse either raises ``ValueError``.
    """
    text = str(alias).strip()
    match = _ALIAS.match(text)
    if match is None:
        if _OOV_NUMBER.match(text):
            return ""
        raise ValueError(f"unknown frequency alias '{alias}': use a pandas alias such as h, D, W, MS, QS, YS, 15min")
    count, base = int(match.group(1) or 1), match.group(2)
    if base.lower() == "ms" and base != "MS":  # "ms" is milliseconds, "MS" month start
        return ""
    key = base.upper()
    if key in _FREQ_OOV or count < 1:
        return ""
    if key not in _FREQ_BASES:
        raise ValueError(f"unknown frequency alias '{alias}': use a pandas alias such as h, D, W, MS, QS, YS, 15min")
    name = _FREQ_BASES[key]
    if count == 1:
        return name
    return _FREQ_MULTIPLES.get((name, count), "")


# ----------------------------------------------------------------------------- the model
class EdgeModel:
    """An exported tsfm model: ``predict`` turns histories into quantile forecasts.

    Attributes come from the file's metadata: ``context_length`` (steps the graph sees),
    ``horizon`` (steps one graph run forecasts), ``default_horizon`` (what ``predict`` returns
    without ``horizon=``; longer than ``horizon`` means a rollout), ``quantiles`` (levels of the
    last output axis), ``freq_vocab`` (resolution names by token id), ``channels`` (None when any
    channel count works), ``family``, ``quantization``, ``version`` and ``metadata`` (all props).
    """

    def __init__(self, session: ort.InferenceSession, path: str, batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self.session = session
        self.path = path
        self.batch_size = int(batch_size)
        self.metadata = dict(session.get_modelmeta().custom_metadata_map)
        self._read_metadata()

    def _read_metadata(self) -> None:
        meta, where = self.metadata, f"'{self.path}'"
        missing = [k for k in REQUIRED_KEYS if k not in meta]
        if missing:
            raise ModelFileError(
                f"{where} is an ONNX model but not a tsfm export (no {', '.join(missing)} metadata): "
                "export it with `tsfm export` or tsfm.export.export_onnx"
            )
        try:
            version = int(meta["tsfm.format_version"])
            self.context_length = int(meta["tsfm.context_length"])
            self.horizon = int(meta["tsfm.horizon"])
            self.default_horizon = int(meta.get("tsfm.default_horizon", self.horizon))
            self.quantiles = tuple(float(q) for q in json.loads(meta["tsfm.quantiles"]))
            self.freq_vocab = tuple(json.loads(meta.get("tsfm.freq_vocab", '["oov"]')))
            self.input_names = tuple(json.loads(meta["tsfm.inputs"]))
            channels = meta.get("tsfm.channels", "dynamic")
            self.channels = None if channels == "dynamic" else int(channels)
        except (ValueError, TypeError) as err:
            raise ModelFileError(f"{where} has unreadable tsfm metadata ({err}): re-export it") from None
        if version > FORMAT_VERSION:
            raise ModelFileError(
                f"{where} uses tsfm export format {version}, this runtime reads up to {FORMAT_VERSION}: "
                "copy the runtime.py of the tsfm version that exported it"
            )
        self.family = meta.get("tsfm.family", "")
        self.quantization = meta.get("tsfm.quantization", "none")
        self.version = meta.get("tsfm.version", "")
        actual = tuple(i.name for i in self.session.get_inputs())
        if actual != self.input_names or self.input_names[:2] != ("past_values", "past_mask"):
            raise ModelFileError(
                f"{where} has graph inputs {list(actual)} but its metadata says {list(self.input_names)}: "
                "the file was edited after export; re-export it"
            )
        if 0.5 not in self.quantiles or self.context_length < 1 or self.horizon < 1:
            raise ModelFileError(f"{where} has inconsistent tsfm metadata (quantiles, context, horizon): re-export it")

    @property
    def uses_freq(self) -> bool:
        """Whether the graph takes a resolution token (``freq_id``)."""
        return "freq_id" in self.input_names

    def __repr__(self) -> str:
        return (f"EdgeModel('{self.path}', family={self.family!r}, context_length={self.context_length}, "
                f"horizon={self.horizon}, quantiles={list(self.quantiles)}, quantization={self.quantization!r})")

    # ------------------------------------------------------------------------- inputs
    def freq_id(self, freq: str | int | None) -> int:
        """Token id of a frequency alias (or a token id, checked); 0 when unknown or None."""
        if freq is None:
            return 0
        if isinstance(freq, (int, np.integer)):
            if not 0 <= int(freq) < len(self.freq_vocab):
                raise ValueError(f"freq token {freq} is outside the model's vocabulary 0..{len(self.freq_vocab) - 1}")
            return int(freq)
        name = freq_name(str(freq))
        return self.freq_vocab.index(name) if name in self.freq_vocab else 0

    def _freq_ids(self, freq, batch: int) -> np.ndarray:
        if freq is None or isinstance(freq, (str, int, np.integer)):
            return np.full(batch, self.freq_id(freq), dtype=np.int64)
        ids = [self.freq_id(f) for f in freq]
        if len(ids) != batch:
            raise ValueError(f"freq has {len(ids)} entries for a batch of {batch}: give one alias or one per series")
        return np.asarray(ids, dtype=np.int64)

    def _as_windows(self, past_values, past_mask) -> tuple[np.ndarray, np.ndarray]:
        """``[L] / [B, L] / [B, L, C]`` -> float32 ``[B, L, C]`` values and mask (NaN = unobserved)."""
        values = _checked_float32(past_values)
        if values.ndim not in (1, 2, 3):
            raise ValueError(f"past_values must be [time], [batch, time] or [batch, time, channels], got shape {values.shape}")
        shape = values.shape
        if values.ndim == 1:
            values = values[None, :, None]
        elif values.ndim == 2:
            values = values[:, :, None]
        if past_mask is None:
            mask = np.ones(values.shape, dtype=np.float32)
        else:
            mask = np.asarray(past_mask, dtype=np.float32)
            if mask.shape != shape:
                raise ValueError(f"past_mask has shape {mask.shape} but past_values has {shape}: give one flag per value")
            mask = mask.reshape(values.shape)
        if values.shape[1] < 1:
            raise ValueError("past_values has no time steps: give at least one past value per series")
        mask = ((mask > 0) & ~np.isnan(values)).astype(np.float32)
        if self.channels is not None and values.shape[2] != self.channels:
            raise ValueError(f"this model mixes exactly {self.channels} channels but got {values.shape[2]}")
        return values, mask

    def fit_context(self, values: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keep the last ``context_length`` steps; left-pad shorter windows with NaN (mask 0)."""
        length, steps = self.context_length, values.shape[1]
        if steps >= length:
            return np.ascontiguousarray(values[:, steps - length:]), np.ascontiguousarray(mask[:, steps - length:])
        pad = ((0, 0), (length - steps, 0), (0, 0))
        return np.pad(values, pad, constant_values=np.nan), np.pad(mask, pad, constant_values=0.0)

    # ------------------------------------------------------------------------- running
    def forecast_step(self, past_values: np.ndarray, past_mask: np.ndarray, freq_id: np.ndarray) -> np.ndarray:
        """One graph horizon for ``[N, L', C]`` windows (any ``L'``), in batches: ``[N, horizon, C, Q]``.

        No rollout and no constant pinning: the building block ``predict`` (and tsfm's own
        rollout) uses. NaN in ``past_values`` counts as unobserved.
        """
        values, mask = self.fit_context(np.asarray(past_values, np.float32), np.asarray(past_mask, np.float32))
        mask = np.where(np.isnan(values), 0.0, mask).astype(np.float32)
        freq_id = np.asarray(freq_id, dtype=np.int64).reshape(-1)
        n, c, q = values.shape[0], values.shape[2], len(self.quantiles)
        if n == 0:
            return np.zeros((0, self.horizon, c, q), dtype=np.float32)
        outputs = []
        for start in range(0, n, self.batch_size):
            stop = start + self.batch_size
            feeds = {"past_values": values[start:stop], "past_mask": mask[start:stop]}
            if self.uses_freq:
                feeds["freq_id"] = freq_id[start:stop]
            outputs.append(self.session.run(None, feeds)[0])
        return np.concatenate(outputs, axis=0)

    def predict(
        self,
        past_values,
        past_mask=None,
        freq: str | int | Sequence[str | int] | None = None,
        horizon: int | None = None,
        nonnegative: bool | None = None,
        log_scale: bool = False,
    ) -> np.ndarray:
        """Quantile forecasts ``[B, horizon, C, Q]`` (levels in ``self.quantiles``).

        ``past_values``: ``[L]``, ``[B, L]`` or ``[B, L, C]`` raw values, NaN where missing;
        ``past_mask``: same shape, 1 = observed (optional); ``freq``: one alias or token for the
        batch, or one per series; ``horizon``: steps (default ``default_horizon``), rolled out
        past the graph's ``horizon``; ``nonnegative``: floor at zero the channels whose context
        has no negative value (None), every channel (True) or none (False); ``log_scale``: forecast
        strictly positive channels in log space (the ``ttm`` suite's choice on seasonal data).
        """
        if nonnegative not in (None, True, False):
            raise ValueError(f"nonnegative must be None, True or False, got {nonnegative!r}")
        horizon = self.default_horizon if horizon is None else int(horizon)
        if horizon < 1:
            raise ValueError(f"horizon must be a positive integer, got {horizon}")
        values, mask = self._as_windows(past_values, past_mask)
        values, mask = self.fit_context(values, mask)
        empty = np.argwhere(~(mask > 0).any(axis=1))
        if empty.size:
            b, c = (int(x) for x in empty[0])
            raise ValueError(f"series {b} (channel {c}) has no observed value in its last {self.context_length} steps "
                             "(all NaN or masked): drop it or give it history")
        freq_id = self._freq_ids(freq, values.shape[0])
        logged = positive_channels(values, mask) if log_scale else np.zeros((len(values), values.shape[2]), bool)
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is caught below, as one ValueError
            model_values = to_log_space(values, mask, logged) if logged.any() else values
            result = from_log_space(self._rollout(model_values, mask, freq_id, horizon), model_values, mask, logged)
            result = floor_at_zero(pin_constants(result, values, mask), values, mask, nonnegative)
        if not np.isfinite(result).all():
            biggest = float(np.nanmax(np.abs(np.where(mask > 0, values, np.nan))))
            raise ValueError(f"the forecast is not finite: values up to {biggest:.3g} overflow the model's float32 "
                             "arithmetic; divide the series by a constant and multiply the forecast back")
        return result

    def _rollout(self, values: np.ndarray, mask: np.ndarray, freq_id: np.ndarray, horizon: int) -> np.ndarray:
        """``tsfm.inference.forecast_arrays`` in numpy: quantile paths fed back past ``self.horizon``."""
        levels = np.asarray(self.quantiles)
        q, step = len(levels), self.horizon
        n, context_len, c = values.shape
        chunks = [self.forecast_step(values, mask, freq_id)]
        done = min(step, horizon)
        paths, paths_mask, path_freq = np.repeat(values, q, axis=0), np.repeat(mask, q, axis=0), np.repeat(freq_id, q)
        while done < horizon:
            latest = chunks[-1].transpose(0, 3, 1, 2).reshape(n * q, step, c)
            paths = np.concatenate([paths, latest], axis=1)[:, -context_len:]
            paths_mask = np.concatenate([paths_mask, np.ones_like(latest)], axis=1)[:, -context_len:]
            out = self.forecast_step(paths, paths_mask, path_freq)  # [N*Q, H, C, Q]
            samples = out.reshape(n, q, step, c, q).transpose(0, 2, 3, 1, 4).reshape(n, step, c, q * q)
            chunks.append(np.quantile(samples, levels, axis=-1).transpose(1, 2, 3, 0).astype(np.float32))
            done += step
        result = np.concatenate(chunks, axis=1)[:, :horizon]
        return np.sort(result, axis=-1)


LOG_SCALE_MAX_RATIO = 100.0  # as tsfm.inference: a wider-spanning context stays raw
_FLOAT32 = np.finfo(np.float32)


def _checked_float32(past_values) -> np.ndarray:
    """``past_values`` as float32, or ValueError for infinities and magnitudes float32 cannot hold."""
    try:
        wide = np.asarray(past_values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"past_values must be numbers (NaN where missing): {err}") from None
    if np.isinf(wide).any():
        raise ValueError(f"past_values has an infinite value at index {tuple(int(i) for i in np.argwhere(np.isinf(wide))[0])}: "
                         "replace it with NaN (missing) or a finite number")
    size = np.abs(wide[np.isfinite(wide) & (wide != 0)]) if wide.size else wide
    if size.size and (size.max() > _FLOAT32.max or size.min() < _FLOAT32.tiny):
        worst = size.max() if size.max() > _FLOAT32.max else size.min()
        raise ValueError(f"past_values has magnitude {worst:.3g}, outside what float32 holds "
                         f"({_FLOAT32.tiny:.3g} to {_FLOAT32.max:.3g}): divide the series by a constant and multiply "
                         "the forecast back")
    return wide.astype(np.float32)


def positive_channels(past_values: np.ndarray, past_mask: np.ndarray) -> np.ndarray:
    """[N, C] boolean: channels forecast in log space, ``tsfm.inference.log_scale_channels``'s rule:
    observed values, all above zero, the largest at most ``LOG_SCALE_MAX_RATIO`` times the smallest."""
    observed = (past_mask > 0) & np.isfinite(past_values)
    smallest = np.where(observed, past_values, np.inf).min(axis=1)
    largest = np.where(observed, past_values, -np.inf).max(axis=1)
    return observed.any(axis=1) & (smallest > 0) & (largest <= LOG_SCALE_MAX_RATIO * smallest)


def to_log_space(past_values: np.ndarray, past_mask: np.ndarray, logged: np.ndarray) -> np.ndarray:
    """The ``logged`` channels replaced by their logs, NaN where unobserved (``tsfm.inference.to_log_space``)."""
    observed = (past_mask > 0) & np.isfinite(past_values) & (past_values > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log(np.where(observed, past_values, np.nan))
    return np.where(logged[:, None, :], logs, past_values).astype(np.float32)


def from_log_space(quantiles: np.ndarray, log_values: np.ndarray, past_mask: np.ndarray,
                   logged: np.ndarray) -> np.ndarray:
    """``exp`` of the ``logged`` channels' quantiles, first kept within the context's log range
    widened by that range on each side (``tsfm.inference.from_log_space``)."""
    if not logged.any():
        return quantiles
    observed = (past_mask > 0) & np.isfinite(log_values)
    lo = np.where(logged, np.where(observed, log_values, np.inf).min(axis=1), 0.0)
    hi = np.where(logged, np.where(observed, log_values, -np.inf).max(axis=1), 0.0)
    span = hi - lo
    bounded = np.clip(quantiles, (lo - span)[:, None, :, None], (hi + span)[:, None, :, None])
    back = np.exp(bounded.astype(np.float64)).astype(np.float32)
    return np.where(logged[:, None, :, None], back, quantiles).astype(np.float32)


def pin_constants(quantiles: np.ndarray, past_values: np.ndarray, past_mask: np.ndarray) -> np.ndarray:
    """A channel whose observed history is one repeated value gets exactly that value as forecast."""
    observed = (past_mask > 0) & np.isfinite(past_values)
    big = np.where(observed, past_values, -np.inf).max(axis=1)
    small = np.where(observed, past_values, np.inf).min(axis=1)
    const = observed.any(axis=1) & (big == small)  # [N, C]
    if not const.any():
        return quantiles
    level = np.where(observed, past_values, 0.0).sum(axis=1) / np.maximum(observed.sum(axis=1), 1)
    pinned = np.broadcast_to(level[:, None, :, None], quantiles.shape)
    return np.where(const[:, None, :, None], pinned, quantiles).astype(np.float32)


def floor_at_zero(quantiles: np.ndarray, past_values: np.ndarray, past_mask: np.ndarray,
                  nonnegative: bool | None = None) -> np.ndarray:
    """Quantiles below zero raised to zero on channels that cannot go negative (``predict``)."""
    if nonnegative is False:
        return quantiles
    observed = (past_mask > 0) & np.isfinite(past_values)
    floored = observed.any(axis=1) & ~(np.where(observed, past_values, 0.0) < 0).any(axis=1)  # [N, C]
    if nonnegative is True:
        floored = np.ones_like(floored)
    if not floored.any():
        return quantiles
    return np.where(floored[:, None, :, None], np.maximum(quantiles, 0.0), quantiles).astype(np.float32)


def session_options(num_threads: int | None = None) -> ort.SessionOptions:
    """One intra-op pool of ``num_threads`` (ORT's default when None), no inter-op parallelism."""
    options = ort.SessionOptions()
    if num_threads is not None:
        if int(num_threads) < 1:
            raise ValueError(f"num_threads must be >= 1, got {num_threads}")
        options.intra_op_num_threads = int(num_threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: no warnings on stderr at load
    return options


def load(path: str | Path, *, num_threads: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE) -> EdgeModel:
    """Open an exported tsfm model (``ModelFileError`` with one line if the file cannot be one)."""
    path = str(path)
    if not Path(path).is_file():
        problem = "is a directory" if Path(path).is_dir() else "does not exist"
        raise ModelFileError(f"model file '{path}' {problem}: pass the .onnx file written by `tsfm export`")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    try:
        session = ort.InferenceSession(path, sess_options=session_options(num_threads),
                                       providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for bad protobufs
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelFileError(f"cannot load '{path}' as an ONNX model ({first[:200]}): the file is damaged or not ONNX; "
                             "re-export it") from None
    return EdgeModel(session, path, batch_size)
