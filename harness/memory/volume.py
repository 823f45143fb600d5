"""A whole-volume pass (mode ``volume``, harness.bench.volume), simulated as a step is (harness.memory.tracing).

The pass is the one the benchmark times: ``prepare_volume`` builds the model, the volume (and its copy padded to the
window, where the volume is smaller), and runs MONAI's ``sliding_window_inference`` through ``infer_volume`` (with
nnU-Net's mirroring where asked) in the same autocast region, here on CPU fake tensors with CUDA's autocast policy,
under the step tracker: the set-up, then two passes (the measured pass follows warm-up passes; peaks count from the
last). Everything the pass holds on the device is then followed as a step's tensors are: the volume, MONAI's
importance map, its stitched output and count map, each window batch, the window output MONAI still holds while the
next batch runs, the mirrored passes' sums and flipped copies, and each window batch's forward pass with its
convolution workspaces (the fitted model, harness.memory.workspace).

Two departures, each because fake tensors cannot do it or for cost, both tested:
- MONAI computes its importance map with a data-dependent ``.item()`` (its smallest weight), which fake tensors
  cannot run: the simulation substitutes a map of the same shape, dtype and device (``_importance_map``). Left out:
  the window-sized maps MONAI makes on the way, before any window runs.
- A forward pass allocates the same whatever the voxels hold: the first call on a kind of input (shape, strides,
  dtype) is simulated, each later one replays its events with fresh storages (``_Replayed``) instead of simulating
  it again; suites/test_volume.py holds the replay equal to simulating every call.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import replace

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from harness.bench.spec import BenchSpec
from harness.bench.volume import prepare_volume, resolve_volume, volume_refusal
from harness.memory.autocast import CudaAutocast
from harness.memory.events import ALLOC, FREE, RETYPE
from harness.memory.tracing import StepTracker, Trace, _canonical, check_torch

PASSES = 2  # warm-up's pass, then the measured one


@contextlib.contextmanager
def _importance_map():
    """MONAI's importance map as a map of its shape, dtype and device (see the module docstring)."""
    from monai.inferers import utils as monai_utils

    original = monai_utils.compute_importance_map

    def substitute(patch_size, mode="constant", sigma_scale=0.125, device="cpu", dtype=torch.float32):
        return torch.ones(tuple(patch_size), device=device, dtype=dtype)

    monai_utils.compute_importance_map = substitute
    try:
        yield
    finally:
        monai_utils.compute_importance_map = original


class _Replayed:
    """A model's forward pass, simulated on the first call per kind of input and replayed after: the recorded
    events again, each storage a fresh one, the output's the storage of an empty tensor of the output's shape
    (the one the caller gets). A call whose events free or retype a storage allocated before it, or leave more
    than its output behind, is simulated every time."""

    def __init__(self, tracker: StepTracker, forward):
        self.tracker, self.forward = tracker, forward
        self.recorded: dict[tuple, tuple | None] = {}
        self.replays = 0

    def __call__(self, x: torch.Tensor, *args, **kwargs):
        kind = (tuple(x.shape), tuple(x.stride()), x.dtype, x.device)
        events = self.tracker.events
        start = len(events)
        pattern = self.recorded.get(kind) if not args and not kwargs else None
        if pattern is None:
            out = self.forward(x, *args, **kwargs)
            if kind not in self.recorded and not args and not kwargs:
                self.recorded[kind] = self._pattern(events[start:], out)
            return out
        calls, output, count, shape, stride, dtype = pattern
        out = torch.empty_strided(shape, stride, dtype=dtype, device=x.device)
        (alloc,) = events[start:]  # the empty output's storage, tracked: it takes the recorded output's place
        del events[start:]
        self.replays += 1
        name = {n: alloc[1] if n == output else ("replayed", self.replays, n) for n in range(count)}
        events.extend((e[0], name[e[1]], *e[2:]) if e[0] in (ALLOC, FREE, RETYPE) else e for e in calls)
        return out

    def _pattern(self, calls: list, out) -> tuple | None:
        """The call's events with its storages numbered in allocation order, and the output's number; None where
        the call cannot be replayed (see the class docstring)."""
        if not isinstance(out, torch.Tensor) or out.storage_offset() or not out.is_contiguous():
            return None
        winfo, _ = self.tracker._WINFO.get(out.untyped_storage(), (None, None))
        numbers: dict = {}  # the tracker's key (reused once freed) -> allocation number
        local, count = [], 0
        for event in calls:
            if event[0] == ALLOC:
                numbers[event[1]], count = count, count + 1
                local.append((ALLOC, numbers[event[1]], *event[2:]))
            elif event[0] in (FREE, RETYPE):
                if event[1] not in numbers:
                    return None  # a storage from before the call
                number = numbers.pop(event[1]) if event[0] == FREE else numbers[event[1]]
                local.append((event[0], number, *event[2:]))
            else:
                local.append(event)
        if winfo is None or list(numbers) != [id(winfo)] or out.untyped_storage().nbytes() != out.numel() * out.element_size():
            return None
        return tuple(local), numbers[id(winfo)], count, tuple(out.shape), tuple(out.stride()), out.dtype


def volume_trace(spec: BenchSpec, fake: bool = True, replay_forwards: bool = True) -> Trace:
    """The allocation stream of ``spec``'s whole-volume pass (mode ``volume``): set-up, then ``PASSES`` passes, each
    after a ``MARK``. On CPU fake tensors by default (``fake=False``: real CPU tensors, every forward pass run, for
    the exactness proof); ``replay_forwards``: replay repeated forward passes rather than simulate each (fake only).
    Raises ValueError for a volume the harness refuses (``volume_refusal``)."""
    check_torch()
    config = resolve_volume(replace(spec, exec_mode="eager"))
    refusal = volume_refusal(config)
    if refusal:
        raise ValueError(refusal)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with FakeTensorMode() if fake else contextlib.nullcontext(), StepTracker() as tracker, _importance_map():
            job = prepare_volume(config, "cpu", autocast=CudaAutocast)
            tracker.track_module(job.model)
            if fake and replay_forwards:
                job.model.forward = _Replayed(tracker, job.model.forward)
            for _ in range(PASSES):
                tracker.mark()
                job.run()  # the stitched volume is dropped at once, as the measurement drops it
    del job  # after the tracker has closed: tearing the job down is no part of the pass
    return Trace(_canonical(tracker.events), 1, tuple(spec.input_shape[1:]))
