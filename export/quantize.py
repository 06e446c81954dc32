"""int8 quantization of exported graphs with onnxruntime's own tooling, by CPU target.

The right settings depend on the CPU that runs the file (onnxruntime's ``quantize_static``
docstring, "Choosing parameters for CPU inference"; research/ecosystem.md §4.3): on x86 without
VNNI (AVX2 only, the common case and this machine) the u8 x s8 multiply-add saturates, so
weights use 7 bits (``reduce_range``); with VNNI the full range is safe; ARM wants symmetric
signed int8. Weight scales are per channel, as onnxruntime advises with reduce_range (per-tensor
scales measured within noise of it on the 790k TTM). Only ``MatMul``
(and ``Gemm`` for static) are quantized: the scaling arithmetic on raw values, the masks and the
quantile head's monotone transform stay float32.

``quant_pre_process`` (shape inference + graph clean-up) always runs first. Static (QDQ)
quantization calibrates activation ranges on windows of our synthetic structural series
(``tsfm.data.synthetic.structural``), generated deterministically from ``seed``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from tsfm.errors import InputError

# target -> settings shared by both methods; the static method adds the activation type.
PRESETS: dict[str, dict[str, Any]] = {
    "x86": {"per_channel": True, "reduce_range": True, "weight_type": "QInt8", "activation_type": "QUInt8",
            "activation_symmetric": False},
    "x86-vnni": {"per_channel": True, "reduce_range": False, "weight_type": "QInt8", "activation_type": "QUInt8",
                 "activation_symmetric": False},
    "arm": {"per_channel": True, "reduce_range": False, "weight_type": "QInt8", "activation_type": "QInt8",
            "activation_symmetric": True},
}
CALIBRATION_BATCH = 32


def check_target(target: str) -> None:
    if target not in PRESETS:
        raise InputError(f"target '{target}' is unknown: use one of {', '.join(PRESETS)} "
                         "(x86 = AVX2 without VNNI, the safe default)")


@contextlib.contextmanager
def _quiet_logs():
    """The quantizer logs skipped nodes on the root logger; keep stderr for our progress lines."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def preprocess(fp32: Path, out: Path) -> Path:
    """``quant_pre_process``: symbolic shape inference and ORT's basic graph optimizations.

    ORT's symbolic shape inference gives up on some graphs (every ensemble's, with onnxruntime
    1.32: a TypeError inside it; S-Mamba's scan: a bare ``Exception("Incomplete symbolic shape
    inference")``); ONNX's own shape inference then serves, which is all dynamic quantization of
    MatMul/Gemm weights needs."""
    from onnxruntime.quantization import quant_pre_process

    try:
        quant_pre_process(str(fp32), str(out), skip_symbolic_shape=False)
    except Exception:  # noqa: BLE001 - ORT raises bare Exception here; the fallback is the answer to any
        quant_pre_process(str(fp32), str(out), skip_symbolic_shape=True)
    return out


def quantize_model(fp32: Path, workdir: Path, method: str, target: str,
                   reader=None) -> tuple[Path, str, dict[str, Any]]:
    """Quantize ``fp32`` into ``workdir``; returns (path, preset name, the exact settings used)."""
    check_target(target)
    with _quiet_logs():
        return _quantize(fp32, workdir, method, target, reader)


def _quantize(fp32: Path, workdir: Path, method: str, target: str, reader) -> tuple[Path, str, dict[str, Any]]:
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_dynamic,
        quantize_static,
    )

    preset = PRESETS[target]
    pre = preprocess(fp32, workdir / "pre.onnx")
    out = workdir / f"{method}.onnx"
    weight_type = getattr(QuantType, preset["weight_type"])
    settings: dict[str, Any] = {"method": method, "target": target, "per_channel": preset["per_channel"],
                                "reduce_range": preset["reduce_range"], "weight_type": preset["weight_type"]}
    if method == "int8-dynamic":
        quantize_dynamic(
            str(pre), str(out), op_types_to_quantize=["MatMul"], per_channel=preset["per_channel"],
            reduce_range=preset["reduce_range"], weight_type=weight_type,
            extra_options={"MatMulConstBOnly": True},
        )
        settings["activations"] = "dynamic QUInt8 (DynamicQuantizeLinear)"
    elif method == "int8-static":
        if reader is None:
            raise ValueError("int8-static needs a calibration data reader")
        quantize_static(
            str(pre), str(out), reader, quant_format=QuantFormat.QDQ, op_types_to_quantize=["MatMul", "Gemm"],
            per_channel=preset["per_channel"], reduce_range=preset["reduce_range"],
            activation_type=getattr(QuantType, preset["activation_type"]), weight_type=weight_type,
            calibrate_method=CalibrationMethod.MinMax,
            extra_options={"MatMulConstBOnly": True, "ActivationSymmetric": preset["activation_symmetric"]},
        )
        settings.update(activation_type=preset["activation_type"], activation_symmetric=preset["activation_symmetric"],
                        format="QDQ", calibration="MinMax on synthetic structural series")
    else:
        raise ValueError(f"unknown quantization method '{method}'")
    return out, f"{method}-{target}", settings


