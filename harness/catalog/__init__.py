"""What can be measured: the registry of model families and variants (after timm's ``register_model``),
and the families that register themselves in it: the article's, the peers', UNet++ (the article's closing
question) and your own (``--model``, entry points). Imports nothing above it but ``overrides`` and
``options`` (its errors).
"""
from harness.catalog import article, peers, unetpp, user  # noqa: F401  (each registers its families)
from harness.catalog.article import BASELINE
from harness.catalog.registry import (Claim, Family, Limit, Shape, Variant, create_model, get_family, get_variant,
                                      list_models, register, register_family)

__all__ = ["BASELINE", "Claim", "Family", "Limit", "Shape", "Variant", "create_model", "get_family", "get_variant",
           "list_models", "register", "register_family"]
