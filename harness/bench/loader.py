"""Training fed by a real loader (``--loader``, ``--workers``; docs/pipeline.md): nnU-Net's own comparison of a
training step with and without data loading, made by the bench. The tensor-fed row is "without"; the loader-fed
row beside it is "with": a ``torch.utils.data.DataLoader`` with ``workers`` worker processes (0: in the main process)
over a pipeline's per-sample augmentation, batches of the spec's batch size moved to the device, and the timed step
includes waiting for the next batch. Each throughput block records the seconds spent blocked in ``next(iterator)``:
its share of the block is the row's ``data_wait``.

The pipelines live in the room above (harness.pipeline: nnU-Net v2's and MONAI's transforms through their own
libraries, a user's ``module:function``). They reach bench through the hook held here (``register_pipelines``;
importing harness.pipeline registers them), as the memory predictor does through harness.bench.predictors.
"""
from __future__ import annotations

import multiprocessing
import time
from dataclasses import replace
from typing import TYPE_CHECKING, Callable

from harness.bench.spec import NO_LOADER, BenchSpec, shape_text

if TYPE_CHECKING:  # torch only when a loader is built: importing harness.pipeline (which registers here) stays light
    from harness.bench.timing import WarmUp

_FIND: Callable | None = None
NOT_REGISTERED = "no input pipelines registered (import harness.pipeline, which registers them)"
ENDLESS = 2 ** 62  # the dataset's length: the loader never runs out during a measurement
PREFETCH = 2  # batches each worker keeps ready (torch's default prefetch_factor)


def register_pipelines(find: Callable) -> None:
    """``find(name)`` -> a pipeline for a ``--loader`` value: an object whose ``build(patch, channels)`` returns
    a zero-argument callable making one augmented sample."""
    global _FIND
    _FIND = find


def find_pipeline(name: str):
    if _FIND is None:
        raise LookupError(NOT_REGISTERED)
    return _FIND(name)


def fed_specs(found: list[BenchSpec], loader: str, workers: tuple[int, ...]) -> list[BenchSpec]:
    """``found`` with, right after each 3D training spec, its loader-fed twins (one per worker count): the same
    configuration, so that the two rows differ by what feeds the step alone."""
    out = []
    for spec in found:
        out.append(spec)
        if loader != NO_LOADER and spec.mode == "train" and len(spec.input_shape) == 4:
            out += [replace(spec, loader=loader, workers=w) for w in workers]
    return out


def network_sample(made, shape: tuple[int, ...]) -> dict:
    """One sample as the network takes it: ``{"image": (C, *patch) float32}``, with ``"label"`` where the pipeline
    made one (a tensor, or nnU-Net's list of deep-supervision targets); plain tensors (MONAI's MetaTensor metadata
    dropped), which torch's default collate batches. Accepted forms: nnU-Net's dict (``image``, ``segmentation``),
    MONAI's list of crop dicts (``image``, ``label``), or a tensor. Channels: a one-channel image is repeated to the
    network's C (a user's pipeline; nnunet and monai build C-channel cases); a pipeline that returns no image (only
    its per-sample work) is given a stand-in of zeros. Any other shape is an error: the row says which shape came and
    which the network takes."""
    import torch

    if isinstance(made, (list, tuple)) and made and isinstance(made[0], dict):
        made = made[0]  # MONAI's RandCropByPosNegLabeld: a list of num_samples crops
    image, label = (made.get("image"), made.get("segmentation", made.get("label"))) if isinstance(made, dict) \
        else (made, None)
    if not isinstance(image, torch.Tensor):
        image = torch.zeros(shape)
    image = image.as_subclass(torch.Tensor).float()
    if image.dim() == len(shape) - 1:
        image = image.unsqueeze(0)
    if image.shape[0] == 1 and shape[0] > 1 and tuple(image.shape[1:]) == tuple(shape[1:]):
        image = image.repeat(shape[0], *([1] * (len(shape) - 1)))
    if tuple(image.shape) != tuple(shape):
        raise ValueError(f"the loader's sample is {shape_text(tuple(image.shape))}, the network takes "
                         f"{shape_text(tuple(shape))} (channels x patch)")
    sample = {"image": image}
    if isinstance(label, torch.Tensor):
        sample["label"] = label.as_subclass(torch.Tensor)
    elif isinstance(label, (list, tuple)) and label and all(isinstance(t, torch.Tensor) for t in label):
        sample["label"] = [t.as_subclass(torch.Tensor) for t in label]
    return sample


