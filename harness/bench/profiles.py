"""Sweep profiles: which configurations a bench run measures.

- ``smoke``: one tiny point per variant and mode; the tests session runs it (each benchmark once).
- ``cpu``: chosen when no GPU is present; small inputs, every variant, both modes; about 5 minutes
  of measuring on 2 cores.
- ``compare``: one point (32³, batch 2), both modes: the UNet++ comparison on a 2-core CPU.
- ``paper``: for GPUs; the article's input sizes and larger, several batch sizes, fp32 and bf16.

``smoke`` has no warm-up: its rows exercise the code and are marked ``warm=False``, which keeps them
out of tables, plots and regression baselines.

The ``best`` execution preset (``--exec-mode best``) is the fastest setting the harness knows for each
device: on CUDA, CUDA graphs (torch.compile "reduce-overhead") with bf16 autocast and channels-last;
it is a preset, not a search, and the rows say what ran.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from harness.catalog.registry import get_variant, list_models
from harness.bench.spec import BenchSpec


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

    def points(self, spatial_dims: int, device: str) -> tuple[tuple[int, int], ...]:
        if spatial_dims == 2:
            return self.points_2d
        return self.cuda_points_3d if device == "cuda" and self.cuda_points_3d else self.points_3d


PROFILES = {
    # One variant of each other measurement path too: UNet++ with MONAI's EfficientNet encoder, a MONAI
    # peer and an nnU-Net peer (each builds through another library).
    "smoke": Profile("smoke", ((16, 2),), ((32, 2),), warmup=0, rounds=1, blocks=1, fit_sizes=True,
                     also=("unetpp3d-effb0", "monai-basicunet", "nnunet-plain"),
                     description="one tiny point per variant and mode (the article's, one UNet++, one MONAI and "
                                 "one nnU-Net network), to exercise the code"),
    "cpu": Profile("cpu", ((16, 1), (16, 2), (32, 1), (32, 2)), ((64, 1), (64, 2), (128, 1), (128, 2)),
                   warmup=1, rounds=5, blocks=2,
                   description="small inputs for a 2-core machine without GPU"),
    "compare": Profile("compare", ((32, 2),), ((128, 2),), warmup=1, rounds=2, blocks=1,
                       description="one common point (3D: 32^3, batch 2; the smallest every 3D variant trains at) "
                                   "to compare heavy variants on a 2-core CPU"),
    "paper": Profile("paper", ((64, 1), (64, 2), (64, 4), (96, 1), (128, 1), (128, 2)),
                     ((224, 1), (224, 4), (512, 1), (512, 4)), precisions=("fp32", "bf16"),
                     warmup=5, rounds=20, blocks=5, description="the article's sizes and larger, on a GPU"),
    "peers": Profile("peers", ((32, 1), (32, 2)), (), warmup=1, rounds=5, blocks=2, sources=("article", "peer", "user"),
                     cuda_points_3d=((64, 1), (64, 2)),
                     description="the article's 3D variants beside MONAI's and nnU-Net's networks (and yours): "
                                 "32³ on CPU, the article's 64³ on a GPU"),
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
    else:
        names = list_models("*", sources=PROFILES[profile].sources, available=True)
        available = set(list_models("*", available=True))
        names += [name for name in PROFILES[profile].also if name in available and name not in names]
    return names + [name for name in user_models if name not in names]


def specs(profile: str, device: str, models: str | list[str] = "*", families: tuple[str, ...] | None = None,
          **options) -> list[BenchSpec]:
    """Every spec of a profile for the matching variants; ``options`` override BenchSpec fields
    (precision, channels_last, exec_mode, cudnn_benchmark, warmup, rounds, blocks)."""
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
        for (size, batch) in chosen.points(variant.spatial_dims, device):
            if chosen.fit_sizes:
                size = smallest_runnable(name, channels, size, batch, variant.spatial_dims, options.get("overrides", ""))
            for mode in chosen.modes:
                for precision in precisions:
                    spec = BenchSpec(name, (channels,) + (size,) * variant.spatial_dims, batch, mode, device,
                                     precision, warmup=chosen.warmup, rounds=chosen.rounds,
                                     blocks=chosen.blocks, cudnn_benchmark=device == "cuda")
                    result.append(replace(spec, **options))
    return result
