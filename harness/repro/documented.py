"""What the installed torch documents as raising under ``torch.use_deterministic_algorithms(True)``.

The list is read from ``torch.use_deterministic_algorithms.__doc__`` (never typed in here): the bullet list
after "will throw a RuntimeError when mode=True", each entry a subject (``:class:`torch.nn.AvgPool3d``` or
``:func:`torch.histc```), a condition ("when attempting to differentiate a CUDA tensor") and, for
``interpolate``, a list of modes. Each entry is then mapped to the aten operators a dispatch trace shows:

- a function the docstring names by its aten name (``torch.histc``, ``torch.Tensor.put_``) maps to itself;
- a module, or a function whose aten operator has another name, maps through ``MODULE_OPS`` below: a short,
  explicit table, held against the docstring by suites/test_repro.py, so that a torch whose list gains, loses
  or renames an entry fails that test instead of silently predicting from a stale table;
- ``interpolate``'s modes map to ``upsample_<mode><n>d_backward`` (``INTERPOLATE_DIMS``).

A changed docstring format raises ``DocstringFormatError`` (loudly): no list is worse than a wrong one.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

RAISING_HEADER = re.compile(r"will\s+throw\s+a\s+:class:`RuntimeError`\s+when\s+``mode=True``:", re.S)
SWITCHING_HEADER = re.compile(r"will\s+act\s+deterministically\s+when\s+``mode=True``:", re.S)
ENTRY = re.compile(r"^\s*\*\s+:(?P<role>class|func|meth|attr):`(?P<subject>[^`]+)`(?P<rest>.*)$")
SUB_ITEM = re.compile(r"^\s*-\s+``(?P<item>[^`]+)``\s*$")


class DocstringFormatError(RuntimeError):
    """torch.use_deterministic_algorithms' docstring no longer has the format this parser reads."""


@dataclass(frozen=True)
class DocEntry:
    """One bullet of the docstring: what it names, under which condition, with its sub-items (modes)."""

    role: str  # class | func
    subject: str  # e.g. torch.nn.AvgPool3d
    condition: str  # the rest of the bullet, e.g. "when attempting to differentiate a CUDA tensor"
    items: tuple[str, ...] = ()  # e.g. interpolate's modes

    @property
    def text(self) -> str:
        items = f" ({', '.join(self.items)})" if self.items else ""
        return f"{self.subject} {self.condition}{items}".strip()

    @property
    def on_cuda(self) -> bool:
        """Whether the entry applies on CUDA: it names CUDA, or names no device (then every device)."""
        return "CUDA" in self.condition or "CPU" not in self.condition

    @property
    def backward_only(self) -> bool:
        return "differentiate" in self.condition


Predicate = Callable[[tuple, dict], bool]


@dataclass(frozen=True)
class DocumentedOp:
    """An aten operator (overload packet name) that a documented entry makes raise on CUDA."""

    aten: str
    entry: DocEntry
    when: Predicate | None = field(default=None, compare=False)  # further condition on the call's arguments
    note: str = ""


def _kw(args: tuple, kwargs: dict, index: int, name: str, default=None):
    if name in kwargs:
        return kwargs[name]
    return args[index] if len(args) > index else default


# --- the mapping table: docstring subjects that are not aten names ------------------------------------------
# subject -> aten operators. Every key must appear in the installed torch's raising list (tested), and every
# raising entry must be mapped here, by its own name (AUTO) or as not applicable (NOT_APPLICABLE) (tested).
MODULE_OPS: dict[str, tuple[str, ...]] = {
    "torch.nn.AvgPool3d": ("avg_pool3d_backward",),
    "torch.nn.AdaptiveAvgPool2d": ("_adaptive_avg_pool2d_backward",),
    "torch.nn.AdaptiveAvgPool3d": ("_adaptive_avg_pool3d_backward",),
    "torch.nn.AdaptiveMaxPool2d": ("adaptive_max_pool2d_backward",),
    "torch.nn.FractionalMaxPool2d": ("fractional_max_pool2d_backward",),
    "torch.nn.FractionalMaxPool3d": ("fractional_max_pool3d_backward",),
    "torch.nn.MaxUnpool1d": ("max_unpool2d",),  # F.max_unpool1d runs max_unpool2d on an unsqueezed input
    "torch.nn.MaxUnpool2d": ("max_unpool2d",),
    "torch.nn.MaxUnpool3d": ("max_unpool3d",),
    "torch.nn.ReflectionPad1d": ("reflection_pad1d_backward",),
    "torch.nn.ReflectionPad2d": ("reflection_pad2d_backward",),
    "torch.nn.ReflectionPad3d": ("reflection_pad3d_backward",),
    # The docstring says NLLLoss; the CUDA kernel that alerts is the spatial (2d) one with a reduction
    # (aten/src/ATen/native/cuda/NLLLoss2d.cu; cross-entropy over (N, C, D, H, W) runs it too).
    "torch.nn.NLLLoss": ("nll_loss2d_forward",),
    "torch.nn.CTCLoss": ("_ctc_loss_backward",),
    "torch.nn.EmbeddingBag": ("_embedding_bag_dense_backward", "_embedding_bag_backward"),
    "torch.nn.functional.grid_sample": ("grid_sampler_2d_backward", "grid_sampler_3d_backward"),
    "torch.nn.functional.interpolate": (),  # by mode: INTERPOLATE_DIMS
}
INTERPOLATE_DIMS = {"linear": 1, "bilinear": 2, "bicubic": 2, "trilinear": 3}  # mode -> upsample_<mode><n>d
# Entries that cannot occur in the float training steps this harness runs.
NOT_APPLICABLE = {"torch.Tensor.resize_": "quantized tensors only"}
# Conditions on a call's arguments, for entries whose condition is on the arguments rather than the device.
WHEN: dict[str, tuple[Predicate, str]] = {
    "torch.nn.NLLLoss": (lambda a, k: _kw(a, k, 3, "reduction", 1) != 0, "with a reduction (mean or sum)"),
    "torch.cumsum": (lambda a, k: bool(a) and (a[0].dtype.is_floating_point or a[0].dtype.is_complex),
                     "floating point or complex"),
    "torch.bincount": (lambda a, k: _kw(a, k, 1, "weights") is not None, "weights given"),
    "torch.Tensor.scatter_reduce": (lambda a, k: _kw(a, k, 4, "reduce") == "prod", "reduce='prod'"),
    "torch.median": (lambda a, k: len(a) > 1 or "dim" in k, "with indices (a dim given)"),
}


