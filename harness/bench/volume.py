"""Whole-volume inference: a scan cut into overlapping windows of the patch size, each window through the
network, the outputs blended back into one volume, as nnU-Net, MONAI and MLPerf's 3D-UNet run it.

The windows run through MONAI's own ``monai.inferers.sliding_window_inference`` (scan, padding, Gaussian or
constant blending, stitching); this module adds what MONAI leaves to the caller and nothing more:

- **mirroring** (nnU-Net's test-time augmentation): the predictor is wrapped so that each window batch also
  runs flipped over every subset of the spatial axes (8 passes in 3D), each output flipped back, averaged;
- **presets** named after what they copy: ``nnunet`` (tile step 0.5, Gaussian, mirroring), ``mlperf``
  (128³ windows, overlap 0.5, Gaussian, no mirroring), ``monai`` (its defaults: overlap 0.25, constant);
- **window counting** (MONAI's scan, counted without running it: ``count_windows``);
- **measuring** a volume configuration (``measure_volume``): a step is one whole volume; the windows' own
  forward passes are also timed back to back at the same ``sw_batch_size``, which gives the share of the
  volume time spent outside the network (``stitch_fraction``); ``search_sw_batch`` is ``--sw-batch auto``.

``harness.infer_volume`` is ``infer_volume`` here: the harness's rows and a user's script run the same code. A CUDA
row also carries the memory model's predicted peak (``predicted_columns``; the pass simulated on the CPU by
harness.memory.volume from ``prepare_volume``, the job measured here).
"""
from __future__ import annotations

import contextlib
import itertools
import math
import re
from dataclasses import dataclass, replace
from functools import partial
from types import SimpleNamespace
from typing import Callable, Sequence

import torch

from harness.bench.configuration import Configuration
from harness.bench.environment import SEED
from harness.bench.memory import peak_memory, release_device_caches
from harness.bench.predictors import predicted_columns
from harness.bench.spec import BenchSpec, Measurement, output_problem, sample_problem, shape_text
from harness.bench.timing import block_steps, synchronize, time_block, time_step, warm_up
from harness.bench.workload import AUTOCAST_DTYPES, COMPILE_MODES, configure_backends
from harness.catalog.meta_probe import build_variant
from harness.catalog.registry import get_variant
from harness.envelope import check
from harness.options import OptionError

BLENDS = ("gaussian", "constant")
SIGMA_SCALE = 0.125  # Gaussian blending: sigma = 1/8 of the window per axis (nnU-Net's; MONAI's default too)
DEFAULT_OVERLAP = 0.5
DEFAULT_BLEND = "gaussian"
SEARCH_GAIN = 0.05  # --sw-batch auto doubles sw_batch_size while volumes/s improves by more than this


@dataclass(frozen=True)
class Preset:
    """Window settings named after the tool they copy; ``roi`` None keeps the profile's window."""

    overlap: float
    blend: str
    mirror: bool
    roi: int | None = None
    source: str = ""


PRESETS = {
    "nnunet": Preset(0.5, "gaussian", True, source="nnU-Net's predictor: tile step 0.5 of the patch, Gaussian "
                     "importance (sigma 1/8 of the patch), mirroring over all spatial axes"),
    "mlperf": Preset(0.5, "gaussian", False, roi=128, source="MLPerf Inference 3D-UNet (KiTS19): 128³ windows, "
                     "overlap 0.5, Gaussian blending, no mirroring"),
    "monai": Preset(0.25, "constant", False, source="monai.inferers.sliding_window_inference's defaults: "
                    "overlap 0.25, constant blending"),
}


# --- MONAI's scan, counted ----------------------------------------------------------------------------

def scan_interval(size: int, roi: int, overlap: float) -> int:
    """MONAI's step between window starts on one axis (``_get_scan_interval``): the window itself where the
    (padded) axis is the window's size, else max(1, int(roi x (1 - overlap))), in floating point as MONAI
    computes it (20 x (1 - 0.9) is 1.999..., so the step is 1, not 2)."""
    if max(size, roi) == roi:
        return roi
    return max(1, int(roi * (1 - overlap)))


