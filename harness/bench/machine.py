"""When two measurements are comparable: the machine facts that change the numbers, defined once. Torch-free
(the store and merge use it). Resume, merge and regress differ only in which facts they may ignore."""
from __future__ import annotations

from typing import Mapping

# The hardware and software that decide a timing (harness.bench.environment records them).
MACHINE_FACTS = ("device_name", "cpu", "cpu_count", "threads", "torch", "cuda", "cudnn")
# Set per shard by a launcher, and recorded on every row: a sweep's shards may differ in these.
PER_SHARD_FACTS = ("cpu_count", "threads")


def machine_differences(a: Mapping, b: Mapping, ignore: tuple[str, ...] = ()) -> list[str]:
    """The facts (of MACHINE_FACTS, less ``ignore``) on which two environments differ, as
    "fact: A vs B"; a fact missing on either side is not compared."""
    return [f"{fact}: {a[fact]!r} vs {b[fact]!r}" for fact in MACHINE_FACTS
            if fact not in ignore and fact in a and fact in b and str(a[fact]) != str(b[fact])]


def comparable_machines(a: Mapping, b: Mapping, ignore: tuple[str, ...] = ()) -> bool:
    return not machine_differences(a, b, ignore)


def machine_of(env: Mapping, ignore: tuple[str, ...] = ()) -> tuple:
    """The facts as a tuple (a key to group runs by machine)."""
    return tuple(str(env.get(fact, "")) for fact in MACHINE_FACTS if fact not in ignore)