def docstring() -> str:
    import torch

    return torch.use_deterministic_algorithms.__doc__ or ""


def _section(text: str, header: re.Pattern) -> list[str]:
    found = header.search(text)
    if not found:
        raise DocstringFormatError(f"torch.use_deterministic_algorithms' docstring has no line matching "
                                   f"{header.pattern!r}: the format changed, so the list of operators that raise "
                                   f"under deterministic mode cannot be read (update harness/repro/documented.py).")
    lines = text[found.end():].splitlines()[1:]
    body = []
    for line in lines:
        if body and line.strip() and not line.startswith(" " * 8):  # back at the paragraph's indentation
            break
        body.append(line)
    return body


def parse_entries(text: str, header: re.Pattern = RAISING_HEADER) -> list[DocEntry]:
    """The bullets of one section of the docstring, continuation lines joined, sub-items collected."""
    entries: list[list] = []
    for line in _section(text, header):
        entry, sub = ENTRY.match(line), SUB_ITEM.match(line)
        if entry:
            entries.append([entry["role"], entry["subject"].strip(), entry["rest"].strip(), []])
        elif sub and entries:
            entries[-1][3].append(sub["item"])
        elif line.strip() and entries:
            entries[-1][2] += " " + line.strip()
    if not entries:
        raise DocstringFormatError(f"the section {header.pattern!r} of torch.use_deterministic_algorithms' docstring "
                                   f"has no `* :class:` or `* :func:` bullets: the format changed (update "
                                   f"harness/repro/documented.py).")
    return [DocEntry(role, subject, re.sub(r"\s+", " ", condition).rstrip(":").strip(), tuple(items))
            for role, subject, condition, items in entries]


def ops_of(entry: DocEntry) -> tuple[str, ...]:
    """The aten operators (overload packet names) of one raising entry; () when not applicable."""
    if entry.subject in NOT_APPLICABLE:
        return ()
    if entry.subject == "torch.nn.functional.interpolate":
        unknown = [m for m in entry.items if m not in INTERPOLATE_DIMS]
        if unknown or not entry.items:
            raise DocstringFormatError(f"interpolate's modes in the docstring ({', '.join(entry.items) or 'none'}) "
                                       f"are not those INTERPOLATE_DIMS maps ({', '.join(INTERPOLATE_DIMS)}).")
        return tuple(f"upsample_{mode}{INTERPOLATE_DIMS[mode]}d_backward" for mode in entry.items)
    if entry.subject in MODULE_OPS:
        return MODULE_OPS[entry.subject]
    return (entry.subject.rsplit(".", 1)[-1],)  # torch.histc -> histc, torch.Tensor.put_ -> put_


def unmapped(entries: list[DocEntry]) -> list[DocEntry]:
    """Entries named by a module (or a functional) that the table does not map: a torch upgrade added them."""
    return [e for e in entries if e.role == "class" and e.subject not in MODULE_OPS and e.subject not in NOT_APPLICABLE]


def stale(entries: list[DocEntry]) -> list[str]:
    """Table keys that the installed torch's list no longer names."""
    named = {e.subject for e in entries}
    return sorted(set(MODULE_OPS) - named) + sorted(set(NOT_APPLICABLE) - named) + sorted(set(WHEN) - named)


def raising_on_cuda(text: str | None = None) -> list[DocumentedOp]:
    """Every aten operator documented (by the installed torch) as raising on CUDA under deterministic mode."""
    entries = parse_entries(docstring() if text is None else text)
    missing = unmapped(entries)
    if missing:
        raise DocstringFormatError(f"torch documents {', '.join(e.subject for e in missing)} as raising under "
                                   f"deterministic mode, and harness/repro/documented.py's MODULE_OPS does not map "
                                   f"it to aten operators: add it there.")
    result = []
    for entry in entries:
        if not entry.on_cuda:
            continue
        when, note = WHEN.get(entry.subject, (None, ""))
        for aten in ops_of(entry):
            result.append(DocumentedOp(aten, entry, when, note))
    return result


def switching_entries(text: str | None = None) -> list[DocEntry]:
    """The entries documented as turning deterministic (slower, not raising): for the record and the docs."""
    return parse_entries(docstring() if text is None else text, SWITCHING_HEADER)
