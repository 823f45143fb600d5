"""Benchmarking and reproducibility harness for the article's 3D segmentation networks.

Layers, each returning plain data to the next: registry -> envelope -> measure -> store -> report.
The registry's names are importable from here; they load on first use, so that ``harness.report``
(pandas and matplotlib only) works without torch installed.
"""
import importlib

_LAZY = {name: "harness.registry" for name in
         ("BASELINE", "Claim", "Variant", "create_model", "get_variant", "list_models")}
__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
