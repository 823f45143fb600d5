"""Run a faithful model once and record what it did: output shape and the five stage shapes.

On the ``meta`` device this costs no arithmetic (shape-only), yet goes through PyTorch's own shape
checks; shortcut type 'A' cannot run there (the article builds its zero channels on the CPU).
"""
from __future__ import annotations

import contextlib

import torch

from .registry import Shape, create_model, get_variant

# The modules whose outputs are the article's printed stages x1..x5, per family.
STAGE_MODULES = {
    "unet2d": ("in_conv", "down1", "down2", "down3", "down4"),
    "unet3d": ("in_conv", "down1", "down2", "down3", "down4"),
    "resnet3d": ("relu", "layer1", "layer2", "layer3", "layer4"),
    "unet3d-resnet": ("relu", "layer1", "layer2", "layer3", "layer4"),
    "unetpp3d": ("x0_0", "x1_0", "x2_0", "x3_0", "x4_0"),  # UNet++'s encoder column X(i,0)
}


def build(name: str, overrides=None, device: str = "cpu", seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    with torch.device(device):
        return create_model(name, **(overrides or {}))


@contextlib.contextmanager
def recording_stages(model: torch.nn.Module, family: str):
    """Collects the stage outputs' shapes (first call of each stage module) into the yielded list."""
    shapes: dict[str, Shape] = {}
    handles = []
    for module_name in STAGE_MODULES[family]:
        def hook(_module, _inputs, output, module_name=module_name):
            shapes.setdefault(module_name, tuple(output.shape))
        handles.append(model.get_submodule(module_name).register_forward_hook(hook))
    stages: list[Shape] = []
    try:
        yield stages
    finally:
        for handle in handles:
            handle.remove()
        stages.extend(shapes[m] for m in STAGE_MODULES[family] if m in shapes)


def run_once(name: str, input_shape, overrides=None, mode: str = "inference", device: str = "cpu",
             model: torch.nn.Module | None = None) -> tuple[Shape, tuple[Shape, ...]]:
    """Forward (and in ``train`` mode a backward) pass; returns (output shape, stage shapes).

    Raises whatever the model raises: that is the point of running it.
    """
    variant = get_variant(name)
    model = model if model is not None else build(name, overrides, device)
    model.train(mode == "train")
    x = torch.randn(tuple(input_shape), device=device)
    with recording_stages(model, variant.family) as stages:
        if mode == "train":
            out = model(x)
            out.float().mean().backward()
        else:
            with torch.no_grad():
                out = model(x)
    return tuple(out.shape), tuple(stages)
