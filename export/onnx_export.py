"""ONNX export of tsfm models (DESIGN.md §7): one graph signature for every family.

The artifact is one ``.onnx`` file (no external-data side file) whose graph takes raw values::

    past_values float32 [batch, context, channels]   NaN allowed (counts as unobserved)
    past_mask   float32 [batch, context, channels]   1 = observed
    freq_id     int64   [batch]                      only when the model uses a resolution token
    -> quantiles float32 [batch, horizon, channels, Q]

Batch and channels are dynamic (channels fixed only for channel-mixing models), the context is
fixed per artifact; scaling and NaN handling happen inside the graph. The file's metadata props
(``tsfm.*``) carry everything a runtime needs: context, horizon, quantile levels, frequency
vocabulary, quantization preset, input names, tsfm version and family, so that
``tsfm_runtime`` (numpy + onnxruntime only) can serve it.

Horizon rule: ``horizon`` smaller than the model's truncates the graph's output; larger keeps
the model's own horizon in the graph, and the runtime rolls out (``tsfm_runtime.rules.rollout``, as
the package does). A requested horizon is recorded as ``tsfm.default_horizon``, what the runtime
forecasts when ``predict`` is given none; without it the runtime forecasts the frequency's default
horizon, as the package does.

Graph rewrites: the exported GELU is reordered so that onnxruntime fuses it
(:mod:`tsfm.export.graph_rewrites`). Graph simplification: onnxslim 0.1.98 was measured on the
790k-parameter TTM: 8 of 356 nodes removed, file -0.9%, latency within noise (onnxruntime's
load-time optimizations already fuse the same patterns), so it is not a dependency.

A new family plugs in by keeping the model contract (``forward(past_values, past_mask, freq_id)``)
and declaring its ``Capabilities`` (frequency token, fixed channels, trace channels); see
:func:`export_spec`.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from tsfm import __version__
from tsfm.atomic import replace_file
from tsfm.data.freq import FREQ_VOCAB
from tsfm.errors import InputError
from tsfm.export.graph_rewrites import reorder_gelu_products
from tsfm.models.base import ForecastModel
from tsfm_runtime.edge import FORMAT_VERSION
from tsfm_runtime.suite import SUITE_FILE

OPSET = 18  # what onnxruntime >= 1.14 runs: older devices keep working
OUTPUT_NAME = "quantiles"
QUANTIZE_METHODS = ("none", "int8-dynamic", "int8-static")
QUANTIZE_ALIASES = {"int8": "int8-dynamic", "fp32": "none", "": "none"}
PARITY_TOLERANCE = 1e-4  # fp32 graph vs torch, relative to the forecast's magnitude
INT8_WORTH = 0.75  # an int8 file larger than this share of the float32 one is noted as not worth it

Log = Callable[[str], None]


@dataclass(frozen=True)
class ExportSpec:
    """How a model's graph looks: input names and whether the channel count is fixed."""

    input_names: tuple[str, ...]
    channels: int | None  # None = dynamic
    example_channels: int | None = None  # a family's traced channel count; then dims are Dim.AUTO

    @property
    def uses_freq(self) -> bool:
        return "freq_id" in self.input_names


def export_spec(model: ForecastModel) -> ExportSpec:
    """Graph inputs and channel rule of ``model``.

    All from the model's declared ``capabilities``: ``freq_id`` is an input when it reads the
    frequency token, the channel count is fixed when it mixes a fixed set of channels, and a family
    may name the channel count to trace with. Covariate models are refused: the graph has no
    covariate inputs yet.
    """
    capabilities = model.capabilities
    if capabilities.uses_covariates:
        raise InputError(
            "this model was trained with covariates and the ONNX graph has no covariate inputs yet: "
            "export a model without covariates"
        )
    names = ("past_values", "past_mask") + (("freq_id",) if capabilities.freq_token else ())
    return ExportSpec(names, capabilities.fixed_channels, capabilities.export_example_channels)


class ExportGraph(nn.Module):
    """Tensor-only wrapper traced by the exporter: the model, then the horizon cut."""

    def __init__(self, model: ForecastModel, horizon: int, uses_freq: bool) -> None:
        super().__init__()
        self.model = model
        self.horizon = horizon
        self.uses_freq = uses_freq

    def forward(self, past_values: torch.Tensor, past_mask: torch.Tensor, freq_id: torch.Tensor | None = None):
        out = self.model(past_values, past_mask, freq_id if self.uses_freq else None)
        return out[:, : self.horizon]


