"""``python -m harness plan``: what fits on a GPU, predicted on the CPU (harness.bench.memory_model).

For a memory budget (``--gpu-memory 24GiB``, or ``--gpu NAME`` for a named card) and each variant: the
largest batch at a patch (``--patch``, default 128³) and the largest patch at a batch (``--batch``, default 2;
cubic, or with ``--volume D,H,W`` anisotropic, growing the axis with the most room left), for inference and
training, fp32 and bf16, each with its predicted peak and the budget left over. Plans keep ``--margin`` of the
budget free (default 10%: the allocator reserves more than it hands out, and the prediction was within 8% on
the committed GPU rows). For nnU-Net's networks, nnU-Net's own heuristic is shown beside it.

``--input C,D,H,W`` (with ``--batch``, ``--mode``, ``--precision``, ``--channels-last``) predicts that one
configuration instead; ``--json`` writes JSON for scripts.

How a plan is searched: each variant, mode and precision is simulated twice (two small sizes, on fake
tensors), which classifies every allocation of the step as constant, per sample, per voxel or both
(``ScaledTrace``); a vectorized estimate then scans batches and patches, and the allocator replay confirms
each answer. The two simulations are cached on disk (``$UNET3D_BENCH_CACHE``, default
``~/.cache/unet3d-bench``), keyed by torch's version, this code and the model's source.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import pickle
import re
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

from harness.options import EXIT_CODES_HELP, OptionError
from harness.options import report as report_option_error

GIB = 1024 ** 3
MIB = 1024 ** 2
# Memory set aside on a named card for the CUDA context, cuDNN/cuBLAS handles and the allocator's slack,
# which torch.cuda.max_memory_allocated (what is predicted) never counts. An allowance, not a measurement.
CONTEXT_ALLOWANCE_GIB = 1.0

# Common cards, 8 to 141 GB: the memory each vendor states for the card (GB as marketed, taken as GiB: GPU
# memory comes in binary sizes), not a measurement. Usable = capacity - CONTEXT_ALLOWANCE_GIB.
GPUS = {
    "rtx-3070": ("NVIDIA GeForce RTX 3070", 8), "rtx-4060": ("NVIDIA GeForce RTX 4060", 8),
    "rtx-3080": ("NVIDIA GeForce RTX 3080", 10), "gtx-1080-ti": ("NVIDIA GeForce GTX 1080 Ti", 11),
    "rtx-2080-ti": ("NVIDIA GeForce RTX 2080 Ti", 11), "rtx-3060": ("NVIDIA GeForce RTX 3060", 12),
    "t4": ("NVIDIA T4", 16), "v100-16gb": ("NVIDIA V100 16GB", 16), "rtx-4080": ("NVIDIA GeForce RTX 4080", 16),
    "rtx-a4000": ("NVIDIA RTX A4000", 16), "rtx-3090": ("NVIDIA GeForce RTX 3090", 24),
    "rtx-4090": ("NVIDIA GeForce RTX 4090", 24), "a10": ("NVIDIA A10", 24), "l4": ("NVIDIA L4", 24),
    "rtx-a5000": ("NVIDIA RTX A5000", 24), "rtx-5090": ("NVIDIA GeForce RTX 5090", 32),
    "v100-32gb": ("NVIDIA V100 32GB", 32), "a100-40gb": ("NVIDIA A100 40GB", 40), "a40": ("NVIDIA A40", 48),
    "rtx-a6000": ("NVIDIA RTX A6000", 48), "l40s": ("NVIDIA L40S", 48), "rtx-6000-ada": ("NVIDIA RTX 6000 Ada", 48),
    "a100-80gb": ("NVIDIA A100 80GB", 80), "h100": ("NVIDIA H100 80GB (SXM or PCIe)", 80),
    "h100-nvl": ("NVIDIA H100 NVL", 94), "h200": ("NVIDIA H200", 141),
}

# nnU-Net's heuristic (nnunetv2 ExperimentPlanner): the sum of convolution output elements of a patch
# (the network's compute_conv_feature_map_size) against a reference value that stands for 8 GB at batch 2,
# scaled with the target: 560e6 for the default planner's PlainConvUNet, 680e6 for the ResEnc M preset.
NNUNET_REFERENCE = {"PlainConvUNet": 560e6, "ResidualEncoderUNet": 680e6}
NNUNET_REFERENCE_GB, NNUNET_REFERENCE_BATCH = 8, 2

UNITS = {"b": 1, "kb": 10 ** 3, "mb": 10 ** 6, "gb": 10 ** 9, "tb": 10 ** 12,
         "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "tib": 2 ** 40}
CACHE_VERSION = 1
MAX_BATCH = 1 << 16
MAX_PATCH = 2048


# --- options ----------------------------------------------------------------------------------------------
def parse_memory(text: str, option: str = "--gpu-memory") -> int:
    """Bytes from '24GiB', '80 GB', '24000MiB' (GB = 10^9 bytes, GiB = 2^30)."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([A-Za-z]*)\s*", str(text))
    unit = match.group(2).lower() if match else ""
    if match and float(match.group(1)) == 0:
        raise OptionError(f"{option} {text!r} is zero: no configuration fits in it. Way out: give the GPU's "
                          f"memory, e.g. {option} 24GiB, or --gpu NAME (--gpu list shows the cards).")
    if not match or unit not in UNITS:
        raise OptionError(f"{option} {text!r} is not an amount of memory: give a number and a unit (B, KB, MB, "
                          f"GB, TB, KiB, MiB, GiB or TiB; GB = 10^9 bytes, GiB = 2^30), e.g. {option} 24GiB, or name "
                          f"a card with --gpu (--gpu list shows them).")
    amount = float(match.group(1)) * UNITS[unit]
    if amount < MIB:
        raise OptionError(f"{option} {text!r} is {'zero' if amount == 0 else 'less than 1 MiB'}: no configuration "
                          f"fits in it. Way out: give the GPU's memory, e.g. {option} 24GiB, or --gpu NAME.")
    return int(amount)


