"""Running a model on the ``meta`` device: once, recording its output and five stage shapes (``run_once``),
or many times for the probed envelope (``MetaProber``: does this input run, and the model's size rule).

Run once and record what it did: output shape and the five stage shapes.

On the ``meta`` device this costs no arithmetic (shape-only), yet goes through PyTorch's own shape
checks; shortcut type 'A' cannot run there (the article builds its zero channels on the CPU).
"""
from __future__ import annotations

import contextlib
import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import torch

from harness.catalog.registry import Shape, Variant, get_family, get_variant

def build(name: str, overrides=None, device: str = "cpu", seed: int = 0) -> torch.nn.Module:
    return build_variant(get_variant(name), overrides, device, seed)


def build_variant(variant: Variant, overrides=None, device: str = "cpu", seed: int = 0) -> torch.nn.Module:
    """The variant's model, seeded, built directly on ``device``."""
    missing = variant.unavailable_reason()
    if missing:
        raise ValueError(f"{variant.name} is not available here: it {missing}")
    torch.manual_seed(seed)
    with torch.device(device):
        return variant.builder(**variant.constructor_args(**(overrides or {})))


@contextlib.contextmanager
def recording_stages(model: torch.nn.Module, family: str):
    """Collects the stage outputs' shapes (first call of each stage module) into the yielded list."""
    shapes: dict[str, Shape] = {}
    handles = []
    stage_modules = get_family(family).stage_modules  # empty for peers and user models: no stages recorded
    for module_name in stage_modules:
        def hook(_module, _inputs, output, module_name=module_name):
            shapes.setdefault(module_name, tuple(output.shape))
        handles.append(model.get_submodule(module_name).register_forward_hook(hook))
    stages: list[Shape] = []
    try:
        yield stages
    finally:
        for handle in handles:
            handle.remove()
        stages.extend(shapes[m] for m in stage_modules if m in shapes)


def run_once(name: str, input_shape, overrides=None, mode: str = "inference", device: str = "cpu",
             model: torch.nn.Module | None = None) -> tuple[Shape, tuple[Shape, ...]]:
    """Forward (and in ``train`` mode a backward) pass; returns (output shape, stage shapes).

    Raises whatever the model raises: that is the point of running it.
    """
    variant = get_variant(name)
    model = model if model is not None else build(name, overrides, device)
    model.train(mode == "train")
    x = torch.randn(tuple(input_shape), device=device)
    with recording_stages(model, variant.family) as stages:
        if mode == "train":
            out = model(x)
            out.float().mean().backward()
        else:
            with torch.no_grad():
                out = model(x)
    return tuple(out.shape), tuple(stages)


# --- probing: the envelope of models the harness did not hand-write (harness.envelope.probed) -----------
PROBE_LIMIT = 72
BASE_SIZES = (64, 96, 128, 32, 160, 192, 256, 16)
CHANNELS_TRIED = (1, 2, 3, 4)


@dataclass(frozen=True)
class Rule:
    spatial_dims: int
    channels: int
    base_size: int
    min_size: int | None  # None: no cubic size up to PROBE_LIMIT ran
    multiple: int | None
    regular: bool  # every probed size obeys "n >= min_size and n % multiple == 0"

    def describe(self) -> str:
        if self.min_size is None:
            return f"no cubic input of {self.channels} channel(s) up to {PROBE_LIMIT} ran"
        text = f"{self.channels} input channel(s); every spatial size at least {self.min_size}"
        return text + (f" and a multiple of {self.multiple}" if self.multiple and self.multiple > 1 else "")

    def round_up(self, n: int) -> int:
        if self.min_size is None:
            return n
        n = max(n, self.min_size)
        return self.multiple * math.ceil(n / self.multiple) if self.multiple else n


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


class MetaProber:
    """Builds a model once on the meta device and answers questions about inputs by running it there."""

    def __init__(self, build, spatial_dims: int, channels_hint: int | None):
        self.build, self.spatial_dims, self.channels_hint = build, spatial_dims, channels_hint
        self._model = None

    def model(self):
        if self._model is None:
            with warnings.catch_warnings(), torch.device("meta"):
                warnings.simplefilter("ignore")
                self._model = self.build()
        return self._model

    @lru_cache(maxsize=4096)
    def run(self, shape: tuple[int, ...], train: bool) -> tuple[tuple[int, ...] | None, str]:
        """(output shape, "") when the input runs, else (None, the error's first line)."""
        model = self.model()
        model.train(train)
        try:
            with warnings.catch_warnings(), torch.set_grad_enabled(train):
                warnings.simplefilter("ignore")
                out = model(torch.empty(shape, device="meta"))
        except Exception as error:  # whatever the model raises is the answer: it does not run
            return None, _first_line(error)
        if isinstance(out, (list, tuple)):  # deep supervision and similar: the first output is the prediction
            out = out[0]
        if not isinstance(out, torch.Tensor):
            return None, f"the forward pass returned {type(out).__name__}, not a tensor"
        return tuple(out.shape), ""

    @lru_cache(maxsize=1)
    def rule(self) -> Rule:
        dims = self.spatial_dims
        channel_options = (self.channels_hint,) if self.channels_hint else CHANNELS_TRIED
        for channels in channel_options:
            for base in BASE_SIZES:
                if self.run((2, channels) + (base,) * dims, False)[0] is not None:
                    ran = [n for n in range(1, PROBE_LIMIT + 1)
                           if self.run((2, channels) + (n,) * dims, False)[0] is not None]
                    return _fit(dims, channels, base, ran)
        return Rule(dims, channel_options[0], 0, None, None, False)


def _fit(dims: int, channels: int, base: int, ran: list[int]) -> Rule:
    if not ran:
        return Rule(dims, channels, base, None, None, False)
    min_size = ran[0]
    multiple = 0
    for n in ran:
        multiple = math.gcd(multiple, n)
    multiple = max(multiple, 1)
    predicted = [n for n in range(1, PROBE_LIMIT + 1) if n >= min_size and n % multiple == 0]
    return Rule(dims, channels, base, min_size, multiple, predicted == ran)
