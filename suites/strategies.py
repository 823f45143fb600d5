"""Hypothesis strategies for input shapes and constructor settings (all keyword-only ranges)."""
from __future__ import annotations

import math

from hypothesis import strategies as st

import reference_models as rm

MAX_ELEMENTS = 2 * 40 ** 3  # a cap on N * prod(spatial) for anything computed on real tensors


@st.composite
def input_shapes(draw, *, spatial_dims: int, channels, min_batch: int = 1, max_batch: int = 2,
                 min_size: int = 1, max_size: int = 40, max_elements: int = MAX_ELEMENTS):
    """``(N, C, *spatial)`` with every spatial size drawn independently (odd, small, non-cubic).

    Half the time the sizes share one residue modulo 16, so that the shapes the 3D models accept
    (see harness.envelope: parity) come up as often as the ones they refuse.
    """
    batch = draw(st.integers(min_batch, max_batch))
    c = draw(channels if isinstance(channels, st.SearchStrategy) else st.just(channels))
    residue = draw(st.none() | st.integers(0, 15))
    sizes = []
    for _ in range(spatial_dims):
        budget = max_elements // (batch * max(1, math.prod(sizes)))
        high = max(min_size, min(max_size, budget))
        if residue is None or high < 16 + residue:
            sizes.append(draw(st.integers(min_size, high)))
        else:
            sizes.append(16 * draw(st.integers(max(1, min_size // 16), (high - residue) // 16)) + residue)
    return (batch, c, *sizes)


def unet_settings(*, max_base_c: int = 4, max_channels: int = 3, max_classes: int = 3):
    return st.fixed_dictionaries({
        "in_channels": st.integers(1, max_channels),
        "num_classes": st.integers(1, max_classes),
        "base_c": st.integers(1, max_base_c),
        "bilinear": st.booleans(),
    })


def _layers(*, min_blocks: int, max_blocks: int):
    # The article always builds a stage's first block, so counts below 1 are worth drawing too.
    return st.lists(st.integers(min_blocks, max_blocks), min_size=4, max_size=4)


def resnet_settings(*, min_blocks: int = -1, max_blocks: int = 1, max_classes: int = 4):
    return st.fixed_dictionaries({
        "block": st.sampled_from([rm.Bottleneck, rm.BasicBlock]),
        "layers": _layers(min_blocks=min_blocks, max_blocks=max_blocks),
        "shortcut_type": st.sampled_from(["A", "B", "C"]),  # anything but "A" means B
        "num_classes": st.integers(1, max_classes),
        "include_top": st.booleans(),
    })


def encoder_settings(*, min_blocks: int = 0, max_blocks: int = 1, max_channels: int = 3,
                     article_only: bool = False):
    """``UNet_3d_resnet_encoder`` settings; ``article_only`` keeps the ones the article supports."""
    return st.fixed_dictionaries({
        "block": st.just(rm.Bottleneck) if article_only else st.sampled_from([rm.Bottleneck, rm.BasicBlock]),
        "layers": _layers(min_blocks=min_blocks, max_blocks=max_blocks),
        "shortcut_type": st.sampled_from(["A", "B"]),
        "in_channels": st.integers(1, max_channels),
        "num_classes": st.integers(1, 3),
        "bilinear": st.just(False) if article_only else st.booleans(),
        "base_c": st.just(64) if article_only else st.sampled_from([64, 64, 64, 32, 16]),
    })


MODES = st.sampled_from(["inference", "train"])


@st.composite
def settings_and_shape(draw, settings, *, spatial_dims: int, max_size: int = 40,
                       max_elements: int = MAX_ELEMENTS):
    """Constructor settings and an input whose channel count usually (3 in 4) fits them."""
    chosen = draw(settings)
    fitting = chosen.get("in_channels", 1)  # ResNet_3d's stem always takes one channel
    channels = draw(st.sampled_from([fitting, fitting, fitting, None]))
    shape = draw(input_shapes(spatial_dims=spatial_dims, channels=st.integers(1, 3) if channels is None
                              else channels, max_size=max_size, max_elements=max_elements))
    return chosen, shape
