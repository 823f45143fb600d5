"""The aten operators a step dispatches, forward and backward, and what they predict for CUDA.

A ``TorchDispatchMode`` records every operator the step calls, with its phase: ``backward`` while the autograd
engine runs a node (``torch._C._current_autograd_node()``), ``forward`` otherwise (the optimizer's update
included). The step is the bench's own (harness.bench.workload.prepare), run on the ``meta`` device, where it
costs nothing and shapes do not matter; a model that does not run on ``meta`` is traced on the CPU at the
same (small) input instead. Held against ``documented.raising_on_cuda()``, the trace predicts whether the
step raises on CUDA under ``torch.use_deterministic_algorithms(True)`` and through which operator; tracing
the network alone (its output's sum as the loss) as well tells the network's operators from the loss's. When
the loss holds one, the step is traced once more with the loss computed per element and averaged
(harness.repro.steps.loss_variant): the way out that the deterministic-mode check offers and measures.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from harness.bench.spec import BenchSpec
from harness.repro.documented import DocumentedOp, raising_on_cuda
from harness.repro.steps import LOSSES, loss_variant


class OpTrace(TorchDispatchMode):
    """Records operator (overload packet) names by phase; evaluates the documented ops' argument conditions."""

    def __init__(self, watch: list[DocumentedOp] = ()):
        super().__init__()
        self.ops: dict[str, set[str]] = {}
        self.hits: dict[str, set[str]] = {}  # documented op -> phases where its condition held
        self.watch: dict[str, list[DocumentedOp]] = {}
        for documented in watch:
            self.watch.setdefault(documented.aten, []).append(documented)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func.overloadpacket.__name__
        phase = "backward" if torch._C._current_autograd_node() is not None else "forward"
        self.ops.setdefault(name, set()).add(phase)
        for documented in self.watch.get(name, ()):
            if documented.when is None or documented.when(args, kwargs):
                self.hits.setdefault(name, set()).add(phase)
        return func(*args, **kwargs)


@dataclass
class Prediction:
    """Whether a training step is predicted to raise on CUDA under deterministic mode, and why: the whole step,
    its network alone, its loss alone, and the step with the per-element loss (the way out for a loss that
    raises)."""

    model: str
    traced_on: str = ""  # meta | cpu | "" (not traced)
    raises: bool | None = None  # None: could not be traced
    operators: list[dict] = field(default_factory=list)  # {aten, phase, documented, in} per raising operator
    per_element_loss: list[dict] | None = None  # the same with the per-element loss; None: not traced
    ops_traced: int = 0
    error: str = ""

    def record(self) -> dict:
        def part(where: str) -> bool | None:
            return None if self.raises is None else any(op["in"] == where for op in self.operators)

        per_element = None if self.per_element_loss is None else {
            "loss": LOSSES["per-element"], "raises_on_cuda": bool(self.per_element_loss),
            "operators": self.per_element_loss}
        return {"model": self.model, "traced_on": self.traced_on, "raises_on_cuda": self.raises,
                "network_raises": part("network"), "loss_raises": part("loss or optimizer"),
                "operators": self.operators, "per_element_loss": per_element, "ops_traced": self.ops_traced,
                "error": self.error}


def _network_step(workload, spec: BenchSpec, device: str):
    """The network alone: forward and backward of its output's sum (no loss, no optimizer)."""
    model = workload.model
    x = torch.empty(spec.full_input_shape, device=device) if device == "meta" else torch.randn(
        spec.full_input_shape, device=device)
    model.train()

    def run():
        model.zero_grad(set_to_none=True)
        out = model(x)
        out = out if isinstance(out, torch.Tensor) else out[0]
        out.float().sum().backward()
    return run


def trace_step(spec: BenchSpec, device: str = "meta", watch: list[DocumentedOp] = (), network_only=False,
               loss: str = "bench", workload=None) -> OpTrace:
    """The operators of the bench's training step for ``spec`` (or of the network alone), on ``device``, with
    the bench's loss or a variant of it (harness.repro.steps.loss_variant). ``workload``: one already prepared
    by ``traced_workload`` (building a deep model takes longer than tracing its step on meta)."""
    workload = workload or traced_workload(spec, device)
    run = _network_step(workload, workload.spec, device) if network_only else workload.run
    trace = OpTrace(watch)
    with loss_variant(loss), trace:
        run()
    return trace


def traced_workload(spec: BenchSpec, device: str):
    """The bench's training step as traced: fp32, eager, contiguous, on ``device``."""
    from harness.bench.workload import prepare

    return prepare(replace(spec, mode="train", device="cpu", exec_mode="eager", channels_last=False,
                           precision="fp32"), device=device)


def _operators(trace: OpTrace, network: OpTrace, documented: list[DocumentedOp]) -> list[dict]:
    by_name = {}
    for op in documented:
        by_name.setdefault(op.aten, op)
    return [{"aten": name, "phase": "+".join(sorted(phases)), "documented": by_name[name].entry.text,
             "in": "network" if name in network.hits else "loss or optimizer"}
            for name, phases in sorted(trace.hits.items())]


def predict(spec: BenchSpec, documented: list[DocumentedOp] | None = None) -> Prediction:
    """Trace the step on meta (else on the CPU) and hold its operators against the documented list; when the loss
    holds a documented operator, trace the step with the per-element loss too."""
    documented = raising_on_cuda() if documented is None else documented
    prediction = Prediction(spec.model)
    errors = []
    for device in ("meta", "cpu"):
        try:
            workload = traced_workload(spec, device)
            step = trace_step(spec, device, documented, workload=workload)
            network = trace_step(spec, device, documented, network_only=True, workload=workload)
            operators = _operators(step, network, documented)
            per_element = None
            if any(op["in"] != "network" for op in operators):
                per_element = _operators(trace_step(spec, device, documented, loss="per-element", workload=workload),
                                         network, documented)
        except Exception as error:  # noqa: BLE001 - a model that does not run here: try the next device
            errors.append(f"{device}: {type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}")
            continue
        prediction.traced_on, prediction.ops_traced = device, len(step.ops)
        prediction.operators, prediction.per_element_loss = operators, per_element
        prediction.raises = bool(operators)
        return prediction
    prediction.error = "; ".join(errors)
    return prediction
