"""The envelope of a model the harness did not hand-write (peers, your own): found by running it on the
``meta`` device, where a forward pass goes through PyTorch's own shape checks but computes nothing.

- Whether an input runs is answered by a meta forward pass of exactly that input (in train mode for
  training, so normalisation layers that need more than one value per channel refuse as they would),
  cached; so the verdict is exact for the shapes it is asked about.
- To explain a refusal and offer a nearby input, the model's *rule* is probed once per model and
  settings: the input channels (the ``in_channels`` argument, or the first of 1 to 4 that runs), a base
  size that runs, and, over cubic sizes 1 to ``PROBE_LIMIT``, the smallest size and the divisibility the
  sizes need (sizes ``n >= min_size`` with ``n % multiple == 0``). A suggestion is always checked by a
  meta forward of its own before it is offered.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import torch

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