def _negative_memory(argv: list[str]) -> None:
    """argparse reads '--gpu-memory -3GiB' as a missing value; say what is wrong instead."""
    for i, arg in enumerate(argv):
        value = arg.split("=", 1)[1] if arg.startswith("--gpu-memory=") else (
            argv[i + 1] if arg == "--gpu-memory" and i + 1 < len(argv) else None)
        if value is not None and value.strip().startswith("-"):
            raise OptionError(f"--gpu-memory {value!r} is negative: a budget is a positive amount of memory. "
                              f"Way out: e.g. --gpu-memory 24GiB, or --gpu NAME (--gpu list shows the cards).")


def gpu_budget(name: str) -> tuple[str, int, int]:
    """(card, vendor capacity in bytes, usable bytes) of a named card."""
    key = name.strip().lower()
    if key not in GPUS:
        raise OptionError(f"--gpu {name!r} is not a card this planner knows. Known: {', '.join(GPUS)} (--gpu list "
                          f"shows their memory). Way out: one of those, or give the memory: --gpu-memory 24GiB.")
    card, gib = GPUS[key]
    return card, gib * GIB, int((gib - CONTEXT_ALLOWANCE_GIB) * GIB)


def gpu_table() -> str:
    lines = [f"{'--gpu':14s} {'card':34s} {'capacity':>9s} {'usable':>9s}"]
    for key, (card, gib) in GPUS.items():
        lines.append(f"{key:14s} {card:34s} {gib:>6d} GiB {gib - CONTEXT_ALLOWANCE_GIB:>5.1f} GiB")
    lines.append(f"Capacity: as each vendor states it (GB as marketed, taken as GiB), not measured here. Usable: "
                 f"capacity less {CONTEXT_ALLOWANCE_GIB:g} GiB set aside for the CUDA context and library handles "
                 f"(an allowance, not a measurement), since the predicted peak, like torch.cuda.max_memory_allocated, "
                 f"leaves them out.")
    return "\n".join(lines)


def _spatial(text: str, dims: int, option: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(p) for p in str(text).replace("x", ",").split(",") if p.strip())
    except ValueError:
        sizes = ()
    if len(sizes) == 1:
        sizes = sizes * dims
    if len(sizes) != dims or min(sizes) < 1:
        raise OptionError(f"{option} {text!r} is not a {dims}D size: give one positive integer (a cube) or {dims} "
                          f"separated by commas, e.g. {option} {','.join(['128'] * dims)}.")
    return sizes


# --- the plan ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fit:
    """One answer: a configuration, its predicted peak and floor (MiB) and what is left of the budget."""

    batch: int
    patch: tuple[int, ...]
    predicted_peak_mb: float
    predicted_floor_mb: float
    left_mb: float


@dataclass
class PlanRow:
    model: str
    mode: str
    precision: str
    channels_last: bool
    largest_batch: Fit | None = None  # at the given patch
    largest_patch: Fit | None = None  # at the given batch
    nnunet: dict | None = None
    note: str = ""


