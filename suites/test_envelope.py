"""The support envelope is exact: predicted to run -> runs (with the predicted shapes);
predicted to fail -> fails. Proven against the real models on CPU tensors, and at larger sizes on
the meta device (which runs PyTorch's shape checks without arithmetic)."""
import torch
from hypothesis import event, example, given, note, settings
from hypothesis import strategies as st

import strategies as S
from harness.envelope import check
from harness.catalog.meta_probe import build, run_once
from harness.catalog.registry import create_model


# The error each constraint names, as PyTorch words it on CPU tensors (meta words some differently).
CPU_ERRORS = {
    "min-size": "Output size is too small",
    "parity": "Sizes of tensors must match",
    "train-batchnorm": "Expected more than 1 value per channel when training",
    "channels": "channels",
    "decoder-channels": "channels",
    "zero-width": "expected weight to be at least 1 at dimension 0",
}


def build_uninitialised(name, overrides, device):
    """The real class, built on meta (the same constructor code and errors), then given zeroed CPU
    storage: the same shapes and shape checks as ``build`` without the seconds of random weight init
    (zeros, not uninitialised memory, whose denormals make CPU arithmetic crawl)."""
    with torch.device("meta"):
        model = create_model(name, **(overrides or {}))
    if device == "meta":
        return model
    model = model.to_empty(device=device)
    with torch.no_grad():
        for tensor in [*model.parameters(), *model.buffers()]:
            tensor.zero_()
    return model


def assert_envelope_exact(name, overrides, shape, mode, device="cpu", builder=build):
    """Both ways: the class builds iff the envelope does not refuse its constructor values; the
    model runs iff predicted, with the predicted shapes; a refusal names the error PyTorch raises."""
    verdict = check(name, shape, overrides, mode, device=device, suggest=False)
    note(verdict.message())
    event(verdict.constraint or "supported")
    try:
        model = builder(name, overrides, device)
    except Exception as error:  # whatever the class raises (TypeError, IndexError, RuntimeError, ...)
        assert verdict.constraint == "constructor", f"built nothing ({error!r}), but: {verdict.message()}"
        assert verdict.suggestion is None and "Way out" in verdict.message()
        return verdict
    assert verdict.constraint != "constructor", f"refused the constructor, but it builds: {verdict.message()}"
    try:
        output, stages = run_once(name, shape, overrides, mode, device, model=model)
    except (RuntimeError, ValueError, IndexError) as error:  # meta words some failures as IndexError
        assert not verdict.supported, f"predicted to run, but failed: {error}"
        if device == "cpu":
            assert CPU_ERRORS[verdict.constraint] in str(error), f"named {verdict.constraint}, got: {error}"
        return verdict
    assert verdict.supported, f"predicted to fail ({verdict.reason}), but ran: output {output}"
    assert verdict.output_shape == output
    assert verdict.stage_shapes == stages
    return verdict


@given(S.settings_and_shape(S.unet_settings(), spatial_dims=3), S.MODES)
def test_unet3d_envelope_is_exact(case, mode):
    assert_envelope_exact("unet3d", *case, mode)


@given(S.settings_and_shape(S.unet_settings(), spatial_dims=2, max_size=80), S.MODES)
def test_unet2d_envelope_is_exact(case, mode):
    assert_envelope_exact("unet2d", *case, mode)


@given(S.settings_and_shape(S.resnet_settings(), spatial_dims=3, max_size=24), S.MODES)
def test_resnet3d_envelope_is_exact(case, mode):
    assert_envelope_exact("resnet50-3d", *case, mode)


ENCODER_SETTINGS = S.encoder_settings(article_only=True) | S.encoder_settings()


@given(S.settings_and_shape(ENCODER_SETTINGS, spatial_dims=3, max_size=20, max_elements=2 * 20 ** 3), S.MODES)
def test_resnet_encoder_envelope_is_exact(case, mode):
    assert_envelope_exact("unet3d-resnet50", *case, mode)


# Larger sizes, shape-only. Shortcut 'A' cannot run on meta (its zeros are made on the CPU).
LARGE = dict(spatial_dims=3, max_size=200, max_elements=10 ** 9)


@given(S.settings_and_shape(S.unet_settings(max_base_c=64), **LARGE), S.MODES)
def test_unet3d_envelope_is_exact_at_large_sizes(case, mode):
    assert_envelope_exact("unet3d", *case, mode, device="meta")


@given(S.settings_and_shape(S.encoder_settings(max_blocks=3).map(lambda s: {**s, "shortcut_type": "B"}), **LARGE),
       S.MODES)
def test_resnet_encoder_envelope_is_exact_at_large_sizes(case, mode):
    assert_envelope_exact("unet3d-resnet50", *case, mode, device="meta")


