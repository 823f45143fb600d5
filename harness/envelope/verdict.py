"""A verdict on one input: supported or not, the shapes, and for a refusal the constraint that breaks, why,
and either a nearby input that runs or the way out. ``Refusal`` is what a walker raises."""
from __future__ import annotations

from dataclasses import dataclass

from harness.catalog.registry import Shape

MODES = ("inference", "train")

# What to do about each constraint when no nearby input shape helps.
FIXES = {
    "unavailable": "install the library the model needs",
    "divisibility": "make every spatial size a multiple of what the model needs (see the reason)",
    "forward": "check the model's own requirements (`python -m harness show MODEL` prints what was probed)",
    "constructor": "use constructor values the class accepts (`python -m harness show MODEL` lists the defaults)",
    "rank": "pass a tensor of shape (N, C, *spatial)",
    "empty": "use a batch of 0 or more and channel and spatial sizes of at least 1",
    "zero-width": "give base_c, in_channels and num_classes values of 1 or more",
    "channels": "pass as many input channels as the model's in_channels (or set in_channels)",
    "min-size": "make every spatial size at least 16",
    "parity": "use sizes that are equal modulo 16 (multiples of 16 always work)",
    "train-batchnorm": "use a batch of 2 or more, or a larger input",
    "decoder-channels": "keep base_c=64, bilinear=False and an expansion-2 block (Bottleneck), as the article does",
    "layers": "give four stage counts, e.g. layers=3,4,6,3",
    "shortcut-A-device": "use shortcut_type=B, or float32 without autocast and no_cuda=False on CUDA",
    "block": "use Bottleneck or BasicBlock",
    "effb0-min-size": "make every spatial size at least 32 (EfficientNet-B0 halves each size five times)",
    "unetpp-multiple": "use sizes that are multiples of 16 (unetpp3d) or of 32 (the EfficientNet-B0 variants)",
}


# What each constructor argument must be, for the way out of a constructor refusal.
ARGUMENT_HINTS = {
    "base_c": "a positive integer",
    "in_channels": "a positive integer (the input's channel count)",
    "num_classes": "a positive integer",
    "layers": "four integer stage counts",
    "block": "Bottleneck or BasicBlock",
    "bilinear": "true or false",
    "include_top": "true or false",
    "no_cuda": "true or false",
    "shortcut_type": "A or B",
}


class Refusal(Exception):
    """Raised by a walker: the first constraint an input breaks, in forward order."""

    def __init__(self, constraint: str, reason: str, way_out: str | None = None):
        super().__init__(reason)
        self.constraint, self.reason, self.way_out = constraint, reason, way_out


@dataclass(frozen=True)
class Verdict:
    model: str
    input_shape: Shape
    mode: str
    supported: bool
    output_shape: Shape | None = None
    stage_shapes: tuple[Shape, ...] = ()
    constraint: str | None = None
    reason: str | None = None
    suggestion: Shape | None = None
    # Set when no input at all runs with these settings (then there is never a suggestion): the
    # constraint that blocks every input ("constructor", "zero-width", "decoder-channels", ...).
    settings_constraint: str | None = None
    way_out: str | None = None

    def message(self) -> str:
        """One paragraph: the verdict, and for a refusal why and either a nearby input or the way out."""
        if self.supported:
            return f"{self.model} accepts {self.input_shape} ({self.mode}): output {self.output_shape}"
        text = f"{self.model} cannot run input {self.input_shape} ({self.mode}): {self.reason}."
        if self.suggestion is not None:
            text += f" Nearest supported input: {self.suggestion}."
        else:
            text += f" Way out: {self.way_out or FIXES[self.settings_constraint or self.constraint]}."
        return " ".join(text.split())

