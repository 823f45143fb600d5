"""Sweep profiles: which configurations a bench run measures.

- ``smoke``: one tiny point per variant and mode; the tests session runs it (each benchmark once).
- ``cpu``: chosen when no GPU is present: a first table in about a minute of measuring on 2 idle cores that
  still shows the article's point: its 3D UNet, the three ResNet-encoder UNets and the 2D UNet, each as the
  article builds it (no setting changed) at the smallest input all of them train at (16³, batch 2; the 2D
  UNet at 64², batch 2), inference and training (10 configurations; 3 latency samples and 3 throughput blocks),
  in 5 fresh processes pooled into one run (``processes``: what compare needs to resolve 15%, docs/compare.md).
- ``cpu-full``: the former ``cpu`` sweep: every article variant at 16³ and 32³ (2D: 64² and 128²), batch 1 and
  2, both modes (64 configurations, 5 blocks each); about 5 minutes of measuring on 2 idle cores.
- ``compare``: one point (32³, batch 2), both modes: the UNet++ comparison on a 2-core CPU.
- ``paper``: for GPUs; the article's input sizes and larger, several batch sizes, fp32 and bf16.

``smoke`` has no warm-up: its rows exercise the code and are marked ``warm=False``, which keeps them
out of tables, plots and regression baselines.

- ``volume``: whole volumes through sliding windows (mode ``volume``, harness.bench.volume): the article's
  3D UNet and ResNet50-encoder UNet beside MONAI's BasicUNet and nnU-Net's plain UNet. On CPU a small volume
  that no window divides; on a GPU volumes of the size of MLPerf's preprocessed KiTS19 cases at 128³ windows.
  ``--volume DxHxW`` measures whole volumes with any profile (docs/volume.md).

The ``best`` execution preset (``--exec-mode best``) is the fastest setting the harness knows for each
device: on CUDA, CUDA graphs (torch.compile "reduce-overhead") with bf16 autocast and channels-last;
it is a preset, not a search, and the rows say what ran.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from harness.catalog.registry import get_variant, list_models
from harness.bench.spec import VOLUME_MODE, BenchSpec
from harness.bench.volume import DEFAULT_BLEND, DEFAULT_OVERLAP, VolumeOptions, volume_model


@dataclass(frozen=True)
class VolumePlan:
    """The whole volumes a profile measures on one kind of device (mode ``volume``)."""

    shapes: tuple[tuple[int, int, int], ...]  # spatial (D, H, W); the channels are the variant's
    roi: int  # window edge (roi³)
    sw_batches: tuple[int, ...] = (1,)
    models: tuple[str, ...] = ()  # only these variants get volumes (empty: every selected 3D segmentation variant)
    overlap: float = DEFAULT_OVERLAP
    blend: str = DEFAULT_BLEND
    mirror: bool = False
    origin: str = ""  # where the shapes come from


@dataclass(frozen=True)
class Profile:
    name: str
    points_3d: tuple[tuple[int, int], ...]  # (cubic size, batch)
    points_2d: tuple[tuple[int, int], ...]  # (square size, batch)
    precisions: tuple[str, ...] = ("fp32",)
    modes: tuple[str, ...] = ("inference", "train")
    warmup: int = 1
    rounds: int = 5
    blocks: int = 3
    description: str = ""
    sources: tuple[str, ...] = ("article", "user")  # whose variants run when --models is not given
    cuda_points_3d: tuple[tuple[int, int], ...] | None = None  # points_3d on a GPU, where they differ
    fit_sizes: bool = False  # grow each size to the smallest the variant runs in both modes (smoke)
    also: tuple[str, ...] = ()  # variants measured too when --models is not given (beyond ``sources``)
    only: tuple[str, ...] = ()  # when set, the variants measured when --models is not given (with your --model)
    volume: VolumePlan | None = None  # whole volumes (mode "volume")
    cuda_volume: VolumePlan | None = None  # the same on a GPU, where it differs
    # Fresh processes a plain `python -m harness bench` runs (--processes overrides): the process is the unit of
    # noise compare judges by (docs/compare.md), and PROCESSES is what a 15% change needs on a shared 2-core CPU.
    processes: int = 1

    def volume_plan(self, device: str) -> VolumePlan | None:
        return self.cuda_volume if device == "cuda" and self.cuda_volume else self.volume

    def points(self, spatial_dims: int, device: str) -> tuple[tuple[int, int], ...]:
        if spatial_dims == 2:
            return self.points_2d
        return self.cuda_points_3d if device == "cuda" and self.cuda_points_3d else self.points_3d


# docs/compare.md: on 2 shared cores a process median varies 4-9% from one fresh process to the next; a 15%
# change is resolved at compare's default level with 5 processes a side (2 runs x 16 configurations measured).
PROCESSES = 5
# Not measured on a GPU yet: 3 keeps a paper sweep affordable; compare's interval widens by itself if a GPU
# process varies as much as a CPU one (its spread is measured in each run).
GPU_PROCESSES = 3

PROFILES = {
    # One variant of each other measurement path too: UNet++ with MONAI's EfficientNet encoder, a MONAI
    # peer and an nnU-Net peer (each builds through another library).
    "smoke": Profile("smoke", ((16, 2),), ((32, 2),), warmup=0, rounds=1, blocks=1, fit_sizes=True,
                     also=("unetpp3d-effb0", "monai-basicunet", "nnunet-plain"),
                     volume=VolumePlan(((24, 20, 12),), 16, (2,), models=("unet3d",),
                                       origin="one tiny volume through the whole-volume path: 4 windows of 16³, one "
                                              "axis shorter than the window (padded), none divided by it"),
                     description="one tiny point per variant and mode (the article's, one UNet++, one MONAI and "
                                 "one nnU-Net network), to exercise the code"),
    # The first table (issue 24): 10 configurations, timed on 2 cores in docs/sweeps.md. 16³ at batch 2 is the
    # smallest input every ResNet-encoder UNet trains at (batch 1 leaves layer4's BatchNorm one value per channel).
    "cpu": Profile("cpu", ((16, 2),), ((64, 2),), warmup=1, rounds=3, blocks=3, processes=PROCESSES,
                   only=("unet3d", "unet3d-resnet50", "unet3d-resnet101", "unet3d-resnet152", "unet2d"),
                   description="a first table on a 2-core machine without GPU: the article's 3D UNet, its three "
                               "ResNet-encoder UNets and its 2D UNet at 16³ (64²), batch 2, both modes"),
    "cpu-full": Profile("cpu-full", ((16, 1), (16, 2), (32, 1), (32, 2)), ((64, 1), (64, 2), (128, 1), (128, 2)),
                        warmup=1, rounds=5, blocks=5,  # 5 blocks: a 95% interval of throughput (compare, report)
                        processes=PROCESSES,
                        description="small inputs for a 2-core machine without GPU: every article variant"),
    "compare": Profile("compare", ((32, 2),), ((128, 2),), warmup=1, rounds=2, blocks=1,
                       description="one common point (3D: 32^3, batch 2; the smallest every 3D variant trains at) "
                                   "to compare heavy variants on a 2-core CPU"),
    "paper": Profile("paper", ((64, 1), (64, 2), (64, 4), (96, 1), (128, 1), (128, 2)),
                     ((224, 1), (224, 4), (512, 1), (512, 4)), precisions=("fp32", "bf16"),
                     warmup=5, rounds=20, blocks=5, processes=GPU_PROCESSES,
                     description="the article's sizes and larger, on a GPU"),
    "peers": Profile("peers", ((32, 1), (32, 2)), (), warmup=1, rounds=5, blocks=2, sources=("article", "peer", "user"),
                     cuda_points_3d=((64, 1), (64, 2)),
                     description="the article's 3D variants beside MONAI's and nnU-Net's networks (and yours): "
                                 "32³ on CPU, the article's 64³ on a GPU"),
    # 3 blocks: stitch_fraction's interval comes from the paired blocks (docs/volume.md).
    "volume": Profile("volume", (), (), modes=(), warmup=1, rounds=2, blocks=3, sources=("user",),
                      also=("unet3d", "unet3d-resnet50", "monai-basicunet", "nnunet-plain"),
                      volume=VolumePlan(((40, 56, 48),), 32, (1, 4),
                                        origin="chosen for a 2-core CPU (12 windows of 32³ at overlap 0.5, so the "
                                               "profile takes a few minutes); no axis a multiple of the window, so the "
                                               "last window of every axis is moved back to the edge"),
                      cuda_volume=VolumePlan(((192, 192, 192), (192, 320, 320)), 128, (1, 2, 4),
                                             origin="in the range of MLPerf's preprocessed KiTS19 cases as issue 18 "
                                                    "describes them (each axis padded to a multiple of 64, at least "
                                                    "128), with MLPerf's 128³ windows (8 and 32 windows at overlap 0.5; "
                                                    "no axis a multiple of the window); chosen sizes, not cases of the "
                                                    "data set"),
                      description="whole volumes through sliding windows (overlap 0.5, Gaussian blending, no mirroring): "
                                  "the article's unet3d and unet3d-resnet50 beside MONAI's BasicUNet and nnU-Net's plain "
                                  "UNet; see each plan's origin for where the shapes come from"),
    # Issue 19, item 6 (docs/memory.md): measured peaks for the memory predictor on a GPU (every CUDA row carries
    # its prediction). `memory`: two peers at 32-128³, batch 1-4, fp32 and bf16; `memory-max`: the largest batch
    # that fits (with --find-max-batch) at 128³ in training for three networks. Short timing: these rows are for
    # their memory. On CPU one small point each, to exercise them.
    "memory": Profile("memory", ((32, 2),), (), precisions=("fp32", "bf16"), warmup=1, rounds=3, blocks=1,
                      sources=("user",), also=("monai-basicunet", "nnunet-plain"),
                      cuda_points_3d=((32, 1), (32, 2), (32, 4), (64, 1), (64, 2), (64, 4), (96, 1), (96, 2),
                                      (128, 1), (128, 2)),
                      description="peak memory of MONAI's BasicUNet and nnU-Net's plain UNet at 32-128³, batch 1-4, "
                                  "fp32 and bf16, for the memory predictor (docs/memory.md)"),
    "memory-max": Profile("memory-max", ((32, 2),), (), precisions=("fp32", "bf16"), modes=("train",), warmup=1,
                          rounds=3, blocks=1, sources=("user",),
                          also=("unet3d-resnet50", "monai-basicunet", "nnunet-plain"), cuda_points_3d=((128, 1),),
                          description="with --find-max-batch: the largest training batch at 128³ of three networks, "
                                      "beside the planner's (docs/memory.md)"),
}


BEST = {"cuda": dict(exec_mode="cudagraphs", precision="bf16", channels_last=True)}


def default_profile(device: str) -> str:
    return "paper" if device == "cuda" else "cpu"


def best_options(device: str) -> dict:
    """The ``best`` preset's options on ``device``; raises ValueError where none is defined."""
    if device not in BEST:
        raise ValueError(f"--exec-mode best is defined for CUDA only (CUDA graphs + bf16 + channels-last); "
                         f"on {device} choose eager or compile")
    return dict(BEST[device])


