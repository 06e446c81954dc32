"""Rewrites of an exported graph that keep its values and let onnxruntime fuse more of it.

The dynamo exporter at opset 18 (no ``Gelu`` operator before opset 20) writes the exact GELU as
``x * (0.5 * (1 + erf(x / sqrt 2)))``. onnxruntime's load-time ``GeluFusion`` only recognises the
product in the other order, ``(x * (1 + erf(x / sqrt 2))) * 0.5``, so every GELU stayed five
elementwise kernels (Div, Erf, Add, Mul, Mul). Swapping the two multiplications is exact in real
arithmetic and changes float32 results by rounding only; onnxruntime then fuses each GELU, with
the bias of the Linear before it, into one ``Gelu`` / ``BiasGelu`` kernel, about a tenth of the
512-step TTM's time at batch 256. The file stays standard ONNX at opset 18, so every runtime that
ran it before still does.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import numpy_helper


def reorder_gelu_products(proto: onnx.ModelProto) -> int:
    """Rewrite, in place, each exported exact GELU into the order onnxruntime fuses; returns how many.

    A match needs the whole pattern: ``Div(x, sqrt 2) -> Erf -> Add(., 1) -> Mul(0.5, .) -> Mul(x, .)``
    with scalar constant initializers and each intermediate used once; anything else is left alone.
    """
    graph = proto.graph
    graph_outputs = {out.name for out in graph.output}
    constants = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    producer = {out: node for node in graph.node for out in node.output}
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in graph.node:
        for name in node.input:
            consumers[name].append(node)

    def is_scalar(name: str, value: float) -> bool:
        array = constants.get(name)
        return array is not None and array.size == 1 and bool(np.isclose(float(array.reshape(())), value))

    def only_consumer(name: str, op_type: str) -> onnx.NodeProto | None:
        users = consumers.get(name, [])
        if len(users) == 1 and users[0].op_type == op_type and name not in graph_outputs:
            return users[0]
        return None

    rewritten = 0
    for erf in [node for node in graph.node if node.op_type == "Erf"]:
        div = producer.get(erf.input[0])
        if div is None or div.op_type != "Div" or not is_scalar(div.input[1], np.sqrt(2.0)):
            continue
        x = div.input[0]
        plus_one = only_consumer(erf.output[0], "Add")
        if plus_one is None or not any(is_scalar(name, 1.0) for name in plus_one.input):
            continue
        halve = only_consumer(plus_one.output[0], "Mul")
        if halve is None or not any(is_scalar(name, 0.5) for name in halve.input):
            continue
        times_x = only_consumer(halve.output[0], "Mul")
        if times_x is None or x not in times_x.input:
            continue
        half = next(name for name in halve.input if is_scalar(name, 0.5))
        # (x * (1 + erf)) * 0.5: the first Mul now reads x and the sum, the second scales by one half
        halve.input[:] = [x, plus_one.output[0]]
        times_x.input[:] = [halve.output[0], half]
        rewritten += 1
    return rewritten
