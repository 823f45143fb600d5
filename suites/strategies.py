"""Hypothesis strategies for input shapes and constructor settings (all keyword-only ranges)."""
from __future__ import annotations

import math

from hypothesis import strategies as st

import reference_models as rm
from harness.overrides import parse_value

MAX_ELEMENTS = 2 * 40 ** 3  # a cap on N * prod(spatial) for anything computed on real tensors


@st.composite
def input_shapes(draw, *, spatial_dims: int, channels, min_batch: int = 1, max_batch: int = 2,
                 min_size: int = 1, max_size: int = 40, max_elements: int = MAX_ELEMENTS):
    """``(N, C, *spatial)`` with every spatial size drawn independently (odd, small, non-cubic).

    Half the time the sizes share one residue modulo 16, so that the shapes the 3D models accept
    (see harness.envelope.checker: parity) come up as often as the ones they refuse.
    """
    batch = draw(st.integers(min_batch, max_batch))
    c = draw(channels if isinstance(channels, st.SearchStrategy) else st.just(channels))
    residue = draw(st.none() | st.integers(0, 15))
    sizes = []
    for _ in range(spatial_dims):
        budget = max_elements // (max(1, batch) * max(1, math.prod(sizes)))
        high = max(min_size, min(max_size, budget))
        if residue is None or high < 16 + residue:
            sizes.append(draw(st.integers(min_size, high)))
        else:
            sizes.append(16 * draw(st.integers(max(1, min_size // 16), (high - residue) // 16)) + residue)
    return (batch, c, *sizes)


# Texts a user can type after ``--set key=``, beyond small integers: booleans, non-integers, empty,
# names, and stage-count lists of every length (with zeros and negatives).
CLI_TOKENS = ("true", "false", "True", "1.5", "x", "", "A", "B", "a", "Bottleneck", "BasicBlock", "Foo",
              "1,1", "1,1,1", "0,-1,0,0", "1,1,1,1,1", "2,0,1,1", "-1,1,1,1", "1,x", "3,4,6,3")

# Whatever ``--set key=TEXT`` hands the constructor (harness.overrides.parse_value of such a text).
cli_values = st.one_of(st.integers(-4, 4).map(str), st.sampled_from(CLI_TOKENS)).map(parse_value)


# Degenerate values per constructor argument: zero, negative, odd, non-integer, wrong length, unknown.
DEGENERATE = {
    "in_channels": st.sampled_from([0, 0, -1, True]),
    "num_classes": st.sampled_from([0, 0, -1]),
    "base_c": st.sampled_from([0, 0, -4, 1, 3, 5]),
    "bilinear": st.sampled_from([2, -1, 0, "x", [], [1]]),
    "layers": st.lists(st.integers(-2, 2), max_size=6),
    "block": st.sampled_from([3, "Foo", "Bottleneck"]),  # "Bottleneck" the text, not the class
    "shortcut_type": st.sampled_from(["a", "Z", 3, "", True]),
    "include_top": st.sampled_from([0, 2, "x", []]),
    "no_cuda": cli_values,
}


@st.composite
def _with_degenerate(draw, settings):
    """The settings with none, one or two arguments replaced by a degenerate or any CLI-made value."""
    chosen = dict(draw(settings))
    keys = sorted(DEGENERATE.keys() & (chosen.keys() | ({"no_cuda"} if "layers" in chosen else set())))
    for key in draw(st.permutations(keys))[:draw(st.sampled_from([0, 1, 1, 2]))]:
        chosen[key] = draw(DEGENERATE[key] | DEGENERATE[key] | cli_values)
    return chosen


def unet_settings(*, max_base_c: int = 4, max_channels: int = 3, max_classes: int = 3, degenerate: bool = False):
    settings = st.fixed_dictionaries({
        "in_channels": st.integers(1, max_channels),
        "num_classes": st.integers(1, max_classes),
        "base_c": st.integers(1, max_base_c),
        "bilinear": st.booleans(),
    })
    return _with_degenerate(settings) if degenerate else settings


def _layers(*, min_blocks: int, max_blocks: int):
    # The article always builds a stage's first block, so counts below 1 are worth drawing too.
    return st.lists(st.integers(min_blocks, max_blocks), min_size=4, max_size=4)


def resnet_settings(*, min_blocks: int = -1, max_blocks: int = 1, max_classes: int = 4, degenerate: bool = False):
    settings = st.fixed_dictionaries({
        "block": st.sampled_from([rm.Bottleneck, rm.BasicBlock]),
        "layers": _layers(min_blocks=min_blocks, max_blocks=max_blocks),
        "shortcut_type": st.sampled_from(["A", "B", "C"]),  # anything but "A" means B
        "num_classes": st.integers(1, max_classes),
        "include_top": st.booleans(),
    })
    return _with_degenerate(settings) if degenerate else settings


def encoder_settings(*, min_blocks: int = 0, max_blocks: int = 1, max_channels: int = 3,
                     article_only: bool = False, degenerate: bool = False):
    """``UNet_3d_resnet_encoder`` settings; ``article_only`` keeps the ones the article supports;
    ``degenerate`` mixes in anything the CLI can produce (zero, negative, non-integer, wrong lengths)."""
    settings = st.fixed_dictionaries({
        "block": st.just(rm.Bottleneck) if article_only else st.sampled_from([rm.Bottleneck, rm.BasicBlock]),
        "layers": _layers(min_blocks=min_blocks, max_blocks=max_blocks),
        "shortcut_type": st.sampled_from(["A", "B"]),
        "in_channels": st.integers(1, max_channels),
        "num_classes": st.integers(1, 3),
        "bilinear": st.just(False) if article_only else st.booleans(),
        "base_c": st.just(64) if article_only else st.sampled_from([64, 64, 64, 32, 16]),
    })
    return _with_degenerate(settings) if degenerate else settings


MODES = st.sampled_from(["inference", "train"])


@st.composite
def settings_and_shape(draw, settings, *, spatial_dims: int, max_size: int = 40,
                       max_elements: int = MAX_ELEMENTS, min_batch: int = 1, min_size: int = 1):
    """Constructor settings and an input whose channel count usually (3 in 4) fits them (a drawn
    1..3 where in_channels is no positive integer)."""
    chosen = draw(settings)
    fitting = chosen.get("in_channels", 1)  # ResNet_3d's stem always takes one channel
    if type(fitting) is not int or fitting < 1:
        fitting = None
    channels = draw(st.sampled_from([fitting, fitting, fitting, None]))
    shape = draw(input_shapes(spatial_dims=spatial_dims, channels=st.integers(1, 3) if channels is None
                              else channels, min_size=min_size, max_size=max_size, max_elements=max_elements,
                              min_batch=min_batch))
    return chosen, shape
