"""Our reference models held against the article's own code, run side by side (see article_oracle)."""
import contextlib
import io

import pytest
import torch

import article_oracle
import reference_models as rm
from harness.counting import count_work

pytestmark = pytest.mark.skipif(not article_oracle.available(),
                                reason=f"the article is not at {article_oracle.seed_path()}")

BOTTLENECK_50 = [3, 4, 6, 3]
# (id, article section, class name, constructor kwargs (block given by name), input for output checks)
CASES = [
    ("unet2d", "unet2d", "UNet", dict(bilinear=True), (2, 1, 32, 48)),
    ("unet2d-transposed", "unet2d", "UNet", dict(bilinear=False, base_c=8), (2, 1, 33, 40)),
    ("unet3d", "unet3d", "UNet_3d", dict(bilinear=False), (2, 1, 16, 16, 16)),
    ("unet3d-trilinear", "unet3d", "UNet_3d", dict(bilinear=True, base_c=8), (2, 1, 17, 33, 17)),
    ("resnet50-3d", "resnet3d", "ResNet_3d",
     dict(block="Bottleneck", layers=BOTTLENECK_50, num_classes=3), (2, 1, 16, 16, 16)),
    ("resnet50-3d-A", "resnet3d", "ResNet_3d",
     dict(block="Bottleneck", layers=BOTTLENECK_50, num_classes=3, shortcut_type="A"), (2, 1, 16, 16, 16)),
    ("resnet18-3d-A-notop", "resnet3d", "ResNet_3d",
     dict(block="BasicBlock", layers=[2, 2, 2, 2], shortcut_type="A", include_top=False), (2, 1, 16, 16, 16)),
    ("unet3d-resnet50", "encoder", "UNet_3d_resnet_encoder",
     dict(block="Bottleneck", layers=BOTTLENECK_50, bilinear=False), (2, 1, 16, 16, 16)),
    ("unet3d-resnet50-A-in3", "encoder", "UNet_3d_resnet_encoder",
     dict(block="Bottleneck", layers=BOTTLENECK_50, bilinear=False, shortcut_type="A", in_channels=3),
     (2, 3, 16, 16, 32)),
    ("unet3d-resnet101", "encoder", "UNet_3d_resnet_encoder",
     dict(block="Bottleneck", layers=[3, 4, 23, 3], bilinear=False), (2, 1, 16, 16, 16)),
    ("unet3d-resnet152", "encoder", "UNet_3d_resnet_encoder",
     dict(block="Bottleneck", layers=[3, 8, 36, 3], bilinear=False), (2, 1, 16, 16, 16)),
]


def _build(namespace, class_name, kwargs, seed=0):
    kwargs = dict(kwargs)
    if "block" in kwargs:  # the article's encoder section has no BasicBlock: section 2 supplies it
        blocks = namespace if kwargs["block"] in namespace else article_oracle.namespace("resnet3d")
        kwargs["block"] = blocks[kwargs["block"]]
    torch.manual_seed(seed)
    return namespace[class_name](**kwargs)


def build_pair(section, class_name, kwargs):
    ours = _build(vars(rm), class_name, kwargs)
    theirs = _build(article_oracle.namespace(section), class_name, kwargs)
    return ours, theirs


