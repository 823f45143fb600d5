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


def predicted_columns(spec) -> dict:
    """A CUDA row's prediction columns: ``predicted_peak_mb``, ``predicted_floor_mb`` and ``predicted_domain`` from
    the registered predictor, on the device's name and cuDNN version; ``predicted_error`` instead where the
    configuration cannot be simulated or none is registered (a prediction that fails never fails the measurement).
    Other devices: none. Step rows (harness.bench.run) and volume rows use it alike."""
    if spec.device != "cuda":
        return {}
    try:
        import torch

        gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else None
        cudnn = torch.backends.cudnn.version() if torch.cuda.is_available() else None
        done = memory_predictor()(spec, gpu=gpu, cudnn=cudnn)
    except Exception as failure:  # whatever a user model's pass does on fake tensors: the row stands
        text = str(failure).strip().splitlines()
        return {"predicted_error": f"{type(failure).__name__}: {text[0] if text else ''}"}
    return {"predicted_peak_mb": done.peak_mb, "predicted_floor_mb": done.floor_mb, "predicted_domain": done.domain}
