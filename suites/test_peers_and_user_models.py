"""Peers and your own models: listed (available or not, with the install command), their envelope probed
on the meta device and proven both ways against real runs, and a model in a file the project has never
seen taken through list, check, bench and report with the documented flag."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings, strategies as st

from harness.catalog import peers, registry
from harness.envelope import check
from harness.catalog.registry import get_variant, list_models
from harness.catalog.user import register_reference

REPO = Path(__file__).resolve().parent.parent
# A small UNet with two poolings and concatenated skips: it needs sizes divisible by 4 and at least 4,
# and BatchNorm refuses one value per channel in training (batch 1 at 4x4x4).
USER_MODEL = textwrap.dedent('''
    import torch
    import torch.nn as nn


    class TinyUNet(nn.Module):
        def __init__(self, in_channels=2, num_classes=3, width=4):
            super().__init__()
            block = lambda i, o: nn.Sequential(nn.Conv3d(i, o, 3, padding=1), nn.BatchNorm3d(o), nn.ReLU())
            self.down1, self.down2, self.bottom = block(in_channels, width), block(width, width), block(width, width)
            self.up2, self.up1 = block(2 * width, width), block(2 * width, width)
            self.head = nn.Conv3d(width, num_classes, 1)

        def forward(self, x):
            a = self.down1(x)
            b = self.down2(nn.functional.max_pool3d(a, 2))
            c = self.bottom(nn.functional.max_pool3d(b, 2))
            b = self.up2(torch.cat([b, nn.functional.interpolate(c, scale_factor=2.0)], 1))
            return self.head(self.up1(torch.cat([a, nn.functional.interpolate(b, scale_factor=2.0)], 1)))


    def build_tiny_unet(in_channels=2, num_classes=3, width=4):
        return TinyUNet(in_channels, num_classes, width)
''')


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("lab") / "lab_nets.py"
    path.write_text(USER_MODEL)
    return f"{path}:build_tiny_unet", register_reference(f"{path}:build_tiny_unet")


def _runs(name: str, shape, train: bool) -> tuple | None:
    """The output shape when the real model runs this input on the CPU, else None."""
    torch.manual_seed(0)
    model = get_variant(name).builder(**get_variant(name).defaults).train(train)
    try:
        with torch.set_grad_enabled(train):
            return tuple(model(torch.randn(shape)).shape)
    except (RuntimeError, ValueError):
        return None


def test_every_peer_is_listed_with_its_install_command_when_missing(monkeypatch):
    listed = list_models("*", sources=("peer",))
    assert {"monai-basicunet", "monai-flexunet-resnet50", "nnunet-plain", "nnunet-resenc-m"} <= set(listed)
    monkeypatch.setattr(registry, "available", lambda library: False)
    out = subprocess.run([sys.executable, "-c", "import harness.catalog.registry as r; r.available = lambda l: False; "
                          "from harness.__main__ import main; main(['list', 'nnunet-*'])"],
                         cwd=REPO, capture_output=True, text=True, timeout=120).stdout
    assert "nnunet-plain" in out and "unavailable" in out and "pip install" in out
    verdict = check("nnunet-plain", (1, 1, 64, 64, 64))
    assert not verdict.supported and "pip install" in verdict.message()


@settings(max_examples=25, deadline=None)
@given(batch=st.integers(1, 2), channels=st.integers(1, 3), sizes=st.lists(st.integers(1, 14), min_size=3, max_size=3),
       train=st.booleans())
def test_the_probed_envelope_of_a_user_model_agrees_with_real_runs(user_model, batch, channels, sizes, train):
    _, name = user_model
    shape = (batch, channels, *sizes)
    verdict = check(name, shape, mode="train" if train else "inference")
    assert verdict.output_shape == _runs(name, shape, train), verdict.message()
    if verdict.suggestion is not None:
        assert _runs(name, verdict.suggestion, train) is not None


def test_the_probed_rule_names_the_constraints(user_model):
    _, name = user_model
    assert "multiple of 4" in check(name, (1, 2, 8, 8, 10)).message()
    assert "takes 2 input channel(s)" in check(name, (1, 1, 8, 8, 8)).message()
    refused = check(name, (1, 2, 4, 4, 4), mode="train")
    assert refused.constraint == "train-batchnorm" and refused.suggestion == (2, 2, 4, 4, 4)


@pytest.mark.skipif(not peers.available("monai"), reason=f"MONAI is not installed: {peers.INSTALL_HINT}")
@settings(max_examples=10, deadline=None)
@given(sizes=st.lists(st.integers(1, 24), min_size=3, max_size=3), train=st.booleans())
def test_the_probed_envelope_of_a_peer_agrees_with_real_runs(sizes, train):
    shape = (2, 1, *sizes)
    assert check("monai-unet", shape, mode="train" if train else "inference").output_shape == _runs(
        "monai-unet", shape, train)


@pytest.mark.skipif(not peers.available("nnunet"), reason=f"dynamic-network-architectures is not installed: {peers.INSTALL_HINT}")
def test_nnunet_networks_are_built_as_its_planner_would_for_a_64_patch():
    plain, resenc = (get_variant(n).builder() for n in ("nnunet-plain", "nnunet-resenc-m"))
    assert list(plain.encoder.output_channels) == [32, 64, 128, 256, 320]
    assert round(sum(p.numel() for p in plain.parameters()) / 1e6, 1) == 16.5
    assert round(sum(p.numel() for p in resenc.parameters()) / 1e6, 1) == 62.8
    assert check("nnunet-plain", (1, 1, 40, 32, 32)).constraint == "divisibility"


def test_a_model_in_a_new_file_goes_through_list_check_bench_and_report(user_model, tmp_path):
    reference, name = user_model
    harness = [sys.executable, "-m", "harness"]
    listed = subprocess.run(harness + ["list", "--model", reference], cwd=REPO, capture_output=True, text=True)
    assert name in listed.stdout and "yours" in listed.stdout
    checked = subprocess.run(harness + ["check", reference, "--input", "1,2,8,8,10"], cwd=REPO, capture_output=True,
                             text=True)
    assert checked.returncode == 2 and "multiple of 4" in checked.stderr
    runs = tmp_path / "runs"
    bench = subprocess.run([sys.executable, "-m", "harness", "bench",
                            "-q", "--profile", "smoke", "--warmup", "1", "--model", reference, "--set", "width=2",
                            "--runs-root", str(runs), "--run-id", "lab"], cwd=REPO, capture_output=True, text=True,
                           timeout=600)
    assert bench.returncode == 0, bench.stdout + bench.stderr
    report = subprocess.run([sys.executable, "-m", "harness.report", str(runs / "lab"), "--out", str(tmp_path / "report")],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert report.returncode == 0, report.stderr
    assert name in (tmp_path / "report" / "comparison.md").read_text()
