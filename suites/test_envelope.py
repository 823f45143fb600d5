"""The support envelope is exact: predicted to run -> runs (with the predicted shapes);
predicted to fail -> fails. Proven against the real models on CPU tensors, and at larger sizes on
the meta device (which runs PyTorch's shape checks without arithmetic)."""
from hypothesis import event, given, note

import strategies as S
from harness.envelope import check
from harness.probe import run_once


# The error each constraint names, as PyTorch words it on CPU tensors (meta words some differently).
CPU_ERRORS = {
    "min-size": "Output size is too small",
    "parity": "Sizes of tensors must match",
    "train-batchnorm": "Expected more than 1 value per channel when training",
    "channels": "channels",
    "decoder-channels": "channels",
}


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
