"""UNet++ in 3D (harness/models/unetpp.py): envelope proofs, shape properties, deep supervision, counts.

Real tensors use small decoder widths (the EfficientNet-B0 encoder is always B0's); larger sizes and
the registered widths run on the meta device (PyTorch's shape checks without arithmetic)."""
import math

import pytest
import torch
from hypothesis import assume, event, given, note
from hypothesis import strategies as st

import strategies as S
from harness import get_variant, list_models
from harness.envelope import check
from harness.catalog.meta_probe import build, run_once

pytest.importorskip("monai")

from harness.catalog.unetpp import (EFFB0_CHANNELS, EfficientUNetPlusPlus_3d, UNetPlusPlus_3d,  # noqa: E402
                                   encoder_parameters)

NAMES = ("unetpp3d", "unetpp3d-effb0", "unetpp3d-effb0-mbconv")
CPU_ERRORS = {  # the error each constraint names, as PyTorch words it on CPU tensors
    "min-size": "Output size is too small",
    "effb0-min-size": "Kernel size can't be greater than actual input size",
    "unetpp-multiple": "Sizes of tensors must match",
    "train-batchnorm": "Expected more than 1 value per channel when training",
    "channels": "channels",
}


def test_the_three_variants_are_registered_in_one_family():
    assert set(NAMES) <= set(list_models("unetpp3d*"))
    assert {get_variant(n).family for n in NAMES} == {"unetpp3d", "unetpp3d-effb0"}


