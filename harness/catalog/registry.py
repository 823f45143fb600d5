"""Model families and named variants, as data (after timm's ``register_model``/``create_model``).

A *family* is one record holding everything the harness knows about a kind of network: where it comes
from (the article, a peer library, the user), the modules whose outputs are its stages, how its envelope
is decided (a hand-written shape interpreter in ``harness.envelope.walkers``, or probed on the ``meta`` device),
its training target, its input channels' argument and the library it needs. A *variant* is a name, a
family, a builder, constructor defaults and an example input. ``list_models("unet3d*")`` feeds
parametrization everywhere. Adding a variant is one ``register`` call; adding a family is one
``register_family`` call plus its builder. The families register themselves (``article``, ``peers``,
``unetpp``); ``harness.catalog`` imports them, so this module imports no model.
"""
from __future__ import annotations

import fnmatch
import importlib.util
import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch.nn as nn

from harness.options import OptionError

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Claim:
    """One example the article runs: settings, input, and the shapes it printed."""

    input_shape: Shape
    output_shape: Shape
    stage_shapes: tuple[Shape, ...] = ()  # x1..x5 as printed, when the article printed them
    overrides: Mapping[str, Any] = field(default_factory=dict)
    where: str = ""  # the article's section


@dataclass(frozen=True)
class Limit:
    """A setting the article says is not supported."""

    overrides: Mapping[str, Any]
    text: str


@dataclass(frozen=True)
class Family:
    """Everything the harness knows about a kind of network, in one place."""

    name: str
    source: str  # "article" | "peer" | "user"
    stage_modules: tuple[str, ...] = ()  # modules whose outputs are the stages x1..x5 (probe, claims)
    envelope: str | None = None  # a walker in harness.envelope.walkers; None: probed on the meta device
    target: str = "segmentation"  # training target: a class per voxel, or one per sample ("classification")
    channels_argument: str | None = "in_channels"  # the constructor argument that sets the input channels
    library: str = ""  # a key of PEER_PACKAGES when the family needs an optional library


# The optional libraries a family may need (Family.library), by their import names, and how to install them.
PEER_PACKAGES = {"monai": "monai", "nnunet": "dynamic_network_architectures"}
INSTALL_HINT = ("pip install 'monai>=1.3' einops; pip install --no-deps 'dynamic-network-architectures>=0.4' "
                "(--no-deps: its timm requirement would bring torchvision and possibly another torch; docs/models.md)")


def available(library: str) -> bool:
    return importlib.util.find_spec(PEER_PACKAGES[library]) is not None


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    if family.name in _FAMILIES and _FAMILIES[family.name] != family:
        raise ValueError(f"family {family.name!r} is registered twice")
    _FAMILIES[family.name] = family
    return family


def get_family(name: str) -> Family:
    return _FAMILIES[name]


@dataclass(frozen=True)
class Variant:
    name: str
    family: str  # a registered Family's name
    builder: Callable[..., nn.Module]
    defaults: Mapping[str, Any]
    example_input: Shape  # (N, C, *spatial): the article's input, or the family's where it has none
    description: str
    claims: tuple[Claim, ...] = ()
    limits: tuple[Limit, ...] = ()

    @property
    def spatial_dims(self) -> int:
        return len(self.example_input) - 2

    @property
    def record(self) -> Family:
        return _FAMILIES[self.family]

    @property
    def source(self) -> str:
        return self.record.source

    def unavailable_reason(self) -> str:
        """Empty when the variant can be built here, else what to install."""
        library = self.record.library
        if library and not available(library):
            return f"needs {PEER_PACKAGES[library]}: {INSTALL_HINT}"
        return ""

    def constructor_args(self, **overrides) -> dict[str, Any]:
        unknown = set(overrides) - set(inspect.signature(self.builder).parameters)
        if unknown:
            valid = ", ".join(inspect.signature(self.builder).parameters)
            raise ValueError(f"{self.name}: unknown constructor argument(s) {sorted(unknown)}; "
                             f"{self.builder.__name__} takes: {valid}")
        return {**self.defaults, **overrides}


_REGISTRY: dict[str, Variant] = {}


def register(variant: Variant) -> Variant:
    if variant.family not in _FAMILIES:
        raise ValueError(f"variant {variant.name!r}: register its family {variant.family!r} first")
    if variant.name in _REGISTRY:
        if _REGISTRY[variant.name] == variant:
            return variant
        raise ValueError(f"variant {variant.name!r} is registered twice")
    _REGISTRY[variant.name] = variant
    return variant


def list_models(pattern: str = "*", sources: tuple[str, ...] | None = None, available: bool = False) -> list[str]:
    """Registered names matching a shell-style pattern, in registration order (the article's first);
    ``sources`` keeps only those families' sources; ``available`` only what can be built here."""
    return [name for name, variant in _REGISTRY.items() if fnmatch.fnmatchcase(name, pattern)
            and (sources is None or variant.source in sources)
            and (not available or not variant.unavailable_reason())]


def get_variant(name: str) -> Variant:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(_REGISTRY)}") from None


def create_model(name: str, **overrides) -> nn.Module:
    variant = get_variant(name)
    missing = variant.unavailable_reason()
    if missing:
        raise ValueError(f"{name} is not available here: it {missing}")
    return variant.builder(**variant.constructor_args(**overrides))


def require_models(pattern: str) -> list[str]:
    """The available variants matching ``pattern``; refuses a pattern that matches none, saying why."""
    matched = list_models(pattern)
    names = [name for name in matched if not get_variant(name).unavailable_reason()]
    if matched and not names:
        raise OptionError(f"--models {pattern!r} matches only variants whose library is not installed "
                          f"({', '.join(matched)}): {get_variant(matched[0]).unavailable_reason()}.")
    if not names:
        raise OptionError(f"--models {pattern!r} matches no variant, so nothing would be measured. Known "
                          f"variants: {', '.join(list_models())}. Way out: give a shell pattern such as "
                          f"'unet3d*' or one of those names (`python -m harness list` shows them), or your "
                          f"own model with --model module:function.")
    return names
