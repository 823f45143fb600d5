"""The stage-print switch: off by default, on in a with-block, restored on exit even on error."""
import contextlib
import io

import pytest
import torch

import reference_models as rm
from harness.catalog.meta_probe import build


def _printed(model, x):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        model(x)
    return out.getvalue()


@pytest.fixture
def unet():
    return build("unet3d", {"base_c": 2}, device="meta").eval(), torch.empty(1, 1, 16, 16, 16, device="meta")


def test_off_by_default(unet):
    assert not rm.stage_prints_enabled()
    assert _printed(*unet) == ""


def test_on_inside_a_with_block_and_off_after(unet):
    with rm.stage_prints():
        assert _printed(*unet).splitlines()[0] == "x1= torch.Size([1, 2, 16, 16, 16])"
    assert _printed(*unet) == ""


def test_restored_when_the_block_raises(unet):
    with pytest.raises(RuntimeError), rm.stage_prints():
        raise RuntimeError("boom")
    assert not rm.stage_prints_enabled()


def test_plain_calls_and_nesting(unet):
    try:
        rm.stage_prints(True)
        assert _printed(*unet).count("\n") == 5
        with rm.stage_prints(False):
            assert _printed(*unet) == ""
        assert rm.stage_prints_enabled()
    finally:
        rm.stage_prints(False)
    assert _printed(*unet) == ""


def test_encoder_prints_in_the_articles_format():
    model = build("unet3d-resnet50", {"layers": [1, 1, 1, 1]}, device="meta").eval()
    with rm.stage_prints():
        lines = _printed(model, torch.empty(1, 1, 32, 32, 32, device="meta")).splitlines()
    assert lines == ["x1= torch.Size([1, 64, 32, 32, 32])", "x2= torch.Size([1, 128, 16, 16, 16])",
                     "x3= torch.Size([1, 256, 8, 8, 8])", "x4= torch.Size([1, 512, 4, 4, 4])",
                     "x5= torch.Size([1, 1024, 2, 2, 2])"]