@st.composite
def sizes_for(draw, *, step: int, max_size: int, max_elements: int, max_batch: int = 2, fitting_only: bool = False):
    """(N, C?, sizes): half the time (always with ``fitting_only``) sizes the family accepts (multiples of
    ``step``, +1 for 32), else any."""
    batch = draw(st.integers(1, max_batch))
    sizes = []
    for _ in range(3):
        high = max(1, min(max_size, max_elements // (batch * max(1, math.prod(sizes)))))
        fitting = [n for n in range(step, high + 1, step)] + ([n + 1 for n in range(32, high, 32)] if step == 32 else [])
        sizes.append(draw(st.sampled_from(fitting)) if fitting and (fitting_only or draw(st.booleans()))
                     else draw(st.integers(1, high)))
    return batch, sizes


PLAIN_SETTINGS = st.fixed_dictionaries({"in_channels": st.integers(1, 2), "num_classes": st.integers(1, 3),
                                        "base_c": st.integers(1, 3), "deep_supervision": st.just(False)})
WIDTH = st.integers(1, 6)
EFF_SETTINGS = st.fixed_dictionaries({
    "in_channels": st.integers(1, 2), "num_classes": st.integers(1, 3),
    "decoder_block": st.sampled_from(["conv", "mbconv"]),
    # a level's width equal to the encoder's keeps its X(i,0) an identity (no 1x1x1 adapter)
    "decoder_channels": st.tuples(*[WIDTH | st.just(c) for c in EFFB0_CHANNELS[:3]], WIDTH, WIDTH),
    "deep_supervision": st.just(False)})


@st.composite
def case(draw, settings, *, step, max_size, max_elements):
    chosen = draw(settings)
    batch, sizes = draw(sizes_for(step=step, max_size=max_size, max_elements=max_elements))
    channels = draw(st.sampled_from([chosen["in_channels"]] * 3 + [3]))
    return chosen, (batch, channels, *sizes)


def assert_envelope_exact(name, overrides, shape, mode, device="cpu"):
    verdict = check(name, shape, overrides, mode, device=device, suggest=False)
    note(verdict.message())
    event(verdict.constraint or "supported")
    try:
        output, stages = run_once(name, shape, overrides, mode, device)
    except (RuntimeError, ValueError) as error:
        assert not verdict.supported, f"predicted to run, but failed: {error}"
        if device == "cpu":
            assert CPU_ERRORS[verdict.constraint] in str(error), f"named {verdict.constraint}, got: {error}"
        return
    assert verdict.supported, f"predicted to fail ({verdict.reason}), but ran: output {output}"
    assert verdict.output_shape == output and verdict.stage_shapes == stages


@given(case(PLAIN_SETTINGS, step=16, max_size=40, max_elements=2 * 36 ** 3), S.MODES)
def test_unetpp3d_envelope_is_exact(c, mode):
    assert_envelope_exact("unetpp3d", *c, mode)


@given(case(EFF_SETTINGS, step=32, max_size=66, max_elements=2 * 34 ** 3), S.MODES)
def test_unetpp3d_effb0_envelope_is_exact(c, mode):
    assert_envelope_exact("unetpp3d-effb0", *c, mode)


@given(st.sampled_from(NAMES), sizes_for(step=32, max_size=200, max_elements=10 ** 9, max_batch=3), S.MODES)
def test_registered_widths_envelope_is_exact_at_large_sizes(name, batch_sizes, mode):
    batch, sizes = batch_sizes
    assert_envelope_exact(name, {}, (batch, 1, *sizes), mode, device="meta")


@given(st.sampled_from(NAMES), sizes_for(step=32, max_size=160, max_elements=10 ** 9, max_batch=4, fitting_only=True))
def test_where_a_variant_runs_its_output_is_n_by_classes_by_input_size_and_stages_halve(name, batch_sizes):
    batch, sizes = batch_sizes
    shape = (batch, 1, *sizes)
    verdict = check(name, shape)
    assume(verdict.supported)  # not `return`: an envelope that refused everything would pass vacuously
    output, stages = run_once(name, shape, device="meta")
    assert output == (batch, 2, *sizes)
    first = 1 if "effb0" in name else 0  # EfficientNet's stem already halves
    assert [s[2:] for s in stages] == [tuple(n // 2 ** (level + first) for n in sizes) for level in range(5)]
    assert [s[1] for s in stages] == ([64, 128, 256, 512, 1024] if name == "unetpp3d" else [32, 64, 128, 256, 512])


def test_the_envelope_rule_in_words():
    """Plain: multiples of 16. EfficientNet-B0: floor(n/2) a multiple of 16 (32k, 32k+1); training at the
    smallest size needs batch 2."""
    assert check("unetpp3d", (1, 1, 16, 32, 48)).supported
    assert check("unetpp3d", (1, 1, 24, 32, 32)).constraint == "unetpp-multiple"
    assert check("unetpp3d-effb0", (1, 1, 32, 33, 64)).supported
    assert check("unetpp3d-effb0", (1, 1, 48, 32, 32)).constraint == "unetpp-multiple"
    assert check("unetpp3d-effb0", (1, 1, 16, 32, 32)).constraint == "effb0-min-size"
    assert check("unetpp3d-effb0", (1, 1, 32, 32, 32), mode="train").constraint == "train-batchnorm"
    assert check("unetpp3d-effb0", (1, 1, 32, 32, 32), mode="train").suggestion == (2, 1, 32, 32, 32)


@pytest.mark.parametrize("name", NAMES)
def test_deep_supervision_returns_four_full_size_outputs_and_trains(name):
    overrides = {"deep_supervision": True, "num_classes": 3}
    overrides.update({"base_c": 2} if name == "unetpp3d" else {"decoder_channels": (2, 2, 2, 2, 2)})
    model = build(name, overrides).train()
    x = torch.randn(2, 1, 32, 32, 32)
    outs = model(x)
    assert isinstance(outs, tuple) and len(outs) == 4
    assert all(o.shape == (2, 3, 32, 32, 32) for o in outs)
    sum(o.mean() for o in outs).backward()
    heads = [model.head.get_submodule(f"out{j}") for j in range(1, 5)]
    assert all(h.weight.grad is not None and h.weight.grad.abs().sum() > 0 for h in heads)


def _count(module):
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_of_the_encoder_alone_and_the_whole_network():
    from monai.networks.nets import EfficientNetBN
    plain, eff, mb = (build(n, device="meta") for n in NAMES)
    backbone = _count(eff.encoder)
    # the answer's 5.3 M is the 2D ImageNet classifier (3 channels, 1000 classes); MONAI builds the same
    with torch.device("meta"):
        assert 5.2e6 < _count(EfficientNetBN("efficientnet-b0", pretrained=False, spatial_dims=2)) < 5.4e6
    assert backbone == _count(mb.encoder)  # same encoder; only the decoder blocks differ
    assert 4.0e6 < backbone < 5.0e6  # 3D, one channel, no classifier head: the stages alone
    adapters = sum(_count(eff.get_submodule(f"x{i}_0")) for i in range(5))
    assert encoder_parameters(eff) == backbone + adapters
    assert encoder_parameters(plain) == sum(_count(plain.get_submodule(f"x{i}_0")) for i in range(5))
    assert encoder_parameters(plain) > 10 * backbone  # the article's DoubleConv_3d column at base_c 64
    assert _count(plain) > _count(mb) > _count(eff)  # MBConv nodes take the concatenation and expand it 6x


def test_monai_missing_is_reported_with_the_install_command(monkeypatch):
    import harness.catalog.unetpp as upp
    monkeypatch.setattr(upp, "monai_available", lambda: False)
    with pytest.raises(ImportError, match="pip install"):
        EfficientUNetPlusPlus_3d()
    assert isinstance(UNetPlusPlus_3d(base_c=1), torch.nn.Module)  # the plain one needs no MONAI