@dataclass
class Plan:
    budget_bytes: int
    limit_bytes: int  # budget less the margin: what a plan may use
    margin: float
    budget_text: str
    patch: tuple[int, ...] | None
    batch: int
    volume: tuple[int, ...] | None
    rows: list[PlanRow] = field(default_factory=list)


class _Model:
    """A variant as the planner sees it: its envelope, its patch step, its traces."""

    def __init__(self, name: str, overrides: dict, overrides_text: str, step: int):
        from harness.catalog.registry import get_variant

        self.name, self.overrides, self.overrides_text = name, overrides, overrides_text
        self.variant = get_variant(name)
        self.dims = self.variant.spatial_dims
        args = self.variant.constructor_args(**overrides)
        argument = self.variant.record.channels_argument
        self.channels = args.get(argument) if argument and isinstance(args.get(argument), int) else \
            self.variant.example_input[1]
        self.step = step

    def verdict(self, batch: int, patch, mode: str, precision: str):
        from harness.envelope import check

        return check(self.variant, (batch, self.channels, *patch), self.overrides, mode, "cuda", precision,
                     suggest=False)

    def accepts(self, batch: int, patch, mode: str, precision: str) -> bool:
        return self.verdict(batch, patch, mode, precision).supported

    def smallest_batch(self, patch, mode, precision) -> int | None:
        return next((b for b in (1, 2) if self.accepts(b, patch, mode, precision)), None)


