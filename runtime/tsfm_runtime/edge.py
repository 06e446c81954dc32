"""Forecasts from files written by ``tsfm export``, with numpy + onnxruntime only.

::

    import tsfm_runtime
    model = tsfm_runtime.load("ttm-edge")            # a suite folder, or one .onnx file
    q = model.predict(history, freq="h")             # [batch, horizon, channels, quantiles]
    median = q[..., model.quantiles.index(0.5)]

A suite folder (``suite.json`` + one ``.onnx`` per checkpoint) chooses its checkpoint for each
batch as the package does, and forecasts in the value space the suite says. Around the graph the
rules of ``tsfm_runtime.rules`` apply, the same code the package runs: inputs ``[L]``, ``[B, L]``
or ``[B, L, C]`` (the last ``context_length`` steps kept, shorter histories left-padded and
marked unobserved; NaN always counts as unobserved), rollout past the graph's horizon, constant
histories pinned, no negative forecast for a series that never went negative.

A file that is not a tsfm export raises ``ModelFileError`` (a ``ValueError``) with one line
saying what is wrong. ``predict`` raises ``ValueError`` (one line) for input it cannot forecast
instead of returning zeros or NaN: no observed value in the context, infinite values, magnitudes
the float32 forecast cannot hold, or a forecast that overflowed inside the graph. Within float32,
series of very large or very small values are divided by a power of ten before the network and
multiplied back after it, as the package does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from tsfm_runtime import freq as freqs
from tsfm_runtime import rules
from tsfm_runtime.suite import SUITE_FILE, SuiteSpec

FORMAT_VERSION = 1  # bumped when the metadata or the graph signature changes incompatibly
DEFAULT_BATCH_SIZE = 256
MIN_ONNXRUNTIME = "1.18"  # the first that reads ONNX IR version 10, which tsfm exports are
REQUIRED_KEYS = ("tsfm.format_version", "tsfm.context_length", "tsfm.horizon", "tsfm.quantiles", "tsfm.inputs")
_FLOAT32 = np.finfo(np.float32)


class ModelFileError(ValueError):
    """The file cannot serve as a tsfm edge model; the message is one line with the fix."""


def _log_mode(log_scale: bool | str | None, default: str) -> str:
    """A value-space mode from ``log_scale``: True = "positive", False = "never", None = ``default``."""
    if log_scale is None:
        return default
    if isinstance(log_scale, (bool, np.bool_)):
        return "positive" if log_scale else "never"
    if log_scale not in rules.LOG_SCALE_MODES:
        modes = ", ".join(rules.LOG_SCALE_MODES)
        raise ValueError(f"log_scale must be True, False or one of {modes}, got {log_scale!r}")
    return str(log_scale)


def _inferred_freq(values: np.ndarray, mask: np.ndarray) -> str:
    """The resolution the seasons of a batch given without ``freq`` suggest (every channel;
    ``tsfm_runtime.freq.infer_resolution``, as the package does for integer steps). Only the
    steps passed are read: pass the whole history, a season shows only after three of them."""
    return freqs.infer_resolution(list(np.where(mask > 0, values, np.nan)))


def default_horizon(freq, vocab: Sequence[str] = freqs.FREQ_VOCAB) -> int:
    """The package's default horizon for ``freq`` as given (an alias, a token id of ``vocab``, one per
    series: the longest; None: 14 steps, as for integer steps, whose inferred resolution does not
    set the horizon)."""
    if freq is None:
        return freqs.UNKNOWN_SEASON_AND_HORIZON[1]
    if isinstance(freq, (int, np.integer)):
        name = vocab[int(freq)] if 0 <= int(freq) < len(vocab) else ""
        return freqs.season_and_horizon(name)[1]
    if isinstance(freq, str):
        return freqs.season_and_horizon(freqs.resolution_name(freq))[1]
    return max((default_horizon(f, vocab) for f in freq), default=freqs.UNKNOWN_SEASON_AND_HORIZON[1])


def _integer(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def checked_horizon(horizon) -> int:
    """``horizon`` as an int: a positive integer up to ``rules.MAX_HORIZON`` (ValueError otherwise)."""
    if not _integer(horizon) or horizon < 1:
        raise ValueError(f"horizon must be a positive integer, got {horizon!r}")
    if horizon > rules.MAX_HORIZON:
        raise ValueError(f"horizon={horizon} is above the limit of {rules.MAX_HORIZON} steps: past the network's own "
                         "horizon each step is forecast from earlier forecasts (slow, and accuracy fades); "
                         "forecast a coarser frequency instead")
    return int(horizon)


def checked_windows(calibration_windows) -> int:
    """``calibration_windows`` as an int: an integer >= 0 (ValueError otherwise)."""
    if not _integer(calibration_windows) or calibration_windows < 0:
        raise ValueError(f"calibration_windows must be an integer >= 0, got {calibration_windows!r}")
    return int(calibration_windows)


def _season(freq) -> int:
    """Seasonal period of one frequency alias for the whole batch (1 when unknown or per-series)."""
    if not isinstance(freq, str):
        return 1
    return freqs.season_of(freq)


def _numbers(past_values) -> np.ndarray:
    """``past_values`` as float64, or ValueError for text, infinities and magnitudes the float32
    forecast could not hold."""
    try:
        wide = np.asarray(past_values, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"past_values must be numbers (NaN where missing): {err}") from None
    if np.isinf(wide).any():
        where = tuple(int(i) for i in np.argwhere(np.isinf(wide))[0])
        raise ValueError(f"past_values has an infinite value at index {where}: "
                         "replace it with NaN (missing) or a finite number")
    size = np.abs(wide[np.isfinite(wide) & (wide != 0)])
    if size.size and (size.max() > _FLOAT32.max or size.min() < _FLOAT32.tiny):
        big = size.max() > _FLOAT32.max
        raise ValueError(f"past_values has magnitude {size.max() if big else size.min():.3g}, outside what the float32 "
                         f"forecast holds ({_FLOAT32.tiny:.3g} to {_FLOAT32.max:.3g}): "
                         f"{'divide' if big else 'multiply'} the series by a constant and the forecast back")
    return wide


def as_windows(past_values, past_mask, channels: int | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``[L] / [B, L] / [B, L, C]`` -> float32 ``[B, L, C]`` values, their mask (NaN = unobserved) and
    float64 ``[B, C]`` scales: a series outside ``rules.SAFE_MAGNITUDE`` is divided by a power of ten
    before the float32 cast, as the package does, and its forecast must be multiplied back."""
    wide = _numbers(past_values)
    if wide.ndim not in (1, 2, 3):
        raise ValueError("past_values must be [time], [batch, time] or [batch, time, channels], "
                         f"got shape {wide.shape}")
    shape = wide.shape
    wide = wide[None, :, None] if wide.ndim == 1 else wide[:, :, None] if wide.ndim == 2 else wide
    if past_mask is None:
        mask = np.ones(wide.shape, dtype=np.float32)
    else:
        mask = np.asarray(past_mask, dtype=np.float32)
        if mask.shape != shape:
            raise ValueError(f"past_mask has shape {mask.shape} but past_values has {shape}: give one flag per value")
        mask = mask.reshape(wide.shape)
    if wide.shape[1] < 1:
        raise ValueError("past_values has no time steps: give at least one past value per series")
    mask = rules.observed(wide, mask).astype(np.float32)
    if channels is not None and wide.shape[2] != channels:
        raise ValueError(f"this model mixes exactly {channels} channels but got {wide.shape[2]}")
    biggest = np.where(mask > 0, np.abs(wide), 0.0).max(axis=1)  # [B, C]
    scales = rules.magnitude_scales(biggest)
    scales = np.ones(biggest.shape) if scales is None else scales
    return (wide / scales[:, None, :]).astype(np.float32), mask, scales


