"""What is measured (a frozen, hashable spec) and the measurement (raw samples; statistics derived).

After torch.utils.benchmark's ``TaskSpec``/``Measurement``: the spec names the configuration, the
measurement keeps every timed sample, and median/IQR/throughput are computed from them on demand.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any

from .counting import WorkCount
from .overrides import parse_overrides
from .registry import Shape

PRECISIONS = ("fp32", "bf16", "fp16")


def shape_text(shape: Shape) -> str:
    return "x".join(str(n) for n in shape)


@dataclass(frozen=True)
class BenchSpec:
    model: str
    input_shape: Shape  # one sample: (C, *spatial)
    batch: int
    mode: str  # "inference" | "train"
    device: str = "cpu"
    precision: str = "fp32"  # fp32, or autocast to bf16/fp16
    channels_last: bool = False
    compile: bool = False
    cudnn_benchmark: bool = False
    overrides: str = ""  # constructor overrides as "key=value;key=value"
    warmup: int = 1
    rounds: int = 5

    @property
    def full_input_shape(self) -> Shape:
        return (self.batch, *self.input_shape)

    @property
    def constructor_overrides(self) -> dict[str, Any]:
        return parse_overrides(self.overrides.split(";") if self.overrides else [])

    @property
    def label(self) -> str:
        """Readable id, used for pytest ids and progress lines."""
        parts = [self.model, shape_text(self.input_shape), f"b{self.batch}", self.mode, self.device,
                 self.precision]
        parts += [flag for flag, on in (("cl", self.channels_last), ("compiled", self.compile)) if on]
        parts += [self.overrides] if self.overrides else []
        return "-".join(parts)

    @property
    def key(self) -> tuple:
        """What makes two rows the same configuration (for resuming a sweep)."""
        return (self.model, self.overrides, shape_text(self.input_shape), self.batch, self.mode,
                self.device, self.precision, self.channels_last, self.compile)


@dataclass(frozen=True)
class Measurement:
    spec: BenchSpec
    times_s: tuple[float, ...] = ()
    peak_mem_mb: float | None = None
    peak_reserved_mb: float | None = None
    work: WorkCount | None = None
    output_shape: Shape | None = None
    max_batch: int | None = None
    error: str = ""
    extra: dict = field(default_factory=dict, hash=False)

    @property
    def median_ms(self) -> float | None:
        return 1e3 * statistics.median(self.times_s) if self.times_s else None

    @property
    def iqr_ms(self) -> float | None:
        if len(self.times_s) < 2:
            return 0.0 if self.times_s else None
        q1, _, q3 = statistics.quantiles(self.times_s, n=4, method="inclusive")
        return 1e3 * (q3 - q1)

    @property
    def samples_per_s(self) -> float | None:
        return self.spec.batch / (self.median_ms / 1e3) if self.median_ms else None
