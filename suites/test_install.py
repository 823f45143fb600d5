"""The package installs (``pip install .``) with its pytest plugin, and a lab's own repository runs the
benchmark sweep against its own model with nothing copied from this checkout: no conftest, no ``-p``."""
import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

NETS = '''
import torch.nn as nn


def build(in_channels=1, num_classes=2):
    return nn.Sequential(nn.Conv3d(in_channels, 4, 3, padding=1), nn.ReLU(), nn.Conv3d(4, num_classes, 1))
'''


def _install(tmp_path: Path) -> Path:
    """pip install of a copy of the checkout into a folder of its own (its dependencies are this Python's)."""
    source, site = tmp_path / "source", tmp_path / "site"
    for part in ("harness", "reference_models"):
        shutil.copytree(REPO / part, source / part, ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / part, source / part)
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
                           "--no-build-isolation", "--target", str(site), str(source)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return site


def test_an_installed_package_runs_a_labs_model_through_harness_bench_and_plain_pytest(tmp_path):
    site = _install(tmp_path)
    assert (site / "harness" / "pytest_plugin" / "bench_test.py").is_file() and (site / "reference_models").is_dir()
    assert not (site / "suites").exists() and not (site / "results").exists()
    lab = tmp_path / "lab"
    lab.mkdir()
    (lab / "nets.py").write_text(NETS)
    env = {**os.environ, "PYTHONPATH": str(site)}  # the installed package only: no checkout on the path
    options = ["--profile", "smoke", "--warmup", "1", "--model", "nets:build"]
    for runner, run_id in ((["-m", "harness", "bench"], "via-harness"), (["-m", "pytest"], "via-pytest")):
        done = subprocess.run([sys.executable, *runner, *options, "--runs-root", "runs", "--run-id", run_id], cwd=lab,
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout + done.stderr
        rows = list(csv.DictReader((lab / "runs" / run_id / "results.csv").open()))
        assert sorted(r["mode"] for r in rows) == ["inference", "train"], rows
        assert {r["model"] for r in rows} == {"nets:build"} and {r["source"] for r in rows} == {"user"}
        assert all(r["error"] == "" and r["warm"] == "True" for r in rows)
    where = subprocess.run([sys.executable, "-c", "import harness; print(harness.__file__)"], cwd=lab, env=env,
                           capture_output=True, text=True)
    assert where.stdout.startswith(str(site)), where.stdout + where.stderr