class EdgeModel:
    """One exported checkpoint: ``predict`` turns histories into quantile forecasts.

    Attributes come from the file's metadata: ``context_length`` (steps the graph sees),
    ``horizon`` (steps one graph run forecasts), ``default_horizon`` (what ``predict`` returns
    without ``horizon=`` when the export asked for a horizon, longer than ``horizon`` meaning a
    rollout; None: the frequency's default horizon, as the package's), ``quantiles`` (levels of the
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
            requested = meta.get("tsfm.default_horizon")  # written when the export asked for a horizon
            self.default_horizon = None if requested is None else int(requested)
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
                "use the tsfm_runtime of the tsfm version that exported it"
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
        name = freqs.resolution_name(str(freq))
        return self.freq_vocab.index(name) if name in self.freq_vocab else 0

    def freq_ids(self, freq, batch: int) -> np.ndarray:
        """One token per series from one alias/token for the batch or one per series."""
        if freq is None or isinstance(freq, (str, int, np.integer)):
            return np.full(batch, self.freq_id(freq), dtype=np.int64)
        ids = [self.freq_id(f) for f in freq]
        if len(ids) != batch:
            raise ValueError(f"freq has {len(ids)} entries for a batch of {batch}: give one alias or one per series")
        return np.asarray(ids, dtype=np.int64)

    # ------------------------------------------------------------------------- running
    def forecast_step(self, past_values: np.ndarray, past_mask: np.ndarray, freq_id: np.ndarray,
                      past_exog: np.ndarray | None = None, future_exog: np.ndarray | None = None) -> np.ndarray:
        """One graph horizon for ``[N, L', C]`` windows (any ``L'``), in batches: ``[N, horizon, C, Q]``.

        The building block of ``predict`` and of the package's rollout; exported graphs take no
        covariates, so ``past_exog``/``future_exog`` must be None.
        """
        if past_exog is not None or future_exog is not None:
            raise ValueError("exported graphs take no covariates")
        values, mask = rules.fit_context(np.asarray(past_values, np.float32), np.asarray(past_mask, np.float32),
                                         self.context_length)
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
        log_scale: bool | str = False,
        calibration_windows: int = 0,
        seasonal_adjustment: bool = False,
    ) -> np.ndarray:
        """Quantile forecasts ``[B, horizon, C, Q]`` (levels in ``self.quantiles``).

        ``past_values``: ``[L]``, ``[B, L]`` or ``[B, L, C]`` raw values, NaN where missing;
        ``past_mask``: same shape, 1 = observed (optional); ``freq``: one alias or token for the
        batch, or one per series (None: the resolution the values' seasons suggest, as the package
        reads integer steps; 0: the unknown-resolution token); ``horizon``:
        steps (default: the export's ``default_horizon``, else ``default_horizon(freq)``, the package's),
        rolled out past the graph's ``horizon``;
        ``nonnegative``: floor at zero the channels whose context has no negative value (None),
        every channel (True) or none (False); ``log_scale``: True
        forecasts strictly positive channels in log space, or a mode ("seasonal", "positive", "never");
        ``calibration_windows``: backtests inside the given histories that calibrate the intervals
        (``tsfm_runtime.rules.backtest_widening``; 0: none); ``seasonal_adjustment``: seasonal
        series are shown to the network after classical decomposition
        (``tsfm_runtime.rules.seasonal_factors``).
        """
        if nonnegative not in (None, True, False):
            raise ValueError(f"nonnegative must be None, True or False, got {nonnegative!r}")
        if seasonal_adjustment not in (True, False):
            raise ValueError(f"seasonal_adjustment must be True or False, got {seasonal_adjustment!r}")
        if horizon is None:
            horizon = self.default_horizon or default_horizon(freq, self.freq_vocab)
        horizon = checked_horizon(horizon)
        calibration_windows = checked_windows(calibration_windows)
        values, mask, scales = as_windows(past_values, past_mask, self.channels)
        short = rules.short_histories(values, mask)
        if short.size:  # as the package refuses them
            b, c = (int(x) for x in short[0])
            raise ValueError(f"{len(short)} series have fewer than {rules.MIN_OBSERVED} observed values, the first "
                             f"series {b} (channel {c}): drop them or give them more history")
        freq = _inferred_freq(values, mask) if freq is None else freq
        if calibration_windows == 0:
            values, mask = rules.fit_context(values, mask, self.context_length)
        empty = rules.blind_contexts(values, mask, self.context_length)
        if empty.size:
            b, c = (int(x) for x in empty[0])
            raise ValueError(f"series {b} (channel {c}) has no observed value in its last {self.context_length} steps "
                             "(all NaN or masked): drop it or give it history")
        with np.errstate(over="ignore", invalid="ignore"):  # an overflow is caught below, as one ValueError
            result = rules.forecast(self.forecast_step, values, mask, self.freq_ids(freq, values.shape[0]), horizon,
                                    self.quantiles, self.horizon, context=self.context_length,
                                    log_scale=_log_mode(log_scale, "never"), season=_season(freq),
                                    nonnegative=nonnegative, calibration_windows=calibration_windows,
                                    seasonal_adjustment=bool(seasonal_adjustment))
        if not np.isfinite(result).all():
            seen = np.where(mask > 0, values * scales[:, None, :], np.nan)[:, -self.context_length:]  # user units
            biggest = float(np.nanmax(np.abs(seen)))
            raise ValueError(f"the forecast is not finite: values up to {biggest:.3g} overflow the model's float32 "
                             "arithmetic; divide the series by a constant and multiply the forecast back")
        return (result * scales[:, None, :, None]).astype(np.float32)


class EdgeSuite:
    """An exported suite: ``predict`` chooses the checkpoint for the batch, as the package does.

    The choice reads the batch's typical (median) observed history and its frequency (``freq``,
    one alias for the batch; None: inferred from the seasons, as ``EdgeModel.predict`` does);
    ``chosen(...)`` says which checkpoint a batch gets. ``quantiles``
    are shared by every checkpoint of the suite.
    """

    def __init__(self, folder: Path, spec: SuiteSpec, num_threads: int | None, batch_size: int) -> None:
        self.path, self.spec = folder, spec
        self._options = (num_threads, batch_size)
        self._members: dict[str, EdgeModel] = {}
        missing = [name for name in spec.checkpoints() if not (folder / f"{name}.onnx").is_file()]
        if missing:
            raise ModelFileError(f"suite '{folder}' lacks {', '.join(f'{m}.onnx' for m in missing)}: re-export it")
        self.quantiles = self.member(spec.default).quantiles

    def __repr__(self) -> str:
        return f"EdgeSuite('{self.path}', checkpoints={self.spec.checkpoints()}, log_scale={self.spec.log_scale!r})"

    def member(self, name: str) -> EdgeModel:
        """The checkpoint ``name`` of the suite, opened once."""
        if name not in self._members:
            self._members[name] = load(self.path / f"{name}.onnx", num_threads=self._options[0],
                                       batch_size=self._options[1])
        return self._members[name]

    def chosen(self, past_values, past_mask=None, freq: str | None = None) -> str:
        """The checkpoint a batch is forecast by: its median observed length, its frequency's season."""
        values, mask, _ = as_windows(past_values, past_mask)
        return self._choose(values, mask, _inferred_freq(values, mask) if freq is None else freq)

    def _choose(self, values: np.ndarray, mask: np.ndarray, freq: str | int) -> str:
        lengths = (mask > 0).any(axis=2).sum(axis=1)
        history = float(np.median(lengths)) if lengths.size else 0.0  # an empty batch: no history to read
        name = freqs.resolution_name(freq) if isinstance(freq, str) else ""
        season = freqs.season_of(freq) if isinstance(freq, str) else 1
        return self.spec.select(history, season, name, lambda variant: self.member(variant).context_length)

    def predict(self, past_values, past_mask=None, freq: str | None = None, horizon: int | None = None,
                nonnegative: bool | None = None, log_scale: bool | str | None = None,
                calibration_windows: int | None = None, seasonal_adjustment: bool | None = None) -> np.ndarray:
        """``EdgeModel.predict`` of the chosen checkpoint, with the suite's value space, seasonal
        adjustment and calibration unless ``log_scale`` / ``seasonal_adjustment`` /
        ``calibration_windows`` say otherwise; ``horizon`` defaults to the frequency's default horizon."""
        if freq is not None and not isinstance(freq, str):
            raise ValueError("a suite chooses one checkpoint per batch: give freq as one alias (e.g. 'h')")
        values, mask, scales = as_windows(past_values, past_mask)  # once: the choice and forecast read these
        if horizon is None:  # from freq as given: an inferred resolution does not set the horizon
            horizon = default_horizon(freq)
        freq = _inferred_freq(values, mask) if freq is None else freq
        model = self.member(self._choose(values, mask, freq))
        windows = self.spec.calibration_windows if calibration_windows is None else calibration_windows
        adjust = self.spec.seasonal_adjustment if seasonal_adjustment is None else seasonal_adjustment
        result = model.predict(values, mask, freq, horizon, nonnegative, _log_mode(log_scale, self.spec.log_scale),
                               windows, adjust)
        return (result * scales[:, None, :, None]).astype(np.float32)