def smallest_runnable(name: str, channels: int, size: int, batch: int, dims: int, overrides: str) -> int:
    """The smallest cubic size from ``size`` up that the variant runs in inference and training (the
    smoke profile's tiny point must be one every variant can take: nnU-Net's networks need 32, say)."""
    from harness.envelope import check
    from harness.overrides import parse_overrides

    settings = parse_overrides(overrides.split(";") if overrides else [])
    for candidate in range(size, 4 * size + 1):
        shape = (batch, channels) + (candidate,) * dims
        if all(check(name, shape, settings, mode, suggest=False).supported for mode in ("inference", "train")):
            return candidate
    return size  # none nearby: the row records why


def select_models(profile: str, pattern: str | None = None, user_models: tuple[str, ...] = ()) -> list[str]:
    """The variants a sweep runs: those matching ``pattern`` (any source) plus your models; without a
    pattern, your models alone when given, else the profile's sources. Variants whose library is
    missing are left out (``python -m harness list`` says what to install)."""
    if pattern is not None:
        names = list_models(pattern, available=True)
    elif user_models:
        names = []
    elif PROFILES[profile].only:
        available = set(list_models("*", available=True))
        names = [name for name in PROFILES[profile].only if name in available]
    else:
        names = list_models("*", sources=PROFILES[profile].sources, available=True)
        available = set(list_models("*", available=True))
        names += [name for name in PROFILES[profile].also if name in available and name not in names]
    return names + [name for name in user_models if name not in names]


