"""The switch for the article's stage-shape prints.

The article's ``UNet_3d`` and ``ResNet_3d`` print ``x1= torch.Size([...])`` ... ``x5=`` on every
forward pass. Here those prints are off by default (benchmarks stay silent) and come back with::

    with reference_models.stage_prints():   # on inside the block, restored after, even on error
        model(x)

    reference_models.stage_prints(True)     # or as a plain call: on ...
    reference_models.stage_prints(False)    # ... and off again
"""

_enabled = False


def stage_print(label: str, tensor) -> None:
    """Print one stage exactly as the article does (``print('x1=', x1.shape)``) when the switch is on."""
    if _enabled:
        print(label, tensor.shape)


def stage_prints_enabled() -> bool:
    return _enabled


class stage_prints:  # noqa: N801  (reads as a function at the call site)
    """Turn the stage prints on (default) or off; as a ``with`` block, restore the previous state on exit."""

    def __init__(self, enabled: bool = True):
        global _enabled
        self._previous = _enabled
        _enabled = bool(enabled)

    def __enter__(self) -> "stage_prints":
        return self

    def __exit__(self, *exc_info) -> bool:
        global _enabled
        _enabled = self._previous
        return False
