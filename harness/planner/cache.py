"""The planner's disk cache of simulated traces (``$UNET3D_BENCH_CACHE``, default ``~/.cache/unet3d-bench``):
one JSON file per ScaledTrace (reading it runs no code, unlike pickle), keyed by torch's version, the memory room's
and the workload's code, and the model's source (``fingerprint``). A torn or stale file is simulated again."""
from __future__ import annotations

import hashlib
import inspect
import json
import os
import sys
from pathlib import Path

CACHE_VERSION = 2  # 2: JSON (1 was pickle)


def fingerprint(model) -> str:
    """What a cached trace depends on besides the configuration: torch's version, the memory model's and the
    workload's code, and the model's: every source file of the package its builder lives in (or the builder's
    own file), and the version of the library a peer is built by."""
    import importlib.metadata

    import torch

    import harness.memory
    from harness.bench import workload
    from harness.catalog.registry import PEER_PACKAGES

    files = sorted(p for root in harness.memory.__path__ for p in Path(root).glob("*.py"))
    files += [Path(__file__).with_name("scaled.py"), Path(inspect.getsourcefile(workload))]
    builder = model.variant.builder
    package = sys.modules.get(getattr(builder, "__module__", "").split(".")[0])
    if package is not None and getattr(package, "__path__", None):
        files += sorted(p for root in package.__path__ for p in Path(root).rglob("*.py"))
    else:
        try:
            files.append(Path(inspect.getsourcefile(builder)))
        except (TypeError, OSError):
            pass
    digest = hashlib.sha256(f"{CACHE_VERSION}|{torch.__version__}".encode())
    for path in files:
        try:
            digest.update(path.read_bytes())
        except OSError:
            digest.update(str(path).encode())
    library = model.variant.record.library
    if library:
        name = PEER_PACKAGES[library].replace("_", "-")
        try:
            digest.update(importlib.metadata.version(name).encode())
        except importlib.metadata.PackageNotFoundError:
            digest.update(name.encode())
    return digest.hexdigest()[:16]


def cache_dir() -> Path:
    return Path(os.environ.get("UNET3D_BENCH_CACHE") or Path.home() / ".cache" / "unet3d-bench") / "memory"


def path_for(model, key: tuple) -> Path:
    return cache_dir() / f"{fingerprint(model)}-{hashlib.sha256(repr(key).encode()).hexdigest()[:20]}.json"


def load(path: Path):
    """The cached ScaledTrace at ``path``, or None (missing, torn or stale)."""
    from harness.planner.scaled import ScaledTrace

    if not path.is_file():
        return None
    try:
        return ScaledTrace.from_json(json.loads(path.read_text()))
    except (ValueError, KeyError, TypeError, OSError):
        return None


def store(path: Path, scaled) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(scaled.to_json()))
        os.replace(tmp, path)
    except OSError:
        pass
