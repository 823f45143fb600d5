"""``python -m harness check`` answers every value ``--set`` and ``--input`` accept with exit 0 and the
output shape, or exit 2 and one paragraph on stderr: never a traceback (issue 9)."""
import contextlib
import io
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import strategies as S
from harness import get_variant
from harness.__main__ import main
from harness.overrides import parse_overrides
from harness.catalog.meta_probe import build, run_once

# (model, --set items, exit code, words the one paragraph must contain)
CASES = [
    ("unet3d", ["base_c=0"], 2, ["base_c=0", "Way out: set base_c to 1 or more"]),
    ("unet3d", ["base_c=-4"], 2, ["cannot be built with base_c=-4", "nothing was run", "Way out: set base_c"]),
    ("unet3d", ["num_classes=0"], 2, ["num_classes=0", "Way out: set num_classes to 1 or more"]),
    ("unet3d", ["num_classes=-1"], 2, ["cannot be built with num_classes=-1"]),
    ("unet3d", ["in_channels=0"], 2, ["no input runs with these settings", "Way out: set in_channels to 1 or more"]),
    ("unet3d", ["in_channels=-2"], 2, ["cannot be built with in_channels=-2"]),
    ("unet3d", ["base_c=1"], 0, []),
    ("unet3d", ["base_c=3"], 0, []),
    ("unet3d", ["base_c=1.5"], 2, ["cannot be built with base_c=1.5"]),
    ("unet3d", ["base_c=true"], 2, ["cannot be built with base_c=true"]),
    ("unet3d", ["base_c=4,4"], 2, ["cannot be built with base_c=4,4"]),
    ("unet3d", ["bilinear=2", "base_c=4"], 0, []),
    ("unet3d", ["bilinear=0", "base_c=4"], 0, []),
    ("unet2d", ["base_c=0"], 2, ["base_c=0"]),
    ("resnet50-3d", ["layers=0,-1,0,0"], 0, []),
    ("resnet50-3d", ["layers=1,1,1"], 2, ["cannot be built with layers=1,1,1", "four integer stage counts"]),
    ("resnet50-3d", ["layers=1,1,1,1,1"], 0, []),
    ("resnet50-3d", ["layers=3"], 2, ["cannot be built with layers=3"]),
    ("resnet50-3d", ["layers="], 2, ["cannot be built with layers="]),
    ("resnet50-3d", ["shortcut_type=Z"], 0, []),
    ("resnet50-3d", ["block=Foo"], 2, ["cannot be built with block=Foo", "Bottleneck or BasicBlock"]),
    ("resnet50-3d", ["num_classes=0"], 0, []),
    ("resnet50-3d", ["num_classes=0", "include_top=false"], 0, []),
    ("resnet50-3d", ["num_classes=-1", "include_top=false"], 0, []),
    ("resnet50-3d", ["num_classes=-1", "include_top=true"], 2, ["cannot be built with num_classes=-1"]),
    ("unet3d-resnet50", ["base_c=0"], 2, ["base_c=0", "keep base_c=64"]),
    ("unet3d-resnet50", ["in_channels=0"], 2, ["no input runs", "in_channels to 1 or more"]),
    ("unet3d-resnet50", ["num_classes=0"], 2, ["num_classes=0"]),
    ("unet3d-resnet50", ["bilinear=3"], 2, ["up1's DoubleConv", "keep base_c=64, bilinear=False"]),
]


def _run(argv, capsys):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("model,items,code,words", CASES, ids=[f"{m}-{'-'.join(i)}" for m, i, _, _ in CASES])
def test_check_answers_degenerate_values_in_one_paragraph(model, items, code, words, capsys):
    shape = "1,1,32,32" if model.startswith("unet2d") else "1,1,32,32,32"
    argv = ["check", model, "--input", shape] + [arg for item in items for arg in ("--set", item)]
    got, out, err = _run(argv, capsys)
    assert got == code, err
    if code == 2:
        assert out == "" and err.count("\n") == 1 and "Traceback" not in err, err
        assert "Nearest supported input" not in err  # none of these settings can run any input
        for word in words:
            assert word in err, err
    else:
        assert err == "" and out.startswith("(1, ")
    # The real model agrees: a build refusal does not build, an exit 0 runs (meta: shape checks only).
    # (Run-time refusals such as zero widths need CPU tensors, since meta lets an empty 1x1x1
    # convolution pass: test_envelope's examples run these same values on CPU.)
    overrides, input_shape = parse_overrides(items), tuple(int(n) for n in shape.split(","))
    try:
        real = build(model, overrides, "meta")
    except Exception:
        assert code == 2 and "cannot be built" in err
        return
    assert "cannot be built" not in err
    if code == 0:
        run_once(model, input_shape, overrides, device="meta", model=real)


@pytest.mark.parametrize("argv", [
    ["check", "unet3d", "--input", "1,1,a,32"], ["check", "unet3d", "--input", "1,1,32,32,32", "--set", "base_c"],
    ["check", "unet3d", "--input", "1,1,32,32,32", "--set", "=3"], ["check", "nope", "--input", "1,1,32,32,32"],
    ["check", "resnet50-3d", "--input", "1,1,32,32,32", "--set", "in_channels=3"],
    ["check", "unet3d", "--input", "", "--set", "base_c=0"], ["check", "unet3d", "--input", "1,0,32,32,32"],
    ["check", "unet3d", "--input", "1,1,32,32,32", "--device", "tpu"], ["check", "unet3d", "--input", "1,1,32,32,32",
                                                                         "--mode", "training"],
    ["check", "unet3d"], ["check", "unet3d", "--input", "1,1,32,32,32", "--bogus"],
])
def test_unparseable_or_unknown_values_exit_2_in_one_paragraph(argv, capsys):
    code, out, err = _run(argv, capsys)
    assert code == 2 and out == "" and err.count("\n") == 1 and "Traceback" not in err, err


@settings(max_examples=60)
@given(st.sampled_from(["unet3d", "unet2d", "resnet50-3d", "unet3d-resnet101"]), st.data())
def test_any_set_text_gets_exit_0_or_2_and_one_line(name, data):
    """Whatever text follows ``--set key=`` (any argument of the class), one line and 0 or 2."""
    keys = sorted(get_variant(name).defaults)
    items = data.draw(st.lists(st.tuples(st.sampled_from(keys), st.one_of(st.integers(-4, 4).map(str),
                                                                          st.sampled_from(S.CLI_TOKENS))),
                               max_size=3))
    shape = "1,1,16,16" if name == "unet2d" else "1,1,16,16,16"
    argv = ["check", name, "--input", shape] + [a for key, text in items for a in ("--set", f"{key}={text}")]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    assert (code, bool(out.getvalue()), err.getvalue().count("\n")) in ((0, True, 0), (2, False, 1)), err.getvalue()


def test_the_issues_command_exits_2_without_a_traceback():
    result = subprocess.run([sys.executable, "-m", "harness", "check", "unet3d", "--input", "1,1,32,32,32",
                             "--set", "base_c=0"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == "" and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and "base_c" in result.stderr
