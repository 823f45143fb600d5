"""Deterministic shards of a sweep: which configurations shard ``i`` of ``N`` measures.

Configurations are ordered by a SHA-256 of their key (``BenchSpec.key`` or ``store.row_key``; the two
agree) and dealt out round-robin: every configuration lands in exactly one shard, shard sizes differ by
at most one, and the assignment is the same in every process and on every machine (``hash()`` is salted
per process, so it is not used). Cheap and expensive variants are spread evenly because the hash order
does not follow the sweep's order.
"""
from __future__ import annotations

import hashlib
import json
from typing import Callable, Iterable, TypeVar

from harness.options import OptionError

T = TypeVar("T")


def key_digest(key: tuple) -> str:
    """A stable digest of a configuration key (tuples of text, integers and booleans)."""
    return hashlib.sha256(json.dumps(list(key), separators=(",", ":")).encode()).hexdigest()


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/N"`` -> (i, N), with 0 <= i < N; anything else is an OptionError."""
    try:
        index, count = (int(part) for part in str(text).split("/"))
    except ValueError:
        index = count = None
    if index is None or count < 1 or not 0 <= index < count:
        raise OptionError(f"--shard {text!r} is not a shard: give it as i/N with 0 <= i < N, e.g. --shard 0/2 "
                          f"and --shard 1/2 for the two halves of a sweep. Way out: fix the value, or leave "
                          f"--shard out to measure the whole sweep.")
    return index, count


def assign(keys: Iterable[tuple], count: int) -> dict[tuple, int]:
    """Shard index of every key: keys in hash order, dealt round-robin."""
    ordered = sorted(set(keys), key=key_digest)
    return {key: position % count for position, key in enumerate(ordered)}


def select(items: list[T], index: int, count: int, key: Callable[[T], tuple] = lambda spec: spec.key) -> list[T]:
    """The items of shard ``index`` of ``count``, in their original order."""
    shard_of = assign((key(item) for item in items), count)
    return [item for item in items if shard_of[key(item)] == index]