# ----------------------------------------------------------------------------- helpers
def resolve_model(model_or_name_or_dir: ForecastModel | str | Path) -> ForecastModel:
    """A CPU float32 eval-mode copy of a model object, or the model a name/checkpoint dir names."""
    if isinstance(model_or_name_or_dir, nn.Module):
        if not isinstance(model_or_name_or_dir, ForecastModel):
            raise InputError(f"cannot export a {type(model_or_name_or_dir).__name__}: pass a tsfm ForecastModel, "
                             "a model name or a checkpoint directory")
        return copy.deepcopy(model_or_name_or_dir).cpu().float().eval()
    from tsfm.hub import load_model

    return load_model(model_or_name_or_dir, device="cpu").float().eval()


def plan_lengths(model: ForecastModel, context_length: int | None,
                 horizon: int | None) -> tuple[int, int, int | None]:
    """``(context, graph horizon, default horizon)`` for an export request (InputError if impossible);
    the default horizon is None when none was asked for (the runtime then uses the frequency's)."""
    model_context, model_horizon = model.config.context_length, model.config.prediction_length
    context = model_context if context_length is None else int(context_length)
    if not 1 <= context <= model_context:
        raise InputError(
            f"context_length {context} is outside 1..{model_context}: the model sees at most {model_context} steps; "
            f"export with a context_length up to {model_context}"
        )
    if horizon is None:
        return context, model_horizon, None
    if int(horizon) < 1:
        raise InputError(f"horizon must be a positive integer, got {horizon}")
    return context, min(int(horizon), model_horizon), int(horizon)


def _quiet():
    """Silence the exporter's progress prints, warnings and registration logs (stdout stays clean)."""
    stack = contextlib.ExitStack()
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    stack.callback(logger.setLevel, level)
    return stack


