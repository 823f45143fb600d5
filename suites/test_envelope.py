"""The support envelope is exact: predicted to run -> runs (with the predicted shapes);
predicted to fail -> fails. Proven against the real models on CPU tensors, and at larger sizes on
the meta device (which runs PyTorch's shape checks without arithmetic)."""
from hypothesis import event, given, note
from hypothesis import strategies as st

import strategies as S
from harness.envelope import check
from harness.probe import run_once


def assert_envelope_exact(name, overrides, shape, mode, device="cpu"):
    verdict = check(name, shape, overrides, mode, device=device, suggest=False)
    note(verdict.message())
    event(verdict.constraint or "supported")
    try:
        output, stages = run_once(name, shape, overrides, mode, device)
    except (RuntimeError, ValueError) as error:
        assert not verdict.supported, f"predicted to run, but failed: {error}"
        return verdict
    assert verdict.supported, f"predicted to fail ({verdict.reason}), but ran: output {output}"
    assert verdict.output_shape == output
    assert verdict.stage_shapes == stages
    return verdict


@given(S.unet_settings(), S.input_shapes(spatial_dims=3, channels=st.integers(1, 3)), S.MODES)
def test_unet3d_envelope_is_exact(settings, shape, mode):
    assert_envelope_exact("unet3d", settings, shape, mode)


@given(S.unet_settings(), S.input_shapes(spatial_dims=2, channels=st.integers(1, 3), max_size=80), S.MODES)
def test_unet2d_envelope_is_exact(settings, shape, mode):
    assert_envelope_exact("unet2d", settings, shape, mode)


@given(S.resnet_settings(), S.input_shapes(spatial_dims=3, channels=st.integers(1, 2), max_size=24), S.MODES)
def test_resnet3d_envelope_is_exact(settings, shape, mode):
    assert_envelope_exact("resnet50-3d", settings, shape, mode)


@given(S.encoder_settings(), S.input_shapes(spatial_dims=3, channels=st.integers(1, 3), max_size=20,
                                            max_elements=2 * 20 ** 3), S.MODES)
def test_resnet_encoder_envelope_is_exact(settings, shape, mode):
    assert_envelope_exact("unet3d-resnet50", settings, shape, mode)


# Larger sizes, shape-only. Shortcut 'A' cannot run on meta (its zeros are made on the CPU).
@given(S.unet_settings(max_base_c=64), S.input_shapes(spatial_dims=3, channels=st.integers(1, 3), max_size=200,
                                                      max_elements=10 ** 9), S.MODES)
def test_unet3d_envelope_is_exact_at_large_sizes(settings, shape, mode):
    assert_envelope_exact("unet3d", settings, shape, mode, device="meta")


@given(S.encoder_settings(max_blocks=3).map(lambda s: {**s, "shortcut_type": "B"}),
       S.input_shapes(spatial_dims=3, channels=st.integers(1, 3), max_size=200, max_elements=10 ** 9), S.MODES)
def test_resnet_encoder_envelope_is_exact_at_large_sizes(settings, shape, mode):
    assert_envelope_exact("unet3d-resnet50", settings, shape, mode, device="meta")
