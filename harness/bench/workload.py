"""A ready-to-time step for a spec: the model on its device, inputs, and the step in two forms.

``run`` issues one step and returns without waiting (CUDA runs asynchronously): what a training or
inference loop does, and what throughput blocks repeat. ``step`` is ``run`` plus a synchronization, so
a host timer around it measures the GPU work: what latency samples time.

Execution modes: ``eager``; ``compile`` (``torch.compile``, default mode); ``cudagraphs`` (CUDA graphs
through ``torch.compile(mode="reduce-overhead")``: the model's forward and, in training, its backward are
captured; the optimizer step runs eagerly). Compilation and capture happen in the first calls, which
the warm-up times on their own and never inside timed rounds.

A loader-fed spec (``spec.loader`` other than "none"; harness.bench.loader) takes each step's input batch from a
DataLoader instead of a batch made once: the batch (labels included) is moved to the device inside the step, and the
loss is taken against the workload's own target (the network's classes, which a pipeline's labels need not match).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Callable

import torch

from harness.bench.configuration import Configuration, resolve
from harness.bench.environment import SEED
from harness.catalog.meta_probe import build_variant
from harness.bench.loader import Feed
from harness.bench.spec import NO_LOADER, BenchSpec
from harness.bench.timing import synchronize

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
COMPILE_MODES = {"eager": None, "compile": "default", "cudagraphs": "reduce-overhead"}


@dataclass
class Workload:
    spec: BenchSpec
    model: torch.nn.Module
    run: Callable[[], torch.Tensor]  # one inference or training step, not synchronized
    step: Callable[[], torch.Tensor]  # the same, synchronized
    sample: torch.Tensor  # one sample (batch 1), for counting
    feed: Feed | None = None  # loader-fed rows: the loader each step takes its batch from (harness.bench.loader)


def _autocast(spec: BenchSpec, device: str, autocast=None):
    if spec.precision == "fp32" or device == "meta":  # meta counts work only: precision changes no FLOPs
        return contextlib.nullcontext()
    if autocast is not None:  # another device's autocast policy on these tensors (harness.bench.memory_model)
        return autocast(AUTOCAST_DTYPES[spec.precision])
    return torch.autocast(device_type=device, dtype=AUTOCAST_DTYPES[spec.precision])


def _inputs(spec: BenchSpec, device: str):
    if device == "meta":
        return torch.empty(spec.full_input_shape, device="meta"), None
    generator = torch.Generator(device=device).manual_seed(SEED)
    return torch.randn(spec.full_input_shape, device=device, generator=generator), generator


def _target(config: Configuration, device: str, generator) -> torch.Tensor:
    """Random class labels shaped as the family's training target: one per sample (classification) or
    one per voxel (segmentation); the number of classes is the output's channel count."""
    spec, verdict = config.spec, config.verdict
    if not verdict.supported:
        raise ValueError(verdict.message())
    classes = verdict.output_shape[1]
    if config.variant.record.target == "classification":
        return torch.randint(0, classes, (spec.batch,), device=device, generator=generator)
    return torch.randint(0, classes, (spec.batch, *verdict.output_shape[2:]), device=device, generator=generator)


def configure_backends(spec: BenchSpec, device: str) -> None:
    """Set the backend flags a CUDA step depends on from the spec, explicitly, for every CUDA workload.

    ``cudnn.benchmark`` is set to ``spec.cudnn_benchmark`` (recorded in the row's ``cudnn_benchmark``
    column) and is deliberately not restored when ``prepare`` returns: the step runs afterwards and must
    run under it, and since every CUDA workload sets it, no configuration inherits another's value. TF32 is
    left as torch (or the user) set it and recorded by ``environment.capture`` (``cudnn_tf32``,
    ``matmul_tf32``). On the CPU and on ``meta`` nothing is touched: no flag here changes them."""
    if device != "cuda":
        return
    if not torch.cuda.is_available():
        raise RuntimeError("device cuda requested but torch.cuda.is_available() is False")
    torch.backends.cudnn.benchmark = spec.cudnn_benchmark


def prepare(config: Configuration, device: str | None = None, autocast=None) -> Workload:
    """Build everything the timed step needs for a resolved configuration; nothing here is timed.
    ``device="meta"`` gives the same step on the meta device, where it costs nothing (for counting its
    FLOPs). A bare BenchSpec is resolved first. ``autocast``: a context factory (dtype -> context) used in
    place of ``torch.autocast`` (the memory model runs CUDA's autocast policy on CPU fake tensors)."""
    if isinstance(config, BenchSpec):
        config = resolve(config)
    spec = config.spec
    device = device or spec.device
    configure_backends(spec, device)
    model = build_variant(config.variant, spec.constructor_overrides, device, seed=SEED)
    fed = spec.loader != NO_LOADER and device != "meta"  # on meta (counting) the step is the same without a loader
    # A loader-fed step takes each batch from its loader: no batch of inputs is kept on the device, only one sample.
    x, generator = _inputs(replace(spec, batch=1) if fed else spec, device)
    sample = x[:1].clone()
    memory_format = None
    if spec.channels_last and device != "meta":
        memory_format = torch.channels_last_3d if x.dim() == 5 else torch.channels_last
        model = model.to(memory_format=memory_format)
        x = x.contiguous(memory_format=memory_format)
    mode = COMPILE_MODES[spec.exec_mode] if device != "meta" else None
    runnable = torch.compile(model, mode=mode) if mode else model

    if spec.mode == "inference":
        model.eval()

        def run():
            with torch.inference_mode(), _autocast(spec, device, autocast):
                return runnable(inputs())
    else:
        model.train()
        target = _target(config, device, generator)
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
        criterion = torch.nn.CrossEntropyLoss()

        def run():
            optimizer.zero_grad(set_to_none=True)
            with _autocast(spec, device, autocast):
                out = runnable(inputs())
                loss = criterion(out.float(), target)
            loss.backward()
            optimizer.step()
            return out.detach()

    feed = Feed(spec, device) if fed else None  # last: its workers start here

    def inputs():
        """The step's input: the batch made once, or the loader's next batch (waiting for it is part of the step)."""
        if feed is None:
            return x
        batch = feed.next()
        return batch if memory_format is None else batch.contiguous(memory_format=memory_format)

    def step():
        out = run()
        synchronize(device)
        return out

    return Workload(spec, model, run, step, sample, feed)