def calibration_windows(
    context: int, n_series: int, seed: int = 0, channels: int = 1
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``past_values [N, context, channels]`` (NaN-padded), ``past_mask``, ``freq_id [N]`` from synthetic series.

    Lengths vary from a quarter of the context to twice it, so short (padded) histories are
    calibrated too; each window takes the frequency token its generator claims.
    """
    from tsfm.data.freq import freq_token
    from tsfm.data.synthetic.structural import structural

    rng = np.random.default_rng(seed)
    values = np.full((n_series, context, channels), np.nan, dtype=np.float32)
    freq_id = np.zeros(n_series, dtype=np.int64)
    for i in range(n_series):
        length = int(rng.integers(max(2, context // 4), 2 * context + 1))
        for c in range(channels):
            sample = structural(rng, length)
            tail = np.asarray(sample.target, dtype=np.float32).reshape(-1)[-context:]
            values[i, context - len(tail):, c] = tail
        freq_id[i] = freq_token(sample.freq)
    mask = (~np.isnan(values)).astype(np.float32)
    return values, mask, freq_id


def calibration_reader(context: int, uses_freq: bool, n_series: int, seed: int = 0, channels: int = 1):
    """An onnxruntime ``CalibrationDataReader`` over :func:`calibration_windows`, in batches of 32."""
    from onnxruntime.quantization import CalibrationDataReader

    if n_series < 1:
        raise InputError(f"calibration needs at least 1 series, got {n_series}")
    values, mask, freq_id = calibration_windows(context, n_series, seed, channels)
    feeds = []
    for start in range(0, n_series, CALIBRATION_BATCH):
        stop = start + CALIBRATION_BATCH
        batch = {"past_values": values[start:stop], "past_mask": mask[start:stop]}
        if uses_freq:
            batch["freq_id"] = freq_id[start:start + CALIBRATION_BATCH]
        feeds.append(batch)

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter(feeds)

        def get_next(self):
            return next(self._items, None)

        def rewind(self) -> None:
            self._items = iter(feeds)

    return _Reader()


def quantize_onnx(
    source: str | Path,
    output: str | Path,
    *,
    method: str = "int8-dynamic",
    target: str = "x86",
    calibration_series: int = 128,
    seed: int = 0,
    log=None,
) -> Path:
    """int8 copy of an fp32 tsfm artifact (from ``export_onnx``), metadata carried over.

    No torch model needed: the float graph is the source. ``method`` is ``"int8-dynamic"``
    or ``"int8-static"``; the preset lands in ``tsfm.quantization`` (e.g. ``int8-dynamic-x86``)
    and the exact settings in ``tsfm.quantization_settings``. The output appears atomically.
    """
    from tsfm.export.onnx_export import read_metadata, set_metadata

    log = log or (lambda message: None)
    if method not in ("int8-dynamic", "int8-static"):
        raise InputError(f"quantization method '{method}' is unknown: use int8-dynamic or int8-static")
    check_target(target)
    meta = read_metadata(source)
    if "tsfm.context_length" not in meta:
        raise InputError(f"'{source}' is not a tsfm export (no tsfm.* metadata): export it with `tsfm export` first")
    if meta.get("tsfm.quantization", "none") != "none":
        raise InputError(f"'{source}' is already quantized ({meta['tsfm.quantization']}): quantize the fp32 export")
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tsfm-quantize-", dir=output.parent) as tmp:
        reader = None
        if method == "int8-static":
            log(f"calibrating int8 activations on {calibration_series} synthetic series")
            channels = meta.get("tsfm.channels", "dynamic")
            reader = calibration_reader(
                int(meta["tsfm.context_length"]), "freq_id" in json.loads(meta["tsfm.inputs"]), calibration_series,
                seed, channels=1 if channels == "dynamic" else int(channels),
            )
        log(f"quantizing ({method}, target {target})")
        path, preset, settings = quantize_model(Path(source), Path(tmp), method, target, reader)
        proto = onnx.load(str(path))
        tsfm_props = {k: v for k, v in meta.items() if k.startswith("tsfm.")}
        tsfm_props.update({"tsfm.quantization": preset,
                           "tsfm.quantization_settings": json.dumps(settings, sort_keys=True)})
        set_metadata(proto, tsfm_props)
        onnx.save_model(proto, path)
        onnx.checker.check_model(str(path), full_check=True)
        os.replace(path, output)
    return output
