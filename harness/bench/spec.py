"""What is measured (a frozen, hashable spec) and the measurement (raw samples; statistics derived).

After torch.utils.benchmark's ``TaskSpec``/``Measurement``: the spec names the configuration, the
measurement keeps every timed sample, and median/IQR/throughput are computed from them on demand.
"""
from __future__ import annotations

import math
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
# ``cudnn_benchmark`` changes what is measured on CUDA (cuDNN's autotuned kernels, or its heuristics' choice), so it
# is part of the identity; rows of runs written before it joined take its legacy default, False
# (``harness.store.schema.LEGACY_DEFAULTS``).
PATCH_KEY_FIELDS = ("model", "overrides", "input_shape", "batch", "mode", "device", "precision", "channels_last",
                    "exec_mode", "cudnn_benchmark")
# A whole volume through sliding windows (mode "volume", harness.bench.volume) is also identified by its windows.
# They extend the key of volume specs only, so every other spec keeps the key it had before they existed.
VOLUME_KEY_FIELDS = ("roi", "overlap", "blend", "sw_batch_size", "mirror")
VOLUME_MODE = "volume"
KEY_FIELDS = PATCH_KEY_FIELDS + VOLUME_KEY_FIELDS
# A training step fed by a real loader (``--loader``, harness.bench.loader) is also identified by the loader and its
# workers. They extend the key of loader-fed specs only (``loader`` other than "none"), so every tensor-fed spec, and
# every row of a run written before they existed, keeps its key.
LOADER_KEY_FIELDS = ("loader", "workers")
NO_LOADER = "none"  # the tensor-fed step: inputs made once, on the device (nnU-Net's _noDataLoading case)


def output_problem(output_shape, expected, input_shape=None, per_voxel: bool = False) -> str:
    """Why an output of ``output_shape`` is not the measurement asked for (empty when it is): a shape other than
    the envelope's prediction ``expected``; a batch other than the input's (``input_shape``: the whole batch);
    for a segmentation network (``per_voxel``), spatial sizes other than the input's (one prediction per voxel),
    which catches a model that is wrong in the same way on the meta device, where its envelope was probed."""
    if output_shape is None:
        return ""
    got = tuple(output_shape)
    if expected is not None and got != tuple(expected):
        return (f"wrong output shape: the step returned {shape_text(got)}, the envelope predicts "
                f"{shape_text(tuple(expected))}")
    if input_shape is not None and (not got or got[0] != input_shape[0]):
        return f"wrong output shape: the step returned {shape_text(got)} for a batch of {input_shape[0]}"
    if input_shape is not None and per_voxel and tuple(got[2:]) != tuple(input_shape[2:]):
        return (f"wrong output shape: the step returned {shape_text(got)} for an input of {shape_text(tuple(input_shape))}; "
                f"a segmentation network gives one prediction per voxel")
    return ""