def patch_roi(chosen: Profile, name: str, channels: int, device: str, overrides: str) -> int:
    """A variant's window when none is given: the profile's own, else its largest 3D patch (grown to the
    smallest the variant runs where the profile fits sizes)."""
    plan = chosen.volume_plan(device)
    if plan is not None:
        return plan.roi
    points = chosen.points(3, device) or PROFILES["cpu-full"].points(3, device)
    size, batch = max(points)
    return smallest_runnable(name, channels, size, batch, 3, overrides) if chosen.fit_sizes else size


def volume_specs(chosen: Profile, name: str, device: str, precisions: tuple[str, ...], volume: VolumeOptions | None,
                 overrides: str = "") -> list[BenchSpec]:
    """The whole-volume specs of a variant: --volume's shapes (any profile) or the profile's plan; windows,
    overlap, blending, mirroring and sw_batch_size from the options, the preset, the plan, in that order."""
    variant = get_variant(name)
    plan = chosen.volume_plan(device)
    volume = volume or VolumeOptions()
    if not volume_model(variant):
        return []
    if volume.volumes:
        shapes = volume.volumes
    elif plan is not None and (not plan.models or name in plan.models):
        shapes = plan.shapes
    else:
        return []
    channels = variant.example_input[1]
    roi, overlap, blend, mirror = volume.window(
        patch_roi(chosen, name, channels, device, overrides), *((plan.overlap, plan.blend, plan.mirror) if plan else ()))
    sw_batches = (volume.sw_batch,) if volume.sw_batch is not None else (plan.sw_batches if plan else (1,))
    return [BenchSpec(name, (channels, *shape), 1, VOLUME_MODE, device, precision, warmup=chosen.warmup,
                      rounds=chosen.rounds, blocks=chosen.blocks, cudnn_benchmark=device == "cuda", roi=tuple(roi),
                      overlap=float(overlap), blend=blend, sw_batch_size=sw, mirror=bool(mirror))
            for shape in shapes for sw in sw_batches for precision in precisions]