# Degenerate constructor values: anything ``--set key=TEXT`` produces (0, negative, non-integer, bool,
# lists of other lengths, unknown names), mixed into the settings one draw in four, and a batch of 0.
SMALL = dict(spatial_dims=3, max_size=18, max_elements=2 * 18 ** 3, min_batch=0, min_size=16)
TINY = dict(spatial_dims=3, max_size=6, max_elements=2 * 6 ** 3, min_batch=0)  # the ResNets accept any size


def examples(base, shape, *changes, modes=("inference", "train")):
    """Always-run hypothesis examples: ``base`` settings with each change, in each mode."""
    def decorate(test):
        for change in changes:
            for mode in modes:
                test = example(({**base, **change}, shape), mode)(test)
        return test
    return decorate


UNET_BASE = {"in_channels": 1, "num_classes": 2, "base_c": 2, "bilinear": False}
UNET_CASES = ({"base_c": 0}, {"base_c": -4}, {"num_classes": 0}, {"num_classes": -1}, {"in_channels": 0},
              {"in_channels": -1}, {"base_c": 1}, {"base_c": 3, "bilinear": True}, {"bilinear": 2}, {"bilinear": 0},
              {"base_c": True}, {"base_c": "1.5"}, {"base_c": 0, "bilinear": True})


@examples(UNET_BASE, (1, 1, 16, 16, 16), *UNET_CASES)
@given(S.settings_and_shape(S.unet_settings(degenerate=True), **SMALL), S.MODES)
def test_unet3d_envelope_is_exact_for_degenerate_constructor_values(case, mode):
    assert_envelope_exact("unet3d", *case, mode)


@examples(UNET_BASE, (2, 1, 16, 16), *UNET_CASES[:6])
@given(S.settings_and_shape(S.unet_settings(degenerate=True), spatial_dims=2, max_size=40, min_batch=0, min_size=16), S.MODES)
def test_unet2d_envelope_is_exact_for_degenerate_constructor_values(case, mode):
    assert_envelope_exact("unet2d", *case, mode)


@examples({"layers": [1, 1, 1, 1], "num_classes": 3}, (2, 1, 2, 2, 2),
          {"layers": [0, -1, 0, 0]}, {"layers": [1, 1, 1]}, {"layers": [1, 1, 1, 1, 1]}, {"layers": []}, {"layers": 3},
          {"num_classes": 0}, {"num_classes": 0, "include_top": False}, {"num_classes": -1, "include_top": False},
          {"num_classes": -1}, {"shortcut_type": "Z"}, {"block": "Foo"}, {"include_top": 2}, modes=("inference",))
@given(S.settings_and_shape(S.resnet_settings(degenerate=True), **{**TINY, "max_size": 4}), st.just("inference"))
def test_resnet3d_envelope_is_exact_for_degenerate_constructor_values(case, mode):
    """Inference only (training a ResNet on CPU costs seconds; train mode is proven above)."""
    assert_envelope_exact("resnet50-3d", *case, mode, builder=build_uninitialised)


@examples({"layers": [1, 1, 1, 1], "in_channels": 1, "num_classes": 2, "bilinear": False, "base_c": 64}, (1, 1, 4, 4, 4),
          {"base_c": 0}, {"base_c": -4}, {"base_c": 0, "bilinear": True}, {"in_channels": 0}, {"num_classes": 0},
          {"num_classes": -1}, {"bilinear": 2}, {"layers": [1, 1]}, {"base_c": 63}, modes=("inference",))
@given(S.settings_and_shape(S.encoder_settings(degenerate=True) | S.encoder_settings(article_only=True, degenerate=True),
                            **TINY), st.just("inference"))
def test_resnet_encoder_envelope_is_exact_for_degenerate_constructor_values(case, mode):
    """Inference only (training a ResNet on CPU costs seconds; train mode is proven above)."""
    assert_envelope_exact("unet3d-resnet50", *case, mode, builder=build_uninitialised)


@settings(max_examples=40)
@given(st.sampled_from(["unet3d", "unet2d", "resnet50-3d", "unet3d-resnet152"]), st.data())
def test_constructor_refusals_match_the_build_on_every_variant(name, data):
    """Build only (meta, no forward): refused as "constructor" exactly when the class raises."""
    settings_for = {"unet3d": S.unet_settings, "unet2d": S.unet_settings, "resnet50-3d": S.resnet_settings,
                    "unet3d-resnet152": S.encoder_settings}
    overrides = data.draw(settings_for[name](degenerate=True))
    shape = (1, 1, 16, 16) if name == "unet2d" else (1, 1, 16, 16, 16)
    verdict = check(name, shape, overrides)
    note(verdict.message())
    try:
        build(name, overrides, "meta")
    except Exception:
        assert verdict.constraint == "constructor" and verdict.suggestion is None
        return
    assert verdict.constraint != "constructor"