def _fingerprint(model: _Model) -> str:
    """What a cached trace depends on besides the configuration: torch's version, the memory model's and the
    workload's code, and the model's: every source file of the package its builder lives in (or the builder's
    own file), and the version of the library a peer is built by."""
    import importlib.metadata

    import torch

    from harness.bench import memory_model, workload
    from harness.catalog.registry import PEER_PACKAGES

    files = [Path(inspect.getsourcefile(memory_model)), Path(inspect.getsourcefile(workload))]
    builder = model.variant.builder
    package = sys.modules.get(getattr(builder, "__module__", "").split(".")[0])
    if package is not None and getattr(package, "__path__", None):
        files += sorted(p for root in package.__path__ for p in Path(root).rglob("*.py"))
    else:
        try:
            files.append(Path(inspect.getsourcefile(builder)))
        except (TypeError, OSError):
            pass
    digest = hashlib.sha256(f"{CACHE_VERSION}|{torch.__version__}".encode())
    for path in files:
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(str(path).encode())
    library = model.variant.record.library
    if library:
        name = PEER_PACKAGES[library].replace("_", "-")
        try:
            digest.update(importlib.metadata.version(name).encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(name.encode())
    return digest.hexdigest()[:16]


def _cache_dir() -> Path:
    return Path(os.environ.get("UNET3D_BENCH_CACHE") or Path.home() / ".cache" / "unet3d-bench") / "memory"


def _scaled(model: _Model, mode: str, precision: str, channels_last: bool, cache: bool):
    """The model's ScaledTrace for a mode and precision: simulated at two small sizes (batch 1 and 2 where the
    step is the same at both, else 2 and 4), or read from the disk cache."""
    from harness.bench import memory_model as mm

    cubes = [s for s in range(max(32, model.step), 16 * model.step + 1, model.step)
             if model.accepts(2, (s,) * model.dims, mode, precision)][:2]
    if len(cubes) < 2:
        raise ValueError(f"no two patch sizes from {max(32, model.step)} up in steps of {model.step} that "
                         f"{model.name} accepts ({mode}, {precision})")
    key = (model.name, model.overrides_text, model.channels, mode, precision, channels_last, tuple(cubes))
    path = _cache_dir() / f"{_fingerprint(model)}-{hashlib.sha256(repr(key).encode()).hexdigest()[:20]}.pkl"
    if cache and path.is_file():
        try:
            return pickle.loads(path.read_bytes())
        except Exception:  # a torn or stale file: simulate again
            pass
    failure = None
    for batches in ((1, 2), (2, 4)):
        first, second = (batches[0], (cubes[0],) * model.dims), (batches[1], (cubes[1],) * model.dims)
        if not model.accepts(first[0], first[1], mode, precision):
            continue
        try:
            scaled = mm.scaled_trace(model.name, model.overrides_text, model.channels, mode, precision,
                                     channels_last, first, second)
            break
        except ValueError as error:  # the step differs between the two (e.g. batch 1 elides a reduction)
            failure = error
    else:
        raise ValueError(f"{model.name}: its step does not scale between two small sizes ({failure})")
    if cache:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(pickle.dumps(scaled))
            os.replace(tmp, path)
        except OSError:
            pass
    return scaled


def _exact(scaled, batch: int, patch):
    from harness.bench.memory_model import prediction

    return prediction(scaled.at(batch, patch))


def _fit_answer(scaled, batch, patch, budget: int) -> Fit:
    done = _exact(scaled, batch, patch)
    return Fit(batch, tuple(patch), round(done.peak_mb, 1), round(done.floor_mb, 1),
               round(budget / MIB - done.peak_mb, 1))


def _largest_batch(model: _Model, scaled, patch, mode, precision, plan: Plan) -> tuple[Fit | None, str]:
    smallest = model.smallest_batch(patch, mode, precision)
    if smallest is None:
        return None, model.verdict(2, patch, mode, precision).message()
    limit_mb = plan.limit_bytes / MIB
    fits = lambda b: scaled.estimate(b, patch) <= limit_mb  # noqa: E731
    if not fits(smallest):
        return None, f"batch {smallest} already needs {_exact(scaled, smallest, patch).peak_mb:.0f} MiB"
    low, high = smallest, smallest * 2
    while high <= MAX_BATCH and fits(high):
        low, high = high, high * 2
    high = min(high, MAX_BATCH + 1)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if fits(mid) else (low, mid)
    batch = low
    while batch >= smallest and _exact(scaled, batch, patch).peak_mb > limit_mb:  # the replay adds a little
        batch -= 1
    if batch < smallest:
        return None, f"batch {smallest} already needs {_exact(scaled, smallest, patch).peak_mb:.0f} MiB"
    return _fit_answer(scaled, batch, patch, plan.budget_bytes), ""


def _largest_patch(model: _Model, scaled, batch, mode, precision, plan: Plan) -> tuple[Fit | None, str]:
    limit_mb = plan.limit_bytes / MIB
    step = model.step
    if plan.volume is None:
        sizes = list(range(step, MAX_PATCH + 1, step))
        fits = [scaled.estimate(batch, (s,) * model.dims) <= limit_mb for s in sizes]
        candidates = [s for s, ok in zip(sizes, fits) if ok]
        for s in reversed(candidates):
            patch = (s,) * model.dims
            if model.accepts(batch, patch, mode, precision) and _exact(scaled, batch, patch).peak_mb <= limit_mb:
                return _fit_answer(scaled, batch, patch, plan.budget_bytes), ""
        return None, f"no patch from {step} up in steps of {step} fits at batch {batch}"
    # Anisotropic: from the smallest accepted cube, grow the axis with the most room left in the volume, relative
    # to the volume's size on that axis (so the patch takes the volume's proportions while it can).
    start = next((s for s in range(step, MAX_PATCH + 1, step)
                  if model.accepts(batch, (s,) * model.dims, mode, precision)), None)
    if start is None or scaled.estimate(batch, (start,) * model.dims) > limit_mb:
        return None, f"no patch from {step} up in steps of {step} fits at batch {batch}"
    caps = [step * (v // step) for v in plan.volume]  # never a patch larger than the volume on any axis
    if start > min(caps):
        return None, (f"the smallest patch {model.name} accepts ({_shape((start,) * model.dims)}) is larger than the "
                      f"volume {_shape(plan.volume)}")
    patch = [start] * model.dims
    while True:
        grown = False
        for axis in sorted(range(model.dims), key=lambda a: (patch[a] / caps[a], a)):
            if patch[axis] + step > caps[axis]:
                continue
            trial = list(patch)
            trial[axis] += step
            if scaled.estimate(batch, trial) <= limit_mb and model.accepts(batch, trial, mode, precision):
                patch, grown = trial, True
                break
        if not grown:
            break
    while _exact(scaled, batch, patch).peak_mb > limit_mb:  # shrink the largest axis until the replay agrees
        axis = max(range(model.dims), key=lambda a: patch[a])
        if patch[axis] - step < start:
            return None, f"no patch fits at batch {batch}"
        patch[axis] -= step
    return _fit_answer(scaled, batch, tuple(patch), plan.budget_bytes), ""


def _nnunet(model: _Model, plan: Plan, patch_answer: Fit | None) -> dict | None:
    """nnU-Net's heuristic for its own networks: its estimate of the answers and its own answers."""
    if model.variant.family != "nnunet":
        return None
    from harness.catalog.meta_probe import build_variant

    network = build_variant(model.variant, model.overrides, "meta")
    reference_value = NNUNET_REFERENCE.get(type(network).__name__)
    if reference_value is None or not hasattr(network, "compute_conv_feature_map_size"):
        return None
    target_gb = plan.budget_bytes / GIB
    reference = reference_value * target_gb / NNUNET_REFERENCE_GB

    def feature_map(patch) -> float:
        return float(network.compute_conv_feature_map_size(tuple(patch)))

    def estimate_gb(patch, batch) -> float:
        return NNUNET_REFERENCE_GB * feature_map(patch) / reference_value * batch / NNUNET_REFERENCE_BATCH

    out = {"reference_value": reference_value, "target_gb": round(target_gb, 2),
           "rule": f"sum of convolution outputs <= {reference_value:.3g} x target GB / {NNUNET_REFERENCE_GB} at batch "
                   f"{NNUNET_REFERENCE_BATCH}; batch = round(reference / estimate x {NNUNET_REFERENCE_BATCH})"}
    if plan.patch is not None:
        out["batch_at_patch"] = max(1, round(reference / feature_map(plan.patch) * NNUNET_REFERENCE_BATCH))
    sizes = [s for s in range(model.step, MAX_PATCH + 1, model.step)
             if feature_map((s,) * model.dims) * plan.batch / NNUNET_REFERENCE_BATCH <= reference]
    out["patch_at_batch"] = [sizes[-1]] * model.dims if sizes else None
    if patch_answer is not None:
        out["estimate_gb_of_largest_patch"] = round(estimate_gb(patch_answer.patch, patch_answer.batch), 2)
    return out


def _simulate_ahead(models: list[str], overrides: dict, overrides_text: str, modes, precisions, channels_last: bool,
                    step: int, jobs: int) -> None:
    """Fill the disk cache with the traces the plan will need, ``jobs`` processes at a time (forked: each
    simulation is a pure-Python run on fake tensors, so processes, not threads, run them side by side)."""
    import concurrent.futures
    import multiprocessing

    work = [(name, mode, precision) for name in models for mode in modes for precision in precisions]
    if jobs <= 1 or len(work) <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return
    with concurrent.futures.ProcessPoolExecutor(min(jobs, len(work)), mp_context=multiprocessing.get_context("fork"),
                                                initializer=_worker_init) as pool:
        for future in [pool.submit(_simulate_one, name, overrides, overrides_text, mode, precision, channels_last, step)
                       for name, mode, precision in work]:
            future.result()


def _worker_init() -> None:
    import torch

    torch.set_num_threads(1)


def _simulate_one(name, overrides, overrides_text, mode, precision, channels_last, step) -> None:
    model = _Model(name, overrides, overrides_text, step)
    try:
        model.step = _model_step(model, mode, precision, step)
        _scaled(model, mode, precision, channels_last, cache=True)
    except (ValueError, OptionError):  # the plan itself says why, when it gets there
        pass


def make_plan(models: list[str], overrides: dict, overrides_text: str, modes, precisions, channels_last: bool,
              budget: int, budget_text: str, margin: float, patch_text: str | None, batch: int, volume, step: int,
              cache: bool = True, jobs: int = 1) -> Plan:
    plan = Plan(budget, int(budget * (1 - margin)), margin, budget_text, None, batch, volume)
    planned = []
    for name in models:  # refuse before simulating anything: a volume of another rank, a patch refused
        model = _Model(name, overrides, overrides_text, step)
        if volume is not None and len(volume) != model.dims:
            raise OptionError(f"--volume {','.join(map(str, volume))} has {len(volume)} sizes but {name} is "
                              f"{model.dims}D. Way out: give {model.dims} sizes, or plan {len(volume)}D models only.")
        if volume is not None and min(volume) < step:
            raise OptionError(f"--volume {','.join(map(str, volume))}: patches grow in steps of {step} (--step), so "
                              f"no patch fits inside a volume smaller than {step} on an axis. Way out: give the "
                              f"volume's real size (e.g. --volume 128,128,64), or a smaller --step.")
        text = patch_text  # the default: 128, or within a volume its size (in steps of --step) up to 128
        if text is None:
            text = "128" if volume is None else ",".join(str(min(128, step * (v // step))) for v in volume)
        patch = _spatial(text, model.dims, "--patch")
        if volume is not None and any(p > v for p, v in zip(patch, volume)):
            raise OptionError(f"--patch {text} is larger than --volume {','.join(map(str, volume))} on an axis: "
                              f"a patch never exceeds the volume it is cut from. Way out: a patch within the volume, "
                              f"or leave --patch out (then the volume's size up to 128, in steps of --step).")
        for mode in modes:
            for precision in precisions:
                if model.smallest_batch(patch, mode, precision) is None:
                    from harness.envelope import check

                    verdict = check(model.variant, (2, model.channels, *patch), overrides, mode, "cuda", precision)
                    raise OptionError(f"--patch {text}: {verdict.message()}")
        planned.append((model, patch))
        plan.patch = patch
    if cache:
        _simulate_ahead(models, overrides, overrides_text, modes, precisions, channels_last, step, jobs)
    for model, patch in planned:
        for mode in modes:
            for precision in precisions:
                row = PlanRow(model.name, mode, precision, channels_last)
                try:
                    model.step = _model_step(model, mode, precision, step)
                    scaled = _scaled(model, mode, precision, channels_last, cache)
                except ValueError as error:
                    row.note = str(error)
                    plan.rows.append(row)
                    continue
                row.largest_batch, note_b = _largest_batch(model, scaled, patch, mode, precision, plan)
                row.largest_patch, note_p = _largest_patch(model, scaled, batch, mode, precision, plan)
                row.nnunet = _nnunet(model, plan, row.largest_patch)
                row.note = "; ".join(n for n in (note_b, note_p) if n)
                plan.rows.append(row)
    return plan


def _model_step(model: _Model, mode: str, precision: str, step: int) -> int:
    """The smallest multiple of ``step`` by which accepted cubic patches grow (e.g. 32 where a network needs
    sizes that are multiples of 32 and ``step`` is 16)."""
    first = next((s for s in range(max(32, step), 16 * step + 1, step)
                  if model.accepts(2, (s,) * model.dims, mode, precision)), None)
    if first is None:
        return step
    nxt = next((s for s in range(first + step, first + 8 * step + 1, step)
                if model.accepts(2, (s,) * model.dims, mode, precision)), first + step)
    return nxt - first


# --- fixed configurations ----------------------------------------------------------------------------------
def predict_fixed(models: list[str], overrides_text: str, input_shape, batch: int, modes, precisions,
                  channels_last: bool, budget: int | None) -> list[dict]:
    from harness.bench.memory_model import predict_peak_memory
    from harness.bench.spec import BenchSpec
    from harness.envelope import check

    out = []
    for name in models:
        for mode in modes:
            for precision in precisions:
                spec = BenchSpec(name, tuple(input_shape), batch, mode, device="cuda", precision=precision,
                                 channels_last=channels_last, overrides=overrides_text)
                verdict = check(name, spec.full_input_shape, spec.constructor_overrides, mode, "cuda", precision)
                if not verdict.supported:
                    raise OptionError(f"--input {','.join(map(str, input_shape))} --batch {batch}: {verdict.message()}")
                done = predict_peak_memory(spec)
                item = {"model": name, "input_shape": list(input_shape), "batch": batch, "mode": mode,
                        "precision": precision, "channels_last": channels_last,
                        "predicted_peak_mb": round(done.peak_mb, 1), "predicted_floor_mb": round(done.floor_mb, 1)}
                if budget is not None:
                    item["budget_mb"] = round(budget / MIB, 1)
                    item["left_mb"] = round(budget / MIB - done.peak_mb, 1)
                out.append(item)
    return out


# --- rendering ---------------------------------------------------------------------------------------------
def _shape(patch) -> str:
    return "x".join(map(str, patch)) if len(set(patch)) > 1 else f"{patch[0]}^{len(patch)}"


def render(plan: Plan) -> str:
    patch = _shape(plan.patch) if plan.patch else "?"
    head = (f"Budget {plan.budget_text} = {plan.budget_bytes / GIB:.2f} GiB; plans keep {plan.margin:.0%} of it free "
            f"and so use at most {plan.limit_bytes / GIB:.2f} GiB. Predicted peak = torch.cuda.max_memory_allocated "
            f"of one step as the benchmark measures it (CUDA context not included); 'left' = budget - peak.")
    columns = (f"{'model':24s} {'mode':9s} {'dtype':5s} | {'batch @ ' + patch:>14s} {'peak MiB':>9s} {'left MiB':>9s}"
               f" | {'patch @ b' + str(plan.batch):>16s} {'peak MiB':>9s} {'left MiB':>9s}")
    lines = [head, "", columns, "-" * len(columns)]
    notes = []
    for row in plan.rows:
        b, p = row.largest_batch, row.largest_patch
        cells = (f"{b.batch:>14d} {b.predicted_peak_mb:>9.0f} {b.left_mb:>9.0f}" if b else f"{'none':>14s} {'':>9s} {'':>9s}")
        cells += " | " + (f"{_shape(p.patch):>16s} {p.predicted_peak_mb:>9.0f} {p.left_mb:>9.0f}" if p
                          else f"{'none':>16s} {'':>9s} {'':>9s}")
        lines.append(f"{row.model:24s} {row.mode:9s} {row.precision:5s} | {cells}")
        if row.nnunet:
            n = row.nnunet
            text = [f"nnU-Net's heuristic for {row.model} ({row.mode}, {row.precision}) at {n['target_gb']} GB: "]
            if "batch_at_patch" in n:
                text.append(f"batch {n['batch_at_patch']} at {patch}")
            if n.get("patch_at_batch"):
                text.append(f"patch {_shape(n['patch_at_batch'])} at batch {plan.batch}")
            if "estimate_gb_of_largest_patch" in n:
                text.append(f"its estimate of our largest patch: {n['estimate_gb_of_largest_patch']} GB")
            notes.append(text[0] + "; ".join(text[1:]) + f" ({n['rule']}; mode and precision are not in it).")
        if row.note:
            notes.append(f"{row.model} ({row.mode}, {row.precision}): {row.note}")
    return "\n".join(lines + ([""] + notes if notes else []))


def plan_json(plan: Plan) -> list[dict]:
    out = []
    for row in plan.rows:
        item = asdict(row)
        item.update(budget_mb=round(plan.budget_bytes / MIB, 1), limit_mb=round(plan.limit_bytes / MIB, 1),
                    margin=plan.margin, patch=list(plan.patch or ()), batch=plan.batch)
        out.append(item)
    return out


# --- the subcommand ----------------------------------------------------------------------------------------
HELP = ("what fits on a GPU: the largest batch and patch under a memory budget, predicted on the CPU; or one "
        "configuration's predicted peak (--input)")


def _parser():
    import argparse

    cmd = argparse.ArgumentParser(prog="python -m harness plan", description=__doc__, epilog=EXIT_CODES_HELP,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
    budget = cmd.add_mutually_exclusive_group()
    budget.add_argument("--gpu-memory", metavar="SIZE", help="the memory budget, e.g. 24GiB, 80GB, 11000MiB")
    budget.add_argument("--gpu", metavar="NAME", help="a named card's usable memory ('--gpu list' shows them)")
    cmd.add_argument("--models", help="shell pattern over variant names (default 'unet3d*' unless --model is given)")
    cmd.add_argument("--model", action="append", default=[], metavar="REF",
                     help="a variant, or your model as module:function or path/to/file.py:function")
    cmd.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="constructor override")
    cmd.add_argument("--patch", help="the patch for the largest batch (N for a cube, or D,H,W; default 128, or with "
                     "--volume the volume's size up to 128; never larger than --volume)")
    cmd.add_argument("--batch", type=int, default=None, help="the batch for the largest patch (default 2); with "
                     "--input, the batch predicted (default 1)")
    cmd.add_argument("--volume", metavar="D,H,W", help="grow the largest patch within this volume, the axis with "
                     "the most room first (default: cubic patches)")
    cmd.add_argument("--step", type=int, default=16, help="patch sizes grow in steps of this (default 16)")
    cmd.add_argument("--mode", choices=("inference", "train", "both"), default="both")
    cmd.add_argument("--precision", choices=("fp32", "bf16", "fp16", "both"), default="both",
                     help="both (default): fp32 and bf16 autocast")
    cmd.add_argument("--channels-last", action="store_true")
    cmd.add_argument("--margin", type=float, default=0.1, help="fraction of the budget plans keep free (default 0.1)")
    cmd.add_argument("--input", metavar="C,D,H,W", help="predict this one configuration (with --batch)")
    cmd.add_argument("--json", action="store_true", help="JSON for scripts")
    cmd.add_argument("--no-cache", action="store_true", help="simulate again rather than read the disk cache")
    cmd.add_argument("--jobs", type=int, default=min(8, os.cpu_count() or 1),
                     help="simulations run side by side, in processes (default: the CPUs, at most 8)")
    return cmd


def add_plan_command(sub) -> None:
    """Lists ``plan`` among ``python -m harness``'s subcommands (``main`` parses its options)."""
    sub.add_parser("plan", help=HELP, add_help=False)


def main(argv=None) -> int:
    """``python -m harness plan ...``: exit 0 with the plan, 2 with one paragraph for a bad option."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        _negative_memory(argv)  # before argparse, which would take '-3GiB' for an option
    except OptionError as error:
        return report_option_error(error)
    args = _parser().parse_args(argv)
    from harness.catalog.registry import get_variant, require_models
    from harness.catalog.user import register_entry_points, register_reference
    from harness.overrides import parse_overrides

    try:
        if (args.gpu or "").strip().lower() == "list":
            print(gpu_table())
            return 0
        budget, budget_text = None, ""
        if args.gpu_memory is not None:
            budget, budget_text = parse_memory(args.gpu_memory), args.gpu_memory
        elif args.gpu is not None:
            card, capacity, budget = gpu_budget(args.gpu)
            budget_text = (f"{card}: {capacity // GIB} GiB vendor capacity less {CONTEXT_ALLOWANCE_GIB:g} GiB for the "
                           f"CUDA context (usable {budget / GIB:g} GiB)")
        if not 0 <= args.margin < 1:
            raise OptionError(f"--margin must lie in [0, 1), not {args.margin!r}. Way out: e.g. --margin 0.1 keeps 10% "
                              f"of the budget free.")
        if args.batch is not None and args.batch < 1:
            raise OptionError(f"--batch must be at least 1, not {args.batch}. Way out: e.g. --batch 2.")
        if args.jobs < 1:
            raise OptionError(f"--jobs must be at least 1, not {args.jobs}. Way out: e.g. --jobs 2.")
        if args.step < 1:
            raise OptionError(f"--step must be at least 1, not {args.step}. Way out: e.g. --step 16.")
        register_entry_points()
        names = [register_reference(ref) if ":" in ref else ref for ref in args.model]
        if args.models or not names:
            names += [n for n in require_models(args.models or "unet3d*") if n not in names]
        for name in names:
            missing = get_variant(name).unavailable_reason()
            if missing:
                raise OptionError(f"{name} is not available here: it {missing}.")
        overrides = parse_overrides(args.set)
        overrides_text = ";".join(args.set)
        modes = ("inference", "train") if args.mode == "both" else (args.mode,)
        precisions = ("fp32", "bf16") if args.precision == "both" else (args.precision,)
        if args.input:
            shape = tuple(int(p) for p in re.split(r"[x,]", args.input) if p.strip()) \
                if re.fullmatch(r"[0-9x, ]+", args.input) else ()
            if len(shape) < 2 or min(shape) < 1:
                raise OptionError(f"--input {args.input!r} is not one sample's shape: give C,D,H,W (channels, then the "
                                  f"spatial sizes), e.g. --input 1,128,128,128.")
            items = predict_fixed(names, overrides_text, shape, args.batch or 1, modes, precisions,
                                  args.channels_last, budget)
            print(json.dumps(items, indent=2) if args.json else _render_fixed(items))
            return 0
        if budget is None:
            raise OptionError("plan needs a memory budget: --gpu-memory SIZE (e.g. 24GiB) or --gpu NAME (--gpu list "
                              "shows the cards), or --input C,D,H,W to predict one configuration.")
        volume = None
        if args.volume:
            volume = _spatial(args.volume, len(re.split(r"[x,]", args.volume)), "--volume")
        plan = make_plan(names, overrides, overrides_text, modes, precisions, args.channels_last, budget, budget_text,
                         args.margin, args.patch, args.batch or 2, volume, args.step, cache=not args.no_cache,
                         jobs=args.jobs)
    except (OptionError, KeyError, ValueError) as error:
        text = error.args[0] if error.args else str(error)
        return report_option_error(error if isinstance(error, OptionError) else OptionError(str(text)))
    print(json.dumps(plan_json(plan), indent=2) if args.json else render(plan))
    return 0


def _render_fixed(items: list[dict]) -> str:
    lines = [f"{'model':24s} {'input':>14s} {'batch':>5s} {'mode':9s} {'dtype':5s} {'peak MiB':>9s} {'floor MiB':>9s}"
             + (f" {'left MiB':>9s}" if items and "left_mb" in items[0] else "")]
    for item in items:
        line = (f"{item['model']:24s} {'x'.join(map(str, item['input_shape'])):>14s} {item['batch']:>5d} "
                f"{item['mode']:9s} {item['precision']:5s} {item['predicted_peak_mb']:>9.1f} {item['predicted_floor_mb']:>9.1f}")
        if "left_mb" in item:
            line += f" {item['left_mb']:>9.1f}"
        lines.append(line)
    lines.append("peak: predicted torch.cuda.max_memory_allocated of the measured step (CUDA context not included); "
                 "floor: its live tensors alone.")
    return "\n".join(lines)
