"""Amounts of memory ('24GiB', '80 GB') and the named GPU cards, for the planner's options. No torch."""
from __future__ import annotations

import re

from harness.options import OptionError

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
UNITS = {"b": 1, "kb": 10 ** 3, "mb": 10 ** 6, "gb": 10 ** 9, "tb": 10 ** 12,
         "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "tib": 2 ** 40}
MAX_BATCH = 1 << 16
MAX_PATCH = 2048


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


def _shape(patch) -> str:
    return "x".join(map(str, patch)) if len(set(patch)) > 1 else f"{patch[0]}^{len(patch)}"
