"""Which variants the checks run on and at which input, decided and refused before anything runs.

Every measured variant trains at the smallest size from ``--size`` (3D) or ``--size-2d`` (2D) up that it
trains and infers at, batch ``--batch``, fp32 eager: the reference configuration. The CUDA prediction traces
its own set of variants (``--predict``, default the article's), on the meta device, which costs seconds.
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.bench.spec import BenchSpec
from harness.options import OptionError

DEFAULT_MODELS = "unet2d,unet3d"
DEFAULT_PREDICT = "article"  # the article's variants
SIZE_3D, SIZE_2D, BATCH = 16, 64, 2


@dataclass(frozen=True)
class Plan:
    specs: tuple[BenchSpec, ...]  # the measured variants, one training spec each
    predict: tuple[BenchSpec, ...]  # the variants whose CUDA outcome is predicted
    user_models: tuple[str, ...]  # --model references (registered again in each worker process)


def _names(patterns: str, option: str) -> list[str]:
    from harness.catalog.registry import require_models

    names: list[str] = []
    for pattern in (p.strip() for p in patterns.split(",")):
        if not pattern:
            raise OptionError(f"{option} {patterns!r} holds an empty pattern. Way out: e.g. {option} unet2d,unet3d.")
        names += [n for n in require_models(pattern) if n not in names]
    return names


def spec_for(name: str, size_3d: int, size_2d: int, batch: int, device: str) -> BenchSpec:
    """The training spec of a variant at the smallest size from the requested one up that it runs; refused
    (OptionError, with the envelope's nearest supported input) when none nearby does."""
    from harness.bench.configuration import resolve
    from harness.bench.profiles import smallest_runnable
    from harness.catalog.registry import get_variant

    variant = get_variant(name)
    channels, dims = variant.example_input[1], variant.spatial_dims
    size = smallest_runnable(name, channels, size_3d if dims == 3 else size_2d, batch, dims, "")
    spec = BenchSpec(name, (channels,) + (size,) * dims, batch, "train", device,
                     cudnn_benchmark=False)
    refusal = resolve(spec).refusal
    if refusal:
        raise OptionError(f"{name} cannot train at batch {batch} from size {size} up: {refusal.removeprefix('unsupported: ')} "
                          f"Way out: another --size/--size-2d or --batch, or leave {name} out of --models.")
    return spec


def make_plan(models: str | None, user_models: tuple[str, ...], predict: str, size_3d: int, size_2d: int,
              batch: int, device: str) -> Plan:
    from harness.catalog.registry import list_models
    from harness.catalog.user import register_entry_points, register_reference

    register_entry_points()
    users = [register_reference(reference) for reference in user_models]
    names = _names(models, "--models") if models else ([] if users else _names(DEFAULT_MODELS, "--models"))
    names += [n for n in users if n not in names]
    if predict == "article":
        predicted = list_models("*", sources=("article",), available=True)
    elif predict == "none":
        predicted = []
    else:
        predicted = _names(predict, "--predict")
    predicted = [n for n in names if n not in predicted] + predicted
    specs = {n: spec_for(n, size_3d, size_2d, batch, device) for n in dict.fromkeys(names + predicted)}
    return Plan(tuple(specs[n] for n in names), tuple(specs[n] for n in predicted), tuple(user_models))
