"""k seeded training steps of the bench's own step (harness.bench.workload.prepare) in this process, with the
loss and the state (parameters and buffers) after each; deterministic mode as a context; the step's loss.

The step is the bench's: weights seeded by ``build_variant`` (which seeds torch's global generator), inputs and
labels from a generator seeded with ``harness.bench.environment.SEED``, cross-entropy, SGD with momentum, the
same batch every step. The loss is caught by a global forward hook on loss modules, so the step itself is
neither copied nor changed.
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


@contextlib.contextmanager
def capturing_losses():
    """The outputs of every loss module called meanwhile (the step's loss), detached."""
    losses: list[torch.Tensor] = []

    def hook(module, _args, output):
        if isinstance(module, torch.nn.modules.loss._Loss) and isinstance(output, torch.Tensor):
            losses.append(output.detach().clone())

    handle = torch.nn.modules.module.register_module_forward_hook(hook)
    try:
        yield losses
    finally:
        handle.remove()


@dataclass
class StepRecord:
    loss: torch.Tensor
    state: dict[str, torch.Tensor]  # parameters and buffers after the step, on the CPU


def state_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: t.detach().to("cpu", copy=True) for name, t in model.state_dict().items()}


def train_steps(spec: BenchSpec, steps: int, deterministic: bool = False) -> list[StepRecord]:
    """``steps`` training steps of a fresh, seeded workload; RuntimeError as the step raises it."""
    from harness.bench.workload import prepare

    spec = spec if spec.mode == "train" else _train(spec)
    with deterministic_mode(deterministic, spec.device):
        workload = prepare(spec)
        records = []
        for _ in range(steps):
            with capturing_losses() as losses:
                workload.step()
            loss = losses[-1].to("cpu") if losses else torch.tensor(float("nan"))
            records.append(StepRecord(loss, state_of(workload.model)))
    return records


def _train(spec: BenchSpec) -> BenchSpec:
    from dataclasses import replace

    return replace(spec, mode="train")