def sample_problem(latency, blocks) -> str:
    """Why the timing samples are not a measurement (empty when they are): none, or one not positive and finite."""
    samples = tuple(latency) + tuple(blocks)
    if not latency or not blocks or not all(t > 0 and math.isfinite(t) for t in samples):
        return f"timing samples not usable: {len(latency)} latency and {len(blocks)} block sample(s), each must be > 0"
    return ""


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
    # Mode "volume": input_shape is the whole volume (C, D, H, W), batch is 1 (one volume per step), and the
    # network sees windows of ``roi`` (spatial) run ``sw_batch_size`` at a time (0: searched, --sw-batch auto),
    # overlapping by ``overlap``, blended ``gaussian`` or ``constant``, with mirroring (8 flips in 3D) or not.
    roi: Shape = ()
    overlap: float = 0.0
    blend: str = ""
    sw_batch_size: int = 0
    mirror: bool = False
    # Training fed by a real loader: ``loader`` is "nnunet", "monai" or a user pipeline reference (module:function),
    # whose per-sample augmentation a torch DataLoader with ``workers`` worker processes (0: in the main process)
    # batches and the step moves to the device; "none" (the default) feeds the step tensors already there.
    loader: str = NO_LOADER
    workers: int = 0

    @classmethod
    def from_record(cls, record: dict) -> "BenchSpec":
        """A spec from its JSON form (details.jsonl, worker requests), older forms included."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in record.items() if k in known}
        values["input_shape"] = tuple(record["input_shape"])
        values["roi"] = tuple(record.get("roi", ()))
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
        if self.mode == VOLUME_MODE:
            parts += [f"roi{shape_text(self.roi)}", f"o{self.overlap:g}", self.blend,
                      f"sw{self.sw_batch_size or 'auto'}"] + (["mirror"] if self.mirror else [])
        if self.loader != NO_LOADER:
            parts += [f"loader={self.loader.rsplit('/', 1)[-1]}", f"w{self.workers}"]
        return "-".join(parts)

    @property
    def key(self) -> tuple:
        """THE configuration identity: what makes two rows the same configuration (resume, merge, regress,
        compare). The store's key columns are derived from KEY_FIELDS and LOADER_KEY_FIELDS (harness.store.schema)."""
        names = KEY_FIELDS if self.mode == VOLUME_MODE else PATCH_KEY_FIELDS
        names += LOADER_KEY_FIELDS if self.loader != NO_LOADER else ()
        return tuple(shape_text(getattr(self, name)) if name in ("input_shape", "roi") else getattr(self, name)
                     for name in names)

    def record(self) -> dict:
        """The JSON form (details.jsonl, worker requests); ``from_record`` reads it back."""
        return {f.name: list(getattr(self, f.name)) if f.name in ("input_shape", "roi") else getattr(self, f.name)
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
    max_batch: int | None = None  # --find-max-batch: the largest batch whose steady-state step fits (measured)
    predicted_max_batch: int | None = None  # beside it: the largest the memory model predicts to fit the device
    error: str = ""
    warmup_settled: bool = True  # CUDA: the step time settled before the warm-up's caps; CPU: always True
    flop_error: str = ""  # why step_flop could not be counted (empty when it was)
    extra: dict = field(default_factory=dict, hash=False)
    # Whole-volume rows (mode "volume"): there a step is one whole volume (latency_s: synchronized volumes;
    # block_s: volumes back to back; step_flop: the forward FLOPs of all its windows). ``forward_s``: the
    # windows' own forward passes, timed back to back at the same sw_batch_size right after each block
    # (raw seconds per volume).
    windows: int | None = None  # windows per volume (MONAI's scan)
    forward_passes: int | None = None  # windows x mirror factor (8 in 3D with mirroring, else 1)
    forward_s: tuple[float, ...] = ()
    volume_padded: bool = False  # an axis of the volume is shorter than the window: MONAI pads it (constant 0)
    sw_batch_best: bool | None = None  # --sw-batch auto: this row's sw_batch_size is the one the search chose
    # Loader-fed training rows: seconds each throughput block spent blocked waiting for the next batch (in
    # ``next(iterator)``), paired with ``block_s``.
    wait_s: tuple[float, ...] = ()

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

    # --- whole volumes (mode "volume") --------------------------------------------------------------------

    @property
    def volume_s(self) -> float | None:
        """Median seconds per whole volume (synchronized volumes, as latency_ms)."""
        return statistics.median(self.latency_s) if self.spec.mode == VOLUME_MODE and self.latency_s else None

    @property
    def volume_iqr_s(self) -> float | None:
        return None if self.volume_s is None else self.latency_iqr_ms / 1e3

    @property
    def volumes_per_s(self) -> float | None:
        """Whole volumes per second from volumes issued back to back (samples_per_s: one sample is one volume)."""
        return self.samples_per_s if self.spec.mode == VOLUME_MODE else None

    @property
    def mvox_per_s(self) -> float | None:
        """Input megavoxels (spatial, per channel) per second, from volumes_per_s."""
        if self.volumes_per_s is None:
            return None
        voxels = 1
        for n in self.spec.input_shape[1:]:
            voxels *= n
        return self.volumes_per_s * voxels / 1e6

    @property
    def stitch_fractions(self) -> tuple[float, ...]:
        """The share of the volume time spent outside the network, one per paired block: 1 - forward / volume,
        where the block of whole volumes and the windows' own forward passes timed right after it (``forward_s``,
        at the same sw_batch_size, per volume) are taken together, so a change of the machine's load between
        blocks moves both sides of a pair. Outside the network: cutting the windows, mirroring's flips, Gaussian
        weighting, adding into the output and count buffers, padding, cropping."""
        if self.spec.mode != VOLUME_MODE or not self.block_steps or not self.forward_s:
            return ()
        pairs = zip(self.block_s, self.forward_s)
        return tuple(1 - forward / (block / self.block_steps) for block, forward in pairs if block > 0)

    @property
    def stitch_fraction(self) -> float | None:
        """The mean of the per-block fractions (``stitch_fractions``); see ``stitch_interval`` for its interval."""
        fractions = self.stitch_fractions
        return statistics.fmean(fractions) if fractions else None

    @property
    def stitch_interval(self) -> tuple[float, float] | None:
        """The 95% Student-t interval of the mean per-block fraction (None with fewer than 2 blocks). Where it
        spans 0 the share outside the network is not resolved by the timing noise (``stitch_resolved``)."""
        return mean_interval(self.stitch_fractions)

    @property
    def stitch_resolved(self) -> bool | None:
        """False where the interval spans 0 ("unresolved"), True where it lies on one side; None without one."""
        interval = self.stitch_interval
        return None if interval is None else not interval[0] <= 0 <= interval[1]

    # --- loader-fed training (spec.loader other than "none", harness.bench.loader) ---------------------------

    @property
    def data_waits(self) -> tuple[float, ...]:
        """The share of each throughput block spent blocked waiting for the next batch: ``wait_s / block_s``, one
        per block (seconds waited and the block's wall time measured over the same steps)."""
        if self.spec.loader == NO_LOADER or not self.wait_s:
            return ()
        return tuple(wait / block for wait, block in zip(self.wait_s, self.block_s) if block > 0)

    @property
    def data_wait(self) -> float | None:
        """The mean per-block share of the step spent waiting for data (``data_waits``); 0 when the loader keeps
        up, near 1 when the step is all waiting."""
        waits = self.data_waits
        return statistics.fmean(waits) if waits else None

    @property
    def data_wait_interval(self) -> tuple[float, float] | None:
        """The 95% Student-t interval of the mean per-block share (None with fewer than 2 blocks), within [0, 1]:
        a share of the step cannot lie outside it."""
        interval = mean_interval(self.data_waits)
        return None if interval is None else (max(interval[0], 0.0), min(interval[1], 1.0))


def mean_interval(values) -> tuple[float, float] | None:
    """The 95% Student-t interval of the mean of ``values`` (None with fewer than 2)."""
    if len(values) < 2:
        return None
    mean = statistics.fmean(values)
    half = t_quantile_975(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    return mean - half, mean + half


def t_quantile_975(df: int) -> float:
    """Student's t at 0.975 (a two-sided 95% interval), from scipy, imported here so that importing the spec
    stays cheap."""
    from scipy.stats import t

    return float(t.ppf(0.975, df))