def example_inputs(spec: ExportSpec, context: int, batch: int, channels: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Example feeds: varied levels and scales, a masked NaN stretch and an unmasked NaN."""
    rng = np.random.default_rng(seed)
    c = spec.channels or channels
    values = (rng.normal(size=(batch, context, c)) * rng.uniform(0.5, 20, size=(batch, 1, c))
              + rng.uniform(-50, 50, size=(batch, 1, c))).astype(np.float32)
    mask = np.ones_like(values)
    mask[0, : context // 3] = 0.0
    values[0, : context // 3] = np.nan
    if batch > 1 and context > 2:
        values[1, 1, 0] = np.nan  # NaN with mask 1: must count as unobserved
    feeds = {"past_values": values, "past_mask": mask}
    if spec.uses_freq:
        feeds["freq_id"] = (np.arange(batch) % len(FREQ_VOCAB)).astype(np.int64)
    return feeds


def _export_proto(graph: ExportGraph, spec: ExportSpec, context: int) -> onnx.ModelProto:
    from torch.export import Dim

    batch, channels = Dim("batch"), Dim("channels")
    if spec.example_channels:  # the family's own trace shape; its guards are left to the exporter
        batch = channels = Dim.AUTO
    example = example_inputs(spec, context, batch=2, channels=spec.example_channels or 3)
    example["past_values"] = np.nan_to_num(example["past_values"])
    args = tuple(torch.from_numpy(example[name]) for name in spec.input_names)
    per_value = {0: batch} if spec.channels else {0: batch, 2: channels}
    dynamic = {"past_values": per_value, "past_mask": per_value}
    if spec.uses_freq:
        dynamic["freq_id"] = {0: batch}
    with _quiet(), torch.no_grad():
        program = torch.onnx.export(
            graph, args, None, dynamo=True, opset_version=OPSET, input_names=list(spec.input_names),
            output_names=[OUTPUT_NAME], external_data=False, dynamic_shapes=dynamic, verbose=False,
        )
    return program.model_proto


def strip_node_metadata(proto: onnx.ModelProto) -> onnx.ModelProto:
    """Drop the per-node ``metadata_props`` and doc strings the dynamo exporter adds (~8% of the file)."""

    def clean_graph(graph: onnx.GraphProto) -> None:
        for items in (graph.input, graph.output, graph.value_info, graph.initializer):
            for item in items:
                if hasattr(item, "metadata_props"):
                    del item.metadata_props[:]
        for node in graph.node:
            clean_node(node)

    def clean_node(node: onnx.NodeProto) -> None:
        del node.metadata_props[:]
        node.doc_string = ""
        for attr in node.attribute:
            if attr.HasField("g"):
                clean_graph(attr.g)
            for sub in attr.graphs:
                clean_graph(sub)

    clean_graph(proto.graph)
    for function in proto.functions:
        for node in function.node:
            clean_node(node)
    proto.graph.doc_string = ""
    return proto


def set_metadata(proto: onnx.ModelProto, props: dict[str, str]) -> onnx.ModelProto:
    """Set model-level metadata props, replacing keys that exist."""
    keep = [(p.key, p.value) for p in proto.metadata_props if p.key not in props]
    del proto.metadata_props[:]
    for key, value in [*keep, *props.items()]:
        proto.metadata_props.add(key=key, value=value)
    return proto


def read_metadata(path: str | Path) -> dict[str, str]:
    """The ``metadata_props`` of an ONNX file (no session needed)."""
    proto = onnx.load(str(path), load_external_data=False)
    return {p.key: p.value for p in proto.metadata_props}


def artifact_metadata(
    model: ForecastModel, spec: ExportSpec, context: int, horizon: int, default_horizon: int | None,
    quantization: str, quantization_settings: dict | None = None,
) -> dict[str, str]:
    """The ``tsfm.*`` props every artifact carries (read by ``tsfm_runtime.edge``); ``tsfm.default_horizon``
    only when the export asked for a horizon."""
    requested = {} if default_horizon is None else {"tsfm.default_horizon": str(default_horizon)}
    return {
        "tsfm.format_version": str(FORMAT_VERSION),
        "tsfm.family": model.config.family,
        "tsfm.version": __version__,
        "tsfm.context_length": str(context),
        "tsfm.horizon": str(horizon),
        "tsfm.quantiles": json.dumps(list(model.quantiles)),
        "tsfm.freq_vocab": json.dumps(list(FREQ_VOCAB)),
        "tsfm.inputs": json.dumps(list(spec.input_names)),
        "tsfm.outputs": json.dumps([OUTPUT_NAME]),
        "tsfm.channels": "dynamic" if spec.channels is None else str(spec.channels),
        "tsfm.quantization": quantization,
        "tsfm.quantization_settings": json.dumps(quantization_settings or {}, sort_keys=True),
        "tsfm.model_config": json.dumps(model.config.to_dict(), sort_keys=True),
        **requested,
    }


def normalise_quantize(quantize: str | None) -> str:
    method = QUANTIZE_ALIASES.get((quantize or "").lower(), (quantize or "").lower())
    if method not in QUANTIZE_METHODS:
        raise InputError(f"quantize '{quantize}' is unknown: use one of none, int8 (= int8-dynamic), int8-static")
    return method


def check_parity(path: Path, model: ForecastModel, spec: ExportSpec, context: int, horizon: int) -> float:
    """Max |ORT - torch| / max(1, max |torch|) at a batch and channel count unlike the export example."""
    import onnxruntime as ort

    feeds = example_inputs(spec, context, batch=3, channels=2, seed=1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, feeds)[0]
    with torch.no_grad():
        freq = torch.from_numpy(feeds["freq_id"]) if spec.uses_freq else None
        want = model(torch.from_numpy(feeds["past_values"]), torch.from_numpy(feeds["past_mask"]), freq)
    want = want[:, :horizon].numpy()
    if got.shape != want.shape:
        raise RuntimeError(f"exported graph returns {got.shape}, the model {want.shape}: please report this")
    return float(np.abs(got - want).max() / max(1.0, float(np.abs(want).max())))


# ----------------------------------------------------------------------------- the entry point
def export_onnx(
    model_or_name_or_dir: ForecastModel | str | Path,
    output: str | Path,
    *,
    context_length: int | None = None,
    horizon: int | None = None,
    quantize: str = "none",
    target: str = "x86",
    calibration_series: int = 128,
    seed: int = 0,
    log: Log | None = None,
) -> Path:
    """Export a model to one ``.onnx`` file; optionally int8-quantize it for a CPU ``target``.

    ``quantize``: ``"none"``, ``"int8-dynamic"`` (``"int8"``) or ``"int8-static"`` (QDQ,
    calibrated on ``calibration_series`` synthetic series); ``target``: ``"x86"`` (no VNNI, the
    safe default), ``"x86-vnni"`` or ``"arm"`` (see ``tsfm.export.quantize.PRESETS``). The fp32
    graph is checked against the torch model (relative error below 1e-4) before anything is
    written; the output appears atomically. ``log`` receives progress lines.
    """
    from tsfm.export.quantize import check_target, quantize_onnx

    log = log or (lambda message: None)
    method = normalise_quantize(quantize)
    if method != "none":
        check_target(target)
    model = resolve_model(model_or_name_or_dir)
    spec = export_spec(model)
    context, graph_horizon, default_horizon = plan_lengths(model, context_length, horizon)
    if default_horizon is not None and default_horizon > graph_horizon:
        log(f"horizon {default_horizon} is longer than the model's {graph_horizon}: the file forecasts "
            f"{graph_horizon} steps per run and the runtime rolls out to {default_horizon}")
    elif graph_horizon < model.config.prediction_length:
        log(f"note: the graph is cut to {graph_horizon} of the model's {model.config.prediction_length} steps; "
            f"a forecast longer than {graph_horizon} is rolled out from {graph_horizon}-step runs and differs from "
            f"the package's (export without --horizon to forecast up to {model.config.prediction_length} in one run)")
    output = Path(output)

    log(f"exporting {model.config.family} (context {context}, horizon {graph_horizon}) with the dynamo exporter")
    proto = strip_node_metadata(_export_proto(ExportGraph(model, graph_horizon, spec.uses_freq), spec, context))
    reorder_gelu_products(proto)
    proto.producer_name, proto.producer_version = "tsfm", __version__
    with tempfile.TemporaryDirectory(prefix="tsfm-export-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        set_metadata(proto, artifact_metadata(model, spec, context, graph_horizon, default_horizon, "none"))
        onnx.save_model(proto, fp32)
        onnx.checker.check_model(str(fp32), full_check=True)
        error = check_parity(fp32, model, spec, context, graph_horizon)
        if error > PARITY_TOLERANCE:
            raise RuntimeError(f"the exported graph differs from the model by {error:.2e} (relative): "
                               "please report this")
        final = fp32 if method == "none" else Path(tmp) / "int8.onnx"
        if method != "none":
            quantize_onnx(fp32, final, method=method, target=target, calibration_series=calibration_series,
                          seed=seed, log=log)
        size, fp32_size = final.stat().st_size, fp32.stat().st_size
        written = replace_file(output, lambda dest: _copy_bytes(final, dest), suffix=".onnx")
    log(f"wrote {written} ({size / 1e6:.2f} MB)")
    if method != "none" and size > INT8_WORTH * fp32_size:
        log(f"note: the int8 file is {size / fp32_size:.2f}x the float32 one ({fp32_size / 1e6:.2f} MB): few of "
            f"{model.config.family}'s weights are in the MatMul/Gemm operators int8 quantizes; "
            "consider --quantize none, which is exact")
    return written


def _copy_bytes(source: Path, dest: str) -> None:
    """Copy a file's bytes into ``dest``: a new file, or a FIFO or device written through (which
    ``shutil.copyfile`` refuses)."""
    with open(source, "rb") as reader, open(dest, "wb") as writer:
        shutil.copyfileobj(reader, writer)


def export_suite(
    name_or_folder: str | Path,
    output: str | Path,
    *,
    quantize: str = "none",
    target: str = "x86",
    calibration_series: int = 128,
    seed: int = 0,
    log: Log | None = None,
) -> Path:
    """Export a suite (``ttm``) as a folder: its ``suite.json`` and one ``.onnx`` per checkpoint it may serve.

    ``tsfm_runtime.load(folder)`` and ``Forecaster(model=folder)`` choose among them with the
    suite's own rule and value space, so the edge forecasts what the package forecasts. The
    folder appears whole or not at all (an existing one is replaced only after the export succeeded).
    """
    from tsfm.hub import load_suite

    suite = load_suite(name_or_folder)
    if suite is None:
        raise InputError(f"'{name_or_folder}' is not a suite: export a checkpoint with export_onnx")
    log = log or (lambda message: None)
    output = Path(output)
    if output.exists() and not output.is_dir():
        raise InputError(f"--output '{output}' is a file; a suite exports to a folder: give a folder name")
    _refuse_replacing_sources(output, suite)
    _refuse_replacing_other_folders(output)
    stems = {name: Path(name).name for name in suite.spec.checkpoints()}
    if len(set(stems.values())) != len(stems):
        raise InputError(f"suite '{name_or_folder}' has two checkpoints with the same folder name: rename one")
    spec = replace(suite.spec, default=stems[suite.spec.default],
                   variants=tuple((stems[n], h) for n, h in suite.spec.variants),
                   by_frequency=tuple((f, stems[g], stems[s]) for f, g, s in suite.spec.by_frequency))
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".tsfm-suite-", dir=output.parent) as tmp:
        staged = Path(tmp) / "suite"
        staged.mkdir()
        # logs name the files where they will be, not where they are staged; the real path goes first,
        # since a relative spelling of the folder is its tail
        spellings = sorted({str(staged), os.path.realpath(staged)}, key=len, reverse=True)

        def member_log(line: str) -> None:
            for spelling in spellings:
                line = line.replace(spelling, str(output))
            log(line)

        for name, stem in stems.items():
            log(f"checkpoint {stem} of suite {suite.name}")
            export_onnx(suite.locate(name), staged / f"{stem}.onnx", quantize=quantize, target=target,
                        calibration_series=calibration_series, seed=seed, log=member_log)
        (staged / SUITE_FILE).write_text(json.dumps(spec.to_dict(), indent=2) + "\n")
        previous = Path(tmp) / "previous"
        if output.exists():
            os.replace(output, previous)
        os.replace(staged, output)
    log(f"wrote {output}/ ({len(stems)} checkpoints, {sum(p.stat().st_size for p in output.iterdir()) / 1e6:.2f} MB)")
    return output


def _refuse_replacing_other_folders(output: Path) -> None:
    """The export replaces ``output`` whole: an existing folder must be empty or an exported suite
    (its ``suite.json`` and ``.onnx`` files), never a folder of the user's other files."""
    if not output.is_dir():
        return
    entries = list(output.iterdir())
    exported = any(e.name == SUITE_FILE for e in entries) and all(
        e.is_file() and (e.name == SUITE_FILE or e.suffix == ".onnx") for e in entries)
    if entries and not exported:
        raise InputError(f"--output '{output}' is a folder that is not an exported suite (suite.json and .onnx "
                         "files), which the export would replace whole: give a new folder name or remove it")