def silently(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


@pytest.fixture(scope="module", params=CASES, ids=[case[0] for case in CASES])
def pair(request):
    _, section, class_name, kwargs, input_shape = request.param
    return (*build_pair(section, class_name, kwargs), input_shape)


def test_same_state_dict_keys_in_order_and_same_seeded_weights(pair):
    ours, theirs, _ = pair
    ours_sd, theirs_sd = ours.state_dict(), theirs.state_dict()
    assert list(ours_sd) == list(theirs_sd)
    for key in ours_sd:
        assert ours_sd[key].shape == theirs_sd[key].shape, key
        assert torch.equal(ours_sd[key], theirs_sd[key]), key
    assert [n for n, _ in ours.named_modules()] == [n for n, _ in theirs.named_modules()]


def test_same_outputs_in_eval_mode(pair):
    ours, theirs, input_shape = pair
    x = torch.randn(input_shape, generator=torch.Generator().manual_seed(1))
    ours.eval(), theirs.eval()
    with torch.no_grad():
        assert torch.equal(ours(x), silently(theirs, x))


def test_same_outputs_gradients_and_running_stats_in_train_mode(pair):
    ours, theirs, input_shape = pair
    ours.load_state_dict(theirs.state_dict())  # the eval test left them equal; make it explicit
    ours.train(), theirs.train()
    x = torch.randn(input_shape, generator=torch.Generator().manual_seed(2))
    out_ours, out_theirs = ours(x), silently(theirs, x)
    assert torch.equal(out_ours, out_theirs)
    out_ours.square().mean().backward()
    out_theirs.square().mean().backward()
    for (name, p_ours), p_theirs in zip(ours.named_parameters(), theirs.parameters()):
        assert (p_ours.grad is None) == (p_theirs.grad is None), name
        if p_ours.grad is not None:
            assert torch.equal(p_ours.grad, p_theirs.grad), name
    for (name, b_ours), b_theirs in zip(ours.named_buffers(), theirs.buffers()):
        assert torch.equal(b_ours, b_theirs), name


def test_harness_counts_the_same_work_on_the_articles_model(pair):
    # What the bench tables report (parameters, used parameters, MACs by operator, modules never
    # called) is what the article's own code gives.
    ours, theirs, input_shape = pair
    sample = torch.randn((1, *input_shape[1:]), generator=torch.Generator().manual_seed(3))
    ours_work, theirs_work = count_work(ours, sample), silently(count_work, theirs, sample)
    for field in ("params_total", "params_used", "macs", "macs_by_operator", "uncalled_modules"):
        assert getattr(ours_work, field) == getattr(theirs_work, field), field
    # Not the names of the ops fvcore cannot count: for shortcut A the article builds its zeros with
    # the legacy torch.Tensor(...).zero_() (traced: aten::zero_), we with torch.zeros (traced: the
    # channel arithmetic, aten::rsub). Neither does multiply-adds; one per shortcut either way.
    assert sum(ours_work.unsupported_ops.values()) == sum(theirs_work.unsupported_ops.values())


@pytest.mark.parametrize("class_name,section,kwargs", [
    ("UNet_3d", "unet3d", dict(bilinear=False, base_c=4)),
    ("UNet_3d", "unet3d", dict(bilinear=True, base_c=4)),
    ("ResNet_3d", "resnet3d", dict(block="BasicBlock", layers=[1, 1, 1, 1])),
])
def test_stage_prints_are_the_articles_bytes(class_name, section, kwargs):
    ours, theirs = build_pair(section, class_name, kwargs)
    x = torch.randn(1, 1, 16, 32, 48)
    article_out = io.StringIO()
    with contextlib.redirect_stdout(article_out):
        theirs.eval()(x)
    ours_out = io.StringIO()
    with contextlib.redirect_stdout(ours_out), rm.stage_prints():
        ours.eval()(x)
    assert ours_out.getvalue() == article_out.getvalue()
    assert article_out.getvalue().count("\n") == 5
    silent = io.StringIO()
    with contextlib.redirect_stdout(silent):
        ours(x)
    assert silent.getvalue() == ""


FAILURES = [
    ("encoder", "UNet_3d_resnet_encoder", dict(block="BasicBlock", layers=[2, 2, 2, 2], bilinear=False),
     (1, 1, 16, 16, 16)),
    ("encoder", "UNet_3d_resnet_encoder", dict(block="Bottleneck", layers=[1, 1, 1, 1], bilinear=True),
     (1, 1, 16, 16, 16)),
    ("encoder", "UNet_3d_resnet_encoder", dict(block="Bottleneck", layers=[1, 1, 1, 1], bilinear=False,
                                               base_c=32), (1, 1, 16, 16, 16)),
    ("unet3d", "UNet_3d", dict(base_c=2), (1, 1, 8, 16, 16)),    # too small to pool four times
    ("unet3d", "UNet_3d", dict(base_c=2), (1, 1, 16, 16, 17)),   # mixed parity: the padding quirk
    ("unet3d", "UNet_3d", dict(base_c=2), (1, 2, 16, 16, 16)),   # wrong channel count
    ("resnet3d", "ResNet_3d", dict(block="BasicBlock", layers=[1, 1, 1, 1]), (1, 3, 16, 16, 16)),
]


@pytest.mark.parametrize("section,class_name,kwargs,input_shape", FAILURES,
                         ids=["basicblock", "bilinear", "base_c", "small", "parity", "channels", "resnet-c3"])
def test_same_failures(section, class_name, kwargs, input_shape):
    ours, theirs = build_pair(section, class_name, kwargs)
    x = torch.randn(input_shape)
    with pytest.raises(Exception) as article_error:
        silently(theirs.eval(), x)
    with pytest.raises(type(article_error.value)) as our_error:
        ours.eval()(x)
    assert str(our_error.value) == str(article_error.value)


def test_train_mode_needs_more_than_one_value_per_channel_like_the_article():
    ours, theirs = build_pair("unet3d", "UNet_3d", dict(base_c=2))
    x = torch.randn(1, 1, 16, 16, 16)  # x5 is 1x1x1 with batch 1
    with pytest.raises(ValueError, match="more than 1 value per channel") as article_error:
        silently(theirs.train(), x)
    with pytest.raises(ValueError) as our_error:
        ours.train()(x)
    assert str(our_error.value) == str(article_error.value)
