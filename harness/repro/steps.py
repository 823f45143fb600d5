"""k seeded training steps of the bench's own step (harness.bench.workload.prepare) in this process, with the
loss and the state (parameters and buffers) after each; deterministic mode as a context; the step's loss.

The step is the bench's: weights seeded by ``build_variant`` (which seeds torch's global generator), inputs and
labels from a generator seeded with ``harness.bench.environment.SEED``, cross-entropy, SGD with momentum, the
same batch every step. The loss is caught by global forward hooks on loss modules, which also tell an error
raised inside the loss from one raised in the network, so the step itself is neither copied nor changed; one
variant of it, ``loss_variant("per-element")``, computes the same loss through kernels that do not raise under
deterministic mode on CUDA (the way out the deterministic-mode check offers and measures).
"""
from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass

import torch

from harness.bench.spec import BenchSpec

CUBLAS_WORKSPACE = ":4096:8"  # what cuBLAS needs for deterministic results (CUDA >= 10.2), set before CUDA starts
NOT_DETERMINISTIC = re.compile(r"^\s*(?P<op>[\w.:]+) does not have a deterministic implementation")


def prepare_cuda_environment(device: str) -> None:
    """CUBLAS_WORKSPACE_CONFIG before cuBLAS starts; a value the user set is kept."""
    if device == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", CUBLAS_WORKSPACE)


@contextlib.contextmanager
def deterministic_mode(on: bool, device: str):
    """torch.use_deterministic_algorithms(on) and, on CUDA, cudnn.deterministic = on; restored afterwards."""
    before = torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.deterministic
    torch.use_deterministic_algorithms(on)
    if device == "cuda":
        torch.backends.cudnn.deterministic = on
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0])
        torch.backends.cudnn.deterministic = before[1]


def raised_operator(error: BaseException) -> str:
    """The operator a deterministic-mode error names ("avg_pool3d_backward_cuda does not have a deterministic
    implementation, ..."); empty when the error is another one."""
    found = NOT_DETERMINISTIC.match(str(error))
    return found["op"] if found else ""


class StepError(RuntimeError):
    """A training step raised; ``where`` says whether inside a loss module's forward ("loss") or elsewhere
    ("network or optimizer"). The message is the original error's."""

    def __init__(self, error: RuntimeError, where: str):
        super().__init__(str(error))
        self.where = where


@dataclass
class LossWatch:
    losses: list[torch.Tensor]  # the outputs of every loss module called meanwhile (the step's loss), detached
    inside: str = ""  # the loss module running now; still set when its forward raised


def _is_loss(module) -> bool:
    return isinstance(module, torch.nn.modules.loss._Loss)


@contextlib.contextmanager
def watching_losses():
    """Catch the step's loss (global forward hooks on loss modules: the step is neither copied nor changed) and
    know whether an error came from inside a loss's forward."""
    watch = LossWatch([])

    def before(module, _args):
        if _is_loss(module):
            watch.inside = type(module).__name__

    def after(module, _args, output):
        if _is_loss(module):
            watch.inside = ""
            if isinstance(output, torch.Tensor):
                watch.losses.append(output.detach().clone())

    handles = (torch.nn.modules.module.register_module_forward_pre_hook(before),
               torch.nn.modules.module.register_module_forward_hook(after))
    try:
        yield watch
    finally:
        for handle in handles:
            handle.remove()


# The bench's loss (CrossEntropyLoss, reduction "mean") reaches CUDA's reduced NLLLoss kernel, which sums with atomics
# and raises under deterministic mode; computed per element (reduction "none") and then averaged, it is the same
# quantity (no class weights; random labels never hit ignore_index) through kernels that do not raise.
LOSSES = {"bench": "the bench's: CrossEntropyLoss (mean)",
          "per-element": "CrossEntropyLoss(reduction='none') then .mean()"}


@contextlib.contextmanager
def loss_variant(loss: str):
    """``bench``: nothing changes. ``per-element``: every loss module with reduction "mean" and no class weights
    computes per element and returns the mean of those (set before its forward, restored after)."""
    if loss not in LOSSES:
        raise ValueError(f"loss {loss!r}: one of {', '.join(LOSSES)}")
    if loss == "bench":
        yield
        return
    changed: set[int] = set()
    modules: list[torch.nn.Module] = []

    def before(module, _args):
        if _is_loss(module) and module.reduction == "mean" and getattr(module, "weight", None) is None:
            module.reduction = "none"
            changed.add(id(module))
            modules.append(module)

    def after(module, _args, output):
        if id(module) in changed:
            changed.discard(id(module))
            module.reduction = "mean"
            return output.mean()
        return None

    handles = (torch.nn.modules.module.register_module_forward_pre_hook(before),
               torch.nn.modules.module.register_module_forward_hook(after))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
        for module in modules:  # a forward that raised never reached ``after``
            module.reduction = "mean"


@dataclass
class StepRecord:
    loss: torch.Tensor
    state: dict[str, torch.Tensor]  # parameters and buffers after the step, on the CPU


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: t.detach().to("cpu", copy=True) for name, t in model.state_dict().items()}


def train_steps(spec: BenchSpec, steps: int, deterministic: bool = False, loss: str = "bench",
                workload=None) -> list[StepRecord]:
    """``steps`` training steps of a fresh, seeded workload (``workload``: one just prepared for
    ``training_spec(spec)``), with the bench's loss or ``loss_variant(loss)``; StepError, saying where, when a
    step raises a RuntimeError."""
    from harness.bench.workload import prepare

    with deterministic_mode(deterministic, spec.device), loss_variant(loss):
        workload = workload or prepare(training_spec(spec))
        records = []
        for _ in range(steps):
            with watching_losses() as watch:
                try:
                    workload.step()
                except RuntimeError as error:
                    raise StepError(error, "loss" if watch.inside else "network or optimizer") from error
            value = watch.losses[-1].to("cpu") if watch.losses else torch.tensor(float("nan"))
            records.append(StepRecord(value, state_of(workload.model)))
    return records


def training_spec(spec: BenchSpec) -> BenchSpec:
    from dataclasses import replace

    return spec if spec.mode == "train" else replace(spec, mode="train")