def window_starts(size: int, roi: int, overlap: float) -> list[int]:
    """Start of each window on one axis of the (padded) volume, as MONAI's ``dense_patch_slices``: every
    step, the last one moved back to end at the volume's edge."""
    size = max(size, roi)  # MONAI pads an axis shorter than the window up to the window
    if size == roi:
        return [0]
    step = scan_interval(size, roi, overlap)
    count = math.ceil((size - roi) / step) + 1
    return [min(i * step, size - roi) for i in range(count)]


def count_windows(spatial: Sequence[int], roi: Sequence[int], overlap: float) -> int:
    """Windows per volume: per axis ceil((size - roi) / interval) + 1 (1 where size <= roi), multiplied."""
    return math.prod(len(window_starts(n, r, overlap)) for n, r in zip(spatial, roi))


def mirror_flips(spatial_dims: int) -> list[tuple[int, ...]]:
    """Every subset of the spatial axes of an (N, C, *spatial) tensor, the empty one (no flip) first."""
    axes = range(2, 2 + spatial_dims)
    return [dims for r in range(spatial_dims + 1) for dims in itertools.combinations(axes, r)]


def mirrored(predictor: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
    """nnU-Net's mirroring as a predictor: the average over every flip of the spatial axes of
    flip(predictor(flip(x))), 2**spatial_dims forward passes per window batch."""

    def predict(x: torch.Tensor) -> torch.Tensor:
        flips = mirror_flips(x.dim() - 2)
        total = predictor(x)
        for dims in flips[1:]:
            total = total + torch.flip(predictor(torch.flip(x, dims)), dims)
        return total / len(flips)

    return predict


# --- the public API ----------------------------------------------------------------------------------

def _roi_tuple(roi_size, spatial_dims: int) -> tuple[int, ...]:
    roi = (roi_size,) * spatial_dims if isinstance(roi_size, int) else tuple(int(n) for n in roi_size)
    if len(roi) != spatial_dims or any(n < 1 for n in roi):
        raise ValueError(f"roi_size {roi_size!r}: give {spatial_dims} window sizes of at least 1 (one per spatial axis)")
    return roi


def infer_volume(model: Callable[[torch.Tensor], torch.Tensor], volume: torch.Tensor, roi_size: int | Sequence[int],
                 overlap: float = DEFAULT_OVERLAP, blend: str = DEFAULT_BLEND, sw_batch_size: int = 1,
                 mirror: bool = False) -> torch.Tensor:
    """The stitched logits of ``model`` over a whole ``volume`` ((N, C, *spatial), or (C, *spatial) for one),
    computed window by window with ``monai.inferers.sliding_window_inference``; the same spatial shape as
    ``volume`` (a volume smaller than the window is padded with zeros, as MONAI does, and cropped back).

    ``overlap`` in [0, 1); ``blend`` ``gaussian`` (sigma 1/8 of the window, as nnU-Net) or ``constant``;
    ``sw_batch_size`` windows per forward call; ``mirror``: nnU-Net's mirroring (2**spatial_dims passes per
    window). Runs under ``torch.inference_mode``; put the model in eval mode (and autocast, if wanted) first.
    """
    from monai.inferers import sliding_window_inference

    if blend not in BLENDS:
        raise ValueError(f"blend must be one of {', '.join(BLENDS)}, not {blend!r}")
    if not 0 <= overlap < 1:
        raise ValueError(f"overlap must lie in [0, 1), not {overlap!r}")
    if not isinstance(sw_batch_size, int) or isinstance(sw_batch_size, bool) or sw_batch_size < 1:
        raise ValueError(f"sw_batch_size must be an integer of at least 1, not {sw_batch_size!r}")
    single = volume.dim() >= 2 and isinstance(roi_size, Sequence) and volume.dim() == len(roi_size) + 1
    batched = volume.unsqueeze(0) if single else volume
    roi = _roi_tuple(roi_size, batched.dim() - 2)
    predictor = mirrored(model) if mirror else model
    with torch.inference_mode():
        out = sliding_window_inference(batched, roi, sw_batch_size, predictor, overlap=overlap, mode=blend,
                                       sigma_scale=SIGMA_SCALE)
    return out[0] if single else out


# --- options: parsed and checked before anything runs ----------------------------------------------------

@dataclass(frozen=True)
class VolumeOptions:
    """Whole-volume settings from the command line; None (or empty) leaves each to the preset, the profile
    or the default, in that order. ``sw_batch`` 0 is ``auto``."""

    volumes: tuple[tuple[int, ...], ...] = ()  # --volume DxHxW: given, the sweep measures these volumes only
    roi: tuple[int, ...] | None = None
    overlap: float | None = None
    blend: str | None = None
    mirror: bool | None = None
    sw_batch: int | None = None
    preset: str | None = None

    @property
    def given(self) -> list[str]:
        """The window options given (not --volume), for saying which ones need volumes to apply to."""
        names = {"roi": "--roi", "overlap": "--overlap", "blend": "--blend", "mirror": "--mirror",
                 "sw_batch": "--sw-batch", "preset": "--preset"}
        return [flag for name, flag in names.items() if getattr(self, name) is not None]

    def window(self, profile_roi: int, profile_overlap: float = DEFAULT_OVERLAP, profile_blend: str = DEFAULT_BLEND,
               profile_mirror: bool = False) -> tuple[tuple[int, ...], float, str, bool]:
        """(roi, overlap, blend, mirror): each option as given, else the preset's, else the profile's."""
        preset = PRESETS[self.preset] if self.preset else None
        roi = self.roi or ((preset.roi,) * 3 if preset and preset.roi else (profile_roi,) * 3)
        if preset is not None:
            profile_overlap, profile_blend, profile_mirror = preset.overlap, preset.blend, preset.mirror
        return (roi, profile_overlap if self.overlap is None else self.overlap,
                self.blend or profile_blend, profile_mirror if self.mirror is None else self.mirror)


_SIZES = re.compile(r"^\s*(-?\d+)(\s*x\s*(-?\d+))*\s*$")


def parse_sizes(option: str, text: str, dims: int = 3, cube: bool = False) -> tuple[int, ...]:
    """``DxHxW`` (``N`` too when ``cube``: an N³ window) -> positive integers, or an OptionError."""
    example = "x".join(["48", "80", "72"][:dims]) if not cube else "32x32x32"
    parts = str(text).lower().split("x")
    try:
        sizes = tuple(int(part) for part in parts) if _SIZES.match(str(text).lower()) else None
    except ValueError:
        sizes = None
    if sizes is not None and cube and len(sizes) == 1:
        sizes = sizes * dims
    if sizes is None or len(sizes) != dims:
        raise OptionError(f"{option} {text!r} is not a size: give {dims} spatial sizes as "
                          f"{'x'.join('DHW'[:dims])}{' (or one N for N³)' if cube else ''}, e.g. {option} {example}.")
    if any(n < 1 for n in sizes):
        raise OptionError(f"{option} {text!r}: every size must be at least 1 voxel. Way out: e.g. {option} {example}.")
    return sizes


def parse_volume_options(volumes: Sequence[str] = (), roi: str | None = None, overlap: str | None = None,
                         blend: str | None = None, mirror: bool = False, sw_batch: str | None = None,
                         preset: str | None = None) -> VolumeOptions:
    """The runner's whole-volume options as given on the command line (text), checked; OptionError otherwise."""
    parsed_overlap = None
    if overlap is not None:
        try:
            parsed_overlap = float(overlap)
        except ValueError:
            parsed_overlap = None
        if parsed_overlap is None or not 0 <= parsed_overlap < 1:  # NaN fails too
            raise OptionError(f"--overlap {overlap!r}: the overlap of neighbouring windows is a fraction of the window "
                              f"in [0, 1) (0: windows side by side; 1 would never move). Way out: e.g. --overlap 0.5 "
                              f"(nnU-Net, MLPerf) or --overlap 0.25 (MONAI's default).")
    if blend is not None and blend not in BLENDS:
        raise OptionError(f"--blend {blend!r} is not a blending mode: give gaussian (weights falling off from the "
                          f"window's centre, sigma 1/8 of the window, as nnU-Net) or constant (every voxel alike, "
                          f"MONAI's default).")
    parsed_sw = None
    if sw_batch is not None:
        text = str(sw_batch).strip().lower()
        parsed_sw = 0 if text == "auto" else (int(text) if re.fullmatch(r"-?\d+", text) else None)
        if parsed_sw is None or (parsed_sw < 1 and text != "auto"):
            raise OptionError(f"--sw-batch {sw_batch!r}: give the number of windows per forward call, an integer of "
                              f"at least 1, or auto (double from 1 while volumes/s improves by more than "
                              f"{SEARCH_GAIN:.0%}). Way out: e.g. --sw-batch 4 or --sw-batch auto.")
    if preset is not None and preset not in PRESETS:
        raise OptionError(f"--preset {preset!r} is not a preset: choose one of {', '.join(PRESETS)} ("
                          + "; ".join(f"{name}: {p.source}" for name, p in PRESETS.items()) + ").")
    return VolumeOptions(tuple(parse_sizes("--volume", v) for v in volumes),
                         parse_sizes("--roi", roi, cube=True) if roi is not None else None,
                         parsed_overlap, blend, True if mirror else None, parsed_sw, preset)


def volume_model(variant) -> bool:
    """Whether a variant segments volumes: 3D, one output per voxel (not a classifier)."""
    return variant.spatial_dims == 3 and variant.record.target != "classification"


def require_window(name: str, roi: tuple[int, ...], overrides: dict, device: str, precision: str,
                   sw_batch: int) -> None:
    """Refuse a window the model cannot run (the envelope applies to the window), naming one nearby that works."""
    variant = get_variant(name)
    verdict = check(variant, (max(1, sw_batch), variant.example_input[1], *roi), overrides, "inference", device,
                    precision, suggest=True)
    if verdict.supported:
        if tuple(verdict.output_shape[2:]) != tuple(roi):
            raise OptionError(f"--roi {shape_text(roi)}: {name}'s output for that window is {verdict.output_shape}, "
                              f"not one value per voxel of the window, so its windows cannot be stitched. Way out: "
                              f"--models naming segmentation networks.")
        return
    nearby = verdict.suggestion
    way_out = (f"--roi {shape_text(nearby[2:])}, which {name} runs" if nearby is not None
               else verdict.way_out or "a window size the model accepts (`python -m harness check`)")
    raise OptionError(f"--roi {shape_text(roi)}: {name} cannot run a {shape_text(roi)} window: {verdict.reason}. "
                      f"Way out: {way_out}.")


# --- one volume configuration, measured ------------------------------------------------------------------

def window_spec(spec: BenchSpec) -> BenchSpec:
    """The spec of one window through the network (inference, batch 1): what the work counts are taken on."""
    return replace(spec, input_shape=(spec.input_shape[0], *spec.roi), batch=1, mode="inference", roi=(),
                   overlap=0.0, blend="", sw_batch_size=0, mirror=False)


def resolve_volume(spec: BenchSpec) -> Configuration:
    """The variant (one look-up) and the envelope's verdict on the window batch the network sees
    (sw_batch_size windows of ``roi``, inference): the envelope applies to the window, not the volume."""
    variant = get_variant(spec.model)
    verdict = check(variant, (max(1, spec.sw_batch_size), spec.input_shape[0], *spec.roi), spec.constructor_overrides,
                    "inference", spec.device, spec.precision, suggest=True)
    return Configuration(spec, variant, verdict)


def volume_refusal(config: Configuration) -> str:
    """Empty when the windows will run, else why not (an error row's text, a refusal)."""
    spec, variant, verdict = config.spec, config.variant, config.verdict
    if spec.exec_mode == "cudagraphs" and spec.device != "cuda":
        return f"unsupported: exec_mode cudagraphs needs CUDA (CUDA graphs capture GPU kernels), not {spec.device}"
    if len(spec.roi) != variant.spatial_dims or len(spec.input_shape) != 1 + variant.spatial_dims:
        return (f"unsupported: {variant.name} is a {variant.spatial_dims}D network; the volume "
                f"{shape_text(spec.input_shape)} and window {shape_text(spec.roi)} must have as many spatial axes")
    if not verdict.supported:
        return f"unsupported: the window {shape_text(spec.roi)}: {verdict.message()}"
    if tuple(verdict.output_shape[2:]) != tuple(spec.roi):
        return (f"unsupported: {variant.name}'s output for a {shape_text(spec.roi)} window is {verdict.output_shape}, "
                f"not one value per voxel of the window: whole-volume inference needs a segmentation network")
    return ""


@dataclass
class VolumeJob:
    """A ready-to-time whole volume: ``run`` (not synchronized) and ``step`` (synchronized) infer the whole
    volume; ``forward`` issues the windows' own forward passes back to back over ``batches()`` (the window
    batches the volume pass cuts, made before timing), each as often as the volume pass calls the network."""

    model: torch.nn.Module
    run: Callable[[], torch.Tensor]
    step: Callable[[], torch.Tensor]
    batches: Callable[[], list[torch.Tensor]]
    forward: Callable[[list[torch.Tensor]], None]
    window: torch.Tensor  # one window (batch 1), for counting


def _pad_to_window(volume: torch.Tensor, roi: Sequence[int]) -> torch.Tensor:
    """MONAI's padding of axes shorter than the window (zeros, split as MONAI splits them), last axis first."""
    pads = []
    for n, r in reversed(list(zip(volume.shape[2:], roi))):
        short = max(r - n, 0)
        pads += [short // 2, short - short // 2]
    return torch.nn.functional.pad(volume, pads) if any(pads) else volume


def prepare_volume(config: Configuration, device: str | None = None, autocast=None) -> VolumeJob:
    """Everything a volume pass needs, built as ``harness.bench.workload.prepare`` builds a step: ``device`` in place
    of the spec's and ``autocast`` (dtype -> context) in place of ``torch.autocast`` let the memory model run the
    same pass on CPU fake tensors with CUDA's autocast policy (harness.memory.volume)."""
    spec = config.spec
    device = device or spec.device
    configure_backends(spec, device)
    model = build_variant(config.variant, spec.constructor_overrides, device, seed=SEED).eval()
    generator = torch.Generator(device=device).manual_seed(SEED)
    volume = torch.randn((1, *spec.input_shape), device=device, generator=generator)
    memory_format = torch.channels_last_3d if volume.dim() == 5 else torch.channels_last
    if spec.channels_last:
        model = model.to(memory_format=memory_format)
    mode = COMPILE_MODES[spec.exec_mode]
    network = torch.compile(model, mode=mode) if mode else model
    predictor = (lambda x: network(x.contiguous(memory_format=memory_format))) if spec.channels_last else network
    if spec.exec_mode == "cudagraphs":  # a CUDA graph's next replay overwrites its output; mirroring keeps one
        replayed = predictor
        predictor = lambda x: replayed(x).clone()  # noqa: E731

    def region():
        if spec.precision == "fp32":
            return contextlib.nullcontext()
        if autocast is not None:
            return autocast(AUTOCAST_DTYPES[spec.precision])
        return torch.autocast(device_type=device, dtype=AUTOCAST_DTYPES[spec.precision])

    def run():
        with region():
            return infer_volume(predictor, volume, spec.roi, spec.overlap, spec.blend, spec.sw_batch_size, spec.mirror)

    def step():
        out = run()
        synchronize(device)
        return out

    padded = _pad_to_window(volume, spec.roi)
    starts = list(itertools.product(*(window_starts(n, r, spec.overlap) for n, r in zip(spec.input_shape[1:], spec.roi))))
    cut = lambda start: padded[(slice(None), slice(None), *(slice(s, s + r) for s, r in zip(start, spec.roi)))]  # noqa: E731
    calls = len(mirror_flips(len(spec.roi))) if spec.mirror else 1

    def batches():
        windows = [cut(start) for start in starts]
        return [torch.cat(windows[i:i + spec.sw_batch_size]) for i in range(0, len(windows), spec.sw_batch_size)]

    def forward(window_batches):
        with torch.inference_mode(), region():
            for batch in window_batches:
                for _ in range(calls):
                    predictor(batch)

    return VolumeJob(model, run, step, batches, forward, cut(starts[0]).clone())


def _why(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"


def measure_volume(spec: BenchSpec, timer=time_step, work_cache=None) -> Measurement:
    """One volume configuration: warm-up, ``rounds`` synchronized whole volumes (``timer``, as for patch rows),
    peak memory of a whole pass, then ``blocks`` blocks of volumes back to back, each followed by as many of
    the windows' own forward passes back to back (``forward_s``, per volume: adjacent samples, so that a change
    of the machine's load between them moves both; ``stitch_fractions`` pairs them). Failures are rows: any
exception, an output of another shape than the volume's, a non-finite output. ``work_cache`` is the run's
    ``harness.bench.run.WorkCache`` (MACs, FLOPs, measured peaks). A CUDA row also carries the memory
    model's prediction of its peak (``predicted_columns``: the pass simulated on the CPU, harness.memory.volume)."""
    try:
        config = resolve_volume(spec)
    except Exception as failure:  # a user model whose probe or builder raises: an error row all the same
        return Measurement(spec, error=_why(failure))
    verdict = config.verdict
    spatial = spec.input_shape[1:]
    windows = count_windows(spatial, spec.roi, spec.overlap) if len(spec.roi) == len(spatial) else None
    factor = len(mirror_flips(len(spec.roi))) if spec.mirror else 1
    expected = (1, verdict.output_shape[1], *spatial) if verdict.supported else None
    row = partial(Measurement, spec, config.variant.source, expected_output_shape=expected, windows=windows,
                  forward_passes=None if windows is None else windows * factor,
                  volume_padded=any(n < r for n, r in zip(spatial, spec.roi)))
    refusal = volume_refusal(config)
    if refusal:
        return row(error=refusal)
    if spec.sw_batch_size < 1:
        raise ValueError("sw_batch_size 0 (auto) is a search: measure it with search_sw_batch")
    job = None
    try:
        job = prepare_volume(config)
        warm = warm_up(job.step, spec.warmup, spec.device)
        latency = timer(job.step, 0, spec.rounds)
        output, peak, reserved, memory_kind = peak_memory(job.step, spec.device)  # before the forward-only batches exist
        output_shape, finite = tuple(output.shape), bool(torch.isfinite(output.float()).all())
        del output
        steps = block_steps(min(latency))
        window_batches = job.batches()
        blocks, forward = [], []
        for _ in range(spec.blocks):
            blocks.append(time_block(job.run, steps, spec.device))
            forward.append(time_block(partial(job.forward, window_batches), steps, spec.device) / steps)
        del window_batches
        windowed = Configuration(window_spec(spec), config.variant, verdict)
        work = work_cache.get(windowed.spec, SimpleNamespace(model=job.model, sample=job.window))
        flop, flop_error = work_cache.flops(windowed)
        peak_tflops = work_cache.peaks.get(spec.device, spec.precision)
    except torch.OutOfMemoryError as oom:
        return row(error=f"out of memory: {_why(oom)}")
    except Exception as failure:  # any failure is the row's error; KeyboardInterrupt and SystemExit propagate
        return row(error=_why(failure))
    finally:
        del job
        release_device_caches(spec.device)
    error = (output_problem(output_shape, expected) or sample_problem(latency, blocks)
             or ("" if finite else "output not finite: the stitched volume holds NaN or inf"))
    return row(latency_s=tuple(latency), block_s=tuple(blocks), block_steps=steps, setup_s=warm.setup_s,
               warmup_steps=warm.steps, step_flop=None if flop is None else flop * windows * factor,
               peak_tflops=peak_tflops, peak_mem_mb=peak, peak_reserved_mb=reserved, work=work,
               output_shape=output_shape, forward_s=tuple(forward), warmup_settled=warm.settled,
               error=error,
               flop_error=flop_error, extra={"memory_kind": memory_kind, **predicted_columns(spec)})


def search_sw_batch(spec: BenchSpec, timer=time_step, work_cache=None,
                    measured: Callable[[Measurement], None] = lambda m: None) -> list[Measurement]:
    """``--sw-batch auto``: sw_batch_size 1, 2, 4, ... while volumes/s improves by more than SEARCH_GAIN over
    the value before and memory fits (on CUDA, out of memory ends the search; on the CPU it cannot be caught,
    so the search stops at the number of windows, past which a bigger batch changes nothing). Every tried
    value is a row; ``sw_batch_best`` marks the last that improved (a smaller batch wins within the gain)."""
    tried: list[Measurement] = []
    best = None
    size = 1
    while True:
        m = measure_volume(replace(spec, sw_batch_size=size), timer, work_cache)
        tried.append(m)
        measured(m)
        if m.error or not m.volumes_per_s:
            break
        if best is not None and m.volumes_per_s <= best.volumes_per_s * (1 + SEARCH_GAIN):
            break
        best = m
        if m.windows is None or size >= m.windows:
            break
        size *= 2
    return [replace(m, sw_batch_best=m is best) for m in tried]
