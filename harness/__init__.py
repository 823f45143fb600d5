"""Benchmarking and reproducibility harness for the article's 3D segmentation networks.

Layers, each returning plain data to the next (arrows only go down): catalog <- envelope <- bench <-
store, report, evidence, launch, pytest_plugin <- cli. The catalog's names are importable from here; they
load on first use, so that ``harness.store`` and ``harness.report`` work without torch installed.
"""
import importlib

_LAZY = {name: "harness.catalog" for name in
         ("BASELINE", "Claim", "Variant", "create_model", "get_variant", "list_models")}
_LAZY["infer_volume"] = "harness.bench.volume"  # whole-volume inference through MONAI's sliding windows
__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
