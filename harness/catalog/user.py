"""Your own model in the same tables: ``--model REF`` where REF is ``package.module:function`` or
``path/to/file.py:function``, and the entry-point group ``unet3d_bench.models`` for packages that
register several (each entry point names a function that builds one network).

The function is called with the constructor arguments given by ``--set key=value`` (its defaults
otherwise) and must return a ``torch.nn.Module``. It may carry ``example_input``, a tuple (N, C, *spatial),
to say what the model takes; otherwise the harness probes 3D inputs with 1 to 4 channels, then 2D, on
the ``meta`` device. A reference is turned into a registered variant named after the function
(``module:function``), which the registry, envelope, benchmarks, regression check and reports treat like
any other.
"""
from __future__ import annotations

import importlib
import importlib.util
import inspect
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Callable

from harness.catalog.registry import Family, Variant, get_variant, list_models, register, register_family
from harness.options import OptionError

register_family(Family("user", "user"))

ENTRY_POINT_GROUP = "unet3d_bench.models"
WAY_OUT = ("Way out: give --model package.module:function or path/to/file.py:function, where the function "
           "returns a torch.nn.Module (constructor arguments through --set key=value).")


def _load_module(location: str):
    if location.endswith(".py") or "/" in location:
        path = Path(location).expanduser().resolve()
        if not path.is_file():
            raise OptionError(f"--model {location}: no such file. {WAY_OUT}")
        spec = importlib.util.spec_from_file_location(f"unet3d_bench_user.{path.stem}", path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        try:
            spec.loader.exec_module(module)
        except Exception as error:  # the user's code: any failure is theirs to see, in one line
            raise OptionError(f"--model {location}: importing it failed with {type(error).__name__}: {error}. "
                              f"{WAY_OUT}") from None
        return module
    try:
        return importlib.import_module(location)
    except ImportError as error:
        raise OptionError(f"--model {location}: no such module ({error}). {WAY_OUT}") from None


def resolve(reference: str) -> tuple[str, Callable]:
    """(variant name, builder) for a ``--model`` reference; OptionError with the way out otherwise."""
    location, sep, function = reference.rpartition(":")
    if not sep or not location or not function:
        raise OptionError(f"--model {reference!r} is not of the form module:function or file.py:function. {WAY_OUT}")
    module = _load_module(location)
    builder = getattr(module, function, None)
    if builder is None:
        names = sorted(n for n, v in vars(module).items() if callable(v) and not n.startswith("_"))
        raise OptionError(f"--model {reference}: {location} has no {function!r} (it has: "
                          f"{', '.join(names[:12]) or 'nothing callable'}). {WAY_OUT}")
    if not callable(builder):
        raise OptionError(f"--model {reference}: {function!r} is not a function or class. {WAY_OUT}")
    return f"{Path(location).stem if location.endswith('.py') else location.rsplit('.', 1)[-1]}:{function}", builder


def entry_point_models() -> dict[str, str]:
    """Name -> reference of every model that installed packages register under ENTRY_POINT_GROUP."""
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def constructor_defaults(builder: Callable) -> dict:
    """The builder's keyword defaults, shown by ``harness show`` and used when --set gives none."""
    try:
        parameters = inspect.signature(builder).parameters.values()
    except (TypeError, ValueError):
        return {}
    return {p.name: p.default for p in parameters
            if p.default is not inspect.Parameter.empty and p.kind is not inspect.Parameter.VAR_KEYWORD}


def _probe_example_input(name: str, builder: Callable, defaults: dict) -> tuple[int, ...]:
    """(1, C, *spatial) of the first input that runs on the meta device: 3D before 2D, 1 to 4 channels."""
    import warnings

    import torch

    from harness.catalog.meta_probe import BASE_SIZES, CHANNELS_TRIED, MetaProber

    try:
        with warnings.catch_warnings(), torch.device("meta"):
            warnings.simplefilter("ignore")
            model = builder(**defaults)
    except Exception as error:  # the user's code
        raise OptionError(f"--model {name}: calling it with its defaults failed with {type(error).__name__}: "
                          f"{error}. {WAY_OUT}") from None
    if not isinstance(model, torch.nn.Module):
        raise OptionError(f"--model {name}: it returned {type(model).__name__}, not a torch.nn.Module. {WAY_OUT}")
    channels = defaults.get("in_channels")
    channel_options = (channels,) if isinstance(channels, int) and channels > 0 else CHANNELS_TRIED
    for dims in (3, 2):
        prober = MetaProber(lambda: model, dims, None)
        for c in channel_options:
            for size in BASE_SIZES:
                shape = (1, c) + (size,) * dims
                if prober.run(shape, False)[0] is not None:
                    return shape
    raise OptionError(f"--model {name}: no input ran on the meta device (3D and 2D, 1 to 4 channels, sizes "
                      f"{', '.join(map(str, BASE_SIZES))}), so the harness cannot tell what it takes. Way out: "
                      f"give the function an attribute example_input = (1, C, D, H, W) of an input it runs.")


def register_reference(reference: str) -> str:
    """Register the model a ``--model`` reference (or entry point) names; returns its variant name."""
    name, builder = resolve(reference)
    if name in list_models():
        existing = get_variant(name)
        if existing.builder is builder or existing.source == "user":
            return name
        raise OptionError(f"--model {reference}: the name {name!r} is taken by a registered variant. "
                          f"Way out: rename the function.")
    defaults = constructor_defaults(builder)
    example = getattr(builder, "example_input", None)
    example = tuple(example) if example else _probe_example_input(reference, builder, defaults)
    register(Variant(name, "user", builder, defaults, example, f"your model ({reference})"))
    return name


def register_entry_points() -> list[str]:
    """Register every model installed packages declare under ENTRY_POINT_GROUP."""
    return [register_reference(reference) for reference in entry_point_models().values()]
