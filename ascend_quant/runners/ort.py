"""ONNX Runtime on the CPU: the one session factory and `OrtRunner`.

Every ORT session the tool opens (FP32 golden, simulated .om payloads, calibration and FP16
overflow passes, per-layer analysis) comes from `make_session`, so they all compute with the same
settings and a golden never differs from a candidate by an optimisation level.
onnxruntime is imported inside the functions: it costs ~0.3 s, and the CLI starts without it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from ascend_quant.errors import UsageError, not_a_model_file
from ascend_quant.onnx_io import to_ort_bytes
from ascend_quant.runners.base import Feeds, Runner
from ascend_quant.tensors import TensorSpec, ort_dtype_name


def session_options(spin: bool = False) -> Any:
    """The one place ORT's settings live.

    Sequential execution; intra-op threads left to ORT (all cores); basic graph optimisation,
    which folds constants (e.g. DequantizeLinear of int8 weights, exactly) but applies none of
    the extended fusions that would turn Q/DQ pairs into integer kernels or drop FP16 Casts.
    Idle intra-op threads sleep (`session.intra_op.allow_spinning = 0`): the same threads run
    the same kernels (the same results), without burning CPU while the caller writes outputs or
    accumulates metrics between runs (golden, compare, calibration, preflight); on a shared
    2-core machine that made golden and compare faster, not slower (`benchmarks/ort_spin.py`).
    `spin=True` is ORT's default, spinning threads, for latency timing only: back-to-back runs
    are what a latency benchmark measures.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    # Fatal only: a failing run raises with the same text, which callers turn into one `error:`
    # line; ORT's own ERROR log line would print a second, coloured one.
    options.log_severity_level = 4
    if not spin:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options


_NODE_FAILURE = re.compile(
    r"while running (?P<op>\w+) node\. Name:'(?P<node>[^']*)' Status Message: (?P<why>.*)"
)


def run_failure(exc: BaseException) -> str | None:
    """ORT's reason for failing a run, as `node NAME (Op): why`; None for anything not ORT's."""
    if not type(exc).__module__.startswith("onnxruntime"):
        return None
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    found = _NODE_FAILURE.search(text)
    if found is None:
        return text[:300]
    return f"node {found['node']} ({found['op']}): {found['why'][:240]}"


@contextmanager
def data_rejected(what: str) -> Iterator[None]:
    """ORT failing to run the user's own FP32 model on the user's data (a token id beyond the
    vocabulary, an index past a table) is bad input, not a bug: a UsageError (exit 2) naming
    the data and the node, instead of an internal error."""
    try:
        yield
    except Exception as exc:
        reason = run_failure(exc)
        if reason is None:
            raise
        raise UsageError(
            f"the FP32 model fails on {what}: {reason}",
            hint="check the data's values against what the model accepts (e.g. token ids "
            "within the vocabulary, indices within the tables they index)",
        ) from None


