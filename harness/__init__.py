"""Benchmarking and reproducibility harness for the article's 3D segmentation networks.

Layers, each returning plain data to the next: registry -> envelope -> measure -> store -> report.
"""
from .registry import BASELINE, Claim, Variant, create_model, get_variant, list_models

__all__ = ["BASELINE", "Claim", "Variant", "create_model", "get_variant", "list_models"]
