"""The hook through which a CUDA row gets its predicted peak memory, without harness.bench importing the memory
room above it (harness.memory): that room registers its predictor here (``harness.memory.register()``, which the
pytest plugin and the volume command call, and importing ``harness.memory`` does), and ``memory_predictor()``
hands it to whoever measures. With none registered, a CUDA row says so in ``predicted_error`` rather than
leaving the prediction out without a word."""
from __future__ import annotations

from typing import Callable

_MEMORY: Callable | None = None
NOT_REGISTERED = "no memory predictor registered (call harness.memory.register())"


def register_memory_predictor(predict: Callable) -> None:
    """``predict(spec, gpu=None, cudnn=None)`` -> an object with ``peak_mb``, ``floor_mb`` and ``domain``."""
    global _MEMORY
    _MEMORY = predict


def memory_predictor() -> Callable:
    """The registered predictor; LookupError when none is."""
    if _MEMORY is None:
        raise LookupError(NOT_REGISTERED)
    return _MEMORY
