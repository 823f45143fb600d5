"""Constructor overrides from text (``--set key=value``) and back, for the CLI and for result rows."""
from __future__ import annotations

from typing import Any, Mapping

import reference_models

BLOCKS = {"Bottleneck": reference_models.Bottleneck, "BasicBlock": reference_models.BasicBlock}


def parse_value(text: str) -> Any:
    """``true``/``false``, an int, a comma list of ints (``3,4,6,3``), a block name, or the text."""
    lowered = text.strip().lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if text in BLOCKS:
        return BLOCKS[text]
    try:
        if "," in text:
            return [int(part) for part in text.split(",") if part.strip()]
        return int(text)
    except ValueError:
        return text


def parse_overrides(items) -> dict[str, Any]:
    overrides = {}
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set takes key=value (e.g. base_c=32, layers=3,4,6,3), not {item!r}")
        overrides[key.strip()] = parse_value(value)
    return overrides


def format_value(value: Any) -> str:
    if isinstance(value, type):
        return value.__name__
    if isinstance(value, (list, tuple)):
        return ",".join(str(v) for v in value)
    return str(value).lower() if isinstance(value, bool) else str(value)


def format_overrides(overrides: Mapping[str, Any]) -> str:
    """Stable text for a set of overrides: ``base_c=32;layers=1,1,1,1`` (empty when none)."""
    return ";".join(f"{key}={format_value(overrides[key])}" for key in sorted(overrides))


def parse_shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.replace("x", ",").split(",") if part.strip())
    except ValueError:
        raise ValueError(f"a shape is integers separated by commas, like 1,1,64,64,64; got {text!r}") from None


def freeze_value(value):
    """A hashable key that tells apart values Python calls equal (True and 1, [1] and (1,))."""
    if isinstance(value, Mapping):
        return ("mapping", tuple(sorted((str(k), freeze_value(v)) for k, v in value.items())))
    if isinstance(value, (list, tuple, set, frozenset)):
        items = tuple(freeze_value(v) for v in value)
        return (type(value).__name__, tuple(sorted(items, key=repr)) if isinstance(value, (set, frozenset)) else items)
    try:
        hash(value)
    except TypeError:
        return (type(value).__qualname__, repr(value))
    return (type(value), value)
