"""What is measured (a frozen, hashable spec) and the measurement (raw samples; statistics derived).

After torch.utils.benchmark's ``TaskSpec``/``Measurement``: the spec names the configuration, the
measurement keeps every timed sample, and median/IQR/throughput are computed from them on demand.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field, fields
from typing import Any

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the spec stays torch-free: the store and reports load it without torch
    from harness.bench.counting import WorkCount

Shape = tuple[int, ...]

PRECISIONS = ("fp32", "bf16", "fp16")
EXEC_MODES = ("eager", "compile", "cudagraphs")


def shape_text(shape: Shape) -> str:
    return "x".join(str(n) for n in shape)


# The BenchSpec fields that identify a configuration, in key order (the rest say how it was measured).
KEY_FIELDS = ("model", "overrides", "input_shape", "batch", "mode", "device", "precision", "channels_last", "exec_mode")


@dataclass(frozen=True)
class BenchSpec:
    model: str
    input_shape: Shape  # one sample: (C, *spatial)
    batch: int
    mode: str  # "inference" | "train"
    device: str = "cpu"
    precision: str = "fp32"  # fp32, or autocast to bf16/fp16
    channels_last: bool = False
    exec_mode: str = "eager"  # eager | compile (torch.compile) | cudagraphs (reduce-overhead)
    cudnn_benchmark: bool = False
    overrides: str = ""  # constructor overrides as "key=value;key=value"
    warmup: int = 1  # untimed steps first (on CUDA: at least; warm-up lasts until the step time settles)
    rounds: int = 5  # latency samples: synchronized single steps
    blocks: int = 3  # throughput samples: blocks of back-to-back steps

    @classmethod
    def from_record(cls, record: dict) -> "BenchSpec":
        """A spec from its JSON form (details.jsonl, worker requests), older forms included."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in record.items() if k in known}
        values["input_shape"] = tuple(record["input_shape"])
        if "exec_mode" not in record and record.get("compile"):
            values["exec_mode"] = "compile"
        return cls(**values)

    @property
    def full_input_shape(self) -> Shape:
        return (self.batch, *self.input_shape)

    @property
    def constructor_overrides(self) -> dict[str, Any]:
        from harness.overrides import parse_overrides  # resolves reference_models' classes: needs torch

        return parse_overrides(self.overrides.split(";") if self.overrides else [])

    @property
    def label(self) -> str:
        """Readable id, used for pytest ids and progress lines."""
        parts = [self.model, shape_text(self.input_shape), f"b{self.batch}", self.mode, self.device,
                 self.precision]
        parts += ["cl"] if self.channels_last else []
        parts += [self.exec_mode] if self.exec_mode != "eager" else []
        parts += [self.overrides] if self.overrides else []
        return "-".join(parts)

    @property
    def key(self) -> tuple:
        """THE configuration identity: what makes two rows the same configuration (resume, merge, regress,
        compare). The store's key columns are derived from KEY_FIELDS (harness.store.schema)."""
        return tuple(shape_text(self.input_shape) if name == "input_shape" else getattr(self, name)
                     for name in KEY_FIELDS)

    def record(self) -> dict:
        """The JSON form (details.jsonl, worker requests); ``from_record`` reads it back."""
        return {f.name: list(self.input_shape) if f.name == "input_shape" else getattr(self, f.name)
                for f in fields(self)}


@dataclass(frozen=True)
class Measurement:
    """Raw samples of one configuration; every statistic is derived from them.

    ``latency_s``: synchronized single steps. ``block_s``: blocks of ``block_steps`` steps issued back to
    back with one synchronization each. ``step_flop``: FLOPs of one timed step (FlopCounterMode, whole
    batch, backward included in training). ``peak_tflops``: the device's measured matmul peak for the
    precision. ``setup_s``: the first call on its own (compile, capture, autotuning, lazy init).
    """

    spec: BenchSpec
    source: str = ""  # where the variant comes from (catalog: article, follow-up, peer, user); empty if unknown
    latency_s: tuple[float, ...] = ()
    block_s: tuple[float, ...] = ()
    block_steps: int = 0
    setup_s: float | None = None
    warmup_steps: int = 0
    step_flop: int | None = None
    peak_tflops: float | None = None
    peak_mem_mb: float | None = None
    peak_reserved_mb: float | None = None
    work: WorkCount | None = None
    output_shape: Shape | None = None
    expected_output_shape: Shape | None = None  # the envelope's prediction, which the output must match
    max_batch: int | None = None
    error: str = ""
    warmup_settled: bool = True  # CUDA: the step time settled before the warm-up's caps; CPU: always True
    flop_error: str = ""  # why step_flop could not be counted (empty when it was)
    extra: dict = field(default_factory=dict, hash=False)

    @property
    def warm(self) -> bool:
        """The timed steps came after at least one untimed step (and so after compilation or capture) and,
        on CUDA, after the step time settled: otherwise the samples are not a steady-state measurement."""
        return self.warmup_steps >= 1 and self.warmup_settled

    @property
    def latency_ms(self) -> float | None:
        return 1e3 * statistics.median(self.latency_s) if self.latency_s else None

    @property
    def latency_iqr_ms(self) -> float | None:
        if len(self.latency_s) < 2:
            return 0.0 if self.latency_s else None
        q1, _, q3 = statistics.quantiles(self.latency_s, n=4, method="inclusive")
        return 1e3 * (q3 - q1)

    @property
    def latency_p90_ms(self) -> float | None:
        if len(self.latency_s) < 2:
            return self.latency_ms
        return 1e3 * statistics.quantiles(self.latency_s, n=10, method="inclusive")[-1]

    @property
    def step_ms(self) -> float | None:
        """Throughput time per step: the median block over its steps."""
        if not self.block_s or not self.block_steps:
            return None
        return 1e3 * statistics.median(self.block_s) / self.block_steps

    @property
    def samples_per_s(self) -> float | None:
        return self.spec.batch / (self.step_ms / 1e3) if self.step_ms else None

    @property
    def step_gflop(self) -> float | None:
        return None if self.step_flop is None else self.step_flop / 1e9

    @property
    def achieved_tflops(self) -> float | None:
        if self.step_flop is None or not self.step_ms:
            return None
        return self.step_flop / (self.step_ms / 1e3) / 1e12

    @property
    def mfu(self) -> float | None:
        if self.achieved_tflops is None or not self.peak_tflops:
            return None
        return self.achieved_tflops / self.peak_tflops
