"""The faithfulness cases and their fingerprints: one place for the recorder and the tests.

``suites/golden/faithfulness.json`` holds fingerprints recorded FROM RUNNING THE ARTICLE'S CODE (never
from our models) by ``python suites/record_fingerprints.py``; ``test_reference_faithful`` holds our
models against them wherever the suite runs, and against the article's live code where it is present.

What a fingerprint holds, and how it is compared (``compare``):
- exact: state_dict keys, shapes and dtypes in order, module names, work counts, stage-print bytes,
  failure types and messages, integer buffers (``num_batches_tracked``);
- seeded initial weights: sha256 of each tensor's raw bytes (RNG output: bit-exact under the torch
  that recorded them); under another torch, float64 sum and sum of squares within ``RTOL``;
- outputs, gradients and running stats (kernels and threads move the last bits): float64 sum, sum of
  absolute values, sum of squares and a few evenly spaced values, within ``RTOL``; sums and values
  that may cancel to ~0 get an absolute tolerance scaled by the tensor's own magnitude.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
from functools import cached_property
from pathlib import Path

import torch

import article_oracle
from harness.counting import count_work

GOLDEN_PATH = Path(__file__).resolve().parent / "golden" / "faithfulness.json"
RECORD_COMMAND = "python suites/record_fingerprints.py"
RTOL = 1e-4
DIGITS = 8           # significant digits kept of each float (RTOL needs 4)
OUTPUT_SAMPLES = 16  # evenly spaced values kept of each output
GRAD_SAMPLES = 2     # ... of each gradient and running stat

BOTTLENECK_50 = [3, 4, 6, 3]
# (id, article section, class name, constructor kwargs (block given by name), input for output checks)
CASES = [
    ("unet2d", "unet2d", "UNet", dict(bilinear=True), (2, 1, 32, 48)),
    ("unet2d-transposed", "unet2d", "UNet", dict(bilinear=False, base_c=8), (2, 1, 33, 40)),
    ("unet3d", "unet3d", "UNet_3d", dict(bilinear=False), (2, 1, 16, 16, 16)),
    ("unet3d-trilinear", "unet3d", "UNet_3d", dict(bilinear=True, base_c=8), (2, 1, 17, 33, 17)),
    ("resnet50-3d", "resnet3d", "ResNet_3d",
     dict(block="Bottleneck", layers=BOTTLENECK_50, num_classes=3), (2, 1, 16, 16, 16)),
    ("resnet50-3d-A", "resnet3d", "ResNet_3d",
     dict(block="Bottleneck", layers=BOTTLENECK_50, num_classes=3, shortcut_type="A"), (2, 1, 16, 16, 16)),
    ("resnet18-3d-A-notop", "resnet3d", "ResNet_3d",
     dict(block="BasicBlock", layers=[2, 2, 2, 2], shortcut_type="A", include_top=False), (2, 1, 16, 16, 16)),
    ("unet3d-resnet50", "encoder", "UNet_3d_resnet_encoder",
     dict(block="Bottleneck", layers=BOTTLENECK_50, bilinear=False), (2, 1, 16, 16, 16)),
    ("unet3d-resnet50-A-in3", "encoder", "UNet_3d_resnet_encoder",
     dict(block="Bottleneck", layers=BOTTLENECK_50, bilinear=False, shortcut_type="A", in_channels=3),
     (2, 3, 16, 16, 32)),
    ("unet3d-resnet101", "encoder", "UNet_3d_resnet_encoder",
     dict(block="Bottleneck", layers=[3, 4, 23, 3], bilinear=False), (2, 1, 16, 16, 16)),
    ("unet3d-resnet152", "encoder", "UNet_3d_resnet_encoder",
     dict(block="Bottleneck", layers=[3, 8, 36, 3], bilinear=False), (2, 1, 16, 16, 16)),
]

# (id, class name, article section, kwargs): each prints five stage lines for STAGE_PRINT_INPUT.
STAGE_PRINT_CASES = [
    ("unet3d-transposed", "UNet_3d", "unet3d", dict(bilinear=False, base_c=4)),
    ("unet3d-trilinear", "UNet_3d", "unet3d", dict(bilinear=True, base_c=4)),
    ("resnet18-3d", "ResNet_3d", "resnet3d", dict(block="BasicBlock", layers=[1, 1, 1, 1])),
]
STAGE_PRINT_INPUT = (1, 1, 16, 32, 48)

# (id, article section, class name, kwargs, input shape): the article's model fails on it in eval mode.
FAILURES = [
    ("basicblock", "encoder", "UNet_3d_resnet_encoder", dict(block="BasicBlock", layers=[2, 2, 2, 2], bilinear=False),
     (1, 1, 16, 16, 16)),
    ("bilinear", "encoder", "UNet_3d_resnet_encoder", dict(block="Bottleneck", layers=[1, 1, 1, 1], bilinear=True),
     (1, 1, 16, 16, 16)),
    ("base_c", "encoder", "UNet_3d_resnet_encoder", dict(block="Bottleneck", layers=[1, 1, 1, 1], bilinear=False,
                                                         base_c=32), (1, 1, 16, 16, 16)),
    ("small", "unet3d", "UNet_3d", dict(base_c=2), (1, 1, 8, 16, 16)),     # too small to pool four times
    ("parity", "unet3d", "UNet_3d", dict(base_c=2), (1, 1, 16, 16, 17)),   # mixed parity: the padding quirk
    ("channels", "unet3d", "UNet_3d", dict(base_c=2), (1, 2, 16, 16, 16)),  # wrong channel count
    ("resnet-c3", "resnet3d", "ResNet_3d", dict(block="BasicBlock", layers=[1, 1, 1, 1]), (1, 3, 16, 16, 16)),
]
# Train mode, batch 1: x5 is 1x1x1, and batch norm needs more than one value per channel.
TRAIN_FAILURE = ("train-batch1", "unet3d", "UNet_3d", dict(base_c=2), (1, 1, 16, 16, 16))


def build(namespace: dict, class_name: str, kwargs: dict, seed: int = 0) -> torch.nn.Module:
    """``namespace[class_name](**kwargs)`` under ``torch.manual_seed(seed)``, the block looked up by name."""
    kwargs = dict(kwargs)
    if "block" in kwargs:  # the article's encoder section has no BasicBlock: section 2 supplies it
        blocks = namespace if kwargs["block"] in namespace else article_oracle.namespace("resnet3d")
        kwargs["block"] = blocks[kwargs["block"]]
    torch.manual_seed(seed)
    return namespace[class_name](**kwargs)


def silently(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def seeded_input(shape, seed: int) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


class Run:
    """The fixed procedure every check applies to one freshly built model (ours or the article's).

    Seeded inputs: 1 for the eval pass, 2 for the train step (loss: mean square of the output,
    backward, no optimizer step), 3 for the work count. The eval pass comes before the train step
    (which moves the running stats) whichever is asked for first.
    """

    def __init__(self, model: torch.nn.Module, input_shape: tuple):
        self.model, self.input_shape = model, tuple(input_shape)
        # Parameters share storage (no step is taken); the buffers, which the train step moves, are copied.
        self.buffer_names = {name for name, _ in model.named_buffers()}
        self.initial_state = {k: v.clone() if k in self.buffer_names else v for k, v in model.state_dict().items()}
        self.module_names = [name for name, _ in model.named_modules()]

    @cached_property
    def eval_output(self) -> torch.Tensor:
        self.model.eval()
        with torch.no_grad():
            return silently(self.model, seeded_input(self.input_shape, 1))

    @cached_property
    def train_step(self) -> tuple[torch.Tensor, dict, dict]:
        """(output, {parameter: grad or None}, {buffer: value after the step})."""
        self.eval_output  # noqa: B018 - first, on the initial running stats
        self.model.train()
        out = silently(self.model, seeded_input(self.input_shape, 2))
        out.square().mean().backward()
        grads = {name: p.grad for name, p in self.model.named_parameters()}
        buffers = {name: b.detach().clone() for name, b in self.model.named_buffers()}
        return out.detach(), grads, buffers

    @cached_property
    def work(self):
        return silently(count_work, self.model, seeded_input((1, *self.input_shape[1:]), 3))


# --- fingerprints --------------------------------------------------------------------------------

def _round(value: float) -> float:
    return float(f"{value:.{DIGITS}g}")


def tensor_stats(t: torch.Tensor, samples: int) -> list:
    """[numel, sum, sum of |x|, sum of x^2, *evenly spaced values] in float64; ["exact", *values] for integers."""
    t = t.detach()
    if not t.is_floating_point():
        return ["exact", *(int(v) for v in t.reshape(-1).tolist())]
    flat = t.reshape(-1).double()
    stats = [flat.sum().item(), flat.abs().sum().item(), flat.square().sum().item()]
    if flat.numel():
        last, k = flat.numel() - 1, min(samples, flat.numel())
        stats += flat[torch.tensor([i * last // max(k - 1, 1) for i in range(k)], dtype=torch.long)].tolist()
    return [flat.numel(), *(_round(v) for v in stats)]


def sha256(t: torch.Tensor) -> str:
    return hashlib.sha256(t.detach().contiguous().cpu().numpy().tobytes()).hexdigest()[:16]


def structure_fingerprint(run: Run) -> dict:
    state = run.initial_state
    return {
        # [key, shape, dtype, "p"arameter or "b"uffer]: the train part lists gradients and buffers in this order
        "state_dict": [[key, list(t.shape), str(t.dtype).removeprefix("torch."), "b" if key in run.buffer_names else "p"]
                       for key, t in state.items()],
        "modules": run.module_names,
        "init_sha256": [sha256(t) for t in state.values()],
        "init_stats": [tensor_stats(t, 0) for t in state.values()],
    }


def eval_fingerprint(run: Run) -> dict:
    return {"output": [list(run.eval_output.shape), tensor_stats(run.eval_output, OUTPUT_SAMPLES)]}


def train_fingerprint(run: Run) -> dict:
    out, grads, buffers = run.train_step
    return {
        "output": [list(out.shape), tensor_stats(out, OUTPUT_SAMPLES)],
        # In named_parameters and named_buffers order (see the names in the structure part); None: no gradient.
        "grads": [None if g is None else tensor_stats(g, GRAD_SAMPLES) for g in grads.values()],
        "buffers": [tensor_stats(b, GRAD_SAMPLES) for b in buffers.values()],
    }


def work_fingerprint(run: Run) -> dict:
    work = run.work
    return {"params_total": work.params_total, "params_used": work.params_used, "macs": work.macs,
            "macs_by_operator": dict(work.macs_by_operator), "uncalled_modules": list(work.uncalled_modules),
            "unsupported_ops": sum(work.unsupported_ops.values())}


PARTS = {"structure": structure_fingerprint, "eval": eval_fingerprint, "train": train_fingerprint,
         "work": work_fingerprint}


def case_spec(case) -> dict:
    """How a case is defined, stored beside its fingerprint so a changed case cannot pass on stale data."""
    _, section, class_name, kwargs, input_shape = case
    return {"section": section, "class": class_name, "kwargs": kwargs, "input_shape": list(input_shape)}


def stage_prints(model: torch.nn.Module, *, ours: bool) -> str:
    """What one eval forward of STAGE_PRINT_INPUT prints (ours with the stage-print switch on)."""
    out = io.StringIO()
    switch = contextlib.nullcontext()
    if ours:
        import reference_models

        switch = reference_models.stage_prints()
    with contextlib.redirect_stdout(out), switch:
        model.eval()(torch.randn(STAGE_PRINT_INPUT))
    return out.getvalue()


def failure(model: torch.nn.Module, input_shape, *, train: bool = False) -> list[str] | None:
    """[exception type's qualified name, message] of one forward pass, or None when it does not fail."""
    model.train(train)
    try:
        silently(model, torch.randn(input_shape))
    except Exception as error:  # noqa: BLE001 - the failure is what is recorded
        return [type(error).__qualname__, str(error)]
    return None


def load() -> dict:
    return json.loads(GOLDEN_PATH.read_text(encoding="utf-8"))


# --- comparison ----------------------------------------------------------------------------------

class Mismatches(list):
    """What differs between a recorded fingerprint and ours, for one readable assertion."""

    def __str__(self):
        shown = "\n  ".join(self[:20])
        more = f"\n  ... and {len(self) - 20} more" if len(self) > 20 else ""
        return f"{len(self)} difference(s) from the article's fingerprints:\n  {shown}{more}"


def _deviations(expected: list, actual: list) -> list[tuple[str, float]]:
    """(stat, |difference| over the stat's scale) for two float tensor_stats of the same tensor."""
    numel, _, abs_sum, sq_sum, *values = expected
    rms = math.sqrt(sq_sum / max(numel, 1))
    scales = [abs_sum, abs_sum, sq_sum] + [rms] * len(values)
    names = ["sum", "abs sum", "sum of squares"] + [f"value {i}" for i in range(len(values))]
    return [(name, abs(want - got) / scale if scale else float(want != got))
            for name, want, got, scale in zip(names, expected[1:], actual[1:], scales)]


def stats_differ(expected: list, actual: list, rtol: float = RTOL) -> str | None:
    """None when ``actual`` matches ``expected`` (both from tensor_stats) within ``rtol``, else why not.

    Each stat is compared relative to its scale: a sum and the sum of |x| to the sum of |x| (a sum
    may cancel to ~0), the sum of squares to itself, a value to the tensor's root mean square.
    """
    if len(expected) != len(actual) or expected[0] != actual[0]:
        return f"{actual[0]} ({len(actual)} stats) != recorded {expected[0]} ({len(expected)} stats)"
    if expected[0] == "exact":
        return None if expected == actual else f"{actual[1:]} != recorded {expected[1:]}"
    for (name, deviation), want, got in zip(_deviations(expected, actual), expected[1:], actual[1:]):
        if deviation > rtol:
            return f"{name} {got!r} != recorded {want!r} (off by {deviation:.2g} of its scale, tolerance {rtol:.2g})"
    return None


def _tensor_entries(part: str, fingerprint: dict):
    """(path, tensor_stats or None) of every tensor in an eval or train part; path: "train/grads/INDEX"."""
    yield f"{part}/output", fingerprint["output"][1]
    for field in ("grads", "buffers"):
        for index, stats in enumerate(fingerprint.get(field, [])):
            yield f"{part}/{field}/{index}", stats


def _names(structure: dict) -> dict[str, list[str]]:
    """The parameter and buffer names of a structure part, in the order of the train part's lists."""
    return {field: [key for key, _, _, kind in structure["state_dict"] if kind == flag]
            for field, flag in (("grads", "p"), ("buffers", "b"))}


def looseness(part: str, first: dict, second: dict) -> dict[str, float]:
    """Per tensor, the tolerance that two recordings of the same code (threads differ) call for.

    Where batch norm in train mode sees two values per channel (batch 2 at 1x1x1) the gradients are
    ill-conditioned: a last-bit difference in a kernel moves them by up to 100%. Tensors whose two
    recordings differ by more than RTOL / 10 get ten times their observed difference as tolerance.
    """
    loose = {}
    for (path, a), (_, b) in zip(_tensor_entries(part, first), _tensor_entries(part, second)):
        if a is None or a[0] == "exact":
            continue
        worst = max(deviation for _, deviation in _deviations(a, b))
        if 10 * worst > RTOL:
            loose[path] = float(f"{10 * worst:.2g}")
    return loose


def _first_difference(field: str, want: list, got: list) -> str:
    first = next((i for i, (w, g) in enumerate(zip(want, got)) if w != g), min(len(want), len(got)))
    return (f"{field}: {len(got)} entries, recorded {len(want)}; first difference at {first}: "
            f"{got[first] if first < len(got) else None!r} != recorded {want[first] if first < len(want) else None!r}")


def compare(part: str, expected: dict, actual: dict, *, structure: dict, same_torch: bool = True,
            loose: dict | None = None) -> Mismatches:
    """What differs between a recorded fingerprint part (see PARTS) and ours (see the module docstring).

    ``structure``: the recorded structure part (names for the messages); ``loose``: per-tensor tolerances
    wider than RTOL (see looseness), None for RTOL throughout.
    """
    found = Mismatches()
    if part == "structure":
        found += [_first_difference(field, expected[field], actual[field])
                  for field in ("state_dict", "modules") if expected[field] != actual[field]]
        if found:
            return found
        keys = [key for key, *_ in expected["state_dict"]]
        if same_torch:
            found += [f"initial {key}: sha256 {got} != recorded {want}"
                      for key, want, got in zip(keys, expected["init_sha256"], actual["init_sha256"]) if want != got]
        else:  # another torch: the RNG stream may differ in the last bits at most
            found += [f"initial {key}: {why}" for key, want, got in zip(keys, expected["init_stats"], actual["init_stats"])
                      if (why := stats_differ(want, got))]
        return found
    if part == "work":
        return Mismatches(f"{k}: {actual[k]!r} != recorded {expected[k]!r}" for k in expected if expected[k] != actual[k])
    if expected["output"][0] != actual["output"][0]:
        return Mismatches([f"{part} output shape {actual['output'][0]} != recorded {expected['output'][0]}"])
    names = _names(structure)
    for field in ("grads", "buffers"):
        if field in expected and not len(expected[field]) == len(actual[field]) == len(names[field]):
            found.append(f"{field}: {len(actual[field])}, recorded {len(expected[field])} for {len(names[field])} names")
    if found:
        return found
    loose = loose or {}
    for (path, want), (_, got) in zip(_tensor_entries(part, expected), _tensor_entries(part, actual)):
        _, field, *index = path.split("/")
        where = f"{part} {field[:-1]} {names[field][int(index[0])]}" if index else f"{part} output"
        if (want is None) != (got is None):
            found.append(f"{where}: {'no' if got is None else 'a'} gradient, recorded {'none' if want is None else 'one'}")
        elif want is not None and (why := stats_differ(want, got, loose.get(path, RTOL))):
            found.append(f"{where}: {why}")
    return found
