"""MACs and parameter counts: fvcore (with our handles) against PyTorch's FlopCounterMode and an
analytic count from the weights' shapes, for every variant."""
import pytest
import torch

from harness import get_variant, list_models
from harness.bench.counting import analytic_conv_linear_macs, count_work, flop_counter_macs
from harness.evidence.facts import fact_shape
from harness.catalog.meta_probe import build


# fvcore's handles and the MAC policy cover the article's variants and the UNet++ follow-up; peers are
# counted too, and whatever fvcore cannot count is listed in their rows' unsupported_ops.
@pytest.fixture(scope="module", params=list_models(sources=("article", "follow-up"), available=True))
def counted(request):
    name = request.param
    model = build(name)
    sample = torch.randn(fact_shape(name))
    return name, model, sample, count_work(model, sample)


def test_conv_linear_macs_agree_with_flop_counter_and_analytic_count(counted):
    name, model, sample, work = counted
    pytorch = flop_counter_macs(build(name, device="meta"), torch.empty(sample.shape, device="meta"))
    assert work.conv_linear_macs == sum(pytorch.values()) == analytic_conv_linear_macs(model, sample)
    assert set(pytorch) <= {"aten.convolution", "aten.addmm"}  # nothing else does matrix work


def test_nothing_is_left_uncounted_and_policy_ops_are_listed(counted):
    name, _, _, work = counted
    assert work.unsupported_ops == {}
    assert work.zero_mac_ops  # every variant pools: the policy's ops are reported, not hidden
    assert work.macs == sum(work.macs_by_operator.values())


def test_used_parameters_leave_out_exactly_the_never_called_modules(counted):
    name, model, _, work = counted
    assert work.params_total == sum(p.numel() for p in model.parameters())
    if get_variant(name).family == "unet3d-resnet":
        assert "down4" in work.uncalled_modules
        assert work.params_total - work.params_used == sum(p.numel() for p in model.down4.parameters())
    else:  # containers iterated rather than called (MONAI's EfficientNet blocks) may be listed, holding nothing
        assert work.params_used == work.params_total
        assert not [n for n in work.uncalled_modules if list(model.get_submodule(n).parameters(recurse=False))]


def test_trilinear_upsampling_is_counted_as_8_macs_per_output_element():
    model, sample = build("unet3d-trilinear", {"base_c": 2}), torch.randn(1, 1, 16, 16, 16)
    work = count_work(model, sample)
    # At base_c=2 the four upsamplings see 16, 8, 4 and 2 channels and output 2, 4, 8 and 16 per side.
    outputs = sum(c * s ** 3 for c, s in [(16, 2), (8, 4), (4, 8), (2, 16)])
    assert work.macs_by_operator["upsample_trilinear3d"] == 8 * outputs


def test_counting_needs_a_single_sample():
    with pytest.raises(ValueError, match="batch must be 1"):
        count_work(build("unet3d", {"base_c": 2}), torch.randn(2, 1, 16, 16, 16))