def _refuse_replacing_sources(output: Path, suite) -> None:
    """The export replaces ``output`` whole: it must not be, or hold, the suite or a checkpoint it reads."""
    from tsfm.hub import WEIGHTS_DIR

    target = Path(os.path.realpath(output))
    sources = [suite.root if suite.root is not None else WEIGHTS_DIR / suite.name]
    for name in suite.spec.checkpoints():
        located = Path(suite.locate(name))
        sources.append(located if located.exists() else WEIGHTS_DIR / name)
    for source in sources:
        source = Path(os.path.realpath(source))
        if target == source or target in source.parents:
            raise InputError(f"--output '{output}' {'is' if target == source else 'holds'} {source}, which the export "
                             "reads: give a new folder name")


def export_forecaster(forecaster, output: str | Path, *, quantize: str = "none", target: str = "x86",
                      horizon: int | None = None, context_length: int | None = None, **options) -> Path:
    """``Forecaster.export_onnx``: the checkpoint it serves (fitted: the one its plan chose; else the
    one its ``model`` names), with its horizon (fitted or given) and context length capped at the model's."""
    from tsfm.pipeline import load_network

    model = forecaster.model_ if hasattr(forecaster, "model_") else load_network(forecaster.model)
    if not model.config.capabilities.exportable:
        raise InputError("this Forecaster already runs an exported .onnx file: export from a model or checkpoint")
    horizon = horizon or getattr(forecaster, "horizon_", None) or forecaster.horizon
    context_length = context_length or forecaster.context_length
    if context_length is not None:
        context_length = min(int(context_length), model.config.context_length)
    path = export_onnx(model, output, quantize=quantize, target=target, horizon=horizon,
                       context_length=context_length, **options)
    plan = getattr(forecaster, "plan_", None)
    rules = {"seasonal_adjustment": True} if plan is not None and plan.seasonal_adjustment else {}
    if plan is not None and plan.calibration_windows:
        rules["calibration_windows"] = plan.calibration_windows
    if plan is not None and plan.log_scale != "never":
        rules["log_scale"] = plan.log_scale
    if rules:  # a file holds one network; the rules a suite applies around it are the caller's to give
        given = ", ".join(f"{k}={v!r}" for k, v in rules.items())
        warnings.warn(f"{path} holds the network alone: forecast it with {given} to forecast as this Forecaster "
                      f"does, or export the suite as a folder (tsfm export --model {forecaster.model})", stacklevel=3)
    return path
