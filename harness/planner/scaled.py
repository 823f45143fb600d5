"""A step's trace at any batch and patch size from two simulations (``ScaledTrace``): the planner's search
estimates peaks from it in microseconds, and the allocator replay (harness.memory) confirms each answer."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

from harness.bench.spec import BenchSpec
from harness.memory.allocator import MIN_BLOCK
from harness.memory.blas import workspace_bytes
from harness.memory.events import ALLOC, BLAS, FREE, MARK, MB, RETYPE, WORKSPACE
from harness.memory.tracing import Trace, _spatial_volume, trace
from harness.memory.workspace import WORKSPACE_FACTORS

# Size fields of each event kind (index in the event tuple) that scale with the configuration.
_SIZE_FIELDS = {ALLOC: (2,), WORKSPACE: (1, 3)}


@dataclass(frozen=True)
class ScaledTrace:
    """The trace of a step at any batch and spatial size, from two traces of it at sizes that differ in batch
    by a factor ``fb`` and in volume by a factor ``fv`` (not 1, ``fb`` or ``1/fb``): every recorded size is
    one tensor's, so it is constant, per sample, per voxel, or per sample and voxel, and its exact ratio
    between the two traces says which. Exact where every such tensor keeps its class, as in networks whose
    stages divide the input evenly (the planner's patch steps); ``suites/test_memory_model.py`` holds it
    equal to a direct trace."""

    base: Trace
    classes: tuple  # per event: ((field, batch exponent, volume exponent), ...)

    @classmethod
    def fit(cls, first: Trace, second: Trace) -> "ScaledTrace":
        a, b = first.events, second.events
        if len(a) != len(b):
            raise ValueError(f"the two traces differ in length ({len(a)} and {len(b)} events)")
        fb = Fraction(second.batch, first.batch)
        fv = Fraction(_spatial_volume(second.spatial), _spatial_volume(first.spatial))
        factors = {(0, 0): Fraction(1), (1, 0): fb, (0, 1): fv, (1, 1): fb * fv}
        if len(set(factors.values())) < 4:
            raise ValueError(f"the two traces' sizes do not tell the classes apart (batch x{fb}, volume x{fv})")
        classes = []
        for x, y in zip(a, b):
            if x[0] != y[0] or (x[0] in (ALLOC, FREE, RETYPE) and x[1] != y[1]):
                raise ValueError("the two traces differ in structure")
            fields = []
            for index in _SIZE_FIELDS.get(x[0], ()):
                if x[index] == y[index]:
                    fields.append((index, 0, 0))
                    continue
                found = [k for k, f in factors.items() if x[index] and Fraction(y[index], x[index]) == f]
                if not found:
                    raise ValueError(f"a size ({x[index]} and {y[index]} bytes) scales with neither batch nor volume")
                fields.append((index, *found[0]))
            classes.append(tuple(fields))
        return cls(first, tuple(classes))

    def estimate(self, batch: int, spatial, workspace: dict | None = None, blas: dict | None = None) -> float:
        """The predicted peak in MiB at ``batch`` and ``spatial``, fast (vectorized, for searches): live storages
        rounded to 512 bytes, the cuBLAS workspaces taken so far (``blas``: sizes, default ``workspace_bytes()``)
        and the workspace of the convolution at hand, without the allocator's block
        bookkeeping, so at most the exact ``prediction(self.at(...))`` (which adds unsplit remainders)."""
        import numpy as np

        table = self._table()
        fb = batch / self.base.batch
        fv = _spatial_volume(spatial) / _spatial_volume(self.base.spatial)
        factors = {"activation": 0.0, "filter": 0.0, **(WORKSPACE_FACTORS if workspace is None else workspace)}
        sizes = table["base"] * np.where(table["per_sample"], fb, 1.0) * np.where(table["per_voxel"], fv, 1.0)
        rounded = np.where(sizes > 0, np.ceil(sizes / MIN_BLOCK) * MIN_BLOCK, 0.0)
        live = np.cumsum(table["sign"] * rounded[table["slot"]])
        sizes_blas = workspace_bytes() if blas is None else blas
        for kind in ("cublas", "cublaslt"):  # held from its first matmul on
            size = sizes_blas.get(kind, 0)
            live = live + np.cumsum(table[kind]) * (np.ceil(size / MIN_BLOCK) * MIN_BLOCK if size else 0.0)
        transient = (factors["activation"] * rounded[table["operand"]] * (table["operand"] >= 0)
                     + factors["filter"] * rounded[table["weight"]] * (table["weight"] >= 0))
        transient = np.where(transient > 0, np.ceil(transient / MIN_BLOCK) * MIN_BLOCK, 0.0)
        return float((live + transient)[table["start"]:].max()) / MB

    def _table(self) -> dict:
        """Arrays for ``estimate``: a slot per recorded size (allocations, workspace operands and filters),
        and per event the slot it adds or removes (``sign``) and the workspace slots it takes for a moment."""
        cached = self.__dict__.get("_arrays")
        if cached is not None:
            return cached
        import numpy as np

        base, per_sample, per_voxel = [], [], []
        slot_of_storage: dict[int, int] = {}

        def new_slot(size, i, j):
            base.append(float(size))
            per_sample.append(bool(i))
            per_voxel.append(bool(j))
            return len(base) - 1

        sign, slot, operand, weight = [], [], [], []
        first = {"cublas": [], "cublaslt": []}  # 1 where a thread takes that workspace
        taken: set = set()
        start = 0
        for n, (event, fields) in enumerate(zip(self.base.events, self.classes)):
            classes = {index: (i, j) for index, i, j in fields}
            s, k, o, w = 0.0, 0, -1, -1
            if event[0] == ALLOC:
                k = slot_of_storage[event[1]] = new_slot(event[2], *classes[2])
                s = 1.0
            elif event[0] == FREE and event[1] in slot_of_storage:
                k, s = slot_of_storage.pop(event[1]), -1.0
            elif event[0] == WORKSPACE:
                o, w = new_slot(event[1], *classes[1]), new_slot(event[3], *classes[3])
            elif event[0] == BLAS:
                wanted = {(event[1], "cublas")} | ({(event[1], "cublaslt")} if event[2] else set())
                new = wanted - taken
                taken |= new
                for kind in first:
                    first[kind].append(float((event[1], kind) in new))
            elif event[0] == MARK:
                start = n
            for kind in first:
                if len(first[kind]) == n:
                    first[kind].append(0.0)
            sign.append(s)
            slot.append(k)
            operand.append(o)
            weight.append(w)
        if not base:
            new_slot(0, 0, 0)
        arrays = {"base": np.array(base), "per_sample": np.array(per_sample), "per_voxel": np.array(per_voxel),
                  "sign": np.array(sign), "slot": np.array(slot), "operand": np.array(operand),
                  "weight": np.array(weight), "start": start,
                  "cublas": np.array(first["cublas"]), "cublaslt": np.array(first["cublaslt"])}
        object.__setattr__(self, "_arrays", arrays)
        return arrays

    def at(self, batch: int, spatial) -> tuple:
        fb = batch / self.base.batch
        fv = _spatial_volume(spatial) / _spatial_volume(self.base.spatial)
        events = []
        for event, fields in zip(self.base.events, self.classes):
            if any(i or j for _, i, j in fields):
                event = list(event)
                for index, i, j in fields:
                    event[index] = int(round(event[index] * fb ** i * fv ** j))
                event = tuple(event)
            events.append(event)
        return tuple(events)

    def to_json(self) -> dict:
        """A plain-data form for the planner's disk cache (JSON: reading it runs no code)."""
        return {"events": [list(e) for e in self.base.events], "batch": self.base.batch,
                "spatial": list(self.base.spatial), "classes": [[list(f) for f in c] for c in self.classes]}

    @classmethod
    def from_json(cls, data: dict) -> "ScaledTrace":
        events = tuple(_event(e) for e in data["events"])
        classes = tuple(tuple(tuple(int(x) for x in f) for f in c) for c in data["classes"])
        return cls(Trace(events, int(data["batch"]), tuple(int(s) for s in data["spatial"])), classes)


def _event(item: list) -> tuple:
    """An event back from JSON; the tracker's categories (``_MemRefType``) come back as the enum."""
    from torch.distributed._tools.mem_tracker import _MemRefType

    kind = item[0]
    if kind in (ALLOC, RETYPE):
        category = item[-1]
        values = {m.value: m for m in _MemRefType}
        item = [*item[:-1], values.get(category, category)]
    return tuple(item)


@lru_cache(maxsize=64)
def scaled_trace(model: str, overrides: str, channels: int, mode: str, precision: str, channels_last: bool,
                 first: tuple, second: tuple) -> ScaledTrace:
    """A ``ScaledTrace`` from traces at ``first`` and ``second`` ((batch, spatial) each)."""
    def at(point):
        batch, spatial = point
        return trace(BenchSpec(model, (channels, *spatial), batch, mode, device="cuda", precision=precision,
                               channels_last=channels_last, overrides=overrides))
    return ScaledTrace.fit(at(first), at(second))