class Samples:
    """A map-style dataset without end: every item is one augmented sample of the pipeline at the spec's patch and
    channels (the pipeline is built lazily, once in each worker)."""

    def __init__(self, pipeline, shape: tuple[int, ...]):
        self.pipeline, self.shape, self._sample = pipeline, tuple(shape), None

    def __len__(self) -> int:
        return ENDLESS

    def __getitem__(self, index: int) -> dict:
        if self._sample is None:
            self._sample = self.pipeline.build(self.shape[1:], self.shape[0])
        return network_sample(self._sample(), self.shape)


def _one_thread(_worker_id: int) -> None:
    import torch

    torch.set_num_threads(1)  # each worker one core, as the per-core rates (harness.pipeline.rates) assume


def to_device(batch, device: str):
    """A collated batch (dicts, lists, tensors) on ``device``; asynchronous from pinned memory on CUDA."""
    import torch

    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


class Feed:
    """The loader of one loader-fed spec. ``next()`` gives the next batch's network input on the device and adds
    the seconds it was blocked in ``next(iterator)`` to ``waited_s`` (the host-to-device copy is the step's own
    work, not waiting). Workers are forked (Linux), so a pipeline loaded from a file reaches them as it is;
    each runs at one thread; pinned memory on CUDA. ``close()`` stops the workers."""

    def __init__(self, spec: BenchSpec, device: str):
        from torch.utils.data import DataLoader

        workers = spec.workers
        fork = "fork" if workers and "fork" in multiprocessing.get_all_start_methods() else None
        loader = DataLoader(Samples(find_pipeline(spec.loader), spec.input_shape), batch_size=spec.batch,
                            num_workers=workers, pin_memory=device == "cuda",
                            worker_init_fn=_one_thread if workers else None,
                            prefetch_factor=PREFETCH if workers else None, multiprocessing_context=fork)
        self.device = device
        self.waited_s = 0.0
        self._batches = iter(loader)  # workers start here

    def next(self):
        start = time.perf_counter()
        batch = next(self._batches)
        self.waited_s += time.perf_counter() - start
        return to_device(batch, self.device)["image"]

    def close(self) -> None:
        self._batches = None  # the iterator's finalizer shuts its workers down


def warmup_steps(spec: BenchSpec) -> int:
    """Warm-up steps of a loader-fed row: the spec's, and at least enough to use up the batches the workers made
    ready while the first step started them (``PREFETCH`` per worker), so the timed steps see the steady state
    (an empty queue when the loader is the slower side). 0 stays 0 (no warm-up asked for)."""
    return 0 if spec.warmup <= 0 else max(spec.warmup, PREFETCH * spec.workers + 1)


def warm_up_fed(step: Callable[[], object], spec: BenchSpec) -> WarmUp:
    """Untimed steps before measuring a loader-fed row: the first timed alone (``setup_s``: worker start-up, the
    pipeline built in each worker, compilation), then the rest of ``warmup_steps``. No settling test as in
    ``timing.warm_up``: a fed step's time varies with the arrival of batches by nature, which is what is measured
    (the tensor-fed row beside it settles the device)."""
    from harness.bench.timing import WarmUp

    steps = warmup_steps(spec)
    if steps <= 0:
        return WarmUp(None, 0, False)
    start = time.perf_counter()
    step()
    setup_s = time.perf_counter() - start
    for _ in range(steps - 1):
        step()
    return WarmUp(setup_s, steps, True)


def time_fed_blocks(run: Callable[[], object], feed: Feed, steps: int, blocks: int,
                    device: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Throughput blocks as ``timing.time_blocks`` times them, each with the seconds of it spent waiting for data:
    (block seconds, waited seconds), paired."""
    from harness.bench.timing import time_block

    times, waits = [], []
    for _ in range(blocks):
        before = feed.waited_s
        times.append(time_block(run, steps, device))
        waits.append(feed.waited_s - before)
    return tuple(times), tuple(waits)
