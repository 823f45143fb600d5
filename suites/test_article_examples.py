"""Every example the article runs: the printed output and stage shapes, and its stated limits."""
import contextlib
import io

import pytest
import torch

import reference_models as rm
from harness import get_variant, list_models
from harness.envelope import check
from harness.catalog.meta_probe import build, run_once

CLAIMS = [(name, claim) for name in list_models() for claim in get_variant(name).claims]
LIMITS = [(name, limit) for name in list_models() for limit in get_variant(name).limits]


@pytest.mark.parametrize("name,claim", CLAIMS, ids=[f"{n}-{c.input_shape}" for n, c in CLAIMS])
def test_article_example_shapes_reproduce(name, claim):
    output, stages = run_once(name, claim.input_shape, claim.overrides, device="meta")
    assert output == claim.output_shape
    if claim.stage_shapes:
        assert stages == claim.stage_shapes
    verdict = check(name, claim.input_shape, claim.overrides)
    assert verdict.supported and verdict.output_shape == output and verdict.stage_shapes == stages


@pytest.mark.parametrize("name,claim", [(n, c) for n, c in CLAIMS if c.stage_shapes],
                         ids=[n for n, c in CLAIMS if c.stage_shapes])
def test_stage_prints_show_the_articles_lines(name, claim):
    model = build(name, claim.overrides, device="meta").eval()
    out = io.StringIO()
    with contextlib.redirect_stdout(out), rm.stage_prints():
        model(torch.empty(claim.input_shape, device="meta"))
    expected = "".join(f"x{i}= torch.Size({list(s)})\n" for i, s in enumerate(claim.stage_shapes, 1))
    assert out.getvalue() == expected


@pytest.mark.parametrize("name,limit", LIMITS, ids=[f"{n}-{lim.text[:20]}" for n, lim in LIMITS])
def test_article_stated_limits_fail_as_stated(name, limit):
    shape = (1, 1, 16, 16, 16)  # small: the failure is in the decoder's channels, whatever the size
    verdict = check(name, shape, limit.overrides)
    assert not verdict.supported and verdict.constraint == "decoder-channels"
    with pytest.raises(RuntimeError, match=r"expected input\[.*\] to have \d+ channels"):
        run_once(name, shape, limit.overrides, device="cpu")


def test_resnet_stages_line_up_with_the_unet_encoder_at_the_articles_input():
    _, unet_stages = run_once("unet3d", (1, 1, 64, 64, 64), device="meta")
    _, resnet_stages = run_once("resnet50-3d", (1, 1, 64, 64, 64), device="meta")
    assert unet_stages == resnet_stages