def make_session(model: bytes | onnx.ModelProto, spin: bool = False) -> Any:
    """An `InferenceSession` on the CPU provider; a model ORT rejects is a UsageError."""
    import onnxruntime as ort

    data = to_ort_bytes(model) if isinstance(model, onnx.ModelProto) else model
    try:
        return ort.InferenceSession(
            data, sess_options=session_options(spin), providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # ORT raises its own exception types
        raise UsageError(
            f"ONNX Runtime cannot load the model: {str(exc).splitlines()[0]}",
            hint="check the model with `ascend-quant inspect`",
        ) from None


def expose_outputs(model: onnx.ModelProto, tensors: Iterable[str]) -> onnx.ModelProto:
    """A copy of `model` that also outputs `tensors` (graph inputs are left to the feeds).

    Each new output gets the element type shape inference found for it (float when unknown), so
    integer and FP16 intermediates can be exposed as well as float ones.
    """
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    graph_inputs = {i.name for i in copy.graph.input}
    existing = {o.name for o in copy.graph.output}
    wanted = [t for t in dict.fromkeys(tensors) if t not in existing and t not in graph_inputs]
    if not wanted:
        return copy
    types = tensor_types(copy)
    for name in wanted:
        copy.graph.output.append(
            helper.make_tensor_value_info(name, types.get(name, TensorProto.FLOAT), None)
        )
    return copy


def tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type per tensor name, from the model's value_info or from shape inference."""
    known = {
        v.name: v.type.tensor_type.elem_type
        for v in list(model.graph.value_info) + list(model.graph.output)
        if v.type.tensor_type.elem_type
    }
    produced = {o for n in model.graph.node for o in n.output if o}
    if produced - set(known):
        try:
            inferred = onnx.shape_inference.infer_shapes(model)
        except Exception:  # a model shape inference cannot handle still runs in ORT
            return known
        for v in inferred.graph.value_info:
            if v.type.tensor_type.elem_type:
                known.setdefault(v.name, v.type.tensor_type.elem_type)
    return known


def _specs(args: list[Any]) -> list[TensorSpec]:
    return [
        TensorSpec(
            a.name,
            ort_dtype_name(a.type),
            tuple(d if isinstance(d, int) else str(d) for d in a.shape),
        )
        for a in args
    ]


class OrtRunner(Runner):
    """An ONNX model on ONNX Runtime's CPU provider (the FP32 golden, a simulated payload).

    `metadata` carries whatever the opener knows about the model (a simulated .om's header).
    `spin`: idle ORT threads spin between runs (`session_options`); only for latency timing.
    """

    def __init__(
        self,
        model: bytes | onnx.ModelProto | Path | str,
        name: str = "",
        metadata: dict[str, Any] | None = None,
        spin: bool = False,
    ) -> None:
        if isinstance(model, (str, Path)):
            path = Path(model)
            if not path.is_file():
                raise not_a_model_file(path)
            name = name or path.name
            model = path.read_bytes()
        self.name = name
        self.metadata: dict[str, Any] = dict(metadata or {})
        self._model = model
        self.spin = spin
        self._session: Any = make_session(model, spin)
        self._inputs = _specs(self._session.get_inputs())
        self._outputs = _specs(self._session.get_outputs())
        self._input_names = {s.name for s in self._inputs}
        self._passthrough: list[str] = []  # exposed tensors that are graph inputs
        self._names: set[str] | None = None
        self.last_latency_ms = 0.0

    def input_specs(self) -> list[TensorSpec]:
        return list(self._inputs)

    def output_specs(self) -> list[TensorSpec]:
        return list(self._outputs) + [
            next(s for s in self._inputs if s.name == n) for n in self._passthrough
        ]

    def _proto(self) -> onnx.ModelProto:
        return self._model if isinstance(self._model, onnx.ModelProto) else _parse(self._model)

    def tensor_names(self) -> set[str]:
        """The graph inputs and every tensor a main-graph node produces."""
        if self._names is None:
            graph = self._proto().graph
            self._names = {o for n in graph.node for o in n.output if o}
            self._names |= {o.name for o in graph.output} | self._input_names
        return set(self._names)

    def with_outputs(self, names: Sequence[str]) -> OrtRunner:
        """The same model with `names` (any tensor of the main graph) as extra outputs."""
        proto = self._proto()
        known = self.tensor_names()
        unknown = [n for n in names if n not in known]
        if unknown:
            raise UsageError(
                f"{self.name or 'model'}: no tensor named {', '.join(unknown[:5])}",
                hint="name tensors of the model's main graph (`ascend-quant inspect`)",
            )
        runner = OrtRunner(expose_outputs(proto, names), self.name, self.metadata, self.spin)
        runner._passthrough = [n for n in dict.fromkeys(names) if n in self._input_names]
        return runner

    def _run(self, feeds: Feeds) -> Feeds:
        if self._session is None:
            raise UsageError(f"{self.name or 'runner'} is closed")
        names = [o.name for o in self._outputs]
        values = self._session.run(names, feeds)
        result = dict(zip(names, values))
        for name in self._passthrough:
            result[name] = feeds[name]
        return result

    def close(self) -> None:
        self._session = None


def _parse(data: bytes) -> onnx.ModelProto:
    proto = onnx.ModelProto()
    proto.ParseFromString(data)
    return proto


def run_once(model: onnx.ModelProto | bytes, feeds: Feeds) -> dict[str, np.ndarray]:
    """Open, infer once, close: for checks that need one result (e.g. preflight verification)."""
    with OrtRunner(model) as runner:
        return runner.infer(feeds)