def checked_threads(num_threads) -> int | None:
    """``num_threads`` as an int >= 1, or None (ValueError otherwise)."""
    if num_threads is not None and (not _integer(num_threads) or num_threads < 1):
        raise ValueError(f"num_threads must be an integer >= 1 or None, got {num_threads!r}")
    return None if num_threads is None else int(num_threads)


def session_options(num_threads: int | None = None) -> ort.SessionOptions:
    """One intra-op pool of ``num_threads`` (ORT's default when None), no inter-op parallelism."""
    options = ort.SessionOptions()
    num_threads = checked_threads(num_threads)
    if num_threads is not None:
        options.intra_op_num_threads = num_threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: no warnings on stderr at load
    return options


def load(path: str | Path, *, num_threads: int | None = None,
         batch_size: int = DEFAULT_BATCH_SIZE) -> EdgeModel | EdgeSuite:
    """Open an export: a ``.onnx`` file or a suite folder (``ModelFileError`` with one line if it cannot be one)."""
    path = Path(path)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    checked_threads(num_threads)  # here: a bad count is not a bad file
    if path.is_dir():
        if not (path / SUITE_FILE).is_file():
            raise ModelFileError(f"'{path}' is a directory without {SUITE_FILE}: pass a .onnx file or a suite folder "
                                 "written by `tsfm export`")
        try:
            spec = SuiteSpec.from_dict(json.loads((path / SUITE_FILE).read_text()), str(path / SUITE_FILE))
        except (OSError, json.JSONDecodeError) as err:
            raise ModelFileError(f"cannot read {path / SUITE_FILE}: {err}") from None
        except ValueError as err:
            raise ModelFileError(str(err)) from None
        return EdgeSuite(path, spec, num_threads, batch_size)
    if not path.is_file():
        raise ModelFileError(f"model file '{path}' does not exist: pass the .onnx file or suite folder written by "
                             "`tsfm export`")
    try:
        session = ort.InferenceSession(str(path), sess_options=session_options(num_threads),
                                       providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for bad protobufs
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        reason = first if len(first) <= 240 else "..." + first[-240:]  # onnxruntime puts the reason last
        if "IR version" in first or "opset" in first:
            reason = first.rsplit(") ", 1)[-1]  # after the C++ signature onnxruntime puts first
            raise ModelFileError(f"cannot load '{path}' with onnxruntime {ort.__version__} ({reason}): "
                                 f"install onnxruntime {MIN_ONNXRUNTIME} or later") from None
        raise ModelFileError(f"cannot load '{path}' as an ONNX model ({reason}): the file is damaged or not ONNX; "
                             "re-export it") from None
    return EdgeModel(session, str(path), batch_size)