def specs(profile: str, device: str, models: str | list[str] = "*", families: tuple[str, ...] | None = None,
          volume: VolumeOptions | None = None, **options) -> list[BenchSpec]:
    """Every spec of a profile for the matching variants; ``options`` override BenchSpec fields
    (precision, channels_last, exec_mode, cudnn_benchmark, warmup, rounds, blocks). ``volume``: the
    whole-volume options (with --volume, whole volumes only)."""
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
    chosen = PROFILES[profile]
    precisions = (options.pop("precision"),) if options.get("precision") else chosen.precisions
    options = {k: v for k, v in options.items() if v is not None}
    result = []
    for name in (list_models(models, available=True) if isinstance(models, str) else models):
        variant = get_variant(name)
        if families and variant.family not in families:
            continue
        channels = variant.example_input[1]
        volumes = [replace(spec, **options) for spec in volume_specs(chosen, name, device, precisions, volume,
                                                                     options.get("overrides", ""))]
        if volume is not None and volume.volumes:
            result += volumes  # --volume: whole volumes only
            continue
        for (size, batch) in chosen.points(variant.spatial_dims, device):
            if chosen.fit_sizes:
                size = smallest_runnable(name, channels, size, batch, variant.spatial_dims, options.get("overrides", ""))
            for mode in chosen.modes:
                for precision in precisions:
                    spec = BenchSpec(name, (channels,) + (size,) * variant.spatial_dims, batch, mode, device,
                                     precision, warmup=chosen.warmup, rounds=chosen.rounds,
                                     blocks=chosen.blocks, cudnn_benchmark=device == "cuda")
                    result.append(replace(spec, **options))
        result += volumes
    return result
