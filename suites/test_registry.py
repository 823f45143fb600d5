"""The registry of named variants and the ``python -m harness`` entry point."""
import pytest

import reference_models as rm
from harness import create_model, get_variant, list_models
from harness.__main__ import main
from harness.overrides import format_overrides, parse_overrides

ARTICLE_NAMES = ["unet2d", "unet2d-transposed", "unet3d", "unet3d-trilinear", "resnet50-3d",
                 "unet3d-resnet50", "unet3d-resnet101", "unet3d-resnet152"]


def test_every_article_variant_is_registered_in_order():
    assert list_models(sources=("article",)) == ARTICLE_NAMES == list_models()[:len(ARTICLE_NAMES)]
    assert list_models(sources=("follow-up",)) == ["unetpp3d", "unetpp3d-effb0", "unetpp3d-effb0-mbconv"]
    assert list_models("unet3d-resnet*") == ["unet3d-resnet50", "unet3d-resnet101", "unet3d-resnet152"]


@pytest.mark.parametrize("name,cls,bilinear", [("unet2d", rm.UNet, True), ("unet2d-transposed", rm.UNet, False),
                                               ("unet3d", rm.UNet_3d, False), ("unet3d-trilinear", rm.UNet_3d, True)])
def test_unet_variants_build_the_articles_classes(name, cls, bilinear):
    model = create_model(name, base_c=2)
    assert type(model) is cls and model.bilinear is bilinear


def test_encoder_depths_match_resnet_50_101_152():
    for name, layers in [("unet3d-resnet50", [3, 4, 6, 3]), ("unet3d-resnet101", [3, 4, 23, 3]),
                         ("unet3d-resnet152", [3, 8, 36, 3])]:
        assert get_variant(name).defaults["layers"] == layers


def test_unknown_overrides_are_refused_with_the_valid_names():
    with pytest.raises(ValueError, match="in_channels, num_classes, bilinear, base_c"):
        create_model("unet3d", depth=5)


def test_override_text_round_trips():
    parsed = parse_overrides(["layers=1,2,3,4", "bilinear=true", "block=BasicBlock", "shortcut_type=A"])
    assert parsed == {"layers": [1, 2, 3, 4], "bilinear": True, "block": rm.BasicBlock, "shortcut_type": "A"}
    assert format_overrides(parsed) == "bilinear=true;block=BasicBlock;layers=1,2,3,4;shortcut_type=A"


def test_cli_check_accepts_and_refuses(capsys):
    assert main(["check", "unet3d", "--input", "1,1,32,32,48"]) == 0
    assert capsys.readouterr().out.strip() == "(1, 2, 32, 32, 48)"
    assert main(["check", "unet3d", "--input", "1,1,8,8,8"]) == 2
    err = capsys.readouterr().err
    assert "at least 16" in err and "(1, 1, 16, 16, 16)" in err and "Traceback" not in err
    assert main(["check", "unet3d-resnet50", "--input", "1,1,32,32,32", "--set", "bilinear=true"]) == 2
    assert "1536" in capsys.readouterr().err
    assert main(["check", "nope", "--input", "1,1,32,32,32"]) == 2
    assert "known: unet2d" in capsys.readouterr().err


def test_cli_list_and_show(capsys):
    assert main(["list", "resnet*"]) == 0
    assert capsys.readouterr().out.split()[0] == "resnet50-3d"
    assert main(["show", "unet3d-resnet50"]) == 0
    assert "(1, 3, 128, 128, 64)" in capsys.readouterr().out
