"""Shape properties across input sizes and settings (meta device: shape checks without arithmetic)."""
import pytest
from hypothesis import assume, event, given, note
from hypothesis import strategies as st
from torch._subclasses.fake_tensor import FakeTensorMode

import strategies as S
from harness import get_variant, list_models
from harness.envelope import check
from harness.catalog.meta_probe import run_once


# Variants whose envelope is a hand-written interpreter (peers' and user models' are meta runs already).
HAND_WRITTEN = [name for name in list_models(available=True) if get_variant(name).record.envelope]


@st.composite
def variant_and_shape(draw):
    name = draw(st.sampled_from(HAND_WRITTEN))
    variant = get_variant(name)
    channels = variant.defaults.get("in_channels", 1)
    shape = draw(S.input_shapes(spatial_dims=variant.spatial_dims, channels=channels, max_size=160,
                                max_elements=10 ** 9, max_batch=4))
    return name, shape


@given(variant_and_shape())
def test_where_a_variant_runs_its_output_is_n_by_classes_by_input_size(case):
    name, shape = case
    verdict = check(name, shape)
    assume(verdict.supported)  # not `return`: an envelope that refused everything would pass vacuously
    output, _ = run_once(name, shape, device="meta")
    num_classes = get_variant(name).defaults["num_classes"]
    if get_variant(name).family == "resnet3d":
        assert output == (shape[0], num_classes)
    else:
        assert output == (shape[0], num_classes, *shape[2:])


@given(S.input_shapes(spatial_dims=3, channels=1, min_size=16, max_size=200, max_elements=10 ** 9))
def test_resnet_stages_match_the_unet_encoder_exactly_when_sizes_are_multiples_of_16(shape):
    """The article's claim, made at 64^3, holds in channels always and in size iff 16 divides every size
    (the UNet halves with floor, the ResNet's strided convolutions with ceil)."""
    assume(check("unet3d", shape).supported)
    _, unet = run_once("unet3d", shape, device="meta")
    _, resnet = run_once("unet3d-resnet50", shape, device="meta")
    note(f"unet {unet}\nresnet {resnet}")
    assert [s[1] for s in unet] == [s[1] for s in resnet] == [64, 128, 256, 512, 1024]
    assert (unet == resnet) == all(n % 16 == 0 for n in shape[2:])


@given(S.input_shapes(spatial_dims=3, channels=1, max_size=20, max_elements=20 ** 3),
       st.sampled_from(["resnet50-3d", "unet3d-resnet50"]), S.MODES)
def test_shortcut_types_a_and_b_agree_in_shape(shape, name, mode):
    """On fake tensors (PyTorch's shape checks without arithmetic, like meta, but shortcut A's CPU zeros are
    fake too): 4 to 15 times faster than real ones, no weights drawn. That each shortcut runs for real with the predicted shapes
    is test_envelope's ``test_resnet3d_envelope_is_exact`` and ``test_resnet_encoder_envelope_is_exact``."""
    assume(check(name, shape, mode=mode).supported)
    overrides = {"layers": [1, 1, 1, 1]}
    with FakeTensorMode():
        out_a = run_once(name, shape, {**overrides, "shortcut_type": "A"}, mode)
        out_b = run_once(name, shape, {**overrides, "shortcut_type": "B"}, mode)
    assert out_a == out_b


SETTINGS_BY_FAMILY = {
    "unet2d": S.unet_settings(max_base_c=64, degenerate=True), "unet3d": S.unet_settings(max_base_c=64, degenerate=True),
    "resnet3d": S.resnet_settings(degenerate=True),
    "unet3d-resnet": S.encoder_settings(degenerate=True) | S.encoder_settings(article_only=True, degenerate=True),
}


@given(st.sampled_from(list_models(sources=("article",))), st.data(), S.MODES)
def test_a_suggested_nearest_input_runs_on_the_real_model(name, data, mode):
    """Every "nearest supported input" is supported and the real model runs it with the predicted
    output; where no input can run (constructor values, zero widths, ...) there is no suggestion,
    only a way out. Degenerate constructor values included; shortcut A becomes B (meta cannot run A)."""
    variant = get_variant(name)
    overrides = data.draw(SETTINGS_BY_FAMILY[variant.family].map(
        lambda s: {**s, "shortcut_type": "B"} if s.get("shortcut_type") == "A" else s))
    channels = st.integers(1, 3) | st.just(variant.defaults.get("in_channels", 1))
    shape = data.draw(S.input_shapes(spatial_dims=variant.spatial_dims, channels=channels, max_size=70,
                                     max_elements=10 ** 8, min_batch=0))
    verdict = check(name, shape, overrides, mode)
    note(verdict.message())
    event("supported" if verdict.supported else "way out" if verdict.suggestion is None else "suggestion")
    if verdict.settings_constraint is not None:
        assert verdict.suggestion is None and "Way out" in verdict.message()
    if verdict.suggestion is None:
        return
    again = check(name, verdict.suggestion, overrides, mode)
    assert again.supported, again.message()
    output, stages = run_once(name, verdict.suggestion, overrides, mode, device="meta")
    assert (output, stages) == (again.output_shape, again.stage_shapes)


def test_a_refuse_everything_envelope_fails_the_properties_instead_of_passing_them(monkeypatch):
    """The properties above take only supported inputs (``assume``): with an envelope that refuses
    everything, hypothesis finds no example to check and fails, rather than passing 100 empty runs."""
    import sys

    from hypothesis.errors import FailedHealthCheck, Unsatisfiable

    refused = check("unet3d", (1, 1, 8, 8, 8))
    assert not refused.supported
    monkeypatch.setattr(sys.modules[__name__], "check", lambda *args, **kwargs: refused)
    for prop in (test_where_a_variant_runs_its_output_is_n_by_classes_by_input_size,
                 test_resnet_stages_match_the_unet_encoder_exactly_when_sizes_are_multiples_of_16,
                 test_shortcut_types_a_and_b_agree_in_shape):
        with pytest.raises((Unsatisfiable, FailedHealthCheck)):
            prop()
