"""The pipelines: each a ``Pipeline`` whose ``build(patch)`` returns a zero-argument callable that makes one
augmented training sample from synthetic data held in memory (no disk reads: the rate is augmentation alone).

- ``nnunet``: nnU-Net v2's training transforms as its trainer builds them (``nnUNetTrainer.get_training_transforms``,
  batchgeneratorsv2 underneath) with the trainer's defaults for an isotropic 3D patch: rotation +-30 deg,
  mirroring on all three axes, no dummy-2D augmentation, the oversized input patch of nnunetv2's own
  ``get_patch_size`` and deep-supervision scales from 3d_fullres pooling (2x per stage down to 4 voxels). Each call
  is one sample as nnunetv2's ``nnUNetDataLoader`` transforms it (image and segmentation of the oversized patch).
- ``monai``: the random part of MONAI's 3D training chain as its tutorials write it (the deterministic loading,
  spacing and intensity windowing run once in a ``CacheDataset`` there, so they are not per-sample work).
- a user's: ``--pipeline module:function`` or ``path/file.py:function``.

Sizes (docs/pipeline.md): nnU-Net's typical 3d_fullres patch is 128^3 (e.g. its plans for BraTS/KiTS-like
isotropic data), MONAI's BTCV tutorials crop 96^3; the CPU default is 32^3 and 64^3 so a run finishes in
about a minute on 2 cores. The synthetic case a MONAI crop is taken from is twice the patch on each side.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Callable

from harness.options import OptionError

BUILTIN = ("nnunet", "monai")
USER_WAY_OUT = ("Way out: give --pipeline package.module:function or path/to/file.py:function, where the "
                "function takes the patch (a tuple of 3 ints) and returns a zero-argument callable making one "
                "augmented sample (or is itself that per-sample work).")


@dataclass
class Pipeline:
    name: str
    source: str  # where it comes from, in words
    build: Callable  # (patch, channels=1) -> zero-argument callable making one sample of images with those channels
    samples_per_call: int = 1
    facts: dict = field(default_factory=dict)


def _synthetic_case(shape, seed: int = 0, channels: int = 1):
    """An image (channels, *shape) float32 of N(0,1) noise and a label map (1, *shape) with a foreground ball of class 1
    and a smaller one of class 2 (so crops by label and nnU-Net's foreground handling have something to find)."""
    import torch

    g = torch.Generator().manual_seed(seed)
    image = torch.randn((channels, *shape), generator=g)
    grids = torch.meshgrid(*[torch.linspace(-1, 1, s) for s in shape], indexing="ij")
    radius = sum(x ** 2 for x in grids).sqrt()
    label = torch.zeros((1, *shape), dtype=torch.int16)
    label[0][radius < 0.5] = 1
    label[0][radius < 0.2] = 2
    return image, label


# --- nnU-Net v2 ----------------------------------------------------------------------------------------------
def nnunet_settings(patch):
    """The arguments nnUNetTrainer hands its transform factory for an isotropic 3D patch, computed with nnunetv2's
    own functions where it has them (deep-supervision scales through the trainer's own method on a stand-in)."""
    from types import SimpleNamespace

    import numpy as np
    from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    rotation = (-30. / 360 * 2. * np.pi, 30. / 360 * 2. * np.pi)  # the trainer's 3D default (not anisotropic)
    mirror_axes = (0, 1, 2)
    initial = [int(i) for i in get_patch_size(list(patch), rotation, rotation, rotation, (0.85, 1.25))]
    pools, edge = [[1, 1, 1]], min(patch)
    while edge // 2 >= 4 and len(pools) < 6:  # 3d_fullres: halve until the bottleneck is ~4 voxels, at most 5 times
        pools.append([2, 2, 2])
        edge //= 2
    stand_in = SimpleNamespace(enable_deep_supervision=True,
                               configuration_manager=SimpleNamespace(pool_op_kernel_sizes=pools))
    ds_scales = nnUNetTrainer._get_deep_supervision_scales(stand_in)
    return dict(rotation_for_DA=rotation, deep_supervision_scales=ds_scales, mirror_axes=mirror_axes,
                do_dummy_2d_data_aug=False, initial_patch_size=tuple(initial))


def nnunet_transforms(patch, channels: int = 1):
    """(the transforms object as nnunetv2 builds it, the settings used), for images of ``channels`` channels."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    s = nnunet_settings(patch)
    transforms = nnUNetTrainer.get_training_transforms(
        tuple(patch), s["rotation_for_DA"], s["deep_supervision_scales"], s["mirror_axes"],
        s["do_dummy_2d_data_aug"], use_mask_for_norm=[False] * channels, is_cascaded=False, foreground_labels=[1, 2],
        regions=None, ignore_label=None)
    return transforms, s


def _nnunet_build(patch, channels: int = 1):
    transforms, settings = nnunet_transforms(patch, channels)
    image, label = _synthetic_case(settings["initial_patch_size"], channels=channels)

    def sample():
        return transforms(image=image.clone(), segmentation=label.clone())
    return sample


def _monai_build(patch, channels: int = 1):
    """MONAI's tutorials' random chain. RandCropByPosNegLabeld, RandFlipd x3, RandRotate90d and RandShiftIntensityd
    with the settings of Project-MONAI/tutorials 3d_segmentation/unetr_btcv_segmentation_3d.ipynb (and
    swin_unetr_btcv_segmentation_3d.ipynb); RandScaleIntensityd as brats_segmentation_3d.ipynb writes it.
    num_samples=1 (the BTCV notebooks take 4 crops per cached volume; one crop is one sample either way)."""
    from monai.transforms import (Compose, RandCropByPosNegLabeld, RandFlipd, RandRotate90d, RandScaleIntensityd,
                                  RandShiftIntensityd)

    keys = ["image", "label"]
    chain = Compose([
        RandCropByPosNegLabeld(keys=keys, label_key="label", spatial_size=tuple(patch), pos=1, neg=1, num_samples=1,
                               image_key="image", image_threshold=0),
        RandFlipd(keys=keys, spatial_axis=[0], prob=0.10),
        RandFlipd(keys=keys, spatial_axis=[1], prob=0.10),
        RandFlipd(keys=keys, spatial_axis=[2], prob=0.10),
        RandRotate90d(keys=keys, prob=0.10, max_k=3),
        RandScaleIntensityd(keys="image", factors=0.1, prob=1.0),
        RandShiftIntensityd(keys="image", offsets=0.10, prob=0.50),
    ])
    chain.set_random_state(seed=0)
    image, label = _synthetic_case(tuple(2 * p for p in patch), channels=channels)
    case = {"image": image, "label": label.float()}

    def sample():
        return chain(dict(case))
    return sample


def builtin(name: str) -> Pipeline:
    if name == "nnunet":
        import nnunetv2

        return Pipeline("nnunet", f"nnunetv2 {getattr(nnunetv2, '__version__', '') or _version('nnunetv2')}: "
                        "nnUNetTrainer.get_training_transforms (batchgeneratorsv2 "
                        f"{_version('batchgeneratorsv2')})", _nnunet_build)
    if name == "monai":
        return Pipeline("monai", f"monai {_version('monai')}: tutorials' 3D random chain", _monai_build)
    raise KeyError(name)


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "not installed"


def available(name: str) -> str | None:
    """None when the built-in pipeline's library imports, else why not (one sentence with the way out)."""
    module = {"nnunet": "nnunetv2.training.nnUNetTrainer.nnUNetTrainer", "monai": "monai.transforms"}[name]
    try:
        __import__(module)
    except ImportError as error:
        return (f"{name}: {module} does not import ({error}). Way out: pip install '.[pipeline]' (nnunetv2 "
                f"goes --no-deps: docs/pipeline.md)")
    return None


def user(reference: str, option: str = "--pipeline") -> Pipeline:
    """A ``--pipeline`` reference (or the bench's ``--loader``: ``option`` names it in errors), loaded like ``--model``
    (harness.catalog.user's module loading)."""
    from harness.catalog.user import _load_module

    way_out = USER_WAY_OUT.replace("--pipeline", option)

    location, sep, function = reference.rpartition(":")
    if not sep or not location or not function:
        raise OptionError(f"{option} {reference!r} is not of the form module:function or file.py:function. "
                          f"{way_out}")
    try:
        module = _load_module(location)
    except OptionError as error:
        raise OptionError(str(error.args[0]).replace("--model", option).split(" Way out")[0] + " "
                          + way_out) from None
    fn = getattr(module, function, None)
    if fn is None or not callable(fn):
        raise OptionError(f"{option} {reference}: {location} has no callable {function!r}. {way_out}")

    def build(patch, channels: int = 1):  # channels: a user's pipeline makes what it makes (the bench adapts it)
        try:
            takes_patch = bool(inspect.signature(fn).parameters)
        except (TypeError, ValueError):
            takes_patch = True
        made = fn(tuple(patch)) if takes_patch else fn()
        if callable(made):
            return made
        return (lambda: fn(tuple(patch))) if takes_patch else fn

    name = f"{location.rsplit('/', 1)[-1].removesuffix('.py').rsplit('.', 1)[-1]}:{function}"
    return Pipeline(name, f"user: {reference}", build)


def for_loader(name: str) -> Pipeline:
    """The pipeline a bench ``--loader`` value names: a built-in (nnunet, monai) or a user's reference; the hook
    harness.bench.loader calls (registered by importing harness.pipeline)."""
    return builtin(name) if name in BUILTIN else user(name, "--loader")
